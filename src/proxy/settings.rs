//! `[proxy]`: the credential-injecting egress proxy (`SESAME_PROXY__*`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Where the proxy listens (`127.0.0.1:0` picks a port, printed at
    /// start-up); unset: no proxy, and `delivery: PROXY` is refused.
    pub listen: Option<SocketAddr>,
    /// The URL tasks reach the proxy at (`HTTPS_PROXY`); default
    /// `http://<the address bound>`.
    pub public_url: Option<String>,
    /// The CA certificate and key (PEM) leaf certificates are signed with;
    /// unset: generated once per vault in the data directory (key 0600).
    pub ca_cert: Option<PathBuf>,
    pub ca_key: Option<PathBuf>,
    /// For tests only: `host=url,…` sends requests for `host` to `url` plus
    /// their path (local fakes of the providers' APIs).
    pub upstreams: Option<String>,
    /// For tests only: a CA certificate (PEM) the proxy trusts for
    /// `https://` upstreams instead of the public roots (a local fake that
    /// serves TLS with a test certificate).
    pub upstream_ca: Option<PathBuf>,
    /// Connections open at once, in total.
    pub max_connections: usize,
    /// Requests in flight at once per task.
    pub max_requests_per_task: usize,
    /// Connections attributed to one task at once: a connection counts for
    /// a task from its first request that carries the task's valid
    /// placeholder until it closes.
    pub max_connections_per_task: usize,
    /// From accepting a connection to a complete request head (and between
    /// requests on a kept-alive connection).
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// The longest a proxied exchange may last (streams included).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: None,
            public_url: None,
            ca_cert: None,
            ca_key: None,
            upstreams: None,
            upstream_ca: None,
            max_connections: 1024,
            max_requests_per_task: 64,
            max_connections_per_task: 32,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30 * 60),
        }
    }
}
