//! Credential rows: metadata views, the encrypted payload, and the writes
//! shared by the role handles.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use serde::{Deserialize, Serialize};

use super::audit::{self, Action, Actor};
use super::Store;
use crate::credential_input::{Secret, SubscriptionSecret};
use crate::crypto::Binding;
use crate::domain::{Agent, CheckResult, CredentialEventKind, CredentialKind, CredentialStatus, Provider};
use crate::entities::{credential, credential_event};
use crate::error::{ApiError, ApiResult};
use crate::events::CredentialEvent;
use crate::ids::new_id;
use crate::providers::{hint, Outcome};

pub(crate) const FIELD_SECRET: &str = "secret";
pub(crate) const FIELD_HINT: &str = "hint";

pub(in crate::store) fn binding<'a>(row: &'a credential::Model, field: &'a str) -> Binding<'a> {
    Binding { owner_id: &row.owner_id, record_id: &row.id, field }
}

/// No refresher holds the credential right now (none ever did, or its
/// claim lapsed).
pub(crate) fn no_live_claim(now: DateTime<Utc>) -> sea_orm::Condition {
    sea_orm::Condition::any()
        .add(credential::Column::RefreshClaimedUntil.is_null())
        .add(credential::Column::RefreshClaimedUntil.lt(now))
}

/// How often a save re-reads its slot after losing a race (a first save
/// beaten by another first save, or a row deleted under it).
const SAVE_ATTEMPTS: u32 = 5;

/// What is encrypted in the `secret` column.
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum StoredSecret {
    ApiKey { key: Secret },
    Subscription(SubscriptionSecret),
}

impl StoredSecret {
    fn primary(&self) -> &str {
        match self {
            StoredSecret::ApiKey { key } => key.expose(),
            StoredSecret::Subscription(s) => s.access_token.expose(),
        }
    }

    fn has_refresh_token(&self) -> bool {
        matches!(self, StoredSecret::Subscription(s) if s.refresh_token.is_some())
    }
}

/// Everything about a credential except its secret and hint.
#[derive(Clone, Debug)]
pub struct CredentialMeta {
    pub id: String,
    pub owner_id: String,
    pub provider: Provider,
    pub agent: Option<Agent>,
    pub kind: CredentialKind,
    pub status: CredentialStatus,
    pub status_message: Option<String>,
    pub has_refresh_token: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The last check with the provider: when, what it said, what to do.
    pub last_checked_at: Option<DateTime<Utc>>,
    pub check_result: Option<CheckResult>,
    pub check_message: Option<String>,
    /// The hint's ciphertext, so the owner can read it without another
    /// query; only the owner handle decrypts it.
    pub(crate) sealed_hint: String,
}

impl TryFrom<&credential::Model> for CredentialMeta {
    type Error = ApiError;
    fn try_from(m: &credential::Model) -> ApiResult<Self> {
        MetaRow::from(m).try_into()
    }
}

/// The columns [`CredentialMeta`] needs: a listing never reads a secret.
#[derive(sea_orm::DerivePartialModel, sea_orm::FromQueryResult)]
#[sea_orm(entity = "credential::Entity")]
pub(super) struct MetaRow {
    id: String,
    owner_id: String,
    provider: String,
    agent: Option<String>,
    kind: String,
    status: String,
    status_message: Option<String>,
    has_refresh_token: bool,
    expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    last_checked_at: Option<DateTime<Utc>>,
    check_result: Option<String>,
    check_message: Option<String>,
    hint: String,
}

impl From<&credential::Model> for MetaRow {
    fn from(m: &credential::Model) -> Self {
        MetaRow {
            id: m.id.clone(),
            owner_id: m.owner_id.clone(),
            provider: m.provider.clone(),
            agent: m.agent.clone(),
            kind: m.kind.clone(),
            status: m.status.clone(),
            status_message: m.status_message.clone(),
            has_refresh_token: m.has_refresh_token,
            expires_at: m.expires_at,
            last_used_at: m.last_used_at,
            created_at: m.created_at,
            updated_at: m.updated_at,
            last_checked_at: m.last_checked_at,
            check_result: m.check_result.clone(),
            check_message: m.check_message.clone(),
            hint: m.hint.clone(),
        }
    }
}

