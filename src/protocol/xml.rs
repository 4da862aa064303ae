//! Schema-driven conversion between XML elements and JSON values.
//!
//! Decoding streams quick-xml events straight into `serde_json` values, with no intermediate
//! tree; the schema decides every JSON shape (arrays for repeated elements, numbers, booleans,
//! exact decimals, nulls). Encoding walks the schema's sequence, so element order, value
//! formats and nils follow the WSDL whatever order the JSON keys come in.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::str::FromStr;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use serde_json::Number;

use crate::call::{Form, Tree, Val};
use crate::schema::{ComplexType, ElementDecl, Schema, SimpleKind, SimpleType, TypeDef};

pub const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// Why an XML message (of any of the XML wire formats) could not be read, or does not fit its
/// schema: always the sender's mistake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("request body encoding: {0}")]
    BadEncoding(String),
    #[error("malformed XML: {0}")]
    MalformedXml(String),
    #[error("DTDs and entity declarations are not accepted")]
    DtdForbidden,
    #[error("XML nesting is deeper than the limit of {limit} levels")]
    TooDeep { limit: usize },
    #[error("unexpected element '{element}' in '{parent}'")]
    UnexpectedElement { element: String, parent: String },
    #[error("element '{path}' appears more than once but allows only one occurrence")]
    RepeatedElement { path: String },
    #[error("missing required element '{path}'")]
    MissingElement { path: String },
    #[error("invalid value '{value}' for '{path}': expected {expected}")]
    InvalidValue {
        path: String,
        value: String,
        expected: String,
    },
    #[error("'{path}' is nil but the element is not nillable")]
    NotNillable { path: String },
}

impl ReadError {
    /// The path an error names, if it names one (an unexpected element's: its parent's).
    fn path_mut(&mut self) -> Option<&mut String> {
        match self {
            ReadError::InvalidValue { path, .. }
            | ReadError::MissingElement { path }
            | ReadError::RepeatedElement { path }
            | ReadError::NotNillable { path }
            | ReadError::UnexpectedElement { parent: path, .. } => Some(path),
            _ => None,
        }
    }

    /// The error of a list's item `index`, for an error found with the list's path.
    fn at_item(mut self, index: u32) -> ReadError {
        if let Some(path) = self.path_mut() {
            let _ = write!(path, "[{index}]");
        }
        self
    }

    /// The error found inside the element `name`, whose path names that element's parent at its
    /// first `at` bytes.
    pub(crate) fn with_segment(mut self, at: usize, name: &str) -> ReadError {
        if let Some(path) = self.path_mut()
            && path.is_char_boundary(at)
        {
            path.insert_str(at, &format!("/{name}"));
        }
        self
    }

    /// The error of a list's item `index`, for an error found inside the item, whose path
    /// names the list at its first `at` bytes.
    fn item_at(mut self, at: usize, index: u32) -> ReadError {
        if let Some(path) = self.path_mut()
            && path.is_char_boundary(at)
        {
            path.insert_str(at, &format!("[{index}]"));
        }
        self
    }

    /// Stable, machine-readable code (in fault details, documented in README).
    pub fn code(&self) -> &'static str {
        match self {
            ReadError::BadEncoding(_) => "BAD_ENCODING",
            ReadError::MalformedXml(_) => "MALFORMED_XML",
            ReadError::DtdForbidden => "DTD_FORBIDDEN",
            ReadError::TooDeep { .. } => "TOO_DEEP",
            ReadError::UnexpectedElement { .. } => "UNEXPECTED_ELEMENT",
            ReadError::RepeatedElement { .. } => "REPEATED_ELEMENT",
            ReadError::MissingElement { .. } => "MISSING_ELEMENT",
            ReadError::InvalidValue { .. } => "INVALID_VALUE",
            ReadError::NotNillable { .. } => "NOT_NILLABLE",
        }
    }

    /// Whether the message itself is broken (not well-formed, undecodable, too deep), as
    /// opposed to well-formed but not what the schema wants.
    pub fn is_malformed(&self) -> bool {
        matches!(
            self,
            ReadError::BadEncoding(_)
                | ReadError::MalformedXml(_)
                | ReadError::DtdForbidden
                | ReadError::TooDeep { .. }
        )
    }
}

/// Attributes looked at on one element; more is refused (scanning them must stay cheap).
const MAX_ATTRIBUTES: usize = 64;

/// Characters XML 1.0 allows.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Control characters that XML 1.0 forbids in text.
fn has_forbidden_control(s: &str) -> bool {
    s.bytes()
        .any(|b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r'))
}

/// A namespace-aware pull reader over a request body, bounded in nesting depth, that refuses
/// DTDs and resolves only the predefined and character entity references.
///
/// Namespaces are tracked here rather than by quick-xml's `NsReader`: declarations are only
/// looked for on elements that have attributes, and names are resolved only when asked
/// (envelope, body and operation elements, `xsi:nil`), which keeps the per-element cost of the
/// payload close to the raw event parse.
pub(crate) struct XmlReader<'i> {
    inner: Reader<&'i [u8]>,
    /// Where `inner` starts in the input: it is restarted after a run of list items read by
    /// [`XmlReader::scan_items`].
    base: usize,
    /// The names of the open elements, as written, to match end tags against. The reader
    /// checks this itself: quick-xml's check would not survive a restart.
    open: Vec<&'i [u8]>,
    max_depth: usize,
    /// Whether [`XmlReader::scan_items`] reads plain list items straight from the input (off:
    /// every item goes through quick-xml's events; the result is the same).
    scan: bool,
    /// `xsi:nil` on an optional element that is not nillable is refused, not taken as absent.
    strict_nil: bool,
    /// In-scope declarations: (depth of the declaring element, prefix ("" = default), URI),
    /// borrowed from the input when they can be.
    bindings: Vec<(usize, Cow<'i, str>, Cow<'i, str>)>,
    input: &'i str,
}

