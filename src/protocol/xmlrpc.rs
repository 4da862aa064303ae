//! XML-RPC messages: decoding a `methodCall`, converting its values to and from the neutral
//! call model by the operation's schema, and writing `methodResponse`s and faults.
//!
//! Parsing runs on the same bounded, DTD-refusing [`XmlReader`] as SOAP (depth, attribute and
//! entity limits; exact number text kept), so XML-RPC gets the same protections and decimals
//! stay exact.
//!
//! Type rules (README, "XML-RPC"): parameters are converted by the WSDL type of the part they
//! fill; a wrapper type whose only child repeats (`IntArray` -> `item`) is an XML-RPC array;
//! 64-bit integers are accepted as `i8`, as a string of digits or as an integral `double`, and
//! written as `i4` when they fit, else as `i8` when the client reads it, else as a string.

use std::borrow::Cow;
use std::fmt::Write as _;

use base64::Engine;

use crate::call::{Form, Tree, Val};
use crate::protocol::xml::{
    self, Flush, Node, ReadError, ShapeError, XmlReader, escape_into, json_to_simple,
};
use crate::schema::{ComplexType, ElementDecl, Operation, Schema, SimpleKind, TypeDef};

/// A value as the client sent it. Numbers keep their text; nothing is typed by the schema yet.
#[derive(Debug, Clone, PartialEq)]
pub enum XVal<'i> {
    Int(i64),
    Bool(bool),
    Str(Cow<'i, str>),
    /// The text of a `double`, validated as a finite number.
    Double(Cow<'i, str>),
    DateTime(Cow<'i, str>),
    /// Base64 text without white space, validated.
    Base64(Cow<'i, str>),
    Struct(Vec<(Cow<'i, str>, XVal<'i>)>),
    Array(Vec<XVal<'i>>),
    /// An array whose items are all integers, held as 8 bytes an item instead of an `XVal`
    /// each (32): a 1 MB array of ids is tens of thousands of items. Read as an `Array` of
    /// `Int`s everywhere ([`XVal::into_array`]).
    Ints(Vec<i64>),
    Nil,
}

impl XVal<'_> {
    fn kind(&self) -> &'static str {
        match self {
            XVal::Int(_) => "an int",
            XVal::Bool(_) => "a boolean",
            XVal::Str(_) => "a string",
            XVal::Double(_) => "a double",
            XVal::DateTime(_) => "a dateTime.iso8601",
            XVal::Base64(_) => "base64",
            XVal::Struct(_) => "a struct",
            XVal::Array(_) | XVal::Ints(_) => "an array",
            XVal::Nil => "nil",
        }
    }

    /// The value with its text owned, free of the request's text.
    pub fn into_owned(self) -> XVal<'static> {
        let own = |s: Cow<'_, str>| Cow::Owned(s.into_owned());
        match self {
            XVal::Int(i) => XVal::Int(i),
            XVal::Bool(b) => XVal::Bool(b),
            XVal::Str(s) => XVal::Str(own(s)),
            XVal::Double(s) => XVal::Double(own(s)),
            XVal::DateTime(s) => XVal::DateTime(own(s)),
            XVal::Base64(s) => XVal::Base64(own(s)),
            XVal::Struct(members) => XVal::Struct(
                members
                    .into_iter()
                    .map(|(k, v)| (own(k), v.into_owned()))
                    .collect(),
            ),
            XVal::Array(items) => XVal::Array(items.into_iter().map(XVal::into_owned).collect()),
            XVal::Ints(ints) => XVal::Ints(ints),
            XVal::Nil => XVal::Nil,
        }
    }

    /// The items of an array (`Err` with the value when it is not one).
    pub fn into_array(self) -> Result<Vec<Self>, Self> {
        match self {
            XVal::Array(items) => Ok(items),
            XVal::Ints(ints) => Ok(ints.into_iter().map(XVal::Int).collect()),
            other => Err(other),
        }
    }

    /// The string of a `Str` value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            XVal::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// A decoded `methodCall`.
#[derive(Debug, Clone)]
pub struct MethodCall<'i> {
    pub name: Cow<'i, str>,
    pub params: Vec<XVal<'i>>,
    /// The client sent an `i8` (so it can read one).
    pub uses_i8: bool,
}

/// The XML-RPC type name of a fault's standard codes (<http://xmlrpc-epi.sourceforge.net/specs/rfc.fault_codes.php>).
pub const PARSE_ERROR: i32 = -32700;
pub const INVALID_REQUEST: i32 = -32600;
pub const METHOD_NOT_FOUND: i32 = -32601;
pub const INVALID_PARAMS: i32 = -32602;
pub const INTERNAL_ERROR: i32 = -32603;

/// Why a request is not an XML-RPC call, or its parameters do not fit the operation: always
/// the sender's mistake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlRpcError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("the body is not an XML-RPC methodCall: {0}")]
    NotXmlRpc(String),
    #[error("invalid parameters: {0}")]
    InvalidParams(String),
}

impl XmlRpcError {
    /// Stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            XmlRpcError::Read(r) => r.code(),
            XmlRpcError::NotXmlRpc(_) => "NOT_XMLRPC",
            XmlRpcError::InvalidParams(_) => "INVALID_PARAMS",
        }
    }

    /// The standard `faultCode`: -32700 for a message that is not well formed, -32600 for one
    /// that is not a call, -32602 for parameters that do not fit.
    pub fn fault_code(&self) -> i32 {
        match self {
            XmlRpcError::Read(r) if r.is_malformed() => PARSE_ERROR,
            XmlRpcError::NotXmlRpc(_) => INVALID_REQUEST,
            XmlRpcError::Read(_) | XmlRpcError::InvalidParams(_) => INVALID_PARAMS,
        }
    }
}

// ---- decoding ---------------------------------------------------------------------------

fn invalid(msg: impl Into<String>) -> XmlRpcError {
    XmlRpcError::NotXmlRpc(msg.into())
}

fn next_start<'i>(r: &mut XmlReader<'i>, what: &str) -> Result<Option<String>, XmlRpcError> {
    loop {
        match r.next_node()? {
            Node::Start(s) => return Ok(Some(xml::local_name(&s))),
            Node::Text(t) if t.trim().is_empty() => continue,
            Node::Text(t) => {
                return Err(invalid(format!(
                    "unexpected text '{}' where {what} was expected",
                    t.trim().chars().take(40).collect::<String>()
                )));
            }
            Node::End | Node::Eof => return Ok(None),
        }
    }
}

