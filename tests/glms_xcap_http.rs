//! The GLMS XCAP server end to end: a real server on 127.0.0.1:0, spoken to with raw HTTP/1.1
//! over TCP (RFC 4825 requests exactly as a client writes them).
//!
//! Peers: the trust list is `127.0.0.2/32`, so a connection whose source is 127.0.0.2 is the
//! trusted aggregation proxy and one from 127.0.0.1 is an untrusted client.
//!
//! `child_server` is not a test of its own: the durability test re-runs this binary with
//! `GLMS_CHILD_DIR` set, and in that child it runs a server until it is SIGKILLed. Without the
//! variable it returns at once.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use imserver::auth::algorithm::MAX_OUTPUT_LEN;
use imserver::auth::{Algorithm, Credentials, Quoted, TrustList, compute_response, ha1};
use imserver::glms::access::fixed_credentials;
use imserver::glms::http::{ChangeEvent, ChangeHook, Data, HttpLimits, XcapConfig, XcapServer};
use imserver::glms::store::{DocKey, DocStore};
use imserver::glms::xcap::Change;

const ROOT: &str = "/xcap-root";
const BOB_DOC: &str = "/xcap-root/resource-lists/users/sip:bob@example.com/index";
const BLOCKED: &str = "/xcap-root/resource-lists/users/sip:bob@example.com/index/~~/resource-lists/list%5b@name=%22oma_blockedcontacts%22%5d";
const TOM_ENTRY: &str = "/xcap-root/resource-lists/users/sip:bob@example.com/index/~~/resource-lists/list%5b@name=%22oma_blockedcontacts%22%5d/entry%5b@uri=%22sip:tom@example.com%22%5d";
const RL_MIME: &str = "application/resource-lists+xml";
const EL_MIME: &str = "application/xcap-el+xml";
const TRUSTED: &str = "127.0.0.2";
const UNTRUSTED: &str = "127.0.0.1";

/// Bob's list before he blocks Tom (SPEC 4.2's example without the Tom entry).
const BOB_LIST: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">
  <list name="oma_buddylist">
    <entry uri="sip:alice@example.com"/>
  </list>
  <list name="oma_blockedcontacts">
    <entry uri="tel:+15551230000"/>
  </list>
</resource-lists>"#;

/// SPEC 4.2, step 10 of seed 000: the body of Bob's element PUT.
const TOM_BODY: &str =
    r#"<entry xmlns="urn:ietf:params:xml:ns:resource-lists" uri="sip:tom@example.com"/>"#;

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client.

#[derive(Debug)]
struct Resp {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn etag(&self) -> String {
        self.header("etag")
            .unwrap_or_else(|| panic!("no ETag in {self:?}"))
            .to_owned()
    }
}

