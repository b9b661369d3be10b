//! OpenAI: API keys, ChatGPT logins (JWT access tokens carrying the
//! account id, opaque single-use refresh tokens), and its device login:
//! user code, poll, then an authorization-code exchange with the PKCE
//! verifier the poll returns; and refresh.

use chrono::{Duration, Utc};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::check::{conclude, Outcome, Probe};
use super::revoke::{confirmed, Revocation, RevokeAt};
use super::signin::{error_code, foreign_secret, not_understood, tokens_from, unreachable_error, SignIn};
use super::Egress;
use super::{
    http, jwt, wrong_prefix, Account, DeviceStart, FlowSecret, OauthConfig, Poll, ProviderApis, ProviderError,
    ProviderSpec, ProvidersConfig, RefreshTokens,
};
use crate::credential_input::{
    check_opaque_token, check_token_body, clean, too_short, InputError, InputResult, Secret, SubscriptionSecret,
    MAX_INPUT_BYTES, MIN_TOKEN_CHARS,
};
use crate::domain::Provider;

pub const API_KEY_PREFIX: &str = "sk-";
/// Where ChatGPT tokens keep their claims, including the account id.
pub const AUTH_CLAIM: &str = "https://api.openai.com/auth";

pub static SPEC: ProviderSpec = ProviderSpec {
    provider: Provider::Openai,
    name: "OpenAI",
    api_key_env: "OPENAI_API_KEY",
    token_env: "OPENAI_API_KEY",
    check_api_key,
    kinds: &[("sk-", "an OpenAI API key"), ("eyJ", "a JWT access token")],
    hint_prefixes: &["sk-proj-", "eyJ", "sk-"],
    subscription_plans: &["ChatGPT Plus ($20/mo)", "ChatGPT Pro ($200/mo)"],
    // A refresh token works once: the newest must be kept, and two holders
    // must never both spend it.
    refresh: RefreshTokens::SingleUse,
    sign_in: Some(&OpenaiSignIn),
    login_account: Some(login_account_of),
    check_with_provider: check,
    revocation: Revocation {
        api_key_page: "https://platform.openai.com/api-keys",
        login_page: "https://chatgpt.com/#settings/Security",
        revoke: Some(revoke),
    },
    // Codex with a ChatGPT login talks to chatgpt.com; with an API key it
    // also sends the key to chatgpt.com's models list.
    egress: Egress {
        hosts: &["api.openai.com", "chatgpt.com"],
        token_endpoints: &[("auth.openai.com", "/oauth/token")],
        placeholder_prefixes: &["sk-proj-", "sk-svcacct-", "sk-"],
    },
};

fn check_api_key(key: &str) -> InputResult<()> {
    if key.starts_with("sk-ant-") {
        return Err(InputError::new(
            "That is an Anthropic key (sk-ant-…), not an OpenAI key: add it with provider \
             ANTHROPIC instead.",
        ));
    }
    if !key.starts_with(API_KEY_PREFIX) {
        return Err(wrong_prefix("An OpenAI API key", &[API_KEY_PREFIX], key));
    }
    check_token_body(key, "key", "OpenAI API key")
}

/// The ChatGPT account id a ChatGPT JWT carries, if any.
pub fn account_id(token: &str) -> Option<String> {
    let claims = jwt::claims(token)?;
    let id = claims.get(AUTH_CLAIM)?.get("chatgpt_account_id")?.as_str()?.trim();
    (!id.is_empty()).then(|| id.to_owned())
}

/// The ChatGPT account a login belongs to, as its tokens say: the access
/// token's claim, else the id_token's. The one derivation saves and
/// returned files share.
pub fn login_account(access_token: &Secret, id_token: Option<&Secret>) -> Option<String> {
    account_id(access_token.expose()).or_else(|| id_token.and_then(|t| account_id(t.expose())))
}

/// The registry's reading: the ChatGPT account id from the tokens alone.
fn login_account_of<'a>(_apis: ProviderApis<'a>, secret: &'a SubscriptionSecret) -> BoxFuture<'a, Account> {
    let account = match login_account(&secret.access_token, secret.id_token.as_ref()) {
        Some(id) => Account::Known(id),
        None => Account::Unknown("its tokens carry no ChatGPT account id".into()),
    };
    Box::pin(std::future::ready(account))
}

/// A ChatGPT access token as typed into `field`.
pub fn check_access_token<'a>(raw: &'a str, field: &str) -> InputResult<&'a str> {
    let token = clean(raw, field, MAX_INPUT_BYTES)?;
    if token.starts_with(API_KEY_PREFIX) {
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
    if token.starts_with("eyJ") && !jwt::is_jwt(token) {
        return Err(InputError::new(format!(
            "{field} looks like a JWT but is incomplete; copy the whole access token again."
        )));
    }
    Ok(token)
}

