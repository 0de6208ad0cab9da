//! Property tests: the xcap-diff patch round trip over random XCAP operation sequences, and
//! no panics on arbitrary or damaged input (SPEC 4.1).

use proptest::prelude::*;

use super::dom::{Limits, parse_document};
use super::tests::{BOB_DOC, DOC_URI, ROOT, canonical, core, node, patch_of, stored, uri};
use super::*;

// ------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Action {
    PutEntryByUri { list: usize, uri: u8 },
    PutEntryAt { list: usize, pos: usize, uri: u8 },
    ReplaceEntry { list: usize, pos: usize, uri: u8 },
    DeleteEntryByUri { list: usize, uri: u8 },
    DeleteEntryAt { list: usize, pos: usize },
    PutList { name: u8 },
    DeleteList { list: usize },
    SetDisplayName { list: usize, pos: usize, name: u8 },
    SetAttr { list: usize, value: u8 },
    DeleteAttr { list: usize },
}

fn action() -> impl Strategy<Value = Action> {
    let l = 1usize..4;
    let p = 1usize..5;
    let u = 0u8..6;
    prop_oneof![
        (l.clone(), u.clone()).prop_map(|(list, uri)| Action::PutEntryByUri { list, uri }),
        (l.clone(), p.clone(), u.clone()).prop_map(|(list, pos, uri)| Action::PutEntryAt {
            list,
            pos,
            uri
        }),
        (l.clone(), p.clone(), u.clone()).prop_map(|(list, pos, uri)| Action::ReplaceEntry {
            list,
            pos,
            uri
        }),
        (l.clone(), u.clone()).prop_map(|(list, uri)| Action::DeleteEntryByUri { list, uri }),
        (l.clone(), p.clone()).prop_map(|(list, pos)| Action::DeleteEntryAt { list, pos }),
        (0u8..4).prop_map(|name| Action::PutList { name }),
        l.clone().prop_map(|list| Action::DeleteList { list }),
        (l.clone(), p.clone(), u.clone()).prop_map(|(list, pos, name)| Action::SetDisplayName {
            list,
            pos,
            name
        }),
        (l.clone(), u.clone()).prop_map(|(list, value)| Action::SetAttr { list, value }),
        l.prop_map(|list| Action::DeleteAttr { list }),
    ]
}

fn run(c: &XcapCore, doc: &[u8], a: &Action) -> Result<(Vec<u8>, Change), XcapError> {
    let el = "application/xcap-el+xml";
    let entry = |u: u8| format!("<entry uri=\"sip:u{u}@x\"/>");
    let put = |sel: String, ct: &str, body: String| {
        c.put(&node(&sel), Some(doc), ct, body.as_bytes())
            .map(|o| (o.document, o.change))
    };
    let del = |sel: String| {
        c.delete(&node(&sel), Some(doc))
            .map(|o| (o.document.unwrap_or_default(), o.change))
    };
    match a {
        Action::PutEntryByUri { list, uri } => put(
            format!("resource-lists/list%5b{list}%5d/entry%5b@uri=%22sip:u{uri}@x%22%5d"),
            el,
            entry(*uri),
        ),
        Action::PutEntryAt { list, pos, uri } => put(
            format!("resource-lists/list%5b{list}%5d/entry%5b{pos}%5d"),
            el,
            entry(*uri),
        ),
        Action::ReplaceEntry { list, pos, uri } => put(
            format!("resource-lists/list%5b{list}%5d/entry%5b{pos}%5d"),
            el,
            format!("<entry uri=\"sip:u{uri}@x\">\n <display-name>r{uri}</display-name></entry>"),
        ),
        Action::DeleteEntryByUri { list, uri } => del(format!(
            "resource-lists/list%5b{list}%5d/entry%5b@uri=%22sip:u{uri}@x%22%5d"
        )),
        Action::DeleteEntryAt { list, pos } => {
            del(format!("resource-lists/list%5b{list}%5d/entry%5b{pos}%5d"))
        }
        Action::PutList { name } => put(
            format!("resource-lists/list%5b@name=%22n{name}%22%5d"),
            el,
            format!(
                "<list xmlns=\"urn:ietf:params:xml:ns:resource-lists\" name=\"n{name}\"><!--c-->\n</list>"
            ),
        ),
        Action::DeleteList { list } => del(format!("resource-lists/list%5b{list}%5d")),
        Action::SetDisplayName { list, pos, name } => put(
            format!("resource-lists/list%5b{list}%5d/entry%5b{pos}%5d/display-name"),
            el,
            format!("<display-name>d&amp;{name}</display-name>"),
        ),
        Action::SetAttr { list, value } => put(
            format!("resource-lists/list%5b{list}%5d/@x:a?xmlns(x=urn:example:x)"),
            "application/xcap-att+xml",
            format!("v{value}"),
        ),
        Action::DeleteAttr { list } => del(format!(
            "resource-lists/list%5b{list}%5d/@x:a?xmlns(x=urn:example:x)"
        )),
    }
}

