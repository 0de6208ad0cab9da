//! The GLMS's XCAP server: HTTP/1.1 (hyper 1) on a small tokio runtime, in front of the
//! sans-IO XCAP core, the access rules and the durable store (SPEC G1-G3, RFC 4825).
//!
//! ```text
//!  accept (max connections; over it: 503 and close)
//!    -> hyper http1 (header size and header-read timeout)
//!    -> handler: method (405) -> URI (400/404) -> access (401/403) -> body (413/408)
//!         GET           -> store snapshot -> preconditions (412/304) -> core.get -> 200 + ETag
//!         PUT / DELETE  -> writer queue (full: 503) -> writer thread:
//!                          preconditions -> core -> commit (fsync) -> change hook -> reply
//!                       -> 200/201 + ETag, or 409 (xcap-error+xml) / 412 / 404 / 415 / 413
//! ```
//!
//! Threads: the runtime's workers (at most 2) parse HTTP and serve reads from MVCC snapshots;
//! one writer thread ([`writer`]) owns every write, so per-document (indeed per-store)
//! serialisation and group commit come for free. [`XcapServer::shutdown`] (or drop) stops
//! accepting, cancels in-flight connections, lets the writer finish the batch it holds and
//! joins it.
#![forbid(unsafe_code)]

mod handler;
mod writer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::access::{Access, AccessConfig, CredentialsSource};
use super::store::{DocStore, StoreError};
use super::xcap::{Change, XcapCore};
use crate::auth::TrustList;

/// The XCAP root path (SPEC G1).
pub const XCAP_ROOT: &str = "/xcap-root";

/// One committed change, handed to the hook after the commit and before the response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeEvent {
    pub auid: String,
    /// The XUI (`sip:bob@example.com`); empty for a `global/` document.
    pub xui: String,
    /// Document name (`index`).
    pub doc: String,
    /// The document selector relative to the XCAP root (xcap-diff `sel`), also the store key.
    pub sel: String,
    /// ETags unquoted, as xcap-diff carries them. `previous_etag` is `None` on creation.
    pub previous_etag: Option<String>,
    /// `None` when the document was deleted.
    pub new_etag: Option<String>,
    pub change: Change,
}

/// Called once per successful change, on the writer thread: keep it short (queue the work).
pub type ChangeHook = Arc<dyn Fn(ChangeEvent) + Send + Sync>;

/// A hook that does nothing.
pub fn no_hook() -> ChangeHook {
    Arc::new(|_| {})
}

/// Where the documents live.
pub enum Data {
    /// An open store (shared with the notifier and the IM Server).
    Store(DocStore),
    /// A data directory; the server opens `glms.redb` in it.
    Dir(PathBuf),
}

impl From<DocStore> for Data {
    fn from(s: DocStore) -> Self {
        Data::Store(s)
    }
}

impl From<PathBuf> for Data {
    fn from(p: PathBuf) -> Self {
        Data::Dir(p)
    }
}

/// Bounds (STYLE 6).
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// Open connections; past it a new one gets 503 and is closed.
    pub max_connections: usize,
    /// Request line plus headers (hyper enforces at least 8 KiB).
    pub max_header_bytes: usize,
    /// Request body; larger gets 413.
    pub max_body_bytes: usize,
    /// Reading a request's headers, reading its body, and waiting for the writer: each bounded
    /// by this.
    pub request_timeout_ms: u64,
    /// PUT/DELETE waiting for the writer; past it 503.
    pub write_queue: usize,
    /// Runtime worker threads (1 or 2).
    pub worker_threads: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: 1024,
            max_header_bytes: 16 * 1024,
            max_body_bytes: 1 << 20,
            request_timeout_ms: 10_000,
            write_queue: 1024,
            worker_threads: 2,
        }
    }
}

