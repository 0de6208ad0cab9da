//! Property tests: the fast scanner and the slow reference parser agree on every fact of
//! generated messages (random header order, long/compact names in random case, folds, LWS
//! around ':' ';' '=' '/', several Vias per line and per message, random bodies), and random
//! byte mutations never panic the fast path.

use std::net::SocketAddr;

use imserver::sip::nameaddr;
use imserver::sip::reference::{self, RefMessage};
use imserver::sip::validate::{Limits, check_request, check_response};
use imserver::sip::values;
use imserver::sip::via;
use imserver::sip::write::{
    OwnVia, RelaySpec, derive_to_tag, write_relay_request, write_relay_response, write_response,
};
use imserver::sip::{ExtraHeader, Framing, HeaderName, Parsed, Transport};
use proptest::prelude::*;

/// Draws choices from a proptest-generated stream (shrinks with it).
struct Choices<'a> {
    c: &'a [u32],
    i: usize,
}

impl Choices<'_> {
    fn pick(&mut self, n: usize) -> usize {
        let v = self
            .c
            .get(self.i % self.c.len().max(1))
            .copied()
            .unwrap_or(0);
        self.i += 1;
        (v as usize).wrapping_add(self.i.wrapping_mul(7)) % n.max(1)
    }
    fn flip(&mut self) -> bool {
        self.pick(2) == 1
    }
}

fn rand_case(c: &mut Choices<'_>, s: &str) -> String {
    match c.pick(3) {
        0 => s.to_string(),
        1 => s.to_ascii_uppercase(),
        _ => s
            .chars()
            .map(|ch| {
                if c.flip() {
                    ch.to_ascii_uppercase()
                } else {
                    ch.to_ascii_lowercase()
                }
            })
            .collect(),
    }
}

