//! The agents, one file each: the catalog entry (methods, variables, setup
//! steps), the providers it runs against, how a subscription saved for it
//! is read, the variables and files it is handed for a task
//! (materialisation), and the login files it may hand back. The rest of the
//! service asks this registry instead of matching on [`Agent`].
//!
//! Adding an agent:
//! 1. add its value to `Agent` in `crate::domain` (the name the API shows);
//! 2. write `src/agents/<name>.rs` (copy the nearest existing agent) with
//!    its [`AgentSpec`] as `SPEC`: its name, the providers it runs against,
//!    its catalog methods (each with its setup steps, the label of its
//!    button or tab and, for a pasted login, its [`catalog::Paste`] form), a
//!    `note` for its card when there is something to say, and a unit struct
//!    implementing [`Handling`] (what a subscription save is, what a task is
//!    handed, which login files come back); its facts (how the agent reads
//!    credentials headlessly) go in the file's doc; its subscription plans
//!    come from its providers' registry entries;
//! 3. add one line for it to `REGISTERED` below.
//!
//! The registry test then builds, for it too, the catalog entry, an API key
//! issuance, a subscription save from the sample its file provides, an
//! issuance and a returned login file, and fails until each piece is there.
//! The agent CLIs themselves are run against what it is handed in
//! `.ci/agent-clis`.

pub mod aider;
pub mod catalog;
pub mod claude_code;
pub mod codex;
pub mod copilot;
pub mod crush;
pub mod gemini;
pub mod handover;
pub mod opencode;
#[cfg(test)]
mod samples;

use std::fmt;

use chrono::{DateTime, Utc};

pub use handover::{EnvOut, FileOut, IssuedSecret, Materialized, Returned};

use crate::credential_input::{InputError, InputResult, Redacted, SubscriptionFields, SubscriptionSecret};
use crate::delivery::ProxyAccess;
use crate::domain::{Agent, Provider};
use catalog::MethodInfo;

/// Every agent, one line each, in the order the API lists them.
static REGISTERED: &[&AgentSpec] =
    &[&claude_code::SPEC, &codex::SPEC, &copilot::SPEC, &gemini::SPEC, &opencode::SPEC, &aider::SPEC, &crush::SPEC];

/// What the service knows about one agent.
pub struct AgentSpec {
    pub agent: Agent,
    /// The name a person sees, e.g. "Claude Code".
    pub name: &'static str,
    /// Providers it runs against; with only one, that one is the default.
    pub providers: &'static [Provider],
    /// Its catalog methods, with setup steps.
    pub methods: &'static [MethodInfo],
    /// Shown on its card when there is something to say (e.g. why it takes
    /// API keys only). Its subscription plans come from its providers.
    pub note: Option<&'static str>,
    /// How its credentials are read, handed over and taken back.
    pub handling: &'static dyn Handling,
}

/// A subscription save for one of the agent's providers (already checked).
pub struct Save<'a> {
    pub agent: Agent,
    pub provider: Provider,
    pub fields: SubscriptionFields<'a>,
    pub expires_at: Option<DateTime<Utc>>,
    pub now: DateTime<Utc>,
}

/// The secret to store and its expiry.
pub type Saved = (SubscriptionSecret, Option<DateTime<Utc>>);

/// A credential from `provider` being handed to a task; `expires_at` is
/// the credential's stored expiry.
#[derive(Clone, Copy, Debug)]
pub struct Issue<'a> {
    pub provider: Provider,
    pub secret: IssuedSecret<'a>,
    pub expires_at: Option<DateTime<Utc>>,
    pub now: DateTime<Utc>,
}

/// The behaviour of one agent's credentials.
pub trait Handling: Sync {
    /// Why a subscription save is refused outright, for an agent that takes
    /// none.
    fn subscription_refusal(&self) -> Option<&'static str> {
        None
    }

    /// Reads a subscription save.
    fn parse_subscription(&self, save: &Save<'_>) -> InputResult<Saved>;

    /// The variables and files that make the agent use the credential. For
    /// a provider it does not take this still hands over the provider's
    /// own variable rather than nothing.
    fn materialize(&self, issue: Issue<'_>) -> Materialized;

    /// Login files (relative to its home) a task may hand back after a run
    /// with a subscription from `provider`.
    fn returnable_paths(&self, _provider: Provider) -> &'static [&'static str] {
        &[]
    }

    /// Files it is handed that hold no login, so a task sending them back
    /// is not an error.
    fn handed_out_only(&self) -> &'static [&'static str] {
        &[]
    }

    /// Reads a login file at one of [`Handling::returnable_paths`] (size
    /// and path already checked).
    fn parse_returned(&self, provider: Provider, _content: &str) -> InputResult<Returned> {
        Err(InputError::new(format!("nothing is taken back with {}", crate::providers::spec(provider).name)))
    }

    /// Proxy delivery: how the CLI is made to trust the proxy's CA and to
    /// keep quiet (`../shared/reference/agents.md`, "Egress injection").
    fn proxy(&self) -> ProxyFacts {
        ProxyFacts::NODE
    }

    /// A subscription save for `provider` that parses, for the registry
    /// test; `None` where it takes no subscription from `provider`.
    #[cfg(test)]
    fn sample_subscription(&self, provider: Provider) -> Option<samples::SubscriptionSample>;
}

