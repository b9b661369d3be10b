//! The server under test, and the users and credentials the scenarios use
//! (created through the public API with `sesame_test_support::Client`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use sesame_test_support::{jwt, log_tail, Client, ServerProcess};
use sesame_vault::domain::Provider;

// Realistic-looking but fake credentials of each kind (they pass the
// server's shape checks; none is a real secret).
pub(crate) const ANTHROPIC_KEY: &str = "sk-ant-api03-BENCHkeyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA9f2c";
pub(crate) const OPENAI_KEY: &str = "sk-proj-BENCHkeyBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB1a2b";
pub(crate) const GEMINI_KEY: &str = "AIzaSyBENCHkeyCCCCCCCCCCCCCCCCCCCCCC123"; // AIza + 35
pub(crate) const GITHUB_KEY: &str = "github_pat_11BENCHkeyDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDD7e8f";
const COPILOT_TOKEN: &str = "gho_BENCHsubEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE42";
const CLAUDE_OAT: &str = "sk-ant-oat01-BENCHsubFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF4d5e";
const OPENCODE_OAT: &str = "sk-ant-oat01-BENCHsubGGGGGGGGGGGGGGGGGGGGGGGGGGGGGGGGGGGGGGGG7a8b";
const CODEX_REFRESH: &str = "rt_BENCHrefreshHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHH";

pub(crate) struct Server {
    pub(crate) process: ServerProcess,
    pub(crate) pid: String,
    pub(crate) addr: SocketAddr,
    pub(crate) url: String,
    pub(crate) admin_token: String,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) bin: PathBuf,
    /// Settings beyond the defaults (the CLI runs get them too: the database URL).
    extra: Vec<(String, String)>,
}

impl Server {
    /// The environment a server or CLI run gets: nothing inherited but PATH.
    fn command_with(bin: &Path, data_dir: &Path, extra: &[(String, String)]) -> Command {
        // The fan-out run opens every subscriber with one token; the
        // per-principal limits (issue 12) are lifted for it.
        let env = [
            ("SESAME_GRAPHQL__MAX_SOCKETS_PER_PRINCIPAL", "1000000"),
            ("SESAME_GRAPHQL__MAX_SUBSCRIPTIONS_PER_PRINCIPAL", "1000000"),
            // The load is one person's writes as fast as they go (issue 21's write rate off).
            ("SESAME_WRITES__PER_MINUTE", "0"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let env: Vec<(String, String)> = env.into_iter().chain(extra.iter().cloned()).collect();
        sesame_test_support::command(bin, data_dir, "warn", &env)
    }

    /// Starts the server with these settings beyond the defaults.
    pub(crate) fn start_with(bin: &Path, extra: &[(&str, &str)]) -> Result<Server> {
        let dir = tempfile::Builder::new().prefix("sesame-bench-").tempdir().context("creating a temp data dir")?;
        let extra: Vec<(String, String)> = extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let process = ServerProcess::start(Server::command_with(bin, dir.path(), &extra), dir.path())
            .with_context(|| format!("starting {}", bin.display()))?;
        let Some(admin_token) = process.admin_token.clone() else {
            bail!("the server did not print a bootstrap admin token (is the data dir fresh?)");
        };
        let url = process.url.clone();
        let addr: SocketAddr = url
            .strip_prefix("http://")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| anyhow!("cannot parse the server URL {url:?}"))?;
        let pid = process.child.id().to_string();
        Ok(Server { process, pid, addr, url, admin_token, dir, bin: bin.to_owned(), extra })
    }

    /// Runs a CLI command against the server's data directory.
    fn cli(&self, args: &[&str]) -> Result<Value> {
        let out = Server::command_with(&self.bin, self.dir.path(), &self.extra)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running sesame-vault {}", args.join(" ")))?;
        if !out.status.success() {
            bail!("sesame-vault {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        }
        serde_json::from_slice(&out.stdout).with_context(|| format!("sesame-vault {} printed no JSON", args.join(" ")))
    }

    /// A new runner token (through the CLI).
    pub(crate) fn runner_token(&self) -> Result<String> {
        let runner = self.cli(&["token", "create", "--runner", "--name", "bench", "--json"])?;
        Ok(runner["token"].as_str().ok_or_else(|| anyhow!("token create printed no token: {runner}"))?.to_owned())
    }

    /// A client for setup and event triggers (not used for load).
    pub(crate) fn client(&self) -> Result<Client> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().context("building reqwest")?;
        Ok(Client::new(http, self.url.clone()))
    }

    pub(crate) fn alive(&mut self) -> Result<()> {
        match self.process.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                bail!("the server died ({status}); the end of its log:\n{}", log_tail(self.dir.path(), 40))
            }
            Err(e) => bail!("cannot check the server process: {e}"),
        }
    }
}

