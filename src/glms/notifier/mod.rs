//! The GLMS's xcap-diff notifier (RFC 5875 over RFC 6665): subscribers (the IM Server, SPEC
//! D3/D4) SUBSCRIBE with `Event: xcap-diff` and a resource-lists body naming XCAP documents or
//! collections; they get a full-state NOTIFY right after the 200, then one NOTIFY per change
//! (patches for `xcap-patching` / `aggregate`, ETags only for `no-patching`), coalesced per
//! subscription, one NOTIFY in flight at a time (SPEC G4). Subscriptions are durable (G2).
//!
//! - [`core`]: the sans-IO state machine ([`Notifier`]): SUBSCRIBE, change events, NOTIFY
//!   responses and `now_ms` in; NOTIFY datagrams and wake-up times out.
//! - `subscribe`: the SUBSCRIBE checks and the creation / refresh of subscriptions.
//! - [`subscription`]: the durable, serde-serialisable [`Subscription`].
//! - [`body`]: the resource-lists SUBSCRIBE body.
//! - [`notify`]: the NOTIFY writer.
//! - [`error`]: why a SUBSCRIBE is refused, with its status.
//! - [`retransmit`]: NOTIFY retransmission (Timers E/F) and the SUBSCRIBE response cache.
//! - [`sipd`]: the SIP driver ([`GlmsSip`]): a UDP socket, one thread, retransmissions, the
//!   change channel from the XCAP server and persistence.
//!
//! One subscription (RFC 6665 §4.2; reasons §4.1.3):
//! ```text
//!  SUBSCRIBE (no To-tag) --checks fail--> 489/400/415/406/423/403/503 (nothing kept)
//!        | Expires 0: 200 + one NOTIFY terminated;reason=timeout (a fetch), nothing kept
//!        v 200
//!  ACTIVE: full state queued --NOTIFY--> AWAIT_RESPONSE (one in flight, Timer F 32 s)
//!  ACTIVE --change--> COALESCING (coalesce_ms) --NOTIFY--> AWAIT_RESPONSE
//!  AWAIT_RESPONSE --2xx--> ACTIVE (changes that came meanwhile go out merged, at once)
//!  AWAIT_RESPONSE --481 / other error / Timer F--> REMOVED (no final NOTIFY)
//!  ACTIVE --refresh (To-tag, CSeq up)--> ACTIVE, new expiry, NOTIFY with the state
//!  ACTIVE --refresh Expires 0 | expiry--> final NOTIFY terminated;reason=timeout --> REMOVED
//!  ACTIVE --restart (restore)--> ACTIVE, full-state NOTIFY (or final NOTIFY if expired)
//!  in-dialog SUBSCRIBE for an unknown dialog --> 481
//! ```
#![forbid(unsafe_code)]

pub mod body;
pub mod core;
pub mod error;
pub mod notify;
pub mod retransmit;
pub mod sipd;
mod subscribe;
pub mod subscription;

#[cfg(test)]
mod tests;

pub use self::core::{
    Action, DocChangeEvent, DocIndex, Notifier, NotifierConfig, SubscribeInput, SubscribeOk,
    SubscriptionStore, TIMER_F_MS,
};
pub use error::{Rejection, SubscribeError};
pub use notify::Reason;
pub use sipd::{GlmsSip, GlmsSipConfig, NotifierHandle};
pub use subscription::{DiffProcessing, Resource, Subscription, SubscriptionId, Target};
