//! Sample keys and tokens of every provider, for unit tests. Each carries
//! [`MARK`], so a test can prove it never reaches a message or `Debug` output.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

use crate::credential_input::InputError;

/// A distinctive run of characters placed in every secret below.
pub const MARK: &str = "Zq7XsEcReTmArK9";

pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap()
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A signed-looking JWT with these claims.
pub fn jwt(claims: Value) -> String {
    format!(
        "{}.{}.{}",
        b64(br#"{"alg":"RS256","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes()),
        b64(format!("signature-{MARK}").as_bytes())
    )
}

pub fn anthropic_key() -> String {
    format!("sk-ant-api03-{MARK}abcdefghij-_XYZ0123456789AA")
}
pub fn claude_token() -> String {
    format!("sk-ant-oat01-{MARK}abcdefghij-_XYZ0123456789AA")
}
pub fn claude_refresh() -> String {
    format!("sk-ant-ort01-{MARK}abcdefghij-_XYZ0123456789AA")
}
pub fn openai_key() -> String {
    format!("sk-proj-{MARK}abcdefghij_XYZ0123456789")
}
pub fn google_key() -> String {
    // AIza + 35 characters of [0-9A-Za-z_-].
    let key = format!("AIza{MARK}abcdefghij-_01234567");
    assert_eq!(key.len(), 39);
    key
}
pub fn github_pat() -> String {
    format!("github_pat_11ABCDEFG0{MARK}abcdefghijklmnopqrstuvwxyz0123456789")
}

/// The ChatGPT account id in the sample OpenAI tokens.
pub const ACCOUNT: &str = "7f1c2d3e-0000-4000-8000-123456789abc";
/// Where ChatGPT tokens keep their claims.
pub const OPENAI_AUTH_CLAIM: &str = "https://api.openai.com/auth";

/// A ChatGPT access token (a JWT) expiring at `exp`.
pub fn codex_access(exp: DateTime<Utc>) -> String {
    jwt(serde_json::json!({
        "aud": ["https://api.openai.com/v1"],
        "exp": exp.timestamp(),
        "iat": (exp - chrono::Duration::days(10)).timestamp(),
        "iss": "https://auth.openai.com",
        "scp": ["openid", "profile", "email", "offline_access"],
        OPENAI_AUTH_CLAIM: { "chatgpt_account_id": ACCOUNT, "chatgpt_plan_type": "pro" },
        "sub": "auth0|abc",
    }))
}

/// A ChatGPT id token.
pub fn codex_id_token() -> String {
    jwt(serde_json::json!({
        "email": "person@example.com",
        "exp": now().timestamp() + 3600,
        OPENAI_AUTH_CLAIM: { "chatgpt_account_id": ACCOUNT, "chatgpt_plan_type": "pro" },
    }))
}

/// A ChatGPT refresh token.
pub fn refresh_rt() -> String {
    format!("rt_{MARK}.abcdefghijklmnop0123456789")
}

/// `~/.codex/auth.json` holding these tokens.
pub fn auth_json(access: &str, id: &str, refresh: &str) -> String {
    serde_json::to_string_pretty(&serde_json::json!({
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": null,
        "tokens": {
            "id_token": id,
            "access_token": access,
            "refresh_token": refresh,
            "account_id": ACCOUNT,
        },
        "last_refresh": "2025-05-30T08:15:42.123456Z",
    }))
    .unwrap()
}

/// Asserts refusal and that the message leaks nothing of the secret.
pub fn refused<T: fmt::Debug>(result: Result<T, InputError>, secret: &str) -> String {
    let err = result.expect_err("expected a refusal");
    let msg = err.to_string();
    assert!(!msg.contains(MARK), "message leaks the secret: {msg}");
    let secret = secret.trim();
    let chars = secret.chars().count();
    if chars >= 12 {
        assert!(!msg.contains(secret), "message leaks the secret: {msg}");
        // Not even the tail a hint would show.
        let tail: String = secret.chars().skip(chars - 6).collect();
        assert!(!msg.contains(&tail), "message leaks the tail: {msg}");
    }
    assert!(!format!("{err:?}").contains(MARK));
    msg
}
