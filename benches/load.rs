//! Load benchmark: how fast sesame-vault is, against its own ceiling.
//!
//! ```sh
//! cargo bench --bench load                 # full run (about 2 minutes)
//! cargo bench --bench load -- --tiny       # CI smoke run: proves it works, asserts no timing
//! cargo bench --bench load -- --help       # every option
//! ```
//!
//! The tool starts the release binary (`serve`, built by `cargo bench` as
//! `CARGO_BIN_EXE_sesame-vault`, or `--server-bin PATH`) on 127.0.0.1:0 with a
//! temporary data directory, reads its URL and bootstrap admin token from
//! stdout, and drives it over loopback:
//!
//! - `baseline`: `{ __typename }` with an admin bearer token (parse, auth, execute, serialise);
//! - `my-credentials`: `myCredentials` (with `hint`) for a user holding every slot the API allows;
//! - `issue`: `issueTaskCredentials` with a runner token and a distinct task id per request;
//! - `ws`: N admin `credentialEvents` subscribers over graphql-transport-ws, one event, time to each;
//! - `scan`: in-process `Store::scan_expiry` over a SQLite file holding `--scan-rows` credentials.
//!
//! HTTP scenarios are closed-loop: `--connections` workers, each with its own
//! keep-alive HTTP/1.1 connection, send the next request when the previous one
//! answered. Latencies go into an HDR histogram. The load generator shares the
//! machine's cores with the server; the report shows the CPU each side used.
//!
//! Timings are printed, never asserted. The exit code is non-zero only when
//! something did not work (a request failed, the server died, a subscriber
//! missed an event), so `--tiny` in CI proves the tool and the paths still work.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use serde_json::{json, Value};
use sesame_test_support::{jwt, log_tail, ServerProcess};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// How long one HTTP request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one WebSocket step (connect, ack, pong) may take.
const WS_STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// WebSocket handshakes in flight at once while subscribers connect.
const WS_CONNECT_CONCURRENCY: usize = 256;
/// Events measured after the warm-up event (each is one `setApiKey`).
const WS_ROUNDS: usize = 3;
/// Each round's event is a new API key for a different provider, so a
/// subscriber can tell the rounds apart by the event's provider.
const ROUND_PROVIDERS: [&str; WS_ROUNDS + 1] = ["OPENAI", "GOOGLE", "GITHUB", "ANTHROPIC"];

const TARGET_ISSUE_RATIO: f64 = 0.30;
const TARGET_ISSUE_P99_MS: f64 = 5.0;
const TARGET_ISSUE_CONNECTIONS: usize = 32;
const TARGET_WS_SUBSCRIBERS: usize = 20_000;
const TARGET_WS_P99_MS: f64 = 1000.0;
const TARGET_WS_BYTES_PER_SUB: f64 = 20_000.0;
const TARGET_SCAN_ROWS: u64 = 1_000_000;
const TARGET_SCAN_MS: f64 = 50.0;

// Realistic-looking but fake credentials of each kind (they pass the
// server's shape checks; none is a real secret).
const ANTHROPIC_KEY: &str = "sk-ant-api03-BENCHkeyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA9f2c";
const OPENAI_KEY: &str = "sk-proj-BENCHkeyBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB1a2b";
const GEMINI_KEY: &str = "AIzaSyBENCHkeyCCCCCCCCCCCCCCCCCCCCCC123"; // AIza + 35
const GITHUB_KEY: &str = "github_pat_11BENCHkeyDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDD7e8f";
const COPILOT_TOKEN: &str = "gho_BENCHsubEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE42";
const CLAUDE_OAT: &str = "sk-ant-oat01-BENCHsubFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF4d5e";
const OPENCODE_OAT: &str = "sk-ant-oat01-BENCHsubGGGGGGGGGGGGGGGGGGGGGGGGGGGGGGGGGGGGGGGG7a8b";
const CODEX_REFRESH: &str = "rt_BENCHrefreshHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHH";

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// `{ __typename }` without a token: the framework with no database work (for comparison).
    Anonymous,
    Baseline,
    MyCredentials,
    Issue,
    Ws,
    Scan,
}

#[derive(Parser, Debug)]
#[command(name = "load", about = "Load benchmark for sesame-vault (see benches/load.rs and BENCHMARKS.md)")]
struct Args {
    /// Concurrent HTTP connections (closed-loop workers) per HTTP scenario.
    #[arg(long)]
    connections: Option<usize>,
    /// Measured time per HTTP scenario, e.g. 10s, 500ms.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Unmeasured warm-up before each HTTP scenario's measured time.
    #[arg(long, value_parser = humantime::parse_duration)]
    warmup: Option<Duration>,
    /// WebSocket `credentialEvents` subscribers for the fan-out scenario.
    #[arg(long)]
    subscribers: Option<usize>,
    /// Credentials stored for the expiry-scan scenario.
    #[arg(long)]
    scan_rows: Option<u64>,
    /// CI mode: a few hundred ms per scenario, 50 subscribers, 10,000 rows.
    #[arg(long)]
    tiny: bool,
    /// The sesame-vault binary to serve (default: the release binary cargo built for this bench).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Worker threads of the load generator's own runtime.
    #[arg(long, default_value_t = 2)]
    client_threads: usize,
    /// Scenarios to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "anonymous,baseline,my-credentials,issue,ws,scan")]
    scenarios: Vec<Scenario>,
    /// Record each measured window with `perf record -g` into this directory
    /// (diagnosis only: perf's own cost lowers the numbers).
    #[arg(long)]
    perf: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The options after `--tiny` and the defaults are applied.
#[derive(Debug, Clone)]
struct Settings {
    connections: usize,
    duration: Duration,
    warmup: Duration,
    subscribers: usize,
    scan_rows: u64,
    scan_runs: usize,
    tiny: bool,
    server_bin: PathBuf,
    client_threads: usize,
    scenarios: Vec<Scenario>,
    perf: Option<PathBuf>,
}

impl Settings {
    fn from_args(args: Args) -> Result<Settings> {
        let tiny = args.tiny;
        let pick = |given: Option<Duration>, tiny_value: Duration, full: Duration| {
            given.unwrap_or(if tiny { tiny_value } else { full })
        };
        let settings = Settings {
            connections: args.connections.unwrap_or(32),
            duration: pick(args.duration, Duration::from_millis(300), Duration::from_secs(10)),
            warmup: pick(args.warmup, Duration::from_millis(100), Duration::from_secs(1)),
            subscribers: args.subscribers.unwrap_or(if tiny { 50 } else { 20_000 }),
            scan_rows: args.scan_rows.unwrap_or(if tiny { 10_000 } else { 1_000_000 }),
            scan_runs: if tiny { 3 } else { 9 },
            tiny,
            server_bin: args.server_bin.unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_sesame-vault"))),
            client_threads: args.client_threads.max(1),
            scenarios: args.scenarios,
            perf: args.perf,
        };
        if settings.connections == 0 || settings.connections > 4096 {
            bail!("--connections must be between 1 and 4096");
        }
        if settings.duration.is_zero() {
            bail!("--duration must be more than zero");
        }
        if settings.subscribers == 0 || settings.subscribers > 200_000 {
            bail!("--subscribers must be between 1 and 200000");
        }
        if settings.scan_rows < 100 {
            bail!("--scan-rows must be at least 100");
        }
        if !settings.server_bin.is_file() {
            bail!(
                "the server binary {} does not exist: build it with `cargo build --release --bin sesame-vault` \
                 or pass --server-bin PATH",
                settings.server_bin.display()
            );
        }
        Ok(settings)
    }

