//! The TOML configuration: its model, loading, secrets from the environment, and validation.
//!
//! Everything a deployment changes lives here: services (URL path, WSDL, profile), operation
//! mappings (backend routes and JSON templates), backends and credentials. Adding an operation
//! or a backend is a change to this file plus a WSDL, not to Rust code.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

/// A configuration problem, reported at start-up with the file, the key and the reason.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {reason}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(file: &Path, key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            file: file.display().to_string(),
            key: key.into(),
            reason: reason.into(),
        }
    }
}

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

impl SecretSource {
    fn resolve(&self, file: &Path, key: &str) -> Result<String, ConfigError> {
        match self {
            SecretSource::Inline(s) => Ok(s.clone()),
            SecretSource::Env { env } => std::env::var(env).map_err(|_| {
                ConfigError::new(
                    file,
                    key,
                    format!("environment variable {env} is not set (or is not valid UTF-8)"),
                )
            }),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// URL clients use to reach the bridge; written into served WSDLs' soap:address.
    /// Defaults to `http://<listen>`.
    #[serde(default)]
    pub public_url: Option<String>,
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    #[serde(default = "default_max_depth")]
    pub max_depth: usize,
    #[serde(default = "default_header_timeout")]
    pub header_timeout_ms: u64,
    #[serde(default = "default_body_timeout")]
    pub body_timeout_ms: u64,
    #[serde(default = "default_request_timeout")]
    pub request_timeout_ms: u64,
    #[serde(default = "default_grace")]
    pub shutdown_grace_ms: u64,
    /// Open connections at most; further clients wait until one closes.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

fn default_listen() -> SocketAddr {
    "127.0.0.1:8080".parse().expect("valid literal")
}
fn default_max_body() -> usize {
    1024 * 1024
}
fn default_max_depth() -> usize {
    64
}
fn default_header_timeout() -> u64 {
    10_000
}
fn default_body_timeout() -> u64 {
    30_000
}
fn default_request_timeout() -> u64 {
    60_000
}
fn default_grace() -> u64 {
    30_000
}
fn default_max_connections() -> usize {
    10_000
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            public_url: None,
            max_body_bytes: default_max_body(),
            max_depth: default_max_depth(),
            header_timeout_ms: default_header_timeout(),
            body_timeout_ms: default_body_timeout(),
            request_timeout_ms: default_request_timeout(),
            shutdown_grace_ms: default_grace(),
            max_connections: default_max_connections(),
        }
    }
}

/// Where to read a backend's error answers (4xx/5xx bodies). Each entry is a template
/// expression evaluated against the error body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorShape {
    #[serde(default = "default_err_code")]
    pub code: Value,
    #[serde(default = "default_err_message")]
    pub message: Value,
    /// A template producing a list of `{field, code, message}` objects.
    #[serde(default)]
    pub fields: Option<Value>,
    /// Where the backend writes a status in its body (DİA: `"$.code"`); when present it decides
    /// success and failure instead of the HTTP status.
    #[serde(default)]
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
    /// The number XML-RPC faults (and signed-profile errorIds) carry for this code
    /// (default 2000).
    #[serde(default)]
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
        #[serde(default = "default_method")]
        method: String,
        path: String,
        /// The login body; `$.name` reads `credentials.name`.
        body: Value,
        /// Values for the login body; each may come from the environment.
        #[serde(default)]
        credentials: BTreeMap<String, SecretSource>,
        /// Where the session id is in the login answer.
        session: Value,
        /// Statuses (the body's status, else HTTP) meaning "the session expired".
        #[serde(default = "default_expired")]
        expired: Vec<u16>,
    },
    /// The OAuth2 password grant; the bearer token is refreshed before it expires and after
    /// a 401.
    Oauth2Password {
        token_path: String,
        client_id: String,
        client_secret: SecretSource,
        username: String,
        password: SecretSource,
        #[serde(default)]
        scope: Option<String>,
        /// Renew this long before the token expires.
        #[serde(default = "default_margin")]
        refresh_margin_secs: u64,
    },
}

