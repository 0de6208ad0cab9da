//! Small, bounded readers for what the registrar needs out of contact text: feature tags
//! (RFC 3840), the URI comparison key (RFC 3261 §19.1.4, simplified), an IP-literal host:port,
//! and the Contact of a REGISTER or 200 carried in a `message/sip` body (SPEC D9).

#![forbid(unsafe_code)]

use std::net::{IpAddr, SocketAddr};

use super::types::ContactInput;

/// Longest `message/sip` body we look into.
const MAX_MESSAGE_SIP_BYTES: usize = 65_536;
/// Most header lines of an embedded message we walk before giving up.
const MAX_EMBEDDED_LINES: usize = 256;
/// Most parameters of one contact we walk.
const MAX_PARAMS: usize = 64;

/// The OMA IM feature tag (OMA-TS-SIMPLE_IM, registered per RFC 3840 §9 as `g.oma.sip-im`).
const OMA_IM_TAG: &str = "+g.oma.sip-im";

/// Splits `;a=1; b ;c="x;y"` into `(name, value)` pairs, honouring quoted strings.
fn params(text: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    let mut rest = text;
    std::iter::from_fn(move || {
        loop {
            if rest.is_empty() {
                return None;
            }
            let end = split_point(rest, b';');
            let (item, tail) = rest.split_at(end);
            rest = tail.strip_prefix(';').unwrap_or(tail);
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            return Some(match item.split_once('=') {
                Some((name, value)) => (name.trim(), Some(value.trim())),
                None => (item, None),
            });
        }
    })
    .take(MAX_PARAMS)
}

/// Index of the first `sep` outside double quotes and angle brackets, or the length.
fn split_point(text: &str, sep: u8) -> usize {
    let mut quoted = false;
    let mut angle = false;
    let mut escaped = false;
    for (i, byte) in text.bytes().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match byte {
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'<' if !quoted => angle = true,
            b'>' if !quoted => angle = false,
            _ if byte == sep && !quoted && !angle => return i,
            _ => {}
        }
    }
    text.len()
}

/// Equal ignoring ASCII case and any whitespace: the seed writes the tag as `; + g.oma.sip-im`.
fn eq_loose(text: &str, wanted: &str) -> bool {
    let mut have = text.bytes().filter(|b| !b.is_ascii_whitespace());
    let mut want = wanted.bytes();
    loop {
        match (have.next(), want.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(&b) => {}
            _ => return false,
        }
    }
}

/// Whether raw contact parameters carry `+g.oma.sip-im` (RFC 3840 §9: a feature parameter with no
/// value is boolean TRUE; an explicit `"FALSE"` switches it off).
pub fn has_oma_im_feature_tag(params_text: &str) -> bool {
    params(params_text).any(|(name, value)| {
        eq_loose(name, OMA_IM_TAG)
            && !value.is_some_and(|v| v.trim_matches('"').eq_ignore_ascii_case("FALSE"))
    })
}

/// The key two contact URIs are compared by: scheme and host part case-insensitive, user part
/// exact (RFC 3261 §19.1.4, without reordering of URI parameters).
pub(super) fn uri_key(uri: &str) -> String {
    let uri = strip_angles(uri);
    let Some((scheme, rest)) = uri.split_once(':') else {
        return uri.to_ascii_lowercase();
    };
    let mut key = scheme.to_ascii_lowercase();
    key.push(':');
    match rest.rfind('@') {
        Some(at) => {
            key.push_str(&rest[..at]);
            key.push('@');
            key.push_str(&rest[at + 1..].to_ascii_lowercase());
        }
        None => key.push_str(&rest.to_ascii_lowercase()),
    }
    key
}

pub(super) fn strip_angles(uri: &str) -> &str {
    let uri = uri.trim();
    uri.strip_prefix('<')
        .and_then(|u| u.strip_suffix('>'))
        .unwrap_or(uri)
        .trim()
}

