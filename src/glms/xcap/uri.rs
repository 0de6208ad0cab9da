//! XCAP URI parsing (RFC 4825 §6).
//!
//! `<root>/<auid>/users/<xui>/<doc>[/~~/<node-selector>][?xmlns(p=ns)...]` and
//! `<root>/<auid>/global/<doc>...`. The document part is split on `/` before percent-decoding,
//! so an encoded `%2F` in an XUI stays inside its segment; the node selector is split from the
//! document selector at the first `/~~/` (§6: `~~` cannot be in a document selector) and is
//! decoded as a whole, since its steps are split by the selector parser, which knows about
//! quotes.
#![forbid(unsafe_code)]

use super::error::XcapError;

/// The XCAP root path this server uses (SPEC G1).
pub const DEFAULT_ROOT: &str = "/xcap-root";

/// Longest request target we look at (a bound on input).
const MAX_URI_LEN: usize = 8192;
/// Most `xmlns()` bindings in one query.
const MAX_BINDINGS: usize = 32;

/// Which tree of the application usage the document is in (RFC 4825 §6.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tree {
    /// `users/<xui>`: the decoded XUI, e.g. `sip:bob@example.com`.
    Users(String),
    /// `global`.
    Global,
}

/// A parsed XCAP request URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XcapUri {
    /// Root path, without a trailing `/` (e.g. `/xcap-root`).
    pub root: String,
    /// Application unique ID.
    pub auid: String,
    pub tree: Tree,
    /// Document name below the XUI or `global` (decoded; may contain `/` for sub-directories).
    pub doc_name: String,
    /// The decoded node selector, when the URI has `/~~/`.
    pub node_selector: Option<String>,
    /// Prefix bindings from the `xmlns()` query (RFC 4825 §6.4).
    pub ns_bindings: Vec<(String, String)>,
}

impl XcapUri {
    /// Parses a request target (`/xcap-root/...` or an absolute `http(s)://host/xcap-root/...`).
    pub fn parse(target: &str, root: &str) -> Result<XcapUri, XcapError> {
        if target.len() > MAX_URI_LEN {
            return Err(XcapError::BadRequest("request URI too long"));
        }
        let path_and_query = strip_scheme_authority(target);
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let root = root.trim_end_matches('/');
        let rest = path
            .strip_prefix(root)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or(XcapError::NotFound)?;
        // RFC 4825 §6: the node selector separator.
        let (doc_part, sel_part) = match rest.find("/~~/") {
            Some(i) => (&rest[..i], Some(&rest[i + 4..])),
            None => (rest.strip_suffix("/~~").unwrap_or(rest), None),
        };
        let raw_segments: Vec<&str> = doc_part.split('/').collect();
        let mut segments = Vec::with_capacity(raw_segments.len());
        for s in &raw_segments {
            segments.push(percent_decode(s)?);
        }
        // A trailing `/` names a collection, not a document.
        if segments.iter().any(String::is_empty) {
            return Err(XcapError::NotFound);
        }
        let (auid, tree, doc_segments) = match segments.as_slice() {
            [auid, t, xui, doc @ ..] if t == "users" && !doc.is_empty() => {
                (auid.clone(), Tree::Users(xui.clone()), doc)
            }
            [auid, t, doc @ ..] if t == "global" && !doc.is_empty() => {
                (auid.clone(), Tree::Global, doc)
            }
            _ => return Err(XcapError::NotFound),
        };
        let node_selector = match sel_part {
            Some(s) => {
                let d = percent_decode(s)?;
                if d.is_empty() {
                    return Err(XcapError::BadRequest("empty node selector"));
                }
                Some(d)
            }
            None => None,
        };
        let ns_bindings = match query {
            Some(q) if !q.is_empty() => parse_xmlns_query(&percent_decode(q)?)?,
            _ => Vec::new(),
        };
        Ok(XcapUri {
            root: root.to_owned(),
            auid,
            tree,
            doc_name: doc_segments.join("/"),
            node_selector,
            ns_bindings,
        })
    }

    /// The document selector relative to the XCAP root, encoded for use in a URI
    /// (`resource-lists/users/sip:bob@example.com/index`); this is the xcap-diff `sel`.
    pub fn document_selector(&self) -> String {
        let mut s = encode_segment(&self.auid);
        match &self.tree {
            Tree::Users(xui) => {
                s.push_str("/users/");
                s.push_str(&encode_segment(xui));
            }
            Tree::Global => s.push_str("/global"),
        }
        for seg in self.doc_name.split('/') {
            s.push('/');
            s.push_str(&encode_segment(seg));
        }
        s
    }

