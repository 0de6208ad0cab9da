//! Why a PUBLISH failed, and what goes on the wire for it.

#![forbid(unsafe_code)]

use std::fmt;

/// A header the error response must carry besides the usual ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtraHeader {
    /// `Min-Expires` on a 423 (RFC 3903 §6 step 4).
    MinExpires(u32),
    /// `Retry-After` on a 503 (RFC 3261 §21.5.4).
    RetryAfter(u32),
    /// `Allow-Events` on a 489 (RFC 6665 §8.2.2, RFC 3903 §6 step 2).
    AllowEvents(&'static str),
    /// `Accept` on a 415 (RFC 3261 §21.4.13).
    Accept(&'static str),
}

impl ExtraHeader {
    pub fn name(&self) -> &'static str {
        match self {
            Self::MinExpires(_) => "Min-Expires",
            Self::RetryAfter(_) => "Retry-After",
            Self::AllowEvents(_) => "Allow-Events",
            Self::Accept(_) => "Accept",
        }
    }
}

impl fmt::Display for ExtraHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MinExpires(v) | Self::RetryAfter(v) => write!(f, "{}: {v}", self.name()),
            Self::AllowEvents(v) | Self::Accept(v) => write!(f, "{}: {v}", self.name()),
        }
    }
}

/// The `Accept` value of a 415: both of [`super::CONTENT_TYPES`].
pub(super) const ACCEPT: &str =
    "application/service-settings+xml, application/vnd.oma.im.service-settings+xml";

/// A known setting, to name it in an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    Isb,
    Vis,
    OfflineDelivery,
    History,
}

/// What is wrong with a service-settings document; each names the fault in the 400's reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum XmlFault {
    #[error("body is not UTF-8")]
    NotUtf8,
    #[error("not well-formed XML")]
    NotWellFormed,
    #[error("no root element")]
    NoRoot,
    #[error("root element is not service-settings")]
    WrongRoot,
    #[error("root element in a foreign namespace")]
    WrongNamespace,
    #[error("elements nested too deep")]
    TooDeep,
    #[error("too many XML events")]
    TooLong,
    #[error("DTD not allowed")]
    DtdNotAllowed,
    #[error("invalid boolean value for {0:?}")]
    BadBoolean(Setting),
}

impl XmlFault {
    /// The 400 reason phrase.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotUtf8 => "Bad service-settings: body is not UTF-8",
            Self::NotWellFormed => "Bad service-settings: not well-formed XML",
            Self::NoRoot => "Bad service-settings: no root element",
            Self::WrongRoot => "Bad service-settings: root element is not service-settings",
            Self::WrongNamespace => "Bad service-settings: root element in a foreign namespace",
            Self::TooDeep => "Bad service-settings: elements nested too deep",
            Self::TooLong => "Bad service-settings: too many XML items",
            Self::DtdNotAllowed => "Bad service-settings: DTD not allowed",
            Self::BadBoolean(Setting::Isb) => {
                "Bad service-settings: invalid value for incoming-session-barring"
            }
            Self::BadBoolean(Setting::Vis) => "Bad service-settings: invalid value for vis-status",
            Self::BadBoolean(Setting::OfflineDelivery) => {
                "Bad service-settings: invalid value for offline-delivery"
            }
            Self::BadBoolean(Setting::History) => {
                "Bad service-settings: invalid value for hist-activation"
            }
        }
    }
}

/// A PUBLISH that is refused; nothing was changed (RFC 3903 §6: processed atomically).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("identity empty or too long")]
    BadIdentity,
    /// RFC 3903 §6 step 2: missing or unsupported event package.
    #[error("event package not supported")]
    BadEvent,
    /// RFC 3903 §6 step 3: SIP-If-Match must hold exactly one entity-tag.
    #[error("SIP-If-Match does not hold exactly one entity-tag")]
    BadIfMatch,
    /// RFC 3903 §6 step 3: no current publication of this AoR has that entity-tag.
    #[error("unknown or expired entity-tag")]
    UnknownEtag,
    /// RFC 3903 §6 step 4: requested interval above 0 and below our minimum.
    #[error("interval too brief, minimum {min_expires_s} s")]
    IntervalTooBrief { min_expires_s: u32 },
    /// RFC 3903 §6 step 5: an initial publication needs a body.
    #[error("initial PUBLISH without a body")]
    MissingBody,
    #[error("body too large")]
    BodyTooLarge,
    /// RFC 3903 §6 step 5: the body type does not belong to the package.
    #[error("unsupported body type")]
    UnsupportedMediaType,
    /// RFC 3903 §6 step 5: the ESC cannot process the event state.
    #[error("bad service-settings document: {0}")]
    BadXml(XmlFault),
    /// The AoR holds `max_publications_per_aor` publications (SPEC D12: 503 + Retry-After);
    /// a publisher that lost its entity-tag frees its slot when that publication expires.
    #[error("too many publications for the identity")]
    TooManyPublications { retry_after_s: u32 },
    /// The compositor holds its configured maximum of AoRs (SPEC D12).
    #[error("settings table full")]
    TableFull { retry_after_s: u32 },
}

impl PublishError {
    pub fn status(&self) -> u16 {
        match self {
            Self::BadIdentity | Self::BadIfMatch | Self::MissingBody | Self::BadXml(_) => 400,
            Self::UnknownEtag => 412,
            Self::BodyTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::IntervalTooBrief { .. } => 423,
            Self::BadEvent => 489,
            Self::TooManyPublications { .. } | Self::TableFull { .. } => 503,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            Self::BadIdentity => "Invalid identity",
            Self::BadEvent => "Bad Event",
            Self::BadIfMatch => "Invalid SIP-If-Match",
            Self::UnknownEtag => "Conditional Request Failed",
            Self::IntervalTooBrief { .. } => "Interval Too Brief",
            Self::MissingBody => "Initial PUBLISH requires a body",
            Self::BodyTooLarge => "Request Entity Too Large",
            Self::UnsupportedMediaType => "Unsupported Media Type",
            Self::BadXml(fault) => fault.reason(),
            Self::TooManyPublications { .. } => "Too many publications",
            Self::TableFull { .. } => "Service Unavailable",
        }
    }

    pub fn extra_header(&self) -> Option<ExtraHeader> {
        match self {
            Self::BadEvent => Some(ExtraHeader::AllowEvents(super::EVENT_PACKAGE)),
            Self::UnsupportedMediaType => Some(ExtraHeader::Accept(ACCEPT)),
            Self::IntervalTooBrief { min_expires_s } => {
                Some(ExtraHeader::MinExpires(*min_expires_s))
            }
            Self::TooManyPublications { retry_after_s } | Self::TableFull { retry_after_s } => {
                Some(ExtraHeader::RetryAfter(*retry_after_s))
            }
            _ => None,
        }
    }
}
