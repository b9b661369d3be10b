//! Proxy delivery in the store (issue 23), in-process over a real SQLite
//! file: what a task holds (placeholders, never a byte of the secret), what
//! the proxy's handle lends for them, when that stops, and the central
//! refresh (many tasks, one real refresh). The proxy's network side is in
//! `proxy.rs`.

use chrono::{Duration, Utc};
use serde_json::json;
use sesame_vault::agents::{parse_subscription, Materialized, SubscriptionInput};
use sesame_vault::app::App;
use sesame_vault::auth::Principal;
use sesame_vault::delivery::{find_all, Field, Found, ProxyAccess};
use sesame_vault::domain::{Agent, CredentialSource, Delivery, Provider};
use sesame_vault::providers::ApiKey;
use sesame_vault::store::{DeliverySettings, RunnerHandle, TaskId};

use crate::common::*;
use crate::fake_provider::{FakeProvider, Reply};
use crate::lifecycle::{open, person};

/// Where Codex refreshes (the proxy answers it).
const OPENAI_TOKEN: (&str, &str) = ("auth.openai.com", "/oauth/token");

const CA: &str = "-----BEGIN CERTIFICATE-----\nTESTCA\n-----END CERTIFICATE-----\n";

/// An in-process vault with proxy delivery on, its grants kept between
/// requests (the watcher `serve` starts with the proxy is running).
async fn vault(dir: &std::path::Path, fake: &FakeProvider) -> App {
    let app = open(dir, fake).await;
    let access = ProxyAccess { url: "http://127.0.0.1:9".into(), ca_cert_pem: CA.into() };
    app.store.set_delivery(DeliverySettings { default: Delivery::Files, proxy: Some(access) });
    let _watcher = app.store.proxy().watch();
    watching(&app).await;
    app
}

