//! The pipeline: one request from HTTP in to HTTP out.
//!
//! `handle` reads in one direction: find the service by path, authenticate (HTTP Basic),
//! read the bounded body, decode the envelope into the neutral call (operation + JSON
//! parameters), verify the profile's signature, render the backend request from the
//! operation's templates, call the backend, shape the answer with the response template,
//! wrap it with the profile, encode the envelope. Errors go to the wire in one place
//! (`respond_error`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::server::Body as Incoming;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::Value;

use crate::backend::{Auth, Backend, BackendSettings, ErrorShape};
use crate::call::Val;
use crate::config::{Config, ConfigError, ProfileConfig};
use crate::error::{Error, Lang};
use crate::mapping::Template;
use crate::profile::{BasicProfile, Profile, SignedProfile};
use crate::route::Route;
use crate::schema::ServiceDescription;
use crate::server::ServeOptions;

pub type Resp = Response<Full<Bytes>>;

#[derive(Debug)]
pub struct Service {
    pub name: String,
    pub path: String,
    pub desc: ServiceDescription,
    pub endpoint: String,
    pub wsdl: Bytes,
    pub profile: Option<Arc<Profile>>,
    /// One route per operation, in the order of `desc.operations`.
    pub routes: Vec<Route>,
    pub env_prefix: String,
    pub body_prefix: String,
    /// Refuse `xsi:nil` on optional, non-nillable elements instead of taking them as absent.
    pub strict_nil: bool,
}

/// The XML-RPC front door's settings.
#[derive(Debug, Clone)]
pub struct XmlRpcSettings {
    pub path: String,
    pub i8: crate::config::I8Policy,
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    max_body: usize,
    max_depth: usize,
    body_timeout: Duration,
    request_timeout: Duration,
}

#[derive(Debug)]
pub struct App {
    services: HashMap<String, Service>,
    stock: Option<Arc<crate::stock::StockSync>>,
    xmlrpc: Option<XmlRpcSettings>,
    winstrom: Option<crate::front::winstrom::Winstrom>,
    public_url: String,
    limits: Limits,
    serve: ServeOptions,
    clock: crate::clock::Clock,
}

fn header_pair(
    cfg: &Config,
    key: &str,
    name: &str,
    value: &str,
) -> Result<(HeaderName, HeaderValue), ConfigError> {
    let n = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| cfg.err(key, format!("'{name}' is not a valid header name")))?;
    let v = HeaderValue::from_str(value).map_err(|_| cfg.err(key, "not a valid header value"))?;
    Ok((n, v))
}

impl App {
    /// Builds the application from a configuration: loads every WSDL, compiles every
    /// mapping, opens the store. Every problem is reported with its key.
    pub async fn build(cfg: &Config) -> Result<App, ConfigError> {
        App::build_with_clock(cfg, crate::clock::Clock::system()).await
    }

