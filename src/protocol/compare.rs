//! Messages side by side, for a migration: what `soapbridge replay` and shadow mode compare
//! (the legacy server's answer against the bridge's), and what `soapbridge record` keeps of a
//! message (secrets and card data redacted).
//!
//! Comparison is by meaning, not by bytes: XML by namespace-qualified element names, attributes
//! and text, with siblings in document order (a SOAP schema's sequences fix it: a changed order
//! is a difference of its own, and the elements are then matched by name); JSON by members
//! (in any order) and arrays (in order). Numbers are compared by value (`10.50` is `10.5`), in
//! text or in JSON. Times are marked, not counted: values that look like dates or times, or
//! that sit in elements or members named like them (`time`, `date`, `timestamp`, ...), and any
//! name the caller lists. `{{*}}` in an expected text matches anything (the fixtures' mark for
//! values that change from run to run).

use std::fmt;

use serde_json::Value;

/// How two messages differ at one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Different values.
    Value,
    /// Only in the expected message.
    Missing,
    /// Only in the actual message.
    Extra,
    /// The same elements in another order.
    Order,
    /// Different, but a time (or a name the caller ignores): reported, not counted.
    Ignored,
}

/// One difference: where (a path of element or member names), what was expected and what
/// came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub path: String,
    pub kind: Kind,
    pub expected: String,
    pub actual: String,
}

impl Difference {
    /// Whether it counts against the messages being the same.
    pub fn counts(&self) -> bool {
        self.kind != Kind::Ignored
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cut = |s: &str| -> String {
            let mut t: String = s.chars().take(120).collect();
            if t.len() < s.len() {
                t.push('…');
            }
            t
        };
        match self.kind {
            Kind::Value => write!(
                f,
                "{}: expected {:?}, got {:?}",
                self.path,
                cut(&self.expected),
                cut(&self.actual)
            ),
            Kind::Missing => write!(
                f,
                "{}: missing (expected {:?})",
                self.path,
                cut(&self.expected)
            ),
            Kind::Extra => write!(
                f,
                "{}: not expected (got {:?})",
                self.path,
                cut(&self.actual)
            ),
            Kind::Order => write!(
                f,
                "{}: children in another order: expected [{}], got [{}]",
                self.path,
                cut(&self.expected),
                cut(&self.actual)
            ),
            Kind::Ignored => write!(
                f,
                "{}: (ignored: a time) {:?} vs {:?}",
                self.path,
                cut(&self.expected),
                cut(&self.actual)
            ),
        }
    }
}

/// What a comparison is told besides the messages.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Names of elements or members whose values are not compared (their differences are
    /// marked [`Kind::Ignored`]).
    pub ignore: Vec<String>,
    /// Names of elements whose children may come in any order (the schema's `xs:all`,
    /// `Schema::unordered_elements`): their order is no difference.
    pub unordered: Vec<String>,
}

/// Compares an actual message with the expected one.
pub fn compare(expected: &str, actual: &str, rules: &Rules) -> Vec<Difference> {
    let (e, a) = (expected.trim(), actual.trim());
    let mut c = Cmp {
        rules,
        out: Vec::new(),
    };
    if e.starts_with('<') {
        let opts = roxmltree::ParsingOptions {
            allow_dtd: false,
            nodes_limit: 5_000_000,
        };
        match (
            roxmltree::Document::parse_with_options(e, opts),
            roxmltree::Document::parse_with_options(a, opts),
        ) {
            (Ok(ed), Ok(ad)) => {
                let (er, ar) = (ed.root_element(), ad.root_element());
                if er.tag_name() == ar.tag_name() {
                    c.element(er, ar, &format!("/{}", er.tag_name().name()));
                } else {
                    c.push("/", Kind::Value, &qname(er), &qname(ar));
                }
            }
            (Ok(_), Err(err)) => c.push("/", Kind::Value, "XML", &format!("not XML: {err}")),
            (Err(_), _) => c.leaf("/", "", e, a),
        }
    } else if e.starts_with('{') || e.starts_with('[') {
        match (
            serde_json::from_str::<Value>(e),
            serde_json::from_str::<Value>(a),
        ) {
            (Ok(ev), Ok(av)) => c.json(&ev, &av, "", ""),
            (Ok(_), Err(err)) => c.push("/", Kind::Value, "JSON", &format!("not JSON: {err}")),
            (Err(_), _) => c.leaf("/", "", e, a),
        }
    } else {
        c.leaf("/", "", e, a);
    }
    c.out
}

