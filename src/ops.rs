//! Serving and operating: the listeners, readiness, metrics and the
//! shutdown sequence around [`crate::app::App::serve`].
//!
//! `serve` binds the public listener (and the metrics listener, if set)
//! *before* the database is opened and migrated, so that while migrations
//! run the public port answers `/ready` (and `/health`) with 503 and every
//! other path with 503 too, instead of refusing connections; the URL line
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

use crate::app::App;
use crate::config::Config;
use crate::edge::GuardedAcceptor;
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

static PHASE: AtomicU8 = AtomicU8::new(STARTING);

fn phase_name(phase: u8) -> &'static str {
    match phase {
        STARTING => "starting",
        MIGRATING => "migrating",
        READY => "ready",
        _ => "stopping",
    }
}

/// What `/ready`, `/health` and `/metrics` need once the store is open.
#[derive(Clone, Default)]
struct Probe {
    store: Arc<OnceLock<(Store, bool)>>,
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    Response::builder().status(status).content_type("application/json").body(body.to_string())
}

impl Probe {
    async fn ready(&self) -> Response {
        let phase = PHASE.load(Ordering::Acquire);
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
            let phase = PHASE.load(Ordering::Acquire);
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

/// The listeners, bound and serving, handed to [`App::serve`].
pub struct Serving {
    addr: SocketAddr,
    switch: Switch,
    grace: Duration,
    servers: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// `serve`: signals, listeners, then the store (migrating), then the service.
pub async fn serve(mut config: Config) -> anyhow::Result<()> {
    // A malformed system-wide key stops start-up before anything is bound.
    config.system_keys.check()?;
    crate::limits::init(&config.writes);
    tokio::spawn(crate::shutdown::listen_for_signals());
    let grace = config.shutdown.grace;
    let switch = Switch::default();
    // Header and idle deadlines, a connection cap within the open-file
    // limit, and accept back-off on EMFILE: `crate::edge`.
    let (cap, metrics_cap) = crate::edge::connection_caps(&config.http, config.metrics.listen.is_some());
    // WebSockets waiting for `connection_init` get a fraction of the cap.
    crate::ws::set_connection_cap(cap);
    let (acceptor, addr) = bind(config.listen, "SESAME_LISTEN").await?;
    let acceptor = GuardedAcceptor::new(acceptor, &config.http, cap, "public");
    let mut servers = vec![tokio::spawn(Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
        switch.clone(),
        crate::shutdown::triggered(),
        Some(grace),
    ))];
    if let Some(listen) = config.metrics.listen {
        let (acceptor, metrics_addr) = bind(listen, "SESAME_METRICS__LISTEN").await?;
        let acceptor = GuardedAcceptor::new(acceptor, &config.http, metrics_cap, "metrics");
        let ops = OpsEndpoint { probe: switch.probe.clone() };
        servers.push(tokio::spawn(Server::new_with_acceptor(acceptor).name("metrics").run_with_graceful_shutdown(
            ops,
            crate::shutdown::triggered(),
            Some(grace),
        )));
        println!("sesame-vault metrics on http://{metrics_addr}/metrics");
        tracing::info!(addr = %metrics_addr, "metrics listening");
    }
    PHASE.store(MIGRATING, Ordering::Release);
    let separate_reader = config.is_sqlite() && !crate::store::db::is_in_memory(&config.database_url());
    let app = tokio::select! {
        app = App::open(config) => app?,
        () = crate::shutdown::triggered() => {
            tracing::info!("stopped before the database was open");
            return Ok(());
        }
    };
    let _ = switch.probe.store.set((app.store.clone(), separate_reader));
    app.serve(Serving { addr, switch, grace, servers }).await
}

impl Serving {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Puts `routes` on the public port: the service is ready.
    pub fn open<E: Endpoint + 'static>(&self, routes: E) {
        let _ = self.switch.routes.set(routes.around(crate::telemetry::around_requests).boxed());
        PHASE.store(READY, Ordering::Release);
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
        PHASE.store(STOPPING, Ordering::Release);
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
