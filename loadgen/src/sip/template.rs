//! Request templates. A MESSAGE is rendered once per (sender digits, recipient digits) shape
//! with placeholder fields, and every later MESSAGE of that shape is a memcpy plus in-place
//! patches of the fixed-width fields (branch, tag, Call-ID, CSeq, identities): the body and
//! therefore Content-Length never change. REGISTER and PUBLISH are rare and rendered directly.
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::net::SocketAddr;

use super::Transport;
use super::scan;

/// What is constant for every request a sender socket writes.
#[derive(Clone, Debug)]
pub struct RequestParams {
    pub domain: String,
    pub run: u32,
    /// The socket's own address: the Via sent-by (responses come back here, RFC 3261 §18.2.2).
    pub local: SocketAddr,
    pub transport: Transport,
    /// Trusted-peer mode (D7): identify the sender with P-Asserted-Identity.
    pub pai: bool,
    pub body: Vec<u8>,
}

/// The variable part of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Values {
    pub seq: u64,
    pub slot: u32,
    /// 0 for the first try, 1 for the retry that answers a Digest challenge.
    pub attempt: u8,
    pub sender: u32,
    pub recipient: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Seq,
    Slot,
    Attempt,
    CSeqNumber,
    Sender,
    Recipient,
}

/// A rendered message with the offsets of its patchable fields.
#[derive(Clone, Debug)]
pub struct Template {
    bytes: Vec<u8>,
    patches: Vec<(Field, usize, usize)>,
}

impl Template {
    fn lit(&mut self, text: &str) {
        self.bytes.extend_from_slice(text.as_bytes());
    }

    fn field(&mut self, field: Field, width: usize) {
        self.patches.push((field, self.bytes.len(), width));
        self.bytes.resize(self.bytes.len() + width, b'0');
    }

    /// Writes `values` into the template and appends the message to `out`.
    pub fn render_into(&mut self, values: &Values, out: &mut Vec<u8>) {
        for &(field, at, width) in &self.patches {
            let dst = &mut self.bytes[at..at + width];
            match field {
                Field::Seq => write_hex(dst, values.seq),
                Field::Slot => write_hex(dst, u64::from(values.slot)),
                Field::Attempt => write_decimal(dst, u64::from(values.attempt)),
                Field::CSeqNumber => write_decimal(dst, u64::from(values.attempt) + 1),
                Field::Sender => write_decimal(dst, u64::from(values.sender)),
                Field::Recipient => write_decimal(dst, u64::from(values.recipient)),
            }
        }
        out.extend_from_slice(&self.bytes);
    }
}

fn write_hex(dst: &mut [u8], mut value: u64) {
    for byte in dst.iter_mut().rev() {
        *byte = b"0123456789abcdef"[(value & 0xf) as usize];
        value >>= 4;
    }
}

