//! The rows of sign-in flows (`oauth_flows`). The flows engine
//! (`crate::flows`) decides what happens to a flow and asks for it here by
//! name; every write is a compare-and-swap on the flow's status and holder,
//! so a cancel, a completion and a poller racing each other end a flow once.
//! The engine gets [`FlowRecord`]s, never sea-orm rows.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, Set, Statement, TransactionTrait,
};

use super::{Channel, Store, FLOW_USER_CODE_FIELD, FLOW_VERIFICATION_URI_FIELD};
use crate::crypto::{Binding, Keyring};
use crate::domain::FlowStatus;
use crate::entities::oauth_flow;
use crate::error::ApiResult;

/// First key of the per-person advisory lock around the pending-flow limit
/// (PostgreSQL; arbitrary, stable).
const PENDING_LIMIT_LOCK: i32 = 0x5e5a_0001;
/// A completion in progress holds the flow with this lease-owner prefix.
pub(crate) const FLOW_COMPLETING: &str = "complete:";

/// A sign-in flow as stored. `secret` and the `sealed_*` values are
/// ciphertexts (see `entities::oauth_flow`); the engine opens them.
#[derive(Clone)]
pub struct FlowRecord {
    pub id: String,
    pub owner_id: String,
    pub agent: String,
    pub provider: String,
    /// "DEVICE" or "AUTHORIZATION".
    pub kind: String,
    pub status: String,
    /// Plain text in rows from before the user code was sealed; empty since.
    pub user_code: String,
    pub verification_uri: String,
    /// Plain text in rows from before; `None` since.
    pub verification_uri_complete: Option<String>,
    pub authorize_url: Option<String>,
    pub sealed_user_code: Option<String>,
    pub sealed_verification_uri_complete: Option<String>,
    pub secret: String,
    pub interval_secs: i32,
    pub expires_at: DateTime<Utc>,
    pub next_poll_at: DateTime<Utc>,
    pub failures: i32,
    pub message: Option<String>,
    pub credential_id: Option<String>,
    pub revision: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for FlowRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowRecord")
            .field("id", &self.id)
            .field("status", &self.status)
            .field("secret", &"***")
            .field("user_code", &"***")
            .finish_non_exhaustive()
    }
}

