//! The `churn` section of the report, its summary lines and its verdict.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::setup::PolicyWait;
use super::table::ChurnTable;
use super::{ChangeStats, ChurnConfig};
use crate::report::{codes, join};
use crate::stats::LatencySummary;

/// The `churn` section of the report.
#[derive(Clone, Debug, Serialize)]
pub struct ChurnReport {
    pub xcap_root: String,
    pub offered_changes_per_s: f64,
    pub started_changes_per_s: f64,
    pub connections: usize,
    pub pairs: usize,
    /// Pairs whose state in the GLMS differed from the data set before the run.
    pub pairs_reconciled: usize,
    /// Pairs left with an unknown state (I/O error or a change never seen).
    pub poisoned_pairs: usize,
    pub changes: u64,
    pub blocks: u64,
    pub unblocks: u64,
    /// Changes the GLMS answered 2xx.
    pub committed: u64,
    /// Committed changes whose new state a MESSAGE answer showed within the probe bound.
    pub observed: u64,
    /// Changes not started because every pair was busy.
    pub skipped_all_pairs_busy: u64,
    /// Changes seen before their XCAP answer arrived (latency 0).
    pub observed_before_xcap_answer: u64,
    pub xcap_responses_by_code: BTreeMap<String, u64>,
    pub xcap_connections_opened: u64,
    pub failures: ChurnFailures,
    /// Load MESSAGEs between churned pairs, and those that overlapped a propagation window
    /// (both answers accepted; not mismatches).
    pub messages_to_churned_pairs: u64,
    pub in_propagation: u64,
    pub probes: ProbeSummary,
    pub policy_wait: PolicyWait,
    /// How late each change started against its schedule (the changers' own limit).
    pub start_lag_us: LatencySummary,
    /// XCAP request to response.
    pub xcap_latency_us: LatencySummary,
    /// XCAP 200/201 to the first MESSAGE answered with the block code.
    pub block_propagation_us: LatencySummary,
    /// XCAP 200 (DELETE) to the first MESSAGE relayed (200).
    pub unblock_propagation_us: LatencySummary,
}

#[derive(Clone, Debug, Serialize)]
pub struct ChurnFailures {
    pub total: u64,
    pub xcap_non_2xx: u64,
    pub xcap_io_errors: u64,
    pub never_observed: u64,
    pub probe_mismatches: u64,
    pub examples: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProbeSummary {
    pub sent: u64,
    pub send_errors: u64,
    pub responses_by_code: BTreeMap<String, u64>,
    pub in_propagation: u64,
    pub unanswered: u64,
    pub delivered_to_recipients: u64,
}

/// Inputs of the report that come from outside the changers.
pub struct ReportInputs<'a> {
    pub cfg: &'a ChurnConfig,
    pub table: &'a ChurnTable,
    pub stats: &'a ChangeStats,
    pub wait: PolicyWait,
    pub pairs_reconciled: usize,
    pub churn_pair_messages: u64,
    pub in_propagation: u64,
    pub probe_deliveries: u64,
}

impl ChurnReport {
    pub fn new(inputs: ReportInputs<'_>) -> Self {
        let s = inputs.stats;
        let window = match (s.first_start, s.last_start) {
            (Some(a), Some(b)) => b.saturating_duration_since(a).as_secs_f64(),
            _ => 0.0,
        };
        let started = s.attempted + s.skipped_all_busy;
        let failures = ChurnFailures {
            total: s.xcap_non_2xx + s.xcap_io_errors + s.never_observed + s.probe_mismatches,
            xcap_non_2xx: s.xcap_non_2xx,
            xcap_io_errors: s.xcap_io_errors,
            never_observed: s.never_observed,
            probe_mismatches: s.probe_mismatches,
            examples: s.examples.clone(),
        };
        Self {
            xcap_root: format!("http://{}{}", inputs.cfg.root.addr, inputs.cfg.root.path),
            offered_changes_per_s: inputs.cfg.changes_per_s,
            started_changes_per_s: if window > 0.0 {
                ((started.saturating_sub(1)) as f64 / window * 10.0).round() / 10.0
            } else {
                0.0
            },
            connections: inputs.cfg.connections,
            pairs: inputs.table.len(),
            pairs_reconciled: inputs.pairs_reconciled,
            poisoned_pairs: inputs.table.poisoned_pairs(),
            changes: s.attempted,
            blocks: s.blocks,
            unblocks: s.unblocks,
            committed: s.committed,
            observed: s.observed,
            skipped_all_pairs_busy: s.skipped_all_busy,
            observed_before_xcap_answer: s.observed_before_answer,
            xcap_responses_by_code: codes(&s.xcap_status),
            xcap_connections_opened: s.connects,
            failures,
            messages_to_churned_pairs: inputs.churn_pair_messages,
            in_propagation: inputs.in_propagation,
            probes: ProbeSummary {
                sent: s.probes_sent,
                send_errors: s.probe_send_errors,
                responses_by_code: codes(&s.probe_answers),
                in_propagation: s.probe_in_propagation,
                unanswered: s.probe_unanswered,
                delivered_to_recipients: inputs.probe_deliveries,
            },
            policy_wait: inputs.wait,
            start_lag_us: LatencySummary::of(&s.start_lag_us),
            xcap_latency_us: LatencySummary::of(&s.xcap_us),
            block_propagation_us: LatencySummary::of(&s.block_us),
            unblock_propagation_us: LatencySummary::of(&s.unblock_us),
        }
    }

