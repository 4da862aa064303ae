//! The XML-RPC door beyond the fixtures: how each XSD type travels in both directions, `i8`
//! negotiation, and the limits and backend failures, as an XML-RPC client sees them.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // a test (or benchmark) may unwrap and print

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// A backend that records each JSON body it receives and answers `{"echo": <body>}` after
/// `delay`, or after as many milliseconds as the body's `count` when `delay` is `None`.
async fn echo_backend(delay: Option<Duration>) -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let url = json_backend(move |_, body| {
        let log = log.clone();
        async move {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            log.lock().unwrap().push(v.clone());
            let count = Duration::from_millis(v["count"].as_u64().unwrap_or(0));
            tokio::time::sleep(delay.unwrap_or(count)).await;
            (200, json!({ "echo": v }).to_string())
        }
    })
    .await;
    (url, seen)
}

fn typed_config(backend: &str, extra: &str) -> String {
    format!(
        r#"
[server]
max_body_bytes = 4096
max_depth = 16
request_timeout_ms = 2000
{extra}
[backends.echo]
base_url = "{backend}"
timeout_ms = 500

[mappings.typed.echo]
method = "POST"
path = "/echo"
body = "$.values"
response = {{ result = "$.echo" }}

[[services]]
name = "Typed"
path = "/typed"
wsdl = "../tests/wsdl/typed.wsdl"
backend = "echo"
mappings = "typed"
"#
    )
}

/// [`typed_config`] for multicalls: requests of up to 1 MiB, 32 levels deep, that may take
/// `request_ms`, to a backend given 20 s.
fn multicall_config(backend: &str, request_ms: u64) -> String {
    typed_config(backend, "")
        .replace("timeout_ms = 500\n", "timeout_ms = 20000\n")
        .replace("max_body_bytes = 4096", "max_body_bytes = 1048576")
        .replace("max_depth = 16", "max_depth = 32")
        .replace(
            "request_timeout_ms = 2000",
            &format!("request_timeout_ms = {request_ms}"),
        )
}

async fn typed_bridge(extra: &str) -> (Bridge, Arc<Mutex<Vec<Value>>>) {
    let (url, seen) = echo_backend(Some(Duration::ZERO)).await;
    (Bridge::with_config(&typed_config(&url, extra)).await, seen)
}

async fn rpc(b: &Bridge, user_agent: &str, body: &str) -> Reply {
    let r = request(
        "POST",
        &b.url("/RPC2"),
        &[("content-type", "text/xml"), ("user-agent", user_agent)],
        body.to_string(),
    )
    .await;
    assert_eq!(
        r.status, 200,
        "XML-RPC answers 200 to every call: {}",
        r.body
    );
    r
}

fn echo_call(values: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?><methodCall><methodName>Typed.echo</methodName><params><param><value><struct>{values}</struct></value></param></params></methodCall>"
    )
}

fn member(name: &str, value: &str) -> String {
    format!("<member><name>{name}</name><value>{value}</value></member>")
}

fn fault_code(r: &Reply) -> i32 {
    let i = r.body.find("<name>faultCode</name>").expect("a fault");
    let rest = &r.body[i..];
    let s = rest.find("<int>").unwrap() + 5;
    rest[s..s + rest[s..].find('<').unwrap()].parse().unwrap()
}

