//! Conversion speed: XML -> JSON (decoding a request envelope) and JSON -> XML (encoding a
//! response envelope), each beside quick-xml's raw event parse of the same bytes, measured in
//! the same run. `cargo bench --bench conversion`.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // a test (or benchmark) may unwrap and print

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use quick_xml::Reader;
use quick_xml::events::Event;
use serde_json::{Value, json};
use soapbridge::protocol::soap::{self, SoapVersion};
use soapbridge::schema::ServiceDescription;

const NS: &str = "https://product.option.individual.ws.listingapi.gg.com";

/// Work done in one slice: runs of `f` and the time they took.
fn slice(dur: Duration, f: &mut impl FnMut()) -> (u64, Duration) {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < dur {
        f();
        n += 1;
    }
    (n, start.elapsed())
}

/// MB/s of each of `fs` on `bytes`, measured in interleaved slices (so that drift on a shared
/// machine falls on all of them alike) after a warm-up.
fn rates<const N: usize>(bytes: usize, dur: Duration, fs: &mut [&mut dyn FnMut(); N]) -> [f64; N] {
    const SLICES: u32 = 10;
    for f in fs.iter_mut() {
        slice(dur / 10, f);
    }
    let mut runs = [0u64; N];
    let mut time = [Duration::ZERO; N];
    for _ in 0..SLICES {
        for (i, f) in fs.iter_mut().enumerate() {
            let (n, t) = slice(dur / SLICES, f);
            runs[i] += n;
            time[i] += t;
        }
    }
    std::array::from_fn(|i| bytes as f64 * runs[i] as f64 / time[i].as_secs_f64() / 1e6)
}

/// quick-xml with namespace resolution, as the bridge reads requests.
fn ns_parse(xml: &str) -> usize {
    let mut r = quick_xml::NsReader::from_str(xml);
    r.config_mut().expand_empty_elements = true;
    let mut n = 0;
    loop {
        match r.read_resolved_event().expect("well-formed") {
            (_, Event::Eof) => break,
            e => {
                black_box(&e);
                n += 1;
            }
        }
    }
    n
}

fn raw_parse(xml: &str) -> usize {
    let mut r = Reader::from_str(xml);
    let mut n = 0;
    loop {
        match r.read_event().expect("well-formed") {
            Event::Eof => break,
            e => {
                black_box(&e);
                n += 1;
            }
        }
    }
    n
}

/// An addOptionsToCart request with `products` products of three options each.
fn request(products: usize) -> String {
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:prod=\"{NS}\"><soapenv:Header/><soapenv:Body><prod:addOptionsToCart><apiKey>NjgEHGeJc6cFqbw6FSUP8NpH3pUhV7ss</apiKey><sign>2ba343cc9f0e6294b53bd9d185384e60</sign><time>1763800000000</time><productsOptionFeature><productOptions>"
    );
    for i in 0..products {
        s.push_str(&format!(
            "<productOption><productId>{}</productId><productFeatureType><optionFeatureType><optionId>1</optionId><duration>7</duration></optionFeatureType><optionFeatureType><optionId>3</optionId><duration>30</duration></optionFeatureType><optionFeatureType><optionId>4</optionId><duration>14</duration></optionFeatureType></productFeatureType></productOption>",
            587300000 + i
        ));
    }
    s.push_str("</productOptions></productsOptionFeature><lang>tr</lang></prod:addOptionsToCart></soapenv:Body></soapenv:Envelope>");
    s
}

/// A getOptionFeaturesInfo result with `products` products of two options each.
fn result(products: usize) -> Value {
    let product: Vec<Value> = (0..products)
        .map(|i| {
            json!({"productId": 587300000 + i, "productTitle": "Kırmızı Deri Cüzdan & Kemer <set>", "optionFeatures": {"optionFeature": [
                {"optionId": 1, "optionName": "Kalın yazı", "duration": 7, "price": "0.01", "paid": false, "expireDate": null},
                {"optionId": 3, "optionName": "Vitrin", "duration": 30, "price": "44.90", "paid": true, "expireDate": "2026-12-31"}
            ]}})
        })
        .collect();
    json!({"return": {"ackCode": "success", "responseTime": "18/08/2020 13:41:22", "timeElapsed": "51 ms", "productCount": products, "products": {"product": product}}})
}