/// How an agent CLI goes through the egress proxy.
pub struct ProxyFacts {
    /// Variables that must name the proxy's CA certificate file.
    pub ca_vars: &'static [&'static str],
    /// Variables that stop traffic the CLI does not need to do its task.
    pub quiet: &'static [(&'static str, &'static str)],
}

impl ProxyFacts {
    /// A Node.js CLI: it adds `NODE_EXTRA_CA_CERTS` to its roots.
    pub const NODE: ProxyFacts = ProxyFacts { ca_vars: &["NODE_EXTRA_CA_CERTS"], quiet: &[] };
}

/// Where the proxy's CA certificate (public part only) is written, relative
/// to the task's home.
pub const PROXY_CA_FILE: &str = ".sesame/proxy-ca.pem";

/// Proxy delivery: the CA file, the proxy variables every CLI honours, the
/// variables that make `agent` trust the CA, and its quiet switches.
pub fn proxy_setup(agent: Agent, access: &ProxyAccess, out: &mut Materialized) {
    let facts = spec(agent).handling.proxy();
    out.files.push(FileOut {
        path: PROXY_CA_FILE.to_owned(),
        mode: 0o644,
        content: crate::credential_input::Secret::new(access.ca_cert_pem.clone()),
    });
    for name in ["HTTPS_PROXY", "https_proxy"] {
        out.env.push(handover::env(name, &access.url));
    }
    for name in facts.ca_vars {
        out.env.push(handover::env_home_path(name, PROXY_CA_FILE));
    }
    for (name, value) in facts.quiet {
        out.env.push(handover::env(name, value));
    }
}

/// All registered agents.
pub fn registered() -> impl Iterator<Item = &'static AgentSpec> {
    REGISTERED.iter().copied()
}

/// The registry entry of an agent.
pub fn spec(agent: Agent) -> &'static AgentSpec {
    registered().find(|a| a.agent == agent).expect("every agent is registered")
}

/// The provider an agent uses when none is named: its only one; OpenCode
/// has several and needs one named.
pub fn default_provider(agent: Agent) -> Option<Provider> {
    match spec(agent).providers {
        [only] => Some(*only),
        _ => None,
    }
}

/// Whether `provider`'s API key serves `agent` and no other registered
/// agent (GitHub: Copilot). An agent is handed the API key of every
/// provider it runs against, so Anthropic's key serves Claude Code,
/// OpenCode, Aider and Crush, OpenAI's Codex, OpenCode, Aider and Crush,
/// Google's Gemini, Aider and Crush: removing one agent's credentials takes
/// such a shared key only when asked to.
pub fn api_key_serves_only(provider: Provider, agent: Agent) -> bool {
    let mut takers = registered().filter(|a| a.providers.contains(&provider));
    matches!((takers.next(), takers.next()), (Some(only), None) if only.agent == agent)
}

/// Whether an agent takes any subscription at all (Gemini takes API keys only).
pub fn takes_subscriptions(agent: Agent) -> bool {
    catalog::entry(agent).takes_subscriptions()
}

// ---------------------------------------------------------------------------
// Saving a subscription
// ---------------------------------------------------------------------------

