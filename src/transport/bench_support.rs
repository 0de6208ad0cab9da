//! Measurement, not tests: UDP echo throughput on loopback for (a) the transport with an echo
//! handler (mio or io_uring path) and (b) a bare blocking `recvmmsg`/`sendmmsg` echo, both
//! driven by the same closed-loop load (each client keeps `window` datagrams in flight and sends
//! one more for every echo it gets back). The figures include the client's CPU on the same
//! machine; compare them with each other, not with a NIC.
//!
//! Run: `IMSERVER_BENCH_MS=3000 cargo test --release --test transport_echo -- --nocapture`
//! (see `tests/transport_echo.rs`).
#![forbid(unsafe_code)]

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::sys::{RecvBatch, SendBatch, attach_random_reuseport_cbpf};
use super::{Dest, Framing, Handler, Outbox, Source, TransportConfig, WorkerId};

/// What to measure.
#[derive(Clone, Debug)]
pub struct EchoBenchConfig {
    pub workers: usize,
    pub duration_ms: u64,
    /// Client threads, each with its own socket (1 = the single-source case of a SIP core).
    pub clients: usize,
    /// Datagrams each client keeps in flight.
    pub window: usize,
    pub payload_len: usize,
    pub udp_batch: usize,
    /// Transport only: use the io_uring path (needs the `uring` feature).
    pub uring: bool,
}

impl Default for EchoBenchConfig {
    fn default() -> Self {
        EchoBenchConfig {
            workers: 2,
            duration_ms: 2000,
            clients: 1,
            window: 256,
            payload_len: 512,
            udp_batch: 32,
            uring: false,
        }
    }
}

/// What was measured.
#[derive(Clone, Debug)]
pub struct EchoBenchReport {
    pub label: &'static str,
    /// Echoes the clients got back.
    pub echoed: u64,
    pub elapsed_s: f64,
    /// Datagrams each server worker received.
    pub per_worker_rx: Vec<u64>,
    /// Workers whose UDP ran on io_uring (0 when the uring path fell back to mio).
    pub uring_workers: u64,
}

impl EchoBenchReport {
    /// Echo round trips per second (each is one datagram in and one out at the server).
    pub fn echoes_per_s(&self) -> f64 {
        self.echoed as f64 / self.elapsed_s.max(1e-9)
    }

    pub fn per_worker_per_s(&self) -> Vec<f64> {
        self.per_worker_rx
            .iter()
            .map(|&n| n as f64 / self.elapsed_s.max(1e-9))
            .collect()
    }
}

impl std::fmt::Display for EchoBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let per: Vec<String> = self
            .per_worker_per_s()
            .iter()
            .map(|r| format!("{:.0}", r))
            .collect();
        write!(
            f,
            "{:<16} {:>10.0} echoes/s  ({} in {:.2} s; per worker rx/s [{}]; uring workers {})",
            self.label,
            self.echoes_per_s(),
            self.echoed,
            self.elapsed_s,
            per.join(", "),
            self.uring_workers
        )
    }
}

/// The simplest handler: every datagram back to where it came from.
pub struct EchoHandler;

impl Handler for EchoHandler {
    fn frame(&mut self, _buf: &[u8]) -> Framing {
        Framing::Bad
    }
    fn on_message(&mut self, msg: &[u8], _src: &Source, out: &mut Outbox) {
        out.buffer().extend_from_slice(msg);
        out.push(Dest::Reply);
    }
    fn on_bad_stream(&mut self, _buf: &[u8], _src: &Source, _out: &mut Outbox) {}
}

/// (a) The transport with [`EchoHandler`].
pub fn bench_udp_echo(cfg: &EchoBenchConfig) -> io::Result<EchoBenchReport> {
    let tcfg = TransportConfig {
        sip_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        workers: cfg.workers,
        udp_batch: cfg.udp_batch,
        max_tcp_conns_per_worker: 16,
        spread_single_source: true,
        udp_uring: cfg.uring,
        ..TransportConfig::default()
    };
    let t = super::start(tcfg, |_: WorkerId| EchoHandler)?;
    let (echoed, elapsed_s) = drive_clients(t.local_addr(), cfg)?;
    let per_worker_rx = t.stats().per_worker().iter().map(|w| w.udp_rx).collect();
    let uring_workers = t.stats().total().uring_active;
    t.shutdown();
    Ok(EchoBenchReport {
        label: if cfg.uring {
            "transport/uring"
        } else {
            "transport/mio"
        },
        echoed,
        elapsed_s,
        per_worker_rx,
        uring_workers,
    })
}

