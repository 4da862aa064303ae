//! The configuration file as written: serde reads it into these types and nothing more. A key
//! left out is `None` here (its default is applied by `compile`, from `defaults`); enumerations
//! are enums, so a misspelt value is an error at its line. Tables that are checked later carry
//! their span, so that every later error can still name its line.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;

/// A secret value: written inline, or read from an environment variable so that no secret
/// has to sit in a file: `secret = { env = "GG_SECRET" }`.
#[derive(Clone, Deserialize)]
#[serde(untagged)]
pub enum SecretSource {
    Inline(String),
    Env { env: String },
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Inline(_) => f.write_str("Inline(***)"),
            SecretSource::Env { env } => write!(f, "Env({env})"),
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub xmlrpc: XmlRpcConfig,
    #[serde(default)]
    pub winstrom: Option<Spanned<WinstromConfig>>,
    #[serde(default)]
    pub store: Option<StoreConfig>,
    #[serde(default)]
    pub stock: Option<Spanned<StockConfig>>,
    #[serde(default)]
    pub backends: BTreeMap<String, Spanned<BackendConfig>>,
    #[serde(default)]
    pub profiles: BTreeMap<String, Spanned<ProfileConfig>>,
    /// `[mappings.<set>.<operation>]`
    #[serde(default)]
    pub mappings: BTreeMap<String, BTreeMap<String, Spanned<OperationMapping>>>,
    #[serde(default)]
    pub services: Vec<Spanned<ServiceConfig>>,
    /// The operator page.
    #[serde(default)]
    pub ops: Option<Spanned<OpsConfig>>,
}

/// The operator page and its JSON, behind HTTP Basic users of its own.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsConfig {
    pub path: Option<String>,
    pub realm: Option<String>,
    pub users: Vec<BasicUser>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: Option<SocketAddr>,
    /// URL clients use to reach the bridge; written into served WSDLs' soap:address.
    pub public_url: Option<String>,
    pub max_body_bytes: Option<usize>,
    pub max_depth: Option<usize>,
    pub header_timeout_ms: Option<u64>,
    pub body_timeout_ms: Option<u64>,
    pub request_timeout_ms: Option<u64>,
    pub shutdown_grace_ms: Option<u64>,
    /// Open connections at most; further clients wait until one closes.
    pub max_connections: Option<usize>,
    /// Count calls for `/metrics` and the operator page (on by default).
    pub metrics: Option<bool>,
    /// A SOAP answer whose backend JSON has this many bytes or more is sent while it is
    /// written (chunked); 0: every answer is written whole first.
    pub stream_answers_from_bytes: Option<usize>,
    /// Bytes of request bodies longer than 64 KiB held at once, across all requests; 0: no
    /// bound but `max_connections` times `max_body_bytes`.
    pub max_body_bytes_in_flight: Option<usize>,
}

/// Where to read a backend's error answers (4xx/5xx bodies). Each entry is a template
/// expression evaluated against the error body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorShapeConfig {
    pub code: Option<Value>,
    pub message: Option<Value>,
    /// A template producing a list of `{field, code, message}` objects.
    pub fields: Option<Value>,
    /// Where the backend writes a status in its body (DİA: `"$.code"`); when present it decides
    /// success and failure instead of the HTTP status.
    pub status: Option<Value>,
    /// Codes for refusals by their message, first match wins:
    /// `classify = [{ contains = "Kayıt bulunamadı", code = "record_not_found", number = 2101 }]`.
    #[serde(default)]
    pub classify: Vec<Classify>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Classify {
    pub contains: String,
    pub code: String,
    /// The number XML-RPC faults (and signed-profile errorIds) carry for this code.
    pub number: Option<i32>,
}

