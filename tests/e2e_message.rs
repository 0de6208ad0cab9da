//! The MESSAGE fast path end to end, over real UDP and TCP sockets on loopback, with the
//! policy snapshot fed through the library API (the GLMS supplies it in production):
//! unknown recipient -> 404; blocked sender -> 603 and no relay; ISB -> 603; otherwise relayed
//! to the target, whose 200 comes back to the sender. From one source port and from many.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Tcp, Udp, header, headers, message, ok_for, status};
use imserver::config::Config;
use imserver::policy::{Identity, RelayTarget, UserPolicy};
use imserver::server::Server;

fn start() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        sip: "127.0.0.1:0".parse().unwrap(),
        metrics: "127.0.0.1:0".parse().unwrap(),
        data: dir.path().to_owned(),
        workers: 2,
        // The snapshot is fed through the library API here; the GLMS has its own tests.
        glms: Some("none".into()),
        ..Config::default()
    };
    (Server::start(cfg).expect("server starts"), dir)
}

/// Bob's policy: relay to `target`, block `blocked`, ISB as given.
fn bob(server: &Server, target: SocketAddr, blocked: &[&str], isb: bool) {
    let mut b = UserPolicy::builder().known().isb(isb).target(RelayTarget {
        addr: target,
        tcp: false,
        uri: format!("sip:bob@{target}").into_bytes().into(),
        conn: None,
    });
    for id in blocked {
        b = b.block(&Identity::parse(id.as_bytes()).unwrap());
    }
    server.policy().upsert(
        Identity::parse(b"sip:bob@example.com").unwrap(),
        b.build().unwrap(),
    );
}

const BOB: &str = "sip:bob@example.com";
const TOM: &str = "sip:tom@example.com";
const ALICE: &str = "sip:alice@example.com";

#[test]
fn unknown_recipient_gets_404_over_udp_and_tcp() {
    let (server, _d) = start();
    let tom = Udp::bind();
    tom.send(
        server.sip_addr(),
        &message(BOB, TOM, Some(TOM), tom.addr(), "UDP", "u404"),
    );
    assert_eq!(tom.recv().map(|r| status(&r)), Some(404));

    let mut tcp = Tcp::connect(server.sip_addr());
    let via = tcp.addr();
    tcp.send(&message(BOB, TOM, Some(TOM), via, "TCP", "t404"));
    assert_eq!(tcp.recv().map(|r| status(&r)), Some(404));
}

#[test]
fn blocked_sender_gets_603_and_bob_receives_nothing() {
    let (server, _d) = start();
    let bob_ue = Udp::bind();
    bob(&server, bob_ue.addr(), &[TOM], false);

    let tom = Udp::bind();
    tom.send(
        server.sip_addr(),
        &message(BOB, TOM, Some(TOM), tom.addr(), "UDP", "b1"),
    );
    let resp = tom.recv().expect("a response");
    assert_eq!(status(&resp), 603, "{resp}");
    assert_eq!(
        common::header(&resp, "Content-Length"),
        Some("0"),
        "603 carries no body (D1)"
    );

    let mut tcp = Tcp::connect(server.sip_addr());
    let via = tcp.addr();
    tcp.send(&message(BOB, TOM, Some(TOM), via, "TCP", "b2"));
    assert_eq!(tcp.recv().map(|r| status(&r)), Some(603));

    // The identity is compared per D8: case of the host and URI parameters do not matter.
    tom.send(
        server.sip_addr(),
        &message(
            BOB,
            "sip:tom@EXAMPLE.com;transport=tcp",
            Some("sip:tom@Example.COM:5060"),
            tom.addr(),
            "UDP",
            "b3",
        ),
    );
    assert_eq!(tom.recv().map(|r| status(&r)), Some(603));

    assert!(
        bob_ue.recv_for(Duration::from_millis(300)).is_none(),
        "Bob is never bothered"
    );
    assert_eq!(
        server
            .metrics()
            .decisions(imserver::metrics::Decision::Blocked),
        3
    );
}

#[test]
fn isb_bars_every_sender() {
    let (server, _d) = start();
    let bob_ue = Udp::bind();
    bob(&server, bob_ue.addr(), &[], true);
    let alice = Udp::bind();
    alice.send(
        server.sip_addr(),
        &message(BOB, ALICE, Some(ALICE), alice.addr(), "UDP", "isb"),
    );
    assert_eq!(alice.recv().map(|r| status(&r)), Some(603));
    assert!(bob_ue.recv_for(Duration::from_millis(300)).is_none());
}

/// Bob's UE answers a relayed MESSAGE with 200; checks what it received.
fn bob_answers(bob_ue: &Udp, server: SocketAddr, from: &str) {
    let relayed = bob_ue.recv().expect("the MESSAGE is relayed to Bob");
    assert!(
        relayed.starts_with(&format!("MESSAGE sip:bob@{} SIP/2.0", bob_ue.addr())),
        "{relayed}"
    );
    assert_eq!(
        header(&relayed, "From").map(|f| f.contains(from)),
        Some(true)
    );
    let vias = headers(&relayed, "Via");
    assert!(
        vias[0].contains(&server.to_string()),
        "our Via is on top: {vias:?}"
    );
    assert!(vias[0].contains("branch=z9hG4bK"));
    assert_eq!(header(&relayed, "Max-Forwards"), Some("69"));
    assert!(relayed.ends_with("Hello, this is a test message."));
    bob_ue.send(server, &ok_for(&relayed));
}

