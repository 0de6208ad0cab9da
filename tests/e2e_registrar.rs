//! The IM application over the real binary (seed 004 and SPEC D5-D7, D9, D11): a UE on an
//! untrusted address (127.0.0.2) registers with Digest, the trusted core (127.0.0.1) registers
//! third-party and publishes service settings, nobody can act as someone else, every error
//! answer is the one the RFCs give, and a SIGKILL loses nothing that was acknowledged.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{ServerProc, Udp, header, headers, message, ok_for, status};
use md5::Digest as _;

const BOB: &str = "sip:bob@example.com";
const TOM: &str = "sip:tom@example.com";
const ALICE: &str = "sip:alice@example.com";

fn user_add(data: &Path, aor: &str, password: &str) {
    let pw = data.join(format!("{}.pw", aor.replace([':', '@'], "_")));
    std::fs::write(&pw, format!("{password}\n")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_imserver"))
        .args(["user", "add", "--data"])
        .arg(data)
        .arg(aor)
        .arg("--password-file")
        .arg(&pw)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A data directory with Bob and Tom provisioned, and a policy file in which Bob blocks Tom.
fn provisioned() -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    user_add(data.path(), BOB, "bob-secret");
    user_add(data.path(), TOM, "tom-secret");
    std::fs::write(
        data.path().join("policy.jsonl"),
        format!("{{\"xui\":\"{BOB}\",\"blocked\":[\"{TOM}\"]}}\n"),
    )
    .unwrap();
    data
}

fn start(data: tempfile::TempDir) -> ServerProc {
    let policy = data.path().join("policy.jsonl");
    let policy = policy.to_str().unwrap().to_owned();
    ServerProc::start_with_data(&["--domain", "example.com", "--policy-file", &policy], data)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn h(alg: &str, s: &str) -> String {
    match alg {
        "MD5" => hex(&md5::Md5::digest(s.as_bytes())),
        _ => hex(&sha2::Sha256::digest(s.as_bytes())),
    }
}

/// One parameter of a challenge value.
fn param(challenge: &str, name: &str) -> String {
    let start = challenge.find(&format!("{name}=")).expect(name) + name.len() + 1;
    let rest = &challenge[start..];
    if let Some(q) = rest.strip_prefix('"') {
        q[..q.find('"').unwrap()].to_owned()
    } else {
        rest.split([',', ' ']).next().unwrap().to_owned()
    }
}

/// The credentials header value answering `challenge` (RFC 7616 §3.4.1, qop=auth), written
/// independently of the server's code.
fn answer(challenge: &str, user: &str, password: &str, method: &str, uri: &str) -> String {
    let alg = param(challenge, "algorithm");
    let realm = param(challenge, "realm");
    let nonce = param(challenge, "nonce");
    let (nc, cnonce) = ("00000001", "0a4f113b");
    let ha1 = h(&alg, &format!("{user}:{realm}:{password}"));
    let ha2 = h(&alg, &format!("{method}:{uri}"));
    let response = h(&alg, &format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
    format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{response}\", algorithm={alg}, qop=auth, nc={nc}, cnonce=\"{cnonce}\""
    )
}

/// A direct REGISTER from a UE (From = To = the AoR, Contact = its own socket).
fn ue_register(
    aor: &str,
    to: &str,
    ue: SocketAddr,
    cseq: u32,
    expires: u32,
    auth: Option<&str>,
) -> Vec<u8> {
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {ue};branch=z9hG4bKr{cseq};rport\r\n\
         Max-Forwards: 70\r\nFrom: <{aor}>;tag=4fa3\r\nTo: <{to}>\r\nCall-ID: reg-{ue}\r\n\
         CSeq: {cseq} REGISTER\r\nUser-Agent: IM-client/OMA1.0 Acme-Talk5000/v1.01\r\n\
         Contact: <sip:ue@{ue}>; + g.oma.sip-im\r\nExpires: {expires}\r\n{auth}Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Registers `aor` from a UE socket with Digest (SHA-256 or MD5); returns the 200.
fn register_with_digest(s: &ServerProc, ue: &Udp, aor: &str, pw: &str, alg: &str) -> String {
    let user = aor.trim_start_matches("sip:");
    ue.send(s.sip, &ue_register(aor, aor, ue.addr(), 1, 600, None));
    let r = ue.recv().expect("challenge");
    assert_eq!(status(&r), 401, "{r}");
    let challenges = headers(&r, "WWW-Authenticate");
    assert_eq!(challenges.len(), 2, "SHA-256 and MD5 (RFC 8760 §2.4): {r}");
    assert!(challenges[0].contains("algorithm=SHA-256") && challenges[1].contains("algorithm=MD5"));
    let c = challenges
        .iter()
        .find(|c| c.contains(&format!("algorithm={alg}")))
        .unwrap();
    let a = answer(c, user, pw, "REGISTER", "sip:example.com");
    ue.send(s.sip, &ue_register(aor, aor, ue.addr(), 2, 600, Some(&a)));
    ue.recv().expect("answer to the authenticated REGISTER")
}

#[test]
fn ue_registers_with_digest_then_receives_messages() {
    let s = start(provisioned());
    let bob_ue = Udp::bind_ip("127.0.0.2");
    let ok = register_with_digest(&s, &bob_ue, BOB, "bob-secret", "SHA-256");
    assert_eq!(status(&ok), 200, "{ok}");
    assert!(
        header(&ok, "Contact")
            .unwrap()
            .contains(&format!("sip:ue@{}", bob_ue.addr()))
    );
    let tom_ue = Udp::bind_ip("127.0.0.2");
    assert_eq!(
        status(&register_with_digest(&s, &tom_ue, TOM, "tom-secret", "MD5")),
        200
    );

    // The core delivers a MESSAGE from Alice: relayed to Bob's contact, his 200 comes back.
    let core = Udp::bind();
    core.send(
        s.sip,
        &message(BOB, ALICE, Some(ALICE), core.addr(), "UDP", "d1"),
    );
    let relayed = bob_ue.recv().expect("relayed to the registered contact");
    bob_ue.send(s.sip, &ok_for(&relayed));
    assert_eq!(core.recv().map(|r| status(&r)), Some(200));

    // A wrong password is challenged again, never accepted.
    bob_ue.send(s.sip, &ue_register(BOB, BOB, bob_ue.addr(), 3, 600, None));
    let c = bob_ue.recv().unwrap();
    let wrong = answer(
        headers(&c, "WWW-Authenticate")[0],
        "bob@example.com",
        "guess",
        "REGISTER",
        "sip:example.com",
    );
    bob_ue.send(
        s.sip,
        &ue_register(BOB, BOB, bob_ue.addr(), 4, 600, Some(&wrong)),
    );
    assert_eq!(bob_ue.recv().map(|r| status(&r)), Some(401));
}

#[test]
fn a_ue_registered_over_tcp_receives_on_its_own_connection() {
    let s = start(provisioned());
    // Bob's UE connects from 127.0.0.2 over TCP and registers with Digest on that connection.
    let bind = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    bind.bind(&"127.0.0.2:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    bind.connect(&s.sip.into()).unwrap();
    let stream: std::net::TcpStream = bind.into();
    stream.set_read_timeout(Some(common::WAIT)).unwrap();
    let mut ue = common::Tcp::from_stream(stream);
    let me = ue.addr();
    let tcp = |m: Vec<u8>| {
        String::from_utf8(m)
            .unwrap()
            .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
            .into_bytes()
    };
    ue.send(&tcp(ue_register(BOB, BOB, me, 1, 600, None)));
    let c = ue.recv().expect("challenge");
    assert_eq!(status(&c), 401);
    let a = answer(
        headers(&c, "WWW-Authenticate")[0],
        "bob@example.com",
        "bob-secret",
        "REGISTER",
        "sip:example.com",
    );
    ue.send(&tcp(ue_register(BOB, BOB, me, 2, 600, Some(&a))));
    assert_eq!(ue.recv().map(|r| status(&r)), Some(200));

    // The core sends over UDP; the MESSAGE reaches Bob on his TCP connection, his 200 returns.
    let core = Udp::bind();
    core.send(
        s.sip,
        &message(BOB, ALICE, Some(ALICE), core.addr(), "UDP", "tcp-ue"),
    );
    let Some(relayed) = ue.recv() else {
        panic!(
            "not relayed on the UE's own connection; metrics:\n{}",
            s.metrics_text()
        );
    };
    assert!(relayed.starts_with("MESSAGE "), "{relayed}");
    assert!(
        headers(&relayed, "Via")[0].starts_with("SIP/2.0/TCP"),
        "{relayed}"
    );
    ue.send(&ok_for(&relayed));
    assert_eq!(core.recv().map(|r| status(&r)), Some(200));
}

/// A MESSAGE from an untrusted UE: From is the claimed sender; `pai` tries to forge.
fn ue_message(
    from: &str,
    pai: Option<&str>,
    ue: SocketAddr,
    cseq: u32,
    auth: Option<&str>,
) -> Vec<u8> {
    let mut m = String::from_utf8(message(BOB, from, pai, ue, "UDP", &format!("ue-{ue}"))).unwrap();
    m = m.replace("CSeq: 1 MESSAGE", &format!("CSeq: {cseq} MESSAGE"));
    m = m.replace("branch=z9hG4bK-", &format!("branch=z9hG4bK{cseq}-"));
    if let Some(a) = auth {
        m = m.replacen(
            "Content-Type",
            &format!("Proxy-Authorization: {a}\r\nContent-Type"),
            1,
        );
    }
    m.into_bytes()
}

#[test]
fn an_untrusted_ue_cannot_act_as_someone_else_or_evade_a_block() {
    let s = start(provisioned());
    let core = Udp::bind();
    let bob_ue = Udp::bind();
    core.send(s.sip, &common_register(BOB, bob_ue.addr(), core.addr()));
    assert_eq!(core.recv().map(|r| status(&r)), Some(200));

    let tom = Udp::bind_ip("127.0.0.2");
    // Register as Bob with Tom's credentials: 403.
    tom.send(s.sip, &ue_register(BOB, BOB, tom.addr(), 1, 600, None));
    let c = tom.recv().unwrap();
    assert_eq!(status(&c), 401);
    let a = answer(
        headers(&c, "WWW-Authenticate")[0],
        "tom@example.com",
        "tom-secret",
        "REGISTER",
        "sip:example.com",
    );
    tom.send(s.sip, &ue_register(BOB, BOB, tom.addr(), 2, 600, Some(&a)));
    assert_eq!(tom.recv().map(|r| status(&r)), Some(403));

    // A MESSAGE without credentials is challenged with 407 (RFC 3261 §22.3).
    tom.send(s.sip, &ue_message(TOM, None, tom.addr(), 1, None));
    let c = tom.recv().unwrap();
    assert_eq!(status(&c), 407, "{c}");
    let ch = headers(&c, "Proxy-Authenticate")[0].to_owned();

    // Tom, authenticated as Tom, is blocked by Bob: 603. Forging PAI does not help (D7:
    // ignored from an untrusted peer) ...
    let a = answer(&ch, "tom@example.com", "tom-secret", "MESSAGE", BOB);
    tom.send(
        s.sip,
        &ue_message(TOM, Some(ALICE), tom.addr(), 2, Some(&a)),
    );
    assert_eq!(tom.recv().map(|r| status(&r)), Some(603));
    // ... nor does forging From: his credentials are not Alice's (403).
    tom.send(s.sip, &ue_message(ALICE, None, tom.addr(), 3, None));
    let ch = headers(&tom.recv().unwrap(), "Proxy-Authenticate")[0].to_owned();
    let a = answer(&ch, "tom@example.com", "tom-secret", "MESSAGE", BOB);
    tom.send(s.sip, &ue_message(ALICE, None, tom.addr(), 4, Some(&a)));
    assert_eq!(tom.recv().map(|r| status(&r)), Some(403));
    assert!(
        bob_ue.recv_for(Duration::from_millis(300)).is_none(),
        "Bob got nothing"
    );

    // Publishing as Bob with Tom's credentials: 403.
    tom.send(
        s.sip,
        &publish(BOB, None, tom.addr(), "p-forge", None, Some(ISB_ON), 3600),
    );
    let c = tom.recv().unwrap();
    assert_eq!(status(&c), 401);
    let a = answer(
        headers(&c, "WWW-Authenticate")[0],
        "tom@example.com",
        "tom-secret",
        "PUBLISH",
        "sip:IM-ClientA@example.com",
    );
    let p = String::from_utf8(publish(
        BOB,
        None,
        tom.addr(),
        "p-forge2",
        None,
        Some(ISB_ON),
        3600,
    ))
    .unwrap()
    .replacen("Event:", &format!("Authorization: {a}\r\nEvent:"), 1);
    tom.send(s.sip, p.as_bytes());
    assert_eq!(tom.recv().map(|r| status(&r)), Some(403));
}

fn common_register(aor: &str, contact: SocketAddr, via: SocketAddr) -> Vec<u8> {
    format!(
        "REGISTER sip:im.example.com SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bK3p-{contact};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:scscf@example.com>;tag=s1\r\nTo: <{aor}>\r\nCall-ID: 3p-{contact}\r\n\
         CSeq: 1 REGISTER\r\nContact: <sip:ue@{contact}>;+g.oma.sip-im\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

const ISB_ON: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<service-settings xmlns=\"urn:oma:xml:im:service-settings\">\n\
  <isb-settings><incoming-session-barring active=\"true\"/></isb-settings>\n\
  <vis-settings><vis-status active=\"false\"/></vis-settings>\n\
</service-settings>\n";

/// A PUBLISH shaped like seed 004 step 6 (Request-URI = the client's URI; the core's PAI names
/// the user; `Event: Service-settings` as the seed writes it).
fn publish(
    aor: &str,
    pai: Option<&str>,
    via: SocketAddr,
    call_id: &str,
    if_match: Option<&str>,
    body: Option<&str>,
    expires: u32,
) -> Vec<u8> {
    let pai = pai
        .map(|p| format!("P-Asserted-Identity: \"IM User A\" <{p}>\r\n"))
        .unwrap_or_default();
    let im = if_match
        .map(|e| format!("SIP-If-Match: {e}\r\n"))
        .unwrap_or_default();
    let (ct, body) = match body {
        Some(b) => (
            "Content-Type: application/service-settings+xml\r\n".to_owned(),
            b.to_owned(),
        ),
        None => (String::new(), String::new()),
    };
    format!(
        "PUBLISH sip:IM-ClientA@example.com SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bK{call_id};rport\r\n\
         Max-Forwards: 70\r\nFrom: <{aor}>;tag=p1\r\nTo: <{aor}>\r\nCall-ID: {call_id}\r\nCSeq: 1 PUBLISH\r\n\
         {pai}Accept-Contact: *;+g.oma.sip-im;require;explicit\r\nUser-Agent: IM-client/OMA1.0 Acme-Talk5000/v1.01\r\n\
         Contact: <sip:IM-ClientA@example.com>\r\nEvent: Service-settings\r\n{im}Expires: {expires}\r\n{ct}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn service_settings_publish_bars_and_removal_restores_delivery() {
    let s = start(provisioned());
    let core = Udp::bind();
    let bob_ue = Udp::bind();
    core.send(s.sip, &common_register(BOB, bob_ue.addr(), core.addr()));
    assert_eq!(core.recv().map(|r| status(&r)), Some(200));

    // Seed 004 steps 6-7: 200 with SIP-ETag and Expires (RFC 3903 §4.1).
    core.send(
        s.sip,
        &publish(
            "sip:IM-ClientA@example.com",
            Some(BOB),
            core.addr(),
            "pub1",
            None,
            Some(ISB_ON),
            3600,
        ),
    );
    let r = core.recv().unwrap();
    assert_eq!(status(&r), 200, "{r}");
    let etag = header(&r, "SIP-ETag").expect("SIP-ETag").to_owned();
    assert_eq!(header(&r, "Expires"), Some("3600"));

    // ISB on: every MESSAGE to Bob gets the block response; Bob is not bothered.
    core.send(
        s.sip,
        &message(BOB, ALICE, Some(ALICE), core.addr(), "UDP", "isb1"),
    );
    assert_eq!(core.recv().map(|r| status(&r)), Some(603));

    // Refresh (no body) gives a new entity tag; the old one is then unknown (412).
    core.send(
        s.sip,
        &publish(
            "sip:IM-ClientA@example.com",
            Some(BOB),
            core.addr(),
            "pub2",
            Some(&etag),
            None,
            3600,
        ),
    );
    let r = core.recv().unwrap();
    assert_eq!(status(&r), 200);
    let etag2 = header(&r, "SIP-ETag").unwrap().to_owned();
    assert_ne!(etag2, etag);
    core.send(
        s.sip,
        &publish(
            "sip:IM-ClientA@example.com",
            Some(BOB),
            core.addr(),
            "pub3",
            Some(&etag),
            None,
            3600,
        ),
    );
    assert_eq!(core.recv().map(|r| status(&r)), Some(412));

    // Removal (SIP-If-Match + Expires 0) restores delivery.
    core.send(
        s.sip,
        &publish(
            "sip:IM-ClientA@example.com",
            Some(BOB),
            core.addr(),
            "pub4",
            Some(&etag2),
            None,
            0,
        ),
    );
    let r = core.recv().unwrap();
    assert_eq!((status(&r), header(&r, "Expires")), (200, Some("0")));
    core.send(
        s.sip,
        &message(BOB, ALICE, Some(ALICE), core.addr(), "UDP", "isb2"),
    );
    let relayed = bob_ue.recv().expect("delivered again");
    bob_ue.send(s.sip, &ok_for(&relayed));
    assert_eq!(core.recv().map(|r| status(&r)), Some(200));
}

#[test]
fn publish_and_register_errors_carry_the_right_codes() {
    let s = start(provisioned());
    let core = Udp::bind();
    let send = |m: Vec<u8>| {
        core.send(s.sip, &m);
        core.recv().expect("an answer")
    };
    let pai = Some(BOB);
    let base = |id: &str| {
        String::from_utf8(publish(
            "sip:c@example.com",
            pai,
            core.addr(),
            id,
            None,
            Some(ISB_ON),
            3600,
        ))
        .unwrap()
    };

    let r = send(
        base("e1")
            .replace("Event: Service-settings", "Event: presence")
            .into_bytes(),
    );
    assert_eq!(status(&r), 489, "{r}");
    assert_eq!(header(&r, "Allow-Events"), Some("service-settings"));

    let r = send(
        base("e2")
            .replace("application/service-settings+xml", "text/plain")
            .into_bytes(),
    );
    assert_eq!(status(&r), 415);
    assert!(
        header(&r, "Accept")
            .unwrap()
            .contains("application/service-settings+xml")
    );

    let bad = "<service-settings xmlns=\"urn:oma:xml:im:service-settings\"><isb-settings>";
    let r = send(publish(
        "sip:c@example.com",
        pai,
        core.addr(),
        "e3",
        None,
        Some(bad),
        3600,
    ));
    assert_eq!(status(&r), 400, "malformed XML: {r}");

    let r = send(publish(
        "sip:c@example.com",
        pai,
        core.addr(),
        "e4",
        Some("no-such-etag"),
        None,
        3600,
    ));
    assert_eq!(status(&r), 412);

    let r = send(publish(
        "sip:c@example.com",
        pai,
        core.addr(),
        "e5",
        None,
        Some(ISB_ON),
        10,
    ));
    assert_eq!((status(&r), header(&r, "Min-Expires")), (423, Some("60")));

    let r = send(publish(
        "sip:c@example.com",
        pai,
        core.addr(),
        "e6",
        None,
        None,
        3600,
    ));
    assert_eq!(
        status(&r),
        400,
        "an initial PUBLISH needs a body (RFC 3903 §6): {r}"
    );

    // Direct REGISTER from an authenticated UE below Min-Expires: 423 + Min-Expires (D9).
    let bob_ue = Udp::bind_ip("127.0.0.2");
    bob_ue.send(s.sip, &ue_register(BOB, BOB, bob_ue.addr(), 1, 30, None));
    let c = bob_ue.recv().unwrap();
    let a = answer(
        headers(&c, "WWW-Authenticate")[0],
        "bob@example.com",
        "bob-secret",
        "REGISTER",
        "sip:example.com",
    );
    bob_ue.send(
        s.sip,
        &ue_register(BOB, BOB, bob_ue.addr(), 2, 30, Some(&a)),
    );
    let r = bob_ue.recv().unwrap();
    assert_eq!(
        (status(&r), header(&r, "Min-Expires")),
        (423, Some("60")),
        "{r}"
    );

    // A malformed Authorization header gets 400 with a reason naming it.
    bob_ue.send(
        s.sip,
        &ue_register(
            BOB,
            BOB,
            bob_ue.addr(),
            3,
            600,
            Some("Digest username=\"bob@example.com\", realm="),
        ),
    );
    let r = bob_ue.recv().unwrap();
    assert_eq!(status(&r), 400, "{r}");
    assert!(r.lines().next().unwrap().contains("Authorization"), "{r}");

    // SUBSCRIBE to a package we do not serve: 489.
    let sub = base("e7")
        .replace("PUBLISH sip:", "SUBSCRIBE sip:")
        .replace("1 PUBLISH", "1 SUBSCRIBE");
    assert_eq!(status(&send(sub.into_bytes())), 489);
}

#[test]
fn sigkill_and_restart_lose_no_binding_publication_or_credential() {
    let s = start(provisioned());
    let core = Udp::bind();
    let bob_ue = Udp::bind();
    let tom_ue = Udp::bind_ip("127.0.0.2");
    assert_eq!(
        status(&register_with_digest(
            &s,
            &tom_ue,
            TOM,
            "tom-secret",
            "SHA-256"
        )),
        200
    );
    core.send(s.sip, &common_register(BOB, bob_ue.addr(), core.addr()));
    assert_eq!(core.recv().map(|r| status(&r)), Some(200));
    core.send(
        s.sip,
        &publish(
            "sip:IM-ClientA@example.com",
            Some(BOB),
            core.addr(),
            "k1",
            None,
            Some(ISB_ON),
            3600,
        ),
    );
    let r = core.recv().unwrap();
    let etag = header(&r, "SIP-ETag").unwrap().to_owned();

    let data = s.kill();
    let s = start(data);
    // The publication is back: Bob is barred.
    core.send(
        s.sip,
        &message(BOB, ALICE, Some(ALICE), core.addr(), "UDP", "k2"),
    );
    assert_eq!(core.recv().map(|r| status(&r)), Some(603));
    // Its entity tag still works; removing it shows Bob's binding is back too.
    core.send(
        s.sip,
        &publish(
            "sip:IM-ClientA@example.com",
            Some(BOB),
            core.addr(),
            "k3",
            Some(&etag),
            None,
            0,
        ),
    );
    assert_eq!(core.recv().map(|r| status(&r)), Some(200));
    core.send(
        s.sip,
        &message(BOB, ALICE, Some(ALICE), core.addr(), "UDP", "k4"),
    );
    let relayed = bob_ue.recv().expect("Bob's binding survived");
    bob_ue.send(s.sip, &ok_for(&relayed));
    assert_eq!(core.recv().map(|r| status(&r)), Some(200));
    // Tom's binding (direct, Digest) survived, and so did the credentials.
    core.send(
        s.sip,
        &message(TOM, ALICE, Some(ALICE), core.addr(), "UDP", "k5"),
    );
    assert!(tom_ue.recv().is_some(), "Tom's binding survived");
    let again = Udp::bind_ip("127.0.0.2");
    assert_eq!(
        status(&register_with_digest(&s, &again, TOM, "tom-secret", "MD5")),
        200
    );
}

#[test]
fn user_command_adds_lists_and_removes() {
    let data = tempfile::tempdir().unwrap();
    let secret = "plain-Text-Secret-7q";
    user_add(data.path(), BOB, secret);
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_imserver"))
            .args(args)
            .arg("--data")
            .arg(data.path())
            .output()
            .unwrap()
    };
    let list = run(&["user", "list"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(text.contains("bob@example.com"), "{text}");
    assert!(!text.contains(secret), "no secret is ever printed");
    let raw = std::fs::read(data.path().join("credentials.redb")).unwrap();
    assert!(
        !raw.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "only HA1 hashes are stored, never the password"
    );
    assert!(
        run(&["user", "remove", "sip:bob@example.com"])
            .status
            .success()
    );
    assert!(
        !run(&["user", "remove", "sip:bob@example.com"])
            .status
            .success(),
        "removing twice fails"
    );
    assert!(!String::from_utf8_lossy(&run(&["user", "list"]).stdout).contains("bob@"));
}