/// The one place stored text becomes [`CredentialMeta`]'s types.
impl TryFrom<MetaRow> for CredentialMeta {
    type Error = ApiError;
    fn try_from(m: MetaRow) -> ApiResult<Self> {
        let internal = ApiError::internal;
        Ok(CredentialMeta {
            provider: m.provider.parse().map_err(internal)?,
            agent: m.agent.as_deref().map(str::parse).transpose().map_err(internal)?,
            kind: m.kind.parse().map_err(internal)?,
            status: m.status.parse().map_err(internal)?,
            // A result this version does not know reads as never checked.
            check_result: m.check_result.as_deref().and_then(|r| r.parse().ok()),
            id: m.id,
            owner_id: m.owner_id,
            status_message: m.status_message,
            has_refresh_token: m.has_refresh_token,
            expires_at: m.expires_at,
            last_used_at: m.last_used_at,
            created_at: m.created_at,
            updated_at: m.updated_at,
            last_checked_at: m.last_checked_at,
            check_message: m.check_message,
            sealed_hint: m.hint,
        })
    }
}

impl Store {
    /// Every credential of `owner_id` (metadata and sealed hint), by id.
    /// Concurrent listings share one query (`batch.rs`).
    pub(super) async fn credentials_of(&self, owner_id: &str) -> ApiResult<Vec<CredentialMeta>> {
        self.batcher(super::AUTH_WORKERS, |inner| &inner.listing_batch, Store::listing_batch)
            .submit(owner_id.to_owned())
            .await
    }

    async fn listing_batch(self, owners: Vec<String>) -> Vec<ApiResult<Vec<CredentialMeta>>> {
        let rows = credential::Entity::find()
            .filter(credential::Column::OwnerId.is_in(super::batch::distinct(owners.iter().map(String::as_str))))
            .order_by_asc(credential::Column::Id)
            .into_partial_model::<MetaRow>()
            .all(self.reader())
            .await;
        let metas =
            rows.map_err(ApiError::from).and_then(|rows| rows.into_iter().map(CredentialMeta::try_from).collect());
        super::batch::answer_each(&owners, metas, |owner, metas| {
            metas.iter().filter(|m| m.owner_id == *owner).cloned().collect()
        })
    }
}

impl CredentialMeta {
    pub(crate) fn event(&self, kind: CredentialEventKind, message: Option<String>) -> CredentialEvent {
        CredentialEvent {
            seq: 0,
            kind,
            credential_id: self.id.clone(),
            owner_id: self.owner_id.clone(),
            provider: self.provider,
            agent: self.agent,
            status: Some(self.status),
            at: Utc::now(),
            message,
        }
    }
}

/// Where a credential lives: one API key per provider, one subscription per
/// (agent, provider).
pub(crate) fn slot(kind: CredentialKind, agent: Option<Agent>, provider: Provider) -> String {
    match (kind, agent) {
        (CredentialKind::Subscription, Some(agent)) => format!("sub:{agent}:{provider}"),
        _ => format!("api:{provider}"),
    }
}

/// A credential to store: where, what, and where it came from.
pub(crate) struct NewCredential {
    pub provider: Provider,
    pub agent: Option<Agent>,
    pub kind: CredentialKind,
    pub secret: StoredSecret,
    pub expires_at: Option<DateTime<Utc>>,
    pub origin: Origin,
}

/// Where a stored credential came from: the vault's own sign-in (so the
/// vault may revoke it at the provider when it is removed) or a paste.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    Flow,
    Pasted,
}

impl Origin {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Origin::Flow => "FLOW",
            Origin::Pasted => "PASTED",
        }
    }

    /// The stored form back; anything else (rows from before the column) is pasted.
    pub(in crate::store) fn of(row: &credential::Model) -> Origin {
        if row.origin == Origin::Flow.as_str() {
            Origin::Flow
        } else {
            Origin::Pasted
        }
    }
}

