//! The neutral call model: what a decoded request is, whatever its wire format.
//!
//! A call's parameters are a JSON-shaped tree ([`Val`]) that borrows from the request body and
//! from the schema: keys are the schema's element names, text is borrowed unless it had to be
//! unescaped, and integers are stored inline. Decoding therefore allocates only for objects and
//! lists, and a list of integers (the usual large part of a request: ids) takes 8 bytes an item
//! ([`Val::Ints`]). Mapping templates read it directly and convert to `serde_json` only what
//! they select ([`Val::to_json`]).

use std::borrow::Cow;
use std::str::FromStr;

use serde_json::{Map, Number, Value};

/// A JSON value borrowed from a request.
#[derive(Debug, Clone)]
pub enum Val<'a> {
    Null,
    Bool(bool),
    /// An integer that fits i64.
    Int(i64),
    /// Any other number, as exact JSON number text (decimals keep their digits).
    Num(Cow<'a, str>),
    Str(Cow<'a, str>),
    List(Vec<Val<'a>>),
    /// A list whose items are all integers, held as 8 bytes an item instead of a 32-byte
    /// `Val` each. It is the same value as a `List` of `Int`s, and compares equal to one;
    /// [`Val::list_of`] and [`Val::push_item`] choose the form.
    Ints(Vec<i64>),
    /// Members in document order; keys are unique.
    Obj(Vec<(&'a str, Val<'a>)>),
}

impl PartialEq for Val<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Val::Null, Val::Null) => true,
            (Val::Bool(a), Val::Bool(b)) => a == b,
            (Val::Int(a), Val::Int(b)) => a == b,
            (Val::Num(a), Val::Num(b)) | (Val::Str(a), Val::Str(b)) => a == b,
            (Val::List(a), Val::List(b)) => a == b,
            (Val::Ints(a), Val::Ints(b)) => a == b,
            (Val::Ints(a), Val::List(b)) | (Val::List(b), Val::Ints(a)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| *y == Val::Int(*x))
            }
            (Val::Obj(a), Val::Obj(b)) => a == b,
            _ => false,
        }
    }
}

impl<'a> Val<'a> {
    /// A list of one item: compact when the item is an integer.
    pub(crate) fn list_of(first: Val<'a>) -> Val<'a> {
        Val::list_with_room(first, 3)
    }

    /// [`Val::list_of`], with room for `more` items.
    pub(crate) fn list_with_room(first: Val<'a>, more: usize) -> Val<'a> {
        match first {
            Val::Int(i) => {
                let mut items = Vec::with_capacity(1 + more);
                items.push(i);
                Val::Ints(items)
            }
            v => {
                let mut items = Vec::with_capacity(1 + more);
                items.push(v);
                Val::List(items)
            }
        }
    }

    /// Appends an item to a list (a compact list of integers becomes a `List` when an item
    /// that is not an integer comes). Nothing happens to a value that is not a list.
    #[inline(always)]
    pub(crate) fn push_item(&mut self, item: Val<'a>) {
        match (self, item) {
            (Val::Ints(items), Val::Int(i)) => items.push(i),
            (Val::List(items), v) => items.push(v),
            (this @ Val::Ints(_), v) => {
                let Val::Ints(ints) = std::mem::replace(this, Val::Null) else {
                    unreachable!()
                };
                let mut items = Vec::with_capacity(ints.capacity().max(ints.len() + 1));
                items.extend(ints.into_iter().map(Val::Int));
                items.push(v);
                *this = Val::List(items);
            }
            _ => {}
        }
    }

    /// The number of items of a list.
    #[inline(always)]
    pub fn list_len(&self) -> Option<usize> {
        match self {
            Val::List(items) => Some(items.len()),
            Val::Ints(items) => Some(items.len()),
            _ => None,
        }
    }

    /// Room for `more` items beyond those a list has.
    pub(crate) fn reserve_items(&mut self, more: usize) {
        match self {
            Val::List(items) => items.reserve_exact(more),
            Val::Ints(items) => items.reserve_exact(more),
            _ => {}
        }
    }

    /// Gives back the room of a large list (over 1,024 slots) that holds less than half of it.
    pub(crate) fn shrink_unused(&mut self) {
        fn shrink<T>(items: &mut Vec<T>) {
            if items.capacity() > 1024 && items.capacity() > items.len() * 2 {
                items.shrink_to_fit();
            }
        }
        match self {
            Val::List(items) => shrink(items),
            Val::Ints(items) => shrink(items),
            _ => {}
        }
    }

    /// A scalar borrowed from this one (a list or object is copied).
    pub fn view(&self) -> Val<'_> {
        match self {
            Val::Str(s) => Val::Str(Cow::Borrowed(s)),
            Val::Num(s) => Val::Num(Cow::Borrowed(s)),
            other => other.clone(),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Val::Null)
    }

    /// What it is, for messages: "a string", "a list".
    pub fn kind(&self) -> &'static str {
        match self {
            Val::Null => "null",
            Val::Bool(_) => "a boolean",
            Val::Int(_) | Val::Num(_) => "a number",
            Val::Str(_) => "a string",
            Val::List(_) | Val::Ints(_) => "a list",
            Val::Obj(_) => "an object",
        }
    }

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
            Value::Number(n) => {
                integer_text(n.as_str()).unwrap_or(Val::Num(Cow::Borrowed(n.as_str())))
            }
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
            Val::Ints(items) => Value::Array(items.iter().map(|i| Value::from(*i)).collect()),
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

/// A value as templates and writers read it, borrowed: a `serde_json` value (a backend's
/// answer, a configured literal) or a call value (a decoded request, an answer read in place).
#[derive(Debug, Clone, Copy)]
pub enum Doc<'a> {
    Json(&'a Value),
    Call(&'a Val<'a>),
    /// An item of a call's compact list of integers ([`Val::Ints`]).
    Int(i64),
}

impl<'a> Doc<'a> {
    pub(crate) fn member(self, key: &str) -> Option<Doc<'a>> {
        match self {
            Doc::Json(Value::Object(m)) => m.get(key).map(Doc::Json),
            Doc::Call(v) => v.get(key).map(Doc::Call),
            _ => None,
        }
    }

