//! `churn`: blocked-list changes through the GLMS (XCAP element PUT to block, DELETE to
//! unblock) while MESSAGE load flows, and how fast each change reaches the IM Server.
//!
//! ```text
//!  changer k (one keep-alive XCAP connection, one probe socket)
//!    due(i) = start + i / changes_per_s
//!    acquire idle pair ──▶ table.begin (window opens) ──▶ PUT|DELETE ──▶ 200/201
//!        ──▶ probe MESSAGE every 0.5 ms ──▶ first new answer (block code | 200) closes the window
//!        latency = first new answer − XCAP answer (block / unblock histograms)
//!  sender threads (engine): MESSAGEs at --rate; a churned pair's answers are judged by
//!    the table: outside windows only the state in force, inside both ("in propagation").
//! ```
//!
//! Before the load: the pairs' states are read back from the GLMS (GET of the entry: 200 or
//! 404), and the generator waits until every registered user's policy is known (D6: a MESSAGE
//! from a non-blocked sender stops getting 480).
#![forbid(unsafe_code)]

pub mod probe;
pub mod report;
pub mod setup;
pub mod table;

pub use report::{ChurnFailures, ChurnReport, ProbeSummary, ReportInputs};
pub use setup::{PolicyWait, reconcile, wait_for_policies};

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;

use self::probe::ProbeSocket;
use self::table::ChurnTable;
use crate::sip::Transport;
use crate::stats::{MAX_LATENCY_US, new_histogram};
use crate::xcap::{XcapClient, XcapRoot, blocked_entry_body};

/// Examples of failures kept for the report.
pub(crate) const EXAMPLES: usize = 10;

/// What the changers need.
#[derive(Clone, Debug)]
pub struct ChurnConfig {
    pub root: XcapRoot,
    pub changes_per_s: f64,
    pub duration: Duration,
    /// Changer threads, each with one keep-alive XCAP connection.
    pub connections: usize,
    /// Gap between two probes of one change (0.5 ms).
    pub probe_interval: Duration,
    /// How long a change may take to show before it counts as never observed.
    pub probe_bound: Duration,
    pub http_timeout: Duration,
    pub transport: Transport,
    pub target: SocketAddr,
    pub local_ip: IpAddr,
    /// The MESSAGE phase's run id (so the recipients recognise probes).
    pub run_id: u32,
    pub domain: String,
    pub body: Vec<u8>,
    pub block_code: u16,
}

impl ChurnConfig {
    /// A MESSAGE probe socket to the server under test, as this run's probes use it.
    fn probe_socket(&self) -> std::io::Result<ProbeSocket> {
        ProbeSocket::open(
            self.transport,
            self.local_ip,
            self.target,
            self.run_id,
            &self.domain,
            &self.body,
        )
    }

    pub(crate) fn aor(&self, n: u32) -> String {
        format!("sip:u{n}@{}", self.domain)
    }

    /// How many changes are due within the run.
    pub fn change_count(&self) -> u64 {
        (self.duration.as_secs_f64() * self.changes_per_s).ceil() as u64
    }
}

/// What the changers counted (merged over threads).
#[derive(Clone, Debug)]
pub struct ChangeStats {
    pub attempted: u64,
    pub blocks: u64,
    pub unblocks: u64,
    pub committed: u64,
    pub observed: u64,
    pub xcap_status: BTreeMap<u16, u64>,
    pub xcap_non_2xx: u64,
    pub xcap_io_errors: u64,
    pub never_observed: u64,
    /// The new answer arrived before the XCAP 200 did (latency recorded as 0).
    pub observed_before_answer: u64,
    pub skipped_all_busy: u64,
    pub probes_sent: u64,
    pub probe_send_errors: u64,
    pub probe_answers: BTreeMap<u16, u64>,
    pub probe_in_propagation: u64,
    pub probe_mismatches: u64,
    pub probe_unanswered: u64,
    pub connects: u64,
    pub examples: Vec<String>,
    pub start_lag_us: Histogram<u64>,
    pub xcap_us: Histogram<u64>,
    pub block_us: Histogram<u64>,
    pub unblock_us: Histogram<u64>,
    pub first_start: Option<Instant>,
    pub last_start: Option<Instant>,
}

