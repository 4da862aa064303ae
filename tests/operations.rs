//! What an operator sees: `/metrics`, `/healthz`, `/readyz`, request ids that go from the client
//! to the backend and back, configuration reloads under load, per-backend resilience, and the
//! operator page.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // a test may unwrap and print

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;

async fn metrics(b: &Bridge) -> String {
    let r = request("GET", &b.url("/metrics"), &[], "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        r.headers
    );
    r.body
}

fn option_call() -> String {
    fixture("option/calculateOptionsPrice.xml")
}

#[tokio::test]
async fn calls_are_counted_by_door_service_operation_and_outcome() {
    let b = Bridge::demo().await;
    for _ in 0..3 {
        soap(&b.url(OPTION_PATH), FIXTURE_USER, option_call())
            .await
            .assert_success();
    }
    // A forged signature: a failure answer, counted by its code and as a signature refusal.
    let forged = option_call().replace("<sign>", "<sign>0");
    let r = soap(&b.url(OPTION_PATH), FIXTURE_USER, forged).await;
    assert_eq!(
        r.text_of("ackCode").as_deref(),
        Some("failure"),
        "{}",
        r.body
    );
    // Not a SOAP envelope at all: a fault.
    let r = soap(&b.url(OPTION_PATH), FIXTURE_USER, "<nope/>").await;
    assert_eq!(r.status, 500, "{}", r.body);

    let m = metrics(&b).await;
    let op = "door=\"soap\",service=\"IndividualProductOptionService\",operation=\"calculateOptionsPrice\"";
    assert_eq!(
        metric(
            &m,
            &format!("soapbridge_calls_total{{{op},outcome=\"success\",code=\"\"}}")
        ),
        Some(3.0),
        "{m}"
    );
    assert!(
        m.lines().any(|l| l.starts_with(&format!(
            "soapbridge_calls_total{{{op},outcome=\"failure\",code=\"SIGNATURE_INVALID\"}} 1"
        ))),
        "{m}"
    );
    assert!(
        m.contains("outcome=\"fault\""),
        "the malformed envelope is counted as a fault: {m}"
    );
    assert_eq!(
        metric(
            &m,
            &format!("soapbridge_call_duration_seconds_count{{{op}}}")
        ),
        Some(4.0),
        "{m}"
    );
    assert!(
        metric(
            &m,
            "soapbridge_backend_call_duration_seconds_count{backend=\"options\"}"
        )
        .is_some_and(|n| n >= 3.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "soapbridge_signature_refusals_total{reason=\"SIGNATURE_INVALID\"}"
        ),
        Some(1.0),
        "{m}"
    );
    // The connection that asks for the metrics is open.
    assert!(
        metric(&m, "soapbridge_open_connections").is_some_and(|n| n >= 1.0),
        "{m}"
    );
    // Stock batches by state and the queue, read from the store.
    assert!(m.contains("soapbridge_stock_queue_depth "), "{m}");
    // No label carries what a client sent: no request ids, no keys.
    assert!(!m.contains("NjgEHGeJc6cFqbw6FSUP8NpH3pUhV7ss"), "{m}");
    assert!(m.ends_with("# EOF\n"), "{m}");
}

#[tokio::test]
async fn an_unknown_path_or_method_is_not_a_label() {
    let b = Bridge::demo().await;
    for i in 0..20 {
        request("POST", &b.url(&format!("/no/such/{i}")), &[], "<x/>").await;
        let body = std::fs::read_to_string("fixtures/xmlrpc/system-listMethods.xml")
            .unwrap()
            .replace("system.listMethods", &format!("Nope{i}.op{i}"));
        request(
            "POST",
            &b.url("/RPC2"),
            &[("content-type", "text/xml")],
            body,
        )
        .await;
    }
    let m = metrics(&b).await;
    assert!(!m.contains("/no/such"), "{m}");
    assert!(!m.contains("Nope1"), "{m}");
}

/// A backend that answers `{"echo": {"count": 1, "code": <the X-Request-Id it got>}}`.
async fn echo_backend() -> String {
    json_backend(|req, _| async move {
        let id = req
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_string();
        (
            200,
            serde_json::json!({"echo": {"count": 1, "code": id}}).to_string(),
        )
    })
    .await
}

