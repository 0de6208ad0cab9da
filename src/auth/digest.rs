//! Zero-copy parsing of `Authorization` / `Proxy-Authorization` Digest credentials.
//!
//! Grammar: RFC 3261 §25.1 (`credentials`, `digest-response`, `dig-resp`), with RFC 7616 §3.4
//! additions (`username*`, `userhash`, SHA-256 / SHA-512-256 algorithm tokens). LWS, including
//! folds (CRLF followed by SP or HT), may appear around `=` and `,`. Parameters come in any
//! order; unknown ones are ignored (RFC 3261 `auth-param`); a known one given twice makes the
//! header malformed. Every value is a view into the caller's bytes: nothing is copied or
//! allocated. Quoted values keep their backslash escapes; [`Quoted`] unescapes on demand.
#![forbid(unsafe_code)]

use super::algorithm::Algorithm;
use super::error::{AuthFailure, Malformed};

/// Bound on list elements (parameters and empty elements) in one header value.
const MAX_ELEMENTS: usize = 32;

/// A parameter value: the bytes between the quotes (escapes kept), or a bare token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quoted<'a> {
    raw: &'a [u8],
    escaped: bool,
}

impl<'a> Quoted<'a> {
    /// Wraps bytes that carry no escapes (a token, or a test value).
    pub fn plain(raw: &'a [u8]) -> Self {
        Quoted {
            raw,
            escaped: false,
        }
    }

    /// The bytes as they appear in the header, escapes included.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The value without escapes, when it had none (the common case).
    pub fn as_plain(&self) -> Option<&'a [u8]> {
        (!self.escaped).then_some(self.raw)
    }

    /// Feeds the unescaped value to `sink` in pieces, without copying
    /// (RFC 3261 §25.1 quoted-pair: `\` followed by the literal byte).
    pub fn for_each_chunk(&self, mut sink: impl FnMut(&[u8])) {
        if !self.escaped {
            sink(self.raw);
            return;
        }
        let mut rest = self.raw;
        while let Some(pos) = rest.iter().position(|&b| b == b'\\') {
            sink(&rest[..pos]);
            // The parser guarantees a byte after every backslash.
            let Some(literal) = rest.get(pos + 1..pos + 2) else {
                return;
            };
            sink(literal);
            rest = rest.get(pos + 2..).unwrap_or_default();
        }
        sink(rest);
    }

    /// Compares the unescaped value with `other`, byte for byte.
    pub fn eq_unescaped(&self, other: &[u8]) -> bool {
        if !self.escaped {
            return self.raw == other;
        }
        let mut rest = other;
        let mut equal = true;
        self.for_each_chunk(|chunk| {
            if equal && rest.len() >= chunk.len() && rest[..chunk.len()] == *chunk {
                rest = &rest[chunk.len()..];
            } else {
                equal = false;
            }
        });
        equal && rest.is_empty()
    }

    /// Writes the unescaped value into `buf`; `None` when it does not fit.
    pub fn unescape_into<'b>(&self, buf: &'b mut [u8]) -> Option<&'b [u8]> {
        let mut len = 0usize;
        let mut fits = true;
        self.for_each_chunk(|chunk| {
            match buf.get_mut(len..len + chunk.len()) {
                Some(dst) if fits => dst.copy_from_slice(chunk),
                _ => fits = false,
            }
            len += chunk.len();
        });
        if fits { buf.get(..len) } else { None }
    }
}

/// The Digest username: `username="..."` or RFC 7616 §3.4.4 `username*=UTF-8''percent%20encoded`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Username<'a> {
    Plain(Quoted<'a>),
    /// The raw ext-value (RFC 8187): charset `'` language `'` percent-encoded value.
    Extended(&'a [u8]),
}

impl Username<'_> {
    /// Decodes the username into `buf`. `None` when it does not fit, is badly encoded, or
    /// names a charset other than UTF-8 (RFC 7616 §3.4.4 requires UTF-8).
    pub fn decode_into<'b>(&self, buf: &'b mut [u8]) -> Option<&'b [u8]> {
        match self {
            Username::Plain(q) => q.unescape_into(buf),
            Username::Extended(ext) => decode_ext_value(ext, buf),
        }
    }
}

