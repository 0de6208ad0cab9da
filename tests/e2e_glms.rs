//! Seed 000 ("GLMS usage") end to end over real SIP and HTTP, as a user sees it, once with the
//! GLMS embedded in `imserver run` and once with a standalone `imserver glms`; then the same
//! kind of block by access rule, by domain and through an `external` link, and deleting the
//! document. Waits are bounded and keyed on what the server reports (a compiled policy took
//! effect: `imserver_glms_policies_applied_total`), never on sleeps.

mod common;

use std::net::SocketAddr;

use common::{ServerProc, Udp, as_bob, http, register_bob, status, tom_says, wait_metric};

const BOB: &str = "sip:bob@example.com";
const TOM: &str = "sip:tom@example.com";
const APPLIED: &str = "imserver_glms_policies_applied_total";
const RL: &str = "/xcap-root/resource-lists/users/sip:bob@example.com/index";
const AR: &str = "/xcap-root/org.openmobilealliance.access-rules/users/sip:bob@example.com/index";
/// SPEC 4.2: the element selector of Tom's entry in Bob's blocked list.
const TOM_ENTRY: &str = "/xcap-root/resource-lists/users/sip:bob@example.com/index/~~/resource-lists/list%5b@name=%22oma_blockedcontacts%22%5d/entry%5b@uri=%22sip:tom@example.com%22%5d";

/// Bob's client, through the core's aggregation proxy: (status, response head).
fn bob_xcap(xcap: SocketAddr, method: &str, path: &str, ctype: &str, body: &str) -> (u16, String) {
    let (code, head, _) = as_bob(
        xcap,
        method,
        path,
        &[("Content-Type", ctype)],
        body.as_bytes(),
    );
    (code, head)
}

fn etag(head: &str) -> String {
    head.lines()
        .find_map(|l| {
            l.strip_prefix("etag: ")
                .or_else(|| l.strip_prefix("ETag: "))
        })
        .expect("ETag")
        .trim()
        .to_owned()
}

fn blocked_list(entries: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\">\
         <list name=\"oma_buddylist\"><entry uri=\"sip:alice@example.com\"/></list>\
         <list name=\"oma_blockedcontacts\">{entries}</list></resource-lists>"
    )
}

/// Seed 000 steps 1-17, then the unblock, against `s` whose GLMS serves XCAP on `xcap`.
fn seed_000(s: &ServerProc, xcap: SocketAddr) {
    let core = Udp::bind();
    let bob_ue = Udp::bind();
    // 1-4: Bob's UE registers; the core passes the registration to the IM Server.
    register_bob(s, &core, &bob_ue);
    // 5-8: the IM Server subscribes (xcap-diff) to Bob's documents, the GLMS answers and sends
    // the full state, and the IM Server compiles Bob's (empty) lists.
    assert!(wait_metric(s, APPLIED, 1) >= 1, "Bob's policy is known");
    // 9: Tom can message Bob.
    assert_eq!(
        tom_says(s, &core, &bob_ue, TOM, 9),
        (200, true),
        "step 9: Tom reaches Bob"
    );
    // 10-11: Bob creates his list document, then adds Tom (SPEC 4.2 element PUT, If-Match).
    let (code, head) = bob_xcap(
        xcap,
        "PUT",
        RL,
        "application/resource-lists+xml",
        &blocked_list(""),
    );
    assert_eq!(code, 201, "{head}");
    let applied = wait_metric(s, APPLIED, 2);
    let entry =
        "<entry xmlns=\"urn:ietf:params:xml:ns:resource-lists\" uri=\"sip:tom@example.com\"/>";
    let (code, head, _) = as_bob(
        xcap,
        "PUT",
        TOM_ENTRY,
        &[
            ("Content-Type", "application/xcap-el+xml"),
            ("If-Match", &etag(&head)),
        ],
        entry.as_bytes(),
    );
    assert_eq!(
        code, 201,
        "step 11: the GLMS acknowledges the block: {head}"
    );
    // 12-13: the GLMS notifies the IM Server of the change; the IM Server applies it.
    assert!(
        wait_metric(s, APPLIED, applied + 1) > applied,
        "the change reached the IM Server"
    );
    // 14-17: Tom is declined and Bob is not bothered.
    assert_eq!(
        tom_says(s, &core, &bob_ue, TOM, 14),
        (603, false),
        "steps 14-17: Tom gets 603"
    );
    // Bob removes Tom; Tom gets through again.
    let applied = s.metric(APPLIED);
    let (code, _) = bob_xcap(xcap, "DELETE", TOM_ENTRY, "", "");
    assert_eq!(code, 200);
    assert!(wait_metric(s, APPLIED, applied + 1) > applied);
    assert_eq!(
        tom_says(s, &core, &bob_ue, TOM, 18),
        (200, true),
        "unblocked"
    );
}

