//! Protocol tests: the registrar driven with a virtual clock.

#![forbid(unsafe_code)]

use std::net::SocketAddr;

use proptest::prelude::*;

use super::*;

const BOB: &str = "bob@example.com";
const UE_ADDR: &str = "198.51.100.7:5060";

fn config() -> RegistrarConfig {
    RegistrarConfig {
        min_expires_s: 60,
        default_expires_s: 3600,
        max_expires_s: 86_400,
        max_contacts_per_aor: 10,
    }
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("test address")
}

fn udp(from: &str) -> SourceInfo {
    SourceInfo {
        addr: addr(from),
        tcp: false,
        conn: None,
    }
}

fn contact(uri: &str) -> ContactInput {
    ContactInput {
        uri: uri.to_owned(),
        expires_s: None,
        q_milli: None,
        params: String::new(),
    }
}

fn contact_q(uri: &str, q_milli: u16) -> ContactInput {
    ContactInput {
        q_milli: Some(q_milli),
        ..contact(uri)
    }
}

fn contact_exp(uri: &str, expires_s: u32) -> ContactInput {
    ContactInput {
        expires_s: Some(expires_s),
        ..contact(uri)
    }
}

fn req<'a>(
    call_id: &'a str,
    cseq: u32,
    contacts: Contacts,
    expires: Option<u32>,
) -> RegisterRequest<'a> {
    RegisterRequest {
        aor: BOB,
        call_id,
        cseq,
        contacts,
        expires_header_s: expires,
        source: udp(UE_ADDR),
        third_party: false,
    }
}

fn list(contacts: Vec<ContactInput>) -> Contacts {
    Contacts::List(contacts)
}

/// Registers and checks the invariants, panicking on error (tests only).
fn ok(reg: &mut Registrar, now_ms: u64, r: RegisterRequest<'_>) -> RegisterOk {
    let out = reg.register(now_ms, r).expect("REGISTER accepted");
    reg.check_invariants().expect("invariants");
    out
}

fn err(reg: &mut Registrar, now_ms: u64, r: RegisterRequest<'_>) -> RegisterError {
    let before: Vec<Binding> = reg.bindings(BOB).to_vec();
    let e = reg.register(now_ms, r).expect_err("REGISTER refused");
    assert_eq!(
        reg.bindings(BOB),
        before.as_slice(),
        "a refused REGISTER changes nothing"
    );
    reg.check_invariants().expect("invariants");
    e
}

fn target_uri(events: &[RegistrarEvent]) -> Option<Option<String>> {
    events.iter().find_map(|e| match e {
        RegistrarEvent::TargetChanged { target, .. } => {
            Some(target.as_ref().map(|t| t.contact_uri.clone()))
        }
        _ => None,
    })
}

fn aor() -> Aor {
    Aor::new(BOB)
}

#[test]
fn first_registration_lists_the_binding_and_announces_it() {
    let mut reg = Registrar::new(config());
    let out = ok(
        &mut reg,
        1_000,
        req(
            "c1",
            1,
            list(vec![contact("sip:bob@192.0.2.7:5062")]),
            Some(600),
        ),
    );
    assert_eq!(
        out.bindings,
        vec![CurrentBinding {
            contact_uri: "sip:bob@192.0.2.7:5062".into(),
            expires_s: 600,
            q_milli: None,
            oma_im: false,
        }]
    );
    assert_eq!(out.events.len(), 2);
    assert_eq!(out.events[0], RegistrarEvent::FirstBinding { aor: aor() });
    let RegistrarEvent::TargetChanged {
        target: Some(t), ..
    } = &out.events[1]
    else {
        panic!("expected a target, got {:?}", out.events[1]);
    };
    // An IP-literal contact is relayed to its own host:port (D10).
    assert_eq!(t.addr, Some(addr("192.0.2.7:5062")));
    assert!(!t.tcp);
    assert_eq!(reg.next_wakeup_ms(), Some(601_000));
    assert_eq!(reg.changed_aors().collect::<Vec<_>>(), vec![aor()]);
    assert_eq!(reg.changed_aors().count(), 0, "drained");
}

#[test]
fn expiry_precedence_contact_param_then_header_then_default() {
    let mut reg = Registrar::new(config());
    let out = ok(
        &mut reg,
        0,
        req(
            "c1",
            1,
            list(vec![
                contact_exp("sip:a@192.0.2.1", 120),
                contact("sip:b@192.0.2.2"),
            ]),
            Some(300),
        ),
    );
    let exp: Vec<u32> = out.bindings.iter().map(|b| b.expires_s).collect();
    assert_eq!(exp, vec![120, 300]);
    let out = ok(
        &mut reg,
        0,
        req("c2", 1, list(vec![contact("sip:c@192.0.2.3")]), None),
    );
    assert_eq!(
        out.bindings[2].expires_s, 3600,
        "default when nothing is said"
    );
}

