//! A small HTTP/1.1 client for the GLMS's XCAP interface (RFC 4825), enough for `churn`: GET,
//! PUT and DELETE over keep-alive connections on `std::net::TcpStream`, bodies framed by
//! Content-Length or chunked (RFC 9112 §6-7), loopback only. The generator authenticates as an
//! aggregation proxy would: `X-XCAP-Asserted-Identity` from a trusted address (SPEC G3).
//!
//! ```text
//!  idle --request--> connect (if no connection) --write--> read head --> read body --> idle
//!                                                   └─ stale keep-alive (EOF, nothing read) ─┘ one retry
//! ```
#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};

use crate::target::parse_loopback_url;

/// The longest response head the client reads.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The longest body the client reads (XCAP documents of a load test are small).
const MAX_BODY_BYTES: usize = 16 << 20;
/// Bound on interim (1xx) responses skipped before the final one.
const MAX_INTERIM: usize = 8;

/// `http://IP:PORT/path`: where the XCAP root is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XcapRoot {
    pub addr: SocketAddr,
    /// The root path without a trailing slash, e.g. `/xcap-root`.
    pub path: String,
}

impl XcapRoot {
    /// Parses the URL and refuses anything but loopback.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let addr = parse_loopback_url(url).with_context(|| format!("--xcap {url}"))?;
        let rest = url.strip_prefix("http://").unwrap_or(url);
        let path = rest
            .find('/')
            .map_or("", |i| &rest[i..])
            .trim_end_matches('/');
        ensure!(
            path.bytes().all(|b| b.is_ascii_graphic()) && !path.contains(['?', '#']),
            "--xcap {url}: the root path must be plain"
        );
        Ok(Self {
            addr,
            path: path.to_owned(),
        })
    }

    /// `<root>/xcap-caps/global/index` (RFC 4825 §12.1).
    pub fn caps_path(&self) -> String {
        format!("{}/xcap-caps/global/index", self.path)
    }

    /// The XCAP URI of `<entry uri=entry_aor>` in `owner_aor`'s `oma_blockedcontacts` list
    /// (SPEC §4.2): `"`, `[` and `]` percent-encoded as RFC 4825 §6 requires.
    pub fn blocked_entry_path(&self, owner_aor: &str, entry_aor: &str) -> String {
        format!(
            "{}/resource-lists/users/{owner_aor}/index/~~/resource-lists/list%5b@name=%22oma_blockedcontacts%22%5d/entry%5b@uri=%22{entry_aor}%22%5d",
            self.path
        )
    }
}

/// The element body that puts `entry_aor` on a blocked list (`application/xcap-el+xml`).
pub fn blocked_entry_body(entry_aor: &str) -> String {
    format!("<entry xmlns=\"urn:ietf:params:xml:ns:resource-lists\" uri=\"{entry_aor}\"/>")
}

/// A final HTTP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// One keep-alive connection to the GLMS (reopened when the server closes it).
pub struct XcapClient {
    root: XcapRoot,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    timeout: Duration,
    /// Connections opened so far.
    pub connects: u64,
}

/// How the body of a response is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
    None,
}

#[derive(Debug, PartialEq, Eq)]
struct Head {
    status: u16,
    framing: Framing,
    close: bool,
    len: usize,
}

impl XcapClient {
    pub fn new(root: XcapRoot, timeout: Duration) -> Self {
        Self {
            root,
            stream: None,
            buf: Vec::with_capacity(4096),
            timeout,
            connects: 0,
        }
    }

    pub fn root(&self) -> &XcapRoot {
        &self.root
    }

