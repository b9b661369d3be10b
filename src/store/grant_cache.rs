//! The egress proxy's grants, remembered between requests while something
//! tells this process of every change that could end one.
//!
//! Without it every proxied request read its grant, person, runner token and
//! credential (one joined query). With it a grant is read once and kept
//! until a change that could end it or alter what it lends is heard of:
//!
//! - **This process** calls [`Store::grants_changed`] right after committing
//!   each end the API and the CLI make (a task returned, a credential
//!   replaced or removed, a person disabled or deleted, a token revoked), so
//!   the next request here is refused at once.
//! - **Every other writer** (another instance, the operator's CLI in another
//!   process, the scheduler's refreshes and status changes, a key rotation)
//!   is heard through triggers on those rows (migration
//!   `m20261208_000015_proxy_grant_watch`): on PostgreSQL they `NOTIFY`
//!   `sesame_proxy_grants`, which the relay hears on every instance; on
//!   SQLite they count in `proxy_epoch`, which [`ProxyHandle::watch`]
//!   reads every [`POLL`].
//!
//! The cache serves only while its watcher is connected (`watched`): on
//! PostgreSQL from the relay's LISTEN until its connection is lost, on SQLite
//! while the counter reads. Otherwise every request reads the rows, as
//! before. A read that started before a change and finishes after it is not
//! kept (the generation moved), so a change is never hidden by a slow read.
//! Time-bound ends (a lease, a runner token's expiry) are checked on every
//! request against the cached times, and a kept grant is read again after
//! [`MAX_AGE`] whatever was heard. Only sealed secrets are kept, never a
//! plaintext.
//!
//! [`ProxyHandle::watch`]: crate::store::ProxyHandle::watch

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, Statement};

use crate::error::ApiResult;
use crate::store::Store;

/// How often the SQLite watcher reads `proxy_epoch`: the longest a change
/// made outside this process (the operator's CLI) goes unseen here.
pub const POLL: Duration = Duration::from_millis(20);
/// A kept grant is read again after this long even if nothing was heard:
/// what a notification lost on a connection that died silently could hide
/// is bounded by it.
const MAX_AGE: Duration = Duration::from_secs(5);
/// Grants remembered at most; at the cap the whole cache starts again.
const CAPACITY: usize = 10_000;
/// The tables whose triggers announce changes (`<table>_proxy_update`,
/// `<table>_proxy_delete`; migration `m20261208_000015`).
const WATCHED_TABLES: [&str; 4] = ["credentials", "users", "access_tokens", "proxy_grants"];
/// The PostgreSQL channel the triggers notify.
pub const CHANNEL: &str = "sesame_proxy_grants";

/// What the cache keeps per grant key: whatever the one read returned.
pub(in crate::store) struct GrantCache<T> {
    watched: AtomicBool,
    generation: AtomicU64,
    entries: Mutex<HashMap<String, (Instant, Arc<T>)>>,
}

impl<T> Default for GrantCache<T> {
    fn default() -> Self {
        GrantCache { watched: AtomicBool::new(false), generation: AtomicU64::new(0), entries: Mutex::default() }
    }
}

/// Taken before a read; the read is kept only if nothing changed since.
#[derive(Clone, Copy)]
pub(in crate::store) struct Ticket(u64);

