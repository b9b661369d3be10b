//! Issue 21, items 1 and 2: trust at the runner's edge. The runner CLI
//! (`task-env`, `task-return`) never reaches anything under the task's home
//! through a link nor takes anything but a regular file there, and the
//! server stores a returned login only when it is of the account it was
//! issued for.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::{json, Value};

use crate::common::*;

const ISSUE: &str = "mutation($u: ID!, $a: Agent!, $p: Provider, $t: String!) { issueTaskCredentials(userId: $u, agent: $a, provider: $p, taskId: $t) { source env { name value } files { path mode content } } }";
const RETURN: &str =
    "mutation($t: String!, $f: [CredentialFileInput!]!) { returnTaskCredentials(taskId: $t, files: $f) { id } }";
const SAVE_CODEX: &str =
    "mutation($j: String!) { saveSubscriptionCredential(input: {agent: CODEX, authJson: $j, checkOnSave: false}) { id } }";

/// A Codex auth.json; the access token carries `account` in its claims, as
/// ChatGPT's do, and `account_id` is written only when `stated` is given.
fn codex_auth(account: &str, stated: Option<&str>, exp: i64, refresh: &str, last_refresh: &str) -> String {
    let claims = |extra: Value| {
        let mut c = json!({ "https://api.openai.com/auth": { "chatgpt_account_id": account } });
        c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        jwt(c)
    };
    json!({
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": null,
        "tokens": {
            "id_token": claims(json!({ "email": format!("{account}@example.com") })),
            "access_token": claims(json!({ "exp": exp, "n": refresh })),
            "refresh_token": refresh,
            "account_id": stated,
        },
        "last_refresh": last_refresh
    })
    .to_string()
}

fn issued_file(issued: &Value, path: &str) -> Value {
    let file = issued["files"].as_array().unwrap().iter().find(|f| f["path"] == path).unwrap();
    serde_json::from_str(file["content"].as_str().unwrap()).unwrap()
}

struct Runner<'a> {
    server: &'a Server,
    token: String,
    home: tempfile::TempDir,
}

impl Runner<'_> {
    fn new(server: &Server) -> Runner<'_> {
        Runner { server, token: server.runner_token(), home: tempfile::tempdir().unwrap() }
    }

    fn home(&self) -> &Path {
        self.home.path()
    }

    fn run(&self, args: &[&str]) -> (bool, String) {
        let env = [("SESAME_VAULT_URL", self.server.url.as_str()), ("SESAME_VAULT_TOKEN", self.token.as_str())];
        let home = self.home().to_str().unwrap();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--home", home]);
        let out = cli_in(self.home(), &env, &all);
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    }

    fn task_env(&self, user: &str, agent: &str, task: &str) -> (bool, String) {
        self.run(&["task-env", "--user", user, "--agent", agent, "--task", task])
    }

    fn task_return(&self, task: &str) -> (bool, String) {
        self.run(&["task-return", "--task", task])
    }
}

/// How many returned files the vault has stored.
async fn stored_returns(server: &Server) -> usize {
    credential_audit(server).await.iter().filter(|(action, _)| action == "TASK_CREDENTIALS_RETURNED").count()
}

async fn person_with_claude(server: &Server, email: &str) -> String {
    let (user, token) = server.create_user(email).await;
    server
        .ok(
            &token,
            "mutation($t: String!) { saveSubscriptionCredential(input: {agent: CLAUDE_CODE, token: $t, checkOnSave: false}) { id } }",
            json!({ "t": CLAUDE_OAT }),
        )
        .await;
    user
}

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

// ---------------------------------------------------------------------------
// Item 1: the runner CLI follows no link under the task's home
// ---------------------------------------------------------------------------

