//! The fast path: one [`FastPath`] per transport worker decides every MESSAGE and answers or
//! relays it statelessly; everything stateful goes to the slow path over a bounded queue.
//!
//! It reads only immutable policy snapshots ([`crate::policy::PolicyTable`]), writes only into
//! the worker's preallocated outbox, and takes no lock: a MESSAGE costs one scan, two identity
//! normalisations into stack buffers, one snapshot probe and one write. No XML, disk or HTTP.
//!
//! ```text
//!  datagram / framed TCP message
//!    │ scan ──error──▶ 400/505/513 with a reason (or drop + count when unroutable)
//!    ▼
//!  response? ──▶ our relay Via ─▶ pop it, send to the next Via (RFC 3261 §16.7, §18.2.2)
//!    │           our slow-path Via ─▶ slow queue
//!    ▼
//!  validate (§8.2) ──reject──▶ 4xx/5xx with the header it needs (Allow, Accept, Unsupported)
//!    ▼
//!  MESSAGE ─▶ recipient (D8) ─▶ snapshot ─▶ none: 404 │ ISB / blocked: 603 (D1) │
//!             no binding: 480 │ policy pending: 480 + Retry-After (D6) │ relay (D10)
//!  OPTIONS ─▶ 200 + Allow + Accept          ACK ─▶ absorbed
//!  REGISTER, PUBLISH, SUBSCRIBE, NOTIFY ─▶ slow queue (full: 503 + Retry-After, D12)
//!  INVITE & co ─▶ 405 + Allow               BYE, CANCEL ─▶ 481 (no dialogs here)
//! ```
#![forbid(unsafe_code)]

pub mod bench_support;
mod message;
mod reply;

use std::sync::Arc;

use crate::auth::trust::TrustList;
use crate::config::BlockCode;
use crate::metrics::{DropReason, Metrics};
use crate::policy::PolicyTable;
use crate::sip::validate::{self, Limits};
use crate::sip::{self, HeaderName, Method, Parsed, ScanError, View, via};
use crate::slowpath::{SlowJob, SlowQueue};
use crate::transport::{Dest, Framing, Handler, Outbox, Source, Transport};

/// Branches of requests the slow path originates start with this, so their responses find it.
/// Relayed requests carry `z9hG4bK` plus 16 hex digits, which never contain `-`.
pub const SLOW_BRANCH_PREFIX: &[u8] = b"z9hG4bK-sp-";

/// Most datagrams of one receive batch whose recipients are prefetched (the rest are handled
/// without: by then the first ones' lines are the ones worth keeping in L1).
const PREFETCH_MAX: usize = 32;

/// What every worker shares: read-only after start-up, except the policy table (snapshots).
pub struct Shared {
    pub policy: Arc<PolicyTable>,
    pub metrics: Arc<Metrics>,
    pub slow: SlowQueue,
    pub trust: TrustList,
    pub limits: Limits,
    /// Key for derived To-tags and relay branches (per process).
    pub secret: u64,
    /// Host and port written in our own Via (and recognised in responses).
    pub own_host: String,
    pub own_port: u16,
    pub block: BlockCode,
    /// `Retry-After` value (seconds, as text) on 480 pending and 503.
    pub retry_after: String,
    /// Route header value for relayed MESSAGEs when an outbound proxy is configured (D10).
    pub route: Option<Vec<u8>>,
    /// Digest for untrusted senders (D7).
    pub gate: Arc<crate::gate::Gate>,
}

/// One worker's fast path.
pub struct FastPath {
    shared: Arc<Shared>,
    worker: usize,
    parsed: Parsed,
    ids: message::Scratch,
}

impl FastPath {
    pub fn new(shared: Arc<Shared>, worker: usize) -> Self {
        Self {
            shared,
            worker,
            parsed: Parsed::new(),
            ids: message::Scratch::default(),
        }
    }

