//! Reference backend imitating the Datawiz product-inventory REST API (a Django REST
//! Framework service behind OAuth2, see seed 002 and `notes/protocols.md` section 4).
//!
//! # OAuth2 (django-oauth-toolkit style)
//!
//! `POST /api/o/token/` takes an `application/x-www-form-urlencoded` body (a JSON object body
//! is accepted too); the client may also authenticate with HTTP Basic
//! (`client_id:client_secret`):
//!
//! - `grant_type=password&username=..&password=..&client_id=..&client_secret=..` and
//!   `grant_type=refresh_token&refresh_token=..&client_id=..&client_secret=..` answer 200
//!   `{"access_token", "token_type": "Bearer", "expires_in", "refresh_token", "scope": "read write"}`.
//!   A refresh hands out a new access token and a new refresh token; the old refresh token
//!   stops working (the old access token stays valid until it expires).
//! - Unknown client or wrong secret: 401 `{"error": "invalid_client"}`; wrong user or password,
//!   or an unknown refresh token: 400 `{"error": "invalid_grant", "error_description":
//!   "Invalid credentials given."}`; other grant types: 400 `{"error": "unsupported_grant_type"}`;
//!   a missing username, password or refresh token: 400 `{"error": "invalid_request", ...}`.
//!
//! # Product inventory (DRF style)
//!
//! Every `/api/v1/product-inventory/` request (also `.../product-inventory`,
//! `.../product-inventory/.json`) needs `Authorization: Bearer <token>` with a token that has
//! not expired (`token_ttl_seconds` of the seed); otherwise 401 `{"detail": "Authentication
//! credentials were not provided."}` or `{"detail": "Invalid token."}`, with
//! `WWW-Authenticate: Bearer realm="api"`. Answers carry `Allow: GET, POST, HEAD, OPTIONS`.
//!
//! - `GET` (and `HEAD`, same status and headers, no body): `page`, `page_size` (default and
//!   maximum from the seed; larger is clamped, invalid means the default), `search` (terms
//!   separated by spaces or commas; each must be a case-insensitive substring of the product's
//!   name or equal the product id), `ordering` (comma-separated `date`, `shop_id`,
//!   `product_id`, `qty`, `-` for descending; unknown fields ignored; default `date, shop_id,
//!   product_id`). Answer `{"count", "next", "previous", "results"}`; `next`/`previous` are
//!   absolute URLs on the request's Host (`http://<host>/api/v1/product-inventory/?page=2&...`,
//!   keeping `page_size`, `search`, `ordering` and `format`); a page that does not exist:
//!   404 `{"detail": "Invalid page."}`.
//! - `POST` one object or a non-empty list of at most `max_list_size` objects (JSON; a form
//!   body is read as one object). Fields: `date` (`YYYY-MM-DD`), `shop_id` (at most 50
//!   characters, a known shop), `product_id` (at most 100, a known product), `qty`, and the
//!   optional `original_price` and `stock_total_price`, which must equal `qty *
//!   original_price` rounded half-up to 2 places (computed when absent). Errors are DRF
//!   dictionaries of lists of messages (`{"qty": ["This field is required."]}`, object errors
//!   under `non_field_errors`); for a list, a list of the same length with `{}` for the valid
//!   objects, and nothing is stored. A record with the same (date, shop_id, product_id)
//!   is replaced silently. Success: 201 `{"updated", "inserted"}` with `Location`.
//! - `OPTIONS`: the DRF metadata of the resource.
//!
//! Decimals are exact (scaled integers): `qty` and `original_price` have 4 decimal places,
//! `stock_total_price` 2, all at most 12 digits before the point; they are answered as strings
//! (`"2.0000"`, `"93.34"`).
//!
//! # Reference-only endpoints (no authentication; not part of the real API)
//!
//! - `POST /_reference/expire-tokens`: every access token expires (refresh tokens stay valid);
//!   answers `{"expired": n}`.
//! - `GET /_reference/stats`: `{"token_requests": {"password": n, "refresh_token": m}, "posts":
//!   <accepted POST requests>, "records": <stored records>}`.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::path::Path;
use std::sync::Mutex;

use base64::Engine;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use md5::{Digest, Md5};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Seed {
    /// Free text describing the seed.
    #[serde(default)]
    #[allow(dead_code)]
    about: Option<String>,
    clients: Vec<SeedClient>,
    users: Vec<SeedUser>,
    token_ttl_seconds: i64,
    default_page_size: usize,
    max_page_size: usize,
    max_list_size: usize,
    shops: Vec<SeedShop>,
    products: Vec<SeedProduct>,
    #[serde(default)]
    generated_products: Option<GeneratedProducts>,
    /// Records in the POST shape, validated like a POST.
    #[serde(default)]
    inventory: Vec<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedClient {
    client_id: String,
    client_secret: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedUser {
    username: String,
    password: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedShop {
    shop_id: String,
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedProduct {
    product_id: String,
    name: String,
}

/// Products `<prefix><n>` for n in 1..=count, n zero-padded to `digits`, named
/// "Generated product <n>".
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GeneratedProducts {
    prefix: String,
    count: usize,
    digits: usize,
}

#[derive(Debug)]
struct Product {
    name_lower: String,
}

/// (date, shop_id, product_id)
type Key = (String, String, String);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    /// scaled by 10^4
    qty: i128,
    /// scaled by 10^4
    original_price: Option<i128>,
    /// scaled by 10^2
    stock_total_price: Option<i128>,
}

#[derive(Debug)]
struct AccessToken {
    expires_at: i64,
}

#[derive(Debug)]
struct RefreshToken {
    client_id: String,
    username: String,
}

#[derive(Debug, Default)]
struct State {
    records: BTreeMap<Key, Record>,
    access: HashMap<String, AccessToken>,
    refresh: HashMap<String, RefreshToken>,
    token_seq: u64,
    password_grants: u64,
    refresh_grants: u64,
    posts: u64,
    /// Expired access tokens are dropped when the map reaches this size (amortised).
    prune_at: usize,
}

#[derive(Debug)]
pub struct DatawizApi {
    clients: Vec<(String, String)>,
    users: Vec<(String, String)>,
    token_ttl: i64,
    default_page_size: usize,
    max_page_size: usize,
    max_list_size: usize,
    shops: BTreeMap<String, String>,
    products: BTreeMap<String, Product>,
    token_key: [u8; 16],
    /// Boxed: keeps the backend small inside the registry's enum of backends.
    state: Box<Mutex<State>>,
}

const MAX_BODY: usize = 16 * 1024 * 1024;
const COLLECTION_ALLOW: &str = "GET, POST, HEAD, OPTIONS";
const WHOLE_DIGITS: i64 = 12;
const QTY_PLACES: u32 = 4;
const TOTAL_PLACES: u32 = 2;
const REQUIRED: &str = "This field is required.";
const INVALID_NUMBER: &str = "A valid number is required.";

/// A request as the core sees it (no socket needed).
struct Call<'a> {
    method: &'a Method,
    path: &'a str,
    query: &'a str,
    host: &'a str,
    authorization: Option<&'a str>,
    content_type: Option<&'a str>,
    body: &'a [u8],
}

/// An answer: status, extra headers (Content-Type is always JSON) and JSON body.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: Vec<(HeaderName, String)>,
    body: Value,
}

impl Reply {
    fn new(status: StatusCode, body: Value) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body,
        }
    }

    fn detail(status: StatusCode, detail: &str) -> Self {
        Reply::new(status, json!({ "detail": detail }))
    }

    fn header(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn method_not_allowed(method: &Method, allow: &str) -> Self {
        Reply::detail(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("Method \"{method}\" not allowed."),
        )
        .header(header::ALLOW, allow)
    }

    fn into_response(self, head: bool) -> Response<Full<Bytes>> {
        let text = self.body.to_string();
        let len = text.len();
        let mut resp = Response::new(Full::new(if head {
            Bytes::new()
        } else {
            Bytes::from(text)
        }));
        *resp.status_mut() = self.status;
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if head {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        }
        resp
    }
}

/// The fields of the inventory resource, for `ordering`.
#[derive(Debug, Clone, Copy)]
enum Field {
    Date,
    Shop,
    Product,
    Qty,
}

