//! The one place with `unsafe`: Linux system calls the standard library does not wrap —
//! batched `sendmmsg`/`recvmmsg`, a `timerfd` for the pacer, `ppoll` for sub-millisecond
//! waits, `getrusage`, `prctl` timer slack, and a SIGINT/SIGTERM flag. Each call site states the invariant that makes it sound.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Most datagrams moved by one `sendmmsg`/`recvmmsg` call.
pub const MAX_BATCH: usize = 64;
/// Receive buffer per datagram: larger than the server's 8 KiB UDP request limit (D12).
pub const DATAGRAM_BYTES: usize = 9_216;

/// A socket address in the C layout, built from a `SocketAddr`.
#[derive(Clone, Copy)]
pub struct RawAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl RawAddr {
    pub fn new(addr: SocketAddr) -> Self {
        // SAFETY: sockaddr_storage is plain old data; all-zero is a valid (AF_UNSPEC) value.
        let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
        let len = match addr {
            SocketAddr::V4(v4) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: v4.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(v4.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
                unsafe {
                    std::ptr::write(
                        std::ptr::from_mut(&mut storage).cast::<libc::sockaddr_in>(),
                        sin,
                    )
                };
                size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(v6) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: v6.port().to_be(),
                    sin6_flowinfo: v6.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: v6.ip().octets(),
                    },
                    sin6_scope_id: v6.scope_id(),
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
                unsafe {
                    std::ptr::write(
                        std::ptr::from_mut(&mut storage).cast::<libc::sockaddr_in6>(),
                        sin6,
                    )
                };
                size_of::<libc::sockaddr_in6>()
            }
        };
        Self {
            storage,
            len: len as libc::socklen_t,
        }
    }
}

