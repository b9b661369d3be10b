//! Expiry scan, refresh and events, driven in-process over a real SQLite
//! file with an injected clock (no sleeping for days), plus the scheduler
//! in a real server.

use chrono::{Duration, Utc};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;
use sesame_vault::agents::{parse_subscription, SubscriptionInput};
use sesame_vault::app::App;
use sesame_vault::auth::Principal;
use sesame_vault::config::{Config, SecretValue};
use sesame_vault::domain::{Agent, CredentialEventKind, CredentialStatus, Provider, Role};
use sesame_vault::entities::{credential, credential_event};
use sesame_vault::providers::ApiKey;
use sesame_vault::store::{CredentialMeta, RefreshReport, ScanReport, TaskId};

use crate::common::*;
use crate::fake_provider::{FakeProvider, Reply};

pub(crate) const WEEK: Duration = Duration::days(7);
pub(crate) const TEN_MIN: Duration = Duration::minutes(10);

/// An in-process vault over a real SQLite file in `dir`, its OAuth endpoints at `fake`.
pub(crate) async fn open(dir: &std::path::Path, fake: &FakeProvider) -> App {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        encryption_key: Some(SecretValue::new("33".repeat(32))),
        ..Config::default()
    };
    config.oauth.openai.issuer = format!("{}/openai", fake.url);
    config.oauth.anthropic.token_url = format!("{}/anthropic/token", fake.url);
    App::open(config).await.unwrap()
}

pub(crate) async fn person(app: &App, email: &str) -> Principal {
    let (user, _) = app.store.operator_unchecked().create_user(email, Role::User).await.unwrap();
    Principal::Person { user_id: user.id.to_string(), role: Role::User, token_id: "test".into() }
}