    /// [`App::build`] going by `clock` (tests move an adjustable clock forward instead of
    /// sleeping).
    pub async fn build_with_clock(
        cfg: &Config,
        clock: crate::clock::Clock,
    ) -> Result<App, ConfigError> {
        let raw = &cfg.raw;
        let mut backends: HashMap<String, Arc<Backend>> = HashMap::new();
        for (name, b) in &raw.backends {
            let key = format!("backends.{name}");
            let base_url = b.base_url.clone();
            let mut headers = Vec::new();
            for (h, v) in &b.headers {
                let hkey = format!("{key}.headers.{h}");
                let value = cfg.secret(&hkey, v)?;
                headers.push(header_pair(cfg, &hkey, h, &value)?);
            }
            let compile = |k: &str, v: &Value| {
                Template::compile(v).map_err(|e| cfg.err(format!("{key}.errors.{k}"), e))
            };
            let errors = ErrorShape {
                code: compile("code", &b.errors.code)?,
                message: compile("message", &b.errors.message)?,
                fields: b
                    .errors
                    .fields
                    .as_ref()
                    .map(|f| compile("fields", f))
                    .transpose()?,
                status: b
                    .errors
                    .status
                    .as_ref()
                    .map(|f| compile("status", f))
                    .transpose()?,
                classify: b
                    .errors
                    .classify
                    .iter()
                    .map(|c| crate::backend::Classify {
                        contains: c.contains.clone(),
                        code: c.code.clone(),
                        number: c.number,
                    })
                    .collect(),
            };
            let auth = backend_auth(cfg, &key, b.auth.as_ref())?;
            let tls = crate::backend::tls_config(
                b.ca_file.as_ref().map(|p| cfg.resolve_path(p)).as_deref(),
            )
            .map_err(|e| cfg.err(format!("{key}.ca_file"), e))?;
            backends.insert(
                name.clone(),
                Arc::new(Backend::new(
                    name,
                    &base_url,
                    BackendSettings {
                        connect_timeout: Duration::from_millis(b.connect_timeout_ms),
                        timeout: Duration::from_millis(b.timeout_ms),
                        max_response_bytes: b.max_response_bytes,
                        max_url_bytes: b.max_url_bytes,
                        headers,
                        errors,
                        tls,
                        auth,
                        vars: Value::Object(
                            b.vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                        ),
                        clock: clock.clone(),
                    },
                )),
            );
        }

        // The durable store (stock batches, error reports, the shared signature cache); opened by
        // `check` too, which so checks that it can be reached.
        // Without a [store] section, a default SQLite file is used when something needs one:
        // stock batches, or the ledger of used signatures (kept across restarts).
        let needs_store = raw.stock.is_some()
            || raw
                .profiles
                .values()
                .any(|p| matches!(p, ProfileConfig::Signed(_)));
        let default_store;
        let store_cfg = match &raw.store {
            Some(sc) => Some(sc),
            None if needs_store => {
                default_store = crate::config::StoreConfig::default();
                Some(&default_store)
            }
            None => None,
        };
        let store = match store_cfg {
            Some(sc) => {
                let url = cfg.secret("store.url", &sc.url)?;
                let url = match url.strip_prefix("sqlite:") {
                    Some(path) => format!(
                        "sqlite:{}",
                        cfg.resolve_path(std::path::Path::new(path)).display()
                    ),
                    None => url,
                };
                let store = crate::store::Store::open(&url, &sc.schema)
                    .await
                    .map_err(|e| cfg.err("store.url", e.to_string()))?;
                tracing::info!(kind = store.kind(), "store opened");
                Some(Arc::new(store))
            }
            None => None,
        };
        let stock = match &raw.stock {
            None => None,
            Some(sc) => {
                let backend = backends.get(&sc.backend).ok_or_else(|| {
                    cfg.err(
                        "stock.backend",
                        format!("no [backends.{}] is defined", sc.backend),
                    )
                })?;
                let route = |k: &str, m: &crate::config::OperationMapping| {
                    Route::compile(m, backend.clone(), None)
                        .map_err(|(sub, e)| cfg.err(format!("stock.{k}.{sub}"), e))
                };
                let (send, poll) = (route("send", &sc.send)?, route("poll", &sc.poll)?);
                if sc.lease_ms <= raw.backends[&sc.backend].timeout_ms as i64 {
                    return Err(cfg.err(
                        "stock.lease_ms",
                        "must be longer than the backend's timeout_ms, or a slow delivery could lose its claim",
                    ));
                }
                store.clone().map(|st| {
                    Arc::new(crate::stock::StockSync::new(
                        st,
                        send,
                        poll,
                        sc.warehouse_codes.clone(),
                        crate::stock::Settings {
                            workers: sc.workers,
                            max_attempts: sc.max_attempts.max(1),
                            lease_ms: sc.lease_ms,
                            poll_interval_ms: sc.poll_interval_ms.max(10),
                            retry_base_ms: sc.retry_base_ms.max(1),
                            retry_max_ms: sc.retry_max_ms.max(1),
                        },
                        clock.clone(),
                    ))
                })
            }
        };

        let mut profiles: HashMap<String, Arc<Profile>> = HashMap::new();
        for (name, p) in &raw.profiles {
            let profile = match p {
                ProfileConfig::Signed(sp) => {
                    if sp.shared_replay_cache {
                        tracing::warn!(
                            profile = %name,
                            "shared_replay_cache is no longer needed: used signatures are always kept in the store"
                        );
                    }
                    let ledger = store.clone().expect("a signed profile opens the store");
                    Profile::Signed(SignedProfile::from_config(
                        name,
                        sp,
                        |k, s| cfg.secret(k, s),
                        ledger,
                    )?)
                }
                ProfileConfig::Basic(bp) => {
                    let mut users = Vec::new();
                    for (i, u) in bp.users.iter().enumerate() {
                        let k = format!("profiles.{name}.users[{i}].password");
                        users.push((u.user.clone(), cfg.secret(&k, &u.password)?));
                    }
                    Profile::Basic(BasicProfile::new(name, &bp.realm, users))
                }
            };
            profiles.insert(name.clone(), Arc::new(profile));
        }

        let public = cfg.public_url();
        let mut services = HashMap::new();
        for (i, s) in raw.services.iter().enumerate() {
            let skey = format!("services[{i}] ({})", s.name);
            let wsdl_path = cfg.resolve_path(&s.wsdl);
            let desc = ServiceDescription::load(&wsdl_path)
                .map_err(|e| cfg.err(format!("{skey}.wsdl"), e.to_string()))?;
            let profile = s.profile.as_ref().map(|p| profiles[p].clone());
            let set = &raw.mappings[&s.mappings];
            for op in set.keys() {
                if desc.operation(op).is_none() {
                    let known: Vec<&str> =
                        desc.operations.iter().map(|o| o.name.as_str()).collect();
                    return Err(cfg.err(
                        format!("mappings.{}.{op}", s.mappings),
                        format!(
                            "the WSDL of {} has no operation '{op}' (it has: {})",
                            s.name,
                            known.join(", ")
                        ),
                    ));
                }
            }
            let mut routes = Vec::new();
            for op in &desc.operations {
                let mkey = format!("mappings.{}.{}", s.mappings, op.name);
                let m = set.get(&op.name).ok_or_else(|| {
                    cfg.err(
                        &mkey,
                        format!("operation '{}' of {} has no mapping", op.name, s.name),
                    )
                })?;
                if let Some(p) = profile.as_ref().and_then(|p| p.signed()) {
                    p.check_operation(&desc.schema, op).map_err(|e| {
                        cfg.err(
                            format!("{skey}.profile"),
                            format!("operation '{}': {e}", op.name),
                        )
                    })?;
                }
                let backend = backends[m.backend.as_ref().unwrap_or(&s.backend)].clone();
                if m.stock.is_some() && raw.stock.is_none() {
                    return Err(cfg.err(format!("{mkey}.stock"), "needs a [stock] section"));
                }
                routes.push(
                    Route::compile(m, backend, stock.as_ref())
                        .map_err(|(k, e)| cfg.err(format!("{mkey}.{k}"), e))?,
                );
            }
            let endpoint = format!("{public}{}", s.path);
            let wsdl = Bytes::from(desc.render_wsdl(&endpoint));
            services.insert(
                s.path.trim_end_matches('/').to_string(),
                Service {
                    name: s.name.clone(),
                    path: s.path.clone(),
                    desc,
                    endpoint,
                    wsdl,
                    profile,
                    routes,
                    env_prefix: s.envelope_prefix.clone(),
                    body_prefix: s.body_prefix.clone(),
                    strict_nil: s.strict_nil,
                },
            );
        }
        let winstrom = raw
            .winstrom
            .as_ref()
            .map(|w| {
                crate::front::winstrom::Winstrom::build(cfg, w, &backends, &profiles, clock.clone())
            })
            .transpose()?;
        let sc = &raw.server;
        Ok(App {
            services,
            winstrom,
            stock,
            xmlrpc: raw.xmlrpc.enabled.then(|| XmlRpcSettings {
                path: raw.xmlrpc.path.trim_end_matches('/').to_string(),
                i8: raw.xmlrpc.i8,
            }),
            public_url: public.clone(),
            clock,
            limits: Limits {
                max_body: sc.max_body_bytes,
                max_depth: sc.max_depth,
                body_timeout: Duration::from_millis(sc.body_timeout_ms),
                request_timeout: Duration::from_millis(sc.request_timeout_ms),
            },
            serve: ServeOptions {
                header_timeout: Duration::from_millis(sc.header_timeout_ms),
                grace: Duration::from_millis(sc.shutdown_grace_ms),
                max_connections: sc.max_connections,
                drain: crate::server::Drain {
                    max_time: Duration::from_millis(sc.body_timeout_ms),
                    ..Default::default()
                },
            },
        })
    }

