//! GitHub, for Copilot: the token kinds Copilot accepts (and the classic
//! kind it refuses), and RFC 8628 device sign-in.

use chrono::{DateTime, Duration, Utc};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::check::{conclude, Outcome, Probe};
use super::revoke::{confirmed, Revocation, RevokeAt};
use super::signin::{
    error_code, foreign_secret, not_understood, printable_code, tokens_from, unreachable_error, SignIn,
};
use super::Egress;
use super::{
    http, wrong_prefix, DeviceStart, FlowSecret, OauthConfig, Poll, ProviderError, ProviderSpec, ProvidersConfig,
    RefreshTokens,
};
use crate::credential_input::{
    check_token_body, clean, InputError, InputResult, Secret, SubscriptionFields, SubscriptionSecret, MAX_INPUT_BYTES,
};
use crate::domain::CheckResult;
use crate::domain::Provider;

/// Token kinds the Copilot CLI accepts: fine-grained PAT, OAuth, GitHub App user.
pub const ACCEPTED_PREFIXES: &[&str] = &["github_pat_", "gho_", "ghu_"];
/// Classic personal access tokens, which Copilot refuses.
pub const CLASSIC_PREFIX: &str = "ghp_";

pub const GHP_REFUSAL: &str = "Classic GitHub tokens (ghp_…) are not accepted by Copilot: create a \
     fine-grained personal access token with the Copilot permission (it starts with github_pat_) \
     and paste that instead.";

pub static SPEC: ProviderSpec = ProviderSpec {
    provider: Provider::Github,
    name: "GitHub",
    api_key_env: "COPILOT_GITHUB_TOKEN",
    token_env: "COPILOT_GITHUB_TOKEN",
    check_api_key: |key| check_token(key, "key"),
    kinds: &[
        ("github_pat_", "a GitHub token"),
        ("gho_", "a GitHub token"),
        ("ghu_", "a GitHub token"),
        ("ghp_", "a classic GitHub token"),
        ("ghs_", "a GitHub app installation token"),
        ("ghr_", "a GitHub refresh token"),
    ],
    hint_prefixes: &["github_pat_", "gho_", "ghu_"],
    subscription_plans: &["Copilot Individual ($10/mo)", "Copilot Business ($19/mo)", "Copilot Enterprise"],
    refresh: RefreshTokens::None,
    sign_in: Some(&GithubSignIn),
    login_account: None,
    check_with_provider: check,
    revocation: Revocation {
        api_key_page: "https://github.com/settings/personal-access-tokens",
        login_page: "https://github.com/settings/personal-access-tokens (fine-grained tokens) or \
             https://github.com/settings/applications (sign-ins)",
        revoke: Some(revoke),
    },
    // Copilot asks api.github.com, then the Copilot API host GitHub
    // announces for the account's plan.
    egress: Egress {
        hosts: &[
            "api.github.com",
            "api.githubcopilot.com",
            "api.individual.githubcopilot.com",
            "api.business.githubcopilot.com",
            "api.enterprise.githubcopilot.com",
        ],
        token_endpoints: &[],
        placeholder_prefixes: &["github_pat_", "gho_", "ghu_", "ghp_"],
    },
};

/// Copilot accepts fine-grained PATs, OAuth and GitHub App user tokens only.
fn check_token(token: &str, field: &str) -> InputResult<()> {
    if token.starts_with(CLASSIC_PREFIX) {
        return Err(InputError::new(GHP_REFUSAL));
    }
    if !ACCEPTED_PREFIXES.iter().any(|p| token.starts_with(p)) {
        return Err(wrong_prefix(
            "A Copilot token (a fine-grained personal access token, or a GitHub OAuth or app \
             user token)",
            ACCEPTED_PREFIXES,
            token,
        ));
    }
    check_token_body(token, field, "GitHub token")
}