async fn codex(app: &App, who: &Principal, access_exp: i64, refresh: &str) -> CredentialMeta {
    let access =
        jwt(json!({ "exp": access_exp, "https://api.openai.com/auth": { "chatgpt_account_id": "acct-life" } }));
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

async fn events_of(dir: &std::path::Path, id: &str, kind: CredentialEventKind) -> u64 {
    credential_event::Entity::find()
        .filter(credential_event::Column::CredentialId.eq(id))
        .filter(credential_event::Column::Kind.eq(kind.as_str()))
        .count(&db(dir).await)
        .await
        .unwrap()
}

async fn row(dir: &std::path::Path, id: &str) -> credential::Model {
    credential::Entity::find_by_id(id).one(&db(dir).await).await.unwrap().unwrap()
}

#[tokio::test]
async fn expiry_transitions_happen_once_with_one_event_each() {
    let fake = FakeProvider::start(&[], Reply::Pending).await;
    let dir = tempfile::tempdir().unwrap();
    let app = open(dir.path(), &fake).await;
    let who = person(&app, "exp@example.com").await;
    let t0 = Utc::now();
    let key = app
        .store
        .owner(&who)
        .unwrap()
        .set_api_key(ApiKey::parse(Provider::Openai, OPENAI_KEY).unwrap(), Some(t0 + Duration::days(10)))
        .await
        .unwrap();
    // A refreshable subscription is refreshed, not warned about.
    let sub = codex(&app, &who, (t0 + Duration::days(5)).timestamp(), "rt_TESTexp1111111111111").await;
    let mut events = app.store.events().subscribe();

    assert_eq!(app.store.operator_unchecked().scan_expiry(t0, WEEK).await.unwrap(), ScanReport::default());
    let in_4_days = t0 + Duration::days(4);
    assert_eq!(
        app.store.operator_unchecked().scan_expiry(in_4_days, WEEK).await.unwrap(),
        ScanReport { expiring: 1, expired: 0 }
    );
    assert_eq!(
        app.store.operator_unchecked().scan_expiry(in_4_days, WEEK).await.unwrap(),
        ScanReport::default(),
        "a rerun repeats nothing"
    );
    let event = events.recv().await.unwrap();
    assert_eq!((event.kind, event.credential_id.as_str()), (CredentialEventKind::Expiring, key.id.as_str()));
    assert!(event.message.unwrap().contains("expires soon"));
    assert_eq!(row(dir.path(), &key.id).await.status, "EXPIRING");
    assert_eq!(row(dir.path(), &sub.id).await.status, "ACTIVE");

    // A restart repeats nothing either.
    drop(app);
    let app = open(dir.path(), &fake).await;
    assert_eq!(app.store.operator_unchecked().scan_expiry(in_4_days, WEEK).await.unwrap(), ScanReport::default());
    assert_eq!(events_of(dir.path(), &key.id, CredentialEventKind::Expiring).await, 1);

    // Past expiry: EXPIRED, once, for both.
    let in_11_days = t0 + Duration::days(11);
    assert_eq!(
        app.store.operator_unchecked().scan_expiry(in_11_days, WEEK).await.unwrap(),
        ScanReport { expiring: 0, expired: 2 }
    );
    assert_eq!(app.store.operator_unchecked().scan_expiry(in_11_days, WEEK).await.unwrap(), ScanReport::default());
    assert_eq!(events_of(dir.path(), &key.id, CredentialEventKind::Expired).await, 1);
    assert_eq!(events_of(dir.path(), &sub.id, CredentialEventKind::Expired).await, 1);

    // Two replicas scanning at once still transition each row once.
    let fresh = app
        .store
        .owner(&who)
        .unwrap()
        .set_api_key(ApiKey::parse(Provider::Google, GEMINI_KEY).unwrap(), Some(t0 + Duration::days(3)))
        .await
        .unwrap();
    let other = open(dir.path(), &fake).await;
    let (a, b) = tokio::join!(
        app.store.operator_unchecked().scan_expiry(t0, WEEK),
        other.store.operator_unchecked().scan_expiry(t0, WEEK)
    );
    assert_eq!(a.unwrap().expiring + b.unwrap().expiring, 1);
    assert_eq!(events_of(dir.path(), &fresh.id, CredentialEventKind::Expiring).await, 1);
}

#[tokio::test]
async fn refresh_success_permanent_and_transient_failure() {
    let fake = FakeProvider::start(&[], Reply::Pending).await;
    let dir = tempfile::tempdir().unwrap();
    let app = open(dir.path(), &fake).await;
    let who = person(&app, "ref@example.com").await;
    let now = Utc::now();
    let sub = codex(&app, &who, (now + Duration::minutes(5)).timestamp(), "rt_TESTref11111111111111").await;
    let mut events = app.store.events().subscribe();

    // Not yet due with a 1-minute window; due with 10 minutes.
    assert_eq!(
        app.store.operator_unchecked().refresh_due(now, Duration::minutes(1)).await.unwrap(),
        RefreshReport::default()
    );
    assert_eq!(app.store.operator_unchecked().refresh_due(now, TEN_MIN).await.unwrap().refreshed, 1);
    let event = events.recv().await.unwrap();
    assert_eq!(event.kind, CredentialEventKind::Refreshed);
    assert_eq!(fake.state.lock().unwrap().refresh_calls, vec!["rt_TESTref11111111111111".to_owned()]);
    let after = row(dir.path(), &sub.id).await;
    assert_eq!(after.status, "ACTIVE");
    assert!(after.expires_at.unwrap() > now + Duration::minutes(50));
    // Fresh tokens: nothing to do on the next run.
    assert_eq!(app.store.operator_unchecked().refresh_due(now, TEN_MIN).await.unwrap(), RefreshReport::default());
    assert_eq!(fake.state.lock().unwrap().refresh_calls.len(), 1);

    // Transient failure: unchanged, retried next run.
    let later = now + Duration::minutes(55);
    fake.state.lock().unwrap().refresh_error = Some((503, "unavailable".into()));
    assert_eq!(app.store.operator_unchecked().refresh_due(later, TEN_MIN).await.unwrap().transient, 1);
    assert_eq!(row(dir.path(), &sub.id).await.status, "ACTIVE");
    fake.state.lock().unwrap().refresh_error = None;
    assert_eq!(app.store.operator_unchecked().refresh_due(later, TEN_MIN).await.unwrap().refreshed, 1);

    // Permanent refusal: NEEDS_REAUTH with a message, one event, no retries.
    let much_later = now + Duration::hours(3);
    fake.state.lock().unwrap().refresh_error = Some((400, "refresh_token_invalidated".into()));
    assert_eq!(app.store.operator_unchecked().refresh_due(much_later, TEN_MIN).await.unwrap().needs_reauth, 1);
    let dead = row(dir.path(), &sub.id).await;
    assert_eq!(dead.status, CredentialStatus::NeedsReauth.as_str());
    assert!(dead.status_message.unwrap().contains("sign in again"));
    assert_eq!(events_of(dir.path(), &sub.id, CredentialEventKind::NeedsReauth).await, 1);
    let calls = fake.state.lock().unwrap().refresh_calls.len();
    assert_eq!(
        app.store.operator_unchecked().refresh_due(much_later, TEN_MIN).await.unwrap(),
        RefreshReport::default()
    );
    assert_eq!(fake.state.lock().unwrap().refresh_calls.len(), calls);
}

#[tokio::test]
async fn a_refresh_token_is_never_sent_twice() {
    let fake = FakeProvider::start(&[], Reply::Pending).await;
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), &fake).await;
    let b = open(dir.path(), &fake).await; // a second replica on the same database
    let who = person(&a, "race@example.com").await;
    let now = Utc::now();
    let mut subs = Vec::new();
    for i in 0..5 {
        let agent_holder = person(&a, &format!("race{i}@example.com")).await;
        subs.push(
            codex(
                &a,
                &agent_holder,
                (now + Duration::minutes(2)).timestamp(),
                &format!("rt_TESTrace{i}00000000000000"),
            )
            .await,
        );
    }
    let _ = who;
    // Runs race on both replicas at once.
    let (r1, r2, r3, r4) = tokio::join!(
        a.store.operator_unchecked().refresh_due(now, TEN_MIN),
        b.store.operator_unchecked().refresh_due(now, TEN_MIN),
        a.store.operator_unchecked().refresh_due(now, TEN_MIN),
        b.store.operator_unchecked().refresh_due(now, TEN_MIN),
    );
    let reports: Vec<RefreshReport> = [r1, r2, r3, r4].into_iter().map(Result::unwrap).collect();
    let refreshed: usize = reports.iter().map(|r| r.refreshed).sum();
    assert_eq!(refreshed, 5);
    let calls = fake.state.lock().unwrap().refresh_calls.clone();
    let mut unique = calls.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(calls.len(), unique.len(), "a refresh token was sent twice: {calls:?}");
    for sub in &subs {
        assert_eq!(row(dir.path(), &sub.id).await.status, "ACTIVE");
    }
}

