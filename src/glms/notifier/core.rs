//! The sans-IO notifier: SUBSCRIBEs, document changes, NOTIFY responses and `now_ms` in;
//! NOTIFY datagrams (as [`Action`]s) and wake-up times out. No sockets, no clocks.
#![forbid(unsafe_code)]

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::net::SocketAddr;

use crate::auth::normalize_aor;
use crate::glms::xcap::{Change, DocumentEntry, ETag, write_xcap_diff};

use super::notify::{Local, Reason, SubState, write_notify};
use super::subscription::{DiffProcessing, Subscription, SubscriptionId, document_sel};

/// RFC 3261 §17.1.2.2 Timer F (64·T1): a NOTIFY unanswered this long failed.
pub const TIMER_F_MS: u64 = 32_000;
/// Most changes of one document kept for one NOTIFY; past it the entry carries ETags only.
const MAX_CHANGES_PER_DOC: usize = 64;
/// Most distinct documents waiting for one NOTIFY; past it the subscription is ended with
/// `deactivated` so the subscriber re-subscribes and gets a full state.
const MAX_PENDING_DOCS: usize = 256;
/// Most `<document>` entries in one full-state NOTIFY.
pub(super) const MAX_FULL_STATE_ENTRIES: usize = 1024;
/// The CSeq is persisted every this many NOTIFYs; a restore jumps twice as far, so a NOTIFY
/// after a restart never reuses a CSeq the subscriber saw (RFC 3261 §12.2.2).
const CSEQ_PERSIST_EVERY: u32 = 64;

/// The document store, as the notifier sees it.
pub trait DocIndex {
    /// Current ETag (unquoted) of a document, `None` when it does not exist.
    fn etag(&self, auid: &str, xui: &str, doc: &str) -> Option<String>;
    /// Names of the user's documents in that application usage.
    fn list(&self, auid: &str, xui: &str) -> Vec<String>;
}

