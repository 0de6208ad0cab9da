//! A small owned XML DOM for XCAP documents, parsed with quick-xml.
//!
//! What it keeps: elements with their namespace URI, local name and the prefix as written;
//! namespace declarations per element; attributes (with namespaces); text; comments and
//! processing instructions. CDATA sections become text, entity and character references are
//! resolved, whitespace outside the root element is dropped. Adjacent text nodes are always
//! merged and empty ones removed, so a tree and the tree re-parsed from its serialization have
//! the same node positions; xcap-diff patches address text nodes by position and depend on it.
//!
//! Serialization is deterministic: an XML declaration, namespace declarations before
//! attributes, both in the order they were written, and a fixed escaping.
//!
//! Limits (depth, size, attributes per element, children per element) are checked while
//! parsing and have their own errors. A DOCTYPE is refused: XCAP documents have no DTD, and
//! refusing it rules out entity expansion attacks.
#![forbid(unsafe_code)]

use super::error::XcapError;

/// The namespace bound to the `xml` prefix by definition (Namespaces in XML §3).
pub const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// Bounds on a parsed document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Deepest element nesting (the root is depth 1).
    pub max_depth: usize,
    /// Largest input in bytes.
    pub max_bytes: usize,
    /// Most attributes (namespace declarations included) on one element.
    pub max_attrs: usize,
    /// Most child nodes of one element.
    pub max_children: usize,
}

impl Limits {
    /// The GLMS defaults: depth 32, 1 MiB, 64 attributes, 100,000 children.
    pub const DEFAULT: Limits = Limits {
        max_depth: 32,
        max_bytes: 1 << 20,
        max_attrs: 64,
        max_children: 100_000,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Why bytes did not become a tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DomError {
    #[error("not UTF-8")]
    NotUtf8,
    #[error("not well-formed")]
    NotWellFormed,
    #[error("DOCTYPE not allowed")]
    Doctype,
    #[error("document larger than the size limit")]
    TooLarge,
    #[error("elements nested deeper than the limit")]
    TooDeep,
    #[error("more attributes on one element than the limit")]
    TooManyAttributes,
    #[error("more children of one element than the limit")]
    TooManyChildren,
    #[error("not exactly one element")]
    NotSingleElement,
}

impl From<DomError> for XcapError {
    fn from(e: DomError) -> Self {
        match e {
            DomError::NotUtf8 => XcapError::NotUtf8,
            DomError::NotWellFormed => XcapError::NotWellFormed,
            DomError::Doctype => XcapError::SchemaValidation("DOCTYPE not allowed"),
            DomError::TooLarge => XcapError::TooLarge,
            DomError::TooDeep => XcapError::ConstraintFailure("elements nested too deep"),
            DomError::TooManyAttributes => XcapError::ConstraintFailure("too many attributes"),
            DomError::TooManyChildren => XcapError::ConstraintFailure("too many children"),
            DomError::NotSingleElement => XcapError::NotXmlFrag,
        }
    }
}

/// An expanded name plus the prefix it was written with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QName {
    /// Namespace URI, `None` for no namespace.
    pub ns: Option<String>,
    /// Prefix as written, `None` when unprefixed.
    pub prefix: Option<String>,
    /// Local part.
    pub local: String,
}

impl QName {
    /// True when the expanded name is `{ns}local`.
    pub fn is(&self, ns: &str, local: &str) -> bool {
        self.local == local && self.ns.as_deref() == Some(ns)
    }

    /// Same expanded name (namespace and local part), prefixes ignored.
    pub fn same_expanded(&self, other: &QName) -> bool {
        self.local == other.local && self.ns == other.ns
    }

    /// `prefix:local` or `local`, as written.
    pub fn qualified(&self) -> String {
        match &self.prefix {
            Some(p) => format!("{p}:{}", self.local),
            None => self.local.clone(),
        }
    }
}

/// A namespace declaration: `xmlns="uri"` (prefix `None`) or `xmlns:p="uri"`. An empty URI
/// on the default declaration undeclares the default namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NsDecl {
    pub prefix: Option<String>,
    pub uri: String,
}

/// An attribute with its (possibly namespaced) name and unescaped value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribute {
    pub name: QName,
    pub value: String,
}

/// An element and its subtree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    pub name: QName,
    pub ns_decls: Vec<NsDecl>,
    pub attrs: Vec<Attribute>,
    pub children: Vec<Node>,
}

