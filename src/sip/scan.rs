//! The scanner: one pass over a message head (newlines found 16 bytes at a time), recording `u32` offsets into a
//! preallocated, reusable [`Parsed`] (httparse style: the caller owns the slots, nothing is
//! allocated per message). Framing for datagrams (RFC 3261 §18.3: one message per datagram) and
//! streams (Content-Length framing, RFC 5626 §3.5.1 keepalives). [`View`] pairs the offsets with
//! the buffer and hands out slices; no accessor can panic.
#![forbid(unsafe_code)]

use std::cell::OnceCell;

use memchr::memchr;

use super::bytemask;
use super::error::ScanError;
use super::hdr::HeaderName;
use super::lex::{is_token, trim};
use super::nameaddr::NaMemo;
use super::values;
use super::via::TopViaMemo;
use super::{Method, Transport};

/// Most headers one message may carry; more is a 400 (a limit on everything).
pub const MAX_HEADERS: usize = 128;

const NONE: u8 = u8::MAX;

/// A byte range `[start, end)` into the message buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub const EMPTY: Span = Span { start: 0, end: 0 };

    /// Offsets are bounded by the scanner (messages are far below 4 GiB).
    #[inline]
    pub fn new(start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    /// The bytes of this span; empty when out of bounds (never panics).
    #[inline]
    pub fn slice<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        buf.get(self.start as usize..self.end as usize)
            .unwrap_or(&[])
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start) as usize
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// One header line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderSlot {
    pub name: HeaderName,
    /// The name as written (`v`, `VIA`, `C%6Fntact`...).
    pub raw_name: Span,
    /// The value, trimmed of surrounding LWS; folds stay inside.
    pub value: Span,
    /// The whole line including its line ending (and any fold continuation lines).
    pub line: Span,
}

const EMPTY_SLOT: HeaderSlot = HeaderSlot {
    name: HeaderName::Other,
    raw_name: Span::EMPTY,
    value: Span::EMPTY,
    line: Span::EMPTY,
};

