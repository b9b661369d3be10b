//! The providers' settings, which the service's configuration (`config.rs`)
//! composes: `[providers]` (where each provider's API is) and `[oauth]`
//! (each provider's sign-in, and what all sign-ins share). Each provider's own section is a struct in its file
//! (`<name>::ApiSettings`, `<name>::…Oauth`); this holds the aggregates,
//! one field per provider named after its `Provider` value in lower case, so
//! its environment variables are `SESAME_PROVIDERS__<PROVIDER>__…` and
//! `SESAME_OAUTH__<PROVIDER>__…`.

use serde::{Deserialize, Serialize};

use super::{anthropic, github, google, openai};
use crate::domain::Provider;

/// `[providers]`: where each provider's API is
/// (`SESAME_PROVIDERS__<PROVIDER>__API_URL`, …; the defaults are in each
/// provider's file); tests point them at a fake.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProvidersConfig {
    pub anthropic: anthropic::ApiSettings,
    pub openai: openai::ApiSettings,
    pub google: google::ApiSettings,
    pub github: github::ApiSettings,
}

/// `[oauth]`: sign-in with the providers. Defaults (in each provider's
/// file) are the real endpoints and the agent CLIs' public client ids;
/// tests point them at fake providers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OauthConfig {
    pub github: github::GithubOauth,
    pub openai: openai::OpenaiOauth,
    pub anthropic: anthropic::AnthropicOauth,
    /// Per-request timeout towards providers.
    #[serde(with = "humantime_serde")]
    pub http_timeout: std::time::Duration,
    /// Consecutive network/5xx failures before a flow is FAILED.
    pub max_poll_failures: u32,
    /// Sign-ins a person may have in progress at once.
    pub max_pending_per_user: u64,
    /// How long a person has to paste back an authorization code.
    #[serde(with = "humantime_serde")]
    pub authorization_timeout: std::time::Duration,
}

impl Default for OauthConfig {
    fn default() -> Self {
        OauthConfig {
            github: github::GithubOauth::default(),
            openai: openai::OpenaiOauth::default(),
            anthropic: anthropic::AnthropicOauth::default(),
            http_timeout: std::time::Duration::from_secs(15),
            max_poll_failures: 4,
            max_pending_per_user: 5,
            authorization_timeout: std::time::Duration::from_secs(600),
        }
    }
}

/// The environment variable that sets where `provider`'s API is, e.g.
/// `SESAME_PROVIDERS__ANTHROPIC__API_URL`.
pub fn api_url_env(provider: Provider) -> String {
    format!("SESAME_PROVIDERS__{}__API_URL", provider.as_str())
}

/// Every environment variable that sets an address of `provider`'s API
/// (`api_url`, and e.g. OpenAI's `chatgpt_url`): what a test points at a
/// fake, or at a closed port so nothing reaches the real provider.
pub fn url_envs(provider: Provider) -> Vec<String> {
    let defaults = serde_json::to_value(ProvidersConfig::default()).expect("settings serialise");
    let section = &defaults[provider.as_str().to_lowercase()];
    let mut names: Vec<String> = section
        .as_object()
        .map(|fields| {
            fields
                .keys()
                .filter(|k| k.ends_with("_url"))
                .map(|k| format!("SESAME_PROVIDERS__{}__{}", provider.as_str(), k.to_uppercase()))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each provider's section is named after it, so the variables above
    /// are the ones figment reads.
    #[test]
    fn every_provider_has_its_section() {
        let defaults = serde_json::to_value(ProvidersConfig::default()).unwrap();
        let sections: Vec<&String> = defaults.as_object().unwrap().keys().collect();
        assert_eq!(sections.len(), Provider::ALL.len());
        for &provider in Provider::ALL {
            assert!(url_envs(provider).contains(&api_url_env(provider)), "{provider}");
        }
        assert_eq!(
            url_envs(Provider::Openai),
            ["SESAME_PROVIDERS__OPENAI__API_URL", "SESAME_PROVIDERS__OPENAI__CHATGPT_URL"]
        );
        assert_eq!(api_url_env(Provider::Google), "SESAME_PROVIDERS__GOOGLE__API_URL");
    }
}
