//! What keeps one backend's trouble from becoming everyone's: a limit on calls in flight, a
//! circuit breaker that fails fast while the backend keeps failing and lets one probe through
//! to find it back, and retries of idempotent calls within a budget, with jittered back-off.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::clock::Clock;
use crate::error::{Error, Retry};

/// A backend's resilience settings (`[backends.NAME]` `max_in_flight`, `[...retry]`,
/// `[...breaker]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResiliencePlan {
    /// Calls in flight at most; more wait (up to the backend's timeout) for one to end.
    pub max_in_flight: usize,
    pub retry: RetryPlan,
    /// `None`: no breaker.
    pub breaker: Option<BreakerPlan>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RetryPlan {
    /// Attempts per call, the first included (1: no retries).
    pub attempts: u32,
    /// The first back-off; each next one doubles, up to `max_backoff`; each is jittered.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Retries at most this many per 100 calls (plus a reserve of 10), so that retries cannot
    /// multiply the load on a backend that is already failing.
    pub budget_percent: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BreakerPlan {
    /// Consecutive failures that open the breaker.
    pub failures: u32,
    /// How long it stays open before one probe call is let through.
    pub open_for: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until_ms: i64,
    },
    /// One probe is in flight; others fail fast until it ends.
    HalfOpen,
}

/// A backend's live resilience state.
#[derive(Debug)]
pub(crate) struct Guard {
    backend: String,
    plan: ResiliencePlan,
    in_flight: Semaphore,
    state: Mutex<State>,
    /// Retry tokens, in hundredths: each call adds `budget_percent`, each retry takes 100.
    budget: Mutex<u32>,
    clock: Clock,
}

/// Leave to send one attempt; tell the guard how it went with [`Guard::record`].
#[derive(Debug)]
pub(crate) struct Admission<'a> {
    _permit: SemaphorePermit<'a>,
    probe: Probe<'a>,
}

/// Being the breaker's probe (its guard), until the probe's outcome is recorded.
#[derive(Debug)]
struct Probe<'a>(Option<&'a Guard>);

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        if let Some(g) = self.0.take() {
            // The probe ended without an outcome: it waited for room and found none, or its
            // call was cancelled (the client went away, the request's time ran out), while
            // waiting or in flight. The next call probes, rather than every call failing fast
            // from now on.
            let mut state = g.state();
            if *state == State::HalfOpen {
                *state = State::Open { until_ms: 0 };
            }
        }
    }
}

/// Ten retries, in hundredths.
const RESERVE: u32 = 1_000;

impl Guard {
    pub(crate) fn new(backend: &str, plan: &ResiliencePlan, clock: Clock) -> Guard {
        Guard {
            backend: backend.to_string(),
            plan: plan.clone(),
            in_flight: Semaphore::new(plan.max_in_flight.max(1)),
            state: Mutex::new(State::Closed { failures: 0 }),
            budget: Mutex::new(RESERVE),
            clock,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The breaker's state: `closed`, `open` or `half-open`.
    pub(crate) fn breaker(&self) -> &'static str {
        match *self.state() {
            State::Closed { .. } => "closed",
            State::Open { until_ms } if self.clock.now_ms() >= until_ms => "half-open",
            State::Open { .. } => "open",
            State::HalfOpen => "half-open",
        }
    }

    /// The settings, for `check`.
    pub(crate) fn describe(&self) -> String {
        let r = &self.plan.retry;
        let retry = if r.attempts > 1 {
            format!(
                "{} attempts for GET and retry = true calls (back-off {}-{} ms, budget {}%)",
                r.attempts,
                r.backoff.as_millis(),
                r.max_backoff.as_millis(),
                r.budget_percent
            )
        } else {
            "no retries".into()
        };
        let breaker = match &self.plan.breaker {
            Some(b) => format!(
                "breaker opens after {} failures for {} ms",
                b.failures,
                b.open_for.as_millis()
            ),
            None => "no breaker".into(),
        };
        format!(
            "at most {} in flight, {retry}, {breaker}",
            self.plan.max_in_flight
        )
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.plan.max_in_flight.max(1) - self.in_flight.available_permits()
    }

    /// Leave to send an attempt: refused at once while the breaker is open, and after `wait`
    /// when the backend already has its most calls in flight.
    pub(crate) async fn admit(&self, wait: Duration) -> Result<Admission<'_>, Error> {
        // Held from here: a probe that never gets to its outcome lets the next call probe.
        let probe = Probe(self.pass_breaker()?.then_some(self));
        let permit = match tokio::time::timeout(wait, self.in_flight.acquire()).await {
            Ok(Ok(p)) => p,
            _ => {
                return Err(Error::BackendBusy {
                    backend: self.backend.clone(),
                    limit: self.plan.max_in_flight,
                    waited_ms: wait.as_millis() as u64,
                });
            }
        };
        Ok(Admission {
            _permit: permit,
            probe,
        })
    }

