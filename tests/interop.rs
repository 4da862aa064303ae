//! Interop: real third-party clients drive the bridge with no customisation.
//!
//! - zeep (a SOAP client) loads the served WSDLs and calls every operation
//!   (`tests/interop/zeep_client.py`), and reads a large answer streamed to it
//!   (`tests/interop/zeep_large.py`); it comes from `pip install -r tests/requirements.txt`
//!   (the README's test command and `.ci/run` do this).
//! - Python's standard `xmlrpc.client` calls every operation over XML-RPC through
//!   `ServerProxy`, with multicall and faults (`tests/interop/xmlrpc_client.py`), and reads a
//!   large result, and a multicall of large results, streamed to it
//!   (`tests/interop/xmlrpc_large.py`).
//! - python-abraflexi (the Python client of ABRA Flexi integrations) reads with order, limit
//!   and detail, reads properties, creates, updates, calls an action, filters, logs in with a
//!   session and deletes through the winstrom door (`tests/interop/abraflexi_client.py`).
//!
//! - suds (suds-community), the older Python SOAP client, does the same with its own WSDL reader
//!   (`tests/interop/suds_client.py`).
//! - PHP's SoapClient (ext-soap), in WSDL mode, calls the option and payment services and reads
//!   a large streamed answer (`tests/interop/php_client.php`); Debian's php-cli and php-soap
//!   come from `tests/setup.sh`.
//! - Perl's SOAP::Lite, without a WSDL, as Perl integrations call it, does the same
//!   (`tests/interop/soaplite_client.pl`); Debian's libsoap-lite-perl comes from `tests/setup.sh`.
//!
//! These tests are required: without Python (with zeep and suds), PHP with ext-soap or Perl with
//! SOAP::Lite, they fail and say what to install.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // a test (or benchmark) may unwrap and print

mod common;

use common::*;

fn python_has(module: &str) -> bool {
    std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs a client script against a fresh demo bridge; its stdout must contain `expect`.
async fn run_client(module: &str, script: &'static str, expect: &str) {
    run_client_against(&Bridge::demo().await, module, script, &[], expect).await;
}

/// Runs a Python client script (with `args` after the bridge's URL) against `bridge`; its
/// stdout must contain `expect`.
async fn run_client_against(
    bridge: &Bridge,
    module: &str,
    script: &'static str,
    args: &[&str],
    expect: &str,
) {
    assert!(
        python_has(module),
        "python3 with {module} is required: python3 -m pip install -r tests/requirements.txt"
    );
    run_program(bridge, "python3", script, args, expect).await;
}

/// Fails, saying what to install, unless `program` with `probe` succeeds.
fn require(program: &str, probe: &[&str], what: &str) {
    let ok = std::process::Command::new(program)
        .args(probe)
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "{what} is required: bash tests/setup.sh installs it");
}

/// Runs a PHP client script (with `args` after the bridge's URL) against `bridge`; its stdout
/// must contain `expect`.
async fn run_php_against(bridge: &Bridge, script: &'static str, args: &[&str], expect: &str) {
    let probe = ["-r", "exit(class_exists('SoapClient') ? 0 : 1);"];
    require(
        "php",
        &probe,
        "PHP with ext-soap (Debian's php-cli and php-soap)",
    );
    run_program(bridge, "php", script, args, expect).await;
}

/// Runs a Perl client script (with `args` after the bridge's URL) against `bridge`; its
/// stdout must contain `expect`.
async fn run_perl_against(bridge: &Bridge, script: &'static str, args: &[&str], expect: &str) {
    let probe = ["-MSOAP::Lite", "-e", "1"];
    require(
        "perl",
        &probe,
        "Perl with SOAP::Lite (Debian's libsoap-lite-perl)",
    );
    run_program(bridge, "perl", script, args, expect).await;
}

async fn run_program(
    bridge: &Bridge,
    program: &'static str,
    script: &'static str,
    args: &[&str],
    expect: &str,
) {
    let mut argv = vec![script.to_string(), format!("http://{}", bridge.addr)];
    argv.extend(args.iter().map(|a| a.to_string()));
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(program)
            .args(&argv)
            .output()
            .expect("the client runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains(expect), "stdout:\n{stdout}");
}

/// PHP's SoapClient, in WSDL mode with HTTP Basic as its only set-up, calls the option and
/// payment services over SOAP 1.1 and 1.2: typed answers, a business failure, a voucher paid
/// once, an expired signature in Turkish, a fault for an operation the service lacks, and 401
/// for a wrong password (`tests/interop/php_client.php`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn php_soapclient_calls_the_option_and_payment_services_from_the_served_wsdl() {
    run_php_against(
        &Bridge::demo().await,
        "tests/interop/php_client.php",
        &[],
        "php soapclient: 9 calls OK",
    )
    .await;
}

