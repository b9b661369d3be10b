//! Serving and operating: the listeners, readiness, metrics and the
//! shutdown sequence around `crate::app::App::serve`.
//!
//! `app::serve` binds the public listener (and the metrics listener, if
//! set) with [`Serving::bind`] *before* the database is opened and
//! migrated, so that while migrations run the public port answers `/ready`
//! (and `/health`) with 503 and every other path with 503 too, instead of refusing connections; the URL line
//! (`sesame-vault listening on …`) is printed once the service is ready.
//!
//! - `/health`: the process is up and the database answers (cheap: one ping).
//! - `/ready`: 200 only when migrations are done, the service is not
//!   shutting down, the database answers and writes commit (not after a
//!   write found the disk full, until one commits again); 503 otherwise,
//!   with the reason.
//! - `/metrics` (metrics listener only): Prometheus text format, `crate::metrics`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use poem::endpoint::BoxEndpoint;
use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response, Server};
use serde::{Deserialize, Serialize};

use crate::edge::{GuardedAcceptor, HttpConfig};
use crate::flows::FlowEngine;
use crate::store::Store;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Where `/metrics` is served (e.g. `127.0.0.1:9464`); unset = off.
    pub listen: Option<SocketAddr>,
}

const STARTING: u8 = 0;
const MIGRATING: u8 = 1;
const READY: u8 = 2;
const STOPPING: u8 = 3;

fn phase_name(phase: u8) -> &'static str {
    match phase {
        STARTING => "starting",
        MIGRATING => "migrating",
        READY => "ready",
        _ => "stopping",
    }
}

/// What `/ready`, `/health` and `/metrics` need: the phase of start-up
/// and shutdown, and the store once it is open.
#[derive(Clone, Default)]
struct Probe {
    phase: Arc<AtomicU8>,
    store: Arc<OnceLock<(Store, bool)>>,
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    Response::builder().status(status).content_type("application/json").body(body.to_string())
}

impl Probe {
    async fn ready(&self) -> Response {
        let phase = self.phase.load(Ordering::Acquire);
        let Some((store, _)) = self.store.get().filter(|_| phase == READY) else {
            return json(StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({ "status": phase_name(phase) }));
        };
        // A full disk: every write is refused until space is freed.
        if let Some(why) = store.write_blocked().await {
            return json(StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({ "status": why }));
        }
        if store.ping().await {
            json(StatusCode::OK, serde_json::json!({ "status": "ready" }))
        } else {
            json(StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({ "status": "database unavailable" }))
        }
    }

    async fn health(&self) -> Response {
        let Some((store, _)) = self.store.get() else {
            let phase = self.phase.load(Ordering::Acquire);
            return json(StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({ "status": phase_name(phase) }));
        };
        if store.ping().await {
            json(StatusCode::OK, serde_json::json!({ "status": "ok" }))
        } else {
            json(StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({ "status": "unavailable" }))
        }
    }

    async fn metrics(&self) -> Response {
        let Some((store, separate_reader)) = self.store.get() else {
            return json(StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({ "status": "starting" }));
        };
        let body = store.scrape_metrics(*separate_reader).await;
        Response::builder().content_type(crate::metrics::CONTENT_TYPE).body(body)
    }
}

/// The public port's endpoint: 503 until the routes are in, then the
/// routes; `/ready` always answers from the current phase.
#[derive(Clone, Default)]
struct Switch {
    routes: Arc<OnceLock<BoxEndpoint<'static>>>,
    probe: Probe,
}

impl Endpoint for Switch {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        if req.uri().path() == "/ready" {
            return Ok(self.probe.ready().await);
        }
        match self.routes.get() {
            Some(routes) => routes.call(req).await,
            None if req.uri().path() == "/health" => Ok(self.probe.health().await),
            None => Ok(json(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({ "errors": [{ "message": "the service is starting; try again in a moment", "extensions": { "code": "UNAVAILABLE" } }] }),
            )),
        }
    }
}

/// The metrics listener's endpoint.
#[derive(Clone)]
struct OpsEndpoint {
    probe: Probe,
}

impl Endpoint for OpsEndpoint {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        Ok(match req.uri().path() {
            "/metrics" => self.probe.metrics().await,
            "/ready" => self.probe.ready().await,
            "/health" => self.probe.health().await,
            _ => StatusCode::NOT_FOUND.into_response(),
        })
    }
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<(poem::listener::TcpAcceptor, SocketAddr)> {
    let acceptor =
        TcpListener::bind(addr).into_acceptor().await.with_context(|| format!("listening on {addr} ({what})"))?;
    let bound = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .context("the listener has no address")?;
    Ok((acceptor, bound))
}

/// The listeners, bound and serving, handed to `app::App::serve`.
pub struct Serving {
    addr: SocketAddr,
    /// The public listener's connection cap.
    cap: usize,
    switch: Switch,
    grace: Duration,
    servers: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// Where and how [`Serving::bind`] listens (the settings `app::serve` hands down).
pub struct Listeners<'a> {
    /// `SESAME_LISTEN`.
    pub public: SocketAddr,
    /// `SESAME_METRICS__LISTEN`; `None`: no metrics listener.
    pub metrics: Option<SocketAddr>,
    /// Header and idle deadlines (`crate::edge`).
    pub http: &'a HttpConfig,
    /// The public and the metrics listener's connection caps (`crate::edge::connection_caps`).
    pub caps: (usize, usize),
    /// `SESAME_SHUTDOWN__GRACE`.
    pub grace: Duration,
}

