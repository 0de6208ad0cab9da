//! RFC 5261 XML patch operations: the model, selector generation for the changes XCAP
//! operations make, and `apply_patch` for a subscriber's cached copy.
//!
//! Operations are applied in order, each against the result of the previous one (RFC 5261
//! §4), so the selectors of a generated operation are computed against the document as it was
//! just before that change. Generated selectors are positional or use a key attribute that is
//! unique among same-named siblings, and always use prefixes, so they never depend on the
//! default namespace of the xcap-diff document.
#![forbid(unsafe_code)]

use super::dom::{
    Document, Element, Limits, Node, NsDecl, NsScope, QName, fixup_namespaces,
    normalize_text_around, parse_document, strip_redundant_decls,
};
use super::selector::{self, Dialect, NodeTest, Terminal};

/// Most operations applied from one patch (a bound on input).
pub const MAX_PATCH_OPS: usize = 10_000;

/// `pos` of an `<add>` (RFC 5261 §4.3); `None` appends as the last child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pos {
    Before,
    After,
    Prepend,
}

/// `ws` of a `<remove>` (RFC 5261 §4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ws {
    Before,
    After,
    Both,
}

/// A selector and the namespace bindings that give its prefixes meaning (the scope of the
/// patch operation element).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatchSel {
    pub text: String,
    pub scope: NsScope,
}

/// What an `<add>` adds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddContent {
    /// Child nodes (elements, text, comments).
    Nodes(Vec<Node>),
    /// `type="@name"`: an attribute; `name` carries namespace and prefix.
    Attribute { name: QName, value: String },
    /// `type="namespace::prefix"`: a namespace declaration.
    Namespace { prefix: String, uri: String },
}

/// What a `<replace>` puts in place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplaceContent {
    /// The new element (when the selector selects an element).
    Element(Element),
    /// New text: attribute value, text node, comment or namespace URI.
    Text(String),
}

/// One RFC 5261 operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PatchOp {
    Add {
        sel: PatchSel,
        pos: Option<Pos>,
        content: AddContent,
    },
    Replace {
        sel: PatchSel,
        content: ReplaceContent,
    },
    Remove {
        sel: PatchSel,
        ws: Option<Ws>,
    },
}

impl PatchOp {
    /// The operation's selector.
    pub fn sel(&self) -> &PatchSel {
        match self {
            PatchOp::Add { sel, .. }
            | PatchOp::Replace { sel, .. }
            | PatchOp::Remove { sel, .. } => sel,
        }
    }
}

/// Why a patch could not be applied (RFC 5261 §5 error conditions, by cause).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("target document is not well-formed")]
    NotWellFormed,
    #[error("invalid selector")]
    InvalidSelector,
    #[error("selector does not locate exactly one node")]
    UnlocatedNode,
    #[error("operation does not fit the selected node type")]
    InvalidNodeTypes,
    #[error("operation not allowed on the root element")]
    InvalidRootElementOperation,
    #[error("attribute already exists or does not exist")]
    InvalidAttributeValue,
    #[error("invalid namespace prefix")]
    InvalidNamespacePrefix,
    #[error("invalid patch directive")]
    InvalidPatchDirective,
    #[error("result exceeds a document limit")]
    Limit,
}

// -------------------------------------------------------------------------------------------
// Selector generation
// -------------------------------------------------------------------------------------------

/// Attributes that usually identify an element among its siblings; used for readable
/// selectors (`rl:list[@name="x"]`) when unique.
const KEY_ATTRS: &[&str] = &["name", "uri", "id", "ref", "anchor"];

/// Prefixes chosen for namespaces in generated selectors.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrefixMap {
    entries: Vec<(String, String)>,
}

impl PrefixMap {
    /// The prefix for `ns`, allocating one the first time.
    pub fn prefix(&mut self, ns: &str) -> String {
        if let Some((p, _)) = self.entries.iter().find(|(_, u)| u == ns) {
            return p.clone();
        }
        let well_known = match ns {
            super::usage::RESOURCE_LISTS_NS => Some("rl"),
            super::usage::COMMON_POLICY_NS => Some("cp"),
            super::usage::OMA_COMMON_POLICY_NS => Some("ocp"),
            super::usage::OMA_EXTENSIONS_NS => Some("oxe"),
            super::usage::XCAP_CAPS_NS => Some("xc"),
            _ => None,
        };
        let taken = |p: &str| self.entries.iter().any(|(q, _)| q == p);
        let p = match well_known {
            Some(p) if !taken(p) => p.to_owned(),
            _ => (1..=self.entries.len() + 1)
                .map(|i| format!("n{i}"))
                .find(|c| !taken(c))
                .unwrap_or_else(|| format!("n{}", self.entries.len() + 1)),
        };
        self.entries.push((p.clone(), ns.to_owned()));
        p
    }