/// Decodes a `methodCall` document.
pub fn decode_call(text: &str, max_depth: usize) -> Result<MethodCall<'_>, XmlRpcError> {
    let mut r = XmlReader::new(text, max_depth);
    let mut uses_i8 = false;
    // Text instead of a root element, or nothing at all, is not an XML document (-32700).
    let not_xml = |m: String| XmlRpcError::from(ReadError::MalformedXml(m));
    match next_start(&mut r, "<methodCall>") {
        Ok(Some(n)) if n == "methodCall" => {}
        Ok(Some(n)) => {
            return Err(invalid(format!(
                "the root element is <{n}>, expected <methodCall>"
            )));
        }
        Ok(None) => return Err(not_xml("the body is empty: no <methodCall>".into())),
        Err(XmlRpcError::NotXmlRpc(m)) => return Err(not_xml(format!("not XML: {m}"))),
        Err(e) => return Err(e),
    }
    let mut name = None;
    let mut params = Vec::new();
    while let Some(n) = next_start(&mut r, "<methodName> or <params>")? {
        match n.as_str() {
            "methodName" if name.is_none() => {
                let t = r.read_text("methodCall/methodName")?;
                let t = match t {
                    Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
                    Cow::Owned(o) => Cow::Owned(o.trim().to_string()),
                };
                if t.is_empty() {
                    return Err(invalid("<methodName> is empty"));
                }
                name = Some(t);
            }
            "params" if params.is_empty() => {
                while let Some(p) = next_start(&mut r, "<param>")? {
                    if p != "param" {
                        return Err(invalid(format!("<{p}> in <params>; expected <param>")));
                    }
                    match next_start(&mut r, "<value>")? {
                        Some(v) if v == "value" => {}
                        Some(v) => {
                            return Err(invalid(format!("<{v}> in <param>; expected <value>")));
                        }
                        None => return Err(invalid("a <param> without a <value>")),
                    }
                    params.push(value(&mut r, &mut uses_i8)?);
                    if next_start(&mut r, "the end of <param>")?.is_some() {
                        return Err(invalid("a <param> holds exactly one <value>"));
                    }
                }
            }
            other => return Err(invalid(format!("unexpected <{other}> in <methodCall>"))),
        }
    }
    loop {
        match r.next_node()? {
            Node::Eof => break,
            Node::Text(t) if t.trim().is_empty() => {}
            _ => return Err(invalid("content after the end of <methodCall>")),
        }
    }
    Ok(MethodCall {
        name: name.ok_or_else(|| invalid("<methodName> is missing"))?,
        params,
        uses_i8,
    })
}

/// The content of a `<value>` (its start has been read), up to its end.
fn value<'i>(r: &mut XmlReader<'i>, uses_i8: &mut bool) -> Result<XVal<'i>, XmlRpcError> {
    let mut text: Cow<'i, str> = Cow::Borrowed("");
    let mut typed = None;
    loop {
        match r.next_node()? {
            Node::Text(t) => {
                if text.is_empty() {
                    text = t;
                } else {
                    text.to_mut().push_str(&t);
                }
            }
            Node::Start(s) => {
                if typed.is_some() {
                    return Err(invalid("a <value> holds one typed element"));
                }
                let name = xml::local_name(&s);
                typed = Some(typed_value(r, &name, uses_i8)?);
            }
            Node::End => break,
            Node::Eof => return Err(invalid("unexpected end of document")),
        }
    }
    match typed {
        Some(v) if text.trim().is_empty() => Ok(v),
        Some(_) => Err(invalid("text beside a typed element in <value>")),
        // An untyped value is a string, exactly as sent.
        None => Ok(XVal::Str(text)),
    }
}

fn trim_cow(t: Cow<'_, str>) -> Cow<'_, str> {
    match t {
        Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
        Cow::Owned(o) if o.trim().len() == o.len() => Cow::Owned(o),
        Cow::Owned(o) => Cow::Owned(o.trim().to_string()),
    }
}

fn typed_value<'i>(
    r: &mut XmlReader<'i>,
    name: &str,
    uses_i8: &mut bool,
) -> Result<XVal<'i>, XmlRpcError> {
    let bad = |t: &str, expected: &str| {
        invalid(format!(
            "<{name}>{}</{name}> is not {expected}",
            t.chars().take(40).collect::<String>()
        ))
    };
    Ok(match name {
        "i4" | "int" | "i8" => {
            if name == "i8" {
                *uses_i8 = true;
            }
            let t = r.read_text(name)?;
            let t = t.trim();
            XVal::Int(
                t.strip_prefix('+')
                    .unwrap_or(t)
                    .parse()
                    .map_err(|_| bad(t, "a 64-bit integer"))?,
            )
        }
        "boolean" => {
            let t = r.read_text(name)?;
            match t.trim() {
                "1" | "true" => XVal::Bool(true),
                "0" | "false" => XVal::Bool(false),
                other => return Err(bad(other, "0 or 1")),
            }
        }
        "string" => XVal::Str(r.read_text(name)?),
        "double" => {
            let t = trim_cow(r.read_text(name)?);
            if !t.parse::<f64>().is_ok_and(f64::is_finite)
                || t.eq_ignore_ascii_case("nan")
                || t.to_ascii_lowercase().contains("inf")
            {
                return Err(bad(&t, "a finite number"));
            }
            XVal::Double(t)
        }
        "dateTime.iso8601" => XVal::DateTime(trim_cow(r.read_text(name)?)),
        "base64" => {
            let t = r.read_text(name)?;
            let compact: Cow<'i, str> = if t.bytes().any(|b| b.is_ascii_whitespace()) {
                Cow::Owned(t.chars().filter(|c| !c.is_ascii_whitespace()).collect())
            } else {
                t
            };
            if base64::engine::general_purpose::STANDARD
                .decode(compact.as_bytes())
                .is_err()
            {
                return Err(bad(&compact, "base64"));
            }
            XVal::Base64(compact)
        }
        "nil" => {
            if !r.read_text(name)?.trim().is_empty() {
                return Err(invalid("<nil/> must be empty"));
            }
            XVal::Nil
        }
        "struct" => {
            let mut members: Vec<(Cow<'i, str>, XVal<'i>)> = Vec::new();
            // Names seen, for the duplicate check in constant time per member.
            let mut names: std::collections::HashSet<String> = std::collections::HashSet::new();
            while let Some(m) = next_start(r, "<member>")? {
                if m != "member" {
                    return Err(invalid(format!("<{m}> in <struct>; expected <member>")));
                }
                let mut mname = None;
                let mut mval = None;
                while let Some(part) = next_start(r, "<name> or <value>")? {
                    match part.as_str() {
                        "name" if mname.is_none() => mname = Some(r.read_text("member/name")?),
                        "value" if mval.is_none() => mval = Some(value(r, uses_i8)?),
                        other => return Err(invalid(format!("unexpected <{other}> in <member>"))),
                    }
                }
                let (Some(n), Some(v)) = (mname, mval) else {
                    return Err(invalid("a <member> needs a <name> and a <value>"));
                };
                if !names.insert(n.to_string()) {
                    return Err(invalid(format!("struct member '{n}' appears twice")));
                }
                members.push((n, v));
            }
            XVal::Struct(members)
        }
        "array" => {
            // Integers go into a compact list until an item that is not one comes.
            let mut ints: Vec<i64> = Vec::new();
            let mut items: Vec<XVal<'i>> = Vec::new();
            match next_start(r, "<data>")? {
                Some(d) if d == "data" => {}
                Some(d) => return Err(invalid(format!("<{d}> in <array>; expected <data>"))),
                None => return Err(invalid("an <array> without <data>")),
            }
            loop {
                // Items written plainly (`<value><int>7</int></value>`) are read as they are
                // scanned, without events, while every item so far is an integer: a 1 MB
                // array of ids is tens of thousands of them.
                if items.is_empty() {
                    r.scan_wrapped_integers(b"value", &[b"int", b"i4"], |n| {
                        ints.push(n);
                        true
                    });
                }
                let Some(v) = next_start(r, "<value>")? else {
                    break;
                };
                if v != "value" {
                    return Err(invalid(format!("<{v}> in <data>; expected <value>")));
                }
                match value(r, uses_i8)? {
                    XVal::Int(n) if items.is_empty() => ints.push(n),
                    v => {
                        if items.is_empty() {
                            items = std::mem::take(&mut ints)
                                .into_iter()
                                .map(XVal::Int)
                                .collect();
                        }
                        items.push(v);
                    }
                }
            }
            if next_start(r, "the end of <array>")?.is_some() {
                return Err(invalid("an <array> holds one <data>"));
            }
            if items.is_empty() && !ints.is_empty() {
                XVal::Ints(ints)
            } else {
                XVal::Array(items)
            }
        }
        other => {
            return Err(invalid(format!(
                "unknown value type <{other}> (known: i4, int, i8, boolean, string, double, dateTime.iso8601, base64, struct, array, nil)"
            )));
        }
    })
}