    pub(crate) fn element(self, i: usize) -> Option<Doc<'a>> {
        match self {
            Doc::Json(Value::Array(a)) => a.get(i).map(Doc::Json),
            Doc::Call(Val::List(a)) => a.get(i).map(Doc::Call),
            Doc::Call(Val::Ints(a)) => a.get(i).map(|n| Doc::Int(*n)),
            _ => None,
        }
    }

    /// The length, when it is a list.
    pub(crate) fn len(self) -> Option<usize> {
        match self {
            Doc::Json(Value::Array(a)) => Some(a.len()),
            Doc::Call(v) => v.list_len(),
            _ => None,
        }
    }

    pub(crate) fn is_null(self) -> bool {
        matches!(self, Doc::Json(Value::Null) | Doc::Call(Val::Null))
    }

    pub(crate) fn to_val(self) -> Val<'a> {
        match self {
            Doc::Json(v) => Val::borrowed(v),
            Doc::Call(v) => v.clone(),
            Doc::Int(n) => Val::Int(n),
        }
    }

    pub(crate) fn to_json(self) -> Value {
        match self {
            Doc::Json(v) => v.clone(),
            Doc::Call(v) => v.to_json(),
            Doc::Int(n) => Value::from(n),
        }
    }
}

/// What a [`Tree`] node is, for a writer.
#[derive(Debug)]
pub enum Form<'t> {
    Null,
    /// A string, number or boolean (borrowed).
    Scalar(Val<'t>),
    /// A list of this many items, some of which may turn out absent ([`Tree::item`]).
    List(usize),
    Obj,
}

impl Form<'_> {
    /// What it is, for messages: "a string", "a list".
    pub fn kind(&self) -> &'static str {
        match self {
            Form::Null => "null",
            Form::Scalar(v) => v.kind(),
            Form::List(_) => "a list",
            Form::Obj => "an object",
        }
    }
}

/// A value the writers read: a borrowed document ([`Doc`]), or an operation's result that is
/// evaluated from its template as it is read, so that a large result is never built whole.
/// Handles are small and copied.
pub trait Tree<'t>: Copy {
    fn form(self) -> Form<'t>;
    /// The member `key` of an object.
    fn member(self, key: &str) -> Option<Self>;
    /// Item `i` of a list (below its [`Form::List`] length); `None` when it is absent.
    fn item(self, i: usize) -> Option<Self>;
    fn is_null(self) -> bool {
        matches!(self.form(), Form::Null)
    }
    /// The node as a JSON value, when it is a value read from a document (not one a template
    /// builds): for a writer that has no typed place for a nested value and writes its text.
    fn to_json(self) -> Option<Value> {
        None
    }
}