fn default_expired() -> Vec<u16> {
    vec![419, 401]
}
fn default_margin() -> u64 {
    30
}

fn default_err_code() -> Value {
    Value::String("$.error.code".into())
}
fn default_err_message() -> Value {
    Value::String("$.error.message".into())
}

impl Default for ErrorShape {
    fn default() -> Self {
        ErrorShape {
            code: default_err_code(),
            message: default_err_message(),
            fields: None,
            status: None,
            classify: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// `http://host:port` or `https://host:port`, with a path prefix if the API has one.
    pub base_url: String,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
    /// Total time for one backend call: connect, send, and read the whole answer.
    #[serde(default = "default_backend_timeout")]
    pub timeout_ms: u64,
    #[serde(default = "default_max_response")]
    pub max_response_bytes: usize,
    /// The longest URL (base, path and query) a call may have; a call whose input would need a
    /// longer one is refused as the caller's error.
    #[serde(default = "default_max_url")]
    pub max_url_bytes: usize,
    /// PEM file with the CA certificate(s) of an HTTPS backend whose certificate is not signed
    /// by a public CA (relative to the configuration file).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Extra headers on every call; values may come from the environment.
    #[serde(default)]
    pub headers: BTreeMap<String, SecretSource>,
    #[serde(default)]
    pub errors: ErrorShape,
    #[serde(default)]
    pub auth: Option<BackendAuthConfig>,
    /// Values request templates read as `$vars.name` (DİA's firma_kodu, donem_kodu).
    #[serde(default)]
    pub vars: BTreeMap<String, Value>,
}

fn default_connect_timeout() -> u64 {
    2_000
}
fn default_backend_timeout() -> u64 {
    10_000
}
fn default_max_url() -> usize {
    8 * 1024
}
fn default_max_response() -> usize {
    16 * 1024 * 1024
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub api_key: String,
    pub secret: SecretSource,
    /// HTTP Basic "role" user and password of the account.
    pub role_user: String,
    pub role_password: SecretSource,
    /// Overrides the profile's rule for this account.
    #[serde(default)]
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
    #[serde(default = "default_window")]
    pub time_window_secs: u64,
    #[serde(default)]
    pub reused_signature: ReusePolicy,
    #[serde(default = "default_lang")]
    pub default_lang: String,
    #[serde(default = "default_realm")]
    pub realm: String,
    /// Offset used for `responseTime`; the legacy service answered in Turkish time.
    #[serde(default = "default_offset")]
    pub utc_offset: String,
    /// The child of every response element that carries the result (`<return>`).
    #[serde(default = "default_result")]
    pub result_element: String,
    #[serde(default)]
    pub accounts: Vec<AccountConfig>,
    #[serde(default)]
    pub backend_errors: BTreeMap<String, ErrorText>,
    /// No longer needed (accepted for old configurations): used signatures are always kept in
    /// the store, across restarts and, on PostgreSQL, across instances.
    #[serde(default)]
    pub shared_replay_cache: bool,
}

fn default_window() -> u64 {
    300
}
fn default_lang() -> String {
    "tr".into()
}
fn default_realm() -> String {
    "soapbridge".into()
}
fn default_offset() -> String {
    "+03:00".into()
}
fn default_result() -> String {
    "return".into()
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
    #[serde(default = "default_realm")]
    pub realm: String,
    pub users: Vec<BasicUser>,
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
    #[serde(default)]
    pub backend: Option<String>,
    #[serde(default = "default_method")]
    pub method: String,
    /// Path template: `/v1/vouchers/{$.paymentVoucher}/payments` (not for `stock` operations).
    #[serde(default)]
    pub path: Option<String>,
    /// Extra request headers: name -> template (`idempotency-key = "$.key"`).
    #[serde(default)]
    pub headers: BTreeMap<String, Value>,
    /// Handled by the stock sync instead of a plain backend call (see `[stock]`).
    #[serde(default)]
    pub stock: Option<StockOpConfig>,
    /// Query parameters: name -> template expression; lists repeat the parameter.
    #[serde(default)]
    pub query: BTreeMap<String, Value>,
    /// JSON body template (none: no body).
    #[serde(default)]
    pub body: Option<Value>,
    /// Template for the operation's result, evaluated against the backend's JSON answer
    /// (`$`), with the decoded request available as `$input`.
    #[serde(default = "default_response")]
    pub response: Value,
    /// Follow `next` links and gather every page's items into one answer.
    #[serde(default)]
    pub pages: Option<PagesConfig>,
    /// Send a list body in chunks, with per-item outcomes in `$batch`.
    #[serde(default)]
    pub batch: Option<BatchConfig>,
}

/// What a stock-service operation does: `submit` a stock list (`action` insert or update,
/// `list` main or extra), or read `warehouses`, `batches`, one `batch`, or `reports`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockOpConfig {
    pub op: String,
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub list: Option<String>,
}

/// The durable store: `url = "sqlite:var/soapbridge.db"` (relative to the configuration file;
/// created on first start) or `url = "postgres://user@host/db"` with `schema`. Without a
/// `[store]` section, stock sync and signed profiles use that SQLite file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub url: SecretSource,
    #[serde(default = "default_schema")]
    pub schema: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: SecretSource::Inline("sqlite:var/soapbridge.db".into()),
            schema: default_schema(),
        }
    }
}

