//! The `proxy` scenario (issue 23): one local upstream (a stand-in for a
//! provider's API, serving HTTPS with a test certificate as the providers
//! do) called directly and through the egress proxy, side by side in one
//! run:
//!
//! - latency p50/p99 and requests per second (closed loop, `--connections`
//!   workers, one keep-alive connection each). Direct is TLS to the
//!   upstream, as a CLI talks to its provider; through the proxy it is
//!   CONNECT, TLS with the proxy's CA, HTTP/1.1 inside, and the proxy's own
//!   TLS connection (pooled) to the upstream;
//! - the time to the first byte of a streamed (SSE) answer;
//! - the server's memory per stream with many streams held open through the
//!   proxy at once (VmRSS before and with them open);
//! - CPU per MB: a large SSE answer through the proxy, the server's CPU
//!   seconds per MB (and this tool's, direct and proxied).
//!
//! Options (environment, read here): `PROXY_BENCH_UPSTREAM=http` serves the
//! upstream in plain HTTP (the comparison before the upstream spoke TLS:
//! direct then skips TLS altogether); `PROXY_BENCH_STREAMS` (default 1000,
//! 50 with `--tiny`) streams held open; `PROXY_BENCH_MB` (default 256, 8
//! with `--tiny`) MB per route for the CPU measurement.
//!
//! It issues a Claude Code task with `delivery: PROXY` for a person with an
//! Anthropic API key and sends its placeholder, so it needs the store side
//! of proxy delivery; it is not in the default scenario list
//! (`--scenarios proxy`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;

use crate::http_load::new_histogram;
use crate::process::{cpu_seconds, machine_busy_seconds, raise_nofile, rss_kib, threads, PerfRecording};
use crate::server::{Server, ANTHROPIC_KEY};
use crate::Settings;

const HOST: &str = "api.anthropic.com";
/// Sequential streamed requests for the first-byte measurement.
const STREAMS: usize = 200;
/// Streams opened at once while filling the held set.
const OPENING: usize = 32;

type UpBody = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

/// What the environment asks of this scenario (see the module doc).
struct Options {
    tls: bool,
    held_streams: usize,
    megabytes: usize,
}

impl Options {
    fn from_env(settings: &Settings) -> Result<Options> {
        let number = |name: &str, default: usize| -> Result<usize> {
            match std::env::var(name) {
                Ok(v) => v.trim().parse().with_context(|| format!("{name}={v} is not a number")),
                Err(_) => Ok(default),
            }
        };
        let tls = match std::env::var("PROXY_BENCH_UPSTREAM").as_deref() {
            Err(_) | Ok("https") => true,
            Ok("http") => false,
            Ok(other) => bail!("PROXY_BENCH_UPSTREAM={other}: http or https"),
        };
        Ok(Options {
            tls,
            held_streams: number("PROXY_BENCH_STREAMS", if settings.tiny { 50 } else { 1000 })?.max(1),
            megabytes: number("PROXY_BENCH_MB", if settings.tiny { 8 } else { 256 })?.max(1),
        })
    }
}

/// The upstream's test certificate: a CA (its PEM for the proxy and the
/// direct client) and a leaf for the provider's host and 127.0.0.1.
struct UpstreamTls {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    ca_pem: String,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl UpstreamTls {
    fn generate() -> Result<UpstreamTls> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "load bench upstream CA");
        let ca = ca_params.self_signed(&ca_key)?;
        let leaf_key = KeyPair::generate()?;
        let leaf = CertificateParams::new(vec![HOST.to_owned(), "127.0.0.1".to_owned()])?
            .signed_by(&leaf_key, &ca, &ca_key)?;
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
        let mut server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone())?;
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(UpstreamTls { server: Arc::new(server), client: Arc::new(client), ca_pem: ca.pem() })
    }
}

/// An SSE event of about 1 KiB, 64 of them a chunk (the CPU measurement).
fn big_chunk() -> Bytes {
    let text = "x".repeat(960);
    let event = format!(
        "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"delta\":{{\"type\":\"text_delta\",\"text\":\"{text}\"}}}}\n\n"
    );
    Bytes::from(event.repeat(64))
}

