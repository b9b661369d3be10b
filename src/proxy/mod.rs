//! The credential-injecting egress proxy: tasks with `delivery: PROXY` hold
//! placeholders (`crate::delivery`); this proxy intercepts TLS for their
//! providers' hosts and swaps each placeholder for the real credential on
//! the way out, answers refreshes itself, and counts usage per task.
//!
//! Built on hyper 1 (HTTP/1.1, server and pooled client), tokio-rustls and
//! rcgen directly, not on a MITM framework: every bound below must hold,
//! and the CONNECT to a host no provider lists must be refused, not tunnelled.
//!
//! - [`Proxy::bind`] binds the port and loads (or generates) the CA
//!   (`ca.rs`); [`Proxy::start`] serves it with the store's `ProxyHandle`.
//! - `tunnel.rs`: a connection, its CONNECT (only to hosts some provider's
//!   `egress` lists, port 443), the TLS handshake with the host's leaf, the
//!   requests inside.
//! - `exchange.rs`: one request inside: placeholders found, lent, checked
//!   against the grant's provider's hosts, swapped, forwarded; the answer
//!   streamed back (`body.rs` meters it); WebSocket upgrades spliced. An
//!   error answer of a known length up to 64 KiB (not compressed, not a
//!   stream) is read whole and every real value the request carried is
//!   replaced by its placeholder again.
//! - `token.rs`: OAuth token endpoints, answered by the proxy itself.
//! - `usage.rs`: token usage read from answers; per-grant totals flushed to
//!   the store every second.
//!
//! Bounds: connections in total (`max_connections`: at the cap a new one
//! is closed at once), request head and TLS handshake within
//! `header_timeout` (also between requests on a kept-alive connection),
//! request heads at most 64 KiB, requests in flight per task
//! (`max_requests_per_task`, 429 beyond), connections per task
//! (`max_connections_per_task`: a connection counts for a task from its
//! first request that carries the task's valid placeholder until it
//! closes; the request that would count one more gets 429 and its
//! connection is closed), an exchange within
//! `request_timeout` (streams included), token endpoint bodies 64 KiB, and
//! a connection that sends [`MAX_REFUSALS`] refused requests is closed.

mod body;
mod ca;
mod exchange;
mod settings;
mod token;
mod tunnel;
mod usage;
mod websocket;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::delivery::ProxyAccess;
use crate::domain::Provider;
use crate::store::ProxyHandle;

pub use settings::ProxyConfig;
// What the fuzz targets reach (`crate::fuzzing`): the parsers of what tasks
// and providers send through the proxy.
pub use token::params as token_request_params;
pub use usage::{Meter, Tokens};

/// Errors inside bodies (the client's, the provider's, a deadline).
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Every body the proxy sends or answers with.
pub(crate) type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// Refused requests after which a connection is closed.
pub const MAX_REFUSALS: u32 = 16;
/// The largest request head (request line and headers) read.
const MAX_HEAD: usize = 64 * 1024;

/// The bound port and CA, not serving yet.
pub struct Proxy {
    listener: TcpListener,
    addr: SocketAddr,
    access: ProxyAccess,
    config: ProxyConfig,
    ca: ca::Ca,
    upstreams: HashMap<String, String>,
    client: Client<HttpsConnector<HttpConnector>, ProxyBody>,
}

/// What every connection shares.
pub(crate) struct Shared {
    pub ca: ca::Ca,
    pub handle: ProxyHandle,
    pub client: Client<HttpsConnector<HttpConnector>, ProxyBody>,
    /// Test upstreams: host → base URL.
    pub upstreams: HashMap<String, String>,
    pub config: ProxyConfig,
    /// Requests in flight per grant key.
    pub in_flight: Counts,
    /// Connections attributed per grant key.
    pub connections: Counts,
    pub ledger: usage::Ledger,
}

/// Counts per grant key (the SHA-256 of its id, as the store keys grants),
/// each held by a [`Held`] until it is dropped.
pub(crate) type Counts = Arc<Mutex<HashMap<String, usize>>>;

