//! Who is calling: `sv_` tokens (checked against the database) and, when
//! configured, the platform's own JWTs (verified against its key set, see
//! [`jwt`]). HTTP (`Authorization: Bearer …`) and WebSocket
//! (`connection_init`) both come through [`Authenticator`].

pub mod jwt;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::auth::{BearerToken, Principal};
use crate::error::{ApiError, ApiResult};
use crate::store::Store;

/// `[auth]`: sign-in settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub jwt: JwtConfig,
}

/// `[auth.jwt]` (`SESAME_AUTH__JWT__*`): accept the platform's JWTs. On
/// when `jwks_url` or `oidc_discovery_url` is set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// The IdP's key set (JWKS), e.g. `https://idp.example.com/.well-known/jwks.json`.
    pub jwks_url: Option<String>,
    /// Or its OpenID discovery document (`…/.well-known/openid-configuration`),
    /// which names the key set and the issuer.
    pub oidc_discovery_url: Option<String>,
    /// The `iss` tokens must carry; required with `jwks_url`, taken from the
    /// discovery document otherwise.
    pub issuer: Option<String>,
    /// The `aud` tokens must carry (comma-separated for several). Required.
    pub audience: Option<String>,
    /// The claim that names the person at the IdP (with `iss`, their key).
    pub user_claim: String,
    pub email_claim: String,
    /// The claim with the caller's roles: a top-level name, or a JSON
    /// pointer such as `/realm_access/roles`; a string or a list of strings.
    pub roles_claim: String,
    /// The role that makes a person ADMIN (none: nobody is, through a JWT).
    pub admin_role: Option<String>,
    /// The role that makes the caller the task runner (none: no JWT is).
    pub runner_role: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// An unknown `kid` refetches the key set at most this often.
    #[serde(with = "humantime_serde")]
    pub refetch_interval: Duration,
    /// The key set is refetched when older than this (the last good set
    /// keeps serving while the IdP is down).
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// Timeout of each fetch from the IdP; also the longest a request waits
    /// for the IdP in all (discovery and key set together).
    #[serde(with = "humantime_serde")]
    pub http_timeout: Duration,
    /// The email claim counts only with `email_verified: true`; set false
    /// for an IdP that never sends `email_verified` (and verifies emails).
    pub require_email_verified: bool,
    /// Accept `http://` key set and discovery URLs (tests and local IdPs
    /// only: over plain HTTP anyone on the path can swap the keys).
    pub allow_http: bool,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            jwks_url: None,
            oidc_discovery_url: None,
            issuer: None,
            audience: None,
            user_claim: "sub".into(),
            email_claim: "email".into(),
            roles_claim: "roles".into(),
            admin_role: None,
            runner_role: None,
            leeway: Duration::from_secs(60),
            refetch_interval: Duration::from_secs(30),
            cache_ttl: Duration::from_secs(600),
            http_timeout: Duration::from_secs(10),
            require_email_verified: true,
            allow_http: false,
        }
    }
}

impl JwtConfig {
    pub fn enabled(&self) -> bool {
        set(&self.jwks_url).is_some() || set(&self.oidc_discovery_url).is_some()
    }

    /// What is wrong with the settings, naming the key; checked at start-up.
    pub fn check(&self) -> Result<(), String> {
        if !self.enabled() {
            return Ok(());
        }
        let url = |key: &str, value: &str| -> Result<(), String> {
            check_url_scheme(value, self.allow_http).map_err(|e| format!("auth.jwt.{key}: {e}"))
        };
        match (set(&self.jwks_url), set(&self.oidc_discovery_url)) {
            (Some(_), Some(_)) => {
                return Err("auth.jwt: set jwks_url or oidc_discovery_url, not both".into());
            }
            (Some(jwks), None) => {
                url("jwks_url", jwks)?;
                if set(&self.issuer).is_none() {
                    return Err("auth.jwt.issuer: required with jwks_url (the `iss` your IdP puts in tokens); \
                                with oidc_discovery_url it is read from the discovery document"
                        .into());
                }
            }
            (None, Some(discovery)) => url("oidc_discovery_url", discovery)?,
            (None, None) => {}
        }
        if self.audiences().is_empty() {
            return Err("auth.jwt.audience: required when JWT sign-in is on. A key set is often shared by every \
                        application of an IdP (or every tenant); without an audience check a token minted for any \
                        of them would sign in here. Set SESAME_AUTH__JWT__AUDIENCE to the audience your IdP puts \
                        in the vault's tokens"
                .into());
        }
        for (key, value) in
            [("user_claim", &self.user_claim), ("email_claim", &self.email_claim), ("roles_claim", &self.roles_claim)]
        {
            if value.trim().is_empty() {
                return Err(format!("auth.jwt.{key}: must not be empty"));
            }
        }
        if let (Some(admin), Some(runner)) = (set(&self.admin_role), set(&self.runner_role)) {
            if admin == runner {
                return Err("auth.jwt: admin_role and runner_role must differ".into());
            }
        }
        if self.refetch_interval < Duration::from_secs(1) {
            return Err("auth.jwt.refetch_interval: expected at least 1s".into());
        }
        if self.http_timeout < Duration::from_millis(100) || self.http_timeout > Duration::from_secs(60) {
            return Err("auth.jwt.http_timeout: expected 100ms to 60s".into());
        }
        Ok(())
    }

