//! Lexical helpers shared by the value parsers (RFC 3261 §25.1): whitespace, tokens, quoted
//! strings and comma lists. A header value span may contain folds (CRLF + WSP, §7.3.1), so CR
//! and LF count as whitespace everywhere here.
#![forbid(unsafe_code)]

use super::error::SyntaxError;

/// SP, HT, CR or LF: linear white space once folds are taken into account.
#[inline]
pub fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

const fn token_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        i += 1;
    }
    t
}

static TOKEN: [bool; 256] = token_table();

const fn value_table() -> [bool; 256] {
    let mut t = token_table();
    t[b':' as usize] = true;
    t[b'[' as usize] = true;
    t[b']' as usize] = true;
    t
}

static VALUE: [bool; 256] = value_table();

/// Characters of an unquoted generic parameter value (RFC 3261 §25.1 gen-value = token / host
/// / quoted-string; host adds ':' '[' ']' for IPv6), by table lookup.
#[inline]
pub fn is_value_char(b: u8) -> bool {
    VALUE[usize::from(b)]
}

/// `token` characters (RFC 3261 §25.1), by table lookup (the scanner's hot loop).
#[inline]
pub fn is_token_char(b: u8) -> bool {
    TOKEN[usize::from(b)]
}

/// True when `s` is a non-empty token.
#[inline]
pub fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_token_char(b))
}

/// `s` without leading and trailing whitespace (including folds).
#[inline]
pub fn trim(s: &[u8]) -> &[u8] {
    let mut a = 0;
    let mut b = s.len();
    while a < b && is_ws(s[a]) {
        a += 1;
    }
    while b > a && is_ws(s[b - 1]) {
        b -= 1;
    }
    &s[a..b]
}

/// Index of the first non-whitespace byte at or after `i` (or `s.len()`).
#[inline]
pub fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && is_ws(s[i]) {
        i += 1;
    }
    i
}

/// Index just past the token that starts at `i`.
#[inline]
pub fn token_end(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && is_token_char(s[i]) {
        i += 1;
    }
    i
}

/// Index just past the run of unquoted parameter-value bytes ([`is_value_char`]) at `i`.
#[inline]
pub fn value_end(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && is_value_char(s[i]) {
        i += 1;
    }
    i
}

/// Given `s[i] == b'"'`, the index just past the closing quote. Backslash escapes one byte
/// (`quoted-pair`, which allows any byte but CR and LF). An unterminated string is an error
/// (RFC 4475 quotbal).
pub fn quoted_end(s: &[u8], i: usize) -> Result<usize, SyntaxError> {
    let mut j = i + 1;
    while j < s.len() {
        match s[j] {
            b'"' => return Ok(j + 1),
            b'\\' => {
                match s.get(j + 1) {
                    Some(b'\r') | Some(b'\n') | None => return Err(SyntaxError::Quote),
                    Some(_) => {}
                }
                j += 2;
            }
            _ => j += 1,
        }
    }
    Err(SyntaxError::Quote)
}

/// The inside of a quoted string (quotes removed, escapes kept), or `s` unchanged.
pub fn unquote(s: &[u8]) -> &[u8] {
    if s.len() >= 2 && s[0] == b'"' && s[s.len() - 1] == b'"' {
        &s[1..s.len() - 1]
    } else {
        s
    }
}

/// Parses a run of ASCII digits as a u64, saturating at `u64::MAX`; `None` when empty or when a
/// non-digit is present. Leading zeros are fine (RFC 4475 wsinv: `Max-Forwards: 0068`).
pub fn digits_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.saturating_mul(10).saturating_add(u64::from(b - b'0'));
    }
    Some(v)
}

