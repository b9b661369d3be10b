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
//! issuance) fails the swap and does not send. If the credential is removed
//! while the request is at the provider, the swap finds no row and the
//! tokens the refresh obtained are revoked (the removal revoked the spent one).
//!
//! A claim is written as `<instance>/<nonce>`: the id this process drew at
//! start-up and one per claim. Whether a claim of *this* instance is still
//! live is decided in memory, by [`Refreshes`] (a refresh is in flight from
//! the moment it is registered until its future ends), never by the wall
//! clock: a clock stepped forward during a refresh cannot make this
//! process send the same single-use refresh token twice. Another
//! instance's claim lapses at its `refresh_claimed_until` (the only time
//! two hosts share).
//!
//! The expiry scan also repairs what a clock that ran ahead left behind:
//! a credential marked EXPIRED (or EXPIRING) whose expiry is in fact later
//! becomes usable again (one UPDATED event), and a lease that ends later
//! than now + `SESAME_TASKS__LEASE` is cut back to that.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait};

use super::audit::{self, Action, Actor};
use super::credentials::{no_live_claim, Origin, StoredSecret};
use super::{CredentialMeta, Store};
use crate::credential_input::SubscriptionSecret;
use crate::domain::{CredentialEventKind, CredentialKind, CredentialStatus, Provider};
use crate::entities::{credential, task_lease};
use crate::error::{ApiError, ApiResult};
use crate::providers::revoke::offers_revocation;
use crate::providers::{self, Refresh, Tokens};

/// Most credentials refreshed by one run; the next run takes the rest.
const REFRESH_BATCH: u64 = 500;

/// What an EXPIRING credential's status message says.
pub const EXPIRING_MESSAGE: &str = "this credential expires soon: renew it before it stops working";

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
    providers::refreshable_names().contains(&provider)
}

/// This instance's refresh claims: the id it writes into every claim, and
/// the credentials whose refresh it has in flight right now (monotonic:
/// an entry lives exactly as long as the refresh's future).
pub(crate) struct Refreshes {
    /// Drawn at start-up; `<instance>/` prefixes every claim this process writes.
    instance: String,
    /// Credential id → when its refresh started (monotonic).
    in_flight: Mutex<HashMap<String, tokio::time::Instant>>,
}

impl Default for Refreshes {
    fn default() -> Self {
        Refreshes { instance: uuid::Uuid::new_v4().simple().to_string(), in_flight: Mutex::default() }
    }
}

/// A registered refresh; dropping it (the refresh ended, or its future was
/// dropped) ends the registration.
pub(crate) struct InFlight<'a> {
    refreshes: &'a Refreshes,
    id: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.refreshes.in_flight.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
    }
}

impl Refreshes {
    /// Registers a refresh of `id`; `None` when this process already has one in flight.
    fn begin(&self, id: &str, at: tokio::time::Instant) -> Option<InFlight<'_>> {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if in_flight.contains_key(id) {
            return None;
        }
        in_flight.insert(id.to_owned(), at);
        Some(InFlight { refreshes: self, id: id.to_owned() })
    }

    /// Whether this process is refreshing credential `id` right now.
    pub(crate) fn in_flight(&self, id: &str) -> bool {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner()).contains_key(id)
    }

    fn prefix(&self) -> String {
        format!("{}/", self.instance)
    }

    /// A fresh claim of this instance.
    fn new_claim(&self) -> String {
        format!("{}{}", self.prefix(), crate::ids::new_id())
    }

    fn owns(&self, claim: &str) -> bool {
        claim.strip_prefix(&self.instance).is_some_and(|rest| rest.starts_with('/'))
    }

    /// Whether a refresh claim keeps this process from using or refreshing
    /// `row` now: its own claims count while their refresh is in flight
    /// (whatever the wall clock says), another instance's until they lapse.
    pub(in crate::store) fn claim_is_live(&self, row: &credential::Model, now: DateTime<Utc>) -> bool {
        if self.in_flight(&row.id) {
            return true;
        }
        match row.refresh_claim.as_deref() {
            Some(claim) if self.owns(claim) => false,
            _ => row.refresh_claimed_until.is_some_and(|t| t >= now),
        }
    }

    /// [`Refreshes::claim_is_live`] as a database condition, for a
    /// credential this process does not have in flight (check
    /// [`Refreshes::in_flight`] first): no claim, a lapsed one, or one of
    /// this instance (whose refresh has ended, since it is not in flight).
    pub(crate) fn no_live_claim(&self, now: DateTime<Utc>) -> Condition {
        Condition::any().add(no_live_claim(now)).add(credential::Column::RefreshClaim.starts_with(self.prefix()))
    }
}

