// Admin (admins only). Every query here asks for metadata only: never `hint`.
import { useCallback, useEffect, useRef, useState } from 'react';
import {
  M_CREATE_USER,
  M_DELETE_CREDENTIAL,
  M_DELETE_USER_CREDENTIALS,
  Q_AUDIT,
  Q_USER_CREDENTIALS,
  Q_USERS,
} from './api.js';
import { useCredentialEvents, usePaged, useSession } from './session.jsx';
import { CopyButton, DateText, Field, StatusBadge, useConfirm, useNotice } from './ui.jsx';
import { WebhooksSection } from './webhooks.jsx';

export function AdminTab() {
  const [selected, setSelected] = useState(null);
  const [usersVersion, setUsersVersion] = useState(0);
  return (
    <section aria-labelledby="admin-title" className="page">
      <header className="page-header">
        <h1 id="admin-title">Admin</h1>
        <p className="lede">
          People, the metadata of their credentials, webhooks to your platform, and the audit log. Admins can delete credentials but never read
          them.
        </p>
      </header>
      <div className="admin-grid">
        <Users selected={selected} onSelect={setSelected} version={usersVersion} />
        <div className="admin-side">
          {selected ? (
            <UserCredentials user={selected} onClose={() => setSelected(null)} />
          ) : (
            <div className="card empty">
              <p className="muted">Choose a person to see their credentials.</p>
            </div>
          )}
          <CreateUser onCreated={() => setUsersVersion((v) => v + 1)} />
        </div>
      </div>
      <WebhooksSection />
      <AuditLog />
    </section>
  );
}

