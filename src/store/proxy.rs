//! Proxy delivery in the store: the grants a task's placeholders name, and
//! the egress proxy's handle on them. The handle can only lend the real
//! value behind a live placeholder, answer a refresh with placeholders, and
//! add to a grant's usage. It is not a principal: what it may reach is
//! decided by the grant the placeholder names, checked on every request
//! against the rows every instance shares, as last read: a grant read once
//! is kept until a change that could end it is heard of
//! (`grant_cache.rs`), so an end is seen at once here and, on other
//! instances, as soon as PostgreSQL's notification arrives.

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set, TransactionTrait};
use zeroize::Zeroizing;

use crate::credential_input::{Secret, SubscriptionSecret};
use crate::delivery::{Field, Found, GrantId, ProxyAccess};
use crate::domain::{Agent, CredentialKind, CredentialSource, CredentialStatus, Delivery, Provider};
use crate::entities::{access_token, credential, proxy_grant, user};
use crate::error::{ApiError, ApiResult};
use crate::store::audit::{self, Action, Actor};
use crate::store::credentials::StoredSecret;
use crate::store::{RefreshOutcome, Store};

/// A login whose real access token expires sooner than this is refreshed
/// before the proxy lends it or answers a refresh with it.
const REFRESH_MARGIN: chrono::Duration = chrono::Duration::seconds(120);
/// Turns while another party refreshes the login (250 ms each).
const REFRESH_TURNS: usize = 40;
const REFRESH_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

#[derive(Clone)]
pub struct ProxyHandle {
    store: Store,
}

impl Store {
    /// The egress proxy's handle (built once by `app`, never from a request).
    pub fn proxy(&self) -> ProxyHandle {
        ProxyHandle { store: self.clone() }
    }

    /// How tasks receive credentials: set once by `app` after the proxy
    /// (if any) is listening. Unset: `FILES`, and no proxy.
    pub fn set_delivery(&self, settings: DeliverySettings) {
        if self.inner.delivery.set(settings).is_err() {
            tracing::warn!("task delivery settings were set twice; the first stay");
        }
    }

    pub(in crate::store) fn delivery(&self) -> &DeliverySettings {
        static FILES: DeliverySettings = DeliverySettings { default: Delivery::Files, proxy: None };
        self.inner.delivery.get().unwrap_or(&FILES)
    }
}

/// The default delivery (`SESAME_TASKS__DEFAULT_DELIVERY`) and where the
/// egress proxy is, when one runs.
#[derive(Clone, Debug)]
pub struct DeliverySettings {
    pub default: Delivery,
    pub proxy: Option<ProxyAccess>,
}

/// A live grant as the proxy sees it: nothing secret.
#[derive(Clone, Debug)]
pub struct GrantView {
    /// The grant's key (SHA-256 of its id): usage is added under it.
    pub key: String,
    pub task_id: String,
    pub owner_id: String,
    pub agent: Agent,
    pub provider: Provider,
    pub source: CredentialSource,
}

/// A real value lent for one request; zeroised when dropped.
pub struct Loan {
    pub grant: GrantView,
    pub secret: Zeroizing<String>,
}

/// Why the proxy refuses a placeholder: a short text for the 403 body (never
/// a secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal(pub String);

impl Refusal {
    fn new(why: impl Into<String>) -> Refusal {
        Refusal(why.into())
    }
}

/// The proxy's own answer at a token endpoint: placeholders (never a real
/// token) and the real access token's expiry.
#[derive(Debug)]
pub struct TokenAnswer {
    pub grant: GrantView,
    pub access_token: String,
    pub refresh_token: String,
    pub id_token: Option<String>,
    /// Seconds until the real access token expires (None: not known).
    pub expires_in: Option<i64>,
}

