//! One check: what is sent (never a refresh token; nothing for a credential
//! whose status already says what to do), the provider's answer, and the
//! store recording it. And the owner's entry points.

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tokio::sync::OwnedSemaphorePermit;

use super::{Checker, Probe};
use crate::domain::{CredentialStatus, Provider};
use crate::entities::credential;
use crate::error::{ApiError, ApiResult};
use crate::store::audit::Actor;
use crate::store::{CredentialMeta, OwnerHandle, Store, StoredSecret};

/// How many of one person's credentials `checkMyCredentials` checks at
/// once (the per-provider bound applies besides).
const OWN_AT_ONCE: usize = 4;

/// Whether a credential is sent to its provider at all. An expired login,
/// or one that needs signing in again, is not: its status already says
/// what to do, and only a refresh (never a check) could change that.
fn checkable(row: &credential::Model, now: DateTime<Utc>) -> bool {
    row.status != CredentialStatus::Expired.as_str()
        && row.status != CredentialStatus::NeedsReauth.as_str()
        && row.expires_at.is_none_or(|t| t > now)
}

/// Checks one credential with its provider (in `turn` if the caller holds
/// one) and records the result. Returns the credential as it is afterwards
/// (unchanged, without a request, if it is not [`checkable`]).
pub(crate) async fn check_row(
    store: &Store,
    checker: &Checker,
    actor: Actor<'_>,
    row: credential::Model,
    turn: Option<OwnedSemaphorePermit>,
) -> ApiResult<CredentialMeta> {
    if !checkable(&row, Utc::now()) {
        return CredentialMeta::try_from(&row);
    }
    let provider: Provider = row.provider.parse().map_err(ApiError::internal)?;
    let outcome = {
        let secret = store.open_secret(&row)?;
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
    let meta = store.record_check(actor, &row, provider, &outcome, checker.expiring_within()).await?;
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

/// `checkCredential`: one of the caller's credentials; NOT_FOUND for
/// anyone else's, as for every owner mutation.
pub async fn check_own(checker: &Checker, owner: &OwnerHandle, id: &str) -> ApiResult<CredentialMeta> {
    let row = owner.row(id).await?.ok_or_else(|| ApiError::not_found("credential"))?;
    check_row(owner.store(), checker, Actor::Principal(owner.principal()), row, None).await
}

/// `checkMyCredentials`: every one of the caller's credentials, a few at a
/// time, in their usual order.
pub async fn check_all_own(checker: &Checker, owner: &OwnerHandle) -> ApiResult<Vec<CredentialMeta>> {
    let rows = owner.rows().await?;
    let (store, actor) = (owner.store(), Actor::Principal(owner.principal()));
    futures_util::stream::iter(rows)
        .map(|row| check_row(store, checker, actor, row, None))
        .buffered(OWN_AT_ONCE)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}
