//! The compiled configuration: every value typed, every default applied, every reference
//! resolved, every template and WSDL compiled. Nothing here has done I/O towards the outside
//! world: [`crate::app::App::start`] turns a plan into a running bridge (backend clients, the
//! store, workers).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use serde_json::Value;

use crate::backend::ErrorShape;
use crate::backend::auth::AuthPlan;
use crate::error::Lang;
use crate::mapping::{PathExpr, PathTemplate, Template};
use crate::protocol::wql;
use crate::schema::ServiceDescription;

pub use super::raw::{FieldType, I8Policy, ReusePolicy, StockAction, StockList};

/// A whole configuration, compiled.
#[derive(Debug)]
pub struct Plan {
    pub server: ServerPlan,
    /// Present when something needs it (stock sync, signed profiles) or it is configured.
    pub store: Option<StorePlan>,
    pub backends: BTreeMap<String, Arc<BackendPlan>>,
    pub profiles: BTreeMap<String, ProfilePlan>,
    /// Sorted by path.
    pub services: Vec<ServicePlan>,
    pub xmlrpc: Option<XmlRpcPlan>,
    pub winstrom: Option<WinstromPlan>,
    pub stock: Option<StockPlan>,
    pub ops: Option<OpsPlan>,
}

/// The operator page.
#[derive(Debug)]
pub struct OpsPlan {
    /// Without a trailing '/'.
    pub path: String,
    pub users: BasicPlan,
}

#[derive(Debug, Clone)]
pub struct ServerPlan {
    pub listen: SocketAddr,
    /// Without a trailing '/'.
    pub public_url: String,
    pub limits: Limits,
    pub header_timeout: Duration,
    pub grace: Duration,
    pub max_connections: usize,
    /// Bytes of large request bodies held at once (`server.max_body_bytes_in_flight`);
    /// `None`: no such bound.
    pub body_budget: Option<usize>,
    /// Calls are counted for `/metrics` and the operator page.
    pub metrics: bool,
}

/// What one request may cost: read by every door through the pipeline.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body: usize,
    pub max_depth: usize,
    pub body_timeout: Duration,
    pub request_timeout: Duration,
    /// The size of a backend's JSON answer from which a SOAP answer is sent while it is
    /// written; `None`: never.
    pub stream_answers_from: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct StorePlan {
    /// `sqlite:<absolute or config-relative path>` or `postgres://...` (holds a secret).
    pub url: String,
    pub schema: String,
}

/// How a backend is called.
#[derive(Debug)]
pub struct BackendPlan {
    pub name: String,
    /// Without a trailing '/'.
    pub base_url: String,
    pub(crate) connect_timeout: Duration,
    /// Connect, send and read the whole answer.
    pub(crate) timeout: Duration,
    pub(crate) max_response_bytes: usize,
    pub(crate) max_url_bytes: usize,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) errors: ErrorShape,
    pub(crate) tls: Arc<rustls::ClientConfig>,
    /// The PEM of `ca_file`, to tell whether a reload changed it.
    pub(crate) ca_pem: Option<String>,
    pub(crate) auth: AuthPlan,
    /// `$vars` in templates.
    pub(crate) vars: Value,
    pub(crate) resilience: crate::backend::ResiliencePlan,
}

impl BackendPlan {
    /// Whether a client made from `other` would be this one's twin: a reload keeps the client
    /// (and its login) then.
    pub(crate) fn same_as(&self, other: &BackendPlan) -> bool {
        self.name == other.name
            && self.base_url == other.base_url
            && self.connect_timeout == other.connect_timeout
            && self.timeout == other.timeout
            && self.max_response_bytes == other.max_response_bytes
            && self.max_url_bytes == other.max_url_bytes
            && self.headers == other.headers
            && self.errors == other.errors
            && self.ca_pem == other.ca_pem
            && self.auth == other.auth
            && self.vars == other.vars
            && self.resilience == other.resilience
    }
}

#[derive(Debug)]
pub enum ProfilePlan {
    Signed(SignedPlan),
    Basic(BasicPlan),
}

impl ProfilePlan {
    pub fn name(&self) -> &str {
        match self {
            ProfilePlan::Signed(p) => &p.name,
            ProfilePlan::Basic(p) => &p.name,
        }
    }
}

#[derive(Debug)]
pub struct SignedPlan {
    pub name: String,
    pub window_ms: i64,
    pub default_lang: Lang,
    pub realm: String,
    pub offset: chrono::FixedOffset,
    pub result_element: String,
    pub accounts: Vec<AccountPlan>,
    pub backend_errors: BTreeMap<String, super::raw::ErrorText>,
    pub(crate) rate_limit: Option<crate::profile::RateLimit>,
}

pub struct AccountPlan {
    pub api_key: String,
    pub secret: String,
    pub role_user: String,
    pub role_password: String,
    pub reuse: ReusePolicy,
    pub any_time: bool,
}

impl std::fmt::Debug for AccountPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountPlan")
            .field("api_key", &self.api_key)
            .field("role_user", &self.role_user)
            .finish_non_exhaustive()
    }
}

pub struct BasicPlan {
    pub name: String,
    pub realm: String,
    /// (user, password)
    pub users: Vec<(String, String)>,
    pub(crate) rate_limit: Option<crate::profile::RateLimit>,
}

impl std::fmt::Debug for BasicPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicPlan")
            .field("name", &self.name)
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

