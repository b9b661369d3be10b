//! Parse, don't validate: everything a person types as a credential becomes a
//! typed value here, or an [`InputError`] telling them exactly what to fix.
//!
//! Ground rule: no error message, `Debug` output or panic ever contains the
//! value that was typed (or any part of it). Messages only name the field,
//! the expected shape and what the value *looks like* (e.g. "a GitHub token").

use std::fmt;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::domain::{Agent, Provider};

/// Longest token we accept. Real tokens are far shorter (a Codex JWT is ~2 KB);
/// the cap keeps junk (a pasted log file) out of the store.
pub const MAX_INPUT_BYTES: usize = 8192;
/// Longest `authJson` we accept: it holds two JWTs and a refresh token, so it
/// gets more room than a single token.
pub const MAX_AUTH_JSON_BYTES: usize = 32 * 1024;
/// Shortest token of any kind we accept; anything shorter is a partial copy.
pub const MIN_TOKEN_CHARS: usize = 20;

pub const ANTHROPIC_API_KEY_PREFIX: &str = "sk-ant-api03-";
/// What `claude setup-token` prints (and Anthropic OAuth access tokens).
pub const CLAUDE_SETUP_TOKEN_PREFIX: &str = "sk-ant-oat01-";
pub const CLAUDE_REFRESH_TOKEN_PREFIX: &str = "sk-ant-ort01-";
pub const OPENAI_API_KEY_PREFIX: &str = "sk-";
pub const GOOGLE_API_KEY_PREFIX: &str = "AIza";
/// AI Studio keys are `AIza` + 35 characters of `[0-9A-Za-z_-]`.
pub const GOOGLE_API_KEY_LEN: usize = 39;
/// Token kinds the Copilot CLI accepts: fine-grained PAT, OAuth, GitHub App user.
pub const GITHUB_ACCEPTED_PREFIXES: &[&str] = &["github_pat_", "gho_", "ghu_"];
/// Classic personal access tokens, which Copilot refuses.
pub const GITHUB_CLASSIC_PREFIX: &str = "ghp_";

/// Lifetime of a token printed by `claude setup-token`.
const CLAUDE_SETUP_TOKEN_DAYS: i64 = 365;
/// Claude OAuth access tokens last hours (reports: 6–8); assume the least.
const CLAUDE_OAUTH_ASSUMED_HOURS: i64 = 1;
/// The only scope a `claude setup-token` token carries.
const CLAUDE_SCOPE: &str = "user:inference";
/// Where ChatGPT tokens keep their claims, including the account id.
const OPENAI_AUTH_CLAIM: &str = "https://api.openai.com/auth";

const GHP_REFUSAL: &str = "Classic GitHub tokens (ghp_…) are not accepted by Copilot: create a \
     fine-grained personal access token with the Copilot permission (it starts with github_pat_) \
     and paste that instead.";
const WHITESPACE_REFUSAL: &str = "the token contains spaces or line breaks; copy it again without them";
const GEMINI_REFUSAL: &str = "Gemini is API key only: Gemini CLI doesn't support \
     subscription-based authentication headlessly, and Google One AI Premium requires \
     browser-based authentication that can't be automated. Create or copy a Gemini API key in \
     Google AI Studio and add it in Settings → API Keys.";

/// Why a typed credential was refused, in words a person can act on.
/// Never contains the typed value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

impl InputError {
    pub fn new(message: impl Into<String>) -> Self {
        InputError(message.into())
    }
}

type Result<T> = std::result::Result<T, InputError>;

// ---------------------------------------------------------------------------
// Secret
// ---------------------------------------------------------------------------

/// A secret string: zeroized on drop, `Debug` prints `***`, serialised as a
/// plain string (only ever into the encrypted store or a materialised file).
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The plaintext. Callers must not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

// ---------------------------------------------------------------------------
// API keys
// ---------------------------------------------------------------------------

/// A provider API key whose shape has been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    provider: Provider,
    key: Secret,
}

impl ApiKey {
    /// Parses a key typed into Settings → API Keys (or `setApiKey`).
    pub fn parse(provider: Provider, raw: &str) -> Result<Self> {
        let key = clean(raw, "key", MAX_INPUT_BYTES)?;
        match provider {
            Provider::Anthropic => check_anthropic_api_key(key)?,
            Provider::Openai => check_openai_api_key(key)?,
            Provider::Google => check_google_api_key(key)?,
            Provider::Github => check_github_token(key, "key")?,
        }
        Ok(ApiKey { provider, key: Secret::new(key.to_owned()) })
    }

    pub fn provider(&self) -> Provider {
        self.provider
    }

    pub fn secret(&self) -> &Secret {
        &self.key
    }

    pub fn into_secret(self) -> Secret {
        self.key
    }
}

fn check_anthropic_api_key(key: &str) -> Result<()> {
    if key.starts_with(CLAUDE_SETUP_TOKEN_PREFIX) {
        return Err(InputError::new(
            "That is a Claude subscription token (sk-ant-oat01-…), not an API key: add it under \
             Agent Credentials → Claude Code, not in the API Keys tab.",
        ));
    }
    if !key.starts_with(ANTHROPIC_API_KEY_PREFIX) {
        return Err(wrong_prefix("An Anthropic API key", &[ANTHROPIC_API_KEY_PREFIX], key));
    }
    check_token_body(key, "key", "Anthropic API key")
}

fn check_openai_api_key(key: &str) -> Result<()> {
    if key.starts_with("sk-ant-") {
        return Err(InputError::new(
            "That is an Anthropic key (sk-ant-…), not an OpenAI key: add it with provider \
             ANTHROPIC instead.",
        ));
    }
    if !key.starts_with(OPENAI_API_KEY_PREFIX) {
        return Err(wrong_prefix("An OpenAI API key", &[OPENAI_API_KEY_PREFIX], key));
    }
    check_token_body(key, "key", "OpenAI API key")
}

fn check_google_api_key(key: &str) -> Result<()> {
    if !key.starts_with(GOOGLE_API_KEY_PREFIX) {
        return Err(wrong_prefix("A Gemini API key", &[GOOGLE_API_KEY_PREFIX], key));
    }
    let len = key.len();
    if len != GOOGLE_API_KEY_LEN {
        // Saying "shorter"/"longer" helps spot a clipped copy without
        // revealing anything about the key itself.
        let which = if len < GOOGLE_API_KEY_LEN { "shorter" } else { "longer" };
        return Err(InputError::new(format!(
            "A Gemini API key is {GOOGLE_API_KEY_LEN} characters long (AIza followed by 35 \
             letters, digits, '-' or '_'); this one is {which}. Copy it again from Google AI \
             Studio."
        )));
    }
    if !key.bytes().all(is_token_byte) {
        return Err(InputError::new(
            "A Gemini API key contains only letters, digits, '-' and '_'; copy it again from \
             Google AI Studio.",
        ));
    }
    Ok(())
}

/// Copilot accepts fine-grained PATs, OAuth and GitHub App user tokens only.
fn check_github_token(token: &str, field: &str) -> Result<()> {
    if token.starts_with(GITHUB_CLASSIC_PREFIX) {
        return Err(InputError::new(GHP_REFUSAL));
    }
    if !GITHUB_ACCEPTED_PREFIXES.iter().any(|p| token.starts_with(p)) {
        return Err(wrong_prefix(
            "A Copilot token (a fine-grained personal access token, or a GitHub OAuth or app \
             user token)",
            GITHUB_ACCEPTED_PREFIXES,
            token,
        ));
    }
    check_token_body(token, field, "GitHub token")
}

// ---------------------------------------------------------------------------
// Subscription credentials
// ---------------------------------------------------------------------------

/// The secret part of a subscription credential, serialised as JSON and
/// encrypted by the store.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct SubscriptionSecret {
    pub access_token: Secret,
    #[serde(default)]
    pub refresh_token: Option<Secret>,
    /// Codex's `id_token` (a JWT); Codex refuses an auth.json without one.
    #[serde(default)]
    pub id_token: Option<Secret>,
    #[serde(default)]
    pub account_id: Option<String>,
    #[serde(default)]
    #[zeroize(skip)]
    pub last_refresh: Option<DateTime<Utc>>,
    #[serde(default)]
    pub scopes: Vec<String>,
}