    pub fn audiences(&self) -> Vec<String> {
        self.audience
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// A key set or discovery URL must be `https://` (`http://` only when
/// `allow_http` is set): over plain HTTP anyone on the path could serve
/// their own keys and sign in as anyone.
pub(crate) fn check_url_scheme(value: &str, allow_http: bool) -> Result<(), String> {
    match url::Url::parse(value) {
        Ok(u) if u.scheme() == "https" => Ok(()),
        Ok(u) if u.scheme() == "http" && allow_http => Ok(()),
        Ok(u) if u.scheme() == "http" => Err("expected an https:// URL: over plain http anyone on the path could \
             serve their own keys (set SESAME_AUTH__JWT__ALLOW_HTTP=true only for a local test IdP)"
            .into()),
        _ => Err("expected an https:// URL".into()),
    }
}

fn set(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// How a signed-in session stays valid, for an open WebSocket.
#[derive(Debug, Clone)]
pub enum Session {
    /// An `sv_` token, by its hash (never the token).
    Token { hash: String },
    /// A JWT: valid until `until` (its `exp` plus the leeway) while its
    /// person (if a person) stays enabled.
    Jwt { until: DateTime<Utc> },
}

/// Checks bearer credentials of either kind.
#[derive(Clone)]
pub struct Authenticator {
    store: Store,
    jwt: Option<Arc<jwt::JwtVerifier>>,
}

impl Authenticator {
    /// With JWT sign-in when `config` turns it on.
    pub fn new(store: Store, config: &AuthConfig) -> anyhow::Result<Authenticator> {
        config.jwt.check().map_err(|e| anyhow::anyhow!("configuration error: {e}"))?;
        let jwt = if config.jwt.enabled() { Some(Arc::new(jwt::JwtVerifier::new(config.jwt.clone())?)) } else { None };
        Ok(Authenticator { store, jwt })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Fetches the IdP's keys ahead of the first request (a failure is
    /// logged; requests try again).
    pub fn warm_up(&self) {
        if let Some(jwt) = self.jwt.clone() {
            tokio::spawn(async move { jwt.warm_up().await });
        }
    }

    /// The principal for an `Authorization` header value (`Bearer …`).
    pub async fn authenticate_header(&self, value: &str) -> ApiResult<(Principal, Session)> {
        let mut parts = value.trim().splitn(2, ' ');
        let scheme = parts.next().unwrap_or_default();
        let token = parts.next().unwrap_or_default().trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(ApiError::Unauthenticated("the Authorization header must be `Bearer <token>`".into()));
        }
        if !jwt::looks_like_jwt(token) {
            let token = BearerToken::parse(token)?;
            let principal = self.store.authenticate(&token).await?;
            return Ok((principal, Session::Token { hash: token.hash() }));
        }
        let Some(verifier) = &self.jwt else {
            return Err(ApiError::Unauthenticated(
                "this server does not accept JWTs (JWT sign-in is not configured); use a sesame-vault `sv_` token"
                    .into(),
            ));
        };
        let verified = verifier.verify(token).await?;
        let until = verified.valid_until;
        let principal = match verified.identity {
            jwt::Identity::Runner { id, name } => {
                Principal::Runner { token_id: id, name, created_by: "the IdP's runner role".into() }
            }
            jwt::Identity::Person(person) => self.store.person_for_jwt(&person).await?,
        };
        Ok((principal, Session::Jwt { until }))
    }

    /// Returns once the session should end, checking every `every`: an
    /// `sv_` token revoked (or its person disabled, removed or given another
    /// role); a JWT past its expiry, or its person disabled or deleted. The
    /// reason goes in the close frame. A database hiccup ends nothing.
    pub async fn session_ended(&self, session: &Session, principal: &Principal, every: Duration) -> &'static str {
        loop {
            let wait = match session {
                Session::Jwt { until } => {
                    let left = (*until - Utc::now()).to_std().unwrap_or_default();
                    if left.is_zero() {
                        return "Forbidden: the token expired";
                    }
                    left.min(every)
                }
                Session::Token { .. } => every,
            };
            tokio::time::sleep(wait).await;
            // Boxed: while a socket idles, its state holds only the sleep,
            // not room for a database read (BENCHMARKS.md, WebSocket memory).
            let checked = match session {
                Session::Token { hash } => Box::pin(self.store.authenticate_hash(hash.clone())).await.and_then(|now| {
                    if now == *principal {
                        Ok(())
                    } else {
                        Err(ApiError::Unauthenticated(String::new()))
                    }
                }),
                Session::Jwt { until } => {
                    if *until <= Utc::now() {
                        return "Forbidden: the token expired";
                    }
                    match principal.user_id() {
                        Some(user_id) => Box::pin(self.store.person_allowed(user_id)).await,
                        None => Ok(()),
                    }
                }
            };
            match checked {
                Ok(()) => {}
                Err(ApiError::Internal(e)) => {
                    tracing::warn!(error = format!("{e:#}"), "re-checking a WebSocket's sign-in failed");
                }
                // The database could not answer (issue 21, item 13): not a refusal.
                Err(ApiError::Unavailable(m)) => {
                    tracing::warn!(error = m, "re-checking a WebSocket's sign-in failed");
                }
                Err(_) => {
                    return match session {
                        Session::Token { .. } => "Forbidden: the token was revoked (or its person disabled)",
                        Session::Jwt { .. } => "Forbidden: the person was disabled or deleted",
                    }
                }
            }
        }
    }
}
