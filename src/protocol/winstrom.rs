//! ABRA Flexi "winstrom" messages: the URL scheme, import documents in XML and JSON, and the
//! answers (record lists, import outcomes, errors) in either format.
//!
//! - URLs: `{prefix}/{company}/{evidence}.{xml|json}`, `.../{evidence}/{id}.{ext}` and
//!   `.../{evidence}/({filter}).{ext}`; the extension chooses the answer's format.
//! - Documents: `<winstrom version="1.0" atomic="false"><cenik id="1" action="delete">
//!   <kod>A</kod></cenik>...</winstrom>` or `{"winstrom": {"@version": "1.0", "cenik": [{"id":
//!   "1", "@action": "delete", "kod": "A"}]}}`: XML attributes are `@` keys in JSON (`id` is
//!   also accepted as an attribute or a member), several records per document, evidence-level
//!   `action` and `filter`, several identifiers per record (`123`, `code:ABC`, `ext:SYS:1`).
//! - Answers: every JSON value is a string, as Flexi writes them.

use std::borrow::Cow;

use serde_json::{Map, Value};
use std::fmt::Write as _;

use crate::call::{Form, Tree, Val};

use crate::protocol::xml::{self, Flush, Node, ReadError, XmlReader, escape_into};

/// The answer format, from the URL's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Xml,
    Json,
}

impl Format {
    pub fn ext(self) -> &'static str {
        match self {
            Format::Xml => "xml",
            Format::Json => "json",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Xml => "application/xml; charset=utf-8",
            Format::Json => "application/json; charset=utf-8",
        }
    }
}

/// What a URL names below the company.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The whole evidence.
    All,
    /// One record by identifier (`123`, `code:ABC`, `ext:SYS:1`).
    Id(String),
    /// The records a WQL filter selects.
    Filter(String),
    /// The evidence's properties (`/{evidence}/properties.json`).
    Properties,
    /// An action on one record (`/{evidence}/{id}/{action}.json`).
    Action { id: String, action: String },
}

/// A parsed winstrom URL path (after the prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathParts {
    pub company: String,
    pub evidence: String,
    pub target: Target,
    pub format: Format,
}

/// Why a URL is not a winstrom URL: the text for the client (HTTP 404, 406 for an unknown
/// format, 400 for a malformed filter or identifier).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    NotFound(String),
    UnknownFormat(String),
    BadRequest(String),
}

/// Prefixes of the identifiers Flexi accepts besides plain numbers.
const ID_PREFIXES: [&str; 7] = ["code", "ext", "ean", "plu", "vatid", "in", "iban"];

/// Checks a record identifier: `123`, or `code:ABC`, `ext:SYSTEM:1`, `ean:...`, `plu:...`,
/// `vatid:...`, `in:...`, `iban:...`; the reason in Flexi's words otherwise.
pub fn check_id(id: &str) -> Result<(), String> {
    let numeric = !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit());
    let prefixed = id
        .split_once(':')
        .is_some_and(|(prefix, rest)| ID_PREFIXES.contains(&prefix) && !rest.trim().is_empty());
    if numeric || prefixed {
        return Ok(());
    }
    let shown: String = id.chars().take(64).collect();
    Err(format!(
        "Neplatný identifikátor záznamu '{shown}': použijte číslo (123) nebo code:KÓD, ext:SYSTÉM:ID, ean:, plu:, vatid:, in:, iban:."
    ))
}

/// Parses the part of the path after the prefix: `{company}/{evidence}[/{id}|/({filter})].{ext}`
/// (percent-encoded).
pub fn parse_path(rest: &str) -> Result<PathParts, PathError> {
    let decoded = crate::percent::decode(rest).ok_or_else(|| {
        PathError::NotFound("cesta není platné UTF-8 / bad percent-encoding".into())
    })?;
    let rest = decoded.trim_start_matches('/');
    let (company, rest) = rest.split_once('/').ok_or_else(|| {
        PathError::NotFound("cesta musí být /c/{firma}/{evidence}.{xml|json}".into())
    })?;
    let (stem, ext) = rest
        .rsplit_once('.')
        .ok_or_else(|| PathError::UnknownFormat(String::new()))?;
    let format = match ext.to_ascii_lowercase().as_str() {
        "xml" => Format::Xml,
        "json" => Format::Json,
        other => return Err(PathError::UnknownFormat(other.to_string())),
    };
    let (evidence, target) = match stem.split_once('/') {
        None => (stem, None),
        Some((ev, t)) => (ev, Some(t)),
    };
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    };
    if !valid(company) || !valid(evidence) {
        return Err(PathError::NotFound(format!("neznámá cesta '{rest}'")));
    }
    let target = match target {
        None => Target::All,
        Some(t) if t.starts_with('(') && t.ends_with(')') && t.len() >= 2 => {
            Target::Filter(t[1..t.len() - 1].to_string())
        }
        Some("") => {
            return Err(PathError::BadRequest(
                "prázdný identifikátor záznamu".into(),
            ));
        }
        Some(t) if t.starts_with('(') => {
            // A filter without its closing parenthesis: where WQL says it goes wrong, or at
            // its end, where the ')' is missing.
            let inner = &t[1..];
            let err = match crate::protocol::wql::parse(inner) {
                Err(e) => e,
                Ok(_) => crate::protocol::wql::WqlError::at_end(inner),
            };
            return Err(PathError::BadRequest(err.to_string()));
        }
        Some("properties") => Target::Properties,
        Some(t) if t.starts_with('$') => {
            return Err(PathError::NotFound(format!(
                "'{}' tato služba nepodporuje (jen záznamy, filtry, properties a akce).",
                t.chars().take(32).collect::<String>()
            )));
        }
        Some(id) if !id.contains('/') => {
            check_id(id).map_err(PathError::BadRequest)?;
            Target::Id(id.to_string())
        }
        Some(t) if t.matches('/').count() == 1 => {
            let (id, action) = t.split_once('/').unwrap_or_default();
            check_id(id).map_err(PathError::BadRequest)?;
            if !valid(action) {
                return Err(PathError::NotFound(format!("neznámá cesta '{rest}'")));
            }
            Target::Action {
                id: id.to_string(),
                action: action.to_string(),
            }
        }
        Some(_) => {
            return Err(PathError::NotFound(format!("neznámá cesta '{rest}'")));
        }
    };
    Ok(PathParts {
        company: company.to_string(),
        evidence: evidence.to_string(),
        target,
        format,
    })
}

