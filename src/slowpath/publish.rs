//! PUBLISH of service settings on the slow path (RFC 3903; SPEC D7, D11): the publisher is the
//! asserted (trusted peer) or authenticated identity, never the Request-URI.
#![forbid(unsafe_code)]

use super::register::identity_of;
use super::{State, respond};
use crate::settings::{ExtraHeader, PublishRequest};
use crate::sip::{HeaderName, View, values};
use crate::transport::Source;

pub fn on_publish(state: &mut State, view: &View<'_>, src: &Source) {
    let trusted = state.cfg.trust.contains(src.addr.ip());
    // D11 / D7: from the core, P-Asserted-Identity names the publisher (the seed's Request-URI
    // is the client's URI, not the AoR); otherwise From, which Digest must prove.
    let publisher = if trusted {
        identity_of(view, HeaderName::PAssertedIdentity)
            .or_else(|| identity_of(view, HeaderName::From))
    } else {
        identity_of(view, HeaderName::From)
    };
    let Some(publisher) = publisher else {
        respond::send(
            state,
            view,
            src,
            400,
            "Bad Request - No Usable Publisher Identity",
            &[],
        );
        return;
    };
    if !trusted && !state.authorize(view, src, publisher.as_bytes()) {
        return;
    }
    let Ok(aor) = std::str::from_utf8(publisher.as_bytes()) else {
        respond::send(state, view, src, 400, "Bad Request - AoR is not UTF-8", &[]);
        return;
    };
    let text = |name| view.header(name).and_then(|v| std::str::from_utf8(v).ok());
    let expires_s = match view.header(HeaderName::Expires) {
        None => None,
        Some(v) => match values::expires(v) {
            Ok(s) => Some(s),
            Err(_) => {
                respond::send(
                    state,
                    view,
                    src,
                    400,
                    "Bad Request - Malformed Expires",
                    &[],
                );
                return;
            }
        },
    };
    let body = view.body();
    let req = PublishRequest {
        aor,
        event: text(HeaderName::Event).unwrap_or(""),
        content_type: text(HeaderName::ContentType),
        if_match: text(HeaderName::SipIfMatch),
        expires_s,
        body: (!body.is_empty()).then_some(body),
    };
    let now = state.now_ms();
    match state.settings.publish(now, req) {
        Ok(ok) => {
            let expires = ok.expires_s.to_string();
            if ok.expires_s == 0 {
                respond::send(
                    state,
                    view,
                    src,
                    200,
                    "OK",
                    &[("Expires", expires.as_bytes())],
                );
            } else {
                respond::send(
                    state,
                    view,
                    src,
                    200,
                    "OK",
                    &[
                        ("SIP-ETag", ok.etag.as_str().as_bytes()),
                        ("Expires", expires.as_bytes()),
                    ],
                );
            }
            if ok.effective_changed {
                state.publish_isb(aor);
            }
        }
        Err(e) => {
            let extra = e.extra_header().map(|h| {
                let value = match h {
                    ExtraHeader::MinExpires(v) | ExtraHeader::RetryAfter(v) => v.to_string(),
                    ExtraHeader::AllowEvents(v) | ExtraHeader::Accept(v) => v.to_owned(),
                };
                (h.name(), value)
            });
            respond::send_error(state, view, src, e.status(), e.reason(), extra);
        }
    }
}
