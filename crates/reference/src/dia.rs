//! Reference backend imitating the DİA ERP JSON web service (v3): session login, and insert
//! (`_ekle`) services whose validation rules come from models in the seed file.
//!
//! # HTTP API
//!
//! `POST /api/v3/{module}/json` with a body of exactly one member, `{"<service>": {...}}`.
//! Like DİA, every answer is HTTP 200 with `{"code": "<string>", "msg": ..}` (plus `key` after
//! an insert), errors included:
//!
//! - `400` `Geçersiz istek: ..` when the body is not JSON, not a one-member object, or the
//!   service's value is not an object;
//! - `400` `Servis bulunamadı: <service>` for a service unknown on that module.
//!
//! Any other path is HTTP 404 `{"code": "404", ..}`; another method on a known path is
//! HTTP 405 (with `Allow`); a body over 4 MiB is HTTP 413.
//!
//! Services:
//!
//! - `sis` / `login`: `{"username", "password", "disconnect_same_user": "True",
//!   "params": {"apikey"}}` answers `{"code": "200", "msg": "<32 lowercase hex session id>"}`, or
//!   `{"code": "401", "msg": "NOUSER"}` when the username, password or apikey is wrong.
//!   `disconnect_same_user` (`"True"`, `"true"` or `true`) ends the user's other sessions (they
//!   are forgotten: using one gives 401).
//! - `sis` / `logout`: `{"session_id"}` answers `{"code": "200", "msg": "OK"}` (401 when the
//!   session is unknown).
//! - `<table>_ekle` on the module named by the table's prefix (`gts_notlar_ekle` on `gts`), for
//!   every model of the seed that is not used as a sub-model:
//!   `{"session_id", "firma_kodu", "donem_kodu", "kart": {..}}` answers
//!   `{"code": "200", "key": "<new _key>", "msg": "<the model's message>"}`.
//!
//! Checks, in this order: the service exists on the module; the session (`401 Geçersiz oturum
//! (session_id)` when unknown, `419 Oturum zaman aşımına uğradı, ..` when idle longer than
//! `session_idle_seconds` or expired by the admin call; a call that passes this check refreshes
//! the idle timer); the company (`firma_kodu`, `donem_kodu` as numbers or strings of digits,
//! else `400 Firma veya dönem bulunamadı (firma_kodu: 35, donem_kodu: 1)`); then the card.
//!
//! # Card validation
//!
//! A card is checked against its model, all or nothing (nothing is stored and no key is used
//! when a rule fails), in a fixed order: first every member of the card must be a field or a
//! sub-model of the model (`Tanımsız alan (<table> → <name>)`, in the card's order); then the
//! fields in the model's order; then the sub-models in the model's order, each row recursively.
//! Messages about sub-rows name the sub-model's table.
//!
//! - A missing field, `null`, or (for every type but plain strings) a blank string takes the
//!   field's `default`, or is stored as `null` when it has none.
//! - Types: `string` (a JSON string; a number is taken as its text), `int` (an integer or a
//!   string of one; stored as a number), `decimal` (a number or a string like `-12.50`; stored
//!   as the text given), `date` (`YYYY-MM-DD`), `time` (`HH:MM:SS`). Anything else:
//!   `Geçersiz değer (<field> -> <value>)`.
//! - `combo` fields take one of their short codes: `Kombo değeri geçersiz (<field> -> <value>)`.
//! - `required` fields must not end up `null` or blank: `Zorunlu alan boş bırakılamaz
//!   (<table> → <field>)`.
//! - `unique` fields: `Bu kod ile kayıtlı bir kart zaten var (<table> → <field>: <value>)` when a
//!   stored row (or another row of the same call) has the same text.
//! - Link fields (`_key_<table>`) take a `_key` (a number or a string of digits; `0` or `null` is
//!   no link, stored as `null`) or a lookup object whose members must all equal (compared as
//!   text) the linked row's; the stored row keeps the linked row's numeric `_key`. No match:
//!   `Kayıt bulunamadı (<linked table> → {'_key': 123})`; several: `Birden fazla kayıt bulundu
//!   (<linked table> → {'kod': 'WS003'})`, the lookup written like a Python dict in the order
//!   given.
//! - Sub-models are lists of objects; a required one that is missing or empty answers its
//!   `required_message`.
//!
//! The stored row holds `_key`, every field of the model and every sub-model (a list of rows,
//! each with its own `_key`). Keys come from one sequence starting at `next_key`: the card
//! first, then its sub-rows depth first. The success message is the model's `message` with
//! `{field}` (the stored value as text), `{_key}` and `{$user}` (the logged-in user) filled in.
//!
//! # Reference-only endpoints (not part of DİA; for tests)
//!
//! - `POST /_reference/expire-sessions`: every session expires (the next call with it gets 419);
//!   answers `{"expired": <sessions expired now>}`.
//! - `GET /_reference/stats`: `{"logins": <successful logins>, "calls": <requests to the API
//!   path, logins included, whatever their outcome>}`.
//! - `GET /_reference/records/<table>`: `{"records": [..]}`, the table's rows in insertion order
//!   (seed rows first), as stored. Tables are the seed's `tables` and the insertable models.
//!
//! # Seed file
//!
//! ```json
//! {
//!   "session_idle_seconds": 3600,
//!   "next_key": 330389,
//!   "users": [{"username": "ws", "password": "ws-pass", "apikey": "dia-demo-apikey"}],
//!   "companies": [{"firma_kodu": 34, "donem_kodu": [1]}],
//!   "tables": {"sis_birim": [{"_key": 21, "kod": "ADET"}], "gts_gorev": []},
//!   "models": {
//!     "scf_fatura": {
//!       "message": "«{fisno}» numaralı fatura eklenmiştir.",
//!       "fields": [
//!         {"name": "fisno", "type": "string", "required": true, "unique": true},
//!         {"name": "turu", "type": "string", "default": "2", "combo": {"1": "..", "2": ".."}},
//!         {"name": "_key_scf_carikart", "type": "link", "required": true}
//!       ],
//!       "submodels": [
//!         {"name": "m_kalemler", "model": "scf_fatura_kalem", "required": true,
//!          "required_message": "Kalem bilgisi girilmelidir!"}
//!       ]
//!     }
//!   }
//! }
//! ```
//!
//! `session_idle_seconds` defaults to 3600. Seed rows need a positive integer `_key` below
//! `next_key`, unique in their table; they are not checked against models, but their `unique`
//! values (sub-rows included) count. A field has `name`, `type` (`string`, `int`, `decimal`,
//! `date`, `time`, `link`), and optionally `required`, `unique`, `default` (checked like a
//! given value), `combo` (short code -> label; strings only). A `link` field is named
//! `_key_<table>` and links that table unless it names another in `table` (`_key_sis_ozelkod2`
//! -> `sis_ozelkod`); the linked table must be in `tables` or be an insertable model. A
//! sub-model has `name`, `model`, and optionally `required` and `required_message` (default: the
//! `Zorunlu alan ..` message). A model used as a sub-model has no insert service; sub-models
//! must not form a cycle. `message` defaults to `Kayıt eklenmiştir.`; its placeholders must name
//! fields of the model, `_key` or `$user`. Unknown members anywhere in the seed are errors.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use md5::{Digest, Md5};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value, json};

use super::json_response;

const MAX_BODY: usize = 4 * 1024 * 1024;

/// The largest `next_key` a seed may give (keys stay exact in any JSON reader).
const MAX_KEY: i64 = 1 << 53;

const MSG_BAD_SESSION: &str = "Geçersiz oturum (session_id)";
const MSG_TIMEOUT: &str = "Oturum zaman aşımına uğradı, lütfen tekrar giriş yapın.";

// ---------------------------------------------------------------------------------------------
// Seed file

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Seed {
    #[serde(default = "default_idle")]
    session_idle_seconds: u64,
    next_key: i64,
    users: Vec<SeedUser>,
    companies: Vec<SeedCompany>,
    #[serde(default)]
    tables: BTreeMap<String, Vec<Map<String, Value>>>,
    models: BTreeMap<String, SeedModel>,
}

