//! Codex: an OpenAI API key, or a ChatGPT login (pasted `~/.codex/auth.json`
//! or tokens, or device sign-in), handed over as `~/.codex/auth.json` so it
//! can refresh and hand back its login. OpenCode takes the same ChatGPT
//! login (`parse_chatgpt_login`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Map;
use zeroize::Zeroizing;

use super::catalog::{MethodInfo, Paste};
use super::handover::{account_id, file, from_json, one_env_var, optional_token, required_token, secret_json};
use super::{AgentSpec, Handling, Issue, IssuedSecret, Materialized, ProxyFacts, Returned, Save, Saved};
use crate::credential_input::{
    check_opaque_token, given, InputError, InputResult, Secret, SubscriptionSecret, MAX_AUTH_JSON_BYTES,
};
use crate::domain::{Agent, AuthMethod, Provider};
use crate::providers::{jwt, openai};

/// Codex's login (`$CODEX_HOME/auth.json`), relative to the agent's home.
pub const AUTH_PATH: &str = ".codex/auth.json";

pub static SPEC: AgentSpec = AgentSpec {
    agent: Agent::Codex,
    name: "Codex",
    providers: &[Provider::Openai],
    methods: METHODS,
    note: None,
    handling: &Codex,
};

pub struct Codex;

impl Handling for Codex {
    /// Rust: it ignores `NODE_EXTRA_CA_CERTS` and reads
    /// `CODEX_CA_CERTIFICATE` (or `SSL_CERT_FILE`). Its analytics and
    /// plugin traffic stop only with command-line flags (see the docs).
    fn proxy(&self) -> ProxyFacts {
        ProxyFacts { ca_vars: &["CODEX_CA_CERTIFICATE", "SSL_CERT_FILE"], quiet: &[] }
    }

    fn parse_subscription(&self, save: &Save<'_>) -> InputResult<Saved> {
        parse_chatgpt_login(save)
    }

    fn materialize(&self, issue: Issue<'_>) -> Materialized {
        match (issue.provider, issue.secret) {
            (Provider::Openai, IssuedSecret::Subscription(s)) => subscription(s, issue.expires_at, issue.now),
            (Provider::Openai, IssuedSecret::ApiKey(key)) => {
                // `codex exec` (0.171) ignores OPENAI_API_KEY and reads
                // CODEX_API_KEY; the interactive CLI reads the former.
                let mut out = one_env_var(issue.provider, issue.secret);
                out.env.push(super::handover::env("CODEX_API_KEY", key));
                out
            }
            _ => one_env_var(issue.provider, issue.secret),
        }
    }

    fn returnable_paths(&self, provider: Provider) -> &'static [&'static str] {
        match provider {
            Provider::Openai => &[AUTH_PATH],
            _ => &[],
        }
    }

    fn parse_returned(&self, _provider: Provider, content: &str) -> InputResult<Returned> {
        parse_auth_file(content)
    }

    #[cfg(test)]
    fn sample_subscription(&self, provider: Provider) -> Option<super::samples::SubscriptionSample> {
        use crate::providers::samples::*;
        let json = auth_json(&codex_access(now() + chrono::Duration::days(10)), &codex_id_token(), &refresh_rt());
        (provider == Provider::Openai)
            .then(|| super::samples::SubscriptionSample { auth_json: Some(json), ..Default::default() })
    }
}