    /// Handles one whole message: a datagram, or a message framed off a stream.
    pub fn handle(&mut self, msg: &[u8], src: &Source, out: &mut Outbox) {
        let scanned = self.parsed.scan_datagram(msg);
        let view = self.parsed.view(msg);
        if let Err(e) = scanned {
            scan_failed(&self.shared, self.worker, &view, e, src, out);
            return;
        }
        if view.is_response() {
            on_response(&self.shared, self.worker, &view, src, out);
            return;
        }
        let counters = self.shared.metrics.block(self.worker);
        counters.request(view.method_bytes());
        // D12: a UDP request over the limit gets 513 (checked after scanning so it can be routed).
        if src.transport == Transport::Udp && msg.len() > self.shared.limits.max_udp_len {
            reply::send(
                &self.shared,
                self.worker,
                &view,
                src,
                513,
                "Message Too Large",
                &[],
                out,
            );
            return;
        }
        // A MESSAGE's Request-URI was parsed by the batch's prefetch: validation takes it.
        let peeked = match view.method() {
            Method::Message => self.ids.peek_hint(view.request_uri()),
            _ => None,
        };
        let (hint, parsed_ruri) = peeked.map_or((None, None), |(h, u)| (Some(h), Some(u)));
        let ruri = match validate::check_request_parsed(&view, &self.shared.limits, parsed_ruri) {
            Ok(ruri) => ruri,
            Err(rej) => {
                reply::reject(&self.shared, self.worker, &view, src, &rej, out);
                return;
            }
        };
        match view.method() {
            Method::Message => message::on_message(
                &self.shared,
                self.worker,
                &mut self.ids,
                &view,
                message::RequestUri {
                    parsed: &ruri,
                    hint,
                },
                src,
                out,
            ),
            Method::Options => reply::options(&self.shared, self.worker, &view, src, out),
            // RFC 3261 §17.2.1: an ACK for a non-2xx final response is absorbed; we keep no
            // INVITE transactions, so every ACK ends here.
            Method::Ack => {}
            Method::Register | Method::Publish | Method::Subscribe | Method::Notify => {
                to_slow(&self.shared, self.worker, &view, src, out);
            }
            // No dialogs and no INVITE transactions exist here (§15.1.2, §9.2).
            Method::Bye | Method::Cancel => {
                reply::send(
                    &self.shared,
                    self.worker,
                    &view,
                    src,
                    481,
                    "Call/Transaction Does Not Exist",
                    &[],
                    out,
                );
            }
            _ => {
                let rej = validate::Reject {
                    code: 405,
                    reason: "Method Not Allowed",
                    extra: sip::ExtraHeader::Allow,
                };
                reply::reject(&self.shared, self.worker, &view, src, &rej, out);
            }
        }
    }
}

/// A response: ours to relay back (pop our Via), the slow path's, or not ours (dropped).
fn on_response(shared: &Shared, worker: usize, view: &View<'_>, src: &Source, out: &mut Outbox) {
    let counters = shared.metrics.block(worker);
    if validate::check_response(view).is_err() {
        counters.dropped(DropReason::Malformed);
        return;
    }
    let branch_is_slow = via::top_branch(view).is_some_and(|b| b.starts_with(SLOW_BRANCH_PREFIX));
    if branch_is_slow {
        if shared
            .slow
            .try_push(SlowJob::new(view.bytes(), src))
            .is_err()
        {
            counters.dropped(DropReason::SlowQueueFull);
        }
        return;
    }
    let own = sip::write::OwnVia {
        host: &shared.own_host,
        port: shared.own_port,
        branch_prefix: via::MAGIC_COOKIE,
    };
    let code = view.status();
    match sip::write::write_relay_response(view, &own, out.buffer()) {
        Ok(hop) => {
            let dest = match (
                hop.transport,
                hop.popped.value(crate::transport::ConnRef::PARAM_NAME),
            ) {
                (Transport::Tcp, Some(cid)) => match crate::transport::ConnRef::parse(cid) {
                    Some(conn) => Dest::Conn(conn),
                    None => Dest::Tcp(hop.addr),
                },
                (Transport::Tcp, None) => Dest::Tcp(hop.addr),
                (Transport::Udp, _) => Dest::Udp(hop.addr),
            };
            out.push(dest);
            counters.relayed_response(code);
        }
        Err(sip::write::RelayDrop::NotOurs) => counters.dropped(DropReason::ResponseNotOurs),
        Err(_) => counters.dropped(DropReason::ResponseUnroutable),
    }
}

