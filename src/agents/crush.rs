//! Crush (npm `@charmland/crush`, Charm): API keys only, from Anthropic,
//! OpenAI and Google, each handed over as the variable Crush reads.
//!
//! How Crush reads credentials headlessly (`crush run "…"`; README "API
//! Keys", docs/config, the Catwalk provider list it embeds,
//! `internal/providers/configs/*.json`): each built-in provider's key is an
//! environment reference, `"api_key": "$ANTHROPIC_API_KEY"`,
//! `"$OPENAI_API_KEY"`, `"$GEMINI_API_KEY"`, and a provider whose variable
//! is set is configured with nothing else. Its base URL is
//! `"api_endpoint": "$ANTHROPIC_API_ENDPOINT"` (`$OPENAI_API_ENDPOINT`,
//! `$GEMINI_API_ENDPOINT`), or `providers.<id>.base_url` in `crush.json`
//! (`$XDG_CONFIG_HOME/crush/crush.json`; `crushrc` in newer releases,
//! `provider add … --base-url`). A key pasted into its model picker is kept
//! in its data directory (`~/.local/share/crush/crush.json`), which the
//! vault neither writes nor takes back. It has no sign-in with a Claude or
//! ChatGPT subscription, so subscriptions are refused with the reason, and
//! nothing comes back after a run. `CRUSH_DISABLE_PROVIDER_AUTO_UPDATE=1`
//! keeps it from fetching the provider list at start-up.

use super::catalog::MethodInfo;
use super::handover::one_env_var;
use super::{AgentSpec, Handling, Issue, Materialized, ProxyFacts, Save, Saved};
use crate::credential_input::{InputError, InputResult};
use crate::domain::{Agent, AuthMethod, Provider};
use crate::providers::{anthropic, google, openai};

const SUBSCRIPTION_REFUSAL: &str = "Crush is API key only: it reads ANTHROPIC_API_KEY, OPENAI_API_KEY \
     and GEMINI_API_KEY and cannot use a Claude or ChatGPT subscription. Add an Anthropic, OpenAI \
     or Google API key in Settings → API Keys.";

/// Shown on its card.
const NOTE: &str = "API keys only: Crush reads Anthropic, OpenAI and Gemini API keys from the \
     environment; it cannot use a Claude or ChatGPT subscription.";

pub static SPEC: AgentSpec = AgentSpec {
    agent: Agent::Crush,
    name: "Crush",
    providers: &[Provider::Anthropic, Provider::Openai, Provider::Google],
    methods: METHODS,
    note: Some(NOTE),
    handling: &Crush,
};

pub struct Crush;

impl Handling for Crush {
    /// Go: `SSL_CERT_FILE` replaces its roots.
    fn proxy(&self) -> ProxyFacts {
        ProxyFacts { ca_vars: &["SSL_CERT_FILE"], quiet: &[("CRUSH_DISABLE_METRICS", "1")] }
    }

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

const METHODS: &[MethodInfo] = &[
    MethodInfo {
        provider: Provider::Anthropic,
        method: AuthMethod::ApiKey,
        label: "API key",
        paste: None,
        env_var: Some("ANTHROPIC_API_KEY"),
        token_prefixes: &[anthropic::API_KEY_PREFIX],
        instructions: concat!(
            "Crush runs Claude models with an Anthropic API key (starts with sk-ant-api03-).\n",
            "1. Click your avatar → Settings.\n",
            "2. Go to the API Keys tab.\n",
            "3. Enter your Anthropic API key.\n",
            "4. Click Save.\n",
            "Start tasks with provider Anthropic; the key serves Claude Code, OpenCode and Aider too.",
        ),
    },
    MethodInfo {
        provider: Provider::Openai,
        method: AuthMethod::ApiKey,
        label: "API key",
        paste: None,
        env_var: Some("OPENAI_API_KEY"),
        token_prefixes: &[openai::API_KEY_PREFIX],
        instructions: concat!(
            "Crush runs OpenAI models with an OpenAI API key (starts with sk-).\n",
            "1. Click your avatar → Settings.\n",
            "2. Go to the API Keys tab.\n",
            "3. Enter your OpenAI API key.\n",
            "4. Click Save.\n",
            "Start tasks with provider OpenAI; the key serves Codex, OpenCode and Aider too.",
        ),
    },
    MethodInfo {
        provider: Provider::Google,
        method: AuthMethod::ApiKey,
        label: "API key",
        paste: None,
        env_var: Some("GEMINI_API_KEY"),
        token_prefixes: &[google::API_KEY_PREFIX],
        instructions: concat!(
            "Crush runs Gemini models with a Google AI Studio API key (starts with AIza).\n",
            "1. Go to Google AI Studio and create or copy your API key.\n",
            "2. Click your avatar → Settings and go to the API Keys tab.\n",
            "3. Enter the key for Google.\n",
            "4. Click Save.\n",
            "Start tasks with provider Google; the key serves Gemini and Aider too.",
        ),
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::catalog::entry;
    use crate::agents::samples::*;
    use crate::agents::{materialize, parse_subscription, IssuedSecret, SubscriptionInput};
    use crate::providers::samples::*;

    #[test]
    fn crush_takes_three_api_keys_and_no_subscription() {
        let e = entry(Agent::Crush);
        let methods: Vec<(Provider, AuthMethod, Option<&str>)> =
            e.methods.iter().map(|m| (m.provider, m.method, m.env_var)).collect();
        assert_eq!(
            methods,
            [
                (Provider::Anthropic, AuthMethod::ApiKey, Some("ANTHROPIC_API_KEY")),
                (Provider::Openai, AuthMethod::ApiKey, Some("OPENAI_API_KEY")),
                (Provider::Google, AuthMethod::ApiKey, Some("GEMINI_API_KEY")),
            ]
        );
        assert!(e.subscription_plans().is_empty());
        assert!(e.note.unwrap().starts_with("API keys only"));
    }

    #[test]
    fn crush_subscription_is_refused_with_explanation() {
        let t = claude_token();
        for provider in [None, Some(Provider::Anthropic), Some(Provider::Openai)] {
            let msg = refused(
                parse_subscription(SubscriptionInput { provider, token: Some(&t), ..input(Agent::Crush) }, now()),
                &t,
            );
            assert!(msg.starts_with("Crush is API key only"), "{msg}");
            assert!(msg.contains("Settings → API Keys"), "{msg}");
        }
    }

    #[test]
    fn crush_is_handed_the_providers_key_variable() {
        for (provider, key, var) in [
            (Provider::Anthropic, anthropic_key(), "ANTHROPIC_API_KEY"),
            (Provider::Openai, openai_key(), "OPENAI_API_KEY"),
            (Provider::Google, google_key(), "GEMINI_API_KEY"),
        ] {
            let m = materialize(Agent::Crush, provider, IssuedSecret::ApiKey(&key), None, now());
            assert_eq!(env_names(&m), [var]);
            assert_eq!(m.env[0].value.expose(), key);
            assert!(m.files.is_empty());
            assert_redacted(&m);
        }
    }
}