/// The upstream's answers: `/stream` SSE (the first event at once, the
/// rest after 5 ms), `/hold` SSE whose second event waits for `release`,
/// `/big?mb=N` N MiB of SSE events, anything else a small JSON message with
/// usage.
fn answer(path: &str, query: Option<&str>, release: tokio::sync::watch::Receiver<bool>) -> (UpBody, &'static str) {
    const START: &[u8] = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n";
    const DELTA: &[u8] =
        b"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":20}}\n\n";
    match path {
        "/stream" => {
            let events = async_stream::stream! {
                yield Ok::<_, Infallible>(Frame::data(Bytes::from_static(START)));
                tokio::time::sleep(Duration::from_millis(5)).await;
                yield Ok(Frame::data(Bytes::from_static(DELTA)));
            };
            (StreamBody::new(events).boxed_unsync(), "text/event-stream")
        }
        "/hold" => {
            let mut release = release;
            let events = async_stream::stream! {
                yield Ok::<_, Infallible>(Frame::data(Bytes::from_static(START)));
                let _ = release.wait_for(|r| *r).await;
                yield Ok(Frame::data(Bytes::from_static(DELTA)));
            };
            (StreamBody::new(events).boxed_unsync(), "text/event-stream")
        }
        "/big" => {
            let mb: usize = query.and_then(|q| q.strip_prefix("mb=")).and_then(|v| v.parse().ok()).unwrap_or(1);
            let chunk = big_chunk();
            let n = mb * 1024 * 1024 / chunk.len();
            let events = async_stream::stream! {
                yield Ok::<_, Infallible>(Frame::data(Bytes::from_static(START)));
                for _ in 0..n {
                    yield Ok(Frame::data(chunk.clone()));
                }
                yield Ok(Frame::data(Bytes::from_static(DELTA)));
            };
            (StreamBody::new(events).boxed_unsync(), "text/event-stream")
        }
        _ => (
            Full::new(Bytes::from_static(
                br#"{"type":"message","content":[{"type":"text","text":"ok"}],"usage":{"input_tokens":10,"output_tokens":2}}"#,
            ))
            .boxed_unsync(),
            "application/json",
        ),
    }
}

async fn serve_upstream<S>(io: S, release: tokio::sync::watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let release = release.clone();
        async move {
            let (parts, body) = req.into_parts();
            let _ = body.collect().await;
            let (body, content_type) = answer(parts.uri.path(), parts.uri.query(), release);
            let mut res = hyper::Response::new(body);
            res.headers_mut().insert(hyper::header::CONTENT_TYPE, content_type.parse().expect("a header value"));
            Ok::<_, Infallible>(res)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), service).await;
}

/// The upstream on 127.0.0.1 (TLS with `tls`); its address.
async fn upstream(
    tls: Option<Arc<rustls::ServerConfig>>,
    release: tokio::sync::watch::Receiver<bool>,
) -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let (tls, release) = (tls.clone(), release.clone());
            tokio::spawn(async move {
                match tls {
                    Some(config) => {
                        if let Ok(stream) = tokio_rustls::TlsAcceptor::from(config).accept(stream).await {
                            serve_upstream(stream, release).await;
                        }
                    }
                    None => serve_upstream(stream, release).await,
                }
            });
        }
    });
    Ok(addr)
}

/// How a worker reaches the upstream.
#[derive(Clone)]
enum Route {
    /// The upstream's address, TLS to it (unless plain).
    Direct(SocketAddr, Option<Arc<rustls::ClientConfig>>),
    /// The proxy's address, its CA, the placeholder to send.
    Proxy(SocketAddr, Arc<rustls::ClientConfig>, String),
}

