//! Logging set-up for the binaries: `tracing` events on stderr, filtered by `SOAPBRIDGE_LOG`
//! (`info` by default; `target=level` directives separated by commas, e.g.
//! `info,soapbridge::access=off`; anything else an `EnvFilter` understands, such as span field
//! filters, also works).
//!
//! `SOAPBRIDGE_LOG_FORMAT=json` writes one JSON object per line (the event's fields, its level,
//! target and time, and under `span` the fields of the request it happened in: `request_id`
//! and the authenticated `user`), for log shippers; otherwise lines are for people, coloured only
//! when stderr is a terminal. Each call's access line has the target `soapbridge::access`.

use std::fmt;
use std::str::FromStr;

use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{EnvFilter, FilterExt, Targets, filter_fn};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Filter, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
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

type BoxedFilter = Box<dyn Filter<Registry> + Send + Sync + 'static>;

/// The filter `SOAPBRIDGE_LOG` asks for, and whether it selects by span (so that the request
/// span must be visible to it). Plain `target=level` lists become a static [`Targets`]
/// filter; only directives that need it (span names or fields) get an [`EnvFilter`].
fn filter() -> (BoxedFilter, bool) {
    let spec = std::env::var("SOAPBRIDGE_LOG").unwrap_or_else(|_| "info".into());
    if !spec.contains(['[', '{'])
        && let Ok(t) = Targets::from_str(&spec)
    {
        return (Box::new(t), false);
    }
    let env = EnvFilter::try_new(&spec).unwrap_or_else(|_| EnvFilter::new("info"));
    (Box::new(env), true)
}

/// Installs the global subscriber (once; later calls do nothing).
///
/// The request span is not given to the log output unless the filter selects by span: each
/// line gets the request's id and caller from its context instead (see [`WithRequest`]),
/// which spares every call the span's bookkeeping on every poll. An exporter (OpenTelemetry)
/// is the span's only other consumer; without one, the span is never enabled at all.
pub fn init() {
    let (filter, by_span) = filter();
    let filter = if by_span {
        filter
    } else {
        Box::new(filter.and(filter_fn(|m| !m.is_span())))
    };
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let output: Box<dyn Layer<Registry> + Send + Sync> = match Format::from_env() {
        Format::Json => Box::new(
            fmt.fmt_fields(JsonFields::new())
                .event_format(WithRequest {
                    json: true,
                    inner: tracing_subscriber::fmt::format()
                        .json()
                        .flatten_event(true)
                        .with_current_span(by_span)
                        .with_span_list(false),
                })
                .with_filter(filter),
        ),
        Format::Text => {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            Box::new(
                fmt.with_ansi(ansi)
                    .event_format(WithRequest {
                        json: false,
                        inner: tracing_subscriber::fmt::format()
                            .without_time()
                            .with_ansi(ansi),
                    })
                    .with_filter(filter),
            )
        }
    };
    #[cfg_attr(not(feature = "otel"), allow(unused_mut))]
    let mut layers = vec![output];
    #[cfg(feature = "otel")]
    if let Some(otel) = otel::layer() {
        layers.push(Box::new(otel.with_filter(self::filter().0)));
    }
    let _ = tracing_subscriber::registry().with(layers).try_init();
}

/// Writes each line with the id and caller of the request it was written for (from
/// `telemetry`'s request context), where the request span is not visible to the output:
/// text lines as `TIME request{request_id=.. user=..} LEVEL target: fields`, JSON lines with a
/// `span` object holding `request_id` and `user`, as a span would give them.
struct WithRequest<F> {
    json: bool,
    inner: F,
}

impl<S, N, F> FormatEvent<S, N> for WithRequest<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // The span shows itself when the output sees it (a filter that selects by span).
        let from_context = ctx.lookup_current().is_none();
        let inner = &self.inner;
        match self.json {
            false => {
                SystemTime.format_time(&mut writer)?;
                writer.write_char(' ')?;
                if from_context {
                    crate::telemetry::with_request(|id, user| {
                        write!(writer, "request{{request_id={id}")?;
                        if let Some(u) = user {
                            write!(writer, " user={u}")?;
                        }
                        writer.write_str("} ")
                    })
                    .transpose()?;
                }
                inner.format_event(ctx, writer, event)
            }
            true => {
                let opened = if from_context {
                    crate::telemetry::with_request(|id, user| {
                        write!(writer, "{{\"span\":{{\"request_id\":{}", json_string(id))?;
                        if let Some(u) = user {
                            write!(writer, ",\"user\":{}", json_string(u))?;
                        }
                        writer.write_str("},")
                    })
                    .transpose()?
                    .is_some()
                } else {
                    false
                };
                if !opened {
                    return inner.format_event(ctx, writer, event);
                }
                // The object is open already: the inner line goes on without its `{`.
                let mut rest = WithoutFirstBrace {
                    to: writer,
                    skipped: false,
                };
                inner.format_event(ctx, Writer::new(&mut rest), event)
            }
        }
    }
}

fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// Passes a JSON line on without its opening brace.
struct WithoutFirstBrace<'a> {
    to: Writer<'a>,
    skipped: bool,
}

impl fmt::Write for WithoutFirstBrace<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let s = if self.skipped {
            s
        } else {
            match s.find('{') {
                Some(i) => {
                    self.skipped = true;
                    &s[i + 1..]
                }
                None => s,
            }
        };
        self.to.write_str(s)
    }
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
