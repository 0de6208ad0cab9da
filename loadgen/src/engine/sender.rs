//! One sender thread: owns its sockets, releases requests by the pacer (or window), matches
//! responses to in-flight requests by the Call-ID's slot, answers Digest challenges once, and
//! times out the rest. Everything it counts is its own; the engine merges at the end.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mio::{Events, Interest, Poll, Token};

use super::conn::Conn;
use super::inflight::{Inflight, Slot};
use super::pacer::{Pacing, Partition, Schedule, charged_latency_us};
use super::{Shared, raw};
use crate::sip::digest::Challenge;
use crate::sip::scan::{self, CallId};
use crate::sip::template::{self, Values};
use crate::stats::Stats;
use crate::sys::{self, CpuTime, RawAddr, RecvBatch, Timer};
use crate::workload::{Kind, Plan};

const TIMER: Token = Token(usize::MAX - 1);
/// Longest single poll: bounds how stale timeouts and the progress counters can get.
const MAX_POLL: Duration = Duration::from_millis(50);
/// Closer than this to the next due time, the thread does not sleep.
const SPIN_NS: u64 = 20_000;
/// Most requests released per loop round, so receiving is never starved.
const SEND_BUDGET: usize = 512;

/// What a sender thread hands back.
pub struct ThreadResult {
    pub stats: Stats,
    pub cpu: CpuTime,
    pub first_send_ns: u64,
    pub last_send_ns: u64,
    pub last_completion_ns: u64,
    /// Kept open until the engine has read the kernel's per-socket drop counters.
    pub conns: Vec<Conn>,
}

pub struct SenderThread {
    conns: Vec<Conn>,
    target: RawAddr,
    partition: Partition,
    next_k: u64,
    local_count: u64,
    schedule: Option<Schedule>,
    sending_done: bool,
    readable: Vec<bool>,
    recv: RecvBatch,
    first_send_ns: u64,
    last_send_ns: u64,
    reported_sent: u64,
    reported_completed: u64,
    rr: usize,
    core: Core,
}

/// The matching state, apart from the sockets so a receive callback can borrow it.
struct Core {
    shared: Arc<Shared>,
    inflight: Inflight,
    stats: Stats,
    /// Outstanding requests per connection (the closed-loop window).
    outstanding: Vec<u32>,
    /// Digest answers to send once the receive pass is over: (conn, slot index, credentials).
    retries: Vec<(usize, u32, String)>,
    last_completion_ns: u64,
    /// The engine's start on the churn table's clock (0 without churn).
    churn_base_ns: u64,
}

impl SenderThread {
    pub fn new(shared: Arc<Shared>, partition: Partition, conns: Vec<Conn>) -> Self {
        let cfg = &shared.cfg;
        let local_count = partition.local_count(cfg.count);
        let schedule = match cfg.pacing {
            Pacing::Open { rate_per_s } => Some(Schedule::new(rate_per_s)),
            Pacing::Closed { .. } => None,
        };
        let core = Core {
            inflight: Inflight::new(cfg.max_inflight),
            stats: Stats::default(),
            outstanding: vec![0; conns.len()],
            retries: Vec::new(),
            last_completion_ns: 0,
            churn_base_ns: shared
                .workload
                .churn_table()
                .map_or(0, |table| table.ns_of(shared.start)),
            shared: Arc::clone(&shared),
        };
        Self {
            target: RawAddr::new(cfg.target),
            readable: vec![true; conns.len()],
            partition,
            conns,
            next_k: 0,
            local_count,
            schedule,
            sending_done: local_count == 0,
            recv: RecvBatch::new(),
            first_send_ns: u64::MAX,
            last_send_ns: 0,
            reported_sent: 0,
            reported_completed: 0,
            rr: 0,
            core,
        }
    }