impl DatawizApi {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::from_seed_text(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn from_seed_text(text: &str) -> Result<Self, String> {
        let seed: Seed = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if seed.token_ttl_seconds < 1 {
            return Err("token_ttl_seconds must be at least 1".into());
        }
        if seed.default_page_size < 1 || seed.max_page_size < seed.default_page_size {
            return Err("need 1 <= default_page_size <= max_page_size".into());
        }
        if seed.max_list_size < 1 {
            return Err("max_list_size must be at least 1".into());
        }
        let mut shops = BTreeMap::new();
        for s in seed.shops {
            if s.shop_id.trim() != s.shop_id
                || s.shop_id.is_empty()
                || s.shop_id.chars().count() > 50
            {
                return Err(format!("shop id '{}' is not 1 to 50 characters", s.shop_id));
            }
            if shops.insert(s.shop_id.clone(), s.name).is_some() {
                return Err(format!("shop '{}' is defined twice", s.shop_id));
            }
        }
        let mut products = BTreeMap::new();
        let mut add_product = |id: String, name: &str| {
            if id.trim() != id || id.is_empty() || id.chars().count() > 100 {
                return Err(format!("product id '{id}' is not 1 to 100 characters"));
            }
            let p = Product {
                name_lower: name.to_lowercase(),
            };
            if products.insert(id.clone(), p).is_some() {
                return Err(format!("product '{id}' is defined twice"));
            }
            Ok(())
        };
        for p in &seed.products {
            add_product(p.product_id.clone(), &p.name)?;
        }
        if let Some(g) = &seed.generated_products {
            if g.count > 1_000_000 || g.digits > 30 {
                return Err("generated_products: at most 1000000 products of 30 digits".into());
            }
            for n in 1..=g.count {
                let num = format!("{n:0width$}", width = g.digits);
                add_product(
                    format!("{}{num}", g.prefix),
                    &format!("Generated product {num}"),
                )?;
            }
        }
        let rs = std::collections::hash_map::RandomState::new();
        let mut token_key = [0u8; 16];
        token_key[..8].copy_from_slice(&rs.hash_one(0x5eed_u64).to_le_bytes());
        let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64;
        token_key[8..].copy_from_slice(&rs.hash_one(nanos).to_le_bytes());
        let api = DatawizApi {
            clients: seed
                .clients
                .into_iter()
                .map(|c| (c.client_id, c.client_secret))
                .collect(),
            users: seed
                .users
                .into_iter()
                .map(|u| (u.username, u.password))
                .collect(),
            token_ttl: seed.token_ttl_seconds,
            default_page_size: seed.default_page_size,
            max_page_size: seed.max_page_size,
            max_list_size: seed.max_list_size,
            shops,
            products,
            token_key,
            state: Box::new(Mutex::new(State::default())),
        };
        let mut records = BTreeMap::new();
        for (i, item) in seed.inventory.iter().enumerate() {
            let Value::Object(o) = item else {
                return Err(format!("inventory[{i}] is not an object"));
            };
            let (key, rec) = api
                .validate(o)
                .map_err(|e| format!("inventory[{i}]: {}", Value::Object(e)))?;
            if records.insert(key.clone(), rec).is_some() {
                return Err(format!(
                    "inventory[{i}]: ({}, {}, {}) is defined twice",
                    key.0, key.1, key.2
                ));
            }
        }
        api.lock().records = records;
        Ok(api)
    }

    pub async fn handle(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let head = parts.method == Method::HEAD;
        let body = match Limited::new(body, MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return Reply::detail(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large.")
                    .into_response(head);
            }
        };
        let text = |name: HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let host = text(header::HOST)
            .filter(|h| !h.is_empty())
            .or_else(|| parts.uri.authority().map(|a| a.as_str()))
            .unwrap_or("localhost");
        let call = Call {
            method: &parts.method,
            path: parts.uri.path(),
            query: parts.uri.query().unwrap_or(""),
            host,
            authorization: text(header::AUTHORIZATION),
            content_type: text(header::CONTENT_TYPE),
            body: &body,
        };
        self.respond(&call, chrono::Utc::now().timestamp())
            .into_response(head)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The whole API without a socket; `now` is the time in Unix seconds.
    fn respond(&self, call: &Call<'_>, now: i64) -> Reply {
        match call.path {
            "/api/o/token/" | "/api/o/token" => self
                .token(call, now)
                .header(header::CACHE_CONTROL, "no-store")
                .header(header::PRAGMA, "no-cache"),
            "/_reference/expire-tokens" => match *call.method {
                Method::POST => {
                    let mut st = self.lock();
                    let n = st.access.values().filter(|a| now < a.expires_at).count();
                    st.access.clear();
                    Reply::new(StatusCode::OK, json!({ "expired": n }))
                }
                ref m => Reply::method_not_allowed(m, "POST"),
            },
            "/_reference/stats" => match *call.method {
                Method::GET | Method::HEAD => {
                    let st = self.lock();
                    Reply::new(
                        StatusCode::OK,
                        json!({
                            "token_requests": {
                                "password": st.password_grants,
                                "refresh_token": st.refresh_grants,
                            },
                            "posts": st.posts,
                            "records": st.records.len(),
                        }),
                    )
                }
                ref m => Reply::method_not_allowed(m, "GET, HEAD"),
            },
            "/api/v1/product-inventory"
            | "/api/v1/product-inventory/"
            | "/api/v1/product-inventory.json"
            | "/api/v1/product-inventory/.json"
            | "/api/v1/product-inventory/.json/" => self
                .collection(call, now)
                .header(header::ALLOW, COLLECTION_ALLOW)
                .header(header::VARY, "Accept"),
            _ => Reply::detail(StatusCode::NOT_FOUND, "Not found."),
        }
    }

    // ----- OAuth2 -----

    fn token(&self, call: &Call<'_>, now: i64) -> Reply {
        if *call.method != Method::POST {
            return Reply::method_not_allowed(call.method, "POST");
        }
        let params = token_params(call);
        let param = |k: &str| params.get(k).map(String::as_str);
        let grant = param("grant_type").unwrap_or("");
        if grant != "password" && grant != "refresh_token" {
            return Reply::new(
                StatusCode::BAD_REQUEST,
                json!({"error": "unsupported_grant_type"}),
            );
        }
        let basic = call.authorization.and_then(basic_credentials);
        let (client_id, secret) = match &basic {
            Some((id, secret)) => (id.as_str(), secret.as_str()),
            None => (
                param("client_id").unwrap_or(""),
                param("client_secret").unwrap_or(""),
            ),
        };
        let client_ok = self
            .clients
            .iter()
            .any(|(id, s)| id == client_id && bool::from(s.as_bytes().ct_eq(secret.as_bytes())));
        if !client_ok {
            return Reply::new(StatusCode::UNAUTHORIZED, json!({"error": "invalid_client"}));
        }
        let invalid_request = |msg: &str| {
            Reply::new(
                StatusCode::BAD_REQUEST,
                json!({"error": "invalid_request", "error_description": msg}),
            )
        };
        let invalid_grant = || {
            Reply::new(
                StatusCode::BAD_REQUEST,
                json!({"error": "invalid_grant", "error_description": "Invalid credentials given."}),
            )
        };
        let mut st = self.lock();
        let username = if grant == "password" {
            let Some(username) = param("username") else {
                return invalid_request("Request is missing username parameter.");
            };
            let Some(password) = param("password") else {
                return invalid_request("Request is missing password parameter.");
            };
            let user_ok = self
                .users
                .iter()
                .any(|(u, p)| u == username && bool::from(p.as_bytes().ct_eq(password.as_bytes())));
            if !user_ok {
                return invalid_grant();
            }
            st.password_grants += 1;
            username.to_string()
        } else {
            let Some(old) = param("refresh_token") else {
                return invalid_request("Missing refresh token parameter.");
            };
            match st.refresh.get(old) {
                Some(r) if r.client_id == client_id => {}
                _ => return invalid_grant(),
            }
            let Some(r) = st.refresh.remove(old) else {
                return invalid_grant();
            };
            st.refresh_grants += 1;
            r.username
        };
        if st.access.len() >= st.prune_at {
            st.access.retain(|_, a| now < a.expires_at);
            st.prune_at = (st.access.len() * 2).max(1024);
        }
        let access = self.new_token(&mut st);
        let refresh = self.new_token(&mut st);
        st.access.insert(
            access.clone(),
            AccessToken {
                expires_at: now.saturating_add(self.token_ttl),
            },
        );
        st.refresh.insert(
            refresh.clone(),
            RefreshToken {
                client_id: client_id.to_string(),
                username,
            },
        );
        Reply::new(
            StatusCode::OK,
            json!({
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": self.token_ttl,
                "refresh_token": refresh,
                "scope": "read write",
            }),
        )
    }

    /// 32 hex digits: MD5 of a per-process random key and a sequence number.
    fn new_token(&self, st: &mut State) -> String {
        st.token_seq += 1;
        let mut h = Md5::new();
        h.update(self.token_key);
        h.update(st.token_seq.to_le_bytes());
        format!("{:x}", h.finalize())
    }

    /// Checks the bearer token; the error reply otherwise.
    fn authenticate(&self, authorization: Option<&str>, now: i64) -> Result<(), Reply> {
        let token = authorization.and_then(|h| {
            let (scheme, rest) = h.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
        let fail = |detail: &str| {
            Reply::detail(StatusCode::UNAUTHORIZED, detail)
                .header(header::WWW_AUTHENTICATE, "Bearer realm=\"api\"")
        };
        match token {
            None | Some("") => Err(fail("Authentication credentials were not provided.")),
            Some(t) => {
                let st = self.lock();
                if st.access.get(t).is_some_and(|a| now < a.expires_at) {
                    Ok(())
                } else {
                    Err(fail("Invalid token."))
                }
            }
        }
    }

    // ----- the inventory collection -----

    fn collection(&self, call: &Call<'_>, now: i64) -> Reply {
        if let Err(reply) = self.authenticate(call.authorization, now) {
            return reply;
        }
        match *call.method {
            Method::GET | Method::HEAD => self.list(call),
            Method::POST => self.create(call),
            Method::OPTIONS => Reply::new(StatusCode::OK, metadata()),
            ref m => Reply::method_not_allowed(m, COLLECTION_ALLOW),
        }
    }

    fn list(&self, call: &Call<'_>) -> Reply {
        let pairs = parse_form(call.query.as_bytes());
        let get = |k: &str| {
            pairs
                .iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        let page_size = get("page_size")
            .and_then(positive_int)
            .map_or(self.default_page_size, |n| n.min(self.max_page_size));
        let page: Option<usize> = match get("page").filter(|p| !p.is_empty()) {
            None => Some(1),
            Some(p) => p
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 1)
                .and_then(|n| usize::try_from(n).ok()),
        };
        let terms: Vec<String> = get("search")
            .unwrap_or("")
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|t| !t.is_empty())
            .map(str::to_lowercase)
            .collect();
        let ordering: Vec<(Field, bool)> = get("ordering")
            .unwrap_or("")
            .split(',')
            .filter_map(|f| {
                let f = f.trim();
                let (desc, name) = match f.strip_prefix('-') {
                    Some(n) => (true, n),
                    None => (false, f),
                };
                let field = match name {
                    "date" => Field::Date,
                    "shop_id" => Field::Shop,
                    "product_id" => Field::Product,
                    "qty" => Field::Qty,
                    _ => return None,
                };
                Some((field, desc))
            })
            .collect();

        let st = self.lock();
        let mut rows: Vec<(&Key, &Record)> = st
            .records
            .iter()
            .filter(|(k, _)| {
                terms.iter().all(|t| {
                    k.2 == *t
                        || self
                            .products
                            .get(&k.2)
                            .is_some_and(|p| p.name_lower.contains(t.as_str()))
                })
            })
            .collect();
        if !ordering.is_empty() {
            rows.sort_by(|a, b| {
                ordering
                    .iter()
                    .map(|(f, desc)| {
                        let o = match f {
                            Field::Date => a.0.0.cmp(&b.0.0),
                            Field::Shop => a.0.1.cmp(&b.0.1),
                            Field::Product => a.0.2.cmp(&b.0.2),
                            Field::Qty => a.1.qty.cmp(&b.1.qty),
                        };
                        if *desc { o.reverse() } else { o }
                    })
                    .find(|o| o.is_ne())
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
        }
        let count = rows.len();
        let pages = count.div_ceil(page_size).max(1);
        let Some(page) = page.filter(|p| *p <= pages) else {
            return Reply::detail(StatusCode::NOT_FOUND, "Invalid page.");
        };
        let start = (page - 1) * page_size;
        let results: Vec<Value> = rows
            .iter()
            .skip(start)
            .take(page_size)
            .map(|(k, r)| record_view(k, r))
            .collect();
        drop(st);

        let mut kept: Vec<(&str, String)> = Vec::new();
        if get("page_size").is_some() {
            kept.push(("page_size", page_size.to_string()));
        }
        for k in ["search", "ordering", "format"] {
            if let Some(v) = get(k) {
                kept.push((k, v.to_string()));
            }
        }
        let url = |n: usize| {
            let mut s = format!("http://{}/api/v1/product-inventory/?page={n}", call.host);
            for (k, v) in &kept {
                s.push('&');
                s.push_str(k);
                s.push('=');
                s.push_str(&encode_component(v));
            }
            Value::String(s)
        };
        let next = if page < pages {
            url(page + 1)
        } else {
            Value::Null
        };
        let previous = if page > 1 { url(page - 1) } else { Value::Null };
        Reply::new(
            StatusCode::OK,
            json!({"count": count, "next": next, "previous": previous, "results": results}),
        )
    }

    fn create(&self, call: &Call<'_>) -> Reply {
        let data = match request_data(call) {
            Ok(v) => v,
            Err(reply) => return reply,
        };
        let valid: Vec<(Key, Record)> = match &data {
            Value::Object(o) => match self.validate(o) {
                Ok(r) => vec![r],
                Err(e) => return Reply::new(StatusCode::BAD_REQUEST, Value::Object(e)),
            },
            Value::Array(items) => {
                if items.is_empty() {
                    return non_field_error("Expected a non-empty list of objects.");
                }
                if items.len() > self.max_list_size {
                    return non_field_error(&format!(
                        "Too many objects: at most {} per request, {} given.",
                        self.max_list_size,
                        items.len()
                    ));
                }
                let checked: Vec<Result<(Key, Record), Map<String, Value>>> = items
                    .iter()
                    .map(|item| match item {
                        Value::Object(o) => self.validate(o),
                        other => Err(non_field_map(&not_a_dict(other))),
                    })
                    .collect();
                if checked.iter().any(Result::is_err) {
                    let errors: Vec<Value> = checked
                        .into_iter()
                        .map(|r| Value::Object(r.err().unwrap_or_default()))
                        .collect();
                    return Reply::new(StatusCode::BAD_REQUEST, Value::Array(errors));
                }
                checked.into_iter().filter_map(Result::ok).collect()
            }
            other => return non_field_error(&not_a_dict(other)),
        };
        let (mut updated, mut inserted) = (0u64, 0u64);
        let mut st = self.lock();
        for (key, rec) in valid {
            if st.records.insert(key, rec).is_some() {
                updated += 1;
            } else {
                inserted += 1;
            }
        }
        st.posts += 1;
        drop(st);
        Reply::new(
            StatusCode::CREATED,
            json!({"updated": updated, "inserted": inserted}),
        )
        .header(
            header::LOCATION,
            format!("http://{}/api/v1/product-inventory/", call.host),
        )
    }

    /// Validates one object as the DRF serializer would: field errors first (all of them),
    /// then the rules across fields.
    fn validate(&self, o: &Map<String, Value>) -> Result<(Key, Record), Map<String, Value>> {
        let mut errors = Map::new();
        let mut fail = |field: &str, msg: String| {
            errors.insert(field.to_string(), json!([msg]));
        };
        let date = match given(o, "date") {
            None => {
                fail("date", REQUIRED.into());
                None
            }
            Some(v) => {
                let parsed = v.as_str().and_then(parse_date);
                if parsed.is_none() {
                    fail(
                        "date",
                        "Date has wrong format. Use one of these formats instead: YYYY-MM-DD."
                            .into(),
                    );
                }
                parsed
            }
        };
        let shop = match given(o, "shop_id").map(|v| char_field(v, 50)) {
            None => {
                fail("shop_id", REQUIRED.into());
                None
            }
            Some(Err(e)) => {
                fail("shop_id", e);
                None
            }
            Some(Ok(s)) if !self.shops.contains_key(&s) => {
                fail("shop_id", format!("Shop with id '{s}' does not exist."));
                None
            }
            Some(Ok(s)) => Some(s),
        };
        let product = match given(o, "product_id").map(|v| char_field(v, 100)) {
            None => {
                fail("product_id", REQUIRED.into());
                None
            }
            Some(Err(e)) => {
                fail("product_id", e);
                None
            }
            Some(Ok(p)) if !self.products.contains_key(&p) => {
                fail(
                    "product_id",
                    format!("Product with id '{p}' does not exist."),
                );
                None
            }
            Some(Ok(p)) => Some(p),
        };
        let qty = match given(o, "qty").map(|v| decimal_field(v, QTY_PLACES)) {
            None => {
                fail("qty", REQUIRED.into());
                None
            }
            Some(Err(e)) => {
                fail("qty", e);
                None
            }
            Some(Ok(q)) => Some(q),
        };
        let mut optional =
            |field: &str, places: u32| match given(o, field).map(|v| decimal_field(v, places)) {
                None => Ok(None),
                Some(Ok(v)) => Ok(Some(v)),
                Some(Err(e)) => {
                    fail(field, e);
                    Err(())
                }
            };
        let price = optional("original_price", QTY_PLACES);
        let total = optional("stock_total_price", TOTAL_PLACES);
        let (Some(date), Some(shop), Some(product), Some(qty), Ok(price), Ok(total)) =
            (date, shop, product, qty, price, total)
        else {
            return Err(errors);
        };
        let total = match (price, total) {
            (None, None) => None,
            (None, Some(_)) => {
                fail(
                    "original_price",
                    "This field is required when stock_total_price is given.".into(),
                );
                return Err(errors);
            }
            (Some(p), given_total) => {
                let computed = round_half_up(qty * p, 2 * QTY_PLACES - TOTAL_PLACES);
                match given_total {
                    Some(t) if t != computed => {
                        fail(
                            "non_field_errors",
                            format!(
                                "stock_total_price must equal qty * original_price ({} * {} = {}).",
                                format_decimal(qty, QTY_PLACES),
                                format_decimal(p, QTY_PLACES),
                                format_decimal(computed, TOTAL_PLACES)
                            ),
                        );
                        return Err(errors);
                    }
                    Some(t) => Some(t),
                    None if computed.unsigned_abs()
                        >= 10u128.pow((WHOLE_DIGITS as u32) + TOTAL_PLACES) =>
                    {
                        fail("stock_total_price", whole_digits_error());
                        return Err(errors);
                    }
                    None => Some(computed),
                }
            }
        };
        Ok((
            (date, shop, product),
            Record {
                qty,
                original_price: price,
                stock_total_price: total,
            },
        ))
    }
}

/// The DRF metadata of the collection, as the seed document shows it.
fn metadata() -> Value {
    let field = |ty: &str, required: bool, label: &str| json!({"type": ty, "required": required, "read_only": false, "label": label});
    json!({
        "name": "Product Inventory List",
        "description": "",
        "renders": ["application/json", "text/html"],
        "parses": [
            "application/json",
            "application/x-www-form-urlencoded",
            "multipart/form-data"
        ],
        "actions": {
            "POST": {
                "date": field("datetime", true, "Date"),
                "shop_id": field("string", true, "Shop id"),
                "product_id": field("string", true, "Product id"),
                "qty": field("decimal", true, "Qty"),
                "original_price": field("decimal", false, "Price"),
                "stock_total_price": field("decimal", false, "Total price"),
            }
        }
    })
}

fn record_view(k: &Key, r: &Record) -> Value {
    json!({
        "date": k.0,
        "shop_id": k.1,
        "product_id": k.2,
        "qty": format_decimal(r.qty, QTY_PLACES),
        "original_price": r.original_price.map(|p| format_decimal(p, QTY_PLACES)),
        "stock_total_price": r.stock_total_price.map(|t| format_decimal(t, TOTAL_PLACES)),
    })
}

fn non_field_map(msg: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("non_field_errors".into(), json!([msg]));
    m
}

fn non_field_error(msg: &str) -> Reply {
    Reply::new(StatusCode::BAD_REQUEST, Value::Object(non_field_map(msg)))
}

/// DRF's message for data that is not an object, with the Python type name.
fn not_a_dict(v: &Value) -> String {
    let ty = match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) => {
            if n.to_string().contains(['.', 'e', 'E']) {
                "float"
            } else {
                "int"
            }
        }
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    };
    format!("Invalid data. Expected a dictionary, but got {ty}.")
}

/// The POST body: JSON (an empty body is an empty object, as DRF reads it), or a form
/// body as one object of strings.
fn request_data(call: &Call<'_>) -> Result<Value, Reply> {
    let ct = call.content_type.unwrap_or("").trim().to_ascii_lowercase();
    if ct.starts_with("application/x-www-form-urlencoded") {
        let mut o = Map::new();
        for (k, v) in parse_form(call.body) {
            o.insert(k, Value::String(v));
        }
        return Ok(Value::Object(o));
    }
    if ct.starts_with("multipart/") {
        return Err(Reply::detail(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!(
                "Unsupported media type \"{}\" in request.",
                call.content_type.unwrap_or("")
            ),
        ));
    }
    if call.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice(call.body)
        .map_err(|e| Reply::detail(StatusCode::BAD_REQUEST, &format!("JSON parse error - {e}")))
}

/// The token request's parameters: a form body, or a JSON object body (the last value of a
/// repeated form parameter wins).
fn token_params(call: &Call<'_>) -> HashMap<String, String> {
    let ct = call.content_type.unwrap_or("").to_ascii_lowercase();
    let first = call.body.iter().find(|b| !b.is_ascii_whitespace());
    if ct.contains("json") || first == Some(&b'{') {
        let Ok(Value::Object(o)) = serde_json::from_slice::<Value>(call.body) else {
            return HashMap::new();
        };
        o.into_iter()
            .filter_map(|(k, v)| match v {
                Value::String(s) => Some((k, s)),
                Value::Number(n) => Some((k, n.to_string())),
                _ => None,
            })
            .collect()
    } else {
        parse_form(call.body).into_iter().collect()
    }
}

/// `Basic base64(client_id:client_secret)`, each part form-encoded (RFC 6749 2.3.1).
fn basic_credentials(h: &str) -> Option<(String, String)> {
    let (scheme, rest) = h.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((form_decode(id.as_bytes()), form_decode(secret.as_bytes())))
}

/// `application/x-www-form-urlencoded` pairs (also a query string).
fn parse_form(s: &[u8]) -> Vec<(String, String)> {
    s.split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.iter().position(|b| *b == b'=') {
            Some(i) => (form_decode(&p[..i]), form_decode(&p[i + 1..])),
            None => (form_decode(p), String::new()),
        })
        .collect()
}

/// Percent-decoding with `+` as a space; malformed escapes are kept as they are.
fn form_decode(s: &[u8]) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => {
                if let (Some(h), Some(l)) = (
                    s.get(i + 1).copied().and_then(hex),
                    s.get(i + 2).copied().and_then(hex),
                ) {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes a query value as Python's `quote_plus` does.
fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A positive integer as DRF's `_positive_int` reads it (too large saturates).
fn positive_int(s: &str) -> Option<usize> {
    let s = s.trim();
    let digits = s.strip_prefix('+').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let trimmed = digits.trim_start_matches('0');
    if trimmed.is_empty() {
        return None;
    }
    Some(trimmed.parse::<usize>().unwrap_or(usize::MAX))
}

/// A value that counts as given: not missing, not null, not a blank string.
fn given<'a>(o: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
    match o.get(k) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        v => v,
    }
}

/// A DRF `CharField` (whitespace trimmed; numbers become their text).
fn char_field(v: &Value, max: usize) -> Result<String, String> {
    let s = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return Err("Not a valid string.".into()),
    };
    if s.chars().count() > max {
        return Err(format!(
            "Ensure this field has no more than {max} characters."
        ));
    }
    Ok(s)
}

fn decimal_field(v: &Value, places: u32) -> Result<i128, String> {
    match v {
        Value::String(s) => parse_decimal(s, places),
        Value::Number(n) => parse_decimal(&n.to_string(), places),
        _ => Err(INVALID_NUMBER.into()),
    }
}

fn whole_digits_error() -> String {
    format!("Ensure that there are no more than {WHOLE_DIGITS} digits before the decimal point.")
}

/// Parses a decimal as a DRF `DecimalField` with `places` decimal places and 12 digits
/// before the point (Python `Decimal` syntax: sign, `.5`, `5.`, exponent); the value is
/// scaled by 10^places. Trailing zeros count as decimal places, as in DRF.
fn parse_decimal(text: &str, places: u32) -> Result<i128, String> {
    let invalid = || Err(INVALID_NUMBER.to_string());
    let s = text.trim();
    let (neg, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits_only = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if (int_part.is_empty() && frac_part.is_empty())
        || !digits_only(int_part)
        || !digits_only(frac_part)
    {
        return invalid();
    }
    let mut exponent: i64 = 0;
    if let Some(e) = exp {
        let (eneg, ed) = match e.as_bytes().first() {
            Some(b'-') => (true, &e[1..]),
            Some(b'+') => (false, &e[1..]),
            _ => (false, e),
        };
        if ed.is_empty() || !digits_only(ed) {
            return invalid();
        }
        for b in ed.bytes() {
            exponent = (exponent * 10 + i64::from(b - b'0')).min(1_000_000_000);
        }
        if eneg {
            exponent = -exponent;
        }
    }
    let frac_len = i64::try_from(frac_part.len()).unwrap_or(i64::MAX / 4);
    exponent -= frac_len;
    // significant digits, as Python's Decimal keeps them (leading zeros dropped)
    let int_sig = int_part.trim_start_matches('0');
    let sig_owned;
    let sig: &str = if int_sig.is_empty() {
        let f = frac_part.trim_start_matches('0');
        if f.is_empty() { "0" } else { f }
    } else {
        sig_owned = format!("{int_sig}{frac_part}");
        &sig_owned
    };
    let n = i64::try_from(sig.len()).unwrap_or(i64::MAX / 4);
    let (whole, decimals) = if exponent >= 0 {
        (n + exponent, 0)
    } else if -exponent > n {
        (0, -exponent)
    } else {
        (n + exponent, -exponent)
    };
    if decimals > i64::from(places) {
        return Err(format!(
            "Ensure that there are no more than {places} decimal places."
        ));
    }
    if whole > WHOLE_DIGITS {
        return Err(whole_digits_error());
    }
    // now sig has at most 16 digits and places + exponent is in 0..=places + 12
    let Ok(mut v) = sig.parse::<i128>() else {
        return invalid();
    };
    let shift = u32::try_from(i64::from(places) + exponent).unwrap_or(0);
    v *= 10i128.pow(shift);
    Ok(if neg { -v } else { v })
}

/// `v` (scaled) written with `places` decimals.
fn format_decimal(v: i128, places: u32) -> String {
    let p = 10u128.pow(places);
    let a = v.unsigned_abs();
    format!(
        "{}{}.{:0width$}",
        if v < 0 { "-" } else { "" },
        a / p,
        a % p,
        width = places as usize
    )
}

/// Drops `digits` decimal digits of a scaled value, rounding half away from zero
/// (Python's ROUND_HALF_UP).
fn round_half_up(v: i128, digits: u32) -> i128 {
    let d = 10i128.pow(digits);
    let a = v.abs();
    let q = a / d + i128::from((a % d) * 2 >= d);
    if v < 0 { -q } else { q }
}

/// `YYYY-MM-DD` (Django also takes one-digit months and days); written back as `YYYY-MM-DD`.
fn parse_date(s: &str) -> Option<String> {
    let mut it = s.split('-');
    let (y, m, d) = (it.next()?, it.next()?, it.next()?);
    let digits = |t: &str, lens: std::ops::RangeInclusive<usize>| {
        lens.contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit())
    };
    if it.next().is_some() || !digits(y, 4..=4) || !digits(m, 1..=2) || !digits(d, 1..=2) {
        return None;
    }
    let year: i32 = y.parse().ok()?;
    if year < 1 {
        return None;
    }
    let date = chrono::NaiveDate::from_ymd_opt(year, m.parse().ok()?, d.parse().ok()?)?;
    Some(date.format("%Y-%m-%d").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "bridge.test:8080";
    const NOW: i64 = 1_700_000_000;

    fn fixture() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/reference/datawiz.json")
    }

    fn api() -> DatawizApi {
        DatawizApi::load(&fixture()).expect("fixture loads")
    }

    struct Req<'a> {
        method: Method,
        path: &'a str,
        query: &'a str,
        auth: Option<String>,
        content_type: Option<&'a str>,
        body: Vec<u8>,
    }

