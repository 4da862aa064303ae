#![forbid(unsafe_code)]
//! soapbridge: legacy SOAP clients in front, JSON backends behind. See ARCHITECTURE.md.

// The library's surface: running the bridge (`run`, `app`, `server`, `config`, `clock`,
// `logging`), the wire formats and the models they decode into (`protocol`, `schema`, `call`,
// `mapping`), and the store (`store`). Everything else is the bridge's own.
pub mod app;
mod backend;
pub mod call;
pub mod clock;
pub mod config;
mod error;
mod front;
pub mod logging;
pub mod mapping;
pub mod migrate;
mod ops;
mod percent;
mod pipeline;
mod profile;
pub mod protocol;
mod redact;
mod route;
pub mod schema;
pub mod server;
mod service;
mod stock;
pub mod store;
mod telemetry;

pub use app::{App, StartError};
pub use clock::Clock;
pub use config::{Config, ConfigErrors, Plan};
pub use error::{Error, Party};
pub use profile::signed::sign;

use std::future::Future;
use std::sync::Arc;

/// Why [`run`] stopped before serving.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Start(#[from] app::StartError),
    #[error("cannot handle SIGHUP: {0}")]
    Signal(std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Where a running bridge gets its configuration again: on SIGHUP and on the operator page's
/// reload, the source is compiled anew and, when it has no error, put in force.
pub type Source = Arc<dyn Fn() -> Result<config::Plan, ConfigErrors> + Send + Sync>;

/// Runs the bridge a compiled plan describes: starts it, listens on `server.listen`, and
/// serves until `shutdown` completes (then lets calls in flight finish and stops its workers).
/// With a `source`, SIGHUP reloads the configuration from it.
pub async fn run(
    plan: config::Plan,
    source: Option<Source>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let addr = plan.server.listen;
    let public_url = plan.server.public_url.clone();
    let app = Arc::new(app::App::start(plan).await?);
    if let Some(source) = source {
        app.set_source(source);
        #[cfg(unix)]
        reload_on_hangup(app.clone())?;
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Listen { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    tracing::info!(address = %local, %public_url, "soapbridge listening");
    for line in app.describe() {
        tracing::info!("{line}");
    }
    server::run(listener, app, shutdown).await;
    Ok(())
}

/// Reloads the configuration on every SIGHUP (instead of the signal ending the process).
#[cfg(unix)]
fn reload_on_hangup(app: Arc<app::App>) -> Result<(), RunError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup()).map_err(RunError::Signal)?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            let _ = app.reload_from_source().await;
        }
    });
    Ok(())
}
