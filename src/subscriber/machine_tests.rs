//! The SPEC 3.6 state machine driven with a virtual clock.
use super::cache::CacheChange;
use super::machine::{
    Action, EVENT, FetchResult, Notify, Phase, SubscribeResponse, Subscriber, SubscriberConfig,
    SubscriberError,
};
use crate::policy::{IdBuf, normalize};

const BOB: &str = "sip:bob@example.com";
const ROOT: &str = "http://127.0.0.1:8080/xcap-root";
const RL_URL: &str =
    "http://127.0.0.1:8080/xcap-root/resource-lists/users/sip:bob@example.com/index";
const AR_URL: &str = "http://127.0.0.1:8080/xcap-root/org.openmobilealliance.access-rules/users/sip:bob@example.com/index";
const RL_SEL: &str = "resource-lists/users/sip:bob@example.com/index";

fn cfg() -> SubscriberConfig {
    let mut c = SubscriberConfig::new(
        "127.0.0.1:5070".parse().unwrap(),
        "example.com",
        "sip:im-server@127.0.0.1:5060",
        ROOT,
    );
    c.id_seed = 42;
    c
}

fn list(entries: &[&str]) -> Vec<u8> {
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list name=\"oma_blockedcontacts\">",
    );
    for e in entries {
        s.push_str(&format!("<entry uri=\"{e}\"/>"));
    }
    s.push_str("</list></resource-lists>");
    s.into_bytes()
}

/// The SUBSCRIBE in `actions`: (call_id, from_tag, cseq, expires_s).
fn subscribe(actions: &[Action]) -> (String, String, u32, u32) {
    let found: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::SendSubscribe {
                call_id,
                from_tag,
                cseq,
                expires_s,
                ..
            } => Some((call_id.clone(), from_tag.clone(), *cseq, *expires_s)),
            _ => None,
        })
        .collect();
    assert_eq!(found.len(), 1, "one SUBSCRIBE expected in {actions:?}");
    found[0].clone()
}

fn fetches(actions: &[Action]) -> Vec<(String, Option<String>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Fetch {
                uri, if_none_match, ..
            } => Some((uri.clone(), if_none_match.clone())),
            _ => None,
        })
        .collect()
}

fn published(actions: &[Action]) -> Option<&super::Compiled> {
    actions.iter().find_map(|a| match a {
        Action::PublishPolicy { compiled, .. } => Some(compiled),
        _ => None,
    })
}

fn blocks(s: &Subscriber, who: &str) -> bool {
    let p = s.compiled(BOB).expect("policy known").policy().unwrap();
    let mut b = IdBuf::new();
    normalize(who.as_bytes(), &mut b).unwrap();
    p.blocks(b.as_bytes())
}

fn respond(
    s: &mut Subscriber,
    now: u64,
    call_id: &str,
    cseq: u32,
    code: u16,
    expires: Option<u32>,
) {
    s.on_response(
        now,
        &SubscribeResponse {
            call_id,
            cseq,
            code,
            expires_s: expires,
            to_tag: Some("glms-1"),
            ..SubscribeResponse::default()
        },
    );
}

fn notify(
    s: &mut Subscriber,
    now: u64,
    call_id: &str,
    from_tag: &str,
    state: &str,
    body: &str,
) -> u16 {
    s.on_notify(
        now,
        &Notify {
            call_id,
            from_tag: Some("glms-1"),
            to_tag: Some(from_tag),
            event: "xcap-diff",
            subscription_state: state,
            body: body.as_bytes(),
        },
    )
    .code
}

fn diff(docs: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?><xcap-diff xmlns=\"urn:ietf:params:xml:ns:xcap-diff\" \
         xmlns:rl=\"urn:ietf:params:xml:ns:resource-lists\" xcap-root=\"{ROOT}/\">{docs}</xcap-diff>"
    )
}

