//! What the `agents` query answers: for every agent, the ways a person can
//! give it credentials, the environment variable the agent reads, the token
//! prefixes we accept and the setup steps from the product's Credentials page.
//!
//! The data is static so that the API, error messages and validation all read
//! the same table; the token prefixes come from `credential_input`, which is
//! where they are enforced.

use crate::credential_input::{
    ANTHROPIC_API_KEY_PREFIX, CLAUDE_SETUP_TOKEN_PREFIX, GITHUB_ACCEPTED_PREFIXES, GOOGLE_API_KEY_PREFIX,
    OPENAI_API_KEY_PREFIX,
};
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
}

/// Everything the `agents` query says about one agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentEntry {
    pub agent: Agent,
    pub methods: &'static [MethodInfo],
}

impl AgentEntry {
    /// The agent's name as people see it, e.g. "Claude Code".
    pub fn name(&self) -> &'static str {
        self.agent.display_name()
    }
}

/// Every agent, in `Agent::ALL` order.
pub fn catalog() -> &'static [AgentEntry] {
    &CATALOG
}

/// The catalog entry of one agent.
pub fn entry(agent: Agent) -> &'static AgentEntry {
    // A match rather than a search: the compiler checks every agent has an
    // entry, and there is nothing to unwrap.
    match agent {
        Agent::ClaudeCode => &CATALOG[0],
        Agent::Codex => &CATALOG[1],
        Agent::Copilot => &CATALOG[2],
        Agent::Gemini => &CATALOG[3],
        Agent::Opencode => &CATALOG[4],
    }
}

/// The method entry for `agent` + `provider` + `method`, or `None` when the
/// agent does not support that combination (used to refuse e.g. a device
/// flow for Gemini before contacting anyone).
pub fn find_method(agent: Agent, provider: Provider, method: AuthMethod) -> Option<&'static MethodInfo> {
    entry(agent).methods.iter().find(|m| m.provider == provider && m.method == method)
}

