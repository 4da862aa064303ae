//! Logging set-up for the binaries: `tracing` events on stderr, filtered by `SOAPBRIDGE_LOG`
//! (an `EnvFilter` directive, `info` by default).
//!
//! `SOAPBRIDGE_LOG_FORMAT=json` writes one JSON object per line (the event's fields, its level,
//! target and time, and under `span` the fields of the request it happened in: `request_id`
//! and the authenticated `user`), for log shippers; otherwise lines are for people, coloured only when
//! stderr is a terminal.

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

impl Format {
    /// The format `SOAPBRIDGE_LOG_FORMAT` asks for (`json` or `text`; text when unset).
    pub fn from_env() -> Format {
        match std::env::var("SOAPBRIDGE_LOG_FORMAT") {
            Ok(v) if v.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Text,
        }
    }
}

/// Installs the global subscriber (once; later calls do nothing).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SOAPBRIDGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match Format::from_env() {
        Format::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        Format::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
}
