//! Reference backend imitating a sales channel's stock API: the remote end of Akinon's stock
//! sync (seed 000, `notes/protocols.md` section 5). The stock service sends stock lists
//! (insert or update, to the main or the extra stock list) either synchronously or as
//! asynchronous batches that it polls later. It is a JSON API of its own, not a copy of any
//! channel's.
//!
//! # Data
//!
//! Warehouses (codes like `WH-IST`) and known SKU codes come from the seed. There are two stock
//! lists, `main` and `extra` (the seed's "extra stock list"), each a map (warehouse, sku) ->
//! `{"quantity", "price", "remote_id"}`: `quantity` an integer from 0 to 2^53 − 1, `price` a
//! decimal string with 2 places (`"199.90"`) or null, `remote_id` `ST-000001`, ... assigned when
//! the stock is first created in that list, from one sequence shared by both lists (the same
//! warehouse and SKU in `main` and in `extra` are two stocks with two remote ids).
//!
//! # Applying a stock list
//!
//! A stock list is `{"action": "insert"|"update", "list": "main"|"extra" (default "main"),
//! "items": [{"sku", "warehouse", "quantity", "price" (optional)}]}`. Items are applied in
//! order, each on the state the previous ones left (inserting the same stock twice in one list
//! fails the second time); a failing item does not stop the others. Each item gives
//! `{"sku", "warehouse", "status": "SUCCESS"|"FAIL", "remote_id", "message"}`; checks in this
//! order:
//!
//! - the SKU is not known: FAIL `unknown SKU 'X'`;
//! - the warehouse is not known: FAIL `unknown warehouse 'W'`;
//! - `quantity` is not an integer >= 0 (a JSON integer or a string of digits like `"12"`; `-1`,
//!   `1.5`, `1.0`, `1e3`, `true` are not): FAIL `invalid quantity`;
//! - `price` (optional, `null` = not given) is not a decimal >= 0 with at most 2 decimal places
//!   (trailing zeros do not count) and 12 digits before the point, as a JSON number or a string
//!   (`199.9`, `"199.90"`; no sign, exponent or bare point): FAIL `invalid price`;
//! - `insert` of a stock the list already has: FAIL `stock already exists for X in W; use update`;
//!   `update` of one it does not have: FAIL `no stock for X in W; use insert`;
//! - otherwise SUCCESS (message `stock created` or `stock updated`) with the stock's remote id.
//!   An insert stores the quantity and price (null when not given); an update replaces the
//!   quantity, and the price only when one is given.
//!
//! A FAIL result's `remote_id` is null. `sku` and `warehouse` echo the item's.
//!
//! # HTTP API
//!
//! - `POST /v1/stock-lists?mode=sync|async` (default `async`) with a stock list as the body and
//!   an `Idempotency-Key` header (1 to 200 visible ASCII characters; required for `async`,
//!   optional for `sync`):
//!   - `sync`: the list is applied now: 200 `{"status": "done", "results": [..]}`.
//!   - `async`: a remote batch `RB-000001`, ... (one sequence) is recorded and answered with 202
//!     `{"batch_id", "status": "ongoing", "received_at", "applied_at": null}`; `async_delay_ms`
//!     (seed) later the list is applied and the batch becomes `done` with its `results`.
//!   - A key already seen, with the same request (same mode, action, list and items; an absent
//!     `list` equals `"main"`), is a duplicate delivery: nothing is applied; a sync key answers
//!     its stored answer again (200), an async key answers its batch as it is now (200, ongoing
//!     or done). Replays carry the header `Idempotent-Replayed: true`. The same key with another
//!     request (a different body, or the other mode): 409 `idempotency_conflict`.
//!   - A request answered with an error records nothing (its key stays unused).
//! - `GET /v1/stock-batches/{batch_id}` -> 200 `{"batch_id", "status": "ongoing"|"done",
//!   "results" (only when done), "received_at" (ms since the Unix epoch), "applied_at" (ms or
//!   null)}`.
//! - `GET /v1/stocks/{list}/{warehouse}/{sku}` (segments percent-decoded) -> 200 `{"quantity",
//!   "price", "remote_id"}`.
//! - `GET /v1/warehouses` -> 200 `{"warehouses": [{"code", "name"}]}` in seed order.
//!
//! Errors have the shape `{"error": {"code", "message", "details": [{"field", "code",
//! "message"}]}}`: 400 `invalid_json` (the body is not a JSON object), 400 `invalid_request`
//! (one detail per problem, at most 20; `field` like `action`, `list`, `items`,
//! `items[3].quantity`, `mode`, `Idempotency-Key`; `code` one of `required`, `invalid`,
//! `unknown_field`, `too_many`): action not `insert`/`update`, list not `main`/`extra`, items
//! not a list or more than `max_items` of them, an item not an object, without `sku`,
//! `warehouse` or `quantity` (missing or null), `sku`/`warehouse` not strings, unknown members
//! (top level or item), `mode` not `sync`/`async`, a missing or malformed `Idempotency-Key`);
//! 404 `not_found` (unknown path, batch, list or stock), 405 `method_not_allowed` (with
//! `Allow`), 409 `idempotency_conflict`, 413 `body_too_large` (over 4 MiB), 503 `unavailable`.
//!
//! # Reference-only endpoints (for tests)
//!
//! - `POST /_reference/outage?ms=N`: every `/v1/...` request (any path or method) answers 503
//!   `unavailable` (with `Retry-After` in whole seconds, rounded up) for the next N ms; N = 0
//!   ends an outage. Answers `{"outage_ms": N}`. Batches already accepted are still applied
//!   during an outage (only the API is down).
//! - `GET /_reference/stats` -> `{"deliveries", "duplicate_deliveries", "conflicts",
//!   "applications", "items_applied", "items_failed", "batches_ongoing", "outage_rejections",
//!   "applications_by_key"}`:
//!   - `deliveries`: accepted stock-list POSTs (a first-time key, or a sync POST without key);
//!   - `duplicate_deliveries`: POSTs answered from an already-seen key;
//!   - `conflicts`: POSTs answered 409;
//!   - `applications`: stock lists applied (sync requests and async batches);
//!   - `items_applied` / `items_failed`: item results SUCCESS / FAIL over all applications;
//!   - `batches_ongoing`: accepted async batches not applied yet;
//!   - `outage_rejections`: requests answered 503;
//!   - `applications_by_key`: `{"<key>": <times applied>}` for every key accepted (an async
//!     key shows 0 until its batch is applied). Sync POSTs without a key count in
//!     `applications` only.
//!
//! Seed stocks are not counted.
//!
//! # Seed file (`fixtures/reference/stock.json`)
//!
//! `{"about", "async_delay_ms" (default 300, at most 3600000), "max_items" (default 10000, 1 to
//! 1000000), "warehouses": [{"code", "name"}], "skus": ["AKN-MUG-01", ..], "generated_skus":
//! {"prefix", "count", "digits"} (optional: `<prefix><n>` for n in 1..=count, zero-padded to
//! `digits`), "stocks": {"main": [item, ..], "extra": [..]}}`. Codes must be non-empty and
//! unique; stocks are items as on input, inserted in order (any FAIL is a load error), so the
//! first seeded stock gets `ST-000001`. Unknown members are errors. The bundled seed: warehouses
//! WH-IST (İstanbul), WH-ANK (Ankara), WH-IZM (İzmir); SKUs AKN-TSHIRT-S/M/L, AKN-MUG-01 and
//! SKU-00001..SKU-05000; main stock AKN-TSHIRT-S (10, 199.90, ST-000001) and AKN-TSHIRT-M
//! (4, 199.90, ST-000002) in WH-IST; the extra list empty.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{ApiError, json_response, shorten, shown};

const MAX_BODY: usize = 4 * 1024 * 1024;
/// Longest `Idempotency-Key`, in characters.
const KEY_MAX: usize = 200;
const MAX_QUANTITY: u64 = (1 << 53) - 1;
/// Digits before the point of a price.
const PRICE_WHOLE_DIGITS: usize = 12;
/// Most details in one `invalid_request` error.
const MAX_DETAILS: usize = 20;
const MAX_OUTAGE_MS: u64 = 24 * 3600 * 1000;
const MAX_DELAY_MS: u64 = 3600 * 1000;
const MAX_MAX_ITEMS: usize = 1_000_000;
const MAX_GENERATED: usize = 1_000_000;
const IDEMPOTENCY_KEY: &str = "idempotency-key";
const REPLAYED: &str = "idempotent-replayed";

// ---------------------------------------------------------------------------------------------
// Seed file

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Seed {
    #[serde(default, rename = "about")]
    _about: Option<String>,
    #[serde(default = "default_delay")]
    async_delay_ms: u64,
    #[serde(default = "default_max_items")]
    max_items: usize,
    warehouses: Vec<SeedWarehouse>,
    #[serde(default)]
    skus: Vec<String>,
    #[serde(default)]
    generated_skus: Option<GeneratedSkus>,
    #[serde(default)]
    stocks: SeedStocks,
}

fn default_delay() -> u64 {
    300
}

fn default_max_items() -> usize {
    10_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedWarehouse {
    code: String,
    name: String,
}

/// SKUs `<prefix><n>` for n in 1..=count, n zero-padded to `digits`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GeneratedSkus {
    prefix: String,
    count: usize,
    digits: usize,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedStocks {
    #[serde(default)]
    main: Vec<Value>,
    #[serde(default)]
    extra: Vec<Value>,
}

// ---------------------------------------------------------------------------------------------
// Model

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Insert,
    Update,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Insert => "insert",
            Action::Update => "update",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum List {
    Main,
    Extra,
}

impl List {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "main" => Some(List::Main),
            "extra" => Some(List::Extra),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            List::Main => "main",
            List::Extra => "extra",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Sync,
    Async,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Sync => "sync",
            Mode::Async => "async",
        }
    }
}

