//! The one place the configuration's rules live: [`compile`] turns what the file says
//! ([`RawConfig`]) into a typed [`Plan`], or into every problem it has, each with its file,
//! line, key and reason. It reads only what the configuration names (WSDLs and their schemas,
//! CA files, secrets from the environment) through [`Sources`]; it opens no socket and no
//! store. Defaults come from [`super::defaults`].

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use serde_json::Value;
use toml::Spanned;

use super::defaults as d;
use super::plan::*;
use super::raw::{self, RawConfig, SecretSource};
use super::{Config, ConfigError, ConfigErrors, Sources};
use crate::backend::auth::{AuthPlan, GrantPlan, SessionPlan};
use crate::backend::{Classify, ErrorShape};
use crate::error::Lang;
use crate::mapping::{PathExpr, PathTemplate, Root, Template};
use crate::protocol::wql;
use crate::schema::{Operation, Schema, ServiceDescription, TypeDef};

/// Compiles a loaded configuration; every error at once.
pub fn compile(cfg: &Config, sources: &dyn Sources) -> Result<Plan, ConfigErrors> {
    let mut c = Compiler {
        cfg,
        sources,
        errors: Vec::new(),
    };
    let plan = c.plan();
    match plan {
        Some(plan) if c.errors.is_empty() => Ok(plan),
        _ => {
            // A rule broken by a template shared by several companies is said once.
            let mut seen = HashSet::new();
            c.errors
                .retain(|e| seen.insert((e.line, e.key.clone(), e.reason.clone())));
            Err(ConfigErrors(c.errors))
        }
    }
}

struct Compiler<'a> {
    cfg: &'a Config,
    sources: &'a dyn Sources,
    errors: Vec<ConfigError>,
}

/// Where a key is: the span of the table that holds it.
type At = Option<Range<usize>>;

fn at<T>(s: &Spanned<T>) -> At {
    Some(s.span())
}

