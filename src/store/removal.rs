//! Remove means removed (issue 15): what a person removes goes in one
//! transaction (one REMOVED event and one audit entry per credential);
//! after commit, a token the vault's own sign-in obtained is revoked at its
//! provider, best effort. The answer says what came of that and, for an
//! agent's Remove, what the agent would still be handed.

use futures_util::future::join_all;
use sea_orm::{ColumnTrait, Condition, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect, TransactionTrait};

use super::audit::{Action, Actor};
use super::credentials::{slot, Origin, StoredSecret};
use super::runner::unusable_reason;
use super::{CredentialMeta, OwnerHandle, Store};
use crate::agents;
use crate::credential_input::SubscriptionSecret;
use crate::domain::{Agent, CredentialKind, CredentialSource, Provider};
use crate::entities::credential;
use crate::error::{ApiError, ApiResult};
use crate::events::CredentialEvent;
use crate::providers::revoke::{offers_revocation, RevocationOutcome};

/// An agent's Remove: what went, and what the agent would still be handed.
pub struct Removal {
    pub agent: Agent,
    pub removed: Vec<Removed>,
    /// In the order issuance tries them, per provider of the agent.
    pub remaining: Vec<Remaining>,
}

/// A removed credential and what came of revoking it at the provider.
pub struct Removed {
    pub credential: CredentialMeta,
    pub revocation: RevocationOutcome,
}

/// A source issuance would still use for the agent.
pub struct Remaining {
    pub source: CredentialSource,
    pub provider: Provider,
    /// The person's credential (not for a system key).
    pub credential_id: Option<String>,
    /// The variable a system key comes from (system keys only).
    pub env_var: Option<&'static str>,
}

/// A row about to go: its metadata, whether the vault's sign-in obtained
/// it, and (read before the row goes) the token to revoke.
pub(super) struct Doomed {
    meta: CredentialMeta,
    signed_in: bool,
    secret: Option<SubscriptionSecret>,
}

impl OwnerHandle {
    fn remover(&self) -> Actor<'_> {
        Actor::Principal(&self.principal)
    }

    /// Removes one of the caller's credentials; NOT_FOUND for anyone else's.
    pub async fn remove(&self, id: &str) -> ApiResult<Removed> {
        let txn = self.store.db().begin().await?;
        let row = credential::Entity::find_by_id(id)
            .filter(credential::Column::OwnerId.eq(self.user_id()))
            .lock_exclusive()
            .one(&txn)
            .await?
            .ok_or_else(|| ApiError::not_found("credential"))?;
        let mut removed = self.store.remove_and_revoke(txn, self.remover(), vec![row]).await?;
        removed.pop().ok_or_else(|| ApiError::not_found("credential"))
    }

    /// Removes the caller's API key for `provider`; false when there was none.
    pub async fn remove_api_key(&self, provider: Provider) -> ApiResult<bool> {
        let txn = self.store.db().begin().await?;
        let row = credential::Entity::find()
            .filter(credential::Column::OwnerId.eq(self.user_id()))
            .filter(credential::Column::Slot.eq(slot(CredentialKind::ApiKey, None, provider)))
            .lock_exclusive()
            .one(&txn)
            .await?;
        let Some(row) = row else {
            txn.rollback().await?;
            return Ok(false);
        };
        Ok(!self.store.remove_and_revoke(txn, self.remover(), vec![row]).await?.is_empty())
    }

    /// An agent's Remove: its subscription credentials, and the API keys of
    /// its providers that serve no other agent (with `include_shared`, the
    /// shared ones too: a person's key of a provider serves every agent
    /// that runs against it).
    pub async fn disconnect(&self, agent: Agent, include_shared: bool) -> ApiResult<Removal> {
        let providers = agents::spec(agent).providers;
        let keys: Vec<&str> = providers
            .iter()
            .filter(|&&p| include_shared || agents::api_key_serves_only(p, agent))
            .map(|p| p.as_str())
            .collect();
        let txn = self.store.db().begin().await?;
        let rows = credential::Entity::find()
            .filter(credential::Column::OwnerId.eq(self.user_id()))
            .filter(
                Condition::any().add(credential::Column::Agent.eq(agent.as_str())).add(
                    Condition::all()
                        .add(credential::Column::Kind.eq(CredentialKind::ApiKey.as_str()))
                        .add(credential::Column::Provider.is_in(keys)),
                ),
            )
            .lock_exclusive()
            .all(&txn)
            .await?;
        let removed = self.store.remove_and_revoke(txn, self.remover(), rows).await?;
        let remaining = self.remaining(agent).await?;
        Ok(Removal { agent, removed, remaining })
    }

    /// What issuance would hand `agent` now, per provider, in priority order.
    async fn remaining(&self, agent: Agent) -> ApiResult<Vec<Remaining>> {
        let rows = credential::Entity::find()
            .filter(credential::Column::OwnerId.eq(self.user_id()))
            .all(self.store.db())
            .await?;
        let now = chrono::Utc::now();
        let system_key_checks = self.store.system_key_checks().await?;
        let mut remaining = Vec::new();
        for &provider in agents::spec(agent).providers {
            let slots = [
                (slot(CredentialKind::Subscription, Some(agent), provider), CredentialSource::Subscription),
                (slot(CredentialKind::ApiKey, None, provider), CredentialSource::UserApiKey),
            ];
            for (slot, source) in slots {
                if let Some(row) = rows.iter().find(|r| r.slot == slot && unusable_reason(r, now).is_none()) {
                    remaining.push(Remaining { source, provider, credential_id: Some(row.id.clone()), env_var: None });
                }
            }
            if self.store.system_key_usable(provider, &system_key_checks) {
                remaining.push(Remaining {
                    source: CredentialSource::SystemKey,
                    provider,
                    credential_id: None,
                    env_var: Some(crate::providers::spec(provider).api_key_env),
                });
            }
        }
        Ok(remaining)
    }
}

