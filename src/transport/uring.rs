//! Optional io_uring UDP path (feature `uring`, config `udp_uring`): `batch` RecvMsg operations
//! stay armed on the worker's UDP socket, each with its own buffer; replies go out as SendMsg
//! operations whose buffers are swapped in from the outbox (no copy). The ring's fd is registered
//! with the worker's mio `Poll` (it polls readable while completions wait), so TCP, the mailbox
//! and the ring share one loop. When the ring cannot be set up (old kernel, seccomp, sysctl
//! `kernel.io_uring_disabled`), the worker stays on the mio path and says so once.
//!
//! Slot life: Free --push SQE--> InFlight --CQE--> Free (recv: the datagram is handled first).
//! The kernel may write into a slot's buffer while it is InFlight, so slots live in boxed slices
//! that never move or shrink, and `Drop` cancels and reaps every InFlight op before they go.
//!
//! This is the transport's second (feature-gated) place for `unsafe`; `sys.rs` is the first.
#![allow(unsafe_code)]

use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

use io_uring::{IoUring, opcode, types};

use super::outbox::{OUT_BUF_CAP, Pending};
use super::sys::{MAX_DATAGRAM, sockaddr_to_std, std_to_sockaddr};
use super::udp::UdpSide;
use super::worker::{URING, Worker};
use super::{Dest, Handler, Source, Transport, WorkerStats};

const SEND_FLAG: u64 = 1 << 63;
/// Bound on reaping rounds when the ring is dropped with operations in flight.
const DRAIN_ROUNDS: usize = 64;

struct RecvSlot {
    buf: Box<[u8]>,
    addr: libc::sockaddr_storage,
    iov: libc::iovec,
    hdr: libc::msghdr,
    in_flight: bool,
}

struct SendSlot {
    buf: Vec<u8>,
    addr: libc::sockaddr_storage,
    iov: libc::iovec,
    hdr: libc::msghdr,
    in_flight: bool,
}

pub(crate) struct UringUdp {
    ring: IoUring,
    fd: RawFd,
    local: SocketAddr,
    recv: Box<[RecvSlot]>,
    send: Box<[SendSlot]>,
    free_send: Vec<u32>,
    /// Received and not yet handled: (slot, length).
    ready: Vec<(u32, usize)>,
}

impl UringUdp {
    /// Sets up the ring and arms the receives; `None` (with a warning) when io_uring is not
    /// available, in which case the caller uses mio.
    pub(crate) fn setup(udp: &UdpSide, batch: usize, registry: &mio::Registry) -> Option<Self> {
        match Self::try_setup(udp, batch, registry) {
            Ok(u) => Some(u),
            Err(e) => {
                tracing::warn!(error = %e, "transport: io_uring unavailable, using mio for UDP");
                None
            }
        }
    }

    fn try_setup(udp: &UdpSide, batch: usize, registry: &mio::Registry) -> io::Result<Self> {
        let slots = batch.clamp(1, 1024);
        let ring = IoUring::new((slots * 4).next_power_of_two() as u32)?;
        let mut u = UringUdp {
            ring,
            fd: udp.socket.as_raw_fd(),
            local: udp.local,
            // SAFETY: all-zero is a valid value of these C structs (null pointers, zero lengths).
            recv: (0..slots)
                .map(|_| RecvSlot {
                    buf: vec![0u8; MAX_DATAGRAM].into_boxed_slice(),
                    addr: unsafe { zeroed() },
                    iov: unsafe { zeroed() },
                    hdr: unsafe { zeroed() },
                    in_flight: false,
                })
                .collect(),
            send: (0..slots * 2)
                .map(|_| SendSlot {
                    buf: Vec::with_capacity(OUT_BUF_CAP),
                    addr: unsafe { zeroed() },
                    iov: unsafe { zeroed() },
                    hdr: unsafe { zeroed() },
                    in_flight: false,
                })
                .collect(),
            free_send: (0..(slots * 2) as u32).rev().collect(),
            ready: Vec::with_capacity(slots),
        };
        for i in 0..slots as u32 {
            u.arm_recv(i)?;
        }
        u.ring.submit()?;
        let ring_fd = u.ring.as_raw_fd();
        registry.register(
            &mut mio::unix::SourceFd(&ring_fd),
            URING,
            mio::Interest::READABLE,
        )?;
        Ok(u)
    }

