//! The operator page: what the bridge is doing now, for the people who run it.
//!
//! `GET {path}/` is a server-rendered HTML page (it refreshes itself every 5 s; no script, no
//! build step), `GET {path}/status.json` the same facts as JSON, and `POST {path}/reload` reads
//! the configuration again (as SIGHUP does) and answers what happened. All of it is behind
//! HTTP Basic users of its own (`[ops]`).
//!
//! The page shows names, counts, codes and request ids, never a request or response body or a
//! credential: a failure is found in the logs by its request id.

mod page;

use http::{Method, Request, StatusCode};
use serde::Serialize;

use crate::config::OpsPlan;
use crate::profile::basic::{BasicProfile, challenge};
use crate::server::{Resp, text_response};
use crate::telemetry::{BackendHealth, Failed, Traffic};

/// The operator page's compiled state.
#[derive(Debug)]
pub(crate) struct OpsDoor {
    /// Without a trailing '/'.
    pub path: String,
    users: BasicProfile,
}

/// What an operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ask {
    Page,
    Status,
    Reload,
    /// Not one of the operators.
    Unauthorized,
    /// A page with another method.
    WrongMethod,
    NoSuchPage,
}

impl OpsDoor {
    pub(crate) fn new(plan: &OpsPlan) -> OpsDoor {
        OpsDoor {
            path: plan.path.clone(),
            users: BasicProfile::new(
                &plan.users.name,
                &plan.users.realm,
                plan.users.users.clone(),
            ),
        }
    }

    /// Whether `path` (without a trailing '/') is the operator page's.
    pub(crate) fn owns(&self, path: &str) -> bool {
        path == self.path
            || path
                .strip_prefix(self.path.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
    }

    /// What the operator asks for (after checking it is one).
    pub(crate) fn ask<B>(&self, req: &Request<B>) -> Ask {
        let authorization = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        if self.users.authenticate(authorization).is_err() {
            return Ask::Unauthorized;
        }
        let rest = req.uri().path()[self.path.len()..].trim_end_matches('/');
        match (req.method(), rest) {
            (&Method::GET, "") => Ask::Page,
            (&Method::GET, "/status.json") => Ask::Status,
            (&Method::POST, "/reload") => Ask::Reload,
            (_, "" | "/status.json" | "/reload") => Ask::WrongMethod,
            _ => Ask::NoSuchPage,
        }
    }

    /// The answer to a question that is not answered with the bridge's state.
    pub(crate) fn refused(&self, ask: Ask) -> Resp {
        let text = |status, body: String| text_response(status, "text/plain; charset=utf-8", body);
        match ask {
            Ask::Unauthorized => {
                let mut resp = text(
                    StatusCode::UNAUTHORIZED,
                    "the operator page needs an [ops] user\n".into(),
                );
                if let Ok(v) = http::HeaderValue::from_str(&challenge(&self.users.realm)) {
                    resp.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
                }
                resp
            }
            Ask::WrongMethod => text(
                StatusCode::METHOD_NOT_ALLOWED,
                "GET the page or status.json; POST reload\n".into(),
            ),
            _ => text(
                StatusCode::NOT_FOUND,
                format!("no such page: try {}/\n", self.path),
            ),
        }
    }
}

/// Everything the operator page shows.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Status {
    /// RFC 3339.
    pub now: String,
    /// 1 at start, one more for each reload put in force.
    pub generation: u64,
    /// RFC 3339, when a reload happened.
    pub last_reload: Option<String>,
    pub traffic: Vec<Traffic>,
    pub backends: Vec<BackendStatus>,
    pub stock: Option<StockStatus>,
    pub failures: Vec<Failed>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct BackendStatus {
    pub name: String,
    pub last: Option<BackendHealth>,
    /// closed, open or half-open.
    pub breaker: &'static str,
    pub in_flight: usize,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct StockStatus {
    pub counts: Vec<(&'static str, i64)>,
    pub oldest_pending_seconds: Option<i64>,
    pub failed: Vec<FailedBatch>,
    pub reports: Vec<ErrorReport>,
    /// Why the store could not be read, when it could not.
    pub unavailable: Option<String>,
}

impl StockStatus {
    pub(crate) fn unavailable(why: String) -> StockStatus {
        StockStatus {
            counts: Vec::new(),
            oldest_pending_seconds: None,
            failed: Vec::new(),
            reports: Vec::new(),
            unavailable: Some(why),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct FailedBatch {
    pub id: i64,
    pub key: String,
    pub action: &'static str,
    pub attempts: i64,
    pub last_error: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ErrorReport {
    pub id: i64,
    pub batch_id: Option<i64>,
    pub code: String,
    pub description: String,
    pub at: String,
}

/// The answer to an operator's question.
pub(crate) fn answer(ask: Ask, status: &Status) -> Resp {
    match ask {
        Ask::Page => text_response(
            StatusCode::OK,
            "text/html; charset=utf-8",
            page::render(status),
        ),
        _ => json(StatusCode::OK, status),
    }
}

/// What a reload from the page did.
pub(crate) fn reloaded(result: Result<u64, Vec<String>>) -> Resp {
    match result {
        Ok(generation) => json(
            StatusCode::OK,
            &serde_json::json!({"reloaded": true, "generation": generation}),
        ),
        Err(errors) => json(
            StatusCode::UNPROCESSABLE_ENTITY,
            &serde_json::json!({"reloaded": false, "errors": errors}),
        ),
    }
}

fn json(status: StatusCode, v: &impl Serialize) -> Resp {
    text_response(
        status,
        "application/json",
        serde_json::to_string_pretty(v).unwrap_or_default(),
    )
}

/// Milliseconds since the epoch as RFC 3339 (UTC, seconds).
pub(crate) fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// A text cut to `max` characters (error texts on the page stay short).
pub(crate) fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max).collect();
        s.push('…');
        s
    }
}
