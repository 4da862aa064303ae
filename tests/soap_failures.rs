//! Every way a call can fail, as a SOAP client sees it: the fault or `ackCode=failure`,
//! its code, language and HTTP status.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // a test (or benchmark) may unwrap and print

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Response, StatusCode};
use http_body_util::Full;
use tokio::sync::Notify;

const IDS: &str = "<productIds><item>587300354</item><item>587300355</item></productIds>";

fn demo_with_backend(base_url: &str, timeout_ms: u64) -> String {
    demo_with_backend_url("options", base_url)
        .replace("timeout_ms = 5000 ", &format!("timeout_ms = {timeout_ms} "))
}

/// A backend that answers every request with `status` and `body` after `delay`.
async fn fake_backend(status: u16, body: &'static str, delay: Duration) -> String {
    fake_backend_noting(status, body, delay, Arc::new(Notify::new())).await
}

/// [`fake_backend`] that also signals `arrived` as each request comes in.
async fn fake_backend_noting(
    status: u16,
    body: &'static str,
    delay: Duration,
    arrived: Arc<Notify>,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(soapbridge::server::serve(
        listener,
        move |_req| {
            let arrived = arrived.clone();
            async move {
                arrived.notify_one();
                tokio::time::sleep(delay).await;
                Response::builder()
                    .status(StatusCode::from_u16(status).unwrap())
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from_static(body.as_bytes())))
                    .unwrap()
            }
        },
        Default::default(),
        std::future::pending(),
    ));
    format!("http://{addr}")
}

fn assert_failure(r: &Reply, code: &str) {
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.text_of("ackCode").as_deref(),
        Some("failure"),
        "{}",
        r.body
    );
    assert_eq!(r.text_of("errorCode").as_deref(), Some(code), "{}", r.body);
}

fn assert_fault11(r: &Reply, status: u16, faultcode: &str, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("text/xml; charset=utf-8"));
    assert_eq!(
        r.text_of("faultcode").as_deref(),
        Some(faultcode),
        "{}",
        r.body
    );
    assert_eq!(r.text_of("code").as_deref(), Some(code), "{}", r.body);
}

/// A signed calculateOptionsPrice call (English) on the option service.
/// A calculateOptionsPrice call in `lang` signed with `time`.
async fn calculate_at(url: &str, lang: &str, time: i64) -> Reply {
    soap(
        url,
        USER,
        envelope("calculateOptionsPrice", IDS, lang, time),
    )
    .await
}

async fn calculate(b: &Bridge) -> Reply {
    soap(
        &b.url(OPTION_PATH),
        USER,
        envelope("calculateOptionsPrice", IDS, "en", now_ms()),
    )
    .await
}

/// A calculateOptionsPrice call through a bridge whose backend answers `status` and `body`.
async fn calculate_against(status: u16, body: &'static str, timeout_ms: u64) -> Reply {
    let url = fake_backend(status, body, Duration::ZERO).await;
    let b = Bridge::with_config(&demo_with_backend(&url, timeout_ms)).await;
    calculate(&b).await
}

