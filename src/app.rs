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

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::Value;

use crate::backend::{Backend, BackendRequest, BackendSettings, ErrorShape};
use crate::call::Val;
use crate::config::{Config, ConfigError, ProfileConfig};
use crate::error::{Error, Lang};
use crate::mapping::{Doc, PathTemplate, Scope, Template, render_query};
use crate::profile::SignedProfile;
use crate::protocol::soap::{self, SoapVersion};
use crate::schema::ServiceDescription;
use crate::server::ServeOptions;

type Resp = Response<Full<Bytes>>;

/// The backend call an operation maps to.
#[derive(Debug)]
pub struct Route {
    backend: Arc<Backend>,
    method: Method,
    path: PathTemplate,
    query: Vec<(String, Template)>,
    body: Option<Template>,
    response: Template,
}

impl Route {
    /// Renders the backend request from the call's parameters, calls the backend and shapes
    /// its answer into the operation's result.
    async fn invoke(&self, input: &Val<'_>) -> Result<Value, Error> {
        let scope = Scope {
            doc: Doc::Call(input),
            input: Doc::Call(input),
            item: None,
        };
        let mut path_and_query =
            self.path
                .render(&scope)
                .map_err(|expr| Error::MissingElement {
                    path: expr.trim_start_matches("$.").replace('.', "/"),
                })?;
        path_and_query.push_str(&render_query(&self.query, &scope).map_err(Error::Internal)?);
        let body = self.body.as_ref().and_then(|t| t.eval(&scope));
        let answer = self
            .backend
            .call(&BackendRequest {
                method: self.method.clone(),
                path_and_query,
                body,
            })
            .await?;
        self.response
            .eval(&Scope {
                doc: Doc::Json(&answer),
                input: Doc::Call(input),
                item: None,
            })
            .ok_or_else(|| Error::BackendBadResponse {
                backend: self.backend.name.clone(),
                reason: "the answer lacks the fields the response mapping reads".into(),
            })
    }

    pub fn describe(&self) -> String {
        format!(
            "{} {}{}",
            self.method,
            self.backend.base_url(),
            self.path.text()
        )
    }
}

#[derive(Debug)]
pub struct Service {
    pub name: String,
    pub path: String,
    pub desc: ServiceDescription,
    endpoint: String,
    wsdl: Bytes,
    profile: Option<Arc<SignedProfile>>,
    /// One route per operation, in the order of `desc.operations`.
    routes: Vec<Route>,
    env_prefix: String,
    body_prefix: String,
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
    limits: Limits,
    serve: ServeOptions,
}

