//! Turns an issued credential into exactly the environment variables and
//! files the agent CLI reads ([`materialize`]), and reads back the login
//! files an agent may have refreshed during a run ([`parse_returned`]).
//!
//! The file formats are the ones each CLI loads (see the agents reference):
//! an agent refuses or ignores anything else, so shapes here are exact.
//! Secrets only ever sit in [`Secret`]s; `Debug` output and error messages
//! never contain them.

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use serde::de::{DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::credential_input::{jwt_expiry, InputError, Secret, SubscriptionSecret};
use crate::domain::{Agent, Provider};

/// Every file handed to a task holds a secret: owner read/write only.
pub const FILE_MODE: u32 = 0o600;
/// The largest login file taken back; real ones are a few KiB.
pub const MAX_RETURNED_BYTES: usize = 64 * 1024;

/// Claude Code's login, relative to the agent's home.
pub const CLAUDE_CREDENTIALS_PATH: &str = ".claude/.credentials.json";
/// Claude Code's state file; only written to skip onboarding.
pub const CLAUDE_STATE_PATH: &str = ".claude.json";
/// Codex's login (`$CODEX_HOME/auth.json`).
pub const CODEX_AUTH_PATH: &str = ".codex/auth.json";
/// OpenCode's logins (`$XDG_DATA_HOME/opencode/auth.json`).
pub const OPENCODE_AUTH_PATH: &str = ".local/share/opencode/auth.json";

const CLAUDE_OAUTH_ENV: &str = "CLAUDE_CODE_OAUTH_TOKEN";
const OPENCODE_AUTH_ENV: &str = "OPENCODE_AUTH_CONTENT";
/// Skips the first-run onboarding that a token alone does not.
const CLAUDE_STATE_CONTENT: &str = r#"{"hasCompletedOnboarding":true}"#;
/// The scope of a `claude setup-token` token, the usual stored credential.
const CLAUDE_DEFAULT_SCOPE: &str = "user:inference";
/// A `claude setup-token` token lasts a year.
const CLAUDE_DEFAULT_LIFETIME_DAYS: i64 = 365;
/// Where ChatGPT JWTs keep their claims, including the account id.
const OPENAI_AUTH_CLAIM: &str = "https://api.openai.com/auth";
const UNSIGNED_JWT_HEADER: &str = r#"{"alg":"none","typ":"JWT"}"#;

// ---------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------

/// A credential being handed to a task.
#[derive(Clone, Copy)]
pub enum IssuedSecret<'a> {
    ApiKey(&'a str),
    Subscription(&'a SubscriptionSecret),
}

impl<'a> IssuedSecret<'a> {
    /// The one token an agent sends: the key, or the subscription's access token.
    fn token(self) -> &'a str {
        match self {
            IssuedSecret::ApiKey(key) => key,
            IssuedSecret::Subscription(s) => s.access_token.expose(),
        }
    }
}

impl fmt::Debug for IssuedSecret<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IssuedSecret::ApiKey(_) => f.write_str("ApiKey(***)"),
            // SubscriptionSecret's Debug redacts every token.
            IssuedSecret::Subscription(s) => f.debug_tuple("Subscription").field(s).finish(),
        }
    }
}

/// An environment variable for the task. `Debug` prints the value as `***`.
#[derive(Clone, Debug)]
pub struct EnvOut {
    pub name: String,
    pub value: Secret,
}

/// A file for the task. `Debug` prints the content as `***`.
#[derive(Clone)]
pub struct FileOut {
    /// Relative to the agent's home directory.
    pub path: String,
    pub mode: u32,
    pub content: Secret,
}

impl fmt::Debug for FileOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileOut")
            .field("path", &self.path)
            .field("mode", &format_args!("{:#o}", self.mode))
            .field("content", &self.content)
            .finish()
    }
}

/// Everything a task runner sets up so the agent CLI finds its credential.
#[derive(Clone, Debug, Default)]
pub struct Materialized {
    pub env: Vec<EnvOut>,
    pub files: Vec<FileOut>,
}

impl Materialized {
    /// The value of environment variable `name`, if set.
    pub fn env_var(&self, name: &str) -> Option<&Secret> {
        self.env.iter().find(|e| e.name == name).map(|e| &e.value)
    }

    /// The file at `path` (relative to the agent's home), if written.
    pub fn file(&self, path: &str) -> Option<&FileOut> {
        self.files.iter().find(|f| f.path == path)
    }
}

/// A login file handed back by a task, parsed.
#[derive(Clone, Debug)]
pub struct Returned {
    /// Only what the file carries: OpenCode keeps no id_token, Claude Code no
    /// account id. Use [`Returned::merged_with`] to keep the stored rest.
    pub secret: SubscriptionSecret,
    pub expires_at: Option<DateTime<Utc>>,
    /// When these tokens were minted/refreshed, for "is it newer" checks
    /// (Codex's `last_refresh`; the other files do not record it).
    pub refreshed_at: Option<DateTime<Utc>>,
}

impl Returned {
    /// The returned tokens, with what the file does not carry taken from the
    /// stored secret, so storing it loses nothing (e.g. Codex's id_token after
    /// an OpenCode run).
    pub fn merged_with(&self, stored: &SubscriptionSecret) -> SubscriptionSecret {
        let new = &self.secret;
        SubscriptionSecret {
            access_token: new.access_token.clone(),
            refresh_token: new.refresh_token.clone().or_else(|| stored.refresh_token.clone()),
            id_token: new.id_token.clone().or_else(|| stored.id_token.clone()),
            account_id: new.account_id.clone().or_else(|| stored.account_id.clone()),
            last_refresh: new.last_refresh.or(stored.last_refresh),
            scopes: if new.scopes.is_empty() { stored.scopes.clone() } else { new.scopes.clone() },
        }
    }
}

/// The file an agent keeps a subscription login in, per agent and provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LoginFile {
    Claude,
    Codex,
    /// OpenCode's auth.json, keyed by OpenCode's provider id.
    Opencode {
        id: &'static str,
    },
}

impl LoginFile {
    fn of(agent: Agent, provider: Provider) -> Option<Self> {
        match (agent, provider) {
            (Agent::ClaudeCode, Provider::Anthropic) => Some(LoginFile::Claude),
            (Agent::Codex, Provider::Openai) => Some(LoginFile::Codex),
            (Agent::Opencode, Provider::Anthropic) => Some(LoginFile::Opencode { id: "anthropic" }),
            (Agent::Opencode, Provider::Openai) => Some(LoginFile::Opencode { id: "openai" }),
            _ => None,
        }
    }

    fn path(self) -> &'static str {
        match self {
            LoginFile::Claude => CLAUDE_CREDENTIALS_PATH,
            LoginFile::Codex => CODEX_AUTH_PATH,
            LoginFile::Opencode { .. } => OPENCODE_AUTH_PATH,
        }
    }
}