/// Everything the server needs.
pub struct XcapConfig {
    pub addr: SocketAddr,
    pub data: Data,
    /// Digest realm.
    pub realm: String,
    /// Peers whose `X-XCAP-Asserted-Identity` counts.
    pub trust: TrustList,
    /// Identities that may read every user's documents (`sip:im-server@<domain>`).
    pub service_identities: Vec<String>,
    /// `false`: lab mode (assertions from anywhere; anonymous refused 403).
    pub auth: bool,
    /// The same Digest credentials as SIP.
    pub credentials: CredentialsSource,
    pub limits: HttpLimits,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("bind {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
    #[error("access: {0}")]
    Access(&'static str),
}

/// Counters for the metrics endpoint.
#[derive(Debug, Default)]
pub struct HttpStats {
    pub requests: AtomicU64,
    pub refused_auth: AtomicU64,
    pub overload: AtomicU64,
    pub writes_committed: AtomicU64,
}

/// A running XCAP server.
pub struct XcapServer {
    local_addr: SocketAddr,
    store: DocStore,
    stats: Arc<HttpStats>,
    stop: Option<watch::Sender<bool>>,
    runtime: Option<tokio::runtime::Runtime>,
    writer: Option<JoinHandle<()>>,
}

impl XcapServer {
    /// Binds, starts the runtime and the writer, and returns once the socket listens.
    pub fn start(cfg: XcapConfig, hook: ChangeHook) -> Result<XcapServer, ServerError> {
        let store = match cfg.data {
            Data::Store(s) => s,
            Data::Dir(d) => DocStore::open(&d)?,
        };
        let limits = cfg.limits;
        let access = Access::new(AccessConfig {
            realm: cfg.realm,
            trust: cfg.trust,
            service_identities: cfg.service_identities,
            auth: cfg.auth,
            credentials: cfg.credentials,
        })
        .map_err(ServerError::Access)?;
        let mut core = XcapCore::new();
        core.limits.max_bytes = core.limits.max_bytes.min(limits.max_body_bytes);
        let stats = Arc::new(HttpStats::default());
        let counting_hook: ChangeHook = {
            let stats = Arc::clone(&stats);
            Arc::new(move |ev| {
                stats.writes_committed.fetch_add(1, Ordering::Relaxed);
                hook(ev);
            })
        };
        let (writes, writer) = writer::spawn(
            store.clone(),
            core.clone(),
            counting_hook,
            limits.write_queue,
        )
        .map_err(ServerError::Runtime)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(limits.worker_threads.clamp(1, 2))
            .max_blocking_threads(2)
            .thread_name("glms-http")
            .enable_io()
            .enable_time()
            .build()
            .map_err(ServerError::Runtime)?;
        let std_listener =
            std::net::TcpListener::bind(cfg.addr).map_err(|e| ServerError::Bind(cfg.addr, e))?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| ServerError::Bind(cfg.addr, e))?;
        let local_addr = std_listener
            .local_addr()
            .map_err(|e| ServerError::Bind(cfg.addr, e))?;
        let listener = {
            let _guard = runtime.enter();
            TcpListener::from_std(std_listener).map_err(|e| ServerError::Bind(cfg.addr, e))?
        };
        let state = Arc::new(handler::State {
            core,
            store: store.clone(),
            access,
            writes,
            limits,
            stats: Arc::clone(&stats),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        runtime.spawn(accept_loop(listener, state, stop_rx));
        tracing::info!(%local_addr, "glms xcap server listening");
        Ok(XcapServer {
            local_addr,
            store,
            stats,
            stop: Some(stop_tx),
            runtime: Some(runtime),
            writer: Some(writer),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The document store (for the notifier and the IM Server's reads).
    pub fn store(&self) -> &DocStore {
        &self.store
    }

    pub fn stats(&self) -> &HttpStats {
        &self.stats
    }

    /// Stops accepting, drops open connections, and waits for the writer to finish the batch
    /// it holds (every acknowledged write is already durable).
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(rt) = self.runtime.take() {
            // Tasks (and with them every handle on the writer queue) are dropped here. Inside
            // another runtime blocking is not allowed, so the tasks are left to end there.
            if tokio::runtime::Handle::try_current().is_ok() {
                rt.shutdown_background();
            } else {
                rt.shutdown_timeout(Duration::from_secs(2));
            }
        }
        if let Some(w) = self.writer.take()
            && w.join().is_err()
        {
            tracing::error!("glms writer thread panicked");
        }
    }
}

impl Drop for XcapServer {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Answer for a connection over the limit: a complete response, then close.
const OVERLOAD_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
Content-Length: 0\r\nConnection: close\r\n\r\n";

async fn accept_loop(
    listener: TcpListener,
    state: Arc<handler::State>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(state.limits.max_connections.max(1)));
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "glms accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            state.stats.overload.fetch_add(1, Ordering::Relaxed);
            let _ = stream.try_write(OVERLOAD_RESPONSE);
            continue;
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            handler::serve_connection(stream, peer, state).await;
            drop(permit);
        });
    }
}
