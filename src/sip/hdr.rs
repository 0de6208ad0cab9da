//! The header-name table (Kamailio `parse_hname2.c` style): long and compact forms, matched
//! case-insensitively (RFC 3261 §7.3.1, §7.3.3) with no allocation: the length and first byte
//! pick at most two candidates, then one `eq_ignore_ascii_case` decides.
#![forbid(unsafe_code)]

/// Headers the server knows by name; everything else is [`HeaderName::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum HeaderName {
    Via,
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
    ContentLength,
    ContentType,
    ContentEncoding,
    Contact,
    Expires,
    Route,
    RecordRoute,
    Require,
    ProxyRequire,
    Supported,
    Unsupported,
    Allow,
    Accept,
    AcceptEncoding,
    AcceptLanguage,
    Event,
    AllowEvents,
    SubscriptionState,
    Authorization,
    ProxyAuthorization,
    WwwAuthenticate,
    ProxyAuthenticate,
    PAssertedIdentity,
    PPreferredIdentity,
    SipEtag,
    SipIfMatch,
    MinExpires,
    RetryAfter,
    Date,
    Subject,
    ReferTo,
    Server,
    UserAgent,
    AcceptContact,
    Other,
}

/// Case-insensitive compare against a lower-case name made of letters, digits and '-'.
/// OR-ing 0x20 lower-cases a letter and leaves digits and '-' alone; the only other bytes that
/// OR into a digit or '-' are controls (0x10-0x19, CR), which are refused, as is non-ASCII.
/// Branch-free so it vectorises.
#[inline]
fn eq_lower(name: &[u8], lower: &[u8]) -> bool {
    name.len() == lower.len()
        && name.iter().zip(lower).fold(0u8, |acc, (&a, &b)| {
            acc | ((a | 0x20) ^ b) | (a & 0x80) | u8::from(a < 0x21)
        }) == 0
}

/// Eight bytes at `at` as a little-endian word; `None` past the end.
#[inline]
fn word(s: &[u8], at: usize) -> Option<u64> {
    s.get(at..at + 8)
        .and_then(|w| <[u8; 8]>::try_from(w).ok())
        .map(u64::from_le_bytes)
}

/// [`eq_lower`] eight bytes per compare, exact for any bytes: where `lower` has a letter
/// (bit 0x40 set, unlike digits and '-') the name may differ from it in the case bit 0x20 only,
/// anywhere else not at all. So a match is the name itself with letters in either case, which
/// is always a `token`.
#[inline]
fn eq_lower_words(name: &[u8], lower: &[u8]) -> bool {
    const LETTER: u64 = 0x4040_4040_4040_4040;
    let n = name.len();
    if n != lower.len() {
        return false;
    }
    if n < 8 {
        return eq_lower(name, lower);
    }
    let same = |at: usize| match (word(name, at), word(lower, at)) {
        (Some(a), Some(b)) => (a ^ b) & !((b & LETTER) >> 1) == 0,
        _ => false,
    };
    // Whole words, then one (overlapping) word that ends with the name.
    let mut at = 0;
    while at + 8 < n {
        if !same(at) {
            return false;
        }
        at += 8;
    }
    same(n - 8)
}

impl HeaderName {
    /// Number of variants (including `Other`): the size of per-name tables.
    pub const COUNT: usize = HeaderName::Other as usize + 1;