    fn wants(&self, scenario: Scenario) -> bool {
        self.scenarios.contains(&scenario)
    }
}

fn main() {
    let args = Args::parse();
    let settings = match Settings::from_args(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("load: {e:#}");
            std::process::exit(2);
        }
    };
    let started = Instant::now();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.client_threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("load: cannot start the tokio runtime: {e}");
            std::process::exit(2);
        }
    };
    let outcome = runtime.block_on(run(&settings));
    // Subscriber tasks may still be parked; don't wait for them.
    runtime.shutdown_timeout(Duration::from_secs(5));
    let code = match outcome {
        Ok(true) => 0,
        Ok(false) => {
            eprintln!("load: finished with errors (see above)");
            1
        }
        Err(e) => {
            eprintln!("load: error: {e:#}");
            1
        }
    };
    println!("total run time: {:.1} s", started.elapsed().as_secs_f64());
    std::process::exit(code);
}

// ---------------------------------------------------------------------------
// Process facts: open-file limit, CPU time, RSS, machine
// ---------------------------------------------------------------------------

/// Raises this process's open-file limit (inherited by the server it
/// spawns) so that both ends of every subscriber socket fit.
fn raise_nofile(subscribers: usize) -> Result<u64> {
    use rlimit::Resource;
    let want = (subscribers as u64) + 16_384;
    let (soft, hard) = rlimit::getrlimit(Resource::NOFILE).context("reading the open-file limit")?;
    if soft >= want {
        return Ok(soft);
    }
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1_048_576);
    let target = want.min(nr_open);
    if target > hard {
        // Raising the hard limit needs CAP_SYS_RESOURCE (root); fall back to the hard limit.
        if rlimit::setrlimit(Resource::NOFILE, target, target).is_ok() {
            return Ok(target);
        }
    }
    let got = rlimit::increase_nofile_limit(target).context("raising the open-file limit")?;
    Ok(got)
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// User + system CPU seconds of a process, from /proc/<pid>/stat.
fn cpu_seconds(pid: &str) -> Result<f64> {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let ticks = *TICKS.get_or_init(clock_ticks);
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).ok_or_else(|| anyhow!("malformed /proc/{pid}/stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the command name: state is field 3; utime and stime are fields 14 and 15.
    let utime: f64 = fields.get(11).and_then(|v| v.parse().ok()).ok_or_else(|| anyhow!("no utime in stat"))?;
    let stime: f64 = fields.get(12).and_then(|v| v.parse().ok()).ok_or_else(|| anyhow!("no stime in stat"))?;
    Ok((utime + stime) / ticks)
}

/// Resident set size in KiB, from /proc/<pid>/status.
fn rss_kib(pid: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))
}

/// CPU seconds per thread name (tokio workers, the SQLite worker, …) of a process.
fn thread_cpu(pid: &str) -> Vec<(String, f64)> {
    let mut by_name: Vec<(String, f64)> = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return by_name };
    for task in tasks.flatten() {
        let tid = task.file_name().to_string_lossy().into_owned();
        let name = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).unwrap_or_default();
        let Ok(secs) = cpu_seconds(&format!("{pid}/task/{tid}")) else { continue };
        let name = name.trim().to_owned();
        match by_name.iter_mut().find(|(n, _)| *n == name) {
            Some((_, total)) => *total += secs,
            None => by_name.push((name, secs)),
        }
    }
    by_name
}

fn thread_cpu_delta(before: &[(String, f64)], after: &[(String, f64)]) -> Vec<(String, f64)> {
    let mut delta: Vec<(String, f64)> = after
        .iter()
        .map(|(name, secs)| {
            let was = before.iter().find(|(n, _)| n == name).map(|(_, s)| *s).unwrap_or(0.0);
            (name.clone(), secs - was)
        })
        .filter(|(_, d)| *d > 0.0)
        .collect();
    delta.sort_by(|a, b| b.1.total_cmp(&a.1));
    delta
}

/// Busy CPU seconds of the whole machine, from /proc/stat.
fn machine_busy_seconds() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let ticks = *TICKS.get_or_init(clock_ticks);
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else { return 0.0 };
    let v: Vec<f64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy = [0usize, 1, 2, 5, 6, 7].iter().filter_map(|&i| v.get(i)).sum::<f64>();
    busy / ticks
}

fn threads(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

fn machine_summary() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned()))
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("MemTotal:")).map(|v| v.trim().to_owned()))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("{cores} cores, {cpu}, {mem} memory, kernel {}", kernel.trim())
}

fn commit_summary() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(head) => {
            let dirty = git(&["status", "--porcelain", "--", "src", "migrations", "Cargo.toml", "Cargo.lock"])
                .is_some_and(|s| s.lines().any(|l| !l.ends_with("Cargo.toml") && !l.ends_with("Cargo.lock")));
            if dirty {
                format!("{head} + uncommitted changes in src/ or migrations/")
            } else {
                head
            }
        }
        None => "unknown (not a git checkout)".into(),
    }
}

/// Runs `perf record -g` on a process for a while, when asked to.
struct PerfRecording {
    child: Option<Child>,
}