// ---- parameters -> call model -------------------------------------------------------------

/// The child of a wrapper type: a complex type whose only child repeats (`IntArray` ->
/// `item`), which XML-RPC carries as an array.
pub fn wrapper_child<'s>(schema: &'s Schema, decl: &ElementDecl) -> Option<&'s ElementDecl> {
    match schema.get(decl.ty) {
        TypeDef::Complex(ct) if ct.children.len() == 1 && ct.children[0].is_repeated() => {
            Some(&ct.children[0])
        }
        _ => None,
    }
}

/// The parts of an operation: the children of its request element.
fn parts<'s>(schema: &'s Schema, op: &'s Operation) -> &'s [ElementDecl] {
    match schema.get(op.input.ty) {
        TypeDef::Complex(ct) => &ct.children,
        TypeDef::Simple(_) => std::slice::from_ref(&op.input),
    }
}

/// Turns a call's parameters into the operation's decoded request: positional parameters in
/// the WSDL's part order, or one struct keyed by part names.
pub fn params_to_call<'s>(
    params: Vec<XVal<'s>>,
    schema: &'s Schema,
    op: &'s Operation,
) -> Result<Val<'s>, XmlRpcError> {
    let parts = parts(schema, op);
    let named = match params.as_slice() {
        [XVal::Struct(m)] => {
            !m.is_empty()
                && m.iter().all(|(k, _)| parts.iter().any(|p| p.name == *k))
                // A one-part operation whose part is itself a struct keeps it positional
                // unless the struct is keyed by that part's name.
                && !(parts.len() == 1 && m.len() == 1 && m[0].0 != parts[0].name)
        }
        _ => false,
    };
    // A struct whose members name parameters, given to an operation whose first parameter
    // cannot be a struct, was meant as named parameters: the members that name none are the
    // caller's misspellings, not a reason to read the struct as the first parameter.
    if let ([XVal::Struct(m)], Some(first)) = (params.as_slice(), parts.first())
        && !named
        && !matches!(schema.get(first.ty), TypeDef::Complex(_))
        && m.iter().any(|(k, _)| parts.iter().any(|p| p.name == *k))
    {
        let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
        let unknown: Vec<String> = m
            .iter()
            .filter(|(k, _)| !parts.iter().any(|p| p.name == *k))
            .map(|(k, _)| format!("'{}'", k.chars().take(64).collect::<String>()))
            .collect();
        return Err(XmlRpcError::InvalidParams(format!(
            "{}: unexpected member {} in the struct of named parameters (the parameters are: {})",
            op.name,
            unknown.join(", "),
            names.join(", ")
        )));
    }
    let mut given: Vec<Option<XVal<'s>>> = (0..parts.len()).map(|_| None).collect();
    if named {
        let Some(XVal::Struct(members)) = params.into_iter().next() else {
            unreachable!("checked above")
        };
        for (k, v) in members {
            let i = parts.iter().position(|p| p.name == k).expect("checked");
            given[i] = Some(v);
        }
    } else {
        if params.len() > parts.len() {
            let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
            let takes = match parts.len() {
                0 => "no parameters".to_string(),
                1 => format!("at most 1 parameter ({})", names[0]),
                n => format!("at most {n} parameters ({})", names.join(", ")),
            };
            let given = match params.len() {
                1 => "1 was given".to_string(),
                n => format!("{n} were given"),
            };
            return Err(XmlRpcError::InvalidParams(format!(
                "{} takes {takes}; {given}",
                op.name
            )));
        }
        for (i, v) in params.into_iter().enumerate() {
            given[i] = Some(v);
        }
    }
    let mut members = Vec::with_capacity(parts.len());
    for (part, v) in parts.iter().zip(given) {
        let mut path = format!("{}/{}", op.name, part.name);
        let v = match v {
            Some(v) => to_val(v, part, schema, &mut path)?,
            None => None,
        };
        match v {
            Some(v) => members.push((part.name.as_str(), v)),
            None if part.is_required() && !part.is_repeated() => {
                return Err(ReadError::MissingElement { path }.into());
            }
            None if part.is_repeated() => members.push((part.name.as_str(), Val::List(vec![]))),
            None => {}
        }
    }
    Ok(Val::Obj(members))
}

/// Converts one value for the element `decl`; `None` when it stands for an absent element.
fn to_val<'s>(
    x: XVal<'s>,
    decl: &'s ElementDecl,
    schema: &'s Schema,
    path: &mut String,
) -> Result<Option<Val<'s>>, XmlRpcError> {
    if decl.is_repeated() {
        return match x {
            XVal::Nil => Ok(None),
            XVal::Array(items) => list(items.len(), items, decl, schema, path),
            XVal::Ints(ints) => list(
                ints.len(),
                ints.into_iter().map(XVal::Int),
                decl,
                schema,
                path,
            ),
            single => list(1, [single], decl, schema, path),
        };
    }
    one(x, decl, schema, path)
}

