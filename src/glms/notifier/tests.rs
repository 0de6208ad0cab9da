//! Protocol tests of the sans-IO core with a virtual clock and an in-memory document index:
//! every refusal, the full state, changes per diff-processing, coalescing, one NOTIFY in
//! flight, responses, refresh, unsubscribe, expiry, restore.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::glms::xcap::{Change, XcapCore, XcapUri, parse_xcap_diff};
use crate::sip::{HeaderName, Parsed};

use super::*;

const SVC: &str = "im-server@example.com";
const BOB: &str = "sip:bob@example.com";
const RL: &str = "resource-lists";
const AR: &str = "org.openmobilealliance.access-rules";
const ROOT_URL: &str = "http://127.0.0.1:8080/xcap-root";

#[derive(Default)]
struct Docs(RefCell<BTreeMap<(String, String, String), String>>);

impl Docs {
    fn with(entries: &[(&str, &str, &str, &str)]) -> Docs {
        let d = Docs::default();
        for (a, x, n, e) in entries {
            d.set(a, x, n, e);
        }
        d
    }
    fn set(&self, auid: &str, xui: &str, doc: &str, etag: &str) {
        self.0
            .borrow_mut()
            .insert((auid.into(), xui.into(), doc.into()), etag.into());
    }
}

impl DocIndex for Docs {
    fn etag(&self, auid: &str, xui: &str, doc: &str) -> Option<String> {
        self.0
            .borrow()
            .get(&(auid.into(), xui.into(), doc.into()))
            .cloned()
    }
    fn list(&self, auid: &str, xui: &str) -> Vec<String> {
        self.0
            .borrow()
            .keys()
            .filter(|(a, x, _)| a == auid && x == xui)
            .map(|(_, _, n)| n.clone())
            .collect()
    }
}

fn cfg() -> NotifierConfig {
    NotifierConfig {
        xcap_root_url: ROOT_URL.into(),
        default_expires_s: 3600,
        min_expires_s: 60,
        max_expires_s: 86_400,
        max_subscriptions: 4,
        coalesce_ms: 2,
        service_identities: vec![SVC.into()],
        contact: "sip:glms@127.0.0.1:5070".into(),
    }
}

fn rl_body(entries: &[&str]) -> Vec<u8> {
    let mut s = String::from(
        "<?xml version=\"1.0\"?><resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list>",
    );
    for e in entries {
        s.push_str(&format!("<entry uri=\"{e}\"/>"));
    }
    s.push_str("</list></resource-lists>");
    s.into_bytes()
}

fn peer() -> SocketAddr {
    "127.0.0.1:5060".parse().unwrap()
}

/// An initial SUBSCRIBE from the service identity for Bob's two documents.
fn sub_req<'a>(event: &'a str, body: &'a [u8]) -> SubscribeInput<'a> {
    SubscribeInput {
        subscriber: SVC.into(),
        subscriber_uri: format!("sip:{SVC}"),
        resource_uri: BOB.into(),
        call_id: "call-1@im".into(),
        from_tag: "ims-77".into(),
        to_tag: None,
        cseq: 1,
        event_header: event,
        accept: Some("application/xcap-diff+xml"),
        expires_s: Some(3600),
        content_type: Some("application/resource-lists+xml"),
        body,
        contact: "sip:im-server@127.0.0.1:5060".into(),
        route_to: peer(),
    }
}

fn bob_docs() -> Vec<u8> {
    rl_body(&[
        "resource-lists/users/sip:bob@example.com/index",
        "org.openmobilealliance.access-rules/users/sip:bob@example.com/index",
    ])
}

/// A decoded NOTIFY.
#[derive(Debug)]
struct Notify {
    to: SocketAddr,
    call_id: String,
    cseq: u32,
    state: String,
    event: String,
    diff: crate::glms::xcap::XcapDiff,
}