fn connect(server: SocketAddr, from: &str) -> TcpStream {
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let src: IpAddr = from.parse().expect("ip");
    sock.bind(&SocketAddr::new(src, 0).into())
        .expect("bind source");
    sock.connect(&server.into()).expect("connect");
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

fn send_raw(server: SocketAddr, from: &str, raw: &[u8]) -> Resp {
    let mut s = connect(server, from);
    s.write_all(raw).expect("write");
    let mut out = Vec::new();
    // Connection: close, so the response ends at EOF. A reset after a complete response (the
    // server closing with an unread body) still leaves the bytes we got.
    let _ = s.read_to_end(&mut out);
    parse_response(&out)
}

fn parse_response(raw: &[u8]) -> Resp {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("incomplete response: {text:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let mut parts = status_line.splitn(3, ' ');
    assert_eq!(parts.next(), Some("HTTP/1.1"), "{status_line}");
    let status = parts.next().and_then(|s| s.parse().ok()).expect("status");
    let reason = parts.next().unwrap_or("").to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Resp {
        status,
        reason,
        headers,
        body: body.to_owned(),
    }
}

fn request(
    server: SocketAddr,
    from: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    let mut raw =
        format!("{method} {target} HTTP/1.1\r\nHost: glms.example.com\r\nConnection: close\r\n");
    for (n, v) in headers {
        raw.push_str(&format!("{n}: {v}\r\n"));
    }
    if method == "PUT" || !body.is_empty() {
        raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    raw.push_str("\r\n");
    raw.push_str(body);
    send_raw(server, from, raw.as_bytes())
}

/// A request from the trusted proxy asserting `who`.
/// Bob creates (or replaces) his blocked list document.
fn put_bob_list(server: SocketAddr) -> Resp {
    as_user(
        server,
        BOB,
        "PUT",
        BOB_DOC,
        &[("Content-Type", RL_MIME)],
        BOB_LIST,
    )
}

fn as_user(
    server: SocketAddr,
    who: &str,
    method: &str,
    target: &str,
    extra: &[(&str, &str)],
    body: &str,
) -> Resp {
    let mut h = vec![("X-XCAP-Asserted-Identity", who)];
    h.extend_from_slice(extra);
    request(server, TRUSTED, method, target, &h, body)
}

const BOB: &str = "\"sip:bob@example.com\"";

// ---------------------------------------------------------------------------------------------
// Digest client (RFC 7616, qop=auth).

fn param<'a>(challenge: &'a str, name: &str) -> &'a str {
    let key = format!("{name}=\"");
    challenge
        .split(&key)
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no {name} in {challenge}"))
}

/// Sends the request unauthenticated, answers the 401 with the chosen algorithm, and returns
/// the authenticated response.
#[allow(clippy::too_many_arguments)]
fn with_digest(
    server: SocketAddr,
    user: &str,
    password: &str,
    algorithm: Algorithm,
    method: &str,
    target: &str,
    extra: &[(&str, &str)],
    body: &str,
) -> Resp {
    let first = request(server, UNTRUSTED, method, target, extra, body);
    assert_eq!(first.status, 401, "{first:?}");
    let challenge = first
        .all("www-authenticate")
        .into_iter()
        .find(|c| c.contains(&format!("algorithm={}", algorithm.name())))
        .expect("challenge for the algorithm")
        .to_owned();
    let realm = param(&challenge, "realm");
    let nonce = param(&challenge, "nonce");
    let h = ha1(
        algorithm,
        user.as_bytes(),
        realm.as_bytes(),
        password.as_bytes(),
    );
    let r = compute_response(
        &h,
        method.as_bytes(),
        Quoted::plain(target.as_bytes()),
        nonce.as_bytes(),
        b"00000001",
        Quoted::plain(b"0a4f113b"),
        b"auth",
    );
    let mut buf = [0u8; 2 * MAX_OUTPUT_LEN];
    let hex = String::from_utf8(r.hex(&mut buf).to_vec()).expect("hex");
    let authz = format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{target}\", \
         algorithm={}, response=\"{hex}\", qop=auth, nc=00000001, cnonce=\"0a4f113b\"",
        algorithm.name()
    );
    let mut h = vec![("Authorization", authz.as_str())];
    h.extend_from_slice(extra);
    request(server, UNTRUSTED, method, target, &h, body)
}

// ---------------------------------------------------------------------------------------------
// Server fixture.

struct Fixture {
    server: XcapServer,
    events: Arc<Mutex<Vec<ChangeEvent>>>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    fn events(&self) -> Vec<ChangeEvent> {
        self.events.lock().expect("events").clone()
    }
}

fn credentials() -> Credentials {
    let mut c = Credentials::new();
    c.add("sip:bob@example.com", "bob-secret").expect("bob");
    c.add("sip:tom@example.com", "tom-secret").expect("tom");
    c.add("sip:im-server@example.com", "im-secret").expect("im");
    c
}