/// How the bridge authenticates to a backend (never with the client's credentials).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum BackendAuthConfig {
    /// A fixed HTTP Basic user.
    Basic {
        user: String,
        password: SecretSource,
    },
    /// A login call whose answer holds a session id (`$session` in request templates),
    /// renewed once when a call's status is one of `expired`.
    Session {
        method: Option<String>,
        path: String,
        /// The login body; `$.name` reads `credentials.name`.
        body: Value,
        /// Values for the login body; each may come from the environment.
        #[serde(default)]
        credentials: BTreeMap<String, SecretSource>,
        /// Where the session id is in the login answer.
        session: Value,
        /// Statuses (the body's status, else HTTP) meaning "the session expired".
        expired: Option<Vec<u16>>,
    },
    /// The OAuth2 password grant; the bearer token is refreshed before it expires and after
    /// a 401.
    Oauth2Password {
        token_path: String,
        client_id: String,
        client_secret: SecretSource,
        username: String,
        password: SecretSource,
        scope: Option<String>,
        /// Renew this long before the token expires.
        refresh_margin_secs: Option<u64>,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// `http://host:port` or `https://host:port`, with a path prefix if the API has one.
    pub base_url: String,
    pub connect_timeout_ms: Option<u64>,
    /// Total time for one backend call: connect, send, and read the whole answer.
    pub timeout_ms: Option<u64>,
    pub max_response_bytes: Option<usize>,
    /// The longest URL (base, path and query) a call may have; a call whose input would need a
    /// longer one is refused as the caller's error.
    pub max_url_bytes: Option<usize>,
    /// PEM file with the CA certificate(s) of an HTTPS backend whose certificate is not signed
    /// by a public CA (relative to the configuration file).
    pub ca_file: Option<PathBuf>,
    /// Extra headers on every call; values may come from the environment.
    #[serde(default)]
    pub headers: BTreeMap<String, SecretSource>,
    #[serde(default)]
    pub errors: ErrorShapeConfig,
    pub auth: Option<BackendAuthConfig>,
    /// Values request templates read as `$vars.name` (DİA's firma_kodu, donem_kodu).
    #[serde(default)]
    pub vars: BTreeMap<String, Value>,
    /// Calls in flight to this backend at most; more wait (up to `timeout_ms`) for one to end.
    pub max_in_flight: Option<usize>,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub breaker: BreakerConfig,
}

/// Retries of idempotent calls (GET, or mappings with `retry = true`) after a failure of the
/// backend, and of any call that never reached it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts per call, the first included (1: no retries).
    pub attempts: Option<u32>,
    pub backoff_ms: Option<u64>,
    pub max_backoff_ms: Option<u64>,
    /// Retries at most this many per 100 calls (plus a reserve of 10).
    pub budget_percent: Option<u32>,
}

/// The circuit breaker: after `failures` consecutive failures of the backend, calls fail fast
/// for `open_ms`, then one probe call decides.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// 0 turns the breaker off.
    pub failures: Option<u32>,
    pub open_ms: Option<u64>,
}

/// What to do when the same (apiKey, sign, time) arrives again.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ReusePolicy {
    /// Refuse the second use (stops replays). The default.
    #[default]
    Reject,
    /// Accept it: for old clients (the official PHP client) that compute `time` once per
    /// client object and reuse it for every call.
    Allow,
}

/// The language of messages to a signed profile's callers.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LangConfig {
    Tr,
    En,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub api_key: String,
    pub secret: SecretSource,
    /// HTTP Basic "role" user and password of the account.
    pub role_user: String,
    pub role_password: SecretSource,
    /// Overrides the profile's rule for this account.
    pub reused_signature: Option<ReusePolicy>,
    /// Accept any `time` (no window). Only for demo and fixture accounts; requires
    /// `reused_signature = "allow"`. Logged as a warning at start-up.
    #[serde(default)]
    pub accept_any_time: bool,
}

