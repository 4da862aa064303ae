use std::collections::HashMap;

use super::*;

/// Files and environment variables held in memory: compiling reads nothing else.
#[derive(Default)]
struct Memory {
    files: HashMap<PathBuf, String>,
    env: HashMap<String, String>,
}

impl Sources for Memory {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "not in memory"))
    }

    fn env(&self, name: &str) -> Option<String> {
        self.env.get(name).cloned()
    }
}

fn parse(text: &str) -> Config {
    Config::from_toml(text, Path::new("/etc/sb/test.toml")).unwrap()
}

fn errors(text: &str, sources: &Memory) -> Vec<ConfigError> {
    compile(&parse(text), sources).unwrap_err().0
}

const WSDL: &str = r#"<?xml version="1.0"?>
<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:tns="urn:t" targetNamespace="urn:t" name="T">
  <wsdl:types><xs:schema targetNamespace="urn:t" elementFormDefault="unqualified">
    <xs:element name="ping"><xs:complexType><xs:sequence><xs:element name="x" type="xs:string"/></xs:sequence></xs:complexType></xs:element>
    <xs:element name="pingResponse"><xs:complexType><xs:sequence><xs:element name="y" type="xs:string"/></xs:sequence></xs:complexType></xs:element>
  </xs:schema></wsdl:types>
  <wsdl:message name="in"><wsdl:part name="p" element="tns:ping"/></wsdl:message>
  <wsdl:message name="out"><wsdl:part name="p" element="tns:pingResponse"/></wsdl:message>
  <wsdl:portType name="P"><wsdl:operation name="ping"><wsdl:input message="tns:in"/><wsdl:output message="tns:out"/></wsdl:operation></wsdl:portType>
  <wsdl:binding name="B" type="tns:P"><soap:binding transport="http://schemas.xmlsoap.org/soap/http" style="document"/>
    <wsdl:operation name="ping"><soap:operation soapAction=""/><wsdl:input><soap:body use="literal"/></wsdl:input><wsdl:output><soap:body use="literal"/></wsdl:output></wsdl:operation></wsdl:binding>
  <wsdl:service name="T"><wsdl:port name="p" binding="tns:B"><soap:address location="http://x/"/></wsdl:port></wsdl:service>
</wsdl:definitions>"#;

fn with_wsdl() -> Memory {
    let mut m = Memory::default();
    m.files.insert(PathBuf::from("/etc/sb/t.wsdl"), WSDL.into());
    m
}

/// The plan a configuration compiles to, with `t.wsdl` (a service of one operation, `ping`)
/// beside it: for unit tests of what is built from a plan.
pub(crate) fn plan_of(config: &str) -> Plan {
    compile(&parse(config), &with_wsdl()).unwrap()
}

const SERVICE: &str = r#"
[backends.b]
base_url = "http://127.0.0.1:9"

[mappings.m.ping]
path = "/ping"

[[services]]
name = "T"
path = "/t"
wsdl = "t.wsdl"
backend = "b"
mappings = "m"
"#;

#[test]
fn unknown_keys_are_reported_with_file_and_line() {
    let err = Config::from_toml(
        "[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n",
        Path::new("/etc/sb/test.toml"),
    )
    .unwrap_err();
    let e = &err.0[0];
    assert_eq!(e.file, "/etc/sb/test.toml");
    assert_eq!(e.line, Some(3));
    assert!(e.reason.contains("lisen"), "{e}");
    assert!(e.to_string().starts_with("/etc/sb/test.toml:3: "), "{e}");
}

#[test]
fn the_bytes_of_bodies_in_flight_are_bounded_by_default_and_never_below_one_body() {
    let plan = compile(&parse(SERVICE), &with_wsdl()).unwrap();
    assert_eq!(
        plan.server.body_budget,
        Some(defaults::MAX_BODY_BYTES_IN_FLIGHT)
    );
    // A larger body limit raises the default bound with it; 0 turns it off.
    let big = format!("[server]\nmax_body_bytes = 536870912\n{SERVICE}");
    let plan = compile(&parse(&big), &with_wsdl()).unwrap();
    assert_eq!(plan.server.body_budget, Some(536870912));
    let off = format!("[server]\nmax_body_bytes_in_flight = 0\n{SERVICE}");
    let plan = compile(&parse(&off), &with_wsdl()).unwrap();
    assert_eq!(plan.server.body_budget, None);
    // A bound below the largest body would refuse every such body forever: an error.
    let low = format!(
        "[server]\nmax_body_bytes = 2000000\nmax_body_bytes_in_flight = 1000000\n{SERVICE}"
    );
    let e = errors(&low, &with_wsdl());
    assert_eq!(e[0].key, "server.max_body_bytes_in_flight", "{e:?}");
    assert!(
        e[0].reason.contains("less than server.max_body_bytes"),
        "{e:?}"
    );
}

