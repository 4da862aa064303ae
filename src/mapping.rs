//! The mapping language: JSON templates from configuration that build backend requests from
//! a decoded call and shape backend answers into an operation's result.
//!
//! A template is any JSON value. Strings are expressions when they start with `$` or `@`:
//!
//! | form | meaning |
//! |---|---|
//! | `"$"`, `"$.a.b"`, `"$.list[0].x"` | a path into the document (the call's parameters when building a request, the backend's answer when shaping a result) |
//! | `"$input.a"` | a path into the call's parameters (in result templates) |
//! | `"@.a"`, `"@"` | a path into the current item of `$each` |
//! | `"$$text"`, `"@@text"` | the literal string `$text` / `@text` |
//! | `{"$each": "<path>", "$map": <template>}` | one mapped item per element of the list at path |
//! | `{"$value": "<path>", "$default": <json>}` | the value at path, or the default when absent |
//! | `{"$literal": <json>}` | a JSON value taken as is |
//! | `{"$first": [<template>, ...]}` | the first template whose value is present, not null and not `[]` |
//! | `{"$merge": [<template>, ...]}` | objects merged left to right (later members win) |
//! | `{"$entries": "<path>", "$map": <template>, "$skip": [keys]}` | one mapped item per member of the object at path; `@.key` and `@.value` |
//! | `{"$present": "<path>"}` | `true` when the path has a value that is not null, else `false` |
//!
//! Besides `$` and `$input`, paths may start at `$vars` (the backend's configured values),
//! `$session` (the backend session of a session-login backend) and `$batch` (the per-item
//! outcomes of a batched call, in result templates).
//!
//! A path through a list applies to each element (`$.products.id` is the list of ids).
//! Object members whose value is absent are left out, never sent as null.

use serde_json::{Map, Value};

pub use crate::call::Doc;
use crate::call::{Form, Tree, Val};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    Doc,
    Input,
    Item,
    Vars,
    Session,
    Batch,
}

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, PartialEq)]
pub struct PathExpr {
    root: Root,
    segs: Vec<Seg>,
    text: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Path(PathExpr),
    Literal(Value),
    Object(Vec<(String, Node)>),
    Array(Vec<Node>),
    Each(PathExpr, Box<Node>),
    Default(PathExpr, Value),
    First(Vec<Node>),
    Merge(Vec<Node>),
    Entries(PathExpr, Box<Node>, Vec<String>),
    Present(PathExpr),
}

/// How a member of an object template reads the answer ([`Template::member_read`]).
#[derive(Debug, PartialEq)]
pub enum MemberRead<'t> {
    /// The value at a path of object keys from `$` (`rows = "$.items"`), as it is.
    Keys(Vec<&'t str>),
    /// The template has no such member.
    Absent,
    /// Anything else: another root, a list index, a value the template builds; or a template
    /// that is not an object.
    Built,
}

/// A compiled template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template(Node);

/// What expressions can see.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub doc: Doc<'a>,
    pub input: Doc<'a>,
    pub item: Option<Doc<'a>>,
    /// `$vars`: the backend's configured values.
    pub vars: Option<&'a Value>,
    /// `$session`: the backend's current session.
    pub session: Option<&'a Value>,
    /// `$batch`: the outcomes of a batched call.
    pub batch: Option<&'a Value>,
}

impl<'a> Scope<'a> {
    /// A scope over one `serde_json` document (also used as `$input`).
    pub fn json(doc: &'a Value) -> Self {
        Scope::new(Doc::Json(doc), Doc::Json(doc))
    }

    /// A scope reading `doc` as `$` and `input` as `$input`, without other roots.
    pub fn new(doc: Doc<'a>, input: Doc<'a>) -> Self {
        Scope {
            doc,
            input,
            item: None,
            vars: None,
            session: None,
            batch: None,
        }
    }

    fn with_item(&self, item: Doc<'a>) -> Self {
        Scope {
            item: Some(item),
            ..*self
        }
    }
}

impl PathExpr {
    pub fn parse(text: &str) -> Result<PathExpr, String> {
        let named = [
            ("$input", Root::Input),
            ("$vars", Root::Vars),
            ("$session", Root::Session),
            ("$batch", Root::Batch),
        ]
        .into_iter()
        .find_map(|(p, root)| {
            text.strip_prefix(p)
                .filter(|r| r.is_empty() || r.starts_with(['.', '[']))
                .map(|r| (root, r))
        });
        let (root, rest) = if let Some(found) = named {
            found
        } else if let Some(r) = text.strip_prefix('$') {
            (Root::Doc, r)
        } else if let Some(r) = text.strip_prefix('@') {
            (Root::Item, r)
        } else {
            return Err(format!(
                "'{text}' is not a path (it must start with $, $input, $vars, $session, $batch or @)"
            ));
        };
        let mut segs = Vec::new();
        let mut s = rest;
        while !s.is_empty() {
            if let Some(r) = s.strip_prefix('.') {
                let end = r.find(['.', '[']).unwrap_or(r.len());
                let key = &r[..end];
                if key.is_empty() {
                    return Err(format!("'{text}': empty key after '.'"));
                }
                segs.push(Seg::Key(key.to_string()));
                s = &r[end..];
            } else if let Some(r) = s.strip_prefix('[') {
                let end = r
                    .find(']')
                    .ok_or_else(|| format!("'{text}': '[' without ']'"))?;
                let idx = r[..end]
                    .parse()
                    .map_err(|_| format!("'{text}': '[{}]' is not a list index", &r[..end]))?;
                segs.push(Seg::Index(idx));
                s = &r[end + 1..];
            } else {
                return Err(format!("'{text}': expected '.' or '[' at '{s}'"));
            }
        }
        Ok(PathExpr {
            root,
            segs,
            text: text.to_string(),
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn root(&self) -> Root {
        self.root
    }

    fn start<'a>(&self, scope: &Scope<'a>) -> Option<Doc<'a>> {
        Some(match self.root {
            Root::Doc => scope.doc,
            Root::Input => scope.input,
            Root::Item => scope.item?,
            Root::Vars => Doc::Json(scope.vars?),
            Root::Session => Doc::Json(scope.session?),
            Root::Batch => Doc::Json(scope.batch?),
        })
    }

    /// Replaces the value this path (keys only, from `$`) points at in `doc`.
    pub fn set(&self, doc: &mut Value, v: Value) -> bool {
        let mut at = doc;
        for seg in &self.segs {
            at = match (seg, at) {
                (Seg::Key(k), Value::Object(m)) => match m.get_mut(k) {
                    Some(x) => x,
                    None => return false,
                },
                (Seg::Index(i), Value::Array(a)) => match a.get_mut(*i) {
                    Some(x) => x,
                    None => return false,
                },
                _ => return false,
            };
        }
        *at = v;
        true
    }

    /// The value at the path, as `serde_json` (only what it selects is converted).
    pub fn eval(&self, scope: &Scope<'_>) -> Option<Value> {
        walk(self.start(scope)?, &self.segs)
    }

    /// The value at the path as a call value borrowing from the scope's documents.
    fn eval_val<'a>(&self, scope: &Scope<'a>) -> Option<Val<'a>> {
        walk_val(self.start(scope)?, &self.segs)
    }

    /// The value at the path, borrowed where it stands, or built into `keep` when the path
    /// passes through a list.
    fn eval_kept<'s>(&self, scope: &Scope<'s>, keep: &'s Keep<'s>) -> Option<Doc<'s>> {
        match self.eval_ref(scope) {
            Some(d) => Some(d),
            None => Some(Doc::Call(keep.alloc(self.eval_val(scope)?))),
        }
    }

    /// The value at the path without copying it, when the path does not pass through a list.
    fn eval_ref<'a>(&self, scope: &Scope<'a>) -> Option<Doc<'a>> {
        let mut at = self.start(scope)?;
        for seg in &self.segs {
            at = match seg {
                Seg::Key(k) => at.member(k)?,
                Seg::Index(i) => at.element(*i)?,
            };
        }
        Some(at)
    }
}