/// What a task spent through the proxy, added up per grant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub requests: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// What a task spent with one provider, as the API shows it.
#[derive(Clone, Debug)]
pub struct TaskUsage {
    pub task_id: String,
    pub owner_id: String,
    pub agent: Agent,
    pub provider: Provider,
    pub source: CredentialSource,
    pub usage: Usage,
    pub issued_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// A database failure, as the proxy says it (the cause goes to the log).
fn unavailable(e: impl Into<ApiError>) -> Refusal {
    let e: ApiError = e.into();
    tracing::warn!(error = ?e, "proxy: the store could not answer");
    Refusal::new("the vault could not check this placeholder right now; try again")
}

/// The query behind [`ProxyHandle::joined`]: a grant by its key (the one
/// value bound) with its credential (`B_…`), its person (`p_id`,
/// `p_disabled_at`) and its runner token (`t_id`, `t_revoked_at`,
/// `t_expires_at`), LEFT JOINed.
fn joined_sql(backend: sea_orm::DbBackend) -> String {
    use sea_orm::{JoinType, QuerySelect, QueryTrait, RelationDef};
    let to_credential: RelationDef = proxy_grant::Entity::belongs_to(credential::Entity)
        .from(proxy_grant::Column::CredentialId)
        .to(credential::Column::Id)
        .into();
    let to_person: RelationDef =
        proxy_grant::Entity::belongs_to(user::Entity).from(proxy_grant::Column::OwnerId).to(user::Column::Id).into();
    let to_token: RelationDef = proxy_grant::Entity::belongs_to(access_token::Entity)
        .from(proxy_grant::Column::RunnerTokenId)
        .to(access_token::Column::Id)
        .into();
    let statement = proxy_grant::Entity::find_by_id(String::new())
        .join(JoinType::LeftJoin, to_credential)
        .join(JoinType::LeftJoin, to_person)
        .join(JoinType::LeftJoin, to_token)
        .select_also(credential::Entity)
        .column_as(user::Column::Id, "p_id")
        .column_as(user::Column::DisabledAt, "p_disabled_at")
        .column_as(access_token::Column::Id, "t_id")
        .column_as(access_token::Column::RevokedAt, "t_revoked_at")
        .column_as(access_token::Column::ExpiresAt, "t_expires_at")
        .build(backend);
    assert_eq!(statement.values.map_or(0, |v| v.0.len()), 1, "the grant query binds its key only");
    statement.sql
}

/// A grant as one query reads it: the grant, its person's `disabled_at`
/// (None: deleted), its runner token's revocation and expiry (None: no
/// token row), its credential (None: the system key, or removed; sealed).
/// What the grant cache keeps.
pub(in crate::store) struct Joined {
    grant: proxy_grant::Model,
    person: Option<Option<DateTime<Utc>>>,
    token: Option<TokenEnds>,
    row: Option<credential::Model>,
}

/// A runner token's `revoked_at` and `expires_at`.
type TokenEnds = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// A live grant and the credential row it lends from (`joined.row`; None:
/// the system key).
struct Live {
    joined: Arc<Joined>,
    view: GrantView,
}

fn view_of(g: &proxy_grant::Model) -> Result<GrantView, Refusal> {
    let parse = |what: &str| Refusal::new(format!("this grant's {what} is not one this vault knows"));
    Ok(GrantView {
        key: g.id_hash.clone(),
        task_id: g.task_id.clone(),
        owner_id: g.owner_id.clone(),
        agent: g.agent.parse().map_err(|_| parse("agent"))?,
        provider: g.provider.parse().map_err(|_| parse("provider"))?,
        source: g.source.parse().map_err(|_| parse("source"))?,
    })
}

impl ProxyHandle {
    /// The grant `id` names, if it is live: issued and not ended (returned,
    /// lease over, credential removed or replaced, person disabled or
    /// deleted, runner token revoked).
    async fn live(&self, id: &GrantId) -> Result<Live, Refusal> {
        let key = id.hash();
        let cache = &self.store.inner.grants;
        let kept = cache.get(&key);
        crate::metrics::proxy_grant_lookup(kept.is_some());
        let joined = match kept {
            Some(hit) => hit,
            None => {
                let ticket = cache.ticket();
                // One read: the grant with its person, runner token and
                // credential; kept until a change to any of them is heard of.
                let joined = Arc::new(
                    self.joined(&key)
                        .await
                        .map_err(unavailable)?
                        .ok_or_else(|| Refusal::new("this placeholder was never issued by this vault"))?,
                );
                cache.keep(&key, joined.clone(), ticket);
                joined
            }
        };
        let now = self.store.clock().now();
        let Joined { grant, person, token, row } = &*joined;
        if let Some(at) = grant.ended_at {
            let why = grant.end_reason.as_deref().unwrap_or("ended");
            return Err(Refusal::new(format!("this task's credentials ended at {}: {why}", at.format("%F %T UTC"))));
        }
        if grant.expires_at <= now {
            return Err(Refusal::new("this task's lease is over; the runner must issue credentials again"));
        }
        match person {
            None => return Err(Refusal::new("the person these credentials belong to was deleted")),
            Some(disabled_at) if disabled_at.is_some() => {
                return Err(Refusal::new("the person these credentials belong to is disabled"))
            }
            Some(_) => {}
        }
        // A runner signed in through the IdP has no token row.
        if let Some((revoked_at, expires_at)) = token {
            if revoked_at.is_some() || expires_at.is_some_and(|e| e <= now) {
                return Err(Refusal::new("the runner token that issued these credentials was revoked"));
            }
        }
        if grant.credential_id.is_some() && row.is_none() {
            return Err(Refusal::new("the credential was removed"));
        }
        let view = view_of(grant)?;
        Ok(Live { joined, view })
    }

