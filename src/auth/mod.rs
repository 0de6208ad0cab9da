//! Authentication: who may speak for whom (SPEC D7, D9, G3).
//!
//! Two ways in, decided per request by the peer's address:
//! - a peer inside the configured [`TrustList`] is the SIP/IP Core: its `P-Asserted-Identity`
//!   counts and it needs no credentials (D7, RFC 3325);
//! - anyone else proves the identity it claims (From for MESSAGE, To for REGISTER, the XUI for
//!   XCAP) with Digest credentials: RFC 3261 §22 as updated by RFC 8760 (SHA-256,
//!   SHA-512-256), and RFC 7616 for HTTP.
//!
//! Everything here is sans-IO and allocation-free on the request path: header values come in
//! as bytes, `now_s` is passed in, challenges are written into a caller buffer. Nonces are
//! stateless (an HMAC over time, an instance id, a sequence number and the realm); the only
//! shared mutable state is the fixed-size, lock-free nonce-count table in [`replay`].
//!
//! ```text
//!  request from untrusted peer
//!        |
//!        v
//!  no Authorization ------------------------------> 401/407 challenge (fresh nonce)
//!  not Digest (RFC 4475 regaut01) ---------------> 401/407 challenge
//!  unparsable ------------------------------------> 400
//!  realm not ours (RFC 3261 §22.1) ---------------> 401/407 challenge
//!  algorithm/qop we do not offer -----------------> 401/407 challenge
//!  nonce: bad MAC ---------------------------------> 401/407 challenge
//!         too old / other instance / evicted ------> 401/407 challenge, stale=true
//!  unknown user, wrong response ------------------> 401/407 challenge
//!  nc not above the highest seen (replay) --------> 401/407 challenge, stale=true
//!  credentials valid but for another AoR ---------> 403
//!  otherwise -------------------------------------> AuthenticatedUser
//! ```
//!
//! The Digest username is the user's AoR without scheme (`bob@example.com`); the full SIP URI
//! (`sip:bob@example.com`) is accepted too. See [`credentials`].
#![forbid(unsafe_code)]

pub mod algorithm;
pub mod challenge;
pub mod credentials;
pub mod digest;
pub mod error;
pub mod nonce;
pub mod replay;
pub mod trust;
pub mod verify;

pub use algorithm::{Algorithm, DigestOutput, Ha1, compute_response, ha1};
pub use challenge::{
    ChallengeError, ChallengeHeader, DEFAULT_ALGORITHMS, write_challenge_headers,
    write_challenge_value,
};
pub use credentials::{
    Credentials, CredentialsError, StoredUser, UserInfo, UsernameForm, normalize_aor,
};
pub use digest::{DigestCredentials, QopAuth, Quoted, Username};
pub use error::{AuthFailure, Malformed, Reply};
pub use nonce::{Issued, NONCE_LEN, Nonce, NonceError, NonceKey, NonceState};
pub use replay::{DEFAULT_SLOTS_LOG2, NcError, NcTable};
pub use trust::{Cidr, TrustError, TrustList};
pub use verify::{AuthenticatedUser, select_for_realm, verify_request};