/// Waits until `app`'s grants are kept between requests.
async fn watching(app: &App) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !app.store.proxy().is_watching() {
        assert!(std::time::Instant::now() < deadline, "the grant watcher never started");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Lends `found` until its grant is kept (the first use is recorded, then
/// it is read again and kept), after the watcher has heard of every earlier
/// write: what ends it next must reach a kept grant.
async fn warm(app: &App, found: &Found) {
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    for _ in 0..10 {
        app.store.proxy().lend(found).await.unwrap_or_else(|r| panic!("not lent: {}", r.0));
        if app.store.proxy().is_kept(found) {
            return;
        }
    }
    panic!("the grant was never kept");
}

async fn runner(app: &App) -> (RunnerHandle, String) {
    let (id, _) = app.store.operator_unchecked().create_runner_token("proxy-runner").await.unwrap();
    let principal = Principal::Runner { token_id: id.clone(), name: "proxy-runner".into(), created_by: "test".into() };
    (app.store.runner(&principal).unwrap(), id)
}

/// Everything a task was handed, as one text (to grep it).
fn handed(m: &Materialized) -> String {
    let mut all = String::new();
    for e in &m.env {
        all.push_str(&format!("{}={}\n", e.name, e.value.expose()));
    }
    for f in &m.files {
        all.push_str(&format!("{}:\n{}\n", f.path, f.content.expose()));
    }
    all
}

fn placeholder(m: &Materialized, field: Field) -> Found {
    let all = handed(m);
    find_all(&all).into_iter().find(|f| f.field == field).unwrap_or_else(|| panic!("no {field:?} placeholder in {all}"))
}

async fn codex_login(app: &App, who: &Principal, access: &str, refresh: &str) {
    let input = SubscriptionInput {
        agent: Agent::Codex,
        provider: None,
        token: None,
        access_token: Some(access),
        refresh_token: Some(refresh),
        auth_json: None,
        expires_at: None,
    };
    let parsed = parse_subscription(input, Utc::now()).unwrap();
    app.store.owner(who).unwrap().save_subscription(Agent::Codex, parsed).await.unwrap();
}

fn access_jwt(exp: chrono::DateTime<Utc>, tag: &str) -> String {
    jwt(
        json!({ "exp": exp.timestamp(), "tag": tag, "https://api.openai.com/auth": { "chatgpt_account_id": "acct-proxy" } }),
    )
}

#[tokio::test]
async fn a_task_holds_placeholders_and_the_proxy_lends_the_real_values() {
    let fake = FakeProvider::start(&[], Reply::Pending).await;
    let dir = tempfile::tempdir().unwrap();
    let app = vault(dir.path(), &fake).await;
    let (runner, _) = runner(&app).await;
    let who = person(&app, "placeholders@example.com").await;
    let user = who.user_id().unwrap().to_owned();
    let access = access_jwt(Utc::now() + Duration::hours(5), "first");
    codex_login(&app, &who, &access, "rt_TESTproxyREFRESH000000000000").await;
    let key = "sk-ant-api03-TESTproxyKEY0000000000000000000000000000000000000000";
    app.store.owner(&who).unwrap().set_api_key(ApiKey::parse(Provider::Anthropic, key).unwrap(), None).await.unwrap();

    let codex = runner
        .issue(&user, Agent::Codex, None, &TaskId::parse("p-codex").unwrap(), Some(Delivery::Proxy))
        .await
        .unwrap();
    assert_eq!(codex.delivery, Delivery::Proxy);
    let text = handed(&codex.materialized);
    let signature = access.rsplit('.').next().unwrap();
    for real in [signature, "rt_TESTproxyREFRESH000000000000"] {
        assert!(!text.contains(real), "a real secret was handed over:\n{text}");
    }
    // Codex reads the access token's claims (its expiry): they are kept.
    let (claims_part, _) = access.rsplit_once('.').unwrap();
    assert!(text.contains(claims_part), "the access placeholder keeps the JWT's header and claims:\n{text}");
    for var in ["HTTPS_PROXY=http://127.0.0.1:9", "CODEX_CA_CERTIFICATE=.sesame/proxy-ca.pem", "SSL_CERT_FILE="] {
        assert!(text.contains(var), "{var} missing:\n{text}");
    }
    assert!(codex.materialized.env.iter().any(|e| e.name == "CODEX_CA_CERTIFICATE" && e.home_path));
    assert_eq!(codex.materialized.file(".sesame/proxy-ca.pem").unwrap().content.expose(), CA);

    let proxy = app.store.proxy();
    let loan = proxy.lend(&placeholder(&codex.materialized, Field::Access)).await.unwrap();
    assert_eq!(loan.secret.as_str(), access);
    assert_eq!((loan.grant.task_id.as_str(), loan.grant.provider), ("p-codex", Provider::Openai));
    assert_eq!(loan.grant.source, CredentialSource::Subscription);
    let refused = proxy.lend(&placeholder(&codex.materialized, Field::Refresh)).await.err().unwrap();
    assert!(refused.0.contains("never sent on"), "{refused:?}");

    // Claude Code on the person's API key: the key's public prefix is kept.
    let claude = runner
        .issue(&user, Agent::ClaudeCode, None, &TaskId::parse("p-claude").unwrap(), Some(Delivery::Proxy))
        .await
        .unwrap();
    let text = handed(&claude.materialized);
    assert!(!text.contains("TESTproxyKEY"), "{text}");
    assert!(text.contains("ANTHROPIC_API_KEY=sk-ant-api03-svp_k"), "{text}");
    assert!(
        text.contains("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1") && text.contains("NODE_EXTRA_CA_CERTS="),
        "{text}"
    );
    let loan = proxy.lend(&placeholder(&claude.materialized, Field::ApiKey)).await.unwrap();
    assert_eq!(loan.secret.as_str(), key);

    // A forged placeholder (a well-formed id never issued) lends nothing.
    let forged = sesame_vault::delivery::GrantId::mint().placeholder("", Field::ApiKey);
    let refused = proxy.lend(&find_all(&forged)[0]).await.err().unwrap();
    assert!(refused.0.contains("never issued"), "{refused:?}");

    // FILES stays the default, and hands over the real values.
    let files = runner.issue(&user, Agent::ClaudeCode, None, &TaskId::parse("p-files").unwrap(), None).await.unwrap();
    assert_eq!(files.delivery, Delivery::Files);
    assert!(handed(&files.materialized).contains(key));
}

#[tokio::test]
async fn a_placeholder_stops_working_when_its_task_ends_in_any_way() {
    let fake = FakeProvider::start(&[], Reply::Pending).await;
    let dir = tempfile::tempdir().unwrap();
    let app = vault(dir.path(), &fake).await;
    let (runner, runner_id) = runner(&app).await;
    let proxy = app.store.proxy();
    let key = |n: u32| format!("sk-ant-api03-TESTend{n:04}000000000000000000000000000000000000000000");
    let who = person(&app, "ends@example.com").await;
    let user = who.user_id().unwrap().to_owned();
    let owner = app.store.owner(&who).unwrap();
    owner.set_api_key(ApiKey::parse(Provider::Anthropic, &key(1)).unwrap(), None).await.unwrap();
    let issue = |task: &'static str| {
        let (runner, user) = (&runner, &user);
        async move {
            let issued = runner
                .issue(user, Agent::ClaudeCode, None, &TaskId::parse(task).unwrap(), Some(Delivery::Proxy))
                .await
                .unwrap();
            placeholder(&issued.materialized, Field::ApiKey)
        }
    };
    let refusal = |r: Result<sesame_vault::store::Loan, sesame_vault::store::Refusal>| match r {
        Ok(_) => panic!("lent after the task ended"),
        Err(e) => e.0,
    };

    // Returned, even with no files.
    let returned = issue("t-returned").await;
    warm(&app, &returned).await;
    let back = runner.return_files(&TaskId::parse("t-returned").unwrap(), vec![], app.checker.apis()).await.unwrap();
    assert!(back.is_empty());
    assert!(refusal(proxy.lend(&returned).await).contains("returned"));

    // The credential replaced: the placeholder does not follow the new key.
    let replaced = issue("t-replaced").await;
    warm(&app, &replaced).await;
    owner.set_api_key(ApiKey::parse(Provider::Anthropic, &key(2)).unwrap(), None).await.unwrap();
    assert!(refusal(proxy.lend(&replaced).await).contains("replaced"));

    // Its lease over (the store's clock moved past it).
    let lease = issue("t-lease").await;
    warm(&app, &lease).await;
    app.store.clock().shift_for_tests(Duration::hours(3));
    assert!(refusal(proxy.lend(&lease).await).contains("lease is over"));
    app.store.clock().shift_for_tests(Duration::hours(-3));

    // Removed.
    let removed = issue("t-removed").await;
    warm(&app, &removed).await;
    owner.remove_api_key(Provider::Anthropic).await.unwrap();
    assert!(refusal(proxy.lend(&removed).await).contains("removed"));
    owner.set_api_key(ApiKey::parse(Provider::Anthropic, &key(3)).unwrap(), None).await.unwrap();

    // The person disabled (and enabled again: it works again, the task's lease still runs).
    let disabled = issue("t-disabled").await;
    warm(&app, &disabled).await;
    app.store.operator_unchecked().set_disabled(&user, true).await.unwrap();
    assert!(refusal(proxy.lend(&disabled).await).contains("disabled"));
    app.store.operator_unchecked().set_disabled(&user, false).await.unwrap();
    assert!(proxy.lend(&disabled).await.is_ok());

    // The runner token revoked.
    let revoked = issue("t-revoked").await;
    warm(&app, &revoked).await;
    app.store.operator_unchecked().revoke_token(&runner_id).await.unwrap();
    assert!(refusal(proxy.lend(&revoked).await).contains("revoked"));

    // The person deleted.
    let (runner2, _) = self::runner(&app).await;
    let deleted = {
        let issued = runner2
            .issue(&user, Agent::ClaudeCode, None, &TaskId::parse("t-deleted").unwrap(), Some(Delivery::Proxy))
            .await
            .unwrap();
        placeholder(&issued.materialized, Field::ApiKey)
    };
    warm(&app, &deleted).await;
    app.store.operator_unchecked().delete_person(&user).await.unwrap();
    let why = refusal(proxy.lend(&deleted).await);
    assert!(why.contains("deleted") || why.contains("removed"), "{why}");
}

#[tokio::test]
async fn five_tasks_refreshing_at_once_cause_one_real_refresh() {
    let fake = FakeProvider::start(&[], Reply::Pending).await;
    let dir = tempfile::tempdir().unwrap();
    let app = vault(dir.path(), &fake).await;
    let (runner, _) = runner(&app).await;
    let who = person(&app, "refresh@example.com").await;
    let user = who.user_id().unwrap().to_owned();
    // Expires within the margin: the next refresh through the proxy is real.
    codex_login(&app, &who, &access_jwt(Utc::now() + Duration::seconds(60), "old"), "rt_TESTcentral000000000000").await;
    let mut refresh_placeholders = Vec::new();
    for n in 0..5 {
        let task = TaskId::parse(&format!("r-{n}")).unwrap();
        let issued = runner.issue(&user, Agent::Codex, None, &task, Some(Delivery::Proxy)).await.unwrap();
        refresh_placeholders.push(placeholder(&issued.materialized, Field::Refresh));
    }
    assert!(fake.state.lock().unwrap().refresh_calls.is_empty(), "issuance does not refresh a token still valid");
    let proxy = app.store.proxy();
    // Another provider's token endpoint is refused before anything is refreshed.
    let wrong = proxy.refresh(&refresh_placeholders[0], ("platform.claude.com", "/v1/oauth/token")).await;
    assert!(wrong.err().unwrap().0.contains("not for this provider"));
    assert!(fake.state.lock().unwrap().refresh_calls.is_empty());
    let answers =
        futures_util::future::join_all(refresh_placeholders.iter().map(|f| proxy.refresh(f, OPENAI_TOKEN))).await;
    let calls = fake.state.lock().unwrap().refresh_calls.clone();
    assert_eq!(calls, ["rt_TESTcentral000000000000"], "exactly one real refresh, with the real token");
    for (answer, asked) in answers.into_iter().zip(&refresh_placeholders) {
        let answer = answer.unwrap();
        assert!(answer.expires_in.is_some_and(|s| s > 120), "the new token's real expiry: {answer:?}");
        assert!(!answer.refresh_token.contains("rt_"), "never a real refresh token");
        assert_eq!(find_all(&answer.refresh_token)[0].grant, asked.grant, "the task's own grant");
        // The access placeholder lends the new real token.
        let loan = proxy.lend(&find_all(&answer.access_token)[0]).await.unwrap();
        assert!(!loan.secret.contains("old"), "the refreshed token is lent");
    }
    // A later refresh with a fresh token refreshes nothing for real.
    proxy.refresh(&refresh_placeholders[0], OPENAI_TOKEN).await.unwrap();
    assert_eq!(fake.state.lock().unwrap().refresh_calls.len(), 1);
}

#[tokio::test]
async fn proxy_delivery_is_refused_when_no_proxy_runs() {
    let fake = FakeProvider::start(&[], Reply::Pending).await;
    let dir = tempfile::tempdir().unwrap();
    let app = open(dir.path(), &fake).await;
    let (runner, _) = runner(&app).await;
    let who = person(&app, "noproxy@example.com").await;
    let key = "sk-ant-api03-TESTnoproxy00000000000000000000000000000000000000000";
    app.store.owner(&who).unwrap().set_api_key(ApiKey::parse(Provider::Anthropic, key).unwrap(), None).await.unwrap();
    let err = runner
        .issue(who.user_id().unwrap(), Agent::ClaudeCode, None, &TaskId::parse("np").unwrap(), Some(Delivery::Proxy))
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), "BAD_USER_INPUT");
    assert!(format!("{err:?}").contains("SESAME_PROXY__LISTEN"), "{err:?}");
}

