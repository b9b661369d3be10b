//! The platform's JWTs, verified against its key set (JWKS).
//!
//! - Only RS256, ES256 (P-256) and EdDSA (Ed25519) are accepted; `none`,
//!   HS* and anything else are refused before any key is looked at, and the
//!   algorithm must match the key's type (and its `alg`, if the key names one).
//! - `exp`, `nbf`, `iss` and `aud` are checked with the configured leeway.
//! - Keys are cached. A token naming an unknown `kid` refetches the set at
//!   most once per `refetch_interval` (a flood of forged kids costs one fetch
//!   per interval, not one per request); the set is refreshed in the
//!   background once older than `cache_ttl`; while the IdP is down the last
//!   good set keeps serving.
//! - Refusals say which check failed and never quote the token (nor its kid).
//! - A token that verified is remembered until its `exp` (plus leeway), by
//!   the SHA-256 of the token, never the token: the signature and claims are
//!   checked once per token, not once per request. A remembered token stops
//!   counting as soon as the key that signed it leaves the key set. What
//!   must be checked per request (the person still enabled, their role and
//!   email as the claims say) is checked by the caller on every request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use anyhow::Context as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, Validation};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::JwtConfig;
use crate::domain::Role;
use crate::error::{ApiError, ApiResult};
use crate::store::JwtPerson;

/// The largest JWT looked at (IdP tokens are a few KB).
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// The largest key set or discovery document read.
const MAX_DOCUMENT: usize = 1024 * 1024;
/// Verified tokens remembered at most (a few hundred bytes each).
const MAX_VERIFIED: usize = 10_000;

/// Three base64url parts: a JWT, not an `sv_` token.
pub fn looks_like_jwt(token: &str) -> bool {
    !token.starts_with("sv_") && token.split('.').count() == 3
}

/// Who a verified token stands for.
#[derive(Debug, Clone)]
pub enum Identity {
    Person(JwtPerson),
    /// The task runner, by a stable id derived from (issuer, subject).
    Runner {
        id: String,
        name: String,
    },
}

#[derive(Debug)]
pub struct Verified {
    pub identity: Identity,
    /// `exp` plus the leeway: an open WebSocket closes then.
    pub valid_until: DateTime<Utc>,
}

struct Key {
    jwk: Jwk,
    key: DecodingKey,
}

/// A token that verified, by the SHA-256 of the token.
struct Remembered {
    identity: Identity,
    valid_until: DateTime<Utc>,
    /// The key that verified it, as it was in the set (by kid): the token
    /// counts only while that very key is still there.
    kid: Option<String>,
    key: Arc<Key>,
}

#[derive(Default)]
struct Cache {
    /// By kid (a key without one is stored as `#<index>`, and a token
    /// without a kid may use it only when the set holds exactly one key).
    keys: Arc<HashMap<String, Arc<Key>>>,
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
    /// From the discovery document, once read.
    jwks_url: Option<String>,
    /// The last attempt to read the discovery document (rate-limited like
    /// key fetches while it cannot be read).
    discovery_attempt: Option<Instant>,
    issuer: Option<String>,
}

pub struct JwtVerifier {
    config: JwtConfig,
    audiences: Vec<String>,
    http: reqwest::Client,
    cache: Mutex<Cache>,
    /// One fetch at a time; requests that waited re-read the cache.
    fetching: tokio::sync::Mutex<()>,
    discovering: tokio::sync::Mutex<()>,
    verified: Mutex<HashMap<[u8; 32], Remembered>>,
}

fn refused(why: &str) -> ApiError {
    ApiError::Unauthenticated(format!("the JWT was refused: {why}"))
}