/// The `len` items of a repeated element's array, each converted for `decl`.
fn list<'s>(
    len: usize,
    items: impl IntoIterator<Item = XVal<'s>>,
    decl: &'s ElementDecl,
    schema: &'s Schema,
    path: &mut String,
) -> Result<Option<Val<'s>>, XmlRpcError> {
    if let Some(max) = decl.max_occurs
        && len as u32 > max
    {
        return Err(ReadError::RepeatedElement { path: path.clone() }.into());
    }
    // A list of integers is held as one (`Val::Ints`, 8 bytes an item, as the SOAP door
    // reads it), and an item's place is written into the path without an allocation: a
    // 1 MB array of ids is tens of thousands of items.
    let mut out: Option<Val<'s>> = None;
    for (i, item) in items.into_iter().enumerate() {
        let mark = path.len();
        let _ = write!(path, "[{i}]");
        if let Some(v) = one(item, decl, schema, path)? {
            match &mut out {
                Some(list) => list.push_item(v),
                None => out = Some(Val::list_with_room(v, len.saturating_sub(i + 1))),
            }
        }
        path.truncate(mark);
    }
    Ok(Some(out.unwrap_or(Val::List(Vec::new()))))
}

fn mismatch(path: &str, x: &XVal<'_>, expected: &str) -> XmlRpcError {
    ReadError::InvalidValue {
        path: path.to_string(),
        value: format!("({})", x.kind()),
        expected: expected.to_string(),
    }
    .into()
}

fn one<'s>(
    x: XVal<'s>,
    decl: &'s ElementDecl,
    schema: &'s Schema,
    path: &mut String,
) -> Result<Option<Val<'s>>, XmlRpcError> {
    if x == XVal::Nil {
        return if decl.nillable {
            Ok(Some(Val::Null))
        } else if !decl.is_required() {
            // Clients send nil (Python's None) for an optional argument they leave out.
            Ok(None)
        } else {
            Err(ReadError::NotNillable { path: path.clone() }.into())
        };
    }
    match schema.get(decl.ty) {
        TypeDef::Complex(ct) => {
            if let Some(child) = wrapper_child(schema, decl) {
                // The wrapper as a struct (`{item: [...]}`) is read as one; anything else is
                // its list: an array, or a single item (a struct of the item's members, or a
                // scalar) taken as a one-item list.
                let as_wrapper = matches!(&x, XVal::Struct(m)
                    if m.is_empty() || (m.len() == 1 && m[0].0 == child.name.as_str()));
                if !as_wrapper {
                    let list = to_val(x, child, schema, path)?.unwrap_or(Val::List(vec![]));
                    return Ok(Some(Val::Obj(vec![(child.name.as_str(), list)])));
                }
            }
            match x {
                XVal::Struct(members) => {
                    Ok(Some(Val::Obj(struct_to_obj(members, ct, schema, path)?)))
                }
                other => Err(mismatch(
                    path,
                    &other,
                    if wrapper_child(schema, decl).is_some() {
                        "an array (or a struct)"
                    } else {
                        "a struct"
                    },
                )),
            }
        }
        TypeDef::Simple(st) => {
            // An int for an integer type in its range is that integer: no text made of it to
            // be read again (an array of ids is tens of thousands of these). Out of range, or
            // for an enumeration, the text path below says what is wrong.
            if let (XVal::Int(i), SimpleKind::Integer { min, max }) = (&x, st.kind)
                && st.enumeration.is_empty()
                && (min..=max).contains(&i128::from(*i))
            {
                return Ok(Some(Val::Int(*i)));
            }
            let date_only = st.kind == SimpleKind::Date;
            let text: Cow<'s, str> = match x {
                // A date given as a string in XML-RPC's own form (`20240503T10:00:00`) is read
                // as its `dateTime.iso8601` would be; any other must be an XSD one.
                XVal::Str(s)
                    if matches!(st.kind, SimpleKind::Date | SimpleKind::DateTime)
                        && iso8601_form(s.trim()) =>
                {
                    iso_to_xsd(&s, date_only).map_or(s, Cow::Owned)
                }
                XVal::Str(s) => s,
                XVal::Bool(b) if st.kind == SimpleKind::Boolean => return Ok(Some(Val::Bool(b))),
                XVal::Bool(b) => Cow::Borrowed(if b { "true" } else { "false" }),
                XVal::Int(i) => Cow::Owned(i.to_string()),
                XVal::Double(t) => match st.kind {
                    SimpleKind::Integer { .. } => {
                        Cow::Owned(integral(&t).ok_or_else(|| ReadError::InvalidValue {
                            path: path.clone(),
                            value: t.chars().take(40).collect(),
                            expected:
                                "an integer (a double is accepted only when it is integral)".into(),
                        })?)
                    }
                    _ => t,
                },
                XVal::DateTime(t) => match st.kind {
                    SimpleKind::DateTime
                    | SimpleKind::Date
                    | SimpleKind::String
                    | SimpleKind::Other => {
                        Cow::Owned(iso_to_xsd(&t, st.kind == SimpleKind::Date).ok_or_else(
                            || ReadError::InvalidValue {
                                path: path.clone(),
                                value: t.chars().take(40).collect(),
                                expected: "a dateTime.iso8601 such as 19980717T14:08:55".into(),
                            },
                        )?)
                    }
                    _ => return Err(mismatch(path, &XVal::DateTime(t), st.kind.describe())),
                },
                XVal::Base64(t) => t,
                other @ (XVal::Struct(_) | XVal::Array(_) | XVal::Ints(_) | XVal::Nil) => {
                    return Err(mismatch(path, &other, st.kind.describe()));
                }
            };
            Ok(Some(xml::simple_to_json(text, st, path)?))
        }
    }
}

fn struct_to_obj<'s>(
    members: Vec<(Cow<'s, str>, XVal<'s>)>,
    ct: &'s ComplexType,
    schema: &'s Schema,
    path: &mut String,
) -> Result<Vec<(&'s str, Val<'s>)>, XmlRpcError> {
    let mut given: Vec<Option<XVal<'s>>> = (0..ct.children.len()).map(|_| None).collect();
    for (k, v) in members {
        let Some(i) = ct.children.iter().position(|c| c.name == k) else {
            return Err(ReadError::UnexpectedElement {
                element: k.into_owned(),
                parent: path.clone(),
            }
            .into());
        };
        given[i] = Some(v);
    }
    let mut out = Vec::with_capacity(ct.children.len());
    for (c, v) in ct.children.iter().zip(given) {
        let mark = path.len();
        path.push('/');
        path.push_str(&c.name);
        let v = match v {
            Some(v) => to_val(v, c, schema, path)?,
            None => None,
        };
        match v {
            Some(v) => out.push((c.name.as_str(), v)),
            None if c.is_repeated() && c.min_occurs == 0 => {
                out.push((c.name.as_str(), Val::List(vec![])))
            }
            None if c.is_required() => {
                return Err(ReadError::MissingElement { path: path.clone() }.into());
            }
            None => {}
        }
        path.truncate(mark);
    }
    Ok(out)
}

/// The integer a double's text stands for, when it is integral and exact
/// (`1597746714261.0`, `1.597746714261E12`).
fn integral(t: &str) -> Option<String> {
    let t = t.strip_prefix('+').unwrap_or(t);
    if !t.contains(['e', 'E']) {
        let (int, frac) = t.split_once('.').unwrap_or((t, ""));
        let digits = int.strip_prefix('-').unwrap_or(int);
        if !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && frac.bytes().all(|b| b == b'0')
        {
            return Some(int.to_string());
        }
        return None;
    }
    let f: f64 = t.parse().ok()?;
    // Beyond 2^53 a double no longer names one integer.
    (f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0).then(|| format!("{}", f as i64))
}

