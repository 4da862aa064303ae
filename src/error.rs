//! Every failure the bridge can answer with, who is at fault for it ([`Party`]), whether doing
//! it again could help ([`Retry`]), and what caused it (`source()`, for logs).
//!
//! Why a message could not be read is said by the protocol that reads it
//! (`protocol::xml::ReadError`, `protocol::soap::SoapError`, `protocol::xmlrpc::XmlRpcError`,
//! `protocol::winstrom::DocumentError`); [`Error`] wraps them. Each front door turns an `Error`
//! into its wire format, and chooses the HTTP status, in one place (see ARCHITECTURE.md).

/// Who caused a failure. Decides SOAP `Client`/`Sender` versus `Server`/`Receiver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    Caller,
    Backend,
    Bridge,
}

/// Language of a human-readable message (the signed profile's `lang` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    Tr,
    #[default]
    En,
}

impl Lang {
    pub fn parse(s: &str) -> Option<Lang> {
        let s = s.trim();
        let is = |names: &[&str]| names.iter().any(|n| s.eq_ignore_ascii_case(n));
        if is(&["tr", "tr-tr", "turkish"]) {
            Some(Lang::Tr)
        } else if is(&["en", "en-us", "en-gb", "english"]) {
            Some(Lang::En)
        } else {
            None
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Tr => "tr",
            Lang::En => "en",
        }
    }
}

pub(crate) use crate::protocol::FieldError;
use crate::protocol::soap::SoapError;
use crate::protocol::winstrom::DocumentError;
use crate::protocol::xml::ReadError;
use crate::protocol::xmlrpc::XmlRpcError;

/// Whether doing a failed call again could succeed without doing harm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The request never reached the backend: sending it again is safe.
    Safe,
    /// It may have reached the backend: only a call that is idempotent may be sent again.
    IfIdempotent,
    /// The same call would fail the same way.
    Never,
}

/// What caused a failure, kept for logs (`source()`); never shown to callers as such.
pub(crate) type Cause = Box<dyn std::error::Error + Send + Sync>;

