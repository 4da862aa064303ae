//! ABRA Flexi's filter language (WQL): a bounded parser, a canonical printer and a converter to
//! the structured JSON filter a backend receives (never a string to splice into a query).
//!
//! # Grammar
//!
//! ```text
//! filter     := or EOF
//! or         := and ("or" and)*
//! and        := unary ("and" unary)*
//! unary      := "not" unary | "(" or ")" | comparison
//! comparison := field test
//! field      := ident ("." ident)*          e.g. nazev, firma.skupFir, čáslo
//! test       := op value
//!             | "between" value value
//!             | "in" "(" value ("," value)* ")"
//!             | "in" "subtree" value
//!             | "is" ("true" | "false" | "null" | "not" "null" | "empty" | "not" "empty")
//! op         := "=" | "==" | "eq" | "<>" | "!=" | "ne" | "neq" | "<" | "lt" | "<=" | "lte"
//!             | ">" | "gt" | ">=" | "gte" | "like" ["similar"] | "begins" ["similar"] | "ends"
//! value      := number | string | "true" | "false" | "now()" | "currentYear()" | "me()"
//! ```
//!
//! Keywords and function names are case-insensitive. Comparisons bind tightest, then `not`,
//! then `and`, then `or`; `and` and `or` are left-associative. Flexi's refused spellings
//! `ge`, `le` and `isempty` are not operators, so they are errors at their own position, like
//! any other unknown word. Whitespace is spaces, tabs and line breaks (`\n`, `\r`).
//!
//! * Identifiers start with a letter (any Unicode letter) or `_` and go on with letters,
//!   digits and `_`; a field may be a dotted relation of any depth. The words `and`, `or`,
//!   `not`, `true` and `false` cannot be fields.
//! * Numbers are `-?(0|[1-9][0-9]*)(\.[0-9]+)?` (the JSON number grammar without exponents),
//!   kept as their exact text, never as a float. `007`, `1.`, `1e5` and `1abc` are errors.
//! * Strings are single- or double-quoted. Inside, the quote is written doubled (`'O''Brien'`)
//!   or with a backslash; the backslash escapes are `\\`, `\'` and `\"`. A backslash before
//!   any other character stands for itself (`'C:\temp'` is `C:\temp`).
//! * Bare identifiers are not values (write `'code:CZK'`); an unknown function is an error.
//!
//! # Limits
//!
//! [`Limits`] bound what one filter may cost: nesting (open parentheses plus `not`s in force,
//! at most 64 levels), the values of one `in (...)` (1,000), the comparisons ("terms", 1,000 by
//! default) and the nodes of the whole filter (10,000 by default: every comparison, every value
//! in it, and every `and`, `or` and `not`). Past any of them the offending token is the error,
//! with the limit named, before anything more is built: a hostile filter costs its text and a
//! tree of at most the limits, never more. The parser recurses only per nesting level, so the
//! depth limit bounds its stack.
//!
//! # Errors
//!
//! [`WqlError`] says what Flexi says: `Špatný formát WQL dotazu, problém na pozici 16 poblíž
//! textu ')'`, where the position is the 1-based character (not byte) offset of the offending
//! token and the text is that token (for an unterminated string, the rest of the input from
//! its quote; at the end of the input, `<EOF>` at the character count plus one).
//!
//! # Flattening
//!
//! Chains of one operator become one node: `a = 1 and b = 2 and c = 3` is one
//! [`Filter::And`] with three children, and so are `(a = 1 and b = 2) and c = 3` and
//! `a = 1 and (b = 2 and c = 3)`: grouping that does not change the meaning is not kept. So
//! [`parse`] never produces an `And` directly inside an `And` (or `Or` inside `Or`), nor an
//! `And`/`Or` with fewer than two children; [`normalize`] brings any filter to that form, and
//! `parse(&print(&f)) == Ok(normalize(f))`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, FixedOffset, SecondsFormat};
use serde_json::{Map, Value as Json};

/// What one filter may cost at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Nesting of parentheses and `not`s.
    pub depth: usize,
    /// Values of one `in (...)`.
    pub in_values: usize,
    /// Comparisons in the whole filter.
    pub terms: usize,
    /// Comparisons, their values, and `and`/`or`/`not` in the whole filter.
    pub nodes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            depth: 64,
            in_values: 1000,
            terms: 1000,
            nodes: 10_000,
        }
    }
}

/// A filter that does not parse, with Flexi's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Špatný formát WQL dotazu, problém na pozici {position} poblíž textu '{near}'{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
pub struct WqlError {
    /// The 1-based character offset of the offending token's first character.
    pub position: usize,
    /// The offending token's text, or `<EOF>`.
    pub near: String,
    /// Which limit the filter went over, when that is the problem.
    pub reason: Option<String>,
}

impl WqlError {
    /// The error at the end of `text` (where something more was expected).
    pub fn at_end(text: &str) -> WqlError {
        WqlError {
            position: text.chars().count() + 1,
            near: "<EOF>".to_owned(),
            reason: None,
        }
    }
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Cmp(Cmp),
}

/// One comparison: a field and what it is tested for.
#[derive(Debug, Clone, PartialEq)]
pub struct Cmp {
    /// The field, dotted for relations (`firma.skupFir`), as written.
    pub field: String,
    pub test: Test,
}

/// What a comparison tests.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Compare(Op, Value),
    Between(Value, Value),
    /// At least one value when parsed.
    In(Vec<Value>),
    InSubtree(Value),
    IsTrue,
    IsFalse,
    IsNull,
    IsNotNull,
    IsEmpty,
    IsNotEmpty,
}

/// A binary comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Lte,
    Gt,
    Gte,
    Like,
    LikeSimilar,
    Begins,
    BeginsSimilar,
    Ends,
}

/// A value in a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number's exact text (`-12.50`).
    Number(String),
    Str(String),
    Bool(bool),
    Func(Func),
}

/// A function without arguments, evaluated by [`to_json`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Now,
    CurrentYear,
    Me,
}