    /// The grant `id` names, joined in one query with its person (their
    /// `disabled_at`), its runner token (revoked, expiry) and its credential.
    async fn joined(&self, key: &str) -> Result<Option<Joined>, sea_orm::DbErr> {
        use sea_orm::{DbBackend, FromQueryResult, Statement};
        // The SQL is the same every time but for the id: built once per
        // backend (building it cost as much as running it).
        static SQLITE: OnceLock<String> = OnceLock::new();
        static POSTGRES: OnceLock<String> = OnceLock::new();
        static MYSQL: OnceLock<String> = OnceLock::new();
        let db = self.store.reader();
        let backend = db.get_database_backend();
        let sql = match backend {
            DbBackend::Sqlite => &SQLITE,
            DbBackend::Postgres => &POSTGRES,
            DbBackend::MySql => &MYSQL,
        }
        .get_or_init(|| joined_sql(backend));
        let statement = Statement::from_sql_and_values(backend, sql.as_str(), [key.into()]);
        let Some(r) = db.query_one(statement).await? else { return Ok(None) };
        let grant = proxy_grant::Model::from_query_result(&r, "A_")?;
        let row = match r.try_get::<Option<String>>("B_", "id")? {
            Some(_) => Some(credential::Model::from_query_result(&r, "B_")?),
            None => None,
        };
        let person = match r.try_get::<Option<String>>("", "p_id")? {
            Some(_) => Some(r.try_get::<Option<DateTime<Utc>>>("", "p_disabled_at")?),
            None => None,
        };
        let token = match r.try_get::<Option<String>>("", "t_id")? {
            Some(_) => Some((
                r.try_get::<Option<DateTime<Utc>>>("", "t_revoked_at")?,
                r.try_get::<Option<DateTime<Utc>>>("", "t_expires_at")?,
            )),
            None => None,
        };
        Ok(Some(Joined { grant, person, token, row }))
    }

    /// The real value behind `found`, if its grant is live. A refresh-token
    /// placeholder is never lent: [`ProxyHandle::refresh`] answers it.
    pub async fn lend(&self, found: &Found) -> Result<Loan, Refusal> {
        if found.field == Field::Refresh {
            return Err(Refusal::new(
                "a refresh token is answered by the vault's proxy at the provider's token endpoint, never sent on",
            ));
        }
        let live = self.live(&found.grant).await?;
        let refreshed;
        let row = match &live.joined.row {
            Some(row) if needs_refresh(row, self.store.clock().now()) => {
                refreshed = self.fresh(row.clone()).await?;
                Some(&refreshed)
            }
            row => row.as_ref(),
        };
        let secret = match (row, found.field) {
            (None, Field::ApiKey) => match self.store.system_keys().get(live.view.provider) {
                Some(key) => Zeroizing::new(key.expose().to_owned()),
                None => return Err(Refusal::new("the system-wide key was unset after this task started")),
            },
            (None, _) => return Err(Refusal::new("this placeholder does not match what the task was issued")),
            (Some(row), field) => {
                let opened = self.store.open_secret(row).map_err(unavailable)?;
                match (opened, field) {
                    (StoredSecret::ApiKey { key }, Field::ApiKey) => Zeroizing::new(key.expose().to_owned()),
                    (StoredSecret::Subscription(s), Field::Access) => {
                        Zeroizing::new(s.access_token.expose().to_owned())
                    }
                    (StoredSecret::Subscription(s), Field::IdToken) => match &s.id_token {
                        Some(t) => Zeroizing::new(t.expose().to_owned()),
                        None => return Err(Refusal::new("this login has no id token")),
                    },
                    _ => return Err(Refusal::new("this placeholder does not match what the task was issued")),
                }
            }
        };
        if live.joined.grant.first_used_at.is_none() {
            self.first_use(&live).await.map_err(unavailable)?;
            // Read again next time: it is recorded now.
            self.store.inner.grants.forget(&live.view.key);
        }
        Ok(Loan { grant: live.view, secret })
    }

