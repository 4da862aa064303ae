//! Reference JSON backends for soapbridge's demo and tests: a real service behind the bridge,
//! never part of it (the bridge's binary contains none of this). Each runs in a process of its
//! own (`soapbridge-reference --kind ...`), inside the demo (`soapbridge-demo`), or inside a
//! test. They are designed as modern JSON APIs (their own resource paths, snake_case fields,
//! their own error shape), not as copies of the SOAP messages.
#![forbid(unsafe_code)]

pub mod datawiz;
pub mod dia;
pub mod flexi;
pub mod legacy;
pub mod product_options;
mod proxy;
pub use proxy::spawn_proxy;
pub mod stock;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// Kinds of reference backend that can be started.
pub const KINDS: &[&str] = &[
    "product-options",
    "dia",
    "datawiz",
    "flexi",
    "stock",
    "legacy",
];

/// A loaded reference backend.
enum Api {
    ProductOptions(product_options::ProductOptionsApi),
    Dia(dia::DiaApi),
    Datawiz(datawiz::DatawizApi),
    Flexi(flexi::FlexiApi),
    Stock(stock::StockApi),
    Legacy(legacy::LegacyApi),
}

impl Api {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        match self {
            Api::ProductOptions(a) => a.handle(req).await,
            Api::Dia(a) => a.handle(req).await,
            Api::Datawiz(a) => a.handle(req).await,
            Api::Flexi(a) => a.handle(req).await,
            Api::Stock(a) => a.handle(req).await,
            Api::Legacy(a) => a.handle(req).await,
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
        // `data` is a fixture directory.
        "legacy" => legacy::LegacyApi::load(data).map(Api::Legacy),
        other => Err(format!(
            "unknown reference backend '{other}' (known: {})",
            KINDS.join(", ")
        )),
    }
}

/// Starts a reference backend of `kind` with seed data from `data` on `listener`; it runs as
/// long as the tokio runtime does.
pub fn spawn(kind: &str, data: &Path, listener: TcpListener) -> Result<SocketAddr, String> {
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let api = Arc::new(load(kind, data)?);
    tokio::spawn(serve(listener, api));
    Ok(addr)
}

/// HTTP/1.1 with keep-alive, one task per connection.
async fn serve(listener: TcpListener, api: Arc<Api>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let api = api.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let api = api.clone();
                async move { Ok::<_, std::convert::Infallible>(api.handle(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// One backend of the demo: which `[backends.NAME]` of the demo configuration it serves, its
/// kind and its seed data (from `demo/reference.toml`).
#[derive(Debug, Clone)]
pub struct DemoBackend {
    pub name: String,
    pub kind: String,
    pub data: std::path::PathBuf,
}

/// Reads the demo's list of reference backends; data paths are resolved against the file's
/// directory.
pub fn demo_backends(manifest: &Path) -> Result<Vec<DemoBackend>, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Manifest {
        backends: std::collections::BTreeMap<String, Entry>,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Entry {
        kind: String,
        data: std::path::PathBuf,
    }
    let text =
        std::fs::read_to_string(manifest).map_err(|e| format!("{}: {e}", manifest.display()))?;
    let m: Manifest = toml::from_str(&text).map_err(|e| format!("{}: {e}", manifest.display()))?;
    let dir = manifest.parent().unwrap_or(Path::new("."));
    Ok(m.backends
        .into_iter()
        .map(|(name, e)| DemoBackend {
            name,
            kind: e.kind,
            data: dir.join(e.data),
        })
        .collect())
}

/// Decodes `%XX` escapes (and `+` as a space when `plus` is set, as in query strings);
/// `None` when an escape is malformed or the result is not UTF-8.
pub(crate) fn percent_decode(s: &str, plus: bool) -> Option<String> {
    let b = s.as_bytes();
    let malformed = b.iter().enumerate().any(|(i, c)| {
        *c == b'%'
            && !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    });
    if malformed {
        return None;
    }
    let spaced;
    let s = if plus && s.contains('+') {
        spaced = s.replace('+', " ");
        spaced.as_str()
    } else {
        s
    };
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
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
