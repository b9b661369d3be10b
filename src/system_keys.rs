//! The system-wide agent keys (`ANTHROPIC_API_KEY`, …): read by the
//! settings (`crate::config`), checked at start-up, used by issuance when a
//! person has no key of their own.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::domain::Provider;
use crate::providers;
use crate::secret::SecretValue;

/// The administrator's default keys, from the environment variables the
/// agents themselves read (each provider's `api_key_env`), keyed by
/// provider. As settings they are named after the variable in lower case
/// (`system_keys.anthropic_api_key`).
#[derive(Debug, Clone, Default)]
pub struct SystemKeys(BTreeMap<Provider, SecretValue>);

impl SystemKeys {
    pub fn get(&self, provider: Provider) -> Option<&SecretValue> {
        self.0.get(&provider).filter(|v| !v.expose().trim().is_empty())
    }

    /// Start-up (`serve`, before it binds): each key set must pass the
    /// checks a person's key passes in `setApiKey` (a classic `ghp_` token
    /// for Copilot, an Anthropic key without `sk-ant-api03-`, spaces inside,
    /// too short, …); it is kept as that parse cleaned it (trimmed). The
    /// error names the variable and the rule, never the value. An empty
    /// variable counts as unset.
    pub fn check(&mut self) -> Result<(), InvalidSystemKey> {
        for (&provider, value) in self.0.iter_mut() {
            if value.expose().trim().is_empty() {
                continue;
            }
            let var = providers::spec(provider).api_key_env;
            match providers::ApiKey::parse(provider, value.expose()) {
                Ok(key) => *value = SecretValue::new(key.secret().expose()),
                Err(refused) => {
                    return Err(InvalidSystemKey(format!(
                        "{var} (the system-wide {} key) is not a valid key, so the server did not start: {} \
                         Fix or unset {var} and start again.",
                        providers::spec(provider).name,
                        refused.0
                    )))
                }
            }
        }
        Ok(())
    }

    /// The setting a provider's key is read from.
    fn setting(provider: Provider) -> String {
        providers::spec(provider).api_key_env.to_lowercase()
    }
}

/// A system-wide key failed the checks (reported as a configuration error).
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct InvalidSystemKey(String);

impl<'de> Deserialize<'de> for SystemKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let named = BTreeMap::<String, SecretValue>::deserialize(deserializer)?;
        let mut keys = BTreeMap::new();
        for (name, value) in named {
            let Some(&provider) = Provider::ALL.iter().find(|&&p| SystemKeys::setting(p) == name) else {
                let accepted: Vec<String> = Provider::ALL.iter().map(|&p| SystemKeys::setting(p)).collect();
                return Err(serde::de::Error::custom(format!(
                    "unknown field `{name}`, expected one of {}",
                    accepted.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ")
                )));
            };
            keys.insert(provider, value);
        }
        Ok(SystemKeys(keys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(pairs: &[(Provider, &str)]) -> SystemKeys {
        SystemKeys(pairs.iter().map(|(p, v)| (*p, SecretValue::new(*v))).collect())
    }

    #[test]
    fn system_keys_pass_the_checks_a_persons_key_passes() {
        let secret = "MARKmarkMARKmarkMARKmark";
        let refused = [
            (Provider::Github, format!("ghp_{secret}")),
            (Provider::Anthropic, format!("sk-wrong-{secret}")),
            (Provider::Openai, format!("sk-{secret} {secret}")),
            (Provider::Google, format!("AIza{secret}")),
        ];
        for (provider, value) in refused {
            let err = keys(&[(provider, &value)]).check().unwrap_err().to_string();
            assert!(err.contains(providers::spec(provider).api_key_env), "{err}");
            assert!(!err.contains(secret), "{err}");
        }
        let err = keys(&[(Provider::Github, &format!("ghp_{secret}"))]).check().unwrap_err().to_string();
        assert!(err.contains("Classic GitHub tokens"), "{err}");

        let mut fine = keys(&[(Provider::Anthropic, &format!(" sk-ant-api03-{secret}\n")), (Provider::Google, "  ")]);
        fine.check().unwrap();
        assert_eq!(fine.get(Provider::Anthropic).unwrap().expose(), format!("sk-ant-api03-{secret}"));
        assert!(fine.get(Provider::Google).is_none());
    }

    #[test]
    fn an_unknown_system_key_setting_names_the_accepted_ones() {
        let err = serde_json::from_value::<SystemKeys>(serde_json::json!({ "antropic_api_key": "x" }))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`antropic_api_key`") && err.contains("`anthropic_api_key`"), "{err}");
        assert!(err.contains("`copilot_github_token`"), "{err}");
    }
}
