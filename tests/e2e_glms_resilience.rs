//! The GLMS link under failure (SPEC D3-D6, G2): a GLMS SIGKILLed and restarted in the middle
//! loses no acknowledged change and keeps notifying; an IM Server SIGKILLed and restarted
//! enforces the last known lists at once; a GLMS unreachable at registration holds messages
//! back (480 + Retry-After) until it comes; malformed NOTIFYs get the right answers and change
//! nothing.

mod common;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use common::{
    ServerProc, Udp, as_bob, header, message, ok_for, register_bob, status, tom_says, wait_metric,
};

const BOB: &str = "sip:bob@example.com";
const TOM: &str = "sip:tom@example.com";
const APPLIED: &str = "imserver_glms_policies_applied_total";
const RL: &str = "/xcap-root/resource-lists/users/sip:bob@example.com/index";

fn doc(entries: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\">\
         <list name=\"oma_blockedcontacts\">{entries}</list></resource-lists>"
    )
}

fn put_as_bob(xcap: SocketAddr, body: &str) -> u16 {
    as_bob(
        xcap,
        "PUT",
        RL,
        &[("Content-Type", "application/resource-lists+xml")],
        body.as_bytes(),
    )
    .0
}

/// Free loopback ports for a GLMS to be started later (bound and released now).
fn free_ports() -> (SocketAddr, SocketAddr) {
    let u = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let t = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    (u, t)
}

/// `imserver run` pointed at a standalone GLMS (notifier `sip`, XCAP `xcap`).
fn im_server_with_glms(sip: SocketAddr, xcap: SocketAddr) -> ServerProc {
    let (glms, root) = (format!("sip:{sip}"), format!("http://{xcap}/xcap-root"));
    ServerProc::start(&[
        "--domain",
        "example.com",
        "--glms",
        &glms,
        "--glms-xcap",
        &root,
    ])
}

fn glms_on(sip: SocketAddr, xcap: SocketAddr, data: tempfile::TempDir) -> ServerProc {
    let (s, x) = (sip.to_string(), xcap.to_string());
    ServerProc::start_glms_at(
        &["--domain", "example.com", "--sip", &s, "--xcap", &x],
        data,
    )
}

#[test]
fn a_glms_killed_and_restarted_mid_flow_loses_nothing_and_keeps_notifying() {
    let glms = ServerProc::start_glms(&["--domain", "example.com"], tempfile::tempdir().unwrap());
    let (gsip, gxcap) = (glms.sip, glms.xcap.unwrap());
    let s = im_server_with_glms(gsip, gxcap);
    let core = Udp::bind();
    let bob_ue = Udp::bind();
    register_bob(&s, &core, &bob_ue);
    assert!(wait_metric(&s, APPLIED, 1) >= 1);
    // An acknowledged change, then SIGKILL.
    assert_eq!(
        put_as_bob(gxcap, &doc("<entry uri=\"sip:alice@example.com\"/>")),
        201
    );
    assert!(wait_metric(&s, APPLIED, 2) >= 2);
    let data = glms.kill();
    let glms = glms_on(gsip, gxcap, data);
    // G2: the acknowledged document survived ...
    let (code, _, body) = as_bob(gxcap, "GET", RL, &[], b"");
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&body).contains("sip:alice@example.com"));
    // ... and so did the subscription: a change after the restart reaches the IM Server.
    let before = s.metric(APPLIED);
    assert_eq!(
        put_as_bob(gxcap, &doc("<entry uri=\"sip:tom@example.com\"/>")),
        200
    );
    assert!(
        wait_metric(&s, APPLIED, before + 1) > before,
        "notified after the GLMS restart"
    );
    assert_eq!(tom_says(&s, &core, &bob_ue, TOM, 1), (603, false));
    drop(glms);
}

#[test]
fn an_im_server_killed_and_restarted_enforces_the_last_known_lists_at_once() {
    let s = ServerProc::start(&["--domain", "example.com"]);
    let xcap = s.xcap.unwrap();
    let core = Udp::bind();
    let bob_ue = Udp::bind();
    register_bob(&s, &core, &bob_ue);
    assert!(wait_metric(&s, APPLIED, 1) >= 1);
    assert_eq!(
        put_as_bob(xcap, &doc("<entry uri=\"sip:tom@example.com\"/>")),
        201
    );
    assert!(wait_metric(&s, APPLIED, 2) >= 2);
    assert_eq!(tom_says(&s, &core, &bob_ue, TOM, 1), (603, false));
    let data = s.kill();
    // D6: the binding and the cached policy come back with the process; Tom is declined at
    // once, before any revalidation could have happened.
    let s = ServerProc::start_with_data(&["--domain", "example.com"], data);
    assert_eq!(
        tom_says(&s, &core, &bob_ue, TOM, 2),
        (603, false),
        "the cached list applies at once"
    );
    // The XCAP document (embedded GLMS, same data directory) survived too.
    let xcap = s.xcap.unwrap();
    let (code, _, body) = as_bob(xcap, "GET", RL, &[], b"");
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&body).contains("sip:tom@example.com"));
    // The subscription works again after the restart: an unblock reaches the IM Server.
    let before = s.metric(APPLIED);
    assert_eq!(put_as_bob(xcap, &doc("")), 200);
    assert!(
        wait_metric(&s, APPLIED, before + 1) > before,
        "a change after the restart is applied"
    );
    assert_eq!(
        tom_says(&s, &core, &bob_ue, TOM, 3),
        (200, true),
        "Tom gets through again"
    );
}

