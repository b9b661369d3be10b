//! Dev-only support shared by the integration tests (`tests/it`) and the
//! load tool (`benches/load/`): start the real `sesame-vault` binary on
//! port 0 with its own data directory and a clean environment, read the
//! URL and bootstrap admin token it prints, log to a file, kill it on drop;
//! and a small GraphQL-over-HTTP client with typed calls for the operations
//! the tests and the load tool repeat ([`Client`], in `client.rs`). The
//! caller passes the binary's path (tests:
//! `env!("CARGO_BIN_EXE_sesame-vault")`; the load tool: the release binary or
//! `--server-bin`).

mod client;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use sesame_vault::domain::Provider;

pub use client::Client;

/// The file in the data directory that receives the server's log.
pub const LOG_FILE: &str = "server.log";
/// The log of `sesame-vault proxy` run as its own process.
pub const PROXY_LOG_FILE: &str = "proxy.log";

/// How long a server may take to print its URL.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a test's server sends provider API calls unless the test names a
/// fake: a closed local port, so no test key ever reaches a real provider.
const NO_PROVIDER: &str = "http://127.0.0.1:9";

/// Gives `cmd` the environment a server or CLI run gets: nothing inherited
/// but PATH (the developer's own keys or settings cannot leak in), the
/// data directory, port 0, `RUST_LOG=rust_log`, no checks with providers
/// (on save, the checks job), no cooldown between a person's checks of one
/// credential (tests check one twice within seconds) and no provider API
/// reachable, then `env`.
pub fn with_clean_env(mut cmd: Command, data_dir: &Path, rust_log: &str, env: &[(String, String)]) -> Command {
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", rust_log)
        .env("SESAME_DATA_DIR", data_dir)
        .env("SESAME_LISTEN", "127.0.0.1:0")
        .env("SESAME_CHECKS__ON_SAVE", "false")
        .env("SESAME_CHECKS__COOLDOWN", "0s")
        .env("SESAME_SCHEDULER__CHECKS", "");
    // Every address of every registered provider: a new provider's tests
    // never reach its real API.
    for &provider in Provider::ALL {
        for var in sesame_vault::providers::url_envs(provider) {
            cmd.env(var, NO_PROVIDER);
        }
    }
    // Tests serve their fake IdPs over plain http, which the vault refuses by default.
    cmd.env("SESAME_AUTH__JWT__ALLOW_HTTP", "true");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// The setting that points the server at `provider`'s API (fakes in tests,
/// a closed port otherwise).
pub fn api_url_var(provider: Provider) -> String {
    sesame_vault::providers::api_url_env(provider)
}

/// `bin` in the clean environment (see [`with_clean_env`]).
pub fn command(bin: &Path, data_dir: &Path, rust_log: &str, env: &[(String, String)]) -> Command {
    with_clean_env(Command::new(bin), data_dir, rust_log, env)
}

/// A running `serve`: killed (and reaped) when dropped.
pub struct ServerProcess {
    pub child: Child,
    /// `http://127.0.0.1:PORT`, as the server printed it.
    pub url: String,
    /// The bootstrap admin's token, printed on a fresh data directory only.
    pub admin_token: Option<String>,
    /// `http://127.0.0.1:PORT` of the egress proxy, when `SESAME_PROXY__LISTEN` is set.
    pub proxy_url: Option<String>,
}

impl ServerProcess {
    /// Runs `cmd serve` with its log in `log_dir`/[`LOG_FILE`] and waits for
    /// the URL (and the admin token printed before it, if any). An error,
    /// with the end of the log, if it exits or stays silent first.
    pub fn start(cmd: Command, log_dir: &Path) -> Result<ServerProcess> {
        ServerProcess::launch(cmd, "serve", log_dir, LOG_FILE, "sesame-vault listening on ")
    }

    /// Runs `cmd proxy` (the egress proxy as its own process) with its log in
    /// `log_dir`/[`PROXY_LOG_FILE`] and waits for its URL (`url` and
    /// `proxy_url` both).
    pub fn start_proxy(cmd: Command, log_dir: &Path) -> Result<ServerProcess> {
        let mut process =
            ServerProcess::launch(cmd, "proxy", log_dir, PROXY_LOG_FILE, "sesame-vault egress proxy on ")?;
        process.proxy_url = Some(process.url.clone());
        Ok(process)
    }

    fn launch(mut cmd: Command, command: &str, log_dir: &Path, log_file: &str, ready: &str) -> Result<ServerProcess> {
        let log = std::fs::File::create(log_dir.join(log_file)).context("creating the server log")?;
        let mut child = cmd
            .arg(command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {:?}", cmd.get_program()))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout pipe"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        let ready = ready.to_owned();
        std::thread::spawn(move || {
            let (mut admin, mut proxy) = (None, None);
            // Reads to the end so the server never blocks on a full pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(token) = line.strip_prefix("Admin token (shown once, keep it safe): ") {
                    admin = Some(token.trim().to_owned());
                }
                if let Some(url) = line.strip_prefix(ready.as_str()) {
                    let _ = tx.send((url.trim().to_owned(), admin.take(), proxy.take()));
                } else if let Some(url) = line.strip_prefix("sesame-vault egress proxy on ") {
                    proxy = Some(url.trim().to_owned());
                }
            }
        });
        // Owned from here: an early return kills it.
        let mut process = ServerProcess { child, url: String::new(), admin_token: None, proxy_url: None };
        let deadline = Instant::now() + START_TIMEOUT;
        let (url, admin_token, proxy_url) = loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(v) => break v,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if let Ok(Some(status)) = process.child.try_wait() {
                        bail!(
                            "the {command} process exited ({status}) before listening; its log:\n{}",
                            tail_of(&log_dir.join(log_file), 40)
                        );
                    }
                }
                Err(_) => bail!(
                    "the {command} process did not print its URL within 60 s; its log:\n{}",
                    tail_of(&log_dir.join(log_file), 40)
                ),
            }
        };
        process.url = url;
        process.admin_token = admin_token;
        process.proxy_url = proxy_url;
        Ok(process)
    }

    /// Kills the process and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The whole server log in `dir`.
