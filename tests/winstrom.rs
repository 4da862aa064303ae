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

/// A request carrying a login session instead of HTTP Basic.
async fn with_session(b: &Bridge, method: &str, path: &str, id: &str) -> Reply {
    request(method, &b.url(path), &[("x-authsessionid", id)], "").await
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
    // A number property compared with no number: said in Flexi's names, once, by the bridge.
    for (filter, says) in [
        (
            "cenaZakl > 'abc'",
            "vlastnost 'cenaZakl' je číslo, 'abc' není číslo.",
        ),
        (
            "id in (1, 'x')",
            "vlastnost 'id' je celé číslo, 'x' není celé číslo.",
        ),
        (
            "id = now()",
            "vlastnost 'id' je celé číslo, now() není celé číslo.",
        ),
    ] {
        let r = get(&b, &format!("/c/demo/cenik/({}).json", enc(filter)), USER).await;
        assert_eq!(r.status, 400, "{filter}: {}", r.body);
        r.assert_has(says);
        assert!(!r.body.contains("sale_price"), "{}", r.body);
    }
    let r = get(
        &b,
        &format!("/c/demo/cenik/({}).json", enc("cenaZakl > '10'")),
        USER,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // An integer relation named by a record identifier is left to the backend.
    let r = get(
        &b,
        &format!("/c/demo/kusovnik/({}).json", enc("cenik = 'code:STUL-DUB'")),
        USER,
    )
    .await;
    assert!(!r.body.contains("není celé číslo"), "{}", r.body);
    // (The reference backend takes no identifiers: its own refusal, in Flexi's shape.)
    assert_eq!(
        (r.status, json_of(&r)["winstrom"]["success"].as_str()),
        (400, Some("false")),
        "{}",
        r.body
    );
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

/// A long list is sent while it is written (chunked, without a length), and is the same text
/// as the list written whole when that is off, in XML and in JSON.
#[tokio::test]
async fn a_long_list_is_sent_while_it_is_written() {
    let items: Vec<Value> = (1..=6000)
        .map(|i| {
            json!({"id": i, "code": format!("K-{i}"), "name": format!("Položka <{i}> & \"spol\""),
                   "purchase_price": "1.50", "sale_price": null, "unit": "ks"})
        })
        .collect();
    // With the backend's total, and without it (the row count is then the rows').
    for (answer, count) in [
        (json!({"items": items, "total": 6100}), 6100),
        (json!({"items": items}), 6000),
    ] {
        let (url, _) = recording_backend(answer).await;
        let config = demo_with_flexi(&url, 5000);
        let off = config.replace(
            "stream_answers_from_bytes = 524288",
            "stream_answers_from_bytes = 0",
        );
        assert_ne!(config, off);
        // A list mapping that is not a plain path into the answer: its rows are not read one at
        // a time, but the answer is still sent while it is written.
        let plain = r#"response = { rows = "$.items", total = "$.total" }"#;
        let built = config.replacen(
            plain,
            r#"response = { rows = { "$value" = "$.items" }, total = "$.total" }"#,
            1,
        );
        assert_ne!(config, built);
        let whole = Bridge::with_config(&off).await;
        for streamed in [&config, &built] {
            let streamed = Bridge::with_config(streamed).await;
            for ext in ["xml", "json"] {
                let path = format!("/c/demo/cenik.{ext}?limit=0&add-row-count=true");
                let (s, w) = (
                    get(&streamed, &path, USER).await,
                    get(&whole, &path, USER).await,
                );
                assert_eq!((s.status, w.status), (200, 200), "{ext}");
                assert_eq!(s.header("content-length"), None, "{ext}");
                assert_eq!(s.header("transfer-encoding"), Some("chunked"), "{ext}");
                assert!(w.header("content-length").is_some(), "{ext}");
                assert_eq!(s.body, w.body, "{ext}");
            }
            let s = get(&streamed, "/c/demo/cenik.xml?limit=0", USER).await;
            assert_eq!(s.body.matches("<cenik>").count(), 6000);
            assert!(s.body.contains("<cenik><id>6000</id><kod>K-6000</kod><nazev>Položka &lt;6000&gt; &amp; &quot;spol&quot;</nazev><nakupCena>1.50</nakupCena><mj1>ks</mj1></cenik></winstrom>"));
        }
        let s = get(&whole, "/c/demo/cenik.xml?limit=0&add-row-count=true", USER).await;
        let head = format!("<winstrom version=\"1.0\" rowCount=\"{count}\"><cenik>");
        assert!(s.body.contains(&head), "{}", &s.body[..200]);
    }
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
    // Which companies exist is told to users only.
    for who in ["", "nobody:nothing"] {
        let r = get(&b, "/c/nope/cenik.json", who).await;
        assert_eq!(r.status, 401, "{who}: {}", r.body);
        assert!(!r.body.contains("nope"), "{}", r.body);
        assert!(r.header("www-authenticate").is_some());
    }
    let r = get(&b, "/c/nope/cenik.json", "tester:tester-pass").await;
    assert_eq!(r.status, 404, "{}", r.body);
    r.assert_has("Firma 'nope' neexistuje.");
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

/// The `field` of every listed record of `evidence`.
fn column(r: &Reply, evidence: &str, field: &str) -> Vec<String> {
    json_of(r)["winstrom"][evidence]
        .as_array()
        .unwrap_or_else(|| panic!("{}", r.body))
        .iter()
        .map(|c| c[field].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn order_detail_and_paging_shape_a_list_as_flexi_does() {
    let b = Bridge::demo().await;
    // One key, descending, with the properties asked for only.
    let r = get(
        &b,
        "/c/demo/cenik.json?order=cenaZakl%40D&limit=4&detail=custom%3Akod%2CcenaZakl&add-row-count=true",
        USER,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = json_of(&r);
    let rows = v["winstrom"]["cenik"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{}", r.body);
    // (In the order Flexi writes them: the evidence's.)
    assert!(
        r.body
            .contains(r#"{"kod":"STUL-DUB","cenaZakl":"7990.00"}"#),
        "{}",
        r.body
    );
    for row in rows {
        assert_eq!(row.as_object().unwrap().len(), 2, "{}", r.body);
    }
    let prices: Vec<f64> = column(&r, "cenik", "cenaZakl")
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(prices.windows(2).all(|w| w[0] >= w[1]), "{prices:?}");
    assert_eq!(v["winstrom"]["@rowCount"], "12", "{}", r.body);

    // Two keys (repeated `order` and a comma list mean the same), pages that join up.
    let all = get(
        &b,
        "/c/demo/cenik.json?order=mj1@A&order=nazev@D&limit=0&detail=custom:mj1,nazev",
        USER,
    )
    .await;
    let same = get(
        &b,
        "/c/demo/cenik.json?order=mj1@A,nazev@D&limit=0&detail=custom:mj1,nazev",
        USER,
    )
    .await;
    assert_eq!(all.body, same.body);
    let pairs: Vec<(String, String)> = column(&all, "cenik", "mj1")
        .into_iter()
        .zip(column(&all, "cenik", "nazev"))
        .collect();
    assert_eq!(pairs.len(), 12, "limit=0 is every record: {}", all.body);
    let mut sorted = pairs.clone();
    sorted.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    // (The backend's collation may differ from byte order for accented names; the unit
    // groups and their order must hold.)
    let units: Vec<&String> = pairs.iter().map(|p| &p.0).collect();
    assert!(units.windows(2).all(|w| w[0] <= w[1]), "{units:?}");
    let page = |start: usize| {
        format!(
            "/c/demo/cenik.json?order=mj1@A,nazev@D&limit=5&start={start}&detail=custom:mj1,nazev"
        )
    };
    let mut joined = Vec::new();
    for start in [0, 5, 10] {
        let p = get(&b, &page(start), USER).await;
        joined.extend(column(&p, "cenik", "nazev"));
    }
    assert_eq!(joined, column(&all, "cenik", "nazev"));

    // detail=id and detail=summary, on a list and on one record named by its code.
    let ids = get(&b, "/c/demo/cenik.json?detail=id&limit=2", USER).await;
    assert_eq!(
        ids.body,
        r#"{"winstrom":{"@version":"1.0","cenik":[{"id":"1"},{"id":"2"}]}}"#
    );
    let one = get(&b, "/c/demo/cenik/code:STUL-DUB.json?detail=summary", USER).await;
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(
        one.body,
        r#"{"winstrom":{"@version":"1.0","cenik":[{"id":"5","kod":"STUL-DUB","nazev":"Stůl dubový"}]}}"#
    );
    let xml = get(
        &b,
        "/c/demo/cenik/code:STUL-DUB.xml?detail=custom:kod",
        USER,
    )
    .await;
    assert!(
        xml.body.contains("<cenik><kod>STUL-DUB</kod></cenik>"),
        "{}",
        xml.body
    );
}

#[tokio::test]
async fn parameters_that_would_change_an_answer_are_refused_not_ignored() {
    let b = Bridge::demo().await;
    for (query, says) in [
        (
            "relations=polozky",
            "Parametr 'relations' tato služba nepodporuje",
        ),
        ("order=bogus@A", "nemá vlastnost 'bogus'"),
        ("order=kod@X", "'kod@X' není řazení"),
        ("detail=custom:bogus", "nemá vlastnost 'bogus'"),
        ("detail=custom:id,polozky(kod)", "bez vnořených vazeb"),
        ("detail=everything", "'everything' není podporován"),
        ("limit=-1", "nezáporné celé číslo"),
        ("auth=html", "Parametr 'auth' tato služba nepodporuje"),
        (
            "add-row-count=maybe",
            "'add-row-count' musí být true nebo false, ne 'maybe'",
        ),
        ("limit=1&limit=2", "Parametr 'limit' je uveden vícekrát."),
        (
            "detail=id&detail=full",
            "Parametr 'detail' je uveden vícekrát.",
        ),
        ("detail=custom:", "'custom:' není podporován"),
    ] {
        let r = get(&b, &format!("/c/demo/cenik.json?{query}"), USER).await;
        assert_eq!(r.status, 400, "{query}: {}", r.body);
        let v = json_of(&r);
        assert_eq!(v["winstrom"]["success"], "false", "{query}");
        let m = v["winstrom"]["message"].as_str().unwrap();
        assert!(m.contains(says), "{query}: {m}");
    }
    // What changes no answer is taken: `auth=http` (Basic is always accepted), a cache buster.
    let r = get(
        &b,
        "/c/demo/cenik.json?auth=http&_=1733212800000&limit=1",
        USER,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // An evidence whose list route does not send the order to its backend refuses it.
    let cfg = std::fs::read_to_string("demo/soapbridge.toml")
        .unwrap()
        .replace(", order = \"$.order\" }, response = { rows = \"$.items\", total = \"$.total\" } }\nget = { method = \"GET\", path = \"/v1/{$.tenant}/boms", " }, response = { rows = \"$.items\", total = \"$.total\" } }\nget = { method = \"GET\", path = \"/v1/{$.tenant}/boms");
    assert!(!cfg.contains("boms:search\", body = { filter = \"$.filter\", start = \"$.start\", limit = \"$.limit\", count = \"$.count\", order"));
    let b2 = Bridge::with_config(&cfg).await;
    let r = get(&b2, "/c/demo/kusovnik.json?order=kod@A", USER).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("řazení nepodporuje"), "{}", r.body);
    let props = get(&b2, "/c/demo/kusovnik/properties.json", USER).await;
    assert!(
        props.body.contains(r#""isSortable":"false""#),
        "{}",
        props.body
    );

    // no-http-errors: the same failure, answered 200 with success=false.
    let r = get(
        &b,
        "/c/demo/cenik.json?order=bogus@A&no-http-errors=true",
        USER,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(json_of(&r)["winstrom"]["success"], "false");
    let r = get(&b, "/c/demo/cenik/999999.json?no-http-errors=true", USER).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Nebyl nalezen"), "{}", r.body);
    let r = post(
        &b,
        "/c/demo/cenik.json?no-http-errors=true",
        r#"{"winstrom":{"cenik":[{"kod":"X-NHE","nazev":"x","cenaZakl":"abc"}]}}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(json_of(&r)["winstrom"]["success"], "false", "{}", r.body);
    // Summaries are not offered, and say so.
    let r = get(&b, "/c/demo/cenik/$sum.json", USER).await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(
        r.body.contains("'$sum' tato služba nepodporuje"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn properties_list_the_configured_fields() {
    let b = Bridge::demo().await;
    let r = get(&b, "/c/demo/cenik/properties.json", USER).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = json_of(&r);
    assert_eq!(v["properties"]["@evidenceName"], "cenik");
    let props = v["properties"]["property"].as_array().unwrap();
    let names: Vec<&str> = props
        .iter()
        .map(|p| p["propertyName"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["id", "kod", "nazev", "nakupCena", "cenaZakl", "mj1"]
    );
    let by = |n: &str| {
        props
            .iter()
            .find(|p| p["propertyName"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(
        by("nakupCena"),
        json!({"propertyName": "nakupCena", "name": "Nákupní cena", "title": "Nákupní cena",
               "type": "numeric", "isVisible": "true", "isSortable": "true",
               "isFilterable": "true", "isWritable": "true", "inSummary": "false"})
    );
    assert_eq!(by("id")["isWritable"], "false", "read-only");
    assert_eq!(by("id")["type"], "integer");
    assert_eq!(by("kod")["inSummary"], "true");
    let xml = get(&b, "/c/demo/kusovnik/properties.xml", USER).await;
    assert_eq!(xml.status, 200, "{}", xml.body);
    assert!(
        xml.body.contains(
            r#"<properties evidenceName="kusovnik"><property><propertyName>id</propertyName>"#
        ),
        "{}",
        xml.body
    );
    // kusovnik has no create or update route: nothing in it is writable.
    assert!(
        !xml.body.contains("<isWritable>true</isWritable>"),
        "{}",
        xml.body
    );
    let put = request(
        "PUT",
        &b.url("/c/demo/cenik/properties.json"),
        &[("authorization", &basic(USER))],
        "",
    )
    .await;
    assert_eq!(put.status, 405, "{}", put.body);
    assert_eq!(
        put.headers.get("allow").and_then(|v| v.to_str().ok()),
        Some("GET")
    );
}

#[tokio::test]
async fn an_action_url_runs_the_evidences_action_on_one_record() {
    let b = Bridge::demo().await;
    let before = get(
        &b,
        "/c/demo/kusovnik/123.json?detail=custom:prodejCena",
        USER,
    )
    .await;
    let r = request(
        "POST",
        &b.url("/c/demo/kusovnik/123/prepocti-prodejni-cenu.json"),
        &[("authorization", &basic(USER))],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body,
        r#"{"winstrom":{"@version":"1.0","success":"true","stats":{"created":"0","updated":"1","deleted":"0","skipped":"0","failed":"0"},"results":[{"id":"123","request-id":"123","ref":"/c/demo/kusovnik/123.json"}]}}"#
    );
    let after = get(
        &b,
        "/c/demo/kusovnik/123.json?detail=custom:prodejCena",
        USER,
    )
    .await;
    assert_eq!(after.status, 200);
    println!("{} -> {}", before.body, after.body);
    // dry-run on an action URL: validated, nothing changed.
    let dry = request(
        "PUT",
        &b.url("/c/demo/kusovnik/125/delete.json?dry-run=true"),
        &[("authorization", &basic(USER))],
        "",
    )
    .await;
    assert_eq!(dry.status, 200, "{}", dry.body);
    assert_eq!(get(&b, "/c/demo/kusovnik/125.json", USER).await.status, 200);
    // An action the evidence does not have: Flexi's list of those it has.
    let r = request(
        "POST",
        &b.url("/c/demo/kusovnik/123/storno.json"),
        &[("authorization", &basic(USER))],
        "",
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body
            .contains("[delete, prepocti-nakupni-cenu, prepocti-prodejni-cenu]"),
        "{}",
        r.body
    );
    // Reading an action URL changes nothing and says how to call it.
    let r = get(&b, "/c/demo/kusovnik/123/prepocti-prodejni-cenu.json", USER).await;
    assert_eq!(r.status, 405, "{}", r.body);
    assert_eq!(
        r.headers.get("allow").and_then(|v| v.to_str().ok()),
        Some("POST, PUT")
    );
}

#[tokio::test]
async fn a_login_session_opens_its_users_companies_until_logout() {
    let b = Bridge::demo().await;
    // A login by GET (which would put the password in the URL): 405, saying how.
    let r = request("GET", &b.url("/login-logout/login.json"), &[], "").await;
    assert_eq!(
        (r.status, r.header("allow")),
        (405, Some("POST")),
        "{}",
        r.body
    );
    // An empty record id is a malformed URL.
    assert_eq!(get(&b, "/c/demo/cenik/.json", USER).await.status, 400);
    let login = |body: &'static str, ct: &'static str| {
        let url = b.url("/login-logout/login.json");
        async move { request("POST", &url, &[("content-type", ct)], body).await }
    };
    let r = login(
        r#"{"username":"winstrom","password":"winstrom-pass"}"#,
        "application/json",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let id = json_of(&r)["authSessionId"].as_str().unwrap().to_string();
    assert_eq!(json_of(&r)["success"], true);
    assert_eq!(id.len(), 64);
    // The header, the query parameter and the cookie all carry it.
    for (path, headers) in [
        (
            "/c/demo/cenik/1.json",
            vec![("x-authsessionid", id.clone())],
        ),
        (&*format!("/c/demo/cenik/1.json?authSessionId={id}"), vec![]),
        (
            "/c/demo/cenik/1.json",
            vec![("cookie", format!("authSessionId={id}"))],
        ),
    ] {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = request("GET", &b.url(path), &h, "").await;
        assert_eq!(r.status, 200, "{path} {h:?}: {}", r.body);
    }
    // Not a company of this user's.
    let other = with_session(&b, "GET", "/c/test/cenik/1.json", &id).await;
    assert_eq!(other.status, 401, "{}", other.body);
    // A form login of the other company's user opens that one.
    let t = login(
        "username=tester&password=tester-pass",
        "application/x-www-form-urlencoded",
    )
    .await;
    let tid = json_of(&t)["authSessionId"].as_str().unwrap().to_string();
    let r = with_session(&b, "GET", "/c/test/cenik/1.json", &tid).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Wrong password, missing fields.
    let bad = login(
        r#"{"username":"winstrom","password":"nope"}"#,
        "application/json",
    )
    .await;
    assert_eq!(bad.status, 401);
    assert_eq!(
        bad.body,
        r#"{"errors":{"reason":"Neplatné jméno nebo heslo."},"success":false}"#
    );
    let bad = login(r#"{"username":"winstrom"}"#, "application/json").await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    // Logout (python-abraflexi's path), then the session is gone.
    let out = with_session(&b, "POST", "/status/user/winstrom/logout.json", &id).await;
    assert_eq!(out.status, 200, "{}", out.body);
    let r = with_session(&b, "GET", "/c/demo/cenik/1.json", &id).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("authSessionId"), "{}", r.body);
    // Keep-alive answers for an open session only.
    let r = with_session(&b, "GET", "/login-logout/session-keep-alive.js", &tid).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = with_session(&b, "GET", "/login-logout/session-keep-alive.js", &id).await;
    assert_eq!(r.status, 401, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_opened_on_one_instance_works_on_another_sharing_postgresql() {
    let pg = pg_url().await;
    let schema = format!("sb_sessions_{}", std::process::id());
    let cfg = demo_on_postgres(&pg, &schema);
    let a = Bridge::with_config(&cfg).await;
    let b = Bridge::with_config(&cfg).await;
    let login = request(
        "POST",
        &a.url("/login-logout/login.json"),
        &[("content-type", "application/json")],
        r#"{"username":"winstrom","password":"winstrom-pass"}"#,
    )
    .await;
    assert_eq!(login.status, 200, "{}", login.body);
    let id = json_of(&login)["authSessionId"]
        .as_str()
        .unwrap()
        .to_string();
    // Behind a load balancer: the next call lands on the other instance.
    let r = with_session(&b, "GET", "/c/demo/cenik/1.json", &id).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // A logout on that one ends it on both.
    let out = with_session(&b, "POST", "/login-logout/logout.json", &id).await;
    assert_eq!(out.status, 200, "{}", out.body);
    let r = with_session(&a, "GET", "/c/demo/cenik/1.json", &id).await;
    assert_eq!(r.status, 401, "{}", r.body);
    drop((a, b));
    let store = soapbridge::store::Store::open(&pg, &schema).await.unwrap();
    let _ = store.drop_schema().await;
}

/// A Flexi backend whose `k`-th create is answered (`{"item": {"id": 100 + k}}`) after
/// `delays[k]` ms (the last delay for later ones); returns its URL and how many it received.
async fn slow_creates(delays: Vec<u64>) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let seen = Arc::new(AtomicUsize::new(0));
    let creates = seen.clone();
    let url = json_backend(move |_, _| {
        let (creates, delays) = (creates.clone(), delays.clone());
        async move {
            let k = creates.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(delays[k.min(delays.len() - 1)])).await;
            (201, json!({"item": {"id": 100 + k}}).to_string())
        }
    })
    .await;
    (url, seen)
}

/// An import answered out of time (504, `success` false) with these `created`, `failed` and
/// `skipped`; its document.
fn out_of_time(r: &Reply, [created, failed, skipped]: [u32; 3]) -> Value {
    assert_eq!(r.status, 504, "{}", r.body);
    let v = json_of(r);
    let w = &v["winstrom"];
    assert_eq!(w["success"], "false");
    let stats = [
        &w["stats"]["created"],
        &w["stats"]["failed"],
        &w["stats"]["skipped"],
    ];
    let expected = [created, failed, skipped].map(|n| Value::from(n.to_string()));
    assert_eq!(stats, expected.each_ref(), "{v}");
    v
}

/// An import that runs out of the request's time still says what was done: no record is
/// started after 80% of `request_timeout_ms` (the rest `skipped`), and one whose backend has
/// not answered at 95% fails, the rest skipped; a gateway timeout, `success=false`.
#[tokio::test]
async fn an_import_out_of_time_answers_what_was_done() {
    let doc = json!({"winstrom": {"@version": "1.0", "@atomic": "false", "cenik": [
        {"nazev": "A", "cenaZakl": "1"}, {"nazev": "B", "cenaZakl": "2"}, {"nazev": "C", "cenaZakl": "3"}
    ]}})
    .to_string();
    let bridge = |url: String| async move {
        let cfg = demo_with_flexi(&url, 20_000)
            .replace("request_timeout_ms = 60000", "request_timeout_ms = 5000");
        Bridge::with_config(&cfg).await
    };

    // The second create's backend has not answered at 4.75 s.
    let (url, creates) = slow_creates(vec![100, 20_000]).await;
    let b = bridge(url).await;
    let started = std::time::Instant::now();
    let r = post(&b, "/c/demo/cenik.json", &doc).await;
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    let w = &out_of_time(&r, [1, 1, 1])["winstrom"];
    assert_eq!(w["results"][0]["id"], "100", "{w}");
    assert_eq!(
        w["results"][1]["errors"][0]["code"], "REQUEST_TIMEOUT",
        "{w}"
    );
    r.assert_has("the backend had not answered this call when the request's time limit of 5000 ms was nearly up");
    assert_eq!(creates.load(std::sync::atomic::Ordering::SeqCst), 2);

    // The first create is answered after 80% of the time (4 s): the others are not started.
    let (url, creates) = slow_creates(vec![4_200, 0]).await;
    let b = bridge(url).await;
    let r = post(&b, "/c/demo/cenik.json", &doc).await;
    let w = &out_of_time(&r, [1, 0, 2])["winstrom"];
    assert_eq!(
        w["message"],
        "Časový limit požadavku vypršel: záznamy od 2. nebyly zpracovány (skipped); pošlete je znovu."
    );
    assert_eq!(creates.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// The status of the demo user's GET of `path`.
async fn status(b: &Bridge, path: &str) -> u16 {
    get(b, path, USER).await.status
}

/// The `stats` of an import's answer, as numbers: [created, updated, skipped, failed].
fn stats(r: &Reply) -> [u64; 4] {
    let s = &json_of(r)["winstrom"]["stats"];
    ["created", "updated", "skipped", "failed"].map(|k| {
        s[k].as_str()
            .unwrap_or_else(|| panic!("{}", r.body))
            .parse()
            .unwrap()
    })
}

/// Flexi's `create` and `update` record attributes (ok / ignore / fail) are honoured: a record
/// the caller asked to leave alone is not written. Attributes the bridge does not know, and a
/// body naming another record than the URL, are refused, never ignored.
#[tokio::test]
async fn create_and_update_modes_are_honoured_and_unknown_attributes_refused() {
    let b = Bridge::demo().await;
    let first =
        &json_of(&get(&b, "/c/demo/cenik.json?limit=1", USER).await)["winstrom"]["cenik"][0];
    let (id, name) = (
        first["id"].as_str().unwrap(),
        first["nazev"].as_str().unwrap(),
    );
    let name_of = |r: &Reply| json_of(r)["winstrom"]["cenik"][0]["nazev"].clone();
    let path = format!("/c/demo/cenik/{id}.json");

    // update="ignore" on a record that exists: skipped, nothing written (JSON and XML).
    let r = post(
        &b,
        "/c/demo/cenik.json",
        &format!(
            r#"{{"winstrom":{{"cenik":[{{"id":"{id}","@update":"ignore","nazev":"CHANGED"}}]}}}}"#
        ),
    )
    .await;
    assert_eq!((r.status, stats(&r)), (200, [0, 0, 1, 0]), "{}", r.body);
    assert_eq!(json_of(&r)["winstrom"]["results"][0]["id"], id);
    let r = post(&b, "/c/demo/cenik.json", &format!(
        r#"<winstrom version="1.0"><cenik id="{id}" update="fail"><nazev>CHANGED</nazev></cenik></winstrom>"#
    ))
    .await;
    assert_eq!((r.status, stats(&r)), (400, [0, 0, 0, 1]), "{}", r.body);
    r.assert_has("UPDATE_REFUSED");
    assert_eq!(name_of(&get(&b, &path, USER).await), name);

    // create="ignore" / "fail" on a code that does not exist: nothing created.
    let missing = "/c/demo/cenik/code:MODE-NEW.json";
    let doc = |attrs: &str| {
        format!(r#"{{"winstrom":{{"cenik":[{{"id":"code:MODE-NEW",{attrs}"nazev":"new"}}]}}}}"#)
    };
    let r = post(&b, "/c/demo/cenik.json", &doc(r#""@create":"ignore","#)).await;
    assert_eq!((r.status, stats(&r)), (200, [0, 0, 1, 0]), "{}", r.body);
    let r = post(&b, "/c/demo/cenik.json", &doc(r#""@create":"fail","#)).await;
    assert_eq!((r.status, stats(&r)), (404, [0, 0, 0, 1]), "{}", r.body);
    assert_eq!(get(&b, missing, USER).await.status, 404);
    // update="ignore" on a record that does not exist creates it; a second time leaves it.
    let r = post(&b, "/c/demo/cenik.json", &doc(r#""@update":"ignore","#)).await;
    assert_eq!((r.status, stats(&r)), (201, [1, 0, 0, 0]), "{}", r.body);
    let r = post(
        &b,
        "/c/demo/cenik.json",
        &doc(r#""@update":"ignore","#).replace("new", "again"),
    )
    .await;
    assert_eq!((r.status, stats(&r)), (200, [0, 0, 1, 0]), "{}", r.body);
    assert_eq!(name_of(&get(&b, missing, USER).await), "new");
    // Every record a filter selects exists.
    let r = post(
        &b,
        "/c/demo/cenik.json",
        r#"{"winstrom":{"cenik":[{"@filter":"kod = 'MODE-NEW'","@update":"ignore","nazev":"x"}]}}"#,
    )
    .await;
    assert_eq!((r.status, stats(&r)), (200, [0, 0, 1, 0]), "{}", r.body);
    // A record without an id would be created: create="fail" refuses it.
    let r = post(
        &b,
        "/c/demo/cenik.json",
        r#"{"winstrom":{"cenik":[{"kod":"MODE-X","@create":"fail"}]}}"#,
    )
    .await;
    assert_eq!((r.status, stats(&r)), (400, [0, 0, 0, 1]), "{}", r.body);
    r.assert_has("CREATE_REFUSED");

    // Refused, not ignored: unknown attributes, a mode that is not one, a mode with an action.
    for (body, needle) in [
        (
            r#"{"winstrom":{"cenik":[{"@bogus":"1","kod":"MODE-Y"}]}}"#,
            "atribut 'bogus'",
        ),
        (
            r#"<winstrom version="1.0"><cenik removeExternalIds="ext:SHOP:"><kod>MODE-Y</kod></cenik></winstrom>"#,
            "atribut 'removeExternalIds'",
        ),
        (
            r#"{"winstrom":{"cenik":[{"kod":"MODE-Y","@update":"sometimes"}]}}"#,
            "ok, ignore nebo fail",
        ),
    ] {
        let r = post(&b, "/c/demo/cenik.json", body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        r.assert_has(needle);
    }
    let r = post(
        &b,
        "/c/demo/cenik.json",
        &format!(
            r#"{{"winstrom":{{"cenik":[{{"id":"{id}","@action":"delete","@update":"ignore"}}]}}}}"#
        ),
    )
    .await;
    assert_eq!((r.status, stats(&r)), (400, [0, 0, 0, 1]), "{}", r.body);
    r.assert_has("INVALID_ATTRIBUTE");
    assert_eq!(get(&b, &path, USER).await.status, 200);

    // In an atomic document, a record with a mode whose id an earlier record names: its dry
    // run cannot tell whether it will exist, so it is refused before anything is stored.
    let r = post(&b, "/c/demo/cenik.json",
        r#"{"winstrom":{"cenik":[{"id":"code:MODE-TWICE","nazev":"one"},{"id":"code:MODE-TWICE","@update":"fail","nazev":"two"}]}}"#).await;
    assert_eq!((r.status, stats(&r)), (400, [0, 0, 1, 1]), "{}", r.body);
    r.assert_has("jmenuje už dřívější záznam dokumentu");
    assert_eq!(status(&b, "/c/demo/cenik/code:MODE-TWICE.json").await, 404);
    // The same id in another evidence is another record (XML keeps the document's order).
    let r = post(&b, "/c/demo/cenik.json", &format!(
        r#"<winstrom version="1.0"><cenik id="{id}"><nazev>{name}</nazev></cenik><kusovnik id="{id}" update="ignore"/></winstrom>"#
    ))
    .await;
    assert!(!r.body.contains("dřívější záznam"), "{}", r.body);
    assert_eq!(
        stats(&r)[3],
        if r.status == 200 { 0 } else { 1 },
        "{}",
        r.body
    );
    // Not atomic: each record in turn, the second seeing the first.
    let r = post(&b, "/c/demo/cenik.json",
        r#"{"winstrom":{"@atomic":"false","cenik":[{"id":"code:MODE-TWICE","nazev":"one"},{"id":"code:MODE-TWICE","@update":"fail","nazev":"two"}]}}"#).await;
    assert_eq!((r.status, stats(&r)), (400, [1, 0, 0, 1]), "{}", r.body);
    r.assert_has("UPDATE_REFUSED");
    assert_eq!(
        name_of(&get(&b, "/c/demo/cenik/code:MODE-TWICE.json", USER).await),
        "one"
    );
    // A skipped record by code answers the record's own id.
    let r = post(
        &b,
        "/c/demo/cenik.json",
        r#"{"winstrom":{"cenik":[{"id":"code:MODE-TWICE","@update":"ignore","nazev":"x"}]}}"#,
    )
    .await;
    let real =
        json_of(&get(&b, "/c/demo/cenik/code:MODE-TWICE.json", USER).await)["winstrom"]["cenik"][0]
            ["id"]
            .clone();
    assert_eq!(
        json_of(&r)["winstrom"]["results"][0]["id"],
        real,
        "{}",
        r.body
    );
    // A record of another evidence sent to a record's URL.
    let r = request(
        "PUT",
        &b.url(&path),
        &[
            ("authorization", &basic(USER)),
            ("content-type", "application/json"),
        ],
        r#"{"winstrom":{"kusovnik":{"nazev":"elsewhere"}}}"#.to_string(),
    )
    .await;
    assert_eq!((r.status, stats(&r)), (400, [0, 0, 0, 1]), "{}", r.body);
    r.assert_has("nelze poslat na adresu záznamu evidence 'cenik'");

    // A PUT whose body names another record than its URL.
    let r = request(
        "PUT",
        &b.url(missing),
        &[
            ("authorization", &basic(USER)),
            ("content-type", "application/json"),
        ],
        r#"{"winstrom":{"cenik":{"id":"code:MODE-OTHER","nazev":"put"}}}"#.to_string(),
    )
    .await;
    assert_eq!((r.status, stats(&r)), (400, [0, 0, 0, 1]), "{}", r.body);
    r.assert_has("se neshoduje");
    assert_eq!(status(&b, "/c/demo/cenik/code:MODE-OTHER.json").await, 404);
    assert_eq!(name_of(&get(&b, missing, USER).await), "new");

    // An error quotes at most 64 characters of the offending value.
    let long = "K".repeat(5000);
    let r = post(
        &b,
        "/c/demo/cenik.json",
        &format!(r#"{{"winstrom":{{"cenik":[{{"kod":"{long}","nazev":"long"}}]}}}}"#),
    )
    .await;
    assert_eq!(r.status, 400, "{}", &r.body[..r.body.len().min(500)]);
    let value = json_of(&r)["winstrom"]["results"][0]["errors"][0]["value"].clone();
    assert_eq!(
        value,
        format!("{}…", "K".repeat(64)),
        "{}",
        &r.body[..r.body.len().min(500)]
    );
}
