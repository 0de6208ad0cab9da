//! Resource-lists walking for the policy compiler (RFC 4826 §3.2, SPEC D2 item 1): the entries
//! of a `<list>`, its nested lists, and the `<entry-ref>` / `<external>` references it makes
//! inside the same XCAP root, followed at most [`MAX_REF_DEPTH`] hops deep, each list visited
//! once (a cycle ends where it closes).
#![forbid(unsafe_code)]

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use crate::glms::xcap::XcapUri;
use crate::glms::xcap::dom::{Document, Element, Limits, parse_document};
use crate::glms::xcap::selector::{Dialect, parse as parse_selector, select};
use crate::policy::{IdBuf, Identity, normalize};

use super::compile::{Warning, WarningKind, Warnings, XcapRef};

/// The resource-lists namespace (RFC 4826 §3.1).
pub const RL_NS: &str = "urn:ietf:params:xml:ns:resource-lists";
/// The resource-lists AUID (RFC 4826 §3.4).
pub const RL_AUID: &str = "resource-lists";
/// The most reference hops (`<entry-ref>`, `<external>`) followed from a top-level list (D2).
pub const MAX_REF_DEPTH: usize = 4;
/// The most distinct documents one compile asks the resolver for (a limit on everything).
pub const MAX_RESOLVED_DOCS: usize = 32;
/// The most list and entry elements one compile visits.
const MAX_VISITS: usize = 200_000;

/// Where references may point: the configured XCAP root (SPEC G1). An absolute reference must
/// carry the same authority when the root has one; every reference must be below the root path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Root {
    /// `host[:port]`, lowercased; `None` accepts any authority (root given as a bare path).
    authority: Option<String>,
    /// The root path without a trailing `/`, e.g. `/xcap-root`.
    path: String,
}