    pub fn run(mut self) -> std::io::Result<ThreadResult> {
        sys::tighten_timer_slack();
        let cpu_start = sys::thread_cpu();
        let mut poll = Poll::new()?;
        let timer = Timer::new()?;
        poll.registry().register(
            &mut mio::unix::SourceFd(&timer.raw_fd()),
            TIMER,
            Interest::READABLE,
        )?;
        for (i, conn) in self.conns.iter_mut().enumerate() {
            poll.registry().register(
                conn.source(),
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )?;
        }
        let mut events = Events::with_capacity(256);
        let shared = Arc::clone(&self.core.shared);
        let cfg = &shared.cfg;
        let hard_stop_ns = (cfg.duration + cfg.timeout + Duration::from_secs(2)).as_nanos() as u64;
        let duration_ns = cfg.duration.as_nanos() as u64;
        // Bounded in time by hard_stop_ns (checked every round; a round waits at most MAX_POLL).
        loop {
            let now = shared.now_ns();
            if now >= hard_stop_ns {
                break;
            }
            self.receive_all();
            let now = shared.now_ns();
            self.expire(now);
            if !self.sending_done {
                self.send_due(now, duration_ns);
            }
            self.flush_all();
            self.publish_progress();
            if self.sending_done && self.core.inflight.live() == 0 {
                break;
            }
            let wait = self.wait_ns(shared.now_ns());
            let readable = self.readable.iter().any(|&r| r);
            let timeout = if wait <= SPIN_NS || readable {
                if !readable {
                    // Spinning until the next send: let the recipients' thread (same core) run.
                    std::thread::yield_now();
                }
                Some(Duration::ZERO)
            } else {
                timer.arm(Duration::from_nanos(wait))?;
                Some(MAX_POLL)
            };
            poll.poll(&mut events, timeout)?;
            for event in &events {
                if event.token() == TIMER {
                    timer.clear();
                } else if let Some(flag) = self.readable.get_mut(event.token().0) {
                    *flag |= event.is_readable() || event.is_read_closed();
                }
            }
        }
        let mut unanswered = 0;
        self.core.inflight.drain(|_| unanswered += 1);
        self.core.stats.unanswered += unanswered;
        self.publish_progress();
        Ok(ThreadResult {
            stats: self.core.stats,
            cpu: sys::thread_cpu().since(cpu_start),
            first_send_ns: self.first_send_ns,
            last_send_ns: self.last_send_ns,
            last_completion_ns: self.core.last_completion_ns,
            conns: self.conns,
        })
    }

    /// Nanoseconds until the next reason to act (next due request, or a poll bound).
    fn wait_ns(&self, now: u64) -> u64 {
        let bound = MAX_POLL.as_nanos() as u64;
        match (&self.schedule, self.sending_done) {
            (Some(schedule), false) => schedule
                .intended_ns(self.partition.seq(self.next_k))
                .saturating_sub(now)
                .min(bound),
            _ => bound,
        }
    }

    fn publish_progress(&mut self) {
        let p = &self.core.shared.progress;
        let stats = &self.core.stats;
        p.sent
            .fetch_add(stats.sent - self.reported_sent, Ordering::Relaxed);
        p.completed
            .fetch_add(stats.completed - self.reported_completed, Ordering::Relaxed);
        self.reported_sent = stats.sent;
        self.reported_completed = stats.completed;
    }

    fn expire(&mut self, now: u64) {
        let core = &mut self.core;
        let mut expired = 0u64;
        let outstanding = &mut core.outstanding;
        core.inflight.expire(now, |slot| {
            expired += 1;
            if let Some(n) = outstanding.get_mut(usize::from(slot.conn)) {
                *n = n.saturating_sub(1);
            }
        });
        core.stats.unanswered += expired;
    }

    fn send_due(&mut self, now: u64, duration_ns: u64) {
        let window = match self.core.shared.cfg.pacing {
            Pacing::Closed { window } => Some(window),
            Pacing::Open { .. } => None,
        };
        for _ in 0..SEND_BUDGET {
            if self.next_k >= self.local_count {
                self.sending_done = true;
                return;
            }
            let seq = self.partition.seq(self.next_k);
            let intended_ns = match &self.schedule {
                Some(schedule) => {
                    let due = schedule.intended_ns(seq);
                    if due >= duration_ns {
                        self.sending_done = true;
                        return;
                    }
                    if due > now {
                        return;
                    }
                    due
                }
                None => {
                    if now >= duration_ns {
                        self.sending_done = true;
                        return;
                    }
                    now
                }
            };
            let plan = self.core.shared.workload.plan(seq);
            let Some(conn) = self.pick_conn(&plan, window) else {
                return;
            };
            self.next_k += 1;
            self.send_new(seq, plan, conn, intended_ns, now);
        }
    }

