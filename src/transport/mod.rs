//! Thread-per-core SIP transports (UDP and TCP on one port) on mio, in the sozu mould.
//!
//! Each worker thread owns one `mio::Poll`, one UDP socket and one TCP listener, all bound to the
//! same address with `SO_REUSEPORT`, a slab of TCP connections, an [`Outbox`] and one [`Handler`]
//! (the fast path) built for it by the caller's factory. Nothing is shared between workers on the
//! hot path except the per-worker statistics (cache-padded atomics, written by their owner only)
//! and the mailboxes, which carry sends for a connection owned by another worker and sends from
//! threads that are not workers ([`TransportHandle`]).
//!
//! The module knows nothing of SIP: the handler frames TCP streams ([`Handler::frame`]) and turns
//! messages into sends ([`Dest`] + bytes in the [`Outbox`]).
//!
//! ```text
//!  worker loop (one per core)
//!  ┌──────────────────────────────────────────────────────────────────────────┐
//!  │ poll(timeout = next idle sweep)                                          │
//!  │   UDP readable  -> recvmmsg batch -> on_message* -> flush (sendmmsg)     │
//!  │   listener      -> accept* (past the limit: accept + close, counted)     │
//!  │   conn readable -> read -> frame* -> on_message* / keep-alive / bad      │
//!  │   conn writable -> connect done / drain write backlog / resume reading   │
//!  │   waker         -> drain mailbox (Conn, Udp, Tcp sends from elsewhere)   │
//!  │ on_idle -> flush; idle sweep when due; exit when the shutdown flag is set │
//!  └──────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! TCP connection states are in `LIFECYCLE.md` beside this file.
//!
//! Single-source spreading: a SIP/IP core sends everything from one address and port, so the
//! kernel's reuseport hash would put all of it on one worker. With
//! [`TransportConfig::spread_single_source`] a classic BPF program
//! (`SO_ATTACH_REUSEPORT_CBPF`) picks the socket by `random % workers` for every datagram, so
//! one source uses every worker with no user-space hand-off (see `sockets.rs`).

#![deny(unsafe_code)] // allowed only in sys.rs and (feature `uring`) uring.rs

pub mod bench_support;
mod mailbox;
mod outbox;
mod sockets;
mod stats;
mod sys;
mod tcp;
mod udp;
#[cfg(feature = "uring")]
mod uring;
mod worker;

#[cfg(test)]
mod tests;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

pub use crate::sip::Transport;
pub use outbox::Outbox;
pub use stats::{TransportStats, WorkerCounters, WorkerStats};

use mailbox::Mailbox;

/// The fast path's view of the transport: one instance per worker thread.
pub trait Handler: Send + 'static {
    /// Frame a TCP stream buffer (the SIP layer knows Content-Length).
    fn frame(&mut self, buf: &[u8]) -> Framing;
    /// One complete message (a UDP datagram or a framed TCP message).
    fn on_message(&mut self, msg: &[u8], src: &Source, out: &mut Outbox);
    /// A TCP stream that cannot be framed (e.g. missing Content-Length), or whose message does not
    /// fit the read buffer (`tcp_buf_max`): the handler may write a 400 (or 513) to `out`
    /// ([`Dest::Reply`]); the transport then flushes and closes the connection.
    fn on_bad_stream(&mut self, buf: &[u8], src: &Source, out: &mut Outbox);
    /// Called after each batch of events so the handler can flush per-batch work (optional).
    fn on_idle(&mut self, _out: &mut Outbox) {}
    /// A batch of datagrams about to be handled one by one, in this order (optional): the
    /// handler may start loading what it will need for them. Must not change what it does.
    fn prefetch(&mut self, _batch: &mut dyn Iterator<Item = &[u8]>) {}
}

