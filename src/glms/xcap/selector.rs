//! Node selectors: XCAP (RFC 4825 §6.3) and the XPath subset of RFC 5261 patches.
//!
//! One grammar serves both, with two ways of resolving unprefixed names:
//! - XCAP: an unprefixed element name is in the application usage's default namespace
//!   (§6.3), prefixes come from the `xmlns()` query (§6.4), and an attribute value may hold
//!   XML references (`att-value = AttValue`).
//! - Patch: names resolve through the namespace declarations in scope on the patch operation
//!   element, including its default namespace (RFC 5261 §4.2.1). When that default is the
//!   xcap-diff namespace itself (which no patched document uses) an unprefixed name is matched
//!   on its local part alone, to cope with peers that write XCAP-style selectors.
//!
//! Steps: `name`, `p:name`, `*`, each followed by any number of `[n]` / `[@attr="v"]`
//! predicates evaluated in order; patch selectors may also use `text()` and `comment()`
//! steps and a leading `/`. Terminals: `@attr`, `namespace::*` (XCAP) or `namespace::p`
//! (patch).
#![forbid(unsafe_code)]

use super::dom::{Document, Element, Node, NsScope, split_qname};
use super::error::XcapError;

/// Most steps in one selector (documents are at most 32 deep anyway).
const MAX_STEPS: usize = 64;
/// Most predicates on one step.
const MAX_PREDICATES: usize = 8;

/// Why a selector does not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("node selector syntax error")]
    Syntax,
    #[error("node selector uses an unbound prefix")]
    UnboundPrefix,
    #[error("node selector too long")]
    TooLong,
}

impl From<SelectorError> for XcapError {
    fn from(e: SelectorError) -> Self {
        match e {
            SelectorError::Syntax => XcapError::BadRequest("node selector syntax error"),
            SelectorError::UnboundPrefix => XcapError::BadRequest("node selector prefix not bound"),
            SelectorError::TooLong => XcapError::BadRequest("node selector too long"),
        }
    }
}

/// How names in a selector get their namespaces.
#[derive(Clone, Copy, Debug)]
pub enum Dialect<'a> {
    /// RFC 4825: default namespace of the usage, prefixes from `xmlns()`.
    Xcap {
        default_ns: &'a str,
        bindings: &'a [(String, String)],
    },
    /// RFC 5261: the scope of the patch operation element.
    Patch { scope: &'a NsScope },
}

/// Which elements a name test accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameTest {
    /// `*`
    Any,
    /// An expanded name.
    Name { ns: Option<String>, local: String },
    /// Local name in any namespace (lenient patch fallback, see module doc).
    Local(String),
}

impl NameTest {
    /// True when `e` passes.
    pub fn matches(&self, e: &Element) -> bool {
        match self {
            NameTest::Any => true,
            NameTest::Name { ns, local } => e.name.local == *local && e.name.ns == *ns,
            NameTest::Local(local) => e.name.local == *local,
        }
    }
}

/// What a step selects among the children of its context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeTest {
    Element(NameTest),
    /// `text()` (patch only).
    Text,
    /// `comment()` (patch only).
    Comment,
}

/// A predicate: `[n]` or `[@attr="v"]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Predicate {
    Position(usize),
    Attr {
        ns: Option<String>,
        local: String,
        value: String,
    },
}

/// One location step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub test: NodeTest,
    pub predicates: Vec<Predicate>,
    /// The step as written (for ancestor URIs).
    pub raw: String,
}

impl Step {
    /// The first position predicate, if any.
    pub fn position(&self) -> Option<usize> {
        self.predicates.iter().find_map(|p| match p {
            Predicate::Position(n) => Some(*n),
            Predicate::Attr { .. } => None,
        })
    }
}

/// What follows the element steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Terminal {
    /// `@name`
    Attribute { ns: Option<String>, local: String },
    /// `namespace::*`
    Namespaces,
    /// `namespace::prefix` (patch; empty string is the default namespace)
    Namespace(String),
}

/// A parsed selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    pub steps: Vec<Step>,
    pub terminal: Option<Terminal>,
}

