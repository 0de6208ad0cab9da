//! TCP: the listener, a preallocated slab of generation-checked connections, framing through the
//! handler, write backlogs with backpressure, outbound connects and the idle sweep. The states
//! are drawn in `LIFECYCLE.md`.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

use super::worker::{CONN_BASE, Worker};
use super::{ConnRef, Dest, Framing, Handler, Source, Transport, TransportConfig};

/// Reads per readiness event before yielding (fairness); the worker comes back without sleeping.
const READS_PER_EVENT: usize = 16;
const ACCEPTS_PER_EVENT: usize = 256;
/// A connection's first read buffer; it doubles up to `tcp_buf_max`.
const RBUF_INITIAL: usize = 4096;
/// Buffers up to this size are kept in the slot for the next connection.
const SPARE_BUF_MAX: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Outbound, non-blocking connect in progress; writes queue.
    Connecting,
    Open,
    /// Flushing the last writes (after a bad stream or the peer's EOF), then closed.
    Closing,
}

pub(crate) struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    /// `rbuf[..rlen]` is unframed input; `rbuf.len()` is the current buffer size (<= cap).
    rbuf: Vec<u8>,
    rlen: usize,
    /// `wbuf[wpos..]` is the write backlog.
    wbuf: Vec<u8>,
    wpos: usize,
    state: State,
    read_paused: bool,
    last_active_ms: u64,
}

impl Conn {
    fn backlog(&self) -> usize {
        self.wbuf.len() - self.wpos
    }
}

struct Slot {
    generation: u32,
    conn: Option<Conn>,
    spare_rbuf: Vec<u8>,
    spare_wbuf: Vec<u8>,
}

pub(crate) struct TcpSide {
    pub(crate) listener: TcpListener,
    local: SocketAddr,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Open or connecting connections by peer address, for `Dest::Tcp` reuse.
    by_addr: HashMap<SocketAddr, u32>,
    /// Connections whose read round hit its bound.
    pub(crate) rearm: Vec<u32>,
    buf_max: usize,
    backlog_max: usize,
    idle_ms: u64,
}

impl TcpSide {
    pub(crate) fn new(listener: TcpListener, local: SocketAddr, cfg: &TransportConfig) -> TcpSide {
        let max = cfg
            .max_tcp_conns_per_worker
            .min(u32::MAX as usize - CONN_BASE);
        TcpSide {
            listener,
            local,
            slots: (0..max)
                .map(|_| Slot {
                    generation: 0,
                    conn: None,
                    spare_rbuf: Vec::new(),
                    spare_wbuf: Vec::new(),
                })
                .collect(),
            free: (0..max as u32).rev().collect(),
            by_addr: HashMap::with_capacity(max.min(65_536)),
            rearm: Vec::with_capacity(64),
            buf_max: cfg.tcp_buf_max.max(64),
            backlog_max: cfg.tcp_write_backlog_max.max(1024),
            idle_ms: cfg.idle_ms(),
        }
    }

    fn get_mut(&mut self, idx: u32) -> Option<&mut Conn> {
        self.slots.get_mut(idx as usize)?.conn.as_mut()
    }

    /// The connection `r` names, if it is still the same one (generation check).
    fn resolve(&self, r: ConnRef) -> Option<u32> {
        let slot = self.slots.get(r.token as usize)?;
        (slot.generation == r.generation && slot.conn.is_some()).then_some(r.token)
    }

    fn conn_ref(&self, worker: u16, idx: u32) -> ConnRef {
        ConnRef {
            worker,
            token: idx,
            generation: self.slots[idx as usize].generation,
        }
    }

    /// Registers and stores a new connection; `None` when the slab is full.
    fn insert(
        &mut self,
        registry: &Registry,
        mut stream: TcpStream,
        peer: SocketAddr,
        state: State,
        now_ms: u64,
    ) -> Option<u32> {
        let idx = self.free.pop()?;
        let token = Token(CONN_BASE + idx as usize);
        if let Err(e) =
            registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
        {
            tracing::warn!(error = %e, "transport: registering a TCP connection");
            self.free.push(idx);
            return None;
        }
        let local = stream.local_addr().unwrap_or(self.local);
        let slot = &mut self.slots[idx as usize];
        let mut rbuf = std::mem::take(&mut slot.spare_rbuf);
        if rbuf.len() < RBUF_INITIAL {
            rbuf.resize(RBUF_INITIAL.min(self.buf_max), 0);
        }
        slot.conn = Some(Conn {
            stream,
            peer,
            local,
            rbuf,
            rlen: 0,
            wbuf: std::mem::take(&mut slot.spare_wbuf),
            wpos: 0,
            state,
            read_paused: false,
            last_active_ms: now_ms,
        });
        self.by_addr.insert(peer, idx);
        Some(idx)
    }

