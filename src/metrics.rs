//! Counters and the Prometheus text endpoint.
//!
//! Each fast-path worker owns one cache-line-aligned block of counters and is its only writer
//! (relaxed atomics, no sharing on the hot path); a scrape sums the blocks. Gauges (queue depths)
//! are closures read at scrape time. The HTTP side is a tiny blocking listener on its own thread:
//! one request per connection, with read/write timeouts, so a slow scraper cannot pile up work.
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Methods counted by name; anything else is `other`.
pub const METHODS: [&str; 15] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "REGISTER",
    "OPTIONS",
    "MESSAGE",
    "PUBLISH",
    "SUBSCRIBE",
    "NOTIFY",
    "INFO",
    "PRACK",
    "UPDATE",
    "REFER",
    "other",
];

/// Status codes counted individually; anything else is counted under `other`.
pub const CODES: [u16; 31] = [
    100, 200, 202, 400, 401, 403, 404, 405, 406, 407, 408, 412, 413, 415, 416, 420, 423, 480, 481,
    482, 483, 486, 489, 500, 501, 503, 505, 513, 600, 603, 0,
];

/// Outcome of the fast path's MESSAGE decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Relayed,
    Blocked,
    Barred,
    Unavailable,
    Pending,
    Unknown,
}

impl Decision {
    const ALL: [(Decision, &'static str); 6] = [
        (Decision::Relayed, "relayed"),
        (Decision::Blocked, "blocked"),
        (Decision::Barred, "barred"),
        (Decision::Unavailable, "unavailable"),
        (Decision::Pending, "pending"),
        (Decision::Unknown, "unknown"),
    ];
}

/// Why a message was dropped without an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Unparsable and no response could be routed.
    Malformed,
    /// A response whose top Via is not ours.
    ResponseNotOurs,
    /// A response whose next hop cannot be reached statelessly (no IP literal).
    ResponseUnroutable,
    /// The slow path's queue was full (the request was answered 503).
    SlowQueueFull,
    /// A transport-level send failed.
    SendFailed,
}

