//! End-to-end tests of the transports on real loopback sockets (port 0), with a toy framer:
//! a message ends at CRLFCRLF; "BAD" starts an unframeable stream.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::*;

const WAIT: Duration = Duration::from_secs(10);

/// Echoes `echo:<msg>`; `WHO` answers the connection's cid; `FWD <cid> <text>` sends `<text>` to
/// that connection; `q...` is swallowed.
struct Toy {
    worker: u16,
    forwarded_across: Arc<AtomicU64>,
}

fn toy(forwarded_across: Arc<AtomicU64>) -> impl Fn(WorkerId) -> Toy + Send + Sync + 'static {
    move |id| Toy {
        worker: id.0,
        forwarded_across: Arc::clone(&forwarded_across),
    }
}

impl Handler for Toy {
    fn frame(&mut self, buf: &[u8]) -> Framing {
        const END: &[u8] = b"\r\n\r\n";
        if buf.len() < 4 && END.starts_with(buf) {
            return Framing::Incomplete;
        }
        if buf.starts_with(END) {
            return Framing::KeepAlive { len: 4 };
        }
        if buf.starts_with(b"\r\n") {
            return Framing::Skip { len: 2 };
        }
        if buf.starts_with(b"BAD") {
            return Framing::Bad;
        }
        match buf.windows(4).position(|w| w == END) {
            Some(p) => Framing::Message { len: p + 4 },
            None => Framing::Incomplete,
        }
    }

    fn on_message(&mut self, msg: &[u8], src: &Source, out: &mut Outbox) {
        if msg.starts_with(b"q") {
            return;
        }
        if msg.starts_with(b"WHO") {
            if let Some(c) = src.conn {
                let b = out.buffer();
                c.write_param(b);
                b.extend_from_slice(b"\r\n\r\n");
                out.push(Dest::Reply);
            }
            return;
        }
        if let Some(rest) = msg.strip_prefix(b"FWD ") {
            let mut it = rest.splitn(2, |&b| b == b' ');
            let (Some(cid), Some(text)) = (it.next(), it.next()) else {
                return;
            };
            let Some(r) = ConnRef::parse(cid) else { return };
            if r.worker != self.worker {
                self.forwarded_across.fetch_add(1, Ordering::Relaxed);
            }
            out.buffer().extend_from_slice(text);
            out.push(Dest::Conn(r));
            return;
        }
        let b = out.buffer();
        b.extend_from_slice(b"echo:");
        b.extend_from_slice(msg);
        out.push(Dest::Reply);
    }

    fn on_bad_stream(&mut self, buf: &[u8], _src: &Source, out: &mut Outbox) {
        let code: &[u8] = if buf.len() >= 1024 { b"513" } else { b"400" };
        let b = out.buffer();
        b.extend_from_slice(code);
        b.extend_from_slice(b"\r\n\r\n");
        out.push(Dest::Reply);
    }
}

fn cfg(workers: usize) -> TransportConfig {
    TransportConfig {
        sip_addr: "127.0.0.1:0".parse().unwrap(),
        workers,
        max_tcp_conns_per_worker: 64,
        so_rcvbuf: 1 << 20,
        so_sndbuf: 1 << 20,
        ..TransportConfig::default()
    }
}

fn start_toy(c: TransportConfig) -> (Transports, Arc<AtomicU64>) {
    let across = Arc::new(AtomicU64::new(0));
    let t = start(c, toy(Arc::clone(&across))).expect("start");
    (t, across)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s
}

/// Reads until `want` bytes arrived, EOF, or the bounded wait ends.
fn read_n(s: &mut TcpStream, want: usize) -> Vec<u8> {
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < want && Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    got
}

/// Whether the peer closed the connection within the bounded wait.
fn closed_within_wait(s: &mut TcpStream) -> bool {
    let deadline = Instant::now() + WAIT;
    let mut buf = [0u8; 256];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}

fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond()
}