const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// What the decoder needs from one event.
pub(crate) enum Node<'i> {
    Start(BytesStart<'i>),
    End,
    Text(Cow<'i, str>),
    Eof,
}

/// quick-xml's reader over (the rest of) a body: empty elements come as a start and an end,
/// text as it is. End tags are matched against start tags by [`XmlReader`] itself.
fn events(text: &str) -> Reader<&[u8]> {
    let mut inner = Reader::from_str(text);
    let cfg = inner.config_mut();
    cfg.expand_empty_elements = true;
    cfg.check_end_names = false;
    cfg.allow_unmatched_ends = true;
    cfg.trim_text(false);
    inner
}

impl<'i> XmlReader<'i> {
    pub(crate) fn new(text: &'i str, max_depth: usize) -> Self {
        XmlReader {
            inner: events(text),
            base: 0,
            open: Vec::new(),
            max_depth,
            scan: true,
            strict_nil: false,
            bindings: Vec::new(),
            input: text,
        }
    }

    /// Refuse `xsi:nil` on optional elements that are not nillable (by default such an
    /// element is taken as absent, as old clients such as SOAP::Lite send it for values they
    /// leave out).
    pub(crate) fn strict_nil(mut self, strict: bool) -> Self {
        self.strict_nil = strict;
        self
    }

    /// Read every list item through quick-xml's events instead of scanning runs of plain
    /// items (to compare the two in tests and fuzzing).
    pub(crate) fn scan_lists(mut self, scan: bool) -> Self {
        self.scan = scan;
        self
    }

    /// How far into the input the reader is, in bytes.
    fn position(&self) -> usize {
        self.base + self.inner.buffer_position() as usize
    }

    /// The depth of the element being read (0 outside the root).
    fn depth(&self) -> usize {
        self.open.len()
    }

    fn malformed(&self, e: impl std::fmt::Display) -> ReadError {
        ReadError::MalformedXml(format!("{e} (at byte {})", self.position()))
    }

    /// Next element start, end or piece of text; comments, processing instructions and the
    /// XML declaration are skipped.
    pub(crate) fn next_node(&mut self) -> Result<Node<'i>, ReadError> {
        loop {
            let ev = self.inner.read_event().map_err(|e| self.malformed(e))?;
            return Ok(match ev {
                Event::Start(s) => {
                    if self.depth() >= self.max_depth {
                        return Err(ReadError::TooDeep {
                            limit: self.max_depth,
                        });
                    }
                    // The events of a reader over the input borrow from it.
                    let Some(name) = self.in_input(s.name().into_inner()) else {
                        return Err(self.malformed("an element name outside the document"));
                    };
                    self.open.push(name.as_bytes());
                    if !s.attributes_raw().iter().all(u8::is_ascii_whitespace) {
                        self.declare(&s)?;
                    }
                    Node::Start(s)
                }
                Event::End(e) => {
                    let found = e.name().into_inner();
                    match self.open.last() {
                        Some(name) if *name == found => {}
                        Some(name) => {
                            return Err(self.malformed(format!(
                                "ill-formed document: expected `</{}>`, but `</{}>` was found",
                                String::from_utf8_lossy(name),
                                String::from_utf8_lossy(found)
                            )));
                        }
                        None => {
                            return Err(self.malformed(format!(
                                "ill-formed document: close tag `</{}>` does not match any open tag",
                                String::from_utf8_lossy(found)
                            )));
                        }
                    }
                    while self.bindings.last().is_some_and(|b| b.0 == self.depth()) {
                        self.bindings.pop();
                    }
                    self.open.pop();
                    Node::End
                }
                Event::Text(t) => {
                    // The reader reads a `&str`, so the text is UTF-8 and lies in the input:
                    // it is borrowed as it is, and only text with a carriage return goes
                    // through quick-xml's decoding and line-end normalisation.
                    let text = match self.in_input(&t) {
                        Some(s) if !s.contains('\r') => Cow::Borrowed(s),
                        _ => t.xml10_content().map_err(|e| self.malformed(e))?,
                    };
                    if has_forbidden_control(&text) {
                        return Err(self.malformed("a control character that XML 1.0 forbids"));
                    }
                    Node::Text(text)
                }
                Event::CData(c) => {
                    let text = c.xml10_content().map_err(|e| self.malformed(e))?;
                    if has_forbidden_control(&text) {
                        return Err(self.malformed("a control character that XML 1.0 forbids"));
                    }
                    Node::Text(text)
                }
                Event::GeneralRef(r) => {
                    if r.is_char_ref() {
                        match r.resolve_char_ref().map_err(|e| self.malformed(e))? {
                            Some(c) if is_xml_char(c) => Node::Text(Cow::Owned(c.to_string())),
                            _ => {
                                return Err(self.malformed(
                                    "a character reference to a character XML 1.0 forbids",
                                ));
                            }
                        }
                    } else {
                        let name = r.decode().map_err(|e| self.malformed(e))?;
                        match quick_xml::escape::resolve_predefined_entity(&name) {
                            Some(s) => Node::Text(Cow::Borrowed(s)),
                            None => {
                                return Err(self.malformed(format!(
                                    "undefined entity '&{name};' (only the five predefined XML entities are accepted)"
                                )));
                            }
                        }
                    }
                }
                Event::DocType(_) => return Err(ReadError::DtdForbidden),
                Event::Eof => {
                    if self.depth() != 0 {
                        return Err(self.malformed("unexpected end of document"));
                    }
                    Node::Eof
                }
                Event::Empty(_) => unreachable!("expand_empty_elements is on"),
                Event::Comment(_) | Event::PI(_) | Event::Decl(_) => continue,
            });
        }
    }

    /// Records the `xmlns` / `xmlns:p` declarations of an element just started.
    fn declare(&mut self, e: &BytesStart<'_>) -> Result<(), ReadError> {
        for (i, a) in e.attributes().with_checks(false).enumerate() {
            if i >= MAX_ATTRIBUTES {
                return Err(self.malformed(format!(
                    "more than {MAX_ATTRIBUTES} attributes on one element"
                )));
            }
            let a = a.map_err(|err| self.malformed(err))?;
            let key = a.key.as_ref();
            let prefix = if key == b"xmlns" {
                &b""[..]
            } else if let Some(p) = key.strip_prefix(b"xmlns:") {
                p
            } else {
                continue;
            };
            let uri = a.unescape_value().map_err(|err| self.malformed(err))?;
            if !prefix.is_empty() && uri.is_empty() {
                return Err(self.malformed("a namespace prefix cannot be bound to an empty URI"));
            }
            let prefix = match self.in_input(prefix) {
                Some(p) => Cow::Borrowed(p),
                None => Cow::Owned(String::from_utf8_lossy(prefix).into_owned()),
            };
            let uri = match &uri {
                Cow::Borrowed(u) => self.in_input(u.as_bytes()).map(Cow::Borrowed),
                Cow::Owned(_) => None,
            }
            .unwrap_or_else(|| Cow::Owned(uri.into_owned()));
            self.bindings.push((self.depth(), prefix, uri));
        }
        Ok(())
    }

    /// `part` as a slice of the input text, when it lies in it (events of a reader over a
    /// `&str` borrow from it), so that it can outlive the event without a copy.
    fn in_input(&self, part: &[u8]) -> Option<&'i str> {
        let base = self.input.as_ptr() as usize;
        let start = (part.as_ptr() as usize).checked_sub(base)?;
        self.input.get(start..start + part.len())
    }

    /// The namespace bound to `prefix` (None: the default namespace) at the current element.
    fn resolve(&self, prefix: Option<&[u8]>) -> Result<&str, ReadError> {
        let p = prefix.unwrap_or(b"");
        if p == b"xml" {
            return Ok(XML_NS);
        }
        match self.bindings.iter().rev().find(|b| b.1.as_bytes() == p) {
            Some(b) => Ok(&b.2),
            None if p.is_empty() => Ok(""),
            None => Err(self.malformed(format!(
                "namespace prefix '{}' is not declared",
                String::from_utf8_lossy(p)
            ))),
        }
    }

    /// Namespace URI of the element just started ("" when it has none).
    pub(crate) fn namespace_of(&self, e: &BytesStart<'_>) -> Result<&str, ReadError> {
        self.resolve(e.name().prefix().map(|p| p.into_inner()))
    }

    /// Value of the attribute `{ns}local`, if present.
    pub(crate) fn attribute(
        &self,
        e: &BytesStart<'_>,
        ns: &str,
        local: &str,
    ) -> Result<Option<String>, ReadError> {
        for (i, a) in e.attributes().with_checks(false).enumerate() {
            if i >= MAX_ATTRIBUTES {
                return Err(self.malformed(format!(
                    "more than {MAX_ATTRIBUTES} attributes on one element"
                )));
            }
            let a = a.map_err(|err| self.malformed(err))?;
            if a.key.local_name().as_ref() != local.as_bytes() {
                continue;
            }
            // Unprefixed attributes are in no namespace (the default namespace does not apply).
            let matches = match a.key.prefix() {
                None => ns.is_empty(),
                Some(p) if p.as_ref() == b"xmlns" => false,
                Some(p) => self.resolve(Some(p.into_inner())).is_ok_and(|u| u == ns),
            };
            if matches {
                let v = a.unescape_value().map_err(|err| self.malformed(err))?;
                return Ok(Some(v.into_owned()));
            }
        }
        Ok(None)
    }

    fn is_nil(&self, e: &BytesStart<'_>) -> Result<bool, ReadError> {
        if e.attributes_raw().iter().all(u8::is_ascii_whitespace) {
            return Ok(false);
        }
        Ok(matches!(
            self.attribute(e, XSI_NS, "nil")?.as_deref().map(str::trim),
            Some("true" | "1")
        ))
    }

    /// Skips the rest of the current element (its start has been read).
    pub(crate) fn skip_element(&mut self) -> Result<(), ReadError> {
        let target = self.depth() - 1;
        loop {
            if let Node::Eof = self.next_node()? {
                return Err(self.malformed("unexpected end of document"));
            }
            if self.depth() == target {
                return Ok(());
            }
        }
    }

    /// Reads the list items that follow one just read, for as long as each is written plainly:
    /// `<name>text</name>` with the same name as written, no attributes, text without
    /// references, CDATA, comments or carriage returns, and only white space between items.
    /// They are read straight from the input instead of as three events each, and `item` is
    /// called with each one's text and where it ends. Reading resumes with events at the first
    /// thing that is not such an item, so anything else (attributes such as `xsi:nil`,
    /// entities, a different element, the parent's end) is read, checked and reported as
    /// before.
    pub(crate) fn scan_items(
        &mut self,
        name: &[u8],
        mut item: impl FnMut(&'i str, usize) -> Result<(), ReadError>,
    ) -> Result<(), ReadError> {
        self.scan_with(name, plain_text, |text, end| item(text, end).map(|()| true))
    }

    /// As [`XmlReader::scan_items`], for items of an integer type: each item's digits are read
    /// as they are scanned, and `item` is given the value and where its item ends. The scan
    /// stops in front of the first item that is not plain digits (at most 18, with an optional
    /// sign, nothing around them) or that `item` does not take (`Ok(false)`), and leaves it to
    /// `scan_items` or the events, which read it (or say what is wrong with it) as before.
    pub(crate) fn scan_integers(
        &mut self,
        name: &[u8],
        item: impl FnMut(i64, usize) -> Result<bool, ReadError>,
    ) -> Result<(), ReadError> {
        self.scan_with(name, plain_digits, item)
    }

    /// As [`XmlReader::scan_integers`], for items written as an integer element inside a
    /// wrapper element: an XML-RPC array's `<value><int>7</int></value>`, `inner` one of
    /// `inners`. Each item's value goes to `item` (which takes it or not); the scan stops in
    /// front of the first item that is not written so plainly, and leaves it to the events.
    pub(crate) fn scan_wrapped_integers(
        &mut self,
        outer: &[u8],
        inners: &[&[u8]],
        mut item: impl FnMut(i64) -> bool,
    ) {
        let read = |input: &'i str, at: usize| {
            let bytes = input.as_bytes();
            let inner_at = open_tag(bytes, at, outer)?;
            let (inner, text_start) = inners
                .iter()
                .find_map(|n| open_tag(bytes, inner_at, n).map(|e| (*n, e)))?;
            let (value, text_end) = plain_digits(input, text_start)?;
            let end = close_tag(bytes, text_end, inner).and_then(|e| close_tag(bytes, e, outer))?;
            Some((value, end))
        };
        // Two levels below the current element, as the events would allow them.
        let _ = self.scan_runs(2, read, |value, _| Ok(item(value)));
    }

    /// The scan of plain list items: `text` reads an item's content from where it starts (its
    /// value and where it ends, or `None` when it is not plain); `item` takes it or not.
    fn scan_with<T>(
        &mut self,
        name: &[u8],
        text: impl Fn(&'i str, usize) -> Option<(T, usize)>,
        item: impl FnMut(T, usize) -> Result<bool, ReadError>,
    ) -> Result<(), ReadError> {
        let read = |input: &'i str, at: usize| {
            let bytes = input.as_bytes();
            let text_start = open_tag(bytes, at, name)?;
            let (value, text_end) = text(input, text_start)?;
            Some((value, close_tag(bytes, text_end, name)?))
        };
        self.scan_runs(1, read, item)
    }

    /// Reads items from the input as long as `read` finds one where the next begins (after
    /// white space; its value and where it ends) and `item` takes it, then restarts the events
    /// after the last. Items nest `levels` elements deep; nothing is scanned where the events
    /// would refuse that depth.
    fn scan_runs<T>(
        &mut self,
        levels: usize,
        read: impl Fn(&'i str, usize) -> Option<(T, usize)>,
        mut item: impl FnMut(T, usize) -> Result<bool, ReadError>,
    ) -> Result<(), ReadError> {
        if !self.scan || self.depth() + levels > self.max_depth {
            return Ok(());
        }
        let input = self.input;
        let bytes = input.as_bytes();
        let start = self.position();
        let mut at = start;
        loop {
            let mut p = at;
            while matches!(bytes.get(p), Some(b' ' | b'\t' | b'\n' | b'\r')) {
                p += 1;
            }
            let Some((value, end)) = read(input, p) else {
                break;
            };
            // quick-xml drops a byte order mark at the start of what it reads, so it is not
            // restarted in front of one (U+FEFF there is text, which the events refuse).
            if bytes.get(end) == Some(&0xEF) && bytes[end..].starts_with("\u{FEFF}".as_bytes()) {
                break;
            }
            if !item(value, end)? {
                break;
            }
            at = end;
        }
        if at > start {
            self.inner = events(&input[at..]);
            self.base = at;
        }
        Ok(())
    }

    /// Reads the text content of a simple element up to its end tag (borrowed from the input
    /// when it is one piece of text without references).
    pub(crate) fn read_text(&mut self, path: &str) -> Result<Cow<'i, str>, ReadError> {
        let mut text: Cow<'i, str> = Cow::Borrowed("");
        loop {
            match self.next_node()? {
                Node::Text(t) => {
                    if text.is_empty() {
                        text = t;
                    } else {
                        text.to_mut().push_str(&t);
                    }
                }
                Node::End => return Ok(text),
                Node::Start(s) => {
                    return Err(ReadError::UnexpectedElement {
                        element: local_name(&s),
                        parent: path.to_string(),
                    });
                }
                Node::Eof => return Err(self.malformed("unexpected end of document")),
            }
        }
    }
}