    /// Sends one request and reads its final response. `identity` goes into
    /// `X-XCAP-Asserted-Identity`; `body` is (content type, bytes). A keep-alive connection the
    /// server had closed (EOF before any byte of the answer) is retried once on a new one:
    /// GET, PUT and DELETE are idempotent (RFC 9110 §9.2.2).
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        identity: Option<&str>,
        body: Option<(&str, &[u8])>,
    ) -> io::Result<Response> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: loadgen\r\n",
            self.root.addr
        );
        if let Some(identity) = identity {
            head.push_str(&format!("X-XCAP-Asserted-Identity: \"{identity}\"\r\n"));
        }
        let (content_type, bytes) = body.unwrap_or(("", &[]));
        if body.is_some() {
            head.push_str(&format!("Content-Type: {content_type}\r\n"));
        }
        if body.is_some() || method == "PUT" {
            head.push_str(&format!("Content-Length: {}\r\n", bytes.len()));
        }
        head.push_str("\r\n");
        let mut message = head.into_bytes();
        message.extend_from_slice(bytes);
        for attempt in 0..2 {
            let reused = self.stream.is_some();
            match self.exchange(&message) {
                Ok(response) => return Ok(response),
                Err(Failure::StaleConnection) if reused && attempt == 0 => {}
                Err(Failure::StaleConnection) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the GLMS closed the connection without answering",
                    ));
                }
                Err(Failure::Io(error)) => return Err(error),
            }
        }
        Err(io::Error::other("unreachable retry bound"))
    }

    fn connect(&mut self) -> io::Result<&mut TcpStream> {
        if self.stream.is_none() {
            let stream = TcpStream::connect_timeout(&self.root.addr, self.timeout)?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(self.timeout))?;
            stream.set_write_timeout(Some(self.timeout))?;
            self.connects += 1;
            self.buf.clear();
            self.stream = Some(stream);
        }
        self.stream
            .as_mut()
            .ok_or_else(|| io::Error::other("no connection"))
    }

    fn exchange(&mut self, message: &[u8]) -> Result<Response, Failure> {
        let deadline = Instant::now() + self.timeout;
        let result = self.exchange_on_stream(message, deadline);
        if !matches!(result, Ok((_, true))) {
            self.stream = None;
        }
        result.map(|(response, _)| response)
    }

    /// Ok((response, keep the connection)).
    fn exchange_on_stream(
        &mut self,
        message: &[u8],
        deadline: Instant,
    ) -> Result<(Response, bool), Failure> {
        let stream = self.connect()?;
        if let Err(error) = stream.write_all(message) {
            return Err(match error.kind() {
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
                    Failure::StaleConnection
                }
                _ => Failure::Io(error),
            });
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(Failure::Io(io::Error::other("no connection")));
        };
        let buf = &mut self.buf;
        // Bounded: MAX_INTERIM interim responses, then the final one.
        for _ in 0..=MAX_INTERIM {
            let head = loop {
                if let Some(head) = parse_head(buf).map_err(Failure::Io)? {
                    break head;
                }
                if buf.len() > MAX_HEAD_BYTES {
                    return Err(Failure::Io(invalid("response head too long")));
                }
                let had_bytes = !buf.is_empty();
                match fill(stream, buf, deadline) {
                    Ok(0) if !had_bytes => return Err(Failure::StaleConnection),
                    Ok(0) => return Err(Failure::Io(invalid("EOF inside a response head"))),
                    Ok(_) => {}
                    Err(e) if !had_bytes && e.kind() == io::ErrorKind::ConnectionReset => {
                        return Err(Failure::StaleConnection);
                    }
                    Err(e) => return Err(Failure::Io(e)),
                }
            };
            buf.drain(..head.len);
            if (100..200).contains(&head.status) {
                continue;
            }
            let body = read_body(stream, buf, head.framing, deadline).map_err(Failure::Io)?;
            let keep = !head.close && head.framing != Framing::UntilClose;
            return Ok((
                Response {
                    status: head.status,
                    body,
                },
                keep,
            ));
        }
        Err(Failure::Io(invalid("too many interim responses")))
    }
}

enum Failure {
    /// The reused connection was closed before any byte of the answer arrived.
    StaleConnection,
    Io(io::Error),
}

impl From<io::Error> for Failure {
    fn from(error: io::Error) -> Self {
        Failure::Io(error)
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// Reads once more into `buf`; Ok(0) at EOF. Fails with TimedOut past `deadline`.
fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, deadline: Instant) -> io::Result<usize> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the GLMS did not answer in time",
        ));
    }
    stream.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
    let mut chunk = [0u8; 16 * 1024];
    // Bounded: an interrupted read is retried a few times.
    for _ in 0..8 {
        match stream.read(&mut chunk) {
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the GLMS did not answer in time",
                ));
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::Interrupted,
        "read interrupted",
    ))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses a complete response head at the front of `buf` (None: incomplete).
fn parse_head(buf: &[u8]) -> io::Result<Option<Head>> {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| invalid("non-UTF-8 head"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(invalid("not an HTTP/1.x response"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..600).contains(s))
        .ok_or_else(|| invalid("bad status code"))?;
    let mut length = None;
    let mut chunked = false;
    let mut close = version == "HTTP/1.0";
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| invalid("bad Content-Length"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            close = value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("close"));
        }
    }
    // RFC 9112 §6.3: 1xx, 204 and 304 have no body; chunked wins over Content-Length.
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::None
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    Ok(Some(Head {
        status,
        framing,
        close,
        len: end + 4,
    }))
}

