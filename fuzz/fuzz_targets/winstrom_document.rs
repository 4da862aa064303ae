//! An ABRA Flexi import document, XML or JSON, as the winstrom door reads it; and a URL path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use soapbridge::protocol::winstrom;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(doc) = winstrom::decode_document(text, 64, 1000) {
        assert!(doc.records.len() <= 1000);
        for r in &doc.records {
            for id in &r.ids {
                let _ = winstrom::check_id(id);
            }
        }
    }
    // The same text as the part of a URL after /c.
    let _ = winstrom::parse_path(text);
});