    /// Why the run fails on account of the changes (empty: no reason).
    pub fn verdict_reasons(&self) -> Vec<String> {
        let f = &self.failures;
        let mut reasons = Vec::new();
        if f.xcap_non_2xx + f.xcap_io_errors > 0 {
            reasons.push(format!(
                "{} XCAP changes failed ({} non-2xx answers, {} I/O errors)",
                f.xcap_non_2xx + f.xcap_io_errors,
                f.xcap_non_2xx,
                f.xcap_io_errors
            ));
        }
        if f.never_observed > 0 {
            reasons.push(format!(
                "{} committed changes were never observed by a MESSAGE",
                f.never_observed
            ));
        }
        if f.probe_mismatches > 0 {
            reasons.push(format!(
                "{} probe MESSAGEs got an answer outside their propagation window",
                f.probe_mismatches
            ));
        }
        if self.changes == 0 {
            reasons.push("no blocked-list change was made".to_owned());
        }
        reasons
    }

    /// The human summary lines.
    pub fn summary(&self, o: &mut String) {
        let _ = writeln!(
            o,
            "  churn     offered {:.0}/s, started {:.0}/s over {} pairs ({} connections); changes {} (block {}, unblock {}), committed {}, observed {}, skipped-busy {}",
            self.offered_changes_per_s,
            self.started_changes_per_s,
            self.pairs,
            self.connections,
            self.changes,
            self.blocks,
            self.unblocks,
            self.committed,
            self.observed,
            self.skipped_all_pairs_busy
        );
        let f = &self.failures;
        let _ = writeln!(
            o,
            "  churn failures {} (xcap non-2xx {}, xcap I/O {}, never observed {}, probe mismatches {}); xcap codes {}",
            f.total,
            f.xcap_non_2xx,
            f.xcap_io_errors,
            f.never_observed,
            f.probe_mismatches,
            join(&self.xcap_responses_by_code)
        );
        for example in &f.examples {
            let _ = writeln!(o, "    - {example}");
        }
        let line = |o: &mut String, name: &str, l: &LatencySummary| {
            let _ = writeln!(
                o,
                "  {name:<17} p50 {} us  p90 {} us  p99 {} us  p99.9 {} us  max {} us  (n={})",
                l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us, l.count
            );
        };
        line(o, "block-propagation", &self.block_propagation_us);
        line(o, "unblock-propag.", &self.unblock_propagation_us);
        line(o, "xcap-latency", &self.xcap_latency_us);
        line(o, "change-start-lag", &self.start_lag_us);
        let _ = writeln!(
            o,
            "  churn MESSAGEs to churned pairs {} (in propagation {}); probes sent {} answered {} (in propagation {}, unanswered {}); observed before xcap answer {}",
            self.messages_to_churned_pairs,
            self.in_propagation,
            self.probes.sent,
            join(&self.probes.responses_by_code),
            self.probes.in_propagation,
            self.probes.unanswered,
            self.observed_before_xcap_answer
        );
        let w = &self.policy_wait;
        let _ = writeln!(
            o,
            "  policy wait {} of {} users known after {} ms ({} retries on 480/503; answers {}); pairs reconciled {}",
            w.known,
            w.users,
            w.elapsed_ms,
            w.retries,
            join(&w.responses_by_code),
            self.pairs_reconciled
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_fail_the_verdict() {
        let mut params = crate::dataset::DatasetParams::new(50, 1);
        params.max_blocked = 5;
        let set = crate::dataset::Dataset::generate(params).expect("dataset");
        let table = ChurnTable::build(&set, 4, 603, 0);
        let cfg = crate::churn::test_config();
        let wait = PolicyWait {
            users: 0,
            known: 0,
            retries: 0,
            lost: 0,
            elapsed_ms: 0,
            responses_by_code: BTreeMap::new(),
            unresolved: Vec::new(),
            known_after_us: LatencySummary::default(),
        };
        let inputs = |stats| ReportInputs {
            cfg: &cfg,
            table: &table,
            stats,
            wait: wait.clone(),
            pairs_reconciled: 0,
            churn_pair_messages: 0,
            in_propagation: 0,
            probe_deliveries: 0,
        };
        let clean = ChangeStats {
            attempted: 3,
            committed: 3,
            observed: 3,
            ..ChangeStats::default()
        };
        assert!(
            ChurnReport::new(inputs(&clean))
                .verdict_reasons()
                .is_empty()
        );
        let unseen = ChangeStats {
            never_observed: 1,
            ..clean.clone()
        };
        let report = ChurnReport::new(inputs(&unseen));
        assert_eq!(report.failures.total, 1);
        assert!(report.verdict_reasons()[0].contains("never observed"));
        let none = ChangeStats::default();
        assert!(
            ChurnReport::new(inputs(&none))
                .verdict_reasons()
                .iter()
                .any(|r| r.contains("no blocked-list change"))
        );
        let mut text = String::new();
        report.summary(&mut text);
        assert!(text.contains("block-propagation"));
    }
}
