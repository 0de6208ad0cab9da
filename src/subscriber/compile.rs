//! The D2 policy compiler: a user's `resource-lists` and `access-rules` documents in, the
//! blocked identities and domain rules out. A pure function: no clock, no network; documents
//! referenced from the two (RFC 4826 `<external>` / `<entry-ref>`, OMA `<external-list>`) come
//! through the caller's `resolve`, which answers from its cache or records a miss.
//!
//! Evaluation (see the module doc of `subscriber` for the allow-versus-block rule):
//! - resource-lists: every member of the top-level `oma_blockedcontacts` list is blocked.
//! - access-rules: per rule, the conditions (RFC 4745 §7, AND across condition elements, OR
//!   inside `<identity>`) and the OMA action `<allow-reject-invite>` (false blocks, true allows).
#![forbid(unsafe_code)]

use crate::glms::xcap::dom::{Document, Element, Limits, parse_document};
use crate::policy::identity::normalize_domain;
use crate::policy::{Exceptions, IdBuf, Identity, PolicyError, UserPolicy, domain_of, normalize};

use super::lists::{RL_NS, Root, Walker, top_level_list};

/// common-policy (RFC 4745 §14).
pub const CP_NS: &str = "urn:ietf:params:xml:ns:common-policy";
/// OMA common-policy extensions (`<other-identity>`, `<external-list>`, `<anonymous-request>`).
pub const OCP_NS: &str = "urn:oma:xml:xdm:common-policy";
/// OMA XDM extensions (`<allow-reject-invite>`).
pub const OXE_NS: &str = "urn:oma:xml:xdm:extensions";
/// The OMNA-reserved blocked list name (SPEC 4.2).
pub const BLOCKED_LIST: &str = "oma_blockedcontacts";
/// Warnings kept per compile (more are counted in `warnings_dropped`).
const MAX_WARNINGS: usize = 32;

/// A document reached through a reference, as the resolver is asked for it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct XcapRef {
    /// Document selector relative to the XCAP root, percent-encoded as
    /// `XcapUri::document_selector` writes it: `resource-lists/users/sip:bob@example.com/index`.
    pub document: String,
    /// The node selector the reference carries (decoded), for information.
    pub node_selector: Option<String>,
    pub ns_bindings: Vec<(String, String)>,
}

/// Why a user's documents did not compile. The subscriber keeps the last good policy (D6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("resource-lists document is not well-formed")]
    ResourceListsMalformed,
    #[error("resource-lists document root is not <resource-lists>")]
    ResourceListsWrongRoot,
    #[error("access-rules document is not well-formed")]
    AccessRulesMalformed,
    #[error("access-rules document root is not <ruleset>")]
    AccessRulesWrongRoot,
    #[error("policy limit: {0}")]
    Policy(PolicyError),
}

impl CompileError {
    /// RFC 4825 §11: a document the server cannot use is a conflict (409).
    pub fn status(self) -> u16 {
        409
    }

    pub fn reason(self) -> &'static str {
        match self {
            CompileError::ResourceListsMalformed => "resource-lists not well-formed",
            CompileError::ResourceListsWrongRoot => "resource-lists root element wrong",
            CompileError::AccessRulesMalformed => "access-rules not well-formed",
            CompileError::AccessRulesWrongRoot => "access-rules root element wrong",
            CompileError::Policy(e) => e.reason(),
        }
    }
}

/// What a warning is about. A warning never stops a compile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WarningKind {
    /// An `<entry uri>`, `<one id>` or `<except id>` that is not a sip/sips/tel identity.
    BadEntryUri,
    /// A domain in `<many domain>` / `<except domain>` that is not a host name.
    BadDomain,
    /// A reference that is not an XCAP URI of a resource-lists node.
    BadReference,
    /// A reference outside our XCAP root.
    ForeignRoot,
    /// A reference more than four hops deep (D2).
    DepthLimit,
    /// A referenced document or node that was not available.
    Unresolved,
    /// `<external>` pointing at something other than a `<list>`.
    NotAList,
    /// `<entry-ref>` pointing at something other than an `<entry>`.
    NotAnEntry,
    /// A rule with a condition not evaluated here (`<sphere>`, `<validity>`, unknown): per RFC
    /// 4745 §7 it evaluates to FALSE, so the rule matches nobody.
    UnevaluatedCondition,
    /// `<allow-reject-invite>` with a value other than true/false.
    UnknownAction,
    /// A limit (visits, documents) was reached.
    LimitReached,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub kind: WarningKind,
    /// The offending value, truncated.
    pub detail: String,
}