/// Records on a just-saved credential the check its secret passed before
/// it was saved.
async fn record_check_on_save(
    txn: &sea_orm::DatabaseTransaction,
    meta: &mut CredentialMeta,
    check: &Outcome,
    now: DateTime<Utc>,
) -> ApiResult<()> {
    use sea_orm::sea_query::Expr;
    credential::Entity::update_many()
        .col_expr(credential::Column::LastCheckedAt, Expr::value(now))
        .col_expr(credential::Column::CheckResult, Expr::value(check.result.as_str()))
        .col_expr(credential::Column::CheckMessage, Expr::value(check.message.clone()))
        .filter(credential::Column::Id.eq(meta.id.as_str()))
        .exec(txn)
        .await?;
    meta.last_checked_at = Some(now);
    meta.check_result = Some(check.result);
    meta.check_message = check.message.clone();
    Ok(())
}

impl Store {
    /// Inserts or replaces the credential in its slot (the id is kept on
    /// replace), with an audit entry in the same transaction; publishes the
    /// event after commit.
    pub(crate) async fn put_credential(
        &self,
        actor: Actor<'_>,
        owner_id: &str,
        new: NewCredential,
    ) -> ApiResult<CredentialMeta> {
        self.put_checked(actor, owner_id, new, None).await
    }

    /// [`Store::put_credential`], recording the check the new secret passed
    /// before it was saved (a replacement is otherwise unchecked).
    pub(crate) async fn put_checked(
        &self,
        actor: Actor<'_>,
        owner_id: &str,
        new: NewCredential,
        check: Option<&Outcome>,
    ) -> ApiResult<CredentialMeta> {
        let now = Utc::now();
        let (txn, replaced, mut meta) = self.save_in_slot(owner_id, &new, now).await?;
        if replaced {
            // A task's placeholders stood for the secret replaced.
            self.end_grants_of_credential(&txn, &meta.id, "the credential was replaced").await?;
            // The new secret's origin: a pasted token over a signed-in one
            // is no longer the vault's to revoke.
            credential::Entity::update_many()
                .col_expr(credential::Column::Origin, sea_orm::sea_query::Expr::value(new.origin.as_str()))
                .filter(credential::Column::Id.eq(meta.id.as_str()))
                .exec(&txn)
                .await?;
        }
        if let Some(check) = check {
            record_check_on_save(&txn, &mut meta, check, now).await?;
        }
        audit::record(
            &txn,
            actor,
            if replaced { Action::CredentialReplaced } else { Action::CredentialCreated },
            audit::Entry {
                owner_id: Some(owner_id),
                credential_id: Some(&meta.id),
                provider: Some(meta.provider),
                agent: meta.agent,
                detail: check.map(|c| format!("checked before saving: result {}", c.result)),
                ..Default::default()
            },
        )
        .await?;
        let kind = if replaced { CredentialEventKind::Updated } else { CredentialEventKind::Created };
        let event = self.record_event(&txn, meta.event(kind, None)).await?;
        if replaced {
            self.commit_ending(txn).await?;
        } else {
            txn.commit().await?;
        }
        self.publish_all(vec![event]);
        Ok(meta)
    }

