//! The winstrom door beyond the fixtures: what the backend receives for a filter, filter
//! semantics end to end, companies and their users, limits, and backends that fail.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // a test (or benchmark) may unwrap and print

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

const USER: &str = "winstrom:winstrom-pass";

async fn get(b: &Bridge, path: &str, user: &str) -> Reply {
    request("GET", &b.url(path), &[("authorization", &basic(user))], "").await
}

async fn post(b: &Bridge, path: &str, body: &str) -> Reply {
    request(
        "POST",
        &b.url(path),
        &[
            ("authorization", &basic(USER)),
            ("content-type", "application/json"),
        ],
        body.to_string(),
    )
    .await
}

fn json_of(r: &Reply) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body))
}

/// The `kod` of every listed record.
fn codes(r: &Reply) -> Vec<String> {
    json_of(r)["winstrom"]["cenik"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", r.body))
        .iter()
        .map(|c| c["kod"].as_str().unwrap().to_string())
        .collect()
}

fn enc(filter: &str) -> String {
    let mut out = String::new();
    out.extend(percent_encoding::utf8_percent_encode(
        filter,
        percent_encoding::NON_ALPHANUMERIC,
    ));
    out
}

#[tokio::test]
async fn filters_select_what_wql_says() {
    let b = Bridge::demo().await;
    let cases = [
        (
            "nazev begins 'a'",
            vec!["AKAT-DESKA", "AKU-SROUB", "ALU-PROFIL"],
        ),
        (
            "(nakupCena gt 100 and nakupCena lt 500) or kod in ('LEPIDLO', 'ZIDLE')",
            vec!["NOHA-KOV", "LEPIDLO", "ZIDLE", "AKAT-DESKA", "OLEJ-VOSK"],
        ),
        (
            "cenaZakl is null",
            vec!["ALU-PROFIL", "SADA-JIDELNI", "PODLOZKA-M6"],
        ),
        ("not (mj1 eq 'ks') and nakupCena between 50 and 100", vec![]),
        (
            "not mj1 = 'ks' and nakupCena between 50 100",
            vec!["LEPIDLO", "ALU-PROFIL"],
        ),
        (
            "kod ends '-M6' or nazev like 'DUB'",
            vec!["DESKA-DUB", "SROUB-M6", "STUL-DUB", "ZIDLE", "PODLOZKA-M6"],
        ),
        ("id >= 11", vec!["OLEJ-VOSK", "PODLOZKA-M6"]),
    ];
    for (filter, expected) in cases {
        let r = get(
            &b,
            &format!("/c/demo/cenik/({}).json?limit=0", enc(filter)),
            USER,
        )
        .await;
        if filter.contains("between 50 and") {
            // `between a b` takes no "and": a parse error at the word.
            assert_eq!(r.status, 400, "{filter}: {}", r.body);
            r.assert_has("Špatný formát WQL dotazu, problém na pozici 44 poblíž textu 'and'");
            continue;
        }
        assert_eq!(r.status, 200, "{filter}: {}", r.body);
        assert_eq!(codes(&r), expected, "{filter}");
    }
}

/// A backend that records the JSON bodies it gets and answers `answer`.
async fn recording_backend(answer: Value) -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(soapbridge::server::serve(
        listener,
        move |req: http::Request<soapbridge::server::Body>| {
            let log = log.clone();
            let answer = answer.clone();
            async move {
                let path = req.uri().to_string();
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                log.lock().unwrap().push(json!({"path": path, "body": v}));
                Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(answer.to_string())))
                    .unwrap()
            }
        },
        Default::default(),
        std::future::pending(),
    ));
    (format!("http://{addr}"), seen)
}

fn demo_with_flexi(url: &str, timeout_ms: u64) -> String {
    let text = demo_with_backend_url("flexi", url);
    let old = "connect_timeout_ms = 1000\ntimeout_ms = 10000\n\n# {\"error\"";
    assert!(text.contains(old));
    text.replace(
        old,
        &format!("connect_timeout_ms = 1000\ntimeout_ms = {timeout_ms}\n\n# {{\"error\""),
    )
}

#[tokio::test]
async fn the_backend_gets_a_structured_filter_with_its_own_field_names() {
    let (url, seen) = recording_backend(json!({"items": [], "total": 0})).await;
    let b = Bridge::with_config(&demo_with_flexi(&url, 2000)).await;
    let filter = "nazev begins 'O''Brien' and (nakupCena >= 12.50 or not kod in ('A', 'B')) and cenaZakl is not null";
    let r = get(
        &b,
        &format!(
            "/c/demo/cenik/({}).json?start=5&limit=7&add-row-count=true",
            enc(filter)
        ),
        USER,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body,
        r#"{"winstrom":{"@version":"1.0","@rowCount":"0","cenik":[]}}"#
    );
    let sent = seen.lock().unwrap()[0].clone();
    assert_eq!(sent["path"], "/v1/demo/price-items:search");
    // (Parsed from text so that 12.50 keeps its digits: the backend gets them exactly.)
    let expected: Value = serde_json::from_str(
        r#"{
            "filter": {"and": [
                {"field": "name", "op": "begins", "value": "O'Brien"},
                {"or": [
                    {"field": "purchase_price", "op": "gte", "value": 12.50},
                    {"not": {"field": "code", "op": "in", "values": ["A", "B"]}}
                ]},
                {"field": "sale_price", "op": "is_not_null"}
            ]},
            "start": 5, "limit": 7, "count": true
        }"#,
    )
    .unwrap();
    assert_eq!(sent["body"], expected);
}

