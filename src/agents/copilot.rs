//! Copilot: a GitHub token (fine-grained PAT, OAuth or app user token),
//! pasted, saved as a key or from device sign-in, handed over as
//! `COPILOT_GITHUB_TOKEN`. Nothing comes back.

use super::catalog::{MethodInfo, Paste};
use super::handover::one_env_var;
use super::{AgentSpec, Handling, Issue, Materialized, Save, Saved};
use crate::credential_input::InputResult;
use crate::domain::{Agent, AuthMethod, Provider};
use crate::providers::github;

pub static SPEC: AgentSpec = AgentSpec {
    agent: Agent::Copilot,
    name: "Copilot",
    providers: &[Provider::Github],
    methods: METHODS,
    note: None,
    handling: &Copilot,
};

pub struct Copilot;

impl Handling for Copilot {
    fn parse_subscription(&self, save: &Save<'_>) -> InputResult<Saved> {
        github::parse_pasted(super::spec(save.agent).name, &save.fields, save.expires_at)
    }

    fn materialize(&self, issue: Issue<'_>) -> Materialized {
        one_env_var(issue.provider, issue.secret)
    }

    #[cfg(test)]
    fn sample_subscription(&self, provider: Provider) -> Option<super::samples::SubscriptionSample> {
        (provider == Provider::Github)
            .then(|| super::samples::SubscriptionSample::token(crate::providers::samples::github_pat()))
    }
}

const METHODS: &[MethodInfo] = &[
    MethodInfo {
        provider: Provider::Github,
        method: AuthMethod::PasteToken,
        label: "Paste a fine-grained token",
        paste: Some(Paste { token_label: "Fine-grained token", auth_file: None, accepts_refresh_token: false }),
        env_var: Some("COPILOT_GITHUB_TOKEN"),
        token_prefixes: github::ACCEPTED_PREFIXES,
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
        label: "API key",
        paste: None,
        env_var: Some("COPILOT_GITHUB_TOKEN"),
        token_prefixes: github::ACCEPTED_PREFIXES,
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
        label: "Connect with GitHub",
        paste: None,
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

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::agents::catalog::{entry, find_method};
    use crate::agents::samples::*;
    use crate::agents::{materialize, parse_subscription, IssuedSecret, SubscriptionInput};
    use crate::providers::samples::*;

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
    fn copilot_tokens() {
        for token in [github_pat(), format!("gho_{MARK}0123456789abcdef"), format!("ghu_{MARK}0123456789abcdef")] {
            let parsed =
                parse_subscription(SubscriptionInput { token: Some(&token), ..input(Agent::Copilot) }, now()).unwrap();
            assert_eq!(parsed.provider, Provider::Github);
            assert_eq!(parsed.secret.access_token.expose(), token);
            assert_eq!(parsed.expires_at, None);
        }
        let t = github_pat();
        let at = now() + Duration::days(30);
        let parsed = parse_subscription(
            SubscriptionInput { token: Some(&t), expires_at: Some(at), ..input(Agent::Copilot) },
            now(),
        )
        .unwrap();
        assert_eq!(parsed.expires_at, Some(at));
    }

    #[test]
    fn copilot_refusals() {
        let classic = format!("ghp_{MARK}0123456789abcdef");
        let copilot = |token: Option<&str>, refresh: Option<&str>| {
            parse_subscription(SubscriptionInput { token, refresh_token: refresh, ..input(Agent::Copilot) }, now())
        };
        let msg = refused(copilot(Some(&classic), None), &classic);
        assert_eq!(msg, github::GHP_REFUSAL);

        let key = anthropic_key();
        let msg = refused(copilot(Some(&key), None), &key);
        assert!(msg.contains("github_pat_") && msg.contains("Anthropic API key"), "{msg}");

        let msg = refused(copilot(None, None), "");
        assert!(msg.contains("token is missing"), "{msg}");

        let t = github_pat();
        let msg = refused(copilot(Some(&t), Some(&t)), &t);
        assert!(msg.contains("leave refreshToken empty"), "{msg}");
    }

    #[test]
    fn copilot_and_gemini_are_one_env_var() {
        let token = format!("github_pat_{MARK}abcdef");
        let s = sub(&token);
        for secret in [IssuedSecret::ApiKey(&token), IssuedSecret::Subscription(&s)] {
            let m = materialize(Agent::Copilot, Provider::Github, secret, None, now());
            assert_eq!(env_names(&m), ["COPILOT_GITHUB_TOKEN"]);
            assert_eq!(m.env[0].value.expose(), token);
            assert!(m.files.is_empty());
            assert_redacted(&m);
        }
        let key = format!("AIza{MARK}abcdefghij");
        let m = materialize(Agent::Gemini, Provider::Google, IssuedSecret::ApiKey(&key), None, now());
        assert_eq!(env_names(&m), ["GEMINI_API_KEY"]);
        assert_eq!(m.env[0].value.expose(), key);
        assert!(m.files.is_empty());
    }
}
