//! Throughput and latency of calculateOptionsPrice through the bridge, beside a bare hyper
//! pass-through proxy (no conversion) in front of the same reference backend, in the same run;
//! then the resident memory of the bridge binary holding 1,000 idle keep-alive connections.
//!
//! Then telemetry's cost: two bridges on the same backend, one counting metrics and writing a
//! JSON log line per call (at info, to a sink), one with `server.metrics = false` and logs off,
//! measured in alternating slices.
//!
//! `cargo bench --bench throughput` (BENCH_SECS, BENCH_CONCURRENCY to change the load).
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // a test (or benchmark) may unwrap and print

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use soapbridge::app::App;
use soapbridge::config::Config;

const KEY: &str = "NjgEHGeJc6cFqbw6FSUP8NpH3pUhV7ss";
const SECRET: &str = "demo-secret-change-me";
const NS: &str = "https://product.option.individual.ws.listingapi.gg.com";

/// The demo's fixture account: reused signatures allowed, so no call writes the signature ledger.
const FIXTURE_KEY: &str = "fixtureKey0000000000000000000000";
const FIXTURE_SECRET: &str = "fixture-secret";

fn envelope(time: i64) -> String {
    envelope_of(KEY, SECRET, time)
}

fn envelope_of(key: &str, secret: &str, time: i64) -> String {
    let sign = soapbridge::sign(key, secret, time);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:prod=\"{NS}\"><soapenv:Header/><soapenv:Body><prod:calculateOptionsPrice><apiKey>{key}</apiKey><sign>{sign}</sign><time>{time}</time><productIds><item>587300354</item><item>587300355</item></productIds><lang>tr</lang></prod:calculateOptionsPrice></soapenv:Body></soapenv:Envelope>"
    )
}

#[derive(Default)]
struct Stats {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

struct Summary {
    requests: usize,
    rps: f64,
    p50: Duration,
    p99: Duration,
}

impl Stats {
    fn add(&mut self, other: Stats) {
        self.latencies.extend(other.latencies);
        self.elapsed += other.elapsed;
    }

    fn summary(mut self) -> Summary {
        self.latencies.sort();
        let all = &self.latencies;
        let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
        Summary {
            requests: all.len(),
            rps: all.len() as f64 / self.elapsed.as_secs_f64(),
            p50: pct(0.50),
            p99: pct(0.99),
        }
    }
}

/// Drives `concurrency` keep-alive connections for `dur`; `make` builds each request.
async fn load(
    concurrency: usize,
    dur: Duration,
    make: Arc<dyn Fn() -> Request<Full<Bytes>> + Send + Sync>,
    expect: &'static str,
) -> Stats {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(concurrency)
        .build(connector);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while start.elapsed() < dur {
                let t = Instant::now();
                let resp = client.request(make()).await.expect("request");
                let ok = resp.status().is_success();
                let body = resp.into_body().collect().await.expect("body").to_bytes();
                assert!(
                    ok && body.windows(expect.len()).any(|w| w == expect.as_bytes()),
                    "unexpected answer: {}",
                    String::from_utf8_lossy(&body)
                );
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    Stats {
        latencies: all,
        elapsed: start.elapsed(),
    }
}

/// A bare pass-through proxy: forwards the body to the backend's voucher endpoint unchanged.
async fn start_proxy(backend: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let target = format!("{backend}/v1/vouchers");
    tokio::spawn(soapbridge::server::serve(
        listener,
        move |req: Request<soapbridge::server::Body>| {
            let client = client.clone();
            let target = target.clone();
            async move {
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let fwd = Request::post(&target)
                    .header("content-type", "application/json")
                    .body(Full::new(body))
                    .unwrap();
                let resp = client.request(fwd).await.unwrap();
                let status = resp.status();
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Full::new(body))
                    .unwrap()
            }
        },
        Default::default(),
        std::future::pending(),
    ));
    format!("http://{addr}")
}

fn rss_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Starts the real binary with the demo configuration, opens `n` keep-alive connections that
/// each make one request and then stay idle, and reads the process's resident memory.
fn idle_connections_memory(n: usize) -> (u64, u64, u64) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_soapbridge"))
        .args([
            "serve",
            "--config",
            "demo/soapbridge.toml",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("SOAPBRIDGE_LOG", "warn")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("bridge binary starts");
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "bridge did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = rss_kb(child.id(), "VmRSS:");
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = std::net::TcpStream::connect(&addr).expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 256];
        let got = s.read(&mut buf).unwrap();
        assert!(
            buf[..got].starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&buf[..got])
        );
        conns.push(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kb(child.id(), "VmRSS:");
    let peak = rss_kb(child.id(), "VmHWM:");
    drop(conns);
    let _ = child.kill();
    let _ = child.wait();
    (before, after, peak)
}

fn main() {
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let concurrency: usize = std::env::var("BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    // Logs are switched on and off per slice (JSON lines to a sink: the formatting is paid, the
    // writing to a terminal is not).
    use tracing_subscriber::prelude::*;
    let (filter, logs) =
        tracing_subscriber::reload::Layer::new(tracing_subscriber::EnvFilter::new("off"));
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true)
                .with_span_list(false)
                .with_writer(std::io::sink),
        )
        .init();
    let set_logs = move |level: &str| {
        logs.reload(tracing_subscriber::EnvFilter::new(level))
            .unwrap();
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // The reference backend, shared by both paths.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backend = soapbridge_reference::spawn(
            "product-options",
            std::path::Path::new("fixtures/reference/product-options.json"),
            listener,
        )
        .unwrap();
        let backend = format!("http://{backend}");