    fn pick_conn(&mut self, plan: &Plan, window: Option<u32>) -> Option<usize> {
        let n = self.conns.len();
        match window {
            Some(window) => {
                for i in 0..n {
                    let c = (self.rr + i) % n;
                    if self.core.outstanding[c] < window && self.conns[c].can_queue() {
                        self.rr = (c + 1) % n;
                        return Some(c);
                    }
                }
                None
            }
            None => {
                let per_socket = self.core.shared.cfg.senders_per_socket;
                let c = match plan.sender.saturating_sub(1).checked_div(per_socket) {
                    Some(group) => group as usize % n,
                    None => self.next_k as usize % n,
                };
                Some(c)
            }
        }
    }

    fn send_new(&mut self, seq: u64, plan: Plan, conn: usize, intended_ns: u64, now: u64) {
        let core = &mut self.core;
        core.stats.expected_by_decision[plan.decision.index()] += 1;
        core.stats.sent += 1;
        if plan.kind == Kind::Message
            && core
                .shared
                .workload
                .churn_index(plan.recipient, plan.sender)
                .is_some()
        {
            core.stats.churn_pair_messages += 1;
        }
        self.first_send_ns = self.first_send_ns.min(now);
        self.last_send_ns = now;
        let slot = Slot {
            seq,
            intended_ns,
            sent_ns: now,
            plan,
            conn: conn as u16,
            attempt: 0,
        };
        let deadline = now.max(intended_ns) + core.shared.cfg.timeout.as_nanos() as u64;
        let Some(index) = core.inflight.insert(slot, deadline) else {
            core.stats.inflight_full += 1;
            return;
        };
        if !self.conns[conn].can_queue() {
            core.inflight.remove(index);
            core.stats.send_failed += 1;
            return;
        }
        core.outstanding[conn] += 1;
        self.queue_request(conn, index, &slot, None);
    }

    fn queue_request(&mut self, conn: usize, index: u32, slot: &Slot, auth: Option<&str>) {
        if self.conns[conn].batch_full() {
            self.flush(conn);
        }
        let values = Values {
            seq: slot.seq,
            slot: index,
            attempt: slot.attempt,
            sender: slot.plan.sender,
            recipient: slot.plan.recipient,
        };
        let shared = &self.core.shared;
        let plan = slot.plan;
        self.conns[conn].queue(index, |writer, out| match plan.kind {
            Kind::Message if auth.is_none() => writer.write(&values, out),
            Kind::Message => template::write_message(out, writer.params(), &values, auth),
            Kind::Register => {
                let contact = shared.contacts.contact_for(plan.recipient);
                template::write_register(
                    out,
                    writer.params(),
                    &values,
                    contact,
                    shared.cfg.register_expires_s,
                    auth,
                );
            }
            Kind::Publish => {
                let isb = shared
                    .workload
                    .dataset
                    .user(plan.sender)
                    .is_some_and(|u| u.isb);
                template::write_publish(
                    out,
                    writer.params(),
                    &values,
                    isb,
                    shared.cfg.publish_expires_s,
                    auth,
                );
            }
            Kind::Raw => raw::write(
                out,
                writer.params().run,
                index,
                values.seq,
                shared.cfg.raw_size,
            ),
        });
    }

    fn flush(&mut self, conn: usize) {
        let core = &mut self.core;
        self.conns[conn].flush(&self.target, |index| {
            if core.inflight.remove(index).is_some() {
                core.stats.send_failed += 1;
                core.outstanding[conn] = core.outstanding[conn].saturating_sub(1);
            }
        });
    }

    fn flush_all(&mut self) {
        for conn in 0..self.conns.len() {
            self.flush(conn);
        }
    }

    fn receive_all(&mut self) {
        for conn in 0..self.conns.len() {
            if !self.readable[conn] {
                continue;
            }
            let core = &mut self.core;
            let drained =
                self.conns[conn].receive(&mut self.recv, |msg| core.on_message(conn, msg));
            self.readable[conn] = !drained;
        }
        let retries = std::mem::take(&mut self.core.retries);
        for (conn, index, auth) in &retries {
            let Some(slot) = self.core.inflight.get_by_index(*index) else {
                continue;
            };
            self.queue_request(*conn, *index, &slot, Some(auth));
        }
    }
}

