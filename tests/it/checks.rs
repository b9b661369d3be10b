//! Checking credentials with their provider (issue 15), against a fake that
//! answers as the real providers do: results, statuses and events per
//! provider; check on save; issuance skipping INVALID credentials; no
//! refresh token ever sent; the periodic job once per credential across
//! replicas; the per-provider bound; the cooldown on a person's checks.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;
use crate::fake_checks::{Answer, FakeChecks};
use crate::fake_provider::{FakeProvider, Reply};
use crate::postgres::TempDb;

const CREDENTIAL: &str = "id status statusMessage lastCheckedAt check { result message at }";
const ISSUE: &str = "mutation($u: ID!, $a: Agent!, $p: Provider, $t: String!) { issueTaskCredentials(userId: $u, agent: $a, provider: $p, taskId: $t) { source credentialId } }";

fn set_key() -> String {
    format!("mutation($p: Provider!, $k: String!, $c: Boolean) {{ setApiKey(provider: $p, key: $k, checkOnSave: $c) {{ {CREDENTIAL} }} }}")
}

fn save_sub() -> String {
    format!("mutation($i: SubscriptionCredentialInput!) {{ saveSubscriptionCredential(input: $i) {{ {CREDENTIAL} }} }}")
}

fn check() -> String {
    format!("mutation($id: ID!) {{ checkCredential(id: $id) {{ {CREDENTIAL} }} }}")
}

/// The fake's settings plus `extra`, with the server's own defaults for
/// checks (the harness turns them off for every other test), except the
/// cooldown: the harness's `0s` stays, as these tests check one credential
/// again and again.
fn env_with(fake: &FakeChecks, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = vec![
        ("SESAME_CHECKS__ON_SAVE".to_owned(), "true".to_owned()),
        ("SESAME_SCHEDULER__CHECKS".to_owned(), "0 */10 * * * *".to_owned()),
    ];
    env.extend(fake.env());
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

async fn start(fake: &FakeChecks, extra: &[(&str, &str)]) -> Server {
    Server::spawn(tempfile::tempdir().unwrap(), env_with(fake, extra), true).await
}

/// A Codex login: an access token (a JWT naming the ChatGPT account).
fn chatgpt_access(tag: &str, exp: i64) -> String {
    jwt(json!({ "exp": exp, "tag": tag, "https://api.openai.com/auth": { "chatgpt_account_id": "acct-check" } }))
}

fn in_an_hour() -> i64 {
    chrono::Utc::now().timestamp() + 3600
}

/// Waits until `done` or fails after `limit`.
async fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The credential events a socket received, by credential id, until it is
/// quiet for a second.
async fn events_by_credential(socket: &mut crate::ws::Socket) -> std::collections::HashMap<String, Vec<String>> {
    let mut out: std::collections::HashMap<String, Vec<String>> = Default::default();
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(1), crate::ws::recv(socket)).await {
        if msg["type"] == "next" {
            let event = &msg["payload"]["data"]["credentialEvents"];
            out.entry(event["credentialId"].as_str().unwrap().to_owned())
                .or_default()
                .push(event["kind"].as_str().unwrap().to_owned());
        }
    }
    out
}