#[test]
fn seed_000_with_the_embedded_glms() {
    let s = ServerProc::start(&["--domain", "example.com"]);
    let xcap = s.xcap.expect("the embedded GLMS serves XCAP");
    seed_000(&s, xcap);
}

#[test]
fn seed_000_with_a_standalone_glms() {
    let glms = ServerProc::start_glms(&["--domain", "example.com"], tempfile::tempdir().unwrap());
    let xcap = glms.xcap.expect("xcap address");
    let glms_sip = format!("sip:{}", glms.sip);
    let root = format!("http://{xcap}/xcap-root");
    let s = ServerProc::start(&[
        "--domain",
        "example.com",
        "--glms",
        &glms_sip,
        "--glms-xcap",
        &root,
    ]);
    assert!(
        s.xcap.is_none(),
        "no embedded GLMS when a standalone one is configured"
    );
    seed_000(&s, xcap);
}

/// Starts a server, registers Bob, lets his first policy settle, then PUTs `doc` at `path` and
/// waits until the change is applied.
fn with_document(path: &str, ctype: &str, doc: &str) -> (ServerProc, Udp, Udp) {
    let s = ServerProc::start(&["--domain", "example.com"]);
    let xcap = s.xcap.unwrap();
    let core = Udp::bind();
    let bob_ue = Udp::bind();
    register_bob(&s, &core, &bob_ue);
    assert!(wait_metric(&s, APPLIED, 1) >= 1);
    let (code, head) = bob_xcap(xcap, "PUT", path, ctype, doc);
    assert_eq!(code, 201, "{head}");
    assert!(wait_metric(&s, APPLIED, 2) >= 2);
    (s, core, bob_ue)
}

fn rules(rules: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<cp:ruleset xmlns:cp=\"urn:ietf:params:xml:ns:common-policy\" \
         xmlns:ocp=\"urn:oma:xml:xdm:common-policy\" xmlns:oxe=\"urn:oma:xml:xdm:extensions\">{rules}\
         <cp:rule id=\"allow_rest\"><cp:conditions><ocp:other-identity/></cp:conditions>\
         <cp:actions><oxe:allow-reject-invite>true</oxe:allow-reject-invite></cp:actions></cp:rule></cp:ruleset>"
    )
}

#[test]
fn block_by_access_rule_with_a_catch_all_allow() {
    let doc = rules(
        "<cp:rule id=\"block_tom\"><cp:conditions><cp:identity><cp:one id=\"sip:tom@example.com\"/></cp:identity>\
         </cp:conditions><cp:actions><oxe:allow-reject-invite>false</oxe:allow-reject-invite></cp:actions></cp:rule>",
    );
    let (s, core, bob_ue) = with_document(AR, "application/auth-policy+xml", &doc);
    assert_eq!(
        tom_says(&s, &core, &bob_ue, TOM, 1),
        (603, false),
        "the specific block wins (D2)"
    );
    assert_eq!(
        tom_says(&s, &core, &bob_ue, "sip:alice@example.com", 2),
        (200, true)
    );
}

#[test]
fn block_by_domain_with_an_exception() {
    let doc = rules(
        "<cp:rule id=\"block_evil\"><cp:conditions><cp:identity><cp:many domain=\"evil.example.net\">\
         <cp:except id=\"sip:friend@evil.example.net\"/></cp:many></cp:identity></cp:conditions>\
         <cp:actions><oxe:allow-reject-invite>false</oxe:allow-reject-invite></cp:actions></cp:rule>",
    );
    let (s, core, bob_ue) = with_document(AR, "application/auth-policy+xml", &doc);
    assert_eq!(
        tom_says(&s, &core, &bob_ue, "sip:eve@evil.example.net", 1),
        (603, false)
    );
    assert_eq!(
        tom_says(&s, &core, &bob_ue, "sip:friend@evil.example.net", 2),
        (200, true),
        "the exception"
    );
    assert_eq!(tom_says(&s, &core, &bob_ue, TOM, 3), (200, true));
}

