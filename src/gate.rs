//! The authentication gate (SPEC D7): untrusted peers prove the identity they claim with Digest
//! (RFC 7616 / RFC 8760). REGISTER and PUBLISH are challenged with 401 (`WWW-Authenticate`,
//! RFC 3261 §22.2), MESSAGE with 407 (`Proxy-Authenticate`, §22.3: the IM Server sits in the
//! path like a proxy). Trusted peers never reach the gate.
//!
//! The check itself allocates nothing (the fast path calls it per MESSAGE); a challenge is
//! written into caller-owned buffers that are reused.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;

use crate::auth::challenge::write_challenge_value;
use crate::auth::{
    Algorithm, AuthFailure, ChallengeHeader, Credentials, NonceKey, NonceState, Reply,
    select_for_realm, verify_request,
};
use crate::sip::{HeaderName, View};

/// Nonce lifetime: after it a correct answer gets `stale=true` and a new nonce.
pub const NONCE_MAX_AGE_S: u64 = 300;

/// What the gate decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    /// Challenge (401/407), `stale=true` when the credentials were right but the nonce old.
    Challenge {
        stale: bool,
        reason: &'static str,
    },
    BadRequest(&'static str),
    Forbidden(&'static str),
}

/// Shared by every worker and the slow path.
pub struct Gate {
    /// `--auth off` (lab use) lets everyone through.
    pub enabled: bool,
    pub realm: Vec<u8>,
    pub creds: ArcSwap<Credentials>,
    nonces: NonceState,
}

/// Where the credentials are and what the challenge is called, per method.
#[derive(Clone, Copy)]
pub enum Kind {
    /// REGISTER, PUBLISH: 401 + WWW-Authenticate, answered with Authorization.
    Registrar,
    /// MESSAGE: 407 + Proxy-Authenticate, answered with Proxy-Authorization.
    Proxy,
}

impl Kind {
    fn credentials_header(self) -> HeaderName {
        match self {
            Kind::Registrar => HeaderName::Authorization,
            Kind::Proxy => HeaderName::ProxyAuthorization,
        }
    }
    pub fn challenge(self) -> ChallengeHeader {
        match self {
            Kind::Registrar => ChallengeHeader::WwwAuthenticate,
            Kind::Proxy => ChallengeHeader::ProxyAuthenticate,
        }
    }
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Gate {
    pub fn new(enabled: bool, realm: &str, creds: Credentials) -> anyhow::Result<Arc<Self>> {
        let key = NonceKey::random().map_err(|e| anyhow::anyhow!("nonce key: {e}"))?;
        let nonces = NonceState::new(&key, NONCE_MAX_AGE_S, 16)
            .map_err(|e| anyhow::anyhow!("nonce state: {e}"))?;
        Ok(Arc::new(Self {
            enabled,
            realm: realm.as_bytes().to_vec(),
            creds: ArcSwap::from_pointee(creds),
            nonces,
        }))
    }

    /// Checks the request's credentials for `claimed` (a normalised AoR). No allocation.
    pub fn check(&self, view: &View<'_>, kind: Kind, claimed: &[u8]) -> Outcome {
        if !self.enabled {
            return Outcome::Pass;
        }
        let value = select_for_realm(view.values(kind.credentials_header()), &self.realm);
        let creds = self.creds.load();
        match verify_request(
            &creds,
            &self.nonces,
            now_s(),
            &self.realm,
            view.method_bytes(),
            value,
            claimed,
        ) {
            Ok(_) => Outcome::Pass,
            Err(f) => outcome_of(f, kind),
        }
    }

    /// Writes the two challenge values (SHA-256 first, then MD5: RFC 8760 §2.4) into `sha256`
    /// and `md5`, reusing their capacity (the fast path keeps them at 512 bytes).
    pub fn write_challenges(&self, stale: bool, sha256: &mut Vec<u8>, md5: &mut Vec<u8>) {
        let nonce = self.nonces.issue(now_s(), &self.realm);
        for (buf, alg) in [(sha256, Algorithm::Sha256), (md5, Algorithm::Md5)] {
            buf.clear();
            if write_challenge_value(buf, &self.realm, nonce.as_bytes(), alg, stale).is_err() {
                // Capacity too small (a realm of hundreds of bytes): grow once, off the hot path.
                buf.reserve(1024);
                let _ = write_challenge_value(buf, &self.realm, nonce.as_bytes(), alg, stale);
            }
        }
    }
}

fn outcome_of(f: AuthFailure, kind: Kind) -> Outcome {
    let h = kind.challenge();
    match f.reply() {
        Reply::Challenge { stale } => Outcome::Challenge {
            stale,
            reason: f.reason(h),
        },
        Reply::BadRequest => Outcome::BadRequest(f.reason(h)),
        Reply::Forbidden => Outcome::Forbidden(f.reason(h)),
    }
}
