//! winstrom parsers: WQL filters and import documents, each beside serde_json (or quick-xml)
//! parsing the same content, measured in the same run. `cargo bench --bench winstrom`.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // a test (or benchmark) may unwrap and print

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::time::{Duration, Instant};

use soapbridge::protocol::{winstrom, wql};

/// Runs of `f` per second, in interleaved slices with `g` (so drift falls on both).
fn rates(dur: Duration, f: &mut dyn FnMut(), g: &mut dyn FnMut()) -> (f64, f64) {
    const SLICES: u32 = 10;
    let mut n = [0u64; 2];
    let mut t = [Duration::ZERO; 2];
    let mut fs: [&mut dyn FnMut(); 2] = [f, g];
    for h in fs.iter_mut() {
        let s = Instant::now();
        while s.elapsed() < dur / 20 {
            h();
        }
    }
    for _ in 0..SLICES {
        for (i, h) in fs.iter_mut().enumerate() {
            let s = Instant::now();
            while s.elapsed() < dur / SLICES {
                h();
                n[i] += 1;
            }
            t[i] += s.elapsed();
        }
    }
    (
        n[0] as f64 / t[0].as_secs_f64(),
        n[1] as f64 / t[1].as_secs_f64(),
    )
}

fn filters() -> Vec<(&'static str, String)> {
    let mut wide = String::new();
    for i in 0..500 {
        if i > 0 {
            wide.push_str(" or ");
        }
        wide.push_str(&format!(
            "(kod = 'K-{i:04}' and nakupCena between {i}.50 {i}.99)"
        ));
    }
    vec![
        ("seed: hladina eq 1", "hladina eq 1".to_string()),
        (
            "typical (150 B)",
            "(nazev begins 'Akát' or nazev like 'dub') and nakupCena >= 12.50 and not kod in ('A', 'B', 'C') and mj1 is not null and id between 1 1000".to_string(),
        ),
        ("500 alternatives (26 kB)", wide),
    ]
}

fn cenik_json(n: usize) -> String {
    let rows: Vec<String> = (0..n)
        .map(|i| format!("{{\"kod\": \"K-{i:05}\", \"nazev\": \"Položka číslo {i} – dubová deska\", \"nakupCena\": \"{i}.50\", \"cenaZakl\": {i}.90, \"mj1\": \"ks\"}}"))
        .collect();
    format!(
        "{{\"winstrom\": {{\"@version\": \"1.0\", \"cenik\": [{}]}}}}",
        rows.join(",")
    )
}

fn cenik_xml(n: usize) -> String {
    let mut s =
        String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><winstrom version=\"1.0\">");
    for i in 0..n {
        s.push_str(&format!("<cenik><kod>K-{i:05}</kod><nazev>Položka číslo {i} – dubová deska</nazev><nakupCena>{i}.50</nakupCena><cenaZakl>{i}.90</cenaZakl><mj1>ks</mj1></cenik>"));
    }
    s.push_str("</winstrom>");
    s
}

fn raw_xml(xml: &str) -> usize {
    let mut r = quick_xml::Reader::from_str(xml);
    let mut n = 0;
    loop {
        match r.read_event().expect("well-formed") {
            quick_xml::events::Event::Eof => break,
            e => {
                black_box(&e);
                n += 1;
            }
        }
    }
    n
}

fn main() {
    let dur = Duration::from_millis(
        std::env::var("BENCH_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2000),
    );
    let ctx = wql::Context {
        now: chrono::Utc::now().fixed_offset(),
        user: "bench",
    };
    println!(
        "WQL filters: soapbridge's parser (text -> checked AST) beside serde_json parsing the same filter as structured JSON\n"
    );
    println!(
        "| filter | bytes | wql::parse per s | MB/s | serde_json::from_str of its JSON per s | ratio |"
    );
    println!("|---|---|---|---|---|---|");
    for (label, text) in filters() {
        let ast = wql::parse(&text).expect("valid");
        let json = wql::to_json(&ast, &ctx).to_string();
        let (p, j) = rates(
            dur,
            &mut || {
                black_box(wql::parse(black_box(&text)).unwrap());
            },
            &mut || {
                black_box(serde_json::from_str::<serde_json::Value>(black_box(&json)).unwrap());
            },
        );
        println!(
            "| {label} | {} | {p:.0} | {:.1} | {j:.0} | {:.0}% |",
            text.len(),
            p * text.len() as f64 / 1e6,
            p / j * 100.0
        );
    }
    println!(
        "\nImport documents: winstrom::decode_document (document -> records) beside the plain parse of the same bytes\n"
    );
    println!("| document | bytes | soapbridge MB/s | baseline | baseline MB/s | ratio |");
    println!("|---|---|---|---|---|---|");
    for n in [10usize, 1000] {
        let json = cenik_json(n);
        let (d, b) = rates(
            dur,
            &mut || {
                black_box(winstrom::decode_document(black_box(&json), 64, 10_000).unwrap());
            },
            &mut || {
                black_box(serde_json::from_str::<serde_json::Value>(black_box(&json)).unwrap());
            },
        );
        let mb = |r: f64| r * json.len() as f64 / 1e6;
        println!(
            "| JSON, {n} cenik records | {} | {:.1} | serde_json::from_str | {:.1} | {:.0}% |",
            json.len(),
            mb(d),
            mb(b),
            d / b * 100.0
        );
        let xml = cenik_xml(n);
        let (d, b) = rates(
            dur,
            &mut || {
                black_box(winstrom::decode_document(black_box(&xml), 64, 10_000).unwrap());
            },
            &mut || {
                black_box(raw_xml(black_box(&xml)));
            },
        );
        let mb = |r: f64| r * xml.len() as f64 / 1e6;
        println!(
            "| XML, {n} cenik records | {} | {:.1} | quick-xml raw event parse | {:.1} | {:.0}% |",
            xml.len(),
            mb(d),
            mb(b),
            d / b * 100.0
        );
    }
}
