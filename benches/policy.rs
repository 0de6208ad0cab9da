//! Policy fast path at 1,000,000 users with 20 blocked identities each: lookup + decide (blocked
//! sender, allowed sender, unknown user), normalisation, the whole per-MESSAGE policy work, and
//! the cost of publishing one user's change. The table is built once, outside the measurements;
//! its resident memory is printed from the setup (/proc/self/statm, 4 KiB pages assumed).
//!
//! "random_users" cases walk 65,536 users spread over the whole table (cold caches, as under
//! real traffic); "hot_user" repeats one user (compute cost only).

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use imserver::policy::{
    IdBuf, Identity, PolicyTable, RelayTarget, UserEntry, UserPolicy, Verdict, normalize,
};

const USERS: usize = 1_000_000;
const BLOCKED_PER_USER: usize = 20;
const SPAMMERS: u64 = 200_000;
const SAMPLE: usize = 1 << 16;

/// Canonical (recipient, sender), inline, so that walking the sample is sequential memory (as
/// hot as the fast path's receive buffer) and only the table's own accesses miss the cache.
type Pair = (IdBuf, IdBuf);

struct RawUri {
    bytes: [u8; 64],
    len: usize,
}

impl RawUri {
    fn new(uri: &str) -> Self {
        let mut bytes = [0; 64];
        bytes[..uri.len()].copy_from_slice(uri.as_bytes());
        RawUri {
            bytes,
            len: uri.len(),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

struct Fixture {
    table: PolicyTable,
    /// (recipient, one of its blocked senders), canonical forms, random users.
    pairs: Vec<Pair>,
    /// Recipient AoR URIs as they arrive (for the whole per-MESSAGE path), inline.
    uris: Vec<RawUri>,
    unknown: Vec<IdBuf>,
    keys: Vec<Identity>,
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn spammer(user: usize, j: usize) -> String {
    let mut s = (user as u64) << 8 | j as u64;
    let k = splitmix(&mut s) % SPAMMERS;
    format!("sip:spam{k}@spam{}.example.net", k % 1000)
}

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn policy_for(user: usize, buf: &mut IdBuf) -> UserPolicy {
    let mut builder = UserPolicy::builder();
    for j in 0..BLOCKED_PER_USER {
        normalize(spammer(user, j).as_bytes(), buf).expect("valid spammer URI");
        builder = builder.block(buf);
    }
    builder
        .target(RelayTarget {
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 5070)),
            tcp: false,
            uri: format!("sip:user{user}@127.0.0.1:5070").into_bytes().into(),
            conn: None,
        })
        .build()
        .expect("valid policy")
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let before = resident_bytes();
        let started = Instant::now();
        let mut buf = IdBuf::new();
        let table = PolicyTable::from_entries((0..USERS).map(|i| {
            let key = Identity::parse(format!("sip:user{i}@example.com").as_bytes())
                .expect("valid user URI");
            (key, policy_for(i, &mut buf))
        }));
        let built = started.elapsed();
        let after = resident_bytes();
        let per_user = (after.saturating_sub(before)) as f64 / USERS as f64;
        eprintln!(
            "policy table: {} users x {BLOCKED_PER_USER} blocked built in {:.2?}; resident \
             {:.0} MiB -> {:.0} MiB (+{:.0} MiB, {per_user:.0} B/user); shard index {:.1} MiB; \
             size_of UserEntry {} B",
            table.len(),
            built,
            before as f64 / 1048576.0,
            after as f64 / 1048576.0,
            after.saturating_sub(before) as f64 / 1048576.0,
            table.index_bytes() as f64 / 1048576.0,
            std::mem::size_of::<UserEntry>(),
        );
        let mut seed = 42u64;
        let mut pairs = Vec::with_capacity(SAMPLE);
        let mut uris = Vec::with_capacity(SAMPLE);
        let mut keys = Vec::with_capacity(SAMPLE);
        for _ in 0..SAMPLE {
            let user = (splitmix(&mut seed) % USERS as u64) as usize;
            let recipient = format!("sip:user{user}@example.com");
            let mut sender = IdBuf::new();
            normalize(spammer(user, 3).as_bytes(), &mut sender).expect("valid");
            let mut recipient_norm = IdBuf::new();
            normalize(recipient.as_bytes(), &mut recipient_norm).expect("valid");
            let key = Identity::from(&recipient_norm);
            pairs.push((recipient_norm, sender));
            uris.push(RawUri::new(&recipient));
            keys.push(key);
        }
        let unknown = (0..SAMPLE)
            .map(|i| {
                let mut buf = IdBuf::new();
                normalize(format!("sip:nobody{i}@example.com").as_bytes(), &mut buf)
                    .expect("valid");
                buf
            })
            .collect();
        Fixture {
            table,
            pairs,
            uris,
            unknown,
            keys,
        }
    })
}

