//! Hardening (issue 10): what hostile clients, real legacy clients and fuzzing found, each
//! answered the way the caller's protocol expects and kept fixed by a black-box test.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // a test (or benchmark) may unwrap and print

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FLEXI: &str = "winstrom:winstrom-pass";

fn json_of(r: &Reply) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body))
}

async fn flexi_get(b: &Bridge, path: &str) -> Reply {
    request("GET", &b.url(path), &[("authorization", &basic(FLEXI))], "").await
}

async fn flexi_post(b: &Bridge, path: &str, body: String) -> Reply {
    request(
        "POST",
        &b.url(path),
        &[
            ("authorization", &basic(FLEXI)),
            ("content-type", "application/json"),
        ],
        body,
    )
    .await
}

// ---- 1. WQL filters are bounded in terms and nodes ----------------------------------------

/// `id = 0 or id = 1 or ...` with `n` comparisons.
fn or_filter(n: usize) -> String {
    (0..n)
        .map(|i| format!("id = {i}"))
        .collect::<Vec<_>>()
        .join(" or ")
}

#[tokio::test]
async fn a_filter_with_too_many_terms_is_refused_with_a_positioned_wql_error() {
    let b = Bridge::demo().await;
    // 60,000 terms in a document's filter attribute (under 1 MiB): refused, nothing parsed
    // into a tree of 60,000 nodes, nothing sent to the backend.
    let filter = or_filter(60_000);
    assert!(filter.len() < 1024 * 1024);
    let doc =
        serde_json::json!({"winstrom": {"cenik": [{"@filter": filter, "@action": "delete"}]}});
    let r = flexi_post(&b, "/c/demo/cenik.json", doc.to_string()).await;
    assert_eq!(r.status, 400, "{}", &r.body[..r.body.len().min(600)]);
    let v = json_of(&r);
    let msg = v["winstrom"]["results"][0]["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // The 1,001st comparison is where the filter goes over the default limit of 1,000 terms.
    let at = filter.find("id = 1000 ").unwrap() + 1;
    assert!(
        msg.starts_with(&format!(
            "Špatný formát WQL dotazu, problém na pozici {at} poblíž textu 'id'"
        )),
        "{msg}"
    );
    assert!(msg.contains("1000"), "the limit is named: {msg}");
    assert_eq!(v["winstrom"]["stats"]["deleted"], "0");

    // The same in a URL filter.
    let mut path = String::from("/c/demo/cenik/(");
    path.extend(percent_encoding::utf8_percent_encode(
        &or_filter(1001),
        percent_encoding::NON_ALPHANUMERIC,
    ));
    path.push_str(").json");
    let r = flexi_get(&b, &path).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        json_of(&r)["winstrom"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Špatný formát WQL dotazu"),
        "{}",
        r.body
    );
    // At the limit it is a filter like any other.
    let mut path = String::from("/c/demo/cenik/(");
    path.extend(percent_encoding::utf8_percent_encode(
        &or_filter(1000),
        percent_encoding::NON_ALPHANUMERIC,
    ));
    path.push_str(").json");
    let r = flexi_get(&b, &path).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn the_filter_limits_are_configurable() {
    let cfg = std::fs::read_to_string("demo/soapbridge.toml")
        .unwrap()
        .replace(
            "max_matches = 5000",
            "max_matches = 5000\nmax_filter_terms = 3\nmax_filter_nodes = 8",
        );
    let b = Bridge::with_config(&cfg).await;
    let mut ok = String::from("/c/demo/cenik/(");
    ok.extend(percent_encoding::utf8_percent_encode(
        &or_filter(3),
        percent_encoding::NON_ALPHANUMERIC,
    ));
    ok.push_str(").json");
    assert_eq!(flexi_get(&b, &ok).await.status, 200);
    let mut over = String::from("/c/demo/cenik/(");
    over.extend(percent_encoding::utf8_percent_encode(
        &or_filter(4),
        percent_encoding::NON_ALPHANUMERIC,
    ));
    over.push_str(").json");
    let r = flexi_get(&b, &over).await;
    assert_eq!(r.status, 400, "{}", r.body);
    // Nodes: `or_filter(3)` has 3 comparisons, 3 values and 2 `or`s; an `in` list counts its
    // values, so 8 of them make 9 nodes.
    let mut nodes = String::from("/c/demo/cenik/(");
    nodes.extend(percent_encoding::utf8_percent_encode(
        "kod in ('A', 'B', 'C', 'D', 'E', 'F', 'G', 'H')",
        percent_encoding::NON_ALPHANUMERIC,
    ));
    nodes.push_str(").json");
    let r = flexi_get(&b, &nodes).await;
    assert_eq!(r.status, 400, "{}", r.body);
    r.assert_has("poblíž textu ''H''");
}

// ---- 2. Input that cannot fit a backend URL is the caller's error -------------------------

#[tokio::test]
async fn input_too_large_for_a_backend_url_is_a_short_client_fault() {
    let b = Bridge::demo().await;
    let items: String = (0..8000)
        .map(|i| format!("<item>{}</item>", 587_300_000 + i))
        .collect();
    let env = envelope(
        "getOptionFeaturesInfo",
        &format!("<productIds>{items}</productIds>"),
        "en",
        now_ms(),
    );
    let r = soap(&b.url(OPTION_PATH), USER, env.clone()).await;
    assert!(r.body.len() < 2000, "a short fault: {} bytes", r.body.len());
    assert_eq!(
        r.text_of("faultcode").as_deref(),
        Some("env:Client"),
        "{}",
        r.body
    );
    assert_eq!(
        r.text_of("code").as_deref(),
        Some("REQUEST_TOO_LARGE_FOR_BACKEND")
    );
    assert!(
        !r.body.contains("127.0.0.1"),
        "no backend address: {}",
        r.body
    );
    assert!(!r.body.contains("/v1/"), "no backend path: {}", r.body);
    // SOAP 1.2: a Sender fault with 400.
    let env12 = env.replace(
        "http://schemas.xmlsoap.org/soap/envelope/",
        "http://www.w3.org/2003/05/soap-envelope",
    );
    let env12 = signed(&env12, KEY, SECRET, now_ms() - 1);
    let r = soap12(&b.url(OPTION_PATH), USER, env12).await;
    assert_eq!(r.status, 400, "{}", r.body);
    r.assert_has("Sender");

    // A 60,000-character winstrom id (the test client cannot send 70,000): Flexi's error
    // shape, 400-class, no address.
    let id = "A".repeat(60_000);
    let r = flexi_get(&b, &format!("/c/demo/cenik/code:{id}.json")).await;
    assert!(
        r.status == 400 || r.status == 414,
        "{} {}",
        r.status,
        &r.body[..r.body.len().min(300)]
    );
    assert!(r.body.len() < 2000, "{} bytes", r.body.len());
    assert_eq!(json_of(&r)["winstrom"]["success"], "false");
    assert!(!r.body.contains("127.0.0.1"), "{}", r.body);
}

// ---- 3. Credentials in backend URLs --------------------------------------------------------

#[test]
fn a_backend_url_with_credentials_is_refused_without_echoing_them() {
    let dir = std::env::temp_dir().join(format!("soapbridge-userinfo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = demo_with_backend_url("options", "http://svc-user:S3cr3t-pw@127.0.0.1:9").replace(
        "\"../",
        &format!("\"{}/", std::fs::canonicalize(".").unwrap().display()),
    );
    let path = dir.join("userinfo.toml");
    std::fs::write(&path, cfg).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_soapbridge"))
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("backends.options.base_url"), "{all}");
    assert!(all.contains("auth"), "points to [backends.X.auth]: {all}");
    assert!(
        !all.contains("S3cr3t-pw"),
        "the password is not echoed: {all}"
    );
}

// ---- 4 and 5. Early answers keep the connection usable, or close it cleanly ----------------

/// Reads one response (head and Content-Length body) from a raw connection.
async fn read_response(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("an answer in time")
            .unwrap_or(0);
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return text;
            }
        }
    }
}