impl Op {
    /// The canonical WQL spelling.
    pub fn wql(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "<>",
            Op::Lt => "<",
            Op::Lte => "<=",
            Op::Gt => ">",
            Op::Gte => ">=",
            Op::Like => "like",
            Op::LikeSimilar => "like similar",
            Op::Begins => "begins",
            Op::BeginsSimilar => "begins similar",
            Op::Ends => "ends",
        }
    }

    /// The name in the JSON filter (`"op"`).
    pub fn json_name(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Ne => "ne",
            Op::Lt => "lt",
            Op::Lte => "lte",
            Op::Gt => "gt",
            Op::Gte => "gte",
            Op::Like => "like",
            Op::LikeSimilar => "like_similar",
            Op::Begins => "begins",
            Op::BeginsSimilar => "begins_similar",
            Op::Ends => "ends",
        }
    }
}

impl Test {
    /// The name in the JSON filter (`"op"`).
    pub fn json_name(&self) -> &'static str {
        match self {
            Test::Compare(op, _) => op.json_name(),
            Test::Between(..) => "between",
            Test::In(_) => "in",
            Test::InSubtree(_) => "in_subtree",
            Test::IsTrue => "is_true",
            Test::IsFalse => "is_false",
            Test::IsNull => "is_null",
            Test::IsNotNull => "is_not_null",
            Test::IsEmpty => "is_empty",
            Test::IsNotEmpty => "is_not_empty",
        }
    }
}

impl Func {
    /// The canonical WQL spelling, with its parentheses.
    pub fn wql(self) -> &'static str {
        match self {
            Func::Now => "now()",
            Func::CurrentYear => "currentYear()",
            Func::Me => "me()",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sym {
    LParen,
    RParen,
    Comma,
    Cmp(Op),
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// A word or a dotted path.
    Ident,
    Number,
    /// A string's decoded content.
    Str(String),
    Sym(Sym),
    /// Something that is no token: a stray character, an unterminated string, a bad number.
    Bad,
    Eof,
}

#[derive(Debug, Clone)]
struct Tok<'s> {
    kind: Kind,
    text: &'s str,
    /// 1-based character offset.
    pos: usize,
}

struct Lexer<'s> {
    src: &'s str,
    /// Byte offset of the next character.
    at: usize,
    /// Characters before `at`.
    chars: usize,
}

