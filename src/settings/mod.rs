//! The event state compositor (RFC 3903) for the OMA IM `service-settings` event package
//! (SPEC D11): PUBLISH with SIP-ETag / SIP-If-Match, refresh, modify, remove, expiry, and the
//! composition of several publications of one user into [`EffectiveSettings`].
//!
//! Sans-IO: the caller passes `now_ms` and plain values taken from the PUBLISH. Authorisation is
//! the caller's job: it passes the asserted (trusted core, SPEC D7) or authenticated identity as
//! `aor` and answers 403 itself to anyone publishing for someone else; this module trusts `aor`.
//! The Request-URI is not used (the seed's Request-URI is the client's contact).
//!
//! Per publication (AoR × entity-tag), after the ESC state machine of SPEC §6.2:
//!
//! ```text
//!   NONE ──PUBLISH(no If-Match, body)──────────────▶ ACTIVE(etag1, T)    200 SIP-ETag: etag1
//!   ACTIVE ──PUBLISH(If-Match etag1, no body)──────▶ ACTIVE(etag2, T')   refresh
//!   ACTIVE ──PUBLISH(If-Match etag1, body)─────────▶ ACTIVE(etag2, doc')  modify
//!   ACTIVE ──PUBLISH(If-Match etag1, Expires: 0)───▶ NONE                200 Expires: 0
//!   ACTIVE ──T reached (expire)────────────────────▶ NONE
//!   any ──PUBLISH(If-Match unknown/expired)────────▶ unchanged           412
//! ```
//!
//! Per AoR the active publications are composed: a flag is on when any of them sets it.

#![forbid(unsafe_code)]

mod compositor;
mod error;
mod etag;
mod types;
mod xml;

#[cfg(test)]
mod tests;

pub use compositor::{Compositor, EXPIRE_BATCH_AORS};
pub use error::{ExtraHeader, PublishError, Setting, XmlFault};
pub use types::{Aor, ETag, EffectiveSettings, Publication, PublishOk, PublishRequest, Settings};
pub use xml::parse_service_settings;

/// The event package name, compared without case (SPEC D11: the seed's core sends
/// `Service-settings`).
pub const EVENT_PACKAGE: &str = "service-settings";
/// The namespace of the document (OMA IM service settings schema).
pub const NAMESPACE: &str = "urn:oma:xml:im:service-settings";
/// The body types accepted, the first being the seed's.
pub const CONTENT_TYPES: [&str; 2] = [
    "application/service-settings+xml",
    "application/vnd.oma.im.service-settings+xml",
];

/// Limits and timers of the compositor (SPEC D11: default 3600, minimum 60, maximum 86400).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SettingsConfig {
    /// Granted when the PUBLISH carries no Expires (RFC 3903 §6 step 4).
    pub default_expires_s: u32,
    /// Below this (but not 0) a PUBLISH gets 423 with Min-Expires (RFC 3903 §6 step 4).
    pub min_expires_s: u32,
    /// A longer request is shortened to this (RFC 3903 §6 step 4 allows it).
    pub max_expires_s: u32,
    /// Past this, an initial PUBLISH gets 503 with Retry-After.
    pub max_publications_per_aor: usize,
    /// A larger body gets 413.
    pub max_body_bytes: usize,
}

impl Default for SettingsConfig {
    fn default() -> Self {
        Self {
            default_expires_s: 3600,
            min_expires_s: 60,
            max_expires_s: 86_400,
            max_publications_per_aor: 8,
            max_body_bytes: 16_384,
        }
    }
}