#[tokio::test]
async fn every_type_reaches_the_backend_as_the_schema_says_and_comes_back_typed() {
    let (b, seen) = typed_bridge("").await;
    let values = [
        member("count", "<i8>1597746714261</i8>"),
        member("small", "<int>-7</int>"),
        member(
            "when",
            "<dateTime.iso8601>19980717T14:08:55</dateTime.iso8601>",
        ),
        member(
            "day",
            "<dateTime.iso8601>20170325T00:00:00</dateTime.iso8601>",
        ),
        member("blob", "<base64>aGVs\n bG8=</base64>"),
        member("amount", "<double>12.50</double>"),
        member("ratio", "<double>0.25</double>"),
        member("flag", "<boolean>1</boolean>"),
        member("code", "<string>0085</string>"),
        member("note", "<nil/>"),
        member("tags", "<string>only one</string>"),
    ]
    .concat();
    let r = rpc(
        &b,
        "curl/8",
        &echo_call(&member("values", &format!("<struct>{values}</struct>"))),
    )
    .await;
    // The backend got JSON typed by the schema: exact decimal, strings kept, one-item list.
    assert_eq!(
        seen.lock().unwrap()[0].to_string(),
        r#"{"amount":12.50,"blob":"aGVsbG8=","code":"0085","count":1597746714261,"day":"2017-03-25","flag":true,"note":null,"ratio":0.25,"small":-7,"tags":["only one"],"when":"1998-07-17T14:08:55"}"#
    );
    // The answer is typed by the output schema; the client sent i8, so it gets i8 back.
    for part in [
        "<name>count</name><value><i8>1597746714261</i8></value>",
        "<name>small</name><value><int>-7</int></value>",
        "<name>when</name><value><dateTime.iso8601>19980717T14:08:55</dateTime.iso8601></value>",
        "<name>day</name><value><dateTime.iso8601>20170325T00:00:00</dateTime.iso8601></value>",
        "<name>blob</name><value><base64>aGVsbG8=</base64></value>",
        "<name>amount</name><value><double>12.50</double></value>",
        "<name>flag</name><value><boolean>1</boolean></value>",
        "<name>code</name><value><string>0085</string></value>",
        "<name>note</name><value><nil/></value>",
        "<name>tags</name><value><array><data><value><string>only one</string></value></data></array></value>",
    ] {
        r.assert_has(part);
    }
    // Dates given as strings: XSD's form as it is, XML-RPC's own form read as its
    // dateTime.iso8601 would be, anything else (a day that does not exist) refused.
    let dates = |when: &str, day: &str| {
        let values = [
            member("count", "<int>1</int>"),
            member("when", &format!("<string>{when}</string>")),
            member("day", &format!("<string>{day}</string>")),
        ]
        .concat();
        echo_call(&member("values", &format!("<struct>{values}</struct>")))
    };
    let r = rpc(&b, "x", &dates("2024-05-03T10:00:00Z", "20240503")).await;
    assert!(!r.body.contains("faultCode"), "{}", r.body);
    let sent = seen.lock().unwrap().last().unwrap().clone();
    assert_eq!(
        (sent["when"].as_str(), sent["day"].as_str()),
        (Some("2024-05-03T10:00:00Z"), Some("2024-05-03"))
    );
    let r = rpc(&b, "x", &dates("20240503T10:00:00", "2024-13-45")).await;
    assert_eq!(fault_code(&r), -32602, "{}", r.body);
    r.assert_has("invalid value '2024-13-45' for 'echo/values/day'");
}

#[tokio::test]
async fn wide_integers_go_as_i8_only_to_clients_that_read_it() {
    let (b, seen) = typed_bridge("").await;
    // A 13-digit time as a string of digits and as an integral double: both are accepted.
    let as_string = echo_call(&member(
        "values",
        &format!("<struct>{}</struct>", member("count", "1597746714261")),
    ));
    let as_double = echo_call(&member(
        "values",
        &format!(
            "<struct>{}</struct>",
            member("count", "<double>1597746714261.0</double>")
        ),
    ));
    let r = rpc(&b, "PHP XMLRPC", &as_string).await;
    r.assert_has("<name>count</name><value><string>1597746714261</string></value>");
    let r = rpc(&b, "Python-xmlrpc/3.11", &as_double).await;
    r.assert_has("<name>count</name><value><i8>1597746714261</i8></value>");
    assert_eq!(seen.lock().unwrap()[1]["count"], json!(1597746714261i64));
    // A fractional double is not an integer.
    let frac = echo_call(&member(
        "values",
        &format!(
            "<struct>{}</struct>",
            member("count", "<double>1.5</double>")
        ),
    ));
    assert_eq!(fault_code(&rpc(&b, "x", &frac).await), -32602);

    let (b, _) = typed_bridge("[xmlrpc]\ni8 = \"always\"").await;
    rpc(&b, "PHP XMLRPC", &as_string)
        .await
        .assert_has("<value><i8>1597746714261</i8></value>");
    let (b, _) = typed_bridge("[xmlrpc]\ni8 = \"never\"").await;
    rpc(&b, "Python-xmlrpc/3.11", &as_double)
        .await
        .assert_has("<value><string>1597746714261</string></value>");
}