// ---------------------------------------------------------------------------
// Handing credentials out
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
    match (LoginFile::of(agent, provider), secret) {
        (Some(LoginFile::Claude), IssuedSecret::Subscription(s)) => claude_subscription(s, expires_at, now),
        (Some(LoginFile::Codex), IssuedSecret::Subscription(s)) => codex_subscription(s, expires_at, now),
        (Some(LoginFile::Opencode { id }), _) => opencode(id, secret, expires_at),
        // API keys for Claude Code, Codex and Gemini, Copilot's GitHub token,
        // and pairs the caller should have refused.
        _ => Materialized { env: vec![env(single_env_var(provider, secret), secret.token())], files: Vec::new() },
    }
}

/// Paths of files a task may hand back for this agent/provider (subscription
/// only: with an API key nothing is refreshed, so nothing comes back).
pub fn returnable_paths(agent: Agent, provider: Provider) -> &'static [&'static str] {
    match LoginFile::of(agent, provider) {
        Some(LoginFile::Claude) => &[CLAUDE_CREDENTIALS_PATH],
        Some(LoginFile::Codex) => &[CODEX_AUTH_PATH],
        Some(LoginFile::Opencode { .. }) => &[OPENCODE_AUTH_PATH],
        None => &[],
    }
}

/// The variable for a credential handed over as one environment variable.
fn single_env_var(provider: Provider, secret: IssuedSecret<'_>) -> &'static str {
    match (provider, secret) {
        // ANTHROPIC_API_KEY would override the subscription in Claude Code,
        // and a subscription token does not work as an API key anyway.
        (Provider::Anthropic, IssuedSecret::Subscription(_)) => CLAUDE_OAUTH_ENV,
        _ => provider.system_env_var(),
    }
}

fn env(name: &str, value: &str) -> EnvOut {
    EnvOut { name: name.to_owned(), value: Secret::new(value.to_owned()) }
}

fn file(path: &str, content: Secret) -> FileOut {
    FileOut { path: path.to_owned(), mode: FILE_MODE, content }
}

#[derive(Serialize)]
struct ClaudeCredentialsOut<'a> {
    #[serde(rename = "claudeAiOauth")]
    oauth: ClaudeOauthOut<'a>,
}

/// `subscriptionType` is left out: the plan is not stored, and a guess could
/// be wrong.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClaudeOauthOut<'a> {
    access_token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    /// Epoch milliseconds.
    expires_at: i64,
    scopes: Vec<&'a str>,
}

fn claude_subscription(s: &SubscriptionSecret, expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Materialized {
    let access = s.access_token.expose();
    let refresh = s.refresh_token.as_ref().map(Secret::expose);
    let scopes =
        if s.scopes.is_empty() { vec![CLAUDE_DEFAULT_SCOPE] } else { s.scopes.iter().map(String::as_str).collect() };
    let expires_at = expires_at.unwrap_or(now + Duration::days(CLAUDE_DEFAULT_LIFETIME_DAYS));
    let credentials = ClaudeCredentialsOut {
        oauth: ClaudeOauthOut {
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
        env: if refresh.is_none() { vec![env(CLAUDE_OAUTH_ENV, access)] } else { Vec::new() },
        files: vec![
            file(CLAUDE_CREDENTIALS_PATH, secret_json(&credentials, &[access, refresh.unwrap_or_default()])),
            file(CLAUDE_STATE_PATH, Secret::new(CLAUDE_STATE_CONTENT.to_owned())),
        ],
    }
}

#[derive(Serialize)]
struct CodexAuthOut<'a> {
    auth_mode: &'static str,
    /// Always null: a key here would make Codex use the API instead.
    #[serde(rename = "OPENAI_API_KEY")]
    openai_api_key: Option<&'a str>,
    tokens: CodexTokensOut<'a>,
    last_refresh: DateTime<Utc>,
}

#[derive(Serialize)]
struct CodexTokensOut<'a> {
    id_token: &'a str,
    access_token: &'a str,
    /// Codex requires a string; "" when there is none.
    refresh_token: &'a str,
    account_id: Option<&'a str>,
}

fn codex_subscription(s: &SubscriptionSecret, expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Materialized {
    let access = s.access_token.expose();
    let refresh = s.refresh_token.as_ref().map_or("", Secret::expose);
    let account_id = s.account_id.clone().or_else(|| openai_account_id(access));
    let id_token = codex_id_token(s, account_id.as_deref(), expires_at);
    let auth = CodexAuthOut {
        auth_mode: "chatgpt",
        openai_api_key: None,
        tokens: CodexTokensOut {
            id_token: &id_token,
            access_token: access,
            refresh_token: refresh,
            account_id: account_id.as_deref(),
        },
        // Codex refreshes 8 days after this; keeping the stored time means a
        // due refresh happens (and comes back) rather than being postponed.
        last_refresh: s.last_refresh.unwrap_or(now),
    };
    Materialized {
        env: Vec::new(),
        files: vec![file(CODEX_AUTH_PATH, secret_json(&auth, &[&id_token, access, refresh]))],
    }
}

/// Codex refuses an auth.json whose id_token is not a JWT, but only reads
/// claims (email, plan, account) out of it and never verifies it. So
/// when the real one is missing, a ChatGPT access token (a JWT carrying the
/// same claims) or, failing that, an unsigned stand-in lets the file load.
fn codex_id_token(
    s: &SubscriptionSecret,
    account_id: Option<&str>,
    expires_at: Option<DateTime<Utc>>,
) -> Zeroizing<String> {
    let stored = s.id_token.as_ref().map(Secret::expose).filter(|t| is_jwt(t));
    let access = Some(s.access_token.expose()).filter(|t| is_jwt(t));
    match stored.or(access) {
        Some(jwt) => Zeroizing::new(jwt.to_owned()),
        None => unsigned_jwt(account_id, expires_at),
    }
}

/// A JWT with no signature (`alg: none`) holding only the ChatGPT account id
/// and the expiry; [`parse_returned`] recognises and drops it.
fn unsigned_jwt(account_id: Option<&str>, expires_at: Option<DateTime<Utc>>) -> Zeroizing<String> {
    let mut claims = Map::new();
    let auth = serde_json::json!({ "chatgpt_account_id": account_id.unwrap_or_default() });
    claims.insert(OPENAI_AUTH_CLAIM.to_owned(), auth);
    if let Some(exp) = expires_at {
        claims.insert("exp".to_owned(), exp.timestamp().into());
    }
    let payload = Value::Object(claims).to_string();
    // Codex wants three non-empty parts, so the signature is a placeholder.
    Zeroizing::new(format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(UNSIGNED_JWT_HEADER),
        URL_SAFE_NO_PAD.encode(payload),
        URL_SAFE_NO_PAD.encode("sig")
    ))
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum OpencodeEntryOut<'a> {
    Oauth {
        refresh: &'a str,
        access: &'a str,
        /// Epoch milliseconds; 0 (already due) when unknown.
        expires: i64,
        #[serde(rename = "accountId", skip_serializing_if = "Option::is_none")]
        account_id: Option<&'a str>,
    },
    Api {
        key: &'a str,
    },
}

