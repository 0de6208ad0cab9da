use super::*;
use crate::policy::identity::IdBuf;
use crate::policy::user::{RelayTarget, Verdict};
use std::sync::atomic::{AtomicBool, AtomicUsize};

fn id(uri: &str) -> Identity {
    Identity::parse(uri.as_bytes()).expect("valid test URI")
}

fn target(port: u16) -> RelayTarget {
    RelayTarget {
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        tcp: false,
        uri: format!("sip:u@127.0.0.1:{port}").into_bytes().into(),
        conn: None,
    }
}

fn blocking(uri: &str, port: u16) -> UserPolicy {
    UserPolicy::builder()
        .block(&id(uri))
        .target(target(port))
        .build()
        .expect("valid policy")
}

#[test]
fn insert_update_remove() {
    let table = PolicyTable::with_capacity(10);
    let bob = id("sip:bob@example.com");
    assert!(table.is_empty());
    assert!(table.with(bob.as_bytes(), |p| p.is_none()));

    table.upsert(bob.clone(), blocking("sip:tom@example.com", 5070));
    assert_eq!(table.len(), 1);
    let verdict = |sender: &[u8]| {
        table.with(b"bob@example.com", |p| {
            p.map(|p| matches!(p.decide(sender), Verdict::Blocked))
        })
    };
    assert_eq!(verdict(b"tom@example.com"), Some(true));
    assert_eq!(verdict(b"ann@example.com"), Some(false));

    // Replace: same key, len unchanged.
    table.upsert(bob.clone(), blocking("sip:ann@example.com", 5070));
    assert_eq!(table.len(), 1);
    assert_eq!(verdict(b"tom@example.com"), Some(false));
    assert_eq!(verdict(b"ann@example.com"), Some(true));

    // Read-modify-write keeps the lists, changes the target.
    table.update(&bob, |p| p.map(|p| p.with_target(Some(target(6000)))));
    let entry = table.get(bob.as_bytes()).expect("bob is there");
    assert_eq!(entry.key(), bob.as_bytes());
    assert_eq!(
        entry.policy.target.as_ref().map(|t| t.addr.port()),
        Some(6000)
    );
    assert!(entry.policy.blocked.contains(b"ann@example.com"));

    // An update of an absent user that returns None changes nothing.
    let carol = id("sip:carol@example.com");
    table.update(&carol, |p| {
        assert!(p.is_none());
        None
    });
    assert_eq!(table.len(), 1);

    assert!(table.remove(&bob));
    assert!(!table.remove(&bob));
    assert_eq!(table.len(), 0);
    assert!(!table.contains(bob.as_bytes()));
    // A reader still holding the old entry keeps it whole.
    assert!(entry.policy.blocked.contains(b"ann@example.com"));
}

#[test]
fn many_users_and_for_each() {
    let table = PolicyTable::with_capacity(100);
    for i in 0..2000 {
        table.upsert(id(&format!("sip:u{i}@x.com")), UserPolicy::default());
    }
    assert_eq!(table.len(), 2000);
    for i in (0..2000).step_by(2) {
        assert!(table.remove(&id(&format!("sip:u{i}@x.com"))));
    }
    assert_eq!(table.len(), 1000);
    let mut seen = 0;
    table.for_each(|e| {
        let n: usize = std::str::from_utf8(&e.key()[1..e.key().len() - 6])
            .expect("ascii")
            .parse()
            .expect("number");
        assert_eq!(n % 2, 1);
        seen += 1;
    });
    assert_eq!(seen, 1000);
    assert!(table.contains(b"u1999@x.com"));
    assert!(!table.contains(b"u1998@x.com"));
    assert!(table.index_bytes() > 0);
}

#[test]
fn from_entries_builds_and_dedups() {
    let entries = (0..5000)
        .map(|i| (id(&format!("sip:u{i}@x.com")), UserPolicy::default()))
        .chain(std::iter::once((
            id("sip:u7@x.com"),
            blocking("sip:late@x.com", 1),
        )));
    let table = PolicyTable::from_entries(entries);
    assert_eq!(table.len(), 5000);
    assert!(table.contains(b"u4999@x.com"));
    assert!(!table.contains(b"u5000@x.com"));
    // The later duplicate won.
    assert!(table.with(b"u7@x.com", |p| p.is_some_and(|p| p.blocks(b"late@x.com"))));
    // The table stays writable.
    table.upsert(id("sip:new@x.com"), UserPolicy::default());
    assert_eq!(table.len(), 5001);
    assert_eq!(PolicyTable::from_entries(Vec::new()).len(), 0);
}

#[test]
fn shard_sizing() {
    assert_eq!(shard_count(0), SHARDS_MIN);
    assert_eq!(shard_count(1_000_000), SHARDS_MAX);
    assert_eq!(shard_count(usize::MAX / 2), SHARDS_MAX);
    assert_eq!(PolicyTable::new().shards.len(), SHARDS_MAX);
}