/// An item of a stock list, structurally valid; `quantity` and `price` are judged when applied.
#[derive(Debug, Clone)]
struct Item {
    sku: String,
    warehouse: String,
    quantity: Value,
    price: Option<Value>,
}

#[derive(Debug, Clone)]
struct StockList {
    action: Action,
    list: List,
    items: Vec<Item>,
}

#[derive(Debug, Clone)]
struct Stock {
    quantity: u64,
    /// In hundredths.
    price: Option<u64>,
    remote_id: String,
}

/// (warehouse, sku) -> stock
type Stocks = HashMap<(String, String), Stock>;

#[derive(Debug)]
struct Batch {
    id: String,
    key: String,
    /// The stock list, until it is applied.
    pending: Option<StockList>,
    /// The item results, once applied.
    results: Option<Value>,
    received_at: u64,
    applied_at: Option<u64>,
}

impl Batch {
    fn view(&self) -> Value {
        let mut v = json!({
            "batch_id": self.id,
            "status": if self.results.is_some() { "done" } else { "ongoing" },
            "received_at": self.received_at,
            "applied_at": self.applied_at,
        });
        if let (Some(results), Value::Object(o)) = (&self.results, &mut v) {
            o.insert("results".into(), results.clone());
        }
        v
    }
}

/// What an `Idempotency-Key` was used for.
#[derive(Debug)]
enum KeyUse {
    Sync { fingerprint: Value, answer: Value },
    Async { fingerprint: Value, batch: String },
}

impl KeyUse {
    fn fingerprint(&self) -> &Value {
        match self {
            KeyUse::Sync { fingerprint, .. } | KeyUse::Async { fingerprint, .. } => fingerprint,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    deliveries: u64,
    duplicate_deliveries: u64,
    conflicts: u64,
    applications: u64,
    items_applied: u64,
    items_failed: u64,
    outage_rejections: u64,
    by_key: BTreeMap<String, u64>,
}

#[derive(Debug, Default)]
struct State {
    main: Stocks,
    extra: Stocks,
    /// The last remote id handed out.
    remote_seq: u64,
    /// The last batch number handed out.
    batch_seq: u64,
    batches: HashMap<String, Batch>,
    keys: HashMap<String, KeyUse>,
    outage_until: Option<Instant>,
    counters: Counters,
}

impl State {
    fn stocks(&self, list: List) -> &Stocks {
        match list {
            List::Main => &self.main,
            List::Extra => &self.extra,
        }
    }

    fn stocks_mut(&mut self, list: List) -> &mut Stocks {
        match list {
            List::Main => &mut self.main,
            List::Extra => &mut self.extra,
        }
    }
}

#[derive(Debug)]
struct Core {
    delay: Duration,
    max_items: usize,
    /// (code, name) in seed order.
    warehouses: Vec<(String, String)>,
    warehouse_codes: HashSet<String>,
    skus: HashSet<String>,
    /// An instant and the wall-clock milliseconds at it, to write times of `Instant`s.
    epoch: (Instant, u64),
    state: Mutex<State>,
}

/// The stock reference backend. Cloning shares the state (the delayed application of async
/// batches holds a clone).
#[derive(Debug, Clone)]
pub struct StockApi {
    core: Arc<Core>,
}

/// An answer of [`StockApi::route`].
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    body: Value,
    allow: Option<&'static str>,
    retry_after: Option<u64>,
    replayed: bool,
    /// An async batch to apply after the delay.
    schedule: Option<String>,
}

impl Reply {
    fn new(status: StatusCode, body: Value) -> Self {
        Reply {
            status,
            body,
            allow: None,
            retry_after: None,
            replayed: false,
            schedule: None,
        }
    }

    fn not_allowed(method: &Method, path: &str, allow: &'static str) -> Self {
        let e = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!(
                "{method} is not allowed on {} (allowed: {allow})",
                shorten(path)
            ),
        );
        Reply {
            allow: Some(allow),
            ..Reply::from(e)
        }
    }
}

impl From<ApiError> for Reply {
    fn from(e: ApiError) -> Self {
        Reply::new(e.status, e.body())
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn not_found(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", msg)
}

fn not_found_path(path: &str) -> ApiError {
    not_found(format!("no resource at {}", shorten(path)))
}

fn bad_request(field: &str, code: &'static str, msg: impl Into<String>) -> ApiError {
    let msg = msg.into();
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", msg.clone()).field(field, code, msg)
}

/// The text of a JSON number or string, for the exact parsers below.
fn number_text(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// A quantity: an integer from 0 to 2^53 − 1, as a JSON integer or a string of digits.
fn parse_quantity(v: &Value) -> Option<u64> {
    let text = number_text(v)?;
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let q: u64 = text.parse().ok()?;
    (q <= MAX_QUANTITY).then_some(q)
}

/// A price in hundredths: digits, optionally a point and digits, at most 2 significant
/// decimal places and 12 digits before the point.
fn parse_price(v: &Value) -> Option<u64> {
    let text = number_text(v)?;
    let (whole, frac) = match text.split_once('.') {
        Some((w, f)) if !f.is_empty() => (w, f),
        Some(_) => return None,
        None => (text.as_str(), ""),
    };
    if whole.is_empty()
        || whole.len() > PRICE_WHOLE_DIGITS
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let frac = frac.trim_end_matches('0');
    if frac.len() > 2 {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let mut cents: u64 = 0;
    for (i, d) in frac.bytes().enumerate() {
        cents += u64::from(d - b'0') * if i == 0 { 10 } else { 1 };
    }
    whole.checked_mul(100)?.checked_add(cents)
}

fn format_price(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Problems found in a request, gathered into one `invalid_request` error.
#[derive(Debug, Default)]
struct Problems {
    details: Vec<(String, &'static str, String)>,
    total: usize,
}

impl Problems {
    fn add(&mut self, field: impl Into<String>, code: &'static str, msg: impl Into<String>) {
        if self.details.len() < MAX_DETAILS {
            self.details.push((field.into(), code, msg.into()));
        }
        self.total += 1;
    }

    fn is_empty(&self) -> bool {
        self.total == 0
    }

    fn into_error(self) -> ApiError {
        let first = self
            .details
            .first()
            .map(|(_, _, m)| m.clone())
            .unwrap_or_default();
        let message = match self.total {
            0 | 1 => format!("the stock list is invalid: {first}"),
            n => format!(
                "the stock list is invalid: {first} (and {} more problems)",
                n - 1
            ),
        };
        let mut e = ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message);
        e.details = self.details;
        e
    }
}

/// Checks a required string member of an item.
fn item_string(o: &Map<String, Value>, name: &str, at: &str, p: &mut Problems) -> Option<String> {
    match o.get(name) {
        None | Some(Value::Null) => {
            p.add(
                format!("{at}.{name}"),
                "required",
                format!("{at}.{name} is required"),
            );
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            p.add(
                format!("{at}.{name}"),
                "invalid",
                format!("{at}.{name} must be a string, not {}", shown(other)),
            );
            None
        }
    }
}

/// Checks the structure of one item (`at` names it, like `items[3]`).
fn parse_item(v: &Value, at: &str, p: &mut Problems) -> Option<Item> {
    let Value::Object(o) = v else {
        p.add(
            at,
            "invalid",
            format!("{at} must be an object, not {}", shown(v)),
        );
        return None;
    };
    for k in o.keys() {
        if !matches!(k.as_str(), "sku" | "warehouse" | "quantity" | "price") {
            p.add(
                format!("{at}.{k}"),
                "unknown_field",
                format!(
                    "{at} has an unknown member '{}' (known: sku, warehouse, quantity, price)",
                    shorten(k)
                ),
            );
        }
    }
    let sku = item_string(o, "sku", at, p);
    let warehouse = item_string(o, "warehouse", at, p);
    let quantity = match o.get("quantity") {
        None | Some(Value::Null) => {
            p.add(
                format!("{at}.quantity"),
                "required",
                format!("{at}.quantity is required"),
            );
            None
        }
        Some(q) => Some(q.clone()),
    };
    let price = o.get("price").filter(|v| !v.is_null()).cloned();
    Some(Item {
        sku: sku?,
        warehouse: warehouse?,
        quantity: quantity?,
        price,
    })
}

// ---------------------------------------------------------------------------------------------
// The API

impl StockApi {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::from_seed(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Builds the backend from the text of a seed file.
    fn from_seed(text: &str) -> Result<Self, String> {
        let seed: Seed = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if seed.async_delay_ms > MAX_DELAY_MS {
            return Err(format!(
                "async_delay_ms: at most {MAX_DELAY_MS}, not {}",
                seed.async_delay_ms
            ));
        }
        if !(1..=MAX_MAX_ITEMS).contains(&seed.max_items) {
            return Err(format!(
                "max_items: from 1 to {MAX_MAX_ITEMS}, not {}",
                seed.max_items
            ));
        }
        let mut warehouses = Vec::new();
        let mut warehouse_codes = HashSet::new();
        for (i, w) in seed.warehouses.into_iter().enumerate() {
            if w.code.is_empty() {
                return Err(format!("warehouses[{i}].code is empty"));
            }
            if !warehouse_codes.insert(w.code.clone()) {
                return Err(format!("warehouse '{}' is defined twice", w.code));
            }
            warehouses.push((w.code, w.name));
        }
        let mut skus = HashSet::new();
        let mut add_sku = |sku: String| -> Result<(), String> {
            if sku.is_empty() {
                return Err("an SKU is empty".into());
            }
            if skus.contains(&sku) {
                return Err(format!("SKU '{sku}' is defined twice"));
            }
            skus.insert(sku);
            Ok(())
        };
        for sku in seed.skus {
            add_sku(sku)?;
        }
        if let Some(g) = &seed.generated_skus {
            if g.count > MAX_GENERATED || g.digits > 30 {
                return Err(format!(
                    "generated_skus: at most {MAX_GENERATED} SKUs of 30 digits"
                ));
            }
            for n in 1..=g.count {
                add_sku(format!("{}{n:0width$}", g.prefix, width = g.digits))?;
            }
        }
        let (instant, wall) = (Instant::now(), SystemTime::now());
        let wall_ms = wall
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let core = Core {
            delay: Duration::from_millis(seed.async_delay_ms),
            max_items: seed.max_items,
            warehouses,
            warehouse_codes,
            skus,
            epoch: (instant, wall_ms),
            state: Mutex::new(State::default()),
        };
        {
            let mut st = core.state.lock().unwrap_or_else(|p| p.into_inner());
            for (list, entries) in [
                (List::Main, &seed.stocks.main),
                (List::Extra, &seed.stocks.extra),
            ] {
                for (i, v) in entries.iter().enumerate() {
                    let at = format!("stocks.{}[{i}]", list.name());
                    let mut p = Problems::default();
                    let item = parse_item(v, &at, &mut p);
                    let item = match item {
                        Some(item) if p.is_empty() => item,
                        _ => {
                            let msg = p.details.first().map(|d| d.2.clone()).unwrap_or_default();
                            return Err(msg);
                        }
                    };
                    core.apply_item(&mut st, Action::Insert, list, &item)
                        .map_err(|m| format!("{at}: {m}"))?;
                }
            }
        }
        Ok(StockApi {
            core: Arc::new(core),
        })
    }

    pub async fn handle(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let headers = req.headers().clone();
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                let now = Instant::now();
                if let Some(reply) = self.core.unavailable(&path, now) {
                    return respond(reply);
                }
                let err = if e.is::<http_body_util::LengthLimitError>() {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body_too_large",
                        "the request body is larger than 4 MiB",
                    )
                } else {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_json",
                        format!("the request body could not be read: {e}"),
                    )
                };
                return err.into_response();
            }
        };
        let reply = self.route(&method, &path, &query, &headers, &body, Instant::now());
        if let Some(id) = reply.schedule.clone() {
            let api = self.clone();
            let delay = self.core.delay;
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                api.apply_batch(&id, Instant::now());
            });
        }
        respond(reply)
    }

