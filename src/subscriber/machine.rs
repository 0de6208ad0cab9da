//! The per-AoR xcap-diff subscriber (SPEC 3.6 on RFC 6665), sans-IO: the slow path feeds it
//! bindings, SUBSCRIBE responses, NOTIFYs, fetch results and the clock (`now_ms`), and sends
//! the [`Action`]s [`Subscriber::poll`] returns. Document handling is in `docs.rs`.
#![forbid(unsafe_code)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;

use crate::glms::xcap::uri::encode_segment;

use super::cache::{CacheChange, DocSlot};
use super::compile::{CompileError, Compiled};
use super::lists::Root;
use super::wire::{
    StateKind, SubState, branch_for, domain_of_uri, splitmix64, subscribe_body, xui_of,
};

/// `Event` of every SUBSCRIBE we send (D3, RFC 5875 §4.2).
pub const EVENT: &str = "xcap-diff;diff-processing=aggregate";
/// `Accept` of every SUBSCRIBE (RFC 5875 §4.3).
pub const ACCEPT: &str = "application/xcap-diff+xml";
/// `Content-Type` of the SUBSCRIBE body (RFC 5875 §4.1).
pub const BODY_TYPE: &str = "application/resource-lists+xml";
/// The AUIDs of the two documents (SPEC D2, G1).
pub const AUID_LISTS: &str = "resource-lists";
pub const AUID_RULES: &str = "org.openmobilealliance.access-rules";
/// The largest Min-Expires we follow after a 423 (a limit on everything).
const MAX_EXPIRES_S: u32 = 86_400;
/// Timer E doubles up to T2 (RFC 3261 §17.1.2.2).
const T2_MS: u64 = 4_000;

/// Configuration of the subscriber.
#[derive(Clone, Debug)]
pub struct SubscriberConfig {
    /// The GLMS's SIP address (D4): where the slow path sends our SUBSCRIBEs.
    pub glms: SocketAddr,
    /// `sip:im-server@<domain>` (From, P-Asserted-Identity; X-XCAP-Asserted-Identity).
    pub own_identity: String,
    /// Our Contact URI.
    pub own_contact: String,
    /// Requested subscription duration.
    pub expires_s: u32,
    /// Refresh when this fraction of the granted duration has passed (SPEC 3.2: about 0.8).
    pub refresh_ratio: f32,
    /// D5: unsubscribe this long after the last binding went.
    pub grace_s: u32,
    /// Back-off after a transient failure: first delay, cap.
    pub retry_backoff_ms: (u64, u64),
    /// Back-off after a refusal (489/403/404, terminated;reason=rejected|noresource|invariant).
    pub failed_retry_ms: u64,
    /// `http://host:port/xcap-root`: documents are fetched below it; references must stay in it.
    pub xcap_root_url: String,
    /// Most AoRs in the table.
    pub max_aors: usize,
    /// RFC 6665 §4.1.2.4 Timer N (64·T1): how long to wait for the first NOTIFY.
    pub timer_n_ms: u64,
    /// RFC 3261 §17.1.2.2 Timer F (64·T1): how long to wait for a final response.
    pub transaction_timeout_ms: u64,
    /// RFC 3261 Timer E start (T1) when the GLMS is reached over UDP; `None` over TCP.
    pub retransmit_t1_ms: Option<u64>,
    /// Mixed into Call-IDs and tags so that they differ across restarts (fill from a RNG).
    pub id_seed: u64,
    /// Most referenced (non-own) documents cached per AoR.
    pub max_extra_docs: usize,
}

impl SubscriberConfig {
    /// The defaults of the brief: 3600 s, refresh at 80 %, 300 s grace, 1 s..60 s back-off.
    pub fn new(glms: SocketAddr, domain: &str, own_contact: &str, xcap_root_url: &str) -> Self {
        SubscriberConfig {
            glms,
            own_identity: format!("sip:im-server@{domain}"),
            own_contact: own_contact.to_owned(),
            expires_s: 3600,
            refresh_ratio: 0.8,
            grace_s: 300,
            retry_backoff_ms: (1_000, 60_000),
            failed_retry_ms: 300_000,
            xcap_root_url: xcap_root_url.trim_end_matches('/').to_owned(),
            max_aors: 100_000,
            timer_n_ms: 32_000,
            transaction_timeout_ms: 32_000,
            retransmit_t1_ms: None,
            id_seed: 0,
            max_extra_docs: 8,
        }
    }
}

