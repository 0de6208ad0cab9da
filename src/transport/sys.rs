//! The transport's one place for `unsafe` (besides the optional io_uring driver): batched
//! `recvmmsg`/`sendmmsg`, the socket options that std/socket2 lack (`SO_MEMINFO` for the
//! kernel's drop count, `SO_ATTACH_REUSEPORT_CBPF`) and `sockaddr` <-> `SocketAddr` conversion.
//!
//! Invariants shared by every call here:
//! - every pointer handed to the kernel points into a buffer owned by `self` (or borrowed for
//!   the whole call): `SendBatch` rebuilds its pointers right before each call; `RecvBatch`
//!   sets its own once, at construction, into boxed slices it owns and never reallocates (heap
//!   memory, which stays put when the struct moves), and never takes a `&mut` to them again;
//! - every length handed to the kernel is the length of the buffer the pointer points to;
//! - the kernel's reported lengths are clamped to our buffer sizes before we slice.
#![allow(unsafe_code)]

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// The largest UDP payload.
pub(crate) const MAX_DATAGRAM: usize = 65_535;

// Not exported by `libc` for linux-gnu; these values are the asm-generic ones (x86, x86_64, arm,
// aarch64, riscv, loongarch). Other architectures (mips, sparc, parisc, powerpc) use other numbers.
#[cfg(any(
    target_arch = "x86",
    target_arch = "x86_64",
    target_arch = "arm",
    target_arch = "aarch64",
    target_arch = "riscv64",
    target_arch = "loongarch64"
))]
mod consts {
    pub(super) const SO_MEMINFO: libc::c_int = 55;
    pub(super) const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;
}
use consts::*;

/// Index of the drop count in `SO_MEMINFO`'s array (`SK_MEMINFO_DROPS`, linux/sock_diag.h).
const SK_MEMINFO_DROPS: usize = 8;

/// Preallocated state for one `recvmmsg` call of up to `n` datagrams.
pub(crate) struct RecvBatch {
    data: Box<[u8]>,
    slot_len: usize,
    lens: Box<[usize]>,
    peers: Box<[Option<SocketAddr>]>,
    addrs: Box<[libc::sockaddr_storage]>,
    iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
    filled: usize,
    /// Headers `0..touched` may have been written by the kernel in the last call (the ones it
    /// filled, plus the one it stopped at): only those need their in/out lengths reset.
    touched: usize,
}

impl RecvBatch {
    pub(crate) fn new(n: usize) -> RecvBatch {
        let n = n.clamp(1, 1024);
        let slot_len = MAX_DATAGRAM;
        let mut b = RecvBatch {
            data: vec![0u8; n * slot_len].into_boxed_slice(),
            slot_len,
            lens: vec![0; n].into_boxed_slice(),
            peers: vec![None; n].into_boxed_slice(),
            // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs for which all-zero
            // bytes are a valid value (null pointers, zero lengths).
            addrs: (0..n).map(|_| unsafe { zeroed() }).collect(),
            iovs: (0..n).map(|_| unsafe { zeroed() }).collect(),
            hdrs: (0..n).map(|_| unsafe { zeroed() }).collect(),
            filled: 0,
            touched: 0,
        };
        // The pointers, once: one raw pointer per boxed slice, offsets from it, each taken after
        // the last write to its slice through a reference. Setting them per call cost a loop
        // over all `n` headers for every receive, however few datagrams came.
        let data = b.data.as_mut_ptr();
        for (i, iov) in b.iovs.iter_mut().enumerate() {
            *iov = libc::iovec {
                // In bounds: slot i is data[i * slot_len..(i + 1) * slot_len].
                iov_base: data.wrapping_add(i * slot_len).cast(),
                iov_len: slot_len,
            };
        }
        let addrs = b.addrs.as_mut_ptr();
        let iovs = b.iovs.as_mut_ptr();
        for (i, h) in b.hdrs.iter_mut().enumerate() {
            h.msg_hdr.msg_name = addrs.wrapping_add(i).cast();
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_iov = iovs.wrapping_add(i);
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
        }
        b
    }

