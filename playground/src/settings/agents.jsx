// Agent Credentials: one expandable card per agent (from the `agents` catalog).
import { useState } from 'react';
import { M_DISCONNECT_AGENT, M_SAVE_SUBSCRIPTION } from './api.js';
import { ApiKeyRow, fallbackFor, providerInfo, systemKeyUsable } from './keys.jsx';
import { CodeFlowPanel, DeviceFlowPanel, startFlow } from './flows.jsx';
import { Badge, DateText, Field, StatusBadge, StatusMessage, USABLE, sentence, useConfirm, useNotice } from './ui.jsx';
import { useSession } from './session.jsx';

/** The plans, grouped by provider when there are several ("Anthropic: … · OpenAI: …"). */
function plansText(plans, providerName) {
  const groups = [];
  for (const plan of plans) {
    let group = groups.find((g) => g.provider === plan.provider);
    if (!group) groups.push((group = { provider: plan.provider, names: [] }));
    group.names.push(plan.name);
  }
  if (groups.length === 1) return groups[0].names.join(', ');
  return groups.map((g) => `${providerName(g.provider)}: ${g.names.join(', ')}`).join(' · ');
}

function Steps({ text, note }) {
  const isStep = (l) => /^\d+\.\s/.test(l);
  const lines = text.split('\n').filter((l) => l.trim());
  const first = lines.findIndex(isStep);
  // The card already says which subscriptions are supported, and its note
  // ("API key only: …") what an intro starting with the same words would.
  const lead = note ? note.split(/[:.]/)[0].trim().toLowerCase() : null;
  const intro = (first < 0 ? lines : lines.slice(0, first)).filter(
    (l) => !l.startsWith('Supported subscriptions') && !(lead && l.toLowerCase().startsWith(lead)),
  );
  const rest = first < 0 ? [] : lines.slice(first);
  const steps = rest.filter(isStep);
  const notes = rest.filter((l) => !isStep(l));
  return (
    <div className="instructions">
      {intro.map((l) => (
        <p key={l}>{l}</p>
      ))}
      {steps.length > 0 && (
        <ol>
          {steps.map((l) => (
            <li key={l}>{l.replace(/^\d+\.\s/, '')}</li>
          ))}
        </ol>
      )}
      {notes.map((l) => (
        <p key={l} className="muted small">
          {l}
        </p>
      ))}
    </div>
  );
}

export function AgentsTab({ agents, systemKeys, credentials, flows, setFlow, expanded, setExpanded }) {
  const { providers, providerName } = useSession();
  const info = providerInfo(providers, agents, systemKeys);
  const pending = Object.entries(flows).filter(([, f]) => f && f.flow.status === 'PENDING');
  return (
    <section aria-labelledby="agents-title" className="page">
      <header className="page-header">
        <h1 id="agents-title">Agent Credentials</h1>
        <p className="lede">
          Use your existing AI subscriptions instead of pay-per-token billing. Expand the agent you want to configure,
          follow the setup instructions and click Save Credentials.
        </p>
      </header>
      {pending.length > 0 && (
        <div className="banner" role="status">
          <strong>Sign-ins in progress:</strong>{' '}
          {pending.map(([agent, f], i) => (
            <span key={agent}>
              {i > 0 && ', '}
              <button type="button" className="link-button" onClick={() => setExpanded(agent, true)}>
                {agents.find((a) => a.agent === agent)?.name || agent} with {providerName(f.flow.provider)}
              </button>
            </span>
          ))}
        </div>
      )}
      <ul className="rows">
        {agents.map((a) => (
          <AgentCard
            key={a.agent}
            agent={a}
            info={info}
            credentials={credentials}
            flow={flows[a.agent]}
            setFlow={(f) => setFlow(a.agent, f)}
            open={!!expanded[a.agent]}
            setOpen={(v) => setExpanded(a.agent, v)}
          />
        ))}
      </ul>
      <Help />
    </section>
  );
}