#[test]
fn too_brief_is_423_with_min_expires_but_zero_and_the_minimum_are_fine() {
    let mut reg = Registrar::new(config());
    let e = err(
        &mut reg,
        0,
        req("c1", 1, list(vec![contact("sip:a@192.0.2.1")]), Some(59)),
    );
    assert_eq!(e, RegisterError::IntervalTooBrief { min_expires_s: 60 });
    assert_eq!(e.status(), 423);
    assert_eq!(e.extra_header(), Some(ExtraHeader::MinExpires(60)));
    assert_eq!(
        e.extra_header().map(|h| h.to_string()),
        Some("Min-Expires: 60".into())
    );
    // A per-contact 30 beats a header 3600, so it is still too brief.
    let e = err(
        &mut reg,
        0,
        req(
            "c1",
            2,
            list(vec![contact_exp("sip:a@192.0.2.1", 30)]),
            Some(3600),
        ),
    );
    assert_eq!(e.status(), 423);
    let out = ok(
        &mut reg,
        0,
        req("c1", 3, list(vec![contact("sip:a@192.0.2.1")]), Some(60)),
    );
    assert_eq!(out.bindings[0].expires_s, 60);
    let out = ok(
        &mut reg,
        0,
        req("c1", 4, list(vec![contact("sip:a@192.0.2.1")]), Some(0)),
    );
    assert!(out.bindings.is_empty());
}

#[test]
fn above_max_is_shortened() {
    let mut reg = Registrar::new(config());
    let out = ok(
        &mut reg,
        0,
        req(
            "c1",
            1,
            list(vec![contact("sip:a@192.0.2.1")]),
            Some(1_000_000),
        ),
    );
    assert_eq!(out.bindings[0].expires_s, 86_400);
}

#[test]
fn star_removes_everything_only_with_expires_zero_and_alone() {
    let mut reg = Registrar::new(config());
    ok(
        &mut reg,
        0,
        req(
            "c1",
            1,
            list(vec![contact("sip:a@192.0.2.1"), contact("sip:b@192.0.2.2")]),
            None,
        ),
    );
    let e = err(&mut reg, 0, req("c1", 2, Contacts::Star, None));
    assert_eq!(
        (e, e.status()),
        (RegisterError::StarWithNonZeroExpires, 400)
    );
    let e = err(&mut reg, 0, req("c1", 2, Contacts::Star, Some(3600)));
    assert_eq!(e, RegisterError::StarWithNonZeroExpires);
    let e = err(
        &mut reg,
        0,
        req(
            "c1",
            2,
            list(vec![contact("*"), contact("sip:x@y")]),
            Some(0),
        ),
    );
    assert_eq!((e, e.status()), (RegisterError::StarNotAlone, 400));

    // A single "*" in the list is the wildcard.
    let out = ok(&mut reg, 5, req("c9", 1, list(vec![contact("*")]), Some(0)));
    assert!(out.bindings.is_empty());
    assert_eq!(
        out.events,
        vec![
            RegistrarEvent::TargetChanged {
                aor: aor(),
                target: None
            },
            RegistrarEvent::LastBindingGone { aor: aor() },
        ]
    );
    assert_eq!(reg.aor_count(), 0);
    assert_eq!(reg.next_wakeup_ms(), None);
}

#[test]
fn star_with_a_stale_cseq_of_the_same_call_id_fails() {
    let mut reg = Registrar::new(config());
    ok(
        &mut reg,
        0,
        req("c1", 5, list(vec![contact("sip:a@192.0.2.1")]), None),
    );
    let e = err(&mut reg, 0, req("c1", 5, Contacts::Star, Some(0)));
    assert_eq!(
        (e, e.status(), e.reason()),
        (RegisterError::OutOfOrderCseq, 500, "Out of order CSeq")
    );
    ok(&mut reg, 0, req("c1", 6, Contacts::Star, Some(0)));
    assert!(reg.bindings(BOB).is_empty());
}

