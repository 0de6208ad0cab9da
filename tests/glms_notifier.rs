//! End to end: a real `GlmsSip` on 127.0.0.1:0 with an in-memory document index and store; a
//! test UDP socket plays the IM Server (the trusted service identity), SUBSCRIBEs, answers
//! NOTIFYs, watches retransmissions, and sees a restarted notifier keep notifying.

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use imserver::auth::TrustList;
use imserver::glms::notifier::{
    DocChangeEvent, DocIndex, GlmsSip, GlmsSipConfig, NotifierConfig, SubscriptionStore,
};
use imserver::glms::xcap::{Change, XcapDiff, parse_xcap_diff};
use imserver::sip::{HeaderName, Parsed};

const BOB: &str = "sip:bob@example.com";
const RL: &str = "resource-lists";

#[derive(Default)]
struct MemDocs(Mutex<HashMap<(String, String, String), String>>);

impl MemDocs {
    fn set(&self, auid: &str, xui: &str, doc: &str, etag: &str) {
        self.0
            .lock()
            .unwrap()
            .insert((auid.into(), xui.into(), doc.into()), etag.into());
    }
}

impl DocIndex for MemDocs {
    fn etag(&self, auid: &str, xui: &str, doc: &str) -> Option<String> {
        self.0
            .lock()
            .unwrap()
            .get(&(auid.into(), xui.into(), doc.into()))
            .cloned()
    }
    fn list(&self, auid: &str, xui: &str) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .keys()
            .filter(|(a, x, _)| a == auid && x == xui)
            .map(|(_, _, d)| d.clone())
            .collect()
    }
}

#[derive(Default)]
struct MemStore(Mutex<BTreeMap<String, Vec<u8>>>);

impl SubscriptionStore for MemStore {
    fn put_subscription(&self, id: &str, bytes: &[u8]) -> std::io::Result<()> {
        self.0.lock().unwrap().insert(id.into(), bytes.to_vec());
        Ok(())
    }
    fn remove_subscription(&self, id: &str) -> std::io::Result<()> {
        self.0.lock().unwrap().remove(id);
        Ok(())
    }
    fn subscriptions(&self) -> std::io::Result<Vec<(String, Vec<u8>)>> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

fn start(docs: &Arc<MemDocs>, store: &Arc<MemStore>) -> GlmsSip {
    let cfg = GlmsSipConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        trust: TrustList::parse_list("127.0.0.1/32").unwrap(),
        notifier: NotifierConfig {
            xcap_root_url: "http://127.0.0.1:8080/xcap-root".into(),
            default_expires_s: 3600,
            min_expires_s: 60,
            max_expires_s: 86_400,
            max_subscriptions: 100,
            coalesce_ms: 2,
            service_identities: vec!["im-server@example.com".into()],
            contact: String::new(),
        },
    };
    let docs: Arc<dyn DocIndex + Send + Sync> = docs.clone();
    let store: Arc<dyn SubscriptionStore> = store.clone();
    GlmsSip::start(cfg, docs, Some(store)).expect("GLMS SIP starts")
}

fn client(ip: &str) -> UdpSocket {
    let s = UdpSocket::bind(format!("{ip}:0")).expect("bind client");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// One received message, decoded.
struct Msg {
    bytes: Vec<u8>,
    status: u16,
    method: String,
    headers: Vec<(HeaderName, String)>,
    body: Vec<u8>,
}

impl Msg {
    fn header(&self, h: HeaderName) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| *n == h)
            .map_or("", |(_, v)| v.as_str())
    }
    /// The CSeq sequence number.
    fn cseq(&self) -> u32 {
        let seq = self.header(HeaderName::CSeq).split(' ').next().unwrap();
        seq.parse().unwrap()
    }
    fn diff(&self) -> XcapDiff {
        parse_xcap_diff(&self.body).expect("xcap-diff body")
    }
}

fn recv(s: &UdpSocket) -> Msg {
    let mut buf = vec![0u8; 65_536];
    let (n, _) = s.recv_from(&mut buf).expect("a message within the timeout");
    let bytes = buf[..n].to_vec();
    let mut p = Parsed::new();
    p.scan_datagram(&bytes).expect("scans");
    let v = p.view(&bytes);
    Msg {
        status: v.status(),
        method: String::from_utf8_lossy(v.method_bytes()).into_owned(),
        headers: v
            .headers()
            .map(|h| (h.name, String::from_utf8_lossy(h.value).into_owned()))
            .collect(),
        body: v.body().to_vec(),
        bytes,
    }
}