    /// The document URI (root path plus document selector).
    pub fn document_uri(&self) -> String {
        format!("{}/{}", self.root, self.document_selector())
    }

    /// The user's home directory (or the global directory) of this document, with a trailing
    /// `/`: the closest ancestor of a missing document (RFC 4825 §8.2.1 no-parent).
    pub fn home_uri(&self) -> String {
        let mut s = format!("{}/{}", self.root, encode_segment(&self.auid));
        match &self.tree {
            Tree::Users(xui) => {
                s.push_str("/users/");
                s.push_str(&encode_segment(xui));
            }
            Tree::Global => s.push_str("/global"),
        }
        s.push('/');
        s
    }

    /// URI of a node in this document, for a node selector written in the clear.
    pub fn node_uri(&self, selector: &str) -> String {
        format!("{}/~~/{}", self.document_uri(), encode_selector(selector))
    }
}

fn strip_scheme_authority(target: &str) -> &str {
    for scheme in ["http://", "https://"] {
        // `get` rather than indexing: the target may start with multi-byte characters.
        let head = target.get(..scheme.len());
        if head.is_some_and(|h| h.eq_ignore_ascii_case(scheme)) {
            let after = target.get(scheme.len()..).unwrap_or("");
            return match after.find('/') {
                Some(i) => &after[i..],
                None => "/",
            };
        }
    }
    target
}

