//! Reference backend: products with option features (bold title, subtitle, showcase,
//! Facebook ad package), a price per option and duration, a cart of unpaid options,
//! payment vouchers and card payments.
//!
//! Money is kept in kuruş (integers) and written as exact decimal strings ("0.02").
//! Card data is validated (Luhn, expiry) and never stored or logged; a payment keeps only
//! the last four digits.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, json_response};

#[derive(Debug, Deserialize)]
struct Seed {
    options: Vec<SeedOption>,
    products: Vec<SeedProduct>,
}

#[derive(Debug, Deserialize)]
struct SeedOption {
    option_id: i64,
    code: String,
    name: String,
    /// duration in days -> price in TL ("0.01")
    prices: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct SeedProduct {
    product_id: i64,
    title: String,
    #[serde(default)]
    options: Vec<SeedProductOption>,
}

#[derive(Debug, Deserialize)]
struct SeedProductOption {
    option_id: i64,
    duration_days: i64,
    #[serde(default)]
    paid: bool,
    #[serde(default)]
    expires_at: Option<String>,
}

#[derive(Debug, Clone)]
struct OptionDef {
    code: String,
    name: String,
    /// (days, kuruş), ascending by days
    prices: Vec<(i64, i64)>,
}

#[derive(Debug, Clone)]
struct Applied {
    option_id: i64,
    duration_days: i64,
    price: i64,
    paid: bool,
    expires_at: Option<String>,
}

#[derive(Debug, Clone)]
struct Product {
    title: String,
    options: Vec<Applied>,
}

#[derive(Debug, Clone)]
struct Voucher {
    amount: i64,
    /// (product, option) pairs the voucher pays for
    covers: Vec<(i64, i64)>,
    product_count: usize,
    payment: Option<Value>,
}

#[derive(Debug, Default)]
struct State {
    products: BTreeMap<i64, Product>,
    vouchers: BTreeMap<String, Voucher>,
    voucher_seq: u64,
    payment_seq: u64,
}

#[derive(Debug)]
pub struct ProductOptionsApi {
    options: BTreeMap<i64, OptionDef>,
    state: Mutex<State>,
}

/// Large enough for the 10 MB requests of `bench/separate.py` (their JSON is about 4.5 MB).
const MAX_BODY: usize = 16 * 1024 * 1024;

pub fn parse_money(s: &str) -> Option<i64> {
    let (lira, kurus) = s.split_once('.').unwrap_or((s, "0"));
    if kurus.len() > 2
        || !lira.bytes().all(|b| b.is_ascii_digit())
        || !kurus.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let k: i64 = format!("{kurus:0<2}").parse().ok()?;
    Some(lira.parse::<i64>().ok()? * 100 + k)
}

pub fn format_money(k: i64) -> String {
    format!("{}.{:02}", k / 100, k % 100)
}

type Resp = Response<Full<Bytes>>;

/// A product and the (option id, duration in days) pairs asked for it.
type CartItem = (i64, Vec<(i64, Option<i64>)>);

impl ProductOptionsApi {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let seed: Seed =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut options = BTreeMap::new();
        for o in seed.options {
            let mut prices = Vec::new();
            for (d, p) in &o.prices {
                let days: i64 = d.parse().map_err(|_| {
                    format!("option {}: duration '{d}' is not a number", o.option_id)
                })?;
                let k = parse_money(p).ok_or_else(|| {
                    format!("option {}: price '{p}' is not a TL amount", o.option_id)
                })?;
                prices.push((days, k));
            }
            prices.sort();
            options.insert(
                o.option_id,
                OptionDef {
                    code: o.code,
                    name: o.name,
                    prices,
                },
            );
        }
        let mut state = State::default();
        for p in seed.products {
            let mut applied = Vec::new();
            for a in p.options {
                let def = options.get(&a.option_id).ok_or_else(|| {
                    format!("product {}: unknown option {}", p.product_id, a.option_id)
                })?;
                let price = def
                    .prices
                    .iter()
                    .find(|(d, _)| *d == a.duration_days)
                    .map(|(_, k)| *k)
                    .ok_or_else(|| {
                        format!(
                            "product {}: option {} has no price for {} days",
                            p.product_id, a.option_id, a.duration_days
                        )
                    })?;
                applied.push(Applied {
                    option_id: a.option_id,
                    duration_days: a.duration_days,
                    price,
                    paid: a.paid,
                    expires_at: a.expires_at,
                });
            }
            state.products.insert(
                p.product_id,
                Product {
                    title: p.title,
                    options: applied,
                },
            );
        }
        Ok(ProductOptionsApi {
            options,
            state: Mutex::new(state),
        })
    }

