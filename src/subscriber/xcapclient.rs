//! A minimal blocking HTTP/1.1 client for XCAP GET (RFC 4825 §7.3, RFC 9112), and a small
//! worker pool around it. `http://` only, one request per connection (`Connection: close`),
//! every read bounded in bytes and by one deadline for the whole exchange.
//!
//! The IM Server reads users' documents as its service identity (SPEC G3): every request
//! carries `X-XCAP-Asserted-Identity`, and the GLMS trusts it from configured addresses.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::machine::FetchResult;

/// Largest response head we read.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Largest document we accept (the DOM parser's limit).
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Most chunks in a chunked body.
const MAX_CHUNKS: usize = 4096;

/// GETs `url` (`http://host[:port]/path`). `if_none_match` is an unquoted strong ETag.
pub fn fetch(
    url: &str,
    if_none_match: Option<&str>,
    asserted_identity: &str,
    timeout: Duration,
) -> FetchResult {
    match try_fetch(url, if_none_match, asserted_identity, timeout) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(url, error = e, "xcap fetch failed");
            FetchResult::Failed
        }
    }
}

fn try_fetch(
    url: &str,
    if_none_match: Option<&str>,
    asserted_identity: &str,
    timeout: Duration,
) -> Result<FetchResult, &'static str> {
    let deadline = Instant::now() + timeout;
    let rest = url
        .get(..7)
        .filter(|s| s.eq_ignore_ascii_case("http://"))
        .and_then(|_| url.get(7..))
        .ok_or("only http:// URLs")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err("bad authority");
    }
    let addr_text = if authority
        .rsplit(':')
        .next()
        .is_some_and(|p| p.parse::<u16>().is_ok())
        && !authority.ends_with(']')
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let addr = addr_text
        .to_socket_addrs()
        .map_err(|_| "cannot resolve host")?
        .next()
        .ok_or("no address")?;
    let mut stream =
        TcpStream::connect_timeout(&addr, remaining(deadline)?).map_err(|_| "connect failed")?;
    let _ = stream.set_nodelay(true);
    let mut req = String::with_capacity(256 + path.len());
    req.push_str("GET ");
    req.push_str(&encode_request_target(path));
    req.push_str(" HTTP/1.1\r\nHost: ");
    req.push_str(authority);
    req.push_str("\r\nX-XCAP-Asserted-Identity: \"<");
    req.push_str(
        asserted_identity
            .trim_start_matches('<')
            .trim_end_matches('>'),
    );
    req.push_str(">\"\r\nAccept: */*\r\nConnection: close\r\n");
    if let Some(tag) = if_none_match {
        // RFC 9110 §13.1.2: the quoted entity tag of the copy we hold.
        req.push_str("If-None-Match: \"");
        req.push_str(tag);
        req.push_str("\"\r\n");
    }
    req.push_str("\r\n");
    stream
        .set_write_timeout(Some(remaining(deadline)?))
        .map_err(|_| "socket")?;
    stream
        .write_all(req.as_bytes())
        .map_err(|_| "write failed")?;

    let mut reader = Reader {
        stream,
        buf: Vec::with_capacity(4096),
        pos: 0,
        deadline,
        eof: false,
    };
    let head = reader.head()?;
    let resp = parse_head(&head)?;
    match resp.status {
        // RFC 9110 §15.4.5: 304 has no body.
        304 => return Ok(FetchResult::NotModified),
        404 => return Ok(FetchResult::NotFound),
        200 => {}
        _ => return Err("unexpected status"),
    }
    let body = if resp.chunked {
        reader.chunked()?
    } else if let Some(len) = resp.content_length {
        if len > MAX_BODY_BYTES {
            return Err("body too large");
        }
        reader.exact(len)?
    } else {
        reader.until_eof()?
    };
    Ok(FetchResult::Ok {
        bytes: body,
        etag: resp.etag,
    })
}

fn remaining(deadline: Instant) -> Result<Duration, &'static str> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err("timeout")
    } else {
        Ok(left)
    }
}

/// Percent-encodes what may not appear raw in a request target (`"`, space, controls,
/// non-ASCII); keeps existing escapes.
fn encode_request_target(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for &b in path.as_bytes() {
        if b.is_ascii_graphic()
            && !matches!(
                b,
                b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
            )
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

struct Head {
    status: u16,
    content_length: Option<usize>,
    chunked: bool,
    etag: Option<String>,
}

fn parse_head(head: &[u8]) -> Result<Head, &'static str> {
    let text = std::str::from_utf8(head).map_err(|_| "head not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().ok_or("no status line")?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err("not HTTP/1.x");
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..1000).contains(s))
        .ok_or("bad status")?;
    let mut h = Head {
        status,
        content_length: None,
        chunked: false,
        etag: None,
    };
    for line in lines.take(128) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n = value.parse::<usize>().map_err(|_| "bad content-length")?;
            // RFC 9112 §6.3: differing Content-Length values are an error.
            if h.content_length.is_some_and(|m| m != n) {
                return Err("conflicting content-length");
            }
            h.content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // RFC 9112 §6.1: chunked must be the final coding.
            h.chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
            if !h.chunked {
                return Err("unsupported transfer-coding");
            }
        } else if name.eq_ignore_ascii_case("etag") {
            // XCAP ETags are strong (RFC 4825 §7.11); a weak one is no use for If-None-Match.
            h.etag = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .map(str::to_owned);
        }
    }
    Ok(h)
}

struct Reader {
    stream: TcpStream,
    buf: Vec<u8>,
    pos: usize,
    deadline: Instant,
    eof: bool,
}