/// RFC 8187 §3.2.1 ext-value = charset "'" [ language ] "'" value-chars.
fn decode_ext_value<'b>(ext: &[u8], buf: &'b mut [u8]) -> Option<&'b [u8]> {
    let first = ext.iter().position(|&b| b == b'\'')?;
    if !ext[..first].eq_ignore_ascii_case(b"UTF-8") {
        return None;
    }
    let after_charset = &ext[first + 1..];
    let second = after_charset.iter().position(|&b| b == b'\'')?;
    let encoded = &after_charset[second + 1..];
    let mut len = 0usize;
    let mut i = 0usize;
    while i < encoded.len() {
        let byte = if encoded[i] == b'%' {
            let hi = hex_value(*encoded.get(i + 1)?)?;
            let lo = hex_value(*encoded.get(i + 2)?)?;
            i += 3;
            hi << 4 | lo
        } else {
            i += 1;
            encoded[i - 1]
        };
        *buf.get_mut(len)? = byte;
        len += 1;
    }
    // The decoded bytes are a UTF-8 string (RFC 8187 §3.2.1).
    let out = buf.get(..len)?;
    std::str::from_utf8(out).ok()?;
    Some(out)
}

pub(crate) fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Parsed Digest credentials: views into the header value, nothing owned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DigestCredentials<'a> {
    pub username: Username<'a>,
    pub realm: Quoted<'a>,
    pub nonce: Quoted<'a>,
    /// `uri`: the digest-uri, hashed exactly as sent (comparing it with the Request-URI,
    /// RFC 2617 §3.2.2.5, is the caller's business).
    pub uri: Quoted<'a>,
    /// `response`: hex, checked to be hex digits only.
    pub response: &'a [u8],
    /// `algorithm` token as sent; `None` means MD5 (RFC 3261 §25.1 / RFC 7616 §3.4).
    pub algorithm: Option<&'a [u8]>,
    pub cnonce: Option<Quoted<'a>>,
    pub opaque: Option<Quoted<'a>>,
    /// `qop` as sent (`auth`, `auth-int`, ...).
    pub qop: Option<&'a [u8]>,
    /// `nc`: exactly 8 hex digits as sent (hashed in this form) ...
    pub nc_raw: Option<&'a [u8]>,
    /// ... and its value.
    pub nc: Option<u32>,
    /// RFC 7616 §3.4.4 `userhash=true`.
    pub userhash: bool,
}

impl<'a> DigestCredentials<'a> {
    /// Parses one credentials value (the part after `Authorization:`).
    ///
    /// Errors: [`AuthFailure::UnsupportedScheme`] for another scheme (RFC 4475 regaut01: the
    /// request is challenged, not rejected), [`AuthFailure::Malformed`] for anything that does
    /// not follow the grammar or lacks a required field.
    pub fn parse(value: &'a [u8]) -> Result<Self, AuthFailure> {
        let mut cur = Cursor { s: value, i: 0 };
        cur.skip_lws();
        let scheme = cur.token();
        if scheme.is_empty() {
            return Err(Malformed::Syntax.into());
        }
        if !scheme.eq_ignore_ascii_case(b"Digest") {
            return Err(AuthFailure::UnsupportedScheme);
        }
        // RFC 3261 §25.1: credentials = "Digest" LWS digest-response.
        if !cur.skip_lws() {
            return Err(Malformed::Syntax.into());
        }
        let mut fields = Fields::default();
        let mut finished = false;
        for _ in 0..MAX_ELEMENTS {
            cur.skip_lws();
            if cur.at_end() {
                finished = true;
                break;
            }
            // RFC 7230 §7 #rule (RFC 7616 uses it): empty list elements are ignored.
            if cur.eat(b',') {
                continue;
            }
            let name = cur.token();
            if name.is_empty() {
                return Err(Malformed::Syntax.into());
            }
            cur.skip_lws();
            if !cur.eat(b'=') {
                return Err(Malformed::Syntax.into());
            }
            cur.skip_lws();
            let value = if cur.peek() == Some(b'"') {
                cur.quoted_string()?
            } else {
                let token = cur.token();
                if token.is_empty() {
                    return Err(Malformed::Syntax.into());
                }
                Quoted::plain(token)
            };
            fields.set(name, value)?;
            cur.skip_lws();
            if cur.at_end() {
                finished = true;
                break;
            }
            if !cur.eat(b',') {
                return Err(Malformed::Syntax.into());
            }
        }
        if !finished {
            return Err(Malformed::TooManyParams.into());
        }
        fields.finish()
    }

