//! `soapbridge-reference`: runs one reference backend on its own.
#![forbid(unsafe_code)]

use std::path::PathBuf;

const USAGE: &str = "usage: soapbridge-reference --kind <product-options|dia|datawiz|flexi|stock> [--data FILE] [--listen ADDR]\n       soapbridge-reference --kind legacy --data FIXTURE_DIR [--listen ADDR]   (a legacy server stand-in answering as the fixtures say)\n       soapbridge-reference --kind proxy --upstream http://HOST:PORT [--listen ADDR]   (a bare pass-through proxy, for benchmarks)";

fn main() {
    let mut kind = String::from("product-options");
    let mut data: Option<PathBuf> = None;
    let mut listen = String::from("127.0.0.1:8081");
    let mut upstream: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || {
            args.next().unwrap_or_else(|| {
                eprintln!("{a} needs a value\n{USAGE}");
                std::process::exit(2)
            })
        };
        match a.as_str() {
            "--kind" => kind = value(),
            "--data" => data = Some(PathBuf::from(value())),
            "--listen" => listen = value(),
            "--upstream" => upstream = Some(value()),
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            other => {
                eprintln!("unknown argument {other}\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    let data = data.unwrap_or_else(|| PathBuf::from(format!("fixtures/reference/{kind}.json")));
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    rt.block_on(async {
        let listener = match tokio::net::TcpListener::bind(&listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cannot listen on {listen}: {e}");
                std::process::exit(1);
            }
        };
        let started = match (&*kind, &upstream) {
            ("proxy", Some(u)) => soapbridge_reference::spawn_proxy(u, listener),
            ("proxy", None) => Err(format!("--kind proxy needs --upstream\n{USAGE}")),
            _ => soapbridge_reference::spawn(&kind, &data, listener),
        };
        match started {
            Ok(addr) => eprintln!("reference backend {kind} listening on {addr}"),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        }
        let _ = tokio::signal::ctrl_c().await;
    });
}