/// Measures `convert` on `xml` (the bytes read or written) beside quick-xml's raw and
/// namespace-resolving parses of the same bytes, prints a table row, and says whether the
/// target (40% of the raw parse rate) is met.
fn row(
    direction: &str,
    message: &str,
    xml: &str,
    dur: Duration,
    mut convert: impl FnMut(),
) -> bool {
    let mut raw = || {
        black_box(raw_parse(black_box(xml)));
    };
    let mut ns = || {
        black_box(ns_parse(black_box(xml)));
    };
    let [conv, raw, nsr] = rates(xml.len(), dur, &mut [&mut convert, &mut raw, &mut ns]);
    let ratio = conv / raw;
    // Rows that convert beyond the call model are shown for comparison only.
    let target = if direction.contains("all of it") {
        "(comparison)"
    } else {
        ">= 40%"
    };
    println!(
        "| {direction} | {message} | {} | {conv:.1} | {raw:.1} | {:.0}% | {target} | {nsr:.1} | {:.0}% |",
        xml.len(),
        ratio * 100.0,
        conv / nsr * 100.0
    );
    ratio >= 0.4
}

fn main() {
    let desc = ServiceDescription::load(Path::new("wsdl/IndividualProductOptionService.wsdl"))
        .expect("WSDL loads");
    let add = desc
        .operations
        .iter()
        .position(|o| o.name == "addOptionsToCart")
        .unwrap();
    let info = desc
        .operations
        .iter()
        .position(|o| o.name == "getOptionFeaturesInfo")
        .unwrap();
    let dur = Duration::from_millis(
        std::env::var("BENCH_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3000),
    );
    println!(
        "| direction | message | bytes | soapbridge MB/s | quick-xml raw parse MB/s | ratio | target | quick-xml NsReader parse MB/s | ratio to NsReader |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut ok = true;
    // BENCH_ONLY=decode|encode runs one direction (for profiling).
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    for (label, products) in [("1 KB", 2usize), ("100 KB", 280)] {
        if only == "encode" {
            break;
        }
        let xml = request(products);
        let call = soap::decode(
            &desc,
            &xml,
            None,
            soap::ReadOptions::new(64),
            SoapVersion::V11,
        )
        .1
        .expect("decodes");
        assert_eq!(call.operation, add);
        ok &= row(
            "XML -> JSON",
            &format!("addOptionsToCart {label}"),
            &xml,
            dur,
            || {
                black_box(
                    soap::decode(
                        &desc,
                        black_box(&xml),
                        None,
                        soap::ReadOptions::new(64),
                        SoapVersion::V11,
                    )
                    .1
                    .unwrap(),
                );
            },
        );
        // For comparison, not the target: the whole decoded call converted on into serde_json
        // values (the bridge converts only what a mapping selects).
        row(
            "XML -> serde_json::Value, all of it",
            &format!("addOptionsToCart {label}"),
            &xml,
            dur,
            || {
                let call = soap::decode(
                    &desc,
                    black_box(&xml),
                    None,
                    soap::ReadOptions::new(64),
                    SoapVersion::V11,
                );
                black_box(call.1.unwrap().params.to_json());
            },
        );
    }
    for (label, products) in [("1 KB", 2usize), ("100 KB", 240)] {
        if only == "decode" {
            break;
        }
        let value = result(products);
        let encode = || {
            soap::encode_response(
                &desc,
                info,
                SoapVersion::V11,
                "env",
                "ns0",
                soapbridge::call::Doc::Json(black_box(&value)),
                0,
            )
            .unwrap()
        };
        let out = encode();
        ok &= row(
            "JSON -> XML",
            &format!("getOptionFeaturesInfoResponse {label}"),
            &out,
            dur,
            || {
                black_box(encode());
            },
        );
    }
    println!(
        "\nconversion target (>= 40% of the raw parse rate): {}",
        if ok { "met" } else { "NOT met" }
    );
}
