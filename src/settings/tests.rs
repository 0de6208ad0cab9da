//! Protocol tests: the compositor driven with a virtual clock.

#![forbid(unsafe_code)]

use std::collections::HashSet;

use proptest::prelude::*;

use super::*;

const ALICE: &str = "IM-UserA@networkA.net";
const CT: &str = "application/service-settings+xml";

fn config() -> SettingsConfig {
    SettingsConfig {
        default_expires_s: 3600,
        min_expires_s: 60,
        max_expires_s: 86_400,
        max_publications_per_aor: 8,
        max_body_bytes: 16_384,
    }
}

fn esc() -> Compositor {
    Compositor::with_seed(config(), [42; 32])
}

fn doc(isb: bool) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<service-settings xmlns="urn:oma:xml:im:service-settings">
  <isb-settings><incoming-session-barring active="{isb}"/></isb-settings>
  <vis-settings><vis-status active="true"/></vis-settings>
</service-settings>"#
    )
}

fn initial(body: &[u8]) -> PublishRequest<'_> {
    PublishRequest {
        aor: ALICE,
        event: "service-settings",
        content_type: Some(CT),
        if_match: None,
        expires_s: None,
        body: Some(body),
    }
}

fn refresh(etag: &ETag, expires_s: Option<u32>) -> PublishRequest<'_> {
    PublishRequest {
        aor: ALICE,
        event: "service-settings",
        content_type: None,
        if_match: Some(etag.as_str()),
        expires_s,
        body: None,
    }
}

fn ok(esc: &mut Compositor, now_ms: u64, req: PublishRequest<'_>) -> PublishOk {
    let out = esc.publish(now_ms, req).expect("PUBLISH accepted");
    esc.check_invariants().expect("invariants");
    out
}

fn err(esc: &mut Compositor, now_ms: u64, req: PublishRequest<'_>) -> PublishError {
    let before = esc.publications(req.aor).to_vec();
    let e = esc.publish(now_ms, req).expect_err("PUBLISH refused");
    assert_eq!(
        esc.publications(req.aor),
        before.as_slice(),
        "a refused PUBLISH changes nothing"
    );
    esc.check_invariants().expect("invariants");
    e
}

/// The seed 004 PUBLISH as the core forwards it (step 6): `Event: Service-settings`, the seed's
/// content type, Request-URI the client (not used), keyed by the asserted identity. The seed's
/// body is a placeholder; this is the ISB/VIS document it describes.
#[test]
fn the_seed_004_publish() {
    let mut esc = esc();
    let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<service-settings xmlns="urn:oma:xml:im:service-settings">
  <isb-settings><incoming-session-barring active="false"/></isb-settings>
  <vis-settings><vis-status active="true"/></vis-settings>
</service-settings>"#;
    let req = PublishRequest {
        aor: ALICE,
        event: "Service-settings",
        content_type: Some("application/service-settings+xml"),
        if_match: None,
        expires_s: None,
        body: Some(body),
    };
    let out = ok(&mut esc, 0, req);
    assert_eq!(out.expires_s, 3600, "the default");
    assert_eq!(out.etag.as_str().len(), 22);
    assert!(out.effective_changed);
    assert_eq!(
        esc.effective(ALICE),
        EffectiveSettings {
            isb: false,
            vis: Some(true),
            offline_delivery: None,
            history: None
        }
    );
    assert_eq!(
        esc.publications(ALICE)[0].body.as_bytes(),
        body,
        "the raw document is kept"
    );
    assert_eq!(esc.next_wakeup_ms(), Some(3_600_000));
}

#[test]
fn event_is_compared_without_case_and_anything_else_is_489() {
    let mut esc = esc();
    let body = doc(true);
    for event in ["SERVICE-SETTINGS", " service-settings ;id=1"] {
        let mut r = initial(body.as_bytes());
        r.event = event;
        ok(&mut esc, 0, r);
    }
    for event in ["presence", "", "service-settingsx"] {
        let mut r = initial(body.as_bytes());
        r.event = event;
        let e = err(&mut esc, 0, r);
        assert_eq!(
            (e, e.status(), e.reason()),
            (PublishError::BadEvent, 489, "Bad Event")
        );
        assert_eq!(
            e.extra_header().map(|h| h.to_string()),
            Some("Allow-Events: service-settings".into())
        );
    }
}

