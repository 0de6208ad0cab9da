//! One user's compiled policy and the decision the fast path takes for every MESSAGE.
#![forbid(unsafe_code)]

use std::net::SocketAddr;

use super::domain::{DomainRules, Exceptions};
use super::identity::Normalized;
use super::set::{BlockedSet, PolicyError};
use super::short::ShortBytes;

/// Longest relay URI kept inside the policy; typical contacts (`sip:user@host:port;params`) fit.
pub const RELAY_URI_INLINE: usize = 96;

/// Where an allowed MESSAGE goes (SPEC D10: the recipient's most recent, highest-q binding, or
/// the outbound proxy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayTarget {
    pub addr: SocketAddr,
    pub tcp: bool,
    /// The Request-URI to use when relaying: the binding's contact (inline when short: the
    /// relay copies it right after the lookup, see [`ShortBytes`]).
    pub uri: ShortBytes<RELAY_URI_INLINE>,
    /// The connection the binding was registered over (RFC 5626 §5.3 style reuse: a UE
    /// behind NAT can only be reached on its own connection), as the transport's opaque id.
    pub conn: Option<u64>,
}

/// What to do with one MESSAGE for this user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// The sender is on the recipient's blocked list (D1: 603 by default, no relay).
    Blocked,
    /// Incoming Session Barring is on (D11): every MESSAGE gets the block response.
    Barred,
    /// No binding (D5): 480 Temporarily Unavailable.
    Unavailable,
    /// Policy not fetched yet (D6, fail closed): 480 with Retry-After.
    Pending,
    /// Allowed: relay statelessly to this target (D10).
    Relay(&'a RelayTarget),
}

/// The compiled policy of one user: everything the fast path needs, nothing it must parse.
#[derive(Clone, Debug, Default)]
pub struct UserPolicy {
    /// Blocked identities (D2: `oma_blockedcontacts` entries and `<one id>` block rules).
    pub blocked: BlockedSet,
    /// `<many domain>` block rules (D2, D8).
    pub domain_rules: DomainRules,
    /// Incoming Session Barring (D11, composed over the user's publications).
    pub isb: bool,
    /// The relay target; `None` while the user has no binding.
    pub target: Option<RelayTarget>,
    /// Whether `blocked` and `domain_rules` reflect the user's documents (D6).
    pub policy_known: bool,
}

impl UserPolicy {
    pub fn builder() -> UserPolicyBuilder {
        UserPolicyBuilder::default()
    }

    /// Is this sender (canonical form) blocked by identity or by a domain rule?
    #[inline]
    pub fn blocks(&self, sender_norm: &[u8]) -> bool {
        self.blocked.contains(sender_norm) || self.domain_rules.blocks(sender_norm)
    }

    /// The fast-path decision for one MESSAGE from `sender_norm` (canonical form). Allocates
    /// nothing.
    #[inline]
    pub fn decide(&self, sender_norm: &[u8]) -> Verdict<'_> {
        // D11: ISB bars every incoming MESSAGE, whatever else is known.
        if self.isb {
            return Verdict::Barred;
        }
        // D1, D5: a blocked sender learns of the block even when the user has no binding, but
        // only once the policy is known (D6: an unknown list blocks nobody yet).
        if self.policy_known && self.blocks(sender_norm) {
            return Verdict::Blocked;
        }
        let Some(target) = &self.target else {
            // D5: no binding -> 480.
            return Verdict::Unavailable;
        };
        if !self.policy_known {
            // D6: fail closed until the policy has been fetched.
            return Verdict::Pending;
        }
        Verdict::Relay(target)
    }

    /// The same policy with another relay target (a registrar change leaves the lists alone).
    pub fn with_target(&self, target: Option<RelayTarget>) -> UserPolicy {
        UserPolicy {
            target,
            ..self.clone()
        }
    }
}

/// Builds a [`UserPolicy`] on the slow path. The first error is kept and returned by `build`,
/// so calls chain.
#[derive(Default)]
pub struct UserPolicyBuilder {
    policy: UserPolicy,
    error: Option<PolicyError>,
}

impl UserPolicyBuilder {
    fn keep(mut self, result: Result<(), PolicyError>) -> Self {
        if let Err(e) = result {
            self.error.get_or_insert(e);
        }
        self
    }

