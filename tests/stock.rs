//! Stock sync end to end: synchronous lists, asynchronous batches through every state, the
//! channel down and back, attempts running out, graceful shutdown, the bridge killed with
//! SIGKILL mid-delivery and restarted (real binaries), and two instances sharing PostgreSQL.
//! Every test compares what was accepted with what the channel applied, exactly.
//!
//! The PostgreSQL tests need a server: `SOAPBRIDGE_TEST_PG`, or by default the local one at
//! 127.0.0.1:5432 (database `test`); without one they fail and say how to give one.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // a test (or benchmark) may unwrap and print

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const STOCK: &str = "/stock/ws/StockService";
const STOCK_USER: &str = "stock:stock-pass";

/// A copy of the stock channel's seed with a short processing delay.
fn quick_seed(delay_ms: u64) -> String {
    let mut seed: Value =
        serde_json::from_str(&std::fs::read_to_string("fixtures/reference/stock.json").unwrap())
            .unwrap();
    seed["async_delay_ms"] = delay_ms.into();
    let path = std::env::temp_dir()
        .join("soapbridge-tests")
        .join(format!("stock-seed-{}-{delay_ms}.json", std::process::id()));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, seed.to_string()).unwrap();
    path.display().to_string()
}

/// Starts the stock channel in this process; returns its URL.
async fn channel(delay_ms: u64) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = soapbridge_reference::spawn(
        "stock",
        std::path::Path::new(&quick_seed(delay_ms)),
        listener,
    )
    .unwrap();
    format!("http://{addr}")
}

/// The demo configuration with the channel at `url`, quick retries, and `extra` replacements.
fn config(url: &str, store: &str, extra: &[(&str, &str)]) -> String {
    let mut t = demo_with_backend_url("channel", url)
        .replace(
            "url = \"sqlite:../var/soapbridge.db\"",
            &format!("url = \"{store}\""),
        )
        .replace("poll_interval_ms = 250", "poll_interval_ms = 40")
        .replace("retry_base_ms = 200", "retry_base_ms = 40")
        .replace("retry_max_ms = 30000", "retry_max_ms = 300");
    for (a, b) in extra {
        assert!(t.contains(a), "{a}");
        t = t.replace(a, b);
    }
    t
}

fn sqlite_url() -> String {
    format!("sqlite:{}", temp_db().display())
}

fn envelope(op: &str, inner: &str) -> String {
    format!(
        "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:stk=\"urn:soapbridge:akinon:stock\"><soapenv:Body><stk:{op}>{inner}</stk:{op}></soapenv:Body></soapenv:Envelope>"
    )
}

fn stocks(items: &[(&str, &str, i64)]) -> String {
    let rows: String = items
        .iter()
        .map(|(s, w, q)| {
            format!("<stock><sku>{s}</sku><warehouseCode>{w}</warehouseCode><quantity>{q}</quantity></stock>")
        })
        .collect();
    format!("<stocks>{rows}</stocks>")
}