    /// The bindings as a scope; the default namespace is undeclared so that unprefixed names
    /// (no-namespace elements) mean "no namespace".
    pub fn scope(&self) -> NsScope {
        let mut s = NsScope::new();
        s.bind(None, "");
        for (p, u) in &self.entries {
            s.bind(Some(p), u);
        }
        s
    }

    /// Allocated `(prefix, namespace)` pairs.
    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }
}

fn element_step(parent: &Element, idx: usize, el: &Element, pm: &mut PrefixMap) -> String {
    let name = match &el.name.ns {
        Some(ns) if ns == super::dom::XML_NS => format!("xml:{}", el.name.local),
        Some(ns) => format!("{}:{}", pm.prefix(ns), el.name.local),
        None => el.name.local.clone(),
    };
    let same: Vec<(usize, &Element)> = parent
        .child_elements()
        .filter(|(_, e)| e.name.same_expanded(&el.name))
        .collect();
    for key in KEY_ATTRS {
        let Some(v) = el.attr(key) else { continue };
        let quote = if !v.contains('"') {
            '"'
        } else if !v.contains('\'') {
            '\''
        } else {
            continue;
        };
        let unique = same.iter().filter(|(_, e)| e.attr(key) == Some(v)).count() == 1;
        if unique {
            return format!("{name}[@{key}={quote}{v}{quote}]");
        }
    }
    let k = same
        .iter()
        .position(|(i, _)| *i == idx)
        .map(|k| k + 1)
        .unwrap_or(1);
    format!("{name}[{k}]")
}

/// A patch selector for the node at `path` in `doc` (the last index may address a text or
/// comment node). `None` for nodes a selector cannot address (processing instructions).
pub fn sel_for_path(doc: &Document, path: &[usize], pm: &mut PrefixMap) -> Option<String> {
    let root_name = match &doc.root.name.ns {
        Some(ns) => format!("{}:{}", pm.prefix(ns), doc.root.name.local),
        None => doc.root.name.local.clone(),
    };
    let mut out = root_name;
    let mut cur = &doc.root;
    for &i in path {
        out.push('/');
        match cur.children.get(i)? {
            Node::Element(child) => {
                out.push_str(&element_step(cur, i, child, pm));
                cur = child;
            }
            Node::Text(_) => {
                let k = cur.children[..i]
                    .iter()
                    .filter(|n| matches!(n, Node::Text(_)))
                    .count();
                out.push_str(&format!("text()[{}]", k + 1));
            }
            Node::Comment(_) => {
                let k = cur.children[..i]
                    .iter()
                    .filter(|n| matches!(n, Node::Comment(_)))
                    .count();
                out.push_str(&format!("comment()[{}]", k + 1));
            }
            Node::Pi(_) => return None,
        }
    }
    Some(out)
}

/// `@name` for an attribute in a patch selector or `type`.
pub fn attr_step(name: &QName, pm: &mut PrefixMap) -> String {
    match &name.ns {
        Some(ns) if ns == super::dom::XML_NS => format!("@xml:{}", name.local),
        Some(ns) => format!("@{}:{}", pm.prefix(ns), name.local),
        None => format!("@{}", name.local),
    }
}

// -------------------------------------------------------------------------------------------
// Application
// -------------------------------------------------------------------------------------------

/// Applies `ops` in order to the document `doc` and returns the new document's bytes.
pub fn apply_patch(doc: &[u8], ops: &[PatchOp]) -> Result<Vec<u8>, PatchError> {
    let mut d = parse_document(doc, &Limits::DEFAULT).map_err(|_| PatchError::NotWellFormed)?;
    apply_to(&mut d, ops)?;
    let out = d.to_bytes();
    if out.len() > Limits::DEFAULT.max_bytes {
        return Err(PatchError::Limit);
    }
    Ok(out)
}

