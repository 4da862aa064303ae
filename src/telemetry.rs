//! What the bridge tells its operators: Prometheus metrics (`GET /metrics`), and the live view
//! behind the operator page (traffic per operation over the last minute, backend health, the
//! last failures with their request ids).
//!
//! Labels are bounded: doors, configured services, operations, backends and companies, stable
//! error codes. Nothing a client sends (ids, keys, unknown names) becomes a label: an unknown
//! service or operation is `-`. Telemetry outlives configuration reloads.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

tokio::task_local! {
    /// The request being answered: its id and caller go into every log line (see
    /// `logging`), its id to the backend (`X-Request-Id`) and into the operator page's failures.
    static REQUEST: RequestContext;
}

/// Who and what a log line written while answering a request belongs to. Kept beside the
/// request's task rather than in a `tracing` span, so that logging it costs nothing per poll:
/// the span exists only for an exporter that wants it (OpenTelemetry).
#[derive(Debug, Clone)]
pub(crate) struct RequestContext {
    id: std::sync::Arc<str>,
    /// The authenticated caller, once known.
    user: std::sync::OnceLock<Box<str>>,
    /// How the request's work paces its backend calls (`Pipeline::times`).
    times: Option<crate::route::Times>,
}

/// Runs `f` as the work of the request `id`, whose work paces its backend calls by `times`.
pub(crate) async fn with_request_id<F: std::future::Future>(
    id: std::sync::Arc<str>,
    times: Option<crate::route::Times>,
    f: F,
) -> F::Output {
    let context = RequestContext {
        id,
        user: std::sync::OnceLock::new(),
        times,
    };
    REQUEST.scope(context, f).await
}

/// The request being answered, if any, to carry to a thread that works for it
/// ([`within_request`]).
pub(crate) fn current_request() -> Option<RequestContext> {
    REQUEST.try_with(Clone::clone).ok()
}

/// Runs `f` (on a thread of its own) as the work of `request`.
pub(crate) fn within_request<R>(request: Option<RequestContext>, f: impl FnOnce() -> R) -> R {
    match request {
        Some(c) => REQUEST.sync_scope(c, f),
        None => f(),
    }
}

/// Runs `f` (in a task of its own) as the work of `request`.
pub(crate) async fn within_request_async<F: std::future::Future>(
    request: Option<RequestContext>,
    f: F,
) -> F::Output {
    match request {
        Some(c) => REQUEST.scope(c, f).await,
        None => f.await,
    }
}

/// The header that carries a request's id, from the client, to the backend and back.
pub(crate) const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// The id of the request being answered, if any (background work has none).
pub(crate) fn request_id() -> Option<std::sync::Arc<str>> {
    REQUEST.try_with(|c| c.id.clone()).ok()
}

/// Notes the authenticated caller of the request being answered (for its log lines, and for
/// its span when one is exported).
pub(crate) fn set_user(user: &str) {
    let _ = REQUEST.try_with(|c| c.user.set(user.into()));
    tracing::Span::current().record("user", user);
}

/// How the work of the request being answered paces its backend calls, if it is a request's
/// (background work is not).
pub(crate) fn times() -> Option<crate::route::Times> {
    REQUEST.try_with(|c| c.times).ok().flatten()
}

/// Calls `f` with the id and caller of the request being answered, if there is one.
pub(crate) fn with_request<R>(f: impl FnOnce(&str, Option<&str>) -> R) -> Option<R> {
    REQUEST
        .try_with(|c| f(&c.id, c.user.get().map(|u| &**u)))
        .ok()
}

/// What a door says of the calls it answered, attached to its answer (one per call; a
/// multicall has several). `App::handle` reads them and records each: counts, latencies, the
/// log line, the operator page.
#[derive(Debug, Clone, Default)]
pub(crate) struct Calls(pub Vec<CallInfo>);

#[derive(Debug, Clone)]
pub(crate) struct CallInfo {
    pub door: &'static str,
    /// A configured service (or winstrom company), or `-`.
    pub service: String,
    /// A configured operation (or evidence and what was done), or `-`.
    pub operation: String,
    pub outcome: Outcome,
    /// The stable error code; empty on success.
    pub code: &'static str,
}

