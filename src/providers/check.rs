//! What a provider's check is given and what it concludes (the engine that
//! runs checks and records them is `crate::checks`): shared by the
//! providers' own checks, each in its provider's file.

use serde_json::Value;

use crate::domain::CheckResult;

/// A check's result and, unless VALID, what to do, in the words of the
/// product page's troubleshooting. Never holds the credential or the
/// provider's body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub result: CheckResult,
    pub message: Option<String>,
}

impl Outcome {
    /// Whether a save with this outcome is refused: the credential would not work.
    pub fn refuses_save(&self) -> bool {
        matches!(self.result, CheckResult::Invalid | CheckResult::NoAccess)
    }

    pub fn valid() -> Outcome {
        Outcome { result: CheckResult::Valid, message: None }
    }

    pub fn invalid(message: impl Into<String>) -> Outcome {
        Outcome { result: CheckResult::Invalid, message: Some(message.into()) }
    }

    pub fn no_access(message: impl Into<String>) -> Outcome {
        Outcome { result: CheckResult::NoAccess, message: Some(message.into()) }
    }

    pub fn unreachable(message: impl Into<String>) -> Outcome {
        Outcome { result: CheckResult::Unreachable, message: Some(message.into()) }
    }
}

/// What a probe is given: an API key, or a subscription's access token
/// (with ChatGPT's account id). Never a refresh token.
#[derive(Clone, Copy)]
pub enum Probe<'a> {
    ApiKey(&'a str),
    Subscription { access_token: &'a str, account_id: Option<&'a str> },
}

impl<'a> Probe<'a> {
    /// The key, or the access token: for providers that check both alike.
    pub fn credential(self) -> &'a str {
        match self {
            Probe::ApiKey(key) | Probe::Subscription { access_token: key, .. } => key,
        }
    }
}

impl std::fmt::Debug for Probe<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Probe::ApiKey(_) => f.write_str("ApiKey(***)"),
            Probe::Subscription { .. } => f.write_str("Subscription(***)"),
        }
    }
}

/// What every probe concludes from a provider's answer it has no special
/// rule for: 2xx works, 401 is refused (with `refused`, what to do), and
/// anything else (no answer, 429, 5xx, an unknown status) concludes nothing.
pub fn conclude(answer: &Result<(u16, Value), String>, refused: &str) -> Outcome {
    match answer {
        Err(why) => Outcome::unreachable(format!("{why}; nothing about the credential was concluded")),
        Ok((200..=299, _)) => Outcome::valid(),
        Ok((401, _)) => Outcome::invalid(refused),
        Ok((status @ (429 | 500..=599), _)) => Outcome::unreachable(format!(
            "the provider is busy or unavailable (HTTP {status}); nothing about the credential was concluded — \
             it is checked again later"
        )),
        Ok((status, _)) => Outcome::unreachable(format!(
            "the provider gave an answer the vault does not know (HTTP {status}); nothing about the credential \
             was concluded"
        )),
    }
}