impl Default for ChangeStats {
    fn default() -> Self {
        Self {
            attempted: 0,
            blocks: 0,
            unblocks: 0,
            committed: 0,
            observed: 0,
            xcap_status: BTreeMap::new(),
            xcap_non_2xx: 0,
            xcap_io_errors: 0,
            never_observed: 0,
            observed_before_answer: 0,
            skipped_all_busy: 0,
            probes_sent: 0,
            probe_send_errors: 0,
            probe_answers: BTreeMap::new(),
            probe_in_propagation: 0,
            probe_mismatches: 0,
            probe_unanswered: 0,
            connects: 0,
            examples: Vec::new(),
            start_lag_us: new_histogram(),
            xcap_us: new_histogram(),
            block_us: new_histogram(),
            unblock_us: new_histogram(),
            first_start: None,
            last_start: None,
        }
    }
}

pub(crate) fn record_us(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record((d.as_micros() as u64).clamp(1, MAX_LATENCY_US));
}

impl ChangeStats {
    fn example(&mut self, text: String) {
        if self.examples.len() < EXAMPLES {
            self.examples.push(text);
        }
    }

    pub fn merge(&mut self, other: &ChangeStats) {
        self.attempted += other.attempted;
        self.blocks += other.blocks;
        self.unblocks += other.unblocks;
        self.committed += other.committed;
        self.observed += other.observed;
        for (code, n) in &other.xcap_status {
            *self.xcap_status.entry(*code).or_default() += n;
        }
        self.xcap_non_2xx += other.xcap_non_2xx;
        self.xcap_io_errors += other.xcap_io_errors;
        self.never_observed += other.never_observed;
        self.observed_before_answer += other.observed_before_answer;
        self.skipped_all_busy += other.skipped_all_busy;
        self.probes_sent += other.probes_sent;
        self.probe_send_errors += other.probe_send_errors;
        for (code, n) in &other.probe_answers {
            *self.probe_answers.entry(*code).or_default() += n;
        }
        self.probe_in_propagation += other.probe_in_propagation;
        self.probe_mismatches += other.probe_mismatches;
        self.probe_unanswered += other.probe_unanswered;
        self.connects += other.connects;
        for example in &other.examples {
            self.example(example.clone());
        }
        // Same bounds everywhere: adding cannot fail.
        let _ = self.start_lag_us.add(&other.start_lag_us);
        let _ = self.xcap_us.add(&other.xcap_us);
        let _ = self.block_us.add(&other.block_us);
        let _ = self.unblock_us.add(&other.unblock_us);
        self.first_start = match (self.first_start, other.first_start) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_start = self.last_start.max(other.last_start);
    }
}

/// The running changers.
pub struct Changers {
    handles: Vec<JoinHandle<anyhow::Result<ChangeStats>>>,
}

impl Changers {
    /// Starts `cfg.connections` changer threads; changes are due from now on.
    pub fn start(cfg: Arc<ChurnConfig>, table: Arc<ChurnTable>) -> anyhow::Result<Self> {
        let start = Instant::now();
        let next = Arc::new(AtomicU64::new(0));
        let mut handles = Vec::new();
        for worker in 0..cfg.connections.clamp(1, 64) {
            let socket = cfg
                .probe_socket()
                .context("opening a change-probe socket")?;
            let changer = Changer {
                cfg: Arc::clone(&cfg),
                table: Arc::clone(&table),
                client: XcapClient::new(cfg.root.clone(), cfg.http_timeout),
                socket,
                pending: HashMap::new(),
                seq: (worker as u64) << 40,
                stats: ChangeStats::default(),
            };
            let next = Arc::clone(&next);
            handles.push(
                std::thread::Builder::new()
                    .name(format!("loadgen-churn-{worker}"))
                    .spawn(move || changer.run(start, &next))
                    .context("spawning a changer thread")?,
            );
        }
        Ok(Self { handles })
    }

    /// Waits for the changers (they stop by themselves after the duration and one probe bound).
    pub fn finish(self) -> anyhow::Result<ChangeStats> {
        let mut total = ChangeStats::default();
        for handle in self.handles {
            let stats = handle
                .join()
                .map_err(|_| anyhow::anyhow!("a changer thread panicked"))??;
            total.merge(&stats);
        }
        Ok(total)
    }
}

