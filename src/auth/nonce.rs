//! Stateless nonces (RFC 7616 §3.3 "nonce" and §5.4 "Limited-Use Nonce Values").
//!
//! ```text
//! raw   = issued_s (u64 BE) || instance (u32 BE) || seq (u64 BE) || mac (16 bytes)   36 bytes
//! mac   = HMAC-SHA256(key, issued_s || instance || seq || realm)[..16]
//! nonce = base64url(raw), no padding                                                48 chars
//! ```
//!
//! Checking a nonce needs no state: a bad MAC means we never issued it (for this realm); an
//! old timestamp means stale. `seq` comes from an atomic counter and indexes the shared
//! nonce-count table ([`super::replay`]); `instance` is random per [`NonceState`], so after a
//! restart with a loaded key the previous run's nonces (whose nc history is gone) are stale
//! rather than replayable. With a fresh random key they simply fail the MAC.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::replay::{NcError, NcTable};

/// Length of the nonce as sent in a challenge.
pub const NONCE_LEN: usize = 48;
const RAW_LEN: usize = 36;
const SIGNED_LEN: usize = 20;
const MAC_LEN: usize = 16;
/// How far in the future an issue time may be before the nonce counts as stale: workers read
/// the clock independently and may disagree by a little.
const FUTURE_SKEW_S: u64 = 5;

/// Why a nonce (or its nc) was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NonceError {
    /// Not issued by us, or for another realm, or not even the right shape.
    #[error("bad nonce")]
    Bad,
    /// Ours, but too old, from a previous run, or evicted from the nc table.
    #[error("stale nonce")]
    Stale,
    /// The nc was not above the highest seen for this nonce.
    #[error("replayed nonce count")]
    Replayed,
    /// The operating system's random source failed at start-up.
    #[error("no entropy for the nonce key")]
    Entropy,
}

/// The 32-byte secret behind every nonce. Random at start-up, or loaded so that nonces
/// survive a restart as "stale" instead of "bad" (and so several processes could share it).
#[derive(Clone)]
pub struct NonceKey([u8; 32]);

impl NonceKey {
    /// A fresh key from the operating system's random source.
    pub fn random() -> Result<Self, NonceError> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|_| NonceError::Entropy)?;
        Ok(NonceKey(key))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        NonceKey(bytes)
    }

    /// For persisting the key (the store module's job).
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }
}

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceKey(<redacted>)")
    }
}

/// A nonce as sent in a challenge: 48 base64url characters, on the stack.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Nonce([u8; NONCE_LEN]);

impl Nonce {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        // Always base64url: ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Debug for Nonce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Nonce({})", self.as_str())
    }
}

/// What a valid nonce says about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Issued {
    pub issued_s: u64,
    pub seq: u64,
}

/// Nonce issuing and checking, plus the nc table: one per server, shared by all workers.
pub struct NonceState {
    mac: Hmac<Sha256>,
    instance: u32,
    next_seq: AtomicU64,
    max_age_s: u64,
    nc_table: NcTable,
}

impl NonceState {
    /// A state with a random instance id and a table of `2^nc_slots_log2` slots
    /// ([`super::replay::DEFAULT_SLOTS_LOG2`] is a good default). `max_age_s` is how long a
    /// nonce stays fresh (RFC 7616 §5.4 leaves it to the server; 300 s is common).
    pub fn new(key: &NonceKey, max_age_s: u64, nc_slots_log2: u32) -> Result<Self, NonceError> {
        let instance = getrandom::u32().map_err(|_| NonceError::Entropy)?;
        Ok(Self::with_instance(key, max_age_s, nc_slots_log2, instance))
    }

    /// Like [`NonceState::new`] with a chosen instance id (tests, deterministic simulation).
    pub fn with_instance(
        key: &NonceKey,
        max_age_s: u64,
        nc_slots_log2: u32,
        instance: u32,
    ) -> Self {
        // RFC 2104 §2: a key shorter than the block is zero-padded to it; doing that here
        // gives the same MAC as `new_from_slice` through the infallible constructor.
        let mut block = hmac::digest::Key::<Hmac<Sha256>>::default();
        block[..key.0.len()].copy_from_slice(&key.0);
        let mac = <Hmac<Sha256> as KeyInit>::new(&block);
        NonceState {
            mac,
            instance,
            next_seq: AtomicU64::new(0),
            max_age_s,
            nc_table: NcTable::new(nc_slots_log2),
        }
    }