impl<'t> Tree<'t> for Doc<'t> {
    fn form(self) -> Form<'t> {
        match self {
            d if d.is_null() => Form::Null,
            Doc::Json(Value::Object(_)) | Doc::Call(Val::Obj(_)) => Form::Obj,
            d => match d.len() {
                Some(n) => Form::List(n),
                None => Form::Scalar(match d {
                    Doc::Json(v) => Val::borrowed(v),
                    Doc::Call(v) => v.view(),
                    Doc::Int(n) => Val::Int(n),
                }),
            },
        }
    }
    fn member(self, key: &str) -> Option<Self> {
        Doc::member(self, key)
    }
    fn item(self, i: usize) -> Option<Self> {
        self.element(i)
    }
    fn is_null(self) -> bool {
        Doc::is_null(self)
    }
    fn to_json(self) -> Option<Value> {
        Some(Doc::to_json(self))
    }
}

impl<'a> Val<'a> {
    /// A JSON text (a backend's answer) as a call value borrowing its strings and keys from
    /// the text: cheaper to build, read and drop than a `serde_json::Value`, whose objects are
    /// maps of owned keys. `None` when the text is not JSON, or has an object key written with
    /// escapes (which cannot be borrowed): the caller then reads it as a `Value`, which also
    /// says what is wrong with it. A key given twice keeps its last value, as `Value` does.
    pub fn from_json_slice(text: &'a [u8]) -> Option<Val<'a>> {
        let mut de = serde_json::Deserializer::from_slice(text);
        let v = serde::Deserialize::deserialize(&mut de).ok()?;
        de.end().ok()?;
        Some(v)
    }
}

/// A JSON number's text as an inline integer, when it is one that fits i64 and reads back as
/// the same text (JSON has no `+` and no leading zeros; `-0` is the one exception).
fn integer_text(text: &str) -> Option<Val<'static>> {
    text.parse().ok().filter(|_| text != "-0").map(Val::Int)
}

/// serde_json (with `arbitrary_precision`) hands a number that is not an integer as a map of
/// this one key and the number's text.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

impl<'de> serde::Deserialize<'de> for Val<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::DeserializeSeed::deserialize(ValVisitor(&mut Scratch::default()), d)
    }
}

/// Where the members and items of the objects and lists being read wait until their object or
/// list ends, so that each is then allocated once, at its exact size (growing each by
/// doubling would leave up to half of every one unused).
#[derive(Default)]
struct Scratch<'de> {
    members: Vec<(&'de str, Val<'de>)>,
    items: Vec<Val<'de>>,
}

impl<'de> serde::de::DeserializeSeed<'de> for ValVisitor<'_, 'de> {
    type Value = Val<'de>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Val<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

struct ValVisitor<'s, 'de>(&'s mut Scratch<'de>);

/// An object key, borrowed when it was written without escapes.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> serde::de::Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_string()))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

impl<'de> serde::de::Visitor<'de> for ValVisitor<'_, 'de> {
    type Value = Val<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Val<'de>, E> {
        Ok(Val::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Val<'de>, E> {
        Ok(Val::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Val<'de>, E> {
        Ok(Val::Int(i))
    }
    fn visit_u64<E>(self, u: u64) -> Result<Val<'de>, E> {
        Ok(match i64::try_from(u) {
            Ok(i) => Val::Int(i),
            Err(_) => Val::Num(u.to_string().into()),
        })
    }
    fn visit_f64<E: serde::de::Error>(self, f: f64) -> Result<Val<'de>, E> {
        Number::from_f64(f)
            .map(|n| Val::Num(n.to_string().into()))
            .ok_or_else(|| E::custom("not a finite number"))
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Val<'de>, E> {
        Ok(Val::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Val<'de>, E> {
        Ok(Val::Str(Cow::Owned(s.to_string())))
    }
    fn visit_string<E>(self, s: String) -> Result<Val<'de>, E> {
        Ok(Val::Str(Cow::Owned(s)))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Val<'de>, A::Error> {
        let start = self.0.items.len();
        while let Some(v) = seq.next_element_seed(ValVisitor(&mut *self.0))? {
            self.0.items.push(v);
        }
        let items = self.0.items.drain(start..);
        Ok(
            if items.as_slice().iter().all(|v| matches!(v, Val::Int(_))) && items.len() > 0 {
                Val::Ints(
                    items
                        .map(|v| match v {
                            Val::Int(i) => i,
                            _ => unreachable!("only integers"),
                        })
                        .collect(),
                )
            } else {
                Val::List(items.collect())
            },
        )
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Val<'de>, A::Error> {
        use serde::de::Error as _;
        let start = self.0.members.len();
        // Keys already given, for objects too large to search for a repeated key.
        let mut index: Option<std::collections::HashMap<&'de str, usize>> = None;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let number = match &key {
                Key::Borrowed(k) => *k == NUMBER_TOKEN,
                Key::Owned(k) => k == NUMBER_TOKEN,
            };
            if number && self.0.members.len() == start {
                let text: String = map.next_value()?;
                return Ok(integer_text(&text).unwrap_or(Val::Num(Cow::Owned(text))));
            }
            let Key::Borrowed(key) = key else {
                return Err(A::Error::custom("an object key with escapes"));
            };
            let value = map.next_value_seed(ValVisitor(&mut *self.0))?;
            let members = &mut self.0.members[start..];
            if members.len() >= 16 && index.is_none() {
                index = Some(
                    members
                        .iter()
                        .enumerate()
                        .map(|(i, (k, _))| (*k, i))
                        .collect(),
                );
            }
            let at = match &mut index {
                Some(ix) => match ix.get(key) {
                    Some(i) => Some(*i),
                    None => {
                        ix.insert(key, members.len());
                        None
                    }
                },
                None => members.iter().position(|(k, _)| *k == key),
            };
            match at {
                Some(i) => members[i].1 = value,
                None => self.0.members.push((key, value)),
            }
        }
        Ok(Val::Obj(self.0.members.drain(start..).collect()))
    }
}

