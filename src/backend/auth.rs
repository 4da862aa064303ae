//! Backend credentials, configured per backend and never taken from client messages:
//!
//! - `basic`: a fixed HTTP Basic header.
//! - `session`: a login call (DİA's `sis` login) whose answer holds a session id, given to
//!   request templates as `$session`; logged in lazily on the first call, kept, and renewed
//!   once when the backend says the session expired.
//! - `oauth2-password`: the OAuth2 password grant; the bearer token is refreshed before it
//!   expires (refresh grant, else a new password grant) and after a 401.
//!
//! Concurrent calls share one login: the state sits behind an async mutex, and a renewal
//! asked for with an old generation returns the newer credentials another call already got.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderValue, Method};
use serde_json::Value;
use tokio::sync::Mutex;

use super::{Backend, BackendRequest, Body};
use crate::error::{Error, Refusal};
use crate::mapping::{Scope, Template};

/// What one call carries: the session for `$session` and the Authorization header.
#[derive(Debug, Clone, Default)]
pub(crate) struct Creds {
    pub session: Option<Arc<Value>>,
    pub authorization: Option<HeaderValue>,
    /// Which login these came from; a renewal for an older generation is not repeated.
    generation: u64,
}

impl Creds {
    /// Which login these came from (0: none).
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }
}

/// How the bridge logs in to a backend, as configured.
// Built once per backend at start: the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AuthPlan {
    None,
    /// A fixed `Authorization: Basic ...` header.
    Basic(HeaderValue),
    Session(SessionPlan),
    OAuth2(GrantPlan),
}

/// A login call whose answer holds a session id.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SessionPlan {
    pub method: Method,
    pub path: String,
    /// The login body, evaluated with `$` = the resolved credentials.
    pub body: Template,
    pub credentials: Value,
    /// Where the session id is in the login answer.
    pub session: Template,
    /// Statuses (in the body's status field, or HTTP) that mean "log in again".
    pub expired: Vec<u16>,
}

/// The OAuth2 password grant.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GrantPlan {
    pub token_path: String,
    /// client_id, client_secret, username, password (and scope), form-encoded.
    pub password_form: String,
    /// client_id and client_secret, for the refresh grant.
    pub client_form: String,
    /// Renew this long before the token expires (at most half its life).
    pub margin: Duration,
}

/// A backend's credentials while the bridge runs: the plan and what the last login gave.
#[derive(Debug)]
pub(crate) enum Auth {
    None,
    Basic(HeaderValue),
    Session(SessionLogin),
    OAuth2(PasswordGrant),
}

impl Auth {
    /// Credentials as planned, not logged in yet.
    pub(crate) fn new(plan: &AuthPlan) -> Auth {
        match plan {
            AuthPlan::None => Auth::None,
            AuthPlan::Basic(h) => Auth::Basic(h.clone()),
            AuthPlan::Session(p) => Auth::Session(SessionLogin {
                plan: p.clone(),
                state: Mutex::default(),
                failed: RecentFailure::default(),
            }),
            AuthPlan::OAuth2(p) => Auth::OAuth2(PasswordGrant {
                plan: p.clone(),
                state: Mutex::default(),
                failed: RecentFailure::default(),
            }),
        }
    }
}

#[derive(Debug)]
pub(crate) struct SessionLogin {
    plan: SessionPlan,
    state: Mutex<Option<Creds>>,
    failed: RecentFailure,
}

/// The last failed login, for a moment: calls queued behind a login that failed get its error
/// instead of each trying (and waiting for) a login of their own.
#[derive(Debug, Default)]
pub(crate) struct RecentFailure(std::sync::Mutex<Option<(Instant, String)>>);

/// How long a failed login answers for the next ones.
const FAILED_LOGIN_HOLD: Duration = Duration::from_secs(1);

impl RecentFailure {
    fn check(&self, backend: &Backend) -> Result<(), Error> {
        let f = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match f.as_ref() {
            Some((at, why)) if backend.clock.instant() < *at + FAILED_LOGIN_HOLD => {
                Err(login_failed(
                    backend,
                    format!("{why} (the login failed a moment ago; not tried again yet)"),
                ))
            }
            _ => Ok(()),
        }
    }

