//! Domain rules: common-policy `<many domain="d">` with `<except id>` / `<except domain>`
//! (RFC 4745 §7.1.2), compiled for SPEC D2, matched exactly as D8 says (a `<many domain>` block
//! matches that exact domain, not its sub-domains). A `<many/>` without a domain blocks every
//! sender not excepted.
//!
//! Several block rules for one domain combine as a union of blocks (RFC 4745 §10: the actions
//! of all matching rules combine), so a sender escapes only when every such rule excepts it:
//! adding a rule for a domain that already has one intersects the exceptions.
#![forbid(unsafe_code)]

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use std::hash::BuildHasher;

use super::identity::{IdBuf, Normalized, domain_of, normalize_domain};
use super::set::{IdSet, PolicyError};

/// The exceptions of one `<many>` rule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exceptions {
    ids: IdSet,
    domains: IdSet,
}

impl Exceptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// `<except id="…">`: this identity is not blocked by the rule.
    pub fn except_id(&mut self, id: &impl Normalized) -> Result<&mut Self, PolicyError> {
        self.ids.insert(id)?;
        Ok(self)
    }

    /// `<except domain="…">`: senders of exactly this domain are not blocked by the rule.
    pub fn except_domain(&mut self, domain: &[u8]) -> Result<&mut Self, PolicyError> {
        let mut buf = IdBuf::new();
        normalize_domain(domain, &mut buf).map_err(|_| PolicyError::BadDomain)?;
        self.domains.insert_bytes(buf.as_bytes())?;
        Ok(self)
    }

    fn excepts(&self, sender: &[u8], domain: Option<&[u8]>) -> bool {
        self.ids.contains(sender) || domain.is_some_and(|d| self.domains.contains(d))
    }

    /// The exceptions both rules share: with two block rules, only those escape both.
    fn intersect(&self, other: &Exceptions) -> Exceptions {
        let mut both = Exceptions::new();
        for (mine, theirs, out) in [
            (&self.ids, &other.ids, &mut both.ids),
            (&self.domains, &other.domains, &mut both.domains),
        ] {
            for member in mine.iter().filter(|m| theirs.contains(m)) {
                // Cannot exceed the limit: a subset of a set that respected it.
                let _ = out.insert_bytes(member);
            }
        }
        both
    }
}

#[derive(Clone, Debug)]
struct DomainRule {
    domain: Box<[u8]>,
    except: Exceptions,
}

#[derive(Clone, Debug, Default)]
struct Rules {
    state: RandomState,
    by_domain: HashTable<DomainRule>,
    any: Option<Exceptions>,
}

/// The compiled domain rules of one user. Empty (the usual case) costs one pointer.
#[derive(Clone, Debug, Default)]
pub struct DomainRules {
    rules: Option<Box<Rules>>,
}