fn config(data: Data, auth: bool, limits: HttpLimits) -> XcapConfig {
    XcapConfig {
        addr: "127.0.0.1:0".parse().expect("addr"),
        data,
        realm: "example.com".into(),
        trust: TrustList::parse_list("127.0.0.2/32").expect("trust"),
        service_identities: vec!["sip:im-server@example.com".into()],
        auth,
        credentials: fixed_credentials(credentials()),
        limits,
    }
}

fn start_with(auth: bool, limits: HttpLimits) -> Fixture {
    let dir = tempfile::tempdir().expect("tmp");
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let hook: ChangeHook = Arc::new(move |ev| sink.lock().expect("events").push(ev));
    let server = XcapServer::start(config(Data::Dir(dir.path().to_owned()), auth, limits), hook)
        .expect("start");
    Fixture {
        server,
        events,
        _dir: dir,
    }
}

fn start(auth: bool) -> Fixture {
    start_with(auth, HttpLimits::default())
}

fn quoted_inner(tag: &str) -> &str {
    tag.trim_matches('"')
}

// ---------------------------------------------------------------------------------------------
// Documents, elements, conditions.

#[test]
fn put_get_element_put_conditions_and_delete() {
    let f = start(true);
    let a = f.addr();

    // Create: 201 with a strong quoted ETag.
    let r = put_bob_list(a);
    assert_eq!(r.status, 201, "{r:?}");
    let e1 = r.etag();
    assert!(e1.starts_with('"') && e1.ends_with('"') && !e1.starts_with("W/"));

    // Replace: 200 and a new tag, even for the same content.
    let r = put_bob_list(a);
    assert_eq!(r.status, 200, "{r:?}");
    let e2 = r.etag();
    assert_ne!(e1, e2);

    // GET with its ETag; then If-None-Match gives 304 with the tag.
    let r = as_user(a, BOB, "GET", BOB_DOC, &[], "");
    assert_eq!((r.status, r.etag()), (200, e2.clone()));
    assert_eq!(r.header("content-type"), Some(RL_MIME));
    assert!(r.body.contains("oma_blockedcontacts") && r.body.contains("tel:+15551230000"));
    let r = as_user(a, BOB, "GET", BOB_DOC, &[("If-None-Match", &e2)], "");
    assert_eq!((r.status, r.etag()), (304, e2.clone()));
    assert!(r.body.is_empty());
    let r = as_user(
        a,
        BOB,
        "GET",
        BOB_DOC,
        &[("If-None-Match", "\"other\"")],
        "",
    );
    assert_eq!(r.status, 200);

    // SPEC 4.2: Bob blocks Tom with an element PUT, conditional on the current tag.
    let r = as_user(
        a,
        BOB,
        "PUT",
        TOM_ENTRY,
        &[("Content-Type", EL_MIME), ("If-Match", &e2)],
        TOM_BODY,
    );
    assert_eq!(r.status, 201, "{r:?}");
    let e3 = r.etag();
    assert_ne!(e3, e2);

    // The same PUT with the now stale tag: 412, nothing changes.
    let r = as_user(
        a,
        BOB,
        "PUT",
        TOM_ENTRY,
        &[("Content-Type", EL_MIME), ("If-Match", &e2)],
        TOM_BODY,
    );
    assert_eq!(r.status, 412, "{r:?}");
    // A DELETE with the stale tag as well.
    let r = as_user(a, BOB, "DELETE", BOB_DOC, &[("If-Match", &e2)], "");
    assert_eq!(r.status, 412, "{r:?}");
    // If-None-Match: * on an existing document (create-only) fails too.
    let r = as_user(
        a,
        BOB,
        "PUT",
        BOB_DOC,
        &[("Content-Type", RL_MIME), ("If-None-Match", "*")],
        BOB_LIST,
    );
    assert_eq!(r.status, 412, "{r:?}");

    // GET of the element and of the whole list.
    let r = as_user(a, BOB, "GET", TOM_ENTRY, &[], "");
    assert_eq!((r.status, r.etag()), (200, e3.clone()));
    assert_eq!(r.header("content-type"), Some(EL_MIME));
    assert!(r.body.contains("sip:tom@example.com"), "{}", r.body);
    let r = as_user(a, BOB, "GET", BLOCKED, &[], "");
    assert!(r.body.contains("tel:+15551230000") && r.body.contains("sip:tom@example.com"));

    // Element DELETE (200 + the new document tag), then the document.
    let r = as_user(a, BOB, "DELETE", TOM_ENTRY, &[("If-Match", &e3)], "");
    assert_eq!(r.status, 200, "{r:?}");
    let e4 = r.etag();
    let r = as_user(a, BOB, "GET", TOM_ENTRY, &[], "");
    assert_eq!(r.status, 404);
    let r = as_user(a, BOB, "DELETE", BOB_DOC, &[("If-Match", &e4)], "");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("etag"), None, "a deleted document has no tag");
    let r = as_user(a, BOB, "GET", BOB_DOC, &[], "");
    assert_eq!(r.status, 404);
    let r = as_user(a, BOB, "DELETE", BOB_DOC, &[], "");
    assert_eq!(r.status, 404);

    // The hook saw exactly the five committed changes, in order, with their tags.
    let ev = f.events();
    let tags: Vec<(Option<String>, Option<String>)> = ev
        .iter()
        .map(|e| (e.previous_etag.clone(), e.new_etag.clone()))
        .collect();
    let t = |s: &str| Some(quoted_inner(s).to_owned());
    assert_eq!(
        tags,
        vec![
            (None, t(&e1)),
            (t(&e1), t(&e2)),
            (t(&e2), t(&e3)),
            (t(&e3), t(&e4)),
            (t(&e4), None),
        ]
    );
    assert_eq!(ev[0].change, Change::Created);
    assert_eq!(ev[1].change, Change::Replaced);
    assert!(
        matches!(ev[2].change, Change::Patched(_)),
        "{:?}",
        ev[2].change
    );
    assert!(
        matches!(ev[3].change, Change::Patched(_)),
        "{:?}",
        ev[3].change
    );
    assert_eq!(ev[4].change, Change::Deleted);
    for e in &ev {
        assert_eq!(
            (e.auid.as_str(), e.xui.as_str(), e.doc.as_str()),
            ("resource-lists", "sip:bob@example.com", "index")
        );
        assert_eq!(e.sel, "resource-lists/users/sip:bob@example.com/index");
    }
}

