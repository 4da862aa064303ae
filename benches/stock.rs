//! Stock sync: asynchronous stock lists accepted per second (each durably stored before the
//! answer) on SQLite and on PostgreSQL, and the time from acceptance to delivery to the channel
//! at that rate, beside synchronous lists through the same bridge (the baseline, measured in the
//! same run). `cargo bench --bench stock`; PostgreSQL rows need `SOAPBRIDGE_TEST_PG` (or
//! `BENCH_PG`) naming a server.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // a test (or benchmark) may unwrap and print

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use soapbridge::app::App;
use soapbridge::config::Config;

const CLIENTS: usize = 16;

fn envelope(sync: bool, i: u64) -> String {
    format!(
        "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:stk=\"urn:soapbridge:akinon:stock\"><soapenv:Body><stk:updateProductStocks><isSync>{sync}</isSync><stocks><stock><sku>SKU-{:05}</sku><warehouseCode>WH-IST</warehouseCode><quantity>{}</quantity></stock></stocks></stk:updateProductStocks></soapenv:Body></soapenv:Envelope>",
        1 + i % 5000,
        i % 100
    )
}

async fn start(store_url: &str, schema: &str) -> (String, Arc<App>) {
    let text = std::fs::read_to_string("demo/soapbridge.toml")
        .unwrap()
        .replace(
            "url = \"sqlite:../var/soapbridge.db\"",
            &format!("url = \"{store_url}\"\nschema = \"{schema}\""),
        )
        .replace("workers = 4 ", "workers = 8 ");
    let mut cfg = Config::from_toml(&text, Path::new("demo/bench.toml")).unwrap();
    // The sales channel (a reference backend) in this process.
    let channel = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let channel =
        soapbridge_reference::spawn("stock", Path::new("fixtures/reference/stock.json"), channel)
            .unwrap();
    cfg.raw
        .backends
        .get_mut("channel")
        .unwrap()
        .get_mut()
        .base_url = format!("http://{channel}");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    cfg.raw.server.listen = Some(listener.local_addr().unwrap());
    let app = Arc::new(App::start(cfg.compile().unwrap()).await.unwrap());
    let url = format!(
        "http://{}/stock/ws/StockService",
        listener.local_addr().unwrap()
    );
    tokio::spawn(soapbridge::server::run(
        listener,
        app.clone(),
        std::future::pending(),
    ));
    (url, app)
}

/// Sends calls from CLIENTS connections for `dur` (as fast as answered, or `paced` calls per
/// second in all); returns calls/s and the (sorted) latencies.
async fn load(url: &str, sync: bool, dur: Duration) -> (f64, Vec<Duration>) {
    load_at(url, sync, dur, None).await
}