/// [`walk`], into a call value.
fn walk_val<'a>(v: Doc<'a>, segs: &[Seg]) -> Option<Val<'a>> {
    let Some((first, rest)) = segs.split_first() else {
        return Some(v.to_val());
    };
    match (first, v.len()) {
        (Seg::Key(_), Some(n)) => {
            Some(gather((0..n).filter_map(|i| walk_val(v.element(i)?, segs))))
        }
        (Seg::Key(k), None) => walk_val(v.member(k)?, rest),
        (Seg::Index(i), _) => walk_val(v.element(*i)?, rest),
    }
}

/// Follows a path; a key applied to a list applies to each element.
fn walk(v: Doc<'_>, segs: &[Seg]) -> Option<Value> {
    let Some((first, rest)) = segs.split_first() else {
        return Some(v.to_json());
    };
    match (first, v.len()) {
        (Seg::Key(_), Some(n)) => Some(Value::Array(
            (0..n).filter_map(|i| walk(v.element(i)?, segs)).collect(),
        )),
        (Seg::Key(k), None) => walk(v.member(k)?, rest),
        (Seg::Index(i), _) => walk(v.element(*i)?, rest),
    }
}

impl Template {
    pub fn compile(v: &Value) -> Result<Template, String> {
        compile(v).map(Template)
    }

    /// Evaluates the template; `None` when it refers to something absent.
    pub fn eval(&self, scope: &Scope<'_>) -> Option<Value> {
        self.eval_with(scope, |v| v.to_json())
    }

    /// Hands `f` the template's result as a [`Lazy`] tree, evaluated as `f` reads it: what a
    /// writer writes from it is what it would write from [`Template::eval_with`]'s value,
    /// without that value being built. `None` (and `f` not called) when the template is
    /// absent for the scope.
    pub fn read_with<R>(&self, scope: &Scope<'_>, f: impl FnOnce(Lazy<'_>) -> R) -> Option<R> {
        let keep = Keep::new();
        Walk::of(&self.0, *scope, &keep).map(|w| f(Lazy(w)))
    }

    /// Evaluates the template into a value borrowed from the template and the scope, and
    /// hands it to `f`: a result can be written out without being built as a `Value`.
    /// `None` (and `f` not called) when the template refers to something absent.
    pub fn eval_with<R>(&self, scope: &Scope<'_>, f: impl FnOnce(Val<'_>) -> R) -> Option<R> {
        let keep = Keep::new();
        eval_val(&self.0, scope, &keep).map(f)
    }

    /// Writes the JSON text `eval` would give (as serde_json writes it: object members in key
    /// order), without building the value: a call's data goes from its tree straight to the
    /// text, so a large request is never held a third time as a `Value`. `false` (nothing
    /// written) when the template is absent for the scope.
    pub fn write_json(&self, scope: &Scope<'_>, out: &mut Vec<u8>) -> bool {
        write(&self.0, scope, out)
    }

    /// How the member `key` of an object template reads the answer ([`MemberRead`]).
    pub fn member_read(&self, key: &str) -> MemberRead<'_> {
        let Node::Object(members) = &self.0 else {
            return MemberRead::Built;
        };
        match members.iter().find(|(k, _)| k == key) {
            None => MemberRead::Absent,
            Some((_, Node::Path(p))) if p.root == Root::Doc => p
                .segs
                .iter()
                .map(|s| match s {
                    Seg::Key(k) => Some(k.as_str()),
                    Seg::Index(_) => None,
                })
                .collect::<Option<Vec<_>>>()
                .map_or(MemberRead::Built, MemberRead::Keys),
            Some(_) => MemberRead::Built,
        }
    }

    /// Whether any path in the template starts at `root`.
    pub fn uses(&self, root: Root) -> bool {
        uses(&self.0, root)
    }

    /// Whether the template reads the call's member `key` (`$.key...`).
    pub fn reads(&self, key: &str) -> bool {
        reads(&self.0, key)
    }
}

fn reads(n: &Node, key: &str) -> bool {
    let at = |p: &PathExpr| p.root == Root::Doc && p.segs.first() == Some(&Seg::Key(key.into()));
    match n {
        Node::Path(p) | Node::Default(p, _) | Node::Present(p) => at(p),
        Node::Literal(_) => false,
        Node::Object(members) => members.iter().any(|(_, t)| reads(t, key)),
        Node::Array(items) | Node::First(items) | Node::Merge(items) => {
            items.iter().any(|t| reads(t, key))
        }
        Node::Each(p, t) | Node::Entries(p, t, _) => at(p) || reads(t, key),
    }
}

fn uses(n: &Node, root: Root) -> bool {
    match n {
        Node::Path(p) | Node::Default(p, _) | Node::Present(p) => p.root == root,
        Node::Literal(_) => false,
        Node::Object(members) => members.iter().any(|(_, t)| uses(t, root)),
        Node::Array(items) | Node::First(items) | Node::Merge(items) => {
            items.iter().any(|t| uses(t, root))
        }
        Node::Each(p, t) | Node::Entries(p, t, _) => p.root == root || uses(t, root),
    }
}

