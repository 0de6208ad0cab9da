//! Request validation for a UAS (RFC 3261 §8.2, §16.3), in a fixed order so every malformed
//! request gets one precise answer: size (513, D12) -> syntax (400 naming the header) ->
//! version (505) -> method (501) -> missing mandatory headers (400) -> duplicated single-value
//! headers (400) -> CSeq method (400) -> URI schemes (416) -> Require (420) -> INVITE body
//! type (415) and Accept (406). Allocation-free: a [`Reject`] carries static text and an
//! [`ExtraHeader`] that tells the writer which header to add.
#![forbid(unsafe_code)]

use super::hdr::HeaderName;
use super::lex::{CommaIter, is_token, trim};
use super::nameaddr;
use super::scan::{Span, View};
use super::uri::{self, Scheme, Uri};
use super::values;
use super::via;
use super::{Method, Transport};

/// Message size limits (D12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_udp_len: usize,
    pub max_tcp_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_udp_len: 8192,
            max_tcp_len: 65536,
        }
    }
}

/// A header the rejecting response must carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtraHeader {
    None,
    /// `Allow: <known methods>` (405, 501; §20.5).
    Allow,
    /// `Accept: <types>` (415; §21.4.13).
    Accept(&'static str),
    /// `Unsupported:` listing the Require tags (420; §8.2.2.3). The span is the value of the
    /// first Require line; the writer lists every Require line.
    Unsupported(Span),
}

/// Why a request is refused, ready for [`super::write::write_response`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reject {
    pub code: u16,
    pub reason: &'static str,
    pub extra: ExtraHeader,
}

impl Reject {
    pub const fn new(code: u16, reason: &'static str) -> Reject {
        Reject {
            code,
            reason,
            extra: ExtraHeader::None,
        }
    }
}

/// The methods we understand, for `Allow` (§20.5).
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, REGISTER, OPTIONS, MESSAGE, PUBLISH, SUBSCRIBE, NOTIFY, INFO, PRACK, UPDATE, REFER";

fn malformed(h: HeaderName) -> &'static str {
    use HeaderName::*;
    match h {
        Via => "Bad Request - Malformed Via",
        From => "Bad Request - Malformed From",
        To => "Bad Request - Malformed To",
        CallId => "Bad Request - Malformed Call-ID",
        CSeq => "Bad Request - Malformed CSeq",
        MaxForwards => "Bad Request - Malformed Max-Forwards",
        Contact => "Bad Request - Malformed Contact",
        Expires => "Bad Request - Malformed Expires",
        ContentType => "Bad Request - Malformed Content-Type",
        Require => "Bad Request - Malformed Require",
        _ => "Bad Request - Malformed Header",
    }
}

fn missing(h: HeaderName) -> &'static str {
    use HeaderName::*;
    match h {
        Via => "Bad Request - Missing Via",
        From => "Bad Request - Missing From",
        To => "Bad Request - Missing To",
        CallId => "Bad Request - Missing Call-ID",
        CSeq => "Bad Request - Missing CSeq",
        _ => "Bad Request - Missing Max-Forwards",
    }
}

fn duplicate(h: HeaderName) -> &'static str {
    use HeaderName::*;
    match h {
        From => "Bad Request - Duplicate From",
        To => "Bad Request - Duplicate To",
        CallId => "Bad Request - Duplicate Call-ID",
        CSeq => "Bad Request - Duplicate CSeq",
        MaxForwards => "Bad Request - Duplicate Max-Forwards",
        ContentLength => "Bad Request - Duplicate Content-Length",
        _ => "Bad Request - Duplicate Content-Type",
    }
}

fn bad(h: HeaderName) -> Reject {
    Reject::new(400, malformed(h))
}

/// `type/subtype *(;param)`, returning the media range without parameters.
fn media_type(v: &[u8]) -> Option<&[u8]> {
    let end = v.iter().position(|&b| b == b';').unwrap_or(v.len());
    let mt = trim(&v[..end]);
    let slash = mt.iter().position(|&b| b == b'/')?;
    let (t, s) = (trim(&mt[..slash]), trim(&mt[slash + 1..]));
    (is_token(t) && is_token(s)).then_some(mt)
}

fn media_eq(a: &[u8], b: &str) -> bool {
    let (a, b) = (a.iter().filter(|c| !c.is_ascii_whitespace()), b.bytes());
    a.map(u8::to_ascii_lowercase).eq(b)
}

