//! Operation-level tests: SPEC 4.2, RFC 4825 examples, post-conditions, every 409, xcap-diff
//! round trips. Property tests are in `proptests.rs`.

use super::dom::{Limits, parse_document};
use super::usage::{Usage, UsageKind};
use super::*;

pub(super) const ROOT: &str = "/xcap-root";
pub(super) const DOC_URI: &str = "/xcap-root/resource-lists/users/sip:bob@example.com/index";
const SPEC_4_2_PUT: &str = "/xcap-root/resource-lists/users/sip:bob@example.com/index/~~/resource-lists/list%5b@name=%22oma_blockedcontacts%22%5d/entry%5b@uri=%22sip:tom@example.com%22%5d";
const TOM: &str =
    "<entry xmlns=\"urn:ietf:params:xml:ns:resource-lists\" uri=\"sip:tom@example.com\"/>";

pub(super) const BOB_DOC: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">
  <list name="oma_buddylist">
    <entry uri="sip:alice@example.com"/>
  </list>
  <list name="oma_blockedcontacts">
    <entry uri="tel:+15551230000"/>
  </list>
</resource-lists>
"#;

pub(super) fn core() -> XcapCore {
    XcapCore::new()
}

pub(super) fn uri(s: &str) -> XcapUri {
    XcapUri::parse(s, ROOT).expect("uri parses")
}

pub(super) fn node(sel: &str) -> XcapUri {
    uri(&format!("{DOC_URI}/~~/{sel}"))
}

/// Stores BOB_DOC through a document PUT (so it is in normalized form).
pub(super) fn stored() -> Vec<u8> {
    core()
        .put(
            &uri(DOC_URI),
            None,
            "application/resource-lists+xml",
            BOB_DOC.as_bytes(),
        )
        .expect("document PUT")
        .document
}

pub(super) fn canonical(bytes: &[u8]) -> String {
    parse_document(bytes, &Limits::DEFAULT)
        .expect("parses")
        .canonical()
}

pub(super) fn patch_of(change: &Change) -> Vec<PatchOp> {
    match change {
        Change::Patched(ops) => ops.clone(),
        other => panic!("expected a patch, got {other:?}"),
    }
}

#[test]
fn spec_4_2_put_tom_then_get_shows_him() {
    let c = core();
    let before = stored();
    let out = c
        .put(
            &uri(SPEC_4_2_PUT),
            Some(&before),
            "application/xcap-el+xml",
            TOM.as_bytes(),
        )
        .expect("PUT Tom");
    assert!(out.created, "201 Created");
    let doc = String::from_utf8(out.document.clone()).expect("utf8");
    assert!(
        doc.contains("<entry uri=\"tel:+15551230000\"/><entry xmlns=\"urn:ietf:params:xml:ns:resource-lists\" uri=\"sip:tom@example.com\"/>"),
        "{doc}"
    );
    // GET of the document shows him; GET of the same URI returns what was put (§8.2.5).
    let got = c.get(&uri(DOC_URI), Some(&out.document)).expect("GET doc");
    assert_eq!(got.mime, "application/resource-lists+xml");
    assert!(
        String::from_utf8(got.body)
            .expect("utf8")
            .contains("sip:tom@example.com")
    );
    let el = c
        .get(&uri(SPEC_4_2_PUT), Some(&out.document))
        .expect("GET element");
    assert_eq!(el.mime, MIME_ELEMENT);
    assert_eq!(el.body, TOM.as_bytes());

    // The change becomes the SPEC 3.5 partial NOTIFY; the subscriber's patched copy equals
    // the new document.
    let ops = patch_of(&out.change);
    let e41 = ETag::from_opaque("e41").expect("tag");
    let e42 = ETag::from_opaque("e42").expect("tag");
    let entry = DocumentEntry::for_changes(
        "resource-lists/users/sip:bob@example.com/index",
        Some(e41.clone()),
        Some(e42.clone()),
        std::slice::from_ref(&out.change),
        true,
    )
    .expect("entry");
    let body = write_xcap_diff("http://glms.example.com/xcap-root/", &[entry]);
    let text = String::from_utf8(body.clone()).expect("utf8");
    assert!(text.contains("<xcap-diff xmlns=\"urn:ietf:params:xml:ns:xcap-diff\" xmlns:rl=\"urn:ietf:params:xml:ns:resource-lists\" xcap-root=\"http://glms.example.com/xcap-root/\">"), "{text}");
    assert!(
        text.contains("<document sel=\"resource-lists/users/sip:bob@example.com/index\" previous-etag=\"e41\" new-etag=\"e42\">"),
        "{text}"
    );
    assert!(text.contains("<add sel=\"rl:resource-lists/rl:list[@name=&quot;oma_blockedcontacts&quot;]/rl:entry[@uri=&quot;tel:+15551230000&quot;]\" pos=\"after\"><entry xmlns=\"urn:ietf:params:xml:ns:resource-lists\" uri=\"sip:tom@example.com\"/></add>"), "{text}");
    let parsed = parse_xcap_diff(&body).expect("parses");
    assert_eq!(parsed.changes.len(), 1);
    let ch = &parsed.changes[0];
    assert_eq!(ch.previous_etag.as_ref(), Some(&e41));
    assert_eq!(ch.new_etag.as_ref(), Some(&e42));
    let patched = apply_patch(&before, ch.patch.as_deref().expect("patch")).expect("applies");
    assert_eq!(canonical(&patched), canonical(&out.document));
    // The ops applied directly (no serialization) agree too.
    assert_eq!(
        canonical(&apply_patch(&before, &ops).expect("applies")),
        canonical(&out.document)
    );
}