/// Whether `t` is in XML-RPC's own date form: `YYYYMMDD`, then optionally `T` and a time
/// (`hh:mm:ss` or `hhmmss`) and a zone (`Z` or `+hh:mm`).
fn iso8601_form(t: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    let (local, zone) = match t.strip_suffix('Z') {
        Some(l) => (l, true),
        None => match t.len().checked_sub(6).and_then(|i| t.split_at_checked(i)) {
            Some((l, z))
                if matches!(z.as_bytes()[0], b'+' | b'-')
                    && digits(&z[1..3])
                    && z.as_bytes()[3] == b':'
                    && digits(&z[4..]) =>
            {
                (l, true)
            }
            _ => (t, false),
        },
    };
    let (date, time) = local
        .split_once('T')
        .map_or((local, None), |(d, tm)| (d, Some(tm)));
    date.len() == 8
        && digits(date)
        && match time {
            None => !zone,
            Some(tm) => {
                let compact = tm.replace(':', "");
                compact.len() == 6 && digits(&compact) && (tm.len() == 6 || tm.len() == 8)
            }
        }
}

/// `19980717T14:08:55` (also with dashes, or a zone) as XSD lexical form.
fn iso_to_xsd(t: &str, date_only: bool) -> Option<String> {
    use chrono::NaiveDateTime;
    let t = t.trim();
    // Split a trailing zone (Z or +hh:mm / -hh:mm) from the local part.
    let (local, zone) = if let Some(l) = t.strip_suffix('Z') {
        (l, "Z")
    } else if t.len() > 6
        && matches!(t.as_bytes()[t.len() - 6], b'+' | b'-')
        && t.as_bytes()[t.len() - 3] == b':'
    {
        t.split_at(t.len() - 6)
    } else {
        (t, "")
    };
    let parsed = [
        "%Y%m%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y%m%dT%H%M%S",
        "%Y-%m-%dT%H:%M:%S%.f",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(local, f).ok())
    .or_else(|| {
        ["%Y%m%d", "%Y-%m-%d"].iter().find_map(|f| {
            chrono::NaiveDate::parse_from_str(local, f)
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
    })?;
    if date_only {
        return Some(parsed.format("%Y-%m-%d").to_string());
    }
    Some(format!("{}{zone}", parsed.format("%Y-%m-%dT%H:%M:%S")))
}

/// An XSD date or dateTime as XML-RPC's `dateTime.iso8601` (`19980717T14:08:55`); times with
/// a zone are given in UTC, as the format has none.
fn xsd_to_iso(t: &str) -> Option<String> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    let t = t.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some(dt.naive_utc().format("%Y%m%dT%H:%M:%S").to_string());
    }
    if let Ok(dt) = NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(dt.format("%Y%m%dT%H:%M:%S").to_string());
    }
    let date = t
        .get(..10)
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())?;
    Some(date.format("%Y%m%dT00:00:00").to_string())
}

// ---- encoding ---------------------------------------------------------------------------

/// Writes `<methodResponse>` around one value's XML.
pub fn response(value_xml: &str) -> String {
    let mut out = String::with_capacity(value_xml.len() + 120);
    out.push_str(RESPONSE_OPEN);
    out.push_str(value_xml);
    out.push_str(RESPONSE_CLOSE);
    out
}

const RESPONSE_OPEN: &str =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><methodResponse><params><param>";
const RESPONSE_CLOSE: &str = "</param></params></methodResponse>";

/// A `methodResponse` holding an operation's result ([`ValueWriter::result`]), written for an
/// answer sent while it is written: whenever the text has reached `at` bytes (between the items
/// of an array), `flush` takes it away. What is returned is the rest.
pub(crate) fn response_flushing<'t, T: Tree<'t>>(
    schema: &Schema,
    i8_ok: bool,
    output: &ElementDecl,
    value: T,
    flush: &mut Flush<'_>,
    at: usize,
) -> Result<String, ShapeError> {
    let mut w = ValueWriter::new(schema, i8_ok);
    w.out = String::with_capacity(at + at / 8);
    w.out.push_str(RESPONSE_OPEN);
    let mut w = w.flushing(flush, at);
    w.result(output, value)?;
    w.out.push_str(RESPONSE_CLOSE);
    Ok(w.out)
}

/// A fault's `<value>`: a struct with exactly `faultCode` and `faultString`.
pub fn fault_value(code: i32, message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 160);
    out.push_str("<value><struct><member><name>faultCode</name><value><int>");
    out.push_str(&code.to_string());
    out.push_str("</int></value></member><member><name>faultString</name><value><string>");
    escape_into(&mut out, message);
    out.push_str("</string></value></member></struct></value>");
    out
}

/// `system.multicall`'s answer: in order, each call's result as a one-element array, or its
/// fault struct. It is written as each call ends, so that a result's text is not kept beside
/// the answer's (nor the answer copied once more into its `methodResponse`).
#[derive(Debug)]
pub struct MulticallResponse {
    out: String,
}

impl MulticallResponse {
    pub fn new() -> MulticallResponse {
        let mut out = String::with_capacity(1024);
        out.push_str(RESPONSE_OPEN);
        out.push_str("<value><array><data>");
        MulticallResponse { out }
    }

    /// The next call's outcome: `[result]` (its `<value>`), or a fault struct.
    pub fn push(&mut self, answer: Result<String, (i32, String)>) {
        match answer {
            Ok(v) => {
                self.out.push_str("<value><array><data>");
                self.out.push_str(&v);
                self.out.push_str("</data></array></value>");
            }
            Err((code, text)) => self.out.push_str(&fault_value(code, &text)),
        }
    }

    /// The bytes written and not yet taken.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// Whether nothing is written and not yet taken.
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// Takes what is written so far (to send it), leaving room for `room` bytes.
    pub fn take(&mut self, room: usize) -> String {
        std::mem::replace(&mut self.out, String::with_capacity(room))
    }

    /// The rest of the answer.
    pub fn finish(mut self) -> String {
        self.out.push_str("</data></array></value>");
        self.out.push_str(RESPONSE_CLOSE);
        self.out
    }
}

impl Default for MulticallResponse {
    fn default() -> Self {
        MulticallResponse::new()
    }
}

/// A fault response.
pub fn fault(code: i32, message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><methodResponse><fault>{}</fault></methodResponse>",
        fault_value(code, message)
    )
}

/// Writes values typed by a schema, or plain JSON values for introspection.
pub(crate) struct ValueWriter<'a> {
    pub out: String,
    schema: &'a Schema,
    /// Integers beyond `i4` may be written as `i8` (else as strings).
    i8_ok: bool,
    /// Where the text goes once it is this long ([`response_flushing`]).
    flush: Option<(&'a mut Flush<'a>, usize)>,
}