/// What the syntax pass learned that the later checks need again (each parsed once).
struct Syntax<'a> {
    ruri: Uri<'a>,
    cseq: Option<values::CSeq<'a>>,
    from_scheme: Option<Scheme>,
    to_scheme: Option<Scheme>,
}

fn check_syntax<'a>(v: &View<'a>, parsed_ruri: Option<Uri<'a>>) -> Result<Syntax<'a>, Reject> {
    use HeaderName::*;
    // Request-URI (§25.1: no LWS inside, RFC 4475 lwsruri; no brackets, ltgtruri).
    let ruri = match parsed_ruri {
        Some(u) => u,
        None => uri::parse(v.request_uri())
            .map_err(|_| Reject::new(400, "Bad Request - Malformed Request-URI"))?,
    };
    // §19.1.1 table: the headers component is not allowed in a Request-URI (RFC 4475 escruri).
    if ruri.headers.is_some() {
        return Err(Reject::new(400, "Bad Request - Headers in Request-URI"));
    }
    // Every Via value must parse (RFC 4475 badinv01 breaks a lower one); the top one is
    // parsed through the memo the writers read.
    if let Some((top, parsed)) = via::top_facts(v) {
        if parsed.is_err() {
            return Err(bad(Via));
        }
        // More values follow when the top one ends before its line does (a comma; the line
        // value is trimmed) or when there are more Via lines.
        let line_end = v.slots().get(top.slot).map_or(0, |s| s.value.end);
        if top.span.end < line_end || v.header_count(Via) > 1 {
            for vv in via::values_after(v, &top) {
                via::parse(v.slice(vv.span)).map_err(|_| bad(Via))?;
            }
        }
    }
    let mut schemes = [None, None];
    for (h, scheme) in [From, To].into_iter().zip(&mut schemes) {
        if let Some(x) = nameaddr::header_facts(v, h) {
            *scheme = Some(x.map_err(|_| bad(h))?.scheme);
        }
    }
    if let Some(x) = v.header(CallId) {
        values::call_id(x).map_err(|_| bad(CallId))?;
    }
    let cseq = match v.header(CSeq) {
        Some(x) => Some(values::cseq(x).map_err(|_| bad(CSeq))?),
        None => None,
    };
    if let Some(x) = v.header(MaxForwards) {
        values::max_forwards(x).map_err(|_| bad(MaxForwards))?;
    }
    if let Some(x) = v.header(Expires) {
        values::expires(x).map_err(|_| bad(Expires))?;
    }
    if let Some(x) = v.header(ContentType) {
        media_type(x).ok_or(bad(ContentType))?;
    }
    if v.header_count(Contact) > 0 {
        for x in v.values(Contact) {
            // `Contact: *` is the REGISTER wildcard (§10.2.2).
            if trim(x) == b"*" {
                continue;
            }
            for e in CommaIter::new(x) {
                if nameaddr::parse(e).is_err() && !bracketed_contact(e) {
                    return Err(bad(Contact));
                }
            }
        }
    }
    if v.header_count(Require) > 0 {
        for x in v.values(Require) {
            for e in CommaIter::new(x) {
                if !e.is_empty() && !is_token(e) {
                    return Err(bad(Require));
                }
            }
        }
    }
    Ok(Syntax {
        ruri,
        cseq,
        from_scheme: schemes[0],
        to_scheme: schemes[1],
    })
}

/// Validates a scanned request (see the module doc for the order).
/// A Contact whose URI is bracketed and valid, with header parameters we cannot tokenise
/// strictly: the OMA IM seed (004, step 1) writes the feature tag as `; + g.oma.sip-im`. The
/// parameters are not used for routing (the registrar reads feature tags leniently), so the
/// request is served rather than refused; an unbracketed URI (RFC 4475 regbadct) still is not.
fn bracketed_contact(e: &[u8]) -> bool {
    let e = trim(e);
    let Some(open) = e.iter().position(|&b| b == b'<') else {
        return false;
    };
    let Some(close) = e.iter().rposition(|&b| b == b'>') else {
        return false;
    };
    if close <= open {
        return false;
    }
    let after = trim(&e[close + 1..]);
    (after.is_empty() || after[0] == b';') && crate::sip::uri::parse(&e[open + 1..close]).is_ok()
}

pub fn check_request(v: &View<'_>, limits: &Limits) -> Result<(), Reject> {
    check_request_uri(v, limits).map(|_| ())
}