impl fmt::Debug for SubscriptionSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Tokens print as *** via Secret; the account id is redacted too, as
        // it identifies the person's ChatGPT account.
        f.debug_struct("SubscriptionSecret")
            .field("access_token", &self.access_token)
            .field("refresh_token", &self.refresh_token)
            .field("id_token", &self.id_token)
            .field("account_id", &self.account_id.as_ref().map(|_| Redacted))
            .field("last_refresh", &self.last_refresh)
            .field("scopes", &self.scopes)
            .finish()
    }
}

struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

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
pub fn parse_subscription(input: SubscriptionInput<'_>, now: DateTime<Utc>) -> Result<ParsedSubscription> {
    let agent = input.agent;
    if agent == Agent::Gemini {
        return Err(InputError::new(GEMINI_REFUSAL));
    }
    let provider = resolve_provider(agent, input.provider)?;
    if let Some(at) = input.expires_at {
        if at <= now {
            return Err(InputError::new("expiresAt is in the past; the token has already expired — create a new one."));
        }
    }
    // Forms send "" for fields left blank; treat those as not given.
    let fields = Fields {
        token: given(input.token),
        access_token: given(input.access_token),
        refresh_token: given(input.refresh_token),
        auth_json: given(input.auth_json),
    };
    let (secret, expires_at) = match provider {
        Provider::Anthropic => parse_anthropic(agent, &fields, input.expires_at, now)?,
        Provider::Openai => parse_openai(agent, &fields, input.expires_at, now)?,
        Provider::Github => parse_github(agent, &fields, input.expires_at)?,
        // Only Gemini uses Google, and it was refused above.
        Provider::Google => return Err(InputError::new(GEMINI_REFUSAL)),
    };
    Ok(ParsedSubscription { provider, secret, expires_at })
}

/// The non-blank text fields of a [`SubscriptionInput`].
struct Fields<'a> {
    token: Option<&'a str>,
    access_token: Option<&'a str>,
    refresh_token: Option<&'a str>,
    auth_json: Option<&'a str>,
}

impl<'a> Fields<'a> {
    /// `token` and `accessToken` are two names for the pasted token; people
    /// use whichever the dialog showed, but must not fill in both.
    fn pasted_token(&self) -> Result<Option<(&'a str, &'static str)>> {
        match (self.token, self.access_token) {
            (Some(_), Some(_)) => Err(InputError::new("Give the token once, in token or in accessToken, not both.")),
            (Some(t), None) => Ok(Some((t, "token"))),
            (None, Some(t)) => Ok(Some((t, "accessToken"))),
            (None, None) => Ok(None),
        }
    }
}

fn given(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.trim().is_empty())
}

fn resolve_provider(agent: Agent, provider: Option<Provider>) -> Result<Provider> {
    let valid = agent.providers();
    let names = valid.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(" or ");
    match provider.or(agent.default_provider()) {
        Some(p) if valid.contains(&p) => Ok(p),
        Some(p) => Err(InputError::new(format!(
            "{} does not work with provider {}; valid: {names}.",
            agent.display_name(),
            p.as_str()
        ))),
        None => Err(InputError::new(format!("{} needs a provider: {names}.", agent.display_name()))),
    }
}

/// Claude Code, and OpenCode with Anthropic: a `claude setup-token` token.
fn parse_anthropic(
    agent: Agent,
    fields: &Fields<'_>,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(SubscriptionSecret, Option<DateTime<Utc>>)> {
    if fields.auth_json.is_some() {
        return Err(InputError::new(format!(
            "authJson is only for Codex's ~/.codex/auth.json; for {} paste the token `claude \
             setup-token` printed (starts with sk-ant-oat01-) into token.",
            agent.display_name()
        )));
    }
    let Some((raw, field)) = fields.pasted_token()? else {
        return Err(InputError::new(
            "token is missing: run `claude setup-token` and paste the token it prints (starts \
             with sk-ant-oat01-).",
        ));
    };
    let token = clean(raw, field, MAX_INPUT_BYTES)?;
    if token.starts_with(ANTHROPIC_API_KEY_PREFIX) {
        return Err(InputError::new(format!(
            "{field}: that is an Anthropic API key; add it under Settings → API Keys, or paste \
             the token `claude setup-token` printed (starts with sk-ant-oat01-)."
        )));
    }
    if token.starts_with(CLAUDE_REFRESH_TOKEN_PREFIX) {
        return Err(InputError::new(format!(
            "{field}: that is a refresh token (sk-ant-ort01-…); put it in refreshToken and paste \
             the access token (starts with sk-ant-oat01-) here."
        )));
    }
    if !token.starts_with(CLAUDE_SETUP_TOKEN_PREFIX) {
        return Err(wrong_prefix(
            &format!("{field}: a Claude subscription token (run `claude setup-token`)"),
            &[CLAUDE_SETUP_TOKEN_PREFIX],
            token,
        ));
    }
    check_token_body(token, field, "Claude subscription token")?;

    let refresh = match fields.refresh_token {
        Some(raw) => {
            let refresh = clean(raw, "refreshToken", MAX_INPUT_BYTES)?;
            if !refresh.starts_with(CLAUDE_REFRESH_TOKEN_PREFIX) {
                return Err(wrong_prefix(
                    "refreshToken: a Claude refresh token",
                    &[CLAUDE_REFRESH_TOKEN_PREFIX],
                    refresh,
                ));
            }
            check_token_body(refresh, "refreshToken", "Claude refresh token")?;
            Some(Secret::new(refresh.to_owned()))
        }
        None => None,
    };

    // A pasted setup-token lasts a year. With a refresh token it came from an
    // OAuth login whose access token lasts hours, exactly how long unknown to
    // us: assume the shortest, an hour, so the refresher renews it in time
    // (and learns the real expiry from the provider).
    let expires_at = match (expires_at, &refresh) {
        (Some(at), _) => Some(at),
        (None, None) => Some(now + Duration::days(CLAUDE_SETUP_TOKEN_DAYS)),
        (None, Some(_)) => Some(now + Duration::hours(CLAUDE_OAUTH_ASSUMED_HOURS)),
    };
    let secret = SubscriptionSecret {
        access_token: Secret::new(token.to_owned()),
        refresh_token: refresh,
        id_token: None,
        account_id: None,
        last_refresh: None,
        scopes: vec![CLAUDE_SCOPE.to_owned()],
    };
    Ok((secret, expires_at))
}

/// Codex, and OpenCode with OpenAI: a pasted ~/.codex/auth.json, or an access
/// token with an optional refresh token.
fn parse_openai(
    agent: Agent,
    fields: &Fields<'_>,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(SubscriptionSecret, Option<DateTime<Utc>>)> {
    let pasted = fields.pasted_token()?;
    let mut secret = match (fields.auth_json, pasted) {
        (Some(_), Some((_, field))) => {
            return Err(InputError::new(format!(
                "Give either authJson (the whole ~/.codex/auth.json) or {field}, not both."
            )))
        }
        (Some(raw), None) => {
            if fields.refresh_token.is_some() {
                return Err(InputError::new(
                    "refreshToken goes with accessToken; authJson already carries its refresh \
                     token, so leave refreshToken empty.",
                ));
            }
            parse_codex_auth_json(raw)?
        }
        (None, Some((raw, field))) => openai_tokens(raw, field, fields.refresh_token)?,
        (None, None) => {
            return Err(InputError::new(format!(
                "{} needs the ChatGPT login: paste the contents of ~/.codex/auth.json into \
                 authJson, or give accessToken (and optionally refreshToken).",
                agent.display_name()
            )))
        }
    };

    // ChatGPT tokens carry the account id; fill it in when auth.json did not.
    if secret.account_id.is_none() {
        secret.account_id = openai_account_id(secret.access_token.expose())
            .or_else(|| secret.id_token.as_ref().and_then(|t| openai_account_id(t.expose())));
    }

    let expires_at = match expires_at {
        Some(at) => Some(at),
        None => {
            let exp = jwt_expiry(secret.access_token.expose());
            // An expired access token is fine while a refresh token can renew it.
            if exp.is_some_and(|exp| exp <= now) && secret.refresh_token.is_none() {
                return Err(InputError::new(
                    "The access token has already expired and there is no refresh token to \
                     renew it; sign in again (codex login --device-auth) and copy the new \
                     tokens.",
                ));
            }
            exp
        }
    };
    Ok((secret, expires_at))
}