    /// Writes the new secret into its slot in a transaction it leaves open
    /// for the caller's audit entry and event: a compare-and-swap over the
    /// slot's row, or a first insert. Returns the transaction, whether a
    /// row was replaced, and the credential.
    ///
    /// One transaction per attempt. On PostgreSQL the slot's row is read
    /// `FOR UPDATE`, so concurrent saves to one slot take turns (the last
    /// one wins, each audited) and the compare-and-swap cannot lose to
    /// another writer; a refresh that races a save waits for it and then
    /// fails its own compare-and-swap, as it must. A first save inserts with
    /// `ON CONFLICT DO NOTHING` on the slot: if another first save got there
    /// first, the next attempt replaces that row. On SQLite the single
    /// writer connection orders the transactions.
    async fn save_in_slot(
        &self,
        owner_id: &str,
        new: &NewCredential,
        now: DateTime<Utc>,
    ) -> ApiResult<(sea_orm::DatabaseTransaction, bool, CredentialMeta)> {
        let slot = slot(new.kind, new.agent, new.provider);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let txn = sea_orm::TransactionTrait::begin(self.db()).await?;
            let existing = credential::Entity::find()
                .filter(credential::Column::OwnerId.eq(owner_id))
                .filter(credential::Column::Slot.eq(slot.as_str()))
                .lock_exclusive()
                .one(&txn)
                .await?;
            match existing {
                Some(row) => {
                    let swapped = self
                        .swap_secret(&txn, &row.id, owner_id, row.version, new.secret.clone(), new.expires_at)
                        .await?;
                    if let Some(meta) = swapped {
                        return Ok((txn, true, meta));
                    }
                }
                None => {
                    if let Some(meta) = self.insert_first(&txn, owner_id, &slot, new, now).await? {
                        return Ok((txn, false, meta));
                    }
                }
            }
            txn.rollback().await?;
            if attempts == SAVE_ATTEMPTS {
                // Only a slot that keeps being emptied and refilled under
                // the save gets here: the caller may simply try again.
                tracing::warn!(owner = owner_id, slot, attempts, "a credential save kept losing to concurrent changes");
                return Err(ApiError::Unavailable(
                    "this credential changed while it was being saved; save it again".into(),
                ));
            }
        }
    }

    /// Inserts the slot's first credential; `None` when another save
    /// filled the slot meanwhile (`ON CONFLICT DO NOTHING`).
    async fn insert_first(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        owner_id: &str,
        slot: &str,
        new: &NewCredential,
        now: DateTime<Utc>,
    ) -> ApiResult<Option<CredentialMeta>> {
        let plaintext = zeroize::Zeroizing::new(serde_json::to_vec(&new.secret).map_err(ApiError::internal)?);
        let hint_text = hint(new.secret.primary());
        let mut row = credential::Model {
            id: new_id(),
            owner_id: owner_id.to_owned(),
            slot: slot.to_owned(),
            provider: new.provider.as_str().into(),
            agent: new.agent.map(|a| a.as_str().into()),
            kind: new.kind.as_str().into(),
            status: CredentialStatus::Active.as_str().into(),
            status_message: None,
            secret: String::new(),
            hint: String::new(),
            has_refresh_token: new.secret.has_refresh_token(),
            expires_at: new.expires_at,
            last_used_at: None,
            created_at: now,
            updated_at: now,
            version: 1,
            refresh_claimed_until: None,
            refresh_claim: None,
            leased_until: None,
            origin: new.origin.as_str().into(),
            last_checked_at: None,
            check_result: None,
            check_message: None,
            check_claimed_until: None,
        };
        row.secret = self.keys().encrypt(&plaintext, binding(&row, FIELD_SECRET));
        row.hint = self.keys().encrypt(hint_text.as_bytes(), binding(&row, FIELD_HINT));
        let inserted = credential::Entity::insert(credential::ActiveModel::from(row))
            .on_conflict(
                OnConflict::columns([credential::Column::OwnerId, credential::Column::Slot]).do_nothing().to_owned(),
            )
            .exec_with_returning(txn)
            .await;
        match inserted {
            Ok(row) => Ok(Some(CredentialMeta::try_from(&row)?)),
            // DO NOTHING returned no row: the slot was filled meanwhile.
            Err(sea_orm::DbErr::RecordNotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the given rows (already authorised by the caller) and audits
    /// each; returns their REMOVED events, not yet recorded: the caller
    /// records them with [`Store::record_events`] after its last row write,
    /// just before commit (see [`Store::record_event`]).
    pub(in crate::store) async fn delete_credentials<C: ConnectionTrait>(
        &self,
        txn: &C,
        actor: Actor<'_>,
        action: Action,
        rows: Vec<credential::Model>,
        message: Option<&str>,
    ) -> ApiResult<Vec<CredentialEvent>> {
        let mut removed = Vec::with_capacity(rows.len());
        for row in rows {
            let meta = CredentialMeta::try_from(&row)?;
            let deleted = credential::Entity::delete_by_id(row.id.clone()).exec(txn).await?.rows_affected;
            if deleted == 0 {
                continue;
            }
            audit::record(
                txn,
                actor,
                action,
                audit::Entry {
                    owner_id: Some(&meta.owner_id),
                    credential_id: Some(&meta.id),
                    provider: Some(meta.provider),
                    agent: meta.agent,
                    ..Default::default()
                },
            )
            .await?;
            removed.push(meta.event(CredentialEventKind::Removed, message.map(str::to_owned)));
        }
        Ok(removed)
    }

    /// Writes an event to the outbox in the caller's transaction; returns
    /// it with its sequence number, to publish once the transaction commits.
    /// Events are recorded LAST in a transaction, after all its row locks and
    /// writes: on PostgreSQL the insert takes a transaction-scoped advisory
    /// lock (held until commit, `m20261206_230000_claim_owner_event_order`),
    /// so a transaction that went on to lock a row could deadlock with one
    /// holding that row and waiting for the advisory lock.
    pub(in crate::store) async fn record_event<C: ConnectionTrait>(
        &self,
        txn: &C,
        event: CredentialEvent,
    ) -> ApiResult<CredentialEvent> {
        let mut recorded = self.record_events(txn, vec![event]).await?;
        recorded.pop().ok_or_else(|| ApiError::internal(anyhow::anyhow!("the event insert returned no row")))
    }

    /// Several events in multi-row inserts (the expiry scan can move
    /// thousands of credentials at once). At most one event per credential.
    pub(in crate::store) async fn record_events<C: ConnectionTrait>(
        &self,
        txn: &C,
        events: Vec<CredentialEvent>,
    ) -> ApiResult<Vec<CredentialEvent>> {
        // 9 columns per row, well under SQLite's 32,766 bound variables.
        const ROWS_PER_INSERT: usize = 1_000;
        let mut recorded = Vec::with_capacity(events.len());
        let mut ids: Vec<&str> = events.iter().map(|e| e.credential_id.as_str()).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err(ApiError::internal(anyhow::anyhow!("two events for one credential in one insert")));
        }
        for chunk in events.chunks(ROWS_PER_INSERT) {
            let rows = chunk.iter().map(|event| credential_event::ActiveModel {
                kind: Set(event.kind.as_str().to_owned()),
                credential_id: Set(event.credential_id.clone()),
                owner_id: Set(event.owner_id.clone()),
                provider: Set(event.provider.as_str().to_owned()),
                agent: Set(event.agent.map(|a| a.as_str().to_owned())),
                status: Set(event.status.map(|s| s.as_str().to_owned())),
                message: Set(event.message.clone()),
                at: Set(event.at),
                ..Default::default()
            });
            let inserted = credential_event::Entity::insert_many(rows).exec_with_returning_many(txn).await?;
            if inserted.len() != chunk.len() {
                return Err(ApiError::internal(anyhow::anyhow!("the event insert returned {} rows", inserted.len())));
            }
            // RETURNING promises no order: match rows to events by credential.
            let seqs: std::collections::HashMap<&str, i64> =
                inserted.iter().map(|row| (row.credential_id.as_str(), row.id)).collect();
            for event in chunk {
                let seq = *seqs
                    .get(event.credential_id.as_str())
                    .ok_or_else(|| ApiError::internal(anyhow::anyhow!("an inserted event went missing")))?;
                let event = CredentialEvent { seq, ..event.clone() };
                self.announce(txn, super::Channel::CredentialEvents, &event).await?;
                recorded.push(event);
            }
        }
        Ok(recorded)
    }

    /// After commit: hands events to the sink (local subscribers on
    /// SQLite; on PostgreSQL they arrive through the relay instead, announced
    /// at commit, on every instance including this one).
    pub(crate) fn publish_all(&self, events: Vec<CredentialEvent>) {
        crate::telemetry::credential_events(&events);
        self.sink().publish(events);
    }

    /// Replaces a credential's secret if its version is still `expected`
    /// (compare-and-swap): a refresh or a returned file never overwrites a
    /// change it did not see. `None` when the version moved on.
    pub(in crate::store) async fn swap_secret<C: ConnectionTrait>(
        &self,
        txn: &C,
        id: &str,
        owner_id: &str,
        expected: i64,
        secret: StoredSecret,
        expires_at: Option<DateTime<Utc>>,
    ) -> ApiResult<Option<CredentialMeta>> {
        self.swap(txn, id, owner_id, expected, None, secret, expires_at).await
    }

    /// Like [`Store::swap_secret`], but only for the holder of a refresh claim.
    pub(in crate::store) async fn swap_secret_claimed<C: ConnectionTrait>(
        &self,
        txn: &C,
        row: &credential::Model,
        claim: Option<&str>,
        secret: StoredSecret,
        expires_at: Option<DateTime<Utc>>,
    ) -> ApiResult<Option<CredentialMeta>> {
        self.swap(txn, &row.id, &row.owner_id, row.version, claim, secret, expires_at).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn swap<C: ConnectionTrait>(
        &self,
        txn: &C,
        id: &str,
        owner_id: &str,
        expected: i64,
        claim: Option<&str>,
        secret: StoredSecret,
        expires_at: Option<DateTime<Utc>>,
    ) -> ApiResult<Option<CredentialMeta>> {
        use sea_orm::sea_query::Expr;
        let plaintext = zeroize::Zeroizing::new(serde_json::to_vec(&secret).map_err(ApiError::internal)?);
        let hint_text = hint(secret.primary());
        let bind = |field| Binding { owner_id, record_id: id, field };
        let mut update = credential::Entity::update_many()
            .col_expr(credential::Column::Secret, Expr::value(self.keys().encrypt(&plaintext, bind(FIELD_SECRET))))
            .col_expr(
                credential::Column::Hint,
                Expr::value(self.keys().encrypt(hint_text.as_bytes(), bind(FIELD_HINT))),
            )
            .col_expr(credential::Column::HasRefreshToken, Expr::value(secret.has_refresh_token()))
            .col_expr(credential::Column::ExpiresAt, Expr::value(expires_at))
            .col_expr(credential::Column::Status, Expr::value(CredentialStatus::Active.as_str()))
            .col_expr(credential::Column::StatusMessage, Expr::value(Option::<String>::None))
            .col_expr(credential::Column::UpdatedAt, Expr::value(Utc::now()))
            .col_expr(credential::Column::Version, Expr::value(expected + 1))
            .col_expr(credential::Column::RefreshClaimedUntil, Expr::value(Option::<DateTime<Utc>>::None))
            .col_expr(credential::Column::RefreshClaim, Expr::value(Option::<String>::None))
            // A new secret is unchecked (and no longer INVALID).
            .col_expr(credential::Column::LastCheckedAt, Expr::value(Option::<DateTime<Utc>>::None))
            .col_expr(credential::Column::CheckResult, Expr::value(Option::<String>::None))
            .col_expr(credential::Column::CheckMessage, Expr::value(Option::<String>::None))
            .col_expr(credential::Column::CheckClaimedUntil, Expr::value(Option::<DateTime<Utc>>::None))
            .filter(credential::Column::Id.eq(id))
            .filter(credential::Column::OwnerId.eq(owner_id))
            .filter(credential::Column::Version.eq(expected));
        if let Some(claim) = claim {
            update = update.filter(credential::Column::RefreshClaim.eq(claim));
        }
        if update.exec(txn).await?.rows_affected == 0 {
            return Ok(None);
        }
        let row =
            credential::Entity::find_by_id(id).one(txn).await?.ok_or_else(|| ApiError::not_found("credential"))?;
        CredentialMeta::try_from(&row).map(Some)
    }

    /// Decrypts a row's secret payload. Only the owner and runner handles call this.
    pub(in crate::store) fn open_secret(&self, row: &credential::Model) -> ApiResult<StoredSecret> {
        let plain = self.keys().decrypt(&row.secret, binding(row, FIELD_SECRET))?;
        // serde's message can quote the value; report only where it broke.
        serde_json::from_slice(&plain).map_err(|e| {
            ApiError::internal(anyhow::anyhow!(
                "stored secret of {} does not parse ({:?} at line {} column {})",
                row.id,
                e.classify(),
                e.line(),
                e.column()
            ))
        })
    }
}