    pub(crate) fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// One non-blocking `recvmmsg`. Returns how many datagrams were received (>= 1), or the error
    /// (`WouldBlock` when the queue is empty).
    pub(crate) fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.recv_flags(fd, libc::MSG_DONTWAIT)
    }

    /// One `recvmmsg` that blocks until at least one datagram (or the socket's `SO_RCVTIMEO`),
    /// then takes what is queued: for the measurement tools' blocking loops.
    pub(crate) fn recv_wait(&mut self, fd: RawFd) -> io::Result<usize> {
        self.recv_flags(fd, libc::MSG_WAITFORONE)
    }

    fn recv_flags(&mut self, fd: RawFd, flags: libc::c_int) -> io::Result<usize> {
        self.filled = 0;
        let n = self.hdrs.len();
        // The kernel writes back the address length, flags and datagram length of the headers
        // it used; the pointers it only reads.
        for h in &mut self.hdrs[..self.touched] {
            h.msg_len = 0;
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
        }
        // Until the kernel says how many it used (an error says nothing): all of them.
        self.touched = n;
        // SAFETY: `hdrs` holds `n` initialised mmsghdr whose name/iov pointers (set in `new`)
        // point into `addrs` and `iovs`/`data`, boxed slices owned by `self`, alive and not
        // borrowed for the duration of the call, with matching lengths; no control buffer. A
        // null timeout: the wait (if any) is bounded by MSG_DONTWAIT or the socket's SO_RCVTIMEO.
        let got = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
        let got = (got as usize).min(n);
        self.touched = (got + 1).min(n);
        for i in 0..got {
            let h = &self.hdrs[i];
            self.lens[i] = (h.msg_len as usize).min(self.slot_len);
            self.peers[i] = sockaddr_to_std(&self.addrs[i], h.msg_hdr.msg_namelen);
        }
        self.filled = got;
        Ok(got)
    }

    /// Datagram `i` of the last `recv` and its sender (`None` for an unknown address family).
    pub(crate) fn datagram(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        if i >= self.filled {
            return None;
        }
        let peer = self.peers[i]?;
        let start = i * self.slot_len;
        Some((&self.data[start..start + self.lens[i]], peer))
    }
}

/// Preallocated state for `sendmmsg` of up to `n` datagrams per call.
pub(crate) struct SendBatch {
    addrs: Box<[libc::sockaddr_storage]>,
    addr_lens: Box<[libc::socklen_t]>,
    iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
}

/// What `SendBatch::send_all` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SendTally {
    pub(crate) sent: u64,
    pub(crate) failed: u64,
}

impl SendBatch {
    pub(crate) fn new(n: usize) -> SendBatch {
        let n = n.clamp(1, 1024);
        SendBatch {
            // SAFETY: as in RecvBatch::new, all-zero is valid for these C structs.
            addrs: (0..n).map(|_| unsafe { zeroed() }).collect(),
            addr_lens: vec![0; n].into_boxed_slice(),
            iovs: (0..n).map(|_| unsafe { zeroed() }).collect(),
            hdrs: (0..n).map(|_| unsafe { zeroed() }).collect(),
        }
    }

