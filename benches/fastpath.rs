//! The whole fast path for one MESSAGE, in user space: scan, validate, identities, snapshot
//! lookup at 1,000,000 users, decision, and writing the 603 or the relayed request into the
//! worker's outbox; and relaying the recipient's 200 back (pop our Via). (The kernel's share,
//! the syscalls, is measured by the load generator.)

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use imserver::fastpath::FastPath;
use imserver::fastpath::bench_support::{loopback_shared, udp_source};
use imserver::policy::{Identity, PolicyTable, RelayTarget, UserPolicy};
use imserver::transport::{Outbox, Source};

const USERS: usize = 1_000_000;

fn table() -> PolicyTable {
    PolicyTable::from_entries((0..USERS).map(|i| {
        let mut b = UserPolicy::builder().known().target(RelayTarget {
            addr: "127.0.0.1:5099".parse().unwrap(),
            tcp: false,
            uri: format!("sip:u{i}@127.0.0.1:5099").into_bytes().into(),
            conn: None,
        });
        for j in 1..=20 {
            let blocked = format!("sip:u{}@example.com", (i + j * 7919) % USERS);
            b = b.block(&Identity::parse(blocked.as_bytes()).unwrap());
        }
        let user = format!("sip:u{i}@example.com");
        (
            Identity::parse(user.as_bytes()).unwrap(),
            b.build().unwrap(),
        )
    }))
}

fn message(to: usize, from: usize) -> Vec<u8> {
    let body = "Hello, this is a realistic short instant message body.";
    format!(
        "MESSAGE sip:u{to}@example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-74bf9-{to}-{from};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:u{from}@example.com>;tag=abc123\r\n\
         To: <sip:u{to}@example.com>\r\n\
         Call-ID: a84b4c76e66710-{to}-{from}@127.0.0.1\r\n\
         CSeq: 1 MESSAGE\r\n\
         P-Asserted-Identity: <sip:u{from}@example.com>\r\n\
         Content-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A UA's 200 to a relayed request: its Vias, From, To with a tag, Call-ID and CSeq.
fn ok_for(request: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(request).unwrap();
    let head = &text[..text.find("\r\n\r\n").unwrap()];
    let mut ok = String::from("SIP/2.0 200 OK\r\n");
    for line in head.split("\r\n").skip(1) {
        match line.split(':').next().unwrap() {
            "Via" | "From" | "Call-ID" | "CSeq" => ok += &format!("{line}\r\n"),
            "To" => ok += &format!("{line};tag=r1\r\n"),
            _ => {}
        }
    }
    ok += "Content-Length: 0\r\n\r\n";
    ok.into_bytes()
}

fn bench(c: &mut Criterion) {
    let (shared, _rx) = loopback_shared(table());
    let mut fp = FastPath::new(shared, 0);
    let mut out = Outbox::new();
    let src = udp_source("127.0.0.1:5070".parse().unwrap());
    // 4,096 different recipients spread over the table, so lookups are not all cache-hot.
    let blocked: Vec<Vec<u8>> = (0..4096)
        .map(|k| {
            let to = (k * 244_141) % USERS;
            message(to, (to + 7919) % USERS)
        })
        .collect();
    let relayed: Vec<Vec<u8>> = (0..4096)
        .map(|k| {
            let to = (k * 244_141) % USERS;
            message(to, (to + 3) % USERS)
        })
        .collect();
    // The recipient's 200 to each relayed MESSAGE, as it comes back to us: our Via on top.
    let answers: Vec<Vec<u8>> = relayed
        .iter()
        .map(|m| {
            fp.handle(m, &src, &mut out);
            let ok = ok_for(out.messages().next().expect("relayed").1);
            out.clear();
            ok
        })
        .collect();
    let recipient = Source {
        addr: "127.0.0.1:5099".parse().unwrap(),
        ..src
    };
    let mut g = c.benchmark_group("fastpath_1m_users");
    for (name, msgs, from) in [
        ("blocked_603", &blocked, &src),
        ("relayed", &relayed, &src),
        ("relayed_200", &answers, &recipient),
    ] {
        let mut i = 0;
        g.bench_function(name, |b| {
            b.iter(|| {
                fp.handle(black_box(&msgs[i & 4095]), from, &mut out);
                i += 1;
                out.clear();
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
