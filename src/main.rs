//! The `imserver` command: `run` starts the IM Server with its embedded GLMS and storage.
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use imserver::config::{BlockCode, Config};

#[derive(Parser)]
#[command(name = "imserver", version, about = "OMA SIMPLE IM Server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the IM Server (SIP over UDP and TCP, metrics) until SIGINT or SIGTERM.
    Run(RunArgs),
}

/// Flags override the TOML file given with `--config`, which overrides the defaults.
#[derive(Args, Default)]
struct RunArgs {
    /// TOML configuration file (keys as in the README's configuration reference).
    #[arg(long)]
    config: Option<PathBuf>,
    /// SIP address for UDP and TCP [default: 127.0.0.1:5060].
    #[arg(long, value_name = "ADDR")]
    sip: Option<SocketAddr>,
    /// Prometheus /metrics address [default: 127.0.0.1:9090].
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Data directory [default: ./data].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// The served domain (Digest realm, host of the server's identity) [default: localhost].
    #[arg(long, value_name = "NAME")]
    domain: Option<String>,
    /// Trusted peer range (the SIP/IP Core); repeatable; replaces the default loopback trust.
    #[arg(long, value_name = "CIDR")]
    trust: Vec<String>,
    /// Fast-path worker threads [default: one per core].
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Answer to a blocked MESSAGE: 603, 403 or 202 [default: 603].
    #[arg(long, value_name = "CODE", value_parser = parse_block_code)]
    block_code: Option<BlockCode>,
    /// Host written in the server's own Via [default: the SIP address's IP].
    #[arg(long, value_name = "HOST")]
    advertise: Option<String>,
    /// Log filter (tracing-subscriber EnvFilter syntax) [default: info, or RUST_LOG].
    #[arg(long, value_name = "FILTER")]
    log: Option<String>,
}

fn parse_block_code(s: &str) -> Result<BlockCode, String> {
    BlockCode::parse(s).ok_or_else(|| format!("`{s}` is not one of 603, 403, 202"))
}

impl RunArgs {
    fn into_config(self) -> Result<Config> {
        let mut cfg = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(v) = self.sip {
            cfg.sip = v;
        }
        if let Some(v) = self.metrics {
            cfg.metrics = v;
        }
        if let Some(v) = self.data {
            cfg.data = v;
        }
        if let Some(v) = self.domain {
            cfg.domain = v;
        }
        if !self.trust.is_empty() {
            cfg.trust = self.trust;
        }
        if let Some(v) = self.workers {
            cfg.workers = v;
        }
        if let Some(v) = self.block_code {
            cfg.block_code = v;
        }
        if let Some(v) = self.advertise {
            cfg.advertise = Some(v);
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

fn init_logging(filter: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match filter {
        Some(f) => EnvFilter::new(f),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn run(args: RunArgs) -> Result<()> {
    init_logging(args.log.as_deref());
    let cfg = args.into_config()?;
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .context("installing signal handlers")?;
    let server = imserver::server::Server::start(cfg).context("starting the server")?;
    tracing::info!(
        sip = %server.sip_addr(),
        metrics = %server.metrics_addr(),
        "imserver ready"
    );
    if let Some(sig) = signals.forever().next() {
        tracing::info!(signal = sig, "shutting down");
    }
    server.shutdown();
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run(args),
    }
}