#[test]
fn content_types_parameters_ignored_others_415_with_accept() {
    let mut esc = esc();
    let body = doc(false);
    for ct in [
        "application/service-settings+xml;charset=UTF-8",
        "Application/Vnd.Oma.Im.Service-Settings+XML",
    ] {
        let mut r = initial(body.as_bytes());
        r.content_type = Some(ct);
        ok(&mut esc, 0, r);
    }
    for ct in [Some("application/pidf+xml"), Some("text/plain"), None] {
        let mut r = initial(body.as_bytes());
        r.content_type = ct;
        let e = err(&mut esc, 0, r);
        assert_eq!((e, e.status()), (PublishError::UnsupportedMediaType, 415));
        let accept = e.extra_header().map(|h| h.to_string()).expect("Accept");
        assert_eq!(
            accept,
            format!("Accept: {}, {}", CONTENT_TYPES[0], CONTENT_TYPES[1])
        );
    }
}

#[test]
fn initial_publish_without_a_body_is_400() {
    let mut esc = esc();
    let mut r = initial(b"");
    let e = err(&mut esc, 0, r);
    assert_eq!((e, e.status()), (PublishError::MissingBody, 400));
    r.body = None;
    assert_eq!(err(&mut esc, 0, r), PublishError::MissingBody);
}

#[test]
fn refresh_gives_a_new_etag_and_resets_the_expiry() {
    let mut esc = esc();
    let first = ok(&mut esc, 0, initial(doc(true).as_bytes()));
    let second = ok(&mut esc, 1_000, refresh(&first.etag, Some(600)));
    assert_ne!(first.etag, second.etag);
    assert_eq!(second.expires_s, 600);
    assert!(!second.effective_changed);
    assert_eq!(esc.next_wakeup_ms(), Some(601_000));
    // The old tag is spent (RFC 3903 §4.3).
    assert_eq!(
        err(&mut esc, 2_000, refresh(&first.etag, None)),
        PublishError::UnknownEtag
    );
    assert_eq!(esc.publications(ALICE)[0].etag, second.etag);
}

#[test]
fn modify_replaces_the_document() {
    let mut esc = esc();
    let first = ok(&mut esc, 0, initial(doc(true).as_bytes()));
    assert!(esc.effective(ALICE).isb);
    let off = doc(false);
    let mut r = refresh(&first.etag, None);
    r.body = Some(off.as_bytes());
    r.content_type = Some(CT);
    let second = ok(&mut esc, 5, r);
    assert_ne!(first.etag, second.etag);
    assert!(second.effective_changed);
    assert!(!esc.effective(ALICE).isb);
    assert_eq!(esc.publications(ALICE).len(), 1, "replaced, not added");
    assert_eq!(esc.publications(ALICE)[0].body, off);
}

#[test]
fn remove_is_200_with_expires_zero() {
    let mut esc = esc();
    let first = ok(&mut esc, 0, initial(doc(true).as_bytes()));
    let out = ok(&mut esc, 10, refresh(&first.etag, Some(0)));
    assert_eq!(out.expires_s, 0);
    assert!(out.effective_changed);
    assert_eq!(esc.effective(ALICE), EffectiveSettings::default());
    assert_eq!(esc.aor_count(), 0);
    assert_eq!(esc.next_wakeup_ms(), None);
    assert_eq!(
        err(&mut esc, 20, refresh(&first.etag, Some(0))),
        PublishError::UnknownEtag
    );
    // An initial PUBLISH with Expires 0 stores nothing (RFC 3903 §6 step 5).
    let body = doc(true);
    let mut r = initial(body.as_bytes());
    r.expires_s = Some(0);
    let out = ok(&mut esc, 30, r);
    assert_eq!((out.expires_s, out.effective_changed), (0, false));
    assert_eq!(esc.aor_count(), 0);
}

#[test]
fn unknown_or_expired_etag_is_412_and_several_tags_are_400() {
    let mut esc = esc();
    let first = ok(&mut esc, 0, initial(doc(true).as_bytes()));
    let bogus = ETag::from_generated("AAAAAAAAAAAAAAAAAAAAAA".into());
    let e = err(&mut esc, 0, refresh(&bogus, None));
    assert_eq!(
        (e, e.status(), e.reason()),
        (PublishError::UnknownEtag, 412, "Conditional Request Failed")
    );
    // Another user's tag is unknown for this user.
    let mut r = refresh(&first.etag, None);
    r.aor = "someone-else@networkA.net";
    assert_eq!(esc.publish(0, r), Err(PublishError::UnknownEtag));
    let mut r = refresh(&first.etag, None);
    let two = format!("{}, {}", first.etag, first.etag);
    r.if_match = Some(&two);
    assert_eq!(err(&mut esc, 0, r).status(), 400);
    r.if_match = Some("");
    assert_eq!(err(&mut esc, 0, r), PublishError::BadIfMatch);
    // Expired at exactly 3600 s even though expire() has not run.
    assert_eq!(
        err(&mut esc, 3_600_000, refresh(&first.etag, None)),
        PublishError::UnknownEtag
    );
}