fn decode(a: &Action) -> Notify {
    let Action::Send {
        to,
        bytes,
        call_id,
        cseq,
    } = a;
    let mut p = Parsed::new();
    p.scan_datagram(bytes).expect("NOTIFY scans");
    let v = p.view(bytes);
    assert_eq!(v.method_bytes(), b"NOTIFY");
    let h = |n| String::from_utf8(v.header(n).unwrap_or(b"").to_vec()).unwrap();
    assert_eq!(h(HeaderName::ContentType), "application/xcap-diff+xml");
    assert_eq!(h(HeaderName::CallId), *call_id);
    assert_eq!(h(HeaderName::CSeq), format!("{cseq} NOTIFY"));
    Notify {
        to: *to,
        call_id: call_id.clone(),
        cseq: *cseq,
        state: h(HeaderName::SubscriptionState),
        event: h(HeaderName::Event),
        diff: parse_xcap_diff(v.body()).expect("body is xcap-diff"),
    }
}

fn one(actions: Vec<Action>) -> Notify {
    assert_eq!(actions.len(), 1, "exactly one NOTIFY: {actions:?}");
    decode(&actions[0])
}

fn change(auid: &str, prev: Option<&str>, new: Option<&str>, c: Change) -> DocChangeEvent {
    DocChangeEvent {
        auid: auid.into(),
        xui: BOB.into(),
        doc: "index".into(),
        previous_etag: prev.map(Into::into),
        new_etag: new.map(Into::into),
        change: c,
    }
}

/// A real patch: Tom added to Bob's blocked list through an element PUT.
fn tom_patch() -> Change {
    let core = XcapCore::new();
    let doc = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list name=\"oma_blockedcontacts\"/></resource-lists>";
    let u = |s: &str| XcapUri::parse(s, "/xcap-root").unwrap();
    let base = "/xcap-root/resource-lists/users/sip:bob@example.com/index";
    let stored = core
        .put(
            &u(base),
            None,
            "application/resource-lists+xml",
            doc.as_bytes(),
        )
        .unwrap()
        .document;
    let el = format!(
        "{base}/~~/resource-lists/list%5b@name=%22oma_blockedcontacts%22%5d/entry%5b@uri=%22sip:tom@example.com%22%5d"
    );
    let out = core
        .put(
            &u(&el),
            Some(&stored),
            "application/xcap-el+xml",
            b"<entry xmlns=\"urn:ietf:params:xml:ns:resource-lists\" uri=\"sip:tom@example.com\"/>",
        )
        .unwrap();
    assert!(matches!(out.change, Change::Patched(_)));
    out.change
}

/// Subscribes, drains the full-state NOTIFY and answers it 200. Returns the to-tag.
fn subscribed(n: &mut Notifier, docs: &Docs, event: &str, now: u64) -> String {
    let body = bob_docs();
    let ok = n.on_subscribe(now, sub_req(event, &body), docs).unwrap();
    let full = one(n.poll(now));
    n.on_notify_response(now, &full.call_id, full.cseq, 200);
    n.check_invariants();
    ok.to_tag
}

fn refused(n: &mut Notifier, req: SubscribeInput<'_>) -> Rejection {
    let docs = Docs::default();
    let r = n.on_subscribe(0, req, &docs).unwrap_err();
    assert!(n.poll(0).is_empty(), "a refusal sends nothing");
    assert!(n.is_empty());
    r
}

// --------------------------------------------------------------------------------------------
// Refusals
// --------------------------------------------------------------------------------------------

#[test]
fn wrong_event_package_is_489_with_allow_events() {
    let mut n = Notifier::new(cfg());
    let body = bob_docs();
    let r = refused(&mut n, sub_req("presence", &body));
    assert_eq!(r.code(), 489);
    assert!(r.headers.contains(&("Allow-Events", "xcap-diff".into())));
    let r = refused(
        &mut n,
        sub_req("xcap-diff;diff-processing=everything", &body),
    );
    assert_eq!(r.code(), 489);
}

#[test]
fn missing_and_malformed_bodies_are_400() {
    let mut n = Notifier::new(cfg());
    let r = refused(&mut n, sub_req("xcap-diff", b""));
    assert_eq!(r.code(), 400);
    assert_eq!(
        r.reason_phrase(),
        "Bad Request - Missing resource-lists body"
    );
    let r = refused(&mut n, sub_req("xcap-diff", b"<resource-lists><list>"));
    assert_eq!(r.code(), 400);
    let body = rl_body(&["resource-lists/users/sip:bob@example.com/index/~~/resource-lists"]);
    let r = refused(&mut n, sub_req("xcap-diff", &body));
    assert_eq!((r.code(), r.error), (400, SubscribeError::NodeSelector));
}