/// A SOAP service (also served over XML-RPC).
#[derive(Debug)]
pub struct ServicePlan {
    pub name: String,
    /// Without a trailing '/'.
    pub path: String,
    pub desc: Arc<ServiceDescription>,
    /// The service's URL as clients see it.
    pub endpoint: String,
    /// The WSDL as served (with the bridge's address).
    pub wsdl: Bytes,
    pub profile: Option<String>,
    /// One per operation, in the order of `desc.operations`.
    pub operations: Vec<Action>,
    pub env_prefix: String,
    pub body_prefix: String,
    pub strict_nil: bool,
    pub shadow: Option<ShadowPlan>,
}

/// Shadow mode of a service.
#[derive(Debug, Clone)]
pub struct ShadowPlan {
    pub url: http::Uri,
    /// Per operation (in `desc.operations` order): whether it is shadowed.
    pub operations: Vec<bool>,
    /// Of a million calls, how many are shadowed.
    pub per_million: u32,
    pub max_in_flight: usize,
    pub timeout: std::time::Duration,
    /// Names not compared (`ignore`), elements whose children may come in any order (the
    /// WSDL's `xs:all`).
    pub rules: crate::protocol::compare::Rules,
}

/// What an operation does.
#[derive(Debug)]
pub enum Action {
    /// A backend call.
    Backend(Arc<RoutePlan>),
    /// Handled by the stock sync.
    Stock(StockCall),
}

/// A stock-service operation: what it asks of the stock sync, its input and its result.
#[derive(Debug)]
pub struct StockCall {
    pub op: StockOp,
    /// Renders the stock sync's input from the call.
    pub body: Option<Template>,
    /// Shapes the stock sync's answer into the result.
    pub response: Template,
}

/// What a stock-service operation asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StockOp {
    Submit {
        action: StockAction,
        list: StockList,
    },
    Warehouses,
    Batches,
    Batch,
    Reports,
}

/// One backend call, compiled from its mapping.
#[derive(Debug)]
pub struct RoutePlan {
    pub backend: String,
    pub method: Method,
    pub path: PathTemplate,
    pub query: Vec<(String, Template)>,
    pub headers: Vec<(HeaderName, Template)>,
    pub body: Option<Template>,
    pub response: Template,
    pub pages: Option<PagesPlan>,
    pub batch: Option<BatchPlan>,
    /// Sent again after a failure that may have reached the backend.
    pub retry: bool,
}

impl RoutePlan {
    /// Whether the request sent to the backend reads the input's member `key` (so that the
    /// backend is told what the caller asked for, e.g. `$.order`).
    pub fn reads(&self, key: &str) -> bool {
        self.path.reads(key)
            || self.query.iter().any(|(_, t)| t.reads(key))
            || self.headers.iter().any(|(_, t)| t.reads(key))
            || self.body.as_ref().is_some_and(|t| t.reads(key))
    }
}

#[derive(Debug)]
pub struct PagesPlan {
    pub next: PathExpr,
    pub items: PathExpr,
    pub max: usize,
}

#[derive(Debug)]
pub struct BatchPlan {
    pub size: usize,
    pub items: PathExpr,
    pub item_errors: Option<PathExpr>,
    pub resend_valid: bool,
}

#[derive(Debug, Clone)]
pub struct XmlRpcPlan {
    /// Without a trailing '/'.
    pub path: String,
    pub i8: I8Policy,
}

/// The winstrom door.
#[derive(Debug)]
pub struct WinstromPlan {
    /// Without a trailing '/'.
    pub prefix: String,
    pub max_records: usize,
    pub max_matches: usize,
    pub filter_limits: wql::Limits,
    pub offset: chrono::FixedOffset,
    pub companies: BTreeMap<String, CompanyPlan>,
    pub evidences: BTreeMap<String, Arc<EvidencePlan>>,
}

#[derive(Debug)]
pub struct CompanyPlan {
    pub backend: String,
    pub tenant: String,
    /// A basic profile.
    pub profile: String,
}

/// One evidence: its properties, and its routes (bound to each company's backend at start).
#[derive(Debug)]
pub struct EvidencePlan {
    pub name: String,
    pub class: String,
    pub code_field: Option<String>,
    /// The properties `detail=summary` gives, in field order.
    pub summary: Vec<String>,
    pub fields: Vec<FieldPlan>,
    pub list: Arc<RoutePlan>,
    /// Whether the list route sends the backend the caller's `order` (`$.order`).
    pub sortable: bool,
    pub get: Option<Arc<RoutePlan>>,
    pub create: Option<Arc<RoutePlan>>,
    pub update: Option<Arc<RoutePlan>>,
    /// In name order (the order Flexi lists them in its message).
    pub actions: BTreeMap<String, Arc<RoutePlan>>,
}

#[derive(Debug)]
pub struct FieldPlan {
    pub name: String,
    pub title: String,
    pub ty: FieldType,
    pub backend: String,
    /// Structured-filter operators the backend applies to this field.
    pub ops: Vec<&'static str>,
    pub read_only: bool,
}

/// The stock sync.
#[derive(Debug, Clone)]
pub struct StockPlan {
    pub backend: String,
    pub warehouses: Vec<String>,
    pub workers: usize,
    pub max_attempts: i64,
    pub lease_ms: i64,
    pub poll_interval_ms: i64,
    pub retry_base_ms: i64,
    pub retry_max_ms: i64,
    pub send: Arc<RoutePlan>,
    pub poll: Arc<RoutePlan>,
}