impl Route {
    fn name(&self) -> &'static str {
        match self {
            Route::Direct(..) => "direct",
            Route::Proxy(..) => "proxy",
        }
    }

    fn key(&self) -> &str {
        match self {
            Route::Direct(..) => "direct-key",
            Route::Proxy(_, _, placeholder) => placeholder,
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>> {
        let name = rustls::pki_types::ServerName::try_from(HOST)?;
        match self {
            Route::Direct(addr, None) => {
                let stream = TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                handshake(stream).await
            }
            Route::Direct(addr, Some(tls)) => {
                let stream = TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                let tls = tokio_rustls::TlsConnector::from(tls.clone()).connect(name, stream).await?;
                handshake(tls).await
            }
            Route::Proxy(addr, tls, _) => {
                let mut stream = TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                stream.write_all(format!("CONNECT {HOST}:443 HTTP/1.1\r\nHost: {HOST}:443\r\n\r\n").as_bytes()).await?;
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let mut b = [0u8; 1];
                    if stream.read(&mut b).await? == 0 {
                        bail!("the proxy closed the connection during CONNECT");
                    }
                    head.push(b[0]);
                }
                if !head.starts_with(b"HTTP/1.1 200") {
                    bail!("CONNECT refused: {}", String::from_utf8_lossy(&head));
                }
                let tls = tokio_rustls::TlsConnector::from(tls.clone()).connect(name, stream).await?;
                handshake(tls).await
            }
        }
    }
}

async fn handshake<S>(io: S) -> Result<SendRequest<Full<Bytes>>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn request(route: &Route, path: &str) -> hyper::Request<Full<Bytes>> {
    hyper::Request::post(path)
        .header(hyper::header::HOST, HOST)
        .header("x-api-key", route.key())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(br#"{"model":"bench","messages":[{"role":"user","content":"hi"}]}"#)))
        .expect("a valid request")
}

/// CPU seconds over a measured window: the server, this tool, everything
/// else on the machine (other builds and benchmarks).
struct Cpu {
    server0: f64,
    client0: f64,
    machine0: f64,
}

#[derive(Clone, Copy)]
struct CpuUsed {
    server: f64,
    client: f64,
    other: f64,
}

impl Cpu {
    fn start(pid: &str) -> Result<Cpu> {
        Ok(Cpu { server0: cpu_seconds(pid)?, client0: cpu_seconds("self")?, machine0: machine_busy_seconds() })
    }

    fn used(&self, pid: &str) -> Result<CpuUsed> {
        let server = cpu_seconds(pid)? - self.server0;
        let client = cpu_seconds("self")? - self.client0;
        let other = (machine_busy_seconds() - self.machine0 - server - client).max(0.0);
        Ok(CpuUsed { server, client, other })
    }
}

struct Run {
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    hist: Histogram<u64>,
    window: f64,
    cpu: CpuUsed,
}

/// Closed loop for `duration` after `warmup`: each worker one connection.
async fn closed_loop(route: &Route, settings: &Settings, server: &Server) -> Result<Run> {
    let from = Instant::now() + settings.warmup;
    let to = from + settings.duration;
    let mut workers = Vec::new();
    for _ in 0..settings.connections {
        let route = route.clone();
        workers.push(tokio::spawn(async move {
            let mut hist = new_histogram();
            let (mut errors, mut first_error) = (0u64, None);
            let mut sender = match route.connect().await {
                Ok(s) => s,
                Err(e) => return (hist, 1, Some(format!("{e:#}"))),
            };
            while Instant::now() < to {
                let start = Instant::now();
                let result = async {
                    sender.ready().await?;
                    let res = sender.send_request(request(&route, "/v1/messages")).await?;
                    let status = res.status();
                    res.into_body().collect().await?;
                    Ok::<_, hyper::Error>(status)
                }
                .await;
                let end = Instant::now();
                match result {
                    Ok(status) if status.is_success() => {
                        if start >= from && end <= to {
                            hist.saturating_record(end.duration_since(start).as_micros() as u64);
                        }
                    }
                    Ok(status) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("HTTP {status}"));
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| e.to_string());
                        match route.connect().await {
                            Ok(s) => sender = s,
                            Err(_) => break,
                        }
                    }
                }
            }
            (hist, errors, first_error)
        }));
    }
    tokio::time::sleep_until(from.into()).await;
    let cpu = Cpu::start(&server.pid)?;
    let perf = PerfRecording::start(
        settings.perf.as_deref(),
        server.process.child.id(),
        &format!("proxy-{}", route.name()),
        settings.duration.as_secs_f64(),
    );
    tokio::time::sleep_until(to.into()).await;
    let cpu = cpu.used(&server.pid)?;
    let mut run = Run {
        requests: 0,
        errors: 0,
        first_error: None,
        hist: new_histogram(),
        window: settings.duration.as_secs_f64(),
        cpu,
    };
    for w in workers {
        if let Ok((hist, errors, first_error)) = w.await {
            run.requests += hist.len();
            run.errors += errors;
            if run.first_error.is_none() {
                run.first_error = first_error;
            }
            let _ = run.hist.add(&hist);
        }
    }
    perf.finish();
    Ok(run)
}