        // A store of this run's own: the signature ledger outlives a process, and this run's
        // signatures must not meet an earlier run's.
        let store = std::env::temp_dir().join(format!("soapbridge-bench-{}.db", std::process::id()));
        let text = std::fs::read_to_string("demo/soapbridge.toml")
            .unwrap()
            .replace("base_url = \"http://127.0.0.1:8081\"", &format!("base_url = \"{backend}\""))
            .replace("url = \"sqlite:../var/soapbridge.db\"", &format!("url = \"sqlite:{}\"", store.display()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut cfg = Config::from_toml(&text, std::path::Path::new("demo/bench.toml")).unwrap();
        cfg.raw.server.listen = Some(listener.local_addr().unwrap());
        let app = Arc::new(App::start(cfg.compile().unwrap()).await.unwrap());
        let bridge = format!("http://{}/listingapi/ws/IndividualProductOptionService", listener.local_addr().unwrap());
        let reuse_url = bridge.clone();
        tokio::spawn(soapbridge::server::run(listener, app, std::future::pending()));
        let proxy = start_proxy(backend.clone()).await;

        // Every bridge call is signed with its own time (reused signatures are refused). The
        // envelopes are signed ahead of time, outside the measured slices, so that signing (client
        // work) does not count against the bridge; the pass-through client sends a fixed body.
        let clock = Arc::new(AtomicI64::new(chrono::Utc::now().timestamp_millis()));
        let pool: Arc<std::sync::Mutex<Vec<Bytes>>> = Arc::default();
        let refill = {
            let pool = pool.clone();
            let clock = clock.clone();
            move |n: usize| {
                let mut p = pool.lock().unwrap();
                while p.len() < n {
                    p.push(Bytes::from(envelope(clock.fetch_sub(1, Ordering::Relaxed))));
                }
            }
        };
        let bridge_req: Arc<dyn Fn() -> Request<Full<Bytes>> + Send + Sync> = Arc::new(move || {
            let body = pool.lock().unwrap().pop();
            let body = body.unwrap_or_else(|| Bytes::from(envelope(clock.fetch_sub(1, Ordering::Relaxed))));
            Request::post(&bridge)
                .header("content-type", "text/xml; charset=utf-8")
                .header("soapaction", "\"\"")
                .header("authorization", "Basic ZGVtbzpkZW1vLXJvbGUtcGFzcw==")
                .body(Full::new(body))
                .unwrap()
        });
        // A call by an account that may reuse its signature: no ledger write per call.
        let call = |url: String| -> Arc<dyn Fn() -> Request<Full<Bytes>> + Send + Sync> {
            let body = Bytes::from(envelope_of(FIXTURE_KEY, FIXTURE_SECRET, chrono::Utc::now().timestamp_millis()));
            Arc::new(move || {
                Request::post(&url)
                    .header("content-type", "text/xml; charset=utf-8")
                    .header("soapaction", "\"\"")
                    .header("authorization", "Basic Zml4dHVyZTpmaXh0dXJlLXBhc3M=")
                    .body(Full::new(body.clone()))
                    .unwrap()
            })
        };
        let reuse_req = call(reuse_url);
        let proxy_body = Bytes::from_static(b"{\"product_ids\":[587300354,587300355]}");
        let proxy_req: Arc<dyn Fn() -> Request<Full<Bytes>> + Send + Sync> = Arc::new(move || {
            Request::post(&proxy).header("content-type", "application/json").body(Full::new(proxy_body.clone())).unwrap()
        });

        // BENCH_ONLY=telemetry: the telemetry comparison alone.
        let only_telemetry = std::env::var("BENCH_ONLY").is_ok_and(|v| v == "telemetry");
        if !only_telemetry {
        // Warm both paths, then measure them in alternating one-second slices, so that drift
        // (backend state growing, other load on the machine) falls on both alike.
        load(concurrency, Duration::from_millis(500), proxy_req.clone(), "\"amount\"").await;
        load(concurrency, Duration::from_millis(500), bridge_req.clone(), "<ackCode>success</ackCode>").await;
        load(concurrency, Duration::from_millis(500), reuse_req.clone(), "<ackCode>success</ackCode>").await;
        let mut p = Stats::default();
        let mut b = Stats::default();
        let mut r = Stats::default();
        for round in 0..secs {
            let slice = Duration::from_secs(1);
            refill(60_000);
            if round % 2 == 0 {
                p.add(load(concurrency, slice, proxy_req.clone(), "\"amount\"").await);
                b.add(load(concurrency, slice, bridge_req.clone(), "<ackCode>success</ackCode>").await);
                r.add(load(concurrency, slice, reuse_req.clone(), "<ackCode>success</ackCode>").await);
            } else {
                r.add(load(concurrency, slice, reuse_req.clone(), "<ackCode>success</ackCode>").await);
                b.add(load(concurrency, slice, bridge_req.clone(), "<ackCode>success</ackCode>").await);
                p.add(load(concurrency, slice, proxy_req.clone(), "\"amount\"").await);
            }
        }
        let (p, b, r) = (p.summary(), b.summary(), r.summary());
        let ratio = b.rps / p.rps;
        println!("calculateOptionsPrice, {concurrency} keep-alive connections, {secs} alternating 1 s slices per path, one process on this machine ({} cores)", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0));
        println!();
        println!("| path | requests | requests/s | p50 | p99 |");
        println!("|---|---|---|---|---|");
        println!("| pass-through hyper proxy -> backend (baseline) | {} | {:.0} | {:.2?} | {:.2?} |", p.requests, p.rps, p.p50, p.p99);
        println!("| soapbridge (SOAP -> JSON -> SOAP, signed) -> backend | {} | {:.0} | {:.2?} | {:.2?} |", b.requests, b.rps, b.p50, b.p99);
        println!("| the same, reused signatures allowed (no signature ledger write) | {} | {:.0} | {:.2?} | {:.2?} |", r.requests, r.rps, r.p50, r.p99);
        println!();
        println!("signature ledger in the store (SQLite, one insert per call): {:.0}% of the throughput without it", b.rps / r.rps * 100.0);
        println!("bridge throughput = {:.0}% of the pass-through proxy (target >= 70%): {}", ratio * 100.0, if ratio >= 0.7 { "met" } else { "NOT met" });
        }

        // Telemetry on and off: two more bridges (reused signatures allowed, no ledger writes).
        let mut urls = Vec::new();
        for metrics in [true, false] {
            let store = std::env::temp_dir().join(format!("soapbridge-bench-{}-{metrics}.db", std::process::id()));
            let text = text
                .replace("[server]\n", &format!("[server]\nmetrics = {metrics}\n"))
                .replace(&format!("url = \"sqlite:{}\"", std::env::temp_dir().join(format!("soapbridge-bench-{}.db", std::process::id())).display()), &format!("url = \"sqlite:{}\"", store.display()));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut cfg = Config::from_toml(&text, std::path::Path::new("demo/bench.toml")).unwrap();
            cfg.raw.server.listen = Some(listener.local_addr().unwrap());
            let app = Arc::new(App::start(cfg.compile().unwrap()).await.unwrap());
            urls.push(format!("http://{}/listingapi/ws/IndividualProductOptionService", listener.local_addr().unwrap()));
            tokio::spawn(soapbridge::server::run(listener, app, std::future::pending()));
        }
        let (on_req, off_req) = (call(urls[0].clone()), call(urls[1].clone()));
        load(concurrency, Duration::from_millis(500), on_req.clone(), "<ackCode>success</ackCode>").await;
        load(concurrency, Duration::from_millis(500), off_req.clone(), "<ackCode>success</ackCode>").await;
        let (mut on, mut quiet, mut off) = (Stats::default(), Stats::default(), Stats::default());
        for round in 0..secs {
            let slice = Duration::from_secs(1);
            let mut order = [0, 1, 2];
            order.rotate_left(round as usize % 3);
            for which in order {
                match which {
                    0 => {
                        set_logs("info");
                        on.add(load(concurrency, slice, on_req.clone(), "<ackCode>success</ackCode>").await);
                    }
                    1 => {
                        set_logs("off");
                        quiet.add(load(concurrency, slice, on_req.clone(), "<ackCode>success</ackCode>").await);
                    }
                    _ => {
                        set_logs("off");
                        off.add(load(concurrency, slice, off_req.clone(), "<ackCode>success</ackCode>").await);
                    }
                }
            }
        }
        set_logs("off");
        let (on, quiet, off) = (on.summary(), quiet.summary(), off.summary());
        let share = on.rps / off.rps;
        println!();
        println!("| telemetry (reused signatures allowed) | requests | requests/s | p50 | p99 |");
        println!("|---|---|---|---|---|");
        println!("| on: metrics counted, request id and user on a JSON log line per call | {} | {:.0} | {:.2?} | {:.2?} |", on.requests, on.rps, on.p50, on.p99);
        println!("| metrics counted, logs off | {} | {:.0} | {:.2?} | {:.2?} |", quiet.requests, quiet.rps, quiet.p50, quiet.p99);
        println!("| off: server.metrics = false, logs off | {} | {:.0} | {:.2?} | {:.2?} |", off.requests, off.rps, off.p50, off.p99);
        println!();
        println!("telemetry on = {:.1}% of off (target: within 5%): {}", share * 100.0, if share >= 0.95 { "met" } else { "NOT met" });
        println!("metrics alone = {:.1}% of off", quiet.rps / off.rps * 100.0);
    });
    drop(rt);
    if std::env::var("BENCH_ONLY").is_ok_and(|v| v == "telemetry") {
        return;
    }

    let (before, after, peak) = idle_connections_memory(1000);
    println!();
    println!("| soapbridge binary, demo config | VmRSS |");
    println!("|---|---|");
    println!("| started, idle | {:.1} MB |", before as f64 / 1024.0);
    println!(
        "| holding 1,000 idle keep-alive connections | {:.1} MB (peak {:.1} MB) |",
        after as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    println!();
    println!(
        "memory with 1,000 idle keep-alive connections under 64 MB: {}",
        if after < 64 * 1024 { "met" } else { "NOT met" }
    );
}