impl PerfRecording {
    fn start(dir: Option<&Path>, pid: u32, name: &str, secs: f64) -> PerfRecording {
        let Some(dir) = dir else { return PerfRecording { child: None } };
        let _ = std::fs::create_dir_all(dir);
        let out = dir.join(format!("{name}.perf.data"));
        let child = Command::new("perf")
            .args(["record", "-F", "499", "--call-graph", "dwarf,16384", "-p", &pid.to_string(), "-o"])
            .arg(&out)
            .args(["--", "sleep", &format!("{secs:.3}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match child {
            Ok(c) => PerfRecording { child: Some(c) },
            Err(e) => {
                eprintln!("load: warning: perf could not start ({e}); continuing without it");
                PerfRecording { child: None }
            }
        }
    }

    fn finish(mut self) {
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// The server under test
// ---------------------------------------------------------------------------

struct Server {
    process: ServerProcess,
    pid: String,
    addr: SocketAddr,
    url: String,
    admin_token: String,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Server {
    /// The environment a server or CLI run gets: nothing inherited but PATH.
    fn command(bin: &Path, data_dir: &Path) -> Command {
        // The fan-out run opens every subscriber with one token; the
        // per-principal limits (issue 12) are lifted for it.
        let env = [
            ("SESAME_GRAPHQL__MAX_SOCKETS_PER_PRINCIPAL", "1000000"),
            ("SESAME_GRAPHQL__MAX_SUBSCRIPTIONS_PER_PRINCIPAL", "1000000"),
            // The load is one person's writes as fast as they go (issue 21's write rate off).
            ("SESAME_WRITES__PER_MINUTE", "0"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        sesame_test_support::command(bin, data_dir, "warn", &env)
    }

    fn start(bin: &Path) -> Result<Server> {
        let dir = tempfile::Builder::new().prefix("sesame-bench-").tempdir().context("creating a temp data dir")?;
        let process = ServerProcess::start(Server::command(bin, dir.path()), dir.path())
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
        Ok(Server { process, pid, addr, url, admin_token, dir, bin: bin.to_owned() })
    }

    /// Runs a CLI command against the server's data directory.
    fn cli(&self, args: &[&str]) -> Result<Value> {
        let out = Server::command(&self.bin, self.dir.path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running sesame-vault {}", args.join(" ")))?;
        if !out.status.success() {
            bail!("sesame-vault {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        }
        serde_json::from_slice(&out.stdout).with_context(|| format!("sesame-vault {} printed no JSON", args.join(" ")))
    }

    fn alive(&mut self) -> Result<()> {
        match self.process.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                bail!("the server died ({status}); the end of its log:\n{}", log_tail(self.dir.path(), 40))
            }
            Err(e) => bail!("cannot check the server process: {e}"),
        }
    }
}

/// A small GraphQL client for setup and event triggers (not used for load).
struct Gql {
    http: reqwest::Client,
    base: String,
}

impl Gql {
    fn new(base: &str) -> Result<Gql> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().context("building reqwest")?;
        Ok(Gql { http, base: base.to_owned() })
    }

    async fn ok(&self, token: &str, query: &str, variables: Value) -> Result<Value> {
        sesame_test_support::graphql_ok(&self.http, &self.base, token, query, variables).await
    }

    async fn create_user(&self, admin: &str, email: &str) -> Result<(String, String)> {
        sesame_test_support::create_user(&self.http, &self.base, admin, email).await
    }

    async fn set_api_key(&self, token: &str, provider: &str, key: &str) -> Result<()> {
        self.ok(
            token,
            "mutation($p: Provider!, $k: String!) { setApiKey(provider: $p, key: $k) { id } }",
            json!({ "p": provider, "k": key }),
        )
        .await
        .map(|_| ())
    }

    async fn save_subscription(&self, token: &str, input: Value) -> Result<()> {
        self.ok(
            token,
            "mutation($i: SubscriptionCredentialInput!) { saveSubscriptionCredential(input: $i) { id } }",
            json!({ "i": input }),
        )
        .await
        .map(|_| ())
    }
}

/// Everything the HTTP scenarios need, created through the public API.
struct Fixture {
    creds_token: String,
    creds_count: usize,
    issue_user_id: String,
    runner_token: String,
    events_token: String,
}

async fn setup(server: &Server, gql: &Gql) -> Result<Fixture> {
    let admin = server.admin_token.as_str();
    // A user holding every slot the API allows: one API key per provider (4)
    // and one subscription per (agent, provider) pair (5: Gemini has none).
    let (_, creds_token) = gql.create_user(admin, "creds@bench.local").await?;
    for (provider, key) in
        [("ANTHROPIC", ANTHROPIC_KEY), ("OPENAI", OPENAI_KEY), ("GOOGLE", GEMINI_KEY), ("GITHUB", GITHUB_KEY)]
    {
        gql.set_api_key(&creds_token, provider, key).await.with_context(|| format!("setApiKey {provider}"))?;
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
        gql.save_subscription(&creds_token, input.clone())
            .await
            .with_context(|| format!("saveSubscriptionCredential {}", input["agent"]))?;
    }
    let mine = gql.ok(&creds_token, "{ myCredentials { id } }", json!({})).await?;
    let creds_count = mine["myCredentials"].as_array().map(Vec::len).unwrap_or(0);

    // The task user has only an Anthropic API key: issuance resolves the
    // (missing) subscription, then the key.
    let (issue_user_id, issue_token) = gql.create_user(admin, "issue@bench.local").await?;
    gql.set_api_key(&issue_token, "ANTHROPIC", ANTHROPIC_KEY).await?;
    let runner = server.cli(&["token", "create", "--runner", "--name", "bench", "--json"])?;
    let runner_token =
        runner["token"].as_str().ok_or_else(|| anyhow!("token create printed no token: {runner}"))?.to_owned();

    let (_, events_token) = gql.create_user(admin, "events@bench.local").await?;
    Ok(Fixture { creds_token, creds_count, issue_user_id, runner_token, events_token })
}

// ---------------------------------------------------------------------------
// Closed-loop HTTP load
// ---------------------------------------------------------------------------

type BodyFn = dyn Fn(usize, u64) -> Bytes + Send + Sync;

struct LoadSpec {
    name: String,
    token: String,
    body: Box<BodyFn>,
    /// A successful response contains this (and no "errors").
    expect: String,
}

struct LoadResult {
    name: String,
    connections: usize,
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    window: f64,
    hist: Histogram<u64>,
    server_cpu: f64,
    client_cpu: f64,
    /// CPU of every other process on the machine (other builds, …).
    other_cpu: f64,
    server_threads: Vec<(String, f64)>,
}

impl LoadResult {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.window
    }
    fn ms(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }
}

fn new_histogram() -> Histogram<u64> {
    // Microseconds, 1 µs to 10 minutes, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

struct WorkerOut {
    hist: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
}

async fn http1_connect(addr: SocketAddr) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::time::timeout(REQUEST_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| anyhow!("connecting to {addr} took over {REQUEST_TIMEOUT:?}"))?
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn worker(id: usize, addr: SocketAddr, spec: Arc<LoadSpec>, from: Instant, to: Instant) -> WorkerOut {
    let mut out = WorkerOut { hist: new_histogram(), errors: 0, first_error: None };
    let note = |out: &mut WorkerOut, message: String| {
        out.errors += 1;
        if out.first_error.is_none() {
            out.first_error = Some(message);
        }
    };
    let auth = if spec.token.is_empty() {
        None
    } else {
        match HeaderValue::from_str(&format!("Bearer {}", spec.token)) {
            Ok(v) => Some(v),
            Err(e) => {
                note(&mut out, format!("bad token header: {e}"));
                return out;
            }
        }
    };
    let host = HeaderValue::from_str(&addr.to_string()).expect("an address is a valid header");
    let json_type = HeaderValue::from_static("application/json");
    let mut seq = 0u64;
    'connection: while Instant::now() < to {
        let mut sender = match http1_connect(addr).await {
            Ok(s) => s,
            Err(e) => {
                note(&mut out, format!("{e:#}"));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        while Instant::now() < to {
            let body = (spec.body)(id, seq);
            seq += 1;
            let mut request = hyper::Request::post("/graphql")
                .header(HOST, host.clone())
                .header(CONTENT_TYPE, json_type.clone())
                .body(Full::new(body))
                .expect("a valid request");
            if let Some(auth) = &auth {
                request.headers_mut().insert(AUTHORIZATION, auth.clone());
            }
            let start = Instant::now();
            let result = tokio::time::timeout(REQUEST_TIMEOUT, async {
                sender.ready().await?;
                let response = sender.send_request(request).await?;
                let status = response.status();
                let bytes = response.into_body().collect().await?.to_bytes();
                Ok::<_, hyper::Error>((status, bytes))
            })
            .await;
            let end = Instant::now();
            match result {
                Ok(Ok((status, bytes))) => {
                    let text = std::str::from_utf8(&bytes).unwrap_or("");
                    if status.is_success() && !text.contains("\"errors\"") && text.contains(spec.expect.as_str()) {
                        if start >= from && end <= to {
                            out.hist.saturating_record(end.duration_since(start).as_micros() as u64);
                        }
                    } else {
                        let shown: String = text.chars().take(300).collect();
                        note(&mut out, format!("HTTP {status}: {shown}"));
                    }
                }
                Ok(Err(e)) => {
                    note(&mut out, format!("request failed: {e}"));
                    continue 'connection;
                }
                Err(_) => {
                    note(&mut out, format!("no response within {REQUEST_TIMEOUT:?}"));
                    continue 'connection;
                }
            }
        }
    }
    out
}

async fn run_load(server: &Server, settings: &Settings, spec: LoadSpec) -> Result<LoadResult> {
    let spec = Arc::new(spec);
    let connections = settings.connections;
    let from = Instant::now() + settings.warmup;
    let to = from + settings.duration;
    let handles: Vec<_> =
        (0..connections).map(|id| tokio::spawn(worker(id, server.addr, spec.clone(), from, to))).collect();
    tokio::time::sleep_until(from.into()).await;
    let server_cpu0 = cpu_seconds(&server.pid)?;
    let client_cpu0 = cpu_seconds("self")?;
    let machine0 = machine_busy_seconds();
    let threads0 = thread_cpu(&server.pid);
    let perf = PerfRecording::start(
        settings.perf.as_deref(),
        server.process.child.id(),
        &spec.name.replace([' ', '{', '}'], ""),
        settings.duration.as_secs_f64(),
    );
    tokio::time::sleep_until(to.into()).await;
    let server_cpu = cpu_seconds(&server.pid)? - server_cpu0;
    let client_cpu = cpu_seconds("self")? - client_cpu0;
    let other_cpu = (machine_busy_seconds() - machine0 - server_cpu - client_cpu).max(0.0);
    let server_threads = thread_cpu_delta(&threads0, &thread_cpu(&server.pid));
    let mut hist = new_histogram();
    let mut errors = 0;
    let mut first_error = None;
    for handle in handles {
        let out = tokio::time::timeout(REQUEST_TIMEOUT + Duration::from_secs(5), handle)
            .await
            .map_err(|_| anyhow!("a load worker did not stop"))?
            .map_err(|e| anyhow!("a load worker panicked: {e}"))?;
        hist.add(&out.hist).map_err(|e| anyhow!("merging histograms: {e:?}"))?;
        errors += out.errors;
        if first_error.is_none() {
            first_error = out.first_error;
        }
    }
    perf.finish();
    let result = LoadResult {
        name: spec.name.clone(),
        connections,
        requests: hist.len(),
        errors,
        first_error,
        window: settings.duration.as_secs_f64(),
        hist,
        server_cpu,
        client_cpu,
        other_cpu,
        server_threads,
    };
    println!(
        "  {:<34} {:>9.0} req/s  p50 {:>7.3} ms  p99 {:>7.3} ms  ({} requests, {} errors)",
        result.name,
        result.rps(),
        result.ms(0.50),
        result.ms(0.99),
        result.requests,
        result.errors
    );
    if let Some(e) = &result.first_error {
        println!("    first error: {e}");
    }
    Ok(result)
}

fn body_of(value: Value) -> Bytes {
    Bytes::from(value.to_string())
}

// ---------------------------------------------------------------------------
// WebSocket fan-out
// ---------------------------------------------------------------------------

struct WsShared {
    ready: AtomicUsize,
    failed: AtomicUsize,
    first_error: Mutex<Option<String>>,
    deliveries: mpsc::UnboundedSender<(usize, usize, Instant)>,
}

impl WsShared {
    fn fail(&self, message: String) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(message);
        }
    }
}

struct RoundResult {
    delivered: usize,
    missed: usize,
    hist: Histogram<u64>,
    /// CPU seconds from the trigger to the last delivery.
    server_cpu: f64,
    client_cpu: f64,
    other_cpu: f64,
}

struct WsResult {
    subscribers: usize,
    connected: usize,
    connect_secs: f64,
    rss_before_kib: u64,
    rss_subscribed_kib: u64,
    rss_delivered_kib: u64,
    client_rss_delta_kib: u64,
    server_threads: u64,
    warmup: RoundResult,
    rounds: Vec<RoundResult>,
    failed: usize,
    first_error: Option<String>,
    spread_ips: usize,
}

impl WsResult {
    fn bytes_per_sub(&self, after_kib: u64) -> f64 {
        after_kib.saturating_sub(self.rss_before_kib) as f64 * 1024.0 / self.connected.max(1) as f64
    }
    /// The worst measured round's p99, in ms.
    fn worst_p99_ms(&self) -> f64 {
        self.rounds.iter().map(|r| r.hist.value_at_quantile(0.99)).max().unwrap_or(0) as f64 / 1000.0
    }
    fn missed(&self) -> usize {
        self.rounds.iter().map(|r| r.missed).sum::<usize>() + self.warmup.missed
    }
}

/// Local addresses to connect from: one (the kernel's choice) while the
/// ephemeral port range holds every socket, else 127.0.0.2, .3, …
fn source_ips(subscribers: usize) -> Vec<Option<Ipv4Addr>> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut parts = s.split_whitespace().map(|p| p.parse::<usize>().ok());
            Some((parts.next()??, parts.next()??))
        })
        .map(|(lo, hi)| hi.saturating_sub(lo) + 1)
        .unwrap_or(28_000);
    // Leave a quarter for HTTP connections and sockets in TIME_WAIT.
    let per_ip = (range * 3 / 4).max(1000);
    if subscribers <= per_ip {
        return vec![None];
    }
    let count = subscribers.div_ceil(per_ip).min(250);
    (0..count).map(|k| Some(Ipv4Addr::new(127, 0, 0, 2 + k as u8))).collect()
}

async fn ws_connect(
    addr: SocketAddr,
    from: Option<Ipv4Addr>,
) -> Result<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    if let Some(ip) = from {
        socket.bind(SocketAddr::new(IpAddr::V4(ip), 0)).with_context(|| format!("binding {ip}"))?;
    }
    let stream = socket.connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let mut request = format!("ws://{addr}/graphql/ws").into_client_request()?;
    request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("graphql-transport-ws"));
    let (ws, _) = tokio_tungstenite::client_async(request, stream).await.context("WebSocket handshake")?;
    Ok(ws)
}

/// The next text frame within the step timeout (pings are skipped).
async fn ws_next_text(ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) -> Result<String> {
    loop {
        let msg = tokio::time::timeout(WS_STEP_TIMEOUT, ws.next())
            .await
            .map_err(|_| anyhow!("no message within {WS_STEP_TIMEOUT:?}"))?
            .ok_or_else(|| anyhow!("the server closed the socket"))??;
        match msg {
            Message::Text(text) => return Ok(text),
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Close(frame) => bail!("the server closed the socket: {frame:?}"),
            other => bail!("unexpected frame {other:?}"),
        }
    }
}

/// Which round an event belongs to, by its provider.
fn round_of(text: &str) -> Option<usize> {
    ROUND_PROVIDERS.iter().position(|p| text.contains(&format!("\"provider\":\"{p}\"")))
}

async fn subscriber(
    index: usize,
    addr: SocketAddr,
    from: Option<Ipv4Addr>,
    token: Arc<String>,
    shared: Arc<WsShared>,
    gate: Arc<tokio::sync::Semaphore>,
) {
    let setup = async {
        let _permit = gate.acquire().await.map_err(|_| anyhow!("the connect gate closed"))?;
        let mut ws = tokio::time::timeout(WS_STEP_TIMEOUT, ws_connect(addr, from))
            .await
            .map_err(|_| anyhow!("connecting took over {WS_STEP_TIMEOUT:?}"))??;
        let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
        ws.send(Message::Text(init.to_string())).await?;
        let ack = ws_next_text(&mut ws).await?;
        if !ack.contains("connection_ack") {
            bail!("expected connection_ack, got {ack}");
        }
        let subscribe = json!({ "id": "1", "type": "subscribe", "payload": {
            "query": "subscription { credentialEvents { kind credentialId ownerId provider agent status at } }"
        } });
        ws.send(Message::Text(subscribe.to_string())).await?;
        // The server handles a socket's messages in order: the pong comes
        // after the subscribe was taken.
        ws.send(Message::Text(json!({ "type": "ping" }).to_string())).await?;
        let pong = ws_next_text(&mut ws).await?;
        if !pong.contains("pong") {
            bail!("expected pong, got {pong}");
        }
        Ok::<_, anyhow::Error>(ws)
    };
    let mut ws = match setup.await {
        Ok(ws) => ws,
        Err(e) => {
            shared.fail(format!("subscriber {index}: {e:#}"));
            return;
        }
    };
    shared.ready.fetch_add(1, Ordering::SeqCst);
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Text(text)) => {
                let at = Instant::now();
                if text.contains("\"next\"") && !text.contains("\"errors\"") {
                    if let Some(round) = round_of(&text) {
                        let _ = shared.deliveries.send((index, round, at));
                    }
                } else if !text.contains("\"pong\"") && !text.contains("\"ping\"") {
                    shared.fail(format!("subscriber {index}: unexpected message {text}"));
                    return;
                }
            }
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Ok(other) => {
                shared.fail(format!("subscriber {index}: the server closed the socket: {other:?}"));
                return;
            }
            Err(e) => {
                shared.fail(format!("subscriber {index}: {e}"));
                return;
            }
        }
    }
    shared.fail(format!("subscriber {index}: the socket ended"));
}

