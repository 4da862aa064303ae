//! The `soapbridge` command as a user runs it.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // a test (or benchmark) may unwrap and print

use std::process::Command;

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_soapbridge"))
        .args(args)
        .env("SOAPBRIDGE_LOG", "error")
        .output()
        .expect("binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_prints_each_operation_and_its_backend_call() {
    let (ok, out, err) = run(&["check", "--config", "demo/soapbridge.toml"]);
    assert!(ok, "{err}");
    assert!(out.contains("demo/soapbridge.toml: OK"), "{out}");
    assert!(
        out.contains(
            "IndividualProductOptionService /listingapi/ws/IndividualProductOptionService"
        ),
        "{out}"
    );
    assert!(out.contains("payPrice                 -> POST http://127.0.0.1:8081/v1/vouchers/{$.paymentVoucher}/payments"), "{out}");
    assert!(
        out.contains(
            "listAllInventory         -> GET http://127.0.0.1:8083/api/v1/product-inventory/ (every page)"
        ),
        "{out}"
    );
    assert!(out.contains("uploadInventory          -> POST http://127.0.0.1:8083/api/v1/product-inventory/ (in batches of 1000)"), "{out}");
    assert!(out.contains("action prepocti-nakupni-cenu -> POST http://127.0.0.1:8084/v1/{$.tenant}/boms/{$.id}:recalculate"), "{out}");
    assert!(
        out.contains("winstrom /c/test (tenant test, profile flexi-test-users)"),
        "{out}"
    );
    assert!(
        out.contains("getStockBatchRequest     -> stock sync: one batch from the store"),
        "{out}"
    );
    assert!(out.contains("stock sync: 4 workers, store sqlite"), "{out}");
    // 26 SOAP/XML-RPC operations, 2 companies x (5 cenik + 5 kusovnik) winstrom routes, the
    // stock sync's send and poll.
    assert_eq!(out.matches(" -> ").count(), 48, "{out}");
}

#[test]
fn check_reports_file_key_and_reason() {
    let dir = std::env::temp_dir().join(format!("soapbridge-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("bad.toml");
    let demo = std::fs::read_to_string("demo/soapbridge.toml").unwrap();
    // The demo configuration, moved elsewhere: its relative paths made absolute.
    let root = std::fs::canonicalize(".").unwrap();
    let demo = demo.replace("\"../", &format!("\"{}/", root.display()));
    // Two problems at once: a path template without its '/', and a secret from an environment
    // variable that is not set. Both are reported, each with its line.
    let bad = demo
        .replace("path = \"/v1/vouchers\"\n", "path = \"v1/vouchers\"\n")
        .replace(
            "secret = \"demo-secret-change-me\"",
            "secret = { env = \"SOAPBRIDGE_CLI_TEST_UNSET\" }",
        );
    std::fs::write(&cfg, &bad).unwrap();
    let line_of = |needle: &str| bad[..bad.find(needle).unwrap()].matches('\n').count() + 1;
    let (ok, _, err) = run(&["check", "--config", cfg.to_str().unwrap()]);
    assert!(!ok);
    let mapping = line_of("[mappings.product-options.calculateOptionsPrice]");
    assert!(
        err.contains(&format!(
            "{}:{mapping}: mappings.product-options.calculateOptionsPrice.path: path 'v1/vouchers' must start with '/'",
            cfg.display()
        )),
        "{err}"
    );
    let profile = line_of("[profiles.listingapi]");
    assert!(
        err.contains(&format!(
            "{}:{profile}: profiles.listingapi.accounts[0].secret: environment variable SOAPBRIDGE_CLI_TEST_UNSET is not set",
            cfg.display()
        )),
        "{err}"
    );
    assert!(err.contains("2 problem(s) in the configuration"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn sign_prints_time_and_sign_and_fills_envelopes() {
    let (ok, out, _) = run(&["sign", "--api-key", "K", "--secret", "S", "--time", "1000"]);
    assert!(ok);
    // md5("KS1000")
    assert_eq!(out, "time=1000\nsign=deab3eedf2ba979ce99290d79b55ffe1\n");
    let (ok, out, err) = run(&[
        "sign",
        "--api-key",
        "NjgEHGeJc6cFqbw6FSUP8NpH3pUhV7ss",
        "--secret",
        "demo-secret-change-me",
        "--time",
        "1763800000000",
        "--envelope",
        "fixtures/soap/option/calculateOptionsPrice.xml",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("<apiKey>NjgEHGeJc6cFqbw6FSUP8NpH3pUhV7ss</apiKey>"),
        "{out}"
    );
    assert!(out.contains("<time>1763800000000</time>"), "{out}");
    let sign = soapbridge::sign(
        "NjgEHGeJc6cFqbw6FSUP8NpH3pUhV7ss",
        "demo-secret-change-me",
        1763800000000,
    );
    assert!(out.contains(&format!("<sign>{sign}</sign>")), "{out}");
    assert!(out.contains("<item>587300355</item>"), "{out}");
}