/// Whether [`App::build`] starts the bundled reference backends (`serve`) or only checks
/// their data (`check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtins {
    Start,
    CheckOnly,
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
    /// mapping, starts bundled reference backends. Every problem is reported with its key.
    pub async fn build(cfg: &Config, builtins: Builtins) -> Result<App, ConfigError> {
        let raw = &cfg.raw;
        let mut backends: HashMap<String, Arc<Backend>> = HashMap::new();
        for (name, b) in &raw.backends {
            let key = format!("backends.{name}");
            let base_url = match (&b.base_url, &b.builtin) {
                (Some(url), _) => url.clone(),
                (None, Some(bi)) => {
                    let data = cfg.resolve_path(&bi.data);
                    if builtins == Builtins::Start {
                        let listener =
                            tokio::net::TcpListener::bind("127.0.0.1:0")
                                .await
                                .map_err(|e| {
                                    cfg.err(
                                        &key,
                                        format!("cannot start the reference backend: {e}"),
                                    )
                                })?;
                        let addr = crate::reference::spawn(&bi.kind, &data, listener)
                            .map_err(|e| cfg.err(format!("{key}.builtin"), e))?;
                        tracing::info!(backend = %name, kind = %bi.kind, %addr, "reference backend started");
                        format!("http://{addr}")
                    } else {
                        crate::reference::check(&bi.kind, &data)
                            .map_err(|e| cfg.err(format!("{key}.builtin"), e))?;
                        format!("builtin:{}", bi.kind)
                    }
                }
                (None, None) => unreachable!("validated"),
            };
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
            };
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
                        headers,
                        errors,
                        tls,
                    },
                )),
            );
        }

        let mut profiles: HashMap<String, Arc<SignedProfile>> = HashMap::new();
        for (name, p) in &raw.profiles {
            let ProfileConfig::Signed(sp) = p;
            let profile = SignedProfile::from_config(name, sp, |k, s| cfg.secret(k, s))?;
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
                if let Some(p) = &profile {
                    p.check_operation(&desc.schema, op).map_err(|e| {
                        cfg.err(
                            format!("{skey}.profile"),
                            format!("operation '{}': {e}", op.name),
                        )
                    })?;
                }
                let backend = backends[m.backend.as_ref().unwrap_or(&s.backend)].clone();
                let tmpl = |k: &str, v: &Value| {
                    Template::compile(v).map_err(|e| cfg.err(format!("{mkey}.{k}"), e))
                };
                let mut query = Vec::new();
                for (q, v) in &m.query {
                    query.push((q.clone(), tmpl(&format!("query.{q}"), v)?));
                }
                routes.push(Route {
                    backend,
                    method: m
                        .method
                        .parse()
                        .map_err(|_| cfg.err(format!("{mkey}.method"), "not an HTTP method"))?,
                    path: PathTemplate::parse(&m.path)
                        .map_err(|e| cfg.err(format!("{mkey}.path"), e))?,
                    query,
                    body: m.body.as_ref().map(|b| tmpl("body", b)).transpose()?,
                    response: tmpl("response", &m.response)?,
                });
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
                },
            );
        }
        let sc = &raw.server;
        Ok(App {
            services,
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
            },
        })
    }

    pub fn serve_options(&self) -> ServeOptions {
        self.serve
    }

    /// Every service, operation and the backend call it maps to (for `soapbridge check`).
    pub fn describe(&self) -> Vec<String> {
        let mut services: Vec<&Service> = self.services.values().collect();
        services.sort_by(|a, b| a.path.cmp(&b.path));
        let mut out = Vec::new();
        for s in services {
            let profile = s
                .profile
                .as_ref()
                .map_or("no profile".to_string(), |p| format!("profile {}", p.name));
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
        out
    }

    pub async fn handle(&self, req: Request<Incoming>) -> Resp {
        let started = Instant::now();
        let path = req.uri().path().trim_end_matches('/');
        // The SOAP version to answer in before the envelope is read.
        let hint = SoapVersion::from_content_type(header_str(&req, http::header::CONTENT_TYPE));
        let Some(svc) = self.services.get(path) else {
            return match (req.method(), path) {
                (&Method::GET, "") => self.index(),
                (&Method::GET, "/healthz") => {
                    text_response(StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into())
                }
                _ => fault_response(
                    Ctx {
                        service: "-",
                        operation: "-",
                    },
                    hint,
                    "env",
                    &Error::NoSuchService(req.uri().path().to_string()),
                    None,
                ),
            };
        };
        match *req.method() {
            Method::GET | Method::HEAD => self.describe_service(svc, req.uri().query()),
            Method::POST => {
                match tokio::time::timeout(
                    self.limits.request_timeout,
                    self.call(svc, req, hint, started),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) => {
                        let e = Error::RequestTimeout {
                            limit_ms: self.limits.request_timeout.as_millis() as u64,
                        };
                        fault_response(Ctx::service(svc), hint, &svc.env_prefix, &e, None)
                    }
                }
            }
            ref m => fault_response(
                Ctx::service(svc),
                hint,
                &svc.env_prefix,
                &Error::MethodNotAllowed(m.to_string()),
                None,
            ),
        }
    }

    fn index(&self) -> Resp {
        let mut s = String::from("soapbridge\n\n");
        let mut services: Vec<&Service> = self.services.values().collect();
        services.sort_by(|a, b| a.path.cmp(&b.path));
        for svc in services {
            s.push_str(&format!("{}  {}?wsdl\n", svc.name, svc.endpoint));
        }
        text_response(StatusCode::OK, "text/plain; charset=utf-8", s)
    }

    /// `GET <path>?wsdl` (any case) serves the WSDL; `?xsd=<name>` an imported schema.
    fn describe_service(&self, svc: &Service, query: Option<&str>) -> Resp {
        for pair in query.unwrap_or("").split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if k.eq_ignore_ascii_case("wsdl") {
                return Response::builder()
                    .header(http::header::CONTENT_TYPE, "text/xml; charset=utf-8")
                    .body(Full::new(svc.wsdl.clone()))
                    .expect("valid response");
            }
            if k.eq_ignore_ascii_case("xsd") {
                return match svc.desc.render_xsd(v, &svc.endpoint) {
                    Some(x) => text_response(StatusCode::OK, "text/xml; charset=utf-8", x),
                    None => text_response(
                        StatusCode::NOT_FOUND,
                        "text/plain; charset=utf-8",
                        format!("no schema '{v}' here\n"),
                    ),
                };
            }
        }
        fault_response(
            Ctx::service(svc),
            SoapVersion::V11,
            &svc.env_prefix,
            &Error::MethodNotAllowed("GET".into()),
            None,
        )
    }

    async fn call(
        &self,
        svc: &Service,
        req: Request<Incoming>,
        hint: SoapVersion,
        started: Instant,
    ) -> Resp {
        let ct = header_str(&req, http::header::CONTENT_TYPE).map(str::to_string);
        let action = soap::soap_action(header_str(&req, "soapaction"), ct.as_deref());

        // Who is calling, before any work is done for them.
        let role_user = match &svc.profile {
            Some(p) => match p.authenticate(
                req.headers()
                    .get(http::header::AUTHORIZATION)
                    .map(HeaderValue::as_bytes),
            ) {
                Ok(u) => Some(u.to_string()),
                Err(e) => {
                    return fault_response(
                        Ctx::service(svc),
                        hint,
                        &svc.env_prefix,
                        &e,
                        Some(p.www_authenticate()),
                    );
                }
            },
            None => None,
        };

        let body = match self.read_body(req.into_body()).await {
            Ok(b) => b,
            Err(e) => return fault_response(Ctx::service(svc), hint, &svc.env_prefix, &e, None),
        };
        let text = match crate::protocol::xml::decode_body(&body, ct.as_deref()) {
            Ok(t) => t,
            Err(e) => return fault_response(Ctx::service(svc), hint, &svc.env_prefix, &e, None),
        };
        let (version, decoded) = soap::decode(
            &svc.desc,
            &text,
            action.as_deref(),
            self.limits.max_depth,
            hint,
        );
        let call = match decoded {
            Ok(c) => c,
            Err(e) => {
                return fault_response(Ctx::service(svc), version, &svc.env_prefix, &e, None);
            }
        };
        let op = &svc.desc.operations[call.operation];
        let mut params = call.params;
        let lang = svc
            .profile
            .as_ref()
            .map(|p| p.lang(&params))
            .unwrap_or_default();
        if let (Some(p), Some(user)) = (&svc.profile, &role_user) {
            let now = chrono::Utc::now().timestamp_millis();
            if let Err(e) = p.verify(&mut params, user, now) {
                return self.respond_error(svc, call.operation, version, e, lang, started);
            }
        }
        let result = match svc.routes[call.operation].invoke(&params).await {
            Ok(v) => v,
            Err(e) => return self.respond_error(svc, call.operation, version, e, lang, started),
        };
        let value = match &svc.profile {
            Some(p) => p.success(result, started),
            None => result,
        };
        match soap::encode_response(
            &svc.desc,
            call.operation,
            version,
            &svc.env_prefix,
            &svc.body_prefix,
            &value,
        ) {
            Ok(xml) => {
                tracing::info!(service = %svc.name, operation = %op.name, elapsed_ms = started.elapsed().as_millis() as u64, "ok");
                xml_response(StatusCode::OK, version, xml)
            }
            Err(shape) => {
                let e = Error::BackendBadResponse {
                    backend: svc.routes[call.operation].backend.name.clone(),
                    reason: format!("its answer does not fit the response schema: {shape}"),
                };
                self.respond_error(svc, call.operation, version, e, lang, started)
            }
        }
    }

    /// The one place an error of a decoded call goes to the wire: failures of the call become
    /// the profile's `ackCode=failure` response, everything else a SOAP fault.
    fn respond_error(
        &self,
        svc: &Service,
        operation: usize,
        version: SoapVersion,
        e: Error,
        lang: Lang,
        started: Instant,
    ) -> Resp {
        let ctx = Ctx {
            service: &svc.name,
            operation: &svc.desc.operations[operation].name,
        };
        if let Some(p) = svc.profile.as_ref().filter(|_| e.is_call_failure()) {
            // The code and status only: error texts may quote backend bodies.
            tracing::info!(
                service = ctx.service,
                operation = ctx.operation,
                code = e.code(),
                backend_status = e.backend_status(),
                "ackCode=failure"
            );
            let value = p.failure(&e, lang, started);
            return match soap::encode_response(
                &svc.desc,
                operation,
                version,
                &svc.env_prefix,
                &svc.body_prefix,
                &value,
            ) {
                Ok(xml) => xml_response(StatusCode::OK, version, xml),
                Err(shape) => fault_response(
                    ctx,
                    version,
                    &svc.env_prefix,
                    &Error::Internal(shape.to_string()),
                    None,
                ),
            };
        }
        fault_response(ctx, version, &svc.env_prefix, &e, None)
    }

    async fn read_body(&self, body: Incoming) -> Result<Bytes, Error> {
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

fn header_str<B>(req: &Request<B>, name: impl http::header::AsHeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn text_response(status: StatusCode, ct: &str, body: String) -> Resp {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, ct)
        .body(Full::new(Bytes::from(body)))
        .expect("valid response")
}

fn xml_response(status: StatusCode, version: SoapVersion, body: String) -> Resp {
    text_response(status, version.content_type(), body)
}

/// Where a fault happened, for the log line.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    service: &'a str,
    operation: &'a str,
}

impl<'a> Ctx<'a> {
    fn service(svc: &'a Service) -> Self {
        Ctx {
            service: &svc.name,
            operation: "-",
        }
    }
}

/// The only writer of SOAP fault responses; logs each one (code and statuses only: error
/// texts may quote request or backend content).
fn fault_response(
    ctx: Ctx<'_>,
    version: SoapVersion,
    env_prefix: &str,
    e: &Error,
    www_authenticate: Option<String>,
) -> Resp {
    let status = StatusCode::from_u16(soap::fault_status(version, e))
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    tracing::info!(
        service = ctx.service,
        operation = ctx.operation,
        code = e.code(),
        status = status.as_u16(),
        backend_status = e.backend_status(),
        "fault"
    );
    let mut r = xml_response(status, version, soap::encode_fault(version, env_prefix, e));
    if let Some(v) = www_authenticate.and_then(|v| HeaderValue::from_str(&v).ok()) {
        r.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
    }
    if status == StatusCode::METHOD_NOT_ALLOWED {
        r.headers_mut()
            .insert(http::header::ALLOW, HeaderValue::from_static("GET, POST"));
    }
    r
}