fn default_idle() -> u64 {
    3600
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedUser {
    username: String,
    password: String,
    apikey: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedCompany {
    firma_kodu: i64,
    donem_kodu: Vec<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedModel {
    #[serde(default)]
    message: Option<String>,
    fields: Vec<SeedField>,
    #[serde(default)]
    submodels: Vec<SeedSub>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedField {
    name: String,
    #[serde(rename = "type")]
    kind: Kind,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    unique: bool,
    #[serde(default)]
    default: Option<Value>,
    #[serde(default)]
    combo: Option<BTreeMap<String, String>>,
    #[serde(default)]
    table: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedSub {
    name: String,
    model: String,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    required_message: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Models

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    String,
    Int,
    Decimal,
    Date,
    Time,
    Link,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Int => "int",
            Kind::Decimal => "decimal",
            Kind::Date => "date",
            Kind::Time => "time",
            Kind::Link => "link",
        }
    }
}

#[derive(Debug)]
struct Field {
    name: String,
    kind: Kind,
    /// The linked table, for `Kind::Link`.
    link: Option<String>,
    required: bool,
    unique: bool,
    /// The stored form of the default (`null` when there is none).
    default: Value,
    combo: Option<BTreeMap<String, String>>,
}

#[derive(Debug)]
struct Sub {
    name: String,
    model: String,
    required: bool,
    required_message: Option<String>,
}

#[derive(Debug)]
struct Model {
    fields: Vec<Field>,
    subs: Vec<Sub>,
    message: String,
}

/// (table, field) -> the texts of the values stored in it.
type UniqueIndex = BTreeMap<(String, String), BTreeSet<String>>;

/// A validated row before it has keys.
#[derive(Debug)]
struct Pending {
    fields: Map<String, Value>,
    subs: Vec<(String, Vec<Pending>)>,
}

// ---------------------------------------------------------------------------------------------
// State

#[derive(Debug)]
struct Session {
    username: String,
    last_used: Instant,
    expired: bool,
}

#[derive(Debug, Default)]
struct State {
    tables: BTreeMap<String, Vec<Map<String, Value>>>,
    unique: UniqueIndex,
    next_key: i64,
    sessions: BTreeMap<String, Session>,
    session_seq: u64,
    logins: u64,
    calls: u64,
}

#[derive(Debug)]
pub struct DiaApi {
    idle: Duration,
    users: Vec<SeedUser>,
    companies: BTreeMap<i64, BTreeSet<i64>>,
    models: BTreeMap<String, Model>,
    /// `<table>_ekle` -> (module, table)
    services: BTreeMap<String, (String, String)>,
    random: RandomState,
    state: Mutex<State>,
}

/// An answer of [`DiaApi::route`].
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    body: Value,
    allow: Option<&'static str>,
}

impl Reply {
    fn ok(body: Value) -> Self {
        Reply {
            status: StatusCode::OK,
            body,
            allow: None,
        }
    }

    fn not_allowed(method: &Method, path: &str, allow: &'static str) -> Self {
        Reply {
            status: StatusCode::METHOD_NOT_ALLOWED,
            body: fail(
                "405",
                format!("{method} {path} desteklenmiyor ({allow} kullanın)"),
            ),
            allow: Some(allow),
        }
    }

    fn not_found(msg: String) -> Self {
        Reply {
            status: StatusCode::NOT_FOUND,
            body: fail("404", msg),
            allow: None,
        }
    }
}

/// A DİA error answer.
fn fail(code: &str, msg: impl Into<String>) -> Value {
    json!({"code": code, "msg": msg.into()})
}

impl DiaApi {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::from_seed(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Builds the backend from the text of a seed file.
    fn from_seed(text: &str) -> Result<Self, String> {
        let seed: Seed = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if !(1..=MAX_KEY).contains(&seed.next_key) {
            return Err(format!(
                "next_key must be from 1 to {MAX_KEY}, not {}",
                seed.next_key
            ));
        }
        for (i, u) in seed.users.iter().enumerate() {
            if u.username.is_empty() {
                return Err(format!("users[{i}]: username is empty"));
            }
        }
        let mut companies: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
        for c in &seed.companies {
            companies
                .entry(c.firma_kodu)
                .or_default()
                .extend(c.donem_kodu.iter().copied());
        }

        let sub_models: BTreeSet<String> = seed
            .models
            .values()
            .flat_map(|m| m.submodels.iter().map(|s| s.model.clone()))
            .collect();
        let mut tables = seed.tables;
        for name in seed.models.keys() {
            if !sub_models.contains(name) {
                tables.entry(name.clone()).or_default();
            }
        }
        for (t, rows) in &tables {
            let mut seen = BTreeSet::new();
            for (i, row) in rows.iter().enumerate() {
                let key = row
                    .get("_key")
                    .and_then(Value::as_i64)
                    .filter(|k| *k > 0)
                    .ok_or_else(|| format!("tables.{t}[{i}]: _key must be a positive integer"))?;
                if key >= seed.next_key {
                    return Err(format!(
                        "tables.{t}[{i}]: _key {key} is not below next_key {}",
                        seed.next_key
                    ));
                }
                if !seen.insert(key) {
                    return Err(format!("tables.{t}[{i}]: _key {key} is used twice"));
                }
            }
        }

        let mut models = BTreeMap::new();
        for (name, m) in &seed.models {
            models.insert(name.clone(), compile_model(name, m, &tables, &seed.models)?);
        }
        for name in models.keys() {
            check_acyclic(&models, name, &mut Vec::new())?;
        }

        let mut unique = UniqueIndex::new();
        for (t, rows) in &tables {
            if models.contains_key(t) && !sub_models.contains(t) {
                for row in rows {
                    index_row(&models, t, row, &mut unique, 0);
                }
            }
        }
        let services = models
            .keys()
            .filter(|n| !sub_models.contains(*n))
            .map(|n| {
                let module = n.split('_').next().unwrap_or_default().to_string();
                (format!("{n}_ekle"), (module, n.clone()))
            })
            .collect();

        Ok(DiaApi {
            idle: Duration::from_secs(seed.session_idle_seconds),
            users: seed.users,
            companies,
            models,
            services,
            random: RandomState::new(),
            state: Mutex::new(State {
                tables,
                unique,
                next_key: seed.next_key,
                ..State::default()
            }),
        })
    }

    pub async fn handle(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let body = if method == Method::POST {
            match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    return json_response(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &fail("413", "İstek gövdesi çok büyük"),
                    );
                }
                Err(e) => {
                    return json_response(
                        StatusCode::BAD_REQUEST,
                        &fail("400", format!("Geçersiz istek: {e}")),
                    );
                }
            }
        } else {
            Bytes::new()
        };
        let reply = self.route(&method, &path, &body, Instant::now());
        let mut resp = json_response(reply.status, &reply.body);
        if let Some(allow) = reply.allow {
            resp.headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static(allow));
        }
        resp
    }

    /// Answers a request by method and path.
    fn route(&self, method: &Method, path: &str, body: &[u8], now: Instant) -> Reply {
        let segs: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
        match segs.as_slice() {
            ["api", "v3", module, "json"] => {
                if method == Method::POST {
                    Reply::ok(self.dispatch(module, body, now))
                } else {
                    Reply::not_allowed(method, path, "POST")
                }
            }
            ["_reference", "expire-sessions"] => {
                if method == Method::POST {
                    Reply::ok(json!({"expired": self.expire_sessions()}))
                } else {
                    Reply::not_allowed(method, path, "POST")
                }
            }
            ["_reference", "stats"] => {
                if method == Method::GET {
                    let st = self.lock();
                    Reply::ok(json!({"logins": st.logins, "calls": st.calls}))
                } else {
                    Reply::not_allowed(method, path, "GET")
                }
            }
            ["_reference", "records", table] => {
                if method != Method::GET {
                    return Reply::not_allowed(method, path, "GET");
                }
                match self.lock().tables.get(*table) {
                    Some(rows) => Reply::ok(json!({"records": rows})),
                    None => Reply::not_found(format!("Tablo bulunamadı: {table}")),
                }
            }
            _ => Reply::not_found(format!("Bulunamadı: {path}")),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Expires every live session; returns how many.
    fn expire_sessions(&self) -> usize {
        let mut st = self.lock();
        let mut n = 0;
        for s in st.sessions.values_mut().filter(|s| !s.expired) {
            s.expired = true;
            n += 1;
        }
        n
    }

    /// Answers one service call on `module` (the JSON body DİA would send back).
    fn dispatch(&self, module: &str, body: &[u8], now: Instant) -> Value {
        let mut st = self.lock();
        st.calls += 1;
        let doc = match J::parse(body) {
            Ok(d) => d,
            Err(e) => return fail("400", format!("Geçersiz istek: {e}")),
        };
        let (service, args) = match &doc {
            J::Obj(members) if members.len() == 1 => (&members[0].0, &members[0].1),
            _ => {
                return fail(
                    "400",
                    "Geçersiz istek: gövde tek üyeli bir nesne olmalı ({\"<servis>\": {...}})",
                );
            }
        };
        if !matches!(args, J::Obj(_)) {
            return fail(
                "400",
                format!("Geçersiz istek: {service} değeri bir nesne olmalı"),
            );
        }
        match (module, service.as_str()) {
            ("sis", "login") => self.login(&mut st, args, now),
            ("sis", "logout") => logout(&mut st, args),
            _ => match self.services.get(service) {
                Some((m, table)) if m == module => self.insert(&mut st, table, args, now),
                _ => fail("400", format!("Servis bulunamadı: {service}")),
            },
        }
    }

    fn login(&self, st: &mut State, args: &J, now: Instant) -> Value {
        let text = |k: &str| args.get(k).and_then(J::as_str);
        let apikey = args
            .get("params")
            .and_then(|p| p.get("apikey"))
            .and_then(J::as_str);
        let Some(user) = self.users.iter().find(|u| {
            text("username") == Some(u.username.as_str())
                && text("password") == Some(u.password.as_str())
                && apikey == Some(u.apikey.as_str())
        }) else {
            return fail("401", "NOUSER");
        };
        let disconnect = match args.get("disconnect_same_user") {
            Some(J::Leaf(Value::Bool(b))) => *b,
            Some(J::Leaf(Value::String(s))) => s.eq_ignore_ascii_case("true"),
            _ => false,
        };
        if disconnect {
            st.sessions.retain(|_, s| s.username != user.username);
        }
        let id = loop {
            st.session_seq += 1;
            let id = self.session_id(st.session_seq, &user.username);
            if !st.sessions.contains_key(&id) {
                break id;
            }
        };
        st.sessions.insert(
            id.clone(),
            Session {
                username: user.username.clone(),
                last_used: now,
                expired: false,
            },
        );
        st.logins += 1;
        json!({"code": "200", "msg": id})
    }

    /// md5 over a counter, the clock and a per-process random key, as 32 lowercase hex digits.
    fn session_id(&self, seq: u64, username: &str) -> String {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let mut h = self.random.build_hasher();
        h.write_u64(seq);
        h.write_u128(nanos);
        let mut md5 = Md5::new();
        md5.update(seq.to_be_bytes());
        md5.update(nanos.to_be_bytes());
        md5.update(h.finish().to_be_bytes());
        md5.update(username.as_bytes());
        format!("{:x}", md5.finalize())
    }

    /// The session's user, refreshing its idle timer; or the 401/419 answer.
    fn session(&self, st: &mut State, args: &J, now: Instant) -> Result<String, Value> {
        let id = args.get("session_id").and_then(J::as_str).unwrap_or("");
        let Some(s) = st.sessions.get_mut(id) else {
            return Err(fail("401", MSG_BAD_SESSION));
        };
        if s.expired || now.saturating_duration_since(s.last_used) > self.idle {
            s.expired = true;
            return Err(fail("419", MSG_TIMEOUT));
        }
        s.last_used = s.last_used.max(now);
        Ok(s.username.clone())
    }

    fn company(&self, args: &J) -> Result<(), Value> {
        let number = |j: Option<&J>| match j {
            Some(J::Leaf(Value::Number(n))) => n.as_i64(),
            Some(J::Leaf(Value::String(s)))
                if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) =>
            {
                s.parse().ok()
            }
            _ => None,
        };
        let (f, d) = (args.get("firma_kodu"), args.get("donem_kodu"));
        let known = match (number(f), number(d)) {
            (Some(f), Some(d)) => self.companies.get(&f).is_some_and(|ds| ds.contains(&d)),
            _ => false,
        };
        if known {
            return Ok(());
        }
        let show = |j: Option<&J>| j.map_or_else(|| "None".to_string(), shown);
        Err(fail(
            "400",
            format!(
                "Firma veya dönem bulunamadı (firma_kodu: {}, donem_kodu: {})",
                show(f),
                show(d)
            ),
        ))
    }

    fn insert(&self, st: &mut State, table: &str, args: &J, now: Instant) -> Value {
        let user = match self.session(st, args, now) {
            Ok(u) => u,
            Err(answer) => return answer,
        };
        if let Err(answer) = self.company(args) {
            return answer;
        }
        let Some(J::Obj(kart)) = args.get("kart") else {
            return fail(
                "400",
                "Geçersiz istek: kart bilgisi (bir nesne) gönderilmelidir",
            );
        };
        let Some(model) = self.models.get(table) else {
            return fail("400", format!("Servis bulunamadı: {table}_ekle"));
        };
        let mut pending = UniqueIndex::new();
        let row = match self.validate(st, table, model, kart, &mut pending) {
            Ok(row) => row,
            Err(msg) => return fail("400", msg),
        };
        let key = st.next_key;
        let row = store(row, &mut st.next_key);
        for (k, values) in pending {
            st.unique.entry(k).or_default().extend(values);
        }
        let msg = render(&model.message, &row, &user);
        st.tables.entry(table.to_string()).or_default().push(row);
        json!({"code": "200", "key": key.to_string(), "msg": msg})
    }

    /// Checks a card (or a sub-row) against `model`, the model of `table`; changes nothing but
    /// `pending`, the unique values this call would add.
    fn validate(
        &self,
        st: &State,
        table: &str,
        model: &Model,
        kart: &[(String, J)],
        pending: &mut UniqueIndex,
    ) -> Result<Pending, String> {
        for (k, _) in kart {
            if !model.fields.iter().any(|f| f.name == *k)
                && !model.subs.iter().any(|s| s.name == *k)
            {
                return Err(format!("Tanımsız alan ({table} → {k})"));
            }
        }
        let mut fields = Map::new();
        for f in &model.fields {
            let v = field_value(st, table, f, member(kart, &f.name))?;
            if f.unique && !is_blank(&v) {
                let text = value_text(&v);
                let key = (table.to_string(), f.name.clone());
                let stored = st.unique.get(&key).is_some_and(|s| s.contains(&text));
                if stored || !pending.entry(key).or_default().insert(text.clone()) {
                    return Err(format!(
                        "Bu kod ile kayıtlı bir kart zaten var ({table} → {}: {text})",
                        f.name
                    ));
                }
            }
            fields.insert(f.name.clone(), v);
        }
        let mut subs = Vec::new();
        for s in &model.subs {
            let Some(sub_model) = self.models.get(&s.model) else {
                return Err(format!("Tanımsız alan ({table} → {})", s.name));
            };
            let items: &[J] = match member(kart, &s.name) {
                None | Some(J::Leaf(Value::Null)) => &[],
                Some(J::List(items)) => items,
                Some(other) => {
                    return Err(format!("Geçersiz değer ({} -> {})", s.name, shown(other)));
                }
            };
            if items.is_empty() && s.required {
                return Err(s.required_message.clone().unwrap_or_else(|| {
                    format!("Zorunlu alan boş bırakılamaz ({table} → {})", s.name)
                }));
            }
            let mut rows = Vec::new();
            for item in items {
                let J::Obj(members) = item else {
                    return Err(format!("Geçersiz değer ({} -> {})", s.name, shown(item)));
                };
                rows.push(self.validate(st, &s.model, sub_model, members, pending)?);
            }
            subs.push((s.name.clone(), rows));
        }
        Ok(Pending { fields, subs })
    }
}

fn logout(st: &mut State, args: &J) -> Value {
    let id = args.get("session_id").and_then(J::as_str).unwrap_or("");
    if st.sessions.remove(id).is_some() {
        json!({"code": "200", "msg": "OK"})
    } else {
        fail("401", MSG_BAD_SESSION)
    }
}

fn compile_model(
    name: &str,
    m: &SeedModel,
    tables: &BTreeMap<String, Vec<Map<String, Value>>>,
    all: &BTreeMap<String, SeedModel>,
) -> Result<Model, String> {
    let ctx = format!("models.{name}");
    let mut names = BTreeSet::new();
    let mut fields = Vec::new();
    for f in &m.fields {
        let at = format!("{ctx}.{}", f.name);
        if f.name.is_empty() || f.name == "_key" {
            return Err(format!("{ctx}: '{}' is not a field name", f.name));
        }
        if !names.insert(f.name.as_str()) {
            return Err(format!("{at}: defined twice"));
        }
        let link = if f.kind == Kind::Link {
            let Some(own) = f.name.strip_prefix("_key_") else {
                return Err(format!("{at}: link fields are named _key_<table>"));
            };
            let target = f.table.clone().unwrap_or_else(|| own.to_string());
            if !tables.contains_key(&target) {
                return Err(format!(
                    "{at}: links table '{target}', which is neither in tables nor an insertable model"
                ));
            }
            if f.default.is_some() || f.combo.is_some() || f.unique {
                return Err(format!(
                    "{at}: link fields take no default, combo or unique"
                ));
            }
            Some(target)
        } else {
            if f.name.starts_with("_key_") {
                return Err(format!(
                    "{at}: fields named _key_<table> must have type link, not {}",
                    f.kind.name()
                ));
            }
            if f.table.is_some() {
                return Err(format!("{at}: only link fields name a table"));
            }
            None
        };
        if let Some(combo) = &f.combo {
            if f.kind != Kind::String {
                return Err(format!("{at}: combo fields have type string"));
            }
            if combo.is_empty() {
                return Err(format!("{at}: combo lists no codes"));
            }
        }
        let default = match &f.default {
            None | Some(Value::Null) => Value::Null,
            Some(v) => {
                let given = J::from_value(v.clone());
                convert(f.kind, &given)
                    .filter(|c| {
                        f.combo
                            .as_ref()
                            .is_none_or(|combo| combo.contains_key(&value_text(c)))
                    })
                    .ok_or_else(|| {
                        format!("{at}: default {v} is not a valid {} value", f.kind.name())
                    })?
            }
        };
        fields.push(Field {
            name: f.name.clone(),
            kind: f.kind,
            link,
            required: f.required,
            unique: f.unique,
            default,
            combo: f.combo.clone(),
        });
    }
    let mut subs = Vec::new();
    for s in &m.submodels {
        let at = format!("{ctx}.{}", s.name);
        if s.name.is_empty() || s.name == "_key" {
            return Err(format!("{ctx}: '{}' is not a sub-model name", s.name));
        }
        if !names.insert(s.name.as_str()) {
            return Err(format!("{at}: defined twice"));
        }
        if !all.contains_key(&s.model) {
            return Err(format!("{at}: unknown model '{}'", s.model));
        }
        subs.push(Sub {
            name: s.name.clone(),
            model: s.model.clone(),
            required: s.required,
            required_message: s.required_message.clone(),
        });
    }
    let message = m
        .message
        .clone()
        .unwrap_or_else(|| "Kayıt eklenmiştir.".to_string());
    for piece in pieces(&message) {
        if let Piece::Slot(slot) = piece
            && slot != "$user"
            && slot != "_key"
            && !fields.iter().any(|f| f.name == slot)
        {
            return Err(format!(
                "{ctx}.message: {{{slot}}} is neither a field, _key nor $user"
            ));
        }
    }
    Ok(Model {
        fields,
        subs,
        message,
    })
}

fn check_acyclic(
    models: &BTreeMap<String, Model>,
    name: &str,
    path: &mut Vec<String>,
) -> Result<(), String> {
    if path.iter().any(|p| p == name) {
        path.push(name.to_string());
        return Err(format!(
            "models: sub-models form a cycle ({})",
            path.join(" → ")
        ));
    }
    path.push(name.to_string());
    if let Some(m) = models.get(name) {
        for s in &m.subs {
            check_acyclic(models, &s.model, path)?;
        }
    }
    path.pop();
    Ok(())
}

/// Adds the unique values of a stored row (and its sub-rows) to `index`.
fn index_row(
    models: &BTreeMap<String, Model>,
    table: &str,
    row: &Map<String, Value>,
    index: &mut UniqueIndex,
    depth: usize,
) {
    let Some(m) = models.get(table) else { return };
    if depth > 64 {
        return;
    }
    for f in m.fields.iter().filter(|f| f.unique) {
        if let Some(v) = row.get(&f.name).filter(|v| !is_blank(v)) {
            index
                .entry((table.to_string(), f.name.clone()))
                .or_default()
                .insert(value_text(v));
        }
    }
    for s in &m.subs {
        if let Some(Value::Array(items)) = row.get(&s.name) {
            for item in items {
                if let Value::Object(sub) = item {
                    index_row(models, &s.model, sub, index, depth + 1);
                }
            }
        }
    }
}

/// The value a field stores for what the card gave (`given`), or the error message.
fn field_value(st: &State, table: &str, f: &Field, given: Option<&J>) -> Result<Value, String> {
    let keeps_blank = f.kind == Kind::String && f.combo.is_none();
    let given = given.filter(|g| match g {
        J::Leaf(Value::Null) => false,
        J::Leaf(Value::String(s)) => keeps_blank || !s.trim().is_empty(),
        _ => true,
    });
    let value = match (given, &f.link) {
        (None, _) => f.default.clone(),
        (Some(g), Some(target)) => resolve_link(st, &f.name, target, g)?,
        (Some(g), None) => {
            let v = convert(f.kind, g)
                .ok_or_else(|| format!("Geçersiz değer ({} -> {})", f.name, shown(g)))?;
            if let Some(combo) = &f.combo
                && !combo.contains_key(&value_text(&v))
            {
                return Err(format!(
                    "Kombo değeri geçersiz ({} -> {})",
                    f.name,
                    shown(g)
                ));
            }
            v
        }
    };
    if f.required && is_blank(&value) {
        return Err(format!(
            "Zorunlu alan boş bırakılamaz ({table} → {})",
            f.name
        ));
    }
    Ok(value)
}

/// The `_key` of the row of `table` that a link value names (`null` for no link).
fn resolve_link(st: &State, field: &str, table: &str, given: &J) -> Result<Value, String> {
    let invalid = || format!("Geçersiz değer ({field} -> {})", shown(given));
    let rows = st.tables.get(table).map(Vec::as_slice).unwrap_or_default();
    let key = match given {
        J::Leaf(Value::Number(n)) => Some(n.as_i64().ok_or_else(invalid)?),
        J::Leaf(Value::String(s)) => Some(s.trim().parse::<i64>().map_err(|_| invalid())?),
        J::Obj(members) if !members.is_empty() => None,
        _ => return Err(invalid()),
    };
    let (matches, shown_lookup): (Vec<&Map<String, Value>>, String) = match (key, given) {
        (Some(0), _) => return Ok(Value::Null),
        (Some(key), _) => (
            rows.iter()
                .filter(|r| r.get("_key").and_then(Value::as_i64) == Some(key))
                .collect(),
            format!("{{'_key': {key}}}"),
        ),
        (None, J::Obj(members)) => (
            rows.iter()
                .filter(|r| {
                    members
                        .iter()
                        .all(|(k, v)| value_text(r.get(k).unwrap_or(&Value::Null)) == v.text())
                })
                .collect(),
            py_repr(given),
        ),
        (None, _) => return Err(invalid()),
    };
    match matches.as_slice() {
        [row] => Ok(row.get("_key").cloned().unwrap_or(Value::Null)),
        [] => Err(format!("Kayıt bulunamadı ({table} → {shown_lookup})")),
        _ => Err(format!(
            "Birden fazla kayıt bulundu ({table} → {shown_lookup})"
        )),
    }
}

/// A given value as the stored value of a field of `kind` (not a link); `None` when it is not
/// one.
fn convert(kind: Kind, given: &J) -> Option<Value> {
    let J::Leaf(v) = given else { return None };
    match kind {
        Kind::String => match v {
            Value::String(s) => Some(Value::String(s.clone())),
            Value::Number(n) => Some(Value::String(n.to_string())),
            _ => None,
        },
        Kind::Int => match v {
            Value::Number(n) => n.as_i64().map(Value::from),
            Value::String(s) => s.trim().parse::<i64>().ok().map(Value::from),
            _ => None,
        },
        Kind::Decimal => {
            let text = match v {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.trim().to_string(),
                _ => return None,
            };
            is_decimal(&text).then_some(Value::String(text))
        }
        Kind::Date => {
            let s = v.as_str()?;
            (digits_like(s, "dddd-dd-dd")
                && chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok())
            .then(|| Value::String(s.to_string()))
        }
        Kind::Time => {
            let s = v.as_str()?;
            (digits_like(s, "dd:dd:dd") && chrono::NaiveTime::parse_from_str(s, "%H:%M:%S").is_ok())
                .then(|| Value::String(s.to_string()))
        }
        Kind::Link => None,
    }
}

/// Whether `s` has the shape of `pattern`, where `d` is any ASCII digit.
fn digits_like(s: &str, pattern: &str) -> bool {
    s.len() == pattern.len()
        && s.bytes().zip(pattern.bytes()).all(|(c, p)| match p {
            b'd' => c.is_ascii_digit(),
            _ => c == p,
        })
}

/// `-?digits(.digits)?`
fn is_decimal(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = s.split_once('.').unwrap_or((s, "0"));
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    digits(int) && digits(frac)
}

fn is_blank(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

/// A stored value as text (`null` is empty).
fn value_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A given value as messages show it: strings as they are, anything else like Python.
fn shown(j: &J) -> String {
    match j {
        J::Leaf(Value::String(s)) => s.clone(),
        other => py_repr(other),
    }
}

/// Gives the rows their keys, the row first, then its sub-rows depth first.
fn store(p: Pending, next_key: &mut i64) -> Map<String, Value> {
    let mut row = Map::new();
    row.insert("_key".to_string(), Value::from(*next_key));
    *next_key += 1;
    row.extend(p.fields);
    for (name, items) in p.subs {
        let stored = items
            .into_iter()
            .map(|item| Value::Object(store(item, next_key)))
            .collect();
        row.insert(name, Value::Array(stored));
    }
    row
}

enum Piece<'a> {
    Text(&'a str),
    Slot(&'a str),
}

/// A message template in pieces: `{name}` (letters, digits, `_`, `$`) is a slot, anything else
/// is text.
fn pieces(template: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let slot = after.find('}').map(|close| &after[..close]).filter(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
        });
        match slot {
            Some(name) => {
                out.push(Piece::Text(&rest[..open]));
                out.push(Piece::Slot(name));
                rest = &after[name.len() + 1..];
            }
            None => {
                out.push(Piece::Text(&rest[..=open]));
                rest = after;
            }
        }
    }
    out.push(Piece::Text(rest));
    out
}

fn render(template: &str, row: &Map<String, Value>, user: &str) -> String {
    pieces(template)
        .into_iter()
        .map(|p| match p {
            Piece::Text(t) => t.to_string(),
            Piece::Slot("$user") => user.to_string(),
            Piece::Slot(name) => row.get(name).map(value_text).unwrap_or_default(),
        })
        .collect()
}

fn member<'a>(members: &'a [(String, J)], key: &str) -> Option<&'a J> {
    members.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