impl JwtVerifier {
    pub fn new(config: JwtConfig) -> anyhow::Result<JwtVerifier> {
        // One backend is compiled in (rust_crypto); installing it makes the
        // choice explicit should another crate ever enable a second one.
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.http_timeout)
            .build()
            .context("building the HTTP client for the IdP")?;
        let mut cache = Cache::default();
        if let Some(url) = config.jwks_url.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
            cache.jwks_url = Some(url.to_owned());
            cache.issuer = config.issuer.clone();
        }
        Ok(JwtVerifier {
            audiences: config.audiences(),
            config,
            http,
            cache: Mutex::new(cache),
            fetching: tokio::sync::Mutex::new(()),
            discovering: tokio::sync::Mutex::new(()),
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// A token verified before, still within its `exp` and its key still in
    /// the set.
    fn remembered(&self, digest: &[u8; 32]) -> Option<Verified> {
        let verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        let hit = verified.get(digest)?;
        if hit.valid_until <= Utc::now() {
            return None;
        }
        let current = lookup(&self.cache().keys, hit.kid.as_deref())?;
        Arc::ptr_eq(&current, &hit.key)
            .then(|| Verified { identity: hit.identity.clone(), valid_until: hit.valid_until })
    }

    fn remember(&self, digest: [u8; 32], verified: &Verified, kid: Option<String>, key: Arc<Key>) {
        let mut map = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_VERIFIED {
            let now = Utc::now();
            map.retain(|_, r| r.valid_until > now);
            if map.len() >= MAX_VERIFIED {
                // Full of live tokens: start over rather than grow.
                map.clear();
            }
        }
        let remembered =
            Remembered { identity: verified.identity.clone(), valid_until: verified.valid_until, kid, key };
        map.insert(digest, remembered);
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub async fn warm_up(&self) {
        if let Err(e) = self.refetch(true).await {
            tracing::warn!(error = format!("{e:#}"), "could not fetch the IdP's key set yet; will retry on demand");
        }
    }

    /// Verifies `token` and says who it stands for.
    pub async fn verify(self: &Arc<Self>, token: &str) -> ApiResult<Verified> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(refused(&format!("it is longer than {MAX_TOKEN_LEN} bytes")));
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(verified) = self.remembered(&digest) {
            // As on a miss: a set older than `cache_ttl` is refetched behind
            // the request, so a key the IdP dropped stops counting.
            self.refresh_stale();
            return Ok(verified);
        }
        let header = read_header(token)?;
        let alg = match header.get("alg").and_then(Value::as_str) {
            Some("RS256") => Algorithm::RS256,
            Some("ES256") => Algorithm::ES256,
            Some("EdDSA") => Algorithm::EdDSA,
            Some(other) if other.eq_ignore_ascii_case("none") => {
                return Err(refused("unsigned tokens (alg none) are not accepted"))
            }
            Some(other) if other.starts_with("HS") => {
                return Err(refused(
                    "HMAC algorithms (HS256, HS384, HS512) are not accepted; RS256, ES256 or EdDSA only",
                ))
            }
            Some(_) => return Err(refused("its algorithm is not accepted; RS256, ES256 or EdDSA only")),
            None => return Err(refused("its header names no algorithm (alg)")),
        };
        let kid = header.get("kid").and_then(Value::as_str).map(str::to_owned);
        // However many fetches are due (the discovery document, then the key
        // set, perhaps behind a start-up fetch still in progress), a request
        // waits for the IdP at most `http_timeout` in all.
        let (key, issuer) = tokio::time::timeout(self.config.http_timeout, async {
            let key = self.key_for(kid.as_deref()).await?;
            let (issuer, _) = self.issuer().await?;
            Ok::<_, ApiError>((key, issuer))
        })
        .await
        // The IdP, not the token, failed: a retryable 503, not a sign-out.
        .map_err(|_| {
            ApiError::Unavailable("the IdP's key set could not be read in time; try again shortly".into())
        })??;
        check_key_matches(&key.jwk, alg)?;
        let signed_by = Arc::clone(&key);

        let mut validation = Validation::new(alg);
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[issuer.as_str()]);
        validation.set_audience(&self.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let claims = jsonwebtoken::decode::<Value>(token, &key.key, &validation)
            .map_err(|e| refused(&explain(e.kind())))?
            .claims;

        let exp = claims.get("exp").and_then(Value::as_i64).ok_or_else(|| refused("its exp claim is not a number"))?;
        let leeway = i64::try_from(self.config.leeway.as_secs()).unwrap_or(i64::MAX);
        let valid_until = DateTime::from_timestamp(exp.saturating_add(leeway), 0)
            .ok_or_else(|| refused("its exp claim is out of range"))?;
        let subject = claim_str(&claims, &self.config.user_claim)
            .filter(|s| !s.is_empty() && s.len() <= 512)
            .ok_or_else(|| refused(&format!("it has no `{}` claim naming the person", self.config.user_claim)))?;
        // An email counts only once the IdP says it verified it.
        let email = claim_str(&claims, &self.config.email_claim);
        let verified = !self.config.require_email_verified || email_verified(&claims);
        let email_unverified = email.is_some() && !verified;
        let email = email.filter(|_| verified);
        let roles = roles(&claims, &self.config.roles_claim);
        let has = |role: &Option<String>| role.as_deref().is_some_and(|r| roles.iter().any(|have| have == r));
        let (admin, runner) = (has(&self.config.admin_role), has(&self.config.runner_role));
        let identity = match (admin, runner) {
            (true, true) => return Err(refused("it carries both the admin and the runner role; give it one")),
            (_, true) => Identity::Runner { id: runner_id(&issuer, &subject), name: format!("jwt:{subject}") },
            (admin, false) => Identity::Person(JwtPerson {
                issuer,
                subject,
                email,
                email_unverified,
                role: if admin { Role::Admin } else { Role::User },
            }),
        };
        let verified = Verified { identity, valid_until };
        self.remember(digest, &verified, kid, signed_by);
        Ok(verified)
    }

    /// The issuer tokens must name, and the key set's URL (reading the
    /// discovery document the first time).
    async fn issuer(&self) -> ApiResult<(String, String)> {
        let known = || {
            let cache = self.cache();
            cache.issuer.clone().zip(cache.jwks_url.clone())
        };
        if let Some(known) = known() {
            return Ok(known);
        }
        // One reader at a time; those who waited use what it found.
        let _one_at_a_time = self.discovering.lock().await;
        if let Some(known) = known() {
            return Ok(known);
        }
        {
            let mut cache = self.cache();
            if cache.discovery_attempt.is_some_and(|at| at.elapsed() < self.config.refetch_interval) {
                return Err(ApiError::Unavailable(
                    "the IdP's discovery document could not be read; try again shortly".into(),
                ));
            }
            cache.discovery_attempt = Some(Instant::now());
        }
        let discovery = self.config.oidc_discovery_url.clone().unwrap_or_default();
        let document = self.fetch_json(&discovery).await.map_err(|e| {
            tracing::warn!(error = format!("{e:#}"), "reading the OpenID discovery document failed");
            ApiError::Unavailable("the IdP's discovery document could not be read; try again shortly".into())
        })?;
        let jwks_url = document.get("jwks_uri").and_then(Value::as_str).map(str::to_owned);
        if let Some(Err(e)) = jwks_url.as_deref().map(|u| super::check_url_scheme(u, self.config.allow_http)) {
            tracing::warn!("the OpenID discovery document's jwks_uri was refused: {e}");
            return Err(refused("the IdP's discovery document names a key set that is not served over https"));
        }
        let issuer =
            self.config.issuer.clone().or_else(|| document.get("issuer").and_then(Value::as_str).map(str::to_owned));
        let (Some(issuer), Some(jwks_url)) = (issuer, jwks_url) else {
            tracing::warn!("the OpenID discovery document names no issuer or jwks_uri");
            return Err(refused("the IdP's discovery document names no issuer or key set"));
        };
        let mut cache = self.cache();
        cache.issuer = Some(issuer.clone());
        cache.jwks_url = Some(jwks_url.clone());
        Ok((issuer, jwks_url))
    }

    /// The key a token names, refetching the set for an unknown kid at
    /// most once per `refetch_interval`.
    async fn key_for(self: &Arc<Self>, kid: Option<&str>) -> ApiResult<Arc<Key>> {
        let (found, stale) = {
            let cache = self.cache();
            let stale = cache.fetched_at.is_none_or(|at| at.elapsed() >= self.config.cache_ttl);
            (lookup(&cache.keys, kid), stale)
        };
        if let Some(key) = found {
            if stale {
                // Refresh behind the request: the known key serves meanwhile.
                self.refresh_stale();
            }
            return Ok(key);
        }
        // A failed fetch is logged; the last good set stays. The fetch runs
        // on its own task: a request that stops waiting (see `verify`) does
        // not cancel it, and the next request uses what it found.
        let this = Arc::clone(self);
        let _ = tokio::spawn(async move { this.refetch(false).await }).await;
        let cache = self.cache();
        lookup(&cache.keys, kid).ok_or_else(|| match kid {
            Some(_) => refused("it was signed with an unknown key (its kid is not in the IdP's key set)"),
            None => refused("its header names no key (kid) and the IdP's key set has more than one"),
        })
    }

    /// Fetches the key set unless one was tried within `refetch_interval`
    /// (`force` skips that check). `Ok(true)` when a fetch ran and
    /// succeeded. A failure keeps the last good set.
    async fn refetch(&self, force: bool) -> anyhow::Result<bool> {
        let _one_at_a_time = self.fetching.lock().await;
        {
            let mut cache = self.cache();
            if !force && cache.last_attempt.is_some_and(|at| at.elapsed() < self.config.refetch_interval) {
                return Ok(false);
            }
            cache.last_attempt = Some(Instant::now());
        }
        let (_, url) = self.issuer().await.map_err(|_| anyhow::anyhow!("the discovery document could not be read"))?;
        let document = match self.fetch_json(&url).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "fetching the IdP's key set failed; the last good set serves");
                return Err(e);
            }
        };
        let keys = parse_key_set(&document);
        tracing::info!(keys = keys.len(), "fetched the IdP's key set");
        let mut cache = self.cache();
        cache.keys = Arc::new(keys);
        cache.fetched_at = Some(Instant::now());
        Ok(true)
    }

    async fn fetch_json(&self, url: &str) -> anyhow::Result<Value> {
        super::check_url_scheme(url, self.config.allow_http).map_err(|e| anyhow::anyhow!("GET {url}: {e}"))?;
        let response = self.http.get(url).header("accept", "application/json").send().await?;
        let status = response.status();
        if !status.is_success() {
            anyhow::bail!("GET {url}: HTTP {status}");
        }
        // A chunk at a time, given up past the limit: a key set sent
        // chunked (no length) is never buffered whole.
        let Some(bytes) = crate::providers::http::read_at_most(response, MAX_DOCUMENT).await? else {
            anyhow::bail!("GET {url}: the document is larger than {MAX_DOCUMENT} bytes");
        };
        serde_json::from_slice(&bytes).with_context(|| format!("GET {url}: not JSON"))
    }
}

