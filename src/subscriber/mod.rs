//! The IM Server's side of the GLMS integration (SPEC D2, D3, D5, D6; §3, §4): it subscribes to
//! each registered user's two XCAP documents with `Event: xcap-diff`, keeps a copy of them
//! (patched from NOTIFYs or fetched with XCAP GET), and compiles them into the blocked set the
//! fast path consults.
//!
//! - [`compile`]: the D2 policy compiler, a pure function (`lists` walks RFC 4826 lists and
//!   their references).
//! - [`machine`]: the per-AoR subscriber, sans-IO: `now_ms` and parsed SIP/HTTP results in,
//!   [`Action`]s out (`wire` writes the SUBSCRIBE and reads `Subscription-State`; `cache` holds the per-AoR document copies and the durable cache records).
//! - [`xcapclient`]: a small blocking HTTP/1.1 client for XCAP GET and a worker pool around it.
//!
//! # Subscription state machine (per AoR, SPEC 3.6, on RFC 6665)
//!
//! ```text
//!  IDLE --first binding--> SUBSCRIBING (SUBSCRIBE, Timer F)
//!  SUBSCRIBING --2xx--> WAIT_NOTIFY (Timer N) --NOTIFY active/pending--> ACTIVE (refresh at 80%)
//!  SUBSCRIBING --NOTIFY first (RFC 6665 §4.1.2.4)--> ACTIVE (the 2xx may follow)
//!  SUBSCRIBING --423--> SUBSCRIBING (Expires = Min-Expires)
//!  SUBSCRIBING --5xx/408/Timer F--> BACKOFF --retry timer--> SUBSCRIBING
//!  SUBSCRIBING --489/403/404/other--> FAILED (long back-off) --retry timer--> SUBSCRIBING
//!  WAIT_NOTIFY --Timer N--> BACKOFF
//!  ACTIVE --refresh timer--> REFRESHING (same Call-ID, CSeq+1)
//!  REFRESHING --2xx--> ACTIVE ; --481--> SUBSCRIBING (new Call-ID) ;
//!             --408/5xx/Timer F--> ACTIVE (refresh retried with back-off until it expires)
//!  ACTIVE --expiry without refresh--> SUBSCRIBING
//!  ACTIVE --NOTIFY terminated;reason=deactivated|timeout--> SUBSCRIBING
//!  ACTIVE --NOTIFY terminated;reason=probation|giveup--> BACKOFF (retry-after) --> SUBSCRIBING
//!  ACTIVE --NOTIFY terminated;reason=rejected|noresource|invariant--> FAILED (long back-off)
//!  any --last binding gone--> (grace_s) --> UNSUBSCRIBING (Expires: 0)
//!       --final NOTIFY / response / Timer N--> gone (Action::Stopped)
//!  UNSUBSCRIBING or grace --first binding--> SUBSCRIBING (new dialog; the cache is kept)
//! ```
//! In every state the last compiled policy stays in force (D6); before the first successful
//! compile the AoR's policy is pending (the slow path marks it so).
//!
//! # Documents (D3, RFC 5874 §3)
//! Per NOTIFY `<document>`: previous-etag equal to the cached one and a patch: apply it;
//! `<body-not-changed/>`: take the new ETag; only a previous-etag: the document is gone (it then
//! contributes nothing); anything else: GET with `If-None-Match: <cached etag>`. The first
//! NOTIFY of every new dialog also revalidates each document not named in it (SPEC 3.7: some
//! notifiers send an empty or stale first NOTIFY). Documents referenced from the lists are
//! fetched once when first needed and again whenever one of the user's documents changes.
//!
//! # Allow versus block (the rule this compiler implements)
//! SPEC D2 makes the blocked list the union of the two documents and says a catch-all allow
//! never overrides a specific block; RFC 4745 §10 combines the actions of every matching rule
//! by their maximum, so inside one common-policy document an allow (`true`) beats a block
//! (`false`) for a sender both match. Reconciled:
//! - **A1.** Inside the access-rules document, an *explicit* allow, a rule with action `true`
//!   whose conditions name the sender individually (`<one id>`, or a member of an
//!   `<external-list>`), beats every block rule of that same document that matches the sender
//!   (`<one id>`, `<many domain>`, `<many/>`, `<external-list>`, condition-less or
//!   `<other-identity/>` blocks): RFC 4745 §10 max-combining.
//! - **A2.** An allow that names no one individually (`<many/>`, `<many domain>`,
//!   `<other-identity/>`, a rule without conditions) overrides nothing: D2's "a catch-all allow
//!   never overrides a specific block". (A blanket allow is the default anyway.)
//! - **A3.** A member of `oma_blockedcontacts` (resource-lists) is blocked whatever the
//!   access rules say: D2 takes the union of both documents' blocks.
//!
//! Conditions are ANDed across elements and ORed inside `<identity>` (RFC 4745 §7, §10). A rule
//! with `<sphere>`, `<validity>` or any condition not known here matches nobody, with a warning
//! (RFC 4745 §7: an unsupported condition evaluates to FALSE); a compiled policy does not change
//! with the clock, so validity windows are not evaluated. A rule without `<allow-reject-invite>`
//! is not about IM and has no effect, except that its identity conditions still count for
//! `<other-identity/>`.
#![forbid(unsafe_code)]

pub mod cache;
pub mod compile;
mod docs;
pub mod lists;
pub mod machine;
pub mod wire;
pub mod xcapclient;

#[cfg(test)]
mod compile_tests;
#[cfg(test)]
mod machine_tests;
#[cfg(test)]
mod xcapclient_tests;

pub use cache::{CacheChange, CacheEntry, CachedDoc};
pub use compile::{
    CompileError, Compiled, DomainBlock, ExceptList, Warning, WarningKind, XcapRef, compile,
    compile_in,
};
pub use lists::{MAX_REF_DEPTH, Root};
pub use machine::{
    Action, FetchResult, Notify, NotifyReply, Phase, SubscribeResponse, Subscriber,
    SubscriberConfig, SubscriberError,
};
pub use wire::render_subscribe;
pub use xcapclient::{FetchDone, FetchRequest, Fetcher, fetch};