impl DomainRules {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_none()
    }

    /// `<many domain="…">` with its exceptions, in a rule whose action blocks.
    pub fn block_domain(&mut self, domain: &[u8], except: Exceptions) -> Result<(), PolicyError> {
        let mut buf = IdBuf::new();
        normalize_domain(domain, &mut buf).map_err(|_| PolicyError::BadDomain)?;
        let domain = buf.as_bytes();
        let rules = self.rules.get_or_insert_with(Box::default);
        if rules.by_domain.len() >= super::set::SET_MAX_ENTRIES {
            return Err(PolicyError::TooManyEntries);
        }
        let state = &rules.state;
        let hash = state.hash_one(domain);
        match rules.by_domain.find_mut(hash, |r| *r.domain == *domain) {
            Some(rule) => rule.except = rule.except.intersect(&except),
            None => {
                let rule = DomainRule {
                    domain: domain.into(),
                    except,
                };
                rules
                    .by_domain
                    .insert_unique(hash, rule, |r| state.hash_one(&*r.domain));
            }
        }
        Ok(())
    }

    /// `<many/>` without a domain, in a rule whose action blocks: everyone but the exceptions.
    pub fn block_any(&mut self, except: Exceptions) {
        let rules = self.rules.get_or_insert_with(Box::default);
        rules.any = Some(match rules.any.take() {
            Some(previous) => previous.intersect(&except),
            None => except,
        });
    }

    /// Does a domain rule block this sender (canonical form)? Allocates nothing.
    #[inline]
    pub fn blocks(&self, sender_norm: &[u8]) -> bool {
        let Some(rules) = &self.rules else {
            return false;
        };
        let domain = domain_of(sender_norm);
        if let Some(d) = domain {
            let hash = rules.state.hash_one(d);
            if let Some(rule) = rules.by_domain.find(hash, |r| *r.domain == *d)
                && !rule.except.excepts(sender_norm, domain)
            {
                return true;
            }
        }
        rules
            .any
            .as_ref()
            .is_some_and(|except| !except.excepts(sender_norm, domain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::identity::Identity;

    fn id(uri: &str) -> Identity {
        Identity::parse(uri.as_bytes()).expect("valid test URI")
    }

    fn blocks(rules: &DomainRules, uri: &str) -> bool {
        rules.blocks(id(uri).as_bytes())
    }

    #[test]
    fn exact_domain_with_exceptions() {
        let mut rules = DomainRules::new();
        assert!(rules.is_empty());
        assert!(!blocks(&rules, "sip:a@spam.example"));
        let mut except = Exceptions::new();
        except.except_id(&id("sip:friend@spam.example")).unwrap();
        rules.block_domain(b"SPAM.example", except).unwrap();
        assert!(blocks(&rules, "sip:a@spam.example"));
        assert!(blocks(&rules, "sip:b@Spam.Example:5060"));
        assert!(blocks(&rules, "sip:spam.example"));
        assert!(!blocks(&rules, "sip:friend@spam.example"));
        // D8: exact domain, not sub-domains or parents.
        assert!(!blocks(&rules, "sip:a@sub.spam.example"));
        assert!(!blocks(&rules, "sip:a@example"));
        assert!(!blocks(&rules, "tel:+15551230000"));
        assert_eq!(
            rules.block_domain(b"bad domain", Exceptions::new()),
            Err(PolicyError::BadDomain)
        );
        assert_eq!(
            Exceptions::new().except_domain(b"").err(),
            Some(PolicyError::BadDomain)
        );
    }

    #[test]
    fn two_rules_for_one_domain_union_their_blocks() {
        let mut rules = DomainRules::new();
        let mut first = Exceptions::new();
        first.except_id(&id("sip:a@d.com")).unwrap();
        first.except_id(&id("sip:both@d.com")).unwrap();
        let mut second = Exceptions::new();
        second.except_id(&id("sip:b@d.com")).unwrap();
        second.except_id(&id("sip:both@d.com")).unwrap();
        rules.block_domain(b"d.com", first).unwrap();
        rules.block_domain(b"d.com", second).unwrap();
        assert!(blocks(&rules, "sip:a@d.com"));
        assert!(blocks(&rules, "sip:b@d.com"));
        assert!(!blocks(&rules, "sip:both@d.com"));
    }

    #[test]
    fn any_domain_rule() {
        let mut rules = DomainRules::new();
        let mut except = Exceptions::new();
        except.except_domain(b"Friends.example").unwrap();
        except.except_id(&id("tel:+1-555-0000")).unwrap();
        rules.block_any(except);
        assert!(blocks(&rules, "sip:x@anywhere.example"));
        assert!(blocks(&rules, "tel:+1999"));
        assert!(!blocks(&rules, "tel:+15550000"));
        assert!(!blocks(&rules, "sip:x@friends.example"));
        assert!(blocks(&rules, "sip:x@sub.friends.example"));
        rules.block_any(Exceptions::new());
        assert!(blocks(&rules, "sip:x@friends.example"));
    }
}