/// A child node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
    Comment(String),
    /// Processing instruction: target and data as written between `<?` and `?>`.
    Pi(String),
}

/// A whole document: comments/PIs before the root, the root, comments/PIs after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    pub prolog: Vec<Node>,
    pub root: Element,
    pub epilog: Vec<Node>,
}

/// Namespace bindings in scope at some point of a tree, innermost last.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NsScope {
    bindings: Vec<(Option<String>, String)>,
}

impl NsScope {
    /// No bindings (only the implicit `xml` prefix).
    pub fn new() -> NsScope {
        NsScope::default()
    }

    /// Adds the declarations of one element.
    pub fn push_decls(&mut self, decls: &[NsDecl]) {
        for d in decls {
            self.bindings.push((d.prefix.clone(), d.uri.clone()));
        }
    }

    /// Number of bindings pushed so far (to undo with [`NsScope::reset`]).
    pub(crate) fn mark(&self) -> usize {
        self.bindings.len()
    }

    /// Drops the bindings pushed after `mark`.
    pub(crate) fn reset(&mut self, mark: usize) {
        self.bindings.truncate(mark);
    }

    /// Adds one binding.
    pub fn bind(&mut self, prefix: Option<&str>, uri: &str) {
        self.bindings
            .push((prefix.map(str::to_owned), uri.to_owned()));
    }

    /// Namespace of a prefix (`None` = the default namespace). `Some("")` means "no
    /// namespace" for the default; `None` means unbound.
    pub fn lookup(&self, prefix: Option<&str>) -> Option<&str> {
        if prefix == Some("xml") {
            return Some(XML_NS);
        }
        self.bindings
            .iter()
            .rev()
            .find(|(p, _)| p.as_deref() == prefix)
            .map(|(_, u)| u.as_str())
    }

    /// Namespace an unprefixed element name gets here (`None` = no namespace).
    pub fn default_ns(&self) -> Option<&str> {
        self.lookup(None).filter(|u| !u.is_empty())
    }

    /// The effective bindings, one per prefix, in order of first declaration; an undeclared
    /// default namespace is left out.
    pub fn effective(&self) -> Vec<(Option<String>, String)> {
        let mut out: Vec<(Option<String>, String)> = Vec::new();
        for (p, u) in &self.bindings {
            match out.iter_mut().find(|(q, _)| q == p) {
                Some(slot) => slot.1.clone_from(u),
                None => out.push((p.clone(), u.clone())),
            }
        }
        out.retain(|(p, u)| !(p.is_none() && u.is_empty()));
        out
    }

    /// Some prefix bound to `ns` here and not shadowed; prefers a named prefix.
    pub fn prefix_for(&self, ns: &str) -> Option<Option<String>> {
        let eff = self.effective();
        eff.iter()
            .filter(|(p, u)| u == ns && p.is_some())
            .map(|(p, _)| p.clone())
            .next()
            .or_else(|| {
                eff.iter()
                    .find(|(p, u)| u == ns && p.is_none())
                    .map(|_| None)
            })
    }
}

impl Element {
    /// An element with no attributes or children.
    pub fn new(name: QName) -> Element {
        Element {
            name,
            ns_decls: Vec::new(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Value of the unprefixed (no-namespace) attribute `local`.
    pub fn attr(&self, local: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.name.ns.is_none() && a.name.local == local)
            .map(|a| a.value.as_str())
    }

    /// Value of the attribute with this expanded name.
    pub fn attr_ns(&self, ns: Option<&str>, local: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.name.ns.as_deref() == ns && a.name.local == local)
            .map(|a| a.value.as_str())
    }

    /// Child elements with their index in `children`.
    pub fn child_elements(&self) -> impl Iterator<Item = (usize, &Element)> {
        self.children
            .iter()
            .enumerate()
            .filter_map(|(i, n)| match n {
                Node::Element(e) => Some((i, e)),
                _ => None,
            })
    }

    /// The text of this element's direct text children, concatenated.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for c in &self.children {
            if let Node::Text(t) = c {
                s.push_str(t);
            }
        }
        s
    }

    /// The element at `path` (child indices from this element); `[]` is this element.
    pub fn at(&self, path: &[usize]) -> Option<&Element> {
        let mut cur = self;
        for &i in path {
            match cur.children.get(i) {
                Some(Node::Element(e)) => cur = e,
                _ => return None,
            }
        }
        Some(cur)
    }

    /// Mutable form of [`Element::at`].
    pub fn at_mut(&mut self, path: &[usize]) -> Option<&mut Element> {
        let mut cur = self;
        for &i in path {
            match cur.children.get_mut(i) {
                Some(Node::Element(e)) => cur = e,
                _ => return None,
            }
        }
        Some(cur)
    }
}