fn typed_config(backend: &str, extra: &str) -> String {
    format!(
        r#"
[backends.echo]
base_url = "{backend}"
{extra}

[mappings.typed.echo]
path = "/echo"
body = "$.values"
response = {{ result = "$.echo" }}

[[services]]
name = "Typed"
path = "/typed"
wsdl = "../tests/wsdl/typed.wsdl"
backend = "echo"
mappings = "typed"
"#
    )
}

const ECHO_CALL: &str = "<Envelope xmlns=\"http://schemas.xmlsoap.org/soap/envelope/\"><Body><echo xmlns=\"urn:typed\"><values xmlns=\"\"><count>1</count></values></echo></Body></Envelope>";

async fn echo_call(b: &Bridge, request_id: Option<&str>) -> Reply {
    let mut headers = vec![("content-type", "text/xml")];
    if let Some(id) = request_id {
        headers.push(("x-request-id", id));
    }
    request("POST", &b.url("/typed"), &headers, ECHO_CALL).await
}

#[tokio::test]
async fn the_request_id_goes_to_the_backend_and_back() {
    let b = Bridge::with_config(&typed_config(&echo_backend().await, "")).await;
    // The client's id is kept.
    let r = echo_call(&b, Some("order-4711-a")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-request-id"), Some("order-4711-a"));
    assert_eq!(r.text_of("code").as_deref(), Some("order-4711-a"));
    // Without one, the bridge makes one, sends it on and returns it.
    let r = echo_call(&b, None).await;
    let id = r.header("x-request-id").unwrap().to_string();
    assert_eq!(id.len(), 16, "{id}");
    assert_eq!(r.text_of("code").as_deref(), Some(id.as_str()));
    let again = echo_call(&b, None).await;
    assert_ne!(again.header("x-request-id"), Some(id.as_str()));
    // An id that is not a sensible header value is replaced.
    let long = "x".repeat(300);
    let r = echo_call(&b, Some(&long)).await;
    assert_eq!(r.header("x-request-id").unwrap().len(), 16);
    // Probes and faults carry one too.
    let r = request(
        "GET",
        &b.url("/healthz"),
        &[("x-request-id", "probe-1")],
        "",
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    assert_eq!(r.header("x-request-id"), Some("probe-1"));
}

#[tokio::test]
async fn readiness_reports_configuration_store_and_backends() {
    let b = Bridge::with_config(&typed_config(&echo_backend().await, "")).await;
    let r = request("GET", &b.url("/readyz"), &[], "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("configuration: generation 1"), "{}", r.body);
    assert!(r.body.contains("store (sqlite): ok"), "{}", r.body);
    assert!(
        r.body.contains("backend echo: not called yet"),
        "{}",
        r.body
    );
    echo_call(&b, None).await;
    let r = request("GET", &b.url("/readyz"), &[], "").await;
    assert!(r.body.contains("backend echo: last call ok"), "{}", r.body);

    // A backend that is down is reported, but does not make the bridge unready.
    let down = Bridge::with_config(&typed_config("http://127.0.0.1:9", "")).await;
    let r = echo_call(&down, None).await;
    assert_eq!(r.status, 500, "{}", r.body);
    r.assert_has("<sb:code>BACKEND_UNAVAILABLE</sb:code>");
    let r = request("GET", &down.url("/readyz"), &[], "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body
            .contains("backend echo: last call failed: BACKEND_UNAVAILABLE"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn readiness_fails_when_the_store_cannot_be_reached() {
    let url = pg_url().await;
    // A PostgreSQL store on a schema of its own; the schema is dropped under the running bridge.
    let schema = format!("ready_{}", std::process::id());
    let cfg = format!(
        "{}\n[store]\nurl = \"{url}\"\nschema = \"{schema}\"\n",
        typed_config(&echo_backend().await, "")
    );
    let b = Bridge::with_config(&cfg).await;
    let r = request("GET", &b.url("/readyz"), &[], "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("store (postgres): ok"), "{}", r.body);
    b.app.store().unwrap().drop_schema().await.unwrap();
    let r = request("GET", &b.url("/readyz"), &[], "").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.body.contains("store (postgres): unreachable"),
        "{}",
        r.body
    );
}

/// Counts calls; used by the reload test to see every call answered.
#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    failed: AtomicUsize,
}

#[tokio::test]
async fn a_reload_under_load_loses_no_call() {
    let backend = echo_backend().await;
    let b = Arc::new(Bridge::with_config(&typed_config(&backend, "")).await);
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (b, tally, stop) = (b.clone(), tally.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = echo_call(&b, None).await;
                if r.status == 200 && r.text_of("count").as_deref() == Some("1") {
                    tally.ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    eprintln!("{} {}", r.status, r.body);
                    tally.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // Twenty reloads while the clients call, each a changed configuration (a different
    // timeout), each compiled from the text as a reload compiles the file.
    for i in 0..20 {
        let text = typed_config(&backend, &format!("timeout_ms = {}", 5000 + i));
        let plan =
            soapbridge::Config::from_toml(&text, std::path::Path::new("demo/test.toml")).unwrap();
        let mut raw = plan;
        raw.raw.server.listen = Some(b.addr);
        b.app.reload(raw.compile().unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let (ok, failed) = (
        tally.ok.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
    );
    println!("{ok} calls answered across 20 reloads");
    assert_eq!(failed, 0);
    assert!(ok > 20, "{ok}");
    let r = request("GET", &b.url("/readyz"), &[], "").await;
    assert!(
        r.body.contains("configuration: generation 21"),
        "{}",
        r.body
    );
    let m = metrics(&b).await;
    assert_eq!(
        metric(&m, "soapbridge_config_reloads_total"),
        Some(20.0),
        "{m}"
    );
}

/// The `soapbridge` binary serving `config`, its stderr collected as it is written.
struct Served {
    child: std::process::Child,
    stderr: Arc<std::sync::Mutex<String>>,
    url: String,
}

impl Served {
    async fn start(config: &std::path::Path, port: u16) -> Served {
        Served::start_logging(config, port, "info").await
    }

    async fn start_logging(config: &std::path::Path, port: u16, log: &str) -> Served {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_soapbridge"))
            .args(["serve", "--config"])
            .arg(config)
            .env("SOAPBRIDGE_LOG_FORMAT", "json")
            .env("SOAPBRIDGE_LOG", log)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(std::sync::Mutex::new(String::new()));
        let (mut pipe, sink) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(&mut pipe)
                .lines()
                .map_while(Result::ok)
            {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let served = Served {
            child,
            stderr,
            url: format!("http://127.0.0.1:{port}"),
        };
        served
            .wait_for("the bridge to listen", |s| {
                s.contains("soapbridge listening")
            })
            .await;
        served
    }

    fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    async fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) {
        for _ in 0..200 {
            if done(&self.log()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("waited 10 s for {what}; stderr:\n{}", self.log());
    }

    fn hangup(&self) {
        let ok = std::process::Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    async fn get(&self, path: &str) -> Reply {
        request("GET", &format!("{}{path}", self.url), &[], "").await
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh directory for a served bridge's configuration (`name` tells tests apart), the file's
/// path in it and a free port to listen on.
fn config_place(name: &str) -> (std::path::PathBuf, std::path::PathBuf, u16) {
    let dir = std::env::temp_dir().join(format!("soapbridge-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bridge.toml");
    (dir, file, free_port())
}

/// The typed service's configuration (with `extra` in it) for the binary, listening on `port`,
/// with `tail` after the `[server]` table.
fn served_config(backend: &str, port: u16, extra: &str, tail: &str) -> String {
    let wsdl = std::fs::canonicalize("tests/wsdl/typed.wsdl").unwrap();
    format!(
        "{}\n[server]\nlisten = \"127.0.0.1:{port}\"\n{tail}",
        typed_config(backend, extra).replace("../tests/wsdl/typed.wsdl", wsdl.to_str().unwrap())
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn at_debug_backend_json_is_logged_without_card_data_or_secrets() {
    let options = reference("product-options", "fixtures/reference/product-options.json").await;
    let dir = std::env::temp_dir().join(format!("soapbridge-debug-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let config = demo_with_backend_url("options", &options)
        .replace(
            "url = \"sqlite:../var/soapbridge.db\"",
            &format!("url = \"sqlite:{}/store.db\"", dir.display()),
        )
        .replace("../wsdl/", &format!("{}/wsdl/", env!("CARGO_MANIFEST_DIR")))
        .replace(
            "listen = \"127.0.0.1:8080\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        );
    let file = dir.join("bridge.toml");
    std::fs::write(&file, config).unwrap();
    let served = Served::start_logging(&file, port, "info,soapbridge=debug").await;
    // A payment with a real-looking card (passes Luhn) and its CVV.
    let call = fixture("payment/payPrice-bad-card.xml")
        .replace("4111111111111112", "4111111111111111")
        .replace("<cvv>123</cvv>", "<cvv>987</cvv>");
    request(
        "POST",
        &format!("{}{PAYMENT_PATH}", served.url),
        &[
            ("content-type", "text/xml"),
            ("authorization", &basic(FIXTURE_USER)),
        ],
        call,
    )
    .await;
    served
        .wait_for("the backend exchange at debug", |s| {
            s.contains("from backend")
        })
        .await;
    let log = served.log();
    let sent = log
        .lines()
        .find(|l| l.contains("\"to backend\"") && l.contains("/payments"))
        .unwrap_or_else(|| panic!("no debug line for the payment: {log}"));
    println!("{sent}");
    // A line written in the middle of a call names the call's request and its caller.
    let line: serde_json::Value = serde_json::from_str(sent).unwrap();
    assert_eq!(line["span"]["user"], "fixture", "{sent}");
    assert!(
        line["span"]["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{sent}"
    );
    // The whole card member is a secret by name; the rest of the body is there.
    assert!(sent.contains(r#"\"card\":\"***\""#), "{sent}");
    // (The CVV's digits could turn up in a timestamp by chance; its member name cannot.)
    for secret in [
        "4111111111111111",
        "cvv",
        "expiry",
        "fixture-secret",
        "fixture-pass",
    ] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The served process has transparent huge pages off (prctl), whatever the system's setting:
/// otherwise each 2 MiB page the allocator's arenas touch is resident whole, and the process's
/// memory no longer follows the messages in flight (BENCHMARKS.md).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_served_process_keeps_no_transparent_huge_pages() {
    let backend = echo_backend().await;
    let (dir, file, port) = config_place("thp");
    std::fs::write(&file, served_config(&backend, port, "", "")).unwrap();
    let served = Served::start(&file, port).await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", served.child.id())).unwrap();
    // The kernel reports the process's flag from Linux 5.0 on; older kernels say nothing.
    if let Some(line) = status.lines().find(|l| l.starts_with("THP_enabled:")) {
        assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
    }
    assert_eq!(served.get("/healthz").await.status, 200);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn sighup_reloads_the_file_and_a_bad_file_keeps_the_one_in_force() {
    let backend = echo_backend().await;
    let (dir, file, port) = config_place("hup");
    let text = |extra: &str| served_config(&backend, port, extra, OPS);
    std::fs::write(&file, text("")).unwrap();
    let served = Served::start(&file, port).await;
    let call = || async {
        request(
            "POST",
            &format!("{}/typed", served.url),
            &[("content-type", "text/xml"), ("x-request-id", "hup-call-1")],
            ECHO_CALL,
        )
        .await
    };
    assert_eq!(call().await.status, 200);

    // A changed file, then SIGHUP: the new generation is in force, the process goes on.
    std::fs::write(&file, text("timeout_ms = 7000")).unwrap();
    served.hangup();
    served
        .wait_for("the reload", |s| s.contains("configuration reloaded"))
        .await;
    let r = served.get("/readyz").await;
    assert!(r.body.contains("configuration: generation 2"), "{}", r.body);
    assert_eq!(call().await.status, 200);

    // A file with two mistakes: both are logged, the running configuration stays.
    std::fs::write(
        &file,
        text("").replace("mappings = \"typed\"", "mappings = \"nope\"")
            + "[backends.other]\nbase_url = \"ftp://nowhere\"\n",
    )
    .unwrap();
    served.hangup();
    served
        .wait_for("the refusal", |s| {
            s.contains("the configuration in force stays")
        })
        .await;
    let log = served.log();
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("reload refused"))
        .collect();
    assert_eq!(refused.len(), 2, "{log}");
    assert!(refused.iter().any(|l| l.contains("ftp://nowhere")), "{log}");
    assert!(refused.iter().any(|l| l.contains("nope")), "{log}");
    let r = served.get("/readyz").await;
    assert!(r.body.contains("configuration: generation 2"), "{}", r.body);
    assert_eq!(call().await.status, 200);
    let m = served.get("/metrics").await.body;
    assert_eq!(
        metric(&m, "soapbridge_config_reload_failures_total"),
        Some(1.0),
        "{m}"
    );

    // Every line is JSON; a call's line names the call and carries its request id.
    let log = served.log();
    let mut calls = 0;
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if v["message"] == "call" {
            calls += 1;
            assert_eq!(v["door"], "soap", "{line}");
            assert_eq!(v["service"], "Typed", "{line}");
            assert_eq!(v["operation"], "echo", "{line}");
            assert_eq!(v["outcome"], "success", "{line}");
            assert_eq!(v["span"]["request_id"], "hup-call-1", "{line}");
        }
    }
    assert_eq!(calls, 3, "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "no colours when stderr is not a terminal"
    );

    // `soapbridge reload`: checks the file itself, then has the running bridge read it.
    let reload = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_soapbridge"))
            .args(["reload", "--config"])
            .arg(&file)
            .output()
            .unwrap()
    };
    let out = reload();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 problem(s)"), "{err}");
    std::fs::write(&file, text("timeout_ms = 9000")).unwrap();
    let out = reload();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("\"generation\": 3"), "{said}");
    let r = served.get("/readyz").await;
    assert!(r.body.contains("configuration: generation 3"), "{}", r.body);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A backend for the typed service that answers 503 to its first `fail` requests (all of
/// them when `fail` is `usize::MAX`), after `delay`; it counts requests and the most it saw
/// at once.
#[derive(Default)]
struct Flaky {
    fail: AtomicUsize,
    seen: AtomicUsize,
    now: AtomicUsize,
    most: AtomicUsize,
}

async fn flaky_backend(fail: usize, delay: Duration) -> (String, Arc<Flaky>) {
    let state = Arc::new(Flaky::default());
    state.fail.store(fail, Ordering::SeqCst);
    let s = state.clone();
    let url = json_backend(move |_, _| {
        let s = s.clone();
        async move {
            let n = s.seen.fetch_add(1, Ordering::SeqCst);
            let now = s.now.fetch_add(1, Ordering::SeqCst) + 1;
            s.most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            s.now.fetch_sub(1, Ordering::SeqCst);
            if n < s.fail.load(Ordering::SeqCst) {
                (503, r#"{"message":"maintenance"}"#.to_string())
            } else {
                (200, r#"{"echo":{"count":1,"code":"ok"}}"#.to_string())
            }
        }
    })
    .await;
    (url, state)
}

/// The typed service over `backend`, its mapping sent with `method` (and `retry`).
fn resilient_config(
    backend: &str,
    method: &str,
    mapping_extra: &str,
    backend_extra: &str,
) -> String {
    typed_config(backend, backend_extra).replace(
        "path = \"/echo\"\nbody = \"$.values\"",
        &format!("path = \"/echo\"\nmethod = \"{method}\"\n{mapping_extra}"),
    )
}

#[tokio::test]
async fn idempotent_calls_are_retried_and_others_are_not() {
    // A GET that fails once is sent again and succeeds.
    let (url, seen) = flaky_backend(1, Duration::ZERO).await;
    let b = Bridge::with_config(&resilient_config(&url, "GET", "", "")).await;
    // Before any call, the backend's counters are there at 0 (an alert sees 0, not no data),
    // as are the ends of streamed answers.
    let m = metrics(&b).await;
    for name in [
        "soapbridge_backend_retries_total{backend=\"echo\"}",
        "soapbridge_backend_circuit_openings_total{backend=\"echo\"}",
        "soapbridge_streamed_answers_total{end=\"complete\"}",
        "soapbridge_streamed_answers_total{end=\"late\"}",
    ] {
        assert_eq!(metric(&m, name), Some(0.0), "{name}: {m}");
    }
    let r = echo_call(&b, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(seen.seen.load(Ordering::SeqCst), 2);
    let m = metrics(&b).await;
    assert_eq!(
        metric(&m, "soapbridge_backend_retries_total{backend=\"echo\"}"),
        Some(1.0),
        "{m}"
    );

    // A POST that may have reached the backend is not.
    let (url, seen) = flaky_backend(1, Duration::ZERO).await;
    let b = Bridge::with_config(&resilient_config(&url, "POST", "body = \"$.values\"", "")).await;
    let r = echo_call(&b, None).await;
    assert_eq!(r.status, 500, "{}", r.body);
    r.assert_has("<sb:code>BACKEND_ERROR</sb:code>");
    assert_eq!(seen.seen.load(Ordering::SeqCst), 1);

    // Unless its mapping says it is safe to repeat.
    let (url, seen) = flaky_backend(1, Duration::ZERO).await;
    let b = Bridge::with_config(&resilient_config(
        &url,
        "POST",
        "body = \"$.values\"\nretry = true",
        "",
    ))
    .await;
    assert_eq!(echo_call(&b, None).await.status, 200);
    assert_eq!(seen.seen.load(Ordering::SeqCst), 2);

    // retry.attempts = 1 turns retries off.
    let (url, seen) = flaky_backend(1, Duration::ZERO).await;
    let b = Bridge::with_config(&resilient_config(
        &url,
        "GET",
        "",
        "[backends.echo.retry]\nattempts = 1",
    ))
    .await;
    assert_eq!(echo_call(&b, None).await.status, 500);
    assert_eq!(seen.seen.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_breaker_fails_fast_while_a_backend_is_down_and_probes_it_back() {
    let (url, backend) = flaky_backend(usize::MAX, Duration::ZERO).await;
    let b = Bridge::with_config(&resilient_config(
        &url,
        "POST",
        "body = \"$.values\"",
        "[backends.echo.breaker]\nfailures = 3\nopen_ms = 30000",
    ))
    .await;
    for _ in 0..3 {
        echo_call(&b, None)
            .await
            .assert_has("<sb:code>BACKEND_ERROR</sb:code>");
    }
    // Open: answered at once, the backend is not called.
    let r = echo_call(&b, None).await;
    assert_eq!(r.status, 503, "{}", r.body);
    r.assert_has("<sb:code>BACKEND_CIRCUIT_OPEN</sb:code>");
    r.assert_has("calls are not sent to it for 30 s more");
    assert_eq!(r.header("retry-after"), Some("30"), "when to come back");
    assert_eq!(backend.seen.load(Ordering::SeqCst), 3);
    let r = request("GET", &b.url("/readyz"), &[], "").await;
    assert_eq!(
        r.status, 200,
        "an open breaker does not make the bridge unready"
    );
    assert!(
        r.body
            .contains("backend echo: last call failed: BACKEND_CIRCUIT_OPEN; breaker open"),
        "{}",
        r.body
    );
    let m = metrics(&b).await;
    assert_eq!(
        metric(
            &m,
            "soapbridge_backend_circuit_openings_total{backend=\"echo\"}"
        ),
        Some(1.0),
        "{m}"
    );
    // The backend comes back; after the open time one probe goes through and closes it.
    backend.fail.store(0, Ordering::SeqCst);
    assert_eq!(echo_call(&b, None).await.status, 503, "still open");
    b.clock.advance(Duration::from_secs(30));
    assert_eq!(echo_call(&b, None).await.status, 200);
    assert_eq!(echo_call(&b, None).await.status, 200);
    assert_eq!(backend.seen.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn calls_in_flight_to_a_backend_are_limited() {
    let (url, backend) = flaky_backend(0, Duration::from_millis(150)).await;
    let b = Arc::new(
        Bridge::with_config(&resilient_config(
            &url,
            "POST",
            "body = \"$.values\"",
            "max_in_flight = 2",
        ))
        .await,
    );
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let b = b.clone();
            tokio::spawn(async move { echo_call(&b, None).await.status })
        })
        .collect();
    for c in calls {
        assert_eq!(
            c.await.unwrap(),
            200,
            "each call waits its turn and succeeds"
        );
    }
    assert_eq!(backend.seen.load(Ordering::SeqCst), 6);
    assert_eq!(backend.most.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_caller_over_its_rate_limit_gets_the_profiles_failure() {
    // Signed profile: ackCode=failure with errorId 1007, in the caller's language.
    let text = std::fs::read_to_string("demo/soapbridge.toml")
        .unwrap()
        .replace(
            "result_element = \"return\"",
            "result_element = \"return\"\nrate_limit = { calls = 2, per_secs = 60 }",
        );
    let b = Bridge::with_config(&text).await;
    for _ in 0..2 {
        soap(&b.url(OPTION_PATH), FIXTURE_USER, option_call())
            .await
            .assert_success();
    }
    let r = soap(&b.url(OPTION_PATH), FIXTURE_USER, option_call()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.text_of("ackCode").as_deref(),
        Some("failure"),
        "{}",
        r.body
    );
    assert_eq!(r.text_of("errorId").as_deref(), Some("1007"), "{}", r.body);
    r.assert_has("RATE_LIMITED");
    // Another account has its own quota.
    let other = signed(&option_call(), KEY, SECRET, now_ms());
    soap(&b.url(OPTION_PATH), USER, other)
        .await
        .assert_success();
    // A new window.
    b.clock.advance(Duration::from_secs(60));
    soap(&b.url(OPTION_PATH), FIXTURE_USER, option_call())
        .await
        .assert_success();

    // Basic profile over XML-RPC: a fault with the limit's number.
    let text = typed_config(&echo_backend().await, "").replace(
        "mappings = \"typed\"",
        "mappings = \"typed\"\nprofile = \"b\"",
    ) + "[profiles.b]\nkind = \"basic\"\nusers = [{ user = \"u\", password = \"p\" }]\nrate_limit = { calls = 1, per_secs = 10 }\n";
    let b = Bridge::with_config(&text).await;
    let auth = basic("u:p");
    let headers = [
        ("content-type", "text/xml"),
        ("authorization", auth.as_str()),
    ];
    assert_eq!(
        request("POST", &b.url("/typed"), &headers, ECHO_CALL)
            .await
            .status,
        200
    );
    let r = request("POST", &b.url("/typed"), &headers, ECHO_CALL).await;
    assert_eq!(r.status, 429, "{}", r.body);
    r.assert_has("<sb:code>RATE_LIMITED</sb:code>");
    r.assert_has("try again in");
    let after: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&after), "{after}");
}

const OPS: &str =
    "\n[ops]\npath = \"/_/\"\nusers = [{ user = \"ops\", password = \"ops-pass\" }]\n";

/// The demo configuration with an operator page, and a call, a refused signature and a
/// backend failure already made.
async fn busy_demo() -> (Bridge, String) {
    // The demo has an operator page: ops / ops-demo-pass.
    let b = Bridge::demo().await;
    soap(&b.url(OPTION_PATH), FIXTURE_USER, option_call())
        .await
        .assert_success();
    let forged = option_call().replace("<sign>", "<sign>0");
    let r = request(
        "POST",
        &b.url(OPTION_PATH),
        &[
            ("content-type", "text/xml"),
            ("authorization", &basic(FIXTURE_USER)),
            ("x-request-id", "forged-call-7"),
        ],
        forged,
    )
    .await;
    assert_eq!(r.text_of("ackCode").as_deref(), Some("failure"));
    (b, "forged-call-7".into())
}

#[tokio::test]
async fn the_operator_page_shows_traffic_backends_batches_and_failures() {
    let (b, failed_id) = busy_demo().await;
    // Its own users only.
    let r = request("GET", &b.url("/_/"), &[], "").await;
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("soapbridge operators")
    );
    let r = request(
        "GET",
        &b.url("/_/"),
        &[("authorization", &basic(FIXTURE_USER))],
        "",
    )
    .await;
    assert_eq!(r.status, 401, "a service's user is not an operator");

    let ops = basic("ops:ops-demo-pass");
    let r = request("GET", &b.url("/_/"), &[("authorization", &ops)], "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let html = &r.body;
    assert!(
        html.contains("<td>IndividualProductOptionService</td><td>calculateOptionsPrice</td>"),
        "{html}"
    );
    assert!(
        html.contains(&format!("<code>{failed_id}</code>")),
        "{html}"
    );
    assert!(html.contains("SIGNATURE_INVALID"), "{html}");
    assert!(
        html.contains("<td>options</td>"),
        "backends are listed: {html}"
    );
    assert!(html.contains("Stock batches"), "{html}");
    // No secrets and no bodies.
    for secret in [
        "fixture-secret",
        "fixture-pass",
        "ops-demo-pass",
        "2ba343cc9f0e6294b53bd9d185384e60",
    ] {
        assert!(!html.contains(secret), "{secret} in {html}");
    }

    let r = request(
        "GET",
        &b.url("/_/status.json"),
        &[("authorization", &ops)],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let traffic = v["traffic"].as_array().unwrap();
    let option = traffic
        .iter()
        .find(|t| t["operation"] == "calculateOptionsPrice")
        .unwrap();
    assert_eq!(
        (option["calls"].as_u64(), option["errors"].as_u64()),
        (Some(2), Some(1)),
        "{v}"
    );
    assert_eq!(v["failures"][0]["request_id"], failed_id.as_str());
    assert_eq!(v["failures"][0]["code"], "SIGNATURE_INVALID");
    assert!(v["stock"]["counts"].is_array(), "{v}");
    assert!(
        v["backends"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["breaker"] == "closed"),
        "{v}"
    );

    // A bridge not started from a file cannot reload: said so, nothing changes.
    let r = request("POST", &b.url("/_/reload"), &[("authorization", &ops)], "").await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("\"reloaded\": false"), "{}", r.body);
    let r = request(
        "DELETE",
        &b.url("/_/reload"),
        &[("authorization", &ops)],
        "",
    )
    .await;
    assert_eq!(r.status, 405);
}

#[test]
fn an_ops_path_over_a_service_is_refused() {
    let text = typed_config("http://127.0.0.1:9", "") + "\n[ops]\npath = \"/RPC2\"\nusers = []\n";
    let errors = soapbridge::Config::from_toml(&text, std::path::Path::new("demo/test.toml"))
        .unwrap()
        .compile()
        .unwrap_err()
        .to_string();
    assert!(
        errors.contains("ops.path: '/RPC2' overlaps '/RPC2'"),
        "{errors}"
    );
    assert!(
        errors.contains("ops.users: needs at least one user"),
        "{errors}"
    );
}

/// The operator page in a real browser: Debian's Chromium, headless (`.ci/run` installs it).
/// The DOM it rendered shows the call just made; a screenshot is kept in
/// `target/ops-page.png`.
#[tokio::test]
async fn the_operator_page_renders_in_headless_chromium() {
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            std::process::Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("chromium is required: .ci/run installs Debian's chromium");
    let (b, failed_id) = busy_demo().await;
    let url = format!("http://ops:ops-demo-pass@{}/_/", b.addr);
    let profile = std::env::temp_dir().join(format!("soapbridge-chromium-{}", std::process::id()));
    let run = |extra: &[&str]| {
        let mut args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--no-first-run".into(),
            format!("--user-data-dir={}", profile.display()),
            "--window-size=1280,1000".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(url.clone());
        let chromium = chromium.to_string();
        async move {
            tokio::task::spawn_blocking(move || {
                std::process::Command::new(chromium)
                    .args(args)
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };
    let dom = run(&["--dump-dom"]).await;
    let html = String::from_utf8_lossy(&dom.stdout);
    assert!(
        html.contains("calculateOptionsPrice") && html.contains(&failed_id),
        "chromium rendered: {html}\nstderr: {}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("ops-page.png");
    let _ = std::fs::remove_file(&shot);
    let out = run(&[&format!("--screenshot={}", shot.display())]).await;
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    println!("screenshot: {}", shot.display());
    let _ = std::fs::remove_dir_all(&profile);
}
