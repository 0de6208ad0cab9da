//! One worker thread: its event loop, the flush of the outbox to sockets and mailboxes, and the
//! mailbox drain.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};

use super::mailbox::Mailbox;
use super::outbox::Pending;
use super::tcp::TcpSide;
use super::udp::UdpSide;
use super::{Dest, Handler, Outbox, TransportConfig, TransportStats, WorkerId, WorkerStats};

pub(crate) const UDP: Token = Token(0);
pub(crate) const LISTENER: Token = Token(1);
pub(crate) const WAKER: Token = Token(2);
#[cfg(feature = "uring")]
pub(crate) const URING: Token = Token(3);
/// Connection tokens are `CONN_BASE + slab index`.
pub(crate) const CONN_BASE: usize = 16;

/// Readiness events taken per `poll` (more wait for the next round).
const EVENTS_CAP: usize = 1024;
/// Longest sleep: bounds how stale `now_ms` and the idle sweep can get.
const MAX_SLEEP_MS: u64 = 1000;

/// What a worker thread is started with.
pub(crate) struct Parts {
    pub(crate) id: WorkerId,
    pub(crate) cfg: TransportConfig,
    pub(crate) poll: Poll,
    pub(crate) udp: mio::net::UdpSocket,
    /// The send-only socket on the same address, if the transport made one.
    pub(crate) udp_send: Option<std::net::UdpSocket>,
    pub(crate) listener: mio::net::TcpListener,
    pub(crate) local: SocketAddr,
    pub(crate) mailboxes: Arc<[Mailbox]>,
    pub(crate) stats: Arc<TransportStats>,
    pub(crate) shutdown: Arc<AtomicBool>,
}

pub(crate) struct Worker<H> {
    pub(super) id: u16,
    pub(super) handler: H,
    pub(super) poll: Poll,
    pub(super) udp: UdpSide,
    pub(super) tcp: TcpSide,
    pub(super) out: Outbox,
    pub(super) mailboxes: Arc<[Mailbox]>,
    pub(super) stats: Arc<TransportStats>,
    pub(super) batch: usize,
    pub(super) now_ms: u64,
    /// The UDP socket may still hold datagrams (a read round hit its bound).
    pub(super) udp_again: bool,
    inbox: VecDeque<(Dest, Vec<u8>)>,
    shutdown: Arc<AtomicBool>,
    epoch: Instant,
    sweep_every_ms: u64,
    next_sweep_ms: u64,
    #[cfg(feature = "uring")]
    pub(super) uring: Option<super::uring::UringUdp>,
}

/// Builds the worker and runs its loop until shutdown. Setup errors are logged: the thread
/// ends and its sockets close (the others keep serving).
pub(crate) fn run<H: Handler>(parts: Parts, handler: H) {
    let id = parts.id.0;
    match Worker::new(parts, handler) {
        Ok(mut w) => w.run(),
        Err(e) => tracing::error!(worker = id, error = %e, "transport worker setup failed"),
    }
}

impl<H: Handler> Worker<H> {
    fn new(p: Parts, handler: H) -> io::Result<Worker<H>> {
        let batch = p.cfg.udp_batch.clamp(1, 1024);
        let idle_ms = p.cfg.idle_ms();
        let mut udp = UdpSide::new(p.udp, p.udp_send, p.local, batch);
        let mut tcp = TcpSide::new(p.listener, p.local, &p.cfg);
        let registry = p.poll.registry();
        #[cfg(feature = "uring")]
        let uring = if p.cfg.udp_uring {
            super::uring::UringUdp::setup(&udp, batch, registry)
        } else {
            None
        };
        #[cfg(feature = "uring")]
        let udp_on_mio = uring.is_none();
        #[cfg(not(feature = "uring"))]
        let udp_on_mio = true;
        if udp_on_mio {
            registry.register(&mut udp.socket, UDP, mio::Interest::READABLE)?;
        }
        registry.register(&mut tcp.listener, LISTENER, mio::Interest::READABLE)?;
        #[cfg(feature = "uring")]
        if uring.is_some() {
            p.stats.worker(usize::from(p.id.0)).add_uring_active(1);
        }
        let cap = p.cfg.mailbox_cap.max(1);
        Ok(Worker {
            id: p.id.0,
            handler,
            poll: p.poll,
            udp,
            tcp,
            out: Outbox::with_pool(batch * 2),
            mailboxes: p.mailboxes,
            stats: p.stats,
            batch,
            now_ms: 0,
            udp_again: false,
            inbox: VecDeque::with_capacity(cap),
            shutdown: p.shutdown,
            epoch: Instant::now(),
            sweep_every_ms: (idle_ms / 4).clamp(10, 1000),
            next_sweep_ms: 0,
            #[cfg(feature = "uring")]
            uring,
        })
    }

    pub(super) fn stats(&self) -> &WorkerStats {
        self.stats.worker(usize::from(self.id))
    }