/// (b) A bare echo: `workers` threads, each a blocking recvmmsg/sendmmsg loop on its own
/// SO_REUSEPORT socket (with the same random spreading program), no poller, no handler.
pub fn bench_bare_echo(cfg: &EchoBenchConfig) -> io::Result<EchoBenchReport> {
    let workers = cfg.workers.max(1);
    let mut addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut sockets = Vec::with_capacity(workers);
    for _ in 0..workers {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        s.set_reuse_port(true)?;
        let _ = s.set_recv_buffer_size(4 << 20);
        let _ = s.set_send_buffer_size(4 << 20);
        s.bind(&addr.into())?;
        let s: UdpSocket = s.into();
        addr = s.local_addr()?;
        s.set_read_timeout(Some(Duration::from_millis(50)))?;
        sockets.push(s);
    }
    if workers > 1 {
        attach_random_reuseport_cbpf(sockets[0].as_raw_fd(), workers as u32)?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let counters: Arc<Vec<AtomicU64>> = Arc::new((0..workers).map(|_| AtomicU64::new(0)).collect());
    let batch = cfg.udp_batch;
    let threads: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let (stop, counters) = (Arc::clone(&stop), Arc::clone(&counters));
            std::thread::spawn(move || {
                let (mut rx, mut tx) = (RecvBatch::new(batch), SendBatch::new(batch));
                while !stop.load(Ordering::Relaxed) {
                    let Ok(n) = rx.recv_wait(s.as_raw_fd()) else {
                        continue;
                    };
                    counters[i].fetch_add(n as u64, Ordering::Relaxed);
                    let rx = &rx;
                    tx.send_all(
                        s.as_raw_fd(),
                        (0..n).filter_map(|k| rx.datagram(k).map(|(d, from)| (from, d))),
                    );
                }
            })
        })
        .collect();
    let res = drive_clients(addr, cfg);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let (echoed, elapsed_s) = res?;
    Ok(EchoBenchReport {
        label: "bare",
        echoed,
        elapsed_s,
        per_worker_rx: counters.iter().map(|c| c.load(Ordering::Relaxed)).collect(),
        uring_workers: 0,
    })
}

/// Closed-loop load: returns (echoes received, seconds).
fn drive_clients(server: SocketAddr, cfg: &EchoBenchConfig) -> io::Result<(u64, f64)> {
    let deadline = Instant::now() + Duration::from_millis(cfg.duration_ms);
    let started = Instant::now();
    let threads: Vec<_> = (0..cfg.clients.max(1))
        .map(|_| {
            let cfg = cfg.clone();
            std::thread::spawn(move || client(server, &cfg, deadline))
        })
        .collect();
    let mut echoed = 0;
    for t in threads {
        echoed += t
            .join()
            .map_err(|_| io::Error::other("bench client panicked"))??;
    }
    Ok((echoed, started.elapsed().as_secs_f64()))
}

fn client(server: SocketAddr, cfg: &EchoBenchConfig, deadline: Instant) -> io::Result<u64> {
    let s = UdpSocket::bind("127.0.0.1:0")?;
    s.set_read_timeout(Some(Duration::from_millis(50)))?;
    let fd = s.as_raw_fd();
    let payload = vec![b'x'; cfg.payload_len.clamp(1, 8192)];
    let window = cfg.window.max(1);
    let (mut rx, mut tx) = (RecvBatch::new(cfg.udp_batch), SendBatch::new(cfg.udp_batch));
    tx.send_all(fd, (0..window).map(|_| (server, payload.as_slice())));
    let mut echoed = 0u64;
    while Instant::now() < deadline {
        match rx.recv_wait(fd) {
            Ok(n) => {
                echoed += n as u64;
                tx.send_all(fd, (0..n).map(|_| (server, payload.as_slice())));
            }
            // A timeout means datagrams were lost: refill the window.
            Err(_) => {
                tx.send_all(fd, (0..window).map(|_| (server, payload.as_slice())));
            }
        }
    }
    Ok(echoed)
}