fn head(auth: Option<&str>, len: usize) -> String {
    let auth = auth
        .map(|a| format!("Authorization: {}\r\n", basic(a)))
        .unwrap_or_default();
    format!(
        "POST {OPTION_PATH} HTTP/1.1\r\nHost: t\r\nContent-Type: text/xml\r\nSOAPAction: \"\"\r\n{auth}Content-Length: {len}\r\n\r\n"
    )
}

#[tokio::test]
async fn a_401_challenge_then_retry_works_on_the_same_connection() {
    let b = Bridge::demo().await;
    let base = now_ms();
    for i in 0..50 {
        let env = envelope(
            "calculateOptionsPrice",
            "<productIds><item>587300354</item></productIds>",
            "en",
            base - i,
        );
        let mut s = TcpStream::connect(b.addr).await.unwrap();
        // As PHP's and Python's clients do: headers, then the body in a second write.
        s.write_all(head(None, env.len()).as_bytes()).await.unwrap();
        tokio::task::yield_now().await;
        s.write_all(env.as_bytes()).await.unwrap();
        let first = read_response(&mut s).await;
        assert!(first.starts_with("HTTP/1.1 401"), "{first}");
        let keeps = !first.to_ascii_lowercase().contains("connection: close");
        if !keeps {
            // Told to close: a client opens a new connection for the retry.
            s = TcpStream::connect(b.addr).await.unwrap();
        }
        s.write_all(head(Some(USER), env.len()).as_bytes())
            .await
            .unwrap();
        s.write_all(env.as_bytes()).await.unwrap();
        let second = read_response(&mut s).await;
        assert!(second.starts_with("HTTP/1.1 200"), "retry {i}: {second}");
        assert!(second.contains("<ackCode>success</ackCode>"), "{second}");
    }
}

