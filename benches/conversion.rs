//! Conversion speed: XML -> JSON (decoding a request envelope) and JSON -> XML (encoding a
//! response envelope), each beside quick-xml's raw event parse of the same bytes, measured in
//! the same run. `cargo bench --bench conversion`.

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

/// Runs `f` repeatedly for about `dur`; returns MB/s for `bytes` per run.
fn rate(bytes: usize, dur: Duration, mut f: impl FnMut()) -> f64 {
    // Warm up.
    let warm = Instant::now();
    while warm.elapsed() < dur / 5 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < dur {
        f();
        n += 1;
    }
    (bytes as f64 * n as f64) / start.elapsed().as_secs_f64() / 1e6
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
fn row(direction: &str, message: &str, xml: &str, dur: Duration, convert: impl FnMut()) -> bool {
    let conv = rate(xml.len(), dur, convert);
    let raw = rate(xml.len(), dur, || {
        black_box(raw_parse(black_box(xml)));
    });
    let nsr = rate(xml.len(), dur, || {
        black_box(ns_parse(black_box(xml)));
    });
    let ratio = conv / raw;
    println!(
        "| {direction} | {message} | {} | {conv:.1} | {raw:.1} | {:.0}% | >= 40% | {nsr:.1} | {:.0}% |",
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
            .unwrap_or(1500),
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
        let call = soap::decode(&desc, &xml, None, 64, SoapVersion::V11)
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
                    soap::decode(&desc, black_box(&xml), None, 64, SoapVersion::V11)
                        .1
                        .unwrap(),
                );
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
                black_box(&value),
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