impl Store {
    /// Moves credentials to EXPIRING (within `within` of expiry, and not
    /// refreshable: those are refreshed instead) and EXPIRED (past expiry),
    /// one event each; and back (UPDATED) when a clock that ran ahead moved
    /// them early. Cuts back leases a clock ahead made too long.
    pub(in crate::store) async fn scan_expiry(&self, now: DateTime<Utc>, within: Duration) -> ApiResult<ScanReport> {
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
            .col_expr(credential::Column::StatusMessage, Expr::value(EXPIRING_MESSAGE))
            .filter(credential::Column::Status.eq(CredentialStatus::Active.as_str()))
            .filter(credential::Column::ExpiresAt.gt(now))
            .filter(credential::Column::ExpiresAt.lte(now + within))
            // Refreshable OAuth logins are refreshed, not warned about.
            .filter(warned_not_refreshed())
            .exec_with_returning(&txn)
            .await?;
        let (revived_expiring, revived_active) = revive_early(&txn, now, within).await?;
        let mut events = Vec::with_capacity(expired.len() + expiring.len());
        for (rows, kind) in [
            (&expired, CredentialEventKind::Expired),
            (&expiring, CredentialEventKind::Expiring),
            (&revived_expiring, CredentialEventKind::Updated),
            (&revived_active, CredentialEventKind::Updated),
        ] {
            for row in rows.iter() {
                let meta = CredentialMeta::try_from(row)?;
                events.push(meta.event(kind, meta.status_message.clone()));
            }
        }
        let (leases_cut, grants_cut) = self.cut_leases(&txn, now).await?;
        // A credential is in one of the sets at most: one event each.
        let events = self.record_events(&txn, events).await?;
        txn.commit().await?;
        if grants_cut > 0 {
            self.grants_changed();
        }
        self.publish_all(events);
        let revived = revived_expiring.len() + revived_active.len();
        if revived > 0 || leases_cut > 0 || grants_cut > 0 {
            tracing::warn!(
                revived,
                leases_cut,
                grants_cut,
                "the clock had run ahead: credentials whose expiry is still to come are usable again, \
                 leases ending after now + SESAME_TASKS__LEASE were cut back to it"
            );
        }
        Ok(ScanReport { expiring: expiring.len(), expired: expired.len() })
    }

    /// Cuts back every lease that ends later than `now` + the task lease (no
    /// issuance at or before `now` can have set one: a clock that ran ahead
    /// did). A lease so outlasts `SESAME_TASKS__LEASE` by at most the time
    /// the clock was ahead; so does a proxy grant's (its placeholders stop
    /// then; the trigger on `expires_at` tells every egress proxy). Returns
    /// how many task leases and proxy grants were cut.
    async fn cut_leases<C: sea_orm::ConnectionTrait>(&self, txn: &C, now: DateTime<Utc>) -> ApiResult<(u64, u64)> {
        let latest = now + self.task_lease();
        credential::Entity::update_many()
            .col_expr(credential::Column::LeasedUntil, Expr::value(latest))
            .filter(credential::Column::LeasedUntil.gt(latest))
            .exec(txn)
            .await?;
        let grants = crate::entities::proxy_grant::Entity::update_many()
            .col_expr(crate::entities::proxy_grant::Column::ExpiresAt, Expr::value(latest))
            .filter(crate::entities::proxy_grant::Column::ExpiresAt.gt(latest))
            .filter(crate::entities::proxy_grant::Column::EndedAt.is_null())
            .exec(txn)
            .await?
            .rows_affected;
        let leases = task_lease::Entity::update_many()
            .col_expr(task_lease::Column::ExpiresAt, Expr::value(latest))
            .filter(task_lease::Column::ExpiresAt.gt(latest))
            .filter(task_lease::Column::ReturnedAt.is_null())
            .exec(txn)
            .await?
            .rows_affected;
        Ok((leases, grants))
    }