#[test]
fn cseq_ordering_within_a_call_id_and_replacement_across_call_ids() {
    let mut reg = Registrar::new(config());
    let c = || list(vec![contact("sip:a@192.0.2.1")]);
    ok(&mut reg, 0, req("c1", 10, c(), Some(600)));
    assert_eq!(
        err(&mut reg, 1, req("c1", 10, c(), Some(900))),
        RegisterError::OutOfOrderCseq
    );
    assert_eq!(
        err(&mut reg, 1, req("c1", 9, c(), Some(900))),
        RegisterError::OutOfOrderCseq
    );
    // Removal with a stale CSeq is refused too.
    assert_eq!(
        err(&mut reg, 1, req("c1", 9, c(), Some(0))),
        RegisterError::OutOfOrderCseq
    );
    let out = ok(&mut reg, 1_000, req("c1", 11, c(), Some(900)));
    assert_eq!(out.bindings[0].expires_s, 900);
    // A different Call-ID replaces, whatever its CSeq (the UA restarted).
    let out = ok(&mut reg, 2_000, req("c2", 1, c(), Some(700)));
    assert_eq!(out.bindings[0].expires_s, 700);
    assert_eq!(reg.bindings(BOB)[0].call_id, "c2");
    // The URI matches regardless of host case and angle brackets.
    let out = ok(
        &mut reg,
        2_000,
        req("c2", 2, list(vec![contact("<sip:a@192.0.2.1>")]), Some(0)),
    );
    assert!(out.bindings.is_empty());
}

#[test]
fn a_contact_listed_twice_in_one_request_is_not_out_of_order() {
    let mut reg = Registrar::new(config());
    let out = ok(
        &mut reg,
        0,
        req(
            "c1",
            1,
            list(vec![
                contact_exp("sip:a@192.0.2.1", 100),
                contact_exp("sip:A@192.0.2.1", 200),
            ]),
            None,
        ),
    );
    assert_eq!(
        out.bindings.len(),
        2,
        "user parts differ in case: two bindings"
    );
    let out = ok(
        &mut reg,
        0,
        req(
            "c1",
            2,
            list(vec![
                contact_exp("sip:b@192.0.2.2", 100),
                contact_exp("sip:b@192.0.2.2", 200),
            ]),
            None,
        ),
    );
    assert_eq!(out.bindings.len(), 3);
    assert_eq!(out.bindings[2].expires_s, 200, "the later listing wins");
}

#[test]
fn zero_removes_one_binding_and_moves_the_target() {
    let mut reg = Registrar::new(config());
    ok(
        &mut reg,
        0,
        req("c1", 1, list(vec![contact("sip:a@192.0.2.1")]), None),
    );
    let out = ok(
        &mut reg,
        1,
        req("c2", 1, list(vec![contact("sip:b@192.0.2.2")]), None),
    );
    assert_eq!(
        target_uri(&out.events),
        Some(Some("sip:b@192.0.2.2".into())),
        "the newer wins at equal q"
    );
    let out = ok(
        &mut reg,
        2,
        req("c2", 2, list(vec![contact("sip:b@192.0.2.2")]), Some(0)),
    );
    assert_eq!(out.bindings.len(), 1);
    assert_eq!(
        out.events,
        vec![RegistrarEvent::TargetChanged {
            aor: aor(),
            target: reg.target(BOB).cloned(),
        }]
    );
    assert_eq!(
        reg.target(BOB).map(|t| t.contact_uri.as_str()),
        Some("sip:a@192.0.2.1")
    );
}

#[test]
fn too_many_contacts_is_503_with_retry_after_the_earliest_expiry() {
    let mut reg = Registrar::new(RegistrarConfig {
        max_contacts_per_aor: 2,
        ..config()
    });
    ok(
        &mut reg,
        0,
        req(
            "c1",
            1,
            list(vec![contact_exp("sip:a@192.0.2.1", 100)]),
            None,
        ),
    );
    ok(
        &mut reg,
        0,
        req(
            "c1",
            2,
            list(vec![contact_exp("sip:b@192.0.2.2", 300)]),
            None,
        ),
    );
    let e = err(
        &mut reg,
        10_000,
        req("c1", 3, list(vec![contact("sip:c@192.0.2.3")]), None),
    );
    assert_eq!(e, RegisterError::TooManyContacts { retry_after_s: 90 });
    assert_eq!(
        (e.status(), e.extra_header()),
        (503, Some(ExtraHeader::RetryAfter(90)))
    );
    // Refreshing or replacing within the limit still works.
    ok(
        &mut reg,
        10_000,
        req("c1", 4, list(vec![contact("sip:a@192.0.2.1")]), None),
    );
    ok(
        &mut reg,
        10_000,
        req(
            "c1",
            5,
            list(vec![
                contact_exp("sip:a@192.0.2.1", 0),
                contact("sip:c@192.0.2.3"),
            ]),
            None,
        ),
    );
    assert_eq!(reg.bindings(BOB).len(), 2);
}