    /// The algorithm; an absent parameter means MD5 (RFC 7616 §3.4).
    pub fn algorithm(&self) -> Result<Algorithm, AuthFailure> {
        match self.algorithm {
            None => Ok(Algorithm::Md5),
            Some(token) => Algorithm::from_token(token).ok_or(AuthFailure::UnknownAlgorithm),
        }
    }

    /// The `qop=auth` fields; an error when the client used no qop or another one.
    pub fn qop_auth(&self) -> Result<QopAuth<'a>, AuthFailure> {
        // RFC 2617 §3.2.2: a client answering a challenge that offered qop MUST send one; no
        // qop (RFC 2069 style) has no nc and so no replay protection: not accepted.
        let qop = self.qop.ok_or(AuthFailure::UnsupportedQop)?;
        if !qop.eq_ignore_ascii_case(b"auth") {
            return Err(AuthFailure::UnsupportedQop);
        }
        match (self.nc_raw, self.nc, self.cnonce) {
            (Some(nc_raw), Some(nc), Some(cnonce)) => Ok(QopAuth {
                qop,
                nc_raw,
                nc,
                cnonce,
            }),
            _ => Err(Malformed::MissingCnonceOrNc.into()),
        }
    }
}

/// The fields that `qop=auth` makes mandatory (RFC 7616 §3.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QopAuth<'a> {
    /// As sent (`auth`, any case), hashed in this form.
    pub qop: &'a [u8],
    pub nc_raw: &'a [u8],
    pub nc: u32,
    pub cnonce: Quoted<'a>,
}

#[derive(Default)]
struct Fields<'a> {
    username: Option<Quoted<'a>>,
    username_ext: Option<&'a [u8]>,
    realm: Option<Quoted<'a>>,
    nonce: Option<Quoted<'a>>,
    uri: Option<Quoted<'a>>,
    response: Option<Quoted<'a>>,
    algorithm: Option<Quoted<'a>>,
    cnonce: Option<Quoted<'a>>,
    opaque: Option<Quoted<'a>>,
    qop: Option<Quoted<'a>>,
    nc: Option<Quoted<'a>>,
    userhash: Option<Quoted<'a>>,
}

fn put<'a>(slot: &mut Option<Quoted<'a>>, value: Quoted<'a>) -> Result<(), AuthFailure> {
    if slot.is_some() {
        return Err(Malformed::Duplicate.into());
    }
    *slot = Some(value);
    Ok(())
}

