//! Issue 21 items 10–12: a wall clock that jumps (driven in-process with
//! the store's clock, `Clock::shift_for_tests`, over a real SQLite file and
//! the fake provider), and credential events on PostgreSQL delivered once
//! and without gaps (the real server, real transactions, a real LISTEN
//! backend terminated under it).

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use chrono::{Duration, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, Statement, TransactionTrait};
use serde_json::{json, Value};
use sesame_vault::agents::{parse_subscription, SubscriptionInput};
use sesame_vault::app::App;
use sesame_vault::auth::Principal;
use sesame_vault::crypto::{Key, Keyring};
use sesame_vault::delivery::ProxyAccess;
use sesame_vault::domain::{Agent, CredentialEventKind, Delivery, Provider};
use sesame_vault::entities::{credential, credential_event, proxy_grant, task_lease};
use sesame_vault::providers::ApiKey;
use sesame_vault::store::{CredentialMeta, DeliverySettings, TaskId};

use crate::common::*;
use crate::fake_provider::{FakeProvider, Reply};
use crate::lifecycle::{open, person, TEN_MIN, WEEK};
use crate::postgres::TempDb;
use crate::ws;

async fn codex(app: &App, who: &Principal, access_exp: i64, refresh: &str) -> CredentialMeta {
    let access = jwt(json!({ "exp": access_exp }));
    let parsed = parse_subscription(
        SubscriptionInput {
            agent: Agent::Codex,
            provider: None,
            token: None,
            access_token: Some(&access),
            refresh_token: Some(refresh),
            auth_json: None,
            expires_at: None,
        },
        Utc::now(),
    )
    .unwrap();
    app.store.owner(who).unwrap().save_subscription(Agent::Codex, parsed).await.unwrap()
}

async fn db(dir: &std::path::Path) -> sea_orm::DatabaseConnection {
    sea_orm::Database::connect(format!("sqlite://{}", dir.join("sesame.db").display())).await.unwrap()
}

async fn row(dir: &std::path::Path, id: &str) -> credential::Model {
    credential::Entity::find_by_id(id).one(&db(dir).await).await.unwrap().unwrap()
}

fn refresh_calls(fake: &FakeProvider) -> Vec<String> {
    fake.state.lock().unwrap().refresh_calls.clone()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + StdDuration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
}

/// Item 10: the clock steps a day forward while a refresh is at the
/// provider. The claim in the row has lapsed by the wall clock, but this
/// process still has the refresh in flight: neither the refresh job nor a
/// task issuance sends the refresh token again.
#[tokio::test]
async fn a_clock_stepped_forward_during_a_refresh_never_sends_its_token_twice() {
    let fake = FakeProvider::start(&[], Reply::Pending).await;
    let hold = Arc::new(tokio::sync::Notify::new());
    {
        let mut state = fake.state.lock().unwrap();
        state.hold_refreshes = Some(hold.clone());
        // New tokens stay valid on the stepped clock.
        state.access_lifetime = 3 * 24 * 3600;
    }
    let dir = tempfile::tempdir().unwrap();
    let app = open(dir.path(), &fake).await;
    let who = person(&app, "jump@example.com").await;
    let clock = app.store.clock().clone();
    let token = "rt_TESTjump0000000000000";
    let sub = codex(&app, &who, (clock.now() + Duration::minutes(2)).timestamp(), token).await;

    // The job's first run: the provider holds the answer.
    let first = tokio::spawn({
        let store = app.store.clone();
        async move { store.operator_unchecked().refresh_due(store.clock().now(), TEN_MIN).await }
    });
    wait_for("the first refresh to reach the provider", || refresh_calls(&fake).len() == 1).await;

    // A day later by the wall clock: the claim in the row has lapsed.
    clock.shift_for_tests(Duration::hours(24));
    assert!(row(dir.path(), &sub.id).await.refresh_claimed_until.unwrap() < clock.now());
    // The job runs again, and a task asks for the login meanwhile.
    let second = tokio::time::timeout(
        StdDuration::from_secs(10),
        app.store.operator_unchecked().refresh_due(clock.now(), TEN_MIN),
    )
    .await;
    let runner = app
        .store
        .runner(&Principal::Runner { token_id: "runner-1".into(), name: "r".into(), created_by: "test".into() })
        .unwrap();
    let issue = tokio::spawn(async move {
        runner.issue(who.user_id().unwrap(), Agent::Codex, None, &TaskId::parse("during-jump").unwrap(), None).await
    });
    tokio::time::sleep(StdDuration::from_millis(500)).await;
    assert_eq!(refresh_calls(&fake), vec![token.to_owned()], "the refresh token was sent again");
    let second = second.expect("the second run does not wait for the first").unwrap();
    assert_eq!((second.refreshed, second.skipped), (0, 1), "{second:?}");

    // The provider answers: the first refresh lands, the task gets its tokens.
    fake.state.lock().unwrap().hold_refreshes = None;
    hold.notify_one();
    assert_eq!(first.await.unwrap().unwrap().refreshed, 1);
    let issued = issue.await.unwrap().unwrap();
    let auth: Value =
        serde_json::from_str(issued.materialized.file(".codex/auth.json").unwrap().content.expose()).unwrap();
    assert_eq!(auth["tokens"]["refresh_token"], "rt_fake_1", "{auth}");
    assert_eq!(refresh_calls(&fake), vec![token.to_owned()]);
    let events = credential_event::Entity::find()
        .filter(credential_event::Column::CredentialId.eq(sub.id.as_str()))
        .filter(credential_event::Column::Kind.eq(CredentialEventKind::NeedsReauth.as_str()))
        .count(&db(dir.path()).await)
        .await
        .unwrap();
    assert_eq!(events, 0, "the login was not lost");
}

