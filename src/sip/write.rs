//! Writers: stateless responses (RFC 3261 §8.2.6, §18.2.1, RFC 3581), stateless relay of
//! requests (§16.11) and of responses (§16.7 step 3: pop our Via). Everything is written into a
//! caller-owned `Vec<u8>` that is cleared and reused; with the caller's 64 KiB capacity no
//! write below that size reallocates (only `extend_from_slice`, itoa and `write!` of IPs into
//! the vector, which format on the stack).
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};

use super::Transport;
use super::error::SyntaxError;
use super::hdr::HeaderName;
use super::nameaddr;
use super::params::{Params, RPort};
use super::scan::{Span, View};
use super::uri;
use super::validate::{ALLOW, ExtraHeader, Reject};
use super::values;
use super::via::{self, MAGIC_COOKIE, TopVia};

const CRLF: &[u8] = b"\r\n";

#[inline]
fn put_u64(out: &mut Vec<u8>, n: u64) {
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b.format(n).as_bytes());
}

#[inline]
fn put_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip.to_canonical() {
        // Dotted quad by hand: `write!` through `fmt` costs more than the rest of a Via.
        IpAddr::V4(a) => {
            let [b0, b1, b2, b3] = a.octets();
            let mut n = itoa::Buffer::new();
            out.extend_from_slice(n.format(b0).as_bytes());
            for b in [b1, b2, b3] {
                out.push(b'.');
                out.extend_from_slice(n.format(b).as_bytes());
            }
        }
        // Writing into a Vec cannot fail; Ipv6Addr formats (RFC 5952) on the stack.
        ip @ IpAddr::V6(_) => {
            let _ = write!(out, "{ip}");
        }
    }
}

fn put_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(CRLF);
}

/// A small keyed hash (a multiply-rotate mix over the fields' 8-byte words and lengths, then a
/// 64-bit finaliser). Not a MAC: it only has to make branches and tags unique and unguessable
/// enough without state.
struct KeyedHash(u64);

