//! Responses from the slow path: the same stateless writer as the fast path, sent through the
//! transport handle (to the arriving TCP connection, or per §18.2.2 over UDP).
#![forbid(unsafe_code)]

use super::State;
use crate::sip::{ExtraHeader, View, via, write};
use crate::transport::{Dest, Source, Transport};

/// Where a response goes: the arriving connection, or the Via's address (RFC 3581 rport).
pub fn dest(view: &View<'_>, src: &Source) -> Dest {
    match (src.transport, src.conn) {
        (Transport::Tcp, Some(conn)) => Dest::Conn(conn),
        (Transport::Tcp, None) => Dest::Tcp(src.addr),
        (Transport::Udp, _) => match via::top_reply_facts(view) {
            Some((rport, port)) => {
                Dest::Udp(write::response_dest(rport, port, src.addr, Transport::Udp))
            }
            None => Dest::Udp(src.addr),
        },
    }
}

/// Writes a response with `extra` headers and sends it.
pub fn send(
    state: &mut State,
    view: &View<'_>,
    src: &Source,
    code: u16,
    reason: &str,
    extra: &[(&str, &[u8])],
) {
    let mut tag = [0u8; 16];
    let tag = write::derive_to_tag(view, state.cfg.secret, &mut tag);
    let mut out = Vec::with_capacity(
        512 + extra
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum::<usize>(),
    );
    write::write_response(
        view,
        src.addr,
        code,
        reason,
        tag,
        extra,
        ExtraHeader::None,
        &mut out,
    );
    state.metrics.slow_block().sent(code);
    state.queue(dest(view, src), out);
}

/// An error answer that may carry one extra header (`Min-Expires`, `Allow-Events`, `Accept`,
/// `Retry-After`) given as its name and text value.
pub fn send_error(
    state: &mut State,
    view: &View<'_>,
    src: &Source,
    code: u16,
    reason: &str,
    extra: Option<(&str, String)>,
) {
    match &extra {
        Some((name, value)) => send(state, view, src, code, reason, &[(name, value.as_bytes())]),
        None => send(state, view, src, code, reason, &[]),
    }
}
