// Settings → API Keys: one row per provider.
import { useState } from 'react';
import { M_CHECK_CREDENTIAL, M_REMOVE_CREDENTIAL, M_SET_API_KEY } from './api.js';
import { CheckText, DateText, Field, StatusBadge, StatusMessage, USABLE, useConfirm, useNotice } from './ui.jsx';
import { useSession } from './session.jsx';

/** Per provider (from `providers`): its name, the agents an API key serves, its env var and expected prefix (from `agents`). */
export function providerInfo(providers, agents, systemKeys) {
  const info = {};
  for (const { provider, name, apiKeyEnvVar } of providers) {
    const system = systemKeys.find((k) => k.provider === provider);
    info[provider] = {
      provider,
      name,
      agents: [],
      prefixes: [],
      envVar: apiKeyEnvVar,
      systemConfigured: !!(system && system.configured),
      systemCheck: system ? system.check : null,
    };
  }
  for (const a of agents) {
    for (const m of a.methods) {
      if (m.method !== 'API_KEY' || !info[m.provider]) continue;
      const row = info[m.provider];
      if (!row.agents.includes(a.name)) row.agents.push(a.name);
      for (const p of m.tokenPrefixes) if (!row.prefixes.includes(p)) row.prefixes.push(p);
    }
  }
  return info;
}

export function ApiKeysTab({ agents, systemKeys, credentials, focusProvider }) {
  const { providers } = useSession();
  const info = providerInfo(providers, agents, systemKeys);
  return (
    <section aria-labelledby="api-keys-title" className="page">
      <header className="page-header">
        <h1 id="api-keys-title">API Keys</h1>
        <p className="lede">
          Pay-per-token keys for your agents. Keys are encrypted at rest and only used for your tasks. A subscription
          (Agent Credentials) is used first when you have one; then your key; then the system-wide key, if an admin set
          one.
        </p>
      </header>
      <ul className="rows">
        {providers.map(({ provider }) => (
          <ApiKeyRow
            key={provider}
            info={info[provider]}
            credential={credentials.find((c) => c.kind === 'API_KEY' && c.provider === provider)}
            highlight={focusProvider === provider}
          />
        ))}
      </ul>
    </section>
  );
}

