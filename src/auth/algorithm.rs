//! Digest hash algorithms, H(A1) provisioning and response computation.
//!
//! RFC 7616 §3.4.1 with `qop=auth` (RFC 3261 §22.4 for SIP, RFC 8760 §2 for the SHA-2
//! algorithms):
//!
//! ```text
//! HA1      = H(username ":" realm ":" password)          stored, never the password
//! HA2      = H(method ":" digest-uri)
//! response = H(hex(HA1) ":" nonce ":" nc ":" cnonce ":" qop ":" hex(HA2))
//! ```
//!
//! Everything here works in fixed stack buffers; comparisons of secrets are constant-time.
#![forbid(unsafe_code)]

use md5::Md5;
use sha2::{Digest, Sha256, Sha512_256};
use subtle::ConstantTimeEq;

use super::digest::{Quoted, hex_value};

/// Largest digest output in bytes (SHA-256 and SHA-512/256 both give 32).
pub const MAX_OUTPUT_LEN: usize = 32;

/// A Digest hash algorithm (IANA "HTTP Digest Hash Algorithms", RFC 7616 §6.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Sha256,
    /// SHA-512/256 (FIPS 180-4), token `SHA-512-256` (RFC 8760 §2.2).
    Sha512_256,
}

impl Algorithm {
    /// All supported algorithms, in storage order.
    pub const ALL: [Algorithm; 3] = [Algorithm::Md5, Algorithm::Sha256, Algorithm::Sha512_256];

    /// The `algorithm=` token.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha512_256 => "SHA-512-256",
        }
    }

    /// Parses an `algorithm=` token, case-insensitively. The `-sess` variants are not offered
    /// and so not accepted.
    pub fn from_token(token: &[u8]) -> Option<Self> {
        Algorithm::ALL
            .into_iter()
            .find(|a| token.eq_ignore_ascii_case(a.name().as_bytes()))
    }

    /// Digest size in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Algorithm::Md5 => 16,
            Algorithm::Sha256 | Algorithm::Sha512_256 => 32,
        }
    }

    /// Position in [`Algorithm::ALL`].
    pub(crate) fn index(self) -> usize {
        match self {
            Algorithm::Md5 => 0,
            Algorithm::Sha256 => 1,
            Algorithm::Sha512_256 => 2,
        }
    }
}

/// A raw digest output (16 or 32 bytes) in a fixed buffer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DigestOutput {
    bytes: [u8; MAX_OUTPUT_LEN],
    len: u8,
}

impl DigestOutput {
    fn from_slice(s: &[u8]) -> Self {
        let mut bytes = [0u8; MAX_OUTPUT_LEN];
        let len = s.len().min(MAX_OUTPUT_LEN);
        bytes[..len].copy_from_slice(&s[..len]);
        DigestOutput {
            bytes,
            len: len as u8,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Lower-case hex (RFC 7616 §3.4.1: LHEX) into `buf`.
    pub fn hex<'b>(&self, buf: &'b mut [u8; 2 * MAX_OUTPUT_LEN]) -> &'b [u8] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let src = self.as_bytes();
        for (pair, &b) in buf.chunks_exact_mut(2).zip(src) {
            pair[0] = HEX[usize::from(b >> 4)];
            pair[1] = HEX[usize::from(b & 0x0f)];
        }
        &buf[..2 * src.len()]
    }

    /// Constant-time comparison with a hex string as the client sent it (either case).
    /// A length mismatch is not secret and returns early.
    pub fn ct_eq_hex(&self, hex: &[u8]) -> bool {
        let ours = self.as_bytes();
        if hex.len() != 2 * ours.len() {
            return false;
        }
        let mut theirs = [0u8; MAX_OUTPUT_LEN];
        for (dst, pair) in theirs.iter_mut().zip(hex.chunks_exact(2)) {
            match (hex_value(pair[0]), hex_value(pair[1])) {
                (Some(hi), Some(lo)) => *dst = hi << 4 | lo,
                _ => return false,
            }
        }
        bool::from(ours.ct_eq(&theirs[..ours.len()]))
    }
}

