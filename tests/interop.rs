//! Interop: Python's zeep, a real SOAP client, drives the bridge from its served WSDL with no
//! customisation (`tests/interop/zeep_client.py`).
//!
//! zeep comes from `pip install -r tests/requirements.txt` (the README's test command and
//! `.ci/run` do this). Without it the test says so and passes, unless
//! `SOAPBRIDGE_REQUIRE_INTEROP=1` (set by `.ci/run`), where a missing zeep fails it.

mod common;

use common::*;

fn zeep_available() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import zeep"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zeep_calls_every_operation_from_the_served_wsdl() {
    if !zeep_available() {
        assert!(
            std::env::var("SOAPBRIDGE_REQUIRE_INTEROP").is_err(),
            "zeep is required here: pip install -r tests/requirements.txt"
        );
        eprintln!("SKIPPED: zeep is not installed (pip install -r tests/requirements.txt)");
        return;
    }
    let bridge = Bridge::demo().await;
    let base = format!("http://{}", bridge.addr);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args(["tests/interop/zeep_client.py", &base])
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "zeep client failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("zeep interop: 9 calls OK"),
        "stdout:\n{stdout}"
    );
}