    pub fn max_age_s(&self) -> u64 {
        self.max_age_s
    }

    /// Issues a fresh nonce for `realm`. Lock-free and allocation-free.
    pub fn issue(&self, now_s: u64, realm: &[u8]) -> Nonce {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let mut raw = [0u8; RAW_LEN];
        raw[0..8].copy_from_slice(&now_s.to_be_bytes());
        raw[8..12].copy_from_slice(&self.instance.to_be_bytes());
        raw[12..20].copy_from_slice(&seq.to_be_bytes());
        let tag = self.tag(&raw[..SIGNED_LEN], realm);
        raw[SIGNED_LEN..].copy_from_slice(&tag);
        let mut text = [0u8; NONCE_LEN];
        // 36 bytes always encode to exactly 48 characters; a failure would leave zeros, which
        // `check` rejects as bad.
        let _ = URL_SAFE_NO_PAD.encode_slice(raw, &mut text);
        Nonce(text)
    }

    /// Checks a nonce from a client's credentials against `realm` and the clock.
    pub fn check(&self, nonce: &[u8], now_s: u64, realm: &[u8]) -> Result<Issued, NonceError> {
        if nonce.len() != NONCE_LEN {
            return Err(NonceError::Bad);
        }
        let mut raw = [0u8; RAW_LEN + 3];
        match URL_SAFE_NO_PAD.decode_slice(nonce, &mut raw) {
            Ok(RAW_LEN) => {}
            _ => return Err(NonceError::Bad),
        }
        let tag = self.tag(&raw[..SIGNED_LEN], realm);
        if !bool::from(tag.ct_eq(&raw[SIGNED_LEN..RAW_LEN])) {
            return Err(NonceError::Bad);
        }
        let issued_s = u64::from_be_bytes(read8(&raw[0..8]));
        let instance = u32::from_be_bytes([raw[8], raw[9], raw[10], raw[11]]);
        let seq = u64::from_be_bytes(read8(&raw[12..20]));
        if instance != self.instance {
            // Ours (the MAC holds) but from a previous run: its nc history is lost, so
            // accepting it could accept a replay. Stale lets the client retry silently.
            return Err(NonceError::Stale);
        }
        if issued_s > now_s.saturating_add(FUTURE_SKEW_S) {
            return Err(NonceError::Stale);
        }
        if now_s.saturating_sub(issued_s) > self.max_age_s {
            return Err(NonceError::Stale);
        }
        Ok(Issued { issued_s, seq })
    }

    /// Records the nc of a request whose response was verified; refuses replays.
    /// Call only after the response checked out, so a forger cannot burn a client's counts.
    pub fn record_nc(&self, issued: Issued, nc: u32) -> Result<(), NonceError> {
        self.nc_table.record(issued.seq, nc).map_err(|e| match e {
            NcError::Replayed => NonceError::Replayed,
            NcError::Evicted | NcError::Contended => NonceError::Stale,
        })
    }

    fn tag(&self, signed: &[u8], realm: &[u8]) -> [u8; MAC_LEN] {
        let mut mac = self.mac.clone();
        mac.update(signed);
        mac.update(realm);
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; MAC_LEN];
        tag.copy_from_slice(&full[..MAC_LEN]);
        tag
    }
}