/// Time to the first body byte of `/stream`, one request at a time.
async fn first_bytes(route: &Route) -> Result<Histogram<u64>> {
    let mut hist = new_histogram();
    let mut sender = route.connect().await?;
    for _ in 0..STREAMS {
        sender.ready().await?;
        let start = Instant::now();
        let res = sender.send_request(request(route, "/stream")).await?;
        if !res.status().is_success() {
            bail!("{}: /stream answered {}", route.name(), res.status());
        }
        let mut body = res.into_body();
        let first = body.frame().await.ok_or_else(|| anyhow!("no first frame"))??;
        hist.saturating_record(start.elapsed().as_micros() as u64);
        if first.data_ref().is_none_or(|d| !d.starts_with(b"event: message_start")) {
            bail!("{}: the first frame is not the first event", route.name());
        }
        while body.frame().await.is_some() {}
    }
    Ok(hist)
}

/// One stream held open: its connection and its body after the first event.
type Held = (SendRequest<Full<Bytes>>, hyper::body::Incoming);

async fn hold_one(route: &Route) -> Result<Held> {
    let mut sender = route.connect().await?;
    sender.ready().await?;
    let res = sender.send_request(request(route, "/hold")).await?;
    if !res.status().is_success() {
        bail!("/hold answered {}", res.status());
    }
    let mut body = res.into_body();
    let first = body.frame().await.ok_or_else(|| anyhow!("no first frame"))??;
    if first.data_ref().is_none_or(|d| !d.starts_with(b"event: message_start")) {
        bail!("the first frame of /hold is not the first event");
    }
    Ok((sender, body))
}

struct Memory {
    streams: usize,
    before_kib: u64,
    held_kib: u64,
    after_kib: u64,
    threads: u64,
    open_secs: f64,
}

/// `n` streams through the proxy, each on its own connection, held open
/// after their first event; the server's VmRSS before, with them, after.
async fn memory_per_stream(
    route: &Route,
    server: &Server,
    n: usize,
    release: &tokio::sync::watch::Sender<bool>,
) -> Result<Memory> {
    release.send_replace(false);
    let before_kib = rss_kib(&server.pid)?;
    let started = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(OPENING));
    let opening: Vec<_> = (0..n)
        .map(|_| {
            let (route, gate) = (route.clone(), gate.clone());
            tokio::spawn(async move {
                let _turn = gate.acquire_owned().await;
                hold_one(&route).await
            })
        })
        .collect();
    let mut held = Vec::with_capacity(n);
    for o in opening {
        held.push(o.await.map_err(|e| anyhow!("a stream task panicked: {e}"))?.context("holding a stream open")?);
    }
    let open_secs = started.elapsed().as_secs_f64();
    // The server has settled: every stream has passed its first event.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held_kib = rss_kib(&server.pid)?;
    let threads = threads(&server.pid);
    release.send_replace(true);
    for (sender, mut body) in held {
        while let Some(frame) = body.frame().await {
            frame?;
        }
        drop(sender);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_kib = rss_kib(&server.pid)?;
    Ok(Memory { streams: n, before_kib, held_kib, after_kib, threads, open_secs })
}

struct Transfer {
    bytes: u64,
    secs: f64,
    cpu: CpuUsed,
}