fn opencode(id: &str, secret: IssuedSecret<'_>, expires_at: Option<DateTime<Utc>>) -> Materialized {
    let content = match secret {
        IssuedSecret::ApiKey(key) => secret_json(&BTreeMap::from([(id, OpencodeEntryOut::Api { key })]), &[key]),
        IssuedSecret::Subscription(s) => {
            let access = s.access_token.expose();
            let refresh = s.refresh_token.as_ref().map_or("", Secret::expose);
            let account_id = s.account_id.clone().or_else(|| openai_account_id(access));
            let entry = OpencodeEntryOut::Oauth {
                refresh,
                access,
                expires: expires_at.or_else(|| jwt_expiry(access)).map_or(0, |at| at.timestamp_millis()),
                account_id: account_id.as_deref(),
            };
            secret_json(&BTreeMap::from([(id, entry)]), &[access, refresh])
        }
    };
    // While OPENCODE_AUTH_CONTENT is set, OpenCode reads only the variable
    // but writes refreshed tokens to the file: it would then reuse a spent
    // single-use refresh token. OAuth logins therefore go in the file
    // alone; an API key (nothing to refresh) goes in both.
    let env = match secret {
        IssuedSecret::ApiKey(_) => vec![EnvOut { name: OPENCODE_AUTH_ENV.to_owned(), value: content.clone() }],
        IssuedSecret::Subscription(_) => Vec::new(),
    };
    Materialized { env, files: vec![file(OPENCODE_AUTH_PATH, content)] }
}

/// Serialises `value` into a buffer sized up front for the `tokens` it holds,
/// so no reallocation leaves stray copies of them in freed memory.
fn secret_json<T: Serialize>(value: &T, tokens: &[&str]) -> Secret {
    let size = tokens.iter().map(|t| t.len()).sum::<usize>() + 512;
    let mut buf = Vec::with_capacity(size);
    // Structs with string keys always serialise, and serde_json writes UTF-8.
    serde_json::to_writer(&mut buf, value).expect("credential JSON serialises");
    Secret::new(String::from_utf8(buf).expect("serde_json writes UTF-8"))
}

// ---------------------------------------------------------------------------
// Taking login files back
// ---------------------------------------------------------------------------

/// Parses a login file a task handed back (see [`returnable_paths`]), so the
/// tokens an agent refreshed during the run can be stored. OpenAI refresh
/// tokens are single-use: the newest must be kept.
pub fn parse_returned(agent: Agent, provider: Provider, path: &str, content: &str) -> Result<Returned, InputError> {
    let Some(login) = LoginFile::of(agent, provider) else {
        return Err(InputError::new(format!(
            "{} with {} keeps no login file to take back.",
            agent.display_name(),
            provider.display_name()
        )));
    };
    let expected = login.path();
    if path != expected {
        return Err(InputError::new(format!(
            "{:?} is not a file {} keeps its login in; only {expected} is taken back.",
            path.chars().take(100).collect::<String>(),
            agent.display_name()
        )));
    }
    if content.len() > MAX_RETURNED_BYTES {
        return Err(InputError::new(format!(
            "{expected} is larger than {} KiB, more than any login file; it was not read.",
            MAX_RETURNED_BYTES / 1024
        )));
    }
    match login {
        LoginFile::Claude => parse_claude(content),
        LoginFile::Codex => parse_codex(content),
        LoginFile::Opencode { id } => parse_opencode(id, content),
    }
}

