//! Entity-tag generation (RFC 3903 §6 step 6, §8.3).
//!
//! A tag is 16 bytes in base64url (22 characters): 8 bytes of a bijection of a per-compositor
//! counter, which makes every tag of this process unique (RFC 3903 §6 step 6: unique, and never
//! reused for the same resource), followed by 8 bytes from a ChaCha-based CSPRNG, which makes it
//! unguessable. Across a restart the secret and the random half are new, so a tag repeats only
//! with probability 2^-64.

#![forbid(unsafe_code)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::types::ETag;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

#[derive(Debug)]
pub(super) struct EtagGen {
    rng: StdRng,
    counter: u64,
    /// Hides the counter; XOR keeps the mapping one-to-one.
    mask: u64,
}

impl EtagGen {
    /// Seeded from the operating system.
    pub(super) fn from_os() -> Self {
        Self::with_rng(rand::make_rng())
    }

    /// Deterministic, for tests and simulations.
    pub(super) fn from_seed(seed: [u8; 32]) -> Self {
        Self::with_rng(StdRng::from_seed(seed))
    }

    fn with_rng(mut rng: StdRng) -> Self {
        let mask = rng.next_u64();
        Self {
            rng,
            counter: 0,
            mask,
        }
    }

    pub(super) fn next(&mut self) -> ETag {
        self.counter = self.counter.wrapping_add(1);
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&(self.counter ^ self.mask).to_be_bytes());
        raw[8..].copy_from_slice(&self.rng.next_u64().to_be_bytes());
        ETag::from_generated(base64url(&raw))
    }
}

/// Unpadded base64url (RFC 4648 §5): token characters only, safe in a SIP header.
fn base64url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let index = (n >> (18 - 6 * i)) & 63;
            out.push(char::from(ALPHABET[index as usize]));
        }
    }
    out
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn base64url_matches_rfc4648_vectors() {
        // RFC 4648 §10, unpadded, in the URL-safe alphabet.
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn tags_are_22_token_characters() {
        let mut tags = EtagGen::from_seed([7; 32]);
        let tag = tags.next();
        assert_eq!(tag.as_str().len(), 22);
        assert!(tag.as_str().bytes().all(|b| ALPHABET.contains(&b)));
    }

    #[test]
    fn the_same_seed_gives_the_same_tags_and_another_seed_does_not() {
        let (mut a, mut b, mut c) = (
            EtagGen::from_seed([1; 32]),
            EtagGen::from_seed([1; 32]),
            EtagGen::from_seed([2; 32]),
        );
        let (ta, tb, tc) = (a.next(), b.next(), c.next());
        assert_eq!(ta, tb);
        assert_ne!(ta, tc);
    }
}