/// Merges the text nodes around `children[at]` (the slot of a node that was just inserted or
/// removed) and drops empty ones, keeping the "no adjacent text" invariant.
pub fn normalize_text_around(children: &mut Vec<Node>, at: usize) {
    let lo = at.saturating_sub(1);
    let mut i = lo;
    // Bounded: at most three slots around the change need looking at.
    while i < children.len() && i <= at + 1 {
        let empty = matches!(&children[i], Node::Text(t) if t.is_empty());
        if empty {
            children.remove(i);
            continue;
        }
        if i + 1 < children.len()
            && let (Node::Text(_), Node::Text(_)) = (&children[i], &children[i + 1])
        {
            if let Node::Text(next) = children.remove(i + 1)
                && let Node::Text(t) = &mut children[i]
            {
                t.push_str(&next);
            }
            continue;
        }
        i += 1;
    }
}

impl Document {
    /// The element at `path` from the root (`[]` is the root).
    pub fn at(&self, path: &[usize]) -> Option<&Element> {
        self.root.at(path)
    }

    /// Mutable form of [`Document::at`].
    pub fn at_mut(&mut self, path: &[usize]) -> Option<&mut Element> {
        self.root.at_mut(path)
    }

    /// Bindings in scope on the element at `path`, its own declarations included.
    pub fn scope_at(&self, path: &[usize]) -> NsScope {
        let mut scope = NsScope::new();
        let mut cur = &self.root;
        scope.push_decls(&cur.ns_decls);
        for &i in path {
            match cur.children.get(i) {
                Some(Node::Element(e)) => {
                    cur = e;
                    scope.push_decls(&cur.ns_decls);
                }
                _ => break,
            }
        }
        scope
    }

    /// Serializes the document deterministically.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::with_capacity(1024);
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        for n in &self.prolog {
            write_node(n, &mut out);
            out.push('\n');
        }
        write_element(&self.root, &mut out);
        out.push('\n');
        for n in &self.epilog {
            write_node(n, &mut out);
            out.push('\n');
        }
        out.into_bytes()
    }

    /// A namespace-aware canonical form: expanded names, attributes sorted, declarations and
    /// prefixes ignored. Two documents with the same canonical form carry the same content.
    pub fn canonical(&self) -> String {
        let mut out = String::new();
        for n in self.prolog.iter() {
            canonical_node(n, &mut out);
        }
        canonical_element(&self.root, &mut out);
        for n in self.epilog.iter() {
            canonical_node(n, &mut out);
        }
        out
    }
}

fn canonical_node(n: &Node, out: &mut String) {
    match n {
        Node::Element(e) => canonical_element(e, out),
        Node::Text(t) => {
            out.push('"');
            escape_text_into(t, out);
            out.push('"');
        }
        Node::Comment(c) => {
            out.push_str("<!--");
            out.push_str(c);
            out.push_str("-->");
        }
        Node::Pi(p) => {
            out.push_str("<?");
            out.push_str(p);
            out.push_str("?>");
        }
    }
}

fn canonical_element(e: &Element, out: &mut String) {
    let ename = |q: &QName| format!("{{{}}}{}", q.ns.as_deref().unwrap_or(""), q.local);
    out.push('<');
    out.push_str(&ename(&e.name));
    let mut attrs: Vec<(String, &str)> = e
        .attrs
        .iter()
        .map(|a| (ename(&a.name), a.value.as_str()))
        .collect();
    attrs.sort();
    for (n, v) in attrs {
        out.push(' ');
        out.push_str(&n);
        out.push_str("=\"");
        escape_attr_into(v, out);
        out.push('"');
    }
    out.push('>');
    for c in &e.children {
        canonical_node(c, out);
    }
    out.push_str("</>");
}

/// Escapes character data: `&`, `<`, `>` (so `]]>` never appears) and CR (kept as a
/// reference so that end-of-line normalization does not eat it).
pub fn escape_text_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            _ => out.push(c),
        }
    }
}