fn read_body(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    framing: Framing,
    deadline: Instant,
) -> io::Result<Vec<u8>> {
    match framing {
        Framing::None => Ok(Vec::new()),
        Framing::Length(n) => {
            if n > MAX_BODY_BYTES {
                return Err(invalid("body too large"));
            }
            // Bounded: each round reads bytes, or fails at EOF or the deadline.
            while buf.len() < n {
                if fill(stream, buf, deadline)? == 0 {
                    return Err(invalid("EOF inside a body"));
                }
            }
            Ok(buf.drain(..n).collect())
        }
        Framing::UntilClose => {
            while fill(stream, buf, deadline)? > 0 {
                if buf.len() > MAX_BODY_BYTES {
                    return Err(invalid("body too large"));
                }
            }
            Ok(std::mem::take(buf))
        }
        Framing::Chunked => {
            let mut body = Vec::new();
            // Bounded by MAX_BODY_BYTES and the deadline.
            loop {
                match decode_chunk(buf, &mut body)? {
                    Chunk::Data => {
                        if body.len() > MAX_BODY_BYTES {
                            return Err(invalid("body too large"));
                        }
                    }
                    Chunk::End => return Ok(body),
                    Chunk::NeedMore => {
                        if fill(stream, buf, deadline)? == 0 {
                            return Err(invalid("EOF inside a chunked body"));
                        }
                    }
                }
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Chunk {
    Data,
    End,
    NeedMore,
}

/// Takes one chunk (RFC 9112 §7.1) off the front of `buf` into `body`; the last chunk also
/// consumes the trailer section.
fn decode_chunk(buf: &mut Vec<u8>, body: &mut Vec<u8>) -> io::Result<Chunk> {
    let Some(line_end) = find(buf, b"\r\n") else {
        return if buf.len() > 1024 {
            Err(invalid("chunk size line too long"))
        } else {
            Ok(Chunk::NeedMore)
        };
    };
    let line = std::str::from_utf8(&buf[..line_end]).map_err(|_| invalid("bad chunk size"))?;
    let size_text = line.split(';').next().unwrap_or_default().trim();
    let size = usize::from_str_radix(size_text, 16).map_err(|_| invalid("bad chunk size"))?;
    if size > MAX_BODY_BYTES {
        return Err(invalid("chunk too large"));
    }
    if size == 0 {
        // Trailers end with an empty line; with none, that is the CRLF right after the size.
        let rest = &buf[line_end + 2..];
        if rest.starts_with(b"\r\n") {
            buf.drain(..line_end + 4);
            return Ok(Chunk::End);
        }
        return match find(rest, b"\r\n\r\n") {
            Some(end) => {
                buf.drain(..line_end + 2 + end + 4);
                Ok(Chunk::End)
            }
            None => Ok(Chunk::NeedMore),
        };
    }
    let total = line_end + 2 + size + 2;
    if buf.len() < total {
        return Ok(Chunk::NeedMore);
    }
    if &buf[total - 2..total] != b"\r\n" {
        return Err(invalid("chunk not followed by CRLF"));
    }
    body.extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
    buf.drain(..total);
    Ok(Chunk::Data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn root_and_paths() {
        let root = XcapRoot::parse("http://127.0.0.1:8080/xcap-root/").expect("root");
        assert_eq!(root.path, "/xcap-root");
        assert_eq!(root.caps_path(), "/xcap-root/xcap-caps/global/index");
        assert_eq!(
            root.blocked_entry_path("sip:u1@example.com", "sip:u7@example.com"),
            "/xcap-root/resource-lists/users/sip:u1@example.com/index/~~/resource-lists/list%5b@name=%22oma_blockedcontacts%22%5d/entry%5b@uri=%22sip:u7@example.com%22%5d"
        );
        assert!(XcapRoot::parse("http://10.0.0.1:8080/xcap-root").is_err());
        assert!(XcapRoot::parse("http://127.0.0.1:8080/x?y").is_err());
    }

    #[test]
    fn heads_are_parsed() {
        let head =
            parse_head(b"HTTP/1.1 201 Created\r\nETag: \"1\"\r\ncontent-length: 0\r\n\r\nrest")
                .expect("valid")
                .expect("complete");
        assert_eq!(head.status, 201);
        assert_eq!(head.framing, Framing::Length(0));
        assert!(!head.close);
        assert_eq!(head.len, 54);
        let chunked = parse_head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\nConnection: close\r\n\r\n",
        )
        .expect("valid")
        .expect("complete");
        assert_eq!(chunked.framing, Framing::Chunked);
        assert!(chunked.close);
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\n").expect("valid"), None);
        assert!(parse_head(b"SIP/2.0 200 OK\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 2x0 OK\r\n\r\n").is_err());
        let no_body = parse_head(b"HTTP/1.1 204 No Content\r\n\r\n")
            .expect("valid")
            .expect("complete");
        assert_eq!(no_body.framing, Framing::None);
    }

    #[test]
    fn chunks_are_decoded() {
        let mut buf = b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-T: 1\r\n\r\nNEXT".to_vec();
        let mut body = Vec::new();
        assert_eq!(decode_chunk(&mut buf, &mut body).expect("ok"), Chunk::Data);
        assert_eq!(decode_chunk(&mut buf, &mut body).expect("ok"), Chunk::Data);
        assert_eq!(decode_chunk(&mut buf, &mut body).expect("ok"), Chunk::End);
        assert_eq!(body, b"Wikipedia");
        assert_eq!(buf, b"NEXT");
        let mut partial = b"a\r\n01234".to_vec();
        assert_eq!(
            decode_chunk(&mut partial, &mut body).expect("ok"),
            Chunk::NeedMore
        );
        let mut bad = b"zz\r\n".to_vec();
        assert!(decode_chunk(&mut bad, &mut body).is_err());
    }

    /// A one-connection server that answers each request from a script, then closes.
    fn scripted_server(
        answers: Vec<&'static [u8]>,
    ) -> (SocketAddr, std::thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let (mut stream, _) = listener.accept().expect("accept");
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let mut buf = Vec::new();
            for answer in answers {
                let mut chunk = [0u8; 4096];
                let end = loop {
                    if let Some(end) = find(&buf, b"\r\n\r\n") {
                        break end + 4;
                    }
                    let n = stream.read(&mut chunk).expect("read");
                    assert!(n > 0, "client closed early");
                    buf.extend_from_slice(&chunk[..n]);
                };
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                while buf.len() < end + length {
                    let n = stream.read(&mut chunk).expect("read body");
                    buf.extend_from_slice(&chunk[..n]);
                }
                buf.drain(..end + length);
                seen.push(head);
                stream.write_all(answer).expect("write");
            }
            seen
        });
        (addr, handle)
    }

    #[test]
    fn keep_alive_requests_share_one_connection() {
        let (addr, server) = scripted_server(vec![
            b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno",
        ]);
        let root = XcapRoot::parse(&format!("http://{addr}/xcap-root")).expect("root");
        let mut client = XcapClient::new(root.clone(), Duration::from_secs(5));
        let path = root.blocked_entry_path("sip:u1@example.com", "sip:u2@example.com");
        let body = blocked_entry_body("sip:u2@example.com");
        let put = client
            .request(
                "PUT",
                &path,
                Some("sip:u1@example.com"),
                Some(("application/xcap-el+xml", body.as_bytes())),
            )
            .expect("put");
        assert_eq!(put.status, 201);
        assert!(put.is_success());
        let get = client.request("GET", &path, None, None).expect("get");
        assert_eq!((get.status, get.body.as_slice()), (200, &b"abc"[..]));
        let delete = client
            .request("DELETE", &path, Some("sip:u1@example.com"), None)
            .expect("delete");
        assert_eq!((delete.status, delete.body.as_slice()), (404, &b"no"[..]));
        assert_eq!(client.connects, 1, "keep-alive");
        let seen = server.join().expect("server");
        assert!(
            seen[0].starts_with("PUT /xcap-root/resource-lists/users/sip:u1@example.com/index/~~/")
        );
        assert!(seen[0].contains("X-XCAP-Asserted-Identity: \"sip:u1@example.com\"\r\n"));
        assert!(seen[0].contains("Content-Type: application/xcap-el+xml\r\n"));
        assert!(seen[2].starts_with("DELETE "));
        assert!(!seen[2].contains("Content-Length"));
        // The server is gone: a new request fails instead of hanging.
        assert!(client.request("GET", &path, None, None).is_err());
    }
}
