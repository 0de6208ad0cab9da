//! Via (RFC 3261 §20.42, §18.2.1; RFC 3581 rport): `sent-protocol LWS sent-by *(SEMI param)`,
//! with LWS allowed around every `/` (RFC 4475 wsinv), plus the byte span of every Via value
//! across all Via lines so writers can rewrite or drop just the top one.
#![forbid(unsafe_code)]

use super::error::SyntaxError;
use super::hdr::HeaderName;
use super::lex::{CommaIter, is_token_char, is_ws, skip_ws, token_end, trim, value_end};
use super::params::{self, Param, Params, RPort};
use super::scan::{Span, View, span_in};
use super::uri::{Host, host_name_prefix, parse_host, parse_port};

/// RFC 3261 §8.1.1.7: branches of RFC 3261 elements start with this cookie.
pub const MAGIC_COOKIE: &[u8] = b"z9hG4bK";

/// The sent-by port a Via without one means (§18.2.2; TLS would be 5061, which we do not
/// serve).
pub const DEFAULT_PORT: u16 = 5060;

/// One parsed Via value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Via<'a> {
    /// `SIP`
    pub protocol: &'a [u8],
    /// `2.0`
    pub version: &'a [u8],
    /// `UDP`, `TCP`, `TLS`, `SCTP` or any token (RFC 4475 transports).
    pub transport: &'a [u8],
    pub host: &'a [u8],
    pub host_kind: Host,
    pub port: Option<u16>,
    pub params: Params<'a>,
    /// Offset in the (trimmed) value where sent-by ends and the parameters begin.
    pub params_off: usize,
    /// The trimmed value this was parsed from.
    pub raw: &'a [u8],
}

impl<'a> Via<'a> {
    pub fn branch(&self) -> Option<&'a [u8]> {
        self.params.branch()
    }

    /// The branch carries the RFC 3261 magic cookie (§17.2.3).
    pub fn has_cookie(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with(MAGIC_COOKIE))
    }

    pub fn rport(&self) -> RPort {
        self.params.rport()
    }

    pub fn received(&self) -> Option<&'a [u8]> {
        self.params.received()
    }

    pub fn maddr(&self) -> Option<&'a [u8]> {
        self.params.maddr()
    }

    pub fn ttl(&self) -> Option<u8> {
        self.params.ttl()
    }

    /// sent-by port, or the default 5060 (§18.2.2; TLS would be 5061, which we do not serve).
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(DEFAULT_PORT)
    }
}

/// What [`parse_hop`] reads besides the [`Via`]: `branch`, `rport` and `received`, the ones
/// relaying and answering use; the first of each name counts, as with [`Params::get`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HopParams<'a> {
    /// As [`Via::branch`].
    pub branch: Option<&'a [u8]>,
    /// As [`Via::rport`].
    pub rport: RPort,
    /// `Some` when a `received` parameter is present; inside, its value as [`Via::received`].
    pub received: Option<Option<&'a [u8]>>,
}

/// Collects [`HopParams`] from parameters seen one at a time.
#[derive(Default)]
struct HopScan<'a> {
    branch: Option<Option<&'a [u8]>>,
    rport: Option<RPort>,
    received: Option<Option<&'a [u8]>>,
}

impl<'a> HopScan<'a> {
    #[inline]
    fn take(&mut self, p: Param<'a>) {
        if self.branch.is_none() && p.name.eq_ignore_ascii_case(b"branch") {
            self.branch = Some(p.text());
        } else if self.rport.is_none() && p.name.eq_ignore_ascii_case(b"rport") {
            self.rport = Some(params::rport_of(p.value));
        } else if self.received.is_none() && p.name.eq_ignore_ascii_case(b"received") {
            self.received = Some(p.text());
        }
    }

    fn done(self) -> HopParams<'a> {
        HopParams {
            branch: self.branch.flatten(),
            rport: self.rport.unwrap_or(RPort::Absent),
            received: self.received,
        }
    }
}

