//! Server configuration: defaults, the TOML file given with `--config`, and command-line flags.
//!
//! Precedence: a flag given on the command line beats the TOML file, which beats the default.
//! Every limit the server enforces (STYLE principle 6) has a setting here.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// What a blocked MESSAGE is answered with (SPEC D1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockCode {
    /// `603 Decline`: the sender learns of the block (the default, per the seed).
    #[serde(rename = "603")]
    Decline,
    /// `403 Forbidden`.
    #[serde(rename = "403")]
    Forbidden,
    /// `202 Accepted` and the message is silently dropped ("polite blocking").
    #[serde(rename = "202")]
    SilentAccept,
}

impl BlockCode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "603" => Some(Self::Decline),
            "403" => Some(Self::Forbidden),
            "202" => Some(Self::SilentAccept),
            _ => None,
        }
    }
    pub fn status(self) -> (u16, &'static str) {
        match self {
            Self::Decline => (603, "Decline"),
            Self::Forbidden => (403, "Forbidden"),
            Self::SilentAccept => (202, "Accepted"),
        }
    }
}

/// The whole configuration. Field names are the TOML keys.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// SIP address, UDP and TCP.
    pub sip: SocketAddr,
    /// Prometheus `/metrics` address.
    pub metrics: SocketAddr,
    /// Directory for durable state.
    pub data: PathBuf,
    /// The domain this server serves; also the Digest realm and the host of its own identity.
    pub domain: String,
    /// Peers (CIDR or address) whose P-Asserted-Identity counts and who need no credentials (D7).
    pub trust: Vec<String>,
    /// Worker threads for the fast path; 0 means one per core.
    pub workers: usize,
    /// Response to a blocked MESSAGE: 603, 403 or 202 (D1).
    pub block_code: BlockCode,
    /// `Retry-After` seconds on 480 while a policy is pending (D6) and on 503 (overload).
    pub retry_after_s: u32,
    /// Largest UDP request accepted; larger gets 513 (D12).
    pub max_udp_bytes: usize,
    /// Largest TCP message accepted; larger gets 513 and the connection is closed (D12).
    pub max_tcp_bytes: usize,
    /// Bound of the queue from the fast path to the slow path; past it, 503 (D12).
    pub slow_queue: usize,
    /// TCP connections per worker.
    pub tcp_max_conns_per_worker: usize,
    /// Idle TCP connections are closed after this many seconds.
    pub tcp_idle_s: u64,
    /// Kernel socket buffers (best effort).
    pub so_rcvbuf_bytes: usize,
    pub so_sndbuf_bytes: usize,
    /// UDP datagrams per `recvmmsg`/`sendmmsg` batch.
    pub udp_batch: usize,
    /// Spread datagrams from one source over every worker (reuseport BPF).
    pub spread_single_source: bool,
    /// Send UDP from a second socket on the same address that no epoll set watches (saves the
    /// kernel a write-space wake-up per datagram; see src/transport/sockets.rs).
    pub udp_send_socket: bool,
    /// Host (or address) the server writes in its own Via; default: the SIP address's IP.
    pub advertise: Option<String>,
    /// Outbound proxy URI for relayed MESSAGEs (D10), written as a Route header.
    pub outbound_proxy: Option<String>,
    /// Digest authentication of untrusted peers (D7). `false` is for lab use only.
    pub auth: bool,
    /// Static blocked lists (loadgen's policy.jsonl) for labs and benchmarks without a GLMS.
    pub policy_file: Option<PathBuf>,
    /// Where blocked lists come from: `embedded` (a GLMS in this process), `none`, or
    /// `sip:HOST:PORT` (a standalone GLMS's notifier; then `glms_xcap` names its XCAP root).
    /// Unset: `embedded`, or `none` when a `policy_file` gives the lists.
    pub glms: Option<String>,
    /// XCAP root URL of a standalone GLMS, e.g. `http://127.0.0.1:8080/xcap-root`.
    pub glms_xcap: Option<String>,
    /// The embedded GLMS's XCAP (HTTP) address.
    pub xcap: SocketAddr,
    /// The embedded GLMS's notifier (SIP, UDP) address; port 0 picks a free one.
    pub glms_sip: SocketAddr,
    /// UDP over io_uring instead of mio (needs the `uring` cargo feature; falls back to mio
    /// when the kernel refuses). Off by default: see perf/README.md.
    pub udp_uring: bool,
}

/// Where the blocked lists come from (SPEC D3, D4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GlmsMode {
    None,
    Embedded,
    Remote {
        sip: SocketAddr,
        xcap_root_url: String,
    },
}

impl Default for Config {
    fn default() -> Self {
        Self {
            sip: SocketAddr::from(([127, 0, 0, 1], 5060)),
            metrics: SocketAddr::from(([127, 0, 0, 1], 9090)),
            data: PathBuf::from("./data"),
            domain: "localhost".to_owned(),
            trust: vec!["127.0.0.1/32".to_owned(), "::1/128".to_owned()],
            workers: 0,
            block_code: BlockCode::Decline,
            retry_after_s: 5,
            max_udp_bytes: 8 * 1024,
            max_tcp_bytes: 64 * 1024,
            slow_queue: 65_536,
            tcp_max_conns_per_worker: 16_384,
            tcp_idle_s: 120,
            so_rcvbuf_bytes: 4 << 20,
            so_sndbuf_bytes: 4 << 20,
            udp_batch: 32,
            spread_single_source: true,
            udp_send_socket: true,
            advertise: None,
            outbound_proxy: None,
            auth: true,
            policy_file: None,
            glms: None,
            glms_xcap: None,
            xcap: SocketAddr::from(([127, 0, 0, 1], 8080)),
            glms_sip: SocketAddr::from(([127, 0, 0, 1], 0)),
            udp_uring: false,
        }
    }
}