async fn collect_round(
    rx: &mut mpsc::UnboundedReceiver<(usize, usize, Instant)>,
    round: usize,
    expected: usize,
    t0: Instant,
    seen: &mut [bool],
) -> RoundResult {
    seen.iter_mut().for_each(|s| *s = false);
    let mut hist = new_histogram();
    let mut delivered = 0;
    let deadline = t0 + Duration::from_secs(60);
    while delivered < expected {
        match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
            Ok(Some((index, r, at))) if r == round && !seen[index] => {
                seen[index] = true;
                delivered += 1;
                hist.saturating_record(at.saturating_duration_since(t0).as_micros() as u64);
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    RoundResult { delivered, missed: expected - delivered, hist, server_cpu: 0.0, client_cpu: 0.0, other_cpu: 0.0 }
}

async fn ws_fanout(server: &mut Server, settings: &Settings, gql: &Gql, fixture: &Fixture) -> Result<WsResult> {
    let n = settings.subscribers;
    let ips = source_ips(n);
    let rss_before_kib = rss_kib(&server.pid)?;
    let client_rss_before = rss_kib("self")?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let shared = Arc::new(WsShared {
        ready: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        first_error: Mutex::new(None),
        deliveries: tx,
    });
    let gate = Arc::new(tokio::sync::Semaphore::new(WS_CONNECT_CONCURRENCY));
    let token = Arc::new(server.admin_token.clone());
    let started = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let from = ips[i % ips.len()];
            tokio::spawn(subscriber(i, server.addr, from, token.clone(), shared.clone(), gate.clone()))
        })
        .collect();
    // Bounded: generous for 20,000 handshakes on 2 cores, finite for any N.
    let deadline = started + Duration::from_secs(60) + Duration::from_millis(10 * n as u64);
    let mut last_report = Instant::now();
    loop {
        let ready = shared.ready.load(Ordering::SeqCst);
        let failed = shared.failed.load(Ordering::SeqCst);
        if ready + failed >= n {
            break;
        }
        if Instant::now() > deadline {
            break;
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            println!(
                "    … {ready} of {n} subscribed ({failed} failed) after {:.0} s",
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_secs = started.elapsed().as_secs_f64();
    let connected = shared.ready.load(Ordering::SeqCst);
    server.alive()?;
    if connected == 0 {
        let first = shared.first_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
        bail!("no WebSocket subscriber connected; first error: {}", first.unwrap_or_default());
    }
    // Let the server finish any per-socket work before reading its RSS.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_subscribed_kib = rss_kib(&server.pid)?;
    let server_threads = threads(&server.pid);
    let mut seen = vec![false; n];

    let trigger = |round: usize| {
        let key = match ROUND_PROVIDERS[round] {
            "OPENAI" => OPENAI_KEY,
            "GOOGLE" => GEMINI_KEY,
            "GITHUB" => GITHUB_KEY,
            _ => ANTHROPIC_KEY,
        };
        gql.set_api_key(&fixture.events_token, ROUND_PROVIDERS[round], key)
    };
    // Warm-up event: proves every subscriber is live before measuring.
    let t0 = Instant::now();
    trigger(0).await?;
    let warmup = collect_round(&mut rx, 0, connected, t0, &mut seen).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_delivered_kib = rss_kib(&server.pid)?;
    let mut rounds = Vec::new();
    for round in 1..=WS_ROUNDS {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let perf =
            PerfRecording::start(settings.perf.as_deref(), server.process.child.id(), &format!("ws-round{round}"), 2.0);
        let server_cpu0 = cpu_seconds(&server.pid)?;
        let client_cpu0 = cpu_seconds("self")?;
        let machine0 = machine_busy_seconds();
        let t0 = Instant::now();
        trigger(round).await?;
        let mut result = collect_round(&mut rx, round, connected, t0, &mut seen).await;
        result.server_cpu = cpu_seconds(&server.pid)? - server_cpu0;
        result.client_cpu = cpu_seconds("self")? - client_cpu0;
        result.other_cpu = (machine_busy_seconds() - machine0 - result.server_cpu - result.client_cpu).max(0.0);
        perf.finish();
        println!(
            "    round {round}: {} of {connected} delivered, p50 {:.1} ms, p99 {:.1} ms, all by {:.1} ms; CPU server \
             {:.2} s ({:.0} µs per subscriber), load generator {:.2} s",
            result.delivered,
            result.hist.value_at_quantile(0.5) as f64 / 1000.0,
            result.hist.value_at_quantile(0.99) as f64 / 1000.0,
            result.hist.max() as f64 / 1000.0,
            result.server_cpu,
            result.server_cpu / connected as f64 * 1e6,
            result.client_cpu
        );
        rounds.push(result);
    }
    let client_rss_delta_kib = rss_kib("self")?.saturating_sub(client_rss_before);
    for handle in &handles {
        handle.abort();
    }
    for handle in handles {
        let _ = handle.await;
    }
    // Closing 20,000 sockets is work for the server too; give it a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.alive()?;
    let first_error = shared.first_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let failed = shared.failed.load(Ordering::SeqCst);
    Ok(WsResult {
        subscribers: n,
        connected,
        connect_secs,
        rss_before_kib,
        rss_subscribed_kib,
        rss_delivered_kib,
        client_rss_delta_kib,
        server_threads,
        warmup,
        rounds,
        failed,
        first_error,
        spread_ips: ips.len(),
    })
}

// ---------------------------------------------------------------------------
// Expiry scan, in-process over a real SQLite file
// ---------------------------------------------------------------------------

struct ScanResult {
    rows: u64,
    due: u64,
    insert_secs: f64,
    db_mib: f64,
    idle_runs_ms: Vec<f64>,
    due_ms: f64,
    updates_only_ms: f64,
    due_report: (usize, usize),
    idle_after_ms: Vec<f64>,
    plans: Vec<(String, String, Vec<String>)>,
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        0.0
    } else {
        v[v.len() / 2]
    }
}

async fn scan_bench(settings: &Settings) -> Result<ScanResult> {
    use sea_orm::sea_query::Expr;
    use sea_orm::{
        ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryTrait, Statement, TransactionTrait,
    };
    use sesame_vault::entities::credential;

    let rows = settings.scan_rows;
    let due = (rows / 10).min(10_000);
    let step = rows / due;
    let dir = tempfile::Builder::new().prefix("sesame-bench-scan-").tempdir().context("creating a temp dir")?;
    let config = sesame_vault::config::Config {
        data_dir: dir.path().to_path_buf(),
        encryption_key: Some(sesame_vault::config::SecretValue::new(sesame_vault::crypto::Key::generate())),
        ..Default::default()
    };
    let url = config.database_url();
    let app = sesame_vault::app::App::open(config).await.context("opening the app on a temp SQLite file")?;
    // A separate connection to the same file, as another process would have.
    let db = sesame_vault::store::db::open(&url).await.context("opening a second connection")?;

    let base = chrono::Utc::now();
    let day = chrono::Duration::days(1);
    let owner = "00000000-0000-7000-8000-00000000bench";
    let inserted = Instant::now();
    let txn = db.begin().await?;
    txn.execute(Statement::from_sql_and_values(
        DbBackend::Sqlite,
        "INSERT INTO users (id, email, role, created_at) VALUES (?1, ?2, 'USER', ?3)",
        Vec::<sea_orm::Value>::from([owner.into(), "scan@bench.local".into(), base.into()]),
    ))
    .await
    .context("inserting the owner")?;
    // Every `step`-th row is due at `base + 25 days`: half already expired
    // (EXPIRED), half within the 7-day window (EXPIRING). The rest expire in
    // ten years. Nothing is due at `base`.
    let sql = "INSERT INTO credentials (id, owner_id, slot, provider, agent, kind, status, status_message, secret, \
               hint, has_refresh_token, expires_at, last_used_at, created_at, updated_at, version, refresh_claimed_until) \
               WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < ?1) \
               SELECT printf('bench-%010d', n), ?2, printf('api:BENCH%010d', n), 'ANTHROPIC', NULL, 'API_KEY', \
               'ACTIVE', NULL, 'sv1.placeholder.secret', 'sv1.placeholder.hint', 0, \
               CASE WHEN n % ?3 = 0 THEN (CASE WHEN (n / ?3) % 2 = 0 THEN ?4 ELSE ?5 END) ELSE ?6 END, \
               NULL, ?7, ?7, 1, NULL FROM seq";
    let values: Vec<sea_orm::Value> = vec![
        (rows as i64).into(),
        owner.into(),
        (step as i64).into(),
        (base + day * 20).into(),
        (base + day * 28).into(),
        (base + day * 3650).into(),
        base.into(),
    ];
    txn.execute(Statement::from_sql_and_values(DbBackend::Sqlite, sql, values))
        .await
        .context("bulk-inserting credentials")?;
    txn.commit().await?;
    db.execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)").await.context("checkpointing")?;
    let insert_secs = inserted.elapsed().as_secs_f64();
    let count = db
        .query_one(Statement::from_string(DbBackend::Sqlite, "SELECT COUNT(*) AS n FROM credentials"))
        .await?
        .and_then(|r| r.try_get::<i64>("", "n").ok())
        .unwrap_or(0);
    if count as u64 != rows {
        bail!("expected {rows} credentials in the scan database, found {count}");
    }
    let db_mib = std::fs::metadata(dir.path().join("sesame.db")).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0;

    let within = chrono::Duration::days(7);
    let store = &app.store;
    let mut idle_runs_ms = Vec::new();
    for _ in 0..settings.scan_runs {
        let t = Instant::now();
        let report = store.scan_expiry(base, within).await.map_err(|e| anyhow!("scan_expiry: {e:?}"))?;
        idle_runs_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        if report.expired + report.expiring != 0 {
            bail!("a scan with nothing due transitioned {report:?}");
        }
    }

    // The two statements the scan issues (as lifecycle.rs builds them), for EXPLAIN QUERY PLAN.
    let now2 = base + day * 25;
    let expired_stmt = credential::Entity::update_many()
        .col_expr(credential::Column::Status, Expr::value("EXPIRED"))
        .col_expr(credential::Column::StatusMessage, Expr::value("this credential has expired"))
        .filter(credential::Column::Status.is_in(["ACTIVE", "EXPIRING"]))
        .filter(credential::Column::ExpiresAt.lte(now2))
        .build(DbBackend::Sqlite);
    let expiring_stmt = credential::Entity::update_many()
        .col_expr(credential::Column::Status, Expr::value("EXPIRING"))
        .col_expr(credential::Column::StatusMessage, Expr::value("this credential expires soon"))
        .filter(credential::Column::Status.eq("ACTIVE"))
        .filter(credential::Column::ExpiresAt.gt(now2))
        .filter(credential::Column::ExpiresAt.lte(now2 + within))
        .filter(credential::Column::HasRefreshToken.eq(false))
        .build(DbBackend::Sqlite);
    let expired_stmt_exec = expired_stmt.clone();
    let expiring_stmt_exec = expiring_stmt.clone();
    let mut plans = Vec::new();
    for (name, stmt) in [("to EXPIRED", expired_stmt), ("to EXPIRING", expiring_stmt)] {
        let explain = Statement::from_sql_and_values(
            DbBackend::Sqlite,
            format!("EXPLAIN QUERY PLAN {}", stmt.sql),
            stmt.values.clone().map(|v| v.0).unwrap_or_default(),
        );
        let lines = db
            .query_all(explain)
            .await
            .context("EXPLAIN QUERY PLAN")?
            .iter()
            .filter_map(|r| r.try_get::<String>("", "detail").ok())
            .collect();
        plans.push((name.to_owned(), stmt.sql.clone(), lines));
    }

    // The two UPDATEs alone (no RETURNING rows decoded, no events), rolled
    // back: how much of the due run is the set-based part.
    let updates_only_ms = {
        let txn = db.begin().await?;
        let t = Instant::now();
        let mut changed = 0;
        for stmt in [&expired_stmt_exec, &expiring_stmt_exec] {
            changed += txn.execute(stmt.clone()).await.context("timing the bare UPDATEs")?.rows_affected();
        }
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        txn.rollback().await?;
        if changed != due {
            bail!("the bare UPDATEs changed {changed} rows, expected {due}");
        }
        ms
    };

    let t = Instant::now();
    let report = store.scan_expiry(now2, within).await.map_err(|e| anyhow!("scan_expiry: {e:?}"))?;
    let due_ms = t.elapsed().as_secs_f64() * 1000.0;
    if (report.expired + report.expiring) as u64 != due {
        bail!("expected {due} transitions, the scan made {report:?}");
    }
    let mut idle_after_ms = Vec::new();
    for _ in 0..settings.scan_runs {
        let t = Instant::now();
        let report = store.scan_expiry(now2, within).await.map_err(|e| anyhow!("scan_expiry: {e:?}"))?;
        idle_after_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        if report.expired + report.expiring != 0 {
            bail!("a rerun transitioned {report:?} again");
        }
    }
    Ok(ScanResult {
        rows,
        due,
        insert_secs,
        db_mib,
        idle_runs_ms,
        due_ms,
        updates_only_ms,
        due_report: (report.expired, report.expiring),
        idle_after_ms,
        plans,
    })
}

// ---------------------------------------------------------------------------
// The run and the report
// ---------------------------------------------------------------------------

fn verdict(met: bool) -> &'static str {
    if met {
        "MET"
    } else {
        "MISSED"
    }
}