fn ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn ident_continue(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?`
fn valid_number(t: &str) -> bool {
    let t = t.strip_prefix('-').unwrap_or(t);
    let (int, frac) = match t.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (t, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(int) && (int == "0" || !int.starts_with('0')) && frac.is_none_or(digits)
}

impl<'s> Lexer<'s> {
    fn new(src: &'s str) -> Self {
        Lexer {
            src,
            at: 0,
            chars: 0,
        }
    }

    fn rest(&self) -> &'s str {
        &self.src[self.at..]
    }

    /// The byte length of the leading run of `rest` whose characters satisfy `f`.
    fn run(rest: &str, f: impl Fn(char) -> bool) -> usize {
        rest.char_indices()
            .find(|&(_, c)| !f(c))
            .map_or(rest.len(), |(i, _)| i)
    }

    fn token(&mut self, len: usize, kind: Kind) -> Tok<'s> {
        let text = &self.src[self.at..self.at + len];
        let pos = self.chars + 1;
        self.at += len;
        self.chars += text.chars().count();
        Tok { kind, text, pos }
    }

    fn next(&mut self) -> Tok<'s> {
        let ws = Self::run(self.rest(), |c| matches!(c, ' ' | '\t' | '\n' | '\r'));
        self.chars += ws; // white space is ASCII
        self.at += ws;
        let rest = self.rest();
        let mut cs = rest.chars();
        let Some(c) = cs.next() else {
            return Tok {
                kind: Kind::Eof,
                text: "",
                pos: self.chars + 1,
            };
        };
        let c2 = cs.next();
        match c {
            '(' => self.token(1, Kind::Sym(Sym::LParen)),
            ')' => self.token(1, Kind::Sym(Sym::RParen)),
            ',' => self.token(1, Kind::Sym(Sym::Comma)),
            '=' if c2 == Some('=') => self.token(2, Kind::Sym(Sym::Cmp(Op::Eq))),
            '=' => self.token(1, Kind::Sym(Sym::Cmp(Op::Eq))),
            '!' if c2 == Some('=') => self.token(2, Kind::Sym(Sym::Cmp(Op::Ne))),
            '<' if c2 == Some('>') => self.token(2, Kind::Sym(Sym::Cmp(Op::Ne))),
            '<' if c2 == Some('=') => self.token(2, Kind::Sym(Sym::Cmp(Op::Lte))),
            '<' => self.token(1, Kind::Sym(Sym::Cmp(Op::Lt))),
            '>' if c2 == Some('=') => self.token(2, Kind::Sym(Sym::Cmp(Op::Gte))),
            '>' => self.token(1, Kind::Sym(Sym::Cmp(Op::Gt))),
            '\'' | '"' => self.string(c),
            '-' if !c2.is_some_and(|d| d.is_ascii_digit()) => self.token(1, Kind::Bad),
            '-' | '0'..='9' => {
                // The whole run of number-like characters is one token, so `1abc` or `1.2.3`
                // is reported whole.
                let len = 1 + Self::run(&rest[1..], |c| c == '.' || ident_continue(c));
                let kind = if valid_number(&rest[..len]) {
                    Kind::Number
                } else {
                    Kind::Bad
                };
                self.token(len, kind)
            }
            c if ident_start(c) => {
                let mut len = 0;
                loop {
                    let seg = &rest[len..];
                    let first = seg.chars().next().map_or(0, char::len_utf8);
                    len += first + Self::run(&seg[first..], ident_continue);
                    let after = &rest[len..];
                    match after.strip_prefix('.') {
                        Some(next) if next.chars().next().is_some_and(ident_start) => len += 1,
                        _ => break,
                    }
                }
                self.token(len, Kind::Ident)
            }
            c => self.token(c.len_utf8(), Kind::Bad),
        }
    }

    /// A quoted string starting at `rest()`; unterminated, the rest of the input is one bad
    /// token.
    fn string(&mut self, quote: char) -> Tok<'s> {
        let rest = self.rest();
        let mut out = String::new();
        let mut it = rest.char_indices().skip(1).peekable();
        while let Some((i, c)) = it.next() {
            if c == quote {
                if it.peek().is_some_and(|&(_, n)| n == quote) {
                    it.next();
                    out.push(quote);
                    continue;
                }
                return self.token(i + 1, Kind::Str(out));
            }
            if c == '\\' {
                match it.peek() {
                    Some(&(_, n @ ('\\' | '\'' | '"'))) => {
                        it.next();
                        out.push(n);
                    }
                    _ => out.push('\\'),
                }
                continue;
            }
            out.push(c);
        }
        self.token(rest.len(), Kind::Bad)
    }
}

// ---------------------------------------------------------------------------------------------
// Parser

/// Parses a WQL filter within the default [`Limits`].
pub fn parse(text: &str) -> Result<Filter, WqlError> {
    parse_with(text, &Limits::default())
}

/// Parses a WQL filter within `limits`.
pub fn parse_with(text: &str, limits: &Limits) -> Result<Filter, WqlError> {
    let mut lex = Lexer::new(text);
    let tok = lex.next();
    let mut p = Parser {
        lex,
        tok,
        depth: 0,
        terms: 0,
        nodes: 0,
        limits: *limits,
    };
    let f = p.or()?;
    if p.tok.kind != Kind::Eof {
        return Err(p.error());
    }
    Ok(f)
}

struct Parser<'s> {
    lex: Lexer<'s>,
    tok: Tok<'s>,
    depth: usize,
    terms: usize,
    nodes: usize,
    limits: Limits,
}

/// Words that can never be a field.
const RESERVED: [&str; 5] = ["and", "or", "not", "true", "false"];

impl<'s> Parser<'s> {
    fn error(&self) -> WqlError {
        WqlError {
            position: self.tok.pos,
            near: match self.tok.kind {
                Kind::Eof => "<EOF>".to_owned(),
                _ => self.tok.text.to_owned(),
            },
            reason: None,
        }
    }

    /// The current token goes over a limit.
    fn over(&self, reason: String) -> WqlError {
        WqlError {
            reason: Some(reason),
            ..self.error()
        }
    }

    /// One more node (a comparison, a value, an `and`, `or` or `not`) at the current token.
    fn node(&mut self) -> Result<(), WqlError> {
        self.nodes += 1;
        if self.nodes > self.limits.nodes {
            return Err(self.over(format!(
                "filtr smí mít nejvýše {} uzlů (podmínek, hodnot a operátorů)",
                self.limits.nodes
            )));
        }
        Ok(())
    }

    fn bump(&mut self) -> Tok<'s> {
        let next = self.lex.next();
        std::mem::replace(&mut self.tok, next)
    }

    fn is_kw(&self, kw: &str) -> bool {
        self.tok.kind == Kind::Ident && self.tok.text.eq_ignore_ascii_case(kw)
    }

    fn is_sym(&self, s: Sym) -> bool {
        self.tok.kind == Kind::Sym(s)
    }

    fn expect_sym(&mut self, s: Sym) -> Result<(), WqlError> {
        if !self.is_sym(s) {
            return Err(self.error());
        }
        self.bump();
        Ok(())
    }

    /// One more level of nesting at the current token.
    fn enter(&mut self) -> Result<(), WqlError> {
        if self.depth >= self.limits.depth {
            return Err(self.over(format!(
                "filtr smí být vnořen nejvýše do {} úrovní",
                self.limits.depth
            )));
        }
        self.depth += 1;
        Ok(())
    }

    fn or(&mut self) -> Result<Filter, WqlError> {
        let first = self.and()?;
        if !self.is_kw("or") {
            return Ok(first);
        }
        let mut items = Vec::new();
        push_flat(&mut items, first, true);
        while self.is_kw("or") {
            self.node()?;
            self.bump();
            let next = self.and()?;
            push_flat(&mut items, next, true);
        }
        Ok(Filter::Or(items))
    }

    fn and(&mut self) -> Result<Filter, WqlError> {
        let first = self.unary()?;
        if !self.is_kw("and") {
            return Ok(first);
        }
        let mut items = Vec::new();
        push_flat(&mut items, first, false);
        while self.is_kw("and") {
            self.node()?;
            self.bump();
            let next = self.unary()?;
            push_flat(&mut items, next, false);
        }
        Ok(Filter::And(items))
    }

    fn unary(&mut self) -> Result<Filter, WqlError> {
        let outer = self.depth;
        while self.is_kw("not") {
            self.enter()?;
            self.node()?;
            self.bump();
        }
        let nots = self.depth - outer;
        let mut f = if self.is_sym(Sym::LParen) {
            self.enter()?;
            self.bump();
            let inner = self.or()?;
            self.expect_sym(Sym::RParen)?;
            inner
        } else {
            self.comparison()?
        };
        for _ in 0..nots {
            f = Filter::Not(Box::new(f));
        }
        self.depth = outer;
        Ok(f)
    }

    fn comparison(&mut self) -> Result<Filter, WqlError> {
        if self.tok.kind != Kind::Ident
            || RESERVED
                .iter()
                .any(|w| self.tok.text.eq_ignore_ascii_case(w))
        {
            return Err(self.error());
        }
        self.terms += 1;
        if self.terms > self.limits.terms {
            return Err(self.over(format!(
                "filtr smí mít nejvýše {} podmínek",
                self.limits.terms
            )));
        }
        self.node()?;
        let field = self.bump().text.to_owned();
        let test = self.test()?;
        Ok(Filter::Cmp(Cmp { field, test }))
    }

    fn test(&mut self) -> Result<Test, WqlError> {
        if let Kind::Sym(Sym::Cmp(op)) = self.tok.kind {
            self.bump();
            return Ok(Test::Compare(op, self.value()?));
        }
        if self.tok.kind != Kind::Ident {
            return Err(self.error());
        }
        let word = self.tok.text;
        let is = |w: &str| word.eq_ignore_ascii_case(w);
        let op = if is("eq") {
            Op::Eq
        } else if is("ne") || is("neq") {
            Op::Ne
        } else if is("lt") {
            Op::Lt
        } else if is("lte") {
            Op::Lte
        } else if is("gt") {
            Op::Gt
        } else if is("gte") {
            Op::Gte
        } else if is("like") || is("begins") {
            let like = is("like");
            self.bump();
            let similar = self.is_kw("similar");
            if similar {
                self.bump();
            }
            let op = match (like, similar) {
                (true, false) => Op::Like,
                (true, true) => Op::LikeSimilar,
                (false, false) => Op::Begins,
                (false, true) => Op::BeginsSimilar,
            };
            return Ok(Test::Compare(op, self.value()?));
        } else if is("ends") {
            Op::Ends
        } else if is("between") {
            self.bump();
            let from = self.value()?;
            let to = self.value()?;
            return Ok(Test::Between(from, to));
        } else if is("in") {
            self.bump();
            return self.in_test();
        } else if is("is") {
            self.bump();
            return self.is_test();
        } else {
            return Err(self.error());
        };
        self.bump();
        Ok(Test::Compare(op, self.value()?))
    }

    /// After `in`.
    fn in_test(&mut self) -> Result<Test, WqlError> {
        if self.is_kw("subtree") {
            self.bump();
            return Ok(Test::InSubtree(self.value()?));
        }
        self.expect_sym(Sym::LParen)?;
        let mut values = vec![self.value()?];
        while self.is_sym(Sym::Comma) {
            self.bump();
            if values.len() >= self.limits.in_values {
                return Err(self.over(format!(
                    "'in' smí mít nejvýše {} hodnot",
                    self.limits.in_values
                )));
            }
            values.push(self.value()?);
        }
        self.expect_sym(Sym::RParen)?;
        Ok(Test::In(values))
    }

    /// After `is`.
    fn is_test(&mut self) -> Result<Test, WqlError> {
        let negated = self.is_kw("not");
        if negated {
            self.bump();
        }
        let test = match (negated, self.tok.kind == Kind::Ident) {
            (_, false) => None,
            (false, true) if self.is_kw("true") => Some(Test::IsTrue),
            (false, true) if self.is_kw("false") => Some(Test::IsFalse),
            (false, true) if self.is_kw("null") => Some(Test::IsNull),
            (false, true) if self.is_kw("empty") => Some(Test::IsEmpty),
            (true, true) if self.is_kw("null") => Some(Test::IsNotNull),
            (true, true) if self.is_kw("empty") => Some(Test::IsNotEmpty),
            _ => None,
        };
        let test = test.ok_or_else(|| self.error())?;
        self.bump();
        Ok(test)
    }

    fn value(&mut self) -> Result<Value, WqlError> {
        self.node()?;
        let value = match &self.tok.kind {
            Kind::Number => Value::Number(self.tok.text.to_owned()),
            Kind::Str(s) => Value::Str(s.clone()),
            Kind::Ident if self.is_kw("true") => Value::Bool(true),
            Kind::Ident if self.is_kw("false") => Value::Bool(false),
            Kind::Ident => {
                let func = if self.is_kw("now") {
                    Func::Now
                } else if self.is_kw("currentYear") {
                    Func::CurrentYear
                } else if self.is_kw("me") {
                    Func::Me
                } else {
                    return Err(self.error());
                };
                self.bump();
                self.expect_sym(Sym::LParen)?;
                self.expect_sym(Sym::RParen)?;
                return Ok(Value::Func(func));
            }
            _ => return Err(self.error()),
        };
        self.bump();
        Ok(value)
    }
}

/// Appends `f` to the children of an `Or` (`or == true`) or `And`, splicing in the children of
/// a parenthesised group of the same operator.
fn push_flat(items: &mut Vec<Filter>, f: Filter, or: bool) {
    match f {
        Filter::Or(xs) if or => items.extend(xs),
        Filter::And(xs) if !or => items.extend(xs),
        f => items.push(f),
    }
}

/// The canonical form of a filter, the one [`parse`] produces: an `And` directly inside an
/// `And` (or `Or` inside `Or`) is spliced into it and an `And`/`Or` of one child is that
/// child. The meaning is unchanged.
pub fn normalize(f: Filter) -> Filter {
    match f {
        Filter::And(xs) => group(xs, false),
        Filter::Or(xs) => group(xs, true),
        Filter::Not(x) => Filter::Not(Box::new(normalize(*x))),
        Filter::Cmp(c) => Filter::Cmp(c),
    }
}

fn group(xs: Vec<Filter>, or: bool) -> Filter {
    let mut items = Vec::with_capacity(xs.len());
    for x in xs {
        push_flat(&mut items, normalize(x), or);
    }
    if items.len() == 1
        && let Some(only) = items.pop()
    {
        return only;
    }
    if or {
        Filter::Or(items)
    } else {
        Filter::And(items)
    }
}

// ---------------------------------------------------------------------------------------------
// Printer

/// Canonical WQL for a filter: canonical operator spellings, single-quoted strings (with `'`
/// doubled and `\` written `\\`), and only the parentheses the meaning needs (an `or` inside an
/// `and`, an `and`/`or` under `not`).
///
/// Fields are written as they are and must be identifiers or dotted paths. An `And`/`Or` of
/// one child is written as that child; an empty one, or an empty `in`, has no WQL and is
/// written as `()`, which does not parse.
pub fn print(f: &Filter) -> String {
    let mut out = String::new();
    write_filter(f, &mut out);
    out
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&print(self))
    }
}

