//! The providers' sign-in protocols, one HTTP exchange per call, so the
//! flow engine controls timing, persistence and cancellation:
//! - GitHub: RFC 8628 device authorization;
//! - OpenAI: its device login (user code, poll, then an authorization-code
//!   exchange with the PKCE verifier the poll returns), and refresh;
//! - Anthropic: authorization code with PKCE S256, pasted back as `code#state`,
//!   and refresh.
//!
//! The HTTP client follows no redirects (a provider URL must not become a
//! way to reach other hosts) and has timeouts.

use chrono::{DateTime, Duration, Utc};
use oauth2::{CsrfToken, PkceCodeChallenge};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::OauthConfig;
use crate::credential_input::{jwt_expiry, Secret, SubscriptionSecret};
use crate::domain::Provider;

/// What the flow must remember between polls; stored encrypted.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FlowSecret {
    GithubDevice { device_code: Secret },
    OpenaiDevice { device_auth_id: Secret, user_code: String },
    Authorization { verifier: Secret, state: Secret },
}

/// A started device flow.
pub struct DeviceStart {
    pub secret: FlowSecret,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    pub expires_in: Duration,
    pub interval: u32,
}

/// The result of one poll.
pub enum Poll {
    Pending,
    SlowDown,
    Authorized(Tokens),
    Denied(String),
    Expired(String),
    /// Permanent: the flow ends FAILED with this message.
    Failed(String),
    /// Network trouble or a 5xx: retry with backoff.
    Transient(String),
}

/// Tokens a provider issued.
pub struct Tokens {
    pub secret: SubscriptionSecret,
    pub expires_at: Option<DateTime<Utc>>,
}

/// The result of a refresh.
pub enum Refresh {
    Refreshed(Tokens),
    /// The provider refused the refresh token for good: sign in again.
    Permanent(String),
    Transient(String),
}

/// A provider error for the person, and whether retrying could help.
#[derive(Debug)]
pub struct ProviderError {
    pub message: String,
    pub transient: bool,
}

pub struct Providers {
    http: reqwest::Client,
    config: OauthConfig,
}

