//! A slow, obviously-correct reference parser used only by tests (property tests compare it
//! with the fast scanner). It allocates freely: it unfolds continuation lines first, then
//! splits header lines at the first colon, and normalises whitespace in values.
#![forbid(unsafe_code)]

use super::hdr::HeaderName;

/// One header as the reference sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefHeader {
    pub name: HeaderName,
    pub raw_name: Vec<u8>,
    /// Value with folds unfolded and every whitespace run collapsed to one space.
    pub value: Vec<u8>,
}

/// The facts the reference extracts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefMessage {
    pub is_request: bool,
    pub method: Vec<u8>,
    pub request_uri: Vec<u8>,
    pub status: u16,
    pub headers: Vec<RefHeader>,
    pub body: Vec<u8>,
}

/// Collapses runs of SP/HT/CR/LF to one space and trims.
pub fn normalize(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ws = false;
    for &b in v {
        if matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
            ws = true;
        } else {
            if ws && !out.is_empty() {
                out.push(b' ');
            }
            ws = false;
            out.push(b);
        }
    }
    out
}

/// Removes the spaces around separators, for comparing structured values: `a ; b = c` and
/// `a;b=c` read the same.
pub fn squeeze(v: &[u8]) -> Vec<u8> {
    let n = normalize(v);
    let mut out: Vec<u8> = Vec::new();
    for (i, &b) in n.iter().enumerate() {
        if b == b' ' {
            let prev = out.last().copied();
            let next = n.get(i + 1).copied();
            let sep = |c: Option<u8>| matches!(c, Some(b';' | b'=' | b'/' | b',' | b':'));
            if sep(prev) || sep(next) {
                continue;
            }
        }
        out.push(b);
    }
    out
}

impl RefMessage {
    /// Values of every header with that name, in order.
    pub fn values(&self, name: HeaderName) -> Vec<&[u8]> {
        self.headers
            .iter()
            .filter(|h| h.name == name)
            .map(|h| h.value.as_slice())
            .collect()
    }

    /// Via values split at commas and squeezed (`SIP/2.0/UDP host:port;branch=x`).
    pub fn via_elements(&self) -> Vec<Vec<u8>> {
        self.values(HeaderName::Via)
            .iter()
            .flat_map(|v| v.split(|&b| b == b','))
            .map(squeeze)
            .collect()
    }

    /// A parameter of a squeezed value (`;name=value`), by plain string search.
    pub fn param(squeezed: &[u8], name: &str) -> Option<Vec<u8>> {
        let s = String::from_utf8_lossy(squeezed).to_string();
        let lower = s.to_ascii_lowercase();
        let key = format!(";{}=", name.to_ascii_lowercase());
        let at = lower.find(&key)? + key.len();
        let rest = &s[at..];
        let end = rest.find([';', ',', '>']).unwrap_or(rest.len());
        Some(rest.as_bytes()[..end].to_vec())
    }

    /// sent-by host and port of a squeezed Via element.
    pub fn via_sent_by(squeezed: &[u8]) -> (Vec<u8>, Option<u16>) {
        let s = String::from_utf8_lossy(squeezed).to_string();
        let after = s.split_once(' ').map(|x| x.1).unwrap_or("");
        let sent_by = after.split(';').next().unwrap_or("");
        if let Some(v6) = sent_by.strip_prefix('[') {
            let (inner, tail) = v6.split_once(']').unwrap_or((v6, ""));
            let host = format!("[{inner}]").into_bytes();
            return (host, tail.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
        match sent_by.split_once(':') {
            Some((h, p)) => (h.as_bytes().to_vec(), p.parse().ok()),
            None => (sent_by.as_bytes().to_vec(), None),
        }
    }
}

/// Parses a whole datagram. `None` when there is no start line or no colon in a header line.
pub fn parse(buf: &[u8]) -> Option<RefMessage> {
    // 1. Split into lines (CRLF or LF), remembering where the head ends.
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut i = 0;
    let mut body_start = buf.len();
    loop {
        if i >= buf.len() {
            break;
        }
        let nl = buf[i..].iter().position(|&b| b == b'\n').map(|p| p + i);
        let (line, next) = match nl {
            Some(n) => (&buf[i..n], n + 1),
            None => (&buf[i..], buf.len()),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        i = next;
        if line.is_empty() && !lines.is_empty() {
            body_start = i;
            break;
        }
        lines.push(line.to_vec());
    }
    // 2. Unfold: a line starting with SP/HT continues the previous one.
    let mut unfolded: Vec<Vec<u8>> = Vec::new();
    for l in lines {
        if matches!(l.first(), Some(b' ' | b'\t')) && unfolded.len() > 1 {
            let last = unfolded.last_mut()?;
            last.push(b' ');
            last.extend_from_slice(&l);
        } else {
            unfolded.push(l);
        }
    }
    let start = unfolded.first()?.clone();
    let start_s = String::from_utf8_lossy(&start).to_string();
    let words: Vec<&str> = start_s.split_whitespace().collect();
    let (is_request, method, request_uri, status) = if start_s.starts_with("SIP/") {
        (false, Vec::new(), Vec::new(), words.get(1)?.parse().ok()?)
    } else {
        (
            true,
            words.first()?.as_bytes().to_vec(),
            words.get(1)?.as_bytes().to_vec(),
            0,
        )
    };
    // 3. Headers: name before the first colon, value after it.
    let mut headers = Vec::new();
    for l in &unfolded[1..] {
        let colon = l.iter().position(|&b| b == b':')?;
        let raw_name: Vec<u8> = normalize(&l[..colon]);
        headers.push(RefHeader {
            name: HeaderName::lookup(&raw_name),
            raw_name,
            value: normalize(&l[colon + 1..]),
        });
    }
    // 4. Body: Content-Length bytes if declared, else the rest.
    let rest = &buf[body_start.min(buf.len())..];
    let cl = headers
        .iter()
        .find(|h| h.name == HeaderName::ContentLength)
        .and_then(|h| String::from_utf8_lossy(&h.value).parse::<usize>().ok());
    let body = match cl {
        Some(n) => rest.get(..n)?.to_vec(),
        None => rest.to_vec(),
    };
    Some(RefMessage {
        is_request,
        method,
        request_uri,
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfolds_and_normalises() {
        let m = parse(b"OPTIONS sip:a@b SIP/2.0\r\nSubject: a\r\n  b\r\nv: SIP / 2.0 / UDP h ; branch = x\r\nl: 2\r\n\r\nhiXX").unwrap();
        assert_eq!(m.values(HeaderName::Subject), vec![&b"a b"[..]]);
        assert_eq!(m.via_elements(), vec![b"SIP/2.0/UDP h;branch=x".to_vec()]);
        assert_eq!(m.body, b"hi");
        let v = &m.via_elements()[0];
        assert_eq!(RefMessage::param(v, "branch"), Some(b"x".to_vec()));
        assert_eq!(RefMessage::via_sent_by(v), (b"h".to_vec(), None));
    }
}
