//! `PolicyTable`: every user's compiled policy, as immutable snapshots the fast path reads
//! without locks and the slow path replaces one user at a time.
//!
//! The user space is split into up to 2^16 shards by the key's hash. Each shard is an
//! `ArcSwap<Shard>` over a small open-addressed array of `Arc<UserEntry>` held inside the shard's
//! own allocation. Publishing one user's change rebuilds only that shard (tens of pointers),
//! swaps it in atomically and lets the old snapshot go when its last reader is done. Readers
//! never wait; writers of one shard serialise on a striped mutex that readers never touch, so no
//! update is lost.
//!
//! A lookup is a chain of dependent loads, and with a million users each is a cache miss: the
//! shard pointer, the slot, the entry. The slots live in the shard itself (no separate control
//! and bucket arrays) and a short key lives in the entry itself (not in an allocation of its
//! own), so finding a known user costs those three dependent lines and no more.
#![forbid(unsafe_code)]

use arc_swap::ArcSwap;
use foldhash::fast::RandomState;
use hashbrown::HashTable;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::identity::Identity;
use super::short::ShortBytes;
use super::user::UserPolicy;

/// Most shards a table has (enough for 1,000,000 users at ~15 per shard).
pub const SHARDS_MAX: usize = 1 << 16;
const SHARDS_MIN: usize = 1 << 6;
/// Users per shard the sizing aims at: small enough that a publish copies tens of pointers.
const USERS_PER_SHARD: usize = 16;
/// Users `new()` sizes for.
const DEFAULT_USERS: usize = 1 << 20;
const WRITER_STRIPES: usize = 256;

/// Longest key kept inside its entry; canonical identities of ordinary AoRs fit.
const KEY_INLINE: usize = 54;

/// A user's key: inside the entry when short, so that the lookup's comparison reads the entry
/// the caller reads next anyway, not one more allocation.
type Key = ShortBytes<KEY_INLINE>;

/// One user's published policy, keyed by the canonical identity of the AoR.
#[derive(Debug)]
pub struct UserEntry {
    key: Key,
    pub policy: UserPolicy,
}

impl UserEntry {
    fn new(key: &[u8], policy: UserPolicy) -> UserEntry {
        UserEntry {
            key: Key::new(key),
            policy,
        }
    }

    /// The canonical identity this entry is keyed by.
    #[inline]
    pub fn key(&self) -> &[u8] {
        self.key.as_bytes()
    }
}

#[derive(Clone)]
struct Slot {
    hash: u64,
    entry: Arc<UserEntry>,
}

impl Slot {
    #[inline]
    fn is(&self, hash: u64, key: &[u8]) -> bool {
        // The full hash is kept in the slot, so a non-matching slot is rejected without
        // touching the entry.
        self.hash == hash && self.entry.key() == key
    }
}

/// Slots inside a shard: a power of two, twice the users a shard is sized for, so a probe
/// usually ends in the cache line of its first slot (four slots per line).
const INLINE_SLOTS: usize = 2 * USERS_PER_SHARD;
/// Most users the inline slots hold (3/4 full at most, so a probe for an absent key is short
/// and always meets an empty slot); a shard's users past this go to its overflow table.
const INLINE_MAX: usize = INLINE_SLOTS / 4 * 3;

/// One shard's snapshot. Aligned to a cache line so that each line holds four whole slots.
#[derive(Clone, Default)]
#[repr(C, align(64))]
struct Shard {
    /// Open addressing with linear probing from `hash % INLINE_SLOTS`; `None` ends a probe.
    /// Never more than `INLINE_MAX` taken. A shard is rebuilt whole on every change, so there
    /// are no tombstones.
    inline: [Option<Slot>; INLINE_SLOTS],
    /// The users past `INLINE_MAX` (a table grown well past the size it was made for).
    overflow: HashTable<Slot>,
}

impl Shard {
    /// A shard holding `slots`, whose keys must be distinct.
    fn build(slots: impl IntoIterator<Item = Slot>) -> Shard {
        let mut shard = Shard::default();
        let mut inline = 0;
        for slot in slots {
            if inline < INLINE_MAX {
                let mut i = slot.hash as usize % INLINE_SLOTS;
                while shard.inline[i].is_some() {
                    i = (i + 1) % INLINE_SLOTS;
                }
                shard.inline[i] = Some(slot);
                inline += 1;
            } else {
                shard.overflow.insert_unique(slot.hash, slot, |s| s.hash);
            }
        }
        shard
    }

