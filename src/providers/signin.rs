//! Signing in with a provider, one HTTP exchange per call, so the flow
//! engine controls timing, persistence and cancellation. The protocol of
//! each provider lives in its own file, as a [`SignIn`] its registry entry
//! points at; this holds what they share: the flow's stored secret, the
//! results of a poll and a refresh, token responses, and [`Providers`],
//! which routes each call through the registry.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use futures_util::future::BoxFuture;

use super::{http, openai, spec, OauthConfig};
use crate::credential_input::{Secret, SubscriptionSecret};
use crate::domain::Provider;

/// What the flow must remember between polls; stored encrypted.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FlowSecret {
    GithubDevice { device_code: Secret },
    OpenaiDevice { device_auth_id: Secret, user_code: String },
    Authorization { verifier: Secret, state: Secret },
}

/// Whether a verification link may be shown to a person: `https://`, or
/// `http://` to this machine only (loopback: a local test provider). Any
/// other link could send the person (and the code they type) to a page an
/// eavesdropper controls.
pub fn is_safe_link(link: &str) -> bool {
    let Ok(url) = url::Url::parse(link) else { return false };
    match url.scheme() {
        "https" => url.host().is_some(),
        "http" => match url.host() {
            Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

/// A started device flow.
pub struct DeviceStart {
    pub secret: FlowSecret,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    pub expires_in: Duration,
    pub interval: u32,
}

/// The result of one poll.
pub enum Poll {
    Pending,
    SlowDown,
    Authorized(Tokens),
    Denied(String),
    Expired(String),
    /// Permanent: the flow ends FAILED with this message.
    Failed(String),
    /// Network trouble or a 5xx: retry with backoff.
    Transient(String),
}

/// Tokens a provider issued.
pub struct Tokens {
    pub secret: SubscriptionSecret,
    pub expires_at: Option<DateTime<Utc>>,
}

/// The result of a refresh.
pub enum Refresh {
    Refreshed(Tokens),
    /// The provider refused the refresh token for good: sign in again.
    Permanent(String),
    Transient(String),
}

/// A provider error for the person, and whether retrying could help.
#[derive(Debug)]
pub struct ProviderError {
    pub message: String,
    pub transient: bool,
}

/// A provider's sign-in and refresh, one HTTP exchange per call. Its
/// registry entry points at it (`ProviderSpec::sign_in`); what it does not
/// offer keeps the default, which says so.
pub trait SignIn: Sync {
    /// Starts a device sign-in; `None` when the provider offers none.
    fn start_device<'a>(
        &'a self,
        _http: &'a reqwest::Client,
        _config: &'a OauthConfig,
    ) -> Option<BoxFuture<'a, Result<DeviceStart, ProviderError>>> {
        None
    }

    /// Polls a device sign-in it started (`secret` is what its start stored).
    fn poll<'a>(
        &'a self,
        _http: &'a reqwest::Client,
        _config: &'a OauthConfig,
        _secret: &'a FlowSecret,
    ) -> BoxFuture<'a, Poll> {
        Box::pin(async { Poll::Failed("this sign-in is completed by pasting a code".into()) })
    }

    /// A fresh authorization-code sign-in: the URL the person opens and
    /// what to remember; `None` when the provider offers none.
    fn authorization_request(&self, _config: &OauthConfig) -> Option<(String, FlowSecret)> {
        None
    }

    /// The URL of a pending authorization-code sign-in, rebuilt from its
    /// secret; `None` for another kind of secret.
    fn authorization_url(&self, _config: &OauthConfig, _secret: &FlowSecret) -> Option<String> {
        None
    }

    /// Exchanges a pasted authorization code.
    fn exchange_code<'a>(
        &'a self,
        _http: &'a reqwest::Client,
        _config: &'a OauthConfig,
        _code: &'a str,
        _state: &'a str,
        _verifier: &'a Secret,
    ) -> BoxFuture<'a, Result<Tokens, ProviderError>> {
        Box::pin(async { Err(ProviderError { message: "this sign-in takes no pasted code".into(), transient: false }) })
    }

    /// The request that spends a refresh token once; `None` when the
    /// provider's logins are not refreshed.
    fn refresh_request(
        &self,
        _http: &reqwest::Client,
        _config: &OauthConfig,
        _refresh_token: &Secret,
    ) -> Option<reqwest::RequestBuilder> {
        None
    }
}

