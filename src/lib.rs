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
mod percent;
mod pipeline;
mod profile;
pub mod protocol;
mod route;
pub mod schema;
pub mod server;
mod service;
mod stock;
pub mod store;

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
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Runs the bridge a compiled plan describes: starts it, listens on `server.listen`, and
/// serves until `shutdown` completes (then lets calls in flight finish and stops its workers).
pub async fn run(plan: config::Plan, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let addr = plan.server.listen;
    let public_url = plan.server.public_url.clone();
    let app = Arc::new(app::App::start(plan).await?);
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