#[test]
fn a_full_table_refuses_new_aors_only() {
    let mut reg = Registrar::new(config()).with_max_aors(1);
    ok(
        &mut reg,
        0,
        req("c1", 1, list(vec![contact("sip:a@192.0.2.1")]), None),
    );
    let mut other = req("c9", 1, list(vec![contact("sip:x@192.0.2.9")]), None);
    other.aor = "alice@example.com";
    let e = reg.register(0, other).expect_err("full");
    assert_eq!(
        (e.status(), e.extra_header()),
        (503, Some(ExtraHeader::RetryAfter(60)))
    );
    ok(
        &mut reg,
        0,
        req("c1", 2, list(vec![contact("sip:b@192.0.2.2")]), None),
    );
}

#[test]
fn malformed_values_are_400() {
    let mut reg = Registrar::new(config());
    let mut r = req("c1", 1, list(vec![contact("sip:a@b")]), None);
    r.aor = "";
    assert_eq!(reg.register(0, r).map(|_| ()), Err(RegisterError::BadAor));
    assert_eq!(
        err(&mut reg, 0, req("", 1, Contacts::None, None)),
        RegisterError::BadCallId
    );
    assert_eq!(
        err(&mut reg, 0, req("c", 1, list(vec![contact("<>")]), None)),
        RegisterError::BadContact
    );
    let long = format!("sip:{}@h", "x".repeat(2000));
    assert_eq!(
        err(&mut reg, 0, req("c", 1, list(vec![contact(&long)]), None)),
        RegisterError::BadContact
    );
    let e = err(
        &mut reg,
        0,
        req("c", 1, list(vec![contact_q("sip:a@b", 1001)]), None),
    );
    assert_eq!((e, e.status()), (RegisterError::BadQ, 400));
}

#[test]
fn fetch_lists_without_changing_anything() {
    let mut reg = Registrar::new(config());
    ok(
        &mut reg,
        0,
        req("c1", 1, list(vec![contact("sip:a@192.0.2.1")]), Some(600)),
    );
    reg.changed_aors().for_each(drop);
    let out = ok(&mut reg, 100_000, req("c7", 1, Contacts::None, None));
    assert_eq!(out.bindings[0].expires_s, 500);
    assert!(out.events.is_empty());
    assert_eq!(reg.changed_aors().count(), 0);
    // Fetching an unknown AoR is an empty list, not an error (RFC 3261 §10.2.3).
    let mut r = req("c8", 1, Contacts::None, None);
    r.aor = "nobody@example.com";
    assert!(reg.register(0, r).expect("fetch").bindings.is_empty());
    assert_eq!(reg.aor_count(), 1);
}

#[test]
fn target_is_the_most_recent_binding_with_the_highest_q() {
    let mut reg = Registrar::new(config());
    ok(
        &mut reg,
        0,
        req(
            "c1",
            1,
            list(vec![contact_q("sip:hi@192.0.2.1", 900)]),
            None,
        ),
    );
    let out = ok(
        &mut reg,
        1,
        req(
            "c2",
            1,
            list(vec![contact_q("sip:lo@192.0.2.2", 500)]),
            None,
        ),
    );
    assert_eq!(
        target_uri(&out.events),
        None,
        "a newer lower-q binding does not take over"
    );
    // No q ranks as 1.0.
    let out = ok(
        &mut reg,
        2,
        req("c3", 1, list(vec![contact("sip:noq@192.0.2.3")]), None),
    );
    assert_eq!(
        target_uri(&out.events),
        Some(Some("sip:noq@192.0.2.3".into()))
    );
    let out = ok(
        &mut reg,
        3,
        req(
            "c4",
            1,
            list(vec![contact_q("sip:one@192.0.2.4", 1000)]),
            None,
        ),
    );
    assert_eq!(
        target_uri(&out.events),
        Some(Some("sip:one@192.0.2.4".into())),
        "equal q: newest"
    );
    // A refresh makes the older equal-q binding the most recent, in the same millisecond too.
    let out = ok(
        &mut reg,
        3,
        req("c3", 2, list(vec![contact("sip:noq@192.0.2.3")]), None),
    );
    assert_eq!(
        target_uri(&out.events),
        Some(Some("sip:noq@192.0.2.3".into()))
    );
    // Re-registering the current target with nothing new announces nothing.
    let out = ok(
        &mut reg,
        4,
        req("c3", 3, list(vec![contact("sip:noq@192.0.2.3")]), None),
    );
    assert_eq!(target_uri(&out.events), None);
}

