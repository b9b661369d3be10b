// Admin → Webhooks: the endpoints the platform is told through, their
// health and recent deliveries; create one (its secret shown once), send a
// test, re-enable, a new secret, delete. Metadata only: never a body sent.
import { useCallback, useEffect, useState } from 'react';
import {
  M_CREATE_WEBHOOK,
  M_DELETE_WEBHOOK,
  M_ROTATE_WEBHOOK_SECRET,
  M_SEND_TEST_WEBHOOK,
  M_UPDATE_WEBHOOK,
  Q_WEBHOOK_DELIVERIES,
  Q_WEBHOOKS,
} from './api.js';
import { useSession } from './session.jsx';
import { Badge, CopyButton, DateText, Field, sentence, useConfirm, useNotice } from './ui.jsx';

// The event kinds an endpoint may listen for (the schema's CredentialEventKind).
const KINDS = [
  ['NEEDS_REAUTH', 'Needs sign-in again'],
  ['EXPIRED', 'Expired'],
  ['INVALID', 'Refused by provider'],
  ['EXPIRING', 'Expiring soon'],
  ['CREATED', 'Added'],
  ['UPDATED', 'Changed'],
  ['REFRESHED', 'Refreshed'],
  ['REMOVED', 'Removed'],
];
const KIND_LABEL = Object.fromEntries(KINDS);

const OUTCOME_TONE = { DELIVERED: 'ok', PENDING: 'warn', FAILED: 'bad', GONE: 'bad' };
const OUTCOME_TEXT = { DELIVERED: 'Delivered', PENDING: 'Retrying', FAILED: 'Gave up', GONE: 'Gone (410)' };

export function WebhooksSection() {
  const { api } = useSession();
  const [hooks, setHooks] = useState(null);
  const [error, setError] = useState('');
  const [secret, setSecret] = useState(null);

  const load = useCallback(async () => {
    try {
      const data = await api.request(Q_WEBHOOKS);
      setHooks(data.webhooks);
      setError('');
    } catch (e) {
      setError(e.message);
    }
  }, [api]);

  useEffect(() => {
    load();
  }, [load]);

  return (
    <section className="card webhooks" aria-labelledby="webhooks-title">
      <h2 id="webhooks-title">Webhooks</h2>
      <p className="muted small">
        Signed POSTs (Standard Webhooks) to your platform when a credential changes, so it can tell the person before
        their next task fails. Credential metadata only, never a secret.
      </p>
      {error && (
        <p className="field-error" role="alert">
          {error}
        </p>
      )}
      {secret && <SecretShown shown={secret} onDone={() => setSecret(null)} />}
      {hooks === null ? (
        <p className="muted">Loading…</p>
      ) : hooks.length === 0 ? (
        <p className="muted">No endpoints yet.</p>
      ) : (
        <ul className="webhook-list" aria-label="Webhook endpoints">
          {hooks.map((hook) => (
            <Endpoint key={hook.id} hook={hook} onChanged={load} onSecret={setSecret} />
          ))}
        </ul>
      )}
      <CreateWebhook
        onCreated={(created) => {
          setSecret({ url: created.webhook.url, secret: created.secret, rotated: false });
          load();
        }}
      />
    </section>
  );
}

function SecretShown({ shown, onDone }) {
  return (
    <div className="webhook-secret" role="status">
      <p>
        <strong>Copy this signing secret now: it is shown only once.</strong> {shown.rotated ? 'The old one keeps signing for a day, so update your receiver now.' : 'Your receiver verifies webhook-signature with it.'}{' '}
        <span className="muted">({shown.url})</span>
      </p>
      <div className="token-row">
        <input aria-label="Signing secret" className="token-output" readOnly value={shown.secret} onFocus={(e) => e.target.select()} />
        <CopyButton value={shown.secret} />
      </div>
      <div className="actions">
        <button type="button" className="btn" onClick={onDone}>
          Done
        </button>
      </div>
    </div>
  );
}