    pub async fn handle(&self, req: Request<hyper::body::Incoming>) -> Resp {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "request body too large",
                )
                .into_response();
            }
        };
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let result = match (&method, segs.as_slice()) {
            (&Method::GET, ["healthz"]) => {
                Ok(json_response(StatusCode::OK, &json!({"status": "ok"})))
            }
            (&Method::GET, ["v1", "option-features"]) => Ok(self.catalog()),
            (&Method::GET, ["v1", "products", "option-features"]) => self.features(&query),
            (&Method::POST, ["v1", "products", "option-features:search"]) => {
                parse(&body).and_then(|b| self.search(&b))
            }
            (&Method::POST, ["v1", "cart", "options"]) => parse(&body).and_then(|b| self.add(&b)),
            (&Method::POST, ["v1", "cart", "options:remove"]) => {
                parse(&body).and_then(|b| self.remove(&b))
            }
            (&Method::POST, ["v1", "vouchers"]) => {
                parse(&body).and_then(|b| self.create_voucher(&b))
            }
            (&Method::GET, ["v1", "vouchers", code]) => self.voucher(code),
            (&Method::POST, ["v1", "vouchers", code, "payments"]) => {
                parse(&body).and_then(|b| self.pay(code, &b))
            }
            (_, ["v1", ..]) | (_, ["healthz"]) => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{method} is not allowed on {path}"),
            )),
            _ => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no resource at {path}"),
            )),
        };
        result.unwrap_or_else(ApiError::into_response)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn catalog(&self) -> Resp {
        let items: Vec<Value> = self
            .options
            .iter()
            .map(|(id, o)| {
                let prices: Vec<Value> = o
                    .prices
                    .iter()
                    .map(|(d, k)| json!({"duration_days": d, "price": format_money(*k)}))
                    .collect();
                json!({"option_id": id, "code": o.code, "name": o.name, "prices": prices})
            })
            .collect();
        json_response(StatusCode::OK, &json!({"options": items}))
    }

    fn product_view(&self, id: i64, p: &Product) -> Value {
        let options: Vec<Value> = p
            .options
            .iter()
            .map(|a| {
                let def = &self.options[&a.option_id];
                json!({
                    "option_id": a.option_id,
                    "code": def.code,
                    "name": def.name,
                    "duration_days": a.duration_days,
                    "price": format_money(a.price),
                    "paid": a.paid,
                    "expires_at": a.expires_at,
                })
            })
            .collect();
        json!({"product_id": id, "title": p.title, "options": options})
    }

    fn products_view(&self, st: &State, ids: &[i64]) -> Value {
        let mut seen = std::collections::HashSet::new();
        let products: Vec<Value> = ids
            .iter()
            .filter(|id| seen.insert(**id))
            .map(|id| self.product_view(*id, &st.products[id]))
            .collect();
        json!({"product_count": products.len(), "products": products})
    }

    fn known_products(st: &State, ids: &[i64], field: &str) -> Result<(), ApiError> {
        let unknown: Vec<(usize, i64)> = ids
            .iter()
            .enumerate()
            .filter(|(_, id)| !st.products.contains_key(id))
            .map(|(i, id)| (i, *id))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = unknown.iter().map(|(_, id)| id.to_string()).collect();
        let mut e = ApiError::new(
            StatusCode::NOT_FOUND,
            "product_not_found",
            format!("No product with id {}", list.join(", ")),
        );
        for (i, id) in unknown {
            e = e.field(
                format!("{field}[{i}]"),
                "unknown",
                format!("product {id} does not exist"),
            );
        }
        Err(e)
    }

    /// `POST /v1/products/option-features:search` with `{"product_ids": [...]}`: the same
    /// answer as the GET, for more ids than a URL holds.
    fn search(&self, body: &Value) -> Result<Resp, ApiError> {
        let ids: Option<Vec<i64>> = body
            .get("product_ids")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(Value::as_i64).collect());
        let ids = ids.filter(|i| !i.is_empty()).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "A list of product ids is required",
            )
            .field("product_ids", "required", "give a list of product ids")
        })?;
        let st = self.lock();
        Self::known_products(&st, &ids, "product_ids")?;
        Ok(json_response(
            StatusCode::OK,
            &self.products_view(&st, &ids),
        ))
    }

    fn features(&self, query: &str) -> Result<Resp, ApiError> {
        let mut ids = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if k == "product_id" {
                ids.push(v.parse::<i64>().map_err(|_| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "validation_failed",
                        "Invalid product id",
                    )
                    .field(
                        "product_id",
                        "invalid",
                        format!("'{v}' is not a product id"),
                    )
                })?);
            }
        }
        if ids.is_empty() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "At least one product id is required",
            )
            .field(
                "product_id",
                "required",
                "give one or more product_id query parameters",
            ));
        }
        let st = self.lock();
        Self::known_products(&st, &ids, "product_id")?;
        Ok(json_response(
            StatusCode::OK,
            &self.products_view(&st, &ids),
        ))
    }

    /// Reads `{"items": [{"product_id", "options": [{"option_id", "duration_days"}]}]}`.
    fn cart_items(body: &Value, need_duration: bool) -> Result<Vec<CartItem>, ApiError> {
        let invalid = |field: String, msg: &str| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "The cart request is invalid",
            )
            .field(field, "invalid", msg)
        };
        let items = body
            .get("items")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("items".into(), "a list of items is required"))?;
        if items.is_empty() {
            return Err(invalid("items".into(), "at least one item is required"));
        }
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let pid = item
                .get("product_id")
                .and_then(Value::as_i64)
                .ok_or_else(|| {
                    invalid(format!("items[{i}].product_id"), "a product id is required")
                })?;
            let opts = item
                .get("options")
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    invalid(
                        format!("items[{i}].options"),
                        "a list of options is required",
                    )
                })?;
            if opts.is_empty() {
                return Err(invalid(
                    format!("items[{i}].options"),
                    "at least one option is required",
                ));
            }
            let mut list = Vec::new();
            for (j, o) in opts.iter().enumerate() {
                let oid = o.get("option_id").and_then(Value::as_i64).ok_or_else(|| {
                    invalid(
                        format!("items[{i}].options[{j}].option_id"),
                        "an option id is required",
                    )
                })?;
                let days = o.get("duration_days").and_then(Value::as_i64);
                if need_duration && days.is_none() {
                    return Err(invalid(
                        format!("items[{i}].options[{j}].duration_days"),
                        "a duration in days is required",
                    ));
                }
                list.push((oid, days));
            }
            out.push((pid, list));
        }
        Ok(out)
    }

    fn add(&self, body: &Value) -> Result<Resp, ApiError> {
        let items = Self::cart_items(body, true)?;
        let mut st = self.lock();
        let ids: Vec<i64> = items.iter().map(|(p, _)| *p).collect();
        Self::known_products(&st, &ids, "items")?;
        // Validate everything first: the cart changes all at once or not at all.
        let mut to_add = Vec::new();
        for (i, (pid, opts)) in items.iter().enumerate() {
            for (j, (oid, days)) in opts.iter().enumerate() {
                let field = format!("items[{i}].options[{j}]");
                let def = self.options.get(oid).ok_or_else(|| {
                    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unknown_option", format!("There is no option feature {oid}"))
                        .field(format!("{field}.option_id"), "unknown", "valid option ids are 1 (bold title), 2 (subtitle), 3 (showcase), 4 (Facebook ad package)")
                })?;
                let days = days.unwrap_or_default();
                let Some((_, price)) = def.prices.iter().find(|(d, _)| *d == days) else {
                    let offered: Vec<String> =
                        def.prices.iter().map(|(d, _)| d.to_string()).collect();
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_duration",
                        format!("{} is not offered for {days} days", def.name),
                    )
                    .field(
                        format!("{field}.duration_days"),
                        "not_offered",
                        format!("must be one of {}", offered.join(", ")),
                    ));
                };
                let product = &st.products[pid];
                if product
                    .options
                    .iter()
                    .any(|a| a.option_id == *oid && (!a.paid || a.expires_at.is_some()))
                    || to_add
                        .iter()
                        .any(|(p, a): &(i64, Applied)| *p == *pid && a.option_id == *oid)
                {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        "option_already_added",
                        format!("Product {pid} already has {}", def.name),
                    )
                    .field(
                        format!("{field}.option_id"),
                        "duplicate",
                        "the product already has this option",
                    ));
                }
                to_add.push((
                    *pid,
                    Applied {
                        option_id: *oid,
                        duration_days: days,
                        price: *price,
                        paid: false,
                        expires_at: None,
                    },
                ));
            }
        }
        for (pid, a) in to_add {
            if let Some(p) = st.products.get_mut(&pid) {
                p.options.push(a);
            }
        }
        Ok(json_response(
            StatusCode::OK,
            &self.products_view(&st, &ids),
        ))
    }

    fn remove(&self, body: &Value) -> Result<Resp, ApiError> {
        let items = Self::cart_items(body, false)?;
        let mut st = self.lock();
        let ids: Vec<i64> = items.iter().map(|(p, _)| *p).collect();
        Self::known_products(&st, &ids, "items")?;
        for (i, (pid, opts)) in items.iter().enumerate() {
            for (j, (oid, _)) in opts.iter().enumerate() {
                let field = format!("items[{i}].options[{j}].option_id");
                match st.products[pid]
                    .options
                    .iter()
                    .find(|a| a.option_id == *oid)
                {
                    None => {
                        return Err(ApiError::new(
                            StatusCode::NOT_FOUND,
                            "option_not_on_product",
                            format!("Product {pid} does not have option feature {oid}"),
                        )
                        .field(
                            field,
                            "not_found",
                            "the product does not have this option",
                        ));
                    }
                    Some(a) if a.paid => {
                        return Err(ApiError::new(StatusCode::CONFLICT, "option_paid", format!("Option feature {oid} of product {pid} is paid and cannot be removed"))
                            .field(field, "paid", "paid options cannot be removed"));
                    }
                    Some(_) => {}
                }
            }
        }
        for (pid, opts) in &items {
            if let Some(p) = st.products.get_mut(pid) {
                p.options
                    .retain(|a| a.paid || !opts.iter().any(|(o, _)| *o == a.option_id));
            }
        }
        Ok(json_response(
            StatusCode::OK,
            &self.products_view(&st, &ids),
        ))
    }

    fn create_voucher(&self, body: &Value) -> Result<Resp, ApiError> {
        let ids: Vec<i64> = match body.get("product_ids") {
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_i64().ok_or_else(|| {
                        ApiError::new(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "validation_failed",
                            "Invalid product id",
                        )
                        .field(
                            format!("product_ids[{i}]"),
                            "invalid",
                            "must be an integer product id",
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
            _ => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation_failed",
                    "product_ids is required",
                )
                .field(
                    "product_ids",
                    "required",
                    "a list of product ids is required",
                ));
            }
        };
        if ids.is_empty() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "At least one product id is required",
            )
            .field(
                "product_ids",
                "empty",
                "must contain at least one product id",
            ));
        }
        let mut st = self.lock();
        Self::known_products(&st, &ids, "product_ids")?;
        let mut covers = Vec::new();
        let mut amount = 0;
        let mut products = std::collections::BTreeSet::new();
        for id in &ids {
            for a in st.products[id].options.iter().filter(|a| !a.paid) {
                if !covers.contains(&(*id, a.option_id)) {
                    covers.push((*id, a.option_id));
                    amount += a.price;
                    products.insert(*id);
                }
            }
        }
        let voucher = if amount == 0 {
            json!({"code": null, "amount": "0.00", "currency": "TRY", "payment_required": false, "product_count": 0, "status": "nothing_to_pay"})
        } else {
            st.voucher_seq += 1;
            let code = voucher_code(st.voucher_seq);
            let v = Voucher {
                amount,
                covers,
                product_count: products.len(),
                payment: None,
            };
            let view = voucher_view(&code, &v);
            st.vouchers.insert(code, v);
            view
        };
        Ok(json_response(
            StatusCode::CREATED,
            &json!({"voucher": voucher}),
        ))
    }

    fn voucher(&self, code: &str) -> Result<Resp, ApiError> {
        let st = self.lock();
        let v = st
            .vouchers
            .get(code)
            .ok_or_else(|| voucher_not_found(code))?;
        Ok(json_response(
            StatusCode::OK,
            &json!({"voucher": voucher_view(code, v)}),
        ))
    }

    fn pay(&self, code: &str, body: &Value) -> Result<Resp, ApiError> {
        let card = body.get("card").cloned().unwrap_or(Value::Null);
        let last4 = validate_card(&card)?;
        let mut st = self.lock();
        let v = st
            .vouchers
            .get(code)
            .ok_or_else(|| voucher_not_found(code))?;
        let (amount, covers) = (v.amount, v.covers.clone());
        if v.payment.is_some() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "voucher_already_paid",
                format!("Voucher {code} has already been paid"),
            )
            .field("voucher_code", "paid", "a voucher can be paid once"));
        }
        st.payment_seq += 1;
        let now = chrono::Utc::now();
        let payment = json!({
            "id": format!("PAY-{:06}", st.payment_seq),
            "voucher_code": code,
            "amount": format_money(amount),
            "currency": "TRY",
            "status": "paid",
            "paid_at": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "card_masked": format!("**** **** **** {last4}"),
        });
        if let Some(v) = st.vouchers.get_mut(code) {
            v.payment = Some(payment.clone());
        }
        for (pid, oid) in covers {
            if let Some(a) = st
                .products
                .get_mut(&pid)
                .and_then(|p| p.options.iter_mut().find(|a| a.option_id == oid && !a.paid))
            {
                a.paid = true;
                a.expires_at = Some(
                    (now + chrono::Duration::days(a.duration_days))
                        .format("%Y-%m-%d")
                        .to_string(),
                );
            }
        }
        Ok(json_response(
            StatusCode::CREATED,
            &json!({"payment": payment}),
        ))
    }
}