#[tokio::test]
async fn companies_are_tenants_with_their_own_users() {
    let b = Bridge::demo().await;
    let demo = get(&b, "/c/demo/cenik/1.json", USER).await;
    assert_eq!(demo.status, 200, "{}", demo.body);
    assert_eq!(
        json_of(&demo)["winstrom"]["cenik"][0]["nakupCena"],
        "1450.00"
    );
    let test = get(&b, "/c/test/cenik/1.json", "tester:tester-pass").await;
    assert_eq!(test.status, 200, "{}", test.body);
    assert_eq!(json_of(&test)["winstrom"]["cenik"][0]["nakupCena"], "1.00");
    // Each company's users only.
    let r = get(&b, "/c/test/cenik/1.json", USER).await;
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .starts_with("Basic realm=\"ABRA Flexi\"")
    );
    assert_eq!(
        get(&b, "/c/demo/cenik/1.json", "tester:tester-pass")
            .await
            .status,
        401
    );
    assert_eq!(get(&b, "/c/demo/cenik/1.json", "").await.status, 401);
}

#[tokio::test]
async fn an_unreachable_or_slow_backend_is_a_flexi_error_in_time() {
    let b = Bridge::with_config(&demo_with_flexi("http://127.0.0.1:9", 2000)).await;
    let r = get(&b, "/c/demo/cenik.xml", USER).await;
    assert_eq!(r.status, 502, "an unreachable backend is a bad gateway");
    assert_eq!(
        r.header("content-type"),
        Some("application/xml; charset=utf-8")
    );
    r.assert_has("<success>false</success><message>Chyba backendu: backend 'flexi' is unreachable");
    let doc = std::fs::read_to_string("fixtures/winstrom/kusovnik/seed-id.json").unwrap();
    let r = post(&b, "/c/demo/kusovnik.json", &doc).await;
    assert_eq!(r.status, 502, "{}", r.body);
    let v = json_of(&r);
    assert_eq!(v["winstrom"]["success"], "false");
    assert_eq!(v["winstrom"]["stats"]["failed"], "1");
    assert_eq!(
        v["winstrom"]["results"][0]["errors"][0]["code"],
        "BACKEND_UNAVAILABLE"
    );

    // A backend slower than its timeout.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(soapbridge::server::serve(
        listener,
        |_req| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Response::new(Full::new(Bytes::from_static(b"{}")))
        },
        Default::default(),
        std::future::pending(),
    ));
    let b = Bridge::with_config(&demo_with_flexi(&format!("http://{addr}"), 300)).await;
    let started = std::time::Instant::now();
    let r = get(&b, "/c/demo/cenik.json", USER).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(r.status, 504, "a backend too slow is a gateway timeout");
    r.assert_has("did not answer within 300 ms");
}

#[tokio::test]
async fn bad_documents_are_refused_with_flexi_errors() {
    let b = Bridge::demo().await;
    for (body, needle) in [
        ("", "prázdný dokument"),
        ("nonsense", "dokument musí být XML"),
        ("{\"winstrom\": 1}", "dokument musí být {\\\"winstrom\\\""),
        (
            "{\"winstrom\": {\"cenik\": {\"nazev\": {\"a\": 1}}}}",
            "vnořené záznamy nejsou podporovány",
        ),
        ("<winstrom><cenik><kod>A</kod></winstrom>", "malformed XML"),
        (
            "<!DOCTYPE x [<!ENTITY e \"x\">]><winstrom/>",
            "DTDs and entity declarations are not accepted",
        ),
        ("<faktura/>", "kořenový element je <faktura>"),
        (
            "{\"winstrom\": {\"faktura-vydana\": {\"kod\": \"A\"}}}",
            "Evidence 'faktura-vydana' neexistuje.",
        ),
    ] {
        let r = post(&b, "/c/demo/cenik.json", body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(json_of(&r)["winstrom"]["success"], "false");
        r.assert_has(needle);
    }
    // Too large a body: 413, in Flexi's shape.
    let big = format!(
        "{{\"winstrom\": {{\"cenik\": {{\"nazev\": \"{}\"}}}}}}",
        "x".repeat(1_100_000)
    );
    let r = post(&b, "/c/demo/cenik.json", &big).await;
    assert_eq!(r.status, 413);
    r.assert_has("larger than the limit");
    // Methods.
    let r = request(
        "PATCH",
        &b.url("/c/demo/cenik.json"),
        &[("authorization", &basic(USER))],
        "",
    )
    .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, POST, PUT, DELETE"));
}
