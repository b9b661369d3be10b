//! The report: one table per kind of scenario, a warning when other
//! processes took the cores, and the targets (not in `--tiny` runs).

use crate::gate::GateResult;
use crate::http_load::LoadResult;
use crate::scan::{median, ScanResult};
use crate::ws::WsResult;

// Issue 25's targets (ratios to the authenticated baseline of the same server).
const TARGET_ISSUE_RATIO_SQLITE: f64 = 0.40;
const TARGET_ISSUE_RATIO_POSTGRES: f64 = 0.30;
const TARGET_ISSUE_P99_MS: f64 = 5.0;
const TARGET_ISSUE_CONNECTIONS: usize = 32;
const TARGET_MY_CREDENTIALS_RATIO: f64 = 0.50;
const TARGET_JWT_RATIO: f64 = 0.80;
const TARGET_GATE_SHARE: f64 = 0.05;
const TARGET_WS_SUBSCRIBERS: usize = 20_000;
const TARGET_WS_P99_MS: f64 = 1000.0;
const TARGET_WS_BYTES_PER_SUB: f64 = 20_000.0;
const TARGET_SCAN_ROWS: u64 = 1_000_000;
const TARGET_SCAN_MS: f64 = 50.0;

/// What the scenarios measured (those that ran).
pub(crate) struct Results {
    pub(crate) loads: Vec<LoadResult>,
    /// The HTTP scenarios on PostgreSQL (`--postgres`), each against its own baseline.
    pub(crate) pg_loads: Vec<LoadResult>,
    pub(crate) ws: Option<WsResult>,
    pub(crate) scan: Option<ScanResult>,
    pub(crate) gate: Option<GateResult>,
}

fn verdict(met: bool) -> &'static str {
    if met {
        "MET"
    } else {
        "MISSED"
    }
}

/// Prints the results; whether every request and delivery worked.
pub(crate) fn print_results(results: &Results, commit: &str) -> bool {
    println!();
    println!("== results (commit {commit}) ==");
    let mut ok = true;
    if !results.loads.is_empty() {
        ok &= print_loads(&results.loads);
    }
    if !results.pg_loads.is_empty() {
        println!();
        println!("PostgreSQL (ratios against the baseline on PostgreSQL):");
        ok &= print_loads(&results.pg_loads);
    }
    if let Some(g) = &results.gate {
        println!();
        print_gate(g, &results.loads);
    }
    if let Some(w) = &results.ws {
        ok &= print_ws(w);
    }
    if let Some(s) = &results.scan {
        print_scan(s);
    }
    ok
}

fn baseline(loads: &[LoadResult]) -> Option<&LoadResult> {
    loads.iter().find(|l| l.name.starts_with("baseline"))
}

fn baseline_rps(loads: &[LoadResult]) -> Option<f64> {
    baseline(loads).map(LoadResult::rps)
}

fn find<'a>(loads: &'a [LoadResult], prefix: &str) -> Option<&'a LoadResult> {
    loads.iter().find(|l| l.name.starts_with(prefix))
}

/// The HTTP baseline's server CPU per request, in µs.
fn cpu_per_request_us(l: &LoadResult) -> Option<f64> {
    (l.requests > 0).then(|| l.server_cpu / l.requests as f64 * 1e6)
}

/// What the gate adds, against the HTTP baseline's server CPU per request.
/// What the gate adds (`added_us`, per request) as a share of the HTTP
/// baseline's server CPU per request.
fn gate_share(added_us: f64, loads: &[LoadResult]) -> Option<f64> {
    baseline(loads).and_then(cpu_per_request_us).map(|cpu| added_us / cpu)
}

fn print_gate(g: &GateResult, loads: &[LoadResult]) {
    let share = |s: Option<f64>| {
        s.map(|s| format!("{:.1} % of the HTTP baseline's server CPU per request", s * 100.0))
            .unwrap_or_else(|| "no HTTP baseline in this run to compare with".into())
    };
    println!(
        "| document gate, in process (signed in, {} rounds of {}) | with | without | gate adds |",
        g.rounds, g.per_round
    );
    println!("|---|---:|---:|---|");
    println!(
        "| the same document (`{{ __typename }}`, cached) | {:.2} µs | {:.2} µs | {:.2} µs = {} |",
        g.gated_us,
        g.ungated_us,
        g.added_us(),
        share(gate_share(g.added_us(), loads))
    );
    println!(
        "| a new document each request | {:.2} µs | {:.2} µs | {:.2} µs = {} |",
        g.cold_gated_us,
        g.cold_ungated_us,
        g.cold_added_us(),
        share(gate_share(g.cold_added_us(), loads))
    );
}