impl JwtVerifier {
    /// Serves `document` as the key set of `issuer`, as if just fetched
    /// (and tried): the fuzz targets (`crate::fuzzing`) verify against a
    /// fixed key set without an IdP.
    pub(crate) fn use_key_set(&self, issuer: &str, document: &Value) {
        let mut cache = self.cache();
        cache.keys = Arc::new(parse_key_set(document));
        cache.fetched_at = Some(Instant::now());
        cache.last_attempt = Some(Instant::now());
        cache.issuer = Some(issuer.to_owned());
        cache.jwks_url.get_or_insert_with(|| "https://idp.invalid/jwks.json".to_owned());
    }

    /// Refreshes a key set older than `cache_ttl` (at most once per
    /// `refetch_interval`), without holding up the caller.
    fn refresh_stale(self: &Arc<Self>) {
        let stale = {
            let cache = self.cache();
            cache.fetched_at.is_some_and(|at| at.elapsed() >= self.config.cache_ttl)
                && cache.last_attempt.is_none_or(|at| at.elapsed() >= self.config.refetch_interval)
        };
        if stale {
            let this = Arc::clone(self);
            tokio::spawn(async move {
                let _ = this.refetch(false).await;
            });
        }
    }
}

fn lookup(keys: &HashMap<String, Arc<Key>>, kid: Option<&str>) -> Option<Arc<Key>> {
    match kid {
        Some(kid) => keys.get(kid).cloned(),
        None if keys.len() == 1 => keys.values().next().cloned(),
        None => None,
    }
}

