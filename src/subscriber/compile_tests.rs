//! The D2 compiler, case by case.
use std::collections::HashMap;

use super::compile::{CompileError, Compiled, WarningKind, XcapRef, compile, compile_in};
use super::lists::Root;
use crate::policy::{IdBuf, UserPolicy, normalize};

const BOB_RL: &str = "resource-lists/users/sip:bob@example.com/index";

fn rl(body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\">{body}</resource-lists>"
    )
}

fn blocked_list(body: &str) -> String {
    rl(&format!("<list name=\"oma_blockedcontacts\">{body}</list>"))
}

fn rules(body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <cp:ruleset xmlns:cp=\"urn:ietf:params:xml:ns:common-policy\" \
         xmlns:ocp=\"urn:oma:xml:xdm:common-policy\" xmlns:oxe=\"urn:oma:xml:xdm:extensions\">\
         {body}</cp:ruleset>"
    )
}

fn rule(id: &str, conditions: &str, allow: bool) -> String {
    format!(
        "<cp:rule id=\"{id}\"><cp:conditions>{conditions}</cp:conditions>\
         <cp:actions><oxe:allow-reject-invite>{allow}</oxe:allow-reject-invite></cp:actions></cp:rule>"
    )
}

fn no_docs(_: &XcapRef) -> Option<Vec<u8>> {
    None
}

fn run(lists: Option<&str>, rules: Option<&str>) -> Compiled {
    compile(
        lists.map(str::as_bytes),
        rules.map(str::as_bytes),
        &mut no_docs,
    )
    .expect("compiles")
}

fn with_docs(lists: Option<&str>, rules: Option<&str>, docs: &[(&str, String)]) -> Compiled {
    let map: HashMap<String, Vec<u8>> = docs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone().into_bytes()))
        .collect();
    let mut resolve = |r: &XcapRef| map.get(&r.document).cloned();
    compile(
        lists.map(str::as_bytes),
        rules.map(str::as_bytes),
        &mut resolve,
    )
    .expect("compiles")
}

fn blocks(c: &Compiled, uri: &str) -> bool {
    let policy: UserPolicy = c.policy().expect("policy");
    assert!(policy.policy_known);
    let mut buf = IdBuf::new();
    normalize(uri.as_bytes(), &mut buf).expect("test uri");
    policy.blocks(buf.as_bytes())
}

fn names(c: &Compiled) -> Vec<String> {
    c.blocked.iter().map(|i| i.to_string()).collect()
}

#[test]
fn absent_documents_block_nobody_but_are_known() {
    let c = run(None, None);
    assert!(c.blocked.is_empty() && c.domain_blocks.is_empty() && c.block_any.is_none());
    let p = c.policy().unwrap();
    assert!(p.policy_known);
    assert!(!blocks(&c, "sip:tom@example.com"));
}

#[test]
fn entries_of_the_blocked_list_only() {
    let doc = rl(
        "<list name=\"oma_buddylist\"><entry uri=\"sip:alice@example.com\"/></list>\
         <list name=\"oma_blockedcontacts\">\
           <entry uri=\"sip:Tom@EXAMPLE.com;transport=tcp\"><display-name>Tom</display-name></entry>\
           <entry uri=\"tel:+1-555-123-0000\"/>\
           <entry uri=\"mailto:nobody@example.com\"/>\
         </list>",
    );
    let c = run(Some(&doc), None);
    assert_eq!(names(&c), vec!["Tom@example.com", "tel:+15551230000"]);
    assert!(blocks(&c, "sip:Tom@example.com"));
    assert!(
        !blocks(&c, "sip:tom@example.com"),
        "user part is case-sensitive (D8)"
    );
    assert!(blocks(&c, "sip:+15551230000@example.com;user=phone"));
    assert!(
        !blocks(&c, "sip:alice@example.com"),
        "other lists do not block"
    );
    // The bad entry is a warning, not an error.
    assert_eq!(c.warnings.len(), 1);
    assert_eq!(c.warnings[0].kind, WarningKind::BadEntryUri);
}

#[test]
fn nested_lists_count() {
    let doc = blocked_list(
        "<entry uri=\"sip:a@x.org\"/>\
         <list name=\"inner\"><entry uri=\"sip:b@x.org\"/><list><entry uri=\"sip:c@x.org\"/></list></list>",
    );
    let c = run(Some(&doc), None);
    assert_eq!(names(&c), vec!["a@x.org", "b@x.org", "c@x.org"]);
}