    /// Audits a task's first use of its credential (once, however many
    /// instances race to it).
    async fn first_use(&self, live: &Live) -> ApiResult<()> {
        let grant = &live.joined.grant;
        let now = self.store.clock().now();
        let txn = self.store.db().begin().await?;
        let first = proxy_grant::Entity::update_many()
            .col_expr(proxy_grant::Column::FirstUsedAt, Expr::value(now))
            .filter(proxy_grant::Column::IdHash.eq(grant.id_hash.as_str()))
            .filter(proxy_grant::Column::FirstUsedAt.is_null())
            .exec(&txn)
            .await?
            .rows_affected
            == 1;
        if first {
            audit::record(
                &txn,
                Actor::System,
                Action::ProxyFirstUse,
                audit::Entry {
                    owner_id: Some(&grant.owner_id),
                    credential_id: grant.credential_id.as_deref(),
                    provider: Some(live.view.provider),
                    agent: Some(live.view.agent),
                    task_id: Some(&grant.task_id),
                    detail: Some(format!("source {}; first request through the egress proxy", live.view.source)),
                },
            )
            .await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// `row` with an access token that lasts past the margin: refreshed for
    /// real through the single-use claim if it needs it (of many tasks that
    /// ask at once, one refreshes; the others wait for its tokens).
    async fn fresh(&self, mut row: credential::Model) -> Result<credential::Model, Refusal> {
        for _ in 0..REFRESH_TURNS {
            let now = self.store.clock().now();
            if !needs_refresh(&row, now) {
                return Ok(row);
            }
            if row.status == CredentialStatus::NeedsReauth.as_str() {
                return Err(Refusal::new("the login needs its person to sign in again"));
            }
            if self.store.refreshes().claim_is_live(&row, now) {
                // Another party is refreshing it: wait for its tokens.
                tokio::time::sleep(REFRESH_WAIT).await;
            } else {
                match self.store.refresh_credential(row.clone(), now).await.map_err(unavailable)? {
                    RefreshOutcome::NeedsReauth => {
                        return Err(Refusal::new("the provider refused the login; its person must sign in again"))
                    }
                    RefreshOutcome::Transient => break,
                    // The kept rows hold the old token: read them afresh
                    // (other instances hear it from the trigger).
                    RefreshOutcome::Refreshed => self.store.grants_changed(),
                    RefreshOutcome::Skipped => {}
                }
            }
            let claimed_before = self.store.refreshes().claim_is_live(&row, self.store.clock().now());
            row = self.reread(&row.id).await?;
            let now = self.store.clock().now();
            // Skipped with nobody refreshing: a task issued with FILES holds
            // the refresh token (the vault leaves the login to it). Use what
            // there is rather than wait.
            if needs_refresh(&row, now) && !claimed_before && !self.store.refreshes().claim_is_live(&row, now) {
                break;
            }
        }
        if row.expires_at.is_some_and(|t| t > self.store.clock().now()) {
            Ok(row)
        } else {
            Err(Refusal::new("the login has expired and could not be refreshed right now; try again later"))
        }
    }

    async fn reread(&self, id: &str) -> Result<credential::Model, Refusal> {
        credential::Entity::find_by_id(id.to_owned())
            .one(self.store.db())
            .await
            .map_err(unavailable)?
            .ok_or_else(|| Refusal::new("the credential was removed"))
    }

    /// Answers a refresh at the provider's token endpoint for the grant of
    /// the refresh placeholder `found`: refreshes for real only when the
    /// real access token needs it, then hands out placeholders.
    ///
    /// `endpoint` is the host and path it was asked at: only the grant's
    /// provider's token endpoint is answered, before anything is refreshed.
    pub async fn refresh(&self, found: &Found, endpoint: (&str, &str)) -> Result<TokenAnswer, Refusal> {
        if found.field != Field::Refresh {
            return Err(Refusal::new("the refresh_token is not this task's refresh-token placeholder"));
        }
        let live = self.live(&found.grant).await?;
        if !crate::providers::spec(live.view.provider).egress.is_token_endpoint(endpoint.0, endpoint.1) {
            return Err(Refusal::new("this task's refresh token is not for this provider's token endpoint"));
        }
        let Some(row) = &live.joined.row else {
            return Err(Refusal::new("an API key is never refreshed"));
        };
        let row = self.fresh(row.clone()).await?;
        let StoredSecret::Subscription(real) = self.store.open_secret(&row).map_err(unavailable)? else {
            return Err(Refusal::new("this credential is an API key now; the runner must issue credentials again"));
        };
        let placeholders = placeholders_for(&found.grant, live.view.provider, &real);
        let now = self.store.clock().now();
        Ok(TokenAnswer {
            grant: live.view,
            access_token: placeholders.access_token.expose().to_owned(),
            refresh_token: GrantId::placeholder(&found.grant, "", Field::Refresh),
            id_token: placeholders.id_token.as_ref().map(|t| t.expose().to_owned()),
            expires_in: row.expires_at.map(|t| (t - now).num_seconds().max(0)),
        })
    }

    /// Watches for changes that could end a grant, so the grants read are
    /// kept between requests (`grant_cache.rs`). SQLite: reads the
    /// triggers' counter every [`POLL`](super::grant_cache::POLL) until the
    /// shutdown signal or the store is dropped; while it cannot read, every
    /// request reads its grant. PostgreSQL: `None`, the relay's LISTEN
    /// watches.
    pub fn watch(&self) -> Option<tokio::task::JoinHandle<()>> {
        if sea_orm::ConnectionTrait::get_database_backend(self.store.db()) != sea_orm::DbBackend::Sqlite {
            return None;
        }
        /// However the watcher ends (the signal, an abort, a panic): nothing
        /// is kept any more.
        struct Unwatch(std::sync::Weak<super::Inner>);
        impl Drop for Unwatch {
            fn drop(&mut self) {
                if let Some(inner) = self.0.upgrade() {
                    inner.grants.set_watched(false);
                }
            }
        }
        let store = Arc::downgrade(&self.store.inner);
        Some(tokio::spawn(async move {
            let _unwatch = Unwatch(store.clone());
            let mut tick = tokio::time::interval(super::grant_cache::POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let (mut last, mut warned): (Option<i64>, bool) = (None, false);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = crate::shutdown::triggered() => return,
                }
                let Some(inner) = store.upgrade() else { return };
                let store = Store { inner };
                match store.proxy_epoch().await {
                    Ok(now) if last == Some(now) => {}
                    Ok(now) => {
                        if last.is_none() {
                            // Without its triggers the counter never moves.
                            if !store.grant_triggers_present().await {
                                return;
                            }
                            store.inner.grants.set_watched(true);
                            warned = false;
                        } else {
                            store.grants_changed();
                        }
                        last = Some(now);
                    }
                    Err(e) => {
                        last = None;
                        store.inner.grants.set_watched(false);
                        if !std::mem::replace(&mut warned, true) {
                            tracing::warn!(error = %e, "proxy: cannot read grant changes; every request reads its grant");
                        }
                    }
                }
            }
        }))
    }

    /// Whether the grant of `found` is kept now (for tests: that an end
    /// reaches a kept grant, not a fresh read).
    #[doc(hidden)]
    pub fn is_kept(&self, found: &Found) -> bool {
        self.store.inner.grants.get(&found.grant.hash()).is_some()
    }

    /// Whether grants are kept between requests now (a watcher hears of
    /// every change that could end one).
    pub fn is_watching(&self) -> bool {
        self.store.inner.grants.is_watched()
    }

    /// Adds `usage` to the grant with key `grant_key`.
    pub async fn add_usage(&self, grant_key: &str, usage: Usage) -> ApiResult<()> {
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let add = |col: proxy_grant::Column, v: u64| Expr::col(col).add(n(v));
        proxy_grant::Entity::update_many()
            .col_expr(proxy_grant::Column::Requests, add(proxy_grant::Column::Requests, usage.requests))
            .col_expr(proxy_grant::Column::BytesSent, add(proxy_grant::Column::BytesSent, usage.bytes_sent))
            .col_expr(proxy_grant::Column::BytesReceived, add(proxy_grant::Column::BytesReceived, usage.bytes_received))
            .col_expr(proxy_grant::Column::InputTokens, add(proxy_grant::Column::InputTokens, usage.input_tokens))
            .col_expr(proxy_grant::Column::OutputTokens, add(proxy_grant::Column::OutputTokens, usage.output_tokens))
            .filter(proxy_grant::Column::IdHash.eq(grant_key))
            .exec(self.store.db())
            .await?;
        Ok(())
    }
}

fn needs_refresh(row: &credential::Model, now: DateTime<Utc>) -> bool {
    row.kind == CredentialKind::Subscription.as_str()
        && row.has_refresh_token
        && row.expires_at.is_some_and(|t| t <= now + REFRESH_MARGIN)
}

/// The placeholders a task holds for a subscription: the access token and
/// id token keep a JWT's header and claims (Codex reads their expiry and
/// account); every value keeps only its provider's public prefix.
pub(in crate::store) fn placeholders_for(
    grant: &GrantId,
    provider: Provider,
    real: &SubscriptionSecret,
) -> SubscriptionSecret {
    let egress = &crate::providers::spec(provider).egress;
    let token = |value: &Secret, field: Field| {
        let v = value.expose();
        Secret::new(if v.split('.').count() == 3 {
            grant.jwt_placeholder(v, field)
        } else {
            grant.placeholder(egress.prefix_of(v), field)
        })
    };
    let mut out = real.clone();
    out.access_token = token(&real.access_token, Field::Access);
    out.refresh_token = real
        .refresh_token
        .as_ref()
        .map(|t| Secret::new(grant.placeholder(egress.prefix_of(t.expose()), Field::Refresh)));
    out.id_token = real.id_token.as_ref().map(|t| token(t, Field::IdToken));
    out
}

/// The placeholder a task holds for an API key.
pub(in crate::store) fn api_key_placeholder(grant: &GrantId, provider: Provider, real: &str) -> String {
    grant.placeholder(crate::providers::spec(provider).egress.prefix_of(real), Field::ApiKey)
}

impl Store {
    /// Ends the live grants of `credential_id` (a save replaced it), in the
    /// caller's transaction.
    pub(in crate::store) async fn end_grants_of_credential<C: ConnectionTrait>(
        &self,
        txn: &C,
        credential_id: &str,
        why: &str,
    ) -> ApiResult<()> {
        proxy_grant::Entity::update_many()
            .col_expr(proxy_grant::Column::EndedAt, Expr::value(self.clock().now()))
            .col_expr(proxy_grant::Column::EndReason, Expr::value(why))
            .filter(proxy_grant::Column::CredentialId.eq(credential_id))
            .filter(proxy_grant::Column::EndedAt.is_null())
            .exec(txn)
            .await?;
        Ok(())
    }

