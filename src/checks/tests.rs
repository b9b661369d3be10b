//! Each provider's check against a tiny local server answering as the
//! provider does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{handler, EndpointExt, Request, Response, Route, Server};
use serde_json::{json, Value};

use super::{CheckResult, Outcome};
use crate::providers::{anthropic, github, google, http as provider_http, openai};

/// (path, credential) → (status, body); anything else is a 404.
#[derive(Default)]
struct Script {
    answers: HashMap<(String, String), (u16, Value)>,
    /// Every request: path, query, and the headers by name.
    seen: Vec<(String, Option<String>, HashMap<String, String>)>,
}

type Shared = Arc<Mutex<Script>>;

fn credential_of(req: &Request) -> String {
    sesame_test_support::credential_in(|name| req.header(name).map(str::to_owned))
}

#[handler]
fn answer(req: &Request, Data(script): Data<&Shared>) -> Response {
    let mut script = script.lock().unwrap();
    let path = req.uri().path().to_owned();
    let headers =
        req.headers().iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned())).collect();
    script.seen.push((path.clone(), req.uri().query().map(str::to_owned), headers));
    let (status, body) =
        script.answers.get(&(path, credential_of(req))).cloned().unwrap_or((404, json!({ "message": "Not Found" })));
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .content_type("application/json")
        .body(body.to_string())
}

async fn serve(answers: &[(&str, &str, u16, Value)]) -> (String, Shared) {
    let script = Arc::new(Mutex::new(Script {
        answers: answers
            .iter()
            .map(|(path, cred, status, body)| (((*path).into(), (*cred).into()), (*status, body.clone())))
            .collect(),
        seen: Vec::new(),
    }));
    let app = Route::new().at("/*path", answer).data(script.clone());
    let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
    let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
    tokio::spawn(async move {
        let _ = Server::new_with_acceptor(acceptor).run(app).await;
    });
    (format!("http://{addr}"), script)
}

fn http() -> reqwest::Client {
    provider_http::client(Duration::from_secs(2)).unwrap()
}

fn anthropic_error_body(kind: &str) -> Value {
    json!({ "type": "error", "error": { "type": kind, "message": "secret-looking detail" } })
}

fn assert_safe(outcome: &Outcome, secret: &str) {
    let message = outcome.message.as_deref().unwrap_or_default();
    assert!(!message.contains(secret), "{message}");
    assert!(!message.contains("secret-looking detail"), "the provider's body leaked: {message}");
}

#[tokio::test]
async fn anthropic_api_key_answers() {
    let (base, script) = serve(&[
        ("/v1/models", "sk-ant-good", 200, json!({ "data": [] })),
        ("/v1/models", "sk-ant-dead", 401, anthropic_error_body("authentication_error")),
        ("/v1/models", "sk-ant-denied", 403, anthropic_error_body("permission_error")),
        ("/v1/models", "sk-ant-busy", 529, anthropic_error_body("overloaded_error")),
        ("/v1/models", "sk-ant-limited", 429, anthropic_error_body("rate_limit_error")),
    ])
    .await;
    let http = http();
    assert_eq!(anthropic::check_api_key_with(&http, &base, "sk-ant-good").await, Outcome::valid());
    for (key, result) in [
        ("sk-ant-dead", CheckResult::Invalid),
        ("sk-ant-denied", CheckResult::Invalid),
        ("sk-ant-busy", CheckResult::Unreachable),
        ("sk-ant-limited", CheckResult::Unreachable),
    ] {
        let outcome = anthropic::check_api_key_with(&http, &base, key).await;
        assert_eq!(outcome.result, result, "{key}");
        assert_safe(&outcome, key);
    }
    let dead = anthropic::check_api_key_with(&http, &base, "sk-ant-dead").await;
    assert!(dead.message.unwrap().contains("copied the entire key"));
    let seen = script.lock().unwrap();
    let (_, query, headers) = &seen.seen[0];
    assert_eq!(query, &None);
    assert_eq!(headers["anthropic-version"], "2023-06-01");
    assert!(!headers.contains_key("authorization"));
}