#[test]
fn external_in_the_same_document_and_in_another() {
    // RCS style: oma_blockedcontacts refers to rcs_blockedcontacts in the same document.
    let doc = rl("<list name=\"oma_blockedcontacts\">\
           <external anchor=\"http://glms.example.com/xcap-root/resource-lists/users/sip:bob@example.com/index/~~/resource-lists/list%5b@name=%22rcs_blockedcontacts%22%5d\"/>\
           <external anchor=\"resource-lists/users/sip:bob@example.com/other/~~/resource-lists/list%5b@name=%22x%22%5d\"/>\
         </list>\
         <list name=\"rcs_blockedcontacts\"><entry uri=\"sip:rcs@example.com\"/></list>");
    let other = rl("<list name=\"x\"><entry uri=\"sip:other@example.com\"/></list>");
    let c = with_docs(
        Some(&doc),
        None,
        &[
            (BOB_RL, doc.clone()),
            ("resource-lists/users/sip:bob@example.com/other", other),
        ],
    );
    assert_eq!(names(&c), vec!["other@example.com", "rcs@example.com"]);
    assert_eq!(c.referenced.len(), 2);
    assert!(c.unresolved.is_empty());
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn unresolved_reference_is_reported() {
    let doc = blocked_list(
        "<entry uri=\"sip:a@x.org\"/>\
         <external anchor=\"resource-lists/users/sip:bob@example.com/gone/~~/resource-lists/list%5b@name=%22x%22%5d\"/>",
    );
    let c = run(Some(&doc), None);
    assert_eq!(names(&c), vec!["a@x.org"]);
    assert_eq!(
        c.unresolved,
        vec!["resource-lists/users/sip:bob@example.com/gone".to_owned()]
    );
    assert!(c.warnings.iter().any(|w| w.kind == WarningKind::Unresolved));
}

#[test]
fn entry_ref_points_at_an_entry() {
    let doc = blocked_list(
        "<entry-ref ref=\"resource-lists/users/sip:bob@example.com/index/~~/resource-lists/list%5b@name=%22oma_buddylist%22%5d/entry%5b@uri=%22sip:alice@example.com%22%5d\"/>\
         <entry-ref ref=\"resource-lists/users/sip:bob@example.com/index/~~/resource-lists/list%5b@name=%22oma_buddylist%22%5d\"/>",
    );
    let full = rl(&format!(
        "<list name=\"oma_buddylist\"><entry uri=\"sip:alice@example.com\"/><entry uri=\"sip:zed@example.com\"/></list>{}",
        "<list name=\"oma_blockedcontacts\"/>"
    ));
    let c = with_docs(Some(&doc), None, &[(BOB_RL, full)]);
    assert_eq!(names(&c), vec!["alice@example.com"]);
    assert!(c.warnings.iter().any(|w| w.kind == WarningKind::NotAnEntry));
}

/// A chain of documents d1 -> d2 -> ... each holding one entry and an external to the next.
fn chain(len: usize) -> Vec<(String, String)> {
    (1..=len)
        .map(|i| {
            let next = format!(
                "<external anchor=\"resource-lists/users/sip:bob@example.com/d{}/~~/resource-lists/list%5b@name=%22l%22%5d\"/>",
                i + 1
            );
            (
                format!("resource-lists/users/sip:bob@example.com/d{i}"),
                rl(&format!("<list name=\"l\"><entry uri=\"sip:u{i}@x.org\"/>{next}</list>")),
            )
        })
        .collect()
}

#[test]
fn references_stop_at_depth_four() {
    let start = blocked_list(
        "<external anchor=\"resource-lists/users/sip:bob@example.com/d1/~~/resource-lists/list%5b@name=%22l%22%5d\"/>",
    );
    let docs = chain(6);
    let refs: Vec<(&str, String)> = docs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let c = with_docs(Some(&start), None, &refs);
    // Hops 1..4 are followed (u1..u4); the fifth hop is refused.
    assert_eq!(
        names(&c),
        vec!["u1@x.org", "u2@x.org", "u3@x.org", "u4@x.org"]
    );
    assert!(c.warnings.iter().any(|w| w.kind == WarningKind::DepthLimit));
}

#[test]
fn cycles_are_ignored() {
    let a = rl("<list name=\"oma_blockedcontacts\">\
         <entry uri=\"sip:a@x.org\"/>\
         <external anchor=\"resource-lists/users/sip:bob@example.com/b/~~/resource-lists/list%5b@name=%22l%22%5d\"/></list>");
    let b = rl("<list name=\"l\"><entry uri=\"sip:b@x.org\"/>\
         <external anchor=\"resource-lists/users/sip:bob@example.com/b/~~/resource-lists/list%5b@name=%22l%22%5d\"/>\
         <external anchor=\"resource-lists/users/sip:bob@example.com/index/~~/resource-lists/list%5b@name=%22oma_blockedcontacts%22%5d\"/></list>");
    let c = with_docs(
        Some(&a),
        None,
        &[
            ("resource-lists/users/sip:bob@example.com/b", b),
            (BOB_RL, a.clone()),
        ],
    );
    assert_eq!(names(&c), vec!["a@x.org", "b@x.org"]);
    assert!(!c.warnings.iter().any(|w| w.kind == WarningKind::DepthLimit));
}

#[test]
fn references_outside_the_root_are_refused() {
    let doc = blocked_list(
        "<external anchor=\"http://evil.example.net/xcap-root/resource-lists/users/sip:x@y/index/~~/resource-lists/list\"/>\
         <external anchor=\"http://glms.example.com/elsewhere/resource-lists/users/sip:x@y/index/~~/resource-lists/list\"/>",
    );
    let mut asked = 0;
    let mut resolve = |_: &XcapRef| {
        asked += 1;
        None
    };
    let root = Root::parse("http://glms.example.com/xcap-root");
    let c = compile_in(&root, Some(doc.as_bytes()), None, &mut resolve).unwrap();
    assert_eq!(asked, 0);
    assert_eq!(
        c.warnings
            .iter()
            .filter(|w| w.kind == WarningKind::ForeignRoot)
            .count(),
        2
    );
}

#[test]
fn access_rules_one_many_except() {
    let doc = rules(&format!(
        "{}{}{}",
        rule(
            "r1",
            "<cp:identity><cp:one id=\"sip:tom@example.com\"/></cp:identity>",
            false
        ),
        rule(
            "r2",
            "<cp:identity><cp:many domain=\"Spam.Example\"><cp:except id=\"sip:ok@spam.example\"/>\
             <cp:except domain=\"other.example\"/></cp:many></cp:identity>",
            false
        ),
        rule(
            "r3",
            "<cp:identity><cp:one id=\"sip:ann@example.com\"/></cp:identity>",
            true
        ),
    ));
    let c = run(None, Some(&doc));
    assert!(blocks(&c, "sip:tom@example.com"));
    assert!(blocks(&c, "sip:x@spam.example"));
    assert!(!blocks(&c, "sip:ok@spam.example"));
    assert!(
        !blocks(&c, "sip:x@sub.spam.example"),
        "exact domain only (D8)"
    );
    assert!(!blocks(&c, "sip:ann@example.com"));
    assert_eq!(c.domain_blocks.len(), 1);
    assert_eq!(c.domain_blocks[0].domain, "spam.example");
}

#[test]
fn many_without_domain_blocks_everyone_but_the_exceptions() {
    let doc = rules(&rule(
        "all",
        "<cp:identity><cp:many><cp:except id=\"sip:mum@example.com\"/><cp:except domain=\"work.example\"/></cp:many></cp:identity>",
        false,
    ));
    let c = run(None, Some(&doc));
    assert!(blocks(&c, "sip:tom@example.com"));
    assert!(!blocks(&c, "sip:mum@example.com"));
    assert!(!blocks(&c, "sip:boss@work.example"));
}

#[test]
fn other_identity_allow_never_overrides_a_specific_block() {
    // SPEC 4.3's example document, with the list it refers to.
    let list = blocked_list("<entry uri=\"sip:listed@example.com\"/>");
    let doc = rules(&format!(
        "{}{}{}",
        rule(
            "im_block_tom",
            "<cp:identity><cp:one id=\"sip:tom@example.com\"/></cp:identity>",
            false
        ),
        rule(
            "im_block_list",
            "<ocp:external-list><ocp:entry anc=\"http://glms.example.com/xcap-root/resource-lists/users/sip:bob@example.com/index/~~/resource-lists/list%5b@name=%22oma_blockedcontacts%22%5d\"/></ocp:external-list>",
            false
        ),
        rule("im_default_allow", "<ocp:other-identity/>", true),
    ));
    let c = with_docs(None, Some(&doc), &[(BOB_RL, list)]);
    assert!(blocks(&c, "sip:tom@example.com"));
    assert!(blocks(&c, "sip:listed@example.com"));
    assert!(!blocks(&c, "sip:ann@example.com"));
}

#[test]
fn other_identity_block_is_a_whitelist() {
    let doc = rules(&format!(
        "{}{}",
        rule(
            "friends",
            "<cp:identity><cp:one id=\"sip:ann@example.com\"/><cp:many domain=\"work.example\"/></cp:identity>",
            true
        ),
        rule("rest", "<ocp:other-identity/>", false),
    ));
    let c = run(None, Some(&doc));
    assert!(!blocks(&c, "sip:ann@example.com"));
    assert!(!blocks(&c, "sip:boss@work.example"));
    assert!(blocks(&c, "sip:tom@example.com"));
}

#[test]
fn explicit_allow_beats_a_block_of_its_own_document_but_not_the_list() {
    // Rule A1: RFC 4745 §10 max-combining inside access-rules; rule A3: D2 union with the list.
    let list = blocked_list("<entry uri=\"sip:tom@example.com\"/>");
    let doc = rules(&format!(
        "{}{}{}{}",
        rule(
            "b1",
            "<cp:identity><cp:one id=\"sip:tom@example.com\"/><cp:one id=\"sip:ann@example.com\"/></cp:identity>",
            false
        ),
        rule(
            "b2",
            "<cp:identity><cp:many domain=\"spam.example\"/></cp:identity>",
            false
        ),
        rule(
            "a1",
            "<cp:identity><cp:one id=\"sip:tom@example.com\"/><cp:one id=\"sip:ann@example.com\"/><cp:one id=\"sip:fan@spam.example\"/></cp:identity>",
            true
        ),
        // Rule A2: a domain-wide allow overrides nothing.
        rule(
            "a2",
            "<cp:identity><cp:many domain=\"example.com\"/></cp:identity>",
            true
        ),
    ));
    let c = run(Some(&list), Some(&doc));
    assert!(
        blocks(&c, "sip:tom@example.com"),
        "the list block stands (A3)"
    );
    assert!(
        !blocks(&c, "sip:ann@example.com"),
        "explicit allow wins in its document (A1)"
    );
    assert!(
        !blocks(&c, "sip:fan@spam.example"),
        "explicit allow excepts from domain blocks"
    );
    assert!(blocks(&c, "sip:x@spam.example"));
}

#[test]
fn catch_all_allows_override_nothing() {
    let doc = rules(&format!(
        "{}{}{}",
        rule(
            "b",
            "<cp:identity><cp:one id=\"sip:tom@example.com\"/></cp:identity>",
            false
        ),
        rule("all", "<cp:identity><cp:many/></cp:identity>", true),
        "<cp:rule id=\"open\"><cp:conditions/><cp:actions><oxe:allow-reject-invite>true</oxe:allow-reject-invite></cp:actions></cp:rule>",
    ));
    let c = run(None, Some(&doc));
    assert!(blocks(&c, "sip:tom@example.com"));
}

#[test]
fn conditionless_block_blocks_everyone() {
    let doc = rules(
        "<cp:rule id=\"x\"><cp:actions><oxe:allow-reject-invite>false</oxe:allow-reject-invite></cp:actions></cp:rule>",
    );
    let c = run(None, Some(&doc));
    assert!(blocks(&c, "sip:anyone@example.com"));
}

#[test]
fn unevaluated_conditions_and_other_actions() {
    let doc = rules(&format!(
        "{}{}{}{}",
        rule(
            "timed",
            "<cp:identity><cp:one id=\"sip:tom@example.com\"/></cp:identity>\
             <cp:validity><cp:from>2020-01-01T00:00:00Z</cp:from><cp:until>2030-01-01T00:00:00Z</cp:until></cp:validity>",
            false
        ),
        rule(
            "sphere",
            "<cp:sphere value=\"work\"/><cp:identity><cp:one id=\"sip:sam@example.com\"/></cp:identity>",
            false
        ),
        // Not an IM rule: no allow-reject-invite.
        "<cp:rule id=\"pres\"><cp:conditions><cp:identity><cp:one id=\"sip:pat@example.com\"/></cp:identity></cp:conditions>\
         <cp:actions><sub-handling xmlns=\"urn:ietf:params:xml:ns:pres-rules\">block</sub-handling></cp:actions></cp:rule>",
        "<cp:rule id=\"odd\"><cp:conditions><cp:identity><cp:one id=\"sip:odd@example.com\"/></cp:identity></cp:conditions>\
         <cp:actions><oxe:allow-reject-invite>maybe</oxe:allow-reject-invite></cp:actions></cp:rule>",
    ));
    let c = run(None, Some(&doc));
    for who in [
        "sip:tom@example.com",
        "sip:sam@example.com",
        "sip:pat@example.com",
        "sip:odd@example.com",
    ] {
        assert!(!blocks(&c, who), "{who}");
    }
    let kinds: Vec<WarningKind> = c.warnings.iter().map(|w| w.kind).collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == WarningKind::UnevaluatedCondition)
            .count(),
        2
    );
    assert!(kinds.contains(&WarningKind::UnknownAction));
}

