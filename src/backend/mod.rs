//! Calls to JSON backends: a pooled hyper client per backend (HTTP or HTTPS with rustls), with a
//! connect timeout and a total timeout per call, the backend's credentials ([`auth`]), and one
//! classification of every way a call can fail, from the HTTP status or from a status the
//! backend writes in its body (DİA answers HTTP 200 with `"code": "400"`).

pub(crate) mod auth;
mod resilience;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::error::{Error, FieldError, Refusal};
use crate::mapping::{Scope, Template};

pub(crate) use auth::{Auth, Creds};
pub(crate) use resilience::{BreakerPlan, ResiliencePlan, RetryPlan};

/// How a backend's answers say what went wrong.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ErrorShape {
    pub code: Template,
    pub message: Template,
    pub fields: Option<Template>,
    /// A status written in the body; when present it decides success and failure instead of
    /// the HTTP status.
    pub status: Option<Template>,
    /// A refusal whose message contains a text gets its code (and number).
    pub classify: Vec<Classify>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Classify {
    pub contains: String,
    pub code: String,
    pub number: Option<i32>,
}

#[derive(Debug)]
pub(crate) struct Backend {
    pub name: String,
    base_url: String,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
    max_response_bytes: usize,
    max_url_bytes: usize,
    headers: Vec<(HeaderName, HeaderValue)>,
    errors: ErrorShape,
    auth: Auth,
    /// `$vars` in templates.
    pub vars: Value,
    /// The time credentials expire by.
    pub clock: crate::clock::Clock,
    pub(crate) telemetry: std::sync::Arc<crate::telemetry::Telemetry>,
    /// This backend's metrics handles and last call (made once, not looked up per call).
    stats: std::sync::Arc<crate::telemetry::BackendStats>,
    guard: resilience::Guard,
}

