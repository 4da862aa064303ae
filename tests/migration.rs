//! Proof for a migration, end to end: a legacy SOAP server (the reference crate's stand-in,
//! answering from fixtures, with one answer deliberately different from what the bridge
//! gives), `soapbridge record` in front of it, and `soapbridge replay` of the recording
//! through the bridge, in process and as the CLI a CI job would run.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // a test (or benchmark) may unwrap and print

mod common;

use std::path::{Path, PathBuf};

use common::*;
use soapbridge::migrate;

const SERVICE: &str = "/listingapi/ws/IndividualProductOptionService";
const CALLS: [&str; 4] = [
    "getOptionFeaturesInfo",
    "addOptionsToCart",
    "removeOptionsFromCart",
    "calculateOptionsPrice",
];

/// A fresh directory of its own for each call (tests run at once: two calls with the same
/// name must not share one, or one removes what the other is writing).
fn scratch(name: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("soapbridge-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A legacy server's fixture directory: the option service's first four fixture calls, the
/// answers as the old server wrote them (other namespace prefixes, its own times), and one
/// deliberate difference: the old server priced calculateOptionsPrice at 0.03, the bridge's
/// backend at 0.02.
fn legacy_fixtures() -> PathBuf {
    let dir = scratch("legacy");
    let mut cases = String::new();
    for call in CALLS {
        let request = std::fs::read_to_string(format!("fixtures/soap/option/{call}.xml")).unwrap();
        let answer = std::fs::read_to_string(format!("fixtures/soap/option/{call}.expected.xml"))
            .unwrap()
            .replace("env:", "soap:")
            .replace("xmlns:env=", "xmlns:soap=")
            .replace(
                "<responseTime>{{*}}</responseTime>",
                "<responseTime>01/06/2026 09:15:02</responseTime>",
            )
            .replace(
                "<timeElapsed>{{*}}</timeElapsed>",
                "<timeElapsed>41</timeElapsed>",
            );
        let answer = if call == "calculateOptionsPrice" {
            answer.replace("<price>0.02</price>", "<price>0.03</price>")
        } else {
            answer
        };
        assert!(!answer.contains("{{*}}"), "{call}: {answer}");
        std::fs::write(dir.join(format!("{call}.xml")), request).unwrap();
        std::fs::write(dir.join(format!("{call}.expected.xml")), answer).unwrap();
        cases.push_str(&format!(
            "[[case]]\nrequest = \"{call}.xml\"\nservice = \"{SERVICE}\"\n\n"
        ));
    }
    std::fs::write(dir.join("cases.toml"), cases).unwrap();
    dir
}

async fn legacy_server(dir: &Path) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = soapbridge_reference::spawn("legacy", dir, listener).unwrap();
    format!("http://{addr}")
}

/// Calls the recorder as a client of the legacy server would; returns the answers.
async fn record_calls(legacy: &str, out: &Path) -> Vec<Reply> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (legacy, out2) = (legacy.to_string(), out.to_path_buf());
    let recorder = tokio::spawn(async move {
        migrate::record::record(listener, &legacy, &out2, 1 << 20, async {
            let _ = stopped.await;
        })
        .await
    });
    let mut answers = Vec::new();
    for call in CALLS {
        let body = std::fs::read(format!("fixtures/soap/option/{call}.xml")).unwrap();
        let auth = basic(FIXTURE_USER);
        let mut headers = vec![
            ("authorization", auth.as_str()),
            ("content-type", "text/xml; charset=utf-8"),
            ("soapaction", "\"\""),
            // Not passed on: a recording is text, whatever the client accepts.
            ("accept-encoding", "gzip"),
        ];
        // One client compresses its requests (PHP's SoapClient with `compression`): the
        // legacy server gets them as they were sent, the recording has their text.
        let body = if call == "addOptionsToCart" {
            headers.push(("content-encoding", "gzip"));
            gzip(&body)
        } else {
            body
        };
        answers.push(request("POST", &format!("http://{addr}{SERVICE}"), &headers, body).await);
    }
    let _ = stop.send(());
    recorder.await.unwrap().unwrap();
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_of_the_legacy_server_replayed_through_the_bridge_finds_the_one_real_difference()
 {
    let legacy_dir = legacy_fixtures();
    let legacy = legacy_server(&legacy_dir).await;
    let recorded = scratch("recorded");

    // Recording: clients get the legacy server's answers unchanged.
    let answers = record_calls(&legacy, &recorded).await;
    for (call, a) in CALLS.iter().zip(&answers) {
        assert_eq!(a.status, 200, "{call}: {}", a.body);
        let legacy_answer =
            std::fs::read_to_string(legacy_dir.join(format!("{call}.expected.xml"))).unwrap();
        assert_eq!(a.body, legacy_answer, "{call}");
    }
    // What was kept: a case per call, the user's name but no password, no apiKey or signature.
    let cases = migrate::read_cases(&recorded).unwrap();
    assert_eq!(cases.len(), 4);
    assert_eq!(
        cases[3].request.as_deref(),
        Some("0004-calculateOptionsPrice.xml")
    );
    assert_eq!(cases[3].user, "fixture");
    assert_eq!(cases[3].service, SERVICE);
    assert_eq!(cases[3].soap_action.as_deref(), Some("\"\""));
    for f in std::fs::read_dir(&recorded).unwrap() {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
        for secret in [
            "fixture-pass",
            "fixtureKey0000000000000000000000",
            "2ba343cc9f0e6294b53bd9d185384e60",
        ] {
            assert!(!text.contains(secret), "{secret} recorded:\n{text}");
        }
    }
    let kept = std::fs::read_to_string(recorded.join("0004-calculateOptionsPrice.xml")).unwrap();
    assert!(
        kept.contains("<sign>***</sign>") && kept.contains("<item>587300354</item>"),
        "{kept}"
    );

    // The call sent gzip-compressed is recorded as its text.
    let kept = std::fs::read_to_string(recorded.join("0002-addOptionsToCart.xml")).unwrap();
    assert!(
        kept.contains("addOptionsToCart") && kept.contains("<sign>***</sign>"),
        "{kept}"
    );

    // Replay through the bridge: the bridge answers as the legacy server did, but for the price.
    let bridge = Bridge::demo().await;
    let opts = migrate::replay::ReplayOptions {
        credentials: [("fixture".to_string(), "fixture-pass".to_string())].into(),
        signer: Some((
            "fixtureKey0000000000000000000000".into(),
            "fixture-secret".into(),
        )),
        ..Default::default()
    };
    let report = migrate::replay::replay(&format!("http://{}", bridge.addr), &recorded, &opts)
        .await
        .unwrap();
    let text = report.to_string();
    println!("{text}");
    assert_eq!(report.differing(), 1, "{text}");
    let diff = &report.calls[3];
    assert!(!diff.same());
    assert_eq!(diff.status, Some(200));
    let counted: Vec<String> = diff
        .differences
        .iter()
        .filter(|d| d.counts())
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        counted,
        [
            r#"/Envelope/Body/calculateOptionsPriceResponse/return/price: expected "0.03", got "0.02""#
        ]
    );
    // The times differ in every call and are marked, not counted.
    assert!(
        text.contains(
            "~ /Envelope/Body/calculateOptionsPriceResponse/return/responseTime: (ignored: a time)"
        ),
        "{text}"
    );
    assert!(
        text.contains("4 call(s): 3 the same, 1 different"),
        "{text}"
    );

    // Without the passwords, a call cannot be replayed, and says why.
    let bare = migrate::replay::replay(
        &format!("http://{}", bridge.addr),
        &recorded,
        &migrate::replay::ReplayOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(bare.differing(), 4);
    assert!(bare.to_string().contains("give --api-key"), "{bare}");
    let _ = std::fs::remove_dir_all(&legacy_dir);
    let _ = std::fs::remove_dir_all(&recorded);
}

/// `soapbridge replay --url URL` of `dir` as a CI job runs it: its exit code and output.
async fn replay_command(dir: &Path, url: &str, extra: &[&str]) -> (Option<i32>, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_soapbridge"));
    cmd.args([
        "replay",
        "--url",
        url,
        "--credentials",
        "fixture:fixture-pass",
    ])
    .args(["--api-key", "fixtureKey0000000000000000000000"])
    .args(extra)
    .arg(dir)
    .env("SOAPBRIDGE_SECRET", "fixture-secret")
    .env("SOAPBRIDGE_LOG", "warn");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replay_command_exits_1_on_a_difference_and_0_without() {
    let legacy_dir = legacy_fixtures();
    let legacy = legacy_server(&legacy_dir).await;
    let recorded = scratch("recorded-cli");
    record_calls(&legacy, &recorded).await;
    let bridge = Bridge::demo().await;
    let url = format!("http://{}", bridge.addr);
    let (code, stdout) = replay_command(&recorded, &url, &[]).await;
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("DIFF  0004-calculateOptionsPrice.xml POST"),
        "{stdout}"
    );

    // The difference accepted (the price is known to have changed): the same replay, against
    // a bridge with fresh backends (the calls change their state), passes.
    let bridge = Bridge::demo().await;
    let url = format!("http://{}", bridge.addr);
    let (code, stdout) = replay_command(&recorded, &url, &["--ignore", "price"]).await;
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains("4 call(s): 4 the same, 0 different"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&legacy_dir);
    let _ = std::fs::remove_dir_all(&recorded);
}

/// The demo configuration with shadow mode on the option service.
fn with_shadow(shadow: &str) -> String {
    let demo = std::fs::read_to_string("demo/soapbridge.toml").unwrap();
    let anchor = "body_prefix = \"ns0\"             # ... and ns0:<operation>Response\n";
    assert!(demo.contains(anchor));
    demo.replacen(
        anchor,
        &format!("{anchor}\n[services.shadow]\n{shadow}\n"),
        1,
    )
}

async fn call(b: &Bridge, name: &str) -> Reply {
    let body = std::fs::read(format!("fixtures/soap/option/{name}.xml")).unwrap();
    request(
        "POST",
        &b.url(SERVICE),
        &[
            ("authorization", &basic(FIXTURE_USER)),
            ("content-type", "text/xml; charset=utf-8"),
            ("soapaction", "\"\""),
        ],
        body,
    )
    .await
}

/// The count of shadowed calls of `operation` with `result`, once it is there.
async fn shadow_count(b: &Bridge, operation: &str, result: &str) -> f64 {
    let prefix = format!(
        "soapbridge_shadow_calls_total{{service=\"IndividualProductOptionService\",operation=\"{operation}\",result=\"{result}\"}} "
    );
    for _ in 0..500 {
        let m = request("GET", &b.url("/metrics"), &[], "").await.body;
        if let Some(v) = m.lines().find_map(|l| l.strip_prefix(&prefix)) {
            return v.parse().unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    0.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_mode_compares_reads_and_safe_calls_with_the_legacy_service_and_never_writes() {
    let legacy_dir = legacy_fixtures();
    let legacy = legacy_server(&legacy_dir).await;
    let b = Bridge::with_config(&with_shadow(&format!(
        "url = \"{legacy}{SERVICE}\"\nsafe = [\"calculateOptionsPrice\"]"
    )))
    .await;
    // The answers are the bridge's (its price is 0.02; the legacy service says 0.03).
    for name in [
        "getOptionFeaturesInfo",
        "addOptionsToCart",
        "calculateOptionsPrice",
    ] {
        let r = call(&b, name).await;
        assert_eq!(r.status, 200, "{name}: {}", r.body);
        if name == "calculateOptionsPrice" {
            assert!(r.body.contains("<price>0.02</price>"), "{}", r.body);
        }
    }
    // A read is shadowed and the same; the safe write is shadowed and differs (the price).
    assert_eq!(shadow_count(&b, "getOptionFeaturesInfo", "same").await, 1.0);
    assert_eq!(
        shadow_count(&b, "calculateOptionsPrice", "different").await,
        1.0
    );
    // A write not marked safe never reaches the legacy service.
    let m = request("GET", &b.url("/metrics"), &[], "").await.body;
    assert!(!m.contains("operation=\"addOptionsToCart\",result"), "{m}");
    // `check` says what is shadowed.
    let described = b.app.describe().join("\n");
    assert!(
        described.contains(&format!("shadow -> {legacy}{SERVICE} (all of calls, at most 16 in flight): calculateOptionsPrice, getOptionFeaturesInfo")),
        "{described}"
    );
    let _ = std::fs::remove_dir_all(&legacy_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_service_that_hangs_never_delays_the_client() {
    // Accepts connections and never answers.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = hole.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hole.accept().await {
            held.push(s);
        }
    });
    let b = Bridge::with_config(&with_shadow(&format!(
        "url = \"http://{addr}{SERVICE}\"\nmax_in_flight = 1\ntimeout_ms = 60000"
    )))
    .await;
    for _ in 0..2 {
        let r = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            call(&b, "getOptionFeaturesInfo"),
        )
        .await
        .expect("the answer does not wait for the legacy service");
        assert_eq!(r.status, 200, "{}", r.body);
    }
    // The first shadow call is still waiting; the second found no free slot.
    assert_eq!(
        shadow_count(&b, "getOptionFeaturesInfo", "dropped").await,
        1.0
    );
}

#[tokio::test]
async fn shadow_configuration_mistakes_are_named() {
    let text = with_shadow("url = \"ftp://legacy\"\nsafe = [\"noSuchOperation\"]\nsample = 2.0");
    let errors = soapbridge::Config::from_toml(&text, Path::new("demo/test.toml"))
        .unwrap()
        .compile()
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    for says in [
        "shadow.url: must be an http:// or https:// URL",
        "shadow.safe: no operation 'noSuchOperation'",
        "shadow.sample: must be between 0 and 1",
    ] {
        assert!(errors.contains(says), "{says}: {errors}");
    }
}
