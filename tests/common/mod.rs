//! Black-box test harness: starts the bridge (and its bundled reference backend) on
//! 127.0.0.1:0 from a configuration, and talks to it over real HTTP.
#![allow(dead_code, unreachable_pub)] // shared by test crates that each use part of it

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use soapbridge::app::App;
use soapbridge::config::Config;
use tokio::sync::oneshot;

pub const OPTION_PATH: &str = "/listingapi/ws/IndividualProductOptionService";
pub const PAYMENT_PATH: &str = "/listingapi/ws/IndividualProductPaymentService";
pub const OPTION_NS: &str = "https://product.option.individual.ws.listingapi.gg.com";

/// The strict account of the demo configuration (5 minute window, reused signatures refused).
pub const KEY: &str = "NjgEHGeJc6cFqbw6FSUP8NpH3pUhV7ss";
pub const SECRET: &str = "demo-secret-change-me";
pub const USER: &str = "demo:demo-role-pass";
/// The fixture account (any time, reuse allowed).
pub const FIXTURE_USER: &str = "fixture:fixture-pass";

pub struct Bridge {
    pub addr: SocketAddr,
    /// The running bridge (tests reload it).
    pub app: Arc<App>,
    /// The bridge's clock: tests move it forward instead of sleeping.
    pub clock: soapbridge::clock::Clock,
    shutdown: Option<oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<()>>,
}

impl Bridge {
    /// The demo configuration as shipped.
    pub async fn demo() -> Bridge {
        let text = std::fs::read_to_string("demo/soapbridge.toml").expect("demo config");
        Bridge::with_config(&text).await
    }