#[tokio::test]
async fn refresh_and_task_issuance_never_both_use_a_token() {
    let fake = FakeProvider::start(&[], Reply::Pending).await;
    let dir = tempfile::tempdir().unwrap();
    let app = open(dir.path(), &fake).await;
    let replica = open(dir.path(), &fake).await;
    let runner = app
        .store
        .runner(&Principal::Runner { token_id: "runner-1".into(), name: "r".into(), created_by: "test".into() })
        .unwrap();
    for round in 0..6 {
        let who = person(&app, &format!("issue{round}@example.com")).await;
        let now = Utc::now();
        codex(&app, &who, (now + Duration::minutes(3)).timestamp(), &format!("rt_TESTissue{round}000000000000")).await;
        let task = TaskId::parse(&format!("task-{round}")).unwrap();
        let (issued, refreshed) = tokio::join!(
            runner.issue(who.user_id().unwrap(), Agent::Codex, None, &task, None),
            replica.store.operator_unchecked().refresh_due(now, TEN_MIN)
        );
        let issued = issued.unwrap();
        let refreshed = refreshed.unwrap();
        let auth: serde_json::Value =
            serde_json::from_str(issued.materialized.file(".codex/auth.json").unwrap().content.expose()).unwrap();
        let handed_out = auth["tokens"]["refresh_token"].as_str().unwrap().to_owned();
        let calls = fake.state.lock().unwrap().refresh_calls.clone();
        // Either the task got the old token and the refresher left it alone
        // (leased), or the refresher used it and the task got the new one.
        assert!(
            !calls.contains(&handed_out),
            "round {round}: the task holds a refresh token that was already sent ({refreshed:?})"
        );
    }
}