fn slash(s: &[u8], i: usize) -> Result<usize, SyntaxError> {
    let j = skip_ws(s, i);
    if s.get(j) == Some(&b'/') {
        Ok(skip_ws(s, j + 1))
    } else {
        Err(SyntaxError::Protocol)
    }
}

fn token_at(s: &[u8], i: usize) -> Result<(&[u8], usize), SyntaxError> {
    let e = token_end(s, i);
    if e == i {
        Err(SyntaxError::Protocol)
    } else {
        Ok((&s[i..e], e))
    }
}

/// Parses one Via value (one element of the comma list).
pub fn parse(elem: &[u8]) -> Result<Via<'_>, SyntaxError> {
    parse_hop(elem).map(|(v, _)| v)
}

/// [`parse`] plus its [`HopParams`], read while the parameters are validated (one pass).
pub fn parse_hop(elem: &[u8]) -> Result<(Via<'_>, HopParams<'_>), SyntaxError> {
    let s = trim(elem);
    if let Some(plain) = parse_hop_plain(s) {
        return Ok(plain);
    }
    parse_hop_general(s)
}

/// [`parse_hop`] for the shape nearly every Via has, `SIP/2.0/<transport> <host>[:<port>]`
/// and `;name[=value]` parameters with no whitespace, quotes or IPv6 reference, read in one
/// straight pass. `None` for anything else (including every error), which the general parser
/// then reads; where this returns a parse, it is the general parser's (tested).
fn parse_hop_plain(s: &[u8]) -> Option<(Via<'_>, HopParams<'_>)> {
    const PREFIX: &[u8] = b"SIP/2.0/";
    let after = s.strip_prefix(PREFIX)?;
    let t_len = after.iter().position(|&b| !is_token_char(b))?;
    if t_len == 0 || after[t_len] != b' ' {
        return None;
    }
    let h0 = PREFIX.len() + t_len + 1;
    let (h_len, kind) = host_name_prefix(s.get(h0..)?);
    let host_kind = kind.ok()?;
    if h_len == 0 {
        return None;
    }
    let mut i = h0 + h_len;
    let mut port = None;
    if s.get(i) == Some(&b':') {
        let digits = s[i + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
        port = Some(parse_port(&s[i + 1..i + 1 + digits]).ok()?);
        i += 1 + digits;
    }
    let params_off = i;
    let mut hop = HopScan::default();
    while i < s.len() {
        if s[i] != b';' {
            return None;
        }
        let n0 = i + 1;
        let n1 = token_end(s, n0);
        if n1 == n0 {
            return None;
        }
        let mut value = None;
        i = n1;
        if s.get(i) == Some(&b'=') {
            let v0 = i + 1;
            let v1 = value_end(s, v0);
            if v1 == v0 {
                return None;
            }
            value = Some(&s[v0..v1]);
            i = v1;
        }
        hop.take(Param {
            name: &s[n0..n1],
            value,
        });
    }
    let via = Via {
        protocol: &s[..3],
        version: &s[4..7],
        transport: &after[..t_len],
        host: &s[h0..h0 + h_len],
        host_kind,
        port,
        params: Params::validated(&s[params_off..]),
        params_off,
        raw: s,
    };
    Some((via, hop.done()))
}

/// [`parse_hop`] for any Via value (already trimmed): LWS around every separator, quoted
/// parameter values, IPv6 references.
fn parse_hop_general(s: &[u8]) -> Result<(Via<'_>, HopParams<'_>), SyntaxError> {
    if s.is_empty() {
        return Err(SyntaxError::Empty);
    }
    let (protocol, i) = token_at(s, 0)?;
    let (version, i) = token_at(s, slash(s, i)?)?;
    let (transport, i) = token_at(s, slash(s, i)?)?;
    if !s.get(i).is_some_and(|&b| is_ws(b)) {
        return Err(SyntaxError::Protocol);
    }
    let h0 = skip_ws(s, i);
    let (h1, host_kind) = if s.get(h0) == Some(&b'[') {
        let h1 = memchr::memchr(b']', &s[h0..]).ok_or(SyntaxError::Host)? + h0 + 1;
        (h1, parse_host(&s[h0..h1])?)
    } else {
        let (len, kind) = host_name_prefix(&s[h0..]);
        (h0 + len, kind?)
    };
    let host = &s[h0..h1];
    let mut i = h1;
    let mut port = None;
    let j = skip_ws(s, i);
    if s.get(j) == Some(&b':') {
        let p0 = skip_ws(s, j + 1);
        let mut p1 = p0;
        while p1 < s.len() && s[p1].is_ascii_digit() {
            p1 += 1;
        }
        port = Some(parse_port(&s[p0..p1])?);
        i = p1;
    }
    let mut hop = HopScan::default();
    let (params, used) = params::parse_visit(&s[i..], |p| hop.take(p))?;
    if i + used != s.len() {
        return Err(SyntaxError::Param);
    }
    let via = Via {
        protocol,
        version,
        transport,
        host,
        host_kind,
        port,
        params,
        params_off: i,
        raw: s,
    };
    Ok((via, hop.done()))
}

/// Where one Via value sits in the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViaValue {
    /// Index of the header line in [`View::slots`].
    pub slot: usize,
    /// The value's bytes (trimmed), absolute in the buffer.
    pub span: Span,
    /// Position of this value on its line (0 = first).
    pub index_in_line: usize,
}