/// Where one AoR's subscription is (SPEC 3.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Restored from the durable cache, no binding yet.
    Idle,
    /// Initial SUBSCRIBE sent, no final response and no NOTIFY yet.
    Subscribing,
    /// 2xx received, waiting for the first NOTIFY (Timer N).
    WaitNotify,
    Active,
    /// A refresh is in flight.
    Refreshing,
    /// Waiting to retry after a transient failure.
    Backoff,
    /// Refused; retrying after the long back-off. The last policy stays.
    Failed,
    /// `Expires: 0` sent after the grace period.
    Unsubscribing,
}

/// What the slow path must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Send a SUBSCRIBE to `config.glms`: Request-URI and To = `aor` (D4), From =
    /// `own_identity` with `from_tag`, `Event: EVENT`, `Accept: ACCEPT`, `Expires: expires_s`,
    /// `Content-Type: BODY_TYPE`, a Via branch `branch`. `retransmission`: the same request
    /// again (RFC 3261 §17.1.2.2 Timer E), byte for byte.
    SendSubscribe {
        aor: String,
        call_id: String,
        from_tag: String,
        to_tag: Option<String>,
        cseq: u32,
        expires_s: u32,
        branch: String,
        body: Vec<u8>,
        retransmission: bool,
    },
    /// XCAP GET `uri` (absolute), with `If-None-Match: "<etag>"` when given; report the result
    /// with [`Subscriber::on_fetched`].
    Fetch {
        aor: String,
        uri: String,
        if_none_match: Option<String>,
    },
    /// A new compiled policy for `aor` (D2): `compiled.policy()` plus the target and ISB.
    PublishPolicy { aor: String, compiled: Compiled },
    /// The documents did not compile; the last good policy stays (D6).
    PolicyRejected { aor: String, error: CompileError },
    /// The subscription ended after the grace period (D5): remove the AoR's policy entry.
    Stopped { aor: String },
}

/// How to answer a NOTIFY.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotifyReply {
    pub code: u16,
}

impl NotifyReply {
    pub fn reason(self) -> &'static str {
        match self.code {
            200 => "OK",
            400 => "Bad Request",
            481 => "Call/Transaction Does Not Exist",
            489 => "Bad Event",
            _ => "Error",
        }
    }
}

/// What a GET came back with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchResult {
    Ok {
        bytes: Vec<u8>,
        etag: Option<String>,
    },
    NotModified,
    NotFound,
    Failed,
}

/// A response to one of our SUBSCRIBEs, as the slow path parsed it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubscribeResponse<'a> {
    pub call_id: &'a str,
    pub cseq: u32,
    pub code: u16,
    /// `Expires` of a 2xx (RFC 6665 §4.1.2.1: authoritative).
    pub expires_s: Option<u32>,
    /// `Min-Expires` of a 423.
    pub min_expires_s: Option<u32>,
    /// `Retry-After` (503 and others).
    pub retry_after_s: Option<u32>,
    /// The To tag (the notifier's dialog tag).
    pub to_tag: Option<&'a str>,
}

/// A NOTIFY on one of our subscriptions, as the slow path parsed it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Notify<'a> {
    pub call_id: &'a str,
    /// The notifier's tag (the NOTIFY's From tag).
    pub from_tag: Option<&'a str>,
    /// Our tag (the NOTIFY's To tag).
    pub to_tag: Option<&'a str>,
    /// The `Event` header value.
    pub event: &'a str,
    /// The `Subscription-State` header value.
    pub subscription_state: &'a str,
    pub body: &'a [u8],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubscriberError {
    #[error("subscriber table full")]
    TableFull,
}

