//! Reference backend for the winstrom door: price-list items and bills of materials (the
//! JSON service behind ABRA Flexi's `cenik` and `kusovnik` evidences, see seed 003 and
//! `notes/protocols.md` section 2). It is a JSON API of its own (snake_case fields,
//! structured filters), not a copy of Flexi.
//!
//! # Data
//!
//! Tenants (`demo`, `test`) each hold two collections; ids come from a sequence per tenant and
//! collection that continues after the seeded ids.
//!
//! - `price-items`: `{"id", "code" (unique, at most 20 characters), "name" (at most 255),
//!   "purchase_price", "sale_price" (decimal strings or null), "unit" (default "ks", at most
//!   10), "ext_ids" (strings `SYSTEM:ID`, unique in the tenant), "active" (bool, default
//!   true)}`.
//! - `boms` (bills of materials): `{"id", "code" (unique), "name", "level" (integer >= 1,
//!   default 1), "product" (a price item id: the finished product), "purchase_price",
//!   "sale_price", "components": [{"item" (a price item id), "quantity" (decimal > 0)}]}`.
//!   A component may not be the BOM's own product.
//!
//! Money is exact: kept with 4 decimal places, written with 2 (rounded half-up), e.g.
//! `"12.50"`; quantities are written with 4 (`"0.1250"`). Input takes JSON numbers or strings
//! (`12.5`, `"12.50"`, `"1e2"`), at most 4 decimal places (trailing zeros do not count) and 12
//! digits before the point; prices must not be negative. On input, `product` and
//! `components[].item` may also be references as strings (`"5"`, `"code:STUL-DUB"`,
//! `"ext:SHOP:500"`); they are stored as ids.
//!
//! # HTTP API
//!
//! `{collection}` is `price-items` or `boms`; `{ref}` is `123` (the id), `code:ABC` or
//! `ext:SHOP:42` (an entry of a price item's `ext_ids`; BOMs have none), percent-encoded in
//! the path as needed. `?dry_run=true` (or `1`) validates and answers without storing anything
//! or using an id.
//!
//! - `POST /v1/{tenant}/{collection}:search` `{"filter", "start" (0), "limit" (20; 0 = all;
//!   at most 10000), "count" (false), "order" ("name", "-sale_price", or a list of keys: ["unit", "-sale_price"])}` (an empty body means
//!   all defaults) -> 200 `{"items": [..], "total": n}` (`total` only with `count`). Items come
//!   in id order, or by `order` (ascending puts nulls first; ties keep id order).
//! - `GET /v1/{tenant}/{collection}/{ref}` -> 200 `{"item"}`.
//! - `POST /v1/{tenant}/{collection}` with the item's fields -> 201 `{"item"}`; dry run: 200
//!   `{"item" (id null), "dry_run": true}`.
//! - `PATCH /v1/{tenant}/{collection}/{ref}` with the fields to change (`null` clears a price,
//!   resets `unit` to "ks", `ext_ids` to [] and `active` to true; `components` replaces the
//!   list) -> 200 `{"item"}` (dry run adds `"dry_run": true`).
//! - `DELETE /v1/{tenant}/{collection}/{ref}` -> 200 `{"deleted": {"id"}}`; a price item that a
//!   BOM uses as product or component: 409 `in_use` naming the BOM codes. A dry run checks
//!   the same (existence and use) and deletes nothing.
//! - `POST /v1/{tenant}/boms/{ref}:recalculate?price=purchase|sale` -> 200 `{"item" (the BOM
//!   after), "previous" (the BOM's old price or null)}`: the price is Σ component item's price
//!   × quantity over one level only (a component that is itself the product of another BOM
//!   counts with its current price, it is not recalculated), a missing price counting as 0,
//!   rounded half-up to 2 places; it is set on the BOM and on its product's price item.
//!   A missing or other `price`: 400 `invalid_parameter`.
//!
//! Errors have the shape `{"error": {"code", "message", "details": [{"field", "code",
//! "message"}]}}`: 404 `unknown_tenant`, 404 `not_found` (unknown path, collection or ref:
//! `no price item with id 123`, `.. with code ABC`, `.. with external id SHOP:42`,
//! `no bill of materials with ..`), 400 `invalid_json` (the body is not a JSON object),
//! 400 `invalid_parameter` (query, search parameters, malformed ref), 400 `unknown_field`,
//! `unsupported_operator` and `invalid_filter` (filters), 405 `method_not_allowed` (with
//! `Allow`), 409 `in_use`, 413 `body_too_large` (over 4 MiB), 422 `validation_failed` ("the
//! item is invalid", one detail per problem, `code` one of `required`, `too_long`,
//! `duplicate`, `invalid`, `unknown_field`, `not_found`; fields like `components[0].item`).
//!
//! # Filters
//!
//! `{"and": [f, ..]}`, `{"or": [f, ..]}`, `{"not": f}`, or a condition `{"field", "op", ..}`:
//! `eq`, `ne`, `lt`, `lte`, `gt`, `gte` (`"value"`), `like` (substring), `begins`, `ends`
//! (`"value"`, case-insensitive, text fields only), `between` (`"from"`, `"to"`, inclusive),
//! `in` (`"values": [..]`), `is_null`, `is_not_null`, `is_true`, `is_false` (boolean fields).
//! Fields: `id`, `code`, `name`, `purchase_price`, `sale_price`, `unit`, `active` (price
//! items); `id`, `code`, `name`, `level`, `product`, `purchase_price`, `sale_price` (BOMs).
//! Numbers compare exactly (a value may be a number or a numeric string), text
//! case-sensitively by code point; a null field matches only `is_null` and `ne`. A text field
//! takes a number as its text. Errors: an unknown field -> 400 `unknown_field` (the field in
//! the details), an unknown op -> 400 `unsupported_operator`, anything malformed (missing or
//! extra members, wrong value types, `like` on a number, nesting deeper than 64) -> 400
//! `invalid_filter` saying what and where (`filter.and[1].value`).
//!
//! # Reference-only endpoints (no authentication; for tests)
//!
//! - `GET /_reference/stats`: `{"requests": n}`, requests to `/v1/...` whatever their outcome.
//! - `GET /_reference/items/{tenant}/{collection}`: `{"items": [..]}`, all items in id order.
//!
//! # Seed file (`fixtures/reference/flexi.json`)
//!
//! `{"about": "..", "tenants": {"demo": {"price_items": [..], "boms": [..]}}}`: items as on
//! input plus a positive `id` (unique in its collection, at most 2^53), checked like a create
//! (BOMs after all price items). The bundled seed holds tenant `demo` with price items 1-12
//! and BOMs 123 (`KUS-STUL-DUB`, level 1), 124 (`KUS-ZIDLE`, level 1) and 125 (`KUS-SADA`,
//! level 2, made of the products of 123 and 124), and tenant `test` with two price items.
//! Recalculating the seed's BOMs gives:
//!
//! - 123: purchase 1450.00 + 4 × 189.50 + 16 × 1.25 + 0.125 × 96.80 + 16 × 0.35 = **2245.70**;
//!   sale 2100.00 + 4 × 279.00 + 16 × 2.40 + 0.125 × 149.00 + 16 × (none) = 3273.025 ->
//!   **3273.03**.
//! - 124: purchase 312.40 + 3.5 × 58.35 + 8 × 1.25 + 0.05 × 245.00 = 538.875 -> **538.88**;
//!   sale 455.00 + 3.5 × (none) + 8 × 2.40 + 0.05 × 359.00 = **492.15**.
//! - 125 with the seeded product prices: purchase 2300.00 + 4 × 520.00 = **4380.00**, sale
//!   7990.00 + 4 × 1890.00 = **15550.00**; after recalculating 123 and 124 first: purchase
//!   2245.70 + 4 × 538.88 = **4401.22**, sale 3273.03 + 4 × 492.15 = **5241.63**.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{ApiError, json_response, shorten, shown};

const MAX_BODY: usize = 4 * 1024 * 1024;
/// Deepest nesting of `and`/`or`/`not` in a filter.
const MAX_DEPTH: usize = 64;
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 10_000;
/// Decimal places kept internally.
const PLACES: u32 = 4;
const SCALE: i128 = 10_000;
/// Digits before the point of a price or quantity.
const WHOLE_DIGITS: usize = 12;
/// Digits before the point of a number in a filter (ids are up to 2^53).
const FILTER_WHOLE_DIGITS: usize = 30;
const CODE_MAX: usize = 20;
const NAME_MAX: usize = 255;
const UNIT_MAX: usize = 10;
const EXT_ID_MAX: usize = 100;
const DEFAULT_UNIT: &str = "ks";
/// The largest id a seed may give.
const MAX_ID: i64 = 1 << 53;

const OPS: &[&str] = &[
    "eq",
    "ne",
    "lt",
    "lte",
    "gt",
    "gte",
    "like",
    "begins",
    "ends",
    "between",
    "in",
    "is_null",
    "is_not_null",
    "is_true",
    "is_false",
];

// ---------------------------------------------------------------------------------------------
// Seed file

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Seed {
    /// Free text describing the seed.
    #[serde(default)]
    #[allow(dead_code)]
    about: Option<String>,
    tenants: BTreeMap<String, SeedTenant>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedTenant {
    #[serde(default)]
    price_items: Vec<Map<String, Value>>,
    #[serde(default)]
    boms: Vec<Map<String, Value>>,
}

// ---------------------------------------------------------------------------------------------
// Model

#[derive(Debug, Clone, PartialEq)]
struct PriceItem {
    id: i64,
    code: String,
    name: String,
    purchase_price: Option<i128>,
    sale_price: Option<i128>,
    unit: String,
    ext_ids: Vec<String>,
    active: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct Component {
    item: i64,
    quantity: i128,
}

#[derive(Debug, Clone, PartialEq)]
struct Bom {
    id: i64,
    code: String,
    name: String,
    level: i64,
    product: i64,
    purchase_price: Option<i128>,
    sale_price: Option<i128>,
    components: Vec<Component>,
}

#[derive(Debug, Default)]
struct Tenant {
    price_items: BTreeMap<i64, PriceItem>,
    boms: BTreeMap<i64, Bom>,
    next_price_item: i64,
    next_bom: i64,
}

#[derive(Debug, Default)]
struct State {
    tenants: BTreeMap<String, Tenant>,
    requests: u64,
}

#[derive(Debug)]
pub struct FlexiApi {
    state: Mutex<State>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Collection {
    PriceItems,
    Boms,
}

/// The type of a filterable field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Num,
    Text,
    Bool,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Num => "a number",
            Kind::Text => "text",
            Kind::Bool => "a boolean",
        }
    }
}

const PRICE_ITEM_FIELDS: &[(&str, Kind)] = &[
    ("id", Kind::Num),
    ("code", Kind::Text),
    ("name", Kind::Text),
    ("purchase_price", Kind::Num),
    ("sale_price", Kind::Num),
    ("unit", Kind::Text),
    ("active", Kind::Bool),
];

const BOM_FIELDS: &[(&str, Kind)] = &[
    ("id", Kind::Num),
    ("code", Kind::Text),
    ("name", Kind::Text),
    ("level", Kind::Num),
    ("product", Kind::Num),
    ("purchase_price", Kind::Num),
    ("sale_price", Kind::Num),
];

impl Collection {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "price-items" => Some(Collection::PriceItems),
            "boms" => Some(Collection::Boms),
            _ => None,
        }
    }

    /// "price item", "bill of materials".
    fn noun(self) -> &'static str {
        match self {
            Collection::PriceItems => "price item",
            Collection::Boms => "bill of materials",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Collection::PriceItems => "price items",
            Collection::Boms => "bills of materials",
        }
    }

    fn fields(self) -> &'static [(&'static str, Kind)] {
        match self {
            Collection::PriceItems => PRICE_ITEM_FIELDS,
            Collection::Boms => BOM_FIELDS,
        }
    }

    fn field(self, name: &str) -> Option<(&'static str, Kind)> {
        self.fields().iter().copied().find(|(n, _)| *n == name)
    }

    fn field_list(self) -> String {
        let names: Vec<&str> = self.fields().iter().map(|(n, _)| *n).collect();
        names.join(", ")
    }
}

/// A field's value, for filters and ordering (numbers scaled by 10^4).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Val<'a> {
    Null,
    Num(i128),
    Text(&'a str),
    Bool(bool),
}

fn num(v: i64) -> Val<'static> {
    Val::Num(i128::from(v) * SCALE)
}

fn price(v: Option<i128>) -> Val<'static> {
    v.map_or(Val::Null, Val::Num)
}

/// What filters, ordering and answers need of an item.
trait Record {
    fn field(&self, name: &str) -> Val<'_>;
    fn view(&self) -> Value;
}

impl Record for PriceItem {
    fn field(&self, name: &str) -> Val<'_> {
        match name {
            "id" => num(self.id),
            "code" => Val::Text(&self.code),
            "name" => Val::Text(&self.name),
            "purchase_price" => price(self.purchase_price),
            "sale_price" => price(self.sale_price),
            "unit" => Val::Text(&self.unit),
            "active" => Val::Bool(self.active),
            _ => Val::Null,
        }
    }

    fn view(&self) -> Value {
        json!({
            "id": self.id,
            "code": self.code,
            "name": self.name,
            "purchase_price": money(self.purchase_price),
            "sale_price": money(self.sale_price),
            "unit": self.unit,
            "ext_ids": self.ext_ids,
            "active": self.active,
        })
    }
}

