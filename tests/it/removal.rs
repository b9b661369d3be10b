//! Remove means removed (issue 15): an agent's Remove leaves nothing of
//! that agent issuable except what its answer says remains; tokens the
//! vault's own sign-in obtained are revoked at the (fake) provider, pasted
//! ones are not; malformed system-wide keys stop start-up.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;
use crate::fake_provider::{FakeProvider, Reply};

const DISCONNECT: &str = "mutation($a: Agent!, $s: Boolean) { disconnectAgent(agent: $a, includeSharedApiKeys: $s) { agent removed { id provider kind agent revocation { result message } } remaining { source provider credentialId envVar } } }";
const ISSUE: &str = "mutation($u: ID!, $a: Agent!, $p: Provider, $t: String!) { issueTaskCredentials(userId: $u, agent: $a, provider: $p, taskId: $t) { source credentialId provider } }";
const MINE: &str = "{ myCredentials { id agent provider kind } }";
const SYSTEM_OPENAI: &str = "sk-system-TESTkeyHHHHHHHHHHHHHHHHHHHH";

fn codex_auth() -> String {
    let exp = chrono::Utc::now().timestamp() + 86_400;
    json!({
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": null,
        "tokens": {
            "id_token": jwt(json!({"email": "t@example.com", "https://api.openai.com/auth": {"chatgpt_account_id": "acct-1"}})),
            "access_token": jwt(json!({"exp": exp, "n": "codex"})),
            "refresh_token": "rt_TESTremoval111111111111",
            "account_id": "acct-1"
        },
        "last_refresh": "2026-11-01T00:00:00Z"
    })
    .to_string()
}

/// Every API key, and a subscription for every agent that takes one (the
/// Copilot token both as API key and as subscription).
async fn save_everything(server: &Server, token: &str) {
    for (provider, key) in [
        (Provider::Anthropic, ANTHROPIC_KEY),
        (Provider::Openai, OPENAI_KEY),
        (Provider::Google, GEMINI_KEY),
        (Provider::Github, COPILOT_TOKEN),
    ] {
        server.api().set_api_key(token, provider, key).await.unwrap();
    }
    let access = jwt(json!({ "exp": chrono::Utc::now().timestamp() + 86_400, "n": "opencode" }));
    for input in [
        json!({ "agent": "CLAUDE_CODE", "token": CLAUDE_OAT }),
        json!({ "agent": "CODEX", "authJson": codex_auth() }),
        json!({ "agent": "COPILOT", "token": COPILOT_TOKEN }),
        json!({ "agent": "OPENCODE", "provider": "ANTHROPIC", "token": CLAUDE_OAT }),
        json!({ "agent": "OPENCODE", "provider": "OPENAI", "accessToken": access, "refreshToken": "rt_TESTremoval222222222222" }),
    ] {
        server.api().save_subscription(token, input).await.unwrap();
    }
}

async fn mine(server: &Server, token: &str) -> Vec<Value> {
    server.ok(token, MINE, json!({})).await["myCredentials"].as_array().unwrap().clone()
}

async fn disconnect(server: &Server, token: &str, agent: &str, shared: bool) -> Value {
    server.ok(token, DISCONNECT, json!({ "a": agent, "s": shared })).await["disconnectAgent"].clone()
}

