//! verify_request end to end: a client computes credentials for a challenge, the server checks.

use super::*;
use crate::auth::challenge::{ChallengeHeader, DEFAULT_ALGORITHMS, write_challenge_headers};
use crate::auth::digest::Quoted;
use crate::auth::error::{Malformed, Reply};
use crate::auth::nonce::NonceKey;

const REALM: &[u8] = b"example.com";
const NOW_S: u64 = 1_700_000_000;

fn setup() -> (Credentials, NonceState) {
    let mut creds = Credentials::new();
    creds
        .add("sip:bob@example.com", "bobpass")
        .expect("add bob");
    creds
        .add("sip:alice@example.com", "alicepass")
        .expect("add alice");
    let nonces = NonceState::with_instance(&NonceKey::from_bytes([1; 32]), 300, 8, 9);
    (creds, nonces)
}

/// What a UE sends: credentials for `username`/`password` over `nonce`.
#[allow(clippy::too_many_arguments)]
fn authorization(
    algorithm: Algorithm,
    username: &str,
    password: &str,
    realm: &[u8],
    method: &[u8],
    uri: &str,
    nonce: &[u8],
    nc: u32,
) -> Vec<u8> {
    let h = crate::auth::algorithm::ha1(algorithm, username.as_bytes(), realm, password.as_bytes());
    let nc_text = format!("{nc:08x}");
    let response = compute_response(
        &h,
        method,
        Quoted::plain(uri.as_bytes()),
        nonce,
        nc_text.as_bytes(),
        Quoted::plain(b"0a4f113b"),
        b"auth",
    );
    let mut hex = [0u8; 64];
    format!(
        "Digest username=\"{username}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{}\", algorithm={}, cnonce=\"0a4f113b\", qop=auth, nc={nc_text}",
        String::from_utf8_lossy(realm),
        String::from_utf8_lossy(nonce),
        String::from_utf8_lossy(response.hex(&mut hex)),
        algorithm.name(),
    )
    .into_bytes()
}

fn bob(algorithm: Algorithm, nonce: &[u8], nc: u32) -> Vec<u8> {
    authorization(
        algorithm,
        "bob@example.com",
        "bobpass",
        REALM,
        b"REGISTER",
        "sip:example.com",
        nonce,
        nc,
    )
}

#[test]
fn valid_credentials_each_algorithm_and_form() {
    let (creds, nonces) = setup();
    for algorithm in Algorithm::ALL {
        let nonce = nonces.issue(NOW_S, REALM);
        let h = bob(algorithm, nonce.as_bytes(), 1);
        let user = verify_request(
            &creds,
            &nonces,
            NOW_S + 10,
            REALM,
            b"REGISTER",
            Some(&h),
            b"sip:bob@example.com",
        )
        .expect("valid");
        assert_eq!(user.aor, b"bob@example.com");
        assert_eq!(user.algorithm, algorithm);
        assert_eq!(user.username_form, UsernameForm::Bare);
        assert_eq!((user.nc, user.nonce_issued_s), (1, NOW_S));
    }
    // Full SIP URI as username; claimed user without scheme and with another host case.
    let nonce = nonces.issue(NOW_S, REALM);
    let h = authorization(
        Algorithm::Sha256,
        "sip:bob@example.com",
        "bobpass",
        REALM,
        b"MESSAGE",
        "sip:alice@example.com",
        nonce.as_bytes(),
        1,
    );
    let user = verify_request(
        &creds,
        &nonces,
        NOW_S,
        REALM,
        b"MESSAGE",
        Some(&h),
        b"bob@EXAMPLE.com",
    )
    .expect("valid");
    assert_eq!(user.username_form, UsernameForm::SipUri);
}