impl Compiler<'_> {
    fn err(&mut self, at: At, key: impl Into<String>, reason: impl Into<String>) {
        let line = at.map(|r| self.cfg.line_of(r.start));
        self.errors.push(ConfigError {
            file: self.cfg.file.display().to_string(),
            line,
            key: key.into(),
            reason: reason.into(),
        });
    }

    /// `Some(v)` for `Ok(v)`; records the error otherwise.
    fn ok<T>(&mut self, at: At, key: &str, r: Result<T, String>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.err(at, key, e);
                None
            }
        }
    }

    fn secret(&mut self, at: At, key: &str, s: &SecretSource) -> Option<String> {
        match s {
            SecretSource::Inline(v) => Some(v.clone()),
            SecretSource::Env { env } => match self.sources.env(env) {
                Some(v) => Some(v),
                None => {
                    self.err(
                        at,
                        key,
                        format!("environment variable {env} is not set (or is not valid UTF-8)"),
                    );
                    None
                }
            },
        }
    }

    fn template(&mut self, at: At, key: &str, v: &Value) -> Option<Template> {
        let r = Template::compile(v);
        self.ok(at, key, r)
    }

    fn duration(&mut self, at: At, key: &str, ms: Option<u64>, default: Duration) -> Duration {
        match ms {
            None => default,
            Some(0) => {
                self.err(at, key, "must be greater than zero");
                default
            }
            Some(ms) => Duration::from_millis(ms),
        }
    }

    fn at_least<T: PartialOrd + Copy + std::fmt::Display>(
        &mut self,
        at: At,
        key: &str,
        v: Option<T>,
        default: T,
        min: T,
    ) -> T {
        let v = v.unwrap_or(default);
        if v < min {
            self.err(at, key, format!("must be at least {min}"));
            return default;
        }
        v
    }

    fn plan(&mut self) -> Option<Plan> {
        let raw = &self.cfg.raw;
        let server = self.server(&raw.server);
        let backends = self.backends(raw);
        let store = self.store(raw);
        let profiles = self.profiles(raw);
        let xmlrpc = self.xmlrpc(&raw.xmlrpc);
        let mut services = self.services(raw, &server.public_url, &backends, &profiles, &xmlrpc);
        services.sort_by(|a, b| a.path.cmp(&b.path));
        let winstrom = raw
            .winstrom
            .as_ref()
            .and_then(|w| self.winstrom(w, &backends, &profiles));
        let stock = raw.stock.as_ref().and_then(|s| self.stock(s, &backends));
        let ops = raw.ops.as_ref().and_then(|o| {
            let mut taken: Vec<&str> = services.iter().map(|s| s.path.as_str()).collect();
            taken.extend(xmlrpc.iter().map(|x| x.path.as_str()));
            taken.extend(winstrom.iter().map(|w| w.prefix.as_str()));
            self.ops(o, &taken)
        });
        if !self.errors.is_empty() {
            return None;
        }
        Some(Plan {
            server,
            store,
            backends,
            profiles,
            services,
            xmlrpc,
            winstrom,
            stock,
            ops,
        })
    }

    // ---- [ops] ---------------------------------------------------------------------------

    fn ops(&mut self, o: &Spanned<raw::OpsConfig>, taken: &[&str]) -> Option<OpsPlan> {
        let w = at(o);
        let o = o.get_ref();
        let path = o.path.as_deref().unwrap_or(d::OPS_PATH);
        let trimmed = path.trim_end_matches('/');
        let probes = ["/metrics", "/healthz", "/readyz"];
        if !path.starts_with('/') || trimmed.is_empty() {
            self.err(
                w.clone(),
                "ops.path",
                "must start with '/' and not be '/' alone",
            );
        } else if let Some(other) = taken.iter().chain(probes.iter()).find(|t| {
            **t == trimmed
                || t.starts_with(&format!("{trimmed}/"))
                || trimmed.starts_with(&format!("{t}/"))
        }) {
            self.err(
                w.clone(),
                "ops.path",
                format!("'{path}' overlaps '{other}' (a service, a door or a probe)"),
            );
        }
        let users = self.basic(
            w,
            "ops",
            "ops",
            &raw::BasicProfileConfig {
                realm: Some(o.realm.clone().unwrap_or_else(|| d::OPS_REALM.into())),
                users: o.users.clone(),
                rate_limit: None,
            },
        )?;
        Some(OpsPlan {
            path: trimmed.to_string(),
            users,
        })
    }

    // ---- [server] ------------------------------------------------------------------------

    fn server(&mut self, s: &raw::ServerConfig) -> ServerPlan {
        let listen = s
            .listen
            .unwrap_or_else(|| d::LISTEN.parse().expect("a valid default address"));
        let public_url = match &s.public_url {
            Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => {
                self.err(
                    None,
                    "server.public_url",
                    "must start with http:// or https://",
                );
                u.clone()
            }
            Some(u) => u.clone(),
            None => format!("http://{listen}"),
        }
        .trim_end_matches('/')
        .to_string();
        let max_depth = s.max_depth.unwrap_or(d::MAX_DEPTH);
        if max_depth < 4 {
            self.err(
                None,
                "server.max_depth",
                "must be at least 4 (a SOAP envelope alone nests 3 levels)",
            );
        }
        let max_body = self.at_least(
            None,
            "server.max_body_bytes",
            s.max_body_bytes,
            d::MAX_BODY_BYTES,
            1,
        );
        let body_budget = Some(
            s.max_body_bytes_in_flight
                .unwrap_or(d::MAX_BODY_BYTES_IN_FLIGHT.max(max_body)),
        )
        .filter(|&n| n > 0);
        if let Some(n) = body_budget.filter(|&n| n < max_body) {
            self.err(
                None,
                "server.max_body_bytes_in_flight",
                format!(
                    "{n} is less than server.max_body_bytes ({max_body}): a request of the largest size accepted could never be read; make it at least that, or 0 for no bound"
                ),
            );
        }
        ServerPlan {
            listen,
            public_url,
            limits: Limits {
                max_body,
                max_depth,
                body_timeout: self.duration(
                    None,
                    "server.body_timeout_ms",
                    s.body_timeout_ms,
                    d::BODY_TIMEOUT,
                ),
                request_timeout: self.duration(
                    None,
                    "server.request_timeout_ms",
                    s.request_timeout_ms,
                    d::REQUEST_TIMEOUT,
                ),
                stream_answers_from: Some(
                    s.stream_answers_from_bytes
                        .unwrap_or(d::STREAM_ANSWERS_FROM_BYTES),
                )
                .filter(|&n| n > 0),
            },
            header_timeout: self.duration(
                None,
                "server.header_timeout_ms",
                s.header_timeout_ms,
                d::HEADER_TIMEOUT,
            ),
            grace: s
                .shutdown_grace_ms
                .map_or(d::SHUTDOWN_GRACE, Duration::from_millis),
            max_connections: self.at_least(
                None,
                "server.max_connections",
                s.max_connections,
                d::MAX_CONNECTIONS,
                1,
            ),
            body_budget,
            metrics: s.metrics.unwrap_or(true),
        }
    }

    // ---- [backends.X] --------------------------------------------------------------------

    fn backends(&mut self, raw: &RawConfig) -> BTreeMap<String, Arc<BackendPlan>> {
        let mut out = BTreeMap::new();
        for (name, b) in &raw.backends {
            if let Some(p) = self.backend(name, b) {
                out.insert(name.clone(), Arc::new(p));
            }
        }
        out
    }

    fn backend(&mut self, name: &str, sb: &Spanned<raw::BackendConfig>) -> Option<BackendPlan> {
        let w = at(sb);
        let b = sb.get_ref();
        let key = format!("backends.{name}");
        let errors_before = self.errors.len();
        let url = &b.base_url;
        let authority = url
            .split_once("://")
            .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""));
        if authority.is_some_and(|a| a.contains('@')) {
            // Not echoed: the URL holds a password.
            self.err(
                w.clone(),
                format!("{key}.base_url"),
                format!(
                    "must not carry credentials (user:password@host): they would appear in logs and messages; give them in [backends.{name}.auth] (kind = \"basic\", password = {{ env = \"...\" }}) instead"
                ),
            );
        } else if !(url.starts_with("http://") || url.starts_with("https://"))
            || url
                .parse::<http::Uri>()
                .ok()
                .and_then(|u| u.host().map(str::to_string))
                .is_none()
        {
            self.err(
                w.clone(),
                format!("{key}.base_url"),
                format!("'{url}' must be an http:// or https:// URL with a host"),
            );
        }
        let mut headers = Vec::new();
        for (h, v) in &b.headers {
            let hkey = format!("{key}.headers.{h}");
            let value = self.secret(w.clone(), &hkey, v);
            match (HeaderName::from_bytes(h.as_bytes()), value) {
                (Err(_), _) => self.err(
                    w.clone(),
                    &hkey,
                    format!("'{h}' is not a valid header name"),
                ),
                (Ok(n), Some(v)) => match HeaderValue::from_str(&v) {
                    Ok(v) => headers.push((n, v)),
                    Err(_) => self.err(w.clone(), &hkey, "not a valid header value"),
                },
                (Ok(_), None) => {}
            }
        }
        let errors = self.error_shape(w.clone(), &key, &b.errors);
        let auth = self.auth(w.clone(), &key, b.auth.as_ref());
        let ca = b.ca_file.as_ref().map(|p| self.cfg.resolve_path(p));
        let mut ca_pem = None;
        let tls = match &ca {
            None => crate::backend::tls_config(None),
            Some(path) => match self.sources.read(path) {
                Ok(pem) => {
                    let tls = crate::backend::tls_config(Some((path, pem.as_bytes())));
                    ca_pem = Some(pem);
                    tls
                }
                Err(e) => Err(format!("cannot read {}: {e}", path.display())),
            },
        };
        let tls = self.ok(w.clone(), &format!("{key}.ca_file"), tls);
        let connect_timeout = self.duration(
            w.clone(),
            &format!("{key}.connect_timeout_ms"),
            b.connect_timeout_ms,
            d::CONNECT_TIMEOUT,
        );
        let timeout = self.duration(
            w.clone(),
            &format!("{key}.timeout_ms"),
            b.timeout_ms,
            d::BACKEND_TIMEOUT,
        );
        let resilience = self.resilience(w.clone(), &key, b);
        if self.errors.len() > errors_before {
            return None;
        }
        Some(BackendPlan {
            name: name.to_string(),
            base_url: url.trim_end_matches('/').to_string(),
            connect_timeout,
            timeout,
            max_response_bytes: b.max_response_bytes.unwrap_or(d::MAX_RESPONSE_BYTES),
            max_url_bytes: b.max_url_bytes.unwrap_or(d::MAX_URL_BYTES),
            headers,
            errors: errors?,
            tls: Arc::new(tls?),
            ca_pem,
            auth: auth?,
            vars: Value::Object(b.vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            resilience,
        })
    }

    fn resilience(
        &mut self,
        w: At,
        key: &str,
        b: &raw::BackendConfig,
    ) -> crate::backend::ResiliencePlan {
        use crate::backend::{BreakerPlan, ResiliencePlan, RetryPlan};
        let (r, br) = (&b.retry, &b.breaker);
        let max_in_flight = self.at_least(
            w.clone(),
            &format!("{key}.max_in_flight"),
            b.max_in_flight,
            d::MAX_IN_FLIGHT,
            1,
        );
        let attempts = self.at_least(
            w.clone(),
            &format!("{key}.retry.attempts"),
            r.attempts,
            d::RETRY_ATTEMPTS,
            1,
        );
        if attempts > 10 {
            self.err(
                w.clone(),
                format!("{key}.retry.attempts"),
                "must be at most 10",
            );
        }
        let backoff = self.duration(
            w.clone(),
            &format!("{key}.retry.backoff_ms"),
            r.backoff_ms,
            d::RETRY_BACKOFF,
        );
        let max_backoff = self.duration(
            w.clone(),
            &format!("{key}.retry.max_backoff_ms"),
            r.max_backoff_ms,
            d::RETRY_MAX_BACKOFF,
        );
        let budget_percent = r.budget_percent.unwrap_or(d::RETRY_BUDGET_PERCENT);
        if budget_percent > 100 {
            self.err(
                w.clone(),
                format!("{key}.retry.budget_percent"),
                "must be at most 100",
            );
        }
        // The stock sync retries each batch itself (attempts, back-off, outages): its
        // channel's breaker is off unless configured.
        let stock_channel = self
            .cfg
            .raw
            .stock
            .as_ref()
            .is_some_and(|s| key == format!("backends.{}", s.get_ref().backend));
        let failures = br.failures.unwrap_or(if stock_channel {
            0
        } else {
            d::BREAKER_FAILURES
        });
        let open_for = self.duration(
            w,
            &format!("{key}.breaker.open_ms"),
            br.open_ms,
            d::BREAKER_OPEN,
        );
        ResiliencePlan {
            max_in_flight,
            retry: RetryPlan {
                attempts,
                backoff,
                max_backoff: max_backoff.max(backoff),
                budget_percent,
            },
            breaker: (failures > 0).then_some(BreakerPlan { failures, open_for }),
        }
    }

    fn error_shape(&mut self, w: At, key: &str, e: &raw::ErrorShapeConfig) -> Option<ErrorShape> {
        let mut t =
            |k: &str, v: Option<&Value>, default: Option<&str>| -> Option<Option<Template>> {
                let v = match (v, default) {
                    (Some(v), _) => v.clone(),
                    (None, Some(d)) => Value::String(d.into()),
                    (None, None) => return Some(None),
                };
                self.template(w.clone(), &format!("{key}.errors.{k}"), &v)
                    .map(Some)
            };
        let code = t("code", e.code.as_ref(), Some(d::ERROR_CODE));
        let message = t("message", e.message.as_ref(), Some(d::ERROR_MESSAGE));
        let fields = t("fields", e.fields.as_ref(), None);
        let status = t("status", e.status.as_ref(), None);
        Some(ErrorShape {
            code: code??,
            message: message??,
            fields: fields?,
            status: status?,
            classify: e
                .classify
                .iter()
                .map(|c| Classify {
                    contains: c.contains.clone(),
                    code: c.code.clone(),
                    number: c.number,
                })
                .collect(),
        })
    }

    fn auth(
        &mut self,
        w: At,
        key: &str,
        auth: Option<&raw::BackendAuthConfig>,
    ) -> Option<AuthPlan> {
        use raw::BackendAuthConfig as A;
        let key = format!("{key}.auth");
        Some(match auth {
            None => AuthPlan::None,
            Some(A::Basic { user, password }) => {
                use base64::Engine;
                let password = self.secret(w.clone(), &format!("{key}.password"), password)?;
                let token =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                match HeaderValue::from_str(&format!("Basic {token}")) {
                    Ok(h) => AuthPlan::Basic(h),
                    Err(_) => {
                        self.err(w, &key, "the credentials do not fit in a header");
                        return None;
                    }
                }
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
                    if let Some(v) = self.secret(w.clone(), &format!("{key}.credentials.{k}"), v) {
                        creds.insert(k.clone(), Value::String(v));
                    }
                }
                if !path.starts_with('/') {
                    self.err(w.clone(), format!("{key}.path"), "must start with '/'");
                }
                let method = self.method(
                    w.clone(),
                    &format!("{key}.method"),
                    method.as_deref(),
                    d::SESSION_METHOD,
                );
                let body = self.template(w.clone(), &format!("{key}.body"), body);
                let session = self.template(w.clone(), &format!("{key}.session"), session);
                AuthPlan::Session(SessionPlan {
                    method: method?,
                    path: path.clone(),
                    body: body?,
                    credentials: Value::Object(creds),
                    session: session?,
                    expired: expired
                        .clone()
                        .unwrap_or_else(|| d::SESSION_EXPIRED.to_vec()),
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
                    self.err(
                        w.clone(),
                        format!("{key}.token_path"),
                        "must start with '/'",
                    );
                }
                let secret = self.secret(w.clone(), &format!("{key}.client_secret"), client_secret);
                let password = self.secret(w.clone(), &format!("{key}.password"), password);
                let (secret, password) = (secret?, password?);
                let mut pairs = vec![
                    ("username", username.as_str()),
                    ("password", password.as_str()),
                    ("client_id", client_id.as_str()),
                    ("client_secret", secret.as_str()),
                ];
                if let Some(s) = scope {
                    pairs.push(("scope", s));
                }
                AuthPlan::OAuth2(GrantPlan {
                    token_path: token_path.clone(),
                    password_form: crate::backend::auth::form(&pairs),
                    client_form: crate::backend::auth::form(&[
                        ("client_id", client_id),
                        ("client_secret", &secret),
                    ]),
                    margin: refresh_margin_secs.map_or(d::REFRESH_MARGIN, Duration::from_secs),
                })
            }
        })
    }

    fn method(&mut self, w: At, key: &str, m: Option<&str>, default: &str) -> Option<Method> {
        let m = m.unwrap_or(default);
        match m.parse::<Method>() {
            Ok(m) => Some(m),
            Err(_) => {
                self.err(w, key, format!("'{m}' is not an HTTP method"));
                None
            }
        }
    }

    // ---- [store] -------------------------------------------------------------------------

    fn store(&mut self, raw: &RawConfig) -> Option<StorePlan> {
        // Without a [store] section, a default SQLite file is used when something needs one:
        // stock batches, or the ledger of used signatures (kept across restarts).
        let needs = raw.stock.is_some()
            || raw
                .profiles
                .values()
                .any(|p| matches!(p.get_ref(), raw::ProfileConfig::Signed(_)));
        let (url, schema) = match &raw.store {
            Some(s) => (self.secret(None, "store.url", &s.url)?, s.schema.clone()),
            None if needs => (d::STORE_URL.to_string(), None),
            None => return None,
        };
        let url = match url.strip_prefix("sqlite:") {
            Some(path) => format!(
                "sqlite:{}",
                self.cfg.resolve_path(Path::new(path)).display()
            ),
            None if url.starts_with("postgres://") || url.starts_with("postgresql://") => url,
            None => {
                self.err(
                    None,
                    "store.url",
                    format!(
                        "'{}' is not a store URL (sqlite:<path> or postgres://...)",
                        crate::store::without_password(&url)
                    ),
                );
                return None;
            }
        };
        Some(StorePlan {
            url,
            schema: schema.unwrap_or_else(|| d::STORE_SCHEMA.into()),
        })
    }

    // ---- [profiles.X] --------------------------------------------------------------------

    fn profiles(&mut self, raw: &RawConfig) -> BTreeMap<String, ProfilePlan> {
        let mut out = BTreeMap::new();
        for (name, p) in &raw.profiles {
            let w = at(p);
            let key = format!("profiles.{name}");
            let plan = match p.get_ref() {
                raw::ProfileConfig::Basic(b) => {
                    self.basic(w, &key, name, b).map(ProfilePlan::Basic)
                }
                raw::ProfileConfig::Signed(s) => {
                    self.signed(w, &key, name, s).map(ProfilePlan::Signed)
                }
            };
            if let Some(plan) = plan {
                out.insert(name.clone(), plan);
            }
        }
        out
    }

    fn basic(
        &mut self,
        w: At,
        key: &str,
        name: &str,
        b: &raw::BasicProfileConfig,
    ) -> Option<BasicPlan> {
        if b.users.is_empty() {
            self.err(w.clone(), format!("{key}.users"), "needs at least one user");
        }
        let mut users = Vec::new();
        for (i, u) in b.users.iter().enumerate() {
            if u.user.is_empty() || u.user.contains(':') {
                self.err(
                    w.clone(),
                    format!("{key}.users[{i}].user"),
                    "must be non-empty and without ':' (HTTP Basic cannot carry it)",
                );
            }
            let pw = self.secret(
                w.clone(),
                &format!("{key}.users[{i}].password"),
                &u.password,
            );
            users.push((u.user.clone(), pw?));
        }
        let rate_limit = self.rate_limit(w, key, b.rate_limit.as_ref());
        Some(BasicPlan {
            name: name.to_string(),
            realm: b.realm.clone().unwrap_or_else(|| d::REALM.into()),
            users,
            rate_limit,
        })
    }

    fn rate_limit(
        &mut self,
        w: At,
        key: &str,
        r: Option<&raw::RateLimitConfig>,
    ) -> Option<crate::profile::RateLimit> {
        let r = r?;
        if r.calls == 0 || r.per_secs == 0 {
            self.err(
                w,
                format!("{key}.rate_limit"),
                "calls and per_secs must be greater than zero (leave rate_limit out for no limit)",
            );
            return None;
        }
        Some(crate::profile::RateLimit {
            calls: r.calls,
            per: Duration::from_secs(r.per_secs),
        })
    }

    fn signed(
        &mut self,
        w: At,
        key: &str,
        name: &str,
        p: &raw::SignedProfileConfig,
    ) -> Option<SignedPlan> {
        let window = p.time_window_secs.unwrap_or(d::TIME_WINDOW_SECS);
        if window == 0 || window > 86_400 {
            self.err(
                w.clone(),
                format!("{key}.time_window_secs"),
                "must be between 1 and 86400 (one day)",
            );
        }
        let offset_text = p.utc_offset.as_deref().unwrap_or(d::UTC_OFFSET);
        let offset = parse_offset(offset_text);
        if offset.is_none() {
            self.err(
                w.clone(),
                format!("{key}.utc_offset"),
                format!("'{offset_text}' is not an offset like +03:00"),
            );
        }
        for (code, t) in &p.backend_errors {
            if t.id.parse::<i32>().is_err() {
                self.err(
                    w.clone(),
                    format!("{key}.backend_errors.{code}.id"),
                    format!(
                        "'{}' must be a number (it is also the XML-RPC faultCode)",
                        t.id
                    ),
                );
            }
        }
        if p.shared_replay_cache {
            tracing::warn!(
                profile = %name,
                "shared_replay_cache is no longer needed: used signatures are always kept in the store"
            );
        }
        let mut keys = HashSet::new();
        let mut accounts = Vec::new();
        for (i, a) in p.accounts.iter().enumerate() {
            let akey = format!("{key}.accounts[{i}]");
            if !keys.insert(a.api_key.as_str()) {
                self.err(w.clone(), format!("{akey}.api_key"), "duplicate apiKey");
            }
            if a.role_user.is_empty() || a.role_user.contains(':') {
                self.err(
                    w.clone(),
                    format!("{akey}.role_user"),
                    "must be non-empty and without ':' (HTTP Basic cannot carry it)",
                );
            }
            let reuse = a.reused_signature.unwrap_or(p.reused_signature);
            if a.accept_any_time && reuse != ReusePolicy::Allow {
                self.err(
                    w.clone(),
                    format!("{akey}.accept_any_time"),
                    "requires reused_signature = \"allow\": without a time window, refusing reused signatures would need to remember every signature forever",
                );
            }
            let secret = self.secret(w.clone(), &format!("{akey}.secret"), &a.secret);
            let role_password = self.secret(
                w.clone(),
                &format!("{akey}.role_password"),
                &a.role_password,
            );
            if let (Some(secret), Some(role_password)) = (secret, role_password) {
                if a.accept_any_time {
                    tracing::warn!(profile = name, api_key = %a.api_key, "account accepts any time: no time window and no replay protection for it (demo use only)");
                }
                accounts.push(AccountPlan {
                    api_key: a.api_key.clone(),
                    secret,
                    role_user: a.role_user.clone(),
                    role_password,
                    reuse,
                    any_time: a.accept_any_time,
                });
            }
        }
        let rate_limit = self.rate_limit(w.clone(), key, p.rate_limit.as_ref());
        Some(SignedPlan {
            name: name.to_string(),
            window_ms: window as i64 * 1000,
            default_lang: match p.default_lang {
                Some(raw::LangConfig::En) => Lang::En,
                Some(raw::LangConfig::Tr) => Lang::Tr,
                None => Lang::parse(d::DEFAULT_LANG).unwrap_or_default(),
            },
            realm: p.realm.clone().unwrap_or_else(|| d::REALM.into()),
            offset: offset?,
            result_element: p
                .result_element
                .clone()
                .unwrap_or_else(|| d::RESULT_ELEMENT.into()),
            accounts,
            backend_errors: p.backend_errors.clone(),
            rate_limit,
        })
    }

    // ---- [xmlrpc] ------------------------------------------------------------------------

    fn xmlrpc(&mut self, x: &raw::XmlRpcConfig) -> Option<XmlRpcPlan> {
        if !x.enabled.unwrap_or(d::XMLRPC_ENABLED) {
            return None;
        }
        let path = x.path.as_deref().unwrap_or(d::XMLRPC_PATH);
        if !path.starts_with('/') || path.trim_end_matches('/').is_empty() {
            self.err(
                None,
                "xmlrpc.path",
                "must start with '/' and not be '/' alone",
            );
        }
        Some(XmlRpcPlan {
            path: path.trim_end_matches('/').to_string(),
            i8: x.i8,
        })
    }

    // ---- [[services]] and [mappings.S.O] -------------------------------------------------

    fn services(
        &mut self,
        raw: &RawConfig,
        public_url: &str,
        backends: &BTreeMap<String, Arc<BackendPlan>>,
        profiles: &BTreeMap<String, ProfilePlan>,
        xmlrpc: &Option<XmlRpcPlan>,
    ) -> Vec<ServicePlan> {
        let mut paths: HashSet<String> = xmlrpc.iter().map(|x| x.path.clone()).collect();
        let mut names = HashSet::new();
        let mut out = Vec::new();
        for (i, s) in raw.services.iter().enumerate() {
            let w = at(s);
            let s = s.get_ref();
            let key = format!("services[{i}] ({})", s.name);
            if !s.path.starts_with('/') {
                self.err(w.clone(), format!("{key}.path"), "must start with '/'");
            }
            let env_prefix = s
                .envelope_prefix
                .clone()
                .unwrap_or_else(|| d::ENVELOPE_PREFIX.into());
            let body_prefix = s
                .body_prefix
                .clone()
                .unwrap_or_else(|| d::BODY_PREFIX.into());
            for (k, prefix) in [
                ("envelope_prefix", &env_prefix),
                ("body_prefix", &body_prefix),
            ] {
                if !usable_prefix(prefix) {
                    self.err(
                        w.clone(),
                        format!("{key}.{k}"),
                        format!("'{prefix}' is not a usable namespace prefix (letters, digits, '_', '-', '.'; not xsi, sb or xml...)"),
                    );
                }
            }
            if env_prefix == body_prefix {
                self.err(
                    w.clone(),
                    format!("{key}.body_prefix"),
                    "must differ from envelope_prefix",
                );
            }
            let path = s.path.trim_end_matches('/').to_string();
            if !paths.insert(path.clone()) {
                self.err(
                    w.clone(),
                    format!("{key}.path"),
                    "another service (or the XML-RPC door) has this path",
                );
            }
            if s.name.is_empty() || s.name.contains('.') || !names.insert(s.name.clone()) {
                self.err(
                    w.clone(),
                    format!("{key}.name"),
                    "must be unique, non-empty and without '.' (XML-RPC methods are <service>.<operation>)",
                );
            }
            if !raw.backends.contains_key(&s.backend) {
                self.err(
                    w.clone(),
                    format!("{key}.backend"),
                    format!("no [backends.{}] is defined", s.backend),
                );
            }
            let profile = match &s.profile {
                Some(p) if !raw.profiles.contains_key(p) => {
                    self.err(
                        w.clone(),
                        format!("{key}.profile"),
                        format!("no [profiles.{p}] is defined"),
                    );
                    None
                }
                other => other.clone(),
            };
            let Some(set) = raw.mappings.get(&s.mappings) else {
                self.err(
                    w.clone(),
                    format!("{key}.mappings"),
                    format!("no [mappings.{}] is defined", s.mappings),
                );
                continue;
            };
            let wsdl_path = self.cfg.resolve_path(&s.wsdl);
            let desc = match ServiceDescription::load_from(&wsdl_path, &|p| self.sources.read(p)) {
                Ok(d) => d,
                Err(e) => {
                    self.err(w.clone(), format!("{key}.wsdl"), e.to_string());
                    continue;
                }
            };
            for (op, m) in set {
                if desc.operation(op).is_none() {
                    let known: Vec<&str> =
                        desc.operations.iter().map(|o| o.name.as_str()).collect();
                    self.err(
                        at(m),
                        format!("mappings.{}.{op}", s.mappings),
                        format!(
                            "the WSDL of {} has no operation '{op}' (it has: {})",
                            s.name,
                            known.join(", ")
                        ),
                    );
                }
            }
            let signed = profile.as_ref().and_then(|p| match profiles.get(p) {
                Some(ProfilePlan::Signed(sp)) => Some(sp),
                _ => None,
            });
            let mut operations = Vec::new();
            for op in &desc.operations {
                let mkey = format!("mappings.{}.{}", s.mappings, op.name);
                let Some(m) = set.get(&op.name) else {
                    self.err(
                        w.clone(),
                        &mkey,
                        format!("operation '{}' of {} has no mapping", op.name, s.name),
                    );
                    continue;
                };
                if let Some(sp) = signed
                    && let Err(e) = check_signed_operation(sp, &desc.schema, op)
                {
                    self.err(
                        w.clone(),
                        format!("{key}.profile"),
                        format!("operation '{}': {e}", op.name),
                    );
                }
                let mw = at(m);
                let m = m.get_ref();
                let action = match &m.stock {
                    Some(st) => {
                        if raw.stock.is_none() {
                            self.err(
                                mw.clone(),
                                format!("{mkey}.stock"),
                                "needs a [stock] section",
                            );
                        }
                        self.stock_call(mw, &mkey, st, m).map(Action::Stock)
                    }
                    None => {
                        if let Some(b) = &m.backend
                            && !raw.backends.contains_key(b)
                        {
                            self.err(
                                mw.clone(),
                                format!("{mkey}.backend"),
                                format!("no [backends.{b}] is defined"),
                            );
                        }
                        let backend = m.backend.as_ref().unwrap_or(&s.backend);
                        self.route(mw, &mkey, m, backend, backends)
                            .map(|r| Action::Backend(Arc::new(r)))
                    }
                };
                if let Some(a) = action {
                    operations.push(a);
                }
            }
            if operations.len() != desc.operations.len() {
                continue;
            }
            let shadow = match &s.shadow {
                Some(sh) => match self.shadow(w.clone(), &key, sh, &desc, &operations) {
                    Some(p) => Some(p),
                    None => continue,
                },
                None => None,
            };
            let endpoint = format!("{public_url}{}", s.path);
            out.push(ServicePlan {
                name: s.name.clone(),
                path,
                wsdl: Bytes::from(desc.render_wsdl(&endpoint)),
                desc: Arc::new(desc),
                endpoint,
                profile,
                operations,
                env_prefix,
                body_prefix,
                strict_nil: s.strict_nil,
                shadow,
            });
        }
        out
    }

    /// A service's shadow mode: the legacy URL, and which operations may be sent to it (reads,
    /// and the writes marked safe).
    fn shadow(
        &mut self,
        w: At,
        key: &str,
        sh: &raw::ShadowConfig,
        desc: &ServiceDescription,
        operations: &[Action],
    ) -> Option<ShadowPlan> {
        let before = self.errors.len();
        let url = match sh.url.parse::<http::Uri>() {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {
                Some(u)
            }
            _ => {
                self.err(
                    w.clone(),
                    format!("{key}.shadow.url"),
                    "must be an http:// or https:// URL of the legacy service",
                );
                None
            }
        };
        for op in &sh.safe {
            if desc.operation(op).is_none() {
                let known: Vec<&str> = desc.operations.iter().map(|o| o.name.as_str()).collect();
                self.err(
                    w.clone(),
                    format!("{key}.shadow.safe"),
                    format!("no operation '{op}' (the WSDL has: {})", known.join(", ")),
                );
            }
        }
        let sample = sh.sample.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&sample) {
            self.err(
                w.clone(),
                format!("{key}.shadow.sample"),
                "must be between 0 and 1",
            );
        }
        let max_in_flight = sh.max_in_flight.unwrap_or(d::SHADOW_MAX_IN_FLIGHT);
        if max_in_flight == 0 {
            self.err(
                w,
                format!("{key}.shadow.max_in_flight"),
                "must be at least 1",
            );
        }
        if self.errors.len() > before {
            return None;
        }
        let shadowed = desc
            .operations
            .iter()
            .zip(operations)
            .map(|(op, a)| {
                let read = matches!(a, Action::Backend(r) if r.method == Method::GET);
                read || sh.safe.contains(&op.name)
            })
            .collect();
        Some(ShadowPlan {
            url: url?,
            operations: shadowed,
            per_million: (sample * 1_000_000.0).round() as u32,
            max_in_flight,
            timeout: Duration::from_millis(sh.timeout_ms.unwrap_or(d::SHADOW_TIMEOUT_MS)),
            rules: crate::protocol::compare::Rules {
                ignore: sh.ignore.clone(),
                unordered: desc.schema.unordered_elements(),
            },
        })
    }

    fn stock_call(
        &mut self,
        w: At,
        key: &str,
        st: &raw::StockOpConfig,
        m: &raw::OperationMapping,
    ) -> Option<StockCall> {
        let op = match st.op {
            raw::StockOpKind::Submit => match st.action {
                Some(action) => StockOp::Submit {
                    action,
                    list: st.list.unwrap_or(StockList::Main),
                },
                None => {
                    self.err(
                        w,
                        format!("{key}.stock"),
                        "a submit needs action = \"insert\" or \"update\"",
                    );
                    return None;
                }
            },
            raw::StockOpKind::Warehouses => StockOp::Warehouses,
            raw::StockOpKind::Batches => StockOp::Batches,
            raw::StockOpKind::Batch => StockOp::Batch,
            raw::StockOpKind::Reports => StockOp::Reports,
        };
        for (k, set) in [
            ("path", m.path.is_some()),
            ("pages", m.pages.is_some()),
            ("batch", m.batch.is_some()),
            ("backend", m.backend.is_some()),
            ("query", !m.query.is_empty()),
            ("headers", !m.headers.is_empty()),
        ] {
            if set {
                self.err(
                    w.clone(),
                    format!("{key}.{k}"),
                    "a stock operation has no backend call of its own; see [stock]",
                );
            }
        }
        let body = m
            .body
            .as_ref()
            .map(|b| self.template(w.clone(), &format!("{key}.body"), b));
        let response = self.template(
            w,
            &format!("{key}.response"),
            m.response
                .as_ref()
                .unwrap_or(&Value::String(d::RESPONSE.into())),
        );
        Some(StockCall {
            op,
            body: body.map(|b| b.ok_or(())).transpose().ok()?,
            response: response?,
        })
    }

    /// One backend call: the mapping's templates, checked against its backend.
    fn route(
        &mut self,
        w: At,
        key: &str,
        m: &raw::OperationMapping,
        backend: &str,
        backends: &BTreeMap<String, Arc<BackendPlan>>,
    ) -> Option<RoutePlan> {
        let errors_before = self.errors.len();
        // (An unknown backend is reported where it is named: the service, the mapping, the
        // company or [stock].)
        let b = backends.get(backend);
        let method = self.method(
            w.clone(),
            &format!("{key}.method"),
            m.method.as_deref(),
            d::METHOD,
        );
        let path = match &m.path {
            Some(p) => {
                let r = PathTemplate::parse(p);
                self.ok(w.clone(), &format!("{key}.path"), r)
            }
            None => {
                self.err(
                    w.clone(),
                    format!("{key}.path"),
                    "is required (unless the operation is a stock operation)",
                );
                None
            }
        };
        let mut query = Vec::new();
        for (q, v) in &m.query {
            if let Some(t) = self.template(w.clone(), &format!("{key}.query.{q}"), v) {
                query.push((q.clone(), t));
            }
        }
        let mut headers = Vec::new();
        for (h, v) in &m.headers {
            let hkey = format!("{key}.headers.{h}");
            match HeaderName::from_bytes(h.as_bytes()) {
                Ok(name) => {
                    if let Some(t) = self.template(w.clone(), &hkey, v) {
                        headers.push((name, t));
                    }
                }
                Err(_) => self.err(w.clone(), &hkey, "not a valid header name"),
            }
        }
        let body = m
            .body
            .as_ref()
            .and_then(|b| self.template(w.clone(), &format!("{key}.body"), b));
        let response = self.template(
            w.clone(),
            &format!("{key}.response"),
            m.response
                .as_ref()
                .unwrap_or(&Value::String(d::RESPONSE.into())),
        );
        let pages = m.pages.as_ref().and_then(|p| {
            let next = self.doc_path(w.clone(), &format!("{key}.pages.next"), &p.next);
            let items = self.doc_path(w.clone(), &format!("{key}.pages.items"), &p.items);
            let max = self.at_least(
                w.clone(),
                &format!("{key}.pages.max_pages"),
                p.max_pages,
                d::MAX_PAGES,
                1,
            );
            Some(PagesPlan {
                next: next?,
                items: items?,
                max,
            })
        });
        let batch = m.batch.as_ref().and_then(|bc| {
            if bc.size == 0 {
                self.err(w.clone(), format!("{key}.batch.size"), "must be at least 1");
            }
            if m.body.is_none() {
                self.err(w.clone(), format!("{key}.batch"), "needs a body to split");
            }
            let items = self.doc_path(
                w.clone(),
                &format!("{key}.batch.items"),
                bc.items.as_deref().unwrap_or(d::BATCH_ITEMS),
            );
            let item_errors = bc
                .item_errors
                .as_ref()
                .map(|e| self.doc_path(w.clone(), &format!("{key}.batch.item_errors"), e));
            Some(BatchPlan {
                size: bc.size.max(1),
                items: items?,
                item_errors: item_errors.map(|e| e.ok_or(())).transpose().ok()?,
                resend_valid: bc.resend_valid,
            })
        });
        if m.pages.is_some() && m.batch.is_some() {
            self.err(
                w.clone(),
                format!("{key}.pages"),
                "cannot be combined with batch",
            );
        }
        if let Some(b) = b
            && !matches!(b.auth, AuthPlan::Session(_))
        {
            let uses = |t: &Template| t.uses(Root::Session);
            if body.as_ref().is_some_and(uses) || query.iter().any(|(_, t)| uses(t)) {
                self.err(
                    w.clone(),
                    format!("{key}.body"),
                    format!(
                        "uses $session, but backend '{backend}' has no session login ([backends.{backend}.auth] kind = \"session\")"
                    ),
                );
            }
        }
        if m.batch.is_none() && response.as_ref().is_some_and(|r| r.uses(Root::Batch)) {
            self.err(
                w.clone(),
                format!("{key}.response"),
                "uses $batch, but the mapping has no batch",
            );
        }
        if self.errors.len() > errors_before {
            return None;
        }
        Some(RoutePlan {
            backend: backend.to_string(),
            method: method?,
            path: path?,
            query,
            headers,
            body,
            response: response?,
            pages,
            batch,
            retry: m.retry.unwrap_or(false),
        })
    }

    /// A path from `$` (a document the backend answered).
    fn doc_path(&mut self, w: At, key: &str, text: &str) -> Option<PathExpr> {
        let r = PathExpr::parse(text).and_then(|p| {
            if p.root() == Root::Doc {
                Ok(p)
            } else {
                Err(format!("'{text}' must be a path from $"))
            }
        });
        self.ok(w, key, r)
    }

    // ---- [winstrom] ----------------------------------------------------------------------

    fn winstrom(
        &mut self,
        sw: &Spanned<raw::WinstromConfig>,
        backends: &BTreeMap<String, Arc<BackendPlan>>,
        profiles: &BTreeMap<String, ProfilePlan>,
    ) -> Option<WinstromPlan> {
        let w = at(sw);
        let c = sw.get_ref();
        let prefix = c
            .path
            .as_deref()
            .unwrap_or(d::WINSTROM_PATH)
            .trim_end_matches('/')
            .to_string();
        if !prefix.starts_with('/') {
            self.err(w.clone(), "winstrom.path", "must start with '/'");
        }
        let mut companies = BTreeMap::new();
        for (name, co) in &c.companies {
            let key = format!("winstrom.companies.{name}");
            if !self.cfg.raw.backends.contains_key(&co.backend) {
                self.err(
                    w.clone(),
                    format!("{key}.backend"),
                    format!("no [backends.{}] is defined", co.backend),
                );
            }
            match self.cfg.raw.profiles.get(&co.profile).map(|p| p.get_ref()) {
                None => self.err(
                    w.clone(),
                    format!("{key}.profile"),
                    format!("no [profiles.{}] is defined", co.profile),
                ),
                Some(raw::ProfileConfig::Signed(_)) => self.err(
                    w.clone(),
                    format!("{key}.profile"),
                    "must be a basic profile (winstrom clients send HTTP Basic only)",
                ),
                Some(raw::ProfileConfig::Basic(_)) => {}
            }
            companies.insert(
                name.clone(),
                CompanyPlan {
                    backend: co.backend.clone(),
                    tenant: co.tenant.clone().unwrap_or_else(|| name.clone()),
                    profile: co.profile.clone(),
                },
            );
        }
        let _ = profiles;
        // The routes of an evidence are checked against every company's backend.
        let company_backends: Vec<String> = companies.values().map(|c| c.backend.clone()).collect();
        let mut evidences = BTreeMap::new();
        for (name, e) in &c.evidences {
            if let Some(ev) = self.evidence(w.clone(), name, e, &company_backends, backends) {
                evidences.insert(name.clone(), Arc::new(ev));
            }
        }
        let filter_limits = wql::Limits {
            terms: self.at_least(
                w.clone(),
                "winstrom.max_filter_terms",
                c.max_filter_terms,
                d::MAX_FILTER_TERMS,
                1,
            ),
            nodes: self.at_least(
                w.clone(),
                "winstrom.max_filter_nodes",
                c.max_filter_nodes,
                d::MAX_FILTER_NODES,
                1,
            ),
            ..wql::Limits::default()
        };
        Some(WinstromPlan {
            prefix,
            max_records: self.at_least(
                w.clone(),
                "winstrom.max_records",
                c.max_records,
                d::MAX_RECORDS,
                1,
            ),
            max_matches: self.at_least(
                w.clone(),
                "winstrom.max_matches",
                c.max_matches,
                d::MAX_MATCHES,
                1,
            ),
            filter_limits,
            offset: chrono::FixedOffset::east_opt(d::WINSTROM_UTC_OFFSET_SECS)
                .expect("a valid offset"),
            companies,
            evidences,
        })
    }

    fn evidence(
        &mut self,
        w: At,
        name: &str,
        e: &raw::EvidenceConfig,
        company_backends: &[String],
        backends: &BTreeMap<String, Arc<BackendPlan>>,
    ) -> Option<EvidencePlan> {
        let key = format!("winstrom.evidences.{name}");
        let errors_before = self.errors.len();
        let mut fields = Vec::new();
        for (i, f) in e.fields.iter().enumerate() {
            let fkey = format!("{key}.fields[{i}]");
            let ops: Vec<&'static str> = match &f.filter {
                None => Vec::new(),
                Some(raw::FilterOps::Group(g)) => {
                    match g.as_str() {
                        "number" => NUMBER_OPS.to_vec(),
                        "text" => TEXT_OPS.to_vec(),
                        "bool" => BOOL_OPS.to_vec(),
                        other => {
                            self.err(
                            w.clone(),
                            format!("{fkey}.filter"),
                            format!("unknown operator group '{other}' (number, text, bool, or a list)"),
                        );
                            Vec::new()
                        }
                    }
                }
                Some(raw::FilterOps::List(list)) => {
                    let mut ops = Vec::new();
                    for o in list {
                        match ALL_OPS.iter().find(|k| **k == o.as_str()) {
                            Some(k) => ops.push(*k),
                            None => self.err(
                                w.clone(),
                                format!("{fkey}.filter"),
                                format!("unknown operator \"{o}\" (known: {})", ALL_OPS.join(", ")),
                            ),
                        }
                    }
                    ops
                }
            };
            fields.push(FieldPlan {
                name: f.name.clone(),
                title: f.title.clone().unwrap_or_else(|| f.name.clone()),
                ty: f.ty,
                backend: f.backend.clone().unwrap_or_else(|| f.name.clone()),
                ops,
                read_only: f.read_only,
            });
        }
        if let Some(c) = &e.code_field
            && !fields.iter().any(|f| &f.name == c)
        {
            self.err(
                w.clone(),
                format!("{key}.code_field"),
                format!("'{c}' is not one of the fields"),
            );
        }
        for r in e.routes.keys() {
            if !["list", "get", "create", "update"].contains(&r.as_str()) {
                self.err(
                    w.clone(),
                    format!("{key}.routes.{r}"),
                    "unknown route (list, get, create, update)",
                );
            }
        }
        let route =
            |this: &mut Self, k: &str, m: &raw::OperationMapping| -> Option<Arc<RoutePlan>> {
                if m.backend.is_some() {
                    this.err(
                        w.clone(),
                        format!("{key}.{k}.backend"),
                        "a winstrom route uses its company's backend",
                    );
                    return None;
                }
                if m.stock.is_some() {
                    this.err(
                        w.clone(),
                        format!("{key}.{k}.stock"),
                        "a winstrom route is a backend call",
                    );
                    return None;
                }
                // Compiled once; checked against each company's backend (for $session).
                let mut plan = None;
                for b in company_backends {
                    plan = this.route(w.clone(), &format!("{key}.{k}"), m, b, backends);
                }
                if company_backends.is_empty() {
                    plan = this.route(w.clone(), &format!("{key}.{k}"), m, "", &BTreeMap::new());
                }
                plan.map(Arc::new)
            };
        let list = match e.routes.get("list") {
            Some(m) => route(self, "routes.list", m),
            None => {
                self.err(
                    w.clone(),
                    format!("{key}.routes"),
                    "needs at least a list route",
                );
                None
            }
        };
        let get = e
            .routes
            .get("get")
            .and_then(|m| route(self, "routes.get", m));
        let create = e
            .routes
            .get("create")
            .and_then(|m| route(self, "routes.create", m));
        let update = e
            .routes
            .get("update")
            .and_then(|m| route(self, "routes.update", m));
        let mut actions = BTreeMap::new();
        for (a, m) in &e.actions {
            if let Some(r) = route(self, &format!("actions.{a}"), m) {
                actions.insert(a.clone(), r);
            }
        }
        let summary = match &e.summary {
            Some(names) => {
                for n in names {
                    if !fields.iter().any(|f| &f.name == n) {
                        self.err(
                            w.clone(),
                            format!("{key}.summary"),
                            format!("'{n}' is not one of the fields"),
                        );
                    }
                }
                fields
                    .iter()
                    .filter(|f| names.contains(&f.name))
                    .map(|f| f.name.clone())
                    .collect()
            }
            None => fields
                .iter()
                .filter(|f| {
                    f.name == "id" || f.name == "nazev" || Some(&f.name) == e.code_field.as_ref()
                })
                .map(|f| f.name.clone())
                .collect(),
        };
        if self.errors.len() > errors_before {
            return None;
        }
        let list = list?;
        Some(EvidencePlan {
            name: name.to_string(),
            class: e.class.clone().unwrap_or_else(|| name.to_string()),
            code_field: e.code_field.clone(),
            summary,
            fields,
            sortable: list.reads("order"),
            list,
            get,
            create,
            update,
            actions,
        })
    }

    // ---- [stock] -------------------------------------------------------------------------

    fn stock(
        &mut self,
        ss: &Spanned<raw::StockConfig>,
        backends: &BTreeMap<String, Arc<BackendPlan>>,
    ) -> Option<StockPlan> {
        let w = at(ss);
        let s = ss.get_ref();
        if !self.cfg.raw.backends.contains_key(&s.backend) {
            self.err(
                w.clone(),
                "stock.backend",
                format!("no [backends.{}] is defined", s.backend),
            );
            return None;
        }
        let send = self.route(w.clone(), "stock.send", &s.send, &s.backend, backends);
        let poll = self.route(w.clone(), "stock.poll", &s.poll, &s.backend, backends);
        let lease_ms = self.at_least(
            w.clone(),
            "stock.lease_ms",
            s.lease_ms,
            d::STOCK_LEASE_MS,
            1,
        );
        if let Some(b) = backends.get(&s.backend)
            && lease_ms <= b.timeout.as_millis() as i64
        {
            self.err(
                w.clone(),
                "stock.lease_ms",
                "must be longer than the backend's timeout_ms, or a slow delivery could lose its claim",
            );
        }
        Some(StockPlan {
            backend: s.backend.clone(),
            warehouses: s.warehouse_codes.clone(),
            workers: self.at_least(w.clone(), "stock.workers", s.workers, d::STOCK_WORKERS, 0),
            max_attempts: self.at_least(
                w.clone(),
                "stock.max_attempts",
                s.max_attempts,
                d::STOCK_MAX_ATTEMPTS,
                1,
            ),
            lease_ms,
            poll_interval_ms: self.at_least(
                w.clone(),
                "stock.poll_interval_ms",
                s.poll_interval_ms,
                d::STOCK_POLL_INTERVAL_MS,
                10,
            ),
            retry_base_ms: self.at_least(
                w.clone(),
                "stock.retry_base_ms",
                s.retry_base_ms,
                d::STOCK_RETRY_BASE_MS,
                1,
            ),
            retry_max_ms: self.at_least(
                w.clone(),
                "stock.retry_max_ms",
                s.retry_max_ms,
                d::STOCK_RETRY_MAX_MS,
                1,
            ),
            send: Arc::new(send?),
            poll: Arc::new(poll?),
        })
    }
}