#[tokio::test]
async fn a_client_that_writes_a_huge_body_before_reading_sees_the_413_fault() {
    let b = Bridge::demo().await;
    let addr = b.addr;
    // As Python's urllib and PHP do: the whole body is written, then the answer is read.
    let answer = tokio::task::spawn_blocking(move || {
        let body_len = 64 * 1024 * 1024;
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(head(Some(USER), body_len).as_bytes()).unwrap();
        let chunk = vec![b'x'; 1024 * 1024];
        for _ in 0..64 {
            s.write_all(&chunk).expect("the whole body can be written");
        }
        // One response: its head, then as many bytes as its Content-Length says.
        let mut out = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let n = s.read(&mut chunk).unwrap_or(0);
            out.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&out).to_string();
            let complete = text.find("\r\n\r\n").is_some_and(|end| {
                let len: usize = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .and_then(|v| v.trim().parse().ok())
                    })
                    .unwrap_or(0);
                out.len() >= end + 4 + len
            });
            if n == 0 || complete {
                return text;
            }
        }
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("BODY_TOO_LARGE"), "{answer}");
}

// ---- 6. winstrom: the status says who is at fault -----------------------------------------

#[tokio::test]
async fn winstrom_client_errors_are_400_or_404_in_flexi_shape() {
    let b = Bridge::demo().await;
    for (path, status, needle) in [
        (
            "/c/demo/cenik/(typVztahu.json",
            400,
            "Špatný formát WQL dotazu",
        ),
        (
            "/c/demo/cenik/(cenaZakl%20%3E%201000000000000000000000000000000).json",
            400,
            "too large",
        ),
        ("/c/demo/cenik/%2e%2e.json", 400, ".."),
    ] {
        let r = flexi_get(&b, path).await;
        assert_eq!(r.status, status, "{path}: {}", r.body);
        let v = json_of(&r);
        assert_eq!(v["winstrom"]["success"], "false", "{path}");
        let m = v["winstrom"]["message"].as_str().unwrap();
        assert!(m.contains(needle), "{path}: {m}");
        assert!(!m.contains("Chyba backendu"), "{path}: {m}");
    }
}

// ---- 7. XML-RPC: a single value for a wrapper list ----------------------------------------

async fn rpc(b: &Bridge, user: &str, body: &str) -> Reply {
    request(
        "POST",
        &b.url("/RPC2"),
        &[
            ("content-type", "text/xml"),
            ("authorization", &basic(user)),
        ],
        body.to_string(),
    )
    .await
}

fn method_call(name: &str, params: &[&str]) -> String {
    let params: String = params
        .iter()
        .map(|p| format!("<param><value>{p}</value></param>"))
        .collect();
    format!(
        "<?xml version=\"1.0\"?><methodCall><methodName>{name}</methodName><params>{params}</params></methodCall>"
    )
}

fn member(name: &str, value: &str) -> String {
    format!("<member><name>{name}</name><value>{value}</value></member>")
}

