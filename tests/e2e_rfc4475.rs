//! RFC 4475 against the real binary: every torture message goes over UDP to `imserver run` and
//! gets the reaction SPEC §9 gives. Messages are sent from 127.0.0.2, an untrusted address, so
//! REGISTER is challenged as SPEC expects for regaut01. The top Via's sent-by is pointed at the
//! test's own socket (the vectors name documentation hosts), so no response leaves loopback.
//! After the whole corpus the server must still be alive and answering.

mod common;

use std::time::Duration;

use common::{ServerProc, Udp, status};

/// What the server must do with a vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reaction {
    /// Answer with this status code.
    Code(u16),
    /// Send nothing (responses that are not ours, or cannot be routed).
    Silent,
}
use Reaction::*;

/// (file, reaction, why). Every file of tests/vectors/rfc4475 appears exactly once.
const TABLE: &[(&str, Reaction, &str)] = &[
    (
        "badaspec",
        Code(400),
        "400 or liberal: LWS inside <> in To is rejected",
    ),
    (
        "badbranch",
        Code(200),
        "400 or liberal: OPTIONS with a bare-cookie branch, answered",
    ),
    (
        "baddate",
        Code(405),
        "400 or liberal: Date is never read; INVITE is not served",
    ),
    (
        "baddn",
        Code(400),
        "400: unquoted display name with a comma",
    ),
    ("badinv01", Code(400), "400: malformed Via"),
    ("badvers", Code(505), "505: SIP/7.0"),
    ("bcast", Silent, "drop: a response toward 255.255.255.255"),
    ("bext01", Code(420), "420: Require with unknown option tags"),
    ("bigcode", Silent, "drop: status code 4294967301"),
    (
        "clerr",
        Code(400),
        "400 (UDP): Content-Length beyond the datagram",
    ),
    (
        "cparam01",
        Code(401),
        "answer normally: a REGISTER from an untrusted peer is challenged",
    ),
    (
        "cparam02",
        Code(401),
        "answer normally: a REGISTER from an untrusted peer is challenged",
    ),
    (
        "dblreq",
        Code(401),
        "answer normally: bytes after Content-Length ignored; challenged",
    ),
    (
        "esc01",
        Code(405),
        "answer normally: escaped URIs parse; INVITE is not served",
    ),
    ("esc02", Code(501), "501: method RE%47IST%45R is unknown"),
    (
        "escnull",
        Code(401),
        "answer normally: %00 in user parts is valid; challenged",
    ),
    (
        "escruri",
        Code(400),
        "400 or liberal: headers in the Request-URI are rejected",
    ),
    (
        "insuf",
        Code(400),
        "400: missing From, To, Call-ID, Max-Forwards",
    ),
    (
        "intmeth",
        Code(501),
        "answer normally: the answer to a legal unknown method is 501",
    ),
    (
        "inv2543",
        Code(405),
        "RFC 2543 INVITE parses; INVITE is not served",
    ),
    (
        "invut",
        Code(415),
        "415: INVITE body application/unknownformat",
    ),
    (
        "longreq",
        Code(405),
        "answer normally: long values, 34 Vias; INVITE is not served",
    ),
    ("ltgtruri", Code(400), "400: Request-URI in <>"),
    (
        "lwsdisp",
        Code(200),
        "answer normally: no LWS between display name and <",
    ),
    ("lwsruri", Code(400), "400: LWS inside the Request-URI"),
    (
        "lwsstart",
        Code(405),
        "400 or liberal: extra spaces in the request line accepted",
    ),
    ("mcl01", Code(400), "400: two Content-Length headers"),
    (
        "mismatch01",
        Code(400),
        "400: CSeq method differs from the request method",
    ),
    (
        "mismatch02",
        Code(501),
        "501: unknown method with a mismatched CSeq",
    ),
    (
        "mpart01",
        Code(407),
        "answer normally: a multipart MESSAGE from an untrusted peer is challenged",
    ),
    ("multi01", Code(400), "400: several single-valued headers"),
    ("ncl", Code(400), "400: negative Content-Length"),
    ("noreason", Silent, "a response that is not ours: dropped"),
    ("novelsc", Code(416), "416: soap.beep Request-URI scheme"),
    ("quotbal", Code(400), "400: unbalanced quotes"),
    (
        "regaut01",
        Code(401),
        "401: credentials for a scheme we do not know; challenge",
    ),
    (
        "regbadct",
        Code(400),
        "400 or liberal: unbracketed Contact with ? is rejected",
    ),
    (
        "regescrt",
        Code(401),
        "answer normally: escaped headers in Contact; challenged",
    ),
    (
        "scalar02",
        Code(400),
        "400: CSeq and Max-Forwards out of range",
    ),
    (
        "scalarlg",
        Silent,
        "drop: a response with out-of-range values",
    ),
    ("sdp01", Code(406), "406: Accept excludes application/sdp"),
    ("semiuri", Code(200), "answer normally: ; in the user part"),
    (
        "transports",
        Code(200),
        "answer normally: unknown transports in lower Vias",
    ),
    (
        "trws",
        Code(200),
        "400 or liberal: trailing whitespace after SIP/2.0 accepted",
    ),
    ("unkscm", Code(416), "416: unknown Request-URI scheme"),
    ("unksm2", Code(416), "416: unknown scheme in To"),
    ("unreason", Silent, "a response that is not ours: dropped"),
    (
        "wsinv",
        Code(405),
        "answer normally: whitespace everywhere parses; INVITE is not served",
    ),
    (
        "zeromf",
        Code(200),
        "answer normally: Max-Forwards 0 at the UAS",
    ),
];

