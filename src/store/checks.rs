//! The rows behind checks with providers (`crate::checks` asks the
//! providers): a check recorded on its credential, the periodic job's
//! choice of due credentials and its claims, and the system-wide keys'
//! results (the keys live in the environment; their results in
//! `system_key_checks`, by provider and a fingerprint of the key, so a
//! result about a key no longer set is not shown).

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait};

use super::audit::{self, Action, Actor};
use super::{CredentialMeta, Store};
use crate::domain::{CheckResult, CredentialEventKind, CredentialStatus, Provider};
use crate::entities::credential;
use crate::entities::system_key_check::{self, fingerprint};
use crate::error::{ApiError, ApiResult};
use crate::providers::Outcome;

/// The fingerprint a system key's check result is kept under.
pub(crate) fn system_key_fingerprint(key: &str) -> String {
    fingerprint(key)
}

/// A system key's last check.
#[derive(Clone, Debug)]
pub struct SystemKeyCheck {
    pub provider: Provider,
    pub result: CheckResult,
    pub message: Option<String>,
    pub at: DateTime<Utc>,
}

/// Not checked since `stale_before` (or never).
fn due(stale_before: DateTime<Utc>) -> Condition {
    Condition::any()
        .add(credential::Column::LastCheckedAt.is_null())
        .add(credential::Column::LastCheckedAt.lt(stale_before))
}

fn unclaimed(now: DateTime<Utc>) -> Condition {
    Condition::any()
        .add(credential::Column::CheckClaimedUntil.is_null())
        .add(credential::Column::CheckClaimedUntil.lt(now))
}

/// What a credential's status is once a check no longer refuses it: what
/// the expiry rules give (see the expiry scan).
fn restored(row: &credential::Model, provider: Provider, now: DateTime<Utc>, within: Duration) -> CredentialStatus {
    let refreshed_instead = row.has_refresh_token && crate::providers::refreshable_names().contains(&provider.as_str());
    match row.expires_at {
        Some(t) if t <= now => CredentialStatus::Expired,
        Some(t) if t <= now + within && !refreshed_instead => CredentialStatus::Expiring,
        _ => CredentialStatus::Active,
    }
}

/// A credential a check is about, as read: the row stays inside the
/// store; the checks engine reads what it needs through these methods and
/// hands the target back to record its result.
pub struct CheckTarget {
    row: credential::Model,
}

impl CheckTarget {
    pub(super) fn new(row: credential::Model) -> CheckTarget {
        CheckTarget { row }
    }

    pub fn id(&self) -> &str {
        &self.row.id
    }

    pub fn provider(&self) -> ApiResult<Provider> {
        self.row.provider.parse().map_err(ApiError::internal)
    }

    pub fn status_is(&self, status: CredentialStatus) -> bool {
        self.row.status == status.as_str()
    }

    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.row.expires_at
    }

    pub fn last_checked_at(&self) -> Option<DateTime<Utc>> {
        self.row.last_checked_at
    }

    /// The credential as it was read, without its secret.
    pub fn meta(&self) -> ApiResult<CredentialMeta> {
        CredentialMeta::try_from(&self.row)
    }
}

impl Store {
    /// The secret a check sends (the caller builds its probe from it: an
    /// API key, or a login's access token, never its refresh token).
    pub(crate) fn check_secret(&self, target: &CheckTarget) -> ApiResult<crate::store::StoredSecret> {
        self.open_secret(&target.row)
    }