#[tokio::test]
async fn claude_subscription_answers() {
    let (base, script) = serve(&[
        ("/api/oauth/profile", "sk-ant-oat01-full", 200, json!({ "account": {} })),
        ("/api/oauth/profile", "sk-ant-oat01-setup", 403, anthropic_error_body("permission_error")),
        ("/api/oauth/profile", "sk-ant-oat01-dead", 401, anthropic_error_body("authentication_error")),
    ])
    .await;
    let http = http();
    assert_eq!(anthropic::check_subscription(&http, &base, "sk-ant-oat01-full").await, Outcome::valid());
    assert_eq!(anthropic::check_subscription(&http, &base, "sk-ant-oat01-setup").await, Outcome::valid());
    let dead = anthropic::check_subscription(&http, &base, "sk-ant-oat01-dead").await;
    assert_eq!(dead.result, CheckResult::Invalid);
    assert!(dead.message.as_deref().unwrap().contains("claude setup-token"));
    assert_safe(&dead, "sk-ant-oat01-dead");
    let seen = script.lock().unwrap();
    let (_, _, headers) = &seen.seen[0];
    assert_eq!(headers["anthropic-beta"], "oauth-2025-04-20");
    assert!(!headers.contains_key("x-api-key"), "a subscription token is never sent as x-api-key");
}

#[tokio::test]
async fn openai_api_key_and_chatgpt_login() {
    let (base, script) = serve(&[
        ("/v1/models", "sk-good", 200, json!({ "data": [] })),
        ("/v1/models", "sk-dead", 401, json!({ "error": { "code": "invalid_api_key" } })),
        ("/backend-api/wham/usage", "at-good", 200, json!({ "plan_type": "plus" })),
        ("/backend-api/wham/usage", "at-dead", 401, json!({ "detail": "token expired" })),
    ])
    .await;
    let http = http();
    assert_eq!(openai::check_api_key_with(&http, &base, "sk-good").await, Outcome::valid());
    let dead = openai::check_api_key_with(&http, &base, "sk-dead").await;
    assert_eq!(dead.result, CheckResult::Invalid);
    assert!(dead.message.as_deref().unwrap().contains("create a new key in the provider's console"));
    let chatgpt = format!("{base}/backend-api");
    assert_eq!(openai::check_login(&http, &chatgpt, "at-good", Some("acct-1")).await, Outcome::valid());
    let dead = openai::check_login(&http, &chatgpt, "at-dead", Some("acct-1")).await;
    assert_eq!(dead.result, CheckResult::Invalid);
    assert!(dead.message.as_deref().unwrap().contains("codex login --device-auth"));
    let seen = script.lock().unwrap();
    let usage = seen.seen.iter().find(|(path, _, _)| path == "/backend-api/wham/usage").unwrap();
    assert_eq!(usage.2["chatgpt-account-id"], "acct-1");
    assert!(usage.2["user-agent"].starts_with("sesame-vault/"));
}

#[tokio::test]
async fn gemini_key_in_the_header_and_its_400() {
    let invalid = json!({ "error": { "code": 400, "status": "INVALID_ARGUMENT", "message": "secret-looking detail",
        "details": [{ "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID" }] } });
    let denied = json!({ "error": { "code": 403, "status": "PERMISSION_DENIED", "message": "secret-looking detail" } });
    let (base, script) = serve(&[
        ("/v1beta/models", "AIza-good", 200, json!({ "models": [] })),
        ("/v1beta/models", "AIza-dead", 400, invalid),
        ("/v1beta/models", "AIza-blocked", 403, denied),
        ("/v1beta/models", "AIza-other400", 400, json!({ "error": { "status": "INVALID_ARGUMENT" } })),
    ])
    .await;
    let http = http();
    assert_eq!(google::check_key(&http, &base, "AIza-good").await, Outcome::valid());
    let dead = google::check_key(&http, &base, "AIza-dead").await;
    assert_eq!(dead.result, CheckResult::Invalid);
    assert_safe(&dead, "AIza-dead");
    assert_eq!(google::check_key(&http, &base, "AIza-blocked").await.result, CheckResult::NoAccess);
    assert_eq!(google::check_key(&http, &base, "AIza-other400").await.result, CheckResult::Unreachable);
    for (_, query, headers) in &script.lock().unwrap().seen {
        assert_eq!(query, &None, "the key never goes in the query string");
        assert!(headers.contains_key("x-goog-api-key"));
    }
}