    fn note<T>(&self, backend: &Backend, r: Result<T, Error>) -> Result<T, Error> {
        let mut f = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match &r {
            Ok(_) => *f = None,
            Err(e) => *f = Some((backend.clock.instant(), e.to_string())),
        }
        r
    }
}

#[derive(Debug)]
pub(crate) struct PasswordGrant {
    plan: GrantPlan,
    state: Mutex<Option<Token>>,
    failed: RecentFailure,
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    creds: Creds,
    refresh: Option<String>,
    /// When to get a new one: `margin` before it expires, or half-way when it lives shorter.
    renew_at: Instant,
}

/// `k=v&...`, form-encoded (`application/x-www-form-urlencoded`).
pub(crate) fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn login_failed(backend: &Backend, detail: impl std::fmt::Display) -> Error {
    // Reported as the backend refusing the bridge (status 401): the caller cannot fix it.
    Error::BackendRefused(Refusal {
        status: 401,
        code: "login_failed".into(),
        message: format!(
            "the bridge could not log in to backend '{}': {detail}",
            backend.name
        ),
        fields: Vec::new(),
        body: Value::Null,
        number: None,
    })
}

/// A login or token call (without credentials); a refusal is the bridge's failed login.
async fn login_call(
    backend: &Backend,
    method: Method,
    path: &str,
    body: Body,
) -> Result<Value, Error> {
    let req = BackendRequest {
        method,
        path_and_query: path.to_string(),
        body,
        headers: Vec::new(),
        retry: false,
    };
    backend
        .exchange(&req, &Creds::default())
        .await
        .map_err(|e| match e {
            Error::BackendRefused(r) => login_failed(backend, r.message),
            other => other,
        })
}

impl Auth {
    /// Whether a call with expired credentials is worth one renewal and retry.
    pub(crate) fn renews(&self) -> bool {
        matches!(self, Auth::Session(_) | Auth::OAuth2(_))
    }

    /// Whether `status` (read from the body or HTTP) means the credentials expired.
    pub(crate) fn is_expired(&self, status: u16, http_status: u16) -> bool {
        match self {
            Auth::Session(s) => s.plan.expired.contains(&status),
            Auth::OAuth2(_) => http_status == 401,
            _ => false,
        }
    }

    /// The credentials for the next call, logging in if there are none (or they are about
    /// to expire).
    pub(crate) async fn current(&self, backend: &Backend) -> Result<Creds, Error> {
        match self {
            Auth::None => Ok(Creds::default()),
            Auth::Basic(h) => Ok(Creds {
                authorization: Some(h.clone()),
                ..Creds::default()
            }),
            Auth::Session(s) => {
                let mut state = s.state.lock().await;
                if let Some(c) = state.as_ref() {
                    return Ok(c.clone());
                }
                s.failed.check(backend)?;
                let c = s.failed.note(backend, s.login(backend, 1).await)?;
                *state = Some(c.clone());
                Ok(c)
            }
            Auth::OAuth2(g) => {
                let mut state = g.state.lock().await;
                match state.as_ref() {
                    Some(t) if backend.clock.instant() < t.renew_at => Ok(t.creds.clone()),
                    old => {
                        let generation = old.map_or(1, |t| t.creds.generation + 1);
                        let refresh = old.and_then(|t| t.refresh.clone());
                        g.failed.check(backend)?;
                        let t = g
                            .failed
                            .note(backend, g.obtain(backend, refresh, generation).await)?;
                        let c = t.creds.clone();
                        *state = Some(t);
                        Ok(c)
                    }
                }
            }
        }
    }