#[test]
fn expiry_boundaries_for_publish_and_refresh() {
    let mut esc = esc();
    let body = doc(true);
    let mut r = initial(body.as_bytes());
    r.expires_s = Some(60);
    let first = ok(&mut esc, 0, r);
    assert!(esc.expire(59_999).is_empty());
    let second = ok(&mut esc, 59_999, refresh(&first.etag, Some(60)));
    assert!(
        esc.expire(60_000).is_empty(),
        "refreshed one millisecond before the end"
    );
    assert_eq!(esc.next_wakeup_ms(), Some(119_999));
    assert_eq!(esc.expire(119_999), vec![Aor::new(ALICE)]);
    esc.check_invariants().expect("invariants");
    assert_eq!(
        esc.effective(ALICE),
        EffectiveSettings::default(),
        "back to the defaults"
    );
    assert_eq!(
        err(&mut esc, 119_999, refresh(&second.etag, None)),
        PublishError::UnknownEtag
    );
}

#[test]
fn too_brief_is_423_zero_and_minimum_are_fine_above_max_is_shortened() {
    let mut esc = esc();
    let body = doc(true);
    let mut r = initial(body.as_bytes());
    r.expires_s = Some(59);
    let e = err(&mut esc, 0, r);
    assert_eq!(
        (e, e.status()),
        (PublishError::IntervalTooBrief { min_expires_s: 60 }, 423)
    );
    assert_eq!(
        e.extra_header().map(|h| h.to_string()),
        Some("Min-Expires: 60".into())
    );
    r.expires_s = Some(60);
    assert_eq!(ok(&mut esc, 0, r).expires_s, 60);
    r.expires_s = Some(1_000_000);
    let out = ok(&mut esc, 0, r);
    assert_eq!(out.expires_s, 86_400);
    // A refresh asking for too little is refused too, and the state is kept.
    assert_eq!(err(&mut esc, 0, refresh(&out.etag, Some(1))).status(), 423);
}

#[test]
fn malformed_xml_is_400_naming_the_fault() {
    let mut esc = esc();
    let cases: [(&[u8], &str); 4] = [
        (b"<service-settings>", "Bad service-settings: not well-formed XML"),
        (b"<presence/>", "Bad service-settings: root element is not service-settings"),
        (b"<service-settings xmlns='urn:x'/>", "Bad service-settings: root element in a foreign namespace"),
        (
            b"<service-settings><isb-settings><incoming-session-barring active='perhaps'/></isb-settings></service-settings>",
            "Bad service-settings: invalid value for incoming-session-barring",
        ),
    ];
    for (body, reason) in cases {
        let e = err(&mut esc, 0, initial(body));
        assert_eq!((e.status(), e.reason()), (400, reason));
        assert!(matches!(e, PublishError::BadXml(_)));
    }
}

#[test]
fn oversized_body_is_413() {
    let mut esc = Compositor::with_seed(
        SettingsConfig {
            max_body_bytes: 100,
            ..config()
        },
        [1; 32],
    );
    let e = err(&mut esc, 0, initial(doc(true).as_bytes()));
    assert_eq!((e, e.status()), (PublishError::BodyTooLarge, 413));
}

#[test]
fn two_publications_compose_and_removing_one_recomputes() {
    let mut esc = esc();
    let on = ok(&mut esc, 0, initial(doc(true).as_bytes()));
    let off = ok(&mut esc, 0, initial(doc(false).as_bytes()));
    assert_ne!(on.etag, off.etag);
    assert!(on.effective_changed);
    assert!(
        !off.effective_changed,
        "ISB stays on: one publication sets it"
    );
    assert_eq!(esc.publications(ALICE).len(), 2);
    assert!(esc.effective(ALICE).isb);
    let out = ok(&mut esc, 1, refresh(&on.etag, Some(0)));
    assert!(out.effective_changed);
    assert!(!esc.effective(ALICE).isb);
    assert_eq!(esc.effective(ALICE).vis, Some(true));
}

