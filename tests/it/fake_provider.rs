//! A fake OAuth provider: a real HTTP server on 127.0.0.1:0 that speaks
//! GitHub's RFC 8628 device flow, OpenAI's device login and token endpoint
//! (with single-use refresh tokens), and Anthropic's code exchange, each
//! with scripted behaviour.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::{Data, Json};
use poem::{handler, post, EndpointExt, IntoResponse, Request, Response, Route, Server};
use serde_json::{json, Value};

use crate::common::{jwt, Provider};

/// What the next poll of a device flow gets.
#[derive(Clone, Debug)]
pub enum Reply {
    Pending,
    SlowDown,
    Deny,
    Expire,
    ServerError,
    Malformed,
    Authorize,
}

#[derive(Default)]
pub struct State {
    pub script: VecDeque<Reply>,
    /// Used when the script is empty.
    pub then: Option<Reply>,
    pub interval: u64,
    pub expires_in: u64,
    pub openai_disabled: bool,
    pub polls: Vec<Instant>,
    pub used_refresh_tokens: HashSet<String>,
    pub refresh_calls: Vec<String>,
    pub refresh_serial: u64,
    /// Answer refreshes with this error code instead of tokens.
    pub refresh_error: Option<(u16, String)>,
    pub access_lifetime: i64,
    /// Revocations received: (endpoint, token, token_type_hint), for
    /// `/github/api/credentials/revoke` and `/openai/oauth/revoke`.
    pub revocations: Vec<(String, String, String)>,
    /// Answer revocations with this status instead of success.
    pub revoke_status: Option<u16>,
    /// Hold each refresh's answer (after recording the call) until released:
    /// each `notify_one` on it lets one through.
    pub hold_refreshes: Option<Arc<tokio::sync::Notify>>,
    /// GitHub device-authorization requests received (issue 21).
    pub device_starts: u64,
    /// Wait this long before answering one (to let parallel starts overlap).
    pub device_delay_ms: u64,
    /// The `verification_uri` GitHub answers with, instead of github.com's.
    pub verification_uri: Option<String>,
}

#[derive(Clone)]
pub struct FakeProvider {
    pub url: String,
    pub state: Arc<Mutex<State>>,
}

impl FakeProvider {
    pub async fn start(script: &[Reply], then: Reply) -> FakeProvider {
        let state = Arc::new(Mutex::new(State {
            script: script.iter().cloned().collect(),
            then: Some(then),
            interval: 1,
            expires_in: 900,
            access_lifetime: 3600,
            ..State::default()
        }));
        let app = Route::new()
            .at("/github/device/code", post(github_device))
            .at("/github/token", post(github_token))
            .at("/openai/api/accounts/deviceauth/usercode", post(openai_usercode))
            .at("/openai/api/accounts/deviceauth/token", post(openai_device_token))
            .at("/openai/oauth/token", post(openai_token))
            .at("/anthropic/token", post(anthropic_token))
            .at("/github/api/credentials/revoke", post(github_revoke))
            .at("/openai/oauth/revoke", post(openai_revoke))
            .data(state.clone());
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
        let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
        tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor).run(app).await;
        });
        FakeProvider { url: format!("http://{addr}"), state }
    }

    /// The settings that point a server at this provider.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("SESAME_OAUTH__GITHUB__DEVICE_AUTHORIZATION_URL".into(), format!("{}/github/device/code", self.url)),
            ("SESAME_OAUTH__GITHUB__TOKEN_URL".into(), format!("{}/github/token", self.url)),
            ("SESAME_OAUTH__OPENAI__ISSUER".into(), format!("{}/openai", self.url)),
            ("SESAME_OAUTH__ANTHROPIC__TOKEN_URL".into(), format!("{}/anthropic/token", self.url)),
        ]
    }

    /// Points GitHub's API (where revocations go) at this provider too.
    pub fn revoke_env(&self) -> Vec<(String, String)> {
        vec![(sesame_test_support::api_url_var(Provider::Github), format!("{}/github/api", self.url))]
    }

    pub fn revocations(&self) -> Vec<(String, String, String)> {
        self.state.lock().unwrap().revocations.clone()
    }

    pub fn polls(&self) -> Vec<Instant> {
        self.state.lock().unwrap().polls.clone()
    }

    fn next(state: &Arc<Mutex<State>>) -> Reply {
        let mut s = state.lock().unwrap();
        s.polls.push(Instant::now());
        let then = s.then.clone().unwrap_or(Reply::Pending);
        s.script.pop_front().unwrap_or(then)
    }
}