#[tokio::test]
async fn limits_apply_as_for_soap() {
    let (b, _) = typed_bridge("").await;
    // Body size: the same max_body_bytes, answered as a parse-error fault.
    let big = echo_call(&member(
        "values",
        &format!("<struct>{}</struct>", member("code", &"x".repeat(5000))),
    ));
    let r = rpc(&b, "x", &big).await;
    assert_eq!(fault_code(&r), -32700);
    r.assert_has("larger than the limit of 4096 bytes");
    // Nesting depth.
    let deep = format!(
        "<methodCall><methodName>Typed.echo</methodName><params><param>{}{}</param></params></methodCall>",
        "<value><array><data>".repeat(10),
        "</data></array></value>".repeat(10)
    );
    let r = rpc(&b, "x", &deep).await;
    assert_eq!(fault_code(&r), -32700);
    r.assert_has("deeper than the limit of 16");
    // Entities beyond the predefined five are refused.
    let r = rpc(
        &b,
        "x",
        "<methodCall><methodName>&x;</methodName></methodCall>",
    )
    .await;
    assert_eq!(fault_code(&r), -32700);
    // XML-RPC has no GET.
    let r = request("GET", &b.url("/RPC2"), &[], "").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
}

#[tokio::test]
async fn backend_failures_are_faults_with_documented_codes() {
    // Unreachable.
    let b = Bridge::with_config(&typed_config("http://127.0.0.1:9", "")).await;
    let call = echo_call(&member(
        "values",
        &format!("<struct>{}</struct>", member("count", "<int>1</int>")),
    ));
    let r = rpc(&b, "x", &call).await;
    assert_eq!(fault_code(&r), 3001, "{}", r.body);
    r.assert_has("unreachable");
    // Slower than the backend's timeout.
    let (url, _) = echo_backend(Some(Duration::from_millis(1500))).await;
    let b = Bridge::with_config(&typed_config(&url, "")).await;
    let r = rpc(&b, "x", &call).await;
    assert_eq!(fault_code(&r), 3002, "{}", r.body);
    r.assert_has("did not answer within 500 ms");
}