    fn arm_recv(&mut self, i: u32) -> io::Result<()> {
        let s = &mut self.recv[i as usize];
        s.iov = libc::iovec {
            iov_base: s.buf.as_mut_ptr().cast(),
            iov_len: s.buf.len(),
        };
        s.hdr.msg_name = (&raw mut s.addr).cast();
        s.hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        s.hdr.msg_iov = &raw mut s.iov;
        s.hdr.msg_iovlen = 1;
        s.hdr.msg_control = std::ptr::null_mut();
        s.hdr.msg_controllen = 0;
        s.hdr.msg_flags = 0;
        let sqe = opcode::RecvMsg::new(types::Fd(self.fd), &raw mut s.hdr)
            .build()
            .user_data(u64::from(i));
        // SAFETY: the msghdr, iovec, address and buffer live in `self.recv`, a boxed slice that
        // is never moved or resized while the ring exists; the slot is marked in flight and not
        // touched again until its completion is reaped (or Drop cancels and reaps it).
        unsafe { self.ring.submission().push(&sqe) }
            .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        s.in_flight = true;
        Ok(())
    }

    pub(crate) fn has_completions(&mut self) -> bool {
        !self.ready.is_empty() || !self.ring.completion().is_empty()
    }

    /// Reaps completions: received datagrams go to `ready`, finished sends free their slot.
    fn reap(&mut self, stats: &WorkerStats) {
        for cqe in self.ring.completion() {
            let ud = cqe.user_data();
            let res = cqe.result();
            if ud & SEND_FLAG != 0 {
                let i = (ud & !SEND_FLAG) as usize;
                if let Some(s) = self.send.get_mut(i) {
                    s.in_flight = false;
                    s.buf.clear();
                    self.free_send.push(i as u32);
                }
                if res < 0 {
                    stats.add_send_errors(1);
                } else {
                    stats.add_udp_tx(1);
                }
            } else if let Some(s) = self.recv.get_mut(ud as usize) {
                s.in_flight = false;
                if res >= 0 {
                    self.ready
                        .push((ud as u32, (res as usize).min(MAX_DATAGRAM)));
                } else {
                    // EAGAIN/EINTR/ICMP errors: nothing received; re-armed below.
                    self.ready.push((ud as u32, usize::MAX));
                }
            }
        }
    }

    /// Queues the UDP entries of `pending` as SendMsg ops, swapping their buffers into free
    /// slots. Entries left with their bytes (no free slot, full SQ) are for the caller's
    /// `sendmmsg` fallback; taken entries are left with an empty buffer.
    pub(crate) fn send_pending(&mut self, pending: &mut [Pending], stats: &WorkerStats) {
        self.reap_sends_only(stats);
        for p in pending.iter_mut() {
            let Dest::Udp(addr) = p.dest else { continue };
            if p.buf.is_empty() {
                continue;
            }
            let Some(i) = self.free_send.pop() else {
                break;
            };
            let s = &mut self.send[i as usize];
            std::mem::swap(&mut s.buf, &mut p.buf);
            let len = std_to_sockaddr(&addr, &mut s.addr);
            s.iov = libc::iovec {
                iov_base: s.buf.as_mut_ptr().cast(),
                iov_len: s.buf.len(),
            };
            s.hdr.msg_name = (&raw mut s.addr).cast();
            s.hdr.msg_namelen = len;
            s.hdr.msg_iov = &raw mut s.iov;
            s.hdr.msg_iovlen = 1;
            let sqe = opcode::SendMsg::new(types::Fd(self.fd), &raw const s.hdr)
                .build()
                .user_data(u64::from(i) | SEND_FLAG);
            // SAFETY: as in arm_recv: the slot (buffer, iovec, address, msghdr) is owned by the
            // boxed `self.send`, does not move, and is not touched until its completion.
            if unsafe { self.ring.submission().push(&sqe) }.is_err() {
                std::mem::swap(&mut s.buf, &mut p.buf);
                self.free_send.push(i);
                break;
            }
            s.in_flight = true;
        }
        if let Err(e) = self.ring.submit() {
            tracing::debug!(error = %e, "transport: io_uring submit");
        }
    }