#[test]
fn allowed_message_is_relayed_and_the_200_comes_back_over_udp_and_tcp() {
    let (server, _d) = start();
    let bob_ue = Udp::bind();
    bob(&server, bob_ue.addr(), &[TOM], false);

    let alice = Udp::bind();
    alice.send(
        server.sip_addr(),
        &message(BOB, ALICE, Some(ALICE), alice.addr(), "UDP", "r1"),
    );
    bob_answers(&bob_ue, server.sip_addr(), ALICE);
    let resp = alice.recv().expect("the 200 comes back");
    assert_eq!(status(&resp), 200);
    assert_eq!(headers(&resp, "Via").len(), 1, "our Via was popped: {resp}");
    assert_eq!(header(&resp, "Call-ID"), Some("r1"));

    let mut tcp = Tcp::connect(server.sip_addr());
    let via = tcp.addr();
    tcp.send(&message(BOB, ALICE, Some(ALICE), via, "TCP", "r2"));
    bob_answers(&bob_ue, server.sip_addr(), ALICE);
    let resp = tcp
        .recv()
        .expect("the 200 comes back on the TCP connection");
    assert_eq!(status(&resp), 200);
    assert_eq!(header(&resp, "Call-ID"), Some("r2"));
}

#[test]
fn from_one_source_port_and_from_many() {
    let (server, _d) = start();
    let bob_ue = Udp::bind();
    bob(&server, bob_ue.addr(), &[TOM], false);
    // Bob's side answers every relayed MESSAGE on a thread of its own.
    let sip = server.sip_addr();
    let answerer = std::thread::spawn(move || {
        let mut answered = 0;
        while let Some(m) = bob_ue.recv_for(Duration::from_secs(2)) {
            bob_ue.send(sip, &ok_for(&m));
            answered += 1;
        }
        answered
    });

    // One source port (a SIP/IP Core sends everything from one socket), many requests, sent
    // in windows: a burst of all of them would overflow the default receive buffers of this
    // test's own sockets (Bob's and the core's, ~90 datagrams each), not the server's.
    let core = Udp::bind();
    let n = 200;
    let window = 25;
    let mut got = std::collections::HashMap::new();
    for start in (0..n).step_by(window) {
        for i in start..start + window {
            let (from, want) = if i % 2 == 0 { (TOM, 603) } else { (ALICE, 200) };
            core.send(
                sip,
                &message(
                    BOB,
                    from,
                    Some(from),
                    core.addr(),
                    "UDP",
                    &format!("one-{i}-{want}"),
                ),
            );
        }
        for _ in 0..window {
            let resp = core.recv().expect("every request is answered");
            let call_id = header(&resp, "Call-ID").unwrap().to_owned();
            let want: u16 = call_id.rsplit('-').next().unwrap().parse().unwrap();
            assert_eq!(status(&resp), want, "{call_id}");
            got.insert(call_id, status(&resp));
        }
    }
    assert_eq!(got.len(), n, "each request answered once");

    // Many source ports.
    let peers: Vec<Udp> = (0..20).map(|_| Udp::bind()).collect();
    for (i, p) in peers.iter().enumerate() {
        let from = if i % 2 == 0 { TOM } else { ALICE };
        p.send(
            sip,
            &message(BOB, from, Some(from), p.addr(), "UDP", &format!("many-{i}")),
        );
    }
    for (i, p) in peers.iter().enumerate() {
        let want = if i % 2 == 0 { 603 } else { 200 };
        assert_eq!(p.recv().map(|r| status(&r)), Some(want), "peer {i}");
    }
    assert_eq!(
        answerer.join().unwrap(),
        n / 2 + 10,
        "Bob saw exactly the allowed ones"
    );

    // The datagrams from the single source were spread over both workers.
    let text = server.metrics().render();
    for w in 0..2 {
        let line = format!("imserver_udp_received_total{{worker=\"{w}\"}} ");
        let v: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix(&line)?.parse().ok())
            .expect("per-worker counter");
        assert!(v > 0, "worker {w} received nothing: {text}");
    }
}

#[test]
fn max_forwards_zero_on_relay_gets_483() {
    let (server, _d) = start();
    let bob_ue = Udp::bind();
    bob(&server, bob_ue.addr(), &[], false);
    let alice = Udp::bind();
    let msg = String::from_utf8(message(BOB, ALICE, Some(ALICE), alice.addr(), "UDP", "mf0"))
        .unwrap()
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    alice.send(server.sip_addr(), msg.as_bytes());
    assert_eq!(alice.recv().map(|r| status(&r)), Some(483));
    assert!(bob_ue.recv_for(Duration::from_millis(300)).is_none());
}