/// Decodes `%XX` escapes; the result must be UTF-8.
pub fn percent_decode(s: &str) -> Result<String, XcapError> {
    if !s.contains('%') {
        return Ok(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(XcapError::BadRequest("bad percent-encoding"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| XcapError::BadRequest("percent-encoding is not UTF-8"))
}

fn encode_with(s: &str, keep: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || keep(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Encodes one path segment (RFC 3986 pchar): keeps unreserved, sub-delims, `:` and `@`.
pub fn encode_segment(s: &str) -> String {
    encode_with(s, |b| b"-._~!$&'()*+,;=:@".contains(&b))
}

/// Encodes a node selector for a URI: like a segment but keeps `/`, and encodes `"`, `[`, `]`
/// (RFC 4825 §6.3 notes these must be escaped).
pub fn encode_selector(s: &str) -> String {
    encode_with(s, |b| b"-._~!$&'()*+,;=:@/".contains(&b))
}

/// Parses the XPointer `xmlns()` scheme query (RFC 4825 §6.4), with `^` escapes.
fn parse_xmlns_query(q: &str) -> Result<Vec<(String, String)>, XcapError> {
    const BAD: XcapError = XcapError::BadRequest("bad xmlns() query");
    let mut out = Vec::new();
    let mut rest = q.trim();
    while !rest.is_empty() {
        if out.len() >= MAX_BINDINGS {
            return Err(BAD);
        }
        let body = rest.strip_prefix("xmlns(").ok_or(BAD)?;
        let (prefix, after) = body.split_once('=').ok_or(BAD)?;
        let prefix = prefix.trim();
        if !super::dom::is_ncname(prefix) {
            return Err(BAD);
        }
        let mut uri = String::new();
        let mut chars = after.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '^' => match chars.next() {
                    Some((_, e @ ('^' | '(' | ')'))) => uri.push(e),
                    _ => return Err(BAD),
                },
                ')' => {
                    end = Some(i);
                    break;
                }
                _ => uri.push(c),
            }
        }
        let end = end.ok_or(BAD)?;
        let uri = uri.trim().to_owned();
        if uri.is_empty() {
            return Err(BAD);
        }
        out.push((prefix.to_owned(), uri));
        rest = after[end + 1..].trim_start();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<XcapUri, XcapError> {
        XcapUri::parse(s, DEFAULT_ROOT)
    }

    #[test]
    fn document_uris() {
        let u = p("/xcap-root/resource-lists/users/sip:bob@example.com/index").expect("ok");
        assert_eq!(u.auid, "resource-lists");
        assert_eq!(u.tree, Tree::Users("sip:bob@example.com".into()));
        assert_eq!(u.doc_name, "index");
        assert_eq!(u.node_selector, None);
        assert_eq!(
            u.document_selector(),
            "resource-lists/users/sip:bob@example.com/index"
        );
        assert_eq!(
            u.home_uri(),
            "/xcap-root/resource-lists/users/sip:bob@example.com/"
        );

        let enc = p("/xcap-root/resource-lists/users/sip:bob%40example.com/index").expect("ok");
        assert_eq!(enc.tree, Tree::Users("sip:bob@example.com".into()));

        let g = p("http://xcap.example.com/xcap-root/xcap-caps/global/index").expect("ok");
        assert_eq!(g.tree, Tree::Global);
        assert_eq!(g.auid, "xcap-caps");

        let sub = p("/xcap-root/resource-lists/users/sip:a@b/dir/doc").expect("ok");
        assert_eq!(sub.doc_name, "dir/doc");

        let slash = p("/xcap-root/resource-lists/users/sip:a%2Fb@c/index").expect("ok");
        assert_eq!(slash.tree, Tree::Users("sip:a/b@c".into()));
        assert_eq!(
            slash.document_selector(),
            "resource-lists/users/sip:a%2Fb@c/index"
        );
    }

    #[test]
    fn node_selector_and_query() {
        // SPEC 4.2.
        let u = p("/xcap-root/resource-lists/users/sip:bob@example.com/index/~~/resource-lists/list%5b@name=%22oma_blockedcontacts%22%5d/entry%5b@uri=%22sip:tom@example.com%22%5d").expect("ok");
        assert_eq!(
            u.node_selector.as_deref(),
            Some(
                "resource-lists/list[@name=\"oma_blockedcontacts\"]/entry[@uri=\"sip:tom@example.com\"]"
            )
        );
        assert_eq!(u.doc_name, "index");

        // RFC 4825 §6.4 example style.
        let q = p("/xcap-root/resource-lists/users/sip:a@b/index/~~/r:resource-lists/r:list?xmlns(r=urn:ietf:params:xml:ns:resource-lists)xmlns(x=urn:x^)y)").expect("ok");
        assert_eq!(
            q.ns_bindings,
            vec![
                (
                    "r".to_owned(),
                    "urn:ietf:params:xml:ns:resource-lists".to_owned()
                ),
                ("x".to_owned(), "urn:x)y".to_owned())
            ]
        );
        let enc = p("/xcap-root/a/users/x/index/~~/r:a%3Fb?xmlns%28r%3Durn%3Aa%29").expect("ok");
        assert_eq!(enc.ns_bindings, vec![("r".to_owned(), "urn:a".to_owned())]);
        assert_eq!(enc.node_selector.as_deref(), Some("r:a?b"));

        let n = u.node_uri("resource-lists/list[@name=\"x y\"]");
        assert!(
            n.ends_with("/index/~~/resource-lists/list%5B@name=%22x%20y%22%5D"),
            "{n}"
        );
    }

    #[test]
    fn bad_uris() {
        let cases: &[(&str, u16)] = &[
            ("/other/resource-lists/users/x/index", 404),
            ("/xcap-root", 404),
            ("/xcap-root/", 404),
            ("/xcap-root/resource-lists", 404),
            ("/xcap-root/resource-lists/users/sip:a@b", 404),
            ("/xcap-root/resource-lists/users/sip:a@b/", 404),
            ("/xcap-root/resource-lists/nobody/sip:a@b/index", 404),
            ("/xcap-root/resource-lists/global/", 404),
            ("/xcap-root/resource-lists/users/sip%ZZ/index", 400),
            ("/xcap-root/resource-lists/users/%FF/index", 400),
            ("/xcap-root/resource-lists/users/a/index/~~/", 400),
            ("/xcap-root/resource-lists/users/a/index?xmlns(", 400),
            ("/xcap-root/resource-lists/users/a/index?xmlns(p=)", 400),
            ("/xcap-root/resource-lists/users/a/index?foo=bar", 400),
            ("/xcap-root/resource-lists/users/a/index?xmlns(1=u)", 400),
        ];
        for (uri, status) in cases {
            let got = p(uri).err().map(|e| e.status());
            assert_eq!(got, Some(*status), "{uri}");
        }
        assert_eq!(p("ééééééé/xcap-root").err(), Some(XcapError::NotFound));
        let long = format!("/xcap-root/{}", "a".repeat(MAX_URI_LEN));
        assert!(p(&long).is_err());
    }
}
