//! `soapbridge-demo`: the bridge with the demo configuration and the reference backends it
//! points at, in one process. `cargo run --release -p soapbridge-demo`
#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "soapbridge-demo",
    about = "The soapbridge demo: the bridge and its reference backends in one process."
)]
struct Cli {
    /// The bridge's configuration.
    #[arg(long, short, default_value = "demo/soapbridge.toml")]
    config: PathBuf,
    /// Which reference backend serves which [backends.NAME] of the configuration.
    #[arg(long, default_value = "demo/reference.toml")]
    backends: PathBuf,
    /// Listen address, overriding `server.listen`.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    soapbridge::logging::init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (config, listen) = (cli.config.clone(), cli.listen);
        let plan = soapbridge::Config::compile_file(&config, listen)?;
        // Each reference backend where the configuration says its backend is.
        for b in soapbridge_reference::demo_backends(&cli.backends).map_err(anyhow::Error::msg)? {
            let backend = plan.backends.get(&b.name).with_context(|| {
                format!(
                    "{}: backend '{}' is not in {}",
                    cli.backends.display(),
                    b.name,
                    cli.config.display()
                )
            })?;
            let url: http::Uri = backend.base_url.parse()?;
            let addr = format!(
                "{}:{}",
                url.host().unwrap_or("127.0.0.1"),
                url.port_u16().unwrap_or(80)
            );
            let listener = tokio::net::TcpListener::bind(&addr)
                .await
                .with_context(|| {
                    format!(
                        "cannot listen on {addr} for the reference backend '{}'",
                        b.name
                    )
                })?;
            soapbridge_reference::spawn(&b.kind, &b.data, listener).map_err(anyhow::Error::msg)?;
            tracing::info!(backend = %b.name, kind = %b.kind, %addr, "reference backend started");
        }
        // SIGHUP reads the configuration again (the reference backends stay as they are).
        let source: soapbridge::Source =
            std::sync::Arc::new(move || soapbridge::Config::compile_file(&config, listen));
        soapbridge::run(plan, Some(source), soapbridge::server::shutdown_signal()).await?;
        Ok(())
    })
}
