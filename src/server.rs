//! Wires the subsystems into one running server: the policy table, the transports with one
//! fast path per worker, the slow path thread, and the metrics endpoint.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::auth::trust::TrustList;
use crate::config::Config;
use crate::fastpath::{FastPath, Shared};
use crate::metrics::{Metrics, MetricsServer};
use crate::policy::PolicyTable;
use crate::registrar::RegistrarConfig;
use crate::settings::SettingsConfig;
use crate::sip::validate::Limits;
use crate::slowpath::{SlowConfig, SlowPath, slow_queue};
use crate::transport::{self, TransportConfig, Transports};

/// A running server. `shutdown` stops it; dropping it does too.
pub struct Server {
    transports: Option<Transports>,
    slow: SlowPath,
    metrics_server: MetricsServer,
    glms: Option<crate::glms::runner::Glms>,
    policy: Arc<PolicyTable>,
    metrics: Arc<Metrics>,
    sip_addr: SocketAddr,
}

fn trust_list(cfg: &Config) -> Result<TrustList> {
    let mut list = TrustList::new();
    for t in &cfg.trust {
        list.push(crate::auth::trust::parse(t).with_context(|| format!("--trust {t}"))?);
    }
    Ok(list)
}

fn random_u64() -> u64 {
    rand::random()
}

impl Server {
    pub fn start(cfg: Config) -> Result<Self> {
        cfg.validate()?;
        if cfg.udp_uring && !cfg!(feature = "uring") {
            tracing::warn!("udp_uring is set but this build has no `uring` feature: using mio");
        }
        let workers = cfg.worker_count();
        let trust = trust_list(&cfg)?;
        let metrics = Arc::new(Metrics::new(workers + 1));
        let policy = Arc::new(match &cfg.policy_file {
            Some(path) => {
                let t = crate::policyfile::load(path)?;
                tracing::info!(users = t.len(), file = %path.display(), "static policy loaded");
                t
            }
            None => PolicyTable::new(),
        });
        let (slow_tx, slow_rx) = slow_queue(cfg.slow_queue);
        let limits = Limits {
            max_udp_len: cfg.max_udp_bytes,
            max_tcp_len: cfg.max_tcp_bytes,
        };
        let secret = random_u64();
        if !cfg.auth {
            tracing::warn!(
                "AUTHENTICATION IS OFF (--auth off): any peer can register, publish and send as anyone. Lab use only."
            );
        }
        let gate = crate::gate::Gate::new(cfg.auth, &cfg.domain, crate::auth::Credentials::new())?;
        let tcfg = TransportConfig {
            sip_addr: cfg.sip,
            workers,
            udp_batch: cfg.udp_batch,
            max_tcp_conns_per_worker: cfg.tcp_max_conns_per_worker,
            tcp_buf_max: cfg.max_tcp_bytes,
            tcp_idle_s: cfg.tcp_idle_s,
            so_rcvbuf: cfg.so_rcvbuf_bytes,
            so_sndbuf: cfg.so_sndbuf_bytes,
            spread_single_source: cfg.spread_single_source,
            udp_send_socket: cfg.udp_send_socket,
            udp_uring: cfg.udp_uring,
            ..TransportConfig::default()
        };
        // The port is known only after binding (port 0 in tests), and the fast path writes it
        // in its Via: the factory reads it from a cell set before the first message can arrive.
        let own: Arc<std::sync::OnceLock<(String, u16)>> = Arc::default();
        let shared_cell: Arc<std::sync::OnceLock<Arc<Shared>>> = Arc::default();
        let make_shared = {
            let (policy, metrics, slow_tx, trust, own, gate) = (
                policy.clone(),
                metrics.clone(),
                slow_tx.clone(),
                trust.clone(),
                own.clone(),
                gate.clone(),
            );
            let block = cfg.block_code;
            let retry_after = cfg.retry_after_s.to_string();
            let route = cfg
                .outbound_proxy
                .as_ref()
                .map(|p| format!("<{p};lr>").into_bytes());
            move || {
                let (own_host, own_port) = own
                    .get()
                    .cloned()
                    .unwrap_or_else(|| ("127.0.0.1".into(), 5060));
                Arc::new(Shared {
                    policy: policy.clone(),
                    metrics: metrics.clone(),
                    slow: slow_tx.clone(),
                    trust: trust.clone(),
                    limits,
                    secret,
                    own_host,
                    own_port,
                    block,
                    retry_after: retry_after.clone(),
                    route: route.clone(),
                    gate: gate.clone(),
                })
            }
        };
        let factory = {
            let shared_cell = shared_cell.clone();
            move |id: transport::WorkerId| {
                let shared = shared_cell.get_or_init(&make_shared).clone();
                FastPath::new(shared, usize::from(id.0))
            }
        };
        // Bind first to learn the port, then publish our Via host before workers build their
        // handlers: `start` binds all sockets before spawning workers, and handlers are built
        // inside the worker threads, so the cell is set in between by `on_bound`.
        let transports = transport::start_with(tcfg, factory, {
            let own = own.clone();
            let advertise = cfg.advertise.clone();
            move |addr: SocketAddr| {
                let host = advertise.clone().unwrap_or_else(|| addr.ip().to_string());
                let _ = own.set((host, addr.port()));
            }
        })
        .with_context(|| format!("binding SIP on {}", cfg.sip))?;
        let sip_addr = transports.local_addr();
        std::fs::create_dir_all(&cfg.data)
            .with_context(|| format!("creating data directory {}", cfg.data.display()))?;
        let (glms, glms_link) = start_glms(&cfg, &trust, sip_addr, &gate)?;
        let stats = transports.stats();
        metrics.add_section(Box::new(move |s| {
            crate::transport_metrics::render(&stats, s)
        }));
        {
            let q = slow_tx.clone();
            metrics.add_gauge(
                "imserver_slow_queue_depth",
                "Jobs waiting for the slow path",
                Box::new(move || q.depth() as u64),
            );
            let cap = slow_tx.capacity() as u64;
            metrics.add_gauge(
                "imserver_slow_queue_capacity",
                "Bound of the slow-path queue",
                Box::new(move || cap),
            );
            let p = policy.clone();
            metrics.add_gauge(
                "imserver_policy_users",
                "Users in the policy snapshot",
                Box::new(move || p.len() as u64),
            );
        }
        let slow = SlowPath::start(
            SlowConfig {
                secret,
                trust,
                limits,
                registrar: RegistrarConfig::default(),
                settings: SettingsConfig::default(),
                gate,
                data: cfg.data.clone(),
                glms: glms_link,
                domain: cfg.domain.clone(),
                own_host: own
                    .get()
                    .map_or_else(|| sip_addr.ip().to_string(), |(h, _)| h.clone()),
                own_port: sip_addr.port(),
            },
            slow_tx.clone(),
            slow_rx,
            transports.handle(),
            policy.clone(),
            metrics.clone(),
        )?;
        let metrics_server = MetricsServer::start(cfg.metrics, metrics.clone())
            .with_context(|| format!("binding metrics on {}", cfg.metrics))?;
        Ok(Self {
            transports: Some(transports),
            slow,
            metrics_server,
            policy,
            metrics,
            sip_addr,
            glms,
        })
    }

