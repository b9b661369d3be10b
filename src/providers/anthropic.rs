//! Anthropic: API keys, Claude subscription tokens (what `claude
//! setup-token` prints, and OAuth logins with a refresh token), and the
//! authorization-code sign-in with PKCE S256, pasted back as `code#state`.

use chrono::{DateTime, Duration, Utc};
use futures_util::future::BoxFuture;
use oauth2::{CsrfToken, PkceCodeChallenge, PkceCodeVerifier};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::check::{conclude, Outcome, Probe};
use super::revoke::Revocation;
use super::signin::{tokens_from, unreachable_error, SignIn};
use super::Egress;
use super::{
    http, wrong_prefix, Account, FlowSecret, OauthConfig, ProviderApis, ProviderError, ProviderSpec, ProvidersConfig,
    RefreshTokens, Tokens,
};
use crate::credential_input::{
    check_token_body, clean, InputError, InputResult, Secret, SubscriptionFields, SubscriptionSecret, MAX_INPUT_BYTES,
};
use crate::domain::Provider;

pub const API_KEY_PREFIX: &str = "sk-ant-api03-";
/// What `claude setup-token` prints (and Anthropic OAuth access tokens).
pub const SETUP_TOKEN_PREFIX: &str = "sk-ant-oat01-";
pub const REFRESH_TOKEN_PREFIX: &str = "sk-ant-ort01-";
/// Lifetime of a token printed by `claude setup-token`.
pub const SETUP_TOKEN_DAYS: i64 = 365;
/// Claude OAuth access tokens last hours (reports: 6–8); assume the least.
const OAUTH_ASSUMED_HOURS: i64 = 1;
/// The only scope a `claude setup-token` token carries.
pub const SETUP_TOKEN_SCOPE: &str = "user:inference";
/// Where a subscription token handed over as one variable goes: Claude
/// Code's. ANTHROPIC_API_KEY would override the subscription there, and a
/// subscription token does not work as an API key anyway.
pub const SUBSCRIPTION_ENV: &str = "CLAUDE_CODE_OAUTH_TOKEN";

pub static SPEC: ProviderSpec = ProviderSpec {
    provider: Provider::Anthropic,
    name: "Anthropic",
    api_key_env: "ANTHROPIC_API_KEY",
    token_env: SUBSCRIPTION_ENV,
    check_api_key,
    kinds: &[
        ("sk-ant-api03-", "an Anthropic API key"),
        ("sk-ant-oat01-", "a Claude subscription token"),
        ("sk-ant-ort01-", "a Claude refresh token"),
        ("sk-ant-", "an Anthropic key"),
    ],
    hint_prefixes: &["sk-ant-"],
    subscription_plans: &["Claude Max ($200/mo)", "Claude Pro ($20/mo)"],
    refresh: RefreshTokens::Reusable,
    sign_in: Some(&AnthropicSignIn),
    login_account: Some(login_account_of),
    check_with_provider: check,
    // No documented revoke endpoint.
    revocation: Revocation {
        api_key_page: "https://console.anthropic.com/settings/keys",
        login_page: "https://claude.ai/settings",
        revoke: None,
    },
    egress: Egress {
        hosts: &["api.anthropic.com"],
        token_endpoints: &[("platform.claude.com", "/v1/oauth/token"), ("console.anthropic.com", "/v1/oauth/token")],
        placeholder_prefixes: &["sk-ant-api03-", "sk-ant-oat01-", "sk-ant-ort01-"],
    },
};

fn check_api_key(key: &str) -> InputResult<()> {
    if key.starts_with(SETUP_TOKEN_PREFIX) {
        return Err(InputError::new(
            "That is a Claude subscription token (sk-ant-oat01-…), not an API key: add it under \
             Agent Credentials → Claude Code, not in the API Keys tab.",
        ));
    }
    if !key.starts_with(API_KEY_PREFIX) {
        return Err(wrong_prefix("An Anthropic API key", &[API_KEY_PREFIX], key));
    }
    check_token_body(key, "key", "Anthropic API key")
}