    fn req(method: Method, target: &str) -> Req<'_> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Req {
            method,
            path,
            query,
            auth: None,
            content_type: None,
            body: Vec::new(),
        }
    }

    impl Req<'_> {
        fn bearer(mut self, token: &str) -> Self {
            self.auth = Some(format!("Bearer {token}"));
            self
        }
        fn form(mut self, body: &str) -> Self {
            self.content_type = Some("application/x-www-form-urlencoded");
            self.body = body.as_bytes().to_vec();
            self
        }
        fn json(mut self, body: &Value) -> Self {
            self.content_type = Some("application/json");
            self.body = body.to_string().into_bytes();
            self
        }
        fn raw(mut self, body: &str) -> Self {
            self.content_type = Some("application/json");
            self.body = body.as_bytes().to_vec();
            self
        }
    }

    fn send_at(api: &DatawizApi, r: &Req<'_>, now: i64) -> Reply {
        api.respond(
            &Call {
                method: &r.method,
                path: r.path,
                query: r.query,
                host: HOST,
                authorization: r.auth.as_deref(),
                content_type: r.content_type,
                body: &r.body,
            },
            now,
        )
    }

    fn send(api: &DatawizApi, r: &Req<'_>) -> Reply {
        send_at(api, r, NOW)
    }

    fn header(r: &Reply, name: HeaderName) -> Option<&str> {
        r.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    const PASSWORD_GRANT: &str = "grant_type=password&username=demo%40datawiz.io&password=datawiz-pass&client_id=soapbridge&client_secret=datawiz-demo-secret";

    fn login(api: &DatawizApi) -> (String, String) {
        let r = send(
            api,
            &req(Method::POST, "/api/o/token/").form(PASSWORD_GRANT),
        );
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        (
            r.body["access_token"].as_str().unwrap().to_string(),
            r.body["refresh_token"].as_str().unwrap().to_string(),
        )
    }

    fn get(api: &DatawizApi, token: &str, target: &str) -> Reply {
        send(api, &req(Method::GET, target).bearer(token))
    }

    fn post(api: &DatawizApi, token: &str, body: &Value) -> Reply {
        send(
            api,
            &req(Method::POST, "/api/v1/product-inventory/")
                .bearer(token)
                .json(body),
        )
    }

    fn keys(r: &Reply) -> Vec<String> {
        r.body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                format!(
                    "{}/{}/{}",
                    x["date"].as_str().unwrap(),
                    x["shop_id"].as_str().unwrap(),
                    x["product_id"].as_str().unwrap()
                )
            })
            .collect()
    }

    #[test]
    fn fixture_loads_with_generated_products() {
        let api = api();
        assert_eq!(api.lock().records.len(), 11);
        assert_eq!(api.shops.len(), 3);
        for id in ["6313", "6343", "P0001", "P0500", "P1000"] {
            assert!(api.products.contains_key(id), "{id}");
        }
        assert!(!api.products.contains_key("P1001"));
        assert!(!api.products.contains_key("P0000"));
        assert_eq!(api.products["P0042"].name_lower, "generated product 0042");
        assert_eq!(api.token_ttl, 3600);
        assert_eq!(
            (api.default_page_size, api.max_page_size, api.max_list_size),
            (50, 1000, 1000)
        );
    }

    #[test]
    fn seeds_are_checked() {
        let base = |inventory: &str| {
            format!(
                r#"{{"clients": [], "users": [], "token_ttl_seconds": 60, "default_page_size": 2,
                "max_page_size": 3, "max_list_size": 2, "shops": [{{"shop_id": "1", "name": "S"}}],
                "products": [{{"product_id": "A", "name": "Apple"}}], "inventory": {inventory}}}"#
            )
        };
        assert!(DatawizApi::from_seed_text(&base("[]")).is_ok());
        let bad = base(
            r#"[{"date": "2020-01-01", "shop_id": "1", "product_id": "A", "qty": "2", "original_price": "1", "stock_total_price": "3"}]"#,
        );
        let e = DatawizApi::from_seed_text(&bad).unwrap_err();
        assert!(e.contains("stock_total_price must equal"), "{e}");
        let unknown =
            base(r#"[{"date": "2020-01-01", "shop_id": "9", "product_id": "A", "qty": "2"}]"#);
        assert!(
            DatawizApi::from_seed_text(&unknown)
                .unwrap_err()
                .contains("Shop with id '9'")
        );
        assert!(DatawizApi::from_seed_text("{}").is_err());
        assert!(DatawizApi::load(Path::new("/nonexistent/datawiz.json")).is_err());
    }

    #[test]
    fn password_grant() {
        let api = api();
        let r = send(
            &api,
            &req(Method::POST, "/api/o/token/").form(PASSWORD_GRANT),
        );
        assert_eq!(r.status, StatusCode::OK);
        let access = r.body["access_token"].as_str().unwrap();
        assert_eq!(access.len(), 32);
        assert!(access.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(r.body["token_type"], "Bearer");
        assert_eq!(r.body["expires_in"], 3600);
        assert_eq!(r.body["scope"], "read write");
        assert_ne!(r.body["refresh_token"], r.body["access_token"]);
        assert_eq!(header(&r, header::CACHE_CONTROL), Some("no-store"));
        // JSON body and HTTP Basic client authentication work too
        let r = send(
            &api,
            &req(Method::POST, "/api/o/token").json(&json!({
                "grant_type": "password", "username": "demo@datawiz.io",
                "password": "datawiz-pass", "client_id": "soapbridge",
                "client_secret": "datawiz-demo-secret"})),
        );
        assert_eq!(r.status, StatusCode::OK);
        let basic =
            base64::engine::general_purpose::STANDARD.encode("soapbridge:datawiz-demo-secret");
        let mut q = req(Method::POST, "/api/o/token/")
            .form("grant_type=password&username=demo%40datawiz.io&password=datawiz-pass");
        q.auth = Some(format!("Basic {basic}"));
        assert_eq!(send(&api, &q).status, StatusCode::OK);
        let stats = send(&api, &req(Method::GET, "/_reference/stats"));
        assert_eq!(
            stats.body["token_requests"],
            json!({"password": 3, "refresh_token": 0})
        );
    }

    #[test]
    fn token_errors() {
        let api = api();
        let token = |body: &str| send(&api, &req(Method::POST, "/api/o/token/").form(body));
        let r = token(&PASSWORD_GRANT.replace("datawiz-pass", "wrong"));
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            r.body,
            json!({"error": "invalid_grant", "error_description": "Invalid credentials given."})
        );
        let r = token(&PASSWORD_GRANT.replace("datawiz-demo-secret", "nope"));
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.body, json!({"error": "invalid_client"}));
        let r = token(&PASSWORD_GRANT.replace("client_id=soapbridge", "client_id=other"));
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.body, json!({"error": "invalid_client"}));
        let r =
            token(&PASSWORD_GRANT.replace("grant_type=password", "grant_type=client_credentials"));
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.body, json!({"error": "unsupported_grant_type"}));
        assert_eq!(token("").body, json!({"error": "unsupported_grant_type"}));
        let r = token("grant_type=password&client_id=soapbridge&client_secret=datawiz-demo-secret");
        assert_eq!(r.body["error"], "invalid_request");
        let r = send(&api, &req(Method::GET, "/api/o/token/"));
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
        let stats = send(&api, &req(Method::GET, "/_reference/stats"));
        assert_eq!(
            stats.body["token_requests"],
            json!({"password": 0, "refresh_token": 0})
        );
    }

    #[test]
    fn form_values_are_percent_decoded() {
        assert_eq!(form_decode(b"a+b%20c%40d%2Be"), "a b c@d+e");
        assert_eq!(form_decode(b"100%"), "100%");
        assert_eq!(form_decode(b"%zz%4"), "%zz%4");
        assert_eq!(form_decode("%D0%9A".as_bytes()), "К");
        assert_eq!(
            parse_form(b"x=1&&y&z=a%3Db"),
            vec![
                ("x".to_string(), "1".to_string()),
                ("y".to_string(), String::new()),
                ("z".to_string(), "a=b".to_string())
            ]
        );
        assert_eq!(encode_component("milk choc/é"), "milk+choc%2F%C3%A9");
    }

    #[test]
    fn refresh_grant_rotates_the_refresh_token() {
        let api = api();
        let (access, refresh) = login(&api);
        let body = format!(
            "grant_type=refresh_token&refresh_token={refresh}&client_id=soapbridge&client_secret=datawiz-demo-secret"
        );
        let r = send(&api, &req(Method::POST, "/api/o/token/").form(&body));
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let new_access = r.body["access_token"].as_str().unwrap().to_string();
        let new_refresh = r.body["refresh_token"].as_str().unwrap();
        assert_ne!(new_access, access);
        assert_ne!(new_refresh, refresh);
        assert_eq!(
            get(&api, &new_access, "/api/v1/product-inventory/").status,
            StatusCode::OK
        );
        // the old refresh token is spent
        let r = send(&api, &req(Method::POST, "/api/o/token/").form(&body));
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.body["error"], "invalid_grant");
        assert_eq!(r.body["error_description"], "Invalid credentials given.");
        let stats = send(&api, &req(Method::GET, "/_reference/stats"));
        assert_eq!(
            stats.body["token_requests"],
            json!({"password": 1, "refresh_token": 1})
        );
    }

    #[test]
    fn bearer_token_is_required() {
        let api = api();
        let r = send(&api, &req(Method::GET, "/api/v1/product-inventory/"));
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.body,
            json!({"detail": "Authentication credentials were not provided."})
        );
        let r = get(&api, "0123456789abcdef", "/api/v1/product-inventory/");
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.body, json!({"detail": "Invalid token."}));
        assert_eq!(
            header(&r, header::WWW_AUTHENTICATE),
            Some("Bearer realm=\"api\"")
        );
        assert_eq!(header(&r, header::ALLOW), Some(COLLECTION_ALLOW));
        let (access, refresh) = login(&api);
        assert_eq!(
            get(&api, &access, "/api/v1/product-inventory/").status,
            StatusCode::OK
        );
        // expires after token_ttl_seconds
        let at = |now| {
            send_at(
                &api,
                &req(Method::GET, "/api/v1/product-inventory/").bearer(&access),
                now,
            )
        };
        assert_eq!(at(NOW + 3599).status, StatusCode::OK);
        let r = at(NOW + 3600);
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.body, json!({"detail": "Invalid token."}));
        // the admin call expires every access token, refresh tokens stay valid
        let r = send(&api, &req(Method::POST, "/_reference/expire-tokens"));
        assert_eq!(r.body, json!({"expired": 1}));
        assert_eq!(
            get(&api, &access, "/api/v1/product-inventory/").body,
            json!({"detail": "Invalid token."})
        );
        let body = format!(
            "grant_type=refresh_token&refresh_token={refresh}&client_id=soapbridge&client_secret=datawiz-demo-secret"
        );
        let r = send(&api, &req(Method::POST, "/api/o/token/").form(&body));
        assert_eq!(r.status, StatusCode::OK);
        let fresh = r.body["access_token"].as_str().unwrap();
        assert_eq!(
            get(&api, fresh, "/api/v1/product-inventory/").status,
            StatusCode::OK
        );
        assert_eq!(
            send(&api, &req(Method::GET, "/_reference/expire-tokens")).status,
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[test]
    fn pagination_links() {
        let api = api();
        let (t, _) = login(&api);
        let r = get(&api, &t, "/api/v1/product-inventory/?page_size=2");
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body["count"], 11);
        assert_eq!(
            r.body["next"],
            "http://bridge.test:8080/api/v1/product-inventory/?page=2&page_size=2"
        );
        assert_eq!(r.body["previous"], Value::Null);
        assert_eq!(
            r.body["results"],
            json!([
                {"date": "2016-06-07", "shop_id": "3", "product_id": "6313", "qty": "1.0000",
                 "original_price": "45.6600", "stock_total_price": "45.66"},
                {"date": "2016-06-07", "shop_id": "3", "product_id": "6343", "qty": "2.0000",
                 "original_price": "46.6700", "stock_total_price": "93.34"}
            ])
        );
        assert_eq!(header(&r, header::ALLOW), Some("GET, POST, HEAD, OPTIONS"));
        let r = get(
            &api,
            &t,
            "/api/v1/product-inventory/.json?page=2&page_size=2",
        );
        assert_eq!(
            r.body["previous"],
            "http://bridge.test:8080/api/v1/product-inventory/?page=1&page_size=2"
        );
        assert_eq!(
            r.body["next"],
            "http://bridge.test:8080/api/v1/product-inventory/?page=3&page_size=2"
        );
        let r = get(&api, &t, "/api/v1/product-inventory?page=6&page_size=2");
        assert_eq!(keys(&r), ["2016-06-09/3/8101"]);
        assert_eq!(r.body["next"], Value::Null);
        for bad in [
            "page=7&page_size=2",
            "page=0",
            "page=-1",
            "page=abc",
            "page=2",
        ] {
            let r = get(&api, &t, &format!("/api/v1/product-inventory/?{bad}"));
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{bad}");
            assert_eq!(r.body, json!({"detail": "Invalid page."}));
        }
        // parameters are kept, percent-encoded
        let r = get(
            &api,
            &t,
            "/api/v1/product-inventory/?search=milk+2.5%25&ordering=-qty&page_size=1",
        );
        assert_eq!(r.body["count"], 2);
        assert_eq!(
            r.body["next"],
            "http://bridge.test:8080/api/v1/product-inventory/?page=2&page_size=1&search=milk+2.5%25&ordering=-qty"
        );
        // defaults and clamping
        let r = get(&api, &t, "/api/v1/product-inventory/");
        assert_eq!(r.body["results"].as_array().unwrap().len(), 11);
        assert_eq!(r.body["next"], Value::Null);
        let r = get(&api, &t, "/api/v1/product-inventory/?page_size=5000");
        assert_eq!(r.body["results"].as_array().unwrap().len(), 11);
        assert_eq!(positive_int("5000").map(|n| n.min(1000)), Some(1000));
        assert_eq!(positive_int("0"), None);
        assert_eq!(positive_int("x"), None);
        assert_eq!(positive_int("99999999999999999999999"), Some(usize::MAX));
        let r = get(&api, &t, "/api/v1/product-inventory/?search=unknown-string");
        assert_eq!(
            r.body,
            json!({"count": 0, "next": null, "previous": null, "results": []})
        );
        let r = get(
            &api,
            &t,
            "/api/v1/product-inventory/?search=unknown-string&page=2",
        );
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }

    #[test]
    fn search_and_ordering() {
        let api = api();
        let (t, _) = login(&api);
        let r = get(&api, &t, "/api/v1/product-inventory/?search=COFFEE");
        assert_eq!(
            keys(&r),
            [
                "2016-06-08/1/7001",
                "2016-06-08/2/7002",
                "2016-06-09/3/7003"
            ]
        );
        let r = get(&api, &t, "/api/v1/product-inventory/?search=milk");
        assert_eq!(
            keys(&r),
            [
                "2016-06-07/3/6313",
                "2016-06-07/3/6350",
                "2016-06-08/1/6313"
            ]
        );
        let r = get(&api, &t, "/api/v1/product-inventory/?search=6343");
        assert_eq!(keys(&r), ["2016-06-07/3/6343", "2016-06-08/2/6343"]);
        let r = get(&api, &t, "/api/v1/product-inventory/?search=coffee+arabica");
        assert_eq!(keys(&r), ["2016-06-08/1/7001"]);
        let r = get(
            &api,
            &t,
            "/api/v1/product-inventory/?ordering=-qty&page_size=3",
        );
        assert_eq!(
            keys(&r),
            [
                "2016-06-08/1/6313",
                "2016-06-09/3/7003",
                "2016-06-08/1/8100"
            ]
        );
        let r = get(
            &api,
            &t,
            "/api/v1/product-inventory/?ordering=qty&page_size=2",
        );
        assert_eq!(keys(&r), ["2016-06-07/3/6313", "2016-06-07/3/6343"]);
        let r = get(
            &api,
            &t,
            "/api/v1/product-inventory/?ordering=-date,shop_id&page_size=3",
        );
        assert_eq!(
            keys(&r),
            [
                "2016-06-09/3/7003",
                "2016-06-09/3/8101",
                "2016-06-08/1/6313"
            ]
        );
        let r = get(
            &api,
            &t,
            "/api/v1/product-inventory/?ordering=-product_id&page_size=1",
        );
        assert_eq!(keys(&r), ["2016-06-08/2/9005"]);
        assert_eq!(r.body["results"][0]["original_price"], Value::Null);
        assert_eq!(r.body["results"][0]["stock_total_price"], Value::Null);
        // unknown fields are ignored
        let r = get(
            &api,
            &t,
            "/api/v1/product-inventory/?ordering=name&page_size=1",
        );
        assert_eq!(keys(&r), ["2016-06-07/3/6313"]);
    }

    fn item(date: &str, shop: &str, product: &str, qty: &str) -> Value {
        json!({"date": date, "shop_id": shop, "product_id": product, "qty": qty})
    }

    #[test]
    fn post_inserts_then_replaces() {
        let api = api();
        let (t, _) = login(&api);
        let mut one = item("2016-06-10", "1", "6313", "5");
        one["original_price"] = json!("45.66");
        let r = post(&api, &t, &one);
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        assert_eq!(r.body, json!({"updated": 0, "inserted": 1}));
        assert_eq!(
            header(&r, header::LOCATION),
            Some("http://bridge.test:8080/api/v1/product-inventory/")
        );
        one["qty"] = json!(7);
        one["unknown_field"] = json!("ignored");
        let r = post(&api, &t, &one);
        assert_eq!(r.body, json!({"updated": 1, "inserted": 0}));
        let r = get(
            &api,
            &t,
            "/api/v1/product-inventory/?ordering=-date&page_size=1",
        );
        assert_eq!(
            r.body["results"][0],
            json!({"date": "2016-06-10", "shop_id": "1", "product_id": "6313", "qty": "7.0000",
                   "original_price": "45.6600", "stock_total_price": "319.62"})
        );
        // numbers are accepted for ids; a form body is one object
        let r = post(
            &api,
            &t,
            &json!({"date": "2016-06-10", "shop_id": 2, "product_id": 6343, "qty": 1.5}),
        );
        assert_eq!(r.body, json!({"updated": 0, "inserted": 1}));
        let r = send(
            &api,
            &req(Method::POST, "/api/v1/product-inventory/.json")
                .bearer(&t)
                .form("date=2016-06-10&shop_id=2&product_id=6343&qty=2"),
        );
        assert_eq!(r.body, json!({"updated": 1, "inserted": 0}));
        let stats = send(&api, &req(Method::GET, "/_reference/stats"));
        assert_eq!(stats.body["posts"], 4);
        assert_eq!(stats.body["records"], 13);
    }

    #[test]
    fn stock_total_price_rule() {
        let api = api();
        let (t, _) = login(&api);
        let mut o = item("2016-06-11", "3", "6343", "2.0000");
        o["original_price"] = json!("46.6700");
        o["stock_total_price"] = json!("93.34");
        assert_eq!(post(&api, &t, &o).status, StatusCode::CREATED);
        o["stock_total_price"] = json!("0.00");
        let r = post(&api, &t, &o);
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            r.body,
            json!({"non_field_errors": ["stock_total_price must equal qty * original_price (2.0000 * 46.6700 = 93.34)."]})
        );
        // half-up rounding, exact: 2.75 * 16.33 = 44.9075
        let mut o = item("2016-06-11", "3", "8101", "2.75");
        o["original_price"] = json!(16.33);
        o["stock_total_price"] = json!(44.91);
        assert_eq!(post(&api, &t, &o).status, StatusCode::CREATED);
        o["stock_total_price"] = json!("44.90");
        assert_eq!(post(&api, &t, &o).status, StatusCode::BAD_REQUEST);
        // without original_price
        let mut o = item("2016-06-11", "3", "8101", "1");
        o["stock_total_price"] = json!("1.00");
        let r = post(&api, &t, &o);
        assert_eq!(
            r.body,
            json!({"original_price": ["This field is required when stock_total_price is given."]})
        );
        // a total too large for its field
        let mut o = item("2016-06-11", "3", "8101", "999999999999");
        o["original_price"] = json!("999999999999");
        let r = post(&api, &t, &o);
        assert_eq!(
            r.body,
            json!({"stock_total_price": ["Ensure that there are no more than 12 digits before the decimal point."]})
        );
    }

    #[test]
    fn field_errors() {
        let api = api();
        let (t, _) = login(&api);
        let err = |o: Value| {
            let r = post(&api, &t, &o);
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{o}");
            r.body
        };
        let mut o = item("2016-06-07", "3", "6343", "1");
        o.as_object_mut().unwrap().remove("qty");
        assert_eq!(err(o.clone()), json!({"qty": ["This field is required."]}));
        for empty in [json!(null), json!(""), json!("  ")] {
            o["qty"] = empty;
            assert_eq!(err(o.clone()), json!({"qty": ["This field is required."]}));
        }
        o["qty"] = json!("abc");
        assert_eq!(
            err(o.clone()),
            json!({"qty": ["A valid number is required."]})
        );
        o["qty"] = json!(true);
        assert_eq!(
            err(o.clone()),
            json!({"qty": ["A valid number is required."]})
        );
        o["qty"] = json!("1.23456");
        assert_eq!(
            err(o.clone()),
            json!({"qty": ["Ensure that there are no more than 4 decimal places."]})
        );
        o["qty"] = json!("1234567890123");
        assert_eq!(
            err(o.clone()),
            json!({"qty": ["Ensure that there are no more than 12 digits before the decimal point."]})
        );
        o["qty"] = json!("1");
        o["original_price"] = json!("1");
        o["stock_total_price"] = json!("1.001");
        assert_eq!(
            err(o.clone()),
            json!({"stock_total_price": ["Ensure that there are no more than 2 decimal places."]})
        );
        let r = err(json!({"date": "07.06.2016", "shop_id": "99", "product_id": "x", "qty": "1"}));
        assert_eq!(
            r,
            json!({
                "date": ["Date has wrong format. Use one of these formats instead: YYYY-MM-DD."],
                "shop_id": ["Shop with id '99' does not exist."],
                "product_id": ["Product with id 'x' does not exist."]
            })
        );
        assert_eq!(
            err(json!({}))
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["date", "product_id", "qty", "shop_id"]
        );
        let long = "x".repeat(51);
        assert_eq!(
            err(json!({"date": "2016-02-30", "shop_id": long, "product_id": "6313", "qty": "1"})),
            json!({
                "date": ["Date has wrong format. Use one of these formats instead: YYYY-MM-DD."],
                "shop_id": ["Ensure this field has no more than 50 characters."]
            })
        );
        assert_eq!(api.lock().records.len(), 11);
    }

    #[test]
    fn lists_are_all_or_nothing() {
        let api = api();
        let (t, _) = login(&api);
        let list = json!([
            item("2016-06-12", "1", "6313", "1"),
            item("2016-06-12", "1", "6343", ""),
            item("2016-06-12", "2", "6313", "1"),
            "oops"
        ]);
        let r = post(&api, &t, &list);
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            r.body,
            json!([
                {},
                {"qty": ["This field is required."]},
                {},
                {"non_field_errors": ["Invalid data. Expected a dictionary, but got str."]}
            ])
        );
        assert_eq!(api.lock().records.len(), 11);
        // all valid: stored; duplicates inside the list: the last wins
        let list = json!([
            item("2016-06-12", "1", "6313", "1"),
            item("2016-06-07", "3", "6313", "9"),
            item("2016-06-12", "1", "6313", "3"),
        ]);
        let r = post(&api, &t, &list);
        assert_eq!(r.status, StatusCode::CREATED);
        assert_eq!(r.body, json!({"updated": 2, "inserted": 1}));
        let st = api.lock();
        assert_eq!(st.records.len(), 12);
        let k = (
            "2016-06-12".to_string(),
            "1".to_string(),
            "6313".to_string(),
        );
        assert_eq!(st.records[&k].qty, 30_000);
    }

    #[test]
    fn list_limits_and_bad_bodies() {
        let api = api();
        let (t, _) = login(&api);
        let many: Vec<Value> = (1..=1001)
            .map(|n| item("2016-07-01", "1", &format!("P{:04}", n.min(1000)), "1"))
            .collect();
        let r = post(&api, &t, &Value::Array(many.clone()));
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            r.body,
            json!({"non_field_errors": ["Too many objects: at most 1000 per request, 1001 given."]})
        );
        let r = post(&api, &t, &Value::Array(many[..1000].to_vec()));
        assert_eq!(r.body, json!({"updated": 0, "inserted": 1000}));
        let r = post(&api, &t, &json!([]));
        assert_eq!(
            r.body,
            json!({"non_field_errors": ["Expected a non-empty list of objects."]})
        );
        let r = post(&api, &t, &json!("text"));
        assert_eq!(
            r.body,
            json!({"non_field_errors": ["Invalid data. Expected a dictionary, but got str."]})
        );
        let r = post(&api, &t, &json!(3));
        assert_eq!(
            r.body["non_field_errors"][0],
            "Invalid data. Expected a dictionary, but got int."
        );
        let r = send(
            &api,
            &req(Method::POST, "/api/v1/product-inventory/")
                .bearer(&t)
                .raw("{\"date\": "),
        );
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(
            r.body["detail"]
                .as_str()
                .unwrap()
                .starts_with("JSON parse error - ")
        );
    }

    #[test]
    fn options_metadata_and_other_methods() {
        let api = api();
        let (t, _) = login(&api);
        let r = send(
            &api,
            &req(Method::OPTIONS, "/api/v1/product-inventory/").bearer(&t),
        );
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(header(&r, header::ALLOW), Some("GET, POST, HEAD, OPTIONS"));
        let expected: Value = serde_json::from_str(
            r#"{ "name": "Product Inventory List", "description": "", "renders": [ "application/json", "text/html" ], "parses": [ "application/json", "application/x-www-form-urlencoded", "multipart/form-data" ], "actions": { "POST": { "date": { "type": "datetime", "required": true, "read_only": false, "label": "Date" }, "shop_id": { "type": "string", "required": true, "read_only": false, "label": "Shop id" }, "product_id": { "type": "string", "required": true, "read_only": false, "label": "Product id" }, "qty": { "type": "decimal", "required": true, "read_only": false, "label": "Qty" }, "original_price": { "type": "decimal", "required": false, "read_only": false, "label": "Price" }, "stock_total_price": { "type": "decimal", "required": false, "read_only": false, "label": "Total price" } } } }"#,
        )
        .unwrap();
        assert_eq!(r.body, expected);
        let r = send(
            &api,
            &req(Method::DELETE, "/api/v1/product-inventory/").bearer(&t),
        );
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.body, json!({"detail": "Method \"DELETE\" not allowed."}));
        let r = send(&api, &req(Method::GET, "/api/v1/products/").bearer(&t));
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(r.body, json!({"detail": "Not found."}));
        let r = send(
            &api,
            &req(Method::HEAD, "/api/v1/product-inventory/").bearer(&t),
        );
        assert_eq!(r.status, StatusCode::OK);
        let resp = r.into_response(true);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        assert!(
            resp.headers()[header::CONTENT_LENGTH]
                .to_str()
                .unwrap()
                .parse::<usize>()
                .unwrap()
                > 100
        );
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(parse_decimal("2.0000", 4), Ok(20_000));
        assert_eq!(parse_decimal(" 46.67 ", 4), Ok(466_700));
        assert_eq!(parse_decimal("-.5", 4), Ok(-5_000));
        assert_eq!(parse_decimal("5.", 4), Ok(50_000));
        assert_eq!(parse_decimal("1.5e2", 4), Ok(1_500_000));
        assert_eq!(parse_decimal("15E-1", 2), Ok(150));
        assert_eq!(parse_decimal("000123.1", 4), Ok(1_231_000));
        assert_eq!(
            parse_decimal("999999999999.9999", 4),
            Ok(9_999_999_999_999_999)
        );
        assert!(parse_decimal("0.00001", 4).is_err());
        assert!(parse_decimal("1.00000", 4).is_err());
        assert!(parse_decimal("1e12", 4).is_err());
        assert!(parse_decimal("1e-99999999999999999999", 4).is_err());
        for bad in ["", ".", "-", "1.2.3", "1e", "NaN", "Infinity", "1_000", "١"] {
            assert_eq!(
                parse_decimal(bad, 4),
                Err(INVALID_NUMBER.to_string()),
                "{bad}"
            );
        }
        assert_eq!(format_decimal(20_000, 4), "2.0000");
        assert_eq!(format_decimal(9334, 2), "93.34");
        assert_eq!(format_decimal(-5, 2), "-0.05");
        let product = parse_decimal("2.0000", 4).unwrap() * parse_decimal("46.6700", 4).unwrap();
        assert_eq!(format_decimal(round_half_up(product, 6), 2), "93.34");
        assert_eq!(round_half_up(449_075_000, 6), 449);
        assert_eq!(round_half_up(5_000_000, 7), 1);
        assert_eq!(round_half_up(-5_000_000, 7), -1);
        assert_eq!(round_half_up(4_999_999, 7), 0);
        assert_eq!(parse_date("2016-06-07").as_deref(), Some("2016-06-07"));
        assert_eq!(parse_date("2016-6-7").as_deref(), Some("2016-06-07"));
        for bad in [
            "2016-02-30",
            "16-06-07",
            "2016-06-07T00:00",
            "0000-01-01",
            "",
            "2016--07",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn served_over_http_with_head() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = super::super::spawn("datawiz", &fixture(), listener).unwrap();
        let exchange = |request: String| async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(request.as_bytes()).await.unwrap();
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.unwrap();
            String::from_utf8(out).unwrap()
        };
        let body = PASSWORD_GRANT;
        let answer = exchange(format!(
            "POST /api/o/token/ HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ))
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let json_start = answer.find("\r\n\r\n").unwrap() + 4;
        let token: Value = serde_json::from_str(&answer[json_start..]).unwrap();
        let token = token["access_token"].as_str().unwrap().to_string();
        let ask = |method: &str| {
            format!(
                "{method} /api/v1/product-inventory/?page_size=2 HTTP/1.1\r\nHost: example.org\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
            )
        };
        let got = exchange(ask("GET")).await;
        let head = exchange(ask("HEAD")).await;
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
        assert!(got.contains("http://example.org/api/v1/product-inventory/?page=2&page_size=2"));
        let (got_head, got_body) = got.split_once("\r\n\r\n").unwrap();
        assert!(head.ends_with("\r\n\r\n"), "{head}");
        let length = |h: &str| {
            h.lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(str::to_string)
            })
        };
        assert_eq!(length(got_head), Some(got_body.len().to_string()));
        assert_eq!(length(&head), Some(got_body.len().to_string()));
        assert!(
            head.to_ascii_lowercase()
                .contains("allow: get, post, head, options")
        );
    }
}
