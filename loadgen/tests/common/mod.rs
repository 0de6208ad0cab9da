//! An in-test mock IM server on a loopback UDP socket, written apart from the generator's own
//! SIP code so the two cannot share a bug. It implements the server contract the generator
//! tests against: REGISTER binds To -> Contact; PUBLISH sets ISB; MESSAGE from the
//! P-Asserted-Identity sender gets 404 (unknown recipient), 603 (blocked or ISB), 480 (no
//! binding), or is relayed statelessly to the contact with the mock's Via on top; the contact's
//! response is relayed back after popping that Via.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use loadgen::dataset::Dataset;

/// How the mock misbehaves, if at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Behaves, but treats the generator as untrusted: Digest challenges (401 MD5 for REGISTER,
    /// 407 SHA-256 for MESSAGE/PUBLISH) and the sender is From, proven by the credentials.
    Untrusted,
    /// Relays MESSAGEs from blocked senders as if they were allowed.
    LeakBlocked,
}

pub struct MockServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    pub relayed: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

impl MockServer {
    pub fn start(dataset: Arc<Dataset>, fault: Fault) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind mock");
        // A debug-build mock is slow: a deep receive queue keeps bursts from being dropped.
        let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(4 << 20);
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let addr = socket.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let relayed = Arc::new(AtomicU64::new(0));
        let (thread_stop, thread_relayed) = (Arc::clone(&stop), Arc::clone(&relayed));
        let handle = std::thread::spawn(move || {
            let mut state = State {
                dataset,
                fault,
                addr,
                bindings: HashMap::new(),
                isb: HashMap::new(),
                relayed: thread_relayed,
            };
            let mut buf = vec![0u8; 65_536];
            let started = Instant::now();
            // Bounded: stop flag or two minutes.
            while !thread_stop.load(Ordering::Relaxed)
                && started.elapsed() < Duration::from_secs(120)
            {
                let Ok((n, source)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                for (bytes, dest) in state.handle(&text, source) {
                    let _ = socket.send_to(bytes.as_bytes(), dest);
                }
            }
        });
        Self {
            addr,
            stop,
            relayed,
            handle: Some(handle),
        }
    }
}

impl MockServer {
    /// The same contract over TCP: requests and their answers on the client's connection,
    /// relays on a connection the mock opens to the contact (RFC 3261 §18).
    pub fn start_tcp(dataset: Arc<Dataset>, fault: Fault) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind mock");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let relayed = Arc::new(AtomicU64::new(0));
        let (thread_stop, thread_relayed) = (Arc::clone(&stop), Arc::clone(&relayed));
        let handle = std::thread::spawn(move || {
            let mut state = State {
                dataset,
                fault,
                addr,
                bindings: HashMap::new(),
                isb: HashMap::new(),
                relayed: thread_relayed,
            };
            // Connections by peer address: accepted clients and the contacts we dialled.
            let mut conns: HashMap<SocketAddr, (TcpStream, Vec<u8>)> = HashMap::new();
            let started = Instant::now();
            let mut chunk = vec![0u8; 65_536];
            // Bounded: stop flag or two minutes.
            while !thread_stop.load(Ordering::Relaxed)
                && started.elapsed() < Duration::from_secs(120)
            {
                let mut idle = true;
                while let Ok((stream, peer)) = listener.accept() {
                    stream.set_nonblocking(true).expect("nonblocking");
                    conns.insert(peer, (stream, Vec::new()));
                }
                let mut outgoing = Vec::new();
                for (peer, (stream, buf)) in conns.iter_mut() {
                    if let Ok(n) = stream.read(&mut chunk) {
                        if n > 0 {
                            idle = false;
                            buf.extend_from_slice(&chunk[..n]);
                        }
                    }
                    while let Some(len) = framed_len(buf) {
                        let text = String::from_utf8_lossy(&buf[..len]).into_owned();
                        buf.drain(..len);
                        outgoing.extend(state.handle(&text, *peer));
                    }
                }
                for (bytes, dest) in outgoing {
                    let entry = match conns.entry(dest) {
                        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::hash_map::Entry::Vacant(v) => {
                            let Ok(stream) = TcpStream::connect(dest) else {
                                continue;
                            };
                            stream.set_nonblocking(true).expect("nonblocking");
                            v.insert((stream, Vec::new()))
                        }
                    };
                    write_all_retrying(&mut entry.0, bytes.as_bytes());
                }
                if idle {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        });
        Self {
            addr,
            stop,
            relayed,
            handle: Some(handle),
        }
    }
}

/// Length of the first whole message in `buf` (headers + Content-Length body).
fn framed_len(buf: &[u8]) -> Option<usize> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let length: usize = head
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| {
            n.trim().eq_ignore_ascii_case("content-length") || n.trim().eq_ignore_ascii_case("l")
        })
        .and_then(|(_, v)| v.trim().parse().ok())?;
    (buf.len() >= head_end + length).then_some(head_end + length)
}