/// A pasted GitHub token as a subscription: a fine-grained PAT, OAuth or
/// GitHub App user token, used as it is.
pub fn parse_pasted(
    agent_name: &str,
    fields: &SubscriptionFields<'_>,
    expires_at: Option<DateTime<Utc>>,
) -> InputResult<(SubscriptionSecret, Option<DateTime<Utc>>)> {
    if fields.auth_json.is_some() {
        return Err(InputError::new(format!(
            "authJson is only for Codex's ~/.codex/auth.json; for {agent_name} paste a fine-grained \
             GitHub token (starts with github_pat_) into token."
        )));
    }
    if fields.refresh_token.is_some() {
        return Err(InputError::new(format!("{agent_name} uses the token as it is; leave refreshToken empty.")));
    }
    let Some((raw, field)) = fields.pasted_token()? else {
        return Err(InputError::new(
            "token is missing: create a fine-grained GitHub token with the Copilot permission \
             and paste it (starts with github_pat_).",
        ));
    };
    let token = clean(raw, field, MAX_INPUT_BYTES)?;
    check_token(token, field)?;
    Ok((SubscriptionSecret::access_only(Secret::new(token.to_owned())), expires_at))
}

// ---------------------------------------------------------------------------
// Device sign-in
// ---------------------------------------------------------------------------

/// `[oauth.github]`: GitHub device sign-in; defaults are github.com and
/// Copilot's public client id.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GithubOauth {
    pub client_id: String,
    pub device_authorization_url: String,
    pub token_url: String,
    pub scope: String,
}

impl Default for GithubOauth {
    fn default() -> Self {
        GithubOauth {
            client_id: "Iv1.b507a08c87ecfe98".into(),
            device_authorization_url: "https://github.com/login/device/code".into(),
            token_url: "https://github.com/login/oauth/access_token".into(),
            scope: "read:user".into(),
        }
    }
}

/// GitHub's device sign-in (Copilot); its tokens are not refreshed.
pub struct GithubSignIn;

impl SignIn for GithubSignIn {
    fn start_device<'a>(
        &'a self,
        http: &'a reqwest::Client,
        config: &'a OauthConfig,
    ) -> Option<BoxFuture<'a, Result<DeviceStart, ProviderError>>> {
        Some(Box::pin(start_device(http, &config.github)))
    }

    fn poll<'a>(
        &'a self,
        http: &'a reqwest::Client,
        config: &'a OauthConfig,
        secret: &'a FlowSecret,
    ) -> BoxFuture<'a, Poll> {
        Box::pin(async move {
            match secret {
                FlowSecret::GithubDevice { device_code } => poll(http, &config.github, device_code).await,
                _ => foreign_secret("GitHub"),
            }
        })
    }
}

async fn start_device(client: &reqwest::Client, cfg: &GithubOauth) -> Result<DeviceStart, ProviderError> {
    let request = client
        .post(&cfg.device_authorization_url)
        .form(&[("client_id", cfg.client_id.as_str()), ("scope", cfg.scope.as_str())]);
    let (status, body) = http::send(request).await.map_err(|m| unreachable_error("GitHub", &m))?;
    if status >= 500 {
        return Err(unreachable_error("GitHub", &format!("it answered {status}")));
    }
    if let Some(code) = error_code(&body) {
        return Err(ProviderError {
            message: format!(
                "GitHub refused to start the sign-in ({code}); device sign-in may be disabled for this app"
            ),
            transient: false,
        });
    }
    let parsed: oauth2::StandardDeviceAuthorizationResponse =
        serde_json::from_value(body).map_err(|_| not_understood("GitHub"))?;
    Ok(DeviceStart {
        secret: FlowSecret::GithubDevice { device_code: Secret::new(parsed.device_code().secret().clone()) },
        user_code: parsed.user_code().secret().clone(),
        verification_uri: parsed.verification_uri().to_string(),
        verification_uri_complete: parsed.verification_uri_complete().map(|u| u.secret().clone()),
        expires_in: Duration::from_std(parsed.expires_in()).unwrap_or(Duration::minutes(15)),
        interval: parsed.interval().as_secs().clamp(1, 300) as u32,
    })
}

async fn poll(client: &reqwest::Client, cfg: &GithubOauth, device_code: &Secret) -> Poll {
    let request = client.post(&cfg.token_url).form(&[
        ("client_id", cfg.client_id.as_str()),
        ("device_code", device_code.expose()),
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
    ]);
    let (status, body) = match http::send(request).await {
        Ok(r) => r,
        Err(m) => return Poll::Transient(format!("GitHub: {m}")),
    };
    if status >= 500 {
        return Poll::Transient(format!("GitHub answered {status}"));
    }
    if let Some(code) = error_code(&body) {
        return match code.as_str() {
            "authorization_pending" => Poll::Pending,
            "slow_down" => Poll::SlowDown,
            "access_denied" => Poll::Denied("the sign-in was declined at GitHub".into()),
            "expired_token" => Poll::Expired("the code expired before the sign-in was completed; start again".into()),
            "device_flow_disabled" => Poll::Failed("device sign-in is disabled for this GitHub app".into()),
            "incorrect_device_code" => Poll::Failed("GitHub no longer knows this sign-in; start again".into()),
            _ => Poll::Failed(format!("GitHub refused the sign-in ({})", printable_code(&code))),
        };
    }
    match tokens_from(&body, Utc::now()) {
        Some(tokens) if status < 300 => Poll::Authorized(tokens),
        _ => Poll::Failed("GitHub answered in a way sesame-vault does not understand".into()),
    }
}