impl Serving {
    /// Binds the listeners and serves them: 503 (and `/ready` saying
    /// "migrating") until [`Serving::open`]. The caller opens the store
    /// next (`app::serve`).
    pub async fn bind(listeners: Listeners<'_>) -> anyhow::Result<Serving> {
        let Listeners { public, metrics, http, caps: (cap, metrics_cap), grace } = listeners;
        let switch = Switch::default();
        let (acceptor, addr) = bind(public, "SESAME_LISTEN").await?;
        let acceptor = GuardedAcceptor::new(acceptor, http, cap, "public");
        let mut servers = vec![tokio::spawn(Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
            switch.clone(),
            crate::shutdown::triggered(),
            Some(grace),
        ))];
        if let Some(listen) = metrics {
            let (acceptor, metrics_addr) = bind(listen, "SESAME_METRICS__LISTEN").await?;
            let acceptor = GuardedAcceptor::new(acceptor, http, metrics_cap, "metrics");
            let ops = OpsEndpoint { probe: switch.probe.clone() };
            servers.push(tokio::spawn(Server::new_with_acceptor(acceptor).name("metrics").run_with_graceful_shutdown(
                ops,
                crate::shutdown::triggered(),
                Some(grace),
            )));
            println!("sesame-vault metrics on http://{metrics_addr}/metrics");
            tracing::info!(addr = %metrics_addr, "metrics listening");
        }
        switch.probe.phase.store(MIGRATING, Ordering::Release);
        Ok(Serving { addr, cap, switch, grace, servers })
    }

    /// The store is open: `/health`, `/ready` and `/metrics` ask it from now on.
    pub fn store_opened(&self, store: Store, separate_reader: bool) {
        let _ = self.switch.probe.store.set((store, separate_reader));
    }
}

/// The metrics listener alone, for a process that serves no API (the
/// egress proxy as its own process, `app::proxy`): `/metrics`, `/ready` and
/// `/health` over the open `store`, until the shutdown signal.
pub async fn metrics_only(
    listen: SocketAddr,
    http: &HttpConfig,
    cap: usize,
    grace: Duration,
    store: Store,
    separate_reader: bool,
) -> anyhow::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let (acceptor, addr) = bind(listen, "SESAME_METRICS__LISTEN").await?;
    let acceptor = GuardedAcceptor::new(acceptor, http, cap, "metrics");
    let probe = Probe::default();
    let _ = probe.store.set((store, separate_reader));
    probe.phase.store(READY, Ordering::Release);
    let server = tokio::spawn(Server::new_with_acceptor(acceptor).name("metrics").run_with_graceful_shutdown(
        OpsEndpoint { probe },
        crate::shutdown::triggered(),
        Some(grace),
    ));
    println!("sesame-vault metrics on http://{addr}/metrics");
    tracing::info!(%addr, "metrics listening");
    Ok(server)
}

impl Serving {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The public listener's connection cap (`crate::edge::connection_caps`):
    /// the WebSocket waiters' caps derive from it (`crate::ws`).
    pub fn connection_cap(&self) -> usize {
        self.cap
    }

    /// Puts `routes` on the public port: the service is ready.
    pub fn open<E: Endpoint + 'static>(&self, routes: E) {
        let _ = self.switch.routes.set(routes.around(crate::telemetry::around_requests).boxed());
        self.switch.probe.phase.store(READY, Ordering::Release);
        tracing::info!(addr = %self.addr, "ready");
    }

    /// Serves until SIGTERM/SIGINT, then shuts down in order (see
    /// `crate::shutdown`).
    pub async fn run(
        self,
        flows: &FlowEngine,
        scheduler: Option<tokio_cron_scheduler::JobScheduler>,
    ) -> anyhow::Result<()> {
        crate::shutdown::triggered().await;
        self.switch.probe.phase.store(STOPPING, Ordering::Release);
        let started = std::time::Instant::now();
        let grace = self.grace;

        let http = async {
            for server in self.servers {
                match server.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "a listener failed while stopping"),
                    Err(e) => tracing::error!(error = %e, "a listener task failed"),
                }
            }
            // Upgraded connections are not the HTTP server's any more: wait
            // for the WebSocket sessions' close handshakes (they close with 1001).
            if !crate::shutdown::WEBSOCKETS.idle(grace).await {
                tracing::warn!(open = crate::shutdown::WEBSOCKETS.count(), "WebSocket sessions still open");
            }
        };
        let jobs = async {
            if let Some(mut scheduler) = scheduler {
                if let Err(e) = scheduler.shutdown().await {
                    tracing::warn!(error = ?e, "stopping the scheduler");
                }
            }
            if !crate::shutdown::JOBS.idle(grace).await {
                tracing::warn!(running = crate::shutdown::JOBS.count(), "scheduler jobs still running");
            }
        };
        let leases = async {
            if let Err(e) = flows.release_leases(grace).await {
                tracing::error!(error = ?e, "releasing sign-in flow leases failed");
            }
        };
        tokio::join!(http, jobs, leases);
        // A sign-in started by a request that was still running meanwhile.
        if let Err(e) = flows.release_leases(Duration::from_secs(1)).await {
            tracing::error!(error = ?e, "releasing sign-in flow leases failed");
        }
        tracing::info!(took_ms = started.elapsed().as_millis() as u64, "stopped");
        Ok(())
    }
}
