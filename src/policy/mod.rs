//! Per-user compiled MESSAGE policy and the snapshot table the fast path reads (SPEC D1, D2,
//! D5, D6, D8, D10, D11; §4.3, §5).
//!
//! - [`identity`]: URI -> canonical identity (D8), on the stack, no allocation.
//! - [`set`], [`domain`]: blocked identities and `<many domain>` rules, probed by `&[u8]`.
//! - [`user`]: [`UserPolicy`] and [`UserPolicy::decide`], the per-MESSAGE verdict.
//! - [`table`]: [`PolicyTable`], sharded `ArcSwap` snapshots; readers never lock or allocate,
//!   the slow path republishes one user by copying one small shard.
//!
//! The fast path, per MESSAGE: `normalize(sender)`, `normalize(recipient)`,
//! `table.with(recipient, |p| p.map(|p| p.decide(sender)))`; `None` means 404 (D5).
//!
//! One user's entry, as the slow path moves it (each arrow is one `update`):
//!
//! ```text
//!            first binding (D5)                documents fetched (D6)
//!  absent ─────────────────────────▶ Pending ─────────────────────────▶ Known
//!  (404)    target=Some, known=false  (480+   known=true, lists set      (Blocked /
//!    ▲                                Retry-After)                        Relay)
//!    │                                  │  last binding gone: target=None   │
//!    │                                  ▼  (480, Blocked still answered)    ▼
//!    └──────────── grace expired ──── Unbound ◀────────────────────────────┘
//!                  (remove)
//!  ISB (D11) is a flag on any present entry: while on, every MESSAGE is Barred.
//! ```
#![forbid(unsafe_code)]

pub mod domain;
pub mod identity;
pub mod set;
pub mod short;
pub mod table;
pub mod user;

pub use domain::{DomainRules, Exceptions};
pub use identity::{
    ID_MAX, IdBuf, IdError, Identity, Normalized, domain_of, normalize, normalize_sip_parts,
};
pub use set::{BlockedSet, IdSet, PolicyError, SET_MAX_ENTRIES};
pub use short::ShortBytes;
pub use table::{PolicyTable, SHARDS_MAX, UserEntry};
pub use user::{RelayTarget, UserPolicy, UserPolicyBuilder, Verdict};
