//! `soapbridge replay`: sends recorded requests to the bridge (or any server) and compares
//! each answer with the recorded one by meaning (`protocol::compare`): a report per call, a
//! summary, and whether they all agree (the exit code for CI).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use super::Case;
use crate::protocol::compare::{self, Difference};

/// How to replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Passwords of the recorded users (recordings keep the name only).
    pub credentials: HashMap<String, String>,
    /// The apiKey and secret that sign again a request whose signature was redacted
    /// (`sign = md5(apiKey + secret + time)`, with the time of the replay).
    pub signer: Option<(String, String)>,
    /// What the comparison ignores: names whose values are not compared, and elements whose
    /// children may come in any order (from the configuration's WSDLs).
    pub rules: compare::Rules,
    pub timeout: Duration,
    pub max_body: usize,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            credentials: HashMap::new(),
            signer: None,
            rules: compare::Rules::default(),
            timeout: Duration::from_secs(60),
            max_body: 64 * 1024 * 1024,
        }
    }
}

/// What one replayed call gave.
#[derive(Debug)]
pub struct CallReport {
    /// The case's request (or answer) file.
    pub name: String,
    pub method: String,
    pub service: String,
    pub expected_status: u16,
    pub status: Option<u16>,
    pub differences: Vec<Difference>,
    /// Why the call could not be made or compared.
    pub error: Option<String>,
}

impl CallReport {
    /// Whether the bridge answered as the recording says (ignored differences aside).
    pub fn same(&self) -> bool {
        self.error.is_none()
            && self.status == Some(self.expected_status)
            && !self.differences.iter().any(Difference::counts)
    }
}

/// Every call of a replay.
#[derive(Debug, Default)]
pub struct Report {
    pub calls: Vec<CallReport>,
}

impl Report {
    pub fn differing(&self) -> usize {
        self.calls.iter().filter(|c| !c.same()).count()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ignored = 0;
        for c in &self.calls {
            let mark = if c.same() { "same" } else { "DIFF" };
            writeln!(f, "{mark}  {} {} {}", c.name, c.method, c.service)?;
            if let Some(e) = &c.error {
                writeln!(f, "      error: {e}")?;
            }
            if let Some(s) = c.status
                && s != c.expected_status
            {
                writeln!(
                    f,
                    "      HTTP status: expected {}, got {s}",
                    c.expected_status
                )?;
            }
            for d in &c.differences {
                if !d.counts() {
                    ignored += 1;
                }
                writeln!(f, "      {} {d}", if d.counts() { "-" } else { "~" })?;
            }
        }
        let n = self.calls.len();
        writeln!(
            f,
            "{n} call(s): {} the same, {} different; {ignored} difference(s) in times ignored",
            n - self.differing(),
            self.differing()
        )
    }
}

/// Replays the cases of `dir` against `base_url` (`http://127.0.0.1:8080`), in order.
pub async fn replay(base_url: &str, dir: &Path, opts: &ReplayOptions) -> Result<Report, String> {
    let cases = super::read_cases(dir)?;
    let client = super::http_client()?;
    let base = base_url.trim_end_matches('/');
    let mut report = Report::default();
    for case in &cases {
        let name = case
            .request
            .clone()
            .or_else(|| case.expected_file())
            .unwrap_or_else(|| case.service.clone());
        let mut call = CallReport {
            name,
            method: case.method.clone(),
            service: case.service.clone(),
            expected_status: case.status,
            status: None,
            differences: Vec::new(),
            error: None,
        };
        match one(&client, base, dir, case, opts).await {
            Ok((status, answer, expected)) => {
                call.status = Some(status);
                call.differences = compare::compare(&expected, &answer, &opts.rules);
            }
            Err(e) => call.error = Some(e),
        }
        report.calls.push(call);
    }
    Ok(report)
}

/// Sends one case; its status, answer and the recorded answer.
async fn one(
    client: &super::HttpClient,
    base: &str,
    dir: &Path,
    case: &Case,
    opts: &ReplayOptions,
) -> Result<(u16, String, String), String> {
    let read = |f: &str| {
        std::fs::read(dir.join(f))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e| format!("{}: {e}", dir.join(f).display()))
    };
    let expected = match case.expected_file() {
        Some(f) => read(&f)?,
        None => return Err("the case names no answer file".into()),
    };
    let mut body = match &case.request {
        Some(f) => read(f)?,
        None => String::new(),
    };
    if crate::protocol::soap::element_text(&body, "sign") == Some("***") {
        let (key, secret) = opts.signer.as_ref().ok_or(
            "the request was recorded with its signature redacted: give --api-key (and the secret in SOAPBRIDGE_SECRET) to sign it again",
        )?;
        let time = chrono::Utc::now().timestamp_millis().to_string();
        let sign = crate::profile::signed::sign(key, secret, time.parse().unwrap_or_default());
        body = crate::protocol::soap::fill_elements(
            &body,
            &[("apiKey", key), ("sign", &sign), ("time", &time)],
        )?;
    }
    let mut req = Request::builder()
        .method(case.method.as_str())
        .uri(format!("{base}{}", case.service));
    if !case.content_type.is_empty() {
        req = req.header(http::header::CONTENT_TYPE, &case.content_type);
    }
    if let Some(a) = &case.soap_action {
        req = req.header("soapaction", a);
    }
    if !case.user.is_empty() {
        let (user, password) = match case.user.split_once(':') {
            Some((u, p)) => (u.to_string(), p.to_string()),
            None => {
                let p = opts.credentials.get(&case.user).ok_or_else(|| {
                    format!(
                        "no password for the recorded user '{}': give --credentials {}:PASSWORD",
                        case.user, case.user
                    )
                })?;
                (case.user.clone(), p.clone())
            }
        };
        req = req.header(
            http::header::AUTHORIZATION,
            crate::profile::basic_header(&user, &password),
        );
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("cannot make the request: {e}"))?;
    let resp = tokio::time::timeout(opts.timeout, client.request(req))
        .await
        .map_err(|_| format!("no answer within {} s", opts.timeout.as_secs()))?
        .map_err(|e| format!("cannot reach {base}: {e}"))?;
    let status = resp.status().as_u16();
    let answer = crate::server::read_whole(resp.into_body(), opts.max_body, None)
        .await
        .map_err(|e| format!("the answer could not be read whole: {e}"))?;
    Ok((
        status,
        String::from_utf8_lossy(&answer).into_owned(),
        expected,
    ))
}