/// Localised text for a backend error code (see `[profiles.X.backend_errors]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorText {
    pub id: String,
    pub tr: String,
    pub en: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedProfileConfig {
    pub time_window_secs: Option<u64>,
    #[serde(default)]
    pub reused_signature: ReusePolicy,
    pub default_lang: Option<LangConfig>,
    pub realm: Option<String>,
    /// Offset used for `responseTime`; the legacy service answered in Turkish time.
    pub utc_offset: Option<String>,
    /// The child of every response element that carries the result (`<return>`).
    pub result_element: Option<String>,
    #[serde(default)]
    pub accounts: Vec<AccountConfig>,
    #[serde(default)]
    pub backend_errors: BTreeMap<String, ErrorText>,
    /// No longer needed (accepted for old configurations): used signatures are always kept in
    /// the store, across restarts and, on PostgreSQL, across instances.
    #[serde(default)]
    pub shared_replay_cache: bool,
    pub rate_limit: Option<RateLimitConfig>,
}

/// At most `calls` per `per_secs` from each caller (user, or apiKey's role user).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub calls: u32,
    pub per_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ProfileConfig {
    /// GittiGidiyor-style: HTTP Basic role user plus apiKey/sign/time/lang parameters.
    Signed(SignedProfileConfig),
    /// HTTP Basic users only.
    Basic(BasicProfileConfig),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicProfileConfig {
    pub realm: Option<String>,
    pub users: Vec<BasicUser>,
    pub rate_limit: Option<RateLimitConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicUser {
    pub user: String,
    pub password: SecretSource,
}

/// How one operation becomes a backend call and how the answer comes back.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationMapping {
    /// Backend name; defaults to the service's backend.
    pub backend: Option<String>,
    pub method: Option<String>,
    /// Path template: `/v1/vouchers/{$.paymentVoucher}/payments` (not for `stock` operations).
    pub path: Option<String>,
    /// Extra request headers: name -> template (`idempotency-key = "$.key"`).
    #[serde(default)]
    pub headers: BTreeMap<String, Value>,
    /// Handled by the stock sync instead of a plain backend call (see `[stock]`).
    pub stock: Option<StockOpConfig>,
    /// Query parameters: name -> template expression; lists repeat the parameter.
    #[serde(default)]
    pub query: BTreeMap<String, Value>,
    /// JSON body template (none: no body).
    pub body: Option<Value>,
    /// Template for the operation's result, evaluated against the backend's JSON answer
    /// (`$`), with the decoded request available as `$input`.
    pub response: Option<Value>,
    /// Follow `next` links and gather every page's items into one answer.
    pub pages: Option<PagesConfig>,
    /// Send a list body in chunks, with per-item outcomes in `$batch`.
    pub batch: Option<BatchConfig>,
    /// Send the call again after a failure that may have reached the backend: only for calls
    /// that are safe to repeat (GET calls are retried without it).
    pub retry: Option<bool>,
}

/// What a stock-service operation does.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockOpConfig {
    pub op: StockOpKind,
    pub action: Option<StockAction>,
    pub list: Option<StockList>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StockOpKind {
    /// A stock list: synchronous, or an asynchronous batch.
    Submit,
    /// The configured warehouse codes.
    Warehouses,
    /// Batches, by status.
    Batches,
    /// One batch with its per-item results.
    Batch,
    /// Error (and success) reports.
    Reports,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StockAction {
    Insert,
    Update,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StockList {
    Main,
    Extra,
}

impl StockAction {
    /// The name the configuration, the channel and the store use.
    pub fn as_str(self) -> &'static str {
        match self {
            StockAction::Insert => "insert",
            StockAction::Update => "update",
        }
    }

    pub fn parse(s: &str) -> Option<StockAction> {
        [StockAction::Insert, StockAction::Update]
            .into_iter()
            .find(|a| a.as_str() == s)
    }
}

impl StockList {
    /// The name the configuration, the channel and the store use.
    pub fn as_str(self) -> &'static str {
        match self {
            StockList::Main => "main",
            StockList::Extra => "extra",
        }
    }

    pub fn parse(s: &str) -> Option<StockList> {
        [StockList::Main, StockList::Extra]
            .into_iter()
            .find(|l| l.as_str() == s)
    }
}

/// The durable store: `url = "sqlite:var/soapbridge.db"` (relative to the configuration file;
/// created on first start) or `url = "postgres://user@host/db"` with `schema`. Without a
/// `[store]` section, stock sync and signed profiles use that SQLite file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub url: SecretSource,
    pub schema: Option<String>,
}