/// The next message that is not a copy of one already seen (a late retransmission).
fn recv_new(s: &UdpSocket, seen: &[&Msg]) -> Msg {
    for _ in 0..8 {
        let m = recv(s);
        if !seen.iter().any(|o| o.bytes == m.bytes) {
            return m;
        }
    }
    panic!("only retransmissions arrived");
}

/// Answers a NOTIFY with 200 (RFC 3261 §8.2.6: Via, From, To, Call-ID, CSeq copied).
fn answer(s: &UdpSocket, glms: SocketAddr, notify: &Msg, code: u16) {
    let mut r = format!("SIP/2.0 {code} OK\r\n");
    for (n, v) in &notify.headers {
        if *n == HeaderName::Via {
            r.push_str(&format!("Via: {v}\r\n"));
        }
    }
    for (h, name) in [
        (HeaderName::From, "From"),
        (HeaderName::To, "To"),
        (HeaderName::CallId, "Call-ID"),
        (HeaderName::CSeq, "CSeq"),
    ] {
        r.push_str(&format!("{name}: {}\r\n", notify.header(h)));
    }
    r.push_str("Content-Length: 0\r\n\r\n");
    s.send_to(r.as_bytes(), glms).unwrap();
}

fn subscribe(s: &UdpSocket, glms: SocketAddr, call_id: &str, expires: u32) {
    let branch: String = call_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    subscribe_branch(s, glms, call_id, expires, &branch);
}

