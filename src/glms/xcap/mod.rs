//! XCAP document core of the GLMS (RFC 4825), sans-IO: no HTTP, no disk, no clocks.
//!
//! The HTTP server, the durable store and the xcap-diff notifier are built on top of this API:
//! they parse the request target with [`XcapUri::parse`], check `If-Match` / `If-None-Match`
//! against the stored ETag with [`check_preconditions`], call [`XcapCore::get`] /
//! [`XcapCore::put`] / [`XcapCore::delete`] with the stored bytes, store the returned bytes with
//! a new [`ETag`], and hand the returned [`Change`] to the notifier, which turns it into an
//! xcap-diff document with [`DocumentEntry::for_changes`] and [`write_xcap_diff`]. The IM Server
//! side reads NOTIFY bodies with [`parse_xcap_diff`] and patches its cached copy with
//! [`apply_patch`] when the previous ETag matches.
//!
//! ```text
//!  request target --uri--> XcapUri --selector--> steps/terminal
//!                                     |
//!  stored bytes --dom--> Document --ops (GET | PUT | DELETE)--> post-conditions (§8.2.5)
//!                                     |                           |
//!                               usage validation            Change (RFC 5261 ops)
//!                                     |                           |
//!                             new bytes + ETag  --------->  diff: <xcap-diff><document ...>
//!                                                                 |
//!                                   subscriber: parse_xcap_diff -> apply_patch(cached)
//! ```
//!
//! Files: `dom` (owned XML tree, limits, serializer), `parse` (quick-xml into the tree), `uri` (§6 URIs), `selector` (§6.3 node
//! selectors and the RFC 5261 XPath subset), `ops` (§7-§8 operations), `usage` (application
//! usages and xcap-caps), `error` (§11 errors), `etag` (strong ETags and preconditions),
//! `patch` (RFC 5261 model and application), `diff` (RFC 5874 documents).
#![forbid(unsafe_code)]

pub mod diff;
pub mod dom;
pub mod error;
pub mod etag;
pub mod ops;
pub mod parse;
pub mod patch;
pub mod selector;
pub mod uri;
pub mod usage;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use diff::{
    DiffError, DocChange, DocumentEntry, EntryBody, EntryKind, XCAP_DIFF_MIME, XCAP_DIFF_NS,
    XcapDiff, aggregate, parse_xcap_diff, write_xcap_diff,
};
pub use dom::{DomError, Limits};
pub use error::{Allow, Exists, XCAP_ERROR_MIME, XCAP_ERROR_NS, XcapError};
pub use etag::{ETag, check_preconditions, check_read_preconditions};
pub use ops::{
    Change, DeleteOutcome, MIME_ATTRIBUTE, MIME_ELEMENT, MIME_NAMESPACES, PutOutcome,
    Representation, XcapCore,
};
pub use patch::{PatchError, PatchOp, apply_patch};
pub use uri::{DEFAULT_ROOT, Tree, XcapUri};
pub use usage::{Registry, Usage, UsageKind};
