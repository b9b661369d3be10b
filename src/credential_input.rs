//! Parse, don't validate: the provider-neutral half of turning what a person
//! types into typed values. The secret types ([`Secret`],
//! [`SubscriptionSecret`]), the refusal type ([`InputError`]), size bounds and
//! the checks every token passes whoever issued it. What a key or token of a
//! given provider looks like lives with the provider (`crate::providers`).
//!
//! Ground rule: no error message, `Debug` output or panic ever contains the
//! value that was typed (or any part of it). Messages only name the field,
//! the expected shape and what the value *looks like* (e.g. "a GitHub token").

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Longest token we accept. Real tokens are far shorter (a Codex JWT is ~2 KB);
/// the cap keeps junk (a pasted log file) out of the store.
pub const MAX_INPUT_BYTES: usize = 8192;
/// Longest `authJson` we accept: it holds two JWTs and a refresh token, so it
/// gets more room than a single token.
pub const MAX_AUTH_JSON_BYTES: usize = 32 * 1024;
/// Shortest token of any kind we accept; anything shorter is a partial copy.
pub const MIN_TOKEN_CHARS: usize = 20;

pub const WHITESPACE_REFUSAL: &str = "the token contains spaces or line breaks; copy it again without them";

/// Why a typed credential was refused, in words a person can act on.
/// Never contains the typed value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

impl InputError {
    pub fn new(message: impl Into<String>) -> Self {
        InputError(message.into())
    }
}

pub type InputResult<T> = std::result::Result<T, InputError>;

/// A refusal reaches the client as BAD_USER_INPUT with its message.
impl From<InputError> for crate::error::ApiError {
    fn from(e: InputError) -> Self {
        crate::error::ApiError::BadInput(e.0)
    }
}

// ---------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------

/// A secret string: zeroized on drop, `Debug` prints `***`, serialised as a
/// plain string (only ever into the encrypted store or a materialised file).
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The plaintext. Callers must not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The secret part of a subscription credential, serialised as JSON and
/// encrypted by the store.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct SubscriptionSecret {
    pub access_token: Secret,
    #[serde(default)]
    pub refresh_token: Option<Secret>,
    /// Codex's `id_token` (a JWT); Codex refuses an auth.json without one.
    #[serde(default)]
    pub id_token: Option<Secret>,
    #[serde(default)]
    pub account_id: Option<String>,
    #[serde(default)]
    #[zeroize(skip)]
    pub last_refresh: Option<DateTime<Utc>>,
    #[serde(default)]
    pub scopes: Vec<String>,
}

impl SubscriptionSecret {
    /// A bare access token, nothing else known yet.
    pub fn access_only(access_token: Secret) -> Self {
        SubscriptionSecret {
            access_token,
            refresh_token: None,
            id_token: None,
            account_id: None,
            last_refresh: None,
            scopes: Vec::new(),
        }
    }
}

impl fmt::Debug for SubscriptionSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Tokens print as *** via Secret; the account id is redacted too, as
        // it identifies the person's ChatGPT account.
        f.debug_struct("SubscriptionSecret")
            .field("access_token", &self.access_token)
            .field("refresh_token", &self.refresh_token)
            .field("id_token", &self.id_token)
            .field("account_id", &self.account_id.as_ref().map(|_| Redacted))
            .field("last_refresh", &self.last_refresh)
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// Prints `***` in `Debug` output in place of something given.
pub struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

// ---------------------------------------------------------------------------
// A subscription save's text fields
// ---------------------------------------------------------------------------

/// The non-blank text fields of a subscription save, as the agents' and
/// providers' parsers read them.
pub struct SubscriptionFields<'a> {
    pub token: Option<&'a str>,
    pub access_token: Option<&'a str>,
    pub refresh_token: Option<&'a str>,
    pub auth_json: Option<&'a str>,
}

impl<'a> SubscriptionFields<'a> {
    /// Forms send "" for fields left blank; those count as not given.
    pub fn new(
        token: Option<&'a str>,
        access_token: Option<&'a str>,
        refresh_token: Option<&'a str>,
        auth_json: Option<&'a str>,
    ) -> Self {
        SubscriptionFields {
            token: given(token),
            access_token: given(access_token),
            refresh_token: given(refresh_token),
            auth_json: given(auth_json),
        }
    }

    /// `token` and `accessToken` are two names for the pasted token; people
    /// use whichever the dialog showed, but must not fill in both.
    pub fn pasted_token(&self) -> InputResult<Option<(&'a str, &'static str)>> {
        match (self.token, self.access_token) {
            (Some(_), Some(_)) => Err(InputError::new("Give the token once, in token or in accessToken, not both.")),
            (Some(t), None) => Ok(Some((t, "token"))),
            (None, Some(t)) => Ok(Some((t, "accessToken"))),
            (None, None) => Ok(None),
        }
    }
}