/// Where subscriptions are made durable (G2). The GLMS document store implements it.
pub trait SubscriptionStore: Send + Sync {
    fn put_subscription(&self, id: &str, bytes: &[u8]) -> std::io::Result<()>;
    fn remove_subscription(&self, id: &str) -> std::io::Result<()>;
    fn subscriptions(&self) -> std::io::Result<Vec<(String, Vec<u8>)>>;
    /// Several changes at once; a store that can should make them durable together.
    fn apply_batch(&self, puts: &[(String, Vec<u8>)], removes: &[String]) -> std::io::Result<()> {
        for (id, bytes) in puts {
            self.put_subscription(id, bytes)?;
        }
        for id in removes {
            self.remove_subscription(id)?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifierConfig {
    /// Absolute XCAP root, the xcap-diff `xcap-root` (e.g. `http://127.0.0.1:8080/xcap-root`).
    pub xcap_root_url: String,
    pub default_expires_s: u32,
    pub min_expires_s: u32,
    pub max_expires_s: u32,
    pub max_subscriptions: usize,
    /// Changes to one subscription within this window go out in one NOTIFY.
    pub coalesce_ms: u64,
    /// Normalised AoRs (`im-server@example.com`) that may subscribe to anyone's documents.
    pub service_identities: Vec<String>,
    /// Our Contact URI (`sip:glms@127.0.0.1:5070`); its host:port is also the Via sent-by.
    pub contact: String,
}

impl Default for NotifierConfig {
    fn default() -> Self {
        NotifierConfig {
            xcap_root_url: "http://127.0.0.1:8080/xcap-root".into(),
            default_expires_s: 3600,
            min_expires_s: 60,
            max_expires_s: 86_400,
            max_subscriptions: 10_000,
            coalesce_ms: 2,
            service_identities: Vec::new(),
            contact: String::new(),
        }
    }
}

/// A SUBSCRIBE as the driver decoded it.
#[derive(Clone, Debug)]
pub struct SubscribeInput<'a> {
    /// The asserted identity (normalised AoR), decided by the driver from trust and PAI.
    pub subscriber: String,
    /// The From URI (the dialog's remote URI).
    pub subscriber_uri: String,
    /// The To URI (the subscribed resource, the dialog's local URI).
    pub resource_uri: String,
    pub call_id: String,
    pub from_tag: String,
    /// Present on an in-dialog SUBSCRIBE (a refresh or an unsubscribe).
    pub to_tag: Option<String>,
    pub cseq: u32,
    /// The whole Event header value (`xcap-diff;diff-processing=aggregate`).
    pub event_header: &'a str,
    /// Every Accept value joined with `,`; `None` when there is no Accept header.
    pub accept: Option<&'a str>,
    pub expires_s: Option<u32>,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
    /// The subscriber's Contact URI (without brackets): where NOTIFYs are addressed.
    pub contact: String,
    /// Where in-dialog requests are sent.
    pub route_to: SocketAddr,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscribeOk {
    pub to_tag: String,
    /// The granted duration (0 for an unsubscribe or a fetch).
    pub expires_s: u32,
}

/// A document change reported by the XCAP server once it is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocChangeEvent {
    pub auid: String,
    pub xui: String,
    pub doc: String,
    pub previous_etag: Option<String>,
    pub new_etag: Option<String>,
    pub change: Change,
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send a NOTIFY; `call_id` and `cseq` key its client transaction (retransmissions).
    Send {
        to: SocketAddr,
        bytes: Vec<u8>,
        call_id: String,
        cseq: u32,
    },
}

#[derive(Clone, Debug)]
pub(super) struct ChangeRec {
    prev: Option<ETag>,
    new: Option<ETag>,
    change: Change,
}

#[derive(Clone, Debug)]
pub(super) struct PendingDoc {
    auid: String,
    xui: String,
    doc: String,
    changes: Vec<ChangeRec>,
    overflowed: bool,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct InFlight {
    cseq: u32,
    deadline_ms: u64,
}

/// A subscription and its transient state.
#[derive(Debug)]
pub(super) struct Live {
    pub(super) sub: Subscription,
    pub(super) pending: Vec<PendingDoc>,
    /// Full-state entries to send (taken when queued, after a SUBSCRIBE or a restore).
    pub(super) full_state: Option<Vec<DocumentEntry>>,
    /// Send a final NOTIFY with this reason, then forget the subscription.
    pub(super) terminate: Option<Reason>,
    pub(super) flush_at_ms: Option<u64>,
    pub(super) in_flight: Option<InFlight>,
    /// The earliest wake-up queued in the heap for this subscription.
    pub(super) scheduled_at_ms: Option<u64>,
}

impl Live {
    pub(super) fn new(sub: Subscription) -> Live {
        Live {
            sub,
            pending: Vec::new(),
            full_state: None,
            terminate: None,
            flush_at_ms: None,
            in_flight: None,
            scheduled_at_ms: None,
        }
    }

    fn next_deadline_ms(&self) -> Option<u64> {
        let mut next = self.in_flight.map(|f| f.deadline_ms);
        let mut consider = |t: u64| next = Some(next.map_or(t, |n| n.min(t)));
        if self.in_flight.is_none()
            && let Some(f) = self.flush_at_ms
        {
            consider(f);
        }
        if self.terminate.is_none() {
            consider(self.sub.expires_at_ms);
        }
        next
    }

    fn has_news(&self) -> bool {
        !self.pending.is_empty() || self.full_state.is_some() || self.terminate.is_some()
    }
}

/// The notifier state machine.
pub struct Notifier {
    pub(super) cfg: NotifierConfig,
    pub(super) sent_by: String,
    pub(super) subs: HashMap<String, Live>,
    /// (auid, xui) -> subscriptions with a resource there.
    pub(super) by_owner: HashMap<(String, String), Vec<String>>,
    /// (Call-ID, CSeq) of a NOTIFY in flight -> subscription.
    pub(super) in_flight: HashMap<(String, u32), String>,
    pub(super) timers: BinaryHeap<Reverse<(u64, String)>>,
    pub(super) outbox: Vec<Action>,
    pub(super) dirty: BTreeSet<SubscriptionId>,
    pub(super) tag_counter: u64,
}

impl Notifier {
    pub fn new(mut cfg: NotifierConfig) -> Notifier {
        cfg.service_identities = cfg
            .service_identities
            .iter()
            .map(|s| normalize_aor(s).unwrap_or_else(|_| s.clone()))
            .collect();
        let sent_by = sent_by_of(&cfg.contact);
        Notifier {
            cfg,
            sent_by,
            subs: HashMap::new(),
            by_owner: HashMap::new(),
            in_flight: HashMap::new(),
            timers: BinaryHeap::new(),
            outbox: Vec::new(),
            dirty: BTreeSet::new(),
            tag_counter: 0,
        }
    }

    pub fn config(&self) -> &NotifierConfig {
        &self.cfg
    }

    pub fn len(&self) -> usize {
        self.subs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    pub fn subscription(&self, id: &SubscriptionId) -> Option<&Subscription> {
        self.subs.get(id.as_str()).map(|l| &l.sub)
    }

    /// Every subscription, for persisting them all.
    pub fn snapshot(&self) -> Vec<Subscription> {
        let mut v: Vec<Subscription> = self.subs.values().map(|l| l.sub.clone()).collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Ids created, changed or removed since the last call: persist those still present
    /// ([`Notifier::subscription`]) and delete the others.
    pub fn dirty(&mut self) -> Vec<SubscriptionId> {
        std::mem::take(&mut self.dirty).into_iter().collect()
    }

    /// When [`Notifier::poll`] next has work (`None`: only on input).
    pub fn next_wakeup_ms(&self) -> Option<u64> {
        if !self.outbox.is_empty() {
            return Some(0);
        }
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    /// Runs the timers due at `now_ms` and returns everything to send.
    pub fn poll(&mut self, now_ms: u64) -> Vec<Action> {
        // Bounded: each entry is popped once; servicing pushes at most one entry per
        // subscription, at a time after `now_ms` unless it sent (which clears the cause).
        let mut due = Vec::new();
        while let Some(Reverse((t, _))) = self.timers.peek() {
            if *t > now_ms {
                break;
            }
            let Some(Reverse((t, tag))) = self.timers.pop() else {
                break;
            };
            if self.is_current(t, &tag) {
                if let Some(live) = self.subs.get_mut(&tag) {
                    live.scheduled_at_ms = None;
                }
                due.push(tag);
            }
        }
        for tag in due {
            self.service(&tag, now_ms);
        }
        self.clean_timers();
        std::mem::take(&mut self.outbox)
    }

    // ---------------------------------------------------------------------------------------
    // Changes, responses, restore
    // ---------------------------------------------------------------------------------------

    /// A document changed: every subscription covering it gets a NOTIFY within `coalesce_ms`.
    pub fn on_change(&mut self, now_ms: u64, ev: DocChangeEvent) {
        let key = (ev.auid.clone(), ev.xui.clone());
        let Some(tags) = self.by_owner.get(&key).cloned() else {
            return;
        };
        let rec = ChangeRec {
            prev: ev.previous_etag.as_deref().and_then(ETag::from_opaque),
            new: ev.new_etag.as_deref().and_then(ETag::from_opaque),
            change: ev.change,
        };
        for tag in tags {
            let Some(live) = self.subs.get_mut(&tag) else {
                continue;
            };
            if live.terminate.is_some()
                || !live
                    .sub
                    .resources
                    .iter()
                    .any(|r| r.covers(&ev.auid, &ev.xui, &ev.doc))
            {
                continue;
            }
            add_pending(live, &ev.auid, &ev.xui, &ev.doc, rec.clone());
            if live.flush_at_ms.is_none() {
                live.flush_at_ms = Some(now_ms.saturating_add(self.cfg.coalesce_ms));
            }
            self.service(&tag, now_ms);
        }
    }

    /// A final (or provisional) response to one of our NOTIFYs.
    pub fn on_notify_response(&mut self, now_ms: u64, call_id: &str, cseq: u32, code: u16) {
        if code < 200 {
            // Provisional: the transaction goes on (Timer F still runs).
            return;
        }
        let Some(tag) = self.in_flight.remove(&(call_id.to_owned(), cseq)) else {
            return;
        };
        let Some(live) = self.subs.get_mut(&tag) else {
            return;
        };
        live.in_flight = None;
        if (200..300).contains(&code) {
            // RFC 6665 §4.2.2: the next NOTIFY may go now; changes that arrived meanwhile
            // are merged into it.
            self.service(&tag, now_ms);
        } else {
            // RFC 6665 §4.2.2: a NOTIFY failing with an error response (481 above all)
            // removes the subscription.
            self.remove(&tag);
        }
    }

    /// Re-creates subscriptions persisted by a previous run (G2). Each gets a full-state
    /// NOTIFY (changes may have been lost in a crash) or, when it expired meanwhile, a final
    /// NOTIFY with `terminated;reason=timeout`.
    pub fn restore(&mut self, subs: Vec<Subscription>, now_ms: u64, docs: &dyn DocIndex) {
        for mut sub in subs {
            if self.subs.contains_key(&sub.to_tag) || self.subs.len() >= self.cfg.max_subscriptions
            {
                continue;
            }
            sub.id = SubscriptionId(sub.to_tag.clone());
            sub.local_cseq = sub.local_cseq.saturating_add(2 * CSEQ_PERSIST_EVERY);
            let tag = sub.to_tag.clone();
            let mut live = Live::new(sub);
            if now_ms >= live.sub.expires_at_ms {
                live.terminate = Some(Reason::Timeout);
            } else {
                live.full_state = Some(self.full_state(&live.sub.resources, docs));
            }
            live.flush_at_ms = Some(now_ms);
            self.insert(live);
            self.dirty.insert(SubscriptionId(tag.clone()));
            self.service(&tag, now_ms);
        }
    }

    // ---------------------------------------------------------------------------------------
    // Internals
    // ---------------------------------------------------------------------------------------

    /// Advances one subscription: Timer F, expiry, and the NOTIFY when one is due.
    pub(super) fn service(&mut self, tag: &str, now_ms: u64) {
        let Some(mut live) = self.take(tag) else {
            return;
        };
        if let Some(f) = live.in_flight
            && now_ms >= f.deadline_ms
        {
            // RFC 6665 §4.2.2: a NOTIFY that times out (Timer F) removes the subscription.
            self.dirty.insert(live.sub.id.clone());
            self.clean_timers();
            return;
        }
        if live.terminate.is_none() && now_ms >= live.sub.expires_at_ms {
            // RFC 6665 §4.2.2 / §4.1.3: expiry ends with `terminated;reason=timeout`.
            live.terminate = Some(Reason::Timeout);
            live.flush_at_ms = Some(now_ms);
        }
        let due = live.flush_at_ms.is_some_and(|t| t <= now_ms);
        if live.in_flight.is_none() && due && live.has_news() {
            // RFC 6665 §4.2.2: one NOTIFY at a time per subscription; what changed while
            // one was in flight goes out merged in the next.
            self.send(&mut live, now_ms);
            if live.terminate.is_some() {
                // The final NOTIFY is out; its response no longer matters.
                self.dirty.insert(live.sub.id.clone());
                self.clean_timers();
                return;
            }
        }
        self.insert(live);
        self.schedule(tag);
        self.clean_timers();
    }

    /// Builds and queues the NOTIFY for everything `live` has to say.
    pub(super) fn send(&mut self, live: &mut Live, now_ms: u64) {
        let dp = live.sub.diff_processing;
        let mut entries: Vec<DocumentEntry> = Vec::new();
        for p in &live.pending {
            entries.extend(pending_entries(p, dp));
        }
        if let Some(full) = live.full_state.take() {
            // A document with a pending change is reported by that change, not twice.
            let changed: Vec<String> = live
                .pending
                .iter()
                .map(|p| document_sel(&p.auid, &p.xui, &p.doc))
                .collect();
            entries.extend(full.into_iter().filter(|e| !changed.contains(&e.sel)));
        }
        live.pending.clear();
        live.flush_at_ms = None;
        let body = write_xcap_diff(&self.cfg.xcap_root_url, &entries);
        let state = match live.terminate {
            Some(r) => SubState::Terminated(r),
            None => SubState::Active {
                expires_s: remaining_s(live.sub.expires_at_ms, now_ms),
            },
        };
        live.sub.local_cseq = live.sub.local_cseq.wrapping_add(1) & 0x7fff_ffff;
        if live.sub.local_cseq.is_multiple_of(CSEQ_PERSIST_EVERY) {
            self.dirty.insert(live.sub.id.clone());
        }
        let local = Local {
            sent_by: &self.sent_by,
            contact: &self.cfg.contact,
        };
        let bytes = write_notify(&live.sub, local, state, &body);
        let cseq = live.sub.local_cseq;
        self.outbox.push(Action::Send {
            to: live.sub.route_to,
            bytes,
            call_id: live.sub.call_id.clone(),
            cseq,
        });
        if live.terminate.is_none() {
            live.in_flight = Some(InFlight {
                cseq,
                deadline_ms: now_ms.saturating_add(TIMER_F_MS),
            });
            self.in_flight
                .insert((live.sub.call_id.clone(), cseq), live.sub.to_tag.clone());
        }
    }

    pub(super) fn insert(&mut self, live: Live) {
        let tag = live.sub.to_tag.clone();
        for r in &live.sub.resources {
            let list = self
                .by_owner
                .entry((r.auid.clone(), r.xui.clone()))
                .or_default();
            if !list.contains(&tag) {
                list.push(tag.clone());
            }
        }
        if let Some(f) = live.in_flight {
            self.in_flight
                .insert((live.sub.call_id.clone(), f.cseq), tag.clone());
        }
        self.subs.insert(tag, live);
    }

    /// Removes a subscription from every table (the caller decides whether it comes back).
    pub(super) fn take(&mut self, tag: &str) -> Option<Live> {
        let live = self.subs.remove(tag)?;
        for r in &live.sub.resources {
            let key = (r.auid.clone(), r.xui.clone());
            if let Some(list) = self.by_owner.get_mut(&key) {
                list.retain(|t| t != tag);
                if list.is_empty() {
                    self.by_owner.remove(&key);
                }
            }
        }
        if let Some(f) = live.in_flight {
            self.in_flight.remove(&(live.sub.call_id.clone(), f.cseq));
        }
        Some(live)
    }

    fn remove(&mut self, tag: &str) {
        if let Some(live) = self.take(tag) {
            self.dirty.insert(live.sub.id);
        }
        self.clean_timers();
    }

    /// Queues the subscription's next deadline. `scheduled_at_ms` is the only valid heap
    /// entry for it; any other entry is stale and skipped.
    fn schedule(&mut self, tag: &str) {
        let Some(live) = self.subs.get_mut(tag) else {
            return;
        };
        let next = live.next_deadline_ms();
        if next != live.scheduled_at_ms {
            live.scheduled_at_ms = next;
            if let Some(n) = next {
                self.timers.push(Reverse((n, tag.to_owned())));
            }
        }
    }

    fn is_current(&self, t: u64, tag: &str) -> bool {
        self.subs
            .get(tag)
            .is_some_and(|l| l.scheduled_at_ms == Some(t))
    }

    /// Drops stale entries from the top of the heap, so [`Notifier::next_wakeup_ms`] is exact.
    fn clean_timers(&mut self) {
        while let Some(Reverse((t, tag))) = self.timers.peek() {
            if self.is_current(*t, tag) {
                break;
            }
            self.timers.pop();
        }
        self.compact_timers();
    }

    /// Keeps the heap from filling with stale entries (a limit on everything).
    fn compact_timers(&mut self) {
        if self.timers.len() <= 4 * self.subs.len() + 64 {
            return;
        }
        self.timers.clear();
        let tags: Vec<String> = self.subs.keys().cloned().collect();
        for tag in tags {
            if let Some(live) = self.subs.get_mut(&tag) {
                live.scheduled_at_ms = None;
            }
            self.schedule(&tag);
        }
    }

    /// A fresh dialog tag: a hash of the dialog, the time and a counter (unique, not secret).
    pub(super) fn new_tag(&mut self, call_id: &str, from_tag: &str, now_ms: u64) -> String {
        // Bounded: a collision of 64-bit hashes is already improbable; 8 tries end it.
        for _ in 0..8 {
            self.tag_counter = self.tag_counter.wrapping_add(1);
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in call_id
                .bytes()
                .chain([0xff])
                .chain(from_tag.bytes())
                .chain([0xff])
                .chain(now_ms.to_le_bytes())
                .chain(self.tag_counter.to_le_bytes())
            {
                h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
            }
            h = (h ^ (h >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            h ^= h >> 29;
            let tag = format!("gn{h:016x}");
            if !self.subs.contains_key(&tag) {
                return tag;
            }
        }
        format!("gn{:016x}x{}", now_ms, self.tag_counter)
    }

    #[cfg(test)]
    pub(crate) fn timers_len(&self) -> usize {
        self.timers.len()
    }

    /// Checks the tables agree (sozu style); for tests.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        for ((call_id, cseq), tag) in &self.in_flight {
            let live = &self.subs[tag];
            assert_eq!(&live.sub.call_id, call_id);
            assert_eq!(live.in_flight.map(|f| f.cseq), Some(*cseq));
        }
        for (tag, live) in &self.subs {
            assert_eq!(&live.sub.to_tag, tag);
            if live.in_flight.is_some() {
                assert!(self.in_flight.values().any(|t| t == tag));
            }
            for r in &live.sub.resources {
                assert!(self.by_owner[&(r.auid.clone(), r.xui.clone())].contains(tag));
            }
            if live.has_news() || live.in_flight.is_some() {
                assert!(live.scheduled_at_ms.is_some());
            }
        }
    }
}

fn add_pending(live: &mut Live, auid: &str, xui: &str, doc: &str, rec: ChangeRec) {
    if let Some(p) = live
        .pending
        .iter_mut()
        .find(|p| p.doc == doc && p.xui == xui && p.auid == auid)
    {
        if p.changes.len() >= MAX_CHANGES_PER_DOC {
            // Too many to patch: keep the ETag span, drop the patch.
            p.overflowed = true;
            if let Some(last) = p.changes.last_mut() {
                last.new = rec.new;
                last.change = Change::Replaced;
            }
        } else {
            p.changes.push(rec);
        }
        return;
    }
    if live.pending.len() >= MAX_PENDING_DOCS {
        // RFC 6665 §4.1.3 `deactivated`: re-subscribe at once (and get a full state).
        live.terminate = Some(Reason::Deactivated);
        return;
    }
    live.pending.push(PendingDoc {
        auid: auid.to_owned(),
        xui: xui.to_owned(),
        doc: doc.to_owned(),
        changes: vec![rec],
        overflowed: false,
    });
}

/// The `<document>` entries for the changes of one document (RFC 5874 §3, RFC 5875 §4.4):
/// `xcap-patching` one per change, `aggregate` one merged patch, `no-patching` ETags only
/// (previous ETag of the first change, new ETag of the last).
fn pending_entries(p: &PendingDoc, dp: DiffProcessing) -> Vec<DocumentEntry> {
    let sel = document_sel(&p.auid, &p.xui, &p.doc);
    if dp == DiffProcessing::XcapPatching && !p.overflowed {
        return p
            .changes
            .iter()
            .filter_map(|c| {
                DocumentEntry::for_changes(
                    &sel,
                    c.prev.clone(),
                    c.new.clone(),
                    std::slice::from_ref(&c.change),
                    true,
                )
            })
            .collect();
    }
    let (Some(first), Some(last)) = (p.changes.first(), p.changes.last()) else {
        return Vec::new();
    };
    let changes: Vec<Change> = p.changes.iter().map(|c| c.change.clone()).collect();
    DocumentEntry::for_changes(
        &sel,
        first.prev.clone(),
        last.new.clone(),
        &changes,
        dp.allows_patch() && !p.overflowed,
    )
    .into_iter()
    .collect()
}

/// Seconds left, rounded up, for `Subscription-State: active;expires=` (RFC 6665 §4.2.2).
fn remaining_s(expires_at_ms: u64, now_ms: u64) -> u32 {
    let ms = expires_at_ms.saturating_sub(now_ms);
    u32::try_from(ms.div_ceil(1000)).unwrap_or(u32::MAX)
}

/// The Via sent-by from our Contact URI (`sip:glms@127.0.0.1:5070` -> `127.0.0.1:5070`).
fn sent_by_of(contact: &str) -> String {
    let c = contact.trim().trim_start_matches('<').trim_end_matches('>');
    match crate::sip::uri::parse(c.as_bytes()) {
        Ok(u) => {
            let host = String::from_utf8_lossy(u.host);
            match u.port {
                Some(p) => format!("{host}:{p}"),
                None => host.into_owned(),
            }
        }
        Err(_) => "invalid.invalid".to_owned(),
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn sent_by_from_contact() {
        assert_eq!(sent_by_of("sip:glms@127.0.0.1:5070"), "127.0.0.1:5070");
        assert_eq!(sent_by_of("<sip:glms@example.com>"), "example.com");
    }

    #[test]
    fn remaining_rounds_up() {
        assert_eq!(remaining_s(10_000, 0), 10);
        assert_eq!(remaining_s(10_001, 0), 11);
        assert_eq!(remaining_s(5, 10), 0);
    }
}
