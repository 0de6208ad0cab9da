//! A probe socket: sends single MESSAGEs (trusted-peer PAI, D7) and reads their final answers,
//! with blocking reads bounded by a deadline. Used to wait until the server knows the policies
//! (D6) and to time each change's propagation. Probe Call-IDs carry the run id and a seq with
//! [`PROBE_SEQ_BIT`] set, so the recipients count them apart from the load.
#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::engine::conn::drain_frames;
use crate::sip::Transport;
use crate::sip::scan::{self, CallId};
use crate::sip::template::{RequestParams, Values, write_message};
use crate::sys::wait_readable;

/// Set in the seq of every probe MESSAGE (no load run reaches 2^63 requests).
pub const PROBE_SEQ_BIT: u64 = 1 << 63;

/// Most messages handled per `receive` call.
const RECEIVE_BUDGET: usize = 4096;

enum Io {
    Udp(UdpSocket),
    Tcp {
        stream: TcpStream,
        read_buf: Vec<u8>,
        broken: bool,
    },
}

pub struct ProbeSocket {
    io: Io,
    target: SocketAddr,
    params: RequestParams,
    out: Vec<u8>,
    run: u32,
}

impl ProbeSocket {
    pub fn open(
        transport: Transport,
        local_ip: IpAddr,
        target: SocketAddr,
        run: u32,
        domain: &str,
        body: &[u8],
    ) -> io::Result<Self> {
        let (io, local) = match transport {
            Transport::Udp => {
                let socket = UdpSocket::bind(SocketAddr::new(local_ip, 0))?;
                socket.set_nonblocking(true)?;
                let local = socket.local_addr()?;
                (Io::Udp(socket), local)
            }
            Transport::Tcp => {
                let stream = TcpStream::connect_timeout(&target, Duration::from_secs(2))?;
                stream.set_nodelay(true)?;
                stream.set_nonblocking(true)?;
                let local = stream.local_addr()?;
                (
                    Io::Tcp {
                        stream,
                        read_buf: Vec::with_capacity(16 * 1024),
                        broken: false,
                    },
                    local,
                )
            }
        };
        Ok(Self {
            io,
            target,
            params: RequestParams {
                domain: domain.to_owned(),
                run,
                local,
                transport,
                pai: true,
                body: body.to_vec(),
            },
            out: Vec::with_capacity(1024),
            run,
        })
    }

    /// Sends MESSAGE `seq` (PROBE_SEQ_BIT is added) from `sender` to `recipient`.
    pub fn send(&mut self, seq: u64, sender: u32, recipient: u32) -> io::Result<()> {
        self.out.clear();
        let values = Values {
            seq: seq | PROBE_SEQ_BIT,
            slot: 0,
            attempt: 0,
            sender,
            recipient,
        };
        write_message(&mut self.out, &self.params, &values, None);
        match &mut self.io {
            Io::Udp(socket) => socket.send_to(&self.out, self.target).map(|_| ()),
            Io::Tcp { stream, broken, .. } => {
                if *broken {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "probe connection closed",
                    ));
                }
                // Non-blocking: retry a full send buffer for at most 2 s (20,000 x 100 µs).
                let mut written = 0;
                for _ in 0..20_000 {
                    match stream.write(&self.out[written..]) {
                        Ok(0) => break,
                        Ok(n) => written += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_micros(100));
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                    if written == self.out.len() {
                        return Ok(());
                    }
                }
                *broken = true;
                Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "probe connection did not take the request",
                ))
            }
        }
    }

    /// Reads answers until `deadline`, calling `on_answer(seq without the probe bit, code,
    /// arrival)` for each final response of this run. Returns early once `stop()` says so
    /// after an answer.
    pub fn receive(
        &mut self,
        deadline: Instant,
        mut on_answer: impl FnMut(u64, u16, Instant),
        mut stop: impl FnMut() -> bool,
    ) -> io::Result<()> {
        let run = self.run;
        let mut handle = |msg: &[u8]| {
            let Some(code) = scan::status_code(msg).filter(|&c| c >= 200) else {
                return;
            };
            let Some(id) = CallId::of_message(msg).filter(|id| id.run == run) else {
                return;
            };
            if id.seq & PROBE_SEQ_BIT != 0 {
                on_answer(id.seq & !PROBE_SEQ_BIT, code, Instant::now());
            }
        };
        let mut datagram = vec![0u8; 65_536];
        let mut chunk = [0u8; 16 * 1024];
        // Bounded by RECEIVE_BUDGET reads and the deadline.
        for _ in 0..RECEIVE_BUDGET {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            let fd = match &self.io {
                Io::Udp(socket) => socket.as_raw_fd(),
                Io::Tcp { stream, .. } => stream.as_raw_fd(),
            };
            if !wait_readable(fd, left)? {
                continue;
            }
            let read = match &mut self.io {
                Io::Udp(socket) => socket.recv(&mut datagram).map(|n| {
                    handle(&datagram[..n]);
                }),
                Io::Tcp {
                    stream,
                    read_buf,
                    broken,
                } => {
                    if *broken {
                        return Err(io::Error::new(
                            io::ErrorKind::BrokenPipe,
                            "probe connection closed",
                        ));
                    }
                    match stream.read(&mut chunk) {
                        Ok(0) => {
                            *broken = true;
                            Ok(())
                        }
                        Ok(n) => {
                            read_buf.extend_from_slice(&chunk[..n]);
                            drain_frames(read_buf, broken, &mut handle);
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
            };
            match read {
                Ok(()) => {
                    if stop() {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::template::write_response;

    #[test]
    fn probes_round_trip_over_udp() {
        let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let target = server.local_addr().expect("addr");
        let mut probe = ProbeSocket::open(
            Transport::Udp,
            IpAddr::from([127, 0, 0, 1]),
            target,
            0xabcd,
            "example.com",
            b"hi",
        )
        .expect("probe");
        probe.send(7, 3, 4).expect("send");
        let mut buf = vec![0u8; 65_536];
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let (n, from) = server.recv_from(&mut buf).expect("recv");
        let request = &buf[..n];
        let id = CallId::of_message(request).expect("call-id");
        assert_eq!((id.run, id.seq), (0xabcd, 7 | PROBE_SEQ_BIT));
        assert!(
            scan::header(request, b"P-Asserted-Identity", None)
                .is_some_and(|v| v == b"<sip:u3@example.com>")
        );
        let mut answer = Vec::new();
        assert!(write_response(request, 100, "Trying", "t", &mut answer));
        server.send_to(&answer, from).expect("send 100");
        answer.clear();
        assert!(write_response(request, 603, "Decline", "t", &mut answer));
        server.send_to(&answer, from).expect("send 603");
        let seen = std::cell::RefCell::new(Vec::new());
        probe
            .receive(
                Instant::now() + Duration::from_secs(5),
                |seq, code, _| seen.borrow_mut().push((seq, code)),
                || !seen.borrow().is_empty(),
            )
            .expect("receive");
        assert_eq!(seen.into_inner(), vec![(7, 603)], "the 100 is skipped");
        // Nothing more: returns at the deadline.
        probe
            .receive(
                Instant::now() + Duration::from_millis(30),
                |_, _, _| panic!("no answer expected"),
                || false,
            )
            .expect("receive");
    }
}