fn read8(s: &[u8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    out.copy_from_slice(&s[..8]);
    out
}

impl std::fmt::Debug for NonceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceState")
            .field("instance", &self.instance)
            .field("max_age_s", &self.max_age_s)
            .field("nc_table", &self.nc_table)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> NonceState {
        NonceState::with_instance(&NonceKey::from_bytes([7; 32]), 300, 4, 42)
    }

    #[test]
    fn issue_then_check() {
        let s = state();
        let n = s.issue(1000, b"example.com");
        assert_eq!(n.as_bytes().len(), NONCE_LEN);
        assert!(
            n.as_bytes()
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        );
        let issued = s.check(n.as_bytes(), 1000, b"example.com").expect("fresh");
        assert_eq!(issued.issued_s, 1000);
        assert_eq!(s.check(n.as_bytes(), 1300, b"example.com"), Ok(issued));
        let second = s.issue(1000, b"example.com");
        assert_ne!(n, second);
    }

    #[test]
    fn stale_when_old_or_far_future() {
        let s = state();
        let n = s.issue(1000, b"r");
        assert_eq!(s.check(n.as_bytes(), 1301, b"r"), Err(NonceError::Stale));
        assert_eq!(s.check(n.as_bytes(), 994, b"r"), Err(NonceError::Stale));
        assert!(s.check(n.as_bytes(), 995, b"r").is_ok());
    }

    #[test]
    fn tampered_or_foreign_nonces_are_bad() {
        let s = state();
        let n = s.issue(1000, b"r");
        for i in 0..NONCE_LEN {
            let mut t = *n.as_bytes().first_chunk::<NONCE_LEN>().expect("len");
            t[i] = if t[i] == b'A' { b'B' } else { b'A' };
            assert_eq!(s.check(&t, 1000, b"r"), Err(NonceError::Bad), "byte {i}");
        }
        assert_eq!(s.check(n.as_bytes(), 1000, b"other"), Err(NonceError::Bad));
        assert_eq!(
            s.check(&n.as_bytes()[1..], 1000, b"r"),
            Err(NonceError::Bad)
        );
        assert_eq!(s.check(b"", 1000, b"r"), Err(NonceError::Bad));
        assert_eq!(
            s.check(&[b'!'; NONCE_LEN], 1000, b"r"),
            Err(NonceError::Bad)
        );
        let other_key = NonceState::with_instance(&NonceKey::from_bytes([8; 32]), 300, 4, 42);
        assert_eq!(
            other_key.check(n.as_bytes(), 1000, b"r"),
            Err(NonceError::Bad)
        );
    }

    #[test]
    fn previous_instance_is_stale() {
        let key = NonceKey::from_bytes([7; 32]);
        let before = NonceState::with_instance(&key, 300, 4, 1);
        let after = NonceState::with_instance(&key, 300, 4, 2);
        let n = before.issue(1000, b"r");
        assert_eq!(
            after.check(n.as_bytes(), 1000, b"r"),
            Err(NonceError::Stale)
        );
    }

    #[test]
    fn nc_replay_and_eviction() {
        let s = state(); // 16 slots
        let n = s.issue(1000, b"r");
        let issued = s.check(n.as_bytes(), 1000, b"r").expect("fresh");
        assert_eq!(s.record_nc(issued, 1), Ok(()));
        assert_eq!(s.record_nc(issued, 1), Err(NonceError::Replayed));
        assert_eq!(s.record_nc(issued, 2), Ok(()));
        // 16 more nonces later the slot is reused; once the newcomer is used, the old
        // nonce is stale, never accepted.
        let mut last = None;
        for _ in 0..16 {
            last = Some(s.issue(1000, b"r"));
        }
        let newcomer = s
            .check(last.expect("issued").as_bytes(), 1000, b"r")
            .expect("fresh");
        assert_eq!(s.record_nc(newcomer, 1), Ok(()));
        assert_eq!(s.record_nc(issued, 3), Err(NonceError::Stale));
    }

    #[test]
    fn padded_key_is_the_standard_hmac() {
        let key = [0x5a; 32];
        let s = NonceState::with_instance(&NonceKey::from_bytes(key), 300, 4, 0);
        let mut reference =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&key).expect("any key length");
        reference.update(b"signed");
        reference.update(b"realm");
        let full = reference.finalize().into_bytes();
        assert_eq!(s.tag(b"signed", b"realm")[..], full[..MAC_LEN]);
    }

    #[test]
    fn random_key_and_debug_redaction() {
        let k = NonceKey::random().expect("entropy");
        assert_eq!(format!("{k:?}"), "NonceKey(<redacted>)");
        let s = NonceState::new(&k, 60, 4).expect("entropy");
        let n = s.issue(5, b"r");
        assert!(s.check(n.as_bytes(), 6, b"r").is_ok());
    }
}