#[test]
fn conn_ref_param_round_trip() {
    let r = ConnRef {
        worker: 3,
        token: 4_000_000_000,
        generation: 0,
    };
    let mut v = b"x;".to_vec();
    r.write_param(&mut v);
    assert_eq!(v, b"x;cid=3.4000000000.0");
    assert_eq!(ConnRef::parse(&v[2..]), Some(r));
    assert_eq!(ConnRef::parse(b"3.4000000000.0"), Some(r));
    for bad in [
        &b""[..],
        b"1.2",
        b"1.2.3.4",
        b"70000.1.1",
        b"1.99999999999.1",
        b"1.-2.3",
        b"a.b.c",
        b"1..3",
        b"cid=",
    ] {
        assert_eq!(
            ConnRef::parse(bad),
            None,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn udp_echo() {
    let (t, _) = start_toy(cfg(2));
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 2048];
    for i in 0..50 {
        let msg = format!("ping {i}");
        c.send_to(msg.as_bytes(), t.local_addr()).unwrap();
        let (n, from) = c.recv_from(&mut buf).expect("echo");
        assert_eq!(from, t.local_addr(), "reply leaves from the SIP port");
        assert_eq!(&buf[..n], format!("echo:{msg}").as_bytes());
    }
    // The counter is bumped after sendmmsg returns, which may be after the echo arrived.
    assert!(wait_for(|| t.stats().total().udp_tx == 50));
    assert_eq!(t.stats().total().udp_rx, 50);
    t.shutdown();
}

/// The io_uring path (or its mio fallback where io_uring is forbidden) echoes like mio does.
#[cfg(feature = "uring")]
#[test]
fn udp_echo_uring() {
    let (t, _) = start_toy(TransportConfig {
        udp_uring: true,
        ..cfg(2)
    });
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 2048];
    for i in 0..200 {
        let msg = format!("ping {i}");
        c.send_to(msg.as_bytes(), t.local_addr()).unwrap();
        let (n, from) = c.recv_from(&mut buf).expect("echo");
        assert_eq!(from, t.local_addr());
        assert_eq!(&buf[..n], format!("echo:{msg}").as_bytes());
    }
    assert!(wait_for(|| t.stats().total().udp_tx == 200));
    eprintln!("uring workers: {}", t.stats().total().uring_active);
    t.shutdown();
}

#[test]
fn single_source_spreads_over_every_worker() {
    let (t, _) = start_toy(cfg(2));
    assert!(t.spreading(), "SO_ATTACH_REUSEPORT_CBPF attached");
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..2000 {
        c.send_to(b"q", t.local_addr()).unwrap();
    }
    let stats = t.stats();
    assert!(wait_for(|| stats.total().udp_rx >= 2000));
    let per: Vec<u64> = stats.per_worker().iter().map(|w| w.udp_rx).collect();
    assert!(per.iter().all(|&n| n > 0), "per-worker udp_rx {per:?}");
    t.shutdown();
}

#[test]
fn tcp_pipelined_and_split_messages() {
    let (t, _) = start_toy(cfg(2));
    let mut s = connect(t.local_addr());
    s.write_all(b"a\r\n\r\nbb\r\n\r\nccc\r\n\r\n").unwrap();
    let want = b"echo:a\r\n\r\necho:bb\r\n\r\necho:ccc\r\n\r\n";
    assert_eq!(read_n(&mut s, want.len()), want);
    for part in [&b"hel"[..], b"lo\r", b"\n", b"\r", b"\n"] {
        s.write_all(part).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let want = b"echo:hello\r\n\r\n";
    assert_eq!(read_n(&mut s, want.len()), want);
    assert_eq!(t.stats().total().tcp_rx, 4);
    t.shutdown();
}

#[test]
fn tcp_keepalive_gets_crlf_and_stray_crlf_is_skipped() {
    let (t, _) = start_toy(cfg(1));
    let mut s = connect(t.local_addr());
    s.write_all(b"\r\n\r\n").unwrap();
    assert_eq!(read_n(&mut s, 2), b"\r\n");
    s.write_all(b"\r\nm\r\n\r\n").unwrap();
    let want = b"echo:m\r\n\r\n";
    assert_eq!(read_n(&mut s, want.len()), want);
    assert_eq!(t.stats().total().keepalives, 1);
    t.shutdown();
}

#[test]
fn tcp_bad_stream_gets_400_then_close() {
    let (t, _) = start_toy(cfg(1));
    let mut s = connect(t.local_addr());
    s.write_all(b"ok\r\n\r\nBAD stuff").unwrap();
    let want = b"echo:ok\r\n\r\n400\r\n\r\n";
    assert_eq!(read_n(&mut s, want.len()), want);
    assert!(closed_within_wait(&mut s));
    assert_eq!(t.stats().total().tcp_bad_stream, 1);
    t.shutdown();
}

#[test]
fn tcp_message_over_the_buffer_cap_gets_513_then_close() {
    let (t, _) = start_toy(TransportConfig {
        tcp_buf_max: 1024,
        ..cfg(1)
    });
    let mut s = connect(t.local_addr());
    s.write_all(&[b'x'; 3000]).unwrap();
    let want = b"513\r\n\r\n";
    assert_eq!(read_n(&mut s, want.len()), want);
    assert!(closed_within_wait(&mut s));
    assert_eq!(t.stats().total().tcp_oversize, 1);
    t.shutdown();
}

#[test]
fn tcp_connection_limit_refuses_past_the_cap() {
    let (t, _) = start_toy(TransportConfig {
        max_tcp_conns_per_worker: 2,
        ..cfg(1)
    });
    let mut kept = Vec::new();
    for _ in 0..2 {
        let mut s = connect(t.local_addr());
        s.write_all(b"x\r\n\r\n").unwrap();
        assert_eq!(read_n(&mut s, 10), b"echo:x\r\n\r\n");
        kept.push(s);
    }
    let mut third = connect(t.local_addr());
    assert!(closed_within_wait(&mut third));
    assert!(wait_for(|| t.stats().total().tcp_refused == 1));
    assert_eq!(t.stats().total().tcp_accepted, 2);
    t.shutdown();
}

#[test]
fn tcp_idle_connection_is_closed() {
    let (t, _) = start_toy(TransportConfig {
        tcp_idle_ms_override: 200,
        ..cfg(1)
    });
    let mut s = connect(t.local_addr());
    s.write_all(b"x\r\n\r\n").unwrap();
    assert_eq!(read_n(&mut s, 10), b"echo:x\r\n\r\n");
    assert!(closed_within_wait(&mut s));
    assert!(wait_for(|| t.stats().total().tcp_closed_idle == 1));
    t.shutdown();
}

/// Asks a connection for its cid.
fn who(s: &mut TcpStream) -> ConnRef {
    s.write_all(b"WHO\r\n\r\n").unwrap();
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    while !got.ends_with(b"\r\n\r\n") && Instant::now() < deadline {
        got.extend(read_n(s, 1));
    }
    ConnRef::parse(got.strip_suffix(b"\r\n\r\n").expect("cid reply")).expect("cid")
}

#[test]
fn dest_conn_crosses_workers_through_the_mailbox() {
    let (t, across) = start_toy(cfg(2));
    // The kernel spreads connections by 4-tuple hash: open a few until two workers own one.
    let mut conns: Vec<(TcpStream, ConnRef)> = Vec::new();
    for _ in 0..32 {
        let mut s = connect(t.local_addr());
        let r = who(&mut s);
        if conns.iter().all(|(_, o)| o.worker != r.worker) {
            conns.push((s, r));
        }
        if conns.len() == 2 {
            break;
        }
    }
    assert_eq!(conns.len(), 2, "two workers own a connection");
    let target = conns[0].1;
    let mut msg = b"FWD ".to_vec();
    msg.extend_from_slice(
        format!("{}.{}.{}", target.worker, target.token, target.generation).as_bytes(),
    );
    msg.extend_from_slice(b" hi-there\r\n\r\n");
    conns[1].0.write_all(&msg).unwrap();
    let want = b"hi-there\r\n\r\n";
    assert_eq!(read_n(&mut conns[0].0, want.len()), want);
    assert_eq!(across.load(Ordering::Relaxed), 1);
    // A stale reference (old generation) is refused, not delivered to a stranger.
    let stale = ConnRef {
        generation: target.generation.wrapping_add(1) & ConnRef::FIELD_MASK,
        ..target
    };
    t.handle()
        .send(Dest::Conn(stale), b"nope".to_vec())
        .unwrap();
    assert!(wait_for(|| t.stats().total().send_errors >= 1));
    t.shutdown();
}

#[test]
fn handle_sends_from_another_thread() {
    let (t, _) = start_toy(cfg(2));
    let udp_peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp_peer.set_read_timeout(Some(WAIT)).unwrap();
    let mut tcp_peer = connect(t.local_addr());
    let cid = who(&mut tcp_peer);
    let out_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let h = t.handle();
    let (udp_to, tcp_to) = (
        udp_peer.local_addr().unwrap(),
        out_listener.local_addr().unwrap(),
    );
    std::thread::spawn(move || {
        for i in 0..4 {
            h.send(Dest::Udp(udp_to), format!("u{i}").into_bytes())
                .unwrap();
        }
        h.send(Dest::Conn(cid), b"to-conn".to_vec()).unwrap();
        h.send(Dest::Tcp(tcp_to), b"out1;".to_vec()).unwrap();
        h.send(Dest::Tcp(tcp_to), b"out2;".to_vec()).unwrap();
    })
    .join()
    .unwrap();
    let mut buf = [0u8; 64];
    let mut got: Vec<String> = (0..4)
        .map(|_| {
            let (n, from) = udp_peer.recv_from(&mut buf).expect("udp from handle");
            assert_eq!(from, t.local_addr());
            String::from_utf8_lossy(&buf[..n]).into_owned()
        })
        .collect();
    got.sort();
    assert_eq!(got, ["u0", "u1", "u2", "u3"]);
    assert_eq!(read_n(&mut tcp_peer, 7), b"to-conn");
    // Outbound TCP: one connection, reused for both messages, in order.
    let (mut inbound, _) = out_listener.accept().unwrap();
    inbound
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert_eq!(read_n(&mut inbound, 10), b"out1;out2;");
    out_listener.set_nonblocking(true).unwrap();
    assert!(out_listener.accept().is_err(), "no second connection");
    t.shutdown();
}

#[test]
fn mailbox_full_is_reported() {
    let (t, _) = start_toy(TransportConfig {
        mailbox_cap: 1,
        ..cfg(1)
    });
    let h = t.handle();
    let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
    // The worker drains concurrently, so only "some Full within a bounded number" is certain.
    let fulls = (0..100_000)
        .filter(|_| h.send(Dest::Udp(to), b"x".to_vec()).is_err())
        .count();
    assert!(fulls > 0);
    assert_eq!(t.stats().total().mailbox_full, fulls as u64);
    t.shutdown();
}

#[test]
fn conn_ref_packs_into_u64_and_back() {
    for r in [
        ConnRef {
            worker: 0,
            token: 0,
            generation: 0,
        },
        ConnRef {
            worker: 3,
            token: 17,
            generation: 42,
        },
        ConnRef {
            worker: u16::MAX,
            token: ConnRef::FIELD_MASK,
            generation: ConnRef::FIELD_MASK,
        },
    ] {
        assert_eq!(ConnRef::from_u64(r.to_u64()), r);
    }
    assert_ne!(
        ConnRef {
            worker: 1,
            token: 2,
            generation: 3
        }
        .to_u64(),
        ConnRef {
            worker: 1,
            token: 3,
            generation: 2
        }
        .to_u64()
    );
}

/// UDP sockets bound to `port` on this machine (`/proc/net/udp`, IPv4).
fn udp_sockets_on(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/udp").expect("/proc/net/udp");
    let suffix = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|a| a.ends_with(&suffix))
        })
        .count()
}