fn default_schema() -> String {
    "soapbridge".into()
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
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Delivery attempts before a batch fails.
    #[serde(default = "default_attempts")]
    pub max_attempts: i64,
    /// How long a claimed batch stays this instance's; a dead instance's claims expire then.
    #[serde(default = "default_lease")]
    pub lease_ms: i64,
    /// How often a batch the backend is still processing is asked about.
    #[serde(default = "default_poll")]
    pub poll_interval_ms: i64,
    /// Back-off after a failed attempt: base * 2^(attempt-1), at most max, with jitter.
    #[serde(default = "default_retry_base")]
    pub retry_base_ms: i64,
    #[serde(default = "default_retry_max")]
    pub retry_max_ms: i64,
    /// The backend call delivering a stock list. Input: `$.mode` (sync|async), `$.key` (the
    /// batch's idempotency key), `$.action`, `$.list`, `$.items`. Result: `{remote_id, status,
    /// results}`.
    pub send: OperationMapping,
    /// The backend call asking about a delivered batch. Input: `$.remote_id`. Result:
    /// `{status, results}`.
    pub poll: OperationMapping,
}

fn default_workers() -> usize {
    4
}
fn default_attempts() -> i64 {
    8
}
fn default_lease() -> i64 {
    30_000
}
fn default_poll() -> i64 {
    250
}
fn default_retry_base() -> i64 {
    200
}
fn default_retry_max() -> i64 {
    30_000
}

/// `pages = { next = "$.next", items = "$.results" }`: after the first answer, request the
/// `next` link (on the same backend) until it is null, and put every page's `items` into the
/// first answer's `items`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagesConfig {
    pub next: String,
    pub items: String,
    #[serde(default = "default_max_pages")]
    pub max_pages: usize,
}

fn default_max_pages() -> usize {
    1000
}

/// `batch = { size = 1000, item_errors = "$", resend_valid = true }`: a body that is a list
/// (or has one at `items`) goes in chunks of `size`; a refused chunk's per-item errors are read
/// at `item_errors`, and with `resend_valid` its valid items are sent once more on their own.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    pub size: usize,
    /// Where the list is in the rendered body (`$`: the body is the list).
    #[serde(default = "default_items")]
    pub items: String,
    /// In a refusal's body: the list of per-item errors, aligned with the items sent.
    #[serde(default)]
    pub item_errors: Option<String>,
    #[serde(default)]
    pub resend_valid: bool,
}

fn default_items() -> String {
    "$".into()
}

