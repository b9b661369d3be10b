//! The periodic job: re-checks credentials not checked for `EVERY`, and the
//! system-wide keys (also at start-up). Every replica runs it; each
//! credential is first claimed with a compare-and-swap on its row
//! (`Store::claim_for_check`), so no two replicas (or two runs) ever check
//! one credential, and one that was just checked is not due any more.

use chrono::{Duration, Utc};
use futures_util::StreamExt;

use super::run::check_row;
use super::{CheckResult, Checker, Probe};
use crate::domain::Provider;
use crate::error::ApiResult;
use crate::store::audit::Actor;
use crate::store::{system_key_fingerprint as fingerprint, Store};

/// Most credentials one run takes; the next run takes the rest, so a large
/// vault's checks spread over the day instead of arriving at once.
const BATCH: u64 = 200;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    pub checked: usize,
    pub invalid: usize,
    pub unreachable: usize,
    /// Claimed by another run or replica, or changed meanwhile.
    pub skipped: usize,
    pub system_keys: usize,
}

fn duration(d: std::time::Duration) -> Duration {
    Duration::from_std(d).unwrap_or(Duration::MAX)
}

/// One run: the system keys, then a batch of due credentials, at most
/// `per_provider` requests to one provider at once.
pub async fn run(store: &Store, checker: &Checker) -> ApiResult<CheckReport> {
    let mut report = CheckReport { system_keys: check_system_keys(store, checker).await?, ..Default::default() };
    let now = Utc::now();
    let stale_before = now - duration(checker.every());
    let candidates = store.due_for_check(now, stale_before, BATCH).await?;
    let results: Vec<ApiResult<Option<CheckResult>>> = futures_util::stream::iter(candidates)
        .map(|target| async move {
            // The turn first, then the claim: a claimed credential is
            // checked at once, never left waiting until its claim lapses.
            let provider: Provider = target.provider()?;
            let turn = checker.limits().acquire(provider).await;
            let now = Utc::now();
            if !store.claim_for_check(&target, stale_before, now, now + checker.claim_ttl()).await? {
                return Ok(None);
            }
            let meta = check_row(store, checker, Actor::System, target, Some(turn)).await?;
            Ok(Some(meta.check_result.unwrap_or(CheckResult::Unreachable)))
        })
        // Rows waiting for a turn at once; the bound per provider is the
        // checker's.
        .buffer_unordered(checker.per_provider() * Provider::ALL.len())
        .collect()
        .await;
    for result in results {
        match result {
            Ok(Some(CheckResult::Invalid)) => {
                report.checked += 1;
                report.invalid += 1;
            }
            Ok(Some(CheckResult::Unreachable)) => {
                report.checked += 1;
                report.unreachable += 1;
            }
            Ok(Some(_)) => report.checked += 1,
            Ok(None) => report.skipped += 1,
            Err(e) => {
                report.unreachable += 1;
                tracing::error!(error = ?e, "checking a credential failed");
            }
        }
    }
    Ok(report)
}

/// Checks each configured system-wide key not checked for `EVERY` (or
/// whose key changed), claiming its row first. Returns how many it checked.
pub async fn check_system_keys(store: &Store, checker: &Checker) -> ApiResult<usize> {
    let mut checked = 0;
    for &provider in Provider::ALL {
        let Some(key) = store.system_keys().get(provider) else { continue };
        let print = fingerprint(key.expose());
        let now = Utc::now();
        let stale_before = now - duration(checker.every());
        if !store.claim_system_key_check(provider, &print, stale_before, now + checker.claim_ttl()).await? {
            continue;
        }
        let outcome = checker.check(provider, Probe::ApiKey(key.expose())).await;
        store.record_system_key_check(provider, &print, &outcome).await?;
        crate::metrics::check(provider.as_str(), outcome.result.as_str());
        tracing::info!(provider = provider.as_str(), result = outcome.result.as_str(), "system key checked");
        checked += 1;
    }
    Ok(checked)
}
