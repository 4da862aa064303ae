//! Hostile and heavy input: mangled envelopes never panic the decoder, and many concurrent
//! signed calls are all answered correctly.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // a test (or benchmark) may unwrap and print

mod common;

use std::path::Path;

use common::*;
use soapbridge::protocol::soap::{self, SoapVersion};
use soapbridge::schema::ServiceDescription;

/// A small deterministic generator (xorshift), so failures are reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Applies 6,000 deterministic mutations (inserted XML fragments, deletions, random bytes) to
/// the seed documents and hands each to `decode`, which reports whether it was accepted.
/// Panics propagate; most mutations must be refused and some accepted.
fn mutate(seeds: &[Vec<u8>], decode: impl Fn(&[u8]) -> bool) {
    let pieces: &[&[u8]] = &[
        b"<",
        b">",
        b"</",
        b"/>",
        b"&",
        b"&#0;",
        b"&#x110000;",
        b"&lt;",
        b"<![CDATA[",
        b"]]>",
        b"<!--",
        b"\"",
        b"xmlns:x=\"\"",
        b"xsi:nil=\"true\"",
        b"\xff",
        b"\xc3",
        b"<!DOCTYPE x>",
        b"<?pi?>",
        b"1e999999999999",
        b"-",
        b"\0",
        b"<value>",
        b"<array><data>",
        b"<struct>",
        b"<i8>9223372036854775808</i8>",
        b"<double>1e999</double>",
        b"<nil/>",
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut outcomes = [0usize; 2];
    for i in 0..6000 {
        let mut doc = seeds[i % seeds.len()].clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(doc.len() + 1);
            match rng.below(3) {
                0 => {
                    let p = pieces[rng.below(pieces.len())];
                    doc.splice(at..at, p.iter().copied());
                }
                1 => {
                    let end = (at + 1 + rng.below(12)).min(doc.len());
                    doc.drain(at..end);
                }
                _ => {
                    if at < doc.len() {
                        doc[at] = rng.next() as u8;
                    }
                }
            }
        }
        outcomes[decode(&doc) as usize] += 1;
    }
    // Most mutations break the message; some (inside text or whitespace) do not.
    assert!(outcomes[0] > 1000 && outcomes[1] > 0, "{outcomes:?}");
}

#[test]
fn mangled_envelopes_are_answered_never_panicked_on() {
    let desc =
        ServiceDescription::load(Path::new("wsdl/IndividualProductOptionService.wsdl")).unwrap();
    let seeds: Vec<Vec<u8>> = [
        "option/addOptionsToCart.xml",
        "option/payPrice.xml",
        "option/calculateOptionsPrice-soap12.xml",
    ]
    .iter()
    .map(|f| fixture(f).into_bytes())
    .collect();
    // What the bridge does with a body: decode its encoding, then the envelope.
    mutate(&seeds, |doc| {
        soapbridge::protocol::xml::decode_body(doc, Some("text/xml")).is_ok_and(|text| {
            soap::decode(
                &desc,
                &text,
                None,
                soap::ReadOptions::new(64),
                SoapVersion::V11,
            )
            .1
            .is_ok()
        })
    });
}

#[test]
fn mangled_xmlrpc_calls_are_answered_never_panicked_on() {
    use soapbridge::protocol::xmlrpc;
    let desc =
        ServiceDescription::load(Path::new("wsdl/IndividualProductOptionService.wsdl")).unwrap();
    let seeds: Vec<Vec<u8>> = [
        "option/addOptionsToCart.xml",
        "option/payPrice.xml",
        "multicall.xml",
    ]
    .iter()
    .map(|f| std::fs::read(format!("fixtures/xmlrpc/{f}")).unwrap())
    .collect();
    // Decode the body, then the methodCall, then its parameters by the operation's schema.
    mutate(&seeds, |doc| {
        let Ok(text) = soapbridge::protocol::xml::decode_body(doc, Some("text/xml")) else {
            return false;
        };
        let Ok(call) = xmlrpc::decode_call(&text, 64) else {
            return false;
        };
        let op = call
            .name
            .split_once('.')
            .and_then(|(_, op)| desc.operation(op));
        match op {
            Some(op) => xmlrpc::params_to_call(call.params, &desc.schema, op).is_ok(),
            None => true,
        }
    });
}

#[test]
fn mangled_winstrom_documents_and_filters_are_answered_never_panicked_on() {
    use soapbridge::protocol::{winstrom, wql};
    let seeds: Vec<Vec<u8>> = [
        "kusovnik/seed-filter.xml",
        "kusovnik/seed-id.json",
        "cenik/create.json",
        "cenik/create.xml",
    ]
    .iter()
    .map(|f| std::fs::read(format!("fixtures/winstrom/{f}")).unwrap())
    .collect();
    mutate(&seeds, |doc| {
        let Ok(text) = soapbridge::protocol::xml::decode_body(doc, None) else {
            return false;
        };
        match winstrom::decode_document(&text, 64, 1000) {
            Ok(d) => d
                .records
                .iter()
                .all(|r| r.filter.as_deref().is_none_or(|f| wql::parse(f).is_ok())),
            Err(_) => false,
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_signed_calls_each_get_their_own_answer() {
    let b = Bridge::demo().await;
    let url = b.url(OPTION_PATH);
    let base = now_ms();
    let mut tasks = Vec::new();
    for i in 0..200i64 {
        let url = url.clone();
        // Each call asks for a different pair of products and has its own time.
        let ids = if i % 2 == 0 {
            "<item>587300354</item>"
        } else {
            "<item>587300355</item><item>587300356</item>"
        };
        let env = envelope(
            "getOptionFeaturesInfo",
            &format!("<productIds>{ids}</productIds>"),
            "en",
            base - i,
        );
        tasks.push(tokio::spawn(
            async move { (i, soap(&url, USER, env).await) },
        ));
    }
    for t in tasks {
        let (i, r) = t.await.unwrap();
        r.assert_success();
        let count = r.text_of("productCount").unwrap();
        assert_eq!(
            count,
            if i % 2 == 0 { "1" } else { "2" },
            "call {i}: {}",
            r.body
        );
    }
}
