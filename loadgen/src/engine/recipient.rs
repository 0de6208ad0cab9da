//! Playing the recipients: loopback UDP sockets (or a TCP listener) that the generator registers
//! as contacts. Each relayed MESSAGE is answered 200 like a UAS would (RFC 3261 §8.2.6), and
//! checked: a MESSAGE whose expectation was not "relay" (a blocked sender got through), or that
//! reached the wrong recipient, is counted as a mismatch here too.
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use serde::Serialize;

use super::conn::{bind_udp, drain_frames};
use super::{Contacts, StopFlag};
use crate::sip::Transport;
use crate::sip::scan::{self, CallId};
use crate::sip::template::write_response;
use crate::stats::MISMATCH_EXAMPLES;
use crate::sys::{self, CpuTime, MAX_BATCH, RawAddr, RecvBatch};
use crate::workload::{Decision, Kind, Workload};

const LISTENER: Token = Token(usize::MAX - 2);
const TCP_BASE: usize = 1 << 20;
const MAX_TCP_CONNECTIONS: usize = 4096;

#[derive(Clone, Debug)]
pub struct RecipientConfig {
    pub transport: Transport,
    pub ip: IpAddr,
    /// UDP sockets; user `n` is at socket `n % sockets`.
    pub sockets: usize,
    /// First port (socket i binds base + i); 0 for ephemeral ports.
    pub base_port: u16,
    pub sockbuf_bytes: usize,
    /// Hard bound on the recipients' life.
    pub max_lifetime: Duration,
}

/// What the recipient side saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RecipientStats {
    pub delivered: u64,
    pub answered: u64,
    /// Relayed MESSAGEs that should have been blocked (or answered 404/480): mismatches.
    pub unexpected_deliveries: u64,
    /// Relayed to the wrong recipient or the wrong contact: mismatches.
    pub misrouted: u64,
    /// MESSAGEs without our Call-ID (another run, another client).
    pub foreign: u64,
    /// `churn`: probe MESSAGEs (policy wait and change probes) that were relayed.
    pub probe_deliveries: u64,
    /// `churn`: relayed MESSAGEs between a churned pair; the sender side judges them by the
    /// pair's history, so only their routing is checked here.
    pub churn_deliveries: u64,
    pub unparsable: u64,
    pub examples: Vec<String>,
    pub cpu: CpuTime,
    pub socket_drops: u64,
}

impl RecipientStats {
    pub fn mismatches(&self) -> u64 {
        self.unexpected_deliveries + self.misrouted
    }
}

pub struct Recipients {
    pub contacts: Contacts,
    pub udp_ports: Vec<u16>,
    stop: StopFlag,
    handle: JoinHandle<io::Result<RecipientStats>>,
}

impl Recipients {
    /// Binds the sockets and starts answering. `run_id` is the MESSAGE phase's.
    pub fn start(
        cfg: RecipientConfig,
        workload: Arc<Workload>,
        run_id: u32,
    ) -> anyhow::Result<Self> {
        let mut udp = Vec::new();
        let mut listener = None;
        let ports = match cfg.transport {
            Transport::Udp => {
                for i in 0..cfg.sockets.clamp(1, 1024) {
                    let port = if cfg.base_port == 0 {
                        0
                    } else {
                        cfg.base_port.saturating_add(i as u16)
                    };
                    let socket = bind_udp(cfg.ip, port, cfg.sockbuf_bytes)?;
                    udp.push(mio::net::UdpSocket::from_std(socket));
                }
                udp.iter()
                    .map(|s| s.local_addr().map(|a| a.port()))
                    .collect::<io::Result<Vec<_>>>()?
            }
            Transport::Tcp => {
                let std_listener =
                    std::net::TcpListener::bind(SocketAddr::new(cfg.ip, cfg.base_port))?;
                std_listener.set_nonblocking(true)?;
                let port = std_listener.local_addr()?.port();
                listener = Some(mio::net::TcpListener::from_std(std_listener));
                vec![port]
            }
        };
        let contacts = Contacts {
            ip: cfg.ip,
            ports: ports.clone(),
        };
        let cfg_is_udp = cfg.transport == Transport::Udp;
        let stop = StopFlag::default();
        let side = Side {
            workload,
            run_id,
            stats: RecipientStats::default(),
            out: Vec::with_capacity(1024),
            tag: String::with_capacity(32),
        };
        let thread_stop = stop.clone();
        let handle = std::thread::Builder::new()
            .name("loadgen-recipients".into())
            .spawn(move || serve(cfg, udp, listener, side, thread_stop))?;
        let udp_ports = if cfg_is_udp { ports } else { Vec::new() };
        Ok(Self {
            contacts,
            udp_ports,
            stop,
            handle,
        })
    }

    /// Stops the recipients and returns what they counted (reading their kernel drop counters
    /// while the sockets are still open).
    pub fn finish(self, transport: Transport) -> anyhow::Result<RecipientStats> {
        let drops = if transport == Transport::Udp {
            crate::kernel::socket_drops(&self.udp_ports)
        } else {
            0
        };
        self.stop.stop();
        let mut stats = self
            .handle
            .join()
            .map_err(|_| anyhow::anyhow!("recipient thread panicked"))??;
        stats.socket_drops = drops;
        Ok(stats)
    }
}