function Health({ hook }) {
  if (!hook.enabled) return <Badge tone="bad">Disabled</Badge>;
  if (hook.failingSince) return <Badge tone="warn">Failing</Badge>;
  return <Badge tone="ok">Healthy</Badge>;
}

function Endpoint({ hook, onChanged, onSecret }) {
  const { api } = useSession();
  const confirm = useConfirm();
  const notify = useNotice();
  const [open, setOpen] = useState(false);
  const [version, setVersion] = useState(0);
  const [error, setError] = useState('');

  const act = async (fn) => {
    setError('');
    try {
      await fn();
    } catch (e) {
      setError(e.message);
    }
  };

  const sendTest = () =>
    act(async () => {
      await api.request(M_SEND_TEST_WEBHOOK, { id: hook.id });
      notify('Test event queued: it is sent within a second.', 'ok');
      setOpen(true);
      // The attempt lands a moment later: look again then.
      setTimeout(() => setVersion((v) => v + 1), 1500);
    });

  const enable = () =>
    act(async () => {
      await api.request(M_UPDATE_WEBHOOK, { id: hook.id, input: { enabled: true } });
      notify('Endpoint enabled: its waiting deliveries go out again.', 'ok');
      onChanged();
    });

  const rotate = () =>
    act(async () => {
      const ok = await confirm({
        title: 'Make a new signing secret?',
        body: <p>Deliveries carry signatures with both secrets for a day; then only the new one verifies.</p>,
        confirmLabel: 'New secret',
      });
      if (!ok) return;
      const data = await api.request(M_ROTATE_WEBHOOK_SECRET, { id: hook.id });
      onSecret({ url: hook.url, secret: data.rotateWebhookSecret.secret, rotated: true });
      onChanged();
    });

  const remove = () =>
    act(async () => {
      const ok = await confirm({
        title: 'Delete this webhook endpoint?',
        body: <p>{hook.url} hears nothing more, and deliveries still waiting for it are dropped.</p>,
        confirmLabel: 'Delete',
      });
      if (!ok) return;
      await api.request(M_DELETE_WEBHOOK, { id: hook.id });
      notify('Webhook endpoint deleted.', 'ok');
      onChanged();
    });

  const kinds = hook.events.length === 0 ? 'Every event' : hook.events.map((k) => KIND_LABEL[k] || k).join(' · ');
  return (
    <li className="webhook" data-webhook-id={hook.id}>
      <div className="row-head">
        <code className="webhook-url">{hook.url}</code>
        <Health hook={hook} />
      </div>
      {hook.description && <p className="webhook-description">{hook.description}</p>}
      <p className="muted small">
        {kinds} · {hook.pending} waiting{hook.dropped > 0 ? ` · ${hook.dropped} dropped (queue full)` : ''}
      </p>
      {!hook.enabled && hook.disabledReason && <p className="status-message status-bad">{sentence(hook.disabledReason)}</p>}
      {hook.enabled && hook.failingSince && (
        <p className="status-message status-warn">
          Failing since <DateText value={hook.failingSince} />: retried with backoff, disabled after a day.
        </p>
      )}
      {error && (
        <p className="field-error" role="alert">
          {error}
        </p>
      )}
      <div className="actions">
        <button type="button" className="btn btn-small" onClick={sendTest} disabled={!hook.enabled}>
          Send test
        </button>
        <button type="button" className="btn btn-small" aria-expanded={open} onClick={() => setOpen((o) => !o)}>
          {open ? 'Hide deliveries' : 'Recent deliveries'}
        </button>
        {!hook.enabled && (
          <button type="button" className="btn btn-small btn-primary" onClick={enable}>
            Enable
          </button>
        )}
        <button type="button" className="btn btn-small btn-ghost" onClick={rotate}>
          New secret
        </button>
        <button type="button" className="btn btn-small btn-danger-ghost" onClick={remove}>
          Delete
        </button>
      </div>
      {open && <Deliveries id={hook.id} version={version} />}
    </li>
  );
}

