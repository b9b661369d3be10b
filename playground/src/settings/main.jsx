// The Credentials app at /settings: Sign in, API Keys, Agent Credentials
// (with every sign-in flow), live events, Admin. It talks to the server only
// through the public GraphQL API (./api.js).
import { StrictMode, useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { createRoot } from 'react-dom/client';
import './settings.css';
import { createApi, normalizeToken, Q_ME, Q_MY_CREDENTIALS, Q_OVERVIEW, readToken, S_EVENTS, writeToken } from './api.js';
import { ApiKeysTab } from './keys.jsx';
import { AgentsTab } from './agents.jsx';
import { AdminTab } from './admin.jsx';
import { UsageTab } from './usage.jsx';
import { SessionProvider, createEventHub, makeCatalog } from './session.jsx';
import { ConfirmProvider, Field, NoticeProvider, sentence, useNotice } from './ui.jsx';

function SignIn({ onSignedIn, message }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState(message || '');
  const [busy, setBusy] = useState(false);

  const submit = async (e) => {
    e.preventDefault();
    const value = normalizeToken(token);
    if (!value) {
      setError('Paste your personal token (sv_…) or a JWT.');
      return;
    }
    setBusy(true);
    setError('');
    const api = createApi(value);
    try {
      const data = await api.request(Q_ME);
      api.dispose();
      setToken('');
      onSignedIn(value, data.me);
    } catch (err) {
      api.dispose();
      setError(err.code === 'UNAUTHENTICATED' ? `This token was not accepted: ${err.message}` : err.message);
      setBusy(false);
    }
  };

  return (
    <main className="signin">
      <form className="card signin-card" onSubmit={submit} autoComplete="off">
        <p className="brand">sesame-vault</p>
        <h1>Sign in</h1>
        <p className="muted">Configure API keys and subscription tokens for AI agents.</p>
        <Field
          label="Personal token"
          id="signin-token"
          error={error}
          hint="A token starting with sv_ (from your admin), or your platform's JWT. It is kept in this browser tab only, and forgotten when you sign out or close the tab."
        >
          {(props) => (
            <input
              {...props}
              type="password"
              name="token"
              value={token}
              placeholder="sv_…"
              autoComplete="off"
              spellCheck={false}
              autoFocus
              onChange={(e) => setToken(e.target.value)}
            />
          )}
        </Field>
        <div className="actions">
          <button type="submit" className="btn btn-primary" disabled={busy}>
            {busy ? 'Signing in…' : 'Sign in'}
          </button>
          <a className="btn btn-ghost" href="./">
            GraphQL explorer
          </a>
        </div>
      </form>
    </main>
  );
}

function useHashRoute() {
  const read = () => {
    const [tab, arg] = window.location.hash.replace(/^#/, '').split('/');
    return { tab: tab || 'api-keys', arg: arg || null };
  };
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const on = () => setRoute(read());
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  return route;
}

const EVENT_TEXT = {
  EXPIRING: 'is expiring soon',
  EXPIRED: 'has expired',
  REFRESHED: 'was refreshed',
  NEEDS_REAUTH: 'needs you to sign in again',
  INVALID: 'was refused by its provider',
};

/** A server message says what happened, then what to do ("…expires soon: renew it…"); the notice already says the first part. */
function whatToDo(message) {
  const at = message.indexOf(': ');
  return at > 0 ? message.slice(at + 2) : message;
}

function credentialName(event, catalog) {
  if (event.agent) return `${catalog.agentName(event.agent)} subscription`;
  return `${catalog.providerName(event.provider)} API key`;
}

function Shell({ token, me, onSignOut }) {
  const notify = useNotice();
  const api = useMemo(() => createApi(token, () => onSignOut('Your token is no longer accepted. Sign in again.')), [token, onSignOut]);
  useEffect(() => () => api.dispose(), [api]);
  const route = useHashRoute();
  const isAdmin = me.role === 'ADMIN';
  const tab = route.tab === 'admin' && !isAdmin ? 'api-keys' : ['api-keys', 'agents', 'usage', 'admin'].includes(route.tab) ? route.tab : 'api-keys';

  const [overview, setOverview] = useState(null);
  const [loadError, setLoadError] = useState('');
  const [flows, setFlows] = useState({});
  const [expanded, setExpandedState] = useState({});
  const [live, setLive] = useState('connecting');
  const events = useMemo(() => createEventHub(), []);
  const stale = useRef(false);
  const catalog = useMemo(() => makeCatalog(overview?.agents, overview?.providers), [overview?.agents, overview?.providers]);
  // The live subscription reads names without subscribing again when they arrive.
  const catalogRef = useRef(catalog);
  catalogRef.current = catalog;
  const tabRef = useRef(tab);
  tabRef.current = tab;

  useEffect(() => {
    let alive = true;
    api
      .request(Q_OVERVIEW)
      .then((data) => {
        if (!alive) return;
        setOverview(data);
        const pending = {};
        for (const f of data.myPendingDeviceFlows || []) if (!pending[f.agent]) pending[f.agent] = { kind: 'DEVICE_CODE', flow: f };
        for (const f of data.myPendingAuthorizationFlows || []) {
          if (!pending[f.agent]) pending[f.agent] = { kind: 'AUTHORIZATION_CODE', flow: f };
        }
        setFlows(pending);
      })
      .catch((e) => alive && setLoadError(e.message));
    return () => {
      alive = false;
    };
  }, [api]);

  // The Admin screen never asks for anyone's hint: while it is open, the
  // caller's own credentials (which carry hints) are not reloaded.
  const reloadCredentials = useCallback(async () => {
    if (tabRef.current === 'admin') {
      stale.current = true;
      return;
    }
    stale.current = false;
    try {
      const data = await api.request(Q_MY_CREDENTIALS);
      setOverview((o) => (o ? { ...o, myCredentials: data.myCredentials } : o));
    } catch (e) {
      notify(e.message, 'bad');
    }
  }, [api, notify]);

  useEffect(() => {
    if (tab !== 'admin' && stale.current) reloadCredentials();
  }, [tab, reloadCredentials]);

  // Live: credential events update badges and raise notices; reconnects after a drop.
  useEffect(() => {
    let connectedBefore = false;
    const off = api.onConnection((state) => {
      if (state === 'connected') {
        setLive('live');
        if (connectedBefore) reloadCredentials();
        connectedBefore = true;
      } else setLive('reconnecting');
    });
    // The client sends these variables again on every reconnect: `after`
    // then asks the server for what happened while the socket was down.
    const variables = {};
    const stop = api.subscribe(S_EVENTS, variables, {
      next: (data) => {
        const event = data.credentialEvents;
        variables.after = event.id;
        events.emit(event);
        if (event.ownerId !== me.id) return;
        reloadCredentials();
        const text = EVENT_TEXT[event.kind];
        if (text) {
          const tone = event.kind === 'REFRESHED' ? 'ok' : event.kind === 'EXPIRING' ? 'warn' : 'bad';
          notify(`Your ${credentialName(event, catalogRef.current)} ${text}.${event.message ? ` ${sentence(whatToDo(event.message))}` : ''}`, tone);
        }
      },
      error: (e) => {
        setLive('reconnecting');
        notify(`Live updates stopped: ${e.message}`, 'bad');
      },
    });
    return () => {
      off();
      stop();
    };
  }, [api, me.id, notify, reloadCredentials, events]);

  const session = useMemo(
    () => ({ api, me, reload: reloadCredentials, onEvent: events.on, ...catalog }),
    [api, me, reloadCredentials, events, catalog],
  );

  const setFlow = useCallback((agent, flow) => setFlows((f) => ({ ...f, [agent]: flow })), []);
  const setExpanded = useCallback((agent, open) => {
    setExpandedState((e) => ({ ...e, [agent]: open }));
    if (open) {
      if (window.location.hash !== '#agents') window.location.hash = '#agents';
      requestAnimationFrame(() => document.getElementById(`agent-${agent}`)?.scrollIntoView({ block: 'nearest' }));
    }
  }, []);

  // Pending sign-ins open their agent's card (after a reload, too).
  useEffect(() => {
    for (const [agent, f] of Object.entries(flows)) {
      if (f && !expanded[agent]) setExpandedState((e) => (agent in e ? e : { ...e, [agent]: true }));
    }
  }, [flows, expanded]);

  useEffect(() => {
    if (tab === 'api-keys' && route.arg) {
      requestAnimationFrame(() => {
        const row = document.getElementById(`api-key-${route.arg}`);
        if (row) {
          row.scrollIntoView({ block: 'center' });
          row.querySelector('input')?.focus();
        }
      });
    }
  }, [tab, route.arg, overview]);

  const titles = { 'api-keys': 'API Keys', agents: 'Agent Credentials', usage: 'Usage', admin: 'Admin' };
  useEffect(() => {
    document.title = `${titles[tab]} · sesame-vault`;
  });

  let body;
  if (loadError) body = <p className="field-error page">{loadError}</p>;
  else if (!overview) body = <p className="muted page">Loading…</p>;
  else if (tab === 'admin') body = <AdminTab />;
  else if (tab === 'usage') body = <UsageTab />;
  else if (tab === 'agents')
    body = (
      <AgentsTab
        agents={overview.agents}
        systemKeys={overview.systemKeys}
        credentials={overview.myCredentials}
        flows={flows}
        setFlow={setFlow}
        expanded={expanded}
        setExpanded={setExpanded}
      />
    );
  else
    body = (
      <ApiKeysTab
        agents={overview.agents}
        systemKeys={overview.systemKeys}
        credentials={overview.myCredentials}
        focusProvider={route.arg}
      />
    );

  return (
    <SessionProvider value={session}>
      <div className="app">
        <a className="skip" href="#main">
          Skip to content
        </a>
        <header className="topbar">
          <a className="brand" href="#api-keys">
            sesame-vault <span className="muted">Credentials</span>
          </a>
          <nav aria-label="Sections" className="tabs">
            <a href="#api-keys" aria-current={tab === 'api-keys' ? 'page' : undefined}>
              API Keys
            </a>
            <a href="#agents" aria-current={tab === 'agents' ? 'page' : undefined}>
              Agent Credentials
            </a>
            <a href="#usage" aria-current={tab === 'usage' ? 'page' : undefined}>
              Usage
            </a>
            {isAdmin && (
              <a href="#admin" aria-current={tab === 'admin' ? 'page' : undefined}>
                Admin
              </a>
            )}
          </nav>
          <div className="account">
            <span className={`live live-${live}`} role="status" title="Live updates from the server">
              <span className="dot" aria-hidden="true" />
              <span className="live-text">{live === 'live' ? 'Live' : live === 'connecting' ? 'Connecting' : 'Reconnecting'}</span>
            </span>
            <AccountMenu me={me} onSignOut={() => onSignOut('')} />
          </div>
        </header>
        <main id="main" tabIndex={-1}>
          {body}
        </main>
      </div>
    </SessionProvider>
  );
}

function AccountMenu({ me, onSignOut }) {
  const [open, setOpen] = useState(false);
  const ref = useRef(null);
  useEffect(() => {
    if (!open) return undefined;
    const close = (e) => {
      if (ref.current && !ref.current.contains(e.target)) setOpen(false);
    };
    const esc = (e) => e.key === 'Escape' && setOpen(false);
    document.addEventListener('mousedown', close);
    document.addEventListener('keydown', esc);
    return () => {
      document.removeEventListener('mousedown', close);
      document.removeEventListener('keydown', esc);
    };
  }, [open]);
  const initials = me.email.slice(0, 1).toUpperCase();
  return (
    <div className="menu" ref={ref}>
      <button
        type="button"
        className="avatar"
        aria-haspopup="true"
        aria-expanded={open}
        aria-controls="account-menu"
        aria-label={`Account: ${me.email}`}
        onClick={() => setOpen(!open)}
      >
        {initials}
      </button>
      {open && (
        <div id="account-menu" className="menu-popup">
          <p className="menu-who">
            Signed in as <strong id="signed-in-as">{me.email}</strong>
            <span className="muted small">{me.role === 'ADMIN' ? 'Admin' : 'User'}</span>
          </p>
          <a href="#api-keys" onClick={() => setOpen(false)}>
            Settings
          </a>
          <a href="#agents" onClick={() => setOpen(false)}>
            Agent Credentials
          </a>
          <a href="./">GraphQL explorer</a>
          <button type="button" onClick={onSignOut}>
            Sign out
          </button>
        </div>
      )}
    </div>
  );
}

function App() {
  const [session, setSession] = useState(() => {
    const token = readToken();
    return token ? { token, me: null, checking: true } : null;
  });
  const [message, setMessage] = useState('');

  const signOut = useCallback((why) => {
    writeToken('');
    setSession(null);
    setMessage(why || '');
  }, []);

  // A token kept from earlier in this tab: check who it is.
  useEffect(() => {
    if (!session || !session.checking) return;
    const api = createApi(session.token);
    api
      .request(Q_ME)
      .then((data) => setSession({ token: session.token, me: data.me }))
      .catch((e) => {
        if (e.code === 'UNAUTHENTICATED') signOut(`Your token is no longer accepted: ${e.message}`);
        else signOut(e.message);
      })
      .finally(() => api.dispose());
  }, [session, signOut]);

  if (!session) {
    return (
      <SignIn
        message={message}
        onSignedIn={(token, me) => {
          writeToken(token);
          setMessage('');
          setSession({ token, me });
        }}
      />
    );
  }
  if (!session.me) return <p className="muted page">Checking your token…</p>;
  return <Shell token={session.token} me={session.me} onSignOut={signOut} />;
}

createRoot(document.getElementById('root')).render(
  <StrictMode>
    <ConfirmProvider>
      <NoticeProvider>
        <App />
      </NoticeProvider>
    </ConfirmProvider>
  </StrictMode>,
);