#[tokio::test]
async fn missing_and_unknown_members_name_their_path() {
    let (b, _) = typed_bridge("").await;
    let r = rpc(&b, "x", &echo_call(&member("values", "<struct></struct>"))).await;
    assert_eq!(fault_code(&r), -32602);
    r.assert_has("missing required element 'echo/values/count'");
    let r = rpc(
        &b,
        "x",
        &echo_call(&member(
            "values",
            &format!(
                "<struct>{}{}</struct>",
                member("count", "<int>1</int>"),
                member("colour", "red")
            ),
        )),
    )
    .await;
    assert_eq!(fault_code(&r), -32602);
    r.assert_has("unexpected element 'colour' in 'echo/values'");
    // Legacy encodings are converted like SOAP bodies.
    let body = echo_call(&member(
        "values",
        &format!(
            "<struct>{}{}</struct>",
            member("count", "<int>1</int>"),
            member("code", "Işık")
        ),
    ))
    .replace(
        "<?xml version=\"1.0\"?>",
        "<?xml version=\"1.0\" encoding=\"ISO-8859-9\"?>",
    );
    let (bytes, _, _) = encoding_rs::WINDOWS_1254.encode(&body);
    let r = request(
        "POST",
        &b.url("/RPC2"),
        &[("content-type", "text/xml")],
        bytes.into_owned(),
    )
    .await;
    r.assert_has("<name>code</name><value><string>Işık</string></value>");

    // Named parameters with a misspelled one: the misspelling is named, not read as a
    // struct given for the first (string) parameter.
    let b = Bridge::demo().await;
    let named = format!(
        "<?xml version=\"1.0\"?><methodCall><methodName>IndividualProductOptionService.getOptionFeaturesInfo</methodName><params><param><value><struct>{}{}{}{}</struct></value></param></params></methodCall>",
        member("apiKey", "fixtureKey0000000000000000000000"),
        member("sign", "2ba343cc9f0e6294b53bd9d185384e60"),
        member("time", "1763800000000"),
        member("productID", "<int>1</int>"),
    );
    let r = request(
        "POST",
        &b.url("/RPC2"),
        &[
            ("content-type", "text/xml"),
            ("authorization", &basic(FIXTURE_USER)),
        ],
        named,
    )
    .await;
    assert_eq!(fault_code(&r), -32602, "{}", r.body);
    r.assert_has("unexpected member 'productID'");
    r.assert_has("the parameters are: apiKey, sign, time, productIds, lang");
}

/// A multicall of `n` calls of the fixture's getOptionFeaturesInfo.
fn options_multicall(n: usize) -> String {
    let call = std::fs::read_to_string("fixtures/xmlrpc/option/getOptionFeaturesInfo.xml").unwrap();
    let params = call
        .split_once("<params>")
        .and_then(|(_, rest)| rest.split_once("</params>"))
        .map(|(p, _)| p.replace("<param>", "").replace("</param>", ""))
        .unwrap();
    let entry = format!(
        "<value><struct><member><name>methodName</name><value><string>IndividualProductOptionService.getOptionFeaturesInfo</string></value></member><member><name>params</name><value><array><data>{params}</data></array></value></member></struct></value>"
    );
    format!(
        "<?xml version=\"1.0\"?><methodCall><methodName>system.multicall</methodName><params><param><value><array><data>{}</data></array></value></param></params></methodCall>",
        entry.repeat(n)
    )
}

