//! The run, step by step: fit the subscribers to the open-file limit, say
//! what runs where, the scenarios against a server, the in-process scan,
//! then the report.

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::http_load::{body_of, run_load, LoadResult, LoadSpec};
use crate::process::{commit_summary, machine_summary, raise_nofile};
use crate::report::{self, Results};
use crate::scan::{median, scan_bench, ScanResult};
use crate::server::{setup, Fixture, Server};
use crate::ws::{ws_fanout, WsResult};
use crate::{Scenario, Settings};

/// File descriptors each process keeps for things other than subscriber
/// sockets (database files, listener, epoll, HTTP connections, stdio).
const FD_RESERVE: u64 = 100;

/// The HTTP scenarios, in the order they run.
const HTTP_SCENARIOS: [Scenario; 5] =
    [Scenario::Anonymous, Scenario::Baseline, Scenario::JwtBaseline, Scenario::MyCredentials, Scenario::Issue];

/// Which database a server of the run stores in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Database {
    Sqlite,
    Postgres,
}

pub(crate) async fn run(settings: &Settings) -> Result<bool> {
    let requested_subscribers = settings.subscribers;
    let (settings, nofile) = fit_to_open_file_limit(settings)?;
    let settings = &settings;
    // Read once, at the start: the commit may move while the run goes on.
    let commit = commit_summary();
    print_header(settings, &commit, nofile, requested_subscribers);

    let needs_server =
        settings.scenarios.iter().any(|s| !matches!(s, Scenario::Scan | Scenario::Proxy | Scenario::Gate));
    // An RSA key and its key set only for the scenario that signs in with them.
    let idp = match settings.wants(Scenario::JwtBaseline) {
        true => Some(crate::jwt::Idp::start().await?),
        false => None,
    };
    let idp = idp.as_ref();
    let (loads, ws) =
        if needs_server { server_scenarios(settings, idp, Database::Sqlite).await? } else { (Vec::new(), None) };
    let pg_loads = match &settings.postgres {
        Some(admin_url) if settings.scenarios.iter().any(|s| HTTP_SCENARIOS.contains(s)) => {
            let db = crate::postgres::TempDatabase::create(admin_url).await?;
            println!("PostgreSQL: a fresh database on the --postgres server");
            let extra = [("DATABASE_URL", db.url.as_str())];
            let (loads, _) = server_scenarios_with(settings, idp, Database::Postgres, &extra).await?;
            loads
        }
        _ => Vec::new(),
    };
    let scan = if settings.wants(Scenario::Scan) { Some(scan_scenario(settings).await?) } else { None };
    let gate = if settings.wants(Scenario::Gate) {
        println!("Document gate, in process (the baseline request with and without it):");
        let result = crate::gate::gate_bench(settings).await?;
        println!(
            "    {} rounds of {}: {:.2} µs per request with the gate, {:.2} µs without; a new document each time: \
             {:.2} / {:.2} µs",
            result.rounds,
            result.per_round,
            result.gated_us,
            result.ungated_us,
            result.cold_gated_us,
            result.cold_ungated_us
        );
        Some(result)
    } else {
        None
    };
    // Its own server (with the proxy on) and its own lines in the report.
    let proxy_ok = if settings.wants(Scenario::Proxy) { crate::proxy::proxy_scenario(settings).await? } else { true };

    let results = Results { loads, pg_loads, ws, scan, gate };
    let ok = report::print_results(&results, &commit) && proxy_ok;
    report::warn_if_busy(&results);
    println!();
    if settings.tiny {
        println!("targets: not evaluated in --tiny mode");
        return Ok(ok);
    }
    report::print_targets(&results, requested_subscribers);
    Ok(ok)
}

/// Raises the open-file limit and, where it stays too low for every
/// subscriber, runs as many as it allows. The settings to run with and the
/// limit.
fn fit_to_open_file_limit(settings: &Settings) -> Result<(Settings, u64)> {
    let nofile = raise_nofile(if settings.wants(Scenario::Ws) { settings.subscribers } else { 0 })?;
    let mut settings = settings.clone();
    // Both ends of every subscriber are in a process of their own (the
    // server, this tool), each bound by the same limit; the server also
    // keeps a quarter of its descriptors (64 to 4,096) out of its
    // connection cap (`sesame_vault::edge::connection_caps`) and would
    // refuse connections past the cap.
    let server_reserve = (nofile / 4).clamp(64, 4096);
    let fits = nofile.saturating_sub(server_reserve + FD_RESERVE);
    if settings.wants(Scenario::Ws) && settings.subscribers as u64 > fits {
        if fits < FD_RESERVE {
            bail!(
                "the open-file limit is {nofile}, too low for any WebSocket subscribers: raise `ulimit -n` or \
                 leave out the ws scenario"
            );
        }
        settings.subscribers = fits as usize;
    }
    Ok((settings, nofile))
}

fn print_header(settings: &Settings, commit: &str, nofile: u64, requested_subscribers: usize) {
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
             privileges this machine does not grant); the server and this tool each hold one socket per \
             subscriber, and the server keeps a quarter of its descriptors (at most 4,096) out of its connection \
             cap: running {} subscribers instead of {requested_subscribers}",
            settings.subscribers
        );
    }
}

