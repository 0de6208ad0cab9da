//! verify_request allocates nothing, on success or on any failure.
//!
//! This file is its own test binary, so its counting global allocator affects only it. The
//! count is per thread (a const thread-local, which itself never allocates), so the test
//! harness's other threads cannot disturb it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use imserver::auth::{
    Algorithm, AuthFailure, Credentials, NonceKey, NonceState, Quoted, compute_response, ha1,
    verify_request,
};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: delegates to the system allocator; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// A credentials value, the AoR the request claims, and the expected outcome.
type Case = (Vec<u8>, &'static [u8], Result<(), AuthFailure>);

const REALM: &[u8] = b"example.com";
const NOW_S: u64 = 1_700_000_000;

fn header(algorithm: Algorithm, password: &str, nonce: &[u8], nc: u32) -> Vec<u8> {
    let h = ha1(algorithm, b"bob@example.com", REALM, password.as_bytes());
    let nc_text = format!("{nc:08x}");
    let r = compute_response(
        &h,
        b"MESSAGE",
        Quoted::plain(b"sip:alice@example.com"),
        nonce,
        nc_text.as_bytes(),
        Quoted::plain(b"xyz"),
        b"auth",
    );
    let mut hex = [0u8; 64];
    format!(
        "Digest username=\"bob@example.com\",\r\n realm=\"example.com\", nonce=\"{}\", uri=\"sip:alice@example.com\", response=\"{}\", algorithm={}, cnonce=\"xyz\", qop=auth, nc={nc_text}",
        String::from_utf8_lossy(nonce),
        String::from_utf8_lossy(r.hex(&mut hex)),
        algorithm.name()
    )
    .into_bytes()
}

#[test]
fn verify_request_does_not_allocate() {
    let mut creds = Credentials::new();
    creds.add("sip:bob@example.com", "pw").expect("add");
    creds.add("sip:alice@example.com", "pw2").expect("add");
    let nonces = NonceState::new(&NonceKey::random().expect("entropy"), 300, 16).expect("entropy");

    // Every header is built before counting starts.
    let mut cases: Vec<Case> = Vec::new();
    for algorithm in Algorithm::ALL {
        let nonce = nonces.issue(NOW_S, REALM);
        let good = header(algorithm, "pw", nonce.as_bytes(), 1);
        cases.push((good.clone(), b"bob@example.com", Ok(())));
        cases.push((good, b"bob@example.com", Err(AuthFailure::ReplayedNc)));
        cases.push((
            header(algorithm, "pw", nonce.as_bytes(), 2),
            b"alice@example.com",
            Err(AuthFailure::UserMismatch),
        ));
        cases.push((
            header(algorithm, "bad", nonce.as_bytes(), 3),
            b"bob@example.com",
            Err(AuthFailure::WrongResponse),
        ));
    }
    cases.push((
        b"Digest username=\"bob\"".to_vec(),
        b"bob@example.com",
        Err(AuthFailure::Malformed(
            imserver::auth::Malformed::MissingRealm,
        )),
    ));
    cases.push((
        b"Basic Ym9iOnB3".to_vec(),
        b"bob@example.com",
        Err(AuthFailure::UnsupportedScheme),
    ));
    let mut stale = header(
        Algorithm::Md5,
        "pw",
        nonces.issue(NOW_S - 1000, REALM).as_bytes(),
        1,
    );
    cases.push((
        std::mem::take(&mut stale),
        b"bob@example.com",
        Err(AuthFailure::StaleNonce),
    ));

    for (value, claimed, want) in &cases {
        let before = allocations();
        let got = verify_request(
            &creds,
            &nonces,
            NOW_S,
            REALM,
            b"MESSAGE",
            Some(value),
            claimed,
        );
        let after = allocations();
        assert_eq!(got.map(|_| ()), *want, "{}", String::from_utf8_lossy(value));
        assert_eq!(
            after - before,
            0,
            "allocated for {}",
            String::from_utf8_lossy(value)
        );
    }
    let before = allocations();
    let none = verify_request(
        &creds,
        &nonces,
        NOW_S,
        REALM,
        b"MESSAGE",
        None,
        b"bob@example.com",
    );
    let issued = nonces.issue(NOW_S, REALM);
    assert_eq!(allocations() - before, 0);
    assert_eq!(none.map(|_| ()), Err(AuthFailure::NoCredentials));
    assert_eq!(issued.as_bytes().len(), 48);

    // The counter does count: this must register.
    let before = allocations();
    let v = std::hint::black_box(vec![1u8; 16]);
    assert!(allocations() > before);
    drop(v);
}