    /// A configuration text, resolved as if it were a file in `demo/` (so `../wsdl/...` works).
    /// Backends still at the demo's reference addresses get a reference backend of their own,
    /// started here on a free port (as `demo/reference.toml` says).
    pub async fn with_config(text: &str) -> Bridge {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut cfg = Config::from_toml(text, Path::new("demo/test.toml")).expect("valid config");
        start_reference_backends(&mut cfg).await;
        cfg.raw.server.listen = Some(addr);
        cfg.raw.server.public_url = None;
        // Each bridge gets a store of its own (a fresh SQLite file), unless the test chose one.
        let fresh =
            soapbridge::config::SecretSource::Inline(format!("sqlite:{}", temp_db().display()));
        match &mut cfg.raw.store {
            Some(store) if matches!(&store.url, soapbridge::config::SecretSource::Inline(u) if u == "sqlite:../var/soapbridge.db") =>
            {
                store.url = fresh;
            }
            Some(_) => {}
            None => {
                cfg.raw.store = Some(soapbridge::config::StoreConfig {
                    url: fresh,
                    schema: None,
                })
            }
        }
        let plan = cfg
            .compile()
            .unwrap_or_else(|e| panic!("the configuration compiles:\n{e}"));
        let clock = soapbridge::clock::Clock::adjustable();
        let app = Arc::new(
            App::start_with_clock(plan, clock.clone())
                .await
                .expect("the bridge starts"),
        );
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(soapbridge::server::run(listener, app.clone(), async {
            let _ = rx.await;
        }));
        Bridge {
            addr,
            app,
            clock,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Asks the server to stop; returns the task to await.
    pub fn shutdown(&mut self) -> tokio::task::JoinHandle<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.take().expect("running")
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Starts a reference backend for each backend of `cfg` that still has the demo's address,
/// and points the backend at it.
async fn start_reference_backends(cfg: &mut Config) {
    let demo = Config::from_toml(
        &std::fs::read_to_string("demo/soapbridge.toml").expect("demo config"),
        Path::new("demo/soapbridge.toml"),
    )
    .expect("the demo config is valid");
    for b in soapbridge_reference::demo_backends(Path::new("demo/reference.toml")).unwrap() {
        let (Some(ours), Some(theirs)) = (
            cfg.raw.backends.get_mut(&b.name),
            demo.raw.backends.get(&b.name),
        ) else {
            continue;
        };
        if ours.get_ref().base_url != theirs.get_ref().base_url {
            continue;
        }
        ours.get_mut().base_url = reference(&b.kind, &b.data.display().to_string()).await;
    }
}

/// Starts a reference backend of `kind` with seed data from `data` on a free port; its URL.
pub async fn reference(kind: &str, data: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = soapbridge_reference::spawn(kind, Path::new(data), listener).unwrap();
    format!("http://{addr}")
}

/// A configuration text with `[backends.<name>]`'s `base_url` set to `url`.
pub fn with_backend_url(text: &str, name: &str, url: &str) -> String {
    let header = format!("[backends.{name}]\n");
    let start = text
        .find(&header)
        .unwrap_or_else(|| panic!("no [backends.{name}]"))
        + header.len();
    let line = start
        + text[start..]
            .find("base_url = ")
            .unwrap_or_else(|| panic!("[backends.{name}] has no base_url"));
    let end = line + text[line..].find('\n').unwrap_or(text.len() - line);
    format!("{}base_url = \"{url}\"{}", &text[..line], &text[end..])
}

/// The demo configuration with `[backends.<name>]` at `url`.
pub fn demo_with_backend_url(name: &str, url: &str) -> String {
    with_backend_url(
        &std::fs::read_to_string("demo/soapbridge.toml").unwrap(),
        name,
        url,
    )
}

/// A fresh, unique SQLite file path for one bridge's store.
pub fn temp_db() -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = std::env::temp_dir().join("soapbridge-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!(
        "store-{}-{n}-{}.db",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Text of the first element with this local name (any prefix).
    pub fn text_of(&self, local: &str) -> Option<String> {
        text_of(&self.body, local)
    }

    /// The call succeeded: `ackCode=success`.
    pub fn assert_success(&self) {
        assert_eq!(
            self.text_of("ackCode").as_deref(),
            Some("success"),
            "{}",
            self.body
        );
    }

    pub fn assert_has(&self, fragment: &str) {
        assert!(
            self.body.contains(fragment),
            "expected {fragment:?} in:\n{}",
            self.body
        );
    }
}

pub fn text_of(xml: &str, local: &str) -> Option<String> {
    for open in [format!("<{local}>"), format!(":{local}>")] {
        if let Some(i) = xml.find(&open) {
            let start = i + open.len();
            let end = xml[start..].find("</")? + start;
            return Some(xml[start..end].to_string());
        }
    }
    None
}

/// `bytes` gzip-compressed, as PHP's SoapClient sends a body with `compression`.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(5));
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

pub fn basic(user: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user)
    )
}

pub async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut b = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = tokio::time::timeout(
        Duration::from_secs(30),
        client.request(b.body(Full::new(body.into())).unwrap()),
    )
    .await
    .expect("the bridge answers within 30 s")
    .expect("request succeeds");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).expect("UTF-8 reply"),
    }
}

/// POSTs a SOAP 1.1 envelope with HTTP Basic credentials `user` ("name:password").
pub async fn soap(url: &str, user: &str, envelope: impl Into<Bytes>) -> Reply {
    let auth = basic(user);
    request(
        "POST",
        url,
        &[
            ("content-type", "text/xml; charset=utf-8"),
            ("soapaction", "\"\""),
            ("authorization", &auth),
        ],
        envelope,
    )
    .await
}