#[test]
fn target_address_falls_back_to_the_source_and_keeps_the_tcp_connection() {
    let mut reg = Registrar::new(config());
    let mut r = req(
        "c1",
        1,
        list(vec![contact("sip:bob@ue.example.net;transport=tcp")]),
        None,
    );
    r.source = SourceInfo {
        addr: addr("203.0.113.9:40000"),
        tcp: true,
        conn: Some(77),
    };
    ok(&mut reg, 0, r);
    let t = reg.target(BOB).expect("target");
    assert_eq!(t.addr, Some(addr("203.0.113.9:40000")));
    assert!(t.tcp);
    assert_eq!(t.conn, Some(77));
}

#[test]
fn expiry_at_the_exact_boundary() {
    let mut reg = Registrar::new(config());
    ok(
        &mut reg,
        0,
        req("c1", 1, list(vec![contact("sip:a@192.0.2.1")]), Some(60)),
    );
    assert_eq!(reg.next_wakeup_ms(), Some(60_000));
    assert!(reg.expire(59_999).is_empty());
    assert_eq!(
        reg.current(BOB, 59_999)[0].expires_s,
        1,
        "rounded up while alive"
    );
    let events = reg.expire(60_000);
    reg.check_invariants().expect("invariants");
    assert_eq!(
        events,
        vec![
            RegistrarEvent::TargetChanged {
                aor: aor(),
                target: None
            },
            RegistrarEvent::LastBindingGone { aor: aor() },
        ]
    );
    assert_eq!(reg.next_wakeup_ms(), None);
    assert!(reg.expire(120_000).is_empty());
}

#[test]
fn a_refresh_one_millisecond_before_expiry_extends_it() {
    let mut reg = Registrar::new(config());
    let c = || list(vec![contact("sip:a@192.0.2.1")]);
    ok(&mut reg, 0, req("c1", 1, c(), Some(60)));
    let out = ok(&mut reg, 59_999, req("c1", 2, c(), Some(60)));
    assert!(
        out.events.is_empty(),
        "a refresh is not a first binding: {:?}",
        out.events
    );
    assert!(reg.expire(60_000).is_empty());
    assert_eq!(reg.next_wakeup_ms(), Some(119_999));
    assert_eq!(reg.expire(119_999).len(), 2);
}

#[test]
fn an_expired_but_unswept_binding_does_not_count() {
    let mut reg = Registrar::new(config());
    ok(
        &mut reg,
        0,
        req("c1", 1, list(vec![contact("sip:a@192.0.2.1")]), Some(60)),
    );
    // At 60 s the old binding is gone even though expire() has not run: CSeq history with it.
    let out = ok(
        &mut reg,
        60_000,
        req("c1", 1, list(vec![contact("sip:b@192.0.2.2")]), Some(60)),
    );
    assert_eq!(out.bindings.len(), 1);
    assert_eq!(
        target_uri(&out.events),
        Some(Some("sip:b@192.0.2.2".into()))
    );
    assert!(
        !out.events
            .iter()
            .any(|e| matches!(e, RegistrarEvent::FirstBinding { .. }))
    );
    // A fetch after everything lapsed reports the loss.
    let out = ok(&mut reg, 200_000, req("c2", 1, Contacts::None, None));
    assert!(out.bindings.is_empty());
    assert!(
        out.events
            .contains(&RegistrarEvent::LastBindingGone { aor: aor() })
    );
}

#[test]
fn expire_spans_many_aors_in_deadline_order() {
    let mut reg = Registrar::new(config());
    let names: Vec<String> = (0..50).map(|i| format!("u{i}@example.com")).collect();
    for (i, name) in names.iter().enumerate() {
        let mut r = req(
            "c",
            1,
            list(vec![contact("sip:x@192.0.2.1")]),
            Some(60 + i as u32),
        );
        r.aor = name;
        ok(&mut reg, 0, r);
    }
    let gone = |events: &[RegistrarEvent]| {
        events
            .iter()
            .filter(|e| matches!(e, RegistrarEvent::LastBindingGone { .. }))
            .count()
    };
    assert_eq!(gone(&reg.expire(70_000)), 11);
    assert_eq!(reg.next_wakeup_ms(), Some(71_000));
    assert_eq!(gone(&reg.expire(1_000_000)), 39);
    reg.check_invariants().expect("invariants");
    assert_eq!(reg.aor_count(), 0);
}