    /// Records a check on the credential's row, if its version (and, when
    /// the status moves, its status) is still the one read: a result never
    /// lands on a secret replaced during the check. One audit entry; an
    /// INVALID event when the check refuses the credential, an UPDATED one
    /// when it makes an INVALID credential usable again.
    pub(crate) async fn record_check(
        &self,
        actor: Actor<'_>,
        target: &CheckTarget,
        provider: Provider,
        outcome: &Outcome,
        within: Duration,
    ) -> ApiResult<CredentialMeta> {
        let row = &target.row;
        let now = Utc::now();
        let was_invalid = row.status == CredentialStatus::Invalid.as_str();
        let (status, event) = match outcome.result {
            CheckResult::Invalid => (
                Some((CredentialStatus::Invalid, outcome.message.clone())),
                (!was_invalid).then_some(CredentialEventKind::Invalid),
            ),
            // NO_ACCESS proves the credential authenticates, as VALID does.
            CheckResult::Valid | CheckResult::NoAccess if was_invalid => {
                let status = restored(row, provider, now, within);
                let message = (status == CredentialStatus::Expiring).then(|| crate::store::EXPIRING_MESSAGE.to_owned());
                (Some((status, message)), Some(CredentialEventKind::Updated))
            }
            // UNREACHABLE concludes nothing; NO_ACCESS is recorded, not a status.
            _ => (None, None),
        };
        let txn = self.db().begin().await?;
        let mut update = credential::Entity::update_many()
            .col_expr(credential::Column::LastCheckedAt, Expr::value(now))
            .col_expr(credential::Column::CheckResult, Expr::value(outcome.result.as_str()))
            .col_expr(credential::Column::CheckMessage, Expr::value(outcome.message.clone()))
            .col_expr(credential::Column::CheckClaimedUntil, Expr::value(Option::<DateTime<Utc>>::None))
            .filter(credential::Column::Id.eq(row.id.as_str()))
            .filter(credential::Column::Version.eq(row.version));
        if let Some((status, message)) = &status {
            // The status moves only from the one read: an expiry or a failed
            // refresh meanwhile (which keep the version) is not overwritten.
            update = update
                .col_expr(credential::Column::Status, Expr::value(status.as_str()))
                .col_expr(credential::Column::StatusMessage, Expr::value(message.clone()))
                .col_expr(credential::Column::UpdatedAt, Expr::value(now))
                .filter(credential::Column::Status.eq(row.status.as_str()));
        }
        let updated = update.exec_with_returning(&txn).await?;
        let Some(updated) = updated.first() else {
            // Replaced (or moved on) while the check ran: the result was
            // about a secret no longer stored; the credential is shown as it is.
            txn.rollback().await?;
            tracing::info!(credential = %row.id, result = outcome.result.as_str(), "credential changed during its check; result dropped");
            let current = credential::Entity::find_by_id(row.id.as_str())
                .one(self.db())
                .await?
                .ok_or_else(|| ApiError::not_found("credential"))?;
            return CredentialMeta::try_from(&current);
        };
        let meta = CredentialMeta::try_from(updated)?;
        audit::record(
            &txn,
            actor,
            Action::CredentialChecked,
            audit::Entry {
                owner_id: Some(&meta.owner_id),
                credential_id: Some(&meta.id),
                provider: Some(provider),
                agent: meta.agent,
                detail: Some(format!("result {}", outcome.result.as_str())),
                ..Default::default()
            },
        )
        .await?;
        let mut events = Vec::new();
        if let Some(kind) = event {
            events.push(self.record_event(&txn, meta.event(kind, meta.status_message.clone())).await?);
        }
        txn.commit().await?;
        self.publish_all(events);
        Ok(meta)
    }

    /// Up to `limit` credentials not checked since `stale_before`, never
    /// checked first, then the longest ago; none that is expired, needs
    /// signing in again, or is claimed by a check in progress.
    pub(crate) async fn due_for_check(
        &self,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
        limit: u64,
    ) -> ApiResult<Vec<CheckTarget>> {
        // Two reads the `last_checked_at` index serves (one ordered by a
        // NULL test would sort the whole table every run).
        let eligible = || {
            credential::Entity::find()
                .filter(
                    credential::Column::Status
                        .is_not_in([CredentialStatus::Expired.as_str(), CredentialStatus::NeedsReauth.as_str()]),
                )
                .filter(
                    Condition::any()
                        .add(credential::Column::ExpiresAt.is_null())
                        .add(credential::Column::ExpiresAt.gt(now)),
                )
                .filter(unclaimed(now))
        };
        let mut due = eligible()
            .filter(credential::Column::LastCheckedAt.is_null())
            .order_by_asc(credential::Column::CreatedAt)
            .limit(limit)
            .all(self.db())
            .await?;
        let left = limit.saturating_sub(due.len() as u64);
        if left > 0 {
            due.extend(
                eligible()
                    .filter(credential::Column::LastCheckedAt.lt(stale_before))
                    .order_by_asc(credential::Column::LastCheckedAt)
                    .limit(left)
                    .all(self.db())
                    .await?,
            );
        }
        Ok(due.into_iter().map(CheckTarget::new).collect())
    }

