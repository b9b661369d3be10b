//! A per-person rate limit on writes (saving, removing and checking
//! credentials, completing a sign-in): each write is an audit entry and an
//! event row, so a loop of saves must not grow them without bound.
//!
//! One token bucket per person, in this process (`governor`'s GCRA):
//! `burst` writes at once, refilled at `per_minute`. A write over it gets
//! `LIMIT_EXCEEDED` saying when to try again, and nothing is written. With
//! several replicas each holds its own buckets (a person's rate is at most
//! replicas × the setting).

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WritesConfig {
    /// Writes a person may make per minute, sustained; 0 turns the limit off.
    pub per_minute: u32,
    /// Writes a person may make at once.
    pub burst: u32,
}

impl Default for WritesConfig {
    fn default() -> Self {
        WritesConfig { per_minute: 120, burst: 60 }
    }
}

struct WriteLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
    config: WritesConfig,
    checks: AtomicU64,
}

static LIMITER: OnceLock<Option<WriteLimiter>> = OnceLock::new();

/// Sets the limit from the configuration (once, at start-up).
pub fn init(config: &WritesConfig) {
    let _ = LIMITER.get_or_init(|| {
        let per_minute = NonZeroU32::new(config.per_minute)?;
        let burst = NonZeroU32::new(config.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_minute(per_minute).allow_burst(burst);
        let clock = DefaultClock::default();
        Some(WriteLimiter {
            limiter: RateLimiter::hashmap_with_clock(quota, clock.clone()),
            clock,
            config: config.clone(),
            checks: AtomicU64::new(0),
        })
    });
}

/// Counts one write of `person`; `LIMIT_EXCEEDED` (with when to retry) when
/// they are over their rate.
pub fn check_write(person: &str) -> ApiResult<()> {
    let Some(Some(limiter)) = LIMITER.get() else { return Ok(()) };
    // Buckets back at full are forgotten now and then.
    if limiter.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
        limiter.limiter.retain_recent();
        limiter.limiter.shrink_to_fit();
    }
    match limiter.limiter.check_key(&person.to_owned()) {
        Ok(()) => Ok(()),
        Err(not_until) => {
            let wait = not_until.wait_time_from(limiter.clock.now());
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            Err(ApiError::Limit(format!(
                "too many changes in a short time (at most {} at once and {} a minute: SESAME_WRITES__BURST, \
                 SESAME_WRITES__PER_MINUTE); nothing was changed, try again in {} s",
                limiter.config.burst,
                limiter.config.per_minute,
                seconds.max(1)
            )))
        }
    }
}