fn full_state() -> String {
    diff(&format!(
        "<document sel=\"{RL_SEL}\" new-etag=\"e41\"/>\
         <document sel=\"org.openmobilealliance.access-rules/users/sip:bob@example.com/index\" new-etag=\"r1\"/>"
    ))
}

/// Runs the happy path up to a published policy blocking `blocked`. Returns (call_id, tag).
fn active(s: &mut Subscriber, blocked: &[&str]) -> (String, String) {
    s.on_first_binding(0, BOB).unwrap();
    let (call_id, tag, cseq, _) = subscribe(&s.poll(0));
    respond(s, 10, &call_id, cseq, 200, Some(3600));
    assert_eq!(s.phase(BOB), Some(Phase::WaitNotify));
    assert_eq!(
        notify(s, 20, &call_id, &tag, "active;expires=3600", &full_state()),
        200
    );
    assert_eq!(s.phase(BOB), Some(Phase::Active));
    let f = fetches(&s.poll(20));
    assert_eq!(
        f,
        vec![(RL_URL.to_owned(), None), (AR_URL.to_owned(), None)]
    );
    s.on_fetched(
        30,
        BOB,
        RL_URL,
        FetchResult::Ok {
            bytes: list(blocked),
            etag: Some("e41".into()),
        },
    );
    assert!(
        published(&s.poll(30)).is_none(),
        "D6: pending until both documents are known"
    );
    assert!(s.compiled(BOB).is_none());
    s.on_fetched(31, BOB, AR_URL, FetchResult::NotFound);
    assert!(published(&s.poll(31)).is_some());
    (call_id, tag)
}

