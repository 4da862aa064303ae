//! The running bridge.
//!
//! [`App::start`] does the start-up I/O a compiled [`Plan`] needs: opens the store, makes a
//! client per backend, starts nothing that listens. What a configuration describes (profiles,
//! services, the three doors, limits) is one [`Generation`]; what outlives a configuration (the
//! store, backend clients with their logins, the stock sync, telemetry, the clock) is shared.
//! [`App::reload`] builds a new generation from a new plan and swaps it in atomically: calls in
//! flight finish on the generation they started with.
//!
//! [`App::handle`] gives each request its id (the client's `X-Request-Id`, or a new one), routes
//! it by path to the door that owns it, and records what the door says of its calls.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use http::{HeaderValue, Method, Request, StatusCode};
use tracing::Instrument;

use crate::backend::Backend;
use crate::clock::Clock;
use crate::config::{BackendPlan, Plan};
use crate::front::soap::SoapDoor;
use crate::front::winstrom::WinstromDoor;
use crate::front::xmlrpc::XmlRpcDoor;
use crate::pipeline::Pipeline;
use crate::profile::Profile;
use crate::server::{Body, Resp, ServeOptions, text_response};
use crate::service::Service;
use crate::stock::StockSync;
use crate::store::Store;
use crate::telemetry::{Answered, Calls, Telemetry};

/// Why the bridge could not start from a (valid) plan: something outside it is not there.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct StartError {
    pub what: String,
    pub reason: String,
}

/// Backend clients by name, each with the plan it was made from.
type Clients = BTreeMap<String, (Arc<BackendPlan>, Arc<Backend>)>;

