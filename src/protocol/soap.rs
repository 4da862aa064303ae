//! SOAP 1.1 and 1.2 envelopes: decoding a request into the neutral call model, encoding a
//! result, and the one place where an [`Error`] becomes a SOAP fault and an HTTP status.

use crate::call::{Tree, Val};

use crate::protocol::FieldError;
use crate::protocol::xml::{self, Node, ReadError, XmlReader, XmlWriter, escape_into};
use crate::schema::{ServiceDescription, TypeDef};

pub const SOAP11_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub const SOAP12_NS: &str = "http://www.w3.org/2003/05/soap-envelope";
pub const FAULT_NS: &str = "urn:soapbridge:fault";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoapVersion {
    V11,
    V12,
}

impl SoapVersion {
    pub fn namespace(self) -> &'static str {
        match self {
            SoapVersion::V11 => SOAP11_NS,
            SoapVersion::V12 => SOAP12_NS,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            SoapVersion::V11 => "text/xml; charset=utf-8",
            SoapVersion::V12 => "application/soap+xml; charset=utf-8",
        }
    }

    /// The version a request probably uses, from its Content-Type, for answering before
    /// (or without) reading its envelope.
    pub fn from_content_type(ct: Option<&str>) -> SoapVersion {
        match ct {
            Some(ct)
                if ct
                    .as_bytes()
                    .windows(b"application/soap+xml".len())
                    .any(|w| w.eq_ignore_ascii_case(b"application/soap+xml")) =>
            {
                SoapVersion::V12
            }
            _ => SoapVersion::V11,
        }
    }
}

/// The SOAPAction of a request: the header (1.1) or the `action` parameter of the
/// Content-Type (1.2), without quotes.
pub fn soap_action<'a>(header: Option<&'a str>, content_type: Option<&'a str>) -> Option<&'a str> {
    if let Some(h) = header {
        return Some(h.trim().trim_matches('"'));
    }
    let ct = content_type?;
    ct.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("action")
            .then(|| v.trim().trim_matches('"'))
    })
}

/// Replaces the text of the first `<name>` element (with or without a namespace prefix, no
/// attributes) for each (name, value), escaping the value: how `soapbridge sign --envelope`
/// puts a fresh apiKey/sign/time into a request file.
pub fn fill_elements(envelope: &str, values: &[(&str, &str)]) -> Result<String, String> {
    let mut out = envelope.to_string();
    for (name, value) in values {
        let start = content_start(&out, name)
            .ok_or_else(|| format!("the envelope has no <{name}> element"))?;
        let end = start
            + out[start..]
                .find("</")
                .ok_or_else(|| format!("<{name}> is not closed"))?;
        let mut escaped = String::new();
        escape_into(&mut escaped, value);
        out.replace_range(start..end, &escaped);
    }
    Ok(out)
}

/// The text of the first `<name>` element (with or without a prefix), as written: what
/// `fill_elements` would replace (`replay` asks whether a recorded `sign` was redacted).
pub fn element_text<'a>(envelope: &'a str, name: &str) -> Option<&'a str> {
    let start = content_start(envelope, name)?;
    let end = start + envelope[start..].find("</")?;
    Some(&envelope[start..end])
}

/// Where the text of the first `<name>` or `<prefix:name>` start tag begins.
fn content_start(s: &str, name: &str) -> Option<usize> {
    let needle = format!("{name}>");
    let mut from = 0;
    while let Some(i) = s[from..].find(&needle) {
        let at = from + i;
        let before = &s[..at];
        let is_start = before.ends_with('<')
            || before.rfind('<').is_some_and(|lt| {
                let prefix = &before[lt + 1..];
                prefix.len() > 1
                    && prefix.ends_with(':')
                    && prefix[..prefix.len() - 1]
                        .chars()
                        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
            });
        if is_start {
            return Some(at + needle.len());
        }
        from = at + needle.len();
    }
    None
}

/// A decoded SOAP request: the operation and its parameters (a JSON object borrowing from the
/// body and the schema).
#[derive(Debug, Clone)]
pub struct SoapCall<'i> {
    pub operation: usize,
    pub params: Val<'i>,
}