fn path_of(v: Option<&Value>, directive: &str) -> Result<PathExpr, String> {
    let s = v
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{directive} must be a path string"))?;
    PathExpr::parse(s).map_err(|e| format!("{directive}: {e}"))
}

fn list_of(m: &Map<String, Value>, directive: &str) -> Result<Vec<Node>, String> {
    check_keys(m, &[directive])?;
    match m.get(directive) {
        Some(Value::Array(items)) if !items.is_empty() => items.iter().map(compile).collect(),
        _ => Err(format!("{directive} must be a non-empty list of templates")),
    }
}

fn compile(v: &Value) -> Result<Node, String> {
    Ok(match v {
        Value::String(s) => {
            if let Some(lit) = s.strip_prefix("$$").or_else(|| s.strip_prefix("@@")) {
                Node::Literal(Value::String(format!("{}{lit}", &s[..1])))
            } else if s.starts_with('$') || s.starts_with('@') {
                Node::Path(PathExpr::parse(s)?)
            } else {
                Node::Literal(v.clone())
            }
        }
        Value::Array(items) => Node::Array(items.iter().map(compile).collect::<Result<_, _>>()?),
        Value::Object(m) => {
            if let Some(src) = m.get("$each") {
                let src = src
                    .as_str()
                    .ok_or("$each must be a path string")
                    .and_then(|s| PathExpr::parse(s).map_err(|_| "$each must be a path"))
                    .map_err(str::to_string)?;
                let map = m.get("$map").ok_or("$each needs a $map template")?;
                check_keys(m, &["$each", "$map"])?;
                Node::Each(src, Box::new(compile(map)?))
            } else if let Some(src) = m.get("$value") {
                check_keys(m, &["$value", "$default"])?;
                let path = PathExpr::parse(src.as_str().ok_or("$value must be a path string")?)?;
                Node::Default(path, m.get("$default").cloned().unwrap_or(Value::Null))
            } else if let Some(lit) = m.get("$literal") {
                check_keys(m, &["$literal"])?;
                Node::Literal(lit.clone())
            } else if m.contains_key("$first") {
                Node::First(list_of(m, "$first")?)
            } else if m.contains_key("$merge") {
                Node::Merge(list_of(m, "$merge")?)
            } else if m.contains_key("$entries") {
                check_keys(m, &["$entries", "$map", "$skip"])?;
                let src = path_of(m.get("$entries"), "$entries")?;
                let map = m.get("$map").ok_or("$entries needs a $map template")?;
                let skip = match m.get("$skip") {
                    None => Vec::new(),
                    Some(Value::Array(keys)) => keys
                        .iter()
                        .map(|k| k.as_str().map(str::to_string))
                        .collect::<Option<_>>()
                        .ok_or("$skip must be a list of strings")?,
                    Some(_) => return Err("$skip must be a list of strings".into()),
                };
                Node::Entries(src, Box::new(compile(map)?), skip)
            } else if m.contains_key("$present") {
                check_keys(m, &["$present"])?;
                Node::Present(path_of(m.get("$present"), "$present")?)
            } else {
                let mut members = Vec::with_capacity(m.len());
                for (k, v) in m {
                    if k.starts_with('$') {
                        return Err(format!(
                            "unknown directive '{k}' (known: $each/$map, $value/$default, $literal, $first, $merge, $entries/$map/$skip, $present)"
                        ));
                    }
                    members.push((k.clone(), compile(v)?));
                }
                Node::Object(members)
            }
        }
        other => Node::Literal(other.clone()),
    })
}

fn check_keys(m: &Map<String, Value>, allowed: &[&str]) -> Result<(), String> {
    match m.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "'{k}' cannot be combined with {}",
            allowed.join("/")
        )),
        None => Ok(()),
    }
}

/// Values an evaluation had to build rather than borrow (a list gathered through a path, the
/// entries of an object), kept for as long as the result that may borrow from them.
type Keep<'s> = typed_arena::Arena<Val<'s>>;

/// Evaluates a template into a call value that borrows from the template, the scope's
/// documents and `keep`: strings and keys are not copied, and nothing is built as a
/// `serde_json::Value`. Objects hold their members in the template's order, each key once.
fn eval_val<'s>(n: &'s Node, scope: &Scope<'s>, keep: &'s Keep<'s>) -> Option<Val<'s>> {
    match n {
        Node::Path(p) => p.eval_val(scope),
        Node::Literal(v) => Some(Val::borrowed(v)),
        Node::Object(members) => {
            // Room for every member at once (a collected `filter_map` would grow by doubling).
            let mut out = Vec::with_capacity(members.len());
            for (k, t) in members {
                if let Some(v) = eval_val(t, scope, keep) {
                    out.push((k.as_str(), v));
                }
            }
            Some(Val::Obj(out))
        }
        Node::Array(items) => Some(gather(
            items.iter().filter_map(|i| eval_val(i, scope, keep)),
        )),
        Node::Each(src, map) => {
            // Borrow the list where the path allows it; otherwise build it.
            let list = src.eval_kept(scope, keep)?;
            let each = |item: Doc<'s>| eval_val(map, &scope.with_item(item), keep);
            Some(match list.len() {
                Some(n) => gather((0..n).filter_map(|i| each(list.element(i)?))),
                None if list.is_null() => Val::List(Vec::new()),
                None => gather(each(list)),
            })
        }
        Node::Default(p, d) => Some(p.eval_val(scope).unwrap_or_else(|| Val::borrowed(d))),
        // An empty list is as good as absent (a path through a list that found nothing).
        Node::First(items) => items
            .iter()
            .filter_map(|t| eval_val(t, scope, keep))
            .find(|v| !matches!(v, Val::Null) && v.list_len() != Some(0)),
        Node::Merge(items) => {
            let mut out: Vec<(&'s str, Val<'s>)> = Vec::new();
            for v in items.iter().filter_map(|t| eval_val(t, scope, keep)) {
                let Val::Obj(members) = v else { continue };
                for (k, v) in members {
                    // A later object's member replaces an earlier one's.
                    match out.iter_mut().find(|(have, _)| *have == k) {
                        Some(slot) => slot.1 = v,
                        None => out.push((k, v)),
                    }
                }
            }
            Some(Val::Obj(out))
        }
        Node::Entries(src, map, skip) => {
            let Some(Val::Obj(mut members)) = src.eval_val(scope) else {
                return Some(Val::List(Vec::new()));
            };
            // In key order, as a JSON object's members are read.
            members.sort_by(|a, b| a.0.cmp(b.0));
            Some(gather(
                members
                    .into_iter()
                    .filter(|(k, _)| !skip.iter().any(|s| s == k))
                    .filter_map(|(k, v)| {
                        let entry =
                            keep.alloc(Val::Obj(vec![("key", Val::Str(k.into())), ("value", v)]));
                        eval_val(map, &scope.with_item(Doc::Call(entry)), keep)
                    }),
            ))
        }
        Node::Present(p) => Some(Val::Bool(match p.eval_ref(scope) {
            Some(d) => !d.is_null(),
            None => p.eval_val(scope).is_some_and(|v| !matches!(v, Val::Null)),
        })),
    }
}