impl std::fmt::Debug for DigestOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut buf = [0u8; 2 * MAX_OUTPUT_LEN];
        let hex = self.hex(&mut buf);
        f.write_str(std::str::from_utf8(hex).unwrap_or("?"))
    }
}

/// H(username ":" realm ":" password) for one algorithm: what we store instead of a password.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Ha1 {
    algorithm: Algorithm,
    digest: DigestOutput,
}

impl Ha1 {
    /// Rebuilds an HA1 from stored bytes; `None` when the length does not fit the algorithm.
    pub fn from_bytes(algorithm: Algorithm, bytes: &[u8]) -> Option<Self> {
        (bytes.len() == algorithm.output_len()).then(|| Ha1 {
            algorithm,
            digest: DigestOutput::from_slice(bytes),
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.digest.as_bytes()
    }
}

impl std::fmt::Debug for Ha1 {
    // An HA1 is password-equivalent for its realm: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ha1({}, <redacted>)", self.algorithm.name())
    }
}

/// Computes H(A1) for provisioning (RFC 7616 §3.4.2, non-`-sess`).
pub fn ha1(algorithm: Algorithm, username: &[u8], realm: &[u8], password: &[u8]) -> Ha1 {
    let digest = match algorithm {
        Algorithm::Md5 => hash3::<Md5>(username, realm, password),
        Algorithm::Sha256 => hash3::<Sha256>(username, realm, password),
        Algorithm::Sha512_256 => hash3::<Sha512_256>(username, realm, password),
    };
    Ha1 { algorithm, digest }
}

fn hash3<D: Digest>(a: &[u8], b: &[u8], c: &[u8]) -> DigestOutput {
    let mut h = D::new();
    h.update(a);
    h.update(b":");
    h.update(b);
    h.update(b":");
    h.update(c);
    DigestOutput::from_slice(&h.finalize())
}

/// The expected `response` for `qop=auth`, from the stored HA1 and the request's fields.
/// `uri` and `cnonce` are hashed unescaped; `nonce`, `nc` and `qop` exactly as sent.
/// Also what a client (the load generator, tests) computes.
pub fn compute_response(
    ha1: &Ha1,
    method: &[u8],
    uri: Quoted<'_>,
    nonce: &[u8],
    nc: &[u8],
    cnonce: Quoted<'_>,
    qop: &[u8],
) -> DigestOutput {
    let fields = ResponseFields {
        method,
        uri,
        nonce,
        nc,
        cnonce,
        qop,
    };
    match ha1.algorithm {
        Algorithm::Md5 => fields.compute::<Md5>(ha1),
        Algorithm::Sha256 => fields.compute::<Sha256>(ha1),
        Algorithm::Sha512_256 => fields.compute::<Sha512_256>(ha1),
    }
}

struct ResponseFields<'a> {
    method: &'a [u8],
    uri: Quoted<'a>,
    nonce: &'a [u8],
    nc: &'a [u8],
    cnonce: Quoted<'a>,
    qop: &'a [u8],
}

