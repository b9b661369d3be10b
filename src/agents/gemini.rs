//! Gemini: a Google AI Studio API key only, handed over as
//! `GEMINI_API_KEY`. Subscriptions are refused with the reason.

use super::catalog::MethodInfo;
use super::handover::one_env_var;
use super::{AgentSpec, Handling, Issue, Materialized, Save, Saved};
use crate::credential_input::{InputError, InputResult};
use crate::domain::{Agent, AuthMethod, Provider};
use crate::providers::google;

const SUBSCRIPTION_REFUSAL: &str = "Gemini is API key only: Gemini CLI doesn't support \
     subscription-based authentication headlessly, and Google One AI Premium requires \
     browser-based authentication that can't be automated. Create or copy a Gemini API key in \
     Google AI Studio and add it in Settings → API Keys.";

/// Shown on its card.
const NOTE: &str = "API key only: Gemini CLI cannot use a Google One AI Premium subscription \
     headlessly (it needs a browser sign-in).";

pub static SPEC: AgentSpec = AgentSpec {
    agent: Agent::Gemini,
    name: "Gemini",
    providers: &[Provider::Google],
    methods: METHODS,
    note: Some(NOTE),
    handling: &Gemini,
};

pub struct Gemini;

impl Handling for Gemini {
    fn subscription_refusal(&self) -> Option<&'static str> {
        Some(SUBSCRIPTION_REFUSAL)
    }

    fn parse_subscription(&self, _save: &Save<'_>) -> InputResult<Saved> {
        Err(InputError::new(SUBSCRIPTION_REFUSAL))
    }

    fn materialize(&self, issue: Issue<'_>) -> Materialized {
        one_env_var(issue.provider, issue.secret)
    }

    #[cfg(test)]
    fn sample_subscription(&self, _provider: Provider) -> Option<super::samples::SubscriptionSample> {
        None
    }
}

const METHODS: &[MethodInfo] = &[MethodInfo {
    provider: Provider::Google,
    method: AuthMethod::ApiKey,
    label: "API key",
    paste: None,
    env_var: Some("GEMINI_API_KEY"),
    token_prefixes: &[google::API_KEY_PREFIX],
    instructions: concat!(
        "API key only - Gemini CLI doesn't support subscription-based authentication headlessly. ",
        "Google One AI Premium requires browser-based authentication that can't be automated. ",
        "Use an API key:\n",
        "1. Go to Google AI Studio.\n",
        "2. Create or copy your API key (starts with AIza).\n",
        "3. Enter it in Settings → API Keys (or the GEMINI_API_KEY env var).",
    ),
}];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::catalog::entry;
    use crate::agents::samples::*;
    use crate::agents::{parse_subscription, SubscriptionInput};
    use crate::providers::samples::*;

    #[test]
    fn gemini_is_api_key_only() {
        let e = entry(Agent::Gemini);
        assert_eq!(e.methods.len(), 1);
        let m = &e.methods[0];
        assert_eq!((m.provider, m.method), (Provider::Google, AuthMethod::ApiKey));
        assert_eq!(m.env_var, Some("GEMINI_API_KEY"));
        assert_eq!(m.token_prefixes, &["AIza"]);
        assert!(m.instructions.contains("Google AI Studio"));
        assert!(m.instructions.contains("headlessly"));
    }

    #[test]
    fn gemini_subscription_is_refused_with_explanation() {
        for provider in [None, Some(Provider::Google)] {
            let key = google_key();
            let msg = refused(
                parse_subscription(SubscriptionInput { provider, token: Some(&key), ..input(Agent::Gemini) }, now()),
                &key,
            );
            assert!(msg.contains("API key only"), "{msg}");
            assert!(msg.contains("headlessly"), "{msg}");
            assert!(msg.contains("Google One AI Premium"), "{msg}");
            assert!(msg.contains("Google AI Studio"), "{msg}");
            assert!(msg.contains("Settings → API Keys"), "{msg}");
        }
    }
}