/// Applies `ops` in order to a parsed document.
pub fn apply_to(doc: &mut Document, ops: &[PatchOp]) -> Result<(), PatchError> {
    if ops.len() > MAX_PATCH_OPS {
        return Err(PatchError::InvalidPatchDirective);
    }
    for op in ops {
        apply_one(doc, op)?;
    }
    Ok(())
}

struct Located {
    /// Path to the selected node (element, text or comment).
    path: Vec<usize>,
    terminal: Option<Terminal>,
    /// Whether the node at `path` is an element.
    is_element: bool,
}

fn locate(doc: &Document, sel: &PatchSel) -> Result<Located, PatchError> {
    let parsed = selector::parse(&sel.text, Dialect::Patch { scope: &sel.scope })
        .map_err(|_| PatchError::InvalidSelector)?;
    if parsed.steps.is_empty() {
        return Err(PatchError::InvalidSelector);
    }
    let found = selector::select(doc, &parsed.steps);
    // RFC 5261 §4.1: the selector must match exactly one node.
    let [path] = found.as_slice() else {
        return Err(PatchError::UnlocatedNode);
    };
    let is_element = matches!(
        parsed.steps.last().map(|s| &s.test),
        Some(NodeTest::Element(_))
    );
    Ok(Located {
        path: path.clone(),
        terminal: parsed.terminal,
        is_element,
    })
}

/// Scope on the parent of the node at `path` (the root's parent is the document: empty).
fn parent_scope(doc: &Document, path: &[usize]) -> NsScope {
    match path.split_last() {
        Some((_, parent)) => doc.scope_at(parent),
        None => NsScope::new(),
    }
}

/// Prepares an element moving into a document at a point where `scope` is in force.
fn adopt(mut el: Element, scope: &NsScope) -> Element {
    strip_redundant_decls(&mut el, scope);
    fixup_namespaces(&mut el, scope);
    el
}

fn depth_ok(el: &Element, budget: usize) -> bool {
    if budget == 0 {
        return false;
    }
    el.child_elements().all(|(_, c)| depth_ok(c, budget - 1))
}

fn apply_one(doc: &mut Document, op: &PatchOp) -> Result<(), PatchError> {
    let loc = locate(doc, op.sel())?;
    match op {
        PatchOp::Add { pos, content, .. } => apply_add(doc, &loc, *pos, content),
        PatchOp::Replace { content, .. } => apply_replace(doc, &loc, content),
        PatchOp::Remove { ws, .. } => apply_remove(doc, &loc, *ws),
    }
}

fn apply_add(
    doc: &mut Document,
    loc: &Located,
    pos: Option<Pos>,
    content: &AddContent,
) -> Result<(), PatchError> {
    if loc.terminal.is_some() {
        return Err(PatchError::InvalidNodeTypes);
    }
    match content {
        AddContent::Nodes(nodes) => {
            // Where the nodes go: (parent path, index in the parent's children).
            let (parent_path, at) = match pos {
                None | Some(Pos::Prepend) => {
                    if !loc.is_element {
                        return Err(PatchError::InvalidNodeTypes);
                    }
                    let el = doc.at(&loc.path).ok_or(PatchError::UnlocatedNode)?;
                    let at = if pos.is_none() { el.children.len() } else { 0 };
                    (loc.path.clone(), at)
                }
                Some(p) => {
                    let (&last, parent) = loc
                        .path
                        .split_last()
                        .ok_or(PatchError::InvalidRootElementOperation)?;
                    (
                        parent.to_vec(),
                        if p == Pos::Before { last } else { last + 1 },
                    )
                }
            };
            let scope = doc.scope_at(&parent_path);
            let budget = Limits::DEFAULT
                .max_depth
                .saturating_sub(parent_path.len() + 1);
            let mut adopted = Vec::with_capacity(nodes.len());
            for n in nodes {
                adopted.push(match n {
                    Node::Element(e) => {
                        let e = adopt(e.clone(), &scope);
                        if !depth_ok(&e, budget) {
                            return Err(PatchError::Limit);
                        }
                        Node::Element(e)
                    }
                    other => other.clone(),
                });
            }
            let parent = doc.at_mut(&parent_path).ok_or(PatchError::UnlocatedNode)?;
            if parent.children.len() + adopted.len() > Limits::DEFAULT.max_children {
                return Err(PatchError::Limit);
            }
            let count = adopted.len();
            for (k, n) in adopted.into_iter().enumerate() {
                parent.children.insert(at + k, n);
            }
            // Merge text at both seams (the end seam first, so the start index stays valid).
            normalize_text_around(&mut parent.children, at + count);
            normalize_text_around(&mut parent.children, at);
            Ok(())
        }
        AddContent::Attribute { name, value } => {
            if pos.is_some() || !loc.is_element {
                return Err(PatchError::InvalidNodeTypes);
            }
            let outer = parent_scope(doc, &loc.path);
            let el = doc.at_mut(&loc.path).ok_or(PatchError::UnlocatedNode)?;
            if el.attr_ns(name.ns.as_deref(), &name.local).is_some() {
                return Err(PatchError::InvalidAttributeValue);
            }
            if el.attrs.len() >= Limits::DEFAULT.max_attrs {
                return Err(PatchError::Limit);
            }
            el.attrs.push(super::dom::Attribute {
                name: name.clone(),
                value: value.clone(),
            });
            fixup_namespaces(el, &outer);
            Ok(())
        }
        AddContent::Namespace { prefix, uri } => {
            if pos.is_some() || !loc.is_element {
                return Err(PatchError::InvalidNodeTypes);
            }
            let el = doc.at_mut(&loc.path).ok_or(PatchError::UnlocatedNode)?;
            let p = if prefix.is_empty() {
                None
            } else {
                Some(prefix.clone())
            };
            if el.ns_decls.iter().any(|d| d.prefix == p) {
                return Err(PatchError::InvalidNamespacePrefix);
            }
            el.ns_decls.push(NsDecl {
                prefix: p,
                uri: uri.clone(),
            });
            Ok(())
        }
    }
}