/// A pasted Claude subscription: the token `claude setup-token` printed, or
/// an OAuth access token with its refresh token.
pub fn parse_pasted(
    agent_name: &str,
    fields: &SubscriptionFields<'_>,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> InputResult<(SubscriptionSecret, Option<DateTime<Utc>>)> {
    if fields.auth_json.is_some() {
        return Err(InputError::new(format!(
            "authJson is only for Codex's ~/.codex/auth.json; for {agent_name} paste the token \
             `claude setup-token` printed (starts with sk-ant-oat01-) into token."
        )));
    }
    let Some((raw, field)) = fields.pasted_token()? else {
        return Err(InputError::new(
            "token is missing: run `claude setup-token` and paste the token it prints (starts \
             with sk-ant-oat01-).",
        ));
    };
    let token = clean(raw, field, MAX_INPUT_BYTES)?;
    if token.starts_with(API_KEY_PREFIX) {
        return Err(InputError::new(format!(
            "{field}: that is an Anthropic API key; add it under Settings → API Keys, or paste \
             the token `claude setup-token` printed (starts with sk-ant-oat01-)."
        )));
    }
    if token.starts_with(REFRESH_TOKEN_PREFIX) {
        return Err(InputError::new(format!(
            "{field}: that is a refresh token (sk-ant-ort01-…); put it in refreshToken and paste \
             the access token (starts with sk-ant-oat01-) here."
        )));
    }
    if !token.starts_with(SETUP_TOKEN_PREFIX) {
        return Err(wrong_prefix(
            &format!("{field}: a Claude subscription token (run `claude setup-token`)"),
            &[SETUP_TOKEN_PREFIX],
            token,
        ));
    }
    check_token_body(token, field, "Claude subscription token")?;

    let refresh = match fields.refresh_token {
        Some(raw) => {
            let refresh = clean(raw, "refreshToken", MAX_INPUT_BYTES)?;
            if !refresh.starts_with(REFRESH_TOKEN_PREFIX) {
                return Err(wrong_prefix("refreshToken: a Claude refresh token", &[REFRESH_TOKEN_PREFIX], refresh));
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
        (None, None) => Some(now + Duration::days(SETUP_TOKEN_DAYS)),
        (None, Some(_)) => Some(now + Duration::hours(OAUTH_ASSUMED_HOURS)),
    };
    let mut secret = SubscriptionSecret::access_only(Secret::new(token.to_owned()));
    secret.refresh_token = refresh;
    secret.scopes = vec![SETUP_TOKEN_SCOPE.to_owned()];
    Ok((secret, expires_at))
}

// ---------------------------------------------------------------------------
// Authorization-code sign-in and refresh
// ---------------------------------------------------------------------------

/// `[oauth.anthropic]`: the code sign-in; defaults are claude.ai and
/// Claude Code's public client id.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnthropicOauth {
    pub client_id: String,
    pub authorize_url: String,
    pub token_url: String,
    pub redirect_uri: String,
    pub scope: String,
}

impl Default for AnthropicOauth {
    fn default() -> Self {
        AnthropicOauth {
            client_id: "9d1c250a-e61b-44d9-88ed-5944d1962f5e".into(),
            authorize_url: "https://claude.ai/oauth/authorize".into(),
            token_url: "https://console.anthropic.com/v1/oauth/token".into(),
            redirect_uri: "https://console.anthropic.com/oauth/code/callback".into(),
            scope: "org:create_api_key user:profile user:inference".into(),
        }
    }
}

/// Claude's authorization-code sign-in (the code is pasted back) and refresh.
pub struct AnthropicSignIn;

impl SignIn for AnthropicSignIn {
    fn authorization_request(&self, config: &OauthConfig) -> Option<(String, FlowSecret)> {
        Some(authorization_request(&config.anthropic))
    }

    fn authorization_url(&self, config: &OauthConfig, secret: &FlowSecret) -> Option<String> {
        match secret {
            FlowSecret::Authorization { verifier, state } => {
                Some(authorization_url(&config.anthropic, verifier.expose(), state.expose()))
            }
            _ => None,
        }
    }

    fn exchange_code<'a>(
        &'a self,
        http: &'a reqwest::Client,
        config: &'a OauthConfig,
        code: &'a str,
        state: &'a str,
        verifier: &'a Secret,
    ) -> BoxFuture<'a, Result<Tokens, ProviderError>> {
        Box::pin(exchange_code(http, &config.anthropic, code, state, verifier))
    }

    fn refresh_request(
        &self,
        http: &reqwest::Client,
        config: &OauthConfig,
        refresh_token: &Secret,
    ) -> Option<reqwest::RequestBuilder> {
        Some(refresh_request(http, &config.anthropic, refresh_token))
    }
}