#[test]
fn udp_sends_leave_from_a_socket_that_never_receives() {
    // (workers, send socket asked for, spreading asked for, send sockets expected): with
    // several workers and no spreading there is no program, so no send-only socket either.
    for (workers, apart, spread, made) in [
        (1, true, false, true),
        (2, true, true, true),
        (1, false, true, false),
        (2, true, false, false),
    ] {
        let (t, _) = start_toy(TransportConfig {
            udp_send_socket: apart,
            spread_single_source: spread,
            ..cfg(workers)
        });
        assert_eq!(t.spreading(), spread && workers > 1);
        let port = t.local_addr().port();
        let want = if made { 2 * workers } else { workers };
        assert_eq!(
            udp_sockets_on(port),
            want,
            "{workers} workers, apart {apart}"
        );
        // Many source ports, so the kernel's own reuseport hash would have put some of them on
        // the send-only socket: every datagram must still be echoed, from the server's port.
        let clients: Vec<UdpSocket> = (0..64)
            .map(|_| {
                let c = UdpSocket::bind("127.0.0.1:0").unwrap();
                c.set_read_timeout(Some(WAIT)).unwrap();
                c
            })
            .collect();
        let mut buf = [0u8; 256];
        for round in 0..4 {
            for (i, c) in clients.iter().enumerate() {
                c.send_to(format!("m{round}.{i}\r\n\r\n").as_bytes(), t.local_addr())
                    .unwrap();
            }
            for (i, c) in clients.iter().enumerate() {
                let (n, from) = c.recv_from(&mut buf).expect("echo");
                assert_eq!(from, t.local_addr());
                assert_eq!(&buf[..n], format!("echo:m{round}.{i}\r\n\r\n").as_bytes());
            }
        }
        assert_eq!(t.stats().total().udp_rx, 4 * 64);
        t.shutdown();
    }
}
