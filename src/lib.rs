#![forbid(unsafe_code)]
//! soapbridge: legacy SOAP clients in front, JSON backends behind. See ARCHITECTURE.md.

pub mod app;
pub mod backend;
pub mod call;
pub mod clock;
pub mod config;
pub mod error;
pub mod front;
pub mod logging;
pub mod mapping;
pub mod pipeline;
pub mod profile;
pub mod protocol;
pub mod route;
pub mod schema;
pub mod server;
pub mod service;
pub mod stock;
pub mod store;

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
