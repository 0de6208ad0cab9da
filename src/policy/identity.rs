//! Identity normalisation (SPEC D8): one canonical byte string per user, so that a block list
//! entry, a `From`/`P-Asserted-Identity` URI and a Request-URI compare with `==`.
//!
//! Canonical forms (the output of [`normalize`]):
//! - `sip:`/`sips:` with a user part: `user@host` (scheme dropped, user percent-decoded and kept
//!   case-sensitive, host lowercased, password/port/parameters/headers dropped);
//! - `sip:host` (no user part): `@host`;
//! - `tel:` and `sip:…;user=phone` global numbers: `tel:+<digits>` (visual separators removed);
//! - local numbers: `tel:<digits>;phone-context=<context>`.
//!
//! Invariant used by [`domain_of`] and by the table: a sip identity always contains `@` and its
//! host (which never contains `@`) follows the last `@`; a `tel:` identity never contains `@`.
//! So the two families can never collide.
#![forbid(unsafe_code)]

use std::fmt;

/// The longest canonical identity we accept, in bytes.
pub const ID_MAX: usize = 256;

/// Why a URI could not be turned into an identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("empty URI")]
    Empty,
    #[error("unsupported URI scheme")]
    UnsupportedScheme,
    #[error("empty user part")]
    EmptyUser,
    #[error("invalid character in user part")]
    BadUser,
    #[error("invalid percent-escape")]
    BadEscape,
    #[error("empty host")]
    EmptyHost,
    #[error("invalid host")]
    BadHost,
    #[error("invalid port")]
    BadPort,
    #[error("invalid telephone number")]
    BadNumber,
    #[error("local number without phone-context")]
    MissingPhoneContext,
    #[error("identity too long")]
    TooLong,
}

impl IdError {
    /// The SIP status for a request whose identity-bearing URI failed: RFC 3261 §21.4.14 (416)
    /// for a scheme we do not serve, 400 for the rest.
    pub fn status(self) -> u16 {
        match self {
            IdError::UnsupportedScheme => 416,
            _ => 400,
        }
    }

    /// Reason phrase for the response line (the same text as `Display`).
    pub fn reason(self) -> &'static str {
        match self {
            IdError::Empty => "empty URI",
            IdError::UnsupportedScheme => "unsupported URI scheme",
            IdError::EmptyUser => "empty user part",
            IdError::BadUser => "invalid character in user part",
            IdError::BadEscape => "invalid percent-escape",
            IdError::EmptyHost => "empty host",
            IdError::BadHost => "invalid host",
            IdError::BadPort => "invalid port",
            IdError::BadNumber => "invalid telephone number",
            IdError::MissingPhoneContext => "local number without phone-context",
            IdError::TooLong => "identity too long",
        }
    }
}

/// A canonical identity on the stack: what the fast path normalises senders and recipients
/// into, without allocating.
#[derive(Clone)]
pub struct IdBuf {
    buf: [u8; ID_MAX],
    len: usize,
}

impl IdBuf {
    pub const fn new() -> Self {
        IdBuf {
            buf: [0; ID_MAX],
            len: 0,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    fn push(&mut self, b: u8) -> Result<(), IdError> {
        let slot = self.buf.get_mut(self.len).ok_or(IdError::TooLong)?;
        *slot = b;
        self.len += 1;
        Ok(())
    }

    fn extend(&mut self, bytes: &[u8]) -> Result<(), IdError> {
        let end = self.len + bytes.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(IdError::TooLong)?;
        dst.copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }
}

impl Default for IdBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for IdBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdBuf(\"{}\")", Escaped(self.as_bytes()))
    }
}

/// Something that holds an identity already in canonical form. Sealed: only [`Identity`] and
/// [`IdBuf`] (both produced by [`normalize`]) qualify, so block lists cannot be fed raw URIs.
pub trait Normalized: sealed::Sealed {
    fn normalized(&self) -> &[u8];
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Identity {}
    impl Sealed for super::IdBuf {}
}

