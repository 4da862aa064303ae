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
    let registry = tracing_subscriber::registry()
        .with(output)
        .with(targets)
        .with(env);
    #[cfg(feature = "otel")]
    let registry = registry.with(otel::layer());
    let _ = registry.try_init();
}

/// Sends what is still buffered for export (OpenTelemetry spans); call before the process
/// ends.
pub fn shutdown() {
    #[cfg(feature = "otel")]
    otel::shutdown();
}

/// OpenTelemetry export (feature `otel`): each request's span (`request_id`, `user`) goes to
/// an OTLP/HTTP collector when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; the exporter reads the other standard
/// `OTEL_*` variables itself (headers, timeout, batch delay).
#[cfg(feature = "otel")]
mod otel {
    use std::sync::OnceLock;

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;

    static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

    pub(super) fn layer<S>()
    -> Option<tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        let endpoint = std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|_| {
                std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
                    .map(|e| format!("{}/v1/traces", e.trim_end_matches('/')))
            })
            .ok()
            .filter(|e| !e.is_empty())?;
        let exporter = match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint.clone())
            .build()
        {
            Ok(e) => e,
            Err(e) => {
                // No subscriber yet: this goes to stderr directly, once, at start-up.
                #[allow(clippy::print_stderr)]
                {
                    eprintln!("OpenTelemetry export to {endpoint} is off: {e}");
                }
                return None;
            }
        };
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name("soapbridge")
                    .build(),
            )
            .build();
        let tracer = provider.tracer("soapbridge");
        let _ = PROVIDER.set(provider);
        Some(tracing_opentelemetry::layer().with_tracer(tracer))
    }

    pub(super) fn shutdown() {
        if let Some(p) = PROVIDER.get() {
            let _ = p.shutdown();
        }
    }
}
