//! The credential store. Callers never get the store's full power: they get
//! a handle for their role (`OwnerHandle`, `AdminHandle`, `RunnerHandle`)
//! whose methods are exactly what that role may do. An admin handle has no
//! method that returns a secret or a hint, so no query shape can leak one.

mod admin;
pub mod audit;
mod batch;
mod checks;
mod credentials;
pub mod db;
mod event_log;
mod flows;
mod grant_cache;
mod lifecycle;
mod operator;
mod owner;
mod people;
mod proxy;
mod removal;
mod rotation;
mod runner;
mod sink;
mod webhooks;

pub use event_log::EventScope;
pub(crate) use flows::{seal_flow_text, FLOW_COMPLETING};
pub use flows::{FlowHolder, FlowRecord};
use std::future::Future;
use std::sync::{Arc, OnceLock};

use chrono::{Duration, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, TransactionTrait};

pub use admin::{AdminHandle, AuditEntry};
pub(crate) use checks::system_key_fingerprint;
pub use checks::{CheckTarget, SystemKeyCheck};
pub use credentials::CredentialMeta;
pub(crate) use credentials::{NewCredential, Origin, StoredSecret};
pub use grant_cache::CHANNEL as GRANTS_CHANNEL;
pub use lifecycle::{RefreshOutcome, RefreshReport, ScanReport, EXPIRING_MESSAGE};
pub use operator::OperatorHandle;
pub use owner::OwnerHandle;
pub use people::{AccessToken, DeletedPerson, JwtPerson, Person, TokenKind, JWT_TOKEN_ID};
pub use proxy::{DeliverySettings, GrantView, Loan, ProxyHandle, Refusal, TaskUsage, TokenAnswer, Usage};
pub use removal::{Remaining, Removal, Removed};
pub use runner::{Issued, RunnerHandle, TaskId};
pub use sink::{Channel, EventSink};
pub use webhooks::{
    AttemptEnd, AttemptResult, DueDelivery, Health, NewWebhook, Webhook, WebhookBounds, WebhookChange, WebhookDelivery,
    MAX_DELIVERY_PAGE,
};

use batch::Batcher;

use crate::auth::{hashes_match, BearerToken, Principal};
use crate::crypto::Keyring;
use crate::entities::{access_token, user};
use crate::error::{ApiError, ApiResult};
use crate::events::EventBus;
use crate::providers::revoke::Revoker;
use crate::providers::Providers;
use crate::system_keys::SystemKeys;

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    /// For hot reads (token lookups, issuance): read-only connections on
    /// SQLite, the same pool on PostgreSQL. Sees every committed write.
    reader: DatabaseConnection,
    keys: Keyring,
    events: EventBus,
    sink: Arc<dyn EventSink>,
    system_keys: SystemKeys,
    task_lease: Duration,
    providers: Providers,
    revoker: Revoker,
    /// Token lookups of concurrent requests, one query per batch.
    auth_batch: OnceLock<Batcher<String, Principal>>,
    /// JWT people of concurrent requests by (issuer, subject), one query per batch.
    jwt_people_batch: OnceLock<Batcher<(String, String), Option<crate::entities::user::Model>>>,
    /// Credential listings of concurrent requests, one query per batch.
    listing_batch: OnceLock<Batcher<String, Vec<CredentialMeta>>>,
    /// Task issuances of concurrent requests, one transaction per batch.
    issue_batch: OnceLock<Batcher<runner::IssueRequest, runner::Decision>>,
    /// Wall-clock and monotonic time (`crate::clock`).
    clock: crate::clock::Clock,
    /// This instance's id and the refreshes it has in flight (`lifecycle`).
    refreshes: lifecycle::Refreshes,
    /// Files or proxy placeholders, and where the proxy is (`proxy.rs`).
    delivery: OnceLock<proxy::DeliverySettings>,
    /// The egress proxy's grants between requests (`grant_cache.rs`).
    grants: grant_cache::GrantCache<proxy::Joined>,
}

/// Most requests one batch takes (bounds the `IN (…)` lists and the
/// multi-row inserts).
const BATCH_MAX: usize = 64;
/// Token-lookup batches in flight at once (reads: they run side by side).
const AUTH_WORKERS: usize = 2;
/// Issuance batches in flight at once. One: issuances end in the single
/// writer anyway, and fewer, larger batches share each disk sync.
pub(super) const ISSUE_WORKERS: usize = 1;

/// What the store needs besides the database and the keys.
pub struct StoreSettings {
    pub system_keys: SystemKeys,
    /// How long an issued credential stays leased to its task.
    pub task_lease: std::time::Duration,
    /// Token endpoints, for refreshing.
    pub providers: Providers,
    /// Revocation at the provider, for removed credentials.
    pub revoker: Revoker,
    /// This process's subscribers.
    pub events: EventBus,
    /// Where recorded events and flow changes are announced.
    pub sink: Arc<dyn EventSink>,
}