impl Record for Bom {
    fn field(&self, name: &str) -> Val<'_> {
        match name {
            "id" => num(self.id),
            "code" => Val::Text(&self.code),
            "name" => Val::Text(&self.name),
            "level" => num(self.level),
            "product" => num(self.product),
            "purchase_price" => price(self.purchase_price),
            "sale_price" => price(self.sale_price),
            _ => Val::Null,
        }
    }

    fn view(&self) -> Value {
        let components: Vec<Value> = self
            .components
            .iter()
            .map(|c| json!({"item": c.item, "quantity": format_scaled(c.quantity, PLACES)}))
            .collect();
        json!({
            "id": self.id,
            "code": self.code,
            "name": self.name,
            "level": self.level,
            "product": self.product,
            "purchase_price": money(self.purchase_price),
            "sale_price": money(self.sale_price),
            "components": components,
        })
    }
}

impl PriceItem {
    fn blank() -> Self {
        PriceItem {
            id: 0,
            code: String::new(),
            name: String::new(),
            purchase_price: None,
            sale_price: None,
            unit: DEFAULT_UNIT.into(),
            ext_ids: Vec::new(),
            active: true,
        }
    }
}

impl Bom {
    fn blank() -> Self {
        Bom {
            id: 0,
            code: String::new(),
            name: String::new(),
            level: 1,
            product: 0,
            purchase_price: None,
            sale_price: None,
            components: Vec::new(),
        }
    }
}

/// A record identifier from a path or a body.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ref {
    /// The id's text (digits; may be too large for an id).
    Id(String),
    Code(String),
    Ext(String),
}

fn parse_ref(s: &str) -> Option<Ref> {
    if let Some(code) = s.strip_prefix("code:") {
        (!code.is_empty()).then(|| Ref::Code(code.to_string()))
    } else if let Some(ext) = s.strip_prefix("ext:") {
        (!ext.is_empty()).then(|| Ref::Ext(ext.to_string()))
    } else if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        Some(Ref::Id(s.to_string()))
    } else {
        None
    }
}

impl Tenant {
    /// The id `r` names in `coll`, or the not-found message.
    fn find(&self, coll: Collection, r: &Ref) -> Result<i64, String> {
        let found = match (coll, r) {
            (_, Ref::Id(text)) => text.parse::<i64>().ok().filter(|id| match coll {
                Collection::PriceItems => self.price_items.contains_key(id),
                Collection::Boms => self.boms.contains_key(id),
            }),
            (Collection::PriceItems, Ref::Code(c)) => self
                .price_items
                .values()
                .find(|p| p.code == *c)
                .map(|p| p.id),
            (Collection::Boms, Ref::Code(c)) => {
                self.boms.values().find(|b| b.code == *c).map(|b| b.id)
            }
            (Collection::PriceItems, Ref::Ext(e)) => self
                .price_items
                .values()
                .find(|p| p.ext_ids.contains(e))
                .map(|p| p.id),
            (Collection::Boms, Ref::Ext(_)) => None,
        };
        found.ok_or_else(|| {
            let noun = coll.noun();
            match r {
                Ref::Id(t) => format!("no {noun} with id {t}"),
                Ref::Code(c) => format!("no {noun} with code {c}"),
                Ref::Ext(e) => format!("no {noun} with external id {e}"),
            }
        })
    }

    fn find_or_404(&self, coll: Collection, r: &Ref) -> Result<i64, ApiError> {
        self.find(coll, r)
            .map_err(|m| ApiError::new(StatusCode::NOT_FOUND, "not_found", m))
    }

    /// The BOMs that use price item `id`, with how.
    fn uses_of(&self, id: i64) -> Vec<(&Bom, &'static str)> {
        let mut uses = Vec::new();
        for b in self.boms.values() {
            if b.product == id {
                uses.push((b, "as its product"));
            } else if b.components.iter().any(|c| c.item == id) {
                uses.push((b, "as a component"));
            }
        }
        uses
    }
}

// ---------------------------------------------------------------------------------------------
// Decimals

/// Parses a decimal (`-12.50`, `.5`, `1e2`) into a value scaled by 10^4. Trailing zeros beyond
/// 4 decimal places are allowed; `max_whole` limits the digits before the point.
fn parse_decimal(text: &str, max_whole: usize) -> Result<i128, String> {
    let not_a_number = || Err(format!("'{}' is not a number", shorten(text)));
    let (neg, s) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if (int_part.is_empty() && frac_part.is_empty()) || !digits(int_part) || !digits(frac_part) {
        return not_a_number();
    }
    // the power of ten the digit string is multiplied by, in units of 10^-4
    let mut exponent: i64 = i64::from(PLACES);
    if let Some(e) = exp {
        let (eneg, ed) = match e.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, e.strip_prefix('+').unwrap_or(e)),
        };
        if ed.is_empty() || !digits(ed) {
            return not_a_number();
        }
        let mut x: i64 = 0;
        for b in ed.bytes() {
            x = (x * 10 + i64::from(b - b'0')).min(1_000_000);
        }
        exponent += if eneg { -x } else { x };
    }
    exponent -= i64::try_from(frac_part.len()).unwrap_or(i64::MAX / 4);
    let all = format!("{int_part}{frac_part}");
    let mut sig = all.trim_start_matches('0');
    if sig.is_empty() {
        return Ok(0);
    }
    while exponent < 0 && sig.ends_with('0') {
        sig = &sig[..sig.len() - 1];
        exponent += 1;
    }
    if exponent < 0 {
        return Err(format!(
            "'{}' has more than {PLACES} decimal places",
            shorten(text)
        ));
    }
    let len = i64::try_from(sig.len()).unwrap_or(i64::MAX / 4);
    let max = i64::try_from(max_whole).unwrap_or(0) + i64::from(PLACES);
    if len + exponent > max {
        return Err(format!(
            "'{}' is too large (at most {max_whole} digits before the point)",
            shorten(text)
        ));
    }
    let Ok(v) = sig.parse::<i128>() else {
        return not_a_number();
    };
    let v = v * 10i128.pow(u32::try_from(exponent).unwrap_or(0));
    Ok(if neg { -v } else { v })
}

/// `v` (scaled by 10^4) written with `places` (at most 4) decimals, rounded half-up.
fn format_scaled(v: i128, places: u32) -> String {
    let v = round_half_up(v, PLACES.saturating_sub(places));
    let p = 10u128.pow(places);
    let a = v.unsigned_abs();
    let sign = if v < 0 { "-" } else { "" };
    if places == 0 {
        return format!("{sign}{a}");
    }
    format!("{sign}{}.{:0width$}", a / p, a % p, width = places as usize)
}

/// Drops `digits` decimal digits, rounding half away from zero.
fn round_half_up(v: i128, digits: u32) -> i128 {
    let d = 10i128.pow(digits);
    let a = v.abs();
    let q = a / d + i128::from((a % d) * 2 >= d);
    if v < 0 { -q } else { q }
}

/// A price as written in answers: a string with 2 decimals, or null.
fn money(v: Option<i128>) -> Value {
    v.map_or(Value::Null, |v| Value::String(format_scaled(v, 2)))
}

/// The text of a number or string value, for decimals.
fn decimal_value(v: &Value, max_whole: usize) -> Option<Result<i128, String>> {
    match v {
        Value::Number(n) => Some(parse_decimal(&n.to_string(), max_whole)),
        Value::String(s) => Some(parse_decimal(s, max_whole)),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Validation

type Problem = (&'static str, String);

fn invalid_item() -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "the item is invalid",
    )
}

fn has_problem(err: &ApiError, field: &str) -> bool {
    err.details.iter().any(|(f, _, _)| f == field)
}

fn add(err: ApiError, field: &str, r: Result<(), Problem>) -> ApiError {
    match r {
        Ok(()) => err,
        Err((code, msg)) => err.field(field, code, msg),
    }
}

/// Refuses members of `body` not in `known` (`id` with its own message).
fn unknown_fields(
    mut err: ApiError,
    body: &Map<String, Value>,
    known: &[&str],
    prefix: &str,
) -> ApiError {
    for k in body.keys() {
        if known.contains(&k.as_str()) {
            continue;
        }
        let msg = if k == "id" && prefix.is_empty() {
            "id is assigned by the server and cannot be given".to_string()
        } else {
            format!("unknown field '{}'", shorten(k))
        };
        err = err.field(format!("{prefix}{k}"), "unknown_field", msg);
    }
    err
}

/// A required text of at most `max` characters.
fn required_text(v: &Value, field: &str, max: usize) -> Result<String, Problem> {
    match v {
        Value::Null => Err(("required", format!("{field} is required"))),
        Value::String(s) if s.trim().is_empty() => {
            Err(("required", format!("{field} is required")))
        }
        Value::String(s) if s.chars().count() > max => Err((
            "too_long",
            format!("{field} must be at most {max} characters"),
        )),
        Value::String(s) => Ok(s.clone()),
        other => Err((
            "invalid",
            format!("{field} must be a string, not {}", shown(other)),
        )),
    }
}

/// A price: null or a non-negative decimal.
fn price_value(v: &Value, field: &str) -> Result<Option<i128>, Problem> {
    if v.is_null() {
        return Ok(None);
    }
    match decimal_value(v, WHOLE_DIGITS) {
        None => Err((
            "invalid",
            format!("{field} must be a decimal number or null, not {}", shown(v)),
        )),
        Some(Err(e)) => Err(("invalid", format!("{field}: {e}"))),
        Some(Ok(x)) if x < 0 => Err(("invalid", format!("{field} must not be negative"))),
        Some(Ok(x)) => Ok(Some(x)),
    }
}

/// A reference to an existing price item: an id or a ref string.
fn item_ref(t: &Tenant, v: &Value, field: &str) -> Result<i64, Problem> {
    let r = match v {
        Value::Null => return Err(("required", format!("{field} is required"))),
        Value::Number(n) => match n.as_i64() {
            Some(id) => Ref::Id(id.to_string()),
            None => {
                return Err((
                    "invalid",
                    format!("{field} must be a price item id, not {}", shown(v)),
                ));
            }
        },
        Value::String(s) => parse_ref(s).ok_or_else(|| {
            (
                "invalid",
                format!("{field} must be a price item id, code:CODE or ext:SYSTEM:ID"),
            )
        })?,
        other => {
            return Err((
                "invalid",
                format!("{field} must be a price item id, not {}", shown(other)),
            ));
        }
    };
    t.find(Collection::PriceItems, &r)
        .map_err(|m| ("not_found", m))
}

/// Applies `code` and `name` from `body` and checks them: both are required, and `taken`
/// gives the message when another item already has the code.
fn code_and_name(
    mut err: ApiError,
    body: &Map<String, Value>,
    code: &mut String,
    name: &mut String,
    taken: impl Fn(&str) -> Option<String>,
) -> ApiError {
    match body.get("code").map(|v| required_text(v, "code", CODE_MAX)) {
        Some(Err((c, m))) => err = err.field("code", c, m),
        Some(Ok(s)) => *code = s,
        None => {}
    }
    if !has_problem(&err, "code") {
        if code.is_empty() {
            err = err.field("code", "required", "code is required");
        } else if let Some(msg) = taken(code) {
            err = err.field("code", "duplicate", msg);
        }
    }
    match body.get("name").map(|v| required_text(v, "name", NAME_MAX)) {
        Some(Err((c, m))) => err = err.field("name", c, m),
        Some(Ok(s)) => *name = s,
        None => {}
    }
    if !has_problem(&err, "name") && name.is_empty() {
        err = err.field("name", "required", "name is required");
    }
    err
}

const PRICE_ITEM_INPUT: &[&str] = &[
    "code",
    "name",
    "purchase_price",
    "sale_price",
    "unit",
    "ext_ids",
    "active",
];

/// Applies `body` to `item` (a blank one for a create) and checks the result; `self_id` is
/// the item's own id (uniqueness does not count it).
fn build_price_item(
    t: &Tenant,
    body: &Map<String, Value>,
    mut item: PriceItem,
    self_id: Option<i64>,
) -> Result<PriceItem, ApiError> {
    let mut err = unknown_fields(invalid_item(), body, PRICE_ITEM_INPUT, "");
    err = code_and_name(err, body, &mut item.code, &mut item.name, |code| {
        t.price_items
            .values()
            .find(|p| Some(p.id) != self_id && p.code == code)
            .map(|p| format!("code '{code}' is already used by price item {}", p.id))
    });
    if let Some(v) = body.get("purchase_price") {
        let r = price_value(v, "purchase_price").map(|p| item.purchase_price = p);
        err = add(err, "purchase_price", r);
    }
    if let Some(v) = body.get("sale_price") {
        let r = price_value(v, "sale_price").map(|p| item.sale_price = p);
        err = add(err, "sale_price", r);
    }
    if let Some(v) = body.get("unit") {
        let r = if v.is_null() {
            item.unit = DEFAULT_UNIT.into();
            Ok(())
        } else {
            required_text(v, "unit", UNIT_MAX).map(|s| item.unit = s)
        };
        err = add(err, "unit", r);
    }
    if let Some(v) = body.get("ext_ids") {
        match v {
            Value::Null => item.ext_ids.clear(),
            Value::Array(list) => {
                let mut ids: Vec<String> = Vec::new();
                for (i, e) in list.iter().enumerate() {
                    let field = format!("ext_ids[{i}]");
                    let Some(s) = e.as_str() else {
                        err = err.field(
                            field,
                            "invalid",
                            format!("an external id must be a string, not {}", shown(e)),
                        );
                        continue;
                    };
                    let well_formed = s
                        .split_once(':')
                        .is_some_and(|(sys, id)| !sys.trim().is_empty() && !id.trim().is_empty());
                    if !well_formed {
                        err = err.field(
                            field,
                            "invalid",
                            format!(
                                "'{}' is not an external id like SYSTEM:ID (e.g. SHOP:42)",
                                shorten(s)
                            ),
                        );
                    } else if s.chars().count() > EXT_ID_MAX {
                        err = err.field(
                            field,
                            "too_long",
                            format!("an external id must be at most {EXT_ID_MAX} characters"),
                        );
                    } else if ids.iter().any(|x| x == s) {
                        err = err.field(
                            field,
                            "duplicate",
                            format!("external id '{s}' is given twice"),
                        );
                    } else if let Some(other) = t
                        .price_items
                        .values()
                        .find(|p| Some(p.id) != self_id && p.ext_ids.iter().any(|x| x == s))
                    {
                        err = err.field(
                            field,
                            "duplicate",
                            format!(
                                "external id '{s}' is already used by price item {}",
                                other.id
                            ),
                        );
                    } else {
                        ids.push(s.to_string());
                    }
                }
                item.ext_ids = ids;
            }
            other => {
                err = err.field(
                    "ext_ids",
                    "invalid",
                    format!(
                        "ext_ids must be a list of strings like SHOP:42, not {}",
                        shown(other)
                    ),
                );
            }
        }
    }
    if let Some(v) = body.get("active") {
        match v {
            Value::Null => item.active = true,
            Value::Bool(b) => item.active = *b,
            other => {
                err = err.field(
                    "active",
                    "invalid",
                    format!("active must be true or false, not {}", shown(other)),
                );
            }
        }
    }
    if err.details.is_empty() {
        Ok(item)
    } else {
        Err(err)
    }
}

const BOM_INPUT: &[&str] = &[
    "code",
    "name",
    "level",
    "product",
    "purchase_price",
    "sale_price",
    "components",
];

/// Like [`build_price_item`], for a bill of materials.
fn build_bom(
    t: &Tenant,
    body: &Map<String, Value>,
    mut bom: Bom,
    self_id: Option<i64>,
) -> Result<Bom, ApiError> {
    let mut err = unknown_fields(invalid_item(), body, BOM_INPUT, "");
    err = code_and_name(err, body, &mut bom.code, &mut bom.name, |code| {
        t.boms
            .values()
            .find(|b| Some(b.id) != self_id && b.code == code)
            .map(|b| {
                format!(
                    "code '{code}' is already used by bill of materials {}",
                    b.id
                )
            })
    });
    if let Some(v) = body.get("level") {
        let r = match v {
            Value::Null => Err(("required", "level is required".to_string())),
            Value::Number(n) => match n.as_i64() {
                Some(l) if l >= 1 => {
                    bom.level = l;
                    Ok(())
                }
                _ => Err((
                    "invalid",
                    format!("level must be a whole number from 1, not {n}"),
                )),
            },
            other => Err((
                "invalid",
                format!("level must be a whole number from 1, not {}", shown(other)),
            )),
        };
        err = add(err, "level", r);
    }
    if let Some(v) = body.get("product") {
        let r = item_ref(t, v, "product").map(|id| bom.product = id);
        err = add(err, "product", r);
    }
    if let Some(v) = body.get("purchase_price") {
        let r = price_value(v, "purchase_price").map(|p| bom.purchase_price = p);
        err = add(err, "purchase_price", r);
    }
    if let Some(v) = body.get("sale_price") {
        let r = price_value(v, "sale_price").map(|p| bom.sale_price = p);
        err = add(err, "sale_price", r);
    }
    let mut components_given = false;
    if let Some(v) = body.get("components") {
        match v {
            Value::Null => bom.components.clear(),
            Value::Array(list) => {
                components_given = true;
                let mut comps = Vec::new();
                for (i, c) in list.iter().enumerate() {
                    let prefix = format!("components[{i}]");
                    let Some(o) = c.as_object() else {
                        err = err.field(
                            prefix,
                            "invalid",
                            format!(
                                "a component must be an object {{\"item\", \"quantity\"}}, not {}",
                                shown(c)
                            ),
                        );
                        continue;
                    };
                    err = unknown_fields(err, o, &["item", "quantity"], &format!("{prefix}."));
                    let item_field = format!("{prefix}.item");
                    let item = item_ref(t, o.get("item").unwrap_or(&Value::Null), &item_field);
                    let qty_field = format!("{prefix}.quantity");
                    let qty = match o.get("quantity").unwrap_or(&Value::Null) {
                        Value::Null => Err(("required", format!("{qty_field} is required"))),
                        q => match decimal_value(q, WHOLE_DIGITS) {
                            None => Err((
                                "invalid",
                                format!("{qty_field} must be a decimal number, not {}", shown(q)),
                            )),
                            Some(Err(e)) => Err(("invalid", format!("{qty_field}: {e}"))),
                            Some(Ok(x)) if x <= 0 => {
                                Err(("invalid", format!("{qty_field} must be greater than zero")))
                            }
                            Some(Ok(x)) => Ok(x),
                        },
                    };
                    match (item, qty) {
                        (Ok(item), Ok(quantity)) => comps.push(Component { item, quantity }),
                        (item, qty) => {
                            err = add(err, &item_field, item.map(|_| ()));
                            err = add(err, &qty_field, qty.map(|_| ()));
                        }
                    }
                }
                bom.components = comps;
            }
            other => {
                err = err.field(
                    "components",
                    "invalid",
                    format!(
                        "components must be a list of {{\"item\", \"quantity\"}}, not {}",
                        shown(other)
                    ),
                );
            }
        }
    }
    if !has_problem(&err, "product") {
        if bom.product == 0 {
            err = err.field("product", "required", "product is required");
        } else if let Some(i) = bom.components.iter().position(|c| c.item == bom.product) {
            // Only reported where the client can see it: in the components it gave, or at the
            // product it changed.
            let field = if components_given {
                format!("components[{i}].item")
            } else {
                "product".to_string()
            };
            let code = t
                .price_items
                .get(&bom.product)
                .map_or(String::new(), |p| p.code.clone());
            err = err.field(
                field,
                "invalid",
                format!("the product {code} cannot be a component of its own bill of materials"),
            );
        }
    }
    if err.details.is_empty() {
        Ok(bom)
    } else {
        Err(err)
    }
}

// ---------------------------------------------------------------------------------------------
// Filters

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Num(i128),
    Text(String),
    Bool(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Lte,
    Gt,
    Gte,
}

#[derive(Debug, Clone, PartialEq)]
enum Test {
    Cmp(CmpOp, Operand),
    /// Lower-cased needles.
    Like(String),
    Begins(String),
    Ends(String),
    Between(Operand, Operand),
    In(Vec<Operand>),
    IsNull,
    IsNotNull,
    IsTrue,
    IsFalse,
}

#[derive(Debug, Clone, PartialEq)]
enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Cond { field: &'static str, test: Test },
}

fn bad_filter(path: &str, msg: impl Into<String>) -> ApiError {
    let msg = msg.into();
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_filter",
        format!("{path}: {msg}"),
    )
    .field(path, "invalid", msg)
}