/// A value of a record's property, as the document gave it.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue<'i> {
    Null,
    Text(Cow<'i, str>),
    /// A JSON number's exact text.
    Number(String),
    Bool(bool),
}

impl RawValue<'_> {
    /// The value as text, for messages.
    pub fn text(&self) -> String {
        match self {
            RawValue::Null => String::new(),
            RawValue::Text(t) => t.to_string(),
            RawValue::Number(n) => n.clone(),
            RawValue::Bool(b) => b.to_string(),
        }
    }
}

/// One record of an import document.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<'i> {
    /// The element or member it came in (the evidence).
    pub evidence: String,
    pub ids: Vec<String>,
    pub action: Option<String>,
    pub filter: Option<String>,
    /// `create="..."`: what to do when the record does not exist.
    pub create: Mode,
    /// `update="..."`: what to do when it exists.
    pub update: Mode,
    pub fields: Vec<(String, RawValue<'i>)>,
}

impl Record<'_> {
    /// A record of `evidence` with no id, attribute or property yet.
    pub fn new(evidence: String) -> Self {
        Record {
            evidence,
            ids: Vec::new(),
            action: None,
            filter: None,
            create: Mode::Ok,
            update: Mode::Ok,
            fields: Vec::new(),
        }
    }

    /// Takes one of the record's attributes (`name` without `@`).
    fn set(&mut self, name: &str, value: &str) -> Result<(), DocumentError> {
        let mode = |v: &str| {
            Mode::parse(v.trim()).ok_or_else(|| {
                bad(format!(
                    "atribut '{name}' záznamu evidence '{}' smí být jen ok, ignore nebo fail, ne '{}'",
                    self.evidence,
                    v.chars().take(64).collect::<String>()
                ))
            })
        };
        match name {
            "action" => self.action = Some(value.trim().to_string()),
            "filter" => self.filter = Some(value.to_string()),
            "id" => self.ids.push(value.trim().to_string()),
            "create" => self.create = mode(value)?,
            "update" => self.update = mode(value)?,
            other => {
                return Err(bad(format!(
                    "atribut '{}' záznamu evidence '{}' není podporován (podporované: {})",
                    other.chars().take(64).collect::<String>(),
                    self.evidence,
                    RECORD_ATTRIBUTES.join(", ")
                )));
            }
        }
        Ok(())
    }
}

/// Flexi's `create` / `update` record attribute: go on as usual (`ok`, the default), leave the
/// record alone (`ignore`: it is skipped), or fail the record (`fail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Ok,
    Ignore,
    Fail,
}

impl Mode {
    fn parse(s: &str) -> Option<Mode> {
        match s {
            "ok" => Some(Mode::Ok),
            "ignore" => Some(Mode::Ignore),
            "fail" => Some(Mode::Fail),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Document<'i> {
    /// `atomic="false"` lets records succeed on their own; the default is all or nothing.
    pub atomic: bool,
    pub records: Vec<Record<'i>>,
}

/// Why a body is not a winstrom import document: always the sender's mistake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("{0}")]
    NotWinstrom(String),
}

impl DocumentError {
    /// Stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            DocumentError::Read(r) => r.code(),
            DocumentError::NotWinstrom(_) => "NOT_WINSTROM",
        }
    }
}

fn bad(msg: impl Into<String>) -> DocumentError {
    DocumentError::NotWinstrom(msg.into())
}

/// The attributes a record may carry (XML attributes, `@` members in JSON); any other is
/// refused, never ignored (`removeExternalIds` included: the bridge cannot do it).
const RECORD_ATTRIBUTES: &[&str] = &["id", "action", "filter", "create", "update"];