/// Every Via value of a message, top first, across lines and commas.
pub struct ViaValues<'a> {
    view: View<'a>,
    slot: usize,
    inner: Option<(CommaIter<'a>, usize, usize)>,
}

impl Iterator for ViaValues<'_> {
    type Item = ViaValue;

    fn next(&mut self) -> Option<ViaValue> {
        let slots = self.view.slots();
        loop {
            if let Some((it, base, k)) = self.inner.as_mut() {
                if let Some((a, b)) = it.next_span() {
                    let v = ViaValue {
                        slot: self.slot,
                        span: Span::new(*base + a, *base + b),
                        index_in_line: *k,
                    };
                    *k += 1;
                    return Some(v);
                }
                self.inner = None;
                self.slot += 1;
            }
            while self.slot < slots.len() && slots[self.slot].name != HeaderName::Via {
                self.slot += 1;
            }
            let s = slots.get(self.slot)?;
            let value = self.view.slice(s.value);
            self.inner = Some((CommaIter::new(value), s.value.start as usize, 0));
        }
    }
}

/// Iterates the Via values of `view`.
pub fn values<'a>(view: &View<'a>) -> ViaValues<'a> {
    let first = view.first_slot(HeaderName::Via).map_or(usize::MAX, |_| {
        view.slots()
            .iter()
            .position(|s| s.name == HeaderName::Via)
            .unwrap_or(usize::MAX)
    });
    ViaValues {
        view: *view,
        slot: first,
        inner: None,
    }
}

/// The Via values of `view` that follow `top` (a value [`values`] yielded), without walking
/// again to it: the rest of its line after the comma that ended it, then the later Via lines.
pub fn values_after<'a>(view: &View<'a>, top: &ViaValue) -> ViaValues<'a> {
    let line_end = view
        .slots()
        .get(top.slot)
        .map_or(0, |s| s.value.end as usize);
    let after = top.span.end as usize;
    // Only whitespace separates a value (trimmed) from the comma that ended it.
    let comma = view
        .buf()
        .get(after..line_end)
        .and_then(|rest| memchr::memchr(b',', rest))
        .map(|c| after + c + 1);
    match comma {
        Some(base) => ViaValues {
            view: *view,
            slot: top.slot,
            inner: Some((
                CommaIter::new(&view.buf()[base..line_end]),
                base,
                top.index_in_line + 1,
            )),
        },
        None => ViaValues {
            view: *view,
            slot: top.slot + 1,
            inner: None,
        },
    }
}

/// A parsed top Via as offsets into the message, plus the parameters the writers ask for
/// (kept in a [`Parsed`](super::scan::Parsed) so it is parsed once per message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ViaSpans {
    protocol: Span,
    version: Span,
    transport: Span,
    host: Span,
    host_kind: Host,
    port: Option<u16>,
    params: Span,
    params_off: u32,
    raw: Span,
    branch: Option<Span>,
    rport: RPort,
    has_received: bool,
    plain: bool,
}