/// Item 12 (review): an issuance whose future is dropped mid-refresh (a
/// client that hung up) does not abandon the refresh: it finishes in its
/// own task, and the next issuance gets its tokens without the refresh
/// token being sent again.
#[tokio::test]
async fn a_dropped_issuance_does_not_send_its_refresh_token_twice() {
    let fake = FakeProvider::start(&[], Reply::Pending).await;
    let hold = Arc::new(tokio::sync::Notify::new());
    fake.state.lock().unwrap().hold_refreshes = Some(hold.clone());
    let dir = tempfile::tempdir().unwrap();
    let app = open(dir.path(), &fake).await;
    let who = person(&app, "hangup@example.com").await;
    let token = "rt_TESThangup00000000000";
    codex(&app, &who, (Utc::now() - Duration::minutes(5)).timestamp(), token).await;
    let runner = || {
        app.store
            .runner(&Principal::Runner { token_id: "runner-1".into(), name: "r".into(), created_by: "test".into() })
            .unwrap()
    };
    let user = who.user_id().unwrap().to_owned();
    let first = tokio::spawn({
        let (runner, user) = (runner(), user.clone());
        async move { runner.issue(&user, Agent::Codex, None, &TaskId::parse("hangup-1").unwrap(), None).await }
    });
    wait_for("the refresh to reach the provider", || refresh_calls(&fake).len() == 1).await;
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());

    fake.state.lock().unwrap().hold_refreshes = None;
    hold.notify_one();
    let issued = tokio::time::timeout(
        StdDuration::from_secs(20),
        runner().issue(&user, Agent::Codex, None, &TaskId::parse("hangup-2").unwrap(), None),
    )
    .await
    .expect("the second issuance finishes")
    .unwrap();
    let auth: Value =
        serde_json::from_str(issued.materialized.file(".codex/auth.json").unwrap().content.expose()).unwrap();
    assert_eq!(auth["tokens"]["refresh_token"], "rt_fake_1", "{auth}");
    assert_eq!(refresh_calls(&fake), vec![token.to_owned()], "the refresh token was sent again");
}

