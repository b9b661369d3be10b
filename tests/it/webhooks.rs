//! Signed webhooks (issue 24): a real receiver on 127.0.0.1:0 that records
//! every POST; signatures are verified here with an independent HMAC.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{handler, EndpointExt, Request, Response, Route, Server as PoemServer};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::common::*;

#[derive(Clone, Debug)]
struct Hit {
    id: String,
    timestamp: String,
    signature: String,
    body: String,
}

#[derive(Default)]
struct Receiver {
    hits: Vec<Hit>,
    /// Statuses to answer, in order; 200 once they run out.
    answers: Vec<u16>,
    /// Never answer (until the test ends).
    hang: bool,
    /// Answer 200 with this many bytes.
    flood: usize,
    /// Hold the first request this long before answering.
    hold_first: Option<Duration>,
}

#[handler]
async fn receive(req: &Request, body: String, state: Data<&Arc<Mutex<Receiver>>>) -> Response {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let (status, hang, flood, hold) = {
        let mut state = state.lock().unwrap();
        state.hits.push(Hit {
            id: header("webhook-id"),
            timestamp: header("webhook-timestamp"),
            signature: header("webhook-signature"),
            body,
        });
        let status = if state.answers.is_empty() { 200 } else { state.answers.remove(0) };
        (status, state.hang, state.flood, state.hold_first.take())
    };
    if hang {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    if let Some(hold) = hold {
        tokio::time::sleep(hold).await;
    }
    let body = if flood > 0 { vec![b'x'; flood] } else { b"ok".to_vec() };
    Response::builder().status(StatusCode::from_u16(status).unwrap()).body(body)
}

async fn receiver(answers: Vec<u16>) -> (String, Arc<Mutex<Receiver>>) {
    receiver_with(Receiver { answers, ..Default::default() }).await
}

async fn receiver_with(state: Receiver) -> (String, Arc<Mutex<Receiver>>) {
    serve_receiver("127.0.0.1:0".to_owned(), state).await
}

async fn serve_receiver(addr: String, state: Receiver) -> (String, Arc<Mutex<Receiver>>) {
    let state = Arc::new(Mutex::new(state));
    let app = Route::new().at("/hooks", poem::post(receive)).data(state.clone());
    let acceptor = TcpListener::bind(addr).into_acceptor().await.unwrap();
    let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
    tokio::spawn(async move {
        let _ = PoemServer::new_with_acceptor(acceptor).run(app).await;
    });
    (format!("http://{addr}/hooks"), state)
}

fn hits(state: &Arc<Mutex<Receiver>>) -> Vec<Hit> {
    state.lock().unwrap().hits.clone()
}

/// Standard Webhooks verification, written from the specification.
fn verifies(secret: &str, hit: &Hit) -> bool {
    let key = STANDARD.decode(secret.strip_prefix("whsec_").expect("whsec_ prefix")).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.{}", hit.id, hit.timestamp, hit.body).as_bytes());
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    hit.signature.split(' ').any(|s| s == expected)
}

async fn wait_for_hits(state: &Arc<Mutex<Receiver>>, n: usize) -> Vec<Hit> {
    for _ in 0..300 {
        let hits = state.lock().unwrap().hits.clone();
        if hits.len() >= n {
            return hits;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the receiver got {:?}", state.lock().unwrap().hits);
}

const CREATE: &str =
    "mutation($input: WebhookInput!) { createWebhook(input: $input) { webhook { id url events enabled } secret } }";

async fn server() -> Server {
    Server::start_with(&[("SESAME_WEBHOOKS__ALLOW_PRIVATE", "true"), ("SESAME_WEBHOOKS__RETRY_MIN", "1s")]).await
}

#[tokio::test]
async fn credential_events_arrive_signed_with_metadata_only() {
    let server = server().await;
    let (url, state) = receiver(vec![]).await;
    let created = server
        .ok(&server.admin_token, CREATE, json!({ "input": { "url": url, "events": ["UPDATED", "REMOVED"] } }))
        .await;
    let secret = created["createWebhook"]["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_") && STANDARD.decode(&secret[6..]).unwrap().len() >= 24);
    let mut events: Vec<&str> =
        created["createWebhook"]["webhook"]["events"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    events.sort_unstable();
    assert_eq!(events, ["REMOVED", "UPDATED"]);

    let (user_id, token) = server.create_user("hooked@example.com").await;
    let set = "mutation($k: String!) { setApiKey(provider: ANTHROPIC, key: $k, checkOnSave: false) { id } }";
    let id =
        server.ok(&token, set, json!({ "k": ANTHROPIC_KEY })).await["setApiKey"]["id"].as_str().unwrap().to_owned();
    server.ok(&token, set, json!({ "k": ANTHROPIC_KEY })).await; // UPDATED
    server.ok(&token, "mutation($id: ID!) { removeCredential(id: $id) }", json!({ "id": id })).await;

    let hits = wait_for_hits(&state, 2).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let hits_later = state.lock().unwrap().hits.clone();
    assert_eq!(hits_later.len(), 2, "CREATED is filtered out and nothing is sent twice: {hits_later:?}");
    assert_ne!(hits[0].id, hits[1].id, "one webhook-id per event");
    let bodies: Vec<Value> = hits.iter().map(|h| serde_json::from_str(&h.body).unwrap()).collect();
    assert_eq!(bodies[0]["type"], "UPDATED");
    assert_eq!(bodies[1]["type"], "REMOVED");
    for (hit, body) in hits.iter().zip(&bodies) {
        assert!(verifies(&secret, hit), "signature does not verify: {hit:?}");
        let credential = &body["data"]["credential"];
        assert_eq!(credential["id"], id.as_str());
        assert_eq!(credential["ownerId"], user_id.as_str());
        assert_eq!(credential["ownerEmail"], "hooked@example.com");
        assert_eq!(credential["provider"], "ANTHROPIC");
        assert!(!hit.body.contains(ANTHROPIC_KEY) && !hit.body.contains("9f2c"), "secret or hint sent: {}", hit.body);
    }
    // kind and expiresAt come from the credential's row when the delivery is queued (within a
    // poll of the event): here it is already removed, so they are null (docs/api.md, Webhooks).
    // A tampered body does not verify.
    let mut forged = hits[0].clone();
    forged.body.push(' ');
    assert!(!verifies(&secret, &forged));
}

#[tokio::test]
async fn a_failed_attempt_is_retried_with_the_same_id_then_stops() {
    let server = server().await;
    let (url, state) = receiver(vec![500]).await;
    let created = server.ok(&server.admin_token, CREATE, json!({ "input": { "url": url } })).await;
    let secret = created["createWebhook"]["secret"].as_str().unwrap().to_owned();
    let id = created["createWebhook"]["webhook"]["id"].as_str().unwrap().to_owned();
    let sent =
        server.ok(&server.admin_token, "mutation($id: ID!) { sendTestWebhook(id: $id) }", json!({ "id": id })).await;
    let hits = wait_for_hits(&state, 2).await;
    assert_eq!(hits[0].id, sent["sendTestWebhook"].as_str().unwrap());
    assert_eq!(hits[0].id, hits[1].id, "a retry keeps the webhook-id");
    assert!(verifies(&secret, &hits[1]));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(state.lock().unwrap().hits.len(), 2, "a 2xx ends the deliveries");
    let listed = server.ok(&server.admin_token, "{ webhooks { id enabled failingSince pending } }", json!({})).await;
    assert_eq!(listed["webhooks"][0]["enabled"], true);
    assert_eq!(listed["webhooks"][0]["failingSince"], Value::Null);
    assert_eq!(listed["webhooks"][0]["pending"], 0);

    // The delivery log: one delivery, two attempts, the last one 200; no body beyond an excerpt.
    let log = server.ok(&server.admin_token, DELIVERIES, json!({ "id": id })).await["webhookDeliveries"].clone();
    assert_eq!(log.as_array().unwrap().len(), 1, "{log}");
    let delivery = &log[0];
    assert_eq!(delivery["eventId"], hits[0].id.as_str());
    assert_eq!(delivery["type"], "TEST");
    assert_eq!(delivery["attempt"], 2);
    assert_eq!(delivery["statusCode"], 200);
    assert_eq!(delivery["outcome"], "DELIVERED");
    assert_eq!(delivery["nextAttemptAt"], Value::Null);
    assert_eq!(delivery["answerExcerpt"], "ok");
    assert!(delivery["durationMs"].as_i64().unwrap() >= 0);
    let older =
        server.ok(&server.admin_token, DELIVERIES_AFTER, json!({ "id": id, "after": delivery["cursor"] })).await;
    assert_eq!(older["webhookDeliveries"], json!([]));
}

const DELIVERIES: &str = "query($id: ID!) { webhookDeliveries(id: $id) { cursor eventId type attempt statusCode durationMs outcome nextAttemptAt answerExcerpt } }";
const DELIVERIES_AFTER: &str =
    "query($id: ID!, $after: String) { webhookDeliveries(id: $id, after: $after) { cursor } }";
const SEND_TEST: &str = "mutation($id: ID!) { sendTestWebhook(id: $id) }";

async fn create(server: &Server, input: Value) -> (String, String) {
    let created = server.ok(&server.admin_token, CREATE, json!({ "input": input })).await;
    (
        created["createWebhook"]["webhook"]["id"].as_str().unwrap().to_owned(),
        created["createWebhook"]["secret"].as_str().unwrap().to_owned(),
    )
}

/// Body types in the order they arrived, without repeats of one webhook-id.
fn distinct_types(hits: &[Hit]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    hits.iter()
        .filter(|h| seen.insert(h.id.clone()))
        .map(|h| serde_json::from_str::<Value>(&h.body).unwrap()["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_receiver_down_during_a_burst_gets_every_event_in_order_once_back() {
    let server = server().await;
    // A port nobody listens on (yet): connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/hooks");
    let (id, secret) = create(&server, json!({ "url": url })).await;
    let (_, token) = server.create_user("burst@example.com").await;
    let anthropic = server.api().set_api_key(&token, Provider::Anthropic, ANTHROPIC_KEY).await.unwrap();
    server.api().set_api_key(&token, Provider::Anthropic, ANTHROPIC_KEY).await.unwrap();
    let openai = server.api().set_api_key(&token, Provider::Openai, OPENAI_KEY).await.unwrap();
    server.api().remove_credential(&token, &anthropic).await.unwrap();
    server.api().remove_credential(&token, &openai).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = server.ok(&server.admin_token, DELIVERIES, json!({ "id": id })).await["webhookDeliveries"].clone();
    assert_eq!(log.as_array().unwrap().len(), 5, "all five queued while the receiver is down: {log}");
    let first = log.as_array().unwrap().last().unwrap();
    assert_eq!(first["outcome"], "PENDING");
    assert!(first["attempt"].as_i64().unwrap() >= 1 && first["statusCode"].is_null(), "{first}");
    assert!(!first["nextAttemptAt"].is_null());
    let listed = server.ok(&server.admin_token, "{ webhooks { failingSince pending } }", json!({})).await;
    assert!(!listed["webhooks"][0]["failingSince"].is_null());
    assert_eq!(listed["webhooks"][0]["pending"], 5);

    // Back up on the same port.
    let (_, state) = serve_receiver(format!("127.0.0.1:{port}"), Receiver::default()).await;
    let got = wait_for_hits(&state, 5).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got_later = hits(&state);
    assert_eq!(got_later.len(), 5, "each event once: {got_later:?}");
    assert_eq!(distinct_types(&got), ["CREATED", "UPDATED", "CREATED", "REMOVED", "REMOVED"]);
    let credentials: Vec<Value> = got
        .iter()
        .map(|h| serde_json::from_str::<Value>(&h.body).unwrap()["data"]["credential"]["id"].clone())
        .collect();
    assert_eq!(credentials, [json!(anthropic), json!(anthropic), json!(openai), json!(anthropic), json!(openai)]);
    assert!(got.iter().all(|h| verifies(&secret, h)));
    let listed = server.ok(&server.admin_token, "{ webhooks { failingSince pending } }", json!({})).await;
    assert_eq!(listed["webhooks"][0]["failingSince"], Value::Null);
    assert_eq!(listed["webhooks"][0]["pending"], 0);
}

#[tokio::test]
async fn a_secret_rotation_keeps_deliveries_verifiable() {
    let server = server().await;
    let (url, state) = receiver(vec![]).await;
    let (id, old) = create(&server, json!({ "url": url })).await;
    server.ok(&server.admin_token, SEND_TEST, json!({ "id": id })).await;
    let before = wait_for_hits(&state, 1).await;
    assert!(verifies(&old, &before[0]));
    assert_eq!(before[0].signature.split(' ').count(), 1);

    let rotated = server
        .ok(
            &server.admin_token,
            "mutation($id: ID!) { rotateWebhookSecret(id: $id) { secret webhook { id previousSecretUntil } } }",
            json!({ "id": id }),
        )
        .await["rotateWebhookSecret"]
        .clone();
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert!(new.starts_with("whsec_") && new != old);
    assert!(!rotated["webhook"]["previousSecretUntil"].is_null());

    server.ok(&server.admin_token, SEND_TEST, json!({ "id": id })).await;
    let after = wait_for_hits(&state, 2).await;
    // Two `v1,` signatures, space-separated: a receiver with either secret verifies.
    assert_eq!(after[1].signature.split(' ').count(), 2, "{:?}", after[1]);
    assert!(verifies(&old, &after[1]), "the old secret still verifies during the grace period");
    assert!(verifies(&new, &after[1]), "the new secret verifies");
    let audit = server.ok(&server.admin_token, "{ auditLog(first: 100) { nodes { action detail } } }", json!({})).await;
    let actions: Vec<&str> =
        audit["auditLog"]["nodes"].as_array().unwrap().iter().filter_map(|n| n["action"].as_str()).collect();
    assert!(actions.contains(&"WEBHOOK_SECRET_ROTATED"), "{actions:?}");
    assert!(!audit.to_string().contains(&new[6..]) && !audit.to_string().contains(&old[6..]), "a secret in the audit");
}

#[tokio::test]
async fn updates_gone_and_failing_too_long_disable_endpoints() {
    let server = Server::start_with(&[
        ("SESAME_WEBHOOKS__ALLOW_PRIVATE", "true"),
        ("SESAME_WEBHOOKS__RETRY_MIN", "1s"),
        ("SESAME_WEBHOOKS__DISABLE_AFTER", "2s"),
    ])
    .await;
    let admin = server.admin_token.clone();
    let (gone_url, gone) = receiver(vec![410]).await;
    let (failing_url, failing) = receiver(vec![500; 100]).await;
    let (gone_id, _) = create(&server, json!({ "url": gone_url })).await;
    let (failing_id, _) = create(&server, json!({ "url": failing_url, "description": "flaky" })).await;
    server.ok(&admin, SEND_TEST, json!({ "id": gone_id })).await;
    server.ok(&admin, SEND_TEST, json!({ "id": failing_id })).await;
    wait_for_hits(&gone, 1).await;
    wait_for_hits(&failing, 3).await;
    let mut listed = Value::Null;
    for _ in 0..100 {
        listed = server.ok(&admin, "{ webhooks { id enabled disabledReason } }", json!({})).await;
        if listed["webhooks"].as_array().unwrap().iter().all(|w| w["enabled"] == false) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reason = |id: &str| {
        let hook = listed["webhooks"].as_array().unwrap().iter().find(|w| w["id"] == id).unwrap().clone();
        assert_eq!(hook["enabled"], false, "{listed}");
        hook["disabledReason"].as_str().unwrap().to_owned()
    };
    assert!(reason(&gone_id).contains("410"), "{listed}");
    assert!(reason(&failing_id).contains("failed for more than 2s"), "{listed}");
    let log = server.ok(&admin, DELIVERIES, json!({ "id": gone_id })).await;
    assert_eq!(log["webhookDeliveries"][0]["outcome"], "GONE");
    let disabled_hits = hits(&failing).len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(hits(&failing).len(), disabled_hits, "a disabled endpoint hears nothing");

    // An admin re-enables one and narrows its kinds; the pending delivery goes on.
    failing.lock().unwrap().answers.clear();
    let update = "mutation($id: ID!, $input: WebhookUpdate!) { updateWebhook(id: $id, input: $input) { enabled disabledReason failingSince events description } }";
    let updated = server
        .ok(
            &admin,
            update,
            json!({ "id": failing_id, "input": { "enabled": true, "events": ["NEEDS_REAUTH"], "description": null } }),
        )
        .await["updateWebhook"]
        .clone();
    assert_eq!(
        updated,
        json!({ "enabled": true, "disabledReason": null, "failingSince": null, "events": ["NEEDS_REAUTH"], "description": null })
    );
    for _ in 0..100 {
        let log = server.ok(&admin, DELIVERIES, json!({ "id": failing_id })).await;
        if log["webhookDeliveries"][0]["outcome"] == "DELIVERED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = server.ok(&admin, DELIVERIES, json!({ "id": failing_id })).await;
    assert_eq!(log["webhookDeliveries"][0]["outcome"], "DELIVERED", "{log}");
    let (code, _) =
        server.err(&admin, update, json!({ "id": failing_id, "input": { "url": "ftp://example.com/x" } })).await;
    assert_eq!(code, "BAD_USER_INPUT");
    let (_, token) = server.create_user("nosy@example.com").await;
    let (code, _) = server.err(&token, DELIVERIES, json!({ "id": failing_id })).await;
    assert_eq!(code, "FORBIDDEN");
    let audit = server.ok(&admin, "{ auditLog(first: 100) { nodes { action actorKind } } }", json!({})).await;
    let nodes = audit["auditLog"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.iter().filter(|n| n["action"] == "WEBHOOK_DISABLED" && n["actorKind"] == "SYSTEM").count(), 2);
    assert!(nodes.iter().any(|n| n["action"] == "WEBHOOK_UPDATED"));
}

#[tokio::test]
async fn a_receiver_that_hangs_or_floods_does_not_slow_the_others() {
    let server = Server::start_with(&[
        ("SESAME_WEBHOOKS__ALLOW_PRIVATE", "true"),
        ("SESAME_WEBHOOKS__RETRY_MIN", "1s"),
        ("SESAME_WEBHOOKS__TIMEOUT", "60s"),
    ])
    .await;
    let (hang_url, hang) = receiver_with(Receiver { hang: true, ..Default::default() }).await;
    let (flood_url, flood) = receiver_with(Receiver { flood: 10 * 1024 * 1024, ..Default::default() }).await;
    let (healthy_url, healthy) = receiver(vec![]).await;
    for url in [&hang_url, &flood_url, &healthy_url] {
        create(&server, json!({ "url": url })).await;
    }
    let (_, token) = server.create_user("busy@example.com").await;
    for _ in 0..3 {
        let id = server.api().set_api_key(&token, Provider::Anthropic, ANTHROPIC_KEY).await.unwrap();
        server.api().remove_credential(&token, &id).await.unwrap();
    }
    wait_for_hits(&healthy, 6).await;
    wait_for_hits(&flood, 6).await;
    assert_eq!(hits(&hang).len(), 1, "the hanging receiver holds its own first delivery only");
    assert_eq!(distinct_types(&hits(&flood)).len(), 6, "10 MB answers are read 4 KiB deep and delivered");
}

#[tokio::test]
async fn a_kill_9_mid_delivery_loses_nothing() {
    let settings = [
        ("SESAME_WEBHOOKS__ALLOW_PRIVATE", "true"),
        ("SESAME_WEBHOOKS__RETRY_MIN", "1s"),
        ("SESAME_WEBHOOKS__TIMEOUT", "2s"),
    ];
    let server = Server::start_with(&settings).await;
    let (url, state) =
        receiver_with(Receiver { hold_first: Some(Duration::from_secs(30)), ..Default::default() }).await;
    let (id, secret) = create(&server, json!({ "url": url })).await;
    let sent = server.ok(&server.admin_token, SEND_TEST, json!({ "id": id })).await;
    wait_for_hits(&state, 1).await;
    let (dir, env) = server.stop(); // SIGKILL while the receiver holds the request
    let server = Server::spawn(dir, env, false).await;
    let got = wait_for_hits(&state, 2).await;
    assert_eq!(got[1].id, sent["sendTestWebhook"].as_str().unwrap(), "the same delivery, after a restart");
    assert!(verifies(&secret, &got[1]));
    drop(server);
}

#[tokio::test]
async fn sigterm_releases_attempts_in_flight() {
    let settings = [
        ("SESAME_WEBHOOKS__ALLOW_PRIVATE", "true"),
        ("SESAME_WEBHOOKS__RETRY_MIN", "1s"),
        ("SESAME_WEBHOOKS__TIMEOUT", "60s"),
    ];
    let mut server = Server::start_with(&settings).await;
    let (url, state) =
        receiver_with(Receiver { hold_first: Some(Duration::from_secs(3600)), ..Default::default() }).await;
    let (id, _) = create(&server, json!({ "url": url })).await;
    server.ok(&server.admin_token, SEND_TEST, json!({ "id": id })).await;
    wait_for_hits(&state, 1).await;
    server.signal("TERM");
    let status = server.wait_exit(Duration::from_secs(15)).await;
    assert!(status.is_some_and(|s| s.success()), "exits 0 without waiting for the receiver: {status:?}");
    assert!(server.log().contains("webhook attempts in flight released"), "{}", server.log());
    // The claim (60 s + margin) was released: a restart sends it again at once.
    let (dir, env) = server.stop();
    let _server = Server::spawn(dir, env, false).await;
    let got = wait_for_hits(&state, 2).await;
    assert_eq!(got[0].id, got[1].id);
}

#[tokio::test]
async fn the_operator_manages_webhooks_from_the_cli() {
    let server = server().await;
    let (url, state) = receiver(vec![]).await;
    let out =
        server.cli(&["webhook", "create", "--url", &url, "--event", "needs_reauth", "--event", "INVALID", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["events"], json!(["INVALID", "NEEDS_REAUTH"]));
    let out = server.cli(&["webhook", "list"]);
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(listed.contains(&id) && listed.contains("healthy") && !listed.contains(&secret[6..]), "{listed}");
    // The running server delivers to it.
    server.ok(&server.admin_token, SEND_TEST, json!({ "id": id })).await;
    assert!(verifies(&secret, &wait_for_hits(&state, 1).await[0]));
    let out = server.cli(&["webhook", "create", "--url", "https://example.com/x", "--event", "NOPE"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NEEDS_REAUTH"));
    let out = server.cli(&["webhook", "delete", &id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed = server.ok(&server.admin_token, "{ webhooks { id } }", json!({})).await;
    assert_eq!(listed["webhooks"], json!([]));
    let audit =
        server.ok(&server.admin_token, "{ auditLog(first: 100) { nodes { action actorKind } } }", json!({})).await;
    let nodes = audit["auditLog"]["nodes"].as_array().unwrap();
    assert!(nodes.iter().any(|n| n["action"] == "WEBHOOK_CREATED" && n["actorKind"] == "SYSTEM"));
    assert!(nodes.iter().any(|n| n["action"] == "WEBHOOK_DELETED" && n["actorKind"] == "SYSTEM"));
}

#[tokio::test]
async fn two_postgres_replicas_deliver_each_event_exactly_once() {
    let Some(db) = crate::postgres::TempDb::available().await else { return };
    let env = [
        ("SESAME_WEBHOOKS__ALLOW_PRIVATE".to_owned(), "true".to_owned()),
        ("SESAME_WEBHOOKS__RETRY_MIN".to_owned(), "1s".to_owned()),
    ];
    let (a, b) = crate::replicas::pair(&db, &env).await;
    let (url, state) = receiver(vec![]).await;
    let (_, secret) = create(&a, json!({ "url": url })).await;
    let (_, token) = a.create_user("twice@example.com").await;
    let mut expected = 0;
    for round in 0..10 {
        let server = if round % 2 == 0 { &a } else { &b };
        let id = server.api().set_api_key(&token, Provider::Anthropic, ANTHROPIC_KEY).await.unwrap();
        server.api().remove_credential(&token, &id).await.unwrap();
        expected += 2;
    }
    let got = wait_for_hits(&state, expected).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got_later = hits(&state);
    let distinct: std::collections::HashSet<&str> = got_later.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(distinct.len(), expected, "every event delivered");
    assert_eq!(got_later.len(), expected, "and each exactly once across both replicas");
    assert_eq!(distinct_types(&got).iter().filter(|t| *t == "CREATED").count(), 10);
    assert!(got_later.iter().all(|h| verifies(&secret, h)));
}

#[tokio::test]
async fn only_admins_manage_webhooks_and_private_receivers_need_the_setting() {
    let server = Server::start().await;
    let (_, token) = server.create_user("someone@example.com").await;
    let (code, _) = server.err(&token, CREATE, json!({ "input": { "url": "https://example.com/hooks" } })).await;
    assert_eq!(code, "FORBIDDEN");
    let (code, _) = server.err(&token, "{ webhooks { id } }", json!({})).await;
    assert_eq!(code, "FORBIDDEN");

    for url in [
        "https://127.0.0.1/hooks",
        "https://10.0.0.8/hooks",
        "https://169.254.169.254/latest",
        "https://[::1]/hooks",
        "https://localhost/hooks",
        "http://example.com/hooks",
        "ftp://example.com/",
    ] {
        let (code, message) = server.err(&server.admin_token, CREATE, json!({ "input": { "url": url } })).await;
        assert_eq!(code, "BAD_USER_INPUT", "{url}: {message}");
    }
    let listed = server.ok(&server.admin_token, "{ webhooks { id } }", json!({})).await;
    assert_eq!(listed["webhooks"], json!([]), "a refused URL changes nothing");

    // Nor can an update point an endpoint, or the operator's CLI a new one, at a private address.
    let (id, _) = create(&server, json!({ "url": "https://example.com/hooks" })).await;
    let update = "mutation($id: ID!, $url: String) { updateWebhook(id: $id, input: { url: $url }) { url } }";
    let (code, _) = server.err(&server.admin_token, update, json!({ "id": id, "url": "https://192.168.1.1/x" })).await;
    assert_eq!(code, "BAD_USER_INPUT");
    let out = server.cli(&["webhook", "create", "--url", "https://127.0.0.1:9/hooks"]);
    assert!(!out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("ALLOW_PRIVATE"), "{out:?}");
    let listed = server.ok(&server.admin_token, "{ webhooks { url } }", json!({})).await;
    assert_eq!(listed["webhooks"], json!([{ "url": "https://example.com/hooks" }]));
}

/// `rotate-key` re-encrypts the endpoints' signing secrets too: once the
/// old key is gone, deliveries still go out signed with the same secret.
#[tokio::test]
async fn rotate_key_re_encrypts_the_signing_secrets() {
    let (old, new) = ("33".repeat(32), "44".repeat(32));
    let settings = [("SESAME_WEBHOOKS__ALLOW_PRIVATE", "true"), ("SESAME_WEBHOOKS__RETRY_MIN", "1s")];
    let server = Server::start_with(&[settings[0], settings[1], ("ENCRYPTION_KEY", &old)]).await;
    let admin = server.admin_token.clone();
    let (url, state) = receiver(vec![]).await;
    let created = server.ok(&admin, CREATE, json!({ "input": { "url": url } })).await;
    let secret = created["createWebhook"]["secret"].as_str().unwrap().to_owned();
    let id = created["createWebhook"]["webhook"]["id"].as_str().unwrap().to_owned();
    let (dir, _) = server.stop();

    let out = cli_in(dir.path(), &[("ENCRYPTION_KEY", &new), ("ENCRYPTION_KEYS_OLD", &old)], &["rotate-key"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("re-encrypted 1 secrets"), "{out:?}");

    let mut env: Vec<(String, String)> = settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    env.push(("ENCRYPTION_KEY".into(), new));
    let server = Server::spawn(dir, env, false).await;
    server.ok(&admin, "mutation($id: ID!) { sendTestWebhook(id: $id) }", json!({ "id": id })).await;
    let hits = wait_for_hits(&state, 1).await;
    assert!(verifies(&secret, &hits[0]), "signed with the secret created before the rotation: {hits:?}");
}

/// A credential that leaves INVALID is named as working again, and goes to
/// an endpoint that listens for INVALID only; the body links to the
/// Credentials app under `SESAME_PUBLIC_URL`.
#[tokio::test]
async fn working_again_is_named_and_the_body_links_to_the_app() {
    let fake = crate::fake_checks::FakeChecks::start().await;
    let mut env = fake.env();
    env.extend(
        [
            ("SESAME_WEBHOOKS__ALLOW_PRIVATE", "true"),
            ("SESAME_WEBHOOKS__RETRY_MIN", "1s"),
            ("SESAME_PUBLIC_URL", "https://vault.example.com/"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let server = Server::spawn(tempfile::tempdir().unwrap(), env, true).await;
    let (url, state) = receiver(vec![]).await;
    let (_, secret) = create(&server, json!({ "url": url, "events": ["INVALID"] })).await;
    let (user_id, token) = server.create_user("again@example.com").await;
    let id = server.api().set_api_key(&token, Provider::Anthropic, ANTHROPIC_KEY).await.unwrap();
    let check = "mutation($id: ID!) { checkCredential(id: $id) { status } }";
    fake.set(ANTHROPIC_KEY, crate::fake_checks::Answer::Invalid);
    assert_eq!(server.ok(&token, check, json!({ "id": id })).await["checkCredential"]["status"], "INVALID");
    fake.set(ANTHROPIC_KEY, crate::fake_checks::Answer::Valid);
    assert_eq!(server.ok(&token, check, json!({ "id": id })).await["checkCredential"]["status"], "ACTIVE");

    let got = wait_for_hits(&state, 2).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(hits(&state).len(), 2, "CREATED is not sent to an INVALID-only endpoint");
    let bodies: Vec<Value> = got.iter().map(|h| serde_json::from_str(&h.body).unwrap()).collect();
    assert_eq!(bodies[0]["type"], "INVALID");
    assert_eq!(bodies[0]["recovered"], false);
    assert_eq!(bodies[0]["data"]["credential"]["status"], "INVALID");
    // What the status was when the event happened, though the credential works again by now.
    let message = bodies[0]["data"]["message"].as_str().unwrap();
    assert!(message.contains("refused"), "{}", bodies[0]);
    assert_eq!(bodies[0]["data"]["credential"]["statusMessage"], message);
    assert_eq!(bodies[1]["type"], "UPDATED");
    assert_eq!(bodies[1]["recovered"], true, "{}", bodies[1]);
    assert_eq!(bodies[1]["data"]["recoveredFrom"], "INVALID");
    assert_eq!(bodies[1]["data"]["credential"]["status"], "ACTIVE");
    for (hit, body) in got.iter().zip(&bodies) {
        assert!(verifies(&secret, hit));
        assert_eq!(body["data"]["appUrl"], "https://vault.example.com/settings");
        let credential = &body["data"]["credential"];
        assert_eq!(credential["ownerId"], user_id.as_str());
        assert_eq!(credential["ownerEmail"], "again@example.com");
        assert_eq!(credential["kind"], "API_KEY");
        assert!(!hit.body.contains(ANTHROPIC_KEY) && !hit.body.contains("9f2c"), "{}", hit.body);
    }
}

/// Past `SESAME_WEBHOOKS__MAX_QUEUE` pending deliveries, an endpoint that is
/// down loses its oldest ones (counted), keeps the newest in order; metrics
/// and one log line per attempt say what happened.
#[tokio::test]
async fn a_full_queue_drops_the_oldest_and_counts_them() {
    let server = Server::start_with(&[
        ("SESAME_WEBHOOKS__ALLOW_PRIVATE", "true"),
        ("SESAME_WEBHOOKS__RETRY_MIN", "1s"),
        ("SESAME_WEBHOOKS__MAX_QUEUE", "3"),
        ("SESAME_METRICS__LISTEN", "127.0.0.1:0"),
    ])
    .await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (id, _) = create(&server, json!({ "url": format!("http://127.0.0.1:{port}/hooks") })).await;
    let (_, token) = server.create_user("full@example.com").await;
    let mut credentials = Vec::new();
    for provider in [Provider::Anthropic, Provider::Openai, Provider::Google] {
        let key = match provider {
            Provider::Anthropic => ANTHROPIC_KEY,
            Provider::Openai => OPENAI_KEY,
            _ => GEMINI_KEY,
        };
        let credential = server.api().set_api_key(&token, provider, key).await.unwrap();
        server.api().remove_credential(&token, &credential).await.unwrap();
        credentials.push(credential);
    }
    let mut listed = Value::Null;
    for _ in 0..50 {
        listed = server.ok(&server.admin_token, "{ webhooks { pending dropped } }", json!({})).await;
        if listed["webhooks"][0]["dropped"] == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(listed["webhooks"][0], json!({ "pending": 3, "dropped": 3 }), "six events, a queue of three");

    let (_, state) = serve_receiver(format!("127.0.0.1:{port}"), Receiver::default()).await;
    let got = wait_for_hits(&state, 3).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(hits(&state).len(), 3);
    let kept: Vec<(String, Value)> = got
        .iter()
        .map(|h| {
            let body: Value = serde_json::from_str(&h.body).unwrap();
            (body["type"].as_str().unwrap().to_owned(), body["data"]["credential"]["id"].clone())
        })
        .collect();
    assert_eq!(
        kept,
        [
            ("REMOVED".to_owned(), json!(credentials[1])),
            ("CREATED".to_owned(), json!(credentials[2])),
            ("REMOVED".to_owned(), json!(credentials[2])),
        ],
        "the newest three, in order"
    );

    let log = server.log();
    let addr = log
        .lines()
        .find_map(|l| l.contains("metrics listening").then(|| l.split("addr=").nth(1)).flatten())
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the metrics listener's address in the log")
        .to_owned();
    let metrics = server.http().get(format!("http://{addr}/metrics")).send().await.unwrap().text().await.unwrap();
    let value = |line_start: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{line_start} missing:\n{metrics}"))
    };
    assert_eq!(value("sesame_webhook_deliveries_total{outcome=\"dropped\"}"), 3.0);
    assert_eq!(value("sesame_webhook_deliveries_total{outcome=\"delivered\"}"), 3.0);
    assert!(value("sesame_webhook_deliveries_total{outcome=\"retry\"}") >= 1.0);
    assert!(value("sesame_webhook_attempt_duration_seconds_count") >= 4.0);
    assert_eq!(value("sesame_webhook_queue_depth"), 0.0);
    let attempts: Vec<&str> = log.lines().filter(|l| l.contains("webhook attempt")).collect();
    assert!(attempts.len() >= 4, "one log line per attempt: {attempts:?}");
    assert!(attempts.iter().all(|l| l.contains(&id) && l.contains("webhook_id=") && l.contains("duration_ms=")));
    assert!(attempts.iter().any(|l| l.contains("status=200") && l.contains("outcome=\"delivered\"")), "{attempts:?}");
}

/// The lifecycle kinds the scheduler raises (EXPIRING, EXPIRED, REFRESHED,
/// NEEDS_REAUTH) reach an endpoint that takes every kind, each once, signed,
/// with metadata only (CREATED, UPDATED, REMOVED and INVALID: the tests above).
#[tokio::test]
async fn the_schedulers_event_kinds_arrive_signed_once_each() {
    let fake = crate::fake_provider::FakeProvider::start(&[], crate::fake_provider::Reply::Pending).await;
    let mut env = fake.env();
    env.extend(
        [
            ("SESAME_WEBHOOKS__ALLOW_PRIVATE", "true"),
            ("SESAME_WEBHOOKS__RETRY_MIN", "1s"),
            ("SESAME_SCHEDULER__EXPIRY_SCAN", "* * * * * *"),
            ("SESAME_SCHEDULER__REFRESH", "* * * * * *"),
            ("SESAME_SCHEDULER__REFRESH_BEFORE", "2h"),
            ("SESAME_CHECKS__ON_SAVE", "false"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let server = Server::spawn(tempfile::tempdir().unwrap(), env, true).await;
    let (url, state) = receiver(vec![]).await;
    let (_, secret) = create(&server, json!({ "url": url })).await;
    let save = "mutation($input: SubscriptionCredentialInput!) { saveSubscriptionCredential(input: $input) { id } }";
    let saved = |r: Value| r["saveSubscriptionCredential"]["id"].as_str().unwrap().to_owned();
    let kinds_of = |id: &str| -> Vec<String> {
        hits(&state)
            .iter()
            .map(|h| serde_json::from_str::<Value>(&h.body).unwrap())
            .filter(|b| b["data"]["credential"]["id"] == id)
            .map(|b| b["type"].as_str().unwrap().to_owned())
            .collect()
    };
    let wait_for = |id: String, kind: &'static str| {
        let kinds_of = &kinds_of;
        async move {
            for _ in 0..200 {
                if kinds_of(&id).iter().any(|k| k == kind) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("no {kind} for {id}: {:?}", kinds_of(&id));
        }
    };

    // A ChatGPT login due within the refresh window: refreshed (REFRESHED).
    let (_, refreshed_by) = server.create_user("refreshed@example.com").await;
    let exp = chrono::Utc::now().timestamp() + 3600;
    let input = json!({ "agent": "CODEX", "accessToken": jwt(json!({ "exp": exp })), "refreshToken": "rt_TESThook000000000000" });
    let refreshed = saved(server.ok(&refreshed_by, save, json!({ "input": input })).await);
    wait_for(refreshed.clone(), "REFRESHED").await;

    // One the provider refuses to refresh: NEEDS_REAUTH.
    fake.state.lock().unwrap().refresh_error = Some((400, "invalid_grant".into()));
    let (_, reauth_by) = server.create_user("reauth@example.com").await;
    let input = json!({ "agent": "CODEX", "accessToken": jwt(json!({ "exp": exp })), "refreshToken": "rt_TESThookdead0000000000" });
    let reauth = saved(server.ok(&reauth_by, save, json!({ "input": input })).await);
    wait_for(reauth.clone(), "NEEDS_REAUTH").await;

    // A Claude setup-token (no refresh token) that runs out: EXPIRING, then EXPIRED.
    let (_, expiring_by) = server.create_user("expiring@example.com").await;
    let ends = (chrono::Utc::now() + chrono::Duration::seconds(8)).to_rfc3339();
    let input = json!({ "agent": "CLAUDE_CODE", "token": "sk-ant-oat01-TESThookAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "expiresAt": ends });
    let expiring = saved(server.ok(&expiring_by, save, json!({ "input": input })).await);
    wait_for(expiring.clone(), "EXPIRING").await;
    wait_for(expiring.clone(), "EXPIRED").await;

    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The refreshed login may be refreshed again (the fake's tokens are short)
    // and is refused once the provider refuses: each is an event of its own.
    assert!(kinds_of(&refreshed).iter().any(|k| k == "REFRESHED"));
    assert_eq!(kinds_of(&expiring), ["CREATED", "EXPIRING", "EXPIRED"]);
    assert_eq!(kinds_of(&reauth), ["CREATED", "NEEDS_REAUTH"]);
    let all = hits(&state);
    let ids: std::collections::HashSet<&str> = all.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(ids.len(), all.len(), "each event delivered once: {all:?}");
    for hit in &all {
        assert!(verifies(&secret, hit), "{hit:?}");
        for secret in ["rt_TESThook", "TESThookAAAA", "eyJ"] {
            assert!(!hit.body.contains(secret), "a secret in a webhook body: {}", hit.body);
        }
    }
}
