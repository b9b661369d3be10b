//! Test harness: every test gets the real `sesame-vault` binary on port 0
//! with its own data directory, and talks to it over HTTP like a client.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
pub use sesame_test_support::jwt;
use sesame_test_support::{Client, ServerProcess};
pub use sesame_vault::domain::Provider;

pub const BIN: &str = env!("CARGO_BIN_EXE_sesame-vault");

pub struct Server {
    process: ServerProcess,
    pub url: String,
    pub admin_token: String,
    pub dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    api: Client,
}

/// The environment a server or CLI run gets: nothing inherited but PATH, so
/// the developer's own keys or settings cannot leak into a test.
fn base_command(data_dir: &Path, env: &[(String, String)]) -> Command {
    with_test_env(Command::new(BIN), data_dir, env)
}

/// Gives `cmd` the test environment (see [`base_command`]).
fn with_test_env(cmd: Command, data_dir: &Path, env: &[(String, String)]) -> Command {
    sesame_test_support::with_clean_env(cmd, data_dir, "info", env)
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(&[]).await
    }

    pub async fn start_with(env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Server::spawn(dir, env, true).await
    }

    /// Starts the binary on an existing data directory.
    pub async fn spawn(dir: tempfile::TempDir, env: Vec<(String, String)>, expect_bootstrap: bool) -> Server {
        let cmd = base_command(dir.path(), &env);
        Server::launch(cmd, dir, env, expect_bootstrap).await
    }

    /// Runs `cmd serve`, logging to `server.log` in `dir`, and waits for its URL.
    async fn launch(
        cmd: Command,
        dir: tempfile::TempDir,
        env: Vec<(String, String)>,
        expect_bootstrap: bool,
    ) -> Server {
        let process = ServerProcess::start(cmd, dir.path()).unwrap_or_else(|e| panic!("server did not start: {e:#}"));
        if expect_bootstrap {
            assert!(process.admin_token.is_some(), "a fresh server prints the bootstrap admin token");
        }
        let (url, admin_token) = (process.url.clone(), process.admin_token.clone().unwrap_or_default());
        let api = Client::new(reqwest::Client::new(), url.clone());
        Server { process, url, admin_token, dir, env, api }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub fn log(&self) -> String {
        sesame_test_support::read_log(self.dir.path())
    }

    /// Stops the process, returning the data directory for a restart.
    pub fn stop(mut self) -> (tempfile::TempDir, Vec<(String, String)>) {
        self.process.kill();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (dir, std::mem::take(&mut self.env))
    }

    pub fn http(&self) -> &reqwest::Client {
        self.api.http()
    }

    /// The typed GraphQL calls (`sesame_test_support::Client`).
    pub fn api(&self) -> &Client {
        &self.api
    }

    /// POSTs one GraphQL operation; returns the whole JSON response.
    pub async fn gql(&self, token: &str, query: &str, variables: Value) -> Value {
        self.post_json(token, &json!({ "query": query, "variables": variables })).await.1
    }

    pub async fn post_json(&self, token: &str, body: &Value) -> (u16, Value) {
        self.api.post(token, body).await.expect("request with a JSON body")
    }

    /// Runs a query that must succeed and returns its `data`.
    pub async fn ok(&self, token: &str, query: &str, variables: Value) -> Value {
        let res = self.gql(token, query, variables).await;
        assert!(res.get("errors").is_none(), "unexpected errors: {res}");
        res["data"].clone()
    }

    /// Runs an operation that must fail; returns (code, message) of the first error.
    pub async fn err(&self, token: &str, query: &str, variables: Value) -> (String, String) {
        let res = self.gql(token, query, variables).await;
        let error = &res["errors"][0];
        assert!(!error.is_null(), "expected an error: {res}");
        (
            error["extensions"]["code"].as_str().unwrap_or("").to_owned(),
            error["message"].as_str().unwrap_or("").to_owned(),
        )
    }

    pub async fn create_user(&self, email: &str) -> (String, String) {
        self.api.create_user(&self.admin_token, email).await.expect("createUser")
    }

    /// Runs the CLI against this server's data directory and environment.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        base_command(self.dir.path(), &self.env).args(args).output().expect("run cli")
    }

    pub fn runner_token(&self) -> String {
        let out = self.cli(&["token", "create", "--runner", "--name", "ci-runner", "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).expect("json");
        v["token"].as_str().unwrap().to_owned()
    }
}

/// Runs the CLI on a fresh directory (no server).
pub fn cli_in(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    base_command(dir, &env).args(args).output().expect("run cli")
}

// Realistic-looking but fake credentials of each kind.
pub const ANTHROPIC_KEY: &str = "sk-ant-api03-TESTkeyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA9f2c";
pub const OPENAI_KEY: &str = "sk-proj-TESTkeyBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB1a2b";
pub const GEMINI_KEY: &str = "AIzaSyTESTkeyCCCCCCCCCCCCCCCCCCCCCCC123"; // AIza + 35
pub const COPILOT_TOKEN: &str = "github_pat_11TESTkeyDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDD7e8f";
pub const CLAUDE_OAT: &str = "sk-ant-oat01-TESTsubEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE4d5e";

// For the data directory tests (issue 12): the binary under a chosen umask.

/// `base_command`, but through `sh`, which sets `umask` and then execs the
/// binary (same pid): the child creates files under that umask whatever
/// the test process's own is.
pub fn command_with_umask(umask: &str, data_dir: &Path, env: &[(String, String)]) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(format!("umask {umask} && exec \"$0\" \"$@\"")).arg(BIN);
    with_test_env(cmd, data_dir, env)
}

