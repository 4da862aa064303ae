//! A `methodCall` as the XML-RPC door reads it: decoded, then its parameters converted for
//! every operation of the demo's services.
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use soapbridge::protocol::xmlrpc;
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
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(call) = xmlrpc::decode_call(text, 64) else {
        return;
    };
    // The method name picks the operation, as the door does; else every operation is tried.
    for desc in SERVICES.iter() {
        for op in &desc.operations {
            if let Ok(params) = xmlrpc::params_to_call(call.params.clone(), &desc.schema, op) {
                let _ = params.to_json();
            }
        }
    }
});