/// What the handler found at the start of a TCP stream buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Not a whole message yet: wait for more bytes.
    Incomplete,
    /// A whole message of `len` bytes starts the buffer.
    Message { len: usize },
    /// A CRLFCRLF ping of `len` bytes: the transport answers CRLF (RFC 5626 §4.4.1).
    KeepAlive { len: usize },
    /// Stray CRLF between messages, skipped (RFC 3261 §7.5).
    Skip { len: usize },
    /// The stream cannot be framed: `on_bad_stream`, then close.
    Bad,
}

/// Where a message came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source {
    pub addr: SocketAddr,
    pub local: SocketAddr,
    pub transport: Transport,
    /// The TCP connection it arrived on (`None` for UDP).
    pub conn: Option<ConnRef>,
}

/// Identifies a worker thread (0-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId(pub u16);

/// A TCP connection, across workers. `generation` makes a stale reference (the slot was reused)
/// miss instead of writing to a stranger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnRef {
    pub worker: u16,
    pub token: u32,
    pub generation: u32,
}

impl ConnRef {
    /// The Via parameter name used by [`ConnRef::write_param`].
    pub const PARAM_NAME: &'static str = "cid";

    /// Tokens and generations fit in 24 bits (the slab is capped at 2^24 connections per
    /// worker and generations wrap there), so a reference packs into one `u64` that other
    /// modules can store without knowing this type (the registrar's bindings do).
    pub const FIELD_MASK: u32 = 0x00FF_FFFF;

    /// `worker << 48 | generation << 24 | token`.
    pub fn to_u64(self) -> u64 {
        (u64::from(self.worker) << 48)
            | (u64::from(self.generation & Self::FIELD_MASK) << 24)
            | u64::from(self.token & Self::FIELD_MASK)
    }

    /// The inverse of [`ConnRef::to_u64`].
    pub fn from_u64(v: u64) -> ConnRef {
        ConnRef {
            worker: (v >> 48) as u16,
            generation: ((v >> 24) as u32) & Self::FIELD_MASK,
            token: (v as u32) & Self::FIELD_MASK,
        }
    }

    /// Appends `cid=<worker>.<token>.<generation>` (no leading `;`), without allocating beyond
    /// `out`'s growth.
    pub fn write_param(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"cid=");
        write_u64(out, u64::from(self.worker));
        out.push(b'.');
        write_u64(out, u64::from(self.token));
        out.push(b'.');
        write_u64(out, u64::from(self.generation));
    }

    /// Parses `<worker>.<token>.<generation>`, with or without a leading `cid=`. `None` for
    /// anything else (overflow, missing parts, trailing bytes): it is network input.
    pub fn parse(value: &[u8]) -> Option<ConnRef> {
        let value = value.strip_prefix(b"cid=").unwrap_or(value);
        let mut parts = value.split(|&b| b == b'.');
        let worker = parse_u64(parts.next()?)?;
        let token = parse_u64(parts.next()?)?;
        let generation = parse_u64(parts.next()?)?;
        if parts.next().is_some() {
            return None;
        }
        Some(ConnRef {
            worker: u16::try_from(worker).ok()?,
            token: u32::try_from(token).ok()?,
            generation: u32::try_from(generation).ok()?,
        })
    }
}

fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// Where to send a message written to the [`Outbox`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest {
    /// To the source of the message being handled: the same UDP socket back to `src.addr`, or
    /// the same TCP connection (RFC 3261 §18.2.2).
    Reply,
    /// A datagram from this worker's UDP socket (source port = the SIP port).
    Udp(SocketAddr),
    /// The existing inbound or outbound connection to that address in this worker, or a new
    /// non-blocking connect (messages queue until it completes).
    Tcp(SocketAddr),
    /// A specific connection, possibly owned by another worker (handed over via its mailbox).
    Conn(ConnRef),
}

/// The external sender's mailbox (or a worker's) was full: the message was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("transport mailbox full")]
pub struct Full;