#[tokio::test]
async fn each_provider_answer_gives_its_result_status_and_event() {
    let fake = FakeChecks::start().await;
    let server = start(&fake, &[]).await;
    let (_, token) = server.create_user("checks@example.com").await;
    let mut socket = crate::ws::open(&server.url, &token).await;
    let sub = "subscription { credentialEvents { kind credentialId status } }";
    crate::ws::send(&mut socket, json!({ "id": "e", "type": "subscribe", "payload": { "query": sub } })).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let codex = chatgpt_access("each", in_an_hour());
    // (what, the secret the fake sees, the save, what NoAccess comes out as,
    // the status the expiry rules give once usable again: a login without a
    // refresh token expiring within a week is EXPIRING)
    let cases: Vec<(&str, String, Value, &str, &str)> = vec![
        (
            "anthropic key",
            ANTHROPIC_KEY.into(),
            json!({ "p": "ANTHROPIC", "k": ANTHROPIC_KEY, "c": false }),
            "INVALID",
            "ACTIVE",
        ),
        ("openai key", OPENAI_KEY.into(), json!({ "p": "OPENAI", "k": OPENAI_KEY, "c": false }), "VALID", "ACTIVE"),
        ("gemini key", GEMINI_KEY.into(), json!({ "p": "GOOGLE", "k": GEMINI_KEY, "c": false }), "VALID", "ACTIVE"),
        (
            "copilot token",
            COPILOT_TOKEN.into(),
            json!({ "p": "GITHUB", "k": COPILOT_TOKEN, "c": false }),
            "NO_ACCESS",
            "ACTIVE",
        ),
        (
            "claude setup-token",
            CLAUDE_OAT.into(),
            json!({ "i": { "agent": "CLAUDE_CODE", "token": CLAUDE_OAT, "checkOnSave": false } }),
            "VALID",
            "ACTIVE",
        ),
        (
            "chatgpt login",
            codex.clone(),
            json!({ "i": { "agent": "CODEX", "accessToken": codex, "checkOnSave": false } }),
            "VALID",
            "EXPIRING",
        ),
    ];
    let mut expected_events = std::collections::HashMap::new();
    for (what, secret, vars, no_access, usable) in &cases {
        let saved = if vars.get("i").is_some() {
            server.ok(&token, &save_sub(), vars.clone()).await["saveSubscriptionCredential"].clone()
        } else {
            server.ok(&token, &set_key(), vars.clone()).await["setApiKey"].clone()
        };
        assert_eq!(fake.hits(secret), 0, "{what}: checkOnSave false sends nothing");
        assert!(saved["check"].is_null() && saved["lastCheckedAt"].is_null(), "{what}: {saved}");
        let id = saved["id"].as_str().unwrap().to_owned();
        let mut status = "ACTIVE";
        let mut events = vec!["CREATED".to_owned()];
        for (answer, result) in [
            (Answer::Valid, "VALID"),
            (Answer::Down, "UNREACHABLE"),
            (Answer::Invalid, "INVALID"),
            (Answer::Limited, "UNREACHABLE"),
            (Answer::Invalid, "INVALID"),
            (Answer::Valid, "VALID"),
            (Answer::NoAccess, no_access),
        ] {
            fake.set(secret, answer);
            let before = fake.hits(secret);
            let checked = server.ok(&token, &check(), json!({ "id": id })).await["checkCredential"].clone();
            assert!(fake.hits(secret) > before, "{what}: a check asks the provider");
            assert_eq!(checked["check"]["result"], result, "{what} {answer:?}: {checked}");
            assert!(!checked["lastCheckedAt"].is_null() && !checked["check"]["at"].is_null());
            // UNREACHABLE concludes nothing: the status stays what it was.
            let next = match result {
                "INVALID" => "INVALID",
                "VALID" if status == "INVALID" => usable,
                _ => status,
            };
            match (status, next) {
                (from, "INVALID") if from != "INVALID" => events.push("INVALID".into()),
                ("INVALID", to) if to != "INVALID" => events.push("UPDATED".into()),
                _ => {}
            }
            status = next;
            assert_eq!(checked["status"], status, "{what} {answer:?}: {checked}");
            let message = checked["check"]["message"].as_str().unwrap_or_default();
            assert_eq!(message.is_empty(), result == "VALID", "{what} {answer:?}: {checked}");
            assert!(!message.contains(secret.as_str()), "{what}: the message quotes the credential");
            if result == "INVALID" {
                assert_eq!(checked["statusMessage"], checked["check"]["message"], "{what}");
            }
        }
        expected_events.insert(id, events);
    }
    let seen = events_by_credential(&mut socket).await;
    assert_eq!(seen, expected_events);

    // What each provider was asked, and how.
    let seen = fake.seen();
    let google: Vec<_> = seen.iter().filter(|s| s.path.starts_with("/google")).collect();
    assert!(!google.is_empty() && google.iter().all(|s| !s.everything.contains("key=")), "Gemini: header, not ?key=");
    let usage = seen.iter().find(|s| s.path == "/chatgpt/backend-api/wham/usage").unwrap();
    assert!(usage.everything.contains("chatgpt-account-id: acct-check"), "{}", usage.everything);
    let claude = seen.iter().find(|s| s.path == "/anthropic/api/oauth/profile").unwrap();
    assert!(claude.everything.contains(&format!("authorization: Bearer {CLAUDE_OAT}")));
    assert!(!claude.everything.contains("x-api-key"), "a subscription token is never sent as x-api-key");

    // Provider errors are logged with host, status and duration; never a credential.
    let log = server.log();
    assert!(log.contains("provider call"), "the checks are logged");
    for (what, secret, _, _, _) in &cases {
        assert!(!log.contains(secret.as_str()), "{what}: the log holds the credential");
    }
}