/// The body as text. UTF-8 unless a UTF-16 byte order mark, the Content-Type `charset` or the
/// XML declaration's `encoding` says otherwise (legacy Turkish clients send ISO-8859-9 or
/// windows-1254); other encodings are converted to UTF-8 with encoding_rs, and malformed
/// sequences are refused rather than replaced.
pub fn decode_body<'b>(
    body: &'b [u8],
    content_type: Option<&str>,
) -> Result<Cow<'b, str>, ReadError> {
    // Borrowed from the header or the declaration: nothing is copied to find the encoding.
    let label = if body.starts_with(&[0xFF, 0xFE]) {
        Some("utf-16le")
    } else if body.starts_with(&[0xFE, 0xFF]) {
        Some("utf-16be")
    } else {
        content_type
            .and_then(|ct| {
                ct.split(';').skip(1).find_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    k.trim()
                        .eq_ignore_ascii_case("charset")
                        .then(|| v.trim().trim_matches('"'))
                })
            })
            .or_else(|| declared_encoding(body))
    };
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let encoding = match label {
        None => encoding_rs::UTF_8,
        // What nearly every client sends, known without the table of labels.
        Some(l) if l.eq_ignore_ascii_case("utf-8") => encoding_rs::UTF_8,
        Some(l) => encoding_rs::Encoding::for_label(l.as_bytes())
            .ok_or_else(|| ReadError::BadEncoding(format!("unknown character encoding '{l}'")))?,
    };
    if encoding == encoding_rs::UTF_8 {
        return std::str::from_utf8(body)
            .map(Cow::Borrowed)
            .map_err(|e| ReadError::BadEncoding(format!("the body is not valid UTF-8: {e}")));
    }
    let body = body
        .strip_prefix(&[0xFF, 0xFE])
        .or_else(|| body.strip_prefix(&[0xFE, 0xFF]))
        .unwrap_or(body);
    encoding
        .decode_without_bom_handling_and_without_replacement(body)
        .map(|t| Cow::Owned(t.into_owned()))
        .ok_or_else(|| ReadError::BadEncoding(format!("the body is not valid {}", encoding.name())))
}

/// The `encoding` of an XML declaration at the start of an ASCII-compatible body.
fn declared_encoding(body: &[u8]) -> Option<&str> {
    let head = &body[..body.len().min(200)];
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    if !head.starts_with(b"<?xml") {
        return None;
    }
    let end = head.windows(2).position(|w| w == b"?>")?;
    let decl = std::str::from_utf8(&head[..end]).ok()?;
    let rest = &decl[decl.find("encoding")? + "encoding".len()..];
    let rest = rest.trim_start().strip_prefix('=')?.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = &rest[1..];
    Some(&value[..value.find(quote)?])
}

pub fn local_name(e: &BytesStart<'_>) -> String {
    String::from_utf8_lossy(e.local_name().as_ref()).into_owned()
}

/// Decodes the content of an element of type `decl.ty` (its start tag has been read).
pub(crate) fn decode_value<'i>(
    r: &mut XmlReader<'i>,
    schema: &'i Schema,
    decl: &ElementDecl,
    start: &BytesStart<'_>,
    path: &mut String,
) -> Result<Val<'i>, ReadError> {
    if r.is_nil(start)? {
        if !decl.nillable {
            return Err(ReadError::NotNillable { path: path.clone() });
        }
        r.skip_element()?;
        return Ok(Val::Null);
    }
    match schema.get(decl.ty) {
        TypeDef::Complex(ct) => Ok(Val::Obj(decode_complex(r, schema, ct, path)?)),
        TypeDef::Simple(st) => {
            let text = r.read_text(path)?;
            simple_to_json(text, st, path)
        }
    }
}

/// The bytes that end a list item's text as [`XmlReader::scan_items`] reads it: `<`, and
/// what it leaves to the event reader (`&`, control characters but tab and line feed: a
/// reference, or a carriage return, which needs normalising).
const ENDS_PLAIN_TEXT: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = b != b'\t' as usize && b != b'\n' as usize;
        b += 1;
    }
    t[b'<' as usize] = true;
    t[b'&' as usize] = true;
    t
};

/// An item's text from `start` up to the next `<`, when nothing in it needs the event reader.
#[inline(always)]
fn plain_text(input: &str, start: usize) -> Option<(&str, usize)> {
    let len = input.as_bytes()[start..]
        .iter()
        .position(|&b| ENDS_PLAIN_TEXT[usize::from(b)])?;
    let end = start + len;
    (input.as_bytes()[end] == b'<').then(|| (&input[start..end], end))
}

/// An integer's digits from `start` up to a `<`: an optional sign and 1 to 18 digits (so that
/// it fits i64), as `str::parse::<i64>` reads them.
#[inline(always)]
fn plain_digits(input: &str, start: usize) -> Option<(i64, usize)> {
    let b = input.as_bytes();
    let (negative, first) = match b.get(start) {
        Some(b'-') => (true, start + 1),
        Some(b'+') => (false, start + 1),
        _ => (false, start),
    };
    let mut at = first;
    let mut n: i64 = 0;
    while let Some(&c) = b.get(at) {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        if at - first == 18 {
            return None;
        }
        n = n * 10 + i64::from(d);
        at += 1;
    }
    (at > first && b.get(at) == Some(&b'<')).then_some((if negative { -n } else { n }, at))
}

/// `<name>` at `at`: where it ends.
#[inline(always)]
fn open_tag(bytes: &[u8], at: usize, name: &[u8]) -> Option<usize> {
    let end = at + name.len() + 2;
    let tag = bytes.get(at..end)?;
    (tag[0] == b'<' && tag[tag.len() - 1] == b'>' && same(&tag[1..tag.len() - 1], name))
        .then_some(end)
}

/// `</name>` at `at`: where it ends.
#[inline(always)]
fn close_tag(bytes: &[u8], at: usize, name: &[u8]) -> Option<usize> {
    let end = at + name.len() + 3;
    let tag = bytes.get(at..end)?;
    (tag[0] == b'<'
        && tag[1] == b'/'
        && tag[tag.len() - 1] == b'>'
        && same(&tag[2..tag.len() - 1], name))
    .then_some(end)
}

/// Two short byte strings are the same (compared in a loop: list items' names are short,
/// and a call to `memcmp` per tag costs more than the comparison).
#[inline(always)]
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// Decodes the children of a complex element into a JSON object, up to its end tag.
pub(crate) fn decode_complex<'i>(
    r: &mut XmlReader<'i>,
    schema: &'i Schema,
    ct: &'i ComplexType,
    path: &mut String,
) -> Result<Vec<(&'i str, Val<'i>)>, ReadError> {
    let mut members: Vec<(&'i str, Val<'i>)> = Vec::with_capacity(ct.children.len());
    // Per child, by its index in the schema's sequence: occurrences, and where its list is.
    // For a list, also where its first item ended in the input (to size it at the second).
    const NONE: u32 = u32::MAX;
    let n = ct.children.len();
    let mut small = [(0u32, NONE, 0usize); 24];
    let mut large = Vec::new();
    let seen: &mut [(u32, u32, usize)] = if n <= small.len() {
        &mut small[..n]
    } else {
        large.resize(n, (0, NONE, 0));
        &mut large
    };
    loop {
        match r.next_node()? {
            Node::Start(s) => {
                let local = s.local_name();
                let Some(idx) = ct
                    .children
                    .iter()
                    .position(|c| c.name.as_bytes() == local.as_ref())
                else {
                    return Err(ReadError::UnexpectedElement {
                        element: local_name(&s),
                        parent: path.clone(),
                    });
                };
                let child = &ct.children[idx];
                let mark = path.len();
                path.push('/');
                path.push_str(&child.name);
                if !child.nillable && child.min_occurs == 0 && !r.strict_nil && r.is_nil(&s)? {
                    // Left out, as the client meant: not counted, not kept.
                    r.skip_element()?;
                    path.truncate(mark);
                    continue;
                }
                seen[idx].0 += 1;
                if child.max_occurs.is_some_and(|m| seen[idx].0 > m) {
                    return Err(ReadError::RepeatedElement { path: path.clone() });
                }
                // An item of a list is named by its place (from 0, as XML-RPC's arrays are), so
                // that a fault says which of a thousand records is wrong: put into the path of
                // the fault only, when there is one.
                let named = path.len();
                let mut v = decode_value(r, schema, child, &s, path);
                if child.is_repeated() {
                    v = v.map_err(|e| e.item_at(named, seen[idx].0 - 1));
                }
                let v = v?;
                if !child.is_repeated() {
                    members.push((&child.name, v));
                } else if seen[idx].1 == NONE {
                    seen[idx].1 = members.len() as u32;
                    seen[idx].2 = r.position();
                    members.push((&child.name, Val::list_of(v)));
                } else {
                    let list = &mut members[seen[idx].1 as usize].1;
                    append(list, v, r.position(), seen[idx].2, r.input.len());
                }
                if child.is_repeated()
                    && let TypeDef::Simple(st) = schema.get(child.ty)
                {
                    // The items that follow, when they are written plainly, without events.
                    let (count, list, first_end) = &mut seen[idx];
                    let list = &mut members[*list as usize].1;
                    let input_len = r.input.len();
                    let name = s.name().into_inner();
                    if let SimpleKind::Integer { min, max } = &st.kind
                        && st.enumeration.is_empty()
                    {
                        // Lists of ids: digits read as they are scanned. An item out of the
                        // type's range is left to the general reading, which says so.
                        r.scan_integers(name, |n, end| {
                            if !(*min..=*max).contains(&i128::from(n)) {
                                return Ok(false);
                            }
                            *count += 1;
                            if child.max_occurs.is_some_and(|m| *count > m) {
                                return Err(ReadError::RepeatedElement { path: path.clone() });
                            }
                            // Straight into the compact list: passing each value through
                            // `append` as a `Val` cost a call to drop it per item (measured).
                            // The list's second item still goes through `append`, which
                            // takes the room for the rest at that item.
                            match list {
                                Val::Ints(ints) if ints.len() != 1 => ints.push(n),
                                _ => append(list, Val::Int(n), end, *first_end, input_len),
                            }
                            Ok(true)
                        })?;
                    }
                    r.scan_items(name, |text, end| {
                        *count += 1;
                        if child.max_occurs.is_some_and(|m| *count > m) {
                            return Err(ReadError::RepeatedElement { path: path.clone() });
                        }
                        let v = simple_to_json(Cow::Borrowed(text), st, path)
                            .map_err(|e| e.at_item(*count - 1))?;
                        append(list, v, end, *first_end, input_len);
                        Ok(())
                    })?;
                }
                path.truncate(mark);
            }
            Node::End => break,
            Node::Text(t) => {
                if !t.trim().is_empty() {
                    return Err(ReadError::InvalidValue {
                        path: path.clone(),
                        value: t.trim().chars().take(40).collect(),
                        expected: "child elements, not text".into(),
                    });
                }
            }
            Node::Eof => return Err(ReadError::MalformedXml("unexpected end of document".into())),
        }
    }
    for (c, (count, list, _)) in ct.children.iter().zip(seen.iter()) {
        // A list sized for more items than came gives the rest back.
        if let Some((_, items)) = members.get_mut(*list as usize) {
            items.shrink_unused();
        }
        if *count < c.min_occurs {
            return Err(ReadError::MissingElement {
                path: format!("{path}/{}", c.name),
            });
        }
        if *count == 0 && c.is_repeated() {
            members.push((&c.name, Val::List(Vec::new())));
        }
    }
    Ok(members)
}

