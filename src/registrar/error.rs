//! Why a REGISTER failed, and what goes on the wire for it.

#![forbid(unsafe_code)]

use std::fmt;

/// A header the error response must carry besides the usual ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtraHeader {
    /// `Min-Expires: N` on a 423 (RFC 3261 §20.23).
    MinExpires(u32),
    /// `Retry-After: N` on a 503 (RFC 3261 §21.5.4).
    RetryAfter(u32),
}

impl ExtraHeader {
    pub fn name(&self) -> &'static str {
        match self {
            Self::MinExpires(_) => "Min-Expires",
            Self::RetryAfter(_) => "Retry-After",
        }
    }

    pub fn value_s(&self) -> u32 {
        match self {
            Self::MinExpires(v) | Self::RetryAfter(v) => *v,
        }
    }
}

impl fmt::Display for ExtraHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name(), self.value_s())
    }
}

/// A REGISTER that is refused; nothing was changed (RFC 3261 §10.3: bindings are committed only
/// if every update succeeds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The request itself is malformed.
    #[error("address-of-record empty or too long")]
    BadAor,
    #[error("Call-ID empty or too long")]
    BadCallId,
    #[error("contact URI empty or too long, or its parameters too long")]
    BadContact,
    #[error("q value above 1.0")]
    BadQ,
    /// RFC 3261 §10.3 step 6: `*` is only valid with `Expires: 0`.
    #[error("wildcard Contact with a non-zero expiry")]
    StarWithNonZeroExpires,
    /// RFC 3261 §10.3 step 6: `*` must be the only Contact.
    #[error("wildcard Contact beside other contacts")]
    StarNotAlone,
    /// RFC 3261 §10.3 step 7 / §21.4.17: the requested lifetime is below our minimum.
    #[error("interval too brief, minimum {min_expires_s} s")]
    IntervalTooBrief { min_expires_s: u32 },
    /// RFC 3261 §10.3 step 6/7: same Call-ID, CSeq not higher than stored: "the update MUST be
    /// aborted and the request fails". The step's closing paragraph says a failed binding update
    /// fails the whole request with 500 (Server Error); we follow that and name the cause in the
    /// reason phrase.
    #[error("out of order CSeq")]
    OutOfOrderCseq,
    /// The AoR would hold more than `max_contacts_per_aor` bindings. 503, not 403: a 403 tells
    /// the UA never to retry (RFC 3261 §21.4.4), while this condition clears by itself when an
    /// older binding expires, which `Retry-After` says; SPEC D12 answers every full table with
    /// 503 + Retry-After, and Kamailio/OpenSIPS answer the same case with 503.
    #[error("too many contacts for the address-of-record")]
    TooManyContacts { retry_after_s: u32 },
    /// The registrar holds its configured maximum of AoRs (SPEC D12).
    #[error("registrar table full")]
    TableFull { retry_after_s: u32 },
}

impl RegisterError {
    pub fn status(&self) -> u16 {
        match self {
            Self::BadAor
            | Self::BadCallId
            | Self::BadContact
            | Self::BadQ
            | Self::StarWithNonZeroExpires
            | Self::StarNotAlone => 400,
            Self::IntervalTooBrief { .. } => 423,
            Self::OutOfOrderCseq => 500,
            Self::TooManyContacts { .. } | Self::TableFull { .. } => 503,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            Self::BadAor => "Invalid address-of-record",
            Self::BadCallId => "Invalid Call-ID",
            Self::BadContact => "Invalid Contact",
            Self::BadQ => "Invalid q value in Contact",
            Self::StarWithNonZeroExpires => "Wildcard Contact requires Expires: 0",
            Self::StarNotAlone => "Wildcard Contact must be alone",
            Self::IntervalTooBrief { .. } => "Interval Too Brief",
            Self::OutOfOrderCseq => "Out of order CSeq",
            Self::TooManyContacts { .. } => "Too many registered contacts",
            Self::TableFull { .. } => "Service Unavailable",
        }
    }

    pub fn extra_header(&self) -> Option<ExtraHeader> {
        match self {
            Self::IntervalTooBrief { min_expires_s } => {
                Some(ExtraHeader::MinExpires(*min_expires_s))
            }
            Self::TooManyContacts { retry_after_s } | Self::TableFull { retry_after_s } => {
                Some(ExtraHeader::RetryAfter(*retry_after_s))
            }
            _ => None,
        }
    }
}