impl Root {
    /// From `http://host:port/xcap-root` or from a bare path `/xcap-root`.
    pub fn parse(root: &str) -> Root {
        let root = root.trim().trim_end_matches('/');
        for scheme in ["http://", "https://"] {
            if let Some(after) = strip_prefix_ci(root, scheme) {
                let (authority, path) = match after.find('/') {
                    Some(i) => (&after[..i], &after[i..]),
                    None => (after, ""),
                };
                return Root {
                    authority: Some(authority.to_ascii_lowercase()),
                    path: path.to_owned(),
                };
            }
        }
        Root {
            authority: None,
            path: root.to_owned(),
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Parses a reference (absolute URI, absolute path, or a path relative to the root as RFC
    /// 4826 §3.2 writes `entry-ref`'s `ref`) into an XCAP URI inside this root.
    pub fn locate(&self, reference: &str) -> Result<XcapUri, WarningKind> {
        let reference = reference.trim();
        let target = if let Some(after) = ["http://", "https://"]
            .iter()
            .find_map(|s| strip_prefix_ci(reference, s))
        {
            // RFC 4826 §3.2: `external` anchors are absolute; D2: only inside our own root.
            let authority = after.split('/').next().unwrap_or("");
            if let Some(ours) = &self.authority
                && !authority.eq_ignore_ascii_case(ours)
            {
                return Err(WarningKind::ForeignRoot);
            }
            reference.to_owned()
        } else if reference.starts_with('/') {
            reference.to_owned()
        } else {
            format!("{}/{}", self.path, reference)
        };
        XcapUri::parse(&target, &self.path).map_err(|_| WarningKind::ForeignRoot)
    }
}

impl Default for Root {
    fn default() -> Self {
        Root::parse(crate::glms::xcap::DEFAULT_ROOT)
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

/// One compile's view of referenced documents: each resolved and parsed once.
pub struct Walker<'r> {
    root: Root,
    resolve: &'r mut dyn FnMut(&XcapRef) -> Option<Vec<u8>>,
    docs: HashMap<String, Option<Rc<Document>>>,
    visited: HashSet<(String, Vec<usize>)>,
    visits: usize,
    /// Documents asked for that the resolver did not have (the machine fetches them).
    pub unresolved: Vec<String>,
    /// Documents consulted through references.
    pub referenced: Vec<String>,
}

/// Key of a list in the document being compiled (not a resolvable selector).
const SELF_KEY: &str = "";

impl<'r> Walker<'r> {
    pub fn new(root: Root, resolve: &'r mut dyn FnMut(&XcapRef) -> Option<Vec<u8>>) -> Self {
        Walker {
            root,
            resolve,
            docs: HashMap::new(),
            visited: HashSet::new(),
            visits: 0,
            unresolved: Vec::new(),
            referenced: Vec::new(),
        }
    }

    /// Collects every identity of the top-level list at `path` of the compiled document.
    pub fn walk_own_list(
        &mut self,
        doc: &Document,
        path: Vec<usize>,
        out: &mut Vec<Identity>,
        warnings: &mut Warnings,
    ) {
        self.walk_list(doc, SELF_KEY, path, 0, out, warnings);
    }

    /// Collects the identities of the list an XCAP URI points at (`<external anchor>`, OMA
    /// `<external-list><entry anc>`), counting that hop as depth 1.
    pub fn walk_reference(&mut self, anchor: &str, out: &mut Vec<Identity>, w: &mut Warnings) {
        self.follow_external(anchor, 1, out, w);
    }

    fn walk_list(
        &mut self,
        doc: &Document,
        key: &str,
        path: Vec<usize>,
        depth: usize,
        out: &mut Vec<Identity>,
        w: &mut Warnings,
    ) {
        // D2: cycles are ignored; a list already walked contributes nothing more.
        if !self.visited.insert((key.to_owned(), path.clone())) {
            return;
        }
        let Some(list) = doc.at(&path) else { return };
        let mut child_path = path.clone();
        for (i, child) in list.child_elements() {
            self.visits += 1;
            if self.visits > MAX_VISITS {
                w.push(Warning::new(
                    WarningKind::LimitReached,
                    "list walk too long",
                ));
                return;
            }
            // RFC 4826 §3.2: elements from other namespaces are extensions; skip them.
            if child.name.ns.as_deref() != Some(RL_NS) {
                continue;
            }
            match child.name.local.as_str() {
                "entry" => push_entry(child, out, w),
                "list" => {
                    child_path.push(i);
                    self.walk_list(doc, key, child_path.clone(), depth, out, w);
                    child_path.pop();
                }
                "entry-ref" => match child.attr("ref") {
                    Some(r) => self.follow_entry_ref(r, depth + 1, out, w),
                    None => w.push(Warning::new(
                        WarningKind::BadReference,
                        "entry-ref without ref",
                    )),
                },
                "external" => match child.attr("anchor") {
                    Some(a) => self.follow_external(a, depth + 1, out, w),
                    None => w.push(Warning::new(
                        WarningKind::BadReference,
                        "external without anchor",
                    )),
                },
                _ => {}
            }
        }
    }

    fn follow_external(
        &mut self,
        anchor: &str,
        depth: usize,
        out: &mut Vec<Identity>,
        w: &mut Warnings,
    ) {
        let Some((key, doc, paths)) = self.target(anchor, depth, w) else {
            return;
        };
        for path in paths {
            match doc.at(&path) {
                Some(e) if e.name.is(RL_NS, "list") => {
                    self.walk_list(&doc, &key, path, depth, out, w);
                }
                _ => w.push(Warning::new(WarningKind::NotAList, anchor)),
            }
        }
    }

    fn follow_entry_ref(
        &mut self,
        reference: &str,
        depth: usize,
        out: &mut Vec<Identity>,
        w: &mut Warnings,
    ) {
        let Some((_, doc, paths)) = self.target(reference, depth, w) else {
            return;
        };
        for path in paths {
            match doc.at(&path) {
                // RFC 4826 §3.2: entry-ref points at an <entry>; its uri is the member.
                Some(e) if e.name.is(RL_NS, "entry") => push_entry(e, out, w),
                _ => w.push(Warning::new(WarningKind::NotAnEntry, reference)),
            }
        }
    }

    /// Resolves a reference to `(document key, document, selected element paths)`.
    fn target(
        &mut self,
        reference: &str,
        depth: usize,
        w: &mut Warnings,
    ) -> Option<(String, Rc<Document>, Vec<Vec<usize>>)> {
        if depth > MAX_REF_DEPTH {
            // D2: references are followed at most 4 deep.
            w.push(Warning::new(WarningKind::DepthLimit, reference));
            return None;
        }
        let uri = match self.root.locate(reference) {
            Ok(u) => u,
            Err(kind) => {
                w.push(Warning::new(kind, reference));
                return None;
            }
        };
        if uri.auid != RL_AUID {
            w.push(Warning::new(WarningKind::BadReference, reference));
            return None;
        }
        let Some(node_selector) = uri.node_selector.clone() else {
            // RFC 4826 §3.2: an anchor names a <list>, never a whole document.
            w.push(Warning::new(WarningKind::BadReference, reference));
            return None;
        };
        let xref = XcapRef {
            document: uri.document_selector(),
            node_selector: Some(node_selector.clone()),
            ns_bindings: uri.ns_bindings.clone(),
        };
        let doc = self.document(&xref, w)?;
        let dialect = Dialect::Xcap {
            default_ns: RL_NS,
            bindings: &uri.ns_bindings,
        };
        let sel = match parse_selector(&node_selector, dialect) {
            Ok(s) if s.terminal.is_none() => s,
            _ => {
                w.push(Warning::new(WarningKind::BadReference, reference));
                return None;
            }
        };
        let paths = select(&doc, &sel.steps);
        if paths.is_empty() {
            w.push(Warning::new(WarningKind::Unresolved, reference));
            return None;
        }
        Some((xref.document, doc, paths))
    }

    fn document(&mut self, xref: &XcapRef, w: &mut Warnings) -> Option<Rc<Document>> {
        if let Some(cached) = self.docs.get(&xref.document) {
            return cached.clone();
        }
        if self.docs.len() >= MAX_RESOLVED_DOCS {
            w.push(Warning::new(WarningKind::LimitReached, &xref.document));
            return None;
        }
        let parsed = match (self.resolve)(xref) {
            Some(bytes) => match parse_document(&bytes, &Limits::DEFAULT) {
                Ok(d) => Some(Rc::new(d)),
                Err(_) => {
                    // A broken referenced document is not the user's own: warn, go on.
                    w.push(Warning::new(WarningKind::Unresolved, &xref.document));
                    None
                }
            },
            None => {
                w.push(Warning::new(WarningKind::Unresolved, &xref.document));
                self.unresolved.push(xref.document.clone());
                None
            }
        };
        if parsed.is_some() {
            self.referenced.push(xref.document.clone());
        }
        self.docs.insert(xref.document.clone(), parsed.clone());
        parsed
    }
}

/// RFC 4826 §3.2 `<entry uri>`: normalised (D8); one that does not normalise is a warning.
fn push_entry(entry: &Element, out: &mut Vec<Identity>, w: &mut Warnings) {
    let Some(uri) = entry.attr("uri") else {
        w.push(Warning::new(WarningKind::BadEntryUri, "entry without uri"));
        return;
    };
    let mut buf = IdBuf::new();
    match normalize(uri.as_bytes(), &mut buf) {
        Ok(()) => out.push(Identity::from(&buf)),
        Err(_) => w.push(Warning::new(WarningKind::BadEntryUri, uri)),
    }
}

/// The top-level `<list name=…>` of a resource-lists document (RFC 4826 §3.2: names are unique
/// among siblings).
pub fn top_level_list(doc: &Document, name: &str) -> Option<Vec<usize>> {
    doc.root
        .child_elements()
        .find(|(_, e)| e.name.is(RL_NS, "list") && e.attr("name") == Some(name))
        .map(|(i, _)| vec![i])
}