/// A result evaluated from its template as a writer reads it ([`Template::read_with`]):
/// objects, arrays and `$each` are walked where they stand, so that a result is never built
/// whole; anything else is evaluated when it is reached (it is small: a path's value is
/// borrowed, defaults, merges and the like are built into `keep`).
#[derive(Clone, Copy)]
pub struct Lazy<'s>(Walk<'s>);

impl std::fmt::Debug for Lazy<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lazy(..)")
    }
}

/// Where a [`Lazy`] tree stands.
#[derive(Clone, Copy)]
enum Walk<'s> {
    Doc(Doc<'s>),
    Obj(&'s [(String, Node)], Scope<'s>, &'s Keep<'s>),
    Arr(&'s [Node], Scope<'s>, &'s Keep<'s>),
    /// `$each` over a list (or over one value, or nothing when it is null).
    Each(Doc<'s>, &'s Node, Scope<'s>, &'s Keep<'s>),
}

impl<'s> Walk<'s> {
    /// The node as a writer will read it; `None` when it is absent (as [`eval_val`] says).
    fn of(n: &'s Node, scope: Scope<'s>, keep: &'s Keep<'s>) -> Option<Walk<'s>> {
        match n {
            Node::Object(members) => Some(Walk::Obj(members, scope, keep)),
            Node::Array(items) => Some(Walk::Arr(items, scope, keep)),
            Node::Each(src, map) => {
                Some(Walk::Each(src.eval_kept(&scope, keep)?, map, scope, keep))
            }
            Node::Path(p) => p.eval_kept(&scope, keep).map(Walk::Doc),
            Node::Literal(v) => Some(Walk::Doc(Doc::Json(v))),
            other => eval_val(other, &scope, keep).map(|v| Walk::Doc(Doc::Call(keep.alloc(v)))),
        }
    }
}

impl<'s> Tree<'s> for Lazy<'s> {
    fn form(self) -> Form<'s> {
        match self.0 {
            Walk::Doc(d) => d.form(),
            Walk::Obj(..) => Form::Obj,
            Walk::Arr(items, ..) => Form::List(items.len()),
            Walk::Each(list, ..) => Form::List(match list.len() {
                Some(n) => n,
                None if list.is_null() => 0,
                None => 1,
            }),
        }
    }

    fn is_null(self) -> bool {
        matches!(self.0, Walk::Doc(d) if d.is_null())
    }

    fn to_json(self) -> Option<Value> {
        match self.0 {
            Walk::Doc(d) => Some(d.to_json()),
            _ => None,
        }
    }

    fn member(self, key: &str) -> Option<Self> {
        match self.0 {
            Walk::Doc(d) => d.member(key).map(|d| Lazy(Walk::Doc(d))),
            Walk::Obj(members, scope, keep) => {
                let (_, t) = members.iter().find(|(k, _)| k == key)?;
                Walk::of(t, scope, keep).map(Lazy)
            }
            _ => None,
        }
    }

    fn item(self, i: usize) -> Option<Self> {
        match self.0 {
            Walk::Doc(d) => d.element(i).map(|d| Lazy(Walk::Doc(d))),
            Walk::Arr(items, scope, keep) => Walk::of(items.get(i)?, scope, keep).map(Lazy),
            Walk::Each(list, map, scope, keep) => {
                let item = match list.len() {
                    Some(_) => list.element(i)?,
                    None => list,
                };
                Walk::of(map, scope.with_item(item), keep).map(Lazy)
            }
            Walk::Obj(..) => None,
        }
    }
}

/// Items as one list (compact when they are all integers), with room for as many as the
/// iterator may give at once.
fn gather<'s>(items: impl IntoIterator<Item = Val<'s>>) -> Val<'s> {
    let mut items = items.into_iter();
    let Some(first) = items.next() else {
        return Val::List(Vec::new());
    };
    let (least, most) = items.size_hint();
    let mut list = Val::list_with_room(first, most.unwrap_or(least));
    for v in items {
        list.push_item(v);
    }
    list
}

/// [`Template::write_json`]: the nodes that hold the bulk of a request (objects, arrays,
/// `$each`, paths into the call) are written as they are walked; the others are evaluated and
/// written (they are small: literals, defaults, merges).
fn write(n: &Node, scope: &Scope<'_>, out: &mut Vec<u8>) -> bool {
    match n {
        Node::Path(p) => match p.eval_ref(scope) {
            Some(d) => {
                write_doc(d, out);
                true
            }
            None => write_some(p.eval_val(scope), out),
        },
        Node::Object(members) => {
            // serde_json's map writes its members in key order.
            let mut sorted: Vec<&(String, Node)> = members.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            out.push(b'{');
            let mut first = true;
            for (k, t) in sorted {
                let mark = out.len();
                if !first {
                    out.push(b',');
                }
                write_str(k, out);
                out.push(b':');
                if write(t, scope, out) {
                    first = false;
                } else {
                    out.truncate(mark);
                }
            }
            out.push(b'}');
            true
        }
        Node::Array(items) => {
            write_list(
                items
                    .iter()
                    .map(|t| move |out: &mut Vec<u8>| write(t, scope, out)),
                out,
            );
            true
        }
        Node::Each(src, map) => {
            let owned;
            let list = match src.eval_ref(scope) {
                Some(d) => d,
                None => match src.eval_val(scope) {
                    Some(v) => {
                        owned = v;
                        Doc::Call(&owned)
                    }
                    None => return false,
                },
            };
            let each = |item: Doc<'_>, out: &mut Vec<u8>| write(map, &scope.with_item(item), out);
            match list.len() {
                Some(n) => write_list(
                    (0..n).map(|i| {
                        move |out: &mut Vec<u8>| list.element(i).is_some_and(|d| each(d, out))
                    }),
                    out,
                ),
                None if list.is_null() => out.extend_from_slice(b"[]"),
                None => write_list(std::iter::once(|out: &mut Vec<u8>| each(list, out)), out),
            }
            true
        }
        other => write_some(eval_val(other, scope, &Keep::new()), out),
    }
}

