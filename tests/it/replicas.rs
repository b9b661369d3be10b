//! Several instances on one PostgreSQL: events and flows cross instances,
//! a killed instance's flows are taken over, refresh stays single-use.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::*;
use crate::fake_provider::{FakeProvider, Reply};
use crate::postgres::TempDb;
use crate::ws;

/// Two server processes sharing one database and one key.
pub(crate) async fn pair(db: &TempDb, extra: &[(String, String)]) -> (Server, Server) {
    let mut env = vec![("DATABASE_URL".to_owned(), db.url.clone()), ("ENCRYPTION_KEY".to_owned(), "44".repeat(32))];
    env.extend(extra.iter().cloned());
    let a = Server::spawn(tempfile::tempdir().unwrap(), env.clone(), true).await;
    let mut b = Server::spawn(tempfile::tempdir().unwrap(), env, false).await;
    b.admin_token = a.admin_token.clone();
    (a, b)
}

const WATCH: &str = "subscription($id: ID!) { deviceFlowStatus(id: $id) { status credential { id } } }";

#[tokio::test]
async fn events_and_flows_cross_instances_once() {
    let fake = FakeProvider::start(&[Reply::Pending], Reply::Authorize).await;
    let Some(db) = TempDb::available().await else { return };
    let (a, b) = pair(&db, &fake.env()).await;
    let (_, token) = a.create_user("multi@example.com").await;

    // A credential event made on A (and one on B) reaches a subscriber on B, once each.
    let mut events = ws::open(&b.url, &token).await;
    ws::send(&mut events, json!({ "id": "e", "type": "subscribe", "payload": { "query": "subscription { credentialEvents { kind credentialId } }" } })).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = a.api().set_api_key(&token, Provider::Openai, OPENAI_KEY).await.unwrap();
    b.api().remove_credential(&token, &id).await.unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), ws::recv(&mut events)).await {
            Ok(Some(msg)) if msg["type"] == "next" => seen.push(msg["payload"]["data"]["credentialEvents"].clone()),
            _ => {}
        }
    }
    assert_eq!(
        seen,
        vec![json!({ "kind": "CREATED", "credentialId": id }), json!({ "kind": "REMOVED", "credentialId": id })]
    );

    // A flow started on A is watched live on B.
    let flow = a.ok(&token, "mutation { startDeviceFlow(agent: COPILOT, provider: GITHUB) { id } }", json!({})).await;
    let mut watcher = ws::open(&b.url, &token).await;
    let states = ws::collect(&mut watcher, "1", WATCH, json!({ "id": flow["startDeviceFlow"]["id"] })).await;
    let statuses: Vec<&str> = states.iter().map(|s| s["deviceFlowStatus"]["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["PENDING", "AUTHORIZED"]);
    assert!(!states[1]["deviceFlowStatus"]["credential"]["id"].is_null());
    // Exactly one instance polled: the provider saw no doubled polls.
    assert_eq!(fake.polls().len(), 2);
}

#[tokio::test]
async fn a_killed_instance_hands_its_flow_to_the_survivor() {
    let fake = FakeProvider::start(&[], Reply::Pending).await;
    let Some(db) = TempDb::available().await else { return };
    let mut env = fake.env();
    // Leases last 2 × the provider timeout + 10 s: keep the takeover quick.
    env.push(("SESAME_OAUTH__HTTP_TIMEOUT".into(), "5s".into()));
    let (a, b) = pair(&db, &env).await;
    let (_, token) = a.create_user("survivor@example.com").await;
    let flow = a.ok(&token, "mutation { startDeviceFlow(agent: COPILOT, provider: GITHUB) { id } }", json!({})).await;
    let id = flow["startDeviceFlow"]["id"].as_str().unwrap().to_owned();
    while fake.polls().is_empty() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut watcher = ws::open(&b.url, &token).await;
    ws::send(
        &mut watcher,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": WATCH, "variables": { "id": id } } }),
    )
    .await;
    let killed_at = Instant::now();
    drop(a.stop()); // SIGKILL: no chance to hand anything over
    fake.state.lock().unwrap().then = Some(Reply::Authorize);
    let last = ws::last_before_complete(&mut watcher).await["deviceFlowStatus"].clone();
    assert_eq!(last["status"], "AUTHORIZED", "{last}");
    let took = killed_at.elapsed();
    assert!(took < Duration::from_secs(45), "takeover took {took:?}");
    let mine = b.ok(&token, "{ myCredentials { agent } }", json!({})).await;
    assert_eq!(mine["myCredentials"][0]["agent"], "COPILOT");
}

#[tokio::test]
async fn refresh_stays_single_use_across_processes() {
    let fake = FakeProvider::start(&[], Reply::Pending).await;
    fake.state.lock().unwrap().access_lifetime = 4 * 3600;
    let Some(db) = TempDb::available().await else { return };
    let mut env = fake.env();
    env.push(("SESAME_SCHEDULER__REFRESH".into(), "* * * * * *".into()));
    env.push(("SESAME_SCHEDULER__REFRESH_BEFORE".into(), "2h".into()));
    let (a, b) = pair(&db, &env).await;
    let exp = chrono::Utc::now().timestamp() + 1800;
    let mut tokens = Vec::new();
    for i in 0..6 {
        let (_, token) = a.create_user(&format!("single{i}@example.com")).await;
        let server = if i % 2 == 0 { &a } else { &b };
        server
            .ok(&token, "mutation($a: String!, $r: String!) { saveSubscriptionCredential(input: {agent: CODEX, accessToken: $a, refreshToken: $r}) { id } }", json!({ "a": jwt(json!({"exp": exp, "i": i})), "r": format!("rt_TESTmulti{i}0000000000000") }))
            .await;
        tokens.push(token);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while fake.state.lock().unwrap().refresh_calls.len() < 6 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await; // a few more runs on both
    let calls = fake.state.lock().unwrap().refresh_calls.clone();
    let mut unique = calls.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(calls.len(), 6, "{calls:?}");
    assert_eq!(unique.len(), 6, "a refresh token was sent twice: {calls:?}");
    for token in &tokens {
        let mine = b.ok(token, "{ myCredentials { status } }", json!({})).await;
        assert_eq!(mine["myCredentials"][0]["status"], "ACTIVE");
    }
}