/// Decodes an import document; the format is taken from the body (`<` or `{`).
pub fn decode_document(
    text: &str,
    max_depth: usize,
    max_records: usize,
) -> Result<Document<'_>, DocumentError> {
    match text.trim_start().chars().next() {
        Some('<') => decode_xml(text, max_depth, max_records),
        Some('{') => decode_json(text, max_records),
        Some(_) => Err(bad(
            "dokument musí být XML (<winstrom>) nebo JSON ({\"winstrom\": ...})",
        )),
        None => Err(bad("prázdný dokument")),
    }
}

fn decode_xml(
    text: &str,
    max_depth: usize,
    max_records: usize,
) -> Result<Document<'_>, DocumentError> {
    let mut r = XmlReader::new(text, max_depth);
    let root = loop {
        match r.next_node()? {
            Node::Start(s) => break s,
            Node::Text(t) if t.trim().is_empty() => continue,
            _ => return Err(bad("kořenový element musí být <winstrom>")),
        }
    };
    if xml::local_name(&root) != "winstrom" {
        return Err(bad(format!(
            "kořenový element je <{}>, očekáván <winstrom>",
            xml::local_name(&root)
        )));
    }
    let atomic = !matches!(
        r.attribute(&root, "", "atomic")?.as_deref().map(str::trim),
        Some("false")
    );
    let mut records = Vec::new();
    loop {
        match r.next_node()? {
            Node::Start(rec) => {
                if records.len() >= max_records {
                    return Err(bad(format!("dokument má více než {max_records} záznamů")));
                }
                let evidence = xml::local_name(&rec);
                let mut record = Record::new(evidence);
                if !rec.attributes_raw().iter().all(u8::is_ascii_whitespace) {
                    // The reader has checked the attributes' syntax and number; one given twice
                    // is refused here (which was meant is not known).
                    for a in rec.attributes() {
                        let a = a.map_err(|e| {
                            bad(format!(
                                "atributy záznamu evidence '{}': {e}",
                                record.evidence
                            ))
                        })?;
                        let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
                        if key == "xmlns" || key.starts_with("xmlns:") {
                            continue;
                        }
                        let value = a
                            .unescape_value()
                            .map_err(|e| bad(format!("atribut '{key}': {e}")))?;
                        record.set(&key, &value)?;
                    }
                }
                let mut seen = std::collections::HashSet::new();
                loop {
                    match r.next_node()? {
                        Node::Start(f) => {
                            let name = xml::local_name(&f);
                            // An error names the field (put into its path only when there is one).
                            let text = r.read_text(&record.evidence).map_err(|e| {
                                let at = record.evidence.len();
                                e.with_segment(at, &name)
                            })?;
                            if name == "id" {
                                record.ids.push(text.trim().to_string());
                            } else if !seen.insert(name.clone()) {
                                return Err(ReadError::RepeatedElement {
                                    path: format!("{}/{name}", record.evidence),
                                }
                                .into());
                            } else {
                                record.fields.push((name, RawValue::Text(text)));
                            }
                        }
                        Node::End => break,
                        Node::Text(t) if t.trim().is_empty() => {}
                        Node::Text(_) => {
                            return Err(bad(format!(
                                "text přímo v <{}>: vlastnosti patří do elementů",
                                record.evidence
                            )));
                        }
                        Node::Eof => {
                            return Err(ReadError::MalformedXml(
                                "unexpected end of document".into(),
                            )
                            .into());
                        }
                    }
                }
                records.push(record);
            }
            Node::End => break,
            Node::Text(t) if t.trim().is_empty() => {}
            Node::Text(_) => return Err(bad("text přímo v <winstrom>")),
            Node::Eof => {
                return Err(ReadError::MalformedXml("unexpected end of document".into()).into());
            }
        }
    }
    loop {
        match r.next_node()? {
            Node::Eof => break,
            Node::Text(t) if t.trim().is_empty() => {}
            _ => return Err(ReadError::MalformedXml("content after </winstrom>".into()).into()),
        }
    }
    Ok(Document { atomic, records })
}

/// An offending value as an error quotes it: at most 64 characters, then `…` (a client's
/// 5,000-character value is not sent back whole).
fn quoted(v: &str) -> String {
    let mut q: String = v.chars().take(64).collect();
    if q.len() < v.len() {
        q.push('…');
    }
    q
}

fn json_scalar(v: &Value) -> Option<RawValue<'static>> {
    Some(match v {
        Value::Null => RawValue::Null,
        Value::String(s) => RawValue::Text(Cow::Owned(s.clone())),
        Value::Number(n) => RawValue::Number(n.to_string()),
        Value::Bool(b) => RawValue::Bool(*b),
        _ => return None,
    })
}

fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A JSON object's members in the order they came (and each of a name given twice): a
/// document's evidences run in its order, as its XML form's do. serde_json's own map sorts them.
struct Ordered(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Ordered, A::Error> {
                let mut out = Vec::new();
                while let Some(member) = m.next_entry::<String, Value>()? {
                    out.push(member);
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(Members)
    }
}

/// A document's top level: only `winstrom` is read.
#[derive(serde::Deserialize)]
struct Top {
    winstrom: Ordered,
}

fn decode_json(text: &str, max_records: usize) -> Result<Document<'static>, DocumentError> {
    // Read once, keeping the order of the document's members.
    let Top {
        winstrom: Ordered(w),
    } = serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => bad("dokument musí být {\"winstrom\": {...}}"),
        _ => bad(format!("dokument není platný JSON: {e}")),
    })?;
    let member = |name: &str| w.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v);
    let atomic = !matches!(
        member("@atomic"),
        Some(Value::String(s)) if s == "false"
    ) && member("@atomic") != Some(&Value::Bool(false));
    let mut records = Vec::new();
    for (evidence, content) in &w {
        if evidence.starts_with('@') {
            continue;
        }
        let items: Vec<&Value> = match content {
            Value::Array(a) => a.iter().collect(),
            single => vec![single],
        };
        for item in items {
            if records.len() >= max_records {
                return Err(bad(format!("dokument má více než {max_records} záznamů")));
            }
            let obj = item
                .as_object()
                .ok_or_else(|| bad(format!("záznam evidence '{evidence}' musí být objekt")))?;
            records.push(json_record(evidence, obj)?);
        }
    }
    Ok(Document { atomic, records })
}

fn json_record(evidence: &str, obj: &Map<String, Value>) -> Result<Record<'static>, DocumentError> {
    let mut r = Record::new(evidence.to_string());
    for (k, v) in obj {
        match k.as_str() {
            "id" | "@id" => match v {
                Value::Array(ids) => {
                    for i in ids {
                        r.ids
                            .push(id_text(i).ok_or_else(|| bad("id musí být text nebo číslo"))?);
                    }
                }
                other => r
                    .ids
                    .push(id_text(other).ok_or_else(|| bad("id musí být text nebo číslo"))?),
            },
            k if k.starts_with('@') => {
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(_) | Value::Bool(_) => v.to_string(),
                    _ => return Err(bad(format!("atribut '{k}' musí být text"))),
                };
                r.set(&k[1..], &text)?;
            }
            k => {
                let raw = json_scalar(v).ok_or_else(|| {
                    bad(format!(
                        "vlastnost '{k}' evidence '{evidence}' musí být jednoduchá hodnota (vnořené záznamy nejsou podporovány)"
                    ))
                })?;
                r.fields.push((k.to_string(), raw));
            }
        }
    }
    Ok(r)
}

// ---- answers ------------------------------------------------------------------------------

/// The counts of an import.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
    pub skipped: usize,
    pub failed: usize,
}

/// One problem with one record (`results[].errors[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordError {
    pub message: String,
    pub for_: Option<String>,
    pub path: Option<String>,
    pub value: Option<String>,
    pub code: Option<String>,
}

/// The outcome of one record of an import (`results[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub id: Option<String>,
    pub request_id: Option<String>,
    pub reference: Option<String>,
    pub errors: Vec<RecordError>,
}

/// What the winstrom door answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Records of one evidence, written already in the format asked for ([`write_rows`]).
    Rows(String),
    /// The outcome of an import document.
    Import {
        success: bool,
        stats: Stats,
        results: Vec<Outcome>,
        message: Option<String>,
    },
    /// A failure that concerns no record.
    Error { message: String },
    /// The properties of an evidence, as `properties.json` lists them.
    Properties {
        evidence: String,
        properties: Vec<Property>,
    },
}

/// One property of an evidence, as `properties.json` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Property {
    /// `propertyName`: the name in records and filters.
    pub name: String,
    /// `name` and `title`: the label people see.
    pub title: String,
    /// Flexi's type name (`integer`, `string`, `numeric`, `logic`, `date`).
    pub ty: &'static str,
    pub writable: bool,
    pub sortable: bool,
    pub filterable: bool,
    pub in_summary: bool,
}

