//! The SIP driver of the notifier: one UDP socket, one thread (mio), feeding the sans-IO
//! [`Notifier`] with datagrams, document changes (a channel from the XCAP server, with a mio
//! waker so a change goes out within milliseconds) and wall-clock time, sending what it
//! returns, retransmitting NOTIFYs (Timer E/F) and persisting subscriptions (G2).
//!
//! Identity (SPEC D4/D7): a SUBSCRIBE is served only from a peer in `trust` (the IMS core or
//! the IM Server); its identity is the P-Asserted-Identity, else From. This version has no
//! Digest for SUBSCRIBE, so an untrusted peer gets 403. TCP is not served (UDP only).
#![forbid(unsafe_code)]

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::auth::{TrustList, normalize_aor};
use crate::sip::lex::CommaIter;
use crate::sip::validate::{ExtraHeader, Limits, check_request};
use crate::sip::{HeaderName, Method, Parsed, View, nameaddr, values, via, write};

use super::core::SubscriptionStore;
use super::core::{Action, DocChangeEvent, DocIndex, Notifier, NotifierConfig, SubscribeInput};
use super::retransmit::{ResponseCache, Retransmitter};
use super::subscription::{EVENT_PACKAGE, Subscription};

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);
/// Change events queued between the XCAP server and this thread.
const CHANGE_QUEUE: usize = 65_536;
/// Work done per loop turn, so neither input starves the other.
const MAX_DATAGRAMS_PER_TURN: usize = 256;
const MAX_CHANGES_PER_TURN: usize = 4096;
/// Longest sleep, so the shutdown flag is seen even without a wake.
const MAX_SLEEP_MS: u64 = 500;
const MAX_TXNS: usize = 65_536;
const MAX_CACHED_RESPONSES: usize = 4096;
const RECV_BUF: usize = 65_536;

#[derive(Clone, Debug)]
pub struct GlmsSipConfig {
    /// Where to listen (UDP), e.g. `127.0.0.1:0`.
    pub addr: SocketAddr,
    /// Peers allowed to SUBSCRIBE, whose P-Asserted-Identity counts.
    pub trust: TrustList,
    /// An empty `contact` becomes `sip:glms@<bound address>`.
    pub notifier: NotifierConfig,
}

/// Counters (monotonic) of the driver.
#[derive(Debug, Default)]
pub struct SipStats {
    pub notifies_sent: AtomicU64,
    pub retransmissions: AtomicU64,
    pub datagrams_dropped: AtomicU64,
    pub changes_dropped: AtomicU64,
    pub store_errors: AtomicU64,
}

/// Feeds document changes to the notifier thread. Cheap to clone.
#[derive(Clone)]
pub struct NotifierHandle {
    tx: SyncSender<DocChangeEvent>,
    waker: Arc<Waker>,
    stats: Arc<SipStats>,
}

