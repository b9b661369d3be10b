// The sesame-vault playground: GraphiQL with a token field.
//
// Nothing secret outlives the tab: the token is kept in this tab's
// sessionStorage only, and GraphiQL's editors, variables, tabs and history
// live in memory (a pasted key is gone after a reload). Forget removes the
// token and everything else the page stored, and resets the editors. It goes into the
// `Authorization: Bearer …` header of every POST to /graphql and into the
// connection_init payload of the graphql-ws client (/graphql/ws). When it
// changes, the fetcher and the WebSocket client are recreated.
import { StrictMode, useEffect, useRef, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { GraphiQL } from 'graphiql';
import { createGraphiQLFetcher } from '@graphiql/toolkit';
import { createClient } from 'graphql-ws';
import 'graphiql/style.css';
import './style.css';
import { defaultTabs } from './examples.js';

const TOKEN_KEY = 'sesame-vault:token';
// The API next to the page: /graphql and /graphql/ws when served at /.
const HTTP_URL = new URL('graphql', document.baseURI).href;
const WS_URL = (() => {
  const url = new URL('graphql/ws', document.baseURI);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
})();

function readToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return '';
  }
}

function writeToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    // Earlier versions kept it in localStorage: never leave it there.
    localStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage disabled: the token lives as long as the page.
  }
}

/** Everything this page (and GraphiQL, in earlier versions) stored in this browser. */
function forgetEverything() {
  for (const storage of [localStorage, sessionStorage]) {
    try {
      for (const key of Object.keys(storage)) {
        if (key.startsWith('graphiql') || key.startsWith('sesame-vault')) storage.removeItem(key);
      }
    } catch {
      // Storage disabled: nothing stored.
    }
  }
}

/** GraphiQL's storage in memory only: editors, variables, tabs and history die with the page. */
function memoryStorage() {
  const map = new Map();
  return {
    getItem: (key) => (map.has(key) ? map.get(key) : null),
    setItem: (key, value) => void map.set(key, String(value)),
    removeItem: (key) => void map.delete(key),
    clear: () => map.clear(),
    key: (i) => [...map.keys()][i] ?? null,
    get length() {
      return map.size;
    },
  };
}

/** Accepts a bare token or a pasted `Bearer …` header value. */
function normalizeToken(value) {
  return value.trim().replace(/^bearer\s+/i, '');
}

function authHeaders(token) {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** Who the token belongs to, to show next to the field. */
function useWhoAmI(token) {
  const [state, setState] = useState({ kind: 'none' });
  useEffect(() => {
    if (!token) {
      setState({ kind: 'none' });
      return undefined;
    }
    const abort = new AbortController();
    setState({ kind: 'checking' });
    fetch(HTTP_URL, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...authHeaders(token) },
      body: JSON.stringify({ query: 'query whoAmI { me { email role } }', operationName: 'whoAmI' }),
      signal: abort.signal,
    })
      .then((r) => r.json())
      .then((body) => {
        const me = body && body.data && body.data.me;
        if (me) setState({ kind: 'ok', text: `${me.email} (${me.role})` });
        else setState({ kind: 'error', text: (body && body.errors && body.errors[0] && body.errors[0].message) || 'token refused' });
      })
      .catch((e) => {
        if (e.name !== 'AbortError') setState({ kind: 'error', text: `cannot reach /graphql: ${e.message}` });
      });
    return () => abort.abort();
  }, [token]);
  return state;
}

function TokenBar({ token, onChange, onForget }) {
  const [draft, setDraft] = useState(token);
  const [show, setShow] = useState(false);
  const who = useWhoAmI(token);
  const timer = useRef(undefined);

  // Apply the token shortly after typing stops (each change recreates the
  // clients and refetches the schema), or at once on Enter / blur.
  const apply = (value) => {
    clearTimeout(timer.current);
    onChange(normalizeToken(value));
  };
  const edit = (value) => {
    setDraft(value);
    clearTimeout(timer.current);
    timer.current = setTimeout(() => apply(value), 400);
  };
  useEffect(() => () => clearTimeout(timer.current), []);

  let status;
  if (who.kind === 'none') status = 'No token: only schema introspection works. Kept in this tab only.';
  else if (who.kind === 'checking') status = 'Checking token…';
  else if (who.kind === 'ok') status = `Signed in as ${who.text}`;
  else status = `Token not accepted: ${who.text}`;

  return (
    <form
      className="sv-bar"
      autoComplete="off"
      onSubmit={(e) => {
        e.preventDefault();
        apply(draft);
      }}
    >
      <span className="sv-title">sesame-vault</span>
      <label>
        Token
        <input
          id="sesame-token"
          name="sesame-token"
          type={show ? 'text' : 'password'}
          value={draft}
          placeholder="sv_…  (sent as Authorization: Bearer …)"
          autoComplete="off"
          spellCheck={false}
          onChange={(e) => edit(e.target.value)}
          onBlur={(e) => apply(e.target.value)}
        />
      </label>
      <button type="button" onClick={() => setShow(!show)}>
        {show ? 'Hide' : 'Show'}
      </button>
      <button
        type="button"
        onClick={() => {
          clearTimeout(timer.current);
          setDraft('');
          onForget();
        }}
      >
        Forget
      </button>
      <span id="sesame-token-status" className={who.kind === 'error' ? 'sv-status sv-error' : 'sv-status'} role="status">
        {status}
      </span>
      <a className="sv-link" href="./settings">
        Credentials app
      </a>
    </form>
  );
}

/**
 * The GraphiQL fetcher for a token: HTTP POSTs to /graphql and a graphql-ws
 * client for subscriptions, both carrying the token. A new token makes new
 * clients; the old WebSocket client is disposed (ending its subscriptions).
 */
function useFetcher(token) {
  const [fetcher, setFetcher] = useState(null);
  useEffect(() => {
    const wsClient = createClient({
      url: WS_URL,
      lazy: true,
      retryAttempts: 0,
      connectionParams: authHeaders(token),
    });
    const next = createGraphiQLFetcher({ url: HTTP_URL, headers: authHeaders(token), wsClient });
    setFetcher(() => next);
    return () => void wsClient.dispose();
  }, [token]);
  return fetcher;
}

function Playground() {
  const [token, setToken] = useState(() => {
    // Earlier versions kept GraphiQL's state and the token in localStorage.
    try {
      for (const key of Object.keys(localStorage)) if (key.startsWith('graphiql')) localStorage.removeItem(key);
    } catch {
      // Storage disabled.
    }
    return readToken();
  });
  // A new storage (and a remount) after Forget: the editors go back to the examples.
  const [session, setSession] = useState(() => ({ id: 0, storage: memoryStorage() }));
  const fetcher = useFetcher(token);

  return (
    <div className="sv-app">
      <TokenBar
        token={token}
        onChange={(next) => {
          if (next === token) return;
          writeToken(next);
          setToken(next);
        }}
        onForget={() => {
          forgetEverything();
          setToken('');
          setSession((s) => ({ id: s.id + 1, storage: memoryStorage() }));
        }}
      />
      <div className="sv-graphiql">
        {fetcher && (
          <GraphiQL
            key={session.id}
            fetcher={fetcher}
            storage={session.storage}
            defaultTabs={defaultTabs}
            defaultEditorToolsVisibility="variables"
          >
            <GraphiQL.Logo>sesame-vault</GraphiQL.Logo>
          </GraphiQL>
        )}
      </div>
    </div>
  );
}

createRoot(document.getElementById('root')).render(
  <StrictMode>
    <Playground />
  </StrictMode>,
);