fn parse(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("The body is not valid JSON: {e}"),
        )
    })
}

fn voucher_not_found(code: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "voucher_not_found",
        format!("No payment voucher {code}"),
    )
    .field("voucher_code", "unknown", "no such voucher")
}

fn voucher_view(code: &str, v: &Voucher) -> Value {
    json!({
        "code": code,
        "amount": format_money(v.amount),
        "currency": "TRY",
        "payment_required": v.payment.is_none(),
        "product_count": v.product_count,
        "status": if v.payment.is_some() { "paid" } else { "open" },
    })
}

/// `FT-` and twelve letters and digits, derived from a sequence number.
fn voucher_code(seq: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5DEE_CE66_D1CE_4E5B;
    let mut s = String::from("FT-");
    for _ in 0..12 {
        x ^= x >> 29;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        s.push(ALPHABET[(x % ALPHABET.len() as u64) as usize] as char);
    }
    s
}

pub fn luhn_ok(digits: &str) -> bool {
    let mut sum = 0;
    for (i, b) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(b - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum % 10 == 0
}

/// Validates a card; returns its last four digits. Messages never repeat the card data.
fn validate_card(card: &Value) -> Result<String, ApiError> {
    let text = |k: &str| {
        card.get(k).map(|v| match v {
            Value::String(s) => s.trim().to_string(),
            other => other.to_string(),
        })
    };
    let mut err = ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "card_invalid",
        "The card details are invalid",
    );
    for k in ["holder_name", "holder_surname"] {
        if text(k).is_none_or(|s| s.is_empty()) {
            err = err.field(format!("card.{k}"), "required", "is required");
        }
    }
    let number: String = text("number")
        .unwrap_or_default()
        .chars()
        .filter(|c| !matches!(c, ' ' | '-'))
        .collect();
    if !(12..=19).contains(&number.len()) || !number.bytes().all(|b| b.is_ascii_digit()) {
        err = err.field("card.number", "format", "must be 12 to 19 digits");
    } else if !luhn_ok(&number) {
        err = err.field(
            "card.number",
            "luhn",
            "is not a valid card number (check digit)",
        );
    }
    let cvv = text("cvv").unwrap_or_default();
    if !(3..=4).contains(&cvv.len()) || !cvv.bytes().all(|b| b.is_ascii_digit()) {
        err = err.field("card.cvv", "format", "must be 3 or 4 digits");
    }
    let month = text("expiry_month")
        .and_then(|m| m.parse::<u32>().ok())
        .filter(|m| (1..=12).contains(m));
    let year = text("expiry_year").and_then(|y| {
        let n: i32 = y.parse().ok()?;
        match y.len() {
            2 => Some(2000 + n),
            4 => Some(n),
            _ => None,
        }
    });
    match (month, year) {
        (None, _) => {
            err = err.field(
                "card.expiry_month",
                "format",
                "must be a month from 1 to 12",
            )
        }
        (_, None) => err = err.field("card.expiry_year", "format", "must be a year (YY or YYYY)"),
        (Some(m), Some(y)) => {
            use chrono::Datelike;
            let now = chrono::Utc::now();
            if (y, m) < (now.year(), now.month()) {
                err = err.field("card.expiry_year", "expired", "the card has expired");
            }
        }
    }
    if err.details.is_empty() {
        Ok(number[number.len() - 4..].to_string())
    } else {
        Err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_exact() {
        assert_eq!(parse_money("0.01"), Some(1));
        assert_eq!(parse_money("12.5"), Some(1250));
        assert_eq!(parse_money("1.234"), None);
        assert_eq!(format_money(2), "0.02");
        assert_eq!(format_money(4490), "44.90");
    }

    #[test]
    fn luhn_and_card_checks() {
        assert!(luhn_ok("4111111111111111"));
        assert!(!luhn_ok("4111111111111112"));
        let ok = json!({"holder_name": "A", "holder_surname": "B", "number": "4111 1111 1111 1111", "cvv": "123", "expiry_month": "12", "expiry_year": "2099"});
        assert_eq!(validate_card(&ok).unwrap(), "1111");
        let bad = json!({"holder_name": "A", "holder_surname": "", "number": "4111111111111112", "cvv": "1", "expiry_month": "13", "expiry_year": "2099"});
        let e = validate_card(&bad).unwrap_err();
        let fields: Vec<&str> = e.details.iter().map(|(f, _, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "card.holder_surname",
                "card.number",
                "card.cvv",
                "card.expiry_month"
            ]
        );
        assert!(!e.message.contains("4111"));
    }

    fn body_of(r: Resp) -> (u16, Value) {
        use http_body_util::BodyExt as _;
        let status = r.status().as_u16();
        let bytes = ready_now(r.into_body().collect()).unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    /// A `Full` body is ready at once: its future completes on the first poll.
    fn ready_now<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("a full body was not ready"),
        }
    }

    #[test]
    fn search_answers_as_the_query_does_for_ids_in_a_body() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/reference/product-options.json");
        let api = ProductOptionsApi::load(&root).unwrap();
        let (status, by_query) = body_of(
            api.features("product_id=587300354&product_id=587300356&product_id=587300354")
                .unwrap(),
        );
        assert_eq!(status, 200);
        let (_, by_body) = body_of(
            api.search(&json!({"product_ids": [587300354, 587300356, 587300354]}))
                .unwrap(),
        );
        assert_eq!(by_query, by_body);
        assert_eq!(by_body["product_count"], 2);
        let e = api.search(&json!({"product_ids": []})).unwrap_err();
        assert_eq!(e.details[0].0, "product_ids");
        let e = api.search(&json!({"product_ids": [1]})).unwrap_err();
        assert!(e.message.contains("No product with id 1"), "{}", e.message);
    }

    #[test]
    fn voucher_codes_look_like_the_legacy_ones() {
        let a = voucher_code(1);
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("FT-"));
        assert_ne!(a, voucher_code(2));
    }
}