#[tokio::test]
async fn github_token_then_copilot() {
    let (base, script) = serve(&[
        ("/user", "gho_copilot", 200, json!({ "login": "someone" })),
        ("/copilot_internal/user", "gho_copilot", 200, json!({ "copilot_plan": "individual", "chat_enabled": true })),
        ("/user", "gho_nocopilot", 200, json!({ "login": "other" })),
        ("/user", "gho_forbidden", 200, json!({ "login": "third" })),
        ("/copilot_internal/user", "gho_forbidden", 403, json!({ "message": "Resource not accessible" })),
        ("/user", "gho_dead", 401, json!({ "message": "Bad credentials" })),
        ("/user", "gho_limited", 200, json!({ "login": "fourth" })),
        ("/copilot_internal/user", "gho_limited", 403, json!({ "message": "API rate limit exceeded for user ID 1." })),
    ])
    .await;
    let http = http();
    assert_eq!(github::check_token_with(&http, &base, "gho_copilot").await, Outcome::valid());
    let none = github::check_token_with(&http, &base, "gho_nocopilot").await; // 404 from copilot_internal
    assert_eq!(none.result, CheckResult::NoAccess);
    assert!(none.message.as_deref().unwrap().contains("no Copilot access"));
    assert_eq!(github::check_token_with(&http, &base, "gho_forbidden").await.result, CheckResult::NoAccess);
    // GitHub's spent rate limit (also a 403) concludes nothing about Copilot.
    assert_eq!(github::check_token_with(&http, &base, "gho_limited").await.result, CheckResult::Unreachable);
    let dead = github::check_token_with(&http, &base, "gho_dead").await;
    assert_eq!(dead.result, CheckResult::Invalid);
    assert_safe(&dead, "gho_dead");
    // A dead token stops at /user.
    let seen = script.lock().unwrap();
    let copilot_calls = seen.seen.iter().filter(|(path, _, _)| path == "/copilot_internal/user").count();
    assert_eq!(copilot_calls, 4);
}

#[tokio::test]
async fn no_answer_concludes_nothing() {
    // A port nobody listens on.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        format!("http://127.0.0.1:{port}")
    };
    let outcome = openai::check_api_key_with(&http(), &closed, "sk-any").await;
    assert_eq!(outcome.result, CheckResult::Unreachable);
    // A redirect is not followed and concludes nothing either.
    let (base, _) = serve(&[("/v1/models", "sk-moved", 302, json!({}))]).await;
    assert_eq!(openai::check_api_key_with(&http(), &base, "sk-moved").await.result, CheckResult::Unreachable);
}

#[tokio::test]
async fn limits_bound_requests_per_provider() {
    use crate::checks::Limits;
    use crate::domain::Provider;
    let limits = Limits::new(2);
    let a = limits.acquire(Provider::Github).await;
    let _b = limits.acquire(Provider::Github).await;
    assert_eq!(limits.in_flight(Provider::Github), 2);
    // Another provider is not held up.
    let _c = limits.acquire(Provider::Google).await;
    let third = tokio::time::timeout(Duration::from_millis(100), limits.acquire(Provider::Github)).await;
    assert!(third.is_err(), "a third request to one provider waits");
    drop(a);
    let third = tokio::time::timeout(Duration::from_millis(500), limits.acquire(Provider::Github)).await;
    assert!(third.is_ok());
}

#[tokio::test]
async fn an_answer_over_the_cap_is_not_read_into_memory() {
    let huge = json!({ "data": "x".repeat(200 * 1024) });
    let small = json!({ "data": [] });
    let (base, _) = serve(&[("/huge", "", 200, huge), ("/small", "", 200, small.clone())]).await;
    let http = http();
    let (status, body) = provider_http::send(http.get(format!("{base}/huge"))).await.unwrap();
    assert_eq!((status, body), (200, Value::Null));
    let (status, body) = provider_http::send(http.get(format!("{base}/small"))).await.unwrap();
    assert_eq!((status, body), (200, small));
}