/// Splits at `/` outside quotes and brackets.
fn split_steps(s: &str) -> Result<Vec<&str>, SelectorError> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') => depth = depth.checked_sub(1).ok_or(SelectorError::Syntax)?,
            (None, '/') if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
                if out.len() > MAX_STEPS {
                    return Err(SelectorError::TooLong);
                }
            }
            _ => {}
        }
    }
    if quote.is_some() || depth != 0 {
        return Err(SelectorError::Syntax);
    }
    out.push(&s[start..]);
    Ok(out)
}

/// Parses a selector in the given dialect.
pub fn parse(s: &str, dialect: Dialect<'_>) -> Result<Selector, SelectorError> {
    let s = match dialect {
        Dialect::Patch { .. } => s.trim().strip_prefix('/').unwrap_or(s.trim()),
        Dialect::Xcap { .. } => s,
    };
    let parts = split_steps(s)?;
    let mut steps = Vec::with_capacity(parts.len());
    let mut terminal = None;
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        if part.is_empty() {
            return Err(SelectorError::Syntax);
        }
        if let Some(t) = parse_terminal(part, dialect)? {
            if !last || i == 0 {
                return Err(SelectorError::Syntax);
            }
            terminal = Some(t);
            continue;
        }
        steps.push(parse_step(part, dialect)?);
    }
    // Only a final step may select a text or comment node.
    let n = steps.len();
    if steps
        .iter()
        .take(n.saturating_sub(1))
        .any(|s| !matches!(s.test, NodeTest::Element(_)))
        || (terminal.is_some()
            && steps
                .last()
                .is_some_and(|s| !matches!(s.test, NodeTest::Element(_))))
    {
        return Err(SelectorError::Syntax);
    }
    Ok(Selector { steps, terminal })
}

fn parse_terminal(part: &str, dialect: Dialect<'_>) -> Result<Option<Terminal>, SelectorError> {
    if let Some(name) = part.strip_prefix('@') {
        let (ns, local) = resolve_attr_name(name, dialect)?;
        return Ok(Some(Terminal::Attribute { ns, local }));
    }
    if let Some(p) = part.strip_prefix("namespace::") {
        return match (p, dialect) {
            ("*", _) => Ok(Some(Terminal::Namespaces)),
            (p, Dialect::Patch { .. }) if p.is_empty() || super::dom::is_ncname(p) => {
                Ok(Some(Terminal::Namespace(p.to_owned())))
            }
            _ => Err(SelectorError::Syntax),
        };
    }
    Ok(None)
}

fn resolve_attr_name(
    name: &str,
    dialect: Dialect<'_>,
) -> Result<(Option<String>, String), SelectorError> {
    let (prefix, local) = split_qname(name).ok_or(SelectorError::Syntax)?;
    // Unprefixed attribute names are in no namespace, in both dialects.
    let ns = match prefix {
        None => None,
        Some(p) => Some(lookup_prefix(p, dialect)?),
    };
    Ok((ns, local.to_owned()))
}

fn lookup_prefix(p: &str, dialect: Dialect<'_>) -> Result<String, SelectorError> {
    match dialect {
        Dialect::Xcap { bindings, .. } => {
            if p == "xml" {
                return Ok(super::dom::XML_NS.to_owned());
            }
            bindings
                .iter()
                .rev()
                .find(|(q, _)| q == p)
                .map(|(_, u)| u.clone())
                .ok_or(SelectorError::UnboundPrefix)
        }
        Dialect::Patch { scope } => scope
            .lookup(Some(p))
            .map(str::to_owned)
            .ok_or(SelectorError::UnboundPrefix),
    }
}