impl<T> GrantCache<T> {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Arc<T>)>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The grant `key` as last read, while the watcher is connected.
    pub fn get(&self, key: &str) -> Option<Arc<T>> {
        if !self.watched.load(Ordering::Acquire) {
            return None;
        }
        let mut entries = self.entries();
        match entries.get(key) {
            Some((kept, value)) if kept.elapsed() < MAX_AGE => Some(value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn ticket(&self) -> Ticket {
        Ticket(self.generation.load(Ordering::Acquire))
    }

    /// Keeps `value` for `key` unless a change was heard since `ticket`
    /// (or nothing watches).
    pub fn keep(&self, key: &str, value: Arc<T>, ticket: Ticket) {
        if !self.watched.load(Ordering::Acquire) {
            return;
        }
        let mut entries = self.entries();
        // Checked under the lock `changed` clears under: a change heard
        // after this check clears what is inserted here.
        if self.generation.load(Ordering::Acquire) != ticket.0 {
            return;
        }
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(key.to_owned(), (Instant::now(), value));
    }

    /// Forgets `key` (its row changed here, e.g. its first use recorded).
    pub fn forget(&self, key: &str) {
        self.entries().remove(key);
    }

    /// Something that could end a grant changed: forget everything.
    pub fn changed(&self) {
        let mut entries = self.entries();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }

    /// Whether a watcher is connected; connecting or losing it forgets
    /// everything (changes may have gone unheard).
    pub fn set_watched(&self, watched: bool) {
        let mut entries = self.entries();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
        self.watched.store(watched, Ordering::Release);
    }

    pub fn is_watched(&self) -> bool {
        self.watched.load(Ordering::Acquire)
    }
}

impl Store {
    /// A change that could end a proxy grant (or change what it lends)
    /// committed: the egress proxy reads grants afresh. Called after commit
    /// by the store's own ends, and by the relay when PostgreSQL notifies.
    pub fn grants_changed(&self) {
        self.inner.grants.changed();
    }

    /// Commits `txn`, which may have ended proxy grants, and says so.
    pub(in crate::store) async fn commit_ending(&self, txn: DatabaseTransaction) -> ApiResult<()> {
        txn.commit().await?;
        self.grants_changed();
        Ok(())
    }

    /// The SQLite triggers' count of changes (`proxy_epoch`).
    pub(in crate::store) async fn proxy_epoch(&self) -> Result<i64, DbErr> {
        let sql = "SELECT value FROM proxy_epoch WHERE id = 1";
        let row = self.reader().query_one(Statement::from_string(DbBackend::Sqlite, sql)).await?;
        row.ok_or_else(|| DbErr::RecordNotFound("proxy_epoch".into()))?.try_get("", "value")
    }

    /// Whether the triggers that announce changes are all in place (a
    /// migration that rebuilds a table drops its triggers); logs an error
    /// when not, and then nothing is kept.
    pub async fn grant_triggers_present(&self) -> bool {
        let names: Vec<String> = WATCHED_TABLES
            .iter()
            .flat_map(|table| [format!("'{table}_proxy_update'"), format!("'{table}_proxy_delete'")])
            .collect();
        let (backend, sql) = if self.is_postgres() {
            (
                DbBackend::Postgres,
                format!("SELECT COUNT(*) AS n FROM pg_trigger WHERE tgname IN ({})", names.join(", ")),
            )
        } else {
            (
                DbBackend::Sqlite,
                format!(
                    "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'trigger' AND name IN ({})",
                    names.join(", ")
                ),
            )
        };
        let found = match self.reader().query_one(Statement::from_string(backend, sql)).await {
            Ok(Some(row)) => row.try_get::<i64>("", "n").unwrap_or(0),
            Ok(None) => 0,
            Err(e) => {
                tracing::warn!(error = %e, "proxy: cannot check the grant triggers");
                return false;
            }
        };
        let present = found == names.len() as i64;
        if !present {
            tracing::error!(
                found,
                expected = names.len(),
                "proxy: the triggers that announce grant changes are missing (migration m20261208_000015); \
                 every request reads its grant"
            );
        }
        present
    }

    /// The relay's LISTEN on PostgreSQL connected (`true`) or was lost.
    pub fn set_grants_watched(&self, watched: bool) {
        self.inner.grants.set_watched(watched);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_kept_unwatched_or_across_a_change() {
        let cache = GrantCache::<u32>::default();
        cache.keep("a", Arc::new(1), cache.ticket());
        assert!(cache.get("a").is_none(), "unwatched: nothing kept");
        cache.set_watched(true);
        cache.keep("a", Arc::new(1), cache.ticket());
        assert_eq!(cache.get("a").as_deref(), Some(&1));
        // A read that started before a change is not kept after it.
        let before = cache.ticket();
        cache.changed();
        assert!(cache.get("a").is_none(), "a change forgets everything");
        cache.keep("a", Arc::new(2), before);
        assert!(cache.get("a").is_none(), "a stale read is not kept");
        cache.keep("a", Arc::new(3), cache.ticket());
        assert_eq!(cache.get("a").as_deref(), Some(&3));
        // Losing the watcher stops serving at once.
        cache.set_watched(false);
        assert!(cache.get("a").is_none());
        cache.set_watched(true);
        assert!(cache.get("a").is_none(), "reconnecting starts empty");
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = GrantCache::<u32>::default();
        cache.set_watched(true);
        for n in 0..CAPACITY + 5 {
            cache.keep(&n.to_string(), Arc::new(0), cache.ticket());
        }
        assert!(cache.entries().len() <= CAPACITY);
    }
}