/// A SUBSCRIBE whose top Via branch is `z9hG4bK-sub-{branch}` (CSeq 1, From tag ims-77).
fn subscribe_branch(s: &UdpSocket, glms: SocketAddr, call_id: &str, expires: u32, branch: &str) {
    let me = s.local_addr().unwrap();
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list>\
<entry uri=\"resource-lists/users/sip:bob@example.com/index\"/>\
<entry uri=\"org.openmobilealliance.access-rules/users/sip:bob@example.com/index\"/>\
</list></resource-lists>";
    let req = format!(
        "SUBSCRIBE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP {me};branch=z9hG4bK-sub-{branch};rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:im-server@example.com>;tag=ims-77\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: {call_id}\r\n\
CSeq: 1 SUBSCRIBE\r\n\
Contact: <sip:im-server@{me}>\r\n\
P-Asserted-Identity: <sip:im-server@example.com>\r\n\
Event: xcap-diff;diff-processing=no-patching\r\n\
Accept: application/xcap-diff+xml\r\n\
Expires: {expires}\r\n\
Content-Type: application/resource-lists+xml\r\n\
Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.send_to(req.as_bytes(), glms).unwrap();
}

/// Reads the 200 and the full-state NOTIFY (in whichever order they come).
fn subscribed(s: &UdpSocket, glms: SocketAddr, call_id: &str) -> Msg {
    subscribe(s, glms, call_id, 3600);
    let (mut ok, mut notify) = (None, None);
    for _ in 0..2 {
        let m = recv(s);
        if m.status == 200 {
            ok = Some(m);
        } else {
            notify = Some(m);
        }
    }
    let ok = ok.expect("200 OK");
    assert_eq!(ok.header(HeaderName::Expires), "3600");
    assert!(ok.header(HeaderName::To).contains(";tag="));
    assert!(
        ok.header(HeaderName::Contact)
            .contains("sip:glms@127.0.0.1:")
    );
    let notify = notify.expect("full-state NOTIFY");
    assert_eq!(notify.method, "NOTIFY");
    notify
}

/// The next response (NOTIFYs in between are skipped).
fn recv_response(s: &UdpSocket) -> Msg {
    for _ in 0..8 {
        let m = recv(s);
        if m.status != 0 {
            return m;
        }
    }
    panic!("no response");
}

fn bob_change(prev: &str, new: &str) -> DocChangeEvent {
    DocChangeEvent {
        auid: RL.into(),
        xui: BOB.into(),
        doc: "index".into(),
        previous_etag: Some(prev.into()),
        new_etag: Some(new.into()),
        change: Change::Replaced,
    }
}

#[test]
fn subscribe_notify_change_retransmit_restore() {
    let docs = Arc::new(MemDocs::default());
    docs.set(RL, BOB, "index", "e41");
    let store = Arc::new(MemStore::default());
    let glms = start(&docs, &store);
    let addr = glms.local_addr();
    let im = client("127.0.0.1");

    // SUBSCRIBE -> 200 + full state.
    let full = subscribed(&im, addr, "glms-bob-1@im");
    assert_eq!(full.header(HeaderName::Event), "xcap-diff");
    assert_eq!(
        full.header(HeaderName::SubscriptionState),
        "active;expires=3600"
    );
    assert!(full.header(HeaderName::To).contains("tag=ims-77"));
    let d = full.diff();
    assert_eq!(d.changes.len(), 1);
    assert_eq!(d.changes[0].new_etag.as_ref().unwrap().as_str(), "e41");
    answer(&im, addr, &full, 200);

    // A change -> NOTIFY with previous and new ETag.
    docs.set(RL, BOB, "index", "e42");
    assert!(glms.handle().changed(bob_change("e41", "e42")));
    let n = recv(&im);
    assert_eq!(n.method, "NOTIFY");
    let c = &n.diff().changes[0];
    assert_eq!(c.previous_etag.as_ref().unwrap().as_str(), "e41");
    assert_eq!(c.new_etag.as_ref().unwrap().as_str(), "e42");

    // Unanswered: the same NOTIFY comes again (Timer E).
    let again = recv(&im);
    assert_eq!(again.bytes, n.bytes);
    answer(&im, addr, &again, 200);

    // The subscription is in the store.
    assert_eq!(store.0.lock().unwrap().len(), 1);
    let cseq_before = n.cseq();

    // Restart: the new process restores, resynchronises and keeps notifying.
    glms.shutdown();
    docs.set(RL, BOB, "index", "e43");
    let glms = start(&docs, &store);
    let addr = glms.local_addr();
    let resync = recv_new(&im, &[&n]);
    assert_eq!(resync.method, "NOTIFY");
    let cseq_after = resync.cseq();
    assert!(cseq_after > cseq_before);
    assert_eq!(
        resync.diff().changes[0].new_etag.as_ref().unwrap().as_str(),
        "e43"
    );
    answer(&im, addr, &resync, 200);
    assert!(glms.handle().changed(bob_change("e43", "e44")));
    let n = recv_new(&im, &[&resync]);
    assert_eq!(
        n.diff().changes[0].new_etag.as_ref().unwrap().as_str(),
        "e44"
    );
    // 481 from the subscriber removes the subscription (and from the store).
    answer(&im, addr, &n, 481);
    let mut gone = false;
    for _ in 0..100 {
        if store.0.lock().unwrap().is_empty() {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(gone, "a 481 removes the persisted subscription");
    glms.shutdown();
}

#[test]
fn untrusted_peer_is_refused_and_errors_carry_their_headers() {
    let docs = Arc::new(MemDocs::default());
    let store = Arc::new(MemStore::default());
    let glms = start(&docs, &store);
    let addr = glms.local_addr();

    // 127.0.0.2 is not in the trust list.
    let stranger = client("127.0.0.2");
    subscribe(&stranger, addr, "x-1", 3600);
    let r = recv(&stranger);
    assert_eq!(r.status, 403);

    let im = client("127.0.0.1");
    subscribe(&im, addr, "x-2", 10);
    let r = recv(&im);
    assert_eq!(r.status, 423);
    assert_eq!(r.header(HeaderName::MinExpires), "60");

    // A retransmitted SUBSCRIBE gets the same answer, not a second subscription.
    let full = subscribed(&im, addr, "x-3");
    answer(&im, addr, &full, 200);
    let first_ok = {
        // `subscribed` consumed the 200; send the same request again and read its answer.
        subscribe(&im, addr, "x-3", 3600);
        recv_response(&im)
    };
    subscribe(&im, addr, "x-3", 3600);
    let second = recv_response(&im);
    assert_eq!(first_ok.status, 200);
    assert_eq!(second.bytes, first_ok.bytes, "same response, same To-tag");
    glms.shutdown();
}

#[test]
fn a_new_branch_is_a_new_transaction_not_a_retransmission() {
    // RFC 3261 §17.2.3: the top Via's branch names the transaction. Same Call-ID, From tag and
    // CSeq under another branch is another request, answered on its own merits.
    let docs = Arc::new(MemDocs::default());
    let store = Arc::new(MemStore::default());
    let glms = start(&docs, &store);
    let addr = glms.local_addr();
    let im = client("127.0.0.1");

    subscribe_branch(&im, addr, "x-5", 10, "first");
    let r = recv(&im);
    assert_eq!(r.status, 423, "Expires 10 is under the minimum");
    // The same request again is a retransmission: the same bytes come back.
    subscribe_branch(&im, addr, "x-5", 10, "first");
    assert_eq!(recv(&im).bytes, r.bytes);

    // Same Call-ID, From tag and CSeq, another branch, an acceptable Expires: a 200 for it.
    subscribe_branch(&im, addr, "x-5", 3600, "second");
    let ok = recv_response(&im);
    assert_eq!(ok.status, 200);
    assert!(
        ok.header(HeaderName::Via)
            .contains("branch=z9hG4bK-sub-second"),
        "{}",
        ok.header(HeaderName::Via)
    );
    glms.shutdown();
}
