//! The handler's output: messages written into recycled buffers, each committed with a [`Dest`].
//!
//! Steady state allocates nothing: a committed buffer goes to `pending`, the worker sends it and
//! hands it back through [`Outbox::recycle`], and the next [`Outbox::buffer`] reuses it.
#![forbid(unsafe_code)]

use super::Dest;

/// Capacity of every outbox buffer (the largest UDP datagram fits).
pub(crate) const OUT_BUF_CAP: usize = 64 * 1024;
/// Buffers kept for reuse; past this a recycled buffer is freed (bounds memory after a burst).
const POOL_MAX: usize = 256;

/// One committed message. `from_mailbox` buffers go back to the worker's mailbox pool.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) dest: Dest,
    pub(crate) buf: Vec<u8>,
    pub(crate) from_mailbox: bool,
}

/// Messages the handler wants sent. Usable on its own (`Outbox::new`) to test a handler without
/// sockets: [`Outbox::messages`] lists what was pushed.
#[derive(Debug)]
pub struct Outbox {
    current: Vec<u8>,
    pub(crate) pending: Vec<Pending>,
    pool: Vec<Vec<u8>>,
    /// What `Dest::Reply` means for the message being handled (`None`: left as `Reply`).
    reply: Option<Dest>,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox::new()
    }
}

impl Outbox {
    pub fn new() -> Outbox {
        Outbox::with_pool(0)
    }

    /// An outbox with `buffers` preallocated buffers.
    pub(crate) fn with_pool(buffers: usize) -> Outbox {
        Outbox {
            current: Vec::with_capacity(OUT_BUF_CAP),
            pending: Vec::with_capacity(buffers.max(16)),
            pool: (0..buffers.min(POOL_MAX))
                .map(|_| Vec::with_capacity(OUT_BUF_CAP))
                .collect(),
            reply: None,
        }
    }

    /// The buffer to write the next message into: cleared, capacity >= 64 KiB.
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        self.current.clear();
        &mut self.current
    }

    /// Commits the buffer just written, to `dest`. An empty buffer is not sent.
    pub fn push(&mut self, dest: Dest) {
        if self.current.is_empty() {
            return;
        }
        let dest = match (dest, self.reply) {
            (Dest::Reply, Some(resolved)) => resolved,
            (d, _) => d,
        };
        let next = self
            .pool
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(OUT_BUF_CAP));
        let buf = std::mem::replace(&mut self.current, next);
        self.pending.push(Pending {
            dest,
            buf,
            from_mailbox: false,
        });
    }

    /// What was pushed and not yet sent, in order.
    pub fn messages(&self) -> impl Iterator<Item = (Dest, &[u8])> {
        self.pending.iter().map(|p| (p.dest, p.buf.as_slice()))
    }

    /// Forgets what was pushed (buffers are kept for reuse).
    pub fn clear(&mut self) {
        while let Some(p) = self.pending.pop() {
            self.recycle(p.buf);
        }
    }

    pub(crate) fn set_reply(&mut self, reply: Option<Dest>) {
        self.reply = reply;
    }

    pub(crate) fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.pool.len() < POOL_MAX && buf.capacity() >= OUT_BUF_CAP {
            buf.clear();
            self.pool.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_is_resolved_and_buffers_recycled() {
        let mut out = Outbox::with_pool(2);
        let peer = "127.0.0.1:9".parse().unwrap();
        out.set_reply(Some(Dest::Udp(peer)));
        out.buffer().extend_from_slice(b"a");
        out.push(Dest::Reply);
        out.buffer();
        out.push(Dest::Reply); // empty: not sent
        out.set_reply(None);
        out.buffer().extend_from_slice(b"b");
        out.push(Dest::Reply);
        let got: Vec<_> = out.messages().map(|(d, b)| (d, b.to_vec())).collect();
        assert_eq!(
            got,
            vec![
                (Dest::Udp(peer), b"a".to_vec()),
                (Dest::Reply, b"b".to_vec())
            ]
        );
        assert!(out.buffer().capacity() >= OUT_BUF_CAP);
        out.clear();
        assert_eq!(out.messages().count(), 0);
        assert!(out.pool.len() >= 2);
    }
}
