//! Command-line interface (clap derive). Every run is bounded by `--count` and `--duration-s`,
//! and every address must be loopback.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    version,
    about = "SIP load generator for imserver (loopback only)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// MESSAGE load with expected decisions (relay 200 / blocked 603 / 404 / 480).
    Message(MessageArgs),
    /// REGISTER load: registers the data set's users (contacts on this generator's recipients).
    Register(SipRunArgs),
    /// PUBLISH load: service-settings (ISB) publications for the data set's users.
    Publish(SipRunArgs),
    /// A mix of MESSAGE, REGISTER refreshes and PUBLISH.
    Mixed(MixedArgs),
    /// Blocked-list churn through the GLMS while MESSAGEs flow (needs --xcap).
    Churn(ChurnArgs),
    /// Writes a deterministic data set: xcap.jsonl (GLMS documents) and policy.jsonl.
    Dataset(DatasetArgs),
    /// Raw datagrams and their round trips (the floor, against udp-echo).
    Raw(RawArgs),
    /// The machine's own stalls: spins on the clock on this core and counts the gaps.
    Hiccup(HiccupArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TransportArg {
    Udp,
    Tcp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum IdentityArg {
    /// Trusted peer: P-Asserted-Identity carries the sender.
    Pai,
    /// Untrusted: From carries the sender; Digest answers 407/401 challenges.
    From,
}

/// Pacing, bounds and sockets.
#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Server address (loopback only).
    #[arg(long, default_value = "127.0.0.1:5060")]
    pub target: String,
    #[arg(long, value_enum, default_value = "udp")]
    pub transport: TransportArg,
    /// Open loop: requests per second (all threads together), latency from the intended time.
    #[arg(long, conflicts_with = "window")]
    pub rate: Option<f64>,
    /// Closed loop: outstanding requests per socket (default 16 when --rate is absent).
    #[arg(long)]
    pub window: Option<u32>,
    /// Stop sending after this many seconds.
    #[arg(long, default_value_t = 10)]
    pub duration_s: u64,
    /// Stop after this many requests (default: rate x duration, or 10 million closed loop).
    #[arg(long)]
    pub count: Option<u64>,
    /// A request without a final answer after this long is unanswered.
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Sender sockets (source ports or TCP connections), spread over the threads.
    #[arg(long, default_value_t = 1)]
    pub sockets: usize,
    /// Open loop: sender identities per socket (sender n uses socket (n-1)/this); 0 = round robin.
    #[arg(long, default_value_t = 0)]
    pub senders_per_socket: u32,
    /// Write the full result as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Exit 0 only if unanswered + unsent requests are at most this.
    #[arg(long, default_value_t = 0)]
    pub max_unanswered: u64,
    /// SO_RCVBUF / SO_SNDBUF asked for each UDP socket.
    #[arg(long, default_value_t = 4 << 20)]
    pub sockbuf_bytes: usize,
    /// In-flight table size per thread.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_inflight: usize,
}

/// Which data set.
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    #[arg(long, default_value_t = 1000)]
    pub users: u32,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value = "example.com")]
    pub domain: String,
    /// Blocked-list sizes are Zipf over 0..=this.
    #[arg(long, default_value_t = 50)]
    pub max_blocked: u32,
    #[arg(long, default_value_t = 1.0)]
    pub zipf_s: f64,
    /// Share of users with ISB on.
    #[arg(long, default_value_t = 0.0)]
    pub isb_share: f64,
    /// Share of users the generator never registers.
    #[arg(long, default_value_t = 0.0)]
    pub unregistered_share: f64,
    /// Read the data set from DIR/policy.jsonl (written by `loadgen dataset`).
    #[arg(long, conflicts_with = "policy_file")]
    pub dataset: Option<PathBuf>,
    /// Read the data set from this policy.jsonl (the file the lead's tests feed to the server).
    #[arg(long)]
    pub policy_file: Option<PathBuf>,
}