/// What `saveSubscriptionCredential` received, field for field.
#[derive(Clone, Copy)]
pub struct SubscriptionInput<'a> {
    pub agent: Agent,
    pub provider: Option<Provider>,
    pub token: Option<&'a str>,
    pub access_token: Option<&'a str>,
    pub refresh_token: Option<&'a str>,
    pub auth_json: Option<&'a str>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl fmt::Debug for SubscriptionInput<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only say which fields were given, never what they hold.
        let given = |v: Option<&str>| v.map(|_| Redacted);
        f.debug_struct("SubscriptionInput")
            .field("agent", &self.agent)
            .field("provider", &self.provider)
            .field("token", &given(self.token))
            .field("access_token", &given(self.access_token))
            .field("refresh_token", &given(self.refresh_token))
            .field("auth_json", &given(self.auth_json))
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A subscription credential ready to be stored.
#[derive(Debug, Clone)]
pub struct ParsedSubscription {
    pub provider: Provider,
    pub secret: SubscriptionSecret,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Turns what a person pasted into the Agent Credentials dialog into a
/// subscription credential, or says exactly what to fix.
pub fn parse_subscription(input: SubscriptionInput<'_>, now: DateTime<Utc>) -> InputResult<ParsedSubscription> {
    let handling = spec(input.agent).handling;
    if let Some(refusal) = handling.subscription_refusal() {
        return Err(InputError::new(refusal));
    }
    let provider = resolve_provider(input.agent, input.provider)?;
    if let Some(at) = input.expires_at {
        if at <= now {
            return Err(InputError::new("expiresAt is in the past; the token has already expired — create a new one."));
        }
    }
    let fields = SubscriptionFields::new(input.token, input.access_token, input.refresh_token, input.auth_json);
    let save = Save { agent: input.agent, provider, fields, expires_at: input.expires_at, now };
    let (secret, expires_at) = handling.parse_subscription(&save)?;
    Ok(ParsedSubscription { provider, secret, expires_at })
}

fn resolve_provider(agent: Agent, provider: Option<Provider>) -> InputResult<Provider> {
    let valid = crate::agents::spec(agent).providers;
    let names = valid.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(" or ");
    match provider.or(crate::agents::default_provider(agent)) {
        Some(p) if valid.contains(&p) => Ok(p),
        Some(p) => Err(InputError::new(format!(
            "{} does not work with provider {}; valid: {names}.",
            crate::agents::spec(agent).name,
            p.as_str()
        ))),
        None => Err(InputError::new(format!("{} needs a provider: {names}.", crate::agents::spec(agent).name))),
    }
}

// ---------------------------------------------------------------------------
// Handing credentials out and taking login files back
// ---------------------------------------------------------------------------

/// The environment variables and files that make `agent` use `secret`.
///
/// `expires_at` is the credential's stored expiry. The caller validates the
/// agent/provider pair first; for any other pair this still returns the
/// provider's own variable rather than nothing.
pub fn materialize(
    agent: Agent,
    provider: Provider,
    secret: IssuedSecret<'_>,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Materialized {
    spec(agent).handling.materialize(Issue { provider, secret, expires_at, now })
}

/// Paths of files a task may hand back for this agent/provider (subscription
/// only: with an API key nothing is refreshed, so nothing comes back).
pub fn returnable_paths(agent: Agent, provider: Provider) -> &'static [&'static str] {
    spec(agent).handling.returnable_paths(provider)
}

/// Whether some agent is handed `path` without it holding a login (so a
/// task returning it is not an error; it is ignored).
pub fn is_handed_out_only(path: &str) -> bool {
    registered().any(|a| a.handling.handed_out_only().contains(&path))
}

/// Every login file any agent may hand back, once each, for a runner
/// collecting them after a task.
pub fn login_files() -> Vec<&'static str> {
    let mut paths: Vec<&'static str> = Vec::new();
    for agent in registered() {
        for &provider in agent.providers {
            for path in agent.handling.returnable_paths(provider) {
                if !paths.contains(path) {
                    paths.push(path);
                }
            }
        }
    }
    paths
}

fn no_login_file(agent: Agent, provider: Provider) -> InputError {
    InputError::new(format!(
        "{} with {} keeps no login file to take back.",
        crate::agents::spec(agent).name,
        crate::providers::spec(provider).name
    ))
}

/// Parses a login file a task handed back (see [`returnable_paths`]), so the
/// tokens an agent refreshed during the run can be stored. OpenAI refresh
/// tokens are single-use: the newest must be kept.
pub fn parse_returned(agent: Agent, provider: Provider, path: &str, content: &str) -> InputResult<Returned> {
    let paths = returnable_paths(agent, provider);
    if paths.is_empty() {
        return Err(no_login_file(agent, provider));
    }
    if !paths.contains(&path) {
        return Err(InputError::new(format!(
            "{:?} is not a file {} keeps its login in; only {} is taken back.",
            path.chars().take(100).collect::<String>(),
            crate::agents::spec(agent).name,
            paths.join(", ")
        )));
    }
    if content.len() > handover::MAX_RETURNED_BYTES {
        return Err(InputError::new(format!(
            "{path} is larger than {} KiB, more than any login file; it was not read.",
            handover::MAX_RETURNED_BYTES / 1024
        )));
    }
    spec(agent).handling.parse_returned(provider, content)
}

#[cfg(test)]
mod tests;