impl<'a> Fields<'a> {
    fn set(&mut self, name: &[u8], value: Quoted<'a>) -> Result<(), AuthFailure> {
        let slot = match param_name(name) {
            Some(Name::Username) => &mut self.username,
            Some(Name::Realm) => &mut self.realm,
            Some(Name::Nonce) => &mut self.nonce,
            Some(Name::Uri) => &mut self.uri,
            Some(Name::Response) => &mut self.response,
            Some(Name::Algorithm) => &mut self.algorithm,
            Some(Name::Cnonce) => &mut self.cnonce,
            Some(Name::Opaque) => &mut self.opaque,
            Some(Name::Qop) => &mut self.qop,
            Some(Name::Nc) => &mut self.nc,
            Some(Name::Userhash) => &mut self.userhash,
            Some(Name::UsernameExt) => {
                // RFC 8187 ext-value is a token-like string, never quoted.
                if self.username_ext.is_some() {
                    return Err(Malformed::Duplicate.into());
                }
                if value.escaped || value.raw.is_empty() {
                    return Err(Malformed::BadUsername.into());
                }
                self.username_ext = Some(value.raw);
                return Ok(());
            }
            // RFC 3261 §25.1 auth-param: unknown parameters are ignored.
            None => return Ok(()),
        };
        put(slot, value)
    }

    fn finish(self) -> Result<DigestCredentials<'a>, AuthFailure> {
        // RFC 7616 §3.4.4: username and username* MUST NOT both be present.
        let username = match (self.username, self.username_ext) {
            (Some(_), Some(_)) => return Err(Malformed::UsernameTwice.into()),
            (Some(q), None) => Username::Plain(q),
            (None, Some(ext)) => Username::Extended(ext),
            (None, None) => return Err(Malformed::MissingUsername.into()),
        };
        let realm = self.realm.ok_or(Malformed::MissingRealm)?;
        let nonce = self.nonce.ok_or(Malformed::MissingNonce)?;
        let uri = self.uri.ok_or(Malformed::MissingUri)?;
        let response = self.response.ok_or(Malformed::MissingResponse)?;
        let response = response.as_plain().ok_or(Malformed::BadResponse)?;
        if response.is_empty() || !response.iter().all(u8::is_ascii_hexdigit) {
            return Err(Malformed::BadResponse.into());
        }
        let (nc_raw, nc) = match self.nc {
            None => (None, None),
            Some(q) => {
                let raw = q.as_plain().ok_or(Malformed::BadNc)?;
                (Some(raw), Some(parse_nc(raw).ok_or(Malformed::BadNc)?))
            }
        };
        let plain_token = |q: Option<Quoted<'a>>| -> Result<Option<&'a [u8]>, AuthFailure> {
            match q {
                None => Ok(None),
                Some(q) => q.as_plain().map(Some).ok_or(Malformed::Syntax.into()),
            }
        };
        let userhash = match plain_token(self.userhash)? {
            None => false,
            Some(v) if v.eq_ignore_ascii_case(b"true") => true,
            Some(v) if v.eq_ignore_ascii_case(b"false") => false,
            Some(_) => return Err(Malformed::Syntax.into()),
        };
        Ok(DigestCredentials {
            username,
            realm,
            nonce,
            uri,
            response,
            algorithm: plain_token(self.algorithm)?,
            cnonce: self.cnonce,
            opaque: self.opaque,
            qop: plain_token(self.qop)?,
            nc_raw,
            nc,
            userhash,
        })
    }
}

/// RFC 3261 §25.1: nonce-count = "nc" EQUAL 8LHEX (upper case accepted too).
fn parse_nc(raw: &[u8]) -> Option<u32> {
    if raw.len() != 8 {
        return None;
    }
    raw.iter()
        .try_fold(0u32, |acc, &b| Some(acc << 4 | u32::from(hex_value(b)?)))
}

#[derive(Clone, Copy)]
enum Name {
    Username,
    UsernameExt,
    Realm,
    Nonce,
    Uri,
    Response,
    Algorithm,
    Cnonce,
    Opaque,
    Qop,
    Nc,
    Userhash,
}

