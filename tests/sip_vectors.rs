//! RFC 4475 torture messages as a table test: every file in tests/vectors/rfc4475 is listed
//! exactly once with the reaction SPEC §9 expects (or the judgment call we made where SPEC
//! leaves a choice), and scanning + validation must produce exactly that.

use std::collections::BTreeSet;
use std::path::PathBuf;

use imserver::sip::validate::{Limits, check_request, check_response};
use imserver::sip::write::{OwnVia, RelayDrop, write_relay_response};
use imserver::sip::{Parsed, Transport};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Rejected with this status (by the scanner or by validation).
    Status(u16),
    /// Passes validation and is served normally.
    Ok,
    /// Passes validation; the server answers 405 later because it does not serve INVITE.
    OkInvite,
    /// Passes validation; answering it is an authentication matter (challenge).
    OkAuth,
    /// A well-formed response: scans and passes check_response.
    Response,
    /// A response to drop: scan error that cannot be replied to, or check_response fails.
    DropResponse,
    /// RFC 4475 bcast: a well-formed response whose next hop is a broadcast address, which
    /// the relay refuses.
    DropBroadcast,
}

use Expect::*;

/// (file, expectation, why)
const TABLE: &[(&str, Expect, &str)] = &[
    (
        "badaspec",
        Status(400),
        "SPEC: 400 or be liberal; we reject LWS inside <> in To",
    ),
    (
        "badbranch",
        Ok,
        "SPEC: 400 or be liberal; we accept a bare-cookie branch (RFC 2543 matching)",
    ),
    (
        "baddate",
        OkInvite,
        "SPEC: 400 or be liberal; Date is never interpreted, so liberal",
    ),
    (
        "baddn",
        Status(400),
        "SPEC 400: unquoted display name with a comma",
    ),
    (
        "badinv01",
        Status(400),
        "SPEC 400: empty Via params / elements",
    ),
    ("badvers", Status(505), "SPEC 505: SIP/7.0"),
    (
        "bcast",
        DropBroadcast,
        "SPEC drop: response toward 255.255.255.255",
    ),
    ("bext01", Status(420), "SPEC 420: Require with unknown tags"),
    ("bigcode", DropResponse, "SPEC drop: status code 4294967301"),
    (
        "clerr",
        Status(400),
        "SPEC 400 (UDP): Content-Length 9999 beyond the datagram",
    ),
    (
        "cparam01",
        Ok,
        "SPEC answer normally: unknown contact param on addr-spec",
    ),
    (
        "cparam02",
        Ok,
        "SPEC answer normally: unknown URI param in name-addr",
    ),
    (
        "dblreq",
        Ok,
        "SPEC 3.1.1 answer normally: bytes after Content-Length ignored",
    ),
    (
        "esc01",
        OkInvite,
        "SPEC 3.1.1 answer normally: escapes in URIs",
    ),
    (
        "esc02",
        Status(501),
        "SPEC 501: method RE%47IST%45R unknown",
    ),
    (
        "escnull",
        Ok,
        "SPEC 3.1.1 answer normally: %00 in user parts",
    ),
    (
        "escruri",
        Status(400),
        "SPEC: 400 or be liberal; we reject headers in the Request-URI (§19.1.1)",
    ),
    (
        "insuf",
        Status(400),
        "SPEC 400: missing To, From, Call-ID, Max-Forwards",
    ),
    (
        "intmeth",
        Status(501),
        "SPEC 3.1.1 answer normally: the normal answer to an unknown (legal) method is 501",
    ),
    (
        "inv2543",
        OkInvite,
        "SPEC: INVITE-only; RFC 2543 request (no Max-Forwards, no cookie) accepted",
    ),
    (
        "invut",
        Status(415),
        "SPEC 415: INVITE with application/unknownformat",
    ),
    (
        "longreq",
        OkInvite,
        "SPEC 3.1.1 answer normally: long values, 34 Vias",
    ),
    ("ltgtruri", Status(400), "SPEC 400: Request-URI in <>"),
    (
        "lwsdisp",
        Ok,
        "SPEC 3.1.1 answer normally: no LWS between display name and <",
    ),
    (
        "lwsruri",
        Status(400),
        "SPEC 400: LWS inside the Request-URI",
    ),
    (
        "lwsstart",
        OkInvite,
        "SPEC: 400 or be liberal; we accept runs of SP in the request line",
    ),
    ("mcl01", Status(400), "SPEC 400: two Content-Length headers"),
    ("mismatch01", Status(400), "SPEC 400: CSeq method differs"),
    (
        "mismatch02",
        Status(501),
        "SPEC 501: unknown method (CSeq differs too)",
    ),
    (
        "mpart01",
        Ok,
        "SPEC 3.1.1 answer normally: MESSAGE with multipart/mixed binary body",
    ),
    (
        "multi01",
        Status(400),
        "SPEC 400: duplicated single-value headers",
    ),
    ("ncl", Status(400), "SPEC 400: negative Content-Length"),
    (
        "noreason",
        Response,
        "SPEC 3.1.1: response with empty reason phrase",
    ),
    ("novelsc", Status(416), "SPEC 416: soap.beep Request-URI"),
    ("quotbal", Status(400), "SPEC 400: unbalanced quote in To"),
    (
        "regaut01",
        OkAuth,
        "SPEC 401: unknown auth scheme; authentication decides",
    ),
    (
        "regbadct",
        Status(400),
        "SPEC: 400 or be liberal; we reject an unbracketed Contact URI with '?'",
    ),
    (
        "regescrt",
        Ok,
        "not in SPEC table; escaped header inside a bracketed Contact is valid",
    ),
    (
        "scalar02",
        Status(400),
        "SPEC 400: CSeq beyond 2^31 (and Max-Forwards 300)",
    ),
    (
        "scalarlg",
        DropResponse,
        "SPEC drop: response with CSeq beyond 2^31",
    ),
    (
        "sdp01",
        Status(406),
        "SPEC 406: Accept excludes application/sdp",
    ),
    (
        "semiuri",
        Ok,
        "SPEC 3.1.1 answer normally: ';' in the user part",
    ),
    (
        "transports",
        Ok,
        "SPEC 3.1.1 answer normally: unknown Via transports",
    ),
    (
        "trws",
        Ok,
        "SPEC: 400 or be liberal; we accept trailing whitespace after SIP/2.0",
    ),
    (
        "unkscm",
        Status(416),
        "SPEC 416: unknown Request-URI scheme",
    ),
    ("unksm2", Status(416), "SPEC 416: To with isbn: scheme"),
    ("unreason", Response, "SPEC 3.1.1: UTF-8 reason phrase"),
    (
        "wsinv",
        OkInvite,
        "SPEC 3.1.1 answer normally: folds and LWS everywhere",
    ),
    (
        "zeromf",
        Ok,
        "SPEC answer normally: Max-Forwards 0 at a UAS",
    ),
];

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/rfc4475")
}