    pub fn serve_options(&self) -> ServeOptions {
        self.serve
    }

    /// Starts the background work (stock delivery workers) until `shutdown` turns true; the
    /// handle completes when the workers have finished and released their claims.
    pub fn start_background(
        &self,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        self.stock.clone().map(|s| tokio::spawn(s.run(shutdown)))
    }

    /// The stock sync, when configured (tests and benchmarks read its store).
    pub fn stock(&self) -> Option<&Arc<crate::stock::StockSync>> {
        self.stock.as_ref()
    }

    /// Every service, operation and the backend call it maps to (for `soapbridge check`).
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in self.services_in_order() {
            let profile = s.profile.as_ref().map_or("no profile".to_string(), |p| {
                format!("profile {}", p.name())
            });
            out.push(format!(
                "{} {} ({}, {} operations, {profile})",
                s.name,
                s.path,
                s.desc.target_namespace,
                s.desc.operations.len()
            ));
            for (op, r) in s.desc.operations.iter().zip(&s.routes) {
                out.push(format!("  {:<24} -> {}", op.name, r.describe()));
            }
        }
        if let Some(x) = &self.xmlrpc {
            out.push(format!(
                "XML-RPC {} (every operation above as <service>.<operation>)",
                x.path
            ));
        }
        if let Some(w) = &self.winstrom {
            out.extend(w.describe());
        }
        if let Some(s) = &self.stock {
            out.extend(s.describe());
        }
        out
    }

    /// Answers one HTTP request: a service's path goes to the SOAP door, the XML-RPC path to
    /// the XML-RPC door; `/` lists services and `/healthz` answers `ok`.
    pub async fn handle(&self, req: Request<Incoming>) -> Resp {
        let started = Instant::now();
        let path = req.uri().path().trim_end_matches('/');
        if let Some(svc) = self.services.get(path) {
            return crate::front::soap::handle(self, svc, req, started).await;
        }
        if self.xmlrpc.as_ref().is_some_and(|x| x.path == path) {
            return crate::front::xmlrpc::handle(self, req, started).await;
        }
        if let Some(w) = &self.winstrom
            && path
                .strip_prefix(w.prefix.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
        {
            return crate::front::winstrom::handle(self, w, req, started).await;
        }
        match (req.method(), path) {
            (&Method::GET, "") => self.index(),
            (&Method::GET, "/healthz") => {
                text_response(StatusCode::OK, "text/plain; charset=utf-8", "ok\n")
            }
            _ => crate::front::soap::no_such_service(&req),
        }
    }

    fn index(&self) -> Resp {
        let mut s = String::from("soapbridge\n\n");
        for svc in self.services_in_order() {
            s.push_str(&format!("{}  {}?wsdl\n", svc.name, svc.endpoint));
        }
        if let Some(x) = &self.xmlrpc {
            s.push_str(&format!(
                "\nXML-RPC  {}{}  (system.listMethods)\n",
                self.public_url, x.path
            ));
        }
        text_response(StatusCode::OK, "text/plain; charset=utf-8", s)
    }

    /// Services sorted by path.
    pub fn services_in_order(&self) -> Vec<&Service> {
        let mut services: Vec<&Service> = self.services.values().collect();
        services.sort_by(|a, b| a.path.cmp(&b.path));
        services
    }

    /// The service called `name` (XML-RPC method names start with it).
    pub fn service_named(&self, name: &str) -> Option<&Service> {
        self.services.values().find(|s| s.name == name)
    }

    pub fn xmlrpc(&self) -> Option<&XmlRpcSettings> {
        self.xmlrpc.as_ref()
    }

    pub fn max_depth(&self) -> usize {
        self.limits.max_depth
    }

    /// The shared pipeline of every front door once a call is decoded: the profile's
    /// signature check (which consumes its parameters), then the operation's route: request
    /// templates, backend, response template. The result still needs [`Service::finish`].
    pub async fn execute(
        &self,
        svc: &Service,
        operation: usize,
        mut params: Val<'_>,
        role_user: Option<&str>,
    ) -> Result<Value, Error> {
        if let Some(p) = &svc.profile {
            let user = role_user.ok_or(Error::Unauthorized)?;
            if let Some(signed) = p.signed() {
                signed
                    .verify(&mut params, user, self.clock.now_ms())
                    .await?;
            }
        }
        svc.routes[operation].invoke(&params).await
    }

    /// When a door that works through many items (winstrom documents) stops starting new ones,
    /// so that what it did still reaches the client: at 80% of the request's time limit.
    pub fn record_deadline(&self, started: Instant) -> Instant {
        started + self.limits.request_timeout.mul_f64(0.8)
    }

    /// Runs `f` within the whole-request time limit.
    pub async fn within_request_time<T>(
        &self,
        f: impl std::future::Future<Output = T>,
    ) -> Result<T, Error> {
        tokio::time::timeout(self.limits.request_timeout, f)
            .await
            .map_err(|_| Error::RequestTimeout {
                limit_ms: self.limits.request_timeout.as_millis() as u64,
            })
    }

    /// Reads a request body within the size and time limits.
    pub async fn read_body(&self, body: Incoming) -> Result<Bytes, Error> {
        let limit = self.limits.max_body;
        match tokio::time::timeout(
            self.limits.body_timeout,
            Limited::new(body, limit).collect(),
        )
        .await
        {
            Err(_) => Err(Error::BodyTimeout),
            Ok(Ok(c)) => Ok(c.to_bytes()),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                Err(Error::BodyTooLarge { limit })
            }
            Ok(Err(e)) => Err(Error::MalformedXml(format!("reading the body failed: {e}"))),
        }
    }
}

