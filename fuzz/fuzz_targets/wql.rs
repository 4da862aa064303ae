//! WQL filters: parsing within limits, and the printer's promise that
//! `parse(print(f)) == normalize(f)` for every filter that parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use soapbridge::protocol::wql;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let limits = wql::Limits {
        terms: 200,
        nodes: 2000,
        ..wql::Limits::default()
    };
    let Ok(f) = wql::parse_with(text, &limits) else {
        return;
    };
    let printed = wql::print(&f);
    let again = wql::parse(&printed).unwrap_or_else(|e| panic!("{printed:?} does not parse: {e}"));
    assert_eq!(again, wql::normalize(f.clone()), "{printed:?}");
    let ctx = wql::Context {
        now: chrono::DateTime::from_timestamp(1_700_000_000, 0)
            .unwrap()
            .fixed_offset(),
        user: "fuzz",
    };
    let _ = wql::to_json(&f, &ctx);
});
