//! The `proxy` scenario (issue 23): one local upstream (a stand-in for a
//! provider's API) called directly and through the egress proxy, side by
//! side in one run: latency p50/p99 and requests per second (closed loop,
//! `--connections` workers, one keep-alive connection each; through the
//! proxy that is CONNECT, TLS with the proxy's CA, then HTTP/1.1 inside),
//! and the time to the first byte of a streamed (SSE) answer.
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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;

use crate::http_load::new_histogram;
use crate::server::{Server, ANTHROPIC_KEY};
use crate::Settings;

const HOST: &str = "api.anthropic.com";
/// Sequential streamed requests for the first-byte measurement.
const STREAMS: usize = 200;

type UpBody = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

/// The upstream: `/stream` answers SSE (the first event at once, the rest
/// after 5 ms), anything else a small JSON message with usage.
async fn upstream() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let stream = req.uri().path() == "/stream";
                    let body: UpBody = if stream {
                        let events = async_stream::stream! {
                            yield Ok::<_, Infallible>(Frame::data(Bytes::from_static(
                                b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n",
                            )));
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            yield Ok(Frame::data(Bytes::from_static(
                                b"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":20}}\n\n",
                            )));
                        };
                        StreamBody::new(events).boxed_unsync()
                    } else {
                        let _ = req.into_body().collect().await;
                        Full::new(Bytes::from_static(
                            br#"{"type":"message","content":[{"type":"text","text":"ok"}],"usage":{"input_tokens":10,"output_tokens":2}}"#,
                        ))
                        .boxed_unsync()
                    };
                    let content_type = if stream { "text/event-stream" } else { "application/json" };
                    let mut res = hyper::Response::new(body);
                    res.headers_mut()
                        .insert(hyper::header::CONTENT_TYPE, content_type.parse().expect("a header value"));
                    Ok::<_, Infallible>(res)
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok(addr)
}

/// How a worker reaches the upstream.
#[derive(Clone)]
enum Route {
    Direct(SocketAddr),
    /// The proxy's address, its CA, the placeholder to send.
    Proxy(SocketAddr, Arc<rustls::ClientConfig>, String),
}

impl Route {
    fn name(&self) -> &'static str {
        match self {
            Route::Direct(_) => "direct",
            Route::Proxy(..) => "proxy",
        }
    }

    fn key(&self) -> &str {
        match self {
            Route::Direct(_) => "direct-key",
            Route::Proxy(_, _, placeholder) => placeholder,
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>> {
        match self {
            Route::Direct(addr) => {
                let stream = TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                handshake(stream).await
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
                let name = rustls::pki_types::ServerName::try_from(HOST)?;
                let tls = tokio_rustls::TlsConnector::from(tls.clone()).connect(name, stream).await?;
                handshake(tls).await
            }
        }
    }
}

async fn handshake<S>(io: S) -> Result<SendRequest<Full<Bytes>>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
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

struct Run {
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    hist: Histogram<u64>,
    window: f64,
}

/// Closed loop for `duration` after `warmup`: each worker one connection.
async fn closed_loop(route: &Route, settings: &Settings) -> Run {
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
    let mut run = Run {
        requests: 0,
        errors: 0,
        first_error: None,
        hist: new_histogram(),
        window: settings.duration.as_secs_f64(),
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
    run
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
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Runs the scenario on its own server; whether everything worked.
pub(crate) async fn proxy_scenario(settings: &Settings) -> Result<bool> {
    let up = upstream().await?;
    let upstreams = format!("{HOST}=http://{up}");
    let server = Server::start_with(
        &settings.server_bin,
        &[
            ("SESAME_PROXY__LISTEN", "127.0.0.1:0"),
            ("SESAME_PROXY__UPSTREAMS", upstreams.as_str()),
            ("SESAME_PROXY__MAX_REQUESTS_PER_TASK", "100000"),
        ],
    )?;
    let proxy = server.process.proxy_url.clone().ok_or_else(|| anyhow!("the server printed no proxy address"))?;
    let proxy: SocketAddr = proxy.trim_start_matches("http://").parse()?;
    let tls = tls_trusting(&server.dir.path().join("proxy-ca.pem"))?;
    let placeholder = placeholder(&server).await?;
    let routes = [Route::Direct(up), Route::Proxy(proxy, tls, placeholder)];

    println!(
        "proxy: the same local upstream, direct and through the egress proxy ({} connections, closed loop):",
        settings.connections
    );
    let mut ok = true;
    let mut runs = Vec::new();
    for route in &routes {
        let run = closed_loop(route, settings).await;
        let q = |f| run.hist.value_at_quantile(f) as f64 / 1000.0;
        println!(
            "    {:<7} {:>9.0} req/s  p50 {:>7.3} ms  p99 {:>7.3} ms  ({} requests, {} errors{})",
            route.name(),
            run.requests as f64 / run.window,
            q(0.5),
            q(0.99),
            run.requests,
            run.errors,
            run.first_error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
        );
        ok &= run.errors == 0 && run.requests > 0;
        runs.push(run);
    }
    if let [direct, proxied] = &runs[..] {
        let added = |f| (proxied.hist.value_at_quantile(f) as f64 - direct.hist.value_at_quantile(f) as f64) / 1000.0;
        println!(
            "    added by the proxy: p50 {:.3} ms, p99 {:.3} ms; throughput {:.2} of direct",
            added(0.5),
            added(0.99),
            (proxied.requests as f64) / (direct.requests.max(1) as f64)
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
    Ok(ok)
}