/// The usable signing keys of a JWKS document, by kid. Keys of types this
/// service does not accept, or meant for encryption, are skipped one by one
/// (a set may hold keys for other purposes).
fn parse_key_set(document: &Value) -> HashMap<String, Arc<Key>> {
    let mut keys = HashMap::new();
    for (i, raw) in document.get("keys").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let Ok(jwk) = serde_json::from_value::<Jwk>(raw.clone()) else { continue };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
            continue; // a shared secret is never a verification key here
        }
        let Ok(key) = DecodingKey::from_jwk(&jwk) else { continue };
        let kid = jwk.common.key_id.clone().unwrap_or_else(|| format!("#{i}"));
        keys.insert(kid, Arc::new(Key { jwk, key }));
    }
    keys
}

/// The key's type (and its `alg`, if it names one) must be the token's.
fn check_key_matches(jwk: &Jwk, alg: Algorithm) -> ApiResult<()> {
    let type_matches = match (&jwk.algorithm, alg) {
        (AlgorithmParameters::RSA(_), Algorithm::RS256) => true,
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256) => p.curve == EllipticCurve::P256,
        (AlgorithmParameters::OctetKeyPair(p), Algorithm::EdDSA) => p.curve == EllipticCurve::Ed25519,
        _ => false,
    };
    let alg_matches = jwk.common.key_algorithm.is_none_or(|k| {
        matches!(
            (k, alg),
            (KeyAlgorithm::RS256, Algorithm::RS256)
                | (KeyAlgorithm::ES256, Algorithm::ES256)
                | (KeyAlgorithm::EdDSA, Algorithm::EdDSA)
        )
    });
    if type_matches && alg_matches {
        Ok(())
    } else {
        Err(refused("its algorithm does not match the key it names"))
    }
}