#[test]
fn subscribe_fetch_publish() {
    let mut s = Subscriber::new(cfg());
    s.on_first_binding(0, BOB).unwrap();
    let actions = s.poll(0);
    match &actions[..] {
        [
            Action::SendSubscribe {
                aor,
                to_tag,
                cseq,
                expires_s,
                body,
                branch,
                retransmission,
                ..
            },
        ] => {
            assert_eq!(aor, BOB);
            assert_eq!(
                (to_tag.clone(), *cseq, *expires_s, *retransmission),
                (None, 1, 3600, false)
            );
            let body = String::from_utf8(body.clone()).unwrap();
            assert!(body.contains("uri=\"resource-lists/users/sip:bob@example.com/index\""));
            assert!(body.contains(
                "uri=\"org.openmobilealliance.access-rules/users/sip:bob@example.com/index\""
            ));
            assert!(branch.starts_with("z9hG4bK-sp-"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(EVENT, "xcap-diff;diff-processing=aggregate");
    let mut s = Subscriber::new(cfg());
    active(&mut s, &["sip:tom@example.com"]);
    assert!(blocks(&s, "sip:tom@example.com"));
    assert!(!blocks(&s, "sip:ann@example.com"));
}

#[test]
fn notify_before_the_2xx_is_accepted() {
    let mut s = Subscriber::new(cfg());
    s.on_first_binding(0, BOB).unwrap();
    let (call_id, tag, cseq, _) = subscribe(&s.poll(0));
    // RFC 6665 §4.1.2.4.
    assert_eq!(
        notify(&mut s, 5, &call_id, &tag, "active;expires=3600", ""),
        200
    );
    assert_eq!(s.phase(BOB), Some(Phase::Active));
    // Empty first NOTIFY: both documents are revalidated anyway (SPEC 3.7).
    assert_eq!(fetches(&s.poll(5)).len(), 2);
    respond(&mut s, 6, &call_id, cseq, 200, Some(3600));
    assert_eq!(s.phase(BOB), Some(Phase::Active));
}

#[test]
fn patch_applied_when_previous_etag_matches() {
    let mut s = Subscriber::new(cfg());
    let (call_id, tag) = active(&mut s, &[]);
    let patch = diff(&format!(
        "<document sel=\"{RL_SEL}\" previous-etag=\"e41\" new-etag=\"e42\">\
         <add sel=\"rl:resource-lists/rl:list[@name='oma_blockedcontacts']\"><rl:entry uri=\"sip:tom@example.com\"/></add>\
         </document>"
    ));
    assert_eq!(
        notify(&mut s, 100, &call_id, &tag, "active;expires=3500", &patch),
        200
    );
    let actions = s.poll(100);
    assert!(fetches(&actions).is_empty());
    assert!(published(&actions).is_some());
    assert!(blocks(&s, "sip:tom@example.com"));
    // The same patch again (previous-etag now stale): GET with If-None-Match e42.
    assert_eq!(notify(&mut s, 110, &call_id, &tag, "active", &patch), 200);
    assert_eq!(
        fetches(&s.poll(110)),
        vec![(RL_URL.to_owned(), Some("e42".into()))]
    );
}

#[test]
fn body_not_changed_and_deletion() {
    let mut s = Subscriber::new(cfg());
    let (call_id, tag) = active(&mut s, &["sip:tom@example.com"]);
    let bnc = diff(&format!(
        "<document sel=\"{RL_SEL}\" previous-etag=\"e41\" new-etag=\"e43\"><body-not-changed/></document>"
    ));
    assert_eq!(notify(&mut s, 100, &call_id, &tag, "active", &bnc), 200);
    let a = s.poll(100);
    assert!(fetches(&a).is_empty() && published(&a).is_none());
    // Without a patch: GET with the updated tag.
    let nopatch = diff(&format!(
        "<document sel=\"{RL_SEL}\" previous-etag=\"e43\" new-etag=\"e44\"/>"
    ));
    assert_eq!(notify(&mut s, 110, &call_id, &tag, "active", &nopatch), 200);
    assert_eq!(
        fetches(&s.poll(110)),
        vec![(RL_URL.to_owned(), Some("e43".into()))]
    );
    s.on_fetched(111, BOB, RL_URL, FetchResult::NotModified);
    assert!(s.poll(111).is_empty());
    // Deleted: the list blocks nobody any more.
    let del = diff(&format!(
        "<document sel=\"{RL_SEL}\" previous-etag=\"e43\"/>"
    ));
    assert_eq!(notify(&mut s, 120, &call_id, &tag, "active", &del), 200);
    assert!(published(&s.poll(120)).is_some());
    assert!(!blocks(&s, "sip:tom@example.com"));
}

#[test]
fn change_during_a_fetch_fetches_again() {
    let mut s = Subscriber::new(cfg());
    let (call_id, tag) = active(&mut s, &[]);
    let c1 = diff(&format!(
        "<document sel=\"{RL_SEL}\" previous-etag=\"e41\" new-etag=\"e42\"/>"
    ));
    let c2 = diff(&format!(
        "<document sel=\"{RL_SEL}\" previous-etag=\"e42\" new-etag=\"e43\"/>"
    ));
    notify(&mut s, 100, &call_id, &tag, "active", &c1);
    assert_eq!(fetches(&s.poll(100)).len(), 1);
    notify(&mut s, 101, &call_id, &tag, "active", &c2);
    assert!(fetches(&s.poll(101)).is_empty(), "one GET at a time");
    s.on_fetched(
        102,
        BOB,
        RL_URL,
        FetchResult::Ok {
            bytes: list(&[]),
            etag: Some("e42".into()),
        },
    );
    assert_eq!(
        fetches(&s.poll(102)),
        vec![(RL_URL.to_owned(), Some("e42".into()))]
    );
}

#[test]
fn refresh_at_80_percent_and_481_resubscribes() {
    let mut s = Subscriber::new(cfg());
    let (call_id, _) = active(&mut s, &[]);
    assert!(s.poll(2_000_000).is_empty());
    let a = s.poll(20 + 2_880_000);
    let (cid, _, cseq, expires) = subscribe(&a);
    assert_eq!((cid.as_str(), cseq, expires), (call_id.as_str(), 2, 3600));
    assert_eq!(s.phase(BOB), Some(Phase::Refreshing));
    respond(&mut s, 2_880_100, &call_id, 2, 200, Some(600));
    assert_eq!(s.phase(BOB), Some(Phase::Active));
    // Next refresh at 80 % of the granted 600 s.
    let (_, _, cseq, _) = subscribe(&s.poll(2_880_100 + 480_000));
    assert_eq!(cseq, 3);
    // RFC 6665 §4.1.2.2: 481 on a refresh: new subscription, new Call-ID.
    respond(&mut s, 3_400_000, &call_id, 3, 481, None);
    let (new_cid, _, cseq, _) = subscribe(&s.poll(3_400_000));
    assert_ne!(new_cid, call_id);
    assert_eq!(cseq, 1);
    assert_eq!(s.phase(BOB), Some(Phase::Subscribing));
    // The old dialog is gone.
    assert!(s.compiled(BOB).is_some(), "the policy stays (D6)");
}

#[test]
fn refresh_failure_retries_until_expiry() {
    let mut s = Subscriber::new(cfg());
    let (call_id, _) = active(&mut s, &[]);
    let t = 20 + 2_880_000;
    let (_, _, cseq, _) = subscribe(&s.poll(t));
    respond(&mut s, t + 1, &call_id, cseq, 503, None);
    assert_eq!(s.phase(BOB), Some(Phase::Active));
    // Back-off 1 s, same dialog.
    let (cid, _, cseq2, _) = subscribe(&s.poll(t + 1_001));
    assert_eq!((cid, cseq2), (call_id.clone(), cseq + 1));
    // Timer F on that one: treated as 408, next retry after 2 s.
    let a = s.poll(t + 1_001 + 32_000);
    assert!(a.is_empty(), "{a:?}");
    let (_, _, cseq3, _) = subscribe(&s.poll(t + 1_001 + 32_000 + 2_000));
    assert_eq!(cseq3, cseq + 2);
}

#[test]
fn min_expires_after_423() {
    let mut s = Subscriber::new(cfg());
    s.on_first_binding(0, BOB).unwrap();
    let (call_id, _, cseq, _) = subscribe(&s.poll(0));
    s.on_response(
        1,
        &SubscribeResponse {
            call_id: &call_id,
            cseq,
            code: 423,
            min_expires_s: Some(7200),
            ..Default::default()
        },
    );
    let (_, _, _, expires) = subscribe(&s.poll(1));
    assert_eq!(expires, 7200);
    assert_eq!(s.phase(BOB), Some(Phase::Subscribing));
}

#[test]
fn refusals_fail_with_long_backoff_and_keep_the_policy() {
    for code in [403u16, 404, 489] {
        let mut s = Subscriber::new(cfg());
        let (call_id, tag) = active(&mut s, &["sip:tom@example.com"]);
        // The subscription is terminated by the notifier: resubscribe gets refused.
        assert_eq!(
            notify(
                &mut s,
                50,
                &call_id,
                &tag,
                "terminated;reason=deactivated",
                ""
            ),
            200
        );
        let (cid, _, cseq, _) = subscribe(&s.poll(50));
        respond(&mut s, 60, &cid, cseq, code, None);
        assert_eq!(s.phase(BOB), Some(Phase::Failed));
        assert!(
            blocks(&s, "sip:tom@example.com"),
            "last policy stays ({code})"
        );
        assert!(s.poll(60 + 299_999).is_empty());
        subscribe(&s.poll(60 + 300_000));
    }
}

#[test]
fn transient_failures_back_off_exponentially() {
    let mut s = Subscriber::new(cfg());
    s.on_first_binding(0, BOB).unwrap();
    let (cid, _, cseq, _) = subscribe(&s.poll(0));
    respond(&mut s, 0, &cid, cseq, 500, None);
    assert_eq!(s.phase(BOB), Some(Phase::Backoff));
    let mut now = 0;
    for delay in [1_000u64, 2_000, 4_000] {
        assert!(s.poll(now + delay - 1).is_empty());
        now += delay;
        let (cid, _, cseq, _) = subscribe(&s.poll(now));
        // Timer F fires: 408.
        assert!(s.poll(now + 31_999).is_empty());
        now += 32_000;
        assert!(s.poll(now).is_empty());
        let _ = (cid, cseq);
    }
    // Retry-After on a 503 wins.
    let (cid, _, cseq, _) = subscribe(&s.poll(now + 8_000));
    now += 8_000;
    s.on_response(
        now,
        &SubscribeResponse {
            call_id: &cid,
            cseq,
            code: 503,
            retry_after_s: Some(20),
            ..Default::default()
        },
    );
    assert!(s.poll(now + 19_999).is_empty());
    subscribe(&s.poll(now + 20_000));
}

#[test]
fn timer_n_without_notify() {
    let mut s = Subscriber::new(cfg());
    s.on_first_binding(0, BOB).unwrap();
    let (cid, _, cseq, _) = subscribe(&s.poll(0));
    respond(&mut s, 10, &cid, cseq, 200, Some(3600));
    assert!(s.poll(10 + 31_999).is_empty());
    assert!(s.poll(10 + 32_000).is_empty());
    assert_eq!(s.phase(BOB), Some(Phase::Backoff));
    let (cid2, _, _, _) = subscribe(&s.poll(10 + 33_000));
    assert_ne!(cid2, cid);
    // A NOTIFY on the abandoned dialog is unknown now.
    assert_eq!(notify(&mut s, 10 + 33_001, &cid, "x", "active", ""), 481);
}

#[test]
fn termination_reasons() {
    let mut s = Subscriber::new(cfg());
    let (cid, tag) = active(&mut s, &[]);
    assert_eq!(
        notify(&mut s, 100, &cid, &tag, "terminated;reason=timeout", ""),
        200
    );
    let (cid, tag, cseq, _) = subscribe(&s.poll(100));
    respond(&mut s, 101, &cid, cseq, 200, Some(3600));
    notify(&mut s, 102, &cid, &tag, "active", "");
    s.poll(102);
    assert_eq!(
        notify(
            &mut s,
            200,
            &cid,
            &tag,
            "terminated;reason=probation;retry-after=30",
            ""
        ),
        200
    );
    assert_eq!(s.phase(BOB), Some(Phase::Backoff));
    assert!(s.poll(200 + 29_999).is_empty());
    let (cid, tag, cseq, _) = subscribe(&s.poll(200 + 30_000));
    respond(&mut s, 30_300, &cid, cseq, 200, Some(3600));
    notify(&mut s, 30_301, &cid, &tag, "active", "");
    s.poll(30_301);
    assert_eq!(
        notify(
            &mut s,
            30_400,
            &cid,
            &tag,
            "terminated;reason=noresource",
            ""
        ),
        200
    );
    assert_eq!(s.phase(BOB), Some(Phase::Failed));
    assert!(s.poll(30_400 + 299_999).is_empty());
    subscribe(&s.poll(30_400 + 300_000));
}

#[test]
fn notify_validation() {
    let mut s = Subscriber::new(cfg());
    let (cid, tag) = active(&mut s, &["sip:tom@example.com"]);
    let mut n = Notify {
        call_id: &cid,
        from_tag: Some("glms-1"),
        to_tag: Some(&tag),
        event: "xcap-change",
        subscription_state: "active",
        body: b"",
    };
    assert_eq!(s.on_notify(100, &n).code, 200, "D3: the older package name");
    n.event = "presence";
    assert_eq!(s.on_notify(100, &n).code, 489);
    n.event = "xcap-diff;diff-processing=aggregate";
    n.call_id = "nope";
    assert_eq!(s.on_notify(100, &n).code, 481);
    n.call_id = &cid;
    n.from_tag = Some("other-fork");
    assert_eq!(s.on_notify(100, &n).code, 481);
    n.from_tag = Some("glms-1");
    n.to_tag = Some("not-ours");
    assert_eq!(s.on_notify(100, &n).code, 481);
    n.to_tag = Some(&tag);
    n.subscription_state = "";
    assert_eq!(s.on_notify(100, &n).code, 400);
    n.subscription_state = "terminated;reason=rejected";
    n.body = b"<xcap-diff";
    assert_eq!(s.on_notify(100, &n).code, 400);
    assert_eq!(
        s.phase(BOB),
        Some(Phase::Active),
        "a refused NOTIFY changes nothing"
    );
    assert!(blocks(&s, "sip:tom@example.com"));
}

#[test]
fn grace_then_unsubscribe_then_stopped() {
    let mut s = Subscriber::new(cfg());
    let (cid, tag) = active(&mut s, &["sip:tom@example.com"]);
    s.on_last_binding_gone(1_000, BOB);
    assert!(s.poll(1_000 + 299_999).is_empty());
    assert!(
        blocks(&s, "sip:tom@example.com"),
        "the policy stays during grace"
    );
    let (c, _, cseq, expires) = subscribe(&s.poll(1_000 + 300_000));
    assert_eq!((c.as_str(), expires), (cid.as_str(), 0));
    assert_eq!(s.phase(BOB), Some(Phase::Unsubscribing));
    respond(&mut s, 301_100, &cid, cseq, 200, Some(0));
    assert_eq!(
        notify(&mut s, 301_200, &cid, &tag, "terminated;reason=timeout", ""),
        200
    );
    let a = s.poll(301_200);
    assert_eq!(a, vec![Action::Stopped { aor: BOB.into() }]);
    assert_eq!(s.phase(BOB), None);
    assert!(s.is_empty());
    assert!(
        s.export_dirty()
            .contains(&CacheChange::Remove { aor: BOB.into() })
    );
}

#[test]
fn binding_during_grace_cancels_and_after_unsubscribe_restarts() {
    let mut s = Subscriber::new(cfg());
    let (cid, _) = active(&mut s, &[]);
    s.on_last_binding_gone(1_000, BOB);
    s.on_first_binding(2_000, BOB).unwrap();
    assert!(s.poll(1_000 + 300_000).is_empty(), "grace cancelled");
    assert_eq!(s.phase(BOB), Some(Phase::Active));
    s.on_last_binding_gone(400_000, BOB);
    let (_, _, _, e) = subscribe(&s.poll(700_000));
    assert_eq!(e, 0);
    s.on_first_binding(700_001, BOB).unwrap();
    let (c2, _, cseq, e) = subscribe(&s.poll(700_001));
    assert_ne!(c2, cid);
    assert_eq!((cseq, e), (1, 3600));
}

#[test]
fn unsubscribe_ends_without_final_notify() {
    let mut s = Subscriber::new(cfg());
    let (cid, _) = active(&mut s, &[]);
    s.on_last_binding_gone(0, BOB);
    let (_, _, cseq, _) = subscribe(&s.poll(300_000));
    respond(&mut s, 300_010, &cid, cseq, 200, Some(0));
    assert!(s.poll(300_010 + 31_999).is_empty());
    assert_eq!(
        s.poll(300_010 + 32_000),
        vec![Action::Stopped { aor: BOB.into() }]
    );
}

#[test]
fn grace_before_any_dialog_just_stops() {
    let mut s = Subscriber::new(cfg());
    s.on_first_binding(0, BOB).unwrap();
    let (cid, _, cseq, _) = subscribe(&s.poll(0));
    respond(&mut s, 1, &cid, cseq, 503, None);
    s.on_last_binding_gone(2, BOB);
    let a = s.poll(300_002);
    assert!(a.contains(&Action::Stopped { aor: BOB.into() }), "{a:?}");
}

#[test]
fn malformed_document_keeps_the_last_policy() {
    let mut s = Subscriber::new(cfg());
    let (cid, tag) = active(&mut s, &["sip:tom@example.com"]);
    let change = diff(&format!(
        "<document sel=\"{RL_SEL}\" previous-etag=\"e41\" new-etag=\"e42\"/>"
    ));
    notify(&mut s, 100, &cid, &tag, "active", &change);
    s.poll(100);
    s.on_fetched(
        101,
        BOB,
        RL_URL,
        FetchResult::Ok {
            bytes: b"<resource-lists".to_vec(),
            etag: Some("e42".into()),
        },
    );
    let a = s.poll(101);
    assert!(
        matches!(a.as_slice(), [Action::PolicyRejected { .. }]),
        "{a:?}"
    );
    assert!(blocks(&s, "sip:tom@example.com"));
}

#[test]
fn referenced_documents_are_fetched_before_the_first_policy() {
    let mut s = Subscriber::new(cfg());
    s.on_first_binding(0, BOB).unwrap();
    let (cid, tag, _, _) = subscribe(&s.poll(0));
    notify(&mut s, 1, &cid, &tag, "active", "");
    s.poll(1);
    let doc = "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list name=\"oma_blockedcontacts\">\
               <external anchor=\"http://127.0.0.1:8080/xcap-root/resource-lists/users/sip:bob@example.com/rcs/~~/resource-lists/list%5b@name=%22x%22%5d\"/>\
               </list></resource-lists>";
    s.on_fetched(
        2,
        BOB,
        RL_URL,
        FetchResult::Ok {
            bytes: doc.as_bytes().to_vec(),
            etag: Some("e1".into()),
        },
    );
    s.on_fetched(3, BOB, AR_URL, FetchResult::NotFound);
    let a = s.poll(3);
    assert!(published(&a).is_none(), "D6: waits for the referenced list");
    let other_url = format!("{ROOT}/resource-lists/users/sip:bob@example.com/rcs");
    assert_eq!(fetches(&a), vec![(other_url.clone(), None)]);
    s.on_fetched(
        4,
        BOB,
        &other_url,
        FetchResult::Ok {
            bytes: list(&[]).replace_list_name(),
            etag: Some("x1".into()),
        },
    );
    assert!(published(&s.poll(4)).is_some());
    assert!(blocks(&s, "sip:rcs@example.com"));
}

trait ReplaceName {
    fn replace_list_name(self) -> Vec<u8>;
}

impl ReplaceName for Vec<u8> {
    /// The test list renamed to `x` with one member.
    fn replace_list_name(self) -> Vec<u8> {
        String::from_utf8(self)
            .unwrap()
            .replace(
                "oma_blockedcontacts\">",
                "x\"><entry uri=\"sip:rcs@example.com\"/>",
            )
            .into_bytes()
    }
}

#[test]
fn durable_cache_restores_and_revalidates() {
    let mut s = Subscriber::new(cfg());
    active(&mut s, &["sip:tom@example.com"]);
    let changes = s.export_dirty();
    assert!(s.export_dirty().is_empty(), "exported once");
    let entries: Vec<_> = changes
        .into_iter()
        .filter_map(|c| match c {
            CacheChange::Put(e) => Some(e),
            CacheChange::Remove { .. } => None,
        })
        .collect();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].docs.len(), 2);
    let json = serde_json::to_string(&entries).unwrap();
    let back: Vec<super::CacheEntry> = serde_json::from_str(&json).unwrap();

    // "Restart".
    let mut s = Subscriber::new(cfg());
    s.restore(5_000, back);
    assert!(
        published(&s.poll(5_000)).is_some(),
        "D6: the last list applies at once"
    );
    assert!(blocks(&s, "sip:tom@example.com"));
    assert_eq!(s.phase(BOB), Some(Phase::Idle));
    s.on_first_binding(5_001, BOB).unwrap();
    let (cid, tag, cseq, _) = subscribe(&s.poll(5_001));
    respond(&mut s, 5_002, &cid, cseq, 200, Some(3600));
    notify(&mut s, 5_003, &cid, &tag, "active", &full_state());
    let f = fetches(&s.poll(5_003));
    // Same ETag for resource-lists: no GET; access-rules was absent: GET (no tag to send).
    assert_eq!(f, vec![(AR_URL.to_owned(), None)]);
    s.on_fetched(5_004, BOB, AR_URL, FetchResult::NotFound);
    assert!(published(&s.poll(5_004)).is_none(), "nothing changed");
}

#[test]
fn restored_aor_without_binding_is_dropped_after_grace() {
    let mut s = Subscriber::new(cfg());
    active(&mut s, &[]);
    let entries: Vec<_> = s
        .export_dirty()
        .into_iter()
        .filter_map(|c| match c {
            CacheChange::Put(e) => Some(e),
            CacheChange::Remove { .. } => None,
        })
        .collect();
    let mut s = Subscriber::new(cfg());
    s.restore(0, entries);
    s.poll(0);
    assert_eq!(s.poll(300_000), vec![Action::Stopped { aor: BOB.into() }]);
}

#[test]
fn udp_retransmissions_keep_the_branch() {
    let mut c = cfg();
    c.retransmit_t1_ms = Some(500);
    let mut s = Subscriber::new(c);
    s.on_first_binding(0, BOB).unwrap();
    let first = s.poll(0);
    let branch_of = |a: &[Action]| match a {
        [
            Action::SendSubscribe {
                branch,
                retransmission,
                cseq,
                ..
            },
        ] => (branch.clone(), *retransmission, *cseq),
        other => panic!("{other:?}"),
    };
    let (b0, r0, c0) = branch_of(&first);
    assert!(!r0);
    let (b1, r1, c1) = branch_of(&s.poll(500));
    assert_eq!((b1.as_str(), r1, c1), (b0.as_str(), true, c0));
    assert!(s.poll(1_499).is_empty());
    assert!(!s.poll(1_500).is_empty());
}

#[test]
fn table_is_bounded() {
    let mut c = cfg();
    c.max_aors = 2;
    let mut s = Subscriber::new(c);
    s.on_first_binding(0, "sip:a@example.com").unwrap();
    s.on_first_binding(0, "sip:b@example.com").unwrap();
    assert_eq!(
        s.on_first_binding(0, "sip:c@example.com"),
        Err(SubscriberError::TableFull)
    );
    assert_eq!(s.len(), 2);
    assert_eq!(s.poll(0).len(), 2);
}

#[test]
fn failed_fetch_is_retried() {
    let mut s = Subscriber::new(cfg());
    s.on_first_binding(0, BOB).unwrap();
    let (cid, tag, _, _) = subscribe(&s.poll(0));
    notify(&mut s, 1, &cid, &tag, "active", "");
    s.poll(1);
    s.on_fetched(2, BOB, RL_URL, FetchResult::Failed);
    assert!(s.poll(2).is_empty());
    assert_eq!(fetches(&s.poll(1_002)), vec![(RL_URL.to_owned(), None)]);
    assert!(s.compiled(BOB).is_none(), "still pending");
}

#[test]
fn rendered_subscribe_scans_as_sip() {
    let mut s = Subscriber::new(cfg());
    s.on_first_binding(0, BOB).unwrap();
    let a = s.poll(0);
    let bytes = super::wire::render_subscribe(s.config(), &a[0], "UDP", "127.0.0.1:5060").unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(text.starts_with("SUBSCRIBE sip:bob@example.com SIP/2.0\r\n"));
    assert!(text.contains("\r\nEvent: xcap-diff;diff-processing=aggregate\r\n"));
    assert!(text.contains("\r\nFrom: <sip:im-server@example.com>;tag=sp"));
    assert!(text.contains("\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-sp-"));
    let mut parsed = crate::sip::Parsed::new();
    let scanned = parsed.scan_datagram(&bytes);
    assert!(scanned.is_ok(), "{scanned:?}");
    assert!(
        super::wire::render_subscribe(s.config(), &Action::Stopped { aor: BOB.into() }, "UDP", "x")
            .is_none()
    );
}
