//! Header parameters: `*( SEMI generic-param )` with LWS (and folds) allowed around `;` and `=`
//! (RFC 3261 §25.1 SEMI/EQUAL, §20). The list is validated once by [`parse`]; the returned
//! [`Params`] then iterates infallibly and offers typed helpers.
#![forbid(unsafe_code)]

use super::error::SyntaxError;
use super::lex::{digits_u64, quoted_end, skip_ws, token_end, unquote, value_end};

/// One parameter: name and raw value (a quoted value keeps its quotes; see [`Param::text`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Param<'a> {
    pub name: &'a [u8],
    pub value: Option<&'a [u8]>,
}

impl<'a> Param<'a> {
    /// The value with surrounding quotes removed (escapes kept).
    pub fn text(&self) -> Option<&'a [u8]> {
        self.value.map(unquote)
    }
}

/// The RFC 3581 `rport` parameter of a Via.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RPort {
    #[default]
    Absent,
    /// Bare `;rport`: the client asks for the source port to be filled in.
    Empty,
    Port(u16),
}

/// A validated parameter list (the text from the first `;` on, or empty).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Params<'a> {
    s: &'a [u8],
}

/// Reads one `; name [= value]` starting at `*i` (which may point at whitespace). Returns
/// `Ok(None)` at the end of the list (end of input or a byte other than `;`).
fn next_param<'a>(s: &'a [u8], i: &mut usize) -> Result<Option<Param<'a>>, SyntaxError> {
    let mut j = skip_ws(s, *i);
    if j >= s.len() || s[j] != b';' {
        *i = j;
        return Ok(None);
    }
    j = skip_ws(s, j + 1);
    let n0 = j;
    j = token_end(s, j);
    if j == n0 {
        return Err(SyntaxError::Param);
    }
    let name = &s[n0..j];
    let k = skip_ws(s, j);
    let mut value = None;
    if k < s.len() && s[k] == b'=' {
        let v0 = skip_ws(s, k + 1);
        let v1 = if v0 < s.len() && s[v0] == b'"' {
            quoted_end(s, v0)?
        } else {
            value_end(s, v0)
        };
        if v1 == v0 {
            return Err(SyntaxError::Param);
        }
        value = Some(&s[v0..v1]);
        j = v1;
    }
    *i = j;
    Ok(Some(Param { name, value }))
}

/// Validates the parameter list at the start of `s` (leading whitespace allowed). Returns the
/// list and the number of bytes it covers; anything after that is the caller's to judge.
pub fn parse(s: &[u8]) -> Result<(Params<'_>, usize), SyntaxError> {
    parse_visit(s, |_| {})
}

/// [`parse`], handing every parameter to `visit` as it is validated: one pass for a caller that
/// also wants some of the values.
#[inline]
pub fn parse_visit<'a>(
    s: &'a [u8],
    mut visit: impl FnMut(Param<'a>),
) -> Result<(Params<'a>, usize), SyntaxError> {
    let mut i = 0;
    let mut end = 0;
    while let Some(p) = next_param(s, &mut i)? {
        visit(p);
        end = i;
    }
    // `i` now sits on the first non-whitespace byte after the list (or at the end).
    Ok((Params { s: &s[..end] }, i))
}

/// Iterator over a validated list.
#[derive(Clone, Debug)]
pub struct ParamIter<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = Param<'a>;

    fn next(&mut self) -> Option<Param<'a>> {
        next_param(self.s, &mut self.i).ok().flatten()
    }
}