impl Property {
    /// Its members in the order Flexi writes them.
    fn members(&self) -> [(&'static str, String); 9] {
        let b = |v: bool| v.to_string();
        [
            ("propertyName", self.name.clone()),
            ("name", self.title.clone()),
            ("title", self.title.clone()),
            ("type", self.ty.to_string()),
            ("isVisible", b(true)),
            ("isSortable", b(self.sortable)),
            ("isFilterable", b(self.filterable)),
            ("isWritable", b(self.writable)),
            ("inSummary", b(self.in_summary)),
        ]
    }
}

/// The user name and password of a login (`/login-logout/login.json`): a JSON object
/// `{"username", "password"}` or a form `username=..&password=..`.
pub fn decode_login(body: &str) -> Option<(String, String)> {
    if body.trim_start().starts_with('{') {
        let v: Value = serde_json::from_str(body).ok()?;
        let get = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        return Some((get("username")?, get("password")?));
    }
    let mut user = None;
    let mut password = None;
    for (k, v) in form_urlencoded::parse(body.trim().as_bytes()) {
        match &*k {
            "username" => user = Some(v.into_owned()),
            "password" => password = Some(v.into_owned()),
            _ => {}
        }
    }
    Some((user?, password?))
}

/// The answer to a login (the session id), a logout or keep-alive (none), or why it failed.
pub fn encode_login(outcome: Result<Option<&str>, &str>, format: Format) -> String {
    match (format, outcome) {
        (Format::Json, Ok(Some(id))) => {
            serde_json::json!({ "success": true, "authSessionId": id }).to_string()
        }
        (Format::Json, Ok(None)) => serde_json::json!({ "success": true }).to_string(),
        (Format::Json, Err(reason)) => {
            serde_json::json!({ "success": false, "errors": { "reason": reason } }).to_string()
        }
        (Format::Xml, outcome) => {
            let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<login>");
            match outcome {
                Ok(id) => {
                    element(&mut out, "success", "true");
                    if let Some(id) = id {
                        element(&mut out, "authSessionId", id);
                    }
                }
                Err(reason) => {
                    element(&mut out, "success", "false");
                    out.push_str("<errors>");
                    element(&mut out, "reason", reason);
                    out.push_str("</errors>");
                }
            }
            out.push_str("</login>\n");
            out
        }
    }
}

/// Writes a reply in the format the URL asked for.
/// A record's property as it is read from a backend row: (its Flexi name, the backend's name).
pub type Column<'a> = (&'a str, &'a str);

/// Records of `evidence` as Flexi writes them in `format` (with `rowCount` when given), each
/// read from an item of the backend's `rows` (a list; anything else is no records) while it
/// is written: the properties of `columns`, in their order, absent and null values left out.
/// Nothing is built between the backend's answer and the text, so a large list is held as
/// the answer read in place and the text being written. `size_hint`: the size of the answer
/// the rows are read from (0 when not known), which the text is about the size of: it is
/// given that room at once rather than grown by doubling. With `flush`, the text is handed to
/// it whenever it has reached `at` bytes (between records), for an answer sent while it is
/// written; what is returned is the rest.
pub(crate) fn write_rows<'t, T: Tree<'t>>(
    format: Format,
    evidence: &str,
    columns: &[Column<'_>],
    rows: Option<T>,
    row_count: Option<u64>,
    size_hint: usize,
    flush: Option<(&mut Flush<'_>, usize)>,
) -> String {
    let n = match rows.map(Tree::form) {
        Some(Form::List(n)) => n,
        _ => 0,
    };
    let mut records = Records::begin(format, evidence, columns, row_count, size_hint, flush);
    for row in (0..n).filter_map(|i| rows.and_then(|r| r.item(i))) {
        records.record(row);
    }
    records.end()
}

/// A list of records being written ([`write_rows`]), one record at a time: for rows that are
/// read one at a time themselves.
pub(crate) struct Records<'w, 'f> {
    json: bool,
    evidence: &'w str,
    columns: &'w [Column<'w>],
    out: String,
    /// JSON strings are escaped by serde_json, through this buffer.
    scratch: Vec<u8>,
    written: usize,
    flush: Option<(&'w mut Flush<'f>, usize)>,
}

impl<'w, 'f> Records<'w, 'f> {
    /// The list's start; arguments as for [`write_rows`].
    pub(crate) fn begin(
        format: Format,
        evidence: &'w str,
        columns: &'w [Column<'w>],
        row_count: Option<u64>,
        size_hint: usize,
        flush: Option<(&'w mut Flush<'f>, usize)>,
    ) -> Self {
        let room = match &flush {
            Some((_, at)) => at + at / 8,
            None => size_hint.saturating_add(256),
        };
        let mut w = Records {
            json: format == Format::Json,
            evidence,
            columns,
            out: String::with_capacity(room),
            scratch: Vec::new(),
            written: 0,
            flush,
        };
        let out = &mut w.out;
        if w.json {
            out.push_str("{\"winstrom\":{\"@version\":\"1.0\",");
            if let Some(count) = row_count {
                let _ = write!(out, "\"@rowCount\":\"{count}\",");
            }
            json_string(out, &mut w.scratch, evidence);
            out.push_str(":[");
        } else {
            out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<winstrom version=\"1.0\"");
            if let Some(count) = row_count {
                let _ = write!(out, " rowCount=\"{count}\"");
            }
            out.push('>');
        }
        w
    }

    /// A record, read from a backend row.
    pub(crate) fn record<'t, T: Tree<'t>>(&mut self, row: T) {
        let cells = self
            .columns
            .iter()
            .filter_map(move |(name, backend)| Some((*name, cell(row.member(backend)?)?)));
        let out = &mut self.out;
        if self.json {
            out.push_str(if self.written == 0 { "{" } else { ",{" });
            for (j, (name, text)) in cells.enumerate() {
                if j > 0 {
                    out.push(',');
                }
                json_string(out, &mut self.scratch, name);
                out.push(':');
                json_string(out, &mut self.scratch, &text);
            }
            out.push('}');
        } else {
            out.push('<');
            out.push_str(self.evidence);
            out.push('>');
            for (name, text) in cells {
                element(out, name, &text);
            }
            out.push_str("</");
            out.push_str(self.evidence);
            out.push('>');
        }
        self.written += 1;
        if let Some((f, at)) = &mut self.flush
            && out.len() >= *at
        {
            f(out);
        }
    }

