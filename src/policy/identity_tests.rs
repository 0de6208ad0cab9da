use super::*;

fn norm(uri: &str) -> Result<String, IdError> {
    let mut buf = IdBuf::new();
    normalize(uri.as_bytes(), &mut buf)?;
    Ok(String::from_utf8(buf.as_bytes().to_vec()).expect("test identities are UTF-8"))
}

fn same(a: &str, b: &str) -> bool {
    norm(a).expect("a parses") == norm(b).expect("b parses")
}

#[test]
fn d8_sip_forms() {
    assert_eq!(norm("sip:alice@example.com").unwrap(), "alice@example.com");
    assert_eq!(norm("sips:alice@example.com").unwrap(), "alice@example.com");
    assert_eq!(norm("SIP:alice@EXAMPLE.com").unwrap(), "alice@example.com");
    assert_eq!(
        norm("sip:alice:secret@Example.COM:5061;transport=tcp;lr?Subject=hi").unwrap(),
        "alice@example.com"
    );
    // User part: case kept, escapes decoded.
    assert_eq!(norm("sip:Alice@example.com").unwrap(), "Alice@example.com");
    assert_eq!(
        norm("sip:%41lice@example.com").unwrap(),
        "Alice@example.com"
    );
    assert!(!same("sip:alice@example.com", "sip:Alice@example.com"));
    // Host-only URI.
    assert_eq!(norm("sip:Example.com").unwrap(), "@example.com");
    assert_eq!(norm("sip:example.com:5060;lr").unwrap(), "@example.com");
    // IPv6 reference keeps its brackets; the port after it goes.
    assert_eq!(
        norm("sip:bob@[2001:DB8::1]:5060").unwrap(),
        "bob@[2001:db8::1]"
    );
    // Surrounding whitespace (LWS inside <>) is tolerated.
    assert_eq!(norm("  sip:bob@b.com ").unwrap(), "bob@b.com");
}

#[test]
fn d8_telephone_forms() {
    assert_eq!(norm("tel:+1-555-123-0000").unwrap(), "tel:+15551230000");
    assert_eq!(
        norm("TEL:+1.555.(123).0000;ext=7").unwrap(),
        "tel:+15551230000"
    );
    assert_eq!(
        norm("sip:+1-555-123-0000@host;user=phone").unwrap(),
        "tel:+15551230000"
    );
    assert_eq!(
        norm("sips:+1-555-123-0000;isub=12@other.example;USER=Phone;transport=tls").unwrap(),
        "tel:+15551230000"
    );
    assert!(same(
        "tel:+15551230000",
        "sip:+1-555-123-0000@host;user=phone"
    ));
    // Local numbers keep their context, lowercased; hex digits lowercased.
    assert_eq!(
        norm("tel:7042;phone-context=Example.COM").unwrap(),
        "tel:7042;phone-context=example.com"
    );
    assert_eq!(
        norm("tel:86-3A*#;phone-context=+1-555").unwrap(),
        "tel:863a*#;phone-context=+1555"
    );
    assert_eq!(
        norm("sip:7042;phone-context=example.com@gw.example.com;user=phone").unwrap(),
        "tel:7042;phone-context=example.com"
    );
    // A user=phone URI whose user part is no number keeps its sip form.
    assert_eq!(
        norm("sip:alice@example.com;user=phone").unwrap(),
        "alice@example.com"
    );
    assert_eq!(
        norm("sip:7042@gw.example.com;user=phone").unwrap(),
        "7042@gw.example.com"
    );
    // Without user=phone a +number user part is an ordinary sip user (D8 names only user=phone).
    assert_eq!(norm("sip:+15551230000@host").unwrap(), "+15551230000@host");
}