/// Everything the HTTP scenarios need, created through the public API.
pub(crate) struct Fixture {
    pub(crate) creds_token: String,
    pub(crate) creds_count: usize,
    pub(crate) issue_user_id: String,
    pub(crate) runner_token: String,
    pub(crate) events_token: String,
    /// An admin's JWT from the run's IdP (`jwt.rs`), set by the run.
    pub(crate) jwt_admin_token: String,
}

pub(crate) async fn setup(server: &Server, client: &Client) -> Result<Fixture> {
    let admin = server.admin_token.as_str();
    // A user holding every slot the API allows: one API key per provider (4)
    // and one subscription per (agent, provider) pair (5: Gemini has none).
    let (_, creds_token) = client.create_user(admin, "creds@bench.local").await?;
    for (provider, key) in [
        (Provider::Anthropic, ANTHROPIC_KEY),
        (Provider::Openai, OPENAI_KEY),
        (Provider::Google, GEMINI_KEY),
        (Provider::Github, GITHUB_KEY),
    ] {
        client.set_api_key(&creds_token, provider, key).await.with_context(|| format!("setApiKey {provider}"))?;
    }
    let exp = (chrono::Utc::now() + chrono::Duration::days(30)).timestamp();
    let access =
        |account: &str| jwt(json!({ "exp": exp, "https://api.openai.com/auth": { "chatgpt_account_id": account } }));
    let subscriptions = [
        json!({ "agent": "CLAUDE_CODE", "token": CLAUDE_OAT }),
        json!({ "agent": "CODEX", "accessToken": access("acct-bench-codex"), "refreshToken": CODEX_REFRESH }),
        json!({ "agent": "COPILOT", "token": COPILOT_TOKEN }),
        json!({ "agent": "OPENCODE", "provider": "OPENAI", "accessToken": access("acct-bench-opencode") }),
        json!({ "agent": "OPENCODE", "provider": "ANTHROPIC", "token": OPENCODE_OAT }),
    ];
    for input in subscriptions {
        client
            .save_subscription(&creds_token, input.clone())
            .await
            .with_context(|| format!("saveSubscriptionCredential {}", input["agent"]))?;
    }
    let creds_count = client.my_credential_ids(&creds_token).await?.len();

    // The task user has only an Anthropic API key: issuance resolves the
    // (missing) subscription, then the key.
    let (issue_user_id, issue_token) = client.create_user(admin, "issue@bench.local").await?;
    client.set_api_key(&issue_token, Provider::Anthropic, ANTHROPIC_KEY).await?;
    let runner = server.cli(&["token", "create", "--runner", "--name", "bench", "--json"])?;
    let runner_token =
        runner["token"].as_str().ok_or_else(|| anyhow!("token create printed no token: {runner}"))?.to_owned();

    let (_, events_token) = client.create_user(admin, "events@bench.local").await?;
    Ok(Fixture { creds_token, creds_count, issue_user_id, runner_token, events_token, jwt_admin_token: String::new() })
}
