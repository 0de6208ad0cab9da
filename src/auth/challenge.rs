//! Writing `WWW-Authenticate` / `Proxy-Authenticate` challenges into a caller buffer.
//!
//! Nothing here grows the buffer: the exact length is computed first and, when the spare
//! capacity is short, the buffer is left untouched and an error returned (STYLE 6: a limit on
//! everything; the caller sizes its response buffer once).
#![forbid(unsafe_code)]

use super::algorithm::Algorithm;

/// The algorithms offered by default: one challenge each, strongest first
/// (RFC 8760 §2.4, RFC 7616 §3.7: the client picks the first it supports).
pub const DEFAULT_ALGORITHMS: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Md5];

/// Which challenge header (and so which status code) a request path uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChallengeHeader {
    /// 401, answered by a registrar or an HTTP server; credentials come in `Authorization`.
    WwwAuthenticate,
    /// 407, answered by a proxy-style check; credentials come in `Proxy-Authorization`.
    ProxyAuthenticate,
}

impl ChallengeHeader {
    pub fn name(self) -> &'static str {
        match self {
            ChallengeHeader::WwwAuthenticate => "WWW-Authenticate",
            ChallengeHeader::ProxyAuthenticate => "Proxy-Authenticate",
        }
    }

    /// The header the client answers with.
    pub fn credentials_name(self) -> &'static str {
        match self {
            ChallengeHeader::WwwAuthenticate => "Authorization",
            ChallengeHeader::ProxyAuthenticate => "Proxy-Authorization",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            ChallengeHeader::WwwAuthenticate => 401,
            ChallengeHeader::ProxyAuthenticate => 407,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            ChallengeHeader::WwwAuthenticate => "Unauthorized",
            ChallengeHeader::ProxyAuthenticate => "Proxy Authentication Required",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    /// The buffer's spare capacity is too small; nothing was written.
    #[error("challenge needs {needed} bytes, {available} available")]
    Capacity { needed: usize, available: usize },
}

const PREFIX_REALM: &[u8] = b"Digest realm=\"";
const NONCE_PART: &[u8] = b"\", nonce=\"";
const ALGORITHM_PART: &[u8] = b"\", algorithm=";
const QOP_PART: &[u8] = b", qop=\"auth\"";
const STALE_PART: &[u8] = b", stale=true";

fn escaped_len(s: &[u8]) -> usize {
    s.len() + s.iter().filter(|&&b| b == b'"' || b == b'\\').count()
}

fn value_len(realm: &[u8], nonce: &[u8], algorithm: Algorithm, stale: bool) -> usize {
    PREFIX_REALM.len()
        + escaped_len(realm)
        + NONCE_PART.len()
        + escaped_len(nonce)
        + ALGORITHM_PART.len()
        + algorithm.name().len()
        + QOP_PART.len()
        + if stale { STALE_PART.len() } else { 0 }
}

fn reserve_check(out: &[u8], capacity: usize, needed: usize) -> Result<(), ChallengeError> {
    let available = capacity - out.len();
    if needed > available {
        return Err(ChallengeError::Capacity { needed, available });
    }
    Ok(())
}

/// RFC 3261 §25.1 quoted-string: `"` and `\` become quoted-pairs. Control bytes in a realm are
/// a configuration error that the config loader rejects; they are passed through here.
fn push_escaped(out: &mut Vec<u8>, s: &[u8]) {
    for chunk in s.split_inclusive(|&b| b == b'"' || b == b'\\') {
        match chunk.split_last() {
            Some((&last, head)) if last == b'"' || last == b'\\' => {
                out.extend_from_slice(head);
                out.push(b'\\');
                out.push(last);
            }
            _ => out.extend_from_slice(chunk),
        }
    }
}

fn push_value(out: &mut Vec<u8>, realm: &[u8], nonce: &[u8], algorithm: Algorithm, stale: bool) {
    out.extend_from_slice(PREFIX_REALM);
    push_escaped(out, realm);
    out.extend_from_slice(NONCE_PART);
    push_escaped(out, nonce);
    out.extend_from_slice(ALGORITHM_PART);
    out.extend_from_slice(algorithm.name().as_bytes());
    // RFC 7616 §3.3: qop-options is a quoted list; we offer only "auth".
    out.extend_from_slice(QOP_PART);
    if stale {
        // RFC 7616 §3.3: stale=true, the previous request's credentials were right.
        out.extend_from_slice(STALE_PART);
    }
}

