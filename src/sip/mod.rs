//! SIP message layer: a sans-IO, zero-copy scanner, value parsers, request validation and
//! response/relay writers (RFC 3261, RFC 3581, RFC 5626 framing, RFC 4475 robustness).
//!
//! Nothing here touches a socket or a clock: bytes and addresses go in, positions, verdicts and
//! bytes (into a caller-owned, reused buffer) come out. The scanner keeps `u32` offsets in a
//! preallocated [`Parsed`] that a worker reuses for every message, and a [`View`] pairs those
//! offsets with the receive buffer to hand out `&[u8]` slices. No accessor can panic: every span
//! is checked with `get` before it is used.
//!
//! ```text
//!  bytes ──scan_datagram / scan_stream──▶ Parsed ──view(buf)──▶ View
//!                 │                                              │
//!                 ├─ Incomplete (stream: wait for bytes)         ├─ validate::check_request ─▶ Ok | Reject{code}
//!                 ├─ KeepAlive / Skip (stream CRLFs)             ├─ write::write_response (stateless reply)
//!                 └─ ScanError{status, can_reply}                ├─ write::write_relay_request (§16.11)
//!                                                                └─ write::write_relay_response (pop our Via)
//! ```
//!
//! Line endings: RFC 3261 §7 requires CRLF; the scanner also accepts a bare LF (liberal, as
//! several real user agents and some torture variants do). A line that starts with SP or HT
//! continues the previous header value (§7.3.1); the fold stays inside the value span and every
//! value parser treats CR, LF, SP and HT alike as whitespace.
#![deny(unsafe_code)] // allowed only in bytemask.rs (SSE2 block masks for the scanner)

pub(crate) mod bytemask;
pub mod error;
pub mod hdr;
pub mod lex;
pub mod nameaddr;
pub mod params;
#[doc(hidden)]
pub mod reference;
pub mod scan;
pub mod uri;
pub mod validate;
pub mod values;
pub mod via;
pub mod write;

pub use error::{ScanError, SyntaxError};
pub use hdr::HeaderName;
pub use scan::{Framing, MAX_HEADERS, Parsed, Span, View};
pub use validate::{ExtraHeader, Limits, Reject};

/// The transport a message arrived on (or is sent on).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// The Via transport token (RFC 3261 §20.42).
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }
}

/// A request method. Methods outside the table are [`Method::Other`] (RFC 3261 §7.1: an
/// extension method is any token; the raw bytes stay available through [`View::method_bytes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    Options,
    Message,
    Publish,
    Subscribe,
    Notify,
    Info,
    Prack,
    Update,
    Refer,
    Other,
}

impl Method {
    /// Every known method, in the order used for `Allow`.
    pub const KNOWN: [Method; 14] = [
        Method::Invite,
        Method::Ack,
        Method::Bye,
        Method::Cancel,
        Method::Register,
        Method::Options,
        Method::Message,
        Method::Publish,
        Method::Subscribe,
        Method::Notify,
        Method::Info,
        Method::Prack,
        Method::Update,
        Method::Refer,
    ];

    /// Method names are case-sensitive (RFC 3261 §7.1).
    pub fn from_bytes(b: &[u8]) -> Method {
        match b {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"REGISTER" => Method::Register,
            b"OPTIONS" => Method::Options,
            b"MESSAGE" => Method::Message,
            b"PUBLISH" => Method::Publish,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"INFO" => Method::Info,
            b"PRACK" => Method::Prack,
            b"UPDATE" => Method::Update,
            b"REFER" => Method::Refer,
            _ => Method::Other,
        }
    }

    /// The method name; `Other` has none of its own (use the raw bytes).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Info => "INFO",
            Method::Prack => "PRACK",
            Method::Update => "UPDATE",
            Method::Refer => "REFER",
            Method::Other => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_table_round_trips() {
        for m in Method::KNOWN {
            assert_eq!(Method::from_bytes(m.as_str().as_bytes()), m);
        }
        assert_eq!(Method::from_bytes(b"invite"), Method::Other);
        assert_eq!(Method::from_bytes(b"NEWMETHOD"), Method::Other);
    }
}