proptest! {
    // No failure persistence: a regression file would land in the shared source tree.
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    /// For random sequences of element/attribute PUTs and DELETEs, each change's patch turns
    /// the old document into the new one, and so does the aggregate of all of them after an
    /// xcap-diff write/parse round trip.
    #[test]
    fn patch_round_trip(actions in proptest::collection::vec(action(), 1..24)) {
        let c = core();
        let start = stored();
        let mut doc = start.clone();
        let mut changes = Vec::new();
        for a in &actions {
            let Ok((new, change)) = run(&c, &doc, a) else { continue };
            let ops = patch_of(&change);
            let patched = apply_patch(&doc, &ops).map_err(|e| TestCaseError::fail(format!("{a:?}: {e}")))?;
            prop_assert_eq!(canonical(&patched), canonical(&new), "{:?}", a);
            changes.push(change);
            doc = new;
        }
        if changes.is_empty() {
            return Ok(());
        }
        let entry = DocumentEntry::for_changes(
            "resource-lists/users/sip:bob@example.com/index",
            ETag::from_opaque("1"),
            ETag::from_opaque("2"),
            &changes,
            true,
        ).expect("entry");
        let body = write_xcap_diff("http://glms.example.com/xcap-root/", &[entry]);
        let parsed = parse_xcap_diff(&body).map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&body))))?;
        let ops = parsed.changes[0].patch.clone().expect("patch");
        let patched = apply_patch(&start, &ops)
            .map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&body))))?;
        prop_assert_eq!(canonical(&patched), canonical(&doc));
    }

    /// Arbitrary bytes never panic any entry point.
    #[test]
    fn arbitrary_bytes_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        sel in "[a-z@:\\[\\]\"'=*/0-9%()~.-]{0,40}",
        wild in "\\PC{0,40}",
    ) {
        let c = core();
        let doc = stored();
        let _ = parse_document(&body, &Limits::DEFAULT);
        let _ = parse_xcap_diff(&body);
        for target in [format!("{DOC_URI}/~~/{sel}"), format!("/xcap-root/{sel}"), sel.clone(), wild.clone(), format!("{DOC_URI}/~~/{wild}")] {
            if let Ok(u) = XcapUri::parse(&target, ROOT) {
                let _ = c.get(&u, Some(&doc));
                let _ = c.get(&u, Some(&body));
                for ct in ["application/xcap-el+xml", "application/xcap-att+xml", "application/resource-lists+xml"] {
                    let _ = c.put(&u, Some(&doc), ct, &body);
                    let _ = c.put(&u, None, ct, &body);
                }
                let _ = c.delete(&u, Some(&doc));
            }
        }
        let _ = check_preconditions(std::str::from_utf8(&body).ok(), None, ETag::from_opaque("x").as_ref());
    }

    /// Mutations of valid XML (the kinds of damage SPEC 4.1 lists: truncation, stray bytes,
    /// wrong nesting) never panic and never produce an invalid stored document.
    #[test]
    fn mutated_documents_never_panic(cut in 0usize..400, at in 0usize..400, byte in any::<u8>()) {
        let c = core();
        let mut body = BOB_DOC.as_bytes().to_vec();
        let at = at.min(body.len());
        body.insert(at, byte);
        body.truncate(cut.max(1).min(body.len()));
        if let Ok(out) = c.put(&uri(DOC_URI), None, "application/resource-lists+xml", &body) {
            prop_assert!(parse_document(&out.document, &Limits::DEFAULT).is_ok());
        }
        let diff = write_xcap_diff("http://h/xcap-root", &[]);
        let mut d = diff.clone();
        let at = at.min(d.len());
        d.insert(at, byte);
        let _ = parse_xcap_diff(&d);
        let _ = apply_patch(&body, &[]);
    }
}