    /// Whether the breaker lets a call through, and whether it is the probe.
    fn pass_breaker(&self) -> Result<bool, Error> {
        if self.plan.breaker.is_none() {
            return Ok(false);
        }
        let now = self.clock.now_ms();
        let mut state = self.state();
        match *state {
            State::Closed { .. } => Ok(false),
            State::Open { until_ms } if now >= until_ms => {
                *state = State::HalfOpen;
                Ok(true)
            }
            State::Open { until_ms } => Err(self.open(((until_ms - now) as u64).div_ceil(1000))),
            State::HalfOpen => Err(self.open(1)),
        }
    }

    fn open(&self, retry_after_s: u64) -> Error {
        Error::BackendCircuitOpen {
            backend: self.backend.clone(),
            retry_after_s: retry_after_s.max(1),
        }
    }

    /// How an admitted attempt went: a failure of the backend (not a refusal of the caller's
    /// input) counts towards opening the breaker; a success closes it. Returns whether the
    /// breaker opened now.
    pub(crate) fn record(&self, mut admission: Admission<'_>, result: Result<(), &Error>) -> bool {
        let probe = admission.probe.0.take().is_some();
        let Some(plan) = &self.plan.breaker else {
            return false;
        };
        let failed = result.err().is_some_and(counts_against_backend);
        let mut state = self.state();
        let open = State::Open {
            until_ms: self.clock.now_ms() + plan.open_for.as_millis() as i64,
        };
        let (next, opened) = match (*state, failed) {
            (_, false) if probe || matches!(*state, State::Closed { .. }) => {
                (State::Closed { failures: 0 }, false)
            }
            (s, false) => (s, false),
            (_, true) if probe => (open, true),
            (State::Closed { failures }, true) if failures + 1 >= plan.failures => (open, true),
            (State::Closed { failures }, true) => (
                State::Closed {
                    failures: failures + 1,
                },
                false,
            ),
            (s, true) => (s, false),
        };
        *state = next;
        if opened {
            tracing::warn!(backend = %self.backend, open_ms = plan.open_for.as_millis() as u64, "circuit breaker open: calls fail fast until a probe succeeds");
        }
        opened
    }

    /// A call was made (its first attempt): the retry budget grows.
    pub(crate) fn deposit(&self) {
        let mut b = self.budget.lock().unwrap_or_else(|p| p.into_inner());
        *b = (*b + self.plan.retry.budget_percent).min(RESERVE * 10);
    }

    /// Whether attempt `attempt` (1-based) failed with `e` may be sent again; if so, the
    /// budget pays for it and the back-off to wait is returned.
    pub(crate) fn retry(&self, attempt: u32, e: &Error, idempotent: bool) -> Option<Duration> {
        if attempt >= self.plan.retry.attempts {
            return None;
        }
        let allowed = match e.retry() {
            Retry::Safe => true,
            Retry::IfIdempotent => idempotent,
            Retry::Never => false,
        };
        if !allowed {
            return None;
        }
        let mut b = self.budget.lock().unwrap_or_else(|p| p.into_inner());
        if *b < 100 {
            tracing::debug!(backend = %self.backend, "retry budget spent: not retried");
            return None;
        }
        *b -= 100;
        let r = &self.plan.retry;
        let ceiling = r
            .backoff
            .saturating_mul(1 << (attempt - 1).min(16))
            .min(r.max_backoff);
        // Full jitter: anywhere between half the ceiling and the ceiling.
        let half = ceiling / 2;
        Some(half + half.mul_f64(jitter()))
    }
}

/// Failures that say the backend is in trouble (not a refusal of what the caller sent).
fn counts_against_backend(e: &Error) -> bool {
    matches!(
        e,
        Error::BackendUnavailable { .. }
            | Error::BackendTimeout { .. }
            | Error::BackendStatus { .. }
            | Error::BackendBadResponse { .. }
    )
}

