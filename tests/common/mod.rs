//! Helpers for end-to-end tests: start the real `imserver` binary on ephemeral loopback ports,
//! and speak SIP to it over UDP and TCP. Every wait is bounded.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const WAIT: Duration = Duration::from_secs(5);

/// A running `imserver run` child process; killed (by its own handle) on drop.
pub struct ServerProc {
    child: Child,
    pub sip: SocketAddr,
    pub metrics: SocketAddr,
    /// The embedded GLMS's XCAP address (absent with `--glms none`).
    pub xcap: Option<SocketAddr>,
    /// The embedded GLMS's notifier (SIP) address.
    pub glms: Option<SocketAddr>,
    pub data: tempfile::TempDir,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl ServerProc {
    pub fn start(extra: &[&str]) -> Self {
        let data = tempfile::tempdir().expect("tempdir");
        Self::start_with_data(extra, data)
    }

    pub fn start_with_data(extra: &[&str], data: tempfile::TempDir) -> Self {
        let mut args = vec![
            "run",
            "--sip",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--xcap",
            "127.0.0.1:0",
            "--workers",
            "2",
        ];
        args.extend_from_slice(extra);
        Self::spawn(&args, data, "imserver ready ")
    }

    /// A standalone GLMS (`imserver glms`) on ephemeral ports; `sip` is its notifier address,
    /// `xcap` its XCAP address.
    pub fn start_glms(extra: &[&str], data: tempfile::TempDir) -> Self {
        let mut args = vec!["glms", "--sip", "127.0.0.1:0", "--xcap", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Self::spawn(&args, data, "glms ready ")
    }

    /// A standalone GLMS on the addresses given in `extra` (e.g. a restart on the same ports).
    pub fn start_glms_at(extra: &[&str], data: tempfile::TempDir) -> Self {
        let mut args = vec!["glms"];
        args.extend_from_slice(extra);
        Self::spawn(&args, data, "glms ready ")
    }

    fn spawn(args: &[&str], data: tempfile::TempDir, ready: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_imserver"))
            .args(args)
            .arg("--data")
            .arg(data.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn imserver");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut s);
            s
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let (sip, metrics, xcap, glms) = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(ready) {
                        break parse_ready(rest);
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "imserver did not become ready: {}",
                        stderr.join().unwrap_or_default()
                    );
                }
            }
        };
        Self {
            child,
            sip,
            metrics,
            xcap,
            glms,
            data,
            stderr: Some(stderr),
        }
    }

    /// True while the process is running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops the process with SIGKILL and returns its data directory for a restart.
    pub fn kill(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut self.data, dir)
    }

    /// GET /metrics.
    pub fn metrics_text(&self) -> String {
        let mut c = TcpStream::connect(self.metrics).expect("metrics connect");
        c.set_read_timeout(Some(WAIT)).unwrap();
        write!(c, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).unwrap();
        s
    }

    /// The value of one metric line (exact name with labels), or 0.
    pub fn metric(&self, name_with_labels: &str) -> u64 {
        let text = self.metrics_text();
        text.lines()
            .find_map(|l| l.strip_prefix(name_with_labels)?.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking()
            && let Some(h) = self.stderr.take()
        {
            eprintln!("--- imserver stderr ---\n{}", h.join().unwrap_or_default());
        }
    }
}

fn parse_ready(
    rest: &str,
) -> (
    SocketAddr,
    SocketAddr,
    Option<SocketAddr>,
    Option<SocketAddr>,
) {
    let mut sip = None;
    let mut metrics = None;
    let mut xcap = None;
    let mut glms = None;
    for kv in rest.split_whitespace() {
        if let Some(v) = kv.strip_prefix("sip=") {
            sip = v.parse().ok();
        } else if let Some(v) = kv.strip_prefix("metrics=") {
            metrics = v.parse().ok();
        } else if let Some(v) = kv.strip_prefix("xcap=") {
            xcap = v.parse().ok();
        } else if let Some(v) = kv.strip_prefix("glms=") {
            glms = v.parse().ok();
        }
    }
    let sip = sip.expect("sip= in ready line");
    // A standalone GLMS has no metrics endpoint; `metrics` then repeats its SIP address.
    (sip, metrics.unwrap_or(sip), xcap, glms)
}

/// A UDP endpoint on loopback with a bounded receive.
pub struct Udp {
    pub sock: UdpSocket,
}

impl Udp {
    pub fn bind() -> Self {
        Self::bind_ip("127.0.0.1")
    }
    pub fn bind_ip(ip: &str) -> Self {
        let sock = UdpSocket::bind((ip, 0)).expect("bind udp");
        sock.set_read_timeout(Some(WAIT)).unwrap();
        Self { sock }
    }
    pub fn addr(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }
    pub fn send(&self, to: SocketAddr, msg: &[u8]) {
        self.sock.send_to(msg, to).expect("send_to");
    }
    /// Next datagram, or None after `WAIT`.
    pub fn recv(&self) -> Option<String> {
        self.recv_for(WAIT)
    }
    pub fn recv_for(&self, d: Duration) -> Option<String> {
        self.sock.set_read_timeout(Some(d)).unwrap();
        let mut buf = vec![0u8; 65_536];
        match self.sock.recv_from(&mut buf) {
            Ok((n, _)) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => None,
        }
    }
}

