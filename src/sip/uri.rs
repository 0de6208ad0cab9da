//! URIs: `sip`, `sips` (RFC 3261 §19.1, §25.1), `tel` (RFC 3966) and anything else as an opaque
//! [`Scheme::Other`] so validation can answer 416 (§8.2.2.1). Zero-copy: every field is a slice
//! of the input; the user part stays percent-encoded (see [`percent_decode`]).
#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::error::SyntaxError;
use super::lex::digits_u64;
use super::scan::{Span, span_in};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
    Other,
}

/// What the host part is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host {
    Name,
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl Host {
    pub fn ip(&self) -> Option<IpAddr> {
        match *self {
            Host::Name => None,
            Host::V4(a) => Some(IpAddr::V4(a)),
            Host::V6(a) => Some(IpAddr::V6(a)),
        }
    }
}

/// A parsed URI. For `tel`, the number is in `user` and `host` is empty; for `Other`, only
/// `scheme_raw` and `opaque` are meaningful.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uri<'a> {
    pub scheme: Scheme,
    pub scheme_raw: &'a [u8],
    pub user: Option<&'a [u8]>,
    pub password: Option<&'a [u8]>,
    /// Host as written (an IPv6 reference keeps its brackets).
    pub host: &'a [u8],
    pub host_kind: Host,
    pub port: Option<u16>,
    /// URI parameters without the leading `;` (empty when none).
    pub params: &'a [u8],
    /// The `?headers` part without the `?`.
    pub headers: Option<&'a [u8]>,
    /// Everything after `scheme:`.
    pub opaque: &'a [u8],
}

impl<'a> Uri<'a> {
    /// URI parameters (`;name[=value]`), names as written.
    pub fn params(&self) -> UriParams<'a> {
        UriParams { s: self.params }
    }

    /// `Some(value)` when the parameter is present (name compared without case).
    pub fn param(&self, name: &str) -> Option<Option<&'a [u8]>> {
        self.params()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }
}

/// Where a parsed [`Uri`]'s parts sit in the bytes it was parsed from, so the same parse can
/// be had again from those bytes without parsing them (a batch's prefetch parses a
/// Request-URI that validation needs next). Spans are relative to the URI's first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UriShape {
    scheme: Scheme,
    scheme_raw: Span,
    user: Option<Span>,
    password: Option<Span>,
    host: Span,
    host_kind: Host,
    port: Option<u16>,
    params: Span,
    headers: Option<Span>,
    opaque: Span,
}

impl UriShape {
    /// The shape of `uri`, a parse of `raw`; `None` for a URI too long to describe (4 GiB).
    /// Every part of a parse is a sub-slice of `raw` or empty (a parse may write a literal
    /// `b""`, which [`span_in`] makes the empty span).
    pub fn of(raw: &[u8], uri: &Uri<'_>) -> Option<UriShape> {
        u32::try_from(raw.len()).ok()?;
        let at = |p: &[u8]| span_in(raw, p);
        Some(UriShape {
            scheme: uri.scheme,
            scheme_raw: at(uri.scheme_raw),
            user: uri.user.map(at),
            password: uri.password.map(at),
            host: at(uri.host),
            host_kind: uri.host_kind,
            port: uri.port,
            params: at(uri.params),
            headers: uri.headers.map(at),
            opaque: at(uri.opaque),
        })
    }

    /// The parse this shape was taken from, over `raw`: the same bytes it was taken from.
    pub fn uri<'a>(&self, raw: &'a [u8]) -> Uri<'a> {
        Uri {
            scheme: self.scheme,
            scheme_raw: self.scheme_raw.slice(raw),
            user: self.user.map(|p| p.slice(raw)),
            password: self.password.map(|p| p.slice(raw)),
            host: self.host.slice(raw),
            host_kind: self.host_kind,
            port: self.port,
            params: self.params.slice(raw),
            headers: self.headers.map(|p| p.slice(raw)),
            opaque: self.opaque.slice(raw),
        }
    }
}

/// Iterator over `a=b;c` URI parameters.
#[derive(Clone, Debug)]
pub struct UriParams<'a> {
    s: &'a [u8],
}