/// Item 11: the clock runs a day ahead, then comes back. A key whose expiry
/// is still to come is usable again (UPDATED), and a lease taken while the
/// clock was ahead ends by now + SESAME_TASKS__LEASE (2 h), not 26 h.
#[tokio::test]
async fn a_clock_that_ran_ahead_leaves_no_expired_keys_or_long_leases() {
    let fake = FakeProvider::start(&[], Reply::Pending).await;
    let dir = tempfile::tempdir().unwrap();
    let app = open(dir.path(), &fake).await;
    let clock = app.store.clock().clone();
    let who = person(&app, "ahead@example.com").await;
    let user = who.user_id().unwrap().to_owned();
    let key = app
        .store
        .owner(&who)
        .unwrap()
        .set_api_key(ApiKey::parse(Provider::Openai, OPENAI_KEY).unwrap(), Some(clock.now() + Duration::days(10)))
        .await
        .unwrap();
    let holder = person(&app, "ahead-sub@example.com").await;
    let sub = codex(&app, &holder, (clock.now() + Duration::days(30)).timestamp(), "rt_TESTahead000000000000").await;
    let runner = app
        .store
        .runner(&Principal::Runner { token_id: "runner-1".into(), name: "r".into(), created_by: "test".into() })
        .unwrap();
    // A task with proxy delivery too: its grant's lease is cut back like the others.
    let access = ProxyAccess { url: "http://127.0.0.1:9".into(), ca_cert_pem: "-----BEGIN CERTIFICATE-----\n".into() };
    app.store.set_delivery(DeliverySettings { default: Delivery::Files, proxy: Some(access) });
    let proxied = person(&app, "ahead-proxy@example.com").await;
    let anthropic = ApiKey::parse(Provider::Anthropic, ANTHROPIC_KEY).unwrap();
    app.store.owner(&proxied).unwrap().set_api_key(anthropic, None).await.unwrap();

    // Eleven days ahead: the key expires (and is refused), a task is issued.
    clock.shift_for_tests(Duration::days(11));
    app.store.operator_unchecked().scan_expiry(clock.now(), WEEK).await.unwrap();
    assert_eq!(row(dir.path(), &key.id).await.status, "EXPIRED");
    let refused = runner.issue(&user, Agent::Codex, Some(Provider::Openai), &TaskId::parse("a1").unwrap(), None).await;
    assert!(refused.is_err(), "an expired key is not issued");
    let task = TaskId::parse("while-ahead").unwrap();
    runner.issue(holder.user_id().unwrap(), Agent::Codex, None, &task, None).await.unwrap();
    let proxy_task = TaskId::parse("while-ahead-proxy").unwrap();
    runner
        .issue(proxied.user_id().unwrap(), Agent::ClaudeCode, None, &proxy_task, Some(Delivery::Proxy))
        .await
        .unwrap();

    // Back to the right time; the scan runs.
    clock.shift_for_tests(Duration::days(-11));
    let now = clock.now();
    app.store.operator_unchecked().scan_expiry(now, WEEK).await.unwrap();
    let revived = row(dir.path(), &key.id).await;
    assert_eq!(revived.status, "ACTIVE", "{revived:?}");
    let updated = credential_event::Entity::find()
        .filter(credential_event::Column::CredentialId.eq(key.id.as_str()))
        .filter(credential_event::Column::Kind.eq(CredentialEventKind::Updated.as_str()))
        .count(&db(dir.path()).await)
        .await
        .unwrap();
    assert_eq!(updated, 1);
    let issued = runner.issue(&user, Agent::Codex, Some(Provider::Openai), &TaskId::parse("a2").unwrap(), None).await;
    assert_eq!(issued.expect("the key is usable again").credential_id.as_deref(), Some(key.id.as_str()));

    let latest = now + Duration::hours(2) + Duration::minutes(1);
    let leased_until = row(dir.path(), &sub.id).await.leased_until.unwrap();
    assert!(leased_until <= latest, "the credential stays leased until {leased_until} (now {now})");
    let lease = task_lease::Entity::find()
        .filter(task_lease::Column::TaskId.eq(task.as_str()))
        .one(&db(dir.path()).await)
        .await
        .unwrap()
        .unwrap();
    assert!(lease.expires_at <= latest, "the task's lease ends at {} (now {now})", lease.expires_at);
    let grant = proxy_grant::Entity::find()
        .filter(proxy_grant::Column::TaskId.eq(proxy_task.as_str()))
        .one(&db(dir.path()).await)
        .await
        .unwrap()
        .unwrap();
    assert!(grant.expires_at <= latest, "the proxy grant ends at {} (now {now})", grant.expires_at);
}

