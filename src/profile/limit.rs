//! Rate limits per caller (GittiGidiyor-style quotas): at most `calls` per window of
//! `per` for each authenticated user, counted in fixed windows. A call over the limit is
//! refused as the profile refuses calls (`ackCode=failure` with errorId 1007 for a signed
//! profile, a fault with HTTP 429 otherwise).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::error::Error;

/// `calls` per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateLimit {
    pub(crate) calls: u32,
    pub(crate) per: Duration,
}

#[derive(Debug)]
pub(crate) struct RateLimiter {
    limit: RateLimit,
    /// Per user: the window's start (ms) and the calls counted in it. Users are the
    /// configured ones (a call is counted after authentication), so this stays small.
    windows: Mutex<HashMap<String, (i64, u32)>>,
}

impl RateLimiter {
    pub(crate) fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter {
            limit,
            windows: Mutex::default(),
        }
    }

    pub(crate) fn describe(&self) -> String {
        format!(
            "{} calls per {} s per caller",
            self.limit.calls,
            self.limit.per.as_secs()
        )
    }

    pub(crate) fn admit(&self, user: &str, now_ms: i64) -> Result<(), Error> {
        let per_ms = self.limit.per.as_millis().max(1) as i64;
        let start = now_ms - now_ms.rem_euclid(per_ms);
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let w = windows.entry(user.to_string()).or_insert((start, 0));
        if w.0 != start {
            *w = (start, 0);
        }
        if w.1 >= self.limit.calls {
            return Err(Error::RateLimited {
                limit: self.limit.calls,
                per_secs: self.limit.per.as_secs().max(1),
                retry_after_s: ((start + per_ms - now_ms) as u64).div_ceil(1000).max(1),
            });
        }
        w.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_user_has_their_own_quota_per_window() {
        let l = RateLimiter::new(RateLimit {
            calls: 2,
            per: Duration::from_secs(60),
        });
        let t = 120_000;
        assert!(l.admit("a", t).is_ok() && l.admit("a", t + 1).is_ok());
        let e = l.admit("a", t + 15_000).unwrap_err();
        assert_eq!(e.code(), "RATE_LIMITED");
        assert!(e.to_string().contains("try again in 45 s"), "{e}");
        assert!(
            l.admit("b", t + 15_000).is_ok(),
            "another user's quota is their own"
        );
        assert!(l.admit("a", t + 60_000).is_ok(), "a new window");
    }
}