/// Adds an item that ended at `now` to a list whose first item ended at `first_end`: at the
/// second item, the list gets its room for the rest ([`list_estimate`]).
#[inline(always)]
fn append<'i>(list: &mut Val<'i>, v: Val<'i>, now: usize, first_end: usize, input_len: usize) {
    if list.list_len() == Some(1) {
        list.reserve_items(list_estimate(now, first_end, input_len));
    }
    list.push_item(v);
}

/// How many more items (this one included) a list whose second item just ended is likely to
/// have, judged from that item's size (white space included) and what is left of the input.
/// A large list is then allocated once, at about its size, instead of growing by doubling
/// (which holds the old and the new buffer at once, and ends with up to twice the room
/// needed); small lists grow as usual. Items are taken to be at least 16 bytes, so that a
/// short item followed by other content reserves no more than doubling could (a 32-byte
/// `Val` for each 16 bytes left); a list that stays well short of its room is shrunk when
/// its parent element ends.
fn list_estimate(now: usize, first_end: usize, input_len: usize) -> usize {
    let per = now.saturating_sub(first_end).max(16);
    let more = input_len.saturating_sub(now) / per;
    if more < 256 { 0 } else { more + 1 }
}

/// A value's text without the XML white space around it (space, tab, carriage return, line
/// feed), as XSD's `whiteSpace="collapse"` removes it from numbers, booleans and the like:
/// other Unicode spaces (a no-break space) are part of the value. `trim_ascii` also takes form
/// feeds, which XML forbids and the reader has already refused.
fn xml_trim(s: &str) -> &str {
    s.trim_ascii()
}

/// The text without surrounding white space, still borrowed when it was.
fn trimmed(text: Cow<'_, str>) -> Cow<'_, str> {
    match text {
        Cow::Borrowed(s) => Cow::Borrowed(xml_trim(s)),
        Cow::Owned(s) if xml_trim(&s).len() == s.len() => Cow::Owned(s),
        Cow::Owned(s) => Cow::Owned(xml_trim(&s).to_string()),
    }
}

/// Whether `t` is an XSD `date` (`2024-05-03`) or, with `date_only` false, a `dateTime`
/// (`2024-05-03T10:00:00`, with fractions of a second), either with an optional zone (`Z`,
/// `+02:00`, at most 14:00), naming a day and time that exist: a value the backend could not
/// take, and the answer that echoes it could not be written, is the caller's mistake, found
/// before anything is sent. Years outside 0001-9999, leap seconds and `24:00:00` (which XSD
/// allows, and few backends take) are refused.
pub(crate) fn is_xsd_date(t: &str, date_only: bool) -> bool {
    // Digits where the form has nines, its separators where it has them.
    let shaped = |s: &str, form: &str| {
        s.len() == form.len()
            && s.bytes().zip(form.bytes()).all(|(c, f)| {
                if f == b'9' {
                    c.is_ascii_digit()
                } else {
                    c == f
                }
            })
    };
    let number = |s: &str| s.parse::<u32>().unwrap_or(u32::MAX);
    let local = match t.strip_suffix('Z') {
        Some(l) => l,
        None => match t.len().checked_sub(6).and_then(|i| t.split_at_checked(i)) {
            Some((l, z))
                if (shaped(z, "+99:99") || shaped(z, "-99:99"))
                    && number(&z[4..]) < 60
                    && number(&z[1..3]) * 60 + number(&z[4..]) <= 14 * 60 =>
            {
                l
            }
            _ => t,
        },
    };
    let (date, time) = match local.split_once('T') {
        Some((d, tm)) if !date_only => (d, Some(tm)),
        Some(_) => return false,
        None if date_only => (local, None),
        None => return false,
    };
    if !shaped(date, "9999-99-99") || number(&date[..4]) == 0 {
        return false;
    }
    let day = chrono::NaiveDate::from_ymd_opt(
        number(&date[..4]) as i32,
        number(&date[5..7]),
        number(&date[8..]),
    );
    day.is_some()
        && time.is_none_or(|tm| {
            let Some((hms, fraction)) = tm.split_at_checked(tm.len().min(8)) else {
                return false;
            };
            shaped(hms, "99:99:99")
                && number(&hms[..2]) < 24
                && number(&hms[3..5]) < 60
                && number(&hms[6..]) < 60
                && (fraction.is_empty()
                    || fraction.len() > 1
                        && fraction.starts_with('.')
                        && fraction[1..].bytes().all(|c| c.is_ascii_digit()))
        })
}

/// Converts the text of a simple element to JSON by its XSD type.
pub fn simple_to_json<'i>(
    text: Cow<'i, str>,
    st: &SimpleType,
    path: &str,
) -> Result<Val<'i>, ReadError> {
    if st.kind == SimpleKind::String && st.enumeration.is_empty() {
        // The common case: the text as sent, usually borrowed from the body.
        return Ok(Val::Str(text));
    }
    let invalid = |expected: &str| ReadError::InvalidValue {
        path: path.to_string(),
        value: text.chars().take(64).collect(),
        expected: expected.to_string(),
    };
    if !st.enumeration.is_empty() && !st.enumeration.iter().any(|e| e == xml_trim(&text)) {
        return Err(invalid(&format!("one of {}", st.enumeration.join(", "))));
    }
    let t = xml_trim(&text);
    Ok(match st.kind {
        SimpleKind::String => Val::Str(text.clone()),
        SimpleKind::DateTime | SimpleKind::Date if !is_xsd_date(t, st.kind == SimpleKind::Date) => {
            return Err(invalid(&format!(
                "{} ({})",
                st.kind.describe(),
                if st.kind == SimpleKind::Date {
                    "YYYY-MM-DD, optionally with a zone"
                } else {
                    "YYYY-MM-DDThh:mm:ss, optionally with fractions of a second and a zone"
                }
            )));
        }
        SimpleKind::Other | SimpleKind::DateTime | SimpleKind::Date | SimpleKind::Base64 => {
            Val::Str(trimmed(text.clone()))
        }
        SimpleKind::Boolean => match t {
            "true" | "1" => Val::Bool(true),
            "false" | "0" => Val::Bool(false),
            _ => return Err(invalid(st.kind.describe())),
        },
        SimpleKind::Integer { min, max } => {
            // Most values fit i64, whose parse is cheaper.
            let n: i128 = match t.parse::<i64>() {
                Ok(n) => n.into(),
                Err(_) => t
                    .parse()
                    .map_err(|_| invalid(&format!("an integer ({})", st.name)))?,
            };
            if n < min || n > max {
                return Err(invalid(&format!(
                    "an integer between {min} and {max} ({})",
                    st.name
                )));
            }
            match i64::try_from(n) {
                Ok(i) => Val::Int(i),
                Err(_) => Val::Num(Cow::Owned(n.to_string())),
            }
        }
        SimpleKind::Decimal => Val::Num(Cow::Owned(
            normalize_decimal(t)
                .ok_or_else(|| invalid(st.kind.describe()))?
                .to_string(),
        )),
        SimpleKind::Double => {
            let v: f64 = t.parse().map_err(|_| invalid(st.kind.describe()))?;
            if !v.is_finite() || t.eq_ignore_ascii_case("nan") || t.contains("INF") {
                return Err(invalid("a finite number (INF and NaN have no JSON form)"));
            }
            match Number::from_str(t.trim_start_matches('+')) {
                Ok(n) => Val::Num(Cow::Owned(n.to_string())),
                Err(_) => Val::Num(Cow::Owned(
                    Number::from_f64(v)
                        .ok_or_else(|| invalid("a finite number"))?
                        .to_string(),
                )),
            }
        }
    })
}

/// Checks an `xs:decimal` lexical form and rewrites it as a JSON number with the same digits
/// (`+007.50` -> `7.50`, `.5` -> `0.5`). No floating point is involved.
pub fn normalize_decimal(t: &str) -> Option<Number> {
    let (neg, body) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int)
        || !frac.is_none_or(digits)
        || (int.is_empty() && frac.is_none_or(str::is_empty))
    {
        return None;
    }
    let int = int.trim_start_matches('0');
    let mut out = String::with_capacity(t.len() + 1);
    if neg {
        out.push('-');
    }
    out.push_str(if int.is_empty() { "0" } else { int });
    if let Some(f) = frac.filter(|f| !f.is_empty()) {
        out.push('.');
        out.push_str(f);
    }
    Number::from_str(&out).ok()
}