#[tokio::test]
async fn xmlrpc_takes_a_single_value_as_a_one_item_list() {
    let b = Bridge::demo().await;
    // A struct where a list of structs is expected.
    let stock = format!(
        "<struct>{}{}{}</struct>",
        member("sku", "<string>SKU-00001</string>"),
        member("warehouseCode", "<string>WH-IST</string>"),
        member("quantity", "<int>7</int>")
    );
    for method in ["insertProductStocks", "updateProductStocks"] {
        let r = rpc(
            &b,
            "stock:stock-pass",
            &method_call(
                &format!("StockService.{method}"),
                &["<boolean>1</boolean>", "<nil/>", &stock],
            ),
        )
        .await;
        assert!(!r.body.contains("<fault>"), "{}", r.body);
        r.assert_has("<name>sku</name><value><string>SKU-00001</string></value>");
        r.assert_has("<string>SUCCESS</string>");
    }

    // A struct for a wrapper of records.
    let record = format!(
        "<struct>{}{}{}{}{}{}</struct>",
        member("date", "<string>2024-05-01</string>"),
        member("shopId", "<string>1</string>"),
        member("productId", "<string>6313</string>"),
        member("qty", "<double>2.0</double>"),
        member("originalPrice", "<double>10.50</double>"),
        member("stockTotalPrice", "<double>21.00</double>")
    );
    let r = rpc(
        &b,
        "inventory:inventory-pass",
        &method_call("InventoryService.uploadInventory", &[&record]),
    )
    .await;
    assert!(!r.body.contains("<fault>"), "{}", r.body);
    r.assert_has("<name>ok</name><value><int>1</int></value>");

    // A bare int for IntArray productIds.
    let t = now_ms();
    let sign = soapbridge::sign(KEY, SECRET, t);
    let r = rpc(
        &b,
        USER,
        &method_call(
            "IndividualProductOptionService.calculateOptionsPrice",
            &[
                &format!("<string>{KEY}</string>"),
                &format!("<string>{sign}</string>"),
                &format!("<string>{t}</string>"),
                "<int>587300354</int>",
                "<string>en</string>",
            ],
        ),
    )
    .await;
    assert!(!r.body.contains("<fault>"), "{}", r.body);
    r.assert_has("<name>ackCode</name><value><string>success</string></value>");
    r.assert_has("<name>productCount</name><value><int>1</int></value>");
}

// ---- 8. xsi:nil on an optional, non-nillable element --------------------------------------

fn stock_envelope(success_log: &str) -> String {
    format!(
        "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:stk=\"urn:soapbridge:akinon:stock\"><soapenv:Body><stk:insertProductStocks><isSync>true</isSync>{success_log}<stocks><stock><sku>SKU-00002</sku><warehouseCode>WH-IST</warehouseCode><quantity>4</quantity></stock></stocks></stk:insertProductStocks></soapenv:Body></soapenv:Envelope>"
    )
}