function AgentCard({ agent, info, credentials, flow, setFlow, open, setOpen }) {
  const { api, reload, providerName } = useSession();
  const confirm = useConfirm();
  const notify = useNotice();
  const [removeError, setRemoveError] = useState('');
  const subs = credentials.filter((c) => c.kind === 'SUBSCRIPTION' && c.agent === agent.agent);
  const keyProviders = [...new Set(agent.methods.filter((m) => m.method === 'API_KEY').map((m) => m.provider))];
  const usableSub = subs.find((c) => USABLE.has(c.status));
  const usableKey = credentials.find((c) => c.kind === 'API_KEY' && keyProviders.includes(c.provider) && USABLE.has(c.status));
  const worst = subs.find((c) => c.status === 'INVALID') || subs.find((c) => c.status === 'NEEDS_REAUTH') || subs.find((c) => c.status === 'EXPIRED') || subs.find((c) => c.status === 'EXPIRING');
  const panelId = `agent-${agent.agent}-panel`;

  let uses;
  if (usableSub) uses = `Tasks use your ${providerName(usableSub.provider)} subscription.`;
  else {
    const fallback = keyProviders.map((p) => fallbackFor(p, credentials, info)).find(Boolean);
    uses = fallback ? `Tasks use ${fallback}.` : `Not set up: tasks with ${agent.name} need a credential.`;
  }

  // Remove Credentials takes what only serves this agent: its subscriptions and an API key no
  // other agent uses (GitHub for Copilot, Google for Gemini). Shared keys stay (API Keys tab).
  const ownKeyProviders = keyProviders.filter((p) => info[p] && info[p].agents.length === 1);
  const ownKeys = credentials.filter((c) => c.kind === 'API_KEY' && ownKeyProviders.includes(c.provider));
  const removable = subs.length + ownKeys.length;

  const remove = async () => {
    const what = [
      subs.length ? `${subs.length === 1 ? 'its subscription credential' : `its ${subs.length} subscription credentials`}` : null,
      ...ownKeys.map((c) => `your ${providerName(c.provider)} API key (only ${agent.name} uses it)`),
    ].filter(Boolean);
    const sharedFallbacks = keyProviders
      .filter((p) => !ownKeyProviders.includes(p))
      .map((p) => fallbackFor(p, credentials, info))
      .filter(Boolean);
    const systemFallbacks = ownKeyProviders.filter((p) => systemKeyUsable(info[p])).map((p) => `the system key (${info[p].envVar})`);
    const fallbacks = [...sharedFallbacks, ...systemFallbacks];
    const after = fallbacks.length
      ? `Afterwards ${agent.name} will use ${fallbacks.join(', or ')}.`
      : `Afterwards ${agent.name} will have no credential: tasks with it fail until you add one.`;
    const ok = await confirm({
      title: `Remove ${agent.name}'s credentials?`,
      body: (
        <>
          <p>This removes {what.join(' and ')}.</p>
          <p>{after}</p>
          <p className="muted small">Tokens from Sesame's own sign-in are revoked at the provider too, where it offers that.</p>
        </>
      ),
      confirmLabel: 'Remove Credentials',
    });
    if (!ok) return;
    setRemoveError('');
    try {
      const data = await api.request(M_DISCONNECT_AGENT, { agent: agent.agent });
      const { removed, remaining } = data.disconnectAgent;
      const still = remaining.map((r) =>
        r.source === 'SYSTEM_KEY' ? `the system key (${r.envVar})` : `your ${providerName(r.provider)} API key`,
      );
      const revoke = [...new Set(removed.filter((r) => r.revocation.result !== 'REVOKED').map((r) => r.revocation.message))];
      const revoked = removed.filter((r) => r.revocation.result === 'REVOKED').length;
      notify(
        [
          `${agent.name}: ${removed.length} credential${removed.length === 1 ? '' : 's'} removed${revoked ? `, ${revoked} revoked at the provider` : ''}.`,
          still.length ? `Tasks now use ${still.join(', or ')}.` : `Tasks with ${agent.name} now have no credential.`,
          ...revoke.map(sentence),
        ].join(' '),
        'ok',
      );
      await reload();
    } catch (e) {
      setRemoveError(e.message);
    }
  };

  return (
    <li className="card agent-card" id={`agent-${agent.agent}`} data-agent={agent.agent}>
      <h2 className="agent-head">
        <button type="button" className="disclosure" aria-expanded={open} aria-controls={panelId} onClick={() => setOpen(!open)}>
          <span className="chevron" aria-hidden="true" />
          <span className="agent-name">{agent.name}</span>
          <span className="badges">
            {(usableSub || usableKey) && <Badge tone="ok">Authenticated</Badge>}
            {worst && <StatusBadge status={worst.status} />}
          </span>
        </button>
      </h2>
      <p className="uses muted small">{uses}</p>
      {open && (
        <div id={panelId} className="agent-body">
          {agent.note && (
            <p className="agent-note">
              <strong>{agent.note}</strong>
            </p>
          )}
          {agent.subscriptionPlans.length > 0 && (
            <p>
              <strong>Supported subscriptions:</strong> {plansText(agent.subscriptionPlans, providerName)}
            </p>
          )}
          {subs.length > 0 && (
            <ul className="cred-list" aria-label={`${agent.name} subscription credentials`}>
              {subs.map((c) => (
                <li key={c.id} className="cred">
                  <span>
                    {providerName(c.provider)} subscription <code className="hint">{c.hint}</code>
                  </span>
                  <StatusBadge status={c.status} />
                  <span className="muted small">
                    Expires <DateText value={c.expiresAt} empty="never" /> · last used <DateText value={c.lastUsedAt} empty="never" />
                  </span>
                  <StatusMessage credential={c} />
                </li>
              ))}
            </ul>
          )}
          {new Set(agent.methods.map((m) => m.provider)).size > 1 ? (
            <ManageProviders agent={agent} info={info} credentials={credentials} flow={flow} setFlow={setFlow} />
          ) : (
            <Configure agent={agent} info={info} credentials={credentials} flow={flow} setFlow={setFlow} />
          )}
          {removable > 0 && (
            <div className="actions remove-row">
              <button type="button" className="btn btn-danger-ghost" onClick={remove}>
                Remove Credentials
              </button>
              {removeError && (
                <p className="field-error" role="alert">
                  {removeError}
                </p>
              )}
            </div>
          )}
        </div>
      )}
    </li>
  );
}