/// [`check_request`], returning the Request-URI it parsed on the way, for a caller that needs
/// it next (the MESSAGE recipient) and should not parse it again.
pub fn check_request_uri<'a>(v: &View<'a>, limits: &Limits) -> Result<Uri<'a>, Reject> {
    check_request_parsed(v, limits, None)
}

/// [`check_request_uri`] for a caller that has already parsed the Request-URI:
/// `parsed_ruri`, when given, must be `uri::parse(v.request_uri())`'s `Ok` value (the batch's
/// prefetch parses MESSAGE Request-URIs before validation).
pub fn check_request_parsed<'a>(
    v: &View<'a>,
    limits: &Limits,
    parsed_ruri: Option<Uri<'a>>,
) -> Result<Uri<'a>, Reject> {
    use HeaderName::*;
    if !v.is_request() {
        return Err(Reject::new(400, "Bad Request - Not a Request"));
    }
    // D12: oversize requests get 513.
    let max = match v.transport() {
        Transport::Udp => limits.max_udp_len,
        Transport::Tcp => limits.max_tcp_len,
    };
    if v.len() > max {
        return Err(Reject::new(513, "Message Too Large"));
    }
    let syntax = check_syntax(v, parsed_ruri)?;
    // §8.2.2... a version other than SIP/2.0 (RFC 4475 badvers).
    if !v.version().eq_ignore_ascii_case(b"SIP/2.0") {
        return Err(Reject::new(505, "Version Not Supported"));
    }
    let method = v.method();
    // §8.2.1: an unknown method gets 501 (RFC 4475 esc02, mismatch02).
    if method == Method::Other {
        return Err(Reject {
            code: 501,
            reason: "Not Implemented",
            extra: ExtraHeader::Allow,
        });
    }
    // §8.1.1: Via, From, To, Call-ID, CSeq and Max-Forwards are mandatory (RFC 4475 insuf).
    for h in [Via, From, To, CallId, CSeq] {
        if v.header_count(h) == 0 {
            return Err(Reject::new(400, missing(h)));
        }
    }
    if v.header_count(MaxForwards) == 0 {
        // RFC 2543 clients sent neither Max-Forwards nor a cookie branch; RFC 4475 inv2543
        // asks us to stay compatible with them, so only a cookie-bearing (RFC 3261) request
        // must carry Max-Forwards.
        let rfc3261 = via::top_branch(v).is_some_and(|b| b.starts_with(via::MAGIC_COOKIE));
        if rfc3261 {
            return Err(Reject::new(400, missing(MaxForwards)));
        }
    }
    // §7.3.1: only comma-list headers may repeat (RFC 4475 multi01, mcl01).
    for h in [
        From,
        To,
        CallId,
        CSeq,
        MaxForwards,
        ContentLength,
        ContentType,
    ] {
        if v.header_count(h) > 1 {
            return Err(Reject::new(400, duplicate(h)));
        }
    }
    // §8.2.2... CSeq method must equal the request method (RFC 4475 mismatch01).
    let cseq = syntax.cseq.ok_or(bad(CSeq))?;
    if cseq.method != v.method_bytes() {
        return Err(Reject::new(400, "Bad Request - CSeq Method Mismatch"));
    }
    // §8.2.2.1: unsupported Request-URI scheme -> 416 (RFC 4475 unkscm, novelsc). From and To
    // name the sender and recipient, which this server needs as sip/sips/tel identities (D7,
    // D8; RFC 4475 unksm2).
    if syntax.ruri.scheme == Scheme::Other {
        return Err(Reject::new(416, "Unsupported URI Scheme"));
    }
    for (s, reason) in [
        (syntax.to_scheme, "Unsupported URI Scheme in To"),
        (syntax.from_scheme, "Unsupported URI Scheme in From"),
    ] {
        if s.unwrap_or(Scheme::Other) == Scheme::Other {
            return Err(Reject::new(416, reason));
        }
    }
    // §8.2.2.3: we support no extensions, so any Require tag is unsupported (RFC 4475 bext01).
    // Proxy-Require is ignored by a UAS (§8.2.2.3).
    if let Some(slot) = v.first_slot(Require)
        && v.values(Require)
            .any(|x| CommaIter::new(x).any(|e| !e.is_empty()))
    {
        return Err(Reject {
            code: 420,
            reason: "Bad Extension",
            extra: ExtraHeader::Unsupported(slot.value),
        });
    }
    if method == Method::Invite {
        // §8.2.3: a body we cannot process gets 415 + Accept (RFC 4475 invut).
        if let Some(ct) = v.header(ContentType) {
            let mt = media_type(ct).unwrap_or(ct);
            if !(media_eq(mt, "application/sdp") || media_eq(mt, "multipart/mixed")) {
                return Err(Reject {
                    code: 415,
                    reason: "Unsupported Media Type",
                    extra: ExtraHeader::Accept("application/sdp"),
                });
            }
        }
        // §21.4.7: when Accept excludes every type we could answer with (RFC 4475 sdp01).
        if v.header_count(Accept) > 0 {
            let acceptable = v.values(Accept).any(|x| {
                CommaIter::new(x).any(|e| {
                    let mt = media_type(e).unwrap_or(e);
                    media_eq(mt, "application/sdp")
                        || media_eq(mt, "application/*")
                        || media_eq(mt, "*/*")
                })
            });
            if !acceptable {
                return Err(Reject::new(406, "Not Acceptable"));
            }
        }
    }
    Ok(syntax.ruri)
}

