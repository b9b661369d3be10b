// Small building blocks shared by the Credentials app's screens.
import { createContext, useCallback, useContext, useEffect, useId, useRef, useState } from 'react';

export const STATUS_LABELS = {
  ACTIVE: 'Active',
  EXPIRING: 'Expiring soon',
  EXPIRED: 'Expired',
  NEEDS_REAUTH: 'Sign in again',
  INVALID: 'Refused by provider',
};

export const USABLE = new Set(['ACTIVE', 'EXPIRING']);

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

export function formatDate(value) {
  if (!value) return '—';
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return '—';
  return dateFormat.format(date);
}

export function DateText({ value, empty = '—' }) {
  if (!value) return <span className="muted">{empty}</span>;
  return (
    <time dateTime={value} title={value}>
      {formatDate(value)}
    </time>
  );
}

/** A server message shown as a sentence. */
export function sentence(text) {
  if (!text) return '';
  const s = text.charAt(0).toUpperCase() + text.slice(1);
  return /[.!?]$/.test(s) ? s : `${s}.`;
}

/** Why a credential needs attention: amber while it still works, red once it does not. */
export function StatusMessage({ credential }) {
  if (!credential.statusMessage) return null;
  const tone = credential.status === 'EXPIRING' ? 'warn' : credential.status === 'ACTIVE' ? 'muted' : 'bad';
  return <span className={`status-message status-${tone}`}>{sentence(credential.statusMessage)}</span>;
}

export function StatusBadge({ status }) {
  if (!status) return null;
  const tone = { ACTIVE: 'ok', EXPIRING: 'warn', EXPIRED: 'bad', NEEDS_REAUTH: 'bad', INVALID: 'bad' }[status] || 'neutral';
  return <span className={`badge badge-${tone}`}>{STATUS_LABELS[status] || status}</span>;
}

const CHECK_TEXT = {
  VALID: 'works',
  INVALID: 'refused',
  NO_ACCESS: 'no access',
  UNREACHABLE: 'could not be reached',
};

/** The last check with the provider: when, and what it said. */
export function CheckText({ check }) {
  if (!check) return <span className="muted">Not yet</span>;
  const tone = { VALID: 'ok', INVALID: 'bad', NO_ACCESS: 'bad', UNREACHABLE: 'warn' }[check.result] || 'muted';
  return (
    <span className={`check check-${tone}`} data-check={check.result}>
      <DateText value={check.at} /> · {check.result === 'UNREACHABLE' ? 'provider ' : ''}
      {CHECK_TEXT[check.result] || check.result}
    </span>
  );
}

export function Badge({ tone = 'neutral', children }) {
  return <span className={`badge badge-${tone}`}>{children}</span>;
}

/** A copy button for a value shown on screen (user codes, new tokens). */
export function CopyButton({ value, label = 'Copy', className = '' }) {
  const [state, setState] = useState('idle');
  const timer = useRef();
  useEffect(() => () => clearTimeout(timer.current), []);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(value);
      setState('copied');
    } catch {
      setState('failed');
    }
    clearTimeout(timer.current);
    timer.current = setTimeout(() => setState('idle'), 2500);
  };
  return (
    <button type="button" className={`btn ${className}`} onClick={copy} aria-live="polite">
      {state === 'copied' ? 'Copied' : state === 'failed' ? 'Select and copy' : label}
    </button>
  );
}

/** A labelled input with the server's message under it. */
export function Field({ label, hint, error, children, id: givenId }) {
  const autoId = useId();
  const id = givenId || autoId;
  const hintId = `${id}-hint`;
  const errorId = `${id}-error`;
  const describedBy = [hint ? hintId : null, error ? errorId : null].filter(Boolean).join(' ') || undefined;
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      {children({ id, 'aria-describedby': describedBy, 'aria-invalid': error ? true : undefined })}
      {hint && (
        <p id={hintId} className="field-hint">
          {hint}
        </p>
      )}
      {error && (
        <p id={errorId} className="field-error" role="alert">
          {error}
        </p>
      )}
    </div>
  );
}

// ---------------------------------------------------------------- confirm dialog

const ConfirmContext = createContext(async () => false);
export const useConfirm = () => useContext(ConfirmContext);

export function ConfirmProvider({ children }) {
  const [request, setRequest] = useState(null);
  const dialog = useRef(null);
  const opener = useRef(null);

  const confirm = useCallback(
    (options) =>
      new Promise((resolve) => {
        opener.current = document.activeElement;
        setRequest({ ...options, resolve });
      }),
    [],
  );

  useEffect(() => {
    if (request && dialog.current && !dialog.current.open) dialog.current.showModal();
  }, [request]);

  const close = (answer) => {
    if (!request) return;
    request.resolve(answer);
    if (dialog.current && dialog.current.open) dialog.current.close();
    setRequest(null);
    const back = opener.current;
    if (back && typeof back.focus === 'function' && document.contains(back)) back.focus();
  };

  return (
    <ConfirmContext.Provider value={confirm}>
      {children}
      <dialog
        ref={dialog}
        className="dialog"
        aria-labelledby="confirm-title"
        aria-describedby="confirm-body"
        onCancel={(e) => {
          e.preventDefault();
          close(false);
        }}
      >
        {request && (
          <form
            method="dialog"
            onSubmit={(e) => {
              e.preventDefault();
              close(true);
            }}
          >
            <h2 id="confirm-title">{request.title}</h2>
            <div id="confirm-body" className="dialog-body">
              {request.body}
            </div>
            <div className="actions">
              <button type="button" className="btn" onClick={() => close(false)} autoFocus>
                Cancel
              </button>
              <button type="submit" className={`btn ${request.danger === false ? 'btn-primary' : 'btn-danger'}`}>
                {request.confirmLabel || 'Confirm'}
              </button>
            </div>
          </form>
        )}
      </dialog>
    </ConfirmContext.Provider>
  );
}

// ---------------------------------------------------------------- notices

const NoticeContext = createContext(() => {});
export const useNotice = () => useContext(NoticeContext);

let noticeSeq = 0;

/** Notices float at the bottom of the window: showing one never moves the page. */
export function NoticeProvider({ children }) {
  const [notices, setNotices] = useState([]);
  const dismiss = useCallback((id) => setNotices((list) => list.filter((n) => n.id !== id)), []);
  const notify = useCallback(
    (text, tone = 'info', timeoutMs = 8_000) => {
      const id = ++noticeSeq;
      setNotices((list) => [...list.slice(-2), { id, text, tone }]);
      if (timeoutMs) setTimeout(() => dismiss(id), timeoutMs);
    },
    [dismiss],
  );
  return (
    <NoticeContext.Provider value={notify}>
      {children}
      <div className="notices" role="status" aria-live="polite">
        {notices.map((n) => (
          <div key={n.id} className={`notice notice-${n.tone}`}>
            <span>{n.text}</span>
            <button type="button" className="btn btn-small btn-ghost" onClick={() => dismiss(n.id)} aria-label="Dismiss notice">
              ×
            </button>
          </div>
        ))}
      </div>
    </NoticeContext.Provider>
  );
}

/** Seconds left until `iso`, ticking once a second. */
export function useCountdown(iso) {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, []);
  if (!iso) return 0;
  return Math.max(0, Math.round((new Date(iso).getTime() - now) / 1000));
}

export function formatSeconds(total) {
  const m = Math.floor(total / 60);
  const s = total % 60;
  return `${m}:${String(s).padStart(2, '0')}`;
}
