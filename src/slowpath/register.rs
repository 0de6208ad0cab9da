//! REGISTER on the slow path (RFC 3261 §10.3; SPEC D7, D9): who may register what, then the
//! sans-IO registrar, then the response and the snapshot update.
#![forbid(unsafe_code)]

use std::fmt::Write as _;

use super::{State, respond};
use crate::policy::Identity;
use crate::registrar::{
    ContactInput, Contacts, RegisterRequest, SourceInfo, contact_from_message_sip,
    parse_contact_value,
};
use crate::sip::lex::CommaIter;
use crate::sip::{HeaderName, View, nameaddr, values};
use crate::transport::{Source, Transport};

/// The normalised identity in a name-addr header (To, From, P-Asserted-Identity).
pub(super) fn identity_of(view: &View<'_>, name: HeaderName) -> Option<Identity> {
    let v = view.header(name)?;
    let na = nameaddr::parse(v).ok()?;
    Identity::parse(na.uri).ok()
}

/// Every Contact value of the request (several headers, comma-separated values).
fn contacts(view: &View<'_>) -> Result<Contacts, &'static str> {
    let mut list = Vec::new();
    for value in view.values(HeaderName::Contact) {
        let mut it = CommaIter::new(value);
        while let Some((s, e)) = it.next_span() {
            let elem = std::str::from_utf8(&value[s..e])
                .map_err(|_| "Bad Request - Contact is not UTF-8")?;
            if elem == "*" {
                list.push(ContactInput {
                    uri: "*".into(),
                    expires_s: None,
                    q_milli: None,
                    params: String::new(),
                });
                continue;
            }
            list.push(parse_contact_value(elem).ok_or("Bad Request - Malformed Contact")?);
        }
    }
    if list.is_empty() {
        return Ok(Contacts::None);
    }
    if list.len() == 1 && list[0].uri == "*" {
        return Ok(Contacts::Star);
    }
    Ok(Contacts::List(list))
}

pub fn on_register(state: &mut State, view: &View<'_>, src: &Source) {
    // §10.3 step 5 / SPEC §2 item 1: the AoR is the To URI (in the third-party form the
    // Request-URI names the AS itself).
    let Some(aor) = identity_of(view, HeaderName::To) else {
        respond::send(state, view, src, 400, "Bad Request - Unusable To URI", &[]);
        return;
    };
    let Ok(aor_text) = std::str::from_utf8(aor.as_bytes()) else {
        respond::send(state, view, src, 400, "Bad Request - AoR is not UTF-8", &[]);
        return;
    };
    let trusted = state.cfg.trust.contains(src.addr.ip());
    if !trusted && !state.authorize(view, src, aor.as_bytes()) {
        return;
    }
    let call_id = view
        .header(HeaderName::CallId)
        .and_then(|c| std::str::from_utf8(c).ok())
        .unwrap_or("");
    let cseq = view
        .header(HeaderName::CSeq)
        .and_then(|c| values::cseq(c).ok())
        .map_or(0, |c| c.seq);
    let expires_header_s = view
        .header(HeaderName::Expires)
        .and_then(|e| values::expires(e).ok());
    // D9: from a trusted core, the UE's contact is inside a message/sip body when there is one.
    let embedded = trusted
        && view
            .header(HeaderName::ContentType)
            .is_some_and(|t| t.len() >= 11 && t[..11].eq_ignore_ascii_case(b"message/sip"));
    let contacts = match embedded
        .then(|| contact_from_message_sip(view.body()))
        .flatten()
    {
        Some(c) => Ok(Contacts::List(vec![c])),
        None => contacts(view),
    };
    let contacts = match contacts {
        Ok(c) => c,
        Err(reason) => {
            respond::send(state, view, src, 400, reason, &[]);
            return;
        }
    };
    let req = RegisterRequest {
        aor: aor_text,
        call_id,
        cseq,
        contacts,
        expires_header_s,
        source: SourceInfo {
            addr: src.addr,
            tcp: src.transport == Transport::Tcp,
            conn: src.conn.map(|c| {
                (u64::from(c.worker) << 48) | (u64::from(c.generation) << 32) | u64::from(c.token)
            }),
        },
        third_party: trusted,
    };
    let now = state.now_ms();
    match state.registrar.register(now, req) {
        Ok(ok) => {
            // §10.3 step 8: the 200 lists every current binding with its remaining lifetime.
            let mut contact_lines = String::new();
            for (i, b) in ok.bindings.iter().enumerate() {
                if i > 0 {
                    contact_lines.push_str(", ");
                }
                let _ = write!(contact_lines, "<{}>;expires={}", b.contact_uri, b.expires_s);
            }
            if contact_lines.is_empty() {
                respond::send(state, view, src, 200, "OK", &[]);
            } else {
                respond::send(
                    state,
                    view,
                    src,
                    200,
                    "OK",
                    &[("Contact", contact_lines.as_bytes())],
                );
            }
            state.apply_registrar_events(&ok.events);
        }
        Err(e) => {
            let extra = e
                .extra_header()
                .map(|h| (h.name(), h.value_s().to_string()));
            respond::send_error(state, view, src, e.status(), e.reason(), extra);
        }
    }
}