#[derive(Deserialize)]
struct ClaudeCredentialsIn {
    #[serde(default, rename = "claudeAiOauth")]
    oauth: Option<ClaudeOauthIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClaudeOauthIn {
    #[serde(default)]
    access_token: Option<Secret>,
    #[serde(default)]
    refresh_token: Option<Secret>,
    #[serde(default)]
    expires_at: Option<f64>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
}

fn parse_claude(content: &str) -> Result<Returned, InputError> {
    const FILE: &str = CLAUDE_CREDENTIALS_PATH;
    let parsed: ClaudeCredentialsIn = from_json(content, FILE)?;
    let Some(oauth) = parsed.oauth else {
        return Err(InputError::new(format!("{FILE} has no claudeAiOauth login.")));
    };
    let secret = SubscriptionSecret {
        access_token: required_token(oauth.access_token.as_ref(), "claudeAiOauth.accessToken", FILE)?,
        refresh_token: optional_token(oauth.refresh_token.as_ref(), "claudeAiOauth.refreshToken", FILE)?,
        id_token: None,
        account_id: None,
        last_refresh: None,
        scopes: oauth.scopes.unwrap_or_default(),
    };
    Ok(Returned { secret, expires_at: epoch_millis(oauth.expires_at), refreshed_at: None })
}

#[derive(Deserialize)]
struct CodexAuthIn {
    #[serde(default)]
    auth_mode: Option<String>,
    #[serde(default, rename = "OPENAI_API_KEY")]
    openai_api_key: Option<Secret>,
    #[serde(default)]
    tokens: Option<CodexTokensIn>,
    #[serde(default)]
    last_refresh: Option<String>,
}

#[derive(Deserialize)]
struct CodexTokensIn {
    #[serde(default)]
    id_token: Option<Secret>,
    #[serde(default)]
    access_token: Option<Secret>,
    #[serde(default)]
    refresh_token: Option<Secret>,
    #[serde(default)]
    account_id: Option<String>,
}

fn parse_codex(content: &str) -> Result<Returned, InputError> {
    const FILE: &str = CODEX_AUTH_PATH;
    let parsed: CodexAuthIn = from_json(content, FILE)?;
    let api_key_mode = parsed.auth_mode.as_deref().is_some_and(|m| m.eq_ignore_ascii_case("apikey"));
    let has_api_key = parsed.openai_api_key.as_ref().is_some_and(|k| !k.expose().trim().is_empty());
    let tokens = match parsed.tokens {
        Some(tokens) if !api_key_mode => tokens,
        _ if api_key_mode || has_api_key => {
            return Err(InputError::new(format!(
                "{FILE} holds an OpenAI API key, not a ChatGPT login; the task logged Codex in with a key."
            )))
        }
        _ => return Err(InputError::new(format!("{FILE} has no tokens; Codex is not logged in with ChatGPT."))),
    };

    let access_token = required_token(tokens.access_token.as_ref(), "tokens.access_token", FILE)?;
    let refresh_token = optional_token(tokens.refresh_token.as_ref(), "tokens.refresh_token", FILE)?;
    let id_token = optional_token(tokens.id_token.as_ref(), "tokens.id_token", FILE)?;
    if id_token.as_ref().is_some_and(|t| !is_jwt(t.expose())) {
        return Err(InputError::new(format!(
            "{FILE}: tokens.id_token is not a JWT; Codex itself would refuse this file."
        )));
    }
    // A copy of the access token or an unsigned stand-in is what
    // `materialize` put there, not an id_token OpenAI issued: don't store it.
    let id_token = id_token.filter(|t| t != &access_token && !is_unsigned_jwt(t.expose()));

    let refreshed_at = match parsed.last_refresh.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(text) => Some(
            DateTime::parse_from_rfc3339(text)
                .map_err(|_| InputError::new(format!("{FILE}: last_refresh is not an RFC 3339 date-time.")))?
                .with_timezone(&Utc),
        ),
        None => None,
    };
    let account_id = tokens.account_id.as_deref().map(str::trim).filter(|a| !a.is_empty()).map(str::to_owned);
    let expires_at = jwt_expiry(access_token.expose());
    let secret = SubscriptionSecret {
        access_token,
        refresh_token,
        id_token,
        account_id,
        last_refresh: refreshed_at,
        scopes: Vec::new(),
    };
    Ok(Returned { secret, expires_at, refreshed_at })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OpencodeEntryIn {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    access: Option<Secret>,
    #[serde(default)]
    refresh: Option<Secret>,
    #[serde(default)]
    expires: Option<f64>,
    #[serde(default)]
    account_id: Option<String>,
}

fn parse_opencode(id: &str, content: &str) -> Result<Returned, InputError> {
    const FILE: &str = OPENCODE_AUTH_PATH;
    let mut de = serde_json::Deserializer::from_str(content);
    let entry = EntryFor(id).deserialize(&mut de).and_then(|entry| de.end().map(|()| entry));
    let Some(entry) = entry.map_err(|e| json_error(e, FILE))? else {
        return Err(InputError::new(format!("{FILE} has no \"{id}\" entry; OpenCode is not logged in to it.")));
    };
    match entry.kind.as_deref() {
        Some("oauth") => {}
        Some("api") => {
            return Err(InputError::new(format!(
                "{FILE}: the \"{id}\" entry holds an API key, not a subscription login."
            )))
        }
        _ => return Err(InputError::new(format!("{FILE}: the \"{id}\" entry is not of type \"oauth\"."))),
    }
    let access_token = required_token(entry.access.as_ref(), &format!("{id}.access"), FILE)?;
    let account_id = entry.account_id.as_deref().map(str::trim).filter(|a| !a.is_empty()).map(str::to_owned);
    let secret = SubscriptionSecret {
        access_token,
        refresh_token: optional_token(entry.refresh.as_ref(), &format!("{id}.refresh"), FILE)?,
        id_token: None,
        account_id,
        last_refresh: None,
        scopes: Vec::new(),
    };
    Ok(Returned { secret, expires_at: epoch_millis(entry.expires), refreshed_at: None })
}

/// Reads only the entry for one provider id out of OpenCode's auth.json;
/// the other providers' entries are skipped unparsed, as their shapes are
/// not ours to judge and their secrets need not be copied.
struct EntryFor<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for EntryFor<'_> {
    type Value = Option<OpencodeEntryIn>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EntryFor<'_> {
    type Value = Option<OpencodeEntryIn>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object keyed by provider id")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == self.0 {
                found = Some(map.next_value()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

fn from_json<T: DeserializeOwned>(content: &str, file: &str) -> Result<T, InputError> {
    serde_json::from_str(content).map_err(|e| json_error(e, file))
}

/// Syntax errors only say where the JSON broke, so their text is safe to
/// show. Shape errors ("invalid type: string \"…\"") may quote the content,
/// so they get our own wording with the position only.
fn json_error(e: serde_json::Error, file: &str) -> InputError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof => InputError::new(format!("{file} is not valid JSON: {e}.")),
        Category::Data | Category::Io => InputError::new(format!(
            "{file} does not have the expected shape (unexpected value at line {} column {}).",
            e.line(),
            e.column()
        )),
    }
}

/// A token that must be there.
fn required_token(value: Option<&Secret>, field: &str, file: &str) -> Result<Secret, InputError> {
    optional_token(value, field, file)?
        .ok_or_else(|| InputError::new(format!("{file} has no {field}; the login in it is incomplete.")))
}

/// A token that may be missing or blank (Codex writes "" for none). Tokens
/// go into HTTP headers, so whitespace or non-ASCII means a damaged file.
fn optional_token(value: Option<&Secret>, field: &str, file: &str) -> Result<Option<Secret>, InputError> {
    let Some(token) = value.map(|v| v.expose().trim()).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(InputError::new(format!(
            "{file}: {field} contains spaces, line breaks or other characters no token has."
        )));
    }
    Ok(Some(Secret::new(token.to_owned())))
}

/// Epoch milliseconds as the JS-based CLIs write them; 0 or less means unknown.
fn epoch_millis(ms: Option<f64>) -> Option<DateTime<Utc>> {
    let ms = ms.filter(|ms| ms.is_finite() && *ms > 0.0)?;
    // Truncating sub-millisecond fractions is intended.
    DateTime::from_timestamp_millis(ms as i64)
}

// ---------------------------------------------------------------------------
// JWTs
// ---------------------------------------------------------------------------

