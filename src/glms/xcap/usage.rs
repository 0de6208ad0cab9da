//! Application usages (RFC 4825 §5) served by the GLMS (SPEC G1): `resource-lists`
//! (RFC 4826), `org.openmobilealliance.access-rules` (common policy, RFC 4745) and the
//! read-only `xcap-caps` (RFC 4825 §12), generated from the registry.
//!
//! Validation is structural, not a full XML Schema: the right root and namespace, the
//! elements each usage allows in its own namespace, required attributes, and the uniqueness
//! constraints (409 `uniqueness-failure` with `<exists field>` and alternative values).
//! Elements of other namespaces are accepted where the schemas have `<xs:any ##other>`.
#![forbid(unsafe_code)]

use super::dom::{Document, Element, Node};
use super::error::{Exists, XcapError};
use super::selector::xcap_selector_for;

pub const RESOURCE_LISTS_NS: &str = "urn:ietf:params:xml:ns:resource-lists";
pub const COMMON_POLICY_NS: &str = "urn:ietf:params:xml:ns:common-policy";
pub const OMA_COMMON_POLICY_NS: &str = "urn:oma:xml:xdm:common-policy";
pub const OMA_EXTENSIONS_NS: &str = "urn:oma:xml:xdm:extensions";
pub const XCAP_CAPS_NS: &str = "urn:ietf:params:xml:ns:xcap-caps";

/// Which rules a usage applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsageKind {
    ResourceLists,
    AccessRules,
    XcapCaps,
    /// Any other usage: only the root element and namespace are checked.
    Opaque,
}

/// One application usage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usage {
    pub auid: &'static str,
    /// MIME type of whole documents.
    pub mime: &'static str,
    /// Default document namespace (RFC 4825 §5.2): unprefixed selector names are in it.
    pub default_ns: &'static str,
    /// Local name of the root element.
    pub root: &'static str,
    /// Default document name.
    pub default_doc: &'static str,
    pub kind: UsageKind,
    /// Further namespaces documents of this usage use (listed in xcap-caps).
    pub extra_namespaces: &'static [&'static str],
}

impl Usage {
    /// `xcap-caps` is generated and cannot be written (RFC 4825 §12.1).
    pub fn read_only(&self) -> bool {
        self.kind == UsageKind::XcapCaps
    }

    /// Whether documents may live in the global tree.
    pub fn has_global_tree(&self) -> bool {
        self.kind == UsageKind::XcapCaps
    }

    /// Whether documents may live in users' trees.
    pub fn has_user_tree(&self) -> bool {
        self.kind != UsageKind::XcapCaps
    }

    /// Checks a whole document against the usage's structure and uniqueness rules.
    pub fn validate(&self, doc: &Document) -> Result<(), XcapError> {
        // RFC 4825 §5.2 / §8.2.5: the root must be the usage's root in its namespace.
        if !doc.root.name.is(self.default_ns, self.root) {
            return Err(XcapError::SchemaValidation(
                "wrong root element or namespace",
            ));
        }
        match self.kind {
            UsageKind::ResourceLists => validate_resource_lists(doc),
            UsageKind::AccessRules => validate_ruleset(doc),
            UsageKind::XcapCaps | UsageKind::Opaque => Ok(()),
        }
    }
}

/// The usages this server knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registry {
    usages: Vec<Usage>,
    extensions: Vec<String>,
}

impl Registry {
    /// The SPEC G1 set.
    pub fn standard() -> Registry {
        Registry {
            usages: vec![
                Usage {
                    auid: "xcap-caps",
                    mime: "application/xcap-caps+xml",
                    default_ns: XCAP_CAPS_NS,
                    root: "xcap-caps",
                    default_doc: "index",
                    kind: UsageKind::XcapCaps,
                    extra_namespaces: &[],
                },
                Usage {
                    auid: "resource-lists",
                    mime: "application/resource-lists+xml",
                    default_ns: RESOURCE_LISTS_NS,
                    root: "resource-lists",
                    default_doc: "index",
                    kind: UsageKind::ResourceLists,
                    extra_namespaces: &[],
                },
                Usage {
                    auid: "org.openmobilealliance.access-rules",
                    mime: "application/auth-policy+xml",
                    default_ns: COMMON_POLICY_NS,
                    root: "ruleset",
                    default_doc: "index",
                    kind: UsageKind::AccessRules,
                    extra_namespaces: &[OMA_COMMON_POLICY_NS, OMA_EXTENSIONS_NS],
                },
            ],
            extensions: Vec::new(),
        }
    }

