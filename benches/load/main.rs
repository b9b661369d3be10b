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
//! - `jwt-baseline`: the same with an admin's RS256 JWT from a local IdP (`jwt.rs`);
//! - `my-credentials`: `myCredentials` (with `hint`) for a user holding every slot the API allows;
//! - `issue`: `issueTaskCredentials` with a runner token and a distinct task id per request;
//! - `ws`: N admin `credentialEvents` subscribers over graphql-transport-ws, one event, time to each;
//! - `scan`: in-process `Store::scan_expiry` over a SQLite file holding `--scan-rows` credentials;
//! - `gate`: in process, the baseline request through the schema with and without the document gate;
//! - with `--postgres URL`, the HTTP scenarios again on a fresh PostgreSQL database (created and
//!   dropped on that server);
//! - `proxy` (not in the default list; needs proxy delivery): one local upstream, direct and through
//!   the egress proxy, side by side (`proxy.rs`).
//!
//! HTTP scenarios are closed-loop: `--connections` workers, each with its own
//! keep-alive HTTP/1.1 connection, send the next request when the previous one
//! answered. Latencies go into an HDR histogram. The load generator shares the
//! machine's cores with the server; the report shows the CPU each side used.
//!
//! Timings are printed, never asserted. The exit code is non-zero only when
//! something did not work (a request failed, the server died, a subscriber
//! missed an event), so `--tiny` in CI proves the tool and the paths still work.
//!
//! One module a part: `run.rs` (the steps), `server.rs` (the server and the
//! fixture), `http_load.rs`, `jwt.rs`, `ws.rs`, `scan.rs`, `gate.rs`, `postgres.rs`,
//! `report.rs`, `process.rs`, `proxy.rs`.

mod gate;
mod http_load;
mod jwt;
mod postgres;
mod process;
mod proxy;
mod report;
mod run;
mod scan;
mod server;
mod ws;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::{Parser, ValueEnum};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// `{ __typename }` without a token: the framework with no database work (for comparison).
    Anonymous,
    Baseline,
    /// `{ __typename }` with an admin's RS256 JWT (verified against a local key set).
    JwtBaseline,
    MyCredentials,
    Issue,
    Ws,
    Scan,
    /// In process: the baseline request with and without the document gate.
    Gate,
    /// The egress proxy against direct calls to one local upstream (issue 23).
    Proxy,
}

#[derive(Parser, Debug)]
#[command(name = "load", about = "Load benchmark for sesame-vault (see benches/load/ and BENCHMARKS.md)")]
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
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "anonymous,baseline,jwt-baseline,my-credentials,issue,ws,scan,gate"
    )]
    scenarios: Vec<Scenario>,
    /// Also run the HTTP scenarios on PostgreSQL: a server URL on which the
    /// tool may create (and drops) a database, e.g. postgres://postgres@127.0.0.1:5432/postgres.
    #[arg(long)]
    postgres: Option<String>,
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
    postgres: Option<String>,
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
            postgres: args.postgres,
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
    let outcome = runtime.block_on(run::run(&settings));
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
