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
    /// Provision Digest credentials (stored as HA1 hashes, never plain text).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Run a standalone GLMS (XCAP server + xcap-diff notifier), or bulk-import documents.
    #[command(args_conflicts_with_subcommands = true)]
    Glms {
        #[command(subcommand)]
        command: Option<GlmsCommand>,
        #[command(flatten)]
        args: GlmsArgs,
    },
}

#[derive(Subcommand)]
enum GlmsCommand {
    /// Load documents (JSON Lines: {"xui","auid","name","doc"} per line, as `loadgen dataset`
    /// writes) into a GLMS data directory. Run it while no GLMS uses that directory.
    Import {
        #[arg(long, value_name = "DIR", default_value = "./data")]
        data: PathBuf,
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

/// A standalone GLMS; point an IM Server at it with `--glms sip:ADDR --glms-xcap URL`.
#[derive(Args)]
struct GlmsArgs {
    /// Notifier SIP address (UDP).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5070")]
    sip: SocketAddr,
    /// XCAP HTTP address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    xcap: SocketAddr,
    #[arg(long, value_name = "DIR", default_value = "./data")]
    data: PathBuf,
    /// Digest realm; the IM Server's identity is sip:im-server@<domain>.
    #[arg(long, value_name = "NAME", default_value = "localhost")]
    domain: String,
    /// Peers whose asserted identities count (the IM Server, an aggregation proxy).
    #[arg(long, value_name = "CIDR")]
    trust: Vec<String>,
    #[arg(long, value_name = "on|off", value_parser = parse_on_off, default_value = "on")]
    auth: bool,
    #[arg(long, value_name = "FILTER")]
    log: Option<String>,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add (or replace) a user's password. Works while the server runs; it picks it up within
    /// a second.
    Add {
        /// Data directory of the server [default: ./data].
        #[arg(long, value_name = "DIR", default_value = "./data")]
        data: PathBuf,
        /// The user's address of record, e.g. sip:bob@example.com.
        user: String,
        /// File whose first line is the password ("-" for standard input).
        #[arg(long, value_name = "FILE")]
        password_file: PathBuf,
    },
    /// List provisioned users (names and realms; never secrets).
    List {
        #[arg(long, value_name = "DIR", default_value = "./data")]
        data: PathBuf,
    },
    /// Remove a user.
    Remove {
        #[arg(long, value_name = "DIR", default_value = "./data")]
        data: PathBuf,
        user: String,
    },
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
    /// Digest authentication of untrusted peers: on or off [default: on]. Off is for lab use.
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    auth: Option<bool>,
    /// Host written in the server's own Via [default: the SIP address's IP].
    #[arg(long, value_name = "HOST")]
    advertise: Option<String>,
    /// Where blocked lists come from: embedded (default), none, or sip:IP:PORT of a standalone
    /// GLMS (with --glms-xcap).
    #[arg(long, value_name = "MODE")]
    glms: Option<String>,
    /// XCAP root URL of a standalone GLMS (http://IP:PORT/xcap-root).
    #[arg(long, value_name = "URL")]
    glms_xcap: Option<String>,
    /// The embedded GLMS's XCAP address [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    xcap: Option<SocketAddr>,
    /// The embedded GLMS's notifier SIP address [default: 127.0.0.1:0, any free port].
    #[arg(long, value_name = "ADDR")]
    glms_sip: Option<SocketAddr>,
    /// Static blocked lists (loadgen's policy.jsonl), for labs and benchmarks without a GLMS.
    #[arg(long, value_name = "FILE")]
    policy_file: Option<PathBuf>,
    /// Log filter (tracing-subscriber EnvFilter syntax) [default: info, or RUST_LOG].
    #[arg(long, value_name = "FILTER")]
    log: Option<String>,
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("`{s}` is not on or off")),
    }
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
        if let Some(v) = self.auth {
            cfg.auth = v;
        }
        if let Some(v) = self.policy_file {
            cfg.policy_file = Some(v);
        }
        if let Some(v) = self.glms {
            cfg.glms = Some(v);
        }
        if let Some(v) = self.glms_xcap {
            cfg.glms_xcap = Some(v);
        }
        if let Some(v) = self.xcap {
            cfg.xcap = v;
        }
        if let Some(v) = self.glms_sip {
            cfg.glms_sip = v;
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
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
    // One machine-readable line on stdout: scripts and tests learn the bound ports from it.
    match server.xcap_addr() {
        Some(x) => println!(
            "imserver ready sip={} metrics={} xcap={x} glms={}",
            server.sip_addr(),
            server.metrics_addr(),
            server
                .glms_sip_addr()
                .map_or_else(String::new, |a| a.to_string())
        ),
        None => println!(
            "imserver ready sip={} metrics={}",
            server.sip_addr(),
            server.metrics_addr()
        ),
    }
    if let Some(sig) = signals.forever().next() {
        tracing::info!(signal = sig, "shutting down");
    }
    server.shutdown();
    Ok(())
}

fn read_password(path: &std::path::Path) -> Result<String> {
    let text = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        s
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    let pw = text.lines().next().unwrap_or("").to_owned();
    anyhow::ensure!(!pw.is_empty(), "the password file's first line is empty");
    Ok(pw)
}

fn user(cmd: UserCommand) -> Result<()> {
    use imserver::store::CredentialStore;
    match cmd {
        UserCommand::Add {
            data,
            user,
            password_file,
        } => {
            let pw = read_password(&password_file)?;
            CredentialStore::new(&data)
                .update(|c| c.add(&user, &pw))?
                .with_context(|| format!("adding {user}"))?;
            println!("added {user}");
        }
        UserCommand::List { data } => {
            let creds = CredentialStore::new(&data).load()?;
            for u in creds.list() {
                println!(
                    "{}\t{}",
                    String::from_utf8_lossy(u.aor),
                    String::from_utf8_lossy(u.realm)
                );
            }
        }
        UserCommand::Remove { data, user } => {
            let removed = CredentialStore::new(&data)
                .update(|c| c.remove(&user))?
                .with_context(|| format!("removing {user}"))?;
            anyhow::ensure!(removed, "no such user: {user}");
            println!("removed {user}");
        }
    }
    Ok(())
}

fn glms(command: Option<GlmsCommand>, args: GlmsArgs) -> Result<()> {
    if let Some(GlmsCommand::Import { data, files }) = command {
        let report = imserver::glms::import::import(&data, &files)?;
        println!(
            "imported {} of {} documents in {} ms ({:.0} docs/s, {} commits)",
            report.imported,
            report.lines,
            report.elapsed_ms,
            report.docs_per_s(),
            report.commits
        );
        for f in &report.failures {
            eprintln!("{f}");
        }
        anyhow::ensure!(report.ok(), "{} documents failed; see above", report.failed);
        return Ok(());
    }
    init_logging(args.log.as_deref());
    let mut trust = imserver::auth::TrustList::new();
    let ranges = if args.trust.is_empty() {
        vec!["127.0.0.1/32".to_owned(), "::1/128".to_owned()]
    } else {
        args.trust
    };
    for t in &ranges {
        trust.push(imserver::auth::trust::parse(t).with_context(|| format!("--trust {t}"))?);
    }
    let creds = imserver::store::CredentialStore::new(&args.data).load()?;
    let creds = std::sync::Arc::new(creds);
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    let mut g = imserver::glms::runner::Glms::start(imserver::glms::runner::GlmsConfig {
        sip: args.sip,
        xcap: args.xcap,
        data: args.data,
        domain: args.domain,
        trust,
        auth: args.auth,
        credentials: std::sync::Arc::new(move || creds.clone()),
    })?;
    println!("glms ready sip={} xcap={}", g.sip_addr(), g.xcap_addr());
    if let Some(sig) = signals.forever().next() {
        tracing::info!(signal = sig, "shutting down");
    }
    g.shutdown();
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run(args),
        Command::User { command } => user(command),
        Command::Glms { command, args } => glms(command, args),
    }
}
