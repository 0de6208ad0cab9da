//! The SUBSCRIBE body: an `application/resource-lists+xml` document (RFC 4826) whose `<entry
//! uri>`s are XCAP paths relative to the XCAP root (RFC 5875 §4.3):
//! `<auid>/users/<xui>/<doc>` names a document, `<auid>/users/<xui>/` (trailing `/`) the
//! collection of the user's documents. Entries inside nested `<list>`s count too.
//!
//! Tolerated (SPEC 3.7): an absolute URI starting with our XCAP root, or a path starting with
//! `/<root path>/`. Refused: node selectors (`/~~/`, element and attribute subscriptions are not
//! supported in this version), the `global` tree, anything else.
#![forbid(unsafe_code)]

use crate::glms::xcap::dom::{Element, Limits};
use crate::glms::xcap::parse::parse_document;
use crate::glms::xcap::uri::percent_decode;

use super::error::{Rejection, SubscribeError};
use super::subscription::{Resource, Target};

/// The resource-lists namespace (RFC 4826 §3.2).
pub const RESOURCE_LISTS_NS: &str = "urn:ietf:params:xml:ns:resource-lists";
/// The SUBSCRIBE body type (RFC 5875 §4.3).
pub const RESOURCE_LISTS_MIME: &str = "application/resource-lists+xml";
/// Most resources one subscription may name.
pub const MAX_RESOURCES: usize = 64;
/// Largest body read.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// Deepest `<list>` nesting followed.
const MAX_DEPTH: usize = 8;

/// Parses a resource-lists body into resources (duplicates removed, order kept).
/// `xcap_root_url` is our root (`http://host:port/xcap-root`), to strip absolute entries.
pub fn parse_resource_lists(body: &[u8], xcap_root_url: &str) -> Result<Vec<Resource>, Rejection> {
    let limits = Limits {
        max_depth: MAX_DEPTH + 2,
        max_bytes: MAX_BODY_BYTES,
        max_attrs: 32,
        max_children: 4 * MAX_RESOURCES,
    };
    let doc = parse_document(body, &limits).map_err(|_| SubscribeError::MalformedBody)?;
    if !is_rl(&doc.root, "resource-lists") {
        return Err(
            Rejection::new(SubscribeError::MalformedBody).with_detail("root is not resource-lists")
        );
    }
    let mut uris = Vec::new();
    for (_, list) in doc.root.child_elements() {
        if is_rl(list, "list") {
            collect_entries(list, 0, &mut uris)?;
        }
    }
    let mut out: Vec<Resource> = Vec::new();
    for uri in uris {
        let r = parse_entry(uri, xcap_root_url)?;
        if !out.contains(&r) {
            out.push(r);
        }
    }
    if out.is_empty() {
        return Err(SubscribeError::EmptyList.into());
    }
    Ok(out)
}

fn is_rl(e: &Element, local: &str) -> bool {
    e.name.local == local && e.name.ns.as_deref() == Some(RESOURCE_LISTS_NS)
}

fn collect_entries<'a>(
    list: &'a Element,
    depth: usize,
    out: &mut Vec<&'a str>,
) -> Result<(), Rejection> {
    if depth > MAX_DEPTH {
        return Err(SubscribeError::MalformedBody.into());
    }
    for (_, e) in list.child_elements() {
        if is_rl(e, "entry") {
            let uri = e.attr("uri").ok_or(SubscribeError::BadEntry)?;
            if out.len() >= MAX_RESOURCES {
                return Err(SubscribeError::TooManyEntries.into());
            }
            out.push(uri);
        } else if is_rl(e, "list") {
            collect_entries(e, depth + 1, out)?;
        }
        // <external>, <entry-ref>, <display-name> and extensions name no XCAP path here.
    }
    Ok(())
}

/// Strips our root from an absolute or root-relative entry (SPEC 3.7: OpenXCAP writes absolute
/// URIs where RFC 5875 wants relative ones).
fn strip_root<'a>(uri: &'a str, xcap_root_url: &str) -> &'a str {
    let root = xcap_root_url.trim_end_matches('/');
    if let Some(rest) = uri.strip_prefix(root) {
        return rest.trim_start_matches('/');
    }
    // The path part of the root URL (`/xcap-root`).
    let root_path = root
        .split_once("://")
        .and_then(|(_, after)| after.find('/').map(|i| &after[i..]))
        .unwrap_or("");
    if !root_path.is_empty()
        && let Some(rest) = uri.strip_prefix(root_path)
        && rest.starts_with('/')
    {
        return rest.trim_start_matches('/');
    }
    uri.trim_start_matches('/')
}