    /// Answers a request (no socket needed). An accepted async batch is named in the reply's
    /// `schedule`; [`StockApi::apply_batch`] applies it.
    fn route(
        &self,
        method: &Method,
        path: &str,
        query: &str,
        headers: &HeaderMap,
        body: &[u8],
        now: Instant,
    ) -> Reply {
        self.core
            .route(method, path, query, headers, body, now)
            .unwrap_or_else(Reply::from)
    }

    /// Applies an accepted async batch; `false` (and nothing happens) when there is no such
    /// batch or it was applied already.
    fn apply_batch(&self, id: &str, now: Instant) -> bool {
        self.core.apply_batch(id, now)
    }
}

fn respond(reply: Reply) -> Response<Full<Bytes>> {
    let mut resp = json_response(reply.status, &reply.body);
    let headers = resp.headers_mut();
    if let Some(allow) = reply.allow {
        headers.insert(http::header::ALLOW, HeaderValue::from_static(allow));
    }
    if let Some(secs) = reply.retry_after {
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if reply.replayed {
        headers.insert(
            HeaderName::from_static(REPLAYED),
            HeaderValue::from_static("true"),
        );
    }
    resp
}

impl Core {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Milliseconds since the Unix epoch at `now`.
    fn ms(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.epoch.0).as_millis();
        self.epoch
            .1
            .saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
    }

    /// The 503 answer to a `/v1/...` request during an outage.
    fn unavailable(&self, path: &str, now: Instant) -> Option<Reply> {
        if !(path == "/v1" || path.starts_with("/v1/")) {
            return None;
        }
        let mut st = self.lock();
        let until = st.outage_until?;
        if now >= until {
            st.outage_until = None;
            return None;
        }
        st.counters.outage_rejections += 1;
        let left = until.duration_since(now);
        let left_ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
        let e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("the service is unavailable (simulated outage, {left_ms} ms left)"),
        );
        Some(Reply {
            retry_after: Some(left_ms.div_ceil(1000)),
            ..Reply::from(e)
        })
    }

    fn route(
        &self,
        method: &Method,
        path: &str,
        query: &str,
        headers: &HeaderMap,
        body: &[u8],
        now: Instant,
    ) -> Result<Reply, ApiError> {
        if let Some(reply) = self.unavailable(path, now) {
            return Ok(reply);
        }
        let segs: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
        match segs.as_slice() {
            ["_reference", "stats"] => {
                if method != Method::GET {
                    return Ok(Reply::not_allowed(method, path, "GET"));
                }
                Ok(Reply::new(StatusCode::OK, self.stats()))
            }
            ["_reference", "outage"] => {
                if method != Method::POST {
                    return Ok(Reply::not_allowed(method, path, "POST"));
                }
                self.outage(query, now)
            }
            ["v1", "stock-lists"] => {
                if method != Method::POST {
                    return Ok(Reply::not_allowed(method, path, "POST"));
                }
                self.post_stock_list(query, headers, body, now)
            }
            ["v1", "stock-batches", id] => {
                if method != Method::GET {
                    return Ok(Reply::not_allowed(method, path, "GET"));
                }
                let id = crate::percent_decode(id, false).ok_or_else(|| not_found_path(path))?;
                let st = self.lock();
                let batch = st
                    .batches
                    .get(&id)
                    .ok_or_else(|| not_found(format!("no batch '{}'", shorten(&id))))?;
                Ok(Reply::new(StatusCode::OK, batch.view()))
            }
            ["v1", "stocks", list, warehouse, sku] => {
                if method != Method::GET {
                    return Ok(Reply::not_allowed(method, path, "GET"));
                }
                let decode =
                    |s: &str| crate::percent_decode(s, false).ok_or_else(|| not_found_path(path));
                let (list_name, warehouse, sku) = (decode(list)?, decode(warehouse)?, decode(sku)?);
                let list = List::parse(&list_name).ok_or_else(|| {
                    not_found(format!(
                        "no stock list '{}' (lists: main, extra)",
                        shorten(&list_name)
                    ))
                })?;
                let st = self.lock();
                let stock = st
                    .stocks(list)
                    .get(&(warehouse.clone(), sku.clone()))
                    .ok_or_else(|| {
                        not_found(format!(
                            "no stock for {} in {} in the {} list",
                            shorten(&sku),
                            shorten(&warehouse),
                            list.name()
                        ))
                    })?;
                Ok(Reply::new(
                    StatusCode::OK,
                    json!({
                        "quantity": stock.quantity,
                        "price": stock.price.map(format_price),
                        "remote_id": stock.remote_id,
                    }),
                ))
            }
            ["v1", "warehouses"] => {
                if method != Method::GET {
                    return Ok(Reply::not_allowed(method, path, "GET"));
                }
                let list: Vec<Value> = self
                    .warehouses
                    .iter()
                    .map(|(code, name)| json!({"code": code, "name": name}))
                    .collect();
                Ok(Reply::new(StatusCode::OK, json!({ "warehouses": list })))
            }
            _ => Err(not_found_path(path)),
        }
    }

    fn stats(&self) -> Value {
        let st = self.lock();
        let c = &st.counters;
        let ongoing = st.batches.values().filter(|b| b.results.is_none()).count();
        json!({
            "deliveries": c.deliveries,
            "duplicate_deliveries": c.duplicate_deliveries,
            "conflicts": c.conflicts,
            "applications": c.applications,
            "items_applied": c.items_applied,
            "items_failed": c.items_failed,
            "batches_ongoing": ongoing,
            "outage_rejections": c.outage_rejections,
            "applications_by_key": c.by_key,
        })
    }

    fn outage(&self, query: &str, now: Instant) -> Result<Reply, ApiError> {
        let mut ms = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if crate::percent_decode(k, true).as_deref() == Some("ms") {
                ms = Some(crate::percent_decode(v, true).unwrap_or_default());
            }
        }
        let text =
            ms.ok_or_else(|| bad_request("ms", "required", "the query parameter ms is required"))?;
        let ms = text
            .parse::<u64>()
            .ok()
            .filter(|ms| *ms <= MAX_OUTAGE_MS)
            .ok_or_else(|| {
                bad_request(
                    "ms",
                    "invalid",
                    format!(
                        "ms must be an integer from 0 to {MAX_OUTAGE_MS}, not '{}'",
                        shorten(&text)
                    ),
                )
            })?;
        let until = now
            .checked_add(Duration::from_millis(ms))
            .ok_or_else(|| bad_request("ms", "invalid", "ms reaches beyond the clock's range"))?;
        self.lock().outage_until = (ms > 0).then_some(until);
        Ok(Reply::new(StatusCode::OK, json!({ "outage_ms": ms })))
    }

    /// Reads `mode` from the query (`async` when absent).
    fn mode(query: &str) -> Result<Mode, ApiError> {
        let mut mode = Mode::Async;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if crate::percent_decode(k, true).as_deref() != Some("mode") {
                continue;
            }
            mode = match crate::percent_decode(v, true).as_deref() {
                Some("sync") => Mode::Sync,
                Some("async") => Mode::Async,
                _ => {
                    return Err(bad_request(
                        "mode",
                        "invalid",
                        format!("mode must be 'sync' or 'async', not '{}'", shorten(v)),
                    ));
                }
            };
        }
        Ok(mode)
    }

    /// Reads the `Idempotency-Key` header.
    fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
        const F: &str = "Idempotency-Key";
        let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
        let Some(v) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(bad_request(
                F,
                "invalid",
                "the Idempotency-Key header is given more than once",
            ));
        }
        let s = v.to_str().map_err(|_| {
            bad_request(
                F,
                "invalid",
                "the Idempotency-Key header must be visible ASCII characters",
            )
        })?;
        let n = s.chars().count();
        if !(1..=KEY_MAX).contains(&n) {
            return Err(bad_request(
                F,
                "invalid",
                format!("the Idempotency-Key header must be 1 to {KEY_MAX} characters, not {n}"),
            ));
        }
        Ok(Some(s.to_string()))
    }

    /// Parses a stock list body; also returns its fingerprint (the request as compared for
    /// idempotency, defaults filled in).
    fn parse_stock_list(&self, body: &[u8]) -> Result<(StockList, Value), ApiError> {
        let o = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(o)) => o,
            Ok(other) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_json",
                    format!("the body must be a JSON object, not {}", shown(&other)),
                ));
            }
            Err(e) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_json",
                    format!("the body is not valid JSON: {e}"),
                ));
            }
        };
        let mut p = Problems::default();
        for k in o.keys() {
            if !matches!(k.as_str(), "action" | "list" | "items") {
                p.add(
                    k.clone(),
                    "unknown_field",
                    format!(
                        "unknown member '{}' (known: action, list, items)",
                        shorten(k)
                    ),
                );
            }
        }
        let action = match o.get("action") {
            None | Some(Value::Null) => {
                p.add("action", "required", "action is required");
                None
            }
            Some(Value::String(s)) if s == "insert" => Some(Action::Insert),
            Some(Value::String(s)) if s == "update" => Some(Action::Update),
            Some(other) => {
                p.add(
                    "action",
                    "invalid",
                    format!("action must be 'insert' or 'update', not {}", shown(other)),
                );
                None
            }
        };
        let list = match o.get("list") {
            None | Some(Value::Null) => Some(List::Main),
            Some(Value::String(s)) if List::parse(s).is_some() => List::parse(s),
            Some(other) => {
                p.add(
                    "list",
                    "invalid",
                    format!("list must be 'main' or 'extra', not {}", shown(other)),
                );
                None
            }
        };
        let mut items = Vec::new();
        let raw_items = match o.get("items") {
            None | Some(Value::Null) => {
                p.add("items", "required", "items is required");
                None
            }
            Some(Value::Array(a)) if a.len() > self.max_items => {
                p.add(
                    "items",
                    "too_many",
                    format!(
                        "items may hold at most {} items, not {}",
                        self.max_items,
                        a.len()
                    ),
                );
                None
            }
            Some(Value::Array(a)) => {
                for (i, v) in a.iter().enumerate() {
                    if let Some(item) = parse_item(v, &format!("items[{i}]"), &mut p) {
                        items.push(item);
                    }
                }
                Some(a)
            }
            Some(other) => {
                p.add(
                    "items",
                    "invalid",
                    format!("items must be a list, not {}", shown(other)),
                );
                None
            }
        };
        match (action, list, raw_items) {
            (Some(action), Some(list), Some(raw)) if p.is_empty() => {
                let fingerprint = json!({
                    "action": action.name(),
                    "list": list.name(),
                    "items": raw,
                });
                Ok((
                    StockList {
                        action,
                        list,
                        items,
                    },
                    fingerprint,
                ))
            }
            _ => Err(p.into_error()),
        }
    }

    fn post_stock_list(
        &self,
        query: &str,
        headers: &HeaderMap,
        body: &[u8],
        now: Instant,
    ) -> Result<Reply, ApiError> {
        let mode = Self::mode(query)?;
        let key = Self::idempotency_key(headers)?;
        if mode == Mode::Async && key.is_none() {
            return Err(bad_request(
                "Idempotency-Key",
                "required",
                "the Idempotency-Key header is required for mode=async",
            ));
        }
        let (list, request) = self.parse_stock_list(body)?;
        let fingerprint = json!({"mode": mode.name(), "request": request});
        let mut st = self.lock();
        if let Some(k) = &key {
            let replay = match st.keys.get(k) {
                None => None,
                Some(used) if *used.fingerprint() != fingerprint => {
                    st.counters.conflicts += 1;
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        "idempotency_conflict",
                        format!(
                            "the Idempotency-Key '{}' was already used for a different request",
                            shorten(k)
                        ),
                    )
                    .field(
                        "Idempotency-Key",
                        "conflict",
                        "the key belongs to another request",
                    ));
                }
                Some(KeyUse::Sync { answer, .. }) => Some(answer.clone()),
                Some(KeyUse::Async { batch, .. }) => Some(
                    st.batches
                        .get(batch)
                        .map(Batch::view)
                        .unwrap_or(Value::Null),
                ),
            };
            if let Some(answer) = replay {
                st.counters.duplicate_deliveries += 1;
                return Ok(Reply {
                    replayed: true,
                    ..Reply::new(StatusCode::OK, answer)
                });
            }
        }
        st.counters.deliveries += 1;
        match mode {
            Mode::Sync => {
                let results = self.apply(&mut st, &list);
                let answer = json!({"status": "done", "results": results});
                if let Some(k) = key {
                    *st.counters.by_key.entry(k.clone()).or_insert(0) += 1;
                    st.keys.insert(
                        k,
                        KeyUse::Sync {
                            fingerprint,
                            answer: answer.clone(),
                        },
                    );
                }
                Ok(Reply::new(StatusCode::OK, answer))
            }
            Mode::Async => {
                // `key` is present: checked above.
                let k = key.unwrap_or_default();
                st.batch_seq += 1;
                let id = format!("RB-{:06}", st.batch_seq);
                let batch = Batch {
                    id: id.clone(),
                    key: k.clone(),
                    pending: Some(list),
                    results: None,
                    received_at: self.ms(now),
                    applied_at: None,
                };
                let view = batch.view();
                st.batches.insert(id.clone(), batch);
                st.counters.by_key.entry(k.clone()).or_insert(0);
                st.keys.insert(
                    k,
                    KeyUse::Async {
                        fingerprint,
                        batch: id.clone(),
                    },
                );
                Ok(Reply {
                    schedule: Some(id),
                    ..Reply::new(StatusCode::ACCEPTED, view)
                })
            }
        }
    }

    fn apply_batch(&self, id: &str, now: Instant) -> bool {
        let mut st = self.lock();
        let Some((list, key)) = st
            .batches
            .get_mut(id)
            .and_then(|b| Some((b.pending.take()?, b.key.clone())))
        else {
            return false;
        };
        let results = self.apply(&mut st, &list);
        *st.counters.by_key.entry(key).or_insert(0) += 1;
        let applied_at = self.ms(now);
        if let Some(b) = st.batches.get_mut(id) {
            b.results = Some(results);
            b.applied_at = Some(applied_at);
        }
        true
    }

    /// Applies a stock list and counts it; returns the item results.
    fn apply(&self, st: &mut State, list: &StockList) -> Value {
        let mut results = Vec::with_capacity(list.items.len());
        let (mut ok, mut failed) = (0, 0);
        for item in &list.items {
            let outcome = self.apply_item(st, list.action, list.list, item);
            let (status, remote_id, message) = match outcome {
                Ok((remote_id, message)) => {
                    ok += 1;
                    ("SUCCESS", Value::String(remote_id), message.to_string())
                }
                Err(message) => {
                    failed += 1;
                    ("FAIL", Value::Null, message)
                }
            };
            results.push(json!({
                "sku": item.sku,
                "warehouse": item.warehouse,
                "status": status,
                "remote_id": remote_id,
                "message": message,
            }));
        }
        st.counters.applications += 1;
        st.counters.items_applied += ok;
        st.counters.items_failed += failed;
        Value::Array(results)
    }

    /// Applies one item: the remote id and the success message, or the failure message.
    fn apply_item(
        &self,
        st: &mut State,
        action: Action,
        list: List,
        item: &Item,
    ) -> Result<(String, &'static str), String> {
        let (sku, wh) = (&item.sku, &item.warehouse);
        if !self.skus.contains(sku) {
            return Err(format!("unknown SKU '{sku}'"));
        }
        if !self.warehouse_codes.contains(wh) {
            return Err(format!("unknown warehouse '{wh}'"));
        }
        let quantity = parse_quantity(&item.quantity).ok_or("invalid quantity")?;
        let price = match &item.price {
            None => None,
            Some(v) => Some(parse_price(v).ok_or("invalid price")?),
        };
        let key = (wh.clone(), sku.clone());
        match (action, st.stocks(list).contains_key(&key)) {
            (Action::Insert, true) => Err(format!(
                "stock already exists for {sku} in {wh}; use update"
            )),
            (Action::Update, false) => Err(format!("no stock for {sku} in {wh}; use insert")),
            (Action::Insert, false) => {
                st.remote_seq += 1;
                let remote_id = format!("ST-{:06}", st.remote_seq);
                st.stocks_mut(list).insert(
                    key,
                    Stock {
                        quantity,
                        price,
                        remote_id: remote_id.clone(),
                    },
                );
                Ok((remote_id, "stock created"))
            }
            (Action::Update, true) => {
                let Some(stock) = st.stocks_mut(list).get_mut(&key) else {
                    return Err(format!("no stock for {sku} in {wh}; use insert"));
                };
                stock.quantity = quantity;
                if price.is_some() {
                    stock.price = price;
                }
                Ok((stock.remote_id.clone(), "stock updated"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/reference/stock.json")
    }

    fn api() -> StockApi {
        StockApi::load(&fixture()).expect("fixture loads")
    }

    fn headers(key: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(k) = key {
            h.insert(IDEMPOTENCY_KEY, HeaderValue::from_str(k).unwrap());
        }
        h
    }

    fn post(api: &StockApi, query: &str, key: Option<&str>, body: &str, now: Instant) -> Reply {
        api.route(
            &Method::POST,
            "/v1/stock-lists",
            query,
            &headers(key),
            body.as_bytes(),
            now,
        )
    }

    fn sync(api: &StockApi, body: &str) -> Reply {
        post(api, "mode=sync", None, body, Instant::now())
    }

    fn get(api: &StockApi, path: &str, now: Instant) -> Reply {
        api.route(&Method::GET, path, "", &HeaderMap::new(), b"", now)
    }

    fn stats(api: &StockApi) -> Value {
        get(api, "/_reference/stats", Instant::now()).body
    }

    fn stock(api: &StockApi, list: &str, wh: &str, sku: &str) -> Value {
        let r = get(
            api,
            &format!("/v1/stocks/{list}/{wh}/{sku}"),
            Instant::now(),
        );
        if r.status == StatusCode::NOT_FOUND {
            return Value::Null;
        }
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body
    }

    fn body(action: &str, list: Option<&str>, items: Value) -> String {
        let mut v = json!({"action": action, "items": items});
        if let Some(l) = list {
            v["list"] = json!(l);
        }
        v.to_string()
    }

    fn results(r: &Reply) -> Vec<Value> {
        r.body["results"].as_array().cloned().unwrap_or_default()
    }

    fn error_code(r: &Reply) -> &str {
        r.body["error"]["code"].as_str().unwrap_or("")
    }

    fn detail_fields(r: &Reply) -> Vec<String> {
        r.body["error"]["details"]
            .as_array()
            .map(|d| {
                d.iter()
                    .map(|x| x["field"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn fixture_loads() {
        let api = api();
        assert_eq!(api.core.skus.len(), 5004);
        for sku in [
            "AKN-TSHIRT-S",
            "AKN-TSHIRT-M",
            "AKN-TSHIRT-L",
            "AKN-MUG-01",
            "SKU-00001",
            "SKU-05000",
        ] {
            assert!(api.core.skus.contains(sku), "{sku}");
        }
        assert!(!api.core.skus.contains("SKU-05001"));
        assert!(!api.core.skus.contains("SKU-0001"));
        assert_eq!(api.core.delay, Duration::from_millis(300));
        assert_eq!(api.core.max_items, 10_000);
        let r = get(&api, "/v1/warehouses", Instant::now());
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            r.body,
            json!({"warehouses": [
                {"code": "WH-IST", "name": "İstanbul"},
                {"code": "WH-ANK", "name": "Ankara"},
                {"code": "WH-IZM", "name": "İzmir"}
            ]})
        );
        assert_eq!(
            stock(&api, "main", "WH-IST", "AKN-TSHIRT-S"),
            json!({"quantity": 10, "price": "199.90", "remote_id": "ST-000001"})
        );
        assert_eq!(
            stock(&api, "main", "WH-IST", "AKN-TSHIRT-M"),
            json!({"quantity": 4, "price": "199.90", "remote_id": "ST-000002"})
        );
        assert_eq!(stock(&api, "extra", "WH-IST", "AKN-TSHIRT-S"), Value::Null);
        assert_eq!(stock(&api, "main", "WH-ANK", "AKN-TSHIRT-S"), Value::Null);
        // Seed stocks are not counted.
        let s = stats(&api);
        assert_eq!(s["applications"], 0);
        assert_eq!(s["items_applied"], 0);
        assert_eq!(s["applications_by_key"], json!({}));
    }

    #[test]
    fn sync_insert_and_update_with_every_failure() {
        let api = api();
        let r = sync(
            &api,
            &body(
                "insert",
                None,
                json!([
                    {"sku": "AKN-TSHIRT-L", "warehouse": "WH-IST", "quantity": 7, "price": 219.9},
                    {"sku": "NOPE", "warehouse": "WH-IST", "quantity": 1},
                    {"sku": "AKN-MUG-01", "warehouse": "WH-XXX", "quantity": 1},
                    {"sku": "AKN-MUG-01", "warehouse": "WH-ANK", "quantity": -1},
                    {"sku": "AKN-MUG-01", "warehouse": "WH-ANK", "quantity": 1.5},
                    {"sku": "AKN-MUG-01", "warehouse": "WH-ANK", "quantity": "x"},
                    {"sku": "AKN-MUG-01", "warehouse": "WH-ANK", "quantity": 2, "price": "1.999"},
                    {"sku": "AKN-TSHIRT-S", "warehouse": "WH-IST", "quantity": 3},
                    {"sku": "AKN-MUG-01", "warehouse": "WH-ANK", "quantity": "12"},
                    {"sku": "AKN-MUG-01", "warehouse": "WH-ANK", "quantity": 5}
                ]),
            ),
        );
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["status"], "done");
        let res = results(&r);
        assert_eq!(res.len(), 10);
        assert_eq!(
            res[0],
            json!({"sku": "AKN-TSHIRT-L", "warehouse": "WH-IST", "status": "SUCCESS",
                   "remote_id": "ST-000003", "message": "stock created"})
        );
        assert_eq!(
            res[1],
            json!({"sku": "NOPE", "warehouse": "WH-IST", "status": "FAIL",
                   "remote_id": null, "message": "unknown SKU 'NOPE'"})
        );
        assert_eq!(res[2]["message"], "unknown warehouse 'WH-XXX'");
        assert_eq!(res[3]["message"], "invalid quantity");
        assert_eq!(res[4]["message"], "invalid quantity");
        assert_eq!(res[5]["message"], "invalid quantity");
        assert_eq!(res[6]["message"], "invalid price");
        assert_eq!(
            res[7]["message"],
            "stock already exists for AKN-TSHIRT-S in WH-IST; use update"
        );
        assert_eq!(res[8]["status"], "SUCCESS");
        assert_eq!(res[8]["remote_id"], "ST-000004");
        // The same stock again in the same list fails: items see the earlier ones.
        assert_eq!(
            res[9]["message"],
            "stock already exists for AKN-MUG-01 in WH-ANK; use update"
        );
        for (i, x) in res.iter().enumerate() {
            let ok = x["status"] == "SUCCESS";
            assert_eq!(ok, [0, 8].contains(&i), "{i}: {x}");
            assert_eq!(x["remote_id"].is_null(), !ok, "{i}: {x}");
        }
        assert_eq!(
            stock(&api, "main", "WH-IST", "AKN-TSHIRT-L"),
            json!({"quantity": 7, "price": "219.90", "remote_id": "ST-000003"})
        );
        assert_eq!(
            stock(&api, "main", "WH-ANK", "AKN-MUG-01"),
            json!({"quantity": 12, "price": null, "remote_id": "ST-000004"})
        );
        // The seeded stock is untouched by the failed insert.
        assert_eq!(
            stock(&api, "main", "WH-IST", "AKN-TSHIRT-S")["quantity"],
            10
        );

        let r = sync(
            &api,
            &body(
                "update",
                Some("main"),
                json!([
                    {"sku": "AKN-TSHIRT-S", "warehouse": "WH-IST", "quantity": 0},
                    {"sku": "AKN-TSHIRT-M", "warehouse": "WH-IST", "quantity": 9, "price": "149"},
                    {"sku": "AKN-TSHIRT-L", "warehouse": "WH-ANK", "quantity": 1},
                    {"sku": "SKU-04999", "warehouse": "WH-IZM", "quantity": 1}
                ]),
            ),
        );
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let res = results(&r);
        assert_eq!(
            res[0],
            json!({"sku": "AKN-TSHIRT-S", "warehouse": "WH-IST", "status": "SUCCESS",
                   "remote_id": "ST-000001", "message": "stock updated"})
        );
        assert_eq!(res[1]["remote_id"], "ST-000002");
        assert_eq!(
            res[2]["message"],
            "no stock for AKN-TSHIRT-L in WH-ANK; use insert"
        );
        assert_eq!(
            res[3]["message"],
            "no stock for SKU-04999 in WH-IZM; use insert"
        );
        // An update without price keeps the price.
        assert_eq!(
            stock(&api, "main", "WH-IST", "AKN-TSHIRT-S"),
            json!({"quantity": 0, "price": "199.90", "remote_id": "ST-000001"})
        );
        assert_eq!(
            stock(&api, "main", "WH-IST", "AKN-TSHIRT-M"),
            json!({"quantity": 9, "price": "149.00", "remote_id": "ST-000002"})
        );
        let s = stats(&api);
        assert_eq!(s["deliveries"], 2);
        assert_eq!(s["applications"], 2);
        assert_eq!(s["items_applied"], 4);
        assert_eq!(s["items_failed"], 10);
        assert_eq!(s["applications_by_key"], json!({}));
    }

    #[test]
    fn remote_ids_are_assigned_once_and_reused() {
        let api = api();
        let item = json!([{"sku": "SKU-00042", "warehouse": "WH-IZM", "quantity": 1}]);
        let r = sync(&api, &body("insert", None, item.clone()));
        assert_eq!(results(&r)[0]["remote_id"], "ST-000003");
        for q in 2..5 {
            let items = json!([{"sku": "SKU-00042", "warehouse": "WH-IZM", "quantity": q}]);
            let r = sync(&api, &body("update", None, items));
            assert_eq!(results(&r)[0]["remote_id"], "ST-000003");
        }
        // A failed insert uses no id; the next new stock gets the next one.
        let r = sync(&api, &body("insert", None, item));
        assert_eq!(results(&r)[0]["status"], "FAIL");
        let r = sync(
            &api,
            &body(
                "insert",
                None,
                json!([{"sku": "SKU-00043", "warehouse": "WH-IZM", "quantity": 1}]),
            ),
        );
        assert_eq!(results(&r)[0]["remote_id"], "ST-000004");
        assert_eq!(
            stock(&api, "main", "WH-IZM", "SKU-00042"),
            json!({"quantity": 4, "price": null, "remote_id": "ST-000003"})
        );
    }

    #[test]
    fn extra_and_main_lists_are_separate() {
        let api = api();
        let items =
            json!([{"sku": "AKN-TSHIRT-S", "warehouse": "WH-IST", "quantity": 2, "price": "5.5"}]);
        // Update in extra fails: the stock exists only in main.
        let r = sync(&api, &body("update", Some("extra"), items.clone()));
        assert_eq!(
            results(&r)[0]["message"],
            "no stock for AKN-TSHIRT-S in WH-IST; use insert"
        );
        let r = sync(&api, &body("insert", Some("extra"), items.clone()));
        assert_eq!(results(&r)[0]["status"], "SUCCESS");
        assert_eq!(results(&r)[0]["remote_id"], "ST-000003");
        assert_eq!(
            stock(&api, "extra", "WH-IST", "AKN-TSHIRT-S"),
            json!({"quantity": 2, "price": "5.50", "remote_id": "ST-000003"})
        );
        assert_eq!(
            stock(&api, "main", "WH-IST", "AKN-TSHIRT-S"),
            json!({"quantity": 10, "price": "199.90", "remote_id": "ST-000001"})
        );
        // Insert into main of the same stock still fails (it exists there).
        let r = sync(&api, &body("insert", Some("main"), items));
        assert_eq!(results(&r)[0]["status"], "FAIL");
        let r = get(&api, "/v1/stocks/other/WH-IST/AKN-TSHIRT-S", Instant::now());
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(error_code(&r), "not_found");
    }

    #[test]
    fn async_batch_lifecycle_and_duplicates() {
        let api = api();
        let t0 = Instant::now();
        let b = body(
            "insert",
            None,
            json!([
                {"sku": "SKU-00001", "warehouse": "WH-ANK", "quantity": 3},
                {"sku": "NOPE", "warehouse": "WH-ANK", "quantity": 3}
            ]),
        );
        let r = post(&api, "", Some("k-1"), &b, t0);
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
        assert_eq!(r.schedule.as_deref(), Some("RB-000001"));
        assert!(!r.replayed);
        assert_eq!(r.body["batch_id"], "RB-000001");
        assert_eq!(r.body["status"], "ongoing");
        assert!(r.body["applied_at"].is_null());
        assert!(r.body.get("results").is_none());
        let received = r.body["received_at"].as_u64().unwrap();
        assert_eq!(received, api.core.ms(t0));
        // Nothing applied yet.
        assert_eq!(stock(&api, "main", "WH-ANK", "SKU-00001"), Value::Null);
        let s = stats(&api);
        assert_eq!(s["deliveries"], 1);
        assert_eq!(s["applications"], 0);
        assert_eq!(s["batches_ongoing"], 1);
        assert_eq!(s["applications_by_key"], json!({"k-1": 0}));

        let g = get(&api, "/v1/stock-batches/RB-000001", t0);
        assert_eq!(g.status, StatusCode::OK);
        assert_eq!(g.body, r.body);

        // The same key while ongoing: the same batch, not applied, not scheduled again.
        let d = post(&api, "mode=async", Some("k-1"), &b, t0);
        assert_eq!(d.status, StatusCode::OK);
        assert!(d.replayed);
        assert!(d.schedule.is_none());
        assert_eq!(d.body, r.body);

        let t1 = t0 + Duration::from_millis(300);
        assert!(api.apply_batch("RB-000001", t1));
        assert!(!api.apply_batch("RB-000001", t1), "applied only once");
        assert!(!api.apply_batch("RB-000009", t1));

        let g = get(&api, "/v1/stock-batches/RB-000001", t1);
        assert_eq!(g.body["status"], "done");
        assert_eq!(g.body["received_at"].as_u64(), Some(received));
        assert_eq!(g.body["applied_at"].as_u64(), Some(received + 300));
        let res = g.body["results"].as_array().unwrap();
        assert_eq!(res.len(), 2);
        assert_eq!(res[0]["status"], "SUCCESS");
        assert_eq!(res[0]["remote_id"], "ST-000003");
        assert_eq!(res[1]["message"], "unknown SKU 'NOPE'");
        assert_eq!(stock(&api, "main", "WH-ANK", "SKU-00001")["quantity"], 3);

        // The same key after done: the done batch, still applied once.
        let d = post(&api, "", Some("k-1"), &b, t1);
        assert_eq!(d.status, StatusCode::OK);
        assert!(d.replayed);
        assert_eq!(d.body, g.body);

        // The same key with another body, or as sync: 409, nothing recorded.
        let other = body(
            "update",
            None,
            json!([{"sku": "SKU-00001", "warehouse": "WH-ANK", "quantity": 3}]),
        );
        let c = post(&api, "", Some("k-1"), &other, t1);
        assert_eq!(c.status, StatusCode::CONFLICT);
        assert_eq!(error_code(&c), "idempotency_conflict");
        let c = post(&api, "mode=sync", Some("k-1"), &b, t1);
        assert_eq!(c.status, StatusCode::CONFLICT);

        let s = stats(&api);
        assert_eq!(s["deliveries"], 1);
        assert_eq!(s["duplicate_deliveries"], 2);
        assert_eq!(s["conflicts"], 2);
        assert_eq!(s["applications"], 1);
        assert_eq!(s["items_applied"], 1);
        assert_eq!(s["items_failed"], 1);
        assert_eq!(s["batches_ongoing"], 0);
        assert_eq!(s["applications_by_key"], json!({"k-1": 1}));
    }

    #[test]
    fn explicit_default_list_is_the_same_request() {
        let api = api();
        let items = json!([{"sku": "SKU-00001", "warehouse": "WH-ANK", "quantity": 3}]);
        let now = Instant::now();
        let r = post(
            &api,
            "",
            Some("k"),
            &body("insert", None, items.clone()),
            now,
        );
        assert_eq!(r.status, StatusCode::ACCEPTED);
        // Members in another order with "list": "main" spelled out.
        let again = format!(r#"{{"items": {items}, "list": "main", "action": "insert"}}"#);
        let d = post(&api, "", Some("k"), &again, now);
        assert_eq!(d.status, StatusCode::OK, "{}", d.body);
        let c = post(
            &api,
            "",
            Some("k"),
            &body("insert", Some("extra"), items),
            now,
        );
        assert_eq!(c.status, StatusCode::CONFLICT);
    }

    #[test]
    fn applications_by_key_counts_every_key_exactly() {
        let api = api();
        let now = Instant::now();
        let mut ids = Vec::new();
        for i in 0..5 {
            let items =
                json!([{"sku": format!("SKU-{:05}", i + 1), "warehouse": "WH-IZM", "quantity": i}]);
            let r = post(
                &api,
                "mode=async",
                Some(&format!("a-{i}")),
                &body("insert", None, items),
                now,
            );
            assert_eq!(r.status, StatusCode::ACCEPTED);
            ids.push(r.schedule.unwrap());
        }
        // Redeliver a few keys, before and after applying.
        for i in [0, 2] {
            let items =
                json!([{"sku": format!("SKU-{:05}", i + 1), "warehouse": "WH-IZM", "quantity": i}]);
            let r = post(
                &api,
                "",
                Some(&format!("a-{i}")),
                &body("insert", None, items),
                now,
            );
            assert_eq!(r.status, StatusCode::OK);
        }
        for id in &ids {
            assert!(api.apply_batch(id, now));
            assert!(!api.apply_batch(id, now));
        }
        let items = json!([{"sku": "SKU-00001", "warehouse": "WH-IZM", "quantity": 9}]);
        let u = body("update", None, items);
        let r = post(&api, "mode=sync", Some("s-1"), &u, now);
        assert_eq!(r.status, StatusCode::OK);
        assert!(!r.replayed);
        // A sync replay answers the stored result without applying.
        let again = post(&api, "mode=sync", Some("s-1"), &u, now);
        assert_eq!(again.status, StatusCode::OK);
        assert!(again.replayed);
        assert_eq!(again.body, r.body);
        // Sync without key: counted in applications only.
        assert_eq!(sync(&api, &u).status, StatusCode::OK);
        assert_eq!(sync(&api, &u).status, StatusCode::OK);
        for i in [1, 3] {
            let items =
                json!([{"sku": format!("SKU-{:05}", i + 1), "warehouse": "WH-IZM", "quantity": i}]);
            post(
                &api,
                "",
                Some(&format!("a-{i}")),
                &body("insert", None, items),
                now,
            );
        }

        let s = stats(&api);
        assert_eq!(
            s["applications_by_key"],
            json!({"a-0": 1, "a-1": 1, "a-2": 1, "a-3": 1, "a-4": 1, "s-1": 1})
        );
        assert_eq!(s["deliveries"], 8);
        assert_eq!(s["duplicate_deliveries"], 5);
        assert_eq!(s["applications"], 8);
        assert_eq!(s["items_applied"], 8);
        assert_eq!(s["items_failed"], 0);
        assert_eq!(stock(&api, "main", "WH-IZM", "SKU-00001")["quantity"], 9);
    }

    #[test]
    fn idempotency_key_and_mode_are_checked() {
        let api = api();
        let now = Instant::now();
        let b = body(
            "insert",
            None,
            json!([{"sku": "SKU-00001", "warehouse": "WH-ANK", "quantity": 3}]),
        );
        let r = post(&api, "", None, &b, now);
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(error_code(&r), "invalid_request");
        assert_eq!(detail_fields(&r), ["Idempotency-Key"]);
        let r = post(&api, "mode=async", Some(""), &b, now);
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        let r = post(&api, "mode=sync", Some(&"k".repeat(201)), &b, now);
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(detail_fields(&r), ["Idempotency-Key"]);
        let mut h = headers(Some("a"));
        h.append(IDEMPOTENCY_KEY, HeaderValue::from_static("b"));
        let r = api.route(&Method::POST, "/v1/stock-lists", "", &h, b.as_bytes(), now);
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        let mut h = HeaderMap::new();
        h.insert(
            IDEMPOTENCY_KEY,
            HeaderValue::from_bytes(b"k\xc3\xa9").unwrap(),
        );
        let r = api.route(&Method::POST, "/v1/stock-lists", "", &h, b.as_bytes(), now);
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        let r = post(&api, "mode=later", Some("k"), &b, now);
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(detail_fields(&r), ["mode"]);
        // Nothing was recorded by the refused requests.
        let s = stats(&api);
        assert_eq!(s["deliveries"], 0);
        assert_eq!(s["applications_by_key"], json!({}));
        let r = post(&api, "mode=async", Some(&"k".repeat(200)), &b, now);
        assert_eq!(r.status, StatusCode::ACCEPTED);
        assert_eq!(r.body["batch_id"], "RB-000001");
        let r = post(&api, "mode=async&x=1", Some("k2"), &b, now);
        assert_eq!(r.body["batch_id"], "RB-000002");
    }

    #[test]
    fn bad_bodies_are_refused_naming_the_field() {
        let api = api();
        let item = json!({"sku": "SKU-00001", "warehouse": "WH-ANK", "quantity": 1});
        let cases: Vec<(String, &str, Vec<&str>)> = vec![
            ("".into(), "invalid_json", vec![]),
            ("{".into(), "invalid_json", vec![]),
            ("[]".into(), "invalid_json", vec![]),
            ("\"x\"".into(), "invalid_json", vec![]),
            (
                json!({"action": "delete", "items": [item]}).to_string(),
                "invalid_request",
                vec!["action"],
            ),
            (
                json!({"items": [item]}).to_string(),
                "invalid_request",
                vec!["action"],
            ),
            (
                json!({"action": 1, "items": [item]}).to_string(),
                "invalid_request",
                vec!["action"],
            ),
            (
                json!({"action": "insert", "list": "other", "items": [item]}).to_string(),
                "invalid_request",
                vec!["list"],
            ),
            (
                json!({"action": "insert", "items": {"a": 1}}).to_string(),
                "invalid_request",
                vec!["items"],
            ),
            (
                json!({"action": "insert"}).to_string(),
                "invalid_request",
                vec!["items"],
            ),
            (
                json!({"action": "insert", "items": [item], "extra": 1}).to_string(),
                "invalid_request",
                vec!["extra"],
            ),
            (
                json!({"action": "insert", "items": [item, 5]}).to_string(),
                "invalid_request",
                vec!["items[1]"],
            ),
            (
                json!({"action": "insert", "items": [{"warehouse": "WH-ANK", "quantity": 1}]})
                    .to_string(),
                "invalid_request",
                vec!["items[0].sku"],
            ),
            (
                json!({"action": "insert", "items": [{"sku": "SKU-00001", "quantity": 1}]})
                    .to_string(),
                "invalid_request",
                vec!["items[0].warehouse"],
            ),
            (
                json!({"action": "insert", "items": [item, {"sku": "SKU-00001", "warehouse": "WH-ANK", "quantity": null}]})
                    .to_string(),
                "invalid_request",
                vec!["items[1].quantity"],
            ),
            (
                json!({"action": "insert", "items": [{"sku": 1, "warehouse": "WH-ANK", "quantity": 1, "qty": 1}]})
                    .to_string(),
                "invalid_request",
                vec!["items[0].qty", "items[0].sku"],
            ),
            (
                json!({"action": "upsert", "list": 3, "items": 4}).to_string(),
                "invalid_request",
                vec!["action", "list", "items"],
            ),
        ];
        for (b, code, fields) in cases {
            let r = sync(&api, &b);
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{b}: {}", r.body);
            assert_eq!(error_code(&r), code, "{b}: {}", r.body);
            assert_eq!(detail_fields(&r), fields, "{b}: {}", r.body);
            assert!(
                r.body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()),
                "{b}"
            );
        }
        let s = stats(&api);
        assert_eq!(s["deliveries"], 0);
        assert_eq!(s["applications"], 0);
    }

    #[test]
    fn at_most_max_items() {
        let seed = std::fs::read_to_string(fixture())
            .unwrap()
            .replace(r#""max_items": 10000"#, r#""max_items": 3"#);
        let api = StockApi::from_seed(&seed).unwrap();
        let items: Vec<Value> = (1..=4)
            .map(|i| json!({"sku": format!("SKU-{i:05}"), "warehouse": "WH-IZM", "quantity": i}))
            .collect();
        let r = sync(&api, &body("insert", None, json!(items)));
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(detail_fields(&r), ["items"]);
        assert_eq!(r.body["error"]["details"][0]["code"], "too_many");
        let r = sync(&api, &body("insert", None, json!(items[..3])));
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(results(&r).len(), 3);
        // Many broken items give at most MAX_DETAILS details.
        let broken: Vec<Value> = (0..3).map(|_| json!({})).collect();
        let r = sync(&api, &body("insert", None, json!(broken)));
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(detail_fields(&r).len(), 9);
    }

    #[test]
    fn a_full_stock_list_of_ten_thousand_items() {
        let api = api();
        let items: Vec<Value> = (1..=10_000)
            .map(|i| {
                json!({
                    "sku": format!("SKU-{:05}", (i - 1) % 5000 + 1),
                    "warehouse": if i <= 5000 { "WH-ANK" } else { "WH-IZM" },
                    "quantity": i,
                    "price": format!("{i}.5"),
                })
            })
            .collect();
        let now = Instant::now();
        let r = post(
            &api,
            "",
            Some("big"),
            &body("insert", None, json!(items)),
            now,
        );
        assert_eq!(r.status, StatusCode::ACCEPTED);
        assert!(api.apply_batch("RB-000001", now));
        let s = stats(&api);
        assert_eq!(s["items_applied"], 10_000);
        assert_eq!(s["applications_by_key"], json!({"big": 1}));
        assert_eq!(
            stock(&api, "main", "WH-IZM", "SKU-05000"),
            json!({"quantity": 10000, "price": "10000.50", "remote_id": "ST-010002"})
        );
        let too_many: Vec<Value> = (0..10_001).map(|_| json!({})).collect();
        let r = sync(&api, &body("insert", None, json!(too_many)));
        assert_eq!(detail_fields(&r), ["items"]);
        let broken: Vec<Value> = (0..100).map(|_| json!({})).collect();
        let r = sync(&api, &body("insert", None, json!(broken)));
        assert_eq!(detail_fields(&r).len(), MAX_DETAILS);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .ends_with("(and 299 more problems)"),
            "{}",
            r.body
        );
    }

    #[test]
    fn outage_answers_503_then_recovers() {
        let api = api();
        let t0 = Instant::now();
        let outage = |ms: &str, now: Instant| {
            api.route(
                &Method::POST,
                "/_reference/outage",
                &format!("ms={ms}"),
                &HeaderMap::new(),
                b"",
                now,
            )
        };
        let r = outage("1500", t0);
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, json!({"outage_ms": 1500}));
        let b = body(
            "insert",
            None,
            json!([{"sku": "SKU-00001", "warehouse": "WH-ANK", "quantity": 3}]),
        );
        let r = post(&api, "", Some("k"), &b, t0 + Duration::from_millis(100));
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(error_code(&r), "unavailable");
        assert_eq!(r.retry_after, Some(2));
        for path in [
            "/v1/warehouses",
            "/v1/nothing",
            "/v1/stock-batches/RB-000001",
        ] {
            let r = get(&api, path, t0 + Duration::from_millis(1499));
            assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        }
        let r = api.route(
            &Method::DELETE,
            "/v1/stock-lists",
            "",
            &HeaderMap::new(),
            b"",
            t0,
        );
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        // The reference endpoints stay up; nothing was delivered.
        let s = stats(&api);
        assert_eq!(s["deliveries"], 0);
        assert_eq!(s["outage_rejections"], 5);
        assert_eq!(s["applications_by_key"], json!({}));
        // Over when the time is up.
        let t1 = t0 + Duration::from_millis(1500);
        let r = post(&api, "", Some("k"), &b, t1);
        assert_eq!(r.status, StatusCode::ACCEPTED);
        assert_eq!(r.body["batch_id"], "RB-000001");
        // A batch accepted before an outage is applied during it.
        outage("1000", t1);
        assert!(api.apply_batch("RB-000001", t1));
        assert_eq!(
            get(&api, "/v1/warehouses", t1).status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        // ms=0 ends it.
        assert_eq!(outage("0", t1).status, StatusCode::OK);
        assert_eq!(get(&api, "/v1/warehouses", t1).status, StatusCode::OK);
        let r = get(&api, "/v1/stock-batches/RB-000001", t1);
        assert_eq!(r.body["status"], "done");
        for bad in ["", "x", "-1", "86400001"] {
            let r = outage(bad, t1);
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(detail_fields(&r), ["ms"]);
        }
        let r = api.route(
            &Method::POST,
            "/_reference/outage",
            "",
            &HeaderMap::new(),
            b"",
            t1,
        );
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn unknown_paths_batches_and_methods() {
        let api = api();
        let now = Instant::now();
        let r = get(&api, "/v1/stock-batches/RB-000001", now);
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(error_code(&r), "not_found");
        assert_eq!(r.body["error"]["message"], "no batch 'RB-000001'");
        for path in [
            "/",
            "/v1",
            "/v1/",
            "/v1/warehouses/",
            "/v1/stocks/main/WH-IST",
            "/v2/warehouses",
            "/_reference/other",
            "/v1/stocks/main/WH-IST/%zz",
        ] {
            let r = get(&api, path, now);
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(error_code(&r), "not_found", "{path}");
        }
        for (method, path, allow) in [
            (Method::GET, "/v1/stock-lists", "POST"),
            (Method::PUT, "/v1/stock-batches/RB-1", "GET"),
            (Method::POST, "/v1/stocks/main/WH-IST/AKN-MUG-01", "GET"),
            (Method::DELETE, "/v1/warehouses", "GET"),
            (Method::POST, "/_reference/stats", "GET"),
            (Method::GET, "/_reference/outage", "POST"),
        ] {
            let r = api.route(&method, path, "", &HeaderMap::new(), b"", now);
            assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
            assert_eq!(r.allow, Some(allow), "{path}");
            assert_eq!(error_code(&r), "method_not_allowed");
        }
        // Path segments are percent-decoded.
        let r = get(&api, "/v1/stocks/main/WH%2DIST/AKN-TSHIRT-%53", now);
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body["remote_id"], "ST-000001");
        let r = get(&api, "/v1/stocks/main/WH-IST/AKN-MUG-01", now);
        assert_eq!(
            r.body["error"]["message"],
            "no stock for AKN-MUG-01 in WH-IST in the main list"
        );
    }

    #[test]
    fn quantities_and_prices_are_exact() {
        for (v, q) in [
            (json!(0), Some(0)),
            (json!(12), Some(12)),
            (json!("12"), Some(12)),
            (
                json!(9_007_199_254_740_991_u64),
                Some(9_007_199_254_740_991),
            ),
            (json!(9_007_199_254_740_992_u64), None),
            (json!(-1), None),
            (json!(1.5), None),
            (json!(""), None),
            (json!("-1"), None),
            (json!(" 1"), None),
            (json!(true), None),
            (json!([1]), None),
        ] {
            assert_eq!(parse_quantity(&v), q, "{v}");
        }
        let number = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        assert_eq!(parse_quantity(&number("1.0")), None);
        assert_eq!(parse_quantity(&number("1e3")), None);
        assert_eq!(parse_quantity(&number("99999999999999999999999")), None);
        for (v, p) in [
            (json!("199.90"), Some(19_990)),
            (json!("199.9"), Some(19_990)),
            (json!("199.900"), Some(19_990)),
            (json!("0"), Some(0)),
            (json!("0.05"), Some(5)),
            (json!("999999999999.99"), Some(99_999_999_999_999)),
            (json!("1000000000000"), None),
            (json!("1.999"), None),
            (json!("-1"), None),
            (json!("+1"), None),
            (json!(".5"), None),
            (json!("5."), None),
            (json!("1,5"), None),
            (json!(""), None),
            (json!(false), None),
        ] {
            assert_eq!(parse_price(&v), p, "{v}");
        }
        assert_eq!(parse_price(&number("219.9")), Some(21_990));
        assert_eq!(parse_price(&number("19.99")), Some(1_999));
        assert_eq!(parse_price(&number("1e2")), None);
        assert_eq!(format_price(5), "0.05");
        assert_eq!(format_price(19_990), "199.90");
    }

    #[test]
    fn seed_errors() {
        let good = std::fs::read_to_string(fixture()).unwrap();
        let err = |text: &str| StockApi::from_seed(text).err().unwrap_or_default();
        assert_eq!(
            err(&good.replace(r#""AKN-MUG-01"]"#, r#""AKN-MUG-01", "SKU-00007"]"#)),
            "SKU 'SKU-00007' is defined twice"
        );
        assert_eq!(
            err(&good.replace(r#"{"code": "WH-ANK""#, r#"{"code": "WH-IST""#)),
            "warehouse 'WH-IST' is defined twice"
        );
        assert_eq!(
            err(&good.replace(
                r#""extra": []"#,
                r#""extra": [{"sku": "X", "warehouse": "WH-IST", "quantity": 1}]"#
            )),
            "stocks.extra[0]: unknown SKU 'X'"
        );
        assert_eq!(
            err(&good.replace(
                r#""AKN-TSHIRT-M", "warehouse": "WH-IST""#,
                r#""AKN-TSHIRT-S", "warehouse": "WH-IST""#
            )),
            "stocks.main[1]: stock already exists for AKN-TSHIRT-S in WH-IST; use update"
        );
        assert_eq!(
            err(&good.replace(r#""quantity": 4"#, r#""qty": 4"#)),
            "stocks.main[1] has an unknown member 'qty' (known: sku, warehouse, quantity, price)"
        );
        assert!(err(&good.replace(r#""max_items""#, r#""max_itemz""#)).contains("unknown field"));
        assert!(
            err(&good.replace(r#""max_items": 10000"#, r#""max_items": 0"#))
                .starts_with("max_items")
        );
        assert!(
            err(&good.replace(r#""count": 5000"#, r#""count": 5000000"#))
                .starts_with("generated_skus")
        );
        let e = StockApi::load(Path::new("/nonexistent/stock.json"))
            .err()
            .unwrap_or_default();
        assert!(e.starts_with("/nonexistent/stock.json: "), "{e}");
        // Defaults.
        let api =
            StockApi::from_seed(r#"{"warehouses": [{"code": "W", "name": "w"}], "skus": ["S"]}"#)
                .unwrap();
        assert_eq!(api.core.delay, Duration::from_millis(300));
        assert_eq!(api.core.max_items, 10_000);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
        #[test]
        fn never_panics(
            path in "/(v1|_reference)/[a-z/%-]{0,30}",
            query in "[a-z=&%0-9]{0,20}",
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            json_body in "\\{\"action\": \"(insert|update|x)\", \"list\": \"(main|extra)\", \"items\": \\[\\{\"sku\": \"SKU-0000[0-9]\", \"warehouse\": \"WH-(IST|ANK)\", \"quantity\": (-?[0-9]{1,3}|\"[0-9.]{0,4}\"|null), \"price\": (\"[0-9.-]{0,6}\"|[0-9]{1,3}\\.[0-9]{1,3}|null)\\}\\]\\}",
        ) {
            let api = api();
            let now = Instant::now();
            for m in [Method::GET, Method::POST] {
                api.route(&m, &path, &query, &headers(Some("k")), &body, now);
            }
            let r = post(&api, &query, Some("k"), &json_body, now);
            proptest::prop_assert!(r.status.as_u16() < 500, "{}", r.body);
            api.apply_batch("RB-000001", now);
            let s = stats(&api);
            proptest::prop_assert!(s["applications"].as_u64().unwrap_or(0) <= 1);
        }
    }

    #[tokio::test]
    async fn async_batch_is_applied_after_the_delay_over_http() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let seed = std::fs::read_to_string(fixture())
            .unwrap()
            .replace(r#""async_delay_ms": 300"#, r#""async_delay_ms": 50"#);
        assert!(seed.contains(r#""async_delay_ms": 50"#));
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let file = std::env::temp_dir().join(format!(
            "soapbridge-stock-{}-{nanos}.json",
            std::process::id()
        ));
        std::fs::write(&file, seed).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = super::super::spawn("stock", &file, listener).unwrap();
        let _ = std::fs::remove_file(&file);
        let exchange = |request: String| async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(request.as_bytes()).await.unwrap();
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.unwrap();
            let text = String::from_utf8(out).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            let status: u16 = head[9..12].parse().unwrap();
            let v: Value = serde_json::from_str(body).unwrap();
            (status, head.to_ascii_lowercase(), v)
        };
        let get =
            |path: &str| format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
        let b = r#"{"action": "insert", "list": "extra", "items": [{"sku": "AKN-MUG-01", "warehouse": "WH-IZM", "quantity": 5, "price": 89.5}]}"#;
        let post = format!(
            "POST /v1/stock-lists?mode=async HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nIdempotency-Key: batch-1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
            b.len()
        );
        let (status, head, v) = exchange(post.clone()).await;
        assert_eq!(status, 202, "{v}");
        assert!(head.contains("content-type: application/json"));
        assert_eq!(v["batch_id"], "RB-000001");
        assert_eq!(v["status"], "ongoing");

        let mut done = Value::Null;
        for _ in 0..250 {
            let (status, _, v) = exchange(get("/v1/stock-batches/RB-000001")).await;
            assert_eq!(status, 200);
            if v["status"] == "done" {
                done = v;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(done["status"], "done", "the batch was not applied in 5 s");
        let applied = done["applied_at"].as_u64().unwrap();
        let received = done["received_at"].as_u64().unwrap();
        assert!(applied >= received + 50, "{done}");
        assert_eq!(done["results"][0]["status"], "SUCCESS");
        assert_eq!(done["results"][0]["remote_id"], "ST-000003");
        let (status, _, v) = exchange(get("/v1/stocks/extra/WH-IZM/AKN-MUG-01")).await;
        assert_eq!(status, 200);
        assert_eq!(
            v,
            json!({"quantity": 5, "price": "89.50", "remote_id": "ST-000003"})
        );

        // A redelivery answers the done batch and is not applied again.
        let (status, head, v) = exchange(post).await;
        assert_eq!(status, 200);
        assert!(head.contains("idempotent-replayed: true"), "{head}");
        assert_eq!(v, done);
        tokio::time::sleep(Duration::from_millis(120)).await;
        let (_, _, s) = exchange(get("/_reference/stats")).await;
        assert_eq!(s["deliveries"], 1);
        assert_eq!(s["duplicate_deliveries"], 1);
        assert_eq!(s["applications"], 1);
        assert_eq!(s["applications_by_key"], json!({"batch-1": 1}));

        // Outage over HTTP: 503 with Retry-After.
        let (status, _, _) = exchange(
            "POST /_reference/outage?ms=60000 HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                .to_string(),
        )
        .await;
        assert_eq!(status, 200);
        let (status, head, v) = exchange(get("/v1/warehouses")).await;
        assert_eq!(status, 503);
        assert!(head.contains("retry-after: 60"), "{head}");
        assert_eq!(v["error"]["code"], "unavailable");
    }
}