struct Changer {
    cfg: Arc<ChurnConfig>,
    table: Arc<ChurnTable>,
    client: XcapClient,
    socket: ProbeSocket,
    /// Probes in flight: seq -> (pair, sent on the table clock).
    pending: HashMap<u64, (u32, u64)>,
    seq: u64,
    stats: ChangeStats,
}

impl Changer {
    fn run(mut self, start: Instant, next: &AtomicU64) -> anyhow::Result<ChangeStats> {
        crate::sys::tighten_timer_slack();
        let count = self.cfg.change_count();
        let period = Duration::from_secs_f64(1.0 / self.cfg.changes_per_s.max(1e-6));
        let end = start + self.cfg.duration;
        // Bounded by `count` and by `end` (no change starts after it; each takes at most one
        // XCAP timeout plus one probe bound).
        loop {
            let k = next.fetch_add(1, Ordering::Relaxed);
            if k >= count {
                break;
            }
            let due = start + period.mul_f64(k as f64);
            if due >= end || Instant::now() >= end {
                break;
            }
            self.idle_until(due)?;
            let now = Instant::now();
            record_us(
                &mut self.stats.start_lag_us,
                now.saturating_duration_since(due),
            );
            self.stats.first_start.get_or_insert(now);
            self.stats.last_start = Some(now);
            self.forget_old_probes();
            let Some(i) = self.table.acquire() else {
                self.stats.skipped_all_busy += 1;
                continue;
            };
            let result = self.change(i);
            self.table.release(i);
            result?;
        }
        // Late answers to the last probes still count (judged, never mismatched silently).
        self.idle_until(Instant::now() + Duration::from_millis(100))?;
        self.stats.probe_unanswered += self.pending.len() as u64;
        self.stats.connects = self.client.connects;
        Ok(self.stats)
    }

    /// Reads probe answers until `until`.
    fn idle_until(&mut self, until: Instant) -> anyhow::Result<()> {
        // Bounded: each round waits until `until` or handles answers; 10k rounds at most.
        for _ in 0..10_000 {
            if Instant::now() >= until {
                break;
            }
            self.receive(until, None)?;
        }
        Ok(())
    }

    /// Drops probes that can no longer be answered (counted as unanswered).
    fn forget_old_probes(&mut self) {
        let horizon = (self.cfg.probe_bound * 2).as_nanos() as u64;
        let now = self.table.now_ns();
        let before = self.pending.len();
        self.pending
            .retain(|_, (_, sent)| now.saturating_sub(*sent) < horizon);
        self.stats.probe_unanswered += (before - self.pending.len()) as u64;
    }

    fn receive(&mut self, until: Instant, watching: Option<u32>) -> anyhow::Result<()> {
        let Self {
            socket,
            pending,
            stats,
            table,
            ..
        } = self;
        let mut answers = Vec::new();
        socket.receive(
            until,
            |seq, code, at| answers.push((seq, code, at)),
            || watching.is_some_and(|i| table.observed_ns(i).is_some()),
        )?;
        for (seq, code, at) in answers {
            let Some((pair, sent_ns)) = pending.remove(&seq) else {
                continue;
            };
            *stats.probe_answers.entry(code).or_default() += 1;
            let judgement = table.judge(pair, sent_ns, table.ns_of(at), code);
            if !judgement.ok {
                stats.probe_mismatches += 1;
                let (recipient, sender) = table.pair(pair).unwrap_or_default();
                stats.example(format!(
                    "probe u{sender} -> u{recipient}: expected {}, got {code}",
                    judgement.expected
                ));
            } else if judgement.in_propagation {
                stats.probe_in_propagation += 1;
            }
        }
        Ok(())
    }

