//! Per-worker counters: cache-padded atomics, each written by its own worker (relaxed adds), read
//! by anyone (a snapshot is approximate while traffic flows, exact once it stops).
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident => $add:ident),* $(,)?) => {
        /// One worker's counters, aligned to 128 bytes so two workers never share a cache line
        /// (adjacent-line prefetch pairs 64-byte lines on x86).
        #[repr(align(128))]
        #[derive(Default, Debug)]
        pub struct WorkerStats {
            $(pub $name: AtomicU64,)*
        }

        /// A plain copy of one worker's counters.
        #[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
        pub struct WorkerCounters {
            $(pub $name: u64,)*
        }

        impl WorkerStats {
            $(
                #[inline]
                #[allow(dead_code)] // not every counter is bumped in every build
                pub(crate) fn $add(&self, n: u64) {
                    self.$name.fetch_add(n, Ordering::Relaxed);
                }
            )*

            pub fn snapshot(&self) -> WorkerCounters {
                WorkerCounters { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }

        impl WorkerCounters {
            fn accumulate(&mut self, other: &WorkerCounters) {
                $(self.$name += other.$name;)*
            }
        }
    };
}

counters! {
    udp_rx => add_udp_rx,
    udp_tx => add_udp_tx,
    tcp_rx => add_tcp_rx,
    tcp_tx => add_tcp_tx,
    tcp_accepted => add_tcp_accepted,
    tcp_refused => add_tcp_refused,
    tcp_closed_idle => add_tcp_closed_idle,
    tcp_bad_stream => add_tcp_bad_stream,
    tcp_oversize => add_tcp_oversize,
    send_errors => add_send_errors,
    mailbox_full => add_mailbox_full,
    rx_drops => add_rx_drops,
    keepalives => add_keepalives,
    // 1 when this worker's UDP runs on io_uring (feature `uring`), 0 on mio.
    uring_active => add_uring_active,
}

impl WorkerStats {
    /// The kernel reports the socket's cumulative drop count (`SO_MEMINFO`): store it, do not add.
    pub(crate) fn set_rx_drops(&self, total: u64) {
        self.rx_drops.store(total, Ordering::Relaxed);
    }
}

/// Counters of every worker, indexed by worker id.
#[derive(Debug)]
pub struct TransportStats {
    workers: Box<[WorkerStats]>,
}

impl TransportStats {
    pub(crate) fn new(workers: usize) -> TransportStats {
        TransportStats {
            workers: (0..workers).map(|_| WorkerStats::default()).collect(),
        }
    }

    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// One worker's counters. Panics on an id past `workers()` (a programmer error).
    pub fn worker(&self, id: usize) -> &WorkerStats {
        &self.workers[id]
    }

    pub fn per_worker(&self) -> Vec<WorkerCounters> {
        self.workers.iter().map(WorkerStats::snapshot).collect()
    }

    pub fn total(&self) -> WorkerCounters {
        let mut sum = WorkerCounters::default();
        for w in self.workers.iter() {
            sum.accumulate(&w.snapshot());
        }
        sum
    }
}