    fn run(&mut self) {
        let mut events = Events::with_capacity(EVENTS_CAP);
        self.next_sweep_ms = self.sweep_every_ms;
        while !self.shutdown.load(Ordering::Acquire) {
            let timeout_ms = if self.more_work() {
                0
            } else {
                self.next_sweep_ms
                    .saturating_sub(self.now_ms)
                    .min(MAX_SLEEP_MS)
            };
            if let Err(e) = self
                .poll
                .poll(&mut events, Some(Duration::from_millis(timeout_ms)))
            {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(worker = self.id, error = %e, "transport: poll failed");
                break;
            }
            self.now_ms = self.epoch.elapsed().as_millis() as u64;
            for ev in events.iter() {
                match ev.token() {
                    UDP => self.udp_ready(),
                    LISTENER => self.accept_ready(),
                    WAKER => self.drain_mailbox(),
                    #[cfg(feature = "uring")]
                    URING => self.uring_ready(),
                    Token(t) if t >= CONN_BASE => self.conn_ready(
                        (t - CONN_BASE) as u32,
                        ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                        ev.is_writable(),
                    ),
                    Token(_) => {}
                }
            }
            self.retry_bounded_work();
            self.handler.on_idle(&mut self.out);
            self.flush();
            if self.now_ms >= self.next_sweep_ms {
                self.sweep_idle();
                self.refresh_udp_drops();
                self.next_sweep_ms = self.now_ms + self.sweep_every_ms;
            }
        }
        self.tcp.close_all(self.poll.registry());
    }

    /// Work left over by a bounded read round: poll without sleeping.
    fn more_work(&mut self) -> bool {
        #[cfg(feature = "uring")]
        if self.uring.as_mut().is_some_and(|u| u.has_completions()) {
            return true;
        }
        self.udp_again || !self.tcp.rearm.is_empty()
    }

    fn retry_bounded_work(&mut self) {
        if self.udp_again {
            self.udp_again = false;
            self.udp_ready();
        }
        #[cfg(feature = "uring")]
        if self.uring.as_mut().is_some_and(|u| u.has_completions()) {
            self.uring_ready();
        }
        let mut rearm = std::mem::take(&mut self.tcp.rearm);
        for idx in rearm.drain(..) {
            self.tcp_read(idx);
        }
        // Keep the allocation; reads re-armed during this pass are in `self.tcp.rearm`.
        std::mem::swap(&mut rearm, &mut self.tcp.rearm);
        self.tcp.rearm.append(&mut rearm);
    }

    /// Sends everything in the outbox: UDP in `sendmmsg` batches, TCP into connections, other
    /// workers' connections through their mailboxes. Buffers go back to their pools.
    pub(super) fn flush(&mut self) {
        if self.out.pending.is_empty() {
            return;
        }
        self.flush_udp();
        let mut pending = std::mem::take(&mut self.out.pending);
        for p in pending.drain(..) {
            match p.dest {
                Dest::Udp(_) => {}
                // Reply outside of a message's handling has nowhere to go.
                Dest::Reply => self.stats().add_send_errors(1),
                Dest::Tcp(addr) => self.tcp_send_addr(addr, &p.buf),
                Dest::Conn(r) if r.worker == self.id => self.tcp_send_ref(r, &p.buf),
                Dest::Conn(r) => match self.mailboxes.get(usize::from(r.worker)) {
                    Some(m) => {
                        if m.push_copy(p.dest, &p.buf).is_err() {
                            self.stats().add_mailbox_full(1);
                        }
                    }
                    None => self.stats().add_send_errors(1),
                },
            }
            self.recycle(p);
        }
        self.out.pending = pending;
    }

    fn flush_udp(&mut self) {
        #[cfg(feature = "uring")]
        if let Some(u) = self.uring.as_mut() {
            // Counted on completion; what found no free slot falls through to sendmmsg.
            let stats = self.stats.worker(usize::from(self.id));
            u.send_pending(&mut self.out.pending, stats);
        }
        let tally = self.udp.send_pending(&self.out.pending);
        let stats = self.stats();
        stats.add_udp_tx(tally.sent);
        stats.add_send_errors(tally.failed);
    }

    fn recycle(&mut self, p: Pending) {
        if p.from_mailbox {
            self.mailboxes[usize::from(self.id)].recycle(p.buf);
        } else {
            self.out.recycle(p.buf);
        }
    }

    /// Sends others asked this worker to perform.
    fn drain_mailbox(&mut self) {
        let mut inbox = std::mem::take(&mut self.inbox);
        self.mailboxes[usize::from(self.id)].drain_into(&mut inbox);
        for (dest, buf) in inbox.drain(..) {
            let p = Pending {
                dest,
                buf,
                from_mailbox: true,
            };
            match dest {
                Dest::Udp(_) => {
                    self.out.pending.push(p);
                    if self.out.pending.len() >= self.batch {
                        self.flush();
                    }
                }
                Dest::Conn(r) if r.worker == self.id => {
                    self.tcp_send_ref(r, &p.buf);
                    self.recycle(p);
                }
                Dest::Tcp(addr) => {
                    self.tcp_send_addr(addr, &p.buf);
                    self.recycle(p);
                }
                Dest::Conn(_) | Dest::Reply => {
                    self.stats().add_send_errors(1);
                    self.recycle(p);
                }
            }
        }
        self.inbox = inbox;
        self.flush();
    }
}