fn qname(n: roxmltree::Node<'_, '_>) -> String {
    match n.tag_name().namespace() {
        Some(ns) => format!("{{{ns}}}{}", n.tag_name().name()),
        None => n.tag_name().name().to_string(),
    }
}

struct Cmp<'a> {
    rules: &'a Rules,
    out: Vec<Difference>,
}

impl Cmp<'_> {
    fn push(&mut self, path: &str, kind: Kind, expected: &str, actual: &str) {
        self.out.push(Difference {
            path: if path.is_empty() {
                "/".into()
            } else {
                path.into()
            },
            kind,
            expected: expected.into(),
            actual: actual.into(),
        });
    }

    /// Two elements of the same name at `path`.
    fn element(&mut self, e: roxmltree::Node<'_, '_>, a: roxmltree::Node<'_, '_>, path: &str) {
        let name = e.tag_name().name();
        for ea in e.attributes() {
            let at = format!("{path}/@{}", ea.name());
            match a
                .attributes()
                .find(|x| x.name() == ea.name() && x.namespace() == ea.namespace())
            {
                Some(aa) => self.leaf(&at, ea.name(), ea.value(), aa.value()),
                None => self.push(&at, Kind::Missing, ea.value(), ""),
            }
        }
        for aa in a.attributes() {
            if !e
                .attributes()
                .any(|x| x.name() == aa.name() && x.namespace() == aa.namespace())
            {
                self.push(
                    &format!("{path}/@{}", aa.name()),
                    Kind::Extra,
                    "",
                    aa.value(),
                );
            }
        }
        let ec: Vec<_> = e.children().filter(|n| n.is_element()).collect();
        let ac: Vec<_> = a.children().filter(|n| n.is_element()).collect();
        if ec.is_empty() && ac.is_empty() {
            let text = |n: roxmltree::Node<'_, '_>| -> String {
                n.children().filter_map(|c| c.text()).collect::<String>()
            };
            self.leaf(path, name, text(e).trim(), text(a).trim());
            return;
        }
        let key = |n: &roxmltree::Node<'_, '_>| qname(*n);
        let en: Vec<String> = ec.iter().map(key).collect();
        let an: Vec<String> = ac.iter().map(key).collect();
        if en != an && !self.rules.unordered.iter().any(|u| u == name) {
            let (mut es, mut as_) = (en.clone(), an.clone());
            es.sort();
            as_.sort();
            if es == as_ {
                let short = |v: &[String]| {
                    v.iter()
                        .map(|q| q.rsplit('}').next().unwrap_or(q).to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                self.push(path, Kind::Order, &short(&en), &short(&an));
            }
        }
        // Matched by name, each name's elements in order.
        let mut names: Vec<&String> = Vec::new();
        for n in en.iter().chain(an.iter()) {
            if !names.contains(&n) {
                names.push(n);
            }
        }
        for n in names {
            let es: Vec<_> = ec.iter().filter(|c| &key(c) == n).collect();
            let as_: Vec<_> = ac.iter().filter(|c| &key(c) == n).collect();
            let local = n.rsplit('}').next().unwrap_or(n);
            let many = es.len().max(as_.len()) > 1;
            for i in 0..es.len().max(as_.len()) {
                let p = if many {
                    format!("{path}/{local}[{}]", i + 1)
                } else {
                    format!("{path}/{local}")
                };
                match (es.get(i), as_.get(i)) {
                    (Some(x), Some(y)) => self.element(**x, **y, &p),
                    (Some(x), None) => {
                        let t = summary(**x);
                        self.push(&p, Kind::Missing, &t, "");
                    }
                    (None, Some(y)) => {
                        let t = summary(**y);
                        self.push(&p, Kind::Extra, "", &t);
                    }
                    (None, None) => {}
                }
            }
        }
    }

    fn json(&mut self, e: &Value, a: &Value, path: &str, name: &str) {
        match (e, a) {
            (Value::Object(em), Value::Object(am)) => {
                for (k, ev) in em {
                    let p = format!("{path}/{k}");
                    match am.get(k) {
                        Some(av) => self.json(ev, av, &p, k),
                        None => self.push(&p, Kind::Missing, &ev.to_string(), ""),
                    }
                }
                for (k, av) in am {
                    if !em.contains_key(k) {
                        self.push(&format!("{path}/{k}"), Kind::Extra, "", &av.to_string());
                    }
                }
            }
            (Value::Array(ea), Value::Array(aa)) => {
                for i in 0..ea.len().max(aa.len()) {
                    let p = format!("{path}[{i}]");
                    match (ea.get(i), aa.get(i)) {
                        (Some(x), Some(y)) => self.json(x, y, &p, name),
                        (Some(x), None) => self.push(&p, Kind::Missing, &x.to_string(), ""),
                        (None, Some(y)) => self.push(&p, Kind::Extra, "", &y.to_string()),
                        (None, None) => {}
                    }
                }
            }
            (Value::Object(_) | Value::Array(_), _) | (_, Value::Object(_) | Value::Array(_)) => {
                self.push(path, Kind::Value, &e.to_string(), &a.to_string());
            }
            _ => {
                let text = |v: &Value| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                self.leaf(path, name, &text(e), &text(a));
            }
        }
    }

    /// Two texts at `path`, the value of an element or member called `name`.
    fn leaf(&mut self, path: &str, name: &str, e: &str, a: &str) {
        if e == a || (e.contains("{{*}}") && wildcard(e, a)) || same_number(e, a) {
            return;
        }
        let kind = if self.rules.ignore.iter().any(|i| i == name) || is_time(name, e, a) {
            Kind::Ignored
        } else {
            Kind::Value
        };
        self.push(path, kind, e, a);
    }
}

/// A short text of an element, for a missing or extra one.
fn summary(n: roxmltree::Node<'_, '_>) -> String {
    let text: String = n
        .descendants()
        .filter(|d| d.is_text())
        .filter_map(|d| d.text())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    format!("<{}>{text}", n.tag_name().name())
}

/// `expected` with `{{*}}` standing for any text.
fn wildcard(expected: &str, actual: &str) -> bool {
    let parts: Vec<&str> = expected.split("{{*}}").collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !actual.starts_with(first) || !actual[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &actual[first.len()..actual.len() - last.len()];
    for p in &parts[1..parts.len() - 1] {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}

/// Whether both texts are numbers of the same value (`10.50` and `10.5`, `+1` and `1`).
fn same_number(e: &str, a: &str) -> bool {
    match (decimal(e), decimal(a)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// A plain decimal number in a canonical form (sign, digits without leading zeros, fraction
/// without trailing zeros); `None` for anything else (exponents included: compared as text).
fn decimal(s: &str) -> Option<String> {
    let s = s.trim();
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let zero = int.is_empty() && frac.is_empty();
    Some(format!(
        "{}{}.{}",
        if neg && !zero { "-" } else { "" },
        if int.is_empty() { "0" } else { int },
        frac
    ))
}

/// Whether a difference is in a time: values that both look like a date or time, or any
/// value under a name that says it is one.
fn is_time(name: &str, e: &str, a: &str) -> bool {
    let digits = |b: &[u8]| b.iter().all(u8::is_ascii_digit);
    let looks = |s: &str| {
        let b = s.as_bytes();
        b.len() >= 10
            && ((digits(&b[..4])
                && b[4] == b'-'
                && digits(&b[5..7])
                && b[7] == b'-'
                && digits(&b[8..10]))
                || (digits(&b[..2])
                    && matches!(b[2], b'/' | b'.')
                    && digits(&b[3..5])
                    && b[5] == b[2]
                    && digits(&b[6..10])))
    };
    if looks(e) && looks(a) {
        return true;
    }
    let n = name.to_ascii_lowercase();
    ["time", "date", "datum", "created", "updated", "lastupdate"]
        .iter()
        .any(|w| n.contains(w))
}

/// A short name for a request, for the files `record` writes: a SOAP body's first element,
/// an XML-RPC `methodName`, or nothing (the caller names it by its path).
pub fn call_name(body: &str) -> Option<String> {
    let t = body.trim();
    if !t.starts_with('<') {
        return None;
    }
    let opts = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: 1_000_000,
    };
    let doc = roxmltree::Document::parse_with_options(t, opts).ok()?;
    let root = doc.root_element();
    let name = match root.tag_name().name() {
        "Envelope" => root
            .children()
            .find(|n| n.is_element() && n.tag_name().name() == "Body")?
            .children()
            .find(|n| n.is_element())?
            .tag_name()
            .name()
            .to_string(),
        "methodCall" => root
            .children()
            .find(|n| n.is_element() && n.tag_name().name() == "methodName")?
            .text()?
            .trim()
            .to_string(),
        other => other.to_string(),
    };
    let clean: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(64)
        .collect();
    (!clean.is_empty()).then_some(clean)
}

/// A message as `record` keeps it: the text of elements (and JSON members, XML-RPC struct
/// members, form fields) named like secrets, and any card number, replaced by `***`; the rest
/// as it was. A DTD is refused.
pub fn redact(text: &str) -> Result<String, String> {
    let t = text.trim_start();
    if t.starts_with('<') {
        return redact_xml(text);
    }
    if t.starts_with('{') || t.starts_with('[') {
        return match serde_json::from_str::<Value>(text) {
            Ok(v) => Ok(crate::redact::value(&v).to_string()),
            Err(_) => Ok(redact_words(text)),
        };
    }
    if t.contains('=') && !t.contains(char::is_whitespace) {
        // A form: `username=u&password=p`.
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (k, v) in form_urlencoded::parse(t.as_bytes()) {
            let v = if crate::redact::is_secret(&k) {
                "***".to_string()
            } else {
                redact_words(&v)
            };
            out.append_pair(&k, &v);
        }
        return Ok(out.finish());
    }
    Ok(redact_words(text))
}

/// Text with every run of 13 to 19 digits (spaces or dashes between them allowed) that is a
/// card number replaced by `***`.
fn redact_words(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        let trimmed = run.trim_end_matches([' ', '-']);
        let tail = run[trimmed.len()..].to_string();
        if crate::redact::looks_like_card(trimmed) {
            out.push_str("***");
        } else {
            out.push_str(trimmed);
        }
        out.push_str(&tail);
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() || (!run.is_empty() && matches!(c, ' ' | '-')) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

fn redact_xml(text: &str) -> Result<String, String> {
    use quick_xml::events::{BytesText, Event};
    let mut reader = quick_xml::Reader::from_str(text);
    let mut writer = quick_xml::Writer::new(Vec::with_capacity(text.len()));
    // Depth of the innermost open element whose content is secret (0: none).
    let mut secret_from = 0usize;
    let mut depth = 0usize;
    // XML-RPC: the `<name>` just read names a secret, so the member's `<value>` is one.
    let mut last_name_secret = false;
    let mut in_name = false;
    let err = |e: &dyn std::fmt::Display| format!("not well-formed XML: {e}");
    loop {
        let ev = reader.read_event().map_err(|e| err(&e))?;
        let out = match ev {
            Event::Eof => break,
            Event::DocType(_) => return Err("a DTD is not accepted".into()),
            Event::Start(s) => {
                depth += 1;
                let local = String::from_utf8_lossy(s.local_name().as_ref()).into_owned();
                in_name = local == "name";
                if secret_from == 0
                    && (crate::redact::is_secret(&local) || (local == "value" && last_name_secret))
                {
                    secret_from = depth;
                }
                if local == "value" {
                    last_name_secret = false;
                }
                Event::Start(redact_attributes(&s)?)
            }
            Event::Empty(s) => Event::Empty(redact_attributes(&s)?),
            Event::End(e) => {
                if secret_from == depth {
                    secret_from = 0;
                }
                depth = depth.saturating_sub(1);
                in_name = false;
                Event::End(e)
            }
            Event::Text(t) => {
                let raw = t.decode().map_err(|e| err(&e))?.into_owned();
                if in_name {
                    last_name_secret = crate::redact::is_secret(raw.trim());
                }
                if raw.trim().is_empty() {
                    Event::Text(t)
                } else if secret_from > 0 {
                    Event::Text(BytesText::new("***"))
                } else {
                    let cleaned = redact_words(&raw);
                    if cleaned == raw {
                        Event::Text(t)
                    } else {
                        Event::Text(BytesText::new(&cleaned).into_owned())
                    }
                }
            }
            Event::CData(_) if secret_from > 0 => Event::Text(BytesText::new("***")),
            Event::GeneralRef(_) if secret_from > 0 => continue,
            other => other,
        };
        writer.write_event(out).map_err(|e| err(&e))?;
    }
    String::from_utf8(writer.into_inner()).map_err(|e| err(&e))
}

/// A start tag with secret attributes (by name, or card numbers) replaced by `***`.
fn redact_attributes(
    s: &quick_xml::events::BytesStart<'_>,
) -> Result<quick_xml::events::BytesStart<'static>, String> {
    let name = String::from_utf8_lossy(s.name().as_ref()).into_owned();
    let mut out = quick_xml::events::BytesStart::new(name);
    for a in s.attributes() {
        let a = a.map_err(|e| format!("not well-formed XML: {e}"))?;
        let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
        let local = String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned();
        let value = a
            .unescape_value()
            .map_err(|e| format!("not well-formed XML: {e}"))?
            .into_owned();
        let value = if key.starts_with("xmlns") {
            value
        } else if crate::redact::is_secret(&local) {
            "***".to_string()
        } else {
            redact_words(&value)
        };
        out.push_attribute((key.as_str(), value.as_str()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(e: &str, a: &str) -> Vec<String> {
        compare(e, a, &Rules::default())
            .iter()
            .filter(|d| d.counts())
            .map(ToString::to_string)
            .collect()
    }

    const E: &str = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><r xmlns="urn:x"><ackCode>success</ackCode><responseTime>03/12/2026 10:00:00</responseTime><price>10.50</price><item><id>1</id></item><item><id>2</id></item></r></s:Body></s:Envelope>"#;

    #[test]
    fn the_same_meaning_is_the_same_whatever_the_prefixes_spacing_and_number_forms() {
        let a = "<env:Envelope xmlns:env=\"http://schemas.xmlsoap.org/soap/envelope/\">\n  <env:Body>\n    <ns1:r xmlns:ns1=\"urn:x\"><ns1:ackCode>success</ns1:ackCode><ns1:responseTime>03/12/2026 11:12:13</ns1:responseTime><ns1:price>10.5</ns1:price><ns1:item><ns1:id>1</ns1:id></ns1:item><ns1:item><ns1:id>2</ns1:id></ns1:item></ns1:r></env:Body></env:Envelope>";
        assert_eq!(counted(E, a), Vec::<String>::new());
        let all = compare(E, a, &Rules::default());
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!(all[0].kind, Kind::Ignored);
        assert_eq!(all[0].path, "/Envelope/Body/r/responseTime");
    }

    #[test]
    fn values_missing_extra_and_reordered_elements_are_found_with_their_paths() {
        let a = E
            .replace("<price>10.50</price>", "<price>10.60</price>")
            .replace("<item><id>2</id></item>", "")
            .replace(
                "<ackCode>success</ackCode>",
                "<ackCode>success</ackCode><extra>1</extra>",
            );
        assert_eq!(
            counted(E, &a),
            [
                r#"/Envelope/Body/r/price: expected "10.50", got "10.60""#,
                r#"/Envelope/Body/r/item[2]: missing (expected "<item>2")"#,
                r#"/Envelope/Body/r/extra: not expected (got "<extra>1")"#,
            ]
        );
        let swapped = E.replace(
            "<ackCode>success</ackCode><responseTime>03/12/2026 10:00:00</responseTime>",
            "<responseTime>03/12/2026 10:00:00</responseTime><ackCode>success</ackCode>",
        );
        let d = counted(E, &swapped);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].contains("children in another order"), "{d:?}");
        // Unless the schema says any order will do (`xs:all`).
        let any_order = Rules {
            unordered: vec!["r".into()],
            ..Rules::default()
        };
        assert_eq!(compare(E, &swapped, &any_order), []);
        // Another namespace is another element: the expected one is missing, the other extra.
        let other_ns = E.replace("urn:x", "urn:y");
        let d = counted(E, &other_ns);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(
            d[0].contains("missing") && d[1].contains("not expected"),
            "{d:?}"
        );
    }

    #[test]
    fn json_members_in_any_order_numbers_by_value_and_wildcards() {
        let e = r#"{"winstrom":{"@version":"1.0","cenik":[{"id":"{{*}}","cenaZakl":"10.50","lastUpdate":"2026-12-01T10:00:00"}]}}"#;
        let a = r#"{"winstrom":{"cenik":[{"lastUpdate":"2026-12-03T08:00:00","cenaZakl":10.5,"id":"77"}],"@version":"1.0"}}"#;
        assert_eq!(counted(e, a), Vec::<String>::new());
        let b = a.replace("10.5", "11");
        assert_eq!(
            counted(e, &b),
            [r#"/winstrom/cenik[0]/cenaZakl: expected "10.50", got "11""#]
        );
        assert_eq!(counted(e, "not json").len(), 1);
    }

    #[test]
    fn recorded_messages_lose_secrets_and_card_numbers_only() {
        let soap = r#"<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><ns:payPrice xmlns:ns="urn:x"><apiKey>K123</apiKey><sign>abc</sign><time>1</time><cardInfo><cardNumber>4111 1111 1111 1111</cardNumber><cvv>123</cvv></cardInfo><note>pan 4111111111111111</note><ref>4111111111111111</ref><amount>10.50</amount><name a="4111111111111111" b="x">Ali &amp; Veli</name></ns:payPrice></s:Body></s:Envelope>"#;
        let r = redact(soap).unwrap();
        for gone in ["K123", "abc", "4111", "123<"] {
            assert!(!r.contains(gone), "{gone} in {r}");
        }
        for kept in [
            "<time>1</time>",
            "<amount>10.50</amount>",
            r#"b="x""#,
            "Ali &amp; Veli",
            "<cvv>***</cvv>",
            "<ref>***</ref>",
            "<note>pan ***</note>",
        ] {
            assert!(r.contains(kept), "{kept} not in {r}");
        }
        let rpc = "<methodCall><methodName>a.b</methodName><params><param><value><struct><member><name>password</name><value><string>hunter2</string></value></member><member><name>user</name><value><string>u</string></value></member></struct></value></param></params></methodCall>";
        let r = redact(rpc).unwrap();
        assert!(
            !r.contains("hunter2") && r.contains("<string>u</string>"),
            "{r}"
        );
        assert_eq!(
            redact(r#"{"username":"u","password":"p","card":"4111111111111111"}"#).unwrap(),
            r#"{"card":"***","password":"***","username":"u"}"#
        );
        assert_eq!(
            redact("username=u&password=p").unwrap(),
            "username=u&password=***"
        );
        assert!(redact("<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>").is_err());
    }

    #[test]
    fn caller_ignored_names_and_decimal_forms() {
        let ignore_id = Rules {
            ignore: vec!["id".into()],
            ..Rules::default()
        };
        let d = compare(
            "<a><n>1</n><id>X</id></a>",
            "<a><n>1</n><id>Y</id></a>",
            &ignore_id,
        );
        assert_eq!(d.len(), 1);
        assert!(!d[0].counts());
        assert_eq!(decimal("-0.0"), decimal("0"));
        assert_eq!(decimal("007.100"), Some("7.1".into()));
        assert_eq!(decimal("1e3"), None);
        assert!(!same_number("1.0", "1.01"));
    }
}