    /// Deregisters and drops a connection; the slot's generation moves on so stale
    /// `ConnRef`s miss.
    fn remove(&mut self, registry: &Registry, idx: u32) {
        let Some(slot) = self.slots.get_mut(idx as usize) else {
            return;
        };
        let Some(mut conn) = slot.conn.take() else {
            return;
        };
        let _ = registry.deregister(&mut conn.stream);
        // Wraps within 24 bits so a ConnRef packs into a u64 (ConnRef::to_u64).
        slot.generation = slot.generation.wrapping_add(1) & crate::transport::ConnRef::FIELD_MASK;
        if conn.rbuf.len() <= SPARE_BUF_MAX {
            slot.spare_rbuf = conn.rbuf;
        }
        if conn.wbuf.capacity() <= SPARE_BUF_MAX {
            conn.wbuf.clear();
            slot.spare_wbuf = conn.wbuf;
        }
        if self.by_addr.get(&conn.peer) == Some(&idx) {
            self.by_addr.remove(&conn.peer);
        }
        self.free.push(idx);
    }

    pub(crate) fn close_all(&mut self, registry: &Registry) {
        for idx in 0..self.slots.len() as u32 {
            self.remove(registry, idx);
        }
    }

    /// Test and debug check: the slab's bookkeeping agrees with itself.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        let used = self.slots.iter().filter(|s| s.conn.is_some()).count();
        assert_eq!(used + self.free.len(), self.slots.len());
        for (addr, &idx) in &self.by_addr {
            let c = self.slots[idx as usize]
                .conn
                .as_ref()
                .expect("by_addr names a live conn");
            assert_eq!(c.peer, *addr);
        }
        for s in &self.slots {
            if let Some(c) = &s.conn {
                assert!(c.rlen <= c.rbuf.len() && c.rbuf.len() <= self.buf_max.max(RBUF_INITIAL));
                assert!(c.wpos <= c.wbuf.len());
            }
        }
    }
}