fn apply_replace(
    doc: &mut Document,
    loc: &Located,
    content: &ReplaceContent,
) -> Result<(), PatchError> {
    match (&loc.terminal, content) {
        (Some(Terminal::Attribute { ns, local }), ReplaceContent::Text(v)) => {
            let el = doc.at_mut(&loc.path).ok_or(PatchError::UnlocatedNode)?;
            let a = el
                .attrs
                .iter_mut()
                .find(|a| a.name.ns.as_deref() == ns.as_deref() && a.name.local == *local)
                .ok_or(PatchError::UnlocatedNode)?;
            a.value.clone_from(v);
            Ok(())
        }
        (Some(Terminal::Namespace(prefix)), ReplaceContent::Text(v)) => {
            let el = doc.at_mut(&loc.path).ok_or(PatchError::UnlocatedNode)?;
            let p = if prefix.is_empty() {
                None
            } else {
                Some(prefix.clone())
            };
            let d = el
                .ns_decls
                .iter_mut()
                .find(|d| d.prefix == p)
                .ok_or(PatchError::UnlocatedNode)?;
            d.uri.clone_from(v);
            Ok(())
        }
        (Some(_), _) => Err(PatchError::InvalidNodeTypes),
        (None, ReplaceContent::Element(new)) if loc.is_element => {
            let scope = parent_scope(doc, &loc.path);
            let new = adopt(new.clone(), &scope);
            if !depth_ok(
                &new,
                Limits::DEFAULT.max_depth.saturating_sub(loc.path.len()),
            ) {
                return Err(PatchError::Limit);
            }
            match loc.path.split_last() {
                None => doc.root = new,
                Some((&last, parent)) => {
                    let p = doc.at_mut(parent).ok_or(PatchError::UnlocatedNode)?;
                    p.children[last] = Node::Element(new);
                }
            }
            Ok(())
        }
        (None, ReplaceContent::Text(t)) if !loc.is_element => {
            let (&last, parent) = loc.path.split_last().ok_or(PatchError::InvalidNodeTypes)?;
            let p = doc.at_mut(parent).ok_or(PatchError::UnlocatedNode)?;
            match &mut p.children[last] {
                Node::Text(old) | Node::Comment(old) => old.clone_from(t),
                _ => return Err(PatchError::InvalidNodeTypes),
            }
            normalize_text_around(&mut p.children, last);
            Ok(())
        }
        _ => Err(PatchError::InvalidNodeTypes),
    }
}

fn is_ws_text(n: Option<&Node>) -> bool {
    matches!(n, Some(Node::Text(t)) if t.chars().all(|c| matches!(c, ' ' | '\t' | '\n' | '\r')))
}