/// A message that did not scan: answer when a response can be routed, else drop and count.
fn scan_failed(
    shared: &Shared,
    worker: usize,
    view: &View<'_>,
    e: ScanError,
    src: &Source,
    out: &mut Outbox,
) {
    let counters = shared.metrics.block(worker);
    if view.is_request() && e.can_reply() {
        counters.request(view.method_bytes());
        reply::send(shared, worker, view, src, e.status(), e.reason(), &[], out);
    } else {
        counters.dropped(DropReason::Malformed);
    }
}

/// Queues a request for the slow path; a full queue is answered 503 + Retry-After (D12).
fn to_slow(shared: &Shared, worker: usize, view: &View<'_>, src: &Source, out: &mut Outbox) {
    if shared
        .slow
        .try_push(SlowJob::new(view.bytes(), src))
        .is_err()
    {
        shared
            .metrics
            .block(worker)
            .dropped(DropReason::SlowQueueFull);
        let ra = shared.retry_after.as_bytes();
        reply::send(
            shared,
            worker,
            view,
            src,
            503,
            "Service Unavailable - Overloaded",
            &[("Retry-After", ra)],
            out,
        );
    }
}

impl Handler for FastPath {
    fn frame(&mut self, buf: &[u8]) -> Framing {
        match self.parsed.scan_stream(buf, self.shared.limits.max_tcp_len) {
            Ok(sip::Framing::Incomplete) => Framing::Incomplete,
            Ok(sip::Framing::Message { len }) => Framing::Message { len },
            Ok(sip::Framing::KeepAlive { len }) => Framing::KeepAlive { len },
            Ok(sip::Framing::Skip { len }) => Framing::Skip { len },
            Err(_) => Framing::Bad,
        }
    }

    fn on_message(&mut self, msg: &[u8], src: &Source, out: &mut Outbox) {
        self.handle(msg, src, out);
    }

    /// Looks the batch's MESSAGE recipients up ahead of handling them, in three passes (their
    /// shard cells, the slots those cells point to, then the entries those slots point to), so
    /// that a large table's cache misses overlap instead of stalling each MESSAGE in turn. Each
    /// pass only starts loads; by the next pass they have had the whole batch's time to land.
    fn prefetch(&mut self, batch: &mut dyn Iterator<Item = &[u8]>) {
        let mut hashes = [0u64; PREFETCH_MAX];
        let mut n = 0;
        let policy = &self.shared.policy;
        self.ids.clear_hints();
        for msg in batch.take(PREFETCH_MAX) {
            if let Some(hash) = self.ids.hint_recipient(msg, policy) {
                hashes[n] = hash;
                n += 1;
            }
        }
        for &hash in &hashes[..n] {
            policy.prefetch_slot(hash);
        }
        for &hash in &hashes[..n] {
            policy.prefetch_entry(hash);
        }
    }

    fn on_bad_stream(&mut self, buf: &[u8], src: &Source, out: &mut Outbox) {
        // Rescan to learn why; answer 400 (missing or bad Content-Length) or 513 (too large)
        // when enough of the head is there to route a response (D12, §18.3).
        let e = match self.parsed.scan_stream(buf, self.shared.limits.max_tcp_len) {
            Err(e) => e,
            Ok(_) => ScanError::TooLarge,
        };
        let view = self.parsed.view(buf);
        let counters = self.shared.metrics.block(self.worker);
        if view.is_request() && e.can_reply() && view.header(HeaderName::Via).is_some() {
            reply::send(
                &self.shared,
                self.worker,
                &view,
                src,
                e.status(),
                e.reason(),
                &[],
                out,
            );
        } else {
            counters.dropped(DropReason::Malformed);
        }
    }
}
