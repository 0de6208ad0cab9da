//! The result of a run: a JSON document (everything) and a human summary (the essentials), plus
//! the verdict that decides the exit code.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::engine::RunOutput;
use crate::engine::recipient::RecipientStats;
use crate::kernel::UdpCounters;
use crate::stats::LatencySummary;
use crate::sys::CpuTime;
use crate::workload::Decision;

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub command: String,
    pub loadgen_version: &'static str,
    pub config: serde_json::Value,
    pub setup: Vec<PhaseSummary>,
    pub results: Results,
    pub recipients: Option<RecipientStats>,
    pub generator: Generator,
    pub kernel_udp: KernelUdp,
    /// `churn` only: the blocked-list changes and their propagation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub churn: Option<crate::churn::ChurnReport>,
    pub verdict: Verdict,
}

/// A setup phase (registration, ISB publication) in brief.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseSummary {
    pub name: String,
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub responses_by_code: BTreeMap<String, u64>,
    pub latency_us: LatencySummary,
}

impl PhaseSummary {
    pub fn of(name: &str, out: &RunOutput) -> Self {
        let s = &out.stats;
        Self {
            name: name.to_owned(),
            sent: s.sent,
            ok: s.completed - s.mismatches,
            failed: s.mismatches + s.lost(),
            responses_by_code: codes(&s.responses_by_code),
            latency_us: LatencySummary::of(&s.latency_us),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub offered_rate_per_s: Option<f64>,
    pub sent_rate_per_s: f64,
    pub completed_rate_per_s: f64,
    pub elapsed_s: f64,
    pub sent: u64,
    pub completed: u64,
    pub responses_by_code: BTreeMap<String, u64>,
    pub expected_by_decision: BTreeMap<String, u64>,
    pub mismatches: Mismatches,
    pub unanswered: u64,
    pub send_failed: u64,
    pub inflight_full: u64,
    pub unmatched_responses: u64,
    pub unparsable: u64,
    pub provisional: u64,
    pub auth_retries: u64,
    pub latency_us: LatencySummary,
    pub latency_us_by_decision: BTreeMap<String, LatencySummary>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Mismatches {
    pub total: u64,
    pub response_mismatches: u64,
    pub blocked_delivered: u64,
    pub wrongly_blocked: u64,
    pub recipient_unexpected_deliveries: u64,
    pub recipient_misrouted: u64,
    pub examples: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Generator {
    pub threads: usize,
    pub sender_cpu: CpuTime,
    pub recipient_cpu: CpuTime,
    pub process_cpu: CpuTime,
    /// Sender + recipient CPU per request sent: how expensive the generator itself was.
    pub cpu_us_per_request: f64,
    pub sender_socket_drops: u64,
    pub recipient_socket_drops: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct KernelUdp {
    pub before: UdpCounters,
    pub after: UdpCounters,
    pub delta: UdpCounters,
}

#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub pass: bool,
    pub reasons: Vec<String>,
}

pub fn codes(map: &BTreeMap<u16, u64>) -> BTreeMap<String, u64> {
    map.iter().map(|(code, n)| (code.to_string(), *n)).collect()
}

/// Builds the results section and verdict of a run.
pub fn results(out: &RunOutput, offered_rate_per_s: Option<f64>) -> Results {
    let s = &out.stats;
    let per_s = |n: u64, d: std::time::Duration| {
        if d.as_secs_f64() > 0.0 {
            n as f64 / d.as_secs_f64()
        } else {
            0.0
        }
    };
    let round = |x: f64| (x * 10.0).round() / 10.0;
    Results {
        offered_rate_per_s,
        sent_rate_per_s: round(per_s(s.sent.saturating_sub(1), out.send_window)),
        completed_rate_per_s: round(per_s(s.completed, out.until_last_completion)),
        elapsed_s: round(out.elapsed.as_secs_f64() * 100.0) / 100.0,
        sent: s.sent,
        completed: s.completed,
        responses_by_code: codes(&s.responses_by_code),
        expected_by_decision: Decision::ALL
            .iter()
            .filter(|d| s.expected_by_decision[d.index()] > 0)
            .map(|d| (d.name().to_owned(), s.expected_by_decision[d.index()]))
            .collect(),
        mismatches: Mismatches {
            total: s.mismatches,
            response_mismatches: s.mismatches,
            blocked_delivered: s.blocked_delivered,
            wrongly_blocked: s.wrongly_blocked,
            recipient_unexpected_deliveries: 0,
            recipient_misrouted: 0,
            examples: s.mismatch_examples.clone(),
        },
        unanswered: s.unanswered,
        send_failed: s.send_failed,
        inflight_full: s.inflight_full,
        unmatched_responses: s.unmatched_responses,
        unparsable: s.unparsable,
        provisional: s.provisional,
        auth_retries: s.auth_retries,
        latency_us: LatencySummary::of(&s.latency_us),
        latency_us_by_decision: Decision::ALL
            .iter()
            .filter(|d| !s.latency_us_by_decision[d.index()].is_empty())
            .map(|d| {
                (
                    d.name().to_owned(),
                    LatencySummary::of(&s.latency_us_by_decision[d.index()]),
                )
            })
            .collect(),
    }
}

impl Results {
    /// Folds the recipient side's findings into the mismatch totals.
    pub fn add_recipient_findings(&mut self, recipients: &RecipientStats) {
        self.mismatches.recipient_unexpected_deliveries = recipients.unexpected_deliveries;
        self.mismatches.recipient_misrouted = recipients.misrouted;
        self.mismatches.total += recipients.mismatches();
        for example in &recipients.examples {
            if self.mismatches.examples.len() < 2 * crate::stats::MISMATCH_EXAMPLES {
                self.mismatches
                    .examples
                    .push(format!("recipient: {example}"));
            }
        }
    }

    /// Pass only with zero mismatches and no more lost requests than tolerated.
    pub fn verdict(&self, max_unanswered: u64) -> Verdict {
        let mut reasons = Vec::new();
        if self.mismatches.total > 0 {
            reasons.push(format!(
                "{} mismatches ({} blocked senders got through)",
                self.mismatches.total,
                self.mismatches.blocked_delivered + self.mismatches.recipient_unexpected_deliveries
            ));
        }
        let lost = self.unanswered + self.send_failed + self.inflight_full;
        if lost > max_unanswered {
            reasons.push(format!(
                "{lost} requests unanswered or unsent (tolerance {max_unanswered})"
            ));
        }
        if self.sent == 0 {
            reasons.push("nothing was sent".to_owned());
        }
        Verdict {
            pass: reasons.is_empty(),
            reasons,
        }
    }
}

impl Report {
    /// The human summary.
    pub fn summary(&self) -> String {
        let r = &self.results;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "loadgen {} -- {}",
            self.command,
            if self.verdict.pass { "PASS" } else { "FAIL" }
        );
        for phase in &self.setup {
            let _ = writeln!(
                o,
                "  setup {:<10} sent {} ok {} failed {} (p50 {} us, p99 {} us)",
                phase.name,
                phase.sent,
                phase.ok,
                phase.failed,
                phase.latency_us.p50_us,
                phase.latency_us.p99_us
            );
        }
        let offered = r
            .offered_rate_per_s
            .map_or("closed loop".to_owned(), |x| format!("{x:.0}/s"));
        let _ = writeln!(
            o,
            "  rate      offered {offered}, sent {:.0}/s, completed {:.0}/s over {:.2} s",
            r.sent_rate_per_s, r.completed_rate_per_s, r.elapsed_s
        );
        let _ = writeln!(
            o,
            "  requests  sent {} completed {} unanswered {} send-failed {} inflight-full {} unmatched {}",
            r.sent,
            r.completed,
            r.unanswered,
            r.send_failed,
            r.inflight_full,
            r.unmatched_responses
        );
        let _ = writeln!(o, "  responses {}", join(&r.responses_by_code));
        let _ = writeln!(o, "  expected  {}", join(&r.expected_by_decision));
        let m = &r.mismatches;
        let _ = writeln!(
            o,
            "  mismatches {} (blocked-delivered {}, wrongly-blocked {}, recipient-unexpected {}, misrouted {})",
            m.total,
            m.blocked_delivered,
            m.wrongly_blocked,
            m.recipient_unexpected_deliveries,
            m.recipient_misrouted
        );
        for example in &m.examples {
            let _ = writeln!(o, "    - {example}");
        }
        let l = &r.latency_us;
        let _ = writeln!(
            o,
            "  latency   p50 {} us  p90 {} us  p99 {} us  p99.9 {} us  max {} us  (n={})",
            l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us, l.count
        );
        for (decision, l) in &r.latency_us_by_decision {
            let _ = writeln!(
                o,
                "    {decision:<13} p50 {} us  p99 {} us  max {} us  (n={})",
                l.p50_us, l.p99_us, l.max_us, l.count
            );
        }
        if let Some(rc) = &self.recipients {
            let _ = writeln!(
                o,
                "  recipients delivered {} answered {} foreign {} unparsable {}",
                rc.delivered, rc.answered, rc.foreign, rc.unparsable
            );
        }
        let g = &self.generator;
        let _ = writeln!(
            o,
            "  generator {:.2} us CPU/request (senders {} us, recipients {} us, process {} us; {} threads); socket drops: senders {}, recipients {}",
            g.cpu_us_per_request,
            g.sender_cpu.total_us(),
            g.recipient_cpu.total_us(),
            g.process_cpu.total_us(),
            g.threads,
            g.sender_socket_drops,
            g.recipient_socket_drops
        );
        if let Some(churn) = &self.churn {
            churn.summary(&mut o);
        }
        let delta: Vec<String> = self
            .kernel_udp
            .delta
            .0
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(o, "  kernel UDP delta (system-wide): {}", delta.join(", "));
        for reason in &self.verdict.reasons {
            let _ = writeln!(o, "  FAIL: {reason}");
        }
        o
    }
}

/// `code:count code:count ...` for a human, `-` when empty.
pub(crate) fn join(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "-".to_owned();
    }
    map.iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Stats;
    use std::time::Duration;

    fn output(stats: Stats) -> RunOutput {
        RunOutput {
            stats,
            cpu: CpuTime::default(),
            send_window: Duration::from_secs(1),
            until_last_completion: Duration::from_secs(1),
            sender_udp_ports: Vec::new(),
            sender_socket_drops: 0,
            elapsed: Duration::from_secs(1),
        }
    }

    #[test]
    fn verdict_rules() {
        let mut stats = Stats {
            sent: 3,
            ..Stats::default()
        };
        stats.record_final(Decision::Relay, 200, 200, 10, String::new);
        let clean = results(&output(stats.clone()), Some(3.0));
        assert!(clean.verdict(0).pass);
        stats.unanswered = 1;
        let lossy = results(&output(stats.clone()), Some(3.0));
        assert!(!lossy.verdict(0).pass);
        assert!(lossy.verdict(1).pass, "within tolerance");
        let mut with_recipient = results(&output(stats), Some(3.0));
        with_recipient.add_recipient_findings(&RecipientStats {
            unexpected_deliveries: 1,
            ..RecipientStats::default()
        });
        let verdict = with_recipient.verdict(5);
        assert!(!verdict.pass);
        assert!(
            verdict.reasons[0].contains("1 blocked senders got through"),
            "{:?}",
            verdict.reasons
        );
    }
}