/// Decodes one JWT part (unpadded base64url, as Codex requires) into a JSON
/// object.
fn jwt_object(part: &str) -> Option<Map<String, Value>> {
    let bytes = Zeroizing::new(URL_SAFE_NO_PAD.decode(part).ok()?);
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// Header and claims of a token Codex accepts as a JWT: three non-empty
/// parts whose middle one decodes to a JSON object. Nothing is verified.
fn jwt_parts(token: &str) -> Option<(&str, Map<String, Value>)> {
    let mut parts = token.split('.');
    let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || header.is_empty() || signature.is_empty() {
        return None;
    }
    Some((header, jwt_object(payload)?))
}

fn is_jwt(token: &str) -> bool {
    jwt_parts(token).is_some()
}

/// Whether this is an `alg: none` JWT such as [`unsigned_jwt`] makes.
fn is_unsigned_jwt(token: &str) -> bool {
    jwt_parts(token)
        .and_then(|(header, _)| jwt_object(header))
        .is_some_and(|h| h.get("alg").and_then(Value::as_str) == Some("none"))
}

/// The ChatGPT account id a ChatGPT JWT carries, if any.
fn openai_account_id(token: &str) -> Option<String> {
    let (_, claims) = jwt_parts(token)?;
    let id = claims.get(OPENAI_AUTH_CLAIM)?.get("chatgpt_account_id")?.as_str()?.trim();
    (!id.is_empty()).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    /// A distinctive run placed in every secret below, so tests can prove it
    /// never reaches an error message or Debug output.
    const MARK: &str = "Zq7XsEcReTmArK9";
    const ACCOUNT: &str = "acct-1234";

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap()
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn jwt(claims: Value) -> String {
        format!(
            "{}.{}.{}",
            b64(br#"{"alg":"RS256","typ":"JWT"}"#),
            b64(claims.to_string().as_bytes()),
            b64(format!("signature-{MARK}").as_bytes())
        )
    }

    fn access_jwt(exp: DateTime<Utc>, account: Option<&str>) -> String {
        let mut claims = json!({ "exp": exp.timestamp(), "nonce": MARK });
        if let Some(account) = account {
            claims[OPENAI_AUTH_CLAIM] = json!({ "chatgpt_account_id": account, "chatgpt_plan_type": "pro" });
        }
        jwt(claims)
    }

    fn id_jwt() -> String {
        jwt(json!({ "email": "a@example.com", OPENAI_AUTH_CLAIM: { "chatgpt_account_id": ACCOUNT }, "n": MARK }))
    }

    fn claude_token() -> String {
        format!("sk-ant-oat01-{MARK}abcdefghij-_XYZ0123456789AA")
    }
    fn claude_refresh() -> String {
        format!("sk-ant-ort01-{MARK}abcdefghij-_XYZ0123456789AA")
    }
    fn openai_refresh() -> String {
        format!("rt_{MARK}abcdefghijklmnop")
    }
    fn api_key() -> String {
        format!("sk-proj-{MARK}abcdefghij_XYZ0123456789")
    }

    fn sub(access: &str) -> SubscriptionSecret {
        SubscriptionSecret {
            access_token: Secret::new(access.to_owned()),
            refresh_token: None,
            id_token: None,
            account_id: None,
            last_refresh: None,
            scopes: Vec::new(),
        }
    }

    fn with_refresh(mut s: SubscriptionSecret, refresh: &str) -> SubscriptionSecret {
        s.refresh_token = Some(Secret::new(refresh.to_owned()));
        s
    }

    fn parse(file: &FileOut) -> Value {
        serde_json::from_str(file.content.expose()).expect("materialised file is JSON")
    }

    fn env_names(m: &Materialized) -> Vec<&str> {
        m.env.iter().map(|e| e.name.as_str()).collect()
    }

    fn file_paths(m: &Materialized) -> Vec<&str> {
        m.files.iter().map(|f| f.path.as_str()).collect()
    }

    /// Asserts the Debug output of `m` shows no secret.
    fn assert_redacted(m: &Materialized) {
        let debug = format!("{m:?}");
        assert!(!debug.contains(MARK), "Debug leaks a secret: {debug}");
        assert!(debug.contains("0o600") || m.files.is_empty());
    }

    /// Asserts a refusal whose message and Debug leak nothing.
    fn refused(result: Result<Returned, InputError>) -> String {
        let err = result.expect_err("expected a refusal");
        let msg = err.to_string();
        assert!(!msg.contains(MARK), "message leaks a secret: {msg}");
        assert!(!format!("{err:?}").contains(MARK));
        msg
    }

    fn codex_id_from(m: &Materialized) -> String {
        let auth = parse(m.file(CODEX_AUTH_PATH).expect("auth.json"));
        auth["tokens"]["id_token"].as_str().expect("id_token is a string").to_owned()
    }

    /// Codex's own check: three non-empty parts, the middle an unpadded
    /// base64url JSON object.
    fn assert_codex_jwt(token: &str) -> Map<String, Value> {
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "not three parts");
        assert!(parts.iter().all(|p| !p.is_empty()));
        let payload = URL_SAFE_NO_PAD.decode(parts[1]).expect("payload is base64url without padding");
        match serde_json::from_slice(&payload).expect("payload is JSON") {
            Value::Object(map) => map,
            other => panic!("payload is not an object: {other}"),
        }
    }

    // ---- Claude Code ------------------------------------------------------

    #[test]
    fn claude_subscription_with_refresh_token() {
        let mut s = with_refresh(sub(&claude_token()), &claude_refresh());
        s.scopes = vec!["user:inference".into(), "user:profile".into()];
        let expires = now() + Duration::hours(8);
        let m =
            materialize(Agent::ClaudeCode, Provider::Anthropic, IssuedSecret::Subscription(&s), Some(expires), now());

        assert!(m.env.is_empty(), "a refreshable login must not be pinned by CLAUDE_CODE_OAUTH_TOKEN");
        assert_eq!(file_paths(&m), [CLAUDE_CREDENTIALS_PATH, CLAUDE_STATE_PATH]);
        assert!(m.files.iter().all(|f| f.mode == 0o600));
        assert_eq!(
            parse(m.file(CLAUDE_CREDENTIALS_PATH).unwrap()),
            json!({ "claudeAiOauth": {
                "accessToken": claude_token(),
                "refreshToken": claude_refresh(),
                "expiresAt": expires.timestamp_millis(),
                "scopes": ["user:inference", "user:profile"],
            }})
        );
        assert_eq!(parse(m.file(CLAUDE_STATE_PATH).unwrap()), json!({ "hasCompletedOnboarding": true }));
        assert_redacted(&m);
    }

    #[test]
    fn claude_setup_token_defaults() {
        let s = sub(&claude_token());
        let m = materialize(Agent::ClaudeCode, Provider::Anthropic, IssuedSecret::Subscription(&s), None, now());
        assert_eq!(
            parse(m.file(CLAUDE_CREDENTIALS_PATH).unwrap()),
            json!({ "claudeAiOauth": {
                "accessToken": claude_token(),
                "expiresAt": (now() + Duration::days(365)).timestamp_millis(),
                "scopes": ["user:inference"],
            }})
        );
        assert!(m.env_var("ANTHROPIC_API_KEY").is_none());
    }

    #[test]
    fn claude_api_key_is_one_env_var() {
        let key = format!("sk-ant-api03-{MARK}abcdefghij");
        let m = materialize(Agent::ClaudeCode, Provider::Anthropic, IssuedSecret::ApiKey(&key), None, now());
        assert_eq!(env_names(&m), ["ANTHROPIC_API_KEY"]);
        assert_eq!(m.env_var("ANTHROPIC_API_KEY").unwrap().expose(), key);
        assert!(m.files.is_empty());
        assert_redacted(&m);
    }

    // ---- Codex --------------------------------------------------------------

    #[test]
    fn codex_subscription_full_file() {
        let access = access_jwt(now() + Duration::days(10), Some(ACCOUNT));
        let mut s = with_refresh(sub(&access), &openai_refresh());
        s.id_token = Some(Secret::new(id_jwt()));
        s.account_id = Some("acct-stored".into());
        s.last_refresh = Some(now() - Duration::days(2));
        let m = materialize(Agent::Codex, Provider::Openai, IssuedSecret::Subscription(&s), None, now());

        assert!(m.env.is_empty());
        assert_eq!(file_paths(&m), [CODEX_AUTH_PATH]);
        assert_eq!(m.files[0].mode, 0o600);
        assert_eq!(
            parse(&m.files[0]),
            json!({
                "auth_mode": "chatgpt",
                "OPENAI_API_KEY": null,
                "tokens": {
                    "id_token": id_jwt(),
                    "access_token": access,
                    "refresh_token": openai_refresh(),
                    "account_id": "acct-stored",
                },
                "last_refresh": "2025-05-30T12:00:00Z",
            })
        );
        assert_redacted(&m);
    }

    #[test]
    fn codex_uses_access_jwt_as_id_token_and_its_account() {
        let access = access_jwt(now() + Duration::days(10), Some(ACCOUNT));
        let s = sub(&access);
        let m = materialize(Agent::Codex, Provider::Openai, IssuedSecret::Subscription(&s), None, now());
        let auth = parse(&m.files[0]);
        assert_eq!(auth["tokens"]["id_token"], json!(access));
        assert_eq!(auth["tokens"]["account_id"], json!(ACCOUNT));
        assert_eq!(auth["tokens"]["refresh_token"], json!(""));
        assert_eq!(auth["last_refresh"], json!("2025-06-01T12:00:00Z"));
        assert_codex_jwt(&codex_id_from(&m));
    }

    #[test]
    fn codex_synthesises_an_id_token_for_opaque_access_tokens() {
        let opaque = format!("opaque-{MARK}-access-token");
        let expires = now() + Duration::hours(1);

        let s = sub(&opaque);
        let m = materialize(Agent::Codex, Provider::Openai, IssuedSecret::Subscription(&s), Some(expires), now());
        assert_eq!(parse(&m.files[0])["tokens"]["account_id"], Value::Null);
        let claims = assert_codex_jwt(&codex_id_from(&m));
        assert_eq!(
            Value::Object(claims),
            json!({ OPENAI_AUTH_CLAIM: { "chatgpt_account_id": "" }, "exp": expires.timestamp() })
        );

        // A stored account id goes into both places; a stored id_token that
        // Codex would refuse is replaced too.
        let mut s = sub(&opaque);
        s.account_id = Some(ACCOUNT.into());
        s.id_token = Some(Secret::new("not-a-jwt".into()));
        let m = materialize(Agent::Codex, Provider::Openai, IssuedSecret::Subscription(&s), None, now());
        assert_eq!(parse(&m.files[0])["tokens"]["account_id"], json!(ACCOUNT));
        let claims = assert_codex_jwt(&codex_id_from(&m));
        assert_eq!(Value::Object(claims), json!({ OPENAI_AUTH_CLAIM: { "chatgpt_account_id": ACCOUNT } }));
        assert!(!codex_id_from(&m).contains(MARK));
    }

    #[test]
    fn codex_api_key_is_one_env_var() {
        let m = materialize(Agent::Codex, Provider::Openai, IssuedSecret::ApiKey(&api_key()), None, now());
        assert_eq!(env_names(&m), ["OPENAI_API_KEY"]);
        assert_eq!(m.env_var("OPENAI_API_KEY").unwrap().expose(), api_key());
        assert!(m.files.is_empty());
    }

    // ---- OpenCode -----------------------------------------------------------

    #[test]
    fn opencode_openai_subscription() {
        let exp = now() + Duration::days(10);
        let access = access_jwt(exp, Some(ACCOUNT));
        let s = with_refresh(sub(&access), &openai_refresh());
        let m = materialize(Agent::Opencode, Provider::Openai, IssuedSecret::Subscription(&s), None, now());

        let expected = json!({ "openai": {
            "type": "oauth",
            "refresh": openai_refresh(),
            "access": access,
            "expires": exp.timestamp_millis(),
            "accountId": ACCOUNT,
        }});
        assert_eq!(file_paths(&m), [OPENCODE_AUTH_PATH]);
        assert_eq!(m.files[0].mode, 0o600);
        assert_eq!(parse(&m.files[0]), expected);
        assert!(m.env.is_empty(), "OPENCODE_AUTH_CONTENT would hide refreshed tokens");
        assert_redacted(&m);
    }

    #[test]
    fn opencode_anthropic_subscription_without_expiry_or_refresh() {
        let s = sub(&claude_token());
        let m = materialize(Agent::Opencode, Provider::Anthropic, IssuedSecret::Subscription(&s), None, now());
        assert_eq!(
            parse(&m.files[0]),
            json!({ "anthropic": { "type": "oauth", "refresh": "", "access": claude_token(), "expires": 0 } })
        );
        assert!(m.env_var("ANTHROPIC_API_KEY").is_none());
    }

    #[test]
    fn opencode_api_keys() {
        for (provider, id) in [(Provider::Anthropic, "anthropic"), (Provider::Openai, "openai")] {
            let m = materialize(Agent::Opencode, provider, IssuedSecret::ApiKey(&api_key()), None, now());
            assert_eq!(parse(&m.files[0]), json!({ id: { "type": "api", "key": api_key() } }));
            assert_eq!(m.files[0].path, OPENCODE_AUTH_PATH);
            assert_eq!(m.files[0].mode, 0o600);
            assert_eq!(m.env_var(OPENCODE_AUTH_ENV), Some(&m.files[0].content));
            assert_eq!(m.env.len(), 1);
            assert_redacted(&m);
        }
    }

    // ---- Copilot, Gemini, everything else ----------------------------------

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

    #[test]
    fn mismatched_pairs_fall_back_to_the_providers_variable() {
        let m = materialize(Agent::Codex, Provider::Anthropic, IssuedSecret::ApiKey(&api_key()), None, now());
        assert_eq!(env_names(&m), ["ANTHROPIC_API_KEY"]);
        assert!(m.files.is_empty());
        let s = sub(&claude_token());
        let m = materialize(Agent::Copilot, Provider::Anthropic, IssuedSecret::Subscription(&s), None, now());
        assert_eq!(env_names(&m), [CLAUDE_OAUTH_ENV]);
        let m = materialize(Agent::Opencode, Provider::Github, IssuedSecret::ApiKey(&api_key()), None, now());
        assert_eq!(env_names(&m), ["COPILOT_GITHUB_TOKEN"]);
    }

    #[test]
    fn every_combination_is_safe() {
        let access = access_jwt(now() + Duration::days(1), None);
        let key = api_key();
        let subs = [sub(&access), sub(&claude_token()), sub(&format!("opaque-{MARK}"))];
        for &agent in Agent::ALL {
            for &provider in Provider::ALL {
                let secrets = subs.iter().map(IssuedSecret::Subscription).chain([IssuedSecret::ApiKey(&key)]);
                for secret in secrets {
                    let m = materialize(agent, provider, secret, None, now());
                    assert!(!m.env.is_empty() || !m.files.is_empty(), "{agent} {provider}: nothing issued");
                    for f in &m.files {
                        assert_eq!(f.mode, 0o600);
                        assert!(!f.path.starts_with('/') && !f.path.contains(".."));
                        parse(f);
                    }
                    if provider == Provider::Anthropic && matches!(secret, IssuedSecret::Subscription(_)) {
                        assert!(m.env_var("ANTHROPIC_API_KEY").is_none(), "{agent}: subscription as API key");
                    }
                    if m.file(CODEX_AUTH_PATH).is_some() {
                        assert_codex_jwt(&codex_id_from(&m));
                    }
                    assert_redacted(&m);
                }
            }
        }
    }

    #[test]
    fn debug_never_shows_secrets() {
        let key = api_key();
        let s = with_refresh(sub(&claude_token()), &claude_refresh());
        assert_eq!(format!("{:?}", IssuedSecret::ApiKey(&key)), "ApiKey(***)");
        assert!(!format!("{:?}", IssuedSecret::Subscription(&s)).contains(MARK));
        let returned = Returned { secret: s, expires_at: None, refreshed_at: None };
        assert!(!format!("{returned:?}").contains(MARK));
    }

    // ---- Taking files back --------------------------------------------------

    #[test]
    fn returnable_paths_per_agent() {
        assert_eq!(returnable_paths(Agent::ClaudeCode, Provider::Anthropic), [CLAUDE_CREDENTIALS_PATH]);
        assert_eq!(returnable_paths(Agent::Codex, Provider::Openai), [CODEX_AUTH_PATH]);
        assert_eq!(returnable_paths(Agent::Opencode, Provider::Openai), [OPENCODE_AUTH_PATH]);
        assert_eq!(returnable_paths(Agent::Opencode, Provider::Anthropic), [OPENCODE_AUTH_PATH]);
        assert!(returnable_paths(Agent::Copilot, Provider::Github).is_empty());
        assert!(returnable_paths(Agent::Gemini, Provider::Google).is_empty());
        assert!(returnable_paths(Agent::Codex, Provider::Anthropic).is_empty());
    }

    /// Materialises `s`, hands the login file back and parses it.
    fn round_trip(
        agent: Agent,
        provider: Provider,
        s: &SubscriptionSecret,
        expires: Option<DateTime<Utc>>,
    ) -> Returned {
        let m = materialize(agent, provider, IssuedSecret::Subscription(s), expires, now());
        let [path] = returnable_paths(agent, provider) else { panic!("one returnable path") };
        let file = m.file(path).expect("the returnable file is materialised");
        parse_returned(agent, provider, path, file.content.expose()).expect("own file parses back")
    }

    fn assert_same_tokens(a: &SubscriptionSecret, b: &SubscriptionSecret) {
        assert_eq!(a.access_token, b.access_token);
        assert_eq!(a.refresh_token, b.refresh_token);
        assert_eq!(a.id_token, b.id_token);
    }

    #[test]
    fn claude_round_trip() {
        let s = with_refresh(sub(&claude_token()), &claude_refresh());
        let expires = now() + Duration::hours(6);
        let back = round_trip(Agent::ClaudeCode, Provider::Anthropic, &s, Some(expires));
        assert_same_tokens(&back.secret, &s);
        assert_eq!(back.secret.scopes, ["user:inference"]);
        assert_eq!(back.expires_at, Some(expires));
        assert_eq!(back.refreshed_at, None);

        let s = sub(&claude_token());
        let back = round_trip(Agent::ClaudeCode, Provider::Anthropic, &s, None);
        assert_same_tokens(&back.secret, &s);
        assert_eq!(back.expires_at, Some(now() + Duration::days(365)));
    }

    #[test]
    fn codex_round_trips() {
        let exp = now() + Duration::days(10);
        let access = access_jwt(exp, Some(ACCOUNT));

        // Real id_token kept, account and last_refresh carried.
        let mut s = with_refresh(sub(&access), &openai_refresh());
        s.id_token = Some(Secret::new(id_jwt()));
        s.last_refresh = Some(now() - Duration::days(1));
        let back = round_trip(Agent::Codex, Provider::Openai, &s, None);
        assert_same_tokens(&back.secret, &s);
        assert_eq!(back.secret.account_id.as_deref(), Some(ACCOUNT));
        assert_eq!(back.refreshed_at, s.last_refresh);
        assert_eq!(back.secret.last_refresh, s.last_refresh);
        assert_eq!(back.expires_at, Some(exp));

        // The access token standing in as id_token is not stored as one.
        let s = sub(&access);
        let back = round_trip(Agent::Codex, Provider::Openai, &s, None);
        assert_same_tokens(&back.secret, &s);
        assert_eq!(back.refreshed_at, Some(now()));

        // Nor is the unsigned stand-in.
        let s = with_refresh(sub(&format!("opaque-{MARK}-token")), &openai_refresh());
        let back = round_trip(Agent::Codex, Provider::Openai, &s, Some(exp));
        assert_same_tokens(&back.secret, &s);
        assert_eq!(back.expires_at, None);
    }

    #[test]
    fn opencode_round_trips() {
        let exp = now() + Duration::days(10);
        let s = with_refresh(sub(&access_jwt(exp, Some(ACCOUNT))), &openai_refresh());
        let back = round_trip(Agent::Opencode, Provider::Openai, &s, None);
        assert_same_tokens(&back.secret, &s);
        assert_eq!(back.secret.account_id.as_deref(), Some(ACCOUNT));
        assert_eq!(back.expires_at, Some(exp));

        let s = sub(&claude_token());
        let back = round_trip(Agent::Opencode, Provider::Anthropic, &s, None);
        assert_same_tokens(&back.secret, &s);
        assert_eq!(back.expires_at, None);
    }

    #[test]
    fn codex_refreshed_file_is_read_whole() {
        let new_access = access_jwt(now() + Duration::days(10), Some(ACCOUNT));
        let content = json!({
            "auth_mode": "chatgpt",
            "OPENAI_API_KEY": null,
            "tokens": {
                "id_token": id_jwt(),
                "access_token": new_access,
                "refresh_token": openai_refresh(),
                "account_id": ACCOUNT,
            },
            "last_refresh": "2025-06-01T13:14:15.123456Z",
            "some_future_field": { "x": 1 },
        })
        .to_string();
        let back = parse_returned(Agent::Codex, Provider::Openai, CODEX_AUTH_PATH, &content).unwrap();
        assert_eq!(back.secret.access_token.expose(), new_access);
        assert_eq!(back.secret.id_token.as_ref().unwrap().expose(), id_jwt());
        assert_eq!(back.secret.refresh_token.as_ref().unwrap().expose(), openai_refresh());
        assert_eq!(back.refreshed_at.unwrap().to_rfc3339(), "2025-06-01T13:14:15.123456+00:00");
    }

    #[test]
    fn opencode_reads_only_its_providers_entry() {
        let content = json!({
            "github-copilot": { "type": "wellknown", "token": 42, "expires": "not a number" },
            "anthropic": { "type": "api", "key": api_key() },
            "openai": { "type": "oauth", "refresh": openai_refresh(), "access": claude_token(), "expires": 1.7e12 },
        })
        .to_string();
        let back = parse_returned(Agent::Opencode, Provider::Openai, OPENCODE_AUTH_PATH, &content).unwrap();
        assert_eq!(back.secret.access_token.expose(), claude_token());
        assert_eq!(back.expires_at, DateTime::from_timestamp_millis(1_700_000_000_000));

        let msg = refused(parse_returned(Agent::Opencode, Provider::Anthropic, OPENCODE_AUTH_PATH, &content));
        assert!(msg.contains("API key") && msg.contains(OPENCODE_AUTH_PATH), "{msg}");
    }

    #[test]
    fn merged_keeps_what_the_file_lacks() {
        let mut stored = with_refresh(sub("old-access-token-value"), &openai_refresh());
        stored.id_token = Some(Secret::new(id_jwt()));
        stored.account_id = Some(ACCOUNT.into());
        stored.scopes = vec!["openid".into()];
        let returned = Returned { secret: sub(&claude_token()), expires_at: None, refreshed_at: None };
        let merged = returned.merged_with(&stored);
        assert_eq!(merged.access_token.expose(), claude_token());
        assert_eq!(merged.refresh_token, stored.refresh_token);
        assert_eq!(merged.id_token, stored.id_token);
        assert_eq!(merged.account_id, stored.account_id);
        assert_eq!(merged.scopes, stored.scopes);
    }

    #[test]
    fn refusals_name_the_file_and_leak_nothing() {
        let access = access_jwt(now() + Duration::days(1), None);
        let (c, o) = (Agent::Codex, Provider::Openai);

        let msg = refused(parse_returned(c, o, CLAUDE_CREDENTIALS_PATH, "{}"));
        assert!(msg.contains(CODEX_AUTH_PATH) && msg.contains(CLAUDE_CREDENTIALS_PATH), "{msg}");
        let msg = refused(parse_returned(Agent::ClaudeCode, Provider::Anthropic, CLAUDE_STATE_PATH, "{}"));
        assert!(msg.contains("only .claude/.credentials.json"), "{msg}");
        let msg = refused(parse_returned(Agent::Copilot, Provider::Github, CODEX_AUTH_PATH, "{}"));
        assert!(msg.contains("no login file"), "{msg}");

        let broken = format!(r#"{{"tokens":{{"access_token":"{access}""#);
        let msg = refused(parse_returned(c, o, CODEX_AUTH_PATH, &broken));
        assert!(msg.contains("not valid JSON") && msg.contains("line 1 column"), "{msg}");

        // A wrong type must not quote the value, as serde_json's message would.
        let wrong_type = json!({ "tokens": { "access_token": access, "account_id": 7 }, "x": MARK }).to_string();
        let msg = refused(parse_returned(c, o, CODEX_AUTH_PATH, &wrong_type));
        assert!(msg.contains("expected shape") && msg.contains(CODEX_AUTH_PATH), "{msg}");
        let msg = refused(parse_returned(c, o, CODEX_AUTH_PATH, &json!(MARK).to_string()));
        assert!(msg.contains("expected shape"), "{msg}");

        let huge = format!(r#"{{"pad":"{}{MARK}"}}"#, "x".repeat(MAX_RETURNED_BYTES));
        let msg = refused(parse_returned(c, o, CODEX_AUTH_PATH, &huge));
        assert!(msg.contains("64 KiB"), "{msg}");

        let no_access = json!({ "tokens": { "id_token": id_jwt(), "refresh_token": openai_refresh() } }).to_string();
        let msg = refused(parse_returned(c, o, CODEX_AUTH_PATH, &no_access));
        assert!(msg.contains("tokens.access_token") && msg.contains(CODEX_AUTH_PATH), "{msg}");
        let blank_access = json!({ "tokens": { "access_token": "  ", "refresh_token": openai_refresh() } }).to_string();
        let msg = refused(parse_returned(c, o, CODEX_AUTH_PATH, &blank_access));
        assert!(msg.contains("tokens.access_token"), "{msg}");

        let bad_id = json!({ "tokens": { "access_token": access, "id_token": format!("x{MARK}") } }).to_string();
        let msg = refused(parse_returned(c, o, CODEX_AUTH_PATH, &bad_id));
        assert!(msg.contains("not a JWT"), "{msg}");

        let spaced = json!({ "tokens": { "access_token": format!("ab {MARK} cd") } }).to_string();
        let msg = refused(parse_returned(c, o, CODEX_AUTH_PATH, &spaced));
        assert!(msg.contains("spaces"), "{msg}");

        let api = json!({ "auth_mode": "apikey", "OPENAI_API_KEY": api_key() }).to_string();
        let msg = refused(parse_returned(c, o, CODEX_AUTH_PATH, &api));
        assert!(msg.contains("API key"), "{msg}");
        let msg = refused(parse_returned(c, o, CODEX_AUTH_PATH, r#"{"OPENAI_API_KEY":null}"#));
        assert!(msg.contains("no tokens"), "{msg}");

        let bad_date = json!({ "tokens": { "access_token": access }, "last_refresh": "yesterday" }).to_string();
        let msg = refused(parse_returned(c, o, CODEX_AUTH_PATH, &bad_date));
        assert!(msg.contains("last_refresh"), "{msg}");

        let msg = refused(parse_returned(Agent::ClaudeCode, Provider::Anthropic, CLAUDE_CREDENTIALS_PATH, "{}"));
        assert!(msg.contains("claudeAiOauth") && msg.contains(CLAUDE_CREDENTIALS_PATH), "{msg}");
        let no_claude_access = json!({ "claudeAiOauth": { "refreshToken": claude_refresh() } }).to_string();
        let msg =
            refused(parse_returned(Agent::ClaudeCode, Provider::Anthropic, CLAUDE_CREDENTIALS_PATH, &no_claude_access));
        assert!(msg.contains("claudeAiOauth.accessToken"), "{msg}");

        let (oc, path) = (Agent::Opencode, OPENCODE_AUTH_PATH);
        let msg = refused(parse_returned(oc, o, path, &json!({ "anthropic": { "type": "oauth" } }).to_string()));
        assert!(msg.contains("no \"openai\" entry"), "{msg}");
        let msg = refused(parse_returned(oc, o, path, &json!({ "openai": { "type": "oauth" } }).to_string()));
        assert!(msg.contains("openai.access"), "{msg}");
        let msg = refused(parse_returned(oc, o, path, &json!({ "openai": { "type": MARK } }).to_string()));
        assert!(msg.contains("oauth"), "{msg}");
        let msg = refused(parse_returned(oc, o, path, &format!("{{}} {MARK}")));
        assert!(msg.contains("not valid JSON"), "{msg}");
    }
}