// ---------------------------------------------------------------------------------------------
// JSON with member order
//
// serde_json's maps sort their keys (no `preserve_order` here), but lookups are written in the
// order given. The body is parsed twice: into `Value` (exact numbers) and into `Shape` (the
// key order of every object), and the two are joined.

/// A JSON value whose objects keep their members in document order.
#[derive(Debug, Clone, PartialEq)]
enum J {
    /// null, a boolean, a number or a string
    Leaf(Value),
    List(Vec<J>),
    Obj(Vec<(String, J)>),
}

/// The member order of a document's objects.
enum Shape {
    Leaf,
    List(Vec<Shape>),
    Obj(Vec<(String, Shape)>),
}

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ShapeVisitor)
    }
}

struct ShapeVisitor;

impl<'de> Visitor<'de> for ShapeVisitor {
    type Value = Shape;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Shape, E> {
        Ok(Shape::Leaf)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Shape, E> {
        Ok(Shape::Leaf)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Shape, E> {
        Ok(Shape::Leaf)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Shape, E> {
        Ok(Shape::Leaf)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Shape, E> {
        Ok(Shape::Leaf)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Shape, E> {
        Ok(Shape::Leaf)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Shape::List(items))
    }

    // (With arbitrary_precision a number also arrives here, as a one-member map; the join
    // ignores the shape of anything that parsed as a number.)
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
        let mut members = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            members.push((key, map.next_value()?));
        }
        Ok(Shape::Obj(members))
    }
}

impl J {
    fn parse(body: &[u8]) -> Result<J, String> {
        let value: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let shape: Shape = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        Ok(J::join(value, shape))
    }

    fn from_value(v: Value) -> J {
        J::join(v, Shape::Leaf)
    }

    fn join(v: Value, shape: Shape) -> J {
        match v {
            Value::Object(mut map) => {
                let mut members = Vec::with_capacity(map.len());
                if let Shape::Obj(keys) = shape {
                    for (k, s) in keys {
                        // a repeated key: serde_json kept the last value, at the first place
                        if let Some(v) = map.remove(&k) {
                            members.push((k, J::join(v, s)));
                        }
                    }
                }
                members.extend(map.into_iter().map(|(k, v)| (k, J::from_value(v))));
                J::Obj(members)
            }
            Value::Array(items) => {
                let mut shapes = match shape {
                    Shape::List(s) => s.into_iter(),
                    _ => Vec::new().into_iter(),
                };
                J::List(
                    items
                        .into_iter()
                        .map(|v| J::join(v, shapes.next().unwrap_or(Shape::Leaf)))
                        .collect(),
                )
            }
            leaf => J::Leaf(leaf),
        }
    }

    fn get(&self, key: &str) -> Option<&J> {
        match self {
            J::Obj(members) => member(members, key),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            J::Leaf(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    fn to_value(&self) -> Value {
        match self {
            J::Leaf(v) => v.clone(),
            J::List(items) => Value::Array(items.iter().map(J::to_value).collect()),
            J::Obj(members) => Value::Object(
                members
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_value()))
                    .collect(),
            ),
        }
    }

    /// As text for comparing with a stored value.
    fn text(&self) -> String {
        match self {
            J::Leaf(v) => value_text(v),
            other => other.to_value().to_string(),
        }
    }
}

/// A value written like Python's `repr` (`{'kod': 'WS003', '_key': 5, 'x': None}`).
fn py_repr(j: &J) -> String {
    let mut out = String::new();
    write_py(j, &mut out);
    out
}

fn write_py(j: &J, out: &mut String) {
    match j {
        J::Leaf(Value::Null) => out.push_str("None"),
        J::Leaf(Value::Bool(b)) => out.push_str(if *b { "True" } else { "False" }),
        J::Leaf(Value::String(s)) => write_py_str(s, out),
        J::Leaf(other) => out.push_str(&other.to_string()),
        J::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_py(item, out);
            }
            out.push(']');
        }
        J::Obj(members) => {
            out.push('{');
            for (i, (k, v)) in members.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_py_str(k, out);
                out.push_str(": ");
                write_py(v, out);
            }
            out.push('}');
        }
    }
}