#[tokio::test]
async fn a_bad_credential_is_refused_on_save_and_changes_nothing() {
    let fake = FakeChecks::start().await;
    let server = start(&fake, &[]).await;
    let (_, token) = server.create_user("save@example.com").await;

    // Checked on save by default: one request, the result recorded.
    let saved = server.ok(&token, &set_key(), json!({ "p": "OPENAI", "k": OPENAI_KEY })).await["setApiKey"].clone();
    assert_eq!(saved["check"]["result"], "VALID");
    assert_eq!(fake.hits(OPENAI_KEY), 1);

    // A dead key does not replace the working one.
    let dead = "sk-proj-TESTdeadZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ9z9z";
    fake.set(dead, Answer::Invalid);
    let (code, message) = server.err(&token, &set_key(), json!({ "p": "OPENAI", "k": dead })).await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(message.contains("create a new key in the provider's console"), "{message}");
    assert!(!message.contains(dead) && !message.contains("Incorrect API key"), "{message}");
    let mine = server.ok(&token, "{ myCredentials { id hint check { result } } }", json!({})).await;
    assert_eq!(mine["myCredentials"].as_array().unwrap().len(), 1);
    assert_eq!(mine["myCredentials"][0]["id"], saved["id"]);
    assert!(mine["myCredentials"][0]["hint"].as_str().unwrap().ends_with("1a2b"), "{mine}");

    // A Copilot token of an account without Copilot is refused too, and says why.
    fake.set(COPILOT_TOKEN, Answer::NoAccess);
    let (code, message) =
        server.err(&token, &save_sub(), json!({ "i": { "agent": "COPILOT", "token": COPILOT_TOKEN } })).await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(message.contains("no Copilot access"), "{message}");

    // An unreachable provider does not stop a save: the result says so.
    fake.set(GEMINI_KEY, Answer::Down);
    let saved = server.ok(&token, &set_key(), json!({ "p": "GOOGLE", "k": GEMINI_KEY })).await["setApiKey"].clone();
    assert_eq!(saved["check"]["result"], "UNREACHABLE");
    assert_eq!(saved["status"], "ACTIVE");

    // A replacement clears INVALID (and the old check).
    fake.set(GEMINI_KEY, Answer::Invalid);
    let id = saved["id"].as_str().unwrap();
    let checked = server.ok(&token, &check(), json!({ "id": id })).await["checkCredential"].clone();
    assert_eq!(checked["status"], "INVALID");
    let other = "AIzaSyTESTkeyOTHERCCCCCCCCCCCCCCCCCC456";
    let replaced =
        server.ok(&token, &set_key(), json!({ "p": "GOOGLE", "k": other, "c": false })).await["setApiKey"].clone();
    assert_eq!(replaced["id"], saved["id"]);
    assert_eq!(replaced["status"], "ACTIVE");
    assert!(replaced["check"].is_null(), "{replaced}");
    let audit = server.ok(&server.admin_token, "{ auditLog { nodes { action detail } } }", json!({})).await;
    let text = audit.to_string();
    assert!(text.contains("CREDENTIAL_CHECKED"), "{text}");
    assert!(text.contains("result INVALID before saving; nothing was saved"), "a refused save is audited: {text}");
    assert!(text.contains("checked before saving: result VALID"), "{text}");
    assert!(!text.contains("TEST"), "the audit holds secret material: {text}");
}

#[tokio::test]
async fn check_on_save_off_sends_nothing() {
    let fake = FakeChecks::start().await;
    let server = start(&fake, &[("SESAME_CHECKS__ON_SAVE", "false")]).await;
    let (_, token) = server.create_user("off@example.com").await;
    let saved =
        server.ok(&token, &set_key(), json!({ "p": "ANTHROPIC", "k": ANTHROPIC_KEY })).await["setApiKey"].clone();
    assert!(saved["check"].is_null());
    server.ok(&token, &save_sub(), json!({ "i": { "agent": "CLAUDE_CODE", "token": CLAUDE_OAT } })).await;
    assert!(fake.seen().is_empty(), "the server default is off: nothing sent");
    // Asked for explicitly, it checks.
    let saved = server.ok(&token, &set_key(), json!({ "p": "ANTHROPIC", "k": ANTHROPIC_KEY, "c": true })).await
        ["setApiKey"]
        .clone();
    assert_eq!(saved["check"]["result"], "VALID");
    assert_eq!(fake.hits(ANTHROPIC_KEY), 1);
}

