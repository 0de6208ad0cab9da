//! The machine's own stalls (a jHiccup-style probe): one thread reads the monotonic clock in a
//! tight loop on its core and records every gap between two readings. On an idle, dedicated
//! core the gaps are tens of nanoseconds; a gap of a millisecond is time the thread did not run
//! at all (the hypervisor took the virtual CPU, an interrupt storm, a higher-priority task).
//!
//! No server can answer faster than the machine lets it run, so the report sets the latency
//! percentiles beside this floor: a request whose intended send time falls in the first
//! `S - 1 ms` of a stall of length `S` waits over 1 ms whatever the server does, hence
//! `delayed_over_1ms_fraction` = sum of `max(0, S - 1 ms)` over the run's length.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use serde::Serialize;

/// Gaps at or above this are counted as stalls.
const STALL: Duration = Duration::from_micros(100);
const MS: Duration = Duration::from_millis(1);

/// What one probe saw.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Hiccups {
    pub duration_s: f64,
    /// Gaps of 100 µs or more.
    pub stalls_over_100us: u64,
    /// Gaps of 1 ms or more, their sum, and the longest gap.
    pub stalls_over_1ms: u64,
    pub stalled_ms_over_1ms: f64,
    pub max_stall_us: f64,
    /// Share of the run during which a request would have been delayed 1 ms or more by the
    /// stalls alone (see the module doc).
    pub delayed_over_1ms_fraction: f64,
}

/// Accumulates gaps; kept apart from the clock so it can be tested with made-up gaps.
#[derive(Default)]
struct Tally {
    over_100us: u64,
    over_1ms: u64,
    sum_over_1ms: Duration,
    excess_over_1ms: Duration,
    max: Duration,
}

impl Tally {
    #[inline]
    fn gap(&mut self, g: Duration) {
        if g < STALL {
            return;
        }
        self.over_100us += 1;
        self.max = self.max.max(g);
        if g >= MS {
            self.over_1ms += 1;
            self.sum_over_1ms += g;
            self.excess_over_1ms += g - MS;
        }
    }

    fn finish(&self, elapsed: Duration) -> Hiccups {
        let secs = elapsed.as_secs_f64().max(1e-9);
        Hiccups {
            duration_s: elapsed.as_secs_f64(),
            stalls_over_100us: self.over_100us,
            stalls_over_1ms: self.over_1ms,
            stalled_ms_over_1ms: self.sum_over_1ms.as_secs_f64() * 1e3,
            max_stall_us: self.max.as_secs_f64() * 1e6,
            delayed_over_1ms_fraction: self.excess_over_1ms.as_secs_f64() / secs,
        }
    }
}

/// Spins on the clock for `duration` (bounded by the caller) and returns what it saw.
pub fn probe(duration: Duration) -> Hiccups {
    let start = Instant::now();
    let mut last = start;
    let mut tally = Tally::default();
    loop {
        let now = Instant::now();
        tally.gap(now - last);
        last = now;
        if now - start >= duration {
            return tally.finish(now - start);
        }
    }
}

/// One line for a human.
pub fn summary(h: &Hiccups) -> String {
    format!(
        "hiccup probe {:.1} s: stalls >= 100 us: {}, >= 1 ms: {} ({:.1} ms in all, {:.2}% of the time), longest {:.0} us; a request is delayed >= 1 ms by stalls alone {:.2}% of the time",
        h.duration_s,
        h.stalls_over_100us,
        h.stalls_over_1ms,
        h.stalled_ms_over_1ms,
        100.0 * h.stalled_ms_over_1ms / 1e3 / h.duration_s.max(1e-9),
        h.max_stall_us,
        100.0 * h.delayed_over_1ms_fraction
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_counts_stalls_and_the_delay_they_force() {
        let mut t = Tally::default();
        for _ in 0..1000 {
            t.gap(Duration::from_nanos(30));
        }
        t.gap(Duration::from_micros(500));
        t.gap(Duration::from_millis(3));
        t.gap(Duration::from_millis(11));
        let h = t.finish(Duration::from_secs(1));
        assert_eq!(h.stalls_over_100us, 3);
        assert_eq!(h.stalls_over_1ms, 2);
        assert!((h.stalled_ms_over_1ms - 14.0).abs() < 1e-9);
        assert!((h.max_stall_us - 11_000.0).abs() < 1e-6);
        // (3 - 1) + (11 - 1) ms over 1 s.
        assert!((h.delayed_over_1ms_fraction - 0.012).abs() < 1e-9);
    }

    #[test]
    fn probe_runs_for_its_duration() {
        let h = probe(Duration::from_millis(50));
        assert!(h.duration_s >= 0.05 && h.duration_s < 5.0, "{h:?}");
        assert!(h.max_stall_us < h.duration_s * 1e6);
    }
}
