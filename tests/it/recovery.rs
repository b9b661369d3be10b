//! Recovering from being away (issue 17): backups restore every acknowledged
//! credential, and credential events missed while disconnected — by a client
//! or by a PostgreSQL listener — are delivered once each.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database};
use serde_json::{json, Value};

use crate::common::*;
use crate::postgres::TempDb;
use crate::ws;

const EVENTS: &str = "subscription($after: ID) { credentialEvents(after: $after) { id kind credentialId } }";
const SET_KEY: &str = "mutation($p: Provider!, $k: String!) { setApiKey(provider: $p, key: $k) { id } }";

/// Reads `credentialEvents` payloads from `socket` for subscription `id`
/// until `count` have arrived, then for `settle` more to catch extras.
async fn read_events(socket: &mut ws::Socket, id: &str, count: usize, settle: Duration) -> Vec<Value> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let wait = if out.len() >= count { settle } else { Duration::from_secs(30) };
        match tokio::time::timeout(wait, ws::recv(socket)).await {
            Ok(Some(msg)) if msg["id"] == id && msg["type"] == "next" => {
                assert!(msg["payload"]["errors"].is_null(), "{msg}");
                out.push(msg["payload"]["data"]["credentialEvents"].clone());
            }
            Ok(Some(msg)) if msg["id"] == id => panic!("subscription ended: {msg}"),
            Ok(Some(_)) => {}
            Ok(None) => panic!("socket closed"),
            Err(_) => break,
        }
    }
    out
}

fn subscribe(after: Option<&str>) -> Value {
    json!({ "query": EVENTS, "variables": { "after": after } })
}

#[tokio::test]
async fn credential_events_resume_after_the_last_id_received() {
    let server = Server::start().await;
    let (_, alice) = server.create_user("resume@example.com").await;
    let (_, bob) = server.create_user("other@example.com").await;

    let mut socket = ws::open(&server.url, &alice).await;
    ws::send(&mut socket, json!({ "id": "live", "type": "subscribe", "payload": subscribe(None) })).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.api().set_api_key(&alice, Provider::Openai, OPENAI_KEY).await.unwrap();
    let first = read_events(&mut socket, "live", 1, Duration::from_millis(200)).await;
    assert_eq!(first.len(), 1);
    let last_seen = first[0]["id"].as_str().expect("every event carries its id").to_owned();
    drop(socket);

    // Away: three changes of Alice's and one of Bob's.
    server.api().set_api_key(&alice, Provider::Anthropic, ANTHROPIC_KEY).await.unwrap();
    server.api().set_api_key(&alice, Provider::Google, GEMINI_KEY).await.unwrap();
    server.api().set_api_key(&bob, Provider::Google, GEMINI_KEY).await.unwrap();
    let made = server.api().set_api_key(&alice, Provider::Openai, &OPENAI_KEY.replace("TEST", "NEWK")).await.unwrap();

    // Back with `after`: exactly the three missed, in order, then live.
    let mut socket = ws::open(&server.url, &alice).await;
    ws::send(&mut socket, json!({ "id": "resume", "type": "subscribe", "payload": subscribe(Some(&last_seen)) })).await;
    let missed = read_events(&mut socket, "resume", 3, Duration::from_millis(500)).await;
    let kinds: Vec<&str> = missed.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["CREATED", "CREATED", "UPDATED"], "{missed:?}");
    assert_eq!(missed[2]["credentialId"], made.as_str());
    // Ids are opaque (they do not count Bob's events in between) and distinct.
    let ids: Vec<&str> = missed.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert!(ids.iter().all(|id| *id != last_seen && id.parse::<i64>().is_err()), "{ids:?}");
    assert!(ids[0] != ids[1] && ids[1] != ids[2], "{ids:?}");
    server.ok(&alice, "mutation { removeAgentCredentials(agent: CODEX) }", json!({})).await;
    server.api().remove_credential(&alice, made.as_str()).await.unwrap();
    let live = read_events(&mut socket, "resume", 1, Duration::from_millis(500)).await;
    assert_eq!(live.len(), 1, "the live part continues after the replay, once: {live:?}");
    assert_eq!(live[0]["kind"], "REMOVED");

    // Bad `after`: not an id, an id of someone else's event, an id never made.
    let bobs_event = {
        let mut s = ws::open(&server.url, &bob).await;
        ws::send(&mut s, json!({ "id": "b", "type": "subscribe", "payload": subscribe(None) })).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.api().set_api_key(&bob, Provider::Google, &GEMINI_KEY.replace("TEST", "BOBS")).await.unwrap();
        read_events(&mut s, "b", 1, Duration::from_millis(300)).await[0]["id"].as_str().unwrap().to_owned()
    };
    for bad in ["yesterday", "-1", bobs_event.as_str(), "999999"] {
        ws::send(&mut socket, json!({ "id": bad, "type": "subscribe", "payload": subscribe(Some(bad)) })).await;
        let reply = loop {
            let msg = ws::recv(&mut socket).await.expect("open");
            if msg["id"] == bad {
                break msg;
            }
        };
        let error = match reply["type"].as_str() {
            Some("error") => reply["payload"][0].clone(),
            _ => reply["payload"]["errors"][0].clone(),
        };
        assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{bad}: {reply}");
        assert!(error["message"].as_str().unwrap().contains("after"), "{reply}");
    }
}