impl<'a> ValueWriter<'a> {
    pub(crate) fn new(schema: &'a Schema, i8_ok: bool) -> Self {
        ValueWriter {
            out: String::with_capacity(512),
            schema,
            i8_ok,
            flush: None,
        }
    }

    /// Hands the text to `flush` whenever it has reached `at` bytes, between array items.
    fn flushing(mut self, flush: &'a mut Flush<'a>, at: usize) -> Self {
        self.flush = Some((flush, at));
        self
    }

    /// Writes an operation's result: the response element's content, unwrapped when it has
    /// one child (`<return>`), as a `<value>`.
    pub(crate) fn result<'t, T: Tree<'t>>(
        &mut self,
        output: &ElementDecl,
        value: T,
    ) -> Result<(), ShapeError> {
        let mut path = output.name.clone();
        if let TypeDef::Complex(ct) = self.schema.get(output.ty)
            && ct.children.len() == 1
        {
            let child = &ct.children[0];
            path.push('/');
            path.push_str(&child.name);
            return match value.member(&child.name) {
                Some(v) => self.element(child, v, &mut path),
                None => {
                    self.out.push_str("<value><nil/></value>");
                    Ok(())
                }
            };
        }
        self.element(output, value, &mut path)
    }

    /// Writes the `<value>` for element `decl` holding `v`.
    fn element<'t, T: Tree<'t>>(
        &mut self,
        decl: &ElementDecl,
        v: T,
        path: &mut String,
    ) -> Result<(), ShapeError> {
        if decl.is_repeated() {
            self.out.push_str("<value><array><data>");
            match v.form() {
                Form::List(n) => {
                    for item in (0..n).filter_map(|i| v.item(i)) {
                        if item.is_null() && !decl.nillable {
                            continue;
                        }
                        self.single(decl, item, path)?;
                        if let Some((flush, at)) = &mut self.flush
                            && self.out.len() >= *at
                        {
                            flush(&mut self.out);
                        }
                    }
                }
                Form::Null => {}
                _ => self.single(decl, v, path)?,
            }
            self.out.push_str("</data></array></value>");
            return Ok(());
        }
        self.single(decl, v, path)
    }

    /// What [`ValueWriter::element`] writes for a null.
    fn null(&mut self, decl: &ElementDecl) {
        self.out.push_str(if decl.is_repeated() {
            "<value><array><data></data></array></value>"
        } else {
            "<value><nil/></value>"
        });
    }

    fn single<'t, T: Tree<'t>>(
        &mut self,
        decl: &ElementDecl,
        v: T,
        path: &mut String,
    ) -> Result<(), ShapeError> {
        let form = v.form();
        if let Form::Null = form {
            self.out.push_str("<value><nil/></value>");
            return Ok(());
        }
        match self.schema.get(decl.ty) {
            TypeDef::Complex(ct) => {
                if let Some(child) = wrapper_child(self.schema, decl) {
                    return match form {
                        Form::Obj => match v.member(&child.name) {
                            Some(inner) => self.element(child, inner, path),
                            None => {
                                self.null(child);
                                Ok(())
                            }
                        },
                        // Already a list: the backend's answer skipped the wrapper.
                        Form::List(_) => self.element(child, v, path),
                        Form::Scalar(other) => Err(ShapeError::at(
                            path,
                            format!("expected a list, got {}", other.to_json()),
                        )),
                        Form::Null => unreachable!("written as nil above"),
                    };
                }
                if !matches!(form, Form::Obj) {
                    return Err(ShapeError::at(path, "expected an object".into()));
                }
                self.out.push_str("<value><struct>");
                for c in &ct.children {
                    let mark = path.len();
                    path.push('/');
                    path.push_str(&c.name);
                    let required = c.is_required() && !c.is_repeated();
                    match v.member(&c.name) {
                        Some(cv) if cv.is_null() && !c.nillable && required => {
                            return Err(ShapeError::at(path, "required but null".into()));
                        }
                        // A null for an optional element that cannot be nil: left out.
                        Some(cv) if cv.is_null() && !c.nillable => {}
                        Some(cv) => {
                            self.out.push_str("<member><name>");
                            escape_into(&mut self.out, &c.name);
                            self.out.push_str("</name>");
                            self.element(c, cv, path)?;
                            self.out.push_str("</member>");
                        }
                        None if required => {
                            return Err(ShapeError::at(path, "required but missing".into()));
                        }
                        None => {}
                    }
                    path.truncate(mark);
                }
                self.out.push_str("</struct></value>");
                Ok(())
            }
            TypeDef::Simple(st) => {
                let Form::Scalar(v) = form else {
                    return Err(ShapeError::at(path, xml::cannot_write(form.kind(), st)));
                };
                let text = json_to_simple(&v, st).map_err(|r| ShapeError::at(path, r))?;
                match st.kind {
                    SimpleKind::Integer { .. } => self.integer(&text),
                    SimpleKind::Boolean => {
                        self.out.push_str(if text == "true" {
                            "<value><boolean>1</boolean></value>"
                        } else {
                            "<value><boolean>0</boolean></value>"
                        });
                    }
                    SimpleKind::Double | SimpleKind::Decimal => {
                        self.out.push_str("<value><double>");
                        self.out.push_str(&text);
                        self.out.push_str("</double></value>");
                    }
                    SimpleKind::DateTime | SimpleKind::Date => {
                        let iso = xsd_to_iso(&text).ok_or_else(|| {
                            ShapeError::at(path, format!("'{text}' is not an XSD date or dateTime"))
                        })?;
                        self.out.push_str("<value><dateTime.iso8601>");
                        self.out.push_str(&iso);
                        self.out.push_str("</dateTime.iso8601></value>");
                    }
                    SimpleKind::Base64 => {
                        self.out.push_str("<value><base64>");
                        escape_into(&mut self.out, &text);
                        self.out.push_str("</base64></value>");
                    }
                    SimpleKind::String | SimpleKind::Other => self.string(&text),
                }
                Ok(())
            }
        }
    }

    fn string(&mut self, s: &str) {
        self.out.push_str("<value><string>");
        escape_into(&mut self.out, s);
        self.out.push_str("</string></value>");
    }

    /// An integer's text: `i4` when it fits, else `i8` when the client reads it, else a
    /// string of digits.
    fn integer(&mut self, text: &str) {
        match text.parse::<i64>() {
            Ok(n) if i32::try_from(n).is_ok() => {
                self.out.push_str("<value><int>");
                self.out.push_str(text);
                self.out.push_str("</int></value>");
            }
            Ok(_) if self.i8_ok => {
                self.out.push_str("<value><i8>");
                self.out.push_str(text);
                self.out.push_str("</i8></value>");
            }
            _ => self.string(text),
        }
    }