    /// Claims a due credential for one check until `until` (a
    /// compare-and-swap on its row: of two replicas or two runs, one wins).
    pub(crate) async fn claim_for_check(
        &self,
        target: &CheckTarget,
        stale_before: DateTime<Utc>,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> ApiResult<bool> {
        let row = &target.row;
        let claimed = credential::Entity::update_many()
            .col_expr(credential::Column::CheckClaimedUntil, Expr::value(until))
            .filter(credential::Column::Id.eq(row.id.as_str()))
            .filter(credential::Column::Version.eq(row.version))
            .filter(due(stale_before))
            .filter(unclaimed(now))
            .exec(self.db())
            .await?
            .rows_affected;
        Ok(claimed == 1)
    }

    /// Claims the check of the system key of `provider` (whose value has
    /// fingerprint `print`) if it is due: the row is made first, and reset
    /// when the key changed.
    pub(crate) async fn claim_system_key_check(
        &self,
        provider: Provider,
        print: &str,
        stale_before: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> ApiResult<bool> {
        let now = Utc::now();
        system_key_check::Entity::insert(system_key_check::ActiveModel {
            provider: Set(provider.as_str().to_owned()),
            key_fingerprint: Set(print.to_owned()),
            last_checked_at: Set(None),
            check_result: Set(None),
            check_message: Set(None),
            check_claimed_until: Set(None),
        })
        .on_conflict(OnConflict::column(system_key_check::Column::Provider).do_nothing().to_owned())
        .exec_without_returning(self.db())
        .await?;
        // A result about another key (the variable changed) is dropped.
        system_key_check::Entity::update_many()
            .col_expr(system_key_check::Column::KeyFingerprint, Expr::value(print))
            .col_expr(system_key_check::Column::LastCheckedAt, Expr::value(Option::<DateTime<Utc>>::None))
            .col_expr(system_key_check::Column::CheckResult, Expr::value(Option::<String>::None))
            .col_expr(system_key_check::Column::CheckMessage, Expr::value(Option::<String>::None))
            .filter(system_key_check::Column::Provider.eq(provider.as_str()))
            .filter(system_key_check::Column::KeyFingerprint.ne(print))
            .exec(self.db())
            .await?;
        let claimed = system_key_check::Entity::update_many()
            .col_expr(system_key_check::Column::CheckClaimedUntil, Expr::value(until))
            .filter(system_key_check::Column::Provider.eq(provider.as_str()))
            .filter(system_key_check::Column::KeyFingerprint.eq(print))
            .filter(
                Condition::any()
                    .add(system_key_check::Column::LastCheckedAt.is_null())
                    .add(system_key_check::Column::LastCheckedAt.lt(stale_before)),
            )
            .filter(
                Condition::any()
                    .add(system_key_check::Column::CheckClaimedUntil.is_null())
                    .add(system_key_check::Column::CheckClaimedUntil.lt(now)),
            )
            .exec(self.db())
            .await?
            .rows_affected;
        Ok(claimed == 1)
    }

    /// Records the check of a system key claimed with
    /// [`Store::claim_system_key_check`], with its audit entry.
    pub(crate) async fn record_system_key_check(
        &self,
        provider: Provider,
        print: &str,
        outcome: &Outcome,
    ) -> ApiResult<()> {
        let previous = system_key_check::Entity::find_by_id(provider.as_str()).one(self.db()).await?;
        let was_invalid =
            previous.as_ref().and_then(|p| p.check_result.as_deref()) == Some(CheckResult::Invalid.as_str());
        let mut update = system_key_check::Entity::update_many()
            .col_expr(system_key_check::Column::LastCheckedAt, Expr::value(Utc::now()))
            .col_expr(system_key_check::Column::CheckClaimedUntil, Expr::value(Option::<DateTime<Utc>>::None))
            .filter(system_key_check::Column::Provider.eq(provider.as_str()))
            .filter(system_key_check::Column::KeyFingerprint.eq(print));
        // UNREACHABLE concludes nothing: a key found INVALID stays so.
        if !(outcome.result == CheckResult::Unreachable && was_invalid) {
            update = update
                .col_expr(system_key_check::Column::CheckResult, Expr::value(outcome.result.as_str()))
                .col_expr(system_key_check::Column::CheckMessage, Expr::value(outcome.message.clone()));
        }
        let txn = self.db().begin().await?;
        update.exec(&txn).await?;
        audit::record(
            &txn,
            Actor::System,
            Action::CredentialChecked,
            audit::Entry {
                provider: Some(provider),
                detail: Some(format!(
                    "system key {}: result {}",
                    crate::providers::spec(provider).api_key_env,
                    outcome.result.as_str()
                )),
                ..Default::default()
            },
        )
        .await?;
        txn.commit().await?;
        Ok(())
    }

    /// The last check of each configured system key (one small table; read
    /// only when a system key is set).
    pub async fn system_key_checks(&self) -> ApiResult<Vec<SystemKeyCheck>> {
        if Provider::ALL.iter().all(|&p| self.system_keys().get(p).is_none()) {
            return Ok(Vec::new());
        }
        let rows = system_key_check::Entity::find().all(self.reader()).await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let provider: Provider = row.provider.parse().ok()?;
                let key = self.system_keys().get(provider)?;
                if row.key_fingerprint != fingerprint(key.expose()) {
                    return None;
                }
                Some(SystemKeyCheck {
                    provider,
                    result: row.check_result.as_deref()?.parse().ok()?,
                    message: row.check_message,
                    at: row.last_checked_at?,
                })
            })
            .collect())
    }
}
