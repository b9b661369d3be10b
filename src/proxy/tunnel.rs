//! One connection to the proxy: its CONNECT, then TLS with the host's leaf
//! certificate, then the requests inside (`exchange.rs`).
//!
//! Only a CONNECT to port 443 of a host some provider's `egress` lists is
//! accepted; any other host gets 403 (nothing is tunnelled blindly), a
//! request that is not a CONNECT 405, a malformed CONNECT 400.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_rustls::TlsAcceptor;

use super::{Held, ProxyBody, Shared};

/// A TLS tunnel to one intercepted host.
pub(crate) struct Tunnel {
    /// Lower case, as CONNECT named it.
    pub host: String,
    pub port: u16,
    /// Requests refused on this connection (it is closed after
    /// [`super::MAX_REFUSALS`]).
    pub refused: AtomicU32,
    /// The tasks this connection counts for (`max_connections_per_task`),
    /// released when it closes (the last `Arc` of the tunnel goes: the
    /// connection's service, or a WebSocket spliced from it).
    pub attributed: Mutex<Vec<Held>>,
}

impl Tunnel {
    /// The authority the provider sees (`host`, or `host:port` off 443).
    pub fn authority(&self) -> String {
        if self.port == 443 {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// A tunnel to `host:port`, attributed to no task yet.
    pub fn new(host: String, port: u16) -> Tunnel {
        Tunnel { host, port, refused: AtomicU32::new(0), attributed: Mutex::default() }
    }

    /// Counts this connection for the grant `key` (once per connection);
    /// false when that task holds `max_connections_per_task` others.
    pub fn attribute(&self, shared: &Shared, key: &str) -> bool {
        let mut held = self.attributed.lock().unwrap_or_else(PoisonError::into_inner);
        if held.iter().any(|h| h.key() == key) {
            return true;
        }
        match shared.attribute(key) {
            Some(h) => {
                held.push(h);
                true
            }
            None => false,
        }
    }

    /// Counts a refusal; whether the connection should now be closed.
    pub fn refuse(&self) -> bool {
        self.refused.fetch_add(1, Ordering::Relaxed) + 1 >= super::MAX_REFUSALS
    }
}

/// A short plain-text answer (the proxy's own refusals and errors).
pub(crate) fn plain(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let mut res =
        Response::new(Full::new(Bytes::from(format!("{text}\n"))).map_err(|never| match never {}).boxed_unsync());
    *res.status_mut() = status;
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    res
}

/// A connection's slot of the connection cap, counted in the gauge; a
/// tunnel keeps it until it closes.
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    _gauge: crate::metrics::ProxyConnection,
}

/// Serves one accepted connection.
pub(crate) async fn serve(shared: Arc<Shared>, stream: TcpStream, permit: OwnedSemaphorePermit) {
    let slot = Arc::new(Slot { _permit: permit, _gauge: crate::metrics::ProxyConnection::open() });
    let builder = super::http1(&shared.config);
    let service = {
        let (shared, slot) = (shared.clone(), slot.clone());
        service_fn(move |req| outer(shared.clone(), slot.clone(), req))
    };
    let conn = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(error = %e, "proxy connection ended");
            }
        }
        () = crate::shutdown::triggered() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(shared.config.header_timeout, conn).await;
        }
    }
}

/// The request on the connection itself: a CONNECT, or refused.
async fn outer(
    shared: Arc<Shared>,
    slot: Arc<Slot>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    // For the log: which host was asked (bounded, printable; never more).
    let asked: String = req
        .uri()
        .authority()
        .map(|a| a.host().chars().filter(char::is_ascii_graphic).take(64).collect())
        .unwrap_or_default();
    let refuse = |status, text: &str| {
        crate::metrics::proxy_request("none", "refused");
        tracing::info!(status = status_u16(status), host = %asked, "proxy refused a connection request");
        let mut res = plain(status, text);
        res.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
        Ok(res)
    };
    if req.method() != Method::CONNECT {
        return refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "this is the vault's egress proxy: it only tunnels HTTPS (CONNECT) to the hosts of the providers whose credentials it holds",
        );
    }
    let Some(authority) = req.uri().authority() else {
        return refuse(StatusCode::BAD_REQUEST, "a CONNECT names the host and port to reach: CONNECT host:443");
    };
    let host = authority.host().trim_end_matches('.').to_ascii_lowercase();
    let Some(port) = authority.port_u16() else {
        return refuse(StatusCode::BAD_REQUEST, "a CONNECT names the host and port to reach: CONNECT host:443");
    };
    let valid_name = !host.is_empty()
        && host.len() <= 253
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !valid_name {
        return refuse(StatusCode::BAD_REQUEST, "a CONNECT names a DNS host name and a port");
    }
    if !Shared::intercepts(&host) {
        return refuse(
            StatusCode::FORBIDDEN,
            "this host is not one the vault's credentials are for: the proxy only reaches the providers' API hosts",
        );
    }
    if port != 443 {
        return refuse(StatusCode::FORBIDDEN, "the proxy reaches providers on port 443 only");
    }
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(intercept(shared, Arc::new(Tunnel::new(host, port)), on_upgrade, slot));
    Ok(Response::new(http_body_util::Empty::new().map_err(|never| match never {}).boxed_unsync()))
}

fn status_u16(status: StatusCode) -> u16 {
    status.as_u16()
}

/// After `200` to the CONNECT: TLS as the host, then its requests.
async fn intercept(shared: Arc<Shared>, tunnel: Arc<Tunnel>, on_upgrade: hyper::upgrade::OnUpgrade, slot: Arc<Slot>) {
    let deadline = shared.config.header_timeout;
    let Ok(Ok(upgraded)) = tokio::time::timeout(deadline, on_upgrade).await else { return };
    let config = match shared.ca.server_config(&tunnel.host) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = ?e, host = %tunnel.host, "minting the proxy's leaf certificate failed");
            return;
        }
    };
    let tls = match tokio::time::timeout(deadline, TlsAcceptor::from(config).accept(TokioIo::new(upgraded))).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::info!(host = %tunnel.host, error = %e, "a task's TLS handshake with the proxy failed (does it trust the proxy's CA?)");
            return;
        }
        Err(_) => return,
    };
    let service = {
        let (shared, tunnel) = (shared.clone(), tunnel.clone());
        service_fn(move |req| super::exchange::handle(shared.clone(), tunnel.clone(), req))
    };
    let conn = super::http1(&shared.config).serve_connection(TokioIo::new(tls), service).with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(error = %e, host = %tunnel.host, "proxy tunnel ended");
            }
        }
        () = crate::shutdown::triggered() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(shared.config.header_timeout, conn).await;
        }
    }
    drop(slot);
}
