//! WebSocket fan-out: N `credentialEvents` subscribers, an event, the time
//! it takes to reach each.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use hyper::header::HeaderValue;
use serde_json::json;
use sesame_test_support::Client;
use sesame_vault::domain::Provider;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::http_load::new_histogram;
use crate::process::{cpu_seconds, machine_busy_seconds, rss_kib, threads, PerfRecording};
use crate::server::{Fixture, Server, ANTHROPIC_KEY, GEMINI_KEY, GITHUB_KEY, OPENAI_KEY};
use crate::Settings;

/// How long one WebSocket step (connect, ack, pong) may take.
const WS_STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// WebSocket handshakes in flight at once while subscribers connect.
const WS_CONNECT_CONCURRENCY: usize = 256;
/// Events measured after the warm-up event (each is one `setApiKey`).
const WS_ROUNDS: usize = 3;
/// Each round's event is a new API key for a different provider, so a
/// subscriber can tell the rounds apart by the event's provider.
const ROUND_PROVIDERS: [(Provider, &str); WS_ROUNDS + 1] = [
    (Provider::Openai, OPENAI_KEY),
    (Provider::Google, GEMINI_KEY),
    (Provider::Github, GITHUB_KEY),
    (Provider::Anthropic, ANTHROPIC_KEY),
];

struct WsShared {
    pub(crate) ready: AtomicUsize,
    pub(crate) failed: AtomicUsize,
    pub(crate) first_error: Mutex<Option<String>>,
    pub(crate) deliveries: mpsc::UnboundedSender<(usize, usize, Instant)>,
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

pub(crate) struct RoundResult {
    pub(crate) delivered: usize,
    pub(crate) missed: usize,
    pub(crate) hist: Histogram<u64>,
    /// CPU seconds from the trigger to the last delivery.
    pub(crate) server_cpu: f64,
    pub(crate) client_cpu: f64,
    pub(crate) other_cpu: f64,
}

pub(crate) struct WsResult {
    pub(crate) subscribers: usize,
    pub(crate) connected: usize,
    pub(crate) connect_secs: f64,
    pub(crate) rss_before_kib: u64,
    pub(crate) rss_subscribed_kib: u64,
    pub(crate) rss_delivered_kib: u64,
    pub(crate) client_rss_delta_kib: u64,
    pub(crate) server_threads: u64,
    pub(crate) warmup: RoundResult,
    pub(crate) rounds: Vec<RoundResult>,
    pub(crate) failed: usize,
    pub(crate) first_error: Option<String>,
    pub(crate) spread_ips: usize,
}

impl WsResult {
    pub(crate) fn bytes_per_sub(&self, after_kib: u64) -> f64 {
        after_kib.saturating_sub(self.rss_before_kib) as f64 * 1024.0 / self.connected.max(1) as f64
    }
    /// The worst measured round's p99, in ms.
    pub(crate) fn worst_p99_ms(&self) -> f64 {
        self.rounds.iter().map(|r| r.hist.value_at_quantile(0.99)).max().unwrap_or(0) as f64 / 1000.0
    }
    pub(crate) fn missed(&self) -> usize {
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
    ROUND_PROVIDERS.iter().position(|(p, _)| text.contains(&format!("\"provider\":\"{p}\"")))
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

pub(crate) async fn ws_fanout(
    server: &mut Server,
    settings: &Settings,
    client: &Client,
    fixture: &Fixture,
) -> Result<WsResult> {
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
        let (provider, key) = ROUND_PROVIDERS[round];
        client.set_api_key(&fixture.events_token, provider, key)
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