#[test]
fn spec_3_5_example_notify_applies() {
    let before = stored();
    let notify = br#"<?xml version="1.0" encoding="UTF-8"?>
<xcap-diff xmlns="urn:ietf:params:xml:ns:xcap-diff"
           xmlns:rl="urn:ietf:params:xml:ns:resource-lists"
           xcap-root="http://glms.example.com/xcap-root/">
  <document sel="resource-lists/users/sip:bob@example.com/index"
            previous-etag="e41" new-etag="e42">
    <add sel="rl:resource-lists/rl:list[@name='oma_blockedcontacts']"><rl:entry uri="sip:tom@example.com"/></add>
  </document>
</xcap-diff>"#;
    let d = parse_xcap_diff(notify).expect("parses");
    let patched =
        apply_patch(&before, d.changes[0].patch.as_deref().expect("patch")).expect("applies");
    let text = String::from_utf8(patched).expect("utf8");
    assert!(
        text.contains("<entry uri=\"sip:tom@example.com\"/></list>"),
        "{text}"
    );
}

#[test]
fn xcap_diff_shapes_and_absolute_sel() {
    let t = |s: &str| ETag::from_opaque(s).expect("tag");
    let sel = "resource-lists/users/sip:bob@example.com/index";
    let entries = vec![
        DocumentEntry::full_state(sel, t("a")),
        DocumentEntry::deleted(sel, t("b")),
        DocumentEntry::body_not_changed(sel, t("c"), t("d")),
        DocumentEntry::for_changes(sel, Some(t("e")), Some(t("f")), &[Change::Replaced], true)
            .expect("entry"),
    ];
    let body = write_xcap_diff("http://glms.example.com/xcap-root/", &entries);
    let d = parse_xcap_diff(&body).expect("parses");
    assert_eq!(d.xcap_root, "http://glms.example.com/xcap-root/");
    let shapes: Vec<(Option<&str>, Option<&str>, bool, bool)> = d
        .changes
        .iter()
        .map(|c| {
            (
                c.previous_etag.as_ref().map(ETag::as_str),
                c.new_etag.as_ref().map(ETag::as_str),
                c.patch.is_some(),
                c.body_not_changed,
            )
        })
        .collect();
    assert_eq!(
        shapes,
        vec![
            (None, Some("a"), false, false),
            (Some("b"), None, false, false),
            (Some("c"), Some("d"), false, true),
            (Some("e"), Some("f"), false, false),
        ]
    );
    assert!(
        d.changes
            .iter()
            .all(|c| c.sel == sel && c.kind == EntryKind::Document)
    );
    // Created and deleted within one window: nothing to say.
    assert_eq!(DocumentEntry::for_changes(sel, None, None, &[], true), None);
    // No patch when the subscriber asked for no-patching.
    let e = DocumentEntry::for_changes(
        sel,
        Some(t("x")),
        Some(t("y")),
        &[Change::Patched(vec![])],
        false,
    );
    assert_eq!(e.map(|e| e.body), Some(EntryBody::None));

    // SPEC 3.7: OpenXCAP writes absolute sel values.
    let openxcap = br#"<xcap-diff xmlns="urn:ietf:params:xml:ns:xcap-diff" xcap-root="http://xcap.example.com/xcap-root">
  <document sel="http://xcap.example.com/xcap-root/resource-lists/users/sip:bob@example.com/index" previous-etag="1" new-etag="2"/>
  <document sel="/xcap-root/org.openmobilealliance.access-rules/users/sip:bob@example.com/index" new-etag="3"/>
  <element sel="resource-lists/users/sip:bob@example.com/index/~~/resource-lists/list%5b@name=%22x%22%5d" exists="0"/>
  <attribute sel="resource-lists/users/sip:bob@example.com/index/~~/resource-lists/list/@name">x</attribute>
  <future-extension/>
</xcap-diff>"#;
    let d = parse_xcap_diff(openxcap).expect("parses");
    assert_eq!(d.changes.len(), 4);
    assert_eq!(d.changes[0].sel, sel);
    assert_eq!(
        d.changes[1].sel,
        "org.openmobilealliance.access-rules/users/sip:bob@example.com/index"
    );
    assert_eq!(d.changes[2].kind, EntryKind::Element);
    assert_eq!(d.changes[2].exists, Some(false));
    assert_eq!(d.changes[3].content.as_deref(), Some("x"));

    for bad in [
        &b"<x/>"[..],
        b"<xcap-diff xmlns='urn:ietf:params:xml:ns:xcap-diff'/>",
        b"<xcap-diff xmlns='urn:ietf:params:xml:ns:xcap-diff' xcap-root='r'><document/></xcap-diff>",
        b"<xcap-diff xmlns='urn:ietf:params:xml:ns:xcap-diff' xcap-root='r'><document sel='d'><add/></document></xcap-diff>",
        b"<xcap-diff xmlns='urn:ietf:params:xml:ns:xcap-diff' xcap-root='r'><document sel='d'><add sel='a' pos='sideways'/></document></xcap-diff>",
        b"<xcap-diff",
    ] {
        assert!(parse_xcap_diff(bad).is_err(), "{}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn aggregate_falls_back_without_patch() {
    let p = Change::Patched(vec![]);
    assert_eq!(aggregate(&[p.clone(), p.clone()]).map(|v| v.len()), Some(0));
    assert_eq!(aggregate(&[p.clone(), Change::Replaced]), None);
    assert_eq!(aggregate(&[]), None);
}

#[test]
fn element_put_replace_and_post_conditions() {
    let c = core();
    let doc = stored();
    let ct = "application/xcap-el+xml";
    // Replace alice with a display name: 200, not 201.
    let sel = "resource-lists/list%5b@name=%22oma_buddylist%22%5d/entry%5b@uri=%22sip:alice@example.com%22%5d";
    let body = "<entry uri=\"sip:alice@example.com\"><display-name>Alice</display-name></entry>";
    let out = c
        .put(&node(sel), Some(&doc), ct, body.as_bytes())
        .expect("replace");
    assert!(!out.created);
    let ops = patch_of(&out.change);
    assert!(matches!(&ops[0], PatchOp::Replace { .. }));
    assert_eq!(
        canonical(&apply_patch(&doc, &ops).expect("applies")),
        canonical(&out.document)
    );

    // §8.2.5 cannot-insert cases.
    let cases: &[(&str, &str)] = &[
        // Body uri differs from the predicate.
        (sel, "<entry uri=\"sip:other@example.com\"/>"),
        // Body name differs from the step.
        (sel, "<list name=\"x\"/>"),
        // Position beyond the end + 1.
        (
            "resource-lists/list%5b1%5d/entry%5b3%5d",
            "<entry uri=\"sip:z@x\"/>",
        ),
        // Ambiguous target.
        ("resource-lists/list/entry", "<entry uri=\"sip:z@x\"/>"),
        // A second root.
        (
            "other-root",
            "<other-root xmlns=\"urn:ietf:params:xml:ns:resource-lists\"/>",
        ),
    ];
    for (sel, body) in cases {
        let got = c.put(&node(sel), Some(&doc), ct, body.as_bytes()).err();
        assert_eq!(got, Some(XcapError::CannotInsert), "{sel} {body}");
        assert_eq!(XcapError::CannotInsert.status(), 409);
    }
    // Position 2 of 1 appends.
    let out = c
        .put(
            &node("resource-lists/list%5b1%5d/entry%5b2%5d"),
            Some(&doc),
            ct,
            b"<entry uri=\"sip:z@x\"/>",
        )
        .expect("insert by position");
    assert!(out.created);
    let got = c
        .get(
            &node("resource-lists/list%5b1%5d/entry%5b2%5d"),
            Some(&out.document),
        )
        .expect("GET");
    assert_eq!(got.body, b"<entry uri=\"sip:z@x\"/>");
    // entry[1] exists, so it is replaced; position plus a predicate that does not match yet
    // inserts before the existing first entry (by-pos-attr).
    let out = c
        .put(
            &node("resource-lists/list%5b1%5d/entry%5b1%5d"),
            Some(&doc),
            ct,
            b"<entry uri=\"sip:first@x\"/>",
        )
        .expect("replace first");
    assert!(!out.created);
    let out = c
        .put(
            &node("resource-lists/list%5b1%5d/entry%5b1%5d%5b@uri=%22sip:first@x%22%5d"),
            Some(&doc),
            ct,
            b"<entry uri=\"sip:first@x\"/>",
        )
        .expect("insert first");
    assert!(out.created);
    let text = String::from_utf8(out.document.clone()).expect("utf8");
    assert!(
        text.find("sip:first@x") < text.find("sip:alice@example.com"),
        "{text}"
    );
    assert_eq!(
        canonical(&apply_patch(&doc, &patch_of(&out.change)).expect("applies")),
        canonical(&out.document)
    );
    // A wildcard with an attribute predicate inserts after the last element child.
    let out = c
        .put(
            &node("resource-lists/*%5b@name=%22new%22%5d"),
            Some(&doc),
            ct,
            b"<list name=\"new\"/>",
        )
        .expect("wildcard insert");
    assert!(
        String::from_utf8(out.document)
            .expect("utf8")
            .contains("</list><list name=\"new\"/>\n</resource-lists>")
    );
}

#[test]
fn no_parent_reports_closest_ancestor() {
    let c = core();
    let doc = stored();
    let ct = "application/xcap-el+xml";
    let got = c
        .put(
            &node("resource-lists/list%5b@name=%22nope%22%5d/entry"),
            Some(&doc),
            ct,
            b"<entry uri=\"sip:a@b\"/>",
        )
        .err();
    assert_eq!(
        got,
        Some(XcapError::NoParent(
            "/xcap-root/resource-lists/users/sip:bob@example.com/index/~~/resource-lists".into()
        ))
    );
    let body = String::from_utf8(got.and_then(|e| e.body()).expect("body")).expect("utf8");
    assert!(body.contains("<no-parent><ancestor>/xcap-root/resource-lists/users/sip:bob@example.com/index/~~/resource-lists</ancestor></no-parent>"), "{body}");
    // Two levels missing: the ancestor is still the deepest existing node.
    let got = c
        .put(
            &node(
                "resource-lists/list%5b@name=%22oma_buddylist%22%5d/list%5b@name=%22x%22%5d/entry",
            ),
            Some(&doc),
            ct,
            b"<entry uri=\"sip:a@b\"/>",
        )
        .err();
    assert_eq!(
        got,
        Some(XcapError::NoParent(
            "/xcap-root/resource-lists/users/sip:bob@example.com/index/~~/resource-lists/list%5B@name=%22oma_buddylist%22%5D".into()
        ))
    );
    // Document missing: the user's home directory.
    let got = c.put(&uri(SPEC_4_2_PUT), None, ct, TOM.as_bytes()).err();
    assert_eq!(
        got,
        Some(XcapError::NoParent(
            "/xcap-root/resource-lists/users/sip:bob@example.com/".into()
        ))
    );
    // Attribute of a missing element.
    let got = c
        .put(
            &node("resource-lists/list%5b9%5d/@name"),
            Some(&doc),
            "application/xcap-att+xml",
            b"x",
        )
        .err();
    assert_eq!(
        got,
        Some(XcapError::NoParent(
            "/xcap-root/resource-lists/users/sip:bob@example.com/index/~~/resource-lists".into()
        ))
    );
}

#[test]
fn delete_post_conditions() {
    let c = core();
    let two = "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list name=\"l\"><entry uri=\"sip:a@x\"/><entry uri=\"sip:b@x\"/></list></resource-lists>";
    let doc = c
        .put(
            &uri(DOC_URI),
            None,
            "application/resource-lists+xml",
            two.as_bytes(),
        )
        .expect("PUT")
        .document;
    // §8.2.5: deleting entry[1] would make entry[1] select the other entry.
    assert_eq!(
        c.delete(&node("resource-lists/list/entry%5b1%5d"), Some(&doc))
            .err(),
        Some(XcapError::CannotDelete)
    );
    let out = c
        .delete(
            &node("resource-lists/list/entry%5b@uri=%22sip:a@x%22%5d"),
            Some(&doc),
        )
        .expect("delete by uri");
    let newdoc = out.document.expect("document remains");
    assert!(
        !String::from_utf8(newdoc.clone())
            .expect("utf8")
            .contains("sip:a@x")
    );
    assert_eq!(
        canonical(&apply_patch(&doc, &patch_of(&out.change)).expect("applies")),
        canonical(&newdoc)
    );
    // entry[2] is last: deleting it leaves nothing at entry[2].
    assert!(
        c.delete(&node("resource-lists/list/entry%5b2%5d"), Some(&doc))
            .is_ok()
    );
    // Attribute delete, and the schema check after it.
    let out = c
        .delete(&node("resource-lists/list/@name"), Some(&doc))
        .expect("delete @name");
    assert_eq!(
        canonical(&apply_patch(&doc, &patch_of(&out.change)).expect("applies")),
        canonical(&out.document.expect("doc"))
    );
    assert!(matches!(
        c.delete(&node("resource-lists/list/entry%5b1%5d/@uri"), Some(&doc)),
        Err(XcapError::SchemaValidation(_))
    ));
    // Root, missing, ambiguous, namespace bindings, missing document.
    assert_eq!(
        c.delete(&node("resource-lists"), Some(&doc)).err(),
        Some(XcapError::CannotDelete)
    );
    assert_eq!(
        c.delete(&node("resource-lists/list%5b2%5d"), Some(&doc))
            .err(),
        Some(XcapError::NotFound)
    );
    assert_eq!(
        c.delete(&node("resource-lists/list/entry"), Some(&doc))
            .err(),
        Some(XcapError::NotFound)
    );
    assert_eq!(
        c.delete(&node("resource-lists/list/@nope"), Some(&doc))
            .err(),
        Some(XcapError::NotFound)
    );
    assert_eq!(
        c.delete(&node("resource-lists/namespace::*"), Some(&doc))
            .err(),
        Some(XcapError::MethodNotAllowed(Allow::Get))
    );
    assert_eq!(
        c.delete(&uri(DOC_URI), None).err(),
        Some(XcapError::NotFound)
    );
    let out = c
        .delete(&uri(DOC_URI), Some(&doc))
        .expect("delete document");
    assert_eq!(out.document, None);
    assert_eq!(out.change, Change::Deleted);
}

#[test]
fn attribute_get_put() {
    let c = core();
    let doc = stored();
    let att = "application/xcap-att+xml";
    let name_uri = node("resource-lists/list%5b2%5d/@name");
    let got = c.get(&name_uri, Some(&doc)).expect("GET attr");
    assert_eq!(got.mime, MIME_ATTRIBUTE);
    assert_eq!(got.body, b"oma_blockedcontacts");
    // Replace.
    let out = c
        .put(&name_uri, Some(&doc), att, b"blocked &amp; more")
        .expect("PUT attr");
    assert!(!out.created);
    assert_eq!(
        c.get(&name_uri, Some(&out.document)).expect("GET").body,
        b"blocked &amp; more"
    );
    assert_eq!(
        canonical(&apply_patch(&doc, &patch_of(&out.change)).expect("applies")),
        canonical(&out.document)
    );
    // Create, including one in a namespace bound by the xmlns() query.
    let out = c
        .put(
            &node("resource-lists/list%5b1%5d/@foo"),
            Some(&doc),
            att,
            b"bar",
        )
        .expect("create attr");
    assert!(out.created);
    assert_eq!(
        canonical(&apply_patch(&doc, &patch_of(&out.change)).expect("applies")),
        canonical(&out.document)
    );
    let q = uri(&format!(
        "{DOC_URI}/~~/resource-lists/list%5b1%5d/@x:foo?xmlns(x=urn:example:x)"
    ));
    let out = c.put(&q, Some(&doc), att, b"1").expect("namespaced attr");
    let text = String::from_utf8(out.document.clone()).expect("utf8");
    assert!(
        text.contains("<list name=\"oma_buddylist\" xmlns:x=\"urn:example:x\" x:foo=\"1\">")
            || text.contains("xmlns:x=\"urn:example:x\""),
        "{text}"
    );
    assert_eq!(c.get(&q, Some(&out.document)).expect("GET").body, b"1");
    let diff = write_xcap_diff(
        "http://h/xcap-root",
        &[DocumentEntry::for_changes(
            "d",
            ETag::from_opaque("1"),
            ETag::from_opaque("2"),
            std::slice::from_ref(&out.change),
            true,
        )
        .expect("entry")],
    );
    let parsed = parse_xcap_diff(&diff).expect("parses");
    let patched =
        apply_patch(&doc, parsed.changes[0].patch.as_deref().expect("patch")).expect("applies");
    assert_eq!(canonical(&patched), canonical(&out.document));
    // Post-condition on attributes: changing the attribute the selector keys on.
    assert_eq!(
        c.put(
            &node("resource-lists/list%5b@name=%22oma_buddylist%22%5d/@name"),
            Some(&doc),
            att,
            b"x"
        )
        .err(),
        Some(XcapError::CannotInsert)
    );
    // Bad values.
    assert_eq!(
        c.put(&name_uri, Some(&doc), att, b"a<b").err(),
        Some(XcapError::NotXmlAttValue)
    );
    assert_eq!(
        c.put(&name_uri, Some(&doc), att, b"a&b").err(),
        Some(XcapError::NotXmlAttValue)
    );
    assert_eq!(
        c.put(&name_uri, Some(&doc), att, b"a\"b'c").err(),
        Some(XcapError::NotXmlAttValue)
    );
    assert_eq!(
        c.put(&name_uri, Some(&doc), att, b"\xff").err(),
        Some(XcapError::NotUtf8)
    );
    assert_eq!(
        c.put(
            &node("resource-lists/list%5b1%5d/@xmlns"),
            Some(&doc),
            att,
            b"urn:x"
        )
        .err(),
        Some(XcapError::CannotInsert)
    );
    // Ambiguous and missing GETs are 404.
    assert_eq!(
        c.get(&node("resource-lists/list/@name"), Some(&doc)).err(),
        Some(XcapError::NotFound)
    );
    assert_eq!(
        c.get(&node("resource-lists/list%5b1%5d/@nope"), Some(&doc))
            .err(),
        Some(XcapError::NotFound)
    );
}

#[test]
fn every_409_kind_from_operations() {
    let c = core();
    let doc = stored();
    let el = "application/xcap-el+xml";
    let entry_uri = node("resource-lists/list%5b2%5d/entry%5b@uri=%22sip:new@x%22%5d");
    let cases: Vec<(XcapError, Result<PutOutcome, XcapError>)> = vec![
        (
            XcapError::NotWellFormed,
            c.put(&entry_uri, Some(&doc), el, b"<entry uri=\"sip:new@x\">"),
        ),
        (
            XcapError::NotXmlFrag,
            c.put(
                &entry_uri,
                Some(&doc),
                el,
                b"<entry uri=\"sip:new@x\"/><entry uri=\"sip:new@x\"/>",
            ),
        ),
        (
            XcapError::NotUtf8,
            c.put(&entry_uri, Some(&doc), el, b"<entry uri=\"sip:\xff@x\"/>"),
        ),
        (
            XcapError::NotWellFormed,
            c.put(
                &uri(DOC_URI),
                Some(&doc),
                "application/resource-lists+xml",
                b"<resource-lists",
            ),
        ),
        (
            XcapError::SchemaValidation("wrong root element or namespace"),
            c.put(
                &uri(DOC_URI),
                Some(&doc),
                "application/resource-lists+xml",
                b"<resource-lists/>",
            ),
        ),
        (
            XcapError::SchemaValidation("entry without uri"),
            c.put(
                &node("resource-lists/list%5b2%5d/entry%5b2%5d"),
                Some(&doc),
                el,
                b"<entry><display-name>x</display-name></entry>",
            ),
        ),
        (
            XcapError::ConstraintFailure("elements nested too deep"),
            c.put(
                &node("resource-lists/list%5b2%5d/entry%5b@uri=%22sip:new@x%22%5d"),
                Some(&doc),
                el,
                format!(
                    "<entry uri=\"sip:new@x\">{}{}</entry>",
                    "<x:a xmlns:x=\"urn:x\">".repeat(30),
                    "</x:a>".repeat(30)
                )
                .as_bytes(),
            ),
        ),
    ];
    for (want, got) in cases {
        let err = got.expect_err("fails");
        assert_eq!(err, want);
        assert_eq!(err.status(), 409);
        let body = String::from_utf8(err.body().expect("body")).expect("utf8");
        assert!(body.contains(err.condition().expect("condition")), "{body}");
        parse_document(body.as_bytes(), &Limits::DEFAULT).expect("error body is well-formed");
    }

    // Uniqueness: a second entry with Tom's uri in one list.
    let with_dup = c
        .put(
            &node("resource-lists/list%5b2%5d/entry%5b2%5d"),
            Some(&doc),
            el,
            b"<entry uri=\"tel:+15551230000\"/>",
        )
        .expect_err("uniqueness failure");
    match &with_dup {
        XcapError::UniquenessFailure(e) => {
            assert_eq!(e[0].field, "resource-lists/list[2]/entry[2]/@uri")
        }
        other => panic!("{other:?}"),
    }
    let body = String::from_utf8(with_dup.body().expect("body")).expect("utf8");
    assert!(body.contains("<uniqueness-failure><exists field=\"resource-lists/list[2]/entry[2]/@uri\"/></uniqueness-failure>"), "{body}");
    // The same entry in another list is fine.
    assert!(
        c.put(
            &node("resource-lists/list%5b1%5d/entry%5b2%5d"),
            Some(&doc),
            el,
            b"<entry uri=\"tel:+15551230000\"/>"
        )
        .is_ok()
    );
    // Duplicate list names get alternatives.
    match c.put(
        &node("resource-lists/list%5b3%5d"),
        Some(&doc),
        el,
        b"<list name=\"oma_buddylist\"/>",
    ) {
        Err(XcapError::UniquenessFailure(e)) => {
            assert_eq!(e[0].field, "resource-lists/list[3]/@name");
            assert_eq!(e[0].alt_values[0], "oma_buddylist-1");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn media_types_and_methods() {
    let c = core();
    let doc = stored();
    let cases: Vec<(Result<PutOutcome, XcapError>, XcapError)> = vec![
        (
            c.put(
                &uri(DOC_URI),
                Some(&doc),
                "application/xcap-el+xml",
                BOB_DOC.as_bytes(),
            ),
            XcapError::UnsupportedMediaType,
        ),
        (
            c.put(
                &uri(SPEC_4_2_PUT),
                Some(&doc),
                "application/xml",
                TOM.as_bytes(),
            ),
            XcapError::UnsupportedMediaType,
        ),
        (
            c.put(
                &node("resource-lists/list%5b1%5d/@name"),
                Some(&doc),
                "application/xcap-el+xml",
                b"x",
            ),
            XcapError::UnsupportedMediaType,
        ),
        (
            c.put(
                &node("resource-lists/namespace::*"),
                Some(&doc),
                "application/xcap-ns+xml",
                b"x",
            ),
            XcapError::MethodNotAllowed(Allow::Get),
        ),
        (
            c.put(
                &uri("/xcap-root/xcap-caps/global/index"),
                None,
                "application/xcap-caps+xml",
                b"<x/>",
            ),
            XcapError::MethodNotAllowed(Allow::Get),
        ),
        (
            c.put(
                &uri("/xcap-root/nope/users/sip:a@b/index"),
                None,
                "application/xml",
                b"<x/>",
            ),
            XcapError::NotFound,
        ),
        (
            c.put(
                &uri("/xcap-root/resource-lists/global/index"),
                None,
                "application/resource-lists+xml",
                b"<x/>",
            ),
            XcapError::NotFound,
        ),
        (
            c.put(
                &node("resource-lists/list%5b"),
                Some(&doc),
                "application/xcap-el+xml",
                b"<x/>",
            ),
            XcapError::BadRequest("node selector syntax error"),
        ),
        (
            c.put(
                &node("resource-lists/p:list"),
                Some(&doc),
                "application/xcap-el+xml",
                b"<x/>",
            ),
            XcapError::BadRequest("node selector prefix not bound"),
        ),
    ];
    for (got, want) in cases {
        assert_eq!(got.err(), Some(want.clone()));
    }
    // Parameters and case in Content-Type are tolerated.
    assert!(
        c.put(
            &uri(DOC_URI),
            Some(&doc),
            "Application/Resource-Lists+XML; charset=UTF-8",
            BOB_DOC.as_bytes()
        )
        .is_ok()
    );
    assert_eq!(
        c.delete(&uri("/xcap-root/xcap-caps/global/index"), None)
            .err(),
        Some(XcapError::MethodNotAllowed(Allow::Get))
    );
    // Oversize body.
    let big = vec![b' '; Limits::DEFAULT.max_bytes + 1];
    assert_eq!(
        c.put(&uri(DOC_URI), None, "application/resource-lists+xml", &big)
            .err(),
        Some(XcapError::TooLarge)
    );
}

#[test]
fn xcap_caps_and_namespace_bindings() {
    let c = core();
    let caps = c
        .get(&uri("/xcap-root/xcap-caps/global/index"), None)
        .expect("caps");
    assert_eq!(caps.mime, "application/xcap-caps+xml");
    let text = String::from_utf8(caps.body).expect("utf8");
    assert!(text.contains("<auid>resource-lists</auid>"));
    let auid = c
        .get(
            &uri("/xcap-root/xcap-caps/global/index/~~/xcap-caps/auids/auid%5b2%5d"),
            None,
        )
        .expect("caps element");
    assert_eq!(auid.body, b"<auid>resource-lists</auid>");
    assert_eq!(
        c.get(&uri("/xcap-root/xcap-caps/global/other"), None).err(),
        Some(XcapError::NotFound)
    );
    assert_eq!(
        c.get(&uri("/xcap-root/xcap-caps/users/sip:a@b/index"), None)
            .err(),
        Some(XcapError::NotFound)
    );
    assert_eq!(c.get(&uri(DOC_URI), None).err(), Some(XcapError::NotFound));

    let doc = stored();
    let ns = c
        .get(&node("resource-lists/list%5b1%5d/namespace::*"), Some(&doc))
        .expect("ns");
    assert_eq!(ns.mime, MIME_NAMESPACES);
    assert_eq!(
        ns.body,
        b"<list xmlns=\"urn:ietf:params:xml:ns:resource-lists\"/>"
    );
}

/// RFC 4825 §6.4: prefixes in the selector come from the query, not from the document.
#[test]
fn rfc4825_namespace_example() {
    let mut c = core();
    c.registry.register(Usage {
        auid: "test",
        mime: "application/test+xml",
        default_ns: "urn:test:default-namespace",
        root: "foo",
        default_doc: "index",
        kind: UsageKind::Opaque,
        extra_namespaces: &[],
    });
    let doc = br#"<?xml version="1.0" encoding="UTF-8"?>
<foo xmlns="urn:test:default-namespace">
  <ns1:bar xmlns:ns1="urn:test:namespace1-uri" xmlns="urn:test:namespace1-uri">
    <baz/>
    <ns2:baz xmlns:ns2="urn:test:namespace2-uri"/>
  </ns1:bar>
  <ns3:hi xmlns:ns3="urn:test:namespace3-uri">
    <there/>
  </ns3:hi>
</foo>"#;
    let base = "/xcap-root/test/users/sip:joe@example.com/index/~~/";
    let get = |sel: &str| c.get(&uri(&format!("{base}{sel}")), Some(doc));
    assert_eq!(
        get("foo/a:bar/b:baz?xmlns(a=urn:test:namespace1-uri)xmlns(b=urn:test:namespace1-uri)")
            .expect("first baz")
            .body,
        b"<baz/>"
    );
    assert_eq!(
        get("foo/a:bar/b:baz?xmlns(a=urn:test:namespace1-uri)xmlns(b=urn:test:namespace2-uri)")
            .expect("second baz")
            .body,
        b"<ns2:baz xmlns:ns2=\"urn:test:namespace2-uri\"/>"
    );
    // Unprefixed `bar` is in the usage's default namespace, which bar is not in.
    assert_eq!(get("foo/bar").err(), Some(XcapError::NotFound));
    let ns = get("foo/a:bar/b:baz/namespace::*?xmlns(a=urn:test:namespace1-uri)xmlns(b=urn:test:namespace1-uri)")
        .expect("bindings");
    assert_eq!(
        ns.body,
        b"<baz xmlns=\"urn:test:namespace1-uri\" xmlns:ns1=\"urn:test:namespace1-uri\"/>"
    );
}

#[test]
fn access_rules_document() {
    let c = core();
    let u = uri("/xcap-root/org.openmobilealliance.access-rules/users/sip:bob@example.com/index");
    let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<cp:ruleset xmlns:cp="urn:ietf:params:xml:ns:common-policy"
            xmlns:ocp="urn:oma:xml:xdm:common-policy"
            xmlns:oxe="urn:oma:xml:xdm:extensions">
  <cp:rule id="im_block_tom">
    <cp:conditions>
      <cp:identity><cp:one id="sip:tom@example.com"/></cp:identity>
    </cp:conditions>
    <cp:actions><oxe:allow-reject-invite>false</oxe:allow-reject-invite></cp:actions>
  </cp:rule>
  <cp:rule id="im_default_allow">
    <cp:conditions><ocp:other-identity/></cp:conditions>
    <cp:actions><oxe:allow-reject-invite>true</oxe:allow-reject-invite></cp:actions>
  </cp:rule>
</cp:ruleset>"#;
    assert_eq!(
        c.put(&u, None, "application/resource-lists+xml", body)
            .err(),
        Some(XcapError::UnsupportedMediaType)
    );
    let doc = c
        .put(&u, None, "application/auth-policy+xml", body)
        .expect("PUT")
        .document;
    let r = uri(
        "/xcap-root/org.openmobilealliance.access-rules/users/sip:bob@example.com/index/~~/ruleset/rule%5b@id=%22im_block_tom%22%5d/conditions/identity/one/@id",
    );
    assert_eq!(
        c.get(&r, Some(&doc)).expect("GET").body,
        b"sip:tom@example.com"
    );
    // Add a rule: its fragment uses the cp prefix bound in the document.
    let add = uri(
        "/xcap-root/org.openmobilealliance.access-rules/users/sip:bob@example.com/index/~~/ruleset/rule%5b@id=%22im_block_eve%22%5d",
    );
    let frag = b"<cp:rule id=\"im_block_eve\"><cp:conditions><cp:identity><cp:one id=\"sip:eve@example.com\"/></cp:identity></cp:conditions></cp:rule>";
    let out = c
        .put(&add, Some(&doc), "application/xcap-el+xml", frag)
        .expect("add rule");
    assert_eq!(
        canonical(&apply_patch(&doc, &patch_of(&out.change)).expect("applies")),
        canonical(&out.document)
    );
    // A duplicate id is a uniqueness failure.
    let dup = uri(
        "/xcap-root/org.openmobilealliance.access-rules/users/sip:bob@example.com/index/~~/ruleset/rule%5b3%5d",
    );
    match c.put(
        &dup,
        Some(&doc),
        "application/xcap-el+xml",
        b"<cp:rule id=\"im_block_tom\"/>",
    ) {
        Err(XcapError::UniquenessFailure(e)) => assert_eq!(e[0].field, "ruleset/rule[3]/@id"),
        other => panic!("{other:?}"),
    }
}