    /// Writes a JSON value without a schema (introspection answers, multicall envelopes).
    /// Struct members are written in key order.
    pub(crate) fn plain(&mut self, v: &Val<'_>) {
        match v {
            Val::Null => self.out.push_str("<value><nil/></value>"),
            Val::Bool(b) => self.out.push_str(if *b {
                "<value><boolean>1</boolean></value>"
            } else {
                "<value><boolean>0</boolean></value>"
            }),
            Val::Int(i) => self.integer(itoa::Buffer::new().format(*i)),
            // An integer beyond i64 is written as integers are (as a string when it does not
            // fit what the client reads).
            Val::Num(n) if n.bytes().all(|b| b.is_ascii_digit() || b == b'-') => self.integer(n),
            Val::Num(n) => {
                self.out.push_str("<value><double>");
                self.out.push_str(n);
                self.out.push_str("</double></value>");
            }
            Val::Str(s) => self.string(s),
            Val::List(_) | Val::Ints(_) => {
                self.out.push_str("<value><array><data>");
                match v {
                    Val::List(items) => items.iter().for_each(|i| self.plain(i)),
                    Val::Ints(items) => items.iter().for_each(|i| self.plain(&Val::Int(*i))),
                    _ => {}
                }
                self.out.push_str("</data></array></value>");
            }
            Val::Obj(members) => {
                let mut sorted: Vec<&(&str, Val<'_>)> = members.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(b.0));
                self.out.push_str("<value><struct>");
                for (k, v) in sorted {
                    self.out.push_str("<member><name>");
                    escape_into(&mut self.out, k);
                    self.out.push_str("</name>");
                    self.plain(v);
                    self.out.push_str("</member>");
                }
                self.out.push_str("</struct></value>");
            }
        }
    }
}

// ---- introspection ------------------------------------------------------------------------

/// The XML-RPC type an element travels as.
fn type_name(schema: &Schema, decl: &ElementDecl) -> &'static str {
    if decl.is_repeated() || wrapper_child(schema, decl).is_some() {
        return "array";
    }
    match schema.get(decl.ty) {
        TypeDef::Complex(_) => "struct",
        TypeDef::Simple(st) => match st.kind {
            SimpleKind::Integer { min, max }
                if min >= i32::MIN.into() && max <= i32::MAX.into() =>
            {
                "int"
            }
            SimpleKind::Integer { .. } => "i8",
            SimpleKind::Boolean => "boolean",
            SimpleKind::Double | SimpleKind::Decimal => "double",
            SimpleKind::DateTime | SimpleKind::Date => "dateTime.iso8601",
            SimpleKind::Base64 => "base64",
            SimpleKind::String | SimpleKind::Other => "string",
        },
    }
}

/// The type of an operation's result as written by [`ValueWriter::result`].
fn result_type(schema: &Schema, op: &Operation) -> &'static str {
    match schema.get(op.output.ty) {
        TypeDef::Complex(ct) if ct.children.len() == 1 => type_name(schema, &ct.children[0]),
        _ => type_name(schema, &op.output),
    }
}

/// `system.methodSignature`: the result type, then the parameter types in order.
pub fn signature(schema: &Schema, op: &Operation) -> Vec<String> {
    std::iter::once(result_type(schema, op))
        .chain(parts(schema, op).iter().map(|p| type_name(schema, p)))
        .map(str::to_string)
        .collect()
}

/// The type of an element for people: arrays name their item type.
fn describe(schema: &Schema, decl: &ElementDecl) -> String {
    let item = |d: &ElementDecl| match schema.get(d.ty) {
        TypeDef::Complex(_) => "struct".to_string(),
        TypeDef::Simple(_) => {
            let single = ElementDecl {
                max_occurs: Some(1),
                ..d.clone()
            };
            type_name(schema, &single).to_string()
        }
    };
    if decl.is_repeated() {
        format!("array of {}", item(decl))
    } else if let Some(child) = wrapper_child(schema, decl) {
        format!("array of {}", item(child))
    } else {
        type_name(schema, decl).to_string()
    }
}

