//! Polling device flows: one poller per pending flow, holding its lease;
//! a sweep starts pollers for flows nobody holds (after a restart, or an
//! instance that went away).

use std::sync::Arc;

use chrono::{Duration, Utc};
use tokio::sync::Notify;

use super::{FlowEngine, Holder, KIND_DEVICE, MAX_SLEEP, SWEEP_EVERY};
use crate::domain::FlowStatus;
use crate::error::{ApiError, ApiResult};
use crate::providers::Poll;
use crate::store::FlowRecord;

impl FlowEngine {
    /// Takes (or renews) this instance's lease on a pending flow.
    async fn claim(&self, id: &str) -> ApiResult<bool> {
        let now = Utc::now();
        self.store().claim_flow(id, &self.inner.instance, now, now + self.lease()).await
    }

    pub(super) fn spawn_poller(&self, id: String) {
        // Shutting down: the flow stays for another instance (or the restart).
        if crate::shutdown::is_triggered() {
            return;
        }
        let notify = {
            let mut running = self.inner.running.lock().expect("flow map");
            if running.contains_key(&id) {
                return;
            }
            let notify = Arc::new(Notify::new());
            running.insert(id.clone(), notify.clone());
            notify
        };
        let engine = self.clone();
        tokio::spawn(async move {
            if let Err(e) = engine.poll_loop(&id, &notify).await {
                // Internal trouble (database): leave the flow pending; the
                // sweep retries it.
                tracing::error!(flow = %id, error = ?e, "flow poller stopped");
            }
            engine.inner.running.lock().expect("flow map").remove(&id);
        });
    }

    async fn poll_loop(&self, id: &str, wake: &Notify) -> ApiResult<()> {
        loop {
            // Between polls: a shutdown stops here, never mid-request.
            if crate::shutdown::is_triggered() {
                return Ok(());
            }
            if !self.claim(id).await? {
                return Ok(()); // finished, cancelled, or another instance has it
            }
            let Some(row) = self.store().flow(id).await? else { return Ok(()) };
            let now = Utc::now();
            if now >= row.expires_at {
                self.finish(
                    &row,
                    FlowStatus::Expired,
                    Some("the code expired before the sign-in was completed; start again".into()),
                    None,
                    Holder::Lease(&self.inner.instance),
                )
                .await?;
                return Ok(());
            }
            let wait = (row.next_poll_at - now).min(row.expires_at - now).min(MAX_SLEEP);
            if wait > Duration::zero() {
                tokio::select! {
                    _ = tokio::time::sleep(wait.to_std().unwrap_or_default()) => {}
                    _ = wake.notified() => {}
                    _ = crate::shutdown::triggered() => {}
                }
                continue;
            }
            self.poll_once(&row).await?;
        }
    }

    async fn poll_once(&self, row: &FlowRecord) -> ApiResult<()> {
        let secret = self.open(row)?;
        let provider = row.provider.parse().map_err(ApiError::internal)?;
        let outcome = self.store().providers().poll(provider, &secret).await;
        let now = Utc::now();
        let store = self.store();
        let me = self.inner.instance.as_str();
        match outcome {
            Poll::Pending => {
                let next = now + Duration::seconds(row.interval_secs.into());
                store.schedule_flow_poll(&row.id, me, next, 0).await?;
            }
            Poll::SlowDown => {
                // RFC 8628: +5 s, for this and every later poll.
                let interval = row.interval_secs + 5;
                let next = now + Duration::seconds(interval.into());
                if store.slow_down_flow(&row.id, me, interval, next).await? {
                    if let Some(fresh) = store.flow(&row.id).await? {
                        self.publish_row(&fresh).await?;
                    }
                }
            }
            Poll::Transient(why) => {
                let failures = row.failures + 1;
                if failures as u32 >= self.config().max_poll_failures {
                    let message = format!(
                        "{} could not be reached after {failures} attempts ({why}); start the sign-in again later",
                        crate::providers::spec(row.provider.parse().map_err(ApiError::internal)?).name
                    );
                    self.finish(row, FlowStatus::Failed, Some(message), None, Holder::Lease(me)).await?;
                } else {
                    let backoff = i64::from(row.interval_secs) << failures.min(5);
                    store.schedule_flow_poll(&row.id, me, now + Duration::seconds(backoff.min(60)), failures).await?;
                }
            }
            Poll::Authorized(tokens) => {
                // Still ours and still pending? A cancel during the request wins.
                if self.claim(&row.id).await? {
                    let meta = self.store_tokens(row, tokens, None).await?;
                    self.finish(row, FlowStatus::Authorized, None, Some(meta.id), Holder::Lease(me)).await?;
                }
            }
            Poll::Denied(m) => {
                self.finish(row, FlowStatus::Denied, Some(m), None, Holder::Lease(me)).await?;
            }
            Poll::Expired(m) => {
                self.finish(row, FlowStatus::Expired, Some(m), None, Holder::Lease(me)).await?;
            }
            Poll::Failed(m) => {
                self.finish(row, FlowStatus::Failed, Some(m), None, Holder::Lease(me)).await?;
            }
        }
        Ok(())
    }

    /// At shutdown: waits (at most `grace`) for this instance's pollers to
    /// stop between polls, then releases their leases, so another instance's
    /// next sweep takes the flows over at once instead of after the lease
    /// runs out. Returns how many leases were released. Safe to call again
    /// (a flow started by a request that was still running).
    pub async fn release_leases(&self, grace: std::time::Duration) -> ApiResult<u64> {
        let deadline = tokio::time::Instant::now() + grace;
        while !self.inner.running.lock().expect("flow map").is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let still = self.inner.running.lock().expect("flow map").len();
        if still > 0 {
            tracing::warn!(pollers = still, "sign-in pollers still busy at the end of the grace period");
        }
        let released = self.store().release_flow_leases(&self.inner.instance).await?;
        if released > 0 {
            tracing::info!(flows = released, "released sign-in flow leases for another instance");
        }
        Ok(released)
    }

    /// Starts pollers for pending device flows that no live instance holds.
    /// `take_over` ignores leases (a single-instance SQLite start-up, where
    /// any lease is left over from this same service's previous run).
    pub async fn sweep(&self, take_over: bool) -> ApiResult<usize> {
        let rows = self.store().unheld_pending_flows(KIND_DEVICE, take_over, Utc::now()).await?;
        let mut started = 0;
        for row in rows {
            if take_over {
                self.store().clear_flow_lease(&row).await?;
            }
            let running = self.inner.running.lock().expect("flow map").contains_key(&row.id);
            if !running {
                self.spawn_poller(row.id);
                started += 1;
            }
        }
        Ok(started)
    }

    /// Resumes polling after a start, then keeps sweeping for orphans.
    pub fn run_background(&self, take_over_on_start: bool) {
        let engine = self.clone();
        tokio::spawn(async move {
            match engine.sweep(take_over_on_start).await {
                Ok(n) if n > 0 => tracing::info!(flows = n, "resumed pending sign-in flows"),
                Ok(_) => {}
                Err(e) => tracing::error!(error = ?e, "resuming sign-in flows failed"),
            }
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = engine.sweep(false).await {
                    tracing::warn!(error = ?e, "sign-in flow sweep failed");
                }
            }
        });
    }
}