/// An OpenAI access token typed on its own, with an optional refresh token.
fn openai_tokens(raw: &str, field: &str, refresh: Option<&str>) -> Result<SubscriptionSecret> {
    let access = check_openai_access_token(raw, field)?;
    let refresh = match refresh {
        Some(raw) => Some(check_opaque_token(raw, "refreshToken")?),
        None => None,
    };
    Ok(SubscriptionSecret {
        access_token: Secret::new(access.to_owned()),
        refresh_token: refresh.map(|r| Secret::new(r.to_owned())),
        id_token: None,
        account_id: None,
        last_refresh: None,
        scopes: Vec::new(),
    })
}

fn check_openai_access_token<'a>(raw: &'a str, field: &str) -> Result<&'a str> {
    let token = clean(raw, field, MAX_INPUT_BYTES)?;
    if token.starts_with(OPENAI_API_KEY_PREFIX) {
        return Err(InputError::new(format!(
            "{field}: that is an API key, not a ChatGPT access token; add it under Settings → \
             API Keys, or paste the access token from ~/.codex/auth.json."
        )));
    }
    if token.len() < MIN_TOKEN_CHARS {
        return Err(too_short(field, "ChatGPT access token"));
    }
    // ChatGPT access tokens are JWTs; one that starts like a JWT but does not
    // decode was clipped while copying.
    if token.starts_with("eyJ") && !is_jwt(token) {
        return Err(InputError::new(format!(
            "{field} looks like a JWT but is incomplete; copy the whole access token again."
        )));
    }
    Ok(token)
}

/// Refresh tokens have no fixed shape: only the generic checks apply.
fn check_opaque_token<'a>(raw: &'a str, field: &str) -> Result<&'a str> {
    let token = clean(raw, field, MAX_INPUT_BYTES)?;
    if token.len() < MIN_TOKEN_CHARS {
        return Err(too_short(field, "refresh token"));
    }
    Ok(token)
}

/// The shape of ~/.codex/auth.json. Unknown fields are ignored so newer Codex
/// versions still parse.
#[derive(Deserialize)]
struct CodexAuthFile {
    #[serde(default)]
    auth_mode: Option<String>,
    #[serde(default, rename = "OPENAI_API_KEY")]
    openai_api_key: Option<Secret>,
    #[serde(default)]
    tokens: Option<CodexTokens>,
    #[serde(default)]
    last_refresh: Option<String>,
}

#[derive(Deserialize)]
struct CodexTokens {
    #[serde(default)]
    id_token: Option<Secret>,
    #[serde(default)]
    access_token: Option<Secret>,
    #[serde(default)]
    refresh_token: Option<Secret>,
    #[serde(default)]
    account_id: Option<String>,
}

fn parse_codex_auth_json(raw: &str) -> Result<SubscriptionSecret> {
    let text = raw.trim();
    if text.len() > MAX_AUTH_JSON_BYTES {
        return Err(InputError::new(format!(
            "authJson is longer than {MAX_AUTH_JSON_BYTES} bytes; paste only the contents of \
             ~/.codex/auth.json."
        )));
    }
    let file: CodexAuthFile = serde_json::from_str(text).map_err(auth_json_error)?;

    let has_access =
        file.tokens.as_ref().and_then(|t| t.access_token.as_ref()).is_some_and(|t| !t.expose().trim().is_empty());
    let api_key_mode = file.auth_mode.as_deref().is_some_and(|m| m.eq_ignore_ascii_case("apikey"));
    let has_api_key = file.openai_api_key.as_ref().is_some_and(|k| !k.expose().trim().is_empty());
    if api_key_mode || (has_api_key && !has_access) {
        return Err(InputError::new(
            "This auth.json holds an OpenAI API key, not a ChatGPT login: add the key under \
             Settings → API Keys, or run `codex login --device-auth` and paste the new auth.json.",
        ));
    }

    let Some(tokens) = file.tokens.as_ref() else {
        return Err(InputError::new(
            "authJson has no tokens; run `codex login --device-auth` and copy ~/.codex/auth.json \
             again.",
        ));
    };
    let Some(access) = tokens.access_token.as_ref().filter(|_| has_access) else {
        return Err(InputError::new(
            "authJson has no tokens.access_token; run `codex login --device-auth` and copy \
             ~/.codex/auth.json again.",
        ));
    };
    let access = check_openai_access_token(access.expose(), "tokens.access_token in authJson")?;

    let refresh = match given(tokens.refresh_token.as_ref().map(Secret::expose)) {
        Some(raw) => Some(check_opaque_token(raw, "tokens.refresh_token in authJson")?),
        None => None,
    };

    let id_token = match given(tokens.id_token.as_ref().map(Secret::expose)) {
        Some(raw) => {
            let id = raw.trim();
            if !is_jwt(id) {
                return Err(InputError::new(
                    "tokens.id_token is not a JWT; Codex refuses such a file — copy auth.json \
                     again.",
                ));
            }
            Some(id)
        }
        None => None,
    };

    let last_refresh = match file.last_refresh.as_deref().map(str::trim) {
        Some(s) if !s.is_empty() => Some(
            DateTime::parse_from_rfc3339(s)
                .map_err(|_| {
                    InputError::new(
                        "last_refresh in authJson is not an RFC 3339 date-time (such as \
                         2025-01-31T12:00:00Z); copy auth.json again.",
                    )
                })?
                .with_timezone(&Utc),
        ),
        _ => None,
    };

    let account_id = tokens.account_id.as_deref().map(str::trim).filter(|a| !a.is_empty()).map(str::to_owned);

    Ok(SubscriptionSecret {
        access_token: Secret::new(access.to_owned()),
        refresh_token: refresh.map(|r| Secret::new(r.to_owned())),
        id_token: id_token.map(|t| Secret::new(t.to_owned())),
        account_id,
        last_refresh,
        scopes: Vec::new(),
    })
}

/// Syntax errors only say where the JSON broke, so their text is safe to
/// show. Shape errors ("invalid type: string \"…\"") may quote the input, so
/// they get our own wording with the position only.
fn auth_json_error(e: serde_json::Error) -> InputError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof => InputError::new(format!("authJson is not valid JSON: {e}")),
        Category::Data | Category::Io => InputError::new(format!(
            "authJson does not look like ~/.codex/auth.json (unexpected value at line {} column \
             {}); copy the file's contents again.",
            e.line(),
            e.column()
        )),
    }
}

/// Copilot: a fine-grained PAT, OAuth or GitHub App user token.
fn parse_github(
    agent: Agent,
    fields: &Fields<'_>,
    expires_at: Option<DateTime<Utc>>,
) -> Result<(SubscriptionSecret, Option<DateTime<Utc>>)> {
    if fields.auth_json.is_some() {
        return Err(InputError::new(format!(
            "authJson is only for Codex's ~/.codex/auth.json; for {} paste a fine-grained GitHub \
             token (starts with github_pat_) into token.",
            agent.display_name()
        )));
    }
    if fields.refresh_token.is_some() {
        return Err(InputError::new(format!(
            "{} uses the token as it is; leave refreshToken empty.",
            agent.display_name()
        )));
    }
    let Some((raw, field)) = fields.pasted_token()? else {
        return Err(InputError::new(
            "token is missing: create a fine-grained GitHub token with the Copilot permission \
             and paste it (starts with github_pat_).",
        ));
    };
    let token = clean(raw, field, MAX_INPUT_BYTES)?;
    check_github_token(token, field)?;
    let secret = SubscriptionSecret {
        access_token: Secret::new(token.to_owned()),
        refresh_token: None,
        id_token: None,
        account_id: None,
        last_refresh: None,
        scopes: Vec::new(),
    };
    Ok((secret, expires_at))
}

