//! One check: what is sent (never a refresh token; nothing for a credential
//! whose status already says what to do), the provider's answer, and the
//! store recording it. And the owner's entry points.

use chrono::{DateTime, Duration, Utc};
use futures_util::StreamExt;
use tokio::sync::OwnedSemaphorePermit;

use super::{Checker, Probe};
use crate::domain::{CredentialStatus, Provider};
use crate::error::{ApiError, ApiResult};
use crate::store::audit::Actor;
use crate::store::{CheckTarget, CredentialMeta, OwnerHandle, Store, StoredSecret};

/// How many of one person's credentials `checkMyCredentials` checks at
/// once (the per-provider bound applies besides).
const OWN_AT_ONCE: usize = 4;

/// Whether a credential is sent to its provider at all. An expired login,
/// or one that needs signing in again, is not: its status already says
/// what to do, and only a refresh (never a check) could change that.
fn checkable(target: &CheckTarget, now: DateTime<Utc>) -> bool {
    !target.status_is(CredentialStatus::Expired)
        && !target.status_is(CredentialStatus::NeedsReauth)
        && target.expires_at().is_none_or(|t| t > now)
}

/// Checks one credential with its provider (in `turn` if the caller holds
/// one) and records the result. Returns the credential as it is afterwards
/// (unchanged, without a request, if it is not [`checkable`]).
pub(crate) async fn check_row(
    store: &Store,
    checker: &Checker,
    actor: Actor<'_>,
    target: CheckTarget,
    turn: Option<OwnedSemaphorePermit>,
) -> ApiResult<CredentialMeta> {
    if !checkable(&target, Utc::now()) {
        return target.meta();
    }
    let provider: Provider = target.provider()?;
    let outcome = {
        let secret = store.check_secret(&target)?;
        let probe = match &secret {
            StoredSecret::ApiKey { key } => Probe::ApiKey(key.expose()),
            // The access token only: a check never sends a refresh token.
            StoredSecret::Subscription(s) => {
                Probe::Subscription { access_token: s.access_token.expose(), account_id: s.account_id.as_deref() }
            }
        };
        match turn {
            Some(turn) => checker.check_in_turn(provider, probe, turn).await,
            None => checker.check(provider, probe).await,
        }
    };
    let meta = store.record_check(actor, &target, provider, &outcome, checker.expiring_within()).await?;
    crate::metrics::check(provider.as_str(), outcome.result.as_str());
    tracing::info!(
        credential = %meta.id,
        owner = %meta.owner_id,
        provider = provider.as_str(),
        result = outcome.result.as_str(),
        status = meta.status.as_str(),
        "credential checked"
    );
    Ok(meta)
}

/// A person's check of one of their credentials, unless it was checked
/// less than the cooldown ago: then nothing is sent and nothing recorded,
/// and the credential comes back as it is, with its stored check. Of
/// concurrent calls, one claims the row (as the job does) and checks; the
/// others get the row as it is. The periodic job and saves do not come here.
async fn check_own_target(checker: &Checker, owner: &OwnerHandle, target: CheckTarget) -> ApiResult<CredentialMeta> {
    let (store, actor) = (owner.store(), Actor::Principal(owner.principal()));
    let cooldown = checker.cooldown();
    if cooldown.is_zero() || !checkable(&target, Utc::now()) {
        return check_row(store, checker, actor, target, None).await;
    }
    let cooldown = Duration::from_std(cooldown).unwrap_or(Duration::MAX);
    let recent = |now: DateTime<Utc>| now.checked_sub_signed(cooldown).unwrap_or(DateTime::<Utc>::MIN_UTC);
    if target.last_checked_at().is_some_and(|at| at > recent(Utc::now())) {
        return target.meta();
    }
    // The turn first, then the claim, as the job does: a claimed credential
    // is checked at once, never left waiting until its claim lapses.
    let provider: Provider = target.provider()?;
    let turn = checker.limits().acquire(provider).await;
    let now = Utc::now();
    if !store.claim_for_check(&target, recent(now), now, now + checker.claim_ttl()).await? {
        // Checked, being checked or replaced meanwhile: shown as it is now.
        drop(turn);
        let current = owner.check_target(target.id()).await?.ok_or_else(|| ApiError::not_found("credential"))?;
        return current.meta();
    }
    check_row(store, checker, actor, target, Some(turn)).await
}

/// `checkCredential`: one of the caller's credentials; NOT_FOUND for
/// anyone else's, as for every owner mutation.
pub async fn check_own(checker: &Checker, owner: &OwnerHandle, id: &str) -> ApiResult<CredentialMeta> {
    let target = owner.check_target(id).await?.ok_or_else(|| ApiError::not_found("credential"))?;
    check_own_target(checker, owner, target).await
}

/// `checkMyCredentials`: every one of the caller's credentials, a few at a
/// time, in their usual order (those checked within the cooldown as they are).
pub async fn check_all_own(checker: &Checker, owner: &OwnerHandle) -> ApiResult<Vec<CredentialMeta>> {
    let targets = owner.check_targets().await?;
    futures_util::stream::iter(targets)
        .map(|target| check_own_target(checker, owner, target))
        .buffered(OWN_AT_ONCE)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}