/// Looks through `And`/`Or` nodes of a single child.
fn unwrap_single(mut f: &Filter) -> &Filter {
    while let Filter::And(xs) | Filter::Or(xs) = f {
        match xs.as_slice() {
            [only] => f = only,
            _ => break,
        }
    }
    f
}

fn write_filter(f: &Filter, out: &mut String) {
    match unwrap_single(f) {
        Filter::And(xs) | Filter::Or(xs) if xs.is_empty() => out.push_str("()"),
        Filter::And(xs) => {
            for (i, x) in xs.iter().enumerate() {
                if i > 0 {
                    out.push_str(" and ");
                }
                let paren = matches!(unwrap_single(x), Filter::Or(ys) if ys.len() > 1);
                write_grouped(x, paren, out);
            }
        }
        Filter::Or(xs) => {
            for (i, x) in xs.iter().enumerate() {
                if i > 0 {
                    out.push_str(" or ");
                }
                write_filter(x, out);
            }
        }
        Filter::Not(x) => {
            out.push_str("not ");
            let paren =
                matches!(unwrap_single(x), Filter::And(ys) | Filter::Or(ys) if ys.len() > 1);
            write_grouped(x, paren, out);
        }
        Filter::Cmp(c) => write_cmp(c, out),
    }
}

fn write_grouped(f: &Filter, paren: bool, out: &mut String) {
    if paren {
        out.push('(');
    }
    write_filter(f, out);
    if paren {
        out.push(')');
    }
}