impl DropReason {
    const ALL: [(DropReason, &'static str); 5] = [
        (DropReason::Malformed, "malformed"),
        (DropReason::ResponseNotOurs, "response_not_ours"),
        (DropReason::ResponseUnroutable, "response_unroutable"),
        (DropReason::SlowQueueFull, "slow_queue_full"),
        (DropReason::SendFailed, "send_failed"),
    ];
}

/// Index of a method name in [`METHODS`].
pub fn method_index(name: &[u8]) -> usize {
    METHODS[..METHODS.len() - 1]
        .iter()
        .position(|m| m.as_bytes() == name)
        .unwrap_or(METHODS.len() - 1)
}

fn code_index(code: u16) -> usize {
    CODES
        .iter()
        .position(|&c| c == code)
        .unwrap_or(CODES.len() - 1)
}

/// One worker's counters; aligned so two workers never share a cache line.
#[repr(align(128))]
pub struct WorkerCounters {
    requests: [AtomicU64; METHODS.len()],
    sent: [AtomicU64; CODES.len()],
    relayed_responses: [AtomicU64; CODES.len()],
    decisions: [AtomicU64; Decision::ALL.len()],
    drops: [AtomicU64; DropReason::ALL.len()],
}

impl WorkerCounters {
    fn new() -> Self {
        Self {
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            sent: std::array::from_fn(|_| AtomicU64::new(0)),
            relayed_responses: std::array::from_fn(|_| AtomicU64::new(0)),
            decisions: std::array::from_fn(|_| AtomicU64::new(0)),
            drops: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
    #[inline]
    pub fn request(&self, method: &[u8]) {
        bump(&self.requests[method_index(method)]);
    }
    #[inline]
    pub fn sent(&self, code: u16) {
        bump(&self.sent[code_index(code)]);
    }
    #[inline]
    pub fn relayed_response(&self, code: u16) {
        bump(&self.relayed_responses[code_index(code)]);
    }
    #[inline]
    pub fn decision(&self, d: Decision) {
        bump(&self.decisions[d as usize]);
    }
    #[inline]
    pub fn dropped(&self, r: DropReason) {
        bump(&self.drops[r as usize]);
    }
}

#[inline]
fn bump(c: &AtomicU64) {
    // A single writer per block: a relaxed load+store is enough and avoids a locked add.
    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

type Gauge = Box<dyn Fn() -> u64 + Send + Sync>;
type Section = Box<dyn Fn(&mut String) + Send + Sync>;

/// All counters of one server.
pub struct Metrics {
    blocks: Box<[WorkerCounters]>,
    /// Compiled policies from the GLMS published into the snapshot (D2, D3).
    glms_policies: AtomicU64,
    /// SUBSCRIBEs sent to the GLMS (retransmissions included), and their final answers.
    glms_subscribes: [AtomicU64; 3],
    gauges: Mutex<Vec<(&'static str, &'static str, Gauge)>>,
    sections: Mutex<Vec<Section>>,
}

impl Metrics {
    /// `blocks`: one per fast-path worker plus one for the slow path (the last).
    pub fn new(blocks: usize) -> Self {
        Self {
            blocks: (0..blocks.max(1)).map(|_| WorkerCounters::new()).collect(),
            glms_policies: AtomicU64::new(0),
            glms_subscribes: std::array::from_fn(|_| AtomicU64::new(0)),
            gauges: Mutex::new(Vec::new()),
            sections: Mutex::new(Vec::new()),
        }
    }

    /// The counter block for writer `i` (clamped to the last block).
    pub fn block(&self, i: usize) -> &WorkerCounters {
        &self.blocks[i.min(self.blocks.len() - 1)]
    }

    /// The last block, reserved for the slow path.
    pub fn slow_block(&self) -> &WorkerCounters {
        &self.blocks[self.blocks.len() - 1]
    }

    /// A SUBSCRIBE to the GLMS was sent (0), answered 2xx (1), or refused (2).
    pub fn glms_subscribe(&self, what: usize) {
        if let Some(c) = self.glms_subscribes.get(what) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A compiled policy from the GLMS took effect.
    pub fn glms_policy_applied(&self) {
        self.glms_policies.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add_gauge(&self, name: &'static str, help: &'static str, f: Gauge) {
        lock(&self.gauges).push((name, help, f));
    }

    /// A renderer for another subsystem's metrics (e.g. the transport's counters).
    pub fn add_section(&self, f: Section) {
        lock(&self.sections).push(f);
    }

    fn sum<const N: usize>(&self, pick: impl Fn(&WorkerCounters) -> &[AtomicU64; N]) -> [u64; N] {
        let mut out = [0u64; N];
        for b in self.blocks.iter() {
            for (o, c) in out.iter_mut().zip(pick(b)) {
                *o += c.load(Ordering::Relaxed);
            }
        }
        out
    }

    /// Total of the decision counter `d` over all workers.
    pub fn decisions(&self, d: Decision) -> u64 {
        self.sum(|b| &b.decisions)[d as usize]
    }

    /// Total of responses sent with `code`.
    pub fn sent(&self, code: u16) -> u64 {
        self.sum(|b| &b.sent)[code_index(code)]
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(8192);
        let requests = self.sum(|b| &b.requests);
        header(
            &mut s,
            "imserver_requests_received_total",
            "SIP requests received, by method",
            "counter",
        );
        for (m, v) in METHODS.iter().zip(requests) {
            let _ = writeln!(s, "imserver_requests_received_total{{method=\"{m}\"}} {v}");
        }
        for (name, help, pick) in [
            (
                "imserver_responses_sent_total",
                "SIP responses generated by this server, by code",
                0,
            ),
            (
                "imserver_responses_relayed_total",
                "SIP responses relayed back to the sender, by code",
                1,
            ),
        ] {
            let vals = if pick == 0 {
                self.sum(|b| &b.sent)
            } else {
                self.sum(|b| &b.relayed_responses)
            };
            header(&mut s, name, help, "counter");
            for (c, v) in CODES.iter().zip(vals) {
                if *c == 0 {
                    let _ = writeln!(s, "{name}{{code=\"other\"}} {v}");
                } else {
                    let _ = writeln!(s, "{name}{{code=\"{c}\"}} {v}");
                }
            }
        }
        let decisions = self.sum(|b| &b.decisions);
        header(
            &mut s,
            "imserver_fastpath_decisions_total",
            "MESSAGE decisions on the fast path",
            "counter",
        );
        for ((_, n), v) in Decision::ALL.iter().zip(decisions) {
            let _ = writeln!(
                s,
                "imserver_fastpath_decisions_total{{decision=\"{n}\"}} {v}"
            );
        }
        let drops = self.sum(|b| &b.drops);
        header(
            &mut s,
            "imserver_drops_total",
            "Messages dropped without an answer, by reason",
            "counter",
        );
        for ((_, n), v) in DropReason::ALL.iter().zip(drops) {
            let _ = writeln!(s, "imserver_drops_total{{reason=\"{n}\"}} {v}");
        }
        header(
            &mut s,
            "imserver_glms_policies_applied_total",
            "Compiled blocked-list policies from the GLMS published to the fast path",
            "counter",
        );
        let _ = writeln!(
            s,
            "imserver_glms_policies_applied_total {}",
            self.glms_policies.load(Ordering::Relaxed)
        );
        header(
            &mut s,
            "imserver_glms_subscribes_total",
            "SUBSCRIBEs sent to the GLMS (retransmissions included) and their final answers",
            "counter",
        );
        for (i, what) in ["sent", "accepted", "refused"].iter().enumerate() {
            let _ = writeln!(
                s,
                "imserver_glms_subscribes_total{{event=\"{what}\"}} {}",
                self.glms_subscribes[i].load(Ordering::Relaxed)
            );
        }
        for (name, help, f) in lock(&self.gauges).iter() {
            header(&mut s, name, help, "gauge");
            let _ = writeln!(s, "{name} {}", f());
        }
        for f in lock(&self.sections).iter() {
            f(&mut s);
        }
        s
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes the `# HELP` and `# TYPE` lines of one metric family.
pub fn header(s: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The `/metrics` HTTP endpoint. Dropping it does not stop the thread; call `stop`.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MetricsServer {
    pub fn start(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || serve(listener, &metrics, &stop2))?;
        Ok(Self {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(listener: TcpListener, metrics: &Metrics, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut conn, _)) => {
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
                let mut req = [0u8; 2048];
                let n = read_head(&mut conn, &mut req);
                let line = req[..n]
                    .split(|&b| b == b'\r' || b == b'\n')
                    .next()
                    .unwrap_or(&[]);
                let (status, body) =
                    if line.starts_with(b"GET /metrics ") || line == b"GET /metrics" {
                        ("200 OK", metrics.render())
                    } else if line.starts_with(b"GET ") {
                        ("404 Not Found", "not found: try /metrics\n".to_owned())
                    } else {
                        ("405 Method Not Allowed", "only GET /metrics\n".to_owned())
                    };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes());
                let _ = conn.write_all(body.as_bytes());
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Reads a request head into `buf` until its blank line, the end of `buf`, EOF or the read
/// timeout; returns the bytes read. A client may send the request in pieces (one write for
/// the method, one for the path): answering after the first piece would answer the wrong
/// request, and closing with the rest unread resets the connection under the response.
fn read_head(conn: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match conn.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => {
                n += k;
                let head = &buf[..n];
                if head.windows(4).any(|w| w == b"\r\n\r\n")
                    || head.windows(2).any(|w| w == b"\n\n")
                {
                    break;
                }
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_sum_over_workers_and_render() {
        let m = Metrics::new(3);
        m.block(0).request(b"MESSAGE");
        m.block(1).request(b"MESSAGE");
        m.block(1).request(b"FOO");
        m.block(0).sent(603);
        m.block(2).sent(799);
        m.block(0).decision(Decision::Blocked);
        m.block(1).dropped(DropReason::Malformed);
        m.add_gauge("imserver_test_depth", "a test gauge", Box::new(|| 7));
        let text = m.render();
        assert!(text.contains("imserver_requests_received_total{method=\"MESSAGE\"} 2"));
        assert!(text.contains("imserver_requests_received_total{method=\"other\"} 1"));
        assert!(text.contains("imserver_responses_sent_total{code=\"603\"} 1"));
        assert!(text.contains("imserver_responses_sent_total{code=\"other\"} 1"));
        assert!(text.contains("imserver_fastpath_decisions_total{decision=\"blocked\"} 1"));
        assert!(text.contains("imserver_drops_total{reason=\"malformed\"} 1"));
        assert!(text.contains("imserver_test_depth 7"));
        assert_eq!(m.decisions(Decision::Blocked), 1);
        assert_eq!(m.sent(603), 1);
    }

    #[test]
    fn http_endpoint_serves_metrics_and_404s_elsewhere() {
        let m = Arc::new(Metrics::new(1));
        m.block(0).request(b"OPTIONS");
        let mut srv = MetricsServer::start("127.0.0.1:0".parse().unwrap(), m).unwrap();
        let get = |path: &str| {
            let mut c = std::net::TcpStream::connect(srv.local_addr()).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut s = String::new();
            c.read_to_string(&mut s).unwrap();
            s
        };
        let ok = get("/metrics");
        assert!(ok.starts_with("HTTP/1.1 200 OK"));
        assert!(ok.contains("imserver_requests_received_total{method=\"OPTIONS\"} 1"));
        assert!(get("/nope").starts_with("HTTP/1.1 404"));
        // A request sent in pieces, with a pause between them, is answered as a whole.
        let mut c = std::net::TcpStream::connect(srv.local_addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"GET ").unwrap();
        std::thread::sleep(Duration::from_millis(200));
        c.write_all(b"/metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).unwrap();
        assert!(s.starts_with("HTTP/1.1 200 OK"), "{s}");
        srv.stop();
    }
}