impl<'a> Iterator for UriParams<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        while !self.s.is_empty() {
            let end = self
                .s
                .iter()
                .position(|&b| b == b';')
                .unwrap_or(self.s.len());
            let item = &self.s[..end];
            self.s = self.s.get(end + 1..).unwrap_or(&[]);
            if item.is_empty() {
                continue;
            }
            return Some(match item.iter().position(|&b| b == b'=') {
                Some(e) => (&item[..e], Some(&item[e + 1..])),
                None => (item, None),
            });
        }
        None
    }
}

fn is_scheme(s: &[u8]) -> bool {
    match s.split_first() {
        Some((f, rest)) => {
            f.is_ascii_alphabetic()
                && rest
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        }
        None => false,
    }
}

/// [`BYTE_CLASS`] bits: a byte allowed unescaped in a URI, a digit or `.` (IPv4 literal), a
/// host-name byte (alphanumerics, `-`, `_`, `.`).
const URI_BYTE: u8 = 1;
const DIGIT_DOT: u8 = 2;
const NAME_BYTE: u8 = 4;
/// `@`: ends the userinfo.
const AT: u8 = 8;
/// `%`: an escape to check.
const PCT: u8 = 16;
/// `:` `;` `?`: end a host name or IPv4 host.
const HOST_END: u8 = 32;

const fn byte_classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut c = 0;
        if b >= 0x21 && b < 0x7f && b != b'<' && b != b'>' && b != b'"' {
            c |= URI_BYTE;
        }
        if b.is_ascii_digit() || b == b'.' {
            c |= DIGIT_DOT | NAME_BYTE;
        }
        if b.is_ascii_alphabetic() || b == b'-' || b == b'_' {
            c |= NAME_BYTE;
        }
        if b == b'@' {
            c |= AT;
        }
        if b == b'%' {
            c |= PCT;
        }
        if b == b':' || b == b';' || b == b'?' {
            c |= HOST_END;
        }
        t[i] = c;
        i += 1;
    }
    t
}

/// One table for the per-byte tests of URI parsing (one load per byte instead of range and
/// `matches!` chains).
static BYTE_CLASS: [u8; 256] = byte_classes();

fn escapes_ok(s: &[u8]) -> bool {
    // Most URIs have no escape at all: find the first `%` with memchr.
    let Some(mut i) = memchr::memchr(b'%', s) else {
        return true;
    };
    while i < s.len() {
        if s[i] == b'%' {
            match (s.get(i + 1), s.get(i + 2)) {
                (Some(a), Some(b)) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => i += 3,
                _ => return false,
            }
        } else {
            i += 1;
        }
    }
    true
}

/// Classifies a host: `[IPv6]`, dotted IPv4, or a hostname (alphanumerics, `-`, `.`; `_` is
/// tolerated because real deployments use it).
pub fn parse_host(h: &[u8]) -> Result<Host, SyntaxError> {
    if h.is_empty() {
        return Err(SyntaxError::Host);
    }
    if h[0] == b'[' {
        let inner = h
            .strip_prefix(b"[")
            .and_then(|x| x.strip_suffix(b"]"))
            .ok_or(SyntaxError::Host)?;
        let s = std::str::from_utf8(inner).map_err(|_| SyntaxError::Host)?;
        return s
            .parse::<Ipv6Addr>()
            .map(Host::V6)
            .map_err(|_| SyntaxError::Host);
    }
    // One pass to classify; the common shapes (canonical dotted quad, plain host name) are
    // decided here, anything else goes to the standard parser as before.
    let class = h.iter().fold(DIGIT_DOT | NAME_BYTE, |c, &b| {
        c & BYTE_CLASS[usize::from(b)]
    });
    host_of_class(h, class)
}

