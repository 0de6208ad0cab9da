//! XCAP operations on one document (RFC 4825 §7-§8), sans-IO.
//!
//! The caller holds the current document bytes (and its ETag, checked with
//! [`super::etag::check_preconditions`] before calling). Each write returns the new bytes and a
//! [`Change`] describing what happened, from which the notifier builds xcap-diff patches.
//!
//! ```text
//! PUT  doc      --415?--parse--validate-------------------------------> 200/201 + Created|Replaced
//! PUT  element  --415?--select: 1 -> replace | 0 -> parent? -> insert--> post-check (§8.2.5)
//!                                  many -> 409 cannot-insert  no parent -> 409 no-parent
//! PUT  @attr    --415?--element? -> set value ------------------------> post-check
//! DELETE        --select exactly one -> remove ------------------------> post-check (cannot-delete)
//! then: usage validation (schema / uniqueness) -> serialize -> size limit
//! ```
#![forbid(unsafe_code)]

use super::dom::{
    Attribute, Document, Element, Limits, Node, NsDecl, NsScope, QName, element_to_string,
    escape_attr_into, normalize_text_around, parse_document, parse_fragment,
};
use super::error::{Allow, XcapError};
use super::patch::{
    AddContent, PatchOp, PatchSel, Pos, PrefixMap, ReplaceContent, attr_step, sel_for_path,
};
use super::selector::{self, Dialect, Selector, Terminal, deepest_unique, insertion_index, select};
use super::uri::{Tree, XcapUri};
use super::usage::{Registry, Usage};

/// MIME type of an element resource (RFC 4825 §15.2.1).
pub const MIME_ELEMENT: &str = "application/xcap-el+xml";
/// MIME type of an attribute resource (RFC 4825 §15.2.2).
pub const MIME_ATTRIBUTE: &str = "application/xcap-att+xml";
/// MIME type of namespace bindings (RFC 4825 §15.2.3).
pub const MIME_NAMESPACES: &str = "application/xcap-ns+xml";

/// A GET result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Representation {
    pub mime: &'static str,
    pub body: Vec<u8>,
}

/// What a write did to the document, for xcap-diff (RFC 5874).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The document was created by a document PUT.
    Created,
    /// The whole document was replaced (or a change no patch can express).
    Replaced,
    /// The document was deleted.
    Deleted,
    /// RFC 5261 operations that turn the previous document into the new one.
    Patched(Vec<PatchOp>),
}

/// Result of a PUT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutOutcome {
    /// The new document bytes to store.
    pub document: Vec<u8>,
    /// 201 Created (the resource did not exist) rather than 200 OK.
    pub created: bool,
    pub change: Change,
}

/// Result of a DELETE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteOutcome {
    /// The new document bytes, `None` when the document itself was deleted.
    pub document: Option<Vec<u8>>,
    pub change: Change,
}

/// The XCAP engine: the usages and the limits.
#[derive(Clone, Debug, Default)]
pub struct XcapCore {
    pub registry: Registry,
    pub limits: Limits,
}

/// Media type without parameters, compared case-insensitively.
fn media_type_is(content_type: &str, want: &str) -> bool {
    content_type
        .split(';')
        .next()
        .map(str::trim)
        .is_some_and(|m| m.eq_ignore_ascii_case(want))
}

impl XcapCore {
    /// The standard usages with the default limits.
    pub fn new() -> XcapCore {
        XcapCore::default()
    }

    /// The usage of a URI, checking it names a document the usage can have.
    fn usage_for(&self, uri: &XcapUri) -> Result<&Usage, XcapError> {
        let usage = self.registry.usage(&uri.auid).ok_or(XcapError::NotFound)?;
        let tree_ok = match uri.tree {
            Tree::Users(_) => usage.has_user_tree(),
            Tree::Global => usage.has_global_tree(),
        };
        if !tree_ok {
            return Err(XcapError::NotFound);
        }
        Ok(usage)
    }