/// Escapes a double-quoted attribute value; tab, LF and CR become references so that
/// attribute-value normalization gives them back unchanged.
pub fn escape_attr_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            _ => out.push(c),
        }
    }
}

/// Writes an element as it is: its own declarations only, nothing inherited (RFC 4825 §8.3
/// returns elements this way; `namespace::*` exists to fetch the inherited ones).
pub fn write_element(e: &Element, out: &mut String) {
    out.push('<');
    write_qname(&e.name, out);
    for d in &e.ns_decls {
        match &d.prefix {
            Some(p) => {
                out.push_str(" xmlns:");
                out.push_str(p);
            }
            None => out.push_str(" xmlns"),
        }
        out.push_str("=\"");
        escape_attr_into(&d.uri, out);
        out.push('"');
    }
    for a in &e.attrs {
        out.push(' ');
        write_qname(&a.name, out);
        out.push_str("=\"");
        escape_attr_into(&a.value, out);
        out.push('"');
    }
    if e.children.is_empty() {
        out.push_str("/>");
        return;
    }
    out.push('>');
    for c in &e.children {
        write_node(c, out);
    }
    out.push_str("</");
    write_qname(&e.name, out);
    out.push('>');
}

/// Writes any node.
pub fn write_node(n: &Node, out: &mut String) {
    match n {
        Node::Element(e) => write_element(e, out),
        Node::Text(t) => escape_text_into(t, out),
        Node::Comment(c) => {
            out.push_str("<!--");
            out.push_str(c);
            out.push_str("-->");
        }
        Node::Pi(p) => {
            out.push_str("<?");
            out.push_str(p);
            out.push_str("?>");
        }
    }
}

fn write_qname(q: &QName, out: &mut String) {
    if let Some(p) = &q.prefix {
        out.push_str(p);
        out.push(':');
    }
    out.push_str(&q.local);
}

/// Serializes one element on its own.
pub fn element_to_string(e: &Element) -> String {
    let mut s = String::new();
    write_element(e, &mut s);
    s
}

/// Makes `el` correct when written inside `outer`: every element and attribute prefix is made
/// to resolve to the namespace in its name, adding declarations (or a fresh prefix when the
/// written one is taken on that element) where needed. Used when a subtree moves between
/// documents (xcap-diff patches) so that its names keep their namespaces.
pub fn fixup_namespaces(el: &mut Element, outer: &NsScope) {
    let mut scope = outer.clone();
    fixup_rec(el, &mut scope, 0);
}

fn fixup_rec(el: &mut Element, scope: &mut NsScope, depth: usize) {
    let mark = scope.bindings.len();
    scope.push_decls(&el.ns_decls);
    // The element's own name.
    let want = el.name.ns.clone().unwrap_or_default();
    let have = scope
        .lookup(el.name.prefix.as_deref())
        .unwrap_or("")
        .to_owned();
    if have != want {
        let own_conflict = el.ns_decls.iter().any(|d| d.prefix == el.name.prefix);
        // Prefer a binding already in scope (no new declaration needed).
        let reuse = if want.is_empty() {
            None
        } else {
            scope.prefix_for(&want)
        };
        if let Some(p) = reuse {
            el.name.prefix = p;
        } else if el.name.prefix.is_none() && !own_conflict {
            add_decl(el, scope, None, &want);
        } else if el.name.ns.is_none() {
            // Unprefixed name needed, but the default is taken on this very element: cannot
            // happen for a tree we parsed; undeclaring would change siblings' meaning.
            el.ns_decls.retain(|d| d.prefix.is_some());
            add_decl(el, scope, None, "");
        } else if !own_conflict && el.name.prefix.is_some() {
            let p = el.name.prefix.clone();
            add_decl(el, scope, p.as_deref(), &want);
        } else {
            let fresh = fresh_prefix(el);
            add_decl(el, scope, Some(&fresh), &want);
            el.name.prefix = Some(fresh);
        }
    }
    // Attributes: a namespaced attribute needs a named prefix bound to its namespace.
    for i in 0..el.attrs.len() {
        let Some(ns) = el.attrs[i].name.ns.clone() else {
            el.attrs[i].name.prefix = None;
            continue;
        };
        if ns == XML_NS {
            el.attrs[i].name.prefix = Some("xml".to_owned());
            continue;
        }
        let p = el.attrs[i].name.prefix.clone();
        if p.is_some() && scope.lookup(p.as_deref()) == Some(ns.as_str()) {
            continue;
        }
        let reuse = scope.prefix_for(&ns).flatten();
        if let Some(r) = reuse {
            el.attrs[i].name.prefix = Some(r);
            continue;
        }
        let own_conflict = p.is_none() || el.ns_decls.iter().any(|d| d.prefix == p);
        let chosen = if own_conflict {
            fresh_prefix(el)
        } else {
            p.unwrap_or_default()
        };
        add_decl(el, scope, Some(&chosen), &ns);
        el.attrs[i].name.prefix = Some(chosen);
    }
    if depth < 256 {
        for c in el.children.iter_mut() {
            if let Node::Element(child) = c {
                fixup_rec(child, scope, depth + 1);
            }
        }
    }
    scope.bindings.truncate(mark);
}

