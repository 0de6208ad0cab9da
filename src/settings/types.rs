//! Plain values in and out of the compositor.

#![forbid(unsafe_code)]

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A normalised address-of-record (SPEC D8), the key of a user's settings. Cheap to clone.
// The registrar has its own `Aor` of the same shape; the two modules do not depend on each other.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Aor(Arc<str>);

impl Aor {
    pub fn new(aor: &str) -> Self {
        Self(Arc::from(aor))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Aor {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Aor {
    fn from(aor: &str) -> Self {
        Self::new(aor)
    }
}

impl fmt::Display for Aor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Aor {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Aor {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(Self(Arc::from(text)))
    }
}

/// An entity-tag (RFC 3903 §2: SIP-ETag / SIP-If-Match), 22 base64url characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ETag(String);

impl ETag {
    pub(super) fn from_generated(text: String) -> Self {
        Self(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The known settings of one document; `None` when the document does not mention the setting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// `isb-settings/incoming-session-barring@active`.
    pub isb: Option<bool>,
    /// `vis-settings/vis-status@active`.
    pub vis: Option<bool>,
    /// `deferred-settings/offline-delivery@active`.
    pub offline_delivery: Option<bool>,
    /// `hist-settings/hist-activation@active`.
    pub history: Option<bool>,
}

/// The settings in force for a user: the composition of the active publications (SPEC D11).
/// `isb` is off unless some publication turns it on; the others are `None` when no publication
/// mentions them, so the caller applies its own default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EffectiveSettings {
    pub isb: bool,
    pub vis: Option<bool>,
    pub offline_delivery: Option<bool>,
    pub history: Option<bool>,
}

impl EffectiveSettings {
    /// A flag is on when any publication sets it; known-off when some mention it and none set it.
    pub fn compose<'a>(parts: impl IntoIterator<Item = &'a Settings>) -> Self {
        fn or(acc: Option<bool>, v: Option<bool>) -> Option<bool> {
            match (acc, v) {
                (None, v) | (v, None) => v,
                (Some(a), Some(b)) => Some(a || b),
            }
        }
        let mut isb = None;
        let mut out = Self::default();
        for s in parts {
            isb = or(isb, s.isb);
            out.vis = or(out.vis, s.vis);
            out.offline_delivery = or(out.offline_delivery, s.offline_delivery);
            out.history = or(out.history, s.history);
        }
        out.isb = isb.unwrap_or(false);
        out
    }
}

/// One stored publication. Serialisable so the store can persist it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publication {
    pub etag: ETag,
    /// Absolute expiry; the publication is gone when `now_ms >= expires_at_ms`.
    pub expires_at_ms: u64,
    /// When the publication was last created, refreshed or modified.
    pub updated_ms: u64,
    /// The Content-Type it came with.
    pub content_type: String,
    /// The document as published, unknown elements included (SPEC D11: kept, not rejected).
    pub body: String,
    pub settings: Settings,
}

impl Publication {
    pub fn is_expired(&self, now_ms: u64) -> bool {
        now_ms >= self.expires_at_ms
    }
}

/// A PUBLISH, as plain values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublishRequest<'a> {
    /// The asserted or authenticated identity of the publisher, normalised (SPEC D11: not the
    /// Request-URI). The caller has already refused (403) anyone publishing for someone else.
    pub aor: &'a str,
    /// The Event header value (parameters allowed).
    pub event: &'a str,
    pub content_type: Option<&'a str>,
    /// The SIP-If-Match header value.
    pub if_match: Option<&'a str>,
    pub expires_s: Option<u32>,
    /// `None` or empty: no body.
    pub body: Option<&'a [u8]>,
}

/// The result of a successful PUBLISH: the 200 carries `SIP-ETag: etag` and `Expires: expires_s`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishOk {
    /// A fresh entity-tag (RFC 3903 §6 step 6). After a removal (`expires_s == 0`) it names no
    /// stored state and may be left out of the response.
    pub etag: ETag,
    pub expires_s: u32,
    /// The AoR's [`EffectiveSettings`] differ from before this PUBLISH: republish the policy.
    pub effective_changed: bool,
}