/// Expands a JSON number that uses an exponent into plain decimal digits (`1.5e-3` -> `0.0015`).
fn plain_decimal(text: &str) -> Option<String> {
    let Some(epos) = text.find(['e', 'E']) else {
        return Some(text.to_string());
    };
    let (mant, exp) = (&text[..epos], &text[epos + 1..]);
    // Exponents beyond this make numbers no decimal field can hold; refuse them before any
    // arithmetic so that hostile input cannot overflow or allocate without bound.
    let exp: i64 = exp.parse().ok().filter(|e: &i64| e.unsigned_abs() <= 400)?;
    let (neg, mant) = mant.strip_prefix('-').map_or((false, mant), |m| (true, m));
    let (i, f) = mant.split_once('.').unwrap_or((mant, ""));
    if i.len() + f.len() > 400 {
        return None;
    }
    let digits = format!("{i}{f}");
    let point = i.len() as i64 + exp;
    let mut s = String::new();
    if point <= 0 {
        s.push_str("0.");
        s.push_str(&"0".repeat((-point) as usize));
        s.push_str(&digits);
    } else if point as usize >= digits.len() {
        s.push_str(&digits);
        s.push_str(&"0".repeat(point as usize - digits.len()));
    } else {
        s.push_str(&digits[..point as usize]);
        s.push('.');
        s.push_str(&digits[point as usize..]);
    }
    let n = normalize_decimal(&s)?.to_string();
    Some(if neg { format!("-{n}") } else { n })
}

/// A JSON value that does not fit the schema of the XML to be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{path}': {reason}")]
pub struct ShapeError {
    pub path: String,
    pub reason: String,
}

impl ShapeError {
    /// The value at `path` does not fit, for `reason`.
    pub(crate) fn at(path: &str, reason: String) -> ShapeError {
        ShapeError {
            path: path.to_string(),
            reason,
        }
    }
}

/// What takes an answer's text away as it is written ([`XmlWriter::flushing`]).
pub(crate) type Flush<'a> = dyn FnMut(&mut String) + 'a;

/// Writes JSON as XML following a schema. Elements qualified with `root_ns` use `prefix`;
/// other namespaces are declared where they are used.
pub(crate) struct XmlWriter<'a> {
    pub out: String,
    schema: &'a Schema,
    root_ns: &'a str,
    prefix: &'a str,
    /// The root namespace is declared on the first element that uses it.
    root_declared: bool,
    /// Where the text goes once it is this long, for an answer sent while it is written
    /// ([`XmlWriter::flushing`]).
    flush: Option<(&'a mut Flush<'a>, usize)>,
    /// How much of the text the flush took away.
    flushed: usize,
}

impl<'a> XmlWriter<'a> {
    pub(crate) fn new(schema: &'a Schema, root_ns: &'a str, prefix: &'a str, out: String) -> Self {
        XmlWriter {
            out,
            schema,
            root_ns,
            prefix,
            root_declared: false,
            flush: None,
            flushed: 0,
        }
    }

    /// Hands the text to `flush` whenever it has reached `at` bytes, between the items of a
    /// list (the only place a long text grows without end); `flush` takes it away.
    pub(crate) fn flushing(mut self, flush: &'a mut Flush<'a>, at: usize) -> Self {
        self.flush = Some((flush, at));
        self
    }

    /// How much text was written, including what was flushed.
    fn written(&self) -> usize {
        self.flushed + self.out.len()
    }

    fn maybe_flush(&mut self) {
        if let Some((flush, at)) = &mut self.flush
            && self.out.len() >= *at
        {
            self.flushed += self.out.len();
            flush(&mut self.out);
        }
    }

    /// Writes the element `decl` holding `value`; absent optional values write nothing.
    pub(crate) fn element<'t, T: Tree<'t>>(
        &mut self,
        decl: &ElementDecl,
        value: Option<T>,
        path: &mut String,
    ) -> Result<(), ShapeError> {
        let mark = path.len();
        if !path.is_empty() {
            path.push('/');
        }
        path.push_str(&decl.name);
        let r = self.element_inner(decl, value, path);
        path.truncate(mark);
        r
    }

    fn element_inner<'t, T: Tree<'t>>(
        &mut self,
        decl: &ElementDecl,
        value: Option<T>,
        path: &mut String,
    ) -> Result<(), ShapeError> {
        // The values to write: none, one, or a list's items (absent items are left out). One
        // value keeps the form read here: a lazy result evaluates its template on each read.
        let (list, len, one) = match value.map(|v| (v, v.form())) {
            None => (None, 0, None),
            Some((v, Form::List(n))) if decl.is_repeated() => (Some(v), n, None),
            Some((_, Form::List(_))) => {
                return Err(ShapeError::at(
                    path,
                    "a list where the schema allows one value".into(),
                ));
            }
            Some((v, form)) => (None, 1, Some((v, form))),
        };
        let items = || (0..len).filter_map(|i| list.and_then(|l| l.item(i)));
        let (present, non_null) = match &one {
            Some((_, form)) => (1, u32::from(!matches!(form, Form::Null))),
            None => items().fold((0u32, 0u32), |(p, n), v| {
                (p + 1, n + u32::from(!v.is_null()))
            }),
        };
        if !decl.nillable && non_null < decl.min_occurs {
            // (A required nillable element is written as nil below.)
            return Err(ShapeError::at(path, "required but missing".into()));
        }
        if let Some(max) = decl.max_occurs
            && present > max
        {
            return Err(ShapeError::at(
                path,
                format!("{present} values where at most {max} are allowed"),
            ));
        }
        if present == 0 && decl.nillable && decl.min_occurs > 0 {
            self.open(decl);
            self.out.push_str(" xsi:nil=\"true\"/>");
            return Ok(());
        }
        match one {
            Some((v, form)) => self.value(decl, v, form, path),
            None => items().try_for_each(|v| {
                self.value(decl, v, v.form(), path)?;
                self.maybe_flush();
                Ok(())
            }),
        }
    }

    /// The element `decl` holding `v`, whose form is `form`.
    fn value<'t, T: Tree<'t>>(
        &mut self,
        decl: &ElementDecl,
        v: T,
        form: Form<'t>,
        path: &mut String,
    ) -> Result<(), ShapeError> {
        match (form, self.schema.get(decl.ty)) {
            (Form::Null, _) if !decl.nillable => {}
            (Form::Null, _) => {
                self.open(decl);
                self.out.push_str(" xsi:nil=\"true\"/>");
            }
            (Form::Obj, TypeDef::Complex(ct)) => {
                let declared = self.open(decl);
                self.out.push('>');
                let mark = self.written();
                for c in &ct.children {
                    self.element(c, v.member(&c.name), path)?;
                }
                if self.written() == mark {
                    // No children: write <x/> rather than <x></x> (nothing was flushed since
                    // the '>': a flush follows a written item).
                    self.out.pop();
                    self.out.push_str("/>");
                } else {
                    self.close(decl, declared);
                }
            }
            (form, TypeDef::Complex(_)) => {
                return Err(ShapeError::at(
                    path,
                    format!("expected an object, got {}", form.kind()),
                ));
            }
            (Form::Scalar(sv), TypeDef::Simple(st)) => self.simple(decl, st, &sv, path)?,
            (form, TypeDef::Simple(st)) => {
                return Err(ShapeError::at(path, cannot_write(form.kind(), st)));
            }
        }
        Ok(())
    }

    /// One element of a simple type holding `v` (not null).
    fn simple(
        &mut self,
        decl: &ElementDecl,
        st: &SimpleType,
        v: &Val<'_>,
        path: &str,
    ) -> Result<(), ShapeError> {
        let declared = self.open(decl);
        self.out.push('>');
        match v {
            // The common case, an integer written as it is: no text is built for it.
            Val::Int(i) if int_as_is(*i, st) => {
                self.out.push_str(itoa::Buffer::new().format(*i));
            }
            v => {
                let text = json_to_simple(v, st).map_err(|reason| ShapeError::at(path, reason))?;
                escape_into(&mut self.out, &text);
            }
        }
        self.close(decl, declared);
        Ok(())
    }

    fn open(&mut self, decl: &ElementDecl) -> bool {
        self.out.push('<');
        match decl.namespace.as_deref() {
            Some(ns) if ns == self.root_ns => {
                self.out.push_str(self.prefix);
                self.out.push(':');
                self.out.push_str(&decl.name);
                if !self.root_declared {
                    self.root_declared = true;
                    self.out.push_str(" xmlns:");
                    self.out.push_str(self.prefix);
                    self.out.push_str("=\"");
                    escape_into(&mut self.out, ns);
                    self.out.push('"');
                }
                false
            }
            Some(ns) => {
                self.out.push_str("ns1:");
                self.out.push_str(&decl.name);
                self.out.push_str(" xmlns:ns1=\"");
                escape_into(&mut self.out, ns);
                self.out.push('"');
                true
            }
            None => {
                self.out.push_str(&decl.name);
                false
            }
        }
    }

    fn close(&mut self, decl: &ElementDecl, foreign: bool) {
        self.out.push_str("</");
        if foreign {
            self.out.push_str("ns1:");
        } else if decl.namespace.is_some() {
            self.out.push_str(self.prefix);
            self.out.push(':');
        }
        self.out.push_str(&decl.name);
        self.out.push('>');
    }
}

/// "A list cannot be written as a date", and the like.
pub(crate) fn cannot_write(kind: &str, st: &SimpleType) -> String {
    format!("{kind} cannot be written as {}", st.kind.describe())
}

/// Whether the integer `i` is the text of a value of `st` just as it is (what
/// [`json_to_simple`] would give, without building it).
fn int_as_is(i: i64, st: &SimpleType) -> bool {
    match st.kind {
        SimpleKind::Boolean => false,
        SimpleKind::Integer { min, max } => (min..=max).contains(&i128::from(i)),
        _ => true,
    }
}