#[test]
fn no_header_is_a_challenge_and_the_challenge_round_trips() {
    let (creds, nonces) = setup();
    let err = verify_request(
        &creds,
        &nonces,
        NOW_S,
        REALM,
        b"REGISTER",
        None,
        b"bob@example.com",
    );
    assert_eq!(err, Err(AuthFailure::NoCredentials));
    let failure = AuthFailure::NoCredentials;
    assert_eq!(failure.reply(), Reply::Challenge { stale: false });
    assert_eq!(failure.status(ChallengeHeader::WwwAuthenticate), 401);
    assert_eq!(failure.status(ChallengeHeader::ProxyAuthenticate), 407);
    // Write the challenge, take the nonce out of it as a client would, answer it.
    let nonce = nonces.issue(NOW_S, REALM);
    let mut out = Vec::with_capacity(512);
    write_challenge_headers(
        &mut out,
        ChallengeHeader::WwwAuthenticate,
        REALM,
        nonce.as_bytes(),
        false,
        &DEFAULT_ALGORITHMS,
    )
    .expect("fits");
    let text = String::from_utf8(out).expect("ascii");
    let start = text.find("nonce=\"").expect("nonce") + 7;
    let sent = &text[start..start + crate::auth::nonce::NONCE_LEN];
    let h = bob(Algorithm::Sha256, sent.as_bytes(), 1);
    assert!(
        verify_request(
            &creds,
            &nonces,
            NOW_S + 1,
            REALM,
            b"REGISTER",
            Some(&h),
            b"bob@example.com"
        )
        .is_ok()
    );
}

#[test]
fn replayed_nc_refused_higher_accepted() {
    let (creds, nonces) = setup();
    let nonce = nonces.issue(NOW_S, REALM);
    let first = bob(Algorithm::Md5, nonce.as_bytes(), 1);
    let check = |h: &[u8]| {
        verify_request(
            &creds,
            &nonces,
            NOW_S,
            REALM,
            b"REGISTER",
            Some(h),
            b"bob@example.com",
        )
        .map(|u| u.nc)
    };
    assert_eq!(check(&first), Ok(1));
    assert_eq!(check(&first), Err(AuthFailure::ReplayedNc));
    assert_eq!(
        AuthFailure::ReplayedNc.reply(),
        Reply::Challenge { stale: true }
    );
    assert_eq!(check(&bob(Algorithm::Md5, nonce.as_bytes(), 2)), Ok(2));
    assert_eq!(
        check(&bob(Algorithm::Md5, nonce.as_bytes(), 2)),
        Err(AuthFailure::ReplayedNc)
    );
}

#[test]
fn forged_request_does_not_burn_the_nc() {
    let (creds, nonces) = setup();
    let nonce = nonces.issue(NOW_S, REALM);
    let forged = authorization(
        Algorithm::Md5,
        "bob@example.com",
        "guess",
        REALM,
        b"REGISTER",
        "sip:example.com",
        nonce.as_bytes(),
        1000,
    );
    let check = |h: &[u8]| {
        verify_request(
            &creds,
            &nonces,
            NOW_S,
            REALM,
            b"REGISTER",
            Some(h),
            b"bob@example.com",
        )
        .map(|u| u.nc)
    };
    assert_eq!(check(&forged), Err(AuthFailure::WrongResponse));
    assert_eq!(check(&bob(Algorithm::Md5, nonce.as_bytes(), 1)), Ok(1));
}

#[test]
fn stale_and_bad_nonces() {
    let (creds, nonces) = setup();
    let nonce = nonces.issue(NOW_S, REALM);
    let h = bob(Algorithm::Sha256, nonce.as_bytes(), 1);
    let at = |now_s| {
        verify_request(
            &creds,
            &nonces,
            now_s,
            REALM,
            b"REGISTER",
            Some(&h),
            b"bob@example.com",
        )
    };
    assert_eq!(at(NOW_S + 301), Err(AuthFailure::StaleNonce));
    assert_eq!(
        AuthFailure::StaleNonce.reply(),
        Reply::Challenge { stale: true }
    );
    let made_up = bob(Algorithm::Sha256, b"dcd98b7102dd2f0e8b11d0f600bfb0c093", 1);
    assert_eq!(
        verify_request(
            &creds,
            &nonces,
            NOW_S,
            REALM,
            b"REGISTER",
            Some(&made_up),
            b"bob@example.com"
        ),
        Err(AuthFailure::BadNonce)
    );
    assert_eq!(
        AuthFailure::BadNonce.reply(),
        Reply::Challenge { stale: false }
    );
}