/// A large result is sent while it is written, as for SOAP (chunked, without a length): the
/// same `methodResponse` as when it is written whole with streaming off. A multicall's answer is
/// sent while its calls are made, each result written whole into it. To an HTTP/1.0 client,
/// both are written whole.
#[tokio::test]
async fn a_large_result_is_sent_while_it_is_written() {
    let large = option_features(4000, None);
    let b = bridge_answering(vec![large.clone()]).await;
    let call = std::fs::read_to_string("fixtures/xmlrpc/option/getOptionFeaturesInfo.xml").unwrap();
    let post = |b: &Bridge, body: String| {
        let url = b.url("/RPC2");
        let auth = basic(FIXTURE_USER);
        async move {
            request(
                "POST",
                &url,
                &[("content-type", "text/xml"), ("authorization", &auth)],
                body,
            )
            .await
        }
    };
    let r = post(&b, call.clone()).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        None,
        "{}",
        &r.body[..300.min(r.body.len())]
    );
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.body.matches("<name>productId</name>").count(), 4000);
    assert!(r.body.contains("<value><int>4999</int></value>"));
    assert!(r.body.ends_with("</param></params></methodResponse>"));
    // Times differ between calls: compare from the first product on.
    let products = |xml: &str| {
        let at = xml.find("<name>productCount</name>").expect("productCount");
        xml[at..].to_string()
    };
    let whole = bridge_answering_whole(vec![large]).await;
    let w = post(&whole, call.clone()).await;
    assert!(w.header("content-length").is_some());
    assert_eq!(products(&w.body), products(&r.body));
    let multicall = options_multicall(1);
    // An HTTP/1.0 client (no chunked framing) gets the result written whole, with its length.
    let head = [("Content-Type", "text/xml")];
    let read = RawRead {
        limit: usize::MAX,
        pause: Duration::ZERO,
    };
    let old = raw_post(&b, "/RPC2", "HTTP/1.0", FIXTURE_USER, &head, &call, read).await;
    let old = String::from_utf8(old).unwrap();
    assert!(old.starts_with("HTTP/1.0 200 OK\r\n"), "{}", &old[..200]);
    assert!(old.to_ascii_lowercase().contains("\r\ncontent-length: "));
    assert!(old.ends_with("</param></params></methodResponse>"));
    assert_eq!(
        products(old.split_once("\r\n\r\n").unwrap().1),
        products(&r.body)
    );
    // A multicall's answer is sent while its calls are made and written, each call's result
    // whole inside it: the same result as the call's alone.
    let m = post(&b, multicall.clone()).await;
    assert_eq!(
        m.header("content-length"),
        None,
        "{}",
        &m.body[..300.min(m.body.len())]
    );
    assert_eq!(m.header("transfer-encoding"), Some("chunked"));
    assert_eq!(m.body.matches("<name>productId</name>").count(), 4000);
    let result = products(&w.body);
    let result = result
        .strip_suffix("</param></params></methodResponse>")
        .unwrap();
    assert_eq!(
        products(&m.body),
        format!(
            "{result}</data></array></value></data></array></value></param></params></methodResponse>"
        )
    );
    // With streaming off, written whole.
    let mw = post(&whole, multicall.clone()).await;
    assert!(mw.header("content-length").is_some());
    assert_eq!(products(&mw.body), products(&m.body));
    // To an HTTP/1.0 client, written whole.
    let old = raw_post(
        &b,
        "/RPC2",
        "HTTP/1.0",
        FIXTURE_USER,
        &head,
        &multicall,
        read,
    )
    .await;
    let old = String::from_utf8(old).unwrap();
    assert!(old.to_ascii_lowercase().contains("\r\ncontent-length: "));
    assert_eq!(
        products(old.split_once("\r\n\r\n").unwrap().1),
        products(&m.body)
    );
}

/// A multicall of `Typed.echo` calls, one for each `count`, each with `code` when given.
fn echo_multicall(counts: &[u64], code: Option<&str>) -> String {
    let code = code.map_or(String::new(), |c| {
        member("code", &format!("<string>{c}</string>"))
    });
    let calls: String = counts
        .iter()
        .map(|n| {
            let values = member(
                "values",
                &format!(
                    "<struct>{}{code}</struct>",
                    member("count", &format!("<int>{n}</int>"))
                ),
            );
            format!(
                "<value><struct>{}{}</struct></value>",
                member("methodName", "<string>Typed.echo</string>"),
                member(
                    "params",
                    &format!(
                        "<array><data><value><struct>{values}</struct></value></data></array>"
                    ),
                )
            )
        })
        .collect();
    format!(
        "<?xml version=\"1.0\"?><methodCall><methodName>system.multicall</methodName><params><param><value><array><data>{calls}</data></array></value></param></params></methodCall>"
    )
}