/// A configuration error, said in words a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid setting `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

impl Config {
    /// Reads a TOML file; absent keys keep their defaults, unknown keys are an error.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Worker count after resolving 0 to the number of cores.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            return self.workers;
        }
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    /// The GLMS mode `glms` and `glms_xcap` describe.
    pub fn glms_mode(&self) -> Result<GlmsMode, ConfigError> {
        let invalid = |message: &str| ConfigError::Invalid {
            key: "glms",
            message: message.to_owned(),
        };
        let mode = self
            .glms
            .as_deref()
            .unwrap_or(if self.policy_file.is_some() {
                "none"
            } else {
                "embedded"
            });
        if mode != "none" && self.policy_file.is_some() {
            // Both would write the same users' lists; the GLMS's (empty) documents would
            // silently replace the file's. Say so instead.
            return Err(invalid(
                "a policy file gives the blocked lists itself: use glms = none with it",
            ));
        }
        match mode {
            "none" => Ok(GlmsMode::None),
            "embedded" => Ok(GlmsMode::Embedded),
            other => {
                let addr = other
                    .strip_prefix("sip:")
                    .and_then(|a| a.parse::<SocketAddr>().ok())
                    .ok_or_else(|| invalid("must be embedded, none, or sip:IP:PORT"))?;
                let xcap = self.glms_xcap.clone().ok_or_else(|| {
                    invalid("a standalone GLMS also needs glms_xcap (its XCAP root URL)")
                })?;
                if !xcap.starts_with("http://") {
                    return Err(invalid("glms_xcap must be an http:// URL"));
                }
                Ok(GlmsMode::Remote {
                    sip: addr,
                    xcap_root_url: xcap.trim_end_matches('/').to_owned(),
                })
            }
        }
    }

    /// Checks cross-field constraints that serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| ConfigError::Invalid {
            key,
            message: message.to_owned(),
        };
        if self.domain.is_empty() || self.domain.contains(['@', ' ', ':', '/']) {
            return Err(invalid("domain", "must be a plain host name"));
        }
        if !(512..=65_535).contains(&self.max_udp_bytes) {
            return Err(invalid("max_udp_bytes", "must be 512..=65535"));
        }
        if !(1024..=16 << 20).contains(&self.max_tcp_bytes) {
            return Err(invalid("max_tcp_bytes", "must be 1024..=16777216"));
        }
        if self.slow_queue == 0 || self.slow_queue > 1 << 24 {
            return Err(invalid("slow_queue", "must be 1..=16777216"));
        }
        if self.udp_batch == 0 || self.udp_batch > 1024 {
            return Err(invalid("udp_batch", "must be 1..=1024"));
        }
        if self.tcp_max_conns_per_worker == 0 || self.tcp_max_conns_per_worker > 1 << 24 {
            return Err(invalid("tcp_max_conns_per_worker", "must be 1..=16777216"));
        }
        self.glms_mode()?;
        if self.workers > 1024 {
            return Err(invalid("workers", "must be at most 1024"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_loopback_and_valid() {
        let c = Config::default();
        assert!(c.sip.ip().is_loopback());
        assert!(c.metrics.ip().is_loopback());
        assert_eq!(c.block_code, BlockCode::Decline);
        c.validate().unwrap();
    }

    #[test]
    fn toml_overrides_and_keeps_defaults() {
        let c = Config::from_toml(
            "sip = \"127.0.0.1:5070\"\nblock_code = \"403\"\ntrust = [\"10.0.0.0/8\"]\n",
        )
        .unwrap();
        assert_eq!(c.sip.port(), 5070);
        assert_eq!(c.block_code, BlockCode::Forbidden);
        assert_eq!(c.trust, vec!["10.0.0.0/8".to_owned()]);
        assert_eq!(c.max_udp_bytes, 8192);
    }

    #[test]
    fn a_policy_file_means_no_glms_unless_one_is_asked_for() {
        let c = Config {
            policy_file: Some("p.jsonl".into()),
            ..Config::default()
        };
        assert_eq!(c.glms_mode().unwrap(), GlmsMode::None);
        assert_eq!(Config::default().glms_mode().unwrap(), GlmsMode::Embedded);
        let both = Config {
            glms: Some("embedded".into()),
            ..c
        };
        assert!(
            both.validate().is_err(),
            "the combination is refused with a reason"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        assert!(Config::from_toml("sipp = \"127.0.0.1:1\"").is_err());
        assert!(Config::from_toml("block_code = \"404\"").is_err());
        let c = Config {
            max_udp_bytes: 100,
            ..Config::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "max_udp_bytes",
                ..
            })
        ));
    }
}
