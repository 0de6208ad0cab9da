//! verify_request for MD5 and SHA-256 (parse, nonce check, user lookup, response hash,
//! constant-time compare, nc table update), plus its parts. Each iteration gets a fresh nc
//! (built outside the timed section), so every verification is a success, never a replay.

use std::cell::Cell;
use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use imserver::auth::{
    Algorithm, Credentials, DigestCredentials, NonceKey, NonceState, Quoted, compute_response, ha1,
    verify_request,
};

const REALM: &[u8] = b"example.com";
const NOW_S: u64 = 1_700_000_000;

fn header(algorithm: Algorithm, nonce: &[u8], nc: u32) -> Vec<u8> {
    let h = ha1(algorithm, b"bob@example.com", REALM, b"correct horse");
    let nc_text = format!("{nc:08x}");
    let r = compute_response(
        &h,
        b"MESSAGE",
        Quoted::plain(b"sip:alice@example.com"),
        nonce,
        nc_text.as_bytes(),
        Quoted::plain(b"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"),
        b"auth",
    );
    let mut hex = [0u8; 64];
    format!(
        "Digest username=\"bob@example.com\", realm=\"example.com\", nonce=\"{}\", \
         uri=\"sip:alice@example.com\", response=\"{}\", algorithm={}, \
         cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", qop=auth, nc={nc_text}",
        String::from_utf8_lossy(nonce),
        String::from_utf8_lossy(r.hex(&mut hex)),
        algorithm.name()
    )
    .into_bytes()
}

fn bench(c: &mut Criterion) {
    let mut creds = Credentials::new();
    creds
        .add("sip:bob@example.com", "correct horse")
        .expect("add");
    for i in 0..10_000 {
        creds
            .add(&format!("sip:user{i}@example.com"), "pw")
            .expect("add");
    }
    let nonces = NonceState::new(&NonceKey::random().expect("entropy"), 300, 16).expect("entropy");

    for algorithm in [Algorithm::Md5, Algorithm::Sha256] {
        let nonce = nonces.issue(NOW_S, REALM);
        let nc = Cell::new(0u32);
        c.bench_function(&format!("verify_request/{}", algorithm.name()), |b| {
            b.iter_batched(
                || {
                    nc.set(nc.get() + 1);
                    header(algorithm, nonce.as_bytes(), nc.get())
                },
                |h| {
                    let user = verify_request(
                        &creds,
                        &nonces,
                        NOW_S,
                        REALM,
                        b"MESSAGE",
                        Some(black_box(&h)),
                        b"sip:bob@example.com",
                    );
                    assert!(user.is_ok());
                    user.map(|u| u.nc).unwrap_or(0)
                },
                BatchSize::SmallInput,
            )
        });
    }

    let fixed = header(Algorithm::Sha256, nonces.issue(NOW_S, REALM).as_bytes(), 1);
    c.bench_function("parse_authorization", |b| {
        b.iter(|| DigestCredentials::parse(black_box(&fixed)).is_ok())
    });
    c.bench_function("nonce_issue", |b| {
        b.iter(|| nonces.issue(black_box(NOW_S), REALM))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