/// The host name or IPv4 literal at the start of `s` (alphanumerics, `-`, `_`, `.`), for a
/// caller that finds where a host ends by its bytes (a Via's sent-by): its length and kind, in
/// one pass, with [`parse_host`]'s verdict on those bytes.
pub(crate) fn host_name_prefix(s: &[u8]) -> (usize, Result<Host, SyntaxError>) {
    let mut class = DIGIT_DOT | NAME_BYTE;
    let mut len = 0;
    for &b in s {
        let c = BYTE_CLASS[usize::from(b)];
        if c & NAME_BYTE == 0 {
            break;
        }
        class &= c;
        len += 1;
    }
    (len, host_of_class(&s[..len], class))
}

/// [`parse_host`] for a non-empty host that is not an IPv6 reference, given the AND of its
/// bytes' classes.
fn host_of_class(h: &[u8], class: u8) -> Result<Host, SyntaxError> {
    let (only_digits_dots, name_ok) = (class & DIGIT_DOT != 0, class & NAME_BYTE != 0);
    if only_digits_dots {
        if let Some(a) = canonical_v4(h) {
            return Ok(Host::V4(a));
        }
        let s = std::str::from_utf8(h).map_err(|_| SyntaxError::Host)?;
        return s
            .parse::<Ipv4Addr>()
            .map(Host::V4)
            .map_err(|_| SyntaxError::Host);
    }
    if name_ok {
        Ok(Host::Name)
    } else {
        Err(SyntaxError::Host)
    }
}

/// A dotted quad in the form `Ipv4Addr::from_str` accepts (four parts of 1-3 digits, no
/// leading zero, each at most 255); `None` for anything else, which the caller then hands
/// to the standard parser, so the verdict is always the standard one.
fn canonical_v4(h: &[u8]) -> Option<Ipv4Addr> {
    // One pass: `part` octets done, `value` and `digits` of the current one.
    let mut octets = [0u8; 4];
    let (mut part, mut value, mut digits) = (0usize, 0u16, 0u8);
    for &b in h {
        match b {
            b'0'..=b'9' => {
                // No leading zero, at most three digits (so `value` stays below 1000).
                if digits == 3 || (digits == 1 && value == 0) {
                    return None;
                }
                value = value * 10 + u16::from(b - b'0');
                digits += 1;
            }
            b'.' if digits > 0 && part < 3 => {
                octets[part] = u8::try_from(value).ok()?;
                (part, value, digits) = (part + 1, 0, 0);
            }
            _ => return None,
        }
    }
    if part != 3 || digits == 0 {
        return None;
    }
    octets[3] = u8::try_from(value).ok()?;
    Some(Ipv4Addr::from(octets))
}

/// A canonical dotted quad (four 1-3 digit parts, no leading zero, each at most 255), decided
/// without the standard parser; `None` for anything else. Where it answers, [`Ipv4Addr`]'s
/// parser agrees; callers that take every address the standard parser takes fall back to it.
pub fn dotted_quad(s: &[u8]) -> Option<Ipv4Addr> {
    let class = s
        .iter()
        .fold(DIGIT_DOT, |c, &b| c & BYTE_CLASS[usize::from(b)]);
    if s.is_empty() || class & DIGIT_DOT == 0 {
        return None;
    }
    canonical_v4(s)
}

/// Parses a port: 1-5 digits, at most 65535.
pub fn parse_port(p: &[u8]) -> Result<u16, SyntaxError> {
    if p.len() > 5 {
        return Err(SyntaxError::Port);
    }
    digits_u64(p)
        .and_then(|v| u16::try_from(v).ok())
        .ok_or(SyntaxError::Port)
}

/// The scheme a valid scheme name (`is_scheme`) stands for, in any case.
fn scheme_of(raw: &[u8]) -> Scheme {
    if raw.eq_ignore_ascii_case(b"sip") {
        Scheme::Sip
    } else if raw.eq_ignore_ascii_case(b"sips") {
        Scheme::Sips
    } else if raw.eq_ignore_ascii_case(b"tel") {
        Scheme::Tel
    } else {
        Scheme::Other
    }
}

