//! The DİA ERP and Datawiz inventory services as a SOAP client sees them when the backends do
//! what real ones do: sessions that expire mid-run, tokens that expire, concurrent first calls,
//! lookups that match twice, big uploads in batches, a backend that fails halfway.
//!
//! The reference backends run on their own here (`soapbridge_reference::spawn`), so the tests
//! can use their reference-only endpoints (`/_reference/stats`, `expire-sessions`, ...).
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // a test (or benchmark) may unwrap and print

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::Value;

const ERP: &str = "/erp/ws/DiaErpService";
const ERP_USER: &str = "erp:erp-pass";
const INV: &str = "/inventory/ws/InventoryService";
const INV_USER: &str = "inventory:inventory-pass";

/// The demo configuration with the DİA and Datawiz backends at these URLs.
fn demo_with(erp: &str, inventory: &str) -> String {
    with_backend_url(&demo_with_backend_url("erp", erp), "inventory", inventory)
}

async fn get_json(url: &str) -> Value {
    let r = request("GET", url, &[], "").await;
    serde_json::from_str(&r.body).unwrap()
}

async fn post(url: &str) -> Value {
    let r = request("POST", url, &[], "").await;
    serde_json::from_str(&r.body).unwrap()
}

fn erp_call(op: &str, kart: &str) -> String {
    format!(
        "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:erp=\"urn:soapbridge:dia:erp\"><soapenv:Body><erp:{op}><kart>{kart}</kart></erp:{op}></soapenv:Body></soapenv:Envelope>"
    )
}

fn note(i: usize) -> String {
    erp_call(
        "gts_notlar_ekle",
        &format!(
            "<_key_scf_carikart><carikartkodu>0000008</carikartkodu></_key_scf_carikart><konu>Not {i}</konu><tarih>2024-05-02</tarih>"
        ),
    )
}

fn inv_call(op: &str, inner: &str) -> String {
    format!(
        "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:inv=\"urn:soapbridge:datawiz:inventory\"><soapenv:Body><inv:{op}>{inner}</inv:{op}></soapenv:Body></soapenv:Envelope>"
    )
}

fn record(date: &str, shop: &str, product: &str, qty: &str) -> String {
    format!(
        "<record><date>{date}</date><shopId>{shop}</shopId><productId>{product}</productId><qty>{qty}</qty></record>"
    )
}

/// How many times `needle` occurs in `hay`.
fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

