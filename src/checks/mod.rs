//! Checking a credential with its provider (issue 15): the cheapest call
//! that proves a credential works, so the vault finds a mistyped key, a
//! lapsed subscription or a revoked token before a task does.
//!
//! A check never refreshes (refresh tokens are single-use) and never takes
//! a task lease. UNREACHABLE concludes nothing about the credential.

pub mod job;
mod run;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use crate::domain::CheckResult;
use crate::domain::Provider;
pub use crate::providers::check::{Outcome, Probe};
use crate::providers::{spec, ProvidersConfig};
pub use run::{check_all_own, check_own};

/// `[checks]`: `SESAME_CHECKS__*`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChecksConfig {
    /// Check a credential before storing it when the caller does not say
    /// (`checkOnSave`).
    pub on_save: bool,
    /// The periodic job re-checks credentials last checked longer ago than this.
    #[serde(with = "humantime_serde")]
    pub every: Duration,
    /// Requests to one provider at once, over all checks of this instance.
    pub per_provider: usize,
    /// A person's check (`checkCredential`, `checkMyCredentials`) of a
    /// credential checked less than this ago sends nothing and returns the
    /// stored check, so a loop can neither hold the provider's turns nor
    /// fill the audit table. Zero turns it off. Saves and the periodic job
    /// are not subject to it.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
}

impl Default for ChecksConfig {
    fn default() -> Self {
        ChecksConfig {
            on_save: true,
            every: Duration::from_secs(24 * 3600),
            per_provider: 4,
            cooldown: Duration::from_secs(30),
        }
    }
}

/// At most `per_provider` requests to one provider at once, whoever asks
/// (a person's checks, the periodic job, the start-up check of system keys).
#[derive(Clone)]
pub struct Limits {
    permits: Arc<[Arc<Semaphore>]>,
    per_provider: usize,
}

impl Limits {
    pub fn new(per_provider: usize) -> Limits {
        let per_provider = per_provider.max(1);
        Limits { permits: Provider::ALL.iter().map(|_| Arc::new(Semaphore::new(per_provider))).collect(), per_provider }
    }

    /// Waits for a turn to call `provider`; the turn ends when the permit drops.
    pub async fn acquire(&self, provider: Provider) -> OwnedSemaphorePermit {
        let at = Provider::ALL.iter().position(|p| *p == provider).unwrap_or(0);
        self.permits[at].clone().acquire_owned().await.expect("the semaphores are never closed")
    }

    /// Requests to `provider` in flight right now.
    pub fn in_flight(&self, provider: Provider) -> usize {
        let at = Provider::ALL.iter().position(|p| *p == provider).unwrap_or(0);
        self.per_provider - self.permits[at].available_permits()
    }
}

/// The check engine: one HTTP client (the providers' policy: no
/// redirects, timeouts), where the providers are, the per-provider bound,
/// and the settings the job and the records need.
#[derive(Clone)]
pub struct Checker {
    http: reqwest::Client,
    providers: Arc<ProvidersConfig>,
    limits: Limits,
    config: ChecksConfig,
    timeout: Duration,
    /// The expiry scan's window: a credential usable again gets the status
    /// the expiry rules give it.
    expiring_within: chrono::Duration,
}

/// How long a save waits for a turn with its provider before it saves unchecked.
const SAVE_WAITS_FOR_A_TURN: Duration = Duration::from_secs(3);

impl Checker {
    pub fn new(
        config: &ChecksConfig,
        providers: ProvidersConfig,
        timeout: Duration,
        expiring_within: Duration,
    ) -> anyhow::Result<Checker> {
        Ok(Checker {
            http: crate::providers::http::client(timeout)?,
            providers: Arc::new(providers),
            limits: Limits::new(config.per_provider),
            config: config.clone(),
            timeout,
            expiring_within: chrono::Duration::from_std(expiring_within).unwrap_or(chrono::Duration::MAX),
        })
    }

    /// The client and API URLs checks use, for other questions to a
    /// provider about a credential (whose login a returned file holds).
    pub fn apis(&self) -> crate::providers::ProviderApis<'_> {
        crate::providers::ProviderApis { http: &self.http, config: &self.providers }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether a save checks first when the caller does not say.
    pub fn on_save(&self) -> bool {
        self.config.on_save
    }

    pub fn every(&self) -> Duration {
        self.config.every
    }

    /// How long after a check a person's check of the same credential is
    /// answered from the stored result (zero: never).
    pub fn cooldown(&self) -> Duration {
        self.config.cooldown
    }

    pub fn per_provider(&self) -> usize {
        self.config.per_provider.max(1)
    }

    pub(crate) fn expiring_within(&self) -> chrono::Duration {
        self.expiring_within
    }

    /// How long a claim on a credential lasts: longer than any check can
    /// take (GitHub's two requests, each under the timeout), so a live
    /// check never loses its claim.
    pub(crate) fn claim_ttl(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.timeout * 2).unwrap_or(chrono::Duration::minutes(1))
            + chrono::Duration::seconds(30)
    }

    /// `checkOnSave`: asks before anything is stored (counted and logged
    /// like every check; the caller refuses the save if
    /// [`Outcome::refuses_save`]).
    pub async fn check_before_save(&self, provider: Provider, probe: Probe<'_>) -> Outcome {
        // A person waits for a save: if the periodic job holds every turn
        // for this provider, the save goes ahead unchecked (UNREACHABLE)
        // rather than queue behind it; the job checks it later.
        let outcome = match tokio::time::timeout(SAVE_WAITS_FOR_A_TURN, self.limits.acquire(provider)).await {
            Ok(turn) => self.check_in_turn(provider, probe, turn).await,
            Err(_) => Outcome::unreachable("the provider is busy with other checks; this one is tried again later"),
        };
        crate::metrics::check(provider.as_str(), outcome.result.as_str());
        tracing::info!(
            provider = provider.as_str(),
            result = outcome.result.as_str(),
            "credential checked before saving"
        );
        outcome
    }

    /// Asks `provider` about one credential, waiting for a turn under the
    /// per-provider bound. The provider's registry entry knows how.
    pub async fn check(&self, provider: Provider, probe: Probe<'_>) -> Outcome {
        let turn = self.limits.acquire(provider).await;
        self.check_in_turn(provider, probe, turn).await
    }

    /// [`Checker::check`] in a turn the caller already holds (the job takes
    /// its turn before it claims a credential, so a claim never waits).
    pub(crate) async fn check_in_turn(
        &self,
        provider: Provider,
        probe: Probe<'_>,
        _turn: OwnedSemaphorePermit,
    ) -> Outcome {
        (spec(provider).check_with_provider)(&self.http, &self.providers, probe).await
    }
}