/// `sip:` or `sips:` in any case: the scheme and where its colon is. The usual URIs are decided
/// here without the general scheme scan (the general path gives the same answer for them).
#[inline]
fn sip_prefix(s: &[u8]) -> Option<(Scheme, usize)> {
    let lower = |b: u8| b | 0x20;
    match s {
        [a, b, c, b':', ..] if lower(*a) == b's' && lower(*b) == b'i' && lower(*c) == b'p' => {
            Some((Scheme::Sip, 3))
        }
        [a, b, c, d, b':', ..]
            if lower(*a) == b's' && lower(*b) == b'i' && lower(*c) == b'p' && lower(*d) == b's' =>
        {
            Some((Scheme::Sips, 4))
        }
        _ => None,
    }
}

/// Parses a URI (no surrounding whitespace or angle brackets).
///
/// One pass over everything after the scheme checks every byte and finds the first `@` and
/// whether any `%` needs checking; a second one, over the host only, finds its end and
/// classifies it.
pub fn parse(s: &[u8]) -> Result<Uri<'_>, SyntaxError> {
    let (scheme, colon) = match sip_prefix(s) {
        Some(known) => known,
        None => {
            let colon = memchr::memchr(b':', s).ok_or(SyntaxError::Uri)?;
            let raw = &s[..colon];
            if !is_scheme(raw) {
                return Err(SyntaxError::Uri);
            }
            (scheme_of(raw), colon)
        }
    };
    let scheme_raw = &s[..colon];
    let rest = &s[colon + 1..];
    let mut all = URI_BYTE;
    let mut any = 0;
    let mut at = None;
    for (i, &b) in rest.iter().enumerate() {
        let c = BYTE_CLASS[usize::from(b)];
        all &= c;
        any |= c;
        if c & AT != 0 && at.is_none() {
            at = Some(i);
        }
    }
    if rest.is_empty() || all & URI_BYTE == 0 {
        return Err(SyntaxError::Uri);
    }
    let mut uri = Uri::bare(scheme, scheme_raw, rest);
    match scheme {
        Scheme::Other => {}
        Scheme::Tel => parse_tel(rest, &mut uri)?,
        Scheme::Sip | Scheme::Sips => parse_sip(rest, at, any & PCT != 0, &mut uri)?,
    }
    Ok(uri)
}

impl<'a> Uri<'a> {
    /// A URI of this scheme with nothing parsed after it yet (`opaque` is all of `rest`).
    fn bare(scheme: Scheme, scheme_raw: &'a [u8], rest: &'a [u8]) -> Uri<'a> {
        Uri {
            scheme,
            scheme_raw,
            user: None,
            password: None,
            host: b"",
            host_kind: Host::Name,
            port: None,
            params: b"",
            headers: None,
            opaque: rest,
        }
    }
}

/// RFC 3966: telephone-subscriber = number *( ";" par ), after `tel:`.
fn parse_tel<'a>(rest: &'a [u8], uri: &mut Uri<'a>) -> Result<(), SyntaxError> {
    let end = rest.iter().position(|&b| b == b';').unwrap_or(rest.len());
    let number = &rest[..end];
    let ok = !number.is_empty()
        && number.iter().all(|&b| {
            b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.' | b'(' | b')' | b'*' | b'#')
        });
    if !ok {
        return Err(SyntaxError::Uri);
    }
    uri.user = Some(number);
    uri.params = rest.get(end + 1..).unwrap_or(b"");
    Ok(())
}

/// `rest` is everything after `sip:`, every byte already checked; `at` is its first `@`;
/// `escapes` says whether it holds a `%` at all.
fn parse_sip<'a>(
    rest: &'a [u8],
    at: Option<usize>,
    escapes: bool,
    uri: &mut Uri<'a>,
) -> Result<(), SyntaxError> {
    let hostpart = sip_userinfo(rest, at, escapes, uri)?;
    let host_end;
    if hostpart.first() == Some(&b'[') {
        host_end = memchr::memchr(b']', hostpart).ok_or(SyntaxError::Host)? + 1;
        uri.host = &hostpart[..host_end];
        uri.host_kind = parse_host(uri.host)?;
    } else {
        // The host ends at the first ':' ';' '?'; its bytes' classes decide what it is.
        let mut end = 0;
        let mut class = DIGIT_DOT | NAME_BYTE;
        while let Some(&b) = hostpart.get(end) {
            let c = BYTE_CLASS[usize::from(b)];
            if c & HOST_END != 0 {
                break;
            }
            class &= c;
            end += 1;
        }
        host_end = end;
        uri.host = &hostpart[..end];
        if end == 0 {
            return Err(SyntaxError::Host);
        }
        uri.host_kind = host_of_class(uri.host, class)?;
    }
    sip_tail(&hostpart[host_end..], escapes, uri)
}

