//! The one place that reads JWTs. Tokens the providers issue are read, never
//! verified: the service only looks at what the provider told the token's
//! holder (expiry, account), so nothing here is a security decision.
//!
//! Two readings exist because two consumers disagree: people paste tokens
//! that tools may have padded ([`claims`]), while Codex loads only the strict
//! form ([`is_strict_jwt`]) and refuses a file holding anything else.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use zeroize::{Zeroize, Zeroizing};

/// base64url as JWTs use it; padding tolerated because some tools add it.
const JWT_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_encode_padding(false).with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

const UNSIGNED_HEADER: &str = r#"{"alg":"none","typ":"JWT"}"#;

/// The claims of a JWT: three base64url parts whose middle one decodes to a
/// JSON object. The signature is not checked.
pub fn claims(token: &str) -> Option<Map<String, Value>> {
    let mut parts = token.trim().split('.');
    let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || header.is_empty() || payload.is_empty() {
        return None;
    }
    JWT_B64.decode(header).ok()?;
    JWT_B64.decode(signature).ok()?;
    let mut bytes = JWT_B64.decode(payload).ok()?;
    let claims = serde_json::from_slice::<Value>(&bytes);
    // The payload is part of a secret token.
    bytes.zeroize();
    match claims.ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

pub fn is_jwt(token: &str) -> bool {
    claims(token).is_some()
}

/// When a JWT expires, from its `exp` claim (seconds since the epoch); `None`
/// when the token is not a JWT or has no usable `exp`.
pub fn expiry(token: &str) -> Option<DateTime<Utc>> {
    let claims = claims(token)?;
    let exp = claims.get("exp")?;
    let secs = exp.as_i64().or_else(|| exp.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))?;
    DateTime::from_timestamp(secs, 0)
}

/// Decodes one part in the strict form (unpadded base64url) into a JSON object.
fn strict_object(part: &str) -> Option<Map<String, Value>> {
    let bytes = Zeroizing::new(URL_SAFE_NO_PAD.decode(part).ok()?);
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// Header and claims of a token in the form Codex accepts as a JWT: three
/// non-empty parts whose middle one is an unpadded base64url JSON object.
fn strict_parts(token: &str) -> Option<(&str, Map<String, Value>)> {
    let mut parts = token.split('.');
    let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || header.is_empty() || signature.is_empty() {
        return None;
    }
    Some((header, strict_object(payload)?))
}

/// Whether `token` is in the strict form Codex accepts: three non-empty
/// parts, the middle one an unpadded base64url JSON object.
pub fn is_strict_jwt(token: &str) -> bool {
    strict_parts(token).is_some()
}

/// A JWT with no signature (`alg: none`) holding `claims`; the signature is
/// a placeholder because readers want three non-empty parts.
pub fn unsigned(claims: Map<String, Value>) -> Zeroizing<String> {
    let payload = Zeroizing::new(Value::Object(claims).to_string());
    Zeroizing::new(format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(UNSIGNED_HEADER),
        URL_SAFE_NO_PAD.encode(payload.as_bytes()),
        URL_SAFE_NO_PAD.encode("sig")
    ))
}

/// Whether this is an `alg: none` JWT such as [`unsigned`] makes.
pub fn is_unsigned(token: &str) -> bool {
    strict_parts(token)
        .and_then(|(header, _)| strict_object(header))
        .is_some_and(|h| h.get("alg").and_then(Value::as_str) == Some("none"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn jwt(claims: Value) -> String {
        format!("{}.{}.{}", b64(br#"{"alg":"RS256","typ":"JWT"}"#), b64(claims.to_string().as_bytes()), b64(b"sig"))
    }

    #[test]
    fn jwt_expiry_reads_exp_seconds() {
        let exp = Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(expiry(&jwt(serde_json::json!({ "exp": exp.timestamp() }))), Some(exp));
        // Fractional exp is truncated to the second.
        let frac = jwt(serde_json::json!({ "exp": exp.timestamp() as f64 + 0.9 }));
        assert_eq!(expiry(&frac), Some(exp));
        // Padding is tolerated.
        let padded = format!(
            "{}.{}.sig",
            base64::engine::general_purpose::URL_SAFE.encode(b"{\"a\":1}"),
            base64::engine::general_purpose::URL_SAFE.encode(format!("{{\"exp\":{}}}", exp.timestamp()))
        );
        assert_eq!(expiry(&padded), Some(exp));
    }

    #[test]
    fn jwt_expiry_none_for_non_jwts() {
        assert_eq!(expiry(&jwt(serde_json::json!({ "sub": "x" }))), None);
        assert_eq!(expiry(&jwt(serde_json::json!({ "exp": "soon" }))), None);
        assert_eq!(expiry("sk-ant-oat01-abcdefghijklmnopqrstuvwxyz"), None);
        assert_eq!(expiry(""), None);
        assert_eq!(expiry("a.b"), None);
        assert_eq!(expiry("a.b.c.d"), None);
        assert_eq!(expiry(&format!("{}..sig", b64(b"{}"))), None);
        assert_eq!(expiry(&format!("{}.%%%.sig", b64(b"{}"))), None);
        assert_eq!(expiry(&format!("{}.{}.sig", b64(b"{}"), b64(b"not json"))), None);
        assert_eq!(expiry(&format!("{}.{}.sig", b64(b"{}"), b64(b"42"))), None);
        assert_eq!(expiry(&jwt(serde_json::json!({ "exp": i64::MAX }))), None);
    }

    #[test]
    fn unsigned_jwts_are_strict_and_recognised() {
        let mut claims = Map::new();
        claims.insert("a".into(), 1.into());
        let token = unsigned(claims.clone());
        assert!(is_strict_jwt(&token) && is_unsigned(&token));
        assert_eq!(strict_parts(&token).map(|(_, c)| c), Some(claims));
        assert!(!is_unsigned(&jwt(serde_json::json!({}))));
        // Padding is not the strict form.
        let padded = format!("{}.{}.sig", b64(b"{}"), base64::engine::general_purpose::URL_SAFE.encode(b"{\"a\":12}"));
        assert!(is_jwt(&padded) && !is_strict_jwt(&padded));
    }
}
