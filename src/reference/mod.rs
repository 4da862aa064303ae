//! Reference JSON backends bundled with soapbridge, so that the demo configuration and the
//! tests have a real service behind the bridge. Each is also runnable on its own
//! (`soapbridge reference-backend`). They are designed as modern JSON APIs (their own resource
//! paths, snake_case fields, their own error shape), not as copies of the SOAP messages.

pub mod datawiz;
pub mod dia;
pub mod flexi;
pub mod product_options;
pub mod stock;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// Kinds of reference backend that can be started.
pub const KINDS: &[&str] = &["product-options", "dia", "datawiz", "flexi", "stock"];

/// A loaded reference backend.
enum Api {
    ProductOptions(product_options::ProductOptionsApi),
    Dia(dia::DiaApi),
    Datawiz(datawiz::DatawizApi),
    Flexi(flexi::FlexiApi),
    Stock(stock::StockApi),
}

impl Api {
    async fn handle(&self, req: http::Request<crate::server::Body>) -> Response<Full<Bytes>> {
        match self {
            Api::ProductOptions(a) => a.handle(req).await,
            Api::Dia(a) => a.handle(req).await,
            Api::Datawiz(a) => a.handle(req).await,
            Api::Flexi(a) => a.handle(req).await,
            Api::Stock(a) => a.handle(req).await,
        }
    }
}

/// Loads a reference backend of `kind` with seed data from `data`.
fn load(kind: &str, data: &Path) -> Result<Api, String> {
    match kind {
        "product-options" => {
            product_options::ProductOptionsApi::load(data).map(Api::ProductOptions)
        }
        "dia" => dia::DiaApi::load(data).map(Api::Dia),
        "datawiz" => datawiz::DatawizApi::load(data).map(Api::Datawiz),
        "flexi" => flexi::FlexiApi::load(data).map(Api::Flexi),
        "stock" => stock::StockApi::load(data).map(Api::Stock),
        other => Err(format!(
            "unknown reference backend '{other}' (known: {})",
            KINDS.join(", ")
        )),
    }
}

/// Starts a reference backend of `kind` with seed data from `data` on `listener`; runs until
/// the process ends.
pub fn spawn(kind: &str, data: &Path, listener: TcpListener) -> Result<SocketAddr, String> {
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let api = Arc::new(load(kind, data)?);
    tokio::spawn(crate::server::serve(
        listener,
        move |req| {
            let api = api.clone();
            async move { api.handle(req).await }
        },
        crate::server::ServeOptions::default(),
        std::future::pending(),
    ));
    Ok(addr)
}

/// Checks that a reference backend of `kind` can load its seed data.
pub fn check(kind: &str, data: &Path) -> Result<(), String> {
    load(kind, data).map(|_| ())
}

/// At most 40 characters of `s`, for messages.
pub fn shorten(s: &str) -> String {
    if s.chars().count() <= 40 {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(40).collect();
        t.push('…');
        t
    }
}

/// A JSON value written briefly, for messages.
pub fn shown(v: &Value) -> String {
    shorten(&v.to_string())
}

/// A JSON response.
pub fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("valid response")
}

/// An API error in the reference backends' shape:
/// `{"error": {"code", "message", "details": [{"field", "code", "message"}]}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Vec<(String, &'static str, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub fn field(
        mut self,
        field: impl Into<String>,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        self.details.push((field.into(), code, message.into()));
        self
    }

    /// The JSON body of the error.
    pub fn body(&self) -> Value {
        let details: Vec<Value> = self
            .details
            .iter()
            .map(|(f, c, m)| json!({"field": f, "code": c, "message": m}))
            .collect();
        json!({"error": {"code": self.code, "message": self.message, "details": details}})
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        json_response(self.status, &self.body())
    }
}