/// `[a,b,...]`, leaving out the items that write nothing.
fn write_list<F: FnOnce(&mut Vec<u8>) -> bool>(items: impl Iterator<Item = F>, out: &mut Vec<u8>) {
    out.push(b'[');
    let mut first = true;
    for item in items {
        let mark = out.len();
        if !first {
            out.push(b',');
        }
        if item(out) {
            first = false;
        } else {
            out.truncate(mark);
        }
    }
    out.push(b']');
}

/// Writes a value when there is one; `false` when there is none.
fn write_some(v: Option<Val<'_>>, out: &mut Vec<u8>) -> bool {
    v.map(|v| write_val(&v, out)).is_some()
}

/// An integer as JSON writes it (`itoa`, as serde_json does, without its serializer).
fn write_int(n: i64, out: &mut Vec<u8>) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(&mut *out, s);
}

fn write_doc(d: Doc<'_>, out: &mut Vec<u8>) {
    match d {
        Doc::Json(v) => {
            let _ = serde_json::to_writer(&mut *out, v);
        }
        Doc::Call(v) => write_val(v, out),
        Doc::Int(n) => {
            let _ = serde_json::to_writer(&mut *out, &n);
        }
    }
}

/// A call's value as `Val::to_json` and serde_json would write it.
fn write_val(v: &Val<'_>, out: &mut Vec<u8>) {
    match v {
        Val::Null => out.extend_from_slice(b"null"),
        Val::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Val::Int(i) => write_int(*i, out),
        Val::Num(t) => match <serde_json::Number as std::str::FromStr>::from_str(t) {
            Ok(n) => {
                let _ = serde_json::to_writer(&mut *out, &n);
            }
            Err(_) => out.extend_from_slice(b"null"),
        },
        Val::Str(s) => write_str(s, out),
        Val::List(items) => {
            if let Some(Val::Int(first)) = items.first() {
                reserve_ints(*first, items.len(), out);
            }
            write_list(
                items.iter().map(|i| {
                    move |out: &mut Vec<u8>| {
                        write_val(i, out);
                        true
                    }
                }),
                out,
            );
        }
        Val::Ints(items) => {
            if let Some(first) = items.first() {
                reserve_ints(*first, items.len(), out);
            }
            // Every item is written: no item to leave out, nothing to take back.
            out.push(b'[');
            for (i, n) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_int(*n, out);
            }
            out.push(b']');
        }
        Val::Obj(members) => {
            let mut sorted: Vec<&(&str, Val<'_>)> = members.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(k, out);
                out.push(b':');
                write_val(v, out);
            }
            out.push(b'}');
        }
    }
}

/// A long list of integers gets its room at once, judged from its first item (at most 21
/// bytes an item, its comma included: less than the list itself takes), instead of doubling,
/// with room besides for the list's end and what usually follows it in a request (a list
/// that filled its room to the last byte would otherwise double it for its closing bracket).
fn reserve_ints(first: i64, len: usize, out: &mut Vec<u8>) {
    if len > 256 {
        let width = first.unsigned_abs().checked_ilog10().unwrap_or(0) as usize + 2;
        out.reserve(len * (width + usize::from(first < 0)) + 256);
    }
}

/// A URL path with `{expression}` holes, each filled with one percent-encoded value.
#[derive(Debug, Clone)]
pub struct PathTemplate {
    parts: Vec<PathPart>,
    text: String,
}

impl PathTemplate {
    /// Whether a hole of the path reads the input's member `key`.
    pub fn reads(&self, key: &str) -> bool {
        self.parts.iter().any(|p| match p {
            PathPart::Hole(e) => reads(&Node::Path(e.clone()), key),
            PathPart::Text(_) => false,
        })
    }
}

#[derive(Debug, Clone)]
enum PathPart {
    Text(String),
    Hole(PathExpr),
}

impl PathTemplate {
    pub fn parse(s: &str) -> Result<PathTemplate, String> {
        if !s.starts_with('/') {
            return Err(format!("path '{s}' must start with '/'"));
        }
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find('{') {
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("path '{s}': '{{' without '}}'"))?
                + open;
            if open > 0 {
                parts.push(PathPart::Text(rest[..open].to_string()));
            }
            parts.push(PathPart::Hole(PathExpr::parse(&rest[open + 1..close])?));
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(PathPart::Text(rest.to_string()));
        }
        Ok(PathTemplate {
            parts,
            text: s.to_string(),
        })
    }

    /// The template as configured.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Fills the holes; `Err(expression)` names a hole whose value is absent or not a scalar.
    pub fn render(&self, scope: &Scope<'_>) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                PathPart::Text(t) => out.push_str(t),
                PathPart::Hole(e) => match e.eval(scope) {
                    Some(v @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => {
                        let text = scalar_text(&v);
                        // An empty, "." or ".." segment would change which resource is meant.
                        if text.is_empty() || text == "." || text == ".." {
                            return Err(e.text().to_string());
                        }
                        crate::percent::encode_into(&mut out, &text)
                    }
                    _ => return Err(e.text().to_string()),
                },
            }
        }
        Ok(out)
    }
}