#[test]
fn a_valid_configuration_compiles_from_memory_with_every_default() {
    let plan = compile(&parse(SERVICE), &with_wsdl()).unwrap();
    assert_eq!(plan.server.listen.to_string(), defaults::LISTEN);
    assert_eq!(plan.server.public_url, "http://127.0.0.1:8080");
    assert_eq!(plan.server.limits.max_body, defaults::MAX_BODY_BYTES);
    assert_eq!(
        plan.server.limits.request_timeout,
        defaults::REQUEST_TIMEOUT
    );
    let b = &plan.backends["b"];
    assert_eq!(b.timeout, defaults::BACKEND_TIMEOUT);
    assert_eq!(b.max_url_bytes, defaults::MAX_URL_BYTES);
    assert_eq!(plan.services[0].env_prefix, defaults::ENVELOPE_PREFIX);
    assert_eq!(
        plan.xmlrpc.as_ref().map(|x| x.path.as_str()),
        Some(defaults::XMLRPC_PATH)
    );
    // Nothing needs a store: none is planned.
    assert!(plan.store.is_none());
    assert!(plan.services[0].wsdl.starts_with(b"<?xml"));
}

#[test]
fn every_problem_is_reported_at_once_each_with_its_line() {
    let text = r#"
[backends.b]
base_url = "ftp://nowhere"
timeout_ms = 0

[profiles.p]
kind = "signed"
time_window_secs = 0
[[profiles.p.accounts]]
api_key = "k"
secret = { env = "SOAPBRIDGE_SURELY_UNSET" }
role_user = "u"
role_password = "p"

[mappings.m.ping]
path = "no-slash"

[[services]]
name = "T"
path = "/t"
wsdl = "t.wsdl"
backend = "nope"
mappings = "m"
"#;
    let errs = errors(text, &with_wsdl());
    let keys: Vec<(&str, Option<usize>)> = errs.iter().map(|e| (e.key.as_str(), e.line)).collect();
    for (key, line) in [
        ("backends.b.base_url", 2),
        ("backends.b.timeout_ms", 2),
        ("profiles.p.time_window_secs", 6),
        ("profiles.p.accounts[0].secret", 6),
        ("services[0] (T).backend", 18),
        ("mappings.m.ping.path", 15),
    ] {
        assert!(
            keys.contains(&(key, Some(line))),
            "{key} at line {line} in {keys:?}"
        );
    }
    assert_eq!(errs.len(), 6, "each problem once: {keys:?}");
}

#[test]
fn secrets_come_from_the_environment() {
    let text = r#"
[store]
url = { env = "SB_STORE" }
"#;
    let mut m = Memory::default();
    let errs = errors(text, &m);
    assert_eq!(errs[0].key, "store.url");
    assert!(errs[0].reason.contains("SB_STORE"), "{}", errs[0]);
    m.env
        .insert("SB_STORE".into(), "postgres://u:pw@db/sb".into());
    let plan = compile(&parse(text), &m).unwrap();
    assert_eq!(plan.store.unwrap().url, "postgres://u:pw@db/sb");
}

#[test]
fn accept_any_time_requires_reuse_allowed() {
    let text = r#"
[profiles.p]
kind = "signed"
[[profiles.p.accounts]]
api_key = "k"
secret = "s"
role_user = "u"
role_password = "p"
accept_any_time = true
"#;
    let errs = errors(text, &Memory::default());
    assert_eq!(errs[0].key, "profiles.p.accounts[0].accept_any_time");
}

#[test]
fn a_signed_profile_gets_the_default_store_beside_the_file() {
    let text = r#"
[profiles.p]
kind = "signed"
"#;
    let plan = compile(&parse(text), &Memory::default()).unwrap();
    assert_eq!(
        plan.store.unwrap().url,
        "sqlite:/etc/sb/var/soapbridge.db",
        "relative to the configuration file"
    );
}

#[test]
fn enumerations_are_checked_where_they_are_written() {
    let err = Config::from_toml(
        "[xmlrpc]\ni8 = \"sometimes\"\n",
        Path::new("/etc/sb/test.toml"),
    )
    .unwrap_err();
    assert_eq!(err.0[0].line, Some(2));
    assert!(err.0[0].reason.contains("sometimes"), "{}", err.0[0]);
}

#[test]
fn offsets_parse() {
    assert_eq!(parse_offset("+03:00").unwrap().local_minus_utc(), 10800);
    assert_eq!(parse_offset("-05:30").unwrap().local_minus_utc(), -19800);
    assert!(parse_offset("03:00").is_none());
}
