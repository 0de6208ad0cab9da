//! `imserver run` as a user runs it: the real binary on ephemeral loopback ports, spoken to over
//! UDP and TCP. Registration from the trusted core drives delivery; TCP framing, keep-alives,
//! size limits and the metrics endpoint behave as documented.

mod common;

use std::io::Read;
use std::time::Duration;

use common::{ServerProc, Tcp, Udp, header, message, ok_for, status};

const BOB: &str = "sip:bob@example.com";
const TOM: &str = "sip:tom@example.com";

fn options(via: std::net::SocketAddr, transport: &str, call_id: &str) -> String {
    format!(
        "OPTIONS sip:im@localhost SIP/2.0\r\nVia: SIP/2.0/{transport} {via};branch=z9hG4bK{call_id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:t@localhost>;tag=1\r\nTo: <sip:im@localhost>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

/// A third-party REGISTER from the core (trusted 127.0.0.1): To is the AoR, Contact the UE.
fn register(
    aor: &str,
    contact: std::net::SocketAddr,
    via: std::net::SocketAddr,
    expires: u32,
    call_id: &str,
) -> Vec<u8> {
    format!(
        "REGISTER sip:im.example.com SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bK{call_id};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:scscf@example.com>;tag=r1\r\nTo: <{aor}>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 REGISTER\r\nContact: <sip:bob@{contact}>;+g.oma.sip-im\r\nExpires: {expires}\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn options_over_udp_and_tcp() {
    let s = ServerProc::start(&[]);
    let u = Udp::bind();
    u.send(s.sip, options(u.addr(), "UDP", "o1").as_bytes());
    let r = u.recv().expect("200");
    assert_eq!(status(&r), 200);
    assert!(header(&r, "Allow").unwrap().contains("MESSAGE"));
    assert!(header(&r, "Accept").is_some());
    let mut t = Tcp::connect(s.sip);
    let via = t.addr();
    t.send(options(via, "TCP", "o2").as_bytes());
    assert_eq!(t.recv().map(|r| status(&r)), Some(200));
}

#[test]
fn registered_user_gets_messages_and_480_after_the_binding_expires() {
    let s = ServerProc::start(&["--glms", "none"]);
    let core = Udp::bind();
    let bob_ue = Udp::bind();
    core.send(s.sip, &register(BOB, bob_ue.addr(), core.addr(), 2, "reg1"));
    let r = core.recv().expect("REGISTER answered");
    assert_eq!(status(&r), 200, "{r}");

    // Over UDP: relayed to Bob's contact; Bob's 200 comes back to the sender.
    core.send(
        s.sip,
        &message(BOB, TOM, Some(TOM), core.addr(), "UDP", "m1"),
    );
    let relayed = bob_ue.recv().expect("relayed to the registered contact");
    assert!(relayed.starts_with(&format!("MESSAGE sip:bob@{} SIP/2.0", bob_ue.addr())));
    bob_ue.send(s.sip, &ok_for(&relayed));
    assert_eq!(core.recv().map(|r| status(&r)), Some(200));

    // Over TCP from the core: the same, and the 200 comes back on the connection.
    let mut t = Tcp::connect(s.sip);
    let via = t.addr();
    t.send(&message(BOB, TOM, Some(TOM), via, "TCP", "m2"));
    let relayed = bob_ue.recv().expect("relayed");
    bob_ue.send(s.sip, &ok_for(&relayed));
    let r = t.recv().expect("200 on the connection");
    assert_eq!(status(&r), 200);
    assert_eq!(header(&r, "Call-ID"), Some("m2"));

    // D5: once the binding expires the sender gets 480.
    std::thread::sleep(Duration::from_millis(2600));
    core.send(
        s.sip,
        &message(BOB, TOM, Some(TOM), core.addr(), "UDP", "m3"),
    );
    assert_eq!(core.recv().map(|r| status(&r)), Some(480));
    assert!(bob_ue.recv_for(Duration::from_millis(200)).is_none());
}

#[test]
fn tcp_pipelined_split_keepalive_and_bad_framing() {
    let s = ServerProc::start(&[]);
    // Two requests in one write, then one request in three writes.
    let mut t = Tcp::connect(s.sip);
    let via = t.addr();
    let two = format!("{}{}", options(via, "TCP", "p1"), options(via, "TCP", "p2"));
    t.send(two.as_bytes());
    let a = t.recv().expect("first");
    let b = t.recv().expect("second");
    assert_eq!(
        (header(&a, "Call-ID"), header(&b, "Call-ID")),
        (Some("p1"), Some("p2"))
    );
    let one = options(via, "TCP", "p3");
    let (x, rest) = one.as_bytes().split_at(20);
    let (y, z) = rest.split_at(40);
    for part in [x, y, z] {
        t.send(part);
        std::thread::sleep(Duration::from_millis(30));
    }
    assert_eq!(
        t.recv()
            .and_then(|r| header(&r, "Call-ID").map(str::to_owned)),
        Some("p3".into())
    );

    // RFC 5626 keep-alive: CRLFCRLF gets CRLF.
    t.send(b"\r\n\r\n");
    let mut pong = [0u8; 2];
    t.stream.read_exact(&mut pong).expect("pong");
    assert_eq!(&pong, b"\r\n");

    // No Content-Length on a stream: 400, then the connection is closed.
    let mut bad = Tcp::connect(s.sip);
    let via = bad.addr();
    let no_cl = options(via, "TCP", "ncl").replace("Content-Length: 0\r\n", "");
    bad.send(no_cl.as_bytes());
    let r = bad.recv().expect("400");
    assert_eq!(status(&r), 400, "{r}");
    assert!(
        r.contains("Content-Length"),
        "the reason names the fault: {r}"
    );
    assert!(bad.closed());
}

#[test]
fn oversize_messages_get_513() {
    let s = ServerProc::start(&[]);
    // D12: a UDP request over 8 KiB.
    let u = Udp::bind();
    let big = "x".repeat(9000);
    let msg = String::from_utf8(message(BOB, TOM, Some(TOM), u.addr(), "UDP", "big"))
        .unwrap()
        .replace("Hello, this is a test message.", &big)
        .replace(
            "Content-Length: 30",
            &format!("Content-Length: {}", big.len()),
        );
    u.send(s.sip, msg.as_bytes());
    assert_eq!(u.recv().map(|r| status(&r)), Some(513));

    // D12: a TCP message over 64 KiB gets 513 and the connection is closed.
    let mut t = Tcp::connect(s.sip);
    let via = t.addr();
    let huge = "y".repeat(70_000);
    let msg = String::from_utf8(message(BOB, TOM, Some(TOM), via, "TCP", "huge"))
        .unwrap()
        .replace("Hello, this is a test message.", &huge)
        .replace(
            "Content-Length: 30",
            &format!("Content-Length: {}", huge.len()),
        );
    t.send(msg.as_bytes());
    assert_eq!(t.recv().map(|r| status(&r)), Some(513));
    assert!(t.closed());
}

#[test]
fn metrics_count_requests_responses_and_decisions() {
    let s = ServerProc::start(&[]);
    let u = Udp::bind();
    u.send(s.sip, options(u.addr(), "UDP", "m-o").as_bytes());
    assert!(u.recv().is_some());
    u.send(
        s.sip,
        &message(BOB, TOM, Some(TOM), u.addr(), "UDP", "m-404"),
    );
    assert_eq!(u.recv().map(|r| status(&r)), Some(404));
    assert_eq!(
        s.metric("imserver_requests_received_total{method=\"OPTIONS\"}"),
        1
    );
    assert_eq!(
        s.metric("imserver_requests_received_total{method=\"MESSAGE\"}"),
        1
    );
    assert_eq!(s.metric("imserver_responses_sent_total{code=\"404\"}"), 1);
    assert_eq!(
        s.metric("imserver_fastpath_decisions_total{decision=\"unknown\"}"),
        1
    );
    let text = s.metrics_text();
    for family in [
        "imserver_slow_queue_depth",
        "imserver_udp_received_total",
        "imserver_drops_total",
    ] {
        assert!(text.contains(family), "{family} missing");
    }
}
