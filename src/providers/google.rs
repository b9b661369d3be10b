//! Google, for Gemini: AI Studio API keys only (Google offers no headless
//! sign-in the Gemini CLI can use).

use super::revoke::Revocation;
use super::{wrong_prefix, ProviderSpec, RefreshTokens};
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
    refresh: RefreshTokens::None,
    // No sign-in: only pasted API keys, revoked in AI Studio.
    revocation: Revocation {
        api_key_page: "https://aistudio.google.com/apikey",
        login_page: "https://aistudio.google.com/apikey",
        revoke: None,
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