/// `system.methodHelp`: the WSDL's documentation, then the parameters in order.
pub fn help(schema: &Schema, op: &Operation) -> String {
    let params: Vec<String> = parts(schema, op)
        .iter()
        .map(|p| {
            format!(
                "{} ({}{})",
                p.name,
                describe(schema, p),
                if p.is_required() { "" } else { ", optional" }
            )
        })
        .collect();
    let doc = op.documentation.trim();
    let mut s = String::new();
    if !doc.is_empty() {
        s.push_str(doc);
        s.push_str("\n\n");
    }
    s.push_str(&format!(
        "Parameters, in order (or one struct keyed by these names): {}.\nReturns: {}.",
        params.join(", "),
        result_type(schema, op)
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(body: &str) -> Result<MethodCall<'_>, XmlRpcError> {
        decode_call(body, 32)
    }

    #[test]
    fn decodes_every_value_type_keeping_number_text() {
        let c = call(
            "<?xml version='1.0'?><methodCall><methodName>S.op</methodName><params>\
             <param><value><i4>42</i4></value></param>\
             <param><value>  untyped  </value></param>\
             <param><value><double>12.50</double></value></param>\
             <param><value><boolean>1</boolean></value></param>\
             <param><value><dateTime.iso8601>19980717T14:08:55</dateTime.iso8601></value></param>\
             <param><value><base64>aGVs\nbG8=</base64></value></param>\
             <param><value><struct><member><name>a</name><value><i8>1597746714261</i8></value></member></struct></value></param>\
             <param><value><array><data><value><nil/></value><value/></data></array></value></param>\
             </params></methodCall>",
        )
        .unwrap();
        assert_eq!(c.name, "S.op");
        assert!(c.uses_i8);
        assert_eq!(
            c.params,
            vec![
                XVal::Int(42),
                XVal::Str("  untyped  ".into()),
                XVal::Double("12.50".into()),
                XVal::Bool(true),
                XVal::DateTime("19980717T14:08:55".into()),
                XVal::Base64("aGVsbG8=".into()),
                XVal::Struct(vec![("a".into(), XVal::Int(1597746714261))]),
                XVal::Array(vec![XVal::Nil, XVal::Str("".into())]),
            ]
        );
    }

    #[test]
    fn an_array_of_integers_is_held_compact_and_read_as_an_array() {
        let body = |items: &str| {
            format!(
                "<methodCall><methodName>S.op</methodName><params><param><value><array><data>\
                 {items}</data></array></value></param></params></methodCall>"
            )
        };
        let first = |b: &str| -> String {
            let mut c = decode_call(b, 32).unwrap();
            format!("{:?}", c.params.remove(0))
        };
        let ints = body(
            "<value><int>7</int></value><value><i4>-8</i4></value><value><i8>9000000000</i8></value>",
        );
        let c = decode_call(&ints, 32).unwrap();
        let v = c.params.into_iter().next().unwrap();
        assert_eq!(v, XVal::Ints(vec![7, -8, 9_000_000_000]));
        assert_eq!(v.kind(), "an array");
        assert_eq!(
            v.into_array(),
            Ok(vec![XVal::Int(7), XVal::Int(-8), XVal::Int(9_000_000_000)])
        );
        // An item that is not an integer makes it an array of values again, in order.
        let mixed = body(
            "<value><int>1</int></value><value><int>2</int></value><value>x</value><value><int>3</int></value>",
        );
        assert_eq!(
            first(&mixed),
            format!(
                "{:?}",
                XVal::Array(vec![
                    XVal::Int(1),
                    XVal::Int(2),
                    XVal::Str("x".into()),
                    XVal::Int(3)
                ])
            )
        );
        assert_eq!(first(&body("")), format!("{:?}", XVal::Array(vec![])));
    }

    #[test]
    fn plainly_written_integer_items_read_as_the_events_would() {
        let call = |data: &str| {
            format!(
                "<methodCall><methodName>S.op</methodName><params><param><value><array>\
                 <data>{data}</data></array></value></param></params></methodCall>"
            )
        };
        // Line breaks between items, a sign, white space inside an item (left to the events),
        // and an i8 (also the events', which note it).
        let body = call(
            "\n<value><int>1</int></value>\n  <value><i4>+2</i4></value>\r\n\
             <value><int> 3 </int></value><value><int>-4</int></value>\
             <value><i8>5</i8></value><value><int>6</int></value>\n",
        );
        let c = decode_call(&body, 32).unwrap();
        assert!(c.uses_i8);
        assert_eq!(c.params, vec![XVal::Ints(vec![1, 2, 3, -4, 5, 6])]);
        // Not an integer, or a broken item, in the middle: the events read it and say so.
        let e = decode_call(
            &call("<value><int>1</int></value><value><int>x</int></value>"),
            32,
        )
        .unwrap_err();
        assert!(e.to_string().contains("64-bit integer"), "{e}");
        let e = decode_call(
            &call("<value><int>1</int></value><value><int>2</int></valu>"),
            32,
        )
        .unwrap_err();
        assert!(e.to_string().contains("ill-formed"), "{e}");
        // Nesting is bounded as without the scan: methodCall, params, param, value, array,
        // data, then value and int.
        assert!(decode_call(&call("<value><int>1</int></value>"), 8).is_ok());
        let e = decode_call(&call("<value><int>1</int></value>"), 7).unwrap_err();
        assert!(e.to_string().contains("deep"), "{e}");
    }

    #[test]
    fn malformed_calls_are_refused_with_a_reason() {
        for (body, needle) in [
            ("<methodResponse/>", "root element"),
            ("<methodCall><params/></methodCall>", "methodName"),
            (
                "<methodCall><methodName>x</methodName><params><param><value><int>x</int></value></param></params></methodCall>",
                "64-bit integer",
            ),
            (
                "<methodCall><methodName>x</methodName><params><param><value><float>1</float></value></param></params></methodCall>",
                "unknown value type",
            ),
            (
                "<methodCall><methodName>x</methodName><params><param><value><double>NaN</double></value></param></params></methodCall>",
                "finite",
            ),
            (
                "<methodCall><methodName>x</methodName><params><param><value><struct><member><name>a</name><value>1</value></member><member><name>a</name><value>2</value></member></struct></value></param></params></methodCall>",
                "twice",
            ),
        ] {
            let e = call(body).unwrap_err();
            assert!(matches!(e, XmlRpcError::NotXmlRpc(_)), "{body}: {e}");
            assert!(e.to_string().contains(needle), "{body}: {e}");
        }
        assert!(matches!(
            call("<!DOCTYPE x><methodCall/>").unwrap_err(),
            XmlRpcError::Read(ReadError::DtdForbidden)
        ));
        // Not XML at all: a parse error (-32700), not a call of the wrong shape.
        for body in ["", "  \n", "hello", "hello <methodCall/>"] {
            let e = call(body).unwrap_err();
            assert_eq!(e.fault_code(), PARSE_ERROR, "{body:?}: {e}");
        }
        let deep = format!(
            "<methodCall><methodName>x</methodName><params><param>{}{}</param></params></methodCall>",
            "<value><array><data>".repeat(20),
            "</data></array></value>".repeat(20)
        );
        assert!(matches!(
            call(&deep).unwrap_err(),
            XmlRpcError::Read(ReadError::TooDeep { .. })
        ));
    }

    #[test]
    fn integral_doubles_and_dates_convert() {
        assert_eq!(
            integral("1597746714261.0").as_deref(),
            Some("1597746714261")
        );
        assert_eq!(
            integral("1.597746714261E12").as_deref(),
            Some("1597746714261")
        );
        assert_eq!(integral("1.5"), None);
        assert_eq!(integral("1e300"), None);
        assert_eq!(
            iso_to_xsd("19980717T14:08:55", false).as_deref(),
            Some("1998-07-17T14:08:55")
        );
        assert_eq!(
            iso_to_xsd("1998-07-17T14:08:55+03:00", false).as_deref(),
            Some("1998-07-17T14:08:55+03:00")
        );
        assert_eq!(
            iso_to_xsd("19980717T00:00:00", true).as_deref(),
            Some("1998-07-17")
        );
        assert_eq!(iso_to_xsd("yesterday", false), None);
        assert_eq!(
            xsd_to_iso("2020-08-18T13:41:22+03:00").as_deref(),
            Some("20200818T10:41:22")
        );
        assert_eq!(
            xsd_to_iso("2017-03-25").as_deref(),
            Some("20170325T00:00:00")
        );
    }

    #[test]
    fn faults_carry_code_and_escaped_string() {
        assert_eq!(
            fault(-32601, "no <such> method"),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><methodResponse><fault><value><struct><member><name>faultCode</name><value><int>-32601</int></value></member><member><name>faultString</name><value><string>no &lt;such&gt; method</string></value></member></struct></value></fault></methodResponse>"
        );
        assert_eq!(
            XmlRpcError::Read(ReadError::DtdForbidden).fault_code(),
            PARSE_ERROR
        );
        assert_eq!(
            XmlRpcError::Read(ReadError::MissingElement { path: "x".into() }).fault_code(),
            INVALID_PARAMS
        );
        assert_eq!(
            XmlRpcError::NotXmlRpc("x".into()).fault_code(),
            INVALID_REQUEST
        );
    }

    #[test]
    fn plain_values_pick_i8_or_string_for_wide_integers() {
        let schema = Schema::default();
        let mut w = ValueWriter::new(&schema, false);
        w.plain(&Val::borrowed(&serde_json::json!([
            1,
            1597746714261i64,
            "x",
            true,
            null
        ])));
        assert_eq!(
            w.out,
            "<value><array><data><value><int>1</int></value><value><string>1597746714261</string></value><value><string>x</string></value><value><boolean>1</boolean></value><value><nil/></value></data></array></value>"
        );
        let mut w = ValueWriter::new(&schema, true);
        w.plain(&Val::borrowed(&serde_json::json!(1597746714261i64)));
        assert_eq!(w.out, "<value><i8>1597746714261</i8></value>");
    }
}