/// Stock sync: the batches of asynchronous stock lists, delivered by workers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockConfig {
    pub backend: String,
    /// The configured warehouse codes (`WAREHOUSE_CODES`), as `getWarehouseMappings` answers.
    #[serde(default)]
    pub warehouse_codes: Vec<String>,
    /// Batches delivered at once by this instance.
    pub workers: Option<usize>,
    /// Delivery attempts before a batch fails.
    pub max_attempts: Option<i64>,
    /// How long a claimed batch stays this instance's; a dead instance's claims expire then.
    pub lease_ms: Option<i64>,
    /// How often a batch the backend is still processing is asked about.
    pub poll_interval_ms: Option<i64>,
    /// Back-off after a failed attempt: base * 2^(attempt-1), at most max, with jitter.
    pub retry_base_ms: Option<i64>,
    pub retry_max_ms: Option<i64>,
    /// The backend call delivering a stock list. Input: `$.mode` (sync|async), `$.key` (the
    /// batch's idempotency key), `$.action`, `$.list`, `$.items`. Result: `{remote_id, status,
    /// results}`.
    pub send: OperationMapping,
    /// The backend call asking about a delivered batch. Input: `$.remote_id`. Result:
    /// `{status, results}`.
    pub poll: OperationMapping,
}

/// `pages = { next = "$.next", items = "$.results" }`: after the first answer, request the
/// `next` link (on the same backend) until it is null, and put every page's `items` into the
/// first answer's `items`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagesConfig {
    pub next: String,
    pub items: String,
    pub max_pages: Option<usize>,
}

/// `batch = { size = 1000, item_errors = "$", resend_valid = true }`: a body that is a list
/// (or has one at `items`) goes in chunks of `size`; a refused chunk's per-item errors are read
/// at `item_errors`, and with `resend_valid` its valid items are sent once more on their own.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    pub size: usize,
    /// Where the list is in the rendered body (`$`: the body is the list).
    pub items: Option<String>,
    /// In a refusal's body: the list of per-item errors, aligned with the items sent.
    pub item_errors: Option<String>,
    #[serde(default)]
    pub resend_valid: bool,
}

/// The protocol of a service's front door.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Soap,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub name: String,
    /// URL path, e.g. `/listingapi/ws/IndividualProductOptionService`.
    pub path: String,
    #[serde(default)]
    pub protocol: Protocol,
    pub wsdl: PathBuf,
    pub profile: Option<String>,
    pub backend: String,
    /// Name of the `[mappings.<name>]` set serving this service's operations.
    pub mappings: String,
    /// Prefix of the SOAP envelope in responses (some clients index by `env:Envelope`).
    pub envelope_prefix: Option<String>,
    /// Prefix of the response element's namespace (`ns0:calculateOptionsPriceResponse`).
    pub body_prefix: Option<String>,
    /// `xsi:nil="true"` on an optional element that is not nillable: taken as absent (the
    /// default, as SOAP::Lite and other old clients send it for values they leave out), or
    /// refused with NOT_NILLABLE when this is true.
    #[serde(default)]
    pub strict_nil: bool,
    /// Shadow mode: calls are also sent to the legacy server in the background and its
    /// answers compared with the bridge's (off unless given).
    pub shadow: Option<ShadowConfig>,
}