/// Text of a scalar for URLs: strings without quotes, numbers and booleans as written.
pub fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Builds a query string from (name, template) pairs; lists repeat the parameter.
pub fn render_query(params: &[(String, Template)], scope: &Scope<'_>) -> Result<String, String> {
    let mut out = String::new();
    let mut push = |name: &str, v: &Value| -> Result<(), String> {
        match v {
            Value::Null => return Ok(()),
            Value::Object(_) | Value::Array(_) => {
                return Err(format!(
                    "query parameter '{name}' must be a scalar or a list of scalars"
                ));
            }
            _ => {}
        }
        out.push(if out.is_empty() { '?' } else { '&' });
        crate::percent::encode_into(&mut out, name);
        out.push('=');
        crate::percent::encode_into(&mut out, &scalar_text(v));
        Ok(())
    };
    for (name, t) in params {
        match t.eval(scope) {
            None => {}
            Some(Value::Array(items)) => {
                for i in &items {
                    push(name, i)?;
                }
            }
            Some(v) => push(name, &v)?,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(t: Value, doc: Value) -> Option<Value> {
        let input = json!({"lang": "tr"});
        Template::compile(&t)
            .unwrap()
            .eval(&Scope::new(Doc::Json(&doc), Doc::Json(&input)))
    }

    /// `write_json` writes what `eval` gives, byte for byte as serde_json writes it, from a
    /// call's tree and from JSON, for every kind of node.
    #[test]
    fn written_json_is_the_evaluated_value_as_serde_writes_it() {
        use crate::call::Val;
        use std::borrow::Cow;
        let call = Val::Obj(vec![
            ("zeta", Val::Str(Cow::Borrowed("z \"q\" \u{7}"))),
            (
                "productIds",
                Val::Obj(vec![(
                    "item",
                    Val::List(vec![
                        Val::Int(587300354),
                        Val::Int(-2),
                        Val::Num("12.50".into()),
                    ]),
                )]),
            ),
            (
                "stocks",
                Val::Obj(vec![(
                    "stock",
                    Val::List(vec![
                        Val::Obj(vec![
                            ("sku", Val::Str("A".into())),
                            ("qty", Val::Num("1e3".into())),
                            ("b", Val::Bool(true)),
                        ]),
                        Val::Obj(vec![("sku", Val::Str("B".into())), ("n", Val::Null)]),
                    ]),
                )]),
            ),
            ("one", Val::Obj(vec![("k", Val::Str("v".into()))])),
            ("bad", Val::Num("+1".into())),
            // A compact list of integers reads as a list of `Int`s does.
            ("ids", Val::Ints((0..300).map(|i| i * 7 - 5).collect())),
        ]);
        let templates = [
            json!({ "product_ids": "$.productIds.item" }),
            json!("$.productIds.item"),
            json!({"items": {"$each": "$.stocks.stock", "$map": {"sku": "@.sku", "quantity": "@.qty", "missing": "@.nope", "flag": {"$present": "@.b"}}}}),
            json!({"each_one": {"$each": "$.one", "$map": {"k": "@.k"}}, "each_none": {"$each": "$.nope", "$map": "@"}}),
            json!({"skus": "$.stocks.stock.sku", "all": "$", "lit": [1, "$$x", {"a": null}], "gone": "$.nope", "bad": "$.bad"}),
            json!({"d": {"$value": "$.nope", "$default": 5}, "f": {"$first": ["$.nope", "$.zeta"]}, "m": {"$merge": ["$.one", {"x": 1}]}}),
            json!({"nested": [[ "$.zeta" ], {"deep": {"deeper": "$.productIds"}}]}),
            json!("$.nope"),
            json!({"ids": "$.ids", "second": "$.ids[1]", "past": "$.ids[300]", "none": "$.ids.k"}),
            json!({"wrapped": {"$each": "$.ids", "$map": {"id": "@", "k": "@.k"}}}),
            json!({"first": {"$first": ["$.ids.k", "$.ids[0]"]}, "has": {"$present": "$.ids[2]"}}),
        ];
        for t in templates {
            let compiled = Template::compile(&t).unwrap();
            let scope = Scope::new(Doc::Call(&call), Doc::Call(&call));
            let mut written = Vec::new();
            let wrote = compiled.write_json(&scope, &mut written);
            let evaluated = compiled.eval(&scope);
            assert_eq!(wrote, evaluated.is_some(), "{t}");
            if let Some(v) = evaluated {
                assert_eq!(
                    String::from_utf8(written).unwrap(),
                    serde_json::to_string(&v).unwrap(),
                    "{t}"
                );
            }
        }
        let compact = Template::compile(
            &json!({"second": "$.ids[1]", "each": {"$each": "$.ids", "$map": {"id": "@"}}}),
        )
        .unwrap()
        .eval(&Scope::new(Doc::Call(&call), Doc::Call(&call)))
        .unwrap();
        assert_eq!(compact["second"], json!(2));
        assert_eq!(compact["each"].as_array().unwrap().len(), 300);
        assert_eq!(compact["each"][299], json!({"id": 299 * 7 - 5}));
    }

    #[test]
    fn a_member_that_is_a_path_of_keys_says_so() {
        let t = Template::compile(&json!({
            "rows": "$.data.items", "all": "$", "total": {"$value": "$.total", "$default": 0},
            "first": "$.items[0]", "asked": "$input.limit"
        }))
        .unwrap();
        assert_eq!(
            t.member_read("rows"),
            MemberRead::Keys(vec!["data", "items"])
        );
        assert_eq!(t.member_read("all"), MemberRead::Keys(vec![]));
        assert_eq!(t.member_read("none"), MemberRead::Absent);
        for built in ["total", "first", "asked"] {
            assert_eq!(t.member_read(built), MemberRead::Built, "{built}");
        }
        let not_an_object = Template::compile(&json!("$.items")).unwrap();
        assert_eq!(not_an_object.member_read("rows"), MemberRead::Built);
    }

    #[test]
    fn paths_map_through_lists_and_absent_members_are_left_out() {
        let doc = json!({"productIds": {"item": [1, 2]}, "x": [{"a": 1}, {"b": 2}, {"a": 3}]});
        assert_eq!(
            run(
                json!({"ids": "$.productIds.item", "as": "$.x.a", "gone": "$.nope", "lang": "$input.lang", "lit": "$$5"}),
                doc
            ),
            Some(json!({"ids": [1, 2], "as": [1, 3], "lang": "tr", "lit": "$5"}))
        );
    }

    #[test]
    fn each_maps_nested_lists() {
        let doc = json!({"p": [{"id": 7, "o": [{"k": 1, "d": 30}]}, {"id": 8, "o": []}]});
        let t = json!({"items": {"$each": "$.p", "$map": {"product_id": "@.id", "options": {"$each": "@.o", "$map": {"option_id": "@.k", "days": "@.d"}}}}});
        assert_eq!(
            run(t, doc),
            Some(
                json!({"items": [{"product_id": 7, "options": [{"option_id": 1, "days": 30}]}, {"product_id": 8, "options": []}]})
            )
        );
    }

    #[test]
    fn templates_read_decoded_calls_directly() {
        let call = Val::Obj(vec![
            (
                "productIds",
                Val::Obj(vec![("item", Val::List(vec![Val::Int(7), Val::Int(8)]))]),
            ),
            ("code", Val::Str("0085".into())),
        ]);
        let t = Template::compile(&json!({"ids": "$.productIds.item", "each": {"$each": "$.productIds.item", "$map": {"id": "@"}}, "code": "$.code"})).unwrap();
        let v = t.eval(&Scope::new(Doc::Call(&call), Doc::Call(&call)));
        assert_eq!(
            v,
            Some(json!({"ids": [7, 8], "each": [{"id": 7}, {"id": 8}], "code": "0085"}))
        );
    }

    #[test]
    fn defaults_and_bad_directives() {
        assert_eq!(
            run(json!({"$value": "$.n", "$default": 0}), json!({})),
            Some(json!(0))
        );
        assert!(Template::compile(&json!({"$eech": "$.x"})).is_err());
        assert!(Template::compile(&json!("$.a[x]")).is_err());
    }

    #[test]
    fn first_merge_entries_and_present() {
        let doc = json!({"link": {"_key": 7}, "other": {"kod": "A"}, "errors": {"qty": ["required"], "detail": "x"}, "next": null});
        assert_eq!(
            run(
                json!({"a": {"$first": ["$.link._key", "$.link"]}, "b": {"$first": ["$.other._key", "$.other"]}}),
                doc.clone()
            ),
            Some(json!({"a": 7, "b": {"kod": "A"}}))
        );
        assert_eq!(
            run(
                json!({"$merge": ["$.other", {"extra": 1}, "$.missing"]}),
                doc.clone()
            ),
            Some(json!({"kod": "A", "extra": 1}))
        );
        assert_eq!(
            run(
                json!({"$entries": "$.errors", "$skip": ["detail"], "$map": {"field": "@.key", "message": "@.value"}}),
                doc.clone()
            ),
            Some(json!([{"field": "qty", "message": ["required"]}]))
        );
        assert_eq!(
            run(json!([{"$present": "$.next"}, {"$present": "$.link"}]), doc),
            Some(json!([false, true]))
        );
        assert!(Template::compile(&json!({"$first": []})).is_err());
        assert!(Template::compile(&json!({"$entries": "$.x"})).is_err());
        assert!(Template::compile(&json!({"$present": "$.x", "y": 1})).is_err());
    }

    /// A result evaluated over an answer read in place borrows its text, holds integer lists
    /// compactly, and has each key once (a later `$merge` member replacing an earlier one),
    /// with `$entries` in key order as over a `serde_json` answer.
    #[test]
    fn results_are_evaluated_in_place_over_an_answer() {
        use std::borrow::Cow;
        let text = br#"{"z": {"kod": "A", "b": 2}, "ids": [3, 1, 2], "rows": [{"t": "x\"y"}, {"t": "p"}], "errors": {"qty": 1, "detail": "d", "amount": 2}}"#;
        let doc = Val::from_json_slice(text).unwrap();
        let input = Val::Null;
        let t = Template::compile(&json!({
            "m": {"$merge": ["$.z", {"kod": "B"}]},
            "ids": {"$each": "$.ids", "$map": "@"},
            "ts": "$.rows.t",
            "e": {"$entries": "$.errors", "$skip": ["detail"], "$map": "@.key"},
            "lit": "x"
        }))
        .unwrap();
        let scope = Scope::new(Doc::Call(&doc), Doc::Call(&input));
        let checked = t.eval_with(&scope, |v| {
            let m = v.get("m").unwrap();
            assert_eq!(m.get("kod"), Some(&Val::Str(Cow::Borrowed("B"))));
            assert_eq!(m.get("b"), Some(&Val::Int(2)));
            assert!(matches!(m, Val::Obj(members) if members.len() == 2));
            assert!(matches!(v.get("ids"), Some(Val::Ints(ids)) if ids == &[3, 1, 2]));
            // Text without escapes is borrowed from the answer; with escapes it was unescaped.
            let ts = v.get("ts").unwrap();
            assert!(
                matches!(ts, Val::List(items) if matches!(items[1], Val::Str(Cow::Borrowed("p"))))
            );
            assert!(matches!(ts, Val::List(items) if items[0] == Val::Str("x\"y".into())));
            assert_eq!(v.get("e").unwrap().to_json(), json!(["amount", "qty"]));
            v.to_json()
        });
        assert_eq!(
            checked,
            Some(
                json!({"m": {"kod": "B", "b": 2}, "ids": [3, 1, 2], "ts": ["x\"y", "p"], "e": ["amount", "qty"], "lit": "x"})
            )
        );
        // The same template over the answer as `serde_json` gives the same result.
        let json: Value = serde_json::from_slice(text).unwrap();
        assert_eq!(
            t.eval(&Scope::new(Doc::Json(&json), Doc::Call(&input))),
            checked
        );
        // Absent: `f` is not called.
        let absent = Template::compile(&json!("$.nothing")).unwrap();
        assert_eq!(absent.eval_with(&scope, |_| unreachable!()), None::<()>);
    }

    /// What the writers write from a result read as it is evaluated ([`Template::read_with`])
    /// is what they write from the evaluated value, errors included, for every kind of node.
    #[test]
    fn results_read_lazily_are_written_as_evaluated_ones() {
        use crate::call::Tree;
        use crate::protocol::xml::{ShapeError, XmlWriter};
        use crate::protocol::xmlrpc::ValueWriter;
        use crate::schema::{ComplexType, ElementDecl, Schema, SimpleKind, SimpleType, TypeDef};

        let simple = |name: &str| {
            TypeDef::Simple(SimpleType {
                name: format!("xs:{name}"),
                kind: SimpleKind::builtin(name).unwrap(),
                enumeration: Vec::new(),
            })
        };
        let el = |name: &str, min: u32, max: Option<u32>, nillable: bool, ty: usize| ElementDecl {
            name: name.into(),
            namespace: None,
            min_occurs: min,
            max_occurs: max,
            nillable,
            ty,
        };
        let complex = |name: &str, children: Vec<ElementDecl>| {
            TypeDef::Complex(ComplexType {
                name: name.into(),
                children,
                unordered: false,
            })
        };
        let schema = Schema {
            types: vec![
                simple("int"),
                simple("string"),
                simple("decimal"),
                complex(
                    "Option",
                    vec![
                        el("optionId", 1, Some(1), false, 0),
                        el("name", 0, Some(1), true, 1),
                        el("price", 0, Some(1), false, 2),
                    ],
                ),
                complex(
                    "Product",
                    vec![
                        el("productId", 1, Some(1), false, 0),
                        el("title", 0, Some(1), false, 1),
                        el("option", 0, Some(3), false, 3),
                        el("tag", 0, None, false, 1),
                    ],
                ),
                complex(
                    "Result",
                    vec![
                        el("product", 0, None, false, 4),
                        el("count", 1, Some(1), true, 0),
                        el("ids", 0, None, false, 0),
                    ],
                ),
            ],
        };
        let root = el("result", 1, Some(1), false, 5);
        let answer = br#"{"products": [
            {"product_id": 7, "title": "Vazo \u00e7", "options": [{"option_id": 1, "price": 12.50}, {"option_id": 3, "name": null, "price": "5"}], "tags": ["a", "b"]},
            {"product_id": 8, "options": [], "tags": "single"},
            {"product_id": 9, "title": {"nested": true}, "options": [{"option_id": 2}]},
            {"title": "no id", "options": [{"option_id": 1}, {"option_id": 2}, {"option_id": 3}, {"option_id": 4}]},
            {"product_id": 10, "options": [{"option_id": "x"}]}
        ], "count": 2, "ids": [4, 5, 6], "none": null, "extra": {"a": 1}}"#;
        let doc = Val::from_json_slice(answer).unwrap();
        let input = Val::Obj(vec![("lang", Val::Str("tr".into()))]);
        let product = |pick: &str| {
            json!({"product": {"$each": pick, "$map": {
                "productId": "@.product_id",
                "title": {"$first": ["@.title", "$input.lang"]},
                "option": {"$each": "@.options", "$map": {"optionId": "@.option_id", "name": {"$value": "@.name", "$default": "-"}, "price": "@.price"}},
                "tag": "@.tags"
            }}, "count": "$.count", "ids": {"$each": "$.ids", "$map": "@"}})
        };
        let templates = [
            product("$.products[0]"),
            product("$.products[1]"),
            product("$.products[2]"),
            product("$.products[3]"),
            product("$.products[4]"),
            json!({"product": [{"productId": "$.ids[0]", "title": "literal"}, {"productId": "$.ids.missing"}], "count": "$.none"}),
            json!({"$merge": ["$.extra", {"count": "$.count"}, {"ids": "$.ids", "count": 5}]}),
            json!({"count": {"$present": "$.none"}, "ids": "$.products.product_id"}),
            json!({"count": 1, "product": {"$entries": "$.extra", "$map": {"productId": "@.value", "title": "@.key"}}}),
            json!({"count": "$.extra"}),
            json!({"ids": "$.count", "count": 1}),
            json!({"product": {"$each": "$.none", "$map": {"productId": 1}}, "count": 1}),
            json!({"product": {"$each": "$.extra", "$map": {"productId": "@.a"}}, "count": 1}),
        ];
        fn soap<'t, T: Tree<'t>>(
            schema: &Schema,
            root: &ElementDecl,
            v: T,
        ) -> Result<String, ShapeError> {
            let mut w = XmlWriter::new(schema, "urn:x", "m", String::new());
            w.element(root, Some(v), &mut String::new()).map(|()| w.out)
        }
        fn rpc<'t, T: Tree<'t>>(
            schema: &Schema,
            root: &ElementDecl,
            v: T,
        ) -> Result<String, ShapeError> {
            let mut w = ValueWriter::new(schema, false);
            w.result(root, v).map(|()| w.out)
        }
        let scope = Scope::new(Doc::Call(&doc), Doc::Call(&input));
        let mut written = 0;
        for t in templates {
            let compiled = Template::compile(&t).unwrap();
            let eager = compiled
                .eval_with(&scope, |v| {
                    (
                        soap(&schema, &root, Doc::Call(&v)),
                        rpc(&schema, &root, Doc::Call(&v)),
                    )
                })
                .unwrap();
            let lazy = compiled
                .read_with(&scope, |l| {
                    (soap(&schema, &root, l), rpc(&schema, &root, l))
                })
                .unwrap();
            assert_eq!(lazy, eager, "{t}");
            written += usize::from(eager.0.is_ok());
        }
        // Both outcomes are exercised.
        assert!((3..13).contains(&written), "{written}");
    }

    /// A long list of ids goes into a request's JSON without the buffer doubling: its room
    /// is taken once, for the list and what follows it.
    #[test]
    fn a_long_integer_list_is_written_into_room_taken_once() {
        let ids = Val::Obj(vec![
            ("productIds", Val::Ints(vec![587300354; 45_434])),
            ("lang", Val::Str("tr".into())),
        ]);
        let t =
            Template::compile(&json!({"product_ids": "$.productIds", "lang": "$.lang", "z": 1}))
                .unwrap();
        let mut out = Vec::new();
        assert!(t.write_json(&Scope::new(Doc::Call(&ids), Doc::Call(&ids)), &mut out));
        assert!(out.ends_with(b"587300354],\"z\":1}"));
        assert!(
            out.capacity() < out.len() + 1024,
            "{} for {}",
            out.capacity(),
            out.len()
        );
    }

    #[test]
    fn named_roots_read_vars_session_and_batch() {
        let vars = json!({"firma_kodu": 34});
        let session = json!("abc");
        let doc = json!({});
        let t =
            Template::compile(&json!({"s": "$session", "f": "$vars.firma_kodu", "n": "$batch"}))
                .unwrap();
        assert!(t.uses(Root::Session) && !t.uses(Root::Input));
        let mut scope = Scope::json(&doc);
        scope.vars = Some(&vars);
        scope.session = Some(&session);
        assert_eq!(t.eval(&scope), Some(json!({"s": "abc", "f": 34})));
        assert!(PathExpr::parse("$sessions").is_err());
        let mut page = json!({"results": [1], "count": 3});
        assert!(
            PathExpr::parse("$.results")
                .unwrap()
                .set(&mut page, json!([1, 2, 3]))
        );
        assert_eq!(page, json!({"results": [1, 2, 3], "count": 3}));
    }

    #[test]
    fn path_templates_and_queries_are_encoded() {
        let doc = json!({"v": "FT/1 2", "ids": [1, 2]});
        let scope = Scope::json(&doc);
        let p = PathTemplate::parse("/v1/vouchers/{$.v}/payments").unwrap();
        assert_eq!(
            p.render(&scope).unwrap(),
            "/v1/vouchers/FT%2F1%202/payments"
        );
        assert_eq!(
            PathTemplate::parse("/x/{$.missing}")
                .unwrap()
                .render(&scope)
                .unwrap_err(),
            "$.missing"
        );
        let dots = json!({"v": ".."});
        let dot_scope = Scope::json(&dots);
        assert!(
            PathTemplate::parse("/v1/vouchers/{$.v}/payments")
                .unwrap()
                .render(&dot_scope)
                .is_err()
        );
        let q = vec![(
            "product_id".to_string(),
            Template::compile(&json!("$.ids")).unwrap(),
        )];
        assert_eq!(
            render_query(&q, &scope).unwrap(),
            "?product_id=1&product_id=2"
        );
    }
}
#[cfg(test)]
mod reads_tests {
    use super::*;
    #[test]
    fn reads_a_member() {
        let t =
            Template::compile(&serde_json::json!({"a": "$.filter", "order": "$.order"})).unwrap();
        assert!(t.reads("order"));
        assert!(!t.reads("tenant"));
    }
}
