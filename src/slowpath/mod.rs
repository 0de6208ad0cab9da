//! The slow path: one thread that owns every piece of state that is not a policy snapshot
//! (registrar bindings, service-settings publications) and publishes what the fast path needs
//! into the [`PolicyTable`].
//!
//! It is reached only through the bounded [`SlowQueue`] (requests the fast path does not decide,
//! and responses to requests the slow path itself sent) and wakes itself for expiry timers.
//! Its cores (registrar, compositor) are sans-IO; this module is their thin driver: it parses
//! the SIP message, calls the core with `now`, turns the outcome into a response and snapshot
//! updates, and sends through the transport's [`TransportHandle`].
//!
//! ```text
//!   queue ──▶ parse ──▶ REGISTER ─▶ registrar ─▶ 200/423/... ; TargetChanged ─▶ policy.target
//!                     ├ PUBLISH  ─▶ compositor ─▶ 200 + SIP-ETag/412/489/... ; ISB ─▶ policy.isb
//!                     ├ SUBSCRIBE ─▶ 489 (no event package is served to subscribers)
//!                     └ NOTIFY   ─▶ 481 (no subscription of ours matches)
//!   timer ──▶ registrar.expire / compositor.expire ─▶ policy updates
//! ```
#![forbid(unsafe_code)]

mod glms;
mod publish;
mod queue;
mod register;
mod respond;

pub use glms::GlmsLink;
pub use queue::{Next, QueueFull, SlowItem, SlowJob, SlowQueue, SlowReceiver, slow_queue};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::auth::trust::TrustList;
use crate::gate::{Gate, Kind, Outcome};
use crate::metrics::{DropReason, Metrics};
use crate::policy::{Identity, PolicyTable, RelayTarget, UserPolicy};
use crate::registrar::{BindingTarget, Registrar, RegistrarConfig, RegistrarEvent};
use crate::settings::{Compositor, SettingsConfig};
use crate::sip::validate::Limits;
use crate::sip::{Method, Parsed};
use crate::store::{Batch, CredentialStore, Store};
use crate::transport::{Dest, TransportHandle};

/// Settings of the slow path.
#[derive(Clone)]
pub struct SlowConfig {
    pub secret: u64,
    pub trust: TrustList,
    pub limits: Limits,
    /// The GLMS that supplies blocked lists. Without one, a user's lists are known to be
    /// empty at once; with one, they are pending until fetched (D6).
    pub glms: Option<GlmsLink>,
    /// The served domain (the server's identity `sip:im-server@<domain>`).
    pub domain: String,
    /// Our own SIP host and port (Contact and Via of the SUBSCRIBEs we send).
    pub own_host: String,
    pub own_port: u16,
    pub registrar: RegistrarConfig,
    pub settings: SettingsConfig,
    pub gate: Arc<Gate>,
    /// The data directory (`state.redb`, `credentials.redb`).
    pub data: std::path::PathBuf,
}