/** Configure: the methods of an agent that uses one provider. */
function Configure({ agent, info, credentials, flow, setFlow }) {
  const methods = agent.methods;
  const [choice, setChoice] = useState(() => Math.max(0, methods.findIndex((m) => m.method === 'PASTE_TOKEN')));
  const method = methods[choice];
  const groupName = `method-${agent.agent}`;
  if (flow) {
    return <FlowView flow={flow} setFlow={setFlow} />;
  }
  return (
    <div className="configure">
      {methods.length > 1 && (
        <fieldset className="segmented">
          <legend>Configure with</legend>
          {methods.map((m, i) => (
            <label key={`${m.method}-${m.provider}`} className={i === choice ? 'checked' : ''}>
              <input type="radio" name={groupName} checked={i === choice} onChange={() => setChoice(i)} />
              {m.label}
            </label>
          ))}
        </fieldset>
      )}
      <Steps text={method.instructions} note={agent.note} />
      <MethodForm key={`${method.method}-${method.provider}`} agent={agent} method={method} info={info} credentials={credentials} setFlow={setFlow} />
    </div>
  );
}

function MethodForm({ agent, method, info, credentials, setFlow }) {
  if (method.method === 'API_KEY') {
    return (
      <ApiKeyRow
        info={info[method.provider]}
        credential={credentials.find((c) => c.kind === 'API_KEY' && c.provider === method.provider)}
        compact
      />
    );
  }
  if (method.method === 'DEVICE_CODE' || method.method === 'AUTHORIZATION_CODE') {
    return <StartFlow agent={agent} method={method} setFlow={setFlow} />;
  }
  return <PasteForm agent={agent} method={method} />;
}

function StartFlow({ agent, method, setFlow }) {
  const { api } = useSession();
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const label = method.label;
  const start = async () => {
    setBusy(true);
    setError('');
    try {
      setFlow(await startFlow(api, method.method, agent.agent, method.provider));
    } catch (e) {
      setError(e.message);
      setBusy(false);
    }
  };
  return (
    <div className="actions">
      <button type="button" className="btn btn-primary" onClick={start} disabled={busy}>
        {label}
      </button>
      {error && (
        <p className="field-error" role="alert">
          {error}
        </p>
      )}
    </div>
  );
}