/// SIP identity, registration and recipients.
#[derive(Args, Debug, Clone)]
pub struct SipArgs {
    #[arg(long, value_enum, default_value = "pai")]
    pub identity: IdentityArg,
    /// Digest username template ({user} = u<N>, {aor} = sip:u<N>@domain).
    #[arg(long, default_value = "{user}")]
    pub auth_user: String,
    /// Digest password template.
    #[arg(long, default_value = "{user}")]
    pub auth_password: String,
    /// The code the server uses for blocked MESSAGEs (D1: 603, or 403, or 202).
    #[arg(long, default_value_t = 603)]
    pub block_code: u16,
    #[arg(long, default_value_t = 3600)]
    pub register_expires_s: u32,
    #[arg(long, default_value_t = 3600)]
    pub publish_expires_s: u32,
    /// Do not REGISTER (or PUBLISH ISB) first: the test feeds bindings to the server itself.
    #[arg(long)]
    pub no_register: bool,
    /// Recipient UDP sockets (user n's contact is socket n % this).
    #[arg(long, default_value_t = 4)]
    pub recipient_sockets: usize,
    /// First recipient port (socket i binds this + i); 0 = ephemeral.
    #[arg(long, default_value_t = 0)]
    pub recipient_port: u16,
    /// Closed-loop window for the REGISTER/PUBLISH setup phases.
    #[arg(long, default_value_t = 32)]
    pub setup_window: u32,
    /// Pause after setup (the server fetches policies before it delivers, D6).
    #[arg(long, default_value_t = 0)]
    pub settle_ms: u64,
    /// MESSAGE body size in bytes.
    #[arg(long, default_value_t = 64)]
    pub body_bytes: usize,
}

#[derive(Args, Debug, Clone)]
pub struct MessageArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub sip: SipArgs,
    /// Share of MESSAGEs from a sender on the recipient's blocked list.
    #[arg(long, default_value_t = 0.2)]
    pub blocked_share: f64,
    /// Share of MESSAGEs to identities outside the data set (expect 404).
    #[arg(long, default_value_t = 0.0)]
    pub to_unknown_share: f64,
    /// Share of MESSAGEs to unregistered users (expect 480; needs --unregistered-share > 0).
    #[arg(long, default_value_t = 0.0)]
    pub to_unregistered_share: f64,
}

#[derive(Args, Debug, Clone)]
pub struct SipRunArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub sip: SipArgs,
}

#[derive(Args, Debug, Clone)]
pub struct MixedArgs {
    #[command(flatten)]
    pub message: MessageArgs,
    /// Weights, e.g. message=90,register=5,publish=5.
    #[arg(long, default_value = "message=90,register=5,publish=5")]
    pub mix: String,
}

#[derive(Args, Debug, Clone)]
pub struct ChurnArgs {
    #[command(flatten)]
    pub message: MessageArgs,
    /// The GLMS XCAP root, e.g. http://127.0.0.1:8080/xcap-root (loopback only).
    #[arg(long)]
    pub xcap: Option<String>,
    /// Blocked-list changes per second (open loop: change i is due at start + i / this).
    #[arg(long, default_value_t = 10.0)]
    pub changes_per_s: f64,
    /// How many (recipient, sender) pairs the changes cycle through (about half start blocked).
    #[arg(long, default_value_t = 1000)]
    pub churn_pairs: usize,
    /// Share of the MESSAGE load aimed at the churned pairs (the rest is the `message` mix).
    #[arg(long, default_value_t = 0.1)]
    pub churn_share: f64,
    /// Changer threads, each with one keep-alive XCAP connection and one probe socket.
    #[arg(long, default_value_t = 4)]
    pub xcap_connections: usize,
    /// Gap between two probe MESSAGEs of one change, after its XCAP answer.
    #[arg(long, default_value_t = 500)]
    pub probe_interval_us: u64,
    /// A committed change not seen by a MESSAGE within this long is a failure.
    #[arg(long, default_value_t = 2000)]
    pub probe_timeout_ms: u64,
    /// Bound on the wait, after registration, until the server knows every policy (D6).
    #[arg(long, default_value_t = 120)]
    pub policy_wait_s: u64,
}

#[derive(Args, Debug, Clone)]
pub struct DatasetArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Output directory (created): xcap.jsonl and policy.jsonl.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct RawArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Datagram size in bytes (at least 24).
    #[arg(long, default_value_t = 200)]
    pub size: usize,
}

#[derive(Args, Debug)]
pub struct HiccupArgs {
    /// How long to spin (1 to 600 seconds).
    #[arg(long, default_value_t = 10)]
    pub duration_s: u64,
    /// Writes the result as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn rate_and_window_conflict() {
        assert!(
            Cli::try_parse_from(["loadgen", "message", "--rate", "10", "--window", "2"]).is_err()
        );
        let cli = Cli::try_parse_from([
            "loadgen",
            "message",
            "--rate",
            "1000",
            "--transport",
            "tcp",
            "--users",
            "50",
        ])
        .expect("parse");
        let Command::Message(m) = cli.command else {
            panic!("message")
        };
        assert_eq!(m.load.rate, Some(1000.0));
        assert_eq!(m.load.transport, TransportArg::Tcp);
        assert_eq!(m.data.users, 50);
        assert!((m.blocked_share - 0.2).abs() < f64::EPSILON);
    }
}