#[test]
fn identity_and_external_list_in_one_rule_are_anded() {
    let list =
        rl("<list name=\"l\"><entry uri=\"sip:a@x.org\"/><entry uri=\"sip:b@y.org\"/></list>");
    let doc = rules(&rule(
        "both",
        "<cp:identity><cp:many domain=\"x.org\"/></cp:identity>\
         <ocp:external-list><ocp:entry anc=\"resource-lists/users/sip:bob@example.com/index/~~/resource-lists/list%5b@name=%22l%22%5d\"/></ocp:external-list>",
        false,
    ));
    let c = with_docs(None, Some(&doc), &[(BOB_RL, list)]);
    assert_eq!(names(&c), vec!["a@x.org"]);
}

#[test]
fn malformed_documents_are_errors() {
    let bad = b"<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list>";
    assert_eq!(
        compile(Some(bad), None, &mut no_docs).err(),
        Some(CompileError::ResourceListsMalformed)
    );
    assert_eq!(
        compile(Some(b"<ruleset/>"), None, &mut no_docs).err(),
        Some(CompileError::ResourceListsWrongRoot)
    );
    assert_eq!(
        compile(None, Some(b"<cp:ruleset xmlns:cp=\"x\""), &mut no_docs).err(),
        Some(CompileError::AccessRulesMalformed)
    );
    assert_eq!(
        compile(None, Some(rl("").as_bytes()), &mut no_docs).err(),
        Some(CompileError::AccessRulesWrongRoot)
    );
    assert_eq!(CompileError::AccessRulesMalformed.status(), 409);
}