/// The contact's `host:port` when the host is an IP literal (default port 5060, 5061 for sips),
/// and whether the URI asks for `transport=tcp`.
pub(super) fn uri_socket_addr(uri: &str) -> (Option<SocketAddr>, bool) {
    let uri = strip_angles(uri);
    let Some((scheme, rest)) = uri.split_once(':') else {
        return (None, false);
    };
    let hostport_and_params = match rest.rfind('@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    let (hostport, uri_params) = match hostport_and_params.find([';', '?']) {
        Some(i) => hostport_and_params.split_at(i),
        None => (hostport_and_params, ""),
    };
    let tcp = params(uri_params).any(|(name, value)| {
        name.eq_ignore_ascii_case("transport")
            && value.is_some_and(|v| v.eq_ignore_ascii_case("tcp"))
    });
    let default_port = if scheme.eq_ignore_ascii_case("sips") {
        5061
    } else {
        5060
    };
    (parse_hostport(hostport, default_port), tcp)
}

fn parse_hostport(hostport: &str, default_port: u16) -> Option<SocketAddr> {
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, tail) = v6.split_once(']')?;
        (host, tail.strip_prefix(':'))
    } else {
        match hostport.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    let ip: IpAddr = host.parse().ok()?;
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default_port,
    };
    Some(SocketAddr::new(ip, port))
}

/// Parses one Contact header value (the first contact when there are several) into a
/// [`ContactInput`]. `None` for `*` or when there is no URI.
pub fn parse_contact_value(value: &str) -> Option<ContactInput> {
    let first = value[..split_point(value, b',')].trim();
    if first.is_empty() || first == "*" {
        return None;
    }
    // RFC 3261 §20: with angle brackets the parameters after `>` are the header's; without them
    // everything after the first `;` is.
    let (uri, params_text) = match first.find('<') {
        Some(open) => {
            let close = open + first[open..].find('>')?;
            (&first[open + 1..close], first[close + 1..].trim())
        }
        None => match first.find(';') {
            Some(semi) => (&first[..semi], first[semi..].trim()),
            None => (first, ""),
        },
    };
    let uri = uri.trim();
    if uri.is_empty() {
        return None;
    }
    let mut contact = ContactInput {
        uri: uri.to_owned(),
        expires_s: None,
        q_milli: None,
        params: params_text.to_owned(),
    };
    for (name, value) in params(params_text) {
        if name.eq_ignore_ascii_case("expires") {
            contact.expires_s = value.and_then(parse_delta_seconds);
        } else if name.eq_ignore_ascii_case("q") {
            contact.q_milli = value.and_then(parse_qvalue);
        }
    }
    Some(contact)
}

/// RFC 3261 §10.2.1.1 / §20.19: delta-seconds; a value past 2^32-1 means the maximum.
fn parse_delta_seconds(text: &str) -> Option<u32> {
    let text = text.trim_matches('"');
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse::<u32>().unwrap_or(u32::MAX))
}

/// RFC 3261 §25.1 qvalue: `0[.ddd]` or `1[.000]`, in thousandths.
pub(super) fn parse_qvalue(text: &str) -> Option<u16> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut milli: u16 = 0;
    for (i, digit) in frac.bytes().enumerate() {
        milli += u16::from(digit - b'0') * [100, 10, 1][i];
    }
    match int {
        "0" => Some(milli),
        "1" if milli == 0 => Some(1000),
        _ => None,
    }
}

/// Finds the Contact of the REGISTER request or 200 response carried as a `message/sip` body of a
/// third-party REGISTER (SPEC D9, 3GPP TS 24.229 §5.4.1.7). Knows the compact form `m:` and
/// unfolds continuation lines. Returns the first contact when the message lists several.
pub fn contact_from_message_sip(body: &[u8]) -> Option<ContactInput> {
    let body = &body[..body.len().min(MAX_MESSAGE_SIP_BYTES)];
    let text = String::from_utf8_lossy(body);
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start_line = lines.next()?.trim();
    // RFC 3261 §7.1/§7.2: a request line ends with the version, a status line starts with it.
    if !(start_line.starts_with("SIP/2.0 ") || start_line.ends_with(" SIP/2.0")) {
        return None;
    }
    let mut current: Option<String> = None;
    for line in lines.take(MAX_EMBEDDED_LINES) {
        if line.starts_with([' ', '\t']) {
            // RFC 3261 §7.3.1: a line starting with whitespace continues the previous header.
            if let Some(header) = current.as_mut() {
                header.push(' ');
                header.push_str(line.trim());
            }
            continue;
        }
        if let Some(found) = current.take().and_then(|h| contact_of_header(&h)) {
            return Some(found);
        }
        if line.trim().is_empty() {
            return None; // end of the header section
        }
        current = Some(line.to_owned());
    }
    current.and_then(|h| contact_of_header(&h))
}

