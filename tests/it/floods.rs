//! Issue 21, item 8 (device-flow starts racing, a person's write rate) and
//! the small ones (headers on /graphql, the playground's connect-src, a
//! provider's verification link).

use serde_json::{json, Value};

use crate::common::{credential_audit, Server, ANTHROPIC_KEY};
use crate::fake_provider::{FakeProvider, Reply};

const START_DEVICE: &str =
    "mutation($a: Agent!, $p: Provider!) { startDeviceFlow(agent: $a, provider: $p) { id status verificationUri } }";
const SET_KEY: &str = "mutation($k: String!) { setApiKey(provider: ANTHROPIC, key: $k, checkOnSave: false) { id } }";

async fn server_for(fake: &FakeProvider, extra: &[(&str, &str)]) -> Server {
    let mut env = fake.env();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Server::spawn(tempfile::tempdir().unwrap(), env, true).await
}

fn code_of(response: &Value) -> Option<&str> {
    response["errors"][0]["extensions"]["code"].as_str()
}

/// 20 parallel startDeviceFlow calls of one person: 5 flows may be pending,
/// and the provider is asked at most 5 times (before: 11 to 20).
#[tokio::test]
async fn racing_device_flow_starts_ask_the_provider_at_most_the_limit() {
    let fake = FakeProvider::start(&[], Reply::Pending).await;
    fake.state.lock().unwrap().device_delay_ms = 300;
    let server = server_for(&fake, &[]).await;
    let (_, token) = server.create_user("racer@example.com").await;
    let vars = json!({ "a": "COPILOT", "p": "GITHUB" });
    let answers = futures_util::future::join_all((0..20).map(|_| server.gql(&token, START_DEVICE, vars.clone()))).await;
    let started = answers.iter().filter(|a| a["errors"].is_null()).count();
    for refused in answers.iter().filter(|a| !a["errors"].is_null()) {
        assert_eq!(code_of(refused), Some("LIMIT_EXCEEDED"), "{refused}");
    }
    let asked = fake.state.lock().unwrap().device_starts;
    assert_eq!(started, 5, "five flows may be pending");
    assert!(asked <= 5, "the provider was asked {asked} times for {started} flows");
    // A refused provider call gives its slot back.
    let pending = server.ok(&token, "{ myPendingDeviceFlows { id } }", json!({})).await;
    assert_eq!(pending["myPendingDeviceFlows"].as_array().unwrap().len(), 5);
}

/// A verification link that is not https:// (nor http:// to this machine)
/// is never shown: the start fails with a clear message, nothing pending.
#[tokio::test]
async fn a_plain_http_verification_link_fails_the_start() {
    let fake = FakeProvider::start(&[], Reply::Pending).await;
    fake.state.lock().unwrap().verification_uri = Some("http://github.example/login/device".into());
    let server = server_for(&fake, &[]).await;
    let (_, token) = server.create_user("link@example.com").await;
    let answer = server.gql(&token, START_DEVICE, json!({ "a": "COPILOT", "p": "GITHUB" })).await;
    assert_eq!(code_of(&answer), Some("BAD_USER_INPUT"), "{answer}");
    let message = answer["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("https://"), "{message}");
    assert!(!message.contains("github.example"), "the link is not echoed: {message}");
    let pending = server.ok(&token, "{ myPendingDeviceFlows { id } }", json!({})).await;
    assert_eq!(pending["myPendingDeviceFlows"], json!([]));
    // The fake's own loopback links (http://127.0.0.1:…) are accepted.
    let url = format!("{}/login/device", fake.url);
    fake.state.lock().unwrap().verification_uri = Some(url.clone());
    let flow = server.ok(&token, START_DEVICE, json!({ "a": "COPILOT", "p": "GITHUB" })).await;
    assert_eq!(flow["startDeviceFlow"]["verificationUri"], url.as_str());
}

/// A burst of saves: past the burst, LIMIT_EXCEEDED with when to retry, and
/// nothing more is stored (one audit entry per accepted save); another
/// person is not affected.
#[tokio::test]
async fn a_burst_of_saves_is_limited_per_person() {
    let server = Server::start_with(&[("SESAME_WRITES__BURST", "5"), ("SESAME_WRITES__PER_MINUTE", "1")]).await;
    let (_, token) = server.create_user("burst@example.com").await;
    let mut accepted = 0;
    let mut refused = Vec::new();
    for _ in 0..12 {
        let answer = server.gql(&token, SET_KEY, json!({ "k": ANTHROPIC_KEY })).await;
        if answer["errors"].is_null() {
            accepted += 1;
        } else {
            refused.push(answer);
        }
    }
    assert_eq!(accepted, 5, "{refused:?}");
    assert_eq!(refused.len(), 7);
    for answer in &refused {
        assert_eq!(code_of(answer), Some("LIMIT_EXCEEDED"), "{answer}");
        let message = answer["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains("try again in") && message.contains("SESAME_WRITES__PER_MINUTE"), "{message}");
    }
    let removal = server.gql(&token, "mutation { removeApiKey(provider: ANTHROPIC) }", json!({})).await;
    assert_eq!(code_of(&removal), Some("LIMIT_EXCEEDED"), "removals count too: {removal}");
    let saves = credential_audit(&server).await.len();
    assert_eq!(saves, 5, "one audit entry per accepted save, none for refused ones");

    let (_, other) = server.create_user("other@example.com").await;
    server.ok(&other, SET_KEY, json!({ "k": ANTHROPIC_KEY })).await;
}

/// Every /graphql answer (data, errors, a refused method) is `no-store`
/// and `nosniff`; the playground lets WebSockets reach its own host only.
#[tokio::test]
async fn graphql_answers_are_not_stored_and_websockets_stay_on_the_host() {
    let server = Server::start().await;
    let http = server.http();
    let url = format!("{}/graphql", server.url);
    let answers = [
        http.post(&url).json(&json!({ "query": "{ me { id } }" })).bearer_auth(&server.admin_token).send().await,
        http.post(&url).json(&json!({ "query": "{" })).send().await,
        http.post(&url).body("x").send().await,
        http.get(format!("{url}?query=%7B__typename%7D")).send().await,
        http.put(&url).send().await,
        http.get(format!("{url}/ws")).send().await,
    ];
    for answer in answers {
        let answer = answer.unwrap();
        let headers = answer.headers();
        assert_eq!(headers.get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"), "{answer:?}");
        assert_eq!(headers.get("x-content-type-options").and_then(|v| v.to_str().ok()), Some("nosniff"), "{answer:?}");
    }

    let page = http.get(format!("{}/", server.url)).send().await.unwrap();
    let csp = page.headers().get("content-security-policy").unwrap().to_str().unwrap().to_owned();
    let host = server.url.trim_start_matches("http://");
    assert!(csp.contains(&format!("connect-src 'self' ws://{host} wss://{host};")), "{csp}");
    assert!(!csp.contains(" ws: ") && !csp.contains("wss:;"), "no scheme-wide WebSocket source: {csp}");
}