/// `mb` MiB of SSE through `route` on one connection: bytes, time, CPU.
async fn transfer(route: &Route, server: &Server, mb: usize) -> Result<Transfer> {
    let mut sender = route.connect().await?;
    sender.ready().await?;
    let cpu = Cpu::start(&server.pid)?;
    let started = Instant::now();
    let res = sender.send_request(request(route, &format!("/big?mb={mb}"))).await?;
    if !res.status().is_success() {
        bail!("{}: /big answered {}", route.name(), res.status());
    }
    let mut body = res.into_body();
    let mut bytes = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(d) = frame?.data_ref() {
            bytes += d.len() as u64;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(Transfer { bytes, secs, cpu: cpu.used(&server.pid)? })
}

/// A person with an Anthropic API key and a Claude Code task issued to the
/// proxy: the placeholder it holds.
async fn placeholder(server: &Server) -> Result<String> {
    let client = server.client()?;
    let admin = server.admin_token.as_str();
    let (user, token) = client.create_user(admin, "proxy@bench.local").await?;
    client.set_api_key(&token, sesame_vault::domain::Provider::Anthropic, ANTHROPIC_KEY).await?;
    let runner = server.runner_token()?;
    let data = client
        .ok(
            &runner,
            "mutation($u: ID!) { issueTaskCredentials(userId: $u, agent: CLAUDE_CODE, provider: ANTHROPIC, \
             taskId: \"bench-proxy\", delivery: PROXY) { env { name value } } }",
            json!({ "u": user }),
        )
        .await
        .context("issuing a task with delivery: PROXY")?;
    let env = data["issueTaskCredentials"]["env"].as_array().cloned().unwrap_or_default();
    env.iter()
        .find(|e| e["name"] == "ANTHROPIC_API_KEY")
        .and_then(|e| e["value"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("the proxy delivery holds no ANTHROPIC_API_KEY"))
}

fn tls_trusting(ca_pem: &Path) -> Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(ca_pem).with_context(|| format!("reading {}", ca_pem.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from_pem_slice(&pem)?)?;
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn other(cpu: &CpuUsed, secs: f64) -> String {
    format!("other processes {:.0}% of a core", cpu.other / secs.max(1e-9) * 100.0)
}

/// Runs the scenario on its own server; whether everything worked.
pub(crate) async fn proxy_scenario(settings: &Settings) -> Result<bool> {
    let options = Options::from_env(settings)?;
    // Both ends of every held stream are in this tool (client, upstream)
    // and in the server (task side, upstream side); the server inherits it.
    let nofile = raise_nofile(options.held_streams * 2)?;
    let tls = if options.tls { Some(UpstreamTls::generate()?) } else { None };
    let (release, released) = tokio::sync::watch::channel(false);
    let up = upstream(tls.as_ref().map(|t| t.server.clone()), released).await?;
    let ca_file = tempfile::NamedTempFile::new()?;
    let mut env: Vec<(&str, String)> = vec![
        ("SESAME_PROXY__LISTEN", "127.0.0.1:0".into()),
        ("SESAME_PROXY__MAX_REQUESTS_PER_TASK", "1000000".into()),
        ("SESAME_PROXY__MAX_CONNECTIONS_PER_TASK", "1000000".into()),
        ("SESAME_PROXY__MAX_CONNECTIONS", (options.held_streams + settings.connections + 64).to_string()),
    ];
    match &tls {
        Some(tls) => {
            std::fs::write(ca_file.path(), &tls.ca_pem)?;
            env.push(("SESAME_PROXY__UPSTREAMS", format!("{HOST}=https://{up}")));
            env.push(("SESAME_PROXY__UPSTREAM_CA", ca_file.path().display().to_string()));
        }
        None => env.push(("SESAME_PROXY__UPSTREAMS", format!("{HOST}=http://{up}"))),
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start_with(&settings.server_bin, &env)?;
    let proxy = server.process.proxy_url.clone().ok_or_else(|| anyhow!("the server printed no proxy address"))?;
    let proxy: SocketAddr = proxy.trim_start_matches("http://").parse()?;
    let proxy_tls = tls_trusting(&server.dir.path().join("proxy-ca.pem"))?;
    let placeholder = placeholder(&server).await?;
    let routes =
        [Route::Direct(up, tls.as_ref().map(|t| t.client.clone())), Route::Proxy(proxy, proxy_tls, placeholder)];

    println!(
        "proxy: the same local upstream ({}), direct and through the egress proxy ({} connections, closed loop; \
         server pid {}, open-file limit {nofile}):",
        if options.tls { "HTTPS with a test certificate, as providers serve" } else { "plain HTTP: direct skips TLS" },
        settings.connections,
        server.pid
    );
    let mut ok = true;
    let mut runs = Vec::new();
    for route in &routes {
        let run = closed_loop(route, settings, &server).await?;
        let q = |f| run.hist.value_at_quantile(f) as f64 / 1000.0;
        println!(
            "    {:<7} {:>9.0} req/s  p50 {:>7.3} ms  p99 {:>7.3} ms  ({} requests, {} errors{}); CPU s: server {:.2}, \
             load tool {:.2}, {}",
            route.name(),
            run.requests as f64 / run.window,
            q(0.5),
            q(0.99),
            run.requests,
            run.errors,
            run.first_error.as_deref().map(|e| format!(": {e}")).unwrap_or_default(),
            run.cpu.server,
            run.cpu.client,
            other(&run.cpu, run.window)
        );
        ok &= run.errors == 0 && run.requests > 0;
        runs.push(run);
    }
    if let [direct, proxied] = &runs[..] {
        let added = |f| (proxied.hist.value_at_quantile(f) as f64 - direct.hist.value_at_quantile(f) as f64) / 1000.0;
        println!(
            "    added by the proxy: p50 {:.3} ms, p99 {:.3} ms; throughput {:.2} of direct; server CPU per proxied \
             request {:.0} µs",
            added(0.5),
            added(0.99),
            (proxied.requests as f64) / (direct.requests.max(1) as f64),
            proxied.cpu.server / (proxied.requests.max(1) as f64) * 1e6
        );
    }
    let mut firsts = Vec::new();
    for route in &routes {
        let hist = first_bytes(route).await?;
        println!(
            "    first streamed byte, {:<7} p50 {:>7.3} ms  p99 {:>7.3} ms  ({STREAMS} streams, one at a time)",
            route.name(),
            hist.value_at_quantile(0.5) as f64 / 1000.0,
            hist.value_at_quantile(0.99) as f64 / 1000.0
        );
        firsts.push(hist);
    }
    if let [direct, proxied] = &firsts[..] {
        println!(
            "    first streamed byte added by the proxy: p50 {:.3} ms",
            (proxied.value_at_quantile(0.5) as f64 - direct.value_at_quantile(0.5) as f64) / 1000.0
        );
    }

    let m = memory_per_stream(&routes[1], &server, options.held_streams, &release).await?;
    let per = (m.held_kib.saturating_sub(m.before_kib)) as f64 / m.streams as f64;
    println!(
        "    {} streams held open through the proxy at once (opened in {:.1} s): server RSS {} KiB before, {} KiB \
         with them open, {} KiB after they ended ({} threads): {:.1} KiB per stream",
        m.streams, m.open_secs, m.before_kib, m.held_kib, m.after_kib, m.threads, per
    );

    let mut transfers = Vec::new();
    for route in &routes {
        let t = transfer(route, &server, options.megabytes).await?;
        let mb = t.bytes as f64 / (1024.0 * 1024.0);
        println!(
            "    {:.0} MiB of SSE, {:<7} {:>7.1} MiB/s; CPU s per MiB: server {:.4}, load tool {:.4} ({})",
            mb,
            route.name(),
            mb / t.secs,
            t.cpu.server / mb,
            t.cpu.client / mb,
            other(&t.cpu, t.secs)
        );
        ok &= t.bytes as usize >= options.megabytes * 1024 * 1024 * 9 / 10;
        transfers.push(t);
    }
    if let [direct, proxied] = &transfers[..] {
        let mb = |t: &Transfer| t.bytes as f64 / (1024.0 * 1024.0);
        println!(
            "    CPU per proxied MiB: {:.2} ms of the server's (the proxy's whole cost: direct uses none of it); \
             the load tool's {:.2} ms direct, {:.2} ms proxied",
            proxied.cpu.server / mb(proxied) * 1000.0,
            direct.cpu.client / mb(direct) * 1000.0,
            proxied.cpu.client / mb(proxied) * 1000.0
        );
    }
    drop(ca_file);
    Ok(ok)
}