    /// The list's end: the text not yet handed to `flush`.
    pub(crate) fn end(mut self) -> String {
        self.out
            .push_str(if self.json { "]}}" } else { "</winstrom>\n" });
        self.out
    }
}

/// A property's value as Flexi writes it: a string as it is, a number as its JSON text, a
/// boolean as `true` or `false`, a nested value as its JSON text; `None` for null.
fn cell<'t, T: Tree<'t>>(v: T) -> Option<Cow<'t, str>> {
    match v.form() {
        Form::Null => None,
        Form::Scalar(Val::Str(s) | Val::Num(s)) => Some(s),
        Form::Scalar(Val::Int(n)) => Some(Cow::Owned(n.to_string())),
        Form::Scalar(Val::Bool(b)) => Some(Cow::Borrowed(if b { "true" } else { "false" })),
        Form::Scalar(other) => Some(Cow::Owned(other.to_json().to_string())),
        Form::List(_) | Form::Obj => v.to_json().map(|j| Cow::Owned(j.to_string())),
    }
}

/// `s` as a JSON string, escaped by serde_json (into `scratch`, which it reuses).
fn json_string(out: &mut String, scratch: &mut Vec<u8>, s: &str) {
    scratch.clear();
    // Writing to a Vec cannot fail, and serde_json writes UTF-8.
    let _ = serde_json::to_writer(&mut *scratch, s);
    out.push_str(std::str::from_utf8(scratch).unwrap_or_default());
}

pub fn encode(reply: &Reply, format: Format) -> String {
    match format {
        Format::Json => encode_json(reply),
        Format::Xml => encode_xml(reply),
    }
}

/// JSON with members in the order Flexi writes them (serde_json's map would sort them).
enum J {
    S(String),
    O(Vec<(String, J)>),
    A(Vec<J>),
}

impl J {
    fn write(&self, out: &mut String) {
        let key = |out: &mut String, k: &str| {
            out.push_str(&Value::String(k.to_string()).to_string());
            out.push(':');
        };
        match self {
            J::S(v) => out.push_str(&Value::String(v.clone()).to_string()),
            J::O(members) => {
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    key(out, k);
                    v.write(out);
                }
                out.push('}');
            }
            J::A(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write(out);
                }
                out.push(']');
            }
        }
    }
}

fn s(v: impl ToString) -> J {
    J::S(v.to_string())
}

fn encode_json(reply: &Reply) -> String {
    let mut w: Vec<(String, J)> = vec![("@version".into(), s("1.0"))];
    match reply {
        Reply::Rows(written) => return written.clone(),
        Reply::Import {
            success,
            stats,
            results,
            message,
        } => {
            w.push(("success".into(), s(success)));
            w.push((
                "stats".into(),
                J::O(vec![
                    ("created".into(), s(stats.created)),
                    ("updated".into(), s(stats.updated)),
                    ("deleted".into(), s(stats.deleted)),
                    ("skipped".into(), s(stats.skipped)),
                    ("failed".into(), s(stats.failed)),
                ]),
            ));
            let results = results
                .iter()
                .map(|o| {
                    let mut m = Vec::new();
                    for (k, v) in [
                        ("id", &o.id),
                        ("request-id", &o.request_id),
                        ("ref", &o.reference),
                    ] {
                        if let Some(v) = v {
                            m.push((k.to_string(), s(v)));
                        }
                    }
                    if !o.errors.is_empty() {
                        let errors = o
                            .errors
                            .iter()
                            .map(|e| {
                                let mut m = vec![("message".to_string(), s(&e.message))];
                                let value = e.value.as_deref().map(quoted);
                                for (k, v) in [
                                    ("for", &e.for_),
                                    ("path", &e.path),
                                    ("value", &value),
                                    ("code", &e.code),
                                ] {
                                    if let Some(v) = v {
                                        m.push((k.to_string(), s(v)));
                                    }
                                }
                                J::O(m)
                            })
                            .collect();
                        m.push(("errors".to_string(), J::A(errors)));
                    }
                    J::O(m)
                })
                .collect();
            w.push(("results".into(), J::A(results)));
            if let Some(m) = message {
                w.push(("message".into(), s(m)));
            }
        }
        Reply::Error { message } => {
            w.push(("success".into(), s("false")));
            w.push(("message".into(), s(message)));
        }
        Reply::Properties {
            evidence,
            properties,
        } => {
            let list = properties
                .iter()
                .map(|p| {
                    J::O(
                        p.members()
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), J::S(v)))
                            .collect(),
                    )
                })
                .collect();
            let mut out = String::with_capacity(256);
            J::O(vec![(
                "properties".into(),
                J::O(vec![
                    ("@evidenceName".into(), s(evidence)),
                    ("property".into(), J::A(list)),
                ]),
            )])
            .write(&mut out);
            return out;
        }
    }
    let mut out = String::with_capacity(256);
    J::O(vec![("winstrom".into(), J::O(w))]).write(&mut out);
    out
}