/// A visitor's methods for scalars, each of which it lets pass.
macro_rules! scalars_pass {
    () => {
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
    };
}

/// A list inside a JSON text (a backend's answer), read one item at a time
/// ([`JsonList::each`]): each item a call value, read as [`Val::from_json_slice`] reads it
/// (borrowing from the text), and let go before the next is read. A long list is then held
/// as its text alone, never as values (which take about 2.5x the text for a list of small
/// objects).
pub struct JsonList<'a, 'p> {
    text: &'a [u8],
    path: &'p [&'p str],
    len: usize,
}

impl std::fmt::Debug for JsonList<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonList")
            .field("path", &self.path)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<'a, 'p> JsonList<'a, 'p> {
    /// The list at `path` (object keys, from the top) in `text`, with the value at each path
    /// of `beside` (also object keys), when reading them this way means what reading the whole
    /// text would: the text is JSON in UTF-8, no object on a path names its key twice or writes
    /// a key with escapes, and no item of the list has a key written with escapes. A path that
    /// stops at a value that is not an object, or at an object without its next key, finds
    /// nothing: an absent list has no items, and so has a value there that is not a list.
    /// `None` for any other text, which the caller then reads whole: one that is not JSON (which
    /// the whole read explains), and one where a path meets a list before its end (a key
    /// applied to a list applies to each of its items, which only the whole read does); and
    /// when the paths overlap.
    ///
    /// What is checked without being built: the text's UTF-8, its structure, and, when it has a
    /// backslash, every string's escapes and every key. What only building finds, nesting
    /// deeper than serde_json's limit (128), is found in an item when [`JsonList::each`] reads
    /// it (and ignored outside the list).
    pub fn find(
        text: &'a [u8],
        path: &'p [&'p str],
        beside: &[&[&str]],
    ) -> Option<(JsonList<'a, 'p>, Vec<Option<Val<'a>>>)> {
        let overlap = |a: &[&str], b: &[&str]| a.starts_with(b) || b.starts_with(a);
        if beside
            .iter()
            .enumerate()
            .any(|(i, b)| overlap(b, path) || beside[..i].iter().any(|earlier| overlap(b, earlier)))
        {
            return None;
        }
        std::str::from_utf8(text).ok()?;
        let mut paths = Vec::with_capacity(1 + beside.len());
        paths.push(path);
        paths.extend_from_slice(beside);
        let mut found = Found {
            len: 0,
            // Without a backslash in the text, no string has escapes (to check) and no key is
            // written with them: what is not on a path need only be JSON, checked faster.
            strict: text.contains(&b'\\'),
            values: vec![None; paths.len()],
            scratch: Scratch::default(),
        };
        let live: Vec<usize> = (0..paths.len()).collect();
        let mut de = serde_json::Deserializer::from_slice(text);
        let probe = Probe {
            paths: &paths,
            depth: 0,
            live: &live,
            found: &mut found,
        };
        serde::de::DeserializeSeed::deserialize(probe, &mut de).ok()?;
        de.end().ok()?;
        let Found {
            len, mut values, ..
        } = found;
        values.remove(0);
        Some((JsonList { text, path, len }, values))
    }

    /// How many items the list has (0 when there is no list).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Hands each item to `f`, in order, each read when the one before it is done with. An
    /// item [`JsonList::find`] could not check (nested deeper than serde_json reads) is an
    /// error, after the items before it were handed on.
    pub fn each(&self, mut f: impl FnMut(&Val<'a>)) -> Result<(), String> {
        if self.len == 0 {
            return Ok(());
        }
        let mut de = serde_json::Deserializer::from_slice(self.text);
        let walk = Walk {
            path: self.path,
            scratch: &mut Scratch::default(),
            f: &mut f,
        };
        serde::de::DeserializeSeed::deserialize(walk, &mut de)
            .map_err(|e| format!("its list could not be read: {e}"))
    }
}

