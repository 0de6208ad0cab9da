//! A compact hash set of canonical identities, built on the slow path and probed on the fast path
//! by `&[u8]` without allocating.
//!
//! Layout: every identity is stored once, back to back, in one byte arena; the hash table holds
//! 8-byte slots (offset, length, 16-bit hash tag). A 256-bit filter (two bits per member) sits
//! inline in the set, i.e. in the user's table entry, so most non-members (the common case: an
//! allowed sender) are rejected without touching the table's memory at all (2% false positives
//! at 20 members). Past the filter, a probe reads the control bytes, then the slot, and touches
//! the arena only when length and tag already match. At 20 entries a set is about 300 bytes of
//! table plus the identities themselves.
#![forbid(unsafe_code)]

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use std::hash::BuildHasher;

use super::identity::{ID_MAX, Normalized};

/// The most identities one set may hold (a limit on everything: STYLE 6).
pub const SET_MAX_ENTRIES: usize = 100_000;

/// Why a policy could not be compiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("too many entries in one list")]
    TooManyEntries,
    #[error("invalid domain in a domain rule")]
    BadDomain,
}

impl PolicyError {
    /// What the slow path reports when a document compiles to one of these: RFC 4825 §11 uses
    /// 409 for a document the server cannot accept.
    pub fn status(self) -> u16 {
        409
    }

    pub fn reason(self) -> &'static str {
        match self {
            PolicyError::TooManyEntries => "too many entries in one list",
            PolicyError::BadDomain => "invalid domain in a domain rule",
        }
    }
}

#[derive(Clone, Copy)]
struct Slot {
    offset: u32,
    len: u16,
    tag: u16,
}

/// A set of canonical identities (or of lowercased domains, for domain rules).
#[derive(Clone, Default)]
pub struct IdSet {
    state: RandomState,
    filter: [u64; 4],
    index: HashTable<Slot>,
    arena: Vec<u8>,
}

/// The recipient's blocked senders (SPEC D2: the union of both documents, compiled).
pub type BlockedSet = IdSet;

fn tag_of(hash: u64) -> u16 {
    // hashbrown uses the top 7 bits (control byte) and the low bits (bucket); take the middle.
    (hash >> 32) as u16
}

/// The two filter bits of a hash: (word, mask) pairs from bits 8..16 and 16..24.
fn filter_bits(hash: u64) -> [(usize, u64); 2] {
    let bit = |shift: u32| {
        let n = (hash >> shift) as usize & 0xff;
        (n >> 6, 1u64 << (n & 63))
    };
    [bit(8), bit(16)]
}

