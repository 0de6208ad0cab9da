//! Nonce-count replay protection: a fixed-size, preallocated, lock-free table shared by all
//! workers.
//!
//! RFC 7616 §3.3 / RFC 2617 §3.2.2: "the server can detect request replays by maintaining its
//! own copy of this count - if the same nc-value is seen twice, then the request is a replay."
//!
//! Every nonce carries a sequence number `seq`, unique within one [`super::NonceState`]. The
//! slot is `seq mod slots`, so consecutive nonces fall into consecutive slots; the slot keeps
//! `(generation = seq / slots, highest nc seen)` packed in one `AtomicU64`. For a nonce of
//! generation `g` and a slot holding `(G, n)`:
//!
//! - `g < G`: a newer nonce took the slot; this nonce's history is gone, so it is refused as
//!   stale (the client retries with a fresh nonce, no user prompt).
//! - `g == G`: the slot is this nonce's; `nc <= n` is a replay, otherwise `n := nc`.
//! - `g > G`: this nonce was never recorded (a slot's generation only grows, and each nonce
//!   has one generation), so nothing it sends can be a replay; the slot becomes `(g, nc)`.
//!
//! Trade-off, documented: a nonce is tracked until `slots` newer nonces were issued *and* one
//! of them was used. With 64K slots (512 KiB) and a 300 s nonce lifetime that is ~218 new
//! challenges per second before a client that keeps reusing one nonce sees a spurious
//! `stale=true`; past it, the cost is one extra round trip, never an accepted replay.
//! Generations are 32 bits, so one run may issue 2^(32 + log2 slots) nonces (2^48 with 64K
//! slots: ~9 years at a million per second) before slots stop accepting new nonces.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};

/// Default table size: 2^16 slots of 8 bytes.
pub const DEFAULT_SLOTS_LOG2: u32 = 16;
/// CAS attempts before giving up on a contended slot (STYLE: every loop bounded).
const MAX_CAS_ATTEMPTS: usize = 16;

/// Why an nc was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NcError {
    /// nc not above the highest seen for this nonce (or nc = 0, RFC 7616 §3.4: counts from 1).
    #[error("nonce count replayed")]
    Replayed,
    /// The nonce's slot now belongs to a newer nonce; its history is lost.
    #[error("nonce evicted from the replay table")]
    Evicted,
    /// Other workers kept changing the slot; refuse rather than loop.
    #[error("replay table slot contended")]
    Contended,
}

/// The shared table. `Sync`; hand it to workers behind an `Arc` (inside `NonceState`).
pub struct NcTable {
    slots: Box<[AtomicU64]>,
    slots_log2: u32,
}

impl NcTable {
    /// A table of `2^slots_log2` slots (clamped to 2^4 ..= 2^24), allocated once, here.
    pub fn new(slots_log2: u32) -> Self {
        let slots_log2 = slots_log2.clamp(4, 24);
        let slots = (0..1usize << slots_log2)
            .map(|_| AtomicU64::new(0))
            .collect();
        NcTable { slots, slots_log2 }
    }

    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Records `nc` for the nonce with sequence number `seq`, refusing replays.
    pub fn record(&self, seq: u64, nc: u32) -> Result<(), NcError> {
        if nc == 0 {
            return Err(NcError::Replayed);
        }
        let index = (seq & ((1u64 << self.slots_log2) - 1)) as usize;
        let generation = (seq >> self.slots_log2) as u32;
        let Some(slot) = self.slots.get(index) else {
            return Err(NcError::Contended);
        };
        let mut current = slot.load(Ordering::Acquire);
        for _ in 0..MAX_CAS_ATTEMPTS {
            let (slot_generation, highest) = ((current >> 32) as u32, current as u32);
            if generation < slot_generation {
                return Err(NcError::Evicted);
            }
            if generation == slot_generation && nc <= highest {
                return Err(NcError::Replayed);
            }
            let next = u64::from(generation) << 32 | u64::from(nc);
            match slot.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(seen) => current = seen,
            }
        }
        Err(NcError::Contended)
    }
}

impl std::fmt::Debug for NcTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NcTable")
            .field("slots", &self.slots.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increasing_nc_accepted_replay_refused() {
        let t = NcTable::new(4);
        assert_eq!(t.record(3, 1), Ok(()));
        assert_eq!(t.record(3, 2), Ok(()));
        assert_eq!(t.record(3, 2), Err(NcError::Replayed));
        assert_eq!(t.record(3, 1), Err(NcError::Replayed));
        assert_eq!(t.record(3, 7), Ok(()));
        assert_eq!(t.record(3, 5), Err(NcError::Replayed));
        assert_eq!(t.record(4, 0), Err(NcError::Replayed));
    }

    #[test]
    fn first_use_may_start_anywhere() {
        let t = NcTable::new(4);
        assert_eq!(t.record(0, 5), Ok(()));
        assert_eq!(t.record(0, 5), Err(NcError::Replayed));
    }

    #[test]
    fn newer_nonce_evicts_older_which_can_never_come_back() {
        let t = NcTable::new(4);
        let old = 5u64;
        let newer = old + 16; // same slot, next generation
        assert_eq!(t.record(old, 1), Ok(()));
        assert_eq!(t.record(newer, 1), Ok(()));
        // The old nonce's history is gone: refused (stale), never accepted again.
        assert_eq!(t.record(old, 2), Err(NcError::Evicted));
        assert_eq!(t.record(old, 1), Err(NcError::Evicted));
        assert_eq!(t.record(newer, 1), Err(NcError::Replayed));
        assert_eq!(t.record(newer, 2), Ok(()));
    }

    #[test]
    fn concurrent_same_nc_accepted_once() {
        let t = std::sync::Arc::new(NcTable::new(8));
        for nc in 1..=50u32 {
            let accepted: usize = std::thread::scope(|s| {
                let handles: Vec<_> = (0..4)
                    .map(|_| {
                        let t = &t;
                        s.spawn(move || usize::from(t.record(77, nc).is_ok()))
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
            });
            // Contended may refuse all of them, but two can never both win.
            assert!(accepted <= 1, "nc {nc} accepted {accepted} times");
        }
    }

    #[test]
    fn size_is_clamped() {
        assert_eq!(NcTable::new(0).slot_count(), 16);
        assert_eq!(NcTable::new(DEFAULT_SLOTS_LOG2).slot_count(), 65536);
    }
}
