//! The one call the request paths make: are these credentials valid, and are they the
//! claimed user's? Allocation-free on success and on every failure.
#![forbid(unsafe_code)]

use super::algorithm::{Algorithm, Ha1, MAX_OUTPUT_LEN, compute_response};
use super::credentials::{Credentials, MAX_NAME_LEN, UsernameForm};
use super::digest::DigestCredentials;
use super::error::AuthFailure;
use super::nonce::{NonceError, NonceState};

/// Room for the longest username we could have provisioned (`sip:` + a 255-byte AoR).
const USERNAME_BUF_LEN: usize = MAX_NAME_LEN + 8;

/// A request whose Digest credentials checked out for the identity it claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthenticatedUser<'c> {
    /// The stored AoR, `user@host` (no scheme).
    pub aor: &'c [u8],
    pub realm: &'c [u8],
    pub algorithm: Algorithm,
    pub username_form: UsernameForm,
    /// The nonce count this request used, and when its nonce was issued.
    pub nc: u32,
    pub nonce_issued_s: u64,
}

/// Checks one `Authorization` / `Proxy-Authorization` value.
///
/// - `realm`: the realm this request path owns (credentials for another are ignored).
/// - `method`: the request method (`REGISTER`, `MESSAGE`; `GET`/`PUT` for XCAP).
/// - `header_value`: the credentials value, `None` when the request carried none. With several
///   headers, pick with [`select_for_realm`].
/// - `claimed_user`: the normalised AoR the request claims (From for MESSAGE, To for
///   REGISTER, the XUI for XCAP), with or without `sip:`/`sips:`.
///
/// The digest-uri is hashed as sent. RFC 2617 §3.2.2.5 asks the server to check that it names
/// the Request-URI's resource (400 otherwise); in SIP, proxies on the way may have rewritten
/// the Request-URI, so that comparison, when wanted, is the caller's (it has the URI parsed).
pub fn verify_request<'c>(
    creds: &'c Credentials,
    nonces: &NonceState,
    now_s: u64,
    realm: &[u8],
    method: &[u8],
    header_value: Option<&[u8]>,
    claimed_user: &[u8],
) -> Result<AuthenticatedUser<'c>, AuthFailure> {
    let value = header_value.ok_or(AuthFailure::NoCredentials)?;
    let cred = DigestCredentials::parse(value)?;
    // RFC 3261 §22.1: credentials are per realm; ones for a realm we do not own are ignored
    // and the request challenged for ours.
    if !cred.realm.eq_unescaped(realm) {
        return Err(AuthFailure::WrongRealm);
    }
    let algorithm = cred.algorithm()?;
    let q = cred.qop_auth()?;
    if cred.userhash {
        // RFC 7616 §3.4.4: userhash only when the server offered it; we never do, so the
        // username cannot name anyone we know.
        return Err(AuthFailure::UnknownUser);
    }
    let nonce = cred.nonce.as_plain().ok_or(AuthFailure::BadNonce)?;
    let issued = nonces.check(nonce, now_s, realm).map_err(nonce_failure)?;

    let mut username_buf = [0u8; USERNAME_BUF_LEN];
    let user = cred
        .username
        .decode_into(&mut username_buf)
        .and_then(|username| creds.lookup(username))
        .filter(|user| user.realm == realm);
    // Hash even for an unknown user, so the reply time does not tell which users exist
    // (the reply itself is the same challenge either way).
    let ha1 = match user {
        Some(u) => u.ha1(algorithm),
        None => Ha1::from_bytes(algorithm, &[0u8; MAX_OUTPUT_LEN][..algorithm.output_len()])
            .ok_or(AuthFailure::UnknownUser)?,
    };
    let expected = compute_response(&ha1, method, cred.uri, nonce, q.nc_raw, q.cnonce, q.qop);
    let matches = expected.ct_eq_hex(cred.response);
    let user = user.ok_or(AuthFailure::UnknownUser)?;
    if !matches {
        return Err(AuthFailure::WrongResponse);
    }
    // Only now, with the response proven, may the nc advance: otherwise anyone could burn a
    // client's counts with forged requests.
    nonces.record_nc(issued, q.nc).map_err(nonce_failure)?;
    // SPEC D7: a UE never registers, publishes or sends as someone else.
    if !same_aor(user.aor, claimed_user) {
        return Err(AuthFailure::UserMismatch);
    }
    Ok(AuthenticatedUser {
        aor: user.aor,
        realm: user.realm,
        algorithm,
        username_form: user.form,
        nc: q.nc,
        nonce_issued_s: issued.issued_s,
    })
}

fn nonce_failure(e: NonceError) -> AuthFailure {
    match e {
        NonceError::Bad | NonceError::Entropy => AuthFailure::BadNonce,
        NonceError::Stale => AuthFailure::StaleNonce,
        NonceError::Replayed => AuthFailure::ReplayedNc,
    }
}

/// SPEC D8 on two normalised AoRs: user part exact, host without case; the claimed one may
/// carry a `sip:`/`sips:` scheme.
fn same_aor(stored: &[u8], claimed: &[u8]) -> bool {
    let claimed = strip_scheme(claimed);
    match (split_at_last_at(stored), split_at_last_at(claimed)) {
        (Some((su, sh)), Some((cu, ch))) => su == cu && sh.eq_ignore_ascii_case(ch),
        _ => false,
    }
}

fn strip_scheme(uri: &[u8]) -> &[u8] {
    for scheme in [&b"sip:"[..], b"sips:"] {
        if uri.len() >= scheme.len() && uri[..scheme.len()].eq_ignore_ascii_case(scheme) {
            return &uri[scheme.len()..];
        }
    }
    uri
}

fn split_at_last_at(aor: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = aor.iter().rposition(|&b| b == b'@')?;
    Some((&aor[..at], &aor[at + 1..]))
}

/// With several credentials headers (RFC 3261 §22.3: a request may carry one per realm), the
/// first whose realm is ours; otherwise the first, so the caller still answers for it.
pub fn select_for_realm<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
    realm: &[u8],
) -> Option<&'a [u8]> {
    let mut first = None;
    for v in values {
        let ours = DigestCredentials::parse(v).is_ok_and(|c| c.realm.eq_unescaped(realm));
        if ours {
            return Some(v);
        }
        first.get_or_insert(v);
    }
    first
}

#[cfg(test)]
mod tests;
