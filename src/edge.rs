//! Connections at the edge: what a TCP connection may hold before it has
//! sent a request, and how many may be open at once (both listeners).
//!
//! poem builds hyper's connection builder itself, so hyper's own
//! `header_read_timeout` is out of reach; instead [`GuardedAcceptor`] wraps
//! poem's TCP acceptor and every connection it hands out ([`Guarded`]):
//!
//! - **Request head deadline** (`SESAME_HTTP__HEADER_TIMEOUT`, 10 s): from
//!   the connection's start, or the first byte of a following request, the
//!   whole head (request line and headers, up to the blank line) must arrive
//!   within it; a trickle of one byte every few seconds does not extend it.
//! - **Idle keep-alive** (`SESAME_HTTP__IDLE_TIMEOUT`, 60 s): a connection
//!   between requests with no traffic for this long is closed. A request
//!   being served is never cut (its own limit is `graphql.request_timeout`);
//!   an upgraded connection (a WebSocket, after `101`) is the WebSocket
//!   layer's (`crate::ws`: init timeout, token re-checks), so an idle
//!   subscription stays open.
//! - **Request body deadline** (`SESAME_HTTP__BODY_TIMEOUT`, 20 s): a busy
//!   connection cannot be evicted, so a body that trickles in is cut by
//!   `crate::http` (408, connection closed); WebSockets waiting for
//!   `connection_init` are capped by `crate::ws` at a fraction of this
//!   cap, so neither can hold every slot.
//! - **Connection cap** (`SESAME_HTTP__MAX_CONNECTIONS`, lowered at start-up
//!   to fit the process's open-file limit, `RLIMIT_NOFILE`, with room for
//!   the database and files): at the cap a new connection evicts the oldest
//!   one that is waiting (for a request head, or idle between requests), so
//!   held sockets cannot lock `/health` or anyone else out; if every
//!   connection is busy, the new one is closed at once.
//! - **Accept back-off**: `EMFILE`/`ENFILE` (and `ENOBUFS`/`ENOMEM`) make
//!   accept wait (10 ms, doubling to 1 s) instead of spinning.

use std::collections::BTreeMap;
use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use poem::http::uri::Scheme;
use poem::listener::{Acceptor, TcpAcceptor};
use poem::web::{LocalAddr, RemoteAddr};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// How long a request head (request line and headers) may take to arrive.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// How long a request body may take to arrive once its head is in
    /// (`crate::http` answers 408 and closes the connection after it).
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// How long a keep-alive connection may sit idle between requests.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Open connections at most (both listeners); lowered at start-up to fit
    /// the open-file limit.
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            max_connections: 65_536,
        }
    }
}

/// Descriptors kept for everything but client connections: the database
/// pool, the SQLite files, outgoing provider calls, logs.
fn reserved_descriptors(limit: u64) -> u64 {
    (limit / 4).clamp(64, 4096)
}

/// The open-file limit of this process (soft), if it can be read.
fn open_file_limit() -> Option<u64> {
    let (soft, _hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).ok()?;
    (soft != rlimit::INFINITY).then_some(soft)
}

/// The connection caps of the public and the metrics listener: the setting,
/// lowered to fit the open-file limit.
pub fn connection_caps(config: &HttpConfig, metrics: bool) -> (usize, usize) {
    let mut cap = config.max_connections.max(2);
    if let Some(limit) = open_file_limit() {
        let fit = limit.saturating_sub(reserved_descriptors(limit)).max(2);
        let fit = usize::try_from(fit).unwrap_or(usize::MAX);
        if fit < cap {
            tracing::info!(
                setting = cap,
                open_file_limit = limit,
                cap = fit,
                "the connection cap is lowered to fit the open-file limit (RLIMIT_NOFILE)"
            );
            cap = fit;
        }
    }
    if !metrics {
        return (cap, 0);
    }
    let metrics_cap = (cap / 16).clamp(1, 64);
    (cap - metrics_cap, metrics_cap)
}

const WAITING_HEAD: u8 = 0;
const BUSY: u8 = 1;
const IDLE: u8 = 2;
const UPGRADED: u8 = 3;

/// What the acceptor knows of one live connection.
struct Entry {
    phase: AtomicU8,
    evicted: AtomicBool,
    waker: AtomicWaker,
}

struct Table {
    cap: usize,
    next: AtomicU64,
    live: Mutex<BTreeMap<u64, Arc<Entry>>>,
}