#[tokio::test]
async fn task_env_writes_nothing_through_a_link_under_home() {
    let server = Server::start().await;
    let user = person_with_claude(&server, "links@example.com").await;
    let runner = Runner::new(&server);
    let outside = tempfile::tempdir().unwrap();

    // A link at .claude: the token must not land in the directory it points to.
    std::os::unix::fs::symlink(outside.path(), runner.home().join(".claude")).unwrap();
    let (ok, out) = runner.task_env(&user, "CLAUDE_CODE", "link-dir");
    assert!(!ok, "{out}");
    assert!(out.contains("\".claude\"") && out.contains("symbolic link"), "{out}");
    assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none(), "something was written outside the home");
    assert!(!out.contains(CLAUDE_OAT), "{out}");

    // A link at .claude.json: the host file is neither overwritten nor chmod-ed.
    std::fs::remove_file(runner.home().join(".claude")).unwrap();
    let host = outside.path().join("host.json");
    std::fs::write(&host, "host content").unwrap();
    std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::symlink(&host, runner.home().join(".claude.json")).unwrap();
    let (ok, out) = runner.task_env(&user, "CLAUDE_CODE", "link-file");
    assert!(!ok, "{out}");
    assert!(out.contains("\".claude.json\"") && out.contains("symbolic link"), "{out}");
    assert_eq!(std::fs::read_to_string(&host).unwrap(), "host content");
    assert_eq!(mode_of(&host), 0o644);

    // A hard link to the host file: refused as well, the host file untouched.
    std::fs::remove_file(runner.home().join(".claude.json")).unwrap();
    std::fs::hard_link(&host, runner.home().join(".claude.json")).unwrap();
    let (ok, out) = runner.task_env(&user, "CLAUDE_CODE", "hard-link");
    assert!(!ok, "{out}");
    assert!(out.contains("hard links"), "{out}");
    assert_eq!(std::fs::read_to_string(&host).unwrap(), "host content");
    assert_eq!(mode_of(&host), 0o644);

    // A directory where a file goes, a file where a directory goes.
    std::fs::remove_file(runner.home().join(".claude.json")).unwrap();
    std::fs::create_dir(runner.home().join(".claude.json")).unwrap();
    let (ok, out) = runner.task_env(&user, "CLAUDE_CODE", "dir-for-file");
    assert!(!ok, "{out}");
    assert!(out.contains("\".claude.json\"") && out.contains("a directory, not a regular file"), "{out}");
    std::fs::remove_dir(runner.home().join(".claude.json")).unwrap();
    std::fs::remove_dir_all(runner.home().join(".claude")).unwrap();
    std::fs::write(runner.home().join(".claude"), "").unwrap();
    let (ok, out) = runner.task_env(&user, "CLAUDE_CODE", "file-for-dir");
    assert!(!ok, "{out}");
    assert!(out.contains("a regular file, not a directory"), "{out}");

    // A clean home: files 0600 in a directory made 0700.
    std::fs::remove_file(runner.home().join(".claude")).unwrap();
    let (ok, out) = runner.task_env(&user, "CLAUDE_CODE", "clean");
    assert!(ok, "{out}");
    assert_eq!(mode_of(&runner.home().join(".claude")), 0o700);
    assert_eq!(mode_of(&runner.home().join(".claude/.credentials.json")), 0o600);
    assert_eq!(mode_of(&runner.home().join(".claude.json")), 0o600);
}