fn write_all_retrying(stream: &mut TcpStream, mut bytes: &[u8]) {
    // Bounded: 10,000 attempts of at most 100 µs back-off.
    for _ in 0..10_000 {
        if bytes.is_empty() {
            return;
        }
        match stream.write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_micros(100))
            }
            Err(_) => return,
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

struct State {
    dataset: Arc<Dataset>,
    fault: Fault,
    addr: SocketAddr,
    bindings: HashMap<u32, SocketAddr>,
    isb: HashMap<u32, bool>,
    relayed: Arc<AtomicU64>,
}

struct Parsed<'a> {
    start: &'a str,
    headers: Vec<(&'a str, &'a str)>,
    body: &'a str,
}

fn parse(text: &str) -> Option<Parsed<'_>> {
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let start = lines.next()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim(), v.trim()))
        .collect();
    Some(Parsed {
        start,
        headers,
        body,
    })
}

impl Parsed<'_> {
    fn header(&self, long: &str, compact: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(long) || n.eq_ignore_ascii_case(compact))
            .map(|(_, v)| *v)
    }
}

/// `<sip:u12@example.com>;tag=x` -> 12.
fn user(value: &str) -> Option<u32> {
    let rest = &value[value.find("sip:u")? + 5..];
    rest[..rest.find('@')?].parse().ok()
}

/// `<sip:u1@127.0.0.1:4000;transport=udp>;+g.oma.sip-im` -> 127.0.0.1:4000.
fn contact_addr(value: &str) -> Option<SocketAddr> {
    let rest = &value[value.find('@')? + 1..];
    let end = rest.find([';', '>']).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The address in a Via value (`SIP/2.0/UDP host:port;...`), honouring rport/received.
fn via_addr(value: &str) -> Option<SocketAddr> {
    let mut parts = value.split(';');
    let sent_by = parts.next()?.split_whitespace().nth(1)?;
    let mut addr: SocketAddr = sent_by.parse().ok()?;
    for p in parts {
        if let Some(port) = p.trim().strip_prefix("rport=") {
            addr.set_port(port.parse().ok()?);
        }
        if let Some(ip) = p.trim().strip_prefix("received=") {
            addr.set_ip(ip.parse().ok()?);
        }
    }
    Some(addr)
}

fn response(req: &Parsed<'_>, code: u16, reason: &str, extra: &str) -> String {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for (name, value) in &req.headers {
        let keep = ["via", "v", "from", "f", "call-id", "i", "cseq"]
            .iter()
            .any(|k| name.eq_ignore_ascii_case(k));
        if keep {
            out.push_str(&format!("{name}: {value}\r\n"));
        } else if name.eq_ignore_ascii_case("to") || name.eq_ignore_ascii_case("t") {
            out.push_str(&format!("{name}: {value};tag=mock\r\n"));
        }
    }
    out.push_str(extra);
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

impl State {
    fn handle(&mut self, text: &str, source: SocketAddr) -> Vec<(String, SocketAddr)> {
        let Some(msg) = parse(text) else {
            return Vec::new();
        };
        if msg.start.starts_with("SIP/2.0 ") {
            return self.relay_response(text, &msg);
        }
        let method = msg.start.split(' ').next().unwrap_or("");
        if self.fault == Fault::Untrusted && method != "ACK" {
            if let Some(reply) = challenge_or_reject(&msg, method) {
                return vec![(reply, source)];
            }
        }
        let reply = match method {
            "REGISTER" => {
                let user = msg.header("To", "t").and_then(user);
                let contact = msg.header("Contact", "m").and_then(contact_addr);
                match (user, contact) {
                    (Some(u), Some(c)) if self.dataset.user(u).is_some() => {
                        self.bindings.insert(u, c);
                        response(&msg, 200, "OK", "Expires: 3600\r\n")
                    }
                    (Some(_), Some(_)) => response(&msg, 404, "Not Found", ""),
                    _ => response(&msg, 400, "Bad Request", ""),
                }
            }
            "PUBLISH" => {
                let Some(u) = self.sender(&msg) else {
                    return vec![(response(&msg, 403, "Forbidden", ""), source)];
                };
                self.isb.insert(u, msg.body.contains("active=\"true\""));
                response(&msg, 200, "OK", "SIP-ETag: e1\r\nExpires: 3600\r\n")
            }
            "MESSAGE" => return self.message(text, &msg, source),
            _ => response(&msg, 501, "Not Implemented", ""),
        };
        vec![(reply, source)]
    }

    fn message(
        &mut self,
        text: &str,
        msg: &Parsed<'_>,
        source: SocketAddr,
    ) -> Vec<(String, SocketAddr)> {
        let sender = self.sender(msg);
        let recipient = msg.header("To", "t").and_then(user);
        let (Some(sender), Some(recipient)) = (sender, recipient) else {
            return vec![(response(msg, 400, "Bad Request", ""), source)];
        };
        let Some(policy) = self.dataset.user(recipient) else {
            return vec![(response(msg, 404, "Not Found", ""), source)];
        };
        let blocked =
            self.isb.get(&recipient).copied().unwrap_or(false) || policy.blocked.contains(&sender);
        if blocked && self.fault != Fault::LeakBlocked {
            return vec![(response(msg, 603, "Decline", ""), source)];
        }
        let Some(&contact) = self.bindings.get(&recipient) else {
            return vec![(
                response(msg, 480, "Temporarily Unavailable", "Retry-After: 60\r\n"),
                source,
            )];
        };
        // Stateless relay (RFC 3261 §16.11): our Via on top, Request-URI to the contact.
        let (first_line, rest) = text.split_once("\r\n").unwrap_or((text, ""));
        let ruri = first_line.split(' ').nth(1).unwrap_or("");
        let new_first = first_line.replacen(ruri, &format!("sip:u{recipient}@{contact}"), 1);
        let relayed = format!(
            "{new_first}\r\nVia: SIP/2.0/UDP {};branch=z9hG4bKmock{}\r\n{rest}",
            self.addr,
            self.relayed.load(Ordering::Relaxed)
        );
        self.relayed.fetch_add(1, Ordering::Relaxed);
        vec![(relayed, contact)]
    }

    /// D7: PAI from a trusted peer; From (already proven by Digest) from an untrusted one.
    fn sender(&self, msg: &Parsed<'_>) -> Option<u32> {
        if self.fault == Fault::Untrusted {
            msg.header("From", "f").and_then(user)
        } else {
            msg.header("P-Asserted-Identity", "").and_then(user)
        }
    }

    fn relay_response(&self, text: &str, msg: &Parsed<'_>) -> Vec<(String, SocketAddr)> {
        // Pop our Via (the first), send to the next one.
        let mut vias = msg
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("via") || n.eq_ignore_ascii_case("v"));
        let Some((_, ours)) = vias.next() else {
            return Vec::new();
        };
        if !ours.contains(&self.addr.to_string()) {
            return Vec::new();
        }
        let Some(dest) = vias.next().and_then(|(_, v)| via_addr(v)) else {
            return Vec::new();
        };
        let our_line = text
            .split("\r\n")
            .find(|l| l.contains(ours))
            .unwrap_or("")
            .to_owned();
        vec![(text.replacen(&format!("{our_line}\r\n"), "", 1), dest)]
    }
}