/// The faults of a multicall's answer, in order: `None` for a result, else (code, text).
fn multicall_faults(body: &str) -> Vec<Option<(i32, String)>> {
    let data = body
        .split_once("<array><data>")
        .and_then(|(_, rest)| rest.rsplit_once("</data></array>"))
        .map(|(d, _)| d)
        .unwrap_or_else(|| panic!("a multicall's array: {body}"));
    // Each answer is a `<value>` of the array: a one-item array (a result) or a fault struct.
    let mut out = Vec::new();
    let (mut depth, mut from, mut at) = (0, 0, 0);
    while at < data.len() {
        if data[at..].starts_with("<value>") {
            if depth == 0 {
                from = at;
            }
            depth += 1;
            at += "<value>".len();
        } else if data[at..].starts_with("</value>") {
            depth -= 1;
            at += "</value>".len();
            if depth == 0 {
                let answer = &data[from..at];
                out.push(
                    answer
                        .starts_with("<value><struct><member><name>faultCode</name>")
                        .then(|| {
                            let code = text_of(answer, "int").unwrap().parse().unwrap();
                            (code, text_of(answer, "string").unwrap())
                        }),
                );
            }
        } else {
            at += 1;
        }
    }
    assert_eq!(depth, 0, "{data}");
    out
}

/// When a multicall's request time runs out, what was done still reaches the client: the
/// results before it, the call whose backend has not answered at 95% of the time given up with
/// its own fault, and the calls after it answered "not called" (and not made). No call is
/// started after 80% of the time.
#[tokio::test]
async fn a_multicall_out_of_time_answers_what_was_done() {
    let (url, seen) = echo_backend(None).await;
    // The request may take 5 s (4 s to start calls, 4.75 s to answer them).
    let b = Bridge::with_config(&multicall_config(&url, 5000)).await;

    // The second call's backend has not answered at 4.75 s: given up; the third is not made.
    let t = std::time::Instant::now();
    let r = rpc(&b, "x", &echo_multicall(&[100, 10_000, 0], None)).await;
    let took = t.elapsed();
    assert!(took < Duration::from_millis(6000), "answered at {took:?}");
    let faults = multicall_faults(&r.body);
    assert_eq!(faults.len(), 3, "{}", r.body);
    assert_eq!(faults[0], None, "{}", r.body);
    r.assert_has("<name>count</name><value><int>100</int></value>");
    assert_eq!(
        faults[1],
        Some((
            3005,
            "the backend had not answered this call when the request's time limit of 5000 ms was nearly up; it may or may not have done it".into()
        ))
    );
    assert_eq!(
        faults[2],
        Some((
            3005,
            "not called: the request's time limit of 5000 ms was nearly up before call 3 of 3; send it and the calls after it again".into()
        ))
    );
    let made: Vec<u64> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|v| v["count"].as_u64().unwrap())
        .collect();
    assert_eq!(
        made,
        [100, 10_000],
        "the call after the timeout is not made"
    );

    // The first call ends after 80% of the time (4 s): the others are not started.
    seen.lock().unwrap().clear();
    let r = rpc(&b, "x", &echo_multicall(&[4200, 0, 0], None)).await;
    let faults = multicall_faults(&r.body);
    assert_eq!(faults[0], None, "{}", r.body);
    for (i, f) in faults.iter().enumerate().skip(1) {
        let (code, text) = f.as_ref().expect("a fault");
        assert_eq!(*code, 3005);
        assert!(
            text.contains(&format!("before call {} of 3", i + 1)),
            "{text}"
        );
    }
    assert_eq!(seen.lock().unwrap().len(), 1);

    // Each is counted as the fault it is.
    let m = request("GET", &b.url("/metrics"), &[], "").await;
    for (outcome, code, n) in [("fault", "REQUEST_TIMEOUT", 4), ("success", "", 2)] {
        m.assert_has(&format!(
            "soapbridge_calls_total{{door=\"xmlrpc\",service=\"Typed\",operation=\"echo\",outcome=\"{outcome}\",code=\"{code}\"}} {n}\n"
        ));
    }
}

