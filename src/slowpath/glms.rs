//! The slow path's link to the GLMS (SPEC D3-D6): the sans-IO subscriber machine, the XCAP
//! fetcher threads, and the glue that turns their actions into SUBSCRIBEs, fetches and policy
//! snapshots.
//!
//! ```text
//!  registrar FirstBinding ──▶ subscriber ──▶ SUBSCRIBE (Event: xcap-diff) ──▶ GLMS
//!  NOTIFY (fast path → queue) ──▶ on_notify ──▶ patch cached doc │ Fetch ──▶ fetcher thread
//!  fetch done (queue) ──▶ on_fetched ──▶ compile (D2) ──▶ PublishPolicy ──▶ snapshot
//!  registrar LastBindingGone ──▶ grace (D5) ──▶ SUBSCRIBE Expires: 0 ──▶ Stopped
//! ```
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::time::Duration;

use super::State;
use crate::policy::{Identity, UserPolicy};
use crate::sip::{HeaderName, View, nameaddr, values};
use crate::subscriber::{
    Action, FetchDone, FetchRequest, Fetcher, Notify, SubscribeResponse, Subscriber,
    SubscriberConfig, render_subscribe,
};
use crate::transport::{Dest, Source};

/// Where the GLMS is.
#[derive(Clone, Debug)]
pub struct GlmsLink {
    /// The notifier's SIP address (UDP).
    pub sip: SocketAddr,
    /// `http://ADDR/xcap-root`.
    pub xcap_root_url: String,
}

/// The running link.
pub(super) struct Link {
    pub(super) sub: Subscriber,
    cfg: SubscriberConfig,
    fetcher: Fetcher,
    sent_by: String,
}

impl Link {
    pub(super) fn new(
        link: &GlmsLink,
        domain: &str,
        own_host: &str,
        own_port: u16,
        queue: super::SlowQueue,
    ) -> std::io::Result<Self> {
        let sent_by = format!("{own_host}:{own_port}");
        let contact = format!("sip:im-server@{sent_by}");
        let mut cfg = SubscriberConfig::new(link.sip, domain, &contact, &link.xcap_root_url);
        cfg.max_aors = 10_000_000;
        // The SUBSCRIBE goes over UDP: retransmit it (RFC 3261 §17.1.2.2, Timer E from T1),
        // so a GLMS that comes up late answers within seconds, not after Timer F.
        cfg.retransmit_t1_ms = Some(500);
        cfg.id_seed = rand::random();
        let identity = cfg.own_identity.clone();
        // Fetches are blocking HTTP exchanges: enough threads that a burst of registrations
        // (two documents each) does not queue behind a few slow ones.
        let fetcher = Fetcher::start(16, 65_536, &identity, Duration::from_secs(5), move |done| {
            if queue.push_fetched(done).is_err() {
                tracing::warn!("slow path gone: a fetch result was dropped");
            }
        })?;
        Ok(Self {
            sub: Subscriber::new(cfg.clone()),
            cfg,
            fetcher,
            sent_by,
        })
    }

    pub(super) fn shutdown(self) {
        self.fetcher.shutdown();
    }
}

impl State {
    /// Runs the subscriber's due timers and carries out every action it has.
    pub(super) fn glms_poll(&mut self) {
        let now = self.now_ms();
        let Some(link) = self.glms.as_mut() else {
            return;
        };
        let actions = link.sub.poll(now);
        for action in actions {
            self.glms_act(action);
        }
    }

    fn glms_act(&mut self, action: Action) {
        let Some(link) = self.glms.as_mut() else {
            return;
        };
        match action {
            a @ Action::SendSubscribe { .. } => {
                if let Some(bytes) = render_subscribe(&link.cfg, &a, "UDP", &link.sent_by) {
                    let to = link.cfg.glms;
                    self.metrics.glms_subscribe(0);
                    self.send(Dest::Udp(to), bytes);
                }
            }
            Action::Fetch {
                aor,
                uri,
                if_none_match,
            } => {
                if let Err(req) = link.fetcher.submit(FetchRequest {
                    aor,
                    uri,
                    if_none_match,
                }) {
                    // The fetch queue is full: report a failure so the machine backs off and
                    // retries, while the last known policy stays (D6).
                    let now = crate::slowpath::now_ms();
                    link.sub.on_fetched(
                        now,
                        &req.aor,
                        &req.uri,
                        crate::subscriber::FetchResult::Failed,
                    );
                }
            }
            Action::PublishPolicy { aor, compiled } => match compiled.policy() {
                Ok(lists) => self.publish_lists(&aor, lists),
                Err(e) => tracing::warn!(%aor, error = %e, "compiled policy refused"),
            },
            Action::PolicyRejected { aor, error } => {
                tracing::warn!(%aor, error = %error, "documents did not compile; the last good policy stays");
            }
            Action::Stopped { aor } => self.drop_lists(&aor),
        }
    }