/// The providers' sign-in endpoints, reached with one HTTP client.
pub struct Providers {
    http: reqwest::Client,
    config: OauthConfig,
}

impl Providers {
    pub fn new(config: OauthConfig) -> anyhow::Result<Providers> {
        Ok(Providers { http: http::client(config.http_timeout)?, config })
    }

    pub fn config(&self) -> &OauthConfig {
        &self.config
    }

    pub async fn start_device(&self, provider: Provider) -> Result<DeviceStart, ProviderError> {
        let spec = spec(provider);
        let started = match spec.sign_in.and_then(|s| s.start_device(&self.http, &self.config)) {
            Some(start) => start.await,
            None => Err(ProviderError { message: format!("{} has no device sign-in", spec.name), transient: false }),
        }?;
        let links =
            std::iter::once(started.verification_uri.as_str()).chain(started.verification_uri_complete.as_deref());
        if links.clone().any(|link| !is_safe_link(link)) {
            tracing::warn!(
                provider = provider.as_str(),
                "a device sign-in was refused: its verification link is not https://"
            );
            return Err(ProviderError {
                message: format!(
                    "{} answered with a sign-in page that is not an https:// address, so the sign-in was not started; \
                     check the provider's settings (SESAME_OAUTH__*) or try again later",
                    crate::providers::spec(provider).name
                ),
                transient: false,
            });
        }
        Ok(started)
    }

    /// Polls a device sign-in `provider` started.
    pub async fn poll(&self, provider: Provider, secret: &FlowSecret) -> Poll {
        match spec(provider).sign_in {
            Some(sign_in) => sign_in.poll(&self.http, &self.config, secret).await,
            None => Poll::Failed(format!("{} has no sign-in", spec(provider).name)),
        }
    }

    /// A fresh PKCE pair and state, and the URL the person opens; `None`
    /// when `provider` offers no authorization-code sign-in.
    pub fn authorization_request(&self, provider: Provider) -> Option<(String, FlowSecret)> {
        spec(provider).sign_in?.authorization_request(&self.config)
    }

    /// The URL of a pending authorization-code sign-in, rebuilt from its
    /// secret; `None` for a device flow's secret.
    pub fn authorization_url(&self, provider: Provider, secret: &FlowSecret) -> Option<String> {
        spec(provider).sign_in?.authorization_url(&self.config, secret)
    }

    /// Exchanges a pasted authorization code.
    pub async fn exchange_code(
        &self,
        provider: Provider,
        code: &str,
        state: &str,
        verifier: &Secret,
    ) -> Result<Tokens, ProviderError> {
        match spec(provider).sign_in {
            Some(sign_in) => sign_in.exchange_code(&self.http, &self.config, code, state, verifier).await,
            None => Err(ProviderError { message: format!("{} has no sign-in", spec(provider).name), transient: false }),
        }
    }

    /// Uses a refresh token once. Single-use tokens (OpenAI) must never be
    /// sent twice: callers guard this with a compare-and-swap.
    pub async fn refresh(&self, provider: Provider, refresh_token: &Secret) -> Refresh {
        let spec = spec(provider);
        let name = spec.name;
        let Some(request) = spec.sign_in.and_then(|s| s.refresh_request(&self.http, &self.config, refresh_token))
        else {
            return Refresh::Permanent(format!("{name} tokens cannot be refreshed"));
        };
        let (status, body) = match http::send(request).await {
            Ok(r) => r,
            Err(m) => return Refresh::Transient(format!("{name}: {m}")),
        };
        if status >= 500 || status == 429 {
            return Refresh::Transient(format!("{name} answered {status}"));
        }
        if status >= 300 {
            let code = error_code(&body).unwrap_or_default();
            return if PERMANENT_REFRESH_ERRORS.contains(&code.as_str()) {
                Refresh::Permanent(format!(
                    "{name} no longer accepts this login ({}); sign in again",
                    if code.is_empty() { format!("HTTP {status}") } else { printable_code(&code) }
                ))
            } else {
                Refresh::Transient(format!("{name} answered {status} ({})", printable_code(&code)))
            };
        }
        match tokens_from(&body, Utc::now()) {
            Some(tokens) => Refresh::Refreshed(tokens),
            None => Refresh::Transient(format!("{name} answered in a way sesame-vault does not understand")),
        }
    }
}

