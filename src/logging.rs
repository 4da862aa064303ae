//! Logging set-up for the binaries: `tracing` lines on stderr, filtered by `SOAPBRIDGE_LOG`
//! (an `EnvFilter` directive, `info` by default), coloured only when stderr is a terminal.

/// Installs the global subscriber (once; later calls do nothing).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SOAPBRIDGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
