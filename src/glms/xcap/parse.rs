//! XML parsing into the DOM with quick-xml: namespace resolution, the limits, and every
//! well-formedness rule quick-xml leaves to its caller (one root, no text outside it, legal
//! characters and names, unique expanded attribute names, known entities, UTF-8 only).
#![forbid(unsafe_code)]

use quick_xml::XmlVersion;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

use super::dom::{
    Attribute, Document, DomError, Element, Limits, Node, NsDecl, NsScope, QName, XML_NS,
};

/// Parses a whole document.
pub fn parse_document(input: &[u8], limits: &Limits) -> Result<Document, DomError> {
    let parsed = parse(input, &NsScope::new(), limits)?;
    let root = parsed.root.ok_or(DomError::NotWellFormed)?;
    if parsed.extra_elements > 0 || parsed.outside_text {
        return Err(DomError::NotWellFormed);
    }
    Ok(Document {
        prolog: parsed.prolog,
        root,
        epilog: parsed.epilog,
    })
}

/// Parses an XML fragment that must be exactly one element (an `application/xcap-el+xml`
/// body or a patch's new element). Prefixes it does not declare are resolved in `context`.
pub fn parse_fragment(
    input: &[u8],
    context: &NsScope,
    limits: &Limits,
) -> Result<Element, DomError> {
    let parsed = parse(input, context, limits)?;
    if parsed.extra_elements > 0
        || parsed.outside_text
        || !parsed.prolog.is_empty()
        || !parsed.epilog.is_empty()
    {
        return Err(DomError::NotSingleElement);
    }
    parsed.root.ok_or(DomError::NotSingleElement)
}

struct Parsed {
    prolog: Vec<Node>,
    root: Option<Element>,
    epilog: Vec<Node>,
    extra_elements: usize,
    outside_text: bool,
}

/// An element under construction plus how many scope bindings it pushed.
struct Open {
    el: Element,
    pushed: usize,
}

fn legal_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic()
        || c == '_'
        || (!c.is_ascii() && c.is_alphanumeric())
        || (!c.is_ascii() && !c.is_whitespace() && !c.is_control())
}

fn is_name_char(c: char) -> bool {
    is_name_start(c) || c.is_ascii_digit() || c == '-' || c == '.'
}

/// True for an NCName (a name without a colon).
pub fn is_ncname(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if is_name_start(c) => chars.all(is_name_char),
        _ => false,
    }
}

/// Splits `p:local` into prefix and local part, checking both are NCNames.
pub fn split_qname(raw: &str) -> Option<(Option<&str>, &str)> {
    match raw.split_once(':') {
        Some((p, l)) if is_ncname(p) && is_ncname(l) => Some((Some(p), l)),
        Some(_) => None,
        None if is_ncname(raw) => Some((None, raw)),
        None => None,
    }
}