export function ApiKeyRow({ info, credential, highlight, compact = false }) {
  const { api, reload } = useSession();
  const [key, setKey] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const confirm = useConfirm();
  const notify = useNotice();
  const name = info.name;
  // What people call it follows its variable: COPILOT_GITHUB_TOKEN holds a token.
  const what = /_TOKEN$/.test(info.envVar) ? 'token' : 'API key';
  const placeholder = info.prefixes.length ? `${info.prefixes[0]}…` : 'Paste the key';

  const save = async (e) => {
    e.preventDefault();
    if (!key.trim()) {
      setError(`Paste your ${name} key first.`);
      return;
    }
    setBusy(true);
    setError('');
    try {
      await api.request(M_SET_API_KEY, { provider: info.provider, key: key.trim() });
      setKey('');
      notify(`${name} key ${credential ? 'replaced' : 'saved'}.`, 'ok');
      await reload();
    } catch (err) {
      setError(err.message);
    } finally {
      setBusy(false);
    }
  };

  // Asks the provider whether the key works (never refreshes or spends it).
  const check = async () => {
    setBusy(true);
    setError('');
    try {
      const data = await api.request(M_CHECK_CREDENTIAL, { id: credential.id });
      const result = data.checkCredential.check;
      if (result && result.result === 'VALID') notify(`${name} accepted your key.`, 'ok');
      else if (result) notify(result.message || `${name}: ${result.result}`, result.result === 'UNREACHABLE' ? 'warn' : 'bad');
      await reload();
    } catch (err) {
      setError(err.message);
    } finally {
      setBusy(false);
    }
  };

  const remove = async () => {
    const after = info.systemConfigured
      ? `Afterwards ${info.agents.join(' and ')} will use the system key (${info.envVar}) unless you have a subscription.`
      : `Afterwards ${info.agents.join(' and ')} will need a subscription or a new key.`;
    const ok = await confirm({
      title: `Remove your ${name} key?`,
      body: <p>{after}</p>,
      confirmLabel: 'Remove',
    });
    if (!ok) return;
    setBusy(true);
    setError('');
    try {
      await api.request(M_REMOVE_CREDENTIAL, { id: credential.id });
      notify(`${name} key removed.`, 'ok');
      await reload();
    } catch (err) {
      setError(err.message);
    } finally {
      setBusy(false);
    }
  };

  let fallback;
  if (!credential) {
    fallback = info.systemConfigured
      ? info.systemCheck && info.systemCheck.result === 'INVALID'
        ? `No key of your own, and the system key (${info.envVar}) was refused by ${name}: tasks get no ${name} key until you add one or an admin replaces it.`
        : `No key of your own: tasks use the system key (${info.envVar}).`
      : `No key. ${info.agents.join(' and ')} ${info.agents.length > 1 ? 'need' : 'needs'} a key here or a subscription.`;
  }

  // In the API Keys list a list item; inside an agent's card (compact) a plain box.
  const Root = compact ? 'div' : 'li';
  return (
    <Root
      className={`row card${highlight ? ' highlight' : ''}`}
      id={compact ? undefined : `api-key-${info.provider}`}
      data-provider={info.provider}
    >
      <div className="row-head">
        <div>
          <h2 className="row-title">{name}</h2>
          <p className="muted small">
            {info.agents.join(', ')} · <code>{info.envVar}</code>
          </p>
        </div>
        <div className="row-status">
          {credential ? <StatusBadge status={credential.status} /> : info.systemConfigured ? <span className="badge badge-neutral">System key</span> : <span className="badge badge-neutral">Not set</span>}
        </div>
      </div>
      {credential ? (
        <dl className="meta">
          <div>
            <dt>Key</dt>
            <dd>
              <code className="hint">{credential.hint}</code>
            </dd>
          </div>
          <div>
            <dt>Created</dt>
            <dd>
              <DateText value={credential.createdAt} />
            </dd>
          </div>
          <div>
            <dt>Last used</dt>
            <dd>
              <DateText value={credential.lastUsedAt} empty="Never" />
            </dd>
          </div>
          <div>
            <dt>Expires</dt>
            <dd>
              <DateText value={credential.expiresAt} empty="Never" />
            </dd>
          </div>
          <div>
            <dt>Checked</dt>
            <dd>
              <CheckText check={credential.check} />
            </dd>
          </div>
        </dl>
      ) : (
        <p className="fallback">{fallback}</p>
      )}
      {credential && credential.statusMessage && (
        <p>
          <StatusMessage credential={credential} />
        </p>
      )}
      {credential && credential.check && credential.check.message && credential.check.message !== credential.statusMessage && (
        <p className={`status-message status-${credential.check.result === 'UNREACHABLE' ? 'warn' : 'bad'}`}>{credential.check.message}</p>
      )}
      <form className="inline-form" onSubmit={save} autoComplete="off">
        <Field label={credential ? `New ${name} ${what}` : `${name} ${what}`} error={error} id={`key-${info.provider}${compact ? '-inline' : ''}`}>
          {(props) => (
            <input
              {...props}
              type="password"
              name={`key-${info.provider}`}
              value={key}
              placeholder={placeholder}
              autoComplete="off"
              spellCheck={false}
              onChange={(e) => setKey(e.target.value)}
            />
          )}
        </Field>
        <div className="actions">
          <button type="submit" className="btn btn-primary" disabled={busy}>
            {credential ? 'Replace' : 'Save'}
          </button>
          {credential && (
            <button type="button" className="btn" onClick={check} disabled={busy}>
              Check
            </button>
          )}
          {credential && (
            <button type="button" className="btn btn-danger-ghost" onClick={remove} disabled={busy}>
              Remove
            </button>
          )}
        </div>
      </form>
    </Root>
  );
}

/** Whether tasks get the system key: set, and not refused at its last check. */
export function systemKeyUsable(row) {
  return !!(row && row.systemConfigured && !(row.systemCheck && row.systemCheck.result === 'INVALID'));
}

/** What an agent falls back to without its subscription, for one provider. */
export function fallbackFor(provider, credentials, info) {
  const key = credentials.find((c) => c.kind === 'API_KEY' && c.provider === provider && USABLE.has(c.status));
  if (key) return `your ${info[provider] ? info[provider].name : provider} API key`;
  if (systemKeyUsable(info[provider])) return `the system key (${info[provider].envVar})`;
  return null;
}