/// The userinfo of a sip URI (`rest` after the scheme, `at` its first `@`): sets user and
/// password and returns what follows the `@` (all of `rest` without one). `escapes`: whether
/// `rest` holds a `%` at all, so whether escapes need checking.
fn sip_userinfo<'a>(
    rest: &'a [u8],
    at: Option<usize>,
    escapes: bool,
    uri: &mut Uri<'a>,
) -> Result<&'a [u8], SyntaxError> {
    // userinfo ends at the first '@': '@' is not allowed unescaped in user, password or
    // header values, while ';' '?' ',' '/' are legal in the user part (RFC 4475 intmeth,
    // semiuri), so the '@' must be found before any other delimiter is trusted.
    let Some(at) = at else {
        return Ok(rest);
    };
    let userinfo = &rest[..at];
    if escapes && !escapes_ok(userinfo) {
        return Err(SyntaxError::Uri);
    }
    match userinfo.iter().position(|&b| b == b':') {
        Some(c) => {
            uri.user = Some(&userinfo[..c]);
            uri.password = Some(&userinfo[c + 1..]);
        }
        None => uri.user = Some(userinfo),
    }
    if uri.user.is_some_and(<[u8]>::is_empty) {
        return Err(SyntaxError::Uri);
    }
    Ok(&rest[at + 1..])
}

/// What follows a sip URI's host: `:port`, `;params`, `?headers`, in that order, and nothing
/// else. `escapes` as for [`sip_userinfo`].
fn sip_tail<'a>(mut tail: &'a [u8], escapes: bool, uri: &mut Uri<'a>) -> Result<(), SyntaxError> {
    if let Some(p) = tail.strip_prefix(b":") {
        let e = p
            .iter()
            .position(|&b| matches!(b, b';' | b'?'))
            .unwrap_or(p.len());
        uri.port = Some(parse_port(&p[..e])?);
        tail = &p[e..];
    }
    if let Some(p) = tail.strip_prefix(b";") {
        let e = p.iter().position(|&b| b == b'?').unwrap_or(p.len());
        uri.params = &p[..e];
        if escapes && !escapes_ok(uri.params) {
            return Err(SyntaxError::Uri);
        }
        tail = &p[e..];
    }
    if let Some(h) = tail.strip_prefix(b"?") {
        uri.headers = Some(h);
        tail = b"";
    }
    if tail.is_empty() {
        Ok(())
    } else {
        Err(SyntaxError::Uri)
    }
}

/// Percent-decodes `s` into `out` and returns the decoded prefix. Fails on a malformed escape
/// or when `out` is too small. `%00` decodes to a NUL byte (RFC 4475 escnull): callers that
/// compare identities do so on bytes, never on C strings.
pub fn percent_decode<'b>(s: &[u8], out: &'b mut [u8]) -> Result<&'b [u8], SyntaxError> {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let mut i = 0;
    let mut n = 0;
    while i < s.len() {
        let b = if s[i] == b'%' {
            let hi = s
                .get(i + 1)
                .copied()
                .and_then(hex)
                .ok_or(SyntaxError::Char)?;
            let lo = s
                .get(i + 2)
                .copied()
                .and_then(hex)
                .ok_or(SyntaxError::Char)?;
            i += 3;
            hi << 4 | lo
        } else {
            i += 1;
            s[i - 1]
        };
        *out.get_mut(n).ok_or(SyntaxError::Range)? = b;
        n += 1;
    }
    Ok(&out[..n])
}