fn contact_of_header(header: &str) -> Option<ContactInput> {
    let (name, value) = header.split_once(':')?;
    let name = name.trim();
    if name.eq_ignore_ascii_case("contact") || name.eq_ignore_ascii_case("m") {
        parse_contact_value(value)
    } else {
        None
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn feature_tag_in_the_seeds_spacing() {
        assert!(has_oma_im_feature_tag("; + g.oma.sip-im"));
        assert!(has_oma_im_feature_tag(";+g.oma.sip-im"));
        assert!(has_oma_im_feature_tag(";expires=60;+G.OMA.SIP-IM;q=0.5"));
        assert!(has_oma_im_feature_tag("; +g.oma.sip-im=\"TRUE\""));
        assert!(!has_oma_im_feature_tag("; +g.oma.sip-im=\"FALSE\""));
        assert!(!has_oma_im_feature_tag(";+g.oma.sip-imx;+sip.audio"));
        assert!(!has_oma_im_feature_tag(";description=\"+g.oma.sip-im\""));
        assert!(!has_oma_im_feature_tag(""));
    }

    #[test]
    fn uri_keys_ignore_host_case_not_user_case() {
        assert_eq!(
            uri_key("<SIP:bob@EXAMPLE.com>"),
            uri_key("sip:bob@example.com")
        );
        assert_ne!(
            uri_key("sip:Bob@example.com"),
            uri_key("sip:bob@example.com")
        );
    }

    #[test]
    fn ip_literals_resolve_and_names_do_not() {
        let (addr, tcp) = uri_socket_addr("sip:bob@192.0.2.7:5062;transport=TCP");
        assert_eq!(addr, Some("192.0.2.7:5062".parse().unwrap()));
        assert!(tcp);
        let (addr, tcp) = uri_socket_addr("<sips:[2001:db8::1]>");
        assert_eq!(addr, Some("[2001:db8::1]:5061".parse().unwrap()));
        assert!(!tcp);
        assert_eq!(uri_socket_addr("sip:bob@host.example.com:5060").0, None);
        assert_eq!(uri_socket_addr("sip:bob@192.0.2.7:99999").0, None);
        assert_eq!(uri_socket_addr("garbage").0, None);
    }

    #[test]
    fn qvalues() {
        assert_eq!(parse_qvalue("0.7"), Some(700));
        assert_eq!(parse_qvalue("0.05"), Some(50));
        assert_eq!(parse_qvalue("1"), Some(1000));
        assert_eq!(parse_qvalue("1.000"), Some(1000));
        assert_eq!(parse_qvalue("0"), Some(0));
        assert_eq!(parse_qvalue("1.5"), None);
        assert_eq!(parse_qvalue("0.1234"), None);
        assert_eq!(parse_qvalue("x"), None);
    }

    #[test]
    fn contact_values() {
        let c =
            parse_contact_value("\"Bob, B\" <sip:bob@192.0.2.7;lr>;expires=600;q=0.5, <sip:x@y>")
                .unwrap();
        assert_eq!(c.uri, "sip:bob@192.0.2.7;lr");
        assert_eq!(c.expires_s, Some(600));
        assert_eq!(c.q_milli, Some(500));
        assert_eq!(c.params, ";expires=600;q=0.5");
        let c = parse_contact_value("sip:bob@host;expires=99999999999").unwrap();
        assert_eq!(c.uri, "sip:bob@host");
        assert_eq!(c.expires_s, Some(u32::MAX));
        assert_eq!(parse_contact_value(" * "), None);
        assert_eq!(parse_contact_value("<>"), None);
        assert_eq!(parse_contact_value("<sip:unterminated"), None);
    }

    #[test]
    fn message_sip_without_a_start_line_is_ignored() {
        assert_eq!(
            contact_from_message_sip(b"Contact: <sip:a@b>\r\n\r\n"),
            None
        );
        assert_eq!(contact_from_message_sip(b""), None);
        assert_eq!(contact_from_message_sip(&[0xff, 0xfe, 0x00]), None);
    }
}
