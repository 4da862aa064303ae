//! A legacy server stand-in: answers each request the way a recorded fixture directory says the
//! old server did. Given a directory in soapbridge's fixture format (`cases.toml` with
//! `[[case]] request, expected, service, status, content_type`, the request and answer files
//! beside it), a request whose path (with query) and body match a case's (whitespace between
//! elements aside) gets that case's answer and status. Several cases with the same request are
//! answered in turn. Anything else is a 500 SOAP fault naming what was asked.
//!
//! For migration tests: `soapbridge record` in front of it, `soapbridge replay` and shadow mode
//! against it, with answers edited to make a difference the comparison must find.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

#[derive(serde::Deserialize)]
struct Cases {
    case: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    request: Option<String>,
    expected: Option<String>,
    service: String,
    #[serde(default = "ok")]
    status: u16,
    content_type: Option<String>,
    #[serde(default)]
    method: Option<String>,
}

fn ok() -> u16 {
    200
}

struct Canned {
    method: String,
    service: String,
    body: String,
    answer: Bytes,
    status: StatusCode,
    content_type: String,
    used: bool,
}

/// The recorded answers of one fixture directory.
pub struct LegacyApi {
    canned: Mutex<Vec<Canned>>,
}

/// Text with the whitespace between markup removed and the ends trimmed, for matching (also
/// what the bridge's fixture tests compare XML answers by).
pub fn squeeze(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s.trim();
    while let Some(i) = rest.find('>') {
        out.push_str(&rest[..=i]);
        rest = &rest[i + 1..];
        let next = rest.find('<').unwrap_or(rest.len());
        if !rest[..next].trim().is_empty() {
            out.push_str(&rest[..next]);
        }
        rest = &rest[next..];
    }
    out.push_str(rest);
    out
}

impl LegacyApi {
    pub fn load(dir: &Path) -> Result<LegacyApi, String> {
        let read = |p: PathBuf| std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()));
        let text = String::from_utf8_lossy(&read(dir.join("cases.toml"))?).into_owned();
        let cases: Cases =
            toml::from_str(&text).map_err(|e| format!("{}/cases.toml: {e}", dir.display()))?;
        let mut canned = Vec::new();
        for c in cases.case {
            let expected = match (&c.expected, &c.request) {
                (Some(e), _) => e.clone(),
                (None, Some(r)) => {
                    let (stem, ext) = r.rsplit_once('.').unwrap_or((r, "xml"));
                    format!("{stem}.expected.{ext}")
                }
                (None, None) => {
                    return Err(format!(
                        "a case of {} has neither request nor expected",
                        c.service
                    ));
                }
            };
            let body = match &c.request {
                Some(r) => String::from_utf8_lossy(&read(dir.join(r))?).into_owned(),
                None => String::new(),
            };
            let content_type = c.content_type.clone().unwrap_or_else(|| {
                if expected.ends_with(".json") {
                    "application/json".into()
                } else {
                    "text/xml; charset=utf-8".into()
                }
            });
            canned.push(Canned {
                method: c
                    .method
                    .clone()
                    .unwrap_or_else(|| if body.is_empty() { "GET" } else { "POST" }.into()),
                service: c.service.clone(),
                body: squeeze(&body),
                answer: Bytes::from(read(dir.join(&expected))?),
                status: StatusCode::from_u16(c.status).map_err(|e| e.to_string())?,
                content_type,
                used: false,
            });
        }
        Ok(LegacyApi {
            canned: Mutex::new(canned),
        })
    }

    pub async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let method = req.method().to_string();
        let service = req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
        // A gzip body (PHP's SoapClient with `compression`), as PHP's SoapServer reads it.
        let gzip = req
            .headers()
            .get(http::header::CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        let bytes = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return fault(&format!("could not read the request: {e}")),
        };
        let body = if gzip {
            let mut text = String::new();
            if let Err(e) = std::io::Read::read_to_string(
                &mut flate2::read::GzDecoder::new(&bytes[..]),
                &mut text,
            ) {
                return fault(&format!("the gzip request could not be read: {e}"));
            }
            text
        } else {
            String::from_utf8_lossy(&bytes).into_owned()
        };
        let body = squeeze(&body);
        let mut canned = self.canned.lock().unwrap_or_else(|p| p.into_inner());
        let matching =
            |c: &&mut Canned| c.method == method && c.service == service && c.body == body;
        // The first unused matching case, else the last matching one again.
        let pick = match canned.iter_mut().filter(matching).find(|c| !c.used) {
            Some(c) => Some(c),
            None => canned.iter_mut().filter(matching).last(),
        };
        match pick {
            Some(c) => {
                c.used = true;
                Response::builder()
                    .status(c.status)
                    .header(http::header::CONTENT_TYPE, c.content_type.as_str())
                    .body(Full::new(c.answer.clone()))
                    .unwrap_or_default()
            }
            None => fault(&format!("no recorded answer for {method} {service}")),
        }
    }
}

fn fault(message: &str) -> Response<Full<Bytes>> {
    let escaped = message.replace('&', "&amp;").replace('<', "&lt;");
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body><soap:Fault><faultcode>soap:Server</faultcode><faultstring>{escaped}</faultstring></soap:Fault></soap:Body></soap:Envelope>"
    );
    Response::builder()
        .status(StatusCode::INTERNAL_SERVER_ERROR)
        .header(http::header::CONTENT_TYPE, "text/xml; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}
