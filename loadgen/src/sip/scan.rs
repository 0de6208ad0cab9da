//! Minimal zero-copy SIP scanning for what the generator needs: the status code, a header's
//! value (long or compact form, RFC 3261 §7.3.3), the Call-ID we encoded, Via parameters, and
//! stream framing by Content-Length (RFC 3261 §18.3).
#![forbid(unsafe_code)]

/// The longest message the generator accepts on a stream before it calls the peer broken.
pub const MAX_STREAM_MESSAGE_BYTES: usize = 65_536;

/// `SIP/2.0 NNN ...` -> NNN.
pub fn status_code(msg: &[u8]) -> Option<u16> {
    let rest = msg.strip_prefix(b"SIP/2.0 ")?;
    let digits = rest.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = digits
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    (100..700).contains(&code).then_some(code)
}

/// The method of a request line (`MESSAGE sip:... SIP/2.0`).
pub fn request_method(msg: &[u8]) -> Option<&[u8]> {
    let line = first_line(msg);
    let space = line.iter().position(|&b| b == b' ')?;
    let method = &line[..space];
    (!method.is_empty() && method.iter().all(u8::is_ascii_uppercase) && line.ends_with(b"SIP/2.0"))
        .then_some(method)
}

/// The Request-URI of a request line.
pub fn request_uri(msg: &[u8]) -> Option<&[u8]> {
    let line = first_line(msg);
    let mut parts = line.split(|&b| b == b' ');
    parts.next()?;
    parts.next()
}

fn first_line(msg: &[u8]) -> &[u8] {
    let end = memchr_crlf(msg).unwrap_or(msg.len());
    &msg[..end]
}

/// The first CRLF. Looks for LF with `memchr` (a `memmem` search builds its searcher on every
/// call, which costs more than the short first line it searches).
fn memchr_crlf(msg: &[u8]) -> Option<usize> {
    memchr::memchr_iter(b'\n', msg)
        .find(|&lf| lf > 0 && msg[lf - 1] == b'\r')
        .map(|lf| lf - 1)
}

/// Iterates the header lines (name, value) of a message, stopping at the blank line. Folded
/// continuation lines (RFC 3261 §7.3.1) are rare in responses and returned as separate unnamed
/// lines, which no lookup matches.
pub fn headers(msg: &[u8]) -> Headers<'_> {
    let start = memchr_crlf(msg).map_or(msg.len(), |p| p + 2);
    Headers { msg, at: start }
}

/// The iterator [`headers`] returns: lines found with `memchr` (the recipients and the
/// senders look up a few headers in every message they receive).
pub struct Headers<'a> {
    msg: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Headers<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        // Bounded: every round moves `at` forward past one line.
        while self.at < self.msg.len() {
            let rest = &self.msg[self.at..];
            let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
            self.at += end + 1;
            let line = &rest[..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                // The blank line ends the headers.
                self.at = self.msg.len();
                return None;
            }
            if let Some(colon) = memchr::memchr(b':', line) {
                return Some((trim(&line[..colon]), trim(&line[colon + 1..])));
            }
        }
        None
    }
}

/// The first value of header `long` (or its compact form), compared without case.
pub fn header<'a>(msg: &'a [u8], long: &[u8], compact: Option<u8>) -> Option<&'a [u8]> {
    headers(msg).find_map(|(name, value)| name_matches(name, long, compact).then_some(value))
}

pub fn name_matches(name: &[u8], long: &[u8], compact: Option<u8>) -> bool {
    name.eq_ignore_ascii_case(long)
        || (name.len() == 1 && compact.is_some_and(|c| name[0].eq_ignore_ascii_case(&c)))
}

pub fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |p| p + 1);
    &bytes[start..end]
}

/// Parses `<hex>` of exactly `N` digits.
pub fn parse_hex(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 16 {
        return None;
    }
    bytes.iter().try_fold(0u64, |acc, &b| {
        let digit = (b as char).to_digit(16)?;
        Some(acc << 4 | u64::from(digit))
    })
}

/// The generator's Call-ID: `lg<run:8 hex>-<seq:16 hex>-<slot:8 hex>@loadgen`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallId {
    pub run: u32,
    pub seq: u64,
    pub slot: u32,
}

pub const CALL_ID_LEN: usize = 2 + 8 + 1 + 16 + 1 + 8 + 8;