/// Permanent refresh refusals (single-use tokens reused, revoked, expired).
/// Anything else (say `invalid_client` from a misconfigured client id) is
/// retried and logged, rather than signing every user out at once.
const PERMANENT_REFRESH_ERRORS: &[&str] =
    &["invalid_grant", "refresh_token_expired", "refresh_token_reused", "refresh_token_invalidated"];

/// A provider's error body: `{"error": "...", "error_description": "..."}`,
/// or OpenAI's `{"error": {"code": "...", "message": "..."}}`.
pub(super) fn error_code(body: &Value) -> Option<String> {
    match &body["error"] {
        Value::String(code) => Some(code.clone()),
        Value::Object(obj) => obj.get("code").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

fn secret_field(body: &Value, name: &str) -> Option<Secret> {
    body[name].as_str().filter(|s| !s.is_empty() && s.len() <= 16 * 1024).map(|s| Secret::new(s.to_owned()))
}

/// A token response (`access_token`, optional `refresh_token`, `id_token`,
/// `expires_in`, `scope`) into what the vault stores. ChatGPT tokens also
/// carry the account id, which OpenAI's login files want.
pub(super) fn tokens_from(body: &Value, now: DateTime<Utc>) -> Option<Tokens> {
    let access_token = secret_field(body, "access_token")?;
    let expires_at = body["expires_in"]
        .as_i64()
        .map(|s| now + Duration::seconds(s))
        .or_else(|| super::jwt::expiry(access_token.expose()));
    let id_token = secret_field(body, "id_token");
    let account_id = id_token
        .as_ref()
        .or(Some(&access_token))
        .and_then(|t| openai::account_id(t.expose()))
        // Anthropic's answer names the Claude account the login is of.
        .or_else(|| {
            let uuid = body["account"]["uuid"].as_str().map(str::trim);
            uuid.filter(|u| !u.is_empty() && u.len() <= 128 && u.bytes().all(|b| b.is_ascii_graphic()))
                .map(str::to_owned)
        });
    let scopes =
        body["scope"].as_str().map(|s| s.split([' ', ',']).filter(|s| !s.is_empty()).map(str::to_owned).collect());
    Some(Tokens {
        secret: SubscriptionSecret {
            access_token,
            refresh_token: secret_field(body, "refresh_token"),
            id_token,
            account_id,
            last_refresh: Some(now),
            scopes: scopes.unwrap_or_default(),
        },
        expires_at,
    })
}

pub(super) fn unreachable_error(name: &str, why: &str) -> ProviderError {
    ProviderError { message: format!("{name} could not be reached ({why}); try again in a moment"), transient: true }
}

/// A poll given a secret another kind of sign-in stored.
pub(super) fn foreign_secret(name: &str) -> Poll {
    Poll::Failed(format!("this sign-in was not started with {name}'s device sign-in"))
}

pub(super) fn not_understood(name: &str) -> ProviderError {
    ProviderError { message: format!("{name} answered in a way sesame-vault does not understand"), transient: false }
}

/// A provider error code, kept short and printable.
pub(super) fn printable_code(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(48).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification_links_must_be_https_or_loopback() {
        assert!(is_safe_link("https://github.com/login/device"));
        assert!(is_safe_link("http://127.0.0.1:4000/device"));
        assert!(is_safe_link("http://[::1]:4000/device"));
        assert!(is_safe_link("http://localhost:4000/device"));
        assert!(!is_safe_link("http://github.com/login/device"));
        assert!(!is_safe_link("http://10.0.0.1/device"));
        assert!(!is_safe_link("javascript:alert(1)"));
        assert!(!is_safe_link("ftp://example.com/"));
        assert!(!is_safe_link("not a url"));
    }
}
