//! HTTPS backends: a backend with a private CA is reached when its CA is configured, and
//! refused (a backend fault, not a hang) when it is not.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // a test (or benchmark) may unwrap and print

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

const VOUCHER: &str = "{\"voucher\": {\"code\": \"FT-tls\", \"amount\": \"0.02\", \"payment_required\": true, \"product_count\": 2}}";

/// An HTTPS backend on 127.0.0.1 with a fresh self-signed certificate; returns its URL and the
/// certificate in PEM.
async fn tls_backend() -> (String, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let pem = ck.cert.pem();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(
                        http::Response::builder()
                            .status(201)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(VOUCHER.as_bytes())))
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (format!("https://{addr}"), pem)
}

async fn calculate(b: &Bridge) -> Reply {
    let env = envelope(
        "calculateOptionsPrice",
        "<productIds><item>1</item></productIds>",
        "en",
        now_ms(),
    );
    soap(&b.url(OPTION_PATH), USER, env).await
}

fn config(url: &str, ca_file: Option<&std::path::Path>) -> String {
    let text = demo_with_backend_url("options", url);
    match ca_file {
        Some(ca) => text.replace(
            "[backends.options]\n",
            &format!("[backends.options]\nca_file = \"{}\"\n", ca.display()),
        ),
        None => text,
    }
}

#[tokio::test]
async fn https_backends_with_a_configured_ca_are_reached_and_unknown_certificates_refused() {
    let (url, pem) = tls_backend().await;
    let ca = std::env::temp_dir().join(format!("soapbridge-ca-{}.pem", std::process::id()));
    std::fs::write(&ca, pem).unwrap();

    let b = Bridge::with_config(&config(&url, Some(&ca))).await;
    let r = calculate(&b).await;
    r.assert_success();
    assert_eq!(r.text_of("paymentVoucher").as_deref(), Some("FT-tls"));

    // Without the CA the certificate is not trusted: a backend fault naming the cause.
    let b = Bridge::with_config(&config(&url, None)).await;
    let r = calculate(&b).await;
    assert_eq!(r.status, 500, "{}", r.body);
    r.assert_has("<sb:code>BACKEND_UNAVAILABLE</sb:code>");
    r.assert_has("certificate");
    std::fs::remove_file(&ca).ok();
}

#[tokio::test]
async fn a_missing_ca_file_is_a_configuration_error_with_its_key() {
    let text = config(
        "https://127.0.0.1:1",
        Some(std::path::Path::new("/nonexistent/ca.pem")),
    );
    let errors =
        soapbridge::config::Config::from_toml(&text, std::path::Path::new("demo/test.toml"))
            .unwrap()
            .compile()
            .unwrap_err();
    let err = &errors.0[0];
    assert_eq!(err.key, "backends.options.ca_file");
    assert!(err.reason.contains("/nonexistent/ca.pem"), "{err}");
}