/// File descriptors each process keeps for things other than subscriber
/// sockets (database files, listener, epoll, HTTP connections, stdio).
const FD_RESERVE: u64 = 100;

async fn run(settings: &Settings) -> Result<bool> {
    let nofile = raise_nofile(if settings.wants(Scenario::Ws) { settings.subscribers } else { 0 })?;
    let mut settings = settings.clone();
    let requested_subscribers = settings.subscribers;
    if settings.wants(Scenario::Ws) && settings.subscribers as u64 + FD_RESERVE > nofile {
        // Both ends of every subscriber are in a process of their own (the
        // server, this tool), each bound by the same limit.
        if nofile < 2 * FD_RESERVE {
            bail!(
                "the open-file limit is {nofile}, too low for any WebSocket subscribers: raise `ulimit -n` or \
                 leave out the ws scenario"
            );
        }
        settings.subscribers = (nofile - FD_RESERVE) as usize;
    }
    let settings = &settings;
    let mut ok = true;
    // Read once, at the start: the commit may move while the run goes on.
    let commit = commit_summary();
    println!("== sesame-vault load benchmark ==");
    println!("commit:   {commit} (the checkout when the run started; cargo built the server from it)");
    println!("machine:  {}", machine_summary());
    println!("server:   {}", settings.server_bin.display());
    println!(
        "settings: {} connections, {:?} measured (+{:?} warm-up) per HTTP scenario, {} subscribers, {} scan rows, \
         {} client threads, open-file limit {nofile}{}",
        settings.connections,
        settings.duration,
        settings.warmup,
        settings.subscribers,
        settings.scan_rows,
        settings.client_threads,
        if settings.tiny { " (tiny: timings not evaluated)" } else { "" }
    );
    if settings.subscribers != requested_subscribers {
        println!(
            "NOTE:     the open-file limit cannot be raised above {nofile} here (the hard limit; raising it needs \
             privileges this machine does not grant), and the server and this tool each hold one socket per \
             subscriber: running {} subscribers instead of {requested_subscribers}",
            settings.subscribers
        );
    }

    let mut loads: Vec<LoadResult> = Vec::new();
    let mut ws = None;
    let needs_server = settings.scenarios.iter().any(|s| *s != Scenario::Scan);
    if needs_server {
        let mut server = Server::start(&settings.server_bin)?;
        println!("server pid {} at {} (data in {})", server.pid, server.url, server.dir.path().display());
        let gql = Gql::new(&server.url)?;
        let fixture = setup(&server, &gql).await.context("creating the benchmark's users and credentials")?;
        println!(
            "setup: a user with {} credentials (every slot the API allows), a task user with an API key, a runner token",
            fixture.creds_count
        );
        println!("HTTP scenarios ({} connections, closed loop):", settings.connections);
        if settings.wants(Scenario::Anonymous) {
            loads.push(
                run_load(
                    &server,
                    settings,
                    LoadSpec {
                        name: "anonymous { __typename } (no DB)".into(),
                        token: String::new(),
                        body: Box::new(|_, _| body_of(json!({ "query": "{ __typename }" }))),
                        expect: "__typename".into(),
                    },
                )
                .await?,
            );
            server.alive()?;
        }
        if settings.wants(Scenario::Baseline) {
            loads.push(
                run_load(
                    &server,
                    settings,
                    LoadSpec {
                        name: "baseline { __typename }".into(),
                        token: server.admin_token.clone(),
                        body: Box::new(|_, _| body_of(json!({ "query": "{ __typename }" }))),
                        expect: "__typename".into(),
                    },
                )
                .await?,
            );
            server.alive()?;
        }
        if settings.wants(Scenario::MyCredentials) {
            let query = "{ myCredentials { id kind provider agent status statusMessage hint hasRefreshToken \
                         expiresAt lastUsedAt createdAt updatedAt } }";
            let body = body_of(json!({ "query": query }));
            loads.push(
                run_load(
                    &server,
                    settings,
                    LoadSpec {
                        name: format!("myCredentials ({} credentials)", fixture.creds_count),
                        token: fixture.creds_token.clone(),
                        body: Box::new(move |_, _| body.clone()),
                        expect: "\"hint\"".into(),
                    },
                )
                .await?,
            );
            server.alive()?;
        }
        if settings.wants(Scenario::Issue) {
            let user = fixture.issue_user_id.clone();
            let query = "mutation($u: ID!, $t: String!) { issueTaskCredentials(userId: $u, agent: CLAUDE_CODE, \
                         taskId: $t) { source credentialId provider expiresAt env { name value } \
                         files { path mode content } } }";
            let run_id = std::process::id();
            loads.push(
                run_load(
                    &server,
                    settings,
                    LoadSpec {
                        name: "issueTaskCredentials".into(),
                        token: fixture.runner_token.clone(),
                        body: Box::new(move |worker, seq| {
                            body_of(json!({ "query": query, "variables": {
                                "u": user, "t": format!("bench-{run_id}-{worker}-{seq}")
                            } }))
                        }),
                        expect: "USER_API_KEY".into(),
                    },
                )
                .await?,
            );
            server.alive()?;
        }
        if settings.wants(Scenario::Ws) {
            println!("WebSocket fan-out ({} admin subscribers to credentialEvents):", settings.subscribers);
            let result = ws_fanout(&mut server, settings, &gql, &fixture).await?;
            println!(
                "    {} of {} subscribed in {:.1} s{}; server RSS {} KiB before, {} KiB subscribed, {} KiB after \
                 first delivery ({} threads)",
                result.connected,
                result.subscribers,
                result.connect_secs,
                if result.spread_ips > 1 {
                    format!(" from {} source addresses", result.spread_ips)
                } else {
                    String::new()
                },
                result.rss_before_kib,
                result.rss_subscribed_kib,
                result.rss_delivered_kib,
                result.server_threads
            );
            ws = Some(result);
        }
        server.alive()?;
        drop(server);
    }

    let scan = if settings.wants(Scenario::Scan) {
        println!("Expiry scan over {} stored credentials (in-process, SQLite file):", settings.scan_rows);
        let result = scan_bench(settings).await?;
        println!(
            "    inserted {} rows in {:.1} s ({:.0} MiB file); nothing due: median {:.2} ms of {}; {} due: {:.1} ms",
            result.rows,
            result.insert_secs,
            result.db_mib,
            median(&result.idle_runs_ms),
            result.idle_runs_ms.len(),
            result.due,
            result.due_ms
        );
        Some(result)
    } else {
        None
    };

    // ---- report ----
    println!();
    println!("== results (commit {commit}) ==");
    let baseline_rps = loads.iter().find(|l| l.name.starts_with("baseline")).map(LoadResult::rps);
    if !loads.is_empty() {
        println!(
            "| scenario | conns | requests | req/s | p50 ms | p99 ms | max ms | vs baseline | server CPU | client CPU | server CPU/req |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for l in &loads {
            let ratio = baseline_rps.map(|b| format!("{:.2}", l.rps() / b)).unwrap_or_else(|| "n/a".into());
            let per_req = if l.requests > 0 { l.server_cpu / l.requests as f64 * 1e6 } else { 0.0 };
            println!(
                "| {} | {} | {} | {:.0} | {:.3} | {:.3} | {:.3} | {} | {:.0}% | {:.0}% | {:.0} µs |",
                l.name,
                l.connections,
                l.requests,
                l.rps(),
                l.ms(0.50),
                l.ms(0.99),
                l.hist.max() as f64 / 1000.0,
                ratio,
                l.server_cpu / l.window * 100.0,
                l.client_cpu / l.window * 100.0,
                per_req
            );
            if l.errors > 0 {
                ok = false;
            }
        }
        println!(
            "(CPU: % of one core over the measured window; this machine has {} cores, shared by the server, the \
             load generator and anything else running)",
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
        );
        for l in &loads {
            let threads: Vec<String> =
                l.server_threads.iter().map(|(name, secs)| format!("{name} {:.0}%", secs / l.window * 100.0)).collect();
            println!(
                "  {}: server threads {}; other processes {:.0}%",
                l.name,
                threads.join(", "),
                l.other_cpu / l.window * 100.0
            );
        }
    }
    if let Some(w) = &ws {
        println!();
        println!("| WebSocket fan-out | value |");
        println!("|---|---:|");
        println!("| subscribers connected | {} of {} |", w.connected, w.subscribers);
        println!(
            "| connect + subscribe time | {:.1} s ({:.0}/s) |",
            w.connect_secs,
            w.connected as f64 / w.connect_secs
        );
        println!(
            "| warm-up event delivered | {} of {} (all by {:.1} ms) |",
            w.warmup.delivered,
            w.connected,
            w.warmup.hist.max() as f64 / 1000.0
        );
        for (i, r) in w.rounds.iter().enumerate() {
            println!(
                "| event {} delivery p50 / p99 / all | {:.1} / {:.1} / {:.1} ms ({} of {}; CPU server {:.2} s = {:.0} µs \
                 per subscriber, load generator {:.2} s, other processes {:.2} s) |",
                i + 1,
                r.hist.value_at_quantile(0.5) as f64 / 1000.0,
                r.hist.value_at_quantile(0.99) as f64 / 1000.0,
                r.hist.max() as f64 / 1000.0,
                r.delivered,
                w.connected,
                r.server_cpu,
                r.server_cpu / w.connected.max(1) as f64 * 1e6,
                r.client_cpu,
                r.other_cpu
            );
        }
        println!(
            "| server RSS per subscriber (subscribed) | {:.0} bytes ({:.1} KiB) |",
            w.bytes_per_sub(w.rss_subscribed_kib),
            w.bytes_per_sub(w.rss_subscribed_kib) / 1024.0
        );
        println!(
            "| server RSS per subscriber (after first delivery) | {:.0} bytes ({:.1} KiB) |",
            w.bytes_per_sub(w.rss_delivered_kib),
            w.bytes_per_sub(w.rss_delivered_kib) / 1024.0
        );
        println!(
            "| load generator RSS growth | {} KiB ({:.1} KiB per subscriber) |",
            w.client_rss_delta_kib,
            w.client_rss_delta_kib as f64 / w.connected.max(1) as f64
        );
        if w.failed > 0 || w.missed() > 0 || w.connected < w.subscribers {
            ok = false;
            println!(
                "WebSocket problems: {} subscribers failed, {} deliveries missed; first error: {}",
                w.failed,
                w.missed(),
                w.first_error.clone().unwrap_or_default()
            );
        }
    }
    if let Some(s) = &scan {
        println!();
        println!("| expiry scan ({} rows) | value |", s.rows);
        println!("|---|---:|");
        println!(
            "| nothing due: median (min–max) of {} | {:.3} ms ({:.3}–{:.3}) |",
            s.idle_runs_ms.len(),
            median(&s.idle_runs_ms),
            s.idle_runs_ms.iter().cloned().fold(f64::INFINITY, f64::min),
            s.idle_runs_ms.iter().cloned().fold(0.0, f64::max)
        );
        println!(
            "| {} due (one run: {} EXPIRED + {} EXPIRING, with their events) | {:.1} ms |",
            s.due, s.due_report.0, s.due_report.1, s.due_ms
        );
        println!(
            "| of which the two UPDATEs alone (timed separately, rolled back) | {:.1} ms; the rest is one event insert \
             per transition ({:.0} µs each) |",
            s.updates_only_ms,
            (s.due_ms - s.updates_only_ms).max(0.0) * 1000.0 / s.due.max(1) as f64
        );
        println!("| nothing due again, after the transitions: median | {:.3} ms |", median(&s.idle_after_ms));
        println!("| bulk insert (one transaction) + checkpoint | {:.1} s, {:.0} MiB file |", s.insert_secs, s.db_mib);
        for (name, sql, plan) in &s.plans {
            println!("EXPLAIN QUERY PLAN ({name}): {sql}");
            for line in plan {
                println!("    {line}");
            }
            if !plan.iter().any(|l| l.contains("credentials_status_expires")) {
                println!("    (!) the (status, expires_at) index credentials_status_expires is NOT used");
            }
        }
    }

    // Anything else running on the machine takes cores from the server and
    // this tool: say so, so that such numbers are not taken as the server's.
    let mut busy: Vec<String> = loads
        .iter()
        .filter(|l| l.other_cpu / l.window > 0.10)
        .map(|l| format!("{} ({:.0}% of a core)", l.name, l.other_cpu / l.window * 100.0))
        .collect();
    if let Some(w) = &ws {
        for (i, r) in w.rounds.iter().enumerate() {
            let secs = r.hist.max() as f64 / 1e6;
            if secs > 0.0 && r.other_cpu / secs > 0.10 {
                busy.push(format!("WebSocket event {} ({:.0}% of a core)", i + 1, r.other_cpu / secs * 100.0));
            }
        }
    }
    if !busy.is_empty() {
        println!();
        println!(
            "WARNING: other processes were busy during: {}. Those numbers are lower than the server can do on an \
             idle machine; rerun when it is idle.",
            busy.join(", ")
        );
    }

    // ---- targets ----
    println!();
    if settings.tiny {
        println!("targets: not evaluated in --tiny mode");
        return Ok(ok);
    }
    println!("== targets ==");
    if let (Some(base), Some(issue)) = (baseline_rps, loads.iter().find(|l| l.name == "issueTaskCredentials")) {
        let ratio = issue.rps() / base;
        let met = ratio >= TARGET_ISSUE_RATIO && issue.ms(0.99) < TARGET_ISSUE_P99_MS;
        let note = if issue.connections == TARGET_ISSUE_CONNECTIONS {
            String::new()
        } else {
            format!(" (measured at {} connections, target is at {TARGET_ISSUE_CONNECTIONS})", issue.connections)
        };
        println!(
            "issueTaskCredentials >= {:.0}% of baseline throughput with p99 < {TARGET_ISSUE_P99_MS} ms: {} \
             ({:.0}% of baseline, p99 {:.2} ms){note}",
            TARGET_ISSUE_RATIO * 100.0,
            verdict(met),
            ratio * 100.0,
            issue.ms(0.99)
        );
    }
    if let Some(w) = &ws {
        let p99 = w.worst_p99_ms();
        let mem = w.bytes_per_sub(w.rss_subscribed_kib);
        let mem_after = w.bytes_per_sub(w.rss_delivered_kib);
        let label = format!(
            "{TARGET_WS_SUBSCRIBERS} subscribers, p99 delivery < {TARGET_WS_P99_MS} ms, < {TARGET_WS_BYTES_PER_SUB} \
             bytes each"
        );
        let figures = format!(
            "{} connected, worst round p99 {:.1} ms, {:.0} bytes each subscribed / {:.0} after a delivery",
            w.connected, p99, mem, mem_after
        );
        if requested_subscribers < TARGET_WS_SUBSCRIBERS {
            println!("{label}: NOT EVALUATED (run with --subscribers {TARGET_WS_SUBSCRIBERS}; {figures})");
        } else {
            let met = w.connected >= w.subscribers && p99 < TARGET_WS_P99_MS && mem < TARGET_WS_BYTES_PER_SUB;
            let capped = if w.subscribers < TARGET_WS_SUBSCRIBERS {
                format!(
                    "; evaluated at {}, the most this machine's open-file limit allows, as the figures are per \
                     subscriber",
                    w.subscribers
                )
            } else {
                String::new()
            };
            println!("{label}: {} ({figures}{capped})", verdict(met));
        }
    }
    if let Some(s) = &scan {
        let m = median(&s.idle_runs_ms);
        let met = s.rows >= TARGET_SCAN_ROWS && m < TARGET_SCAN_MS;
        println!(
            "scan with nothing due < {TARGET_SCAN_MS} ms at {TARGET_SCAN_ROWS} rows: {} (median {:.3} ms at {} rows)",
            verdict(met),
            m,
            s.rows
        );
    }
    Ok(ok)
}