/// What [`JsonList::find`] found: the list's length, and the value at each path (the list's
/// own first, unused).
struct Found<'a> {
    len: usize,
    strict: bool,
    values: Vec<Option<Val<'a>>>,
    scratch: Scratch<'a>,
}

/// The first reading of [`JsonList::find`]: follows the paths (`live`: those that have come
/// this far, each `depth` keys deep), checks the list's items, and takes the values beside it;
/// everything else is checked as JSON only.
struct Probe<'s, 'a> {
    paths: &'s [&'s [&'s str]],
    depth: usize,
    live: &'s [usize],
    found: &'s mut Found<'a>,
}

fn refuse<E: serde::de::Error>(why: &str) -> E {
    E::custom(why)
}

impl<'de> serde::de::DeserializeSeed<'de> for Probe<'_, 'de> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        match self.live {
            // The list's path ends here.
            [0] if self.paths[0].len() == self.depth => d.deserialize_any(Items {
                len: &mut self.found.len,
                strict: self.found.strict,
            }),
            // A value beside the list.
            [i] if self.paths[*i].len() == self.depth => {
                let v = ValVisitor(&mut self.found.scratch).deserialize(d)?;
                self.found.values[*i] = Some(v);
                Ok(())
            }
            _ => d.deserialize_any(self),
        }
    }
}

impl<'de> serde::de::Visitor<'de> for Probe<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    scalars_pass!();
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(refuse("a list on the path"))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut taken: Vec<&'de str> = Vec::new();
        let mut first = true;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            if first && matches!(key, Key::Borrowed(k) if k == NUMBER_TOKEN) {
                // A number's text (serde_json's `arbitrary_precision`): a scalar.
                map.next_value::<serde::de::IgnoredAny>()?;
                return Ok(());
            }
            first = false;
            let text = match &key {
                Key::Borrowed(k) => *k,
                Key::Owned(k) => k.as_str(),
            };
            let live: Vec<usize> = self
                .live
                .iter()
                .copied()
                .filter(|&i| self.paths[i].get(self.depth) == Some(&text))
                .collect();
            if live.is_empty() {
                if self.found.strict {
                    map.next_value_seed(Checked { keys: false })?;
                } else {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
                continue;
            }
            // A path's key written with escapes, or given twice: only the whole read reads it
            // as it means.
            let Key::Borrowed(key) = key else {
                return Err(refuse("a key with escapes on the path"));
            };
            if taken.contains(&key) {
                return Err(refuse("a key given twice on the path"));
            }
            taken.push(key);
            map.next_value_seed(Probe {
                paths: self.paths,
                depth: self.depth + 1,
                live: &live,
                found: &mut *self.found,
            })?;
        }
        Ok(())
    }
}

/// The list, in the first reading: its items counted, and checked ([`Checked`]) when the text
/// has escapes.
struct Items<'s> {
    len: &'s mut usize,
    strict: bool,
}

impl<'de> serde::de::Visitor<'de> for Items<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    scalars_pass!();
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Not a list (an object, or a number's text): no items.
        if self.strict {
            return serde::de::Visitor::visit_map(Checked { keys: false }, map);
        }
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.strict {
            while seq.next_element_seed(Checked { keys: true })?.is_some() {
                *self.len += 1;
            }
        } else {
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                *self.len += 1;
            }
        }
        Ok(())
    }
}

