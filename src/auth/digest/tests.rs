//! Parser edge cases: folds, spacing, escapes, missing and repeated fields, fuzzing.
use super::*;

const RFC7616_MD5: &[u8] = b"Digest username=\"Mufasa\",\r\n realm=\"http-auth@example.org\",\r\n uri=\"/dir/index.html\",\r\n algorithm=MD5,\r\n nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\",\r\n nc=00000001,\r\n cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\",\r\n qop=auth,\r\n response=\"8ca523f5e9506fed4657c9700eebdbec\",\r\n opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";

fn parse(s: &[u8]) -> Result<DigestCredentials<'_>, AuthFailure> {
    DigestCredentials::parse(s)
}

#[test]
fn parses_rfc7616_example_with_folds() {
    let c = parse(RFC7616_MD5).expect("parses");
    assert_eq!(c.username, Username::Plain(Quoted::plain(b"Mufasa")));
    assert_eq!(c.realm.raw(), b"http-auth@example.org");
    assert_eq!(c.uri.raw(), b"/dir/index.html");
    assert_eq!(c.algorithm(), Ok(Algorithm::Md5));
    assert_eq!(c.nc, Some(1));
    assert_eq!(c.nc_raw, Some(&b"00000001"[..]));
    assert_eq!(c.qop, Some(&b"auth"[..]));
    assert_eq!(c.response, b"8ca523f5e9506fed4657c9700eebdbec");
    assert!(c.opaque.is_some());
    assert!(!c.userhash);
}

#[test]
fn odd_spacing_any_order_and_case() {
    let c = parse(
        b"  dIgEsT\tRESPONSE = \"abcd\" ,NONCE=\"n\",  realm\t=\t\"r\" , Uri=\"sip:x\",username=\"u\", \
          ALGORITHM=sha-256 ,qop=\"auth\",nc=0000000A,cnonce=\"c\",  ",
    )
    .expect("parses");
    assert_eq!(c.algorithm(), Ok(Algorithm::Sha256));
    assert_eq!(c.nc, Some(10));
    assert_eq!(c.realm.raw(), b"r");
    let q = c.qop_auth().expect("qop auth");
    assert_eq!((q.qop, q.nc, q.cnonce.raw()), (&b"auth"[..], 10, &b"c"[..]));
}