    fn parse_selector(&self, usage: &Usage, uri: &XcapUri, s: &str) -> Result<Selector, XcapError> {
        Ok(selector::parse(
            s,
            Dialect::Xcap {
                default_ns: usage.default_ns,
                bindings: &uri.ns_bindings,
            },
        )?)
    }

    fn parse_stored(&self, current: &[u8]) -> Result<Document, XcapError> {
        Ok(parse_document(current, &self.limits)?)
    }

    /// GET a document, element, attribute or namespace bindings (RFC 4825 §8.3). `current` is
    /// the stored document (ignored for the generated xcap-caps).
    pub fn get(&self, uri: &XcapUri, current: Option<&[u8]>) -> Result<Representation, XcapError> {
        let usage = self.usage_for(uri)?;
        let caps;
        let current = if usage.read_only() {
            if uri.doc_name != usage.default_doc {
                return Err(XcapError::NotFound);
            }
            caps = self.registry.caps_document();
            caps.as_slice()
        } else {
            current.ok_or(XcapError::NotFound)?
        };
        let Some(sel_text) = &uri.node_selector else {
            return Ok(Representation {
                mime: usage.mime,
                body: current.to_vec(),
            });
        };
        let sel = self.parse_selector(usage, uri, sel_text)?;
        let doc = self.parse_stored(current)?;
        let found = select(&doc, &sel.steps);
        match &sel.terminal {
            None => {
                // §8.3: zero or several matches are both "not found".
                let [path] = found.as_slice() else {
                    return Err(XcapError::NotFound);
                };
                let el = doc.at(path).ok_or(XcapError::NotFound)?;
                Ok(Representation {
                    mime: MIME_ELEMENT,
                    body: element_to_string(el).into_bytes(),
                })
            }
            Some(Terminal::Attribute { ns, local }) => {
                let values: Vec<&str> = found
                    .iter()
                    .filter_map(|p| doc.at(p))
                    .filter_map(|e| e.attr_ns(ns.as_deref(), local))
                    .collect();
                let [value] = values.as_slice() else {
                    return Err(XcapError::NotFound);
                };
                let mut body = String::new();
                escape_attr_into(value, &mut body);
                Ok(Representation {
                    mime: MIME_ATTRIBUTE,
                    body: body.into_bytes(),
                })
            }
            Some(Terminal::Namespaces) | Some(Terminal::Namespace(_)) => {
                let [path] = found.as_slice() else {
                    return Err(XcapError::NotFound);
                };
                let el = doc.at(path).ok_or(XcapError::NotFound)?;
                Ok(Representation {
                    mime: MIME_NAMESPACES,
                    body: namespace_bindings(el, &doc.scope_at(path)).into_bytes(),
                })
            }
        }
    }

    /// PUT a document, element or attribute (RFC 4825 §8.2).
    pub fn put(
        &self,
        uri: &XcapUri,
        current: Option<&[u8]>,
        content_type: &str,
        body: &[u8],
    ) -> Result<PutOutcome, XcapError> {
        let usage = self.usage_for(uri)?;
        if usage.read_only() {
            return Err(XcapError::MethodNotAllowed(Allow::Get));
        }
        if body.len() > self.limits.max_bytes {
            return Err(XcapError::TooLarge);
        }
        let Some(sel_text) = &uri.node_selector else {
            // §8.2.1 / §7.1: a document must carry the usage's MIME type.
            if !media_type_is(content_type, usage.mime) {
                return Err(XcapError::UnsupportedMediaType);
            }
            let doc = parse_document(body, &self.limits)?;
            usage.validate(&doc)?;
            let document = self.finish(&doc)?;
            let created = current.is_none();
            return Ok(PutOutcome {
                document,
                created,
                change: if created {
                    Change::Created
                } else {
                    Change::Replaced
                },
            });
        };
        let sel = self.parse_selector(usage, uri, sel_text)?;
        // §8.2.1 (namespace bindings are read-only).
        if matches!(
            sel.terminal,
            Some(Terminal::Namespaces) | Some(Terminal::Namespace(_))
        ) {
            return Err(XcapError::MethodNotAllowed(Allow::Get));
        }
        let want_mime = if sel.terminal.is_some() {
            MIME_ATTRIBUTE
        } else {
            MIME_ELEMENT
        };
        if !media_type_is(content_type, want_mime) {
            return Err(XcapError::UnsupportedMediaType);
        }
        // §8.2.1: a node cannot be created in a document that does not exist.
        let current = current.ok_or_else(|| XcapError::NoParent(uri.home_uri().into()))?;
        let mut doc = self.parse_stored(current)?;
        let (created, change) = match &sel.terminal {
            Some(Terminal::Attribute { ns, local }) => {
                self.put_attribute(&mut doc, uri, &sel, ns.as_deref(), local, body)?
            }
            _ => self.put_element(&mut doc, uri, &sel, body)?,
        };
        usage.validate(&doc)?;
        Ok(PutOutcome {
            document: self.finish(&doc)?,
            created,
            change,
        })
    }

