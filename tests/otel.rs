//! OpenTelemetry export (feature `otel`): the bridge binary sends each request's span to an
//! OTLP/HTTP collector (here a fake one on 127.0.0.1 that keeps what it is sent).
//!
//! `cargo test --features otel --test otel` (`.ci/run` runs it).
#![cfg(feature = "otel")]
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // a test may unwrap and print

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

/// What the collector was sent: (path, body).
type Posts = Vec<(String, Vec<u8>)>;

#[tokio::test]
async fn each_request_span_is_exported_with_its_request_id_and_user() {
    // The collector: every body POSTed to /v1/traces (protobuf: strings travel as they are).
    let received: Arc<Mutex<Posts>> = Arc::default();
    let sink = received.clone();
    let collector = json_backend(move |req, body| {
        let sink = sink.clone();
        async move {
            sink.lock()
                .unwrap()
                .push((req.uri.path().to_string(), body.to_vec()));
            (200, String::new())
        }
    })
    .await;
    // The bridge binary on the demo configuration, its options backend a reference one.
    let options = reference("product-options", "fixtures/reference/product-options.json").await;
    let dir = std::env::temp_dir().join(format!("soapbridge-otel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = demo_with_backend_url("options", &options)
        .replace(
            "url = \"sqlite:../var/soapbridge.db\"",
            &format!("url = \"sqlite:{}/store.db\"", dir.display()),
        )
        .replace("../wsdl/", &format!("{}/wsdl/", env!("CARGO_MANIFEST_DIR")));
    let file = dir.join("bridge.toml");
    std::fs::write(&file, config).unwrap();
    /// Killed however the test ends.
    struct Child(std::process::Child);
    impl Drop for Child {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_soapbridge"))
            .args(["serve", "--config"])
            .arg(&file)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector)
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .env("SOAPBRIDGE_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let url = format!("http://127.0.0.1:{port}{OPTION_PATH}");
    request(
        "POST",
        &url,
        &[
            ("content-type", "text/xml"),
            ("authorization", &basic(FIXTURE_USER)),
            ("x-request-id", "otel-check-4711"),
        ],
        fixture("option/calculateOptionsPrice.xml"),
    )
    .await
    .assert_success();

    // The span is exported (in a batch within 100 ms, or at the latest when the bridge stops).
    let seen = |what: &str| {
        received.lock().unwrap().iter().any(|(path, body)| {
            path == "/v1/traces" && body.windows(what.len()).any(|w| w == what.as_bytes())
        })
    };
    for _ in 0..100 {
        if seen("otel-check-4711") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status();
    assert!(
        seen("otel-check-4711"),
        "no span with the request id reached the collector"
    );
    assert!(
        seen("request_id") && seen("soapbridge"),
        "attributes and service name"
    );
    assert!(seen("fixture"), "the authenticated user is an attribute");
    let _ = std::fs::remove_dir_all(&dir);
}