    /// Table index of this name.
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }

    /// The canonical long form (`Other` has none and returns "").
    pub fn canonical(&self) -> &'static str {
        use HeaderName::*;
        match self {
            Via => "Via",
            From => "From",
            To => "To",
            CallId => "Call-ID",
            CSeq => "CSeq",
            MaxForwards => "Max-Forwards",
            ContentLength => "Content-Length",
            ContentType => "Content-Type",
            ContentEncoding => "Content-Encoding",
            Contact => "Contact",
            Expires => "Expires",
            Route => "Route",
            RecordRoute => "Record-Route",
            Require => "Require",
            ProxyRequire => "Proxy-Require",
            Supported => "Supported",
            Unsupported => "Unsupported",
            Allow => "Allow",
            Accept => "Accept",
            AcceptEncoding => "Accept-Encoding",
            AcceptLanguage => "Accept-Language",
            Event => "Event",
            AllowEvents => "Allow-Events",
            SubscriptionState => "Subscription-State",
            Authorization => "Authorization",
            ProxyAuthorization => "Proxy-Authorization",
            WwwAuthenticate => "WWW-Authenticate",
            ProxyAuthenticate => "Proxy-Authenticate",
            PAssertedIdentity => "P-Asserted-Identity",
            PPreferredIdentity => "P-Preferred-Identity",
            SipEtag => "SIP-ETag",
            SipIfMatch => "SIP-If-Match",
            MinExpires => "Min-Expires",
            RetryAfter => "Retry-After",
            Date => "Date",
            Subject => "Subject",
            ReferTo => "Refer-To",
            Server => "Server",
            UserAgent => "User-Agent",
            AcceptContact => "Accept-Contact",
            Other => "",
        }
    }

    /// The canonical name in lower case, for the lookup's compare.
    fn lower(self) -> &'static [u8] {
        use HeaderName::*;
        match self {
            Via => b"via",
            From => b"from",
            To => b"to",
            CallId => b"call-id",
            CSeq => b"cseq",
            MaxForwards => b"max-forwards",
            ContentLength => b"content-length",
            ContentType => b"content-type",
            ContentEncoding => b"content-encoding",
            Contact => b"contact",
            Expires => b"expires",
            Route => b"route",
            RecordRoute => b"record-route",
            Require => b"require",
            ProxyRequire => b"proxy-require",
            Supported => b"supported",
            Unsupported => b"unsupported",
            Allow => b"allow",
            Accept => b"accept",
            AcceptEncoding => b"accept-encoding",
            AcceptLanguage => b"accept-language",
            Event => b"event",
            AllowEvents => b"allow-events",
            SubscriptionState => b"subscription-state",
            Authorization => b"authorization",
            ProxyAuthorization => b"proxy-authorization",
            WwwAuthenticate => b"www-authenticate",
            ProxyAuthenticate => b"proxy-authenticate",
            PAssertedIdentity => b"p-asserted-identity",
            PPreferredIdentity => b"p-preferred-identity",
            SipEtag => b"sip-etag",
            SipIfMatch => b"sip-if-match",
            MinExpires => b"min-expires",
            RetryAfter => b"retry-after",
            Date => b"date",
            Subject => b"subject",
            ReferTo => b"refer-to",
            Server => b"server",
            UserAgent => b"user-agent",
            AcceptContact => b"accept-contact",
            Other => b"",
        }
    }

    /// The compact form, when the name has one (RFC 3261 §7.3.3, RFC 3265, RFC 3515, RFC 3841).
    pub fn compact(&self) -> Option<u8> {
        use HeaderName::*;
        Some(match self {
            Via => b'v',
            From => b'f',
            To => b't',
            CallId => b'i',
            ContentLength => b'l',
            ContentType => b'c',
            ContentEncoding => b'e',
            Contact => b'm',
            Supported => b'k',
            Event => b'o',
            AllowEvents => b'u',
            Subject => b's',
            ReferTo => b'r',
            AcceptContact => b'a',
            _ => return None,
        })
    }

    /// Headers that may appear at most once (RFC 3261 §7.3.1: only comma-list headers may
    /// repeat); a duplicate is a 400 (RFC 4475 multi01, mcl01).
    pub fn is_single(&self) -> bool {
        use HeaderName::*;
        matches!(
            self,
            From | To | CallId | CSeq | MaxForwards | ContentLength | ContentType
        )
    }

    /// Case-insensitive lookup of a raw header name (long or compact form). Any bytes may be
    /// passed: a name that is not exactly a known one (letters in either case) is `Other`.
    #[inline]
    pub fn lookup(name: &[u8]) -> HeaderName {
        Self::lookup_with(name, eq_lower_words)
    }

    #[inline(always)]
    fn lookup_with(name: &[u8], eq: fn(&[u8], &[u8]) -> bool) -> HeaderName {
        use HeaderName::*;
        let Some(&first) = name.first() else {
            return Other;
        };
        let first = first | 0x20;
        if name.len() == 1 {
            return match first {
                b'v' => Via,
                b'f' => From,
                b't' => To,
                b'i' => CallId,
                b'l' => ContentLength,
                b'c' => ContentType,
                b'e' => ContentEncoding,
                b'm' => Contact,
                b'k' => Supported,
                b'o' => Event,
                b'u' => AllowEvents,
                b's' => Subject,
                b'r' => ReferTo,
                b'a' => AcceptContact,
                _ => Other,
            };
        }
        let (a, b) = match (name.len(), first) {
            (2, b't') => (To, Other),
            (3, b'v') => (Via, Other),
            (4, b'f') => (From, Other),
            (4, b'c') => (CSeq, Other),
            (4, b'd') => (Date, Other),
            (5, b'r') => (Route, Other),
            (5, b'a') => (Allow, Other),
            (5, b'e') => (Event, Other),
            (6, b'a') => (Accept, Other),
            (6, b's') => (Server, Other),
            (7, b'c') => (CallId, Contact),
            (7, b'e') => (Expires, Other),
            (7, b'r') => (Require, Other),
            (7, b's') => (Subject, Other),
            (8, b's') => (SipEtag, Other),
            (8, b'r') => (ReferTo, Other),
            (9, b's') => (Supported, Other),
            (10, b'u') => (UserAgent, Other),
            (11, b'u') => (Unsupported, Other),
            (11, b'm') => (MinExpires, Other),
            (11, b'r') => (RetryAfter, Other),
            (12, b'm') => (MaxForwards, Other),
            (12, b'c') => (ContentType, Other),
            (12, b'r') => (RecordRoute, Other),
            (12, b'a') => (AllowEvents, Other),
            (12, b's') => (SipIfMatch, Other),
            (13, b'p') => (ProxyRequire, Other),
            (13, b'a') => (Authorization, Other),
            (14, b'c') => (ContentLength, Other),
            (14, b'a') => (AcceptContact, Other),
            (15, b'a') => (AcceptEncoding, AcceptLanguage),
            (16, b'c') => (ContentEncoding, Other),
            (16, b'w') => (WwwAuthenticate, Other),
            (18, b's') => (SubscriptionState, Other),
            (18, b'p') => (ProxyAuthenticate, Other),
            (19, b'p') => (PAssertedIdentity, ProxyAuthorization),
            (20, b'p') => (PPreferredIdentity, Other),
            _ => return Other,
        };
        if eq(name, a.lower()) {
            a
        } else if b != Other && eq(name, b.lower()) {
            b
        } else {
            Other
        }
    }

    /// Every named variant (not `Other`), for tests and tables.
    pub const ALL: [HeaderName; HeaderName::COUNT - 1] = {
        use HeaderName::*;
        [
            Via,
            From,
            To,
            CallId,
            CSeq,
            MaxForwards,
            ContentLength,
            ContentType,
            ContentEncoding,
            Contact,
            Expires,
            Route,
            RecordRoute,
            Require,
            ProxyRequire,
            Supported,
            Unsupported,
            Allow,
            Accept,
            AcceptEncoding,
            AcceptLanguage,
            Event,
            AllowEvents,
            SubscriptionState,
            Authorization,
            ProxyAuthorization,
            WwwAuthenticate,
            ProxyAuthenticate,
            PAssertedIdentity,
            PPreferredIdentity,
            SipEtag,
            SipIfMatch,
            MinExpires,
            RetryAfter,
            Date,
            Subject,
            ReferTo,
            Server,
            UserAgent,
            AcceptContact,
        ]
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_long_name_round_trips_in_any_case() {
        for h in HeaderName::ALL {
            let c = h.canonical();
            assert_eq!(HeaderName::lookup(c.as_bytes()), h, "{c}");
            assert_eq!(HeaderName::lookup(c.to_ascii_lowercase().as_bytes()), h);
            assert_eq!(HeaderName::lookup(c.to_ascii_uppercase().as_bytes()), h);
            if let Some(k) = h.compact() {
                assert_eq!(HeaderName::lookup(&[k]), h);
                assert_eq!(HeaderName::lookup(&[k.to_ascii_uppercase()]), h);
            }
        }
    }

    #[test]
    fn lookup_is_exact_for_any_bytes() {
        let mut names: Vec<Vec<u8>> = Vec::new();
        for h in HeaderName::ALL {
            let c = h.canonical();
            names.push(c.as_bytes().to_vec());
            names.push(c.to_ascii_uppercase().into_bytes());
            // One byte off in every position, to both sides; 0xe0 turns '-' into CR, which
            // OR-ing the case bit would turn back.
            for i in 0..c.len() {
                for d in [1u8, 0x20, 0xe0, 0xff] {
                    let mut v = c.as_bytes().to_vec();
                    v[i] = v[i].wrapping_add(d);
                    names.push(v);
                }
            }
        }
        for n in names {
            let want = HeaderName::ALL
                .into_iter()
                .find(|h| h.canonical().as_bytes().eq_ignore_ascii_case(&n))
                .or_else(|| {
                    let [b] = n[..] else { return None };
                    HeaderName::ALL
                        .into_iter()
                        .find(|h| h.compact() == Some(b.to_ascii_lowercase()))
                })
                .unwrap_or(HeaderName::Other);
            assert_eq!(
                HeaderName::lookup(&n),
                want,
                "{}",
                String::from_utf8_lossy(&n)
            );
        }
    }

    #[test]
    fn unknown_names_are_other() {
        for n in [
            &b""[..],
            b"x",
            b"V\xc3\xada",
            b"C%6Fntact",
            b"Contacts",
            b"P-Asserted-Identit",
        ] {
            assert_eq!(HeaderName::lookup(n), HeaderName::Other);
        }
    }
}
