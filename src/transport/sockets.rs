//! Binding: one UDP socket and one TCP listener per worker, all on the same address with
//! `SO_REUSEPORT`, plus the single-source spreading program on the UDP group.
//!
//! Each worker also gets a send-only UDP socket in the same group (same address and port, so a
//! peer sees replies and relays come from where it sent: RFC 3261 §18.2.2, RFC 3581). The
//! receiving socket sits in the worker's epoll set, which keeps an entry on its wait queue, so
//! the kernel would run a write-space wake-up through that queue (two IRQ-saving locks and
//! epoll's callback) for every datagram it frees after sending: ~3% of the worker's CPU under
//! load. The send-only socket is in no epoll set, so its wait queue is empty and that work is
//! skipped. The group's BPF program picks only receiving sockets (indices below the worker
//! count), so nothing is ever delivered to a send-only socket. Without the program (it failed
//! to attach, or several workers without spreading, where the kernel's own hash must pick) the
//! workers send from their receiving sockets as before.
//!
//! Over IPv4 the send-only sockets also set DF on everything they send (`IP_PMTUDISC_DO`, see
//! `sys::set_dont_fragment`): the kernel then writes IP ID 0 instead of hashing one per datagram.
//! A datagram over the path MTU, which the default would fragment, is refused with `EMSGSIZE`
//! and sent again from the receiving socket, which keeps the default (`udp.rs`). IPv6 has no ID
//! on unfragmented datagrams: nothing to save there.
#![forbid(unsafe_code)]

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

use super::{TransportConfig, sys};

/// With port 0 the UDP port is chosen by the kernel and TCP may find it taken: retry this often.
const BIND_ATTEMPTS: usize = 8;
const LISTEN_BACKLOG: i32 = 1024;

pub(crate) struct Bound {
    pub(crate) local: SocketAddr,
    pub(crate) udp: Vec<mio::net::UdpSocket>,
    /// Per worker, its send-only socket (empty when the workers send from `udp`).
    pub(crate) udp_send: Vec<std::net::UdpSocket>,
    pub(crate) tcp: Vec<mio::net::TcpListener>,
    pub(crate) spreading: bool,
}

pub(crate) fn bind_all(cfg: &TransportConfig, workers: usize) -> io::Result<Bound> {
    let mut last_err = None;
    for _ in 0..BIND_ATTEMPTS {
        match try_bind_all(cfg, workers) {
            Ok(b) => return Ok(b),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && cfg.sip_addr.port() == 0 => {
                last_err = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse)))
}

fn try_bind_all(cfg: &TransportConfig, workers: usize) -> io::Result<Bound> {
    let mut addr = cfg.sip_addr;
    let mut udp = Vec::with_capacity(workers);
    // The first socket picks the port when it is 0; the others join its reuseport group. The
    // group's socket order is the bind order, which the spreading program's index relies on.
    for _ in 0..workers {
        let s = udp_socket(cfg, addr)?;
        if addr.port() == 0 {
            addr = s.local_addr()?;
        }
        udp.push(s);
    }
    let mut tcp = Vec::with_capacity(workers);
    for _ in 0..workers {
        tcp.push(tcp_listener(addr)?);
    }
    // With one worker the program returns 0 for every datagram (random % 1): it only keeps the
    // send-only socket out of delivery. With several, it is the spreading program, attached
    // only when spreading is asked for.
    let want_spread = cfg.spread_single_source && workers > 1;
    let program = (want_spread || (cfg.udp_send_socket && workers == 1))
        && match sys::attach_random_reuseport_cbpf(udp[0].as_raw_fd(), workers as u32) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "transport: SO_ATTACH_REUSEPORT_CBPF failed; \
                    one source address will use one worker, and UDP leaves from the \
                    receiving sockets");
                false
            }
        };
    let spreading = program && workers > 1;
    // Joined after the program is in place, so the kernel's hash never sees them.
    let mut udp_send = Vec::with_capacity(workers);
    if program && cfg.udp_send_socket {
        for _ in 0..workers {
            let s = udp_socket(cfg, addr)?;
            if addr.is_ipv4() {
                // Best effort: without it the kernel only spends more per datagram.
                if let Err(e) = sys::set_dont_fragment(s.as_raw_fd()) {
                    tracing::warn!(error = %e, "transport: IP_MTU_DISCOVER");
                }
            }
            udp_send.push(s);
        }
    }
    Ok(Bound {
        local: addr,
        udp: udp.into_iter().map(mio::net::UdpSocket::from_std).collect(),
        udp_send,
        tcp: tcp
            .into_iter()
            .map(mio::net::TcpListener::from_std)
            .collect(),
        spreading,
    })
}

fn udp_socket(cfg: &TransportConfig, addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    // Best effort: the kernel caps these at net.core.[rw]mem_max.
    if let Err(e) = s.set_recv_buffer_size(cfg.so_rcvbuf) {
        tracing::warn!(error = %e, "transport: SO_RCVBUF");
    }
    if let Err(e) = s.set_send_buffer_size(cfg.so_sndbuf) {
        tracing::warn!(error = %e, "transport: SO_SNDBUF");
    }
    s.bind(&addr.into())?;
    Ok(s.into())
}

fn tcp_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(LISTEN_BACKLOG)?;
    Ok(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The send-only sockets set DF (IPv4); the receiving ones keep the system's default, so
    /// that what a send-only socket refuses as too big can be fragmented from them.
    #[test]
    fn only_the_send_only_sockets_set_dont_fragment() {
        for workers in [1, 2] {
            let cfg = TransportConfig {
                sip_addr: "127.0.0.1:0".parse().unwrap(),
                workers,
                ..TransportConfig::default()
            };
            let bound = bind_all(&cfg, workers).unwrap();
            assert_eq!(bound.udp_send.len(), workers);
            for s in &bound.udp_send {
                assert_eq!(
                    sys::mtu_discover(s.as_raw_fd()).unwrap(),
                    libc::IP_PMTUDISC_DO
                );
            }
            for s in &bound.udp {
                assert_ne!(
                    sys::mtu_discover(s.as_raw_fd()).unwrap(),
                    libc::IP_PMTUDISC_DO
                );
            }
        }
    }
}