fn json_response(status: u16, body: Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .content_type("application/json")
        .body(body.to_string())
}

#[handler]
async fn github_device(Data(state): Data<&Arc<Mutex<State>>>) -> Response {
    let delay = {
        let mut s = state.lock().unwrap();
        s.device_starts += 1;
        s.device_delay_ms
    };
    tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    let s = state.lock().unwrap();
    let verification_uri = s.verification_uri.clone().unwrap_or_else(|| "https://github.com/login/device".into());
    json_response(
        200,
        json!({
            "device_code": "dev-code-1",
            "user_code": "ABCD-1234",
            "verification_uri": verification_uri,
            "expires_in": s.expires_in,
            "interval": s.interval,
        }),
    )
}

#[handler]
fn github_token(req: &Request, body: String, Data(state): Data<&Arc<Mutex<State>>>) -> Response {
    assert!(req.header("accept").unwrap_or_default().contains("application/json"));
    assert!(body.contains("device_code=dev-code-1") && body.contains("grant_type=urn"), "{body}");
    let error = |code: &str| json_response(400, json!({ "error": code }));
    match FakeProvider::next(state) {
        Reply::Pending => error("authorization_pending"),
        Reply::SlowDown => error("slow_down"),
        Reply::Deny => error("access_denied"),
        Reply::Expire => error("expired_token"),
        Reply::ServerError => json_response(502, json!({})),
        Reply::Malformed => Response::builder().status(StatusCode::OK).body("{\"access_tok"),
        Reply::Authorize => json_response(
            200,
            json!({ "access_token": "gho_TESTfromDevice1234567890abcdefABCD", "token_type": "bearer", "scope": "read:user" }),
        ),
    }
}

#[handler]
fn openai_usercode(Json(body): Json<Value>, Data(state): Data<&Arc<Mutex<State>>>) -> Response {
    assert!(body["client_id"].is_string());
    let s = state.lock().unwrap();
    if s.openai_disabled {
        return json_response(404, json!({ "error": "not_found" }));
    }
    json_response(
        200,
        json!({ "device_auth_id": "dauth-1", "user_code": "WXYZ-9876", "interval": s.interval.to_string() }),
    )
}

#[handler]
fn openai_device_token(Json(body): Json<Value>, Data(state): Data<&Arc<Mutex<State>>>) -> Response {
    assert_eq!(body["device_auth_id"], "dauth-1");
    match FakeProvider::next(state) {
        Reply::Pending => json_response(403, json!({})),
        Reply::ServerError => json_response(500, json!({})),
        Reply::Malformed => Response::builder().status(StatusCode::OK).body("nope"),
        Reply::Authorize => json_response(
            200,
            json!({ "authorization_code": "authcode-1", "code_challenge": "ch", "code_verifier": "ver-1" }),
        ),
        Reply::Deny => json_response(400, json!({ "error": "access_denied" })),
        Reply::Expire => json_response(400, json!({ "error": "expired_token" })),
        Reply::SlowDown => json_response(400, json!({ "error": "slow_down" })),
    }
}

fn openai_tokens(state: &mut State, refresh: String) -> Value {
    let exp = chrono::Utc::now().timestamp() + state.access_lifetime;
    json!({
        "id_token": jwt(json!({ "email": "me@example.com", "https://api.openai.com/auth": { "chatgpt_account_id": "acct-fake" } })),
        "access_token": jwt(json!({ "exp": exp, "https://api.openai.com/auth": { "chatgpt_account_id": "acct-fake" }, "r": refresh })),
        "refresh_token": refresh,
    })
}

#[handler]
async fn openai_token(req: &Request, body: String, Data(state): Data<&Arc<Mutex<State>>>) -> Response {
    let (reply, hold) = openai_token_reply(req, body, state);
    if let Some(hold) = hold {
        hold.notified().await;
    }
    reply
}

