#![forbid(unsafe_code)]
//! The `soapbridge` command: a thin layer over the library.
// A command line tool prints its answers.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;

// mimalloc: the request path allocates many small, short-lived values (JSON values, strings);
// measured in `cargo bench --bench throughput` (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Run the bridge with a configuration (SIGHUP reads it again).
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
    /// Validate a configuration and have the running bridge read it again (through the
    /// operator page's reload; the same as sending it SIGHUP).
    Reload {
        #[arg(long, short)]
        config: PathBuf,
        /// The bridge's address, when it is not `server.listen` of the file.
        #[arg(long)]
        url: Option<String>,
    },
    /// Stand in front of a legacy server as a recording pass-through: every call is forwarded
    /// as it is, and kept (secrets and card data redacted) as a fixture case in DIR.
    Record {
        /// The legacy server, e.g. http://legacy.internal:8080
        #[arg(long)]
        upstream: String,
        /// Where clients are pointed instead of the legacy server.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: std::net::SocketAddr,
        /// The fixture directory (created if needed; new cases are appended).
        #[arg(long)]
        out: PathBuf,
        /// The largest request or answer recorded, in bytes.
        #[arg(long, default_value_t = 64 * 1024 * 1024)]
        max_body: usize,
    },
    /// Send the recorded requests of DIR through the bridge and compare each answer with the
    /// recorded one by meaning; exits 1 when any differs.
    Replay {
        /// The bridge's configuration: a bridge is started from it on 127.0.0.1 for the replay.
        #[arg(long, short, required_unless_present = "url")]
        config: Option<PathBuf>,
        /// Replay against a bridge that is already running instead (e.g. http://127.0.0.1:8080);
        /// with --config as well, its WSDLs still say which elements are unordered.
        #[arg(long)]
        url: Option<String>,
        /// A recorded user's password, as USER:PASSWORD (repeatable; recordings keep names only).
        #[arg(long = "credentials", value_name = "USER:PASSWORD")]
        credentials: Vec<String>,
        /// Sign requests whose signature was redacted again with this apiKey (the secret in
        /// SOAPBRIDGE_SECRET) and the time of the replay.
        #[arg(long)]
        api_key: Option<String>,
        /// An element or member name whose values are not compared (repeatable).
        #[arg(long)]
        ignore: Vec<String>,
        /// The fixture directory (cases.toml and its files).
        dir: PathBuf,
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
    let huge_pages_off = huge_pages_off();
    let cli = Cli::parse();
    soapbridge::logging::init();
    if let Err(e) = huge_pages_off {
        tracing::debug!(error = %e, "transparent huge pages stay as the system sets them");
    }
    match cli.command {
        Command::Sign {
            api_key,
            secret,
            time,
            envelope,
        } => {
            let time = time.unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
            let sign = soapbridge::sign(&api_key, &secret, time);
            match envelope {
                None => println!("time={time}\nsign={sign}"),
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let time = time.to_string();
                    let values = [
                        ("apiKey", api_key.as_str()),
                        ("sign", &sign),
                        ("time", &time),
                    ];
                    let filled = soapbridge::protocol::soap::fill_elements(&text, &values)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                    print!("{filled}");
                }
            }
            Ok(())
        }
        Command::Check { config } => {
            let plan = compile(&config, None)?;
            runtime()?.block_on(async {
                // Starting opens the store, so that `check` also says whether it can be reached.
                let app = App::start(plan).await?;
                println!("{}: OK", config.display());
                for line in app.describe() {
                    println!("{line}");
                }
                Ok(())
            })
        }
        Command::Reload { config, url } => {
            let plan = compile(&config, None)?;
            println!("{}: OK", config.display());
            let ops = plan.ops.as_ref().context(
                "the configuration has no [ops] section: send SIGHUP to the bridge instead (systemctl reload soapbridge)",
            )?;
            let (user, password) = ops.users.users.first().context("[ops] has no user")?;
            let url = url.unwrap_or_else(|| {
                let mut addr = plan.server.listen;
                if addr.ip().is_unspecified() {
                    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                format!("http://{addr}")
            });
            let target = format!("{}{}/reload", url.trim_end_matches('/'), ops.path);
            let (status, body) = runtime()?.block_on(post(&target, user, password))?;
            print!("{body}");
            if !body.ends_with('\n') {
                println!();
            }
            anyhow::ensure!(status == 200, "{target} answered HTTP {status}");
            Ok(())
        }
        Command::Record {
            upstream,
            listen,
            out,
            max_body,
        } => runtime()?.block_on(async {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            eprintln!(
                "recording calls to {upstream} into {}: point clients at http://{}",
                out.display(),
                listener.local_addr()?
            );
            soapbridge::migrate::record::record(
                listener,
                &upstream,
                &out,
                max_body,
                soapbridge::server::shutdown_signal(),
            )
            .await?;
            Ok(())
        }),
        Command::Replay {
            config,
            url,
            credentials,
            api_key,
            ignore,
            dir,
        } => {
            let mut opts = soapbridge::migrate::replay::ReplayOptions::default();
            opts.rules.ignore = ignore;
            for c in credentials {
                let (u, p) = c
                    .split_once(':')
                    .context("--credentials takes USER:PASSWORD")?;
                opts.credentials.insert(u.to_string(), p.to_string());
            }
            if let Some(key) = api_key {
                let secret = std::env::var("SOAPBRIDGE_SECRET")
                    .context("--api-key needs the secret in SOAPBRIDGE_SECRET")?;
                opts.signer = Some((key, secret));
            }
            let report = runtime()?.block_on(async {
                match (url, config) {
                    (Some(url), config) => {
                        if let Some(config) = config {
                            for s in &compile(&config, None)?.services {
                                opts.rules
                                    .unordered
                                    .extend(s.desc.schema.unordered_elements());
                            }
                        }
                        soapbridge::migrate::replay::replay(&url, &dir, &opts)
                            .await
                            .map_err(anyhow::Error::msg)
                    }
                    (None, Some(config)) => {
                        let local: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
                        let plan = compile(&config, Some(local))?;
                        // Elements whose children the WSDLs let come in any order.
                        for s in &plan.services {
                            opts.rules
                                .unordered
                                .extend(s.desc.schema.unordered_elements());
                        }
                        let app = std::sync::Arc::new(App::start(plan).await?);
                        let listener = tokio::net::TcpListener::bind(local).await?;
                        let base = format!("http://{}", listener.local_addr()?);
                        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                        let server = tokio::spawn(soapbridge::server::run(listener, app, async {
                            let _ = stopped.await;
                        }));
                        let report = soapbridge::migrate::replay::replay(&base, &dir, &opts).await;
                        let _ = stop.send(());
                        let _ = server.await;
                        report.map_err(anyhow::Error::msg)
                    }
                    (None, None) => anyhow::bail!("give --config or --url"),
                }
            })?;
            print!("{report}");
            soapbridge::logging::shutdown();
            if report.differing() > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Serve { config, listen } => {
            let plan = compile(&config, listen)?;
            let source: soapbridge::Source =
                std::sync::Arc::new(move || Config::compile_file(&config, listen));
            let served = runtime()?.block_on(async {
                soapbridge::run(plan, Some(source), soapbridge::server::shutdown_signal()).await
            });
            soapbridge::logging::shutdown();
            Ok(served?)
        }
    }
}

/// Loads and compiles a configuration; every problem goes to stderr, one a line.
fn compile(
    path: &std::path::Path,
    listen: Option<std::net::SocketAddr>,
) -> anyhow::Result<soapbridge::config::Plan> {
    Config::compile_file(path, listen).map_err(|errors| {
        for e in &errors.0 {
            eprintln!("error: {e}");
        }
        anyhow::anyhow!(
            "{}: {} problem(s) in the configuration",
            path.display(),
            errors.0.len()
        )
    })
}

/// POSTs to the operator page as `user`; the answer's status and text.
async fn post(url: &str, user: &str, password: &str) -> anyhow::Result<(u16, String)> {
    use base64::Engine;
    use http_body_util::BodyExt;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let req = http::Request::post(url)
        .header(http::header::AUTHORIZATION, format!("Basic {auth}"))
        .body(http_body_util::Empty::new())?;
    let resp = tokio::time::timeout(std::time::Duration::from_secs(60), client.request(req))
        .await
        .with_context(|| format!("{url}: no answer within 60 s"))?
        .with_context(|| format!("cannot reach the bridge at {url}"))?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Transparent huge pages off for this process, before anything else is allocated: mimalloc
/// asks for them on its arenas (it is also built without that request: the `no_thp` feature),
/// and each 2 MiB page that a few small allocations touch is then resident whole, so the
/// process's memory would not follow the messages in flight. Measured (BENCHMARKS.md): an idle
/// bridge 26 -> 14 MB, four 1 MB requests in flight 47 -> 29 MB, two 10 MB answers 115 -> 87 MB;
/// no difference in CPU per call showed.
#[cfg(target_os = "linux")]
fn huge_pages_off() -> std::io::Result<()> {
    rustix::thread::disable_transparent_huge_pages(true).map_err(std::io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn huge_pages_off() -> std::io::Result<()> {
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