fn write_py_str(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() && (c as u32) < 0x100 => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(quote);
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOGIN: &str = r#"{"login": {"username": "ws", "password": "ws-pass",
        "disconnect_same_user": "True", "params": {"apikey": "dia-demo-apikey"}}}"#;

    /// The card of the seed document's example call, verbatim.
    const EXAMPLE_KART: &str = r#"{
              "_key_gts_gorev": 0,
              "_key_gts_gorusme_kategori": 0,
              "_key_gts_gorusme_kategorileri": null,
              "_key_scf_carikart": {"carikartkodu": "0000008"},
              "_key_scf_satiselemani": 0,
              "_key_scf_siparis": 0,
              "_key_scf_teklif": 0,
              "_key_shy_servisformu": {"fisno": "000009"},
              "_key_sis_kullanici": {"kullaniciadi": "ws"},
              "_key_sis_rehber_karti": 0,
              "_key_sis_seviyekodu": 0,
              "gorusmesekli": 1,
              "harcananzaman": "15.00",
              "harcananzamanturu": "D",
              "konu": "Parça değişimi hakkında",
              "note": "yanlış getirilen parçanın yenisi ile değişimi",
              "saat": "15:55:18",
              "tarih": "2017-03-25"
              }"#;

    fn fixture() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/reference/dia.json")
    }

    fn api() -> DiaApi {
        DiaApi::load(&fixture()).unwrap()
    }

    fn call(api: &DiaApi, module: &str, body: &str, now: Instant) -> Value {
        api.dispatch(module, body.as_bytes(), now)
    }

    fn login(api: &DiaApi, now: Instant) -> String {
        let v = call(api, "sis", LOGIN, now);
        assert_eq!(v["code"], "200", "{v}");
        v["msg"].as_str().unwrap().to_string()
    }

    fn ekle(api: &DiaApi, sid: &str, table: &str, kart: &str, now: Instant) -> Value {
        let module = table.split('_').next().unwrap();
        let body = format!(
            r#"{{"{table}_ekle": {{"session_id": "{sid}", "firma_kodu": 34, "donem_kodu": 1, "kart": {kart}}}}}"#
        );
        call(api, module, &body, now)
    }

    fn records(api: &DiaApi, table: &str) -> Vec<Value> {
        let reply = api.route(
            &Method::GET,
            &format!("/_reference/records/{table}"),
            b"",
            Instant::now(),
        );
        assert_eq!(reply.status, StatusCode::OK);
        reply.body["records"].as_array().unwrap().clone()
    }

    fn error(v: &Value) -> (&str, &str) {
        (v["code"].as_str().unwrap(), v["msg"].as_str().unwrap())
    }

    #[test]
    fn the_fixture_loads() {
        let api = api();
        assert_eq!(api.services["gts_notlar_ekle"].0, "gts");
        assert_eq!(api.services["scf_fatura_ekle"].0, "scf");
        assert!(!api.services.contains_key("scf_fatura_kalem_ekle"));
        assert_eq!(api.idle, Duration::from_secs(3600));
    }

    #[test]
    fn login_gives_a_session_or_nouser() {
        let api = api();
        let now = Instant::now();
        let a = login(&api, now);
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        for body in [
            r#"{"login": {"username": "ws", "password": "nope", "params": {"apikey": "dia-demo-apikey"}}}"#,
            r#"{"login": {"username": "nobody", "password": "ws-pass", "params": {"apikey": "dia-demo-apikey"}}}"#,
            r#"{"login": {"username": "ws", "password": "ws-pass", "params": {"apikey": "wrong"}}}"#,
            r#"{"login": {"username": "ws", "password": "ws-pass"}}"#,
        ] {
            assert_eq!(
                call(&api, "sis", body, now),
                json!({"code": "401", "msg": "NOUSER"})
            );
        }
        // login lives on sis only
        assert_eq!(
            error(&call(&api, "gts", LOGIN, now)),
            ("400", "Servis bulunamadı: login")
        );
        // disconnect_same_user ends the first session
        let b = login(&api, now);
        assert_ne!(a, b);
        assert_eq!(
            error(&ekle(&api, &a, "gts_notlar", EXAMPLE_KART, now)),
            ("401", MSG_BAD_SESSION)
        );
        assert_eq!(
            ekle(&api, &b, "gts_notlar", EXAMPLE_KART, now)["code"],
            "200"
        );
        // without it, sessions live side by side
        let c = call(&api, "sis", &LOGIN.replace("\"True\"", "\"False\""), now)["msg"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            error(&ekle(
                &api,
                &b,
                "scf_carikart",
                r#"{"carikartkodu": "C1", "unvan": "A"}"#,
                now
            )),
            ("200", "«C1» kodlu cari kart eklenmiştir.")
        );
        // logout
        let out = format!(r#"{{"logout": {{"session_id": "{c}"}}}}"#);
        assert_eq!(
            call(&api, "sis", &out, now),
            json!({"code": "200", "msg": "OK"})
        );
        assert_eq!(error(&call(&api, "sis", &out, now)).0, "401");
        let stats = api.route(&Method::GET, "/_reference/stats", b"", now).body;
        assert_eq!(stats["logins"], 3);
        assert_eq!(stats["calls"], 13);
    }

    #[test]
    fn unknown_session_is_401() {
        let api = api();
        let v = ekle(
            &api,
            "b2d4820cc43f4d98a8c6698686b6d386",
            "gts_notlar",
            EXAMPLE_KART,
            Instant::now(),
        );
        assert_eq!(
            v,
            json!({"code": "401", "msg": "Geçersiz oturum (session_id)"})
        );
    }

    #[test]
    fn idle_sessions_time_out_and_calls_refresh_them() {
        let api = api();
        let t0 = Instant::now();
        let sid = login(&api, t0);
        let kart = |code: &str| format!(r#"{{"carikartkodu": "{code}", "unvan": "A"}}"#);
        let t1 = t0 + Duration::from_secs(3000);
        assert_eq!(
            ekle(&api, &sid, "scf_carikart", &kart("A1"), t1)["code"],
            "200"
        );
        let t2 = t1 + Duration::from_secs(3600);
        assert_eq!(
            ekle(&api, &sid, "scf_carikart", &kart("A2"), t2)["code"],
            "200"
        );
        let t3 = t2 + Duration::from_secs(3601);
        assert_eq!(
            ekle(&api, &sid, "scf_carikart", &kart("A3"), t3),
            json!({"code": "419", "msg": MSG_TIMEOUT})
        );
        // and it stays timed out
        assert_eq!(
            ekle(&api, &sid, "scf_carikart", &kart("A3"), t2)["code"],
            "419"
        );
        let fresh = login(&api, t3);
        assert_eq!(
            ekle(&api, &fresh, "scf_carikart", &kart("A3"), t3)["code"],
            "200"
        );
    }

    #[test]
    fn expire_sessions_gives_419() {
        let api = api();
        let now = Instant::now();
        let sid = login(&api, now);
        let reply = api.route(&Method::POST, "/_reference/expire-sessions", b"", now);
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, json!({"expired": 1}));
        assert_eq!(
            error(&ekle(&api, &sid, "gts_notlar", EXAMPLE_KART, now)),
            ("419", MSG_TIMEOUT)
        );
        let again = api.route(&Method::POST, "/_reference/expire-sessions", b"", now);
        assert_eq!(again.body, json!({"expired": 0}));
    }

    #[test]
    fn the_seed_example_succeeds_verbatim() {
        let api = api();
        let now = Instant::now();
        let sid = login(&api, now);
        let body = format!(
            r#"{{"gts_notlar_ekle" :
    {{"session_id": "{sid}",
     "firma_kodu": 34,
     "donem_kodu": 1,
     "kart": {EXAMPLE_KART}
    }}
}}"#
        );
        assert_eq!(
            call(&api, "gts", &body, now),
            json!({"code": "200", "key": "330389", "msg": "[ws] «2017-03-25» tarihli «Görev Notu» eklenmiştir."})
        );
        let rows = records(&api, "gts_notlar");
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!(row["_key"], 330389);
        assert_eq!(row["_key_scf_carikart"], 2008);
        assert_eq!(row["_key_shy_servisformu"], 5009);
        assert_eq!(row["_key_sis_kullanici"], 7);
        assert_eq!(row["_key_gts_gorev"], Value::Null);
        assert_eq!(row["_key_gts_gorusme_kategorileri"], Value::Null);
        assert_eq!(row["gorusmesekli"], 1);
        assert_eq!(row["harcananzaman"], "15.00");
        assert_eq!(row["saat"], "15:55:18");
        assert_eq!(row["konu"], "Parça değişimi hakkında");
        // the next insert takes the next key
        assert_eq!(
            ekle(&api, &sid, "gts_notlar", EXAMPLE_KART, now)["key"],
            "330390"
        );
        // on the wrong module the service is unknown
        assert_eq!(
            error(&call(&api, "scf", &body, now)),
            ("400", "Servis bulunamadı: gts_notlar_ekle")
        );
    }

    #[test]
    fn links_take_keys_or_lookups() {
        let api = api();
        let now = Instant::now();
        let sid = login(&api, now);
        let v = ekle(
            &api,
            &sid,
            "scf_carikart",
            r#"{"carikartkodu": "C1", "unvan": "A", "_key_sis_vergidairesi": 2,
                "_key_sis_ozelkod2": {"turkodu": "M2", "kod": "WS003"}}"#,
            now,
        );
        assert_eq!(
            v,
            json!({"code": "200", "key": "330389", "msg": "«C1» kodlu cari kart eklenmiştir."})
        );
        let v = ekle(
            &api,
            &sid,
            "scf_carikart",
            r#"{"carikartkodu": "C2", "unvan": "B", "carikarttipi": "SA",
                "_key_sis_vergidairesi": {"kod": "ÇANKAYA VERGİ DAİRESİ"}, "_key_sis_ozelkod2": "11"}"#,
            now,
        );
        assert_eq!(v["key"], "330390");
        let rows = records(&api, "scf_carikart");
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1]["_key_sis_vergidairesi"], 2);
        assert_eq!(rows[1]["_key_sis_ozelkod2"], 13);
        assert_eq!(rows[1]["carikarttipi"], "AL");
        assert_eq!(rows[1]["eposta"], Value::Null);
        assert_eq!(rows[2]["_key_sis_vergidairesi"], 1);
        assert_eq!(rows[2]["_key_sis_ozelkod2"], 11);
        assert_eq!(rows[2]["carikarttipi"], "SA");
    }

    #[test]
    fn links_with_no_or_several_matches_fail() {
        let api = api();
        let now = Instant::now();
        let sid = login(&api, now);
        let cari = |extra: &str| format!(r#"{{"carikartkodu": "C9", "unvan": "A", {extra}}}"#);
        let cases = [
            (
                r#""_key_sis_vergidairesi": 123"#,
                "Kayıt bulunamadı (sis_vergidairesi → {'_key': 123})",
            ),
            (
                r#""_key_sis_vergidairesi": {"kod": "YOK"}"#,
                "Kayıt bulunamadı (sis_vergidairesi → {'kod': 'YOK'})",
            ),
            (
                r#""_key_sis_ozelkod2": {"kod": "WS003"}"#,
                "Birden fazla kayıt bulundu (sis_ozelkod → {'kod': 'WS003'})",
            ),
            (
                r#""_key_sis_ozelkod2": {"turkodu": "M3", "kod": "WS003", "_key": 12}"#,
                "Kayıt bulunamadı (sis_ozelkod → {'turkodu': 'M3', 'kod': 'WS003', '_key': 12})",
            ),
            (
                r#""_key_sis_ozelkod2": "WS003""#,
                "Geçersiz değer (_key_sis_ozelkod2 -> WS003)",
            ),
            (
                r#""_key_sis_ozelkod2": [1]"#,
                "Geçersiz değer (_key_sis_ozelkod2 -> [1])",
            ),
        ];
        for (extra, msg) in cases {
            assert_eq!(
                ekle(&api, &sid, "scf_carikart", &cari(extra), now),
                json!({"code": "400", "msg": msg}),
                "{extra}"
            );
        }
        assert_eq!(records(&api, "scf_carikart").len(), 1);
    }

    #[test]
    fn field_rules_have_exact_messages() {
        let api = api();
        let now = Instant::now();
        let sid = login(&api, now);
        let cases = [
            (
                "scf_stokkart",
                r#"{"stokkartkodu": "S1", "aciklama": "x", "stokkartturu": "Ticari Mal"}"#,
                "Kombo değeri geçersiz (stokkartturu -> Ticari Mal)",
            ),
            (
                "scf_carikart",
                r#"{"unvan": "A"}"#,
                "Zorunlu alan boş bırakılamaz (scf_carikart → carikartkodu)",
            ),
            (
                "scf_carikart",
                r#"{"carikartkodu": "  ", "unvan": "A"}"#,
                "Zorunlu alan boş bırakılamaz (scf_carikart → carikartkodu)",
            ),
            (
                "scf_carikart",
                r#"{"carikartkodu": "0000008", "unvan": "A"}"#,
                "Bu kod ile kayıtlı bir kart zaten var (scf_carikart → carikartkodu: 0000008)",
            ),
            (
                "scf_carikart",
                r#"{"carikartkodu": "C1", "unvan": "A", "adres": "x"}"#,
                "Tanımsız alan (scf_carikart → adres)",
            ),
            (
                "gts_notlar",
                r#"{"konu": "k", "tarih": "2017-02-30"}"#,
                "Geçersiz değer (tarih -> 2017-02-30)",
            ),
            (
                "gts_notlar",
                r#"{"konu": "k", "tarih": "2017-03-25", "gorusmesekli": 1.5}"#,
                "Geçersiz değer (gorusmesekli -> 1.5)",
            ),
            (
                "gts_notlar",
                r#"{"konu": "k", "tarih": "2017-03-25", "harcananzaman": "15,00"}"#,
                "Geçersiz değer (harcananzaman -> 15,00)",
            ),
            (
                "gts_notlar",
                r#"{"konu": "k", "tarih": "2017-03-25", "saat": "25:00:00"}"#,
                "Geçersiz değer (saat -> 25:00:00)",
            ),
            (
                "gts_notlar",
                r#"{"konu": true, "tarih": "2017-03-25"}"#,
                "Geçersiz değer (konu -> True)",
            ),
        ];
        for (table, kart, msg) in cases {
            assert_eq!(
                ekle(&api, &sid, table, kart, now),
                json!({"code": "400", "msg": msg}),
                "{kart}"
            );
        }
        // numbers and strings of numbers are both taken
        let v = ekle(
            &api,
            &sid,
            "gts_notlar",
            r#"{"konu": 42, "tarih": "2017-03-25", "gorusmesekli": "2", "harcananzaman": 1.50}"#,
            now,
        );
        assert_eq!(v["key"], "330389", "{v}");
        let row = &records(&api, "gts_notlar")[0];
        assert_eq!(row["konu"], "42");
        assert_eq!(row["gorusmesekli"], 2);
        assert_eq!(row["harcananzaman"], "1.50");
        assert_eq!(row["harcananzamanturu"], "D");
        // a unique value once stored is taken
        let kart = r#"{"carikartkodu": "C1", "unvan": "A"}"#;
        assert_eq!(ekle(&api, &sid, "scf_carikart", kart, now)["code"], "200");
        assert_eq!(
            error(&ekle(&api, &sid, "scf_carikart", kart, now)).1,
            "Bu kod ile kayıtlı bir kart zaten var (scf_carikart → carikartkodu: C1)"
        );
    }

    #[test]
    fn stock_cards_keep_units_and_barcodes_nested() {
        let api = api();
        let now = Instant::now();
        let sid = login(&api, now);
        let v = ekle(
            &api,
            &sid,
            "scf_stokkart",
            r#"{"stokkartkodu": "STK-002", "aciklama": "Vida", "kdvorani": 10,
                "m_birimler": [
                  {"_key_sis_birim": {"kod": "ADET"},
                   "m_barkodlar": [{"barkod": "8690000000024"}, {"barkod": "8690000000031"}]},
                  {"_key_sis_birim": 23, "katsayi": "12"}
                ]}"#,
            now,
        );
        assert_eq!(
            v,
            json!({"code": "200", "key": "330389", "msg": "«STK-002» kodlu stok kartı eklenmiştir."})
        );
        let rows = records(&api, "scf_stokkart");
        assert_eq!(
            rows[1],
            json!({
                "_key": 330389, "stokkartkodu": "STK-002", "aciklama": "Vida",
                "stokkartturu": "TCR", "kdvorani": "10",
                "m_birimler": [
                    {"_key": 330390, "_key_sis_birim": 21, "katsayi": "1", "m_barkodlar": [
                        {"_key": 330391, "barkod": "8690000000024"},
                        {"_key": 330392, "barkod": "8690000000031"}
                    ]},
                    {"_key": 330393, "_key_sis_birim": 23, "katsayi": "12", "m_barkodlar": []}
                ]
            })
        );
        // barcodes are unique across cards, the seed's included, and within one call
        for (barkod, other) in [("8690000000017", "1"), ("8690000000024", "2"), ("X", "X")] {
            let kart = format!(
                r#"{{"stokkartkodu": "STK-003", "aciklama": "a", "m_birimler": [{{"_key_sis_birim": 22,
                    "m_barkodlar": [{{"barkod": "{other}"}}, {{"barkod": "{barkod}"}}]}}]}}"#
            );
            assert_eq!(
                error(&ekle(&api, &sid, "scf_stokkart", &kart, now)),
                (
                    "400",
                    format!(
                        "Bu kod ile kayıtlı bir kart zaten var (scf_stokkart_barkod → barkod: {barkod})"
                    )
                    .as_str()
                )
            );
        }
        // sub-row messages name the sub-model's table
        let kart =
            r#"{"stokkartkodu": "STK-003", "aciklama": "a", "m_birimler": [{"katsayi": "2"}]}"#;
        assert_eq!(
            error(&ekle(&api, &sid, "scf_stokkart", kart, now)).1,
            "Zorunlu alan boş bırakılamaz (scf_stokkart_birim → _key_sis_birim)"
        );
        let kart = r#"{"stokkartkodu": "STK-003", "aciklama": "a", "m_birimler": {"x": 1}}"#;
        assert_eq!(
            error(&ekle(&api, &sid, "scf_stokkart", kart, now)).1,
            "Geçersiz değer (m_birimler -> {'x': 1})"
        );
        let kart = r#"{"stokkartkodu": "STK-003", "aciklama": "a", "m_birimler": [{"_key_sis_birim": 21, "renk": "k"}]}"#;
        assert_eq!(
            error(&ekle(&api, &sid, "scf_stokkart", kart, now)).1,
            "Tanımsız alan (scf_stokkart_birim → renk)"
        );
        assert_eq!(records(&api, "scf_stokkart").len(), 2);
    }

    #[test]
    fn invoices_need_lines_and_fail_as_a_whole() {
        let api = api();
        let now = Instant::now();
        let sid = login(&api, now);
        for lines in ["", r#", "m_kalemler": []"#, r#", "m_kalemler": null"#] {
            let kart = format!(
                r#"{{"fisno": "F1", "tarih": "2024-01-31", "_key_scf_carikart": 2008{lines}}}"#
            );
            assert_eq!(
                ekle(&api, &sid, "scf_fatura", &kart, now),
                json!({"code": "400", "msg": "Kalem bilgisi girilmelidir!"})
            );
        }
        // the second line fails: nothing is stored, no key is used
        let kart = r#"{"fisno": "F1", "tarih": "2024-01-31", "_key_scf_carikart": {"carikartkodu": "0000008"},
            "m_kalemler": [
              {"_key_scf_stokkart": {"stokkartkodu": "STK-001"}, "miktar": 2, "birimfiyati": "10.50"},
              {"_key_scf_stokkart": 3001}
            ]}"#;
        assert_eq!(
            error(&ekle(&api, &sid, "scf_fatura", kart, now)),
            (
                "400",
                "Zorunlu alan boş bırakılamaz (scf_fatura_kalem → miktar)"
            )
        );
        assert!(records(&api, "scf_fatura").is_empty());
        let kart = kart.replace(
            r#"{"_key_scf_stokkart": 3001}"#,
            r#"{"_key_scf_stokkart": 3001, "miktar": "1", "_key_sis_birim": {"kod": "KOLİ"}}"#,
        );
        assert_eq!(
            ekle(&api, &sid, "scf_fatura", &kart, now),
            json!({"code": "200", "key": "330389", "msg": "«F1» numaralı fatura eklenmiştir."})
        );
        let rows = records(&api, "scf_fatura");
        assert_eq!(rows[0]["turu"], "2");
        assert_eq!(rows[0]["_key_scf_carikart"], 2008);
        let lines = rows[0]["m_kalemler"].as_array().unwrap();
        assert_eq!(lines[0]["_key"], 330390);
        assert_eq!(lines[0]["_key_scf_stokkart"], 3001);
        assert_eq!(lines[0]["miktar"], "2");
        assert_eq!(lines[1]["_key_sis_birim"], 23);
        assert_eq!(lines[1]["birimfiyati"], Value::Null);
        // the invoice's unique number was not taken by the failed call, but is now
        assert_eq!(
            error(&ekle(&api, &sid, "scf_fatura", &kart, now)).1,
            "Bu kod ile kayıtlı bir kart zaten var (scf_fatura → fisno: F1)"
        );
    }

    #[test]
    fn unknown_companies_are_refused() {
        let api = api();
        let now = Instant::now();
        let sid = login(&api, now);
        let body = |f: &str, d: &str| {
            format!(
                r#"{{"scf_carikart_ekle": {{"session_id": "{sid}", {f}{d} "kart": {{"carikartkodu": "C1", "unvan": "A"}}}}}}"#
            )
        };
        let cases = [
            (
                body(r#""firma_kodu": 35,"#, r#""donem_kodu": 1,"#),
                "Firma veya dönem bulunamadı (firma_kodu: 35, donem_kodu: 1)",
            ),
            (
                body(r#""firma_kodu": 34,"#, r#""donem_kodu": "2","#),
                "Firma veya dönem bulunamadı (firma_kodu: 34, donem_kodu: 2)",
            ),
            (
                body(r#""firma_kodu": 34,"#, ""),
                "Firma veya dönem bulunamadı (firma_kodu: 34, donem_kodu: None)",
            ),
        ];
        for (b, msg) in cases {
            assert_eq!(
                call(&api, "scf", &b, now),
                json!({"code": "400", "msg": msg})
            );
        }
        let ok = body(r#""firma_kodu": "34","#, r#""donem_kodu": "1","#);
        assert_eq!(call(&api, "scf", &ok, now)["code"], "200");
    }

    #[test]
    fn malformed_requests_get_400_and_paths_404_or_405() {
        let api = api();
        let now = Instant::now();
        for body in [
            "not json",
            "[]",
            "{}",
            r#"{"a": {}, "b": {}}"#,
            r#"{"login": 1}"#,
            "",
        ] {
            let v = call(&api, "sis", body, now);
            assert_eq!(v["code"], "400", "{body}");
            assert!(v["msg"].as_str().unwrap().starts_with("Geçersiz istek: "));
        }
        let sid = login(&api, now);
        let no_kart = format!(
            r#"{{"scf_carikart_ekle": {{"session_id": "{sid}", "firma_kodu": 34, "donem_kodu": 1}}}}"#
        );
        assert_eq!(call(&api, "scf", &no_kart, now)["code"], "400");
        assert_eq!(
            error(&call(&api, "scf", r#"{"scf_yok_ekle": {}}"#, now)),
            ("400", "Servis bulunamadı: scf_yok_ekle")
        );
        let r = api.route(&Method::GET, "/api/v3/sis/json", b"", now);
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.body["code"], "405");
        assert_eq!(r.allow, Some("POST"));
        let r = api.route(&Method::POST, "/api/v2/sis/json", LOGIN.as_bytes(), now);
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(r.body["code"], "404");
        let r = api.route(&Method::GET, "/_reference/records/yok", b"", now);
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        let r = api.route(&Method::POST, "/_reference/stats", b"", now);
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
        let r = api.route(&Method::POST, "/api/v3/sis/json", LOGIN.as_bytes(), now);
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body["code"], "200");
    }

    #[test]
    fn member_order_is_kept() {
        let j = J::parse(br#"{"z": 1, "a": {"y": 2.50, "b": [{"k": "v", "c": null}]}}"#).unwrap();
        assert_eq!(
            py_repr(&j),
            "{'z': 1, 'a': {'y': 2.50, 'b': [{'k': 'v', 'c': None}]}}"
        );
        assert_eq!(py_repr(&J::Leaf(json!("it's"))), "\"it's\"");
        assert_eq!(py_repr(&J::Leaf(json!("a'\"b"))), "'a\\'\"b'");
    }

    #[test]
    fn templates_fill_fields_and_the_user() {
        let row = json!({"tarih": "2017-03-25", "n": 5, "_key": 9});
        let Value::Object(row) = row else {
            unreachable!()
        };
        assert_eq!(
            render(
                "[{$user}] «{tarih}» {n} {_key} {yok} {not a slot} {",
                &row,
                "ws"
            ),
            "[ws] «2017-03-25» 5 9  {not a slot} {"
        );
    }

    #[test]
    fn broken_seeds_name_the_problem() {
        let good = std::fs::read_to_string(fixture()).unwrap();
        let err = |text: &str| DiaApi::from_seed(text).unwrap_err();
        assert!(err("{").contains("EOF"));
        assert!(err(r#"{"users": [], "companies": [], "models": {}}"#).contains("next_key"));
        let e = err(&good.replace(r#""type": "time""#, r#""type": "clock""#));
        assert!(e.contains("unknown variant `clock`"), "{e}");
        let e = err(&good.replace(r#""gts_gorev": [],"#, ""));
        assert!(
            e.contains("models.gts_notlar._key_gts_gorev: links table 'gts_gorev'"),
            "{e}"
        );
        let e = err(&good.replace(r#""default": "20""#, r#""default": "yirmi""#));
        assert!(e.contains("models.scf_stokkart.kdvorani: default"), "{e}");
        let e = err(&good.replace(r#""model": "scf_fatura_kalem""#, r#""model": "scf_fatura""#));
        assert!(e.contains("cycle"), "{e}");
        let e = err(&good.replace("«{fisno}»", "«{fisnum}»"));
        assert!(e.contains("models.scf_fatura.message: {fisnum}"), "{e}");
        let e = err(&good.replace(r#""_key": 22,"#, r#""_key": 21,"#));
        assert!(
            e.contains("tables.sis_birim[1]: _key 21 is used twice"),
            "{e}"
        );
        let e = err(&good.replace(r#""unique": true}"#, r#""uniq": true}"#));
        assert!(e.contains("unknown field `uniq`"), "{e}");
        let e = DiaApi::load(Path::new("/nonexistent/dia.json")).unwrap_err();
        assert!(e.starts_with("/nonexistent/dia.json: "), "{e}");
    }
}