#[test]
fn escapes_are_kept_and_unescaped_on_demand() {
    let c = parse(br#"Digest username="b\"o\\b", realm="r", nonce="n", uri="u", response="00""#)
        .expect("parses");
    let Username::Plain(q) = c.username else {
        panic!("plain username expected");
    };
    assert_eq!(q.raw(), br#"b\"o\\b"#);
    assert!(q.eq_unescaped(br#"b"o\b"#));
    assert!(!q.eq_unescaped(br#"b"o\"#));
    assert!(!q.eq_unescaped(br#"b"o\bb"#));
    let mut buf = [0u8; 16];
    assert_eq!(q.unescape_into(&mut buf), Some(&br#"b"o\b"#[..]));
    let mut small = [0u8; 3];
    assert_eq!(q.unescape_into(&mut small), None);
}

#[test]
fn unknown_params_ignored_and_empty_elements_skipped() {
    let c = parse(
        b"Digest ,username=\"u\",, foo=bar, x=\"y, z\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"0a\"",
    )
    .expect("parses");
    assert_eq!(c.realm.raw(), b"r");
}

#[test]
fn username_star() {
    let c = parse(
        b"Digest username*=UTF-8''J%C3%A4s%C3%B8n%20Doe, realm=\"r\", nonce=\"n\", uri=\"u\", response=\"0a\", userhash=false",
    )
    .expect("parses");
    let mut buf = [0u8; 64];
    assert_eq!(
        c.username.decode_into(&mut buf),
        Some("Jäsøn Doe".as_bytes())
    );
    let bad = Username::Extended(b"ISO-8859-1''J%E4");
    assert_eq!(bad.decode_into(&mut buf), None);
    let truncated = Username::Extended(b"UTF-8''J%C");
    assert_eq!(truncated.decode_into(&mut buf), None);
}

#[test]
fn malformed_cases() {
    let cases: &[(&[u8], Malformed)] = &[
        (b"Digest", Malformed::Syntax),
        (b"Digest username", Malformed::Syntax),
        (b"Digest username=", Malformed::Syntax),
        (b"Digest username=\"u", Malformed::Syntax),
        (b"Digest username=\"u\" realm=\"r\"", Malformed::Syntax),
        (b"Digest username=\"u\\", Malformed::Syntax),
        (b"Digest username=\"a\rb\"", Malformed::Syntax),
        (b"Digest username=\"u\",\r\nrealm=\"r\"", Malformed::Syntax),
        (b"", Malformed::Syntax),
        (
            b"Digest username=\"u\", username=\"v\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"0a\"",
            Malformed::Duplicate,
        ),
        (
            b"Digest username=\"u\", realm=\"r\", NONCE=\"n\", nonce=\"n\", uri=\"u\", response=\"0a\"",
            Malformed::Duplicate,
        ),
        (
            b"Digest realm=\"r\", nonce=\"n\", uri=\"u\", response=\"0a\"",
            Malformed::MissingUsername,
        ),
        (
            b"Digest username=\"u\", nonce=\"n\", uri=\"u\", response=\"0a\"",
            Malformed::MissingRealm,
        ),
        (
            b"Digest username=\"u\", realm=\"r\", uri=\"u\", response=\"0a\"",
            Malformed::MissingNonce,
        ),
        (
            b"Digest username=\"u\", realm=\"r\", nonce=\"n\", response=\"0a\"",
            Malformed::MissingUri,
        ),
        (
            b"Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"u\"",
            Malformed::MissingResponse,
        ),
        (
            b"Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"zz\"",
            Malformed::BadResponse,
        ),
        (
            b"Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"0a\", nc=1",
            Malformed::BadNc,
        ),
        (
            b"Digest username=\"u\", username*=UTF-8''u, realm=\"r\", nonce=\"n\", uri=\"u\", response=\"0a\"",
            Malformed::UsernameTwice,
        ),
    ];
    for (input, want) in cases {
        assert_eq!(
            parse(input),
            Err(AuthFailure::Malformed(*want)),
            "{}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn too_many_params_is_bounded() {
    let mut v =
        b"Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"0a\"".to_vec();
    for _ in 0..MAX_ELEMENTS {
        v.extend_from_slice(b", x=y");
    }
    assert_eq!(
        parse(&v),
        Err(AuthFailure::Malformed(Malformed::TooManyParams))
    );
}

#[test]
fn other_scheme_is_not_malformed() {
    // RFC 4475 regaut01.
    assert_eq!(
        parse(b"NoOneKnowsThisScheme opaque-data=here"),
        Err(AuthFailure::UnsupportedScheme)
    );
    assert_eq!(
        parse(b"Digestusername=\"u\""),
        Err(AuthFailure::UnsupportedScheme)
    );
    assert_eq!(
        parse(b"Basic dXNlcjpwYXNz"),
        Err(AuthFailure::UnsupportedScheme)
    );
}

#[test]
fn qop_rules() {
    let no_qop =
        parse(b"Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"0a\"")
            .expect("parses");
    assert_eq!(no_qop.qop_auth(), Err(AuthFailure::UnsupportedQop));
    let auth_int = parse(
        b"Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"0a\", qop=auth-int, nc=00000001, cnonce=\"c\"",
    )
    .expect("parses");
    assert_eq!(auth_int.qop_auth(), Err(AuthFailure::UnsupportedQop));
    let no_cnonce = parse(
        b"Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"0a\", qop=auth, nc=00000001",
    )
    .expect("parses");
    assert_eq!(
        no_cnonce.qop_auth(),
        Err(AuthFailure::Malformed(Malformed::MissingCnonceOrNc))
    );
    let sess = parse(
        b"Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"0a\", algorithm=MD5-sess",
    )
    .expect("parses");
    assert_eq!(sess.algorithm(), Err(AuthFailure::UnknownAlgorithm));
}

proptest::proptest! {
    #[test]
    fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn never_panics_after_prefix(tail in "[ -~\r\n\t]{0,200}") {
        let v = [b"Digest ".as_slice(), tail.as_bytes()].concat();
        if let Ok(c) = parse(&v) {
            let mut buf = [0u8; 64];
            let _ = c.username.decode_into(&mut buf);
            c.uri.for_each_chunk(|_| {});
        }
    }
}

#[test]
fn every_known_name_in_any_case_and_near_misses() {
    for name in [
        "nc",
        "qop",
        "uri",
        "nonce",
        "realm",
        "cnonce",
        "opaque",
        "response",
        "username",
        "userhash",
        "username*",
        "algorithm",
    ] {
        assert!(param_name(name.as_bytes()).is_some(), "{name}");
        assert!(
            param_name(name.to_ascii_uppercase().as_bytes()).is_some(),
            "{name}"
        );
    }
    for other in [
        "",
        "n",
        "nx",
        "qos",
        "usernamex",
        "algorithn",
        "userhasx",
        "usernam*",
    ] {
        assert!(param_name(other.as_bytes()).is_none(), "{other}");
    }
}