// ---------------------------------------------------------------------------
// Shared checks
// ---------------------------------------------------------------------------

/// Trims the value and refuses what no token can be: empty, oversized, JSON,
/// containing whitespace, control or non-ASCII characters.
fn clean<'a>(raw: &'a str, field: &str, max_bytes: usize) -> Result<&'a str> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(InputError::new(format!("{field} is empty; paste the value.")));
    }
    if value.len() > max_bytes {
        return Err(InputError::new(format!(
            "{field} is longer than {max_bytes} bytes, more than any token; paste only the token."
        )));
    }
    if value.starts_with('{') {
        return Err(InputError::new(format!(
            "{field} looks like JSON; paste only the token (for Codex, the whole ~/.codex/auth.json \
             goes into authJson)."
        )));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(InputError::new(format!("{field}: {WHITESPACE_REFUSAL}.")));
    }
    if !value.is_ascii() {
        return Err(InputError::new(format!(
            "{field} contains characters no token has (such as … or curly quotes); copy the whole \
             token again from where it was shown."
        )));
    }
    Ok(value)
}

/// Prefixed keys and tokens use `[A-Za-z0-9_-]` only; anything else is a
/// quote, `=` or the like copied along with it. Also refuses clipped copies.
fn check_token_body(token: &str, field: &str, what: &str) -> Result<()> {
    if !token.bytes().all(is_token_byte) {
        return Err(InputError::new(format!(
            "{field} contains characters no {what} has (quotes, '=', '.' or similar); paste only \
             the {what} itself."
        )));
    }
    if token.len() < MIN_TOKEN_CHARS {
        return Err(too_short(field, what));
    }
    Ok(())
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn too_short(field: &str, what: &str) -> InputError {
    InputError::new(format!("{field} is too short to be a complete {what}; check you copied all of it."))
}

/// "X starts with P; that looks like Y." — naming what the value resembles
/// (never the value) is the most useful hint when the wrong thing was pasted.
fn wrong_prefix(expected: &str, prefixes: &[&str], value: &str) -> InputError {
    let list = match prefixes {
        [one] => (*one).to_owned(),
        many => many.join(", "),
    };
    let starts = if prefixes.len() == 1 { "starts with" } else { "starts with one of" };
    let mut msg = format!("{expected} {starts} {list}");
    if let Some(kind) = looks_like(value) {
        msg.push_str(&format!("; that looks like {kind}"));
    }
    msg.push('.');
    InputError::new(msg)
}

/// What a value resembles, judged by its prefix alone.
fn looks_like(value: &str) -> Option<&'static str> {
    const KINDS: &[(&str, &str)] = &[
        ("sk-ant-api03-", "an Anthropic API key"),
        ("sk-ant-oat01-", "a Claude subscription token"),
        ("sk-ant-ort01-", "a Claude refresh token"),
        ("sk-ant-", "an Anthropic key"),
        ("sk-", "an OpenAI API key"),
        ("AIza", "a Google API key"),
        ("github_pat_", "a GitHub token"),
        ("gho_", "a GitHub token"),
        ("ghu_", "a GitHub token"),
        ("ghp_", "a classic GitHub token"),
        ("ghs_", "a GitHub app installation token"),
        ("ghr_", "a GitHub refresh token"),
        ("eyJ", "a JWT access token"),
    ];
    KINDS.iter().find(|(prefix, _)| value.starts_with(prefix)).map(|(_, kind)| *kind)
}

// ---------------------------------------------------------------------------
// JWTs and hints
// ---------------------------------------------------------------------------

/// base64url as JWTs use it; padding tolerated because some tools add it.
const JWT_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_encode_padding(false).with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The claims of a JWT: three base64url parts whose middle one decodes to a
/// JSON object. The signature is not checked; we only read what the
/// provider told the token's holder.
fn jwt_claims(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let mut parts = token.trim().split('.');
    let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || header.is_empty() || payload.is_empty() {
        return None;
    }
    JWT_B64.decode(header).ok()?;
    JWT_B64.decode(signature).ok()?;
    let mut bytes = JWT_B64.decode(payload).ok()?;
    let claims = serde_json::from_slice::<serde_json::Value>(&bytes);
    // The payload is part of a secret token.
    bytes.zeroize();
    match claims.ok()? {
        serde_json::Value::Object(map) => Some(map),
        _ => None,
    }
}

fn is_jwt(token: &str) -> bool {
    jwt_claims(token).is_some()
}

/// When a JWT expires, from its `exp` claim (seconds since the epoch); `None`
/// when the token is not a JWT or has no usable `exp`.
pub fn jwt_expiry(token: &str) -> Option<DateTime<Utc>> {
    let claims = jwt_claims(token)?;
    let exp = claims.get("exp")?;
    let secs = exp.as_i64().or_else(|| exp.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))?;
    DateTime::from_timestamp(secs, 0)
}

/// The ChatGPT account id a ChatGPT JWT carries, if any.
fn openai_account_id(token: &str) -> Option<String> {
    let claims = jwt_claims(token)?;
    let id = claims.get(OPENAI_AUTH_CLAIM)?.get("chatgpt_account_id")?.as_str()?.trim();
    (!id.is_empty()).then(|| id.to_owned())
}

/// Prefixes shown in hints, longest first so `sk-ant-` wins over `sk-`.
const HINT_PREFIXES: &[&str] = &["github_pat_", "sk-proj-", "sk-ant-", "gho_", "ghu_", "AIza", "eyJ", "sk-"];
/// Secrets shorter than this show no characters at all.
const HINT_MIN_CHARS: usize = 12;
/// How many characters a hint shows at the end.
const HINT_TAIL: usize = 4;
/// Characters that must stay hidden between the shown prefix and tail; with
/// fewer, the prefix is dropped so a short secret is not mostly revealed.
const HINT_MIN_HIDDEN: usize = 8;