impl Service {
    /// How this service's envelopes are read.
    pub fn read_options(&self, max_depth: usize) -> crate::protocol::soap::ReadOptions {
        crate::protocol::soap::ReadOptions {
            max_depth,
            strict_nil: self.strict_nil,
        }
    }

    /// HTTP Basic against the service's profile: the role user, or `None` for services
    /// without a profile.
    pub fn authenticate(&self, headers: &http::HeaderMap) -> Result<Option<String>, Error> {
        match &self.profile {
            Some(p) => p
                .authenticate(
                    headers
                        .get(http::header::AUTHORIZATION)
                        .map(HeaderValue::as_bytes),
                )
                .map(|u| Some(u.to_string())),
            None => Ok(None),
        }
    }

    /// The caller's language for messages (the profile's `lang` parameter or default).
    pub fn lang(&self, params: &Val<'_>) -> Lang {
        self.signed().map(|p| p.lang(params)).unwrap_or_default()
    }

    /// The service's signed profile, if it has one.
    pub fn signed(&self) -> Option<&SignedProfile> {
        self.profile.as_ref().and_then(|p| p.signed())
    }

    /// Dresses a route's result as the operation's response content (the profile's
    /// `ackCode`, `responseTime`, `timeElapsed`).
    pub fn finish(&self, result: Value, started: Instant) -> Value {
        match self.signed() {
            Some(p) => p.success(result, started),
            None => result,
        }
    }