/// Compiles a structured filter for `coll`; `path` names it in messages (`filter.and[0]`).
fn compile(coll: Collection, v: &Value, path: &str, depth: usize) -> Result<Filter, ApiError> {
    let Some(o) = v.as_object() else {
        return Err(bad_filter(
            path,
            format!(
                "a filter must be an object with 'and', 'or', 'not' or 'field', not {}",
                shown(v)
            ),
        ));
    };
    let logic = ["and", "or", "not"]
        .into_iter()
        .find(|k| o.contains_key(*k));
    if let Some(k) = logic {
        if o.len() != 1 {
            return Err(bad_filter(
                path,
                format!("'{k}' must be the only member of its object"),
            ));
        }
        if depth >= MAX_DEPTH {
            return Err(bad_filter(
                path,
                format!("the filter is nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        let inner = o.get(k).unwrap_or(&Value::Null);
        let sub = format!("{path}.{k}");
        if k == "not" {
            return Ok(Filter::Not(Box::new(compile(
                coll,
                inner,
                &sub,
                depth + 1,
            )?)));
        }
        let Some(list) = inner.as_array() else {
            return Err(bad_filter(
                &sub,
                format!("'{k}' takes a list of filters, not {}", shown(inner)),
            ));
        };
        let parts = list
            .iter()
            .enumerate()
            .map(|(i, f)| compile(coll, f, &format!("{sub}[{i}]"), depth + 1))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(if k == "and" {
            Filter::And(parts)
        } else {
            Filter::Or(parts)
        });
    }
    if !o.contains_key("field") {
        return Err(bad_filter(
            path,
            "a filter must be an object with 'and', 'or', 'not' or 'field'",
        ));
    }
    compile_condition(coll, o, path)
}

fn compile_condition(
    coll: Collection,
    o: &Map<String, Value>,
    path: &str,
) -> Result<Filter, ApiError> {
    let name = match o.get("field") {
        Some(Value::String(s)) => s.as_str(),
        other => {
            return Err(bad_filter(
                &format!("{path}.field"),
                format!(
                    "'field' must be a field name, not {}",
                    shown(other.unwrap_or(&Value::Null))
                ),
            ));
        }
    };
    let Some((field, kind)) = coll.field(name) else {
        let msg = format!(
            "{} have no field '{}' (fields: {})",
            coll.plural(),
            shorten(name),
            coll.field_list()
        );
        return Err(
            ApiError::new(StatusCode::BAD_REQUEST, "unknown_field", msg.clone()).field(
                name,
                "unknown_field",
                msg,
            ),
        );
    };
    let op = match o.get("op") {
        Some(Value::String(s)) => s.as_str(),
        None => {
            return Err(bad_filter(
                path,
                format!("the condition on '{field}' has no 'op'"),
            ));
        }
        Some(other) => {
            return Err(bad_filter(
                &format!("{path}.op"),
                format!("'op' must be an operator name, not {}", shown(other)),
            ));
        }
    };
    let operands: &[&str] = match op {
        "eq" | "ne" | "lt" | "lte" | "gt" | "gte" | "like" | "begins" | "ends" => &["value"],
        "between" => &["from", "to"],
        "in" => &["values"],
        "is_null" | "is_not_null" | "is_true" | "is_false" => &[],
        _ => {
            let msg = format!(
                "operator '{}' is not supported (supported: {})",
                shorten(op),
                OPS.join(", ")
            );
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_operator",
                msg.clone(),
            )
            .field(field, "unsupported_operator", msg));
        }
    };
    for k in o.keys() {
        if k != "field" && k != "op" && !operands.contains(&k.as_str()) {
            let takes = if operands.is_empty() {
                "no operands".to_string()
            } else {
                operands.join(", ")
            };
            return Err(bad_filter(
                path,
                format!("unexpected member '{}' ({op} takes {takes})", shorten(k)),
            ));
        }
    }
    let get = |k: &str| -> Result<&Value, ApiError> {
        o.get(k)
            .ok_or_else(|| bad_filter(path, format!("{op} needs '{k}'")))
    };
    let value = |k: &str| -> Result<Operand, ApiError> {
        operand(kind, field, get(k)?, &format!("{path}.{k}"))
    };
    let ordered = |what: &str| -> Result<(), ApiError> {
        if kind == Kind::Bool {
            Err(bad_filter(
                path,
                format!("{what} does not apply to the boolean field '{field}'"),
            ))
        } else {
            Ok(())
        }
    };
    let needle = |k: &str| -> Result<String, ApiError> {
        if kind != Kind::Text {
            return Err(bad_filter(
                path,
                format!("{op} applies to text fields; '{field}' is {}", kind.name()),
            ));
        }
        match value(k)? {
            Operand::Text(s) => Ok(s.to_lowercase()),
            _ => Err(bad_filter(path, format!("{op} needs a text value"))),
        }
    };
    let test = match op {
        "eq" => Test::Cmp(CmpOp::Eq, value("value")?),
        "ne" => Test::Cmp(CmpOp::Ne, value("value")?),
        "lt" | "lte" | "gt" | "gte" => {
            ordered(op)?;
            let c = match op {
                "lt" => CmpOp::Lt,
                "lte" => CmpOp::Lte,
                "gt" => CmpOp::Gt,
                _ => CmpOp::Gte,
            };
            Test::Cmp(c, value("value")?)
        }
        "like" => Test::Like(needle("value")?),
        "begins" => Test::Begins(needle("value")?),
        "ends" => Test::Ends(needle("value")?),
        "between" => {
            ordered(op)?;
            Test::Between(value("from")?, value("to")?)
        }
        "in" => {
            let list = get("values")?;
            let Some(items) = list.as_array() else {
                return Err(bad_filter(
                    &format!("{path}.values"),
                    format!("'values' must be a list, not {}", shown(list)),
                ));
            };
            Test::In(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| operand(kind, field, v, &format!("{path}.values[{i}]")))
                    .collect::<Result<_, _>>()?,
            )
        }
        "is_null" => Test::IsNull,
        "is_not_null" => Test::IsNotNull,
        _ => {
            if kind != Kind::Bool {
                return Err(bad_filter(
                    path,
                    format!(
                        "{op} applies to boolean fields; '{field}' is {}",
                        kind.name()
                    ),
                ));
            }
            if op == "is_true" {
                Test::IsTrue
            } else {
                Test::IsFalse
            }
        }
    };
    Ok(Filter::Cond { field, test })
}

/// A filter value for a field of `kind`.
fn operand(kind: Kind, field: &str, v: &Value, path: &str) -> Result<Operand, ApiError> {
    match (kind, v) {
        (_, Value::Null) => Err(bad_filter(
            path,
            "a value must not be null (use is_null or is_not_null)",
        )),
        (Kind::Num, Value::Number(_) | Value::String(_)) => {
            match decimal_value(v, FILTER_WHOLE_DIGITS) {
                Some(Ok(x)) => Ok(Operand::Num(x)),
                Some(Err(e)) => Err(bad_filter(path, format!("'{field}' is a number: {e}"))),
                None => Err(bad_filter(path, format!("'{field}' is a number"))),
            }
        }
        (Kind::Text, Value::String(s)) => Ok(Operand::Text(s.clone())),
        (Kind::Text, Value::Number(n)) => Ok(Operand::Text(n.to_string())),
        (Kind::Bool, Value::Bool(b)) => Ok(Operand::Bool(*b)),
        (_, other) => Err(bad_filter(
            path,
            format!(
                "'{field}' is {}; {} does not compare with it",
                kind.name(),
                shown(other)
            ),
        )),
    }
}

/// Compares a field's value with an operand of its kind; `None` for null.
fn compare(a: Val<'_>, b: &Operand) -> Option<Ordering> {
    match (a, b) {
        (Val::Num(x), Operand::Num(y)) => Some(x.cmp(y)),
        (Val::Text(x), Operand::Text(y)) => Some(x.cmp(y.as_str())),
        (Val::Bool(x), Operand::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

impl Filter {
    fn matches<R: Record>(&self, r: &R) -> bool {
        match self {
            Filter::And(fs) => fs.iter().all(|f| f.matches(r)),
            Filter::Or(fs) => fs.iter().any(|f| f.matches(r)),
            Filter::Not(f) => !f.matches(r),
            Filter::Cond { field, test } => test.matches(r.field(field)),
        }
    }
}

impl Test {
    fn matches(&self, v: Val<'_>) -> bool {
        let text = |f: &dyn Fn(&str) -> bool| match v {
            Val::Text(s) => f(&s.to_lowercase()),
            _ => false,
        };
        match self {
            Test::Cmp(op, x) => match compare(v, x) {
                None => *op == CmpOp::Ne,
                Some(o) => match op {
                    CmpOp::Eq => o.is_eq(),
                    CmpOp::Ne => o.is_ne(),
                    CmpOp::Lt => o.is_lt(),
                    CmpOp::Lte => o.is_le(),
                    CmpOp::Gt => o.is_gt(),
                    CmpOp::Gte => o.is_ge(),
                },
            },
            Test::Like(n) => text(&|s| s.contains(n.as_str())),
            Test::Begins(n) => text(&|s| s.starts_with(n.as_str())),
            Test::Ends(n) => text(&|s| s.ends_with(n.as_str())),
            Test::Between(a, b) => {
                compare(v, a).is_some_and(Ordering::is_ge)
                    && compare(v, b).is_some_and(Ordering::is_le)
            }
            Test::In(xs) => xs
                .iter()
                .any(|x| compare(v, x).is_some_and(Ordering::is_eq)),
            Test::IsNull => v == Val::Null,
            Test::IsNotNull => v != Val::Null,
            Test::IsTrue => v == Val::Bool(true),
            Test::IsFalse => v == Val::Bool(false),
        }
    }
}

/// Orders field values: null first, then by value.
fn order_values(a: Val<'_>, b: Val<'_>) -> Ordering {
    match (a, b) {
        (Val::Null, Val::Null) => Ordering::Equal,
        (Val::Null, _) => Ordering::Less,
        (_, Val::Null) => Ordering::Greater,
        (Val::Num(x), Val::Num(y)) => x.cmp(&y),
        (Val::Text(x), Val::Text(y)) => x.cmp(y),
        (Val::Bool(x), Val::Bool(y)) => x.cmp(&y),
        _ => Ordering::Equal,
    }
}

/// A parsed `:search` body.
#[derive(Debug)]
struct Search {
    filter: Option<Filter>,
    start: usize,
    limit: usize,
    count: bool,
    /// (field, descending)
    /// Keys in order of precedence: (field, descending).
    order: Vec<(&'static str, bool)>,
}

fn bad_parameter(field: &str, code: &'static str, msg: impl Into<String>) -> ApiError {
    let msg = msg.into();
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_parameter", msg.clone()).field(field, code, msg)
}

fn parse_search(coll: Collection, body: &[u8]) -> Result<Search, ApiError> {
    let o = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        parse_object(body)?
    };
    for k in o.keys() {
        if !["filter", "start", "limit", "count", "order"].contains(&k.as_str()) {
            return Err(bad_parameter(
                k,
                "unknown_field",
                format!(
                    "unknown search parameter '{}' (known: filter, start, limit, count, order)",
                    shorten(k)
                ),
            ));
        }
    }
    let filter = match o.get("filter") {
        None | Some(Value::Null) => None,
        Some(f) => Some(compile(coll, f, "filter", 0)?),
    };
    let whole = |k: &str, default: usize| -> Result<usize, ApiError> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| {
                    bad_parameter(
                        k,
                        "invalid",
                        format!("{k} must be a whole number from 0, not {}", shown(v)),
                    )
                }),
        }
    };
    let start = whole("start", 0)?;
    let limit = whole("limit", DEFAULT_LIMIT)?;
    if limit > MAX_LIMIT {
        return Err(bad_parameter(
            "limit",
            "invalid",
            format!("limit must be at most {MAX_LIMIT} (0 means all), not {limit}"),
        ));
    }
    let count = match o.get("count") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => {
            return Err(bad_parameter(
                "count",
                "invalid",
                format!("count must be true or false, not {}", shown(v)),
            ));
        }
    };
    let keys: Vec<&str> = match o.get("order") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            items.iter().filter_map(Value::as_str).collect()
        }
        Some(v) => {
            return Err(bad_parameter(
                "order",
                "invalid",
                format!(
                    "order must be a field name or a list of them, not {}",
                    shown(v)
                ),
            ));
        }
    };
    let mut order = Vec::with_capacity(keys.len());
    for s in keys {
        let (name, desc) = match s.strip_prefix('-') {
            Some(rest) => (rest, true),
            None => (s, false),
        };
        let Some((field, _)) = coll.field(name) else {
            let msg = format!(
                "cannot order by '{}': {} have no such field (fields: {})",
                shorten(s),
                coll.plural(),
                coll.field_list()
            );
            return Err(
                ApiError::new(StatusCode::BAD_REQUEST, "unknown_field", msg.clone()).field(
                    "order",
                    "unknown_field",
                    msg,
                ),
            );
        };
        order.push((field, desc));
    }
    Ok(Search {
        filter,
        start,
        limit,
        count,
        order,
    })
}