impl NotifierHandle {
    /// Reports a change (call it once the change is durable). Never blocks; `false` when the
    /// queue is full or the notifier stopped (counted in `changes_dropped`).
    pub fn changed(&self, ev: DocChangeEvent) -> bool {
        match self.tx.try_send(ev) {
            Ok(()) => {
                let _ = self.waker.wake();
                true
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.changes_dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }
}

/// The running notifier endpoint.
pub struct GlmsSip {
    local_addr: SocketAddr,
    handle: NotifierHandle,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl GlmsSip {
    /// Binds the socket, restores persisted subscriptions and starts the thread.
    pub fn start(
        cfg: GlmsSipConfig,
        docs: Arc<dyn DocIndex + Send + Sync>,
        store: Option<Arc<dyn SubscriptionStore>>,
    ) -> io::Result<GlmsSip> {
        let mut socket = UdpSocket::bind(cfg.addr)?;
        // A restarted IM Server re-subscribes for every registered user at once; the default
        // receive buffer (a few hundred datagrams) would drop most of that burst. Best effort.
        let sock = socket2::SockRef::from(&socket);
        let _ = sock.set_recv_buffer_size(4 << 20);
        let _ = sock.set_send_buffer_size(4 << 20);
        let local_addr = socket.local_addr()?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut socket, SOCKET, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = sync_channel(CHANGE_QUEUE);
        let stats = Arc::new(SipStats::default());
        let mut ncfg = cfg.notifier;
        if ncfg.contact.is_empty() {
            ncfg.contact = format!("sip:glms@{local_addr}");
        }
        let mut notifier = Notifier::new(ncfg);
        if let Some(store) = &store {
            let subs: Vec<Subscription> = store
                .subscriptions()?
                .into_iter()
                .filter_map(|(_, bytes)| serde_json::from_slice(&bytes).ok())
                .collect();
            notifier.restore(subs, wall_ms(), docs.as_ref());
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut worker = Worker {
            socket,
            poll,
            rx,
            notifier,
            docs,
            store,
            trust: cfg.trust,
            retrans: Retransmitter::new(MAX_TXNS),
            cache: ResponseCache::new(MAX_CACHED_RESPONSES),
            stats: stats.clone(),
            stop: stop.clone(),
            parsed: Parsed::new(),
            out: Vec::with_capacity(2048),
        };
        let thread = std::thread::Builder::new()
            .name("glms-notifier".into())
            .spawn(move || worker.run())?;
        Ok(GlmsSip {
            local_addr,
            handle: NotifierHandle { tx, waker, stats },
            stop,
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn handle(&self) -> NotifierHandle {
        self.handle.clone()
    }

    pub fn stats(&self) -> &SipStats {
        &self.handle.stats
    }

    /// Stops the thread. Subscriptions stay in the store (G2): no terminating NOTIFYs.
    pub fn shutdown(mut self) {
        self.stop_thread();
    }

    fn stop_thread(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.handle.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for GlmsSip {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// Wall-clock milliseconds: subscription expiry must survive a restart.
fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

struct Worker {
    socket: UdpSocket,
    poll: Poll,
    rx: Receiver<DocChangeEvent>,
    notifier: Notifier,
    docs: Arc<dyn DocIndex + Send + Sync>,
    store: Option<Arc<dyn SubscriptionStore>>,
    trust: TrustList,
    retrans: Retransmitter,
    cache: ResponseCache,
    stats: Arc<SipStats>,
    stop: Arc<AtomicBool>,
    parsed: Parsed,
    out: Vec<u8>,
}

impl Worker {
    fn run(&mut self) {
        let mut events = Events::with_capacity(16);
        let mut buf = vec![0u8; RECV_BUF];
        while !self.stop.load(Ordering::SeqCst) {
            let now = wall_ms();
            let next = [
                self.notifier.next_wakeup_ms(),
                self.retrans.next_wakeup_ms(),
            ]
            .into_iter()
            .flatten()
            .min();
            let sleep_ms = next.map_or(MAX_SLEEP_MS, |t| t.saturating_sub(now).min(MAX_SLEEP_MS));
            if let Err(e) = self
                .poll
                .poll(&mut events, Some(Duration::from_millis(sleep_ms)))
                && e.kind() != io::ErrorKind::Interrupted
            {
                // The poller itself failed: nothing more can be served. What is known is
                // persisted; the subscriptions resume on the next start (G2).
                break;
            }
            self.read_socket(&mut buf);
            self.read_changes();
            self.tick(wall_ms());
        }
        self.persist();
    }

    fn read_socket(&mut self, buf: &mut [u8]) {
        for _ in 0..MAX_DATAGRAMS_PER_TURN {
            match self.socket.recv_from(buf) {
                Ok((n, src)) => {
                    let Some(dgram) = buf.get(..n) else { continue };
                    self.on_datagram(dgram, src);
                    // Send the NOTIFY that follows a 200 right after it.
                    self.tick(wall_ms());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ICMP errors surface here on some systems; the next read goes on.
                Err(_) => continue,
            }
        }
    }

    fn read_changes(&mut self) {
        for _ in 0..MAX_CHANGES_PER_TURN {
            match self.rx.try_recv() {
                Ok(ev) => self.notifier.on_change(wall_ms(), ev),
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => return,
            }
        }
    }

    /// Runs the core's timers, sends, retransmits, persists.
    fn tick(&mut self, now: u64) {
        for a in self.notifier.poll(now) {
            let Action::Send {
                to,
                bytes,
                call_id,
                cseq,
            } = a;
            self.send(&bytes, to);
            self.stats.notifies_sent.fetch_add(1, Ordering::Relaxed);
            self.retrans.sent(now, &call_id, cseq, to, bytes);
        }
        for (to, bytes) in self.retrans.poll(now) {
            self.send(&bytes, to);
            self.stats.retransmissions.fetch_add(1, Ordering::Relaxed);
        }
        self.cache.expire(now);
        self.persist();
    }

    fn persist(&mut self) {
        let Some(store) = self.store.clone() else {
            // Nothing to persist to; keep the dirty set from growing.
            let _ = self.notifier.dirty();
            return;
        };
        // Everything that changed since the last turn goes in one batch (G2: durable; one
        // fsync for a burst of SUBSCRIBEs rather than one each, which capped a restart's
        // re-subscription storm at ~2,000 NOTIFYs/s).
        let (mut puts, mut removes) = (Vec::new(), Vec::new());
        for id in self.notifier.dirty() {
            match self.notifier.subscription(&id) {
                Some(sub) => match serde_json::to_vec(sub) {
                    Ok(bytes) => puts.push((id.as_str().to_owned(), bytes)),
                    Err(_) => {
                        self.stats.store_errors.fetch_add(1, Ordering::Relaxed);
                    }
                },
                None => removes.push(id.as_str().to_owned()),
            }
        }
        if store.apply_batch(&puts, &removes).is_err() {
            self.stats.store_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn send(&self, bytes: &[u8], to: SocketAddr) {
        // UDP: a full socket buffer loses the datagram; retransmission covers requests.
        if self.socket.send_to(bytes, to).is_err() {
            self.stats.datagrams_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn on_datagram(&mut self, dgram: &[u8], src: SocketAddr) {
        let mut parsed = std::mem::take(&mut self.parsed);
        if parsed.scan_datagram(dgram).is_err() {
            // Unparsable: dropped and counted (no View to answer from).
            self.stats.datagrams_dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            let v = parsed.view(dgram);
            if v.is_response() {
                self.on_response(&v);
            } else {
                self.on_request(&v, src);
            }
        }
        self.parsed = parsed;
    }

    fn on_response(&mut self, v: &View<'_>) {
        let Some(cseq) = v
            .header(HeaderName::CSeq)
            .and_then(|c| values::cseq(c).ok())
        else {
            return;
        };
        if cseq.method != b"NOTIFY" {
            return;
        }
        let Some(call_id) = v
            .header(HeaderName::CallId)
            .and_then(|c| values::call_id(c).ok())
            .and_then(|c| std::str::from_utf8(c).ok())
        else {
            return;
        };
        let now = wall_ms();
        self.retrans.on_response(now, call_id, cseq.seq, v.status());
        self.notifier
            .on_notify_response(now, call_id, cseq.seq, v.status());
    }

    fn on_request(&mut self, v: &View<'_>, src: SocketAddr) {
        if let Err(r) = check_request(v, &Limits::default()) {
            let allow = [("Allow", &b"SUBSCRIBE, OPTIONS"[..])];
            let (extra, rx): (&[(&str, &[u8])], ExtraHeader) = match r.extra {
                ExtraHeader::Allow => (&allow, ExtraHeader::None),
                other => (&[], other),
            };
            self.respond(v, src, r.code, r.reason, "", extra, rx);
            return;
        }
        match v.method() {
            Method::Subscribe => self.on_subscribe(v, src),
            Method::Ack => {}
            Method::Options => {
                let extra = [
                    ("Allow", &b"SUBSCRIBE, OPTIONS"[..]),
                    ("Allow-Events", EVENT_PACKAGE.as_bytes()),
                ];
                self.respond(v, src, 200, "OK", "", &extra, ExtraHeader::None);
            }
            _ => {
                // RFC 3261 §8.2.1: a method we know but do not serve here.
                let extra = [("Allow", &b"SUBSCRIBE, OPTIONS"[..])];
                self.respond(
                    v,
                    src,
                    405,
                    "Method Not Allowed",
                    "",
                    &extra,
                    ExtraHeader::None,
                );
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn respond(
        &mut self,
        v: &View<'_>,
        src: SocketAddr,
        code: u16,
        reason: &str,
        to_tag: &str,
        extra: &[(&str, &[u8])],
        rx: ExtraHeader,
    ) -> (SocketAddr, Vec<u8>) {
        let mut derived = [0u8; 16];
        let tag: &[u8] = if to_tag.is_empty() {
            write::derive_to_tag(v, 0x676c_6d73, &mut derived)
        } else {
            to_tag.as_bytes()
        };
        let mut out = std::mem::take(&mut self.out);
        write::write_response(v, src, code, reason, tag, extra, rx, &mut out);
        let to = via::top_reply_facts(v).map_or(src, |(rport, port)| {
            write::response_dest(rport, port, src, v.transport())
        });
        self.send(&out, to);
        let sent = (to, out.clone());
        self.out = out;
        sent
    }

    fn on_subscribe(&mut self, v: &View<'_>, src: SocketAddr) {
        let now = wall_ms();
        let call_id = v.header(HeaderName::CallId).unwrap_or(b"");
        let cseq = v
            .header(HeaderName::CSeq)
            .and_then(|c| values::cseq(c).ok())
            .map_or(0, |c| c.seq);
        let from_tag = nameaddr::header_tag(v, HeaderName::From)
            .flatten()
            .unwrap_or(b"");
        let branch = via::top_branch(v).unwrap_or(b"");
        let key = ResponseCache::key(call_id, from_tag, cseq, branch);
        if let Some((to, bytes)) = self.cache.get(&key) {
            // §17.2.2: a retransmission gets the same response again.
            let (to, bytes) = (*to, bytes.clone());
            self.send(&bytes, to);
            return;
        }
        // Every Accept line, joined (RFC 3261 §7.3.1: same as one comma-separated line).
        let accept: Option<String> = {
            let vals: Vec<&str> = v
                .values(HeaderName::Accept)
                .filter_map(|a| std::str::from_utf8(a).ok())
                .collect();
            (v.header_count(HeaderName::Accept) > 0).then(|| vals.join(", "))
        };
        let sent = match self.decode_subscribe(v, src, accept.as_deref()) {
            Ok(input) => {
                let docs = self.docs.clone();
                match self.notifier.on_subscribe(now, input, docs.as_ref()) {
                    Ok(ok) => {
                        let expires = ok.expires_s.to_string();
                        let contact = format!("<{}>", self.notifier.config().contact);
                        let extra = [
                            ("Expires", expires.as_bytes()),
                            ("Contact", contact.as_bytes()),
                        ];
                        self.respond(v, src, 200, "OK", &ok.to_tag, &extra, ExtraHeader::None)
                    }
                    Err(rej) => {
                        let reason = rej.reason_phrase();
                        let extra: Vec<(&str, &[u8])> = rej
                            .headers
                            .iter()
                            .map(|(n, val)| (*n, val.as_bytes()))
                            .collect();
                        self.respond(v, src, rej.code(), &reason, "", &extra, ExtraHeader::None)
                    }
                }
            }
            Err((code, reason)) => self.respond(v, src, code, reason, "", &[], ExtraHeader::None),
        };
        self.cache.put(now, key, sent.0, sent.1);
    }

    /// Turns the SUBSCRIBE into the core's input; `Err` is a response the driver decides.
    fn decode_subscribe<'v>(
        &self,
        v: &View<'v>,
        src: SocketAddr,
        accept: Option<&'v str>,
    ) -> Result<SubscribeInput<'v>, (u16, &'static str)> {
        // D4/D7: only configured peers; no Digest for SUBSCRIBE in this version.
        if !self.trust.contains(src.ip()) {
            return Err((403, "Forbidden - Untrusted peer"));
        }
        let utf8 = |b: &'v [u8]| std::str::from_utf8(b).ok();
        let from = v
            .header(HeaderName::From)
            .and_then(|f| nameaddr::parse(f).ok())
            .ok_or((400, "Bad Request - Malformed From"))?;
        let from_tag = from.tag().ok_or((400, "Bad Request - Missing From tag"))?;
        let to = v
            .header(HeaderName::To)
            .and_then(|t| nameaddr::parse(t).ok())
            .ok_or((400, "Bad Request - Malformed To"))?;
        // RFC 3325 §5: P-Asserted-Identity from a trusted peer names the subscriber.
        let pai_uri = v.header(HeaderName::PAssertedIdentity).and_then(|p| {
            CommaIter::new(p)
                .filter_map(|e| nameaddr::parse(e).ok())
                .map(|n| n.uri)
                .find(|u| u.starts_with(b"sip:") || u.starts_with(b"sips:"))
        });
        let id_uri = pai_uri.unwrap_or(from.uri);
        let subscriber = utf8(id_uri)
            .and_then(|s| normalize_aor(s).ok())
            .ok_or((403, "Forbidden - No usable identity"))?;
        let event = v
            .header(HeaderName::Event)
            .and_then(utf8)
            .ok_or((400, "Bad Request - Missing Event"))?;
        let contact = v
            .header(HeaderName::Contact)
            .and_then(|c| CommaIter::new(c).next())
            .and_then(|c| nameaddr::parse(c).ok())
            .ok_or((400, "Bad Request - Missing Contact"))?;
        let contact_uri = utf8(contact.uri).ok_or((400, "Bad Request - Malformed Contact"))?;
        let route_to = contact
            .parsed_uri()
            .ok()
            .and_then(|u| {
                u.host_kind
                    .ip()
                    .map(|ip: IpAddr| (ip, u.port.unwrap_or(5060)))
            })
            .map_or(src, SocketAddr::from);
        let expires_s = v
            .header(HeaderName::Expires)
            .and_then(|e| values::expires(e).ok());
        Ok(SubscribeInput {
            subscriber,
            subscriber_uri: utf8(from.uri).unwrap_or_default().to_owned(),
            resource_uri: utf8(to.uri).unwrap_or_default().to_owned(),
            call_id: utf8(v.header(HeaderName::CallId).unwrap_or(b""))
                .unwrap_or_default()
                .trim()
                .to_owned(),
            from_tag: utf8(from_tag).unwrap_or_default().to_owned(),
            to_tag: to.tag().and_then(utf8).map(str::to_owned),
            cseq: v
                .header(HeaderName::CSeq)
                .and_then(|c| values::cseq(c).ok())
                .map_or(0, |c| c.seq),
            event_header: event,
            accept,
            expires_s,
            content_type: v.header(HeaderName::ContentType).and_then(utf8),
            body: v.body(),
            contact: contact_uri.to_owned(),
            route_to,
        })
    }
}