impl Warning {
    pub fn new(kind: WarningKind, detail: &str) -> Warning {
        let mut end = detail.len().min(128);
        while !detail.is_char_boundary(end) {
            end -= 1;
        }
        Warning {
            kind,
            detail: detail[..end].to_owned(),
        }
    }
}

/// A bounded warning list.
#[derive(Debug, Default)]
pub struct Warnings {
    pub list: Vec<Warning>,
    pub dropped: usize,
}

impl Warnings {
    pub fn push(&mut self, w: Warning) {
        if self.list.len() < MAX_WARNINGS {
            self.list.push(w);
        } else {
            self.dropped += 1;
        }
    }
}

/// The exceptions of a `<many>` block, in plain data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExceptList {
    pub ids: Vec<Identity>,
    /// Lowercased domains.
    pub domains: Vec<String>,
}

/// A `<many domain>` block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainBlock {
    /// Lowercased domain.
    pub domain: String,
    pub except: ExceptList,
}

/// A compiled policy in plain data: comparable (the subscriber publishes only changes) and
/// turned into the fast path's [`UserPolicy`] by [`Compiled::policy`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Compiled {
    /// Blocked identities, sorted, without duplicates.
    pub blocked: Vec<Identity>,
    /// `<many domain>` blocks, in document order.
    pub domain_blocks: Vec<DomainBlock>,
    /// `<many/>` (or condition-less, or `<other-identity/>`) blocks, already merged: everyone
    /// but these exceptions.
    pub block_any: Option<ExceptList>,
    /// Documents consulted through references (sorted).
    pub referenced: Vec<String>,
    /// Documents the resolver did not have (sorted): the caller fetches them and compiles again.
    pub unresolved: Vec<String>,
    pub warnings: Vec<Warning>,
    pub warnings_dropped: usize,
}

impl Compiled {
    /// The fast path's policy: `policy_known = true`, no relay target, ISB off (the slow path
    /// sets those).
    pub fn policy(&self) -> Result<UserPolicy, PolicyError> {
        let mut b = UserPolicy::builder().known();
        for id in &self.blocked {
            b = b.block(id);
        }
        for d in &self.domain_blocks {
            b = b.block_domain(d.domain.as_bytes(), exceptions(&d.except)?);
        }
        if let Some(e) = &self.block_any {
            b = b.block_any(exceptions(e)?);
        }
        b.build()
    }
}

fn exceptions(list: &ExceptList) -> Result<Exceptions, PolicyError> {
    let mut e = Exceptions::new();
    for id in &list.ids {
        e.except_id(id)?;
    }
    for d in &list.domains {
        e.except_domain(d.as_bytes())?;
    }
    Ok(e)
}

/// Compiles with the default XCAP root path `/xcap-root` (any authority).
pub fn compile(
    resource_lists: Option<&[u8]>,
    access_rules: Option<&[u8]>,
    resolve: &mut dyn FnMut(&XcapRef) -> Option<Vec<u8>>,
) -> Result<Compiled, CompileError> {
    compile_in(&Root::default(), resource_lists, access_rules, resolve)
}