#[test]
fn wrong_body_type_is_415_and_wrong_accept_406() {
    let mut n = Notifier::new(cfg());
    let body = bob_docs();
    let mut req = sub_req("xcap-diff", &body);
    req.content_type = Some("application/xml");
    let r = refused(&mut n, req);
    assert_eq!(r.code(), 415);
    assert!(
        r.headers
            .iter()
            .any(|(h, v)| *h == "Accept" && v == "application/resource-lists+xml")
    );
    let mut req = sub_req("xcap-diff", &body);
    req.accept = Some("application/pidf+xml");
    assert_eq!(refused(&mut n, req).code(), 406);
}

#[test]
fn short_expires_is_423_with_min_expires_and_long_is_clamped() {
    let mut n = Notifier::new(cfg());
    let body = bob_docs();
    let mut req = sub_req("xcap-diff", &body);
    req.expires_s = Some(59);
    let r = refused(&mut n, req);
    assert_eq!(r.code(), 423);
    assert!(r.headers.contains(&("Min-Expires", "60".into())));
    let docs = Docs::default();
    let mut req = sub_req("xcap-diff", &body);
    req.expires_s = Some(1_000_000);
    assert_eq!(n.on_subscribe(0, req, &docs).unwrap().expires_s, 86_400);
    let full = one(n.poll(0));
    assert_eq!(full.state, "active;expires=86400");
    // Absent Expires: the default.
    let mut req = sub_req("xcap-diff", &body);
    req.expires_s = None;
    req.call_id = "call-2".into();
    assert_eq!(n.on_subscribe(0, req, &docs).unwrap().expires_s, 3600);
}

#[test]
fn users_only_their_own_documents_service_identities_anyones() {
    let mut n = Notifier::new(cfg());
    let body = bob_docs();
    let mut req = sub_req("xcap-diff", &body);
    req.subscriber = "tom@example.com".into();
    let r = refused(&mut n, req);
    assert_eq!(r.code(), 403);
    assert!(
        r.reason_phrase()
            .contains("resource-lists/users/sip:bob@example.com/index"),
        "{}",
        r.reason_phrase()
    );
    // Bob himself may.
    let docs = Docs::default();
    let mut req = sub_req("xcap-diff", &body);
    req.subscriber = "bob@example.com".into();
    assert!(n.on_subscribe(0, req, &docs).is_ok());
    // Bob may not watch his documents and Tom's in one list.
    let mixed = rl_body(&[
        "resource-lists/users/sip:bob@example.com/index",
        "resource-lists/users/sip:tom@example.com/index",
    ]);
    let mut req = sub_req("xcap-diff", &mixed);
    req.subscriber = "bob@example.com".into();
    req.call_id = "c2".into();
    let r = n.on_subscribe(0, req, &docs).unwrap_err();
    assert_eq!(r.code(), 403);
    assert!(r.reason_phrase().contains("sip:tom@example.com"));
    let global = rl_body(&["xcap-caps/global/index"]);
    let r = n
        .on_subscribe(0, sub_req("xcap-diff", &global), &docs)
        .unwrap_err();
    assert_eq!(r.code(), 403);
}

#[test]
fn table_full_is_503_with_retry_after() {
    let mut n = Notifier::new(cfg());
    let docs = Docs::default();
    let body = bob_docs();
    for i in 0..4 {
        let mut req = sub_req("xcap-diff", &body);
        req.call_id = format!("c{i}");
        n.on_subscribe(0, req, &docs).unwrap();
    }
    let mut req = sub_req("xcap-diff", &body);
    req.call_id = "c-more".into();
    let r = n.on_subscribe(0, req, &docs).unwrap_err();
    assert_eq!(r.code(), 503);
    assert!(r.headers.iter().any(|(h, _)| *h == "Retry-After"));
}

#[test]
fn in_dialog_subscribe_for_unknown_dialog_is_481() {
    let mut n = Notifier::new(cfg());
    let body = bob_docs();
    let mut req = sub_req("xcap-diff", &body);
    req.to_tag = Some("nope".into());
    assert_eq!(refused(&mut n, req).code(), 481);
}

// --------------------------------------------------------------------------------------------
// Full state
// --------------------------------------------------------------------------------------------