/// POSTs a SOAP 1.2 envelope.
pub async fn soap12(url: &str, user: &str, envelope: impl Into<Bytes>) -> Reply {
    let auth = basic(user);
    request(
        "POST",
        url,
        &[
            (
                "content-type",
                "application/soap+xml; charset=utf-8; action=\"\"",
            ),
            ("authorization", &auth),
        ],
        envelope,
    )
    .await
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Replaces the contents of `<apiKey>`, `<sign>` and `<time>` in an envelope.
pub fn signed(envelope: &str, key: &str, secret: &str, time: i64) -> String {
    let sign = soapbridge::sign(key, secret, time);
    let time = time.to_string();
    soapbridge::protocol::soap::fill_elements(
        envelope,
        &[("apiKey", key), ("sign", &sign), ("time", &time)],
    )
    .unwrap()
}

/// A fixture file's text.
pub fn fixture(rel: &str) -> String {
    std::fs::read_to_string(Path::new("fixtures/soap").join(rel))
        .unwrap_or_else(|e| panic!("fixtures/soap/{rel}: {e}"))
}

/// One case of a `fixtures/<door>/cases.toml`: a request file sent to a path, and the
/// expected answer beside it (`x.xml` -> `x.expected.xml`).
#[derive(serde::Deserialize)]
pub struct Case {
    /// The body to send (a file beside cases.toml); none for GET and DELETE.
    #[serde(default)]
    pub request: Option<String>,
    /// The expected answer's file; by default the request's with `.expected` before its
    /// extension.
    #[serde(default)]
    pub expected: Option<String>,
    /// URL path (and query) the request goes to.
    pub service: String,
    #[serde(default = "default_user")]
    pub user: String,
    #[serde(default = "default_ct")]
    pub content_type: String,
    #[serde(default = "default_status")]
    pub status: u16,
    #[serde(default = "default_method")]
    pub method: String,
}

#[derive(serde::Deserialize)]
struct Cases {
    case: Vec<Case>,
}

fn default_user() -> String {
    FIXTURE_USER.into()
}
fn default_ct() -> String {
    "text/xml; charset=utf-8".into()
}
fn default_status() -> u16 {
    200
}
fn default_method() -> String {
    "POST".into()
}

/// The expected-answer file of a request file.
pub fn expected_path(dir: &str, request: &str) -> String {
    let (stem, ext) = request.rsplit_once('.').unwrap_or((request, "xml"));
    format!("{dir}/{stem}.expected.{ext}")
}

/// Replays every case of `<dir>/cases.toml`, in order, against `bridge` and compares each
/// answer (status and body) with its expected file. `volatile` names fields whose values
/// change from run to run; in expected files they are written `{{*}}`.
///
/// `SOAPBRIDGE_BLESS=1` writes missing expected files from the actual answers (review them
/// before committing).
pub async fn replay(dir: &str, bridge: &Bridge, volatile: &[&str]) {
    let cases: Cases =
        toml::from_str(&std::fs::read_to_string(format!("{dir}/cases.toml")).expect("cases.toml"))
            .unwrap_or_else(|e| panic!("{dir}/cases.toml: {e}"));
    let bless = std::env::var("SOAPBRIDGE_BLESS").is_ok();
    let mut failures = Vec::new();
    for c in &cases.case {
        let auth = basic(&c.user);
        let mut headers = vec![("content-type", c.content_type.as_str())];
        if !c.user.is_empty() {
            headers.push(("authorization", auth.as_str()));
        }
        if c.content_type.starts_with("text/xml") && !c.service.contains("RPC") {
            headers.push(("soapaction", "\"\""));
        }
        let body = match &c.request {
            Some(r) => {
                let request_path = format!("{dir}/{r}");
                std::fs::read(&request_path).unwrap_or_else(|e| panic!("{request_path}: {e}"))
            }
            None => Vec::new(),
        };
        let name = c
            .request
            .as_deref()
            .or(c.expected.as_deref())
            .unwrap_or("?")
            .to_string();
        let reply = request(&c.method, &bridge.url(&c.service), &headers, body).await;
        let expected_path = match &c.expected {
            Some(e) => format!("{dir}/{e}"),
            None => expected_path(
                dir,
                c.request.as_deref().expect("a request or an expected file"),
            ),
        };
        let expected = match std::fs::read_to_string(&expected_path) {
            Ok(e) => e,
            Err(_) if bless => {
                std::fs::write(&expected_path, pretty(&mask(&reply.body, volatile))).unwrap();
                continue;
            }
            Err(e) => panic!("{expected_path}: {e}"),
        };
        if reply.status != c.status {
            failures.push(format!(
                "{name}: HTTP {} (expected {})\n{}",
                reply.status, c.status, reply.body
            ));
            continue;
        }
        if !matches_pattern(&normalize(&expected), &normalize(&reply.body)) {
            failures.push(format!(
                "{name}: answer differs from {expected_path}\n--- expected\n{}\n--- actual\n{}",
                normalize(&expected),
                normalize(&reply.body)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures in {dir} failed:\n\n{}",
        failures.len(),
        cases.case.len(),
        failures.join("\n\n")
    );
}

/// Indents XML one level per element, leaving elements that hold only text on one line
/// (for writing readable expected files; [`normalize`] undoes it). JSON is pretty-printed.
pub fn pretty(text: &str) -> String {
    if serde_json::from_str::<serde_json::Value>(text).is_ok() {
        return pretty_json(&minify_json(text)) + "\n";
    }
    let flat = normalize_xml(text);
    let mut out = String::new();
    let mut depth = 0usize;
    let mut rest = flat.as_str();
    let mut last_was_open = false;
    while let Some(lt) = rest.find('<') {
        let text_part = &rest[..lt];
        let gt = rest[lt..].find('>').map_or(rest.len(), |g| lt + g + 1);
        let tag = &rest[lt..gt];
        let closing = tag.starts_with("</");
        let self_closing = tag.ends_with("/>") || tag.starts_with("<?") || tag.starts_with("<!");
        if !text_part.is_empty() {
            out.push_str(text_part);
        }
        if closing {
            depth = depth.saturating_sub(1);
            if !last_was_open && text_part.is_empty() {
                out.push('\n');
                out.push_str(&"  ".repeat(depth));
            }
            out.push_str(tag);
            last_was_open = false;
        } else {
            if !out.is_empty() {
                out.push('\n');
                out.push_str(&"  ".repeat(depth));
            }
            out.push_str(tag);
            last_was_open = !self_closing;
            if !self_closing {
                depth += 1;
            }
        }
        rest = &rest[gt..];
    }
    out.push_str(rest);
    out.push('\n');
    out
}

/// An envelope for `op` on the option service with the given inner parameters (between
/// `time` and `lang`), signed now by the strict account.
pub fn envelope(op: &str, inner: &str, lang: &str, time: i64) -> String {
    let body = format!(
        "<?xml version=\"1.0\"?><soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:prod=\"{OPTION_NS}\"><soapenv:Body><prod:{op}><apiKey>x</apiKey><sign>x</sign><time>0</time>{inner}<lang>{lang}</lang></prod:{op}></soapenv:Body></soapenv:Envelope>"
    );
    signed(&body, KEY, SECRET, time)
}

/// Removes whitespace-only text between tags so that indented and compact XML compare equal;
/// JSON loses its whitespace outside strings (member order is kept).
pub fn normalize(text: &str) -> String {
    let t = text.trim_start();
    if t.starts_with('{') || t.starts_with('[') {
        return minify_json(t);
    }
    normalize_xml(text)
}

fn minify_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

fn normalize_xml(xml: &str) -> String {
    soapbridge_reference::legacy::squeeze(xml)
}

/// Matches `actual` against `expected`, where `{{*}}` in expected matches any text without
/// '<' or '"'.
pub fn matches_pattern(expected: &str, actual: &str) -> bool {
    let parts: Vec<&str> = expected.split("{{*}}").collect();
    let mut pos = 0;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            if !actual.starts_with(part) {
                return false;
            }
            pos = part.len();
            continue;
        }
        // The wildcard spans up to the next '<' or '"'.
        let wild_end = actual[pos..]
            .find(['<', '"'])
            .map_or(actual.len(), |j| pos + j);
        let hay = &actual[pos..];
        let Some(j) = hay.find(part) else {
            return false;
        };
        if pos + j > wild_end {
            return false;
        }
        pos += j + part.len();
    }
    pos == actual.len()
}

/// Indents minified JSON, keeping member order.
fn pretty_json(min: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = min.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                if matches!(chars.peek(), Some('}' | ']')) {
                    out.push(chars.next().unwrap());
                } else {
                    depth += 1;
                    out.push('\n');
                    out.push_str(&"  ".repeat(depth));
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                out.push('\n');
                out.push_str(&"  ".repeat(depth));
                out.push(c);
            }
            ',' => {
                out.push(',');
                out.push('\n');
                out.push_str(&"  ".repeat(depth));
            }
            ':' => out.push_str(": "),
            _ => out.push(c),
        }
    }
    out
}

