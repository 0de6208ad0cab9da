//! `PolicyTable`: every user's compiled policy, as immutable snapshots the fast path reads
//! without locks and the slow path replaces one user at a time.
//!
//! The user space is split into up to 2^16 shards by the key's hash. Each shard is an
//! `ArcSwap<Shard>` over a small `hashbrown::HashTable` of `Arc<UserEntry>`. Publishing one
//! user's change clones only that shard's table (tens of pointers), swaps it in atomically and
//! lets the old snapshot go when its last reader is done. Readers never wait; writers of one
//! shard serialise on a striped mutex that readers never touch, so no update is lost.
#![forbid(unsafe_code)]

use arc_swap::ArcSwap;
use foldhash::fast::RandomState;
use hashbrown::HashTable;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::identity::Identity;
use super::user::UserPolicy;

/// Most shards a table has (enough for 1,000,000 users at ~15 per shard).
pub const SHARDS_MAX: usize = 1 << 16;
const SHARDS_MIN: usize = 1 << 6;
/// Users per shard the sizing aims at: small enough that a publish copies tens of pointers.
const USERS_PER_SHARD: usize = 16;
/// Users `new()` sizes for.
const DEFAULT_USERS: usize = 1 << 20;
const WRITER_STRIPES: usize = 256;

/// One user's published policy, keyed by the canonical identity of the AoR.
#[derive(Debug)]
pub struct UserEntry {
    pub key: Box<[u8]>,
    pub policy: UserPolicy,
}

#[derive(Clone)]
struct Slot {
    hash: u64,
    entry: Arc<UserEntry>,
}

#[derive(Clone, Default)]
struct Shard {
    users: HashTable<Slot>,
}

impl Shard {
    fn find(&self, hash: u64, key: &[u8]) -> Option<&Arc<UserEntry>> {
        // The full hash is kept in the slot, so a non-matching slot is rejected without
        // touching the entry (one cache miss saved on an unknown user).
        self.users
            .find(hash, |s| s.hash == hash && *s.entry.key == *key)
            .map(|s| &s.entry)
    }
}

/// The table of all users' policies. See the module documentation.
pub struct PolicyTable {
    /// Fixed per table, random at construction (HashDoS resistance).
    state: RandomState,
    shards: Box<[ArcSwap<Shard>]>,
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
            shards: (0..count).map(|_| ArcSwap::new(empty.clone())).collect(),
            shard_mask: count - 1,
            writers: (0..WRITER_STRIPES).map(|_| Mutex::new(())).collect(),
            len: AtomicUsize::new(0),
        }
    }

    fn hash(&self, key: &[u8]) -> u64 {
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
        let hash = self.hash(user_norm);
        let shard = self.shards[self.shard_index(hash)].load();
        f(shard.find(hash, user_norm).map(|e| &e.policy))
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
        let current = self.shards[index].load_full();
        let existing = current.find(hash, key);
        let next = f(existing.map(|e| &e.policy));
        if existing.is_none() && next.is_none() {
            return;
        }
        // Rebuild this shard's table at its exact new size: one allocation, no rehash of keys
        // (slots carry their hash), tens of Arc clones.
        let others = current
            .users
            .iter()
            .filter(|s| !(s.hash == hash && *s.entry.key == *key));
        let mut users = HashTable::with_capacity(current.users.len() + usize::from(next.is_some()));
        for slot in others {
            users.insert_unique(slot.hash, slot.clone(), |s: &Slot| s.hash);
        }
        match (existing.is_some(), next) {
            (existed, Some(policy)) => {
                let entry = Arc::new(UserEntry {
                    key: key.into(),
                    policy,
                });
                users.insert_unique(hash, Slot { hash, entry }, |s| s.hash);
                if !existed {
                    self.len.fetch_add(1, Ordering::Relaxed);
                }
            }
            (_, None) => {
                self.len.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.shards[index].store(Arc::new(Shard { users }));
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
            for slot in shard.load().users.iter() {
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
            let key: Box<[u8]> = key.as_bytes().into();
            slots.push(Slot {
                hash: state.hash_one(&*key),
                entry: Arc::new(UserEntry { key, policy }),
            });
        }
        let mut table = Self::with_capacity(slots.len());
        table.state = state;
        let shard_of = |s: &Slot| (s.hash >> 32) as usize & table.shard_mask;
        // Stable, so that among duplicates the later entry is inserted last and wins.
        slots.sort_by_key(shard_of);
        let mut counts = vec![0usize; table.shards.len()];
        for slot in &slots {
            counts[shard_of(slot)] += 1;
        }
        let mut total = 0;
        let mut slots = slots.into_iter().peekable();
        while let Some(first) = slots.peek() {
            let index = shard_of(first);
            let mut users: HashTable<Slot> = HashTable::with_capacity(counts[index]);
            while let Some(slot) = slots.next_if(|s| shard_of(s) == index) {
                let (hash, key) = (slot.hash, &slot.entry.key);
                match users.find_mut(hash, |s| s.hash == hash && s.entry.key == *key) {
                    Some(existing) => *existing = slot,
                    None => {
                        users.insert_unique(hash, slot, |s| s.hash);
                        total += 1;
                    }
                }
            }
            table.shards[index] = ArcSwap::new(Arc::new(Shard { users }));
        }
        table.len = AtomicUsize::new(total);
        table
    }

    /// Heap bytes of the shard tables themselves (not the policies): for the memory report.
    pub fn index_bytes(&self) -> usize {
        let mut bytes = std::mem::size_of_val(&*self.shards);
        for shard in self.shards.iter() {
            bytes += shard.load().users.allocation_size() + std::mem::size_of::<Shard>();
        }
        bytes
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