    /// DELETE a document, element or attribute (RFC 4825 §8.4).
    pub fn delete(
        &self,
        uri: &XcapUri,
        current: Option<&[u8]>,
    ) -> Result<DeleteOutcome, XcapError> {
        let usage = self.usage_for(uri)?;
        if usage.read_only() {
            return Err(XcapError::MethodNotAllowed(Allow::Get));
        }
        let current = current.ok_or(XcapError::NotFound)?;
        let Some(sel_text) = &uri.node_selector else {
            return Ok(DeleteOutcome {
                document: None,
                change: Change::Deleted,
            });
        };
        let sel = self.parse_selector(usage, uri, sel_text)?;
        if matches!(
            sel.terminal,
            Some(Terminal::Namespaces) | Some(Terminal::Namespace(_))
        ) {
            return Err(XcapError::MethodNotAllowed(Allow::Get));
        }
        let mut doc = self.parse_stored(current)?;
        let found = select(&doc, &sel.steps);
        let mut pm = PrefixMap::default();
        let op = match &sel.terminal {
            None => {
                let [path] = found.as_slice() else {
                    return Err(XcapError::NotFound);
                };
                let (&last, parent) = path.split_last().ok_or(XcapError::CannotDelete)?;
                let op = sel_for_path(&doc, path, &mut pm).map(|text| PatchOp::Remove {
                    sel: PatchSel {
                        text,
                        scope: pm.scope(),
                    },
                    ws: None,
                });
                let p = doc.at_mut(parent).ok_or(XcapError::NotFound)?;
                p.children.remove(last);
                normalize_text_around(&mut p.children, last);
                // §8.2.5 post-condition: the URI must select nothing now (e.g. `entry[1]` when
                // a second entry moves up is refused).
                if !select(&doc, &sel.steps).is_empty() {
                    return Err(XcapError::CannotDelete);
                }
                op
            }
            Some(Terminal::Attribute { ns, local }) => {
                let holders: Vec<&Vec<usize>> = found
                    .iter()
                    .filter(|p| {
                        doc.at(p)
                            .and_then(|e| e.attr_ns(ns.as_deref(), local))
                            .is_some()
                    })
                    .collect();
                let [path] = holders.as_slice() else {
                    return Err(XcapError::NotFound);
                };
                let path = (*path).clone();
                let el = doc.at(&path).ok_or(XcapError::NotFound)?;
                let name = el
                    .attrs
                    .iter()
                    .find(|a| a.name.ns.as_deref() == ns.as_deref() && a.name.local == *local)
                    .map(|a| a.name.clone())
                    .ok_or(XcapError::NotFound)?;
                let op = sel_for_path(&doc, &path, &mut pm).map(|text| PatchOp::Remove {
                    sel: PatchSel {
                        text: format!("{text}/{}", attr_step(&name, &mut pm)),
                        scope: pm.scope(),
                    },
                    ws: None,
                });
                let el = doc.at_mut(&path).ok_or(XcapError::NotFound)?;
                el.attrs.retain(|a| !a.name.same_expanded(&name));
                let still = select(&doc, &sel.steps).iter().any(|p| {
                    doc.at(p)
                        .and_then(|e| e.attr_ns(ns.as_deref(), local))
                        .is_some()
                });
                if still {
                    return Err(XcapError::CannotDelete);
                }
                op
            }
            Some(_) => return Err(XcapError::MethodNotAllowed(Allow::Get)),
        };
        usage.validate(&doc)?;
        Ok(DeleteOutcome {
            document: Some(self.finish(&doc)?),
            change: op.map_or(Change::Replaced, |op| Change::Patched(vec![op])),
        })
    }