fn read_header(token: &str) -> ApiResult<serde_json::Map<String, Value>> {
    let malformed = || refused("it is not a well-formed JWT (three base64url parts, a JSON header and payload)");
    let first = token.split('.').next().ok_or_else(malformed)?;
    let bytes = URL_SAFE_NO_PAD.decode(first.trim_end_matches('=')).map_err(|_| malformed())?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(malformed()),
    }
}

/// Which check failed, in words; never the token.
fn explain(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "it has expired (exp)".into(),
        ErrorKind::ImmatureSignature => "it is not valid yet (nbf)".into(),
        ErrorKind::InvalidIssuer => "wrong issuer (iss)".into(),
        ErrorKind::InvalidAudience => "wrong audience (aud): it was not issued for this vault".into(),
        ErrorKind::InvalidSignature => "its signature does not verify (tampered, or signed with another key)".into(),
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "exp" | "iss" | "aud" | "nbf" | "sub" => format!("it has no {claim} claim"),
            _ => "a required claim is missing".into(),
        },
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidKeyFormat => {
            "its algorithm does not match the key it names".into()
        }
        ErrorKind::InvalidClaimFormat(_) => "a claim has the wrong type".into(),
        _ => "it is not a well-formed JWT".into(),
    }
}

/// A claim by top-level name, or by JSON pointer (`/a/b`).
fn claim<'a>(claims: &'a Value, name: &str) -> Option<&'a Value> {
    if name.starts_with('/') {
        claims.pointer(name)
    } else {
        claims.get(name)
    }
}

fn claim_str(claims: &Value, name: &str) -> Option<String> {
    claim(claims, name).and_then(Value::as_str).map(str::to_owned)
}

/// `email_verified` is true (a boolean, or the string "true" some IdPs send).
fn email_verified(claims: &Value) -> bool {
    match claims.get("email_verified") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// The roles claim: a list of strings, or one string (space-separated).
fn roles(claims: &Value, name: &str) -> Vec<String> {
    match claim(claims, name) {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// A runner signed in with a JWT has no token row; its id (for audit
/// entries and task leases) is a UUID-shaped digest of (issuer, subject),
/// the same on every request.
fn runner_id(issuer: &str, subject: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{issuer}\u{0}{subject}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid().hyphenated().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_shapes_are_told_from_tokens() {
        assert!(looks_like_jwt("a.b.c"));
        assert!(!looks_like_jwt("sv_AAAA"));
        assert!(!looks_like_jwt("a.b"));
    }

    #[test]
    fn roles_come_from_a_name_or_a_pointer() {
        let claims = serde_json::json!({"roles": ["a", "b"], "realm_access": {"roles": ["admin"]}, "scope": "x y"});
        assert_eq!(roles(&claims, "roles"), ["a", "b"]);
        assert_eq!(roles(&claims, "/realm_access/roles"), ["admin"]);
        assert_eq!(roles(&claims, "scope"), ["x", "y"]);
        assert!(roles(&claims, "missing").is_empty());
    }

    #[test]
    fn runner_ids_are_stable_and_distinct() {
        assert_eq!(runner_id("i", "s"), runner_id("i", "s"));
        assert_ne!(runner_id("i", "s"), runner_id("i", "t"));
        assert_eq!(runner_id("i", "s").len(), 36);
    }
}