/// Replaces the text of volatile elements (or XML-RPC struct members, or JSON string
/// members) with `{{*}}` (for writing expected files).
pub fn mask(xml: &str, names: &[&str]) -> String {
    let mut out = xml.to_string();
    for n in names {
        for open in [
            format!("<name>{n}</name><value><string>"),
            format!("<name>{n}</name><value><dateTime.iso8601>"),
            format!("\"{n}\":\""),
        ] {
            let mut from = 0;
            while let Some(i) = out[from..].find(&open) {
                let start = from + i + open.len();
                let end = start + out[start..].find(['<', '"']).unwrap();
                out.replace_range(start..end, "{{*}}");
                from = start + 5;
            }
        }
        let open = format!("<{n}>");
        let mut from = 0;
        while let Some(i) = out[from..].find(&open) {
            let start = from + i + open.len();
            let end = start + out[start..].find('<').unwrap();
            out.replace_range(start..end, "{{*}}");
            from = start + 5;
        }
    }
    out
}

/// The demo configuration with its store on PostgreSQL, in `schema` (for tests of several
/// instances sharing one store).
pub fn demo_on_postgres(pg: &str, schema: &str) -> String {
    std::fs::read_to_string("demo/soapbridge.toml")
        .unwrap()
        .replace(
            "url = \"sqlite:../var/soapbridge.db\"",
            &format!("url = \"{pg}\"\nschema = \"{schema}\""),
        )
}

