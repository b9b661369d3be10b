//! Background jobs on tokio-cron-scheduler: the expiry scan, token refresh,
//! housekeeping and the checks with providers, each on its own schedule
//! (empty disables it).
//!
//! Every instance runs the scheduler; on PostgreSQL each run of the first
//! three first takes a transaction-scoped advisory lock named after its
//! job, so one instance at a time does the work and the others skip. The
//! checks job shares its work instead: each credential is claimed on its
//! row (`crate::checks::job`). The jobs are idempotent besides
//! (transitions and refreshes are compare-and-swap). Jobs read the time
//! from the store's clock (`crate::clock`), the one tests can shift.

use std::future::Future;

use anyhow::Context;
use chrono::Duration;
use serde::{Deserialize, Serialize};
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::checks::Checker;
use crate::error::ApiResult;
use crate::flows::FlowEngine;
use crate::store::Store;

/// Background jobs: 6-field cron expressions in UTC (seconds first); an
/// empty string disables a job.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    pub expiry_scan: String,
    pub refresh: String,
    pub housekeeping: String,
    /// Re-checks credentials with their provider (see `[checks]`).
    pub checks: String,
    /// Credentials expiring within this become EXPIRING.
    #[serde(with = "humantime_serde")]
    pub expiring_within: std::time::Duration,
    /// Refreshable credentials are refreshed this long before expiry.
    #[serde(with = "humantime_serde")]
    pub refresh_before: std::time::Duration,
    /// Finished sign-in flows are deleted after this.
    #[serde(with = "humantime_serde")]
    pub flow_retention: std::time::Duration,
    /// Delivered credential events are deleted after this.
    #[serde(with = "humantime_serde")]
    pub event_retention: std::time::Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        SchedulerConfig {
            expiry_scan: "0 */5 * * * *".into(),
            refresh: "30 * * * * *".into(),
            housekeeping: "0 17 3 * * *".into(),
            checks: "0 */10 * * * *".into(),
            expiring_within: std::time::Duration::from_secs(7 * DAY),
            refresh_before: std::time::Duration::from_secs(600),
            flow_retention: std::time::Duration::from_secs(7 * DAY),
            event_retention: std::time::Duration::from_secs(30 * DAY),
        }
    }
}

/// Advisory lock keys, one per job (arbitrary, stable).
const LOCK_EXPIRY: i64 = 0x5e5a_0001;
const LOCK_REFRESH: i64 = 0x5e5a_0002;
const LOCK_HOUSEKEEPING: i64 = 0x5e5a_0003;

fn duration(d: std::time::Duration) -> Duration {
    Duration::from_std(d).unwrap_or(Duration::MAX)
}

/// Runs `job` unless another instance holds its lock (PostgreSQL only;
/// SQLite has one instance).
pub async fn exclusive<F, Fut, T>(store: &Store, lock: i64, job: F) -> ApiResult<Option<T>>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ApiResult<T>>,
{
    store.run_exclusive(lock, job).await
}

/// Runs one job: not at all once the shutdown has started (the shutdown
/// waits for runs in progress: `crate::shutdown::JOBS`), logged at INFO
/// with its report and duration (DEBUG when another replica had it), and
/// counted in `sesame_scheduler_runs_total` / `_duration_seconds`.
async fn run_job<T: std::fmt::Debug>(job: &'static str, run: impl Future<Output = ApiResult<Option<T>>>) {
    if crate::shutdown::is_triggered() {
        return;
    }
    let _running = crate::shutdown::JOBS.enter();
    let started = std::time::Instant::now();
    let result = run.await;
    let took = started.elapsed();
    let duration_ms = took.as_secs_f64() * 1000.0;
    let outcome = match &result {
        Ok(Some(report)) => {
            tracing::info!(job, ?report, duration_ms, "scheduler job ran");
            "ran"
        }
        Ok(None) => {
            tracing::debug!(job, duration_ms, "scheduler job running on another instance");
            "skipped"
        }
        Err(e) => {
            tracing::error!(job, error = ?e, duration_ms, "scheduler job failed");
            "failed"
        }
    };
    crate::metrics::job_run(job, outcome, took);
}