/// qvalue (RFC 3261 §25.1) in thousandths: `0.33` is 330, `1` is 1000.
pub fn parse_q(v: &[u8]) -> Option<u16> {
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(p) => (&v[..p], &v[p + 1..]),
        None => (v, &b""[..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for k in 0..3 {
        thousandths = thousandths * 10 + frac.get(k).map_or(0, |&d| u16::from(d - b'0'));
    }
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// The `rport` of a present parameter with this value (see [`Params::rport`]).
pub(crate) fn rport_of(value: Option<&[u8]>) -> RPort {
    match value {
        None => RPort::Empty,
        Some(v) => match digits_u64(v).and_then(|p| u16::try_from(p).ok()) {
            Some(p) => RPort::Port(p),
            None => RPort::Empty,
        },
    }
}

impl<'a> Params<'a> {
    /// Wraps text that [`parse`] accepted before (memoised parses keep only offsets).
    pub(crate) fn validated(s: &'a [u8]) -> Params<'a> {
        Params { s }
    }

    /// The raw text of the list (from its first `;`).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.s
    }

    pub fn is_empty(&self) -> bool {
        self.s.is_empty()
    }

    pub fn iter(&self) -> ParamIter<'a> {
        ParamIter { s: self.s, i: 0 }
    }

    /// `Some(value)` when a parameter of that name (case-insensitive) is present.
    pub fn get(&self, name: &str) -> Option<Option<&'a [u8]>> {
        self.iter()
            .find(|p| p.name.eq_ignore_ascii_case(name.as_bytes()))
            .map(|p| p.value)
    }

    /// The value of a parameter that must have one.
    pub fn value(&self, name: &str) -> Option<&'a [u8]> {
        self.get(name).flatten().map(unquote)
    }

    pub fn tag(&self) -> Option<&'a [u8]> {
        self.value("tag")
    }

    pub fn branch(&self) -> Option<&'a [u8]> {
        self.value("branch")
    }

    pub fn received(&self) -> Option<&'a [u8]> {
        self.value("received")
    }

    pub fn maddr(&self) -> Option<&'a [u8]> {
        self.value("maddr")
    }

    /// `ttl` (0-255), `None` when absent or out of range.
    pub fn ttl(&self) -> Option<u8> {
        self.value("ttl")
            .and_then(digits_u64)
            .and_then(|v| u8::try_from(v).ok())
    }

    /// RFC 3581 rport: absent, bare, or a port. A value that is not a port reads as `Empty`.
    pub fn rport(&self) -> RPort {
        match self.get("rport") {
            None => RPort::Absent,
            Some(v) => rport_of(v),
        }
    }

    /// `expires` as delta-seconds, saturating at `u32::MAX` (RFC 4475 scalar02).
    pub fn expires(&self) -> Option<u32> {
        self.value("expires")
            .and_then(digits_u64)
            .map(|v| u32::try_from(v).unwrap_or(u32::MAX))
    }

    /// `q` in thousandths (0..=1000).
    pub fn q(&self) -> Option<u16> {
        self.value("q").and_then(parse_q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lws_and_folds_around_semicolon_and_equals() {
        let s = b" ;   tag    = 1918181833n \r\n  ;\r\n  x ; q = 0.33";
        let (p, n) = parse(s).unwrap();
        assert_eq!(n, s.len());
        assert_eq!(p.tag(), Some(&b"1918181833n"[..]));
        assert_eq!(p.get("x"), Some(None));
        assert_eq!(p.q(), Some(330));
        assert_eq!(p.iter().count(), 3);
    }

    #[test]
    fn empty_names_are_errors() {
        assert_eq!(parse(b";;").unwrap_err(), SyntaxError::Param);
        assert_eq!(parse(b";a=").unwrap_err(), SyntaxError::Param);
        assert_eq!(parse(b";a=\"x").unwrap_err(), SyntaxError::Quote);
    }

    #[test]
    fn stops_at_foreign_bytes() {
        let (p, n) = parse(b";a=1 , b").unwrap();
        assert_eq!(n, 5);
        assert_eq!(p.as_bytes(), b";a=1");
    }

    #[test]
    fn typed_helpers() {
        let (p, _) =
            parse(b";rport;received=[::1];ttl=300;expires=99999999999;branch=z9hG4bKx").unwrap();
        assert_eq!(p.rport(), RPort::Empty);
        assert_eq!(p.received(), Some(&b"[::1]"[..]));
        assert_eq!(p.ttl(), None);
        assert_eq!(p.expires(), Some(u32::MAX));
        assert_eq!(p.branch(), Some(&b"z9hG4bKx"[..]));
        let (p, _) = parse(b";rport=5061;q=1.000").unwrap();
        assert_eq!(p.rport(), RPort::Port(5061));
        assert_eq!(p.q(), Some(1000));
        assert_eq!(p.tag(), None);
    }

    #[test]
    fn qvalues() {
        assert_eq!(parse_q(b"0"), Some(0));
        assert_eq!(parse_q(b"0.5"), Some(500));
        assert_eq!(parse_q(b"0.125"), Some(125));
        assert_eq!(parse_q(b"1.0"), Some(1000));
        assert_eq!(parse_q(b"1.5"), None);
        assert_eq!(parse_q(b"0.1234"), None);
        assert_eq!(parse_q(b"2"), None);
    }
}