/// Transport settings. `Default` gives the documented defaults with `127.0.0.1:5060`.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    pub sip_addr: SocketAddr,
    /// Worker threads (0 = one per core).
    pub workers: usize,
    /// Datagrams per `recvmmsg`/`sendmmsg` call (1..=1024).
    pub udp_batch: usize,
    pub max_tcp_conns_per_worker: usize,
    /// Per-connection read buffer cap: a message that does not fit goes to `on_bad_stream`.
    pub tcp_buf_max: usize,
    pub tcp_idle_s: u64,
    /// Socket buffer sizes (best effort: the kernel caps them at `net.core.[rw]mem_max`).
    pub so_rcvbuf: usize,
    pub so_sndbuf: usize,
    /// Spread datagrams from one source over all workers (`SO_ATTACH_REUSEPORT_CBPF`).
    pub spread_single_source: bool,
    /// Write backlog per TCP connection past which reading it stops (backpressure); a message
    /// that would take the backlog past twice this is dropped and counted in `send_errors`.
    pub tcp_write_backlog_max: usize,
    /// Capacity of each worker's mailbox (messages).
    pub mailbox_cap: usize,
    /// Idle timeout override in milliseconds (tests); 0 = use `tcp_idle_s`.
    pub tcp_idle_ms_override: u64,
    /// Use the io_uring UDP path (feature `uring`; falls back to mio when setup fails).
    pub udp_uring: bool,
    /// Send UDP from a second socket on the same address that is in no epoll set (see
    /// `sockets.rs`; it needs the reuseport program, so one worker or spreading).
    pub udp_send_socket: bool,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            sip_addr: SocketAddr::from(([127, 0, 0, 1], 5060)),
            workers: 0,
            udp_batch: 32,
            max_tcp_conns_per_worker: 10_000,
            tcp_buf_max: 64 * 1024,
            tcp_idle_s: 120,
            so_rcvbuf: 4 << 20,
            so_sndbuf: 4 << 20,
            spread_single_source: true,
            tcp_write_backlog_max: 256 * 1024,
            mailbox_cap: 4096,
            tcp_idle_ms_override: 0,
            udp_uring: false,
            udp_send_socket: true,
        }
    }
}

impl TransportConfig {
    fn worker_count(&self) -> usize {
        let n = if self.workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.workers
        };
        n.clamp(1, usize::from(u16::MAX))
    }

    fn idle_ms(&self) -> u64 {
        if self.tcp_idle_ms_override > 0 {
            self.tcp_idle_ms_override
        } else {
            self.tcp_idle_s.saturating_mul(1000).max(1)
        }
    }
}

/// Sends from threads that are not workers (the slow path). Cheap to clone.
#[derive(Clone)]
pub struct TransportHandle {
    mailboxes: Arc<[Mailbox]>,
    next_udp: Arc<AtomicUsize>,
    stats: Arc<TransportStats>,
}

impl TransportHandle {
    /// Queues `bytes` for `dest`: UDP on any worker (round-robin), `Tcp(addr)` on the worker the
    /// address hashes to (so its connection is reused), `Conn` on its owner. `Dest::Reply` has no
    /// source here: it is dropped and counted in `send_errors`.
    pub fn send(&self, dest: Dest, bytes: Vec<u8>) -> Result<(), Full> {
        self.try_send(dest, bytes).map_err(|_| Full)
    }

    /// Like [`TransportHandle::send`], but a full mailbox hands the message back, so the
    /// caller can keep it and try again instead of losing it.
    pub fn try_send(&self, dest: Dest, bytes: Vec<u8>) -> Result<(), (Dest, Vec<u8>)> {
        let n = self.mailboxes.len();
        let worker = match dest {
            Dest::Reply => {
                self.stats.worker(0).add_send_errors(1);
                return Ok(());
            }
            Dest::Udp(_) => self.next_udp.fetch_add(1, Ordering::Relaxed) % n,
            Dest::Tcp(addr) => addr_worker(addr, n),
            Dest::Conn(r) => {
                let w = usize::from(r.worker);
                if w >= n {
                    self.stats.worker(0).add_send_errors(1);
                    return Ok(());
                }
                w
            }
        };
        let mailbox = &self.mailboxes[worker];
        mailbox.push_owned(dest, bytes).map_err(|(_, bytes)| {
            self.stats.worker(worker).add_mailbox_full(1);
            (dest, bytes)
        })
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.mailboxes.len()
    }
}