/// Decodes an envelope. The version is returned even on failure (once known) so that the
/// fault can be answered in it.
/// Why a request is not a SOAP call this service can take: always the sender's mistake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SoapError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("the body is not a SOAP envelope: {0}")]
    NotSoap(String),
    #[error("unsupported SOAP envelope namespace '{0}'")]
    VersionMismatch(String),
    #[error("header '{0}' is marked mustUnderstand but is not understood")]
    MustUnderstand(String),
    #[error("unknown operation '{name}' (namespace '{namespace}'); this endpoint serves: {known}")]
    UnknownOperation {
        name: String,
        namespace: String,
        known: String,
    },
    #[error(
        "SOAPAction '{action}' names the operation '{named}', but the body calls '{operation}'"
    )]
    ActionMismatch {
        action: String,
        named: String,
        operation: String,
    },
}

impl SoapError {
    /// Stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            SoapError::Read(r) => r.code(),
            SoapError::NotSoap(_) => "NOT_SOAP",
            SoapError::VersionMismatch(_) => "VERSION_MISMATCH",
            SoapError::MustUnderstand(_) => "MUST_UNDERSTAND",
            SoapError::UnknownOperation { .. } => "UNKNOWN_OPERATION",
            SoapError::ActionMismatch { .. } => "SOAPACTION_MISMATCH",
        }
    }
}

/// How strictly an envelope is read.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    pub max_depth: usize,
    /// Refuse `xsi:nil` on optional elements that are not nillable (see
    /// [`XmlReader::strict_nil`]).
    pub strict_nil: bool,
    /// Read runs of plainly written list items straight from the input (the default). Off,
    /// every item is read through quick-xml's events; the result is the same either way,
    /// which tests and the `soap_envelope` fuzz target check.
    pub scan_lists: bool,
}

impl ReadOptions {
    /// Nesting up to `max_depth`, nil on optional elements taken as absent.
    pub fn new(max_depth: usize) -> Self {
        ReadOptions {
            max_depth,
            strict_nil: false,
            scan_lists: true,
        }
    }
}

pub fn decode<'i>(
    desc: &'i ServiceDescription,
    body: &'i str,
    action: Option<&str>,
    read: ReadOptions,
    hint: SoapVersion,
) -> (SoapVersion, Result<SoapCall<'i>, SoapError>) {
    let mut r = XmlReader::new(body, read.max_depth)
        .strict_nil(read.strict_nil)
        .scan_lists(read.scan_lists);
    let mut version = hint;
    let res = decode_inner(desc, &mut r, action, &mut version);
    (version, res)
}

fn expect_start<'i>(
    r: &mut XmlReader<'i>,
    what: &str,
) -> Result<Option<quick_xml::events::BytesStart<'i>>, SoapError> {
    loop {
        match r.next_node()? {
            Node::Start(s) => return Ok(Some(s)),
            Node::Text(t) if t.trim().is_empty() => continue,
            Node::Text(t) => {
                return Err(SoapError::NotSoap(format!(
                    "unexpected text '{}' where {what} was expected",
                    t.trim().chars().take(40).collect::<String>()
                )));
            }
            Node::End | Node::Eof => return Ok(None),
        }
    }
}