fn add_decl(el: &mut Element, scope: &mut NsScope, prefix: Option<&str>, uri: &str) {
    el.ns_decls.push(NsDecl {
        prefix: prefix.map(str::to_owned),
        uri: uri.to_owned(),
    });
    scope.bind(prefix, uri);
}

fn fresh_prefix(el: &Element) -> String {
    // Bounded: there are at most `max_attrs` declarations on one element.
    for n in 0..=el.ns_decls.len() + el.attrs.len() {
        let cand = format!("ns{n}");
        if !el
            .ns_decls
            .iter()
            .any(|d| d.prefix.as_deref() == Some(cand.as_str()))
        {
            return cand;
        }
    }
    format!("ns{}", el.ns_decls.len() + el.attrs.len() + 1)
}

/// Drops declarations on `el` itself that bind exactly what `outer` already binds.
pub fn strip_redundant_decls(el: &mut Element, outer: &NsScope) {
    el.ns_decls.retain(|d| {
        let cur = outer.lookup(d.prefix.as_deref());
        match (&d.prefix, cur) {
            (None, None) => !d.uri.is_empty(),
            (_, Some(u)) => u != d.uri,
            (Some(_), None) => true,
        }
    });
}

pub use super::parse::{is_ncname, parse_document, parse_fragment, split_qname};

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(s: &str) -> Result<Document, DomError> {
        parse_document(s.as_bytes(), &Limits::DEFAULT)
    }

    #[test]
    fn serialization_round_trips() {
        let src = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!--c-->\n<a xmlns=\"urn:a\" x=\"1&#10;2&quot;\">t&amp;&lt;&gt;&#13;<?pi data?><b/><![CDATA[<x>]]></a>\n";
        let d = doc(src).expect("parses");
        let once = d.to_bytes();
        let d2 = parse_document(&once, &Limits::DEFAULT).expect("reparses");
        assert_eq!(d, d2);
        assert_eq!(once, d2.to_bytes());
        assert_eq!(d.root.attr("x"), Some("1\n2\""));
        assert_eq!(d.root.children[0], Node::Text("t&<>\r".into()));
        // CDATA merged into the text after <b/>.
        assert_eq!(d.root.children.last(), Some(&Node::Text("<x>".into())));
    }

    #[test]
    fn fixup_adds_missing_declarations() {
        let d = doc("<r xmlns='urn:rl' xmlns:p='urn:p'><e p:a='1'><p:c/></e></r>").expect("doc");
        let mut e = d.at(&[0]).expect("e").clone();
        // Written inside a scope where the default is another namespace and `p` is unbound.
        let mut outer = NsScope::new();
        outer.bind(None, "urn:diff");
        fixup_namespaces(&mut e, &outer);
        let s = element_to_string(&e);
        let mut wrapper = String::from("<w xmlns='urn:diff'>");
        wrapper.push_str(&s);
        wrapper.push_str("</w>");
        let re = doc(&wrapper).expect("reparses");
        let e2 = re.at(&[0]).expect("e2");
        let mut a = String::new();
        canonical_element(e2, &mut a);
        let mut b = String::new();
        canonical_element(d.at(&[0]).expect("e"), &mut b);
        assert_eq!(a, b, "{s}");
    }

    #[test]
    fn normalize_merges_text() {
        let mut v = vec![
            Node::Text("a".into()),
            Node::Text("".into()),
            Node::Text("b".into()),
            Node::Comment("c".into()),
        ];
        normalize_text_around(&mut v, 1);
        assert_eq!(v, vec![Node::Text("ab".into()), Node::Comment("c".into())]);
    }
}