fn run_search<R: Record>(items: &BTreeMap<i64, R>, s: &Search) -> Value {
    let mut hits: Vec<&R> = items
        .values()
        .filter(|r| s.filter.as_ref().is_none_or(|f| f.matches(*r)))
        .collect();
    if !s.order.is_empty() {
        hits.sort_by(|a, b| {
            s.order
                .iter()
                .map(|&(field, desc)| {
                    let o = order_values(a.field(field), b.field(field));
                    if desc { o.reverse() } else { o }
                })
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        });
    }
    let total = hits.len();
    let take = if s.limit == 0 { usize::MAX } else { s.limit };
    let page: Vec<Value> = hits
        .iter()
        .skip(s.start)
        .take(take)
        .map(|r| r.view())
        .collect();
    let mut out = json!({ "items": page });
    if s.count {
        out["total"] = json!(total);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Requests

/// An answer of [`FlexiApi::route`].
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    body: Value,
    allow: Option<&'static str>,
}

impl Reply {
    fn new(status: StatusCode, body: Value) -> Self {
        Reply {
            status,
            body,
            allow: None,
        }
    }

    fn not_allowed(method: &Method, path: &str, allow: &'static str) -> Self {
        let e = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not allowed on {path} (allowed: {allow})"),
        );
        Reply {
            status: e.status,
            body: e.body(),
            allow: Some(allow),
        }
    }
}

impl From<ApiError> for Reply {
    fn from(e: ApiError) -> Self {
        Reply::new(e.status, e.body())
    }
}

fn not_found_path(path: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no resource at {}", shorten(path)),
    )
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(other) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body must be a JSON object, not {}", shown(&other)),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid JSON: {e}"),
        )),
    }
}

/// Query parameters the API reads.
#[derive(Debug, Default)]
struct Query {
    dry_run: bool,
    price: Option<String>,
}

fn parse_query(query: &str) -> Result<Query, ApiError> {
    let mut q = Query::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = crate::percent_decode(k, true).unwrap_or_default();
        let v = crate::percent_decode(v, true)
            .ok_or_else(|| bad_parameter(&k, "invalid", format!("{k} is not well encoded")))?;
        match k.as_str() {
            "dry_run" => {
                q.dry_run = match v.as_str() {
                    "true" | "1" | "" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(bad_parameter(
                            "dry_run",
                            "invalid",
                            format!("dry_run must be true or false, not '{}'", shorten(&v)),
                        ));
                    }
                }
            }
            "price" => q.price = Some(v),
            _ => {}
        }
    }
    Ok(q)
}

/// Which price a recalculation sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Purchase,
    Sale,
}

/// The price of `bom` from its components' current prices (one level), rounded half-up to
/// 2 places, scaled by 10^4.
fn recalculated(t: &Tenant, bom: &Bom, which: Which) -> Option<i128> {
    let mut sum: i128 = 0;
    for c in &bom.components {
        let p = t
            .price_items
            .get(&c.item)
            .and_then(|p| match which {
                Which::Purchase => p.purchase_price,
                Which::Sale => p.sale_price,
            })
            .unwrap_or(0);
        sum = sum.checked_add(p.checked_mul(c.quantity)?)?;
    }
    // sum is scaled by 10^8: keep 2 places, then back to 10^4
    let v = round_half_up(sum, 2 * PLACES - 2).checked_mul(100)?;
    (v < 10i128.pow(WHOLE_DIGITS as u32 + PLACES)).then_some(v)
}

impl FlexiApi {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::from_seed(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Builds the backend from the text of a seed file.
    fn from_seed(text: &str) -> Result<Self, String> {
        let seed: Seed = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut tenants = BTreeMap::new();
        for (name, st) in seed.tenants {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(format!(
                    "tenants.{name}: a tenant name is letters, digits, '-' and '_'"
                ));
            }
            let mut t = Tenant::default();
            for (i, raw) in st.price_items.iter().enumerate() {
                let at = format!("tenants.{name}.price_items[{i}]");
                let (id, body) = seed_id(raw, &at, |id| t.price_items.contains_key(&id))?;
                let mut item = build_price_item(&t, &body, PriceItem::blank(), Some(id))
                    .map_err(|e| seed_error(&at, &e))?;
                item.id = id;
                t.price_items.insert(id, item);
            }
            for (i, raw) in st.boms.iter().enumerate() {
                let at = format!("tenants.{name}.boms[{i}]");
                let (id, body) = seed_id(raw, &at, |id| t.boms.contains_key(&id))?;
                let mut bom = build_bom(&t, &body, Bom::blank(), Some(id))
                    .map_err(|e| seed_error(&at, &e))?;
                bom.id = id;
                t.boms.insert(id, bom);
            }
            t.next_price_item = t.price_items.keys().next_back().map_or(1, |k| k + 1);
            t.next_bom = t.boms.keys().next_back().map_or(1, |k| k + 1);
            tenants.insert(name, t);
        }
        Ok(FlexiApi {
            state: Mutex::new(State {
                tenants,
                requests: 0,
            }),
        })
    }