/// Counts one for `key` in `counts` unless it is at `cap` already.
fn hold(counts: &Counts, key: &str, cap: usize) -> Option<Held> {
    let mut map = counts.lock().unwrap_or_else(PoisonError::into_inner);
    let n = map.entry(key.to_owned()).or_insert(0);
    if *n >= cap.max(1) {
        return None;
    }
    *n += 1;
    Some(Held { map: counts.clone(), key: key.to_owned() })
}

impl Shared {
    /// The provider whose egress lists `host` (hosts and token endpoints).
    fn intercepts(host: &str) -> bool {
        Provider::ALL.iter().any(|&p| crate::providers::spec(p).egress.allows_host(host))
    }

    /// Counts one request in flight for the grant `key`; `None` at the cap.
    fn enter(&self, key: &str) -> Option<Held> {
        hold(&self.in_flight, key, self.config.max_requests_per_task)
    }

    /// Counts one more connection attributed to the grant `key`; `None` at
    /// the cap.
    fn attribute(&self, key: &str) -> Option<Held> {
        hold(&self.connections, key, self.config.max_connections_per_task)
    }
}

/// One request in flight for a task (until dropped with its answer's body),
/// or one connection attributed to it (until the connection closes).
pub(crate) struct Held {
    map: Counts,
    key: String,
}