/// (provider, kind, agent) of each removed credential, sorted.
fn removed_slots(removal: &Value) -> Vec<(String, String, String)> {
    let mut slots: Vec<_> = removal["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["provider"].as_str().unwrap().to_owned(),
                r["kind"].as_str().unwrap().to_owned(),
                r["agent"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    slots.sort();
    slots
}

fn slots(list: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    let mut v: Vec<_> = list.iter().map(|(p, k, a)| (p.to_string(), k.to_string(), a.to_string())).collect();
    v.sort();
    v
}

/// For each provider of the agent, a runner's issuance gets exactly the
/// first source `remaining` names for it, or NO_CREDENTIALS when it names none.
async fn issuance_matches_remaining(
    server: &Server,
    runner: &str,
    user: &str,
    agent: &str,
    providers: &[&str],
    removal: &Value,
) {
    let remaining = removal["remaining"].as_array().unwrap();
    for provider in providers {
        let task = format!("after-remove-{agent}-{provider}");
        let vars = json!({ "u": user, "a": agent, "p": provider, "t": task });
        let first = remaining.iter().find(|r| r["provider"] == *provider);
        let res = server.gql(runner, ISSUE, vars).await;
        match first {
            None => {
                assert_eq!(res["errors"][0]["extensions"]["code"], "NO_CREDENTIALS", "{agent}/{provider}: {res}");
            }
            Some(first) => {
                let issued = &res["data"]["issueTaskCredentials"];
                assert_eq!(issued["source"], first["source"], "{agent}/{provider}: {res}");
                assert_eq!(issued["credentialId"], first["credentialId"], "{agent}/{provider}: {res}");
            }
        }
    }
}

/// An agent, its providers, what its Remove takes without the flag
/// (provider, kind, agent), and what remains (source, provider) in order.
type Case = (
    &'static str,
    &'static [&'static str],
    Vec<(&'static str, &'static str, &'static str)>,
    &'static [(&'static str, &'static str)],
);

#[tokio::test]
async fn each_agents_remove_leaves_only_what_it_says_remains() {
    let server = Server::start_with(&[("OPENAI_API_KEY", SYSTEM_OPENAI)]).await;
    let runner = server.runner_token();
    let api = "API_KEY";
    let sub = "SUBSCRIPTION";
    let cases: [Case; 5] = [
        ("CLAUDE_CODE", &["ANTHROPIC"], vec![("ANTHROPIC", sub, "CLAUDE_CODE")], &[("USER_API_KEY", "ANTHROPIC")]),
        ("CODEX", &["OPENAI"], vec![("OPENAI", sub, "CODEX")], &[("USER_API_KEY", "OPENAI"), ("SYSTEM_KEY", "OPENAI")]),
        ("COPILOT", &["GITHUB"], vec![("GITHUB", sub, "COPILOT"), ("GITHUB", api, "")], &[]),
        // Aider and Crush read GEMINI_API_KEY too: the Google key is shared.
        ("GEMINI", &["GOOGLE"], vec![], &[("USER_API_KEY", "GOOGLE")]),
        (
            "OPENCODE",
            &["ANTHROPIC", "OPENAI"],
            vec![("ANTHROPIC", sub, "OPENCODE"), ("OPENAI", sub, "OPENCODE")],
            &[("USER_API_KEY", "ANTHROPIC"), ("USER_API_KEY", "OPENAI"), ("SYSTEM_KEY", "OPENAI")],
        ),
    ];
    for (agent, providers, removed, remaining) in cases {
        let (user, token) = server.create_user(&format!("{}@example.com", agent.to_lowercase())).await;
        save_everything(&server, &token).await;
        let before = mine(&server, &token).await;
        assert_eq!(before.len(), 9);

        let removal = disconnect(&server, &token, agent, false).await;
        assert_eq!(removal["agent"], agent);
        assert_eq!(removed_slots(&removal), slots(&removed), "{agent}: {removal}");
        for r in removal["removed"].as_array().unwrap() {
            // All pasted: nothing revoked, the person is told where to do it.
            assert_eq!(r["revocation"]["result"], "NOT_OFFERED", "{r}");
            let message = r["revocation"]["message"].as_str().unwrap();
            assert!(message.contains("settings") && message.contains("https://"), "{message}");
        }
        let got: Vec<(String, String)> = removal["remaining"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["source"].as_str().unwrap().to_owned(), r["provider"].as_str().unwrap().to_owned()))
            .collect();
        let want: Vec<(String, String)> = remaining.iter().map(|(s, p)| (s.to_string(), p.to_string())).collect();
        assert_eq!(got, want, "{agent}: {removal}");
        for r in removal["remaining"].as_array().unwrap() {
            if r["source"] == "SYSTEM_KEY" {
                assert_eq!(r["envVar"], "OPENAI_API_KEY");
                assert!(r["credentialId"].is_null());
            } else {
                assert!(r["credentialId"].is_string() && r["envVar"].is_null(), "{r}");
            }
        }
        issuance_matches_remaining(&server, &runner, &user, agent, providers, &removal).await;

        // Nothing else of the person's was touched.
        let after = mine(&server, &token).await;
        assert_eq!(after.len(), before.len() - removed.len(), "{agent}");
        let gone: Vec<&Value> = removal["removed"].as_array().unwrap().iter().map(|r| &r["id"]).collect();
        assert!(after.iter().all(|c| !gone.contains(&&c["id"])));

        // With the flag, the shared keys go too; then only a system key remains.
        let shared = disconnect(&server, &token, agent, true).await;
        let shared_removed = shared["removed"].as_array().unwrap().len();
        let kept_keys = remaining.iter().filter(|(s, _)| *s == "USER_API_KEY").count();
        assert_eq!(shared_removed, kept_keys, "{agent}: {shared}");
        assert!(shared["remaining"].as_array().unwrap().iter().all(|r| r["source"] == "SYSTEM_KEY"), "{shared}");
        issuance_matches_remaining(&server, &runner, &user, agent, providers, &shared).await;
        assert_eq!(mine(&server, &token).await.len(), before.len() - removed.len() - kept_keys);
    }
}

#[tokio::test]
async fn remove_agent_credentials_counts_and_remove_api_key_says_whether_there_was_one() {
    let server = Server::start().await;
    let (_, token) = server.create_user("count@example.com").await;

    // A Copilot token saved both as API key and as subscription is gone from both.
    server.api().set_api_key(&token, Provider::Github, COPILOT_TOKEN).await.unwrap();
    server.api().save_subscription(&token, json!({ "agent": "COPILOT", "token": COPILOT_TOKEN })).await.unwrap();
    let n = server.ok(&token, "mutation { removeAgentCredentials(agent: COPILOT) }", json!({})).await;
    assert_eq!(n["removeAgentCredentials"], 2);
    assert!(mine(&server, &token).await.is_empty());

    server.api().set_api_key(&token, Provider::Anthropic, ANTHROPIC_KEY).await.unwrap();
    server.api().save_subscription(&token, json!({ "agent": "CLAUDE_CODE", "token": CLAUDE_OAT })).await.unwrap();
    let n = server.ok(&token, "mutation { removeAgentCredentials(agent: CLAUDE_CODE) }", json!({})).await;
    assert_eq!(n["removeAgentCredentials"], 1, "the shared Anthropic key stays");
    let n = server
        .ok(&token, "mutation { removeAgentCredentials(agent: CLAUDE_CODE, includeSharedApiKeys: true) }", json!({}))
        .await;
    assert_eq!(n["removeAgentCredentials"], 1);
    let n = server.ok(&token, "mutation { removeAgentCredentials(agent: CLAUDE_CODE) }", json!({})).await;
    assert_eq!(n["removeAgentCredentials"], 0);

    const REMOVE_KEY: &str = "mutation($p: Provider!) { removeApiKey(provider: $p) }";
    server.api().set_api_key(&token, Provider::Openai, OPENAI_KEY).await.unwrap();
    let (_, other) = server.create_user("other@example.com").await;
    let theirs = server.ok(&other, REMOVE_KEY, json!({ "p": "OPENAI" })).await;
    assert_eq!(theirs["removeApiKey"], false, "another person's key is not theirs to remove");
    assert_eq!(server.ok(&token, REMOVE_KEY, json!({ "p": "OPENAI" })).await["removeApiKey"], true);
    assert_eq!(server.ok(&token, REMOVE_KEY, json!({ "p": "OPENAI" })).await["removeApiKey"], false);
    assert!(mine(&server, &token).await.is_empty());
}

async fn sign_in(server: &Server, token: &str, agent: &str, provider: &str) -> String {
    const START: &str = "mutation($a: Agent!, $p: Provider!) { startDeviceFlow(agent: $a, provider: $p) { id } }";
    const FLOW: &str = "query($id: ID!) { deviceFlow(id: $id) { status credential { id } } }";
    let started = server.ok(token, START, json!({ "a": agent, "p": provider })).await;
    let id = started["startDeviceFlow"]["id"].as_str().unwrap().to_owned();
    for _ in 0..300 {
        let flow = server.ok(token, FLOW, json!({ "id": id })).await["deviceFlow"].clone();
        if flow["status"] != "PENDING" {
            assert_eq!(flow["status"], "AUTHORIZED", "{flow}");
            return flow["credential"]["id"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("sign-in {id} did not finish");
}

fn revocation_of(removal: &Value, kind: &str) -> Value {
    removal["removed"].as_array().unwrap().iter().find(|r| r["kind"] == kind).unwrap()["revocation"].clone()
}

#[tokio::test]
async fn signed_in_tokens_are_revoked_at_the_provider_and_pasted_ones_are_not() {
    let fake = FakeProvider::start(&[], Reply::Authorize).await;
    let mut env = fake.env();
    env.extend(fake.revoke_env());
    let server = Server::spawn(tempfile::tempdir().unwrap(), env, true).await;
    let (_, token) = server.create_user("revoke@example.com").await;

    // GitHub device sign-in, plus a pasted key: only the signed-in token is revoked.
    sign_in(&server, &token, "COPILOT", "GITHUB").await;
    server.api().set_api_key(&token, Provider::Github, COPILOT_TOKEN).await.unwrap();
    let removal = disconnect(&server, &token, "COPILOT", false).await;
    assert_eq!(removal["removed"].as_array().unwrap().len(), 2, "{removal}");
    let signed_in = revocation_of(&removal, "SUBSCRIPTION");
    assert_eq!(signed_in["result"], "REVOKED", "{removal}");
    let pasted = revocation_of(&removal, "API_KEY");
    assert_eq!(pasted["result"], "NOT_OFFERED");
    assert!(pasted["message"].as_str().unwrap().contains("https://github.com/settings/personal-access-tokens"));
    let gho = "gho_TESTfromDevice1234567890abcdefABCD";
    assert_eq!(fake.revocations(), [("github".to_owned(), gho.to_owned(), String::new())]);

    // OpenAI device login: the refresh token is revoked (it ends the login).
    sign_in(&server, &token, "CODEX", "OPENAI").await;
    let removal = disconnect(&server, &token, "CODEX", false).await;
    assert_eq!(revocation_of(&removal, "SUBSCRIPTION")["result"], "REVOKED", "{removal}");
    let last = fake.revocations().last().unwrap().clone();
    assert_eq!(last, ("openai".to_owned(), "rt_fake_0".to_owned(), "refresh_token".to_owned()));

    // A pasted Codex login is not sent anywhere.
    server.api().save_subscription(&token, json!({ "agent": "CODEX", "authJson": codex_auth() })).await.unwrap();
    let removal = disconnect(&server, &token, "CODEX", false).await;
    let pasted = revocation_of(&removal, "SUBSCRIPTION");
    assert_eq!(pasted["result"], "NOT_OFFERED");
    assert!(pasted["message"].as_str().unwrap().contains("chatgpt.com"), "{pasted}");
    assert_eq!(fake.revocations().len(), 2);

    // removeCredential revokes a signed-in token too.
    let id = sign_in(&server, &token, "COPILOT", "GITHUB").await;
    server.api().remove_credential(&token, &id).await.unwrap();
    assert_eq!(fake.revocations().len(), 3);

    // The provider failing: removed all the same, FAILED, and where to revoke it by hand.
    fake.state.lock().unwrap().revoke_status = Some(500);
    sign_in(&server, &token, "COPILOT", "GITHUB").await;
    let removal = disconnect(&server, &token, "COPILOT", false).await;
    let failed = revocation_of(&removal, "SUBSCRIPTION");
    assert_eq!(failed["result"], "FAILED", "{removal}");
    let message = failed["message"].as_str().unwrap();
    assert!(
        message.contains("500") && message.contains("by hand") && message.contains("github.com/settings"),
        "{message}"
    );
    assert_eq!(fake.revocations().len(), 4);
    sign_in(&server, &token, "CODEX", "OPENAI").await;
    let removal = disconnect(&server, &token, "CODEX", false).await;
    assert_eq!(revocation_of(&removal, "SUBSCRIPTION")["result"], "FAILED", "{removal}");
    assert_eq!(fake.revocations().len(), 5);
    assert!(mine(&server, &token).await.is_empty());

    // An admin's deletions revoke signed-in tokens too (the admin never sees them).
    fake.state.lock().unwrap().revoke_status = None;
    let admin = server.admin_token.clone();
    let (_, user_token) = server.create_user("deleted@example.com").await;
    let id = sign_in(&server, &token, "COPILOT", "GITHUB").await;
    server.ok(&admin, "mutation($id: ID!) { deleteCredential(id: $id) }", json!({ "id": id })).await;
    assert_eq!(fake.revocations().len(), 6);
    let me = server.ok(&token, "{ me { id } }", json!({})).await["me"]["id"].clone();
    sign_in(&server, &token, "CODEX", "OPENAI").await;
    server.ok(&admin, "mutation($u: ID!) { deleteUserCredentials(userId: $u) }", json!({ "u": me })).await;
    assert_eq!(fake.revocations().len(), 7);
    assert_eq!(fake.revocations().last().unwrap().0, "openai");
    sign_in(&server, &user_token, "COPILOT", "GITHUB").await;
    let them = server.ok(&user_token, "{ me { id } }", json!({})).await["me"]["id"].clone();
    server.ok(&admin, "mutation($id: ID!) { deleteUser(id: $id) }", json!({ "id": them })).await;
    assert_eq!(fake.revocations().len(), 8);
    assert!(mine(&server, &token).await.is_empty());

    // No token in the log.
    let log = server.log();
    assert!(!log.contains(gho) && !log.contains("rt_fake_0"), "a token reached the log");
}

/// Polls `done` every 50 ms for up to 20 s.
async fn wait_for(what: &str, done: impl Fn() -> bool) {
    for _ in 0..400 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn a_login_removed_while_its_refresh_is_in_flight_leaves_no_live_token() {
    removed_while_refreshing(vec![]).await;
}

#[tokio::test]
async fn a_login_removed_while_its_refresh_is_in_flight_leaves_no_live_token_on_postgres() {
    let Some(pg) = crate::postgres::TempDb::available().await else { return };
    removed_while_refreshing(vec![("DATABASE_URL".into(), pg.url.clone())]).await;
}

/// A refresh the fake holds at the provider while the login is removed.
async fn removed_while_refreshing(mut env: Vec<(String, String)>) {
    const DURING_REFRESH: &str = "credential removed during its refresh";
    let fake = FakeProvider::start(&[], Reply::Authorize).await;
    let hold = std::sync::Arc::new(tokio::sync::Notify::new());
    fake.state.lock().unwrap().hold_refreshes = Some(hold.clone());
    env.extend(fake.env());
    env.push(("SESAME_SCHEDULER__REFRESH".into(), "* * * * * *".into()));
    env.push(("SESAME_SCHEDULER__REFRESH_BEFORE".into(), "48h".into()));
    let server = Server::spawn(tempfile::tempdir().unwrap(), env, true).await;
    let (_, token) = server.create_user("inflight@example.com").await;
    let refresh_calls = || fake.state.lock().unwrap().refresh_calls.clone();
    let openai = |t: &str| ("openai".to_owned(), t.to_owned(), "refresh_token".to_owned());

    // A device login; the scheduler's refresh sends rt_fake_0 and the fake
    // holds its answer (rt_fake_1: rt_fake_0 is spent at the provider now).
    sign_in(&server, &token, "CODEX", "OPENAI").await;
    wait_for("the refresh", || !refresh_calls().is_empty()).await;
    assert_eq!(refresh_calls(), ["rt_fake_0"]);

    // Removed meanwhile: the token read is revoked (the fake, as OpenAI, says yes).
    let removal = disconnect(&server, &token, "CODEX", false).await;
    assert_eq!(revocation_of(&removal, "SUBSCRIPTION")["result"], "REVOKED", "{removal}");
    assert_eq!(fake.revocations(), [openai("rt_fake_0")]);

    // The refresh gets rt_fake_1, finds the row gone and revokes what it got.
    hold.notify_one();
    wait_for("the new refresh token's revocation", || fake.revocations().len() == 2).await;
    assert_eq!(fake.revocations(), [openai("rt_fake_0"), openai("rt_fake_1")]);
    assert!(mine(&server, &token).await.is_empty());
    wait_for("the refresher's log line", || server.log().matches(DURING_REFRESH).count() == 1).await;

    // A pasted login removed during its refresh: nothing is sent anywhere.
    server.api().save_subscription(&token, json!({ "agent": "CODEX", "authJson": codex_auth() })).await.unwrap();
    wait_for("the second refresh", || refresh_calls().len() == 2).await;
    assert_eq!(refresh_calls()[1], "rt_TESTremoval111111111111");
    let removal = disconnect(&server, &token, "CODEX", false).await;
    assert_eq!(revocation_of(&removal, "SUBSCRIPTION")["result"], "NOT_OFFERED", "{removal}");
    hold.notify_one();
    wait_for("the refresher's log line", || server.log().matches(DURING_REFRESH).count() == 2).await;
    assert_eq!(fake.revocations().len(), 2);
    assert!(mine(&server, &token).await.is_empty());
    assert_eq!(refresh_calls().len(), 2, "nothing left to refresh");

    let log = server.log();
    assert!(!log.contains("rt_fake_") && !log.contains("rt_TEST"), "a token reached the log");
}

#[tokio::test]
async fn malformed_system_keys_stop_start_up_naming_the_variable() {
    let secret = "SECRETpartXYZ0123456789abcdefgh";
    let cases = [
        ("COPILOT_GITHUB_TOKEN", format!("ghp_{secret}"), "Classic GitHub tokens"),
        ("ANTHROPIC_API_KEY", format!("sk-wrong-{secret}"), "sk-ant-api03-"),
        ("OPENAI_API_KEY", format!("sk-proj-{secret} {secret}"), "spaces"),
        ("GEMINI_API_KEY", format!("AIza{secret}"), "39 characters"),
    ];
    for (var, value, rule) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let env = [(var, value.as_str())];
        let run = tokio::task::spawn_blocking({
            let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            move || {
                let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                cli_in(&path, &env, &["serve"])
            }
        });
        let out = tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .unwrap_or_else(|_| panic!("serve with a malformed {var} did not stop"))
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{var}: {stdout}");
        assert!(stderr.contains(var) && stderr.contains(rule), "{var}: {stderr}");
        assert!(!stdout.contains("listening") && !stdout.contains("admin token"), "{stdout}");
        for text in [&stdout, &stderr] {
            assert!(!text.contains(secret), "the value of {var} was printed: {text}");
        }
        assert!(!dir.path().join("sesame.db").exists(), "nothing was created before the refusal");
    }
}