/// The token endpoint's answer, and (for a refresh) what holds it back.
fn openai_token_reply(
    req: &Request,
    body: String,
    state: &Arc<Mutex<State>>,
) -> (Response, Option<Arc<tokio::sync::Notify>>) {
    let mut s = state.lock().unwrap();
    let is_json = req.content_type().unwrap_or_default().starts_with("application/json");
    if !is_json {
        // The device login's code exchange (form encoded).
        assert!(
            body.contains("grant_type=authorization_code")
                && body.contains("code=authcode-1")
                && body.contains("code_verifier=ver-1"),
            "{body}"
        );
        assert!(body.contains("redirect_uri="), "{body}");
        let tokens = openai_tokens(&mut s, "rt_fake_0".into());
        return (json_response(200, tokens), None);
    }
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["grant_type"], "refresh_token");
    let token = v["refresh_token"].as_str().unwrap().to_owned();
    s.refresh_calls.push(token.clone());
    let hold = s.hold_refreshes.clone();
    if let Some((status, code)) = s.refresh_error.clone() {
        return (json_response(status, json!({ "error": { "code": code, "message": "refused" } })), hold);
    }
    if !s.used_refresh_tokens.insert(token) {
        let reused = json!({ "error": { "code": "refresh_token_reused", "message": "Your refresh token has already been used" } });
        return (json_response(400, reused), hold);
    }
    s.refresh_serial += 1;
    let next = format!("rt_fake_{}", s.refresh_serial);
    let tokens = openai_tokens(&mut s, next);
    (json_response(200, tokens), hold)
}

#[handler]
fn anthropic_token(Json(body): Json<Value>, Data(state): Data<&Arc<Mutex<State>>>) -> impl IntoResponse {
    let mut s = state.lock().unwrap();
    match body["grant_type"].as_str() {
        Some("authorization_code") => {
            assert!(body["code_verifier"].as_str().is_some_and(|v| v.len() >= 43), "PKCE verifier");
            assert!(body["state"].is_string() && body["redirect_uri"].is_string());
            if body["code"] != "good-code" {
                return json_response(400, json!({ "error": "invalid_grant" }));
            }
            json_response(
                200,
                json!({
                    "access_token": "sk-ant-oat01-TESTfromFlowAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                    "refresh_token": "sk-ant-ort01-TESTrefreshAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                    "expires_in": 28800,
                    "scope": "user:inference user:profile",
                }),
            )
        }
        Some("refresh_token") => {
            let token = body["refresh_token"].as_str().unwrap().to_owned();
            s.refresh_calls.push(token.clone());
            if let Some((status, code)) = s.refresh_error.clone() {
                return json_response(status, json!({ "error": code }));
            }
            if !s.used_refresh_tokens.insert(token) {
                return json_response(400, json!({ "error": "invalid_grant" }));
            }
            s.refresh_serial += 1;
            json_response(
                200,
                json!({
                    "access_token": format!("sk-ant-oat01-TESTrefreshed{}AAAAAAAAAAAAAAAAAAAAAAAAAAAA", s.refresh_serial),
                    "refresh_token": format!("sk-ant-ort01-TESTrefreshed{}AAAAAAAAAAAAAAAAAAAAAAAAAAAA", s.refresh_serial),
                    "expires_in": 28800,
                }),
            )
        }
        _ => json_response(400, json!({ "error": "unsupported_grant_type" })),
    }
}

/// GitHub's credential revocation: unauthenticated JSON `{"credentials": [...]}`, 202.
#[handler]
fn github_revoke(req: &Request, Json(body): Json<Value>, Data(state): Data<&Arc<Mutex<State>>>) -> Response {
    assert!(req.header("authorization").is_none(), "GitHub's revocation is unauthenticated");
    let mut s = state.lock().unwrap();
    for token in body["credentials"].as_array().expect("credentials: [...]") {
        s.revocations.push(("github".into(), token.as_str().unwrap().to_owned(), String::new()));
    }
    match s.revoke_status {
        Some(status) => json_response(status, json!({ "message": "Server Error" })),
        None => json_response(202, json!({})),
    }
}

/// OpenAI's RFC 7009 revocation: form `token`, `token_type_hint`, `client_id`; 200.
#[handler]
fn openai_revoke(body: String, Data(state): Data<&Arc<Mutex<State>>>) -> Response {
    let form: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    assert!(form.get("client_id").is_some_and(|c| !c.is_empty()), "{form:?}");
    let mut s = state.lock().unwrap();
    s.revocations.push((
        "openai".into(),
        form["token"].clone(),
        form.get("token_type_hint").cloned().unwrap_or_default(),
    ));
    match s.revoke_status {
        Some(status) => json_response(status, json!({ "error": "server_error" })),
        None => json_response(200, json!({})),
    }
}