impl From<oauth_flow::Model> for FlowRecord {
    fn from(row: oauth_flow::Model) -> FlowRecord {
        FlowRecord {
            id: row.id,
            owner_id: row.owner_id,
            agent: row.agent,
            provider: row.provider,
            kind: row.kind,
            status: row.status,
            user_code: row.user_code,
            verification_uri: row.verification_uri,
            verification_uri_complete: row.verification_uri_complete,
            authorize_url: row.authorize_url,
            sealed_user_code: row.sealed_user_code,
            sealed_verification_uri_complete: row.sealed_verification_uri_complete,
            secret: row.secret,
            interval_secs: row.interval_secs,
            expires_at: row.expires_at,
            next_poll_at: row.next_poll_at,
            failures: row.failures,
            message: row.message,
            credential_id: row.credential_id,
            revision: row.revision,
            lease_owner: row.lease_owner,
            lease_until: row.lease_until,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

impl From<FlowRecord> for oauth_flow::Model {
    fn from(flow: FlowRecord) -> oauth_flow::Model {
        oauth_flow::Model {
            id: flow.id,
            owner_id: flow.owner_id,
            agent: flow.agent,
            provider: flow.provider,
            kind: flow.kind,
            status: flow.status,
            user_code: flow.user_code,
            verification_uri: flow.verification_uri,
            verification_uri_complete: flow.verification_uri_complete,
            authorize_url: flow.authorize_url,
            sealed_user_code: flow.sealed_user_code,
            sealed_verification_uri_complete: flow.sealed_verification_uri_complete,
            secret: flow.secret,
            interval_secs: flow.interval_secs,
            expires_at: flow.expires_at,
            next_poll_at: flow.next_poll_at,
            failures: flow.failures,
            message: flow.message,
            credential_id: flow.credential_id,
            revision: flow.revision,
            lease_owner: flow.lease_owner,
            lease_until: flow.lease_until,
            created_at: flow.created_at,
            updated_at: flow.updated_at,
        }
    }
}

/// Who may end a flow.
#[derive(Clone, Copy)]
pub enum FlowHolder<'a> {
    Anyone,
    /// The instance polling it, or the request completing it.
    Lease(&'a str),
    /// Anyone but a completion in progress (a cancel).
    NotCompleting,
}

/// Encrypts one of a flow's display values (the user code, or the link that
/// carries it), bound to the flow's owner, id and `field`.
pub(crate) fn seal_flow_text(keys: &Keyring, owner_id: &str, id: &str, field: &str, text: &str) -> String {
    keys.encrypt(text.as_bytes(), Binding { owner_id, record_id: id, field })
}

fn pending() -> Condition {
    Condition::all().add(oauth_flow::Column::Status.eq(FlowStatus::Pending.as_str()))
}

async fn count_pending<C: ConnectionTrait>(db: &C, owner_id: &str) -> ApiResult<u64> {
    Ok(oauth_flow::Entity::find()
        .filter(oauth_flow::Column::OwnerId.eq(owner_id))
        .filter(pending())
        .filter(oauth_flow::Column::ExpiresAt.gt(Utc::now()))
        .count(db)
        .await?)
}

impl Store {
    pub(crate) async fn flow(&self, id: &str) -> ApiResult<Option<FlowRecord>> {
        Ok(oauth_flow::Entity::find_by_id(id).one(self.db()).await?.map(FlowRecord::from))
    }

    /// `owner_id`'s flow `id`; `None` for anyone else's.
    pub(crate) async fn own_flow(&self, owner_id: &str, id: &str) -> ApiResult<Option<FlowRecord>> {
        Ok(oauth_flow::Entity::find_by_id(id)
            .filter(oauth_flow::Column::OwnerId.eq(owner_id))
            .one(self.db())
            .await?
            .map(FlowRecord::from))
    }

    /// How many of the person's flows are PENDING and not past their time.
    pub(crate) async fn count_pending_flows(&self, owner_id: &str) -> ApiResult<u64> {
        count_pending(self.db(), owner_id).await
    }

    /// Stores a new PENDING flow if `under_limit` accepts the owner's count
    /// of pending flows. Count and insert are one transaction that parallel
    /// starts of the same person take in turn: on SQLite the single writer
    /// connection orders them, on PostgreSQL a per-person advisory lock does.
    pub(crate) async fn insert_pending_flow(
        &self,
        flow: FlowRecord,
        under_limit: impl FnOnce(u64) -> ApiResult<()>,
    ) -> ApiResult<FlowRecord> {
        let txn = self.db().begin().await?;
        if self.is_postgres() {
            txn.execute(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                [PENDING_LIMIT_LOCK.into(), flow.owner_id.clone().into()],
            ))
            .await?;
        }
        under_limit(count_pending(&txn, &flow.owner_id).await?)?;
        let row = oauth_flow::ActiveModel::from(oauth_flow::Model::from(flow)).insert(&txn).await?;
        txn.commit().await?;
        Ok(row.into())
    }

    /// The owner's flows of `kind` still PENDING, newest first.
    pub(crate) async fn pending_flows_of(&self, owner_id: &str, kind: &str) -> ApiResult<Vec<FlowRecord>> {
        Ok(oauth_flow::Entity::find()
            .filter(oauth_flow::Column::OwnerId.eq(owner_id))
            .filter(oauth_flow::Column::Kind.eq(kind))
            .filter(pending())
            .order_by_desc(oauth_flow::Column::CreatedAt)
            .all(self.db())
            .await?
            .into_iter()
            .map(FlowRecord::from)
            .collect())
    }

    /// Moves a PENDING flow to a final state, once (a concurrent change
    /// wins), if `holder` holds it. True when this call ended it.
    pub(crate) async fn finish_flow(
        &self,
        id: &str,
        status: FlowStatus,
        message: Option<String>,
        credential_id: Option<String>,
        holder: FlowHolder<'_>,
    ) -> ApiResult<bool> {
        let held = match holder {
            FlowHolder::Anyone => Condition::all(),
            FlowHolder::Lease(owner) => Condition::all().add(oauth_flow::Column::LeaseOwner.eq(owner)),
            FlowHolder::NotCompleting => Condition::any()
                .add(oauth_flow::Column::LeaseOwner.is_null())
                .add(oauth_flow::Column::LeaseOwner.not_like(format!("{FLOW_COMPLETING}%"))),
        };
        let updated = oauth_flow::Entity::update_many()
            .filter(held)
            .col_expr(oauth_flow::Column::Status, Expr::value(status.as_str()))
            .col_expr(oauth_flow::Column::Message, Expr::value(message))
            .col_expr(oauth_flow::Column::CredentialId, Expr::value(credential_id))
            .col_expr(oauth_flow::Column::Revision, Expr::col(oauth_flow::Column::Revision).add(1))
            .col_expr(oauth_flow::Column::LeaseOwner, Expr::value(Option::<String>::None))
            .col_expr(oauth_flow::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(oauth_flow::Column::Id.eq(id))
            .filter(pending())
            .exec(self.db())
            .await?
            .rows_affected;
        Ok(updated == 1)
    }

    /// Takes (or renews) `instance`'s lease on a pending flow until `until`.
    pub(crate) async fn claim_flow(
        &self,
        id: &str,
        instance: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> ApiResult<bool> {
        let claimed = oauth_flow::Entity::update_many()
            .col_expr(oauth_flow::Column::LeaseOwner, Expr::value(instance))
            .col_expr(oauth_flow::Column::LeaseUntil, Expr::value(until))
            .filter(oauth_flow::Column::Id.eq(id))
            .filter(pending())
            .filter(
                Condition::any()
                    .add(oauth_flow::Column::LeaseOwner.is_null())
                    .add(oauth_flow::Column::LeaseOwner.eq(instance))
                    .add(oauth_flow::Column::LeaseUntil.lt(now)),
            )
            .exec(self.db())
            .await?
            .rows_affected;
        Ok(claimed == 1)
    }

    /// The next poll of a pending flow `instance` holds, at `next_poll_at`,
    /// after `failures` transient failures in a row. Not a visible change.
    pub(crate) async fn schedule_flow_poll(
        &self,
        id: &str,
        instance: &str,
        next_poll_at: DateTime<Utc>,
        failures: i32,
    ) -> ApiResult<()> {
        oauth_flow::Entity::update_many()
            .col_expr(oauth_flow::Column::NextPollAt, Expr::value(next_poll_at))
            .col_expr(oauth_flow::Column::Failures, Expr::value(failures))
            .filter(oauth_flow::Column::Id.eq(id))
            .filter(pending())
            .filter(oauth_flow::Column::LeaseOwner.eq(instance))
            .exec(self.db())
            .await?;
        Ok(())
    }

    /// A provider's slow_down: the new poll interval, for this and every
    /// later poll (a visible change). True when the flow was still held.
    pub(crate) async fn slow_down_flow(
        &self,
        id: &str,
        instance: &str,
        interval_secs: i32,
        next_poll_at: DateTime<Utc>,
    ) -> ApiResult<bool> {
        let updated = oauth_flow::Entity::update_many()
            .col_expr(oauth_flow::Column::IntervalSecs, Expr::value(interval_secs))
            .col_expr(oauth_flow::Column::NextPollAt, Expr::value(next_poll_at))
            .col_expr(oauth_flow::Column::Revision, Expr::col(oauth_flow::Column::Revision).add(1))
            .col_expr(oauth_flow::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(oauth_flow::Column::Id.eq(id))
            .filter(pending())
            .filter(oauth_flow::Column::LeaseOwner.eq(instance))
            .exec(self.db())
            .await?
            .rows_affected;
        Ok(updated == 1)
    }

    /// Drops `instance`'s leases on pending flows; returns how many.
    pub(crate) async fn release_flow_leases(&self, instance: &str) -> ApiResult<u64> {
        Ok(oauth_flow::Entity::update_many()
            .col_expr(oauth_flow::Column::LeaseOwner, Expr::value(Option::<String>::None))
            .col_expr(oauth_flow::Column::LeaseUntil, Expr::value(Option::<DateTime<Utc>>::None))
            .filter(oauth_flow::Column::LeaseOwner.eq(instance))
            .filter(pending())
            .exec(self.db())
            .await?
            .rows_affected)
    }

    /// Pending flows of `kind` that no live lease holds (all of them with
    /// `ignore_leases`).
    pub(crate) async fn unheld_pending_flows(
        &self,
        kind: &str,
        ignore_leases: bool,
        now: DateTime<Utc>,
    ) -> ApiResult<Vec<FlowRecord>> {
        let mut query = oauth_flow::Entity::find().filter(pending()).filter(oauth_flow::Column::Kind.eq(kind));
        if !ignore_leases {
            query = query.filter(
                Condition::any()
                    .add(oauth_flow::Column::LeaseOwner.is_null())
                    .add(oauth_flow::Column::LeaseUntil.lt(now)),
            );
        }
        Ok(query.all(self.db()).await?.into_iter().map(FlowRecord::from).collect())
    }

    /// Clears a flow's lease owner whoever holds it (a take-over).
    pub(crate) async fn clear_flow_lease(&self, flow: &FlowRecord) -> ApiResult<()> {
        let mut active: oauth_flow::ActiveModel = oauth_flow::Model::from(flow.clone()).into();
        active.lease_owner = Set(None);
        active.update(self.db()).await?;
        Ok(())
    }

    /// Takes an unheld pending flow for a completion tagged `tag`; false
    /// when someone holds it (a double submit, a cancel, a poller).
    pub(crate) async fn take_flow_for_completion(&self, id: &str, tag: &str) -> ApiResult<bool> {
        let taken = oauth_flow::Entity::update_many()
            .col_expr(oauth_flow::Column::LeaseOwner, Expr::value(tag))
            .filter(oauth_flow::Column::Id.eq(id))
            .filter(pending())
            .filter(oauth_flow::Column::LeaseOwner.is_null())
            .exec(self.db())
            .await?
            .rows_affected;
        Ok(taken == 1)
    }

    /// Lets go of a flow taken for completion `tag` (it may be tried again).
    pub(crate) async fn release_flow_completion(&self, id: &str, tag: &str) -> ApiResult<()> {
        oauth_flow::Entity::update_many()
            .col_expr(oauth_flow::Column::LeaseOwner, Expr::value(Option::<String>::None))
            .filter(oauth_flow::Column::Id.eq(id))
            .filter(oauth_flow::Column::LeaseOwner.eq(tag))
            .exec(self.db())
            .await?;
        Ok(())
    }

    /// Announces a flow change through the sink, outside any transaction.
    /// False when the sink keeps announcements in this process.
    pub(crate) async fn announce_flow_update(&self, payload: &impl serde::Serialize) -> ApiResult<bool> {
        self.announce(self.db(), Channel::FlowUpdates, payload).await
    }

    /// Seals what rows written before sealing (or by an older instance)
    /// hold in plain text: the user code and the link that carries it move
    /// into their encrypted columns, and the authorize URL (it carries the
    /// state) is cleared. Returns how many rows changed. On SQLite the
    /// write-ahead log is then checkpointed and truncated, so the old plain
    /// text is not left in it.
    pub(crate) async fn seal_plain_text_flows(&self) -> ApiResult<usize> {
        let db = self.db();
        let keys = self.keys();
        let rows = oauth_flow::Entity::find()
            .filter(
                Condition::any()
                    .add(oauth_flow::Column::UserCode.ne(""))
                    .add(oauth_flow::Column::VerificationUriComplete.is_not_null())
                    .add(oauth_flow::Column::AuthorizeUrl.is_not_null()),
            )
            .all(db)
            .await?;
        let mut sealed = 0;
        for row in rows {
            let seal = |field, text: &str| seal_flow_text(keys, &row.owner_id, &row.id, field, text);
            let mut update = oauth_flow::Entity::update_many()
                .col_expr(oauth_flow::Column::AuthorizeUrl, Expr::value(Option::<String>::None))
                .filter(oauth_flow::Column::Id.eq(row.id.as_str()));
            if !row.user_code.is_empty() {
                update = update
                    .col_expr(oauth_flow::Column::UserCode, Expr::value(""))
                    .col_expr(
                        oauth_flow::Column::SealedUserCode,
                        Expr::value(Some(seal(FLOW_USER_CODE_FIELD, &row.user_code))),
                    )
                    .filter(oauth_flow::Column::UserCode.eq(row.user_code.as_str()));
            }
            if let Some(link) = &row.verification_uri_complete {
                update = update
                    .col_expr(oauth_flow::Column::VerificationUriComplete, Expr::value(Option::<String>::None))
                    .col_expr(
                        oauth_flow::Column::SealedVerificationUriComplete,
                        Expr::value(Some(seal(FLOW_VERIFICATION_URI_FIELD, link))),
                    );
            }
            sealed += update.exec(db).await?.rows_affected as usize;
        }
        if sealed > 0 && !self.is_postgres() {
            if let Err(e) = db.execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)").await {
                tracing::warn!(error = %e, "could not truncate the write-ahead log after sealing sign-in flows");
            }
        }
        Ok(sealed)
    }

    /// Deletes finished flows last changed before `cutoff` (housekeeping).
    pub(crate) async fn delete_finished_flows_before(&self, cutoff: DateTime<Utc>) -> ApiResult<u64> {
        Ok(oauth_flow::Entity::delete_many()
            .filter(oauth_flow::Column::Status.ne(FlowStatus::Pending.as_str()))
            .filter(oauth_flow::Column::UpdatedAt.lt(cutoff))
            .exec(self.db())
            .await?
            .rows_affected)
    }
}