fn decode_inner<'i>(
    desc: &'i ServiceDescription,
    r: &mut XmlReader<'i>,
    action: Option<&str>,
    version: &mut SoapVersion,
) -> Result<SoapCall<'i>, SoapError> {
    let env = expect_start(r, "the Envelope")?
        .ok_or_else(|| SoapError::NotSoap("the body is empty".into()))?;
    if env.local_name().as_ref() != b"Envelope" {
        return Err(SoapError::NotSoap(format!(
            "the root element is '{}', expected a SOAP Envelope",
            xml::local_name(&env)
        )));
    }
    let env_ns = match r.namespace_of(&env)? {
        SOAP11_NS => SOAP11_NS,
        SOAP12_NS => SOAP12_NS,
        other => return Err(SoapError::VersionMismatch(other.to_string())),
    };
    *version = if env_ns == SOAP11_NS {
        SoapVersion::V11
    } else {
        SoapVersion::V12
    };
    let mut call = None;
    while let Some(s) = expect_start(r, "Header or Body")? {
        let local = s.local_name();
        if r.namespace_of(&s)? != env_ns {
            return Err(SoapError::NotSoap(format!(
                "unexpected element '{}' in the Envelope",
                xml::local_name(&s)
            )));
        }
        match local.as_ref() {
            b"Header" if call.is_none() => {
                while let Some(h) = expect_start(r, "a header block")? {
                    let must = r.attribute(&h, env_ns, "mustUnderstand")?;
                    // Blocks aimed at another node (1.1 actor, 1.2 role) are not ours to refuse.
                    let target = match *version {
                        SoapVersion::V11 => r.attribute(&h, env_ns, "actor")?,
                        SoapVersion::V12 => r.attribute(&h, env_ns, "role")?,
                    };
                    let ours = match target.as_deref().map(str::trim) {
                        None | Some("") => true,
                        Some(t) => {
                            t == "http://schemas.xmlsoap.org/soap/actor/next"
                                || t == "http://www.w3.org/2003/05/soap-envelope/role/next"
                                || t == "http://www.w3.org/2003/05/soap-envelope/role/ultimateReceiver"
                        }
                    };
                    if ours && matches!(must.as_deref().map(str::trim), Some("1" | "true")) {
                        return Err(SoapError::MustUnderstand(xml::local_name(&h)));
                    }
                    r.skip_element()?;
                }
            }
            b"Body" if call.is_none() => call = Some(decode_body(desc, r, action)?),
            _ => {
                return Err(SoapError::NotSoap(format!(
                    "unexpected element '{}' in the Envelope",
                    xml::local_name(&s)
                )));
            }
        }
    }
    // The Envelope has ended; nothing but whitespace and comments may follow.
    loop {
        match r.next_node()? {
            Node::Eof => break,
            Node::Text(t) if t.trim().is_empty() => {}
            _ => {
                return Err(SoapError::Read(ReadError::MalformedXml(
                    "content after the end of the Envelope".into(),
                )));
            }
        }
    }
    call.ok_or_else(|| SoapError::NotSoap("the Envelope has no Body".into()))
}

fn decode_body<'i>(
    desc: &'i ServiceDescription,
    r: &mut XmlReader<'i>,
    action: Option<&str>,
) -> Result<SoapCall<'i>, SoapError> {
    let s = expect_start(r, "the operation element")?.ok_or_else(|| {
        SoapError::NotSoap("the Body is empty: it must hold one operation element".into())
    })?;
    let ns = r.namespace_of(&s)?;
    let local = s.local_name();
    let Some(idx) = desc.operations.iter().position(|o| {
        o.input.name.as_bytes() == local.as_ref()
            && o.input.namespace.as_deref().unwrap_or("") == ns
    }) else {
        let known: Vec<&str> = desc.operations.iter().map(|o| o.name.as_str()).collect();
        return Err(SoapError::UnknownOperation {
            name: xml::local_name(&s),
            namespace: ns.to_string(),
            known: known.join(", "),
        });
    };
    let op = &desc.operations[idx];
    if let Some(a) = action.filter(|a| !a.is_empty())
        && !op.soap_actions.iter().any(|x| x == a)
        && let Some(other) = desc
            .operations
            .iter()
            .find(|o| o.soap_actions.iter().any(|x| x == a))
    {
        return Err(SoapError::ActionMismatch {
            action: a.to_string(),
            named: other.name.clone(),
            operation: op.name.clone(),
        });
    }
    let mut path = op.input.name.clone();
    let params = match desc.schema.get(op.input.ty) {
        TypeDef::Complex(ct) => Val::Obj(xml::decode_complex(r, &desc.schema, ct, &mut path)?),
        TypeDef::Simple(_) => {
            let v = xml::decode_value(r, &desc.schema, &op.input, &s, &mut path)?;
            Val::Obj(vec![(op.input.name.as_str(), v)])
        }
    };
    if expect_start(r, "the end of the Body")?.is_some() {
        return Err(SoapError::NotSoap(
            "the Body must hold exactly one operation element".into(),
        ));
    }
    Ok(SoapCall {
        operation: idx,
        params,
    })
}

