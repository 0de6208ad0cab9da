//! A fast path on its own, for benchmarks and tests that drive [`FastPath`](super::FastPath)
//! directly (no sockets): the settings of a server on 127.0.0.1:5060 that trusts 127.0.0.1 as
//! its SIP/IP Core, answers blocked senders 603 and has no outbound proxy.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use super::Shared;
use crate::auth::{Credentials, TrustList};
use crate::config::BlockCode;
use crate::gate::Gate;
use crate::metrics::Metrics;
use crate::policy::PolicyTable;
use crate::sip::validate::Limits;
use crate::slowpath::{SlowReceiver, slow_queue};
use crate::transport::{Source, Transport};

/// What the fast path shares, over `policy`, and the receiving end of its slow-path queue (keep
/// it to see what was queued; drop it and queued requests are refused with 503).
pub fn loopback_shared(policy: PolicyTable) -> (Arc<Shared>, SlowReceiver) {
    let (slow, rx) = slow_queue(16);
    let shared = Shared {
        policy: Arc::new(policy),
        metrics: Arc::new(Metrics::new(2)),
        slow,
        trust: TrustList::parse_list("127.0.0.1/32").expect("a valid list"),
        limits: Limits::default(),
        secret: 7,
        own_host: "127.0.0.1".into(),
        own_port: 5060,
        block: BlockCode::Decline,
        retry_after: "5".into(),
        route: None,
        gate: Gate::new(true, "example.com", Credentials::new()).expect("a valid realm"),
    };
    (Arc::new(shared), rx)
}

/// A UDP datagram's source as the worker on 127.0.0.1:5060 sees it, from `from`.
pub fn udp_source(from: SocketAddr) -> Source {
    Source {
        addr: from,
        local: "127.0.0.1:5060".parse().expect("an address"),
        transport: Transport::Udp,
        conn: None,
    }
}