/// The PostgreSQL server the tests use: `SOAPBRIDGE_TEST_PG`, or the local one
/// (`postgres://postgres@127.0.0.1:5432/test`). Panics, saying what to do, when it cannot be
/// reached: these tests are required, never skipped.
pub async fn pg_url() -> String {
    let url = std::env::var("SOAPBRIDGE_TEST_PG")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into());
    let host = url
        .rsplit_once('@')
        .map_or(url.as_str(), |(_, h)| h)
        .split('/')
        .next()
        .unwrap_or("127.0.0.1:5432")
        .to_string();
    let addr = if host.contains(':') {
        host
    } else {
        format!("{host}:5432")
    };
    let reachable = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(addr.clone()),
    )
    .await
    .is_ok_and(|c| c.is_ok());
    assert!(
        reachable,
        "PostgreSQL is required for this test and is not reachable at {addr}: start it \
         (.ci/run does) or point SOAPBRIDGE_TEST_PG at one"
    );
    url
}

/// A backend of a test's own on 127.0.0.1: `answer` gets each request (its body read) and
/// returns the status and JSON text to send back. Returns the backend's base URL.
pub async fn json_backend<F, Fut>(answer: F) -> String
where
    F: Fn(http::request::Parts, Bytes) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = (u16, String)> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(soapbridge::server::serve(
        listener,
        move |req: http::Request<soapbridge::server::Body>| {
            let answer = answer.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = body.collect().await.unwrap().to_bytes();
                let (status, text) = answer(parts, body).await;
                http::Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(text)))
                    .unwrap()
            }
        },
        Default::default(),
        std::future::pending(),
    ));
    format!("http://{addr}")
}