/// A page of results and the cursor for the next one.
pub struct Page<T> {
    pub nodes: Vec<T>,
    pub next_cursor: Option<String>,
}

/// An email address, checked at the edge and stored in lower case.
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> ApiResult<Email> {
        let email = raw.trim().to_lowercase();
        let valid = email.len() <= 320
            && !email.chars().any(|c| c.is_whitespace() || c.is_control())
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && !domain.is_empty() && !domain.contains('@') && !domain.starts_with('.')
            });
        if valid {
            // Mixed scripts and look-alikes (issue 21): `аdmin@…` with a Cyrillic а.
            people::check_confusable(&email).map_err(ApiError::BadInput)?;
            Ok(Email(email))
        } else {
            Err(ApiError::bad_input("email must be an address like name@example.com (at most 320 characters)"))
        }
    }
}

/// The associated-data field of a flow's secret (see `flows`).
pub(crate) const FLOW_FIELD: &str = "flow";
/// The associated-data field of a device flow's sealed user code.
pub(crate) const FLOW_USER_CODE_FIELD: &str = "user_code";
/// The associated-data field of a device flow's sealed `verification_uri_complete`
/// (the link carries the user code).
pub(crate) const FLOW_VERIFICATION_URI_FIELD: &str = "verification_uri_complete";

const TOKEN_TOUCH_INTERVAL: Duration = Duration::minutes(5);

/// Free space a full disk must have again before `/ready` tries a write.
const ROOM_AFTER_FULL: u64 = 512 * 1024;

impl Store {
    pub fn new(db: DatabaseConnection, reader: DatabaseConnection, keys: Keyring, settings: StoreSettings) -> Store {
        let StoreSettings { system_keys, task_lease, providers, revoker, events, sink } = settings;
        let task_lease = Duration::from_std(task_lease).unwrap_or(Duration::hours(2));
        Store {
            inner: Arc::new(Inner {
                db,
                reader,
                keys,
                events,
                sink,
                system_keys,
                task_lease,
                providers,
                revoker,
                auth_batch: OnceLock::new(),
                jwt_people_batch: OnceLock::new(),
                listing_batch: OnceLock::new(),
                issue_batch: OnceLock::new(),
                clock: crate::clock::Clock::system(),
                refreshes: lifecycle::Refreshes::default(),
                delivery: OnceLock::new(),
                grants: grant_cache::GrantCache::default(),
            }),
        }
    }

    /// The batcher in `cell`, started on first use. Its worker holds the
    /// store weakly, so dropping the last `Store` stops it.
    fn batcher<Req, Resp, Fut>(
        &self,
        workers: usize,
        cell: fn(&Inner) -> &OnceLock<Batcher<Req, Resp>>,
        run: fn(Store, Vec<Req>) -> Fut,
    ) -> &Batcher<Req, Resp>
    where
        Req: Send + 'static,
        Resp: Send + 'static,
        Fut: Future<Output = Vec<ApiResult<Resp>>> + Send + 'static,
    {
        cell(&self.inner).get_or_init(|| {
            let store = Arc::downgrade(&self.inner);
            Batcher::spawn(workers, BATCH_MAX, move |requests| {
                let store = store.upgrade().map(|inner| Store { inner });
                async move {
                    match store {
                        Some(store) => Some(run(store, requests).await),
                        None => None,
                    }
                }
            })
        })
    }

    pub(crate) fn providers(&self) -> &Providers {
        &self.inner.providers
    }

    pub(crate) fn revoker(&self) -> &Revoker {
        &self.inner.revoker
    }

    /// The clock every store decision reads (tests shift it: `crate::clock`).
    pub fn clock(&self) -> &crate::clock::Clock {
        &self.inner.clock
    }

    pub(crate) fn refreshes(&self) -> &lifecycle::Refreshes {
        &self.inner.refreshes
    }

    pub(crate) fn task_lease(&self) -> Duration {
        self.inner.task_lease
    }

    /// The writer. Private to the store: it is the only code that writes rows.
    pub(in crate::store) fn db(&self) -> &DatabaseConnection {
        &self.inner.db
    }

    pub(in crate::store) fn reader(&self) -> &DatabaseConnection {
        &self.inner.reader
    }

    pub(crate) fn keys(&self) -> &Keyring {
        &self.inner.keys
    }

    pub(crate) fn is_postgres(&self) -> bool {
        sea_orm::ConnectionTrait::get_database_backend(&self.inner.db) == sea_orm::DbBackend::Postgres
    }

    pub fn events(&self) -> &EventBus {
        &self.inner.events
    }

