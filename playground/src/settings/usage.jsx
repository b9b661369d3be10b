// Usage: what the person's tasks spent through the vault's egress proxy over
// the last 30 days, by agent, provider and the credential each used. Counts
// only: the proxy never keeps a prompt or an answer.
import { useEffect, useState } from 'react';
import { Q_MY_USAGE } from './api.js';
import { DateText } from './ui.jsx';
import { useSession } from './session.jsx';

const SOURCE_LABELS = { SUBSCRIPTION: 'Your subscription', USER_API_KEY: 'Your API key', SYSTEM_KEY: 'System-wide key' };

const number = (n) => new Intl.NumberFormat().format(n);

export function UsageTab() {
  const { api, agentName, providerName } = useSession();
  const [rows, setRows] = useState(null);
  const [error, setError] = useState('');
  useEffect(() => {
    let alive = true;
    api
      .request(Q_MY_USAGE)
      .then((data) => alive && setRows(data.myUsage))
      .catch((e) => alive && setError(e.message));
    return () => {
      alive = false;
    };
  }, [api]);

  const total = (rows || []).reduce(
    (t, r) => ({ tasks: t.tasks + r.tasks, input: t.input + r.inputTokens, output: t.output + r.outputTokens }),
    { tasks: 0, input: 0, output: 0 },
  );
  return (
    <section aria-labelledby="usage-title" className="page">
      <header className="page-header">
        <h1 id="usage-title">Usage</h1>
        <p className="lede">
          What your agents spent in the last 30 days on tasks whose credentials stayed in the vault (proxy delivery): the
          tokens each provider reported, by agent and by the credential it used. Tasks handed the credential itself are
          not counted here.
        </p>
      </header>
      {error && (
        <p className="field-error" role="alert">
          {error}
        </p>
      )}
      {!rows && !error && <p className="muted">Loading…</p>}
      {rows && rows.length === 0 && (
        <div className="card">
          <p>No task has run through the vault&apos;s proxy in the last 30 days.</p>
          <p className="muted small">
            Usage appears here once your platform runs tasks with proxy delivery, where agents hold placeholders and the
            vault adds your credential on the way to the provider.
          </p>
        </div>
      )}
      {rows && rows.length > 0 && (
        <div className="card">
          <p className="muted small">
            {number(total.tasks)} {total.tasks === 1 ? 'task' : 'tasks'} · {number(total.input)} input tokens ·{' '}
            {number(total.output)} output tokens
          </p>
          <div className="table-wrap">
            <table className="usage">
              <thead>
                <tr>
                  <th scope="col">Agent</th>
                  <th scope="col">Paid with</th>
                  <th scope="col">Tasks</th>
                  <th scope="col">Requests</th>
                  <th scope="col">Input tokens</th>
                  <th scope="col">Output tokens</th>
                  <th scope="col">Last task</th>
                </tr>
              </thead>
              <tbody>
                {rows.map((r) => (
                  <tr key={`${r.agent}-${r.provider}-${r.source}`}>
                    <td data-label="Agent">
                      {agentName(r.agent)} <span className="muted small">{providerName(r.provider)}</span>
                    </td>
                    <td data-label="Paid with">{SOURCE_LABELS[r.source] || r.source}</td>
                    <td data-label="Tasks">{number(r.tasks)}</td>
                    <td data-label="Requests">{number(r.requests)}</td>
                    <td data-label="Input tokens">{number(r.inputTokens)}</td>
                    <td data-label="Output tokens">{number(r.outputTokens)}</td>
                    <td data-label="Last task">
                      <DateText value={r.lastTaskAt} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </div>
      )}
    </section>
  );
}
