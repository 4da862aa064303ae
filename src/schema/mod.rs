//! The typed model of a service, loaded from its WSDL 1.1 and XSD at start-up.
//!
//! Everything that converts between XML and JSON asks this model, never the data: whether an
//! element repeats (then it is always a JSON array), what a value's type is, which order
//! elements go in, and which may be nil.

pub mod wsdl;

pub use wsdl::{Operation, ServiceDescription, WsdlError};

/// Index of a type in [`Schema::types`]. Types refer to each other by id, so recursive
/// schemas need no reference counting.
pub type TypeId = usize;

#[derive(Debug, Default, Clone)]
pub struct Schema {
    pub types: Vec<TypeDef>,
}

impl Schema {
    pub fn get(&self, id: TypeId) -> &TypeDef {
        &self.types[id]
    }

    /// Names of the elements whose children may come in any order (`xs:all`): comparing two
    /// messages, their order is no difference.
    pub fn unordered_elements(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .types
            .iter()
            .filter_map(|t| match t {
                TypeDef::Complex(c) => Some(c),
                TypeDef::Simple(_) => None,
            })
            .flat_map(|c| &c.children)
            .filter(|e| matches!(self.get(e.ty), TypeDef::Complex(c) if c.unordered))
            .map(|e| e.name.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

#[derive(Debug, Clone)]
pub enum TypeDef {
    Simple(SimpleType),
    Complex(ComplexType),
}

#[derive(Debug, Clone)]
pub struct SimpleType {
    /// Name for messages, e.g. `xs:int` or `tns:LangType`.
    pub name: String,
    pub kind: SimpleKind,
    /// Allowed values when the type is an enumeration.
    pub enumeration: Vec<String>,
}

/// The built-in kinds that change how a value is written in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimpleKind {
    /// Stays a JSON string whatever it looks like ("0085" stays "0085").
    String,
    Boolean,
    /// An integer type with its value range (`xs:int`, `xs:long`, `xs:unsignedShort`, ...).
    Integer {
        min: i128,
        max: i128,
    },
    /// Exact decimal: travels as a JSON number with exactly the digits given.
    Decimal,
    /// Binary floating point (`xs:double`, `xs:float`).
    Double,
    /// `xs:dateTime`: a string in JSON (XML-RPC writes it as `dateTime.iso8601`).
    DateTime,
    /// `xs:date`: a string in JSON (XML-RPC writes it as `dateTime.iso8601` at midnight).
    Date,
    /// `xs:base64Binary`: a string in JSON (XML-RPC writes it as `base64`).
    Base64,
    /// Anything else (times, URIs, hex binary, QNames): passed as a string.
    Other,
}

impl SimpleKind {
    /// Maps an XSD built-in type's local name to its kind.
    pub fn builtin(local: &str) -> Option<SimpleKind> {
        use SimpleKind::*;
        let i = |min: i128, max: i128| Integer { min, max };
        Some(match local {
            "string" | "normalizedString" | "token" | "language" | "Name" | "NCName" | "ID"
            | "IDREF" | "ENTITY" | "NMTOKEN" => String,
            "boolean" => Boolean,
            "byte" => i(i8::MIN.into(), i8::MAX.into()),
            "short" => i(i16::MIN.into(), i16::MAX.into()),
            "int" => i(i32::MIN.into(), i32::MAX.into()),
            "long" => i(i64::MIN.into(), i64::MAX.into()),
            "unsignedByte" => i(0, u8::MAX.into()),
            "unsignedShort" => i(0, u16::MAX.into()),
            "unsignedInt" => i(0, u32::MAX.into()),
            "unsignedLong" => i(0, u64::MAX.into()),
            "integer" => i(i128::MIN, i128::MAX),
            "nonNegativeInteger" => i(0, i128::MAX),
            "positiveInteger" => i(1, i128::MAX),
            "nonPositiveInteger" => i(i128::MIN, 0),
            "negativeInteger" => i(i128::MIN, -1),
            "decimal" => Decimal,
            "double" | "float" => Double,
            "dateTime" => DateTime,
            "date" => Date,
            "base64Binary" => Base64,
            "anyType" | "anySimpleType" | "time" | "duration" | "gYear" | "gYearMonth"
            | "gMonth" | "gMonthDay" | "gDay" | "anyURI" | "QName" | "hexBinary" | "NOTATION"
            | "IDREFS" | "ENTITIES" | "NMTOKENS" => Other,
            _ => return None,
        })
    }

    pub fn describe(self) -> &'static str {
        match self {
            SimpleKind::String | SimpleKind::Other => "a string",
            SimpleKind::DateTime => "a date and time",
            SimpleKind::Date => "a date",
            SimpleKind::Base64 => "base64 data",
            SimpleKind::Boolean => "a boolean (true, false, 1 or 0)",
            SimpleKind::Integer { .. } => "an integer",
            SimpleKind::Decimal => "a decimal number",
            SimpleKind::Double => "a number",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ComplexType {
    pub name: String,
    /// Child elements in schema sequence order (a base type's children first).
    pub children: Vec<ElementDecl>,
    /// The children are an `xs:all`: any order is valid.
    pub unordered: bool,
}

impl ComplexType {
    pub fn child(&self, local: &str) -> Option<&ElementDecl> {
        self.children.iter().find(|c| c.name == local)
    }
}

#[derive(Debug, Clone)]
pub struct ElementDecl {
    pub name: String,
    /// Namespace when the element is qualified; `None` for unqualified local elements.
    pub namespace: Option<String>,
    pub min_occurs: u32,
    /// `None` means unbounded.
    pub max_occurs: Option<u32>,
    pub nillable: bool,
    pub ty: TypeId,
}

impl ElementDecl {
    /// Elements that may occur more than once are JSON arrays, always.
    pub fn is_repeated(&self) -> bool {
        self.max_occurs.is_none_or(|m| m > 1)
    }
    pub fn is_required(&self) -> bool {
        self.min_occurs > 0
    }
}