// --- Item 12: events on PostgreSQL -------------------------------------

const EVENTS_AFTER: &str = "subscription($a: ID) { credentialEvents(after: $a) { id kind credentialId } }";

/// Inserts `n` events for `owner` in `db` (in its transaction if it is
/// one) and announces them as the vault does; returns their ids.
async fn insert_events<C: ConnectionTrait>(db: &C, owner: &str, credential: &str, n: i64) -> Vec<i64> {
    let sql = "WITH ins AS (
            INSERT INTO credential_events (kind, credential_id, owner_id, provider, agent, status, message, at)
            SELECT 'UPDATED', $1, $2, 'OPENAI', NULL, 'ACTIVE', NULL, now() FROM generate_series(1, $3)
            RETURNING id, at
        )
        SELECT id, pg_notify('sesame_credential_events', json_build_object(
            'seq', id, 'kind', 'UPDATED', 'credential_id', $1::text, 'owner_id', $2::text, 'provider', 'OPENAI',
            'agent', NULL, 'status', 'ACTIVE', 'at', at, 'message', NULL)::text)::text AS notified
        FROM ins";
    let rows = db
        .query_all(Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            sql,
            [credential.into(), owner.into(), n.into()],
        ))
        .await
        .unwrap();
    let mut ids: Vec<i64> = rows.iter().map(|r| r.try_get::<i64>("", "id").unwrap()).collect();
    ids.sort_unstable();
    ids
}

/// The key the event tests' servers run with, so the test can read the
/// opaque event ids back as outbox positions (clients cannot).
const EVENT_KEY: &str = "5e5a5e5a5e5a5e5a5e5a5e5a5e5a5e5a5e5a5e5a5e5a5e5a5e5a5e5a5e5a5e5a";
const EVENT_ID: &str = "credential-event";

fn event_keys() -> Keyring {
    Keyring::new(Key::parse("ENCRYPTION_KEY", EVENT_KEY).unwrap(), Vec::new())
}

/// Event ids (as outbox positions) received on `socket` until `quiet` passes with none.
async fn drain(socket: &mut ws::Socket, quiet: StdDuration) -> Vec<i64> {
    let mut ids = Vec::new();
    while let Ok(Some(msg)) = tokio::time::timeout(quiet, ws::recv(socket)).await {
        if msg["type"] == "next" {
            let id = msg["payload"]["data"]["credentialEvents"]["id"].as_str().unwrap();
            assert!(id.parse::<i64>().is_err(), "event ids are opaque: {id}");
            ids.push(event_keys().open_counter(EVENT_ID, id).expect("an id the server sealed"));
        } else {
            panic!("unexpected message {msg}");
        }
    }
    ids
}

async fn subscribe(server: &Server, token: &str, after: Option<i64>) -> ws::Socket {
    let mut socket = ws::open(&server.url, token).await;
    let variables = json!({ "a": after.map(|a| event_keys().seal_counter(EVENT_ID, a)) });
    ws::send(
        &mut socket,
        json!({ "id": "e", "type": "subscribe", "payload": { "query": EVENTS_AFTER, "variables": variables } }),
    )
    .await;
    socket
}

/// A person with one credential on `server`: (user id, token, credential id, its CREATED event's id).
async fn someone(server: &Server, email: &str, pg: &sea_orm::DatabaseConnection) -> (String, String, String, i64) {
    let (user, token) = server.create_user(email).await;
    let credential = server.api().set_api_key(&token, Provider::Openai, OPENAI_KEY).await.unwrap();
    let created = credential_event::Entity::find()
        .filter(credential_event::Column::CredentialId.eq(credential.as_str()))
        .one(pg)
        .await
        .unwrap()
        .unwrap()
        .id;
    (user, token, credential, created)
}