/// Appends one challenge value:
/// `Digest realm="..", nonce="..", algorithm=SHA-256, qop="auth"[, stale=true]`.
pub fn write_challenge_value(
    out: &mut Vec<u8>,
    realm: &[u8],
    nonce: &[u8],
    algorithm: Algorithm,
    stale: bool,
) -> Result<(), ChallengeError> {
    let needed = value_len(realm, nonce, algorithm, stale);
    reserve_check(out, out.capacity(), needed)?;
    push_value(out, realm, nonce, algorithm, stale);
    Ok(())
}

/// Appends one full header line per algorithm, in the order given
/// (`Name: value\r\n` each; RFC 8760 §2.4: one header per algorithm, preferred first).
/// Pass [`DEFAULT_ALGORITHMS`] for SHA-256 then MD5. All lines or none are written.
pub fn write_challenge_headers(
    out: &mut Vec<u8>,
    header: ChallengeHeader,
    realm: &[u8],
    nonce: &[u8],
    stale: bool,
    algorithms: &[Algorithm],
) -> Result<(), ChallengeError> {
    let name = header.name().as_bytes();
    let needed: usize = algorithms
        .iter()
        .map(|&a| name.len() + 2 + value_len(realm, nonce, a, stale) + 2)
        .sum();
    reserve_check(out, out.capacity(), needed)?;
    for &algorithm in algorithms {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        push_value(out, realm, nonce, algorithm, stale);
        out.extend_from_slice(b"\r\n");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::digest::DigestCredentials;

    #[test]
    fn single_value() {
        let mut out = Vec::with_capacity(200);
        write_challenge_value(&mut out, b"example.com", b"abc", Algorithm::Sha256, false)
            .expect("fits");
        assert_eq!(
            out,
            b"Digest realm=\"example.com\", nonce=\"abc\", algorithm=SHA-256, qop=\"auth\""
        );
        out.clear();
        write_challenge_value(&mut out, b"r", b"n", Algorithm::Md5, true).expect("fits");
        assert_eq!(
            out,
            b"Digest realm=\"r\", nonce=\"n\", algorithm=MD5, qop=\"auth\", stale=true"
        );
    }

    #[test]
    fn both_headers_sha256_first_and_exact_capacity() {
        let mut probe = Vec::with_capacity(1024);
        write_challenge_headers(
            &mut probe,
            ChallengeHeader::ProxyAuthenticate,
            b"example.com",
            b"nonce123",
            true,
            &DEFAULT_ALGORITHMS,
        )
        .expect("fits");
        let text = String::from_utf8(probe.clone()).expect("ascii");
        let lines: Vec<&str> = text.split_terminator("\r\n").collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("Proxy-Authenticate: Digest realm=\"example.com\""));
        assert!(lines[0].contains("algorithm=SHA-256"));
        assert!(lines[1].contains("algorithm=MD5"));
        assert!(lines.iter().all(|l| l.ends_with("stale=true")));

        // Exactly enough capacity: written, no reallocation.
        let mut exact = Vec::with_capacity(probe.len());
        let ptr = exact.as_ptr();
        write_challenge_headers(
            &mut exact,
            ChallengeHeader::ProxyAuthenticate,
            b"example.com",
            b"nonce123",
            true,
            &DEFAULT_ALGORITHMS,
        )
        .expect("fits exactly");
        assert_eq!(exact, probe);
        assert_eq!(exact.as_ptr(), ptr);
    }

    #[test]
    fn too_small_writes_nothing() {
        let mut out = Vec::with_capacity(20);
        out.extend_from_slice(b"SIP/2.0 401 ");
        let err = write_challenge_value(&mut out, b"example.com", b"n", Algorithm::Md5, false);
        assert!(matches!(
            err,
            Err(ChallengeError::Capacity { available: 8, .. })
        ));
        assert_eq!(out, b"SIP/2.0 401 ");
    }

    #[test]
    fn realm_is_escaped_and_round_trips() {
        let mut out = Vec::with_capacity(200);
        write_challenge_value(&mut out, br#"a"b\c"#, b"n", Algorithm::Md5, false).expect("fits");
        assert!(out.starts_with(br#"Digest realm="a\"b\\c""#));
        // The challenge grammar is close enough to credentials to check the quoting with
        // our own parser, given the fields it requires.
        let mut as_credentials = out.clone();
        as_credentials.extend_from_slice(b", username=\"u\", uri=\"x\", response=\"00\"");
        let parsed = DigestCredentials::parse(&as_credentials).expect("parses");
        assert!(parsed.realm.eq_unescaped(br#"a"b\c"#));
    }
}