impl Server {
    /// Like [`Server::spawn`], with the server running under `umask`. The log
    /// goes to `server.log` in `dir` (pass `SESAME_DATA_DIR` in `env` to keep
    /// the data elsewhere).
    pub async fn spawn_with_umask(
        dir: tempfile::TempDir,
        env: Vec<(String, String)>,
        umask: &str,
        expect_bootstrap: bool,
    ) -> Server {
        let cmd = command_with_umask(umask, dir.path(), &env);
        Server::launch(cmd, dir, env, expect_bootstrap).await
    }
}

// Appended for the operability tests (issue 17): signals and exit status.

impl Server {
    /// Sends `signal` (e.g. "TERM") to the server process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.process.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the process to exit (at most `limit`); its status, or
    /// `None` if it is still running.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.process.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Every `CREDENTIAL_*` audit entry, as (action, credential id).
pub async fn credential_audit(server: &Server) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = server
            .ok(
                &server.admin_token,
                "query($a: String) { auditLog(first: 100, after: $a) { nodes { action credentialId } nextCursor } }",
                json!({ "a": after }),
            )
            .await;
        for node in page["auditLog"]["nodes"].as_array().unwrap() {
            if let (Some(action), Some(id)) = (node["action"].as_str(), node["credentialId"].as_str()) {
                out.push((action.to_owned(), id.to_owned()));
            }
        }
        match page["auditLog"]["nextCursor"].as_str() {
            Some(cursor) => after = Some(cursor.to_owned()),
            None => return out,
        }
    }
}

// Appended for the egress proxy tests (issue 23).

impl Server {
    /// The egress proxy's URL, as the server printed it (`SESAME_PROXY__LISTEN` set).
    pub fn proxy_url(&self) -> Option<String> {
        self.process.proxy_url.clone()
    }
}

impl Server {
    /// Starts `sesame-vault proxy` (the egress proxy as its own process) on
    /// the data directory `dir`, logging to `proxy.log` there; killed when
    /// dropped. Its URL is the returned process's `url`.
    pub fn start_proxy_process(dir: &Path, env: &[(&str, &str)]) -> ServerProcess {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        ServerProcess::start_proxy(base_command(dir, &env), dir)
            .unwrap_or_else(|e| panic!("the proxy process did not start: {e:#}"))
    }
}