impl SubscriberError {
    /// A REGISTER that cannot get a subscription is shed with 503 (D12).
    pub fn status(self) -> u16 {
        503
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TxKind {
    Initial,
    Refresh,
    Unsubscribe,
}

#[derive(Clone, Debug)]
pub(crate) struct Tx {
    pub kind: TxKind,
    pub cseq: u32,
    pub expires_s: u32,
    pub deadline_ms: u64,
    pub retransmit_at_ms: Option<u64>,
    pub interval_ms: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct Dialog {
    pub call_id: String,
    pub from_tag: String,
    pub to_tag: Option<String>,
    pub cseq: u32,
}

/// One AoR's subscription and documents.
pub(crate) struct Aor {
    pub aor: String,
    pub bound: bool,
    pub grace_until_ms: Option<u64>,
    pub phase: Phase,
    pub dialog: Option<Dialog>,
    pub tx: Option<Tx>,
    pub timer_n_ms: Option<u64>,
    pub refresh_at_ms: Option<u64>,
    pub expires_at_ms: Option<u64>,
    pub retry_at_ms: Option<u64>,
    pub attempts: u32,
    pub requested_expires_s: u32,
    pub notified: bool,
    /// The two own documents: resource-lists, access-rules.
    pub own: [DocSlot; 2],
    pub extra: Vec<DocSlot>,
    pub published: Option<Compiled>,
    pub compiled_at_ms: u64,
    pub dirty: bool,
}

impl Aor {
    fn next_deadline(&self) -> Option<u64> {
        let tx = self.tx.as_ref().map(|t| {
            t.retransmit_at_ms
                .map_or(t.deadline_ms, |r| r.min(t.deadline_ms))
        });
        let docs = self
            .own
            .iter()
            .chain(&self.extra)
            .filter_map(|d| d.retry_at_ms);
        [
            tx,
            self.grace_until_ms,
            self.timer_n_ms,
            self.refresh_at_ms,
            self.expires_at_ms,
            self.retry_at_ms,
        ]
        .into_iter()
        .flatten()
        .chain(docs)
        .min()
    }
}

/// The subscriber for every AoR of this server.
pub struct Subscriber {
    pub(crate) cfg: SubscriberConfig,
    pub(crate) root: Root,
    pub(crate) aors: HashMap<u64, Aor>,
    pub(crate) by_name: HashMap<String, u64>,
    pub(crate) by_call_id: HashMap<String, u64>,
    timers: BinaryHeap<Reverse<(u64, u64)>>,
    next_key: u64,
    ids: u64,
    pub(crate) out: Vec<Action>,
    pub(crate) removed: Vec<String>,
}

impl Subscriber {
    pub fn new(cfg: SubscriberConfig) -> Subscriber {
        Subscriber {
            root: Root::parse(&cfg.xcap_root_url),
            cfg,
            aors: HashMap::new(),
            by_name: HashMap::new(),
            by_call_id: HashMap::new(),
            timers: BinaryHeap::new(),
            next_key: 0,
            ids: 0,
            out: Vec::new(),
            removed: Vec::new(),
        }
    }

    pub fn config(&self) -> &SubscriberConfig {
        &self.cfg
    }

    /// The phase of an AoR's subscription, `None` when it has none.
    pub fn phase(&self, aor: &str) -> Option<Phase> {
        self.by_name
            .get(aor)
            .and_then(|k| self.aors.get(k))
            .map(|a| a.phase)
    }

    /// The last compiled policy of an AoR (`None`: pending, D6).
    pub fn compiled(&self, aor: &str) -> Option<&Compiled> {
        let key = self.by_name.get(aor)?;
        self.aors.get(key)?.published.as_ref()
    }

    pub fn len(&self) -> usize {
        self.aors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.aors.is_empty()
    }

    /// D5: the AoR got its first binding: subscribe (or cancel a pending unsubscribe).
    pub fn on_first_binding(&mut self, now_ms: u64, aor: &str) -> Result<(), SubscriberError> {
        let key = match self.by_name.get(aor) {
            Some(&k) => k,
            None => self.insert(aor)?,
        };
        self.with(key, now_ms, |s, a| {
            a.bound = true;
            a.grace_until_ms = None;
            if matches!(a.phase, Phase::Idle | Phase::Unsubscribing) {
                s.start(a, now_ms);
            }
        });
        Ok(())
    }

    /// D5: the AoR's last binding went: unsubscribe after `grace_s`; the policy stays until then.
    pub fn on_last_binding_gone(&mut self, now_ms: u64, aor: &str) {
        let Some(&key) = self.by_name.get(aor) else {
            return;
        };
        let grace_ms = u64::from(self.cfg.grace_s) * 1000;
        self.with(key, now_ms, |_, a| {
            if a.bound {
                a.bound = false;
                a.grace_until_ms = Some(now_ms + grace_ms);
            }
        });
    }

    pub(crate) fn insert(&mut self, aor: &str) -> Result<u64, SubscriberError> {
        if self.aors.len() >= self.cfg.max_aors {
            return Err(SubscriberError::TableFull);
        }
        let key = self.next_key;
        self.next_key += 1;
        let xui = xui_of(aor);
        let sel = |auid: &str| format!("{auid}/users/{}/index", encode_segment(&xui));
        self.aors.insert(
            key,
            Aor {
                aor: aor.to_owned(),
                bound: false,
                grace_until_ms: None,
                phase: Phase::Idle,
                dialog: None,
                tx: None,
                timer_n_ms: None,
                refresh_at_ms: None,
                expires_at_ms: None,
                retry_at_ms: None,
                attempts: 0,
                requested_expires_s: self.cfg.expires_s,
                notified: false,
                own: [DocSlot::new(sel(AUID_LISTS)), DocSlot::new(sel(AUID_RULES))],
                extra: Vec::new(),
                published: None,
                compiled_at_ms: 0,
                dirty: false,
            },
        );
        self.by_name.insert(aor.to_owned(), key);
        Ok(key)
    }

    /// Runs `f` on one AoR with the AoR taken out of the table (so `f` may use `self`), then
    /// puts it back and re-arms its timer.
    pub(crate) fn with(&mut self, key: u64, now_ms: u64, f: impl FnOnce(&mut Self, &mut Aor)) {
        let Some(mut a) = self.aors.remove(&key) else {
            return;
        };
        f(self, &mut a);
        if a.phase == Phase::Unsubscribing && a.dialog.is_none() {
            // The unsubscribe completed (or could not be sent): the AoR is gone (D5).
            self.finish(a);
            return;
        }
        if let Some(deadline) = a.next_deadline() {
            self.timers.push(Reverse((deadline.max(now_ms), key)));
        }
        self.aors.insert(key, a);
        self.compact_timers();
    }

    fn finish(&mut self, a: Aor) {
        if let Some(d) = &a.dialog {
            self.by_call_id.remove(&d.call_id);
        }
        self.by_name.remove(&a.aor);
        if self.removed.len() < self.cfg.max_aors {
            self.removed.push(a.aor.clone());
        }
        self.out.push(Action::Stopped { aor: a.aor });
    }

    /// Stale heap entries are skipped when popped; rebuild when they pile up.
    fn compact_timers(&mut self) {
        if self.timers.len() <= 4 * self.aors.len() + 1024 {
            return;
        }
        self.timers = self
            .aors
            .iter()
            .filter_map(|(&k, a)| a.next_deadline().map(|d| Reverse((d, k))))
            .collect();
    }

    /// When `poll` next has work (a stale, earlier value only causes an early wakeup).
    pub fn next_wakeup_ms(&self) -> Option<u64> {
        if !self.out.is_empty() {
            return Some(0);
        }
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    /// Fires every due timer and returns the actions produced since the last call. Call it
    /// after every input and at `next_wakeup_ms`.
    pub fn poll(&mut self, now_ms: u64) -> Vec<Action> {
        // Bounded: each AoR fires at most once per pass, and `with` only pushes future
        // deadlines or `now` for work that then completes in the next round.
        let mut budget = self.timers.len() + 2 * self.aors.len() + 16;
        while let Some(&Reverse((t, key))) = self.timers.peek() {
            if t > now_ms || budget == 0 {
                break;
            }
            budget -= 1;
            self.timers.pop();
            let due = self
                .aors
                .get(&key)
                .and_then(Aor::next_deadline)
                .is_some_and(|d| d <= now_ms);
            if due {
                self.with(key, now_ms, |s, a| s.fire(a, now_ms));
            }
        }
        std::mem::take(&mut self.out)
    }

    fn fire(&mut self, a: &mut Aor, now_ms: u64) {
        let due = |t: Option<u64>| t.is_some_and(|t| t <= now_ms);
        if due(a.grace_until_ms) {
            a.grace_until_ms = None;
            self.end(a, now_ms);
            return;
        }
        if let Some(tx) = &mut a.tx {
            if tx.deadline_ms <= now_ms {
                // RFC 3261 §17.1.2.2 Timer F: treat as 408.
                let timeout = SubscribeResponse {
                    cseq: tx.cseq,
                    code: 408,
                    ..SubscribeResponse::default()
                };
                self.response(a, now_ms, &timeout);
            } else if let Some(r) = tx.retransmit_at_ms.filter(|&r| r <= now_ms) {
                tx.interval_ms = (tx.interval_ms * 2).min(T2_MS);
                tx.retransmit_at_ms = Some(r + tx.interval_ms);
                let (kind, expires_s) = (tx.kind, tx.expires_s);
                self.emit_subscribe(a, expires_s, kind == TxKind::Initial, true);
            }
        }
        if due(a.timer_n_ms) {
            a.timer_n_ms = None;
            match a.phase {
                // RFC 6665 §4.1.2.4: no NOTIFY within Timer N: the subscription failed.
                Phase::WaitNotify => self.backoff(a, now_ms, None),
                // RFC 6665 §4.1.2.3: no final NOTIFY after Expires: 0; we are done anyway.
                Phase::Unsubscribing => self.drop_dialog(a),
                _ => {}
            }
        }
        if due(a.retry_at_ms) {
            a.retry_at_ms = None;
            if matches!(a.phase, Phase::Backoff | Phase::Failed) {
                self.start(a, now_ms);
            }
        }
        if due(a.expires_at_ms) {
            a.expires_at_ms = None;
            // RFC 6665 §4.1.2.2: the subscription ran out without a successful refresh.
            if matches!(a.phase, Phase::Active | Phase::Refreshing) {
                self.start(a, now_ms);
            }
        }
        if due(a.refresh_at_ms) {
            a.refresh_at_ms = None;
            if a.phase == Phase::Active && a.tx.is_none() {
                a.phase = Phase::Refreshing;
                let e = a.requested_expires_s;
                self.send_in_dialog(a, now_ms, TxKind::Refresh, e);
            }
        }
        self.fire_doc_retries(a, now_ms);
    }

    /// D5: grace over: unsubscribe when a dialog exists, else just stop.
    fn end(&mut self, a: &mut Aor, now_ms: u64) {
        let has_dialog = a.dialog.as_ref().is_some_and(|d| d.to_tag.is_some());
        a.refresh_at_ms = None;
        a.expires_at_ms = None;
        a.retry_at_ms = None;
        a.timer_n_ms = None;
        a.phase = Phase::Unsubscribing;
        if has_dialog {
            // RFC 6665 §4.1.2.3: unsubscribe with Expires: 0, then expect a final NOTIFY.
            self.send_in_dialog(a, now_ms, TxKind::Unsubscribe, 0);
        } else {
            self.drop_dialog(a);
        }
    }

    fn drop_dialog(&mut self, a: &mut Aor) {
        if let Some(d) = a.dialog.take() {
            self.by_call_id.remove(&d.call_id);
        }
        a.tx = None;
    }

    /// A new subscription: new Call-ID, From-tag, CSeq 1.
    pub(crate) fn start(&mut self, a: &mut Aor, now_ms: u64) {
        self.drop_dialog(a);
        let call_id = format!(
            "glms-{:016x}@{}",
            self.fresh_id(),
            domain_of_uri(&self.cfg.own_identity)
        );
        let from_tag = format!("sp{:012x}", self.fresh_id() & 0xffff_ffff_ffff);
        self.by_call_id
            .insert(call_id.clone(), key_of(self, &a.aor));
        a.dialog = Some(Dialog {
            call_id,
            from_tag,
            to_tag: None,
            cseq: 0,
        });
        a.phase = Phase::Subscribing;
        a.notified = false;
        a.timer_n_ms = None;
        a.refresh_at_ms = None;
        a.expires_at_ms = None;
        a.retry_at_ms = None;
        for d in a.own.iter_mut() {
            d.validated = false;
        }
        let e = a.requested_expires_s;
        self.send_in_dialog(a, now_ms, TxKind::Initial, e);
    }

    fn send_in_dialog(&mut self, a: &mut Aor, now_ms: u64, kind: TxKind, expires_s: u32) {
        let Some(d) = &mut a.dialog else { return };
        d.cseq += 1;
        let t1 = self.cfg.retransmit_t1_ms;
        a.tx = Some(Tx {
            kind,
            cseq: d.cseq,
            expires_s,
            deadline_ms: now_ms + self.cfg.transaction_timeout_ms,
            retransmit_at_ms: t1.map(|t| now_ms + t),
            interval_ms: t1.unwrap_or(0),
        });
        self.emit_subscribe(a, expires_s, kind == TxKind::Initial, false);
    }

    fn emit_subscribe(&mut self, a: &Aor, expires_s: u32, _initial: bool, retransmission: bool) {
        let Some(d) = &a.dialog else { return };
        self.out.push(Action::SendSubscribe {
            aor: a.aor.clone(),
            call_id: d.call_id.clone(),
            from_tag: d.from_tag.clone(),
            to_tag: d.to_tag.clone(),
            cseq: d.cseq,
            expires_s,
            branch: branch_for(&d.call_id, d.cseq),
            // RFC 5875 §4.1 / SPEC 3.3: always a body naming both documents (Mobicents answers
            // 403 to a SUBSCRIBE without one).
            body: subscribe_body(&a.own[0].sel, &a.own[1].sel),
            retransmission,
        });
    }

    fn fresh_id(&mut self) -> u64 {
        self.ids += 1;
        splitmix64(self.cfg.id_seed ^ self.ids.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    pub(crate) fn backoff_ms(&self, attempts: u32) -> u64 {
        let (base, cap) = self.cfg.retry_backoff_ms;
        base.saturating_mul(1u64 << attempts.min(20)).min(cap)
    }

    /// Transient failure: retry later (`retry_after_s` when the peer said, else back-off).
    fn backoff(&mut self, a: &mut Aor, now_ms: u64, retry_after_s: Option<u32>) {
        self.drop_dialog(a);
        let delay = match retry_after_s {
            Some(s) => {
                (u64::from(s) * 1000).min(self.cfg.failed_retry_ms.max(self.cfg.retry_backoff_ms.1))
            }
            None => self.backoff_ms(a.attempts),
        };
        a.attempts = a.attempts.saturating_add(1);
        a.phase = Phase::Backoff;
        a.retry_at_ms = Some(now_ms + delay.max(1));
    }

    /// Refused: retry after the long back-off; the last known policy stays in force.
    fn failed(&mut self, a: &mut Aor, now_ms: u64) {
        self.drop_dialog(a);
        a.attempts = a.attempts.saturating_add(1);
        a.phase = Phase::Failed;
        a.retry_at_ms = Some(now_ms + self.cfg.failed_retry_ms.max(1));
    }

    /// A final (or provisional) response to one of our SUBSCRIBEs.
    pub fn on_response(&mut self, now_ms: u64, r: &SubscribeResponse<'_>) {
        let Some(&key) = self.by_call_id.get(r.call_id) else {
            return;
        };
        self.with(key, now_ms, |s, a| s.response(a, now_ms, r));
    }

    fn response(&mut self, a: &mut Aor, now_ms: u64, r: &SubscribeResponse<'_>) {
        let (cseq, code) = (r.cseq, r.code);
        // A response to another (older) request, or a retransmitted final response.
        if a.tx.as_ref().is_none_or(|t| t.cseq != cseq) {
            return;
        }
        if code < 200 {
            // RFC 3261 §17.1.2.2: a provisional response moves retransmissions to T2.
            if let Some(tx) = &mut a.tx
                && tx.retransmit_at_ms.is_some()
            {
                tx.interval_ms = T2_MS;
                tx.retransmit_at_ms = Some(now_ms + T2_MS);
            }
            return;
        }
        let Some(tx) = a.tx.take() else { return };
        match tx.kind {
            TxKind::Initial => self.initial_response(a, now_ms, &tx, r),
            TxKind::Refresh => self.refresh_response(a, now_ms, &tx, r),
            TxKind::Unsubscribe => {
                if (200..300).contains(&code) {
                    // RFC 6665 §4.1.2.3: a final NOTIFY follows; wait for it at most Timer N.
                    a.timer_n_ms = Some(now_ms + self.cfg.timer_n_ms);
                } else {
                    self.drop_dialog(a);
                }
            }
        }
    }

    fn initial_response(&mut self, a: &mut Aor, now_ms: u64, tx: &Tx, r: &SubscribeResponse<'_>) {
        let SubscribeResponse {
            code,
            expires_s,
            min_expires_s,
            retry_after_s,
            to_tag,
            ..
        } = *r;
        match code {
            200..=299 => {
                if let Some(d) = &mut a.dialog
                    && d.to_tag.is_none()
                {
                    d.to_tag = to_tag.map(str::to_owned);
                }
                // RFC 6665 §4.1.2.1: the Expires of the 2xx is authoritative.
                let granted = expires_s.unwrap_or(tx.expires_s);
                if granted == 0 {
                    self.backoff(a, now_ms, None);
                    return;
                }
                self.granted(a, now_ms, granted);
                if a.notified {
                    a.phase = Phase::Active;
                } else {
                    a.phase = Phase::WaitNotify;
                    // RFC 6665 §4.1.2.4: Timer N bounds the wait for the first NOTIFY.
                    a.timer_n_ms = Some(now_ms + self.cfg.timer_n_ms);
                }
            }
            // RFC 3261 §21.4.17 / RFC 6665 §4.1.2.1: retry with at least Min-Expires.
            423 => match min_expires_s {
                Some(m) if m > tx.expires_s && m <= MAX_EXPIRES_S => {
                    a.requested_expires_s = m;
                    self.start(a, now_ms);
                }
                _ => self.failed(a, now_ms),
            },
            // SPEC 3.2: transient; back off (503/5xx may say when).
            408 | 481 | 500..=599 => self.backoff(a, now_ms, retry_after_s),
            // 489 (no xcap-diff here), 403/404 and everything else: refused.
            _ => self.failed(a, now_ms),
        }
    }

    fn refresh_response(&mut self, a: &mut Aor, now_ms: u64, tx: &Tx, r: &SubscribeResponse<'_>) {
        let SubscribeResponse {
            code,
            expires_s,
            min_expires_s,
            retry_after_s,
            ..
        } = *r;
        match code {
            200..=299 => {
                let granted = expires_s.unwrap_or(tx.expires_s);
                if granted == 0 {
                    self.start(a, now_ms);
                    return;
                }
                a.attempts = 0;
                a.phase = Phase::Active;
                self.granted(a, now_ms, granted);
            }
            423 => match min_expires_s {
                Some(m) if m > tx.expires_s && m <= MAX_EXPIRES_S => {
                    a.requested_expires_s = m;
                    self.send_in_dialog(a, now_ms, TxKind::Refresh, m);
                }
                _ => a.phase = Phase::Active,
            },
            // RFC 6665 §4.1.2.2: 481 on a refresh: the subscription is gone; a new one.
            481 => self.start(a, now_ms),
            // RFC 6665 §4.1.2.2: any other failure leaves the subscription valid until it
            // expires; transient ones retry the refresh with back-off before then.
            408 | 500..=599 => {
                a.phase = Phase::Active;
                let delay = match retry_after_s {
                    Some(s) => u64::from(s) * 1000,
                    None => self.backoff_ms(a.attempts),
                };
                a.attempts = a.attempts.saturating_add(1);
                let at = now_ms + delay.max(1);
                a.refresh_at_ms = match a.expires_at_ms {
                    Some(e) if at >= e => None,
                    _ => Some(at),
                };
            }
            _ => a.phase = Phase::Active,
        }
    }

    /// Arms expiry and the refresh at `refresh_ratio` of the granted time (SPEC 3.2).
    fn granted(&mut self, a: &mut Aor, now_ms: u64, granted_s: u32) {
        let ms = u64::from(granted_s) * 1000;
        let ratio = f64::from(self.cfg.refresh_ratio.clamp(0.1, 0.95));
        let refresh_ms = ((ms as f64) * ratio) as u64;
        a.expires_at_ms = Some(now_ms + ms);
        a.refresh_at_ms = Some(now_ms + refresh_ms.max(1));
    }

    /// A NOTIFY on one of our subscriptions (the slow path parsed its headers). Answer it with
    /// the returned code; any actions come out of the next `poll`.
    pub fn on_notify(&mut self, now_ms: u64, n: &Notify<'_>) -> NotifyReply {
        let Notify {
            call_id,
            from_tag,
            to_tag,
            event,
            subscription_state,
            body,
        } = *n;
        let reply = |code| NotifyReply { code };
        let Some(&key) = self.by_call_id.get(call_id) else {
            // RFC 6665 §4.1.3: a NOTIFY that matches no subscription gets 481.
            return reply(481);
        };
        let Some(a) = self.aors.get(&key) else {
            return reply(481);
        };
        let Some(d) = &a.dialog else {
            return reply(481);
        };
        // The NOTIFY's To tag is our From tag; its From tag is the notifier's (the To tag of
        // our dialog, once known: RFC 6665 §4.1.2.4 lets the NOTIFY establish it).
        if to_tag != Some(d.from_tag.as_str()) {
            return reply(481);
        }
        if let (Some(ours), Some(theirs)) = (&d.to_tag, from_tag)
            && ours != theirs
        {
            // A second dialog from a fork: we keep one subscription (RFC 6665 §4.5.2).
            return reply(481);
        }
        // RFC 6665 §8.2.1: event packages compare byte for byte; D3 accepts the older name.
        let package = event.split(';').next().unwrap_or("").trim();
        if package != "xcap-diff" && package != "xcap-change" {
            return reply(489);
        }
        let Some(state) = SubState::parse(subscription_state) else {
            return reply(400);
        };
        // D3: a malformed body is refused and changes nothing.
        let diff = if body.trim_ascii().is_empty() {
            None
        } else {
            match crate::glms::xcap::parse_xcap_diff(body) {
                Ok(d) => Some(d),
                Err(_) => return reply(400),
            }
        };
        let from_tag = from_tag.map(str::to_owned);
        self.with(key, now_ms, |s, a| {
            s.notify(a, now_ms, from_tag, state, diff);
        });
        reply(200)
    }

    fn notify(
        &mut self,
        a: &mut Aor,
        now_ms: u64,
        from_tag: Option<String>,
        state: SubState,
        diff: Option<crate::glms::xcap::XcapDiff>,
    ) {
        if let Some(d) = &mut a.dialog
            && d.to_tag.is_none()
        {
            d.to_tag = from_tag;
        }
        if a.phase == Phase::Unsubscribing {
            if state.kind == StateKind::Terminated {
                self.drop_dialog(a);
            }
            return;
        }
        let first = !a.notified;
        a.notified = true;
        a.timer_n_ms = None;
        a.attempts = 0;
        if matches!(a.phase, Phase::Subscribing | Phase::WaitNotify) {
            // RFC 6665 §4.1.2.4: the NOTIFY may come before the 2xx; the dialog exists now.
            a.phase = Phase::Active;
        }
        if let Some(diff) = &diff {
            self.apply_diff(a, now_ms, diff);
        }
        if first {
            // SPEC 3.7: a first NOTIFY may be empty or stale: revalidate what it did not name.
            self.revalidate_own(a, now_ms);
        }
        match state.kind {
            StateKind::Active | StateKind::Pending => {
                if let Some(e) = state.expires_s
                    && a.tx.is_none()
                {
                    // RFC 6665 §4.1.3: the notifier's expires is authoritative.
                    self.granted(a, now_ms, e.max(1));
                }
            }
            StateKind::Terminated => self.terminated(a, now_ms, &state),
        }
    }

    /// RFC 6665 §4.1.3 termination reasons (SPEC 3.2).
    fn terminated(&mut self, a: &mut Aor, now_ms: u64, state: &SubState) {
        match state.reason.as_deref() {
            Some("deactivated") | Some("timeout") => self.start(a, now_ms),
            Some("probation") | Some("giveup") => self.backoff(a, now_ms, state.retry_after_s),
            Some("rejected") | Some("noresource") | Some("invariant") => self.failed(a, now_ms),
            // No or an unknown reason: the subscriber may re-subscribe; not in a tight loop.
            _ => self.backoff(a, now_ms, state.retry_after_s),
        }
    }

    /// Durable cache changes since the last call (D6).
    pub fn export_dirty(&mut self) -> Vec<super::CacheChange> {
        let mut out: Vec<CacheChange> = std::mem::take(&mut self.removed)
            .into_iter()
            .map(|aor| CacheChange::Remove { aor })
            .collect();
        for a in self.aors.values_mut().filter(|a| a.dirty) {
            a.dirty = false;
            out.push(CacheChange::Put(super::docs::record(a)));
        }
        out
    }
}

fn key_of(s: &Subscriber, aor: &str) -> u64 {
    // `start` runs inside `with`, where the AoR is out of `aors` but still in `by_name`.
    s.by_name.get(aor).copied().unwrap_or(u64::MAX)
}