/// Checks a scanned response before it is relayed; a failure means "drop and count" (a
/// response is never answered, §18.1.2). Returns the fault.
pub fn check_response(v: &View<'_>) -> Result<(), &'static str> {
    use HeaderName::*;
    if !v.is_response() {
        return Err("not a response");
    }
    if !v.version().eq_ignore_ascii_case(b"SIP/2.0") {
        return Err("version");
    }
    match via::top(v) {
        Some((_, Ok(_))) => {}
        _ => return Err("Via"),
    }
    for h in [From, To, CallId, CSeq] {
        if v.header_count(h) != 1 {
            return Err(malformed(h));
        }
    }
    // RFC 4475 scalarlg: a CSeq beyond 2^31 makes the response unmatchable.
    v.header(CSeq)
        .and_then(|x| values::cseq(x).ok())
        .ok_or("CSeq")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::scan::Parsed;

    fn check(m: &[u8]) -> Result<(), Reject> {
        let mut p = Parsed::new();
        p.scan_datagram(m).unwrap();
        check_request(&p.view(m), &Limits::default())
    }

    const OK: &[u8] = b"MESSAGE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nMax-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: c1\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi";

    fn with(from: &str, to: &str) -> Vec<u8> {
        String::from_utf8_lossy(OK).replace(from, to).into_bytes()
    }

    #[test]
    fn accepts_a_plain_message() {
        assert_eq!(check(OK), Ok(()));
    }

    #[test]
    fn ordered_rejections() {
        assert_eq!(
            check(&with("Max-Forwards: 70\r\n", "")).unwrap_err().reason,
            "Bad Request - Missing Max-Forwards"
        );
        assert_eq!(
            check(&with("CSeq: 1 MESSAGE", "CSeq: 1 OPTIONS"))
                .unwrap_err()
                .code,
            400
        );
        assert_eq!(
            check(&with("SIP/2.0\r\nVia", "SIP/3.0\r\nVia"))
                .unwrap_err()
                .code,
            505
        );
        assert_eq!(
            check(&with("MESSAGE sip", "FOO sip")).unwrap_err().code,
            501
        );
        assert_eq!(
            check(&with("sip:bob@example.com SIP", "im:bob@example.com SIP"))
                .unwrap_err()
                .code,
            416
        );
        assert_eq!(
            check(&with("To: <sip:", "To: <mailto:"))
                .unwrap_err()
                .reason,
            "Unsupported URI Scheme in To"
        );
        let r = check(&with("Call-ID: c1\r\n", "Call-ID: c1\r\nRequire: foo\r\n")).unwrap_err();
        assert_eq!(r.code, 420);
        assert!(matches!(r.extra, ExtraHeader::Unsupported(_)));
        assert_eq!(
            check(&with("Call-ID: c1\r\n", "Call-ID: c1\r\ni: c2\r\n"))
                .unwrap_err()
                .reason,
            "Bad Request - Duplicate Call-ID"
        );
        assert_eq!(
            check(&with("Max-Forwards: 70", "Max-Forwards: 256"))
                .unwrap_err()
                .reason,
            "Bad Request - Malformed Max-Forwards"
        );
    }

    #[test]
    fn udp_size_limit() {
        let l = Limits {
            max_udp_len: 10,
            max_tcp_len: 10,
        };
        let mut p = Parsed::new();
        p.scan_datagram(OK).unwrap();
        assert_eq!(check_request(&p.view(OK), &l).unwrap_err().code, 513);
    }
}