#[tokio::test]
async fn a_backup_taken_during_writes_restores_every_acknowledged_credential() {
    let server = Server::start().await;
    let mut people = Vec::new();
    for i in 0..4 {
        people.push(server.create_user(&format!("backup{i}@example.com")).await.1);
    }
    // Keys saved and acknowledged before the backup starts.
    for (i, token) in people.iter().enumerate() {
        let key = ANTHROPIC_KEY.replace("TEST", &format!("BK{i:02}"));
        server.api().set_api_key(token, Provider::Anthropic, &key).await.unwrap();
    }
    // Writes go on while the backup runs.
    let writer = {
        let http = server.http().clone();
        let url = format!("{}/graphql", server.url);
        let token = people[0].clone();
        tokio::spawn(async move {
            for i in 0..200 {
                let key = OPENAI_KEY.replace("TEST", &format!("W{i:03}"));
                let body = json!({ "query": SET_KEY, "variables": { "p": "OPENAI", "k": key } });
                let res = http.post(&url).bearer_auth(&token).json(&body).send().await.unwrap();
                assert_eq!(res.status(), 200);
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let target = server.data_dir().join("..").join(format!("backup-{}.db", uuid::Uuid::new_v4()));
    let out = server.cli(&["backup", target.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("encryption key is not in the backup"));
    writer.await.unwrap();
    assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o600);
    // Never over an existing file.
    let again = server.cli(&["backup", target.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));

    // Restore: the backup as the database of a new data directory, with the key kept apart.
    let restored = tempfile::tempdir().unwrap();
    std::fs::copy(&target, restored.path().join("sesame.db")).unwrap();
    std::fs::copy(server.data_dir().join("encryption.key"), restored.path().join("encryption.key")).unwrap();
    std::fs::remove_file(&target).unwrap();
    let copy = Server::spawn(restored, Vec::new(), false).await;
    for (i, token) in people.iter().enumerate() {
        let data = copy.ok(token, "{ myCredentials { provider hint } }", json!({})).await;
        let anthropic: Vec<&Value> =
            data["myCredentials"].as_array().unwrap().iter().filter(|c| c["provider"] == "ANTHROPIC").collect();
        assert_eq!(anthropic.len(), 1, "{data}");
        let hint = anthropic[0]["hint"].as_str().unwrap();
        assert!(hint.ends_with(&ANTHROPIC_KEY[ANTHROPIC_KEY.len() - 4..]), "decrypts: {hint}");
        let _ = i;
    }
    // The restored copy takes writes.
    copy.api().set_api_key(&people[1], Provider::Google, GEMINI_KEY).await.unwrap();
}

#[tokio::test]
async fn a_postgres_listener_that_reconnects_catches_up() {
    let Some(db) = TempDb::available().await else { return };
    let env = vec![("DATABASE_URL".to_owned(), db.url.clone()), ("ENCRYPTION_KEY".to_owned(), "55".repeat(32))];
    let server = Server::spawn(tempfile::tempdir().unwrap(), env, true).await;
    let (_, token) = server.create_user("listener@example.com").await;
    let mut socket = ws::open(&server.url, &token).await;
    ws::send(&mut socket, json!({ "id": "e", "type": "subscribe", "payload": subscribe(None) })).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.api().set_api_key(&token, Provider::Openai, OPENAI_KEY).await.unwrap();
    assert_eq!(read_events(&mut socket, "e", 1, Duration::from_millis(200)).await.len(), 1);

    // Cut the server's LISTEN connection, then make changes at once.
    let admin = Database::connect(db.url.clone()).await.unwrap();
    let killed = admin
        .execute_unprepared(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() AND query ILIKE 'LISTEN%'",
        )
        .await
        .unwrap();
    assert!(killed.rows_affected() >= 1, "found the listener's connection");
    for (provider, key) in
        [(Provider::Anthropic, ANTHROPIC_KEY), (Provider::Google, GEMINI_KEY), (Provider::Github, COPILOT_TOKEN)]
    {
        server.api().set_api_key(&token, provider, key).await.unwrap();
    }
    let events = read_events(&mut socket, "e", 3, Duration::from_secs(2)).await;
    let ids: HashSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(events.len(), 3, "each missed event once: {events:?}");
    assert_eq!(ids.len(), 3);
    assert!(server.log().contains("caught up from the outbox"), "{}", server.log());
}

/// PostgreSQL notifications can be read by any session LISTENing on the
/// database: a sign-in's user code never travels in one (receivers read
/// the flow back), and watchers still see it.
#[tokio::test]
async fn flow_notifications_carry_no_user_code() {
    use crate::fake_provider::{FakeProvider, Reply};
    let fake = FakeProvider::start(&[Reply::Pending, Reply::Pending], Reply::Authorize).await;
    let Some(db) = TempDb::available().await else { return };
    let mut env = vec![("DATABASE_URL".to_owned(), db.url.clone()), ("ENCRYPTION_KEY".to_owned(), "66".repeat(32))];
    env.extend(fake.env());
    let server = Server::spawn(tempfile::tempdir().unwrap(), env, true).await;
    let (_, token) = server.create_user("notify@example.com").await;

    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await.unwrap();
    listener.listen("sesame_flow_updates").await.unwrap();
    let flow = server
        .ok(&token, "mutation { startDeviceFlow(agent: COPILOT, provider: GITHUB) { id userCode } }", json!({}))
        .await;
    let user_code = flow["startDeviceFlow"]["userCode"].as_str().unwrap().to_owned();
    assert!(!user_code.is_empty());
    let mut watcher = ws::open(&server.url, &token).await;
    let states = ws::collect(
        &mut watcher,
        "w",
        "subscription($id: ID!) { deviceFlowStatus(id: $id) { status userCode } }",
        json!({ "id": flow["startDeviceFlow"]["id"] }),
    )
    .await;
    assert!(states.iter().all(|s| s["deviceFlowStatus"]["userCode"] == user_code.as_str()), "{states:?}");
    assert_eq!(states.last().unwrap()["deviceFlowStatus"]["status"], "AUTHORIZED");

    let mut payloads = Vec::new();
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), listener.recv()).await {
        payloads.push(n.payload().to_owned());
    }
    assert!(!payloads.is_empty(), "the flow's changes were announced");
    for payload in &payloads {
        assert!(!payload.contains(&user_code), "a notification carried the user code: {payload}");
    }
}
