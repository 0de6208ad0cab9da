//! HTTP Digest for SIP clients (RFC 3261 §22, RFC 7616 hashes, RFC 8760 SHA-256 for SIP):
//! parse a `WWW-Authenticate`/`Proxy-Authenticate` challenge, answer it with qop=auth.
#![forbid(unsafe_code)]

use std::fmt::Write as _;

use md5::{Digest as _, Md5};
use sha2::Sha256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

/// The parts of a challenge a client needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    pub qop_auth: bool,
}

impl Challenge {
    /// Parses `Digest realm="..", nonce="..", algorithm=SHA-256, qop="auth"`. Returns None for
    /// other schemes or algorithms the generator cannot answer (e.g. AKAv1-MD5).
    pub fn parse(value: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(value).ok()?.trim();
        let (scheme, params) = text.split_once(char::is_whitespace)?;
        if !scheme.eq_ignore_ascii_case("Digest") {
            return None;
        }
        let mut realm = None;
        let mut nonce = None;
        let mut opaque = None;
        let mut algorithm = Algorithm::Md5;
        let mut qop_auth = false;
        for (name, value) in split_params(params) {
            match name.to_ascii_lowercase().as_str() {
                "realm" => realm = Some(value),
                "nonce" => nonce = Some(value),
                "opaque" => opaque = Some(value),
                "algorithm" => {
                    algorithm = if value.eq_ignore_ascii_case("MD5") {
                        Algorithm::Md5
                    } else if value.eq_ignore_ascii_case("SHA-256") {
                        Algorithm::Sha256
                    } else {
                        return None;
                    }
                }
                "qop" => {
                    qop_auth = value
                        .split(',')
                        .any(|q| q.trim().eq_ignore_ascii_case("auth"))
                }
                _ => {}
            }
        }
        Some(Self {
            realm: realm?.to_owned(),
            nonce: nonce?.to_owned(),
            opaque: opaque.map(str::to_owned),
            algorithm,
            qop_auth,
        })
    }

    /// The credentials header value for `method` on `uri` (nc counts uses of this nonce).
    pub fn answer(
        &self,
        username: &str,
        password: &str,
        method: &str,
        uri: &str,
        nc: u32,
        cnonce: &str,
    ) -> String {
        let ha1 = self.hash(&format!("{username}:{}:{password}", self.realm));
        let ha2 = self.hash(&format!("{method}:{uri}"));
        let algorithm = match self.algorithm {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        };
        let mut out = format!(
            "Digest username=\"{username}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", algorithm={algorithm}",
            self.realm, self.nonce
        );
        if self.qop_auth {
            let response = self.hash(&format!(
                "{ha1}:{}:{nc:08x}:{cnonce}:auth:{ha2}",
                self.nonce
            ));
            let _ = write!(
                out,
                ", response=\"{response}\", qop=auth, nc={nc:08x}, cnonce=\"{cnonce}\""
            );
        } else {
            let response = self.hash(&format!("{ha1}:{}:{ha2}", self.nonce));
            let _ = write!(out, ", response=\"{response}\"");
        }
        if let Some(opaque) = &self.opaque {
            let _ = write!(out, ", opaque=\"{opaque}\"");
        }
        out
    }

    fn hash(&self, text: &str) -> String {
        match self.algorithm {
            Algorithm::Md5 => hex(&Md5::digest(text.as_bytes())),
            Algorithm::Sha256 => hex(&Sha256::digest(text.as_bytes())),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Splits `a="x, y", b=z` into (name, unquoted value) pairs, honouring quotes.
fn split_params(params: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = params.trim();
    // Bounded: each round consumes at least one byte.
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let name = rest[..eq].trim().trim_start_matches(',').trim();
        let after = rest[eq + 1..].trim_start();
        let (value, remainder) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(close) => (&quoted[..close], &quoted[close + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(comma) => (after[..comma].trim(), &after[comma..]),
                None => (after.trim(), ""),
            }
        };
        out.push((name, value));
        rest = remainder.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_md5_example() {
        // RFC 2617 §3.5 example (HTTP, but the arithmetic is the same).
        let challenge = Challenge::parse(
            b"Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .expect("challenge");
        assert_eq!(challenge.algorithm, Algorithm::Md5);
        assert!(challenge.qop_auth);
        let answer = challenge.answer(
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            1,
            "0a4f113b",
        );
        assert!(
            answer.contains("response=\"6629fae49393a05397450978507c4ef1\""),
            "{answer}"
        );
        assert!(answer.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""));
    }

    #[test]
    fn rfc7616_sha256_example() {
        // RFC 7616 §3.9.1 example with SHA-256.
        let challenge = Challenge::parse(
            b"Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm=SHA-256, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"",
        )
        .expect("challenge");
        assert_eq!(challenge.algorithm, Algorithm::Sha256);
        let answer = challenge.answer(
            "Mufasa",
            "Circle of Life",
            "GET",
            "/dir/index.html",
            1,
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        );
        assert!(
            answer.contains(
                "response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\""
            ),
            "{answer}"
        );
    }

    #[test]
    fn other_schemes_refused() {
        assert_eq!(Challenge::parse(b"Basic realm=\"x\""), None);
        assert_eq!(
            Challenge::parse(b"Digest realm=\"x\", nonce=\"n\", algorithm=AKAv1-MD5"),
            None
        );
        assert_eq!(Challenge::parse(b"Digest realm=\"x\""), None);
    }
}
