//! `soapbridge record`: a recording pass-through in front of a legacy server. Every request is
//! forwarded as it is (method, path, query, headers, body) and the legacy server's answer
//! returned as it is; the pair is written to a fixture directory, redacted, as the next case
//! of its `cases.toml`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tokio::net::TcpListener;

use super::{Case, HttpClient, hop_by_hop};
use crate::protocol::compare;
use crate::server::{Body, Coding, OutBody, Resp, ServeOptions, read_whole};

/// Why recording could not start.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{0}")]
    Client(String),
    #[error("the upstream URL {0:?} is not http(s)://host[:port][/path]")]
    Upstream(String),
    #[error("cannot write fixtures to {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What the recorder needs for each call.
struct Recorder {
    upstream: String,
    dir: PathBuf,
    client: HttpClient,
    max_body: usize,
    /// The next case's number (files are `NNNN-name.ext`).
    next: AtomicU64,
    /// One writer of `cases.toml` at a time.
    writing: tokio::sync::Mutex<()>,
}

/// Serves the recording pass-through to `upstream` on `listener` until `shutdown`, writing
/// each call to `dir` (created if needed; cases are appended after any already there).
pub async fn record(
    listener: TcpListener,
    upstream: &str,
    dir: &Path,
    max_body: usize,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), RecordError> {
    let upstream = upstream.trim_end_matches('/').to_string();
    if !(upstream.starts_with("http://") || upstream.starts_with("https://"))
        || upstream.parse::<http::Uri>().is_err()
    {
        return Err(RecordError::Upstream(upstream));
    }
    let write_err = |source| RecordError::Write {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(write_err)?;
    let existing = super::read_cases(dir).map(|c| c.len()).unwrap_or(0);
    let recorder = Arc::new(Recorder {
        upstream,
        dir: dir.to_path_buf(),
        client: super::http_client().map_err(RecordError::Client)?,
        max_body,
        next: AtomicU64::new(existing as u64 + 1),
        writing: tokio::sync::Mutex::new(()),
    });
    let handler = move |req: Request<Body>| {
        let r = recorder.clone();
        async move { r.pass(req).await }
    };
    crate::server::serve(listener, handler, ServeOptions::default(), shutdown).await;
    Ok(())
}

fn answer(status: StatusCode, text: String) -> Resp {
    crate::server::text_response(status, "text/plain; charset=utf-8", text)
}

impl Recorder {
    async fn pass(&self, req: Request<Body>) -> Resp {
        let (parts, body) = req.into_parts();
        let body = match read_whole(body, self.max_body, None).await {
            Ok(b) => b,
            Err(e) => {
                return answer(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("soapbridge record: the request body could not be read whole: {e}\n"),
                );
            }
        };
        let target = format!(
            "{}{}",
            self.upstream,
            parts.uri.path_and_query().map_or("/", |p| p.as_str())
        );
        let mut out = Request::builder().method(parts.method.clone()).uri(&target);
        for (k, v) in &parts.headers {
            // Not `Accept-Encoding`: the answer is recorded as text (an answer without a
            // content coding is what every client accepts).
            if !hop_by_hop(k) && k != http::header::ACCEPT_ENCODING {
                out = out.header(k, v);
            }
        }
        let Ok(out) = out.body(Full::new(body.clone())) else {
            return answer(
                StatusCode::BAD_REQUEST,
                "soapbridge record: bad request\n".into(),
            );
        };
        let resp = match tokio::time::timeout(
            std::time::Duration::from_secs(120),
            self.client.request(out),
        )
        .await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                return answer(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "soapbridge record: the legacy server at {} cannot be reached: {e}\n",
                        self.upstream
                    ),
                );
            }
            Err(_) => {
                return answer(
                    StatusCode::GATEWAY_TIMEOUT,
                    "soapbridge record: the legacy server did not answer within 120 s\n".into(),
                );
            }
        };
        let (rparts, rbody) = resp.into_parts();
        let rbody = match read_whole(rbody, self.max_body, None).await {
            Ok(b) => b,
            Err(e) => {
                return answer(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "soapbridge record: the legacy server's answer could not be read whole: {e}\n"
                    ),
                );
            }
        };
        // A compressed request (PHP's SoapClient with `compression`) went on as it came; it is
        // recorded as the text it decodes to, which the replay sends plain.
        let recorded = Coding::of(parts.headers.get(http::header::CONTENT_ENCODING))
            .map_err(|coding| {
                format!("the request's Content-Encoding {coding:?} is not one the bridge reads")
            })
            .and_then(|c| match c.decode(body.clone(), self.max_body) {
                Ok(Some(text)) => Ok(text),
                Ok(None) => Err(format!(
                    "the request decompresses to more than {} bytes",
                    self.max_body
                )),
                Err(e) => Err(format!(
                    "the request's body is not what its Content-Encoding says: {e}"
                )),
            });
        let written = match recorded {
            Ok(text) => self.write(&parts, &text, rparts.status, &rbody).await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            // The client still gets its answer; the operator learns what was not recorded.
            tracing::error!(error = %e, path = parts.uri.path(), "a call could not be recorded");
        }
        let mut back = Response::builder().status(rparts.status);
        for (k, v) in &rparts.headers {
            if !hop_by_hop(k) {
                back = back.header(k, v);
            }
        }
        back.body(OutBody::from(rbody)).unwrap_or_default()
    }

    /// Writes one call: its request and answer files (redacted) and its case.
    async fn write(
        &self,
        req: &http::request::Parts,
        body: &Bytes,
        status: StatusCode,
        answer: &Bytes,
    ) -> Result<(), String> {
        let text = String::from_utf8_lossy(body);
        let answer_text = String::from_utf8_lossy(answer);
        let request = compare::redact(&text).map_err(|e| format!("request: {e}"))?;
        let answer = compare::redact(&answer_text).map_err(|e| format!("answer: {e}"))?;
        let name = compare::call_name(&text).unwrap_or_else(|| {
            req.uri
                .path()
                .rsplit('/')
                .find(|s| !s.is_empty())
                .unwrap_or("root")
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                .collect()
        });
        let ext = |t: &str| {
            if t.trim_start().starts_with(['{', '[']) {
                "json"
            } else {
                "xml"
            }
        };
        let _guard = self.writing.lock().await;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let stem = format!(
            "{n:04}-{}",
            name.trim_end_matches(".json").trim_end_matches(".xml")
        );
        let request_file = (!body.is_empty()).then(|| format!("{stem}.{}", ext(&text)));
        let expected_file = format!("{stem}.expected.{}", ext(&answer_text));
        let user = req
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| crate::profile::basic_user(v.as_bytes()))
            .unwrap_or_default();
        let case = Case {
            request: request_file.clone(),
            expected: Some(expected_file.clone()),
            service: req
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string(),
            user,
            content_type: req
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
            status: status.as_u16(),
            method: req.method.to_string(),
            soap_action: req
                .headers
                .get("soapaction")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        };
        let entry = toml::to_string(&case).map_err(|e| e.to_string())?;
        let dir = self.dir.clone();
        let stamp = chrono::Utc::now().to_rfc3339();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write as _;
            if let Some(f) = &request_file {
                std::fs::write(dir.join(f), request)?;
            }
            std::fs::write(dir.join(&expected_file), answer)?;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("cases.toml"))?;
            f.write_all(format!("\n# recorded {stamp}\n[[case]]\n{entry}").as_bytes())?;
            f.sync_data()
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        tracing::info!(case = %stem, status = status.as_u16(), "recorded");
        Ok(())
    }
}