fn vector_dir() -> PathBuf {
    // The test lives in /work/main/tests; the scratch crate references it by path, so look
    // next to this source file as well as under the manifest.
    let here = PathBuf::from(file!());
    let beside = here
        .parent()
        .map(|p| p.join("vectors/rfc4475"))
        .unwrap_or_default();
    if beside.is_dir() { beside } else { dir() }
}

#[test]
fn table_lists_every_file_exactly_once() {
    let files: BTreeSet<String> = std::fs::read_dir(vector_dir())
        .expect("vector dir")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().into_string().ok()?;
            n.strip_suffix(".dat").map(str::to_owned)
        })
        .collect();
    let listed: Vec<&str> = TABLE.iter().map(|r| r.0).collect();
    let set: BTreeSet<String> = listed.iter().map(|s| s.to_string()).collect();
    assert_eq!(set.len(), listed.len(), "a file is listed twice");
    assert_eq!(files.len(), 49, "expected the 49 RFC 4475 files");
    assert_eq!(files, set, "table and directory differ");
}

#[test]
fn every_vector_gets_its_expected_reaction() {
    let limits = Limits::default();
    let mut failures = Vec::new();
    for &(name, expect, why) in TABLE {
        let buf = std::fs::read(vector_dir().join(format!("{name}.dat"))).expect(name);
        let mut p = Parsed::new();
        let got = match p.scan_datagram(&buf) {
            Err(e) => {
                if p.view(&buf).is_response() || !e.can_reply() {
                    assert!(
                        !e.can_reply(),
                        "{name}: response error must not be replyable"
                    );
                    DropResponse
                } else {
                    Status(e.status())
                }
            }
            Result::Ok(()) => {
                let v = p.view(&buf);
                if v.is_response() {
                    match check_response(&v) {
                        Err(_) => DropResponse,
                        Result::Ok(()) => {
                            // Relay as if the top Via were ours: the next hop decides.
                            let own = OwnVia {
                                host: "192.0.2.198",
                                port: 5060,
                                branch_prefix: b"z9hG4bK",
                            };
                            let mut out = Vec::with_capacity(65536);
                            match write_relay_response(&v, &own, &mut out) {
                                Err(RelayDrop::Broadcast) => DropBroadcast,
                                _ => Response,
                            }
                        }
                    }
                } else {
                    match check_request(&v, &limits) {
                        Err(r) => Status(r.code),
                        Result::Ok(()) => match (name, v.method()) {
                            ("regaut01", _) => OkAuth,
                            (_, imserver::sip::Method::Invite) => OkInvite,
                            _ => Ok,
                        },
                    }
                }
            }
        };
        if got != expect {
            failures.push(format!("{name}: expected {expect:?}, got {got:?} ({why})"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn dblreq_ignores_the_second_request() {
    let buf = std::fs::read(vector_dir().join("dblreq.dat")).unwrap();
    let mut p = Parsed::new();
    p.scan_datagram(&buf).unwrap();
    let v = p.view(&buf);
    assert!(v.len() < buf.len());
    assert!(v.body().is_empty());
    assert_eq!(v.transport(), Transport::Udp);
}

#[test]
fn every_vector_frames_on_a_stream_without_panicking() {
    for &(name, _, _) in TABLE {
        let buf = std::fs::read(vector_dir().join(format!("{name}.dat"))).unwrap();
        let mut p = Parsed::new();
        for cut in 0..=buf.len() {
            let _ = p.scan_stream(&buf[..cut], 65536);
        }
    }
}

/// The 400s name their fault.
#[test]
fn reasons_name_the_fault() {
    let rows: &[(&str, &str)] = &[
        ("badaspec", "Bad Request - Malformed To"),
        ("baddn", "Bad Request - Malformed From"),
        ("badinv01", "Bad Request - Malformed Via"),
        ("clerr", "Bad Request - Body Shorter Than Content-Length"),
        ("escruri", "Bad Request - Headers in Request-URI"),
        ("insuf", "Bad Request - Missing From"),
        ("ltgtruri", "Bad Request - Malformed Request-URI"),
        ("lwsruri", "Bad Request - Malformed Request-URI"),
        ("mcl01", "Bad Request - Duplicate Content-Length"),
        ("mismatch01", "Bad Request - CSeq Method Mismatch"),
        ("multi01", "Bad Request - Duplicate From"),
        ("ncl", "Bad Request - Malformed Content-Length"),
        ("quotbal", "Bad Request - Malformed To"),
        ("regbadct", "Bad Request - Malformed Contact"),
        ("scalar02", "Bad Request - Malformed CSeq"),
        ("unksm2", "Unsupported URI Scheme in To"),
    ];
    for &(name, reason) in rows {
        let buf = std::fs::read(vector_dir().join(format!("{name}.dat"))).unwrap();
        let mut p = Parsed::new();
        let got = match p.scan_datagram(&buf) {
            Err(e) => e.reason(),
            Result::Ok(()) => match check_request(&p.view(&buf), &Limits::default()) {
                Err(r) => r.reason,
                Result::Ok(()) => "accepted",
            },
        };
        assert_eq!(got, reason, "{name}");
    }
}