impl Table {
    /// Makes room for one more connection: evicts the oldest waiting one
    /// when at the cap; `None` when every connection is busy.
    fn admit(&self) -> Option<(u64, Arc<Entry>)> {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let open = live.values().filter(|e| !e.evicted.load(Ordering::Acquire)).count();
        if open >= self.cap {
            let oldest = live.values().find(|e| {
                !e.evicted.load(Ordering::Acquire) && matches!(e.phase.load(Ordering::Acquire), WAITING_HEAD | IDLE)
            });
            let oldest = oldest?;
            oldest.evicted.store(true, Ordering::Release);
            oldest.waker.wake();
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new(Entry {
            phase: AtomicU8::new(WAITING_HEAD),
            evicted: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        });
        live.insert(id, entry.clone());
        Some((id, entry))
    }

    fn remove(&self, id: u64) {
        self.live.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
    }
}

/// poem's TCP acceptor with the limits above.
pub struct GuardedAcceptor {
    inner: TcpAcceptor,
    table: Arc<Table>,
    config: HttpConfig,
    name: &'static str,
}

impl GuardedAcceptor {
    pub fn new(inner: TcpAcceptor, config: &HttpConfig, cap: usize, name: &'static str) -> GuardedAcceptor {
        let table = Arc::new(Table { cap, next: AtomicU64::new(0), live: Mutex::new(BTreeMap::new()) });
        GuardedAcceptor { inner, table, config: config.clone(), name }
    }
}

/// Errors that mean "out of descriptors or memory": wait before the next try.
fn is_resource_exhaustion(e: &io::Error) -> bool {
    // EMFILE 24, ENFILE 23, ENOBUFS 105, ENOMEM 12 (Linux).
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}

const BACKOFF_START: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

impl Acceptor for GuardedAcceptor {
    type Io = Guarded;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Guarded, LocalAddr, RemoteAddr, Scheme)> {
        let mut backoff = BACKOFF_START;
        loop {
            let (io, local, remote, scheme) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(e) if is_resource_exhaustion(&e) => {
                    if backoff == BACKOFF_START {
                        tracing::warn!(listener = self.name, error = %e, "accepting connections: out of descriptors; waiting");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
                // A connection reset before it was accepted, and the like.
                Err(_) => continue,
            };
            backoff = BACKOFF_START;
            let Some((id, entry)) = self.table.admit() else {
                tracing::debug!(listener = self.name, "connection refused: every connection is busy");
                drop(io);
                continue;
            };
            let guarded = Guarded::new(io, id, entry, self.table.clone(), &self.config);
            return Ok((guarded, local, remote, scheme));
        }
    }
}

/// One connection with its deadlines; leaves the table when dropped.
pub struct Guarded {
    io: TcpStream,
    id: u64,
    entry: Arc<Entry>,
    table: Arc<Table>,
    header_timeout: Duration,
    idle_timeout: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
    /// Newlines seen in a row in the request head (`\r` skipped): two end it.
    newline_run: bool,
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.table.remove(self.id);
    }
}

impl Guarded {
    fn new(io: TcpStream, id: u64, entry: Arc<Entry>, table: Arc<Table>, config: &HttpConfig) -> Guarded {
        let mut guarded = Guarded {
            io,
            id,
            entry,
            table,
            header_timeout: config.header_timeout,
            idle_timeout: config.idle_timeout,
            deadline: None,
            newline_run: false,
        };
        guarded.set_deadline(config.header_timeout);
        guarded
    }

    fn phase(&self) -> u8 {
        self.entry.phase.load(Ordering::Acquire)
    }

    fn set_phase(&self, phase: u8) {
        self.entry.phase.store(phase, Ordering::Release);
    }

    fn set_deadline(&mut self, after: Duration) {
        let at = Instant::now() + after;
        match &mut self.deadline {
            Some(sleep) => sleep.as_mut().reset(at),
            None => self.deadline = Some(Box::pin(tokio::time::sleep_until(at))),
        }
    }

    /// Follows the request head through the bytes just read.
    fn saw_read(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        match self.phase() {
            IDLE => {
                // The next request starts: its head has `header_timeout`.
                self.set_phase(WAITING_HEAD);
                self.newline_run = false;
                self.set_deadline(self.header_timeout);
                self.scan_head(bytes);
            }
            WAITING_HEAD => self.scan_head(bytes),
            _ => {}
        }
    }

    fn scan_head(&mut self, bytes: &[u8]) {
        for &b in bytes {
            match b {
                b'\n' if self.newline_run => {
                    self.set_phase(BUSY);
                    return;
                }
                b'\n' => self.newline_run = true,
                b'\r' => {}
                _ => self.newline_run = false,
            }
        }
    }

    /// The server answers: after a `101` the connection is upgraded;
    /// otherwise it is idle between requests once the answer is written.
    fn saw_write(&mut self, first: &[u8]) {
        match self.phase() {
            BUSY if first.starts_with(b"HTTP/1.1 101") => self.set_phase(UPGRADED),
            // `100 Continue`: the request body follows.
            BUSY if first.starts_with(b"HTTP/1.1 100") => {}
            BUSY | IDLE => {
                self.set_phase(IDLE);
                self.set_deadline(self.idle_timeout);
            }
            _ => {}
        }
    }

    /// While waiting for a head or idle: whether the deadline has passed
    /// (or the connection was evicted), as an error that ends it.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        self.entry.waker.register(cx.waker());
        if self.entry.evicted.load(Ordering::Acquire) {
            return Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, "evicted: the connection cap was reached"));
        }
        if !matches!(self.phase(), WAITING_HEAD | IDLE) {
            return Poll::Pending;
        }
        let expired = self.deadline.as_mut().is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready());
        if expired {
            return Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, "the connection sent no request in time"));
        }
        Poll::Pending
    }
}

impl AsyncRead for Guarded {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Poll::Ready(e) = this.poll_expired(cx) {
            return Poll::Ready(Err(e));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = buf.filled()[before..].to_vec();
                this.saw_read(&read);
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            this.saw_write(&buf[..n]);
        }
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_leave_room_for_other_descriptors() {
        assert_eq!(reserved_descriptors(1024), 256);
        assert_eq!(reserved_descriptors(100), 64);
        assert_eq!(reserved_descriptors(1 << 20), 4096);
        let (public, metrics) = connection_caps(&HttpConfig { max_connections: 100, ..HttpConfig::default() }, true);
        assert!(public + metrics <= 100);
        assert!(metrics >= 1);
    }
}