/// Structured-filter operators, by group.
const NUMBER_OPS: &[&str] = &[
    "eq",
    "ne",
    "lt",
    "lte",
    "gt",
    "gte",
    "between",
    "in",
    "is_null",
    "is_not_null",
];
const TEXT_OPS: &[&str] = &[
    "eq",
    "ne",
    "lt",
    "lte",
    "gt",
    "gte",
    "like",
    "begins",
    "ends",
    "in",
    "is_null",
    "is_not_null",
];
const BOOL_OPS: &[&str] = &["eq", "ne", "is_true", "is_false", "is_null", "is_not_null"];
const ALL_OPS: &[&str] = &[
    "eq",
    "ne",
    "lt",
    "lte",
    "gt",
    "gte",
    "like",
    "like_similar",
    "begins",
    "begins_similar",
    "ends",
    "between",
    "in",
    "in_subtree",
    "is_true",
    "is_false",
    "is_null",
    "is_not_null",
    "is_empty",
    "is_not_empty",
];

fn usable_prefix(prefix: &str) -> bool {
    let ncname = prefix
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    ncname && !matches!(prefix, "xsi" | "sb") && !prefix.to_ascii_lowercase().starts_with("xml")
}

/// Parses `+03:00` / `-05:30` / `Z` into a chrono offset.
pub fn parse_offset(s: &str) -> Option<chrono::FixedOffset> {
    if s.eq_ignore_ascii_case("z") || s == "UTC" {
        return chrono::FixedOffset::east_opt(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    let h: i32 = h.parse().ok()?;
    let m: i32 = m.parse().ok()?;
    if h > 23 || m > 59 {
        return None;
    }
    chrono::FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

/// Checks that an operation has the parameters a signed profile needs, in the right places,
/// and that its response has the result element (with room for a failure).
fn check_signed_operation(p: &SignedPlan, schema: &Schema, op: &Operation) -> Result<(), String> {
    let TypeDef::Complex(input) = schema.get(op.input.ty) else {
        return Err("its request element is not a complex type".into());
    };
    let names: Vec<&str> = input.children.iter().map(|c| c.name.as_str()).collect();
    if names.len() < 4 || names[..3] != ["apiKey", "sign", "time"] || names.last() != Some(&"lang")
    {
        return Err(format!(
            "the signed profile needs apiKey, sign, time first and lang last; the request has ({})",
            names.join(", ")
        ));
    }
    let TypeDef::Complex(output) = schema.get(op.output.ty) else {
        return Err("its response element is not a complex type".into());
    };
    let Some(ret) = output.child(&p.result_element) else {
        return Err(format!(
            "its response has no '{}' element",
            p.result_element
        ));
    };
    let TypeDef::Complex(ret) = schema.get(ret.ty) else {
        return Err(format!("'{}' is not a complex type", p.result_element));
    };
    let stamped = ["ackCode", "responseTime", "timeElapsed", "error"];
    for f in stamped {
        if ret.child(f).is_none() {
            return Err(format!("'{}' has no '{f}' element", p.result_element));
        }
    }
    // A failure carries only the fields above: every other field must be optional, or
    // failures could not be written.
    if let Some(c) = ret
        .children
        .iter()
        .find(|c| !stamped.contains(&c.name.as_str()) && c.is_required())
    {
        return Err(format!(
            "'{}/{}' must be optional (minOccurs=\"0\") so that failures can leave it out",
            p.result_element, c.name
        ));
    }
    Ok(())
}