/// Builds and starts the scheduler; `None` when every job is disabled.
pub async fn start(
    store: Store,
    flows: FlowEngine,
    checker: Checker,
    config: SchedulerConfig,
) -> anyhow::Result<Option<JobScheduler>> {
    let scheduler = JobScheduler::new().await.context("starting the scheduler")?;
    let mut jobs = 0;

    let add = |name: &'static str, schedule: &str| -> anyhow::Result<Option<String>> {
        let schedule = schedule.trim();
        if schedule.is_empty() {
            tracing::info!(job = name, "disabled");
            return Ok(None);
        }
        // Validate here so a typo stops start-up with the setting's name.
        croner_check(schedule).with_context(|| {
            format!("scheduler.{name}: {schedule:?} is not a 6-field cron expression (sec min hour day month weekday)")
        })?;
        Ok(Some(schedule.to_owned()))
    };

    if let Some(schedule) = add("expiry_scan", &config.expiry_scan)? {
        let (store, within) = (store.clone(), duration(config.expiring_within));
        scheduler
            .add(Job::new_async(schedule.as_str(), move |_, _| {
                let store = store.clone();
                Box::pin(async move {
                    let operator = store.operator_unchecked();
                    run_job(
                        "expiry_scan",
                        exclusive(&store, LOCK_EXPIRY, || operator.scan_expiry(store.clock().now(), within)),
                    )
                    .await;
                })
            })?)
            .await?;
        jobs += 1;
    }
    if let Some(schedule) = add("refresh", &config.refresh)? {
        let (store, before) = (store.clone(), duration(config.refresh_before));
        scheduler
            .add(Job::new_async(schedule.as_str(), move |_, _| {
                let store = store.clone();
                Box::pin(async move {
                    let operator = store.operator_unchecked();
                    run_job(
                        "refresh",
                        exclusive(&store, LOCK_REFRESH, || operator.refresh_due(store.clock().now(), before)),
                    )
                    .await;
                })
            })?)
            .await?;
        jobs += 1;
    }
    if let Some(schedule) = add("housekeeping", &config.housekeeping)? {
        let (store, flows) = (store.clone(), flows.clone());
        let (flow_retention, event_retention) = (duration(config.flow_retention), duration(config.event_retention));
        scheduler
            .add(Job::new_async(schedule.as_str(), move |_, _| {
                let (store, flows) = (store.clone(), flows.clone());
                Box::pin(async move {
                    let now = store.clock().now();
                    let work = || async {
                        let flows_deleted = flows.delete_finished_before(now - flow_retention).await?;
                        let rest = store.operator_unchecked().housekeeping(now, now - event_retention).await?;
                        Ok((flows_deleted, rest))
                    };
                    run_job("housekeeping", exclusive(&store, LOCK_HOUSEKEEPING, work)).await;
                })
            })?)
            .await?;
        jobs += 1;
    }
    if let Some(schedule) = add("checks", &config.checks)? {
        let (store, checker) = (store.clone(), checker.clone());
        scheduler
            .add(Job::new_async(schedule.as_str(), move |_, _| {
                let (store, checker) = (store.clone(), checker.clone());
                Box::pin(async move {
                    // No advisory lock: every replica takes part, and each
                    // credential is claimed on its row before it is checked.
                    run_job("checks", async { crate::checks::job::run(&store, &checker).await.map(Some) }).await;
                })
            })?)
            .await?;
        jobs += 1;
    }
    if jobs == 0 {
        return Ok(None);
    }
    scheduler.start().await.context("starting the scheduler")?;
    Ok(Some(scheduler))
}

fn croner_check(schedule: &str) -> anyhow::Result<()> {
    if schedule.split_whitespace().count() != 6 {
        anyhow::bail!("expected 6 fields");
    }
    Job::new_async(schedule, |_, _| Box::pin(async {})).map(|_| ()).map_err(|e| anyhow::anyhow!("{e:?}"))
}
