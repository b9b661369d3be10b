//! The store's clock: wall-clock time for what is written to rows (expiry,
//! leases, claims other instances read), and monotonic time for what only
//! this process decides (whether its own refresh is still in flight).
//!
//! Wall-clock time can jump (NTP steps, a VM resumed, an operator's
//! `date -s`); every decision that must not be fooled by a jump uses
//! [`Clock::monotonic`] (`tokio::time::Instant`) or no time at all.
//!
//! Tests drive the wall clock with [`Clock::shift_for_tests`]: an offset
//! added to the system time by one store in one process. It is reachable
//! only through the Rust API of the library (a test that links it): no
//! setting, environment variable, command or endpoint sets it, so nothing
//! outside the process can move a running server's clock.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

/// The system clock plus an offset that is zero outside tests. Clones share
/// the offset.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// Wall-clock now (may jump).
    pub fn now(&self) -> DateTime<Utc> {
        let offset = self.offset_ms.load(Ordering::Relaxed);
        if offset == 0 {
            return Utc::now();
        }
        Utc::now() + Duration::milliseconds(offset)
    }

    /// Monotonic now: never jumps, meaningful only inside this process.
    pub fn monotonic(&self) -> tokio::time::Instant {
        tokio::time::Instant::now()
    }

    /// Moves this clock's wall-clock time by `by` (forward or back), as a
    /// clock step on the host would; monotonic time does not move. For tests
    /// only: see the module documentation.
    #[doc(hidden)]
    pub fn shift_for_tests(&self, by: Duration) {
        self.offset_ms.fetch_add(by.num_milliseconds(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shift_moves_the_wall_clock_only() {
        let clock = Clock::system();
        let (wall, mono) = (clock.now(), clock.monotonic());
        clock.shift_for_tests(Duration::hours(24));
        assert!(clock.now() - wall >= Duration::hours(24));
        assert!(clock.monotonic().duration_since(mono) < std::time::Duration::from_secs(60));
        clock.clone().shift_for_tests(Duration::hours(-24));
        assert!(clock.now() - wall < Duration::hours(1), "clones share the offset");
    }
}