impl KeyedHash {
    fn new(secret: u64) -> KeyedHash {
        KeyedHash(0xcbf2_9ce4_8422_2325 ^ secret.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    /// Mixes in one field, eight bytes at a time (the last word zero-padded), then its length,
    /// so field boundaries count (`("ab", "c")` and `("a", "bc")` differ) and so do trailing
    /// zeros.
    fn field(&mut self, bytes: &[u8]) -> &mut Self {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            self.mix(u64::from_le_bytes(b));
        }
        let rest = words.remainder();
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        self.mix(u64::from_le_bytes(last));
        // The length last: with it the words mixed in spell the field list one way only.
        self.mix(bytes.len() as u64);
        self
    }

    #[inline]
    fn mix(&mut self, word: u64) {
        self.0 = (self.0 ^ word)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }

    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn hex16(v: u64, out: &mut [u8; 16]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, o) in out.iter_mut().enumerate() {
        *o = HEX[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
}

/// A deterministic To-tag from Call-ID, From tag, CSeq number and top branch, so a
/// retransmission gets the same tag with no state (§8.2.6.2, §17.2.x absorbed statelessly).
/// From and the top Via come from the per-message memo that validation filled.
pub fn derive_to_tag<'o>(view: &View<'_>, secret: u64, out: &'o mut [u8; 16]) -> &'o [u8] {
    let from_tag = nameaddr::header_tag(view, HeaderName::From)
        .flatten()
        .unwrap_or(b"");
    let seq = view
        .header(HeaderName::CSeq)
        .and_then(|c| values::cseq(c).ok())
        .map_or(0, |c| c.seq);
    let branch = via::top_branch(view).unwrap_or(b"");
    let h = KeyedHash::new(secret)
        .field(view.header(HeaderName::CallId).unwrap_or(b""))
        .field(from_tag)
        .field(&seq.to_le_bytes())
        .field(branch)
        .finish();
    hex16(h, out);
    &out[..]
}

/// Where a response goes (§18.2.2, RFC 3581 §4): over TCP, back on the arriving connection
/// (returned as `src`; the caller owns the connection); over UDP, to the source IP, at the
/// source port when the Via has `rport`, else at the sent-by port (default 5060). Takes the
/// top Via's `rport` and sent-by port, as [`via::top_reply_facts`] gives them from the memo.
pub fn response_dest(
    rport: RPort,
    port: Option<u16>,
    src: SocketAddr,
    transport: Transport,
) -> SocketAddr {
    match transport {
        Transport::Tcp => src,
        Transport::Udp => match rport {
            RPort::Absent => SocketAddr::new(src.ip(), port.unwrap_or(via::DEFAULT_PORT)),
            RPort::Empty | RPort::Port(_) => src,
        },
    }
}

/// Writes the top Via value with `received` / `rport` filled in (§18.2.1, RFC 3581 §4):
/// `received` when the sent-by host is not the source IP, and always when `rport` is bare;
/// a bare `rport` gets the source port. A value we cannot parse is copied as is.
fn put_top_via(
    out: &mut Vec<u8>,
    raw: &[u8],
    top: Result<TopVia<'_>, SyntaxError>,
    src: SocketAddr,
) {
    let Ok(t) = top else {
        out.extend_from_slice(raw);
        return;
    };
    let v = t.via;
    let src_ip = src.ip().to_canonical();
    let rport_bare = t.rport == RPort::Empty;
    let add_received = rport_bare || v.host_kind.ip() != Some(src_ip);
    if !add_received {
        out.extend_from_slice(v.raw);
        return;
    }
    out.extend_from_slice(v.raw.get(..v.params_off).unwrap_or(v.raw));
    put_params_without(out, v.params, t.plain, t.has_received, rport_bare);
    out.extend_from_slice(b";received=");
    put_ip(out, src_ip);
    if rport_bare {
        out.extend_from_slice(b";rport=");
        put_u64(out, u64::from(src.port()));
    }
}

/// Writes the parameter list `params` without its `received` parameters (`has_received` says
/// whether it has any) and, when `drop_rport`, without its `rport` ones, squeezing out any LWS.
/// `plain_shape`: the list is known to hold no LWS, quotes or line breaks (see
/// [`TopVia::plain`]); otherwise it is looked at here.
fn put_params_without(
    out: &mut Vec<u8>,
    params: Params<'_>,
    plain_shape: bool,
    has_received: bool,
    drop_rport: bool,
) {
    let raw = params.as_bytes();
    let plain = plain_shape
        || (memchr::memchr3(b' ', b'\t', b'"', raw).is_none()
            && memchr::memchr2(b'\r', b'\n', raw).is_none());
    if plain && !has_received && !drop_rport {
        // Nothing to drop and no LWS to squeeze: the list is already what the loops write.
        out.extend_from_slice(raw);
    } else if plain {
        // No LWS and no quoted value: the list was validated, so every `;` starts a parameter
        // written as `name[=value]`, and the parameters are the segments between them.
        let mut rest = raw;
        while !rest.is_empty() {
            let end = memchr::memchr(b';', &rest[1..]).map_or(rest.len(), |e| e + 1);
            let (seg, next) = rest.split_at(end);
            rest = next;
            let body = &seg[1..];
            let name = body.split(|&b| b == b'=').next().unwrap_or(body);
            if !body.is_empty() && !dropped(name, drop_rport) {
                out.extend_from_slice(seg);
            }
        }
    } else {
        for p in params.iter() {
            if dropped(p.name, drop_rport) {
                continue;
            }
            out.push(b';');
            out.extend_from_slice(p.name);
            if let Some(val) = p.value {
                out.push(b'=');
                out.extend_from_slice(val);
            }
        }
    }
}

/// A top Via parameter we replace: `received` always, `rport` when we fill it in.
fn dropped(name: &[u8], drop_rport: bool) -> bool {
    name.eq_ignore_ascii_case(b"received") || (drop_rport && name.eq_ignore_ascii_case(b"rport"))
}

/// Writes every Via line, top value rewritten, the rest verbatim (values only, canonical name).
fn put_vias(out: &mut Vec<u8>, view: &View<'_>, src: SocketAddr) {
    let Some((top, parsed)) = via::top_facts(view) else {
        return;
    };
    let slots = view.slots();
    for (i, s) in slots.iter().enumerate().skip(top.slot) {
        if s.name != HeaderName::Via {
            continue;
        }
        out.extend_from_slice(b"Via: ");
        if i == top.slot {
            put_top_via(out, view.slice(top.span), parsed, src);
            out.extend_from_slice(view.slice(Span {
                start: top.span.end,
                end: s.value.end,
            }));
        } else {
            out.extend_from_slice(view.slice(s.value));
        }
        out.extend_from_slice(CRLF);
    }
}

/// Writes a stateless response to the request in `view` (§8.2.6): status line, every Via (top
/// one with received/rport), From, To (with `;tag=<to_tag>` added when To has none and the code
/// is not 100), Call-ID, CSeq, `extra` headers, the header a [`Reject`] asked for, and
/// `Content-Length: 0`.
#[allow(clippy::too_many_arguments)]
pub fn write_response(
    view: &View<'_>,
    src: SocketAddr,
    code: u16,
    reason: &str,
    to_tag: &[u8],
    extra: &[(&str, &[u8])],
    reject_extra: ExtraHeader,
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(b"SIP/2.0 ");
    put_u64(out, u64::from(code));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(CRLF);
    put_vias(out, view, src);
    if let Some(f) = view.header(HeaderName::From) {
        put_header(out, "From", f);
    }
    if let Some(t) = view.header(HeaderName::To) {
        out.extend_from_slice(b"To: ");
        out.extend_from_slice(t);
        let has_tag = nameaddr::header_tag(view, HeaderName::To).map(|t| t.is_some());
        if has_tag == Some(false) && code != 100 && !to_tag.is_empty() {
            out.extend_from_slice(b";tag=");
            out.extend_from_slice(to_tag);
        }
        out.extend_from_slice(CRLF);
    }
    if let Some(c) = view.header(HeaderName::CallId) {
        put_header(out, "Call-ID", c);
    }
    if let Some(c) = view.header(HeaderName::CSeq) {
        put_header(out, "CSeq", c);
    }
    for (name, value) in extra {
        put_header(out, name, value);
    }
    match reject_extra {
        ExtraHeader::None => {}
        ExtraHeader::Allow => put_header(out, "Allow", ALLOW.as_bytes()),
        ExtraHeader::Accept(types) => put_header(out, "Accept", types.as_bytes()),
        ExtraHeader::Unsupported(_) => {
            for r in view.values(HeaderName::Require) {
                put_header(out, "Unsupported", r);
            }
        }
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
}

/// How to relay a request statelessly (§16.11).
#[derive(Clone, Copy, Debug)]
pub struct RelaySpec<'a> {
    pub own_transport: Transport,
    pub own_host: &'a str,
    pub own_port: u16,
    pub branch_secret: u64,
    /// Extra parameters appended to our Via, e.g. `b";cid=3.17"`.
    pub via_params: &'a [u8],
    pub request_uri: &'a [u8],
    /// A Route value to put first (outbound proxy), e.g. `b"<sip:proxy.example.com;lr>"`.
    pub route: Option<&'a [u8]>,
    pub src: SocketAddr,
    /// Headers to remove (e.g. P-Asserted-Identity from an untrusted peer, D7).
    pub strip: &'a [HeaderName],
}

/// The branch for our Via (§16.11): a keyed hash of the incoming branch when it carries the
/// magic cookie (so a retransmission maps to the same branch), else of the fields that
/// identify the transaction in RFC 2543 terms.
fn relay_branch(view: &View<'_>, secret: u64) -> u64 {
    if let Some(b) = via::top_branch(view).filter(|b| b.starts_with(MAGIC_COOKIE)) {
        return KeyedHash::new(secret).field(b).finish();
    }
    let top = via::top_facts(view).and_then(|(_, v)| v.ok());
    let na = |h| nameaddr::header_tag(view, h).flatten().unwrap_or(b"");
    let seq = view
        .header(HeaderName::CSeq)
        .and_then(|c| values::cseq(c).ok())
        .map_or(0, |c| c.seq);
    KeyedHash::new(secret)
        .field(view.header(HeaderName::CallId).unwrap_or(b""))
        .field(&seq.to_le_bytes())
        .field(na(HeaderName::From))
        .field(na(HeaderName::To))
        .field(top.map_or(&b""[..], |v| v.via.raw))
        .field(view.request_uri())
        .finish()
}

/// Writes the request in `view` relayed per `spec` (§16.6, §16.11): new Request-URI, our Via
/// first, the incoming Vias (top rewritten with received/rport), Max-Forwards decremented
/// (483 at 0, §16.3 step 3; 70 when absent, §16.6 step 3), the optional Route, every other
/// header verbatim except `strip` and Content-Length, our Content-Length, the body.
pub fn write_relay_request(
    view: &View<'_>,
    spec: &RelaySpec<'_>,
    out: &mut Vec<u8>,
) -> Result<(), Reject> {
    out.clear();
    let mf = match view.header(HeaderName::MaxForwards) {
        None => 70,
        Some(x) => values::max_forwards(x)
            .map_err(|_| Reject::new(400, "Bad Request - Malformed Max-Forwards"))?,
    };
    if mf == 0 {
        return Err(Reject::new(483, "Too Many Hops"));
    }
    out.extend_from_slice(view.method_bytes());
    out.push(b' ');
    out.extend_from_slice(spec.request_uri);
    out.extend_from_slice(b" SIP/2.0\r\nVia: SIP/2.0/");
    out.extend_from_slice(spec.own_transport.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(spec.own_host.as_bytes());
    out.push(b':');
    put_u64(out, u64::from(spec.own_port));
    out.extend_from_slice(b";branch=");
    out.extend_from_slice(MAGIC_COOKIE);
    let mut hex = [0u8; 16];
    hex16(relay_branch(view, spec.branch_secret), &mut hex);
    out.extend_from_slice(&hex);
    out.extend_from_slice(b";rport");
    out.extend_from_slice(spec.via_params);
    out.extend_from_slice(CRLF);
    put_vias(out, view, spec.src);
    out.extend_from_slice(b"Max-Forwards: ");
    put_u64(out, u64::from(mf - 1));
    out.extend_from_slice(CRLF);
    if let Some(r) = spec.route {
        put_header(out, "Route", r);
    }
    for s in view.slots() {
        match s.name {
            HeaderName::Via | HeaderName::MaxForwards | HeaderName::ContentLength => continue,
            n if n != HeaderName::Other && spec.strip.contains(&n) => continue,
            _ => out.extend_from_slice(view.slice(s.line)),
        }
    }
    let body = view.body();
    out.extend_from_slice(b"Content-Length: ");
    put_u64(out, body.len() as u64);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
    Ok(())
}

/// Identifies our own Via in responses.
#[derive(Clone, Copy, Debug)]
pub struct OwnVia<'a> {
    pub host: &'a str,
    pub port: u16,
    /// Our branches start with this (e.g. `b"z9hG4bK"` plus a per-instance marker).
    pub branch_prefix: &'a [u8],
}

/// Where a relayed response goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHop<'a> {
    pub addr: SocketAddr,
    pub transport: Transport,
    /// Parameters of the Via we popped (e.g. `cid`, to find a TCP connection).
    pub popped: Params<'a>,
}

/// Why a response is not relayed (it is dropped and counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RelayDrop {
    #[error("no Via")]
    NoVia,
    #[error("unparsable Via")]
    BadVia,
    #[error("top Via is not ours")]
    NotOurs,
    #[error("no Via after ours")]
    NoNextVia,
    #[error("next hop is not an IP literal")]
    NotIpLiteral,
    #[error("next hop is a broadcast, multicast or unspecified address")]
    Broadcast,
    #[error("next hop transport not served")]
    UnsupportedTransport,
}

fn parse_ip(s: &[u8]) -> Option<IpAddr> {
    if let Some(a) = uri::dotted_quad(s) {
        return Some(IpAddr::V4(a));
    }
    let s = s
        .strip_prefix(b"[")
        .and_then(|x| x.strip_suffix(b"]"))
        .unwrap_or(s);
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// Pops our top Via from a response and says where it goes (§16.7 step 3, §18.2.2 applied to
/// the next Via: its `received` else its host as an IP literal; its `rport` value else its
/// port else 5060). When the top value shares a line (`Via: a, b`), only `a` is removed.
/// A response toward a broadcast address is refused (RFC 4475 bcast).
pub fn write_relay_response<'a>(
    view: &View<'a>,
    own: &OwnVia<'_>,
    out: &mut Vec<u8>,
) -> Result<NextHop<'a>, RelayDrop> {
    out.clear();
    // The top Via was parsed once, with its branch, when the response was validated.
    let (top, tv) = via::top_facts(view).ok_or(RelayDrop::NoVia)?;
    let tv = tv.map_err(|_| RelayDrop::BadVia)?;
    let ours = tv.branch.is_some_and(|b| b.starts_with(own.branch_prefix))
        && tv.via.host.eq_ignore_ascii_case(own.host.as_bytes())
        && tv.via.port_or_default() == own.port;
    if !ours {
        return Err(RelayDrop::NotOurs);
    }
    let next = via::values_after(view, &top)
        .next()
        .ok_or(RelayDrop::NoNextVia)?;
    let (nv, hop) = via::parse_hop(view.slice(next.span)).map_err(|_| RelayDrop::BadVia)?;
    let ip = match hop.received.flatten() {
        Some(r) => parse_ip(r).ok_or(RelayDrop::NotIpLiteral)?,
        None => nv.host_kind.ip().ok_or(RelayDrop::NotIpLiteral)?,
    };
    let ip = ip.to_canonical();
    let refused = match ip {
        IpAddr::V4(a) => a.is_broadcast() || a.is_multicast() || a.is_unspecified(),
        IpAddr::V6(a) => a.is_multicast() || a.is_unspecified(),
    };
    if refused {
        return Err(RelayDrop::Broadcast);
    }
    let port = match hop.rport {
        RPort::Port(p) => p,
        _ => nv.port_or_default(),
    };
    let transport = if nv.transport.eq_ignore_ascii_case(b"UDP") {
        Transport::Udp
    } else if nv.transport.eq_ignore_ascii_case(b"TCP") {
        Transport::Tcp
    } else {
        return Err(RelayDrop::UnsupportedTransport);
    };
    let slots = view.slots();
    let head_start = view.msg_span().start as usize;
    let first_line = slots
        .first()
        .map_or(view.body_span().start, |s| s.line.start);
    out.extend_from_slice(view.slice(Span::new(head_start, first_line as usize)));
    for (i, s) in slots.iter().enumerate() {
        if i != top.slot {
            out.extend_from_slice(view.slice(s.line));
            continue;
        }
        if next.slot == i {
            // `Via: ours, next, ...`: keep the line without our value.
            out.extend_from_slice(b"Via: ");
            out.extend_from_slice(view.slice(Span {
                start: next.span.start,
                end: s.value.end,
            }));
            out.extend_from_slice(CRLF);
        }
    }
    let rest = slots.last().map_or(first_line, |s| s.line.end);
    out.extend_from_slice(view.slice(Span {
        start: rest,
        end: view.msg_span().end,
    }));
    Ok(NextHop {
        addr: SocketAddr::new(ip, port),
        transport,
        popped: tv.via.params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::scan::Parsed;
    use crate::sip::validate::{Limits, check_request};

    const REQ: &[u8] = b"MESSAGE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP client.example.com:5070;branch=z9hG4bK776;rport, SIP/2.0/TCP p.example.com;branch=z9hG4bKp\r\n\
Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK9\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: c1@x\r\n\
CSeq: 7 MESSAGE\r\n\
P-Asserted-Identity: <sip:alice@example.com>\r\n\
Require: foo, bar\r\n\
Content-Type: text/plain\r\n\
Content-Length: 5\r\n\
\r\n\
hello";

    fn src() -> SocketAddr {
        "198.51.100.7:40000".parse().unwrap()
    }

    #[test]
    fn response_copies_and_rewrites() {
        let mut p = Parsed::new();
        p.scan_datagram(REQ).unwrap();
        let v = p.view(REQ);
        let r = check_request(&v, &Limits::default()).unwrap_err();
        let mut out = Vec::with_capacity(65536);
        let mut tag = [0u8; 16];
        let tag = derive_to_tag(&v, 42, &mut tag);
        write_response(
            &v,
            src(),
            r.code,
            r.reason,
            tag,
            &[("Server", b"x")],
            r.extra,
            &mut out,
        );
        let s = String::from_utf8(out.clone()).unwrap();
        let tag_s = std::str::from_utf8(tag).unwrap();
        let expect = format!(
            "SIP/2.0 420 Bad Extension\r\n\
Via: SIP/2.0/UDP client.example.com:5070;branch=z9hG4bK776;received=198.51.100.7;rport=40000, SIP/2.0/TCP p.example.com;branch=z9hG4bKp\r\n\
Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK9\r\n\
From: <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>;tag={tag_s}\r\n\
Call-ID: c1@x\r\n\
CSeq: 7 MESSAGE\r\n\
Server: x\r\n\
Unsupported: foo, bar\r\n\
Content-Length: 0\r\n\r\n"
        );
        assert_eq!(s, expect);
        assert_eq!(out.capacity(), 65536);
    }

    /// Distinct field lists hash apart: boundaries, trailing zeros, lengths past a word, and
    /// a few thousand lists of short text fields, without a collision.
    #[test]
    fn keyed_hash_tells_field_lists_apart() {
        let h = |fields: &[&[u8]]| {
            let mut k = KeyedHash::new(7);
            for f in fields {
                k.field(f);
            }
            k.finish()
        };
        assert_ne!(h(&[b"ab", b"c"]), h(&[b"a", b"bc"]));
        assert_ne!(h(&[b"a"]), h(&[b"a\0"]));
        assert_ne!(h(&[b""]), h(&[b"\0"]));
        assert_ne!(h(&[b"", b""]), h(&[b""]));
        assert_ne!(h(&[b"12345678"]), h(&[b"12345678\0"]));
        assert_ne!(h(&[b"abcdefg\x07"]), h(&[b"abcdefg", b""]));
        assert_ne!(h(&[b"z9hG4bK-74bf9-1-2"]), h(&[b"z9hG4bK-74bf9-2-1"]));
        let mut seen = std::collections::HashSet::new();
        for a in 0..60u32 {
            for b in 0..60u32 {
                let (x, y) = (format!("call-{a}@host"), format!("z9hG4bK{b:x}"));
                assert!(seen.insert(h(&[x.as_bytes(), y.as_bytes()])), "{x} {y}");
            }
        }
        // The key counts.
        assert_ne!(
            KeyedHash::new(1).field(b"x").finish(),
            KeyedHash::new(2).field(b"x").finish()
        );
    }

    #[test]
    fn to_tag_is_deterministic() {
        let mut p = Parsed::new();
        p.scan_datagram(REQ).unwrap();
        let mut a = [0u8; 16];
        let mut b = [0u8; 16];
        assert_eq!(
            derive_to_tag(&p.view(REQ), 1, &mut a),
            derive_to_tag(&p.view(REQ), 1, &mut b)
        );
        let a1 = a;
        derive_to_tag(&p.view(REQ), 2, &mut b);
        assert_ne!(a1, b);
    }

    /// The plain-list shortcuts write what the parameter walk writes: the one taken when the
    /// list has no LWS or quotes, and the one taken without looking when the top Via was read
    /// by the plain-shape reader (only lists of that shape get there: checked).
    #[test]
    fn params_without_matches_the_walk() {
        let walk = |raw: &[u8], drop_rport: bool| {
            let mut out = Vec::new();
            for p in crate::sip::params::parse(raw).unwrap().0.iter() {
                if !dropped(p.name, drop_rport) {
                    out.push(b';');
                    out.extend_from_slice(p.name);
                    if let Some(v) = p.value {
                        out.push(b'=');
                        out.extend_from_slice(v);
                    }
                }
            }
            out
        };
        for raw in [
            &b";branch=z9hG4bK1;rport"[..],
            b";rport;branch=z9hG4bK1",
            b";RPort;branch=z9hG4bK1;rport=7;received=1.2.3.4;x",
            b";branch=z9hG4bK1;Received;rport",
            b";branch=z9hG4bK1;maddr=[::1];ttl=1",
            b";branch=z9hG4bK1 ;rport",
            b";branch=z9hG4bK1\r;rport",
            b";branch=z9hG4bK1\r\n\t;rport",
            b";branch=\"a;rport\";rport",
            b"",
        ] {
            let params = crate::sip::params::parse(raw).unwrap().0;
            let mut msg = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h".to_vec();
            msg.extend_from_slice(raw);
            msg.extend_from_slice(b"\r\n\r\n");
            let mut p = Parsed::new();
            p.scan_datagram(&msg).unwrap();
            let top = via::top_facts(&p.view(&msg)).unwrap().1.unwrap();
            let simple = !raw.iter().any(|&b| b" \t\r\n\"".contains(&b));
            assert_eq!(top.plain, simple, "{}", String::from_utf8_lossy(raw));
            for shape in [false, top.plain] {
                for (has_received, drop_rport) in
                    [(false, false), (false, true), (true, false), (true, true)]
                {
                    let mut out = Vec::new();
                    put_params_without(&mut out, params, shape, has_received, drop_rport);
                    let want = walk(raw, drop_rport);
                    let label = String::from_utf8_lossy(raw);
                    if !has_received
                        && !drop_rport
                        && !raw.iter().any(|&b| crate::sip::lex::is_ws(b))
                    {
                        assert_eq!(out, raw, "{label}");
                    } else {
                        assert_eq!(out, want, "{label} {has_received} {drop_rport}");
                    }
                }
            }
        }
    }

    #[test]
    fn response_destination() {
        let dest = |value: &'static [u8], transport| {
            let (via, hop) = via::parse_hop(value).unwrap();
            response_dest(hop.rport, via.port, src(), transport)
        };
        assert_eq!(dest(b"SIP/2.0/UDP h:5070;rport", Transport::Udp), src());
        assert_eq!(
            dest(b"SIP/2.0/UDP h:5070", Transport::Udp),
            "198.51.100.7:5070".parse().unwrap()
        );
        assert_eq!(dest(b"SIP/2.0/UDP h", Transport::Udp).port(), 5060);
        assert_eq!(dest(b"SIP/2.0/UDP h", Transport::Tcp), src());
    }

    fn spec<'a>(strip: &'a [HeaderName]) -> RelaySpec<'a> {
        RelaySpec {
            own_transport: Transport::Udp,
            own_host: "10.0.0.1",
            own_port: 5060,
            branch_secret: 9,
            via_params: b";cid=3.17",
            request_uri: b"sip:bob@192.0.2.50:5062",
            route: Some(b"<sip:proxy.example.com;lr>"),
            src: src(),
            strip,
        }
    }

    #[test]
    fn relay_request_and_response_round_trip() {
        let mut p = Parsed::new();
        p.scan_datagram(REQ).unwrap();
        let v = p.view(REQ);
        let mut out = Vec::with_capacity(65536);
        write_relay_request(&v, &spec(&[HeaderName::PAssertedIdentity]), &mut out).unwrap();
        let s = String::from_utf8(out.clone()).unwrap();
        assert!(s.starts_with("MESSAGE sip:bob@192.0.2.50:5062 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK"), "{s}");
        assert!(s.contains(";rport;cid=3.17\r\nVia: SIP/2.0/UDP client.example.com:5070;branch=z9hG4bK776;received=198.51.100.7;rport=40000, SIP/2.0/TCP"));
        assert!(s.contains("Max-Forwards: 69\r\nRoute: <sip:proxy.example.com;lr>\r\nFrom:"));
        assert!(!s.contains("P-Asserted-Identity"));
        assert!(s.ends_with("Content-Length: 5\r\n\r\nhello"));
        // Same branch on a retransmission.
        let mut again = Vec::with_capacity(65536);
        write_relay_request(&v, &spec(&[]), &mut again).unwrap();
        assert_eq!(out[..120], again[..120]);

        // The relayed request, answered by the next hop, comes back through us.
        let mut q = Parsed::new();
        q.scan_datagram(&out).unwrap();
        let rv = q.view(&out);
        assert!(check_request(&rv, &Limits::default()).is_err()); // Require: still there
        let mut resp = Vec::with_capacity(65536);
        write_response(
            &rv,
            "192.0.2.50:5062".parse().unwrap(),
            200,
            "OK",
            b"t",
            &[],
            ExtraHeader::None,
            &mut resp,
        );
        let mut r = Parsed::new();
        r.scan_datagram(&resp).unwrap();
        let own = OwnVia {
            host: "10.0.0.1",
            port: 5060,
            branch_prefix: b"z9hG4bK",
        };
        let mut fwd = Vec::with_capacity(65536);
        let hop = write_relay_response(&r.view(&resp), &own, &mut fwd).unwrap();
        assert_eq!(hop.addr, src());
        assert_eq!(hop.transport, Transport::Udp);
        assert_eq!(hop.popped.value("cid"), Some(&b"3.17"[..]));
        let f = String::from_utf8(fwd).unwrap();
        assert!(
            f.starts_with("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP client.example.com:5070;"),
            "{f}"
        );
        assert!(!f.contains("10.0.0.1"));
    }

    /// Relays response `m` as the proxy at `host`:5060 whose branches start `z9hG4bKx`.
    fn relay_as(m: &[u8], host: &str) -> Result<(SocketAddr, Transport, Vec<u8>), RelayDrop> {
        let mut p = Parsed::new();
        p.scan_datagram(m).unwrap();
        let own = OwnVia {
            host,
            port: 5060,
            branch_prefix: b"z9hG4bKx",
        };
        let mut out = Vec::new();
        let hop = write_relay_response(&p.view(m), &own, &mut out)?;
        Ok((hop.addr, hop.transport, out))
    }

    #[test]
    fn relay_response_removes_shared_value_and_drops_strangers() {
        let m = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx, SIP/2.0/TCP 192.0.2.4:5070;branch=z9hG4bKy\r\nCall-ID: c\r\nContent-Length: 0\r\n\r\n";
        let (addr, transport, out) = relay_as(m, "10.0.0.1").unwrap();
        assert_eq!(addr, "192.0.2.4:5070".parse().unwrap());
        assert_eq!(transport, Transport::Tcp);
        assert_eq!(
            out,
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 192.0.2.4:5070;branch=z9hG4bKy\r\nCall-ID: c\r\nContent-Length: 0\r\n\r\n"
        );
        assert_eq!(relay_as(m, "10.0.0.2"), Err(RelayDrop::NotOurs));
    }

    #[test]
    fn relay_response_uses_the_first_received_and_rport_of_the_next_via() {
        let m = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx\r\nVia: SIP/2.0/UDP host.example.com:5070;rport=4000;received=192.0.2.7;branch=z9hG4bKy;received=192.0.2.8;rport=5000\r\nCall-ID: c\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            relay_as(m, "10.0.0.1").unwrap().0,
            "192.0.2.7:4000".parse().unwrap()
        );
        // Bare rport: the sent-by port; no received: the sent-by host must be an IP literal.
        let m = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx\r\nVia: SIP/2.0/UDP 192.0.2.9:5070;rport;branch=z9hG4bKy\r\nCall-ID: c\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            relay_as(m, "10.0.0.1").unwrap().0,
            "192.0.2.9:5070".parse().unwrap()
        );
        let m = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx\r\nVia: SIP/2.0/UDP host.example.com;branch=z9hG4bKy\r\nCall-ID: c\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(relay_as(m, "10.0.0.1"), Err(RelayDrop::NotIpLiteral));
    }

    #[test]
    fn zero_max_forwards_is_483() {
        let m = String::from_utf8_lossy(REQ).replace("Max-Forwards: 70", "Max-Forwards: 0");
        let mut p = Parsed::new();
        p.scan_datagram(m.as_bytes()).unwrap();
        let mut out = Vec::new();
        assert_eq!(
            write_relay_request(&p.view(m.as_bytes()), &spec(&[]), &mut out)
                .unwrap_err()
                .code,
            483
        );
    }
}