/// Parses one entry into a resource.
pub fn parse_entry(uri: &str, xcap_root_url: &str) -> Result<Resource, Rejection> {
    let bad = |e: SubscribeError| Rejection::new(e).with_detail(uri);
    let path = strip_root(uri.trim(), xcap_root_url);
    if path.contains("/~~") || path.contains('?') || path.contains('#') {
        return Err(bad(SubscribeError::NodeSelector));
    }
    let (path, collection) = match path.strip_suffix('/') {
        Some(p) => (p, true),
        None => (path, false),
    };
    let raw: Vec<&str> = path.split('/').collect();
    if raw.iter().any(|s| s.is_empty()) {
        return Err(bad(SubscribeError::BadEntry));
    }
    let mut segs = Vec::with_capacity(raw.len());
    for s in raw {
        segs.push(percent_decode(s).map_err(|_| bad(SubscribeError::BadEntry))?);
    }
    match segs.as_slice() {
        [_, tree, ..] if tree == "global" => Err(bad(SubscribeError::GlobalTree)),
        [auid, tree, xui, doc @ ..] if tree == "users" => {
            let name = doc.join("/");
            // `<auid>/users/<xui>` without the slash is the home collection as well.
            let target = if collection || doc.is_empty() {
                Target::Collection(if name.is_empty() { name } else { name + "/" })
            } else {
                Target::Document(name)
            };
            Ok(Resource {
                auid: auid.clone(),
                xui: xui.clone(),
                target,
            })
        }
        _ => Err(bad(SubscribeError::BadEntry)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "http://127.0.0.1:8080/xcap-root";

    fn body(entries: &[&str]) -> Vec<u8> {
        let mut s = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list>",
        );
        for e in entries {
            s.push_str(&format!("<entry uri=\"{e}\"/>"));
        }
        s.push_str("</list></resource-lists>");
        s.into_bytes()
    }

    #[test]
    fn documents_and_collections() {
        let r = parse_resource_lists(
            &body(&[
                "resource-lists/users/sip:bob@example.com/index",
                "org.openmobilealliance.access-rules/users/sip:bob@example.com/",
                "resource-lists/users/sip:bob@example.com/index",
            ]),
            ROOT,
        )
        .unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].target, Target::Document("index".into()));
        assert_eq!(r[0].xui, "sip:bob@example.com");
        assert_eq!(r[1].auid, "org.openmobilealliance.access-rules");
        assert_eq!(r[1].target, Target::Collection(String::new()));
    }

    #[test]
    fn absolute_and_rooted_entries_are_stripped() {
        let a = parse_entry(
            "http://127.0.0.1:8080/xcap-root/resource-lists/users/sip:bob@example.com/index",
            ROOT,
        )
        .unwrap();
        let b = parse_entry(
            "/xcap-root/resource-lists/users/sip:bob@example.com/index",
            ROOT,
        )
        .unwrap();
        let c = parse_entry("resource-lists/users/sip%3Abob@example.com/index", ROOT).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
    }

    #[test]
    fn sub_collection_and_nested_doc() {
        let r = parse_entry("rl/users/sip:b@x/dir/", ROOT).unwrap();
        assert_eq!(r.target, Target::Collection("dir/".into()));
        let r = parse_entry("rl/users/sip:b@x/dir/doc", ROOT).unwrap();
        assert_eq!(r.target, Target::Document("dir/doc".into()));
    }

    #[test]
    fn refusals() {
        let e = |u: &str| parse_entry(u, ROOT).unwrap_err().error;
        assert_eq!(
            e("resource-lists/users/sip:b@x/index/~~/resource-lists/list"),
            SubscribeError::NodeSelector
        );
        assert_eq!(e("xcap-caps/global/index"), SubscribeError::GlobalTree);
        assert_eq!(e("resource-lists/index"), SubscribeError::BadEntry);
        assert_eq!(e("resource-lists//sip:b@x/index"), SubscribeError::BadEntry);
        assert_eq!(
            e("resource-lists/users/%zz/index"),
            SubscribeError::BadEntry
        );
        let m = |b: &[u8]| parse_resource_lists(b, ROOT).unwrap_err().error;
        assert_eq!(m(b"<resource-lists"), SubscribeError::MalformedBody);
        assert_eq!(
            m(b"<other xmlns=\"urn:ietf:params:xml:ns:resource-lists\"/>"),
            SubscribeError::MalformedBody
        );
        // Right local name, wrong namespace.
        assert_eq!(
            m(b"<resource-lists><list><entry uri=\"a/users/b/c\"/></list></resource-lists>"),
            SubscribeError::MalformedBody
        );
        assert_eq!(m(&body(&[])), SubscribeError::EmptyList);
        let many: Vec<String> = (0..=MAX_RESOURCES)
            .map(|i| format!("rl/users/sip:b@x/d{i}"))
            .collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(m(&body(&refs)), SubscribeError::TooManyEntries);
    }

    #[test]
    fn nested_lists_count() {
        let b = b"<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list name=\"a\"><list><entry uri=\"rl/users/sip:b@x/index\"/></list><external anchor=\"x\"/></list></resource-lists>";
        let r = parse_resource_lists(b, ROOT).unwrap();
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn detail_names_the_entry() {
        let e = parse_entry("xcap-caps/global/index", ROOT).unwrap_err();
        assert!(e.reason_phrase().contains("xcap-caps/global/index"));
    }
}