#[tokio::test]
async fn task_return_sends_nothing_but_regular_files_under_home() {
    let server = Server::start().await;
    let (user, token) = server.create_user("returns@example.com").await;
    let exp = chrono::Utc::now().timestamp() + 3600;
    let saved = codex_auth("acct-r", Some("acct-r"), exp, "rt_TESTedge11111111111111", "2026-11-20T00:00:00Z");
    server.ok(&token, SAVE_CODEX, json!({ "j": saved })).await;
    let runner = Runner::new(&server);
    let (ok, out) = runner.task_env(&user, "CODEX", "edge-1");
    assert!(ok, "{out}");
    let login = runner.home().join(".codex/auth.json");
    let outside = tempfile::tempdir().unwrap();

    // A link to a host file holding a newer login of the same account: the
    // old CLI sent and the server stored it. Nothing is sent now.
    let host = outside.path().join("auth.json");
    let newer = codex_auth("acct-r", Some("acct-r"), exp + 7200, "rt_TESThost22222222222222", "2026-11-27T12:00:00Z");
    std::fs::write(&host, &newer).unwrap();
    std::fs::remove_file(&login).unwrap();
    std::os::unix::fs::symlink(&host, &login).unwrap();
    let (ok, out) = runner.task_return("edge-1");
    assert!(!ok, "{out}");
    assert!(out.contains("\".codex/auth.json\"") && out.contains("symbolic link"), "{out}");
    assert_eq!(stored_returns(&server).await, 0, "the host file was stored");

    // A link to /proc/self/environ: the runner's own token is never sent.
    std::fs::remove_file(&login).unwrap();
    std::os::unix::fs::symlink("/proc/self/environ", &login).unwrap();
    let (ok, out) = runner.task_return("edge-1");
    assert!(!ok, "{out}");
    assert!(out.contains("symbolic link"), "{out}");
    assert!(!out.contains(&runner.token), "{out}");
    assert!(!server.log().contains(&runner.token), "the runner token reached the server");

    // A link at a directory above the file.
    std::fs::remove_file(&login).unwrap();
    std::fs::remove_dir(runner.home().join(".codex")).unwrap();
    std::fs::create_dir(outside.path().join("codex")).unwrap();
    std::fs::write(outside.path().join("codex/auth.json"), &newer).unwrap();
    std::os::unix::fs::symlink(outside.path().join("codex"), runner.home().join(".codex")).unwrap();
    let (ok, out) = runner.task_return("edge-1");
    assert!(!ok, "{out}");
    assert!(out.contains("\".codex\"") && out.contains("symbolic link"), "{out}");
    std::fs::remove_file(runner.home().join(".codex")).unwrap();
    std::fs::create_dir(runner.home().join(".codex")).unwrap();

    // A FIFO where the login file is expected: refused at once, no hang.
    let status = std::process::Command::new("mkfifo").arg(&login).status().unwrap();
    assert!(status.success());
    let (ok, out) = runner.task_return("edge-1");
    assert!(!ok, "{out}");
    assert!(out.contains("named pipe"), "{out}");
    std::fs::remove_file(&login).unwrap();

    // A directory where the login file is expected.
    std::fs::create_dir(&login).unwrap();
    let (ok, out) = runner.task_return("edge-1");
    assert!(!ok, "{out}");
    assert!(out.contains("a directory, not a regular file"), "{out}");
    std::fs::remove_dir(&login).unwrap();

    // Larger than any login file: refused without being sent.
    std::fs::write(&login, format!("{{\"pad\":\"{}\"}}", "x".repeat(70 * 1024))).unwrap();
    let (ok, out) = runner.task_return("edge-1");
    assert!(!ok, "{out}");
    assert!(out.contains("larger than 64 KiB"), "{out}");
    assert_eq!(stored_returns(&server).await, 0, "the host file was stored");

    // Nothing reached the vault: the next task gets the saved login.
    let next = server.ok(&runner.token, ISSUE, json!({ "u": user, "a": "CODEX", "p": null, "t": "edge-2" })).await
        ["issueTaskCredentials"]
        .clone();
    let saved: Value = serde_json::from_str(&saved).unwrap();
    assert_eq!(issued_file(&next, ".codex/auth.json")["tokens"]["access_token"], saved["tokens"]["access_token"]);

    // A regular file is still sent back and stored.
    std::fs::write(&login, &newer).unwrap();
    let (ok, out) = runner.task_return("edge-2");
    assert!(ok, "{out}");
    assert_eq!(stored_returns(&server).await, 1);
}

// ---------------------------------------------------------------------------
// Item 2: a returned login is taken only for the account it was issued for
// ---------------------------------------------------------------------------

async fn start_with_fake(fake: &crate::fake_checks::FakeChecks) -> Server {
    let env = fake.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Server::start_with(&env).await
}

fn issue_vars(user: &str, agent: &str, task: &str) -> Value {
    json!({ "u": user, "a": agent, "p": null, "t": task })
}