/// A fresh PKCE pair and state, and the URL the person opens.
fn authorization_request(cfg: &AnthropicOauth) -> (String, FlowSecret) {
    let verifier = PkceCodeVerifier::new(PkceCodeChallenge::new_random_sha256().1.secret().clone());
    let state = CsrfToken::new_random();
    let url = authorization_url(cfg, verifier.secret(), state.secret());
    let secret = FlowSecret::Authorization {
        verifier: Secret::new(verifier.secret().clone()),
        state: Secret::new(state.secret().clone()),
    };
    (url, secret)
}

/// The URL the person opens, rebuilt from a flow's verifier and state: the
/// same every time, so a pending sign-in can be resumed after a reload
/// without keeping the URL (it carries the state) anywhere but encrypted.
fn authorization_url(cfg: &AnthropicOauth, verifier: &str, state: &str) -> String {
    let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(verifier.to_owned()));
    let mut url = url::Url::parse(&cfg.authorize_url)
        .unwrap_or_else(|_| url::Url::parse("https://invalid.invalid/").expect("static URL"));
    url.query_pairs_mut()
        .append_pair("code", "true")
        .append_pair("client_id", &cfg.client_id)
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", &cfg.redirect_uri)
        .append_pair("scope", &cfg.scope)
        .append_pair("code_challenge", challenge.as_str())
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", state);
    url.to_string()
}

/// Exchanges a pasted authorization code.
async fn exchange_code(
    client: &reqwest::Client,
    cfg: &AnthropicOauth,
    code: &str,
    state: &str,
    verifier: &Secret,
) -> Result<Tokens, ProviderError> {
    let request = client.post(&cfg.token_url).json(&json!({
        "grant_type": "authorization_code",
        "code": code,
        "state": state,
        "client_id": cfg.client_id,
        "redirect_uri": cfg.redirect_uri,
        "code_verifier": verifier.expose(),
    }));
    let (status, body) = http::send(request).await.map_err(|m| unreachable_error("Anthropic", &m))?;
    if status >= 500 {
        return Err(unreachable_error("Anthropic", &format!("it answered {status}")));
    }
    if status >= 300 {
        return Err(ProviderError {
            message: "Anthropic did not accept the code: it may be mistyped, used already, or expired; start again"
                .into(),
            transient: false,
        });
    }
    tokens_from(&body, Utc::now()).ok_or_else(|| super::signin::not_understood("Anthropic"))
}

fn refresh_request(client: &reqwest::Client, cfg: &AnthropicOauth, refresh_token: &Secret) -> reqwest::RequestBuilder {
    client.post(&cfg.token_url).json(&json!({
        "grant_type": "refresh_token",
        "refresh_token": refresh_token.expose(),
        "client_id": cfg.client_id,
    }))
}

// --- Checking a credential with Anthropic -----------------------------------

/// Where Anthropic's API is (`SESAME_PROVIDERS__ANTHROPIC__API_URL`).
pub const API_URL: &str = "https://api.anthropic.com";

/// `[providers.anthropic]`: where Anthropic's API is.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    pub api_url: String,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings { api_url: API_URL.into() }
    }
}

/// The Messages API version `/v1/models` is asked with.
const API_VERSION: &str = "2023-06-01";
/// The beta flag under which Anthropic accepts OAuth access tokens.
const OAUTH_BETA: &str = "oauth-2025-04-20";

const KEY_REFUSED: &str = "Anthropic refused this API key (it was revoked, or is not a whole key): check you \
     copied the entire key, or create a new key in the provider's console (console.anthropic.com → API Keys) \
     and save it again.";