    /// D2: the user's compiled lists replace the old ones; target and ISB stay.
    fn publish_lists(&mut self, aor: &str, lists: UserPolicy) {
        let key = Identity::from_canonical(aor.as_bytes());
        let isb = self.settings.effective(aor).isb;
        self.policy.update(&key, |old| {
            Some(UserPolicy {
                target: old.and_then(|p| p.target.clone()),
                isb: old.map_or(isb, |p| p.isb),
                policy_known: true,
                ..lists
            })
        });
        self.metrics.glms_policy_applied();
    }

    /// D5: the subscription ended after the grace period. A user with neither a binding nor
    /// ISB is forgotten (404 again); otherwise the lists are no longer known.
    fn drop_lists(&mut self, aor: &str) {
        let key = Identity::from_canonical(aor.as_bytes());
        self.policy.update(&key, |old| {
            let old = old?;
            (old.target.is_some() || old.isb).then(|| UserPolicy {
                target: old.target.clone(),
                isb: old.isb,
                policy_known: false,
                ..UserPolicy::default()
            })
        });
    }

    /// A NOTIFY for one of our subscriptions (D3): answered with what the machine says.
    pub(super) fn glms_notify(&mut self, view: &View<'_>, src: &Source) {
        let now = self.now_ms();
        let Some(link) = self.glms.as_mut() else {
            super::respond::send(self, view, src, 481, "Subscription Does Not Exist", &[]);
            return;
        };
        let text = |h| view.header(h).and_then(|v| std::str::from_utf8(v).ok());
        let tag = |h| {
            view.header(h)
                .and_then(|v| nameaddr::parse(v).ok())
                .and_then(|n| n.tag())
                .and_then(|t| std::str::from_utf8(t).ok())
        };
        let n = Notify {
            call_id: text(HeaderName::CallId).unwrap_or(""),
            from_tag: tag(HeaderName::From),
            to_tag: tag(HeaderName::To),
            event: text(HeaderName::Event).unwrap_or(""),
            subscription_state: text(HeaderName::SubscriptionState).unwrap_or(""),
            body: view.body(),
        };
        let reply = link.sub.on_notify(now, &n);
        // RFC 6665 §4.1.3: answer first, then act on what the NOTIFY said.
        let extra: &[(&str, &[u8])] = if reply.code == 489 {
            &[("Allow-Events", b"xcap-diff")]
        } else {
            &[]
        };
        super::respond::send(self, view, src, reply.code, reply.reason(), extra);
        self.glms_poll();
    }

    /// A response to one of our SUBSCRIBEs.
    pub(super) fn glms_response(&mut self, view: &View<'_>) {
        let now = self.now_ms();
        let Some(link) = self.glms.as_mut() else {
            return;
        };
        let num = |h| view.header(h).and_then(|v| values::expires(v).ok());
        let cseq = view
            .header(HeaderName::CSeq)
            .and_then(|c| values::cseq(c).ok());
        if cseq.is_none_or(|c| c.method != b"SUBSCRIBE") {
            return;
        }
        let r = SubscribeResponse {
            call_id: view
                .header(HeaderName::CallId)
                .and_then(|c| std::str::from_utf8(c).ok())
                .unwrap_or(""),
            cseq: cseq.map_or(0, |c| c.seq),
            code: view.status(),
            expires_s: num(HeaderName::Expires),
            min_expires_s: num(HeaderName::MinExpires),
            retry_after_s: view
                .header(HeaderName::RetryAfter)
                .and_then(|v| v.split(|&b| b == b' ' || b == b';').next())
                .and_then(|v| values::expires(v).ok()),
            to_tag: view
                .header(HeaderName::To)
                .and_then(|v| nameaddr::parse(v).ok())
                .and_then(|n| n.tag())
                .and_then(|t| std::str::from_utf8(t).ok()),
        };
        if r.code >= 300 {
            tracing::warn!(
                code = r.code,
                call_id = r.call_id,
                "the GLMS refused a SUBSCRIBE"
            );
            self.metrics.glms_subscribe(2);
        } else if r.code >= 200 {
            self.metrics.glms_subscribe(1);
        }
        link.sub.on_response(now, &r);
        self.glms_poll();
    }

    /// A finished XCAP fetch.
    pub(super) fn glms_fetched(&mut self, done: FetchDone) {
        let now = self.now_ms();
        if let Some(link) = self.glms.as_mut() {
            link.sub.on_fetched(now, &done.aor, &done.uri, done.result);
        }
        self.glms_poll();
    }
}