    pub(crate) fn sink(&self) -> &dyn EventSink {
        self.inner.sink.as_ref()
    }

    /// Announces `payload` on `channel` through the sink, in `db` (inside a
    /// transaction it goes out on commit). False when the sink keeps
    /// announcements in this process: the caller publishes locally then.
    pub(in crate::store) async fn announce<C: sea_orm::ConnectionTrait>(
        &self,
        db: &C,
        channel: Channel,
        payload: &impl serde::Serialize,
    ) -> ApiResult<bool> {
        let json = serde_json::to_string(payload).map_err(ApiError::internal)?;
        match self.sink().announce(channel, &json) {
            Some(statement) => {
                db.execute(statement).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    pub fn system_keys(&self) -> &SystemKeys {
        &self.inner.system_keys
    }

    pub fn key_fingerprint(&self) -> &str {
        self.inner.keys.current_fingerprint()
    }

    /// The metrics page: credential counts and pool gauges read through the
    /// store's connections (`crate::metrics::scrape`).
    pub async fn scrape_metrics(&self, separate_reader: bool) -> String {
        crate::metrics::scrape(self.db(), separate_reader.then(|| self.reader())).await
    }

    /// The PostgreSQL pool, for the relay's LISTEN connection (it reads
    /// notifications; it writes no rows).
    pub(crate) fn postgres_pool(&self) -> sea_orm::sqlx::PgPool {
        self.db().get_postgres_connection_pool().clone()
    }

    /// Runs `job` unless another instance holds its lock (PostgreSQL only;
    /// SQLite has one instance).
    pub async fn run_exclusive<F, Fut, T>(&self, lock: i64, job: F) -> ApiResult<Option<T>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = ApiResult<T>>,
    {
        let db = self.db();
        if !self.is_postgres() {
            return job().await.map(Some);
        }
        // The transaction only holds the lock; the job writes on its own.
        let guard = db.begin().await?;
        let row = guard
            .query_one(sea_orm::Statement::from_sql_and_values(
                sea_orm::DbBackend::Postgres,
                "SELECT pg_try_advisory_xact_lock($1) AS locked",
                [lock.into()],
            ))
            .await?;
        let locked: bool = row.map(|r| r.try_get("", "locked")).transpose()?.unwrap_or(false);
        if !locked {
            guard.rollback().await?;
            return Ok(None);
        }
        let result = job().await;
        guard.commit().await?;
        result.map(Some)
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        self.inner.db.ping().await.is_ok()
    }

    /// Why writes are refused right now, if they are (for `/ready`): after a
    /// write failed because the disk was full, the SQLite file's filesystem
    /// must have [`ROOM_AFTER_FULL`] free again (a small write can still fit
    /// in the space the write-ahead log already holds), and a one-row write
    /// that changes nothing must commit. Until then writes are refused with
    /// UNAVAILABLE anyway; after that, they are open again.
    pub async fn write_blocked(&self) -> Option<&'static str> {
        use std::sync::atomic::Ordering;
        const FULL: &str = "the disk is full: writes are refused until space is freed";
        if !crate::error::DISK_FULL.load(Ordering::Acquire) {
            return None;
        }
        if let Some(free) = self.sqlite_free_space().await {
            if free < ROOM_AFTER_FULL {
                return Some(FULL);
            }
        }
        let probe = "UPDATE seaql_migrations SET applied_at = applied_at \
                     WHERE version = (SELECT MAX(version) FROM seaql_migrations)";
        match sea_orm::ConnectionTrait::execute_unprepared(self.db(), probe).await {
            Ok(_) => {
                crate::error::DISK_FULL.store(false, Ordering::Release);
                tracing::info!("the disk has room again: writes commit");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "writes still fail");
                Some(FULL)
            }
        }
    }

    /// Bytes free (to this user) on the filesystem of the SQLite database
    /// file; `None` on PostgreSQL, in memory, or when it cannot be read.
    async fn sqlite_free_space(&self) -> Option<u64> {
        if self.is_postgres() {
            return None;
        }
        let row = self
            .db()
            .query_one(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Sqlite,
                "SELECT file FROM pragma_database_list WHERE name = 'main'",
            ))
            .await
            .ok()??;
        let file: String = row.try_get("", "file").ok()?;
        let dir = std::path::Path::new(&file).parent()?;
        let stat = rustix::fs::statvfs(dir).ok()?;
        Some(stat.f_bavail.saturating_mul(stat.f_frsize))
    }

    /// Resolves a bearer token to its principal; revoked or unknown tokens
    /// are refused alike. Every request reads the database (a revocation
    /// made by another process counts at once); concurrent requests share
    /// one lookup.
    pub async fn authenticate(&self, token: &BearerToken) -> ApiResult<Principal> {
        self.authenticate_hash(token.hash()).await
    }

