//! The worker's UDP socket: `recvmmsg` batches into the handler, `sendmmsg` batches out.
//!
//! RFC 3261 §18.1.1/§18.2.2: one message per datagram; replies leave from the socket the request
//! arrived on (same port), to the source address (RFC 3581 symmetric response).
#![forbid(unsafe_code)]

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use super::outbox::Pending;
use super::sys::{self, RecvBatch, SendBatch, SendTally};
use super::worker::Worker;
use super::{Dest, Handler, Source, Transport};

/// `recvmmsg` calls per readiness event before yielding to other sockets (fairness); the worker
/// comes back without sleeping.
const RECV_ROUNDS_PER_EVENT: usize = 8;

pub(crate) struct UdpSide {
    pub(crate) socket: mio::net::UdpSocket,
    /// Same address as `socket`, in no epoll set: sends leave from here when present (see
    /// `sockets.rs` for why).
    send_socket: Option<std::net::UdpSocket>,
    pub(crate) local: SocketAddr,
    rx: RecvBatch,
    tx: SendBatch,
}

impl UdpSide {
    pub(crate) fn new(
        socket: mio::net::UdpSocket,
        send_socket: Option<std::net::UdpSocket>,
        local: SocketAddr,
        batch: usize,
    ) -> UdpSide {
        let local = socket.local_addr().unwrap_or(local);
        UdpSide {
            socket,
            send_socket,
            local,
            rx: RecvBatch::new(batch),
            tx: SendBatch::new(batch),
        }
    }

    /// Sends the UDP entries of `pending` (the others are left to the caller; an empty buffer
    /// was already taken by the io_uring path).
    pub(crate) fn send_pending(&mut self, pending: &[Pending]) -> SendTally {
        // A send-only socket sets DF (IPv4, see `sockets.rs`): what it refuses as too big leaves
        // from the receiving socket, which lets the kernel fragment it.
        let (fd, fallback) = match &self.send_socket {
            Some(s) => (s.as_raw_fd(), Some(self.socket.as_raw_fd())),
            None => (self.socket.as_raw_fd(), None),
        };
        self.tx.send_all_with(
            fd,
            fallback,
            pending.iter().filter_map(|p| match p.dest {
                Dest::Udp(addr) if !p.buf.is_empty() => Some((addr, p.buf.as_slice())),
                _ => None,
            }),
        )
    }
}

impl<H: Handler> Worker<H> {
    /// Copies the kernel's drop count for this worker's UDP socket into the metrics (called on
    /// the periodic sweep, at most a second apart).
    pub(crate) fn refresh_udp_drops(&self) {
        match sys::socket_drops(self.udp.socket.as_raw_fd()) {
            Ok(total) => self.stats().set_rx_drops(total),
            Err(e) => tracing::debug!(worker = self.id, error = %e, "transport: SO_MEMINFO"),
        }
    }

    /// Reads datagrams until the socket is empty or the round bound is hit.
    pub(crate) fn udp_ready(&mut self) {
        let fd = self.udp.socket.as_raw_fd();
        for _ in 0..RECV_ROUNDS_PER_EVENT {
            let n = match self.udp.rx.recv(fd) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // e.g. a queued ICMP error: nothing to read this round.
                    tracing::debug!(worker = self.id, error = %e, "transport: recvmmsg");
                    return;
                }
            };
            let stats = self.stats.worker(usize::from(self.id));
            stats.add_udp_rx(n as u64);
            if n > 1 {
                let rx = &self.udp.rx;
                self.handler
                    .prefetch(&mut (0..n).filter_map(|i| rx.datagram(i).map(|(m, _)| m)));
            }
            for i in 0..n {
                let Some((msg, peer)) = self.udp.rx.datagram(i) else {
                    continue;
                };
                let src = Source {
                    addr: peer,
                    local: self.udp.local,
                    transport: Transport::Udp,
                    conn: None,
                };
                self.out.set_reply(Some(Dest::Udp(peer)));
                self.handler.on_message(msg, &src, &mut self.out);
            }
            self.out.set_reply(None);
            self.flush();
            if n < self.udp.rx.capacity() {
                // A short batch emptied the queue; a datagram arriving after it re-arms the
                // edge-triggered readiness.
                return;
            }
        }
        self.udp_again = true;
    }
}