/// A TCP connection that reads whole SIP messages (framed by Content-Length).
pub struct Tcp {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Tcp {
    pub fn connect(to: SocketAddr) -> Self {
        let stream = TcpStream::connect_timeout(&to, WAIT).expect("tcp connect");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        Self {
            stream,
            buf: Vec::new(),
        }
    }
    /// Wraps an already connected stream (e.g. one bound to a chosen local address).
    pub fn from_stream(stream: TcpStream) -> Self {
        stream.set_read_timeout(Some(WAIT)).unwrap();
        Self {
            stream,
            buf: Vec::new(),
        }
    }
    pub fn addr(&self) -> SocketAddr {
        self.stream.local_addr().unwrap()
    }
    pub fn send(&mut self, msg: &[u8]) {
        self.stream.write_all(msg).expect("tcp write");
    }
    /// Next complete SIP message, or None at EOF or after `WAIT`.
    pub fn recv(&mut self) -> Option<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(n) = frame(&self.buf) {
                let msg: Vec<u8> = self.buf.drain(..n).collect();
                return Some(String::from_utf8_lossy(&msg).into_owned());
            }
            if Instant::now() > deadline {
                return None;
            }
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => return None,
            }
        }
    }
    /// True when the peer closed the connection within `WAIT`.
    pub fn closed(&mut self) -> bool {
        let mut chunk = [0u8; 1024];
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return false;
                }
                Err(_) => return true,
            }
        }
        false
    }
}

/// Length of the first complete message in `buf` (test-side framing, deliberately naive).
fn frame(buf: &[u8]) -> Option<usize> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let cl = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            let n = n.trim();
            (n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("l"))
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    (buf.len() >= head_end + cl).then_some(head_end + cl)
}

/// Status code of a response.
pub fn status(msg: &str) -> u16 {
    msg.strip_prefix("SIP/2.0 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// First value of a header (long name, case-insensitive), if any.
pub fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
}

/// Every value of a header (one per line).
pub fn headers<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.split("\r\n")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .collect()
}

/// A MESSAGE from `from` to `to`, sent by a peer whose socket is `via` (so responses come back
/// there), over `transport` ("UDP" or "TCP"); `pai` adds a P-Asserted-Identity.
pub fn message(
    to: &str,
    from: &str,
    pai: Option<&str>,
    via: SocketAddr,
    transport: &str,
    call_id: &str,
) -> Vec<u8> {
    let body = "Hello, this is a test message.";
    let pai = pai
        .map(|p| format!("P-Asserted-Identity: <{p}>\r\n"))
        .unwrap_or_default();
    format!(
        "MESSAGE {to} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {via};branch=z9hG4bK-{call_id};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <{from}>;tag=f-{call_id}\r\n\
         To: <{to}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 MESSAGE\r\n\
         {pai}\
         Content-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Builds a 200 OK for a request received by a test peer (the recipient's side).
pub fn ok_for(req: &str) -> Vec<u8> {
    let mut out = String::from("SIP/2.0 200 OK\r\n");
    for v in headers(req, "Via") {
        out.push_str(&format!("Via: {v}\r\n"));
    }
    for h in ["From", "Call-ID", "CSeq"] {
        if let Some(v) = header(req, h) {
            out.push_str(&format!("{h}: {v}\r\n"));
        }
    }
    if let Some(v) = header(req, "To") {
        out.push_str(&format!("To: {v};tag=rcpt\r\n"));
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out.into_bytes()
}

/// An XCAP request from Bob's client through the core's aggregation proxy: the trusted
/// 127.0.0.1 asserts Bob (`X-XCAP-Asserted-Identity`), then the `extra` headers.
pub fn as_bob(
    xcap: SocketAddr,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut headers = vec![("X-XCAP-Asserted-Identity", "\"sip:bob@example.com\"")];
    headers.extend_from_slice(extra);
    http(xcap, method, path, &headers, body)
}

/// One HTTP/1.1 exchange (Connection: close): (status, headers as "name: value" lines, body).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut c = TcpStream::connect_timeout(&addr, WAIT).expect("http connect");
    c.set_read_timeout(Some(WAIT)).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    c.write_all(req.as_bytes()).unwrap();
    c.write_all(body).unwrap();
    let mut resp = Vec::new();
    let _ = c.read_to_end(&mut resp);
    let end = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(resp.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&resp[..end]).into_owned();
    let code = head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, head, resp[end..].to_vec())
}

/// Waits (bounded by `WAIT`) until `metric` (exact name with labels) reaches `at_least`.
pub fn wait_metric(server: &ServerProc, metric: &str, at_least: u64) -> u64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = server.metric(metric);
        if v >= at_least || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The core's third-party REGISTER for Bob (seed steps 1-4).
pub fn register_bob(s: &ServerProc, core: &Udp, bob_ue: &Udp) {
    let reg = format!(
        "REGISTER sip:im.example.com SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bKreg{p};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:scscf@example.com>;tag=s1\r\nTo: <sip:bob@example.com>\r\nCall-ID: reg-{p}\r\n\
         CSeq: 1 REGISTER\r\nContact: <sip:bob@{ue}>;+g.oma.sip-im\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n",
        via = core.addr(),
        p = bob_ue.addr().port(),
        ue = bob_ue.addr()
    );
    core.send(s.sip, reg.as_bytes());
    assert_eq!(
        core.recv().map(|r| status(&r)),
        Some(200),
        "the IM Server accepts Bob's registration"
    );
}

/// Tom's MESSAGE through the core; returns the final status Tom sees and whether Bob got it.
pub fn tom_says(s: &ServerProc, core: &Udp, bob_ue: &Udp, from: &str, n: u32) -> (u16, bool) {
    core.send(
        s.sip,
        &message(
            "sip:bob@example.com",
            from,
            Some(from),
            core.addr(),
            "UDP",
            &format!("m{n}-{}", core.addr().port()),
        ),
    );
    if let Some(m) = bob_ue.recv_for(Duration::from_millis(500)) {
        bob_ue.send(s.sip, &ok_for(&m));
        return (core.recv().map_or(0, |r| status(&r)), true);
    }
    (core.recv().map_or(0, |r| status(&r)), false)
}