const METHODS: &[MethodInfo] = &[
    MethodInfo {
        provider: Provider::Openai,
        method: AuthMethod::ApiKey,
        label: "API key",
        paste: None,
        env_var: Some("OPENAI_API_KEY"),
        token_prefixes: &[openai::API_KEY_PREFIX],
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
        label: "auth.json or access token",
        paste: Some(Paste {
            token_label: "Access token",
            auth_file: Some("~/.codex/auth.json"),
            accepts_refresh_token: true,
        }),
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
        label: "Sign in with ChatGPT",
        paste: None,
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

/// The shape of ~/.codex/auth.json, pasted or handed back. Unknown fields
/// are ignored so newer Codex versions still parse.
#[derive(Deserialize)]
struct AuthFileIn {
    #[serde(default)]
    auth_mode: Option<String>,
    #[serde(default, rename = "OPENAI_API_KEY")]
    openai_api_key: Option<Secret>,
    #[serde(default)]
    tokens: Option<TokensIn>,
    #[serde(default)]
    last_refresh: Option<String>,
}

#[derive(Deserialize)]
struct TokensIn {
    #[serde(default)]
    id_token: Option<Secret>,
    #[serde(default)]
    access_token: Option<Secret>,
    #[serde(default)]
    refresh_token: Option<Secret>,
    #[serde(default)]
    account_id: Option<String>,
}

impl AuthFileIn {
    /// Logged in with an API key rather than ChatGPT.
    fn api_key_mode(&self) -> bool {
        self.auth_mode.as_deref().is_some_and(|m| m.eq_ignore_ascii_case("apikey"))
    }

    fn has_api_key(&self) -> bool {
        self.openai_api_key.as_ref().is_some_and(|k| !k.expose().trim().is_empty())
    }
}

// ---------------------------------------------------------------------------
// A ChatGPT login saved by a person
// ---------------------------------------------------------------------------

/// Codex, and OpenCode with OpenAI: a pasted ~/.codex/auth.json, or an access
/// token with an optional refresh token.
pub(super) fn parse_chatgpt_login(save: &Save<'_>) -> InputResult<Saved> {
    let Save { agent, ref fields, expires_at, now, .. } = *save;
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
            parse_pasted_auth_json(raw)?
        }
        (None, Some((raw, field))) => openai::parse_tokens(raw, field, fields.refresh_token)?,
        (None, None) => {
            return Err(InputError::new(format!(
                "{} needs the ChatGPT login: paste the contents of ~/.codex/auth.json into \
                 authJson, or give accessToken (and optionally refreshToken).",
                crate::agents::spec(agent).name
            )))
        }
    };

    // ChatGPT tokens carry the account id; fill it in when auth.json did not.
    // One that disagrees with them is refused, as a returned file's is
    // (`returned_account`): saved, it would refuse every file a task returns.
    let derived = openai::login_account(&secret.access_token, secret.id_token.as_ref());
    if derived.is_some() && secret.account_id.is_some() && derived != secret.account_id {
        return Err(InputError::new(
            "authJson's tokens.account_id names a different account than its tokens belong to; copy \
             ~/.codex/auth.json again.",
        ));
    }
    if secret.account_id.is_none() {
        secret.account_id = derived;
    }

    let expires_at = match expires_at {
        Some(at) => Some(at),
        None => {
            let exp = jwt::expiry(secret.access_token.expose());
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

fn parse_pasted_auth_json(raw: &str) -> InputResult<SubscriptionSecret> {
    let text = raw.trim();
    if text.len() > MAX_AUTH_JSON_BYTES {
        return Err(InputError::new(format!(
            "authJson is longer than {MAX_AUTH_JSON_BYTES} bytes; paste only the contents of \
             ~/.codex/auth.json."
        )));
    }
    let file: AuthFileIn = serde_json::from_str(text).map_err(auth_json_error)?;

    let has_access =
        file.tokens.as_ref().and_then(|t| t.access_token.as_ref()).is_some_and(|t| !t.expose().trim().is_empty());
    if file.api_key_mode() || (file.has_api_key() && !has_access) {
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
    let access = openai::check_access_token(access.expose(), "tokens.access_token in authJson")?;

    let refresh = match given(tokens.refresh_token.as_ref().map(Secret::expose)) {
        Some(raw) => Some(check_opaque_token(raw, "tokens.refresh_token in authJson")?),
        None => None,
    };

    let id_token = match given(tokens.id_token.as_ref().map(Secret::expose)) {
        Some(raw) => {
            let id = raw.trim();
            if !jwt::is_jwt(id) {
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

    Ok(SubscriptionSecret {
        access_token: Secret::new(access.to_owned()),
        refresh_token: refresh.map(|r| Secret::new(r.to_owned())),
        id_token: id_token.map(|t| Secret::new(t.to_owned())),
        account_id: account_id(tokens.account_id.as_deref()),
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

// ---------------------------------------------------------------------------
// Materialisation
// ---------------------------------------------------------------------------

#[derive(Serialize)]
struct AuthFileOut<'a> {
    auth_mode: &'static str,
    /// Always null: a key here would make Codex use the API instead.
    #[serde(rename = "OPENAI_API_KEY")]
    openai_api_key: Option<&'a str>,
    tokens: TokensOut<'a>,
    last_refresh: DateTime<Utc>,
}

#[derive(Serialize)]
struct TokensOut<'a> {
    id_token: &'a str,
    access_token: &'a str,
    /// Codex requires a string; "" when there is none.
    refresh_token: &'a str,
    account_id: Option<&'a str>,
}

fn subscription(s: &SubscriptionSecret, expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Materialized {
    let access = s.access_token.expose();
    let refresh = s.refresh_token.as_ref().map_or("", Secret::expose);
    let account_id = s.account_id.clone().or_else(|| openai::account_id(access));
    let id_token = id_token(s, account_id.as_deref(), expires_at);
    let auth = AuthFileOut {
        auth_mode: "chatgpt",
        openai_api_key: None,
        tokens: TokensOut {
            id_token: &id_token,
            access_token: access,
            refresh_token: refresh,
            account_id: account_id.as_deref(),
        },
        // Codex refreshes 8 days after this; keeping the stored time means a
        // due refresh happens (and comes back) rather than being postponed.
        last_refresh: s.last_refresh.unwrap_or(now),
    };
    Materialized { env: Vec::new(), files: vec![file(AUTH_PATH, secret_json(&auth, &[&id_token, access, refresh]))] }
}

/// Codex refuses an auth.json whose id_token is not a JWT, but only reads
/// claims (email, plan, account) out of it and never verifies it. So
/// when the real one is missing, a ChatGPT access token (a JWT carrying the
/// same claims) or, failing that, an unsigned stand-in holding only the
/// account id and the expiry lets the file load; [`parse_auth_file`]
/// recognises and drops both.
fn id_token(s: &SubscriptionSecret, account_id: Option<&str>, expires_at: Option<DateTime<Utc>>) -> Zeroizing<String> {
    let stored = s.id_token.as_ref().map(Secret::expose).filter(|t| jwt::is_strict_jwt(t));
    let access = Some(s.access_token.expose()).filter(|t| jwt::is_strict_jwt(t));
    if let Some(jwt) = stored.or(access) {
        return Zeroizing::new(jwt.to_owned());
    }
    let mut claims = Map::new();
    let auth = serde_json::json!({ "chatgpt_account_id": account_id.unwrap_or_default() });
    claims.insert(openai::AUTH_CLAIM.to_owned(), auth);
    if let Some(exp) = expires_at {
        claims.insert("exp".to_owned(), exp.timestamp().into());
    }
    jwt::unsigned(claims)
}

// ---------------------------------------------------------------------------
// The login file handed back
// ---------------------------------------------------------------------------

fn parse_auth_file(content: &str) -> InputResult<Returned> {
    const FILE: &str = AUTH_PATH;
    let parsed: AuthFileIn = from_json(content, FILE)?;
    let api_key_mode = parsed.api_key_mode();
    let has_api_key = parsed.has_api_key();
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
    if id_token.as_ref().is_some_and(|t| !jwt::is_strict_jwt(t.expose())) {
        return Err(InputError::new(format!(
            "{FILE}: tokens.id_token is not a JWT; Codex itself would refuse this file."
        )));
    }
    // A copy of the access token or an unsigned stand-in is what
    // materialisation put there, not an id_token OpenAI issued: don't store it.
    let id_token = id_token.filter(|t| t != &access_token && !jwt::is_unsigned(t.expose()));

    let refreshed_at = match parsed.last_refresh.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(text) => Some(
            DateTime::parse_from_rfc3339(text)
                .map_err(|_| InputError::new(format!("{FILE}: last_refresh is not an RFC 3339 date-time.")))?
                .with_timezone(&Utc),
        ),
        None => None,
    };
    let expires_at = jwt::expiry(access_token.expose());
    let account_id = returned_account(&access_token, id_token.as_ref(), tokens.account_id.as_deref(), FILE)?;
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

/// The ChatGPT account of a returned login: what its tokens say (as on
/// save, [`openai::login_account`]), never the file's word alone; a stated
/// account id that disagrees with the tokens refuses the file. The store
/// then refuses a login whose account is missing or not the one issued.
pub(super) fn returned_account(
    access_token: &Secret,
    id_token: Option<&Secret>,
    stated: Option<&str>,
    file: &str,
) -> InputResult<Option<String>> {
    let derived = openai::login_account(access_token, id_token);
    if let (Some(derived), Some(stated)) = (&derived, account_id(stated)) {
        if *derived != stated {
            return Err(InputError::new(format!(
                "{file}: its account id names a different account than its tokens belong to; it was not taken \
                 back."
            )));
        }
    }
    Ok(derived)
}

#[cfg(test)]
mod tests;