function Users({ selected, onSelect, version }) {
  const { api } = useSession();
  const [search, setSearch] = useState('');
  // `version` changes when someone is created: the list starts over.
  const fetchPage = useCallback(
    (after) => api.request(Q_USERS, { first: 25, after }).then((data) => data.users),
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [api, version],
  );
  const { items: users, cursor, loading, error, more } = usePaged(fetchPage);

  // Searching looks through every page, not only the ones loaded.
  useEffect(() => {
    if (!search.trim() || !cursor || loading || error) return;
    more();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [search, cursor, loading, error]);

  const needle = search.trim().toLowerCase();
  const shown = needle ? users.filter((u) => u.email.toLowerCase().includes(needle)) : users;

  return (
    <div className="card users">
      <h2>People</h2>
      <Field label="Search by email" id="user-search">
        {(props) => <input {...props} type="search" value={search} onChange={(e) => setSearch(e.target.value)} placeholder="name@example.com" />}
      </Field>
      {error && (
        <p className="field-error" role="alert">
          {error}
        </p>
      )}
      <ul className="user-list" aria-label="People">
        {shown.map((u) => (
          <li key={u.id}>
            <button
              type="button"
              className={`user-button${selected && selected.id === u.id ? ' selected' : ''}`}
              aria-pressed={!!(selected && selected.id === u.id)}
              onClick={() => onSelect(u)}
            >
              <span className="user-email">{u.email}</span>
              <span className="muted small">
                {u.role === 'ADMIN' ? 'Admin' : 'User'} · since <DateText value={u.createdAt} />
              </span>
            </button>
          </li>
        ))}
      </ul>
      {!loading && shown.length === 0 && <p className="muted">No one matches “{search}”.</p>}
      <div className="actions">
        {cursor && !needle && (
          <button type="button" className="btn" onClick={more} disabled={loading}>
            Load more
          </button>
        )}
        {loading && <span className="muted small">Loading…</span>}
      </div>
    </div>
  );
}

function UserCredentials({ user, onClose }) {
  const { api, agentName, providerName } = useSession();
  const [creds, setCreds] = useState(null);
  const [error, setError] = useState('');
  const confirm = useConfirm();
  const notify = useNotice();

  const load = useCallback(async () => {
    try {
      const data = await api.request(Q_USER_CREDENTIALS, { ownerId: user.id });
      setCreds(data.credentials.nodes);
      setError('');
    } catch (e) {
      setError(e.message);
    }
  }, [api, user.id]);

  useEffect(() => {
    load();
  }, [load]);
  // Only this person's events change what is shown.
  useCredentialEvents((event) => {
    if (event.ownerId === user.id) load();
  });

  const label = (c) =>
    c.kind === 'API_KEY' ? `${providerName(c.provider)} API key` : `${agentName(c.agent)} subscription (${providerName(c.provider)})`;

  const deleteOne = async (c) => {
    const ok = await confirm({
      title: `Delete ${user.email}'s ${label(c)}?`,
      body: <p>The credential is deleted without being read. {user.email} will have to add it again.</p>,
      confirmLabel: 'Delete',
    });
    if (!ok) return;
    try {
      await api.request(M_DELETE_CREDENTIAL, { id: c.id });
      notify(`Deleted ${user.email}'s ${label(c)}.`, 'ok');
      await load();
    } catch (e) {
      setError(e.message);
    }
  };

  const deleteAll = async () => {
    const ok = await confirm({
      title: `Delete all of ${user.email}'s credentials?`,
      body: <p>All {creds.length} credentials are deleted without being read. This cannot be undone.</p>,
      confirmLabel: 'Delete all',
    });
    if (!ok) return;
    try {
      const data = await api.request(M_DELETE_USER_CREDENTIALS, { userId: user.id });
      notify(`Deleted ${data.deleteUserCredentials} credentials of ${user.email}.`, 'ok');
      await load();
    } catch (e) {
      setError(e.message);
    }
  };

  return (
    <div className="card user-creds" aria-labelledby="user-creds-title">
      <div className="row-head">
        <h2 id="user-creds-title">{user.email}</h2>
        <button type="button" className="btn btn-small btn-ghost" onClick={onClose}>
          Close
        </button>
      </div>
      <p className="muted small">Metadata only: admins never see a credential's value or hint.</p>
      {error && (
        <p className="field-error" role="alert">
          {error}
        </p>
      )}
      {creds === null ? (
        <p className="muted">Loading…</p>
      ) : creds.length === 0 ? (
        <p className="muted">No credentials.</p>
      ) : (
        <>
          <ul className="cred-list admin-creds">
            {creds.map((c) => (
              <li key={c.id} className="cred" data-credential-id={c.id}>
                <span className="cred-name">{label(c)}</span>
                <StatusBadge status={c.status} />
                <span className="muted small">
                  Updated <DateText value={c.updatedAt} /> · expires <DateText value={c.expiresAt} empty="never" /> · last used{' '}
                  <DateText value={c.lastUsedAt} empty="never" />
                </span>
                <button type="button" className="btn btn-small btn-danger-ghost" onClick={() => deleteOne(c)}>
                  Delete
                </button>
              </li>
            ))}
          </ul>
          <div className="actions">
            <button type="button" className="btn btn-danger-ghost" onClick={deleteAll}>
              Delete all credentials
            </button>
          </div>
        </>
      )}
    </div>
  );
}

function CreateUser({ onCreated }) {
  const { api } = useSession();
  const [email, setEmail] = useState('');
  const [role, setRole] = useState('USER');
  const [error, setError] = useState('');
  const [created, setCreated] = useState(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError('');
    try {
      const data = await api.request(M_CREATE_USER, { email: email.trim(), role });
      setCreated(data.createUser);
      setEmail('');
      onCreated();
    } catch (err) {
      setError(err.message);
    } finally {
      setBusy(false);
    }
  };

  if (created) {
    return (
      <div className="card new-user" role="status">
        <h2>Created {created.user.email}</h2>
        <p>
          <strong>Copy this token now: it is shown only once.</strong> Give it to {created.user.email}; they paste it in Sign in.
        </p>
        <div className="token-row">
          <input aria-label="New token" className="token-output" readOnly value={created.token} onFocus={(e) => e.target.select()} />
          <CopyButton value={created.token} />
        </div>
        <div className="actions">
          <button type="button" className="btn" onClick={() => setCreated(null)}>
            Done
          </button>
        </div>
      </div>
    );
  }

  return (
    <form className="card" onSubmit={submit} autoComplete="off">
      <h2>Create a person</h2>
      <Field label="Email" error={error} id="new-user-email">
        {(props) => <input {...props} type="email" required value={email} onChange={(e) => setEmail(e.target.value)} placeholder="name@example.com" />}
      </Field>
      <Field label="Role" id="new-user-role">
        {(props) => (
          <select {...props} value={role} onChange={(e) => setRole(e.target.value)}>
            <option value="USER">User</option>
            <option value="ADMIN">Admin</option>
          </select>
        )}
      </Field>
      <div className="actions">
        <button type="submit" className="btn btn-primary" disabled={busy}>
          Create
        </button>
      </div>
    </form>
  );
}

function AuditLog() {
  const { api, agentName, providerName } = useSession();
  const fetchPage = useCallback(
    (after) => api.request(Q_AUDIT, { after }).then((data) => data.auditLog),
    [api],
  );
  const { items: entries, cursor, loading, error, more, refreshNewest } = usePaged(fetchPage);

  // Every credential event of every person reaches an admin: a burst of them
  // costs one request (a second later) for the newest page, merged in front
  // of what is loaded, so older pages already read stay.
  const timer = useRef(null);
  useCredentialEvents(() => {
    if (timer.current) return;
    timer.current = setTimeout(() => {
      timer.current = null;
      refreshNewest();
    }, 1000);
  });
  useEffect(() => () => clearTimeout(timer.current), []);

  const who = (e) => e.actorEmail || (e.actorKind === 'SYSTEM' ? 'System' : e.actorKind === 'RUNNER' ? 'Runner' : e.actorId || e.actorKind);
  return (
    <section className="card audit" aria-labelledby="audit-title">
      <h2 id="audit-title">Audit log</h2>
      <p className="muted small">Newest first. Never secret material.</p>
      {error && (
        <p className="field-error" role="alert">
          {error}
        </p>
      )}
      <div className="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">When</th>
              <th scope="col">Who</th>
              <th scope="col">Action</th>
              <th scope="col">Whose</th>
              <th scope="col">What</th>
            </tr>
          </thead>
          <tbody>
            {entries.map((e) => (
              <tr key={e.id}>
                <td data-label="When">
                  <DateText value={e.at} />
                </td>
                <td data-label="Who">{who(e)}</td>
                <td data-label="Action">
                  <code>{e.action}</code>
                </td>
                <td data-label="Whose">{e.ownerEmail || '—'}</td>
                <td data-label="What">
                  {[e.provider && providerName(e.provider), e.agent && agentName(e.agent), e.detail]
                    .filter(Boolean)
                    .join(' · ') || '—'}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <div className="actions">
        {cursor && (
          <button type="button" className="btn" onClick={more} disabled={loading}>
            Older entries
          </button>
        )}
      </div>
    </section>
  );
}
