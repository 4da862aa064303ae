//! Proof for a migration: `soapbridge record` keeps what a legacy server answers as fixtures,
//! `soapbridge replay` sends those requests through the bridge and compares its answers with
//! the legacy server's by meaning (`protocol::compare`), and shadow mode does the same with
//! live traffic (`shadow`).
//!
//! The fixtures are the project's own format (`fixtures/*/cases.toml`): a `[[case]]` per call
//! with its request file, its expected answer file, path, user, content type, status and
//! method. A recorded case keeps the HTTP Basic user's name, never the password; secrets and
//! card numbers in the messages are `***` (`protocol::compare::redact`).

pub mod record;
pub mod replay;
pub(crate) mod shadow;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};

/// One recorded call, as `cases.toml` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Case {
    /// The request body's file (none: a request without a body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// The answer's file (default: the request's name with `.expected` before its extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// Path and query.
    pub service: String,
    /// `name` (the password comes from the replay's credentials) or `name:password`; empty
    /// for none.
    #[serde(default)]
    pub user: String,
    #[serde(default = "default_content_type")]
    pub content_type: String,
    #[serde(default = "default_status")]
    pub status: u16,
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soap_action: Option<String>,
}

fn default_content_type() -> String {
    "text/xml; charset=utf-8".into()
}
fn default_status() -> u16 {
    200
}
fn default_method() -> String {
    "POST".into()
}

impl Case {
    /// The answer's file name.
    pub fn expected_file(&self) -> Option<String> {
        self.expected.clone().or_else(|| {
            self.request.as_ref().map(|r| {
                let (stem, ext) = r.rsplit_once('.').unwrap_or((r, "xml"));
                format!("{stem}.expected.{ext}")
            })
        })
    }
}

#[derive(Debug, Deserialize)]
struct Cases {
    #[serde(default)]
    case: Vec<Case>,
}

/// Reads `dir/cases.toml`.
pub fn read_cases(dir: &std::path::Path) -> Result<Vec<Case>, String> {
    let path = dir.join("cases.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let cases: Cases = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(cases.case)
}

/// An HTTP(S) client for a legacy server or a bridge.
pub(crate) type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

pub(crate) fn http_client() -> Result<HttpClient, String> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    http.set_nodelay(true);
    http.enforce_http(false);
    let tls = crate::backend::tls_config(None)?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector))
}

/// Headers that belong to one connection, not to the message.
pub(crate) fn hop_by_hop(name: &http::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "host"
            | "content-length"
    )
}