impl Normalized for IdBuf {
    fn normalized(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl Normalized for Identity {
    fn normalized(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// An owned canonical identity (slow path: table keys, block-list compilation).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity(Box<[u8]>);

impl Identity {
    /// Normalises `uri` (see [`normalize`]) and keeps the result.
    pub fn parse(uri: &[u8]) -> Result<Self, IdError> {
        let mut buf = IdBuf::new();
        normalize(uri, &mut buf)?;
        Ok(Identity::from(&buf))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Rebuilds an identity from its canonical bytes, as produced by [`Identity::as_bytes`]
    /// (stored keys, registrar AoRs). The bytes are not re-normalised: a canonical form is not
    /// a URI (`bob@example.com` has no scheme), so handing anything else here is a programmer
    /// error that makes the identity match nothing.
    pub fn from_canonical(canonical: &[u8]) -> Self {
        Identity(canonical.into())
    }
}

impl From<&IdBuf> for Identity {
    fn from(buf: &IdBuf) -> Self {
        Identity(buf.as_bytes().into())
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Escaped(&self.0).fmt(f)
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity(\"{}\")", Escaped(&self.0))
    }
}

/// Prints printable ASCII as is and every other byte as `%XX`, so a decoded user part can never
/// inject control characters into a log line.
struct Escaped<'a>(&'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.0 {
            if b.is_ascii_graphic() {
                fmt::Write::write_char(f, char::from(b))?;
            } else {
                write!(f, "%{b:02X}")?;
            }
        }
        Ok(())
    }
}

/// The host of a normalised sip identity (`alice@example.com` -> `example.com`, `@example.com`
/// -> `example.com`); `None` for a `tel:` identity.
pub fn domain_of(norm: &[u8]) -> Option<&[u8]> {
    // The host never contains '@' while a decoded user part may, hence the last one.
    let at = norm.iter().rposition(|&b| b == b'@')?;
    norm.get(at + 1..)
}

/// Normalises an addr-spec (`sip:`, `sips:` or `tel:`, as found inside `<…>` or as a
/// Request-URI) into `out`. Allocates nothing. On error `out` holds nothing useful.
pub fn normalize(uri: &[u8], out: &mut IdBuf) -> Result<(), IdError> {
    out.clear();
    let uri = uri.trim_ascii();
    if uri.is_empty() {
        return Err(IdError::Empty);
    }
    let colon = uri
        .iter()
        .position(|&b| b == b':')
        .ok_or(IdError::UnsupportedScheme)?;
    let (scheme, rest) = (&uri[..colon], &uri[colon + 1..]);
    // RFC 3261 §19.1.4: the scheme compares case-insensitively; D8: sip and sips alike.
    if scheme.eq_ignore_ascii_case(b"sip") || scheme.eq_ignore_ascii_case(b"sips") {
        normalize_sip(rest, out)
    } else if scheme.eq_ignore_ascii_case(b"tel") {
        tel_subscriber(rest, out)
    } else {
        Err(IdError::UnsupportedScheme)
    }
}

/// `rest` is everything after `sip:`: `[user[:password]@]host[:port][;params][?headers]`.
fn normalize_sip(rest: &[u8], out: &mut IdBuf) -> Result<(), IdError> {
    // '@' may appear neither in params nor in headers unescaped (RFC 3261 §25.1), so the first
    // one ends the userinfo.
    let (userinfo, hostpart) = match rest.iter().position(|&b| b == b'@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let host_end = hostpart
        .iter()
        .position(|&b| b == b';' || b == b'?')
        .unwrap_or(hostpart.len());
    let host = host_of(&hostpart[..host_end])?;
    let params = match hostpart.get(host_end) {
        Some(b';') => {
            let tail = &hostpart[host_end + 1..];
            &tail[..tail.iter().position(|&b| b == b'?').unwrap_or(tail.len())]
        }
        _ => &[][..],
    };

    // RFC 3261 §19.1.1: userinfo = user [":" password]; the password is never part of identity.
    let user = userinfo.map(|u| &u[..u.iter().position(|&b| b == b':').unwrap_or(u.len())]);
    sip_identity(user, host, params, out)
}

/// The identity of a `sip:`/`sips:` URI that the SIP parser (`sip::uri::parse`) already
/// accepted, from the parts it found: the user (without password), the host as written and the
/// URI parameters. The same identity as [`normalize`] of the whole URI, without scanning it
/// again for its parts.
pub fn normalize_sip_parts(
    user: Option<&[u8]>,
    host: &[u8],
    params: &[u8],
    out: &mut IdBuf,
) -> Result<(), IdError> {
    out.clear();
    sip_identity(user, host, params, out)
}

fn sip_identity(
    user: Option<&[u8]>,
    host: &[u8],
    params: &[u8],
    out: &mut IdBuf,
) -> Result<(), IdError> {
    let Some(user) = user else {
        // A host-only URI (`sip:example.com`): a service or domain identity.
        out.push(b'@')?;
        return push_lower(out, host);
    };
    if user.is_empty() {
        return Err(IdError::EmptyUser);
    }

    if !params.is_empty()
        && param_value(params, b"user").is_some_and(|v| v.eq_ignore_ascii_case(b"phone"))
    {
        // RFC 3261 §19.1.1 / D8: with user=phone the user part is an RFC 3966 telephone-subscriber
        // and the identity is the tel: one. A user part that is not a valid number (or a local
        // number without phone-context) keeps its sip form.
        let mut decoded = IdBuf::new();
        percent_decode(user, &mut decoded)?;
        match tel_subscriber(decoded.as_bytes(), out) {
            Ok(()) => return Ok(()),
            Err(IdError::TooLong) => return Err(IdError::TooLong),
            Err(_) => out.clear(),
        }
    }
    // RFC 3261 §19.1.4: user parts compare case-sensitively, escaped and unescaped alike.
    percent_decode(user, out)?;
    out.push(b'@')?;
    push_lower(out, host)
}

/// Validates `host[:port]` and returns the host (an IPv6 reference keeps its brackets).
fn host_of(hostport: &[u8]) -> Result<&[u8], IdError> {
    let (host, port) = if hostport.first() == Some(&b'[') {
        let close = hostport
            .iter()
            .position(|&b| b == b']')
            .ok_or(IdError::BadHost)?;
        let inner = &hostport[1..close];
        if inner.is_empty()
            || !inner
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(IdError::BadHost);
        }
        let after = &hostport[close + 1..];
        match after.split_first() {
            None => (&hostport[..=close], None),
            Some((b':', port)) => (&hostport[..=close], Some(port)),
            Some(_) => return Err(IdError::BadHost),
        }
    } else {
        match hostport.iter().position(|&b| b == b':') {
            Some(c) => (&hostport[..c], Some(&hostport[c + 1..])),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(IdError::EmptyHost);
    }
    if host[0] != b'[' && !is_domain(host) {
        return Err(IdError::BadHost);
    }
    if let Some(port) = port {
        let valid = !port.is_empty()
            && port.len() <= 5
            && port.iter().all(u8::is_ascii_digit)
            && port.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')) <= 65535;
        if !valid {
            return Err(IdError::BadPort);
        }
    }
    Ok(host)
}

/// Hostname or IPv4 characters (RFC 3261 §25.1; `_` tolerated, it is common in the wild).
fn is_domain(host: &[u8]) -> bool {
    !host.is_empty()
        && host
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}

/// Lowercases and validates a domain name (for `<many domain>` / `<except domain>` rules).
pub(crate) fn normalize_domain(domain: &[u8], out: &mut IdBuf) -> Result<(), IdError> {
    out.clear();
    let domain = domain.trim_ascii();
    if domain.is_empty() {
        return Err(IdError::EmptyHost);
    }
    if !is_domain(domain) {
        return Err(IdError::BadHost);
    }
    push_lower(out, domain)
}

fn push_lower(out: &mut IdBuf, bytes: &[u8]) -> Result<(), IdError> {
    let start = out.len;
    out.extend(bytes)?;
    out.buf[start..out.len].make_ascii_lowercase();
    Ok(())
}

/// Percent-decodes a user part into `out`. Raw bytes that can never be part of a URI
/// (controls, space, `"<>`) are rejected. Escaped ones, controls and `%00` included, are valid
/// (RFC 3261 §25.1 `escaped`; RFC 4475 §3.1.1.5 escnull must be accepted): they decode into the
/// identity, whose `Display` writes non-printable bytes back as `%XX`, so it stays safe to log.
fn percent_decode(user: &[u8], out: &mut IdBuf) -> Result<(), IdError> {
    let raw_ok = |b: u8| !b.is_ascii_control() && !matches!(b, b' ' | b'"' | b'<' | b'>');
    if !user.contains(&b'%') {
        // The usual case: nothing escaped, copy in one go.
        if !user.iter().all(|&b| raw_ok(b)) {
            return Err(IdError::BadUser);
        }
        return out.extend(user);
    }
    let mut i = 0;
    while i < user.len() {
        let b = user[i];
        let decoded = if b == b'%' {
            let hi = user.get(i + 1).and_then(|&h| hex_value(h));
            let lo = user.get(i + 2).and_then(|&l| hex_value(l));
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(IdError::BadEscape);
            };
            i += 3;
            (hi << 4) | lo
        } else {
            if matches!(b, b' ' | b'"' | b'<' | b'>') {
                return Err(IdError::BadUser);
            }
            i += 1;
            b
        };
        out.push(decoded)?;
    }
    Ok(())
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// RFC 3966 §5.1.5: visual separators carry no meaning and are removed before comparison.
fn is_visual_separator(b: u8) -> bool {
    matches!(b, b'-' | b'.' | b'(' | b')')
}

/// Parses an RFC 3966 telephone-subscriber (`number *(;param)`) into `tel:` canonical form.
fn tel_subscriber(sub: &[u8], out: &mut IdBuf) -> Result<(), IdError> {
    let number_end = sub.iter().position(|&b| b == b';').unwrap_or(sub.len());
    let (number, params) = (&sub[..number_end], sub.get(number_end + 1..).unwrap_or(&[]));
    out.extend(b"tel:")?;
    if let Some(digits) = number.strip_prefix(b"+") {
        // RFC 3966 §5.1.4: a global number is unique on its own; its parameters (and a stray
        // phone-context) are dropped (D8).
        out.push(b'+')?;
        push_digits(digits, out, |b| b.is_ascii_digit())
    } else {
        // RFC 3966 §5.1.5: a local number is only meaningful with its phone-context.
        push_digits(number, out, |b| {
            b.is_ascii_hexdigit() || b == b'*' || b == b'#'
        })?;
        let context = param_value(params, b"phone-context").ok_or(IdError::MissingPhoneContext)?;
        out.extend(b";phone-context=")?;
        if let Some(digits) = context.strip_prefix(b"+") {
            out.push(b'+')?;
            push_digits(digits, out, |b| b.is_ascii_digit())
        } else if is_domain(context) {
            push_lower(out, context)
        } else {
            Err(IdError::BadNumber)
        }
    }
}

/// Copies the digits of a number (lowercased: hex digits compare case-insensitively), dropping
/// visual separators; at least one digit is required.
fn push_digits(number: &[u8], out: &mut IdBuf, digit: impl Fn(u8) -> bool) -> Result<(), IdError> {
    let mut count = 0;
    for &b in number {
        if digit(b) {
            out.push(b.to_ascii_lowercase())?;
            count += 1;
        } else if !is_visual_separator(b) {
            return Err(IdError::BadNumber);
        }
    }
    if count == 0 {
        return Err(IdError::BadNumber);
    }
    Ok(())
}

/// The value of `name` among `;`-separated parameters (names compare case-insensitively, RFC
/// 3261 §19.1.4); `Some(b"")` for a parameter without a value.
fn param_value<'a>(params: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    params.split(|&b| b == b';').find_map(|param| {
        let eq = param.iter().position(|&b| b == b'=').unwrap_or(param.len());
        let (key, value) = (&param[..eq], param.get(eq + 1..).unwrap_or(&[]));
        key.trim_ascii()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim_ascii())
    })
}

#[cfg(test)]
#[path = "identity_tests.rs"]
mod tests;
