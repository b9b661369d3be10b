//! Revoking at the provider, when a person removes a credential, a token
//! the vault's own sign-in obtained (GitHub, OpenAI offer an endpoint;
//! Anthropic does not), and saying where the person revokes the rest by
//! hand (the product page: "At provider: revoke the token in your
//! provider's settings"). Best effort, with a short timeout: the removal
//! has already committed when this runs.

use std::time::Duration;

use futures_util::future::BoxFuture;

use super::{spec, OauthConfig, ProvidersConfig};
use crate::credential_input::SubscriptionSecret;
use crate::domain::{CredentialKind, Provider, RevocationResult};

/// A revocation waits at most this long for the provider.
const REVOKE_TIMEOUT: Duration = Duration::from_secs(5);

/// How a provider's tokens are revoked (its registry entry's `revocation`).
pub struct Revocation {
    /// Where a person revokes an API key of this provider by hand.
    pub api_key_page: &'static str,
    /// Where a person revokes a subscription login (a pasted token, or a
    /// signed-in one the provider did not revoke).
    pub login_page: &'static str,
    /// Revokes a token the vault's own sign-in obtained; `None` when the
    /// provider offers no endpoint for it.
    pub revoke: Option<RevokeFn>,
}

/// A provider's revocation call: `Ok` when the provider confirmed it, else
/// why not (never the token).
pub type RevokeFn =
    for<'a> fn(&'a reqwest::Client, &'a RevokeAt<'a>, &'a SubscriptionSecret) -> BoxFuture<'a, Result<(), String>>;

/// Where the revocation endpoints are (sign-in settings and API URLs).
pub struct RevokeAt<'a> {
    pub oauth: &'a OauthConfig,
    pub apis: &'a ProvidersConfig,
}

/// What came of removing a credential at the provider, and what the person
/// still has to do there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevocationOutcome {
    pub result: RevocationResult,
    pub message: String,
}

/// Sends a revocation; `Ok` when the provider answered `expected` (its
/// confirmation), else what it answered.
pub(super) async fn confirmed(request: reqwest::RequestBuilder, expected: u16, name: &str) -> Result<(), String> {
    match super::http::send(request).await? {
        (status, _) if status == expected => Ok(()),
        (status, _) => Err(format!("{name} answered {status}")),
    }
}

/// Whether removing a credential of `provider` obtained through the
/// vault's own sign-in revokes it at the provider (so its secret is read
/// before the row goes).
pub fn offers_revocation(provider: Provider) -> bool {
    spec(provider).revocation.revoke.is_some()
}

/// The endpoints and a client with a short timeout.
pub struct Revoker {
    http: reqwest::Client,
    oauth: OauthConfig,
    apis: ProvidersConfig,
}

impl Revoker {
    pub fn new(oauth: OauthConfig, apis: ProvidersConfig) -> anyhow::Result<Revoker> {
        let timeout = oauth.http_timeout.min(REVOKE_TIMEOUT);
        Ok(Revoker { http: super::http::client(timeout)?, oauth, apis })
    }

    /// Revokes a removed credential at its provider when the vault's own
    /// sign-in obtained it (`signed_in`; `secret` is its token, `None` if it
    /// could not be read) and the provider offers it; otherwise says where
    /// the person revokes it.
    pub async fn revoke(
        &self,
        provider: Provider,
        kind: CredentialKind,
        signed_in: bool,
        secret: Option<&SubscriptionSecret>,
    ) -> RevocationOutcome {
        let spec = spec(provider);
        let by_hand = match kind {
            CredentialKind::ApiKey => spec.revocation.api_key_page,
            CredentialKind::Subscription => spec.revocation.login_page,
        };
        let name = spec.name;
        if !signed_in {
            let what = if kind == CredentialKind::ApiKey { "key" } else { "token" };
            return RevocationOutcome {
                result: RevocationResult::NotOffered,
                message: format!(
                    "It was pasted, so the vault cannot revoke it: revoke the {what} in {name}'s settings ({by_hand})."
                ),
            };
        }
        let Some(revoke) = spec.revocation.revoke else {
            return RevocationOutcome {
                result: RevocationResult::NotOffered,
                message: format!(
                    "{name} offers no way to revoke it from here: revoke the token in {name}'s settings ({by_hand})."
                ),
            };
        };
        let failed = |why: &str| {
            tracing::warn!(provider = provider.as_str(), why, "revoking a removed credential at its provider failed");
            RevocationOutcome {
                result: RevocationResult::Failed,
                message: format!(
                    "{name} did not revoke the token ({why}): revoke it by hand in {name}'s settings ({by_hand})."
                ),
            }
        };
        let Some(secret) = secret else {
            return failed("its stored token could not be read");
        };
        let at = RevokeAt { oauth: &self.oauth, apis: &self.apis };
        let answer = match tokio::time::timeout(REVOKE_TIMEOUT, revoke(&self.http, &at, secret)).await {
            Ok(answer) => answer,
            Err(_) => Err("the request timed out".to_owned()),
        };
        match answer {
            Ok(()) => RevocationOutcome {
                result: RevocationResult::Revoked,
                message: format!("{name} revoked the token; nothing is left to do there."),
            },
            Err(why) => failed(&why),
        }
    }
}