    /// The error for a backend answer that the operation's output schema cannot carry.
    pub fn answer_misfit(
        &self,
        operation: usize,
        shape: &crate::protocol::xml::ShapeError,
    ) -> Error {
        Error::BackendBadResponse {
            backend: self.routes[operation].backend.name.clone(),
            reason: format!("its answer does not fit the response schema: {shape}"),
        }
    }
}

pub fn header_str<B>(req: &Request<B>, name: impl http::header::AsHeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

pub fn text_response(status: StatusCode, ct: &str, body: impl Into<Bytes>) -> Resp {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, ct)
        .body(Full::new(body.into()))
        .expect("valid response")
}

/// The credentials the bridge uses towards a backend.
fn backend_auth(
    cfg: &Config,
    key: &str,
    auth: Option<&crate::config::BackendAuthConfig>,
) -> Result<Auth, ConfigError> {
    use crate::backend::auth::{PasswordGrant, SessionLogin, form};
    use crate::config::BackendAuthConfig as A;
    let key = format!("{key}.auth");
    Ok(match auth {
        None => Auth::None,
        Some(A::Basic { user, password }) => {
            use base64::Engine;
            let password = cfg.secret(&format!("{key}.password"), password)?;
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            Auth::Basic(
                HeaderValue::from_str(&format!("Basic {token}"))
                    .map_err(|_| cfg.err(&key, "the credentials do not fit in a header"))?,
            )
        }
        Some(A::Session {
            method,
            path,
            body,
            credentials,
            session,
            expired,
        }) => {
            let mut creds = serde_json::Map::new();
            for (k, v) in credentials {
                creds.insert(
                    k.clone(),
                    Value::String(cfg.secret(&format!("{key}.credentials.{k}"), v)?),
                );
            }
            let tmpl = |k: &str, v: &Value| {
                Template::compile(v).map_err(|e| cfg.err(format!("{key}.{k}"), e))
            };
            if !path.starts_with('/') {
                return Err(cfg.err(format!("{key}.path"), "must start with '/'"));
            }
            Auth::Session(SessionLogin {
                method: method
                    .parse()
                    .map_err(|_| cfg.err(format!("{key}.method"), "not an HTTP method"))?,
                path: path.clone(),
                body: tmpl("body", body)?,
                credentials: Value::Object(creds),
                session: tmpl("session", session)?,
                expired: expired.clone(),
                state: Default::default(),
                failed: Default::default(),
            })
        }
        Some(A::Oauth2Password {
            token_path,
            client_id,
            client_secret,
            username,
            password,
            scope,
            refresh_margin_secs,
        }) => {
            if !token_path.starts_with('/') {
                return Err(cfg.err(format!("{key}.token_path"), "must start with '/'"));
            }
            let secret = cfg.secret(&format!("{key}.client_secret"), client_secret)?;
            let password = cfg.secret(&format!("{key}.password"), password)?;
            let mut pairs = vec![
                ("username", username.as_str()),
                ("password", password.as_str()),
                ("client_id", client_id.as_str()),
                ("client_secret", secret.as_str()),
            ];
            if let Some(s) = scope {
                pairs.push(("scope", s));
            }
            Auth::OAuth2(PasswordGrant {
                token_path: token_path.clone(),
                password_form: form(&pairs),
                client_form: form(&[("client_id", client_id), ("client_secret", &secret)]),
                margin: Duration::from_secs(*refresh_margin_secs),
                state: Default::default(),
                failed: Default::default(),
            })
        }
    })
}