    /// The usage for an AUID.
    pub fn usage(&self, auid: &str) -> Option<&Usage> {
        self.usages.iter().find(|u| u.auid == auid)
    }

    /// Adds (or replaces) a usage, e.g. an [`UsageKind::Opaque`] one for another AUID.
    pub fn register(&mut self, usage: Usage) {
        self.usages.retain(|u| u.auid != usage.auid);
        self.usages.push(usage);
    }

    /// Advertises an XCAP extension in xcap-caps (RFC 4825 §12.2 `<extensions>`).
    pub fn add_extension(&mut self, name: &str) {
        if !self.extensions.iter().any(|e| e == name) {
            self.extensions.push(name.to_owned());
        }
    }

    /// All usages, in registration order.
    pub fn usages(&self) -> &[Usage] {
        &self.usages
    }

    /// The `xcap-caps` document (RFC 4825 §12.2): AUIDs, extensions and namespaces.
    pub fn caps_document(&self) -> Vec<u8> {
        let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xcap-caps xmlns=\"");
        s.push_str(XCAP_CAPS_NS);
        s.push_str("\">\n  <auids>\n");
        for u in &self.usages {
            s.push_str("    <auid>");
            super::dom::escape_text_into(u.auid, &mut s);
            s.push_str("</auid>\n");
        }
        s.push_str("  </auids>\n");
        if !self.extensions.is_empty() {
            s.push_str("  <extensions>\n");
            for e in &self.extensions {
                s.push_str("    <extension>");
                super::dom::escape_text_into(e, &mut s);
                s.push_str("</extension>\n");
            }
            s.push_str("  </extensions>\n");
        }
        s.push_str("  <namespaces>\n");
        let mut seen: Vec<&str> = Vec::new();
        let all = self
            .usages
            .iter()
            .flat_map(|u| std::iter::once(u.default_ns).chain(u.extra_namespaces.iter().copied()))
            .chain(std::iter::once(super::error::XCAP_ERROR_NS));
        for ns in all {
            if seen.contains(&ns) {
                continue;
            }
            seen.push(ns);
            s.push_str("    <namespace>");
            super::dom::escape_text_into(ns, &mut s);
            s.push_str("</namespace>\n");
        }
        s.push_str("  </namespaces>\n</xcap-caps>\n");
        s.into_bytes()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::standard()
    }
}

fn non_ws_text(e: &Element) -> bool {
    e.children
        .iter()
        .any(|n| matches!(n, Node::Text(t) if !t.trim().is_empty()))
}

/// Alternative values for a name that is taken among `taken` (RFC 4825 §11.2 alt-value).
fn alternatives(base: &str, taken: &[&str]) -> Vec<String> {
    (1..50)
        .map(|i| format!("{base}-{i}"))
        .filter(|c| !taken.contains(&c.as_str()))
        .take(3)
        .collect()
}

// ------------------------------------------------------------------------------------------
// resource-lists (RFC 4826 §3.3 schema, §3.4 constraints)
// ------------------------------------------------------------------------------------------

fn validate_resource_lists(doc: &Document) -> Result<(), XcapError> {
    let root = &doc.root;
    if non_ws_text(root) {
        return Err(XcapError::SchemaValidation("text in resource-lists"));
    }
    for (_, child) in root.child_elements() {
        if !child.name.is(RESOURCE_LISTS_NS, "list") {
            return Err(XcapError::SchemaValidation(
                "resource-lists may only contain list",
            ));
        }
    }
    let mut exists = Vec::new();
    check_list_container(doc, &[], &mut exists)?;
    if exists.is_empty() {
        Ok(())
    } else {
        Err(XcapError::UniquenessFailure(exists.into_boxed_slice()))
    }
}