/// TLS settings for HTTPS backends: the Mozilla root certificates (webpki-roots) plus, for
/// backends with a private CA, the certificates of a PEM file (its path, for messages, and its
/// contents).
pub(crate) fn tls_config(ca_file: Option<(&Path, &[u8])>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some((path, pem)) = ca_file {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert =
                cert.map_err(|e| format!("{}: not a PEM certificate: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("{}: unusable certificate: {e}", path.display()))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!("{} holds no PEM certificate", path.display()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// One request to a backend, already rendered from the operation's templates.
#[derive(Debug, Clone)]
pub(crate) struct BackendRequest {
    pub method: Method,
    /// Path and query, appended to the backend's base URL.
    pub path_and_query: String,
    pub body: Body,
    /// Headers of this request only (an idempotency key).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Safe to send again after a failure that may have reached the backend (besides GET).
    pub retry: bool,
}

/// A backend's successful answer.
#[derive(Debug)]
pub(crate) enum Answer {
    /// Parsed as JSON (null for an empty body).
    Json(Value),
    /// As it came, not yet parsed ([`Backend::send_raw`]).
    Text { status: u16, body: Bytes },
}

impl Answer {
    /// The answer as a `serde_json::Value`: null for an empty body, a `BackendBadResponse`
    /// for one that is not JSON.
    pub(crate) fn into_json(self, backend: &Backend) -> Result<Value, Error> {
        match self {
            Answer::Json(v) => Ok(v),
            Answer::Text { status, body } => {
                json_of(&body).ok_or_else(|| backend.not_json(status, &body))
            }
        }
    }
}

/// A backend's body as JSON: null when empty (or only white space), `None` when not JSON.
fn json_of(bytes: &[u8]) -> Option<Value> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        Some(Value::Null)
    } else {
        serde_json::from_slice(bytes).ok()
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Body {
    None,
    Json(Value),
    /// JSON already written (a call's request, written straight from the call: see
    /// `Template::write_json`).
    Raw(Bytes),
    /// `application/x-www-form-urlencoded` (OAuth2 token requests).
    Form(String),
}

impl Backend {
    /// A client for the backend a plan describes (no connection is made until a call).
    pub(crate) fn new(
        plan: &crate::config::BackendPlan,
        clock: crate::clock::Clock,
        telemetry: std::sync::Arc<crate::telemetry::Telemetry>,
    ) -> Backend {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(plan.connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*plan.tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            // As for requests: an answer is read in pieces of at most this, and its head must
            // fit in it (a larger one is the backend's failure).
            .http1_max_buf_size(crate::server::READ_BUFFER_MAX)
            .build(connector);
        Backend {
            name: plan.name.clone(),
            base_url: plan.base_url.clone(),
            client,
            timeout: plan.timeout,
            max_response_bytes: plan.max_response_bytes,
            max_url_bytes: plan.max_url_bytes,
            headers: plan.headers.clone(),
            errors: plan.errors.clone(),
            auth: Auth::new(&plan.auth),
            vars: plan.vars.clone(),
            guard: resilience::Guard::new(&plan.name, &plan.resilience, clock.clone()),
            clock,
            stats: telemetry.backend(&plan.name),
            telemetry,
        }
    }

    pub(crate) fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The backend's settings, as `check` prints them.
    pub(crate) fn describe(&self) -> String {
        format!(
            "backend {} {}: timeout {} ms, {}",
            self.name,
            self.base_url,
            self.timeout.as_millis(),
            self.guard.describe()
        )
    }

    /// The circuit breaker's state (`closed`, `open`, `half-open`) and the calls in flight.
    pub(crate) fn health(&self) -> (&'static str, usize) {
        (self.guard.breaker(), self.guard.in_flight())
    }

    /// Sends a request rendered for the backend's current credentials (`render` gets them, so
    /// templates can put `$session` where the backend wants it). When the backend says the
    /// credentials expired, they are renewed once (one login shared by concurrent calls) and
    /// the request is rendered and sent again.
    pub(crate) async fn send(
        &self,
        render: impl Fn(&Creds) -> Result<BackendRequest, Error>,
    ) -> Result<Value, Error> {
        self.send_answer(render, false).await?.into_json(self)
    }

    /// As [`Backend::send`], but a success is given as the answer's text, unparsed (unless
    /// the backend's errors are read from its body, or debug logging shows it): the caller
    /// reads it its own way ([`Answer::into_json`] when it wants a `Value`).
    pub(crate) async fn send_raw(
        &self,
        render: impl Fn(&Creds) -> Result<BackendRequest, Error>,
    ) -> Result<Answer, Error> {
        self.send_answer(render, true).await
    }

    /// The credentials a request is rendered with, when one rendering is all the call
    /// needs: `None` when the backend renews its credentials (a session or an OAuth2 token),
    /// whose expiry renders the request again with fresh ones ([`Backend::send_raw`]).
    pub(crate) async fn lasting_creds(&self) -> Result<Option<Creds>, Error> {
        if self.auth.renews() {
            return Ok(None);
        }
        self.auth.current(self).await.map(Some)
    }

    /// Sends a request rendered with [`Backend::lasting_creds`], as [`Backend::send_raw`]
    /// would have.
    pub(crate) async fn send_rendered(
        &self,
        req: &BackendRequest,
        creds: &Creds,
    ) -> Result<Answer, Error> {
        self.exchange_answer(req, creds, true).await
    }

    async fn send_answer(
        &self,
        render: impl Fn(&Creds) -> Result<BackendRequest, Error>,
        raw: bool,
    ) -> Result<Answer, Error> {
        let creds = self.auth.current(self).await?;
        match self.exchange_answer(&render(&creds)?, &creds, raw).await {
            Err(Error::BackendSessionExpired { .. }) if self.auth.renews() => {
                let fresh = self.auth.renew(self, &creds).await?;
                self.exchange_answer(&render(&fresh)?, &fresh, raw).await
            }
            other => other,
        }
    }

    /// One exchange, sent again when it failed in a way that allows it (an idempotent call,
    /// or one that never reached the backend) and the retry budget has room: a success gives
    /// the JSON body (null when empty), anything else a specific [`Error`].
    pub(crate) async fn exchange(
        &self,
        req: &BackendRequest,
        creds: &Creds,
    ) -> Result<Value, Error> {
        self.exchange_answer(req, creds, false)
            .await?
            .into_json(self)
    }

    async fn exchange_answer(
        &self,
        req: &BackendRequest,
        creds: &Creds,
        raw: bool,
    ) -> Result<Answer, Error> {
        let idempotent =
            req.retry || matches!(req.method, Method::GET | Method::HEAD | Method::OPTIONS);
        self.guard.deposit();
        let mut attempt = 1;
        loop {
            let result = self.attempt(req, creds, raw).await;
            if let Err(e) = &result
                && let Some(wait) = self.guard.retry(attempt, e, idempotent)
            {
                tracing::debug!(backend = %self.name, attempt, wait_ms = wait.as_millis() as u64, error = e.code(), "sending again");
                self.telemetry.backend_retry(&self.name);
                tokio::time::sleep(wait).await;
                attempt += 1;
                continue;
            }
            return result;
        }
    }

    /// One attempt within the backend's total timeout, admitted by its breaker and its limit
    /// of calls in flight.
    async fn attempt(
        &self,
        req: &BackendRequest,
        creds: &Creds,
        raw: bool,
    ) -> Result<Answer, Error> {
        let timeout_ms = self.timeout.as_millis() as u64;
        let started = std::time::Instant::now();
        let result = match self.guard.admit(self.timeout).await {
            Err(e) => Err(e),
            Ok(admission) => {
                let result =
                    match tokio::time::timeout(self.timeout, self.exchange_inner(req, creds, raw))
                        .await
                    {
                        Ok(r) => r,
                        Err(_) => Err(Error::BackendTimeout {
                            backend: self.name.clone(),
                            timeout_ms,
                        }),
                    };
                if self.guard.record(admission, result.as_ref().map(|_| ())) {
                    self.telemetry.breaker_opened(&self.name);
                }
                result
            }
        };
        // A refusal of the caller's input is an answer, not a failure of the backend.
        let failed = result
            .as_ref()
            .err()
            .filter(|e| e.party() != crate::error::Party::Caller)
            .map(Error::code);
        self.telemetry
            .backend_call(&self.stats, started.elapsed(), failed);
        result
    }

    /// The origin-relative form of an absolute URL on this backend (for following `next`
    /// links); `None` for a URL elsewhere.
    pub(crate) fn relative(&self, url: &str) -> Option<String> {
        if url.starts_with('/') {
            return Some(url.to_string());
        }
        let rest = url.strip_prefix(&self.base_url)?;
        (rest.is_empty() || rest.starts_with(['/', '?'])).then(|| rest.to_string())
    }

    async fn exchange_inner(
        &self,
        req: &BackendRequest,
        creds: &Creds,
        raw: bool,
    ) -> Result<Answer, Error> {
        let uri = format!("{}{}", self.base_url, req.path_and_query);
        if uri.len() > self.max_url_bytes {
            return Err(Error::TooLargeForBackend {
                needed: uri.len(),
                limit: self.max_url_bytes,
            });
        }
        // Header values known when the bridge is built are not parsed (nor copied) per call.
        const JSON: HeaderValue = HeaderValue::from_static("application/json");
        const FORM: HeaderValue = HeaderValue::from_static("application/x-www-form-urlencoded");
        const AGENT: HeaderValue =
            HeaderValue::from_static(concat!("soapbridge/", env!("CARGO_PKG_VERSION")));
        let (body, content_type) = match &req.body {
            Body::Json(v) => (
                Bytes::from(serde_json::to_vec(v).map_err(|e| Error::Internal(e.to_string()))?),
                Some(JSON),
            ),
            Body::Raw(b) => (b.clone(), Some(JSON)),
            Body::Form(f) => (Bytes::from(f.clone()), Some(FORM)),
            Body::None => (Bytes::new(), None),
        };
        // Made in place rather than through `http::request::Builder`, which moves the whole
        // request head on every header it adds.
        let uri = http::Uri::try_from(uri)
            // The URL is not quoted: it is the backend's address, not the caller's business.
            .map_err(|e| Error::Internal(format!("cannot build the backend request: {e}")))?;
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = req.method.clone();
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        headers.reserve(5 + self.headers.len() + req.headers.len());
        headers.append(http::header::ACCEPT, JSON);
        headers.append(http::header::USER_AGENT, AGENT);
        if let Some(ct) = content_type {
            headers.append(http::header::CONTENT_TYPE, ct);
        }
        for (k, v) in self.headers.iter().chain(&req.headers) {
            headers.append(k.clone(), v.clone());
        }
        if let Some(a) = &creds.authorization {
            headers.append(http::header::AUTHORIZATION, a.clone());
        }
        if let Some(id) = crate::telemetry::request_id()
            && let Ok(v) = HeaderValue::from_str(&id)
        {
            headers.append(crate::telemetry::X_REQUEST_ID, v);
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            let sent = match &req.body {
                Body::Json(v) => crate::redact::text(v),
                Body::Raw(b) => serde_json::from_slice::<Value>(b)
                    .map(|v| crate::redact::text(&v))
                    .unwrap_or_default(),
                Body::Form(_) => "(a form: credentials, not shown)".into(),
                Body::None => String::new(),
            };
            tracing::debug!(backend = %self.name, method = %req.method, path = %req.path_and_query, body = %sent, "to backend");
        }
        let response =
            self.client
                .request(request)
                .await
                .map_err(|e| Error::BackendUnavailable {
                    backend: self.name.clone(),
                    // A connection that was never made carried no request.
                    sent: !e.is_connect(),
                    cause: Box::new(e),
                })?;
        let http_status = response.status().as_u16();
        let bytes = crate::server::read_whole(response.into_body(), self.max_response_bytes, None)
            .await
            .map_err(|e| Error::BackendBadResponse {
                backend: self.name.clone(),
                reason: format!("reading the body failed: {e}"),
            })?;
        // Only a call that carried credentials can find them expired (a login cannot).
        let carried = creds.session.is_some() || creds.authorization.is_some();
        if raw
            && (200..300).contains(&http_status)
            && self.errors.status.is_none()
            && !(carried && self.auth.is_expired(http_status, http_status))
            && !tracing::enabled!(tracing::Level::DEBUG)
        {
            // Checked here, without building anything, so that an answer that is not JSON is
            // this exchange's failure (for retries, the breaker and the metrics) as it is
            // when the answer is parsed.
            if !bytes.iter().all(u8::is_ascii_whitespace)
                && serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_err()
            {
                return Err(self.not_json(http_status, &bytes));
            }
            return Ok(Answer::Text {
                status: http_status,
                body: bytes,
            });
        }
        let parsed = json_of(&bytes);
        if let Some(v) = parsed
            .as_ref()
            .filter(|_| tracing::enabled!(tracing::Level::DEBUG))
        {
            // Logins' answers hold tokens and sessions: the redaction takes them out by name.
            tracing::debug!(backend = %self.name, status = http_status, body = %crate::redact::text(v), "from backend");
        }
        // A status in the body (when configured and present) decides for a 2xx answer.
        let status = match (&self.errors.status, &parsed) {
            (Some(t), Some(body)) if (200..300).contains(&http_status) => self
                .read(t, body)
                .and_then(|s| s.trim().parse::<u16>().ok())
                .unwrap_or(http_status),
            _ => http_status,
        };
        if carried && self.auth.is_expired(status, http_status) {
            return Err(Error::BackendSessionExpired {
                backend: self.name.clone(),
                message: parsed
                    .as_ref()
                    .and_then(|v| self.read(&self.errors.message, v))
                    .unwrap_or_else(|| format!("status {status}")),
            });
        }
        match status {
            200..=299 => parsed
                .map(Answer::Json)
                .ok_or_else(|| self.not_json(status, &bytes)),
            400..=499 => Err(Error::BackendRefused(self.refusal(
                status,
                parsed.as_ref(),
                &bytes,
            ))),
            500..=599 => {
                let message = parsed
                    .as_ref()
                    .and_then(|v| self.read(&self.errors.message, v))
                    .unwrap_or_else(|| format!("HTTP {status}"));
                Err(Error::BackendStatus {
                    backend: self.name.clone(),
                    status,
                    message,
                })
            }
            _ => Err(Error::BackendBadResponse {
                backend: self.name.clone(),
                reason: format!("unexpected status {status}"),
            }),
        }
    }

    /// A success whose body is not JSON.
    fn not_json(&self, status: u16, bytes: &[u8]) -> Error {
        // The body is only logged at debug level: it is not the caller's to see.
        tracing::debug!(backend = %self.name, status, body = %snippet(bytes), "backend answer is not JSON");
        Error::BackendBadResponse {
            backend: self.name.clone(),
            reason: format!("HTTP {status} with a body that is not JSON"),
        }
    }

    /// The message a backend error body gives (the `message` template).
    pub(crate) fn message_of(&self, body: &Value) -> Option<String> {
        self.read(&self.errors.message, body)
    }

    /// The field errors a backend body describes (the `fields` template), for a refusal or
    /// for one item of a batch.
    pub(crate) fn field_errors(&self, body: &Value) -> Vec<FieldError> {
        self.errors
            .fields
            .as_ref()
            .and_then(|t| t.eval(&Scope::json(body)))
            .and_then(|v| match v {
                Value::Array(items) => Some(items),
                _ => None,
            })
            .unwrap_or_default()
            .into_iter()
            .map(|f| FieldError {
                field: text(f.get("field")),
                code: text(f.get("code")),
                message: text(f.get("message")),
            })
            .collect()
    }

    fn read(&self, t: &Template, body: &Value) -> Option<String> {
        let v = t.eval(&Scope::json(body))?;
        let s = text(Some(&v));
        (!s.is_empty()).then_some(s)
    }

    fn refusal(&self, status: u16, body: Option<&Value>, raw: &[u8]) -> Refusal {
        let Some(body) = body else {
            tracing::debug!(backend = %self.name, status, body = %snippet(raw), "backend refusal is not JSON");
            return Refusal {
                status,
                code: format!("http_{status}"),
                message: format!("the backend refused the call with HTTP {status}"),
                fields: Vec::new(),
                body: Value::Null,
                number: None,
            };
        };
        let message = self
            .read(&self.errors.message, body)
            .unwrap_or_else(|| format!("HTTP {status}"));
        let class = self
            .errors
            .classify
            .iter()
            .find(|c| message.contains(c.contains.as_str()));
        let code = class
            .map(|c| c.code.clone())
            .or_else(|| self.read(&self.errors.code, body))
            .unwrap_or_else(|| format!("http_{status}"));
        Refusal {
            status,
            number: class.and_then(|c| c.number),
            code,
            message,
            fields: self.field_errors(body),
            body: body.clone(),
        }
    }
}

/// A JSON value as message text: strings as they are, lists of strings joined with "; "
/// (DRF writes each field's messages as a list), null as nothing.
pub(crate) fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| text(Some(i)))
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("; "),
        Some(other) => other.to_string(),
    }
}

fn snippet(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]);
    let s = s.trim();
    if s.is_empty() {
        "(empty body)".into()
    } else {
        s.to_string()
    }
}
