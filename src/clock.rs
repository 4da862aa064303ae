//! The time the bridge goes by: the system's clock, or, for tests, the system's clock that a
//! test can move forward, so that token expiry, back-off and time windows are tested by
//! advancing time instead of sleeping through it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// A cheap handle to a clock; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// Milliseconds this clock runs ahead of the system's (adjustable clocks only).
    ahead: Option<Arc<AtomicU64>>,
}

impl Clock {
    /// The system's clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// The system's clock, which [`Clock::advance`] moves forward.
    pub fn adjustable() -> Clock {
        Clock {
            ahead: Some(Arc::new(AtomicU64::new(0))),
        }
    }

    /// Moves an adjustable clock forward (a system clock cannot be moved: nothing happens).
    pub fn advance(&self, by: Duration) {
        if let Some(a) = &self.ahead {
            let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
            a.fetch_add(ms, Ordering::Relaxed);
        }
    }

    fn ahead(&self) -> Duration {
        self.ahead.as_ref().map_or(Duration::ZERO, |a| {
            Duration::from_millis(a.load(Ordering::Relaxed))
        })
    }

    /// Now, as a date.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.ahead()
    }

    /// Now, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        self.now().timestamp_millis()
    }

    /// Now, on the monotonic clock (for deadlines and expiry).
    pub fn instant(&self) -> Instant {
        Instant::now() + self.ahead()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adjustable_clock_moves_forward_and_a_system_clock_does_not() {
        let c = Clock::adjustable();
        let before = c.now_ms();
        c.advance(Duration::from_secs(3600));
        assert!(c.now_ms() - before >= 3_600_000);
        let shared = c.clone();
        shared.advance(Duration::from_secs(1));
        let now = Instant::now();
        assert!(c.instant() >= now + Duration::from_secs(3601));
        let s = Clock::system();
        s.advance(Duration::from_secs(3600));
        assert!(s.now_ms() - Utc::now().timestamp_millis() < 1000);
    }
}