/// Formats a JSON value as the text of a simple XSD type.
pub fn json_to_simple<'v>(v: &'v Val<'_>, st: &SimpleType) -> Result<Cow<'v, str>, String> {
    let bad = || cannot_write(v.kind(), st);
    match st.kind {
        SimpleKind::String
        | SimpleKind::Other
        | SimpleKind::DateTime
        | SimpleKind::Date
        | SimpleKind::Base64 => match v {
            // A number keeps its JSON text.
            Val::Str(s) | Val::Num(s) => Ok(Cow::Borrowed(s)),
            Val::Int(i) => Ok(i.to_string().into()),
            Val::Bool(b) => Ok(b.to_string().into()),
            _ => Err(bad()),
        },
        SimpleKind::Boolean => match v {
            Val::Bool(b) => Ok(b.to_string().into()),
            Val::Str(s) if matches!(s.trim(), "true" | "1") => Ok(Cow::Borrowed("true")),
            Val::Str(s) if matches!(s.trim(), "false" | "0") => Ok(Cow::Borrowed("false")),
            Val::Int(1) => Ok(Cow::Borrowed("true")),
            Val::Int(0) => Ok(Cow::Borrowed("false")),
            _ => Err(bad()),
        },
        SimpleKind::Integer { min, max } => {
            // A JSON integer that fits i64 is held inline, and its text is already canonical.
            let text = match v {
                Val::Int(i) if int_as_is(*i, st) => return Ok(i.to_string().into()),
                Val::Int(i) => return Err(format!("{i} is outside the range of {}", st.name)),
                Val::Num(n) => n.to_string(),
                Val::Str(s) => s.trim().to_string(),
                _ => return Err(bad()),
            };
            let int_part = match text.split_once('.') {
                Some((i, f)) if f.bytes().all(|b| b == b'0') => i,
                _ => &text,
            };
            let n: i128 = int_part
                .parse()
                .map_err(|_| format!("'{text}' is not an integer"))?;
            if n < min || n > max {
                return Err(format!("{n} is outside the range of {}", st.name));
            }
            Ok(n.to_string().into())
        }
        SimpleKind::Decimal => {
            let text = match v {
                Val::Int(i) => Some(i.to_string()),
                Val::Num(n) => plain_decimal(n),
                Val::Str(s) => normalize_decimal(s.trim()).map(|n| n.to_string()),
                _ => return Err(bad()),
            };
            text.map(Cow::Owned)
                .ok_or_else(|| format!("{} is not a decimal number", v.to_json()))
        }
        SimpleKind::Double => match v {
            Val::Num(n) => Ok(Cow::Borrowed(n)),
            Val::Int(i) => Ok(i.to_string().into()),
            Val::Str(s) if s.trim().parse::<f64>().is_ok_and(f64::is_finite) => {
                Ok(Cow::Borrowed(s.trim()))
            }
            _ => Err(bad()),
        },
    }
}