    #[inline]
    fn find(&self, hash: u64, key: &[u8]) -> Option<&Arc<UserEntry>> {
        if let Some(s) = self.probe_inline(hash, |s| s.is(hash, key)) {
            return Some(&s.entry);
        }
        if self.overflow.is_empty() {
            return None;
        }
        self.overflow
            .find(hash, |s| s.is(hash, key))
            .map(|s| &s.entry)
    }

    /// The inline entry whose slot holds `hash`, probing as [`find`](Self::find) does but by
    /// the hash alone (the key lives in the entry, which is what the caller wants to load).
    /// For prefetching: a full 64-bit hash match is almost always the key.
    #[inline]
    fn inline_by_hash(&self, hash: u64) -> Option<&Arc<UserEntry>> {
        self.probe_inline(hash, |s| s.hash == hash)
            .map(|s| &s.entry)
    }

    /// The inline slot `hit` accepts on the probe for `hash`: linear from `hash % INLINE_SLOTS`
    /// to the first empty slot.
    #[inline(always)]
    fn probe_inline(&self, hash: u64, hit: impl Fn(&Slot) -> bool) -> Option<&Slot> {
        let mut i = hash as usize % INLINE_SLOTS;
        // At most INLINE_MAX slots are taken, so an empty one ends the probe; the bound only
        // makes that visible.
        for _ in 0..INLINE_SLOTS {
            match &self.inline[i] {
                None => break,
                Some(s) if hit(s) => return Some(s),
                Some(_) => i = (i + 1) % INLINE_SLOTS,
            }
        }
        None
    }

    fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.inline.iter().flatten().chain(self.overflow.iter())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inline.iter().flatten().count() + self.overflow.len()
    }
}

/// One shard's place in the table: its snapshot, and where that snapshot lives.
///
/// `at` is a hint for [`PolicyTable::prefetch_slot`]: the address of the current snapshot, read
/// without the snapshot's protection. Reading it is a plain load (no fence), so a batch's hint
/// loads overlap one another, where `ArcSwap::load`'s locked exchange would make each wait for
/// the one before. It may be stale for a moment after a store; a stale address only prefetches
/// the wrong line. Side by side with the snapshot pointer, so that the hint's load also brings
/// in the line the lookup's `load()` reads next.
struct ShardCell {
    snap: ArcSwap<Shard>,
    at: AtomicUsize,
}

impl ShardCell {
    fn new(shard: Arc<Shard>) -> ShardCell {
        let at = AtomicUsize::new(address(&shard));
        ShardCell {
            snap: ArcSwap::new(shard),
            at,
        }
    }

    #[inline]
    fn load(&self) -> arc_swap::Guard<Arc<Shard>> {
        self.snap.load()
    }

    fn store(&self, shard: Arc<Shard>) {
        let at = address(&shard);
        self.snap.store(shard);
        self.at.store(at, Ordering::Relaxed);
    }
}

/// Where a snapshot lives, as a number: only ever turned back into a prefetch address.
fn address(shard: &Arc<Shard>) -> usize {
    Arc::as_ptr(shard) as usize
}

/// The table of all users' policies. See the module documentation.
pub struct PolicyTable {
    /// Fixed per table, random at construction (HashDoS resistance).
    state: RandomState,
    shards: Box<[ShardCell]>,
    shard_mask: usize,
    writers: Box<[Mutex<()>]>,
    len: AtomicUsize,
}

fn shard_count(users: usize) -> usize {
    users
        .div_ceil(USERS_PER_SHARD)
        .next_power_of_two()
        .clamp(SHARDS_MIN, SHARDS_MAX)
}

impl Default for PolicyTable {
    fn default() -> Self {
        Self::new()
    }
}

