//! The neutral call model: what a decoded request is, whatever its wire format.
//!
//! A call's parameters are a JSON-shaped tree ([`Val`]) that borrows from the request body and
//! from the schema: keys are the schema's element names, text is borrowed unless it had to be
//! unescaped, and integers are stored inline. Decoding therefore allocates only for objects and
//! lists. Mapping templates read it directly and convert to `serde_json` only what they select
//! ([`Val::to_json`]).

use std::borrow::Cow;
use std::str::FromStr;

use serde_json::{Map, Number, Value};

/// A JSON value borrowed from a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    Null,
    Bool(bool),
    /// An integer that fits i64.
    Int(i64),
    /// Any other number, as exact JSON number text (decimals keep their digits).
    Num(Cow<'a, str>),
    Str(Cow<'a, str>),
    List(Vec<Val<'a>>),
    /// Members in document order; keys are unique.
    Obj(Vec<(&'a str, Val<'a>)>),
}

impl<'a> Val<'a> {
    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Val<'a>> {
        match self {
            Val::Obj(members) => members.iter().find(|(k, _)| *k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Removes and returns the member `key` of an object.
    pub fn take(&mut self, key: &str) -> Option<Val<'a>> {
        match self {
            Val::Obj(members) => {
                let i = members.iter().position(|(k, _)| *k == key)?;
                Some(members.remove(i).1)
            }
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }

    /// An integer, also from a string of digits.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Val::Int(i) => Some(*i),
            Val::Str(s) | Val::Num(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// A `serde_json` value as a call value borrowing from it (for calls the bridge makes
    /// itself, such as stock deliveries and winstrom routes).
    pub fn borrowed(v: &'a Value) -> Val<'a> {
        match v {
            Value::Null => Val::Null,
            Value::Bool(b) => Val::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Val::Int(i),
                None => Val::Num(n.to_string().into()),
            },
            Value::String(s) => Val::Str(s.as_str().into()),
            Value::Array(a) => Val::List(a.iter().map(Val::borrowed).collect()),
            Value::Object(m) => Val::Obj(
                m.iter()
                    .map(|(k, v)| (k.as_str(), Val::borrowed(v)))
                    .collect(),
            ),
        }
    }

    /// The same value as `serde_json`.
    pub fn to_json(&self) -> Value {
        match self {
            Val::Null => Value::Null,
            Val::Bool(b) => Value::Bool(*b),
            Val::Int(i) => Value::Number((*i).into()),
            Val::Num(t) => Number::from_str(t)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            Val::Str(s) => Value::String(s.to_string()),
            Val::List(items) => Value::Array(items.iter().map(Val::to_json).collect()),
            Val::Obj(members) => {
                let mut m = Map::new();
                for (k, v) in members {
                    m.insert((*k).to_string(), v.to_json());
                }
                Value::Object(m)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_to_json_exactly() {
        let v = Val::Obj(vec![
            ("ids", Val::List(vec![Val::Int(1), Val::Int(2)])),
            ("price", Val::Num("12.50".into())),
            ("code", Val::Str("0085".into())),
            ("none", Val::Null),
        ]);
        assert_eq!(
            v.to_json().to_string(),
            r#"{"code":"0085","ids":[1,2],"none":null,"price":12.50}"#
        );
        assert_eq!(v.get("code").and_then(Val::as_str), Some("0085"));
        assert_eq!(Val::Str(" 42 ".into()).as_i64(), Some(42));
    }
}
