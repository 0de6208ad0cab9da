//! Pacing. Open loop (wrk2): request `seq` is due at `seq / rate` after the start whatever
//! happened before, and its latency is charged from that intended time, so a stalled server (or
//! generator) shows up in the percentiles instead of silently lowering the offered load
//! (coordinated omission). Closed loop: a window of outstanding requests per socket.
#![forbid(unsafe_code)]

/// How requests are released.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pacing {
    /// Open loop at this many requests per second (all threads together).
    Open { rate_per_s: f64 },
    /// Closed loop: at most this many outstanding requests per socket.
    Closed { window: u32 },
}

/// The open-loop schedule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    period_ns: f64,
}

impl Schedule {
    pub fn new(rate_per_s: f64) -> Self {
        Self {
            period_ns: 1e9 / rate_per_s.max(1e-9),
        }
    }

    /// Nanoseconds after the start at which request `seq` is due.
    pub fn intended_ns(&self, seq: u64) -> u64 {
        (seq as f64 * self.period_ns) as u64
    }

    /// How many requests are due within the first `duration_ns` (the open-loop count bound).
    pub fn due_within(&self, duration_ns: u64) -> u64 {
        (duration_ns as f64 / self.period_ns).ceil() as u64
    }
}

/// Thread `thread` of `threads` owns the requests `seq = thread + k * threads`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    pub thread: u64,
    pub threads: u64,
}

impl Partition {
    /// The global sequence number of this thread's `k`-th request.
    pub fn seq(&self, k: u64) -> u64 {
        self.thread + k * self.threads
    }

    /// How many of the `count` requests this thread owns.
    pub fn local_count(&self, count: u64) -> u64 {
        if count > self.thread {
            (count - self.thread).div_ceil(self.threads)
        } else {
            0
        }
    }
}

/// Latency charged to a response: from the intended send time (open loop) or the actual send
/// time (closed loop, where intended == actual) to its arrival; never negative.
pub fn charged_latency_us(intended_ns: u64, arrived_ns: u64) -> u64 {
    arrived_ns.saturating_sub(intended_ns) / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_spacing() {
        let s = Schedule::new(1000.0);
        assert_eq!(s.intended_ns(0), 0);
        assert_eq!(s.intended_ns(1), 1_000_000);
        assert_eq!(s.intended_ns(1500), 1_500_000_000);
        assert_eq!(s.due_within(2_000_000_000), 2000);
        let fast = Schedule::new(3_000_000.0);
        // No drift over a long run: seq 3e6 is due at exactly one second.
        assert_eq!(fast.intended_ns(3_000_000), 1_000_000_000);
    }

    #[test]
    fn partition_covers_every_seq_once() {
        let count = 103;
        let mut seen = vec![0u8; count as usize];
        for thread in 0..4 {
            let p = Partition { thread, threads: 4 };
            for k in 0..p.local_count(count) {
                seen[p.seq(k) as usize] += 1;
            }
        }
        assert!(seen.iter().all(|&n| n == 1));
        assert_eq!(
            Partition {
                thread: 5,
                threads: 8
            }
            .local_count(3),
            0
        );
    }

    #[test]
    fn falling_behind_is_charged() {
        // Due at 1 ms, sent late at 5 ms, answered at 5.2 ms: 4.2 ms is charged, not 0.2 ms.
        let s = Schedule::new(1000.0);
        assert_eq!(charged_latency_us(s.intended_ns(1), 5_200_000), 4_200);
        assert_eq!(charged_latency_us(10, 5), 0);
    }
}
