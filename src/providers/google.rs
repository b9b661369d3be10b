//! Google, for Gemini: AI Studio API keys only (Google offers no headless
//! sign-in the Gemini CLI can use).

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::check::{conclude, Outcome, Probe};
use super::revoke::Revocation;
use super::Egress;
use super::{http, wrong_prefix, ProviderSpec, ProvidersConfig, RefreshTokens};
use crate::credential_input::{is_token_byte, InputError, InputResult};
use crate::domain::Provider;

pub const API_KEY_PREFIX: &str = "AIza";
/// AI Studio keys are `AIza` + 35 characters of `[0-9A-Za-z_-]`.
pub const API_KEY_LEN: usize = 39;

pub static SPEC: ProviderSpec = ProviderSpec {
    provider: Provider::Google,
    name: "Google",
    api_key_env: "GEMINI_API_KEY",
    token_env: "GEMINI_API_KEY",
    check_api_key,
    kinds: &[("AIza", "a Google API key")],
    hint_prefixes: &["AIza"],
    subscription_plans: &[],
    refresh: RefreshTokens::None,
    sign_in: None,
    login_account: None,
    check_with_provider: check,
    // No sign-in: only pasted API keys, revoked in AI Studio.
    revocation: Revocation {
        api_key_page: "https://aistudio.google.com/apikey",
        login_page: "https://aistudio.google.com/apikey",
        revoke: None,
    },
    // Gemini with an API key calls the Generative Language API; with a
    // Google login, Code Assist and the user-info endpoint.
    egress: Egress {
        hosts: &["generativelanguage.googleapis.com", "cloudcode-pa.googleapis.com", "www.googleapis.com"],
        token_endpoints: &[("oauth2.googleapis.com", "/token")],
        placeholder_prefixes: &["AIza", "ya29."],
    },
};

fn check_api_key(key: &str) -> InputResult<()> {
    if !key.starts_with(API_KEY_PREFIX) {
        return Err(wrong_prefix("A Gemini API key", &[API_KEY_PREFIX], key));
    }
    let len = key.len();
    if len != API_KEY_LEN {
        // Saying "shorter"/"longer" helps spot a clipped copy without
        // revealing anything about the key itself.
        let which = if len < API_KEY_LEN { "shorter" } else { "longer" };
        return Err(InputError::new(format!(
            "A Gemini API key is {API_KEY_LEN} characters long (AIza followed by 35 \
             letters, digits, '-' or '_'); this one is {which}. Copy it again from Google AI \
             Studio."
        )));
    }
    if !key.bytes().all(is_token_byte) {
        return Err(InputError::new(
            "A Gemini API key contains only letters, digits, '-' and '_'; copy it again from \
             Google AI Studio.",
        ));
    }
    Ok(())
}

// --- Checking a key with Google ---------------------------------------------

/// Where the Gemini API is (`SESAME_PROVIDERS__GOOGLE__API_URL`).
pub const API_URL: &str = "https://generativelanguage.googleapis.com";

/// `[providers.google]`: where the Gemini API is.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    pub api_url: String,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings { api_url: API_URL.into() }
    }
}

const KEY_REFUSED: &str = "Google refused this Gemini API key (API_KEY_INVALID): check you copied the entire \
     key, or create a new key in the provider's console (Google AI Studio → Get API key) and save it again.";

const NO_ACCESS: &str = "Google accepted this key, but it may not use the Gemini API (PERMISSION_DENIED: the key \
     is restricted to other APIs, or the API is not enabled for its project): allow the Generative Language API \
     for this key in its console, or create a new key in Google AI Studio.";

fn check<'a>(http: &'a reqwest::Client, config: &'a ProvidersConfig, probe: Probe<'a>) -> BoxFuture<'a, Outcome> {
    Box::pin(check_key(http, &config.google.api_url, probe.credential()))
}

/// An API key: `GET /v1beta/models` with the key in `x-goog-api-key`
/// (never `?key=`: a query string lands in proxies' logs). A dead key is a
/// 400 with reason `API_KEY_INVALID`, not a 401.
pub async fn check_key(http: &reqwest::Client, base: &str, key: &str) -> Outcome {
    let url = format!("{}/v1beta/models", base.trim_end_matches('/'));
    let answer = http::send(http.get(url).header("x-goog-api-key", key)).await;
    let error = match &answer {
        Ok((_, body)) => &body["error"],
        Err(_) => &serde_json::Value::Null,
    };
    let reason = error["details"].as_array().and_then(|d| d.iter().find_map(|d| d["reason"].as_str()));
    match &answer {
        Ok((400, _)) if reason == Some("API_KEY_INVALID") => Outcome::invalid(KEY_REFUSED),
        Ok((403, _)) if error["status"].as_str() == Some("PERMISSION_DENIED") => Outcome::no_access(NO_ACCESS),
        _ => conclude(&answer, KEY_REFUSED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::samples::*;
    use crate::providers::ApiKey;

    #[test]
    fn google_api_key_rules() {
        let key = google_key();
        let clipped = &key[..38];
        let msg = refused(ApiKey::parse(Provider::Google, clipped), clipped);
        assert!(msg.contains("39 characters") && msg.contains("shorter"), "{msg}");

        let long = format!("{key}x");
        let msg = refused(ApiKey::parse(Provider::Google, &long), &long);
        assert!(msg.contains("longer"), "{msg}");

        let bad_chars = format!("AIza{MARK}abcdefghij-_0123456=");
        assert_eq!(bad_chars.len(), 39);
        let msg = refused(ApiKey::parse(Provider::Google, &bad_chars), &bad_chars);
        assert!(msg.contains("letters, digits"), "{msg}");

        let wrong = openai_key();
        let msg = refused(ApiKey::parse(Provider::Google, &wrong), &wrong);
        assert!(msg.contains("AIza"), "{msg}");
    }
}