    /// Ends the live grants of a task issued by `runner_token_id` (the task
    /// returned); how many ended.
    pub(in crate::store) async fn end_grants_of_task<C: ConnectionTrait>(
        &self,
        txn: &C,
        task_id: &str,
        runner_token_id: &str,
    ) -> ApiResult<u64> {
        Ok(proxy_grant::Entity::update_many()
            .col_expr(proxy_grant::Column::EndedAt, Expr::value(self.clock().now()))
            .col_expr(proxy_grant::Column::EndReason, Expr::value("the task returned its credentials"))
            .filter(proxy_grant::Column::TaskId.eq(task_id))
            .filter(proxy_grant::Column::RunnerTokenId.eq(runner_token_id))
            .filter(proxy_grant::Column::EndedAt.is_null())
            .exec(txn)
            .await?
            .rows_affected)
    }

    /// A task's usage, one entry per grant (`owner`: only that person's).
    pub(in crate::store) async fn task_usage(&self, task_id: &str, owner: Option<&str>) -> ApiResult<Vec<TaskUsage>> {
        let mut q = proxy_grant::Entity::find().filter(proxy_grant::Column::TaskId.eq(task_id));
        if let Some(owner) = owner {
            q = q.filter(proxy_grant::Column::OwnerId.eq(owner));
        }
        q.order_by_asc(proxy_grant::Column::IssuedAt).all(self.reader()).await?.iter().map(usage_of).collect()
    }