    /// Sends every `(addr, bytes)` of `items`, up to `n` per `sendmmsg`. A datagram the kernel
    /// refuses (full buffer, unreachable, bad address) is skipped and counted in `failed`: UDP
    /// is best effort and SIP retransmits. Never blocks; bounded by the number of items.
    pub(crate) fn send_all<'a, I>(&mut self, fd: RawFd, items: I) -> SendTally
    where
        I: IntoIterator<Item = (SocketAddr, &'a [u8])>,
    {
        self.send_all_with(fd, None, items)
    }

    /// [`send_all`](Self::send_all), where a datagram `fd` refuses as too big (`EMSGSIZE`: `fd`
    /// sets DF, see [`set_dont_fragment`], and the datagram is over the path MTU) is sent once
    /// more from `fallback`, a socket that lets the kernel fragment it.
    pub(crate) fn send_all_with<'a, I>(
        &mut self,
        fd: RawFd,
        fallback: Option<RawFd>,
        items: I,
    ) -> SendTally
    where
        I: IntoIterator<Item = (SocketAddr, &'a [u8])>,
    {
        let mut tally = SendTally::default();
        let mut items = items.into_iter();
        loop {
            // Fill: the borrowed slices live for 'a, which outlives this call.
            let mut filled = 0;
            for (addr, bytes) in items.by_ref() {
                self.addr_lens[filled] = std_to_sockaddr(&addr, &mut self.addrs[filled]);
                self.iovs[filled] = libc::iovec {
                    iov_base: bytes.as_ptr().cast_mut().cast(),
                    iov_len: bytes.len(),
                };
                filled += 1;
                if filled == self.hdrs.len() {
                    break;
                }
            }
            if filled == 0 {
                return tally;
            }
            for i in 0..filled {
                let h = &mut self.hdrs[i];
                h.msg_len = 0;
                h.msg_hdr.msg_name = (&raw mut self.addrs[i]).cast();
                h.msg_hdr.msg_namelen = self.addr_lens[i];
                h.msg_hdr.msg_iov = &raw mut self.iovs[i];
                h.msg_hdr.msg_iovlen = 1;
                h.msg_hdr.msg_control = std::ptr::null_mut();
                h.msg_hdr.msg_controllen = 0;
                h.msg_hdr.msg_flags = 0;
            }
            let mut off = 0;
            // Each round either sends >= 1 datagram or skips one: at most `filled` rounds.
            while off < filled {
                // SAFETY: hdrs[off..filled] are initialised above; their name pointers point into
                // `self.addrs` and their iovecs at slices borrowed for 'a (alive for this call);
                // the kernel only reads them. MSG_DONTWAIT: never blocks.
                let r = unsafe {
                    libc::sendmmsg(
                        fd,
                        self.hdrs[off..].as_mut_ptr(),
                        (filled - off) as libc::c_uint,
                        libc::MSG_DONTWAIT,
                    )
                };
                if r > 0 {
                    let r = (r as usize).min(filled - off);
                    tally.sent += r as u64;
                    off += r;
                } else {
                    let err = io::Error::last_os_error();
                    if err.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    let resent = match fallback {
                        Some(fb) if err.raw_os_error() == Some(libc::EMSGSIZE) => {
                            // SAFETY: hdrs[off] is initialised as for the sendmmsg above (its
                            // pointers into `self.addrs` and the borrowed slice are alive); the
                            // kernel only reads it.
                            let r = unsafe {
                                libc::sendmsg(fb, &self.hdrs[off].msg_hdr, libc::MSG_DONTWAIT)
                            };
                            r >= 0
                        }
                        _ => false,
                    };
                    if resent {
                        tally.sent += 1;
                    } else {
                        tally.failed += 1;
                    }
                    off += 1;
                }
            }
        }
    }
}

/// Writes `addr` as a C sockaddr into `out`; returns its length.
pub(crate) fn std_to_sockaddr(
    addr: &SocketAddr,
    out: &mut libc::sockaddr_storage,
) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned at least as strictly as
            // sockaddr_in (that is its purpose), so the write stays in bounds and aligned.
            unsafe { std::ptr::write((out as *mut libc::sockaddr_storage).cast(), sin) };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write((out as *mut libc::sockaddr_storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Reads a C sockaddr the kernel filled in.
pub(crate) fn sockaddr_to_std(
    ss: &libc::sockaddr_storage,
    len: libc::socklen_t,
) -> Option<SocketAddr> {
    let len = len as usize;
    match libc::c_int::from(ss.ss_family) {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, the length covers it and
            // sockaddr_storage is suitably aligned.
            let sin =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Sets DF on every IPv4 datagram `fd` sends (`IP_PMTUDISC_DO`) instead of the default
/// (`IP_PMTUDISC_WANT`), which also sets DF on any datagram within the path MTU but marks it
/// `ignore_df`, so the kernel picks its IP ID with `__ip_select_ident` (a keyed hash and an
/// atomic on a shared table: 2.5% of a worker's CPU samples at 1M users). A DF datagram's ID is 0
/// (RFC 6864 §4.1: an atomic datagram's ID has no meaning). What changes on the wire: the ID
/// alone. A datagram over the path MTU, which the default would fragment, fails with `EMSGSIZE`
/// instead: senders resend it from a socket without this option
/// ([`SendBatch::send_all_with`]).
pub(crate) fn set_dont_fragment(fd: RawFd) -> io::Result<()> {
    setsockopt(
        fd,
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        &libc::IP_PMTUDISC_DO,
    )
}

/// The socket's `IP_MTU_DISCOVER` mode (tests: which sockets set DF).
#[cfg(test)]
pub(crate) fn mtu_discover(fd: RawFd) -> io::Result<libc::c_int> {
    let mut val: libc::c_int = 0;
    // SAFETY: every bit pattern is a valid c_int.
    unsafe { getsockopt(fd, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, &mut val) }?;
    Ok(val)
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: `val` is a live reference to a `T` and we pass exactly size_of::<T>() bytes; the
    // kernel copies the option value before returning.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (val as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads a socket option into `val`; returns the number of bytes the kernel wrote (at most
/// `size_of::<T>()`).
///
/// # Safety
/// Every bit pattern must be a valid `T` (the kernel writes raw bytes into it).
unsafe fn getsockopt<T>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    val: &mut T,
) -> io::Result<usize> {
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `val` is a live, exclusive buffer of `len` bytes; the kernel writes at most `len`
    // bytes into it and stores the length it wrote in `len`.
    let r = unsafe { libc::getsockopt(fd, level, name, (val as *mut T).cast(), &raw mut len) };
    if r == 0 {
        Ok(len as usize)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The kernel's cumulative count of datagrams dropped on this socket (`SO_MEMINFO`, the
/// `SK_MEMINFO_DROPS` entry; the "drops" column of /proc/net/udp). One system call, read now
/// and then rather than per datagram: `SO_RXQ_OVFL` would have the kernel walk the control
/// message path on every receive.
pub(crate) fn socket_drops(fd: RawFd) -> io::Result<u64> {
    // Room for more entries than today's kernels have (SK_MEMINFO_VARS is 9).
    let mut info = [0u32; 16];
    // SAFETY: every bit pattern is a valid [u32; 16].
    let len = unsafe { getsockopt(fd, libc::SOL_SOCKET, SO_MEMINFO, &mut info) }?;
    if len < (SK_MEMINFO_DROPS + 1) * size_of::<u32>() {
        return Err(io::Error::other("SO_MEMINFO: no drop count"));
    }
    Ok(u64::from(info[SK_MEMINFO_DROPS]))
}

/// Attaches to the reuseport group of `fd` a classic BPF program that returns
/// `random() % sockets`: the kernel then delivers each datagram to the group's socket of that
/// index, whatever its 4-tuple, so one busy source is spread over every socket.
pub(crate) fn attach_random_reuseport_cbpf(fd: RawFd, sockets: u32) -> io::Result<()> {
    // Classic BPF opcodes (linux/bpf_common.h): class | size | mode (or op | source).
    const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD (0x00) | BPF_W (0x00) | BPF_ABS (0x20)
    const BPF_ALU_MOD_K: u16 = 0x94; // BPF_ALU (0x04) | BPF_MOD (0x90) | BPF_K (0x00)
    const BPF_RET_A: u16 = 0x16; // BPF_RET (0x06) | BPF_A (0x10)
    if sockets == 0 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let mut filter = [
        // A = random u32 (an ancillary load: SKF_AD_OFF + SKF_AD_RANDOM)
        libc::sock_filter {
            code: BPF_LD_W_ABS,
            jt: 0,
            jf: 0,
            k: (libc::SKF_AD_OFF + libc::SKF_AD_RANDOM) as u32,
        },
        // A %= sockets
        libc::sock_filter {
            code: BPF_ALU_MOD_K,
            jt: 0,
            jf: 0,
            k: sockets,
        },
        // return A: the index of the socket in the reuseport group
        libc::sock_filter {
            code: BPF_RET_A,
            jt: 0,
            jf: 0,
            k: 0,
        },
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // The kernel copies the program during setsockopt; `filter` outlives the call.
    setsockopt(fd, libc::SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn sockaddr_round_trip() {
        for s in ["127.0.0.1:5060", "[::1]:5061", "10.1.2.3:1"] {
            let a: SocketAddr = s.parse().unwrap();
            // SAFETY: all-zero is a valid sockaddr_storage.
            let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
            let len = std_to_sockaddr(&a, &mut ss);
            assert_eq!(sockaddr_to_std(&ss, len), Some(a));
            assert_eq!(sockaddr_to_std(&ss, 2), None);
        }
    }

    #[test]
    fn mmsg_batches_over_loopback() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        let msgs: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; usize::from(i) + 1]).collect();
        let mut sb = SendBatch::new(4);
        let t = sb.send_all(tx.as_raw_fd(), msgs.iter().map(|m| (to, m.as_slice())));
        assert_eq!(
            t,
            SendTally {
                sent: 10,
                failed: 0
            }
        );
        let mut rb = RecvBatch::new(4);
        let mut got = Vec::new();
        for _ in 0..100 {
            match rb.recv(rx.as_raw_fd()) {
                Ok(n) => {
                    assert!(n <= rb.capacity());
                    for i in 0..n {
                        let (d, from) = rb.datagram(i).unwrap();
                        assert_eq!(from, tx.local_addr().unwrap());
                        got.push(d.to_vec());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if got.len() == msgs.len() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, msgs);
        assert!(rb.datagram(rb.capacity()).is_none());
        assert_eq!(socket_drops(rx.as_raw_fd()).unwrap(), 0);
    }

    #[test]
    fn reused_batch_reports_each_datagram_with_its_own_sender_and_length() {
        // The headers are set up once and reused: a short batch after a long one, and senders
        // that change between calls, must still come back right.
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        let senders: Vec<std::net::UdpSocket> = (0..3)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let mut rb = RecvBatch::new(8);
        for (round, burst) in [8usize, 1, 5, 2, 8, 3].into_iter().enumerate() {
            let mut sent = Vec::new();
            for k in 0..burst {
                let s = &senders[(round + k) % senders.len()];
                let msg = vec![k as u8; 10 + 7 * k + round];
                s.send_to(&msg, to).unwrap();
                sent.push((msg, s.local_addr().unwrap()));
            }
            let mut got = Vec::new();
            for _ in 0..100 {
                match rb.recv(rx.as_raw_fd()) {
                    Ok(n) => (0..n).for_each(|i| {
                        let (d, from) = rb.datagram(i).unwrap();
                        got.push((d.to_vec(), from));
                    }),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if got.len() == sent.len() {
                            break;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            assert_eq!(got, sent, "round {round}");
        }
    }

    /// Reads datagrams from `rx` until `n` have come or a second has passed: (length, sender).
    fn drain(rx: &std::net::UdpSocket, n: usize) -> Vec<(usize, SocketAddr)> {
        let mut rb = RecvBatch::new(8);
        let mut got = Vec::new();
        for _ in 0..200 {
            match rb.recv(rx.as_raw_fd()) {
                Ok(k) => (0..k).for_each(|i| {
                    let (d, from) = rb.datagram(i).unwrap();
                    got.push((d.len(), from));
                }),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if got.len() >= n {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => panic!("{e}"),
            }
        }
        got.sort();
        got
    }

    #[test]
    fn a_datagram_refused_as_too_big_leaves_from_the_fallback() {
        // Loopback's 64 KiB MTU never refuses a DF datagram, so the refusal is made another way:
        // 4 bytes of IP options (NOP NOP NOP EOL) leave no room for a 65,505-byte payload in
        // IP's 65,535-byte total length. The kernel answers EMSGSIZE, as it does for a DF
        // datagram over the path MTU; a socket without options sends it.
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        let tight = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        setsockopt(
            tight.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_OPTIONS,
            &[1u8, 1, 1, 0],
        )
        .unwrap();
        let roomy = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (t_addr, r_addr) = (tight.local_addr().unwrap(), roomy.local_addr().unwrap());
        let (small, big) = (vec![1u8; 300], vec![2u8; 65_505]);
        let items = || {
            [
                (to, small.as_slice()),
                (to, big.as_slice()),
                (to, &small[..200]),
            ]
        };
        let mut sb = SendBatch::new(4);

        let t = sb.send_all(tight.as_raw_fd(), items());
        assert_eq!(t, SendTally { sent: 2, failed: 1 });
        assert_eq!(drain(&rx, 2), vec![(200, t_addr), (300, t_addr)]);

        let t = sb.send_all_with(tight.as_raw_fd(), Some(roomy.as_raw_fd()), items());
        assert_eq!(t, SendTally { sent: 3, failed: 0 });
        assert_eq!(
            drain(&rx, 3),
            vec![(200, t_addr), (300, t_addr), (65_505, r_addr)]
        );

        // Too big for both (over UDP's 65,507): one attempt each, counted once as failed.
        let huge = vec![3u8; 65_508];
        let t = sb.send_all_with(
            tight.as_raw_fd(),
            Some(roomy.as_raw_fd()),
            [(to, huge.as_slice()), (to, small.as_slice())],
        );
        assert_eq!(t, SendTally { sent: 1, failed: 1 });
        assert_eq!(drain(&rx, 1), vec![(300, t_addr)]);
    }

    #[test]
    fn dont_fragment_sets_pmtudisc_do() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_ne!(mtu_discover(s.as_raw_fd()).unwrap(), libc::IP_PMTUDISC_DO);
        set_dont_fragment(s.as_raw_fd()).unwrap();
        assert_eq!(mtu_discover(s.as_raw_fd()).unwrap(), libc::IP_PMTUDISC_DO);
    }

    #[test]
    fn socket_drops_counts_what_the_kernel_dropped() {
        use socket2::{Domain, Socket, Type};
        let rx = Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
        rx.set_recv_buffer_size(1).unwrap(); // the kernel's minimum: a few datagrams
        rx.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        let rx: std::net::UdpSocket = rx.into();
        let to = rx.local_addr().unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let payload = [7u8; 1000];
        for _ in 0..200 {
            tx.send_to(&payload, to).unwrap();
        }
        // Loopback delivers synchronously: every datagram past the full buffer is dropped.
        let drops = socket_drops(rx.as_raw_fd()).unwrap();
        assert!(drops > 100, "{drops}");
        rx.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 2000];
        let mut read = 0u64;
        while rx.recv_from(&mut buf).is_ok() {
            read += 1;
        }
        assert_eq!(read + drops, 200);
    }
}