#[test]
fn full_state_follows_the_200_with_new_etags_only() {
    let mut n = Notifier::new(cfg());
    // The access-rules document does not exist: it is not listed.
    let docs = Docs::with(&[(RL, BOB, "index", "e41")]);
    let body = bob_docs();
    let ok = n
        .on_subscribe(1000, sub_req("xcap-diff", &body), &docs)
        .unwrap();
    assert_eq!(ok.expires_s, 3600);
    let full = one(n.poll(1000));
    assert_eq!(full.to, peer());
    assert_eq!(full.event, "xcap-diff");
    assert_eq!(full.state, "active;expires=3600");
    assert_eq!(full.diff.xcap_root, ROOT_URL);
    assert_eq!(full.diff.changes.len(), 1);
    let d = &full.diff.changes[0];
    assert_eq!(d.sel, "resource-lists/users/sip:bob@example.com/index");
    assert_eq!(d.new_etag.as_ref().unwrap().as_str(), "e41");
    assert!(d.previous_etag.is_none() && d.patch.is_none());
    n.check_invariants();
}

#[test]
fn full_state_of_a_collection_lists_each_document() {
    let mut n = Notifier::new(cfg());
    let docs = Docs::with(&[
        (RL, BOB, "index", "e1"),
        (RL, BOB, "friends", "e2"),
        (RL, "sip:tom@example.com", "index", "e3"),
        (AR, BOB, "index", "e4"),
    ]);
    let body = rl_body(&["resource-lists/users/sip:bob@example.com/"]);
    n.on_subscribe(0, sub_req("xcap-diff", &body), &docs)
        .unwrap();
    let full = one(n.poll(0));
    let sels: Vec<(&str, &str)> = full
        .diff
        .changes
        .iter()
        .map(|c| (c.sel.as_str(), c.new_etag.as_ref().unwrap().as_str()))
        .collect();
    assert_eq!(
        sels,
        [
            ("resource-lists/users/sip:bob@example.com/friends", "e2"),
            ("resource-lists/users/sip:bob@example.com/index", "e1"),
        ]
    );
    // A change to any document of the collection is notified.
    n.on_notify_response(0, &full.call_id, full.cseq, 200);
    let mut ev = change(RL, Some("e2"), Some("e5"), Change::Replaced);
    ev.doc = "friends".into();
    n.on_change(10, ev);
    let c = one(n.poll(12));
    assert_eq!(
        c.diff.changes[0].sel,
        "resource-lists/users/sip:bob@example.com/friends"
    );
}

// --------------------------------------------------------------------------------------------
// Changes
// --------------------------------------------------------------------------------------------

#[test]
fn no_patching_sends_etags_only() {
    let mut n = Notifier::new(cfg());
    let docs = Docs::with(&[(RL, BOB, "index", "e41")]);
    subscribed(&mut n, &docs, "xcap-diff", 0);
    n.on_change(100, change(RL, Some("e41"), Some("e42"), tom_patch()));
    assert!(n.poll(101).is_empty(), "held for the coalescing window");
    let c = one(n.poll(102));
    assert_eq!(c.cseq, 2);
    assert_eq!(c.state, "active;expires=3600");
    let d = &c.diff.changes[0];
    assert_eq!(d.previous_etag.as_ref().unwrap().as_str(), "e41");
    assert_eq!(d.new_etag.as_ref().unwrap().as_str(), "e42");
    assert!(d.patch.is_none());
}

#[test]
fn aggregate_and_xcap_patching_send_the_patch() {
    for event in [
        "xcap-diff;diff-processing=aggregate",
        "xcap-diff;diff-processing=xcap-patching",
    ] {
        let mut n = Notifier::new(cfg());
        let docs = Docs::with(&[(RL, BOB, "index", "e41")]);
        subscribed(&mut n, &docs, event, 0);
        n.on_change(100, change(RL, Some("e41"), Some("e42"), tom_patch()));
        let c = one(n.poll(102));
        let d = &c.diff.changes[0];
        assert_eq!(d.previous_etag.as_ref().unwrap().as_str(), "e41");
        let ops = d.patch.as_ref().expect("a patch");
        assert_eq!(ops.len(), 1, "{event}");
    }
}