    /// One change of pair `i`: the XCAP request, then probes until the new state shows.
    fn change(&mut self, i: u32) -> anyhow::Result<()> {
        let Some((recipient, sender)) = self.table.pair(i) else {
            return Ok(());
        };
        let owner = self.cfg.aor(recipient);
        let entry = self.cfg.aor(sender);
        let path = self.cfg.root.blocked_entry_path(&owner, &entry);
        let body = blocked_entry_body(&entry);
        self.stats.attempted += 1;
        let sent = Instant::now();
        // The window opens before the request leaves (see table.rs).
        let block = self.table.begin(i, self.table.ns_of(sent));
        let (method, result) = if block {
            self.stats.blocks += 1;
            let content = Some(("application/xcap-el+xml", body.as_bytes()));
            (
                "PUT",
                self.client.request("PUT", &path, Some(&owner), content),
            )
        } else {
            self.stats.unblocks += 1;
            (
                "DELETE",
                self.client.request("DELETE", &path, Some(&owner), None),
            )
        };
        let answered = Instant::now();
        record_us(&mut self.stats.xcap_us, answered - sent);
        let status = match result {
            Err(error) => {
                self.stats.xcap_io_errors += 1;
                self.stats
                    .example(format!("{method} u{recipient} blocks u{sender}: {error}"));
                self.table.poison(i);
                return Ok(());
            }
            Ok(response) => {
                *self.stats.xcap_status.entry(response.status).or_default() += 1;
                if !response.is_success() {
                    self.stats.xcap_non_2xx += 1;
                    let text: String = String::from_utf8_lossy(&response.body)
                        .chars()
                        .take(160)
                        .collect();
                    self.stats.example(format!(
                        "{method} {path} answered {}: {text}",
                        response.status
                    ));
                    self.table.abort(i);
                    return Ok(());
                }
                response.status
            }
        };
        self.stats.committed += 1;
        let deadline = answered + self.cfg.probe_bound;
        let mut next_probe = answered;
        // Bounded by `deadline`.
        while self.table.observed_ns(i).is_none() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if now >= next_probe {
                self.seq += 1;
                match self.socket.send(self.seq, sender, recipient) {
                    Ok(()) => {
                        self.stats.probes_sent += 1;
                        self.pending.insert(self.seq, (i, self.table.ns_of(now)));
                    }
                    Err(_) => self.stats.probe_send_errors += 1,
                }
                next_probe += self.cfg.probe_interval;
                if next_probe < now {
                    next_probe = now + self.cfg.probe_interval;
                }
            }
            self.receive(next_probe.min(deadline), Some(i))?;
        }
        match self.table.observed_ns(i) {
            Some(observed_ns) => {
                self.stats.observed += 1;
                let answered_ns = self.table.ns_of(answered);
                if observed_ns < answered_ns {
                    self.stats.observed_before_answer += 1;
                }
                let latency = Duration::from_nanos(observed_ns.saturating_sub(answered_ns));
                let histogram = if block {
                    &mut self.stats.block_us
                } else {
                    &mut self.stats.unblock_us
                };
                record_us(histogram, latency);
            }
            None => {
                self.stats.never_observed += 1;
                self.stats.example(format!(
                    "{method} u{recipient} blocks u{sender}: committed ({status} in {} ms) but not seen within {} ms",
                    (answered - sent).as_millis(),
                    self.cfg.probe_bound.as_millis()
                ));
                self.table.poison(i);
            }
        }
        Ok(())
    }
}

/// A small configuration for unit tests (shared by this module's and report's tests).
#[cfg(test)]
pub(crate) fn test_config() -> ChurnConfig {
    ChurnConfig {
        root: XcapRoot::parse("http://127.0.0.1:1/xcap-root").expect("root"),
        changes_per_s: 20.0,
        duration: Duration::from_secs(3),
        connections: 2,
        probe_interval: Duration::from_micros(500),
        probe_bound: Duration::from_secs(2),
        http_timeout: Duration::from_secs(1),
        transport: Transport::Udp,
        target: "127.0.0.1:5060".parse().expect("addr"),
        local_ip: IpAddr::from([127, 0, 0, 1]),
        run_id: 1,
        domain: "example.com".into(),
        body: Vec::new(),
        block_code: 603,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_merges() {
        assert_eq!(test_config().change_count(), 60);
        let mut a = ChangeStats {
            attempted: 2,
            committed: 2,
            observed: 1,
            never_observed: 1,
            ..ChangeStats::default()
        };
        record_us(&mut a.block_us, Duration::from_micros(300));
        a.xcap_status.insert(201, 2);
        let mut b = ChangeStats {
            attempted: 1,
            xcap_non_2xx: 1,
            ..ChangeStats::default()
        };
        b.xcap_status.insert(409, 1);
        b.example("409".into());
        a.merge(&b);
        assert_eq!((a.attempted, a.committed, a.observed), (3, 2, 1));
        assert_eq!(a.xcap_status.len(), 2);
        assert_eq!(a.block_us.len(), 1);
        assert_eq!(a.examples, vec!["409".to_owned()]);
    }
}
