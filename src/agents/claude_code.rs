//! Claude Code: an Anthropic API key, or a Claude subscription (pasted
//! `claude setup-token` token or code sign-in), handed over as
//! `~/.claude/.credentials.json` so it can refresh and hand back its login.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::catalog::{MethodInfo, Paste};
use super::handover::{env, file, from_json, one_env_var, optional_token, required_token, secret_json};
use super::{AgentSpec, Handling, Issue, IssuedSecret, Materialized, ProxyFacts, Returned, Save, Saved};
use crate::credential_input::{InputError, InputResult, Secret, SubscriptionSecret};
use crate::domain::{Agent, AuthMethod, Provider};
use crate::providers::anthropic;

/// Claude Code's login, relative to the agent's home.
pub const CREDENTIALS_PATH: &str = ".claude/.credentials.json";
/// Claude Code's state file; only written to skip onboarding.
pub const STATE_PATH: &str = ".claude.json";
/// Skips the first-run onboarding that a token alone does not.
const STATE_CONTENT: &str = r#"{"hasCompletedOnboarding":true}"#;

pub static SPEC: AgentSpec = AgentSpec {
    agent: Agent::ClaudeCode,
    name: "Claude Code",
    providers: &[Provider::Anthropic],
    methods: METHODS,
    note: None,
    handling: &ClaudeCode,
};

pub struct ClaudeCode;

impl Handling for ClaudeCode {
    /// Node; with non-essential traffic off it sends only settings,
    /// policy limits and messages.
    fn proxy(&self) -> ProxyFacts {
        ProxyFacts { ca_vars: &["NODE_EXTRA_CA_CERTS"], quiet: &[("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")] }
    }

    fn parse_subscription(&self, save: &Save<'_>) -> InputResult<Saved> {
        anthropic::parse_pasted(super::spec(save.agent).name, &save.fields, save.expires_at, save.now)
    }

    fn materialize(&self, issue: Issue<'_>) -> Materialized {
        match (issue.provider, issue.secret) {
            (Provider::Anthropic, IssuedSecret::Subscription(s)) => subscription(s, issue.expires_at, issue.now),
            _ => one_env_var(issue.provider, issue.secret),
        }
    }

    fn returnable_paths(&self, provider: Provider) -> &'static [&'static str] {
        match provider {
            Provider::Anthropic => &[CREDENTIALS_PATH],
            _ => &[],
        }
    }

    fn handed_out_only(&self) -> &'static [&'static str] {
        &[STATE_PATH]
    }

    fn parse_returned(&self, _provider: Provider, content: &str) -> InputResult<Returned> {
        parse_credentials(content)
    }

    #[cfg(test)]
    fn sample_subscription(&self, provider: Provider) -> Option<super::samples::SubscriptionSample> {
        (provider == Provider::Anthropic)
            .then(|| super::samples::SubscriptionSample::token(crate::providers::samples::claude_token()))
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
        label: "Paste a setup-token",
        paste: Some(Paste { token_label: "Setup token", auth_file: None, accepts_refresh_token: false }),
        env_var: Some(anthropic::SUBSCRIPTION_ENV),
        token_prefixes: &[anthropic::SETUP_TOKEN_PREFIX],
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
        label: "Sign in with Claude",
        paste: None,
        env_var: Some(anthropic::SUBSCRIPTION_ENV),
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

// ---------------------------------------------------------------------------
// Materialisation
// ---------------------------------------------------------------------------

#[derive(Serialize)]
struct CredentialsOut<'a> {
    #[serde(rename = "claudeAiOauth")]
    oauth: OauthOut<'a>,
}

/// `subscriptionType` is left out: the plan is not stored, and a guess could
/// be wrong.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OauthOut<'a> {
    access_token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    /// Epoch milliseconds.
    expires_at: i64,
    scopes: Vec<&'a str>,
}

fn subscription(s: &SubscriptionSecret, expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Materialized {
    let access = s.access_token.expose();
    let refresh = s.refresh_token.as_ref().map(Secret::expose);
    // Without stored scopes or expiry, it is a `claude setup-token` token,
    // the usual stored credential: its scope, and a year.
    let scopes = if s.scopes.is_empty() {
        vec![anthropic::SETUP_TOKEN_SCOPE]
    } else {
        s.scopes.iter().map(String::as_str).collect()
    };
    let expires_at = expires_at.unwrap_or(now + Duration::days(anthropic::SETUP_TOKEN_DAYS));
    let credentials = CredentialsOut {
        oauth: OauthOut {
            access_token: access,
            refresh_token: refresh,
            expires_at: expires_at.timestamp_millis(),
            scopes,
        },
    };
    // With CLAUDE_CODE_OAUTH_TOKEN set, Claude Code uses only that token and
    // never refreshes. A login with a refresh token therefore goes in the
    // file alone, so the agent can refresh it and the task can hand the
    // newer tokens back; a setup-token (a year, no refresh) goes in both.
    Materialized {
        env: if refresh.is_none() { vec![env(anthropic::SUBSCRIPTION_ENV, access)] } else { Vec::new() },
        files: vec![
            file(CREDENTIALS_PATH, secret_json(&credentials, &[access, refresh.unwrap_or_default()])),
            file(STATE_PATH, Secret::new(STATE_CONTENT.to_owned())),
        ],
    }
}

// ---------------------------------------------------------------------------
// The login file handed back
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct CredentialsIn {
    #[serde(default, rename = "claudeAiOauth")]
    oauth: Option<OauthIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OauthIn {
    #[serde(default)]
    access_token: Option<Secret>,
    #[serde(default)]
    refresh_token: Option<Secret>,
    #[serde(default)]
    expires_at: Option<f64>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
}

fn parse_credentials(content: &str) -> InputResult<Returned> {
    const FILE: &str = CREDENTIALS_PATH;
    let parsed: CredentialsIn = from_json(content, FILE)?;
    let Some(oauth) = parsed.oauth else {
        return Err(InputError::new(format!("{FILE} has no claudeAiOauth login.")));
    };
    let access_token = required_token(oauth.access_token.as_ref(), "claudeAiOauth.accessToken", FILE)?;
    let mut secret = SubscriptionSecret::access_only(access_token);
    secret.refresh_token = optional_token(oauth.refresh_token.as_ref(), "claudeAiOauth.refreshToken", FILE)?;
    secret.scopes = oauth.scopes.unwrap_or_default();
    Ok(Returned { secret, expires_at: super::handover::epoch_millis(oauth.expires_at), refreshed_at: None })
}

#[cfg(test)]
mod tests;