/// A sentence for error messages listing what an agent supports, e.g.
/// "Gemini supports: API key for Google (GEMINI_API_KEY)."
pub fn supported_methods(agent: Agent) -> String {
    let methods: Vec<String> = entry(agent)
        .methods
        .iter()
        .map(|m| {
            let base = format!("{} for {}", method_label(m.method), m.provider.display_name());
            match m.env_var {
                Some(var) => format!("{base} ({var})"),
                None => base,
            }
        })
        .collect();
    format!("{} supports: {}.", agent.display_name(), methods.join(", "))
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

const OPENCODE_AUTH_ENV: &str = "OPENCODE_AUTH_CONTENT";

static CATALOG: [AgentEntry; 5] = [
    AgentEntry { agent: Agent::ClaudeCode, methods: CLAUDE_CODE_METHODS },
    AgentEntry { agent: Agent::Codex, methods: CODEX_METHODS },
    AgentEntry { agent: Agent::Copilot, methods: COPILOT_METHODS },
    AgentEntry { agent: Agent::Gemini, methods: GEMINI_METHODS },
    AgentEntry { agent: Agent::Opencode, methods: OPENCODE_METHODS },
];

const CLAUDE_CODE_METHODS: &[MethodInfo] = &[
    MethodInfo {
        provider: Provider::Anthropic,
        method: AuthMethod::ApiKey,
        env_var: Some("ANTHROPIC_API_KEY"),
        token_prefixes: &[ANTHROPIC_API_KEY_PREFIX],
        instructions: concat!(
            "Pay-per-token billing with an Anthropic API key (starts with sk-ant-api03-).\n",
            "1. Click your avatar → Settings.\n",
            "2. Go to the API Keys tab.\n",
            "3. Enter your Anthropic API key.\n",
            "4. Click Save.\n",
            "Keys are encrypted at rest and only used for your tasks. ",
            "Admins can set a system-wide key in the ANTHROPIC_API_KEY environment variable; ",
            "it is used when you have no key of your own.",
        ),
    },
    MethodInfo {
        provider: Provider::Anthropic,
        method: AuthMethod::PasteToken,
        env_var: Some("CLAUDE_CODE_OAUTH_TOKEN"),
        token_prefixes: &[CLAUDE_SETUP_TOKEN_PREFIX],
        instructions: concat!(
            "Supported subscriptions: Claude Max ($200/mo), Claude Pro ($20/mo).\n",
            "1. Open a terminal and run: claude setup-token\n",
            "2. Complete the browser authentication flow.\n",
            "3. Copy the generated token (starts with sk-ant-oat01-).\n",
            "4. Click your avatar in the top-right corner → Agent Credentials, ",
            "expand Claude Code and paste the token.\n",
            "5. Click Save Credentials.\n",
            "How it works: Sesame creates a credentials file that Claude Code reads on startup. ",
            "The token lasts one year; when it expires, run claude setup-token again ",
            "and update the credentials.",
        ),
    },
    MethodInfo {
        provider: Provider::Anthropic,
        method: AuthMethod::AuthorizationCode,
        env_var: Some("CLAUDE_CODE_OAUTH_TOKEN"),
        token_prefixes: &[],
        instructions: concat!(
            "Supported subscriptions: Claude Max ($200/mo), Claude Pro ($20/mo).\n",
            "1. Click your avatar → Agent Credentials, expand Claude Code and start the sign-in.\n",
            "2. Visit the URL shown and sign in with your Claude account.\n",
            "3. Copy the code the page shows.\n",
            "4. Paste the code back in Sesame; it saves the credentials for you.",
        ),
    },
];

const CODEX_METHODS: &[MethodInfo] = &[
    MethodInfo {
        provider: Provider::Openai,
        method: AuthMethod::ApiKey,
        env_var: Some("OPENAI_API_KEY"),
        token_prefixes: &[OPENAI_API_KEY_PREFIX],
        instructions: concat!(
            "Pay-per-token billing with an OpenAI API key (starts with sk-).\n",
            "1. Click your avatar → Settings.\n",
            "2. Go to the API Keys tab.\n",
            "3. Enter your OpenAI API key.\n",
            "4. Click Save.\n",
            "Keys are encrypted at rest and only used for your tasks. ",
            "Admins can set a system-wide key in the OPENAI_API_KEY environment variable; ",
            "it is used when you have no key of your own.",
        ),
    },
    MethodInfo {
        provider: Provider::Openai,
        method: AuthMethod::PasteToken,
        env_var: None,
        token_prefixes: &[],
        instructions: concat!(
            "Supported subscriptions: ChatGPT Plus ($20/mo), ChatGPT Pro ($200/mo).\n",
            "1. Enable device code auth in ChatGPT security settings.\n",
            "2. Run in a terminal: codex login --device-auth\n",
            "3. Complete the authentication flow.\n",
            "4. Copy the contents of ~/.codex/auth.json.\n",
            "5. In Agent Credentials → Codex, paste the whole auth.json, ",
            "or enter the access token (and optionally the refresh token) from it.\n",
            "6. Click Save Credentials.\n",
            "If authentication fails later, verify device auth is enabled in ChatGPT settings ",
            "and run codex login --device-auth again.",
        ),
    },
    MethodInfo {
        provider: Provider::Openai,
        method: AuthMethod::DeviceCode,
        env_var: None,
        token_prefixes: &[],
        instructions: concat!(
            "Supported subscriptions: ChatGPT Plus ($20/mo), ChatGPT Pro ($200/mo).\n",
            "1. Enable device code auth in ChatGPT security settings.\n",
            "2. Click your avatar → Agent Credentials, expand Codex and start the sign-in.\n",
            "3. Visit the URL shown and enter the device code.\n",
            "4. Wait: Sesame completes the sign-in automatically and saves the credentials.",
        ),
    },
];

const COPILOT_METHODS: &[MethodInfo] = &[
    MethodInfo {
        provider: Provider::Github,
        method: AuthMethod::PasteToken,
        env_var: Some("COPILOT_GITHUB_TOKEN"),
        token_prefixes: GITHUB_ACCEPTED_PREFIXES,
        instructions: concat!(
            "Supported subscriptions: Copilot Individual ($10/mo), Business ($19/mo), Enterprise.\n",
            "1. Go to GitHub Personal Access Tokens.\n",
            "2. Create a fine-grained token with the Copilot permission.\n",
            "3. Paste the token in Sesame's Agent Credentials dialog (expand Copilot).\n",
            "4. Click Save Credentials.\n",
            "This is separate from the GitHub PAT used for repository access: the Copilot token ",
            "specifically needs the \"Copilot\" permission. Classic tokens (ghp_…) are not ",
            "accepted by Copilot.",
        ),
    },
    MethodInfo {
        provider: Provider::Github,
        method: AuthMethod::ApiKey,
        env_var: Some("COPILOT_GITHUB_TOKEN"),
        token_prefixes: GITHUB_ACCEPTED_PREFIXES,
        instructions: concat!(
            "Use a fine-grained GitHub token with the Copilot permission (starts with github_pat_).\n",
            "1. Click your avatar → Settings.\n",
            "2. Go to the API Keys tab.\n",
            "3. Enter the token for GitHub.\n",
            "4. Click Save.\n",
            "Classic tokens (ghp_…) are not accepted by Copilot. ",
            "Admins can set a system-wide token in the COPILOT_GITHUB_TOKEN environment variable; ",
            "it is used when you have no token of your own.",
        ),
    },
    MethodInfo {
        provider: Provider::Github,
        method: AuthMethod::DeviceCode,
        env_var: Some("COPILOT_GITHUB_TOKEN"),
        token_prefixes: &[],
        instructions: concat!(
            "Supported subscriptions: Copilot Individual ($10/mo), Business ($19/mo), Enterprise.\n",
            "1. Click your avatar → Agent Credentials, expand Copilot and start the sign-in.\n",
            "2. Visit the URL shown and enter the device code.\n",
            "3. Wait: Sesame completes the sign-in automatically and saves the credentials.",
        ),
    },
];

const GEMINI_METHODS: &[MethodInfo] = &[MethodInfo {
    provider: Provider::Google,
    method: AuthMethod::ApiKey,
    env_var: Some("GEMINI_API_KEY"),
    token_prefixes: &[GOOGLE_API_KEY_PREFIX],
    instructions: concat!(
        "API key only - Gemini CLI doesn't support subscription-based authentication headlessly. ",
        "Google One AI Premium requires browser-based authentication that can't be automated. ",
        "Use an API key:\n",
        "1. Go to Google AI Studio.\n",
        "2. Create or copy your API key (starts with AIza).\n",
        "3. Enter it in Settings → API Keys (or the GEMINI_API_KEY env var).",
    ),
}];

const OPENCODE_METHODS: &[MethodInfo] = &[
    MethodInfo {
        provider: Provider::Anthropic,
        method: AuthMethod::ApiKey,
        env_var: Some("ANTHROPIC_API_KEY"),
        token_prefixes: &[ANTHROPIC_API_KEY_PREFIX],
        instructions: concat!(
            "OpenCode has its own provider management and can use an Anthropic API key ",
            "(starts with sk-ant-api03-).\n",
            "1. Select OpenCode as the agent when creating a task.\n",
            "2. Click Manage Providers next to the model dropdown.\n",
            "3. Click Connect on Anthropic.\n",
            "4. Choose Use API Key and enter the key.\n",
            "An Anthropic key saved in Settings → API Keys serves OpenCode too.",
        ),
    },
    MethodInfo {
        provider: Provider::Openai,
        method: AuthMethod::ApiKey,
        env_var: Some("OPENAI_API_KEY"),
        token_prefixes: &[OPENAI_API_KEY_PREFIX],
        instructions: concat!(
            "OpenCode has its own provider management and can use an OpenAI API key ",
            "(starts with sk-).\n",
            "1. Select OpenCode as the agent when creating a task.\n",
            "2. Click Manage Providers next to the model dropdown.\n",
            "3. Click Connect on OpenAI.\n",
            "4. Choose Use API Key and enter the key.\n",
            "An OpenAI key saved in Settings → API Keys serves OpenCode too.",
        ),
    },
    MethodInfo {
        provider: Provider::Anthropic,
        method: AuthMethod::AuthorizationCode,
        env_var: Some(OPENCODE_AUTH_ENV),
        token_prefixes: &[],
        instructions: concat!(
            "Supported subscriptions: Claude Max ($200/mo), Claude Pro ($20/mo).\n",
            "1. Select OpenCode as the agent when creating a task.\n",
            "2. Click Manage Providers next to the model dropdown.\n",
            "3. Click Connect on Anthropic and choose Use Subscription.\n",
            "4. Anthropic (code flow): visit the URL, copy the code, paste it back in Sesame.",
        ),
    },
    MethodInfo {
        provider: Provider::Openai,
        method: AuthMethod::DeviceCode,
        env_var: Some(OPENCODE_AUTH_ENV),
        token_prefixes: &[],
        instructions: concat!(
            "Supported subscriptions: ChatGPT Plus ($20/mo), ChatGPT Pro ($200/mo).\n",
            "1. Select OpenCode as the agent when creating a task.\n",
            "2. Click Manage Providers next to the model dropdown.\n",
            "3. Click Connect on OpenAI and choose Use Subscription.\n",
            "4. OpenAI (device code flow): visit the URL, enter the device code, ",
            "and wait for auto-completion.",
        ),
    },
    MethodInfo {
        provider: Provider::Openai,
        method: AuthMethod::PasteToken,
        env_var: Some(OPENCODE_AUTH_ENV),
        token_prefixes: &[],
        instructions: concat!(
            "Supported subscriptions: ChatGPT Plus ($20/mo), ChatGPT Pro ($200/mo).\n",
            "1. Sign in to ChatGPT from a terminal, e.g. run: codex login --device-auth\n",
            "2. Copy the access token and the refresh token (in ~/.codex/auth.json, ",
            "or paste that whole file).\n",
            "3. In Agent Credentials → OpenCode, choose provider OpenAI and paste them.\n",
            "4. Click Save Credentials.",
        ),
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_per_agent_in_agent_order() {
        let agents: Vec<Agent> = catalog().iter().map(|e| e.agent).collect();
        assert_eq!(agents, Agent::ALL.to_vec());
        for &agent in Agent::ALL {
            assert_eq!(entry(agent).agent, agent);
            assert_eq!(entry(agent).name(), agent.display_name());
        }
    }

    #[test]
    fn every_agent_has_methods_for_its_own_providers_only() {
        for e in catalog() {
            assert!(!e.methods.is_empty(), "{:?} has no methods", e.agent);
            for m in e.methods {
                assert!(
                    e.agent.providers().contains(&m.provider),
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
                assert_eq!(m.env_var, Some(m.provider.system_env_var()));
            }
        }
    }

    #[test]
    fn claude_code_methods() {
        let e = entry(Agent::ClaudeCode);
        let api = find_method(Agent::ClaudeCode, Provider::Anthropic, AuthMethod::ApiKey).unwrap();
        assert_eq!(api.env_var, Some("ANTHROPIC_API_KEY"));
        assert_eq!(api.token_prefixes, &["sk-ant-api03-"]);
        assert!(api.instructions.contains("API Keys"));

        let paste = find_method(Agent::ClaudeCode, Provider::Anthropic, AuthMethod::PasteToken).unwrap();
        assert_eq!(paste.env_var, Some("CLAUDE_CODE_OAUTH_TOKEN"));
        assert_eq!(paste.token_prefixes, &["sk-ant-oat01-"]);
        for needle in ["claude setup-token", "sk-ant-oat01-", "Save Credentials", "Claude Max"] {
            assert!(paste.instructions.contains(needle), "missing {needle}");
        }

        let code = find_method(Agent::ClaudeCode, Provider::Anthropic, AuthMethod::AuthorizationCode).unwrap();
        assert_eq!(code.env_var, Some("CLAUDE_CODE_OAUTH_TOKEN"));
        assert!(code.token_prefixes.is_empty());
        assert_eq!(e.methods.len(), 3);
        assert!(find_method(Agent::ClaudeCode, Provider::Anthropic, AuthMethod::DeviceCode).is_none());
    }

    #[test]
    fn codex_methods() {
        let api = find_method(Agent::Codex, Provider::Openai, AuthMethod::ApiKey).unwrap();
        assert_eq!(api.env_var, Some("OPENAI_API_KEY"));
        assert_eq!(api.token_prefixes, &["sk-"]);
        let paste = find_method(Agent::Codex, Provider::Openai, AuthMethod::PasteToken).unwrap();
        assert_eq!(paste.env_var, None);
        assert!(paste.token_prefixes.is_empty());
        for needle in ["codex login --device-auth", "~/.codex/auth.json", "refresh token"] {
            assert!(paste.instructions.contains(needle), "missing {needle}");
        }
        assert!(find_method(Agent::Codex, Provider::Openai, AuthMethod::DeviceCode).is_some());
        assert_eq!(entry(Agent::Codex).methods.len(), 3);
    }

    #[test]
    fn copilot_methods() {
        for method in [AuthMethod::PasteToken, AuthMethod::ApiKey] {
            let m = find_method(Agent::Copilot, Provider::Github, method).unwrap();
            assert_eq!(m.env_var, Some("COPILOT_GITHUB_TOKEN"));
            assert_eq!(m.token_prefixes, &["github_pat_", "gho_", "ghu_"]);
            assert!(!m.token_prefixes.contains(&"ghp_"));
        }
        let paste = find_method(Agent::Copilot, Provider::Github, AuthMethod::PasteToken).unwrap();
        assert!(paste.instructions.contains("fine-grained"));
        assert!(paste.instructions.contains("Copilot permission"));
        assert!(paste.instructions.contains("separate from the GitHub PAT"));
        assert!(find_method(Agent::Copilot, Provider::Github, AuthMethod::DeviceCode).is_some());
        assert_eq!(entry(Agent::Copilot).methods.len(), 3);
    }

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
    fn opencode_methods() {
        use AuthMethod::*;
        use Provider::*;
        let listed: Vec<(Provider, AuthMethod)> =
            entry(Agent::Opencode).methods.iter().map(|m| (m.provider, m.method)).collect();
        assert_eq!(
            listed,
            vec![
                (Anthropic, ApiKey),
                (Openai, ApiKey),
                (Anthropic, AuthorizationCode),
                (Openai, DeviceCode),
                (Openai, PasteToken),
            ]
        );
        for m in entry(Agent::Opencode).methods.iter().filter(|m| m.method != ApiKey) {
            assert_eq!(m.env_var, Some("OPENCODE_AUTH_CONTENT"));
        }
        let code = find_method(Agent::Opencode, Anthropic, AuthorizationCode).unwrap();
        assert!(code.instructions.contains("copy the code"));
        let device = find_method(Agent::Opencode, Openai, DeviceCode).unwrap();
        assert!(device.instructions.contains("device code"));
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