/// A number in [0, 1), different on each call.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default()
            .into(),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(failures: u32) -> ResiliencePlan {
        ResiliencePlan {
            max_in_flight: 2,
            retry: RetryPlan {
                attempts: 3,
                backoff: Duration::from_millis(100),
                max_backoff: Duration::from_millis(150),
                budget_percent: 10,
            },
            breaker: Some(BreakerPlan {
                failures,
                open_for: Duration::from_secs(10),
            }),
        }
    }

    fn down() -> Error {
        Error::BackendStatus {
            backend: "b".into(),
            status: 503,
            message: String::new(),
        }
    }

    /// A probe whose call is cancelled before its outcome is known (its client went away, its
    /// request's time ran out) lets the next call probe: the breaker is not left half-open.
    #[tokio::test]
    async fn a_probe_given_up_lets_the_next_call_probe() {
        let clock = Clock::adjustable();
        let g = Guard::new("b", &plan(1), clock.clone());
        let wait = Duration::from_millis(10);
        let a = g.admit(wait).await.unwrap();
        g.record(a, Err(&down()));
        clock.advance(Duration::from_secs(10));
        let probe = g.admit(wait).await.unwrap();
        assert_eq!(g.breaker(), "half-open");
        drop(probe);
        let next = g.admit(wait).await.expect("the next call probes");
        g.record(next, Ok(()));
        assert_eq!(g.breaker(), "closed");
        // A call that is not the probe, dropped, changes nothing.
        let a = g.admit(wait).await.unwrap();
        drop(a);
        assert_eq!(g.breaker(), "closed");

        // A probe cancelled while it waits for room among the calls in flight: the same.
        let a = g.admit(wait).await.unwrap();
        g.record(a, Err(&down()));
        clock.advance(Duration::from_secs(10));
        let full = g.in_flight.try_acquire_many(2).unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(5), g.admit(wait * 100)).await;
        assert!(waiting.is_err(), "the probe waits for room");
        drop(full);
        let next = g.admit(wait).await.expect("the next call probes");
        g.record(next, Ok(()));
        assert_eq!(g.breaker(), "closed");
    }

    #[tokio::test]
    async fn the_breaker_opens_fails_fast_and_one_probe_closes_it() {
        let clock = Clock::adjustable();
        let g = Guard::new("b", &plan(3), clock.clone());
        let wait = Duration::from_millis(10);
        for _ in 0..3 {
            let a = g.admit(wait).await.unwrap();
            g.record(a, Err(&down()));
        }
        assert_eq!(g.breaker(), "open");
        let e = g.admit(wait).await.unwrap_err();
        assert_eq!(e.code(), "BACKEND_CIRCUIT_OPEN");
        assert!(e.to_string().contains("10 s"), "{e}");
        clock.advance(Duration::from_secs(10));
        assert_eq!(g.breaker(), "half-open");
        let probe = g.admit(wait).await.unwrap();
        // While the probe is out, others still fail fast.
        assert_eq!(
            g.admit(wait).await.unwrap_err().code(),
            "BACKEND_CIRCUIT_OPEN"
        );
        g.record(probe, Ok(()));
        assert_eq!(g.breaker(), "closed");
        // A refusal of the caller's input is not the backend failing.
        for _ in 0..5 {
            let a = g.admit(wait).await.unwrap();
            g.record(a, Err(&Error::Unauthorized));
        }
        assert_eq!(g.breaker(), "closed");
    }

    #[tokio::test]
    async fn calls_beyond_the_limit_wait_then_are_refused() {
        let g = Guard::new("b", &plan(3), Clock::adjustable());
        let wait = Duration::from_millis(20);
        let (a, b) = (g.admit(wait).await.unwrap(), g.admit(wait).await.unwrap());
        assert_eq!(g.in_flight(), 2);
        assert_eq!(g.admit(wait).await.unwrap_err().code(), "BACKEND_BUSY");
        drop(a);
        assert!(g.admit(wait).await.is_ok());
        drop(b);
    }

    #[test]
    fn retries_are_for_idempotent_calls_within_attempts_and_budget() {
        let g = Guard::new("b", &plan(3), Clock::adjustable());
        // A POST that may have reached the backend is not sent again; a GET is.
        assert_eq!(g.retry(1, &down(), false), None);
        let wait = g.retry(1, &down(), true).unwrap();
        assert!(
            wait >= Duration::from_millis(50) && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        let wait = g.retry(2, &down(), true).unwrap();
        assert!(
            wait >= Duration::from_millis(75) && wait <= Duration::from_millis(150),
            "{wait:?}"
        );
        assert_eq!(g.retry(3, &down(), true), None, "3 attempts at most");
        // A refusal is never retried.
        assert_eq!(g.retry(1, &Error::Unauthorized, true), None);
        // The reserve of 10 retries runs out; calls refill it at 10 per 100.
        let spent = (0..20)
            .filter(|_| g.retry(1, &down(), true).is_some())
            .count();
        assert_eq!(spent, 8, "10 in reserve, 2 already taken");
        for _ in 0..10 {
            g.deposit();
        }
        assert!(g.retry(1, &down(), true).is_some());
        assert!(g.retry(1, &down(), true).is_none());
    }
}