#[tokio::test]
async fn owners_check_their_own_and_admins_see_the_result() {
    let fake = FakeChecks::start().await;
    let server = start(&fake, &[]).await;
    let (_, token) = server.create_user("own@example.com").await;
    let (_, other) = server.create_user("other@example.com").await;
    let saved = server.ok(&token, &set_key(), json!({ "p": "GOOGLE", "k": GEMINI_KEY, "c": false })).await;
    let id = saved["setApiKey"]["id"].as_str().unwrap().to_owned();
    server.ok(&token, &set_key(), json!({ "p": "GITHUB", "k": COPILOT_TOKEN, "c": false })).await;
    let (code, _) = server.err(&other, &check(), json!({ "id": id })).await;
    assert_eq!(code, "NOT_FOUND");
    let (code, _) = server.err(&server.runner_token(), &check(), json!({ "id": id })).await;
    assert_eq!(code, "FORBIDDEN");
    assert!(fake.seen().is_empty());

    let all = server.ok(&token, "mutation { checkMyCredentials { id check { result } } }", json!({})).await;
    let all = all["checkMyCredentials"].as_array().unwrap().clone();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|c| c["check"]["result"] == "VALID"), "{all:?}");
    assert_eq!(fake.hits(GEMINI_KEY), 1);
    assert_eq!(fake.hits(COPILOT_TOKEN), 2, "GitHub: the token, then Copilot");
    // Somebody else's checks cover only their own (none).
    let theirs = server.ok(&other, "mutation { checkMyCredentials { id } }", json!({})).await;
    assert_eq!(theirs["checkMyCredentials"], json!([]));

    let admin = server
        .ok(
            &server.admin_token,
            "query($id: ID!) { credential(id: $id) { lastCheckedAt check { result message } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(admin["credential"]["check"]["result"], "VALID");
}