/// Writes a response envelope whose body is the operation's output element holding `value`.
/// `answer_bytes`, the size of the JSON the value was read from (0 when not known), sizes the
/// text at once, instead of by doubling (which can leave twice the envelope allocated).
pub fn encode_response<'t, T: Tree<'t>>(
    desc: &ServiceDescription,
    operation: usize,
    version: SoapVersion,
    env_prefix: &str,
    body_prefix: &str,
    value: T,
    answer_bytes: usize,
) -> Result<String, xml::ShapeError> {
    // An element's name is written twice where JSON has its key once: room for twice the JSON.
    let out = String::with_capacity(1024 + 2 * answer_bytes);
    let prefixes = (env_prefix, body_prefix);
    write_envelope(desc, operation, version, prefixes, out, value, None)
}

/// [`encode_response`] for an answer sent while it is written: whenever the text has reached
/// `at` bytes (between the items of a list), `flush` takes it away. What is returned is the
/// rest; on an error, what was flushed is not a complete envelope.
pub fn encode_response_flushing<'t, T: Tree<'t>>(
    desc: &ServiceDescription,
    operation: usize,
    version: SoapVersion,
    prefixes: (&str, &str),
    value: T,
    flush: &mut dyn FnMut(&mut String),
    at: usize,
) -> Result<String, xml::ShapeError> {
    let out = String::with_capacity(at + at / 8);
    write_envelope(
        desc,
        operation,
        version,
        prefixes,
        out,
        value,
        Some((flush, at)),
    )
}

fn write_envelope<'t, 'f, T: Tree<'t>>(
    desc: &'f ServiceDescription,
    operation: usize,
    version: SoapVersion,
    (env_prefix, body_prefix): (&str, &'f str),
    mut out: String,
    value: T,
    flush: Option<(&'f mut xml::Flush<'f>, usize)>,
) -> Result<String, xml::ShapeError> {
    let decl = &desc.operations[operation].output;
    let ns = decl.namespace.as_deref().unwrap_or("");
    envelope_open(&mut out, version, env_prefix);
    let mut w = XmlWriter::new(&desc.schema, ns, body_prefix, out);
    if let Some((flush, at)) = flush {
        w = w.flushing(flush, at);
    }
    w.element(decl, Some(value), &mut String::new())?;
    let mut out = w.out;
    envelope_close(&mut out, env_prefix);
    Ok(out)
}

fn envelope_open(out: &mut String, version: SoapVersion, p: &str) {
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    out.push('<');
    out.push_str(p);
    out.push_str(":Envelope xmlns:");
    out.push_str(p);
    out.push_str("=\"");
    out.push_str(version.namespace());
    out.push_str("\" xmlns:xsi=\"");
    out.push_str(xml::XSI_NS);
    out.push_str("\"><");
    out.push_str(p);
    out.push_str(":Header/><");
    out.push_str(p);
    out.push_str(":Body>");
}

fn envelope_close(out: &mut String, p: &str) {
    out.push_str("</");
    out.push_str(p);
    out.push_str(":Body></");
    out.push_str(p);
    out.push_str(":Envelope>");
}

/// What kind of fault: the code a client branches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    VersionMismatch,
    MustUnderstand,
    /// The sender's mistake (`Client` in SOAP 1.1).
    Sender,
    /// The receiver's trouble (`Server` in SOAP 1.1).
    Receiver,
}

/// Everything a fault says, decided by the SOAP door.
#[derive(Debug, Clone, Copy)]
pub struct Fault<'a> {
    pub kind: FaultKind,
    /// The bridge's stable code (`sb:code`, and the SOAP 1.2 subcode).
    pub code: &'a str,
    /// Who is at fault: `caller`, `backend` or `bridge`.
    pub party: &'a str,
    pub message: &'a str,
    pub backend_status: Option<u16>,
    pub backend_code: Option<&'a str>,
    pub fields: &'a [FieldError],
}