#[test]
fn composition_of_unset_and_known_off_values() {
    let a = Settings {
        isb: None,
        vis: Some(false),
        offline_delivery: None,
        history: Some(false),
    };
    let b = Settings {
        isb: Some(false),
        vis: None,
        offline_delivery: None,
        history: Some(true),
    };
    assert_eq!(
        EffectiveSettings::compose([&a, &b]),
        EffectiveSettings {
            isb: false,
            vis: Some(false),
            offline_delivery: None,
            history: Some(true)
        }
    );
    assert_eq!(EffectiveSettings::compose([]), EffectiveSettings::default());
}

#[test]
fn too_many_publications_is_503_with_retry_after() {
    let mut esc = Compositor::with_seed(
        SettingsConfig {
            max_publications_per_aor: 2,
            ..config()
        },
        [3; 32],
    );
    let body = doc(true);
    let mut r = initial(body.as_bytes());
    r.expires_s = Some(100);
    let first = ok(&mut esc, 0, r);
    r.expires_s = Some(200);
    ok(&mut esc, 0, r);
    let e = err(&mut esc, 40_000, initial(body.as_bytes()));
    assert_eq!(e, PublishError::TooManyPublications { retry_after_s: 60 });
    assert_eq!(
        (e.status(), e.extra_header()),
        (503, Some(ExtraHeader::RetryAfter(60)))
    );
    // Refreshing and modifying still work at the limit.
    ok(&mut esc, 40_000, refresh(&first.etag, None));
    // Once one expires there is room again.
    esc.expire(200_000);
    ok(&mut esc, 200_000, initial(body.as_bytes()));
}

#[test]
fn a_full_table_refuses_new_aors_only() {
    let mut esc = esc().with_max_aors(1);
    let body = doc(true);
    ok(&mut esc, 0, initial(body.as_bytes()));
    let mut r = initial(body.as_bytes());
    r.aor = "bob@example.com";
    assert_eq!(
        esc.publish(0, r).map(|_| ()),
        Err(PublishError::TableFull { retry_after_s: 60 })
    );
    ok(&mut esc, 0, initial(body.as_bytes()));
}

#[test]
fn publications_of_different_users_are_apart() {
    let mut esc = esc();
    ok(&mut esc, 0, initial(doc(true).as_bytes()));
    let body = doc(false);
    let mut r = initial(body.as_bytes());
    r.aor = "bob@example.com";
    ok(&mut esc, 0, r);
    assert!(esc.effective(ALICE).isb);
    assert!(!esc.effective("bob@example.com").isb);
    assert_eq!(
        esc.effective("nobody@example.com"),
        EffectiveSettings::default()
    );
}

#[test]
fn snapshot_restore_drops_expired_and_reports_settings() {
    let mut esc = esc();
    let body = doc(true);
    let mut r = initial(body.as_bytes());
    r.expires_s = Some(60);
    ok(&mut esc, 0, r);
    r.expires_s = Some(600);
    r.aor = "bob@example.com";
    let kept = ok(&mut esc, 0, r);

    let json = serde_json::to_string(
        &esc.snapshot()
            .map(|(a, p)| (a.clone(), p.to_vec()))
            .collect::<Vec<_>>(),
    )
    .expect("serialise");
    let persisted: Vec<(Aor, Vec<Publication>)> = serde_json::from_str(&json).expect("deserialise");

    let mut fresh = Compositor::with_seed(config(), [9; 32]);
    let with_settings = fresh.restore(persisted, 60_000);
    fresh.check_invariants().expect("invariants");
    assert_eq!(with_settings, vec![Aor::new("bob@example.com")]);
    assert_eq!(fresh.aor_count(), 1);
    assert!(fresh.effective("bob@example.com").isb);
    assert_eq!(fresh.effective(ALICE), EffectiveSettings::default());
    assert_eq!(
        fresh.changed_aors().collect::<Vec<_>>(),
        vec![Aor::new(ALICE)],
        "the dropped one is rewritten"
    );
    // The restored entity-tag still refreshes.
    let mut r = refresh(&kept.etag, None);
    r.aor = "bob@example.com";
    let out = ok(&mut fresh, 61_000, r);
    assert_ne!(out.etag, kept.etag);
}

#[test]
fn changed_aors_drains() {
    let mut esc = esc();
    ok(&mut esc, 0, initial(doc(true).as_bytes()));
    assert_eq!(
        esc.changed_aors().collect::<Vec<_>>(),
        vec![Aor::new(ALICE)]
    );
    assert_eq!(esc.changed_aors().count(), 0);
}