fn parse_step(part: &str, dialect: Dialect<'_>) -> Result<Step, SelectorError> {
    let name_end = part.find('[').unwrap_or(part.len());
    let (name, mut rest) = part.split_at(name_end);
    let test = match name {
        "*" => NodeTest::Element(NameTest::Any),
        "text()" if matches!(dialect, Dialect::Patch { .. }) => NodeTest::Text,
        "comment()" if matches!(dialect, Dialect::Patch { .. }) => NodeTest::Comment,
        _ => {
            let (prefix, local) = split_qname(name).ok_or(SelectorError::Syntax)?;
            let test = match (prefix, dialect) {
                (Some(p), _) => NameTest::Name {
                    ns: Some(lookup_prefix(p, dialect)?),
                    local: local.to_owned(),
                },
                // RFC 4825 §6.3: unprefixed = the usage's default document namespace.
                (None, Dialect::Xcap { default_ns, .. }) => NameTest::Name {
                    ns: Some(default_ns.to_owned()),
                    local: local.to_owned(),
                },
                // RFC 5261 §4.2.1: unprefixed = the patch's default namespace.
                (None, Dialect::Patch { scope }) => match scope.default_ns() {
                    Some(super::diff::XCAP_DIFF_NS) => NameTest::Local(local.to_owned()),
                    ns => NameTest::Name {
                        ns: ns.map(str::to_owned),
                        local: local.to_owned(),
                    },
                },
            };
            NodeTest::Element(test)
        }
    };
    let mut predicates = Vec::new();
    while !rest.is_empty() {
        if predicates.len() >= MAX_PREDICATES {
            return Err(SelectorError::TooLong);
        }
        let inner_start = rest.strip_prefix('[').ok_or(SelectorError::Syntax)?;
        let close = find_close(inner_start).ok_or(SelectorError::Syntax)?;
        let inner = &inner_start[..close];
        rest = &inner_start[close + 1..];
        predicates.push(parse_predicate(inner, dialect)?);
    }
    Ok(Step {
        test,
        predicates,
        raw: part.to_owned(),
    })
}

/// Index of the `]` closing a predicate, skipping quoted text.
fn find_close(s: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, ']') => return Some(i),
            _ => {}
        }
    }
    None
}

fn parse_predicate(inner: &str, dialect: Dialect<'_>) -> Result<Predicate, SelectorError> {
    let inner = inner.trim();
    if !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_digit()) {
        let n: usize = inner.parse().map_err(|_| SelectorError::Syntax)?;
        if n == 0 {
            return Err(SelectorError::Syntax);
        }
        return Ok(Predicate::Position(n));
    }
    let attr = inner.strip_prefix('@').ok_or(SelectorError::Syntax)?;
    let (name, value) = attr.split_once('=').ok_or(SelectorError::Syntax)?;
    let (ns, local) = resolve_attr_name(name.trim(), dialect)?;
    let value = value.trim();
    let quote = value.chars().next().ok_or(SelectorError::Syntax)?;
    if !(quote == '"' || quote == '\'') || value.len() < 2 || !value.ends_with(quote) {
        return Err(SelectorError::Syntax);
    }
    let raw = &value[1..value.len() - 1];
    if raw.contains(quote) {
        return Err(SelectorError::Syntax);
    }
    let value = match dialect {
        Dialect::Xcap { .. } => unescape_att_value(raw)?,
        Dialect::Patch { .. } => raw.to_owned(),
    };
    Ok(Predicate::Attr { ns, local, value })
}