    /// Frees finished send slots when none is free (received datagrams reaped on the way wait
    /// in `ready`).
    fn reap_sends_only(&mut self, stats: &WorkerStats) {
        if self.free_send.is_empty() {
            self.reap(stats);
        }
    }
}

impl Drop for UringUdp {
    fn drop(&mut self) {
        let in_flight: Vec<u64> = self
            .recv
            .iter()
            .enumerate()
            .filter(|(_, s)| s.in_flight)
            .map(|(i, _)| i as u64)
            .chain(
                self.send
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.in_flight)
                    .map(|(i, _)| i as u64 | SEND_FLAG),
            )
            .collect();
        let mut left = in_flight.len();
        for ud in in_flight {
            let sqe = opcode::AsyncCancel::new(ud).build().user_data(u64::MAX);
            // SAFETY: a cancel op carries no buffer.
            let _ = unsafe { self.ring.submission().push(&sqe) };
        }
        for _ in 0..DRAIN_ROUNDS {
            if left == 0 {
                return;
            }
            if self.ring.submit_and_wait(1).is_err() {
                break;
            }
            for cqe in self.ring.completion() {
                if cqe.user_data() != u64::MAX {
                    left = left.saturating_sub(1);
                }
            }
        }
        if left > 0 {
            // The kernel may still write into these buffers: leak them rather than free them.
            tracing::warn!(
                left,
                "transport: io_uring ops still in flight at drop; leaking"
            );
            std::mem::forget(std::mem::take(&mut self.recv));
            std::mem::forget(std::mem::take(&mut self.send));
        }
    }
}

impl<H: Handler> Worker<H> {
    /// Handles every completed receive, flushes, re-arms the receives.
    pub(crate) fn uring_ready(&mut self) {
        let Some(u) = self.uring.as_mut() else { return };
        let stats = self.stats.worker(usize::from(self.id));
        u.reap(stats);
        let mut ready = std::mem::take(&mut u.ready);
        let local = u.local;
        let mut rx = 0;
        for &(i, len) in &ready {
            let Some(u) = self.uring.as_ref() else { break };
            let s = &u.recv[i as usize];
            if len == usize::MAX {
                continue;
            }
            let Some(peer) = sockaddr_to_std(&s.addr, s.hdr.msg_namelen) else {
                continue;
            };
            rx += 1;
            let src = Source {
                addr: peer,
                local,
                transport: Transport::Udp,
                conn: None,
            };
            self.out.set_reply(Some(Dest::Udp(peer)));
            self.handler.on_message(&s.buf[..len], &src, &mut self.out);
            if self.out.pending.len() >= self.batch {
                self.out.set_reply(None);
                self.flush();
            }
        }
        self.out.set_reply(None);
        self.stats().add_udp_rx(rx);
        self.flush();
        let Some(u) = self.uring.as_mut() else { return };
        for &(i, _) in &ready {
            if let Err(e) = u.arm_recv(i) {
                tracing::warn!(error = %e, "transport: io_uring re-arm");
            }
        }
        if let Err(e) = u.ring.submit() {
            tracing::debug!(error = %e, "transport: io_uring submit");
        }
        // Receives reaped during the flush (send slots ran out) wait in `u.ready` for next time.
        ready.clear();
        std::mem::swap(&mut u.ready, &mut ready);
        u.ready.append(&mut ready);
    }
}