/// PHP's SoapClient reads an answer the bridge sends while it writes it (chunked), every
/// product in order and typed, and fails on one the bridge breaks off after it began.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn php_soapclient_reads_a_large_answer_sent_while_it_is_written() {
    let bridge = bridge_answering(vec![
        option_features(4000, None),
        option_features(4000, Some(3990)),
    ])
    .await;
    run_php_against(
        &bridge,
        "tests/interop/php_client.php",
        &["large", "4000"],
        "php large answer: 4000 products OK",
    )
    .await;
    assert_streamed(&bridge, "complete", 1.0).await;
    assert_streamed(&bridge, "broken", 1.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zeep_calls_every_operation_from_the_served_wsdl() {
    run_client(
        "zeep",
        "tests/interop/zeep_client.py",
        "zeep interop: 9 calls OK",
    )
    .await;
}

/// zeep reads an answer large enough that the bridge sends it while it writes it (chunked,
/// without a length): every product comes back, in order, typed by the WSDL. One that the
/// bridge breaks off after it began fails in zeep instead of arriving short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zeep_reads_a_large_answer_sent_while_it_is_written() {
    let bridge = bridge_answering(vec![
        option_features(4000, None),
        option_features(4000, Some(3990)),
        option_features(4000, None),
    ])
    .await;
    run_client_against(
        &bridge,
        "zeep",
        "tests/interop/zeep_large.py",
        &["4000"],
        "zeep large answer: 4000 products OK",
    )
    .await;
    let r = soap(
        &bridge.url(OPTION_PATH),
        USER,
        envelope(
            "getOptionFeaturesInfo",
            "<productIds><item>1</item></productIds>",
            "en",
            now_ms(),
        ),
    )
    .await;
    r.assert_success();
    assert_eq!(
        r.header("transfer-encoding"),
        Some("chunked"),
        "the answer was streamed"
    );
}

/// suds (suds-community) loads the served WSDLs and calls the option and payment services:
/// typed answers, business failures, and a fault it raises as `WebFault`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suds_calls_the_option_and_payment_services_from_the_served_wsdl() {
    run_client(
        "suds",
        "tests/interop/suds_client.py",
        "suds interop: 6 calls OK",
    )
    .await;
}

/// suds reads an answer the bridge sends while it writes it: every product, in order, typed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suds_reads_a_large_answer_sent_while_it_is_written() {
    let bridge = bridge_answering(vec![option_features(4000, None)]).await;
    run_client_against(
        &bridge,
        "suds",
        "tests/interop/suds_client.py",
        &["large", "4000"],
        "suds large answer: 4000 products OK",
    )
    .await;
    assert_streamed(&bridge, "complete", 1.0).await;
}

/// Perl's SOAP::Lite, without the WSDL and with its own defaults (an encodingStyle, an
/// xsi:type on every scalar), calls the option service: typed values, business failures, a
/// Client fault for an operation the service lacks, and 401 for a wrong password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soap_lite_calls_the_option_service_without_the_wsdl() {
    run_perl_against(
        &Bridge::demo().await,
        "tests/interop/soaplite_client.pl",
        &[],
        "soap-lite interop: 7 calls OK",
    )
    .await;
}

/// SOAP::Lite reads an answer sent while it is written, and does not take one broken off
/// after it began for an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soap_lite_reads_a_large_answer_sent_while_it_is_written() {
    let bridge = bridge_answering(vec![
        option_features(4000, None),
        option_features(4000, Some(3990)),
    ])
    .await;
    run_perl_against(
        &bridge,
        "tests/interop/soaplite_client.pl",
        &["large", "4000"],
        "soap-lite large answer: 4000 products OK",
    )
    .await;
    assert_streamed(&bridge, "complete", 1.0).await;
    assert_streamed(&bridge, "broken", 1.0).await;
}

/// Python's `xmlrpc.client` reads a large result sent while it is written, and a multicall of
/// large results sent while its calls are made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_xmlrpc_client_reads_a_large_result_sent_while_it_is_written() {
    let bridge = bridge_answering(vec![option_features(4000, None)]).await;
    run_client_against(
        &bridge,
        "xmlrpc.client",
        "tests/interop/xmlrpc_large.py",
        &["4000"],
        "xmlrpc large result: 4000 products OK",
    )
    .await;
    assert_streamed(&bridge, "complete", 2.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_xmlrpc_client_calls_operations_through_server_proxy() {
    run_client(
        "xmlrpc.client",
        "tests/interop/xmlrpc_client.py",
        "xmlrpc interop: 17 calls OK",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_abraflexi_reads_writes_filters_and_logs_in_through_the_winstrom_door() {
    run_client(
        "python_abraflexi",
        "tests/interop/abraflexi_client.py",
        "abraflexi interop: 11 calls OK",
    )
    .await;
}
