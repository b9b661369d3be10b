// Sign-in flows: the device code (RFC 8628) and the authorization code a person pastes back.
import { useEffect, useRef, useState } from 'react';
import {
  M_CANCEL_FLOW,
  M_COMPLETE_AUTHORIZATION,
  M_START_AUTHORIZATION,
  M_START_DEVICE,
  S_DEVICE_STATUS,
} from './api.js';
import { CopyButton, Field, formatSeconds, useCountdown, useNotice } from './ui.jsx';
import { useSession } from './session.jsx';

const FINAL_TEXT = {
  DENIED: 'The sign-in was denied.',
  EXPIRED: 'The code expired before the sign-in was completed.',
  FAILED: 'The sign-in failed.',
  CANCELLED: 'The sign-in was cancelled.',
};

/**
 * A device sign-in: the user code large with a copy button, the link, a
 * countdown, live status from deviceFlowStatus. Closes itself on AUTHORIZED.
 */
export function DeviceFlowPanel({ initial, onClose, onAuthorized }) {
  const { api, agentName: nameOfAgent, providerName: nameOfProvider } = useSession();
  const [flow, setFlow] = useState(initial);
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const notify = useNotice();
  const left = useCountdown(flow.expiresAt);
  const done = useRef(false);
  const agentName = nameOfAgent(flow.agent);
  const providerName = nameOfProvider(flow.provider);

  useEffect(() => {
    if (flow.status !== 'PENDING') return undefined;
    const stop = api.subscribe(S_DEVICE_STATUS, { id: flow.id }, {
      next: (data) => {
        const next = data.deviceFlowStatus;
        setFlow((prev) => ({ ...prev, ...next }));
        if (next.status === 'AUTHORIZED' && !done.current) {
          done.current = true;
          notify(`${agentName} is signed in with ${providerName}.`, 'ok');
          onAuthorized(next);
        }
      },
      error: (e) => setError(e.message),
    });
    return () => stop();
    // Re-subscribe only for a new flow.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [flow.id]);

  const retry = async () => {
    setBusy(true);
    setError('');
    try {
      const data = await api.request(M_START_DEVICE, { agent: flow.agent, provider: flow.provider });
      done.current = false;
      setFlow(data.startDeviceFlow);
    } catch (e) {
      setError(e.message);
    } finally {
      setBusy(false);
    }
  };

  const cancel = async () => {
    setBusy(true);
    try {
      if (flow.status === 'PENDING') await api.request(M_CANCEL_FLOW, { id: flow.id });
      onClose();
    } catch (e) {
      setError(e.message);
      setBusy(false);
    }
  };

  const link = flow.verificationUriComplete || flow.verificationUri;
  const pending = flow.status === 'PENDING';
  return (
    <div className="flow-panel" data-flow-id={flow.id} aria-labelledby={`flow-${flow.id}-title`} role="group">
      <h3 id={`flow-${flow.id}-title`}>
        Sign in {agentName} with {providerName}
      </h3>
      {pending ? (
        <>
          <ol className="steps">
            <li>
              Open{' '}
              <a href={link} target="_blank" rel="noopener noreferrer">
                {flow.verificationUri}
              </a>
            </li>
            <li>Enter this code:</li>
          </ol>
          <div className="user-code-row">
            <output className="user-code" aria-label="Device code">
              {flow.userCode}
            </output>
            <CopyButton value={flow.userCode} label="Copy code" />
          </div>
          <p className="flow-status" aria-live="polite">
            <span className="spinner" aria-hidden="true" /> <span data-status={flow.status}>Waiting for you to approve…</span>{' '}
            <span className="muted">
              Code expires in <span className="countdown">{formatSeconds(left)}</span>
            </span>
          </p>
        </>
      ) : flow.status === 'AUTHORIZED' ? (
        <p className="flow-status ok" data-status="AUTHORIZED" aria-live="polite">
          Signed in. The credentials are saved.
        </p>
      ) : (
        <div className="flow-final" role="alert" data-status={flow.status}>
          <p className="flow-status bad">
            <strong>{FINAL_TEXT[flow.status] || flow.status}</strong> {flow.message}
          </p>
        </div>
      )}
      {error && (
        <p className="field-error" role="alert">
          {error}
        </p>
      )}
      <div className="actions">
        {pending ? (
          <button type="button" className="btn" onClick={cancel} disabled={busy}>
            Cancel
          </button>
        ) : (
          <>
            {flow.status !== 'AUTHORIZED' && (
              <button type="button" className="btn btn-primary" onClick={retry} disabled={busy}>
                Retry
              </button>
            )}
            <button type="button" className="btn" onClick={onClose}>
              Close
            </button>
          </>
        )}
      </div>
    </div>
  );
}

/** The code flow: open the provider's page, paste `code#state`, Complete. */
export function CodeFlowPanel({ initial, onClose, onCompleted }) {
  const { api, agentName: nameOfAgent, providerName: nameOfProvider } = useSession();
  const [flow, setFlow] = useState(initial);
  const [code, setCode] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const notify = useNotice();
  const left = useCountdown(flow.expiresAt);
  const agentName = nameOfAgent(flow.agent);
  const providerName = nameOfProvider(flow.provider);

  const complete = async (e) => {
    e.preventDefault();
    if (!code.trim()) {
      setError('Paste the code the sign-in page showed (it looks like code#state).');
      return;
    }
    setBusy(true);
    setError('');
    try {
      await api.request(M_COMPLETE_AUTHORIZATION, { id: flow.id, code: code.trim() });
      setCode('');
      notify(`${agentName} is signed in with ${providerName}.`, 'ok');
      onCompleted();
    } catch (err) {
      setError(err.message);
      setBusy(false);
    }
  };

  const restart = async () => {
    setBusy(true);
    setError('');
    try {
      const data = await api.request(M_START_AUTHORIZATION, { agent: flow.agent, provider: flow.provider });
      setFlow(data.startAuthorizationFlow);
      setCode('');
    } catch (err) {
      setError(err.message);
    } finally {
      setBusy(false);
    }
  };

  const cancel = async () => {
    try {
      await api.request(M_CANCEL_FLOW, { id: flow.id });
    } catch {
      // Already ended: closing is all that is left.
    }
    onClose();
  };

  const expired = left === 0;
  return (
    <form className="flow-panel" onSubmit={complete} autoComplete="off" data-flow-id={flow.id}>
      <h3>
        Sign in {agentName} with your {providerName} account
      </h3>
      <ol className="steps">
        <li>
          <a className="btn btn-primary" href={flow.authorizeUrl} target="_blank" rel="noopener noreferrer">
            Open the {providerName} sign-in page
          </a>
        </li>
        <li>Sign in, then copy the code the page shows.</li>
        <li>Paste it here and click Complete.</li>
      </ol>
      <Field label="Code" error={error} hint={expired ? 'This sign-in has expired: start again.' : `Expires in ${formatSeconds(left)}.`}>
        {(props) => (
          <input
            {...props}
            name="authorization-code"
            type="password"
            value={code}
            placeholder="code#state"
            autoComplete="off"
            spellCheck={false}
            onChange={(e) => setCode(e.target.value)}
          />
        )}
      </Field>
      <div className="actions">
        {expired ? (
          <button type="button" className="btn btn-primary" onClick={restart} disabled={busy}>
            Start again
          </button>
        ) : (
          <button type="submit" className="btn btn-primary" disabled={busy}>
            Complete
          </button>
        )}
        <button type="button" className="btn" onClick={cancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}

export async function startFlow(api, kind, agent, provider) {
  if (kind === 'DEVICE_CODE') {
    const data = await api.request(M_START_DEVICE, { agent, provider });
    return { kind, flow: data.startDeviceFlow };
  }
  const data = await api.request(M_START_AUTHORIZATION, { agent, provider });
  return { kind, flow: data.startAuthorizationFlow };
}