#[tokio::test]
async fn an_expired_dia_session_is_renewed_without_the_client_seeing_it() {
    let dia = reference("dia", "fixtures/reference/dia.json").await;
    let b = Bridge::with_config(&demo_with(&dia, "http://127.0.0.1:9")).await;
    let url = b.url(ERP);
    for i in 0..3 {
        let r = soap(&url, ERP_USER, note(i)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            r.text_of("key").as_deref(),
            Some(&*(330389 + i).to_string())
        );
    }
    assert_eq!(
        get_json(&format!("{dia}/_reference/stats")).await["logins"],
        1
    );
    // The session expires in the middle of the run: the next call gets 419 from DİA, the
    // bridge logs in again and repeats it.
    assert_eq!(
        post(&format!("{dia}/_reference/expire-sessions")).await["expired"],
        1
    );
    let r = soap(&url, ERP_USER, note(3)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.text_of("key").as_deref(), Some("330392"));
    assert_eq!(
        get_json(&format!("{dia}/_reference/stats")).await["logins"],
        2
    );
    // What reached DİA: the lookup as an object, resolved by DİA to the account's key.
    let rows = get_json(&format!("{dia}/_reference/records/gts_notlar")).await;
    let rows = rows["records"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    assert!(
        rows.iter().all(|r| r["_key_scf_carikart"] == 2008),
        "{rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_calls_share_one_login_and_one_renewal() {
    let dia = reference("dia", "fixtures/reference/dia.json").await;
    let b = Bridge::with_config(&demo_with(&dia, "http://127.0.0.1:9")).await;
    let run = |from: usize| {
        let url = b.url(ERP);
        async move {
            let tasks: Vec<_> = (from..from + 20)
                .map(|i| {
                    let url = url.clone();
                    tokio::spawn(async move { soap(&url, ERP_USER, note(i)).await })
                })
                .collect();
            for t in tasks {
                let r = t.await.unwrap();
                assert_eq!(r.status, 200, "{}", r.body);
                assert!(r.text_of("key").is_some(), "{}", r.body);
            }
        }
    };
    run(0).await;
    assert_eq!(
        get_json(&format!("{dia}/_reference/stats")).await["logins"],
        1
    );
    post(&format!("{dia}/_reference/expire-sessions")).await;
    run(20).await;
    assert_eq!(
        get_json(&format!("{dia}/_reference/stats")).await["logins"],
        2
    );
}

#[tokio::test]
async fn a_login_the_backend_refuses_is_a_backend_fault_not_the_callers() {
    let dia = reference("dia", "fixtures/reference/dia.json").await;
    let cfg = demo_with(&dia, "http://127.0.0.1:9")
        .replace("password = \"ws-pass\"", "password = \"wrong\"");
    let b = Bridge::with_config(&cfg).await;
    let r = soap(&b.url(ERP), ERP_USER, note(0)).await;
    assert_eq!(r.status, 500, "{}", r.body);
    assert_eq!(r.text_of("faultcode").as_deref(), Some("env:Server"));
    assert_eq!(r.text_of("party").as_deref(), Some("backend"));
    assert_eq!(r.text_of("backendCode").as_deref(), Some("login_failed"));
    r.assert_has("could not log in to backend 'erp': NOUSER");
    // The password is not in the answer.
    assert!(!r.body.contains("wrong"), "{}", r.body);
}

#[tokio::test]
async fn dia_errors_reach_the_client_with_dias_message_and_their_own_code() {
    let dia = reference("dia", "fixtures/reference/dia.json").await;
    let b = Bridge::with_config(&demo_with(&dia, "http://127.0.0.1:9")).await;
    let url = b.url(ERP);
    let cases = [
        (
            erp_call(
                "scf_carikart_ekle",
                "<carikartkodu>X1</carikartkodu><unvan>A</unvan><_key_sis_ozelkod2><kod>WS003</kod></_key_sis_ozelkod2>",
            ),
            "ambiguous_lookup",
            "Birden fazla kayıt bulundu (sis_ozelkod → {'kod': 'WS003'})",
        ),
        (
            erp_call(
                "scf_carikart_ekle",
                "<carikartkodu>X2</carikartkodu><unvan>A</unvan><_key_sis_vergidairesi><kod>YOK</kod></_key_sis_vergidairesi>",
            ),
            "record_not_found",
            "Kayıt bulunamadı (sis_vergidairesi → {'kod': 'YOK'})",
        ),
        (
            erp_call(
                "scf_stokkart_ekle",
                "<stokkartkodu>S1</stokkartkodu><aciklama>A</aciklama><stokkartturu>Ticari Mal</stokkartturu>",
            ),
            "invalid_combo",
            "Kombo değeri geçersiz (stokkartturu -&gt; Ticari Mal)",
        ),
        (
            erp_call(
                "scf_fatura_ekle",
                "<fisno>F1</fisno><tarih>2024-01-01</tarih><_key_scf_carikart><_key>2008</_key></_key_scf_carikart>",
            ),
            "lines_required",
            "Kalem bilgisi girilmelidir!",
        ),
        (
            erp_call("scf_carikart_ekle", "<unvan>Kodsuz</unvan>"),
            "required_field",
            "Zorunlu alan boş bırakılamaz (scf_carikart → carikartkodu)",
        ),
    ];
    for (call, code, message) in cases {
        let r = soap(&url, ERP_USER, call).await;
        assert_eq!(r.status, 500, "{}", r.body);
        assert_eq!(
            r.text_of("backendCode").as_deref(),
            Some(code),
            "{}",
            r.body
        );
        r.assert_has(message);
        assert_eq!(r.text_of("party").as_deref(), Some("caller"));
    }
    // A key given as a number arrives as DİA's number; lines keep their order.
    let r = soap(
        &url,
        ERP_USER,
        erp_call(
            "scf_fatura_ekle",
            "<fisno>F2</fisno><tarih>2024-01-01</tarih><_key_scf_carikart><_key>2008</_key></_key_scf_carikart><m_kalemler><kalem><_key_scf_stokkart><stokkartkodu>STK-001</stokkartkodu></_key_scf_stokkart><miktar>2.50</miktar></kalem></m_kalemler>",
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rows = get_json(&format!("{dia}/_reference/records/scf_fatura")).await;
    let f = rows["records"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(f["_key_scf_carikart"], 2008);
    assert_eq!(f["m_kalemler"][0]["_key_scf_stokkart"], 3001);
    assert_eq!(
        f["m_kalemler"][0]["miktar"], "2.50",
        "decimals keep their digits"
    );
}

#[tokio::test]
async fn an_expired_token_is_renewed_without_the_client_seeing_it() {
    let dw = reference("datawiz", "fixtures/reference/datawiz.json").await;
    let b = Bridge::with_config(&demo_with("http://127.0.0.1:9", &dw)).await;
    let list = inv_call("listInventory", "<pageSize>2</pageSize>");
    let r = soap(&b.url(INV), INV_USER, list.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        post(&format!("{dw}/_reference/expire-tokens")).await["expired"],
        1
    );
    let r = soap(&b.url(INV), INV_USER, list).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.text_of("count").as_deref(), Some("11"));
    let stats = get_json(&format!("{dw}/_reference/stats")).await;
    assert_eq!(stats["token_requests"]["password"], 1, "{stats}");
    assert_eq!(stats["token_requests"]["refresh_token"], 1, "{stats}");
}

#[tokio::test]
async fn a_token_is_refreshed_before_it_expires() {
    // A seed whose tokens live 3 s; the bridge renews 2 s before expiry, but at most half-way
    // through a token's life: after 1.5 s.
    let mut seed: Value =
        serde_json::from_str(&std::fs::read_to_string("fixtures/reference/datawiz.json").unwrap())
            .unwrap();
    seed["token_ttl_seconds"] = 3.into();
    let dir = std::env::temp_dir().join(format!("soapbridge-dw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("datawiz-short-tokens.json");
    std::fs::write(&path, seed.to_string()).unwrap();
    let dw = reference("datawiz", path.to_str().unwrap()).await;
    let cfg = demo_with("http://127.0.0.1:9", &dw).replace(
        "password = \"datawiz-pass\"",
        "password = \"datawiz-pass\"\nrefresh_margin_secs = 2",
    );
    let b = Bridge::with_config(&cfg).await;
    let list = inv_call("listInventory", "<pageSize>1</pageSize>");
    assert_eq!(soap(&b.url(INV), INV_USER, list.clone()).await.status, 200);
    // 1.7 s later on the bridge's clock (the backend's tokens still live 3 s of real time).
    b.clock.advance(Duration::from_millis(1700));
    // Within the margin: renewed with the refresh grant before the call, no 401 on the way.
    assert_eq!(soap(&b.url(INV), INV_USER, list).await.status, 200);
    let stats = get_json(&format!("{dw}/_reference/stats")).await;
    assert_eq!(stats["token_requests"]["refresh_token"], 1, "{stats}");
    assert_eq!(stats["token_requests"]["password"], 1, "{stats}");
}

#[tokio::test]
async fn every_page_is_gathered_when_pages_are_small() {
    let dw = reference("datawiz", "fixtures/reference/datawiz.json").await;
    let cfg = demo_with("http://127.0.0.1:9", &dw)
        .replace("query = { page_size = 1000,", "query = { page_size = 3,");
    let b = Bridge::with_config(&cfg).await;
    let r = soap(&b.url(INV), INV_USER, inv_call("listAllInventory", "")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.text_of("count").as_deref(), Some("11"));
    assert_eq!(count(&r.body, "<record>"), 11, "four pages of at most 3");
}

#[tokio::test]
async fn five_thousand_records_go_in_batches_with_an_outcome_each() {
    let dw = reference("datawiz", "fixtures/reference/datawiz.json").await;
    let b = Bridge::with_config(&demo_with("http://127.0.0.1:9", &dw)).await;
    // 5,000 records: 1,000 products x 5 dates; every 997th names a shop that does not exist.
    let mut records = String::new();
    let mut bad = Vec::new();
    for i in 0..5000 {
        let shop = if i % 997 == 500 {
            bad.push(i);
            "99"
        } else {
            ["1", "2", "3"][i % 3]
        };
        let date = format!("2024-06-{:02}", 1 + i / 1000);
        records.push_str(&record(
            &date,
            shop,
            &format!("P{:04}", 1 + i % 1000),
            "1.5",
        ));
    }
    let body = inv_call("uploadInventory", &format!("<records>{records}</records>"));
    let started = std::time::Instant::now();
    let r = request(
        "POST",
        &b.url(INV),
        &[
            ("content-type", "text/xml"),
            ("authorization", &basic(INV_USER)),
        ],
        body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", &r.body[..r.body.len().min(2000)]);
    let ok = 5000 - bad.len();
    assert_eq!(r.text_of("ok"), Some(ok.to_string()));
    assert_eq!(r.text_of("failed"), Some(bad.len().to_string()));
    assert_eq!(r.text_of("notSent").as_deref(), Some("0"));
    assert_eq!(r.text_of("inserted"), Some(ok.to_string()));
    assert_eq!(count(&r.body, "<result>"), 5000);
    assert_eq!(count(&r.body, "<status>ok</status>"), ok);
    for i in &bad {
        r.assert_has(&format!("<index>{i}</index><status>failed</status>"));
    }
    r.assert_has("<field>shop_id</field><message>Shop with id '99' does not exist.</message>");
    // Exactly what was accepted was stored: 5 batches of 1,000, the 5 with an invalid record
    // sent again without it.
    let stats = get_json(&format!("{dw}/_reference/stats")).await;
    assert_eq!(stats["records"], 11 + ok as u64, "{stats}");
    assert_eq!(stats["posts"], 5, "{stats}");
    eprintln!("5,000-record upload: {:?}", started.elapsed());
}

/// A JSON backend on a free port whose answer to each request `answer` gives from its path:
/// (status, extra header, body).
async fn json_backend(
    answer: impl Fn(&str) -> (u16, Option<(&'static str, String)>, String)
    + Clone
    + Send
    + Sync
    + 'static,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(soapbridge::server::serve(
        listener,
        move |req: http::Request<soapbridge::server::Body>| {
            let (status, header, body) = answer(req.uri().path());
            async move {
                let mut r = Response::builder()
                    .status(StatusCode::from_u16(status).unwrap())
                    .header("content-type", "application/json");
                if let Some((name, value)) = header {
                    r = r.header(name, value);
                }
                r.body(Full::new(Bytes::from(body))).unwrap()
            }
        },
        Default::default(),
        std::future::pending(),
    ));
    format!("http://{addr}")
}

const TOKEN: &str = "/api/o/token/";

/// A backend that accepts the first `ok` POSTs (201 {"inserted": n}) and then answers 503.
async fn failing_after(ok: usize) -> String {
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    json_backend(move |path| {
        let (status, body) = if path == TOKEN {
            (200, r#"{"access_token":"t","expires_in":3600}"#)
        } else if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < ok {
            (201, r#"{"inserted":2,"updated":0}"#)
        } else {
            (503, r#"{"detail":"maintenance"}"#)
        };
        (status, None, body.to_string())
    })
    .await
}

#[tokio::test]
async fn a_backend_failing_halfway_leaves_an_exact_account_of_what_was_stored() {
    let url = failing_after(1).await;
    let cfg = demo_with("http://127.0.0.1:9", &url)
        .replace("batch = { size = 1000,", "batch = { size = 2,");
    let b = Bridge::with_config(&cfg).await;
    let records: String = (1..=5)
        .map(|i| record("2024-06-01", "1", &format!("P{i:04}"), "1"))
        .collect();
    let r = soap(
        &b.url(INV),
        INV_USER,
        inv_call("uploadInventory", &format!("<records>{records}</records>")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Chunk 1 stored; chunk 2 failed in flight (it may or may not be stored); chunk 3 not sent.
    assert_eq!(r.text_of("ok").as_deref(), Some("2"));
    assert_eq!(r.text_of("unknown").as_deref(), Some("2"));
    assert_eq!(r.text_of("notSent").as_deref(), Some("1"));
    assert_eq!(count(&r.body, "<status>unknown</status>"), 2);
    assert_eq!(count(&r.body, "<status>not_sent</status>"), 1);
    r.assert_has("failed with HTTP 503");
    // Failing before anything was stored is the call's fault.
    let url = failing_after(0).await;
    let b = Bridge::with_config(&demo_with("http://127.0.0.1:9", &url)).await;
    let r = soap(
        &b.url(INV),
        INV_USER,
        inv_call("uploadInventory", &format!("<records>{records}</records>")),
    )
    .await;
    assert_eq!(r.status, 500, "{}", r.body);
    assert_eq!(r.text_of("code").as_deref(), Some("BACKEND_ERROR"));
    assert_eq!(r.text_of("backendStatus").as_deref(), Some("503"));
}

/// A backend whose `k`-th POST is stored and answered (201 {"inserted": 2}) after `delays[k]`
/// ms (the last delay for later ones); returns its URL and how many POSTs it received.
async fn slow_posts(delays: Vec<u64>) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let posts = seen.clone();
    let url = common::json_backend(move |parts, _| {
        let (posts, delays) = (posts.clone(), delays.clone());
        async move {
            if parts.uri.path() == TOKEN {
                return (200, r#"{"access_token":"t","expires_in":3600}"#.to_string());
            }
            let k = posts.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(delays[k.min(delays.len() - 1)])).await;
            (201, r#"{"inserted":2,"updated":0}"#.to_string())
        }
    })
    .await;
    (url, seen)
}

/// A batched upload that runs out of the request's time still tells the client what was
/// stored: no chunk is sent after 80% of `request_timeout_ms`, a chunk whose backend has not
/// answered at 95% is `unknown`, and the chunks after it are `not_sent`.
#[tokio::test]
async fn a_batch_out_of_time_answers_what_was_stored() {
    let records: String = (1..=5)
        .map(|i| record("2024-06-01", "1", &format!("P{i:04}"), "1"))
        .collect();
    let upload = inv_call("uploadInventory", &format!("<records>{records}</records>"));
    let bridge = |url: &str| {
        let cfg = demo_with("http://127.0.0.1:9", url)
            .replace("batch = { size = 1000,", "batch = { size = 2,")
            .replace("request_timeout_ms = 60000", "request_timeout_ms = 5000");
        async move { Bridge::with_config(&cfg).await }
    };

    // The second chunk's backend has not answered at 4.75 s: unknown; the third is not sent.
    let (url, posts) = slow_posts(vec![100, 20_000]).await;
    let b = bridge(&url).await;
    let t = std::time::Instant::now();
    let r = soap(&b.url(INV), INV_USER, upload.clone()).await;
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.text_of("ok").as_deref(), Some("2"), "{}", r.body);
    assert_eq!(r.text_of("unknown").as_deref(), Some("2"));
    assert_eq!(r.text_of("notSent").as_deref(), Some("1"));
    r.assert_has("the backend had not answered this call when the request's time limit of 5000 ms was nearly up");
    r.assert_has("not sent: an earlier request failed");
    assert_eq!(posts.load(std::sync::atomic::Ordering::SeqCst), 2);

    // The first chunk is answered after 80% of the time (4 s): the others are not sent.
    let (url, posts) = slow_posts(vec![4_200, 0]).await;
    let b = bridge(&url).await;
    let r = soap(&b.url(INV), INV_USER, upload).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.text_of("ok").as_deref(), Some("2"), "{}", r.body);
    assert_eq!(r.text_of("notSent").as_deref(), Some("3"));
    assert_eq!(
        count(
            &r.body,
            "not sent: the request's time limit of 5000 ms was nearly up; send it again"
        ),
        3
    );
    assert_eq!(posts.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn field_errors_of_a_single_record_reach_the_client_per_field() {
    let dw = reference("datawiz", "fixtures/reference/datawiz.json").await;
    let b = Bridge::with_config(&demo_with("http://127.0.0.1:9", &dw)).await;
    let r = soap(
        &b.url(INV),
        INV_USER,
        inv_call(
            "uploadInventory",
            "<records><record><date>2024-06-01</date><shopId>99</shopId><productId>nope</productId><qty>1</qty></record></records>",
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.assert_has("<field>shop_id</field><message>Shop with id '99' does not exist.</message>");
    r.assert_has(
        "<field>product_id</field><message>Product with id 'nope' does not exist.</message>",
    );
    assert_eq!(r.text_of("failed").as_deref(), Some("1"));
}

#[tokio::test]
async fn basic_credentials_and_static_keys_reach_the_backend_never_the_clients() {
    // A backend that answers with the credentials it was sent.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(soapbridge::server::serve(
        listener,
        |req: http::Request<soapbridge::server::Body>| async move {
            let h = |n: &str| {
                req.headers()
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string()
            };
            let body = serde_json::json!({"echo": {"count": 1, "code": format!("{}|{}", h("authorization"), h("x-api-key"))}});
            Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.to_string())))
                .unwrap()
        },
        Default::default(),
        std::future::pending(),
    ));
    let cfg = format!(
        r#"
[backends.echo]
base_url = "http://{addr}"
headers = {{ x-api-key = "static-key-1" }}
[backends.echo.auth]
kind = "basic"
user = "bridge"
password = "bridge-secret"

[mappings.typed.echo]
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
    );
    let b = Bridge::with_config(&cfg).await;
    let r = request(
        "POST",
        &b.url("/typed"),
        &[
            ("content-type", "text/xml"),
            // The client's own credentials are not passed on.
            ("authorization", "Basic Y2xpZW50OmNsaWVudA=="),
        ],
        "<Envelope xmlns=\"http://schemas.xmlsoap.org/soap/envelope/\"><Body><echo xmlns=\"urn:typed\"><values xmlns=\"\"><count>1</count></values></echo></Body></Envelope>",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // base64("bridge:bridge-secret")
    assert_eq!(
        r.text_of("code").as_deref(),
        Some("Basic YnJpZGdlOmJyaWRnZS1zZWNyZXQ=|static-key-1")
    );
}

/// A backend that answers every POST 201 with a header of `padding` bytes.
async fn padded_head(padding: usize) -> String {
    json_backend(move |path| {
        let (status, body) = if path == TOKEN {
            (200, r#"{"access_token":"t","expires_in":3600}"#)
        } else {
            (201, r#"{"inserted":1,"updated":0}"#)
        };
        (
            status,
            Some(("x-padding", "p".repeat(padding))),
            body.to_string(),
        )
    })
    .await
}

/// A backend's answer is read through a bounded buffer (64 KiB), like a request: a head that
/// fits is read as any other; a larger one is the backend's failure, said as such, not a hang.
#[tokio::test]
async fn a_backend_answer_head_must_fit_the_read_buffer() {
    let records = record("2024-06-01", "1", "P0001", "1");
    let call = inv_call("uploadInventory", &format!("<records>{records}</records>"));
    let b = Bridge::with_config(&demo_with(
        "http://127.0.0.1:9",
        &padded_head(48 * 1024).await,
    ))
    .await;
    let r = soap(&b.url(INV), INV_USER, call.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.text_of("ok").as_deref(), Some("1"), "{}", r.body);

    let b = Bridge::with_config(&demo_with(
        "http://127.0.0.1:9",
        &padded_head(80 * 1024).await,
    ))
    .await;
    let r = soap(&b.url(INV), INV_USER, call).await;
    assert_eq!(r.status, 500, "{}", r.body);
    assert_eq!(r.text_of("code").as_deref(), Some("BACKEND_UNAVAILABLE"));
    assert_eq!(r.text_of("party").as_deref(), Some("backend"));
    r.assert_has("message head is too large");
    r.assert_has("failed after the request may have reached it");
}