/// A product-options answer (as the backend's `option-features` gives it) of `n` products;
/// product `bad` (if any) has a title that no `xsd:string` can carry.
pub fn option_features(n: usize, bad: Option<usize>) -> String {
    let products: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let title = if Some(i) == bad {
                serde_json::json!({"not": "a title"})
            } else {
                serde_json::Value::from(format!("Ürün {i} <&>"))
            };
            serde_json::json!({
                "product_id": 1000 + i,
                "title": title,
                "options": [
                    {"option_id": 1, "name": "Kalın yazı", "duration_days": 7, "price": 0.01,
                     "paid": false, "expires_at": null},
                    {"option_id": 2, "name": "Vitrin", "duration_days": 30, "price": 12.5,
                     "paid": true, "expires_at": "2027-01-31T00:00:00+03:00"}
                ]
            })
        })
        .collect();
    serde_json::json!({"product_count": n, "products": products}).to_string()
}

/// A bridge on the demo configuration whose product-options backend answers each call with
/// the next of `answers`. A product without a title is given the call's first product id (the
/// response mapping reads the call's parameters too).
pub async fn bridge_answering(answers: Vec<String>) -> Bridge {
    bridge_answering_in(answers, &[]).await
}

/// [`bridge_answering`] with streaming off: every answer is written whole before it is sent.
pub async fn bridge_answering_whole(answers: Vec<String>) -> Bridge {
    let off = (
        "stream_answers_from_bytes = 524288",
        "stream_answers_from_bytes = 0",
    );
    bridge_answering_in(answers, &[off]).await
}

/// [`bridge_answering`] on the demo configuration with each `(from, to)` of `edits` replaced.
pub async fn bridge_answering_in(answers: Vec<String>, edits: &[(&str, &str)]) -> Bridge {
    let answers = std::sync::Arc::new(answers);
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let url = json_backend(move |_, _| {
        let (answers, calls) = (answers.clone(), calls.clone());
        async move {
            let i = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            (200, answers[i.min(answers.len() - 1)].clone())
        }
    })
    .await;
    let mut config = demo_with_backend_url("options", &url).replace(
        r#"productTitle = "@.title""#,
        r#"productTitle = { "$first" = ["@.title", "$input.productIds.item[0]"] }"#,
    );
    for (from, to) in edits {
        assert!(
            config.contains(from),
            "the demo configuration has no {from}"
        );
        config = config.replace(from, to);
    }
    Bridge::with_config(&config).await
}

/// How [`raw_post`] reads the answer: up to `limit` bytes (or until the bridge closes the
/// connection), reading nothing more for `pause` once the first bytes came.
#[derive(Clone, Copy)]
pub struct RawRead {
    pub limit: usize,
    pub pause: Duration,
}

/// POSTs `body` to `path` on a connection of its own, in the HTTP version `version`
/// ("HTTP/1.0"), with HTTP Basic `user`, the `headers` and a receive buffer of 16 KiB, and
/// returns the bytes read off the connection: what a client that does not trust the framing
/// would see.
pub async fn raw_post(
    b: &Bridge,
    path: &str,
    version: &str,
    user: &str,
    headers: &[(&str, &str)],
    body: &str,
    read: RawRead,
) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let mut s = socket.connect(b.addr).await.unwrap();
    let mut head = format!("POST {path} {version}\r\nHost: {}\r\n", b.addr);
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Authorization: {}\r\nContent-Length: {}\r\n\r\n",
        basic(user),
        body.len()
    ));
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while got.len() < read.limit {
        match tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                if got.is_empty() {
                    tokio::time::sleep(read.pause).await;
                }
                got.extend_from_slice(&buf[..n]);
            }
            Err(_) => panic!("the bridge neither ended nor closed the answer within 30 s"),
        }
    }
    got
}

/// Waits (up to 5 s: the count is made by the writer's thread, once it is done) until the
/// bridge's metrics count `n` streamed answers that ended as `end`.
pub async fn assert_streamed(b: &Bridge, end: &str, n: f64) {
    let series = format!("soapbridge_streamed_answers_total{{end=\"{end}\"}} ");
    let mut seen = 0.0;
    for _ in 0..50 {
        let m = request("GET", &b.url("/metrics"), &[], "").await;
        seen = m
            .body
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .map_or(0.0, |v| v.trim().parse().unwrap());
        if seen == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{series}: {seen}, expected {n}");
}

/// The value of the metric line that starts with `prefix` (labels included).
pub fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
