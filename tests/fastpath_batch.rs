//! The receive batch's prefetch (`Handler::prefetch`) changes no decision: whatever batch was
//! prefetched before (this one, another one, in another order, with messages that never come),
//! every MESSAGE gets exactly the packets it gets without any prefetch. The prefetch also
//! works the recipients out ahead, and the MESSAGE handling takes them from it; these tests
//! hold that shortcut to the same answers.

use imserver::fastpath::FastPath;
use imserver::fastpath::bench_support::{loopback_shared, udp_source};
use imserver::policy::{Identity, PolicyTable, RelayTarget, UserPolicy};
use imserver::transport::{Dest, Handler, Outbox, Source};

fn target(user: &str, port: u16) -> RelayTarget {
    RelayTarget {
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        tcp: false,
        uri: format!("sip:{user}@127.0.0.1:{port}").into_bytes().into(),
        conn: None,
    }
}

fn fast_path() -> FastPath {
    let table = PolicyTable::with_capacity(100);
    let id = |s: &str| Identity::parse(s.as_bytes()).unwrap();
    let tom = id("sip:tom@example.com");
    for (user, port) in [("bob", 5101), ("carol", 5102), ("erin", 5103)] {
        let mut b = UserPolicy::builder().known().target(target(user, port));
        if user == "carol" {
            b = b.block(&tom);
        }
        table.upsert(id(&format!("sip:{user}@example.com")), b.build().unwrap());
    }
    // Known, but nowhere to relay to (480).
    table.upsert(
        id("sip:frank@example.com"),
        UserPolicy::builder().known().build().unwrap(),
    );
    let (shared, _rx) = loopback_shared(table);
    FastPath::new(shared, 0)
}

fn message(ruri: &str, to: &str, from: &str, n: usize) -> Vec<u8> {
    format!(
        "MESSAGE {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-batch-{n};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <{from}>;tag=f{n}\r\n\
         To: <{to}>\r\n\
         Call-ID: batch-{n}\r\n\
         CSeq: 1 MESSAGE\r\n\
         P-Asserted-Identity: <{from}>\r\n\
         Content-Type: text/plain\r\n\
         Content-Length: 2\r\n\r\nhi"
    )
    .into_bytes()
}

/// Relayed, blocked, unknown, unavailable, a Request-URI naming the user in other case and
/// escapes, an address Request-URI (the recipient comes from To), one that fails validation,
/// and a non-MESSAGE.
fn batch() -> Vec<Vec<u8>> {
    let alice = "sip:alice@example.com";
    let tom = "sip:tom@example.com";
    vec![
        message("sip:bob@example.com", "sip:bob@example.com", alice, 0),
        message("sip:carol@example.com", "sip:carol@example.com", tom, 1),
        message("sip:carol@example.com", "sip:carol@example.com", alice, 2),
        message("sip:dave@example.com", "sip:dave@example.com", alice, 3),
        message("sip:frank@example.com", "sip:frank@example.com", alice, 4),
        message("sip:%65rin@EXAMPLE.com", "sip:erin@example.com", alice, 5),
        message("sip:bob@127.0.0.1:5999", "sip:erin@example.com", alice, 6),
        message("sip:bob@example.com", "sip:bob@example.com", "mailto:x@y", 7),
        b"OPTIONS sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKo\r\n\
          From: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: o\r\n\
          CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            .to_vec(),
        message("sip:erin@example.com", "sip:erin@example.com", alice, 9),
    ]
}

fn src() -> Source {
    udp_source("127.0.0.1:5070".parse().unwrap())
}

/// Every packet each message produced, in order.
fn handle_all(fp: &mut FastPath, msgs: &[Vec<u8>]) -> Vec<Vec<(Dest, Vec<u8>)>> {
    let mut out = Outbox::new();
    msgs.iter()
        .map(|m| {
            fp.on_message(m, &src(), &mut out);
            let packets = out.messages().map(|(d, b)| (d, b.to_vec())).collect();
            out.clear();
            packets
        })
        .collect()
}

fn prefetch(fp: &mut FastPath, msgs: &[Vec<u8>]) {
    fp.prefetch(&mut msgs.iter().map(Vec::as_slice));
}

fn status_of(packets: &[(Dest, Vec<u8>)]) -> String {
    let first = &packets[0].1;
    String::from_utf8_lossy(&first[..first.iter().position(|&b| b == b'\r').unwrap()]).into()
}

#[test]
fn batch_covers_every_outcome() {
    let got = handle_all(&mut fast_path(), &batch());
    let lines: Vec<String> = got.iter().map(|p| status_of(p)).collect();
    assert_eq!(
        lines,
        [
            "MESSAGE sip:bob@127.0.0.1:5101 SIP/2.0",
            "SIP/2.0 603 Decline",
            "MESSAGE sip:carol@127.0.0.1:5102 SIP/2.0",
            "SIP/2.0 404 Not Found",
            "SIP/2.0 480 Temporarily Unavailable",
            "MESSAGE sip:erin@127.0.0.1:5103 SIP/2.0",
            "MESSAGE sip:erin@127.0.0.1:5103 SIP/2.0",
            "SIP/2.0 416 Unsupported URI Scheme in From",
            "SIP/2.0 200 OK",
            "MESSAGE sip:erin@127.0.0.1:5103 SIP/2.0",
        ]
    );
}

#[test]
fn prefetched_batch_gets_the_same_packets() {
    let msgs = batch();
    let want = handle_all(&mut fast_path(), &msgs);

    // The batch itself.
    let mut fp = fast_path();
    prefetch(&mut fp, &msgs);
    assert_eq!(handle_all(&mut fp, &msgs), want);

    // Prefetched in reverse, with extra messages that never arrive, then handled in order.
    let mut fp = fast_path();
    let mut other: Vec<Vec<u8>> = msgs.iter().rev().cloned().collect();
    other.insert(
        3,
        message("sip:bob@example.com", "sip:bob@example.com", "sip:z@x", 99),
    );
    prefetch(&mut fp, &other);
    assert_eq!(handle_all(&mut fp, &msgs), want);

    // A later batch handled without its own prefetch: the previous batch's recipients are
    // still remembered, for other messages, and must not change their answers either.
    let mut fp = fast_path();
    prefetch(&mut fp, &msgs);
    let _ = handle_all(&mut fp, &msgs[..2]);
    let later: Vec<Vec<u8>> = msgs.iter().rev().cloned().collect();
    let want_later = handle_all(&mut fast_path(), &later);
    assert_eq!(handle_all(&mut fp, &later), want_later);
}