impl Calls {
    /// One call.
    pub(crate) fn one(
        door: &'static str,
        service: &str,
        operation: &str,
        outcome: Outcome,
        code: &'static str,
    ) -> Calls {
        Calls(vec![CallInfo {
            door,
            service: service.to_string(),
            operation: operation.to_string(),
            outcome,
            code,
        }])
    }

    /// Attaches these calls to an answer.
    pub(crate) fn attach(self, resp: &mut crate::server::Resp) {
        resp.extensions_mut().insert(self);
    }
}

/// The request in which calls were answered, for their records ([`Telemetry::calls_answered`]).
pub(crate) struct Answered<'a> {
    pub method: &'a http::Method,
    pub path: &'a str,
    pub status: u16,
    /// From the request's start to its calls' end.
    pub elapsed: Duration,
    pub request_id: &'a str,
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    /// Answered in the protocol's own failure shape (`ackCode=failure`, Flexi `success=false`).
    Failure,
    /// A protocol fault.
    Fault,
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Fault => "fault",
        }
    }
}

/// One call, as a door reports it.
#[derive(Debug, Clone)]
pub(crate) struct CallRecord<'a> {
    pub door: &'static str,
    /// A configured service (or winstrom company); `-` when none was found.
    pub service: &'a str,
    /// A configured operation (or evidence and what was done to it); `-` when none.
    pub operation: &'a str,
    pub outcome: Outcome,
    /// The stable error code; empty on success.
    pub code: &'static str,
    pub status: u16,
    pub elapsed: Duration,
    pub request_id: &'a str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    door: &'static str,
    service: &'static str,
    operation: &'static str,
    outcome: &'static str,
    code: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    door: &'static str,
    service: &'static str,
    operation: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendErrorLabels {
    backend: &'static str,
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoginLabels {
    backend: &'static str,
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShadowLabels {
    service: &'static str,
    operation: &'static str,
    /// `same`, `different`, `legacy_error` or `dropped`.
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndLabels {
    end: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn seconds() -> Histogram {
    // 0.5 ms .. about 16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// A name from configuration, made `'static` once (the set of names is bounded by what
/// configurations name).
pub(crate) fn intern(s: &str) -> &'static str {
    static NAMES: std::sync::RwLock<Option<HashSet<&'static str>>> = std::sync::RwLock::new(None);
    // Almost always known: a shared read.
    if let Some(n) = NAMES
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .and_then(|set| set.get(s))
    {
        return n;
    }
    let mut names = NAMES.write().unwrap_or_else(|p| p.into_inner());
    let set = names.get_or_insert_with(HashSet::new);
    if let Some(n) = set.get(s) {
        return n;
    }
    let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
    set.insert(leaked);
    leaked
}

type OpKey = (&'static str, &'static str, &'static str);

/// What is kept of one (door, service, operation): its names (interned), the handles of its
/// success counter and its latency histogram in the Prometheus families, and its last minute.
#[derive(Debug)]
struct OpStats {
    names: (&'static str, &'static str),
    successes: Counter,
    seconds: Histogram,
    window: Mutex<Window>,
}

/// Last-minute traffic of one operation: 60 one-second slots.
#[derive(Debug)]
struct Window {
    slots: [Slot; 60],
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    second: i64,
    calls: u64,
    errors: u64,
    /// Calls by latency bucket (see [`LATENCY_BOUNDS_MS`]).
    buckets: [u64; 16],
}

/// Upper bounds (ms) of the operator page's latency buckets; the last is everything above.
const LATENCY_BOUNDS_MS: [f64; 16] = [
    0.5,
    1.0,
    2.0,
    4.0,
    8.0,
    16.0,
    32.0,
    64.0,
    128.0,
    256.0,
    512.0,
    1024.0,
    2048.0,
    4096.0,
    8192.0,
    f64::INFINITY,
];

impl Window {
    fn new() -> Window {
        Window {
            slots: [Slot::default(); 60],
        }
    }

    fn add(&mut self, now_s: i64, ms: f64, error: bool) {
        let s = &mut self.slots[now_s.rem_euclid(60) as usize];
        if s.second != now_s {
            *s = Slot {
                second: now_s,
                ..Slot::default()
            };
        }
        s.calls += 1;
        s.errors += u64::from(error);
        let b = LATENCY_BOUNDS_MS
            .iter()
            .position(|bound| ms <= *bound)
            .unwrap_or(15);
        s.buckets[b] += 1;
    }

    /// Calls, errors and latency buckets of the last 60 s.
    fn sum(&self, now_s: i64) -> Slot {
        let mut total = Slot::default();
        for s in self.slots.iter().filter(|s| now_s - s.second < 60) {
            total.calls += s.calls;
            total.errors += s.errors;
            for (t, b) in total.buckets.iter_mut().zip(s.buckets) {
                *t += b;
            }
        }
        total
    }
}

/// The latency (ms, a bucket's upper bound) under which `q` of the calls fell.
fn quantile(buckets: &[u64; 16], q: f64) -> f64 {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let want = (total as f64 * q).ceil() as u64;
    let mut seen = 0;
    for (i, n) in buckets.iter().enumerate() {
        seen += n;
        if seen >= want {
            return LATENCY_BOUNDS_MS[i];
        }
    }
    f64::INFINITY
}

/// A failed call, for the operator page (no bodies, no secrets: codes and names only).
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Failed {
    pub at_ms: i64,
    pub request_id: String,
    pub door: &'static str,
    pub service: &'static str,
    pub operation: &'static str,
    pub code: &'static str,
    pub status: u16,
}

/// One operation's last minute, for the operator page.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Traffic {
    pub door: &'static str,
    pub service: &'static str,
    pub operation: &'static str,
    pub per_second: f64,
    pub calls: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// A backend's last call, for readiness and the operator page.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct BackendHealth {
    pub at_ms: i64,
    /// The stable code of its last failure, or empty after a success.
    pub last_error: &'static str,
}

/// One backend's latency histogram and last call, made once per backend name and kept by its
/// client ([`Telemetry::backend`]): after that, a call is timed and recorded with no label set
/// hashed and no name interned. The histogram's series is made on the first call, so that a
/// backend that was never called has none, as before.
#[derive(Debug)]
pub(crate) struct BackendStats {
    name: &'static str,
    seconds: std::sync::OnceLock<Histogram>,
    last: Mutex<Option<BackendHealth>>,
}

/// The failures the operator page keeps.
const KEEP_FAILURES: usize = 50;

#[derive(Debug)]
pub(crate) struct Telemetry {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    call_seconds: Histograms<OpLabels>,
    backend_seconds: Histograms<BackendLabels>,
    backend_errors: Family<BackendErrorLabels, Counter>,
    logins: Family<LoginLabels, Counter>,
    retries: Family<BackendLabels, Counter>,
    breaker_openings: Family<BackendLabels, Counter>,
    signature_refusals: Family<ReasonLabels, Counter>,
    streamed_answers: Family<EndLabels, Counter>,
    shadow: Family<ShadowLabels, Counter>,
    /// Open client connections.
    pub connections: Gauge,
    stock_batches: Family<StateLabels, Gauge>,
    stock_queue_depth: Gauge,
    stock_oldest_pending_seconds: Gauge,
    body_bytes_in_flight: Gauge,
    /// Each (door, service, operation) called so far: its metric handles and its last minute.
    /// Looked up on every call (foldhash: the keys are names the configuration gives).
    ops: RwLock<HashMap<OpKey, Arc<OpStats>, foldhash::fast::RandomState>>,
    failures: Mutex<VecDeque<Failed>>,
    backends: Mutex<BTreeMap<&'static str, Arc<BackendStats>>>,
    reloads: Counter,
    reload_failures: Counter,
    enabled: bool,
    config_generation: AtomicU64,
    last_reload_ms: AtomicI64,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new(true)
    }
}

impl Telemetry {
    /// Telemetry that counts when `enabled` (`server.metrics`); otherwise every record is
    /// dropped and `/metrics` is not served.
    pub(crate) fn new(enabled: bool) -> Telemetry {
        let mut registry = Registry::with_prefix("soapbridge");
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "calls",
            "Calls by door, service, operation, outcome (success, failure, fault) and error code",
            calls.clone(),
        );
        let call_seconds: Histograms<OpLabels> = Family::new_with_constructor(seconds);
        registry.register(
            "call_duration_seconds",
            "Whole calls, from the request's arrival to its answer",
            call_seconds.clone(),
        );
        let backend_seconds: Histograms<BackendLabels> = Family::new_with_constructor(seconds);
        registry.register(
            "backend_call_duration_seconds",
            "Calls to each backend (one exchange, a page or a batch)",
            backend_seconds.clone(),
        );
        let backend_errors = Family::<BackendErrorLabels, Counter>::default();
        registry.register(
            "backend_errors",
            "Backend calls that failed, by kind (the error code)",
            backend_errors.clone(),
        );
        let logins = Family::<LoginLabels, Counter>::default();
        registry.register(
            "backend_logins",
            "Logins and token renewals towards backends",
            logins.clone(),
        );
        let retries = Family::<BackendLabels, Counter>::default();
        registry.register(
            "backend_retries",
            "Backend calls sent again (idempotent calls, or calls that never reached the backend)",
            retries.clone(),
        );
        let breaker_openings = Family::<BackendLabels, Counter>::default();
        registry.register(
            "backend_circuit_openings",
            "Times a backend's circuit breaker opened",
            breaker_openings.clone(),
        );
        let signature_refusals = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "signature_refusals",
            "Signed calls refused, by reason",
            signature_refusals.clone(),
        );
        let streamed_answers = Family::<EndLabels, Counter>::default();
        for end in ["complete", "broken", "late", "closed"] {
            let _ = streamed_answers.get_or_create(&EndLabels { end });
        }
        registry.register(
            "streamed_answers",
            "Answers sent while they were written, by how they ended",
            streamed_answers.clone(),
        );
        let shadow = Family::<ShadowLabels, Counter>::default();
        registry.register(
            "shadow_calls",
            "Shadow mode: calls also sent to the legacy server, by what the comparison found",
            shadow.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "open_connections",
            "Client connections open now",
            connections.clone(),
        );
        let body_bytes_in_flight = Gauge::default();
        registry.register(
            "request_body_bytes_in_flight",
            "Bytes of request bodies over 64 KiB held now (bounded by server.max_body_bytes_in_flight)",
            body_bytes_in_flight.clone(),
        );
        let stock_batches = Family::<StateLabels, Gauge>::default();
        registry.register(
            "stock_batches",
            "Stock batches in the store, by state",
            stock_batches.clone(),
        );
        let stock_queue_depth = Gauge::default();
        registry.register(
            "stock_queue_depth",
            "Stock batches not yet done or failed",
            stock_queue_depth.clone(),
        );
        let stock_oldest_pending_seconds = Gauge::default();
        registry.register(
            "stock_oldest_pending_seconds",
            "Age of the oldest stock batch not yet done or failed",
            stock_oldest_pending_seconds.clone(),
        );
        let reloads = Counter::default();
        registry.register(
            "config_reloads",
            "Configurations reloaded and in force",
            reloads.clone(),
        );
        let reload_failures = Counter::default();
        registry.register(
            "config_reload_failures",
            "Reloads refused (the configuration in force stays)",
            reload_failures.clone(),
        );
        Telemetry {
            registry,
            calls,
            call_seconds,
            backend_seconds,
            backend_errors,
            logins,
            retries,
            breaker_openings,
            signature_refusals,
            streamed_answers,
            shadow,
            connections,
            stock_batches,
            stock_queue_depth,
            body_bytes_in_flight,
            stock_oldest_pending_seconds,
            ops: RwLock::default(),
            failures: Mutex::default(),
            backends: Mutex::default(),
            reloads,
            reload_failures,
            enabled,
            config_generation: AtomicU64::new(1),
            last_reload_ms: AtomicI64::new(0),
        }
    }

    /// Records each call answered in a request: its counts, latency and place on the operator
    /// page ([`Telemetry::call`]), and its access log line.
    pub(crate) fn calls_answered(&self, calls: &[CallInfo], r: &Answered<'_>) {
        for c in calls {
            self.call(&CallRecord {
                door: c.door,
                service: &c.service,
                operation: &c.operation,
                outcome: c.outcome,
                code: c.code,
                status: r.status,
                elapsed: r.elapsed,
                request_id: r.request_id,
            });
            // The code and status only: error texts may quote request or backend content. The
            // access log has its own target, so that it can be turned off on its own
            // (`SOAPBRIDGE_LOG=info,soapbridge::access=off`).
            tracing::info!(
                target: "soapbridge::access",
                method = %r.method,
                path = r.path,
                door = c.door,
                service = %c.service,
                operation = %c.operation,
                outcome = c.outcome.as_str(),
                code = c.code,
                status = r.status,
                elapsed_ms = r.elapsed.as_millis() as u64,
                "call"
            );
        }
    }

    /// One call: counted, timed, kept in the last minute's view, and when it failed, in the
    /// last failures.
    pub(crate) fn call(&self, c: &CallRecord<'_>) {
        if !self.enabled {
            return;
        }
        let op = self.op_stats(c.door, c.service, c.operation);
        let (service, operation) = op.names;
        let failed = c.outcome != Outcome::Success;
        if failed || !c.code.is_empty() {
            self.calls
                .get_or_create(&CallLabels {
                    door: c.door,
                    service,
                    operation,
                    outcome: c.outcome.as_str(),
                    code: c.code,
                })
                .inc();
        } else {
            op.successes.inc();
        }
        op.seconds.observe(c.elapsed.as_secs_f64());
        let now = chrono::Utc::now();
        op.window.lock().unwrap_or_else(|p| p.into_inner()).add(
            now.timestamp(),
            c.elapsed.as_secs_f64() * 1000.0,
            failed,
        );
        if failed {
            let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            if f.len() == KEEP_FAILURES {
                f.pop_back();
            }
            f.push_front(Failed {
                at_ms: now.timestamp_millis(),
                request_id: c.request_id.chars().take(64).collect(),
                door: c.door,
                service,
                operation,
                code: c.code,
                status: c.status,
            });
        }
    }

    /// The statistics of one (door, service, operation), made on its first call: after that,
    /// a call is one shared lookup, with no label set hashed and no name interned again.
    fn op_stats(&self, door: &'static str, service: &str, operation: &str) -> Arc<OpStats> {
        {
            let ops = self.ops.read().unwrap_or_else(|p| p.into_inner());
            // The map's keys are `'static`; a shared map can be read with shorter-lived ones.
            let ops: &HashMap<(&str, &str, &str), Arc<OpStats>, _> = &ops;
            if let Some(op) = ops.get(&(door, service, operation)) {
                return op.clone();
            }
        }
        let (service, operation) = (intern(service), intern(operation));
        let stats = Arc::new(OpStats {
            names: (service, operation),
            successes: self
                .calls
                .get_or_create(&CallLabels {
                    door,
                    service,
                    operation,
                    outcome: Outcome::Success.as_str(),
                    code: "",
                })
                .clone(),
            seconds: self
                .call_seconds
                .get_or_create(&OpLabels {
                    door,
                    service,
                    operation,
                })
                .clone(),
            window: Mutex::new(Window::new()),
        });
        self.ops
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry((door, service, operation))
            .or_insert(stats)
            .clone()
    }

    /// The handles of the backend `name` (the same ones for every client of that name, across
    /// reloads).
    pub(crate) fn backend(&self, name: &str) -> Arc<BackendStats> {
        let name = intern(name);
        if self.enabled {
            // Shown at 0 from the start, so that an alert on them sees 0, not "no data".
            let labels = BackendLabels { backend: name };
            let _ = self.retries.get_or_create(&labels);
            let _ = self.breaker_openings.get_or_create(&labels);
        }
        self.backends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name)
            .or_insert_with(|| {
                Arc::new(BackendStats {
                    name,
                    seconds: std::sync::OnceLock::new(),
                    last: Mutex::new(None),
                })
            })
            .clone()
    }

    /// One exchange with a backend; `error` is the failure's code.
    pub(crate) fn backend_call(
        &self,
        backend: &BackendStats,
        elapsed: Duration,
        error: Option<&'static str>,
    ) {
        if self.enabled {
            backend
                .seconds
                .get_or_init(|| {
                    self.backend_seconds
                        .get_or_create(&BackendLabels {
                            backend: backend.name,
                        })
                        .clone()
                })
                .observe(elapsed.as_secs_f64());
            if let Some(kind) = error {
                self.backend_errors
                    .get_or_create(&BackendErrorLabels {
                        backend: backend.name,
                        kind,
                    })
                    .inc();
            }
        }
        // Readiness and the operator page read each backend's last call, metrics or not.
        *backend.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(BackendHealth {
            at_ms: chrono::Utc::now().timestamp_millis(),
            last_error: error.unwrap_or(""),
        });
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// A shadowed call and what its comparison found (`same`, `different`, `legacy_error`,
    /// `dropped`).
    pub(crate) fn shadowed(&self, service: &str, operation: &str, result: &'static str) {
        self.shadow
            .get_or_create(&ShadowLabels {
                service: intern(service),
                operation: intern(operation),
                result,
            })
            .inc();
    }

    /// A backend call sent again.
    pub(crate) fn backend_retry(&self, backend: &str) {
        self.retries
            .get_or_create(&BackendLabels {
                backend: intern(backend),
            })
            .inc();
    }

    /// A backend's circuit breaker opened.
    pub(crate) fn breaker_opened(&self, backend: &str) {
        self.breaker_openings
            .get_or_create(&BackendLabels {
                backend: intern(backend),
            })
            .inc();
    }

    /// A login or a token renewal towards a backend (`kind`: login, refresh).
    pub(crate) fn login(&self, backend: &str, kind: &'static str) {
        self.logins
            .get_or_create(&LoginLabels {
                backend: intern(backend),
                kind,
            })
            .inc();
    }

    /// A signed call refused (`reason`: the error code).
    pub(crate) fn signature_refused(&self, reason: &'static str) {
        self.signature_refusals
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// An answer sent while it was written ended: `complete`, `broken` (it failed after it
    /// began), `late` (not read within the request's time) or `closed` (the client went away).
    pub(crate) fn streamed_answer(&self, end: &'static str) {
        self.streamed_answers
            .get_or_create(&EndLabels { end })
            .inc();
    }

    /// A reload: in force (`ok`), or refused.
    pub(crate) fn reloaded(&self, ok: bool) {
        if ok {
            self.reloads.inc();
            self.config_generation.fetch_add(1, Ordering::Relaxed);
            self.last_reload_ms
                .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
        } else {
            self.reload_failures.inc();
        }
    }

    /// Which configuration is in force (1 at start, one more per reload) and when it came.
    pub(crate) fn generation(&self) -> (u64, i64) {
        (
            self.config_generation.load(Ordering::Relaxed),
            self.last_reload_ms.load(Ordering::Relaxed),
        )
    }

    /// The stock sync's state, set before each scrape: batches by state, and the oldest
    /// pending batch's age.
    pub(crate) fn stock(&self, counts: &[(&'static str, i64)], oldest_pending_s: Option<i64>) {
        let mut pending = 0;
        // Every state is shown, at 0 when no batch is in it (each gauge set once, so that a
        // scrape never reads a passing 0).
        for state in crate::store::BatchStatus::ALL.map(|s| s.as_str()) {
            let n = counts
                .iter()
                .filter(|(s, _)| *s == state)
                .map(|(_, n)| n)
                .sum();
            self.stock_batches
                .get_or_create(&StateLabels { state })
                .set(n);
            if !matches!(state, "done" | "fail") {
                pending += n;
            }
        }
        self.stock_queue_depth.set(pending);
        self.stock_oldest_pending_seconds
            .set(oldest_pending_s.unwrap_or(0));
    }

    /// The bytes of large request bodies held now (set when the metrics are read).
    pub(crate) fn bodies_in_flight(&self, bytes: usize) {
        self.body_bytes_in_flight
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// The Prometheus text exposition of every metric.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Every operation's last minute, busiest first.
    pub(crate) fn traffic(&self) -> Vec<Traffic> {
        let now = chrono::Utc::now().timestamp();
        let ops = self.ops.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<Traffic> = ops
            .iter()
            .map(|((door, service, operation), op)| {
                let s = op.window.lock().unwrap_or_else(|p| p.into_inner()).sum(now);
                Traffic {
                    door,
                    service,
                    operation,
                    per_second: s.calls as f64 / 60.0,
                    calls: s.calls,
                    errors: s.errors,
                    p50_ms: quantile(&s.buckets, 0.5),
                    p99_ms: quantile(&s.buckets, 0.99),
                }
            })
            .filter(|t| t.calls > 0)
            .collect();
        out.sort_by(|a, b| b.calls.cmp(&a.calls).then(a.service.cmp(b.service)));
        out
    }

    /// The last failures, newest first.
    pub(crate) fn failures(&self) -> Vec<Failed> {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Each backend's last call.
    pub(crate) fn backend_health(&self) -> BTreeMap<&'static str, BackendHealth> {
        self.backends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(|(name, b)| {
                let last = b.last.lock().unwrap_or_else(|p| p.into_inner()).clone();
                last.map(|h| (*name, h))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_counted_timed_and_kept_with_bounded_labels() {
        let t = Telemetry::new(true);
        let call = |outcome, code, ms| CallRecord {
            door: "soap",
            service: "S",
            operation: "op",
            outcome,
            code,
            status: 200,
            elapsed: Duration::from_millis(ms),
            request_id: "r-1",
        };
        t.call(&call(Outcome::Success, "", 3));
        t.call(&call(Outcome::Success, "", 5));
        t.call(&call(Outcome::Fault, "BACKEND_TIMEOUT", 900));
        let text = t.encode();
        assert!(
            text.contains("soapbridge_calls_total{door=\"soap\",service=\"S\",operation=\"op\",outcome=\"success\",code=\"\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("outcome=\"fault\",code=\"BACKEND_TIMEOUT\"} 1"),
            "{text}"
        );
        assert!(text.contains("soapbridge_call_duration_seconds_count{door=\"soap\",service=\"S\",operation=\"op\"} 3"), "{text}");
        let traffic = t.traffic();
        assert_eq!(traffic.len(), 1);
        assert_eq!((traffic[0].calls, traffic[0].errors), (3, 1));
        assert_eq!(traffic[0].p50_ms, 8.0);
        assert_eq!(traffic[0].p99_ms, 1024.0);
        let f = t.failures();
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].code, f[0].request_id.as_str()),
            ("BACKEND_TIMEOUT", "r-1")
        );
        assert!(std::ptr::eq(intern("S"), intern(&String::from("S"))));
    }

    #[test]
    fn a_backend_shows_once_it_is_called_and_its_handles_are_shared() {
        let t = Telemetry::new(true);
        let first = t.backend("erp");
        // A client made again (a reload) gets the same handles.
        let again = t.backend(&String::from("erp"));
        assert!(Arc::ptr_eq(&first, &again));
        // Made but never called: not in readiness, no latency series; its counters at 0.
        assert!(t.backend_health().is_empty());
        let text = t.encode();
        assert!(
            !text.contains("duration_seconds_count{backend=\"erp\""),
            "{text}"
        );
        assert!(
            text.contains("soapbridge_backend_retries_total{backend=\"erp\"} 0"),
            "{text}"
        );
        t.backend_call(&first, Duration::from_millis(2), None);
        t.backend_call(&again, Duration::from_millis(4), Some("BACKEND_TIMEOUT"));
        let health = t.backend_health();
        assert_eq!(health.len(), 1);
        assert_eq!(health["erp"].last_error, "BACKEND_TIMEOUT");
        let text = t.encode();
        assert!(
            text.contains("soapbridge_backend_call_duration_seconds_count{backend=\"erp\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "soapbridge_backend_errors_total{backend=\"erp\",kind=\"BACKEND_TIMEOUT\"} 1"
            ),
            "{text}"
        );
        t.backend_call(&first, Duration::from_millis(1), None);
        assert_eq!(t.backend_health()["erp"].last_error, "");
    }

    #[test]
    fn only_the_last_failures_are_kept() {
        let t = Telemetry::new(true);
        for i in 0..(KEEP_FAILURES + 10) {
            t.call(&CallRecord {
                door: "xmlrpc",
                service: "S",
                operation: "op",
                outcome: Outcome::Failure,
                code: "SIGNATURE_INVALID",
                status: 200,
                elapsed: Duration::from_millis(1),
                request_id: &format!("r-{i}"),
            });
        }
        let f = t.failures();
        assert_eq!(f.len(), KEEP_FAILURES);
        assert_eq!(f[0].request_id, format!("r-{}", KEEP_FAILURES + 9));
    }
}