fn parse(input: &[u8], context: &NsScope, limits: &Limits) -> Result<Parsed, DomError> {
    if input.len() > limits.max_bytes {
        return Err(DomError::TooLarge);
    }
    let text = std::str::from_utf8(input).map_err(|_| DomError::NotUtf8)?;
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    if !text.chars().all(legal_xml_char) {
        return Err(DomError::NotWellFormed);
    }
    let mut reader = Reader::from_str(text);
    {
        let cfg = reader.config_mut();
        cfg.check_end_names = true;
        cfg.check_comments = true;
        cfg.trim_text(false);
    }
    let mut scope = context.clone();
    let mut stack: Vec<Open> = Vec::new();
    let mut out = Parsed {
        prolog: Vec::new(),
        root: None,
        epilog: Vec::new(),
        extra_elements: 0,
        outside_text: false,
    };
    let mut first_event = true;
    // Each iteration consumes input, so the loop ends after at most `text.len() + 1` events.
    loop {
        let ev = reader.read_event().map_err(|_| DomError::NotWellFormed)?;
        let was_first = first_event;
        first_event = false;
        match ev {
            Event::Decl(d) => {
                // The XML declaration may only open the entity.
                if !was_first {
                    return Err(DomError::NotWellFormed);
                }
                if let Some(enc) = d.encoding() {
                    let enc = enc.map_err(|_| DomError::NotWellFormed)?;
                    // RFC 4825 §5.1 / XCAP documents are UTF-8.
                    if !enc.eq_ignore_ascii_case("utf-8") && !enc.eq_ignore_ascii_case("utf8") {
                        return Err(DomError::NotUtf8);
                    }
                }
            }
            Event::DocType(_) => return Err(DomError::Doctype),
            Event::Start(s) => {
                if stack.len() >= limits.max_depth {
                    return Err(DomError::TooDeep);
                }
                let mark = scope.mark();
                let el = build_element(&s, &mut scope, limits)?;
                let pushed = scope.mark() - mark;
                stack.push(Open { el, pushed });
            }
            Event::Empty(s) => {
                if stack.len() >= limits.max_depth {
                    return Err(DomError::TooDeep);
                }
                let mark = scope.mark();
                let el = build_element(&s, &mut scope, limits)?;
                scope.reset(mark);
                attach(Node::Element(el), &mut stack, &mut out, limits)?;
            }
            Event::End(_) => {
                let open = stack.pop().ok_or(DomError::NotWellFormed)?;
                let len = scope.mark();
                scope.reset(len - open.pushed);
                attach(Node::Element(open.el), &mut stack, &mut out, limits)?;
            }
            Event::Text(t) => {
                let s = t.xml10_content();
                push_text(&s, &mut stack, &mut out, limits)?;
            }
            Event::CData(c) => {
                let s = c.xml10_content();
                if stack.is_empty() {
                    return Err(DomError::NotWellFormed);
                }
                push_text(&s, &mut stack, &mut out, limits)?;
            }
            Event::GeneralRef(r) => {
                if stack.is_empty() {
                    return Err(DomError::NotWellFormed);
                }
                let resolved: String = match r.resolve_char_ref() {
                    Ok(Some(c)) if legal_xml_char(c) => c.to_string(),
                    Ok(Some(_)) | Err(_) => return Err(DomError::NotWellFormed),
                    Ok(None) => resolve_predefined_entity(&r)
                        .ok_or(DomError::NotWellFormed)?
                        .to_owned(),
                };
                push_text(&resolved, &mut stack, &mut out, limits)?;
            }
            Event::Comment(c) => {
                let s = c.xml10_content().into_owned();
                attach(Node::Comment(s), &mut stack, &mut out, limits)?;
            }
            Event::PI(pi) => {
                let content = pi.into_inner();
                let target = content
                    .split(|c: char| c.is_whitespace())
                    .next()
                    .unwrap_or("");
                if target.eq_ignore_ascii_case("xml") || !is_ncname(target) {
                    return Err(DomError::NotWellFormed);
                }
                attach(Node::Pi(content.into_owned()), &mut stack, &mut out, limits)?;
            }
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(DomError::NotWellFormed);
    }
    Ok(out)
}

fn push_text(
    s: &str,
    stack: &mut [Open],
    out: &mut Parsed,
    limits: &Limits,
) -> Result<(), DomError> {
    let Some(top) = stack.last_mut() else {
        // Outside the root only whitespace is allowed (XML 1.0 §2.8 Misc).
        if !s.chars().all(|c| matches!(c, ' ' | '\t' | '\n' | '\r')) {
            out.outside_text = true;
        }
        return Ok(());
    };
    if s.is_empty() {
        return Ok(());
    }
    if let Some(Node::Text(prev)) = top.el.children.last_mut() {
        prev.push_str(s);
        return Ok(());
    }
    if top.el.children.len() >= limits.max_children {
        return Err(DomError::TooManyChildren);
    }
    top.el.children.push(Node::Text(s.to_owned()));
    Ok(())
}

fn attach(
    node: Node,
    stack: &mut [Open],
    out: &mut Parsed,
    limits: &Limits,
) -> Result<(), DomError> {
    if let Some(top) = stack.last_mut() {
        if top.el.children.len() >= limits.max_children {
            return Err(DomError::TooManyChildren);
        }
        top.el.children.push(node);
        return Ok(());
    }
    match node {
        Node::Element(e) => {
            if out.root.is_some() {
                out.extra_elements += 1;
            } else {
                out.root = Some(e);
            }
        }
        other => {
            let list = if out.root.is_some() {
                &mut out.epilog
            } else {
                &mut out.prolog
            };
            if list.len() >= limits.max_children {
                return Err(DomError::TooManyChildren);
            }
            list.push(other);
        }
    }
    Ok(())
}

/// Builds an element from a start tag: declarations first (they scope the names on the same
/// tag), then the element and attribute names resolved against the extended scope.
fn build_element(
    s: &BytesStart<'_>,
    scope: &mut NsScope,
    limits: &Limits,
) -> Result<Element, DomError> {
    let qname = s.name();
    let raw_name: &str = qname.as_ref();
    let mut decls: Vec<NsDecl> = Vec::new();
    let mut raw_attrs: Vec<(String, String)> = Vec::new();
    for (n, a) in s.attributes().with_checks(true).enumerate() {
        if n >= limits.max_attrs {
            return Err(DomError::TooManyAttributes);
        }
        let a = a.map_err(|_| DomError::NotWellFormed)?;
        let key: &str = a.key.as_ref();
        let raw_value: &str = &a.value;
        if raw_value.contains('<') {
            return Err(DomError::NotWellFormed);
        }
        let value = a
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|_| DomError::NotWellFormed)?;
        if !value.chars().all(legal_xml_char) {
            return Err(DomError::NotWellFormed);
        }
        if key == "xmlns" {
            decls.push(NsDecl {
                prefix: None,
                uri: value.into_owned(),
            });
        } else if let Some(p) = key.strip_prefix("xmlns:") {
            // Namespaces in XML §3: prefixed declarations must not be empty, and `xml` /
            // `xmlns` cannot be rebound.
            if !is_ncname(p) || value.is_empty() || p == "xmlns" || (p == "xml" && value != XML_NS)
            {
                return Err(DomError::NotWellFormed);
            }
            decls.push(NsDecl {
                prefix: Some(p.to_owned()),
                uri: value.into_owned(),
            });
        } else {
            raw_attrs.push((key.to_owned(), value.into_owned()));
        }
    }
    scope.push_decls(&decls);
    let (prefix, local) = split_qname(raw_name).ok_or(DomError::NotWellFormed)?;
    if prefix == Some("xmlns") {
        return Err(DomError::NotWellFormed);
    }
    let ns = match prefix {
        Some(p) => Some(
            scope
                .lookup(Some(p))
                .ok_or(DomError::NotWellFormed)?
                .to_owned(),
        ),
        None => scope.default_ns().map(str::to_owned),
    };
    let name = QName {
        ns,
        prefix: prefix.map(str::to_owned),
        local: local.to_owned(),
    };
    let mut attrs: Vec<Attribute> = Vec::with_capacity(raw_attrs.len());
    for (key, value) in raw_attrs {
        let (p, l) = split_qname(&key).ok_or(DomError::NotWellFormed)?;
        // Unprefixed attributes are in no namespace (Namespaces in XML §6.2).
        let ns = match p {
            Some(p) => Some(
                scope
                    .lookup(Some(p))
                    .ok_or(DomError::NotWellFormed)?
                    .to_owned(),
            ),
            None => None,
        };
        let qn = QName {
            ns,
            prefix: p.map(str::to_owned),
            local: l.to_owned(),
        };
        // Namespaces in XML §6.3: no two attributes with the same expanded name.
        if attrs.iter().any(|a| a.name.same_expanded(&qn)) {
            return Err(DomError::NotWellFormed);
        }
        attrs.push(Attribute { name: qn, value });
    }
    Ok(Element {
        name,
        ns_decls: decls,
        attrs,
        children: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(s: &str) -> Result<Document, DomError> {
        parse_document(s.as_bytes(), &Limits::DEFAULT)
    }
    #[test]
    fn parses_names_namespaces_and_attributes() {
        let d = doc(r#"<?xml version="1.0" encoding="UTF-8"?>
<cp:ruleset xmlns:cp="urn:ietf:params:xml:ns:common-policy" xmlns="urn:x">
  <cp:rule id="a&amp;b" xml:lang="en"><child/></cp:rule>
</cp:ruleset>"#)
        .expect("parses");
        assert!(
            d.root
                .name
                .is("urn:ietf:params:xml:ns:common-policy", "ruleset")
        );
        assert_eq!(d.root.name.prefix.as_deref(), Some("cp"));
        assert_eq!(d.root.ns_decls.len(), 2);
        let (_, rule) = d.root.child_elements().next().expect("rule");
        assert_eq!(rule.attr("id"), Some("a&b"));
        assert_eq!(rule.attr_ns(Some(XML_NS), "lang"), Some("en"));
        let (_, child) = rule.child_elements().next().expect("child");
        assert!(child.name.is("urn:x", "child"));
    }

    #[test]
    fn malformed_inputs_are_errors_not_panics() {
        let cases: &[(&[u8], DomError)] = &[
            (b"", DomError::NotWellFormed),
            (b"   ", DomError::NotWellFormed),
            (b"<a>", DomError::NotWellFormed),
            (b"<a></b>", DomError::NotWellFormed),
            (b"</a>", DomError::NotWellFormed),
            (b"<a/><b/>", DomError::NotWellFormed),
            (b"text<a/>", DomError::NotWellFormed),
            (b"<a/>text", DomError::NotWellFormed),
            (b"<a x='1' x='2'/>", DomError::NotWellFormed),
            (b"<a x=1/>", DomError::NotWellFormed),
            (b"<a x='<'/>", DomError::NotWellFormed),
            (b"<p:a/>", DomError::NotWellFormed),
            (b"<a p:x='1'/>", DomError::NotWellFormed),
            (b"<a>&bogus;</a>", DomError::NotWellFormed),
            (b"<a>&#0;</a>", DomError::NotWellFormed),
            (b"<a>& </a>", DomError::NotWellFormed),
            (b"<a>\x01</a>", DomError::NotWellFormed),
            (b"<a><!-- a -- b --></a>", DomError::NotWellFormed),
            (b"<a/><?xml version='1.0'?>", DomError::NotWellFormed),
            (b"<a xmlns:p=''/>", DomError::NotWellFormed),
            (
                b"<a xmlns:a='urn:1' xmlns:b='urn:1' a:x='1' b:x='2'/>",
                DomError::NotWellFormed,
            ),
            (b"<1a/>", DomError::NotWellFormed),
            (b"<a:b:c xmlns:a='u'/>", DomError::NotWellFormed),
            (
                b"<!DOCTYPE a [<!ENTITY x 'y'>]><a>&x;</a>",
                DomError::Doctype,
            ),
            (b"<a>\xff</a>", DomError::NotUtf8),
            (
                b"<?xml version='1.0' encoding='ISO-8859-1'?><a/>",
                DomError::NotUtf8,
            ),
        ];
        for (input, want) in cases {
            let got = parse_document(input, &Limits::DEFAULT);
            assert_eq!(
                got.err(),
                Some(*want),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn limits_have_their_own_errors() {
        let deep = "<a>".repeat(33) + &"</a>".repeat(33);
        assert_eq!(doc(&deep).err(), Some(DomError::TooDeep));
        let ok = "<a>".repeat(32) + &"</a>".repeat(32);
        assert!(doc(&ok).is_ok());
        let attrs: String = (0..65).map(|i| format!(" a{i}='1'")).collect();
        assert_eq!(
            doc(&format!("<a{attrs}/>")).err(),
            Some(DomError::TooManyAttributes)
        );
        let big = vec![b' '; (1 << 20) + 1];
        assert_eq!(
            parse_document(&big, &Limits::DEFAULT).err(),
            Some(DomError::TooLarge)
        );
        let small = Limits {
            max_children: 3,
            ..Limits::DEFAULT
        };
        assert_eq!(
            parse_document(b"<a><b/><b/><b/><b/></a>", &small).err(),
            Some(DomError::TooManyChildren)
        );
    }

    #[test]
    fn fragments_resolve_in_context() {
        let mut ctx = NsScope::new();
        ctx.bind(None, "urn:rl");
        ctx.bind(Some("x"), "urn:x");
        let e = parse_fragment(b"<entry uri='u'><x:y/></entry>", &ctx, &Limits::DEFAULT)
            .expect("fragment");
        assert!(e.name.is("urn:rl", "entry"));
        assert!(e.at(&[0]).expect("child").name.is("urn:x", "y"));
        for bad in [&b"<a/><b/>"[..], b"text", b"<a/>x", b"", b"<!--c--><a/>"] {
            assert_eq!(
                parse_fragment(bad, &ctx, &Limits::DEFAULT).err(),
                Some(DomError::NotSingleElement),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            parse_fragment(b"<a>", &ctx, &Limits::DEFAULT).err(),
            Some(DomError::NotWellFormed)
        );
    }
}