    /// New credentials after `old` was refused as expired; if another call already renewed
    /// them, those are returned without a second login.
    pub(crate) async fn renew(&self, backend: &Backend, old: &Creds) -> Result<Creds, Error> {
        match self {
            Auth::Session(s) => {
                let mut state = s.state.lock().await;
                if let Some(c) = state.as_ref().filter(|c| c.generation != old.generation) {
                    return Ok(c.clone());
                }
                tracing::info!(backend = %backend.name, "backend session expired; logging in again");
                s.failed.check(backend)?;
                let c = s
                    .failed
                    .note(backend, s.login(backend, old.generation + 1).await)?;
                *state = Some(c.clone());
                Ok(c)
            }
            Auth::OAuth2(g) => {
                let mut state = g.state.lock().await;
                if let Some(t) = state
                    .as_ref()
                    .filter(|t| t.creds.generation != old.generation)
                {
                    return Ok(t.creds.clone());
                }
                tracing::info!(backend = %backend.name, "backend token refused; renewing it");
                let refresh = state.as_ref().and_then(|t| t.refresh.clone());
                g.failed.check(backend)?;
                let t = g.failed.note(
                    backend,
                    g.obtain(backend, refresh, old.generation + 1).await,
                )?;
                let c = t.creds.clone();
                *state = Some(t);
                Ok(c)
            }
            _ => self.current(backend).await,
        }
    }
}

impl SessionLogin {
    async fn login(&self, backend: &Backend, generation: u64) -> Result<Creds, Error> {
        backend.telemetry.login(&backend.name, "login");
        let p = &self.plan;
        let body = p
            .body
            .eval(&Scope::json(&p.credentials))
            .ok_or_else(|| login_failed(backend, "the login template produced nothing"))?;
        let answer = login_call(backend, p.method.clone(), &p.path, Body::Json(body)).await?;
        match p.session.eval(&Scope::json(&answer)) {
            Some(Value::String(s)) if !s.is_empty() => Ok(Creds {
                session: Some(Arc::new(Value::String(s))),
                authorization: None,
                generation,
            }),
            Some(Value::Number(n)) => Ok(Creds {
                session: Some(Arc::new(Value::String(n.to_string()))),
                authorization: None,
                generation,
            }),
            _ => Err(login_failed(
                backend,
                "its answer has no session id where the configuration says",
            )),
        }
    }
}

impl PasswordGrant {
    /// A token by the refresh grant when there is a refresh token (falling back to the
    /// password grant when it is refused), else by the password grant.
    async fn obtain(
        &self,
        backend: &Backend,
        refresh: Option<String>,
        generation: u64,
    ) -> Result<Token, Error> {
        if let Some(r) = refresh {
            backend.telemetry.login(&backend.name, "refresh");
            let form = format!(
                "grant_type=refresh_token&{}&{}",
                form(&[("refresh_token", &r)]),
                self.plan.client_form
            );
            match self.grant(backend, form, generation).await {
                Ok(t) => return Ok(t),
                Err(e) => {
                    tracing::info!(backend = %backend.name, code = e.code(), "refresh grant refused; using the password grant")
                }
            }
        }
        backend.telemetry.login(&backend.name, "login");
        let form = format!("grant_type=password&{}", self.plan.password_form);
        self.grant(backend, form, generation).await
    }

    async fn grant(
        &self,
        backend: &Backend,
        form: String,
        generation: u64,
    ) -> Result<Token, Error> {
        let answer = login_call(
            backend,
            Method::POST,
            &self.plan.token_path,
            Body::Form(form),
        )
        .await?;
        let access = answer
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| login_failed(backend, "the token answer has no access_token"))?;
        let header = HeaderValue::from_str(&format!("Bearer {access}"))
            .map_err(|_| login_failed(backend, "the access token is not a valid header value"))?;
        // (At most a year: a silly expires_in must not overflow the clock.)
        let ttl = Duration::from_secs(
            answer
                .get("expires_in")
                .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
                .unwrap_or(3600)
                .min(365 * 24 * 3600),
        );
        Ok(Token {
            creds: Creds {
                session: None,
                authorization: Some(header),
                generation,
            },
            refresh: answer
                .get("refresh_token")
                .and_then(Value::as_str)
                .map(str::to_string),
            renew_at: backend.clock.instant() + ttl - self.plan.margin.min(ttl / 2),
        })
    }
}