#[test]
fn realm_mismatch_is_ignored_and_challenged() {
    let (creds, nonces) = setup();
    let nonce = nonces.issue(NOW_S, b"other.net");
    let h = authorization(
        Algorithm::Md5,
        "bob@example.com",
        "bobpass",
        b"other.net",
        b"REGISTER",
        "sip:example.com",
        nonce.as_bytes(),
        1,
    );
    assert_eq!(
        verify_request(
            &creds,
            &nonces,
            NOW_S,
            REALM,
            b"REGISTER",
            Some(&h),
            b"bob@example.com"
        ),
        Err(AuthFailure::WrongRealm)
    );
    assert_eq!(
        AuthFailure::WrongRealm.status(ChallengeHeader::WwwAuthenticate),
        401
    );
    // Several headers: the one for our realm is picked.
    let ours_nonce = nonces.issue(NOW_S, REALM);
    let ours = bob(Algorithm::Md5, ours_nonce.as_bytes(), 1);
    let picked = select_for_realm([h.as_slice(), ours.as_slice()], REALM);
    assert_eq!(picked, Some(ours.as_slice()));
    assert_eq!(select_for_realm([h.as_slice()], REALM), Some(h.as_slice()));
    assert_eq!(select_for_realm([], REALM), None);
}

#[test]
fn user_mismatch_is_forbidden() {
    let (creds, nonces) = setup();
    let nonce = nonces.issue(NOW_S, REALM);
    let h = bob(Algorithm::Sha256, nonce.as_bytes(), 2);
    let err = verify_request(
        &creds,
        &nonces,
        NOW_S,
        REALM,
        b"MESSAGE",
        Some(&authorization(
            Algorithm::Sha256,
            "bob@example.com",
            "bobpass",
            REALM,
            b"MESSAGE",
            "sip:example.com",
            nonce.as_bytes(),
            1,
        )),
        b"sip:alice@example.com",
    );
    assert_eq!(err, Err(AuthFailure::UserMismatch));
    assert_eq!(
        AuthFailure::UserMismatch.status(ChallengeHeader::ProxyAuthenticate),
        403
    );
    // User part is case-sensitive (D8).
    let err = verify_request(
        &creds,
        &nonces,
        NOW_S,
        REALM,
        b"REGISTER",
        Some(&h),
        b"sip:Bob@example.com",
    );
    assert_eq!(err, Err(AuthFailure::UserMismatch));
    assert!(!same_aor(b"bob@example.com", b"bob"));
    assert!(same_aor(b"bob@example.com", b"SIPS:bob@Example.Com"));
}

#[test]
fn wrong_method_or_uri_or_password_is_wrong_response() {
    let (creds, nonces) = setup();
    let nonce = nonces.issue(NOW_S, REALM);
    let h = bob(Algorithm::Sha256, nonce.as_bytes(), 1);
    assert_eq!(
        verify_request(
            &creds,
            &nonces,
            NOW_S,
            REALM,
            b"MESSAGE",
            Some(&h),
            b"bob@example.com"
        ),
        Err(AuthFailure::WrongResponse)
    );
    let tampered = String::from_utf8(h.clone())
        .expect("ascii")
        .replace("uri=\"sip:example.com\"", "uri=\"sip:evil.com\"");
    assert_eq!(
        verify_request(
            &creds,
            &nonces,
            NOW_S,
            REALM,
            b"REGISTER",
            Some(tampered.as_bytes()),
            b"bob@example.com"
        ),
        Err(AuthFailure::WrongResponse)
    );
    // Alice's password for Bob's username.
    let h = authorization(
        Algorithm::Md5,
        "bob@example.com",
        "alicepass",
        REALM,
        b"REGISTER",
        "sip:example.com",
        nonce.as_bytes(),
        1,
    );
    assert_eq!(
        verify_request(
            &creds,
            &nonces,
            NOW_S,
            REALM,
            b"REGISTER",
            Some(&h),
            b"bob@example.com"
        ),
        Err(AuthFailure::WrongResponse)
    );
}