/// Item 12: a transaction that drew the lower event id commits after one
/// with a higher id. A subscriber that got what was committed, went away
/// and came back with `after:` its last id still gets both, once.
#[tokio::test]
async fn an_event_that_commits_late_is_not_skipped_by_after() {
    let Some(pg) = TempDb::available().await else { return };
    let server = Server::start_with(&[("DATABASE_URL", &pg.url), ("ENCRYPTION_KEY", EVENT_KEY)]).await;
    let db = sea_orm::Database::connect(&pg.url).await.unwrap();
    let (user, token, credential, created) = someone(&server, "late@example.com", &db).await;

    let mut first = subscribe(&server, &token, Some(created)).await;
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    // A draws its id and stays open; B draws the next one and commits.
    let a = db.begin().await.unwrap();
    let a_ids = insert_events(&a, &user, &credential, 1).await;
    let b = tokio::spawn({
        let (url, user, credential) = (pg.url.clone(), user.clone(), credential.clone());
        async move {
            let db = sea_orm::Database::connect(&url).await.unwrap();
            let b = db.begin().await.unwrap();
            let ids = insert_events(&b, &user, &credential, 1).await;
            b.commit().await.unwrap();
            ids
        }
    });
    let mut received = drain(&mut first, StdDuration::from_millis(1500)).await;
    drop(first);
    // The subscriber is gone; A commits now.
    a.commit().await.unwrap();
    let b_ids = b.await.unwrap();
    let resume = received.last().copied().unwrap_or(created);
    let mut second = subscribe(&server, &token, Some(resume)).await;
    received.extend(drain(&mut second, StdDuration::from_millis(1500)).await);

    let mut expected = [a_ids, b_ids].concat();
    expected.sort_unstable();
    let mut got = received.clone();
    got.sort_unstable();
    assert_eq!(got, expected, "received {received:?}");
}

/// Item 12: the relay's LISTEN connection is terminated right after a burst
/// of events; after it reconnects, no subscriber gets any event twice (and
/// none is missing).
#[tokio::test]
async fn a_listener_reconnect_delivers_no_event_twice() {
    let Some(pg) = TempDb::available().await else { return };
    let server = Server::start_with(&[("DATABASE_URL", &pg.url), ("ENCRYPTION_KEY", EVENT_KEY)]).await;
    let db = sea_orm::Database::connect(&pg.url).await.unwrap();
    let (user, token, credential, _) = someone(&server, "burst@example.com", &db).await;
    let mut socket = subscribe(&server, &token, None).await;
    tokio::time::sleep(StdDuration::from_millis(300)).await;

    // More events than a subscriber remembers by count, within seconds.
    let mut expected = insert_events(&db, &user, &credential, 700).await;
    let mut received = drain(&mut socket, StdDuration::from_millis(1500)).await;
    assert_eq!(received.len(), 700, "every event arrives live");

    // Only the relay's listener of this test's database is terminated.
    let terminated = db
        .query_all(Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_terminate_backend(pid) AS gone FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid() AND query ILIKE 'LISTEN%'",
            [pg.name.clone().into()],
        ))
        .await
        .unwrap();
    assert_eq!(terminated.len(), 1, "one LISTEN backend");
    let mut log_seen = false;
    let deadline = Instant::now() + StdDuration::from_secs(20);
    while Instant::now() < deadline && !log_seen {
        tokio::time::sleep(StdDuration::from_millis(200)).await;
        log_seen = server.log().contains("lost the PostgreSQL listener");
    }
    assert!(log_seen, "the relay noticed the loss");
    // Give it time to reconnect and catch up, then one more event.
    tokio::time::sleep(StdDuration::from_secs(3)).await;
    expected.extend(insert_events(&db, &user, &credential, 1).await);
    received.extend(drain(&mut socket, StdDuration::from_secs(3)).await);

    let mut unique = received.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), received.len(), "{} events delivered twice", received.len() - unique.len());
    assert_eq!(unique, expected, "every event once");
}
