//! Every failure the bridge can answer with, and who is at fault for it.
//!
//! Errors are classified by [`Party`]: the caller sent something wrong, the backend failed or
//! refused, or the bridge itself broke. They become responses in `app`: `respond_error` hands
//! failures of a decoded call to the profile (`profile::signed::failure`, using
//! [`Error::message`] in the caller's language) and everything else to `fault_response`, the
//! only writer of SOAP faults (`protocol::soap::encode_fault`, using [`Error::code`],
//! [`Error::party`] and the English `Display` text).

use std::fmt;

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
        match s.trim().to_ascii_lowercase().as_str() {
            "tr" | "tr-tr" | "turkish" => Some(Lang::Tr),
            "en" | "en-us" | "en-gb" | "english" => Some(Lang::En),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Tr => "tr",
            Lang::En => "en",
        }
    }
}

/// One field-level complaint reported by a backend.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldError {
    pub field: String,
    pub code: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

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
    #[error("request body encoding: {0}")]
    BadEncoding(String),
    #[error("malformed XML: {0}")]
    MalformedXml(String),
    #[error("DTDs and entity declarations are not accepted")]
    DtdForbidden,
    #[error("XML nesting is deeper than the limit of {limit} levels")]
    TooDeep { limit: usize },
    #[error("the body is not a SOAP envelope: {0}")]
    NotSoap(String),
    #[error("unsupported SOAP envelope namespace '{0}'")]
    VersionMismatch(String),
    #[error("header '{0}' is marked mustUnderstand but is not understood")]
    MustUnderstand(String),
    #[error("unknown operation '{name}' (namespace '{namespace}'); this endpoint serves: {known}")]
    UnknownOperation {
        name: String,
        namespace: String,
        known: String,
    },
    #[error("SOAPAction '{action}' does not match the operation '{operation}' in the body")]
    ActionMismatch { action: String, operation: String },
    #[error("unexpected element '{element}' in '{parent}'")]
    UnexpectedElement { element: String, parent: String },
    #[error("element '{path}' appears more than once but allows only one occurrence")]
    RepeatedElement { path: String },
    #[error("missing required element '{path}'")]
    MissingElement { path: String },
    #[error("invalid value '{value}' for '{path}': expected {expected}")]
    InvalidValue {
        path: String,
        value: String,
        expected: String,
    },
    #[error("'{path}' is nil but the element is not nillable")]
    NotNillable { path: String },
    #[error("HTTP method {0} is not allowed here; use POST (or GET with ?wsdl)")]
    MethodNotAllowed(String),
    #[error("the body is not an XML-RPC methodCall: {0}")]
    NotXmlRpc(String),
    #[error("unknown method '{name}'; {hint}")]
    UnknownMethod { name: String, hint: String },
    #[error("invalid parameters: {0}")]
    InvalidParams(String),
    #[error("{0}")]
    NotWinstrom(String),
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

    // ---- the backend's fault --------------------------------------------------------------
    #[error("backend refused the call ({}): {}", .0.status, .0.message)]
    BackendRefused(Refusal),
    #[error("backend '{backend}' is unreachable: {reason}")]
    BackendUnavailable { backend: String, reason: String },
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

    // ---- ours ------------------------------------------------------------------------------
    #[error("the request took longer than the limit of {limit_ms} ms")]
    RequestTimeout { limit_ms: u64 },
    #[error("internal error: {0}")]
    Internal(String),
    #[error("the bridge's store is not available: {0}")]
    Store(String),
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
            | BackendSessionExpired { .. } => Party::Backend,
            RequestTimeout { .. } | Internal(_) | Store(_) => Party::Bridge,
            _ => Party::Caller,
        }
    }

    /// Stable, machine-readable code carried in fault details and documented in README.
    pub fn code(&self) -> &'static str {
        use Error::*;
        match self {
            BodyTooLarge { .. } => "BODY_TOO_LARGE",
            BodyTimeout => "BODY_TIMEOUT",
            BadEncoding(_) => "BAD_ENCODING",
            MalformedXml(_) => "MALFORMED_XML",
            DtdForbidden => "DTD_FORBIDDEN",
            TooDeep { .. } => "TOO_DEEP",
            NotSoap(_) => "NOT_SOAP",
            VersionMismatch(_) => "VERSION_MISMATCH",
            MustUnderstand(_) => "MUST_UNDERSTAND",
            UnknownOperation { .. } => "UNKNOWN_OPERATION",
            ActionMismatch { .. } => "SOAPACTION_MISMATCH",
            UnexpectedElement { .. } => "UNEXPECTED_ELEMENT",
            RepeatedElement { .. } => "REPEATED_ELEMENT",
            MissingElement { .. } => "MISSING_ELEMENT",
            InvalidValue { .. } => "INVALID_VALUE",
            NotNillable { .. } => "NOT_NILLABLE",
            MethodNotAllowed(_) => "METHOD_NOT_ALLOWED",
            NotXmlRpc(_) => "NOT_XMLRPC",
            UnknownMethod { .. } => "UNKNOWN_METHOD",
            InvalidParams(_) => "INVALID_PARAMS",
            NotWinstrom(_) => "NOT_WINSTROM",
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
            RequestTimeout { .. } => "REQUEST_TIMEOUT",
            Internal(_) => "INTERNAL",
            Store(_) => "STORE_UNAVAILABLE",
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
            BackendRefused(r) => r.number.unwrap_or(2000),
            BackendUnavailable { .. } => 3001,
            BackendTimeout { .. } => 3002,
            BackendStatus { .. } => 3003,
            BackendBadResponse { .. } => 3004,
            RequestTimeout { .. } => 3005,
            BackendSessionExpired { .. } => 3006,
            Store(_) => 3007,
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
            BackendRefused(r) => format!("İşlem reddedildi: {}", refusal_text(r)),
            other => other.to_string(),
        }
    }
}

fn refusal_text(r: &Refusal) -> String {
    if r.fields.is_empty() {
        r.message.clone()
    } else {
        let fields: Vec<String> = r.fields.iter().map(|f| f.to_string()).collect();
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

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

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
            reason: "refused".into(),
        };
        assert_eq!(down.party(), Party::Backend);
        assert!(!down.is_call_failure());
        assert_eq!(Error::Internal("x".into()).party(), Party::Bridge);
    }
}