#[test]
fn block_through_an_external_list_then_delete_the_document() {
    let s = ServerProc::start(&["--domain", "example.com"]);
    let xcap = s.xcap.unwrap();
    let anchor = format!(
        "http://{xcap}/xcap-root/resource-lists/users/sip:bob@example.com/index/~~/resource-lists/list%5b@name=%22rcs_blockedcontacts%22%5d"
    );
    let doc = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\">\
         <list name=\"rcs_blockedcontacts\"><entry uri=\"sip:tom@example.com\"/></list>\
         <list name=\"oma_blockedcontacts\"><external anchor=\"{anchor}\"/></list></resource-lists>"
    );
    let core = Udp::bind();
    let bob_ue = Udp::bind();
    register_bob(&s, &core, &bob_ue);
    assert!(wait_metric(&s, APPLIED, 1) >= 1);
    let (code, head) = bob_xcap(xcap, "PUT", RL, "application/resource-lists+xml", &doc);
    assert_eq!(code, 201, "{head}");
    assert!(wait_metric(&s, APPLIED, 2) >= 2);
    assert_eq!(
        tom_says(&s, &core, &bob_ue, TOM, 1),
        (603, false),
        "blocked through the external list"
    );
    // Deleting the document empties Bob's lists (RFC 5874: previous-etag only).
    let applied = s.metric(APPLIED);
    assert_eq!(bob_xcap(xcap, "DELETE", RL, "", "").0, 200);
    assert!(wait_metric(&s, APPLIED, applied + 1) > applied);
    assert_eq!(
        tom_says(&s, &core, &bob_ue, TOM, 2),
        (200, true),
        "no document, no block"
    );
}

#[test]
fn tom_cannot_read_change_or_subscribe_to_bobs_documents() {
    let s = ServerProc::start(&["--domain", "example.com"]);
    let xcap = s.xcap.unwrap();
    assert_eq!(
        bob_xcap(
            xcap,
            "PUT",
            RL,
            "application/resource-lists+xml",
            &blocked_list("")
        )
        .0,
        201
    );
    let as_tom = |method: &str, body: &str| {
        http(
            xcap,
            method,
            RL,
            &[
                ("X-XCAP-Asserted-Identity", "\"sip:tom@example.com\""),
                ("Content-Type", "application/resource-lists+xml"),
            ],
            body.as_bytes(),
        )
        .0
    };
    assert_eq!(as_tom("GET", ""), 403);
    assert_eq!(as_tom("PUT", &blocked_list("")), 403);
    assert_eq!(as_tom("DELETE", ""), 403);
    // Without credentials or a trusted assertion: a Digest challenge.
    let (code, head, _) = http(xcap, "GET", RL, &[], b"");
    assert_eq!(code, 401);
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: digest"),
        "{head}"
    );
    // Nor can Tom subscribe to Bob's documents at the GLMS's notifier (D4, G3): 403.
    let glms = s.glms.expect("the embedded notifier's address");
    let peer = Udp::bind();
    let body = "<?xml version=\"1.0\"?><resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list>\
                <entry uri=\"resource-lists/users/sip:bob@example.com/index\"/></list></resource-lists>";
    let sub = format!(
        "SUBSCRIBE {BOB} SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bKtomsub;rport\r\nMax-Forwards: 70\r\n\
         From: <{TOM}>;tag=t1\r\nTo: <{BOB}>\r\nCall-ID: tomsub\r\nCSeq: 1 SUBSCRIBE\r\n\
         P-Asserted-Identity: <{TOM}>\r\nContact: <sip:tom@{via}>\r\nEvent: xcap-diff\r\n\
         Accept: application/xcap-diff+xml\r\nExpires: 600\r\nContent-Type: application/resource-lists+xml\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len(),
        via = peer.addr()
    );
    peer.send(glms, sub.as_bytes());
    let r = peer.recv().expect("an answer to Tom's SUBSCRIBE");
    assert_eq!(status(&r), 403, "{r}");
    // Bob's document is unchanged.
    let (code, _, body) = as_bob(xcap, "GET", RL, &[], b"");
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&body).contains("oma_blockedcontacts"));
}
