//! Migration tools on any input: a recorded message redacted (XML, JSON, forms, text), and two
//! messages compared (the expected one, a NUL, the actual one). Neither may panic; a redacted
//! message keeps no card number, and a message compared with itself has no difference.
#![no_main]

use libfuzzer_sys::fuzz_target;
use soapbridge::protocol::compare::{Rules, compare, redact};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = redact(text);
    let (expected, actual) = text.split_once('\0').unwrap_or((text, text));
    let rules = Rules {
        ignore: vec!["id".into()],
        unordered: vec!["r".into()],
    };
    let _ = compare(expected, actual, &rules);
    assert!(
        compare(expected, expected, &rules).iter().all(|d| !d.counts()),
        "a message differs from itself"
    );
});