#[test]
fn a_replaced_document_has_no_patch_even_with_aggregate() {
    let mut n = Notifier::new(cfg());
    let docs = Docs::with(&[(RL, BOB, "index", "e41")]);
    subscribed(&mut n, &docs, "xcap-diff;diff-processing=aggregate", 0);
    n.on_change(100, change(RL, Some("e41"), Some("e42"), Change::Replaced));
    let d = &one(n.poll(102)).diff.changes[0];
    assert!(d.patch.is_none());
    assert_eq!(d.new_etag.as_ref().unwrap().as_str(), "e42");
}

#[test]
fn deletion_carries_previous_etag_only() {
    let mut n = Notifier::new(cfg());
    let docs = Docs::with(&[(RL, BOB, "index", "e41")]);
    subscribed(&mut n, &docs, "xcap-diff;diff-processing=aggregate", 0);
    n.on_change(100, change(RL, Some("e41"), None, Change::Deleted));
    let d = &one(n.poll(102)).diff.changes[0];
    assert_eq!(d.previous_etag.as_ref().unwrap().as_str(), "e41");
    assert!(d.new_etag.is_none() && d.patch.is_none());
}

#[test]
fn changes_to_other_documents_are_not_notified() {
    let mut n = Notifier::new(cfg());
    let docs = Docs::with(&[(RL, BOB, "index", "e41")]);
    subscribed(&mut n, &docs, "xcap-diff", 0);
    let mut ev = change(RL, Some("x"), Some("y"), Change::Replaced);
    ev.doc = "friends".into();
    n.on_change(100, ev);
    let mut ev = change(RL, Some("x"), Some("y"), Change::Replaced);
    ev.xui = "sip:tom@example.com".into();
    n.on_change(100, ev);
    assert!(n.poll(1000).is_empty());
}

#[test]
fn a_burst_is_coalesced_into_one_notify() {
    // no-patching: one entry, previous ETag of the first change, new ETag of the last.
    let mut n = Notifier::new(cfg());
    let docs = Docs::with(&[(RL, BOB, "index", "e1"), (AR, BOB, "index", "a1")]);
    subscribed(&mut n, &docs, "xcap-diff", 0);
    n.on_change(100, change(RL, Some("e1"), Some("e2"), tom_patch()));
    n.on_change(101, change(RL, Some("e2"), Some("e3"), tom_patch()));
    n.on_change(101, change(AR, Some("a1"), Some("a2"), Change::Replaced));
    let c = one(n.poll(102));
    assert_eq!(c.diff.changes.len(), 2);
    let d = &c.diff.changes[0];
    assert_eq!(d.previous_etag.as_ref().unwrap().as_str(), "e1");
    assert_eq!(d.new_etag.as_ref().unwrap().as_str(), "e3");
    assert!(d.patch.is_none());

    // aggregate: one entry with both operations merged.
    let mut n = Notifier::new(cfg());
    subscribed(&mut n, &docs, "xcap-diff;diff-processing=aggregate", 0);
    n.on_change(100, change(RL, Some("e1"), Some("e2"), tom_patch()));
    n.on_change(101, change(RL, Some("e2"), Some("e3"), tom_patch()));
    let c = one(n.poll(102));
    assert_eq!(c.diff.changes.len(), 1);
    assert_eq!(c.diff.changes[0].patch.as_ref().unwrap().len(), 2);

    // xcap-patching: one entry per change, in order, still in one NOTIFY.
    let mut n = Notifier::new(cfg());
    subscribed(&mut n, &docs, "xcap-diff;diff-processing=xcap-patching", 0);
    n.on_change(100, change(RL, Some("e1"), Some("e2"), tom_patch()));
    n.on_change(101, change(RL, Some("e2"), Some("e3"), tom_patch()));
    let c = one(n.poll(102));
    let etags: Vec<(&str, &str)> = c
        .diff
        .changes
        .iter()
        .map(|d| {
            (
                d.previous_etag.as_ref().unwrap().as_str(),
                d.new_etag.as_ref().unwrap().as_str(),
            )
        })
        .collect();
    assert_eq!(etags, [("e1", "e2"), ("e2", "e3")]);
}

