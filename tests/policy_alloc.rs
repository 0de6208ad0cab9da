//! The fast path's policy work allocates nothing: normalising the sender and the recipient,
//! looking the recipient up and deciding, for a blocked sender and for a relayed one.
//!
//! A counting global allocator counts only on threads that opted in, so the test harness's own
//! threads cannot disturb the count.

use imserver::policy::{IdBuf, Identity, PolicyTable, RelayTarget, UserPolicy, Verdict, normalize};

mod alloc_count;
use alloc_count::count_allocations;

const DECISIONS: usize = 10_000;

fn id(uri: &str) -> Identity {
    Identity::parse(uri.as_bytes()).expect("valid test URI")
}

fn table() -> PolicyTable {
    let table = PolicyTable::with_capacity(1000);
    for i in 0..1000 {
        let mut builder = UserPolicy::builder();
        for j in 0..20 {
            builder = builder.block(&id(&format!("sip:spam{j}@spam{i}.example")));
        }
        let policy = builder
            .target(RelayTarget {
                addr: std::net::SocketAddr::from(([127, 0, 0, 1], 5070)),
                tcp: true,
                uri: format!("sip:user{i}@127.0.0.1:5070").into_bytes().into(),
                conn: None,
            })
            .build()
            .expect("valid policy");
        table.upsert(id(&format!("sip:user{i}@example.com")), policy);
    }
    table
}

/// The per-MESSAGE policy work as the fast path does it; returns whether it relays.
fn one_message(table: &PolicyTable, from: &[u8], to: &[u8]) -> Option<bool> {
    let (mut sender, mut recipient) = (IdBuf::new(), IdBuf::new());
    normalize(from, &mut sender).ok()?;
    normalize(to, &mut recipient).ok()?;
    table.with(recipient.as_bytes(), |p| {
        p.map(|p| match p.decide(sender.as_bytes()) {
            Verdict::Relay(target) => !target.uri.is_empty(),
            _ => false,
        })
    })
}

fn assert_no_allocations(from: &str, to: &str, expect_relay: bool) {
    let table = table();
    let (from, to) = (from.as_bytes(), to.as_bytes());
    // Warm up: arc-swap registers this thread on its first load (a one-time allocation).
    for _ in 0..100 {
        assert_eq!(one_message(&table, from, to), Some(expect_relay));
    }
    let mut relayed = 0;
    let allocations = count_allocations(|| {
        for _ in 0..DECISIONS {
            if one_message(&table, from, to) == Some(true) {
                relayed += 1;
            }
        }
    });
    assert_eq!(relayed, if expect_relay { DECISIONS } else { 0 });
    assert_eq!(
        allocations, 0,
        "{allocations} allocations in {DECISIONS} decisions"
    );
}

#[test]
fn counter_counts() {
    // The harness must be able to fail: an allocation inside the window is seen.
    let n = count_allocations(|| drop(std::hint::black_box(vec![1u8; 64])));
    assert_eq!(n, 1);
}

#[test]
fn blocked_sender_allocates_nothing() {
    assert_no_allocations(
        "sip:spam7@Spam42.example:5060;transport=udp",
        "sip:user42@EXAMPLE.com;user=ip",
        false,
    );
}

#[test]
fn relayed_sender_allocates_nothing() {
    assert_no_allocations("sips:friend@example.org", "sip:user42@example.com", true);
}

#[test]
fn unknown_recipient_allocates_nothing() {
    let table = table();
    for _ in 0..100 {
        assert_eq!(
            one_message(&table, b"sip:a@b.c", b"sip:nobody@example.com"),
            None
        );
    }
    let allocations = count_allocations(|| {
        for _ in 0..DECISIONS {
            assert_eq!(
                one_message(&table, b"sip:a@b.c", b"sip:nobody@example.com"),
                None
            );
        }
    });
    assert_eq!(allocations, 0);
}