/// The chained attack of the issue: a Codex file of another account, with
/// `account_id` left out, is refused and nothing is stored; a file stating
/// our account over another account's tokens too; our own refreshed login
/// is still taken.
#[tokio::test]
async fn a_returned_codex_login_of_another_account_is_refused() {
    let server = Server::start().await;
    let runner = server.runner_token();
    let (user, token) = server.create_user("codex-acct@example.com").await;
    let exp = chrono::Utc::now().timestamp() + 3600;
    let saved = codex_auth("acct-mine", Some("acct-mine"), exp, "rt_TESTmine1111111111111", "2026-11-20T00:00:00Z");
    server.ok(&token, SAVE_CODEX, json!({ "j": saved })).await;
    server.ok(&runner, ISSUE, issue_vars(&user, "CODEX", "acct-1")).await;

    let later = "2026-11-27T12:00:00Z";
    for (what, foreign) in [
        ("account_id left out", codex_auth("acct-theirs", None, exp + 7200, "rt_TESTtheirs22222222222", later)),
        (
            "account_id stating ours",
            codex_auth("acct-theirs", Some("acct-mine"), exp + 7200, "rt_TESTtheirs22222222222", later),
        ),
    ] {
        let (code, msg) = server
            .err(&runner, RETURN, json!({ "t": "acct-1", "f": [{ "path": ".codex/auth.json", "content": foreign }] }))
            .await;
        assert_eq!(code, "BAD_USER_INPUT", "{what}: {msg}");
        assert!(msg.contains(".codex/auth.json") && msg.contains("account"), "{what}: {msg}");
        assert!(!msg.contains("acct-theirs") && !msg.contains("rt_TEST"), "{what}: {msg}");
    }
    assert_eq!(stored_returns(&server).await, 0);

    // The same person's refreshed login is taken.
    let mine = codex_auth("acct-mine", None, exp + 7200, "rt_TESTmine3333333333333", later);
    server.ok(&runner, RETURN, json!({ "t": "acct-1", "f": [{ "path": ".codex/auth.json", "content": mine }] })).await;
    assert_eq!(stored_returns(&server).await, 1);
    let next = server.ok(&runner, ISSUE, issue_vars(&user, "CODEX", "acct-2")).await["issueTaskCredentials"].clone();
    let file = issued_file(&next, ".codex/auth.json");
    assert_eq!(file["tokens"]["refresh_token"], "rt_TESTmine3333333333333");
    assert_eq!(file["tokens"]["account_id"], "acct-mine");
}

const CLAUDE_ACCESS: &str = "sk-ant-oat01-TESTmineAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const CLAUDE_REFRESH: &str = "sk-ant-ort01-TESTmineAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

fn claude_file(access: &str, refresh: &str, expires_ms: i64) -> String {
    json!({ "claudeAiOauth": { "accessToken": access, "refreshToken": refresh, "expiresAt": expires_ms,
        "scopes": ["user:inference", "user:profile"] } })
    .to_string()
}