#[test]
fn error_table() {
    let table = [
        (PublishError::BadIdentity, 400, None),
        (PublishError::BadEvent, 489, Some("Allow-Events")),
        (PublishError::BadIfMatch, 400, None),
        (PublishError::UnknownEtag, 412, None),
        (
            PublishError::IntervalTooBrief { min_expires_s: 60 },
            423,
            Some("Min-Expires"),
        ),
        (PublishError::MissingBody, 400, None),
        (PublishError::BodyTooLarge, 413, None),
        (PublishError::UnsupportedMediaType, 415, Some("Accept")),
        (PublishError::BadXml(XmlFault::NoRoot), 400, None),
        (
            PublishError::TooManyPublications { retry_after_s: 5 },
            503,
            Some("Retry-After"),
        ),
        (
            PublishError::TableFull { retry_after_s: 5 },
            503,
            Some("Retry-After"),
        ),
    ];
    for (e, status, header) in table {
        assert_eq!(e.status(), status, "{e}");
        assert_eq!(e.extra_header().map(|h| h.name()), header, "{e}");
        assert!(!e.reason().is_empty());
    }
}

#[test]
fn etags_are_unique_across_many_publications_and_seeds() {
    let mut seen = HashSet::new();
    for seed in 0..4u8 {
        let mut esc = Compositor::with_seed(
            SettingsConfig {
                max_publications_per_aor: 1,
                ..config()
            },
            [seed; 32],
        );
        let body = doc(true);
        let mut tag = ok(&mut esc, 0, initial(body.as_bytes())).etag;
        assert!(seen.insert(tag.clone()));
        for i in 1..500u64 {
            tag = ok(&mut esc, i, refresh(&tag, None)).etag;
            assert!(seen.insert(tag.clone()), "repeated tag {tag}");
        }
    }
    // Same seed twice: a restart with a colliding seed still never repeats within one process,
    // and the OS-seeded constructor differs from run to run.
    let a = Compositor::new(config())
        .publish(0, initial(doc(true).as_bytes()))
        .expect("ok")
        .etag;
    let b = Compositor::new(config())
        .publish(0, initial(doc(true).as_bytes()))
        .expect("ok")
        .etag;
    assert_ne!(a, b);
}

proptest! {
    /// Whatever the seed and the sequence of refreshes, modifies and new publications, every
    /// entity-tag handed out is new, and the composition matches the stored publications.
    #[test]
    fn etags_never_repeat(
        seed in any::<[u8; 32]>(),
        ops in prop::collection::vec((0u8..4, any::<bool>(), 0u32..200), 1..80),
    ) {
        let mut esc = Compositor::with_seed(config(), seed);
        let mut seen = HashSet::new();
        let mut live: Vec<ETag> = Vec::new();
        let mut now_ms = 0u64;
        let (on, off) = (doc(true), doc(false));
        for (kind, flag, advance_s) in ops {
            now_ms += u64::from(advance_s) * 1000;
            esc.expire(now_ms);
            live.retain(|t| esc.publications(ALICE).iter().any(|p| &p.etag == t));
            let body = if flag { on.as_bytes() } else { off.as_bytes() };
            let out = match (kind, live.first().cloned()) {
                (1, Some(tag)) => esc.publish(now_ms, refresh(&tag, None)).map(|o| (Some(tag), o)),
                (2, Some(tag)) => {
                    let mut r = refresh(&tag, None);
                    r.body = Some(body);
                    r.content_type = Some(CT);
                    esc.publish(now_ms, r).map(|o| (Some(tag), o))
                }
                (3, Some(tag)) => {
                    esc.publish(now_ms, refresh(&tag, Some(0))).map(|o| (Some(tag), o))
                }
                _ => esc.publish(now_ms, initial(body)).map(|o| (None, o)),
            };
            prop_assert_eq!(esc.check_invariants(), Ok(()));
            if let Ok((old, out)) = out {
                prop_assert!(seen.insert(out.etag.clone()), "repeated tag");
                if let Some(old) = old {
                    live.retain(|t| *t != old);
                }
                if out.expires_s > 0 {
                    live.push(out.etag);
                }
            }
            let composed = esc.publications(ALICE).iter().any(|p| p.settings.isb == Some(true));
            prop_assert_eq!(esc.effective(ALICE).isb, composed);
        }
    }
}