function FlowView({ flow, setFlow }) {
  const { reload } = useSession();
  const close = () => setFlow(null);
  const finished = async () => {
    setFlow(null);
    await reload();
  };
  if (flow.kind === 'DEVICE_CODE') {
    return <DeviceFlowPanel key={flow.flow.id} initial={flow.flow} onClose={close} onAuthorized={finished} />;
  }
  return <CodeFlowPanel key={flow.flow.id} initial={flow.flow} onClose={close} onCompleted={finished} />;
}

/** Paste a token (its label from the catalog), or the whole login file where the method names one. */
function PasteForm({ agent, method }) {
  const { api, reload } = useSession();
  const [token, setToken] = useState('');
  const [file, setFile] = useState('');
  const [refresh, setRefresh] = useState('');
  const [mode, setMode] = useState(method.authFile ? 'file' : 'token');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const notify = useNotice();
  const prefix = method.tokenPrefixes[0];
  const tokenLabel = method.tokenLabel || 'Token';
  const fileName = method.authFile ? method.authFile.split('/').pop() : '';
  const id = `${agent.agent}-${method.provider}`;

  const save = async (e) => {
    e.preventDefault();
    const input = { agent: agent.agent, provider: method.provider };
    if (mode === 'file') {
      if (!file.trim()) return setError(`Paste the contents of ${method.authFile} first.`);
      input.authJson = file;
    } else {
      if (!token.trim()) return setError(`Paste the ${tokenLabel.toLowerCase()} first.`);
      if (method.acceptsRefreshToken) {
        input.accessToken = token.trim();
        if (refresh.trim()) input.refreshToken = refresh.trim();
      } else input.token = token.trim();
    }
    setBusy(true);
    setError('');
    try {
      await api.request(M_SAVE_SUBSCRIPTION, { input });
      setToken('');
      setFile('');
      setRefresh('');
      notify(`${agent.name} credentials saved.`, 'ok');
      await reload();
    } catch (err) {
      setError(err.message);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form className="paste-form" onSubmit={save} autoComplete="off">
      {method.authFile && (
        <fieldset className="segmented small">
          <legend>Paste</legend>
          <label className={mode === 'file' ? 'checked' : ''}>
            <input type="radio" name={`${id}-paste`} checked={mode === 'file'} onChange={() => setMode('file')} />
            {fileName}
          </label>
          <label className={mode === 'token' ? 'checked' : ''}>
            <input type="radio" name={`${id}-paste`} checked={mode === 'token'} onChange={() => setMode('token')} />
            {tokenLabel}
          </label>
        </fieldset>
      )}
      {mode === 'file' ? (
        <Field label={`Contents of ${method.authFile}`} error={error} id={`${id}-file`}>
          {(props) => (
            <textarea
              {...props}
              name="auth-file"
              rows={5}
              value={file}
              placeholder="{ … }"
              spellCheck={false}
              autoComplete="off"
              className="secret-text"
              onChange={(e) => setFile(e.target.value)}
            />
          )}
        </Field>
      ) : (
        <>
          <Field label={tokenLabel} error={method.acceptsRefreshToken && refresh ? '' : error} id={`${id}-token`}>
            {(props) => (
              <input
                {...props}
                type="password"
                name="token"
                value={token}
                placeholder={prefix ? `${prefix}…` : 'Paste the token'}
                autoComplete="off"
                spellCheck={false}
                onChange={(e) => setToken(e.target.value)}
              />
            )}
          </Field>
          {method.acceptsRefreshToken && (
            <Field label="Refresh token (optional)" error={refresh ? error : ''} id={`${id}-refresh`}>
              {(props) => (
                <input
                  {...props}
                  type="password"
                  name="refresh-token"
                  value={refresh}
                  autoComplete="off"
                  spellCheck={false}
                  onChange={(e) => setRefresh(e.target.value)}
                />
              )}
            </Field>
          )}
        </>
      )}
      <div className="actions">
        <button type="submit" className="btn btn-primary" disabled={busy}>
          Save Credentials
        </button>
      </div>
    </form>
  );
}

/** Manage Providers, for an agent that uses several: Connect → Use Subscription / Use API Key. */
function ManageProviders({ agent, info, credentials, flow, setFlow }) {
  const { providerName } = useSession();
  const providers = [...new Set(agent.methods.map((m) => m.provider))];
  const [connecting, setConnecting] = useState(null);
  const [mode, setMode] = useState('subscription');
  if (flow) return <FlowView flow={flow} setFlow={setFlow} />;
  const takesSubscriptions = agent.methods.some((m) => m.method !== 'API_KEY');
  return (
    <div className="manage-providers">
      <h3>Manage Providers</h3>
      <p className="muted small">
        {agent.name} works with several providers: connect each one you use
        {takesSubscriptions ? ' with a subscription or an API key' : ' with an API key'}.
      </p>
      <ul className="provider-list">
        {providers.map((p) => {
          const sub = credentials.find((c) => c.kind === 'SUBSCRIPTION' && c.agent === agent.agent && c.provider === p);
          const key = credentials.find((c) => c.kind === 'API_KEY' && c.provider === p);
          const subMethod = agent.methods.find((m) => m.provider === p && m.method !== 'API_KEY');
          const keyMethod = agent.methods.find((m) => m.provider === p && m.method === 'API_KEY');
          const isOpen = connecting === p;
          const shown = subMethod && (mode === 'subscription' || !keyMethod) ? 'subscription' : 'key';
          return (
            <li key={p} className="provider-row" data-provider={p}>
              <div className="provider-line">
                <strong>{providerName(p)}</strong>
                <span className="badges">
                  {sub ? <StatusBadge status={sub.status} /> : key ? <Badge tone="ok">API key</Badge> : <Badge>Not connected</Badge>}
                </span>
                <button
                  type="button"
                  className="btn"
                  aria-expanded={isOpen}
                  onClick={() => {
                    setConnecting(isOpen ? null : p);
                    setMode('subscription');
                  }}
                >
                  {isOpen ? 'Close' : 'Connect'}
                </button>
              </div>
              {isOpen && (
                <div className="connect">
                  {subMethod && keyMethod && (
                    <fieldset className="segmented">
                      <legend>Connect {providerName(p)}</legend>
                      <label className={shown === 'subscription' ? 'checked' : ''}>
                        <input type="radio" name={`connect-${p}`} checked={shown === 'subscription'} onChange={() => setMode('subscription')} />
                        Use Subscription
                      </label>
                      <label className={shown === 'key' ? 'checked' : ''}>
                        <input type="radio" name={`connect-${p}`} checked={shown === 'key'} onChange={() => setMode('key')} />
                        Use API Key
                      </label>
                    </fieldset>
                  )}
                  {shown === 'subscription' ? (
                    <>
                      <Steps text={subMethod.instructions} />
                      {subMethod.method === 'PASTE_TOKEN' ? (
                        <PasteForm agent={agent} method={subMethod} />
                      ) : (
                        <StartFlow agent={agent} method={subMethod} setFlow={setFlow} />
                      )}
                    </>
                  ) : (
                    <ApiKeyRow info={info[p]} credential={key} compact />
                  )}
                </div>
              )}
            </li>
          );
        })}
      </ul>
    </div>
  );
}

function Help() {
  return (
    <section className="help card" aria-labelledby="help-title">
      <h2 id="help-title">Troubleshooting</h2>
      <details>
        <summary>"Authentication failed" Error</summary>
        <ul>
          <li>Verify your subscription is active</li>
          <li>Check you copied the entire token</li>
          <li>
            For Claude: ensure token starts with <code>sk-ant-oat01-</code>
          </li>
          <li>For Codex: verify device auth is enabled in ChatGPT settings</li>
        </ul>
      </details>
      <details>
        <summary>Token Expired</summary>
        <p>OAuth tokens may expire. Re-run the setup command and update credentials:</p>
        <pre>
          <code>{'# Claude\nclaude setup-token\n\n# Codex\ncodex login --device-auth'}</code>
        </pre>
      </details>
      <details>
        <summary>Credentials Not Working</summary>
        <ul>
          <li>Remove and re-add the credentials</li>
          <li>Check the agent's logs for specific error messages</li>
          <li>Verify your subscription hasn't expired</li>
          <li>Try using an API key instead to isolate the issue</li>
        </ul>
      </details>
      <details>
        <summary>Credential Priority</summary>
        <p>When running a task, Sesame checks for credentials in order: your subscription for the agent, then your API key for the provider, then the system-wide key.</p>
      </details>
    </section>
  );
}