impl ResponseFields<'_> {
    fn compute<D: Digest>(&self, ha1: &Ha1) -> DigestOutput {
        // RFC 7616 §3.4.3: A2 = Method ":" request-uri (qop=auth).
        let mut h = D::new();
        h.update(self.method);
        h.update(b":");
        self.uri.for_each_chunk(|chunk| h.update(chunk));
        let ha2 = DigestOutput::from_slice(&h.finalize());

        let mut ha1_hex = [0u8; 2 * MAX_OUTPUT_LEN];
        let mut ha2_hex = [0u8; 2 * MAX_OUTPUT_LEN];
        // RFC 7616 §3.4.1: response = KD(H(A1), nonce:nc:cnonce:qop:H(A2)).
        let mut h = D::new();
        h.update(ha1.digest.hex(&mut ha1_hex));
        h.update(b":");
        h.update(self.nonce);
        h.update(b":");
        h.update(self.nc);
        h.update(b":");
        self.cnonce.for_each_chunk(|chunk| h.update(chunk));
        h.update(b":");
        h.update(self.qop);
        h.update(b":");
        h.update(ha2.hex(&mut ha2_hex));
        DigestOutput::from_slice(&h.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(d: &DigestOutput) -> String {
        let mut buf = [0u8; 64];
        String::from_utf8(d.hex(&mut buf).to_vec()).expect("ascii")
    }

    /// RFC 7616 §3.9.1: the same request answered with MD5 and with SHA-256.
    #[test]
    fn rfc7616_example_vectors() {
        let nonce = b"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
        let cnonce = Quoted::plain(b"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ");
        let uri = Quoted::plain(b"/dir/index.html");
        for (algorithm, published) in [
            (Algorithm::Md5, "8ca523f5e9506fed4657c9700eebdbec"),
            (
                Algorithm::Sha256,
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
        ] {
            let h = ha1(
                algorithm,
                b"Mufasa",
                b"http-auth@example.org",
                b"Circle of Life",
            );
            let r = compute_response(&h, b"GET", uri, nonce, b"00000001", cnonce, b"auth");
            assert_eq!(hex(&r), published, "{algorithm:?}");
            assert!(r.ct_eq_hex(published.as_bytes()));
            assert!(r.ct_eq_hex(published.to_ascii_uppercase().as_bytes()));
        }
    }

    /// RFC 2617 §3.5 (MD5, qop=auth).
    #[test]
    fn rfc2617_example_vector() {
        let h = ha1(
            Algorithm::Md5,
            b"Mufasa",
            b"testrealm@host.com",
            b"Circle Of Life",
        );
        let r = compute_response(
            &h,
            b"GET",
            Quoted::plain(b"/dir/index.html"),
            b"dcd98b7102dd2f0e8b11d0f600bfb0c093",
            b"00000001",
            Quoted::plain(b"0a4f113b"),
            b"auth",
        );
        assert_eq!(hex(&r), "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn sha512_256_known_answer() {
        // FIPS 180-4 SHA-512/256("abc") via ha1's "a:b:c" framing is not a published vector,
        // so check the primitive on "abc" directly, then that ha1 frames with colons.
        let abc = DigestOutput::from_slice(&Sha512_256::digest(b"abc"));
        assert_eq!(
            hex(&abc),
            "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23"
        );
        let framed = ha1(Algorithm::Sha512_256, b"u", b"r", b"p");
        let direct = DigestOutput::from_slice(&Sha512_256::digest(b"u:r:p"));
        assert_eq!(framed.as_bytes(), direct.as_bytes());
    }

    #[test]
    fn escaped_uri_is_hashed_unescaped() {
        let h = ha1(Algorithm::Sha256, b"u", b"r", b"p");
        let plain = compute_response(
            &h,
            b"REGISTER",
            Quoted::plain(br#"sip:a"b"#),
            b"n",
            b"00000001",
            Quoted::plain(b"c"),
            b"auth",
        );
        let parsed = super::super::digest::DigestCredentials::parse(
            br#"Digest username="u", realm="r", nonce="n", uri="sip:a\"b", response="00""#,
        )
        .expect("parses");
        let escaped = compute_response(
            &h,
            b"REGISTER",
            parsed.uri,
            b"n",
            b"00000001",
            Quoted::plain(b"c"),
            b"auth",
        );
        assert_eq!(plain, escaped);
    }

    #[test]
    fn tokens_and_lengths() {
        assert_eq!(
            Algorithm::from_token(b"sha-512-256"),
            Some(Algorithm::Sha512_256)
        );
        assert_eq!(Algorithm::from_token(b"md5"), Some(Algorithm::Md5));
        assert_eq!(Algorithm::from_token(b"MD5-sess"), None);
        assert_eq!(Algorithm::from_token(b"AKAv1-MD5"), None);
        assert!(Ha1::from_bytes(Algorithm::Md5, &[0; 32]).is_none());
        assert!(Ha1::from_bytes(Algorithm::Sha256, &[0; 32]).is_some());
        let r = ha1(Algorithm::Md5, b"a", b"b", b"c").digest;
        assert!(!r.ct_eq_hex(b"zz"));
        assert!(!r.ct_eq_hex(&[b'g'; 32]));
        assert_eq!(
            format!("{:?}", ha1(Algorithm::Md5, b"a", b"b", b"c")),
            "Ha1(MD5, <redacted>)"
        );
    }
}