#[test]
fn one_notify_in_flight_then_the_rest_merged() {
    let mut n = Notifier::new(cfg());
    let docs = Docs::with(&[(RL, BOB, "index", "e1")]);
    subscribed(&mut n, &docs, "xcap-diff", 0);
    n.on_change(100, change(RL, Some("e1"), Some("e2"), Change::Replaced));
    let first = one(n.poll(102));
    // Two more changes while the first NOTIFY is unanswered: nothing goes out.
    n.on_change(200, change(RL, Some("e2"), Some("e3"), Change::Replaced));
    n.on_change(300, change(RL, Some("e3"), Some("e4"), Change::Replaced));
    assert!(n.poll(1000).is_empty());
    assert_eq!(n.next_wakeup_ms(), Some(102 + TIMER_F_MS));
    n.check_invariants();
    // The answer releases one merged NOTIFY at once.
    n.on_notify_response(1500, &first.call_id, first.cseq, 200);
    let second = one(n.poll(1500));
    assert_eq!(second.cseq, first.cseq + 1);
    let d = &second.diff.changes[0];
    assert_eq!(d.previous_etag.as_ref().unwrap().as_str(), "e2");
    assert_eq!(d.new_etag.as_ref().unwrap().as_str(), "e4");
    // A response for a NOTIFY we do not know changes nothing.
    n.on_notify_response(1500, "other", 9, 200);
    n.check_invariants();
}

#[test]
fn provisional_response_keeps_the_notify_in_flight() {
    let mut n = Notifier::new(cfg());
    let docs = Docs::with(&[(RL, BOB, "index", "e1")]);
    subscribed(&mut n, &docs, "xcap-diff", 0);
    n.on_change(100, change(RL, Some("e1"), Some("e2"), Change::Replaced));
    let first = one(n.poll(102));
    n.on_notify_response(150, &first.call_id, first.cseq, 100);
    n.on_change(200, change(RL, Some("e2"), Some("e3"), Change::Replaced));
    assert!(n.poll(300).is_empty());
    assert_eq!(n.len(), 1);
}

#[test]
fn error_responses_and_timeouts_remove_the_subscription() {
    for code in [481u16, 408, 500] {
        let mut n = Notifier::new(cfg());
        let docs = Docs::with(&[(RL, BOB, "index", "e1")]);
        let tag = subscribed(&mut n, &docs, "xcap-diff", 0);
        n.dirty();
        n.on_change(100, change(RL, Some("e1"), Some("e2"), Change::Replaced));
        let c = one(n.poll(102));
        n.on_notify_response(200, &c.call_id, c.cseq, code);
        assert!(n.is_empty(), "{code} removes");
        assert_eq!(
            n.dirty(),
            vec![SubscriptionId(tag.clone())],
            "removal is persisted"
        );
        // No final NOTIFY after a failure, and later changes reach nobody.
        n.on_change(300, change(RL, Some("e2"), Some("e3"), Change::Replaced));
        assert!(n.poll(400).is_empty());
    }
    // Timer F.
    let mut n = Notifier::new(cfg());
    let docs = Docs::with(&[(RL, BOB, "index", "e1")]);
    subscribed(&mut n, &docs, "xcap-diff", 0);
    n.on_change(100, change(RL, Some("e1"), Some("e2"), Change::Replaced));
    one(n.poll(102));
    assert!(n.poll(102 + TIMER_F_MS - 1).is_empty());
    assert_eq!(n.len(), 1);
    assert!(n.poll(102 + TIMER_F_MS).is_empty());
    assert!(n.is_empty());
}

// --------------------------------------------------------------------------------------------
// Refresh, unsubscribe, expiry
// --------------------------------------------------------------------------------------------

fn refresh_req<'a>(tag: &str, cseq: u32, expires_s: u32, body: &'a [u8]) -> SubscribeInput<'a> {
    let mut r = sub_req("xcap-diff", body);
    r.to_tag = Some(tag.into());
    r.cseq = cseq;
    r.expires_s = Some(expires_s);
    r
}