impl Core {
    fn on_message(&mut self, conn: usize, msg: &[u8]) {
        let arrived = self.shared.now_ns();
        let run = self.shared.run_id;
        let (id, code) = if self.shared.is_raw() {
            match raw::parse(msg) {
                Some(id) if id.run == run => (id, 200),
                _ => return self.stats.unparsable += 1,
            }
        } else {
            let Some(code) = scan::status_code(msg) else {
                // A request on a sender socket: not ours to answer.
                return self.stats.unparsable += 1;
            };
            match CallId::of_message(msg) {
                Some(id) if id.run == run => (id, code),
                Some(_) => return self.stats.unmatched_responses += 1,
                None => return self.stats.unparsable += 1,
            }
        };
        let Some(slot) = self.inflight.get_mut(id.slot, id.seq).copied() else {
            self.stats.unmatched_responses += 1;
            return;
        };
        if code < 200 {
            self.stats.provisional += 1;
            return;
        }
        if (code == 401 || code == 407)
            && slot.attempt == 0
            && self.answer_challenge(conn, id.slot, &slot, code, msg)
        {
            return;
        }
        self.inflight.remove(id.slot);
        if let Some(n) = self.outstanding.get_mut(usize::from(slot.conn)) {
            *n = n.saturating_sub(1);
        }
        self.last_completion_ns = arrived;
        let plan = slot.plan;
        let (decision, expected) = match self.churn_judgement(&slot, arrived, code) {
            Some(judgement) => {
                if judgement.in_propagation {
                    self.stats.in_propagation += 1;
                }
                (judgement.decision, judgement.expected)
            }
            None => (
                plan.decision,
                plan.decision.expected_code(self.shared.workload.block_code),
            ),
        };
        self.stats.record_final(
            decision,
            expected,
            code,
            charged_latency_us(slot.intended_ns, arrived),
            || {
                format!(
                    "seq {} {:?} u{} -> u{} ({})",
                    slot.seq,
                    plan.kind,
                    plan.sender,
                    plan.recipient,
                    plan.decision.name()
                )
            },
        );
    }

    /// `churn`: a MESSAGE between a churned pair is judged by the pair's history over its life
    /// [actual send, arrival], which may also record it as the first sight of a change.
    fn churn_judgement(
        &self,
        slot: &Slot,
        arrived_ns: u64,
        code: u16,
    ) -> Option<crate::churn::table::Judgement> {
        if slot.plan.kind != Kind::Message {
            return None;
        }
        let table = self.shared.workload.churn_table()?;
        let i = table.index_of(slot.plan.recipient, slot.plan.sender)?;
        Some(table.judge(
            i,
            self.churn_base_ns + slot.sent_ns,
            self.churn_base_ns + arrived_ns,
            code,
        ))
    }

    /// RFC 3261 §22.2/§22.3: answer a 401/407 once, with a new branch and CSeq + 1; the latency
    /// keeps counting from the first try's intended time.
    fn answer_challenge(
        &mut self,
        conn: usize,
        index: u32,
        slot: &Slot,
        code: u16,
        msg: &[u8],
    ) -> bool {
        if slot.plan.kind == Kind::Raw {
            return false;
        }
        let header = if code == 401 {
            &b"WWW-Authenticate"[..]
        } else {
            &b"Proxy-Authenticate"[..]
        };
        let Some(challenge) = scan::header(msg, header, None).and_then(Challenge::parse) else {
            return false;
        };
        let user = match slot.plan.kind {
            Kind::Register => slot.plan.recipient,
            _ => slot.plan.sender,
        };
        let domain = &self.shared.workload.dataset.params.domain;
        let (method, uri) = match slot.plan.kind {
            Kind::Register => ("REGISTER", format!("sip:{domain}")),
            Kind::Publish => ("PUBLISH", format!("sip:u{user}@{domain}")),
            _ => ("MESSAGE", format!("sip:u{}@{domain}", slot.plan.recipient)),
        };
        let (username, password) = self.shared.cfg.auth.credentials(user, domain);
        let cnonce = format!("{:016x}", slot.seq);
        let answer = challenge.answer(&username, &password, method, &uri, 1, &cnonce);
        let Some(live) = self.inflight.get_mut(index, slot.seq) else {
            return false;
        };
        live.attempt = 1;
        self.stats.auth_retries += 1;
        self.retries.push((conn, index, answer));
        true
    }
}