/// A ChatGPT access token typed on its own, with an optional refresh token.
pub fn parse_tokens(raw: &str, field: &str, refresh: Option<&str>) -> InputResult<SubscriptionSecret> {
    let access = check_access_token(raw, field)?;
    let refresh = match refresh {
        Some(raw) => Some(check_opaque_token(raw, "refreshToken")?),
        None => None,
    };
    let mut secret = SubscriptionSecret::access_only(Secret::new(access.to_owned()));
    secret.refresh_token = refresh.map(|r| Secret::new(r.to_owned()));
    Ok(secret)
}

// ---------------------------------------------------------------------------
// Device login and refresh
// ---------------------------------------------------------------------------

/// `[oauth.openai]`: OpenAI's device login (Codex, OpenCode); endpoints
/// hang off the issuer. Defaults are auth.openai.com and Codex's client id.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenaiOauth {
    pub client_id: String,
    pub issuer: String,
}

impl Default for OpenaiOauth {
    fn default() -> Self {
        OpenaiOauth { client_id: "app_EMoamEEZ73f0CkXaXp7hrann".into(), issuer: "https://auth.openai.com".into() }
    }
}

impl OpenaiOauth {
    fn issuer(&self) -> &str {
        self.issuer.trim_end_matches('/')
    }
}

/// OpenAI's device login (ChatGPT: Codex, OpenCode) and its single-use refresh.
pub struct OpenaiSignIn;

impl SignIn for OpenaiSignIn {
    fn start_device<'a>(
        &'a self,
        http: &'a reqwest::Client,
        config: &'a OauthConfig,
    ) -> Option<BoxFuture<'a, Result<DeviceStart, ProviderError>>> {
        Some(Box::pin(start_device(http, &config.openai)))
    }

    fn poll<'a>(
        &'a self,
        http: &'a reqwest::Client,
        config: &'a OauthConfig,
        secret: &'a FlowSecret,
    ) -> BoxFuture<'a, Poll> {
        Box::pin(async move {
            match secret {
                FlowSecret::OpenaiDevice { device_auth_id, user_code } => {
                    poll(http, &config.openai, device_auth_id, user_code).await
                }
                _ => foreign_secret("OpenAI"),
            }
        })
    }

    fn refresh_request(
        &self,
        http: &reqwest::Client,
        config: &OauthConfig,
        refresh_token: &Secret,
    ) -> Option<reqwest::RequestBuilder> {
        Some(refresh_request(http, &config.openai, refresh_token))
    }
}

async fn start_device(client: &reqwest::Client, cfg: &OpenaiOauth) -> Result<DeviceStart, ProviderError> {
    let url = format!("{}/api/accounts/deviceauth/usercode", cfg.issuer());
    let request = client.post(url).json(&json!({ "client_id": cfg.client_id }));
    let (status, body) = http::send(request).await.map_err(|m| unreachable_error("OpenAI", &m))?;
    if status == 404 {
        return Err(ProviderError {
            message: "device code sign-in is not enabled for this ChatGPT account: enable it in ChatGPT's security settings, then start again".into(),
            transient: false,
        });
    }
    if status >= 500 {
        return Err(unreachable_error("OpenAI", &format!("it answered {status}")));
    }
    let device_auth_id = body["device_auth_id"].as_str();
    let user_code = body["user_code"].as_str().or(body["usercode"].as_str());
    let (Some(device_auth_id), Some(user_code), true) = (device_auth_id, user_code, status < 300) else {
        return Err(not_understood("OpenAI"));
    };
    // The interval may come as a number or a string.
    let interval =
        body["interval"].as_u64().or_else(|| body["interval"].as_str().and_then(|s| s.parse().ok())).unwrap_or(5);
    Ok(DeviceStart {
        secret: FlowSecret::OpenaiDevice {
            device_auth_id: Secret::new(device_auth_id.to_owned()),
            user_code: user_code.to_owned(),
        },
        user_code: user_code.to_owned(),
        verification_uri: format!("{}/codex/device", cfg.issuer()),
        verification_uri_complete: None,
        expires_in: Duration::minutes(15),
        interval: interval.clamp(1, 300) as u32,
    })
}

async fn poll(client: &reqwest::Client, cfg: &OpenaiOauth, device_auth_id: &Secret, user_code: &str) -> Poll {
    let url = format!("{}/api/accounts/deviceauth/token", cfg.issuer());
    let request = client.post(url).json(&json!({ "device_auth_id": device_auth_id.expose(), "user_code": user_code }));
    let (status, body) = match http::send(request).await {
        Ok(r) => r,
        Err(m) => return Poll::Transient(format!("OpenAI: {m}")),
    };
    match status {
        403 | 404 => return Poll::Pending,
        s if s >= 500 => return Poll::Transient(format!("OpenAI answered {s}")),
        s if s >= 300 => {
            return match error_code(&body).as_deref() {
                Some("slow_down") => Poll::SlowDown,
                Some("access_denied") => Poll::Denied("the sign-in was declined at OpenAI".into()),
                Some("expired_token") => {
                    Poll::Expired("the code expired before the sign-in was completed; start again".into())
                }
                _ => Poll::Failed(format!("OpenAI refused the sign-in (HTTP {s})")),
            }
        }
        _ => {}
    }
    let (Some(code), Some(verifier)) = (body["authorization_code"].as_str(), body["code_verifier"].as_str()) else {
        return Poll::Failed("OpenAI answered in a way sesame-vault does not understand".into());
    };
    let issuer = cfg.issuer();
    let request = client.post(format!("{issuer}/oauth/token")).form(&[
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", &format!("{issuer}/deviceauth/callback")),
        ("client_id", &cfg.client_id),
        ("code_verifier", verifier),
    ]);
    match http::send(request).await {
        Err(m) => Poll::Transient(format!("OpenAI: {m}")),
        Ok((s, _)) if s >= 500 => Poll::Transient(format!("OpenAI answered {s}")),
        Ok((s, body)) if s < 300 => match tokens_from(&body, Utc::now()) {
            Some(tokens) => Poll::Authorized(tokens),
            None => Poll::Failed("OpenAI answered in a way sesame-vault does not understand".into()),
        },
        Ok((s, _)) => Poll::Failed(format!("OpenAI refused to issue tokens (HTTP {s})")),
    }
}

