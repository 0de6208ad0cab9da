//! A sender socket: a UDP socket with a `sendmmsg` batch, or a TCP connection with write and
//! read buffers. Either way it has its own Via sent-by and MESSAGE template cache.
#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::sip::scan::{self, Frame};
use crate::sip::template::{MessageWriter, RequestParams};
use crate::sys::{self, MAX_BATCH, RawAddr, RecvBatch};

/// A TCP peer that sends more than this unframed is broken.
const MAX_READ_BUFFER_BYTES: usize = 1 << 20;
/// Queued TCP output past which the connection refuses new requests (counted as send failures).
const MAX_WRITE_BUFFER_BYTES: usize = 16 << 20;

pub enum Io {
    Udp {
        socket: mio::net::UdpSocket,
        batch: Vec<Vec<u8>>,
        batch_slots: Vec<u32>,
        pending: usize,
    },
    Tcp {
        stream: mio::net::TcpStream,
        write_buf: Vec<u8>,
        read_buf: Vec<u8>,
        broken: bool,
    },
}

pub struct Conn {
    pub io: Io,
    pub local: SocketAddr,
    pub writer: MessageWriter,
    pub outstanding: u32,
}

/// A UDP socket bound to `ip:port` with generous kernel buffers and, over IPv4, DF set.
pub fn bind_udp(ip: IpAddr, port: u16, buffer_bytes: usize) -> io::Result<UdpSocket> {
    let addr = SocketAddr::new(ip, port);
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: the kernel caps these at net.core.{r,w}mem_max.
    let _ = socket.set_recv_buffer_size(buffer_bytes);
    let _ = socket.set_send_buffer_size(buffer_bytes);
    if addr.is_ipv4() {
        // DF, as imserver sends (the echo floor then takes the same kernel path); best effort.
        let _ = sys::set_dont_fragment(socket.as_raw_fd());
    }
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

impl Conn {
    pub fn udp(
        ip: IpAddr,
        buffer_bytes: usize,
        params: impl FnOnce(SocketAddr) -> RequestParams,
    ) -> io::Result<Self> {
        let socket = bind_udp(ip, 0, buffer_bytes)?;
        let local = socket.local_addr()?;
        Ok(Self {
            io: Io::Udp {
                socket: mio::net::UdpSocket::from_std(socket),
                batch: (0..MAX_BATCH).map(|_| Vec::with_capacity(1024)).collect(),
                batch_slots: vec![0; MAX_BATCH],
                pending: 0,
            },
            local,
            writer: MessageWriter::new(params(local)),
            outstanding: 0,
        })
    }

    pub fn tcp(
        target: SocketAddr,
        params: impl FnOnce(SocketAddr) -> RequestParams,
    ) -> io::Result<Self> {
        let stream = TcpStream::connect_timeout(&target, Duration::from_secs(2))?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        let local = stream.local_addr()?;
        Ok(Self {
            io: Io::Tcp {
                stream: mio::net::TcpStream::from_std(stream),
                write_buf: Vec::with_capacity(64 * 1024),
                read_buf: Vec::with_capacity(64 * 1024),
                broken: false,
            },
            local,
            writer: MessageWriter::new(params(local)),
            outstanding: 0,
        })
    }

    pub fn source(&mut self) -> &mut dyn mio::event::Source {
        match &mut self.io {
            Io::Udp { socket, .. } => socket,
            Io::Tcp { stream, .. } => stream,
        }
    }

    pub fn is_udp(&self) -> bool {
        matches!(self.io, Io::Udp { .. })
    }

    /// Room for one more request right now.
    pub fn can_queue(&self) -> bool {
        match &self.io {
            Io::Udp { .. } => true,
            Io::Tcp {
                write_buf, broken, ..
            } => !broken && write_buf.len() < MAX_WRITE_BUFFER_BYTES,
        }
    }

    /// Queues one request (written by `write`) for slot `slot`. For UDP a full batch must be
    /// flushed first: the caller checks [`Conn::batch_full`].
    pub fn queue(&mut self, slot: u32, write: impl FnOnce(&mut MessageWriter, &mut Vec<u8>)) {
        match &mut self.io {
            Io::Udp {
                batch,
                batch_slots,
                pending,
                ..
            } => {
                let buf = &mut batch[*pending];
                buf.clear();
                write(&mut self.writer, buf);
                batch_slots[*pending] = slot;
                *pending += 1;
            }
            Io::Tcp { write_buf, .. } => write(&mut self.writer, write_buf),
        }
    }

    pub fn batch_full(&self) -> bool {
        matches!(&self.io, Io::Udp { pending, .. } if *pending >= MAX_BATCH)
    }

    /// Sends what is queued. UDP: one `sendmmsg`; the slots of datagrams the kernel refused
    /// are passed to `failed`. TCP: writes until the socket would block.
    pub fn flush(&mut self, target: &RawAddr, mut failed: impl FnMut(u32)) -> u64 {
        match &mut self.io {
            Io::Udp {
                socket,
                batch,
                batch_slots,
                pending,
            } => {
                if *pending == 0 {
                    return 0;
                }
                let slices: Vec<&[u8]> = batch[..*pending].iter().map(Vec::as_slice).collect();
                let sent =
                    sys::send_batch(socket.as_raw_fd(), &slices, std::slice::from_ref(target))
                        .unwrap_or(0);
                for &slot in &batch_slots[sent..*pending] {
                    failed(slot);
                }
                *pending = 0;
                sent as u64
            }
            Io::Tcp {
                stream,
                write_buf,
                broken,
                ..
            } => {
                let mut written = 0;
                // Bounded: each round writes something or stops.
                while written < write_buf.len() && !*broken {
                    match stream.write(&write_buf[written..]) {
                        Ok(0) => *broken = true,
                        Ok(n) => written += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => *broken = true,
                    }
                }
                write_buf.drain(..written);
                0
            }
        }
    }

    /// Reads what is waiting and hands each datagram or framed message to `on_message`.
    /// Returns false when more may be waiting (the read budget ran out).
    pub fn receive(&mut self, recv: &mut RecvBatch, mut on_message: impl FnMut(&[u8])) -> bool {
        const ROUNDS: usize = 64;
        match &mut self.io {
            Io::Udp { socket, .. } => {
                for _ in 0..ROUNDS {
                    let n = recv.recv(socket.as_raw_fd(), MAX_BATCH).unwrap_or(0);
                    for i in 0..n {
                        on_message(recv.datagram(i).0);
                    }
                    if n < MAX_BATCH {
                        return true;
                    }
                }
                false
            }
            Io::Tcp {
                stream,
                read_buf,
                broken,
                ..
            } => {
                let mut chunk = [0u8; 16 * 1024];
                for _ in 0..ROUNDS {
                    match stream.read(&mut chunk) {
                        Ok(0) => {
                            *broken = true;
                            return true;
                        }
                        Ok(n) => read_buf.extend_from_slice(&chunk[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            drain_frames(read_buf, broken, &mut on_message);
                            return true;
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => {
                            *broken = true;
                            return true;
                        }
                    }
                    if read_buf.len() > MAX_READ_BUFFER_BYTES {
                        *broken = true;
                        return true;
                    }
                    drain_frames(read_buf, broken, &mut on_message);
                }
                false
            }
        }
    }
}

/// Hands every complete message at the front of `buf` to `on_message` and removes it.
pub fn drain_frames(buf: &mut Vec<u8>, broken: &mut bool, mut on_message: impl FnMut(&[u8])) {
    let mut start = 0;
    // Bounded: every round consumes bytes or stops.
    loop {
        match scan::frame(&buf[start..]) {
            Frame::Skip(n) => start += n,
            Frame::Message(n) => {
                on_message(&buf[start..start + n]);
                start += n;
            }
            Frame::Incomplete => break,
            Frame::Broken => {
                *broken = true;
                start = buf.len();
                break;
            }
        }
    }
    buf.drain(..start);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generator's and the echo floor's sockets take the send path imserver's do (DF).
    #[test]
    fn udp_sockets_set_dont_fragment() {
        let s = bind_udp("127.0.0.1".parse().unwrap(), 0, 1 << 16).unwrap();
        assert_eq!(
            sys::mtu_discover(s.as_raw_fd()).unwrap(),
            libc::IP_PMTUDISC_DO
        );
        let plain = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_ne!(
            sys::mtu_discover(plain.as_raw_fd()).unwrap(),
            libc::IP_PMTUDISC_DO
        );
    }
}