struct Side {
    workload: Arc<Workload>,
    run_id: u32,
    stats: RecipientStats,
    out: Vec<u8>,
    /// The To tag of the answer being written.
    tag: String,
}

impl Side {
    /// Writes the answer to `request` into `self.out`; false when nothing is to be sent.
    fn answer(&mut self, request: &[u8], socket: Option<(usize, usize)>) -> bool {
        self.out.clear();
        let Some(method) = scan::request_method(request) else {
            if scan::status_code(request).is_none() {
                self.stats.unparsable += 1;
            }
            return false;
        };
        let (code, reason) = match method {
            b"ACK" => return false,
            b"MESSAGE" => {
                self.stats.delivered += 1;
                self.check_delivery(request, socket);
                (200, "OK")
            }
            b"OPTIONS" => (200, "OK"),
            _ => (501, "Not Implemented"),
        };
        self.tag.clear();
        // Writing to a String cannot fail; the capacity is reused (no allocation per message).
        let _ = write!(self.tag, "lgr{:x}", self.stats.delivered);
        if write_response(request, code, reason, &self.tag, &mut self.out) {
            self.stats.answered += 1;
            true
        } else {
            self.stats.unparsable += 1;
            false
        }
    }

    fn check_delivery(&mut self, request: &[u8], socket: Option<(usize, usize)>) {
        let Some(id) = CallId::of_message(request).filter(|id| id.run == self.run_id) else {
            self.stats.foreign += 1;
            return;
        };
        if id.seq & crate::churn::probe::PROBE_SEQ_BIT != 0 {
            self.stats.probe_deliveries += 1;
            return;
        }
        let plan = self.workload.plan(id.seq);
        if plan.kind != Kind::Message {
            self.stats.foreign += 1;
            return;
        }
        let to_user = scan::header(request, b"To", Some(b't')).and_then(user_of);
        let wrong_socket =
            socket.is_some_and(|(index, count)| plan.recipient as usize % count != index);
        let mut problem = None;
        let churned = self
            .workload
            .churn_index(plan.recipient, plan.sender)
            .is_some();
        if churned {
            self.stats.churn_deliveries += 1;
        }
        if plan.decision != Decision::Relay && !churned {
            self.stats.unexpected_deliveries += 1;
            problem = Some(format!("delivered, expected {}", plan.decision.name()));
        } else if to_user != Some(plan.recipient) || wrong_socket {
            self.stats.misrouted += 1;
            problem = Some("delivered to the wrong recipient or contact".to_owned());
        }
        if let Some(problem) = problem {
            if self.stats.examples.len() < MISMATCH_EXAMPLES {
                self.stats.examples.push(format!(
                    "seq {} u{} -> u{}: {problem}",
                    id.seq, plan.sender, plan.recipient
                ));
            }
        }
    }
}

