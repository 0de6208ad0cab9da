//! xcap-diff documents (RFC 5874): writing them for the notifier, reading them for the IM
//! Server's subscriber.
//!
//! The four shapes of a `<document>` (RFC 5874 §3):
//! ```text
//! previous-etag  new-etag  content            meaning
//!      -           yyy     -                  exists / created (full state): GET if cached != yyy
//!     xxx          yyy     add/replace/remove patch to apply when cached == xxx
//!     xxx          yyy     -                  changed: GET
//!     xxx          yyy     <body-not-changed> only the ETag changed
//!     xxx           -      -                  removed
//! ```
//! Reading strips a leading absolute xcap-root from `sel` (SPEC 3.7: OpenXCAP writes absolute
//! URIs where RFC 5874 wants relative ones).
#![forbid(unsafe_code)]

use super::dom::{
    Document, Element, Limits, Node, NsScope, QName, escape_attr_into, fixup_namespaces,
    parse_document, split_qname, write_node,
};
use super::etag::ETag;
use super::ops::Change;
use super::patch::{AddContent, PatchOp, PatchSel, Pos, ReplaceContent, Ws};
use super::selector::{self, Dialect};

/// Namespace of xcap-diff documents.
pub const XCAP_DIFF_NS: &str = "urn:ietf:params:xml:ns:xcap-diff";
/// MIME type of xcap-diff documents.
pub const XCAP_DIFF_MIME: &str = "application/xcap-diff+xml";

/// Most entries read from one xcap-diff document.
const MAX_ENTRIES: usize = 1024;

/// The content of a `<document>` to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryBody {
    /// Nothing: the ETags say it all.
    None,
    /// An RFC 5261 patch.
    Patch(Vec<PatchOp>),
    /// `<body-not-changed/>`.
    BodyNotChanged,
}

/// One `<document>` of an xcap-diff document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentEntry {
    /// Document selector relative to the xcap-root (`resource-lists/users/<xui>/index`).
    pub sel: String,
    pub previous_etag: Option<ETag>,
    pub new_etag: Option<ETag>,
    pub body: EntryBody,
}

impl DocumentEntry {
    /// Full state (initial NOTIFY): the document exists with this ETag.
    pub fn full_state(sel: &str, new_etag: ETag) -> DocumentEntry {
        DocumentEntry {
            sel: sel.to_owned(),
            previous_etag: None,
            new_etag: Some(new_etag),
            body: EntryBody::None,
        }
    }

    /// The document was removed.
    pub fn deleted(sel: &str, previous_etag: ETag) -> DocumentEntry {
        DocumentEntry {
            sel: sel.to_owned(),
            previous_etag: Some(previous_etag),
            new_etag: None,
            body: EntryBody::None,
        }
    }

    /// Only the ETag changed.
    pub fn body_not_changed(sel: &str, previous_etag: ETag, new_etag: ETag) -> DocumentEntry {
        DocumentEntry {
            sel: sel.to_owned(),
            previous_etag: Some(previous_etag),
            new_etag: Some(new_etag),
            body: EntryBody::BodyNotChanged,
        }
    }

    /// The entry for one or more consecutive changes of a document, between the ETag before
    /// the first and the ETag after the last (`None` = the document did not exist). With
    /// `with_patch` (the subscriber asked for `xcap-patching` or `aggregate`) the changes are
    /// merged into one patch when every one of them has a patch; otherwise no patch is sent
    /// and the subscriber GETs the document. `None` when nothing is left to report (created
    /// and deleted within the window).
    pub fn for_changes(
        sel: &str,
        previous_etag: Option<ETag>,
        new_etag: Option<ETag>,
        changes: &[Change],
        with_patch: bool,
    ) -> Option<DocumentEntry> {
        let body = match (&previous_etag, &new_etag) {
            (None, None) => return None,
            (Some(_), Some(_)) if with_patch => {
                aggregate(changes).map_or(EntryBody::None, EntryBody::Patch)
            }
            _ => EntryBody::None,
        };
        Some(DocumentEntry {
            sel: sel.to_owned(),
            previous_etag,
            new_etag,
            body,
        })
    }
}

/// Merges consecutive changes into one patch: the operations in order (RFC 5261 applies each
/// to the result of the previous). `None` when some change has no patch (document created,
/// replaced or deleted), or when there are none.
pub fn aggregate(changes: &[Change]) -> Option<Vec<PatchOp>> {
    if changes.is_empty() {
        return None;
    }
    let mut ops = Vec::new();
    for c in changes {
        match c {
            Change::Patched(p) => ops.extend(p.iter().cloned()),
            _ => return None,
        }
    }
    Some(ops)
}

// -------------------------------------------------------------------------------------------
// Writing
// -------------------------------------------------------------------------------------------