#[tokio::test]
async fn a_correctly_signed_call_succeeds_and_a_wrong_sign_fails_in_both_languages() {
    let b = Bridge::demo().await;
    let url = b.url(OPTION_PATH);
    let ok = calculate_at(&url, "tr", now_ms()).await;
    ok.assert_success();
    assert_eq!(ok.text_of("price").as_deref(), Some("0.02"));

    let bad = envelope("calculateOptionsPrice", IDS, "en", now_ms()).replace("<sign>", "<sign>0");
    let r = soap(&url, USER, bad).await;
    assert_failure(&r, "SIGNATURE_INVALID");
    assert_eq!(r.text_of("errorId").as_deref(), Some("1001"));
    assert!(
        r.text_of("message")
            .unwrap()
            .contains("md5(apiKey + secretKey + time)")
    );

    let bad =
        envelope("calculateOptionsPrice", IDS, "tr", now_ms() + 1).replace("<sign>", "<sign>0");
    let r = soap(&url, USER, bad).await;
    assert_failure(&r, "SIGNATURE_INVALID");
    assert!(
        r.text_of("message")
            .unwrap()
            .starts_with("İstek imzası (sign) geçersiz"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn uppercase_signatures_are_accepted() {
    let b = Bridge::demo().await;
    let t = now_ms();
    let env = envelope("calculateOptionsPrice", IDS, "en", t);
    let sign = soapbridge::sign(KEY, SECRET, t);
    let upper = env.replace(&sign, &sign.to_uppercase());
    assert_ne!(env, upper);
    let r = soap(&b.url(OPTION_PATH), USER, upper).await;
    r.assert_success();
}

#[tokio::test]
async fn expired_and_future_times_are_refused_with_their_own_messages() {
    let b = Bridge::demo().await;
    let url = b.url(OPTION_PATH);
    let r = calculate_at(&url, "en", now_ms() - 301_000).await;
    assert_failure(&r, "TIME_EXPIRED");
    assert!(
        r.text_of("message").unwrap().contains("too old"),
        "{}",
        r.body
    );
    let r = calculate_at(&url, "tr", now_ms() + 301_000).await;
    assert_failure(&r, "TIME_IN_FUTURE");
    assert!(
        r.text_of("message").unwrap().contains("ileri bir tarihte"),
        "{}",
        r.body
    );
    // Inside the window either side is fine.
    let r = calculate_at(&url, "en", now_ms() - 240_000).await;
    r.assert_success();
}

#[tokio::test]
async fn a_reused_signature_is_refused_by_default() {
    let b = Bridge::demo().await;
    let env = envelope("getOptionFeaturesInfo", IDS, "en", now_ms());
    let first = soap(&b.url(OPTION_PATH), USER, env.clone()).await;
    first.assert_success();
    // Replayed on the other service of the same profile: still the same signature.
    let again = soap(
        &b.url(PAYMENT_PATH),
        USER,
        env.replace("product.option", "payment.product"),
    )
    .await;
    assert_failure(&again, "SIGNATURE_REUSED");
}

#[tokio::test]
async fn a_reused_signature_is_accepted_when_the_profile_allows_it() {
    let text = std::fs::read_to_string("demo/soapbridge.toml")
        .unwrap()
        .replace(
            "reused_signature = \"reject\"",
            "reused_signature = \"allow\"",
        );
    let b = Bridge::with_config(&text).await;
    let env = envelope("getOptionFeaturesInfo", IDS, "en", now_ms());
    for _ in 0..3 {
        let r = soap(&b.url(OPTION_PATH), USER, env.clone()).await;
        r.assert_success();
    }
}

#[tokio::test]
async fn wrong_basic_credentials_get_401_with_a_challenge() {
    let b = Bridge::demo().await;
    let env = envelope("calculateOptionsPrice", IDS, "en", now_ms());
    let r = soap(&b.url(OPTION_PATH), "demo:wrong", env.clone()).await;
    assert_fault11(&r, 401, "env:Client", "UNAUTHORIZED");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"listingapi\", charset=\"UTF-8\"")
    );
    let r = request(
        "POST",
        &b.url(OPTION_PATH),
        &[("content-type", "text/xml")],
        env,
    )
    .await;
    assert_eq!(r.status, 401);
    // A valid user whose account does not own the apiKey.
    let r = soap(
        &b.url(OPTION_PATH),
        FIXTURE_USER,
        envelope("calculateOptionsPrice", IDS, "en", now_ms()),
    )
    .await;
    assert_failure(&r, "APIKEY_USER_MISMATCH");
}

#[tokio::test]
async fn envelope_problems_are_client_faults_with_a_specific_code() {
    let b = Bridge::demo().await;
    let url = b.url(OPTION_PATH);
    // Missing parameter.
    let r = soap(
        &url,
        USER,
        envelope("calculateOptionsPrice", "", "en", now_ms()),
    )
    .await;
    assert_fault11(&r, 500, "env:Client", "MISSING_ELEMENT");
    r.assert_has("missing required element 'calculateOptionsPrice/productIds'");
    // Wrong type.
    let r = soap(
        &url,
        USER,
        envelope(
            "calculateOptionsPrice",
            "<productIds><item>abc</item></productIds>",
            "en",
            now_ms(),
        ),
    )
    .await;
    assert_fault11(&r, 500, "env:Client", "INVALID_VALUE");
    r.assert_has("calculateOptionsPrice/productIds/item[0]");
    // An item of a list is named by its place (from 0), read plainly or through events.
    let r = soap(
        &url,
        USER,
        envelope(
            "calculateOptionsPrice",
            "<productIds><item>1</item><item>2</item><item>x3</item></productIds>",
            "en",
            now_ms(),
        ),
    )
    .await;
    assert_fault11(&r, 500, "env:Client", "INVALID_VALUE");
    r.assert_has("invalid value 'x3' for 'calculateOptionsPrice/productIds/item[2]'");
    let record = |qty: &str| {
        format!(
            "<record><date>2024-05-03</date><shopId>1</shopId><productId>P0001</productId><qty>{qty}</qty></record>"
        )
    };
    let inventory = |records: &str| {
        format!(
            r#"<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/" xmlns:inv="urn:soapbridge:datawiz:inventory"><e:Body><inv:uploadInventory><records>{records}</records></inv:uploadInventory></e:Body></e:Envelope>"#
        )
    };
    let inventory_url = b.url("/inventory/ws/InventoryService");
    let r = soap(
        &inventory_url,
        "inventory:inventory-pass",
        inventory(&(record("1") + &record("lots"))),
    )
    .await;
    assert_fault11(&r, 500, "env:Client", "INVALID_VALUE");
    r.assert_has("'uploadInventory/records/record[1]/qty'");
    // A date that is no day: refused before anything is stored.
    let r = soap(
        &inventory_url,
        "inventory:inventory-pass",
        inventory(&(record("1") + &record("2").replace("2024-05-03", "2024-13-45"))),
    )
    .await;
    assert_fault11(&r, 500, "env:Client", "INVALID_VALUE");
    r.assert_has("'uploadInventory/records/record[1]/date'");
    // Unknown operation.
    let r = soap(
        &url,
        USER,
        envelope("deleteEverything", IDS, "en", now_ms()),
    )
    .await;
    assert_fault11(&r, 500, "env:Client", "UNKNOWN_OPERATION");
    r.assert_has("calculateOptionsPrice, getOptionFeaturesInfo");
    // Unknown child element.
    let r = soap(
        &url,
        USER,
        envelope(
            "calculateOptionsPrice",
            &format!("{IDS}<color>red</color>"),
            "en",
            now_ms(),
        ),
    )
    .await;
    assert_fault11(&r, 500, "env:Client", "UNEXPECTED_ELEMENT");
    // Malformed XML.
    let broken =
        envelope("calculateOptionsPrice", IDS, "en", now_ms()).replace("</apiKey>", "</apikey>");
    let r = soap(&url, USER, broken).await;
    assert_fault11(&r, 500, "env:Client", "MALFORMED_XML");
    // Not SOAP at all.
    let r = soap(&url, USER, "{\"json\": true}").await;
    assert_fault11(&r, 500, "env:Client", "NOT_SOAP");
    let r = soap(&url, USER, "<hello/>").await;
    assert_fault11(&r, 500, "env:Client", "NOT_SOAP");
    // Unknown envelope namespace.
    let r = soap(
        &url,
        USER,
        "<e:Envelope xmlns:e=\"urn:other\"><e:Body/></e:Envelope>",
    )
    .await;
    assert_fault11(&r, 500, "env:VersionMismatch", "VERSION_MISMATCH");
    // A header the bridge must understand but does not.
    let r = soap(
        &url,
        USER,
        "<e:Envelope xmlns:e=\"http://schemas.xmlsoap.org/soap/envelope/\"><e:Header><t:Tx xmlns:t=\"urn:t\" e:mustUnderstand=\"1\"/></e:Header><e:Body/></e:Envelope>",
    )
    .await;
    assert_fault11(&r, 500, "env:MustUnderstand", "MUST_UNDERSTAND");
}

#[tokio::test]
async fn dtds_entities_deep_nesting_and_big_bodies_are_refused() {
    let b = Bridge::demo().await;
    let url = b.url(OPTION_PATH);
    let lol = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;\">]><soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Body>&lol2;</soapenv:Body></soapenv:Envelope>";
    let r = soap(&url, USER, lol).await;
    assert_fault11(&r, 500, "env:Client", "DTD_FORBIDDEN");
    let xxe = envelope(
        "calculateOptionsPrice",
        "<productIds><item>&xxe;</item></productIds>",
        "en",
        now_ms(),
    );
    let r = soap(&url, USER, xxe).await;
    assert_fault11(&r, 500, "env:Client", "MALFORMED_XML");
    r.assert_has("undefined entity");

    // Deep nesting anywhere (here in a header block the bridge skips) is refused.
    let deep = format!("{}{}", "<a>".repeat(100), "</a>".repeat(100));
    let env = envelope("calculateOptionsPrice", IDS, "en", now_ms()).replace(
        "<soapenv:Body>",
        &format!("<soapenv:Header>{deep}</soapenv:Header><soapenv:Body>"),
    );
    let r = soap(&url, USER, env).await;
    assert_fault11(&r, 500, "env:Client", "TOO_DEEP");

    let big = format!("<!--{}-->", "x".repeat(2 * 1024 * 1024));
    let r = soap(&url, USER, big).await;
    assert_fault11(&r, 413, "env:Client", "BODY_TOO_LARGE");
}

#[tokio::test]
async fn soap12_faults_use_code_reason_and_the_1_2_http_binding() {
    let b = Bridge::demo().await;
    let url = b.url(OPTION_PATH);
    let env12 = |inner: &str| {
        envelope("calculateOptionsPrice", inner, "en", now_ms()).replace(
            "http://schemas.xmlsoap.org/soap/envelope/",
            "http://www.w3.org/2003/05/soap-envelope",
        )
    };
    let r = soap12(
        &url,
        USER,
        env12("<productIds><item>abc</item></productIds>"),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.header("content-type"),
        Some("application/soap+xml; charset=utf-8")
    );
    r.assert_has("<env:Code><env:Value>env:Sender</env:Value><env:Subcode><env:Value>sb:INVALID_VALUE</env:Value>");
    r.assert_has("<env:Reason><env:Text xml:lang=\"en\">");
    // A success answers in 1.2 as well.
    let r = soap12(&url, USER, env12(IDS)).await;
    assert_eq!(r.status, 200);
    r.assert_has("xmlns:env=\"http://www.w3.org/2003/05/soap-envelope\"");
    r.assert_success();
}

#[tokio::test]
async fn an_unreachable_backend_is_a_server_fault_naming_the_backend() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let b = Bridge::with_config(&demo_with_backend(
        &format!("http://127.0.0.1:{port}"),
        2000,
    ))
    .await;
    let r = calculate(&b).await;
    assert_fault11(&r, 500, "env:Server", "BACKEND_UNAVAILABLE");
    r.assert_has("<sb:party>backend</sb:party>");
    r.assert_has("backend 'options' is unreachable");
}