/// Checks the children of `resource-lists` or a `list` at `path`, recursively.
fn check_list_container(
    doc: &Document,
    path: &[usize],
    exists: &mut Vec<Exists>,
) -> Result<(), XcapError> {
    let Some(el) = doc.at(path) else {
        return Ok(());
    };
    let mut names: Vec<&str> = Vec::new();
    let mut uris: Vec<&str> = Vec::new();
    let mut refs: Vec<&str> = Vec::new();
    let mut anchors: Vec<&str> = Vec::new();
    let is_list = !path.is_empty();
    if is_list && non_ws_text(el) {
        return Err(XcapError::SchemaValidation("text in list"));
    }
    for (i, child) in el.child_elements() {
        if child.name.ns.as_deref() != Some(RESOURCE_LISTS_NS) {
            continue; // <xs:any namespace="##other">
        }
        let mut child_path = path.to_vec();
        child_path.push(i);
        let field = |attr: &str| {
            format!(
                "{}/@{attr}",
                xcap_selector_for(doc, &child_path, RESOURCE_LISTS_NS)
            )
        };
        match child.name.local.as_str() {
            "list" => {
                // RFC 4826 §3.4.? : list names are unique among sibling lists.
                if let Some(n) = child.attr("name") {
                    if names.contains(&n) {
                        exists.push(Exists {
                            field: field("name"),
                            alt_values: alternatives(n, &names),
                        });
                    }
                    names.push(n);
                }
                check_list_container(doc, &child_path, exists)?;
            }
            "entry" if is_list => {
                let uri = child
                    .attr("uri")
                    .ok_or(XcapError::SchemaValidation("entry without uri"))?;
                check_display_name_only(child)?;
                // RFC 4826 §3.4: the uri of an entry is unique within its list.
                if uris.contains(&uri) {
                    exists.push(Exists {
                        field: field("uri"),
                        alt_values: Vec::new(),
                    });
                }
                uris.push(uri);
            }
            "entry-ref" if is_list => {
                let r = child
                    .attr("ref")
                    .ok_or(XcapError::SchemaValidation("entry-ref without ref"))?;
                check_display_name_only(child)?;
                if refs.contains(&r) {
                    exists.push(Exists {
                        field: field("ref"),
                        alt_values: Vec::new(),
                    });
                }
                refs.push(r);
            }
            "external" if is_list => {
                check_display_name_only(child)?;
                if let Some(a) = child.attr("anchor") {
                    if anchors.contains(&a) {
                        exists.push(Exists {
                            field: field("anchor"),
                            alt_values: Vec::new(),
                        });
                    }
                    anchors.push(a);
                }
            }
            "display-name" if is_list => {
                if child.child_elements().next().is_some() {
                    return Err(XcapError::SchemaValidation(
                        "display-name has element content",
                    ));
                }
            }
            _ => return Err(XcapError::SchemaValidation("element not allowed in list")),
        }
    }
    Ok(())
}