    /// Every grant of a person issued since `since`, newest first (at most
    /// `limit`), for their usage summary.
    pub(in crate::store) async fn person_usage(
        &self,
        owner_id: &str,
        since: DateTime<Utc>,
        limit: u64,
    ) -> ApiResult<Vec<TaskUsage>> {
        use sea_orm::QuerySelect;
        proxy_grant::Entity::find()
            .filter(proxy_grant::Column::OwnerId.eq(owner_id))
            .filter(proxy_grant::Column::IssuedAt.gte(since))
            .order_by_desc(proxy_grant::Column::IssuedAt)
            .limit(limit)
            .all(self.reader())
            .await?
            .iter()
            .map(usage_of)
            .collect()
    }

    /// Records the grant of a task issued with proxy delivery (in the
    /// issuance's transaction).
    pub(in crate::store) fn grant_model(new: NewGrant<'_>) -> proxy_grant::ActiveModel {
        proxy_grant::ActiveModel {
            id_hash: Set(new.id.hash()),
            task_id: Set(new.task_id.to_owned()),
            runner_token_id: Set(new.runner_token_id.to_owned()),
            owner_id: Set(new.owner_id.to_owned()),
            credential_id: Set(new.credential_id.map(str::to_owned)),
            agent: Set(new.agent.as_str().to_owned()),
            provider: Set(new.provider.as_str().to_owned()),
            source: Set(new.source.as_str().to_owned()),
            issued_at: Set(new.now),
            expires_at: Set(new.expires_at),
            ended_at: Set(None),
            end_reason: Set(None),
            first_used_at: Set(None),
            requests: Set(0),
            bytes_sent: Set(0),
            bytes_received: Set(0),
            input_tokens: Set(0),
            output_tokens: Set(0),
        }
    }
}

/// A grant to record.
pub(in crate::store) struct NewGrant<'a> {
    pub id: &'a GrantId,
    pub task_id: &'a str,
    pub runner_token_id: &'a str,
    pub owner_id: &'a str,
    pub credential_id: Option<&'a str>,
    pub agent: Agent,
    pub provider: Provider,
    pub source: CredentialSource,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

fn usage_of(g: &proxy_grant::Model) -> ApiResult<TaskUsage> {
    let u = |v: i64| u64::try_from(v).unwrap_or(0);
    Ok(TaskUsage {
        task_id: g.task_id.clone(),
        owner_id: g.owner_id.clone(),
        agent: g.agent.parse().map_err(ApiError::internal)?,
        provider: g.provider.parse().map_err(ApiError::internal)?,
        source: g.source.parse().map_err(ApiError::internal)?,
        usage: Usage {
            requests: u(g.requests),
            bytes_sent: u(g.bytes_sent),
            bytes_received: u(g.bytes_received),
            input_tokens: u(g.input_tokens),
            output_tokens: u(g.output_tokens),
        },
        issued_at: g.issued_at,
        ended_at: g.ended_at,
    })
}

/// Days a person's usage summary looks back.
pub const USAGE_DAYS: i64 = 30;
/// Most grants one summary adds up (a person running thousands of tasks a
/// month gets the newest ones' total, and is told so).
pub const USAGE_GRANTS: u64 = 5_000;

impl crate::store::AdminHandle {
    /// What a task spent through the egress proxy (whoever it ran for).
    pub async fn task_usage(&self, task_id: &str) -> ApiResult<Vec<TaskUsage>> {
        self.store.task_usage(task_id, None).await
    }
}

impl crate::store::OwnerHandle {
    /// What one of this person's tasks spent through the egress proxy.
    pub async fn task_usage(&self, task_id: &str) -> ApiResult<Vec<TaskUsage>> {
        self.store.task_usage(task_id, Some(self.user_id())).await
    }

    /// This person's tasks through the egress proxy over the last
    /// [`USAGE_DAYS`] days, newest first (at most [`USAGE_GRANTS`]).
    pub async fn recent_usage(&self) -> ApiResult<Vec<TaskUsage>> {
        let since = self.store.clock().now() - chrono::Duration::days(USAGE_DAYS);
        self.store.person_usage(self.user_id(), since, USAGE_GRANTS).await
    }
}
