//! Memory under hostile input: the release `soapbridge` binary, alone in its process (its
//! reference backends run in this one), answers rounds of 8 concurrent hostile requests; its
//! peak resident memory (VmHWM) is read after each kind and compared with the same process's
//! memory when idle, measured in the same run.
//!
//! `cargo bench --bench hostile` (HOSTILE_ROUNDS to change the rounds, default 3).
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // a benchmark may unwrap and print

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

const TARGET_MB: f64 = 100.0;
const CONCURRENT: usize = 8;

fn rss_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn basic(user: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user)
    )
}

/// Sends one request (head and body written whole, as legacy clients do) and reads the status.
fn exchange(addr: SocketAddr, head: &str, body: &[u8]) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    // A body written in 1 MiB pieces; the bridge may answer before reading it all.
    for chunk in body.chunks(1024 * 1024) {
        if s.write_all(chunk).is_err() {
            break;
        }
    }
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// `id = 0 or id = 1 or ...` with `n` comparisons.
fn or_filter(n: usize) -> String {
    (0..n)
        .map(|i| format!("id = {i}"))
        .collect::<Vec<_>>()
        .join(" or ")
}

struct Hostile {
    name: &'static str,
    head: String,
    body: Vec<u8>,
}

fn hostile_inputs() -> Vec<Hostile> {
    let flexi = basic("winstrom:winstrom-pass");
    let doc = serde_json::json!({"winstrom": {"cenik": [{"@filter": or_filter(60_000), "@action": "delete"}]}})
        .to_string()
        .into_bytes();
    let big = vec![b'x'; 64 * 1024 * 1024];
    let items: String = (0..8000)
        .map(|i| format!("<item>{}</item>", 587_300_000 + i))
        .collect();
    let env = format!(
        "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:prod=\"https://product.option.individual.ws.listingapi.gg.com\"><soapenv:Body><prod:getOptionFeaturesInfo><apiKey>fixtureKey0000000000000000000000</apiKey><sign>{}</sign><time>1</time><productIds>{items}</productIds><lang>en</lang></prod:getOptionFeaturesInfo></soapenv:Body></soapenv:Envelope>",
        soapbridge::sign("fixtureKey0000000000000000000000", "fixture-secret", 1)
    );
    let soap = basic("fixture:fixture-pass");
    vec![
        Hostile {
            name: "winstrom document, filter of 60,000 `or` terms (937 KiB)",
            head: format!(
                "POST /c/demo/cenik.json HTTP/1.1\r\nHost: b\r\nAuthorization: {flexi}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                doc.len()
            ),
            body: doc,
        },
        Hostile {
            name: "SOAP body of 64 MiB, written whole before reading",
            head: format!(
                "POST /listingapi/ws/IndividualProductOptionService HTTP/1.1\r\nHost: b\r\nAuthorization: {soap}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n",
                big.len()
            ),
            body: big,
        },
        Hostile {
            name: "getOptionFeaturesInfo with 8,000 product ids",
            head: format!(
                "POST /listingapi/ws/IndividualProductOptionService HTTP/1.1\r\nHost: b\r\nAuthorization: {soap}\r\nContent-Type: text/xml\r\nSOAPAction: \"\"\r\nContent-Length: {}\r\n\r\n",
                env.len()
            ),
            body: env.into_bytes(),
        },
    ]
}

fn main() {
    let rounds: usize = std::env::var("HOSTILE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    // The reference backends, in this process, on free ports.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut config = std::fs::read_to_string("demo/soapbridge.toml").unwrap();
    let backends = soapbridge_reference::demo_backends(Path::new("demo/reference.toml")).unwrap();
    for b in &backends {
        let addr = rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            soapbridge_reference::spawn(&b.kind, &b.data, l).unwrap()
        });
        let header = format!("[backends.{}]\n", b.name);
        let start = config.find(&header).unwrap() + header.len();
        let line = start + config[start..].find("base_url = ").unwrap();
        let end = line + config[line..].find('\n').unwrap();
        config.replace_range(line..end, &format!("base_url = \"http://{addr}\""));
    }
    let dir = std::env::temp_dir().join(format!("soapbridge-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let root = std::fs::canonicalize(".").unwrap();
    let config = config
        .replace("\"../", &format!("\"{}/", root.display()))
        .replace(
            "url = \"sqlite:",
            &format!("url = \"sqlite:{}/store-", dir.display()),
        );
    let cfg_path = dir.join("bridge.toml");
    std::fs::write(&cfg_path, config).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_soapbridge"))
        .args([
            "serve",
            "--config",
            cfg_path.to_str().unwrap(),
            "--listen",
            &addr.to_string(),
        ])
        .env("SOAPBRIDGE_LOG", "warn")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the bridge binary starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "the bridge did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = child.id();
    let idle = rss_kb(pid, "VmRSS:");
    println!(
        "{CONCURRENT} concurrent hostile requests per round, {rounds} rounds each; the bridge alone in its process (release build)"
    );
    println!();
    println!("| input | answers | peak RSS after | target |");
    println!("|---|---|---|---|");
    println!(
        "| (baseline) idle after start | - | {:.1} MB | - |",
        idle as f64 / 1024.0
    );
    let mut worst = 0u64;
    for h in hostile_inputs() {
        let mut statuses = std::collections::BTreeMap::new();
        for _ in 0..rounds {
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..CONCURRENT)
                    .map(|_| s.spawn(|| exchange(addr, &h.head, &h.body)))
                    .collect();
                for hd in handles {
                    *statuses.entry(hd.join().unwrap()).or_insert(0) += 1;
                }
            });
        }
        let peak = rss_kb(pid, "VmHWM:");
        worst = worst.max(peak);
        let answers: Vec<String> = statuses.iter().map(|(s, n)| format!("{n}x {s}")).collect();
        println!(
            "| {} | {} | {:.1} MB | < {TARGET_MB:.0} MB: {} |",
            h.name,
            answers.join(", "),
            peak as f64 / 1024.0,
            if (peak as f64 / 1024.0) < TARGET_MB {
                "met"
            } else {
                "NOT met"
            }
        );
    }
    println!();
    println!(
        "peak RSS under hostile input: {:.1} MB ({:.1} MB above idle); target < {TARGET_MB:.0} MB: {}",
        worst as f64 / 1024.0,
        (worst - idle.min(worst)) as f64 / 1024.0,
        if (worst as f64 / 1024.0) < TARGET_MB {
            "met"
        } else {
            "NOT met"
        }
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