impl PolicyTable {
    /// A table sized for about a million users.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_USERS)
    }

    /// A table whose shard count suits `users` (it still grows past that; shards get larger).
    pub fn with_capacity(users: usize) -> Self {
        Self::with_shards(shard_count(users))
    }

    fn with_shards(count: usize) -> Self {
        debug_assert!(count.is_power_of_two());
        // Every shard starts as the same empty snapshot; its first write gives it its own.
        let empty = Arc::new(Shard::default());
        PolicyTable {
            state: RandomState::default(),
            shards: (0..count).map(|_| ShardCell::new(empty.clone())).collect(),
            shard_mask: count - 1,
            writers: (0..WRITER_STRIPES).map(|_| Mutex::new(())).collect(),
            len: AtomicUsize::new(0),
        }
    }

    /// The hash of `key` under this table's own (random) hasher: what
    /// [`with_hash`](Self::with_hash) takes.
    #[inline]
    pub fn hash(&self, key: &[u8]) -> u64 {
        self.state.hash_one(key)
    }

    fn shard_index(&self, hash: u64) -> usize {
        // Bits 32.. : hashbrown takes the bucket from the low bits and the control byte from
        // the top 7, so the shard choice must not correlate with either.
        (hash >> 32) as usize & self.shard_mask
    }

    /// The fast-path read: runs `f` on the user's policy (or `None`: unknown user, 404).
    /// One arc-swap load (no refcount change), one hash, one probe; no allocation, no lock.
    #[inline]
    pub fn with<R>(&self, user_norm: &[u8], f: impl FnOnce(Option<&UserPolicy>) -> R) -> R {
        self.with_hash(user_norm, self.hash(user_norm), f)
    }

    /// [`with`](Self::with) for a key whose hash [`prefetch_cell`](Self::prefetch_cell) of
    /// this table returned, so that a batch's lookups hash each key once.
    #[inline]
    pub fn with_hash<R>(
        &self,
        user_norm: &[u8],
        hash: u64,
        f: impl FnOnce(Option<&UserPolicy>) -> R,
    ) -> R {
        debug_assert_eq!(hash, self.hash(user_norm), "a hash of another key or table");
        let shard = self.shards[self.shard_index(hash)].load();
        f(shard.find(hash, user_norm).map(|e| &e.policy))
    }

    /// First step of a batched lookup: starts loading the shard's cell `user_norm` hashes to
    /// and returns the hash for the next steps. A hint: changes nothing, reads no shared memory.
    #[inline]
    pub fn prefetch_cell(&self, user_norm: &[u8]) -> u64 {
        let hash = self.hash(user_norm);
        crate::hint::prefetch(&self.shards[self.shard_index(hash)]);
        hash
    }

    /// Second step, once the cell has had time to arrive: starts loading the slot where the
    /// probe for this hash starts. Takes no snapshot (see [`ShardCell`]), so a batch's calls
    /// overlap.
    #[inline]
    pub fn prefetch_slot(&self, hash: u64) {
        let at = self.shards[self.shard_index(hash)]
            .at
            .load(Ordering::Relaxed);
        let slot = std::mem::offset_of!(Shard, inline)
            + (hash as usize % INLINE_SLOTS) * std::mem::size_of::<Option<Slot>>();
        crate::hint::prefetch(std::ptr::without_provenance::<u8>(at.wrapping_add(slot)));
    }

    /// Third step, once the slot has had time to arrive: starts loading the entry of the user
    /// with this hash, wherever the probe finds it among the inline slots (a sixth to a quarter
    /// of users, by the table's load, sit past the slot their probe starts at; the next slots
    /// are usually in the same line).
    /// A hint only.
    #[inline]
    pub fn prefetch_entry(&self, hash: u64) {
        let shard = self.shards[self.shard_index(hash)].load();
        if let Some(entry) = shard.inline_by_hash(hash) {
            crate::hint::prefetch_all(Arc::as_ptr(entry));
        }
    }

    /// The user's entry, kept alive beyond the snapshot (slow path, persistence).
    pub fn get(&self, user_norm: &[u8]) -> Option<Arc<UserEntry>> {
        let hash = self.hash(user_norm);
        let shard = self.shards[self.shard_index(hash)].load();
        shard.find(hash, user_norm).cloned()
    }

    /// Whether the user is in the table.
    pub fn contains(&self, user_norm: &[u8]) -> bool {
        self.with(user_norm, |p| p.is_some())
    }

    /// Publishes `policy` for `key`, replacing any previous one.
    pub fn upsert(&self, key: Identity, policy: UserPolicy) {
        self.update(&key, |_| Some(policy));
    }

    /// Removes the user; returns whether it was there.
    pub fn remove(&self, key: &Identity) -> bool {
        let mut existed = false;
        self.update(key, |p| {
            existed = p.is_some();
            None
        });
        existed
    }

    /// Read-modify-publish of one user: `f` sees the current policy and returns the new one
    /// (`None` removes the user). `f` runs under the shard's writer lock, so concurrent updates
    /// of one user never lose each other's changes; `f` must not write to this table.
    pub fn update(
        &self,
        key: &Identity,
        f: impl FnOnce(Option<&UserPolicy>) -> Option<UserPolicy>,
    ) {
        let key = key.as_bytes();
        let hash = self.hash(key);
        let index = self.shard_index(hash);
        let _writer = self.lock_writer(index);
        let current = self.shards[index].snap.load_full();
        let existing = current.find(hash, key);
        let next = f(existing.map(|e| &e.policy));
        if existing.is_none() && next.is_none() {
            return;
        }
        // Rebuild this shard at its new contents: no rehash of keys (slots carry their hash),
        // tens of Arc clones.
        let others = current.iter().filter(|s| !s.is(hash, key)).cloned();
        let added = next.map(|policy| Slot {
            hash,
            entry: Arc::new(UserEntry::new(key, policy)),
        });
        match (existing.is_some(), added.is_some()) {
            (false, true) => {
                self.len.fetch_add(1, Ordering::Relaxed);
            }
            (true, false) => {
                self.len.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
        self.shards[index].store(Arc::new(Shard::build(others.chain(added))));
    }

    fn lock_writer(&self, shard: usize) -> MutexGuard<'_, ()> {
        // The mutex guards no data (the snapshot is swapped whole), so a poisoned lock is
        // still a valid lock.
        self.writers[shard % WRITER_STRIPES]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Visits every entry of the current snapshots, shard by shard (persistence, metrics). An
    /// update running meanwhile may or may not be seen.
    pub fn for_each(&self, mut f: impl FnMut(&UserEntry)) {
        for shard in self.shards.iter() {
            for slot in shard.load().iter() {
                f(&slot.entry);
            }
        }
    }

    /// Builds a table in one pass (startup from the durable cache, D6): entries are grouped by
    /// shard and each shard is built once. A later duplicate key replaces an earlier one.
    pub fn from_entries(entries: impl IntoIterator<Item = (Identity, UserPolicy)>) -> Self {
        let entries = entries.into_iter();
        let mut slots: Vec<Slot> = Vec::with_capacity(entries.size_hint().0);
        let state = RandomState::default();
        for (key, policy) in entries {
            let key = key.as_bytes();
            slots.push(Slot {
                hash: state.hash_one(key),
                entry: Arc::new(UserEntry::new(key, policy)),
            });
        }
        let mut table = Self::with_capacity(slots.len());
        table.state = state;
        let shard_of = |s: &Slot| (s.hash >> 32) as usize & table.shard_mask;
        // Stable, so that among duplicates (equal hashes, hence adjacent) the later entry comes
        // later and wins.
        slots.sort_by_key(|s| (shard_of(s), s.hash));
        let mut total = 0;
        let mut slots = slots.into_iter().peekable();
        let mut group: Vec<Slot> = Vec::new();
        while let Some(first) = slots.peek() {
            let index = shard_of(first);
            group.clear();
            while let Some(slot) = slots.next_if(|s| shard_of(s) == index) {
                // Only slots of one hash can hold the same key: look back over that run.
                let run = group
                    .iter()
                    .rev()
                    .take_while(|s| s.hash == slot.hash)
                    .count();
                let start = group.len() - run;
                match group[start..]
                    .iter()
                    .position(|s| s.is(slot.hash, slot.entry.key()))
                {
                    Some(at) => group[start + at] = slot,
                    None => group.push(slot),
                }
            }
            total += group.len();
            table.shards[index] = ShardCell::new(Arc::new(Shard::build(group.drain(..))));
        }
        table.len = AtomicUsize::new(total);
        table
    }

    /// Heap bytes of the shard tables themselves (not the policies): for the memory report.
    pub fn index_bytes(&self) -> usize {
        let mut bytes = std::mem::size_of_val(&*self.shards);
        for shard in self.shards.iter() {
            bytes += shard.load().overflow.allocation_size() + std::mem::size_of::<Shard>();
        }
        bytes
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