#[test]
fn a_glms_unreachable_at_registration_holds_messages_back_then_enforces() {
    let (gsip, gxcap) = free_ports();
    let s = im_server_with_glms(gsip, gxcap);
    let core = Udp::bind();
    let bob_ue = Udp::bind();
    register_bob(&s, &core, &bob_ue);
    // D6, fail closed: the policy was never fetched, so Tom's MESSAGE is not delivered.
    core.send(
        s.sip,
        &message(BOB, TOM, Some(TOM), core.addr(), "UDP", "held"),
    );
    let r = core.recv().expect("an answer");
    assert_eq!(status(&r), 480, "{r}");
    assert!(header(&r, "Retry-After").is_some(), "with Retry-After: {r}");
    assert!(bob_ue.recv_for(Duration::from_millis(300)).is_none());

    // The GLMS comes, with Bob's list blocking Tom already in it.
    let data = tempfile::tempdir().unwrap();
    let glms = glms_on(gsip, gxcap, data);
    assert_eq!(
        put_as_bob(gxcap, &doc("<entry uri=\"sip:tom@example.com\"/>")),
        201
    );
    // The subscriber retries with back-off (1 s, doubling): bounded wait of 20 s.
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.metric(APPLIED) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        s.metric(APPLIED) >= 1,
        "the policy was fetched once the GLMS came"
    );
    assert_eq!(
        tom_says(&s, &core, &bob_ue, TOM, 3),
        (603, false),
        "then enforced"
    );
    drop(glms);
}

/// A fake GLMS (a plain UDP socket): it answers the IM Server's SUBSCRIBE and sends NOTIFYs.
#[test]
fn malformed_notifies_get_the_right_answers_and_change_nothing() {
    let fake = Udp::bind();
    // Nothing listens at this XCAP root: fetches fail, which must not matter here.
    let (_, dead_xcap) = free_ports();
    let s = im_server_with_glms(fake.addr(), dead_xcap);
    let core = Udp::bind();
    let bob_ue = Udp::bind();
    register_bob(&s, &core, &bob_ue);
    let sub = fake.recv().expect("the IM Server SUBSCRIBEs (D3)");
    assert!(
        sub.starts_with(&format!("SUBSCRIBE {BOB} SIP/2.0")),
        "{sub}"
    );
    assert!(
        header(&sub, "Event").unwrap().starts_with("xcap-diff"),
        "{sub}"
    );
    assert!(
        header(&sub, "Event")
            .unwrap()
            .contains("diff-processing=aggregate"),
        "{sub}"
    );
    assert!(sub.contains("resource-lists/users/sip:bob@example.com/index"));
    assert!(sub.contains("org.openmobilealliance.access-rules/users/sip:bob@example.com/index"));
    // 200 with our tag.
    let mut ok = String::from_utf8(ok_for(&sub)).unwrap();
    ok = ok
        .replace(";tag=rcpt", ";tag=glms1")
        .replace("Content-Length: 0", "Expires: 600\r\nContent-Length: 0");
    fake.send(s.sip, ok.as_bytes());

    let contact = header(&sub, "Contact")
        .unwrap()
        .trim_matches(['<', '>'])
        .to_owned();
    let from = header(&sub, "From").unwrap().to_owned();
    let call_id = header(&sub, "Call-ID").unwrap().to_owned();
    let notify = |cseq: u32, call_id: &str, event: &str, body: &str| {
        format!(
            "NOTIFY {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bKn{cseq};rport\r\nMax-Forwards: 70\r\n\
             From: <{BOB}>;tag=glms1\r\nTo: {from}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} NOTIFY\r\n\
             Event: {event}\r\nSubscription-State: active;expires=600\r\nContent-Type: application/xcap-diff+xml\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len(),
            via = fake.addr()
        )
    };
    let ask = |m: String| {
        fake.send(s.sip, m.as_bytes());
        fake.recv().map(|r| status(&r))
    };
    assert_eq!(
        ask(notify(
            1,
            &call_id,
            "xcap-diff",
            "<xcap-diff this is not xml"
        )),
        Some(400),
        "malformed body"
    );
    assert_eq!(
        ask(notify(2, &call_id, "presence", "")),
        Some(489),
        "wrong event package"
    );
    assert_eq!(
        ask(notify(3, "no-such-dialog", "xcap-diff", "")),
        Some(481),
        "unknown dialog"
    );
    // Nothing was compiled from any of them: Bob's policy is still pending (D6).
    assert_eq!(s.metric(APPLIED), 0);
    core.send(
        s.sip,
        &message(BOB, TOM, Some(TOM), core.addr(), "UDP", "still-held"),
    );
    assert_eq!(core.recv().map(|r| status(&r)), Some(480));
}