    /// As `authenticate`, by the stored hash (a long-lived WebSocket keeps
    /// only the hash of its token, never the token).
    pub async fn authenticate_hash(&self, hash: String) -> ApiResult<Principal> {
        self.batcher(AUTH_WORKERS, |inner| &inner.auth_batch, Store::authenticate_batch).submit(hash).await
    }

    async fn authenticate_batch(self, hashes: Vec<String>) -> Vec<ApiResult<Principal>> {
        match self.lookup_tokens(&hashes).await {
            Ok(principals) => principals,
            Err(e) => batch::fail_all(hashes.len(), &e),
        }
    }

    async fn lookup_tokens(&self, hashes: &[String]) -> ApiResult<Vec<ApiResult<Principal>>> {
        let db = self.reader();
        let now = Utc::now();
        // One statement: the tokens and, for USER tokens, their person.
        let found: Vec<(access_token::Model, Option<user::Model>)> = access_token::Entity::find()
            .filter(access_token::Column::TokenHash.is_in(batch::distinct(hashes.iter().map(String::as_str))))
            .filter(access_token::Column::RevokedAt.is_null())
            .filter(people::not_expired(now))
            .find_also_related(user::Entity)
            .all(db)
            .await?;
        let stale: Vec<&str> = found
            .iter()
            .map(|(t, _)| t)
            .filter(|t| t.last_used_at.is_none_or(|at| now - at > TOKEN_TOUCH_INTERVAL))
            .map(|t| t.id.as_str())
            .collect();
        if !stale.is_empty() {
            // Best effort: a full disk or a busy database must not refuse
            // reads (the next request tries again).
            let touched = access_token::Entity::update_many()
                .col_expr(access_token::Column::LastUsedAt, Expr::value(now))
                .filter(access_token::Column::Id.is_in(stale))
                .exec(self.db())
                .await;
            if let Err(e) = touched {
                tracing::warn!(error = %e, "could not record when tokens were last used");
            }
        }

        let refused =
            || ApiError::Unauthenticated("the token is unknown, revoked or expired; ask an admin for a new one".into());
        let principal = |hash: &String| -> ApiResult<Principal> {
            // The lookup was by hash; match again in constant time so timing
            // reveals nothing about near-misses in any index implementation.
            let (row, user) = found.iter().find(|(t, _)| hashes_match(&t.token_hash, hash)).ok_or_else(refused)?;
            match (row.kind.as_str(), user) {
                ("RUNNER", _) => Ok(Principal::Runner {
                    token_id: row.id.clone(),
                    name: row.name.clone().unwrap_or_default(),
                    created_by: row.created_by.clone().unwrap_or_else(|| people::UNKNOWN_CREATOR.into()),
                }),
                ("USER", Some(user)) if user.disabled_at.is_some() => Err(people::person_disabled()),
                // People who sign in with the IdP act only through its JWTs (issue 21).
                ("USER", Some(user)) if user.issuer.is_some() => Err(people::jwt_person_token()),
                ("USER", Some(user)) => Ok(Principal::Person {
                    user_id: user.id.clone(),
                    role: user.role.parse().map_err(ApiError::internal)?,
                    token_id: row.id.clone(),
                }),
                // A USER token whose person is gone counts as revoked.
                ("USER", None) => Err(refused()),
                _ => Err(ApiError::internal(anyhow::anyhow!("access token {} has an invalid kind", row.id))),
            }
        };
        Ok(hashes.iter().map(principal).collect())
    }

    /// The caller's own credentials. Any person may hold credentials; a
    /// runner is not a person.
    pub fn owner(&self, principal: &Principal) -> ApiResult<OwnerHandle> {
        match principal {
            Principal::Person { .. } => Ok(OwnerHandle::new(self.clone(), principal.clone())),
            Principal::Runner { .. } => Err(ApiError::forbidden("a runner token cannot manage credentials")),
        }
    }

    /// The task runner's handle: the only way to plaintext.
    pub fn runner(&self, principal: &Principal) -> ApiResult<RunnerHandle> {
        match principal {
            Principal::Runner { .. } => Ok(RunnerHandle::new(self.clone(), principal.clone())),
            Principal::Person { .. } => Err(ApiError::forbidden("only the task runner's token may do this")),
        }
    }

    pub fn admin(&self, principal: &Principal) -> ApiResult<AdminHandle> {
        if principal.is_admin() {
            Ok(AdminHandle::new(self.clone(), principal.clone()))
        } else {
            Err(ApiError::forbidden("this needs the ADMIN role"))
        }
    }

    /// User metadata (email, role); nothing secret.
    pub async fn user(&self, id: &str) -> ApiResult<Option<Person>> {
        user::Entity::find_by_id(id).one(self.db()).await?.map(Person::try_from).transpose()
    }
}