fn default_method() -> String {
    "POST".into()
}
fn default_response() -> Value {
    Value::String("$".into())
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub name: String,
    /// URL path, e.g. `/listingapi/ws/IndividualProductOptionService`.
    pub path: String,
    #[serde(default = "default_protocol")]
    pub protocol: String,
    pub wsdl: PathBuf,
    #[serde(default)]
    pub profile: Option<String>,
    pub backend: String,
    /// Name of the `[mappings.<name>]` set serving this service's operations.
    pub mappings: String,
    /// Prefix of the SOAP envelope in responses (some clients index by `env:Envelope`).
    #[serde(default = "default_env_prefix")]
    pub envelope_prefix: String,
    /// Prefix of the response element's namespace (`ns0:calculateOptionsPriceResponse`).
    #[serde(default = "default_body_prefix")]
    pub body_prefix: String,
    /// `xsi:nil="true"` on an optional element that is not nillable: taken as absent (the
    /// default, as SOAP::Lite and other old clients send it for values they leave out), or
    /// refused with NOT_NILLABLE when this is true.
    #[serde(default)]
    pub strict_nil: bool,
}

fn default_protocol() -> String {
    "soap".into()
}
fn default_env_prefix() -> String {
    "env".into()
}
fn default_body_prefix() -> String {
    "ns0".into()
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
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XmlRpcConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "default_xmlrpc_path")]
    pub path: String,
    #[serde(default)]
    pub i8: I8Policy,
}

fn default_true() -> bool {
    true
}
fn default_xmlrpc_path() -> String {
    "/RPC2".into()
}

impl Default for XmlRpcConfig {
    fn default() -> Self {
        XmlRpcConfig {
            enabled: true,
            path: default_xmlrpc_path(),
            i8: I8Policy::Auto,
        }
    }
}

/// The winstrom (ABRA Flexi) door: `/c/{company}/{evidence}[/{id}|/({filter})].{xml|json}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WinstromConfig {
    /// URL prefix (`/c`).
    #[serde(default = "default_winstrom_path")]
    pub path: String,
    /// Records in one document at most.
    #[serde(default = "default_max_records")]
    pub max_records: usize,
    /// Rows one filtered action may touch at most.
    #[serde(default = "default_max_matches")]
    pub max_matches: usize,
    /// Comparisons one WQL filter may have at most.
    #[serde(default = "default_max_filter_terms")]
    pub max_filter_terms: usize,
    /// Nodes (comparisons, their values, and/or/not) one WQL filter may have at most.
    #[serde(default = "default_max_filter_nodes")]
    pub max_filter_nodes: usize,
    #[serde(default)]
    pub companies: BTreeMap<String, CompanyConfig>,
    #[serde(default)]
    pub evidences: BTreeMap<String, EvidenceConfig>,
}

fn default_winstrom_path() -> String {
    "/c".into()
}
fn default_max_records() -> usize {
    1000
}
fn default_max_matches() -> usize {
    5_000
}
fn default_max_filter_terms() -> usize {
    1_000
}
fn default_max_filter_nodes() -> usize {
    10_000
}

/// A company: the backend (and tenant of it) holding its data, and who may use it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompanyConfig {
    pub backend: String,
    /// Given to route templates as `$.tenant` (default: the company's name).
    #[serde(default)]
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
    #[serde(default)]
    pub class: Option<String>,
    /// The field a `code:` identifier sets when a record is created through it.
    #[serde(default)]
    pub code_field: Option<String>,
    pub fields: Vec<FieldConfig>,
    /// list, get, create, update: operation mappings (see README).
    pub routes: BTreeMap<String, OperationMapping>,
    /// The evidence's actions (`delete`, `prepocti-nakupni-cenu`, ...), each a mapping.
    #[serde(default)]
    pub actions: BTreeMap<String, OperationMapping>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldConfig {
    /// The Flexi property name (`nazev`).
    pub name: String,
    /// string, int, decimal, bool, date.
    #[serde(rename = "type", default = "default_field_type")]
    pub ty: String,
    /// The backend's name for it (default: the same).
    #[serde(default)]
    pub backend: Option<String>,
    /// Operators a filter may use on it: "number", "text", "bool", or a list of operator
    /// names (eq, ne, lt, lte, gt, gte, like, begins, ends, between, in, is_null, ...).
    /// Without it the field cannot be filtered.
    #[serde(default)]
    pub filter: Option<Value>,
    /// Read-only fields are returned but never sent to the backend.
    #[serde(default)]
    pub read_only: bool,
}

