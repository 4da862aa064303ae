//! A request body, in any charset, as the SOAP door reads it: charset detection, then the
//! envelope decoded against the demo's WSDLs (every operation, signed and basic services).
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use soapbridge::protocol::soap::{self, ReadOptions, SoapVersion};
use soapbridge::protocol::xml::decode_body;
use soapbridge::schema::ServiceDescription;

static SERVICES: LazyLock<Vec<ServiceDescription>> = LazyLock::new(|| {
    [
        "IndividualProductOptionService.wsdl",
        "DiaErpService.wsdl",
        "InventoryService.wsdl",
        "StockService.wsdl",
    ]
    .iter()
    .map(|f| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wsdl").join(f);
        ServiceDescription::load(&path).expect("the demo's WSDLs load")
    })
    .collect()
});

fuzz_target!(|data: &[u8]| {
    // The first byte picks the service, the Content-Type and the SOAP version hint.
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let desc = &SERVICES[pick as usize % SERVICES.len()];
    let ct = match pick / 4 % 4 {
        0 => Some("text/xml; charset=utf-8"),
        1 => Some("text/xml; charset=iso-8859-9"),
        2 => Some("application/soap+xml; charset=utf-16"),
        _ => None,
    };
    let hint = if pick & 0x40 == 0 {
        SoapVersion::V11
    } else {
        SoapVersion::V12
    };
    let Ok(text) = decode_body(body, ct) else {
        return;
    };
    let read = ReadOptions {
        strict_nil: pick & 0x80 != 0,
        ..ReadOptions::new(64)
    };
    let (_, call) = soap::decode(desc, &text, None, read, hint);
    // Scanning plain list items reads the same call, or refuses the envelope with the same
    // error, as reading every item through events.
    let events = ReadOptions {
        scan_lists: false,
        ..read
    };
    let (_, by_events) = soap::decode(desc, &text, None, events, hint);
    match (&call, &by_events) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.params, b.params);
            assert_eq!(a.params.to_json(), b.params.to_json());
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("scanned: {call:?}\nby events: {by_events:?}"),
    }
    if let Ok(call) = call {
        // What reaches the mapping templates converts without failing.
        let _ = call.params.to_json();
    }
});