/// Splits a header value at top-level commas (RFC 3261 §7.3.1), respecting quoted strings and
/// `<...>`. Yields each element trimmed, empty elements included (so a parser can reject
/// `a,,b` where its grammar forbids it). Iterating is infallible; an unbalanced quote or angle
/// bracket swallows the rest into the last element, where the element parser reports it.
#[derive(Clone, Debug)]
pub struct CommaIter<'a> {
    s: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> CommaIter<'a> {
    pub fn new(s: &'a [u8]) -> Self {
        CommaIter {
            s,
            pos: 0,
            done: false,
        }
    }

    /// The next element as `(start, end)` offsets into the value (trimmed).
    pub fn next_span(&mut self) -> Option<(usize, usize)> {
        if self.done {
            return None;
        }
        let s = self.s;
        let start = self.pos;
        // No comma left: the rest is the last element, whatever quotes or brackets it holds
        // (one cheap search; most lists have one element).
        let end = if memchr::memchr(b',', s.get(start..).unwrap_or_default()).is_none() {
            self.done = true;
            s.len()
        } else {
            self.element_end(start)
        };
        let mut a = start;
        let mut b = end;
        while a < b && is_ws(s[a]) {
            a += 1;
        }
        while b > a && is_ws(s[b - 1]) {
            b -= 1;
        }
        Some((a, b))
    }

    /// Where the element starting at `start` ends: at the first comma outside quotes and
    /// `<...>` (the next element starts after it), else at the end of the list.
    fn element_end(&mut self, start: usize) -> usize {
        let s = self.s;
        let mut i = start;
        let mut in_angle = false;
        // Jump between the only bytes that matter (`memchr`): outside `<...>` a comma ends the
        // element and `"` or `<` open a nested part; inside, `>` or `"`.
        loop {
            let hit = if in_angle {
                memchr::memchr2(b'>', b'"', &s[i..])
            } else {
                memchr::memchr3(b',', b'"', b'<', &s[i..])
            };
            let Some(k) = hit else {
                self.done = true;
                return s.len();
            };
            i += k;
            match s[i] {
                b'"' => match quoted_end(s, i) {
                    Ok(j) => i = j,
                    Err(_) => i = s.len(),
                },
                b'<' => {
                    in_angle = true;
                    i += 1;
                }
                b'>' => {
                    in_angle = false;
                    i += 1;
                }
                _ => {
                    self.pos = i + 1;
                    return i;
                }
            }
        }
    }
}

impl<'a> Iterator for CommaIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let s = self.s;
        self.next_span().map(|(a, b)| &s[a..b])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_folds() {
        assert_eq!(trim(b" \r\n  abc \t"), b"abc");
        assert_eq!(trim(b"   "), b"");
    }

    #[test]
    fn commas_respect_quotes_and_angles() {
        let v: Vec<&[u8]> =
            CommaIter::new(b"\"a, b\" <sip:x;p=1,2>, c ,\r\n d,,").collect::<Vec<_>>();
        assert_eq!(
            v,
            vec![&b"\"a, b\" <sip:x;p=1,2>"[..], b"c", b"d", b"", b""]
        );
    }

    #[test]
    fn commas_inside_quotes_within_angles_and_stray_brackets() {
        let v: Vec<&[u8]> = CommaIter::new(b"<sip:a;p=\"x,y\">, b>c, <d").collect();
        assert_eq!(v, vec![&b"<sip:a;p=\"x,y\">"[..], b"b>c", b"<d"]);
        // An unterminated quote inside brackets swallows the rest (the element parser rejects it).
        let v: Vec<&[u8]> = CommaIter::new(b"<sip:a\"b>, c").collect();
        assert_eq!(v, vec![&b"<sip:a\"b>, c"[..]]);
    }

    #[test]
    fn quoted_strings() {
        assert_eq!(quoted_end(b"\"ab\\\"c\" x", 0), Ok(7));
        assert_eq!(quoted_end(b"\"abc", 0), Err(SyntaxError::Quote));
        assert_eq!(quoted_end(b"\"ab\\", 0), Err(SyntaxError::Quote));
    }

    /// The tables are the RFC 3261 §25.1 sets, byte for byte.
    #[test]
    fn character_tables() {
        for b in 0..=255u8 {
            let token = b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b);
            assert_eq!(is_token_char(b), token, "{b:#04x}");
            assert_eq!(is_value_char(b), token || b":[]".contains(&b), "{b:#04x}");
        }
    }

    #[test]
    fn digits() {
        assert_eq!(digits_u64(b"0068"), Some(68));
        assert_eq!(digits_u64(b"-1"), None);
        assert_eq!(digits_u64(b""), None);
        assert_eq!(digits_u64(b"99999999999999999999999"), Some(u64::MAX));
    }
}