/// `None` for a missing or blank value.
pub fn given(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.trim().is_empty())
}

// ---------------------------------------------------------------------------
// Checks every token passes
// ---------------------------------------------------------------------------

/// Trims the value and refuses what no token can be: empty, oversized, JSON,
/// containing whitespace, control or non-ASCII characters.
pub fn clean<'a>(raw: &'a str, field: &str, max_bytes: usize) -> InputResult<&'a str> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(InputError::new(format!("{field} is empty; paste the value.")));
    }
    if value.len() > max_bytes {
        return Err(InputError::new(format!(
            "{field} is longer than {max_bytes} bytes, more than any token; paste only the token."
        )));
    }
    if value.starts_with('{') {
        return Err(InputError::new(format!(
            "{field} looks like JSON; paste only the token (for Codex, the whole ~/.codex/auth.json \
             goes into authJson)."
        )));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(InputError::new(format!("{field}: {WHITESPACE_REFUSAL}.")));
    }
    if !value.is_ascii() {
        return Err(InputError::new(format!(
            "{field} contains characters no token has (such as … or curly quotes); copy the whole \
             token again from where it was shown."
        )));
    }
    Ok(value)
}

/// Prefixed keys and tokens use `[A-Za-z0-9_-]` only; anything else is a
/// quote, `=` or the like copied along with it. Also refuses clipped copies.
pub fn check_token_body(token: &str, field: &str, what: &str) -> InputResult<()> {
    if !token.bytes().all(is_token_byte) {
        return Err(InputError::new(format!(
            "{field} contains characters no {what} has (quotes, '=', '.' or similar); paste only \
             the {what} itself."
        )));
    }
    if token.len() < MIN_TOKEN_CHARS {
        return Err(too_short(field, what));
    }
    Ok(())
}

/// Refresh tokens have no fixed shape: only the generic checks apply.
pub fn check_opaque_token<'a>(raw: &'a str, field: &str) -> InputResult<&'a str> {
    let token = clean(raw, field, MAX_INPUT_BYTES)?;
    if token.len() < MIN_TOKEN_CHARS {
        return Err(too_short(field, "refresh token"));
    }
    Ok(token)
}

pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

pub fn too_short(field: &str, what: &str) -> InputError {
    InputError::new(format!("{field} is too short to be a complete {what}; check you copied all of it."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::samples::*;

    // ---- Secret -----------------------------------------------------------

    #[test]
    fn secret_debug_is_redacted_and_serde_is_plain() {
        let s = Secret::new(claude_token());
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(s.expose(), claude_token());
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, format!("\"{}\"", claude_token()));
        let back: Secret = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn secret_zeroize_clears_value() {
        let mut s = Secret::new(claude_token());
        s.zeroize();
        assert_eq!(s.expose(), "");
    }

    // ---- Serialisation and Debug of the stored secret ---------------------

    #[test]
    fn subscription_secret_round_trips_and_debug_is_redacted() {
        let secret = SubscriptionSecret {
            access_token: Secret::new(format!("access-{MARK}")),
            refresh_token: Some(Secret::new(format!("refresh-{MARK}"))),
            id_token: Some(Secret::new(format!("id-{MARK}"))),
            account_id: Some(format!("acct-{MARK}")),
            last_refresh: Some(now()),
            scopes: vec!["user:inference".into()],
        };
        let debug = format!("{secret:?}");
        assert!(!debug.contains(MARK), "{debug}");
        assert!(debug.contains("***") && debug.contains("user:inference"), "{debug}");

        let json = serde_json::to_value(&secret).unwrap();
        assert_eq!(json["access_token"], format!("access-{MARK}"));
        assert_eq!(json["refresh_token"], format!("refresh-{MARK}"));
        let back: SubscriptionSecret = serde_json::from_value(json).unwrap();
        assert_eq!(back.access_token, secret.access_token);
        assert_eq!(back.refresh_token, secret.refresh_token);
        assert_eq!(back.id_token, secret.id_token);
        assert_eq!(back.account_id, secret.account_id);
        assert_eq!(back.last_refresh, secret.last_refresh);
        assert_eq!(back.scopes, secret.scopes);

        // Older rows may lack the optional fields.
        let minimal: SubscriptionSecret = serde_json::from_str(r#"{"access_token":"abc"}"#).unwrap();
        assert!(minimal.refresh_token.is_none() && minimal.scopes.is_empty());
    }
}