/// What a stream buffer holds at its front.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Not enough bytes yet: read more and call again with the grown buffer.
    Incomplete,
    /// A whole message of `len` bytes (head and body) is at the front and has been scanned.
    Message { len: usize },
    /// A CRLFCRLF keepalive ping: answer with a CRLF pong (RFC 5626 §3.5.1), consume `len`.
    KeepAlive { len: usize },
    /// Stray CRLFs between messages: consume `len` and go on (RFC 3261 §7.5).
    Skip { len: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
enum Kind {
    #[default]
    Unknown,
    Request,
    Response,
}

enum Head {
    Incomplete,
    Done {
        body_start: usize,
        err: Option<ScanError>,
    },
}

/// Where `part` (a sub-slice of `buf`) sits in `buf`; empty when it is not inside.
#[inline]
pub(crate) fn span_in(buf: &[u8], part: &[u8]) -> Span {
    let off = (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
    if off > buf.len() || buf.len() - off < part.len() {
        return Span::EMPTY;
    }
    Span::new(off, off + part.len())
}

/// Facts parsed lazily from the scanned message, as offsets (so `Parsed` stays free of
/// borrows): validation parses the top Via, From and To, and the writers need the same facts
/// again. Reset by every scan. `OnceCell` because they are filled in through a shared
/// [`View`] and then read in place, by reference (a worker owns its `Parsed`, so nothing here
/// is shared between threads). `get_or_init` would panic only if an initialiser asked for its
/// own memo; the three read the scanned headers alone.
#[derive(Clone, Debug, Default)]
pub(crate) struct Memos {
    pub(crate) top_via: OnceCell<TopViaMemo>,
    pub(crate) from: OnceCell<NaMemo>,
    pub(crate) to: OnceCell<NaMemo>,
}

/// Scan results for one message, reused across messages (`scan_*` resets it).
#[derive(Clone, Debug)]
pub struct Parsed {
    kind: Kind,
    method: Method,
    method_span: Span,
    uri: Span,
    version: Span,
    status: u16,
    reason: Span,
    headers: [HeaderSlot; MAX_HEADERS],
    n_headers: usize,
    first: [u8; HeaderName::COUNT],
    count: [u8; HeaderName::COUNT],
    content_length: Option<u32>,
    body: Span,
    msg: Span,
    transport: Transport,
    memos: Memos,
}

impl Default for Parsed {
    fn default() -> Self {
        Parsed::new()
    }
}

/// The positions of `\n` in a buffer, in order, found 16 bytes at a time
/// ([`bytemask::eq`]): one running bit mask per block instead of a `memchr` call per line,
/// which for 20-60 byte header lines costs more in setup than in search.
struct Newlines<'a> {
    buf: &'a [u8],
    /// Offset of the block `mask` describes.
    block: usize,
    /// Bit `i` set when `buf[block + i]` is a newline (not yet returned).
    mask: u32,
}

impl<'a> Newlines<'a> {
    fn new(buf: &'a [u8], from: usize) -> Self {
        Newlines {
            buf,
            block: from,
            mask: Self::load(buf, from),
        }
    }

    /// Newline mask of the block at `at` (fewer bytes at the end of the buffer).
    #[inline]
    fn load(buf: &[u8], at: usize) -> u32 {
        match bytemask::block_at(buf, at) {
            Some(b) => bytemask::eq(b, b'\n'),
            None => Self::load_tail(buf, at),
        }
    }

    /// The last, partial block, padded with zero bytes (which are not newlines).
    #[cold]
    fn load_tail(buf: &[u8], at: usize) -> u32 {
        let tail = buf.get(at..).unwrap_or(&[]);
        let mut b = [0u8; bytemask::BLOCK];
        b[..tail.len()].copy_from_slice(tail);
        bytemask::eq(&b, b'\n')
    }

    #[inline]
    fn next(&mut self) -> Option<usize> {
        loop {
            if self.mask != 0 {
                let i = self.block + self.mask.trailing_zeros() as usize;
                self.mask &= self.mask - 1;
                return Some(i);
            }
            self.block += bytemask::BLOCK;
            if self.block >= self.buf.len() {
                return None;
            }
            self.mask = Self::load(self.buf, self.block);
        }
    }
}

/// Length of the header name at the start of `line` (which starts at `pos` in `buf`): the bytes
/// before the first ':', SP or HT, or the whole line when it has none. Reads 16 bytes at a time
/// from `buf`, past the end of a short line, and clamps.
#[inline]
fn name_len(buf: &[u8], pos: usize, line: &[u8]) -> usize {
    let mut done = 0;
    while done < line.len() {
        match bytemask::block_at(buf, pos + done) {
            Some(b) => {
                let m = bytemask::eq3(b, b':', b' ', b'\t');
                if m != 0 {
                    return (done + m.trailing_zeros() as usize).min(line.len());
                }
                done += bytemask::BLOCK;
            }
            None => {
                let rest = &line[done..];
                return done
                    + rest
                        .iter()
                        .position(|&b| matches!(b, b':' | b' ' | b'\t'))
                        .unwrap_or(rest.len());
            }
        }
    }
    line.len()
}

/// Finds the end of the line starting at `from` using the running newline iterator (one
/// pass per message, not per line): `(content_end, next_line_start)`, accepting CRLF
/// or a bare LF. At the end of a datagram (`eof`) an unterminated line ends the buffer.
#[inline]
fn line_end(nls: &mut Newlines<'_>, buf: &[u8], from: usize, eof: bool) -> Option<(usize, usize)> {
    // Lines are consumed in order, so the next newline is the end of this line.
    match nls.next() {
        Some(nl) => {
            let ce = if nl > from && buf[nl - 1] == b'\r' {
                nl - 1
            } else {
                nl
            };
            Some((ce, nl + 1))
        }
        None if eof => Some((buf.len(), buf.len())),
        None => None,
    }
}

impl Parsed {
    pub fn new() -> Parsed {
        Parsed {
            kind: Kind::Unknown,
            method: Method::Other,
            method_span: Span::EMPTY,
            uri: Span::EMPTY,
            version: Span::EMPTY,
            status: 0,
            reason: Span::EMPTY,
            headers: [EMPTY_SLOT; MAX_HEADERS],
            n_headers: 0,
            first: [NONE; HeaderName::COUNT],
            count: [0; HeaderName::COUNT],
            content_length: None,
            body: Span::EMPTY,
            msg: Span::EMPTY,
            transport: Transport::Udp,
            memos: Memos::default(),
        }
    }

    /// Pairs these results with the buffer they were scanned from.
    #[inline]
    pub fn view<'a>(&'a self, buf: &'a [u8]) -> View<'a> {
        View { buf, p: self }
    }

    fn reset(&mut self, transport: Transport) {
        self.kind = Kind::Unknown;
        self.method = Method::Other;
        self.method_span = Span::EMPTY;
        self.uri = Span::EMPTY;
        self.version = Span::EMPTY;
        self.status = 0;
        self.reason = Span::EMPTY;
        self.n_headers = 0;
        self.first = [NONE; HeaderName::COUNT];
        self.count = [0; HeaderName::COUNT];
        self.content_length = None;
        self.body = Span::EMPTY;
        self.msg = Span::EMPTY;
        self.transport = transport;
        self.memos = Memos::default();
    }

    /// Scans one UDP datagram (one message). With Content-Length the body is exactly that long
    /// and any excess is ignored (RFC 3261 §18.3, RFC 4475 dblreq); a datagram shorter than
    /// Content-Length is an error; without Content-Length the body runs to the end.
    /// Leading CRLFs are skipped as on streams (§7.5).
    pub fn scan_datagram(&mut self, buf: &[u8]) -> Result<(), ScanError> {
        self.reset(Transport::Udp);
        if buf.len() > u32::MAX as usize / 2 {
            return Err(ScanError::TooLarge);
        }
        let start = buf
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .unwrap_or(buf.len());
        let Head::Done { body_start, err } = self.scan_head(buf, start, true) else {
            // Unreachable with eof = true; treat defensively as a broken head.
            return Err(self.classify(ScanError::BadHeaderLine));
        };
        if let Some(e) = err {
            return Err(self.classify(e));
        }
        let end = match self.content_length {
            Some(cl) => {
                let end = body_start + cl as usize;
                if end > buf.len() {
                    // RFC 3261 §18.3: 400 for a request, a response is discarded.
                    return Err(self.classify(ScanError::TruncatedBody));
                }
                end
            }
            None => buf.len(),
        };
        self.body = Span::new(body_start, end);
        self.msg = Span::new(start, end);
        Ok(())
    }

    /// Frames and scans the message at the front of a stream buffer. Content-Length is
    /// mandatory on streams (§18.3); a head or declared length over `max_len` is `TooLarge`
    /// (513 and close, D12).
    pub fn scan_stream(&mut self, buf: &[u8], max_len: usize) -> Result<Framing, ScanError> {
        self.reset(Transport::Tcp);
        let max_len = max_len.min(u32::MAX as usize / 2);
        match buf.first() {
            None => return Ok(Framing::Incomplete),
            Some(b'\r') | Some(b'\n') => {
                // RFC 5626 §3.5.1: CRLFCRLF is a ping; §7.5: other CRLFs before a start line
                // are ignored.
                if buf.starts_with(b"\r\n\r\n") {
                    return Ok(Framing::KeepAlive { len: 4 });
                }
                if b"\r\n\r\n".starts_with(buf) {
                    return Ok(Framing::Incomplete);
                }
                let n = buf
                    .iter()
                    .take_while(|&&b| b == b'\r' || b == b'\n')
                    .count();
                return Ok(Framing::Skip { len: n });
            }
            Some(_) => {}
        }
        let (body_start, err) = match self.scan_head(buf, 0, false) {
            Head::Incomplete => {
                return if buf.len() > max_len {
                    Err(self.classify(ScanError::TooLarge))
                } else {
                    Ok(Framing::Incomplete)
                };
            }
            Head::Done { body_start, err } => (body_start, err),
        };
        if body_start > max_len {
            return Err(self.classify(ScanError::TooLarge));
        }
        if let Some(e) = err {
            return Err(self.classify(e));
        }
        let Some(cl) = self.content_length else {
            return Err(self.classify(ScanError::MissingContentLength));
        };
        let end = body_start + cl as usize;
        if end > max_len {
            return Err(self.classify(ScanError::TooLarge));
        }
        if end > buf.len() {
            return Ok(Framing::Incomplete);
        }
        self.body = Span::new(body_start, end);
        self.msg = Span::new(0, end);
        Ok(Framing::Message { len: end })
    }

    /// Maps an error to what the caller can do: a broken response is only ever dropped, and a
    /// request without the headers a response needs cannot be answered (§8.2.6.2, §18.2.2).
    fn classify(&self, e: ScanError) -> ScanError {
        use HeaderName::*;
        if self.kind == Kind::Response || e == ScanError::BadResponse {
            return ScanError::BadResponse;
        }
        let routable = [Via, From, To, CallId, CSeq]
            .iter()
            .all(|h| self.count[h.index()] > 0);
        if routable { e } else { ScanError::Unroutable }
    }

    fn scan_start_line(&mut self, line: &[u8], off: usize) -> Result<(), ScanError> {
        if line.starts_with(b"SIP/") {
            // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (§7.2). The code is
            // exactly three digits (RFC 4475 bigcode has ten).
            self.kind = Kind::Response;
            let sp = memchr(b' ', line).ok_or(ScanError::BadResponse)?;
            self.version = Span::new(off, off + sp);
            let rest = &line[sp + 1..];
            let code_end = memchr(b' ', rest).unwrap_or(rest.len());
            let code = &rest[..code_end];
            if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
                return Err(ScanError::BadResponse);
            }
            let status = code.iter().fold(0u16, |a, &d| a * 10 + u16::from(d - b'0'));
            if !(100..=699).contains(&status) {
                return Err(ScanError::BadResponse);
            }
            self.status = status;
            let r0 = (sp + 1 + code_end + 1).min(line.len());
            self.reason = Span::new(off + r0, off + line.len());
            return Ok(());
        }
        // Request-Line = Method SP Request-URI SP SIP-Version (§7.1). Liberal: runs of SP/HT
        // and trailing whitespace are accepted (RFC 4475 lwsstart, trws); whitespace inside
        // the URI is not (lwsruri), which validation reports.
        self.kind = Kind::Request;
        let mut end = line.len();
        while end > 0 && matches!(line[end - 1], b' ' | b'\t') {
            end -= 1;
        }
        let line = &line[..end];
        let sp1 = line
            .iter()
            .position(|&b| b == b' ' || b == b'\t')
            .ok_or(ScanError::BadRequestLine)?;
        let sp2 = line
            .iter()
            .rposition(|&b| b == b' ' || b == b'\t')
            .ok_or(ScanError::BadRequestLine)?;
        let method = &line[..sp1];
        if !is_token(method) || sp2 <= sp1 {
            return Err(ScanError::BadRequestLine);
        }
        let mut u0 = sp1;
        while u0 < sp2 && matches!(line[u0], b' ' | b'\t') {
            u0 += 1;
        }
        let mut u1 = sp2;
        while u1 > u0 && matches!(line[u1 - 1], b' ' | b'\t') {
            u1 -= 1;
        }
        if u1 == u0 {
            return Err(ScanError::BadRequestLine);
        }
        let version = &line[sp2 + 1..];
        // "SIP/" 1*DIGIT "." 1*DIGIT; a version other than 2.0 is validation's 505.
        let ok_version = version.len() >= 7
            && version[..4].eq_ignore_ascii_case(b"SIP/")
            && version[4..]
                .iter()
                .all(|&b| b.is_ascii_digit() || b == b'.')
            && version[4..].iter().filter(|&&b| b == b'.').count() == 1;
        if !ok_version {
            return Err(ScanError::BadRequestLine);
        }
        self.method = Method::from_bytes(method);
        self.method_span = Span::new(off, off + sp1);
        self.uri = Span::new(off + u0, off + u1);
        self.version = Span::new(off + sp2 + 1, off + end);
        Ok(())
    }

    /// Scans the start line and headers from `start`. Errors are remembered (the first one)
    /// while scanning goes on to the blank line, so the caller learns both the fault and
    /// whether the message is routable.
    fn scan_head(&mut self, buf: &[u8], start: usize, eof: bool) -> Head {
        let mut err = None;
        let mut nls = Newlines::new(buf, start);
        let Some((ce, mut pos)) = line_end(&mut nls, buf, start, eof) else {
            return Head::Incomplete;
        };
        if let Err(e) = self.scan_start_line(&buf[start..ce], start) {
            err = Some(e);
        }
        let body_start;
        loop {
            match buf.get(pos) {
                None if eof => {
                    body_start = buf.len();
                    break;
                }
                None => return Head::Incomplete,
                Some(b'\n') => {
                    body_start = pos + 1;
                    break;
                }
                Some(b'\r') => match buf.get(pos + 1) {
                    Some(b'\n') => {
                        body_start = pos + 2;
                        break;
                    }
                    None if !eof => return Head::Incomplete,
                    _ => {}
                },
                _ => {}
            }
            // One header line plus its continuation lines (§7.3.1 folding).
            let Some((mut ce, mut next)) = line_end(&mut nls, buf, pos, eof) else {
                return Head::Incomplete;
            };
            loop {
                match buf.get(next) {
                    Some(b' ') | Some(b'\t') => match line_end(&mut nls, buf, next, eof) {
                        Some((c, n)) => {
                            ce = c;
                            next = n;
                        }
                        None => return Head::Incomplete,
                    },
                    None if !eof => return Head::Incomplete,
                    _ => break,
                }
            }
            if let Err(e) = self.scan_header(buf, pos, ce, next) {
                err.get_or_insert(e);
            }
            pos = next;
        }
        Head::Done { body_start, err }
    }

    #[inline]
    fn scan_header(
        &mut self,
        buf: &[u8],
        pos: usize,
        ce: usize,
        next: usize,
    ) -> Result<(), ScanError> {
        let line = &buf[pos..ce];
        // The name runs to the first ':', SP or HT; then optional SP/HT, then ':' (§7.3.1).
        // A line starting with whitespace right after the start line, or a name with spaces
        // or other non-token bytes inside, is not a header. A known name matches exactly
        // (letters in either case, nothing else), so only an unknown one needs the token check.
        let name_end = name_len(buf, pos, line);
        let raw_name = &line[..name_end];
        let name = HeaderName::lookup(raw_name);
        if name == HeaderName::Other && !is_token(raw_name) {
            return Err(ScanError::BadHeaderLine);
        }
        let mut colon = name_end;
        while colon < line.len() && matches!(line[colon], b' ' | b'\t') {
            colon += 1;
        }
        if line.get(colon) != Some(&b':') {
            return Err(ScanError::BadHeaderLine);
        }
        let v = &line[colon + 1..];
        let t = trim(v);
        // Offset of the trimmed value inside the line (folds may sit on either side).
        let v0 = pos + colon + 1 + (t.as_ptr() as usize - v.as_ptr() as usize);
        let value = Span::new(v0, v0 + t.len());
        if self.n_headers >= MAX_HEADERS {
            return Err(ScanError::TooManyHeaders);
        }
        let k = name.index();
        if self.first[k] == NONE {
            self.first[k] = self.n_headers as u8;
        }
        self.count[k] = self.count[k].saturating_add(1);
        self.headers[self.n_headers] = HeaderSlot {
            name,
            raw_name: Span::new(pos, pos + name_end),
            value,
            line: Span::new(pos, next),
        };
        self.n_headers += 1;
        if name == HeaderName::ContentLength {
            // Two Content-Lengths leave the body size unknowable (RFC 4475 mcl01); a sign or
            // garbage is malformed (ncl).
            if self.count[k] > 1 {
                return Err(ScanError::DuplicateContentLength);
            }
            let cl = values::content_length(t).map_err(|_| ScanError::BadContentLength)?;
            self.content_length = Some(cl);
        }
        Ok(())
    }
}