// --- Checking a token with GitHub -------------------------------------------

/// Where GitHub's API is (`SESAME_PROVIDERS__GITHUB__API_URL`).
pub const API_URL: &str = "https://api.github.com";

/// `[providers.github]`: where GitHub's API is.
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

const TOKEN_REFUSED: &str = "GitHub refused this token (Bad credentials: it expired or was revoked): check you \
     copied the entire token, or create a new fine-grained token with the Copilot permission (or sign in with \
     GitHub again) and save it.";

const NO_COPILOT: &str = "GitHub accepted this token, but this GitHub account has no Copilot access: verify your \
     subscription is active (github.com/settings/copilot), or use a token of an account that has Copilot.";

fn check<'a>(http: &'a reqwest::Client, config: &'a ProvidersConfig, probe: Probe<'a>) -> BoxFuture<'a, Outcome> {
    Box::pin(check_token_with(http, &config.github.api_url, probe.credential()))
}

/// A token for Copilot: `GET /user` proves the token, then `GET
/// /copilot_internal/user` whether the account has Copilot (403/404: no).
pub async fn check_token_with(http: &reqwest::Client, base: &str, token: &str) -> Outcome {
    let get = |path: &str| {
        http.get(format!("{}{path}", base.trim_end_matches('/')))
            .bearer_auth(token)
            .header("x-github-api-version", "2022-11-28")
    };
    let user = conclude(&http::send(get("/user")).await, TOKEN_REFUSED);
    if user.result != CheckResult::Valid {
        return user;
    }
    match http::send(get("/copilot_internal/user")).await {
        // GitHub also answers 403 when its rate limit is spent: that says
        // nothing about Copilot on the account.
        Ok((403, body)) if is_rate_limited(&body) => {
            Outcome::unreachable("GitHub's rate limit is spent for now; the check is tried again later")
        }
        Ok((403 | 404, _)) => Outcome::no_access(NO_COPILOT),
        answer => conclude(&answer, TOKEN_REFUSED),
    }
}

/// GitHub's rate-limit refusal: 403 with a message about the rate limit.
fn is_rate_limited(body: &serde_json::Value) -> bool {
    body.get("message").and_then(|m| m.as_str()).is_some_and(|m| m.to_ascii_lowercase().contains("rate limit"))
}

// --- Revoking a sign-in ------------------------------------------------------

/// `POST {api_url}/credentials/revoke`, unauthenticated, `{"credentials":
/// [token]}`; GitHub answers 202 when it accepted the revocation.
fn revoke<'a>(
    client: &'a reqwest::Client,
    at: &'a RevokeAt<'a>,
    secret: &'a SubscriptionSecret,
) -> BoxFuture<'a, Result<(), String>> {
    Box::pin(async move {
        let url = format!("{}/credentials/revoke", at.apis.github.api_url.trim_end_matches('/'));
        let request = client
            .post(url)
            .header("x-github-api-version", "2022-11-28")
            .json(&serde_json::json!({ "credentials": [secret.access_token.expose()] }));
        confirmed(request, 202, "GitHub").await
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::samples::*;
    use crate::providers::ApiKey;

    #[test]
    fn github_rules_refuse_classic_tokens() {
        let classic = format!("ghp_{MARK}0123456789abcdefghij");
        let msg = refused(ApiKey::parse(Provider::Github, &classic), &classic);
        assert!(msg.contains("Classic GitHub tokens (ghp_…) are not accepted by Copilot"), "{msg}");
        assert!(msg.contains("fine-grained personal access token with the Copilot permission"));

        let other = format!("ghs_{MARK}0123456789abcdefghij");
        let msg = refused(ApiKey::parse(Provider::Github, &other), &other);
        for p in ACCEPTED_PREFIXES {
            assert!(msg.contains(p), "{msg}");
        }
    }
}