/// The memoised top Via: absent, or its position and parse.
pub(crate) type TopViaMemo = Option<(ViaValue, Result<ViaSpans, SyntaxError>)>;

impl ViaSpans {
    fn new(buf: &[u8], v: &Via<'_>, hop: &HopParams<'_>, plain: bool) -> ViaSpans {
        let at = |x: &[u8]| span_in(buf, x);
        ViaSpans {
            protocol: at(v.protocol),
            version: at(v.version),
            transport: at(v.transport),
            host: at(v.host),
            host_kind: v.host_kind,
            port: v.port,
            params: at(v.params.as_bytes()),
            params_off: v.params_off as u32,
            raw: at(v.raw),
            branch: hop.branch.map(at),
            rport: hop.rport,
            has_received: hop.received.is_some(),
            plain,
        }
    }

    fn via<'a>(&self, buf: &'a [u8]) -> Via<'a> {
        Via {
            protocol: self.protocol.slice(buf),
            version: self.version.slice(buf),
            transport: self.transport.slice(buf),
            host: self.host.slice(buf),
            host_kind: self.host_kind,
            port: self.port,
            params: Params::validated(self.params.slice(buf)),
            params_off: self.params_off as usize,
            raw: self.raw.slice(buf),
        }
    }
}

/// The top Via with the parameters the writers need, read once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopVia<'a> {
    pub via: Via<'a>,
    /// `branch` (unquoted), as [`Via::branch`].
    pub branch: Option<&'a [u8]>,
    /// As [`Via::rport`].
    pub rport: RPort,
    /// A `received` parameter is present (with or without a value).
    pub has_received: bool,
    /// The value has the plain shape the one-pass reader takes (no LWS, quotes, line breaks
    /// or IPv6 reference), so its parameters are exactly the `;name[=value]` segments.
    pub plain: bool,
}

fn top_memo<'a>(view: &View<'a>) -> &'a TopViaMemo {
    view.memos().top_via.get_or_init(|| {
        let buf = view.buf();
        values(view).next().map(|v| {
            // As parse_hop, noting which reader took it.
            let s = trim(view.slice(v.span));
            let (parsed, plain) = match parse_hop_plain(s) {
                Some(p) => (Ok(p), true),
                None => (parse_hop_general(s), false),
            };
            (
                v,
                parsed.map(|(p, hop)| ViaSpans::new(buf, &p, &hop, plain)),
            )
        })
    })
}

/// The top Via value: its position and parse (parsed once per scanned message).
pub fn top<'a>(view: &View<'a>) -> Option<(ViaValue, Result<Via<'a>, SyntaxError>)> {
    let buf = view.buf();
    top_memo(view)
        .as_ref()
        .map(|(v, r)| (*v, r.as_ref().map(|s| s.via(buf)).map_err(|e| *e)))
}

/// The top Via's `rport` and sent-by port, when the top Via parsed: what a response's
/// destination needs ([`crate::sip::write::response_dest`]), without building the rest.
pub fn top_reply_facts(view: &View<'_>) -> Option<(RPort, Option<u16>)> {
    let (_, parsed) = top_memo(view).as_ref()?;
    parsed.as_ref().ok().map(|s| (s.rport, s.port))
}

/// The top Via's `branch` (unquoted), when the top Via parsed and has one: what
/// [`top_facts`] gives as `branch`, without building the rest.
pub fn top_branch<'a>(view: &View<'a>) -> Option<&'a [u8]> {
    let (_, parsed) = top_memo(view).as_ref()?;
    parsed.as_ref().ok()?.branch.map(|b| b.slice(view.buf()))
}