#[test]
fn refresh_extends_expiry_and_sends_the_state() {
    let mut n = Notifier::new(cfg());
    let docs = Docs::with(&[(RL, BOB, "index", "e1")]);
    let tag = subscribed(&mut n, &docs, "xcap-diff", 0);
    // A refresh may omit the body.
    let ok = n
        .on_subscribe(3_000_000, refresh_req(&tag, 2, 3600, b""), &docs)
        .unwrap();
    assert_eq!((ok.to_tag.as_str(), ok.expires_s), (tag.as_str(), 3600));
    let r = one(n.poll(3_000_000));
    assert_eq!(r.state, "active;expires=3600");
    assert_eq!(r.diff.changes.len(), 1);
    n.on_notify_response(3_000_000, &r.call_id, r.cseq, 200);
    // Past the first expiry, still alive.
    assert!(n.poll(3_600_000).is_empty());
    assert_eq!(n.len(), 1);
    // A stale CSeq is 500; another identity 403; another dialog 481.
    let e = n
        .on_subscribe(3_600_001, refresh_req(&tag, 2, 3600, b""), &docs)
        .unwrap_err();
    assert_eq!(e.code(), 500);
    let mut other = refresh_req(&tag, 3, 3600, b"");
    other.subscriber = "bob@example.com".into();
    assert_eq!(
        n.on_subscribe(3_600_001, other, &docs).unwrap_err().code(),
        403
    );
    let mut other = refresh_req(&tag, 3, 3600, b"");
    other.from_tag = "different".into();
    assert_eq!(
        n.on_subscribe(3_600_001, other, &docs).unwrap_err().code(),
        481
    );
    n.check_invariants();
}

#[test]
fn unsubscribe_sends_a_final_notify_and_forgets() {
    let mut n = Notifier::new(cfg());
    let docs = Docs::with(&[(RL, BOB, "index", "e1")]);
    let tag = subscribed(&mut n, &docs, "xcap-diff", 0);
    n.dirty();
    let ok = n
        .on_subscribe(5000, refresh_req(&tag, 2, 0, b""), &docs)
        .unwrap();
    assert_eq!(ok.expires_s, 0);
    let f = one(n.poll(5000));
    assert_eq!(f.state, "terminated;reason=timeout");
    assert!(n.is_empty());
    assert_eq!(n.dirty(), vec![SubscriptionId(tag.clone())]);
    // The dialog is gone.
    let e = n
        .on_subscribe(6000, refresh_req(&tag, 3, 3600, b""), &docs)
        .unwrap_err();
    assert_eq!(e.code(), 481);
}

#[test]
fn unsubscribe_waits_for_the_notify_in_flight() {
    let mut n = Notifier::new(cfg());
    let docs = Docs::with(&[(RL, BOB, "index", "e1")]);
    let tag = subscribed(&mut n, &docs, "xcap-diff", 0);
    n.on_change(100, change(RL, Some("e1"), Some("e2"), Change::Replaced));
    let c = one(n.poll(102));
    n.on_subscribe(200, refresh_req(&tag, 2, 0, b""), &docs)
        .unwrap();
    assert!(n.poll(200).is_empty());
    n.on_notify_response(300, &c.call_id, c.cseq, 200);
    let f = one(n.poll(300));
    assert_eq!(f.state, "terminated;reason=timeout");
    assert!(n.is_empty());
}

#[test]
fn initial_subscribe_with_expires_zero_is_a_fetch() {
    let mut n = Notifier::new(cfg());
    let docs = Docs::with(&[(RL, BOB, "index", "e1")]);
    let body = bob_docs();
    let mut req = sub_req("xcap-diff", &body);
    req.expires_s = Some(0);
    let ok = n.on_subscribe(0, req, &docs).unwrap();
    assert_eq!(ok.expires_s, 0);
    let f = one(n.poll(0));
    assert_eq!(f.state, "terminated;reason=timeout");
    assert_eq!(f.diff.changes.len(), 1);
    assert!(n.is_empty());
}

#[test]
fn expiry_sends_terminated_timeout() {
    let mut n = Notifier::new(cfg());
    let docs = Docs::with(&[(RL, BOB, "index", "e1")]);
    let body = bob_docs();
    let mut req = sub_req("xcap-diff", &body);
    req.expires_s = Some(60);
    n.on_subscribe(0, req, &docs).unwrap();
    let full = one(n.poll(0));
    assert_eq!(full.state, "active;expires=60");
    n.on_notify_response(10, &full.call_id, full.cseq, 200);
    assert_eq!(n.next_wakeup_ms(), Some(60_000));
    assert!(n.poll(59_999).is_empty());
    let f = one(n.poll(60_000));
    assert_eq!(f.state, "terminated;reason=timeout");
    assert!(n.is_empty());
    assert_eq!(n.next_wakeup_ms(), None);
}