#[test]
fn bad_identities_and_domains_are_warnings() {
    let doc = rules(&rule(
        "r",
        "<cp:identity><cp:one id=\"not a uri\"/><cp:many domain=\"bad domain\"/><cp:one id=\"sip:ok@x.org\"/></cp:identity>",
        false,
    ));
    let c = run(None, Some(&doc));
    assert_eq!(names(&c), vec!["ok@x.org"]);
    assert!(c.domain_blocks.is_empty());
    let kinds: Vec<WarningKind> = c.warnings.iter().map(|w| w.kind).collect();
    assert!(kinds.contains(&WarningKind::BadEntryUri) && kinds.contains(&WarningKind::BadDomain));
}

#[test]
fn each_referenced_document_is_resolved_once() {
    let other = rl(
        "<list name=\"a\"><entry uri=\"sip:a@x.org\"/></list><list name=\"b\"><entry uri=\"sip:b@x.org\"/></list>",
    );
    let doc = blocked_list(
        "<external anchor=\"resource-lists/users/sip:bob@example.com/o/~~/resource-lists/list%5b@name=%22a%22%5d\"/>\
         <external anchor=\"resource-lists/users/sip:bob@example.com/o/~~/resource-lists/list%5b@name=%22b%22%5d\"/>",
    );
    let mut calls = 0;
    let mut resolve = |r: &XcapRef| {
        calls += 1;
        (r.document == "resource-lists/users/sip:bob@example.com/o")
            .then(|| other.clone().into_bytes())
    };
    let c = compile(Some(doc.as_bytes()), None, &mut resolve).unwrap();
    assert_eq!(calls, 1);
    assert_eq!(c.blocked.len(), 2);
}