/// `entry`, `entry-ref`, `external`: an optional `display-name` plus foreign elements.
fn check_display_name_only(el: &Element) -> Result<(), XcapError> {
    if non_ws_text(el) {
        return Err(XcapError::SchemaValidation("text in entry"));
    }
    let mut display_names = 0;
    for (_, c) in el.child_elements() {
        if c.name.ns.as_deref() != Some(RESOURCE_LISTS_NS) {
            continue;
        }
        if c.name.local != "display-name" || c.child_elements().next().is_some() {
            return Err(XcapError::SchemaValidation("element not allowed in entry"));
        }
        display_names += 1;
    }
    if display_names > 1 {
        return Err(XcapError::SchemaValidation("more than one display-name"));
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// common policy ruleset (RFC 4745 §5, §13 schema)
// ------------------------------------------------------------------------------------------

fn validate_ruleset(doc: &Document) -> Result<(), XcapError> {
    let root = &doc.root;
    if non_ws_text(root) {
        return Err(XcapError::SchemaValidation("text in ruleset"));
    }
    let mut ids: Vec<&str> = Vec::new();
    let mut exists = Vec::new();
    for (i, rule) in root.child_elements() {
        if !rule.name.is(COMMON_POLICY_NS, "rule") {
            return Err(XcapError::SchemaValidation("ruleset may only contain rule"));
        }
        let id = rule
            .attr("id")
            .ok_or(XcapError::SchemaValidation("rule without id"))?;
        // RFC 4745 §13: `id` is an xs:ID, unique in the document.
        if ids.contains(&id) {
            exists.push(Exists {
                field: format!("{}/@id", xcap_selector_for(doc, &[i], COMMON_POLICY_NS)),
                alt_values: alternatives(id, &ids),
            });
        }
        ids.push(id);
        check_rule(rule)?;
    }
    if exists.is_empty() {
        Ok(())
    } else {
        Err(XcapError::UniquenessFailure(exists.into_boxed_slice()))
    }
}

fn check_rule(rule: &Element) -> Result<(), XcapError> {
    if non_ws_text(rule) {
        return Err(XcapError::SchemaValidation("text in rule"));
    }
    let mut seen = [0usize; 3];
    for (_, part) in rule.child_elements() {
        let slot = match (part.name.ns.as_deref(), part.name.local.as_str()) {
            (Some(COMMON_POLICY_NS), "conditions") => 0,
            (Some(COMMON_POLICY_NS), "actions") => 1,
            (Some(COMMON_POLICY_NS), "transformations") => 2,
            _ => return Err(XcapError::SchemaValidation("element not allowed in rule")),
        };
        seen[slot] += 1;
        if seen[slot] > 1 {
            return Err(XcapError::SchemaValidation("repeated part of a rule"));
        }
        if slot == 0 {
            check_conditions(part)?;
        }
    }
    Ok(())
}

fn check_conditions(conds: &Element) -> Result<(), XcapError> {
    for (_, c) in conds.child_elements() {
        if !c.name.is(COMMON_POLICY_NS, "identity") {
            continue; // sphere, validity and extension conditions are not checked further
        }
        for (_, m) in c.child_elements() {
            match (m.name.ns.as_deref(), m.name.local.as_str()) {
                (Some(COMMON_POLICY_NS), "one") => {
                    m.attr("id")
                        .ok_or(XcapError::SchemaValidation("one without id"))?;
                }
                (Some(COMMON_POLICY_NS), "many") => {
                    for (_, ex) in m.child_elements() {
                        if ex.name.is(COMMON_POLICY_NS, "except")
                            && ex.attr("id").is_none()
                            && ex.attr("domain").is_none()
                        {
                            return Err(XcapError::SchemaValidation("except without id or domain"));
                        }
                    }
                }
                (Some(COMMON_POLICY_NS), _) => {
                    return Err(XcapError::SchemaValidation(
                        "element not allowed in identity",
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::dom::{Limits, parse_document};
    use super::*;

    fn check(auid: &str, xml: &str) -> Result<(), XcapError> {
        let reg = Registry::standard();
        let u = reg.usage(auid).expect("usage");
        let d = parse_document(xml.as_bytes(), &Limits::DEFAULT).expect("well-formed");
        u.validate(&d)
    }

    const RLH: &str = "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\">";

    #[test]
    fn resource_lists_rules() {
        let ok = format!(
            "{RLH}<list name=\"a\"><display-name>A</display-name><entry uri=\"sip:x@y\"><display-name>X</display-name><foo xmlns=\"urn:ext\"/></entry><entry-ref ref=\"r\"/><external anchor=\"http://h/x\"/><list name=\"inner\"/></list><list name=\"b\"><entry uri=\"sip:x@y\"/></list></resource-lists>"
        );
        assert_eq!(check("resource-lists", &ok), Ok(()));
        let schema: &[&str] = &[
            "<resource-lists/>",
            "<list xmlns=\"urn:ietf:params:xml:ns:resource-lists\"/>",
            "<resource-lists xmlns=\"urn:other\"/>",
        ];
        for x in schema {
            assert!(
                matches!(
                    check("resource-lists", x),
                    Err(XcapError::SchemaValidation(_))
                ),
                "{x}"
            );
        }
        let bad_bodies = [
            "<entry uri=\"u\"/>",
            "<list><entry/></list>",
            "<list><entry-ref/></list>",
            "<list><bogus/></list>",
            "<list>text</list>",
            "<list><entry uri=\"u\"><display-name/><display-name/></entry></list>",
        ];
        for b in bad_bodies {
            let x = format!("{RLH}{b}</resource-lists>");
            assert!(
                matches!(
                    check("resource-lists", &x),
                    Err(XcapError::SchemaValidation(_))
                ),
                "{x}"
            );
        }
    }

    #[test]
    fn resource_lists_uniqueness() {
        let x = format!(
            "{RLH}<list name=\"l\"><entry uri=\"sip:a@b\"/><entry uri=\"sip:a@b\"/></list></resource-lists>"
        );
        match check("resource-lists", &x) {
            Err(XcapError::UniquenessFailure(e)) => {
                assert_eq!(e.len(), 1);
                assert_eq!(e[0].field, "resource-lists/list[1]/entry[2]/@uri");
                let body = String::from_utf8(XcapError::UniquenessFailure(e).body().expect("body"))
                    .expect("utf8");
                assert!(
                    body.contains("<exists field=\"resource-lists/list[1]/entry[2]/@uri\"/>"),
                    "{body}"
                );
            }
            other => panic!("{other:?}"),
        }
        let x = format!("{RLH}<list name=\"l\"/><list name=\"l\"/></resource-lists>");
        match check("resource-lists", &x) {
            Err(XcapError::UniquenessFailure(e)) => {
                assert_eq!(e[0].field, "resource-lists/list[2]/@name");
                assert_eq!(e[0].alt_values, vec!["l-1", "l-2", "l-3"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ruleset_rules() {
        let cp = "xmlns=\"urn:ietf:params:xml:ns:common-policy\"";
        let ok = format!(
            "<ruleset {cp} xmlns:oxe=\"urn:oma:xml:xdm:extensions\"><rule id=\"a\"><conditions><identity><one id=\"sip:t@e\"/><many domain=\"e\"><except id=\"sip:u@e\"/></many></identity></conditions><actions><oxe:allow-reject-invite>false</oxe:allow-reject-invite></actions><transformations/></rule></ruleset>"
        );
        assert_eq!(check("org.openmobilealliance.access-rules", &ok), Ok(()));
        for body in [
            "<rule/>",
            "<rule id=\"a\"><bogus/></rule>",
            "<rule id=\"a\"><conditions/><conditions/></rule>",
            "<rule id=\"a\"><conditions><identity><one/></identity></conditions></rule>",
            "<rule id=\"a\"><conditions><identity><many><except/></many></identity></conditions></rule>",
            "<notrule/>",
        ] {
            let x = format!("<ruleset {cp}>{body}</ruleset>");
            assert!(
                matches!(
                    check("org.openmobilealliance.access-rules", &x),
                    Err(XcapError::SchemaValidation(_))
                ),
                "{x}"
            );
        }
        let dup = format!("<ruleset {cp}><rule id=\"a\"/><rule id=\"a\"/></ruleset>");
        match check("org.openmobilealliance.access-rules", &dup) {
            Err(XcapError::UniquenessFailure(e)) => {
                assert_eq!(e[0].field, "ruleset/rule[2]/@id");
                assert_eq!(e[0].alt_values[0], "a-1");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn caps_document_lists_usages() {
        let reg = Registry::standard();
        let caps = String::from_utf8(reg.caps_document()).expect("utf8");
        let d = parse_document(caps.as_bytes(), &Limits::DEFAULT).expect("well-formed");
        assert!(d.root.name.is(XCAP_CAPS_NS, "xcap-caps"));
        for a in [
            "xcap-caps",
            "resource-lists",
            "org.openmobilealliance.access-rules",
        ] {
            assert!(caps.contains(&format!("<auid>{a}</auid>")), "{caps}");
        }
        for ns in [
            RESOURCE_LISTS_NS,
            COMMON_POLICY_NS,
            OMA_COMMON_POLICY_NS,
            super::super::error::XCAP_ERROR_NS,
        ] {
            assert!(
                caps.contains(&format!("<namespace>{ns}</namespace>")),
                "{caps}"
            );
        }
        assert!(!caps.contains("<extensions>"));
        let mut reg2 = reg.clone();
        reg2.add_extension("xcap-diff");
        let caps2 = String::from_utf8(reg2.caps_document()).expect("utf8");
        assert!(
            caps2.contains("<extensions>\n    <extension>xcap-diff</extension>\n  </extensions>"),
            "{caps2}"
        );
        assert!(reg.usage("xcap-caps").expect("caps").read_only());
        assert!(reg.usage("nope").is_none());
    }
}