#[tokio::test]
async fn a_slow_backend_is_cut_off_at_its_timeout() {
    let url = fake_backend(200, "{}", Duration::from_secs(20)).await;
    let b = Bridge::with_config(&demo_with_backend(&url, 300)).await;
    let started = Instant::now();
    let r = calculate(&b).await;
    assert_fault11(&r, 500, "env:Server", "BACKEND_TIMEOUT");
    r.assert_has("did not answer within 300 ms");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn backend_5xx_and_garbage_are_server_faults_with_the_backend_status() {
    let r = calculate_against(
        503,
        "{\"error\": {\"code\": \"maintenance\", \"message\": \"down for maintenance\"}}",
        2000,
    )
    .await;
    assert_fault11(&r, 500, "env:Server", "BACKEND_ERROR");
    r.assert_has("<sb:backendStatus>503</sb:backendStatus>");

    let url = fake_backend(200, "<html>oops</html>", Duration::ZERO).await;
    let b = Bridge::with_config(&demo_with_backend(&url, 2000)).await;
    let r = calculate(&b).await;
    assert_fault11(&r, 500, "env:Server", "BACKEND_BAD_RESPONSE");
    r.assert_has("not JSON");
    assert!(
        !r.body.contains("oops"),
        "the backend's body reached the caller: {}",
        r.body
    );
    // It is the backend's failure, counted as such (and so seen by its breaker), although a
    // route's answer is read after the exchange.
    let m = request("GET", &b.url("/metrics"), &[], "").await.body;
    assert!(
        m.lines()
            .any(|l| l.starts_with("soapbridge_backend_errors_total{")
                && l.contains(r#"kind="BACKEND_BAD_RESPONSE""#)
                && l.ends_with(" 1")),
        "{m}"
    );

    // JSON of the wrong shape: price must be a number.
    let r = calculate_against(
        201,
        "{\"voucher\": {\"code\": \"FT-1\", \"amount\": \"lots\", \"payment_required\": true, \"product_count\": 2}}",
        2000,
    )
    .await;
    assert_fault11(&r, 500, "env:Server", "BACKEND_BAD_RESPONSE");
    r.assert_has("return/price");
}

#[tokio::test]
async fn backend_4xx_field_errors_reach_the_client() {
    // With the signed profile: ackCode=failure, localised, with the fields in the message.
    let b = Bridge::demo().await;
    let card = "<paymentVoucher>FT-none</paymentVoucher><ccOwnerName>A</ccOwnerName><ccOwnerSurname>B</ccOwnerSurname><ccNumber>4111111111111112</ccNumber><cvv>1</cvv><expireMonth>13</expireMonth><expireYear>2099</expireYear>";
    let r = soap(
        &b.url(OPTION_PATH),
        USER,
        envelope("payPrice", card, "tr", now_ms()),
    )
    .await;
    assert_failure(&r, "CARD_INVALID");
    let msg = r.text_of("message").unwrap();
    assert!(msg.starts_with("Kart bilgileri geçersiz."), "{msg}");
    assert!(
        msg.contains("card.number")
            && msg.contains("card.cvv")
            && msg.contains("card.expiry_month"),
        "{msg}"
    );
    assert!(
        !r.body.contains("4111111111111112"),
        "card number echoed: {}",
        r.body
    );

    // Without a profile: a Client fault whose detail lists the backend's status and field errors.
    let text = std::fs::read_to_string("demo/soapbridge.toml").unwrap();
    let text = text.replacen("profile = \"listingapi\"\n", "", 1);
    let b = Bridge::with_config(&text).await;
    let r = soap(
        &b.url(OPTION_PATH),
        USER,
        envelope("payPrice", card, "en", now_ms()),
    )
    .await;
    assert_fault11(&r, 500, "env:Client", "BACKEND_REFUSED");
    r.assert_has("<sb:backendStatus>422</sb:backendStatus>");
    r.assert_has("<sb:fieldError><sb:field>card.number</sb:field><sb:code>luhn</sb:code>");
}

#[tokio::test]
async fn the_wsdl_is_served_with_the_bridge_address_and_its_imported_schema() {
    let b = Bridge::demo().await;
    for q in ["?wsdl", "?WSDL", "?Wsdl"] {
        let r = request(
            "GET",
            &b.url(&format!("{OPTION_PATH}{q}")),
            &[],
            Bytes::new(),
        )
        .await;
        assert_eq!(r.status, 200);
        r.assert_has(&format!(
            "<soap:address location=\"{}\"/>",
            b.url(OPTION_PATH)
        ));
        r.assert_has(&format!(
            "schemaLocation=\"{}?xsd=listingapi-common.xsd\"",
            b.url(OPTION_PATH)
        ));
    }
    let r = request(
        "GET",
        &b.url(&format!("{OPTION_PATH}?xsd=listingapi-common.xsd")),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status, 200);
    r.assert_has("<xs:complexType name=\"IntArray\">");
    let r = request("GET", &b.url(OPTION_PATH), &[], Bytes::new()).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, POST"));
    let r = request("POST", &b.url("/nowhere"), &[], "x").await;
    assert_eq!(r.status, 404);
    r.assert_has("NO_SUCH_SERVICE");
}

#[tokio::test]
async fn shutdown_lets_calls_in_flight_finish() {
    let arrived = Arc::new(Notify::new());
    let url = fake_backend_noting(
        201,
        "{\"voucher\": {\"code\": \"FT-slow\", \"amount\": \"1.00\", \"payment_required\": true, \"product_count\": 1}}",
        Duration::from_millis(700),
        arrived.clone(),
    )
    .await;
    let mut b = Bridge::with_config(&demo_with_backend(&url, 5000)).await;
    let target = b.url(OPTION_PATH);
    let call = tokio::spawn(async move {
        soap(
            &target,
            USER,
            envelope("calculateOptionsPrice", IDS, "en", now_ms()),
        )
        .await
    });
    // Shut down once the call has reached the backend: it is in flight.
    arrived.notified().await;
    let server = b.shutdown();
    let r = call.await.unwrap();
    assert_eq!(
        r.text_of("paymentVoucher").as_deref(),
        Some("FT-slow"),
        "{}",
        r.body
    );
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops")
        .unwrap();
    // New connections are refused once it has stopped.
    assert!(tokio::net::TcpStream::connect(b.addr).await.is_err());
}

#[tokio::test]
async fn legacy_turkish_encodings_are_accepted_and_bad_bytes_refused() {
    let b = Bridge::demo().await;
    let url = b.url(OPTION_PATH);
    // An ISO-8859-9 envelope, as old Turkish clients send: "Şükrü" in the owner name.
    let env = envelope(
        "getOptionFeaturesInfo",
        "<productIds><item>587300354</item></productIds>",
        "tr",
        now_ms(),
    )
    .replace(
        "<?xml version=\"1.0\"?>",
        "<?xml version=\"1.0\" encoding=\"ISO-8859-9\"?><!-- \u{15e}\u{fc}kr\u{fc} -->",
    );
    let (latin5, _, unmappable) = encoding_rs::WINDOWS_1254.encode(&env);
    assert!(!unmappable);
    assert_ne!(latin5.as_ref(), env.as_bytes());
    use base64::Engine;
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(USER)
    );
    let headers = [
        ("content-type", "text/xml"),
        ("soapaction", "\"\""),
        ("authorization", auth.as_str()),
    ];
    let r = request("POST", &url, &headers, latin5.into_owned()).await;
    r.assert_success();
    r.assert_has("Kalın yazı");
    // Bytes that are not UTF-8, with no declaration saying otherwise.
    let mut bad = envelope("getOptionFeaturesInfo", IDS, "tr", now_ms()).into_bytes();
    bad.extend_from_slice(b"<!-- \xFF -->");
    let r = soap(&url, USER, bad).await;
    assert_fault11(&r, 500, "env:Client", "BAD_ENCODING");
}

/// A getOptionFeaturesInfo call, signed now.
async fn features(b: &Bridge) -> Reply {
    let env = envelope("getOptionFeaturesInfo", IDS, "en", now_ms());
    soap(&b.url(OPTION_PATH), USER, env).await
}

/// The products of a getOptionFeaturesInfo answer, as written.
fn products_of(xml: &str) -> &str {
    let start = xml.find("<products>").expect("products") + "<products>".len();
    &xml[start..xml.find("</products>").expect("end of products")]
}

/// A large answer is written while it is sent (in pieces, without a length), and arrives
/// whole: the same XML, product for product, as a small answer written at once, and as the
/// same answer written whole when streaming is off (`stream_answers_from_bytes = 0`).
#[tokio::test]
async fn a_large_answer_is_sent_while_it_is_written_and_arrives_whole() {
    let large =
        option_features(4000, None).replace(r#""title":"Ürün 3999 <&>""#, r#""title":null"#);
    assert!(large.len() > 512 * 1024, "{} bytes", large.len());
    assert!(large.contains(r#""title":null"#));
    let b = bridge_answering(vec![option_features(3, None), large.clone()]).await;
    let small = features(&b).await;
    small.assert_success();
    assert!(small.header("content-length").is_some());
    let r = features(&b).await;
    r.assert_success();
    assert_eq!(
        r.header("content-length"),
        None,
        "a streamed answer has no length"
    );
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.header("content-type"), small.header("content-type"));
    assert_eq!(r.text_of("productCount").as_deref(), Some("4000"));
    let products = products_of(&r.body);
    assert_eq!(products.matches("<product>").count(), 4000);
    assert!(
        products.starts_with(products_of(&small.body)),
        "{}",
        &products[..2000]
    );
    assert!(
        products.contains("<productId>4999</productId><productTitle>587300354</productTitle>"),
        "the last product's title is the call's first product id: {}",
        &products[products.len() - 600..]
    );
    for i in [0, 1999, 3998] {
        let id = 1000 + i;
        assert!(
            products.contains(&format!("<product><productId>{id}</productId><productTitle>Ürün {i} &lt;&amp;&gt;</productTitle><optionFeatures><optionFeature><optionId>1</optionId><optionName>Kalın yazı</optionName><duration>7</duration><price>0.01</price><paid>false</paid><expireDate xsi:nil=\"true\"/></optionFeature>")),
            "product {id}"
        );
    }
    assert!(
        r.body
            .ends_with("</return></ns0:getOptionFeaturesInfoResponse></env:Body></env:Envelope>"),
        "{}",
        &r.body[r.body.len() - 300..]
    );
    // With streaming off, the same answer is written whole first, with its length.
    let whole = bridge_answering_whole(vec![large]).await;
    let w = features(&whole).await;
    w.assert_success();
    assert_eq!(w.header("transfer-encoding"), None);
    assert!(w.header("content-length").is_some());
    assert_eq!(products_of(&w.body), products);
    assert_streamed(&b, "complete", 1.0).await;
    assert_streamed(&whole, "complete", 0.0).await;
}

/// A large answer that its schema cannot carry is a fault when that shows before its first
/// piece is sent: the client gets the same fault as for a small answer.
#[tokio::test]
async fn a_large_answer_that_does_not_fit_at_its_start_is_a_fault() {
    let b = bridge_answering(vec![option_features(4000, Some(2))]).await;
    let r = features(&b).await;
    assert_eq!(r.status, 500, "{}", r.body);
    assert_eq!(
        r.text_of("code").as_deref(),
        Some("BACKEND_BAD_RESPONSE"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("products/product/productTitle"),
        "{}",
        r.body
    );
    assert!(r.header("content-length").is_some());
}

/// Sends one SOAP call on a connection of its own and reads until the bridge closes it (or
/// `limit` bytes): what a client that does not trust the framing would see.
async fn raw_call(b: &Bridge, envelope: &str, limit: usize) -> Vec<u8> {
    raw_call_in(b, "HTTP/1.1", envelope, limit, Duration::ZERO).await
}

/// [`raw_call`] in the HTTP version `version` ("HTTP/1.0"), reading nothing more for `pause`
/// once the first bytes came.
async fn raw_call_in(
    b: &Bridge,
    version: &str,
    envelope: &str,
    limit: usize,
    pause: Duration,
) -> Vec<u8> {
    let head = [
        ("Content-Type", "text/xml; charset=utf-8"),
        ("SOAPAction", "\"\""),
    ];
    let read = RawRead { limit, pause };
    raw_post(b, OPTION_PATH, version, USER, &head, envelope, read).await
}

/// A streamed answer (as read off the connection) that had begun, with the product `id`, and
/// was broken off: its envelope is not closed and its chunked body is not ended.
fn assert_broken_off(text: &str, id: usize) {
    assert!(
        text.contains(&format!("<productId>{id}</productId>")),
        "the answer had begun"
    );
    assert!(
        !text.contains("</env:Envelope>"),
        "the envelope is not closed"
    );
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "the chunked body is not ended"
    );
}

/// A client that stops reading a large answer: the bridge stops writing it at the request's
/// time limit (letting go of what it held), and when the client reads on, the answer is
/// broken off, not ended.
#[tokio::test]
async fn a_large_answer_not_read_in_time_is_broken_off() {
    let b = bridge_answering_in(
        vec![option_features(30_000, None), option_features(2, None)],
        &[("request_timeout_ms = 60000", "request_timeout_ms = 6000")],
    )
    .await;
    let env = envelope("getOptionFeaturesInfo", IDS, "en", now_ms());
    let got = raw_call_in(&b, "HTTP/1.1", &env, usize::MAX, Duration::from_secs(7)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 200 OK\r\n"),
        "{}",
        &text[..200.min(text.len())]
    );
    assert_broken_off(&text, 1000);
    assert_streamed(&b, "late", 1.0).await;
    let r = features(&b).await;
    r.assert_success();
}

/// A value deep in a large answer that its schema cannot carry, found after the answer began:
/// the connection is closed before the answer's end, so the client sees a broken answer,
/// never a short one that looks complete; the bridge goes on answering. So does it after a
/// client that goes away in the middle of a large answer.
#[tokio::test]
async fn a_large_answer_that_breaks_after_it_began_is_never_cut_short_silently() {
    let b = bridge_answering(vec![
        option_features(4000, Some(3990)),
        option_features(4000, Some(3990)),
        option_features(4000, None),
        option_features(2, None),
    ])
    .await;
    let got = raw_call(
        &b,
        &envelope("getOptionFeaturesInfo", IDS, "en", now_ms()),
        usize::MAX,
    )
    .await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 200 OK\r\n"),
        "{}",
        &text[..200.min(text.len())]
    );
    assert!(
        text.to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
    );
    assert_broken_off(&text, 4500);
    assert_streamed(&b, "broken", 1.0).await;
    // An HTTP/1.0 client cannot tell a broken answer from an ended one (no chunked framing):
    // its answer is written whole, so the misfit is a fault.
    let env = envelope("getOptionFeaturesInfo", IDS, "en", now_ms());
    let got = raw_call_in(&b, "HTTP/1.0", &env, usize::MAX, Duration::ZERO).await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.0 500 "),
        "{}",
        &text[..200.min(text.len())]
    );
    assert!(text.contains("BACKEND_BAD_RESPONSE"));
    // A client that reads the head and goes away.
    let got = raw_call(
        &b,
        &envelope("getOptionFeaturesInfo", IDS, "en", now_ms()),
        1,
    )
    .await;
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"));
    let r = features(&b).await;
    r.assert_success();
    assert_eq!(r.text_of("productCount").as_deref(), Some("2"));
}