#[tokio::test]
async fn nil_on_an_optional_element_is_taken_as_absent() {
    let b = Bridge::demo().await;
    let r = soap(
        &b.url("/stock/ws/StockService"),
        "stock:stock-pass",
        stock_envelope("<isSuccessLog xsi:nil=\"true\"/>"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.assert_has("<status>SUCCESS</status>");
}

#[tokio::test]
async fn nil_on_an_optional_element_is_refused_when_the_service_is_strict() {
    let cfg = std::fs::read_to_string("demo/soapbridge.toml")
        .unwrap()
        .replace(
            "wsdl = \"../wsdl/StockService.wsdl\"",
            "wsdl = \"../wsdl/StockService.wsdl\"\nstrict_nil = true",
        );
    let b = Bridge::with_config(&cfg).await;
    let r = soap(
        &b.url("/stock/ws/StockService"),
        "stock:stock-pass",
        stock_envelope("<isSuccessLog xsi:nil=\"true\"/>"),
    )
    .await;
    assert_eq!(r.status, 500, "{}", r.body);
    assert_eq!(r.text_of("code").as_deref(), Some("NOT_NILLABLE"));
}

// ---- 9. A used signature stays used across a restart ---------------------------------------

#[tokio::test]
async fn a_signature_used_before_a_restart_is_refused_after_it() {
    let db = temp_db();
    let cfg = std::fs::read_to_string("demo/soapbridge.toml")
        .unwrap()
        .replace(
            "url = \"sqlite:../var/soapbridge.db\"",
            &format!("url = \"sqlite:{}\"", db.display()),
        );
    let env = envelope(
        "calculateOptionsPrice",
        "<productIds><item>587300354</item></productIds>",
        "en",
        now_ms(),
    );
    let mut first = Bridge::with_config(&cfg).await;
    soap(&first.url(OPTION_PATH), USER, env.clone())
        .await
        .assert_success();
    first.shutdown().await.unwrap();
    let second = Bridge::with_config(&cfg).await;
    let again = soap(&second.url(OPTION_PATH), USER, env).await;
    assert_eq!(
        again.text_of("errorCode").as_deref(),
        Some("SIGNATURE_REUSED"),
        "{}",
        again.body
    );
}

// ---- 8. Large request bodies in flight are bounded across all requests --------------------

/// A 1 MB calculateOptionsPrice call, signed at `time`.
fn large_call(time: i64) -> String {
    let items = "<item>587300354</item>".repeat(44_000);
    envelope(
        "calculateOptionsPrice",
        &format!("<productIds>{items}</productIds>"),
        "en",
        time,
    )
}

/// `server.max_body_bytes_in_flight`: while one large call holds most of it (its backend is
/// slow), another large body of declared length waits for room and, finding none in the time
/// a body may take, is refused 503 with BRIDGE_BUSY in the caller's protocol; a chunked one is
/// refused at once; small calls go on as usual. Once the first call is answered, the same
/// large call is read and answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_in_flight_are_bounded_and_the_caller_is_told_to_come_back() {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let url = json_backend(move |_, _| {
        let first = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
        async move {
            if first {
                tokio::time::sleep(Duration::from_secs(7)).await;
            }
            let voucher = r#"{"voucher":{"code":"FT-1","amount":0.01,"payment_required":true,"product_count":44000}}"#;
            (201, voucher.to_string())
        }
    })
    .await;
    let config = demo_with_backend_url("options", &url)
        .replace("body_timeout_ms = 30000", "body_timeout_ms = 1200")
        .replace(
            "timeout_ms = 5000               # connect + send + whole answer",
            "timeout_ms = 15000",
        )
        .replace(
            "max_body_bytes_in_flight = 268435456",
            "max_body_bytes_in_flight = 1572864",
        );
    let b = Bridge::with_config(&config).await;
    let base = now_ms();
    let large = large_call(base);
    assert!(large.len() > 960_000 && large.len() < 1_048_576);

    // A large call whose backend takes 7 s: about 1,000 KiB of the 1,536 held meanwhile.
    let holder = {
        let (url, body) = (b.url(OPTION_PATH), large.clone());
        tokio::spawn(async move { soap(&url, USER, body).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    // /metrics shows what it holds, in whole KiB.
    let held = |text: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix("soapbridge_request_body_bytes_in_flight "))
            .map_or(-1.0, |v| v.trim().parse().unwrap())
    };
    let m = request("GET", &b.url("/metrics"), &[], "").await;
    assert_eq!(held(&m.body), (large.len().div_ceil(1024) * 1024) as f64);

    // Another large body cannot be read: SOAP fault, 503, the bound named.
    let r = soap(&b.url(OPTION_PATH), USER, large_call(base + 1)).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("BRIDGE_BUSY"), "{}", r.body);
    assert!(r.body.contains("max_body_bytes_in_flight"), "{}", r.body);
    assert!(r.body.contains(":Server</faultcode>"), "{}", r.body);
    assert_eq!(r.header("retry-after"), Some("1"));

    // XML-RPC says the same as its fault (HTTP 200, faultCode 3010).
    let padding = "x".repeat(700_000);
    let call = method_call(
        "getOptionFeaturesInfo",
        &[&format!("<string>{padding}</string>")],
    );
    let r = rpc(&b, FIXTURE_USER, &call).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("<int>3010</int>"),
        "{}",
        &r.body[..r.body.len().min(600)]
    );
    assert!(r.body.contains("max_body_bytes_in_flight"), "{}", r.body);

    // winstrom says it as Flexi does: success=false, 503, with when to come back.
    let doc = format!(
        r#"{{"winstrom":{{"cenik":[{{"kod":"BIG","nazev":"{}"}}]}}}}"#,
        "x".repeat(700_000)
    );
    let r = flexi_post(&b, "/c/demo/cenik.json", doc).await;
    assert_eq!(r.status, 503, "{}", &r.body[..r.body.len().min(600)]);
    assert_eq!(json_of(&r)["winstrom"]["success"], "false", "{}", r.body);
    assert!(r.body.contains("max_body_bytes_in_flight"), "{}", r.body);
    assert_eq!(r.header("retry-after"), Some("1"));

    // Nor a chunked one, which is refused as soon as it outgrows what small bodies may hold.
    let mut chunked = TcpStream::connect(b.addr).await.unwrap();
    let head_chunked = format!(
        "POST {OPTION_PATH} HTTP/1.1\r\nHost: t\r\nContent-Type: text/xml\r\nSOAPAction: \"\"\r\nAuthorization: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
        basic(USER)
    );
    chunked.write_all(head_chunked.as_bytes()).await.unwrap();
    for piece in large.as_bytes().chunks(32 * 1024).take(20) {
        let frame = [format!("{:x}\r\n", piece.len()).as_bytes(), piece, b"\r\n"].concat();
        if chunked.write_all(&frame).await.is_err() {
            break; // the bridge answered and stopped reading
        }
    }
    // The body ends (cut short: a bridge that read it would say the XML is broken), so that
    // the answer is not held up by the reading away of a rest that never comes.
    let _ = chunked.write_all(b"0\r\n\r\n").await;
    let answer = read_response(&mut chunked).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("BRIDGE_BUSY"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1\r\n"),
        "{answer}"
    );

    // A small call does not wait behind the large ones.
    let small = envelope(
        "calculateOptionsPrice",
        "<productIds><item>587300354</item></productIds>",
        "en",
        base + 2,
    );
    soap(&b.url(OPTION_PATH), USER, small)
        .await
        .assert_success();

    // The first call is answered: what its body held is given back, and the large call is read.
    holder.await.unwrap().assert_success();
    let m = request("GET", &b.url("/metrics"), &[], "").await;
    assert_eq!(held(&m.body), 0.0);
    let r = soap(&b.url(OPTION_PATH), USER, large_call(base + 3)).await;
    r.assert_success();
    assert_eq!(
        r.text_of("productCount").as_deref(),
        Some("44000"),
        "{}",
        &r.body[..r.body.len().min(600)]
    );
}