impl CallId {
    pub fn parse(value: &[u8]) -> Option<Self> {
        if value.len() != CALL_ID_LEN || !value.starts_with(b"lg") || !value.ends_with(b"@loadgen")
        {
            return None;
        }
        if value[10] != b'-' || value[27] != b'-' {
            return None;
        }
        Some(Self {
            run: u32::try_from(parse_hex(&value[2..10])?).ok()?,
            seq: parse_hex(&value[11..27])?,
            slot: u32::try_from(parse_hex(&value[28..36])?).ok()?,
        })
    }

    /// Finds and parses the Call-ID header of a message.
    pub fn of_message(msg: &[u8]) -> Option<Self> {
        Self::parse(header(msg, b"Call-ID", Some(b'i'))?)
    }
}

/// A Via's sent-by and the parameters response routing needs (RFC 3261 §18.2.2, RFC 3581).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViaRoute<'a> {
    pub host: &'a [u8],
    pub port: Option<u16>,
    pub received: Option<&'a [u8]>,
    pub rport: Option<u16>,
}

/// Parses the first value of a Via header (`SIP/2.0/UDP host:port;params`).
pub fn parse_via(value: &[u8]) -> Option<ViaRoute<'_>> {
    let first = value.split(|&b| b == b',').next()?;
    let mut parts = first.split(|&b| b == b';');
    let sent = trim(parts.next()?);
    let space = sent.iter().position(u8::is_ascii_whitespace)?;
    let sent_by = trim(&sent[space..]);
    let (host, port) = split_host_port(sent_by)?;
    let mut route = ViaRoute {
        host,
        port,
        received: None,
        rport: None,
    };
    for param in parts {
        let param = trim(param);
        let (name, val) = match param.iter().position(|&b| b == b'=') {
            Some(eq) => (trim(&param[..eq]), Some(trim(&param[eq + 1..]))),
            None => (param, None),
        };
        if name.eq_ignore_ascii_case(b"received") {
            route.received = val;
        } else if name.eq_ignore_ascii_case(b"rport") {
            route.rport = val.and_then(|v| std::str::from_utf8(v).ok()?.parse().ok());
        }
    }
    Some(route)
}

fn split_host_port(sent_by: &[u8]) -> Option<(&[u8], Option<u16>)> {
    if let Some(rest) = sent_by.strip_prefix(b"[") {
        let close = rest.iter().position(|&b| b == b']')?;
        let port = rest[close + 1..].strip_prefix(b":").and_then(parse_port);
        return Some((&rest[..close], port));
    }
    match sent_by.iter().rposition(|&b| b == b':') {
        Some(colon) => Some((&sent_by[..colon], Some(parse_port(&sent_by[colon + 1..])?))),
        None => Some((sent_by, None)),
    }
}

fn parse_port(bytes: &[u8]) -> Option<u16> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Stream framing outcome for the bytes at the front of a receive buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Leading CRLFs (keepalives) to discard.
    Skip(usize),
    /// A whole message of this many bytes.
    Message(usize),
    /// Wait for more bytes.
    Incomplete,
    /// Missing Content-Length or an oversize message: the stream cannot be resynchronised.
    Broken,
}