/// The backend said no (a 4xx answer with an error body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub fields: Vec<FieldError>,
    /// The refusal's JSON body (null when it had none), for per-item errors of a batch.
    /// Never written to logs or to the caller as a whole.
    pub body: serde_json::Value,
    /// The number configured for its code (`errors.classify`), for XML-RPC faults.
    pub number: Option<i32>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ---- the caller's fault: the message itself -------------------------------------------
    #[error("request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("request body was not received in time")]
    BodyTimeout,
    #[error("Content-Encoding '{0}' is not taken; send the body as it is, or as gzip or deflate")]
    UnsupportedContentEncoding(String),
    #[error("the {coding} request body cannot be decompressed: {reason}")]
    BadContentEncoding {
        coding: &'static str,
        reason: String,
    },
    /// An XML message that cannot be read or does not fit its schema.
    #[error(transparent)]
    Read(ReadError),
    #[error(transparent)]
    Soap(SoapError),
    #[error(transparent)]
    XmlRpc(XmlRpcError),
    #[error(transparent)]
    Winstrom(DocumentError),
    #[error("HTTP method {0} is not allowed here; use POST (or GET with ?wsdl)")]
    MethodNotAllowed(String),
    #[error("unknown method '{name}'; {hint}")]
    UnknownMethod { name: String, hint: String },
    #[error("no service at path '{0}'")]
    NoSuchService(String),
    #[error(
        "the request holds more than one backend call can carry: it would need a backend URL of {needed} bytes, and at most {limit} are accepted; send fewer values per call"
    )]
    TooLargeForBackend { needed: usize, limit: usize },

    // ---- the caller's fault: who they are -------------------------------------------------
    #[error("HTTP Basic authentication failed")]
    Unauthorized,
    #[error("unknown apiKey")]
    ApiKeyUnknown,
    #[error("the apiKey does not belong to the authenticated role user")]
    ApiKeyUserMismatch,
    #[error("invalid signature")]
    SignatureInvalid,
    #[error("request time {time} is older than the accepted window of {window_secs} s")]
    TimeExpired { time: i64, window_secs: u64 },
    #[error(
        "request time {time} is further in the future than the accepted window of {window_secs} s"
    )]
    TimeInFuture { time: i64, window_secs: u64 },
    #[error("this (apiKey, sign, time) was already used")]
    SignatureReused,
    #[error(
        "more than {limit} calls in {per_secs} s from this caller; try again in {retry_after_s} s"
    )]
    RateLimited {
        limit: u32,
        per_secs: u64,
        retry_after_s: u64,
    },

    // ---- the backend's fault --------------------------------------------------------------
    #[error("backend refused the call ({}): {}", .0.status, .0.message)]
    BackendRefused(Refusal),
    #[error(
        "backend '{backend}' {}: {}",
        if *sent { "failed after the request may have reached it" } else { "is unreachable" },
        chain(cause.as_ref())
    )]
    BackendUnavailable {
        backend: String,
        /// Whether the request may have reached the backend (the connection was made).
        sent: bool,
        #[source]
        cause: Cause,
    },
    #[error("backend '{backend}' did not answer within {timeout_ms} ms")]
    BackendTimeout { backend: String, timeout_ms: u64 },
    #[error("backend '{backend}' failed with HTTP {status}")]
    BackendStatus {
        backend: String,
        status: u16,
        message: String,
    },
    #[error("backend '{backend}' answered with an unexpected body: {reason}")]
    BackendBadResponse { backend: String, reason: String },
    #[error("backend '{backend}' refused the bridge's session even after a new login: {message}")]
    BackendSessionExpired { backend: String, message: String },
    #[error(
        "backend '{backend}' is failing: calls are not sent to it for {retry_after_s} s more (circuit breaker open)"
    )]
    BackendCircuitOpen { backend: String, retry_after_s: u64 },
    #[error(
        "backend '{backend}' has {limit} calls in flight, the most it is given, and none ended within {waited_ms} ms"
    )]
    BackendBusy {
        backend: String,
        limit: usize,
        waited_ms: u64,
    },

    // ---- ours ------------------------------------------------------------------------------
    #[error(
        "the bridge holds as many large request bodies as it may at once ({limit} bytes, server.max_body_bytes_in_flight); send the call again shortly"
    )]
    BodiesInFlight { limit: usize },
    #[error("the request took longer than the limit of {limit_ms} ms")]
    RequestTimeout { limit_ms: u64 },
    /// Call `n` (from 1) of a multicall's `of`, not started: the request's time was nearly up.
    #[error(
        "not called: the request's time limit of {limit_ms} ms was nearly up before call {n} of {of}; send it and the calls after it again"
    )]
    NotCalled { n: usize, of: usize, limit_ms: u64 },
    /// A backend call (a multicall's call, a batch's chunk) whose backend had not answered when
    /// the request's time was nearly up: what was done before it is answered.
    #[error(
        "the backend had not answered this call when the request's time limit of {limit_ms} ms was nearly up; it may or may not have done it"
    )]
    CutOff { limit_ms: u64 },
    #[error("internal error: {0}")]
    Internal(String),
    #[error("the bridge's store is not available: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// An error and its causes, as one line: `a: b: c`.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let text = s.to_string();
        // Some errors repeat their cause in their own text; say it once.
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = s.source();
    }
    out
}

impl From<ReadError> for Error {
    fn from(e: ReadError) -> Self {
        Error::Read(e)
    }
}

impl From<SoapError> for Error {
    fn from(e: SoapError) -> Self {
        match e {
            SoapError::Read(r) => Error::Read(r),
            other => Error::Soap(other),
        }
    }
}

impl From<XmlRpcError> for Error {
    fn from(e: XmlRpcError) -> Self {
        match e {
            XmlRpcError::Read(r) => Error::Read(r),
            other => Error::XmlRpc(other),
        }
    }
}

