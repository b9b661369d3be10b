//! Sign-in flows against a fake provider, watched over a real WebSocket.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;
use crate::fake_provider::{FakeProvider, Reply};
use crate::ws;

const START_DEVICE: &str = "mutation($a: Agent!, $p: Provider!) { startDeviceFlow(agent: $a, provider: $p) { id status userCode verificationUri interval expiresAt } }";
const WATCH: &str = "subscription($id: ID!) { deviceFlowStatus(id: $id) { id status interval message credential { id agent provider kind hasRefreshToken } } }";
const FLOW: &str = "query($id: ID!) { deviceFlow(id: $id) { status interval message credential { id } } }";

async fn server_for(fake: &FakeProvider, extra: &[(&str, &str)]) -> Server {
    let mut env = fake.env();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Server::spawn(tempfile::tempdir().unwrap(), env, true).await
}

async fn start(server: &Server, token: &str, agent: &str, provider: &str) -> Value {
    server.ok(token, START_DEVICE, json!({ "a": agent, "p": provider })).await["startDeviceFlow"].clone()
}

fn statuses(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["deviceFlowStatus"]["status"].as_str().unwrap_or("ERROR").to_owned()).collect()
}

async fn wait_final(server: &Server, token: &str, id: &str) -> Value {
    for _ in 0..300 {
        let flow = server.ok(token, FLOW, json!({ "id": id })).await["deviceFlow"].clone();
        if flow["status"] != "PENDING" {
            return flow;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("flow {id} did not finish");
}

#[tokio::test]
async fn github_device_flow_pending_then_authorized_live_over_websocket() {
    let fake = FakeProvider::start(&[Reply::Pending, Reply::Pending], Reply::Authorize).await;
    let server = server_for(&fake, &[]).await;
    let (_, token) = server.create_user("dev@example.com").await;
    let flow = start(&server, &token, "COPILOT", "GITHUB").await;
    assert_eq!(flow["status"], "PENDING");
    assert_eq!(flow["userCode"], "ABCD-1234");
    assert_eq!(flow["interval"], 1);
    let id = flow["id"].as_str().unwrap();

    // Two subscribers see the same events; a third joins after the end.
    let mut a = ws::open(&server.url, &token).await;
    let mut b = ws::open(&server.url, &token).await;
    let (ea, eb) = tokio::join!(
        ws::collect(&mut a, "1", WATCH, json!({ "id": id })),
        ws::collect(&mut b, "1", WATCH, json!({ "id": id }))
    );
    assert_eq!(statuses(&ea), ["PENDING", "AUTHORIZED"]);
    assert_eq!(ea, eb);
    let done = &ea[1]["deviceFlowStatus"];
    assert_eq!(done["credential"]["agent"], "COPILOT");
    assert_eq!(done["credential"]["kind"], "SUBSCRIPTION");
    let mut late = ws::open(&server.url, &token).await;
    let el = ws::collect(&mut late, "9", WATCH, json!({ "id": id })).await;
    assert_eq!(statuses(&el), ["AUTHORIZED"]);

    // The token is stored encrypted as the user's Copilot subscription.
    let mine = server.ok(&token, "{ myCredentials { agent provider kind hint } }", json!({})).await;
    assert_eq!(mine["myCredentials"][0]["hint"], "gho_…ABCD");
    // Polls were spaced by at least the interval.
    let polls = fake.polls();
    assert_eq!(polls.len(), 3);
    for pair in polls.windows(2) {
        assert!(pair[1] - pair[0] >= Duration::from_millis(950), "{:?}", pair[1] - pair[0]);
    }
}

#[tokio::test]
async fn slow_down_adds_five_seconds_for_good() {
    let fake = FakeProvider::start(&[Reply::SlowDown, Reply::Pending], Reply::Authorize).await;
    let server = server_for(&fake, &[]).await;
    let (_, token) = server.create_user("slow@example.com").await;
    let flow = start(&server, &token, "COPILOT", "GITHUB").await;
    let mut socket = ws::open(&server.url, &token).await;
    let events = ws::collect(&mut socket, "1", WATCH, json!({ "id": flow["id"] })).await;
    assert_eq!(statuses(&events), ["PENDING", "PENDING", "AUTHORIZED"]);
    assert_eq!(events[1]["deviceFlowStatus"]["interval"], 6, "the grown interval is an event of its own");
    let polls = fake.polls();
    assert_eq!(polls.len(), 3);
    assert!(polls[1] - polls[0] >= Duration::from_millis(5950), "after slow_down: {:?}", polls[1] - polls[0]);
    assert!(polls[2] - polls[1] >= Duration::from_millis(5950), "the +5 s stays: {:?}", polls[2] - polls[1]);
}

#[tokio::test]
async fn denied_expired_failed_and_malformed_end_the_flow() {
    for (script, then, expect, words) in [
        (vec![Reply::Pending], Reply::Deny, "DENIED", "declined"),
        (vec![], Reply::Expire, "EXPIRED", "expired"),
        (vec![], Reply::Malformed, "FAILED", "understand"),
        (vec![], Reply::ServerError, "FAILED", "could not be reached after 2 attempts"),
    ] {
        let fake = FakeProvider::start(&script, then).await;
        let server = server_for(&fake, &[("SESAME_OAUTH__MAX_POLL_FAILURES", "2")]).await;
        let (_, token) = server.create_user("end@example.com").await;
        let flow = start(&server, &token, "COPILOT", "GITHUB").await;
        let done = wait_final(&server, &token, flow["id"].as_str().unwrap()).await;
        assert_eq!(done["status"], expect, "{done}");
        assert!(done["message"].as_str().unwrap().contains(words), "{done}");
        assert!(done["credential"].is_null());
        assert!(server.api().my_credential_ids(&token).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn the_servers_own_clock_expires_a_flow() {
    let fake = FakeProvider::start(&[], Reply::Pending).await;
    fake.state.lock().unwrap().expires_in = 2;
    let server = server_for(&fake, &[]).await;
    let (_, token) = server.create_user("clock@example.com").await;
    let flow = start(&server, &token, "COPILOT", "GITHUB").await;
    let mut socket = ws::open(&server.url, &token).await;
    let events = ws::collect(&mut socket, "1", WATCH, json!({ "id": flow["id"] })).await;
    assert_eq!(statuses(&events), ["PENDING", "EXPIRED"]);
}

#[tokio::test]
async fn cancel_ends_a_flow_at_once() {
    let fake = FakeProvider::start(&[], Reply::Pending).await;
    fake.state.lock().unwrap().interval = 30;
    let server = server_for(&fake, &[]).await;
    let (_, token) = server.create_user("cancel@example.com").await;
    let flow = start(&server, &token, "COPILOT", "GITHUB").await;
    let id = flow["id"].as_str().unwrap().to_owned();
    let mut socket = ws::open(&server.url, &token).await;
    let watcher = tokio::spawn(async move { ws::collect(&mut socket, "1", WATCH, json!({ "id": id })).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, other) = server.create_user("other@example.com").await;
    let (code, _) = server.err(&other, "mutation($id: ID!) { cancelFlow(id: $id) }", json!({ "id": flow["id"] })).await;
    assert_eq!(code, "NOT_FOUND");
    let began = std::time::Instant::now();
    server.ok(&token, "mutation($id: ID!) { cancelFlow(id: $id) }", json!({ "id": flow["id"] })).await;
    let events = watcher.await.unwrap();
    assert!(began.elapsed() < Duration::from_secs(2));
    assert_eq!(statuses(&events), ["PENDING", "CANCELLED"]);
    assert!(fake.polls().is_empty(), "no poll after cancel");
    let (code, _) = server.err(&token, "mutation($id: ID!) { cancelFlow(id: $id) }", json!({ "id": flow["id"] })).await;
    assert_eq!(code, "BAD_USER_INPUT");
}

#[tokio::test]
async fn a_restart_resumes_pending_flows() {
    let fake = FakeProvider::start(&[Reply::Pending], Reply::Authorize).await;
    fake.state.lock().unwrap().interval = 2;
    let server = server_for(&fake, &[]).await;
    let (_, token) = server.create_user("restart@example.com").await;
    let flow = start(&server, &token, "COPILOT", "GITHUB").await;
    let id = flow["id"].as_str().unwrap().to_owned();
    while fake.polls().is_empty() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (dir, env) = server.stop();
    let server = Server::spawn(dir, env, false).await;
    let done = wait_final(&server, &token, &id).await;
    assert_eq!(done["status"], "AUTHORIZED");
    assert!(!done["credential"]["id"].is_null());
    assert_eq!(fake.polls().len(), 2, "resumed, with no poll lost or doubled");
}

#[tokio::test]
async fn openai_device_login_for_codex_and_opencode() {
    let fake = FakeProvider::start(&[Reply::Pending], Reply::Authorize).await;
    let server = server_for(&fake, &[]).await;
    let runner = server.runner_token();
    let (user, token) = server.create_user("codex@example.com").await;
    let flow = start(&server, &token, "CODEX", "OPENAI").await;
    assert_eq!(flow["userCode"], "WXYZ-9876");
    assert!(flow["verificationUri"].as_str().unwrap().ends_with("/openai/codex/device"));
    let done = wait_final(&server, &token, flow["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "AUTHORIZED", "{done}");
    let issued = server
        .ok(&runner, "mutation($u: ID!) { issueTaskCredentials(userId: $u, agent: CODEX, taskId: \"t\") { source files { path content } } }", json!({ "u": user }))
        .await;
    let auth: Value =
        serde_json::from_str(issued["issueTaskCredentials"]["files"][0]["content"].as_str().unwrap()).unwrap();
    assert_eq!(auth["tokens"]["refresh_token"], "rt_fake_0");
    assert_eq!(auth["tokens"]["account_id"], "acct-fake");

    fake.state.lock().unwrap().script.push_back(Reply::Authorize);
    let oc = start(&server, &token, "OPENCODE", "OPENAI").await;
    assert_eq!(wait_final(&server, &token, oc["id"].as_str().unwrap()).await["status"], "AUTHORIZED");

    // An account without device login gets told how to enable it.
    fake.state.lock().unwrap().openai_disabled = true;
    let (code, message) = server.err(&token, START_DEVICE, json!({ "a": "CODEX", "p": "OPENAI" })).await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(message.contains("not enabled"), "{message}");
}

#[tokio::test]
async fn anthropic_code_flow_checks_state() {
    let fake = FakeProvider::start(&[], Reply::Pending).await;
    let server = server_for(&fake, &[]).await;
    let (_, token) = server.create_user("claude@example.com").await;
    let started = server
        .ok(&token, "mutation { startAuthorizationFlow(agent: CLAUDE_CODE, provider: ANTHROPIC) { id status authorizeUrl expiresAt } }", json!({}))
        .await["startAuthorizationFlow"]
        .clone();
    let url = url::Url::parse(started["authorizeUrl"].as_str().unwrap()).unwrap();
    let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code"], "true");
    assert_eq!(q["response_type"], "code");
    assert!(q["code_challenge"].len() >= 43);
    let state = q["state"].clone();
    let complete = "mutation($id: ID!, $c: String!) { completeAuthorizationFlow(id: $id, code: $c) { id agent provider kind hasRefreshToken expiresAt } }";

    for bad in ["good-code#not-the-state", "good-code", "#", "good-code#"] {
        let (code, message) = server.err(&token, complete, json!({ "id": started["id"], "c": bad })).await;
        assert_eq!(code, "BAD_USER_INPUT", "{bad}: {message}");
        assert!(!message.contains(&state), "state echoed");
    }
    assert!(server.api().my_credential_ids(&token).await.unwrap().is_empty());

    // The pending sign-in can be resumed (after a reload): listed for its
    // owner only, with the very URL it started with.
    const PENDING: &str = "{ myPendingAuthorizationFlows { id agent provider status authorizeUrl expiresAt } }";
    let pending = server.ok(&token, PENDING, json!({})).await["myPendingAuthorizationFlows"].clone();
    assert_eq!(pending.as_array().map(Vec::len), Some(1), "{pending}");
    assert_eq!(pending[0]["id"], started["id"]);
    assert_eq!(pending[0]["authorizeUrl"], started["authorizeUrl"]);
    assert_eq!(pending[0]["expiresAt"], started["expiresAt"]);
    assert_eq!(pending[0]["status"], "PENDING");

    let (_, other) = server.create_user("intruder@example.com").await;
    assert_eq!(server.ok(&other, PENDING, json!({})).await["myPendingAuthorizationFlows"], json!([]));
    let (code, _) =
        server.err(&other, complete, json!({ "id": started["id"], "c": format!("good-code#{state}") })).await;
    assert_eq!(code, "NOT_FOUND");

    let cred = server.ok(&token, complete, json!({ "id": started["id"], "c": format!("good-code#{state}") })).await;
    let c = &cred["completeAuthorizationFlow"];
    assert_eq!(
        (c["agent"].as_str(), c["provider"].as_str(), c["hasRefreshToken"].as_bool()),
        (Some("CLAUDE_CODE"), Some("ANTHROPIC"), Some(true))
    );
    let (code, _) =
        server.err(&token, complete, json!({ "id": started["id"], "c": format!("good-code#{state}") })).await;
    assert_eq!(code, "BAD_USER_INPUT", "a flow completes once");
    assert_eq!(server.ok(&token, PENDING, json!({})).await["myPendingAuthorizationFlows"], json!([]));

    // A code the provider refuses ends the flow FAILED.
    let again = server
        .ok(
            &token,
            "mutation { startAuthorizationFlow(agent: OPENCODE, provider: ANTHROPIC) { id authorizeUrl } }",
            json!({}),
        )
        .await;
    let url = url::Url::parse(again["startAuthorizationFlow"]["authorizeUrl"].as_str().unwrap()).unwrap();
    let state = url.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    let (code, message) = server
        .err(&token, complete, json!({ "id": again["startAuthorizationFlow"]["id"], "c": format!("bad-code#{state}") }))
        .await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(message.contains("did not accept"), "{message}");
}

#[tokio::test]
async fn unsupported_methods_and_the_pending_limit() {
    let fake = FakeProvider::start(&[], Reply::Pending).await;
    fake.state.lock().unwrap().interval = 60;
    let server = server_for(&fake, &[]).await;
    let (_, token) = server.create_user("limits@example.com").await;
    let (code, message) = server.err(&token, START_DEVICE, json!({ "a": "GEMINI", "p": "GOOGLE" })).await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(message.contains("API key"), "{message}");
    let (code, message) = server
        .err(&token, "mutation { startAuthorizationFlow(agent: COPILOT, provider: GITHUB) { id } }", json!({}))
        .await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(message.contains("startDeviceFlow"), "{message}");
    let (code, message) = server.err(&token, START_DEVICE, json!({ "a": "CLAUDE_CODE", "p": "ANTHROPIC" })).await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(message.contains("startAuthorizationFlow"), "{message}");

    for _ in 0..5 {
        start(&server, &token, "COPILOT", "GITHUB").await;
    }
    let (code, message) = server.err(&token, START_DEVICE, json!({ "a": "COPILOT", "p": "GITHUB" })).await;
    assert_eq!(code, "LIMIT_EXCEEDED");

    // Parallel starts cannot overshoot the limit: count and insert are one step.
    let (_, racer) = server.create_user("racer@example.com").await;
    let starts = (0..12).map(|_| {
        server.gql(
            &racer,
            "mutation { startAuthorizationFlow(agent: CLAUDE_CODE, provider: ANTHROPIC) { id } }",
            json!({}),
        )
    });
    let answers = futures_util::future::join_all(starts).await;
    let started = answers.iter().filter(|a| a["errors"].is_null()).count();
    let limited = answers.iter().filter(|a| a["errors"][0]["extensions"]["code"] == "LIMIT_EXCEEDED").count();
    assert_eq!((started, limited), (5, 7), "{answers:?}");
    assert!(message.contains("cancelFlow"), "{message}");
}

#[tokio::test]
async fn websocket_authentication_and_ownership() {
    let fake = FakeProvider::start(&[], Reply::Pending).await;
    let server = server_for(&fake, &[("SESAME_GRAPHQL__WS_INIT_TIMEOUT", "1s")]).await;
    let (_, token) = server.create_user("wsowner@example.com").await;
    let (_, other) = server.create_user("wsother@example.com").await;

    let mut ws1 = ws::connect(&server.url, "graphql-transport-ws").await;
    ws::send(&mut ws1, json!({ "type": "connection_init", "payload": {} })).await;
    assert_eq!(ws::close_code(&mut ws1).await, Some(4401));

    let mut ws2 = ws::connect(&server.url, "graphql-transport-ws").await;
    ws::send(&mut ws2, json!({ "type": "connection_init", "payload": { "Authorization": "Bearer sv_nope" } })).await;
    assert_eq!(ws::close_code(&mut ws2).await, Some(4403));

    let mut ws3 = ws::connect(&server.url, "graphql-transport-ws").await;
    assert_eq!(ws::close_code(&mut ws3).await, Some(4408));

    // Another user cannot watch someone's flow.
    let flow = start(&server, &token, "COPILOT", "GITHUB").await;
    let mut intruder = ws::open(&server.url, &other).await;
    let events = ws::collect(&mut intruder, "1", WATCH, json!({ "id": flow["id"] })).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["errors"][0]["extensions"]["code"], "NOT_FOUND", "{events:?}");

    // The legacy graphql-ws protocol works too.
    let mut legacy = ws::connect(&server.url, "graphql-ws").await;
    ws::send(
        &mut legacy,
        json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } }),
    )
    .await;
    assert_eq!(ws::recv(&mut legacy).await.unwrap()["type"], "connection_ack");
    ws::send(
        &mut legacy,
        json!({ "id": "1", "type": "start", "payload": { "query": WATCH, "variables": { "id": flow["id"] } } }),
    )
    .await;
    let first = loop {
        let msg = ws::recv(&mut legacy).await.unwrap();
        if msg["type"] == "data" {
            break msg;
        }
    };
    assert_eq!(first["payload"]["data"]["deviceFlowStatus"]["status"], "PENDING");
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