/// Writes a SOAP fault in the caller's version. The detail carries the stable error code, who
/// is at fault, and for backend failures the backend's status and field errors.
pub fn encode_fault(version: SoapVersion, env_prefix: &str, f: &Fault<'_>) -> String {
    let p = env_prefix;
    let code = match (version, f.kind) {
        (_, FaultKind::VersionMismatch) => "VersionMismatch",
        (_, FaultKind::MustUnderstand) => "MustUnderstand",
        (SoapVersion::V11, FaultKind::Sender) => "Client",
        (SoapVersion::V11, FaultKind::Receiver) => "Server",
        (SoapVersion::V12, FaultKind::Sender) => "Sender",
        (SoapVersion::V12, FaultKind::Receiver) => "Receiver",
    };
    let mut out = String::with_capacity(768);
    envelope_open(&mut out, version, p);
    out.push_str(&format!("<{p}:Fault xmlns:sb=\"{FAULT_NS}\">"));
    match version {
        SoapVersion::V11 => {
            out.push_str(&format!(
                "<faultcode>{p}:{code}</faultcode><faultstring xml:lang=\"en\">"
            ));
            escape_into(&mut out, f.message);
            out.push_str("</faultstring><detail>");
            detail(&mut out, f);
            out.push_str("</detail>");
        }
        SoapVersion::V12 => {
            out.push_str(&format!(
                "<{p}:Code><{p}:Value>{p}:{code}</{p}:Value><{p}:Subcode><{p}:Value>sb:{}</{p}:Value></{p}:Subcode></{p}:Code><{p}:Reason><{p}:Text xml:lang=\"en\">",
                f.code
            ));
            escape_into(&mut out, f.message);
            out.push_str(&format!("</{p}:Text></{p}:Reason><{p}:Detail>"));
            detail(&mut out, f);
            out.push_str(&format!("</{p}:Detail>"));
        }
    }
    out.push_str(&format!("</{p}:Fault>"));
    envelope_close(&mut out, p);
    out
}

fn detail(out: &mut String, f: &Fault<'_>) {
    out.push_str(&format!(
        "<sb:error><sb:code>{}</sb:code><sb:party>{}</sb:party>",
        f.code, f.party
    ));
    if let Some(s) = f.backend_status {
        out.push_str(&format!("<sb:backendStatus>{s}</sb:backendStatus>"));
    }
    if let Some(c) = f.backend_code {
        out.push_str("<sb:backendCode>");
        escape_into(out, c);
        out.push_str("</sb:backendCode>");
    }
    if !f.fields.is_empty() {
        out.push_str("<sb:fieldErrors>");
        for fe in f.fields {
            out.push_str("<sb:fieldError><sb:field>");
            escape_into(out, &fe.field);
            out.push_str("</sb:field><sb:code>");
            escape_into(out, &fe.code);
            out.push_str("</sb:code><sb:message>");
            escape_into(out, &fe.message);
            out.push_str("</sb:message></sb:fieldError>");
        }
        out.push_str("</sb:fieldErrors>");
    }
    out.push_str("</sb:error>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_follows_the_content_type_in_any_case() {
        for (ct, v) in [
            (
                Some("application/soap+xml; charset=utf-8"),
                SoapVersion::V12,
            ),
            (
                Some("Application/SOAP+XML;action=\"urn:x\""),
                SoapVersion::V12,
            ),
            (
                Some("multipart/related; type=\"application/soap+xml\""),
                SoapVersion::V12,
            ),
            (Some("text/xml; charset=utf-8"), SoapVersion::V11),
            (Some("application/soap"), SoapVersion::V11),
            (None, SoapVersion::V11),
        ] {
            assert_eq!(SoapVersion::from_content_type(ct), v, "{ct:?}");
        }
    }

    #[test]
    fn fill_elements_handles_prefixes_and_escapes() {
        let env = "<a><p:apiKey>old</p:apiKey><sign/><sign>x</sign><time>1</time></a>";
        let out = fill_elements(env, &[("apiKey", "k&1"), ("sign", "s"), ("time", "2")]).unwrap();
        assert_eq!(
            out,
            "<a><p:apiKey>k&amp;1</p:apiKey><sign/><sign>s</sign><time>2</time></a>"
        );
        assert!(
            fill_elements("<a/>", &[("apiKey", "k")])
                .unwrap_err()
                .contains("no <apiKey>")
        );
    }
}