fn element(out: &mut String, name: &str, text: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    escape_into(out, text);
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

fn encode_xml(reply: &Reply) -> String {
    let mut out =
        String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<winstrom version=\"1.0\"");
    match reply {
        Reply::Rows(written) => return written.clone(),
        Reply::Import {
            success,
            stats,
            results,
            message,
        } => {
            out.push('>');
            element(&mut out, "success", &success.to_string());
            out.push_str("<stats>");
            for (k, v) in [
                ("created", stats.created),
                ("updated", stats.updated),
                ("deleted", stats.deleted),
                ("skipped", stats.skipped),
                ("failed", stats.failed),
            ] {
                element(&mut out, k, &v.to_string());
            }
            out.push_str("</stats><results>");
            for o in results {
                out.push_str("<result>");
                for (k, v) in [
                    ("id", &o.id),
                    ("request-id", &o.request_id),
                    ("ref", &o.reference),
                ] {
                    if let Some(v) = v {
                        element(&mut out, k, v);
                    }
                }
                if !o.errors.is_empty() {
                    out.push_str("<errors>");
                    for e in &o.errors {
                        out.push_str("<error>");
                        element(&mut out, "message", &e.message);
                        let value = e.value.as_deref().map(quoted);
                        for (k, v) in [
                            ("for", &e.for_),
                            ("path", &e.path),
                            ("value", &value),
                            ("code", &e.code),
                        ] {
                            if let Some(v) = v {
                                element(&mut out, k, v);
                            }
                        }
                        out.push_str("</error>");
                    }
                    out.push_str("</errors>");
                }
                out.push_str("</result>");
            }
            out.push_str("</results>");
            if let Some(m) = message {
                element(&mut out, "message", m);
            }
        }
        Reply::Error { message } => {
            out.push('>');
            element(&mut out, "success", "false");
            element(&mut out, "message", message);
        }
        Reply::Properties {
            evidence,
            properties,
        } => {
            let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
            out.push_str("<properties evidenceName=\"");
            escape_into(&mut out, evidence);
            out.push_str("\">");
            for p in properties {
                out.push_str("<property>");
                for (k, v) in p.members() {
                    element(&mut out, k, &v);
                }
                out.push_str("</property>");
            }
            out.push_str("</properties>\n");
            return out;
        }
    }
    out.push_str("</winstrom>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_company_evidence_target_and_format() {
        let p = parse_path("demo/kusovnik.xml").unwrap();
        assert_eq!(
            (p.company.as_str(), p.evidence.as_str(), &p.target, p.format),
            ("demo", "kusovnik", &Target::All, Format::Xml)
        );
        assert_eq!(
            parse_path("demo/cenik/123.json").unwrap().target,
            Target::Id("123".into())
        );
        assert_eq!(
            parse_path("demo/cenik/code:A.B.json").unwrap().target,
            Target::Id("code:A.B".into())
        );
        assert_eq!(
            parse_path("demo/cenik/(nazev%20begins%20'A').json")
                .unwrap()
                .target,
            Target::Filter("nazev begins 'A'".into())
        );
        assert_eq!(
            parse_path("demo/cenik/(kod = 'x/y.z').json")
                .unwrap()
                .target,
            Target::Filter("kod = 'x/y.z'".into())
        );
        assert_eq!(
            parse_path("demo/cenik.csv"),
            Err(PathError::UnknownFormat("csv".into()))
        );
        assert!(matches!(parse_path("demo"), Err(PathError::NotFound(_))));
        assert!(matches!(
            parse_path("demo/../x.json"),
            Err(PathError::NotFound(_))
        ));
    }

    #[test]
    fn xml_and_json_documents_decode_to_the_same_records() {
        let xml = r#"<winstrom version="1.0"><kusovnik id="123" action="prepocti-nakupni-cenu" /></winstrom>"#;
        let json =
            r#"{"winstrom": {"kusovnik": {"id": "123", "@action": "prepocti-nakupni-cenu"}}}"#;
        let a = decode_document(xml, 16, 10).unwrap();
        let b = decode_document(json, 16, 10).unwrap();
        assert_eq!(a, b);
        assert!(a.atomic);
        assert_eq!(a.records[0].ids, vec!["123"]);
        let xml = r#"<winstrom version="1.0" atomic="false"><cenik><id>1</id><id>code:A</id><nazev>Deska &amp; noha</nazev></cenik><cenik filter="kod = 'X'" action="delete"/></winstrom>"#;
        let d = decode_document(xml, 16, 10).unwrap();
        assert!(!d.atomic);
        assert_eq!(d.records[0].ids, vec!["1", "code:A"]);
        assert_eq!(
            d.records[0].fields,
            vec![("nazev".to_string(), RawValue::Text("Deska & noha".into()))]
        );
        assert_eq!(d.records[1].filter.as_deref(), Some("kod = 'X'"));
        let json = r#"{"winstrom": {"@atomic": "false", "cenik": [{"id": ["1", "code:A"], "nakupCena": 12.50, "aktivni": true}]}}"#;
        let d = decode_document(json, 16, 10).unwrap();
        assert_eq!(
            d.records[0].fields,
            vec![
                ("aktivni".to_string(), RawValue::Bool(true)),
                ("nakupCena".to_string(), RawValue::Number("12.50".into()))
            ]
        );
        assert!(decode_document("<a/>", 16, 10).is_err());
        // A JSON document's evidences in its order (serde_json's map would sort them), each
        // of a name given twice.
        let d = decode_document(
            r#"{"winstrom": {"@atomic": "false", "kusovnik": {"id": "1"}, "cenik": [{"kod": "A"}], "kusovnik": {"id": "2"}}}"#,
            16,
            10,
        )
        .unwrap();
        let order: Vec<(&str, Vec<String>)> = d
            .records
            .iter()
            .map(|r| (r.evidence.as_str(), r.ids.clone()))
            .collect();
        assert_eq!(
            order,
            [
                ("kusovnik", vec!["1".to_string()]),
                ("cenik", vec![]),
                ("kusovnik", vec!["2".to_string()])
            ]
        );
        assert!(!d.atomic);
        assert!(decode_document(r#"{"winstrom": {"cenik": {"x": {"y": 1}}}}"#, 16, 10).is_err());
        assert!(decode_document(r#"<winstrom><cenik/><cenik/></winstrom>"#, 16, 1).is_err());
    }

    #[test]
    fn answers_follow_flexi_shapes() {
        let r = Reply::Import {
            success: true,
            stats: Stats {
                updated: 1,
                ..Stats::default()
            },
            results: vec![Outcome {
                id: Some("123".into()),
                request_id: Some("123".into()),
                reference: Some("/c/demo/kusovnik/123.json".into()),
                errors: vec![],
            }],
            message: None,
        };
        assert_eq!(
            encode(&r, Format::Json),
            r#"{"winstrom":{"@version":"1.0","success":"true","stats":{"created":"0","updated":"1","deleted":"0","skipped":"0","failed":"0"},"results":[{"id":"123","request-id":"123","ref":"/c/demo/kusovnik/123.json"}]}}"#
        );
        assert_eq!(
            encode(&r, Format::Xml),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<winstrom version=\"1.0\"><success>true</success><stats><created>0</created><updated>1</updated><deleted>0</deleted><skipped>0</skipped><failed>0</failed></stats><results><result><id>123</id><request-id>123</request-id><ref>/c/demo/kusovnik/123.json</ref></result></results></winstrom>\n"
        );
    }

    #[test]
    fn records_are_written_from_the_backend_rows_as_they_are_read() {
        use crate::call::{Doc, Val};
        let answer = br#"{"items": [
            {"id": 1, "code": "A<&>\"1", "price": 12.50, "active": true, "note": null},
            {"id": 2, "code": "tab\there", "tags": ["x", 2], "extra": "not a column"},
            {"code": "C"}
        ], "total": 40}"#;
        let answer = Val::from_json_slice(answer).expect("JSON");
        let rows = Doc::Call(&answer).member("items");
        let columns = [
            ("id", "id"),
            ("kod", "code"),
            ("cenaZakl", "price"),
            ("aktivni", "active"),
            ("poznam", "note"),
            ("stitky", "tags"),
        ];
        // Numbers keep their text, booleans are words, null and absent values are left out,
        // a nested value is its JSON text; members the columns do not name are not written.
        assert_eq!(
            write_rows(Format::Xml, "cenik", &columns, rows, Some(40), 0, None),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<winstrom version=\"1.0\" rowCount=\"40\">\
             <cenik><id>1</id><kod>A&lt;&amp;&gt;&quot;1</kod><cenaZakl>12.50</cenaZakl><aktivni>true</aktivni></cenik>\
             <cenik><id>2</id><kod>tab\there</kod><stitky>[&quot;x&quot;,2]</stitky></cenik>\
             <cenik><kod>C</kod></cenik></winstrom>\n"
        );
        assert_eq!(
            write_rows(Format::Json, "cenik", &columns[..2], rows, None, 0, None),
            r#"{"winstrom":{"@version":"1.0","cenik":[{"id":"1","kod":"A<&>\"1"},{"id":"2","kod":"tab\there"},{"kod":"C"}]}}"#
        );
        // Handed away in pieces between records once the text has reached `at`: the pieces
        // and the rest are the whole text.
        let mut pieces: Vec<String> = Vec::new();
        let mut flush = |out: &mut String| pieces.push(std::mem::take(out));
        let rest = write_rows(
            Format::Xml,
            "cenik",
            &columns,
            rows,
            Some(40),
            0,
            Some((&mut flush, 60)),
        );
        assert!(pieces.len() >= 2, "{pieces:?}");
        assert!(pieces.iter().all(|p| p.ends_with("</cenik>")), "{pieces:?}");
        assert_eq!(
            pieces.concat() + &rest,
            write_rows(Format::Xml, "cenik", &columns, rows, Some(40), 0, None)
        );
        // Rows that are not a list, or none at all: no records.
        let not_a_list = Doc::Call(&answer).member("total");
        for rows in [not_a_list, None] {
            assert_eq!(
                write_rows(Format::Json, "cenik", &columns, rows, Some(0), 0, None),
                r#"{"winstrom":{"@version":"1.0","@rowCount":"0","cenik":[]}}"#
            );
        }
    }
}