impl Reader {
    /// Reads more bytes into `buf`; false at EOF.
    fn fill(&mut self, limit: usize) -> Result<bool, &'static str> {
        if self.eof {
            return Ok(false);
        }
        if self.buf.len() >= limit {
            return Err("response too large");
        }
        self.stream
            .set_read_timeout(Some(remaining(self.deadline)?))
            .map_err(|_| "socket")?;
        let mut chunk = [0u8; 8192];
        let want = chunk.len().min(limit - self.buf.len());
        match self.stream.read(&mut chunk[..want]) {
            Ok(0) => {
                self.eof = true;
                Ok(false)
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(true),
            Err(_) => Err("read failed or timed out"),
        }
    }

    fn head(&mut self) -> Result<Vec<u8>, &'static str> {
        loop {
            if let Some(i) = memchr::memmem::find(&self.buf, b"\r\n\r\n") {
                let head = self.buf[..i].to_vec();
                self.pos = i + 4;
                return Ok(head);
            }
            if !self.fill(MAX_HEAD_BYTES)? {
                return Err("connection closed in head");
            }
        }
    }

    fn limit(&self) -> usize {
        self.pos + MAX_BODY_BYTES + MAX_HEAD_BYTES
    }

    fn exact(&mut self, len: usize) -> Result<Vec<u8>, &'static str> {
        while self.buf.len() - self.pos < len {
            let limit = self.limit();
            if !self.fill(limit)? {
                return Err("connection closed in body");
            }
        }
        let out = self.buf[self.pos..self.pos + len].to_vec();
        self.pos += len;
        Ok(out)
    }

    fn until_eof(&mut self) -> Result<Vec<u8>, &'static str> {
        while self.fill(self.pos + MAX_BODY_BYTES + 1)? {}
        let out = self.buf[self.pos..].to_vec();
        if out.len() > MAX_BODY_BYTES {
            return Err("body too large");
        }
        self.pos = self.buf.len();
        Ok(out)
    }

    fn line(&mut self) -> Result<Vec<u8>, &'static str> {
        loop {
            if let Some(i) = memchr::memmem::find(&self.buf[self.pos..], b"\r\n") {
                let line = self.buf[self.pos..self.pos + i].to_vec();
                self.pos += i + 2;
                return Ok(line);
            }
            if self.buf.len() - self.pos > 1024 {
                return Err("chunk line too long");
            }
            let limit = self.limit();
            if !self.fill(limit)? {
                return Err("connection closed in chunk line");
            }
        }
    }

    /// RFC 9112 §7.1: chunk-size [ext] CRLF data CRLF ... 0 CRLF trailers CRLF.
    fn chunked(&mut self) -> Result<Vec<u8>, &'static str> {
        let mut body = Vec::new();
        for _ in 0..MAX_CHUNKS {
            let line = self.line()?;
            let text = std::str::from_utf8(&line).map_err(|_| "bad chunk size")?;
            let size_text = text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
            if size == 0 {
                // Trailer section, ended by an empty line.
                for _ in 0..64 {
                    if self.line()?.is_empty() {
                        return Ok(body);
                    }
                }
                return Err("too many trailers");
            }
            if body.len() + size > MAX_BODY_BYTES {
                return Err("body too large");
            }
            body.extend(self.exact(size)?);
            if !self.line()?.is_empty() {
                return Err("chunk not followed by CRLF");
            }
        }
        Err("too many chunks")
    }
}

/// One GET for the pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchRequest {
    pub aor: String,
    pub uri: String,
    pub if_none_match: Option<String>,
}

/// A finished GET, handed to the pool's callback (feed it to `Subscriber::on_fetched`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchDone {
    pub aor: String,
    pub uri: String,
    pub result: FetchResult,
}

/// N worker threads fed by a bounded channel.
pub struct Fetcher {
    tx: Option<SyncSender<FetchRequest>>,
    workers: Vec<JoinHandle<()>>,
}

impl Fetcher {
    /// Starts `workers` threads (at least one) with a queue of `queue` requests.
    pub fn start(
        workers: usize,
        queue: usize,
        asserted_identity: &str,
        timeout: Duration,
        done: impl Fn(FetchDone) + Send + Sync + 'static,
    ) -> std::io::Result<Fetcher> {
        let (tx, rx) = sync_channel::<FetchRequest>(queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let done = Arc::new(done);
        let mut handles = Vec::new();
        for n in 0..workers.max(1) {
            let rx = Arc::clone(&rx);
            let done = Arc::clone(&done);
            let identity = asserted_identity.to_owned();
            let handle = std::thread::Builder::new()
                .name(format!("xcap-fetch-{n}"))
                .spawn(move || worker(&rx, &identity, timeout, &*done))?;
            handles.push(handle);
        }
        Ok(Fetcher {
            tx: Some(tx),
            workers: handles,
        })
    }

    /// Queues a GET; a full queue gives the request back (the caller reports it `Failed`,
    /// and the subscriber retries with back-off).
    pub fn submit(&self, req: FetchRequest) -> Result<(), FetchRequest> {
        let Some(tx) = &self.tx else { return Err(req) };
        tx.try_send(req).map_err(|e| match e {
            TrySendError::Full(r) | TrySendError::Disconnected(r) => r,
        })
    }

    /// Stops accepting work, lets the workers finish what is queued, and joins them.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.tx = None;
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        self.stop();
    }
}

fn worker(
    rx: &Mutex<Receiver<FetchRequest>>,
    identity: &str,
    timeout: Duration,
    done: &(dyn Fn(FetchDone) + Send + Sync),
) {
    loop {
        let next = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return,
        };
        let Ok(req) = next else { return };
        let result = fetch(&req.uri, req.if_none_match.as_deref(), identity, timeout);
        done(FetchDone {
            aor: req.aor,
            uri: req.uri,
            result,
        });
    }
}