impl IdSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(entries: usize, bytes: usize) -> Self {
        IdSet {
            state: RandomState::default(),
            filter: [0; 4],
            index: HashTable::with_capacity(entries.min(SET_MAX_ENTRIES)),
            arena: Vec::with_capacity(bytes.min(SET_MAX_ENTRIES * ID_MAX)),
        }
    }

    /// Adds a canonical identity; `Ok(false)` when it was already there.
    pub fn insert(&mut self, id: &impl Normalized) -> Result<bool, PolicyError> {
        self.insert_bytes(id.normalized())
    }

    /// Adds raw bytes: crate-internal, for domains (already lowercased by the caller).
    pub(crate) fn insert_bytes(&mut self, id: &[u8]) -> Result<bool, PolicyError> {
        debug_assert!(id.len() <= ID_MAX, "Normalized values are at most ID_MAX");
        if self.contains(id) {
            return Ok(false);
        }
        if self.index.len() >= SET_MAX_ENTRIES {
            return Err(PolicyError::TooManyEntries);
        }
        let hash = self.state.hash_one(id);
        // Both casts hold: len <= ID_MAX, and the arena holds at most
        // SET_MAX_ENTRIES * ID_MAX bytes, far below u32::MAX.
        let slot = Slot {
            offset: self.arena.len() as u32,
            len: id.len() as u16,
            tag: tag_of(hash),
        };
        self.arena.extend_from_slice(id);
        for (word, mask) in filter_bits(hash) {
            self.filter[word] |= mask;
        }
        let (state, arena) = (&self.state, &self.arena);
        self.index
            .insert_unique(hash, slot, |s| state.hash_one(slot_bytes(arena, s)));
        Ok(true)
    }

    /// Is `id` (canonical form) in the set? Allocates nothing.
    #[inline]
    pub fn contains(&self, id: &[u8]) -> bool {
        if self.index.is_empty() {
            return false;
        }
        let hash = self.state.hash_one(id);
        if filter_bits(hash)
            .iter()
            .any(|&(word, mask)| self.filter[word] & mask == 0)
        {
            return false;
        }
        let tag = tag_of(hash);
        self.index
            .find(hash, |s| {
                s.tag == tag && usize::from(s.len) == id.len() && slot_bytes(&self.arena, s) == id
            })
            .is_some()
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The members, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.index.iter().map(|s| slot_bytes(&self.arena, s))
    }

    /// Gives back the spare capacity left by building (call once the set is complete).
    pub fn shrink_to_fit(&mut self) {
        self.arena.shrink_to_fit();
        let (state, arena) = (&self.state, &self.arena);
        self.index
            .shrink_to_fit(|s| state.hash_one(slot_bytes(arena, s)));
    }

    /// Heap bytes held (for memory accounting).
    pub fn heap_bytes(&self) -> usize {
        self.index.allocation_size() + self.arena.capacity()
    }
}

fn slot_bytes<'a>(arena: &'a [u8], s: &Slot) -> &'a [u8] {
    let start = s.offset as usize;
    // Slots only ever point inside the arena; `get` keeps even a broken invariant panic-free.
    arena.get(start..start + usize::from(s.len)).unwrap_or(&[])
}

impl std::fmt::Debug for IdSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries(self.iter().map(String::from_utf8_lossy))
            .finish()
    }
}

impl PartialEq for IdSet {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|id| other.contains(id))
    }
}

impl Eq for IdSet {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::identity::Identity;

    fn id(uri: &str) -> Identity {
        Identity::parse(uri.as_bytes()).expect("valid test URI")
    }

    #[test]
    fn insert_contains_iter() {
        let mut set = IdSet::new();
        assert!(!set.contains(b"alice@example.com"));
        assert_eq!(set.insert(&id("sip:alice@example.com")), Ok(true));
        assert_eq!(set.insert(&id("sips:alice@EXAMPLE.com:5061")), Ok(false));
        assert_eq!(set.insert(&id("tel:+1-555")), Ok(true));
        for i in 0..100 {
            set.insert(&id(&format!("sip:user{i}@spam.example")))
                .unwrap();
        }
        set.shrink_to_fit();
        assert_eq!(set.len(), 102);
        assert!(set.contains(b"alice@example.com"));
        assert!(set.contains(b"tel:+1555"));
        assert!(set.contains(b"user99@spam.example"));
        assert!(!set.contains(b"Alice@example.com"));
        assert!(!set.contains(b"alice@example.co"));
        assert!(!set.contains(b""));
        let mut all: Vec<_> = set.iter().collect();
        all.sort();
        assert_eq!(all.len(), 102);
        assert_eq!(all[0], b"alice@example.com");
        let copy = set.clone();
        assert_eq!(copy, set);
        assert!(set.heap_bytes() > 0);
    }

    #[test]
    fn limit() {
        let mut set = IdSet::new();
        for i in 0..SET_MAX_ENTRIES {
            assert_eq!(set.insert_bytes(format!("{i}@x").as_bytes()), Ok(true));
        }
        assert_eq!(
            set.insert_bytes(b"one-more@x"),
            Err(PolicyError::TooManyEntries)
        );
        // Re-inserting a member is not an error even when full.
        assert_eq!(set.insert_bytes(b"7@x"), Ok(false));
        assert_eq!(
            PolicyError::BadDomain.to_string(),
            PolicyError::BadDomain.reason()
        );
    }
}