/// Points the top Via's sent-by at `port` on 127.0.0.1, keeping the protocol and parameters
/// (works through folded lines and odd spacing, as in wsinv).
fn point_top_via(msg: &[u8], port: u16) -> Vec<u8> {
    let text = msg;
    // Find the first header line named Via or v (case-insensitive, LWS before the colon).
    let mut line_start = match text.windows(2).position(|w| w == b"\r\n") {
        Some(i) => i + 2,
        None => return msg.to_vec(),
    };
    while line_start < text.len() {
        let line_end = text[line_start..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(text.len(), |i| line_start + i);
        let line = &text[line_start..line_end];
        if line.is_empty() {
            break;
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let name = String::from_utf8_lossy(&line[..colon])
                .trim()
                .to_ascii_lowercase();
            if name == "via" || name == "v" {
                // After the colon: sent-protocol (three tokens separated by '/', with LWS and
                // folds allowed), then LWS, then the sent-by host[:port].
                let mut i = line_start + colon + 1;
                let mut slashes = 0;
                while i < text.len() && slashes < 2 {
                    if text[i] == b'/' {
                        slashes += 1;
                    }
                    i += 1;
                }
                // Skip LWS, the transport token, LWS (including folds).
                let skip_ws = |mut j: usize| {
                    while j < text.len() && matches!(text[j], b' ' | b'\t' | b'\r' | b'\n') {
                        j += 1;
                    }
                    j
                };
                i = skip_ws(i);
                while i < text.len() && !matches!(text[i], b' ' | b'\t' | b'\r' | b'\n') {
                    i += 1;
                }
                let host_start = skip_ws(i);
                let mut host_end = host_start;
                while host_end < text.len()
                    && !matches!(text[host_end], b';' | b',' | b' ' | b'\t' | b'\r' | b'\n')
                {
                    host_end += 1;
                }
                let mut out = text[..host_start].to_vec();
                out.extend_from_slice(format!("127.0.0.1:{port}").as_bytes());
                out.extend_from_slice(&text[host_end..]);
                return out;
            }
        }
        line_start = line_end + 2;
    }
    msg.to_vec()
}

#[test]
fn every_torture_message_gets_its_reaction() {
    let server = ServerProc::start(&[]);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/rfc4475");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".dat").map(str::to_owned))
        .collect();
    names.sort();
    let mut listed: Vec<&str> = TABLE.iter().map(|(n, _, _)| *n).collect();
    listed.sort();
    assert_eq!(names.len(), 49, "the corpus has 49 messages");
    assert_eq!(listed, names, "every vector is listed exactly once");

    let mut failures = Vec::new();
    for (name, want, why) in TABLE {
        let bytes = std::fs::read(dir.join(format!("{name}.dat"))).unwrap();
        let peer = Udp::bind_ip("127.0.0.2");
        peer.send(server.sip, &point_top_via(&bytes, peer.addr().port()));
        // A silent reaction is checked with a bounded wait: nothing within 500 ms.
        let wait = if *want == Silent {
            Duration::from_millis(500)
        } else {
            common::WAIT
        };
        let got = match peer.recv_for(wait) {
            Some(resp) => Code(status(&resp)),
            None => Silent,
        };
        if got != *want {
            failures.push(format!("{name}: got {got:?}, want {want:?} ({why})"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // No input crashed or wedged the server.
    let peer = Udp::bind();
    let port = peer.addr().port();
    peer.send(
        server.sip,
        format!(
            "OPTIONS sip:im@localhost SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKalive\r\n\
             Max-Forwards: 70\r\nFrom: <sip:t@localhost>;tag=1\r\nTo: <sip:im@localhost>\r\n\
             Call-ID: alive\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(peer.recv().map(|r| status(&r)), Some(200));
}
