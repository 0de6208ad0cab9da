//! The bounded queue from the fast path to the slow path (STYLE principle 6, SPEC D12).
//!
//! Workers `try_push` and never block; a full queue is the caller's cue to answer 503 with
//! Retry-After. The depth is tracked in an atomic so `/metrics` can show it.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use crate::transport::Source;

/// One message for the slow path: its bytes (copied off the worker's buffer) and where it came
/// from (for the response's route and the TCP connection).
pub struct SlowJob {
    pub bytes: Vec<u8>,
    pub src: Source,
}

impl SlowJob {
    pub fn new(bytes: &[u8], src: &Source) -> Self {
        Self {
            bytes: bytes.to_vec(),
            src: *src,
        }
    }
}

/// What the slow path's queue carries: SIP from the workers, finished XCAP fetches from the
/// fetcher threads (so a fetched document is acted on at once, not at the next timer tick).
pub enum SlowItem {
    Sip(SlowJob),
    Fetched(crate::subscriber::FetchDone),
}

/// The producer side, cloned into every worker.
#[derive(Clone)]
pub struct SlowQueue {
    tx: SyncSender<SlowItem>,
    depth: Arc<AtomicUsize>,
    capacity: usize,
}

/// The consumer side, owned by the slow-path thread.
pub struct SlowReceiver {
    rx: Receiver<SlowItem>,
    depth: Arc<AtomicUsize>,
}

/// The queue was full (or the slow path is gone): the job was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("slow-path queue full")]
pub struct QueueFull;

pub fn slow_queue(capacity: usize) -> (SlowQueue, SlowReceiver) {
    let (tx, rx) = sync_channel(capacity);
    let depth = Arc::new(AtomicUsize::new(0));
    (
        SlowQueue {
            tx,
            depth: depth.clone(),
            capacity,
        },
        SlowReceiver { rx, depth },
    )
}

impl SlowQueue {
    pub fn try_push(&self, job: SlowJob) -> Result<(), QueueFull> {
        match self.tx.try_send(SlowItem::Sip(job)) {
            Ok(()) => {
                self.depth.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(QueueFull),
        }
    }
    /// Hands a finished fetch to the slow path. It waits for room rather than drop the
    /// result (a fetcher thread may block; a worker never calls this).
    pub fn push_fetched(&self, done: crate::subscriber::FetchDone) -> Result<(), QueueFull> {
        self.tx
            .send(SlowItem::Fetched(done))
            .map_err(|_| QueueFull)?;
        self.depth.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// What a wait on the queue produced.
pub enum Next {
    Job(SlowJob),
    Fetched(crate::subscriber::FetchDone),
    Timeout,
    Closed,
}

impl SlowReceiver {
    pub fn next(&self, wait: Duration) -> Next {
        match self.rx.recv_timeout(wait) {
            Ok(item) => {
                self.depth.fetch_sub(1, Ordering::Relaxed);
                match item {
                    SlowItem::Sip(job) => Next::Job(job),
                    SlowItem::Fetched(done) => Next::Fetched(done),
                }
            }
            Err(RecvTimeoutError::Timeout) => Next::Timeout,
            Err(RecvTimeoutError::Disconnected) => Next::Closed,
        }
    }
    /// An item already waiting, without blocking (to drain a burst into one store batch).
    pub fn try_next(&self) -> Option<Next> {
        let item = self.rx.try_recv().ok()?;
        self.depth.fetch_sub(1, Ordering::Relaxed);
        Some(match item {
            SlowItem::Sip(job) => Next::Job(job),
            SlowItem::Fetched(done) => Next::Fetched(done),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Transport;

    fn src() -> Source {
        Source {
            addr: "127.0.0.1:5".parse().unwrap(),
            local: "127.0.0.1:6".parse().unwrap(),
            transport: Transport::Udp,
            conn: None,
        }
    }

    #[test]
    fn bounded_and_counts_depth() {
        let (q, r) = slow_queue(2);
        q.try_push(SlowJob::new(b"a", &src())).unwrap();
        q.try_push(SlowJob::new(b"b", &src())).unwrap();
        assert_eq!(q.try_push(SlowJob::new(b"c", &src())), Err(QueueFull));
        assert_eq!(q.depth(), 2);
        assert!(matches!(r.next(Duration::from_millis(10)), Next::Job(j) if j.bytes == b"a"));
        assert_eq!(q.depth(), 1);
        assert!(matches!(r.try_next(), Some(Next::Job(_))));
        assert!(matches!(r.next(Duration::from_millis(10)), Next::Timeout));
        drop(q);
        assert!(matches!(r.next(Duration::from_millis(10)), Next::Closed));
    }
}