#[test]
fn active_expires_counts_down() {
    let mut n = Notifier::new(cfg());
    let docs = Docs::with(&[(RL, BOB, "index", "e1")]);
    subscribed(&mut n, &docs, "xcap-diff", 0);
    n.on_change(
        1_000_000,
        change(RL, Some("e1"), Some("e2"), Change::Replaced),
    );
    assert_eq!(one(n.poll(1_000_002)).state, "active;expires=2600");
}

// --------------------------------------------------------------------------------------------
// Durability
// --------------------------------------------------------------------------------------------

#[test]
fn restore_keeps_notifying_with_a_higher_cseq() {
    let mut n = Notifier::new(cfg());
    let docs = Docs::with(&[(RL, BOB, "index", "e1")]);
    let tag = subscribed(&mut n, &docs, "xcap-diff;diff-processing=aggregate", 0);
    let ids = n.dirty();
    assert_eq!(ids, vec![SubscriptionId(tag.clone())]);
    let persisted: Vec<Vec<u8>> = n
        .snapshot()
        .iter()
        .map(|s| serde_json::to_vec(s).unwrap())
        .collect();
    let last_cseq = n.snapshot()[0].local_cseq;

    // A new process.
    let mut m = Notifier::new(cfg());
    let subs = persisted
        .iter()
        .map(|b| serde_json::from_slice(b).unwrap())
        .collect();
    docs.set(RL, BOB, "index", "e2");
    m.restore(subs, 10_000, &docs);
    m.check_invariants();
    let resync = one(m.poll(10_000));
    assert!(resync.cseq > last_cseq);
    assert_eq!(resync.state, "active;expires=3590");
    assert_eq!(
        resync.diff.changes[0].new_etag.as_ref().unwrap().as_str(),
        "e2"
    );
    m.on_notify_response(10_001, &resync.call_id, resync.cseq, 200);
    m.on_change(20_000, change(RL, Some("e2"), Some("e3"), tom_patch()));
    let c = one(m.poll(20_002));
    assert!(
        c.diff.changes[0].patch.is_some(),
        "diff-processing survived"
    );
    // A refresh on the restored dialog works.
    assert!(
        m.on_subscribe(30_000, refresh_req(&tag, 2, 3600, b""), &docs)
            .is_ok()
    );
}

#[test]
fn restore_of_an_expired_subscription_terminates_it() {
    let mut n = Notifier::new(cfg());
    let docs = Docs::with(&[(RL, BOB, "index", "e1")]);
    subscribed(&mut n, &docs, "xcap-diff", 0);
    let snap = n.snapshot();
    let mut m = Notifier::new(cfg());
    m.restore(snap, 4_000_000, &docs);
    let f = one(m.poll(4_000_000));
    assert_eq!(f.state, "terminated;reason=timeout");
    assert!(m.is_empty());
}

#[test]
fn dirty_reports_creation_once() {
    let mut n = Notifier::new(cfg());
    let docs = Docs::default();
    let tag = subscribed(&mut n, &docs, "xcap-diff", 0);
    assert_eq!(n.dirty(), vec![SubscriptionId(tag.clone())]);
    assert!(n.dirty().is_empty());
    assert!(n.subscription(&SubscriptionId(tag)).is_some());
}

#[test]
fn many_subscriptions_and_timers_stay_bounded() {
    let mut c = cfg();
    c.max_subscriptions = 64;
    let mut n = Notifier::new(c);
    let docs = Docs::with(&[(RL, BOB, "index", "e0")]);
    let body = bob_docs();
    for i in 0..64 {
        let mut req = sub_req("xcap-diff", &body);
        req.call_id = format!("c{i}");
        n.on_subscribe(0, req, &docs).unwrap();
    }
    for a in n.poll(0) {
        let d = decode(&a);
        n.on_notify_response(1, &d.call_id, d.cseq, 200);
    }
    // 200 changes, each answered: the heap is compacted, nothing leaks.
    let mut now = 10;
    for k in 0..200u32 {
        n.on_change(
            now,
            change(
                RL,
                Some(&format!("e{k}")),
                Some(&format!("e{}", k + 1)),
                Change::Replaced,
            ),
        );
        now += 5;
        let acts = n.poll(now);
        assert_eq!(acts.len(), 64);
        for a in acts {
            let d = decode(&a);
            n.on_notify_response(now, &d.call_id, d.cseq, 200);
        }
        n.check_invariants();
    }
    assert!(n.timers_len() <= 4 * 64 + 64);
}
