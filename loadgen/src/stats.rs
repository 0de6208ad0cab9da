//! What a run counted: sends, responses by code, mismatches against the expectations,
//! unanswered requests, and HdrHistogram latencies (microseconds, 3 significant digits).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::workload::Decision;

/// Latencies above a minute are clamped (and a one-minute timeout is already absurd).
pub const MAX_LATENCY_US: u64 = 60_000_000;
/// How many mismatch descriptions a run keeps for the report.
pub const MISMATCH_EXAMPLES: usize = 10;

pub fn new_histogram() -> Histogram<u64> {
    // Bounds are constants within hdrhistogram's limits: this cannot fail.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
        .unwrap_or_else(|_| unreachable!("constant bounds"))
}

/// Counters of one sender thread (merged at the end).
#[derive(Clone, Debug)]
pub struct Stats {
    pub sent: u64,
    pub completed: u64,
    pub responses_by_code: BTreeMap<u16, u64>,
    pub provisional: u64,
    pub expected_by_decision: [u64; Decision::ALL.len()],
    pub mismatches: u64,
    /// Expected the block code, got a 2xx: a blocked sender got through.
    pub blocked_delivered: u64,
    /// Expected 200 (relay), got one of D1's block codes (603 or 403).
    pub wrongly_blocked: u64,
    pub mismatch_examples: Vec<String>,
    pub unanswered: u64,
    pub send_failed: u64,
    /// Not sent because the in-flight table was full (the generator was the limit).
    pub inflight_full: u64,
    /// Responses that matched nothing in flight: late (after the timeout), duplicated, foreign.
    pub unmatched_responses: u64,
    pub unparsable: u64,
    pub auth_retries: u64,
    /// `churn`: MESSAGEs sent between a churned pair.
    pub churn_pair_messages: u64,
    /// `churn`: answers accepted either way because the MESSAGE overlapped a change's
    /// propagation window (not mismatches).
    pub in_propagation: u64,
    pub latency_us: Histogram<u64>,
    pub latency_us_by_decision: Vec<Histogram<u64>>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            sent: 0,
            completed: 0,
            responses_by_code: BTreeMap::new(),
            provisional: 0,
            expected_by_decision: [0; Decision::ALL.len()],
            mismatches: 0,
            blocked_delivered: 0,
            wrongly_blocked: 0,
            mismatch_examples: Vec::new(),
            unanswered: 0,
            send_failed: 0,
            inflight_full: 0,
            unmatched_responses: 0,
            unparsable: 0,
            auth_retries: 0,
            churn_pair_messages: 0,
            in_propagation: 0,
            latency_us: new_histogram(),
            latency_us_by_decision: Decision::ALL.iter().map(|_| new_histogram()).collect(),
        }
    }
}

impl Stats {
    /// Records a final response for a request whose decision was `decision`.
    pub fn record_final(
        &mut self,
        decision: Decision,
        expected: u16,
        code: u16,
        latency_us: u64,
        what: impl FnOnce() -> String,
    ) {
        self.completed += 1;
        *self.responses_by_code.entry(code).or_default() += 1;
        let latency_us = latency_us.clamp(1, MAX_LATENCY_US);
        self.latency_us.saturating_record(latency_us);
        self.latency_us_by_decision[decision.index()].saturating_record(latency_us);
        if code != expected {
            self.mismatches += 1;
            if decision == Decision::Blocked && (200..300).contains(&code) {
                self.blocked_delivered += 1;
            } else if decision == Decision::Relay && matches!(code, 403 | 603) {
                self.wrongly_blocked += 1;
            }
            if self.mismatch_examples.len() < MISMATCH_EXAMPLES {
                self.mismatch_examples
                    .push(format!("{}: expected {expected}, got {code}", what()));
            }
        }
    }

    pub fn merge(&mut self, other: &Stats) {
        self.sent += other.sent;
        self.completed += other.completed;
        for (code, count) in &other.responses_by_code {
            *self.responses_by_code.entry(*code).or_default() += count;
        }
        self.provisional += other.provisional;
        for (mine, theirs) in self
            .expected_by_decision
            .iter_mut()
            .zip(other.expected_by_decision)
        {
            *mine += theirs;
        }
        self.mismatches += other.mismatches;
        self.blocked_delivered += other.blocked_delivered;
        self.wrongly_blocked += other.wrongly_blocked;
        for example in &other.mismatch_examples {
            if self.mismatch_examples.len() < MISMATCH_EXAMPLES {
                self.mismatch_examples.push(example.clone());
            }
        }
        self.unanswered += other.unanswered;
        self.send_failed += other.send_failed;
        self.inflight_full += other.inflight_full;
        self.unmatched_responses += other.unmatched_responses;
        self.unparsable += other.unparsable;
        self.auth_retries += other.auth_retries;
        self.churn_pair_messages += other.churn_pair_messages;
        self.in_propagation += other.in_propagation;
        // Same bounds on both sides: adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
        for (mine, theirs) in self
            .latency_us_by_decision
            .iter_mut()
            .zip(&other.latency_us_by_decision)
        {
            let _ = mine.add(theirs);
        }
    }

    /// Requests that never got a final answer, for whatever reason.
    pub fn lost(&self) -> u64 {
        self.unanswered + self.send_failed + self.inflight_full
    }
}

/// Percentiles of a latency histogram, in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min_us: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl LatencySummary {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            min_us: h.min(),
            mean_us: (h.mean() * 10.0).round() / 10.0,
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_percentiles() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v).expect("in range");
        }
        let s = LatencySummary::of(&h);
        assert_eq!(s.count, 1000);
        assert_eq!(s.min_us, 1);
        assert_eq!(s.p50_us, 500);
        assert_eq!(s.p90_us, 900);
        assert_eq!(s.p99_us, 990);
        assert_eq!(s.p999_us, 999);
        assert_eq!(s.max_us, 1000);
        assert!((s.mean_us - 500.5).abs() < 0.5);
        assert_eq!(
            LatencySummary::of(&new_histogram()),
            LatencySummary::default()
        );
    }

    #[test]
    fn mismatches_are_classified_and_merged() {
        let mut a = Stats::default();
        a.record_final(Decision::Blocked, 603, 200, 50, || "seq 1".into());
        a.record_final(Decision::Relay, 200, 603, 70, || "seq 2".into());
        a.record_final(Decision::Relay, 200, 200, 30, || {
            unreachable!("no mismatch, no text")
        });
        let mut b = Stats::default();
        b.record_final(Decision::Unknown, 404, 480, 10, || "seq 3".into());
        b.unanswered = 2;
        a.merge(&b);
        assert_eq!(a.completed, 4);
        assert_eq!(a.mismatches, 3);
        assert_eq!(a.blocked_delivered, 1);
        assert_eq!(a.wrongly_blocked, 1);
        assert_eq!(a.mismatch_examples.len(), 3);
        assert_eq!(a.responses_by_code.get(&200), Some(&2));
        assert_eq!(a.latency_us.len(), 4);
        assert_eq!(a.latency_us_by_decision[Decision::Relay.index()].len(), 2);
        assert_eq!(a.lost(), 2);
    }
}