/// The worker an outbound TCP address belongs to (so every sender reuses one connection).
fn addr_worker(addr: SocketAddr, workers: usize) -> usize {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(addr);
    (h % workers as u64) as usize
}

/// The running transports: worker threads and what they share.
pub struct Transports {
    local: SocketAddr,
    handle: TransportHandle,
    stats: Arc<TransportStats>,
    shutdown: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    spread_active: bool,
}

impl Transports {
    /// The bound address (the real port when `sip_addr` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn handle(&self) -> TransportHandle {
        self.handle.clone()
    }

    pub fn stats(&self) -> Arc<TransportStats> {
        Arc::clone(&self.stats)
    }

    /// Whether the single-source spreading program is attached.
    pub fn spreading(&self) -> bool {
        self.spread_active
    }

    /// Sets the shutdown flag, wakes every worker and joins them.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        for m in self.handle.mailboxes.iter() {
            m.wake();
        }
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                tracing::error!("transport worker panicked");
            }
        }
    }
}

impl Drop for Transports {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Binds every worker's sockets (all on one port), then starts the workers. Errors from binding
/// come back here; nothing is left running on error.
pub fn start<H, F>(cfg: TransportConfig, factory: F) -> io::Result<Transports>
where
    H: Handler,
    F: Fn(WorkerId) -> H + Send + Sync + 'static,
{
    start_with(cfg, factory, |_| {})
}

/// Like [`start`], and calls `on_bound` with the bound address after binding and before any
/// handler is built (a handler that writes its own address, e.g. in a Via, learns the port that
/// port 0 became).
pub fn start_with<H, F, B>(cfg: TransportConfig, factory: F, on_bound: B) -> io::Result<Transports>
where
    H: Handler,
    F: Fn(WorkerId) -> H + Send + Sync + 'static,
    B: FnOnce(SocketAddr),
{
    let n = cfg.worker_count();
    let bound = sockets::bind_all(&cfg, n)?;
    on_bound(bound.local);
    let stats = Arc::new(TransportStats::new(n));
    let shutdown = Arc::new(AtomicBool::new(false));
    let mut polls = Vec::with_capacity(n);
    let mut mailboxes = Vec::with_capacity(n);
    for _ in 0..n {
        let poll = mio::Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), worker::WAKER)?;
        mailboxes.push(Mailbox::new(cfg.mailbox_cap, waker));
        polls.push(poll);
    }
    let mailboxes: Arc<[Mailbox]> = mailboxes.into();
    let factory = Arc::new(factory);
    let mut transports = Transports {
        local: bound.local,
        handle: TransportHandle {
            mailboxes: Arc::clone(&mailboxes),
            next_udp: Arc::new(AtomicUsize::new(0)),
            stats: Arc::clone(&stats),
        },
        stats: Arc::clone(&stats),
        shutdown: Arc::clone(&shutdown),
        threads: Vec::with_capacity(n),
        spread_active: bound.spreading,
    };
    let mut udp_send = bound.udp_send.into_iter();
    for (i, ((poll, udp), listener)) in polls.into_iter().zip(bound.udp).zip(bound.tcp).enumerate()
    {
        let id = WorkerId(i as u16);
        let parts = worker::Parts {
            id,
            cfg: cfg.clone(),
            poll,
            udp,
            udp_send: udp_send.next(),
            listener,
            local: bound.local,
            mailboxes: Arc::clone(&mailboxes),
            stats: Arc::clone(&stats),
            shutdown: Arc::clone(&shutdown),
        };
        let factory = Arc::clone(&factory);
        let spawned = std::thread::Builder::new()
            .name(format!("sip-worker-{i}"))
            .spawn(move || {
                let handler = factory(id);
                worker::run(parts, handler);
            });
        match spawned {
            Ok(t) => transports.threads.push(t),
            Err(e) => {
                transports.stop();
                return Err(e);
            }
        }
    }
    Ok(transports)
}