async fn load_at(url: &str, sync: bool, dur: Duration, paced: Option<f64>) -> (f64, Vec<Duration>) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let n = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (client, url, n) = (client.clone(), url.to_string(), n.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut tick = paced.map(|r| {
                let mut t = tokio::time::interval(Duration::from_secs_f64(CLIENTS as f64 / r));
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            while started.elapsed() < dur {
                if let Some(t) = tick.as_mut() {
                    t.tick().await;
                }
                let i = n.fetch_add(1, Ordering::Relaxed);
                let req = http::Request::post(&url)
                    .header("content-type", "text/xml")
                    .header("authorization", "Basic c3RvY2s6c3RvY2stcGFzcw==")
                    .body(Full::new(Bytes::from(envelope(sync, i))))
                    .unwrap();
                let t = Instant::now();
                let r = client.request(req).await.unwrap();
                assert_eq!(r.status(), 200);
                let body = r.into_body().collect().await.unwrap().to_bytes();
                assert!(body.windows(7).any(|w| w == b"<status"));
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let rate = lat.len() as f64 / started.elapsed().as_secs_f64();
    lat.sort();
    (rate, lat)
}

fn pct(v: &[Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[((v.len() - 1) as f64 * p) as usize]
}

async fn row(label: &str, store_url: &str, schema: &str, dur: Duration) {
    let (url, app) = start(store_url, schema).await;
    // Warm-up.
    load(&url, true, Duration::from_millis(300)).await;
    let (sync_rate, sync_lat) = load(&url, true, dur).await;
    let (rate, lat) = load(&url, false, dur).await;
    let (drained, to_delivery) = delivered_since(&app, 0).await;
    // The same at a paced rate the workers keep up with: the delay a batch sees on its own.
    let paced_from = chrono::Utc::now().timestamp_millis();
    let (paced_rate, _) = load_at(&url, false, dur, Some(PACED)).await;
    let (_, paced_delivery) = delivered_since(&app, paced_from).await;
    println!(
        "| {label} | {:.0} | {:.1?} / {:.1?} | {rate:.0} | {:.1?} / {:.1?} | {} | {:.1?} / {:.1?} | {:.1?} | {paced_rate:.0}: {:.1?} / {:.1?} |",
        sync_rate,
        pct(&sync_lat, 0.5),
        pct(&sync_lat, 0.99),
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        to_delivery.len(),
        pct(&to_delivery, 0.5),
        pct(&to_delivery, 0.99),
        drained,
        pct(&paced_delivery, 0.5),
        pct(&paced_delivery, 0.99),
    );
}

/// The asynchronous calls paced at this many per second, for the second latency column.
const PACED: f64 = 200.0;

/// Waits until no batch is pending; returns how long that took and the acceptance -> delivery
/// times of the batches accepted since `from_ms`.
async fn delivered_since(app: &App, from_ms: i64) -> (Duration, Vec<Duration>) {
    let store = app.store().unwrap().clone();
    let started = Instant::now();
    loop {
        let counts = store.counts().await.unwrap();
        let pending: i64 = counts
            .iter()
            .filter(|(s, _)| !s.is_final())
            .map(|(_, n)| n)
            .sum();
        if pending == 0 || started.elapsed() > Duration::from_secs(120) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drained = started.elapsed();
    let batches = store
        .batches(Some(soapbridge::store::BatchStatus::Done), 1_000_000)
        .await
        .unwrap();
    let mut t: Vec<Duration> = batches
        .iter()
        .filter(|b| b.created_at >= from_ms)
        .filter_map(|b| {
            Some(Duration::from_millis(
                (b.sent_at? - b.created_at).max(0) as u64
            ))
        })
        .collect();
    t.sort();
    (drained, t)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dur = Duration::from_millis(
        std::env::var("BENCH_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3000),
    );
    println!(
        "stock lists of one item, {CLIENTS} keep-alive connections, {:.1?} per measurement, bridge and channel in one process on this machine\n",
        dur
    );
    println!(
        "| store | sync lists/s (baseline) | sync p50 / p99 | async accepted/s | accept p50 / p99 | batches delivered | acceptance -> delivery p50 / p99 at that rate | backlog drained after | async lists/s paced: acceptance -> delivery p50 / p99 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let dir = std::env::temp_dir().join(format!("soapbridge-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    row(
        "SQLite (WAL)",
        &format!("sqlite:{}", dir.join("bench.db").display()),
        "x",
        dur,
    )
    .await;
    match std::env::var("BENCH_PG").or_else(|_| std::env::var("SOAPBRIDGE_TEST_PG")) {
        Ok(pg) if !pg.is_empty() => {
            let schema = format!("sb_bench_{}", std::process::id());
            row("PostgreSQL", &pg, &schema, dur).await;
            if let Ok(store) = soapbridge::store::Store::open(&pg, &schema).await {
                let _ = store.drop_schema().await;
            }
        }
        _ => println!("| PostgreSQL | (set SOAPBRIDGE_TEST_PG or BENCH_PG) | | | | | | | |"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}