    /// Refreshes OAuth credentials that expire within `before` (or have
    /// expired), skipping those leased to a running task.
    pub(in crate::store) async fn refresh_due(&self, now: DateTime<Utc>, before: Duration) -> ApiResult<RefreshReport> {
        let candidates = credential::Entity::find()
            .filter(credential::Column::Status.is_in([
                CredentialStatus::Active.as_str(),
                CredentialStatus::Expiring.as_str(),
                CredentialStatus::Expired.as_str(),
            ]))
            .filter(credential::Column::ExpiresAt.lte(now + before))
            .filter(credential::Column::HasRefreshToken.eq(true))
            .filter(credential::Column::Provider.is_in(providers::refreshable_names()))
            .filter(self.refreshes().no_live_claim(now))
            .order_by_asc(credential::Column::ExpiresAt)
            .limit(REFRESH_BATCH)
            .all(self.db())
            .await?;
        let mut report = RefreshReport::default();
        for row in candidates {
            if self.refreshes().in_flight(&row.id) {
                // This process is refreshing it right now (a clock stepped
                // forward can make its claim look lapsed in the row).
                report.skipped += 1;
                continue;
            }
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

    /// How long a refresher may hold its claim: longer than any provider
    /// call can take, so a claim never lapses while its request is in flight.
    fn claim_ttl(&self) -> Duration {
        Duration::from_std(self.providers().config().http_timeout * 2).unwrap_or(Duration::minutes(1))
            + Duration::seconds(30)
    }

    /// Refreshes one credential, sending its refresh token at most once.
    ///
    /// The claim is one conditional UPDATE on the credential's row: it
    /// succeeds only if the version is the one read, no other claim is live
    /// and no task holds the credential. A task issuance sets `leased_until`
    /// on the same row only if no claim is live, so of the two racing
    /// parties exactly one wins. The version does not move on a claim: only
    /// new tokens move it.
    pub(in crate::store) async fn refresh_credential(
        &self,
        row: credential::Model,
        now: DateTime<Utc>,
    ) -> ApiResult<RefreshOutcome> {
        let (id, owner, provider) = (row.id.clone(), row.owner_id.clone(), row.provider.clone());
        // Run in a task of its own that holds the registration: if the
        // caller's future is dropped (a client hung up on its issuance), the
        // refresh still finishes and swaps its tokens in, instead of this
        // process treating its own claim as lapsed while the refresh token
        // it sent is spent, and sending it again.
        let store = self.clone();
        let result =
            tokio::spawn(async move { store.refresh_credential_once(row, now).await }).await.unwrap_or_else(|e| {
                let why = if e.is_panic() { "panicked" } else { "was cancelled" };
                Err(ApiError::internal(anyhow::anyhow!("the refresh task {why}")))
            });
        let outcome = match &result {
            Ok(RefreshOutcome::Refreshed) => "REFRESHED",
            Ok(RefreshOutcome::NeedsReauth) => "NEEDS_REAUTH",
            Ok(RefreshOutcome::Transient) => "TRANSIENT",
            Ok(RefreshOutcome::Skipped) => "SKIPPED",
            Err(_) => "ERROR",
        };
        crate::metrics::refresh(&provider, outcome);
        if !matches!(result, Ok(RefreshOutcome::Skipped)) {
            tracing::info!(credential = %id, owner = %owner, provider = %provider, outcome, "credential refresh");
        }
        result
    }

    async fn refresh_credential_once(&self, row: credential::Model, _now: DateTime<Utc>) -> ApiResult<RefreshOutcome> {
        if !row.has_refresh_token || !refreshable(&row.provider) {
            return Ok(RefreshOutcome::Skipped);
        }
        // Registered before the claim is written and until this function
        // returns: while it lives, no other refresh or issuance in this
        // process takes the credential, whatever the wall clock does.
        let Some(_in_flight) = self.refreshes().begin(&row.id, self.clock().monotonic()) else {
            return Ok(RefreshOutcome::Skipped);
        };
        let Some(claim) = self.claim_refresh(&row).await? else {
            return Ok(RefreshOutcome::Skipped);
        };
        let stored = match self.open_secret(&row)? {
            StoredSecret::Subscription(stored) if stored.refresh_token.is_some() => stored,
            _ => {
                self.release_claim(&row.id, &claim).await?;
                return Ok(RefreshOutcome::Skipped);
            }
        };
        let refresh_token = stored.refresh_token.clone().expect("checked above");
        let provider: Provider = row.provider.parse().map_err(ApiError::internal)?;
        match self.providers().refresh(provider, &refresh_token).await {
            Refresh::Refreshed(tokens) => self.store_refreshed(&row, &claim, provider, &stored, tokens).await,
            Refresh::Permanent(message) => self.mark_needs_reauth(&row, &claim, message).await,
            Refresh::Transient(why) => {
                tracing::warn!(credential = %row.id, reason = %why, "refresh failed; retrying next run");
                self.release_claim(&row.id, &claim).await?;
                Ok(RefreshOutcome::Transient)
            }
        }
    }

    /// Claims the credential for one refresh: one conditional UPDATE on its
    /// row (the version read, no live claim, no task holding it), on the
    /// store's clock whatever time the caller scans for. The claim's tag,
    /// or `None` when another party has the credential.
    async fn claim_refresh(&self, row: &credential::Model) -> ApiResult<Option<String>> {
        let now = self.clock().now();
        let claim = self.refreshes().new_claim();
        let claimed = credential::Entity::update_many()
            .col_expr(credential::Column::RefreshClaim, Expr::value(claim.as_str()))
            .col_expr(credential::Column::RefreshClaimedUntil, Expr::value(now + self.claim_ttl()))
            .filter(credential::Column::Id.eq(row.id.as_str()))
            .filter(credential::Column::Version.eq(row.version))
            .filter(self.refreshes().no_live_claim(now))
            .filter(
                Condition::any()
                    .add(credential::Column::LeasedUntil.is_null())
                    .add(credential::Column::LeasedUntil.lt(now)),
            )
            .exec(self.db())
            .await?
            .rows_affected;
        Ok((claimed > 0).then_some(claim))
    }

    /// Swaps the new tokens in under the claim, with an audit entry and a
    /// REFRESHED event (recorded last). If the owner replaced the
    /// credential meanwhile theirs wins; if it was removed, the tokens just
    /// obtained belong to no row and are revoked.
    async fn store_refreshed(
        &self,
        row: &credential::Model,
        claim: &str,
        provider: Provider,
        stored: &SubscriptionSecret,
        tokens: Tokens,
    ) -> ApiResult<RefreshOutcome> {
        let fresh = tokens.secret;
        let merged = merge_refreshed(&fresh, stored);
        let txn = self.db().begin().await?;
        let swapped = self
            .swap_secret_claimed(&txn, row, Some(claim), StoredSecret::Subscription(merged), tokens.expires_at)
            .await?;
        let Some(meta) = swapped else {
            let gone = credential::Entity::find_by_id(row.id.as_str()).one(&txn).await?.is_none();
            txn.rollback().await?;
            if gone {
                self.revoke_orphaned(row, provider, &fresh).await;
            }
            return Ok(RefreshOutcome::Skipped);
        };
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

    /// The provider refused the refresh token for good: NEEDS_REAUTH, with
    /// its message, if the claim still holds; the claim is released.
    async fn mark_needs_reauth(
        &self,
        row: &credential::Model,
        claim: &str,
        message: String,
    ) -> ApiResult<RefreshOutcome> {
        let txn = self.db().begin().await?;
        let rows = credential::Entity::update_many()
            .filter(credential::Column::Id.eq(row.id.as_str()))
            .filter(credential::Column::Version.eq(row.version))
            .filter(credential::Column::RefreshClaim.eq(claim))
            .col_expr(credential::Column::Status, Expr::value(CredentialStatus::NeedsReauth.as_str()))
            .col_expr(credential::Column::StatusMessage, Expr::value(message.as_str()))
            .col_expr(credential::Column::RefreshClaimedUntil, Expr::value(Option::<DateTime<Utc>>::None))
            .col_expr(credential::Column::RefreshClaim, Expr::value(Option::<String>::None))
            .col_expr(credential::Column::UpdatedAt, Expr::value(self.clock().now()))
            .exec_with_returning(&txn)
            .await?;
        let mut events = Vec::new();
        for row in &rows {
            let meta = CredentialMeta::try_from(row)?;
            events.push(meta.event(CredentialEventKind::NeedsReauth, Some(message.clone())));
        }
        let events = self.record_events(&txn, events).await?;
        txn.commit().await?;
        self.publish_all(events);
        Ok(RefreshOutcome::NeedsReauth)
    }

    /// A credential removed while its refresh was in flight: the removal
    /// revoked the token it read (already spent), so the fresh ones the
    /// refresh obtained are revoked here, best effort, when the vault's
    /// sign-in obtained the credential and the provider offers revocation.
    async fn revoke_orphaned(&self, row: &credential::Model, provider: Provider, fresh: &SubscriptionSecret) {
        let signed_in = Origin::of(row) == Origin::Flow;
        if !signed_in || !offers_revocation(provider) {
            tracing::info!(
                credential = %row.id,
                provider = provider.as_str(),
                "credential removed during its refresh; the new tokens were dropped"
            );
            return;
        }
        let revocation = self.revoker().revoke(provider, CredentialKind::Subscription, signed_in, Some(fresh)).await;
        tracing::info!(
            credential = %row.id,
            provider = provider.as_str(),
            revocation = revocation.result.as_str(),
            "credential removed during its refresh: revoking the tokens the refresh obtained"
        );
    }

    async fn release_claim(&self, id: &str, claim: &str) -> ApiResult<()> {
        credential::Entity::update_many()
            .col_expr(credential::Column::RefreshClaimedUntil, Expr::value(Option::<DateTime<Utc>>::None))
            .col_expr(credential::Column::RefreshClaim, Expr::value(Option::<String>::None))
            .filter(credential::Column::Id.eq(id))
            .filter(credential::Column::RefreshClaim.eq(claim))
            .exec(self.db())
            .await?;
        Ok(())
    }
}

impl Store {
    /// Deletes old outbox events, ended task leases and proxy grants older
    /// than 90 days. Returns how many rows went.
    pub(in crate::store) async fn housekeeping(
        &self,
        now: DateTime<Utc>,
        events_before: DateTime<Utc>,
    ) -> ApiResult<u64> {
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
        // Proxy grants hold a task's usage: kept well past the people's
        // 30-day summary, then gone.
        let grants = crate::entities::proxy_grant::Entity::delete_many()
            .filter(crate::entities::proxy_grant::Column::ExpiresAt.lt(now - Duration::days(90)))
            .exec(self.db())
            .await?
            .rows_affected;
        Ok(events + leases + grants)
    }
}

/// Credentials the expiry scan warns about rather than refreshes: no refresh
/// token, or a provider the vault does not refresh.
/// Credentials a clock that ran ahead marked too early: their expiry is
/// later than now. Back to EXPIRING (within the warning window, as the
/// scan would have done) or ACTIVE; returns the two sets (for their
/// UPDATED events). They are disjoint from the scan's EXPIRED and EXPIRING
/// sets (other statuses or times).
async fn revive_early(
    txn: &sea_orm::DatabaseTransaction,
    now: DateTime<Utc>,
    within: Duration,
) -> ApiResult<(Vec<credential::Model>, Vec<credential::Model>)> {
    let revived_expiring = credential::Entity::update_many()
        .col_expr(credential::Column::Status, Expr::value(CredentialStatus::Expiring.as_str()))
        .col_expr(credential::Column::StatusMessage, Expr::value(EXPIRING_MESSAGE))
        .filter(credential::Column::Status.eq(CredentialStatus::Expired.as_str()))
        .filter(credential::Column::ExpiresAt.gt(now))
        .filter(credential::Column::ExpiresAt.lte(now + within))
        .filter(warned_not_refreshed())
        .exec_with_returning(txn)
        .await?;
    let revived_active = credential::Entity::update_many()
        .col_expr(credential::Column::Status, Expr::value(CredentialStatus::Active.as_str()))
        .col_expr(credential::Column::StatusMessage, Expr::value(Option::<String>::None))
        .filter(
            Condition::any()
                .add(
                    Condition::all()
                        .add(credential::Column::Status.eq(CredentialStatus::Expired.as_str()))
                        .add(credential::Column::ExpiresAt.gt(now)),
                )
                .add(
                    Condition::all()
                        .add(credential::Column::Status.eq(CredentialStatus::Expiring.as_str()))
                        .add(credential::Column::ExpiresAt.gt(now + within)),
                ),
        )
        .exec_with_returning(txn)
        .await?;
    Ok((revived_expiring, revived_active))
}

/// The refreshed login: the provider's new tokens, and what it did not
/// send again kept from the stored one.
fn merge_refreshed(fresh: &SubscriptionSecret, stored: &SubscriptionSecret) -> SubscriptionSecret {
    SubscriptionSecret {
        access_token: fresh.access_token.clone(),
        refresh_token: fresh.refresh_token.clone().or(stored.refresh_token.clone()),
        id_token: fresh.id_token.clone().or(stored.id_token.clone()),
        account_id: fresh.account_id.clone().or(stored.account_id.clone()),
        last_refresh: fresh.last_refresh,
        scopes: if fresh.scopes.is_empty() { stored.scopes.clone() } else { fresh.scopes.clone() },
    }
}

fn warned_not_refreshed() -> Condition {
    Condition::any()
        .add(credential::Column::HasRefreshToken.eq(false))
        .add(credential::Column::Provider.is_not_in(providers::refreshable_names()))
}