/// A value, in the first reading of a text with escapes: checked to read as a call value
/// (strings as serde_json reads them, no key with escapes) without being built.
/// `keys`: whether a key written with escapes is refused (in the list's items, which are
/// read as call values) or let pass (elsewhere, where nothing is read).
#[derive(Clone, Copy)]
struct Checked {
    keys: bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for Checked {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Checked {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    scalars_pass!();
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // A number's text (serde_json's `arbitrary_precision`) comes as a map whose one key is
        // borrowed: an owned key was written with escapes.
        while let Some(key) = map.next_key::<Key<'de>>()? {
            if self.keys && matches!(key, Key::Owned(_)) {
                return Err(refuse("a key with escapes"));
            }
            map.next_value_seed(self)?;
        }
        Ok(())
    }
}

/// The second reading ([`JsonList::each`]): along the path to the list, then each item read
/// and handed on.
struct Walk<'s, 'de, F> {
    path: &'s [&'s str],
    scratch: &'s mut Scratch<'de>,
    f: &'s mut F,
}

impl<'de, F: FnMut(&Val<'de>)> serde::de::DeserializeSeed<'de> for Walk<'_, 'de, F> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, F: FnMut(&Val<'de>)> serde::de::Visitor<'de> for Walk<'_, 'de, F> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the list's path")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.path.split_first() else {
            return Err(refuse("not a list"));
        };
        while let Some(key) = map.next_key::<Key<'de>>()? {
            if matches!(key, Key::Borrowed(k) if k == *first) {
                map.next_value_seed(Walk {
                    path: rest,
                    scratch: &mut *self.scratch,
                    f: &mut *self.f,
                })?;
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if !self.path.is_empty() {
            return Err(refuse("a list on the path"));
        }
        while let Some(item) = seq.next_element_seed(ValVisitor(&mut *self.scratch))? {
            (self.f)(&item);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_text_reads_as_the_value_serde_json_gives() {
        let texts = [
            r#"{"product_count":2,"products":[{"product_id":587300354,"title":"Kırmızı \"Deri\" Cüzdan","options":[{"price":12.50,"paid":false,"expires_at":null}]}]}"#,
            r#"[1,-2,18446744073709551615,-9223372036854775808,1.5e3,0.10,"a\u00e7b",true,null,{}]"#,
            r#"{"a":1,"b":2,"a":3}"#,
            "  \"text\"  ",
        ];
        for t in texts {
            let v = Val::from_json_slice(t.as_bytes()).unwrap_or_else(|| panic!("{t}"));
            let expected: Value = serde_json::from_str(t).unwrap();
            assert_eq!(v.to_json(), expected, "{t}");
        }
        // A repeated key keeps its last value, in large objects too.
        let big: String = (0..40).map(|i| format!("\"k{i}\":{i},")).collect();
        let text = format!("{{{big}\"k3\":\"last\"}}");
        let v = Val::from_json_slice(text.as_bytes()).unwrap();
        assert_eq!(v.get("k3").and_then(Val::as_str), Some("last"));
        let Val::Obj(members) = &v else { panic!() };
        assert_eq!(members.len(), 40);
        // Strings are borrowed from the text when they can be.
        let text = br#"{"title":"plain"}"#;
        let v = Val::from_json_slice(text).unwrap();
        assert!(matches!(v.get("title"), Some(Val::Str(Cow::Borrowed(_)))));
        // Every object and list is allocated at its size, nested ones too.
        fn exact(v: &Val<'_>) -> bool {
            match v {
                Val::Obj(m) => m.capacity() == m.len() && m.iter().all(|(_, v)| exact(v)),
                Val::List(items) => items.capacity() == items.len() && items.iter().all(exact),
                Val::Ints(items) => items.capacity() == items.len(),
                _ => true,
            }
        }
        let text = br#"{"a":{"x":1,"y":[1,2,3],"z":{"q":[{"r":1},"s"]}},"b":[{"c":1},{"d":"e","f":2,"g":null}],"h":[]}"#;
        let v = Val::from_json_slice(text).unwrap();
        assert!(exact(&v), "{v:?}");
        assert_eq!(v.to_json(), serde_json::from_slice::<Value>(text).unwrap());
        // Not JSON, trailing bytes, or an escaped key: None (the caller reads a Value instead).
        for bad in ["", "{", "[1] x", r#"{"a\u0062":1}"#, "NaN"] {
            assert!(Val::from_json_slice(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_list_in_a_json_text_is_read_one_item_at_a_time_as_the_whole_text_reads() {
        let items = |text: &str, path: &[&str], beside: &[&[&str]]| {
            let (list, values) = JsonList::find(text.as_bytes(), path, beside)?;
            let mut read = Vec::new();
            list.each(|v| read.push(v.to_json())).unwrap();
            assert_eq!(read.len(), list.len(), "{text}");
            let values: Vec<Option<Value>> = values
                .iter()
                .map(|v| v.as_ref().map(Val::to_json))
                .collect();
            Some((read, values))
        };
        // The items, as the whole text read as a value has them; the values beside the list
        // wherever they stand; numbers keep their text.
        let text = r#"{"meta":{"total":3,"x":[1,{"a\u0062":2}]},"data":{"items":[{"id":1,"p":12.50,"n":"A \"b\""},[5,6],null,{"id":18446744073709551615}],"after":"x"}}"#;
        let whole: Value = serde_json::from_str(text).unwrap();
        let (read, values) = items(
            text,
            &["data", "items"],
            &[&["meta", "total"], &["data", "after"], &["nowhere"]],
        )
        .unwrap();
        assert_eq!(Value::Array(read), whole["data"]["items"]);
        assert_eq!(values, vec![Some(json!(3)), Some(json!("x")), None]);
        // The whole text may be the list.
        let (read, _) = items("[1,{\"a\":[2]}] ", &[], &[]).unwrap();
        assert_eq!(read, vec![json!(1), json!({"a": [2]})]);
        // No list there: no items.
        for (text, path) in [
            (r#"{"items":null}"#, &["items"][..]),
            (r#"{"items":{"a":1}}"#, &["items"]),
            (r#"{"items":12.5}"#, &["items"]),
            (r#"{"other":[1]}"#, &["items"]),
            (r#"{"data":"text"}"#, &["data", "items"]),
            (r#"{"data":7}"#, &["data", "items"]),
        ] {
            assert_eq!(items(text, path, &[]), Some((vec![], vec![])), "{text}");
        }
        // What only reading the whole text would read right: not read this way.
        for (text, path) in [
            ("{\"items\":[1]", &["items"][..]),
            (r#"{"items":[1]} x"#, &["items"]),
            (r#"{"items":[1,]}"#, &["items"]),
            (r#"{"data":[{"items":[1]}]}"#, &["data", "items"]),
            (r#"{"items":[1],"items":[2]}"#, &["items"]),
            (r#"{"it\u0065ms":[1]}"#, &["items"]),
            (r#"{"items":[{"a\u0062":1}]}"#, &["items"]),
        ] {
            assert_eq!(items(text, path, &[]), None, "{text}");
        }
        // A value beside the list within it, or the list within it: not read this way.
        assert!(items(r#"{"items":[1]}"#, &["items"], &[&["items", "n"]]).is_none());
        assert!(items(r#"{"items":[1]}"#, &["items"], &[&[]]).is_none());
        // A key given twice away from the paths is no matter, nor one written with escapes.
        let (read, _) = items(r#"{"a":1,"a":2,"items":[3]}"#, &["items"], &[]).unwrap();
        assert_eq!(read, vec![json!(3)]);
        let (read, _) = items(r#"{"\u0061":1,"items":[3]}"#, &["items"], &[]).unwrap();
        assert_eq!(read, vec![json!(3)]);
        // Text the whole read refuses, in the list or beside it: not UTF-8, a lone surrogate.
        assert!(JsonList::find(b"{\"items\":[\"\xff\"]}", &["items"], &[]).is_none());
        assert!(JsonList::find(b"{\"x\":\"\xff\",\"items\":[]}", &["items"], &[]).is_none());
        for text in [r#"{"items":["\ud800"]}"#, r#"{"x":"\ud800","items":[1]}"#] {
            assert!(Val::from_json_slice(text.as_bytes()).is_none(), "{text}");
            assert_eq!(items(text, &["items"], &[]), None, "{text}");
        }
        // A key written with escapes in an item, even one spelling a number's token: the whole
        // read says what it is.
        let text = r#"{"items":[{"$serde_json::private::Numbe\u0072":"1"}]}"#;
        assert_eq!(items(text, &["items"], &[]), None, "{text}");
        // Values beside the list at overlapping paths: not read this way.
        assert!(items(r#"{"n":1,"items":[1]}"#, &["items"], &[&["n"], &["n"]]).is_none());
        // An item nested deeper than serde_json reads is found when the items are read, after
        // the items before it.
        let deep = format!("{{\"items\":[1,{}{}]}}", "[".repeat(200), "]".repeat(200));
        let (list, _) = JsonList::find(deep.as_bytes(), &["items"], &[]).unwrap();
        let mut read = Vec::new();
        assert!(list.each(|v| read.push(v.to_json())).is_err());
        assert_eq!(read, vec![json!(1)]);
    }

    /// A JSON text's tree, as generated for the property below: objects may repeat a key.
    #[derive(Debug, Clone)]
    enum J {
        Null,
        Int(i64),
        Dec(String),
        Str(String),
        List(Vec<J>),
        Obj(Vec<(String, J)>),
    }

    impl J {
        fn text(&self) -> String {
            match self {
                J::Null => "null".into(),
                J::Int(n) => n.to_string(),
                J::Dec(d) => d.clone(),
                J::Str(s) => serde_json::to_string(s).unwrap(),
                J::List(items) => {
                    let items: Vec<String> = items.iter().map(J::text).collect();
                    format!("[{}]", items.join(","))
                }
                J::Obj(members) => {
                    let members: Vec<String> = members
                        .iter()
                        .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), v.text()))
                        .collect();
                    format!("{{{}}}", members.join(","))
                }
            }
        }

        /// Whether the list at `path` must be found: no list on the path and no key on it given
        /// twice (escaped keys aside).
        fn plain_path(&self, path: &[&str]) -> bool {
            let Some((first, rest)) = path.split_first() else {
                return true;
            };
            match self {
                J::List(_) => false,
                J::Obj(members) => {
                    let mut at = members.iter().filter(|(k, _)| k == first);
                    match (at.next(), at.next()) {
                        (Some((_, v)), None) => v.plain_path(rest),
                        (None, _) => true,
                        _ => false,
                    }
                }
                _ => true,
            }
        }
    }

    fn json_tree() -> impl proptest::strategy::Strategy<Value = J> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(J::Null),
            any::<i64>().prop_map(J::Int),
            Just(J::Dec("12.50".into())),
            "[a-z\"\\\\é]{0,6}".prop_map(J::Str),
        ];
        leaf.prop_recursive(5, 64, 6, |inner| {
            let key = prop_oneof![Just("a"), Just("items"), Just("b"), Just("k\"q")]
                .prop_map(str::to_string);
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(J::List),
                proptest::collection::vec((key, inner), 0..5).prop_map(J::Obj),
            ]
        })
    }

    proptest::proptest! {
        /// Whatever the text, a list read one item at a time is the list the whole text has
        /// (as `serde_json` reads it: a repeated key's last value), or it is not read so.
        #[test]
        fn a_list_read_item_by_item_is_the_list_of_the_whole_text(tree in json_tree()) {
            let text = tree.text();
            let whole: Value = serde_json::from_str(&text).unwrap();
            for path in [&["items"][..], &["a", "items"], &[]] {
                let mut at = Some(&whole);
                for k in path {
                    at = at.and_then(|v| v.get(k));
                }
                let expected = match at {
                    Some(Value::Array(items)) => items.clone(),
                    _ => vec![],
                };
                match JsonList::find(text.as_bytes(), path, &[]) {
                    Some((list, _)) => {
                        let mut read = Vec::new();
                        list.each(|v| read.push(v.to_json())).unwrap();
                        proptest::prop_assert_eq!(&read, &expected, "{} at {:?}", text, path);
                    }
                    None => proptest::prop_assert!(
                        text.contains('\\') || !tree.plain_path(path),
                        "{} at {:?} was not read", text, path
                    ),
                }
            }
        }
    }

    #[test]
    fn a_list_of_integers_is_compact_until_another_item_comes() {
        let mut list = Val::list_of(Val::Int(1));
        list.push_item(Val::Int(2));
        assert!(matches!(&list, Val::Ints(items) if items == &[1, 2]));
        assert_eq!(list, Val::List(vec![Val::Int(1), Val::Int(2)]));
        assert_eq!(list.to_json(), serde_json::json!([1, 2]));
        // Any other item turns it into a list of values, keeping what it had, in order.
        list.push_item(Val::Str("x".into()));
        list.push_item(Val::Int(3));
        assert!(matches!(&list, Val::List(_)));
        assert_eq!(list.to_json(), serde_json::json!([1, 2, "x", 3]));
        assert_eq!(list.list_len(), Some(4));
        assert_ne!(
            Val::Ints(vec![1, 2]),
            Val::List(vec![Val::Int(1), Val::Str("2".into())])
        );
        // A backend's answer gets the same forms.
        let v = Val::from_json_slice(b"[[5,6],[5,\"6\"],[]]").unwrap();
        let Val::List(lists) = &v else { panic!() };
        assert!(matches!(&lists[0], Val::Ints(_)));
        assert!(matches!(&lists[1], Val::List(_)));
        assert_eq!(v.to_json(), serde_json::json!([[5, 6], [5, "6"], []]));
    }

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
