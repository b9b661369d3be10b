//! Graceful shutdown. SIGTERM or SIGINT (Ctrl-C) sets one process-wide
//! signal ([`trigger`]); everything that must stop watches it:
//!
//! 1. the listeners stop accepting and in-flight requests finish, for at
//!    most `shutdown.grace` (`SESAME_SHUTDOWN__GRACE`, 20 s) — `crate::ops`;
//! 2. every WebSocket session closes with 1001 (Going Away) — `crate::ws`;
//! 3. the scheduler starts no new run and running jobs finish — `crate::scheduler`;
//! 4. sign-in pollers stop between polls and their leases are released, so
//!    another replica's next sweep (every few seconds) takes the flows
//!    over — `crate::flows`;
//!
//! then `serve` returns and the process exits 0. A second signal during
//! the grace period exits at once (status 1).

use std::sync::LazyLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// How long in-flight work may take after SIGTERM/SIGINT.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig { grace: Duration::from_secs(20) }
    }
}

static SIGNAL: LazyLock<watch::Sender<bool>> = LazyLock::new(|| watch::channel(false).0);

/// Starts the shutdown (idempotent).
pub fn trigger() {
    SIGNAL.send_if_modified(|stopping| !std::mem::replace(stopping, true));
}

pub fn is_triggered() -> bool {
    *SIGNAL.borrow()
}

/// Completes once the shutdown has started.
pub async fn triggered() {
    let mut rx = SIGNAL.subscribe();
    let _ = rx.wait_for(|stopping| *stopping).await;
}

/// Waits for SIGTERM or SIGINT, then [`trigger`]s; a second one exits at once.
pub async fn listen_for_signals() {
    let which = next_signal().await;
    tracing::info!(signal = which, "shutting down: finishing in-flight work");
    trigger();
    let which = next_signal().await;
    tracing::warn!(signal = which, "second signal: exiting without waiting");
    std::process::exit(1);
}

async fn next_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

/// Counts live things of one kind (WebSocket sessions, scheduler runs) so
/// the shutdown can wait for them to end.
pub struct Tracker(LazyLock<watch::Sender<usize>>);

impl Tracker {
    const fn new() -> Tracker {
        Tracker(LazyLock::new(|| watch::channel(0).0))
    }

    /// Counts one until the guard is dropped.
    pub fn enter(&'static self) -> Tracked {
        self.0.send_modify(|n| *n += 1);
        Tracked(self)
    }

    pub fn count(&self) -> usize {
        *self.0.borrow()
    }

    /// Waits until none is live, for at most `limit`; whether none is.
    pub async fn idle(&self, limit: Duration) -> bool {
        let mut rx = self.0.subscribe();
        let idle = tokio::time::timeout(limit, rx.wait_for(|n| *n == 0)).await.is_ok();
        idle
    }
}

pub struct Tracked(&'static Tracker);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0 .0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Open WebSocket sessions.
pub static WEBSOCKETS: Tracker = Tracker::new();
/// Scheduler job runs in progress.
pub static JOBS: Tracker = Tracker::new();