function Deliveries({ id, version }) {
  const { api } = useSession();
  const [rows, setRows] = useState(null);
  const [error, setError] = useState('');

  // Read again every few seconds while shown: attempts land in the background.
  useEffect(() => {
    let live = true;
    const load = () =>
      api
        .request(Q_WEBHOOK_DELIVERIES, { id })
        .then((data) => live && (setRows(data.webhookDeliveries), setError('')))
        .catch((e) => live && setError(e.message));
    load();
    const timer = setInterval(load, 3000);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, [api, id, version]);

  if (error) {
    return (
      <p className="field-error" role="alert">
        {error}
      </p>
    );
  }
  if (rows === null) return <p className="muted small">Loading…</p>;
  if (rows.length === 0) return <p className="muted small">Nothing sent yet.</p>;
  return (
    <div className="table-wrap deliveries">
      <table aria-label="Recent deliveries">
        <thead>
          <tr>
            <th scope="col">When</th>
            <th scope="col">Event</th>
            <th scope="col">Result</th>
            <th scope="col">Answer</th>
            <th scope="col">Tries</th>
            <th scope="col">Next try</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((d) => (
            <tr key={d.cursor}>
              <td data-label="When">
                <DateText value={d.createdAt} />
              </td>
              <td data-label="Event">
                <code>{d.type}</code>
              </td>
              <td data-label="Result">
                <Badge tone={OUTCOME_TONE[d.outcome] || 'neutral'}>{OUTCOME_TEXT[d.outcome] || d.outcome}</Badge>
              </td>
              <td data-label="Answer">
                {d.statusCode ? `HTTP ${d.statusCode}` : d.attempt > 0 ? 'No answer' : '—'}
                {d.durationMs != null && <span className="muted small"> · {d.durationMs} ms</span>}
                {d.answerExcerpt && <span className="excerpt muted small">{d.answerExcerpt}</span>}
              </td>
              <td data-label="Tries">{d.attempt}</td>
              <td data-label="Next try">
                <DateText value={d.nextAttemptAt} empty="—" />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function CreateWebhook({ onCreated }) {
  const { api } = useSession();
  const [url, setUrl] = useState('');
  const [description, setDescription] = useState('');
  const [kinds, setKinds] = useState(new Set(['NEEDS_REAUTH', 'EXPIRED', 'INVALID']));
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);

  const toggle = (kind) =>
    setKinds((old) => {
      const next = new Set(old);
      if (next.has(kind)) next.delete(kind);
      else next.add(kind);
      return next;
    });

  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError('');
    try {
      const input = { url: url.trim(), events: [...kinds], description: description.trim() || null };
      const data = await api.request(M_CREATE_WEBHOOK, { input });
      setUrl('');
      setDescription('');
      onCreated(data.createWebhook);
    } catch (err) {
      setError(err.message);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form className="webhook-create" onSubmit={submit} autoComplete="off">
      <h3>Add an endpoint</h3>
      <Field label="URL" error={error} id="webhook-url" hint="https, reachable from the vault.">
        {(props) => <input {...props} type="url" required value={url} onChange={(e) => setUrl(e.target.value)} placeholder="https://platform.example.com/hooks/sesame" />}
      </Field>
      <Field label="Description (optional)" id="webhook-description">
        {(props) => <input {...props} value={description} maxLength={500} onChange={(e) => setDescription(e.target.value)} placeholder="Email people when a login needs them" />}
      </Field>
      <fieldset className="kinds">
        <legend>Events (none ticked: every event; “working again” comes with the first three)</legend>
        {KINDS.map(([kind, label]) => (
          <label key={kind} className="kind">
            <input type="checkbox" checked={kinds.has(kind)} onChange={() => toggle(kind)} /> {label}
          </label>
        ))}
      </fieldset>
      <div className="actions">
        <button type="submit" className="btn btn-primary" disabled={busy}>
          Add endpoint
        </button>
      </div>
    </form>
  );
}