/// Readers running while one writer republishes a user must always see one whole version:
/// the blocked identity, the ISB flag and the target port all carry the same version number,
/// and versions never go backwards.
#[test]
fn readers_see_whole_snapshots() {
    const VERSIONS: u16 = 2_000;
    const READS_MAX: usize = 2_000_000;
    let table = PolicyTable::with_capacity(1000);
    let alice = id("sip:alice@example.com");
    let version = |v: u16| {
        let mut p = blocking(&format!("sip:v{v}@spam.example"), v);
        p.isb = v % 2 == 1;
        p
    };
    // Neighbours in the same shards, so shard copies carry other users along.
    for i in 0..500 {
        table.upsert(id(&format!("sip:n{i}@example.com")), version(0));
    }
    table.upsert(alice.clone(), version(0));
    let done = AtomicBool::new(false);
    // The writer starts once both readers have read: otherwise, on a busy machine, it may be
    // done before they run, and the test would check nothing.
    let reading = AtomicUsize::new(0);

    std::thread::scope(|scope| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut last = 0u16;
                    let mut name = IdBuf::new();
                    let mut reads = 0;
                    while !done.load(Ordering::Acquire) && reads < READS_MAX {
                        reads += 1;
                        let v = table.with(alice.as_bytes(), |p| {
                            let p = p.expect("alice is never removed");
                            let v = p.target.as_ref().expect("always a target").addr.port();
                            assert_eq!(p.isb, v % 2 == 1, "isb of version {v}");
                            let uri = format!("sip:v{v}@spam.example");
                            crate::policy::normalize(uri.as_bytes(), &mut name).expect("valid");
                            assert!(p.blocks(name.as_bytes()), "list of version {v}");
                            assert_eq!(p.blocked.len(), 1);
                            v
                        });
                        assert!(v >= last, "version went back from {last} to {v}");
                        last = v;
                        if reads == 1 {
                            reading.fetch_add(1, Ordering::Release);
                        }
                    }
                    reads
                })
            })
            .collect();
        let waited = std::time::Instant::now();
        while reading.load(Ordering::Acquire) < 2 && waited.elapsed().as_secs() < 30 {
            std::thread::yield_now();
        }
        for v in 1..=VERSIONS {
            table.upsert(alice.clone(), version(v));
            if v % 7 == 0 {
                // Churn a neighbour too.
                table.update(&id(&format!("sip:n{}@example.com", v % 500)), |p| {
                    p.map(|p| p.with_target(Some(target(v))))
                });
            }
        }
        done.store(true, Ordering::Release);
        for reader in readers {
            assert!(reader.join().expect("reader panicked") > 0);
        }
    });
    assert_eq!(table.len(), 501);
    assert_eq!(
        table.with(alice.as_bytes(), |p| p
            .and_then(|p| p.target.as_ref().map(|t| t.addr.port()))),
        Some(VERSIONS)
    );
}

/// Concurrent writers of one user never lose an update (each adds one blocked identity).
#[test]
fn concurrent_writers_lose_nothing() {
    const PER_WRITER: usize = 200;
    let table = PolicyTable::with_capacity(100);
    let alice = id("sip:alice@example.com");
    table.upsert(alice.clone(), UserPolicy::default());
    std::thread::scope(|scope| {
        for w in 0..3 {
            let (table, alice) = (&table, &alice);
            scope.spawn(move || {
                for i in 0..PER_WRITER {
                    let blocked = id(&format!("sip:w{w}x{i}@spam.example"));
                    table.update(alice, |p| {
                        let mut p = p.cloned().unwrap_or_default();
                        p.blocked.insert(&blocked).expect("below the limit");
                        Some(p)
                    });
                }
            });
        }
    });
    let entry = table.get(alice.as_bytes()).expect("alice");
    assert_eq!(entry.policy.blocked.len(), 3 * PER_WRITER);
}

fn port_of(table: &PolicyTable, key: &[u8]) -> Option<u16> {
    table.with(key, |p| {
        p.and_then(|p| p.target.as_ref()).map(|t| t.addr.port())
    })
}

fn relay_to(port: u16) -> UserPolicy {
    UserPolicy::builder()
        .target(target(port))
        .build()
        .expect("valid policy")
}