#[test]
fn the_seeds_feature_tag_is_recorded() {
    let mut reg = Registrar::new(config());
    let c = ContactInput {
        params: "; + g.oma.sip-im".into(),
        ..contact("sip:IM-ClientA@networkA.net")
    };
    let mut r = req("c1", 1, list(vec![c]), None);
    r.aor = "IM-UserA@networkA.net";
    let out = ok(&mut reg, 0, r);
    assert!(out.bindings[0].oma_im);
    assert!(reg.bindings("IM-UserA@networkA.net")[0].oma_im);
}

/// A third-party REGISTER as an S-CSCF sends it, with the UE's REGISTER as a message/sip body.
/// The Contact is in compact form and folded onto a continuation line (`\x20` keeps the
/// leading space that a `\` line continuation would swallow).
const UE_REGISTER: &[u8] = b"REGISTER sip:networkA.net SIP/2.0\r\n\
Via: SIP/2.0/UDP [2001:db8::9]:5060;branch=z9hG4bKnashds7\r\n\
Max-Forwards: 70\r\n\
From: <sip:IM-UserA@networkA.net>;tag=4fa3\r\n\
To: <sip:IM-UserA@networkA.net>\r\n\
Call-ID: apb03a0s09dkjdfglkj49111\r\n\
CSeq: 2 REGISTER\r\n\
m: <sip:IM-ClientA@[2001:db8::9]:5060>\r\n\
\x20;expires=600000; + g.oma.sip-im\r\n\
Authorization: Digest username=\"IM-UserA-private@networkA.net\", realm=\"networkA.net\"\r\n\
Expires: 600000\r\n\
Content-Length: 0\r\n\
\r\n";

fn third_party<'a>(contacts: Contacts, expires: Option<u32>) -> RegisterRequest<'a> {
    RegisterRequest {
        aor: "IM-UserA@networkA.net",
        call_id: "scscf-1",
        cseq: 1,
        contacts,
        expires_header_s: expires,
        source: udp("10.0.0.5:5060"),
        third_party: true,
    }
}

#[test]
fn contact_from_an_embedded_register_with_compact_form_and_folding() {
    let c = contact_from_message_sip(UE_REGISTER).expect("contact");
    assert_eq!(c.uri, "sip:IM-ClientA@[2001:db8::9]:5060");
    assert_eq!(c.expires_s, Some(600_000));
    assert!(has_oma_im_feature_tag(&c.params));
}

#[test]
fn contact_from_an_embedded_200_takes_the_first() {
    let body = b"SIP/2.0 200 OK\n\
Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK1\n\
Contact: <sip:ue1@192.0.2.9>;expires=3600;q=0.8, <sip:ue2@192.0.2.10>;expires=100\n\
\n";
    let c = contact_from_message_sip(body).expect("contact");
    assert_eq!(
        (c.uri.as_str(), c.expires_s, c.q_milli),
        ("sip:ue1@192.0.2.9", Some(3600), Some(800))
    );
    let no_contact = b"SIP/2.0 200 OK\r\nVia: x\r\n\r\nContact: <sip:in-body@x>\r\n";
    assert_eq!(
        contact_from_message_sip(no_contact),
        None,
        "the body is not headers"
    );
}

#[test]
fn third_party_with_a_message_sip_body_takes_the_core_lifetime_as_sent() {
    let mut reg = Registrar::new(config());
    let ue = contact_from_message_sip(UE_REGISTER).expect("contact");
    // The core grants 600000 s: above our max, taken as sent (SPEC §2 item 7).
    let out = ok(
        &mut reg,
        0,
        third_party(list(vec![ue.clone()]), Some(600_000)),
    );
    assert_eq!(out.bindings[0].expires_s, 600_000);
    assert!(out.bindings[0].oma_im);
    let t = reg.target("IM-UserA@networkA.net").expect("target");
    assert_eq!(t.addr, Some(addr("[2001:db8::9]:5060")));
    // 30 s is below Min-Expires but the core's word; no 423.
    let mut r = third_party(list(vec![ue.clone()]), Some(30));
    r.cseq = 2;
    assert_eq!(ok(&mut reg, 1_000, r).bindings[0].expires_s, 30);
    // De-registration: the core's Expires: 0 beats the UE's expires=600000 in the body.
    let mut r = third_party(list(vec![ue]), Some(0));
    r.cseq = 3;
    let out = ok(&mut reg, 2_000, r);
    assert!(out.bindings.is_empty());
    assert!(out.events.contains(&RegistrarEvent::LastBindingGone {
        aor: Aor::new("IM-UserA@networkA.net")
    }));
}