fn refresh_request(client: &reqwest::Client, cfg: &OpenaiOauth, refresh_token: &Secret) -> reqwest::RequestBuilder {
    client.post(format!("{}/oauth/token", cfg.issuer())).json(&json!({
        "client_id": cfg.client_id,
        "grant_type": "refresh_token",
        "refresh_token": refresh_token.expose(),
    }))
}

// --- Checking a credential with OpenAI ---------------------------------------

/// Where OpenAI's API and ChatGPT's backend are
/// (`SESAME_PROVIDERS__OPENAI__API_URL`, `__CHATGPT_URL`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    pub api_url: String,
    /// Where ChatGPT logins (Codex, OpenCode) are checked.
    pub chatgpt_url: String,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings { api_url: "https://api.openai.com".into(), chatgpt_url: "https://chatgpt.com/backend-api".into() }
    }
}

const KEY_REFUSED: &str = "OpenAI refused this API key (invalid_api_key: it was revoked, or is not a whole key): \
     check you copied the entire key, or create a new key in the provider's console (platform.openai.com → API \
     keys) and save it again.";

const LOGIN_REFUSED: &str = "ChatGPT refused this login (it expired or was revoked): run `codex login \
     --device-auth` again and save the new ~/.codex/auth.json (or sign in again here), and verify your \
     subscription is active.";

fn check<'a>(http: &'a reqwest::Client, config: &'a ProvidersConfig, probe: Probe<'a>) -> BoxFuture<'a, Outcome> {
    let settings = &config.openai;
    Box::pin(async move {
        match probe {
            Probe::ApiKey(key) => check_api_key_with(http, &settings.api_url, key).await,
            Probe::Subscription { access_token, account_id } => {
                check_login(http, &settings.chatgpt_url, access_token, account_id).await
            }
        }
    })
}

/// An API key: `GET /v1/models` as a Bearer token.
pub async fn check_api_key_with(http: &reqwest::Client, base: &str, key: &str) -> Outcome {
    let url = format!("{}/v1/models", base.trim_end_matches('/'));
    conclude(&http::send(http.get(url).bearer_auth(key)).await, KEY_REFUSED)
}

/// A ChatGPT login: `GET /wham/usage` on ChatGPT's backend with the
/// account id, as Codex itself asks. The access token only: a check never
/// spends the single-use refresh token.
pub async fn check_login(http: &reqwest::Client, base: &str, access_token: &str, account: Option<&str>) -> Outcome {
    let url = format!("{}/wham/usage", base.trim_end_matches('/'));
    let mut request = http
        .get(url)
        .bearer_auth(access_token)
        .header("user-agent", concat!("sesame-vault/", env!("CARGO_PKG_VERSION"), " (credential check)"));
    if let Some(account) = account {
        request = request.header("chatgpt-account-id", account);
    }
    conclude(&http::send(request).await, LOGIN_REFUSED)
}

// --- Revoking a sign-in ------------------------------------------------------

/// `POST {issuer}/oauth/revoke` (RFC 7009 form: `token`, `token_type_hint`,
/// `client_id`), the refresh token when there is one (it ends the login),
/// else the access token; 200 when OpenAI revoked it.
fn revoke<'a>(
    client: &'a reqwest::Client,
    at: &'a RevokeAt<'a>,
    secret: &'a SubscriptionSecret,
) -> BoxFuture<'a, Result<(), String>> {
    Box::pin(async move {
        let cfg = &at.oauth.openai;
        let (token, hint) = match &secret.refresh_token {
            Some(refresh) => (refresh, "refresh_token"),
            None => (&secret.access_token, "access_token"),
        };
        let request = client.post(format!("{}/oauth/revoke", cfg.issuer())).form(&[
            ("token", token.expose()),
            ("token_type_hint", hint),
            ("client_id", cfg.client_id.as_str()),
        ]);
        confirmed(request, 200, "OpenAI").await
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::samples::*;
    use crate::providers::ApiKey;

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
}
