//! Prometheus metrics (`prometheus-client`), served on their own listener
//! (`SESAME_METRICS__LISTEN`, see `crate::ops`), never on the public port.
//!
//! One registry per process ([`METRICS`]); the code that does the work
//! counts it through the small functions below. Label values are bounded
//! sets (schema names, enum values, configured hosts, capped operation
//! names): never a token, credential, code, id or anything a caller can
//! grow without bound.
//!
//! | family | labels | what |
//! |---|---|---|
//! | `sesame_graphql_requests_total` | operation, operation_type, code | GraphQL operations over HTTP |
//! | `sesame_graphql_request_duration_seconds` | operation_type | their latency (histogram) |
//! | `sesame_websocket_connections_total` | code | WebSocket sessions ended, by close code |
//! | `sesame_websocket_open` / `sesame_websocket_subscriptions` | | open sockets, live subscriptions |
//! | `sesame_issuances_total` | source, outcome | task credential issuances |
//! | `sesame_refreshes_total` | provider, outcome | OAuth token refreshes |
//! | `sesame_checks_total` | provider, outcome | credentials checked with their provider, by result |
//! | `sesame_flows_total` | provider, status | sign-in flows started (`STARTED`) and ended |
//! | `sesame_provider_requests_total` / `_duration_seconds` | host, status | calls to providers |
//! | `sesame_credentials` | status | stored credentials by status, read at scrape time |
//! | `sesame_scheduler_runs_total` / `_duration_seconds` | job, outcome | scheduler job runs |
//! | `sesame_db_pool_connections` | pool, state | connections in use / idle, read at scrape time |
//! | `sesame_db_pool_max_connections` | pool | the pool's bound |
//! | `sesame_db_pool_acquire_seconds` | pool | how long this scrape waited for a connection |
//! | `sesame_webhook_deliveries_total` | outcome | webhook attempts (`delivered`, `retry`, `failed`, `gone`) and deliveries dropped past a queue bound (`dropped`) |
//! | `sesame_webhook_attempt_duration_seconds` | | latency of webhook attempts (histogram) |
//! | `sesame_webhook_queue_depth` | | pending webhook deliveries, every endpoint (set by the worker) |
//! | `sesame_proxy_requests_total` | provider, outcome | egress proxy requests: `forwarded`, `refresh_answered`, `refused`, `too_many`, `upstream_error`, `connection_cap` |
//! | `sesame_proxy_bytes_total` | direction | bytes through the proxy (`sent` to providers, `received` from them) |
//! | `sesame_proxy_tokens_total` | provider, kind | token usage providers reported (`input`, `output`) |
//! | `sesame_proxy_connections` | | open connections to the proxy |
//! | `sesame_proxy_grants_kept_total` | | placeholders checked against a grant kept from an earlier read |
//! | `sesame_proxy_grants_read_total` | | placeholders checked by reading the grant's rows |

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use crate::domain::CredentialStatus;

