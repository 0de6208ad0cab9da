//! The D2 policy compiler through the crate's public API: SPEC 4.2 and 4.3's example documents
//! compiled together, and the result as the fast path sees it.
use imserver::policy::{IdBuf, RelayTarget, Verdict, normalize};
use imserver::subscriber::{CompileError, Root, XcapRef, compile, compile_in};

const RESOURCE_LISTS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">
  <list name="oma_buddylist">
    <entry uri="sip:alice@example.com"/>
  </list>
  <list name="oma_blockedcontacts">
    <entry uri="sip:tom@example.com"><display-name>Tom</display-name></entry>
    <entry uri="tel:+15551230000"/>
  </list>
</resource-lists>"#;

const ACCESS_RULES: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<cp:ruleset xmlns:cp="urn:ietf:params:xml:ns:common-policy"
            xmlns:ocp="urn:oma:xml:xdm:common-policy"
            xmlns:oxe="urn:oma:xml:xdm:extensions">
  <cp:rule id="im_block_sam">
    <cp:conditions>
      <cp:identity><cp:one id="sip:sam@example.com"/></cp:identity>
    </cp:conditions>
    <cp:actions><oxe:allow-reject-invite>false</oxe:allow-reject-invite></cp:actions>
  </cp:rule>
  <cp:rule id="im_block_list">
    <cp:conditions>
      <ocp:external-list>
        <ocp:entry anc="http://glms.example.com/xcap-root/resource-lists/users/sip:bob@example.com/index/~~/resource-lists/list%5b@name=%22oma_blockedcontacts%22%5d"/>
      </ocp:external-list>
    </cp:conditions>
    <cp:actions><oxe:allow-reject-invite>false</oxe:allow-reject-invite></cp:actions>
  </cp:rule>
  <cp:rule id="im_block_spam">
    <cp:conditions>
      <cp:identity><cp:many domain="spam.example"><cp:except id="sip:friend@spam.example"/></cp:many></cp:identity>
    </cp:conditions>
    <cp:actions><oxe:allow-reject-invite>false</oxe:allow-reject-invite></cp:actions>
  </cp:rule>
  <cp:rule id="im_default_allow">
    <cp:conditions><ocp:other-identity/></cp:conditions>
    <cp:actions><oxe:allow-reject-invite>true</oxe:allow-reject-invite></cp:actions>
  </cp:rule>
</cp:ruleset>"#;

fn norm(uri: &str) -> IdBuf {
    let mut b = IdBuf::new();
    normalize(uri.as_bytes(), &mut b).expect("test URI");
    b
}

#[test]
fn spec_examples_compile_into_the_fast_path_policy() {
    let mut asked = Vec::new();
    let mut resolve = |r: &XcapRef| {
        asked.push(r.document.clone());
        (r.document == "resource-lists/users/sip:bob@example.com/index")
            .then(|| RESOURCE_LISTS.as_bytes().to_vec())
    };
    let root = Root::parse("http://glms.example.com/xcap-root");
    let compiled = compile_in(
        &root,
        Some(RESOURCE_LISTS.as_bytes()),
        Some(ACCESS_RULES.as_bytes()),
        &mut resolve,
    )
    .expect("compiles");
    assert_eq!(
        asked,
        vec!["resource-lists/users/sip:bob@example.com/index"]
    );
    assert!(compiled.warnings.is_empty(), "{:?}", compiled.warnings);

    let target = RelayTarget {
        addr: "127.0.0.1:5070".parse().expect("addr"),
        tcp: false,
        uri: b"sip:bob@127.0.0.1:5070".as_slice().into(),
        conn: None,
    };
    let policy = compiled
        .policy()
        .expect("policy")
        .with_target(Some(target.clone()));
    assert!(policy.policy_known);
    for blocked in [
        "sip:tom@example.com",
        "tel:+1-555-123-0000",
        "sip:sam@example.com",
        "sip:anyone@spam.example",
    ] {
        assert_eq!(
            policy.decide(norm(blocked).as_bytes()),
            Verdict::Blocked,
            "{blocked}"
        );
    }
    for allowed in [
        "sip:alice@example.com",
        "sip:friend@spam.example",
        "sip:x@sub.spam.example",
    ] {
        assert_eq!(
            policy.decide(norm(allowed).as_bytes()),
            Verdict::Relay(&target),
            "{allowed}"
        );
    }
}

#[test]
fn twenty_entries_and_malformed_input() {
    let entries: String = (0..20)
        .map(|i| format!("<entry uri=\"sip:user{i}@example.com\"/>"))
        .collect();
    let doc = format!(
        "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\">\
         <list name=\"oma_blockedcontacts\">{entries}</list></resource-lists>"
    );
    let c = compile(Some(doc.as_bytes()), None, &mut |_| None).expect("compiles");
    assert_eq!(c.blocked.len(), 20);
    let policy = c.policy().expect("policy");
    assert!(policy.blocks(norm("sip:user19@example.com").as_bytes()));
    assert!(!policy.blocks(norm("sip:user20@example.com").as_bytes()));

    let err = compile(Some(&doc.as_bytes()[..doc.len() - 5]), None, &mut |_| None);
    assert_eq!(err.err(), Some(CompileError::ResourceListsMalformed));
}
