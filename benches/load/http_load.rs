//! Closed-loop HTTP load: each worker keeps one keep-alive HTTP/1.1
//! connection and sends the next request when the previous one answered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use serde_json::Value;

use crate::process::{cpu_seconds, machine_busy_seconds, thread_cpu, thread_cpu_delta, PerfRecording};
use crate::server::Server;
use crate::Settings;

/// How long one HTTP request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

type BodyFn = dyn Fn(usize, u64) -> Bytes + Send + Sync;

pub(crate) struct LoadSpec {
    pub(crate) name: String,
    pub(crate) token: String,
    pub(crate) body: Box<BodyFn>,
    /// A successful response contains this (and no "errors").
    pub(crate) expect: String,
}

pub(crate) struct LoadResult {
    pub(crate) name: String,
    pub(crate) connections: usize,
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    pub(crate) window: f64,
    pub(crate) hist: Histogram<u64>,
    pub(crate) server_cpu: f64,
    pub(crate) client_cpu: f64,
    /// CPU of every other process on the machine (other builds, …).
    pub(crate) other_cpu: f64,
    pub(crate) server_threads: Vec<(String, f64)>,
}

impl LoadResult {
    pub(crate) fn rps(&self) -> f64 {
        self.requests as f64 / self.window
    }
    pub(crate) fn ms(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }
}

pub(crate) fn new_histogram() -> Histogram<u64> {
    // Microseconds, 1 µs to 10 minutes, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

struct WorkerOut {
    pub(crate) hist: Histogram<u64>,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
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

pub(crate) async fn run_load(server: &Server, settings: &Settings, spec: LoadSpec) -> Result<LoadResult> {
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

pub(crate) fn body_of(value: Value) -> Bytes {
    Bytes::from(value.to_string())
}
