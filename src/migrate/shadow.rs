//! Shadow mode: the bridge answers from its JSON backend, and also sends the call to the
//! legacy service in the background, compares the two answers by meaning
//! (`protocol::compare`), counts the outcome (`soapbridge_shadow_calls_total`) and logs what
//! differs (paths and kinds only, no values; at most one line per service every 10 s, with
//! how many were not logged).
//!
//! The client never waits for it: the comparison runs in its own task after the answer is
//! made, at most `max_in_flight` at once per service; past that a call is not shadowed
//! (counted as `dropped`). Only reads (operations whose backend call is a GET) and the
//! operations a configuration marks `safe` are shadowed: a write is never sent twice unless
//! someone said it may be.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::Full;

use crate::config::ShadowPlan;
use crate::protocol::compare;
use crate::telemetry::Telemetry;

/// At most one difference line per service in this many milliseconds.
const LOG_EVERY_MS: i64 = 10_000;
/// The largest answer compared (the legacy service's or the bridge's): comparing parses both,
/// and up to `max_in_flight` comparisons run at once, so this bounds their memory.
pub(crate) const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// One service's shadow mode.
pub(crate) struct Shadow {
    service: String,
    plan: ShadowPlan,
    client: super::HttpClient,
    slots: Arc<tokio::sync::Semaphore>,
    telemetry: Arc<Telemetry>,
    /// For sampling: calls seen.
    seen: AtomicU64,
    last_log_ms: AtomicI64,
    unlogged: AtomicU64,
}

impl std::fmt::Debug for Shadow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shadow")
            .field("service", &self.service)
            .field("url", &self.plan.url)
            .finish()
    }
}

/// A call to shadow: the client's request and the bridge's answer.
pub(crate) struct Exchange {
    pub operation_name: String,
    pub headers: HeaderMap,
    pub request: Bytes,
    pub status: u16,
    pub answer: Bytes,
}

impl Shadow {
    pub(crate) fn new(
        service: &str,
        plan: ShadowPlan,
        telemetry: Arc<Telemetry>,
    ) -> Result<Shadow, String> {
        Ok(Shadow {
            service: service.to_string(),
            slots: Arc::new(tokio::sync::Semaphore::new(plan.max_in_flight)),
            plan,
            client: super::http_client()?,
            telemetry,
            seen: AtomicU64::new(0),
            last_log_ms: AtomicI64::new(i64::MIN / 2),
            unlogged: AtomicU64::new(0),
        })
    }

    /// `check` output.
    pub(crate) fn describe(&self, operations: &[String]) -> String {
        let shadowed: Vec<&str> = operations
            .iter()
            .zip(&self.plan.operations)
            .filter(|(_, on)| **on)
            .map(|(o, _)| o.as_str())
            .collect();
        format!(
            "shadow -> {} ({} of calls, at most {} in flight): {}",
            self.plan.url,
            if self.plan.per_million >= 1_000_000 {
                "all".to_string()
            } else {
                format!("{:.2}%", f64::from(self.plan.per_million) / 10_000.0)
            },
            self.plan.max_in_flight,
            if shadowed.is_empty() {
                "no operation (reads and `safe` ones only)".to_string()
            } else {
                shadowed.join(", ")
            }
        )
    }

    /// Whether a call of this operation is to be shadowed (its kind, and the sample).
    pub(crate) fn wants(&self, operation: usize) -> bool {
        if !self
            .plan
            .operations
            .get(operation)
            .copied()
            .unwrap_or(false)
        {
            return false;
        }
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        // Evenly spread: call n is shadowed when it crosses a multiple of the share.
        let per = u64::from(self.plan.per_million);
        (n * per) / 1_000_000 != ((n + 1) * per) / 1_000_000
    }

    /// Sends the call to the legacy service in the background and compares the answers. A
    /// call whose answer is too large to compare is not shadowed (counted as dropped).
    pub(crate) fn spawn(self: &Arc<Self>, x: Exchange) {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(p) if x.answer.len() <= MAX_ANSWER && x.request.len() <= MAX_ANSWER => p,
            _ => {
                self.telemetry
                    .shadowed(&self.service, &x.operation_name, "dropped");
                return;
            }
        };
        let me = self.clone();
        let request_id = crate::telemetry::request_id();
        tokio::spawn(async move {
            let result = me.compare(&x, request_id.as_deref()).await;
            me.telemetry
                .shadowed(&me.service, &x.operation_name, result);
            drop(permit);
        });
    }

    async fn compare(&self, x: &Exchange, request_id: Option<&str>) -> &'static str {
        let mut req = Request::post(self.plan.url.clone());
        for name in [
            http::header::CONTENT_TYPE,
            http::header::AUTHORIZATION,
            http::HeaderName::from_static("soapaction"),
        ] {
            if let Some(v) = x.headers.get(&name) {
                req = req.header(name, v);
            }
        }
        if let Some(id) = request_id {
            req = req.header("x-request-id", id);
        }
        let Ok(req) = req.body(Full::new(x.request.clone())) else {
            return "legacy_error";
        };
        let legacy = async {
            let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let body = crate::server::read_whole(resp.into_body(), MAX_ANSWER, None)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((status, body))
        };
        let (status, body) = match tokio::time::timeout(self.plan.timeout, legacy).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::warn!(service = %self.service, operation = %x.operation_name, error = %e, "shadow: the legacy service failed");
                return "legacy_error";
            }
            Err(_) => {
                tracing::warn!(service = %self.service, operation = %x.operation_name, "shadow: the legacy service did not answer in time");
                return "legacy_error";
            }
        };
        let mut differences: Vec<String> = Vec::new();
        if status != x.status {
            differences.push(format!("HTTP status {status} (bridge {})", x.status));
        }
        let found = compare::compare(
            &String::from_utf8_lossy(&body),
            &String::from_utf8_lossy(&x.answer),
            &self.plan.rules,
        );
        // Paths and kinds only: the values may be anybody's data.
        differences.extend(
            found
                .iter()
                .filter(|d| d.counts())
                .map(|d| format!("{} ({:?})", d.path, d.kind).to_lowercase()),
        );
        if differences.is_empty() {
            return "same";
        }
        self.log(x, request_id, &differences);
        "different"
    }

    /// Logs a difference, at most once per service every [`LOG_EVERY_MS`].
    fn log(&self, x: &Exchange, request_id: Option<&str>, differences: &[String]) {
        let now = chrono::Utc::now().timestamp_millis();
        let last = self.last_log_ms.load(Ordering::Relaxed);
        if now - last < LOG_EVERY_MS
            || self
                .last_log_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            self.unlogged.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let shown: Vec<&str> = differences.iter().take(8).map(String::as_str).collect();
        tracing::warn!(
            service = %self.service,
            operation = %x.operation_name,
            request_id = request_id.unwrap_or("-"),
            differences = differences.len(),
            paths = %shown.join("; "),
            not_logged_since_last = self.unlogged.swap(0, Ordering::Relaxed),
            "shadow: the legacy service answered differently"
        );
    }
}
