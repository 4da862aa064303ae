#![forbid(unsafe_code)]
//! The `soapbridge` command: a thin layer over the library.

use std::path::PathBuf;

// mimalloc: the request path allocates many small, short-lived values (JSON values, strings);
// measured in `cargo bench --bench throughput` (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use soapbridge::app::App;
use soapbridge::config::Config;

#[derive(Parser)]
#[command(
    name = "soapbridge",
    version,
    about = "Legacy SOAP clients in front, JSON backends behind."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the bridge with a configuration.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
        /// Listen address, overriding `server.listen`.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Validate a configuration and its WSDLs; print each operation and its backend call.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print `time` and `sign` for a signed call: sign = md5(apiKey + secret + time).
    Sign {
        #[arg(long)]
        api_key: String,
        /// The secret; or set SOAPBRIDGE_SECRET to keep it out of the shell history.
        #[arg(long, env = "SOAPBRIDGE_SECRET", hide_env_values = true)]
        secret: String,
        /// Time in epoch milliseconds (default: now).
        #[arg(long)]
        time: Option<i64>,
        /// Print this envelope with its apiKey, sign and time filled in, ready for curl.
        #[arg(long)]
        envelope: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    soapbridge::logging::init();
    match cli.command {
        Command::Sign {
            api_key,
            secret,
            time,
            envelope,
        } => {
            let time = time.unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
            let sign = soapbridge::profile::signed::sign(&api_key, &secret, time);
            match envelope {
                None => println!("time={time}\nsign={sign}"),
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let time = time.to_string();
                    let values = [("apiKey", api_key.as_str()), ("sign", &sign), ("time", &time)];
                    let filled = soapbridge::protocol::soap::fill_elements(&text, &values)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                    print!("{filled}");
                }
            }
            Ok(())
        }
        Command::Check { config } => runtime()?.block_on(async {
            let cfg = Config::load(&config)?;
            let app = App::build(&cfg).await?;
            println!("{}: OK", config.display());
            for line in app.describe() {
                println!("{line}");
            }
            Ok(())
        }),
        Command::Serve { config, listen } => runtime()?.block_on(async {
            let mut cfg = Config::load(&config)?;
            if let Some(l) = listen {
                cfg.raw.server.listen = l;
            }
            let app = Arc::new(App::build(&cfg).await?);
            let listener = tokio::net::TcpListener::bind(cfg.raw.server.listen)
                .await
                .with_context(|| format!("cannot listen on {}", cfg.raw.server.listen))?;
            tracing::info!(address = %listener.local_addr()?, public_url = %cfg.public_url(), "soapbridge listening");
            for line in app.describe() {
                tracing::info!("{line}");
            }
            soapbridge::server::run(listener, app, soapbridge::server::shutdown_signal()).await;
            Ok(())
        }),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