impl Store {
    /// Deletes rows the caller may remove (audit entries and REMOVED events
    /// in `txn`), commits and publishes; then revokes at their providers, side
    /// by side, the tokens the vault's sign-in obtained. A failed revocation
    /// is reported, never undoes the removal.
    ///
    /// The caller reads `rows` in `txn` with a row lock (`FOR UPDATE` on
    /// PostgreSQL; on SQLite the single writer orders transactions), so a
    /// save or a refresh's compare-and-swap either commits before the read
    /// (and its token is the one revoked) or waits and then finds no row: the
    /// token revoked is the token deleted. A refresh in flight (its request
    /// at the provider, holding no lock) revokes what it obtained itself when
    /// its swap finds the row gone (`store/lifecycle.rs`).
    async fn remove_and_revoke(
        &self,
        txn: DatabaseTransaction,
        actor: Actor<'_>,
        rows: Vec<credential::Model>,
    ) -> ApiResult<Vec<Removed>> {
        let doomed = self.to_revoke(&rows)?;
        let removed = self.delete_credentials(&txn, actor, Action::CredentialRemoved, rows, None).await?;
        let events = self.record_events(&txn, removed).await?;
        self.commit_ending(txn).await?;
        Ok(self.revoke_removed(doomed, events).await)
    }

    /// Before `rows` are deleted: each one's metadata, and the token to
    /// revoke at its provider once the deletion commits (the vault's own
    /// sign-in obtained it and the provider offers revocation).
    pub(super) fn to_revoke(&self, rows: &[credential::Model]) -> ApiResult<Vec<Doomed>> {
        let mut doomed = Vec::with_capacity(rows.len());
        for row in rows {
            let meta = CredentialMeta::try_from(row)?;
            let signed_in = Origin::of(row) == Origin::Flow;
            let secret = if signed_in && offers_revocation(meta.provider) {
                match self.open_secret(row) {
                    Ok(StoredSecret::Subscription(secret)) => Some(secret),
                    Ok(StoredSecret::ApiKey { .. }) => None,
                    Err(e) => {
                        tracing::warn!(credential = row.id, error = ?e, "a removed credential's token could not be read to revoke it");
                        None
                    }
                }
            } else {
                None
            };
            doomed.push(Doomed { meta, signed_in, secret });
        }
        Ok(doomed)
    }

    /// After the deletion committed (its `events`): publishes them, then
    /// revokes at their providers, side by side, what [`Store::to_revoke`]
    /// found. A row someone else deleted meanwhile is not this removal's.
    pub(super) async fn revoke_removed(&self, mut doomed: Vec<Doomed>, events: Vec<CredentialEvent>) -> Vec<Removed> {
        doomed.retain(|d| events.iter().any(|e| e.credential_id == d.meta.id));
        self.publish_all(events);
        let revocations = join_all(
            doomed.iter().map(|d| self.revoker().revoke(d.meta.provider, d.meta.kind, d.signed_in, d.secret.as_ref())),
        )
        .await;
        doomed
            .into_iter()
            .zip(revocations)
            .map(|(d, revocation)| {
                tracing::info!(
                    credential = d.meta.id,
                    provider = d.meta.provider.as_str(),
                    revocation = revocation.result.as_str(),
                    "credential removed"
                );
                Removed { credential: d.meta, revocation }
            })
            .collect()
    }
}