const REALM: &str = "mock";
const NONCE: &str = "bW9jay1ub25jZQ";

/// None when the request carries valid credentials for its From/To user (password = user
/// name, the generator's default template); otherwise the challenge or a 403.
fn challenge_or_reject(msg: &Parsed<'_>, method: &str) -> Option<String> {
    let (header, challenge, code, reason, algorithm) = if method == "REGISTER" {
        (
            "Authorization",
            "WWW-Authenticate",
            401,
            "Unauthorized",
            "MD5",
        )
    } else {
        (
            "Proxy-Authorization",
            "Proxy-Authenticate",
            407,
            "Proxy Authentication Required",
            "SHA-256",
        )
    };
    let Some(credentials) = msg.header(header, "") else {
        let extra = format!(
            "{challenge}: Digest realm=\"{REALM}\", nonce=\"{NONCE}\", algorithm={algorithm}, qop=\"auth\"\r\n"
        );
        return Some(response(msg, code, reason, &extra));
    };
    let identity = if method == "REGISTER" {
        msg.header("To", "t")
    } else {
        msg.header("From", "f")
    };
    let expected_user = identity.and_then(user).map(|n| format!("u{n}"));
    let param = |name: &str| -> Option<String> {
        credentials.split(',').find_map(|p| {
            let (k, v) = p.trim().trim_start_matches("Digest ").split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"').to_owned())
        })
    };
    let (Some(username), Some(uri), Some(nc), Some(cnonce), Some(given)) = (
        param("username"),
        param("uri"),
        param("nc"),
        param("cnonce"),
        param("response"),
    ) else {
        return Some(response(msg, 403, "Forbidden", ""));
    };
    let hash = |text: String| -> String {
        use md5::Digest as _;
        let bytes: Vec<u8> = if algorithm == "MD5" {
            md5::Md5::digest(text.as_bytes()).to_vec()
        } else {
            sha2::Sha256::digest(text.as_bytes()).to_vec()
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    };
    let ha1 = hash(format!("{username}:{REALM}:{username}"));
    let ha2 = hash(format!("{method}:{uri}"));
    let expected = hash(format!("{ha1}:{NONCE}:{nc}:{cnonce}:auth:{ha2}"));
    if Some(&username) == expected_user.as_ref()
        && given == expected
        && param("realm").as_deref() == Some(REALM)
    {
        None
    } else {
        Some(response(msg, 403, "Forbidden", ""))
    }
}