#[tokio::test]
async fn leased_credentials_wait_and_expired_ones_refresh_on_issue() {
    let fake = FakeProvider::start(&[], Reply::Pending).await;
    let dir = tempfile::tempdir().unwrap();
    let app = open(dir.path(), &fake).await;
    let who = person(&app, "lease2@example.com").await;
    let runner = app
        .store
        .runner(&Principal::Runner { token_id: "runner-1".into(), name: "r".into(), created_by: "test".into() })
        .unwrap();
    let now = Utc::now();
    let sub = codex(&app, &who, (now + Duration::minutes(5)).timestamp(), "rt_TESTleased000000000000").await;
    let task = TaskId::parse("leased-task").unwrap();
    runner.issue(who.user_id().unwrap(), Agent::Codex, None, &task, None).await.unwrap();
    assert_eq!(
        app.store.operator_unchecked().refresh_due(now, TEN_MIN).await.unwrap().skipped,
        1,
        "out with a task: left alone"
    );
    assert!(fake.state.lock().unwrap().refresh_calls.is_empty());
    // A second task at the same time gets the access token only: two agents
    // must never both hold a single-use refresh token.
    let second = runner
        .issue(who.user_id().unwrap(), Agent::Codex, None, &TaskId::parse("second").unwrap(), None)
        .await
        .unwrap();
    let auth: serde_json::Value =
        serde_json::from_str(second.materialized.file(".codex/auth.json").unwrap().content.expose()).unwrap();
    assert_eq!(auth["tokens"]["refresh_token"], "", "{auth}");
    // The agent refreshed during the run (the job's skipped attempts did not
    // get in the way): the newer tokens are taken back.
    let refreshed = json!({
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": null,
        "tokens": {
            "id_token": jwt(json!({ "email": "x@example.com" })),
            "access_token": jwt(json!({ "exp": (now + Duration::hours(2)).timestamp(),
                "https://api.openai.com/auth": { "chatgpt_account_id": "acct-life" } })),
            "refresh_token": "rt_TESTbytask000000000000",
        },
        "last_refresh": (now + Duration::minutes(1)).to_rfc3339(),
    });
    let apis = app.checker.apis();
    let back =
        runner.return_files(&task, vec![(".codex/auth.json".into(), refreshed.to_string())], apis).await.unwrap();
    assert_eq!(back.len(), 1);
    assert!(row(dir.path(), &sub.id).await.leased_until.is_some(), "the second task still holds it");
    runner.return_files(&TaskId::parse("second").unwrap(), vec![], apis).await.unwrap();
    assert!(row(dir.path(), &sub.id).await.leased_until.is_none());
    // Not due any more (the task's tokens last two hours); with a wider window it is.
    assert_eq!(app.store.operator_unchecked().refresh_due(now, TEN_MIN).await.unwrap(), RefreshReport::default());
    assert_eq!(app.store.operator_unchecked().refresh_due(now, Duration::hours(3)).await.unwrap().refreshed, 1);
    assert_eq!(fake.state.lock().unwrap().refresh_calls, vec!["rt_TESTbytask000000000000".to_owned()]);

    // An expired subscription is refreshed before it is issued.
    let who2 = person(&app, "expired@example.com").await;
    let stale = codex(&app, &who2, (now + Duration::minutes(1)).timestamp(), "rt_TESTexpired0000000000").await;
    sea_orm::ConnectionTrait::execute_unprepared(
        &db(dir.path()).await,
        &format!(
            "UPDATE credentials SET expires_at = '2020-01-01T00:00:00+00:00', status = 'EXPIRED' WHERE id = '{}'",
            stale.id
        ),
    )
    .await
    .unwrap();
    let issued =
        runner.issue(who2.user_id().unwrap(), Agent::Codex, None, &TaskId::parse("t2").unwrap(), None).await.unwrap();
    assert!(issued.expires_at.unwrap() > now);
    assert!(fake.state.lock().unwrap().refresh_calls.contains(&"rt_TESTexpired0000000000".to_owned()));
    let _ = sub;
}