    pub fn sip_addr(&self) -> SocketAddr {
        self.sip_addr
    }
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_server.local_addr()
    }
    /// The embedded GLMS's XCAP address, when one runs.
    pub fn xcap_addr(&self) -> Option<SocketAddr> {
        self.glms.as_ref().map(|g| g.xcap_addr())
    }
    /// The embedded GLMS's notifier (SIP) address, when one runs.
    pub fn glms_sip_addr(&self) -> Option<SocketAddr> {
        self.glms.as_ref().map(|g| g.sip_addr())
    }
    /// The fast path's policy snapshots (tests and embedding code may publish into it).
    pub fn policy(&self) -> &Arc<PolicyTable> {
        &self.policy
    }
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(t) = self.transports.take() {
            t.shutdown();
        }
        self.slow.shutdown();
        if let Some(mut g) = self.glms.take() {
            g.shutdown();
        }
        self.metrics_server.stop();
    }
}

/// Starts the embedded GLMS, or describes the standalone one (SPEC D4), per `cfg.glms`.
fn start_glms(
    cfg: &Config,
    trust: &TrustList,
    sip_addr: SocketAddr,
    gate: &Arc<crate::gate::Gate>,
) -> Result<(
    Option<crate::glms::runner::Glms>,
    Option<crate::slowpath::GlmsLink>,
)> {
    use crate::config::GlmsMode;
    match cfg.glms_mode()? {
        GlmsMode::None => Ok((None, None)),
        GlmsMode::Remote { sip, xcap_root_url } => {
            Ok((None, Some(crate::slowpath::GlmsLink { sip, xcap_root_url })))
        }
        GlmsMode::Embedded => {
            // The embedded GLMS trusts the IM Server's own address (its SUBSCRIBEs and XCAP
            // fetches assert sip:im-server@<domain>) besides the configured core.
            let mut glms_trust = trust.clone();
            let own = if sip_addr.is_ipv4() { "/32" } else { "/128" };
            glms_trust.push(crate::auth::trust::parse(&format!(
                "{}{own}",
                sip_addr.ip()
            ))?);
            let creds = gate.clone();
            let g = crate::glms::runner::Glms::start(crate::glms::runner::GlmsConfig {
                sip: cfg.glms_sip,
                xcap: cfg.xcap,
                data: cfg.data.clone(),
                domain: cfg.domain.clone(),
                trust: glms_trust,
                auth: cfg.auth,
                credentials: Arc::new(move || creds.creds.load_full()),
            })
            .with_context(|| format!("starting the embedded GLMS (XCAP on {})", cfg.xcap))?;
            let link = crate::slowpath::GlmsLink {
                sip: g.sip_addr(),
                xcap_root_url: g.xcap_root_url().to_owned(),
            };
            Ok((Some(g), Some(link)))
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
