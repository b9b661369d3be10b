//! Task credentials: priority, what each agent gets, audit before
//! plaintext, and taking refreshed files back.

use serde_json::{json, Value};

use crate::common::*;

const ISSUE: &str = "mutation($u: ID!, $a: Agent!, $p: Provider, $t: String!) { issueTaskCredentials(userId: $u, agent: $a, provider: $p, taskId: $t) { source credentialId provider expiresAt env { name value } files { path mode content } } }";
const RETURN: &str = "mutation($t: String!, $f: [CredentialFileInput!]!) { returnTaskCredentials(taskId: $t, files: $f) { id status expiresAt } }";

fn env_of(issued: &Value) -> Vec<(String, String)> {
    issued["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_owned(), e["value"].as_str().unwrap().to_owned()))
        .collect()
}

fn file_of(issued: &Value, path: &str) -> Value {
    let file = issued["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == path)
        .unwrap_or_else(|| panic!("no {path} in {issued}"));
    assert_eq!(file["mode"], 0o600);
    serde_json::from_str(file["content"].as_str().unwrap()).unwrap()
}

async fn issue(server: &Server, runner: &str, user: &str, agent: &str, provider: Option<&str>, task: &str) -> Value {
    let agent = agent.parse().unwrap();
    server.api().issue_task(runner, user, agent, provider.map(|p| p.parse().unwrap()), task).await.unwrap()
}

async fn sqlite(server: &Server) -> sea_orm::DatabaseConnection {
    let url = format!("sqlite://{}", server.data_dir().join("sesame.db").display());
    sea_orm::Database::connect(url).await.unwrap()
}

async fn exec(server: &Server, sql: &str) {
    use sea_orm::ConnectionTrait;
    sqlite(server).await.execute_unprepared(sql).await.unwrap();
}

fn codex_auth(access_exp: i64, refresh: &str, last_refresh: &str) -> String {
    json!({
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": null,
        "tokens": {
            "id_token": jwt(json!({"email": "t@example.com", "https://api.openai.com/auth": {"chatgpt_account_id": "acct-1"}})),
            "access_token": jwt(json!({"exp": access_exp, "n": refresh})),
            "refresh_token": refresh,
            "account_id": "acct-1"
        },
        "last_refresh": last_refresh
    })
    .to_string()
}

#[tokio::test]
async fn priority_subscription_then_api_key_then_system_key() {
    let server = Server::start_with(&[("OPENAI_API_KEY", "sk-system-TESTkeyHHHHHHHHHHHHHHHHHHHH")]).await;
    let runner = server.runner_token();
    let (user, token) = server.create_user("prio@example.com").await;
    let exp = chrono::Utc::now().timestamp() + 86_400;
    server.api().save_subscription(&token, json!({ "agent": "CODEX", "authJson": codex_auth(exp, "rt_TESTone1111111111111111", "2026-11-01T00:00:00Z") })).await.unwrap();
    server.api().set_api_key(&token, Provider::Openai, OPENAI_KEY).await.unwrap();

    let sub = issue(&server, &runner, &user, "CODEX", None, "task-1").await;
    assert_eq!(sub["source"], "SUBSCRIPTION");
    assert_eq!(sub["provider"], "OPENAI");
    assert!(env_of(&sub).is_empty(), "a subscription run gets no OPENAI_API_KEY");
    file_of(&sub, ".codex/auth.json");

    // A subscription that needs re-auth is skipped, and the API key is used.
    exec(&server, "UPDATE credentials SET status = 'NEEDS_REAUTH' WHERE kind = 'SUBSCRIPTION'").await;
    let key = issue(&server, &runner, &user, "CODEX", None, "task-2").await;
    assert_eq!(key["source"], "USER_API_KEY");
    // Codex reads OPENAI_API_KEY interactively, CODEX_API_KEY under `codex exec`.
    assert_eq!(
        env_of(&key),
        vec![("OPENAI_API_KEY".to_owned(), OPENAI_KEY.to_owned()), ("CODEX_API_KEY".to_owned(), OPENAI_KEY.to_owned())]
    );
    assert!(key["files"].as_array().unwrap().is_empty());

    // An expired key is skipped too: the system key is next.
    exec(&server, "UPDATE credentials SET expires_at = '2020-01-01T00:00:00+00:00' WHERE kind = 'API_KEY'").await;
    let system = issue(&server, &runner, &user, "CODEX", None, "task-3").await;
    assert_eq!(system["source"], "SYSTEM_KEY");
    assert!(system["credentialId"].is_null());
    assert_eq!(
        env_of(&system),
        vec![
            ("OPENAI_API_KEY".to_owned(), "sk-system-TESTkeyHHHHHHHHHHHHHHHHHHHH".to_owned()),
            ("CODEX_API_KEY".to_owned(), "sk-system-TESTkeyHHHHHHHHHHHHHHHHHHHH".to_owned())
        ]
    );

    // Nothing at all: NO_CREDENTIALS says what to configure and why things were skipped.
    let (code, message) = server.err(&runner, ISSUE, json!({ "u": user, "a": "CLAUDE_CODE", "t": "task-4" })).await;
    assert_eq!(code, "NO_CREDENTIALS");
    assert!(message.contains("API key") && message.contains("ANTHROPIC_API_KEY"), "{message}");
    let (code, message) =
        server.err(&runner, ISSUE, json!({ "u": user, "a": "CODEX", "p": "ANTHROPIC", "t": "task-5" })).await;
    assert_eq!(code, "BAD_USER_INPUT", "{message}");
    let (code, _) = server.err(&runner, ISSUE, json!({ "u": user, "a": "OPENCODE", "t": "task-5" })).await;
    assert_eq!(code, "BAD_USER_INPUT");
    let (code, _) = server
        .err(&runner, ISSUE, json!({ "u": "0190c1d2-0000-7000-8000-000000000000", "a": "CODEX", "t": "task-6" }))
        .await;
    assert_eq!(code, "NOT_FOUND");
    let (code, _) = server.err(&runner, ISSUE, json!({ "u": user, "a": "CODEX", "t": "bad task id!" })).await;
    assert_eq!(code, "BAD_USER_INPUT");

    let server2 = Server::start().await;
    let runner2 = server2.runner_token();
    let (user2, token2) = server2.create_user("reauth@example.com").await;
    server2.api().save_subscription(&token2, json!({ "agent": "CLAUDE_CODE", "token": CLAUDE_OAT })).await.unwrap();
    exec(&server2, "UPDATE credentials SET status = 'NEEDS_REAUTH'").await;
    let (code, message) = server2.err(&runner2, ISSUE, json!({ "u": user2, "a": "CLAUDE_CODE", "t": "t" })).await;
    assert_eq!(code, "NO_CREDENTIALS");
    assert!(message.contains("sign in again"), "{message}");

    // lastUsedAt is set and the audit names the task, without secrets.
    let mine = server.ok(&token, "{ myCredentials { kind lastUsedAt } }", json!({})).await;
    assert!(mine["myCredentials"].as_array().unwrap().iter().all(|c| !c["lastUsedAt"].is_null()));
    let audit = server
        .ok(
            &server.admin_token,
            "{ auditLog(first: 100) { nodes { action actorKind taskId credentialId detail } } }",
            json!({}),
        )
        .await;
    let issued: Vec<&Value> = audit["auditLog"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["action"] == "TASK_CREDENTIALS_ISSUED")
        .collect();
    assert_eq!(issued.len(), 3);
    assert!(issued.iter().all(|n| n["actorKind"] == "RUNNER"));
    assert_eq!(issued[0]["taskId"], "task-1");
    assert!(!audit.to_string().contains("TESTkey") && !audit.to_string().contains("rt_TEST"));
}

#[tokio::test]
async fn every_agent_gets_exactly_what_its_cli_reads() {
    let server = Server::start().await;
    let runner = server.runner_token();
    let (user, token) = server.create_user("agents@example.com").await;

    // Claude Code, subscription: token env, credentials file, onboarding flag; never the API key.
    server.api().set_api_key(&token, Provider::Anthropic, ANTHROPIC_KEY).await.unwrap();
    server.api().save_subscription(&token, json!({ "agent": "CLAUDE_CODE", "token": CLAUDE_OAT })).await.unwrap();
    let claude = issue(&server, &runner, &user, "CLAUDE_CODE", None, "c1").await;
    assert_eq!(claude["source"], "SUBSCRIPTION");
    assert_eq!(env_of(&claude), vec![("CLAUDE_CODE_OAUTH_TOKEN".to_owned(), CLAUDE_OAT.to_owned())]);
    let creds = file_of(&claude, ".claude/.credentials.json");
    assert_eq!(creds["claudeAiOauth"]["accessToken"], CLAUDE_OAT);
    let expires_ms = creds["claudeAiOauth"]["expiresAt"].as_i64().unwrap();
    let expires_at: chrono::DateTime<chrono::Utc> = claude["expiresAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(expires_ms, expires_at.timestamp_millis());
    assert_eq!(creds["claudeAiOauth"]["scopes"], json!(["user:inference"]));
    assert_eq!(file_of(&claude, ".claude.json"), json!({ "hasCompletedOnboarding": true }));

    // Claude Code, API key only.
    server.ok(&token, "mutation { removeAgentCredentials(agent: CLAUDE_CODE) }", json!({})).await;
    let claude_key = issue(&server, &runner, &user, "CLAUDE_CODE", None, "c2").await;
    assert_eq!(claude_key["source"], "USER_API_KEY");
    assert_eq!(env_of(&claude_key), vec![("ANTHROPIC_API_KEY".to_owned(), ANTHROPIC_KEY.to_owned())]);
    assert!(claude_key["files"].as_array().unwrap().is_empty());

    // Codex, subscription from an access token only: still a loadable auth.json.
    let exp = chrono::Utc::now().timestamp() + 7200;
    let access = jwt(json!({ "exp": exp, "https://api.openai.com/auth": { "chatgpt_account_id": "acct-9" } }));
    let codex_login = json!({ "agent": "CODEX", "accessToken": access, "refreshToken": "rt_TESTcodex22222222222222" });
    server.api().save_subscription(&token, codex_login).await.unwrap();
    let codex = issue(&server, &runner, &user, "CODEX", None, "x1").await;
    let auth = file_of(&codex, ".codex/auth.json");
    assert_eq!(auth["auth_mode"], "chatgpt");
    assert!(auth["OPENAI_API_KEY"].is_null());
    assert_eq!(auth["tokens"]["access_token"], access);
    assert_eq!(auth["tokens"]["refresh_token"], "rt_TESTcodex22222222222222");
    assert_eq!(auth["tokens"]["account_id"], "acct-9");
    let id_token = auth["tokens"]["id_token"].as_str().unwrap();
    let parts: Vec<&str> = id_token.split('.').collect();
    assert_eq!(parts.len(), 3, "id_token must be a JWT");
    use base64::Engine;
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert!(claims.is_object());
    assert!(chrono::DateTime::parse_from_rfc3339(auth["last_refresh"].as_str().unwrap()).is_ok());
    assert!(env_of(&codex).is_empty());

    // OpenCode: auth.json keyed by provider. An OAuth login is not also put
    // in OPENCODE_AUTH_CONTENT: OpenCode would then ignore the tokens it refreshes.
    server.api().save_subscription(&token, json!({ "agent": "OPENCODE", "provider": "OPENAI", "accessToken": access, "refreshToken": "rt_TESTopencode33333333333" })).await.unwrap();
    let oc = issue(&server, &runner, &user, "OPENCODE", Some("OPENAI"), "o1").await;
    let auth = file_of(&oc, ".local/share/opencode/auth.json");
    assert_eq!(auth["openai"]["type"], "oauth");
    assert_eq!(auth["openai"]["access"], access);
    assert_eq!(auth["openai"]["refresh"], "rt_TESTopencode33333333333");
    assert_eq!(auth["openai"]["expires"], exp * 1000);
    assert!(env_of(&oc).is_empty());
    let oc_key = issue(&server, &runner, &user, "OPENCODE", Some("ANTHROPIC"), "o2").await;
    let auth = file_of(&oc_key, ".local/share/opencode/auth.json");
    assert_eq!(auth, json!({ "anthropic": { "type": "api", "key": ANTHROPIC_KEY } }));
    // An API key has nothing to refresh: the same JSON also goes in OPENCODE_AUTH_CONTENT.
    let env = env_of(&oc_key);
    assert_eq!(env[0].0, "OPENCODE_AUTH_CONTENT");
    assert_eq!(serde_json::from_str::<Value>(&env[0].1).unwrap(), auth);

    // Copilot and Gemini: one environment variable each.
    server.api().set_api_key(&token, Provider::Github, COPILOT_TOKEN).await.unwrap();
    server.api().set_api_key(&token, Provider::Google, GEMINI_KEY).await.unwrap();
    let copilot = issue(&server, &runner, &user, "COPILOT", None, "g1").await;
    assert_eq!(env_of(&copilot), vec![("COPILOT_GITHUB_TOKEN".to_owned(), COPILOT_TOKEN.to_owned())]);
    let gemini = issue(&server, &runner, &user, "GEMINI", None, "g2").await;
    assert_eq!(env_of(&gemini), vec![("GEMINI_API_KEY".to_owned(), GEMINI_KEY.to_owned())]);

    // People never get plaintext, and a runner never sees hints.
    for who in [&server.admin_token, &token] {
        let (code, _) = server.err(who, ISSUE, json!({ "u": user, "a": "GEMINI", "t": "g3" })).await;
        assert_eq!(code, "FORBIDDEN");
    }
}

#[tokio::test]
async fn nothing_is_returned_when_the_audit_cannot_be_written() {
    let server = Server::start().await;
    let runner = server.runner_token();
    let (user, token) = server.create_user("audit@example.com").await;
    server.api().set_api_key(&token, Provider::Google, GEMINI_KEY).await.unwrap();
    exec(&server, "CREATE TRIGGER no_issue_audit BEFORE INSERT ON audit_log WHEN NEW.action = 'TASK_CREDENTIALS_ISSUED' BEGIN SELECT RAISE(ABORT, 'audit store unavailable'); END").await;
    let res = server.gql(&runner, ISSUE, json!({ "u": user, "a": "GEMINI", "t": "t1" })).await;
    assert_eq!(res["errors"][0]["extensions"]["code"], "INTERNAL", "{res}");
    assert!(res["data"].is_null());
    assert!(!res.to_string().contains(&GEMINI_KEY[6..]), "plaintext left without an audit entry");
    assert!(!res.to_string().contains("audit store unavailable"), "internal cause reached the client");
    let mine = server.ok(&token, "{ myCredentials { lastUsedAt } }", json!({})).await;
    assert!(mine["myCredentials"][0]["lastUsedAt"].is_null(), "the failed issuance changed nothing");
    exec(&server, "DROP TRIGGER no_issue_audit").await;
    issue(&server, &runner, &user, "GEMINI", None, "t2").await;
}

#[tokio::test]
async fn refreshed_files_come_back_and_stale_or_foreign_ones_do_not() {
    let server = Server::start().await;
    let runner = server.runner_token();
    let (user, token) = server.create_user("ret@example.com").await;
    let exp = chrono::Utc::now().timestamp() + 3600;
    server.api().save_subscription(&token, json!({ "agent": "CODEX", "authJson": codex_auth(exp, "rt_TESTold1111111111111111", "2026-11-20T00:00:00Z") })).await.unwrap();
    server.api().set_api_key(&token, Provider::Google, GEMINI_KEY).await.unwrap();
    issue(&server, &runner, &user, "CODEX", None, "run-1").await;

    // Unknown task, foreign path, broken file: refused, nothing changes.
    let (code, msg) = server.err(&runner, RETURN, json!({ "t": "run-unknown", "f": [] })).await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(msg.contains("run-unknown"), "{msg}");
    let (code, msg) = server
        .err(&runner, RETURN, json!({ "t": "run-1", "f": [{ "path": ".claude/.credentials.json", "content": "{}" }] }))
        .await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(msg.contains("not a login file"), "{msg}");
    let (code, _) = server
        .err(&runner, RETURN, json!({ "t": "run-1", "f": [{ "path": ".codex/auth.json", "content": "{not json" }] }))
        .await;
    assert_eq!(code, "BAD_USER_INPUT");
    // Stale: different tokens that are older than what is stored.
    let stale = codex_auth(exp - 600, "rt_TESTstale22222222222222", "2026-11-10T00:00:00Z");
    let (code, msg) = server
        .err(&runner, RETURN, json!({ "t": "run-1", "f": [{ "path": ".codex/auth.json", "content": stale }] }))
        .await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(msg.contains("older"), "{msg}");
    // Tokens of another ChatGPT account are foreign, however new.
    let other_account = codex_auth(exp + 999_999, "rt_TESTother444444444444", "2026-11-27T23:00:00Z")
        .replace("\"acct-1\"", "\"acct-someone-else\"");
    let (code, msg) = server
        .err(&runner, RETURN, json!({ "t": "run-1", "f": [{ "path": ".codex/auth.json", "content": other_account }] }))
        .await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(msg.contains("different account"), "{msg}");
    // Another runner cannot return this task's files.
    let other_runner = server.runner_token();
    let (code, _) = server.err(&other_runner, RETURN, json!({ "t": "run-1", "f": [] })).await;
    assert_eq!(code, "BAD_USER_INPUT");

    // The agent refreshed: newer tokens are stored, and the next task gets them.
    let fresh = codex_auth(exp + 86_400, "rt_TESTnew3333333333333333", "2026-11-27T12:00:00Z");
    let back = server
        .ok(&runner, RETURN, json!({ "t": "run-1", "f": [{ "path": ".codex/auth.json", "content": fresh }] }))
        .await;
    let creds = back["returnTaskCredentials"].as_array().unwrap();
    assert_eq!(creds.len(), 1);
    let expires: chrono::DateTime<chrono::Utc> = creds[0]["expiresAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(expires.timestamp(), exp + 86_400);
    let next = issue(&server, &runner, &user, "CODEX", None, "run-2").await;
    assert_eq!(file_of(&next, ".codex/auth.json")["tokens"]["refresh_token"], "rt_TESTnew3333333333333333");

    // The task is finished: a second return is refused.
    let (code, _) = server.err(&runner, RETURN, json!({ "t": "run-1", "f": [] })).await;
    assert_eq!(code, "BAD_USER_INPUT");

    // A runner reading a hint in a mutation payload is refused.
    let res = server
        .gql(&runner, "mutation { returnTaskCredentials(taskId: \"run-2\", files: []) { id hint } }", json!({}))
        .await;
    assert_eq!(res["errors"][0]["extensions"]["code"], "FORBIDDEN", "{res}");

    // A credential replaced by its owner during a run makes the task's file stale.
    issue(&server, &runner, &user, "CODEX", None, "run-3").await;
    server.api().save_subscription(&token, json!({ "agent": "CODEX", "authJson": codex_auth(exp + 100, "rt_TESTowner444444444444", "2026-11-27T13:00:00Z") })).await.unwrap();
    let later = codex_auth(exp + 200_000, "rt_TESTtask55555555555555", "2026-11-27T14:00:00Z");
    let (code, _) = server
        .err(&runner, RETURN, json!({ "t": "run-3", "f": [{ "path": ".codex/auth.json", "content": later }] }))
        .await;
    assert_eq!(code, "BAD_USER_INPUT");
    let events = server.ok(&server.admin_token, "{ auditLog(first: 100) { nodes { action } } }", json!({})).await;
    assert_eq!(events.to_string().matches("TASK_CREDENTIALS_RETURNED").count(), 1);
}

#[tokio::test]
async fn leases_run_out() {
    let server = Server::start_with(&[("SESAME_TASKS__LEASE", "1s")]).await;
    let runner = server.runner_token();
    let (user, token) = server.create_user("lease@example.com").await;
    let exp = chrono::Utc::now().timestamp() + 3600;
    server.api().save_subscription(&token, json!({ "agent": "CODEX", "authJson": codex_auth(exp, "rt_TESTlease111111111111", "2026-11-20T00:00:00Z") })).await.unwrap();
    issue(&server, &runner, &user, "CODEX", None, "short").await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (code, msg) = server.err(&runner, RETURN, json!({ "t": "short", "f": [] })).await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(msg.contains("lease"), "{msg}");
}

#[tokio::test]
async fn task_env_and_task_return_commands() {
    let server = Server::start().await;
    let runner = server.runner_token();
    let (user, token) = server.create_user("shell@example.com").await;
    let exp = chrono::Utc::now().timestamp() + 3600;
    server.api().save_subscription(&token, json!({ "agent": "CODEX", "authJson": codex_auth(exp, "rt_TESTshell11111111111111", "2026-11-20T00:00:00Z") })).await.unwrap();
    server.api().save_subscription(&token, json!({ "agent": "CLAUDE_CODE", "token": CLAUDE_OAT })).await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let home_s = home.path().to_str().unwrap();
    let env = [("SESAME_VAULT_URL", server.url.as_str()), ("SESAME_VAULT_TOKEN", runner.as_str())];
    let out = cli_in(
        home.path(),
        &env,
        &["task-env", "--user", &user, "--agent", "CLAUDE_CODE", "--task", "sh-1", "--home", home_s],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.trim(), format!("export CLAUDE_CODE_OAUTH_TOKEN='{CLAUDE_OAT}'"));
    use std::os::unix::fs::PermissionsExt;
    for path in [".claude/.credentials.json", ".claude.json"] {
        let meta = std::fs::metadata(home.path().join(path)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{path}");
    }

    let out = cli_in(
        home.path(),
        &env,
        &["task-env", "--user", &user, "--agent", "CODEX", "--task", "sh-2", "--home", home_s],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The agent refreshes during the run; the runner sends the files back.
    let fresh = codex_auth(exp + 7200, "rt_TESTshell22222222222222", "2026-11-27T12:00:00Z");
    std::fs::write(home.path().join(".codex/auth.json"), fresh).unwrap();
    std::fs::remove_file(home.path().join(".claude/.credentials.json")).unwrap();
    let out = cli_in(home.path(), &env, &["task-return", "--task", "sh-2", "--home", home_s]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let next = issue(&server, &runner, &user, "CODEX", None, "sh-3").await;
    assert_eq!(file_of(&next, ".codex/auth.json")["tokens"]["refresh_token"], "rt_TESTshell22222222222222");

    // Errors are reported, with a non-zero exit.
    let out = cli_in(
        home.path(),
        &env,
        &["task-env", "--user", &user, "--agent", "GEMINI", "--task", "sh-4", "--home", home_s],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("NO_CREDENTIALS"));
}

/// Tasks that start together are issued in shared batches: each is still
/// audited and leased exactly once, errors stay with their own request, and
/// a single-use (OpenAI) refresh token goes to exactly one of them.
#[tokio::test]
async fn tasks_starting_together_are_each_audited_and_leased_once() {
    let server = Server::start_with(&[("RUST_LOG", "info,sesame_vault::store=debug")]).await;
    let runner = server.runner_token();
    let (user, token) = server.create_user("burst@example.com").await;
    let (empty_user, _) = server.create_user("nothing@example.com").await;
    let exp = chrono::Utc::now().timestamp() + 86_400;
    server.api().save_subscription(&token, json!({ "agent": "CODEX", "authJson": codex_auth(exp, "rt_TESTburst111111111111", "2026-11-01T00:00:00Z") })).await.unwrap();
    server.api().set_api_key(&token, Provider::Anthropic, ANTHROPIC_KEY).await.unwrap();

    let unknown_user = "0190c1d2-0000-7000-8000-000000000000";
    let requests: Vec<(String, &str, String)> = (0..60)
        .map(|i| match i % 4 {
            0 => (user.clone(), "CODEX", format!("codex-{i}")),
            1 | 2 => (user.clone(), "CLAUDE_CODE", format!("claude-{i}")),
            _ if i % 8 == 3 => (empty_user.clone(), "CLAUDE_CODE", format!("empty-{i}")),
            _ => (unknown_user.to_owned(), "CLAUDE_CODE", format!("unknown-{i}")),
        })
        .collect();
    let answers = futures_util::future::join_all(
        requests.iter().map(|(u, a, t)| server.gql(&runner, ISSUE, json!({ "u": u, "a": a, "t": t }))),
    )
    .await;

    let mut refresh_tokens = 0;
    let mut issued_tasks = Vec::new();
    for ((user_id, agent, task), answer) in requests.iter().zip(&answers) {
        let code = answer["errors"][0]["extensions"]["code"].as_str();
        if user_id == unknown_user {
            assert_eq!(code, Some("NOT_FOUND"), "{answer}");
        } else if *user_id == empty_user {
            assert_eq!(code, Some("NO_CREDENTIALS"), "{answer}");
        } else {
            assert!(answer["errors"].is_null(), "{task}: {answer}");
            let issued = &answer["data"]["issueTaskCredentials"];
            if *agent == "CODEX" {
                assert_eq!(issued["source"], "SUBSCRIPTION");
                let auth = file_of(issued, ".codex/auth.json");
                if auth["tokens"]["refresh_token"] == "rt_TESTburst111111111111" {
                    refresh_tokens += 1;
                } else {
                    assert_eq!(auth["tokens"]["refresh_token"], "", "{auth}");
                }
            } else {
                assert_eq!(issued["source"], "USER_API_KEY");
                assert_eq!(env_of(issued), vec![("ANTHROPIC_API_KEY".to_owned(), ANTHROPIC_KEY.to_owned())]);
            }
            issued_tasks.push(task.clone());
        }
    }
    assert_eq!(issued_tasks.len(), 45);
    assert_eq!(refresh_tokens, 1, "the single-use refresh token went to exactly one task");

    // One audit entry and one lease per issued task; none for refusals.
    use sea_orm::{ConnectionTrait, Statement};
    let db = sqlite(&server).await;
    let rows = |sql: &str| {
        let stmt = Statement::from_string(sea_orm::DbBackend::Sqlite, sql.to_owned());
        let db = &db;
        async move {
            let mut tasks: Vec<String> =
                db.query_all(stmt).await.unwrap().iter().map(|r| r.try_get_by_index(0).unwrap()).collect();
            tasks.sort();
            tasks
        }
    };
    issued_tasks.sort();
    assert_eq!(rows("SELECT task_id FROM audit_log WHERE action = 'TASK_CREDENTIALS_ISSUED'").await, issued_tasks);
    assert_eq!(rows("SELECT task_id FROM task_leases").await, issued_tasks);

    // They really did share batches (the point of the change).
    let log = server.log();
    let batched = log
        .lines()
        .filter(|l| l.contains("task issuance batch"))
        .filter_map(|l| l.split("requests=").nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?.parse::<usize>().ok())
        .max()
        .unwrap_or(0);
    assert!(batched > 1, "no batch held more than one request:\n{log}");
}