fn decide(table: &PolicyTable, recipient: &[u8], sender: &[u8]) -> u8 {
    table.with(recipient, |p| match p.map(|p| p.decide(sender)) {
        None => 0,
        Some(Verdict::Blocked) => 1,
        Some(Verdict::Relay(_)) => 2,
        Some(_) => 3,
    })
}

fn bench_lookup(c: &mut Criterion) {
    let fx = fixture();
    let mut group = c.benchmark_group("policy_1M");
    let mut i = 0usize;
    group.bench_function("decide_blocked_random_users", |b| {
        b.iter(|| {
            i = (i + 1) & (SAMPLE - 1);
            let (recipient, sender) = &fx.pairs[i];
            let v = decide(&fx.table, recipient.as_bytes(), sender.as_bytes());
            debug_assert_eq!(v, 1);
            black_box(v)
        })
    });
    group.bench_function("decide_allowed_random_users", |b| {
        b.iter(|| {
            i = (i + 1) & (SAMPLE - 1);
            let v = decide(&fx.table, fx.pairs[i].0.as_bytes(), b"friend@example.org");
            debug_assert_eq!(v, 2);
            black_box(v)
        })
    });
    group.bench_function("unknown_user_random", |b| {
        b.iter(|| {
            i = (i + 1) & (SAMPLE - 1);
            black_box(decide(
                &fx.table,
                fx.unknown[i].as_bytes(),
                b"friend@example.org",
            ))
        })
    });
    let (hot_recipient, hot_sender) = (fx.pairs[0].0.as_bytes(), fx.pairs[0].1.as_bytes());
    group.bench_function("decide_blocked_hot_user", |b| {
        b.iter(|| {
            black_box(decide(
                &fx.table,
                black_box(hot_recipient),
                black_box(hot_sender),
            ))
        })
    });
    group.bench_function("decide_allowed_hot_user", |b| {
        b.iter(|| {
            black_box(decide(
                &fx.table,
                black_box(hot_recipient),
                black_box(b"friend@example.org"),
            ))
        })
    });
    group.bench_function("message_path_random_users", |b| {
        // normalise From and Request-URI, look up, decide: the fast path's whole policy work.
        let (mut sender, mut recipient) = (IdBuf::new(), IdBuf::new());
        b.iter(|| {
            i = (i + 1) & (SAMPLE - 1);
            normalize(b"sip:friend@Example.org;tag=x", &mut sender).expect("valid");
            normalize(fx.uris[i].as_bytes(), &mut recipient).expect("valid");
            black_box(decide(&fx.table, recipient.as_bytes(), sender.as_bytes()))
        })
    });
    group.bench_function("publish_one_user", |b| {
        // What the slow path pays to republish one user: clone its compiled policy with a change
        // and swap its shard.
        b.iter(|| {
            i = (i + 1) & (SAMPLE - 1);
            fx.table.update(&fx.keys[i], |p| {
                p.map(|p| UserPolicy {
                    isb: !p.isb,
                    ..p.clone()
                })
            })
        })
    });
    group.finish();
}

/// Context for the random_users figures: one dependent read at a random place in 1 GiB (a
/// cache and TLB miss), which is what each level of a cold lookup costs on this machine. The
/// chain is a full-period LCG over 2^27 words, so it visits all of them (a random function would
/// fall into a short, cached cycle) and no prefetcher can follow it.
fn bench_memory_baseline(c: &mut Criterion) {
    const WORDS: u64 = 1 << 27;
    let chain: Vec<u64> = (0..WORDS)
        .map(|i| {
            i.wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407)
                & (WORDS - 1)
        })
        .collect();
    let mut at = 0u64;
    c.bench_function("baseline_dependent_random_read_1GiB", |b| {
        b.iter(|| {
            at = chain[at as usize];
            black_box(at)
        })
    });
}

fn bench_normalize(c: &mut Criterion) {
    let mut buf = IdBuf::new();
    c.bench_function("normalize_sip_alice", |b| {
        b.iter(|| {
            normalize(black_box(b"sip:alice@example.com"), &mut buf).expect("valid");
            black_box(buf.len())
        })
    });
    c.bench_function("normalize_sip_full", |b| {
        b.iter(|| {
            normalize(
                black_box(b"sips:Alice%20B:pw@Example.COM:5061;transport=tls;lr?subject=x"),
                &mut buf,
            )
            .expect("valid");
            black_box(buf.len())
        })
    });
    c.bench_function("normalize_sip_user_phone", |b| {
        b.iter(|| {
            normalize(
                black_box(b"sip:+1-555-123-0000@ims.example.com;user=phone"),
                &mut buf,
            )
            .expect("valid");
            black_box(buf.len())
        })
    });
}

criterion_group!(
    benches,
    bench_memory_baseline,
    bench_normalize,
    bench_lookup
);
criterion_main!(benches);