/// A masked preview a person recognises their credential by, e.g.
/// `sk-ant-…9f2c`: a known prefix and the last four characters.
pub fn hint(secret: &str) -> String {
    let secret = secret.trim();
    let len = secret.chars().count();
    if len < HINT_MIN_CHARS {
        return "…".to_owned();
    }
    let tail: String = secret.chars().skip(len - HINT_TAIL).collect();
    let prefix = HINT_PREFIXES
        .iter()
        .find(|p| secret.starts_with(*p))
        .filter(|p| len >= p.len() + HINT_TAIL + HINT_MIN_HIDDEN)
        .copied()
        .unwrap_or("");
    format!("{prefix}…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// A distinctive run of characters placed in every secret below, so tests
    /// can prove it never reaches an error message or Debug output.
    const MARK: &str = "Zq7XsEcReTmArK9";

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap()
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn jwt(claims: serde_json::Value) -> String {
        format!(
            "{}.{}.{}",
            b64(br#"{"alg":"RS256","typ":"JWT"}"#),
            b64(claims.to_string().as_bytes()),
            b64(format!("signature-{MARK}").as_bytes())
        )
    }

    fn anthropic_key() -> String {
        format!("sk-ant-api03-{MARK}abcdefghij-_XYZ0123456789AA")
    }
    fn claude_token() -> String {
        format!("sk-ant-oat01-{MARK}abcdefghij-_XYZ0123456789AA")
    }
    fn claude_refresh() -> String {
        format!("sk-ant-ort01-{MARK}abcdefghij-_XYZ0123456789AA")
    }
    fn openai_key() -> String {
        format!("sk-proj-{MARK}abcdefghij_XYZ0123456789")
    }
    fn google_key() -> String {
        // AIza + 35 characters of [0-9A-Za-z_-].
        let key = format!("AIza{MARK}abcdefghij-_01234567");
        assert_eq!(key.len(), 39);
        key
    }
    fn github_pat() -> String {
        format!("github_pat_11ABCDEFG0{MARK}abcdefghijklmnopqrstuvwxyz0123456789")
    }

    fn input(agent: Agent) -> SubscriptionInput<'static> {
        SubscriptionInput {
            agent,
            provider: None,
            token: None,
            access_token: None,
            refresh_token: None,
            auth_json: None,
            expires_at: None,
        }
    }

    /// Asserts refusal and that the message leaks nothing of the secret.
    fn refused<T: fmt::Debug>(result: Result<T>, secret: &str) -> String {
        let err = result.expect_err("expected a refusal");
        let msg = err.to_string();
        assert!(!msg.contains(MARK), "message leaks the secret: {msg}");
        let secret = secret.trim();
        let chars = secret.chars().count();
        if chars >= 12 {
            assert!(!msg.contains(secret), "message leaks the secret: {msg}");
            // Not even the tail a hint would show.
            let tail: String = secret.chars().skip(chars - 6).collect();
            assert!(!msg.contains(&tail), "message leaks the tail: {msg}");
        }
        assert!(!format!("{err:?}").contains(MARK));
        msg
    }

    // ---- Secret -----------------------------------------------------------

    #[test]
    fn secret_debug_is_redacted_and_serde_is_plain() {
        let s = Secret::new(claude_token());
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(s.expose(), claude_token());
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, format!("\"{}\"", claude_token()));
        let back: Secret = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn secret_zeroize_clears_value() {
        let mut s = Secret::new(claude_token());
        s.zeroize();
        assert_eq!(s.expose(), "");
    }

    // ---- API keys ---------------------------------------------------------

    #[test]
    fn accepts_valid_api_keys_and_trims() {
        let cases = [
            (Provider::Anthropic, anthropic_key()),
            (Provider::Openai, openai_key()),
            (Provider::Openai, format!("sk-{MARK}0123456789abcdef")),
            (Provider::Google, google_key()),
            (Provider::Github, github_pat()),
            (Provider::Github, format!("gho_{MARK}0123456789abcdef")),
            (Provider::Github, format!("ghu_{MARK}0123456789abcdef")),
        ];
        for (provider, key) in cases {
            let parsed = ApiKey::parse(provider, &format!("  {key}\n")).unwrap();
            assert_eq!(parsed.provider(), provider);
            assert_eq!(parsed.secret().expose(), key);
            assert!(!format!("{parsed:?}").contains(MARK));
            assert_eq!(parsed.into_secret().expose(), key);
        }
    }

    #[test]
    fn anthropic_api_key_rules() {
        let token = claude_token();
        let msg = refused(ApiKey::parse(Provider::Anthropic, &token), &token);
        assert!(msg.contains("Claude subscription token"), "{msg}");
        assert!(msg.contains("Agent Credentials → Claude Code"), "{msg}");
        assert!(msg.contains("API Keys"), "{msg}");

        let key = openai_key();
        let msg = refused(ApiKey::parse(Provider::Anthropic, &key), &key);
        assert!(msg.contains("sk-ant-api03-"), "{msg}");
        assert!(msg.contains("OpenAI"), "{msg}");

        let short = "sk-ant-api03-abc";
        let msg = refused(ApiKey::parse(Provider::Anthropic, short), short);
        assert!(msg.contains("too short"), "{msg}");
    }

    #[test]
    fn openai_api_key_rules() {
        let key = anthropic_key();
        let msg = refused(ApiKey::parse(Provider::Openai, &key), &key);
        assert!(msg.contains("Anthropic key"), "{msg}");

        let key = github_pat();
        let msg = refused(ApiKey::parse(Provider::Openai, &key), &key);
        assert!(msg.contains("starts with sk-"), "{msg}");
        assert!(msg.contains("GitHub token"), "{msg}");

        let msg = refused(ApiKey::parse(Provider::Openai, "sk-short"), "sk-short");
        assert!(msg.contains("too short"), "{msg}");
    }

    #[test]
    fn google_api_key_rules() {
        let key = google_key();
        let clipped = &key[..38];
        let msg = refused(ApiKey::parse(Provider::Google, clipped), clipped);
        assert!(msg.contains("39 characters") && msg.contains("shorter"), "{msg}");

        let long = format!("{key}x");
        let msg = refused(ApiKey::parse(Provider::Google, &long), &long);
        assert!(msg.contains("longer"), "{msg}");

        let bad_chars = format!("AIza{MARK}abcdefghij-_0123456=");
        assert_eq!(bad_chars.len(), 39);
        let msg = refused(ApiKey::parse(Provider::Google, &bad_chars), &bad_chars);
        assert!(msg.contains("letters, digits"), "{msg}");

        let wrong = openai_key();
        let msg = refused(ApiKey::parse(Provider::Google, &wrong), &wrong);
        assert!(msg.contains("AIza"), "{msg}");
    }

    #[test]
    fn github_rules_refuse_classic_tokens() {
        let classic = format!("ghp_{MARK}0123456789abcdefghij");
        let msg = refused(ApiKey::parse(Provider::Github, &classic), &classic);
        assert!(msg.contains("Classic GitHub tokens (ghp_…) are not accepted by Copilot"), "{msg}");
        assert!(msg.contains("fine-grained personal access token with the Copilot permission"));

        let other = format!("ghs_{MARK}0123456789abcdefghij");
        let msg = refused(ApiKey::parse(Provider::Github, &other), &other);
        for p in GITHUB_ACCEPTED_PREFIXES {
            assert!(msg.contains(p), "{msg}");
        }
    }

    #[test]
    fn generic_refusals() {
        let msg = refused(ApiKey::parse(Provider::Anthropic, "   \n"), "");
        assert!(msg.contains("empty"), "{msg}");

        let huge = format!("sk-ant-api03-{}", "a".repeat(MAX_INPUT_BYTES));
        let msg = refused(ApiKey::parse(Provider::Anthropic, &huge), &huge);
        assert!(msg.contains("8192"), "{msg}");

        let key = anthropic_key();
        for broken in [
            format!("{}\n{}", &key[..20], &key[20..]),
            format!("{} {}", &key[..20], &key[20..]),
            format!("{}\t{}", &key[..20], &key[20..]),
            format!("{}\u{7}{}", &key[..20], &key[20..]),
        ] {
            let msg = refused(ApiKey::parse(Provider::Anthropic, &broken), &broken);
            assert!(msg.contains("the token contains spaces or line breaks; copy it again without them"), "{msg}");
        }

        let curly = format!("“{key}”");
        let msg = refused(ApiKey::parse(Provider::Anthropic, &curly), &curly);
        assert!(msg.contains("curly quotes"), "{msg}");

        let quoted = format!("{key}\"");
        let msg = refused(ApiKey::parse(Provider::Anthropic, &quoted), &quoted);
        assert!(msg.contains("quotes"), "{msg}");

        let msg = refused(ApiKey::parse(Provider::Openai, r#"{"a":"b"}"#), "");
        assert!(msg.contains("JSON"), "{msg}");
    }

    // ---- Subscriptions: provider choice -----------------------------------

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

    #[test]
    fn provider_must_belong_to_agent() {
        let t = claude_token();
        let msg = refused(
            parse_subscription(
                SubscriptionInput { provider: Some(Provider::Openai), token: Some(&t), ..input(Agent::ClaudeCode) },
                now(),
            ),
            &t,
        );
        assert!(msg.contains("ANTHROPIC"), "{msg}");

        let msg = refused(
            parse_subscription(
                SubscriptionInput { provider: Some(Provider::Github), token: Some(&t), ..input(Agent::Opencode) },
                now(),
            ),
            &t,
        );
        assert!(msg.contains("ANTHROPIC or OPENAI"), "{msg}");

        let msg =
            refused(parse_subscription(SubscriptionInput { token: Some(&t), ..input(Agent::Opencode) }, now()), &t);
        assert_eq!(msg, "OpenCode needs a provider: ANTHROPIC or OPENAI.");
    }

    #[test]
    fn explicit_provider_matching_default_is_fine() {
        let t = claude_token();
        let parsed = parse_subscription(
            SubscriptionInput { provider: Some(Provider::Anthropic), token: Some(&t), ..input(Agent::ClaudeCode) },
            now(),
        )
        .unwrap();
        assert_eq!(parsed.provider, Provider::Anthropic);
    }

    #[test]
    fn past_expiry_is_refused() {
        let t = claude_token();
        for at in [now() - Duration::seconds(1), now()] {
            let msg = refused(
                parse_subscription(
                    SubscriptionInput { token: Some(&t), expires_at: Some(at), ..input(Agent::ClaudeCode) },
                    now(),
                ),
                &t,
            );
            assert!(msg.contains("expiresAt is in the past"), "{msg}");
            assert!(msg.contains("create a new one"), "{msg}");
        }
    }

    // ---- Subscriptions: Claude --------------------------------------------

    #[test]
    fn claude_setup_token_accepted_with_one_year_expiry() {
        let t = claude_token();
        let parsed = parse_subscription(
            SubscriptionInput { token: Some(&format!(" {t}\n")), ..input(Agent::ClaudeCode) },
            now(),
        )
        .unwrap();
        assert_eq!(parsed.provider, Provider::Anthropic);
        assert_eq!(parsed.secret.access_token.expose(), t);
        assert!(parsed.secret.refresh_token.is_none());
        assert_eq!(parsed.secret.scopes, vec!["user:inference".to_owned()]);
        assert_eq!(parsed.expires_at, Some(now() + Duration::days(365)));
    }

    #[test]
    fn claude_explicit_expiry_and_refresh_token() {
        let t = claude_token();
        let r = claude_refresh();
        let at = now() + Duration::hours(8);
        let parsed = parse_subscription(
            SubscriptionInput {
                access_token: Some(&t),
                refresh_token: Some(&r),
                expires_at: Some(at),
                ..input(Agent::ClaudeCode)
            },
            now(),
        )
        .unwrap();
        assert_eq!(parsed.expires_at, Some(at));
        assert_eq!(parsed.secret.refresh_token.as_ref().unwrap().expose(), r);

        // A refresh token without an expiry: the access token's life is
        // unknown, so assume an hour and let the refresher renew it.
        let parsed = parse_subscription(
            SubscriptionInput { token: Some(&t), refresh_token: Some(&r), ..input(Agent::ClaudeCode) },
            now(),
        )
        .unwrap();
        assert_eq!(parsed.expires_at, Some(now() + Duration::hours(1)));
    }

    #[test]
    fn opencode_anthropic_uses_claude_rules() {
        let t = claude_token();
        let parsed = parse_subscription(
            SubscriptionInput { provider: Some(Provider::Anthropic), token: Some(&t), ..input(Agent::Opencode) },
            now(),
        )
        .unwrap();
        assert_eq!(parsed.provider, Provider::Anthropic);
        assert_eq!(parsed.secret.scopes, vec!["user:inference".to_owned()]);

        let k = anthropic_key();
        let msg = refused(
            parse_subscription(
                SubscriptionInput { provider: Some(Provider::Anthropic), token: Some(&k), ..input(Agent::Opencode) },
                now(),
            ),
            &k,
        );
        assert!(msg.contains("Anthropic API key"), "{msg}");
    }

    #[test]
    fn claude_refusals() {
        let claude = |token: Option<&str>, refresh: Option<&str>| {
            parse_subscription(SubscriptionInput { token, refresh_token: refresh, ..input(Agent::ClaudeCode) }, now())
        };
        let k = anthropic_key();
        let msg = refused(claude(Some(&k), None), &k);
        assert!(msg.contains("that is an Anthropic API key"), "{msg}");
        assert!(msg.contains("Settings → API Keys"), "{msg}");
        assert!(msg.contains("claude setup-token"), "{msg}");
        assert!(msg.contains("sk-ant-oat01-"), "{msg}");

        let r = claude_refresh();
        let msg = refused(claude(Some(&r), None), &r);
        assert!(msg.contains("refresh token"), "{msg}");

        let g = github_pat();
        let msg = refused(claude(Some(&g), None), &g);
        assert!(msg.contains("sk-ant-oat01-") && msg.contains("GitHub token"), "{msg}");

        let msg = refused(claude(None, None), "");
        assert!(msg.contains("token is missing"), "{msg}");
        let msg = refused(claude(Some("  "), None), "");
        assert!(msg.contains("token is missing"), "{msg}");

        let t = claude_token();
        let msg = refused(claude(Some(&t), Some(&t)), &t);
        assert!(msg.contains("refreshToken") && msg.contains("sk-ant-ort01-"), "{msg}");

        let spaced = format!("{} {}", &t[..25], &t[25..]);
        let msg = refused(claude(Some(&spaced), None), &spaced);
        assert!(msg.contains(WHITESPACE_REFUSAL), "{msg}");

        let both = parse_subscription(
            SubscriptionInput { token: Some(&t), access_token: Some(&t), ..input(Agent::ClaudeCode) },
            now(),
        );
        let msg = refused(both, &t);
        assert!(msg.contains("not both"), "{msg}");

        let with_json = parse_subscription(
            SubscriptionInput { token: Some(&t), auth_json: Some("{}"), ..input(Agent::ClaudeCode) },
            now(),
        );
        let msg = refused(with_json, &t);
        assert!(msg.contains("authJson is only for Codex"), "{msg}");
    }

    // ---- Subscriptions: Codex ---------------------------------------------

    const ACCOUNT: &str = "7f1c2d3e-0000-4000-8000-123456789abc";

    fn codex_access(exp: DateTime<Utc>) -> String {
        jwt(serde_json::json!({
            "aud": ["https://api.openai.com/v1"],
            "exp": exp.timestamp(),
            "iat": (exp - Duration::days(10)).timestamp(),
            "iss": "https://auth.openai.com",
            "scp": ["openid", "profile", "email", "offline_access"],
            OPENAI_AUTH_CLAIM: { "chatgpt_account_id": ACCOUNT, "chatgpt_plan_type": "pro" },
            "sub": "auth0|abc",
        }))
    }

    fn codex_id_token() -> String {
        jwt(serde_json::json!({
            "email": "person@example.com",
            "exp": now().timestamp() + 3600,
            OPENAI_AUTH_CLAIM: { "chatgpt_account_id": ACCOUNT, "chatgpt_plan_type": "pro" },
        }))
    }

    fn refresh_rt() -> String {
        format!("rt_{MARK}.abcdefghijklmnop0123456789")
    }

    fn auth_json(access: &str, id: &str, refresh: &str) -> String {
        serde_json::to_string_pretty(&serde_json::json!({
            "auth_mode": "chatgpt",
            "OPENAI_API_KEY": null,
            "tokens": {
                "id_token": id,
                "access_token": access,
                "refresh_token": refresh,
                "account_id": ACCOUNT,
            },
            "last_refresh": "2025-05-30T08:15:42.123456Z",
        }))
        .unwrap()
    }

    fn codex(json: &str) -> Result<ParsedSubscription> {
        parse_subscription(SubscriptionInput { auth_json: Some(json), ..input(Agent::Codex) }, now())
    }

    #[test]
    fn realistic_codex_auth_json_is_accepted() {
        let exp = now() + Duration::days(10);
        let access = codex_access(exp);
        let id = codex_id_token();
        let refresh = refresh_rt();
        let parsed = codex(&format!("\n{}\n", auth_json(&access, &id, &refresh))).unwrap();
        assert_eq!(parsed.provider, Provider::Openai);
        assert_eq!(parsed.secret.access_token.expose(), access);
        assert_eq!(parsed.secret.refresh_token.as_ref().unwrap().expose(), refresh);
        assert_eq!(parsed.secret.id_token.as_ref().unwrap().expose(), id);
        assert_eq!(parsed.secret.account_id.as_deref(), Some(ACCOUNT));
        assert_eq!(
            parsed.secret.last_refresh,
            Some(Utc.with_ymd_and_hms(2025, 5, 30, 8, 15, 42).unwrap() + Duration::microseconds(123456))
        );
        assert_eq!(parsed.expires_at, Some(exp));

        let debug = format!("{:?}", parsed);
        assert!(!debug.contains(MARK), "{debug}");
        assert!(!debug.contains(ACCOUNT), "{debug}");
    }

    #[test]
    fn codex_explicit_expiry_wins_over_jwt() {
        let access = codex_access(now() + Duration::days(10));
        let json = auth_json(&access, &codex_id_token(), &refresh_rt());
        let at = now() + Duration::days(1);
        let parsed = parse_subscription(
            SubscriptionInput { auth_json: Some(&json), expires_at: Some(at), ..input(Agent::Codex) },
            now(),
        )
        .unwrap();
        assert_eq!(parsed.expires_at, Some(at));
    }

    #[test]
    fn codex_minimal_auth_json() {
        // Only the access token; not a JWT, so no expiry can be known.
        let opaque = format!("opaque-{MARK}-0123456789");
        let json = format!(r#"{{"tokens":{{"access_token":"{opaque}"}}}}"#);
        let parsed = codex(&json).unwrap();
        assert_eq!(parsed.secret.access_token.expose(), opaque);
        assert!(parsed.secret.refresh_token.is_none());
        assert!(parsed.secret.id_token.is_none());
        assert!(parsed.secret.account_id.is_none());
        assert!(parsed.secret.last_refresh.is_none());
        assert_eq!(parsed.expires_at, None);
    }

    #[test]
    fn codex_auth_json_refusals() {
        let access = codex_access(now() + Duration::days(10));
        let id = codex_id_token();
        let refresh = refresh_rt();

        // Broken JSON: the position, nothing of the content.
        let good = auth_json(&access, &id, &refresh);
        let broken = &good[..good.len() / 2];
        let msg = refused(codex(broken), broken);
        assert!(msg.starts_with("authJson is not valid JSON: "), "{msg}");
        assert!(msg.contains("line"), "{msg}");
        let msg = refused(codex("{\"tokens\": x}"), "");
        assert!(msg.contains("expected value at line 1 column 12"), "{msg}");

        // Wrong shape: serde would quote the string; we must not.
        let wrong_shape = format!(r#"{{"tokens":"{MARK}"}}"#);
        let msg = refused(codex(&wrong_shape), &wrong_shape);
        assert!(msg.contains("does not look like ~/.codex/auth.json"), "{msg}");

        // No access token.
        let msg = refused(codex(r#"{"tokens":{"refresh_token":"x"}}"#), "");
        assert!(msg.contains("tokens.access_token"), "{msg}");
        let msg = refused(codex(r#"{"tokens":{"access_token":"  "}}"#), "");
        assert!(msg.contains("tokens.access_token"), "{msg}");
        let msg = refused(codex(r#"{"auth_mode":"chatgpt"}"#), "");
        assert!(msg.contains("no tokens"), "{msg}");

        // id_token that is not a JWT.
        let bad_id = format!("not-a-jwt-{MARK}");
        let json = auth_json(&access, &bad_id, &refresh);
        let msg = refused(codex(&json), &json);
        assert_eq!(msg, "tokens.id_token is not a JWT; Codex refuses such a file — copy auth.json again.");
        // Middle part decodes, but not to a JSON object.
        let array_jwt = format!("{}.{}.{}", b64(b"{}"), b64(b"[1,2]"), b64(MARK.as_bytes()));
        let json = auth_json(&access, &array_jwt, &refresh);
        let msg = refused(codex(&json), &json);
        assert!(msg.contains("tokens.id_token is not a JWT"), "{msg}");

        // Clipped access JWT.
        let (clipped, _signature) = access.rsplit_once('.').unwrap();
        let json = auth_json(clipped, &id, &refresh);
        let msg = refused(codex(&json), &json);
        assert!(msg.contains("incomplete"), "{msg}");

        // Bad last_refresh.
        let json = format!(r#"{{"tokens":{{"access_token":"{access}"}},"last_refresh":"yesterday"}}"#);
        let msg = refused(codex(&json), &json);
        assert!(msg.contains("last_refresh"), "{msg}");

        // Whitespace inside a token in the file.
        let json = format!(r#"{{"tokens":{{"access_token":"{} {}"}}}}"#, &access[..30], &access[30..]);
        let msg = refused(codex(&json), &json);
        assert!(msg.contains(WHITESPACE_REFUSAL), "{msg}");

        // Oversized.
        let huge = format!(r#"{{"x":"{}"}}"#, "a".repeat(MAX_AUTH_JSON_BYTES));
        let msg = refused(codex(&huge), "");
        assert!(msg.contains(&MAX_AUTH_JSON_BYTES.to_string()), "{msg}");
    }

    #[test]
    fn codex_api_key_auth_json_is_redirected_to_api_keys() {
        let key = openai_key();
        for json in [
            format!(r#"{{"auth_mode":"apikey","OPENAI_API_KEY":"{key}"}}"#),
            format!(r#"{{"OPENAI_API_KEY":"{key}"}}"#),
            format!(r#"{{"OPENAI_API_KEY":"{key}","tokens":null}}"#),
        ] {
            let msg = refused(codex(&json), &json);
            assert!(msg.contains("holds an OpenAI API key"), "{msg}");
            assert!(msg.contains("Settings → API Keys"), "{msg}");
        }
    }

    #[test]
    fn codex_access_token_alone_or_with_refresh() {
        let exp = now() + Duration::hours(1);
        let access = codex_access(exp);
        let refresh = refresh_rt();
        let parsed = parse_subscription(
            SubscriptionInput { access_token: Some(&access), refresh_token: Some(&refresh), ..input(Agent::Codex) },
            now(),
        )
        .unwrap();
        assert_eq!(parsed.secret.access_token.expose(), access);
        assert_eq!(parsed.secret.refresh_token.as_ref().unwrap().expose(), refresh);
        assert_eq!(parsed.secret.account_id.as_deref(), Some(ACCOUNT));
        assert_eq!(parsed.expires_at, Some(exp));

        // `token` is accepted as another name for accessToken.
        let parsed =
            parse_subscription(SubscriptionInput { token: Some(&access), ..input(Agent::Codex) }, now()).unwrap();
        assert!(parsed.secret.refresh_token.is_none());
    }

    #[test]
    fn opencode_openai_uses_codex_rules() {
        let access = codex_access(now() + Duration::hours(1));
        let refresh = refresh_rt();
        let parsed = parse_subscription(
            SubscriptionInput {
                provider: Some(Provider::Openai),
                access_token: Some(&access),
                refresh_token: Some(&refresh),
                ..input(Agent::Opencode)
            },
            now(),
        )
        .unwrap();
        assert_eq!(parsed.provider, Provider::Openai);
        let json = auth_json(&access, &codex_id_token(), &refresh);
        let parsed = parse_subscription(
            SubscriptionInput { provider: Some(Provider::Openai), auth_json: Some(&json), ..input(Agent::Opencode) },
            now(),
        )
        .unwrap();
        assert!(parsed.secret.id_token.is_some());
    }

    #[test]
    fn codex_expired_access_token_needs_a_refresh_token() {
        let access = codex_access(now() - Duration::hours(1));
        let msg = refused(
            parse_subscription(SubscriptionInput { access_token: Some(&access), ..input(Agent::Codex) }, now()),
            &access,
        );
        assert!(msg.contains("already expired"), "{msg}");

        let refresh = refresh_rt();
        let parsed = parse_subscription(
            SubscriptionInput { access_token: Some(&access), refresh_token: Some(&refresh), ..input(Agent::Codex) },
            now(),
        )
        .unwrap();
        assert_eq!(parsed.expires_at, Some(now() - Duration::hours(1)));
    }

    #[test]
    fn codex_refusals() {
        let access = codex_access(now() + Duration::hours(1));
        let refresh = refresh_rt();
        let json = auth_json(&access, &codex_id_token(), &refresh);
        let codex_input =
            |token: Option<&str>, access_token: Option<&str>, refresh_token: Option<&str>, auth_json: Option<&str>| {
                parse_subscription(
                    SubscriptionInput { token, access_token, refresh_token, auth_json, ..input(Agent::Codex) },
                    now(),
                )
            };

        let msg = refused(codex_input(None, None, None, None), "");
        assert!(msg.contains("authJson") && msg.contains("accessToken"), "{msg}");
        let msg = refused(codex_input(None, None, Some(&refresh), None), &refresh);
        assert!(msg.contains("authJson") && msg.contains("accessToken"), "{msg}");

        let msg = refused(codex_input(None, Some(&access), None, Some(&json)), &access);
        assert!(msg.contains("not both"), "{msg}");
        let msg = refused(codex_input(None, None, Some(&refresh), Some(&json)), &refresh);
        assert!(msg.contains("leave refreshToken empty"), "{msg}");

        let key = openai_key();
        let msg = refused(codex_input(None, Some(&key), None, None), &key);
        assert!(msg.contains("API key") && msg.contains("Settings → API Keys"), "{msg}");

        let msg = refused(codex_input(Some(&json), None, None, None), &json);
        assert!(msg.contains("JSON") && msg.contains("authJson"), "{msg}");

        let msg = refused(codex_input(None, Some(&access), Some("rt_short"), None), "rt_short");
        assert!(msg.contains("refreshToken") && msg.contains("too short"), "{msg}");

        let msg = refused(codex_input(None, Some("eyJhbGciOi"), None, None), "eyJhbGciOi");
        assert!(msg.contains("too short"), "{msg}");
    }

    // ---- Subscriptions: Copilot -------------------------------------------

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
        assert_eq!(msg, GHP_REFUSAL);

        let key = anthropic_key();
        let msg = refused(copilot(Some(&key), None), &key);
        assert!(msg.contains("github_pat_") && msg.contains("Anthropic API key"), "{msg}");

        let msg = refused(copilot(None, None), "");
        assert!(msg.contains("token is missing"), "{msg}");

        let t = github_pat();
        let msg = refused(copilot(Some(&t), Some(&t)), &t);
        assert!(msg.contains("leave refreshToken empty"), "{msg}");
    }

    // ---- Serialisation and Debug of the stored secret ---------------------

    #[test]
    fn subscription_secret_round_trips_and_debug_is_redacted() {
        let secret = SubscriptionSecret {
            access_token: Secret::new(format!("access-{MARK}")),
            refresh_token: Some(Secret::new(format!("refresh-{MARK}"))),
            id_token: Some(Secret::new(format!("id-{MARK}"))),
            account_id: Some(format!("acct-{MARK}")),
            last_refresh: Some(now()),
            scopes: vec!["user:inference".into()],
        };
        let debug = format!("{secret:?}");
        assert!(!debug.contains(MARK), "{debug}");
        assert!(debug.contains("***") && debug.contains("user:inference"), "{debug}");

        let json = serde_json::to_value(&secret).unwrap();
        assert_eq!(json["access_token"], format!("access-{MARK}"));
        assert_eq!(json["refresh_token"], format!("refresh-{MARK}"));
        let back: SubscriptionSecret = serde_json::from_value(json).unwrap();
        assert_eq!(back.access_token, secret.access_token);
        assert_eq!(back.refresh_token, secret.refresh_token);
        assert_eq!(back.id_token, secret.id_token);
        assert_eq!(back.account_id, secret.account_id);
        assert_eq!(back.last_refresh, secret.last_refresh);
        assert_eq!(back.scopes, secret.scopes);

        // Older rows may lack the optional fields.
        let minimal: SubscriptionSecret = serde_json::from_str(r#"{"access_token":"abc"}"#).unwrap();
        assert!(minimal.refresh_token.is_none() && minimal.scopes.is_empty());
    }

    #[test]
    fn subscription_input_debug_is_redacted() {
        let t = claude_token();
        let debug =
            format!("{:?}", SubscriptionInput { token: Some(&t), auth_json: Some(&t), ..input(Agent::ClaudeCode) });
        assert!(!debug.contains(MARK), "{debug}");
        assert!(debug.contains("CLAUDE_CODE") || debug.contains("ClaudeCode"), "{debug}");
    }

    // ---- JWT expiry --------------------------------------------------------

    #[test]
    fn jwt_expiry_reads_exp_seconds() {
        let exp = Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(jwt_expiry(&jwt(serde_json::json!({ "exp": exp.timestamp() }))), Some(exp));
        // Fractional exp is truncated to the second.
        let frac = jwt(serde_json::json!({ "exp": exp.timestamp() as f64 + 0.9 }));
        assert_eq!(jwt_expiry(&frac), Some(exp));
        // Padding is tolerated.
        let padded = format!(
            "{}.{}.sig",
            base64::engine::general_purpose::URL_SAFE.encode(b"{\"a\":1}"),
            base64::engine::general_purpose::URL_SAFE.encode(format!("{{\"exp\":{}}}", exp.timestamp()))
        );
        assert_eq!(jwt_expiry(&padded), Some(exp));
    }

    #[test]
    fn jwt_expiry_none_for_non_jwts() {
        assert_eq!(jwt_expiry(&jwt(serde_json::json!({ "sub": "x" }))), None);
        assert_eq!(jwt_expiry(&jwt(serde_json::json!({ "exp": "soon" }))), None);
        assert_eq!(jwt_expiry(&claude_token()), None);
        assert_eq!(jwt_expiry(""), None);
        assert_eq!(jwt_expiry("a.b"), None);
        assert_eq!(jwt_expiry("a.b.c.d"), None);
        assert_eq!(jwt_expiry(&format!("{}..sig", b64(b"{}"))), None);
        assert_eq!(jwt_expiry(&format!("{}.%%%.sig", b64(b"{}"))), None);
        assert_eq!(jwt_expiry(&format!("{}.{}.sig", b64(b"{}"), b64(b"not json"))), None);
        assert_eq!(jwt_expiry(&format!("{}.{}.sig", b64(b"{}"), b64(b"42"))), None);
        assert_eq!(jwt_expiry(&jwt(serde_json::json!({ "exp": i64::MAX }))), None);
    }

    // ---- Hints -------------------------------------------------------------

    #[test]
    fn hints_show_known_prefix_and_last_four() {
        assert_eq!(hint("sk-ant-api03-abcdefghijklmnop9f2c"), "sk-ant-…9f2c");
        assert_eq!(hint("sk-ant-oat01-abcdefghijklmnop9f2c"), "sk-ant-…9f2c");
        assert_eq!(hint("sk-proj-abcdefghijklmnopqrsta1b2"), "sk-proj-…a1b2");
        assert_eq!(hint("sk-abcdefghijklmnopqrstuvwxyz1234"), "sk-…1234");
        assert_eq!(hint(&format!("github_pat_11AAAA{}a1b2", "x".repeat(60))), "github_pat_…a1b2");
        assert_eq!(hint("gho_abcdefghijklmnopqrstuvwxyz0123"), "gho_…0123");
        assert_eq!(hint("ghu_abcdefghijklmnopqrstuvwxyz0123"), "ghu_…0123");
        assert_eq!(hint("AIzaSyA-abcdefghijklmnopqrstuvwxyz1"), "AIza…xyz1");
        let access = codex_access(now());
        assert_eq!(hint(&access), format!("eyJ…{}", &access[access.len() - 4..]));
    }

    #[test]
    fn hints_for_short_and_unknown_secrets() {
        assert_eq!(hint(""), "…");
        assert_eq!(hint("abc"), "…");
        assert_eq!(hint("abcdefghijk"), "…"); // 11 chars
        assert_eq!(hint("abcdefghijkl"), "…ijkl"); // 12 chars
        assert_eq!(hint("rt_opaque-refresh-token-wxyz"), "…wxyz");
        // A known prefix on a short secret is dropped so little is revealed.
        assert_eq!(hint("github_pat_abcd"), "…abcd");
        assert_eq!(hint("sk-ant-12345"), "…2345");
        // Never more than four trailing characters, even for multi-byte text.
        assert_eq!(hint("ééééééééééééééé"), "…éééé");
        for s in [claude_token(), github_pat(), google_key(), openai_key()] {
            assert!(!hint(&s).contains(MARK));
            let tail: String = hint(&s).chars().skip_while(|c| *c != '…').skip(1).collect();
            assert_eq!(tail.chars().count(), 4);
        }
    }
}