/// [`top`] with the branch, rport and received facts already extracted.
pub fn top_facts<'a>(view: &View<'a>) -> Option<(ViaValue, Result<TopVia<'a>, SyntaxError>)> {
    let buf = view.buf();
    top_memo(view).as_ref().map(|(v, r)| {
        let t = r
            .as_ref()
            .map(|s| TopVia {
                via: s.via(buf),
                branch: s.branch.map(|b| b.slice(buf)),
                rport: s.rport,
                has_received: s.has_received,
                plain: s.plain,
            })
            .map_err(|e| *e);
        (*v, t)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::scan::Parsed;

    #[test]
    fn plain() {
        let v =
            parse(b"SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK77;rport;received=10.0.0.1").unwrap();
        assert_eq!(v.transport, b"UDP");
        assert_eq!(v.host, b"192.0.2.1");
        assert_eq!(v.port, Some(5070));
        assert!(v.has_cookie());
        assert_eq!(v.rport(), RPort::Empty);
        assert_eq!(v.received(), Some(&b"10.0.0.1"[..]));
        assert_eq!(v.params_off, 26);
    }

    /// The sent-by host is judged exactly as `parse_host` judges the same bytes.
    #[test]
    fn sent_by_host_is_parse_host() {
        for h in [
            "1.2.3.4",
            "255.255.255.255",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3",
            "1..2.3",
            "a_b.example.com",
            "EXAMPLE.com.",
            "-x",
            "123",
            "[::1]",
            "[2001:db8::7]",
            "[zz]",
        ] {
            let via = format!("SIP/2.0/UDP {h}:5060;branch=z9hG4bKx");
            let got = parse_hop(via.as_bytes()).map(|(v, _)| (v.host, v.host_kind, v.port));
            let want = parse_host(h.as_bytes()).map(|k| (h.as_bytes(), k, Some(5060)));
            assert_eq!(got, want, "{h}");
        }
        assert_eq!(parse(b"SIP/2.0/UDP ;branch=x"), Err(SyntaxError::Host));
        assert_eq!(parse(b"SIP/2.0/UDP a@b;branch=x"), Err(SyntaxError::Param));
    }

    #[test]
    fn hop_params_take_the_first_of_each_name() {
        let (v, hop) = parse_hop(b"SIP/2.0/UDP h;received;rport=7;branch=\"z9hG4bKa\";rport=8;received=10.0.0.1;branch=z9hG4bKb").unwrap();
        assert_eq!(hop.branch, Some(&b"z9hG4bKa"[..]));
        assert_eq!(hop.branch, v.branch());
        assert_eq!(hop.rport, RPort::Port(7));
        assert_eq!(hop.rport, v.rport());
        assert_eq!(hop.received, Some(None));
        assert_eq!(hop.received.flatten(), v.received());
        // `parse` is the same parse without them.
        assert_eq!(parse(v.raw), Ok(v));
        let (_, bare) = parse_hop(b"SIP/2.0/UDP h").unwrap();
        assert_eq!(
            (bare.branch, bare.rport, bare.received),
            (None, RPort::Absent, None)
        );
    }

    /// The plain-shape reader takes the Vias clients and proxies write, so they skip the
    /// general parser, and gives them the general parser's reading.
    #[test]
    fn plain_shape_is_read_in_one_pass() {
        for v in [
            "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK0123456789abcdef",
            "SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK-74bf9;rport",
            "SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK-74bf9;rport=5070;received=10.0.0.1",
            "SIP/2.0/TCP proxy.example.com;branch=z9hG4bK1;cid=0.1.2",
            "SIP/2.0/SCTP h;received;ttl=3;maddr=[2001:db8::1]",
            "SIP/2.0/UDP h",
            "SIP/2.0/UDP h:1",
        ] {
            let plain = parse_hop_plain(v.as_bytes());
            assert!(plain.is_some(), "{v}");
            assert_eq!(plain, parse_hop_general(v.as_bytes()).ok(), "{v}");
        }
        // Not the plain shape: left to the general parser, which may accept or refuse it.
        for v in [
            "SIP / 2.0/UDP h",
            "sip/2.0/UDP h",
            "SIP/2.0/UDP  h",
            "SIP/2.0/UDP [::1]:5060",
            "SIP/2.0/UDP h ;branch=1",
            "SIP/2.0/UDP h;branch = 1",
            "SIP/2.0/UDP h;branch=\"q\"",
            "SIP/2.0/UDP h;;",
            "SIP/2.0/UDP h;branch=",
            "SIP/2.0/UDP h;branch=;rport",
            "SIP/2.0/UDP h:99999",
            "SIP/2.0/UDP h junk",
            "SIP/2.0/UDP 256.1.1.1",
            "SIP/2.0/ h",
        ] {
            assert_eq!(parse_hop_plain(v.as_bytes()), None, "{v}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]
        /// Wherever the plain-shape reader answers, its answer is the general parser's: Vias
        /// built as prefix, host, port and parameters, each part drawn from plain spellings
        /// (listed more than once, so that most Vias are plain but for one part) and odd ones
        /// (whitespace, quotes, empty names and values, bad hosts and ports).
        #[test]
        fn plain_shape_agrees_with_general(
            prefix in proptest::sample::select(vec![
                "SIP/2.0/UDP ", "SIP/2.0/UDP ", "SIP/2.0/UDP ", "SIP/2.0/TCP ", "SIP/2.0/X-Y ",
                "SIP/2.0/", "SIP/2.0/UDP", "SIP/2.0/UDP  ", "SIP/2.0 /UDP ", "",
            ]),
            host in proptest::sample::select(vec![
                "h", "Example.COM", "192.0.2.1", "1.2.3", "256.0.0.1", "01.2.3.4", "[::1]",
                "a_b", "-x", "", " h", "h ",
            ]),
            port in proptest::sample::select(vec![
                "", "", "", ":5060", ":0", ":99999", ":", ": 1", ":1a",
            ]),
            params in proptest::collection::vec((
                proptest::sample::select(vec![";", ";", ";", ";", ";", " ;", "; ", ";;", ",", ""]),
                proptest::sample::select(vec![
                    "branch", "rport", "received", "Branch", "RPORT", "ttl", "maddr", "x-1", "",
                    "a b", "@",
                ]),
                proptest::sample::select(vec![
                    "", "=", "=z9hG4bK1", "=5070", "=10.0.0.1", "=[2001:db8::1]", "=\"q\"",
                    "= 1", "=a:b", "=%", "=,",
                ]),
            ), 0..5),
        ) {
            let mut via = format!("{prefix}{host}{port}");
            for (sep, name, value) in params {
                via.push_str(sep);
                via.push_str(name);
                via.push_str(value);
            }
            let s = trim(via.as_bytes());
            if let Some(plain) = parse_hop_plain(s) {
                proptest::prop_assert_eq!(Ok(plain), parse_hop_general(s), "{}", via);
            }
        }
    }

    #[test]
    fn torture_whitespace() {
        let v = parse(b"SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.version, b"2.0");
        assert_eq!(v.transport, b"UDP");
        assert!(!v.has_cookie());
        let v =
            parse(b"SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8")
                .unwrap();
        assert_eq!(v.host, b"spindle.example.com");
        assert_eq!(v.branch(), Some(&b"z9hG4bK9ikj8"[..]));
        let v = parse(b"SIP/2.0/TCP [2001:db8::9] : 5061 ;ttl=3;maddr=224.0.0.1").unwrap();
        assert_eq!(v.port, Some(5061));
        assert_eq!(v.ttl(), Some(3));
        assert_eq!(v.maddr(), Some(&b"224.0.0.1"[..]));
    }

    #[test]
    fn broken() {
        assert!(parse(b"SIP/2.0/UDP 192.0.2.15;;").is_err());
        assert!(parse(b";").is_err());
        assert!(parse(b"").is_err());
        assert!(parse(b"SIP/2.0/UDP").is_err());
        assert!(parse(b"SIP/2.0 UDP host").is_err());
        assert!(parse(b"SIP/2.0/UDP host:99999").is_err());
        assert!(parse(b"SIP/2.0/UDP host junk").is_err());
    }

    /// The values after any value are those `values` yields after it, whatever the layout.
    #[test]
    fn values_after_a_value_are_the_rest() {
        for vias in [
            "Via: SIP/2.0/UDP a;branch=z9hG4bK1 , SIP/2.0/TCP b\r\nTo: <sip:a@b>\r\nv: SIP/2.0/UDP c\r\n",
            "Via: SIP/2.0/UDP a;x=\"p,q\",SIP/2.0/UDP b,  SIP/2.0/UDP c\r\nVia: SIP/2.0/UDP d\r\n",
            "Via: SIP/2.0/UDP a\r\nVia: SIP/2.0/UDP b\r\n",
            "Via: SIP/2.0/UDP a\r\n",
            "Via: SIP/2.0/UDP a ,\r\n",
            "Via: SIP/2.0/UDP a, ,b\r\nFrom: <sip:x@y>\r\nVia: c, d\r\n",
        ] {
            let m = format!("OPTIONS sip:a@b SIP/2.0\r\n{vias}\r\n");
            let mut p = Parsed::new();
            p.scan_datagram(m.as_bytes()).unwrap();
            let view = p.view(m.as_bytes());
            let all: Vec<ViaValue> = values(&view).collect();
            assert!(!all.is_empty(), "{vias}");
            for (k, v) in all.iter().enumerate() {
                let rest: Vec<ViaValue> = values_after(&view, v).collect();
                assert_eq!(rest, all[k + 1..], "{vias} after {k}");
            }
        }
    }

    /// `top_branch` is the `branch` of `top_facts`, asked before or after the memo is filled,
    /// and `None` without a Via, without a branch, or with a top Via that does not parse;
    /// `top_reply_facts` is its `rport` and sent-by port.
    #[test]
    fn single_fact_accessors_agree_with_top_facts() {
        for (vias, want) in [
            (
                "Via: SIP/2.0/UDP a;branch=z9hG4bK1;rport\r\n",
                Some("z9hG4bK1"),
            ),
            (
                "v: SIP/2.0/UDP a ; BRANCH = \"x\" , SIP/2.0/UDP b;branch=2\r\n",
                Some("x"),
            ),
            (
                "Via: SIP/2.0/UDP a;rport\r\nVia: SIP/2.0/UDP b;branch=2\r\n",
                None,
            ),
            ("Via: SIP/2.0/UDP a;branch=\r\n", None),
            ("Via: SIP/2.0/TCP a:5070;rport=9;branch=b7\r\n", Some("b7")),
            ("Via: SIP/2.0/UDP [::1]:7;branch=b8;rport\r\n", Some("b8")),
            ("Via: junk;branch=z9hG4bK1\r\n", None),
            ("", None),
        ] {
            let m = format!("OPTIONS sip:a@b SIP/2.0\r\n{vias}\r\n");
            let want = want.map(str::as_bytes);
            for early in [true, false] {
                let mut p = Parsed::new();
                p.scan_datagram(m.as_bytes()).unwrap();
                let view = p.view(m.as_bytes());
                let first = early.then(|| (top_branch(&view), top_reply_facts(&view)));
                let top = top_facts(&view).and_then(|(_, t)| t.ok());
                let reply = top.map(|t| (t.rport, t.via.port));
                assert_eq!(top.and_then(|t| t.branch), want, "{vias}");
                assert_eq!(top_branch(&view), want, "{vias}");
                assert_eq!(top_reply_facts(&view), reply, "{vias}");
                assert_eq!(first.unwrap_or((want, reply)), (want, reply), "{vias}");
            }
        }
    }

    #[test]
    fn spans_across_lines_and_commas() {
        let m = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1 , SIP/2.0/TCP b\r\nTo: <sip:a@b>\r\nv: SIP/2.0/UDP c\r\n\r\n";
        let mut p = Parsed::new();
        p.scan_datagram(m).unwrap();
        let view = p.view(m);
        let all: Vec<_> = values(&view)
            .map(|v| (view.slice(v.span), v.index_in_line))
            .collect();
        assert_eq!(
            all,
            vec![
                (&b"SIP/2.0/UDP a;branch=z9hG4bK1"[..], 0),
                (&b"SIP/2.0/TCP b"[..], 1),
                (&b"SIP/2.0/UDP c"[..], 0)
            ]
        );
        let (_, t) = top(&view).unwrap();
        assert_eq!(t.unwrap().host, b"a");
    }
}