/// `[services.shadow]`: where the legacy service is and what may be sent to it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowConfig {
    /// The legacy service's URL (the old endpoint clients used).
    pub url: String,
    /// Operations that change data but may be sent to the legacy server as well (reads,
    /// operations whose backend call is a GET, are shadowed without being listed; other
    /// writes never are).
    #[serde(default)]
    pub safe: Vec<String>,
    /// The share of calls shadowed, 0 to 1 (default 1).
    pub sample: Option<f64>,
    /// Shadow calls in flight at most (default 16); past it a call is not shadowed (counted
    /// as dropped), so shadowing never queues.
    pub max_in_flight: Option<usize>,
    /// How long the legacy server has (default 10000 ms).
    pub timeout_ms: Option<u64>,
    /// Element names whose values are not compared (differences in times never count).
    #[serde(default)]
    pub ignore: Vec<String>,
}

/// When a result integer that does not fit `i4` may be written as `<i8>`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum I8Policy {
    /// When the client shows it reads `i8`: it sent one, or it is a client known to read them
    /// (Python's xmlrpc.client); otherwise such values are sent as strings of digits.
    #[default]
    Auto,
    Always,
    /// Always as strings of digits.
    Never,
}

/// The XML-RPC front door: every operation of every service as `<service>.<operation>`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XmlRpcConfig {
    pub enabled: Option<bool>,
    pub path: Option<String>,
    #[serde(default)]
    pub i8: I8Policy,
}

/// The winstrom (ABRA Flexi) door: `/c/{company}/{evidence}[/{id}|/({filter})].{xml|json}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WinstromConfig {
    /// URL prefix (`/c`).
    pub path: Option<String>,
    /// Records in one document at most.
    pub max_records: Option<usize>,
    /// Rows one filtered action may touch at most.
    pub max_matches: Option<usize>,
    /// Comparisons one WQL filter may have at most.
    pub max_filter_terms: Option<usize>,
    /// Nodes (comparisons, their values, and/or/not) one WQL filter may have at most.
    pub max_filter_nodes: Option<usize>,
    #[serde(default)]
    pub companies: BTreeMap<String, CompanyConfig>,
    #[serde(default)]
    pub evidences: BTreeMap<String, EvidenceConfig>,
}

/// A company: the backend (and tenant of it) holding its data, and who may use it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompanyConfig {
    pub backend: String,
    /// Given to route templates as `$.tenant` (default: the company's name).
    pub tenant: Option<String>,
    /// A `basic` profile: the company's HTTP Basic users.
    pub profile: String,
}

/// One evidence (a kind of record): its fields, the backend calls that read and write it, and
/// its actions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceConfig {
    /// Names the record in "not found" messages (`cz.winstrom.vo.cen.Cenik`).
    pub class: Option<String>,
    /// The field a `code:` identifier sets when a record is created through it.
    pub code_field: Option<String>,
    /// The properties `detail=summary` gives (default: `id`, the code field and `nazev`,
    /// those the evidence has).
    pub summary: Option<Vec<String>>,
    pub fields: Vec<FieldConfig>,
    /// list, get, create, update: operation mappings (see README).
    pub routes: BTreeMap<String, OperationMapping>,
    /// The evidence's actions (`delete`, `prepocti-nakupni-cenu`, ...), each a mapping.
    #[serde(default)]
    pub actions: BTreeMap<String, OperationMapping>,
}

/// The type of a Flexi property.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    #[default]
    String,
    Int,
    Decimal,
    Bool,
    Date,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldConfig {
    /// The Flexi property name (`nazev`).
    pub name: String,
    #[serde(rename = "type", default)]
    pub ty: FieldType,
    /// The backend's name for it (default: the same).
    pub backend: Option<String>,
    /// The label `properties.json` gives it (default: its name).
    pub title: Option<String>,
    /// Operators a filter may use on it: "number", "text", "bool", or a list of operator
    /// names (eq, ne, lt, lte, gt, gte, like, begins, ends, between, in, is_null, ...).
    /// Without it the field cannot be filtered.
    pub filter: Option<FilterOps>,
    /// Read-only fields are returned but never sent to the backend.
    #[serde(default)]
    pub read_only: bool,
}

/// The filter operators of a field: a group (`number`, `text`, `bool`), or a list of operator
/// names (checked by `compile`, which names the known ones).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum FilterOps {
    Group(String),
    List(Vec<String>),
}