/// One in-process vault on PostgreSQL (`url`), its proxy delivery on.
async fn vault_on(url: &str, fake: &FakeProvider) -> App {
    let dir = tempfile::tempdir().unwrap();
    let mut config = sesame_vault::config::Config {
        data_dir: dir.keep(),
        database_url: Some(sesame_vault::config::SecretValue::new(url.to_owned())),
        encryption_key: Some(sesame_vault::config::SecretValue::new("33".repeat(32))),
        ..Default::default()
    };
    config.oauth.openai.issuer = format!("{}/openai", fake.url);
    let app = App::open(config).await.unwrap();
    let access = ProxyAccess { url: "http://127.0.0.1:9".into(), ca_cert_pem: CA.into() };
    app.store.set_delivery(DeliverySettings { default: Delivery::Files, proxy: Some(access) });
    app
}

#[tokio::test]
async fn instances_on_postgresql_share_grants_ends_and_one_refresh() {
    let Some(db) = crate::postgres::TempDb::available().await else { return };
    let fake = FakeProvider::start(&[], Reply::Pending).await;
    let (a, b) = (vault_on(&db.url, &fake).await, vault_on(&db.url, &fake).await);
    let (runner_a, _) = runner(&a).await;
    let who = person(&a, "pg-proxy@example.com").await;
    let user = who.user_id().unwrap().to_owned();
    codex_login(&a, &who, &access_jwt(Utc::now() + Duration::seconds(60), "old"), "rt_TESTpgcentral000000000000").await;
    let mut refresh = Vec::new();
    for n in 0..6 {
        let issued = runner_a
            .issue(&user, Agent::Codex, None, &TaskId::parse(&format!("pg-{n}")).unwrap(), Some(Delivery::Proxy))
            .await
            .unwrap();
        refresh.push(placeholder(&issued.materialized, Field::Refresh));
    }
    // Both instances answer refreshes at once: one real refresh in all.
    let (pa, pb) = (a.store.proxy(), b.store.proxy());
    let answers = futures_util::future::join_all(refresh.iter().enumerate().map(|(i, f)| {
        if i % 2 == 0 {
            pa.refresh(f, OPENAI_TOKEN)
        } else {
            pb.refresh(f, OPENAI_TOKEN)
        }
    }))
    .await;
    assert_eq!(fake.state.lock().unwrap().refresh_calls.len(), 1, "one real refresh across instances");
    // Issued on A, lent by B (kept there: B's relay listens).
    let access = answers.into_iter().next().unwrap().unwrap().access_token;
    let access = &find_all(&access)[0];
    // A hears everything (as `serve` does), B only the grant changes (as
    // `sesame-vault proxy` does).
    sesame_vault::relay::start(a.store.clone(), a.flows.clone()).await.unwrap();
    sesame_vault::relay::start_proxy_grants(b.store.clone()).await.unwrap();
    for app in [&a, &b] {
        watching(app).await;
    }
    warm(&a, access).await;
    warm(&b, access).await;
    // Returned on A: A refuses at once, B as soon as PostgreSQL's
    // notification reaches it.
    runner_a.return_files(&TaskId::parse("pg-0").unwrap(), vec![], a.checker.apis()).await.unwrap();
    let ended = std::time::Instant::now();
    assert!(a.store.proxy().lend(access).await.err().unwrap().0.contains("returned"));
    let refused = loop {
        match b.store.proxy().lend(access).await {
            Err(refused) => break refused,
            Ok(_) => {
                assert!(ended.elapsed() < std::time::Duration::from_secs(2), "B kept lending a returned task's token");
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
    };
    assert!(refused.0.contains("returned"), "{refused:?}");
    eprintln!("instance B refused {:?} after the return on A", ended.elapsed());
}

/// The SQLite triggers' count of changes, read over `c`.
async fn epoch(c: &mut sqlx::SqliteConnection) -> i64 {
    sqlx::query_scalar("SELECT value FROM proxy_epoch WHERE id = 1").fetch_one(c).await.unwrap()
}

#[tokio::test]
async fn a_change_made_outside_this_process_ends_a_kept_grant() {
    let fake = FakeProvider::start(&[], Reply::Pending).await;
    let dir = tempfile::tempdir().unwrap();
    let app = vault(dir.path(), &fake).await;
    let (runner, _) = runner(&app).await;
    let who = person(&app, "outside@example.com").await;
    let user = who.user_id().unwrap().to_owned();
    let key = "sk-ant-api03-TESToutside000000000000000000000000000000000000000000";
    app.store.owner(&who).unwrap().set_api_key(ApiKey::parse(Provider::Anthropic, key).unwrap(), None).await.unwrap();
    let issued =
        runner.issue(&user, Agent::ClaudeCode, None, &TaskId::parse("outside").unwrap(), Some(Delivery::Proxy)).await;
    let found = placeholder(&issued.unwrap().materialized, Field::ApiKey);
    warm(&app, &found).await;
    // Another process on the same file (the operator's CLI would be one).
    let url = format!("sqlite://{}", dir.path().join("sesame.db").display());
    let mut other = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await.unwrap();
    // Counting usage is not a change that could end it.
    let before = epoch(&mut other).await;
    sqlx::query("UPDATE proxy_grants SET requests = requests + 1").execute(&mut other).await.unwrap();
    assert_eq!(epoch(&mut other).await, before, "usage is not watched");
    assert!(app.store.proxy().lend(&found).await.is_ok());
    // The person disabled from outside: refused within the watcher's poll.
    sqlx::query("UPDATE users SET disabled_at = '2026-01-01T00:00:00+00:00' WHERE id = ?")
        .bind(&user)
        .execute(&mut other)
        .await
        .unwrap();
    assert!(epoch(&mut other).await > before);
    let changed = std::time::Instant::now();
    let refused = loop {
        match app.store.proxy().lend(&found).await {
            Err(refused) => break refused,
            Ok(_) => {
                assert!(changed.elapsed() < std::time::Duration::from_secs(2), "a kept grant outlived its person");
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        }
    };
    assert!(refused.0.contains("disabled"), "{refused:?}");
    // The credential deleted from outside: never lent from what was kept.
    sqlx::query("UPDATE users SET disabled_at = NULL WHERE id = ?").bind(&user).execute(&mut other).await.unwrap();
    sqlx::query("DELETE FROM credentials WHERE owner_id = ?").bind(&user).execute(&mut other).await.unwrap();
    let changed = std::time::Instant::now();
    let refused = loop {
        match app.store.proxy().lend(&found).await {
            Err(refused) if refused.0.contains("removed") => break refused,
            _ => {
                assert!(changed.elapsed() < std::time::Duration::from_secs(2), "a kept grant outlived its credential");
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        }
    };
    assert!(refused.0.contains("removed"), "{refused:?}");

    // The counter unreadable: nothing is kept any more.
    sqlx::query("DROP TABLE proxy_epoch").execute(&mut other).await.unwrap();
    let dropped = std::time::Instant::now();
    while app.store.proxy().is_watching() {
        assert!(dropped.elapsed() < std::time::Duration::from_secs(2), "still keeping grants without a watcher");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(!app.store.proxy().is_kept(&found));
}

#[tokio::test]
async fn a_login_held_by_a_files_task_is_lent_as_it_is() {
    let fake = FakeProvider::start(&[], Reply::Pending).await;
    let dir = tempfile::tempdir().unwrap();
    let app = vault(dir.path(), &fake).await;
    let (runner, _) = runner(&app).await;
    let who = person(&app, "held@example.com").await;
    let user = who.user_id().unwrap().to_owned();
    let access = access_jwt(Utc::now() + Duration::seconds(60), "held");
    codex_login(&app, &who, &access, "rt_TESTheld000000000000").await;
    // A FILES task holds the single-use refresh token: the vault must not spend it.
    runner.issue(&user, Agent::Codex, None, &TaskId::parse("files-holder").unwrap(), None).await.unwrap();
    let proxied = runner
        .issue(&user, Agent::Codex, None, &TaskId::parse("proxied").unwrap(), Some(Delivery::Proxy))
        .await
        .unwrap();
    let lend = app.store.proxy();
    let found = placeholder(&proxied.materialized, Field::Access);
    // Lent at once (no waiting out turns for a refresh that cannot happen).
    let loan =
        tokio::time::timeout(std::time::Duration::from_secs(5), lend.lend(&found)).await.expect("no wait").unwrap();
    assert_eq!(loan.secret.as_str(), access);
    assert!(fake.state.lock().unwrap().refresh_calls.is_empty(), "the FILES task's refresh token was not spent");
}