/// Writes an `application/xcap-diff+xml` document.
pub fn write_xcap_diff(xcap_root: &str, entries: &[DocumentEntry]) -> Vec<u8> {
    // Prefixes every operation agrees on are declared once on the root (as in SPEC 3.5).
    let mut root_bindings: Vec<(String, String)> = Vec::new();
    let mut conflicting: Vec<String> = Vec::new();
    for e in entries {
        let EntryBody::Patch(ops) = &e.body else {
            continue;
        };
        for op in ops {
            for (p, u) in op.sel().scope.effective() {
                let Some(p) = p else { continue };
                match root_bindings.iter().find(|(q, _)| *q == p) {
                    Some((_, v)) if *v != u => conflicting.push(p),
                    Some(_) => {}
                    None => root_bindings.push((p, u)),
                }
            }
        }
    }
    root_bindings.retain(|(p, _)| !conflicting.contains(p));
    let mut root_scope = NsScope::new();
    root_scope.bind(None, XCAP_DIFF_NS);
    for (p, u) in &root_bindings {
        root_scope.bind(Some(p), u);
    }

    let mut out = String::with_capacity(512);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xcap-diff xmlns=\"");
    out.push_str(XCAP_DIFF_NS);
    out.push('"');
    for (p, u) in &root_bindings {
        out.push_str(&format!(" xmlns:{p}=\""));
        escape_attr_into(u, &mut out);
        out.push('"');
    }
    out.push_str(" xcap-root=\"");
    escape_attr_into(xcap_root, &mut out);
    out.push_str("\">\n");
    for e in entries {
        write_entry(e, &root_scope, &mut out);
    }
    out.push_str("</xcap-diff>\n");
    out.into_bytes()
}

fn push_attr(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    escape_attr_into(value, out);
    out.push('"');
}

fn write_entry(e: &DocumentEntry, root_scope: &NsScope, out: &mut String) {
    out.push_str("  <document");
    push_attr(out, "sel", &e.sel);
    if let Some(t) = &e.previous_etag {
        push_attr(out, "previous-etag", t.as_str());
    }
    if let Some(t) = &e.new_etag {
        push_attr(out, "new-etag", t.as_str());
    }
    match &e.body {
        EntryBody::None => out.push_str("/>\n"),
        EntryBody::BodyNotChanged => out.push_str("><body-not-changed/></document>\n"),
        EntryBody::Patch(ops) => {
            out.push_str(">\n");
            for op in ops {
                write_op(op, root_scope, out);
            }
            out.push_str("  </document>\n");
        }
    }
}

/// Declarations an operation element needs on top of `outer` so that its selector (and an
/// attribute `type`) mean what they meant where the operation was made.
fn op_decls(op: &PatchOp, outer: &NsScope) -> Vec<(Option<String>, String)> {
    let own = &op.sel().scope;
    let parse = |scope: &NsScope| selector::parse(&op.sel().text, Dialect::Patch { scope }).ok();
    let mut needed: Vec<(Option<String>, String)> = Vec::new();
    if parse(own) != parse(outer) {
        for (p, u) in own.effective() {
            if outer.lookup(p.as_deref()) != Some(u.as_str()) {
                needed.push((p, u));
            }
        }
        let own_default = own.lookup(None).unwrap_or("");
        if own_default.is_empty() && outer.default_ns().is_some() {
            needed.push((None, String::new()));
        }
    }
    if let PatchOp::Add {
        content: AddContent::Attribute { name, .. },
        ..
    } = op
        && let (Some(p), Some(ns)) = (&name.prefix, &name.ns)
        && outer.lookup(Some(p)) != Some(ns.as_str())
        && !needed.iter().any(|(q, _)| q.as_deref() == Some(p.as_str()))
    {
        needed.push((Some(p.clone()), ns.clone()));
    }
    needed
}

