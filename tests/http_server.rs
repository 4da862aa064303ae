//! The HTTP layer as a raw client sees it: keep-alive, and clients too slow to send their
//! headers or body.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // a test (or benchmark) may unwrap and print

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads one HTTP/1.1 response with a Content-Length body.
async fn read_response(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("answer in time")
            .unwrap();
        assert!(
            n > 0,
            "connection closed early: {}",
            String::from_utf8_lossy(&buf)
        );
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

fn post(body: &str) -> String {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(USER);
    format!(
        "POST {OPTION_PATH} HTTP/1.1\r\nHost: t\r\nContent-Type: text/xml\r\nSOAPAction: \"\"\r\nAuthorization: Basic {auth}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn several_calls_share_one_keep_alive_connection() {
    let b = Bridge::demo().await;
    let mut s = TcpStream::connect(b.addr).await.unwrap();
    let base = now_ms();
    for i in 0..3 {
        let env = envelope(
            "calculateOptionsPrice",
            "<productIds><item>587300354</item></productIds>",
            "en",
            base - i,
        );
        s.write_all(post(&env).as_bytes()).await.unwrap();
        let r = read_response(&mut s).await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(r.contains("<ackCode>success</ackCode>"), "{r}");
    }
}

fn slow_config() -> String {
    std::fs::read_to_string("demo/soapbridge.toml")
        .unwrap()
        .replace("header_timeout_ms = 10000", "header_timeout_ms = 400")
        .replace("body_timeout_ms = 30000", "body_timeout_ms = 400")
}

#[tokio::test]
async fn a_body_that_stops_arriving_gets_408_and_a_fault() {
    let b = Bridge::with_config(&slow_config()).await;
    let mut s = TcpStream::connect(b.addr).await.unwrap();
    let full = post(&envelope(
        "calculateOptionsPrice",
        "<productIds/>",
        "en",
        now_ms(),
    ));
    // Everything but the last 100 bytes of the body.
    s.write_all(&full.as_bytes()[..full.len() - 100])
        .await
        .unwrap();
    let started = Instant::now();
    let r = read_response(&mut s).await;
    assert!(r.starts_with("HTTP/1.1 408"), "{r}");
    assert!(r.contains("<sb:code>BODY_TIMEOUT</sb:code>"), "{r}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// A body that stops arriving is answered when the body's time (`body_timeout_ms`) is up: the
/// 408 of a call that waited for it (which used to wait a second period, reading the rest
/// away), and the early answer (a 401) of one that did not need it, whose unread rest the
/// bridge tries to read away first.
#[tokio::test]
async fn a_late_body_is_answered_when_its_time_is_up() {
    let config = std::fs::read_to_string("demo/soapbridge.toml")
        .unwrap()
        .replace("body_timeout_ms = 30000", "body_timeout_ms = 2500");
    let b = Bridge::with_config(&config).await;
    let full = post(&envelope(
        "calculateOptionsPrice",
        "<productIds/>",
        "en",
        now_ms(),
    ));
    let wrong = full.replace(
        &{
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(USER)
        },
        "bm86bm8=",
    );
    for (request, status) in [(full, "HTTP/1.1 408"), (wrong, "HTTP/1.1 401")] {
        let mut s = TcpStream::connect(b.addr).await.unwrap();
        s.write_all(&request.as_bytes()[..request.len() - 100])
            .await
            .unwrap();
        let started = Instant::now();
        let r = read_response(&mut s).await;
        let took = started.elapsed();
        assert!(r.starts_with(status), "{r}");
        assert!(r.to_ascii_lowercase().contains("connection: close"), "{r}");
        // 2.5 s, not 5 (the time to read the body and then as long again to read it away).
        assert!(
            took >= Duration::from_millis(2400) && took < Duration::from_millis(4200),
            "{status} after {took:?}"
        );
    }
}

#[tokio::test]
async fn headers_that_stop_arriving_close_the_connection() {
    let b = Bridge::with_config(&slow_config()).await;
    let mut s = TcpStream::connect(b.addr).await.unwrap();
    s.write_all(b"POST /listingapi/ws/IndividualProductOptionService HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    // hyper answers 408 or just closes; either way the connection does not stay open.
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn clients_beyond_max_connections_wait_for_a_free_slot() {
    let text = std::fs::read_to_string("demo/soapbridge.toml")
        .unwrap()
        .replace("max_connections = 10000", "max_connections = 1");
    let b = Bridge::with_config(&text).await;
    let get = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut first = TcpStream::connect(b.addr).await.unwrap();
    first.write_all(get).await.unwrap();
    assert!(read_response(&mut first).await.starts_with("HTTP/1.1 200"));
    // The second client is accepted by the kernel but not served while the first is open.
    let mut second = TcpStream::connect(b.addr).await.unwrap();
    second.write_all(get).await.unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(300), second.read(&mut buf)).await;
    assert!(early.is_err(), "served beyond the limit");
    drop(first);
    assert!(read_response(&mut second).await.starts_with("HTTP/1.1 200"));
}

/// A head up to the read buffer's 64 KiB is served; a larger one is refused with 431 before
/// anything is done for it, and a 1 MB body still streams through the small buffer whole.
#[tokio::test]
async fn heads_must_fit_the_read_buffer_and_bodies_of_any_size_pass_through_it() {
    let b = Bridge::demo().await;
    let base = now_ms();
    let env = |i: i64| {
        envelope(
            "calculateOptionsPrice",
            "<productIds><item>587300354</item></productIds>",
            "en",
            base - i,
        )
    };
    let with_header = |bytes: usize, env: &str| {
        post(env).replacen(
            "Host: t\r\n",
            &format!("Host: t\r\nX-Padding: {}\r\n", "a".repeat(bytes)),
            1,
        )
    };
    let exchange = |request: String| async move {
        let mut s = TcpStream::connect(b.addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        read_response(&mut s).await
    };
    let r = exchange(with_header(48 * 1024, &env(0))).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("<ackCode>success</ackCode>"), "{r}");

    let r = exchange(with_header(80 * 1024, &env(1))).await;
    assert!(r.starts_with("HTTP/1.1 431"), "{r}");

    // 1 MB of white space inside the envelope: read through the 64 KiB buffer in pieces.
    let big = env(2).replacen(
        "<productIds>",
        &format!("{}<productIds>", " ".repeat(1_000_000)),
        1,
    );
    let r = exchange(post(&big)).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("<ackCode>success</ackCode>"), "{r}");
}