impl From<DocumentError> for Error {
    fn from(e: DocumentError) -> Self {
        match e {
            DocumentError::Read(r) => Error::Read(r),
            other => Error::Winstrom(other),
        }
    }
}

impl Error {
    pub fn party(&self) -> Party {
        use Error::*;
        match self {
            // A refusal of what the caller asked (validation, not found, conflict) is the
            // caller's to fix; refusals of the bridge's own credentials or rate are not.
            BackendRefused(r) if !matches!(r.status, 401 | 403 | 407 | 408 | 429) => Party::Caller,
            BackendRefused(_)
            | BackendUnavailable { .. }
            | BackendTimeout { .. }
            | BackendStatus { .. }
            | BackendBadResponse { .. }
            | BackendSessionExpired { .. }
            | BackendCircuitOpen { .. }
            | BackendBusy { .. } => Party::Backend,
            BodiesInFlight { .. }
            | RequestTimeout { .. }
            | NotCalled { .. }
            | CutOff { .. }
            | Internal(_)
            | Store(_) => Party::Bridge,
            _ => Party::Caller,
        }
    }

    /// Stable, machine-readable code carried in fault details and documented in README.
    pub fn code(&self) -> &'static str {
        use Error::*;
        match self {
            BodyTooLarge { .. } => "BODY_TOO_LARGE",
            BodyTimeout => "BODY_TIMEOUT",
            UnsupportedContentEncoding(_) => "UNSUPPORTED_CONTENT_ENCODING",
            BadContentEncoding { .. } => "BAD_CONTENT_ENCODING",
            Read(e) => e.code(),
            Soap(e) => e.code(),
            XmlRpc(e) => e.code(),
            Winstrom(e) => e.code(),
            MethodNotAllowed(_) => "METHOD_NOT_ALLOWED",
            UnknownMethod { .. } => "UNKNOWN_METHOD",
            NoSuchService(_) => "NO_SUCH_SERVICE",
            TooLargeForBackend { .. } => "REQUEST_TOO_LARGE_FOR_BACKEND",
            Unauthorized => "UNAUTHORIZED",
            ApiKeyUnknown => "APIKEY_UNKNOWN",
            ApiKeyUserMismatch => "APIKEY_USER_MISMATCH",
            SignatureInvalid => "SIGNATURE_INVALID",
            TimeExpired { .. } => "TIME_EXPIRED",
            TimeInFuture { .. } => "TIME_IN_FUTURE",
            SignatureReused => "SIGNATURE_REUSED",
            BackendRefused(_) => "BACKEND_REFUSED",
            BackendUnavailable { .. } => "BACKEND_UNAVAILABLE",
            BackendTimeout { .. } => "BACKEND_TIMEOUT",
            BackendStatus { .. } => "BACKEND_ERROR",
            BackendBadResponse { .. } => "BACKEND_BAD_RESPONSE",
            BackendSessionExpired { .. } => "BACKEND_SESSION_EXPIRED",
            BackendCircuitOpen { .. } => "BACKEND_CIRCUIT_OPEN",
            BackendBusy { .. } => "BACKEND_BUSY",
            RateLimited { .. } => "RATE_LIMITED",
            RequestTimeout { .. } | NotCalled { .. } | CutOff { .. } => "REQUEST_TIMEOUT",
            BodiesInFlight { .. } => "BRIDGE_BUSY",
            Internal(_) => "INTERNAL",
            Store(_) => "STORE_UNAVAILABLE",
        }
    }

    /// Whether the same call, made again, could succeed and may be made again: see [`Retry`].
    pub fn retry(&self) -> Retry {
        use Error::*;
        match self {
            BackendUnavailable { sent: false, .. } | NotCalled { .. } => Retry::Safe,
            BackendUnavailable { sent: true, .. }
            | BackendTimeout { .. }
            | BackendStatus { .. }
            | BackendBadResponse { .. } => Retry::IfIdempotent,
            // Credentials are renewed and the call repeated by the backend client itself.
            BackendSessionExpired { .. } => Retry::Never,
            // Nothing was sent; but sending again at once would meet the same state.
            BackendCircuitOpen { .. }
            | BackendBusy { .. }
            | RateLimited { .. }
            | BodiesInFlight { .. } => Retry::Never,
            BackendRefused(r) if matches!(r.status, 408 | 429) => Retry::IfIdempotent,
            Store(_) | RequestTimeout { .. } | CutOff { .. } => Retry::IfIdempotent,
            _ => Retry::Never,
        }
    }

    /// When the same call could be made again, in seconds, where that is known: the doors send
    /// it as `Retry-After` with their 429 and 503 answers.
    pub fn retry_after_s(&self) -> Option<u64> {
        use Error::*;
        match self {
            RateLimited { retry_after_s, .. } | BackendCircuitOpen { retry_after_s, .. } => {
                Some((*retry_after_s).max(1))
            }
            BackendBusy { .. } | BodiesInFlight { .. } => Some(1),
            _ => None,
        }
    }

    /// Errors that the signed profile reports inside a normal response as
    /// `ackCode=failure`, as the legacy service did; all others become protocol faults.
    pub fn is_call_failure(&self) -> bool {
        use Error::*;
        matches!(
            self,
            ApiKeyUnknown
                | ApiKeyUserMismatch
                | SignatureInvalid
                | TimeExpired { .. }
                | TimeInFuture { .. }
                | SignatureReused
                | RateLimited { .. }
                | BackendRefused(_)
        )
    }

    /// The bridge's stable number for errors of the call, where a wire format needs a number
    /// (the signed profile's `errorId`, XML-RPC's `faultCode`). Backend refusals are 2000
    /// unless a profile's `backend_errors` gives their code its own id. `None` for errors that
    /// each protocol numbers itself (malformed messages, unknown methods, bad parameters).
    pub fn number(&self) -> Option<i32> {
        use Error::*;
        Some(match self {
            Unauthorized => 1000,
            SignatureInvalid => 1001,
            ApiKeyUnknown => 1002,
            TimeExpired { .. } => 1003,
            TimeInFuture { .. } => 1004,
            SignatureReused => 1005,
            ApiKeyUserMismatch => 1006,
            RateLimited { .. } => 1007,
            BackendRefused(r) => r.number.unwrap_or(2000),
            BackendUnavailable { .. } => 3001,
            BackendTimeout { .. } => 3002,
            BackendStatus { .. } => 3003,
            BackendBadResponse { .. } => 3004,
            RequestTimeout { .. } | NotCalled { .. } | CutOff { .. } => 3005,
            BackendSessionExpired { .. } => 3006,
            Store(_) => 3007,
            BackendCircuitOpen { .. } => 3008,
            BackendBusy { .. } => 3009,
            BodiesInFlight { .. } => 3010,
            _ => return None,
        })
    }

    /// Field errors reported by the backend, if any.
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            Error::BackendRefused(r) => &r.fields,
            _ => &[],
        }
    }

    /// The backend's own code for a refusal (`record_not_found`, `http_404`, ...).
    pub fn backend_code(&self) -> Option<&str> {
        match self {
            Error::BackendRefused(r) => Some(&r.code),
            _ => None,
        }
    }

    /// HTTP status the backend answered with, if this error comes from a backend answer.
    pub fn backend_status(&self) -> Option<u16> {
        match self {
            Error::BackendRefused(r) => Some(r.status),
            Error::BackendStatus { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Human-readable message in the caller's language. Protocol-level faults are in English
    /// (their wording is in [`fmt::Display`]); the failures that legacy clients show to users
    /// have a Turkish text as well.
    pub fn message(&self, lang: Lang) -> String {
        use Error::*;
        if lang == Lang::En {
            return match self {
                TimeExpired { time, window_secs } => format!(
                    "The request time {time} ({}) is too old: calls are accepted within {} of the server clock. Compute time from the current clock in milliseconds.",
                    describe_millis(*time),
                    describe_window(*window_secs, lang)
                ),
                TimeInFuture { time, window_secs } => format!(
                    "The request time {time} ({}) is in the future: calls are accepted within {} of the server clock. Check the client's clock.",
                    describe_millis(*time),
                    describe_window(*window_secs, lang)
                ),
                SignatureInvalid => "The request signature (sign) is invalid: sign must be md5(apiKey + secretKey + time) in hex.".into(),
                ApiKeyUnknown => "The apiKey is not recognised.".into(),
                ApiKeyUserMismatch => "The apiKey does not belong to the role user of the HTTP Basic credentials.".into(),
                SignatureReused => "This signature (apiKey, sign, time) was already used; sign every call with a new time.".into(),
                RateLimited { limit, per_secs, retry_after_s } => format!("Call limit exceeded: at most {limit} calls per {per_secs} s are accepted from this account. Try again in {retry_after_s} s."),
                BackendRefused(r) => refusal_text(r),
                other => other.to_string(),
            };
        }
        match self {
            TimeExpired { time, window_secs } => format!(
                "İstek zamanı {time} ({}) çok eski: istekler sunucu saatinden en fazla {} farkla kabul edilir. time değerini o anki saatten milisaniye olarak hesaplayın.",
                describe_millis(*time),
                describe_window(*window_secs, lang)
            ),
            TimeInFuture { time, window_secs } => format!(
                "İstek zamanı {time} ({}) ileri bir tarihte: istekler sunucu saatinden en fazla {} farkla kabul edilir. İstemcinin saatini kontrol edin.",
                describe_millis(*time),
                describe_window(*window_secs, lang)
            ),
            SignatureInvalid => "İstek imzası (sign) geçersiz: sign, md5(apiKey + secretKey + time) değerinin hex karşılığı olmalıdır.".into(),
            ApiKeyUnknown => "Geçersiz apiKey: bu anahtar tanımlı değil.".into(),
            ApiKeyUserMismatch => "apiKey, HTTP Basic ile doğrulanan rol kullanıcısına ait değil.".into(),
            SignatureReused => "Bu imza (apiKey, sign, time) daha önce kullanıldı; her çağrıyı yeni bir time ile imzalayın.".into(),
            RateLimited { limit, per_secs, retry_after_s } => format!("Çağrı sınırı aşıldı: bu hesaptan {per_secs} saniyede en fazla {limit} çağrı kabul edilir. {retry_after_s} saniye sonra tekrar deneyin."),
            BackendRefused(r) => format!("İşlem reddedildi: {}", refusal_text(r)),
            other => other.to_string(),
        }
    }
}

fn refusal_text(r: &Refusal) -> String {
    let fields: Vec<String> = r.fields.iter().map(|f| f.to_string()).collect();
    // A backend whose message is its one field's error says it once, naming the field.
    if let [f] = r.fields.as_slice()
        && (f.message == r.message || fields[0] == r.message)
    {
        fields[0].clone()
    } else if fields.is_empty() {
        r.message.clone()
    } else {
        format!("{} ({})", r.message, fields.join("; "))
    }
}

fn describe_millis(ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        None => "not a valid time".into(),
    }
}

fn describe_window(secs: u64, lang: Lang) -> String {
    match (secs % 60, lang) {
        (0, Lang::En) => format!("{} minute(s)", secs / 60),
        (0, Lang::Tr) => format!("{} dakika", secs / 60),
        (_, Lang::En) => format!("{secs} second(s)"),
        (_, Lang::Tr) => format!("{secs} saniye"),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_refusal_says_its_one_field_once_and_names_every_field_of_several() {
        let field = |field: &str, message: &str| crate::protocol::FieldError {
            field: field.into(),
            code: String::new(),
            message: message.into(),
        };
        let refusal = |message: &str, fields| Refusal {
            status: 400,
            code: String::new(),
            message: message.into(),
            fields,
            body: serde_json::Value::Null,
            number: None,
        };
        let one = refusal(
            "qty: must be positive",
            vec![field("qty", "must be positive")],
        );
        assert_eq!(refusal_text(&one), "qty: must be positive");
        let same = refusal("required", vec![field("a", "required")]);
        assert_eq!(refusal_text(&same), "a: required");
        let two = refusal(
            "required",
            vec![field("a", "required"), field("b", "required")],
        );
        assert_eq!(refusal_text(&two), "required (a: required; b: required)");
    }

    use super::*;

    #[test]
    fn a_language_is_read_in_any_case_and_spelling() {
        for (s, l) in [
            ("tr", Some(Lang::Tr)),
            (" TR-tr ", Some(Lang::Tr)),
            ("Turkish", Some(Lang::Tr)),
            ("en", Some(Lang::En)),
            ("EN-GB", Some(Lang::En)),
            ("english", Some(Lang::En)),
            ("de", None),
            ("", None),
            ("tr-", None),
        ] {
            assert_eq!(Lang::parse(s), l, "{s:?}");
        }
    }

    #[test]
    fn expired_time_message_names_the_time_and_the_window_in_both_languages() {
        let e = Error::TimeExpired {
            time: 1597746714261,
            window_secs: 300,
        };
        let en = e.message(Lang::En);
        assert!(en.contains("1597746714261"), "{en}");
        assert!(en.contains("2020-08-18 10:31:54 UTC"), "{en}");
        assert!(en.contains("5 minute"), "{en}");
        let tr = e.message(Lang::Tr);
        assert!(tr.contains("çok eski") && tr.contains("5 dakika"), "{tr}");
    }

    #[test]
    fn parties_and_call_failures_are_classified() {
        assert_eq!(Error::SignatureInvalid.party(), Party::Caller);
        assert!(Error::SignatureInvalid.is_call_failure());
        let down = Error::BackendUnavailable {
            backend: "b".into(),
            sent: false,
            cause: "connection refused".into(),
        };
        assert_eq!(down.party(), Party::Backend);
        assert!(!down.is_call_failure());
        assert_eq!(Error::Internal("x".into()).party(), Party::Bridge);
    }

    #[test]
    fn causes_are_kept_and_said_and_retries_follow_what_was_sent() {
        #[derive(Debug, thiserror::Error)]
        #[error("tcp connect error")]
        struct Connect(#[source] std::io::Error);
        let down = Error::BackendUnavailable {
            backend: "b".into(),
            sent: false,
            cause: Box::new(Connect(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "Connection refused",
            ))),
        };
        assert_eq!(
            down.to_string(),
            "backend 'b' is unreachable: tcp connect error: Connection refused"
        );
        let source = std::error::Error::source(&down).expect("a cause");
        assert_eq!(source.to_string(), "tcp connect error");
        assert_eq!(down.retry(), Retry::Safe);
        let cut = Error::BackendUnavailable {
            backend: "b".into(),
            sent: true,
            cause: "connection reset".into(),
        };
        assert_eq!(cut.retry(), Retry::IfIdempotent);
        // The request may have been acted on: not worded as if it never arrived.
        assert_eq!(
            cut.to_string(),
            "backend 'b' failed after the request may have reached it: connection reset"
        );
        let slow = Error::BackendTimeout {
            backend: "b".into(),
            timeout_ms: 10,
        };
        assert_eq!(slow.retry(), Retry::IfIdempotent);
        assert_eq!(Error::SignatureInvalid.retry(), Retry::Never);
        let read: Error = ReadError::DtdForbidden.into();
        assert_eq!(read.code(), "DTD_FORBIDDEN");
        assert_eq!(read.party(), Party::Caller);
    }
}