#[tokio::test]
async fn an_invalid_credential_is_skipped_and_issuance_falls_through() {
    let fake = FakeChecks::start().await;
    let system = "sk-ant-api03-TESTsystemSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSS5s5s";
    let server = start(
        &fake,
        &[("ANTHROPIC_API_KEY", system), ("SESAME_SCHEDULER__CHECKS", "* * * * * *"), ("SESAME_CHECKS__EVERY", "1s")],
    )
    .await;
    let runner = server.runner_token();
    let (user, token) = server.create_user("fall@example.com").await;
    let system_check = || async {
        let keys =
            server.ok(&token, "{ systemKeys { provider configured check { result message } } }", json!({})).await;
        let anthropic = keys["systemKeys"].as_array().unwrap().iter().find(|k| k["provider"] == "ANTHROPIC").cloned();
        anthropic.unwrap()["check"]["result"].as_str().unwrap_or_default().to_owned()
    };
    // Checked at start-up, in the background.
    let deadline = Instant::now() + Duration::from_secs(10);
    while system_check().await != "VALID" {
        assert!(Instant::now() < deadline, "the system key was not checked at start-up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sub = server
        .ok(&token, &save_sub(), json!({ "i": { "agent": "CLAUDE_CODE", "token": CLAUDE_OAT, "checkOnSave": false } }))
        .await["saveSubscriptionCredential"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = server.ok(&token, &set_key(), json!({ "p": "ANTHROPIC", "k": ANTHROPIC_KEY, "c": false })).await
        ["setApiKey"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let issue = |n: u32| {
        let (server, runner, user) = (&server, runner.clone(), user.clone());
        async move { server.gql(&runner, ISSUE, json!({ "u": user, "a": "CLAUDE_CODE", "t": format!("task-{n}") })).await }
    };
    assert_eq!(issue(1).await["data"]["issueTaskCredentials"]["source"], "SUBSCRIPTION");

    fake.set(CLAUDE_OAT, Answer::Invalid);
    server.ok(&token, &check(), json!({ "id": sub })).await;
    assert_eq!(issue(2).await["data"]["issueTaskCredentials"]["source"], "USER_API_KEY");

    fake.set(ANTHROPIC_KEY, Answer::Invalid);
    server.ok(&token, &check(), json!({ "id": key })).await;
    assert_eq!(issue(3).await["data"]["issueTaskCredentials"]["source"], "SYSTEM_KEY");

    // The job re-checks the system key; once INVALID it is skipped too.
    fake.set(system, Answer::Invalid);
    let deadline = Instant::now() + Duration::from_secs(15);
    while system_check().await != "INVALID" {
        assert!(Instant::now() < deadline, "the job did not re-check the system key");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let refused = issue(4).await;
    let error = &refused["errors"][0];
    assert_eq!(error["extensions"]["code"], "NO_CREDENTIALS", "{refused}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("claude setup-token"), "the subscription's reason: {message}");
    assert!(message.contains("copied the entire key"), "the API key's reason: {message}");
    assert!(message.contains("ANTHROPIC_API_KEY"), "the system key is named: {message}");
    assert!(!message.contains("TEST"), "{message}");
    // What a removal says remains follows the same rule: neither the INVALID
    // key nor the refused system key is named.
    let (_, other) = server.create_user("remains@example.com").await;
    let removal =
        server.ok(&other, "mutation { disconnectAgent(agent: CLAUDE_CODE) { remaining { source } } }", json!({})).await;
    assert_eq!(removal["disconnectAgent"]["remaining"], json!([]), "{removal}");

    // A later VALID check makes the subscription usable again.
    fake.set(CLAUDE_OAT, Answer::Valid);
    let checked = server.ok(&token, &check(), json!({ "id": sub })).await["checkCredential"].clone();
    assert_eq!(checked["status"], "ACTIVE");
    assert_eq!(issue(5).await["data"]["issueTaskCredentials"]["source"], "SUBSCRIPTION");
}

#[tokio::test]
async fn a_check_never_sends_a_refresh_token_and_skips_expired_logins() {
    let fake = FakeChecks::start().await;
    let oauth = FakeProvider::start(&[], Reply::Pending).await;
    let mut env = env_with(&fake, &[]);
    env.extend(oauth.env());
    let server = Server::spawn(tempfile::tempdir().unwrap(), env, true).await;
    let (_, token) = server.create_user("refresh@example.com").await;
    let codex_refresh = "rt_TESTcheckNEVERsent0000000000";
    let claude_refresh = "sk-ant-ort01-TESTcheckNEVERsentRRRRRRRRRRRRRRRRRRRRRRRRRRRRRRRR";
    let claude_access = "sk-ant-oat01-TESTcheckOAuthAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let saved = server
        .ok(
            &token,
            &save_sub(),
            json!({ "i": { "agent": "CODEX", "accessToken": chatgpt_access("r", in_an_hour()), "refreshToken": codex_refresh } }),
        )
        .await;
    assert_eq!(saved["saveSubscriptionCredential"]["check"]["result"], "VALID");
    server
        .ok(
            &token,
            &save_sub(),
            json!({ "i": { "agent": "CLAUDE_CODE", "accessToken": claude_access, "refreshToken": claude_refresh } }),
        )
        .await;
    // A login whose access token has expired is not sent: refreshing is
    // the refresher's job, and its status says what to do.
    let soon = chrono::Utc::now().timestamp() + 2;
    let expiring = chatgpt_access("expired", soon);
    let expired = server
        .ok(
            &token,
            &save_sub(),
            json!({ "i": { "agent": "OPENCODE", "provider": "OPENAI", "accessToken": expiring, "checkOnSave": false } }),
        )
        .await["saveSubscriptionCredential"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let unchanged = server.ok(&token, &check(), json!({ "id": expired })).await["checkCredential"].clone();
    assert!(unchanged["check"].is_null(), "{unchanged}");
    assert_eq!(fake.hits(&expiring), 0);

    let all = server.ok(&token, "mutation { checkMyCredentials { agent check { result } } }", json!({})).await;
    assert_eq!(all["checkMyCredentials"].as_array().unwrap().len(), 3);
    assert_eq!(fake.hits(&expiring), 0);
    assert!(fake.hits(claude_access) >= 2);
    assert!(!fake.ever_saw(codex_refresh) && !fake.ever_saw(claude_refresh), "a refresh token reached a provider");
    assert!(oauth.state.lock().unwrap().refresh_calls.is_empty(), "a check refreshed");

    // A login pasted after its access token expired, with its refresh token
    // (a day-old Codex auth.json), is saved unchecked: a check would refuse
    // the old access token, while the refresher renews the login.
    let (_, later) = server.create_user("stale@example.com").await;
    let stale = chatgpt_access("stale", chrono::Utc::now().timestamp() - 3600);
    let saved = server
        .ok(
            &later,
            &save_sub(),
            json!({ "i": { "agent": "CODEX", "accessToken": stale, "refreshToken": "rt_TESTstaleLOGIN000000000000000" } }),
        )
        .await["saveSubscriptionCredential"]
        .clone();
    assert!(saved["check"].is_null(), "{saved}");
    assert_eq!(fake.hits(&stale), 0);
}

#[tokio::test]
async fn the_job_checks_stale_credentials_at_most_n_per_provider_at_once() {
    let fake = FakeChecks::start().await;
    fake.state.lock().unwrap().delay = Duration::from_millis(300);
    // One run, a few seconds from now: every credential is saved by then,
    // so the run has eight to check at once and only the bound holds it.
    let second = (chrono::Utc::now().timestamp() + 8) % 60;
    let schedule = format!("{second} * * * * *");
    let server = start(
        &fake,
        &[
            ("SESAME_SCHEDULER__CHECKS", schedule.as_str()),
            ("SESAME_CHECKS__EVERY", "1h"),
            ("SESAME_CHECKS__PER_PROVIDER", "2"),
        ],
    )
    .await;
    let mut tokens = Vec::new();
    for i in 0..8 {
        let (_, token) = server.create_user(&format!("job{i}@example.com")).await;
        let copilot = format!("github_pat_11TESTjob{i}DDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDD7e8f");
        server.ok(&token, &set_key(), json!({ "p": "GITHUB", "k": copilot, "c": false })).await;
        tokens.push(copilot);
    }
    wait_for(Duration::from_secs(30), "every credential checked", || tokens.iter().all(|t| fake.hits(t) == 2)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for t in &tokens {
        assert_eq!(fake.hits(t), 2, "checked once (the token, then Copilot), not again within EVERY");
    }
    let most = fake.most_in_flight("github");
    assert_eq!(most, 2, "at most 2 requests to one provider at once, and the job used both");
}

#[tokio::test]
async fn the_job_checks_each_stale_credential_once_across_two_replicas() {
    let fake = FakeChecks::start().await;
    fake.state.lock().unwrap().delay = Duration::from_millis(100);
    let Some(db) = TempDb::available().await else { return };
    let system = "AIzaSyTESTsystemGGGGGGGGGGGGGGGGGGGG789";
    let env = env_with(
        &fake,
        &[("SESAME_SCHEDULER__CHECKS", "* * * * * *"), ("SESAME_CHECKS__EVERY", "1h"), ("GEMINI_API_KEY", system)],
    );
    let (a, b) = crate::replicas::pair(&db, &env).await;
    let mut keys = Vec::new();
    for i in 0..10 {
        let server = if i % 2 == 0 { &a } else { &b };
        let (_, token) = server.create_user(&format!("replica{i}@example.com")).await;
        let key = format!("AIzaSyTESTreplica{i:02}CCCCCCCCCCCCCCCCCCCC");
        server.ok(&token, &set_key(), json!({ "p": "GOOGLE", "k": key, "c": false })).await;
        keys.push(key);
    }
    wait_for(Duration::from_secs(30), "every credential checked", || keys.iter().all(|k| fake.hits(k) >= 1)).await;
    tokio::time::sleep(Duration::from_secs(3)).await; // a few more runs on both
    for key in &keys {
        assert_eq!(fake.hits(key), 1, "a credential was checked twice");
    }
    assert_eq!(fake.hits(system), 1, "the system key was checked once, at the first start-up");
}

/// The `CREDENTIAL_CHECKED` audit entries of one credential.
async fn checked_entries(server: &Server, id: &str) -> usize {
    credential_audit(server).await.iter().filter(|(action, of)| action == "CREDENTIAL_CHECKED" && of == id).count()
}

#[tokio::test]
async fn a_credential_checked_within_the_cooldown_is_not_sent_again() {
    let fake = FakeChecks::start().await;
    fake.state.lock().unwrap().delay = Duration::from_millis(200);
    let server = start(&fake, &[("SESAME_CHECKS__COOLDOWN", "1h")]).await;
    let (_, token) = server.create_user("cooldown@example.com").await;
    let saved = server.ok(&token, &set_key(), json!({ "p": "GOOGLE", "k": GEMINI_KEY, "c": false })).await;
    let id = saved["setApiKey"]["id"].as_str().unwrap().to_owned();

    // The first check asks the provider and is audited; the next ones, right
    // after, send nothing, write nothing and return the stored check (even
    // though the provider would now refuse the key).
    let first = server.ok(&token, &check(), json!({ "id": id })).await["checkCredential"].clone();
    assert_eq!(first["check"]["result"], "VALID", "{first}");
    assert_eq!((fake.hits(GEMINI_KEY), checked_entries(&server, &id).await), (1, 1));
    fake.set(GEMINI_KEY, Answer::Invalid);
    for _ in 0..3 {
        let again = server.ok(&token, &check(), json!({ "id": id })).await["checkCredential"].clone();
        assert_eq!(again, first, "returned as it is, with its stored check");
    }
    assert_eq!(fake.hits(GEMINI_KEY), 1, "a check within the cooldown reached the provider");
    assert_eq!(checked_entries(&server, &id).await, 1, "a check within the cooldown was audited");

    // checkMyCredentials likewise: a credential never checked is sent, the
    // one just checked is not; called again, nothing is sent.
    let copilot = server.ok(&token, &set_key(), json!({ "p": "GITHUB", "k": COPILOT_TOKEN, "c": false })).await;
    let copilot_id = copilot["setApiKey"]["id"].as_str().unwrap().to_owned();
    let all = "mutation { checkMyCredentials { id status check { result at } } }";
    for _ in 0..2 {
        let mine = server.ok(&token, all, json!({})).await["checkMyCredentials"].clone();
        assert_eq!(mine.as_array().unwrap().len(), 2, "{mine}");
        assert!(mine.as_array().unwrap().iter().all(|c| c["check"]["result"] == "VALID"), "{mine}");
        assert_eq!(fake.hits(GEMINI_KEY), 1);
        assert_eq!(fake.hits(COPILOT_TOKEN), 2, "GitHub: the token, then Copilot; once");
    }
    assert_eq!(checked_entries(&server, &id).await, 1);
    assert_eq!(checked_entries(&server, &copilot_id).await, 1);

    // Concurrent calls for a credential not checked yet: one is sent.
    let openai = server.ok(&token, &set_key(), json!({ "p": "OPENAI", "k": OPENAI_KEY, "c": false })).await;
    let openai_id = openai["setApiKey"]["id"].as_str().unwrap().to_owned();
    let calls = (0..4).map(|_| {
        server.ok(&token, "mutation($id: ID!) { checkCredential(id: $id) { id } }", json!({ "id": openai_id }))
    });
    futures_util::future::join_all(calls).await;
    assert_eq!(fake.hits(OPENAI_KEY), 1, "concurrent checks of one credential sent more than one request");
    assert_eq!(checked_entries(&server, &openai_id).await, 1);

    // A save is not subject to the cooldown: a new secret is always checked,
    // in the slot of the key checked seconds ago.
    let other = "AIzaSyTESTkeyOTHERCCCCCCCCCCCCCCCCCC456";
    let replaced =
        server.ok(&token, &set_key(), json!({ "p": "GOOGLE", "k": other, "c": true })).await["setApiKey"].clone();
    assert_eq!(replaced["id"], json!(id));
    assert_eq!(replaced["check"]["result"], "VALID", "{replaced}");
    assert_eq!(fake.hits(other), 1, "a save within the cooldown was not checked");
    let dead = "AIzaSyTESTkeyDEADCCCCCCCCCCCCCCCCCCC789";
    fake.set(dead, Answer::Invalid);
    let (code, _) = server.err(&token, &set_key(), json!({ "p": "GOOGLE", "k": dead, "c": true })).await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert_eq!(fake.hits(dead), 1);
}
