//! The WSDL loader on shapes beyond the bundled services: rpc/literal, imported schemas with
//! qualified elements and restricted simple types, and what it refuses.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // a test (or benchmark) may unwrap and print

use std::path::Path;

use serde_json::json;
use soapbridge::protocol::soap::{self, SoapVersion};
use soapbridge::schema::{ServiceDescription, SimpleKind, TypeDef};

#[test]
fn rpc_literal_with_an_imported_schema() {
    let d = ServiceDescription::load(Path::new("tests/wsdl/rpc.wsdl")).unwrap();
    assert_eq!(d.name, "Calc");
    let op = d.operation("sum").unwrap();
    assert_eq!(op.soap_actions, ["urn:rpc#sum"]);
    assert_eq!(op.documentation, "Adds amounts.");
    assert_eq!(op.input.name, "sum");
    assert_eq!(op.input.namespace.as_deref(), Some("urn:rpc"));
    let TypeDef::Complex(input) = d.schema.get(op.input.ty) else {
        panic!()
    };
    let amounts = input.child("amounts").unwrap();
    let TypeDef::Complex(a) = d.schema.get(amounts.ty) else {
        panic!()
    };
    let amount = a.child("amount").unwrap();
    assert!(amount.is_repeated());
    // `xs:all`: the children of `totals` may come in any order (replay and shadow mode do not
    // count their order as a difference); a sequence's may not.
    assert!(!a.unordered);
    assert_eq!(d.schema.unordered_elements(), ["totals"]);
    assert_eq!(amount.namespace.as_deref(), Some("urn:types"));
    let TypeDef::Simple(money) = d.schema.get(amount.ty) else {
        panic!()
    };
    assert_eq!(money.kind, SimpleKind::Decimal);

    // A request in that shape decodes with exact decimals and arrays.
    let xml = r#"<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body><r:sum xmlns:r="urn:rpc"><code>0085</code><amounts><t:amount xmlns:t="urn:types">1.10</t:amount></amounts></r:sum></e:Body></e:Envelope>"#;
    let (v, call) = soap::decode(
        &d,
        xml,
        Some("urn:rpc#sum"),
        soap::ReadOptions::new(32),
        SoapVersion::V11,
    );
    assert_eq!(v, SoapVersion::V11);
    let call = call.unwrap();
    assert_eq!(
        call.params.to_json().to_string(),
        r#"{"amounts":{"amount":[1.10]},"code":"0085"}"#
    );

    // The response writes the other namespace's elements with their own prefix.
    let out = soap::encode_response(
        &d,
        0,
        SoapVersion::V12,
        "soap",
        "m",
        soapbridge::call::Doc::Json(&json!({"total": "2.20"})),
        0,
    )
    .unwrap();
    assert!(
        out.contains("<m:sumResponse xmlns:m=\"urn:rpc\"><total>2.20</total></m:sumResponse>"),
        "{out}"
    );

    // Served with the bridge's address and the schema link rewritten.
    let wsdl = d.render_wsdl("http://bridge:1/calc");
    assert!(wsdl.contains("location=\"http://bridge:1/calc\""));
    assert!(wsdl.contains("schemaLocation=\"http://bridge:1/calc?xsd=types.xsd\""));
    assert!(
        d.render_xsd("types.xsd", "http://bridge:1/calc")
            .unwrap()
            .contains("name=\"Amounts\"")
    );
}

#[test]
fn unsupported_shapes_are_refused_with_file_and_line() {
    let e = ServiceDescription::load(Path::new("tests/wsdl/repeated-group.wsdl")).unwrap_err();
    assert!(e.file.ends_with("repeated-group.wsdl"));
    assert!(
        e.reason.starts_with("line 6: a repeated group"),
        "{}",
        e.reason
    );
    let e = ServiceDescription::load(Path::new("tests/wsdl/missing.wsdl")).unwrap_err();
    assert!(e.reason.contains("cannot read"), "{}", e.reason);
}

#[test]
fn recursive_elements_load_and_decode_to_their_depth() {
    let d = ServiceDescription::load(Path::new("tests/wsdl/tree.wsdl")).unwrap();
    let xml = r#"<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body><t:node xmlns:t="urn:tree"><t:label>a</t:label><t:node><t:label>b</t:label></t:node></t:node></e:Body></e:Envelope>"#;
    let call = soap::decode(&d, xml, None, soap::ReadOptions::new(32), SoapVersion::V11)
        .1
        .unwrap();
    assert_eq!(
        call.params.to_json(),
        json!({"label": "a", "node": [{"label": "b", "node": []}]})
    );
}