/// A provider's error body: `{"error": "...", "error_description": "..."}`,
/// or OpenAI's `{"error": {"code": "...", "message": "..."}}`.
fn error_code(body: &Value) -> Option<String> {
    match &body["error"] {
        Value::String(code) => Some(code.clone()),
        Value::Object(obj) => obj.get("code").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

fn secret_field(body: &Value, name: &str) -> Option<Secret> {
    body[name].as_str().filter(|s| !s.is_empty() && s.len() <= 16 * 1024).map(|s| Secret::new(s.to_owned()))
}

/// A token response (`access_token`, optional `refresh_token`, `id_token`,
/// `expires_in`, `scope`) into what the vault stores.
fn tokens_from(body: &Value, now: DateTime<Utc>) -> Option<Tokens> {
    let access_token = secret_field(body, "access_token")?;
    let expires_at =
        body["expires_in"].as_i64().map(|s| now + Duration::seconds(s)).or_else(|| jwt_expiry(access_token.expose()));
    let id_token = secret_field(body, "id_token");
    let account_id = id_token
        .as_ref()
        .or(Some(&access_token))
        .and_then(|t| jwt_claim(t.expose(), "https://api.openai.com/auth"))
        .and_then(|auth| auth["chatgpt_account_id"].as_str().map(str::to_owned));
    let scopes =
        body["scope"].as_str().map(|s| s.split([' ', ',']).filter(|s| !s.is_empty()).map(str::to_owned).collect());
    Some(Tokens {
        secret: SubscriptionSecret {
            access_token,
            refresh_token: secret_field(body, "refresh_token"),
            id_token,
            account_id,
            last_refresh: Some(now),
            scopes: scopes.unwrap_or_default(),
        },
        expires_at,
    })
}

fn jwt_claim(token: &str, claim: &str) -> Option<Value> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice::<Value>(&bytes).ok()?.get(claim).cloned()
}

/// Permanent refresh refusals (single-use tokens reused, revoked, expired).
/// Anything else (say `invalid_client` from a misconfigured client id) is
/// retried and logged, rather than signing every user out at once.
const PERMANENT_REFRESH_ERRORS: &[&str] =
    &["invalid_grant", "refresh_token_expired", "refresh_token_reused", "refresh_token_invalidated"];

impl Providers {
    pub fn new(config: OauthConfig) -> anyhow::Result<Providers> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.http_timeout)
            .connect_timeout(config.http_timeout)
            .user_agent(concat!("sesame-vault/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Providers { http, config })
    }

    pub fn config(&self) -> &OauthConfig {
        &self.config
    }

    fn issuer(&self) -> &str {
        self.config.openai.issuer.trim_end_matches('/')
    }

    /// Sends a request; returns (status, JSON body or Null). Each call is
    /// logged at INFO and counted: host, path, status, duration — never the
    /// query string, a header or a body (they carry codes and tokens).
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<(u16, Value), String> {
        let (client, request) = request.header("accept", "application/json").build_split();
        let request = request.map_err(|_| "the provider URL is not valid".to_owned())?;
        let host = request.url().host_str().unwrap_or("").to_owned();
        let path = request.url().path().to_owned();
        let method = request.method().clone();
        let started = std::time::Instant::now();
        let sent = client.execute(request).await;
        let took = started.elapsed();
        let duration_ms = took.as_secs_f64() * 1000.0;
        let response = match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                tracing::info!(%method, host, path, status, duration_ms, "provider call");
                crate::metrics::provider_request(&host, &status.to_string(), took);
                response
            }
            Err(e) => {
                let why = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "error"
                };
                tracing::info!(%method, host, path, status = why, duration_ms, "provider call failed");
                crate::metrics::provider_request(&host, why, took);
                return Err(if e.is_timeout() {
                    "the request timed out".to_owned()
                } else {
                    "the provider could not be reached".to_owned()
                });
            }
        };
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|_| "the answer was cut off".to_owned())?;
        let body =
            if bytes.len() > 64 * 1024 { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
        Ok((status, body))
    }

    pub async fn start_device(&self, provider: Provider) -> Result<DeviceStart, ProviderError> {
        match provider {
            Provider::Github => self.start_github().await,
            Provider::Openai => self.start_openai().await,
            other => Err(ProviderError {
                message: format!("{} has no device sign-in", other.display_name()),
                transient: false,
            }),
        }
    }

    async fn start_github(&self) -> Result<DeviceStart, ProviderError> {
        let cfg = &self.config.github;
        let request = self
            .http
            .post(&cfg.device_authorization_url)
            .form(&[("client_id", cfg.client_id.as_str()), ("scope", cfg.scope.as_str())]);
        let (status, body) = self.send(request).await.map_err(|m| unreachable_error("GitHub", &m))?;
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
            serde_json::from_value(body).map_err(|_| ProviderError {
                message: "GitHub answered in a way sesame-vault does not understand".into(),
                transient: false,
            })?;
        Ok(DeviceStart {
            secret: FlowSecret::GithubDevice { device_code: Secret::new(parsed.device_code().secret().clone()) },
            user_code: parsed.user_code().secret().clone(),
            verification_uri: parsed.verification_uri().to_string(),
            verification_uri_complete: parsed.verification_uri_complete().map(|u| u.secret().clone()),
            expires_in: Duration::from_std(parsed.expires_in()).unwrap_or(Duration::minutes(15)),
            interval: parsed.interval().as_secs().clamp(1, 300) as u32,
        })
    }

    async fn start_openai(&self) -> Result<DeviceStart, ProviderError> {
        let url = format!("{}/api/accounts/deviceauth/usercode", self.issuer());
        let request = self.http.post(url).json(&json!({ "client_id": self.config.openai.client_id }));
        let (status, body) = self.send(request).await.map_err(|m| unreachable_error("OpenAI", &m))?;
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
            return Err(ProviderError {
                message: "OpenAI answered in a way sesame-vault does not understand".into(),
                transient: false,
            });
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
            verification_uri: format!("{}/codex/device", self.issuer()),
            verification_uri_complete: None,
            expires_in: Duration::minutes(15),
            interval: interval.clamp(1, 300) as u32,
        })
    }

    pub async fn poll(&self, secret: &FlowSecret) -> Poll {
        match secret {
            FlowSecret::GithubDevice { device_code } => self.poll_github(device_code).await,
            FlowSecret::OpenaiDevice { device_auth_id, user_code } => self.poll_openai(device_auth_id, user_code).await,
            FlowSecret::Authorization { .. } => Poll::Failed("this sign-in is completed by pasting a code".into()),
        }
    }

    async fn poll_github(&self, device_code: &Secret) -> Poll {
        let cfg = &self.config.github;
        let request = self.http.post(&cfg.token_url).form(&[
            ("client_id", cfg.client_id.as_str()),
            ("device_code", device_code.expose()),
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ]);
        let (status, body) = match self.send(request).await {
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
                "expired_token" => {
                    Poll::Expired("the code expired before the sign-in was completed; start again".into())
                }
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

    async fn poll_openai(&self, device_auth_id: &Secret, user_code: &str) -> Poll {
        let url = format!("{}/api/accounts/deviceauth/token", self.issuer());
        let request =
            self.http.post(url).json(&json!({ "device_auth_id": device_auth_id.expose(), "user_code": user_code }));
        let (status, body) = match self.send(request).await {
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
        let issuer = self.issuer();
        let request = self.http.post(format!("{issuer}/oauth/token")).form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &format!("{issuer}/deviceauth/callback")),
            ("client_id", &self.config.openai.client_id),
            ("code_verifier", verifier),
        ]);
        match self.send(request).await {
            Err(m) => Poll::Transient(format!("OpenAI: {m}")),
            Ok((s, _)) if s >= 500 => Poll::Transient(format!("OpenAI answered {s}")),
            Ok((s, body)) if s < 300 => match tokens_from(&body, Utc::now()) {
                Some(tokens) => Poll::Authorized(tokens),
                None => Poll::Failed("OpenAI answered in a way sesame-vault does not understand".into()),
            },
            Ok((s, _)) => Poll::Failed(format!("OpenAI refused to issue tokens (HTTP {s})")),
        }
    }

    /// A fresh PKCE pair and state, and the URL the person opens.
    pub fn authorization_request(&self) -> (String, FlowSecret) {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = CsrfToken::new_random();
        let cfg = &self.config.anthropic;
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
            .append_pair("state", state.secret());
        let secret = FlowSecret::Authorization {
            verifier: Secret::new(verifier.secret().clone()),
            state: Secret::new(state.secret().clone()),
        };
        (url.to_string(), secret)
    }

    /// Exchanges a pasted authorization code (Anthropic).
    pub async fn exchange_code(&self, code: &str, state: &str, verifier: &Secret) -> Result<Tokens, ProviderError> {
        let cfg = &self.config.anthropic;
        let request = self.http.post(&cfg.token_url).json(&json!({
            "grant_type": "authorization_code",
            "code": code,
            "state": state,
            "client_id": cfg.client_id,
            "redirect_uri": cfg.redirect_uri,
            "code_verifier": verifier.expose(),
        }));
        let (status, body) = self.send(request).await.map_err(|m| unreachable_error("Anthropic", &m))?;
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
        tokens_from(&body, Utc::now()).ok_or_else(|| ProviderError {
            message: "Anthropic answered in a way sesame-vault does not understand".into(),
            transient: false,
        })
    }

    /// Uses a refresh token once. Single-use tokens (OpenAI) must never be
    /// sent twice: callers guard this with a compare-and-swap.
    pub async fn refresh(&self, provider: Provider, refresh_token: &Secret) -> Refresh {
        let (name, request) = match provider {
            Provider::Openai => (
                "OpenAI",
                self.http.post(format!("{}/oauth/token", self.issuer())).json(&json!({
                    "client_id": self.config.openai.client_id,
                    "grant_type": "refresh_token",
                    "refresh_token": refresh_token.expose(),
                })),
            ),
            Provider::Anthropic => (
                "Anthropic",
                self.http.post(&self.config.anthropic.token_url).json(&json!({
                    "grant_type": "refresh_token",
                    "refresh_token": refresh_token.expose(),
                    "client_id": self.config.anthropic.client_id,
                })),
            ),
            other => return Refresh::Permanent(format!("{} tokens cannot be refreshed", other.display_name())),
        };
        let (status, body) = match self.send(request).await {
            Ok(r) => r,
            Err(m) => return Refresh::Transient(format!("{name}: {m}")),
        };
        if status >= 500 || status == 429 {
            return Refresh::Transient(format!("{name} answered {status}"));
        }
        if status >= 300 {
            let code = error_code(&body).unwrap_or_default();
            return if PERMANENT_REFRESH_ERRORS.contains(&code.as_str()) {
                Refresh::Permanent(format!(
                    "{name} no longer accepts this login ({}); sign in again",
                    if code.is_empty() { format!("HTTP {status}") } else { printable_code(&code) }
                ))
            } else {
                Refresh::Transient(format!("{name} answered {status} ({})", printable_code(&code)))
            };
        }
        match tokens_from(&body, Utc::now()) {
            Some(tokens) => Refresh::Refreshed(tokens),
            None => Refresh::Transient(format!("{name} answered in a way sesame-vault does not understand")),
        }
    }
}

fn unreachable_error(name: &str, why: &str) -> ProviderError {
    ProviderError { message: format!("{name} could not be reached ({why}); try again in a moment"), transient: true }
}

/// A provider error code, kept short and printable.
fn printable_code(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(48).collect()
}
