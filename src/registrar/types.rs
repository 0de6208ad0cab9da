//! Plain values in and out of the registrar.

#![forbid(unsafe_code)]

use std::borrow::Borrow;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A normalised address-of-record (`bob@example.com`, SPEC D8). Cheap to clone: the expiry index
/// and the dirty set hold copies.
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

/// Where the REGISTER came from, as the transport saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceInfo {
    pub addr: SocketAddr,
    pub tcp: bool,
    /// Opaque id of the TCP connection the request arrived on, so a MESSAGE can reuse it.
    pub conn: Option<u64>,
}

/// One Contact of the REGISTER, values already taken out of the header by the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactInput {
    /// The contact URI without angle brackets (`sip:bob@192.0.2.7:5062;transport=tcp`).
    pub uri: String,
    /// The `expires` contact parameter.
    pub expires_s: Option<u32>,
    /// The `q` contact parameter in thousandths (`q=0.7` is 700).
    pub q_milli: Option<u16>,
    /// The raw contact parameters (`; + g.oma.sip-im;expires=600`), read for feature tags.
    pub params: String,
}

/// The Contact header field(s) of a REGISTER.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Contacts {
    /// `Contact: *`: remove every binding (RFC 3261 §10.2.2).
    Star,
    /// Contacts to add, refresh or remove. A single `*` in the list is treated as
    /// [`Contacts::Star`]; `*` beside other contacts is rejected with 400.
    List(Vec<ContactInput>),
    /// No Contact: a query for the current bindings (RFC 3261 §10.2.3).
    None,
}

/// A REGISTER, as plain values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterRequest<'a> {
    /// The normalised AoR from To (RFC 3261 §10.3 step 5; SPEC §2 item 1 for third-party).
    pub aor: &'a str,
    pub call_id: &'a str,
    pub cseq: u32,
    pub contacts: Contacts,
    pub expires_header_s: Option<u32>,
    pub source: SourceInfo,
    /// A third-party REGISTER from the trusted core (SPEC D9): the core's lifetime is taken as
    /// sent, with no 423 and no shortening (SPEC §2 item 7).
    pub third_party: bool,
}

/// Where the fast path relays a MESSAGE for an AoR (SPEC D10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingTarget {
    pub contact_uri: String,
    /// The contact's host:port when it is an IP literal, otherwise the address the REGISTER came
    /// from.
    pub addr: Option<SocketAddr>,
    pub tcp: bool,
    /// The connection the REGISTER came in on, to be reused when it is still open.
    pub conn: Option<u64>,
}

/// One stored binding. Serialisable so the store can persist it; `conn` is not persisted since
/// connection ids mean nothing after a restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub contact_uri: String,
    pub params: String,
    pub q_milli: Option<u16>,
    /// The contact carries the `+g.oma.sip-im` feature tag (RFC 3840).
    pub oma_im: bool,
    pub call_id: String,
    pub cseq: u32,
    /// Absolute expiry; the binding is gone when `now_ms >= expires_at_ms`.
    pub expires_at_ms: u64,
    /// When the binding was last added or refreshed.
    pub updated_ms: u64,
    /// Registrar-wide order of additions and refreshes: a higher `seq` is more recent, also
    /// within one millisecond.
    pub seq: u64,
    pub source_addr: SocketAddr,
    pub tcp: bool,
    #[serde(skip)]
    pub conn: Option<u64>,
    pub third_party: bool,
}

impl Binding {
    /// The remaining lifetime, rounded up so that a live binding never reads as `expires=0`.
    pub fn remaining_s(&self, now_ms: u64) -> u32 {
        let left_ms = self.expires_at_ms.saturating_sub(now_ms);
        u32::try_from(left_ms.div_ceil(1000)).unwrap_or(u32::MAX)
    }

    pub fn is_expired(&self, now_ms: u64) -> bool {
        now_ms >= self.expires_at_ms
    }

    /// The q value used for ranking; a contact without `q` ranks as 1.0 so that a UA which says
    /// nothing is not outranked by one that asked for less.
    pub fn q_rank(&self) -> u16 {
        self.q_milli.unwrap_or(1000)
    }

    pub fn target(&self) -> BindingTarget {
        let (literal, uri_tcp) = super::contact::uri_socket_addr(&self.contact_uri);
        // A third-party REGISTER came from the core, not the UE: its connection and source
        // address are the core's, so only the Contact says where and how to reach the UE
        // (SPEC D9). A direct REGISTER's own connection is reused (RFC 5626 §5.3).
        let direct_tcp = self.tcp && !self.third_party;
        BindingTarget {
            contact_uri: self.contact_uri.clone(),
            addr: Some(literal.unwrap_or(self.source_addr)),
            tcp: direct_tcp || uri_tcp,
            conn: if direct_tcp { self.conn } else { None },
        }
    }
}

/// A binding as the 200 lists it: `Contact: <uri>;expires=N` (RFC 3261 §10.3 step 8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentBinding {
    pub contact_uri: String,
    pub expires_s: u32,
    pub q_milli: Option<u16>,
    pub oma_im: bool,
}

/// What changed for an AoR, for the slow path to act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistrarEvent {
    /// The AoR went from no binding to one: subscribe to its GLMS documents (SPEC D5).
    FirstBinding { aor: Aor },
    /// The AoR's last binding went away: start the grace period (SPEC D5).
    LastBindingGone { aor: Aor },
    /// The relay target changed (SPEC D10); `None` when the AoR has no binding left.
    TargetChanged {
        aor: Aor,
        target: Option<BindingTarget>,
    },
}

/// The result of a successful REGISTER.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterOk {
    /// Every current binding of the AoR with its remaining lifetime, for the 200.
    pub bindings: Vec<CurrentBinding>,
    pub events: Vec<RegistrarEvent>,
}
