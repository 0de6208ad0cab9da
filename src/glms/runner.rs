//! One running GLMS: the XCAP HTTP server and the xcap-diff notifier over one document store.
//!
//! Every acknowledged XCAP change is committed first (G2), then handed to the notifier through
//! the HTTP server's change hook, which only queues it (the notifier's thread builds and sends
//! the NOTIFYs), so a change reaches subscribers within milliseconds of its 200 (G4).
//! Used by `imserver run` (embedded) and by `imserver glms` (standalone).
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use super::http::{ChangeEvent, HttpLimits, XcapConfig, XcapServer};
use super::notifier::{
    DocChangeEvent, DocIndex, GlmsSip, GlmsSipConfig, NotifierConfig, NotifierHandle,
    SubscriptionStore,
};
use super::store::{DocKey, DocStore};
use crate::auth::TrustList;

/// How to run a GLMS.
#[derive(Clone)]
pub struct GlmsConfig {
    /// SIP (UDP) address of the notifier.
    pub sip: SocketAddr,
    /// XCAP HTTP address.
    pub xcap: SocketAddr,
    /// Directory of `glms.redb`.
    pub data: PathBuf,
    /// Digest realm and the domain of the service identity `sip:im-server@<domain>`.
    pub domain: String,
    /// Peers whose asserted identities count (the IM Server, an aggregation proxy, the core).
    pub trust: TrustList,
    /// Digest for XCAP clients; `false` is lab mode.
    pub auth: bool,
    /// The Digest credentials (shared with SIP when embedded).
    pub credentials: super::access::CredentialsSource,
}

/// The running GLMS. `shutdown` stops both servers.
pub struct Glms {
    xcap: Option<XcapServer>,
    sip: Option<GlmsSip>,
    xcap_root_url: String,
}

struct Docs(DocStore);

impl DocIndex for Docs {
    fn etag(&self, auid: &str, xui: &str, doc: &str) -> Option<String> {
        self.0
            .etag(&DocKey::user(auid, xui, doc))
            .ok()
            .flatten()
            .map(|e| e.as_str().to_owned())
    }
    fn list(&self, auid: &str, xui: &str) -> Vec<String> {
        self.0
            .list_user(auid, xui)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, _)| k.as_str().rsplit('/').next().map(str::to_owned))
            .collect()
    }
}

struct Subs(DocStore);

impl SubscriptionStore for Subs {
    fn put_subscription(&self, id: &str, bytes: &[u8]) -> std::io::Result<()> {
        self.0
            .put_subscription(id, bytes)
            .map_err(std::io::Error::other)
    }
    fn remove_subscription(&self, id: &str) -> std::io::Result<()> {
        self.0
            .remove_subscription(id)
            .map(drop)
            .map_err(std::io::Error::other)
    }
    fn subscriptions(&self) -> std::io::Result<Vec<(String, Vec<u8>)>> {
        self.0.subscriptions().map_err(std::io::Error::other)
    }
    fn apply_batch(&self, puts: &[(String, Vec<u8>)], removes: &[String]) -> std::io::Result<()> {
        self.0
            .apply_subscriptions(puts, removes)
            .map_err(std::io::Error::other)
    }
}

impl Glms {
    pub fn start(cfg: GlmsConfig) -> anyhow::Result<Self> {
        let store = DocStore::open(&cfg.data)?;
        // The XCAP server binds first (its port may be 0); the notifier needs its URL, and the
        // XCAP change hook needs the notifier's handle: the hook reads it from a cell.
        let handle: Arc<OnceLock<NotifierHandle>> = Arc::default();
        let hook = {
            let handle = handle.clone();
            Arc::new(move |ev: ChangeEvent| {
                if let Some(h) = handle.get()
                    && !h.changed(DocChangeEvent {
                        auid: ev.auid,
                        xui: ev.xui,
                        doc: ev.doc,
                        previous_etag: ev.previous_etag,
                        new_etag: ev.new_etag,
                        change: ev.change,
                    })
                {
                    tracing::warn!("notifier queue full: a change event was dropped");
                }
            })
        };
        let service = format!("sip:im-server@{}", cfg.domain);
        let xcap = XcapServer::start(
            XcapConfig {
                addr: cfg.xcap,
                data: store.clone().into(),
                realm: cfg.domain.clone(),
                trust: cfg.trust.clone(),
                service_identities: vec![service],
                auth: cfg.auth,
                credentials: cfg.credentials.clone(),
                limits: HttpLimits::default(),
            },
            hook,
        )?;
        let xcap_root_url = format!("http://{}{}", xcap.local_addr(), super::http::XCAP_ROOT);
        let sip = GlmsSip::start(
            GlmsSipConfig {
                addr: cfg.sip,
                trust: cfg.trust.clone(),
                notifier: NotifierConfig {
                    xcap_root_url: xcap_root_url.clone(),
                    service_identities: vec![format!("im-server@{}", cfg.domain)],
                    contact: String::new(),
                    // No waiting window: a change goes out at once, and a burst is still
                    // merged because a subscription has one NOTIFY in flight at a time and
                    // what arrives meanwhile goes out together with the next one (G4). A 2 ms
                    // window was most of the block-propagation median.
                    coalesce_ms: 0,
                    // One subscription per registered user: sized for millions of users.
                    max_subscriptions: 10_000_000,
                    ..NotifierConfig::default()
                },
            },
            Arc::new(Docs(store.clone())),
            Some(Arc::new(Subs(store))),
        )?;
        let _ = handle.set(sip.handle());
        tracing::info!(xcap = %xcap.local_addr(), sip = %sip.local_addr(), "GLMS ready");
        Ok(Self {
            xcap: Some(xcap),
            sip: Some(sip),
            xcap_root_url,
        })
    }

    pub fn xcap_addr(&self) -> SocketAddr {
        self.xcap
            .as_ref()
            .map_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)), |x| x.local_addr())
    }
    pub fn sip_addr(&self) -> SocketAddr {
        self.sip
            .as_ref()
            .map_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)), |s| s.local_addr())
    }
    /// `http://ADDR/xcap-root`.
    pub fn xcap_root_url(&self) -> &str {
        &self.xcap_root_url
    }

    pub fn shutdown(&mut self) {
        if let Some(x) = self.xcap.take() {
            x.shutdown();
        }
        if let Some(s) = self.sip.take() {
            s.shutdown();
        }
    }
}

impl Drop for Glms {
    fn drop(&mut self) {
        self.shutdown();
    }
}
