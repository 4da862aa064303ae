//! Every default of the configuration, in one place: what a key left out means. `compile`
//! applies them; README's configuration section lists the same values.

use std::time::Duration;

// [server]
pub const LISTEN: &str = "127.0.0.1:8080";
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
pub const MAX_DEPTH: usize = 64;
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
pub const MAX_CONNECTIONS: usize = 10_000;
/// Bytes of request bodies longer than 64 KiB that are held at once, across all requests.
pub const MAX_BODY_BYTES_IN_FLIGHT: usize = 256 * 1024 * 1024;
/// A SOAP answer whose backend JSON is this large or larger is sent while it is written.
pub const STREAM_ANSWERS_FROM_BYTES: usize = 512 * 1024;
/// The unread rest of a request body read away before answering, at most.
pub const DRAIN_MAX_BYTES: u64 = 128 * 1024 * 1024;

// [xmlrpc]
pub const XMLRPC_ENABLED: bool = true;
pub const XMLRPC_PATH: &str = "/RPC2";
/// Where the operator page is, when `[ops]` is configured.
pub const OPS_PATH: &str = "/_";
pub const OPS_REALM: &str = "soapbridge operators";

// [backends.X]
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const BACKEND_TIMEOUT: Duration = Duration::from_secs(10);
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
pub const MAX_URL_BYTES: usize = 8 * 1024;
/// Calls in flight per backend.
pub const MAX_IN_FLIGHT: usize = 256;
/// Attempts per idempotent call (one retry).
pub const RETRY_ATTEMPTS: u32 = 2;
pub const RETRY_BACKOFF: Duration = Duration::from_millis(50);
pub const RETRY_MAX_BACKOFF: Duration = Duration::from_secs(1);
pub const RETRY_BUDGET_PERCENT: u32 = 20;
/// Consecutive failures that open a backend's circuit breaker.
pub const BREAKER_FAILURES: u32 = 5;
pub const BREAKER_OPEN: Duration = Duration::from_secs(10);
pub const ERROR_CODE: &str = "$.error.code";
pub const ERROR_MESSAGE: &str = "$.error.message";
// [backends.X.auth]
pub const SESSION_METHOD: &str = "POST";
pub const SESSION_EXPIRED: [u16; 2] = [419, 401];
pub const REFRESH_MARGIN: Duration = Duration::from_secs(30);

// [profiles.X] (signed)
pub const TIME_WINDOW_SECS: u64 = 300;
pub const DEFAULT_LANG: &str = "tr";
pub const REALM: &str = "soapbridge";
pub const UTC_OFFSET: &str = "+03:00";
pub const RESULT_ELEMENT: &str = "return";

// [mappings.S.O]
pub const METHOD: &str = "POST";
/// The whole backend answer is the result.
pub const RESPONSE: &str = "$";
pub const MAX_PAGES: usize = 1000;
/// A batched body is itself the list.
pub const BATCH_ITEMS: &str = "$";

// [[services]]
pub const ENVELOPE_PREFIX: &str = "env";
pub const BODY_PREFIX: &str = "ns0";

// [store]
/// Relative to the configuration file.
pub const STORE_URL: &str = "sqlite:var/soapbridge.db";
pub const STORE_SCHEMA: &str = "soapbridge";

// [stock]
pub const STOCK_WORKERS: usize = 4;
pub const STOCK_MAX_ATTEMPTS: i64 = 8;
pub const STOCK_LEASE_MS: i64 = 30_000;
pub const STOCK_POLL_INTERVAL_MS: i64 = 250;
pub const STOCK_RETRY_BASE_MS: i64 = 200;
pub const STOCK_RETRY_MAX_MS: i64 = 30_000;

// [winstrom]
pub const WINSTROM_PATH: &str = "/c";
pub const MAX_RECORDS: usize = 1000;
pub const MAX_MATCHES: usize = 5_000;
pub const MAX_FILTER_TERMS: usize = 1_000;
pub const MAX_FILTER_NODES: usize = 10_000;
/// `now()` in filters, and dates, are in Flexi's (Czech) time.
pub const WINSTROM_UTC_OFFSET_SECS: i32 = 3600;

/// Shadow mode: calls to the legacy server in flight at most, per service.
pub const SHADOW_MAX_IN_FLIGHT: usize = 16;
/// Shadow mode: how long the legacy server has.
pub const SHADOW_TIMEOUT_MS: u64 = 10_000;