    /// Serializes and enforces the size limit on the result.
    fn finish(&self, doc: &Document) -> Result<Vec<u8>, XcapError> {
        let bytes = doc.to_bytes();
        if bytes.len() > self.limits.max_bytes {
            return Err(XcapError::TooLarge);
        }
        Ok(bytes)
    }

    /// URI of the closest existing ancestor of the node the steps name (§8.2.1 no-parent).
    fn ancestor_uri(&self, doc: &Document, uri: &XcapUri, sel: &Selector, steps: usize) -> String {
        let (k, _) = deepest_unique(doc, &sel.steps[..steps]);
        if k == 0 {
            return uri.document_uri();
        }
        let raw: Vec<&str> = sel.steps[..k].iter().map(|s| s.raw.as_str()).collect();
        uri.node_uri(&raw.join("/"))
    }

    fn put_element(
        &self,
        doc: &mut Document,
        uri: &XcapUri,
        sel: &Selector,
        body: &[u8],
    ) -> Result<(bool, Change), XcapError> {
        let found = select(doc, &sel.steps);
        let mut pm = PrefixMap::default();
        match found.as_slice() {
            // §8.2.4: replace the one selected element.
            [path] => {
                let path = path.clone();
                let (parent_scope, depth) = match path.split_last() {
                    Some((_, parent)) => (doc.scope_at(parent), path.len()),
                    None => (NsScope::new(), 0),
                };
                let new = self.parse_element_body(body, &parent_scope, depth)?;
                let op = sel_for_path(doc, &path, &mut pm).map(|text| PatchOp::Replace {
                    sel: PatchSel {
                        text,
                        scope: pm.scope(),
                    },
                    content: ReplaceContent::Element(new.clone()),
                });
                match path.split_last() {
                    None => doc.root = new,
                    Some((&last, parent)) => {
                        let p = doc.at_mut(parent).ok_or(XcapError::NotFound)?;
                        p.children[last] = Node::Element(new);
                    }
                }
                // §8.2.5: the URI must select the new element.
                if select(doc, &sel.steps) != [path] {
                    return Err(XcapError::CannotInsert);
                }
                Ok((
                    false,
                    op.map_or(Change::Replaced, |op| Change::Patched(vec![op])),
                ))
            }
            [] => {
                let n = sel.steps.len();
                // A document has one root element: a missing root cannot be inserted.
                let last_step = match sel.steps.split_last() {
                    Some((last, rest)) if !rest.is_empty() => last,
                    _ => return Err(XcapError::CannotInsert),
                };
                let parents = select(doc, &sel.steps[..n - 1]);
                let parent_path = match parents.as_slice() {
                    [p] if doc.at(p).is_some() => p.clone(),
                    [] => {
                        return Err(XcapError::NoParent(
                            self.ancestor_uri(doc, uri, sel, n - 1).into(),
                        ));
                    }
                    _ => return Err(XcapError::CannotInsert),
                };
                let parent = doc.at(&parent_path).ok_or(XcapError::NotFound)?;
                // §8.2.3: where a new element goes.
                let idx = insertion_index(parent, last_step).ok_or(XcapError::CannotInsert)?;
                if parent.children.len() >= self.limits.max_children {
                    return Err(XcapError::ConstraintFailure("too many children"));
                }
                let scope = doc.scope_at(&parent_path);
                let new = self.parse_element_body(body, &scope, parent_path.len() + 1)?;
                let op = insert_op(doc, &parent_path, idx, &new, &mut pm);
                let parent = doc.at_mut(&parent_path).ok_or(XcapError::NotFound)?;
                parent.children.insert(idx, Node::Element(new));
                let mut new_path = parent_path;
                new_path.push(idx);
                // §8.2.5: e.g. `entry[@uri="a"]` with a body whose uri is "b" is refused.
                if select(doc, &sel.steps) != [new_path] {
                    return Err(XcapError::CannotInsert);
                }
                Ok((
                    true,
                    op.map_or(Change::Replaced, |op| Change::Patched(vec![op])),
                ))
            }
            _ => Err(XcapError::CannotInsert),
        }
    }