/// Compiles with references restricted to `root`.
pub fn compile_in(
    root: &Root,
    resource_lists: Option<&[u8]>,
    access_rules: Option<&[u8]>,
    resolve: &mut dyn FnMut(&XcapRef) -> Option<Vec<u8>>,
) -> Result<Compiled, CompileError> {
    // Both documents are parsed before anything is followed: a malformed one fails fast.
    let rl = match resource_lists {
        Some(bytes) => {
            let d = parse_document(bytes, &Limits::DEFAULT)
                .map_err(|_| CompileError::ResourceListsMalformed)?;
            if !d.root.name.is(RL_NS, "resource-lists") {
                return Err(CompileError::ResourceListsWrongRoot);
            }
            Some(d)
        }
        None => None,
    };
    let ar = match access_rules {
        Some(bytes) => {
            let d = parse_document(bytes, &Limits::DEFAULT)
                .map_err(|_| CompileError::AccessRulesMalformed)?;
            if !d.root.name.is(CP_NS, "ruleset") {
                return Err(CompileError::AccessRulesWrongRoot);
            }
            Some(d)
        }
        None => None,
    };
    let mut w = Warnings::default();
    let mut walker = Walker::new(root.clone(), resolve);

    // D2 item 1: the members of oma_blockedcontacts; never overridden by an access-rules allow.
    let mut list_blocked = Vec::new();
    if let Some(doc) = &rl
        && let Some(path) = top_level_list(doc, BLOCKED_LIST)
    {
        walker.walk_own_list(doc, path, &mut list_blocked, &mut w);
    }

    // D2 item 2: the access rules.
    let mut rules_out = RulesOutcome::default();
    if let Some(doc) = &ar {
        rules_out = evaluate_rules(doc, &mut walker, &mut w);
    }

    let mut out = Compiled::default();
    let allowed = sorted(rules_out.explicit_allows);
    let is_allowed = |id: &Identity| allowed.binary_search(id).is_ok();
    // SUBSCRIBER rule A1 (RFC 4745 §10, max-combining): an explicit allow beats the blocks of
    // its own document; rule A3 (D2 union): list members stay blocked regardless.
    let mut blocked = list_blocked;
    blocked.extend(rules_out.blocked.into_iter().filter(|id| !is_allowed(id)));
    out.blocked = sorted(blocked);
    out.domain_blocks = rules_out
        .domain_blocks
        .into_iter()
        .map(|mut d| {
            d.except.ids.extend(allowed.iter().cloned());
            d.except.ids = sorted(std::mem::take(&mut d.except.ids));
            d
        })
        .collect();
    out.block_any = merge_any(rules_out.any_blocks).map(|mut e| {
        e.ids.extend(allowed.iter().cloned());
        e.ids = sorted(std::mem::take(&mut e.ids));
        e
    });
    out.referenced = sorted(std::mem::take(&mut walker.referenced));
    out.unresolved = sorted(std::mem::take(&mut walker.unresolved));
    out.warnings = w.list;
    out.warnings_dropped = w.dropped;
    // Check the policy limits now, so a compile that succeeds always turns into a policy.
    out.policy().map_err(CompileError::Policy)?;
    Ok(out)
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort_unstable();
    v.dedup();
    v
}

/// Several everyone-blocks combine as one whose exceptions are those all of them share (a
/// sender escapes only if every block rule excepts it; RFC 4745 §10 union of blocks).
fn merge_any(blocks: Vec<ExceptList>) -> Option<ExceptList> {
    let mut iter = blocks.into_iter();
    let first = iter.next()?;
    Some(iter.fold(first, |acc, e| {
        ExceptList {
            ids: acc.ids.into_iter().filter(|i| e.ids.contains(i)).collect(),
            domains: acc
                .domains
                .into_iter()
                .filter(|d| e.domains.contains(d))
                .collect(),
        }
    }))
}

#[derive(Default)]
struct RulesOutcome {
    blocked: Vec<Identity>,
    explicit_allows: Vec<Identity>,
    domain_blocks: Vec<DomainBlock>,
    any_blocks: Vec<ExceptList>,
}

/// One `<many>` of an `<identity>` condition.
struct Many {
    domain: Option<String>,
    except: ExceptList,
}

impl Many {
    fn matches(&self, id: &Identity) -> bool {
        let domain = domain_of(id.as_bytes()).map(|d| String::from_utf8_lossy(d));
        let in_scope = match &self.domain {
            Some(d) => domain.as_deref() == Some(d.as_str()),
            None => true,
        };
        in_scope
            && !self.except.ids.contains(id)
            && !domain.is_some_and(|d| self.except.domains.iter().any(|e| *e == *d))
    }
}

