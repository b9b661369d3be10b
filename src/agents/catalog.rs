//! What the `agents` query answers: for every agent, the ways a person can
//! give it credentials, the environment variable the agent reads, the token
//! prefixes we accept and the setup steps from the product's Credentials page.
//!
//! Each agent's methods are static data in its own file, so that the API,
//! error messages and validation all read the same table; the token
//! prefixes come from the provider files, where they are enforced.

use std::sync::LazyLock;

use crate::domain::{Agent, AuthMethod, Provider};

/// One way of authenticating one agent against one provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodInfo {
    pub provider: Provider,
    pub method: AuthMethod,
    /// Environment variable the agent reads the credential from, if any
    /// (Codex reads a file, `~/.codex/auth.json`, so it has none).
    pub env_var: Option<&'static str>,
    /// Prefixes a pasted value must start with; empty where nothing is pasted
    /// (browser flows) or the token has no fixed prefix.
    pub token_prefixes: &'static [&'static str],
    /// Setup steps a person follows, in plain text.
    pub instructions: &'static str,
    /// The method's button or tab label, e.g. "Sign in with Claude".
    pub label: &'static str,
    /// What is pasted, for a method that takes a pasted login; `None` for
    /// API keys (Settings → API Keys) and sign-ins.
    pub paste: Option<Paste>,
}

/// The form of a method that takes a pasted login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paste {
    /// The token field's label, e.g. "Setup token".
    pub token_label: &'static str,
    /// A file the person may paste whole instead, e.g. "~/.codex/auth.json".
    pub auth_file: Option<&'static str>,
    /// Whether a refresh token may be pasted beside the token (a ChatGPT
    /// login has one; a setup-token or GitHub token has none).
    pub accepts_refresh_token: bool,
}

/// A subscription plan an agent can run on, e.g. Anthropic's "Claude Pro ($20/mo)".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionPlan {
    pub provider: Provider,
    pub name: &'static str,
}

/// Everything the `agents` query says about one agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentEntry {
    pub agent: Agent,
    pub methods: &'static [MethodInfo],
    /// Shown on the agent's card when there is something to say.
    pub note: Option<&'static str>,
}

impl AgentEntry {
    /// The agent's name as people see it, e.g. "Claude Code".
    pub fn name(&self) -> &'static str {
        crate::agents::spec(self.agent).name
    }

    /// Whether any method is a subscription (anything but an API key).
    pub fn takes_subscriptions(&self) -> bool {
        self.methods.iter().any(|m| m.method != AuthMethod::ApiKey)
    }

    /// The plans of every provider it takes a subscription from, in its
    /// providers' order; empty for an agent that takes API keys only.
    pub fn subscription_plans(&self) -> Vec<SubscriptionPlan> {
        let mut providers: Vec<Provider> = Vec::new();
        for m in self.methods.iter().filter(|m| m.method != AuthMethod::ApiKey) {
            if !providers.contains(&m.provider) {
                providers.push(m.provider);
            }
        }
        providers.sort_by_key(|p| super::spec(self.agent).providers.iter().position(|q| q == p));
        providers
            .into_iter()
            .flat_map(|provider| {
                crate::providers::spec(provider)
                    .subscription_plans
                    .iter()
                    .map(move |&name| SubscriptionPlan { provider, name })
            })
            .collect()
    }
}

static CATALOG: LazyLock<Vec<AgentEntry>> = LazyLock::new(|| {
    super::registered().map(|a| AgentEntry { agent: a.agent, methods: a.methods, note: a.note }).collect()
});

/// Every agent, in registry order.
pub fn catalog() -> &'static [AgentEntry] {
    &CATALOG
}

/// The catalog entry of one agent.
pub fn entry(agent: Agent) -> &'static AgentEntry {
    CATALOG.iter().find(|e| e.agent == agent).expect("every agent is registered")
}

/// The method entry for `agent` + `provider` + `method`, or `None` when the
/// agent does not support that combination (used to refuse e.g. a device
/// flow for Gemini before contacting anyone).
pub fn find_method(agent: Agent, provider: Provider, method: AuthMethod) -> Option<&'static MethodInfo> {
    entry(agent).methods.iter().find(|m| m.provider == provider && m.method == method)
}