#[tokio::test]
async fn housekeeping_removes_finished_flows() {
    let fake = FakeProvider::start(&[], Reply::Pending).await;
    let dir = tempfile::tempdir().unwrap();
    let app = open(dir.path(), &fake).await;
    let who = person(&app, "hk@example.com").await;
    let owner = app.store.owner(&who).unwrap();
    let pending = app.flows.start_authorization(&owner, Agent::ClaudeCode, Provider::Anthropic).await.unwrap();
    let done = app.flows.start_authorization(&owner, Agent::Opencode, Provider::Anthropic).await.unwrap();
    app.flows.cancel(&owner, done.id.as_str()).await.unwrap();
    assert_eq!(app.flows.delete_finished_before(Utc::now() - Duration::days(7)).await.unwrap(), 0);
    assert_eq!(app.flows.delete_finished_before(Utc::now() + Duration::seconds(1)).await.unwrap(), 1);
    let (code, _) = (app.flows.cancel(&owner, pending.id.as_str()).await.is_ok(), ());
    assert!(code, "the pending flow was kept");
}

#[tokio::test]
async fn the_scheduler_refreshes_in_a_running_server_and_events_stream_live() {
    let fake = FakeProvider::start(&[], Reply::Pending).await;
    let mut env = fake.env();
    env.push(("SESAME_SCHEDULER__REFRESH".into(), "* * * * * *".into()));
    env.push(("SESAME_SCHEDULER__REFRESH_BEFORE".into(), "2h".into()));
    let server = Server::spawn(tempfile::tempdir().unwrap(), env, true).await;
    let (_, token) = server.create_user("live@example.com").await;
    let (_, other) = server.create_user("notme@example.com").await;
    let mut mine = crate::ws::open(&server.url, &token).await;
    let mut theirs = crate::ws::open(&server.url, &other).await;
    let mut admin = crate::ws::open(&server.url, &server.admin_token).await;
    let sub = "subscription { credentialEvents { kind credentialId ownerId provider agent status message } }";
    for socket in [&mut mine, &mut theirs, &mut admin] {
        crate::ws::send(socket, json!({ "id": "e", "type": "subscribe", "payload": { "query": sub } })).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let exp = Utc::now().timestamp() + 3600;
    server
        .ok(&token, "mutation($a: String!, $r: String!) { saveSubscriptionCredential(input: {agent: CODEX, accessToken: $a, refreshToken: $r}) { id } }", json!({ "a": jwt(json!({"exp": exp})), "r": "rt_TESTlive000000000000" }))
        .await;
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        let msg = crate::ws::recv(&mut mine).await.unwrap();
        if msg["type"] == "next" {
            let event = &msg["payload"]["data"]["credentialEvents"];
            assert_eq!(event["agent"], "CODEX");
            kinds.push(event["kind"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(kinds, ["CREATED", "REFRESHED"]);
    let admin_first = crate::ws::recv(&mut admin).await.unwrap();
    assert_eq!(admin_first["payload"]["data"]["credentialEvents"]["kind"], "CREATED");
    assert!(!admin_first.to_string().contains("rt_TEST"));
    // The other user hears nothing of it.
    let nothing = tokio::time::timeout(std::time::Duration::from_millis(500), crate::ws::recv(&mut theirs)).await;
    assert!(nothing.is_err(), "another user's event leaked: {nothing:?}");
    assert_eq!(fake.state.lock().unwrap().refresh_calls, vec!["rt_TESTlive000000000000".to_owned()]);
}

#[test]
fn bad_schedules_stop_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let out = cli_in(dir.path(), &[("SESAME_SCHEDULER__REFRESH", "every minute")], &["serve"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("scheduler.refresh"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli_in(dir.path(), &[("SESAME_SCHEDULER__EXPIRING_WITHIN", "a week")], &["serve"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("scheduler.expiring_within"));
}

/// Issue 23: with proxy delivery the vault holds the login for the whole
/// task, so a login that would expire within the task's lease is refreshed
/// before the task starts; a login refreshed within the last ten minutes is
/// not refreshed again (tokens shorter-lived than the lease would otherwise
/// cost a real refresh per task); with files nothing changes.
#[tokio::test]
async fn a_proxy_task_starts_with_a_login_refreshed_ahead_of_its_lease() {
    use sesame_vault::delivery::ProxyAccess;
    use sesame_vault::domain::Delivery;
    use sesame_vault::store::DeliverySettings;
    let fake = FakeProvider::start(&[], Reply::Pending).await;
    let dir = tempfile::tempdir().unwrap();
    let app = open(dir.path(), &fake).await;
    let access = ProxyAccess {
        url: "http://127.0.0.1:9".into(),
        ca_cert_pem: "-----BEGIN CERTIFICATE-----\nTESTCA\n-----END CERTIFICATE-----\n".into(),
    };
    app.store.set_delivery(DeliverySettings { default: Delivery::Files, proxy: Some(access) });
    let runner = app
        .store
        .runner(&Principal::Runner { token_id: "runner-1".into(), name: "r".into(), created_by: "test".into() })
        .unwrap();
    let now = Utc::now();
    let age = |id: String| {
        let dir = dir.path().to_path_buf();
        async move {
            sea_orm::ConnectionTrait::execute_unprepared(
                &db(&dir).await,
                &format!("UPDATE credentials SET updated_at = '2020-01-01T00:00:00+00:00' WHERE id = '{id}'"),
            )
            .await
            .unwrap();
        }
    };

    // Files: a login that expires in 30 minutes goes out as it is.
    let files_person = person(&app, "ahead-files@example.com").await;
    let files_sub =
        codex(&app, &files_person, (now + Duration::minutes(30)).timestamp(), "rt_TESTaheadfiles0000000").await;
    age(files_sub.id.clone()).await;
    let task = TaskId::parse("files-task").unwrap();
    runner.issue(files_person.user_id().unwrap(), Agent::Codex, None, &task, Some(Delivery::Files)).await.unwrap();
    assert!(fake.state.lock().unwrap().refresh_calls.is_empty(), "files: the agent refreshes for itself");

    // Proxy: refreshed once before the task starts.
    let who = person(&app, "ahead-proxy@example.com").await;
    let sub = codex(&app, &who, (now + Duration::minutes(30)).timestamp(), "rt_TESTaheadproxy0000000").await;
    age(sub.id.clone()).await;
    let first = TaskId::parse("proxy-task-1").unwrap();
    let issued = runner.issue(who.user_id().unwrap(), Agent::Codex, None, &first, Some(Delivery::Proxy)).await.unwrap();
    assert_eq!(fake.state.lock().unwrap().refresh_calls, vec!["rt_TESTaheadproxy0000000".to_owned()]);
    assert!(issued.expires_at.unwrap() > now + Duration::minutes(30), "the task sees the refreshed expiry");
    assert!(row(dir.path(), &sub.id).await.leased_until.is_none(), "a proxy grant leases nothing");

    // Refreshed just now: the next task does not cost another refresh,
    // even though the new token also ends within the lease.
    let second = TaskId::parse("proxy-task-2").unwrap();
    runner.issue(who.user_id().unwrap(), Agent::Codex, None, &second, Some(Delivery::Proxy)).await.unwrap();
    assert_eq!(fake.state.lock().unwrap().refresh_calls.len(), 1, "at most one refresh ahead per ten minutes");
}