impl Held {
    /// The grant key this counts for.
    pub(crate) fn key(&self) -> &str {
        &self.key
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// `host=url,…` (`SESAME_PROXY__UPSTREAMS`, tests only).
fn parse_upstreams(text: Option<&str>) -> anyhow::Result<HashMap<String, String>> {
    let mut map = HashMap::new();
    for item in text.unwrap_or("").split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((host, url)) = item.split_once('=') else {
            bail!("SESAME_PROXY__UPSTREAMS: `{item}` is not host=url");
        };
        let parsed =
            url::Url::parse(url.trim()).with_context(|| format!("SESAME_PROXY__UPSTREAMS: `{url}` is not a URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            bail!("SESAME_PROXY__UPSTREAMS: `{url}` is not an http(s) URL");
        }
        map.insert(host.trim().to_ascii_lowercase(), url.trim().trim_end_matches('/').to_owned());
    }
    Ok(map)
}

/// The proxy's TLS client when `SESAME_PROXY__UPSTREAM_CA` is set (tests
/// only): that CA is the only root.
fn test_upstream_tls(path: &Path) -> anyhow::Result<tokio_rustls::rustls::ClientConfig> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let what = || format!("SESAME_PROXY__UPSTREAM_CA: {}", path.display());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(path).with_context(what)? {
        roots.add(cert.with_context(what)?).with_context(what)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("the proxy's TLS client")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

impl Proxy {
    /// Binds `config.listen` and loads the CA (generating it in `data_dir`
    /// on first use); `None` when the proxy is off.
    pub async fn bind(config: &ProxyConfig, data_dir: &Path) -> anyhow::Result<Option<Proxy>> {
        let Some(listen) = config.listen else { return Ok(None) };
        let ca = ca::Ca::load_or_generate(config.ca_cert.as_deref(), config.ca_key.as_deref(), data_dir)?;
        let upstreams = parse_upstreams(config.upstreams.as_deref())?;
        if !upstreams.is_empty() {
            tracing::warn!(
                hosts = upstreams.len(),
                "SESAME_PROXY__UPSTREAMS is set: provider hosts are sent elsewhere (for tests only)"
            );
        }
        let listener =
            TcpListener::bind(listen).await.with_context(|| format!("listening on {listen} (SESAME_PROXY__LISTEN)"))?;
        let addr = listener.local_addr().context("the proxy listener has no address")?;
        let url = config.public_url.clone().unwrap_or_else(|| format!("http://{addr}"));
        let access = ProxyAccess { url, ca_cert_pem: ca.public_pem().to_owned() };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let https = match &config.upstream_ca {
            None => hyper_rustls::HttpsConnectorBuilder::new()
                .with_provider_and_webpki_roots(tokio_rustls::rustls::crypto::ring::default_provider())
                .context("the proxy's TLS client")?,
            Some(path) => {
                tracing::warn!(
                    "SESAME_PROXY__UPSTREAM_CA is set: upstreams are trusted by that CA only (for tests only)"
                );
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(test_upstream_tls(path)?)
            }
        }
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        Ok(Some(Proxy { listener, addr, access, config: config.clone(), ca, upstreams, client }))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where tasks reach the proxy and the CA they trust (schema data for
    /// the issuance side).
    pub fn access(&self) -> ProxyAccess {
        self.access.clone()
    }

    /// Serves until the shutdown; usage is flushed to the store every
    /// second and once more at the end ([`Running::stopped`]).
    pub fn start(self, handle: ProxyHandle) -> Running {
        let Proxy { listener, ca, upstreams, client, config, .. } = self;
        let ledger = usage::Ledger::default();
        let shared = Arc::new(Shared {
            ca,
            handle: handle.clone(),
            client,
            upstreams,
            config,
            in_flight: Arc::default(),
            connections: Arc::default(),
            ledger: ledger.clone(),
        });
        // Grants are kept between requests while changes are heard of
        // (SQLite: this watcher; PostgreSQL: the relay).
        let watcher = handle.watch();
        let accept = tokio::spawn(accept_loop(listener, shared));
        let flusher = tokio::spawn(ledger.clone().run(handle.clone()));
        Running { accept, flusher, watcher, ledger, handle }
    }
}

/// Where tasks reach an egress proxy that runs as its own process
/// (`sesame-vault proxy`), for `serve` when `SESAME_PROXY__PUBLIC_URL` is
/// set and `SESAME_PROXY__LISTEN` is not: that URL, and the proxy's CA
/// certificate from `SESAME_PROXY__CA_CERT` or the data directory (never
/// generated here: a CA the proxy does not hold would break every task's
/// TLS, and the signing key stays with the proxy). `None`: no proxy anywhere.
pub fn external_access(config: &ProxyConfig, data_dir: &Path) -> anyhow::Result<Option<ProxyAccess>> {
    let (None, Some(url)) = (config.listen, &config.public_url) else { return Ok(None) };
    let parsed = url::Url::parse(url).with_context(|| format!("SESAME_PROXY__PUBLIC_URL: `{url}` is not a URL"))?;
    if parsed.scheme() != "http" || parsed.host_str().is_none() {
        bail!("SESAME_PROXY__PUBLIC_URL: `{url}` must be http://host:port (tasks CONNECT through it)");
    }
    let cert = match &config.ca_cert {
        Some(cert) => cert.clone(),
        None => {
            let cert = data_dir.join(ca::CERT_FILE);
            if !cert.exists() {
                bail!(
                    "SESAME_PROXY__PUBLIC_URL is set without SESAME_PROXY__LISTEN, so tasks go to a proxy run as its \
                     own process, but its CA certificate {} does not exist: start `sesame-vault proxy` on this data \
                     directory first (it generates the CA), or set SESAME_PROXY__CA_CERT to the proxy's CA certificate",
                    cert.display()
                );
            }
            cert
        }
    };
    let ca_cert_pem = ca::Ca::public_only(&cert)?;
    Ok(Some(ProxyAccess { url: url.clone(), ca_cert_pem }))
}

/// The serving proxy.
pub struct Running {
    accept: tokio::task::JoinHandle<()>,
    flusher: tokio::task::JoinHandle<()>,
    watcher: Option<tokio::task::JoinHandle<()>>,
    ledger: usage::Ledger,
    handle: ProxyHandle,
}

impl Running {
    /// After the shutdown signal: waits (at most `grace`) for the accept
    /// loop and the usage flusher, then flushes what is left.
    pub async fn stopped(self, grace: Duration) {
        let _ = tokio::time::timeout(grace, async {
            let _ = self.accept.await;
            let _ = self.flusher.await;
        })
        .await;
        if let Some(watcher) = self.watcher {
            watcher.abort();
        }
        self.ledger.flush_now(&self.handle).await;
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(shared.config.max_connections.max(1)));
    let mut backoff = Duration::from_millis(10);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => { backoff = Duration::from_millis(10); pair }
                Err(e) => {
                    // EMFILE and friends: wait instead of spinning.
                    tracing::warn!(error = %e, "the proxy could not accept a connection");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
            () = crate::shutdown::triggered() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            crate::metrics::proxy_request("none", "connection_cap");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(tunnel::serve(shared.clone(), stream, slot));
    }
    // Connections still open finish their exchanges (`tunnel::serve`
    // watches the signal too); the ones in flight get the grace period.
    let _ =
        tokio::time::timeout(Duration::from_secs(5), slots.acquire_many(shared.config.max_connections.max(1) as u32))
            .await;
}

/// The HTTP/1.1 server settings for both the outer connection and the
/// requests inside a tunnel.
fn http1(config: &ProxyConfig) -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new()).header_read_timeout(config.header_timeout).max_header_size(MAX_HEAD).keep_alive(true);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_parse() {
        let m =
            parse_upstreams(Some("api.anthropic.com=http://127.0.0.1:4001/, Chatgpt.com=http://127.0.0.1:4002/base"))
                .unwrap();
        assert_eq!(m["api.anthropic.com"], "http://127.0.0.1:4001");
        assert_eq!(m["chatgpt.com"], "http://127.0.0.1:4002/base");
        assert!(parse_upstreams(Some("nothing")).is_err());
        assert!(parse_upstreams(Some("a=ftp://x")).is_err());
        assert!(parse_upstreams(None).unwrap().is_empty());
    }

    #[test]
    fn a_proxy_in_its_own_process_is_named_by_its_url_and_ca() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ProxyConfig::default();
        assert!(external_access(&config, dir.path()).unwrap().is_none(), "no proxy anywhere");
        config.public_url = Some("http://gw:8443".into());
        // Before the proxy generated its CA: refused, saying what to do.
        let err = external_access(&config, dir.path()).unwrap_err().to_string();
        assert!(err.contains("sesame-vault proxy") && err.contains("SESAME_PROXY__CA_CERT"), "{err}");
        assert!(!dir.path().join(ca::KEY_FILE).exists(), "serve never generates the proxy's key");
        let generated = ca::Ca::load_or_generate(None, None, dir.path()).unwrap();
        let access = external_access(&config, dir.path()).unwrap().expect("the proxy elsewhere");
        assert_eq!(access.url, "http://gw:8443");
        assert_eq!(access.ca_cert_pem, generated.public_pem());
        // The certificate alone, named (the key stays with the proxy).
        config.ca_cert = Some(dir.path().join(ca::CERT_FILE));
        assert_eq!(external_access(&config, dir.path()).unwrap().unwrap().ca_cert_pem, access.ca_cert_pem);
        // A certificate that is not a CA's.
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["gw".to_owned()]).unwrap().self_signed(&key).unwrap();
        let leaf_path = dir.path().join("leaf.pem");
        std::fs::write(&leaf_path, leaf.pem()).unwrap();
        config.ca_cert = Some(leaf_path);
        let err = external_access(&config, dir.path()).unwrap_err().to_string();
        assert!(err.contains("is not a CA certificate"), "{err}");
        // A URL tasks cannot CONNECT through.
        config.ca_cert = None;
        config.public_url = Some("https://gw:8443".into());
        assert!(external_access(&config, dir.path()).unwrap_err().to_string().contains("http://host:port"));
        // With a listener of its own, `serve` names that one instead.
        config.public_url = Some("http://gw:8443".into());
        config.listen = Some("127.0.0.1:0".parse().unwrap());
        assert!(external_access(&config, dir.path()).unwrap().is_none());
    }

    #[test]
    fn only_provider_hosts_are_intercepted() {
        assert!(Shared::intercepts("api.anthropic.com"));
        assert!(Shared::intercepts("auth.openai.com"));
        assert!(!Shared::intercepts("example.com"));
        assert!(!Shared::intercepts("registry.npmjs.org"));
    }
}