    pub async fn handle(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "the request body is larger than 4 MiB",
                )
                .into_response();
            }
            Err(e) => {
                return ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_json",
                    format!("the request body could not be read: {e}"),
                )
                .into_response();
            }
        };
        let reply = self.route(&method, &path, &query, &body);
        let mut resp = json_response(reply.status, &reply.body);
        if let Some(allow) = reply.allow {
            resp.headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static(allow));
        }
        resp
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answers a request (no socket needed).
    fn route(&self, method: &Method, path: &str, query: &str, body: &[u8]) -> Reply {
        let segs: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
        match segs.as_slice() {
            ["_reference", "stats"] => {
                if method != Method::GET {
                    return Reply::not_allowed(method, path, "GET");
                }
                Reply::new(StatusCode::OK, json!({"requests": self.lock().requests}))
            }
            ["_reference", "items", tenant, coll] => {
                if method != Method::GET {
                    return Reply::not_allowed(method, path, "GET");
                }
                self.all_items(tenant, coll, path)
                    .unwrap_or_else(Reply::from)
            }
            ["v1", rest @ ..] => {
                self.lock().requests += 1;
                self.api(method, path, rest, query, body)
                    .unwrap_or_else(Reply::from)
            }
            _ => not_found_path(path).into(),
        }
    }

    fn all_items(&self, tenant: &str, coll: &str, path: &str) -> Result<Reply, ApiError> {
        let coll = Collection::parse(coll).ok_or_else(|| not_found_path(path))?;
        let tenant = crate::percent_decode(tenant, false).ok_or_else(|| not_found_path(path))?;
        let st = self.lock();
        let t = tenant_of(&st, &tenant)?;
        let items: Vec<Value> = match coll {
            Collection::PriceItems => t.price_items.values().map(Record::view).collect(),
            Collection::Boms => t.boms.values().map(Record::view).collect(),
        };
        Ok(Reply::new(StatusCode::OK, json!({ "items": items })))
    }

    fn api(
        &self,
        method: &Method,
        path: &str,
        rest: &[&str],
        query: &str,
        body: &[u8],
    ) -> Result<Reply, ApiError> {
        let decode = |s: &str| {
            crate::percent_decode(s, false)
                .filter(|d| !d.is_empty())
                .ok_or_else(|| not_found_path(path))
        };
        match rest {
            [tenant, last] => {
                let (coll, action) = match last.split_once(':') {
                    Some((c, a)) => (c, Some(a)),
                    None => (*last, None),
                };
                let coll = Collection::parse(coll).ok_or_else(|| not_found_path(path))?;
                match action {
                    None | Some("search") if method != Method::POST => {
                        Ok(Reply::not_allowed(method, path, "POST"))
                    }
                    None => self.create(&decode(tenant)?, coll, &parse_query(query)?, body),
                    Some("search") => self.search(&decode(tenant)?, coll, body),
                    Some(_) => Err(not_found_path(path)),
                }
            }
            [tenant, coll, raw_ref] => {
                let coll = Collection::parse(coll).ok_or_else(|| not_found_path(path))?;
                if let Some(r) = raw_ref.strip_suffix(":recalculate") {
                    if coll != Collection::Boms {
                        return Err(not_found_path(path));
                    }
                    if method != Method::POST {
                        return Ok(Reply::not_allowed(method, path, "POST"));
                    }
                    let r = path_ref(&decode(r)?)?;
                    return self.recalculate(&decode(tenant)?, &r, &parse_query(query)?);
                }
                let r = decode(raw_ref)?;
                if ![Method::GET, Method::PATCH, Method::DELETE].contains(method) {
                    return Ok(Reply::not_allowed(method, path, "GET, PATCH, DELETE"));
                }
                let tenant = decode(tenant)?;
                let q = parse_query(query)?;
                let r = path_ref(&r)?;
                match *method {
                    Method::GET => self.get(&tenant, coll, &r),
                    Method::PATCH => self.patch(&tenant, coll, &r, &q, body),
                    _ => self.delete(&tenant, coll, &r, &q),
                }
            }
            _ => Err(not_found_path(path)),
        }
    }

    fn search(&self, tenant: &str, coll: Collection, body: &[u8]) -> Result<Reply, ApiError> {
        let st = self.lock();
        let t = tenant_of(&st, tenant)?;
        let s = parse_search(coll, body)?;
        let out = match coll {
            Collection::PriceItems => run_search(&t.price_items, &s),
            Collection::Boms => run_search(&t.boms, &s),
        };
        Ok(Reply::new(StatusCode::OK, out))
    }

    fn get(&self, tenant: &str, coll: Collection, r: &Ref) -> Result<Reply, ApiError> {
        let st = self.lock();
        let t = tenant_of(&st, tenant)?;
        let id = t.find_or_404(coll, r)?;
        let item = match coll {
            Collection::PriceItems => t.price_items.get(&id).map(Record::view),
            Collection::Boms => t.boms.get(&id).map(Record::view),
        };
        Ok(Reply::new(StatusCode::OK, json!({ "item": item })))
    }

    fn create(
        &self,
        tenant: &str,
        coll: Collection,
        q: &Query,
        body: &[u8],
    ) -> Result<Reply, ApiError> {
        let mut st = self.lock();
        let t = tenant_mut(&mut st, tenant)?;
        let body = parse_object(body)?;
        let mut view = match coll {
            Collection::PriceItems => {
                let mut item = build_price_item(t, &body, PriceItem::blank(), None)?;
                if !q.dry_run {
                    item.id = t.next_price_item;
                    t.next_price_item += 1;
                    t.price_items.insert(item.id, item.clone());
                }
                item.view()
            }
            Collection::Boms => {
                let mut bom = build_bom(t, &body, Bom::blank(), None)?;
                if !q.dry_run {
                    bom.id = t.next_bom;
                    t.next_bom += 1;
                    t.boms.insert(bom.id, bom.clone());
                }
                bom.view()
            }
        };
        if q.dry_run {
            view["id"] = Value::Null;
            return Ok(Reply::new(
                StatusCode::OK,
                json!({"item": view, "dry_run": true}),
            ));
        }
        Ok(Reply::new(StatusCode::CREATED, json!({ "item": view })))
    }

    fn patch(
        &self,
        tenant: &str,
        coll: Collection,
        r: &Ref,
        q: &Query,
        body: &[u8],
    ) -> Result<Reply, ApiError> {
        let mut st = self.lock();
        let t = tenant_mut(&mut st, tenant)?;
        let id = t.find_or_404(coll, r)?;
        let body = parse_object(body)?;
        let view = match coll {
            Collection::PriceItems => {
                let base = t
                    .price_items
                    .get(&id)
                    .cloned()
                    .unwrap_or_else(PriceItem::blank);
                let item = build_price_item(t, &body, base, Some(id))?;
                let view = item.view();
                if !q.dry_run {
                    t.price_items.insert(id, item);
                }
                view
            }
            Collection::Boms => {
                let base = t.boms.get(&id).cloned().unwrap_or_else(Bom::blank);
                let bom = build_bom(t, &body, base, Some(id))?;
                let view = bom.view();
                if !q.dry_run {
                    t.boms.insert(id, bom);
                }
                view
            }
        };
        let mut out = json!({ "item": view });
        if q.dry_run {
            out["dry_run"] = Value::Bool(true);
        }
        Ok(Reply::new(StatusCode::OK, out))
    }

    fn delete(
        &self,
        tenant: &str,
        coll: Collection,
        r: &Ref,
        q: &Query,
    ) -> Result<Reply, ApiError> {
        let mut st = self.lock();
        let t = tenant_mut(&mut st, tenant)?;
        let id = t.find_or_404(coll, r)?;
        if coll == Collection::PriceItems {
            let uses = t.uses_of(id);
            if !uses.is_empty() {
                let code = t.price_items.get(&id).map_or("", |p| p.code.as_str());
                let codes: Vec<&str> = uses.iter().map(|(b, _)| b.code.as_str()).collect();
                let mut e = ApiError::new(
                    StatusCode::CONFLICT,
                    "in_use",
                    format!(
                        "price item {id} ({code}) is used by bill of materials {}",
                        codes.join(", ")
                    ),
                );
                for (b, how) in &uses {
                    e = e.field(
                        "id",
                        "in_use",
                        format!("used by bill of materials {} ({}) {how}", b.code, b.id),
                    );
                }
                return Err(e);
            }
        }
        if !q.dry_run {
            if coll == Collection::PriceItems {
                t.price_items.remove(&id);
            } else {
                t.boms.remove(&id);
            }
        }
        let mut out = json!({"deleted": {"id": id}});
        if q.dry_run {
            out["dry_run"] = Value::Bool(true);
        }
        Ok(Reply::new(StatusCode::OK, out))
    }

    fn recalculate(&self, tenant: &str, r: &Ref, q: &Query) -> Result<Reply, ApiError> {
        let mut st = self.lock();
        let t = tenant_mut(&mut st, tenant)?;
        let which = match q.price.as_deref() {
            Some("purchase") => Which::Purchase,
            Some("sale") => Which::Sale,
            None => {
                return Err(bad_parameter(
                    "price",
                    "required",
                    "the price to recalculate is required: price=purchase or price=sale",
                ));
            }
            Some(other) => {
                return Err(bad_parameter(
                    "price",
                    "invalid",
                    format!("price must be purchase or sale, not '{}'", shorten(other)),
                ));
            }
        };
        let id = t.find_or_404(Collection::Boms, r)?;
        let mut bom = t.boms.get(&id).cloned().unwrap_or_else(Bom::blank);
        let new = recalculated(t, &bom, which).ok_or_else(|| {
            invalid_item().field(
                "components",
                "invalid",
                format!("the recalculated price is larger than {WHOLE_DIGITS} digits"),
            )
        })?;
        let slot = match which {
            Which::Purchase => &mut bom.purchase_price,
            Which::Sale => &mut bom.sale_price,
        };
        let previous = money(*slot);
        *slot = Some(new);
        let view = bom.view();
        if !q.dry_run {
            if let Some(p) = t.price_items.get_mut(&bom.product) {
                match which {
                    Which::Purchase => p.purchase_price = Some(new),
                    Which::Sale => p.sale_price = Some(new),
                }
            }
            t.boms.insert(id, bom);
        }
        let mut out = json!({"item": view, "previous": previous});
        if q.dry_run {
            out["dry_run"] = Value::Bool(true);
        }
        Ok(Reply::new(StatusCode::OK, out))
    }
}

fn unknown_tenant(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_tenant",
        format!("no tenant '{}'", shorten(name)),
    )
}

fn tenant_of<'a>(st: &'a State, name: &str) -> Result<&'a Tenant, ApiError> {
    st.tenants.get(name).ok_or_else(|| unknown_tenant(name))
}

fn tenant_mut<'a>(st: &'a mut State, name: &str) -> Result<&'a mut Tenant, ApiError> {
    st.tenants.get_mut(name).ok_or_else(|| unknown_tenant(name))
}

/// A ref from a path: malformed ones are a 400.
fn path_ref(s: &str) -> Result<Ref, ApiError> {
    parse_ref(s).ok_or_else(|| {
        bad_parameter(
            "ref",
            "invalid",
            format!(
                "'{}' is not an identifier: use an id (123), code:CODE or ext:SYSTEM:ID",
                shorten(s)
            ),
        )
    })
}

/// Splits a seed item into its id and the rest.
fn seed_id(
    raw: &Map<String, Value>,
    at: &str,
    taken: impl Fn(i64) -> bool,
) -> Result<(i64, Map<String, Value>), String> {
    let id = raw
        .get("id")
        .and_then(Value::as_i64)
        .filter(|id| (1..=MAX_ID).contains(id))
        .ok_or_else(|| format!("{at}: id must be a whole number from 1 to {MAX_ID}"))?;
    if taken(id) {
        return Err(format!("{at}: id {id} is used twice"));
    }
    let mut body = raw.clone();
    body.remove("id");
    Ok((id, body))
}