/// Whitespace that may surround a separator: nothing, spaces, a tab, or a fold.
fn lws(c: &mut Choices<'_>) -> &'static str {
    ["", "", " ", "  ", "\t", "\r\n ", "\r\n\t "][c.pick(7)]
}

fn name(c: &mut Choices<'_>, long: &str, compact: Option<&str>) -> String {
    match compact {
        Some(k) if c.flip() => rand_case(c, k),
        _ => rand_case(c, long),
    }
}

const TOKENS: &[&str] = &["alpha", "b0b", "x-y.z", "Q_1", "tok~en", "42"];
const HOSTS: &[&str] = &[
    "example.com",
    "192.0.2.7",
    "h-1.example.net",
    "[2001:db8::5]",
];

fn via_value(c: &mut Choices<'_>, k: usize) -> String {
    let t = ["UDP", "TCP", "TLS", "SCTP"][c.pick(4)];
    let host = HOSTS[c.pick(HOSTS.len())];
    let port = if c.flip() {
        format!("{}:{}", lws(c), 5060 + c.pick(10))
    } else {
        String::new()
    };
    let mut s = format!(
        "SIP{}/{}2.0{}/{}{} {}{}{}",
        lws(c),
        lws(c),
        lws(c),
        lws(c),
        t,
        lws(c),
        host,
        port
    );
    s.push_str(&format!(
        "{};{}branch{}={}z9hG4bK{}{}",
        lws(c),
        lws(c),
        lws(c),
        lws(c),
        TOKENS[c.pick(6)],
        k
    ));
    if c.flip() {
        s.push_str(&format!("{};{}rport", lws(c), lws(c)));
    }
    s
}

fn name_addr(c: &mut Choices<'_>, user: &str, tag: Option<&str>) -> String {
    let host = HOSTS[c.pick(HOSTS.len())];
    let mut s = match c.pick(3) {
        0 => format!("<sip:{user}@{host}>"),
        1 => format!(
            "\"Dis {}play\"{}<sip:{user}@{host}>",
            TOKENS[c.pick(6)],
            lws(c)
        ),
        _ => format!("sip:{user}@{host}"),
    };
    if let Some(t) = tag {
        s.push_str(&format!(
            "{};{}tag{}={}{}",
            lws(c),
            lws(c),
            lws(c),
            lws(c),
            t
        ));
    }
    s
}

/// Builds a valid request; returns the bytes.
fn build(choices: &[u32], body: &[u8]) -> Vec<u8> {
    let c = &mut Choices { c: choices, i: 0 };
    let method = ["MESSAGE", "OPTIONS", "REGISTER", "SUBSCRIBE", "PUBLISH"][c.pick(5)];
    let mut headers: Vec<String> = Vec::new();
    // Vias: on one line with commas, or on several lines.
    let n_via = 1 + c.pick(3);
    let mut k = 0;
    let mut remaining = n_via;
    while remaining > 0 {
        let on_line = 1 + c.pick(remaining);
        let vals: Vec<String> = (0..on_line)
            .map(|_| {
                k += 1;
                via_value(c, k)
            })
            .collect();
        let sep = format!("{},{}", lws(c), lws(c));
        headers.push(format!(
            "{}{}:{}{}",
            name(c, "Via", Some("v")),
            lws_name(c),
            lws(c),
            vals.join(&sep)
        ));
        remaining -= on_line;
    }
    let from_tag = TOKENS[c.pick(6)];
    let from = name_addr(c, "alice", Some(from_tag));
    let to_tag = if c.flip() { Some("tt") } else { None };
    let to = name_addr(c, "bob", to_tag);
    let mut rest = vec![
        format!(
            "{}{}:{}{}",
            name(c, "From", Some("f")),
            lws_name(c),
            lws(c),
            from
        ),
        format!(
            "{}{}:{}{}",
            name(c, "To", Some("t")),
            lws_name(c),
            lws(c),
            to
        ),
        format!(
            "{}{}:{}call{}@h",
            name(c, "Call-ID", Some("i")),
            lws_name(c),
            lws(c),
            c.pick(1000)
        ),
        format!(
            "{}{}:{}{}{}{}",
            name(c, "CSeq", None),
            lws_name(c),
            lws(c),
            c.pick(100000),
            [" ", "\r\n ", "  "][c.pick(3)],
            method
        ),
        format!(
            "{}{}:{}{}",
            name(c, "Max-Forwards", None),
            lws_name(c),
            lws(c),
            ["70", "0068", "1"][c.pick(3)]
        ),
        format!(
            "{}{}:{}{}",
            name(c, "Content-Length", Some("l")),
            lws_name(c),
            lws(c),
            body.len()
        ),
    ];
    for n in 0..c.pick(4) {
        rest.push(format!(
            "X-Ext-{n}{}:{}some{}value{}",
            lws_name(c),
            lws(c),
            lws_inner(c),
            lws_inner(c)
        ));
    }
    if c.flip() {
        rest.push(format!(
            "{}:{}hello{}world",
            name(c, "Subject", Some("s")),
            lws(c),
            lws_inner(c)
        ));
    }
    // Random order, but keep the Vias' relative order.
    while !rest.is_empty() {
        let h = rest.remove(c.pick(rest.len()));
        let at = c.pick(headers.len() + 1);
        headers.insert(at, h);
    }
    let ruri = format!("sip:bob@{}", HOSTS[c.pick(HOSTS.len())]);
    let mut m = format!("{method} {ruri} SIP/2.0\r\n").into_bytes();
    for h in headers {
        m.extend_from_slice(h.as_bytes());
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(b"\r\n");
    m.extend_from_slice(body);
    m
}

/// Whitespace between a header name and the colon (no folds there).
fn lws_name(c: &mut Choices<'_>) -> &'static str {
    ["", "", " ", "\t", "  "][c.pick(5)]
}

/// Whitespace inside a free-text value: at least one space or a fold.
fn lws_inner(c: &mut Choices<'_>) -> &'static str {
    [" ", "  ", "\r\n ", "\t"][c.pick(4)]
}

fn src() -> SocketAddr {
    "198.51.100.9:41000".parse().unwrap()
}

fn compare(m: &[u8]) -> Result<(), TestCaseError> {
    let mut p = Parsed::new();
    prop_assert!(
        p.scan_datagram(m).is_ok(),
        "scan failed: {}",
        String::from_utf8_lossy(m)
    );
    let v = p.view(m);
    let r = reference::parse(m).expect("reference parses");
    prop_assert!(v.is_request() && r.is_request);
    prop_assert_eq!(v.method_bytes(), &r.method[..]);
    prop_assert_eq!(v.request_uri(), &r.request_uri[..]);
    prop_assert_eq!(v.body(), &r.body[..]);
    let fast: Vec<_> = v.headers().collect();
    prop_assert_eq!(fast.len(), r.headers.len());
    for (f, rh) in fast.iter().zip(&r.headers) {
        prop_assert_eq!(f.name, rh.name);
        prop_assert_eq!(f.raw_name, &rh.raw_name[..]);
        prop_assert_eq!(reference::normalize(f.value), rh.value.clone());
    }
    for h in HeaderName::ALL {
        prop_assert_eq!(v.header_count(h), r.values(h).len(), "{:?}", h);
        let first = v.header(h).map(reference::normalize);
        prop_assert_eq!(first, r.values(h).first().map(|x| x.to_vec()));
    }
    // Via values: same count, same sent-by, port and branch.
    let fast_vias: Vec<_> = via::values(&v)
        .map(|x| via::parse(v.slice(x.span)))
        .collect();
    let ref_vias = r.via_elements();
    prop_assert_eq!(fast_vias.len(), ref_vias.len());
    for (f, rv) in fast_vias.iter().zip(&ref_vias) {
        let f = f
            .as_ref()
            .map_err(|e| TestCaseError::fail(format!("via: {e}")))?;
        let (host, port) = RefMessage::via_sent_by(rv);
        prop_assert_eq!(f.host, &host[..]);
        prop_assert_eq!(f.port, port);
        prop_assert_eq!(
            f.branch().map(<[u8]>::to_vec),
            RefMessage::param(rv, "branch")
        );
    }
    // From/To tags and CSeq.
    for h in [HeaderName::From, HeaderName::To] {
        let fast_tag = v
            .header(h)
            .and_then(|x| nameaddr::parse(x).ok())
            .and_then(|n| n.tag())
            .map(<[u8]>::to_vec);
        let ref_tag = RefMessage::param(&reference::squeeze(r.values(h)[0]), "tag");
        prop_assert_eq!(fast_tag, ref_tag);
    }
    let cs = values::cseq(v.header(HeaderName::CSeq).unwrap()).unwrap();
    let ref_cs = String::from_utf8_lossy(r.values(HeaderName::CSeq)[0]).to_string();
    let mut w = ref_cs.split_whitespace();
    let ref_seq: Option<u64> = w.next().and_then(|n| n.parse().ok());
    prop_assert_eq!(Some(u64::from(cs.seq)), ref_seq);
    prop_assert_eq!(Some(std::str::from_utf8(cs.method).unwrap()), w.next());
    // Generated messages are valid requests.
    prop_assert_eq!(check_request(&v, &Limits::default()), Ok(()));
    // The stream framer agrees on the length, at every split point it waits.
    let mut s = Parsed::new();
    prop_assert_eq!(
        s.scan_stream(m, 65536),
        Ok(Framing::Message { len: m.len() })
    );
    for cut in [m.len() / 3, m.len() / 2, m.len() - 1] {
        prop_assert_eq!(s.scan_stream(&m[..cut], 65536), Ok(Framing::Incomplete));
    }
    Ok(())
}

/// Runs everything the fast path would run on arbitrary bytes.
fn exercise(m: &[u8]) {
    let mut p = Parsed::new();
    let mut out = Vec::with_capacity(65536);
    let _ = p.scan_stream(m, 65536);
    let _ = p.view(m).headers().count();
    let _ = p.scan_datagram(m);
    let v = p.view(m);
    let _ = (v.method(), v.request_uri(), v.body(), v.status(), v.len());
    for vv in via::values(&v) {
        let _ = via::parse(v.slice(vv.span));
    }
    let _ = check_request(&v, &Limits::default());
    let _ = check_response(&v);
    let mut tag = [0u8; 16];
    let tag = derive_to_tag(&v, 7, &mut tag).to_vec();
    write_response(
        &v,
        src(),
        400,
        "Bad Request",
        &tag,
        &[],
        ExtraHeader::Allow,
        &mut out,
    );
    let spec = RelaySpec {
        own_transport: Transport::Udp,
        own_host: "10.0.0.1",
        own_port: 5060,
        branch_secret: 3,
        via_params: b"",
        request_uri: b"sip:x@10.0.0.2",
        route: None,
        src: src(),
        strip: &[HeaderName::PAssertedIdentity],
    };
    let _ = write_relay_request(&v, &spec, &mut out);
    let own = OwnVia {
        host: "10.0.0.1",
        port: 5060,
        branch_prefix: b"z9hG4bK",
    };
    let _ = write_relay_response(&v, &own, &mut out);
}

fn mutate(m: &mut Vec<u8>, ops: &[(u16, u16, u8)]) {
    const NASTY: &[u8] = b"\r\n:;,=\"<>\\ \t/@[]%0";
    for &(at, len, b) in ops {
        if m.is_empty() {
            m.push(b);
            continue;
        }
        let at = usize::from(at) % m.len();
        match b % 5 {
            0 => m[at] = b,
            1 => m[at] = NASTY[usize::from(b) % NASTY.len()],
            2 => m.insert(at, NASTY[usize::from(b) % NASTY.len()]),
            3 => {
                let end = (at + usize::from(len) % 16).min(m.len());
                m.drain(at..end);
            }
            _ => m.truncate(at),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn fast_scanner_agrees_with_reference(
        choices in prop::collection::vec(any::<u32>(), 64),
        body in prop::collection::vec(any::<u8>(), 0..120),
    ) {
        let m = build(&choices, &body);
        compare(&m)?;
    }

    #[test]
    fn mutations_never_panic(
        choices in prop::collection::vec(any::<u32>(), 64),
        ops in prop::collection::vec((any::<u16>(), any::<u16>(), any::<u8>()), 1..8),
    ) {
        let mut m = build(&choices, b"body");
        mutate(&mut m, &ops);
        exercise(&m);
    }

    #[test]
    fn arbitrary_bytes_never_panic(m in prop::collection::vec(any::<u8>(), 0..600)) {
        exercise(&m);
    }
}