const TOKEN_REFUSED: &str = "Anthropic refused this Claude subscription token (it expired or was revoked): \
     re-run `claude setup-token` and save the new token, check you copied the entire token (it starts with \
     sk-ant-oat01-), and verify your subscription is active.";

/// Anthropic's error type: `{"type":"error","error":{"type":"permission_error",…}}`.
fn is_permission_error(answer: &Result<(u16, serde_json::Value), String>) -> bool {
    matches!(answer, Ok((403, body)) if body["error"]["type"].as_str() == Some("permission_error"))
}

fn check<'a>(http: &'a reqwest::Client, config: &'a ProvidersConfig, probe: Probe<'a>) -> BoxFuture<'a, Outcome> {
    let base = config.anthropic.api_url.as_str();
    Box::pin(async move {
        match probe {
            Probe::ApiKey(key) => check_api_key_with(http, base, key).await,
            Probe::Subscription { access_token, .. } => check_subscription(http, base, access_token).await,
        }
    })
}

/// An API key: `GET /v1/models` with `x-api-key`. A 403 `permission_error`
/// is a key that may not be used: refused too.
pub async fn check_api_key_with(http: &reqwest::Client, base: &str, key: &str) -> Outcome {
    let url = format!("{}/v1/models", base.trim_end_matches('/'));
    let answer = http::send(http.get(url).header("x-api-key", key).header("anthropic-version", API_VERSION)).await;
    if is_permission_error(&answer) {
        return Outcome::invalid(KEY_REFUSED);
    }
    conclude(&answer, KEY_REFUSED)
}

/// A subscription token (setup-token or OAuth login): `GET
/// /api/oauth/profile` as a Bearer token under the OAuth beta, never as
/// `x-api-key`. Setup-tokens lack the `user:profile` scope and get 403
/// `permission_error`, which still proves the token authenticated.
pub async fn check_subscription(http: &reqwest::Client, base: &str, access_token: &str) -> Outcome {
    let answer = http::send(profile_request(http, base, access_token)).await;
    if is_permission_error(&answer) {
        return Outcome::valid();
    }
    conclude(&answer, TOKEN_REFUSED)
}

fn profile_request(http: &reqwest::Client, base: &str, access_token: &str) -> reqwest::RequestBuilder {
    let url = format!("{}/api/oauth/profile", base.trim_end_matches('/'));
    http.get(url)
        .bearer_auth(access_token)
        .header("anthropic-beta", OAUTH_BETA)
        .header("anthropic-version", API_VERSION)
}

/// Whose Claude login an access token is: `account.uuid` of `GET
/// /api/oauth/profile`. A login without the `user:profile` scope (a
/// setup-token) is refused there (403), so it cannot say.
/// The registry's reading: the Claude account Anthropic's profile names.
fn login_account_of<'a>(apis: ProviderApis<'a>, secret: &'a SubscriptionSecret) -> BoxFuture<'a, Account> {
    Box::pin(profile_account(apis.http, &apis.config.anthropic.api_url, secret.access_token.expose()))
}

pub async fn profile_account(http: &reqwest::Client, base: &str, access_token: &str) -> Account {
    match http::send(profile_request(http, base, access_token)).await {
        Ok((200, body)) => match body["account"]["uuid"].as_str().map(str::trim) {
            Some(uuid) if !uuid.is_empty() && uuid.len() <= 128 && uuid.bytes().all(|b| b.is_ascii_graphic()) => {
                Account::Known(uuid.to_owned())
            }
            _ => Account::Unknown("Anthropic's profile of the login names no account".into()),
        },
        Ok((status @ (401 | 403), _)) => {
            Account::Unknown(format!("Anthropic refused to show the login's profile (HTTP {status})"))
        }
        answer => match conclude(&answer, TOKEN_REFUSED) {
            Outcome { message: Some(why), .. } => Account::Unreachable(why),
            Outcome { message: None, .. } => Account::Unknown("Anthropic gave no profile".into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::samples::*;
    use crate::providers::ApiKey;

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
}