fn apply_remove(doc: &mut Document, loc: &Located, ws: Option<Ws>) -> Result<(), PatchError> {
    match &loc.terminal {
        Some(Terminal::Attribute { ns, local }) => {
            let el = doc.at_mut(&loc.path).ok_or(PatchError::UnlocatedNode)?;
            let before = el.attrs.len();
            el.attrs
                .retain(|a| !(a.name.ns.as_deref() == ns.as_deref() && a.name.local == *local));
            if el.attrs.len() == before {
                return Err(PatchError::UnlocatedNode);
            }
            Ok(())
        }
        Some(Terminal::Namespace(prefix)) => {
            let el = doc.at_mut(&loc.path).ok_or(PatchError::UnlocatedNode)?;
            let p = if prefix.is_empty() {
                None
            } else {
                Some(prefix.clone())
            };
            let before = el.ns_decls.len();
            el.ns_decls.retain(|d| d.prefix != p);
            if el.ns_decls.len() == before {
                return Err(PatchError::UnlocatedNode);
            }
            Ok(())
        }
        Some(Terminal::Namespaces) => Err(PatchError::InvalidSelector),
        None => {
            let (&last, parent_path) = loc
                .path
                .split_last()
                .ok_or(PatchError::InvalidRootElementOperation)?;
            let parent = doc.at_mut(parent_path).ok_or(PatchError::UnlocatedNode)?;
            let mut at = last;
            parent.children.remove(at);
            // RFC 5261 §4.5: `ws` also removes the adjacent whitespace-only text node.
            if matches!(ws, Some(Ws::After | Ws::Both)) && is_ws_text(parent.children.get(at)) {
                parent.children.remove(at);
            }
            if matches!(ws, Some(Ws::Before | Ws::Both))
                && at > 0
                && is_ws_text(parent.children.get(at - 1))
            {
                parent.children.remove(at - 1);
                at -= 1;
            }
            normalize_text_around(&mut parent.children, at);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RL: &str = "urn:ietf:params:xml:ns:resource-lists";

    fn doc(s: &str) -> Document {
        parse_document(s.as_bytes(), &Limits::DEFAULT).expect("doc")
    }

    fn psel(text: &str) -> PatchSel {
        let mut scope = NsScope::new();
        scope.bind(None, super::super::diff::XCAP_DIFF_NS);
        scope.bind(Some("rl"), RL);
        PatchSel {
            text: text.to_owned(),
            scope,
        }
    }

    fn entry(uri: &str) -> Element {
        let mut e = Element::new(QName {
            ns: Some(RL.into()),
            prefix: Some("rl".into()),
            local: "entry".into(),
        });
        e.attrs.push(super::super::dom::Attribute {
            name: QName {
                ns: None,
                prefix: None,
                local: "uri".into(),
            },
            value: uri.into(),
        });
        e
    }

    const BASE: &str = "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\">\n  <list name=\"oma_blockedcontacts\">\n    <entry uri=\"sip:a@x\"/>\n  </list>\n</resource-lists>";

    #[test]
    fn add_replace_remove() {
        let mut d = doc(BASE);
        let ops = vec![
            PatchOp::Add {
                sel: psel("rl:resource-lists/rl:list[@name=\"oma_blockedcontacts\"]"),
                pos: None,
                content: AddContent::Nodes(vec![Node::Element(entry("sip:tom@example.com"))]),
            },
            PatchOp::Add {
                sel: psel("rl:resource-lists/rl:list[1]/rl:entry[1]"),
                pos: Some(Pos::Before),
                content: AddContent::Nodes(vec![Node::Element(entry("sip:first@x"))]),
            },
            PatchOp::Replace {
                sel: psel("rl:resource-lists/rl:list[1]/rl:entry[@uri='sip:a@x']/@uri"),
                content: ReplaceContent::Text("sip:b@x".into()),
            },
            PatchOp::Add {
                sel: psel("rl:resource-lists/rl:list[1]"),
                pos: None,
                content: AddContent::Attribute {
                    name: QName {
                        ns: None,
                        prefix: None,
                        local: "x".into(),
                    },
                    value: "1".into(),
                },
            },
            PatchOp::Remove {
                sel: psel("rl:resource-lists/rl:list[1]/rl:entry[@uri='sip:first@x']"),
                ws: None,
            },
        ];
        apply_to(&mut d, &ops).expect("applies");
        let s = String::from_utf8(d.to_bytes()).expect("utf8");
        assert!(
            s.contains("<list name=\"oma_blockedcontacts\" x=\"1\">\n    <entry uri=\"sip:b@x\"/>\n  <entry uri=\"sip:tom@example.com\"/></list>"),
            "{s}"
        );
    }

    #[test]
    fn errors() {
        let d0 = doc(BASE);
        let cases: Vec<(PatchOp, PatchError)> = vec![
            (
                PatchOp::Remove {
                    sel: psel("rl:resource-lists/rl:list[2]"),
                    ws: None,
                },
                PatchError::UnlocatedNode,
            ),
            (
                PatchOp::Remove {
                    sel: psel("rl:resource-lists"),
                    ws: None,
                },
                PatchError::InvalidRootElementOperation,
            ),
            (
                PatchOp::Remove {
                    sel: psel("rl:resource-lists/rl:list[["),
                    ws: None,
                },
                PatchError::InvalidSelector,
            ),
            (
                PatchOp::Remove {
                    sel: psel("zz:resource-lists"),
                    ws: None,
                },
                PatchError::InvalidSelector,
            ),
            (
                PatchOp::Replace {
                    sel: psel("rl:resource-lists/rl:list"),
                    content: ReplaceContent::Text("x".into()),
                },
                PatchError::InvalidNodeTypes,
            ),
            (
                PatchOp::Add {
                    sel: psel("rl:resource-lists/rl:list"),
                    pos: None,
                    content: AddContent::Attribute {
                        name: QName {
                            ns: None,
                            prefix: None,
                            local: "name".into(),
                        },
                        value: "dup".into(),
                    },
                },
                PatchError::InvalidAttributeValue,
            ),
            (
                PatchOp::Add {
                    sel: psel("rl:resource-lists"),
                    pos: Some(Pos::After),
                    content: AddContent::Nodes(vec![]),
                },
                PatchError::InvalidRootElementOperation,
            ),
        ];
        for (op, want) in cases {
            let mut d = d0.clone();
            assert_eq!(
                apply_to(&mut d, std::slice::from_ref(&op)),
                Err(want),
                "{op:?}"
            );
        }
    }

    #[test]
    fn remove_with_ws_and_text_selectors() {
        let mut d = doc(BASE);
        apply_to(
            &mut d,
            &[PatchOp::Remove {
                sel: psel("rl:resource-lists/rl:list/rl:entry"),
                ws: Some(Ws::Before),
            }],
        )
        .expect("applies");
        let list = d.at(&[1]).expect("list");
        assert_eq!(list.children, vec![Node::Text("\n  ".into())]);
        apply_to(
            &mut d,
            &[PatchOp::Replace {
                sel: psel("rl:resource-lists/rl:list/text()[1]"),
                content: ReplaceContent::Text("x".into()),
            }],
        )
        .expect("applies");
        assert_eq!(
            d.at(&[1]).expect("list").children,
            vec![Node::Text("x".into())]
        );
    }

    #[test]
    fn generated_selectors() {
        let d = doc(
            "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\" xmlns:e=\"urn:e\"><list name=\"a\"/><list name=\"a\"/><list name='q\"'/><list/><e:x/>t<!--c--></resource-lists>",
        );
        let mut pm = PrefixMap::default();
        let s = |p: &[usize], pm: &mut PrefixMap| sel_for_path(&d, p, pm).expect("sel");
        assert_eq!(s(&[], &mut pm), "rl:resource-lists");
        assert_eq!(s(&[0], &mut pm), "rl:resource-lists/rl:list[1]");
        assert_eq!(s(&[1], &mut pm), "rl:resource-lists/rl:list[2]");
        assert_eq!(s(&[2], &mut pm), "rl:resource-lists/rl:list[@name='q\"']");
        assert_eq!(s(&[3], &mut pm), "rl:resource-lists/rl:list[4]");
        assert_eq!(s(&[4], &mut pm), "rl:resource-lists/n1:x[1]");
        assert_eq!(s(&[5], &mut pm), "rl:resource-lists/text()[1]");
        assert_eq!(s(&[6], &mut pm), "rl:resource-lists/comment()[1]");
        // Every generated selector locates its node.
        let scope = pm.scope();
        for i in 0..7 {
            let sel = PatchSel {
                text: s(&[i], &mut pm),
                scope: scope.clone(),
            };
            let loc = locate(&d, &sel).expect("locates");
            assert_eq!(loc.path, vec![i]);
        }
    }
}
