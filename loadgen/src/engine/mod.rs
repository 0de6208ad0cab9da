//! The load engine: sender threads (open or closed loop) plus the recipient side, sharing only
//! an immutable [`Shared`] and a few progress counters.
//!
//! ```text
//!  sender thread k ──MESSAGE──▶ server ──relay──▶ recipient socket (answers 200)
//!        ▲                        │  ◀────200──────────┘
//!        └──── 200 / 603 / 404 / 480 (matched by Call-ID slot; latency from intended time)
//! ```
#![forbid(unsafe_code)]

pub mod conn;
pub mod inflight;
pub mod pacer;
pub mod raw;
pub mod recipient;
pub mod sender;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use self::conn::Conn;
use self::pacer::{Pacing, Partition};
use self::sender::SenderThread;
use crate::kernel;
use crate::sip::Transport;
use crate::sip::template::RequestParams;
use crate::stats::Stats;
use crate::sys::CpuTime;
use crate::workload::Workload;

/// How the sender proves who it is (D7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Identity {
    /// Trusted peer: P-Asserted-Identity names the sender.
    Pai,
    /// Untrusted: From names the sender, proven by Digest when challenged.
    From,
}

/// Digest credentials by template: `{user}` is `u<N>`, `{aor}` is `sip:u<N>@<domain>`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AuthConfig {
    pub username_template: String,
    pub password_template: String,
}

impl AuthConfig {
    pub fn credentials(&self, user: u32, domain: &str) -> (String, String) {
        let fill = |t: &str| {
            t.replace("{user}", &format!("u{user}"))
                .replace("{aor}", &format!("sip:u{user}@{domain}"))
        };
        (fill(&self.username_template), fill(&self.password_template))
    }
}

/// Where each recipient's contact is: user `n` is at `ports[n % ports.len()]`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Contacts {
    pub ip: IpAddr,
    pub ports: Vec<u16>,
}

impl Contacts {
    pub fn contact_for(&self, user: u32) -> SocketAddr {
        let port = self
            .ports
            .get(user as usize % self.ports.len().max(1))
            .copied()
            .unwrap_or(9);
        SocketAddr::new(self.ip, port)
    }
}

/// Everything one run needs.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub target: SocketAddr,
    pub transport: Transport,
    pub pacing: Pacing,
    pub count: u64,
    pub duration: Duration,
    pub timeout: Duration,
    pub threads: usize,
    pub sockets: usize,
    pub senders_per_socket: u32,
    pub identity: Identity,
    pub auth: AuthConfig,
    pub register_expires_s: u32,
    pub publish_expires_s: u32,
    pub body: Vec<u8>,
    pub raw_size: usize,
    pub sockbuf_bytes: usize,
    pub max_inflight: usize,
    pub local_ip: IpAddr,
}

/// Counters the progress line reads while threads run.
#[derive(Debug, Default)]
pub struct Progress {
    pub sent: AtomicU64,
    pub completed: AtomicU64,
}

/// Immutable state shared by the sender threads.
pub struct Shared {
    pub cfg: RunConfig,
    pub workload: Arc<Workload>,
    pub contacts: Contacts,
    pub run_id: u32,
    pub start: Instant,
    pub progress: Progress,
}

impl Shared {
    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    pub fn is_raw(&self) -> bool {
        matches!(self.workload.mode, crate::workload::Mode::Raw)
    }
}

/// What a run measured.
pub struct RunOutput {
    pub stats: Stats,
    pub cpu: CpuTime,
    pub send_window: Duration,
    pub until_last_completion: Duration,
    pub sender_udp_ports: Vec<u16>,
    pub sender_socket_drops: u64,
    pub elapsed: Duration,
}

/// A run id for Call-IDs: late answers from an earlier run are never mistaken for ours.
pub fn new_run_id() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    crate::rng::mix64(nanos ^ u64::from(std::process::id())) as u32
}

/// Runs the senders to completion (count, duration and timeout bound it). `progress` is
/// called about once a second with (sent, completed) while the threads run.
pub fn run(
    cfg: RunConfig,
    workload: Arc<Workload>,
    contacts: Contacts,
    run_id: u32,
    mut progress: impl FnMut(u64, u64),
) -> anyhow::Result<RunOutput> {
    let threads = cfg.threads.clamp(1, 64);
    let sockets = cfg.sockets.clamp(threads, 4096);
    let domain = workload.dataset.params.domain.clone();
    let params = |local: SocketAddr| RequestParams {
        domain: domain.clone(),
        run: run_id,
        local,
        transport: cfg.transport,
        pai: cfg.identity == Identity::Pai,
        body: cfg.body.clone(),
    };
    // Open every socket before the clock starts.
    let mut per_thread: Vec<Vec<Conn>> = (0..threads).map(|_| Vec::new()).collect();
    for i in 0..sockets {
        let conn = match cfg.transport {
            Transport::Udp => Conn::udp(cfg.local_ip, cfg.sockbuf_bytes, params),
            Transport::Tcp => Conn::tcp(cfg.target, params),
        }
        .with_context(|| format!("opening sender socket {i} to {}", cfg.target))?;
        per_thread[i % threads].push(conn);
    }
    let sender_udp_ports: Vec<u16> = per_thread
        .iter()
        .flatten()
        .filter(|c| c.is_udp())
        .map(|c| c.local.port())
        .collect();
    let shared = Arc::new(Shared {
        cfg,
        workload,
        contacts,
        run_id,
        start: Instant::now(),
        progress: Progress::default(),
    });
    let handles: Vec<_> = per_thread
        .into_iter()
        .enumerate()
        .map(|(t, conns)| {
            let shared = Arc::clone(&shared);
            let partition = Partition {
                thread: t as u64,
                threads: threads as u64,
            };
            std::thread::Builder::new()
                .name(format!("loadgen-send-{t}"))
                .spawn(move || SenderThread::new(shared, partition, conns).run())
        })
        .collect::<Result<_, _>>()
        .context("spawning sender threads")?;
    let mut last_report = Instant::now();
    // Bounded: the threads stop by themselves within duration + timeout + 2 s.
    while !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(20));
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            progress(
                shared.progress.sent.load(Ordering::Relaxed),
                shared.progress.completed.load(Ordering::Relaxed),
            );
        }
    }
    let elapsed = shared.start.elapsed();
    let mut stats = Stats::default();
    let mut cpu = CpuTime::default();
    let (mut first, mut last, mut last_done) = (u64::MAX, 0u64, 0u64);
    let mut keep_open = Vec::new();
    for handle in handles {
        let result = handle
            .join()
            .map_err(|_| anyhow::anyhow!("a sender thread panicked"))??;
        stats.merge(&result.stats);
        cpu = cpu.plus(result.cpu);
        first = first.min(result.first_send_ns);
        last = last.max(result.last_send_ns);
        last_done = last_done.max(result.last_completion_ns);
        keep_open.push(result.conns);
    }
    let sender_socket_drops = kernel::socket_drops(&sender_udp_ports);
    drop(keep_open);
    Ok(RunOutput {
        stats,
        cpu,
        send_window: Duration::from_nanos(last.saturating_sub(if first == u64::MAX {
            last
        } else {
            first
        })),
        until_last_completion: Duration::from_nanos(last_done),
        sender_udp_ports,
        sender_socket_drops,
        elapsed,
    })
}

/// A stop flag plus a bound, for background loops (recipients, echo).
#[derive(Clone, Debug, Default)]
pub struct StopFlag(pub Arc<AtomicBool>);

impl StopFlag {
    pub fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}