#[test]
fn rfc3261_19_1_4_equal_under_d8() {
    // The RFC's "equivalent" pairs.
    assert!(same(
        "sip:%61lice@atlanta.com;transport=TCP",
        "sip:alice@AtLanTa.CoM;Transport=tcp"
    ));
    assert!(same(
        "sip:carol@chicago.com",
        "sip:carol@chicago.com;newparam=5"
    ));
    assert!(same(
        "sip:carol@chicago.com",
        "sip:carol@chicago.com;security=on"
    ));
    assert!(same(
        "sip:carol@chicago.com;newparam=5",
        "sip:carol@chicago.com;security=on"
    ));
    assert!(same(
        "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
        "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"
    ));
    assert!(same(
        "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:alice@atlanta.com?priority=urgent&subject=project%20x"
    ));
    // Pairs the RFC calls different only because of port, parameters or headers: D8 drops
    // those, so for identity they are the same.
    assert!(same("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"));
    assert!(same(
        "sip:bob@biloxi.com",
        "sip:bob@biloxi.com;transport=udp"
    ));
    assert!(same(
        "sip:bob@biloxi.com",
        "sip:bob@biloxi.com:6000;transport=tcp"
    ));
    assert!(same(
        "sip:carol@chicago.com",
        "sip:carol@chicago.com?Subject=next%20meeting"
    ));
    assert!(same(
        "sip:carol@chicago.com;security=on",
        "sip:carol@chicago.com;security=off"
    ));
}

#[test]
fn rfc3261_19_1_4_different() {
    assert!(!same(
        "SIP:ALICE@AtLanTa.CoM;Transport=udp",
        "sip:alice@AtLanTa.CoM;Transport=UDP"
    ));
    assert!(!same("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"));
    assert!(!same("sip:alice@atlanta.com", "sip:alice@pc33.atlanta.com"));
}

#[test]
fn errors() {
    assert_eq!(norm(""), Err(IdError::Empty));
    assert_eq!(norm("   "), Err(IdError::Empty));
    assert_eq!(norm("mailto:a@b.com"), Err(IdError::UnsupportedScheme));
    assert_eq!(norm("alice@example.com"), Err(IdError::UnsupportedScheme));
    assert_eq!(norm("sip:@example.com"), Err(IdError::EmptyUser));
    assert_eq!(norm("sip::pw@example.com"), Err(IdError::EmptyUser));
    assert_eq!(norm("sip:alice@"), Err(IdError::EmptyHost));
    assert_eq!(norm("sip:alice@;lr"), Err(IdError::EmptyHost));
    assert_eq!(norm("sip:alice@exa mple.com"), Err(IdError::BadHost));
    assert_eq!(norm("sip:alice@ex%41mple.com"), Err(IdError::BadHost));
    assert_eq!(norm("sip:alice@[::1"), Err(IdError::BadHost));
    assert_eq!(norm("sip:alice@[::1]x"), Err(IdError::BadHost));
    assert_eq!(norm("sip:alice@host:"), Err(IdError::BadPort));
    assert_eq!(norm("sip:alice@host:65536"), Err(IdError::BadPort));
    assert_eq!(norm("sip:alice@host:50x"), Err(IdError::BadPort));
    assert_eq!(norm("sip:al%4@host"), Err(IdError::BadEscape));
    assert_eq!(norm("sip:al%zz@host"), Err(IdError::BadEscape));
    // RFC 4475 escnull: escaped controls (even %00) are a valid user part; raw ones are not.
    assert_eq!(
        norm("sip:null-%00-null@example.com").unwrap(),
        "null-\0-null@example.com"
    );
    assert_eq!(norm("sip:al\rx@host"), Err(IdError::BadUser));
    assert_eq!(norm("sip:al<x@host"), Err(IdError::BadUser));
    assert_eq!(norm("tel:+"), Err(IdError::BadNumber));
    assert_eq!(norm("tel:+1-555-abc"), Err(IdError::BadNumber));
    assert_eq!(norm("tel:5551234"), Err(IdError::MissingPhoneContext));
    assert_eq!(
        norm("tel:5551234;phone-context=a b"),
        Err(IdError::BadNumber)
    );
    assert_eq!(norm("sip:host;user=phone").unwrap(), "@host");
    for e in [IdError::Empty, IdError::TooLong, IdError::UnsupportedScheme] {
        assert_eq!(e.to_string(), e.reason());
    }
    assert_eq!(IdError::UnsupportedScheme.status(), 416);
    assert_eq!(IdError::BadHost.status(), 400);
}