#[test]
fn third_party_without_a_body_uses_the_contact_header() {
    let mut reg = Registrar::new(config());
    let out = ok(
        &mut reg,
        0,
        third_party(list(vec![contact("sip:scscf.networkA.net:5060")]), Some(45)),
    );
    assert_eq!(out.bindings[0].contact_uri, "sip:scscf.networkA.net:5060");
    assert_eq!(out.bindings[0].expires_s, 45);
    let t = reg.target("IM-UserA@networkA.net").expect("target");
    assert_eq!(
        t.addr,
        Some(addr("10.0.0.5:5060")),
        "a host name falls back to the source address"
    );
    assert!(reg.bindings("IM-UserA@networkA.net")[0].third_party);
}

#[test]
fn snapshot_restore_drops_expired_and_continues_recency() {
    let mut reg = Registrar::new(config());
    let mut r = req("c1", 1, list(vec![contact("sip:a@192.0.2.1")]), Some(60));
    r.source = SourceInfo {
        addr: addr(UE_ADDR),
        tcp: true,
        conn: Some(5),
    };
    ok(&mut reg, 0, r);
    ok(
        &mut reg,
        0,
        req("c2", 1, list(vec![contact("sip:b@192.0.2.2")]), Some(3600)),
    );
    let mut other = req("c3", 1, list(vec![contact("sip:z@192.0.2.9")]), Some(60));
    other.aor = "gone@example.com";
    ok(&mut reg, 0, other);

    let json = serde_json::to_string(
        &reg.snapshot()
            .map(|(a, b)| (a.clone(), b.to_vec()))
            .collect::<Vec<_>>(),
    )
    .expect("serialise");
    let persisted: Vec<(Aor, Vec<Binding>)> = serde_json::from_str(&json).expect("deserialise");

    let mut fresh = Registrar::new(config());
    let events = fresh.restore(persisted, 60_000);
    fresh.check_invariants().expect("invariants");
    assert_eq!(fresh.aor_count(), 1);
    let bob = fresh.bindings(BOB);
    assert_eq!(bob.len(), 1);
    assert_eq!(bob[0].contact_uri, "sip:b@192.0.2.2");
    assert_eq!(bob[0].conn, None, "connection ids do not survive a restart");
    assert!(events.contains(&RegistrarEvent::FirstBinding { aor: aor() }));
    let mut changed: Vec<Aor> = fresh.changed_aors().collect();
    changed.sort();
    assert_eq!(
        changed,
        vec![aor(), Aor::new("gone@example.com")],
        "AoRs that lost bindings are rewritten"
    );
    // A registration after the restore is more recent than the restored one.
    let out = ok(
        &mut fresh,
        61_000,
        req("c4", 1, list(vec![contact("sip:c@192.0.2.3")]), None),
    );
    assert_eq!(
        target_uri(&out.events),
        Some(Some("sip:c@192.0.2.3".into()))
    );
}

#[test]
fn error_table() {
    let table = [
        (RegisterError::BadAor, 400, None),
        (RegisterError::BadCallId, 400, None),
        (RegisterError::BadContact, 400, None),
        (RegisterError::BadQ, 400, None),
        (RegisterError::StarWithNonZeroExpires, 400, None),
        (RegisterError::StarNotAlone, 400, None),
        (
            RegisterError::IntervalTooBrief { min_expires_s: 60 },
            423,
            Some(ExtraHeader::MinExpires(60)),
        ),
        (RegisterError::OutOfOrderCseq, 500, None),
        (
            RegisterError::TooManyContacts { retry_after_s: 9 },
            503,
            Some(ExtraHeader::RetryAfter(9)),
        ),
        (
            RegisterError::TableFull { retry_after_s: 60 },
            503,
            Some(ExtraHeader::RetryAfter(60)),
        ),
    ];
    for (e, status, extra) in table {
        assert_eq!(e.status(), status, "{e}");
        assert_eq!(e.extra_header(), extra, "{e}");
        assert!(!e.reason().is_empty());
    }
}