/// What outlives a configuration reload.
#[derive(Debug)]
struct Shared {
    store: Option<Arc<Store>>,
    /// Backend clients by name, with the plan each was made from: a reload keeps a client
    /// (and its login) when the backend's connection settings did not change.
    backends: Mutex<Clients>,
    stock: Option<Arc<StockSync>>,
    telemetry: Arc<Telemetry>,
    clock: Clock,
    /// Flexi login sessions, kept across reloads.
    sessions: Arc<crate::front::winstrom::Sessions>,
    serve: ServeOptions,
    /// Bytes of large request bodies held at once, across generations.
    body_budget: Option<Arc<crate::server::BodyBudget>>,
    /// The plan's parts a reload cannot change, to warn when a new file changes them.
    fixed: Fixed,
    /// Where the configuration is read again on a reload.
    source: SourceSlot,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct SourceSlot(std::sync::OnceLock<crate::Source>);

impl std::fmt::Debug for SourceSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Source(set)"
        } else {
            "Source(none)"
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Fixed {
    listen: std::net::SocketAddr,
    max_connections: usize,
    body_budget: Option<usize>,
    header_timeout: std::time::Duration,
    store: Option<(String, String)>,
    stock: Option<String>,
}

impl Fixed {
    fn of(plan: &Plan) -> Fixed {
        Fixed {
            listen: plan.server.listen,
            max_connections: plan.server.max_connections,
            body_budget: plan.server.body_budget,
            header_timeout: plan.server.header_timeout,
            store: plan
                .store
                .as_ref()
                .map(|s| (s.url.clone(), s.schema.clone())),
            stock: plan.stock.as_ref().map(|s| format!("{s:?}")),
        }
    }
}

/// What one configuration describes, ready to answer requests.
#[derive(Debug)]
struct Generation {
    /// Shared with the work a door leaves running after its answer began (a multicall's).
    pipeline: Arc<Pipeline>,
    soap: SoapDoor,
    xmlrpc: Option<Arc<XmlRpcDoor>>,
    winstrom: Option<WinstromDoor>,
    /// Sorted by path.
    services: Vec<Arc<Service>>,
    public_url: String,
    ops: Option<crate::ops::OpsDoor>,
}

#[derive(Debug)]
pub struct App {
    shared: Shared,
    current: ArcSwap<Generation>,
}

impl App {
    /// Starts what a plan describes on the system clock: see [`App::start_with_clock`].
    pub async fn start(plan: Plan) -> Result<App, StartError> {
        App::start_with_clock(plan, Clock::system()).await
    }

    /// Starts what a plan describes, going by `clock` (tests move an adjustable clock forward
    /// instead of sleeping): opens the store (creating or migrating it), makes a client for
    /// every backend, binds every operation to its backend. Nothing listens yet and no worker
    /// runs: see [`crate::server::run`].
    pub async fn start_with_clock(plan: Plan, clock: Clock) -> Result<App, StartError> {
        let telemetry = Arc::new(Telemetry::new(plan.server.metrics));
        let store = match &plan.store {
            Some(s) => {
                let store = Store::open(&s.url, &s.schema)
                    .await
                    .map_err(|e| StartError {
                        what: "store.url".into(),
                        reason: e.to_string(),
                    })?;
                tracing::info!(kind = store.kind(), "store opened");
                Some(Arc::new(store))
            }
            None => None,
        };
        let backends: Clients = plan
            .backends
            .iter()
            .map(|(name, b)| {
                let client = Backend::new(b, clock.clone(), telemetry.clone());
                (name.clone(), (b.clone(), Arc::new(client)))
            })
            .collect();
        let stock = match (&plan.stock, &store) {
            (Some(s), Some(st)) => Some(Arc::new(StockSync::new(
                s,
                st.clone(),
                backends[&s.backend].1.clone(),
                clock.clone(),
            ))),
            _ => None,
        };
        let server = &plan.server;
        let shared = Shared {
            store: store.clone(),
            backends: Mutex::new(backends),
            stock,
            telemetry,
            clock,
            sessions: Arc::new(crate::front::winstrom::Sessions::new(
                store.clone(),
                crate::front::winstrom::SESSION_IDLE_MS,
                crate::front::winstrom::MAX_SESSIONS,
            )),
            serve: ServeOptions {
                header_timeout: server.header_timeout,
                grace: server.grace,
                max_connections: server.max_connections,
                drain: crate::server::Drain {
                    max_bytes: crate::config::defaults::DRAIN_MAX_BYTES,
                    max_time: server.limits.body_timeout,
                },
                connections: None,
            },
            body_budget: server
                .body_budget
                .map(|n| Arc::new(crate::server::BodyBudget::new(n))),
            fixed: Fixed::of(&plan),
            source: SourceSlot::default(),
            reloading: tokio::sync::Mutex::new(()),
        };
        let generation = shared.generation(plan);
        Ok(App {
            shared,
            current: ArcSwap::from_pointee(generation),
        })
    }

    /// Puts a new configuration in force: its generation is built (reusing the store, the
    /// stock sync and every backend client whose connection settings did not change) and
    /// swapped in at once; calls in flight finish on the one they started with. What a reload
    /// cannot change (listen address, connection limit, header timeout, store, stock sync) stays
    /// as it was, with a warning.
    pub fn reload(&self, plan: Plan) {
        let fixed = Fixed::of(&plan);
        if fixed != self.shared.fixed {
            tracing::warn!(
                "the listen address, connection limit, bytes of bodies in flight, header timeout, [store] and [stock] take effect at restart only; the rest of the new configuration is in force"
            );
        }
        let generation = self.shared.generation(plan);
        self.current.store(Arc::new(generation));
        self.shared.telemetry.reloaded(true);
        tracing::info!(
            generation = self.shared.telemetry.generation().0,
            "configuration reloaded"
        );
    }

    /// Where [`App::reload_from_source`] reads the configuration (set once).
    pub fn set_source(&self, source: crate::Source) {
        let _ = self.shared.source.0.set(source);
    }

    /// Reads and compiles the configuration again from its source and, when it has no error,
    /// puts it in force ([`App::reload`]); otherwise the configuration in force stays and every
    /// problem is logged and returned. Returns the new generation.
    pub async fn reload_from_source(&self) -> Result<u64, Vec<String>> {
        let Some(source) = self.shared.source.0.get().cloned() else {
            return Err(vec![
                "this bridge was not started from a configuration file".into(),
            ]);
        };
        let _one = self.shared.reloading.lock().await;
        let compiled = tokio::task::spawn_blocking(move || source())
            .await
            .map_err(|e| vec![format!("the reload stopped: {e}")])?;
        match compiled {
            Ok(plan) => {
                self.reload(plan);
                Ok(self.shared.telemetry.generation().0)
            }
            Err(errors) => {
                let lines: Vec<String> = errors.0.iter().map(|e| e.to_string()).collect();
                for line in &lines {
                    tracing::error!("reload refused: {line}");
                }
                tracing::error!(
                    problems = lines.len(),
                    "the configuration in force stays: fix the file and reload again"
                );
                self.reload_refused();
                Err(lines)
            }
        }
    }

    /// A reload that was refused (the configuration in force stays).
    pub fn reload_refused(&self) {
        self.shared.telemetry.reloaded(false);
    }

    /// The store, when the plan has one.
    pub fn store(&self) -> Option<&Arc<Store>> {
        self.shared.store.as_ref()
    }

    pub fn serve_options(&self) -> ServeOptions {
        self.shared.serve.clone()
    }

    /// The gauge the server keeps of open connections.
    pub(crate) fn connections(&self) -> prometheus_client::metrics::gauge::Gauge {
        self.shared.telemetry.connections.clone()
    }

    /// Starts the background work (stock delivery workers) until `shutdown` turns true; the
    /// handle completes when the workers have finished and released their claims.
    pub fn start_background(
        &self,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        self.shared
            .stock
            .clone()
            .map(|s| tokio::spawn(s.run(shutdown)))
    }

    /// Every service, operation and the backend call it maps to (for `soapbridge check`).
    pub fn describe(&self) -> Vec<String> {
        let g = self.current.load();
        let mut out: Vec<String> = g.services.iter().flat_map(|s| s.describe()).collect();
        if let Some(x) = &g.xmlrpc {
            out.push(format!(
                "XML-RPC {} (every operation above as <service>.<operation>)",
                x.path
            ));
        }
        if let Some(w) = &g.winstrom {
            out.extend(w.describe());
        }
        if let Some(s) = &self.shared.stock {
            out.extend(s.describe());
        }
        if let Some(o) = &g.ops {
            out.push(format!(
                "operator page {}/ (HTTP Basic, [ops] users)",
                o.path
            ));
        }
        let clients = self
            .shared
            .backends
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        out.extend(clients.values().map(|(_, c)| c.describe()));
        out
    }

    /// Answers one HTTP request: gives it its id, routes it by path to the door that owns it,
    /// and records the calls the door answered. `/` lists the services, `/healthz` and
    /// `/readyz` are the probes, `/metrics` the Prometheus metrics; any other path is a SOAP
    /// fault (404).
    pub async fn handle(&self, req: Request<Body>) -> Resp {
        let started = Instant::now();
        let id = request_id(&req);
        // Every log line of the call carries its id and caller from the request's context
        // (`telemetry::with_request_id`). The span is for exporters (OpenTelemetry): when none
        // is on, no layer enables it and it costs nothing. What is known only at the end (door,
        // service, operation, outcome) goes on the call's own line.
        let span = tracing::info_span!("request", request_id = %id, user = tracing::field::Empty);
        // For the access line: a `Uri` clone shares its bytes (no copy of the path per call).
        let (method, uri) = (req.method().clone(), req.uri().clone());
        let generation = self.current.load_full();
        let call = async {
            let mut resp = self.route(&generation, req, started).await;
            let status = resp.status().as_u16();
            if let Some(Calls(calls)) = resp.extensions_mut().remove::<Calls>() {
                let answered = Answered {
                    method: &method,
                    path: uri.path(),
                    status,
                    elapsed: started.elapsed(),
                    request_id: &id,
                };
                self.shared.telemetry.calls_answered(&calls, &answered);
            }
            resp
        };
        // Work that makes several backend calls for the request paces them by its time.
        let times = Some(generation.pipeline.times(started));
        let work = call.instrument(span);
        let mut resp = crate::telemetry::with_request_id(id.clone(), times, work).await;
        if let Ok(v) = HeaderValue::from_str(&id) {
            resp.headers_mut().insert(crate::telemetry::X_REQUEST_ID, v);
        }
        resp
    }

    async fn route(&self, g: &Generation, req: Request<Body>, started: Instant) -> Resp {
        let path = req.uri().path().trim_end_matches('/');
        let p = &g.pipeline;
        if let Some(svc) = g.soap.service(path) {
            return Box::pin(crate::front::soap::handle(p, svc, req, started)).await;
        }
        if let Some(x) = g.xmlrpc.as_ref().filter(|x| x.path == path) {
            return Box::pin(crate::front::xmlrpc::handle(x, p, req, started)).await;
        }
        if let Some(w) = g.winstrom.as_ref().filter(|w| w.owns(path)) {
            return Box::pin(crate::front::winstrom::handle(w, p, req, started)).await;
        }
        if let Some(ops) = g.ops.as_ref().filter(|o| o.owns(path)) {
            return match ops.ask(&req) {
                crate::ops::Ask::Reload => {
                    crate::ops::reloaded(Box::pin(self.reload_from_source()).await)
                }
                ask @ (crate::ops::Ask::Page | crate::ops::Ask::Status) => {
                    crate::ops::answer(ask, &Box::pin(self.status()).await)
                }
                refused => ops.refused(refused),
            };
        }
        match (req.method(), path) {
            (&Method::GET, "") => self.index(g),
            (&Method::GET, "/healthz") => {
                text_response(StatusCode::OK, "text/plain; charset=utf-8", "ok\n")
            }
            (&Method::GET, "/readyz") => Box::pin(self.readiness()).await,
            (&Method::GET, "/metrics") if self.shared.telemetry.enabled() => {
                Box::pin(self.metrics()).await
            }
            _ => crate::front::soap::no_such_service(&req),
        }
    }

    fn index(&self, g: &Generation) -> Resp {
        let mut s = String::from("soapbridge\n\n");
        for svc in &g.services {
            s.push_str(&format!("{}  {}?wsdl\n", svc.name, svc.endpoint));
        }
        if let Some(x) = &g.xmlrpc {
            s.push_str(&format!(
                "\nXML-RPC  {}{}  (system.listMethods)\n",
                g.public_url, x.path
            ));
        }
        text_response(StatusCode::OK, "text/plain; charset=utf-8", s)
    }

    /// Ready when a configuration is in force and the store (if any) answers; each backend's
    /// last call is listed but does not make the bridge unready (a backend outage is answered
    /// with faults, and taking every instance out of service would not help).
    async fn readiness(&self) -> Resp {
        let mut ok = true;
        let (generation, _) = self.shared.telemetry.generation();
        let mut body = format!("configuration: generation {generation}\n");
        if let Some(store) = &self.shared.store {
            let reachable = tokio::time::timeout(std::time::Duration::from_secs(2), store.counts())
                .await
                .map_err(|_| "no answer within 2 s".to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            match reachable {
                Ok(_) => body.push_str(&format!("store ({}): ok\n", store.kind())),
                Err(e) => {
                    ok = false;
                    body.push_str(&format!("store ({}): unreachable: {e}\n", store.kind()));
                }
            }
        }
        let health = self.shared.telemetry.backend_health();
        for (name, (_, client)) in self
            .shared
            .backends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let line = match health.get(name.as_str()) {
                None => "not called yet".to_string(),
                Some(h) if h.last_error.is_empty() => "last call ok".to_string(),
                Some(h) => format!("last call failed: {}", h.last_error),
            };
            let (breaker, in_flight) = client.health();
            body.push_str(&format!(
                "backend {name}: {line}; breaker {breaker}; {in_flight} in flight\n"
            ));
        }
        let status = if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        text_response(status, "text/plain; charset=utf-8", body)
    }

    /// What the operator page shows, read now.
    async fn status(&self) -> crate::ops::Status {
        use crate::ops::{BackendStatus, ErrorReport, FailedBatch, StockStatus, short, time};
        let t = &self.shared.telemetry;
        let (generation, reloaded_ms) = t.generation();
        let health = t.backend_health();
        let backends = self
            .shared
            .backends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(name, (_, client))| {
                let (breaker, in_flight) = client.health();
                BackendStatus {
                    name: name.clone(),
                    last: health.get(name.as_str()).cloned(),
                    breaker,
                    in_flight,
                }
            })
            .collect();
        let stock = match (&self.shared.store, &self.shared.stock) {
            (Some(store), Some(_)) => {
                let read = async {
                    Ok::<_, crate::store::StoreError>((
                        store.counts().await?,
                        store.oldest_pending().await?,
                        store
                            .batches(Some(crate::store::BatchStatus::Fail), 10)
                            .await?,
                        store.reports(None, 20).await?,
                    ))
                };
                let now = self.shared.clock.now_ms();
                Some(
                    match tokio::time::timeout(std::time::Duration::from_secs(2), read).await {
                        Ok(Ok((counts, oldest, failed, reports))) => StockStatus {
                            counts: counts.iter().map(|(s, n)| (s.as_str(), *n)).collect(),
                            oldest_pending_seconds: oldest.map(|t| (now - t) / 1000),
                            failed: failed
                                .into_iter()
                                .map(|b| FailedBatch {
                                    id: b.id,
                                    key: short(&b.key, 80),
                                    action: b.action.as_str(),
                                    attempts: b.attempts,
                                    last_error: short(b.last_error.as_deref().unwrap_or(""), 300),
                                })
                                .collect(),
                            reports: reports
                                .into_iter()
                                .filter(|r| !r.is_ok)
                                .map(|r| ErrorReport {
                                    id: r.id,
                                    batch_id: r.batch_id,
                                    code: short(&r.error_code, 80),
                                    description: short(&r.error_description, 300),
                                    at: time(r.modified_date),
                                })
                                .collect(),
                            unavailable: None,
                        },
                        Ok(Err(e)) => StockStatus::unavailable(e.to_string()),
                        Err(_) => StockStatus::unavailable("no answer within 2 s".into()),
                    },
                )
            }
            _ => None,
        };
        crate::ops::Status {
            now: time(chrono::Utc::now().timestamp_millis()),
            generation,
            last_reload: (reloaded_ms > 0).then(|| time(reloaded_ms)),
            traffic: t.traffic(),
            backends,
            stock,
            failures: t.failures(),
        }
    }

    /// The Prometheus metrics, with the stock sync's state read from the store now.
    async fn metrics(&self) -> Resp {
        if let (Some(store), Some(_)) = (&self.shared.store, &self.shared.stock) {
            let now = self.shared.clock.now_ms();
            if let Ok(Ok((counts, oldest))) =
                tokio::time::timeout(std::time::Duration::from_secs(2), async {
                    Ok::<_, crate::store::StoreError>((
                        store.counts().await?,
                        store.oldest_pending().await?,
                    ))
                })
                .await
            {
                let counts: Vec<(&'static str, i64)> =
                    counts.iter().map(|(s, n)| (s.as_str(), *n)).collect();
                self.shared
                    .telemetry
                    .stock(&counts, oldest.map(|t| (now - t) / 1000));
            }
        }
        if let Some(b) = &self.shared.body_budget {
            self.shared.telemetry.bodies_in_flight(b.held_bytes());
        }
        text_response(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            self.shared.telemetry.encode(),
        )
    }
}

impl Shared {
    /// The generation a plan describes, reusing what outlives configurations.
    fn generation(&self, plan: Plan) -> Generation {
        let backends = self.backends_for(&plan);
        let backend = |name: &str| backends[name].clone();
        let profiles: BTreeMap<String, Arc<Profile>> = plan
            .profiles
            .iter()
            .map(|(name, p)| (name.clone(), Arc::new(Profile::new(p, self.store.as_ref()))))
            .collect();
        let services: Vec<Arc<Service>> = plan
            .services
            .into_iter()
            .map(|s| {
                let profile = s.profile.as_ref().map(|p| profiles[p].clone());
                Arc::new(Service::new(s, profile, backend, &self.telemetry))
            })
            .collect();
        let winstrom = plan.winstrom.as_ref().map(|w| {
            WinstromDoor::new(
                w,
                |p| profiles[p].clone(),
                backend,
                self.clock.clone(),
                self.sessions.clone(),
            )
        });
        Generation {
            pipeline: Arc::new(Pipeline::new(
                plan.server.limits,
                self.body_budget.clone(),
                self.clock.clone(),
                self.stock.clone(),
                self.telemetry.clone(),
            )),
            soap: SoapDoor::new(&services),
            xmlrpc: plan
                .xmlrpc
                .as_ref()
                .map(|x| Arc::new(XmlRpcDoor::new(x, &services))),
            winstrom,
            services,
            public_url: plan.server.public_url.clone(),
            ops: plan.ops.as_ref().map(crate::ops::OpsDoor::new),
        }
    }

    /// A client for every backend of the plan: the one in use when its connection settings
    /// are the same (so its login goes on), a new one otherwise.
    fn backends_for(&self, plan: &Plan) -> BTreeMap<String, Arc<Backend>> {
        let mut clients = self.backends.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = BTreeMap::new();
        for (name, b) in &plan.backends {
            let kept = clients
                .get(name)
                .filter(|(old, _)| old.same_as(b))
                .map(|(_, c)| c.clone());
            let client = kept.unwrap_or_else(|| {
                let c = Arc::new(Backend::new(b, self.clock.clone(), self.telemetry.clone()));
                clients.insert(name.clone(), (b.clone(), c.clone()));
                c
            });
            out.insert(name.clone(), client);
        }
        out
    }
}

/// The request's id: the client's `X-Request-Id` when it is a sensible one (1 to 128 visible
/// ASCII characters), else a new one.
fn request_id<B>(req: &Request<B>) -> Arc<str> {
    let given = req
        .headers()
        .get(crate::telemetry::X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()));
    match given {
        Some(v) => Arc::from(v),
        None => Arc::from(new_request_id()),
    }
}

/// A new request id: 16 hex digits, unique in this process and unlikely to repeat across
/// processes (a per-process random start).
fn new_request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        h.finish()
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:016x}",
        start.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    )
}