impl<H: Handler> Worker<H> {
    pub(crate) fn accept_ready(&mut self) {
        for _ in 0..ACCEPTS_PER_EVENT {
            match self.tcp.listener.accept() {
                Ok((stream, peer)) => {
                    if self.tcp.free.is_empty() {
                        // Past the limit: accept and close at once, so the peer learns now.
                        self.stats().add_tcp_refused(1);
                        drop(stream);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let registry = self.poll.registry();
                    match self
                        .tcp
                        .insert(registry, stream, peer, State::Open, self.now_ms)
                    {
                        Some(_) => self.stats().add_tcp_accepted(1),
                        None => self.stats().add_tcp_refused(1),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: the next connection's edge brings us back.
                    tracing::warn!(worker = self.id, error = %e, "transport: accept");
                    return;
                }
            }
        }
        // More may be queued; the listener is edge-triggered, so come back on the next event.
        tracing::debug!(worker = self.id, "transport: accept round bound hit");
    }

    pub(crate) fn conn_ready(&mut self, idx: u32, readable: bool, writable: bool) {
        let Some(c) = self.tcp.get_mut(idx) else {
            return;
        };
        if c.state == State::Connecting {
            if !(readable || writable) {
                return;
            }
            match c.stream.take_error() {
                Ok(None) => match c.stream.peer_addr() {
                    Ok(_) => {
                        c.state = State::Open;
                        c.local = c.stream.local_addr().unwrap_or(c.local);
                        let _ = c.stream.set_nodelay(true);
                    }
                    // Not connected yet: a spurious wake-up (mio docs); wait for the next.
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                    Err(_) => return self.fail_conn(idx),
                },
                Ok(Some(_)) | Err(_) => return self.fail_conn(idx),
            }
        }
        if writable || self.tcp.get_mut(idx).is_some_and(|c| c.backlog() > 0) {
            self.flush_conn(idx);
        }
        if readable {
            self.tcp_read(idx);
        }
    }

    /// A connection that failed with messages still queued: they are lost.
    fn fail_conn(&mut self, idx: u32) {
        self.stats().add_send_errors(1);
        self.close_conn(idx);
    }

    pub(crate) fn close_conn(&mut self, idx: u32) {
        self.tcp.remove(self.poll.registry(), idx);
    }

    /// Closes now when nothing is left to write, else once the backlog drains.
    fn close_when_flushed(&mut self, idx: u32) {
        match self.tcp.get_mut(idx) {
            Some(c) if c.backlog() == 0 => self.close_conn(idx),
            Some(c) => c.state = State::Closing,
            None => {}
        }
    }

    pub(crate) fn tcp_read(&mut self, idx: u32) {
        let buf_max = self.tcp.buf_max;
        for _ in 0..READS_PER_EVENT {
            let now_ms = self.now_ms;
            let Some(c) = self.tcp.get_mut(idx) else {
                return;
            };
            if c.state != State::Open || c.read_paused {
                return;
            }
            if c.rlen == c.rbuf.len() {
                if c.rbuf.len() >= buf_max {
                    // The unframed message does not fit (SPEC D12: 513, then close).
                    return self.tcp_oversize(idx);
                }
                let grown = (c.rbuf.len() * 2).clamp(RBUF_INITIAL, buf_max);
                c.rbuf.resize(grown, 0);
            }
            let rlen = c.rlen;
            match c.stream.read(&mut c.rbuf[rlen..]) {
                Ok(0) => {
                    // The peer closed its side: answer what is framed, then close.
                    self.tcp_frame(idx);
                    return self.close_when_flushed(idx);
                }
                Ok(n) => {
                    c.rlen += n;
                    c.last_active_ms = now_ms;
                    if !self.tcp_frame(idx) {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.close_conn(idx),
            }
        }
        self.tcp.rearm.push(idx);
    }

    fn source(&self, idx: u32) -> Option<Source> {
        let slot = self.tcp.slots.get(idx as usize)?;
        let c = slot.conn.as_ref()?;
        Some(Source {
            addr: c.peer,
            local: c.local,
            transport: Transport::Tcp,
            conn: Some(self.tcp.conn_ref(self.id, idx)),
        })
    }

    /// Frames and dispatches everything complete in the read buffer. Returns whether the
    /// connection is still open for reading.
    fn tcp_frame(&mut self, idx: u32) -> bool {
        let Some(src) = self.source(idx) else {
            return false;
        };
        let Some(me) = src.conn else { return false };
        let Some(c) = self.tcp.get_mut(idx) else {
            return false;
        };
        // Taken out so the handler can read it while flushes write to the same connection.
        let mut rbuf = std::mem::take(&mut c.rbuf);
        let rlen = c.rlen;
        let mut start = 0;
        let mut bad = false;
        self.out.set_reply(Some(Dest::Conn(me)));
        // Every arm consumes >= 1 byte or leaves the loop, so at most `rlen` rounds.
        while start < rlen {
            let avail = &rbuf[start..rlen];
            match self.handler.frame(avail) {
                Framing::Incomplete => break,
                Framing::Message { len } if (1..=avail.len()).contains(&len) => {
                    self.stats().add_tcp_rx(1);
                    self.handler.on_message(&avail[..len], &src, &mut self.out);
                    start += len;
                    if self.out.pending.len() >= self.batch {
                        self.flush();
                    }
                }
                Framing::KeepAlive { len } if (1..=avail.len()).contains(&len) => {
                    // RFC 5626 §4.4.1: a CRLFCRLF ping gets a CRLF pong, in order with replies.
                    self.stats().add_keepalives(1);
                    self.out.buffer().extend_from_slice(b"\r\n");
                    self.out.push(Dest::Conn(me));
                    start += len;
                }
                // RFC 3261 §7.5: CRLFs between messages are ignored.
                Framing::Skip { len } if (1..=avail.len()).contains(&len) => start += len,
                // Bad, or a length outside the buffer (a handler bug): either way unframeable.
                _ => {
                    bad = true;
                    break;
                }
            }
        }
        if bad {
            self.stats().add_tcp_bad_stream(1);
            self.handler
                .on_bad_stream(&rbuf[start..rlen], &src, &mut self.out);
        }
        self.out.set_reply(None);
        self.flush();
        rbuf.copy_within(start..rlen, 0);
        match self.tcp.resolve(me).and_then(|i| self.tcp.get_mut(i)) {
            Some(c) => {
                c.rbuf = rbuf;
                c.rlen = rlen - start;
            }
            // Closed while flushing (write error).
            None => return false,
        }
        if bad {
            self.close_when_flushed(idx);
            return false;
        }
        true
    }

    /// The read buffer is full and the handler still sees no whole message.
    fn tcp_oversize(&mut self, idx: u32) {
        let Some(src) = self.source(idx) else { return };
        let Some(me) = src.conn else { return };
        let Some(c) = self.tcp.get_mut(idx) else {
            return;
        };
        let rbuf = std::mem::take(&mut c.rbuf);
        let rlen = c.rlen;
        self.stats().add_tcp_oversize(1);
        self.out.set_reply(Some(Dest::Conn(me)));
        self.handler
            .on_bad_stream(&rbuf[..rlen], &src, &mut self.out);
        self.out.set_reply(None);
        self.flush();
        if let Some(c) = self.tcp.resolve(me).and_then(|i| self.tcp.get_mut(i)) {
            c.rbuf = rbuf;
            c.rlen = 0;
        }
        self.close_when_flushed(idx);
    }

    pub(crate) fn tcp_send_ref(&mut self, r: ConnRef, bytes: &[u8]) {
        match self.tcp.resolve(r) {
            Some(idx) => self.tcp_write(idx, bytes),
            // The connection is gone (or the slot was reused): RFC 3261 §18.2.2 would fall back
            // to the Via address; that is the SIP layer's call, here it is a failed send.
            None => self.stats().add_send_errors(1),
        }
    }

    /// `Dest::Tcp`: reuse this worker's connection to `addr`, or connect.
    pub(crate) fn tcp_send_addr(&mut self, addr: SocketAddr, bytes: &[u8]) {
        if let Some(&idx) = self.tcp.by_addr.get(&addr) {
            return self.tcp_write(idx, bytes);
        }
        if self.tcp.free.is_empty() {
            return self.stats().add_send_errors(1);
        }
        let stream = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(_) => return self.stats().add_send_errors(1),
        };
        let registry = self.poll.registry();
        match self
            .tcp
            .insert(registry, stream, addr, State::Connecting, self.now_ms)
        {
            Some(idx) => self.tcp_write(idx, bytes),
            None => self.stats().add_send_errors(1),
        }
    }

    /// Writes now when possible, else queues behind the backlog (bounded).
    fn tcp_write(&mut self, idx: u32, bytes: &[u8]) {
        let backlog_max = self.tcp.backlog_max;
        let now_ms = self.now_ms;
        let Some(c) = self.tcp.get_mut(idx) else {
            return self.stats().add_send_errors(1);
        };
        if bytes.is_empty() {
            return;
        }
        if c.backlog() + bytes.len() > 2 * backlog_max {
            // The peer does not read: drop whole messages, never part of one.
            return self.stats().add_send_errors(1);
        }
        c.last_active_ms = now_ms;
        let mut off = 0;
        if c.state == State::Open && c.backlog() == 0 {
            // Each round writes >= 1 byte or leaves: at most bytes.len() rounds.
            while off < bytes.len() {
                match c.stream.write(&bytes[off..]) {
                    Ok(0) => break,
                    Ok(n) => off += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        self.stats().add_send_errors(1);
                        return self.close_conn(idx);
                    }
                }
            }
        }
        if off < bytes.len() {
            if c.wpos == c.wbuf.len() {
                c.wbuf.clear();
                c.wpos = 0;
            }
            c.wbuf.extend_from_slice(&bytes[off..]);
            if c.backlog() > backlog_max {
                // Backpressure: stop reading until the backlog drains (see flush_conn).
                c.read_paused = true;
            }
        }
        self.stats().add_tcp_tx(1);
    }

    /// Writes the backlog; resumes reading a paused connection once it drained below the cap;
    /// finishes a closing one.
    fn flush_conn(&mut self, idx: u32) {
        let backlog_max = self.tcp.backlog_max;
        let Some(c) = self.tcp.get_mut(idx) else {
            return;
        };
        if c.state == State::Connecting {
            return;
        }
        while c.wpos < c.wbuf.len() {
            match c.stream.write(&c.wbuf[c.wpos..]) {
                Ok(0) => break,
                Ok(n) => c.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.stats().add_send_errors(1);
                    return self.close_conn(idx);
                }
            }
        }
        if c.wpos == c.wbuf.len() {
            c.wbuf.clear();
            c.wpos = 0;
        } else if c.wpos * 2 >= c.wbuf.len() {
            c.wbuf.drain(..c.wpos);
            c.wpos = 0;
        }
        if c.state == State::Closing && c.backlog() == 0 {
            return self.close_conn(idx);
        }
        if c.read_paused && c.backlog() <= backlog_max / 2 {
            c.read_paused = false;
            // Edge-triggered: bytes that arrived while paused raise no new event.
            self.tcp_read(idx);
        }
    }

    /// Closes connections idle for longer than the timeout (also stuck connects and closings).
    pub(crate) fn sweep_idle(&mut self) {
        let idle_ms = self.tcp.idle_ms;
        for idx in 0..self.tcp.slots.len() as u32 {
            let expired = self.tcp.slots[idx as usize]
                .conn
                .as_ref()
                .is_some_and(|c| self.now_ms.saturating_sub(c.last_active_ms) >= idle_ms);
            if expired {
                self.stats().add_tcp_closed_idle(1);
                self.close_conn(idx);
            }
        }
        #[cfg(test)]
        self.tcp.check_invariants();
    }
}