/// XML `AttValue` references (RFC 4825 §6.3 uses the XML production).
fn unescape_att_value(raw: &str) -> Result<String, SelectorError> {
    if raw.contains('<') {
        return Err(SelectorError::Syntax);
    }
    if !raw.contains('&') {
        return Ok(raw.to_owned());
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after.find(';').ok_or(SelectorError::Syntax)?;
        let name = &after[..end];
        let c = match name {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let num = name.strip_prefix('#').ok_or(SelectorError::Syntax)?;
                let code = match num.strip_prefix('x') {
                    Some(h) => u32::from_str_radix(h, 16),
                    None => num.parse(),
                }
                .map_err(|_| SelectorError::Syntax)?;
                char::from_u32(code)
                    .filter(|c| *c != '\0')
                    .ok_or(SelectorError::Syntax)?
            }
        };
        out.push(c);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A path to a node: child indices from the root element (`[]` = the root). All indices but
/// the last address elements; the last may address a text or comment node.
pub type NodePath = Vec<usize>;

fn node_matches(test: &NodeTest, n: &Node) -> bool {
    match (test, n) {
        (NodeTest::Element(t), Node::Element(e)) => t.matches(e),
        (NodeTest::Text, Node::Text(_)) => true,
        (NodeTest::Comment, Node::Comment(_)) => true,
        _ => false,
    }
}

fn apply_predicates(children: &[Node], mut cand: Vec<usize>, preds: &[Predicate]) -> Vec<usize> {
    for p in preds {
        cand = match p {
            // XPath: position within the list filtered so far.
            Predicate::Position(n) => cand.get(n - 1).map(|i| vec![*i]).unwrap_or_default(),
            Predicate::Attr { ns, local, value } => cand
                .into_iter()
                .filter(|&i| match &children[i] {
                    Node::Element(e) => e.attr_ns(ns.as_deref(), local) == Some(value.as_str()),
                    _ => false,
                })
                .collect(),
        };
    }
    cand
}

/// Evaluates one step from a context element; returns child indices.
fn eval_step(ctx: &Element, step: &Step) -> Vec<usize> {
    let cand: Vec<usize> = ctx
        .children
        .iter()
        .enumerate()
        .filter(|(_, n)| node_matches(&step.test, n))
        .map(|(i, _)| i)
        .collect();
    apply_predicates(&ctx.children, cand, &step.predicates)
}

/// Whether the first step selects the root element (the document node's only element child;
/// the candidate list has one member, so only position 1 can pass).
fn root_matches(doc: &Document, step: &Step) -> bool {
    let NodeTest::Element(t) = &step.test else {
        return false;
    };
    t.matches(&doc.root)
        && step.predicates.iter().all(|p| match p {
            Predicate::Position(n) => *n == 1,
            Predicate::Attr { ns, local, value } => {
                doc.root.attr_ns(ns.as_deref(), local) == Some(value.as_str())
            }
        })
}

/// An XCAP node selector (RFC 4825 §6.3, no prefixes needed) that addresses the element at
/// `path` by position: `name[k]` for elements in `default_ns`, `*[k]` for any other.
pub fn xcap_selector_for(doc: &Document, path: &[usize], default_ns: &str) -> String {
    let in_default = |e: &Element| e.name.ns.as_deref() == Some(default_ns);
    let mut out = if in_default(&doc.root) {
        doc.root.name.local.clone()
    } else {
        "*".to_owned()
    };
    let mut cur = &doc.root;
    for &i in path {
        let Some(Node::Element(child)) = cur.children.get(i) else {
            break;
        };
        let (name, k) = if in_default(child) {
            let k = cur.children[..i]
                .iter()
                .filter(|n| matches!(n, Node::Element(e) if e.name.same_expanded(&child.name)))
                .count();
            (child.name.local.as_str(), k + 1)
        } else {
            let k = cur.children[..i]
                .iter()
                .filter(|n| matches!(n, Node::Element(_)))
                .count();
            ("*", k + 1)
        };
        out.push('/');
        out.push_str(name);
        out.push_str(&format!("[{k}]"));
        cur = child;
    }
    out
}

/// Every node the steps select, in document order.
pub fn select(doc: &Document, steps: &[Step]) -> Vec<NodePath> {
    let Some(first) = steps.first() else {
        return Vec::new();
    };
    let mut ctx: Vec<NodePath> = if root_matches(doc, first) {
        vec![Vec::new()]
    } else {
        Vec::new()
    };
    for step in &steps[1..] {
        let mut next = Vec::new();
        for p in &ctx {
            let Some(el) = doc.at(p) else { continue };
            for i in eval_step(el, step) {
                let mut q = p.clone();
                q.push(i);
                next.push(q);
            }
        }
        ctx = next;
        if ctx.is_empty() {
            break;
        }
    }
    ctx
}

/// The longest prefix of `steps` that selects exactly one element: `(how many steps, path)`.
/// `(0, [])` when not even the root step matches. Used for `<no-parent><ancestor>`.
pub fn deepest_unique(doc: &Document, steps: &[Step]) -> (usize, NodePath) {
    let mut best = (0, Vec::new());
    for k in 1..=steps.len() {
        let found = select(doc, &steps[..k]);
        match found.as_slice() {
            [one] if doc.at(one).is_some() => best = (k, one.clone()),
            _ => break,
        }
    }
    best
}

/// Index where a new element belongs under `parent` for the last step of a PUT
/// (RFC 4825 §8.2.3): with a position `n`, right after the `(n-1)`th sibling the name test
/// accepts (before the first one when `n` is 1); without, after the last such sibling; with
/// none, as the last child. `None` when the position cannot be reached.
pub fn insertion_index(parent: &Element, step: &Step) -> Option<usize> {
    let NodeTest::Element(test) = &step.test else {
        return None;
    };
    let same: Vec<usize> = parent
        .child_elements()
        .filter(|(_, e)| test.matches(e))
        .map(|(i, _)| i)
        .collect();
    match step.position() {
        Some(1) => Some(same.first().copied().unwrap_or(parent.children.len())),
        Some(n) => same.get(n - 2).map(|i| i + 1),
        None => Some(same.last().map(|i| i + 1).unwrap_or(parent.children.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::super::dom::{Limits, parse_document};
    use super::*;

    const RL: &str = "urn:ietf:params:xml:ns:resource-lists";

    fn xcap(s: &str) -> Result<Selector, SelectorError> {
        parse(
            s,
            Dialect::Xcap {
                default_ns: RL,
                bindings: &[],
            },
        )
    }

    fn doc() -> Document {
        parse_document(
            br#"<?xml version="1.0"?>
<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists" xmlns:x="urn:x">
  <list name="friends">
    <entry uri="sip:a@example.com"><display-name>A</display-name></entry>
    <entry uri="sip:b@example.com"/>
    <x:entry uri="sip:c@example.com"/>
    <entry uri="sip:d@example.com" x:tag="t"/>
  </list>
  <list name="oma_blockedcontacts">
    <entry uri="sip:tom@example.com"/>
  </list>
  <list name="friends"/>
</resource-lists>"#,
            &Limits::DEFAULT,
        )
        .expect("doc")
    }

    fn uris(d: &Document, sel: &str) -> Vec<String> {
        let s = parse(
            sel,
            Dialect::Xcap {
                default_ns: RL,
                bindings: &[("x".to_owned(), "urn:x".to_owned())],
            },
        )
        .expect(sel);
        select(d, &s.steps)
            .iter()
            .map(|p| {
                let e = d.at(p).expect("element");
                e.attr("uri")
                    .or(e.attr("name"))
                    .unwrap_or(&e.name.local)
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn parse_table() {
        let ok = [
            "resource-lists",
            "resource-lists/list",
            "resource-lists/list[2]",
            "resource-lists/list[@name=\"friends\"]",
            "resource-lists/list[@name='friends']",
            "resource-lists/list[1][@name=\"friends\"]",
            "resource-lists/*[@name=\"friends\"]",
            "resource-lists/*",
            "resource-lists/*[3]",
            "resource-lists/list/@name",
            "resource-lists/namespace::*",
            "resource-lists/list[@name=\"a/b[c]\"]/entry",
            "resource-lists/list[@name=\"a&amp;b\"]",
        ];
        for s in ok {
            assert!(xcap(s).is_ok(), "{s}");
        }
        let bad = [
            ("", SelectorError::Syntax),
            ("/resource-lists", SelectorError::Syntax),
            ("resource-lists//list", SelectorError::Syntax),
            ("resource-lists/list[0]", SelectorError::Syntax),
            ("resource-lists/list[", SelectorError::Syntax),
            ("resource-lists/list]", SelectorError::Syntax),
            ("resource-lists/list[@name=friends]", SelectorError::Syntax),
            ("resource-lists/list[@name=\"x]", SelectorError::Syntax),
            ("resource-lists/list[name=\"x\"]", SelectorError::Syntax),
            ("resource-lists/list[last()]", SelectorError::Syntax),
            ("@name", SelectorError::Syntax),
            ("resource-lists/@name/list", SelectorError::Syntax),
            ("resource-lists/namespace::x", SelectorError::Syntax),
            ("resource-lists/p:list", SelectorError::UnboundPrefix),
            ("resource-lists/list/@p:a", SelectorError::UnboundPrefix),
            ("resource-lists/text()", SelectorError::Syntax),
            ("resource-lists/1list", SelectorError::Syntax),
            (
                "resource-lists/list[@name=\"&bogus;\"]",
                SelectorError::Syntax,
            ),
        ];
        for (s, want) in bad {
            assert_eq!(xcap(s).err(), Some(want), "{s}");
        }
        let long = vec!["a"; 100].join("/");
        assert_eq!(xcap(&long).err(), Some(SelectorError::TooLong));

        let s = xcap("resource-lists/list[1][@name=\"friends\"]/@name").expect("ok");
        assert_eq!(s.steps.len(), 2);
        assert_eq!(s.steps[1].position(), Some(1));
        assert_eq!(
            s.terminal,
            Some(Terminal::Attribute {
                ns: None,
                local: "name".into()
            })
        );
        assert_eq!(
            s.steps[0].test,
            NodeTest::Element(NameTest::Name {
                ns: Some(RL.into()),
                local: "resource-lists".into()
            })
        );
    }

    #[test]
    fn resolution_table() {
        let d = doc();
        let cases: &[(&str, &[&str])] = &[
            ("resource-lists", &["resource-lists"]),
            ("list", &[]),
            (
                "resource-lists/list",
                &["friends", "oma_blockedcontacts", "friends"],
            ),
            ("resource-lists/list[2]", &["oma_blockedcontacts"]),
            ("resource-lists/list[4]", &[]),
            (
                "resource-lists/list[@name=\"friends\"]",
                &["friends", "friends"],
            ),
            ("resource-lists/list[@name=\"friends\"][2]", &["friends"]),
            ("resource-lists/list[1][@name=\"friends\"]", &["friends"]),
            ("resource-lists/list[2][@name=\"friends\"]", &[]),
            (
                "resource-lists/list[1]/entry",
                &[
                    "sip:a@example.com",
                    "sip:b@example.com",
                    "sip:d@example.com",
                ],
            ),
            ("resource-lists/list[1]/entry[3]", &["sip:d@example.com"]),
            ("resource-lists/list[1]/*[3]", &["sip:c@example.com"]),
            ("resource-lists/list[1]/x:entry", &["sip:c@example.com"]),
            (
                "resource-lists/list[1]/*[@uri=\"sip:c@example.com\"]",
                &["sip:c@example.com"],
            ),
            (
                "resource-lists/list[1]/entry[@uri=\"sip:c@example.com\"]",
                &[],
            ),
            (
                "resource-lists/list[1]/entry[@x:tag=\"t\"]",
                &["sip:d@example.com"],
            ),
            (
                "resource-lists/list/entry[@uri=\"sip:tom@example.com\"]",
                &["sip:tom@example.com"],
            ),
            (
                "resource-lists/list[1]/entry[1]/display-name",
                &["display-name"],
            ),
            ("resource-lists/*/*/display-name", &["display-name"]),
        ];
        for (sel, want) in cases {
            assert_eq!(uris(&d, sel), *want, "{sel}");
        }
    }

    #[test]
    fn ancestor_and_insertion_point() {
        let d = doc();
        let s = xcap(
            "resource-lists/list[@name=\"oma_blockedcontacts\"]/entry[@uri=\"x\"]/display-name",
        )
        .expect("ok");
        let (k, path) = deepest_unique(&d, &s.steps);
        assert_eq!(k, 2);
        assert_eq!(
            d.at(&path).and_then(|e| e.attr("name")),
            Some("oma_blockedcontacts")
        );

        let list = d.at(&path).expect("list");
        let entry = xcap("entry").expect("ok");
        // After the last entry.
        let idx = insertion_index(list, &entry.steps[0]).expect("idx");
        assert_eq!(idx, 2);
        let first = xcap("entry[1]").expect("ok");
        assert_eq!(insertion_index(list, &first.steps[0]), Some(1));
        let third = xcap("entry[3]").expect("ok");
        assert_eq!(insertion_index(list, &third.steps[0]), None);
        let second = xcap("entry[2]").expect("ok");
        assert_eq!(insertion_index(list, &second.steps[0]), Some(2));
    }

    #[test]
    fn patch_dialect() {
        let mut scope = NsScope::new();
        scope.bind(None, super::super::diff::XCAP_DIFF_NS);
        scope.bind(Some("rl"), RL);
        let d = doc();
        let s = parse(
            "/rl:resource-lists/rl:list[@name='oma_blockedcontacts']/rl:entry[1]",
            Dialect::Patch { scope: &scope },
        )
        .expect("ok");
        assert_eq!(select(&d, &s.steps).len(), 1);
        // Lenient: unprefixed under the xcap-diff default namespace matches local names.
        let s = parse(
            "resource-lists/list[2]/entry",
            Dialect::Patch { scope: &scope },
        )
        .expect("ok");
        assert_eq!(select(&d, &s.steps).len(), 1);
        let s = parse(
            "rl:resource-lists/rl:list[1]/text()[2]",
            Dialect::Patch { scope: &scope },
        )
        .expect("ok");
        let found = select(&d, &s.steps);
        assert_eq!(found.len(), 1);
        assert!(matches!(
            d.at(&found[0][..1]).map(|l| &l.children[found[0][1]]),
            Some(Node::Text(_))
        ));
        let s = parse(
            "rl:resource-lists/namespace::x",
            Dialect::Patch { scope: &scope },
        )
        .expect("ok");
        assert_eq!(s.terminal, Some(Terminal::Namespace("x".into())));
    }
}