/// The running slow-path thread.
pub struct SlowPath {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SlowPath {
    pub fn start(
        cfg: SlowConfig,
        queue: SlowQueue,
        rx: SlowReceiver,
        net: TransportHandle,
        policy: Arc<PolicyTable>,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let credentials = CredentialStore::new(&cfg.data);
        let store = Store::open(&cfg.data).map_err(std::io::Error::other)?;
        let link = match &cfg.glms {
            Some(g) => Some(glms::Link::new(
                g,
                &cfg.domain,
                &cfg.own_host,
                cfg.own_port,
                queue,
            )?),
            None => None,
        };
        let mut state = State::new(cfg, store, credentials, link, net, policy, metrics)
            .map_err(std::io::Error::other)?;
        // Credentials are in force before the first request is served.
        state.reload_credentials(now_ms());
        let thread = std::thread::Builder::new()
            .name("slowpath".into())
            .spawn(move || {
                state.run(&rx, &stop2);
                if let Some(link) = state.glms.take() {
                    link.shutdown();
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    pub fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SlowPath {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The slow path's state, driven by [`State::handle`] and [`State::tick`].
pub struct State {
    cfg: SlowConfig,
    net: TransportHandle,
    policy: Arc<PolicyTable>,
    metrics: Arc<Metrics>,
    registrar: Registrar,
    settings: Compositor,
    parsed: Parsed,
    store: Store,
    credentials: CredentialStore,
    credentials_seen: Option<SystemTime>,
    next_credentials_check_ms: u64,
    /// Responses of the current burst, sent only after its changes are durable.
    pending: Vec<(Dest, Vec<u8>)>,
    /// The GLMS subscriber, when a GLMS is configured.
    glms: Option<glms::Link>,
    /// Sends the transport's mailboxes had no room for (a burst of SUBSCRIBEs after a restart,
    /// say), retried every loop in order; bounded by [`MAX_BACKLOG`].
    backlog: std::collections::VecDeque<(Dest, Vec<u8>)>,
}

/// Most sends kept back for a full mailbox; past it the oldest is dropped and counted.
const MAX_BACKLOG: usize = 1 << 20;

/// Longest sleep between timer checks: bounds how late an expiry can be seen.
const MAX_WAIT: Duration = Duration::from_millis(250);

impl State {
    /// Opens the store and restores unexpired bindings and publications into the snapshot.
    fn new(
        cfg: SlowConfig,
        store: Store,
        credentials: CredentialStore,
        glms: Option<glms::Link>,
        net: TransportHandle,
        policy: Arc<PolicyTable>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, crate::store::StoreError> {
        let mut state = Self {
            registrar: Registrar::new(cfg.registrar),
            settings: Compositor::new(cfg.settings),
            cfg,
            net,
            policy,
            metrics,
            parsed: Parsed::new(),
            store,
            credentials,
            credentials_seen: None,
            next_credentials_check_ms: 0,
            pending: Vec::new(),
            glms,
            backlog: std::collections::VecDeque::new(),
        };
        let now = now_ms();
        // D6: the last known lists apply at once after a restart; they are revalidated when
        // the subscriptions run again.
        if let Some(link) = state.glms.as_mut() {
            let cached = state.store.policy_cache()?;
            link.sub
                .restore(now, cached.into_iter().map(|(_, e)| e).collect());
            state.glms_poll();
        }
        let bindings = state.store.bindings()?;
        let pubs = state.store.publications()?;
        let events = state.registrar.restore(
            bindings
                .into_iter()
                .map(|(aor, b)| (crate::registrar::Aor::new(&aor), b)),
            now,
        );
        state.apply_registrar_events(&events);
        let changed = state.settings.restore(
            pubs.into_iter()
                .map(|(aor, p)| (crate::settings::Aor::new(&aor), p)),
            now,
        );
        for aor in changed {
            state.publish_isb(aor.as_str());
        }
        // Restoring marks everything dirty; it is already on disk.
        state.registrar.changed_aors().for_each(drop);
        state.settings.changed_aors().for_each(drop);
        if let Some(link) = state.glms.as_mut() {
            drop(link.sub.export_dirty());
        }
        tracing::info!(
            aors = state.registrar.aor_count(),
            publications = state.settings.aor_count(),
            "restored durable state"
        );
        Ok(state)
    }

    fn now_ms(&self) -> u64 {
        now_ms()
    }

    /// Queues a response; [`State::flush`] sends it once the burst's changes are durable.
    fn queue(&mut self, dest: Dest, bytes: Vec<u8>) {
        self.pending.push((dest, bytes));
    }

    /// Group commit: one durable transaction for everything the burst changed, then its
    /// responses. If the write fails the responses are still sent (the change is live in
    /// memory) and the failure is logged loudly: refusing service would not un-send them.
    fn flush(&mut self) {
        let cache = self.glms.as_mut().map_or_else(Vec::new, |l| {
            l.sub
                .export_dirty()
                .into_iter()
                .map(|c| match c {
                    crate::subscriber::CacheChange::Put(e) => (e.aor.clone(), Some(e)),
                    crate::subscriber::CacheChange::Remove { aor } => (aor, None),
                })
                .collect()
        });
        let batch = Batch {
            cache,
            bindings: self
                .registrar
                .changed_aors()
                .collect::<Vec<_>>()
                .into_iter()
                .map(|aor| {
                    let rows = self.registrar.bindings(aor.as_str());
                    let rows = (!rows.is_empty()).then(|| rows.to_vec());
                    (aor.as_str().to_owned(), rows)
                })
                .collect(),
            publications: self
                .settings
                .changed_aors()
                .collect::<Vec<_>>()
                .into_iter()
                .map(|aor| {
                    let rows = self.settings.publications(aor.as_str());
                    let rows = (!rows.is_empty()).then(|| rows.to_vec());
                    (aor.as_str().to_owned(), rows)
                })
                .collect(),
        };
        if let Err(e) = self.store.write(&batch) {
            tracing::error!(error = %e, "durable write failed; state is in memory only");
        }
        let pending = std::mem::take(&mut self.pending);
        for (dest, bytes) in pending {
            self.send(dest, bytes);
        }
        self.drain_backlog();
    }

    /// Sends now, or keeps the message for the next loop when the worker's mailbox is full:
    /// the slow path never loses a response or a SUBSCRIBE to a burst.
    fn send(&mut self, dest: Dest, bytes: Vec<u8>) {
        if !self.backlog.is_empty() {
            // Keep the order: behind what is already waiting.
            self.backlog_push(dest, bytes);
            return;
        }
        if let Err((dest, bytes)) = self.net.try_send(dest, bytes) {
            self.backlog_push(dest, bytes);
        }
    }

    fn backlog_push(&mut self, dest: Dest, bytes: Vec<u8>) {
        if self.backlog.len() >= MAX_BACKLOG {
            self.backlog.pop_front();
            self.metrics.slow_block().dropped(DropReason::SendFailed);
        }
        self.backlog.push_back((dest, bytes));
    }

    fn drain_backlog(&mut self) {
        while let Some((dest, bytes)) = self.backlog.pop_front() {
            if let Err((dest, bytes)) = self.net.try_send(dest, bytes) {
                self.backlog.push_front((dest, bytes));
                break;
            }
        }
    }

    /// Picks up credentials changed by `imserver user add/remove` (checked once a second).
    fn reload_credentials(&mut self, now: u64) {
        if now < self.next_credentials_check_ms {
            return;
        }
        self.next_credentials_check_ms = now + 1000;
        let seen = self.credentials.modified();
        if seen == self.credentials_seen {
            return;
        }
        match self.credentials.load() {
            Ok(c) => {
                tracing::info!(users = c.len(), "credentials loaded");
                self.cfg.gate.creds.store(Arc::new(c));
                self.credentials_seen = seen;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read credentials; keeping the previous ones")
            }
        }
    }

    fn run(&mut self, rx: &SlowReceiver, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            let now = self.now_ms();
            let sub_wake = self.glms.as_ref().and_then(|l| l.sub.next_wakeup_ms());
            let wake = [
                self.registrar.next_wakeup_ms(),
                self.settings.next_wakeup_ms(),
                sub_wake,
            ]
            .into_iter()
            .flatten()
            .min()
            .map_or(MAX_WAIT, |at| {
                Duration::from_millis(at.saturating_sub(now)).min(MAX_WAIT)
            });
            // Sends waiting for room in a mailbox: come back soon.
            let wake = if self.backlog.is_empty() {
                wake
            } else {
                wake.min(Duration::from_millis(1))
            };
            match rx.next(wake) {
                Next::Job(job) => {
                    self.handle(&job);
                    // Drain a burst into one durable batch before looking at timers again.
                    for _ in 0..1024 {
                        match rx.try_next() {
                            Some(Next::Job(job)) => self.handle(&job),
                            Some(Next::Fetched(done)) => self.glms_fetched(done),
                            _ => break,
                        }
                    }
                }
                Next::Fetched(done) => self.glms_fetched(done),
                Next::Timeout => {}
                Next::Closed => break,
            }
            self.tick();
            self.flush();
        }
    }

    /// Expiry of bindings and publications; credential changes.
    fn tick(&mut self) {
        let now = self.now_ms();
        self.reload_credentials(now);
        while self.registrar.next_wakeup_ms().is_some_and(|t| t <= now) {
            let events = self.registrar.expire(now);
            if events.is_empty() {
                break;
            }
            self.apply_registrar_events(&events);
        }
        if self.settings.next_wakeup_ms().is_some_and(|t| t <= now) {
            for aor in self.settings.expire(now) {
                self.publish_isb(aor.as_str());
            }
        }
        self.glms_poll();
    }

    fn handle(&mut self, job: &SlowJob) {
        let mut parsed = std::mem::take(&mut self.parsed);
        if parsed.scan_datagram(&job.bytes).is_err() {
            self.metrics.slow_block().dropped(DropReason::Malformed);
            self.parsed = parsed;
            return;
        }
        let view = parsed.view(&job.bytes);
        if view.is_response() {
            // Responses to our own SUBSCRIBEs (the fast path routes them by branch prefix).
            if self.glms.is_some() {
                self.glms_response(&view);
            } else {
                self.metrics
                    .slow_block()
                    .dropped(DropReason::ResponseNotOurs);
            }
        } else {
            match view.method() {
                Method::Register => register::on_register(self, &view, &job.src),
                Method::Publish => publish::on_publish(self, &view, &job.src),
                Method::Subscribe => respond::send(
                    self,
                    &view,
                    &job.src,
                    489,
                    "Bad Event",
                    &[("Allow-Events", b"")],
                ),
                Method::Notify => self.glms_notify(&view, &job.src),
                _ => respond::send(
                    self,
                    &view,
                    &job.src,
                    500,
                    "Server Internal Error - Misrouted Request",
                    &[],
                ),
            }
        }
        self.parsed = parsed;
    }

    /// Publishes registrar changes into the fast path's snapshot.
    fn apply_registrar_events(&mut self, events: &[RegistrarEvent]) {
        let now = self.now_ms();
        if let Some(link) = self.glms.as_mut() {
            for ev in events {
                match ev {
                    // D5: the subscription starts with the first binding ...
                    RegistrarEvent::FirstBinding { aor } => {
                        if let Err(e) = link.sub.on_first_binding(now, aor.as_str()) {
                            tracing::warn!(aor = aor.as_str(), error = %e, "cannot subscribe");
                        }
                    }
                    // ... and ends a grace period after the last one goes.
                    RegistrarEvent::LastBindingGone { aor } => {
                        link.sub.on_last_binding_gone(now, aor.as_str())
                    }
                    RegistrarEvent::TargetChanged { .. } => {}
                }
            }
        }
        for ev in events {
            if let RegistrarEvent::TargetChanged { aor, target } = ev {
                let key = Identity::from_canonical(aor.as_str().as_bytes());
                let target = target.as_ref().and_then(relay_target);
                let known = self.cfg.glms.is_none();
                let isb = self.settings.effective(aor.as_str()).isb;
                self.policy.update(&key, |old| {
                    Some(match old {
                        Some(p) => p.with_target(target),
                        None => UserPolicy {
                            target,
                            policy_known: known,
                            isb,
                            ..UserPolicy::default()
                        },
                    })
                });
            }
        }
    }

    /// Publishes the composed ISB flag of `aor` into the snapshot (D11).
    fn publish_isb(&mut self, aor: &str) {
        let key = Identity::from_canonical(aor.as_bytes());
        let isb = self.settings.effective(aor).isb;
        if self
            .policy
            .with(key.as_bytes(), |p| p.is_some_and(|p| p.isb == isb))
        {
            return;
        }
        let known = self.cfg.glms.is_none();
        self.policy.update(&key, |old| match old {
            Some(p) => Some(UserPolicy { isb, ..p.clone() }),
            // A user who published settings but never registered is known: MESSAGEs get 480
            // (or the block response when ISB is on), not 404.
            None => Some(UserPolicy {
                isb,
                policy_known: known,
                ..UserPolicy::default()
            }),
        });
    }
}

/// Wall-clock milliseconds: stored expiry times must mean the same after a restart.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The fast path's relay target for a binding (D10).
fn relay_target(t: &BindingTarget) -> Option<RelayTarget> {
    Some(RelayTarget {
        addr: t.addr?,
        tcp: t.tcp,
        uri: t.contact_uri.as_bytes().into(),
        conn: t.conn,
    })
}

impl State {
    /// D7: an untrusted peer must prove the identity it claims (`claimed`, normalised) with
    /// Digest; REGISTER and PUBLISH are challenged with 401. Returns false after answering.
    fn authorize(
        &mut self,
        view: &crate::sip::View<'_>,
        src: &crate::transport::Source,
        claimed: &[u8],
    ) -> bool {
        match self.cfg.gate.check(view, Kind::Registrar, claimed) {
            Outcome::Pass => true,
            Outcome::Challenge { stale, reason } => {
                let (mut sha256, mut md5) = (Vec::with_capacity(512), Vec::with_capacity(512));
                self.cfg.gate.write_challenges(stale, &mut sha256, &mut md5);
                let name = Kind::Registrar.challenge().name();
                respond::send(
                    self,
                    view,
                    src,
                    401,
                    reason,
                    &[(name, &sha256), (name, &md5)],
                );
                false
            }
            Outcome::BadRequest(reason) => {
                respond::send(self, view, src, 400, reason, &[]);
                false
            }
            Outcome::Forbidden(reason) => {
                respond::send(self, view, src, 403, reason, &[]);
                false
            }
        }
    }
}