/// One header as slices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderRef<'a> {
    pub name: HeaderName,
    pub raw_name: &'a [u8],
    pub value: &'a [u8],
    pub line: &'a [u8],
    pub slot: HeaderSlot,
}

/// A scanned message: the buffer plus the offsets. Cheap to copy.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    buf: &'a [u8],
    p: &'a Parsed,
}

impl<'a> View<'a> {
    /// Facts parsed on first use (top Via, From, To), shared by validation and the writers.
    #[inline]
    pub(crate) fn memos(&self) -> &'a Memos {
        &self.p.memos
    }

    pub fn new(buf: &'a [u8], parsed: &'a Parsed) -> View<'a> {
        View { buf, p: parsed }
    }

    /// The bytes of a span of this message.
    #[inline]
    pub fn slice(&self, s: Span) -> &'a [u8] {
        s.slice(self.buf)
    }

    /// The whole buffer the message was scanned from (offsets are relative to it).
    pub fn buf(&self) -> &'a [u8] {
        self.buf
    }

    /// The message itself (datagram excess and leading CRLFs excluded).
    pub fn bytes(&self) -> &'a [u8] {
        self.slice(self.p.msg)
    }

    pub fn msg_span(&self) -> Span {
        self.p.msg
    }

    pub fn len(&self) -> usize {
        self.p.msg.len()
    }

    pub fn is_empty(&self) -> bool {
        self.p.msg.is_empty()
    }

    pub fn transport(&self) -> Transport {
        self.p.transport
    }

    pub fn is_request(&self) -> bool {
        self.p.kind == Kind::Request
    }

    pub fn is_response(&self) -> bool {
        self.p.kind == Kind::Response
    }

    pub fn method(&self) -> Method {
        self.p.method
    }

    pub fn method_bytes(&self) -> &'a [u8] {
        self.slice(self.p.method_span)
    }

    pub fn request_uri(&self) -> &'a [u8] {
        self.slice(self.p.uri)
    }

    pub fn version(&self) -> &'a [u8] {
        self.slice(self.p.version)
    }

    /// Status code of a response (0 for a request).
    pub fn status(&self) -> u16 {
        self.p.status
    }

    pub fn reason(&self) -> &'a [u8] {
        self.slice(self.p.reason)
    }

    /// Content-Length as declared (None when absent).
    pub fn content_length(&self) -> Option<u32> {
        self.p.content_length
    }

    /// The value of the first header of that name.
    #[inline]
    pub fn header(&self, name: HeaderName) -> Option<&'a [u8]> {
        self.first_slot(name).map(|s| self.slice(s.value))
    }

    pub fn first_slot(&self, name: HeaderName) -> Option<HeaderSlot> {
        let i = self.p.first[name.index()];
        if i == NONE {
            None
        } else {
            self.p.headers.get(usize::from(i)).copied()
        }
    }

    pub fn header_count(&self, name: HeaderName) -> usize {
        usize::from(self.p.count[name.index()])
    }

    /// Every scanned header line, in order.
    pub fn slots(&self) -> &'a [HeaderSlot] {
        self.p.headers.get(..self.p.n_headers).unwrap_or(&[])
    }

    pub fn headers(&self) -> impl Iterator<Item = HeaderRef<'a>> + 'a {
        let buf = self.buf;
        self.slots().iter().map(move |s| HeaderRef {
            name: s.name,
            raw_name: s.raw_name.slice(buf),
            value: s.value.slice(buf),
            line: s.line.slice(buf),
            slot: *s,
        })
    }

    /// The values of every header line of that name, in order (not split at commas).
    pub fn values(&self, name: HeaderName) -> impl Iterator<Item = &'a [u8]> + 'a {
        let buf = self.buf;
        let first = usize::from(self.p.first[name.index()]);
        self.slots()
            .iter()
            .skip(first)
            .filter(move |s| s.name == name)
            .map(move |s| s.value.slice(buf))
    }

    pub fn body(&self) -> &'a [u8] {
        self.slice(self.p.body)
    }

    pub fn body_span(&self) -> Span {
        self.p.body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"MESSAGE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776;rport\r\n\
Max-Forwards: 70\r\n\
f: <sip:alice@example.com>;tag=1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: abc@192.0.2.1\r\n\
CSeq: 1 MESSAGE\r\n\
Subject: folded\r\n  value\r\n\
l: 5\r\n\
\r\n\
helloEXTRA";

    #[test]
    fn datagram_basics() {
        let mut p = Parsed::new();
        p.scan_datagram(MSG).unwrap();
        let v = p.view(MSG);
        assert!(v.is_request());
        assert_eq!(v.method(), Method::Message);
        assert_eq!(v.request_uri(), b"sip:bob@example.com");
        assert_eq!(v.version(), b"SIP/2.0");
        assert_eq!(
            v.header(HeaderName::From),
            Some(&b"<sip:alice@example.com>;tag=1"[..])
        );
        assert_eq!(
            v.header(HeaderName::Subject),
            Some(&b"folded\r\n  value"[..])
        );
        assert_eq!(v.header_count(HeaderName::Via), 1);
        assert_eq!(v.body(), b"hello");
        assert_eq!(v.len(), MSG.len() - 5);
        assert_eq!(v.headers().count(), 8);
    }

    #[test]
    fn header_names_at_every_block_offset() {
        // The name scan reads 16-byte blocks from wherever a line starts: shift the lines
        // through every offset, with names shorter and longer than a block, one ending the
        // buffer, and names that only a byte-exact compare refuses.
        let mut p = Parsed::new();
        for pad in 0..40 {
            let uri = format!("sip:{}@example.com", "u".repeat(pad + 1));
            let head = format!(
                "MESSAGE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
                 P-Asserted-Identity : <sip:a@b>\r\nX-A-Long-Extension-Header-Name:\tx\r\n\
                 To:<sip:b@c>\r\nf\t: <sip:a@b>;tag=1\r\ni:c\r\nCSeq: 1 MESSAGE\r\n"
            );
            let m = format!("{head}l:0\r\n\r\n");
            p.scan_datagram(m.as_bytes()).unwrap();
            let v = p.view(m.as_bytes());
            let names: Vec<HeaderName> = v.headers().map(|h| h.name).collect();
            use HeaderName::*;
            assert_eq!(
                names,
                [
                    Via,
                    PAssertedIdentity,
                    Other,
                    To,
                    From,
                    CallId,
                    CSeq,
                    ContentLength
                ]
            );
            assert_eq!(v.header(PAssertedIdentity), Some(&b"<sip:a@b>"[..]));
            assert_eq!(v.header(To), Some(&b"<sip:b@c>"[..]));
            let raw: Vec<&[u8]> = v.headers().map(|h| h.raw_name).collect();
            assert_eq!(raw[2], b"X-A-Long-Extension-Header-Name");
            assert_eq!(raw[4], b"f");
            assert_eq!(v.content_length(), Some(0));
            // The last line ends the buffer (no blank line: a datagram may stop there).
            let cut = format!("{head}Content-Length:0");
            p.scan_datagram(cut.as_bytes()).unwrap();
            assert_eq!(p.view(cut.as_bytes()).content_length(), Some(0));
            for bad in [
                "Content\rLength: 0",
                "X-A-Long-Extension{Header-Name: x",
                "X-A-Long-Extension-Header-Name x",
                "Max Forwards: 70",
                ": no name",
                "NoColon",
            ] {
                let m = format!("{head}{bad}\r\nl:0\r\n\r\n");
                let got = p.scan_datagram(m.as_bytes());
                assert!(got.is_err(), "{bad:?} at {pad}: {got:?}");
            }
        }
    }

    #[test]
    fn datagram_without_content_length_runs_to_end() {
        let m = b"OPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h\nFrom: <sip:a@b>;tag=1\nTo: <sip:a@b>\nCall-ID: x\nCSeq: 1 OPTIONS\n\nbody";
        let mut p = Parsed::new();
        p.scan_datagram(m).unwrap();
        assert_eq!(p.view(m).body(), b"body");
    }

    #[test]
    fn datagram_errors() {
        let mut p = Parsed::new();
        let short = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 10\r\n\r\nab";
        assert_eq!(p.scan_datagram(short), Err(ScanError::TruncatedBody));
        let unroutable = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n";
        assert_eq!(p.scan_datagram(unroutable), Err(ScanError::Unroutable));
        let resp = b"SIP/2.0 4294967301 no\r\nVia: SIP/2.0/UDP h\r\n\r\n";
        assert_eq!(p.scan_datagram(resp), Err(ScanError::BadResponse));
        assert_eq!(p.scan_datagram(b""), Err(ScanError::Unroutable));
    }

    #[test]
    fn stream_framing() {
        let mut p = Parsed::new();
        assert_eq!(p.scan_stream(b"", 1000), Ok(Framing::Incomplete));
        assert_eq!(p.scan_stream(b"\r\n", 1000), Ok(Framing::Incomplete));
        assert_eq!(
            p.scan_stream(b"\r\n\r\nX", 1000),
            Ok(Framing::KeepAlive { len: 4 })
        );
        assert_eq!(
            p.scan_stream(b"\r\nOPT", 1000),
            Ok(Framing::Skip { len: 2 })
        );
        for cut in 1..MSG.len() - 5 {
            assert_eq!(
                p.scan_stream(&MSG[..cut], 1000),
                Ok(Framing::Incomplete),
                "{cut}"
            );
        }
        assert_eq!(
            p.scan_stream(MSG, 1000),
            Ok(Framing::Message { len: MSG.len() - 5 })
        );
        assert_eq!(p.view(MSG).body(), b"hello");
        assert_eq!(p.scan_stream(MSG, 100), Err(ScanError::TooLarge));
        let nocl = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n";
        assert_eq!(
            p.scan_stream(nocl, 1000),
            Err(ScanError::MissingContentLength)
        );
    }

    #[test]
    fn too_many_headers() {
        let mut m = b"OPTIONS sip:a@b SIP/2.0\r\n".to_vec();
        for _ in 0..=MAX_HEADERS {
            m.extend_from_slice(b"X: y\r\n");
        }
        m.extend_from_slice(b"\r\n");
        let mut p = Parsed::new();
        assert_eq!(p.scan_datagram(&m), Err(ScanError::Unroutable));
    }
}