#[derive(Clone, Debug)]
enum Op {
    Register {
        aor: u8,
        contact: u8,
        call_id: u8,
        cseq: u8,
        expires: Option<u32>,
        q: Option<u16>,
    },
    Star {
        aor: u8,
        call_id: u8,
        cseq: u8,
    },
    Advance(u32),
    Expire,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (
            (0u8..3, 0u8..4, 0u8..2, 0u8..6),
            prop::option::of(prop::sample::select(vec![0u32, 30, 60, 61, 600])),
            prop::option::of(0u16..=1000),
        )
            .prop_map(|((aor, contact, call_id, cseq), expires, q)| {
                Op::Register { aor, contact, call_id, cseq, expires, q }
            }),
        1 => (0u8..3, 0u8..2, 0u8..6)
            .prop_map(|(aor, call_id, cseq)| Op::Star { aor, call_id, cseq }),
        2 => (0u32..120_000).prop_map(Op::Advance),
        1 => Just(Op::Expire),
    ]
}

proptest! {
    /// Random REGISTER/expire sequences keep the invariants, and per AoR the FirstBinding and
    /// LastBindingGone events alternate and match whether bindings exist.
    #[test]
    fn random_sequences_keep_invariants(ops in prop::collection::vec(op(), 1..60)) {
        let mut reg = Registrar::new(RegistrarConfig { max_contacts_per_aor: 3, ..config() });
        let aors = ["a@x", "b@x", "c@x"];
        let mut bound = [false; 3];
        let mut now_ms = 0u64;
        for op in ops {
            let events = match op {
                Op::Register { aor, contact: c, call_id, cseq, expires, q } => {
                    let uri = format!("sip:u{c}@192.0.2.{c}");
                    let ci = ContactInput { q_milli: q, ..contact(&uri) };
                    let call = ["k0", "k1"][usize::from(call_id)];
                    let mut r = req(call, u32::from(cseq), list(vec![ci]), expires);
                    r.aor = aors[usize::from(aor)];
                    reg.register(now_ms, r).map(|o| o.events).unwrap_or_default()
                }
                Op::Star { aor, call_id, cseq } => {
                    let call = ["k0", "k1"][usize::from(call_id)];
                    let mut r = req(call, u32::from(cseq), Contacts::Star, Some(0));
                    r.aor = aors[usize::from(aor)];
                    reg.register(now_ms, r).map(|o| o.events).unwrap_or_default()
                }
                Op::Advance(ms) => { now_ms += u64::from(ms); Vec::new() }
                Op::Expire => reg.expire(now_ms),
            };
            prop_assert_eq!(reg.check_invariants(), Ok(()));
            for e in &events {
                let (RegistrarEvent::FirstBinding { aor }
                | RegistrarEvent::LastBindingGone { aor }) = e
                else {
                    continue;
                };
                let i = aors.iter().position(|a| *a == aor.as_str()).expect("known aor");
                let first = matches!(e, RegistrarEvent::FirstBinding { .. });
                prop_assert_eq!(bound[i], !first, "events alternate");
                bound[i] = first;
            }
            for (i, a) in aors.iter().enumerate() {
                prop_assert_eq!(bound[i], !reg.bindings(a).is_empty());
                prop_assert!(reg.bindings(a).len() <= 3);
                prop_assert_eq!(reg.target(a).is_some(), bound[i]);
            }
        }
    }
}

#[test]
fn a_third_party_binding_over_tcp_targets_the_contact_not_the_cores_connection() {
    let mut r = Registrar::new(RegistrarConfig::default());
    let core: std::net::SocketAddr = "127.0.0.1:5090".parse().unwrap();
    let req = RegisterRequest {
        aor: "bob@example.com",
        call_id: "c1",
        cseq: 1,
        contacts: Contacts::List(vec![ContactInput {
            uri: "sip:bob@127.0.0.9:5070;transport=tcp".into(),
            expires_s: None,
            q_milli: None,
            params: String::new(),
        }]),
        expires_header_s: Some(600),
        source: SourceInfo {
            addr: core,
            tcp: true,
            conn: Some(77),
        },
        third_party: true,
    };
    r.register(0, req.clone()).unwrap();
    let t = r.target("bob@example.com").unwrap();
    assert_eq!(t.addr, Some("127.0.0.9:5070".parse().unwrap()));
    assert!(t.tcp, "the contact asks for TCP");
    assert_eq!(t.conn, None, "the core's connection is not the UE's");

    // The same over UDP without transport=tcp: UDP to the contact.
    let mut r = Registrar::new(RegistrarConfig::default());
    let mut udp = req;
    udp.contacts = Contacts::List(vec![ContactInput {
        uri: "sip:bob@127.0.0.9:5070".into(),
        expires_s: None,
        q_milli: None,
        params: String::new(),
    }]);
    r.register(0, udp).unwrap();
    let t = r.target("bob@example.com").unwrap();
    assert!(!t.tcp);
    assert_eq!(t.conn, None);
}
