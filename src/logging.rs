//! Logging set-up for the binaries: `tracing` events on stderr, filtered by `SOAPBRIDGE_LOG`
//! (`info` by default; `target=level` directives separated by commas, e.g.
//! `info,soapbridge::access=off`; anything else an `EnvFilter` understands, such as span field
//! filters, also works).
//!
//! `SOAPBRIDGE_LOG_FORMAT=json` writes one JSON object per line (the event's fields, its level,
//! target and time, and under `span` the fields of the request it happened in: `request_id`
//! and the authenticated `user`), for log shippers; otherwise lines are for people, coloured only
//! when stderr is a terminal. Each call's access line has the target `soapbridge::access`.

use std::str::FromStr;

use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

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

/// The filter `SOAPBRIDGE_LOG` asks for. Plain `target=level` lists become a static
/// [`Targets`] filter, which costs a request span nothing per poll; only directives that need
/// it (span names or fields) get an [`EnvFilter`].
fn filter() -> (Option<Targets>, Option<EnvFilter>) {
    let spec = std::env::var("SOAPBRIDGE_LOG").unwrap_or_else(|_| "info".into());
    if !spec.contains(['[', '{'])
        && let Ok(t) = Targets::from_str(&spec)
    {
        return (Some(t), None);
    }
    let env = EnvFilter::try_new(&spec).unwrap_or_else(|_| EnvFilter::new("info"));
    (None, Some(env))
}

/// Installs the global subscriber (once; later calls do nothing).
pub fn init() {
    let (targets, env) = filter();
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let output: Box<dyn Layer<Registry> + Send + Sync> = match Format::from_env() {
        Format::Json => Box::new(
            fmt.json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false),
        ),
        Format::Text => {
            Box::new(fmt.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())))
        }
    };
    let _ = tracing_subscriber::registry()
        .with(output)
        .with(targets)
        .with(env)
        .try_init();
}