/// The HTTP scenarios' table; false if any request failed.
fn print_loads(loads: &[LoadResult]) -> bool {
    let baseline_rps = baseline_rps(loads);
    let mut ok = true;
    println!(
        "| scenario | conns | requests | req/s | p50 ms | p99 ms | max ms | vs baseline | server CPU | client CPU | server CPU/req |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for l in loads {
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
    for l in loads {
        let threads: Vec<String> =
            l.server_threads.iter().map(|(name, secs)| format!("{name} {:.0}%", secs / l.window * 100.0)).collect();
        println!(
            "  {}: server threads {}; other processes {:.0}%",
            l.name,
            threads.join(", "),
            l.other_cpu / l.window * 100.0
        );
    }
    ok
}

/// The WebSocket fan-out's table; false if a subscriber failed or missed an event.
fn print_ws(w: &WsResult) -> bool {
    let mut ok = true;
    println!();
    println!("| WebSocket fan-out | value |");
    println!("|---|---:|");
    println!("| subscribers connected | {} of {} |", w.connected, w.subscribers);
    println!("| connect + subscribe time | {:.1} s ({:.0}/s) |", w.connect_secs, w.connected as f64 / w.connect_secs);
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
    ok
}

fn print_scan(s: &ScanResult) {
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

/// Anything else running on the machine takes cores from the server and
/// this tool: say so, so that such numbers are not taken as the server's.
pub(crate) fn warn_if_busy(results: &Results) {
    let ws = &results.ws;
    let mut busy: Vec<String> = results
        .loads
        .iter()
        .chain(&results.pg_loads)
        .filter(|l| l.other_cpu / l.window > 0.10)
        .map(|l| format!("{} ({:.0}% of a core)", l.name, l.other_cpu / l.window * 100.0))
        .collect();
    if let Some(w) = ws {
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
}

pub(crate) fn print_targets(results: &Results, requested_subscribers: usize) {
    let (loads, ws, scan) = (&results.loads, &results.ws, &results.scan);
    println!("== targets ==");
    issue_target(loads, TARGET_ISSUE_RATIO_SQLITE, "SQLite");
    issue_target(&results.pg_loads, TARGET_ISSUE_RATIO_POSTGRES, "PostgreSQL");
    for (set, db) in [(loads, "SQLite"), (&results.pg_loads, "PostgreSQL")] {
        if let (Some(base), Some(mine)) = (baseline_rps(set), find(set, "myCredentials")) {
            let ratio = mine.rps() / base;
            println!(
                "myCredentials >= {:.0}% of baseline on {db}: {} ({:.0}%, {})",
                TARGET_MY_CREDENTIALS_RATIO * 100.0,
                verdict(ratio >= TARGET_MY_CREDENTIALS_RATIO),
                ratio * 100.0,
                mine.name
            );
        }
    }
    for (set, db) in [(loads, "SQLite"), (&results.pg_loads, "PostgreSQL")] {
        if let (Some(base), Some(jwt)) = (baseline_rps(set), find(set, "JWT baseline")) {
            let ratio = jwt.rps() / base;
            println!(
                "JWT baseline >= {:.0}% of the sv_ token baseline on {db}: {} ({:.0}%)",
                TARGET_JWT_RATIO * 100.0,
                verdict(ratio >= TARGET_JWT_RATIO),
                ratio * 100.0
            );
        }
    }
    if let Some(g) = &results.gate {
        if let (Some(hot), Some(cold)) = (gate_share(g.added_us(), loads), gate_share(g.cold_added_us(), loads)) {
            println!(
                "document gate adds <= {:.0}% to the baseline: {} ({:.1}% of its server CPU per request with the \
                 baseline's document; {:.1}% with a new document each request)",
                TARGET_GATE_SHARE * 100.0,
                verdict(hot <= TARGET_GATE_SHARE),
                hot * 100.0,
                cold * 100.0
            );
        }
    }
    if let Some(w) = ws {
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
    if let Some(s) = scan {
        let m = median(&s.idle_runs_ms);
        let met = s.rows >= TARGET_SCAN_ROWS && m < TARGET_SCAN_MS;
        println!(
            "scan with nothing due < {TARGET_SCAN_MS} ms at {TARGET_SCAN_ROWS} rows: {} (median {:.3} ms at {} rows)",
            verdict(met),
            m,
            s.rows
        );
    }
}

/// `issueTaskCredentials` against its baseline and the p99 bound.
fn issue_target(loads: &[LoadResult], target: f64, db: &str) {
    let (Some(base), Some(issue)) = (baseline_rps(loads), find(loads, "issueTaskCredentials")) else { return };
    let ratio = issue.rps() / base;
    let met = ratio >= target && issue.ms(0.99) < TARGET_ISSUE_P99_MS;
    let note = if issue.connections == TARGET_ISSUE_CONNECTIONS {
        String::new()
    } else {
        format!(" (measured at {} connections, target is at {TARGET_ISSUE_CONNECTIONS})", issue.connections)
    };
    println!(
        "issueTaskCredentials >= {:.0}% of baseline throughput with p99 < {TARGET_ISSUE_P99_MS} ms on {db}: {} \
         ({:.0}% of baseline, p99 {:.2} ms){note}",
        target * 100.0,
        verdict(met),
        ratio * 100.0,
        issue.ms(0.99)
    );
}