fn write_decimal(dst: &mut [u8], mut value: u64) {
    for byte in dst.iter_mut().rev() {
        *byte = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

pub fn decimal_digits(value: u32) -> usize {
    decimal_width(u64::from(value))
}

fn decimal_width(value: u64) -> usize {
    value.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// Builds the MESSAGE template for senders of `sender_digits` and recipients of
/// `recipient_digits` decimal digits.
pub fn message_template(
    params: &RequestParams,
    sender_digits: usize,
    recipient_digits: usize,
) -> Template {
    let mut t = Template {
        bytes: Vec::with_capacity(512 + params.body.len()),
        patches: Vec::new(),
    };
    let domain = &params.domain;
    t.lit("MESSAGE sip:u");
    t.field(Field::Recipient, recipient_digits);
    t.lit(&format!(
        "@{domain} SIP/2.0\r\nVia: SIP/2.0/{} {};branch=z9hG4bK{:08x}",
        params.transport.via_name(),
        params.local,
        params.run
    ));
    t.field(Field::Seq, 16);
    t.field(Field::Attempt, 1);
    t.lit(";rport\r\nMax-Forwards: 70\r\nFrom: <sip:u");
    t.field(Field::Sender, sender_digits);
    t.lit(&format!("@{domain}>;tag="));
    t.field(Field::Seq, 16);
    t.lit("\r\nTo: <sip:u");
    t.field(Field::Recipient, recipient_digits);
    t.lit(&format!("@{domain}>\r\nCall-ID: lg{:08x}-", params.run));
    t.field(Field::Seq, 16);
    t.lit("-");
    t.field(Field::Slot, 8);
    t.lit("@loadgen\r\nCSeq: ");
    t.field(Field::CSeqNumber, 1);
    t.lit(" MESSAGE\r\n");
    if params.pai {
        t.lit("P-Asserted-Identity: <sip:u");
        t.field(Field::Sender, sender_digits);
        t.lit(&format!("@{domain}>\r\n"));
    }
    t.lit(&format!(
        "Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        params.body.len()
    ));
    t.bytes.extend_from_slice(&params.body);
    t
}

/// Per-socket cache of MESSAGE templates, one per identity shape.
#[derive(Debug)]
pub struct MessageWriter {
    params: RequestParams,
    cache: Vec<Option<Template>>,
}

impl MessageWriter {
    pub fn new(params: RequestParams) -> Self {
        Self {
            params,
            cache: vec![None; 11 * 11],
        }
    }

    pub fn params(&self) -> &RequestParams {
        &self.params
    }

    /// Appends the MESSAGE for `values` to `out` (the hot path: memcpy and patch).
    pub fn write(&mut self, values: &Values, out: &mut Vec<u8>) {
        let (s, r) = (
            decimal_digits(values.sender),
            decimal_digits(values.recipient),
        );
        let template =
            self.cache[s * 11 + r].get_or_insert_with(|| message_template(&self.params, s, r));
        template.render_into(values, out);
    }
}

/// The common head of a request, rendered directly (REGISTER, PUBLISH, authenticated retries).
fn write_head(
    out: &mut Vec<u8>,
    params: &RequestParams,
    method: &str,
    ruri: &str,
    from_user: u32,
    to_user: u32,
    values: &Values,
) {
    let d = &params.domain;
    let mut text = String::with_capacity(512);
    let _ = write!(
        text,
        "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/{} {};branch=z9hG4bK{:08x}{:016x}{}",
        params.transport.via_name(),
        params.local,
        params.run,
        values.seq,
        values.attempt
    );
    let _ = write!(
        text,
        ";rport\r\nMax-Forwards: 70\r\nFrom: <sip:u{from_user}@{d}>;tag={:016x}\r\nTo: <sip:u{to_user}@{d}>\r\nCall-ID: lg{:08x}-{:016x}-{:08x}@loadgen\r\nCSeq: {} {method}\r\n",
        values.seq,
        params.run,
        values.seq,
        values.slot,
        u16::from(values.attempt) + 1
    );
    out.extend_from_slice(text.as_bytes());
}

/// A MESSAGE rendered without a template; `auth` is a full `Proxy-Authorization` value.
pub fn write_message(
    out: &mut Vec<u8>,
    params: &RequestParams,
    values: &Values,
    auth: Option<&str>,
) {
    let ruri = format!("sip:u{}@{}", values.recipient, params.domain);
    write_head(
        out,
        params,
        "MESSAGE",
        &ruri,
        values.sender,
        values.recipient,
        values,
    );
    let mut text = String::new();
    if params.pai {
        let _ = write!(
            text,
            "P-Asserted-Identity: <sip:u{}@{}>\r\n",
            values.sender, params.domain
        );
    }
    if let Some(auth) = auth {
        let _ = write!(text, "Proxy-Authorization: {auth}\r\n");
    }
    let _ = write!(
        text,
        "Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        params.body.len()
    );
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&params.body);
}

/// A REGISTER for user `values.recipient` binding `contact` (To = AoR, RFC 3261 §10.2).
/// `auth` is a full `Authorization` value answering a 401.
pub fn write_register(
    out: &mut Vec<u8>,
    params: &RequestParams,
    values: &Values,
    contact: SocketAddr,
    expires_s: u32,
    auth: Option<&str>,
) {
    let user = values.recipient;
    let ruri = format!("sip:{}", params.domain);
    write_head(out, params, "REGISTER", &ruri, user, user, values);
    let mut text = format!(
        "Contact: <sip:u{user}@{contact};transport={}>;+g.oma.sip-im\r\nExpires: {expires_s}\r\n",
        params.transport.param()
    );
    if let Some(auth) = auth {
        let _ = write!(text, "Authorization: {auth}\r\n");
    }
    text.push_str("Content-Length: 0\r\n\r\n");
    out.extend_from_slice(text.as_bytes());
}

/// A PUBLISH of IM service settings (D11) for user `values.sender`.
pub fn write_publish(
    out: &mut Vec<u8>,
    params: &RequestParams,
    values: &Values,
    isb: bool,
    expires_s: u32,
    auth: Option<&str>,
) {
    let user = values.sender;
    let ruri = format!("sip:u{user}@{}", params.domain);
    write_head(out, params, "PUBLISH", &ruri, user, user, values);
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<service-settings xmlns=\"urn:oma:xml:im:service-settings\"><isb-settings><incoming-session-barring active=\"{isb}\"/></isb-settings></service-settings>\r\n"
    );
    let mut text = String::new();
    if params.pai {
        let _ = write!(
            text,
            "P-Asserted-Identity: <sip:u{user}@{}>\r\n",
            params.domain
        );
    }
    if let Some(auth) = auth {
        let _ = write!(text, "Proxy-Authorization: {auth}\r\n");
    }
    let _ = write!(
        text,
        "Event: service-settings\r\nExpires: {expires_s}\r\nContent-Type: application/service-settings+xml\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    out.extend_from_slice(text.as_bytes());
}

/// Appends `v` in decimal.
fn push_decimal(out: &mut Vec<u8>, v: u64) {
    let at = out.len();
    out.resize(at + decimal_width(v), b'0');
    write_decimal(&mut out[at..], v);
}

/// Answers a request the way a UAS does (RFC 3261 §8.2.6.2): copy every Via in order, From,
/// To (adding our tag when it has none), Call-ID and CSeq; no body. Returns false when a
/// mandatory header is missing, so the caller can count the request as unanswerable.
pub fn write_response(
    request: &[u8],
    code: u16,
    reason: &str,
    to_tag: &str,
    out: &mut Vec<u8>,
) -> bool {
    let mut from = None;
    let mut to = None;
    let mut call_id = None;
    let mut cseq = None;
    // The Via values in order: a 200 to a relayed MESSAGE has two; more go to `more_vias`
    // (no allocation for the usual case).
    let mut vias: [&[u8]; 4] = [&[]; 4];
    let mut n_vias = 0;
    let mut more_vias: Vec<&[u8]> = Vec::new();
    for (name, value) in scan::headers(request) {
        if scan::name_matches(name, b"Via", Some(b'v')) {
            if n_vias < vias.len() {
                vias[n_vias] = value;
                n_vias += 1;
            } else {
                more_vias.push(value);
            }
        } else if scan::name_matches(name, b"From", Some(b'f')) {
            from = Some(value);
        } else if scan::name_matches(name, b"To", Some(b't')) {
            to = Some(value);
        } else if scan::name_matches(name, b"Call-ID", Some(b'i')) {
            call_id = Some(value);
        } else if scan::name_matches(name, b"CSeq", None) {
            cseq = Some(value);
        }
    }
    let (Some(from), Some(to), Some(call_id), Some(cseq)) = (from, to, call_id, cseq) else {
        return false;
    };
    if n_vias == 0 {
        return false;
    }
    out.extend_from_slice(b"SIP/2.0 ");
    push_decimal(out, u64::from(code));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for via in vias[..n_vias].iter().chain(&more_vias) {
        out.extend_from_slice(b"Via: ");
        out.extend_from_slice(via);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"From: ");
    out.extend_from_slice(from);
    out.extend_from_slice(b"\r\nTo: ");
    out.extend_from_slice(to);
    if !has_tag(to) {
        out.extend_from_slice(b";tag=");
        out.extend_from_slice(to_tag.as_bytes());
    }
    out.extend_from_slice(b"\r\nCall-ID: ");
    out.extend_from_slice(call_id);
    out.extend_from_slice(b"\r\nCSeq: ");
    out.extend_from_slice(cseq);
    out.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
    true
}

fn has_tag(to: &[u8]) -> bool {
    // Parameters after the closing '>' (or anywhere when there is no name-addr).
    let params = match to.iter().rposition(|&b| b == b'>') {
        Some(close) => &to[close..],
        None => to,
    };
    params
        .split(|&b| b == b';')
        .skip(1)
        .any(|p| scan::trim(p).len() >= 4 && scan::trim(p)[..4].eq_ignore_ascii_case(b"tag="))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pai: bool) -> RequestParams {
        RequestParams {
            domain: "example.com".into(),
            run: 0xdead_beef,
            local: "127.0.0.1:40001".parse().expect("addr"),
            transport: Transport::Udp,
            pai,
            body: b"hello from loadgen".to_vec(),
        }
    }

    fn content_length_is_right(msg: &[u8]) -> bool {
        let head_end = msg
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("blank line")
            + 4;
        let declared: usize =
            std::str::from_utf8(scan::header(msg, b"Content-Length", Some(b'l')).expect("cl"))
                .expect("utf8")
                .parse()
                .expect("number");
        msg.len() - head_end == declared
    }

    #[test]
    fn template_equals_direct_rendering_for_many_shapes() {
        for pai in [true, false] {
            let mut writer = MessageWriter::new(params(pai));
            for (i, (sender, recipient)) in
                [(1, 2), (9, 10), (12345, 7), (u32::MAX, 1_000_000), (7, 7)]
                    .into_iter()
                    .enumerate()
            {
                let values = Values {
                    seq: 0x1234_5678_9abc + i as u64,
                    slot: 42,
                    attempt: 0,
                    sender,
                    recipient,
                };
                let mut patched = Vec::new();
                writer.write(&values, &mut patched);
                let mut direct = Vec::new();
                write_message(&mut direct, writer.params(), &values, None);
                assert_eq!(
                    String::from_utf8_lossy(&patched),
                    String::from_utf8_lossy(&direct)
                );
                assert!(content_length_is_right(&patched));
            }
        }
    }

    #[test]
    fn patched_message_is_valid_sip() {
        let mut writer = MessageWriter::new(params(true));
        let mut first = Vec::new();
        writer.write(
            &Values {
                seq: 1,
                slot: 1,
                attempt: 0,
                sender: 11,
                recipient: 22,
            },
            &mut first,
        );
        let mut msg = Vec::new();
        // Same shape again: the cached template is patched, no stale digits survive.
        writer.write(
            &Values {
                seq: 0xabc,
                slot: 9,
                attempt: 0,
                sender: 33,
                recipient: 44,
            },
            &mut msg,
        );
        let text = std::str::from_utf8(&msg).expect("utf8");
        assert!(text.starts_with("MESSAGE sip:u44@example.com SIP/2.0\r\n"));
        assert!(text.contains(
            "\r\nVia: SIP/2.0/UDP 127.0.0.1:40001;branch=z9hG4bKdeadbeef0000000000000abc0;rport\r\n"
        ));
        assert!(text.contains("\r\nFrom: <sip:u33@example.com>;tag=0000000000000abc\r\n"));
        assert!(text.contains("\r\nTo: <sip:u44@example.com>\r\n"));
        assert!(text.contains("\r\nCSeq: 1 MESSAGE\r\n"));
        assert!(text.contains("\r\nP-Asserted-Identity: <sip:u33@example.com>\r\n"));
        assert!(text.ends_with("\r\n\r\nhello from loadgen"));
        let id = scan::CallId::of_message(&msg).expect("call-id");
        assert_eq!(
            id,
            scan::CallId {
                run: 0xdead_beef,
                seq: 0xabc,
                slot: 9
            }
        );
        assert!(content_length_is_right(&msg));
        assert_eq!(scan::frame(&msg), scan::Frame::Message(msg.len()));
    }

    #[test]
    fn register_and_publish_are_framed() {
        let p = params(false);
        let values = Values {
            seq: 5,
            slot: 0,
            attempt: 1,
            sender: 3,
            recipient: 3,
        };
        let mut reg = Vec::new();
        write_register(
            &mut reg,
            &p,
            &values,
            "127.0.0.1:50000".parse().expect("addr"),
            3600,
            Some("Digest x"),
        );
        let text = String::from_utf8(reg.clone()).expect("utf8");
        assert!(text.contains("Contact: <sip:u3@127.0.0.1:50000;transport=udp>"));
        assert!(text.contains("CSeq: 2 REGISTER\r\n"));
        assert!(text.contains("Authorization: Digest x\r\n"));
        assert!(content_length_is_right(&reg));
        let mut publish = Vec::new();
        write_publish(&mut publish, &p, &values, true, 3600, None);
        assert!(content_length_is_right(&publish));
        assert!(String::from_utf8_lossy(&publish).contains("active=\"true\""));
    }

    #[test]
    fn response_copies_headers_and_adds_tag() {
        let request = b"MESSAGE sip:u2@127.0.0.1:4000 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKs\r\nv: SIP/2.0/UDP 127.0.0.1:40001;branch=z9hG4bKc;rport=40001\r\nFrom: <sip:u1@example.com>;tag=a\r\nt: <sip:u2@example.com>\r\nCall-ID: c1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 2\r\n\r\nhi";
        let mut out = Vec::new();
        assert!(write_response(request, 200, "OK", "r1", &mut out));
        let text = String::from_utf8(out.clone()).expect("utf8");
        assert_eq!(
            text,
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKs\r\nVia: SIP/2.0/UDP 127.0.0.1:40001;branch=z9hG4bKc;rport=40001\r\nFrom: <sip:u1@example.com>;tag=a\r\nTo: <sip:u2@example.com>;tag=r1\r\nCall-ID: c1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
        );
        let mut tagged = Vec::new();
        let with_tag = b"MESSAGE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:u2@example.com>;tag=zz\r\nCall-ID: c\r\nCSeq: 1 MESSAGE\r\n\r\n";
        assert!(write_response(with_tag, 200, "OK", "r1", &mut tagged));
        assert!(String::from_utf8_lossy(&tagged).contains("To: <sip:u2@example.com>;tag=zz\r\n"));
        assert!(!write_response(
            b"MESSAGE sip:x SIP/2.0\r\nFrom: a\r\n\r\n",
            200,
            "OK",
            "t",
            &mut Vec::new()
        ));
    }

    #[test]
    fn response_keeps_every_via_in_order_and_writes_the_code() {
        let vias: Vec<String> = (0..7)
            .map(|i| format!("SIP/2.0/UDP 127.0.0.{i}:50{i}0;branch=z9hG4bK{i}"))
            .collect();
        let mut request = String::from("MESSAGE sip:x SIP/2.0\r\n");
        for v in &vias {
            request += &format!("Via: {v}\r\n");
        }
        request +=
            "From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: c\r\nCSeq: 9 MESSAGE\r\n\r\n";
        for (code, reason) in [(100, "Trying"), (200, "OK"), (603, "Decline"), (699, "X")] {
            let mut out = Vec::new();
            assert!(write_response(
                request.as_bytes(),
                code,
                reason,
                "t",
                &mut out
            ));
            let text = String::from_utf8(out).expect("utf8");
            assert!(
                text.starts_with(&format!("SIP/2.0 {code} {reason}\r\n")),
                "{text}"
            );
            let got: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix("Via: "))
                .collect();
            assert_eq!(got, vias, "{text}");
        }
        let mut digits = Vec::new();
        for v in [0u64, 7, 10, 99, 100, 65_535, u64::MAX] {
            digits.clear();
            push_decimal(&mut digits, v);
            assert_eq!(digits, v.to_string().as_bytes());
        }
    }

    #[test]
    fn digit_counts() {
        assert_eq!(decimal_digits(0), 1);
        assert_eq!(decimal_digits(9), 1);
        assert_eq!(decimal_digits(10), 2);
        assert_eq!(decimal_digits(u32::MAX), 10);
    }
}