#[test]
fn every_conflict_kind_gets_an_xcap_error_body() {
    let f = start(true);
    let a = f.addr();
    let put = |target: &str, mime: &str, body: &str| {
        as_user(a, BOB, "PUT", target, &[("Content-Type", mime)], body)
    };
    // no-parent: an element in a document that does not exist yet.
    let r = put(TOM_ENTRY, EL_MIME, TOM_BODY);
    assert_eq!(r.status, 409, "{r:?}");
    assert!(r.body.contains("<no-parent"), "{}", r.body);
    assert!(r.body.contains("<ancestor>"), "{}", r.body);

    assert_eq!(put(BOB_DOC, RL_MIME, BOB_LIST).status, 201);
    let before = f.events().len();
    let entry = |uri: &str| format!("{BLOCKED}/entry%5b@uri=%22{uri}%22%5d");
    let cases: Vec<(String, &str, String, &str)> = vec![
        (
            BOB_DOC.into(),
            RL_MIME,
            "<resource-lists".into(),
            "not-well-formed",
        ),
        (
            BOB_DOC.into(),
            RL_MIME,
            "<wrong xmlns=\"urn:x\"/>".into(),
            "schema-validation-error",
        ),
        (
            BOB_DOC.into(),
            RL_MIME,
            BOB_LIST.replace(
                "<entry uri=\"tel:+15551230000\"/>",
                "<entry uri=\"sip:x@example.com\"/><entry uri=\"sip:x@example.com\"/>",
            ),
            "uniqueness-failure",
        ),
        (
            // The URI names one entry, the body is another: the URI would not select it.
            entry("sip:tom@example.com"),
            EL_MIME,
            TOM_BODY.replace("sip:tom@", "sip:eve@"),
            "cannot-insert",
        ),
        (
            // Parent list missing.
            format!(
                "{BOB_DOC}/~~/resource-lists/list%5b@name=%22nope%22%5d/entry%5b@uri=%22sip:a@b%22%5d"
            ),
            EL_MIME,
            TOM_BODY.replace("sip:tom@example.com", "sip:a@b"),
            "no-parent",
        ),
        (
            entry("sip:tom@example.com"),
            EL_MIME,
            "<a/><b/>".into(),
            "not-xml-frag",
        ),
    ];
    for (target, mime, body, condition) in &cases {
        let r = put(target, mime, body);
        assert_eq!(r.status, 409, "{condition}: {r:?}");
        assert_eq!(
            r.header("content-type"),
            Some("application/xcap-error+xml"),
            "{condition}"
        );
        assert!(
            r.body.contains("urn:ietf:params:xml:ns:xcap-error"),
            "{condition}: {}",
            r.body
        );
        assert!(
            r.body.contains(&format!("<{condition}")),
            "{condition}: {}",
            r.body
        );
    }
    // cannot-delete: with two entries in the buddy list, deleting `entry[1]` would leave the
    // URI selecting the second one (RFC 4825 §8.2.5).
    let list = "/~~/resource-lists/list%5b@name=%22oma_buddylist%22%5d";
    let u = "sip:p@example.com";
    let r = put(
        &format!("{BOB_DOC}{list}/entry%5b@uri=%22{u}%22%5d"),
        EL_MIME,
        &TOM_BODY.replace("sip:tom@example.com", u),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let r = as_user(
        a,
        BOB,
        "DELETE",
        &format!("{BOB_DOC}{list}/entry%5b1%5d"),
        &[],
        "",
    );
    assert_eq!(r.status, 409, "{r:?}");
    assert!(r.body.contains("<cannot-delete"), "{}", r.body);

    // Only the one successful write reached the hook.
    assert_eq!(f.events().len(), before + 1);
}

#[test]
fn media_type_method_size_and_uri_errors() {
    let limits = HttpLimits {
        max_body_bytes: 4096,
        ..HttpLimits::default()
    };
    let f = start_with(true, limits);
    let a = f.addr();
    // 415: a document must carry its usage's type, an element application/xcap-el+xml.
    let r = as_user(
        a,
        BOB,
        "PUT",
        BOB_DOC,
        &[("Content-Type", "text/plain")],
        BOB_LIST,
    );
    assert_eq!(r.status, 415, "{r:?}");
    let r = as_user(a, BOB, "PUT", BOB_DOC, &[], BOB_LIST);
    assert_eq!(r.status, 415, "{r:?}");
    assert_eq!(put_bob_list(a).status, 201);
    let r = as_user(
        a,
        BOB,
        "PUT",
        TOM_ENTRY,
        &[("Content-Type", RL_MIME)],
        TOM_BODY,
    );
    assert_eq!(r.status, 415, "{r:?}");
    // 405 with Allow.
    let r = as_user(a, BOB, "POST", BOB_DOC, &[], "x");
    assert_eq!(r.status, 405, "{r:?}");
    assert_eq!(r.header("allow"), Some("GET, PUT, DELETE"));
    // xcap-caps is generated and read-only.
    let caps = "/xcap-root/xcap-caps/global/index";
    let r = as_user(a, BOB, "GET", caps, &[], "");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/xcap-caps+xml"));
    assert!(r.body.contains("resource-lists"));
    let caps_tag = r.etag();
    assert_eq!(
        as_user(a, BOB, "GET", caps, &[("If-None-Match", &caps_tag)], "").status,
        304
    );
    // 413: declared too large, refused before the body is read.
    let big = format!(
        "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\">{}</resource-lists>",
        " ".repeat(5000)
    );
    let r = as_user(a, BOB, "PUT", BOB_DOC, &[("Content-Type", RL_MIME)], &big);
    assert_eq!(r.status, 413, "{r:?}");
    // 413 with chunked transfer (no Content-Length): refused while reading.
    let chunk = "x".repeat(3000);
    let raw = format!(
        "PUT {BOB_DOC} HTTP/1.1\r\nHost: h\r\nConnection: close\r\nX-XCAP-Asserted-Identity: {BOB}\r\n\
         Content-Type: {RL_MIME}\r\nTransfer-Encoding: chunked\r\n\r\n\
         {len:x}\r\n{chunk}\r\n{len:x}\r\n{chunk}\r\n0\r\n\r\n",
        len = chunk.len()
    );
    let r = send_raw(a, TRUSTED, raw.as_bytes());
    assert_eq!(r.status, 413, "{r:?}");
    // 404: an unknown AUID, a collection; 400: a node selector that does not parse.
    let r = as_user(
        a,
        BOB,
        "GET",
        "/xcap-root/no-such-auid/users/sip:bob@example.com/index",
        &[],
        "",
    );
    assert_eq!(r.status, 404, "{r:?}");
    let r = as_user(a, BOB, "GET", "/elsewhere/resource-lists", &[], "");
    assert_eq!(r.status, 404, "{r:?}");
    let r = as_user(
        a,
        BOB,
        "GET",
        &format!("{BOB_DOC}/~~/resource-lists/list%5b"),
        &[],
        "",
    );
    assert_eq!(r.status, 400, "{r:?}");
    // 400: garbage instead of HTTP.
    let r = send_raw(a, TRUSTED, b"\x01\x02 nonsense\r\n\r\n");
    assert_eq!(r.status, 400, "{r:?}");
    // Only the one successful PUT reached the hook.
    assert_eq!(f.events().len(), 1);
    assert_eq!(ROOT, imserver::glms::http::XCAP_ROOT);
}

// ---------------------------------------------------------------------------------------------
// Who may touch what (SPEC G3).

#[test]
fn access_rules() {
    let f = start(true);
    let a = f.addr();
    let ct = [("Content-Type", RL_MIME)];

    // Anonymous: 401 with SHA-256 then MD5 challenges, qop=auth.
    let r = request(a, UNTRUSTED, "GET", BOB_DOC, &[], "");
    assert_eq!(r.status, 401, "{r:?}");
    let ch = r.all("www-authenticate");
    assert_eq!(ch.len(), 2, "{r:?}");
    assert!(ch[0].starts_with("Digest ") && ch[0].contains("algorithm=SHA-256"));
    assert!(ch[1].contains("algorithm=MD5"));
    assert!(
        ch.iter()
            .all(|c| c.contains("qop=\"auth\"") && c.contains("realm=\"example.com\""))
    );

    // Bob with Digest creates his list (SHA-256), and reads it (MD5).
    let r = with_digest(
        a,
        "bob@example.com",
        "bob-secret",
        Algorithm::Sha256,
        "PUT",
        BOB_DOC,
        &ct,
        BOB_LIST,
    );
    assert_eq!(r.status, 201, "{r:?}");
    let tag = r.etag();
    let r = with_digest(
        a,
        "sip:bob@example.com",
        "bob-secret",
        Algorithm::Md5,
        "GET",
        BOB_DOC,
        &[],
        "",
    );
    assert_eq!((r.status, r.etag()), (200, tag.clone()), "{r:?}");
    // A wrong password is challenged again.
    let r = with_digest(
        a,
        "bob@example.com",
        "guess",
        Algorithm::Sha256,
        "GET",
        BOB_DOC,
        &[],
        "",
    );
    assert_eq!(r.status, 401, "{r:?}");

    // Tom, authenticated, can neither read nor write Bob's documents: 403 saying why.
    let r = with_digest(
        a,
        "tom@example.com",
        "tom-secret",
        Algorithm::Sha256,
        "GET",
        BOB_DOC,
        &[],
        "",
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.reason.contains("own documents"), "{}", r.reason);
    let r = with_digest(
        a,
        "tom@example.com",
        "tom-secret",
        Algorithm::Sha256,
        "PUT",
        BOB_DOC,
        &ct,
        "<x/>",
    );
    assert_eq!(r.status, 403, "{r:?}");
    let r = with_digest(
        a,
        "tom@example.com",
        "tom-secret",
        Algorithm::Sha256,
        "DELETE",
        BOB_DOC,
        &[],
        "",
    );
    assert_eq!(r.status, 403, "{r:?}");
    // Tom through the trusted proxy is still Tom.
    let r = as_user(a, "<sip:tom@example.com>", "DELETE", BOB_DOC, &[], "");
    assert_eq!(r.status, 403, "{r:?}");
    // Tom claiming to be Bob from an untrusted address: the assertion is ignored.
    let r = request(
        a,
        UNTRUSTED,
        "DELETE",
        BOB_DOC,
        &[("X-XCAP-Asserted-Identity", BOB)],
        "",
    );
    assert_eq!(r.status, 401, "{r:?}");

    // The trusted proxy asserting Bob (bare URI form).
    let r = as_user(a, "sip:bob@example.com", "GET", BOB_DOC, &[], "");
    assert_eq!((r.status, r.etag()), (200, tag.clone()), "{r:?}");

    // The service identity reads anyone's, by Digest or assertion, and writes nobody's.
    let r = with_digest(
        a,
        "im-server@example.com",
        "im-secret",
        Algorithm::Sha256,
        "GET",
        BOB_DOC,
        &[],
        "",
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = as_user(a, "<sip:im-server@example.com>", "GET", BOB_DOC, &[], "");
    assert_eq!(r.status, 200, "{r:?}");
    let r = as_user(
        a,
        "<sip:im-server@example.com>",
        "PUT",
        BOB_DOC,
        &ct,
        BOB_LIST,
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.reason.contains("service identity"), "{}", r.reason);
    let r = with_digest(
        a,
        "im-server@example.com",
        "im-secret",
        Algorithm::Sha256,
        "DELETE",
        BOB_DOC,
        &[],
        "",
    );
    assert_eq!(r.status, 403, "{r:?}");
    // Anyone authenticated reads xcap-caps; nobody writes global documents.
    let r = as_user(
        a,
        "<sip:tom@example.com>",
        "GET",
        "/xcap-root/xcap-caps/global/index",
        &[],
        "",
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = as_user(
        a,
        "<sip:tom@example.com>",
        "PUT",
        "/xcap-root/xcap-caps/global/index",
        &ct,
        "<x/>",
    );
    assert_eq!(r.status, 403, "{r:?}");

    // Nothing refused changed anything: one change, Bob's PUT, and the document is intact.
    let ev = f.events();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0].new_etag.as_deref(), Some(quoted_inner(&tag)));
    let doc = f
        .server
        .store()
        .get(&DocKey::user(
            "resource-lists",
            "sip:bob@example.com",
            "index",
        ))
        .expect("get")
        .expect("doc");
    assert_eq!(doc.etag.to_header(), tag);
}

#[test]
fn lab_mode_takes_assertions_from_anywhere_and_refuses_anonymous() {
    let f = start(false);
    let a = f.addr();
    let r = request(
        a,
        UNTRUSTED,
        "PUT",
        BOB_DOC,
        &[("X-XCAP-Asserted-Identity", BOB), ("Content-Type", RL_MIME)],
        BOB_LIST,
    );
    assert_eq!(r.status, 201, "{r:?}");
    let r = request(a, UNTRUSTED, "GET", BOB_DOC, &[], "");
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.reason.contains("anonymous"), "{}", r.reason);
    assert_eq!(r.header("www-authenticate"), None);
    assert_eq!(f.events().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Concurrency: check-and-write is atomic.

#[test]
fn racing_conditional_writers_one_wins() {
    let f = start(true);
    let a = f.addr();
    let r = put_bob_list(a);
    let tag = r.etag();
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let tag = tag.clone();
            std::thread::spawn(move || {
                let uri = format!("sip:racer{i}@example.com");
                let target = format!("{BLOCKED}/entry%5b@uri=%22{uri}%22%5d");
                let body = TOM_BODY.replace("sip:tom@example.com", &uri);
                as_user(
                    a,
                    BOB,
                    "PUT",
                    &target,
                    &[("Content-Type", EL_MIME), ("If-Match", &tag)],
                    &body,
                )
                .status
            })
        })
        .collect();
    let mut statuses: Vec<u16> = threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    statuses.sort_unstable();
    assert_eq!(statuses, vec![201, 412, 412, 412, 412, 412, 412, 412]);
    assert_eq!(f.events().len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Durability (SPEC G2): an acknowledged PUT survives SIGKILL.

const CHILD_ENV: &str = "GLMS_CHILD_DIR";

/// Runs only in the child process of `acknowledged_put_survives_sigkill`.
#[test]
fn child_server() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let server = XcapServer::start(
        config(Data::Dir(dir.into()), true, HttpLimits::default()),
        imserver::glms::http::no_hook(),
    )
    .expect("child start");
    println!("LISTEN {}", server.local_addr());
    std::io::stdout().flush().expect("flush");
    // Bounded: the parent kills us long before this.
    std::thread::sleep(Duration::from_secs(60));
}

fn spawn_child(dir: &Path) -> (std::process::Child, SocketAddr) {
    let exe = std::env::current_exe().expect("exe");
    let mut child = std::process::Command::new(exe)
        .args(["--exact", "child_server", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn child");
    let out = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(out).lines();
    let addr = loop {
        let line = lines.next().expect("child ended early").expect("line");
        // libtest prints `test child_server ... ` without a newline before our output.
        if let Some((_, a)) = line.split_once("LISTEN ") {
            break a.trim().parse().expect("addr");
        }
    };
    (child, addr)
}

#[test]
fn acknowledged_put_survives_sigkill() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut child, addr) = spawn_child(dir.path());
    let r = put_bob_list(addr);
    assert_eq!(r.status, 201, "{r:?}");
    let tag = r.etag();
    let r = as_user(
        addr,
        BOB,
        "PUT",
        TOM_ENTRY,
        &[("Content-Type", EL_MIME), ("If-Match", &tag)],
        TOM_BODY,
    );
    assert_eq!(r.status, 201, "{r:?}");
    let tag = r.etag();
    // SIGKILL: no shutdown, no flush, no destructors.
    child.kill().expect("kill");
    child.wait().expect("wait");

    let store = DocStore::open(dir.path()).expect("reopen after kill");
    let doc = store
        .get(&DocKey::user(
            "resource-lists",
            "sip:bob@example.com",
            "index",
        ))
        .expect("get")
        .expect("acknowledged document is there");
    assert_eq!(doc.etag.to_header(), tag);
    assert!(String::from_utf8_lossy(&doc.bytes).contains("sip:tom@example.com"));

    // And a restarted server serves it with the same tag.
    let server = XcapServer::start(
        config(Data::Store(store), true, HttpLimits::default()),
        imserver::glms::http::no_hook(),
    )
    .expect("restart");
    let r = as_user(
        server.local_addr(),
        BOB,
        "GET",
        BOB_DOC,
        &[("If-None-Match", &tag)],
        "",
    );
    assert_eq!(r.status, 304, "{r:?}");
    server.shutdown();
}