/// A multicall whose client goes away while its answer is sent makes no further call: its
/// calls are made only while someone reads their answers.
#[tokio::test]
async fn a_multicall_stops_when_its_client_goes_away() {
    let b = bridge_answering(vec![option_features(4000, None)]).await;
    const CALLS: usize = 40;
    let multicall = options_multicall(CALLS);
    let head = [("Content-Type", "text/xml")];
    // Reads the head and the first bytes of the answer, then closes the connection.
    let read = RawRead {
        limit: 1000,
        pause: Duration::ZERO,
    };
    let got = raw_post(
        &b,
        "/RPC2",
        "HTTP/1.1",
        FIXTURE_USER,
        &head,
        &multicall,
        read,
    )
    .await;
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"));
    // The task counts how its answer ended once it stops.
    let closed = "soapbridge_streamed_answers_total{end=\"closed\"}";
    let made = "soapbridge_calls_total{door=\"xmlrpc\",service=\"IndividualProductOptionService\",operation=\"getOptionFeaturesInfo\",outcome=\"success\",code=\"\"}";
    for _ in 0..200 {
        let m = request("GET", &b.url("/metrics"), &[], "").await;
        if metric(&m.body, closed) == Some(1.0) {
            let made = metric(&m.body, made).expect("the calls made are counted");
            assert!(
                made >= 1.0 && made < CALLS as f64 / 2.0,
                "{made} of {CALLS} calls made after the client went away"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the multicall did not stop within 10 s of its client going away");
}

/// The same with small results: once the answer began, a client that goes away is noticed
/// before the next piece is due, and no further call is made.
#[tokio::test]
async fn a_multicall_of_small_results_stops_when_its_client_goes_away() {
    let (url, seen) = echo_backend(None).await;
    let b = Bridge::with_config(&multicall_config(&url, 30_000)).await;
    // Each result is about 700 bytes: the answer's first piece (128 KiB) goes out after about
    // 190 calls, the second would after about 380.
    const CALLS: usize = 800;
    let call = echo_multicall(&[2; CALLS], Some(&"x".repeat(400)));
    let read = RawRead {
        limit: 1000,
        pause: Duration::ZERO,
    };
    let head = [("Content-Type", "text/xml")];
    let got = raw_post(&b, "/RPC2", "HTTP/1.1", "x", &head, &call, read).await;
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"));
    let closed = "soapbridge_streamed_answers_total{end=\"closed\"}";
    for _ in 0..200 {
        let m = request("GET", &b.url("/metrics"), &[], "").await;
        if metric(&m.body, closed) == Some(1.0) {
            let made = seen.lock().unwrap().len();
            assert!(
                (150..350).contains(&made),
                "{made} of {CALLS} calls made; the client went away after the first piece"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the multicall did not stop within 10 s of its client going away ({} calls made)",
        seen.lock().unwrap().len()
    );
}

/// A client that goes away before a multicall's answer began has the call in flight given up
/// and no further call made for it.
#[tokio::test]
async fn a_multicall_stops_when_its_client_goes_away_before_its_answer() {
    let (url, seen) = echo_backend(None).await;
    let b = Bridge::with_config(&multicall_config(&url, 30_000)).await;
    // The second call's backend takes 10 s.
    let call = echo_multicall(&[20, 10_000, 20], None);
    // Sends the multicall, and closes the connection once the second call reached the backend.
    {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(b.addr).await.unwrap();
        let head = format!(
            "POST /RPC2 HTTP/1.1\r\nHost: {}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n",
            b.addr,
            call.len()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(call.as_bytes()).await.unwrap();
        for _ in 0..200 {
            if seen.lock().unwrap().len() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(seen.lock().unwrap().len(), 2);
    }
    // Well before the second call's 10 s: the first call is counted, the second given up
    // (not counted), the third not made.
    let made = "soapbridge_calls_total{door=\"xmlrpc\",service=\"Typed\",operation=\"echo\",outcome=\"success\",code=\"\"}";
    for _ in 0..60 {
        let m = request("GET", &b.url("/metrics"), &[], "").await;
        if let Some(n) = metric(&m.body, made) {
            assert_eq!(n, 1.0, "{}", m.body);
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert_eq!(
                seen.lock().unwrap().len(),
                2,
                "no call after the client went away"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the multicall did not stop within 3 s of its client going away");
}