/// Distinct operation names kept as label values; later ones count as `other`.
const MAX_OPERATION_NAMES: usize = 200;
/// A scrape waits at most this long for the database.
const SCRAPE_DB_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub operation: String,
    pub operation_type: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabels {
    pub operation_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IssuanceLabels {
    pub source: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderOutcome {
    pub provider: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlowLabels {
    pub provider: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HostStatus {
    pub host: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HostLabels {
    pub host: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobOutcome {
    pub job: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub job: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolState {
    pub pool: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    pub direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderKind {
    pub provider: String,
    pub kind: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms … ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: HistogramFamily<TypeLabels>,
    pub sockets_closed: Family<CodeLabels, Counter>,
    pub sockets_open: Gauge,
    pub subscriptions: Gauge,
    pub issuances: Family<IssuanceLabels, Counter>,
    pub refreshes: Family<ProviderOutcome, Counter>,
    pub checks: Family<ProviderOutcome, Counter>,
    pub flows: Family<FlowLabels, Counter>,
    pub provider_requests: Family<HostStatus, Counter>,
    pub provider_duration: HistogramFamily<HostLabels>,
    pub credentials: Family<StatusLabels, Gauge>,
    pub job_runs: Family<JobOutcome, Counter>,
    pub job_duration: HistogramFamily<JobLabels>,
    pub pool_connections: Family<PoolState, Gauge>,
    pub pool_max: Family<PoolLabels, Gauge>,
    pub pool_acquire: Family<PoolLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub webhook_deliveries: Family<OutcomeLabels, Counter>,
    pub webhook_duration: Histogram,
    pub webhook_queue: Gauge,
    pub proxy_requests: Family<ProviderOutcome, Counter>,
    pub proxy_bytes: Family<DirectionLabels, Counter>,
    pub proxy_tokens: Family<ProviderKind, Counter>,
    pub proxy_connections: Gauge,
    pub proxy_grants_kept: Counter,
    pub proxy_grants_read: Counter,
    operation_names: Mutex<HashSet<String>>,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("sesame");
        let m = Metrics {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            sockets_closed: Family::default(),
            sockets_open: Gauge::default(),
            subscriptions: Gauge::default(),
            issuances: Family::default(),
            refreshes: Family::default(),
            checks: Family::default(),
            flows: Family::default(),
            provider_requests: Family::default(),
            provider_duration: Family::new_with_constructor(latency_histogram),
            credentials: Family::default(),
            job_runs: Family::default(),
            job_duration: Family::new_with_constructor(latency_histogram),
            pool_connections: Family::default(),
            pool_max: Family::default(),
            pool_acquire: Family::default(),
            webhook_deliveries: Family::default(),
            webhook_duration: latency_histogram(),
            webhook_queue: Gauge::default(),
            proxy_requests: Family::default(),
            proxy_bytes: Family::default(),
            proxy_tokens: Family::default(),
            proxy_connections: Gauge::default(),
            proxy_grants_kept: Counter::default(),
            proxy_grants_read: Counter::default(),
            operation_names: Mutex::default(),
            registry: Registry::default(),
        };
        registry.register("graphql_requests", "GraphQL operations over HTTP", m.requests.clone());
        registry.register_with_unit(
            "graphql_request_duration",
            "Latency of GraphQL requests over HTTP",
            Unit::Seconds,
            m.request_duration.clone(),
        );
        registry.register("websocket_connections", "WebSocket sessions ended, by close code", m.sockets_closed.clone());
        registry.register("websocket_open", "Open WebSocket sessions", m.sockets_open.clone());
        registry.register("websocket_subscriptions", "Live subscriptions over WebSocket", m.subscriptions.clone());
        registry.register("issuances", "Task credential issuances by source and outcome", m.issuances.clone());
        registry.register("refreshes", "OAuth token refreshes by provider and outcome", m.refreshes.clone());
        registry.register(
            "checks",
            "Credentials checked with their provider, by provider and result",
            m.checks.clone(),
        );
        registry.register("flows", "Sign-in flows started (STARTED) and ended, by final status", m.flows.clone());
        registry.register("provider_requests", "HTTP calls to sign-in providers", m.provider_requests.clone());
        registry.register_with_unit(
            "provider_request_duration",
            "Latency of HTTP calls to sign-in providers",
            Unit::Seconds,
            m.provider_duration.clone(),
        );
        registry.register("credentials", "Stored credentials by status (read at scrape time)", m.credentials.clone());
        registry.register("scheduler_runs", "Scheduler job runs by outcome", m.job_runs.clone());
        registry.register_with_unit(
            "scheduler_run_duration",
            "Duration of scheduler job runs",
            Unit::Seconds,
            m.job_duration.clone(),
        );
        registry.register(
            "db_pool_connections",
            "Database pool connections by state (read at scrape time)",
            m.pool_connections.clone(),
        );
        registry.register("db_pool_max_connections", "Database pool size bound", m.pool_max.clone());
        registry.register_with_unit(
            "db_pool_acquire",
            "How long the last scrape waited for a pool connection (a sample of pool waits)",
            Unit::Seconds,
            m.pool_acquire.clone(),
        );
        registry.register(
            "webhook_deliveries",
            "Webhook attempts by outcome, and deliveries dropped past a queue bound",
            m.webhook_deliveries.clone(),
        );
        registry.register_with_unit(
            "webhook_attempt_duration",
            "Latency of webhook attempts",
            Unit::Seconds,
            m.webhook_duration.clone(),
        );
        registry.register("webhook_queue_depth", "Pending webhook deliveries", m.webhook_queue.clone());
        registry.register("proxy_requests", "Egress proxy requests by provider and outcome", m.proxy_requests.clone());
        registry.register("proxy_bytes", "Bytes through the egress proxy, by direction", m.proxy_bytes.clone());
        registry.register(
            "proxy_tokens",
            "Token usage providers reported in answers through the egress proxy",
            m.proxy_tokens.clone(),
        );
        registry.register("proxy_connections", "Open connections to the egress proxy", m.proxy_connections.clone());
        registry.register(
            "proxy_grants_kept",
            "Placeholders checked against a grant kept from an earlier read",
            m.proxy_grants_kept.clone(),
        );
        registry.register(
            "proxy_grants_read",
            "Placeholders checked by reading the grant's rows",
            m.proxy_grants_read.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The label for an operation name: itself while it is a GraphQL name
    /// among the first [`MAX_OPERATION_NAMES`] seen, else `other`;
    /// `anonymous` for none.
    pub fn operation_label(&self, name: Option<&str>) -> String {
        let Some(name) = name else { return "anonymous".into() };
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !name.as_bytes()[0].is_ascii_digit();
        if !valid {
            return "other".into();
        }
        let mut names = self.operation_names.lock().unwrap_or_else(PoisonError::into_inner);
        if names.contains(name) || (names.len() < MAX_OPERATION_NAMES && names.insert(name.to_owned())) {
            name.to_owned()
        } else {
            "other".into()
        }
    }
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// One GraphQL operation over HTTP.
pub fn request(operation: Option<&str>, operation_type: &str, code: &str, took: Duration) {
    let m = &*METRICS;
    let operation = m.operation_label(operation);
    m.requests
        .get_or_create(&RequestLabels { operation, operation_type: operation_type.into(), code: code.into() })
        .inc();
    m.request_duration.get_or_create(&TypeLabels { operation_type: operation_type.into() }).observe(took.as_secs_f64());
}

/// A task issuance's result: the source used, or the error code.
pub fn issuance(result: Result<&str, &str>) {
    let (source, outcome) = match result {
        Ok(source) => (source.to_owned(), "ISSUED".to_owned()),
        Err(code) => ("NONE".to_owned(), code.to_owned()),
    };
    METRICS.issuances.get_or_create(&IssuanceLabels { source, outcome }).inc();
}

/// A refresh's outcome (`REFRESHED`, `NEEDS_REAUTH`, `TRANSIENT`, `SKIPPED`, `ERROR`).
pub fn refresh(provider: &str, outcome: &str) {
    METRICS.refreshes.get_or_create(&ProviderOutcome { provider: provider.into(), outcome: outcome.into() }).inc();
}

/// A check with the provider and its result (`VALID`, `INVALID`, `NO_ACCESS`, `UNREACHABLE`).
pub fn check(provider: &str, result: &str) {
    METRICS.checks.get_or_create(&ProviderOutcome { provider: provider.into(), outcome: result.into() }).inc();
}

/// A flow started (`STARTED`) or ended (its final status).
pub fn flow(provider: &str, status: &str) {
    METRICS.flows.get_or_create(&FlowLabels { provider: provider.into(), status: status.into() }).inc();
}

/// One HTTP call to a provider; `status` is the HTTP status or `error`.
pub fn provider_request(host: &str, status: &str, took: Duration) {
    let m = &*METRICS;
    m.provider_requests.get_or_create(&HostStatus { host: host.into(), status: status.into() }).inc();
    m.provider_duration.get_or_create(&HostLabels { host: host.into() }).observe(took.as_secs_f64());
}

/// One scheduler run (`outcome`: `ran`, `skipped` (another replica has it), `failed`).
pub fn job_run(job: &str, outcome: &str, took: Duration) {
    let m = &*METRICS;
    m.job_runs.get_or_create(&JobOutcome { job: job.into(), outcome: outcome.into() }).inc();
    m.job_duration.get_or_create(&JobLabels { job: job.into() }).observe(took.as_secs_f64());
}

/// One webhook attempt (`outcome`: `delivered`, `retry`, `failed`, `gone`).
pub fn webhook_attempt(outcome: &str, took: Duration) {
    let m = &*METRICS;
    m.webhook_deliveries.get_or_create(&OutcomeLabels { outcome: outcome.into() }).inc();
    m.webhook_duration.observe(took.as_secs_f64());
}

/// Webhook deliveries dropped past an endpoint's queue bound.
pub fn webhooks_dropped(n: u64) {
    METRICS.webhook_deliveries.get_or_create(&OutcomeLabels { outcome: "dropped".into() }).inc_by(n);
}

/// Pending webhook deliveries, as the worker last counted them.
pub fn webhook_queue_depth(n: u64) {
    METRICS.webhook_queue.set(i64::try_from(n).unwrap_or(i64::MAX));
}

/// A WebSocket session ended with `code`.
pub fn socket_closed(code: u16) {
    METRICS.sockets_closed.get_or_create(&CodeLabels { code: code.to_string() }).inc();
}

/// One request through the egress proxy (`provider`: `none` before a grant is known).
pub fn proxy_request(provider: &str, outcome: &str) {
    METRICS.proxy_requests.get_or_create(&ProviderOutcome { provider: provider.into(), outcome: outcome.into() }).inc();
}

/// A placeholder checked against a kept grant (`true`) or by a read.
pub fn proxy_grant_lookup(kept: bool) {
    if kept {
        METRICS.proxy_grants_kept.inc();
    } else {
        METRICS.proxy_grants_read.inc();
    }
}

/// Bytes through the egress proxy (`sent` or `received`).
pub fn proxy_bytes(direction: &str, n: u64) {
    if n > 0 {
        METRICS.proxy_bytes.get_or_create(&DirectionLabels { direction: direction.into() }).inc_by(n);
    }
}

/// Tokens a provider reported (`input` or `output`).
pub fn proxy_tokens(provider: &str, kind: &str, n: u64) {
    if n > 0 {
        METRICS.proxy_tokens.get_or_create(&ProviderKind { provider: provider.into(), kind: kind.into() }).inc_by(n);
    }
}

/// Counts one open proxy connection while it lives.
pub struct ProxyConnection(());

impl ProxyConnection {
    pub fn open() -> ProxyConnection {
        METRICS.proxy_connections.inc();
        ProxyConnection(())
    }
}

impl Drop for ProxyConnection {
    fn drop(&mut self) {
        METRICS.proxy_connections.dec();
    }
}

/// Counts one open socket (or live subscription) while it lives.
pub struct GaugeGuard(&'static Gauge);

impl GaugeGuard {
    pub fn socket() -> GaugeGuard {
        METRICS.sockets_open.inc();
        GaugeGuard(&METRICS.sockets_open)
    }

    pub fn subscription() -> GaugeGuard {
        METRICS.subscriptions.inc();
        GaugeGuard(&METRICS.subscriptions)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Reads what is measured at scrape time (credentials by status, the
/// pools), then encodes everything in the Prometheus text format.
/// `reader` is the SQLite file's read pool, when it has one.
pub async fn scrape(writer: &DatabaseConnection, reader: Option<&DatabaseConnection>) -> String {
    let m = &*METRICS;
    match tokio::time::timeout(SCRAPE_DB_TIMEOUT, credentials_by_status(reader.unwrap_or(writer))).await {
        Ok(Ok(counts)) => {
            for status in [
                CredentialStatus::Active,
                CredentialStatus::Expiring,
                CredentialStatus::Expired,
                CredentialStatus::NeedsReauth,
            ] {
                let n = counts.iter().find(|(s, _)| s == status.as_str()).map_or(0, |(_, n)| *n);
                m.credentials.get_or_create(&StatusLabels { status: status.as_str().into() }).set(n);
            }
            for (status, n) in counts {
                m.credentials.get_or_create(&StatusLabels { status }).set(n);
            }
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "metrics: counting credentials failed"),
        Err(_) => tracing::warn!("metrics: counting credentials timed out"),
    }
    pool(writer, "writer").await;
    if let Some(reader) = reader {
        pool(reader, "reader").await;
    }
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &m.registry) {
        tracing::error!(error = %e, "metrics: encoding failed");
    }
    out
}

pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// `SELECT status, COUNT(*) … GROUP BY status`: an index-only read over
/// the `(status, expires_at)` index.
async fn credentials_by_status(db: &DatabaseConnection) -> Result<Vec<(String, i64)>, sea_orm::DbErr> {
    let backend = db.get_database_backend();
    let rows = db
        .query_all(Statement::from_string(backend, "SELECT status, COUNT(*) AS n FROM credentials GROUP BY status"))
        .await?;
    rows.iter().map(|row| Ok((row.try_get::<String>("", "status")?, row.try_get::<i64>("", "n")?))).collect()
}

/// What sqlx exposes of a pool: its size, idle connections and bound, and
/// one timed acquire (sqlx keeps no wait statistics; this sample shows
/// whether connections are scarce right now).
async fn pool(db: &DatabaseConnection, name: &str) {
    let m = &*METRICS;
    let (size, idle, max, waited) = match db.get_database_backend() {
        DbBackend::Sqlite => {
            let pool = db.get_sqlite_connection_pool();
            let started = Instant::now();
            let got = tokio::time::timeout(SCRAPE_DB_TIMEOUT, pool.acquire()).await;
            let waited = started.elapsed();
            drop(got);
            (pool.size(), pool.num_idle(), pool.options().get_max_connections(), waited)
        }
        DbBackend::Postgres => {
            let pool = db.get_postgres_connection_pool();
            let started = Instant::now();
            let got = tokio::time::timeout(SCRAPE_DB_TIMEOUT, pool.acquire()).await;
            let waited = started.elapsed();
            drop(got);
            (pool.size(), pool.num_idle(), pool.options().get_max_connections(), waited)
        }
        _ => return,
    };
    let in_use = i64::from(size).saturating_sub(idle as i64).max(0);
    let label = |state: &str| PoolState { pool: name.into(), state: state.into() };
    m.pool_connections.get_or_create(&label("in_use")).set(in_use);
    m.pool_connections.get_or_create(&label("idle")).set(idle as i64);
    m.pool_max.get_or_create(&PoolLabels { pool: name.into() }).set(i64::from(max));
    m.pool_acquire.get_or_create(&PoolLabels { pool: name.into() }).set(waited.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_names_are_bounded() {
        let m = Metrics::new();
        assert_eq!(m.operation_label(None), "anonymous");
        assert_eq!(m.operation_label(Some("Mine")), "Mine");
        assert_eq!(m.operation_label(Some("sv_abc-def")), "other");
        assert_eq!(m.operation_label(Some("9x")), "other");
        for i in 0..MAX_OPERATION_NAMES {
            m.operation_label(Some(&format!("op{i}")));
        }
        assert_eq!(m.operation_label(Some("Mine")), "Mine");
        assert_eq!(m.operation_label(Some("late")), "other");
    }

    #[test]
    fn encodes_in_the_prometheus_text_format() {
        let m = Metrics::new();
        m.requests
            .get_or_create(&RequestLabels {
                operation: "Mine".into(),
                operation_type: "query".into(),
                code: "OK".into(),
            })
            .inc();
        // A family without samples is not encoded at all: observe one.
        m.request_duration.get_or_create(&TypeLabels { operation_type: "query".into() }).observe(0.004);
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &m.registry).unwrap();
        assert!(
            out.contains(r#"sesame_graphql_requests_total{operation="Mine",operation_type="query",code="OK"} 1"#),
            "{out}"
        );
        assert!(out.contains("# TYPE sesame_graphql_request_duration_seconds histogram"), "{out}");
    }
}