/// Submits an asynchronous insert; returns the batch id.
async fn submit(url: &str, items: &[(&str, &str, i64)], success_log: bool) -> i64 {
    let r = soap(
        url,
        STOCK_USER,
        envelope(
            "insertProductStocks",
            &format!(
                "<isSync>false</isSync><isSuccessLog>{success_log}</isSuccessLog>{}",
                stocks(items)
            ),
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.text_of("status").as_deref(),
        Some("initialized"),
        "{}",
        r.body
    );
    r.text_of("batchId").unwrap().parse().unwrap()
}

async fn batch(url: &str, id: i64) -> Reply {
    soap(
        url,
        STOCK_USER,
        envelope("getStockBatchRequest", &format!("<batchId>{id}</batchId>")),
    )
    .await
}

/// Polls a batch until `done(reply)` holds; the reply that made it hold.
async fn wait_for(url: &str, id: i64, what: &str, done: impl Fn(&Reply) -> bool) -> Reply {
    let started = Instant::now();
    loop {
        let r = batch(url, id).await;
        if done(&r) {
            return r;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "batch {id}: not {what} after 30 s: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn attempts(r: &Reply) -> i64 {
    r.text_of("attempts")
        .and_then(|a| a.parse().ok())
        .unwrap_or(0)
}

/// Polls a batch until it reaches `done` or `fail`; returns every status seen, in order.
async fn wait_final(url: &str, id: i64, within: Duration) -> (Vec<String>, Reply) {
    let started = Instant::now();
    let mut seen: Vec<String> = Vec::new();
    loop {
        let r = batch(url, id).await;
        let s = r.text_of("status").unwrap_or_default();
        if seen.last() != Some(&s) {
            seen.push(s.clone());
        }
        if s == "done" || s == "fail" {
            return (seen, r);
        }
        assert!(
            started.elapsed() < within,
            "batch {id} still {s} after {within:?}: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn stats(url: &str) -> Value {
    let r = request("GET", &format!("{url}/_reference/stats"), &[], "").await;
    serde_json::from_str(&r.body).unwrap()
}

/// Every key applied exactly once, and how many keys there are.
fn applied_once(stats: &Value) -> usize {
    let by_key = stats["applications_by_key"].as_object().unwrap();
    for (k, n) in by_key {
        assert_eq!(n, 1, "key {k} applied {n} times: {stats}");
    }
    by_key.len()
}

#[tokio::test]
async fn a_synchronous_list_answers_per_item_and_reports_failures() {
    let ch = channel(50).await;
    let b = Bridge::with_config(&config(&ch, &sqlite_url(), &[])).await;
    let r = soap(
        &b.url(STOCK),
        STOCK_USER,
        envelope(
            "insertProductStocks",
            &format!(
                "<isSync>true</isSync>{}",
                stocks(&[("SKU-00001", "WH-IST", 5), ("NOPE", "WH-IST", 1)])
            ),
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.assert_has("<status>SUCCESS</status><remoteId>ST-000003</remoteId><sku>SKU-00001</sku>");
    r.assert_has("<status>FAIL</status><sku>NOPE</sku><warehouseCode>WH-IST</warehouseCode><message>unknown SKU 'NOPE'</message>");
    // One report: the failure (no success log asked for).
    let reports = soap(&b.url(STOCK), STOCK_USER, envelope("getErrorReports", "")).await;
    assert_eq!(
        reports.body.matches("<report>").count(),
        1,
        "{}",
        reports.body
    );
    reports.assert_has("<targetObjectId>NOPE</targetObjectId>");
    assert_eq!(stats(&ch).await["applications"], 1);
}

#[tokio::test]
async fn an_asynchronous_batch_goes_through_every_state_and_is_applied_once() {
    let ch = channel(1000).await;
    let b = Bridge::with_config(&config(&ch, &sqlite_url(), &[])).await;
    // Answered `initialized` (`submit` checks): accepted before any delivery, not after the
    // channel's second of processing.
    let id = submit(
        &b.url(STOCK),
        &[("SKU-00010", "WH-ANK", 3), ("SKU-00011", "WH-IZM", 4)],
        true,
    )
    .await;
    let (seen, r) = wait_final(&b.url(STOCK), id, Duration::from_secs(10)).await;
    assert_eq!(seen.last().map(String::as_str), Some("done"), "{seen:?}");
    assert!(
        seen.iter().any(|s| s == "sent_to_remote" || s == "ongoing"),
        "the channel took 1 s, so the batch was seen waiting: {seen:?}"
    );
    r.assert_has("<status>SUCCESS</status><remoteId>ST-000003</remoteId><sku>SKU-00010</sku><warehouseCode>WH-ANK</warehouseCode>");
    r.assert_has("<sku>SKU-00011</sku>");
    assert_eq!(r.text_of("remoteId").as_deref(), Some("RB-000001"));
    // Success logs were asked for: one report per item, isOk true.
    let reports = soap(
        &b.url(STOCK),
        STOCK_USER,
        envelope("getErrorReports", &format!("<batchId>{id}</batchId>")),
    )
    .await;
    assert_eq!(
        reports.body.matches("<isOk>true</isOk>").count(),
        2,
        "{}",
        reports.body
    );
    // The list by status.
    let done = soap(
        &b.url(STOCK),
        STOCK_USER,
        envelope("getStockBatchRequests", "<status>done</status>"),
    )
    .await;
    done.assert_has(&format!("<batchId>{id}</batchId>"));
    // A negative limit is refused, not taken as "all".
    let r = soap(
        &b.url(STOCK),
        STOCK_USER,
        envelope("getStockBatchRequests", "<limit>-5</limit>"),
    )
    .await;
    assert_eq!(r.status, 500, "{}", r.body);
    r.assert_has("INVALID_VALUE");
    r.assert_has("invalid value '-5' for 'limit'");
    let s = stats(&ch).await;
    assert_eq!(applied_once(&s), 1);
    assert_eq!(s["items_applied"], 2);
    assert_eq!(s["duplicate_deliveries"], 0);
}

#[tokio::test]
async fn batches_wait_while_the_channel_is_down_and_are_delivered_when_it_returns() {
    // A port with nothing on it yet.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let b = Bridge::with_config(&config(&format!("http://{addr}"), &sqlite_url(), &[])).await;
    let ids: Vec<i64> = futures_join((0..5).map(|i| {
        let url = b.url(STOCK);
        async move {
            submit(
                &url,
                &[(&format!("SKU-{:05}", 100 + i), "WH-IST", 1)],
                false,
            )
            .await
        }
    }))
    .await;
    // They are retried with back-off while the channel is down.
    let r = wait_for(&b.url(STOCK), ids[0], "retried", |r| attempts(r) >= 2).await;
    assert_eq!(r.text_of("status").as_deref(), Some("commit"), "{}", r.body);
    r.assert_has("is unreachable");
    // The channel comes up on that port.
    let l = tokio::net::TcpListener::bind(addr).await.unwrap();
    let ch = format!(
        "http://{}",
        soapbridge_reference::spawn("stock", std::path::Path::new(&quick_seed(20)), l).unwrap()
    );
    for id in &ids {
        let (_, r) = wait_final(&b.url(STOCK), *id, Duration::from_secs(10)).await;
        assert_eq!(r.text_of("status").as_deref(), Some("done"), "{}", r.body);
    }
    let s = stats(&ch).await;
    assert_eq!(applied_once(&s), 5);
    assert_eq!(s["items_applied"], 5);
}

#[tokio::test]
async fn a_delivered_batch_is_never_failed_by_a_polling_outage() {
    // The channel takes the batch, then answers 503 to everything for 2.5 s: longer than
    // max_attempts (2) quick retries would last.
    let ch = channel(400).await;
    let b = Bridge::with_config(&config(
        &ch,
        &sqlite_url(),
        &[("max_attempts = 8", "max_attempts = 2")],
    ))
    .await;
    let id = submit(&b.url(STOCK), &[("SKU-00042", "WH-IST", 1)], false).await;
    wait_for(&b.url(STOCK), id, "sent", |r| {
        r.text_of("status").as_deref() == Some("sent_to_remote")
    })
    .await;
    request("POST", &format!("{ch}/_reference/outage?ms=2500"), &[], "").await;
    // More failed polls than max_attempts, and the batch still waits for its result.
    let r = wait_for(&b.url(STOCK), id, "polled 3 times", |r| attempts(r) > 2).await;
    let status = r.text_of("status").unwrap_or_default();
    assert!(
        status == "sent_to_remote" || status == "ongoing",
        "{}",
        r.body
    );
    r.assert_has("HTTP 503");
    let (_, r) = wait_final(&b.url(STOCK), id, Duration::from_secs(10)).await;
    assert_eq!(r.text_of("status").as_deref(), Some("done"), "{}", r.body);
    let s = stats(&ch).await;
    assert_eq!(applied_once(&s), 1);
    assert_eq!(s["deliveries"], 1, "delivered once, never again: {s}");
}

/// Runs futures concurrently, keeping their order.
async fn futures_join<F: std::future::Future<Output = T> + Send + 'static, T: Send + 'static>(
    fs: impl Iterator<Item = F>,
) -> Vec<T> {
    let handles: Vec<_> = fs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn a_batch_that_runs_out_of_attempts_fails_with_an_error_report() {
    let b = Bridge::with_config(&config(
        "http://127.0.0.1:9",
        &sqlite_url(),
        &[("max_attempts = 8", "max_attempts = 3")],
    ))
    .await;
    let id = submit(&b.url(STOCK), &[("SKU-00001", "WH-IST", 1)], false).await;
    let (_, r) = wait_final(&b.url(STOCK), id, Duration::from_secs(10)).await;
    assert_eq!(r.text_of("status").as_deref(), Some("fail"), "{}", r.body);
    assert_eq!(r.text_of("attempts").as_deref(), Some("3"));
    let reports = soap(
        &b.url(STOCK),
        STOCK_USER,
        envelope("getErrorReports", &format!("<batchId>{id}</batchId>")),
    )
    .await;
    reports.assert_has("<errorCode>BACKEND_UNAVAILABLE</errorCode>");
    reports.assert_has("gave up after 3 attempts");
    reports.assert_has("<isOk>false</isOk>");
    // The raw request is kept (with its items), secrets redacted.
    reports.assert_has("SKU-00001");
}

#[tokio::test]
async fn graceful_shutdown_leaves_no_batch_claimed() {
    let db = sqlite_url();
    // Deliveries are slow: each one takes the channel 1.5 s, so shutdown finds them in flight.
    let (ch, arrived) = slow_channel(Duration::from_millis(1500)).await;
    let mut b = Bridge::with_config(&config(
        &ch,
        &db,
        &[("lease_ms = 30000", "lease_ms = 60000")],
    ))
    .await;
    let mut ids: Vec<i64> = futures_join((0..3).map(|i| {
        let url = b.url(STOCK);
        async move { submit(&url, &[(&format!("SKU-{:05}", i + 1), "WH-IST", 1)], false).await }
    }))
    .await;
    // Submitted at once: the store numbers them in the order they arrived.
    ids.sort();
    // Shut down while all three deliveries are at the channel.
    while arrived.load(std::sync::atomic::Ordering::SeqCst) < 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    b.shutdown().await.unwrap();
    // Every batch is free for any instance now, not in 60 s when the lease would expire.
    let store = soapbridge::store::Store::open(&db, "").await.unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let claimable = store.claim("probe", now + 10_000, 1000, 100).await.unwrap();
    let mut got: Vec<i64> = claimable.iter().map(|b| b.id).collect();
    got.sort();
    let statuses: Vec<&str> = claimable.iter().map(|b| b.status.as_str()).collect();
    assert_eq!(got, ids, "{statuses:?}");
}

/// A channel that answers every delivery after `delay` (202, ongoing) and every poll with done;
/// and the count of deliveries that have arrived.
async fn slow_channel(delay: Duration) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let arrived = Arc::new(AtomicUsize::new(0));
    let count = arrived.clone();
    tokio::spawn(soapbridge::server::serve(
        listener,
        move |req: http::Request<soapbridge::server::Body>| {
            let count = count.clone();
            async move {
                let body = if req.method() == http::Method::POST {
                    count.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    r#"{"batch_id":"RB-1","status":"ongoing"}"#
                } else {
                    r#"{"batch_id":"RB-1","status":"done","results":[]}"#
                };
                http::Response::builder()
                    .status(if req.method() == http::Method::POST {
                        202
                    } else {
                        200
                    })
                    .header("content-type", "application/json")
                    .body(http_body_util::Full::new(bytes::Bytes::from_static(
                        body.as_bytes(),
                    )))
                    .unwrap()
            }
        },
        Default::default(),
        std::future::pending(),
    ));
    (format!("http://{addr}"), arrived)
}

// ---- real processes: SIGKILL mid-delivery ----------------------------------------------------

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_soapbridge")
}

async fn wait_up(url: &str) {
    let started = Instant::now();
    loop {
        let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        if let Ok(Ok(_)) = tokio::time::timeout(
            Duration::from_millis(500),
            client.get(format!("{url}/healthz").parse().unwrap()),
        )
        .await
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{url} did not come up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_killed_mid_delivery_delivers_every_batch_once_after_restart() {
    let dir = std::env::temp_dir()
        .join("soapbridge-tests")
        .join(format!("kill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The channel runs in this test's process, which outlives the bridge's.
    let ch_url = channel(150).await;
    // The bridge: the demo configuration, this channel, a store file, short leases.
    let db = dir.join("store.db");
    let _ = std::fs::remove_file(&db);
    let cfg_text = config(
        &ch_url,
        &format!("sqlite:{}", db.display()),
        &[
            ("lease_ms = 30000", "lease_ms = 1500"),
            ("timeout_ms = 5000", "timeout_ms = 1000"),
        ],
    )
    .replace(
        "\"../",
        &format!("\"{}/", std::fs::canonicalize(".").unwrap().display()),
    );
    let cfg = dir.join("bridge.toml");
    std::fs::write(&cfg, cfg_text).unwrap();
    let port = free_port();
    let bridge_url = format!("http://127.0.0.1:{port}");
    let start = || {
        Proc(
            Command::new(binary())
                .args([
                    "serve",
                    "--config",
                    cfg.to_str().unwrap(),
                    "--listen",
                    &format!("127.0.0.1:{port}"),
                ])
                .env("SOAPBRIDGE_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    wait_up(&ch_url).await;
    let mut bridge = start();
    wait_up(&bridge_url).await;
    // 60 batches of 5 items, accepted while the channel is down (so that none is delivered
    // yet: they wait, retrying with back-off).
    request(
        "POST",
        &format!("{ch_url}/_reference/outage?ms=600000"),
        &[],
        "",
    )
    .await;
    const BATCHES: usize = 60;
    let mut ids = Vec::new();
    for i in 0..BATCHES {
        let items: Vec<(String, &str, i64)> = (0..5)
            .map(|j| {
                (
                    format!("SKU-{:05}", 1 + i * 5 + j),
                    ["WH-IST", "WH-ANK", "WH-IZM"][j % 3],
                    (i + j) as i64,
                )
            })
            .collect();
        let refs: Vec<(&str, &str, i64)> =
            items.iter().map(|(s, w, q)| (s.as_str(), *w, *q)).collect();
        ids.push(submit(&format!("{bridge_url}{STOCK}"), &refs, false).await);
    }
    assert_eq!(stats(&ch_url).await["deliveries"], 0);
    // The channel comes back; kill the bridge as soon as deliveries are under way.
    request("POST", &format!("{ch_url}/_reference/outage?ms=0"), &[], "").await;
    let started = Instant::now();
    loop {
        let d = stats(&ch_url).await["deliveries"].as_u64().unwrap();
        if d >= 3 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no deliveries started"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    bridge.0.kill().unwrap(); // SIGKILL
    bridge.0.wait().unwrap();
    let at_kill = stats(&ch_url).await;
    let delivered_at_kill = at_kill["deliveries"].as_u64().unwrap();
    assert!(
        (delivered_at_kill as usize) < BATCHES,
        "the kill came before every batch was delivered: {at_kill}"
    );
    // Restart on the same store: every accepted batch is delivered, each applied once.
    bridge = start();
    wait_up(&bridge_url).await;
    for id in &ids {
        let (_, r) = wait_final(
            &format!("{bridge_url}{STOCK}"),
            *id,
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(r.text_of("status").as_deref(), Some("done"), "{}", r.body);
    }
    let s = stats(&ch_url).await;
    assert_eq!(applied_once(&s), BATCHES, "{s}");
    assert_eq!(s["applications"], BATCHES as u64);
    assert_eq!(s["items_applied"], (BATCHES * 5) as u64);
    assert_eq!(s["items_failed"], 0);
    drop(bridge);
}

// ---- PostgreSQL: two instances share the queue and the signature cache -----------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_postgres_never_deliver_a_batch_twice() {
    let pg = pg_url().await;
    let schema = format!("sb_two_{}", std::process::id());
    let ch = channel(30).await;
    let cfg = config(
        &ch,
        &pg,
        &[(
            "# schema = \"soapbridge\"",
            &format!("schema = \"{schema}\""),
        )],
    );
    let a = Bridge::with_config(&cfg).await;
    let b = Bridge::with_config(&cfg).await;
    const BATCHES: usize = 80;
    let mut ids = Vec::new();
    for i in 0..BATCHES {
        let url = if i % 2 == 0 {
            a.url(STOCK)
        } else {
            b.url(STOCK)
        };
        ids.push(submit(&url, &[(&format!("SKU-{:05}", 1 + i), "WH-IST", 1)], false).await);
    }
    for (i, id) in ids.iter().enumerate() {
        // Either instance answers for any batch: the store is shared.
        let url = if i % 2 == 0 {
            b.url(STOCK)
        } else {
            a.url(STOCK)
        };
        let (_, r) = wait_final(&url, *id, Duration::from_secs(30)).await;
        assert_eq!(r.text_of("status").as_deref(), Some("done"), "{}", r.body);
    }
    let s = stats(&ch).await;
    assert_eq!(applied_once(&s), BATCHES);
    assert_eq!(s["deliveries"], BATCHES as u64, "{s}");
    assert_eq!(
        s["duplicate_deliveries"], 0,
        "no batch was delivered twice: {s}"
    );
    drop((a, b));
    let store = soapbridge::store::Store::open(&pg, &schema).await.unwrap();
    let _ = store.drop_schema().await;
}

#[tokio::test]
async fn a_signature_used_on_one_instance_is_refused_on_the_other() {
    let pg = pg_url().await;
    let schema = format!("sb_sig_{}", std::process::id());
    let cfg = demo_on_postgres(&pg, &schema);
    let a = Bridge::with_config(&cfg).await;
    let b = Bridge::with_config(&cfg).await;
    let env = common::envelope(
        "calculateOptionsPrice",
        "<productIds><item>587300354</item></productIds>",
        "en",
        now_ms(),
    );
    let first = soap(&a.url(OPTION_PATH), USER, env.clone()).await;
    first.assert_success();
    let again = soap(&b.url(OPTION_PATH), USER, env).await;
    assert_eq!(
        again.text_of("errorCode").as_deref(),
        Some("SIGNATURE_REUSED"),
        "{}",
        again.body
    );
    drop((a, b));
    let store = soapbridge::store::Store::open(&pg, &schema).await.unwrap();
    let _ = store.drop_schema().await;
}