/// Escapes text for element content and attribute values.
pub fn escape_into(out: &mut String, s: &str) {
    let mut last = 0;
    for (i, b) in s.bytes().enumerate() {
        let rep = match b {
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'&' => "&amp;",
            b'"' => "&quot;",
            b'\r' => "&#13;",
            b'\t' | b'\n' => continue,
            // Control characters XML 1.0 forbids: written as U+FFFD so the document stays
            // well-formed.
            0..=0x1f => "\u{FFFD}",
            _ => continue,
        };
        out.push_str(&s[last..i]);
        out.push_str(rep);
        last = i + 1;
    }
    out.push_str(&s[last..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::Doc;
    use serde_json::Value;

    /// [`super::json_to_simple`] of a `serde_json` value.
    fn json_to_simple(v: &Value, st: &SimpleType) -> Result<String, String> {
        super::json_to_simple(&Val::borrowed(v), st).map(Cow::into_owned)
    }

    /// The decoder's values as `serde_json`, for comparing.
    fn simple_to_json(text: Cow<'_, str>, st: &SimpleType, path: &str) -> Result<Value, ReadError> {
        super::simple_to_json(text, st, path).map(|v| v.to_json())
    }
    use crate::schema::{ComplexType, SimpleType};
    use serde_json::json;

    fn simple(kind: SimpleKind) -> SimpleType {
        SimpleType {
            name: "t".into(),
            kind,
            enumeration: vec![],
        }
    }
    fn int() -> SimpleKind {
        SimpleKind::builtin("int").unwrap()
    }

    #[test]
    fn dates_must_be_xsd_dates_of_days_that_exist() {
        let date = simple(SimpleKind::Date);
        let date_time = simple(SimpleKind::DateTime);
        for ok in [
            "2024-05-03",
            " 2024-02-29 ",
            "2024-05-03Z",
            "2024-05-03+02:00",
            "2024-05-03-05:00",
        ] {
            let v = simple_to_json(ok.into(), &date, "d").unwrap();
            assert_eq!(v, serde_json::json!(ok.trim()), "{ok}");
        }
        for ok in [
            "2024-05-03T10:00:00",
            "2024-05-03T10:00:00.125",
            "2024-05-03T10:00:00Z",
            "2024-05-03T23:59:59+02:00",
            "2024-05-03T23:59:59.5-14:00",
        ] {
            assert!(simple_to_json(ok.into(), &date_time, "d").is_ok(), "{ok}");
        }
        for bad in [
            "2024-13-45",
            "2023-02-29",
            "garbage",
            "",
            "2024-5-3",
            "20240503",
            "2024-05-03T10:00:00",
            "2024-05-03+25:00",
            "2024-05- 3",
            "-024-05-03",
            "+024-05-03",
            "0000-05-03",
        ] {
            let e = simple_to_json(bad.into(), &date, "rec/date").unwrap_err();
            assert_eq!(e.code(), "INVALID_VALUE", "{bad}");
            assert!(
                e.to_string().contains("rec/date") && e.to_string().contains("YYYY-MM-DD"),
                "{e}"
            );
        }
        for bad in [
            "2024-05-03",
            "2024-05-03T25:00:00",
            "2024-05-03T24:00:00",
            "2024-05-03T10:00:60",
            "2024-05-03T 1:00:00",
            "2024-05-03T10:00:00.",
            "2024-05-03T10:00:00+15:00",
            "2024-05-03T10:00:0é",
            "2024-05-03T10:00",
            "2024-02-30T10:00:00",
            "2024-05-03 10:00:00",
        ] {
            assert!(
                simple_to_json(bad.into(), &date_time, "d").is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn strings_that_look_like_numbers_stay_strings() {
        let v = simple_to_json("0085".into(), &simple(SimpleKind::String), "p").unwrap();
        assert_eq!(v, Value::String("0085".into()));
    }

    #[test]
    fn decimals_keep_their_digits() {
        let v = simple_to_json(" +007.50 ".into(), &simple(SimpleKind::Decimal), "p").unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), "7.50");
        let v = simple_to_json(
            "0.1000000000000000000001".into(),
            &simple(SimpleKind::Decimal),
            "p",
        )
        .unwrap();
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            "0.1000000000000000000001"
        );
        assert!(simple_to_json("1e5".into(), &simple(SimpleKind::Decimal), "p").is_err());
        assert_eq!(plain_decimal("1.5e-3").unwrap(), "0.0015");
        assert_eq!(plain_decimal("-12e2").unwrap(), "-1200");
    }

    #[test]
    fn integers_are_range_checked() {
        assert_eq!(
            simple_to_json("42".into(), &simple(int()), "p").unwrap(),
            Value::from(42)
        );
        let e = simple_to_json("abc".into(), &simple(int()), "x/productIds/item").unwrap_err();
        assert!(
            matches!(e, ReadError::InvalidValue { ref path, .. } if path == "x/productIds/item")
        );
        assert!(simple_to_json("2147483648".into(), &simple(int()), "p").is_err());
        let long = SimpleKind::builtin("long").unwrap();
        assert_eq!(
            simple_to_json("1597746714261".into(), &simple(long), "p").unwrap(),
            Value::from(1597746714261i64)
        );
        // XML white space around a number is dropped; any other space is part of the value.
        assert_eq!(
            simple_to_json("\r\n\t 42 \n".into(), &simple(int()), "p").unwrap(),
            Value::from(42)
        );
        assert!(simple_to_json("42\u{a0}".into(), &simple(int()), "p").is_err());
    }

    #[test]
    fn booleans_and_doubles() {
        let b = simple(SimpleKind::Boolean);
        assert_eq!(
            simple_to_json("1".into(), &b, "p").unwrap(),
            Value::Bool(true)
        );
        assert!(simple_to_json("yes".into(), &b, "p").is_err());
        let d = simple(SimpleKind::Double);
        assert_eq!(
            serde_json::to_string(&simple_to_json("0.02".into(), &d, "p").unwrap()).unwrap(),
            "0.02"
        );
        assert!(simple_to_json("INF".into(), &d, "p").is_err());
    }

    #[test]
    fn json_values_are_formatted_by_type() {
        assert_eq!(
            json_to_simple(&Value::Bool(true), &simple(SimpleKind::Boolean)).unwrap(),
            "true"
        );
        assert_eq!(
            json_to_simple(&Value::from("2"), &simple(int())).unwrap(),
            "2"
        );
        assert!(json_to_simple(&Value::from("2.5"), &simple(int())).is_err());
        let n: Value = serde_json::from_str("0.10").unwrap();
        assert_eq!(
            json_to_simple(&n, &simple(SimpleKind::Decimal)).unwrap(),
            "0.10"
        );
        assert_eq!(
            json_to_simple(&Value::from("12.50"), &simple(SimpleKind::Decimal)).unwrap(),
            "12.50"
        );
        // Numbers are written as their JSON text, integers checked against their type.
        let num = |t: &str| -> Value { serde_json::from_str(t).unwrap() };
        let int_of = |t: &str| json_to_simple(&num(t), &simple(int()));
        assert_eq!(int_of("587300354").unwrap(), "587300354");
        assert_eq!(int_of("-2147483648").unwrap(), "-2147483648");
        assert_eq!(int_of("-0").unwrap(), "0");
        assert_eq!(int_of("5.00").unwrap(), "5");
        assert!(
            int_of("2147483648")
                .unwrap_err()
                .contains("outside the range")
        );
        assert!(int_of("1e3").is_err());
        let integer = SimpleKind::builtin("integer").unwrap();
        assert_eq!(
            json_to_simple(&num("123456789012345678901234"), &simple(integer)).unwrap(),
            "123456789012345678901234"
        );
        for kind in [SimpleKind::String, SimpleKind::Double] {
            for t in ["12.50", "1.5e3", "-7"] {
                // serde_json's text of the number: `1.5e3` is kept as `1.5e+3`.
                assert_eq!(
                    json_to_simple(&num(t), &simple(kind)).unwrap(),
                    num(t).to_string()
                );
            }
            assert_eq!(
                json_to_simple(&num("12.50"), &simple(kind)).unwrap(),
                "12.50"
            );
        }
    }

    fn array_schema() -> (Schema, ElementDecl) {
        let schema = Schema {
            types: vec![
                TypeDef::Simple(simple(int())),
                TypeDef::Complex(ComplexType {
                    name: "IntArray".into(),
                    children: vec![ElementDecl {
                        name: "item".into(),
                        namespace: None,
                        min_occurs: 0,
                        max_occurs: None,
                        nillable: false,
                        ty: 0,
                    }],
                    unordered: false,
                }),
            ],
        };
        let decl = ElementDecl {
            name: "productIds".into(),
            namespace: None,
            min_occurs: 1,
            max_occurs: Some(1),
            nillable: false,
            ty: 1,
        };
        (schema, decl)
    }

    fn decode(xml: &str) -> Result<Value, ReadError> {
        let (schema, decl) = array_schema();
        let mut r = XmlReader::new(xml, 16);
        let Node::Start(s) = r.next_node()? else {
            panic!("no start")
        };
        decode_value(&mut r, &schema, &decl, &s, &mut "productIds".to_string()).map(|v| v.to_json())
    }

    #[test]
    fn text_is_borrowed_and_line_ends_are_normalised() {
        let read = |xml: &'static str| {
            let mut r = XmlReader::new(xml, 4);
            let Node::Start(_) = r.next_node().unwrap() else {
                panic!("no start")
            };
            r.read_text("a").unwrap()
        };
        assert!(matches!(
            read("<a>plain text</a>"),
            Cow::Borrowed("plain text")
        ));
        assert_eq!(read("<a>one\r\ntwo\rthree</a>"), "one\ntwo\nthree");
        assert_eq!(read("<a>x &amp; y\r\n</a>"), "x & y\n");
        // A control character XML forbids is refused either way.
        let mut r = XmlReader::new("<a>bad\u{1}\r</a>", 4);
        r.next_node().unwrap();
        assert!(r.read_text("a").is_err());
    }

    /// The decoded `item` list's (length, capacity).
    fn list_room(xml: &str) -> (usize, usize) {
        let (schema, decl) = array_schema();
        let mut r = XmlReader::new(xml, 16);
        let Node::Start(s) = r.next_node().unwrap() else {
            panic!("no start")
        };
        let v = decode_value(&mut r, &schema, &decl, &s, &mut "productIds".to_string()).unwrap();
        match v.get("item") {
            // A list of integers is held compactly, 8 bytes an item.
            Some(Val::Ints(items)) => (items.len(), items.capacity()),
            other => panic!("not a list of integers: {other:?}"),
        }
    }

    #[test]
    fn a_large_list_is_allocated_once_at_about_its_size() {
        let items: String = (0..5000)
            .map(|i| format!("<item>{}</item>", 100_000 + i))
            .collect();
        let (len, cap) = list_room(&format!("<productIds>{items}</productIds>"));
        assert_eq!(len, 5000);
        // Doubling would end at 8192; the estimate from the second item is 5000 and a bit.
        assert!((5000..5010).contains(&cap), "capacity {cap}");
        // A short list followed by other content is not left holding the room it reserved.
        let padding = " ".repeat(200_000);
        let (len, cap) = list_room(&format!(
            "<productIds><item>1</item><item>2</item>{padding}<item>3</item></productIds>"
        ));
        assert_eq!(len, 3);
        assert!(cap < 16, "capacity {cap}");
        // Small lists grow as usual.
        let (len, cap) = list_room("<productIds><item>1</item><item>2</item></productIds>");
        assert_eq!((len, cap), (2, 4));
    }

    /// The list decoded with plain items scanned and with every item read through events,
    /// which must agree (value or error); and whether scanning read any item.
    fn decode_both(
        xml: &str,
        max_occurs: Option<u32>,
        max_depth: usize,
    ) -> (Result<Value, ReadError>, bool) {
        decode_both_as(xml, max_occurs, max_depth, int())
    }

    /// [`decode_both`] with items of another simple type.
    fn decode_both_as(
        xml: &str,
        max_occurs: Option<u32>,
        max_depth: usize,
        item_kind: SimpleKind,
    ) -> (Result<Value, ReadError>, bool) {
        let (mut schema, decl) = array_schema();
        schema.types[0] = TypeDef::Simple(simple(item_kind));
        if let TypeDef::Complex(ct) = &mut schema.types[1] {
            ct.children[0].max_occurs = max_occurs;
        }
        let run = |scan: bool| {
            let mut r = XmlReader::new(xml, max_depth).scan_lists(scan);
            let v = match r.next_node() {
                Ok(Node::Start(s)) => {
                    decode_value(&mut r, &schema, &decl, &s, &mut "productIds".to_string())
                        .map(|v| v.to_json())
                }
                Ok(_) => panic!("no start"),
                Err(e) => Err(e),
            };
            (v, r.base > 0)
        };
        let (scanned, restarted) = run(true);
        let (by_events, _) = run(false);
        assert_eq!(scanned, by_events, "{xml}");
        (scanned, restarted)
    }

    #[test]
    fn plain_list_items_are_scanned_and_read_as_events_would_read_them() {
        let ok = |xml: &str, expected: Value, scanned: bool| {
            let (v, restarted) = decode_both(xml, None, 16);
            assert_eq!(v, Ok(expected), "{xml}");
            assert_eq!(restarted, scanned, "{xml}");
        };
        ok(
            "<productIds><item>1</item><item>2</item><item>3</item></productIds>",
            json!({"item": [1, 2, 3]}),
            true,
        );
        ok(
            "<productIds>\n  <item> 1 </item>\r\n\t<item>2</item>\n</productIds>",
            json!({"item": [1, 2]}),
            true,
        );
        ok(
            "<p:productIds xmlns:p='urn:x'><p:item>1</p:item><p:item>2</p:item></p:productIds>",
            json!({"item": [1, 2]}),
            true,
        );
        // Whatever is not written plainly goes through events, and scanning resumes after it.
        for (xml, items) in [
            (
                "<item>1</item><item>&#50;</item><item>3</item>",
                json!([1, 2, 3]),
            ),
            (
                "<item>1</item><item><![CDATA[2]]></item><item>3</item>",
                json!([1, 2, 3]),
            ),
            ("<item>1</item><!-- two --><item>2</item>", json!([1, 2])),
            (
                "<item>1</item><item >2</item><item>3</item >",
                json!([1, 2, 3]),
            ),
            ("<item>1</item><item>2\r</item>", json!([1, 2])),
            (
                "<item>1</item><item xmlns:xsi='http://www.w3.org/2001/XMLSchema-instance' xsi:nil='true'/><item>3</item>",
                json!([1, 3]),
            ),
            (
                "<item>1</item><item>2</item><?pi x?><item>3</item>",
                json!([1, 2, 3]),
            ),
        ] {
            let xml = format!("<productIds>{xml}</productIds>");
            let (v, _) = decode_both(&xml, None, 16);
            assert_eq!(v, Ok(json!({ "item": items })), "{xml}");
        }
        // Refusals are the same too, with the same words and positions (a byte order mark
        // after an item is text, not something a restarted reader may drop).
        for xml in [
            "<item>1</item><item>2</item>\u{FEFF}</productIds>",
            "<item>1</item><item>2</item>\u{FEFF}<item>3</item></productIds>",
            "<item>1</item><item>2</itemx></productIds>",
            "<item>1</item><item>2</item></productIdz>",
            "<item>1</item><item>x</item></productIds>",
            "<item>1</item><item></item></productIds>",
            "<item>1</item><item>\u{1}</item></productIds>",
            "<item>1</item><item>99999999999999999999999</item></productIds>",
            "<item>1</item><item>2</item><other/></productIds>",
            "<item>1</item><item>2</item>text</productIds>",
            "<item>1</item><item>2</item><item>3",
            "<item>1</item><item>2</item>",
        ] {
            let xml = format!("<productIds>{xml}");
            let (v, _) = decode_both(&xml, None, 16);
            assert!(v.is_err(), "{xml}");
        }
        // The number of items and the depth are bounded as before.
        let three = "<productIds><item>1</item><item>2</item><item>3</item></productIds>";
        let (v, _) = decode_both(three, Some(2), 16);
        assert!(matches!(v, Err(ReadError::RepeatedElement { .. })), "{v:?}");
        let (v, _) = decode_both(three, None, 1);
        assert!(matches!(v, Err(ReadError::TooDeep { .. })), "{v:?}");
    }

    #[test]
    fn integer_items_read_as_they_are_scanned_have_the_values_and_refusals_of_text() {
        let long = || SimpleKind::builtin("long").unwrap();
        let unbounded = || SimpleKind::builtin("integer").unwrap();
        let number = |t: &str| serde_json::from_str::<Value>(t).unwrap();
        for (kind, items, expected) in [
            (
                int(),
                "<item>+7</item><item>-0</item><item>007</item><item>-2147483648</item>",
                json!([7, 0, 7, -2_147_483_648i64]),
            ),
            (
                long(),
                "<item>123456789012345678</item><item>999999999999999999</item>\
                 <item>9223372036854775807</item><item>-9223372036854775808</item>",
                json!([
                    123_456_789_012_345_678i64,
                    999_999_999_999_999_999i64,
                    i64::MAX,
                    i64::MIN
                ]),
            ),
            (
                unbounded(),
                "<item>99999999999999999999</item><item>5</item>",
                json!([number("99999999999999999999"), 5]),
            ),
        ] {
            let xml = format!("<productIds><item>1</item>{items}</productIds>");
            let mut all = vec![json!(1)];
            all.extend(expected.as_array().unwrap().iter().cloned());
            let (v, scanned) = decode_both_as(&xml, None, 16, kind);
            assert_eq!(v, Ok(json!({ "item": all })), "{xml}");
            assert!(scanned, "{xml}");
        }
        // Not plain digits, or out of the type's range: read as text, refused with its words.
        for (kind, item, expected) in [
            (int(), "2147483648", "an integer between"),
            (int(), "-2147483649", "an integer between"),
            (long(), "9223372036854775808", "an integer between"),
            (int(), "-", "an integer (t)"),
            (int(), "+-1", "an integer (t)"),
            (int(), "1-", "an integer (t)"),
            (int(), "1.0", "an integer (t)"),
            (int(), "\u{FF11}", "an integer (t)"),
        ] {
            let xml =
                format!("<productIds><item>1</item><item>2</item><item>{item}</item></productIds>");
            match decode_both_as(&xml, None, 16, kind).0 {
                Err(ReadError::InvalidValue {
                    value, expected: e, ..
                }) => {
                    assert_eq!(value, item, "{xml}");
                    assert!(e.starts_with(expected), "{xml}: {e}");
                }
                other => panic!("{xml}: {other:?}"),
            }
        }
    }

    #[test]
    fn repeated_elements_are_arrays_with_one_item_or_none() {
        assert_eq!(
            decode("<productIds><item>7</item></productIds>").unwrap(),
            serde_json::json!({"item": [7]})
        );
        assert_eq!(
            decode("<productIds/>").unwrap(),
            serde_json::json!({"item": []})
        );
        assert_eq!(
            decode("<productIds>\n <item>1</item><!-- c --><item>2</item></productIds>").unwrap(),
            serde_json::json!({"item": [1, 2]})
        );
    }

    #[test]
    fn unknown_children_text_and_entities_are_refused() {
        assert!(matches!(
            decode("<productIds><itm>1</itm></productIds>"),
            Err(ReadError::UnexpectedElement { .. })
        ));
        assert!(matches!(
            decode("<productIds>x</productIds>"),
            Err(ReadError::InvalidValue { .. })
        ));
        assert!(matches!(
            decode("<productIds><item>&xxe;</item></productIds>"),
            Err(ReadError::MalformedXml(_))
        ));
        assert_eq!(
            decode("<productIds><item>&#55;</item></productIds>").unwrap(),
            serde_json::json!({"item": [7]})
        );
    }

    #[test]
    fn depth_is_bounded() {
        let mut r = XmlReader::new("<a><b><c><d/></c></b></a>", 3);
        let mut res = Ok(Node::Eof);
        for _ in 0..4 {
            res = r.next_node();
            if res.is_err() {
                break;
            }
        }
        assert!(matches!(res, Err(ReadError::TooDeep { limit: 3 })));
    }

    /// A compact list of integers is written item by item as a list of values is, range
    /// checked, and refused where the schema wants objects or one value.
    #[test]
    fn writer_writes_compact_integer_lists_as_lists() {
        let (schema, decl) = array_schema();
        let write = |v: Val<'_>| {
            let mut w = XmlWriter::new(&schema, "urn:x", "ns0", String::new());
            let obj = Val::Obj(vec![("item", v)]);
            w.element(&decl, Some(Doc::Call(&obj)), &mut String::new())
                .map(|()| w.out)
        };
        let compact = write(Val::Ints(vec![5, -6, 2147483647])).unwrap();
        assert_eq!(
            compact,
            "<productIds><item>5</item><item>-6</item><item>2147483647</item></productIds>"
        );
        let listed = write(Val::List(vec![
            Val::Int(5),
            Val::Int(-6),
            Val::Int(2147483647),
        ]));
        assert_eq!(listed.unwrap(), compact);
        let e = write(Val::Ints(vec![1, 2147483648])).unwrap_err();
        assert_eq!(e.path, "productIds/item");
        assert!(e.reason.contains("outside the range"), "{}", e.reason);
        // Where one value is allowed, a list is refused.
        let mut w = XmlWriter::new(&schema, "urn:x", "ns0", String::new());
        let e = w
            .element(
                &decl,
                Some(Doc::Call(&Val::Ints(vec![1]))),
                &mut String::new(),
            )
            .unwrap_err();
        assert_eq!(e.reason, "a list where the schema allows one value");
    }

    /// A writer that flushes as it goes writes the same text, in pieces that end between
    /// list items (also of nested lists), and still writes an object without children as
    /// `<x/>` when a flush came just before it.
    #[test]
    fn writer_flushing_writes_the_same_text_in_pieces_between_items() {
        let el = |name: &str, ty: usize, max: Option<u32>| ElementDecl {
            name: name.into(),
            namespace: None,
            min_occurs: 0,
            max_occurs: max,
            nillable: false,
            ty,
        };
        let schema = Schema {
            types: vec![
                TypeDef::Simple(simple(int())),
                TypeDef::Complex(ComplexType {
                    name: "Tags".into(),
                    children: vec![el("tag", 0, None)],
                    unordered: false,
                }),
                TypeDef::Complex(ComplexType {
                    name: "Product".into(),
                    children: vec![el("id", 0, Some(1)), el("tags", 1, Some(1))],
                    unordered: false,
                }),
                TypeDef::Complex(ComplexType {
                    name: "Products".into(),
                    children: vec![el("product", 2, None)],
                    unordered: false,
                }),
            ],
        };
        let decl = el("products", 3, Some(1));
        let v = serde_json::json!({"product": [
            {"id": 1, "tags": {"tag": [10, 11, 12]}},
            {},
            {"id": 2},
            {"tags": {}},
            {},
            {"id": 3, "tags": {"tag": [30]}},
        ]});
        let mut whole = XmlWriter::new(&schema, "urn:x", "ns0", String::new());
        whole
            .element(&decl, Some(Doc::Json(&v)), &mut String::new())
            .unwrap();
        assert!(
            whole.out.contains(
                "<product/><product><id>2</id></product><product><tags/></product><product/>"
            ),
            "{}",
            whole.out
        );
        for at in [1, 7, 40, 100_000] {
            let mut pieces: Vec<String> = Vec::new();
            let mut flush = |out: &mut String| pieces.push(std::mem::take(out));
            let mut w =
                XmlWriter::new(&schema, "urn:x", "ns0", String::new()).flushing(&mut flush, at);
            w.element(&decl, Some(Doc::Json(&v)), &mut String::new())
                .unwrap();
            let rest = std::mem::take(&mut w.out);
            drop(w);
            assert_eq!(pieces.concat() + &rest, whole.out, "flushing at {at}");
            for p in &pieces {
                assert!(
                    p.len() >= at,
                    "a piece of {} bytes, flushing at {at}",
                    p.len()
                );
                assert!(
                    ["</tag>", "</product>", "<product/>"]
                        .iter()
                        .any(|end| p.ends_with(end)),
                    "a piece ends between items: {p}"
                );
            }
            assert_eq!(pieces.is_empty(), at == 100_000, "flushing at {at}");
        }
    }

    #[test]
    fn writer_follows_schema_order_and_accepts_single_values_for_arrays() {
        let (schema, decl) = array_schema();
        let mut w = XmlWriter::new(&schema, "urn:x", "ns0", String::new());
        let v = serde_json::json!({"item": 5, "extra": "ignored"});
        w.element(&decl, Some(Doc::Json(&v)), &mut String::new())
            .unwrap();
        assert_eq!(w.out, "<productIds><item>5</item></productIds>");
        let mut w = XmlWriter::new(&schema, "urn:x", "ns0", String::new());
        let e = w
            .element(
                &decl,
                Some(Doc::Json(&serde_json::json!({"item": ["x"]}))),
                &mut String::new(),
            )
            .unwrap_err();
        assert_eq!(e.path, "productIds/item");
    }

    #[test]
    fn hostile_numbers_and_characters_do_not_panic_or_break_the_document() {
        assert_eq!(plain_decimal("1e-9223372036854775808"), None);
        assert_eq!(plain_decimal("1e9223372036854775807"), None);
        assert_eq!(plain_decimal("1e401"), None);
        let mut out = String::new();
        escape_into(&mut out, "A\u{7}<b>&\"");
        assert_eq!(out, "A\u{FFFD}&lt;b&gt;&amp;&quot;");
        assert!(matches!(
            decode("<productIds><item>&#1;</item></productIds>"),
            Err(ReadError::MalformedXml(_))
        ));
        assert!(matches!(
            decode("<productIds><item>1\u{1}</item></productIds>"),
            Err(ReadError::MalformedXml(_))
        ));
    }

    #[test]
    fn attribute_floods_are_refused_quickly() {
        let attrs: String = (0..5000).map(|i| format!(" a{i}=\"\"")).collect();
        let xml = format!("<productIds><item{attrs}>1</item></productIds>");
        let started = std::time::Instant::now();
        assert!(matches!(decode(&xml), Err(ReadError::MalformedXml(_))));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn legacy_encodings_are_converted_and_bad_bytes_refused() {
        // "Ödeme çeki" in ISO-8859-9 (Turkish Latin-5).
        let latin5: &[u8] =
            b"<?xml version=\"1.0\" encoding=\"ISO-8859-9\"?><a>\xD6deme \xE7eki</a>";
        assert_eq!(
            decode_body(latin5, Some("text/xml")).unwrap(),
            "<?xml version=\"1.0\" encoding=\"ISO-8859-9\"?><a>\u{d6}deme \u{e7}eki</a>"
        );
        let w1254: &[u8] = b"<a>\xFE</a>";
        assert_eq!(
            decode_body(w1254, Some("text/xml; charset=windows-1254")).unwrap(),
            "<a>\u{15f}</a>"
        );
        assert!(matches!(
            decode_body(b"<a>\xFF</a>", Some("text/xml")),
            Err(ReadError::BadEncoding(_))
        ));
        assert!(matches!(
            decode_body(b"<a/>", Some("text/xml; charset=klingon")),
            Err(ReadError::BadEncoding(_))
        ));
        assert_eq!(decode_body(b"\xEF\xBB\xBF<a/>", None).unwrap(), "<a/>");
    }

    #[test]
    fn utf8_is_known_by_any_of_its_labels() {
        for ct in [
            "text/xml; charset=utf-8",
            "text/xml; charset=\"UTF-8\"",
            "text/xml;charset=utf8",
            "text/xml; charset=unicode-1-1-utf-8",
        ] {
            assert_eq!(
                decode_body("<a>ş</a>".as_bytes(), Some(ct)).unwrap(),
                "<a>ş</a>",
                "{ct}"
            );
            assert!(
                matches!(
                    decode_body(b"<a>\xFE</a>", Some(ct)),
                    Err(ReadError::BadEncoding(_))
                ),
                "{ct}"
            );
        }
        let declared = "<?xml version=\"1.0\" encoding=\"Utf-8\"?><a>ş</a>";
        assert_eq!(decode_body(declared.as_bytes(), None).unwrap(), declared);
    }
}
