//! Stateless responses from the fast path (RFC 3261 §8.2.6, §18.2.2; RFC 3581).
#![forbid(unsafe_code)]

use super::Shared;
use crate::sip::validate::Reject;
use crate::sip::{ExtraHeader, View, via, write};
use crate::transport::{Dest, Outbox, Source, Transport};

/// What OPTIONS advertises and 405/501 list: the methods this server actually serves.
pub const ALLOW: &str = "MESSAGE, OPTIONS, REGISTER, PUBLISH, SUBSCRIBE, NOTIFY, ACK";
/// Bodies a MESSAGE may carry through this server (it relays any type; these are the usual).
pub const ACCEPT: &str = "text/plain, message/cpim, application/im-iscomposing+xml, multipart/mixed, application/service-settings+xml";

/// Where a response to `view` goes: the arriving TCP connection, or over UDP the source IP and
/// the Via's port (`rport`: the source port), §18.2.2 / RFC 3581 §4.
pub fn dest(view: &View<'_>, src: &Source) -> Dest {
    match src.transport {
        Transport::Tcp => Dest::Reply,
        Transport::Udp => match via::top_reply_facts(view) {
            Some((rport, port)) => {
                Dest::Udp(write::response_dest(rport, port, src.addr, Transport::Udp))
            }
            None => Dest::Reply,
        },
    }
}

/// Writes and queues a response with extra headers.
#[allow(clippy::too_many_arguments)]
pub fn send(
    shared: &Shared,
    worker: usize,
    view: &View<'_>,
    src: &Source,
    code: u16,
    reason: &str,
    extra: &[(&str, &[u8])],
    out: &mut Outbox,
) {
    send_with(
        shared,
        worker,
        view,
        src,
        code,
        reason,
        extra,
        ExtraHeader::None,
        out,
    );
}

/// Answers a validation failure with the header it calls for (Allow, Accept, Unsupported).
pub fn reject(
    shared: &Shared,
    worker: usize,
    view: &View<'_>,
    src: &Source,
    rej: &Reject,
    out: &mut Outbox,
) {
    match rej.extra {
        // The validator's Allow lists every method it knows; we answer with what we serve.
        ExtraHeader::Allow => send_with(
            shared,
            worker,
            view,
            src,
            rej.code,
            rej.reason,
            &[("Allow", ALLOW.as_bytes())],
            ExtraHeader::None,
            out,
        ),
        other => send_with(
            shared,
            worker,
            view,
            src,
            rej.code,
            rej.reason,
            &[],
            other,
            out,
        ),
    }
}

/// 200 to OPTIONS with what we serve (RFC 3261 §11.2). Answered here, as the UAS, whatever
/// Max-Forwards says (RFC 4475 zeromf).
pub fn options(shared: &Shared, worker: usize, view: &View<'_>, src: &Source, out: &mut Outbox) {
    send(
        shared,
        worker,
        view,
        src,
        200,
        "OK",
        &[("Allow", ALLOW.as_bytes()), ("Accept", ACCEPT.as_bytes())],
        out,
    );
}

#[allow(clippy::too_many_arguments)]
fn send_with(
    shared: &Shared,
    worker: usize,
    view: &View<'_>,
    src: &Source,
    code: u16,
    reason: &str,
    extra: &[(&str, &[u8])],
    reject_extra: ExtraHeader,
    out: &mut Outbox,
) {
    let mut tag = [0u8; 16];
    let tag = write::derive_to_tag(view, shared.secret, &mut tag);
    write::write_response(
        view,
        src.addr,
        code,
        reason,
        tag,
        extra,
        reject_extra,
        out.buffer(),
    );
    out.push(dest(view, src));
    shared.metrics.block(worker).sent(code);
}