fn seed_error(at: &str, e: &ApiError) -> String {
    let problems: Vec<String> = e
        .details
        .iter()
        .map(|(f, _, m)| format!("{at}.{f}: {m}"))
        .collect();
    problems.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/reference/flexi.json")
    }

    fn api() -> FlexiApi {
        FlexiApi::load(&fixture()).expect("fixture loads")
    }

    fn call(api: &FlexiApi, method: Method, target: &str, body: &str) -> Reply {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        api.route(&method, path, query, body.as_bytes())
    }

    fn ok(api: &FlexiApi, method: Method, target: &str, body: &str) -> Value {
        let r = call(api, method.clone(), target, body);
        assert!(
            r.status.is_success(),
            "{method} {target} {body}: {} {}",
            r.status,
            r.body
        );
        r.body
    }

    /// The status and error code of a failed call.
    fn fails(api: &FlexiApi, method: Method, target: &str, body: &str) -> (u16, Value) {
        let r = call(api, method, target, body);
        assert!(!r.status.is_success(), "{target} {body}: {}", r.body);
        (r.status.as_u16(), r.body["error"].clone())
    }

    fn search(api: &FlexiApi, coll: &str, body: Value) -> Value {
        ok(
            api,
            Method::POST,
            &format!("/v1/demo/{coll}:search"),
            &body.to_string(),
        )
    }

    /// The ids of the price items matching `filter` (all of them, in id order).
    fn ids(api: &FlexiApi, filter: Value) -> Vec<i64> {
        ids_of(&search(
            api,
            "price-items",
            json!({"filter": filter, "limit": 0}),
        ))
    }

    fn ids_of(v: &Value) -> Vec<i64> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_i64().unwrap())
            .collect()
    }

    fn cond(field: &str, op: &str, value: Value) -> Value {
        json!({"field": field, "op": op, "value": value})
    }

    fn item(api: &FlexiApi, coll: &str, r: &str) -> Value {
        ok(api, Method::GET, &format!("/v1/demo/{coll}/{r}"), "")["item"].clone()
    }

    fn all(api: &FlexiApi, tenant: &str, coll: &str) -> Value {
        ok(
            api,
            Method::GET,
            &format!("/_reference/items/{tenant}/{coll}"),
            "",
        )["items"]
            .clone()
    }

    #[test]
    fn the_fixture_loads() {
        let api = api();
        let st = api.lock();
        let demo = &st.tenants["demo"];
        assert_eq!(
            demo.price_items.keys().copied().collect::<Vec<_>>(),
            (1..=12).collect::<Vec<_>>()
        );
        assert_eq!(
            demo.boms.keys().copied().collect::<Vec<_>>(),
            [123, 124, 125]
        );
        assert_eq!((demo.next_price_item, demo.next_bom), (13, 126));
        assert_eq!(demo.boms[&123].level, 1);
        assert_eq!(demo.boms[&125].level, 2);
        let test = &st.tenants["test"];
        assert_eq!(test.price_items.len(), 2);
        assert_eq!((test.next_price_item, test.next_bom), (3, 1));
        drop(st);
        assert_eq!(super::super::check("flexi", &fixture()), Ok(()));
        assert!(super::super::KINDS.contains(&"flexi"));
    }

    #[test]
    fn items_are_written_with_exact_prices() {
        let api = api();
        assert_eq!(
            item(&api, "price-items", "1"),
            json!({"id": 1, "code": "DESKA-DUB", "name": "Dubová deska 2000×800",
                   "purchase_price": "1450.00", "sale_price": "2100.00", "unit": "ks",
                   "ext_ids": ["SHOP:101"], "active": true})
        );
        let bom = item(&api, "boms", "123");
        assert_eq!(bom["code"], "KUS-STUL-DUB");
        assert_eq!(bom["level"], 1);
        assert_eq!(bom["product"], 5);
        assert_eq!(bom["purchase_price"], "2300.00");
        assert_eq!(bom["sale_price"], Value::Null);
        assert_eq!(
            bom["components"][3],
            json!({"item": 4, "quantity": "0.1250"})
        );
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(parse_decimal("12.5", 12), Ok(125_000));
        assert_eq!(parse_decimal("12.50000", 12), Ok(125_000));
        assert_eq!(parse_decimal("-0.0001", 12), Ok(-1));
        assert_eq!(parse_decimal(".5", 12), Ok(5_000));
        assert_eq!(parse_decimal("1e2", 12), Ok(1_000_000));
        assert_eq!(parse_decimal("15E-4", 12), Ok(15));
        assert_eq!(parse_decimal("0e99999999", 12), Ok(0));
        assert_eq!(
            parse_decimal("999999999999.9999", 12),
            Ok(9_999_999_999_999_999)
        );
        assert!(
            parse_decimal("1.00001", 12)
                .unwrap_err()
                .contains("more than 4")
        );
        assert!(
            parse_decimal("1e-5", 12)
                .unwrap_err()
                .contains("more than 4")
        );
        assert!(
            parse_decimal("1000000000000", 12)
                .unwrap_err()
                .contains("too large")
        );
        assert!(
            parse_decimal("1e99999999999", 12)
                .unwrap_err()
                .contains("too large")
        );
        for bad in [
            "", "-", ".", "1.2.3", "1,5", " 1", "1e", "abc", "0x10", "１",
        ] {
            assert!(parse_decimal(bad, 12).is_err(), "{bad}");
        }
        assert_eq!(format_scaled(125_000, 2), "12.50");
        assert_eq!(format_scaled(125_050, 2), "12.51");
        assert_eq!(format_scaled(125_049, 2), "12.50");
        assert_eq!(format_scaled(-125_050, 2), "-12.51");
        assert_eq!(format_scaled(1_250, 4), "0.1250");
        assert_eq!(format_scaled(0, 2), "0.00");
    }

    #[test]
    fn search_with_each_operator() {
        let api = api();
        assert_eq!(ids(&api, cond("code", "eq", json!("ZIDLE"))), [6]);
        assert_eq!(
            ids(&api, cond("code", "eq", json!("zidle"))),
            [] as [i64; 0]
        );
        assert_eq!(ids(&api, cond("id", "eq", json!("7"))), [7]);
        assert_eq!(ids(&api, cond("purchase_price", "eq", json!(189.5))), [2]);
        assert_eq!(
            ids(&api, cond("purchase_price", "eq", json!("189.5000"))),
            [2]
        );
        // ne matches nulls too
        assert_eq!(
            ids(&api, cond("sale_price", "ne", json!("2100"))),
            [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
        );
        assert_eq!(ids(&api, cond("purchase_price", "lt", json!(1.25))), [12]);
        assert_eq!(
            ids(&api, cond("purchase_price", "lte", json!(1.25))),
            [3, 12]
        );
        assert_eq!(ids(&api, cond("purchase_price", "gt", json!(1890))), [5]);
        assert_eq!(
            ids(&api, cond("purchase_price", "gte", json!(1890))),
            [5, 8]
        );
        assert_eq!(ids(&api, cond("id", "gt", json!(10.5))), [11, 12]);
        assert_eq!(ids(&api, cond("code", "lt", json!("B"))), [7, 8, 9]);
        assert_eq!(ids(&api, cond("name", "like", json!("DUB"))), [1, 5, 6]);
        assert_eq!(ids(&api, cond("name", "like", json!("šroub"))), [3, 8]);
        // the Flexi example: nazev begins 'A'
        assert_eq!(ids(&api, cond("name", "begins", json!("A"))), [7, 8, 9]);
        assert_eq!(ids(&api, cond("name", "begins", json!("a"))), [7, 8, 9]);
        assert_eq!(ids(&api, cond("code", "ends", json!("-m6"))), [3, 12]);
        assert_eq!(ids(&api, cond("code", "like", json!(6))), [3, 12]);
        assert_eq!(
            ids(
                &api,
                json!({"field": "sale_price", "op": "between", "from": "279", "to": 455})
            ),
            [2, 7, 11]
        );
        assert_eq!(
            ids(
                &api,
                json!({"field": "code", "op": "in", "values": ["LEPIDLO", "ZIDLE", "NIC"]})
            ),
            [4, 6]
        );
        assert_eq!(
            ids(
                &api,
                json!({"field": "id", "op": "in", "values": [1, "12", 99]})
            ),
            [1, 12]
        );
        assert_eq!(
            ids(&api, json!({"field": "id", "op": "in", "values": []})),
            [] as [i64; 0]
        );
        assert_eq!(
            ids(&api, json!({"field": "sale_price", "op": "is_null"})),
            [9, 10, 12]
        );
        assert_eq!(
            ids(
                &api,
                json!({"field": "purchase_price", "op": "is_not_null"})
            )
            .len(),
            11
        );
        assert_eq!(ids(&api, json!({"field": "active", "op": "is_false"})), [8]);
        assert_eq!(
            ids(&api, json!({"field": "active", "op": "is_true"})).len(),
            11
        );
        assert_eq!(ids(&api, cond("active", "eq", json!(false))), [8]);
        assert_eq!(ids(&api, cond("unit", "eq", json!("l"))), [4, 11]);
        // null only matches is_null and ne
        for op in ["eq", "lt", "lte", "gt", "gte"] {
            assert!(
                !ids(&api, cond("sale_price", op, json!(0))).contains(&9),
                "{op}"
            );
        }
    }

    #[test]
    fn search_with_and_or_not() {
        let api = api();
        let f = json!({"and": [
            {"field": "name", "op": "begins", "value": "a"},
            {"not": {"field": "active", "op": "is_false"}}
        ]});
        assert_eq!(ids(&api, f), [7, 9]);
        let f = json!({"or": [
            cond("code", "eq", json!("ZIDLE")),
            {"and": [cond("unit", "eq", json!("l")), cond("sale_price", "gt", json!(200))]}
        ]});
        assert_eq!(ids(&api, f), [6, 11]);
        assert_eq!(ids(&api, json!({"and": []})).len(), 12);
        assert_eq!(ids(&api, json!({"or": []})), [] as [i64; 0]);
        assert_eq!(
            ids(&api, json!({"not": {"not": cond("id", "eq", json!(3))}})),
            [3]
        );
        // a filter may be given as null
        assert_eq!(ids(&api, Value::Null).len(), 12);
    }

    #[test]
    fn boms_are_searched_by_level() {
        let api = api();
        let level = |n: i64| {
            ids_of(&search(
                &api,
                "boms",
                json!({"filter": cond("level", "eq", json!(n))}),
            ))
        };
        assert_eq!(level(1), [123, 124]);
        assert_eq!(level(2), [125]);
        // a level with no bills gives an empty list
        assert_eq!(level(3), [] as [i64; 0]);
        let v = search(
            &api,
            "boms",
            json!({"filter": cond("product", "eq", json!(5)), "count": true}),
        );
        assert_eq!(v["total"], 1);
        assert_eq!(v["items"][0]["code"], "KUS-STUL-DUB");
    }

    #[test]
    fn start_limit_count_and_order() {
        let api = api();
        let v = search(&api, "price-items", json!({}));
        assert_eq!(ids_of(&v), (1..=12).collect::<Vec<_>>());
        assert!(v.get("total").is_none());
        let v = ok(&api, Method::POST, "/v1/demo/price-items:search", "");
        assert_eq!(ids_of(&v).len(), 12);
        let v = search(
            &api,
            "price-items",
            json!({"start": 2, "limit": 3, "count": true}),
        );
        assert_eq!(ids_of(&v), [3, 4, 5]);
        assert_eq!(v["total"], 12);
        let v = search(&api, "price-items", json!({"start": 50, "count": true}));
        assert_eq!(ids_of(&v), [] as [i64; 0]);
        assert_eq!(v["total"], 12);
        let v = search(
            &api,
            "price-items",
            json!({"filter": cond("unit", "eq", json!("ks")), "limit": 2, "count": true}),
        );
        assert_eq!(ids_of(&v), [1, 2]);
        assert_eq!(v["total"], 9);
        let v = search(
            &api,
            "price-items",
            json!({"order": "-sale_price", "limit": 4}),
        );
        assert_eq!(ids_of(&v), [5, 8, 1, 6]);
        let v = search(
            &api,
            "price-items",
            json!({"order": "sale_price", "limit": 4}),
        );
        // nulls first, ties in id order
        assert_eq!(ids_of(&v), [9, 10, 12, 3]);
        let v = search(&api, "price-items", json!({"order": "code", "limit": 3}));
        assert_eq!(ids_of(&v), [7, 8, 9]);
        let v = search(&api, "price-items", json!({"order": "-unit", "limit": 0}));
        assert_eq!(&ids_of(&v)[..4], [9, 4, 11, 1]);
        let (status, e) = fails(
            &api,
            Method::POST,
            "/v1/demo/price-items:search",
            r#"{"limit": 10001}"#,
        );
        assert_eq!(
            (status, e["code"].as_str()),
            (400, Some("invalid_parameter"))
        );
        assert_eq!(e["details"][0]["field"], "limit");
        let v = search(&api, "price-items", json!({"limit": 10000}));
        assert_eq!(ids_of(&v).len(), 12);
        for (body, field) in [
            (r#"{"start": -1}"#, "start"),
            (r#"{"limit": "5"}"#, "limit"),
            (r#"{"count": "yes"}"#, "count"),
            (r#"{"order": 3}"#, "order"),
            (r#"{"page": 2}"#, "page"),
        ] {
            let (status, e) = fails(&api, Method::POST, "/v1/demo/price-items:search", body);
            assert_eq!(status, 400, "{body}");
            assert_eq!(e["details"][0]["field"], field, "{body}");
        }
        let (status, e) = fails(
            &api,
            Method::POST,
            "/v1/demo/price-items:search",
            r#"{"order": "-nazev"}"#,
        );
        assert_eq!((status, e["code"].as_str()), (400, Some("unknown_field")));
    }

    #[test]
    fn filter_errors() {
        let api = api();
        let err = |filter: Value| {
            let (status, e) = fails(
                &api,
                Method::POST,
                "/v1/demo/price-items:search",
                &json!({ "filter": filter }).to_string(),
            );
            assert_eq!(status, 400);
            (e["code"].as_str().unwrap().to_string(), e)
        };
        let (code, e) = err(cond("nazev", "begins", json!("A")));
        assert_eq!(code, "unknown_field");
        assert_eq!(e["details"][0]["field"], "nazev");
        assert!(e["message"].as_str().unwrap().contains("'nazev'"), "{e}");
        // BOM fields are not price item fields
        let (code, _) = err(cond("level", "eq", json!(1)));
        assert_eq!(code, "unknown_field");
        for op in ["like_similar", "in_subtree", "is_empty", "ge", "LIKE"] {
            let (code, e) = err(cond("name", op, json!("x")));
            assert_eq!(code, "unsupported_operator", "{op}");
            assert!(e["message"].as_str().unwrap().contains(op), "{e}");
        }
        for (filter, says) in [
            (json!("code eq 'A'"), "must be an object"),
            (json!({}), "must be an object with"),
            (json!({"field": "code"}), "has no 'op'"),
            (
                json!({"field": 3, "op": "eq", "value": 1}),
                "'field' must be",
            ),
            (
                json!({"field": "code", "op": 1, "value": 1}),
                "'op' must be",
            ),
            (json!({"field": "code", "op": "eq"}), "eq needs 'value'"),
            (
                json!({"field": "code", "op": "eq", "value": "A", "to": "B"}),
                "unexpected member 'to'",
            ),
            (
                json!({"field": "code", "op": "is_null", "value": 1}),
                "unexpected member 'value'",
            ),
            (
                json!({"field": "code", "op": "between", "from": "A"}),
                "between needs 'to'",
            ),
            (
                json!({"field": "code", "op": "in", "values": "A"}),
                "must be a list",
            ),
            (cond("code", "eq", Value::Null), "use is_null"),
            (cond("code", "eq", json!(["A"])), "is text"),
            (cond("id", "eq", json!("abc")), "'id' is a number"),
            (cond("id", "eq", json!(true)), "is a number"),
            (
                cond("purchase_price", "eq", json!("1.00001")),
                "more than 4",
            ),
            (
                cond("purchase_price", "like", json!("1")),
                "applies to text fields",
            ),
            (
                json!({"field": "code", "op": "is_true"}),
                "applies to boolean fields",
            ),
            (cond("active", "lt", json!(true)), "boolean field"),
            (json!({"and": {"field": "id"}}), "takes a list"),
            (json!({"and": [], "or": []}), "only member"),
            (
                json!({"not": cond("id", "eq", json!(1)), "field": "id"}),
                "only member",
            ),
            (
                json!({"and": [cond("id", "eq", json!(1)), 5]}),
                "filter.and[1]",
            ),
        ] {
            let (code, e) = err(filter.clone());
            assert_eq!(code, "invalid_filter", "{filter}: {e}");
            let msg = e["message"].as_str().unwrap();
            assert!(msg.contains(says), "{filter}: {msg}");
        }
        let nested = |n: usize| {
            let mut f = cond("id", "eq", json!(1));
            for _ in 0..n {
                f = json!({ "not": f });
            }
            f
        };
        assert_eq!(ids(&api, nested(64)), [1]);
        assert_eq!(ids(&api, nested(63)).len(), 11);
        let (code, e) = err(nested(65));
        assert_eq!(code, "invalid_filter");
        assert!(e["message"].as_str().unwrap().contains("deeper than 64"));
        // far deeper than the JSON reader allows: refused, no crash
        let deep = format!(
            "{{\"filter\": {}{}{}}}",
            "{\"not\": ".repeat(5000),
            "{}",
            "}".repeat(5000)
        );
        let (status, _) = fails(&api, Method::POST, "/v1/demo/price-items:search", &deep);
        assert_eq!(status, 400);
    }

    #[test]
    fn get_by_id_code_and_external_id() {
        let api = api();
        assert_eq!(item(&api, "price-items", "8")["code"], "AKU-SROUB");
        assert_eq!(item(&api, "price-items", "code:ZIDLE")["id"], 6);
        assert_eq!(item(&api, "price-items", "ext:SHOP:42")["id"], 8);
        assert_eq!(item(&api, "price-items", "ext:ESHOP:ZIDLE-DUB")["id"], 6);
        assert_eq!(item(&api, "boms", "code:KUS-SADA")["id"], 125);
        // percent-encoded refs
        assert_eq!(item(&api, "price-items", "code%3ASTUL-DUB")["id"], 5);
        for (target, msg) in [
            ("/v1/demo/price-items/99", "no price item with id 99"),
            (
                "/v1/demo/price-items/code:ABC",
                "no price item with code ABC",
            ),
            (
                "/v1/demo/price-items/ext:SHOP:43",
                "no price item with external id SHOP:43",
            ),
            ("/v1/demo/boms/1", "no bill of materials with id 1"),
            (
                "/v1/demo/boms/ext:SHOP:42",
                "no bill of materials with external id SHOP:42",
            ),
            (
                "/v1/demo/price-items/99999999999999999999999",
                "no price item with id 99999999999999999999999",
            ),
        ] {
            let (status, e) = fails(&api, Method::GET, target, "");
            assert_eq!(status, 404, "{target}");
            assert_eq!(e["code"], "not_found");
            assert_eq!(e["message"], msg);
        }
        for bad in ["ean:123", "abc", "code:", "-1"] {
            let (status, e) = fails(
                &api,
                Method::GET,
                &format!("/v1/demo/price-items/{bad}"),
                "",
            );
            assert_eq!(
                (status, e["code"].as_str()),
                (400, Some("invalid_parameter")),
                "{bad}"
            );
        }
    }

    #[test]
    fn tenants_are_separate() {
        let api = api();
        let r = ok(&api, Method::GET, "/v1/test/price-items/code:DESKA-DUB", "");
        assert_eq!(r["item"]["purchase_price"], "1.00");
        assert_eq!(
            item(&api, "price-items", "code:DESKA-DUB")["purchase_price"],
            "1450.00"
        );
        let created = ok(
            &api,
            Method::POST,
            "/v1/test/price-items",
            r#"{"code": "ZIDLE", "name": "Testovací židle"}"#,
        );
        assert_eq!(created["item"]["id"], 3);
        assert_eq!(
            all(&api, "test", "price-items").as_array().unwrap().len(),
            3
        );
        assert_eq!(
            all(&api, "demo", "price-items").as_array().unwrap().len(),
            12
        );
        assert_eq!(all(&api, "test", "boms"), json!([]));
        for (method, target) in [
            (Method::GET, "/v1/nobody/price-items/1"),
            (Method::POST, "/v1/nobody/boms:search"),
            (Method::POST, "/v1/nobody/price-items"),
            (Method::DELETE, "/v1/nobody/price-items/1"),
            (Method::POST, "/v1/nobody/boms/123:recalculate?price=sale"),
            (Method::GET, "/_reference/items/nobody/boms"),
        ] {
            let (status, e) = fails(&api, method, target, "{}");
            assert_eq!(
                (status, e["code"].as_str()),
                (404, Some("unknown_tenant")),
                "{target}"
            );
        }
    }

    #[test]
    fn create_assigns_ids_and_validates() {
        let api = api();
        let r = call(
            &api,
            Method::POST,
            "/v1/demo/price-items",
            r#"{"code": "HRANA-ABS", "name": "ABS hrana 2 mm", "purchase_price": 12.5, "sale_price": "19.9", "unit": "m", "ext_ids": ["SHOP:900"]}"#,
        );
        assert_eq!(r.status, StatusCode::CREATED);
        assert_eq!(
            r.body["item"],
            json!({"id": 13, "code": "HRANA-ABS", "name": "ABS hrana 2 mm", "purchase_price": "12.50",
                   "sale_price": "19.90", "unit": "m", "ext_ids": ["SHOP:900"], "active": true})
        );
        let r = call(
            &api,
            Method::POST,
            "/v1/demo/price-items",
            r#"{"code": "X1", "name": "X"}"#,
        );
        assert_eq!(r.status, StatusCode::CREATED);
        assert_eq!(r.body["item"]["id"], 14);
        assert_eq!(r.body["item"]["unit"], "ks");
        assert_eq!(r.body["item"]["purchase_price"], Value::Null);
        assert_eq!(item(&api, "price-items", "ext:SHOP:900")["id"], 13);

        let invalid = |body: &str| {
            let (status, e) = fails(&api, Method::POST, "/v1/demo/price-items", body);
            assert_eq!(status, 422, "{body}");
            assert_eq!(e["code"], "validation_failed");
            assert_eq!(e["message"], "the item is invalid");
            e["details"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| {
                    (
                        d["field"].as_str().unwrap().to_string(),
                        d["code"].as_str().unwrap().to_string(),
                        d["message"].as_str().unwrap().to_string(),
                    )
                })
                .collect::<Vec<_>>()
        };
        let d = invalid(r#"{"code": "ZIDLE", "name": "Jiná židle"}"#);
        assert_eq!(
            d,
            [(
                "code".to_string(),
                "duplicate".to_string(),
                "code 'ZIDLE' is already used by price item 6".to_string()
            )]
        );
        let d = invalid(r#"{"kod": "X", "id": 5, "name": "X"}"#);
        let got: Vec<(&str, &str)> = d.iter().map(|(f, c, _)| (f.as_str(), c.as_str())).collect();
        assert_eq!(
            got,
            [
                ("id", "unknown_field"),
                ("kod", "unknown_field"),
                ("code", "required")
            ]
        );
        let d = invalid(
            r#"{"code": "ABCDEFGHIJKLMNOPQRSTU", "name": " ", "purchase_price": "1.00001",
                "sale_price": -1, "unit": 5, "ext_ids": ["SHOP42", "SHOP:42", 7], "active": "yes"}"#,
        );
        let got: Vec<(&str, &str)> = d.iter().map(|(f, c, _)| (f.as_str(), c.as_str())).collect();
        assert_eq!(
            got,
            [
                ("code", "too_long"),
                ("name", "required"),
                ("purchase_price", "invalid"),
                ("sale_price", "invalid"),
                ("unit", "invalid"),
                ("ext_ids[0]", "invalid"),
                ("ext_ids[1]", "duplicate"),
                ("ext_ids[2]", "invalid"),
                ("active", "invalid"),
            ]
        );
        assert!(d[2].2.contains("more than 4 decimal places"), "{d:?}");
        assert_eq!(
            d[6].2,
            "external id 'SHOP:42' is already used by price item 8"
        );
        // exactly 20 characters is fine
        ok(
            &api,
            Method::POST,
            "/v1/demo/price-items",
            r#"{"code": "ABCDEFGHIJKLMNOPQRST", "name": "Dvacet"}"#,
        );

        let (status, e) = fails(&api, Method::POST, "/v1/demo/price-items", "{not json");
        assert_eq!((status, e["code"].as_str()), (400, Some("invalid_json")));
        let (status, e) = fails(&api, Method::POST, "/v1/demo/price-items", "[1]");
        assert_eq!((status, e["code"].as_str()), (400, Some("invalid_json")));
        assert_eq!(
            all(&api, "demo", "price-items").as_array().unwrap().len(),
            15
        );
    }

    #[test]
    fn create_dry_run_stores_nothing_and_uses_no_id() {
        let api = api();
        let r = call(
            &api,
            Method::POST,
            "/v1/demo/price-items?dry_run=true",
            r#"{"code": "NOVY", "name": "Nový"}"#,
        );
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body["dry_run"], true);
        assert_eq!(r.body["item"]["id"], Value::Null);
        assert_eq!(r.body["item"]["code"], "NOVY");
        let (status, _) = fails(&api, Method::GET, "/v1/demo/price-items/code:NOVY", "");
        assert_eq!(status, 404);
        let (status, e) = fails(
            &api,
            Method::POST,
            "/v1/demo/price-items?dry_run=true",
            r#"{"code": "ZIDLE", "name": "Nový"}"#,
        );
        assert_eq!(
            (status, e["details"][0]["code"].as_str()),
            (422, Some("duplicate"))
        );
        let r = call(
            &api,
            Method::POST,
            "/v1/demo/price-items",
            r#"{"code": "NOVY", "name": "Nový"}"#,
        );
        assert_eq!(r.body["item"]["id"], 13);
        let r = call(
            &api,
            Method::POST,
            "/v1/demo/boms?dry_run=1",
            r#"{"code": "KUS-NOVY", "name": "Nový", "product": 13, "components": [{"item": 1, "quantity": 2}]}"#,
        );
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["item"]["id"], Value::Null);
        let r = call(
            &api,
            Method::POST,
            "/v1/demo/boms",
            r#"{"code": "KUS-NOVY", "name": "Nový", "product": "code:NOVY", "components": [{"item": "ext:SHOP:101", "quantity": "2"}]}"#,
        );
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        assert_eq!(
            r.body["item"],
            json!({"id": 126, "code": "KUS-NOVY", "name": "Nový", "level": 1, "product": 13,
                   "purchase_price": null, "sale_price": null,
                   "components": [{"item": 1, "quantity": "2.0000"}]})
        );
        let (status, e) = fails(
            &api,
            Method::POST,
            "/v1/demo/price-items?dry_run=maybe",
            "{}",
        );
        assert_eq!(
            (status, e["code"].as_str()),
            (400, Some("invalid_parameter"))
        );
    }

    #[test]
    fn bom_validation() {
        let api = api();
        let details = |body: &str| {
            let (status, e) = fails(&api, Method::POST, "/v1/demo/boms", body);
            assert_eq!(status, 422, "{body}");
            e["details"].clone()
        };
        let d = details(
            r#"{"code": "KUS-X", "name": "X", "product": 5, "components": [{"item": 99, "quantity": 1}]}"#,
        );
        assert_eq!(
            d,
            json!([{"field": "components[0].item", "code": "not_found", "message": "no price item with id 99"}])
        );
        let d = details(r#"{"code": "KUS-STUL-DUB", "name": "X", "product": 77}"#);
        assert_eq!(d[0]["code"], "duplicate");
        assert_eq!(
            d[0]["message"],
            "code 'KUS-STUL-DUB' is already used by bill of materials 123"
        );
        assert_eq!(d[1]["field"], "product");
        assert_eq!(d[1]["code"], "not_found");
        let d = details(r#"{"code": "KUS-X", "name": "X"}"#);
        assert_eq!(
            d[0],
            json!({"field": "product", "code": "required", "message": "product is required"})
        );
        let d = details(
            r#"{"code": "KUS-X", "name": "X", "level": 0, "product": "code:NIC", "components": [{"item": 1}, {"quantity": "-1", "item": 2, "x": 1}, 3]}"#,
        );
        let got: Vec<(&str, &str)> = d
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["field"].as_str().unwrap(), d["code"].as_str().unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                ("level", "invalid"),
                ("product", "not_found"),
                ("components[0].quantity", "required"),
                ("components[1].x", "unknown_field"),
                ("components[1].quantity", "invalid"),
                ("components[2]", "invalid"),
            ]
        );
        let d = details(
            r#"{"code": "KUS-X", "name": "X", "product": 5, "components": [{"item": 1, "quantity": 1}, {"item": "code:STUL-DUB", "quantity": 1}]}"#,
        );
        assert_eq!(d[0]["field"], "components[1].item");
        assert!(d[0]["message"].as_str().unwrap().contains("its own"), "{d}");
    }

    #[test]
    fn patch_changes_given_fields() {
        let api = api();
        let r = ok(
            &api,
            Method::PATCH,
            "/v1/demo/price-items/code:SROUB-M6",
            r#"{"purchase_price": "1.40", "sale_price": null, "ext_ids": ["SHOP:3"]}"#,
        );
        assert_eq!(
            r["item"],
            json!({"id": 3, "code": "SROUB-M6", "name": "Šroub M6×40", "purchase_price": "1.40",
                   "sale_price": null, "unit": "ks", "ext_ids": ["SHOP:3"], "active": true})
        );
        assert_eq!(
            item(&api, "price-items", "ext:SHOP:3")["purchase_price"],
            "1.40"
        );
        // its own code and external ids do not count as duplicates
        ok(
            &api,
            Method::PATCH,
            "/v1/demo/price-items/3",
            r#"{"code": "SROUB-M6", "ext_ids": ["SHOP:3"]}"#,
        );
        let (status, e) = fails(
            &api,
            Method::PATCH,
            "/v1/demo/price-items/3",
            r#"{"code": "ZIDLE"}"#,
        );
        assert_eq!(
            (status, e["details"][0]["code"].as_str()),
            (422, Some("duplicate"))
        );
        let (status, e) = fails(
            &api,
            Method::PATCH,
            "/v1/demo/price-items/3",
            r#"{"code": null}"#,
        );
        assert_eq!(
            (status, e["details"][0]["code"].as_str()),
            (422, Some("required"))
        );
        let (status, e) = fails(
            &api,
            Method::PATCH,
            "/v1/demo/price-items/3",
            r#"{"id": 4}"#,
        );
        assert_eq!(
            (status, e["details"][0]["code"].as_str()),
            (422, Some("unknown_field"))
        );
        let (status, _) = fails(&api, Method::PATCH, "/v1/demo/price-items/99", "{}");
        assert_eq!(status, 404);
        // dry run
        let r = ok(
            &api,
            Method::PATCH,
            "/v1/demo/price-items/3?dry_run=true",
            r#"{"name": "Jiný"}"#,
        );
        assert_eq!(
            (r["item"]["name"].as_str(), r["dry_run"].as_bool()),
            (Some("Jiný"), Some(true))
        );
        assert_eq!(item(&api, "price-items", "3")["name"], "Šroub M6×40");
        // BOMs: components are replaced; the product cannot become one of them
        let r = ok(
            &api,
            Method::PATCH,
            "/v1/demo/boms/124",
            r#"{"level": 2, "components": [{"item": 7, "quantity": 2}]}"#,
        );
        assert_eq!(r["item"]["level"], 2);
        assert_eq!(
            r["item"]["components"],
            json!([{"item": 7, "quantity": "2.0000"}])
        );
        let (status, e) = fails(
            &api,
            Method::PATCH,
            "/v1/demo/boms/124",
            r#"{"product": 7}"#,
        );
        assert_eq!(status, 422);
        assert_eq!(e["details"][0]["field"], "product");
    }

    #[test]
    fn delete_and_in_use() {
        let api = api();
        let (status, e) = fails(
            &api,
            Method::DELETE,
            "/v1/demo/price-items/code:SROUB-M6",
            "",
        );
        assert_eq!((status, e["code"].as_str()), (409, Some("in_use")));
        assert_eq!(
            e["message"],
            "price item 3 (SROUB-M6) is used by bill of materials KUS-STUL-DUB, KUS-ZIDLE"
        );
        let (status, e) = fails(&api, Method::DELETE, "/v1/demo/price-items/10", "");
        assert_eq!(status, 409);
        assert!(e["message"].as_str().unwrap().contains("KUS-SADA"));
        assert!(
            e["details"][0]["message"]
                .as_str()
                .unwrap()
                .contains("as its product")
        );
        // a dry run checks the same and deletes nothing
        let (status, _) = fails(
            &api,
            Method::DELETE,
            "/v1/demo/price-items/3?dry_run=true",
            "",
        );
        assert_eq!(status, 409);
        let r = ok(
            &api,
            Method::DELETE,
            "/v1/demo/price-items/ext:SHOP:42?dry_run=true",
            "",
        );
        assert_eq!(r, json!({"deleted": {"id": 8}, "dry_run": true}));
        assert_eq!(item(&api, "price-items", "8")["id"], 8);
        let r = ok(&api, Method::DELETE, "/v1/demo/price-items/ext:SHOP:42", "");
        assert_eq!(r, json!({"deleted": {"id": 8}}));
        let (status, _) = fails(&api, Method::GET, "/v1/demo/price-items/8", "");
        assert_eq!(status, 404);
        let (status, _) = fails(&api, Method::DELETE, "/v1/demo/price-items/8", "");
        assert_eq!(status, 404);
        // once its bill is gone, the product can go
        ok(&api, Method::DELETE, "/v1/demo/boms/code:KUS-SADA", "");
        ok(&api, Method::DELETE, "/v1/demo/price-items/10", "");
        let ids: Vec<i64> = all(&api, "demo", "boms")
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_i64().unwrap())
            .collect();
        assert_eq!(ids, [123, 124]);
        // ids are not reused
        let r = ok(
            &api,
            Method::POST,
            "/v1/demo/price-items",
            r#"{"code": "N", "name": "N"}"#,
        );
        assert_eq!(r["item"]["id"], 13);
    }

    fn recalc(api: &FlexiApi, target: &str) -> Value {
        ok(api, Method::POST, target, "")
    }

    #[test]
    fn recalculate_bom_123() {
        let api = api();
        let r = recalc(&api, "/v1/demo/boms/123:recalculate?price=purchase");
        assert_eq!(r["previous"], "2300.00");
        assert_eq!(r["item"]["purchase_price"], "2245.70");
        assert_eq!(r["item"]["sale_price"], Value::Null);
        assert_eq!(item(&api, "boms", "123")["purchase_price"], "2245.70");
        // the product's price item follows; its sale price is untouched
        let stul = item(&api, "price-items", "5");
        assert_eq!(
            (stul["purchase_price"].as_str(), stul["sale_price"].as_str()),
            (Some("2245.70"), Some("7990.00"))
        );
        let r = recalc(
            &api,
            "/v1/demo/boms/code:KUS-STUL-DUB:recalculate?price=sale",
        );
        assert_eq!(r["previous"], Value::Null);
        assert_eq!(r["item"]["sale_price"], "3273.03");
        assert_eq!(r["item"]["purchase_price"], "2245.70");
        assert_eq!(item(&api, "price-items", "5")["sale_price"], "3273.03");
        // again: same result, the previous price is now the recalculated one
        let r = recalc(&api, "/v1/demo/boms/123:recalculate?price=sale");
        assert_eq!(
            (r["previous"].as_str(), r["item"]["sale_price"].as_str()),
            (Some("3273.03"), Some("3273.03"))
        );
    }

    #[test]
    fn recalculation_sums_one_level_only() {
        let api = api();
        // BOM 125 uses the products of 123 and 124 with their current prices
        let r = recalc(&api, "/v1/demo/boms/125:recalculate?price=purchase");
        assert_eq!(
            (r["previous"].clone(), r["item"]["purchase_price"].clone()),
            (Value::Null, json!("4380.00"))
        );
        let r = recalc(&api, "/v1/demo/boms/125:recalculate?price=sale");
        assert_eq!(r["item"]["sale_price"], "15550.00");
        assert_eq!(item(&api, "price-items", "10")["sale_price"], "15550.00");
        // the sub-assemblies were not recalculated by that
        assert_eq!(item(&api, "boms", "123")["purchase_price"], "2300.00");
        assert_eq!(item(&api, "price-items", "5")["purchase_price"], "2300.00");
        // recalculating the lower level first changes the upper level's result
        let r = recalc(&api, "/v1/demo/boms/124:recalculate?price=purchase");
        assert_eq!(
            (r["previous"].as_str(), r["item"]["purchase_price"].as_str()),
            (Some("520.00"), Some("538.88"))
        );
        let r = recalc(&api, "/v1/demo/boms/124:recalculate?price=sale");
        assert_eq!(r["item"]["sale_price"], "492.15");
        recalc(&api, "/v1/demo/boms/123:recalculate?price=purchase");
        recalc(&api, "/v1/demo/boms/123:recalculate?price=sale");
        let r = recalc(&api, "/v1/demo/boms/125:recalculate?price=purchase");
        assert_eq!(
            (r["previous"].as_str(), r["item"]["purchase_price"].as_str()),
            (Some("4380.00"), Some("4401.22"))
        );
        let r = recalc(&api, "/v1/demo/boms/125:recalculate?price=sale");
        assert_eq!(r["item"]["sale_price"], "5241.63");
    }

    #[test]
    fn recalculation_dry_run_and_errors() {
        let api = api();
        let before = (all(&api, "demo", "boms"), all(&api, "demo", "price-items"));
        let r = recalc(
            &api,
            "/v1/demo/boms/123:recalculate?price=sale&dry_run=true",
        );
        assert_eq!(r["dry_run"], true);
        assert_eq!(r["item"]["sale_price"], "3273.03");
        assert_eq!(r["previous"], Value::Null);
        assert_eq!(
            (all(&api, "demo", "boms"), all(&api, "demo", "price-items")),
            before
        );
        for target in [
            "/v1/demo/boms/123:recalculate",
            "/v1/demo/boms/123:recalculate?price=nakupni",
            "/v1/demo/boms/123:recalculate?price=",
        ] {
            let (status, e) = fails(&api, Method::POST, target, "");
            assert_eq!(
                (status, e["code"].as_str()),
                (400, Some("invalid_parameter")),
                "{target}"
            );
            assert_eq!(e["details"][0]["field"], "price");
        }
        let (status, e) = fails(
            &api,
            Method::POST,
            "/v1/demo/boms/666:recalculate?price=sale",
            "",
        );
        assert_eq!(
            (status, e["message"].as_str()),
            (404, Some("no bill of materials with id 666"))
        );
        let (status, _) = fails(
            &api,
            Method::POST,
            "/v1/demo/price-items/1:recalculate?price=sale",
            "",
        );
        assert_eq!(status, 404);
        let r = call(
            &api,
            Method::GET,
            "/v1/demo/boms/123:recalculate?price=sale",
            "",
        );
        assert_eq!(
            (r.status, r.allow),
            (StatusCode::METHOD_NOT_ALLOWED, Some("POST"))
        );
        // a price change is used by the next recalculation
        ok(
            &api,
            Method::PATCH,
            "/v1/demo/price-items/12",
            r#"{"sale_price": "0.50"}"#,
        );
        let r = recalc(&api, "/v1/demo/boms/123:recalculate?price=sale");
        assert_eq!(r["item"]["sale_price"], "3281.03");
    }

    #[test]
    fn paths_methods_and_stats() {
        let api = api();
        for (method, target, allow) in [
            (Method::GET, "/v1/demo/price-items", "POST"),
            (Method::GET, "/v1/demo/boms:search", "POST"),
            (Method::PUT, "/v1/demo/boms/123", "GET, PATCH, DELETE"),
            (Method::POST, "/v1/demo/price-items/1", "GET, PATCH, DELETE"),
            (Method::POST, "/_reference/stats", "GET"),
            (Method::DELETE, "/_reference/items/demo/boms", "GET"),
        ] {
            let r = call(&api, method, target, "");
            assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{target}");
            assert_eq!(r.allow, Some(allow), "{target}");
            assert_eq!(r.body["error"]["code"], "method_not_allowed");
        }
        for (method, target) in [
            (Method::GET, "/"),
            (Method::GET, "/v1"),
            (Method::GET, "/v1/demo"),
            (Method::POST, "/v1/demo/cenik"),
            (Method::POST, "/v1/demo/cenik:search"),
            (Method::POST, "/v1/demo/price-items:count"),
            (Method::GET, "/v1/demo/price-items/"),
            (Method::GET, "/v1/demo/price-items/1/x"),
            (Method::GET, "/v1/demo/price-items/%ZZ"),
            (Method::GET, "/_reference/items/demo/cenik"),
            (Method::GET, "/c/demo/kusovnik.json"),
        ] {
            let r = call(&api, method, target, "");
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{target}");
            assert_eq!(r.body["error"]["code"], "not_found", "{target}");
        }
        let stats = ok(&api, Method::GET, "/_reference/stats", "");
        // every /v1 request above counts, whatever its outcome
        assert_eq!(stats, json!({"requests": 12}));
        ok(&api, Method::POST, "/v1/demo/boms:search", "{}");
        assert_eq!(
            ok(&api, Method::GET, "/_reference/stats", "")["requests"],
            13
        );
        let items = all(&api, "demo", "boms");
        assert_eq!(items.as_array().unwrap().len(), 3);
        assert_eq!(items[2]["code"], "KUS-SADA");
    }

    #[test]
    fn broken_seeds_name_the_problem() {
        let good = std::fs::read_to_string(fixture()).unwrap();
        let err = |text: &str| FlexiApi::from_seed(text).unwrap_err();
        assert!(err("{").contains("EOF"), "{}", err("{"));
        let e = err(&good.replace(r#""tenants""#, r#""tenant""#));
        assert!(e.contains("unknown field `tenant`"), "{e}");
        let e = err(&good.replace(r#""boms": []"#, r#""bomz": []"#));
        assert!(e.contains("unknown field `bomz`"), "{e}");
        let e = err(&good.replace(
            r#""id": 2, "code": "NOHA-KOV""#,
            r#""id": 1, "code": "NOHA-KOV""#,
        ));
        assert_eq!(e, "tenants.demo.price_items[1]: id 1 is used twice");
        let e = err(&good.replace(r#""id": 2, "code": "NOHA-KOV""#, r#""code": "NOHA-KOV""#));
        assert!(
            e.starts_with("tenants.demo.price_items[1]: id must be"),
            "{e}"
        );
        let e = err(&good.replace(r#""code": "NOHA-KOV""#, r#""code": "DESKA-DUB""#));
        assert_eq!(
            e,
            "tenants.demo.price_items[1].code: code 'DESKA-DUB' is already used by price item 1"
        );
        let e = err(&good.replace(
            r#""purchase_price": "189.50""#,
            r#""purchase_price": "189,50""#,
        ));
        assert!(
            e.starts_with("tenants.demo.price_items[1].purchase_price: "),
            "{e}"
        );
        let e = err(&good.replace(
            r#"{"item": 12, "quantity": "16"}"#,
            r#"{"item": 13, "quantity": "16"}"#,
        ));
        assert_eq!(
            e,
            "tenants.demo.boms[0].components[4].item: no price item with id 13"
        );
        let e = err(&good.replace(r#""level": 2"#, r#""level": 0"#));
        assert!(e.starts_with("tenants.demo.boms[2].level: "), "{e}");
        let e = err(&good.replace(r#""test": {"#, r#""te st": {"#));
        assert!(e.starts_with("tenants.te st: "), "{e}");
        let e = FlexiApi::load(Path::new("/nonexistent/flexi.json")).unwrap_err();
        assert!(e.starts_with("/nonexistent/flexi.json: "), "{e}");
    }

    #[tokio::test]
    async fn served_over_http() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = super::super::spawn("flexi", &fixture(), listener).unwrap();
        let exchange = |request: String| async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(request.as_bytes()).await.unwrap();
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.unwrap();
            String::from_utf8(out).unwrap()
        };
        let body = r#"{"filter": {"field": "name", "op": "begins", "value": "A"}, "count": true}"#;
        let answer = exchange(format!(
            "POST /v1/demo/price-items:search HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ))
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("content-type: application/json")
        );
        let (_, json_text) = answer.split_once("\r\n\r\n").unwrap();
        let v: Value = serde_json::from_str(json_text).unwrap();
        assert_eq!(v["total"], 3);
        let answer = exchange(
            "PUT /v1/demo/boms/123 HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                .to_string(),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("allow: get, patch, delete"),
            "{answer}"
        );
    }
}
