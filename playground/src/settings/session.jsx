// The signed-in session every screen reads: the API client, who is signed in,
// the reload of their own credentials and the live credential events. One
// context instead of passing them through every component.
import { createContext, useCallback, useContext, useEffect, useRef, useState } from 'react';

const SessionContext = createContext(null);

export function SessionProvider({ value, children }) {
  return <SessionContext.Provider value={value}>{children}</SessionContext.Provider>;
}

/** `{ api, me, reload, onEvent }` of the signed-in person, and the catalog (`agentName`, `providerName`, `agents`, `providers`). */
export function useSession() {
  const session = useContext(SessionContext);
  if (!session) throw new Error('useSession outside SessionProvider');
  return session;
}

/**
 * Names and order from the server's catalog (`agents`, `providers`): the app
 * knows no agent or provider of its own. Unknown values show as they are.
 */
export function makeCatalog(agents = [], providers = []) {
  const agentNames = new Map(agents.map((a) => [a.agent, a.name]));
  const providerNames = new Map(providers.map((p) => [p.provider, p.name]));
  return {
    agents,
    providers,
    agentName: (agent) => agentNames.get(agent) || agent,
    providerName: (provider) => providerNames.get(provider) || provider,
  };
}

/** A set of listeners the live subscription hands each credential event to. */
export function createEventHub() {
  const listeners = new Set();
  return {
    emit: (event) => listeners.forEach((l) => l(event)),
    on: (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

/** Calls `handler(event)` for each live credential event while mounted. */
export function useCredentialEvents(handler) {
  const { onEvent } = useSession();
  const latest = useRef(handler);
  latest.current = handler;
  useEffect(() => onEvent((event) => latest.current(event)), [onEvent]);
}

/**
 * A cursor-paged list: the first page on mount (and again when `fetchPage`
 * changes), `more()` appends the next page, `refreshNewest()` merges the first
 * page in front of what is loaded (for newest-first lists: older pages stay).
 * `fetchPage(after)` returns `{ nodes, nextCursor }`; nodes have an `id`.
 */
export function usePaged(fetchPage) {
  const [items, setItems] = useState([]);
  const [cursor, setCursor] = useState(null);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState('');
  const itemsRef = useRef(items);
  itemsRef.current = items;
  // A reload makes answers to requests sent before it stale.
  const generation = useRef(0);

  const run = useCallback(
    async (after, apply) => {
      const mine = generation.current;
      setLoading(true);
      try {
        const page = await fetchPage(after);
        if (mine !== generation.current) return;
        apply(page);
        setError('');
      } catch (e) {
        if (mine === generation.current) setError(e.message);
      } finally {
        if (mine === generation.current) setLoading(false);
      }
    },
    [fetchPage],
  );

  const firstPage = (page) => {
    setItems(page.nodes);
    setCursor(page.nextCursor);
  };

  useEffect(() => {
    generation.current += 1;
    run(null, firstPage);
    return () => {
      generation.current += 1;
    };
  }, [run]);

  const more = useCallback(
    () =>
      run(cursor, (page) => {
        setItems((list) => [...list, ...page.nodes]);
        setCursor(page.nextCursor);
      }),
    [run, cursor],
  );

  const refreshNewest = useCallback(
    () =>
      run(null, (page) => {
        const list = itemsRef.current;
        const known = new Set(list.map((item) => item.id));
        const fresh = page.nodes.filter((node) => !known.has(node.id));
        // A whole page of new entries may hide a gap behind it: start over.
        if (fresh.length === page.nodes.length) firstPage(page);
        else if (fresh.length) setItems([...fresh, ...list]);
      }),
    [run],
  );

  return { items, cursor, loading, error, more, refreshNewest };
}