#[test]
fn unknown_user_unknown_algorithm_no_qop_malformed() {
    let (creds, nonces) = setup();
    let nonce = nonces.issue(NOW_S, REALM);
    let n = String::from_utf8_lossy(nonce.as_bytes()).into_owned();
    let check = |h: &str| {
        verify_request(
            &creds,
            &nonces,
            NOW_S,
            REALM,
            b"REGISTER",
            Some(h.as_bytes()),
            b"bob@example.com",
        )
    };
    let carol = authorization(
        Algorithm::Md5,
        "carol@example.com",
        "x",
        REALM,
        b"REGISTER",
        "sip:example.com",
        nonce.as_bytes(),
        1,
    );
    assert_eq!(
        check(&String::from_utf8(carol).expect("ascii")),
        Err(AuthFailure::UnknownUser)
    );
    let base = format!(
        "Digest username=\"bob@example.com\", realm=\"example.com\", nonce=\"{n}\", uri=\"sip:example.com\", response=\"00112233445566778899aabbccddeeff\""
    );
    assert_eq!(
        check(&format!(
            "{base}, algorithm=SHA-256-sess, qop=auth, nc=00000001, cnonce=\"c\""
        )),
        Err(AuthFailure::UnknownAlgorithm)
    );
    assert_eq!(check(&base), Err(AuthFailure::UnsupportedQop));
    assert_eq!(
        check(&format!(
            "{base}, qop=auth, nc=00000001, cnonce=\"c\", userhash=true"
        )),
        Err(AuthFailure::UnknownUser)
    );
    assert_eq!(
        check("Digest username=\"bob@example.com\""),
        Err(AuthFailure::Malformed(Malformed::MissingRealm))
    );
    let failure = AuthFailure::Malformed(Malformed::MissingRealm);
    assert_eq!(failure.reply(), Reply::BadRequest);
    assert_eq!(failure.status(ChallengeHeader::WwwAuthenticate), 400);
    assert_eq!(
        failure.reason(ChallengeHeader::WwwAuthenticate),
        "Bad Request (Authorization missing realm)"
    );
    // RFC 4475 regaut01.
    assert_eq!(
        check("NoOneKnowsThisScheme opaque-data=here"),
        Err(AuthFailure::UnsupportedScheme)
    );
    assert_eq!(
        AuthFailure::UnsupportedScheme.status(ChallengeHeader::WwwAuthenticate),
        401
    );
}

#[test]
fn realm_per_user_must_match_request_realm() {
    let mut creds = Credentials::new();
    creds
        .add_in_realm("sip:dave@example.com", "ims.example.com", "pw")
        .expect("add");
    let nonces = NonceState::with_instance(&NonceKey::from_bytes([1; 32]), 300, 8, 9);
    let nonce = nonces.issue(NOW_S, REALM);
    let h = authorization(
        Algorithm::Md5,
        "dave@example.com",
        "pw",
        REALM,
        b"REGISTER",
        "sip:example.com",
        nonce.as_bytes(),
        1,
    );
    assert_eq!(
        verify_request(
            &creds,
            &nonces,
            NOW_S,
            REALM,
            b"REGISTER",
            Some(&h),
            b"dave@example.com"
        ),
        Err(AuthFailure::UnknownUser)
    );
}