/// A table grown far past its sizing keeps most users in its shards' overflow tables: every
/// user is still found exactly once, with its own policy, and replacements and removals reach
/// both the inline slots and the overflow.
#[test]
fn shards_past_their_inline_slots() {
    let table = PolicyTable::with_shards(SHARDS_MIN);
    let n = SHARDS_MIN * INLINE_MAX * 3;
    // Keys of every length around the inline limit, and long ones kept on the heap.
    let pad = |i: usize| "p".repeat(i % (KEY_INLINE + 8));
    let uri = |i: usize| format!("sip:u{i}{}@x.com", pad(i));
    let key = |i: usize| format!("u{i}{}@x.com", pad(i)).into_bytes();
    for i in 0..n {
        table.upsert(id(&uri(i)), relay_to(i as u16 + 1));
    }
    assert_eq!(table.len(), n);
    let shards: Vec<_> = table.shards.iter().map(|s| s.snap.load_full()).collect();
    assert!(shards.iter().all(|s| !s.overflow.is_empty()));
    assert_eq!(shards.iter().map(|s| s.len()).sum::<usize>(), n);
    for i in 0..n {
        assert_eq!(port_of(&table, &key(i)), Some(i as u16 + 1), "user {i}");
    }
    assert_eq!(port_of(&table, b"absent@x.com"), None);
    // Remove every third user, move every third + 1 to another port.
    for i in 0..n {
        match i % 3 {
            0 => assert!(table.remove(&id(&uri(i)))),
            1 => table.upsert(id(&uri(i)), relay_to(i as u16 + 20_000)),
            _ => {}
        }
    }
    assert_eq!(table.len(), n - n.div_ceil(3));
    for i in 0..n {
        let expected = match i % 3 {
            0 => None,
            1 => Some(i as u16 + 20_000),
            _ => Some(i as u16 + 1),
        };
        assert_eq!(port_of(&table, &key(i)), expected, "user {i}");
    }
    let mut seen = 0;
    table.for_each(|e| {
        assert!(table.contains(e.key()));
        seen += 1;
    });
    assert_eq!(seen, table.len());
}

/// A key longer than the inline limit is kept whole and compared whole.
#[test]
fn long_and_inline_keys() {
    for len in [KEY_INLINE - 1, KEY_INLINE, KEY_INLINE + 1, 200] {
        let user = "a".repeat(len - "@x.com".len());
        let key = Key::new(format!("{user}@x.com").as_bytes());
        assert_eq!(key.as_bytes(), format!("{user}@x.com").as_bytes());
        assert_eq!(
            matches!(key, Key::Inline { .. }),
            len <= KEY_INLINE,
            "{len}"
        );
    }
    let table = PolicyTable::with_capacity(10);
    let long = "b".repeat(KEY_INLINE * 2);
    table.upsert(id(&format!("sip:{long}@x.com")), relay_to(7));
    assert_eq!(port_of(&table, format!("{long}@x.com").as_bytes()), Some(7));
    // Same prefix, one byte shorter: another user.
    assert_eq!(
        port_of(&table, format!("{}@x.com", &long[1..]).as_bytes()),
        None
    );
}

/// The prefetch steps probe with the lookup's own hash and change nothing.
#[test]
fn prefetch_uses_the_lookup_hash() {
    let table = PolicyTable::with_capacity(10);
    table.upsert(id("sip:bob@x.com"), relay_to(5));
    let h = table.prefetch_cell(b"bob@x.com");
    assert_eq!(h, table.hash(b"bob@x.com"));
    for hash in [h, h ^ 1, table.prefetch_cell(b"absent@x.com")] {
        table.prefetch_slot(hash);
        table.prefetch_entry(hash);
    }
    assert_eq!(port_of(&table, b"bob@x.com"), Some(5));
    assert_eq!(table.len(), 1);
}

/// Each cell's address hint follows its snapshot through every kind of store, so the batch
/// prefetch loads the live shard (a stale hint would be harmless but useless).
#[test]
fn cell_hint_follows_the_snapshot() {
    let check = |table: &PolicyTable| {
        for cell in table.shards.iter() {
            assert_eq!(
                cell.at.load(Ordering::Relaxed),
                address(&cell.snap.load_full())
            );
        }
    };
    let table = PolicyTable::with_capacity(10);
    check(&table);
    table.upsert(id("sip:bob@x.com"), relay_to(5));
    table.upsert(id("sip:bob@x.com"), relay_to(6));
    table.upsert(id("sip:carol@x.com"), relay_to(7));
    check(&table);
    assert!(table.remove(&id("sip:bob@x.com")));
    check(&table);
    let built = PolicyTable::from_entries(
        (0..500).map(|i| (id(&format!("sip:u{i}@x.com")), relay_to(i as u16 + 1))),
    );
    check(&built);
}

/// The entry prefetch finds every inline user by its hash, including those whose probe
/// starts at a slot another user took (about a sixth at this table's load).
#[test]
fn entry_prefetch_probes_past_the_home_slot() {
    let table =
        PolicyTable::from_entries((0..5000).map(|i| (id(&format!("sip:u{i}@x.com")), relay_to(1))));
    let (mut found, mut displaced) = (0, 0);
    for i in 0..5000 {
        let key = format!("u{i}@x.com");
        let hash = table.hash(key.as_bytes());
        let shard = table.shards[table.shard_index(hash)].load();
        let Some(entry) = shard.inline_by_hash(hash) else {
            // Only users past a shard's inline slots are not there.
            assert!(
                shard.overflow.find(hash, |s| s.hash == hash).is_some(),
                "{key}"
            );
            continue;
        };
        assert_eq!(entry.key(), key.as_bytes());
        found += 1;
        let home = &shard.inline[hash as usize % INLINE_SLOTS];
        if home.as_ref().is_none_or(|s| s.hash != hash) {
            displaced += 1;
        }
    }
    assert!(found > 4900, "{found}");
    assert!(
        displaced > 500,
        "{displaced} of {found} away from their first slot"
    );
}