/// The sign-in an agent/provider pair uses, if any: a device code or an
/// authorization code (pasted back).
pub fn sign_in_method(agent: Agent, provider: Provider) -> Option<AuthMethod> {
    [AuthMethod::DeviceCode, AuthMethod::AuthorizationCode]
        .into_iter()
        .find(|&method| find_method(agent, provider, method).is_some())
}

/// A sentence for error messages listing what an agent supports, e.g.
/// "Gemini supports: API key for Google (GEMINI_API_KEY)."
pub fn supported_methods(agent: Agent) -> String {
    let methods: Vec<String> = entry(agent)
        .methods
        .iter()
        .map(|m| {
            let base = format!("{} for {}", method_label(m.method), crate::providers::spec(m.provider).name);
            match m.env_var {
                Some(var) => format!("{base} ({var})"),
                None => base,
            }
        })
        .collect();
    format!("{} supports: {}.", crate::agents::spec(agent).name, methods.join(", "))
}

/// How a method is named in prose.
fn method_label(method: AuthMethod) -> &'static str {
    match method {
        AuthMethod::ApiKey => "API key",
        AuthMethod::PasteToken => "pasted token",
        AuthMethod::DeviceCode => "device code login",
        AuthMethod::AuthorizationCode => "authorization code login",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_per_agent_in_agent_order() {
        let agents: Vec<Agent> = catalog().iter().map(|e| e.agent).collect();
        assert_eq!(agents, Agent::ALL.to_vec());
        for &agent in Agent::ALL {
            assert_eq!(entry(agent).agent, agent);
            assert_eq!(entry(agent).name(), crate::agents::spec(agent).name);
        }
    }

    #[test]
    fn every_agent_has_methods_for_its_own_providers_only() {
        for e in catalog() {
            assert!(!e.methods.is_empty(), "{:?} has no methods", e.agent);
            for m in e.methods {
                assert!(
                    crate::agents::spec(e.agent).providers.contains(&m.provider),
                    "{:?} lists foreign provider {:?}",
                    e.agent,
                    m.provider
                );
                assert!(!m.instructions.trim().is_empty());
            }
        }
    }

    #[test]
    fn no_duplicate_methods() {
        for e in catalog() {
            for (i, a) in e.methods.iter().enumerate() {
                for b in &e.methods[i + 1..] {
                    assert!(
                        !(a.provider == b.provider && a.method == b.method),
                        "{:?} lists {:?}/{:?} twice",
                        e.agent,
                        a.provider,
                        a.method
                    );
                }
            }
        }
    }

    #[test]
    fn api_key_methods_use_the_providers_system_env_var() {
        for e in catalog() {
            for m in e.methods.iter().filter(|m| m.method == AuthMethod::ApiKey) {
                assert_eq!(m.env_var, Some(crate::providers::spec(m.provider).api_key_env));
            }
        }
    }

    #[test]
    fn labels_and_paste_forms() {
        for e in catalog() {
            for m in e.methods {
                assert!(!m.label.trim().is_empty(), "{:?} {:?} has no label", e.agent, m.method);
                assert_eq!(m.paste.is_some(), m.method == AuthMethod::PasteToken, "{:?} {:?}", e.agent, m.method);
            }
        }
    }

    #[test]
    fn plans_come_from_the_providers_an_agent_takes_subscriptions_from() {
        for e in catalog() {
            assert_eq!(e.subscription_plans().is_empty(), !e.takes_subscriptions(), "{:?}", e.agent);
        }
        assert!(entry(Agent::Gemini).subscription_plans().is_empty());
        let providers: Vec<Provider> = entry(Agent::Opencode).subscription_plans().iter().map(|p| p.provider).collect();
        assert_eq!(providers, [Provider::Anthropic, Provider::Anthropic, Provider::Openai, Provider::Openai]);
    }

    #[test]
    fn supported_methods_sentence() {
        assert_eq!(supported_methods(Agent::Gemini), "Gemini supports: API key for Google (GEMINI_API_KEY).");
        let codex = supported_methods(Agent::Codex);
        assert_eq!(
            codex,
            "Codex supports: API key for OpenAI (OPENAI_API_KEY), pasted token for OpenAI, \
             device code login for OpenAI."
        );
        let opencode = supported_methods(Agent::Opencode);
        assert!(opencode.starts_with("OpenCode supports: API key for Anthropic (ANTHROPIC_API_KEY)"));
        assert!(opencode.ends_with('.'));
    }
}
