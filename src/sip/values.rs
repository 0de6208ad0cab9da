//! Small scalar header values: CSeq, Max-Forwards, Content-Length, Expires, Call-ID
//! (RFC 3261 §20, §25.1). Leading zeros are fine; out-of-range numbers are errors where the
//! grammar bounds them and saturate where it does not (delta-seconds).
#![forbid(unsafe_code)]

use super::error::SyntaxError;
use super::lex::{digits_u64, is_token, is_ws, trim};

/// `CSeq: 1*DIGIT LWS Method`; the number is below 2^31 (§8.1.1.5, RFC 4475 scalar02).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CSeq<'a> {
    pub seq: u32,
    pub method: &'a [u8],
}

pub fn cseq(v: &[u8]) -> Result<CSeq<'_>, SyntaxError> {
    let s = trim(v);
    let n_end = s
        .iter()
        .position(|&b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    let seq = digits_u64(&s[..n_end]).ok_or(SyntaxError::Number)?;
    if seq > 0x7fff_ffff {
        return Err(SyntaxError::Range);
    }
    let rest = &s[n_end..];
    if !rest.first().is_some_and(|&b| is_ws(b)) {
        return Err(SyntaxError::Char);
    }
    let method = trim(rest);
    if !is_token(method) {
        return Err(SyntaxError::Char);
    }
    Ok(CSeq {
        seq: seq as u32,
        method,
    })
}

/// `Max-Forwards: 1*DIGIT`, 0-255 (values above are errors: RFC 4475 scalar02).
pub fn max_forwards(v: &[u8]) -> Result<u8, SyntaxError> {
    let n = digits_u64(trim(v)).ok_or(SyntaxError::Number)?;
    u8::try_from(n).map_err(|_| SyntaxError::Range)
}

/// `Content-Length: 1*DIGIT` (leading zeros fine, a sign is an error: RFC 4475 ncl).
pub fn content_length(v: &[u8]) -> Result<u32, SyntaxError> {
    let n = digits_u64(trim(v)).ok_or(SyntaxError::Number)?;
    u32::try_from(n).map_err(|_| SyntaxError::Range)
}

/// `Expires: delta-seconds`, saturating at `u32::MAX` (§20.19 and RFC 4475 scalar02: a huge
/// value is not an error, it is "a long time").
pub fn expires(v: &[u8]) -> Result<u32, SyntaxError> {
    let n = digits_u64(trim(v)).ok_or(SyntaxError::Number)?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// `Call-ID: word ["@" word]`: non-empty, no whitespace inside. The word alphabet is wide
/// (RFC 4475 intmeth), so only whitespace and controls are refused.
pub fn call_id(v: &[u8]) -> Result<&[u8], SyntaxError> {
    let s = trim(v);
    if s.is_empty() {
        return Err(SyntaxError::Empty);
    }
    if s.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(SyntaxError::Char);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cseq_values() {
        assert_eq!(
            cseq(b"0009\r\n  INVITE").unwrap(),
            CSeq {
                seq: 9,
                method: b"INVITE"
            }
        );
        assert_eq!(cseq(b"2147483647 REGISTER").unwrap().seq, 0x7fff_ffff);
        assert_eq!(
            cseq(b"2147483648 REGISTER").unwrap_err(),
            SyntaxError::Range
        );
        assert_eq!(
            cseq(b"36893488147419103232 REGISTER").unwrap_err(),
            SyntaxError::Range
        );
        assert!(cseq(b"1INVITE").is_err());
        assert!(cseq(b"INVITE").is_err());
        assert!(cseq(b"1 ").is_err());
    }

    #[test]
    fn scalars() {
        assert_eq!(max_forwards(b"0068"), Ok(68));
        assert_eq!(max_forwards(b"300"), Err(SyntaxError::Range));
        assert_eq!(content_length(b" 000150 "), Ok(150));
        assert_eq!(content_length(b"-999"), Err(SyntaxError::Number));
        assert_eq!(expires(b"10000000000000000000000000"), Ok(u32::MAX));
        assert_eq!(call_id(b" a@b "), Ok(&b"a@b"[..]));
        assert!(call_id(b"a b").is_err());
        assert!(call_id(b"").is_err());
    }
}