pub fn read_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(LOG_FILE)).unwrap_or_default()
}

/// The last `lines` lines of the server log in `dir`.
pub fn log_tail(dir: &Path, lines: usize) -> String {
    tail_of(&dir.join(LOG_FILE), lines)
}

/// The last `lines` lines of the file at `path`.
fn tail_of(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// POSTs a GraphQL request body to `base`/graphql (with the token, unless
/// empty); the HTTP status and the JSON response.
pub async fn post_graphql(http: &reqwest::Client, base: &str, token: &str, body: &Value) -> Result<(u16, Value)> {
    let url = format!("{base}/graphql");
    let mut req = http.post(&url).json(body);
    if !token.is_empty() {
        req = req.bearer_auth(token);
    }
    let res = req.send().await.with_context(|| format!("POST {url}"))?;
    let status = res.status().as_u16();
    let body = res.json().await.with_context(|| format!("HTTP {status}: the body is not JSON"))?;
    Ok((status, body))
}

/// Runs an operation that must succeed (HTTP 2xx, no `errors`); its `data`.
pub async fn graphql_ok(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    query: &str,
    variables: Value,
) -> Result<Value> {
    let (status, body) = post_graphql(http, base, token, &json!({ "query": query, "variables": variables })).await?;
    if body.get("errors").is_some() || !(200..300).contains(&status) {
        bail!("GraphQL call failed (HTTP {status}): {body}\nquery: {query}");
    }
    Ok(body["data"].clone())
}

/// Creates a person as `admin`; their id and first token.
pub async fn create_user(http: &reqwest::Client, base: &str, admin: &str, email: &str) -> Result<(String, String)> {
    let data = graphql_ok(
        http,
        base,
        admin,
        "mutation($e: String!) { createUser(email: $e) { user { id } token } }",
        json!({ "e": email }),
    )
    .await?;
    let id = data["createUser"]["user"]["id"].as_str().ok_or_else(|| anyhow!("createUser returned no id"))?;
    let token = data["createUser"]["token"].as_str().ok_or_else(|| anyhow!("createUser returned no token"))?;
    Ok((id.to_owned(), token.to_owned()))
}

/// An unsigned JWT with the given claims (the vault never verifies provider JWTs).
pub fn jwt(claims: Value) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{body}.c2lnbmF0dXJl")
}

/// The credential a request to a provider carries (`x-api-key`,
/// `x-goog-api-key` or a Bearer token), read through `header`: fake
/// providers answer per credential.
pub fn credential_in(header: impl Fn(&str) -> Option<String>) -> String {
    header("x-api-key")
        .or_else(|| header("x-goog-api-key"))
        .or_else(|| header("authorization").and_then(|a| a.strip_prefix("Bearer ").map(str::to_owned)))
        .unwrap_or_default()
}