fn write_op(op: &PatchOp, root_scope: &NsScope, out: &mut String) {
    let decls = op_decls(op, root_scope);
    let mut scope = root_scope.clone();
    for (p, u) in &decls {
        scope.bind(p.as_deref(), u);
    }
    let tag = match op {
        PatchOp::Add { .. } => "add",
        PatchOp::Replace { .. } => "replace",
        PatchOp::Remove { .. } => "remove",
    };
    out.push_str("    <");
    out.push_str(tag);
    for (p, u) in &decls {
        match p {
            Some(p) => push_attr(out, &format!("xmlns:{p}"), u),
            None => push_attr(out, "xmlns", u),
        }
    }
    push_attr(out, "sel", &op.sel().text);
    let mut content = String::new();
    match op {
        PatchOp::Add {
            pos, content: c, ..
        } => {
            if let Some(pos) = pos {
                let v = match pos {
                    Pos::Before => "before",
                    Pos::After => "after",
                    Pos::Prepend => "prepend",
                };
                push_attr(out, "pos", v);
            }
            match c {
                AddContent::Nodes(nodes) => write_nodes(nodes, &scope, &mut content),
                AddContent::Attribute { name, value } => {
                    push_attr(out, "type", &format!("@{}", name.qualified()));
                    super::dom::escape_text_into(value, &mut content);
                }
                AddContent::Namespace { prefix, uri } => {
                    push_attr(out, "type", &format!("namespace::{prefix}"));
                    super::dom::escape_text_into(uri, &mut content);
                }
            }
        }
        PatchOp::Replace { content: c, .. } => match c {
            ReplaceContent::Element(e) => write_nodes(
                std::slice::from_ref(&Node::Element(e.clone())),
                &scope,
                &mut content,
            ),
            ReplaceContent::Text(t) => super::dom::escape_text_into(t, &mut content),
        },
        PatchOp::Remove { ws, .. } => {
            if let Some(ws) = ws {
                let v = match ws {
                    Ws::Before => "before",
                    Ws::After => "after",
                    Ws::Both => "both",
                };
                push_attr(out, "ws", v);
            }
        }
    }
    if content.is_empty() {
        out.push_str("/>\n");
    } else {
        out.push('>');
        out.push_str(&content);
        out.push_str("</");
        out.push_str(tag);
        out.push_str(">\n");
    }
}

/// Writes nodes inside an operation element; elements get the declarations they need there.
fn write_nodes(nodes: &[Node], scope: &NsScope, out: &mut String) {
    for n in nodes {
        match n {
            Node::Element(e) => {
                let mut e = e.clone();
                fixup_namespaces(&mut e, scope);
                write_node(&Node::Element(e), out);
            }
            other => write_node(other, out),
        }
    }
}

// -------------------------------------------------------------------------------------------
// Reading
// -------------------------------------------------------------------------------------------

/// Why an xcap-diff body was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DiffError {
    #[error("xcap-diff body is not well-formed")]
    NotWellFormed,
    #[error("root element is not xcap-diff")]
    NotXcapDiff,
    #[error("xcap-root attribute missing")]
    MissingXcapRoot,
    #[error("entry without sel")]
    MissingSel,
    #[error("malformed patch operation")]
    BadPatch,
    #[error("too many entries")]
    TooMany,
}

/// Which kind of xcap-diff entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Document,
    Element,
    Attribute,
}

/// One entry of a received xcap-diff document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocChange {
    pub kind: EntryKind,
    /// Selector relative to the xcap-root (a leading absolute xcap-root removed).
    pub sel: String,
    pub previous_etag: Option<ETag>,
    pub new_etag: Option<ETag>,
    /// The patch, when the `<document>` carries operations.
    pub patch: Option<Vec<PatchOp>>,
    pub body_not_changed: bool,
    /// `exists` of an `<element>` / `<attribute>` entry.
    pub exists: Option<bool>,
    /// The element (serialized) or attribute value of an `<element>` / `<attribute>` entry.
    pub content: Option<String>,
}

/// A received xcap-diff document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XcapDiff {
    pub xcap_root: String,
    pub changes: Vec<DocChange>,
}

/// Parses an xcap-diff body.
pub fn parse_xcap_diff(body: &[u8]) -> Result<XcapDiff, DiffError> {
    let doc = parse_document(body, &Limits::DEFAULT).map_err(|_| DiffError::NotWellFormed)?;
    if !doc.root.name.is(XCAP_DIFF_NS, "xcap-diff") {
        return Err(DiffError::NotXcapDiff);
    }
    let xcap_root = doc
        .root
        .attr("xcap-root")
        .ok_or(DiffError::MissingXcapRoot)?
        .to_owned();
    let mut changes = Vec::new();
    for (i, entry) in doc.root.child_elements() {
        // RFC 5874 §4: unknown extension elements are ignored.
        let kind = match (entry.name.ns.as_deref(), entry.name.local.as_str()) {
            (Some(XCAP_DIFF_NS), "document") => EntryKind::Document,
            (Some(XCAP_DIFF_NS), "element") => EntryKind::Element,
            (Some(XCAP_DIFF_NS), "attribute") => EntryKind::Attribute,
            _ => continue,
        };
        if changes.len() >= MAX_ENTRIES {
            return Err(DiffError::TooMany);
        }
        let sel = entry.attr("sel").ok_or(DiffError::MissingSel)?;
        let etag = |name: &str| entry.attr(name).and_then(ETag::from_opaque);
        let mut change = DocChange {
            kind,
            sel: relative_sel(sel, &xcap_root),
            previous_etag: etag("previous-etag"),
            new_etag: etag("new-etag"),
            patch: None,
            body_not_changed: false,
            exists: entry.attr("exists").map(|v| !(v == "0" || v == "false")),
            content: None,
        };
        match kind {
            EntryKind::Document => read_document_entry(&doc, i, entry, &mut change)?,
            EntryKind::Element => {
                change.content = entry
                    .child_elements()
                    .next()
                    .map(|(_, e)| super::dom::element_to_string(e));
            }
            EntryKind::Attribute => {
                if change.exists != Some(false) {
                    change.content = Some(entry.text());
                }
            }
        }
        changes.push(change);
    }
    Ok(XcapDiff { xcap_root, changes })
}