    /// Parses an `application/xcap-el+xml` body placed `depth` levels below the root.
    fn parse_element_body(
        &self,
        body: &[u8],
        scope: &NsScope,
        depth: usize,
    ) -> Result<Element, XcapError> {
        let limits = Limits {
            max_depth: self
                .limits
                .max_depth
                .checked_sub(depth)
                .filter(|d| *d > 0)
                .ok_or(XcapError::ConstraintFailure("elements nested too deep"))?,
            ..self.limits
        };
        Ok(parse_fragment(body, scope, &limits)?)
    }

    fn put_attribute(
        &self,
        doc: &mut Document,
        uri: &XcapUri,
        sel: &Selector,
        ns: Option<&str>,
        local: &str,
        body: &[u8],
    ) -> Result<(bool, Change), XcapError> {
        let value = parse_att_value(body)?;
        // An `xmlns` "attribute" is a namespace declaration, not something XCAP can PUT.
        if ns.is_none() && local == "xmlns" {
            return Err(XcapError::CannotInsert);
        }
        let found = select(doc, &sel.steps);
        let path = match found.as_slice() {
            [p] if doc.at(p).is_some() => p.clone(),
            [] => {
                let n = sel.steps.len();
                return Err(XcapError::NoParent(
                    self.ancestor_uri(doc, uri, sel, n).into(),
                ));
            }
            _ => return Err(XcapError::CannotInsert),
        };
        let scope = doc.scope_at(&path);
        let mut pm = PrefixMap::default();
        let base = sel_for_path(doc, &path, &mut pm);
        let el = doc.at_mut(&path).ok_or(XcapError::NotFound)?;
        let existing = el
            .attrs
            .iter_mut()
            .find(|a| a.name.ns.as_deref() == ns && a.name.local == local);
        let (created, op) = match existing {
            Some(a) => {
                a.value.clone_from(&value);
                let name = a.name.clone();
                let op = base.map(|b| PatchOp::Replace {
                    sel: PatchSel {
                        text: format!("{b}/{}", attr_step(&name, &mut pm)),
                        scope: pm.scope(),
                    },
                    content: ReplaceContent::Text(value.clone()),
                });
                (false, op)
            }
            None => {
                if el.attrs.len() >= self.limits.max_attrs {
                    return Err(XcapError::ConstraintFailure("too many attributes"));
                }
                let prefix = ns.map(|ns| attribute_prefix(el, &scope, uri, ns));
                let name = QName {
                    ns: ns.map(str::to_owned),
                    prefix,
                    local: local.to_owned(),
                };
                el.attrs.push(Attribute {
                    name: name.clone(),
                    value: value.clone(),
                });
                let op = base.map(|b| PatchOp::Add {
                    sel: PatchSel {
                        text: b,
                        scope: pm.scope(),
                    },
                    pos: None,
                    content: AddContent::Attribute {
                        name,
                        value: value.clone(),
                    },
                });
                (true, op)
            }
        };
        // §8.2.5: e.g. `entry[@uri="a"]/@uri` with body "b" no longer selects anything.
        let ok = select(doc, &sel.steps)
            .iter()
            .filter_map(|p| doc.at(p).and_then(|e| e.attr_ns(ns, local)))
            .eq(std::iter::once(value.as_str()));
        if !ok {
            return Err(XcapError::CannotInsert);
        }
        Ok((
            created,
            op.map_or(Change::Replaced, |op| Change::Patched(vec![op])),
        ))
    }
}