// ---- 9. Compressed request bodies (PHP SoapClient's `compression`) --------------------------

async fn soap_encoded(b: &Bridge, coding: &str, body: Vec<u8>) -> Reply {
    request(
        "POST",
        &b.url(OPTION_PATH),
        &[
            ("content-type", "text/xml; charset=utf-8"),
            ("soapaction", "\"\""),
            ("content-encoding", coding),
            ("authorization", &basic(USER)),
        ],
        body,
    )
    .await
}

/// A body sent with `Content-Encoding: gzip` (or `deflate`), as PHP's SoapClient sends it with
/// `compression => SOAP_COMPRESSION_GZIP | 5`, is answered as the same call sent plain; one that
/// decompresses to more than `max_body_bytes` is 413, one that is not what it says is a Client
/// fault saying so, and a coding the bridge does not take is 415 naming it.
#[tokio::test]
async fn compressed_request_bodies_are_read_within_the_body_limit() {
    let b = Bridge::demo().await;
    let base = now_ms();
    let call = |t| {
        envelope(
            "calculateOptionsPrice",
            "<productIds><item>587300354</item><item>587300355</item></productIds>",
            "en",
            t,
        )
    };
    let r = soap_encoded(&b, "gzip", gzip(call(base).as_bytes())).await;
    r.assert_success();
    assert_eq!(r.text_of("price").as_deref(), Some("0.02"), "{}", r.body);

    // 2 MB of white space inside the envelope: 2 KB sent, over the 1 MiB limit once read.
    let padded = call(base + 1).replace("<lang>", &format!("{}<lang>", " ".repeat(2_000_000)));
    let small = gzip(padded.as_bytes());
    assert!(small.len() < 10_000);
    let r = soap_encoded(&b, "gzip", small).await;
    assert_eq!(r.status, 413, "{}", r.body);
    r.assert_has("BODY_TOO_LARGE");

    let r = soap_encoded(&b, "gzip", call(base + 2).into_bytes()).await;
    assert_eq!(r.status, 500, "{}", r.body);
    r.assert_has("<sb:code>BAD_CONTENT_ENCODING</sb:code>");
    r.assert_has("the gzip request body cannot be decompressed");
    r.assert_has(":Client</faultcode>");

    let r = soap_encoded(&b, "br", call(base + 3).into_bytes()).await;
    assert_eq!(r.status, 415, "{}", r.body);
    r.assert_has("<sb:code>UNSUPPORTED_CONTENT_ENCODING</sb:code>");
    r.assert_has("Content-Encoding 'br' is not taken");
}