fn write_cmp(c: &Cmp, out: &mut String) {
    out.push_str(&c.field);
    out.push(' ');
    match &c.test {
        Test::Compare(op, v) => {
            out.push_str(op.wql());
            out.push(' ');
            write_value(v, out);
        }
        Test::Between(a, b) => {
            out.push_str("between ");
            write_value(a, out);
            out.push(' ');
            write_value(b, out);
        }
        Test::In(vs) => {
            out.push_str("in (");
            for (i, v) in vs.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(v, out);
            }
            out.push(')');
        }
        Test::InSubtree(v) => {
            out.push_str("in subtree ");
            write_value(v, out);
        }
        Test::IsTrue => out.push_str("is true"),
        Test::IsFalse => out.push_str("is false"),
        Test::IsNull => out.push_str("is null"),
        Test::IsNotNull => out.push_str("is not null"),
        Test::IsEmpty => out.push_str("is empty"),
        Test::IsNotEmpty => out.push_str("is not empty"),
    }
}

fn write_value(v: &Value, out: &mut String) {
    match v {
        Value::Number(n) => out.push_str(n),
        Value::Str(s) => {
            out.push('\'');
            for c in s.chars() {
                match c {
                    '\'' => out.push_str("''"),
                    '\\' => out.push_str("\\\\"),
                    c => out.push(c),
                }
            }
            out.push('\'');
        }
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Func(func) => out.push_str(func.wql()),
    }
}

// ---------------------------------------------------------------------------------------------
// Structured JSON filter

/// What the functions evaluate to.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// `now()`, and the year of `currentYear()` (in this offset).
    pub now: DateTime<FixedOffset>,
    /// `me()`.
    pub user: &'a str,
}

/// The structured filter the backend receives:
///
/// * `{"and": [..]}`, `{"or": [..]}`, `{"not": {..}}`
/// * `{"field": f, "op": o, "value": v}` with `o` one of `eq`, `ne`, `lt`, `lte`, `gt`, `gte`,
///   `like`, `like_similar`, `begins`, `begins_similar`, `ends`
/// * `{"field": f, "op": "between", "from": v, "to": v}`
/// * `{"field": f, "op": "in", "values": [..]}`, `{"field": f, "op": "in_subtree", "value": v}`
/// * `{"field": f, "op": "is_true"|"is_false"|"is_null"|"is_not_null"|"is_empty"|"is_not_empty"}`
///
/// Numbers are JSON numbers with their exact text, strings strings, booleans booleans;
/// `now()` is the context's time in RFC 3339 with seconds (`2026-11-23T16:03:00+01:00`),
/// `currentYear()` its year as a number and `me()` the context's user.
pub fn to_json(f: &Filter, ctx: &Context<'_>) -> Json {
    let mut m = Map::new();
    match f {
        Filter::And(xs) => {
            m.insert("and".into(), xs.iter().map(|x| to_json(x, ctx)).collect());
        }
        Filter::Or(xs) => {
            m.insert("or".into(), xs.iter().map(|x| to_json(x, ctx)).collect());
        }
        Filter::Not(x) => {
            m.insert("not".into(), to_json(x, ctx));
        }
        Filter::Cmp(c) => {
            m.insert("field".into(), Json::String(c.field.clone()));
            m.insert("op".into(), Json::String(c.test.json_name().into()));
            match &c.test {
                Test::Compare(_, v) | Test::InSubtree(v) => {
                    m.insert("value".into(), value_json(v, ctx));
                }
                Test::Between(a, b) => {
                    m.insert("from".into(), value_json(a, ctx));
                    m.insert("to".into(), value_json(b, ctx));
                }
                Test::In(vs) => {
                    let vs = vs.iter().map(|v| value_json(v, ctx)).collect();
                    m.insert("values".into(), vs);
                }
                Test::IsTrue
                | Test::IsFalse
                | Test::IsNull
                | Test::IsNotNull
                | Test::IsEmpty
                | Test::IsNotEmpty => {}
            }
        }
    }
    Json::Object(m)
}

fn value_json(v: &Value, ctx: &Context<'_>) -> Json {
    match v {
        // Parsed numbers are valid JSON numbers; a hand-built one that is not stays a string.
        Value::Number(n) => serde_json::Number::from_str(n)
            .map(Json::Number)
            .unwrap_or_else(|_| Json::String(n.clone())),
        Value::Str(s) => Json::String(s.clone()),
        Value::Bool(b) => Json::Bool(*b),
        Value::Func(Func::Now) => Json::String(ctx.now.to_rfc3339_opts(SecondsFormat::Secs, false)),
        Value::Func(Func::CurrentYear) => Json::from(ctx.now.year()),
        Value::Func(Func::Me) => Json::String(ctx.user.to_owned()),
    }
}

// ---------------------------------------------------------------------------------------------
// Inspection

/// Every comparison of a filter, once each, left to right.
pub fn comparisons(f: &Filter) -> impl Iterator<Item = &Cmp> {
    let mut stack = vec![f];
    std::iter::from_fn(move || {
        while let Some(f) = stack.pop() {
            match f {
                Filter::And(xs) | Filter::Or(xs) => stack.extend(xs.iter().rev()),
                Filter::Not(x) => stack.push(x),
                Filter::Cmp(c) => return Some(c),
            }
        }
        None
    })
}

/// The field and JSON operator name of every comparison, once each, left to right, so a caller
/// can refuse a filter its backend cannot express.
pub fn operators_used(f: &Filter) -> Vec<(&str, &'static str)> {
    comparisons(f)
        .map(|c| (c.field.as_str(), c.test.json_name()))
        .collect()
}

/// The values a test compares with (none for `is null` and the like).
pub fn values(t: &Test) -> impl Iterator<Item = &Value> {
    let (one, many): (Option<&Value>, &[Value]) = match t {
        Test::Compare(_, v) | Test::InSubtree(v) => (Some(v), &[]),
        Test::Between(a, b) => return values_of(Some(a), Some(b), &[]),
        Test::In(vs) => (None, vs.as_slice()),
        _ => (None, &[]),
    };
    values_of(one, None, many)
}

fn values_of<'a>(
    a: Option<&'a Value>,
    b: Option<&'a Value>,
    rest: &'a [Value],
) -> impl Iterator<Item = &'a Value> {
    a.into_iter().chain(b).chain(rest)
}