/// The conditions of one rule, as far as they are evaluated here.
#[derive(Default)]
struct Conditions {
    /// `<identity>` present: its `<one>` and `<many>` children (OR).
    identity: Option<(Vec<Identity>, Vec<Many>)>,
    /// OMA `<external-list>` present: the members of its lists (OR across entries).
    external: Option<Vec<Identity>>,
    other_identity: bool,
    /// Some condition makes the rule match nobody (RFC 4745 §7: unknown evaluates to FALSE;
    /// `<anonymous-request>` cannot match an identified sender).
    never: bool,
}

impl Conditions {
    fn identity_bearing(&self) -> bool {
        self.identity.is_some() || self.external.is_some()
    }

    /// The individually named identities the rule matches (AND of identity and external-list).
    fn named(&self) -> Vec<Identity> {
        match (&self.identity, &self.external) {
            (None, Some(ext)) => ext.clone(),
            (Some((ones, _)), None) => ones.clone(),
            (Some((ones, manys)), Some(ext)) => ext
                .iter()
                .filter(|e| ones.contains(e) || manys.iter().any(|m| m.matches(e)))
                .cloned()
                .collect(),
            (None, None) => Vec::new(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Block,
    Allow,
}

fn evaluate_rules(doc: &Document, walker: &mut Walker<'_>, w: &mut Warnings) -> RulesOutcome {
    let mut out = RulesOutcome::default();
    let mut rules = Vec::new();
    for (_, rule) in doc.root.child_elements() {
        if !rule.name.is(CP_NS, "rule") {
            continue;
        }
        let action = rule_action(rule, w);
        let conditions = rule_conditions(rule, walker, w);
        rules.push((action, conditions));
    }
    // Who some identity-bearing rule matches, whatever its action: `<other-identity/>` matches
    // only the rest (OMA common-policy extension; SPEC 4.3).
    let mut bearing = ExceptList::default();
    let mut bearing_matches_all = false;
    for (_, c) in rules
        .iter()
        .filter(|(_, c)| !c.never && c.identity_bearing())
    {
        bearing.ids.extend(c.named());
        if let (Some((_, manys)), None) = (&c.identity, &c.external) {
            for m in manys {
                match &m.domain {
                    Some(d) => bearing.domains.push(d.clone()),
                    None => bearing_matches_all = true,
                }
            }
        }
    }
    for (action, c) in rules {
        let Some(action) = action else { continue };
        if c.never {
            continue;
        }
        if c.other_identity {
            if c.identity_bearing() {
                // An identity condition AND "no identity condition matched" matches nobody.
                continue;
            }
            if action == Action::Block && !bearing_matches_all {
                out.any_blocks.push(ExceptList {
                    ids: sorted(bearing.ids.clone()),
                    domains: sorted(bearing.domains.clone()),
                });
            }
            // A catch-all allow never overrides a specific block (D2): nothing to record.
            continue;
        }
        match (action, &c.identity, &c.external) {
            // RFC 4745 §10: a rule without conditions matches every request.
            (Action::Block, None, None) => out.any_blocks.push(ExceptList::default()),
            (Action::Allow, None, None) => {}
            (Action::Block, Some((ones, manys)), None) => {
                out.blocked.extend(ones.iter().cloned());
                for m in manys {
                    match &m.domain {
                        Some(d) => out.domain_blocks.push(DomainBlock {
                            domain: d.clone(),
                            except: m.except.clone(),
                        }),
                        None => out.any_blocks.push(m.except.clone()),
                    }
                }
            }
            (Action::Block, _, Some(_)) => out.blocked.extend(c.named()),
            // Rule A1/A2: only individually named identities are explicit allows.
            (Action::Allow, _, _) => out.explicit_allows.extend(c.named()),
        }
    }
    out
}

/// The OMA `<allow-reject-invite>` action (false blocks, true allows); `None` when the rule has
/// no IM action (a rule for another service) or an unreadable one.
fn rule_action(rule: &Element, w: &mut Warnings) -> Option<Action> {
    let actions = child(rule, CP_NS, "actions")?;
    let (_, el) = actions.child_elements().find(|(_, e)| {
        e.name.local == "allow-reject-invite"
            && matches!(e.name.ns.as_deref(), Some(OXE_NS) | Some(OCP_NS))
    })?;
    match el.text().trim() {
        "false" | "0" => Some(Action::Block),
        "true" | "1" => Some(Action::Allow),
        other => {
            w.push(Warning::new(WarningKind::UnknownAction, other));
            None
        }
    }
}

fn child<'e>(el: &'e Element, ns: &str, local: &str) -> Option<&'e Element> {
    el.child_elements()
        .find(|(_, e)| e.name.is(ns, local))
        .map(|(_, e)| e)
}

fn rule_conditions(rule: &Element, walker: &mut Walker<'_>, w: &mut Warnings) -> Conditions {
    let mut c = Conditions::default();
    let Some(conds) = child(rule, CP_NS, "conditions") else {
        return c;
    };
    for (_, cond) in conds.child_elements() {
        match (cond.name.ns.as_deref(), cond.name.local.as_str()) {
            (Some(CP_NS), "identity") => {
                let (ones, manys) = c.identity.get_or_insert_with(Default::default);
                read_identity(cond, ones, manys, w);
            }
            (Some(OCP_NS), "external-list") => {
                let members = c.external.get_or_insert_with(Vec::new);
                for (_, entry) in cond.child_elements() {
                    if !entry.name.is(OCP_NS, "entry") {
                        continue;
                    }
                    match entry.attr("anc") {
                        Some(anc) => walker.walk_reference(anc, members, w),
                        None => {
                            w.push(Warning::new(WarningKind::BadReference, "entry without anc"))
                        }
                    }
                }
            }
            (Some(OCP_NS), "other-identity") => c.other_identity = true,
            // No anonymous sender reaches the policy: the sender is always identified (D7).
            (Some(OCP_NS), "anonymous-request") => c.never = true,
            (_, local) => {
                // RFC 4745 §7 (and §7.2, §7.3 for sphere and validity, not evaluated here): an
                // unsupported condition evaluates to FALSE.
                w.push(Warning::new(WarningKind::UnevaluatedCondition, local));
                c.never = true;
            }
        }
    }
    c
}

/// RFC 4745 §7.1: `<one id>` and `<many domain?>` with `<except id|domain>`.
fn read_identity(
    cond: &Element,
    ones: &mut Vec<Identity>,
    manys: &mut Vec<Many>,
    w: &mut Warnings,
) {
    for (_, e) in cond.child_elements() {
        if e.name.is(CP_NS, "one") {
            if let Some(id) = e.attr("id").and_then(|v| identity(v, w)) {
                ones.push(id);
            }
        } else if e.name.is(CP_NS, "many") {
            let many_domain = match e.attr("domain") {
                Some(d) => match domain(d, w) {
                    Some(d) => Some(d),
                    // A many-rule for an unreadable domain matches nobody.
                    None => continue,
                },
                None => None,
            };
            let mut except = ExceptList::default();
            for (_, x) in e.child_elements() {
                if !x.name.is(CP_NS, "except") {
                    continue;
                }
                if let Some(id) = x.attr("id").and_then(|v| identity(v, w)) {
                    except.ids.push(id);
                }
                if let Some(d) = x.attr("domain").and_then(|v| domain(v, w)) {
                    except.domains.push(d);
                }
            }
            except.ids = sorted(except.ids);
            except.domains = sorted(except.domains);
            manys.push(Many {
                domain: many_domain,
                except,
            });
        }
    }
}

fn identity(uri: &str, w: &mut Warnings) -> Option<Identity> {
    let mut buf = IdBuf::new();
    match normalize(uri.as_bytes(), &mut buf) {
        Ok(()) => Some(Identity::from(&buf)),
        Err(_) => {
            w.push(Warning::new(WarningKind::BadEntryUri, uri));
            None
        }
    }
}

fn domain(d: &str, w: &mut Warnings) -> Option<String> {
    let mut buf = IdBuf::new();
    match normalize_domain(d.as_bytes(), &mut buf) {
        Ok(()) => Some(String::from_utf8_lossy(buf.as_bytes()).into_owned()),
        Err(_) => {
            w.push(Warning::new(WarningKind::BadDomain, d));
            None
        }
    }
}