/// The previous, multi-pass `parse`, kept as the reference the single-pass one is checked
/// against (property test below). Only the parts the single-pass parser rewrote are kept here
/// (scheme, byte check, `@`, host end and class); the pieces it left as they were (tel numbers,
/// userinfo split, port/params/headers) are the live ones, called with every escape checked.
#[cfg(test)]
mod previous {
    use super::*;

    /// Bytes that can never appear unescaped in a URI we accept: controls, space, non-ASCII and
    /// the delimiters that bracket a URI in a header (`<`, `>`, `"`).
    #[inline]
    fn is_uri_byte(b: u8) -> bool {
        BYTE_CLASS[usize::from(b)] & URI_BYTE != 0
    }

    /// Parses a URI (no surrounding whitespace or angle brackets).
    pub(super) fn parse(s: &[u8]) -> Result<Uri<'_>, SyntaxError> {
        let colon = memchr::memchr(b':', s).ok_or(SyntaxError::Uri)?;
        let scheme_raw = &s[..colon];
        if !is_scheme(scheme_raw) {
            return Err(SyntaxError::Uri);
        }
        let rest = &s[colon + 1..];
        if rest.is_empty() || !rest.iter().all(|&b| is_uri_byte(b)) {
            return Err(SyntaxError::Uri);
        }
        let scheme = scheme_of(scheme_raw);
        let mut uri = Uri::bare(scheme, scheme_raw, rest);
        match scheme {
            Scheme::Other => {}
            Scheme::Tel => parse_tel(rest, &mut uri)?,
            Scheme::Sip | Scheme::Sips => old_parse_sip(rest, &mut uri)?,
        }
        Ok(uri)
    }

    fn old_parse_sip<'a>(rest: &'a [u8], uri: &mut Uri<'a>) -> Result<(), SyntaxError> {
        let hostpart = sip_userinfo(rest, memchr::memchr(b'@', rest), true, uri)?;
        let host_end = if hostpart.first() == Some(&b'[') {
            memchr::memchr(b']', hostpart).ok_or(SyntaxError::Host)? + 1
        } else {
            memchr::memchr3(b':', b';', b'?', hostpart).unwrap_or(hostpart.len())
        };
        uri.host = &hostpart[..host_end];
        uri.host_kind = parse_host(uri.host)?;
        sip_tail(&hostpart[host_end..], true, uri)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_sip() {
        let u = parse(b"sip:alice:pw@Example.com:5070;transport=tcp;lr?subject=hi").unwrap();
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.user, Some(&b"alice"[..]));
        assert_eq!(u.password, Some(&b"pw"[..]));
        assert_eq!(u.host, b"Example.com");
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.param("TRANSPORT"), Some(Some(&b"tcp"[..])));
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(u.headers, Some(&b"subject=hi"[..]));
    }

    #[test]
    fn hosts() {
        let u = parse(b"sips:[2001:db8::1]:5061").unwrap();
        assert_eq!(u.scheme, Scheme::Sips);
        assert_eq!(u.host_kind, Host::V6("2001:db8::1".parse().unwrap()));
        let u = parse(b"sip:192.0.2.1").unwrap();
        assert_eq!(u.host_kind, Host::V4(Ipv4Addr::new(192, 0, 2, 1)));
        assert!(parse(b"sip:[2001:db8::1").is_err());
        assert!(parse(b"sip:a@999.1.1.1").is_err());
        assert!(parse(b"sip:a@host:99999").is_err());
        assert!(parse(b"sip:a@host x").is_err());
        assert!(parse(b"sip:@host").is_err());
    }

    #[test]
    fn torture_users() {
        // RFC 4475 intmeth and semiuri: ';', '?', ',' and '/' are legal in the user part.
        let u = parse(b"sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com").unwrap();
        assert_eq!(u.host, b"example.com");
        assert_eq!(
            u.user,
            Some(&b"1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"[..])
        );
        let u = parse(b"sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!(u.user, Some(&b"user;par=u%40example.net"[..]));
        assert_eq!(u.host, b"example.com");
        assert!(parse(b"sip:bad%zzuser@example.com").is_err());
    }

    #[test]
    fn tel_and_other() {
        let u = parse(b"tel:+1-555-123-0000;phone-context=x").unwrap();
        assert_eq!(u.scheme, Scheme::Tel);
        assert_eq!(u.user, Some(&b"+1-555-123-0000"[..]));
        let u = parse(b"soap.beep://192.0.2.103:3002").unwrap();
        assert_eq!(u.scheme, Scheme::Other);
        assert!(parse(b"<sip:user@example.com>").is_err());
        assert!(parse(b"nocolon").is_err());
    }

    #[test]
    fn hosts_agree_with_std() {
        for h in [
            "1.2.3.4",
            "255.255.255.255",
            "256.1.1.1",
            "01.2.3.4",
            "0.0.0.0",
            "1.2.3",
            "1.2.3.4.5",
            "1..2.3",
            "1.2.3.",
            ".1.2.3",
            "1234.1.1.1",
            "000.1.1.1",
            "10.0.0.01",
        ] {
            let std = h.parse::<Ipv4Addr>().ok();
            // The fast path never disagrees with the standard parser where it answers.
            if let Some(a) = dotted_quad(h.as_bytes()) {
                assert_eq!(Some(a), std, "{h}");
            }
            assert_eq!(
                parse_host(h.as_bytes()).ok(),
                std.map(Host::V4).or(None),
                "{h}"
            );
        }
        assert_eq!(dotted_quad(b"10.1.2.3"), Some(Ipv4Addr::new(10, 1, 2, 3)));
        assert_eq!(dotted_quad(b"::1"), None);
        assert_eq!(dotted_quad(b""), None);
        assert_eq!(parse_host(b"a_b-c.example"), Ok(Host::Name));
        assert_eq!(parse_host(b"a+b"), Err(SyntaxError::Host));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]
        /// On every string of digits and dots (and a stray other byte), the one-pass reader
        /// answers exactly what the standard parser does.
        #[test]
        fn canonical_v4_is_std(s in "[0-9.]{0,17}|[0-9]{1,3}(\\.[0-9]{1,3}){3}|[0-9.x:]{1,12}") {
            let std = s.parse::<Ipv4Addr>().ok();
            proptest::prop_assert_eq!(canonical_v4(s.as_bytes()), std, "{}", s);
        }
    }

    #[test]
    fn decode() {
        let mut buf = [0u8; 16];
        assert_eq!(percent_decode(b"%75se%72", &mut buf).unwrap(), b"user");
        assert_eq!(percent_decode(b"null-%00", &mut buf).unwrap(), b"null-\0");
        assert!(percent_decode(b"%4", &mut buf).is_err());
        let mut tiny = [0u8; 2];
        assert!(percent_decode(b"abc", &mut tiny).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]
        /// The single-pass parser gives exactly the previous parser's answer (fields and
        /// errors) on URIs built from the bytes that matter to it.
        #[test]
        fn same_as_previous_parser(
            prefix in proptest::sample::select(vec!["sip:", "SIPS:", "sIp:", "tel:", "", "x-y:", "sips", "si:"]),
            body in proptest::collection::vec(proptest::sample::select(vec![
                "u", "Alice", "%41", "%4", "%zz", "%", "@", ":", ";", "?", "=", "example.COM",
                "1.2.3.4", "256.1.1.1", "01.2.3.4", "[::1]", "[", "]", "5060", "99999", "lr",
                "user=phone", " ", "<", ">", "\"", ",", "/", "_", "-", ".", "\x7f",
            ]), 0..10),
        ) {
            let s = format!("{prefix}{}", body.concat()).into_bytes();
            proptest::prop_assert_eq!(parse(&s), previous::parse(&s), "{}", String::from_utf8_lossy(&s));
            // The shape of a parse gives that parse back over the same bytes anywhere else.
            if let Ok(u) = parse(&s) {
                let shape = UriShape::of(&s, &u);
                proptest::prop_assert!(shape.is_some(), "{}", String::from_utf8_lossy(&s));
                let copy = s.clone();
                proptest::prop_assert_eq!(shape.map(|sh| sh.uri(&copy)), Some(u));
            }
        }
    }
}