    /// Block one identity (`<one id>` or a list entry). Marks the policy known.
    pub fn block(mut self, id: &impl Normalized) -> Self {
        self.policy.policy_known = true;
        let result = self.policy.blocked.insert(id).map(|_| ());
        self.keep(result)
    }

    /// Block a domain except some identities/domains. Marks the policy known.
    pub fn block_domain(mut self, domain: &[u8], except: Exceptions) -> Self {
        self.policy.policy_known = true;
        let result = self.policy.domain_rules.block_domain(domain, except);
        self.keep(result)
    }

    /// Block every sender but the exceptions (`<many/>` in a blocking rule).
    pub fn block_any(mut self, except: Exceptions) -> Self {
        self.policy.policy_known = true;
        self.policy.domain_rules.block_any(except);
        self
    }

    /// The documents were fetched (possibly with nothing blocked).
    pub fn known(mut self) -> Self {
        self.policy.policy_known = true;
        self
    }

    pub fn isb(mut self, on: bool) -> Self {
        self.policy.isb = on;
        self
    }

    pub fn target(mut self, target: RelayTarget) -> Self {
        self.policy.target = Some(target);
        self
    }

    pub fn build(mut self) -> Result<UserPolicy, PolicyError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.policy.blocked.shrink_to_fit();
        Ok(self.policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::identity::Identity;

    fn id(uri: &str) -> Identity {
        Identity::parse(uri.as_bytes()).expect("valid test URI")
    }

    fn target() -> RelayTarget {
        RelayTarget {
            addr: "127.0.0.1:5070".parse().expect("literal address"),
            tcp: false,
            uri: b"sip:bob@127.0.0.1:5070".as_slice().into(),
            conn: None,
        }
    }

    const TOM: &[u8] = b"tom@example.com";
    const ANN: &[u8] = b"ann@example.com";

    #[test]
    fn decide_order() {
        let t = target();
        let known = UserPolicy::builder()
            .block(&id("sip:tom@example.com"))
            .target(t.clone())
            .build()
            .unwrap();
        assert!(known.policy_known);
        assert_eq!(known.decide(TOM), Verdict::Blocked);
        assert_eq!(known.decide(ANN), Verdict::Relay(&t));

        // ISB first, even for an allowed sender and an unknown policy.
        let barred = UserPolicy {
            isb: true,
            ..known.clone()
        };
        assert_eq!(barred.decide(ANN), Verdict::Barred);
        assert_eq!(barred.decide(TOM), Verdict::Barred);
        let barred_unknown = UserPolicy {
            policy_known: false,
            ..barred
        };
        assert_eq!(barred_unknown.decide(ANN), Verdict::Barred);

        // No binding: the block still shows when known (D5), else 480.
        let unbound = known.with_target(None);
        assert_eq!(unbound.decide(TOM), Verdict::Blocked);
        assert_eq!(unbound.decide(ANN), Verdict::Unavailable);

        // Policy not known: the (stale) list is not consulted; bound -> Pending, unbound -> 480.
        let pending = UserPolicy {
            policy_known: false,
            ..known.clone()
        };
        assert_eq!(pending.decide(TOM), Verdict::Pending);
        assert_eq!(pending.decide(ANN), Verdict::Pending);
        assert_eq!(pending.with_target(None).decide(ANN), Verdict::Unavailable);
        assert_eq!(UserPolicy::default().decide(ANN), Verdict::Unavailable);

        // Known but empty lists relay everyone.
        let open = UserPolicy::builder()
            .known()
            .target(t.clone())
            .build()
            .unwrap();
        assert_eq!(open.decide(TOM), Verdict::Relay(&t));
    }

    #[test]
    fn domain_rules_in_decide() {
        let mut except = Exceptions::new();
        except.except_id(&id("sip:ok@spam.example")).unwrap();
        let p = UserPolicy::builder()
            .block_domain(b"spam.example", except)
            .target(target())
            .build()
            .unwrap();
        assert_eq!(p.decide(b"x@spam.example"), Verdict::Blocked);
        assert!(matches!(p.decide(b"ok@spam.example"), Verdict::Relay(_)));
        assert!(matches!(p.decide(b"x@other.example"), Verdict::Relay(_)));
    }

    #[test]
    fn builder_keeps_first_error() {
        let err = UserPolicy::builder()
            .block_domain(b"no way", Exceptions::new())
            .block(&id("sip:a@b.c"))
            .build();
        assert_eq!(err.err(), Some(PolicyError::BadDomain));
    }
}