/// Frames the next message on a stream: headers to CRLFCRLF, then Content-Length body bytes.
pub fn frame(buf: &[u8]) -> Frame {
    let crlfs = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    if crlfs > 0 {
        return Frame::Skip(crlfs);
    }
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_STREAM_MESSAGE_BYTES {
            Frame::Broken
        } else {
            Frame::Incomplete
        };
    };
    let head = &buf[..head_end + 2];
    // RFC 3261 §18.3: Content-Length is mandatory on streams.
    let Some(length) = header(head, b"Content-Length", Some(b'l'))
        .and_then(|v| std::str::from_utf8(v).ok()?.parse::<usize>().ok())
    else {
        return Frame::Broken;
    };
    let total = head_end + 4 + length;
    if total > MAX_STREAM_MESSAGE_BYTES {
        Frame::Broken
    } else if buf.len() >= total {
        Frame::Message(total)
    } else {
        Frame::Incomplete
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESPONSE: &[u8] = b"SIP/2.0 603 Decline\r\nVia: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKx;rport=40000;received=127.0.0.1\r\nf: <sip:u1@example.com>;tag=1\r\nTo: <sip:u2@example.com>;tag=2\r\ni: lg0000abcd-00000000000000ff-00000003@loadgen\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn status_and_headers() {
        assert_eq!(status_code(RESPONSE), Some(603));
        assert_eq!(status_code(b"SIP/2.0 60x"), None);
        assert_eq!(status_code(b"MESSAGE sip:a SIP/2.0"), None);
        assert_eq!(
            header(RESPONSE, b"from", Some(b'f')),
            Some(&b"<sip:u1@example.com>;tag=1"[..])
        );
        assert_eq!(header(RESPONSE, b"CSeq", None), Some(&b"1 MESSAGE"[..]));
        assert_eq!(header(RESPONSE, b"Contact", Some(b'm')), None);
    }

    /// What `headers` yields, written the slow obvious way: lines split at LF (a trailing CR
    /// dropped), up to the first empty line, those with a colon, name and value trimmed.
    fn headers_reference(msg: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let start = msg
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(msg.len(), |p| p + 2);
        let mut out = Vec::new();
        for line in msg[start..].split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                break;
            }
            if let Some(c) = line.iter().position(|&b| b == b':') {
                out.push((trim(&line[..c]).to_vec(), trim(&line[c + 1..]).to_vec()));
            }
        }
        out
    }

    #[test]
    fn headers_match_the_reference_on_odd_layouts() {
        let cases: [&[u8]; 10] = [
            RESPONSE,
            b"SIP/2.0 200 OK\r\nVia: a\r\n\r\nBody: not a header\r\n",
            b"SIP/2.0 200 OK\nVia: bare LF\nTo: x\n\nbody",
            b"SIP/2.0 200 OK\r\nno colon here\r\n  folded: ok \r\nX:\r\n:empty name\r\n",
            b"SIP/2.0 200 OK\r\nLast: no newline at the end",
            b"SIP/2.0 200 OK\r\n",
            b"SIP/2.0 200 OK",
            b"",
            b"SIP/2.0 200 OK\r\nA: 1\r\n\r\n\r\nB: 2\r\n",
            b"SIP/2.0 200 OK\nX: before the first CRLF\r\nVia: a\r\n\r\n",
        ];
        for msg in cases {
            let got: Vec<(Vec<u8>, Vec<u8>)> = headers(msg)
                .map(|(n, v)| (n.to_vec(), v.to_vec()))
                .collect();
            assert_eq!(
                got,
                headers_reference(msg),
                "{:?}",
                String::from_utf8_lossy(msg)
            );
        }
        assert_eq!(headers(RESPONSE).count(), 6);
    }

    #[test]
    fn call_id_round_trip() {
        let id = CallId::of_message(RESPONSE).expect("call-id");
        assert_eq!(
            id,
            CallId {
                run: 0xabcd,
                seq: 0xff,
                slot: 3
            }
        );
        assert_eq!(
            CallId::parse(b"lg0000abcd-00000000000000ff-00000003@other"),
            None
        );
        assert_eq!(CallId::parse(b"short"), None);
    }

    #[test]
    fn via_routes() {
        let via =
            parse_via(b"SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1;received=127.0.0.2;rport=7000")
                .expect("via");
        assert_eq!(via.host, b"127.0.0.1");
        assert_eq!(via.port, Some(5060));
        assert_eq!(via.received, Some(&b"127.0.0.2"[..]));
        assert_eq!(via.rport, Some(7000));
        let bare = parse_via(b"SIP/2.0/TCP [::1];rport").expect("via");
        assert_eq!(
            (bare.host, bare.port, bare.rport),
            (&b"::1"[..], None, None)
        );
    }

    #[test]
    fn request_line() {
        let req = b"MESSAGE sip:u1@127.0.0.1:4000 SIP/2.0\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(request_method(req), Some(&b"MESSAGE"[..]));
        assert_eq!(request_uri(req), Some(&b"sip:u1@127.0.0.1:4000"[..]));
        assert_eq!(request_method(RESPONSE), None);
    }

    #[test]
    fn stream_framing() {
        assert_eq!(frame(b"\r\n\r\nSIP"), Frame::Skip(4));
        assert_eq!(
            frame(b"SIP/2.0 200 OK\r\nl: 3\r\n\r\nab"),
            Frame::Incomplete
        );
        assert_eq!(
            frame(b"SIP/2.0 200 OK\r\nl: 3\r\n\r\nabcSIP"),
            Frame::Message(27)
        );
        assert_eq!(frame(b"SIP/2.0 200 OK\r\nTo: x\r\n\r\n"), Frame::Broken);
        assert_eq!(frame(b"SIP/2.0 200 OK\r\nContent"), Frame::Incomplete);
    }
}