/// A prefix for a new namespaced attribute on `el`: one already in scope, else the one the
/// request's `xmlns()` query used (declared on the element), else a fresh one.
fn attribute_prefix(el: &mut Element, scope: &NsScope, uri: &XcapUri, ns: &str) -> String {
    if ns == super::dom::XML_NS {
        return "xml".to_owned();
    }
    if let Some(Some(p)) = scope.prefix_for(ns) {
        return p;
    }
    let taken = |el: &Element, p: &str| el.ns_decls.iter().any(|d| d.prefix.as_deref() == Some(p));
    let from_query = uri
        .ns_bindings
        .iter()
        .find(|(p, u)| u == ns && !taken(el, p))
        .map(|(p, _)| p.clone());
    let p = from_query.unwrap_or_else(|| {
        (0..=el.ns_decls.len())
            .map(|i| format!("a{i}"))
            .find(|c| !taken(el, c))
            .unwrap_or_else(|| "a".to_owned())
    });
    el.ns_decls.push(NsDecl {
        prefix: Some(p.clone()),
        uri: ns.to_owned(),
    });
    p
}

/// The RFC 5261 `<add>` that inserts `new` at `children[idx]` of the element at `parent` in
/// the document as it is before the insertion.
fn insert_op(
    doc: &Document,
    parent: &[usize],
    idx: usize,
    new: &Element,
    pm: &mut PrefixMap,
) -> Option<PatchOp> {
    let p = doc.at(parent)?;
    let child = |i: usize| {
        let mut v = parent.to_vec();
        v.push(i);
        v
    };
    let (target, pos) = if matches!(p.children.get(idx), Some(Node::Element(_))) {
        (child(idx), Some(Pos::Before))
    } else if idx > 0 && matches!(p.children.get(idx - 1), Some(Node::Element(_))) {
        (child(idx - 1), Some(Pos::After))
    } else if idx == p.children.len() {
        (parent.to_vec(), None)
    } else if idx == 0 {
        (parent.to_vec(), Some(Pos::Prepend))
    } else {
        (child(idx), Some(Pos::Before))
    };
    let text = sel_for_path(doc, &target, pm)?;
    Some(PatchOp::Add {
        sel: PatchSel {
            text,
            scope: pm.scope(),
        },
        pos,
        content: AddContent::Nodes(vec![Node::Element(new.clone())]),
    })
}

/// An `application/xcap-att+xml` body: the attribute value as it would appear between quotes
/// (RFC 4825 §8.2.1: otherwise 409 not-xml-att-value).
fn parse_att_value(body: &[u8]) -> Result<String, XcapError> {
    let s = std::str::from_utf8(body).map_err(|_| XcapError::NotUtf8)?;
    // Parse it as the value of an attribute of a throw-away element, which applies exactly
    // the XML AttValue rules (references, no `<`, attribute-value normalization).
    let quote = if s.contains('"') { '\'' } else { '"' };
    if s.contains(quote) {
        return Err(XcapError::NotXmlAttValue);
    }
    let wrapped = format!("<a v={quote}{s}{quote}/>");
    let d = parse_document(wrapped.as_bytes(), &Limits::DEFAULT)
        .map_err(|_| XcapError::NotXmlAttValue)?;
    d.root
        .attr("v")
        .map(str::to_owned)
        .ok_or(XcapError::NotXmlAttValue)
}

/// The `application/xcap-ns+xml` body (RFC 4825 §8.3 / §10): the selected element's name, with
/// a declaration for every namespace in scope on it, no attributes and no children.
fn namespace_bindings(el: &Element, scope: &NsScope) -> String {
    let mut out = Element::new(el.name.clone());
    for (prefix, uri) in scope.effective() {
        out.ns_decls.push(NsDecl { prefix, uri });
    }
    element_to_string(&out)
}
