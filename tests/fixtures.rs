//! Replays the request fixtures of each front door, in the order of its `cases.toml`, against
//! a freshly started demo bridge and compares every answer with its expected file.
//!
//! `SOAPBRIDGE_BLESS=1 cargo test --test fixtures` writes missing expected files from the
//! actual answers (review them before committing).
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // a test (or benchmark) may unwrap and print

mod common;

use common::*;

/// Fields whose values change from run to run.
const VOLATILE: &[&str] = &[
    "responseTime",
    "timeElapsed",
    "paymentDate",
    // stock sync: times, and raw requests (which carry a batch's generated idempotency key)
    "modifiedDate",
    "created",
    "modified",
    "rawRequest",
];

#[tokio::test]
async fn every_soap_fixture_gets_its_expected_response() {
    replay("fixtures/soap", &Bridge::demo().await, VOLATILE).await;
}

#[tokio::test]
async fn every_xmlrpc_fixture_gets_its_expected_response() {
    replay("fixtures/xmlrpc", &Bridge::demo().await, VOLATILE).await;
}

#[tokio::test]
async fn every_winstrom_fixture_gets_its_expected_response() {
    replay("fixtures/winstrom", &Bridge::demo().await, VOLATILE).await;
}

#[test]
fn the_pattern_matcher_is_strict_outside_wildcards() {
    assert!(matches_pattern("<a>{{*}}</a>", "<a>12 ms</a>"));
    assert!(!matches_pattern("<a>{{*}}</a>", "<a>1<b/></a>"));
    assert!(!matches_pattern("<a>x</a>", "<a>y</a>"));
    assert_eq!(normalize("<a>\n  <b> x </b>\n</a>"), "<a><b> x </b></a>");
    assert_eq!(
        pretty("<a><b>x</b><c><d/></c></a>"),
        "<a>\n  <b>x</b>\n  <c>\n    <d/>\n  </c>\n</a>\n"
    );
    assert_eq!(expected_path("f", "x/y.json"), "f/x/y.expected.json");
    assert_eq!(
        normalize("{\n  \"b\": \"x y\",\n  \"a\": [1, 2]\n}"),
        r#"{"b":"x y","a":[1,2]}"#
    );
    assert_eq!(
        pretty(r#"{"b":{"c":[]},"a":"1"}"#),
        "{\n  \"b\": {\n    \"c\": []\n  },\n  \"a\": \"1\"\n}\n"
    );
}
