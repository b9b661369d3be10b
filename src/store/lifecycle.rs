//! Credential lifecycle: the expiry scan and token refresh.
//!
//! The scan is set-based: one `UPDATE … RETURNING` per transition over the
//! (status, expires_at) index, so a run with nothing due reads no rows and
//! its cost follows the number due. Each transition and its event are
//! written in one transaction (the event outbox), so a rerun, a restart or
//! a second replica can never repeat an event: the row has already moved.
//!
//! A refresh token is sent at most once. Before sending, the refresher
//! claims the credential with a compare-and-swap on its version; anyone
//! else holding the old version (another run, another replica, a task
//! issuance) fails the swap and does not send.

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};

use super::audit::{self, Action, Actor};
use super::credentials::StoredSecret;
use super::{CredentialMeta, Store};
use crate::credential_input::SubscriptionSecret;
use crate::domain::{CredentialEventKind, CredentialStatus, Provider};
use crate::entities::{credential, task_lease};
use crate::error::{ApiError, ApiResult};
use crate::oauth::Refresh;

/// How long a refresher may hold its claim (the provider call has its own timeout).
const CLAIM: Duration = Duration::seconds(60);
/// Most credentials refreshed by one run; the next run takes the rest.
const REFRESH_BATCH: u64 = 500;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct ScanReport {
    pub expiring: usize,
    pub expired: usize,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct RefreshReport {
    pub refreshed: usize,
    pub needs_reauth: usize,
    pub transient: usize,
    /// Claimed elsewhere, leased to a running task, or changed meanwhile.
    pub skipped: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum RefreshOutcome {
    Refreshed,
    NeedsReauth,
    Transient,
    Skipped,
}

fn refreshable(provider: &str) -> bool {
    provider == Provider::Openai.as_str() || provider == Provider::Anthropic.as_str()
}

impl Store {
    /// Moves credentials to EXPIRING (within `within` of expiry, and not
    /// refreshable: those are refreshed instead) and EXPIRED (past expiry),
    /// one event each.
    pub async fn scan_expiry(&self, now: DateTime<Utc>, within: Duration) -> ApiResult<ScanReport> {
        let txn = self.db().begin().await?;
        let expired = credential::Entity::update_many()
            .col_expr(credential::Column::Status, Expr::value(CredentialStatus::Expired.as_str()))
            .col_expr(
                credential::Column::StatusMessage,
                Expr::value("this credential has expired: sign in again or paste a new token"),
            )
            .filter(
                credential::Column::Status
                    .is_in([CredentialStatus::Active.as_str(), CredentialStatus::Expiring.as_str()]),
            )
            .filter(credential::Column::ExpiresAt.lte(now))
            .exec_with_returning(&txn)
            .await?;
        let expiring = credential::Entity::update_many()
            .col_expr(credential::Column::Status, Expr::value(CredentialStatus::Expiring.as_str()))
            .col_expr(
                credential::Column::StatusMessage,
                Expr::value("this credential expires soon: renew it before it stops working"),
            )
            .filter(credential::Column::Status.eq(CredentialStatus::Active.as_str()))
            .filter(credential::Column::ExpiresAt.gt(now))
            .filter(credential::Column::ExpiresAt.lte(now + within))
            .filter(credential::Column::HasRefreshToken.eq(false))
            .exec_with_returning(&txn)
            .await?;
        let mut events = Vec::with_capacity(expired.len() + expiring.len());
        for (rows, kind) in [(&expired, CredentialEventKind::Expired), (&expiring, CredentialEventKind::Expiring)] {
            for row in rows.iter() {
                let meta = CredentialMeta::try_from(row)?;
                events.push(self.record_event(&txn, meta.event(kind, meta.status_message.clone())).await?);
            }
        }
        txn.commit().await?;
        self.publish_all(events);
        Ok(ScanReport { expiring: expiring.len(), expired: expired.len() })
    }

    /// Refreshes OAuth credentials that expire within `before` (or have
    /// expired), skipping those leased to a running task.
    pub async fn refresh_due(&self, now: DateTime<Utc>, before: Duration) -> ApiResult<RefreshReport> {
        let candidates = credential::Entity::find()
            .filter(credential::Column::Status.is_in([
                CredentialStatus::Active.as_str(),
                CredentialStatus::Expiring.as_str(),
                CredentialStatus::Expired.as_str(),
            ]))
            .filter(credential::Column::ExpiresAt.lte(now + before))
            .filter(credential::Column::HasRefreshToken.eq(true))
            .filter(credential::Column::Provider.is_in([Provider::Openai.as_str(), Provider::Anthropic.as_str()]))
            .filter(
                Condition::any()
                    .add(credential::Column::RefreshClaimedUntil.is_null())
                    .add(credential::Column::RefreshClaimedUntil.lt(now)),
            )
            .order_by_asc(credential::Column::ExpiresAt)
            .limit(REFRESH_BATCH)
            .all(self.db())
            .await?;
        let mut report = RefreshReport::default();
        for row in candidates {
            match self.refresh_credential(row, now).await {
                Ok(RefreshOutcome::Refreshed) => report.refreshed += 1,
                Ok(RefreshOutcome::NeedsReauth) => report.needs_reauth += 1,
                Ok(RefreshOutcome::Transient) => report.transient += 1,
                Ok(RefreshOutcome::Skipped) => report.skipped += 1,
                Err(e) => {
                    report.transient += 1;
                    tracing::error!(error = ?e, "refreshing a credential failed");
                }
            }
        }
        Ok(report)
    }

    pub(crate) async fn leased<C: ConnectionTrait>(
        &self,
        db: &C,
        credential_id: &str,
        now: DateTime<Utc>,
    ) -> ApiResult<bool> {
        Ok(task_lease::Entity::find()
            .filter(task_lease::Column::CredentialId.eq(credential_id))
            .filter(task_lease::Column::ReturnedAt.is_null())
            .filter(task_lease::Column::ExpiresAt.gt(now))
            .one(db)
            .await?
            .is_some())
    }

    /// Refreshes one credential, sending its refresh token at most once.
    pub(crate) async fn refresh_credential(
        &self,
        row: credential::Model,
        now: DateTime<Utc>,
    ) -> ApiResult<RefreshOutcome> {
        if !row.has_refresh_token || !refreshable(&row.provider) {
            return Ok(RefreshOutcome::Skipped);
        }
        // Claim: bump the version. Whoever still holds the old version
        // (another refresher, a task issuance) now fails its own swap.
        let claimed_version = row.version + 1;
        let claimed = credential::Entity::update_many()
            .col_expr(credential::Column::Version, Expr::value(claimed_version))
            .col_expr(credential::Column::RefreshClaimedUntil, Expr::value(now + CLAIM))
            .filter(credential::Column::Id.eq(row.id.as_str()))
            .filter(credential::Column::Version.eq(row.version))
            // A version read after someone else's claim is not enough: the
            // claim itself must be free (or abandoned).
            .filter(
                Condition::any()
                    .add(credential::Column::RefreshClaimedUntil.is_null())
                    .add(credential::Column::RefreshClaimedUntil.lt(now)),
            )
            .exec(self.db())
            .await?
            .rows_affected;
        if claimed == 0 {
            return Ok(RefreshOutcome::Skipped);
        }
        // Checked after the claim: an issuance either finished its lease
        // before (seen here) or will see the claim and wait.
        if self.leased(self.db(), &row.id, now).await? {
            self.release_claim(&row.id, claimed_version).await?;
            return Ok(RefreshOutcome::Skipped);
        }
        let StoredSecret::Subscription(stored) = self.open_secret(&row)? else {
            self.release_claim(&row.id, claimed_version).await?;
            return Ok(RefreshOutcome::Skipped);
        };
        let Some(refresh_token) = stored.refresh_token.clone() else {
            self.release_claim(&row.id, claimed_version).await?;
            return Ok(RefreshOutcome::Skipped);
        };
        let provider: Provider = row.provider.parse().map_err(ApiError::internal)?;
        match self.providers().refresh(provider, &refresh_token).await {
            Refresh::Refreshed(tokens) => {
                let fresh = tokens.secret;
                let merged = SubscriptionSecret {
                    access_token: fresh.access_token.clone(),
                    refresh_token: fresh.refresh_token.clone().or(stored.refresh_token.clone()),
                    id_token: fresh.id_token.clone().or(stored.id_token.clone()),
                    account_id: fresh.account_id.clone().or(stored.account_id.clone()),
                    last_refresh: fresh.last_refresh,
                    scopes: if fresh.scopes.is_empty() { stored.scopes.clone() } else { fresh.scopes.clone() },
                };
                let txn = self.db().begin().await?;
                let meta = self
                    .swap_secret(
                        &txn,
                        &row.id,
                        &row.owner_id,
                        claimed_version,
                        StoredSecret::Subscription(merged),
                        tokens.expires_at,
                    )
                    .await?
                    .ok_or_else(|| {
                        ApiError::internal(anyhow::anyhow!("credential {} changed while claimed", row.id))
                    })?;
                audit::record(
                    &txn,
                    Actor::System,
                    Action::CredentialRefreshed,
                    audit::Entry {
                        owner_id: Some(&row.owner_id),
                        credential_id: Some(&row.id),
                        provider: Some(provider),
                        agent: meta.agent,
                        ..Default::default()
                    },
                )
                .await?;
                let event = self.record_event(&txn, meta.event(CredentialEventKind::Refreshed, None)).await?;
                txn.commit().await?;
                self.publish_all(vec![event]);
                Ok(RefreshOutcome::Refreshed)
            }
            Refresh::Permanent(message) => {
                let txn = self.db().begin().await?;
                let rows = credential::Entity::update_many()
                    .col_expr(credential::Column::Status, Expr::value(CredentialStatus::NeedsReauth.as_str()))
                    .col_expr(credential::Column::StatusMessage, Expr::value(message.as_str()))
                    .col_expr(credential::Column::RefreshClaimedUntil, Expr::value(Option::<DateTime<Utc>>::None))
                    .col_expr(credential::Column::UpdatedAt, Expr::value(Utc::now()))
                    .filter(credential::Column::Id.eq(row.id.as_str()))
                    .filter(credential::Column::Version.eq(claimed_version))
                    .exec_with_returning(&txn)
                    .await?;
                let mut events = Vec::new();
                for row in &rows {
                    let meta = CredentialMeta::try_from(row)?;
                    events.push(
                        self.record_event(&txn, meta.event(CredentialEventKind::NeedsReauth, Some(message.clone())))
                            .await?,
                    );
                }
                txn.commit().await?;
                self.publish_all(events);
                Ok(RefreshOutcome::NeedsReauth)
            }
            Refresh::Transient(why) => {
                tracing::warn!(credential = %row.id, reason = %why, "refresh failed; retrying next run");
                self.release_claim(&row.id, claimed_version).await?;
                Ok(RefreshOutcome::Transient)
            }
        }
    }

    async fn release_claim(&self, id: &str, version: i64) -> ApiResult<()> {
        credential::Entity::update_many()
            .col_expr(credential::Column::RefreshClaimedUntil, Expr::value(Option::<DateTime<Utc>>::None))
            .filter(credential::Column::Id.eq(id))
            .filter(credential::Column::Version.eq(version))
            .exec(self.db())
            .await?;
        Ok(())
    }
}

impl Store {
    /// Deletes old outbox events and ended task leases. Returns how many rows went.
    pub async fn housekeeping(&self, now: DateTime<Utc>, events_before: DateTime<Utc>) -> ApiResult<u64> {
        use crate::entities::credential_event;
        let events = credential_event::Entity::delete_many()
            .filter(credential_event::Column::At.lt(events_before))
            .exec(self.db())
            .await?
            .rows_affected;
        let leases = task_lease::Entity::delete_many()
            .filter(task_lease::Column::ExpiresAt.lt(now - Duration::days(1)))
            .exec(self.db())
            .await?
            .rows_affected;
        Ok(events + leases)
    }
}