#[test]
fn length_limit() {
    let host = "h".repeat(ID_MAX - 2);
    assert_eq!(norm(&format!("sip:a@{host}")).unwrap().len(), ID_MAX);
    assert_eq!(norm(&format!("sip:ab@{host}")), Err(IdError::TooLong));
    let digits = "1".repeat(ID_MAX);
    assert_eq!(norm(&format!("tel:+{digits}")), Err(IdError::TooLong));
    assert_eq!(
        norm(&format!("sip:+{digits}@h;user=phone")),
        Err(IdError::TooLong)
    );
}

#[test]
fn identity_and_domain() {
    let id = Identity::parse(b"sip:Bob@Biloxi.COM:5060").unwrap();
    assert_eq!(id.as_bytes(), b"Bob@biloxi.com");
    assert_eq!(id.to_string(), "Bob@biloxi.com");
    assert_eq!(domain_of(id.as_bytes()), Some(&b"biloxi.com"[..]));
    assert_eq!(domain_of(b"@example.com"), Some(&b"example.com"[..]));
    // A decoded '@' in the user part does not confuse the host.
    let odd = Identity::parse(b"sip:a%40b@c.com").unwrap();
    assert_eq!(odd.as_bytes(), b"a@b@c.com");
    assert_eq!(domain_of(odd.as_bytes()), Some(&b"c.com"[..]));
    assert_eq!(domain_of(b"tel:+15551230000"), None);
    // A sip user part that decodes to "tel:…" still carries its '@host': no collision.
    let fake = Identity::parse(b"sip:tel%3A%2B15551230000@h.com").unwrap();
    assert_eq!(fake.as_bytes(), b"tel:+15551230000@h.com");
    assert_ne!(fake, Identity::parse(b"tel:+15551230000").unwrap());
    assert_eq!(domain_of(fake.as_bytes()), Some(&b"h.com"[..]));
    // Non-printable bytes are escaped when displayed.
    let utf8 = Identity::parse(b"sip:%C3%A9@x.com").unwrap();
    assert_eq!(utf8.to_string(), "%C3%A9@x.com");
    assert_eq!(Identity::parse(b"sip:@x"), Err(IdError::EmptyUser));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn uri() -> impl Strategy<Value = Vec<u8>> {
        let scheme = prop_oneof![
            Just(b"sip:".to_vec()),
            Just(b"SIPS:".to_vec()),
            Just(b"tel:".to_vec()),
            Just(Vec::new()),
        ];
        let body = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            "[a-zA-Z0-9%@:;=?+().\\-\\[\\] ]{0,80}".prop_map(String::into_bytes),
        ];
        (scheme, body).prop_map(|(mut s, b)| {
            s.extend(b);
            s
        })
    }

    proptest! {
        /// Never panics; an identity is bounded, and the two families cannot collide: sip
        /// identities hold '@', tel ones start with "tel:" and hold none.
        #[test]
        fn normalize_is_total_and_families_are_disjoint(input in uri()) {
            let mut buf = IdBuf::new();
            if normalize(&input, &mut buf).is_ok() {
                let id = buf.as_bytes();
                prop_assert!(!id.is_empty() && id.len() <= ID_MAX);
                // Escaped controls are valid (RFC 4475 escnull) but never reach a log raw.
                prop_assert!(!Identity::from(&buf).to_string().chars().any(|c| c.is_control()));
                let is_tel = input.get(..4).is_some_and(|s| s.eq_ignore_ascii_case(b"tel:"));
                if is_tel {
                    prop_assert!(id.starts_with(b"tel:") && !id.contains(&b'@'));
                }
                prop_assert_eq!(domain_of(id).is_some(), id.contains(&b'@'));
            }
        }

        /// A sip identity built from parts normalises back to those parts, whatever the case
        /// of the host, the port and the parameters.
        #[test]
        fn sip_round_trip(user in "[a-zA-Z0-9_.!~*'&=$,/-]{1,20}", host in "[a-z0-9]{1,10}\\.[a-z]{2,5}",
                          port in proptest::option::of(1u16..), upper in any::<bool>()) {
            let shown_host = if upper { host.to_ascii_uppercase() } else { host.clone() };
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            let uri = format!("sip:{user}@{shown_host}{port};transport=tcp");
            let mut buf = IdBuf::new();
            normalize(uri.as_bytes(), &mut buf).expect("valid by construction");
            let expected = format!("{user}@{host}");
            prop_assert_eq!(buf.as_bytes(), expected.as_bytes());
        }
    }
}
