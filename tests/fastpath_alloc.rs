//! The whole fast path allocates nothing per MESSAGE: scanning, validation, identity
//! normalisation, the policy lookup and decision, and writing the 603 or the relayed request
//! into the worker's outbox, for a blocked and for a relayed MESSAGE over UDP.
//!
//! A counting global allocator counts only on the thread that opted in.

use imserver::fastpath::FastPath;
use imserver::fastpath::bench_support::{loopback_shared, udp_source};
use imserver::policy::{Identity, PolicyTable, RelayTarget, UserPolicy};
use imserver::transport::{Dest, Handler, Outbox};

mod alloc_count;
use alloc_count::count_allocations;

const MESSAGES: usize = 10_000;

fn fast_path() -> (FastPath, imserver::slowpath::SlowReceiver) {
    let table = PolicyTable::new();
    let bob = UserPolicy::builder()
        .known()
        .block(&Identity::parse(b"sip:tom@example.com").unwrap())
        .target(RelayTarget {
            addr: "127.0.0.1:5099".parse().unwrap(),
            tcp: false,
            uri: b"sip:bob@127.0.0.1:5099".to_vec().into(),
            conn: None,
        })
        .build()
        .unwrap();
    table.upsert(Identity::parse(b"sip:bob@example.com").unwrap(), bob);
    let (shared, rx) = loopback_shared(table);
    (FastPath::new(shared, 0), rx)
}

fn message(from: &str, call_id: &str) -> Vec<u8> {
    let body = "Hello, this is a realistic short instant message body.";
    format!(
        "MESSAGE sip:bob@example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{call_id};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <{from}>;tag=abc123\r\n\
         To: <sip:bob@example.com>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 MESSAGE\r\n\
         P-Asserted-Identity: <{from}>\r\n\
         Content-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Runs `MESSAGES` MESSAGEs from `from` through the fast path, checking each outcome, and
/// returns how many allocations happened.
fn run(from: &str, check: impl Fn(Dest, &[u8])) -> usize {
    let (mut fp, _rx) = fast_path();
    let mut out = Outbox::new();
    let src = udp_source("127.0.0.1:5070".parse().unwrap());
    let msg = message(from, "alloc-test");
    // Warm-up: first use of lazily initialised state (thread-locals, pools) may allocate.
    for _ in 0..10 {
        fp.handle(&msg, &src, &mut out);
        out.clear();
    }
    count_allocations(|| {
        for _ in 0..MESSAGES {
            fp.handle(&msg, &src, &mut out);
            let mut n = 0;
            for (dest, bytes) in out.messages() {
                check(dest, bytes);
                n += 1;
            }
            assert_eq!(n, 1, "exactly one packet per MESSAGE");
            out.clear();
        }
    })
}

#[test]
fn counter_counts() {
    assert!(count_allocations(|| drop(std::hint::black_box(vec![1u8; 8]))) >= 1);
}

#[test]
fn blocked_message_allocates_nothing() {
    let n = run("sip:tom@example.com", |dest, bytes| {
        assert!(bytes.starts_with(b"SIP/2.0 603 Decline\r\n"));
        assert_eq!(dest, Dest::Udp("127.0.0.1:5070".parse().unwrap()));
    });
    assert_eq!(
        n, 0,
        "allocations while answering {MESSAGES} blocked MESSAGEs"
    );
}

#[test]
fn relayed_message_allocates_nothing() {
    let n = run("sip:alice@example.com", |dest, bytes| {
        assert!(bytes.starts_with(b"MESSAGE sip:bob@127.0.0.1:5099 SIP/2.0\r\n"));
        assert_eq!(dest, Dest::Udp("127.0.0.1:5099".parse().unwrap()));
    });
    assert_eq!(n, 0, "allocations while relaying {MESSAGES} MESSAGEs");
}

/// The UDP worker's way: each receive batch is prefetched (recipients worked out and
/// remembered), then handled one datagram at a time. Nothing allocates once warm either.
#[test]
fn prefetched_batches_allocate_nothing() {
    let (mut fp, _rx) = fast_path();
    let mut out = Outbox::new();
    let src = udp_source("127.0.0.1:5070".parse().unwrap());
    let batch: Vec<Vec<u8>> = (0..32)
        .map(|i| {
            let from = if i % 4 == 0 {
                "sip:tom@example.com"
            } else {
                "sip:alice@example.com"
            };
            message(from, &format!("batch-{i}"))
        })
        .collect();
    let round = |fp: &mut FastPath, out: &mut Outbox| {
        fp.prefetch(&mut batch.iter().map(Vec::as_slice));
        for (i, m) in batch.iter().enumerate() {
            fp.on_message(m, &src, out);
            let (_, bytes) = out.messages().next().expect("one packet per MESSAGE");
            let want: &[u8] = if i % 4 == 0 {
                b"SIP/2.0 603 Decline\r\n"
            } else {
                b"MESSAGE sip:bob@127.0.0.1:5099 SIP/2.0\r\n"
            };
            assert!(bytes.starts_with(want), "message {i}");
            out.clear();
        }
    };
    for _ in 0..3 {
        round(&mut fp, &mut out);
    }
    let n = count_allocations(|| {
        for _ in 0..MESSAGES / 32 {
            round(&mut fp, &mut out);
        }
    });
    assert_eq!(n, 0, "allocations while handling prefetched batches");
}
