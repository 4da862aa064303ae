//! Replays every fixture in `fixtures/soap/cases.toml`, in order, against a fresh demo bridge
//! and compares each answer with its `.expected.xml` file.
//!
//! `SOAPBRIDGE_BLESS=1 cargo test --test fixtures` writes missing expected files from the
//! actual answers (review them before committing).

mod common;

use common::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct Cases {
    case: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    request: String,
    service: String,
    #[serde(default = "default_user")]
    user: String,
    #[serde(default = "default_ct")]
    content_type: String,
    #[serde(default = "default_status")]
    status: u16,
}

fn default_user() -> String {
    FIXTURE_USER.into()
}
fn default_ct() -> String {
    "text/xml; charset=utf-8".into()
}
fn default_status() -> u16 {
    200
}

const VOLATILE: &[&str] = &["responseTime", "timeElapsed", "paymentDate"];

#[tokio::test]
async fn every_fixture_gets_its_expected_response() {
    let cases: Cases = toml::from_str(&fixture("cases.toml")).unwrap();
    let bridge = Bridge::demo().await;
    let bless = std::env::var("SOAPBRIDGE_BLESS").is_ok();
    let mut failures = Vec::new();
    for c in &cases.case {
        use base64::Engine;
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(&c.user)
        );
        let reply = request(
            "POST",
            &bridge.url(&c.service),
            &[
                ("content-type", c.content_type.as_str()),
                ("soapaction", "\"\""),
                ("authorization", &auth),
            ],
            fixture(&c.request),
        )
        .await;
        let expected_path = format!(
            "fixtures/soap/{}",
            c.request.replace(".xml", ".expected.xml")
        );
        let expected = match std::fs::read_to_string(&expected_path) {
            Ok(e) => e,
            Err(_) if bless => {
                std::fs::write(&expected_path, mask(&reply.body, VOLATILE)).unwrap();
                continue;
            }
            Err(e) => panic!("{expected_path}: {e}"),
        };
        if reply.status != c.status {
            failures.push(format!(
                "{}: HTTP {} (expected {})\n{}",
                c.request, reply.status, c.status, reply.body
            ));
            continue;
        }
        if !matches_pattern(&normalize(&expected), &normalize(&reply.body)) {
            failures.push(format!(
                "{}: answer differs from {expected_path}\n--- expected\n{}\n--- actual\n{}",
                c.request,
                normalize(&expected),
                normalize(&reply.body)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n\n{}",
        failures.len(),
        cases.case.len(),
        failures.join("\n\n")
    );
}

#[test]
fn the_pattern_matcher_is_strict_outside_wildcards() {
    assert!(matches_pattern("<a>{{*}}</a>", "<a>12 ms</a>"));
    assert!(!matches_pattern("<a>{{*}}</a>", "<a>1<b/></a>"));
    assert!(!matches_pattern("<a>x</a>", "<a>y</a>"));
    assert_eq!(normalize("<a>\n  <b> x </b>\n</a>"), "<a><b> x </b></a>");
}
