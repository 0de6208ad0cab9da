//! What goes on the wire for the subscriber: the SUBSCRIBE body and request, branches and
//! identifiers, and the `Subscription-State` of a NOTIFY (RFC 6665 §8.2.3).
#![forbid(unsafe_code)]

use crate::glms::xcap::dom::escape_attr_into;

use super::machine::{ACCEPT, Action, BODY_TYPE, EVENT, SubscriberConfig};

/// The parsed `Subscription-State` (RFC 6665 §8.2.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SubState {
    pub kind: StateKind,
    pub expires_s: Option<u32>,
    pub reason: Option<String>,
    pub retry_after_s: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StateKind {
    Active,
    Pending,
    Terminated,
}

impl SubState {
    pub fn parse(v: &str) -> Option<SubState> {
        let mut parts = v.split(';');
        let kind = match parts.next()?.trim().to_ascii_lowercase().as_str() {
            "active" => StateKind::Active,
            "pending" => StateKind::Pending,
            "terminated" => StateKind::Terminated,
            // RFC 6665 §8.2.3: an unknown substate is treated as pending... only with a
            // well-formed token; an empty value is malformed.
            t if !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)) =>
            {
                StateKind::Pending
            }
            _ => return None,
        };
        let mut s = SubState {
            kind,
            expires_s: None,
            reason: None,
            retry_after_s: None,
        };
        for p in parts.take(16) {
            let (name, value) = p.split_once('=').unwrap_or((p, ""));
            let value = value.trim().trim_matches('"');
            match name.trim().to_ascii_lowercase().as_str() {
                "expires" => s.expires_s = value.parse().ok(),
                "retry-after" => s.retry_after_s = value.parse().ok(),
                "reason" => s.reason = Some(value.to_ascii_lowercase()),
                _ => {}
            }
        }
        Some(s)
    }
}

/// The XUI of an AoR: the SIP URI itself (`sip:bob@example.com`); a bare `user@host` gets the
/// `sip:` scheme.
pub(crate) fn xui_of(aor: &str) -> String {
    let aor = aor.trim().trim_start_matches('<').trim_end_matches('>');
    let lower = aor.get(..4).map(str::to_ascii_lowercase);
    if lower.as_deref() == Some("sip:")
        || lower.as_deref() == Some("tel:")
        || aor
            .get(..5)
            .is_some_and(|h| h.eq_ignore_ascii_case("sips:"))
    {
        aor.to_owned()
    } else {
        format!("sip:{aor}")
    }
}

pub(crate) fn domain_of_uri(uri: &str) -> &str {
    uri.rsplit('@')
        .next()
        .unwrap_or("imserver")
        .trim_end_matches('>')
}

/// The SUBSCRIBE body (SPEC 3.3): both documents, relative to the XCAP root.
pub fn subscribe_body(lists_sel: &str, rules_sel: &str) -> Vec<u8> {
    let mut s = String::with_capacity(320);
    s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    s.push_str("<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\">\n  <list>\n");
    for sel in [lists_sel, rules_sel] {
        s.push_str("    <entry uri=\"");
        escape_attr_into(sel, &mut s);
        s.push_str("\"/>\n");
    }
    s.push_str("  </list>\n</resource-lists>\n");
    s.into_bytes()
}

/// A branch that is the same for a retransmission (same Call-ID and CSeq) and differs otherwise.
pub fn branch_for(call_id: &str, cseq: u32) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in call_id.as_bytes().iter().chain(&cseq.to_be_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("z9hG4bK-sp-{h:016x}")
}

pub(crate) fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Writes an [`Action::SendSubscribe`] as a SIP request (SPEC 3.5, D4): Request-URI and To =
/// the AoR, From and P-Asserted-Identity = our identity, Via `SIP/2.0/<transport> <sent_by>`
/// with the action's branch. `None` for any other action.
pub fn render_subscribe(
    cfg: &SubscriberConfig,
    action: &Action,
    transport: &str,
    sent_by: &str,
) -> Option<Vec<u8>> {
    let Action::SendSubscribe {
        aor,
        call_id,
        from_tag,
        to_tag,
        cseq,
        expires_s,
        branch,
        body,
        ..
    } = action
    else {
        return None;
    };
    let uri = xui_of(aor);
    let to_tag = to_tag
        .as_ref()
        .map(|t| format!(";tag={t}"))
        .unwrap_or_default();
    let mut out = format!(
        "SUBSCRIBE {uri} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {sent_by};branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <{id}>;tag={from_tag}\r\n\
         To: <{uri}>{to_tag}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} SUBSCRIBE\r\n\
         Contact: <{contact}>\r\n\
         P-Asserted-Identity: <{id}>\r\n\
         Event: {EVENT}\r\n\
         Accept: {ACCEPT}\r\n\
         Expires: {expires_s}\r\n\
         Content-Type: {BODY_TYPE}\r\n\
         Content-Length: {len}\r\n\r\n",
        id = cfg.own_identity,
        contact = cfg.own_contact,
        len = body.len(),
    )
    .into_bytes();
    out.extend_from_slice(body);
    Some(out)
}