/// Starts the server, creates the fixture, runs the HTTP scenarios asked
/// for and then the WebSocket fan-out; the server stops at the end.
async fn server_scenarios(
    settings: &Settings,
    idp: Option<&crate::jwt::Idp>,
    database: Database,
) -> Result<(Vec<LoadResult>, Option<WsResult>)> {
    server_scenarios_with(settings, idp, database, &[]).await
}

/// [`server_scenarios`] with more server settings (the database URL); the
/// WebSocket fan-out runs on SQLite only.
async fn server_scenarios_with(
    settings: &Settings,
    idp: Option<&crate::jwt::Idp>,
    database: Database,
    extra: &[(&str, &str)],
) -> Result<(Vec<LoadResult>, Option<WsResult>)> {
    let jwt_settings = idp.map(crate::jwt::Idp::settings).unwrap_or_default();
    let env: Vec<(&str, &str)> =
        jwt_settings.iter().map(|(k, v)| (*k, v.as_str())).chain(extra.iter().copied()).collect();
    let mut server = Server::start_with(&settings.server_bin, &env)?;
    println!("server pid {} at {} (data in {})", server.pid, server.url, server.dir.path().display());
    let client = server.client()?;
    let mut fixture = setup(&server, &client).await.context("creating the benchmark's users and credentials")?;
    if let Some(idp) = idp {
        fixture.jwt_admin_token = idp.admin_token()?;
        // The JWT admin's first request creates them (as an IdP's first sign-in does).
        client.ok(&fixture.jwt_admin_token, "{ __typename }", json!({})).await.context("the first JWT sign-in")?;
    }
    println!(
        "setup: a user with {} credentials (every slot the API allows), a task user with an API key, a runner token",
        fixture.creds_count
    );
    println!("HTTP scenarios ({} connections, closed loop):", settings.connections);
    let mut loads = Vec::new();
    for scenario in HTTP_SCENARIOS.into_iter().filter(|s| settings.wants(*s)) {
        let mut spec = http_spec(scenario, &server, &fixture);
        if database == Database::Postgres {
            spec.name.push_str(" [PostgreSQL]");
        }
        loads.push(run_load(&server, settings, spec).await?);
        server.alive()?;
    }
    let mut ws = None;
    if settings.wants(Scenario::Ws) && database == Database::Sqlite {
        println!("WebSocket fan-out ({} admin subscribers to credentialEvents):", settings.subscribers);
        let result = ws_fanout(&mut server, settings, &client, &fixture).await?;
        println!(
            "    {} of {} subscribed in {:.1} s{}; server RSS {} KiB before, {} KiB subscribed, {} KiB after \
             first delivery ({} threads)",
            result.connected,
            result.subscribers,
            result.connect_secs,
            if result.spread_ips > 1 { format!(" from {} source addresses", result.spread_ips) } else { String::new() },
            result.rss_before_kib,
            result.rss_subscribed_kib,
            result.rss_delivered_kib,
            result.server_threads
        );
        ws = Some(result);
    }
    server.alive()?;
    Ok((loads, ws))
}

/// What one HTTP scenario sends, as whom, and what a good answer holds.
fn http_spec(scenario: Scenario, server: &Server, fixture: &Fixture) -> LoadSpec {
    match scenario {
        Scenario::Anonymous => LoadSpec {
            name: "anonymous { __typename } (no DB)".into(),
            token: String::new(),
            body: Box::new(|_, _| body_of(json!({ "query": "{ __typename }" }))),
            expect: "__typename".into(),
        },
        Scenario::Baseline => LoadSpec {
            name: "baseline { __typename }".into(),
            token: server.admin_token.clone(),
            body: Box::new(|_, _| body_of(json!({ "query": "{ __typename }" }))),
            expect: "__typename".into(),
        },
        Scenario::JwtBaseline => LoadSpec {
            name: "JWT baseline { __typename }".into(),
            token: fixture.jwt_admin_token.clone(),
            body: Box::new(|_, _| body_of(json!({ "query": "{ __typename }" }))),
            expect: "__typename".into(),
        },
        Scenario::MyCredentials => {
            let query = "{ myCredentials { id kind provider agent status statusMessage hint hasRefreshToken \
                         expiresAt lastUsedAt createdAt updatedAt } }";
            let body = body_of(json!({ "query": query }));
            LoadSpec {
                name: format!("myCredentials ({} credentials)", fixture.creds_count),
                token: fixture.creds_token.clone(),
                body: Box::new(move |_, _| body.clone()),
                expect: "\"hint\"".into(),
            }
        }
        Scenario::Issue => {
            let user = fixture.issue_user_id.clone();
            let query = "mutation($u: ID!, $t: String!) { issueTaskCredentials(userId: $u, agent: CLAUDE_CODE, \
                         taskId: $t) { source credentialId provider expiresAt env { name value } \
                         files { path mode content } } }";
            let run_id = std::process::id();
            LoadSpec {
                name: "issueTaskCredentials".into(),
                token: fixture.runner_token.clone(),
                body: Box::new(move |worker, seq| {
                    body_of(json!({ "query": query, "variables": {
                        "u": user, "t": format!("bench-{run_id}-{worker}-{seq}")
                    } }))
                }),
                expect: "USER_API_KEY".into(),
            }
        }
        Scenario::Ws | Scenario::Scan | Scenario::Proxy | Scenario::Gate => {
            unreachable!("not an HTTP scenario: {scenario:?}")
        }
    }
}

async fn scan_scenario(settings: &Settings) -> Result<ScanResult> {
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
    Ok(result)
}