/// Case-insensitive match against the known parameter names (RFC 3261 §7.3.1), no
/// allocation: one candidate by length and first letter, then one comparison.
fn param_name(name: &[u8]) -> Option<Name> {
    let first = name.first()?.to_ascii_lowercase();
    let (candidate, kind): (&[u8], Name) = match (name.len(), first) {
        (2, b'n') => (b"nc", Name::Nc),
        (3, b'q') => (b"qop", Name::Qop),
        (3, b'u') => (b"uri", Name::Uri),
        (5, b'n') => (b"nonce", Name::Nonce),
        (5, b'r') => (b"realm", Name::Realm),
        (6, b'c') => (b"cnonce", Name::Cnonce),
        (6, b'o') => (b"opaque", Name::Opaque),
        (8, b'r') => (b"response", Name::Response),
        (8, b'u') if name[4].eq_ignore_ascii_case(&b'n') => (b"username", Name::Username),
        (8, b'u') => (b"userhash", Name::Userhash),
        (9, b'u') => (b"username*", Name::UsernameExt),
        (9, b'a') => (b"algorithm", Name::Algorithm),
        _ => return None,
    };
    name.eq_ignore_ascii_case(candidate).then_some(kind)
}

/// A position in the header value. Every method is bounded by the value's length.
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// RFC 3261 §25.1: LWS = [*WSP CRLF] 1*WSP. Returns whether anything was skipped.
    fn skip_lws(&mut self) -> bool {
        let start = self.i;
        loop {
            match self.s.get(self.i..) {
                Some([b' ' | b'\t', ..]) => self.i += 1,
                Some([b'\r', b'\n', b' ' | b'\t', ..]) => self.i += 3,
                _ => break,
            }
        }
        self.i > start
    }

    /// RFC 3261 §25.1 token (plus the RFC 7230 tchar extras `# $ & ^ |` for HTTP).
    fn token(&mut self) -> &'a [u8] {
        let start = self.i;
        let rest = &self.s[start.min(self.s.len())..];
        let len = rest
            .iter()
            .position(|&b| CLASS[usize::from(b)] & TOKEN == 0)
            .unwrap_or(rest.len());
        self.i = start + len;
        &rest[..len]
    }

    /// RFC 3261 §25.1 quoted-string; the cursor is on the opening quote.
    fn quoted_string(&mut self) -> Result<Quoted<'a>, AuthFailure> {
        self.i += 1;
        let start = self.i;
        let mut escaped = false;
        // Each pass consumes at least one byte, so the loop is bounded by the input length.
        loop {
            // Fast path: a run of plain qdtext.
            let rest = self.s.get(self.i..).unwrap_or_default();
            self.i += rest
                .iter()
                .position(|&b| CLASS[usize::from(b)] & QDTEXT == 0)
                .unwrap_or(rest.len());
            match self.s.get(self.i..) {
                Some([b'"', ..]) => {
                    let raw = &self.s[start..self.i];
                    self.i += 1;
                    return Ok(Quoted { raw, escaped });
                }
                // quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
                Some([b'\\', next, ..]) if *next != b'\r' && *next != b'\n' && *next < 0x80 => {
                    escaped = true;
                    self.i += 2;
                }
                // A fold inside the quotes is LWS, kept as is.
                Some([b'\r', b'\n', b' ' | b'\t', ..]) => self.i += 3,
                // Control bytes, a lone CR/LF, a dangling backslash, or the end of input.
                _ => return Err(Malformed::Syntax.into()),
            }
        }
    }
}

/// Byte classes, one table lookup per byte on the hot path.
const TOKEN: u8 = 1;
/// qdtext without the bytes that need a closer look (`"`, `\`, CR).
const QDTEXT: u8 = 2;

const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0usize;
    while b < 256 {
        let c = b as u8;
        let token = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'!'
                    | b'%'
                    | b'*'
                    | b'_'
                    | b'+'
                    | b'`'
                    | b'\''
                    | b'~'
                    | b'#'
                    | b'$'
                    | b'&'
                    | b'^'
                    | b'|'
            );
        // qdtext = LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII (HT and SP as LWS).
        let qdtext = (c == b'\t' || c >= 0x20) && c != 0x7f && c != b'"' && c != b'\\';
        t[b] = if token { TOKEN } else { 0 } | if qdtext { QDTEXT } else { 0 };
        b += 1;
    }
    t
};

#[cfg(test)]
mod tests;