fn read_document_entry(
    doc: &Document,
    idx: usize,
    entry: &Element,
    change: &mut DocChange,
) -> Result<(), DiffError> {
    let mut ops = Vec::new();
    for (j, op_el) in entry.child_elements() {
        let local = op_el.name.local.as_str();
        if local == "body-not-changed" {
            change.body_not_changed = true;
            continue;
        }
        if !matches!(local, "add" | "replace" | "remove") {
            continue;
        }
        if ops.len() >= super::patch::MAX_PATCH_OPS {
            return Err(DiffError::TooMany);
        }
        let scope = doc.scope_at(&[idx, j]);
        ops.push(read_op(op_el, scope)?);
    }
    if !ops.is_empty() {
        change.patch = Some(ops);
    }
    Ok(())
}

fn read_op(op: &Element, scope: NsScope) -> Result<PatchOp, DiffError> {
    let text = op.attr("sel").ok_or(DiffError::BadPatch)?.to_owned();
    match op.name.local.as_str() {
        "add" => {
            let pos = match op.attr("pos") {
                None => None,
                Some("before") => Some(Pos::Before),
                Some("after") => Some(Pos::After),
                Some("prepend") => Some(Pos::Prepend),
                Some(_) => return Err(DiffError::BadPatch),
            };
            let content = match op.attr("type") {
                None => AddContent::Nodes(op.children.clone()),
                Some(t) => {
                    if let Some(name) = t.strip_prefix('@') {
                        let (prefix, local) = split_qname(name).ok_or(DiffError::BadPatch)?;
                        let ns = match prefix {
                            Some(p) => {
                                Some(scope.lookup(Some(p)).ok_or(DiffError::BadPatch)?.to_owned())
                            }
                            None => None,
                        };
                        AddContent::Attribute {
                            name: QName {
                                ns,
                                prefix: prefix.map(str::to_owned),
                                local: local.to_owned(),
                            },
                            value: op.text(),
                        }
                    } else if let Some(prefix) = t.strip_prefix("namespace::") {
                        AddContent::Namespace {
                            prefix: prefix.to_owned(),
                            uri: op.text(),
                        }
                    } else {
                        return Err(DiffError::BadPatch);
                    }
                }
            };
            Ok(PatchOp::Add {
                sel: PatchSel { text, scope },
                pos,
                content,
            })
        }
        "replace" => {
            let elements: Vec<&Element> = op.child_elements().map(|(_, e)| e).collect();
            let content = match elements.as_slice() {
                [] => ReplaceContent::Text(op.text()),
                [e] if op.text().trim().is_empty() => ReplaceContent::Element((*e).clone()),
                _ => return Err(DiffError::BadPatch),
            };
            Ok(PatchOp::Replace {
                sel: PatchSel { text, scope },
                content,
            })
        }
        _ => {
            let ws = match op.attr("ws") {
                None => None,
                Some("before") => Some(Ws::Before),
                Some("after") => Some(Ws::After),
                Some("both") => Some(Ws::Both),
                Some(_) => return Err(DiffError::BadPatch),
            };
            Ok(PatchOp::Remove {
                sel: PatchSel { text, scope },
                ws,
            })
        }
    }
}

/// Strips a leading xcap-root (absolute URI or path form) from `sel` (SPEC 3.7 quirk).
pub fn relative_sel(sel: &str, xcap_root: &str) -> String {
    let root = xcap_root.trim_end_matches('/');
    if !root.is_empty()
        && let Some(rest) = sel.strip_prefix(root)
        && (rest.is_empty() || rest.starts_with('/'))
    {
        return rest.trim_start_matches('/').to_owned();
    }
    // `sel` absolute with another authority spelling, or in path form: compare paths.
    let path_of = |s: &str| -> Option<String> {
        for scheme in ["http://", "https://"] {
            if let Some(after) = s.strip_prefix(scheme) {
                return Some(
                    after
                        .find('/')
                        .map_or("/".to_owned(), |i| after[i..].to_owned()),
                );
            }
        }
        s.starts_with('/').then(|| s.to_owned())
    };
    if let (Some(sel_path), Some(root_path)) = (path_of(sel), path_of(root))
        && root_path != "/"
        && let Some(rest) = sel_path.strip_prefix(&root_path)
        && (rest.is_empty() || rest.starts_with('/'))
    {
        return rest.trim_start_matches('/').to_owned();
    }
    sel.to_owned()
}