/// `<sip:u123@host>;tag=..` -> 123.
fn user_of(value: &[u8]) -> Option<u32> {
    let start = value
        .windows(5)
        .position(|w| w.eq_ignore_ascii_case(b"sip:u"))?
        + 5;
    let digits = value[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    std::str::from_utf8(&value[start..start + digits])
        .ok()?
        .parse()
        .ok()
}

/// Where a UDP response goes: the top Via's received/rport or sent-by (RFC 3261 §18.2.2,
/// RFC 3581 §4), else the packet's source.
fn response_destination(request: &[u8], source: Option<SocketAddr>) -> Option<SocketAddr> {
    let via = scan::header(request, b"Via", Some(b'v')).and_then(scan::parse_via);
    let routed = via.and_then(|via| {
        let host = via.received.unwrap_or(via.host);
        let ip: IpAddr = std::str::from_utf8(host).ok()?.parse().ok()?;
        Some(SocketAddr::new(ip, via.rport.or(via.port).unwrap_or(5060)))
    });
    routed.or(source).filter(|addr| addr.ip().is_loopback())
}

struct TcpPeer {
    stream: mio::net::TcpStream,
    read_buf: Vec<u8>,
    write_buf: Vec<u8>,
    broken: bool,
}

fn serve(
    cfg: RecipientConfig,
    mut udp: Vec<mio::net::UdpSocket>,
    mut listener: Option<mio::net::TcpListener>,
    mut side: Side,
    stop: StopFlag,
) -> io::Result<RecipientStats> {
    let cpu_start = sys::thread_cpu();
    let mut poll = Poll::new()?;
    for (i, socket) in udp.iter_mut().enumerate() {
        poll.registry()
            .register(socket, Token(i), Interest::READABLE)?;
    }
    if let Some(listener) = listener.as_mut() {
        poll.registry()
            .register(listener, LISTENER, Interest::READABLE)?;
    }
    let mut peers: Vec<Option<TcpPeer>> = Vec::new();
    let mut events = Events::with_capacity(256);
    let mut recv = RecvBatch::new();
    let mut replies: Vec<Vec<u8>> = (0..MAX_BATCH).map(|_| Vec::with_capacity(1024)).collect();
    let mut dests: Vec<RawAddr> = Vec::new();
    let started = Instant::now();
    let socket_count = udp.len();
    // Bounded by the stop flag and max_lifetime.
    let mut ready: Vec<usize> = Vec::with_capacity(socket_count);
    while !stop.is_set() && started.elapsed() < cfg.max_lifetime {
        poll.poll(&mut events, Some(Duration::from_millis(20)))?;
        // Level-style: try every UDP socket that had an event, until drained.
        ready.clear();
        for event in &events {
            match event.token() {
                LISTENER => accept_all(listener.as_ref(), &poll, &mut peers)?,
                Token(t) if t >= TCP_BASE => {
                    if let Some(Some(peer)) = peers.get_mut(t - TCP_BASE) {
                        serve_tcp(peer, &mut side);
                    }
                }
                Token(i) => ready.push(i),
            }
        }
        for &i in &ready {
            let Some(socket) = udp.get(i) else { continue };
            // Bounded: at most 256 batches per wake-up; the next poll comes back for the rest.
            for _ in 0..256 {
                let n = recv.recv(socket.as_raw_fd(), MAX_BATCH).unwrap_or(0);
                dests.clear();
                for d in 0..n {
                    let (datagram, source) = recv.datagram(d);
                    if side.answer(datagram, Some((i, socket_count))) {
                        if let Some(dest) = response_destination(datagram, source) {
                            let reply = &mut replies[dests.len()];
                            reply.clear();
                            reply.extend_from_slice(&side.out);
                            dests.push(RawAddr::new(dest));
                        }
                    }
                }
                if !dests.is_empty() {
                    let _ = sys::send_batch(socket.as_raw_fd(), &replies[..dests.len()], &dests);
                }
                if n < MAX_BATCH {
                    break;
                }
            }
        }
        for peer in peers.iter_mut() {
            if peer.as_ref().is_some_and(|p| p.broken) {
                *peer = None;
            }
        }
    }
    side.stats.cpu = sys::thread_cpu().since(cpu_start);
    Ok(side.stats)
}

fn accept_all(
    listener: Option<&mio::net::TcpListener>,
    poll: &Poll,
    peers: &mut Vec<Option<TcpPeer>>,
) -> io::Result<()> {
    let Some(listener) = listener else {
        return Ok(());
    };
    // Bounded by MAX_TCP_CONNECTIONS.
    while peers.iter().filter(|p| p.is_some()).count() < MAX_TCP_CONNECTIONS {
        match listener.accept() {
            Ok((mut stream, peer)) => {
                if !peer.ip().is_loopback() {
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let index = peers
                    .iter()
                    .position(Option::is_none)
                    .unwrap_or(peers.len());
                poll.registry().register(
                    &mut stream,
                    Token(TCP_BASE + index),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                let peer = TcpPeer {
                    stream,
                    read_buf: Vec::new(),
                    write_buf: Vec::new(),
                    broken: false,
                };
                if index == peers.len() {
                    peers.push(Some(peer));
                } else {
                    peers[index] = Some(peer);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn serve_tcp(peer: &mut TcpPeer, side: &mut Side) {
    let mut chunk = [0u8; 16 * 1024];
    // Bounded: 1024 reads per wake-up.
    for _ in 0..1024 {
        match peer.stream.read(&mut chunk) {
            Ok(0) => {
                peer.broken = true;
                break;
            }
            Ok(n) => peer.read_buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                peer.broken = true;
                break;
            }
        }
    }
    let TcpPeer {
        read_buf,
        write_buf,
        broken,
        stream,
    } = peer;
    drain_frames(read_buf, broken, |msg| {
        if side.answer(msg, None) {
            write_buf.extend_from_slice(&side.out);
        }
    });
    let mut written = 0;
    while written < write_buf.len() {
        match stream.write(&write_buf[written..]) {
            Ok(0) => break,
            Ok(n) => written += n,
            Err(_) => break,
        }
    }
    write_buf.drain(..written);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_numbers_and_destinations() {
        assert_eq!(user_of(b"<sip:u42@example.com>;tag=x"), Some(42));
        assert_eq!(user_of(b"sip:bob@example.com"), None);
        let req = b"MESSAGE sip:u1@x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1;rport=6000;received=127.0.0.2\r\n\r\n";
        assert_eq!(
            response_destination(req, None),
            "127.0.0.2:6000".parse().ok()
        );
        let plain =
            b"MESSAGE sip:u1@x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n\r\n";
        assert_eq!(
            response_destination(plain, None),
            "127.0.0.1:5070".parse().ok()
        );
        let named =
            b"MESSAGE sip:u1@x SIP/2.0\r\nVia: SIP/2.0/UDP imserver.local;branch=z9hG4bK1\r\n\r\n";
        let src: SocketAddr = "127.0.0.1:5999".parse().expect("addr");
        assert_eq!(response_destination(named, Some(src)), Some(src));
        let far =
            b"MESSAGE sip:u1@x SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bK1\r\n\r\n";
        assert_eq!(
            response_destination(far, None),
            None,
            "never answer off-host"
        );
    }
}
