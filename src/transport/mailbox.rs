//! A worker's inbox for sends it must perform on behalf of others: a bounded queue behind a
//! mutex, a `mio::Waker`, and a pool of buffers so that worker-to-worker hand-over does not
//! allocate in steady state (the sender copies into a pooled buffer; the owner returns it).
//!
//! The waker is rung only on the empty -> non-empty edge (`signaled`), so a burst of hand-overs
//! costs one `eventfd` write.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Dest, Full};

/// Buffers handed to senders start this big (a SIP message usually fits).
const POOLED_BUF_CAP: usize = 4096;

pub(crate) struct Mailbox {
    queue: Mutex<VecDeque<(Dest, Vec<u8>)>>,
    cap: usize,
    pool: Mutex<Vec<Vec<u8>>>,
    signaled: AtomicBool,
    waker: mio::Waker,
}

impl Mailbox {
    pub(crate) fn new(cap: usize, waker: mio::Waker) -> Mailbox {
        let cap = cap.max(1);
        Mailbox {
            queue: Mutex::new(VecDeque::with_capacity(cap)),
            cap,
            pool: Mutex::new(Vec::with_capacity(cap)),
            signaled: AtomicBool::new(false),
            waker,
        }
    }

    /// Copies `bytes` into a pooled buffer and queues it (worker-to-worker path).
    pub(crate) fn push_copy(&self, dest: Dest, bytes: &[u8]) -> Result<(), Full> {
        let mut buf = lock(&self.pool)
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(POOLED_BUF_CAP.max(bytes.len())));
        buf.clear();
        buf.extend_from_slice(bytes);
        let res = self.push_owned(dest, buf);
        if let Err((_, buf)) = res {
            self.recycle(buf);
            return Err(Full);
        }
        Ok(())
    }

    /// Queues an owned buffer; on a full queue the buffer comes back.
    pub(crate) fn push_owned(&self, dest: Dest, buf: Vec<u8>) -> Result<(), (Full, Vec<u8>)> {
        {
            let mut q = lock(&self.queue);
            if q.len() >= self.cap {
                return Err((Full, buf));
            }
            q.push_back((dest, buf));
        }
        if !self.signaled.swap(true, Ordering::SeqCst) {
            self.wake();
        }
        Ok(())
    }

    /// Owner side: moves everything queued into `into` (same capacity, so no allocation).
    /// Clearing `signaled` before taking the queue means a push that lands after the swap rings
    /// the waker again, so nothing is stranded.
    pub(crate) fn drain_into(&self, into: &mut VecDeque<(Dest, Vec<u8>)>) {
        self.signaled.store(false, Ordering::SeqCst);
        let mut q = lock(&self.queue);
        std::mem::swap(&mut *q, into);
    }

    pub(crate) fn recycle(&self, mut buf: Vec<u8>) {
        let mut pool = lock(&self.pool);
        if pool.len() < self.cap {
            buf.clear();
            pool.push(buf);
        }
    }

    pub(crate) fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            tracing::warn!(error = %e, "transport: waking a worker failed");
        }
    }
}

/// A poisoned lock only means another thread panicked while holding it; the queue itself is
/// still consistent (every critical section is a single push/pop/swap).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