fn default_field_type() -> String {
    "string".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub xmlrpc: XmlRpcConfig,
    #[serde(default)]
    pub winstrom: Option<WinstromConfig>,
    #[serde(default)]
    pub store: Option<StoreConfig>,
    #[serde(default)]
    pub stock: Option<StockConfig>,
    #[serde(default)]
    pub backends: BTreeMap<String, BackendConfig>,
    #[serde(default)]
    pub profiles: BTreeMap<String, ProfileConfig>,
    #[serde(default)]
    pub mappings: BTreeMap<String, BTreeMap<String, OperationMapping>>,
    #[serde(default)]
    pub services: Vec<ServiceConfig>,
}

/// A loaded configuration: the raw model, the directory relative paths start from, and the
/// resolved secrets.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub base_dir: PathBuf,
    pub raw: RawConfig,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, "(file)", format!("cannot read: {e}")))?;
        Self::from_toml(&text, path)
    }

    /// Parses configuration text; `path` names the file in errors and anchors relative paths.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let key = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}")
                })
                .unwrap_or_else(|| "(document)".into());
            ConfigError::new(path, key, e.message().to_string())
        })?;
        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let config = Config {
            file: path.to_path_buf(),
            base_dir,
            raw,
        };
        config.validate_references()?;
        Ok(config)
    }

    pub fn resolve_path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    pub fn err(&self, key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::new(&self.file, key, reason)
    }

    pub fn secret(&self, key: &str, s: &SecretSource) -> Result<String, ConfigError> {
        s.resolve(&self.file, key)
    }

    /// Checks that names refer to things that exist; deeper checks (WSDLs, templates) happen
    /// when the application is built from the configuration.
    fn validate_references(&self) -> Result<(), ConfigError> {
        let raw = &self.raw;
        if let Some(url) = &raw.server.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(self.err("server.public_url", "must start with http:// or https://"));
        }
        if raw.server.max_depth < 4 {
            return Err(self.err(
                "server.max_depth",
                "must be at least 4 (a SOAP envelope alone nests 3 levels)",
            ));
        }
        for (name, b) in &raw.backends {
            let key = format!("backends.{name}");
            let url = &b.base_url;
            if url
                .split_once("://")
                .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""))
                .is_some_and(|authority| authority.contains('@'))
            {
                // Not echoed: the URL holds a password.
                return Err(self.err(
                    format!("{key}.base_url"),
                    format!(
                        "must not carry credentials (user:password@host): they would appear in logs and messages; give them in [backends.{name}.auth] (kind = \"basic\", password = {{ env = \"...\" }}) instead"
                    ),
                ));
            }
            if !(url.starts_with("http://") || url.starts_with("https://"))
                || url
                    .parse::<http::Uri>()
                    .ok()
                    .and_then(|u| u.host().map(str::to_string))
                    .is_none()
            {
                return Err(self.err(
                    format!("{key}.base_url"),
                    format!("'{url}' must be an http:// or https:// URL with a host"),
                ));
            }
            if b.timeout_ms == 0 || b.connect_timeout_ms == 0 {
                return Err(self.err(key, "timeouts must be greater than zero"));
            }
        }
        for (name, p) in &raw.profiles {
            let key = format!("profiles.{name}");
            let p = match p {
                ProfileConfig::Signed(p) => p,
                ProfileConfig::Basic(b) => {
                    if b.users.is_empty() {
                        return Err(self.err(format!("{key}.users"), "needs at least one user"));
                    }
                    if let Some(i) = b
                        .users
                        .iter()
                        .position(|u| u.user.is_empty() || u.user.contains(':'))
                    {
                        return Err(self.err(
                            format!("{key}.users[{i}].user"),
                            "must be non-empty and without ':' (HTTP Basic cannot carry it)",
                        ));
                    }
                    continue;
                }
            };
            if p.time_window_secs == 0 || p.time_window_secs > 86_400 {
                return Err(self.err(
                    format!("{key}.time_window_secs"),
                    "must be between 1 and 86400 (one day)",
                ));
            }
            if crate::error::Lang::parse(&p.default_lang).is_none() {
                return Err(self.err(format!("{key}.default_lang"), "must be 'tr' or 'en'"));
            }
            if parse_offset(&p.utc_offset).is_none() {
                return Err(self.err(
                    format!("{key}.utc_offset"),
                    format!("'{}' is not an offset like +03:00", p.utc_offset),
                ));
            }
            for (code, t) in &p.backend_errors {
                if t.id.parse::<i32>().is_err() {
                    return Err(self.err(
                        format!("{key}.backend_errors.{code}.id"),
                        format!(
                            "'{}' must be a number (it is also the XML-RPC faultCode)",
                            t.id
                        ),
                    ));
                }
            }
            let mut keys = std::collections::HashSet::new();
            for (i, a) in p.accounts.iter().enumerate() {
                let akey = format!("{key}.accounts[{i}]");
                if !keys.insert(a.api_key.as_str()) {
                    return Err(self.err(format!("{akey}.api_key"), "duplicate apiKey"));
                }
                if a.role_user.is_empty() || a.role_user.contains(':') {
                    return Err(self.err(
                        format!("{akey}.role_user"),
                        "must be non-empty and without ':' (HTTP Basic cannot carry it)",
                    ));
                }
                if a.accept_any_time
                    && a.reused_signature.unwrap_or(p.reused_signature) != ReusePolicy::Allow
                {
                    return Err(self.err(
                        format!("{akey}.accept_any_time"),
                        "requires reused_signature = \"allow\": without a time window, refusing reused signatures would need to remember every signature forever",
                    ));
                }
            }
        }
        let mut paths = std::collections::HashSet::new();
        if raw.xmlrpc.enabled {
            if !raw.xmlrpc.path.starts_with('/') || raw.xmlrpc.path.trim_end_matches('/').is_empty()
            {
                return Err(self.err("xmlrpc.path", "must start with '/' and not be '/' alone"));
            }
            paths.insert(raw.xmlrpc.path.trim_end_matches('/'));
        }
        let mut names = std::collections::HashSet::new();
        for (i, s) in raw.services.iter().enumerate() {
            let key = format!("services[{i}] ({})", s.name);
            if !s.path.starts_with('/') {
                return Err(self.err(format!("{key}.path"), "must start with '/'"));
            }
            for (k, prefix) in [
                ("envelope_prefix", &s.envelope_prefix),
                ("body_prefix", &s.body_prefix),
            ] {
                let ncname = prefix
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && prefix
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
                if !ncname
                    || matches!(prefix.as_str(), "xsi" | "sb")
                    || prefix.to_ascii_lowercase().starts_with("xml")
                {
                    return Err(self.err(
                        format!("{key}.{k}"),
                        format!("'{prefix}' is not a usable namespace prefix (letters, digits, '_', '-', '.'; not xsi, sb or xml...)"),
                    ));
                }
            }
            if s.envelope_prefix == s.body_prefix {
                return Err(self.err(
                    format!("{key}.body_prefix"),
                    "must differ from envelope_prefix",
                ));
            }
            if !paths.insert(s.path.trim_end_matches('/')) {
                return Err(self.err(
                    format!("{key}.path"),
                    "another service (or the XML-RPC door) has this path",
                ));
            }
            if s.name.is_empty() || s.name.contains('.') || !names.insert(s.name.as_str()) {
                return Err(self.err(
                    format!("{key}.name"),
                    "must be unique, non-empty and without '.' (XML-RPC methods are <service>.<operation>)",
                ));
            }
            if s.protocol != "soap" {
                return Err(self.err(
                    format!("{key}.protocol"),
                    format!("unknown protocol '{}' (supported: soap)", s.protocol),
                ));
            }
            if !raw.backends.contains_key(&s.backend) {
                return Err(self.err(
                    format!("{key}.backend"),
                    format!("no [backends.{}] is defined", s.backend),
                ));
            }
            if let Some(p) = &s.profile
                && !raw.profiles.contains_key(p)
            {
                return Err(self.err(
                    format!("{key}.profile"),
                    format!("no [profiles.{p}] is defined"),
                ));
            }
            let Some(set) = raw.mappings.get(&s.mappings) else {
                return Err(self.err(
                    format!("{key}.mappings"),
                    format!("no [mappings.{}] is defined", s.mappings),
                ));
            };
            for (op, m) in set {
                if let Some(b) = &m.backend
                    && !raw.backends.contains_key(b)
                {
                    return Err(self.err(
                        format!("mappings.{}.{op}.backend", s.mappings),
                        format!("no [backends.{b}] is defined"),
                    ));
                }
                if m.path.is_none() && m.stock.is_none() {
                    return Err(self.err(
                        format!("mappings.{}.{op}.path", s.mappings),
                        "is required (unless the operation is a stock operation)",
                    ));
                }
                if m.method.parse::<http::Method>().is_err() {
                    return Err(self.err(
                        format!("mappings.{}.{op}.method", s.mappings),
                        format!("'{}' is not an HTTP method", m.method),
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn public_url(&self) -> String {
        self.raw
            .server
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.raw.server.listen))
            .trim_end_matches('/')
            .to_string()
    }
}

/// Parses `+03:00` / `-05:30` / `Z` into a chrono offset.
pub fn parse_offset(s: &str) -> Option<chrono::FixedOffset> {
    if s.eq_ignore_ascii_case("z") || s == "UTC" {
        return chrono::FixedOffset::east_opt(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    let h: i32 = h.parse().ok()?;
    let m: i32 = m.parse().ok()?;
    if h > 23 || m > 59 {
        return None;
    }
    chrono::FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("/etc/sb/test.toml"))
    }

    #[test]
    fn unknown_keys_are_reported_with_file_and_line() {
        let err = load("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n").unwrap_err();
        assert_eq!(err.file, "/etc/sb/test.toml");
        assert_eq!(err.key, "line 3");
        assert!(err.reason.contains("lisen"), "{err}");
    }

    #[test]
    fn references_to_missing_backends_are_reported_with_their_key() {
        let err = load(
            r#"
[mappings.m.op]
path = "/x"
[[services]]
name = "S"
path = "/s"
wsdl = "s.wsdl"
backend = "nope"
mappings = "m"
"#,
        )
        .unwrap_err();
        assert_eq!(err.key, "services[0] (S).backend");
        assert!(err.reason.contains("[backends.nope]"));
    }

    #[test]
    fn secrets_come_from_the_environment() {
        let cfg = load("").unwrap();
        let missing = SecretSource::Env {
            env: "SOAPBRIDGE_TEST_SURELY_UNSET".into(),
        };
        let err = cfg
            .secret("profiles.p.accounts[0].secret", &missing)
            .unwrap_err();
        assert!(err.reason.contains("SOAPBRIDGE_TEST_SURELY_UNSET"));
        let path = SecretSource::Env { env: "PATH".into() };
        assert!(!cfg.secret("k", &path).unwrap().is_empty());
    }

    #[test]
    fn accept_any_time_requires_reuse_allowed() {
        let err = load(
            r#"
[profiles.p]
kind = "signed"
[[profiles.p.accounts]]
api_key = "k"
secret = "s"
role_user = "u"
role_password = "p"
accept_any_time = true
"#,
        )
        .unwrap_err();
        assert_eq!(err.key, "profiles.p.accounts[0].accept_any_time");
    }

    #[test]
    fn offsets_parse() {
        assert_eq!(parse_offset("+03:00").unwrap().local_minus_utc(), 10800);
        assert_eq!(parse_offset("-05:30").unwrap().local_minus_utc(), -19800);
        assert!(parse_offset("03:00").is_none());
    }
}