/// Claude files carry no account: the vault asks Anthropic's profile of the
/// returned access token and of the stored one (recording it), and takes
/// only a login of the same account; an unreachable provider is a
/// retryable UNAVAILABLE with nothing stored.
#[tokio::test]
async fn a_returned_claude_login_of_another_person_is_refused() {
    use crate::fake_checks::{Answer, FakeChecks};
    let fake = FakeChecks::start().await;
    let server = start_with_fake(&fake).await;
    let runner = server.runner_token();
    let (user, token) = server.create_user("claude-acct@example.com").await;
    server
        .ok(
            &token,
            "mutation($a: String!, $r: String!) { saveSubscriptionCredential(input: {agent: CLAUDE_CODE, accessToken: $a, refreshToken: $r, checkOnSave: false}) { id } }",
            json!({ "a": CLAUDE_ACCESS, "r": CLAUDE_REFRESH }),
        )
        .await;
    fake.claude_account(CLAUDE_ACCESS, "uuid-mine");
    server.ok(&runner, ISSUE, issue_vars(&user, "CLAUDE_CODE", "claude-1")).await;
    let later = (chrono::Utc::now().timestamp() + 8 * 3600) * 1000;
    let send = |content: String| json!({ "t": "claude-1", "f": [{ "path": ".claude/.credentials.json", "content": content }] });

    // Another person's login (a later expiry, as in the issue).
    let theirs = "sk-ant-oat01-TESTtheirsBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
    fake.claude_account(theirs, "uuid-theirs");
    let (code, msg) = server
        .err(
            &runner,
            RETURN,
            send(claude_file(theirs, "sk-ant-ort01-TESTtheirsBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB", later)),
        )
        .await;
    assert_eq!(code, "BAD_USER_INPUT", "{msg}");
    assert!(msg.contains("different account"), "{msg}");
    assert!(!msg.contains("uuid-") && !msg.contains("sk-ant"), "{msg}");

    // A login whose account Anthropic does not tell (a setup-token: 403).
    let untold = "sk-ant-oat01-TESTuntoldCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC";
    let (code, msg) = server.err(&runner, RETURN, send(claude_file(untold, CLAUDE_REFRESH, later))).await;
    assert_eq!(code, "BAD_USER_INPUT", "{msg}");
    assert!(msg.contains("account cannot be told"), "{msg}");

    // Anthropic down: retryable, nothing stored, the lease still out.
    let refreshed = "sk-ant-oat01-TESTrefreshedDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDD";
    let refreshed_rt = "sk-ant-ort01-TESTrefreshedDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDD";
    fake.claude_account(refreshed, "uuid-mine");
    fake.set(refreshed, Answer::Down);
    let (code, msg) = server.err(&runner, RETURN, send(claude_file(refreshed, refreshed_rt, later))).await;
    assert_eq!(code, "UNAVAILABLE", "{msg}");
    assert_eq!(stored_returns(&server).await, 0);

    // The same person's refreshed login is taken (the stored login's
    // account is learnt from its own token and recorded with the new one).
    fake.set(refreshed, Answer::Valid);
    server.ok(&runner, RETURN, send(claude_file(refreshed, refreshed_rt, later))).await;
    assert_eq!(stored_returns(&server).await, 1);
    let asked_with_stored = fake.hits(CLAUDE_ACCESS);
    assert!(asked_with_stored >= 1);

    // Next time the recorded account is compared, without asking for the
    // stored login's profile; a foreign login is still refused.
    server.ok(&runner, ISSUE, issue_vars(&user, "CLAUDE_CODE", "claude-2")).await;
    let send2 = |content: String| json!({ "t": "claude-2", "f": [{ "path": ".claude/.credentials.json", "content": content }] });
    let (code, msg) = server
        .err(
            &runner,
            RETURN,
            send2(claude_file(
                theirs,
                "sk-ant-ort01-TESTtheirsBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB",
                later + 1000,
            )),
        )
        .await;
    assert_eq!(code, "BAD_USER_INPUT", "{msg}");
    let again = "sk-ant-oat01-TESTagainEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE";
    fake.claude_account(again, "uuid-mine");
    fake.set(refreshed, Answer::Invalid);
    server
        .ok(
            &runner,
            RETURN,
            send2(claude_file(
                again,
                "sk-ant-ort01-TESTagainEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE",
                later + 1000,
            )),
        )
        .await;
    assert_eq!(stored_returns(&server).await, 2);
    assert_eq!(fake.hits(refreshed), 2, "the recorded account was asked for again");

    // A setup-token (no refresh token) cannot be refreshed: other tokens are foreign.
    let user2 = person_with_claude(&server, "setup@example.com").await;
    server.ok(&runner, ISSUE, issue_vars(&user2, "CLAUDE_CODE", "claude-3")).await;
    let years_later = (chrono::Utc::now().timestamp() + 400 * 86_400) * 1000;
    let file = claude_file(theirs, "", years_later);
    let (code, msg) = server
        .err(
            &runner,
            RETURN,
            json!({ "t": "claude-3", "f": [{ "path": ".claude/.credentials.json", "content": file }] }),
        )
        .await;
    assert_eq!(code, "BAD_USER_INPUT", "{msg}");
    assert!(msg.contains("no refresh token"), "{msg}");
    assert_eq!(stored_returns(&server).await, 2);
}