/// The field of every comparison, left to right (a field compared twice comes twice).
pub fn fields(f: &Filter) -> impl Iterator<Item = &str> {
    comparisons(f).map(|c| c.field.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn c(field: &str, test: Test) -> Filter {
        Filter::Cmp(Cmp {
            field: field.to_owned(),
            test,
        })
    }

    fn eq(field: &str, v: Value) -> Filter {
        c(field, Test::Compare(Op::Eq, v))
    }

    fn n(t: &str) -> Value {
        Value::Number(t.to_owned())
    }

    fn s(t: &str) -> Value {
        Value::Str(t.to_owned())
    }

    fn not(f: Filter) -> Filter {
        Filter::Not(Box::new(f))
    }

    fn valid_table() -> Vec<(&'static str, Filter)> {
        use Filter::{And, Or};
        let cmp = |op, v| c("a", Test::Compare(op, v));
        vec![
            ("hladina eq 1", eq("hladina", n("1"))),
            ("a = 1", cmp(Op::Eq, n("1"))),
            ("a == 1", cmp(Op::Eq, n("1"))),
            ("a EQ 1", cmp(Op::Eq, n("1"))),
            ("a <> 1", cmp(Op::Ne, n("1"))),
            ("a != 1", cmp(Op::Ne, n("1"))),
            ("a ne 1", cmp(Op::Ne, n("1"))),
            ("a Neq 1", cmp(Op::Ne, n("1"))),
            ("a<-2", cmp(Op::Lt, n("-2"))),
            ("a lt 12.50", cmp(Op::Lt, n("12.50"))),
            ("a <= 0", cmp(Op::Lte, n("0"))),
            ("a lte -0.001", cmp(Op::Lte, n("-0.001"))),
            ("a > 1", cmp(Op::Gt, n("1"))),
            ("a GT 1", cmp(Op::Gt, n("1"))),
            ("a >= 1", cmp(Op::Gte, n("1"))),
            ("a gte 1", cmp(Op::Gte, n("1"))),
            ("a like 'x%'", cmp(Op::Like, s("x%"))),
            ("a LIKE Similar 'x'", cmp(Op::LikeSimilar, s("x"))),
            ("a begins 'x'", cmp(Op::Begins, s("x"))),
            ("a begins similar \"x\"", cmp(Op::BeginsSimilar, s("x"))),
            ("a ends 'x'", cmp(Op::Ends, s("x"))),
            (
                "datum between '2020-01-01' now()",
                c(
                    "datum",
                    Test::Between(s("2020-01-01"), Value::Func(Func::Now)),
                ),
            ),
            (
                "mena in ('code:CZK', 1, -2.5, true, me())",
                c(
                    "mena",
                    Test::In(vec![
                        s("code:CZK"),
                        n("1"),
                        n("-2.5"),
                        Value::Bool(true),
                        Value::Func(Func::Me),
                    ]),
                ),
            ),
            ("a in (1)", c("a", Test::In(vec![n("1")]))),
            (
                "skupina in subtree 5",
                c("skupina", Test::InSubtree(n("5"))),
            ),
            (
                "a IN SUBTREE 'code:X'",
                c("a", Test::InSubtree(s("code:X"))),
            ),
            ("a is true", c("a", Test::IsTrue)),
            ("a IS FALSE", c("a", Test::IsFalse)),
            ("a is null", c("a", Test::IsNull)),
            ("a is not null", c("a", Test::IsNotNull)),
            ("a is empty", c("a", Test::IsEmpty)),
            ("a Is Not Empty", c("a", Test::IsNotEmpty)),
            ("a = true", cmp(Op::Eq, Value::Bool(true))),
            ("a = FALSE", cmp(Op::Eq, Value::Bool(false))),
            (
                "rok = CURRENTYEAR ( )",
                eq("rok", Value::Func(Func::CurrentYear)),
            ),
            ("uzivatel = Me()", eq("uzivatel", Value::Func(Func::Me))),
            ("firma.skupFir.kod = 'A'", eq("firma.skupFir.kod", s("A"))),
            ("čáslo = 1", eq("čáslo", n("1"))),
            ("_x9 = 'žluťoučký kůň €'", eq("_x9", s("žluťoučký kůň €"))),
            ("a = 'O''Brien'", eq("a", s("O'Brien"))),
            ("a = \"a\\\"b\"", eq("a", s("a\"b"))),
            ("a = \"say \"\"hi\"\"\"", eq("a", s("say \"hi\""))),
            ("a = 'x\\'y\\\\z'", eq("a", s("x'y\\z"))),
            ("a = 'C:\\temp'", eq("a", s("C:\\temp"))),
            ("a = \"it's\"", eq("a", s("it's"))),
            ("a = ''", eq("a", s(""))),
            (
                "a = 1 or b = 2 and not c = 3",
                Or(vec![
                    eq("a", n("1")),
                    And(vec![eq("b", n("2")), not(eq("c", n("3")))]),
                ]),
            ),
            (
                "a = 1 and b = 2 and c = 3",
                And(vec![eq("a", n("1")), eq("b", n("2")), eq("c", n("3"))]),
            ),
            (
                "(a = 1 and b = 2) and (c = 3 and d = 4)",
                And(vec![
                    eq("a", n("1")),
                    eq("b", n("2")),
                    eq("c", n("3")),
                    eq("d", n("4")),
                ]),
            ),
            (
                "(a = 1 or b = 2) and c = 3",
                And(vec![
                    Or(vec![eq("a", n("1")), eq("b", n("2"))]),
                    eq("c", n("3")),
                ]),
            ),
            (
                "a = 1 OR b = 2 Or c = 3",
                Or(vec![eq("a", n("1")), eq("b", n("2")), eq("c", n("3"))]),
            ),
            (
                "not (a = 1 or b = 2)",
                not(Or(vec![eq("a", n("1")), eq("b", n("2"))])),
            ),
            (
                "not a = 1 and b = 2",
                And(vec![not(eq("a", n("1"))), eq("b", n("2"))]),
            ),
            ("NOT not a = 1", not(not(eq("a", n("1"))))),
            ("((a = 1))", eq("a", n("1"))),
            (
                "\t(a=1)\n\r\nor(b='x')",
                Or(vec![eq("a", n("1")), eq("b", s("x"))]),
            ),
            // Keywords other than and/or/not/true/false may name fields.
            ("in in (1)", c("in", Test::In(vec![n("1")]))),
            ("firma.and = 1", eq("firma.and", n("1"))),
        ]
    }

    #[test]
    fn valid_inputs_parse_to_their_tree() {
        for (text, want) in valid_table() {
            assert_eq!(parse(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn printed_inputs_parse_back_to_the_same_tree() {
        for (text, _) in valid_table() {
            let f = parse(text).unwrap();
            let printed = print(&f);
            assert_eq!(parse(&printed), Ok(f), "{text} printed as {printed}");
        }
    }

    #[test]
    fn printing_is_canonical() {
        let cases = [
            (
                "a eq 1 OR (b == 'x''y' AND NOT (c lt 2 or d is not null))",
                "a = 1 or b = 'x''y' and not (c < 2 or d is not null)",
            ),
            (
                "(a = 1 or b = 2) and not not c begins similar \"q\\\\\"",
                "(a = 1 or b = 2) and not not c begins similar 'q\\\\'",
            ),
            (
                "x in (1,2 , 'a') and y in subtree 3 or z between -1 currentyear()",
                "x in (1, 2, 'a') and y in subtree 3 or z between -1 currentYear()",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(print(&parse(input).unwrap()), want);
            assert_eq!(parse(input).unwrap().to_string(), want);
        }
    }

    fn deep(open: &str, n: usize, close: &str) -> String {
        format!("{}a = 1{}", open.repeat(n), close.repeat(n))
    }

    #[test]
    fn invalid_inputs_fail_at_the_offending_token() {
        let over_parens = deep("(", 65, ")");
        let over_nots = deep("not ", 65, "");
        let mixed = format!("{}not (a = 1){}", "(not ".repeat(32), ")".repeat(32));
        let many = format!(
            "a in ({})",
            (0..1001)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        // "a in (" is 6 characters; values 0..=9 take 2 each, 10..=99 3, 100..=999 4.
        let value_1001 = 6 + 10 * 2 + 90 * 3 + 900 * 4 + 1;
        let cases: Vec<(&str, usize, &str)> = vec![
            ("typVztahuK in ()", 16, ")"),
            ("hladina ge 1", 9, "ge"),
            ("hladina le 1", 9, "le"),
            ("a isempty", 3, "isempty"),
            ("nazev = ", 9, "<EOF>"),
            ("nazev = 'abc", 9, "'abc"),
            ("nazev = \"a\\\"", 9, "\"a\\\""),
            ("(a = 1", 7, "<EOF>"),
            ("a = 1)", 6, ")"),
            ("a = 1 b = 2", 7, "b"),
            ("hladina eq now(", 16, "<EOF>"),
            ("hladina eq now(1)", 16, "1"),
            ("hladina eq now", 15, "<EOF>"),
            ("hladina eq today()", 12, "today"),
            ("", 1, "<EOF>"),
            ("   ", 4, "<EOF>"),
            ("a in (1,)", 9, ")"),
            ("a in (1 2)", 9, "2"),
            ("a in 1", 6, "1"),
            ("1 = a", 1, "1"),
            ("'x' = 1", 1, "'x'"),
            ("a = 1 2", 7, "2"),
            ("a = b", 5, "b"),
            ("a = 1 and", 10, "<EOF>"),
            ("a = 1 or or b = 1", 10, "or"),
            ("a =", 4, "<EOF>"),
            ("a between 1 and 2", 13, "and"),
            ("a is not true", 10, "true"),
            ("a is", 5, "<EOF>"),
            ("a like similar", 15, "<EOF>"),
            ("čáslo ≠ 1", 7, "≠"),
            ("ž = 'ž' and ž ge 1", 15, "ge"),
            ("a = 007", 5, "007"),
            ("a = 1.", 5, "1."),
            ("a = 1e5", 5, "1e5"),
            ("a = -", 5, "-"),
            ("a = 1 && b = 2", 7, "&"),
            ("firma. = 1", 6, "."),
            ("and = 1", 1, "and"),
            ("not", 4, "<EOF>"),
            ("()", 2, ")"),
            ("a ! 1", 3, "!"),
            (&over_parens, 65, "("),
            (&over_nots, 65 * 4 - 3, "not"),
            (&mixed, 32 * 5 + 1, "not"),
            (&many, value_1001, "1000"),
        ];
        for (text, position, near) in cases {
            let got = parse(text).unwrap_err();
            assert_eq!(
                (got.position, got.near.as_str()),
                (position, near),
                "{text:.60}"
            );
        }
    }

    #[test]
    fn nesting_up_to_the_limit_parses() {
        assert!(parse(&deep("(", 64, ")")).is_ok());
        assert!(parse(&deep("not ", 64, "")).is_ok());
        // Depth is what is open at once, not the total.
        let wide = vec!["not (not a = 1)"; 100].join(" and ");
        assert!(parse(&format!("{}{wide}{}", "(".repeat(61), ")".repeat(61))).is_ok());
        let list = vec!["1"; 1000].join(", ");
        assert!(parse(&format!("a in ({list})")).is_ok());
    }

    #[test]
    fn error_message_is_flexis() {
        let e = parse("typVztahuK in ()").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Špatný formát WQL dotazu, problém na pozici 16 poblíž textu ')'"
        );
    }

    #[test]
    fn ten_kilobyte_filter_parses() {
        let text = (0..500)
            .map(|i| format!("nazev = 'hodnota {i:04}'"))
            .collect::<Vec<_>>()
            .join(" or ");
        assert!(text.len() > 10_000);
        match parse(&text).unwrap() {
            Filter::Or(xs) => assert_eq!(xs.len(), 500),
            other => panic!("{other:?}"),
        }
    }

    fn ctx() -> Context<'static> {
        Context {
            now: DateTime::parse_from_rfc3339("2026-11-23T16:03:00+01:00").unwrap(),
            user: "novak",
        }
    }

    #[test]
    fn json_filter_has_every_shape() {
        let f = parse(
            "a = 12.50 and (b like similar 'x' or not c is not empty) \
             and d between -1 currentYear() and e in ('code:CZK', true, me()) \
             and f in subtree 7 and g >= now()",
        )
        .unwrap();
        let want = json!({"and": [
            {"field": "a", "op": "eq", "value": 0},
            {"or": [
                {"field": "b", "op": "like_similar", "value": "x"},
                {"not": {"field": "c", "op": "is_not_empty"}},
            ]},
            {"field": "d", "op": "between", "from": -1, "to": 2026},
            {"field": "e", "op": "in", "values": ["code:CZK", true, "novak"]},
            {"field": "f", "op": "in_subtree", "value": 7},
            {"field": "g", "op": "gte", "value": "2026-11-23T16:03:00+01:00"},
        ]});
        let got = to_json(&f, &ctx());
        // `json!` makes 12.50 a float; compare the exact text separately.
        let mut fixed = got.clone();
        fixed["and"][0]["value"] = json!(0);
        assert_eq!(fixed, want);
        assert_eq!(
            serde_json::to_string(&got["and"][0]).unwrap(),
            r#"{"field":"a","op":"eq","value":12.50}"#
        );
    }

    #[test]
    fn json_ops_and_numbers_are_exact() {
        for (text, op) in [
            ("a = 1", "eq"),
            ("a <> 1", "ne"),
            ("a < 1", "lt"),
            ("a <= 1", "lte"),
            ("a > 1", "gt"),
            ("a >= 1", "gte"),
            ("a like 'x'", "like"),
            ("a begins 'x'", "begins"),
            ("a begins similar 'x'", "begins_similar"),
            ("a ends 'x'", "ends"),
            ("a is true", "is_true"),
            ("a is false", "is_false"),
            ("a is null", "is_null"),
            ("a is not null", "is_not_null"),
            ("a is empty", "is_empty"),
        ] {
            assert_eq!(to_json(&parse(text).unwrap(), &ctx())["op"], op, "{text}");
        }
        let big = "a = -123456789012345678901234567890.000000000000000000001";
        let j = to_json(&parse(big).unwrap(), &ctx());
        assert_eq!(
            serde_json::to_string(&j["value"]).unwrap(),
            "-123456789012345678901234567890.000000000000000000001"
        );
        let utc = Context {
            now: DateTime::parse_from_rfc3339("2026-01-01T00:30:00Z").unwrap(),
            user: "x",
        };
        let j = to_json(&parse("a = now()").unwrap(), &utc);
        assert_eq!(j["value"], "2026-01-01T00:30:00+00:00");
    }

    #[test]
    fn operators_and_fields_are_listed_in_order() {
        let f = parse("a = 1 and not (b.c in (1) or a is null) or d between 1 2").unwrap();
        assert_eq!(
            operators_used(&f),
            vec![
                ("a", "eq"),
                ("b.c", "in"),
                ("a", "is_null"),
                ("d", "between")
            ]
        );
        assert_eq!(fields(&f).collect::<Vec<_>>(), vec!["a", "b.c", "a", "d"]);
    }

    #[test]
    fn normalize_flattens_and_unwraps() {
        let a = eq("a", n("1"));
        let b = eq("b", n("2"));
        let f = Filter::And(vec![
            Filter::And(vec![a.clone(), Filter::Or(vec![b.clone()])]),
            not(Filter::Or(vec![
                Filter::Or(vec![a.clone(), b.clone()]),
                a.clone(),
            ])),
        ]);
        assert_eq!(
            normalize(f),
            Filter::And(vec![
                a.clone(),
                b.clone(),
                not(Filter::Or(vec![a.clone(), b, a]))
            ])
        );
    }

    // --- property: parse(print(f)) == normalize(f) ---------------------------------------

    fn field() -> impl Strategy<Value = String> {
        let seg = "[a-zA-Z_čřžÁéß][a-zA-Z0-9_čřžÁéß]{0,8}";
        proptest::collection::vec(seg, 1..4)
            .prop_map(|segs| segs.join("."))
            .prop_filter("reserved word", |f| {
                !RESERVED.iter().any(|w| f.eq_ignore_ascii_case(w))
            })
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,8})?".prop_map(Value::Number),
            "[a-z '\"\\\\%:čŽ€😀\n\t]{0,12}".prop_map(Value::Str),
            any::<String>().prop_map(Value::Str),
            any::<bool>().prop_map(Value::Bool),
            prop_oneof![Just(Func::Now), Just(Func::CurrentYear), Just(Func::Me)]
                .prop_map(Value::Func),
        ]
    }

    fn test_strategy() -> impl Strategy<Value = Test> {
        let op = prop_oneof![
            Just(Op::Eq),
            Just(Op::Ne),
            Just(Op::Lt),
            Just(Op::Lte),
            Just(Op::Gt),
            Just(Op::Gte),
            Just(Op::Like),
            Just(Op::LikeSimilar),
            Just(Op::Begins),
            Just(Op::BeginsSimilar),
            Just(Op::Ends),
        ];
        prop_oneof![
            4 => (op, value()).prop_map(|(o, v)| Test::Compare(o, v)),
            1 => (value(), value()).prop_map(|(a, b)| Test::Between(a, b)),
            1 => proptest::collection::vec(value(), 1..5).prop_map(Test::In),
            1 => value().prop_map(Test::InSubtree),
            1 => prop_oneof![
                Just(Test::IsTrue),
                Just(Test::IsFalse),
                Just(Test::IsNull),
                Just(Test::IsNotNull),
                Just(Test::IsEmpty),
                Just(Test::IsNotEmpty),
            ],
        ]
    }

    fn filter() -> impl Strategy<Value = Filter> {
        let leaf =
            (field(), test_strategy()).prop_map(|(field, test)| Filter::Cmp(Cmp { field, test }));
        leaf.prop_recursive(5, 40, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 1..5).prop_map(Filter::And),
                proptest::collection::vec(inner.clone(), 1..5).prop_map(Filter::Or),
                inner.prop_map(|f| Filter::Not(Box::new(f))),
            ]
        })
    }

    proptest! {
        #[test]
        fn printed_filters_parse_back(f in filter()) {
            let canonical = normalize(f.clone());
            let printed = print(&canonical);
            prop_assert_eq!(parse(&printed), Ok(canonical.clone()), "{}", printed);
            // Any tree prints as WQL of the same meaning: its canonical form.
            prop_assert_eq!(parse(&print(&f)), Ok(canonical));
        }
    }
}