fn from_storage(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the kernel wrote a sockaddr_in here.
            let sin = unsafe { &*std::ptr::from_ref(storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the kernel wrote a sockaddr_in6 here.
            let sin6 = unsafe { &*std::ptr::from_ref(storage).cast::<libc::sockaddr_in6>() };
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

/// Sends `payloads[i]` to `dests[i]` (or every payload to `dests[0]` when there is one
/// destination) with one `sendmmsg` call per [`MAX_BATCH`]. Returns how many were sent; an
/// error only when not even the first could be sent.
pub fn send_batch<P: AsRef<[u8]>>(
    fd: RawFd,
    payloads: &[P],
    dests: &[RawAddr],
) -> io::Result<usize> {
    let mut sent = 0;
    // Bounded: each round sends at least one datagram or returns.
    while sent < payloads.len() {
        let chunk = &payloads[sent..payloads.len().min(sent + MAX_BATCH)];
        // SAFETY: iovec and mmsghdr are plain old data; zero is a valid initial value.
        let mut iovecs: [libc::iovec; MAX_BATCH] = unsafe { zeroed() };
        // SAFETY: as above.
        let mut headers: [libc::mmsghdr; MAX_BATCH] = unsafe { zeroed() };
        for (i, payload) in chunk.iter().enumerate() {
            let payload = payload.as_ref();
            let dest = if dests.len() == 1 {
                &dests[0]
            } else {
                &dests[sent + i]
            };
            iovecs[i] = libc::iovec {
                iov_base: payload.as_ptr() as *mut libc::c_void,
                iov_len: payload.len(),
            };
            headers[i].msg_hdr.msg_name = std::ptr::from_ref(&dest.storage) as *mut libc::c_void;
            headers[i].msg_hdr.msg_namelen = dest.len;
            headers[i].msg_hdr.msg_iov = &mut iovecs[i];
            headers[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: `headers[..chunk.len()]` point at iovecs and addresses that outlive the
        // call; the kernel only reads the payloads (the *mut cast is the C API's, not a write).
        let n = unsafe {
            libc::sendmmsg(
                fd,
                headers.as_mut_ptr(),
                chunk.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return if sent == 0 { Err(err) } else { Ok(sent) };
        }
        if n == 0 {
            break;
        }
        sent += n as usize;
        if (n as usize) < chunk.len() {
            break;
        }
    }
    Ok(sent)
}

/// Reusable buffers for `recvmmsg`.
pub struct RecvBatch {
    buffers: Vec<Vec<u8>>,
    lengths: [usize; MAX_BATCH],
    sources: [libc::sockaddr_storage; MAX_BATCH],
    count: usize,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvBatch {
    pub fn new() -> Self {
        Self {
            buffers: (0..MAX_BATCH).map(|_| vec![0u8; DATAGRAM_BYTES]).collect(),
            lengths: [0; MAX_BATCH],
            // SAFETY: sockaddr_storage is plain old data; zero is valid.
            sources: unsafe { zeroed() },
            count: 0,
        }
    }

    /// Receives up to `limit` (<= MAX_BATCH) datagrams without blocking; 0 means none waiting.
    pub fn recv(&mut self, fd: RawFd, limit: usize) -> io::Result<usize> {
        let limit = limit.clamp(1, MAX_BATCH);
        // SAFETY: plain old data, zero-initialised.
        let mut iovecs: [libc::iovec; MAX_BATCH] = unsafe { zeroed() };
        // SAFETY: as above.
        let mut headers: [libc::mmsghdr; MAX_BATCH] = unsafe { zeroed() };
        for i in 0..limit {
            iovecs[i] = libc::iovec {
                iov_base: self.buffers[i].as_mut_ptr().cast(),
                iov_len: self.buffers[i].len(),
            };
            headers[i].msg_hdr.msg_name = std::ptr::from_mut(&mut self.sources[i]).cast();
            headers[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            headers[i].msg_hdr.msg_iov = &mut iovecs[i];
            headers[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at a live, writable buffer of the stated length and at a
        // sockaddr_storage; they outlive the call; no timeout pointer.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                headers.as_mut_ptr(),
                limit as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            self.count = 0;
            return match err.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(err),
            };
        }
        self.count = n as usize;
        for (length, header) in self.lengths.iter_mut().zip(&headers[..self.count]) {
            *length = (header.msg_len as usize).min(DATAGRAM_BYTES);
        }
        Ok(self.count)
    }

    /// Datagram `i` of the last `recv` and its source.
    pub fn datagram(&self, i: usize) -> (&[u8], Option<SocketAddr>) {
        if i >= self.count {
            return (&[], None);
        }
        (
            &self.buffers[i][..self.lengths[i]],
            from_storage(&self.sources[i]),
        )
    }
}

/// A monotonic one-shot timer whose expiry wakes `epoll` with sub-millisecond precision
/// (mio's own poll timeout rounds up to whole milliseconds).
pub struct Timer {
    fd: OwnedFd,
}

impl Timer {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain system call; the result is checked before use.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor we own exclusively.
        Ok(Self {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Fires once after `after` (at least 1 ns: zero would disarm).
    pub fn arm(&self, after: Duration) -> io::Result<()> {
        let after = after.max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs().min(i64::MAX as u64) as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: `spec` is a valid itimerspec; the old-value pointer may be null.
        let rc =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Consumes an expiry so the descriptor stops being readable.
    pub fn clear(&self) {
        let mut expirations = 0u64;
        // SAFETY: reads at most 8 bytes into a u64 we own; a non-blocking EAGAIN is harmless.
        let _ = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                std::ptr::from_mut(&mut expirations).cast(),
                8,
            )
        };
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// CPU time in microseconds (user, system).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CpuTime {
    pub user_us: u64,
    pub sys_us: u64,
}

impl CpuTime {
    pub fn total_us(self) -> u64 {
        self.user_us + self.sys_us
    }

    pub fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user_us: self.user_us.saturating_sub(earlier.user_us),
            sys_us: self.sys_us.saturating_sub(earlier.sys_us),
        }
    }

    pub fn plus(self, other: CpuTime) -> CpuTime {
        CpuTime {
            user_us: self.user_us + other.user_us,
            sys_us: self.sys_us + other.sys_us,
        }
    }
}

fn rusage(who: libc::c_int) -> CpuTime {
    // SAFETY: rusage is plain old data; getrusage fills it and we check the return code.
    let mut usage: libc::rusage = unsafe { zeroed() };
    // SAFETY: valid pointer to a rusage we own.
    if unsafe { libc::getrusage(who, &mut usage) } != 0 {
        return CpuTime::default();
    }
    let us = |tv: libc::timeval| (tv.tv_sec.max(0) as u64) * 1_000_000 + tv.tv_usec.max(0) as u64;
    CpuTime {
        user_us: us(usage.ru_utime),
        sys_us: us(usage.ru_stime),
    }
}

/// CPU used so far by the calling thread.
pub fn thread_cpu() -> CpuTime {
    rusage(libc::RUSAGE_THREAD)
}

/// CPU used so far by the whole process.
pub fn process_cpu() -> CpuTime {
    rusage(libc::RUSAGE_SELF)
}

/// Waits until `fd` is readable or `timeout` passes; Ok(true) when readable. `ppoll` takes a
/// nanosecond timeout, where `SO_RCVTIMEO` rounds up to scheduler ticks (4 ms at HZ=250) and
/// `epoll_wait` to milliseconds: the churn probes are 0.5 ms apart.
pub fn wait_readable(fd: RawFd, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let spec = libc::timespec {
        tv_sec: timeout.as_secs().min(3600) as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: `pfd` and `spec` live across the call; nfds = 1 matches the one pollfd; a null
    // signal mask leaves the mask unchanged.
    let n = unsafe { libc::ppoll(&mut pfd, 1, &spec, std::ptr::null()) };
    if n < 0 {
        let error = io::Error::last_os_error();
        if error.kind() == io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(error);
    }
    Ok(n > 0)
}

/// Sets DF on every IPv4 datagram `fd` sends (`IP_PMTUDISC_DO`), as imserver's send sockets do:
/// the kernel then writes IP ID 0 instead of hashing one per datagram. Loopback's MTU (64 KiB)
/// is over any UDP datagram, so none is refused for its size.
pub fn set_dont_fragment(fd: RawFd) -> io::Result<()> {
    let val: libc::c_int = libc::IP_PMTUDISC_DO;
    // SAFETY: `val` is a live c_int and the kernel is told its exact size; it copies the value.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            (&raw const val).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The socket's `IP_MTU_DISCOVER` mode (tests: which sockets set DF).
#[cfg(test)]
pub fn mtu_discover(fd: RawFd) -> io::Result<libc::c_int> {
    let mut val: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `val` and `len` are live locals of the sizes the kernel is told.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            (&raw mut val).cast(),
            &mut len,
        )
    };
    if r == 0 {
        Ok(val)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Asks for 1 ns timer slack on this thread, so pacer wake-ups are not rounded by the default
/// 50 µs slack. Best effort.
pub fn tighten_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes an unsigned long value and touches no memory.
    let _ = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_signal: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::Relaxed);
}

/// Routes SIGINT and SIGTERM to a flag read by [`stop_requested`].
pub fn install_stop_signals() {
    let handler = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only performs an atomic store, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn batch_round_trip_over_loopback() {
        let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let b = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let dest = RawAddr::new(b.local_addr().expect("addr"));
        let payloads: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 100 + usize::from(i)]).collect();
        let slices: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        assert_eq!(
            send_batch(a.as_raw_fd(), &slices, &[dest]).expect("send"),
            10
        );
        let mut batch = RecvBatch::new();
        let mut got = Vec::new();
        for _ in 0..1000 {
            let n = batch.recv(b.as_raw_fd(), MAX_BATCH).expect("recv");
            for i in 0..n {
                let (data, src) = batch.datagram(i);
                assert_eq!(src, Some(a.local_addr().expect("addr")));
                got.push(data.to_vec());
            }
            if got.len() == 10 {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(got, payloads);
    }

    #[test]
    fn cpu_time_moves_forward() {
        let before = thread_cpu();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(thread_cpu().total_us() >= before.total_us());
        assert!(process_cpu().total_us() >= thread_cpu().total_us());
    }
}
