//! What request number `seq` is and what the answer must be. Every choice is a pure function of
//! (data set, mix, seq), so the sender threads, the recipient side and the tests all derive the
//! same expectation without sharing state. The one exception is `churn`: the decision of a
//! MESSAGE between a churned pair is that pair's newest state when the plan is made, and its
//! answer is judged against the pair's history ([`crate::churn::table`]), not this plan.
#![forbid(unsafe_code)]

use std::sync::Arc;

use serde::Serialize;

use crate::churn::table::ChurnTable;
use crate::dataset::Dataset;
use crate::rng::SplitMix64;

/// What kind of request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Message,
    Register,
    Publish,
    Raw,
}

/// The answer the generator expects, by cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Allowed: relayed to the recipient's contact, whose 200 comes back (D10).
    Relay,
    /// Sender on the recipient's blocked list, or the recipient has ISB on (D1).
    Blocked,
    /// Recipient unknown to the server (D5): 404.
    Unknown,
    /// Recipient known but without a binding (D5): 480.
    Unregistered,
    /// REGISTER accepted.
    Registered,
    /// PUBLISH accepted.
    Published,
    /// A raw datagram echoed back.
    Echo,
}

impl Decision {
    pub const ALL: [Decision; 7] = [
        Decision::Relay,
        Decision::Blocked,
        Decision::Unknown,
        Decision::Unregistered,
        Decision::Registered,
        Decision::Published,
        Decision::Echo,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Decision::Relay => "relay",
            Decision::Blocked => "blocked",
            Decision::Unknown => "unknown",
            Decision::Unregistered => "unregistered",
            Decision::Registered => "registered",
            Decision::Published => "published",
            Decision::Echo => "echo",
        }
    }

    /// The final status code that proves this decision; `block_code` is D1's configured code.
    pub fn expected_code(self, block_code: u16) -> u16 {
        match self {
            Decision::Relay | Decision::Registered | Decision::Published | Decision::Echo => 200,
            Decision::Blocked => block_code,
            Decision::Unknown => 404,
            Decision::Unregistered => 480,
        }
    }
}

/// One request, fully decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub kind: Kind,
    pub sender: u32,
    pub recipient: u32,
    pub decision: Decision,
}

/// Shares of the MESSAGE population (the rest are allowed MESSAGEs to registered users).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct MessageMix {
    pub blocked_share: f64,
    pub unknown_share: f64,
    pub unregistered_share: f64,
}

/// Request-kind weights for `mixed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct KindMix {
    pub message: u32,
    pub register: u32,
    pub publish: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    Message,
    /// REGISTER each user of the list, in order, cycling.
    Register(Vec<u32>),
    /// PUBLISH service settings for each user of the list, cycling.
    Publish(Vec<u32>),
    Mixed(KindMix),
    Raw,
}

/// The workload of one run.
#[derive(Debug)]
pub struct Workload {
    pub mode: Mode,
    pub dataset: Arc<Dataset>,
    pub mix: MessageMix,
    pub block_code: u16,
    seed: u64,
    registered: Vec<u32>,
    with_blocked: Vec<u32>,
    unregistered_plain: Vec<u32>,
    /// `churn`: the pairs whose blocked state changes during the run, and the share of
    /// MESSAGEs aimed at them. Their answers are judged against the table, not the data set.
    churn: Option<(Arc<ChurnTable>, f64)>,
}

/// Bounded retries when drawing a sender the recipient does not block.
const SENDER_DRAWS: usize = 32;

impl Workload {
    pub fn new(mode: Mode, dataset: Arc<Dataset>, mix: MessageMix, block_code: u16) -> Self {
        let mut registered = Vec::new();
        let mut with_blocked = Vec::new();
        let mut unregistered_plain = Vec::new();
        for n in 1..=dataset.user_count() {
            let Some(user) = dataset.user(n) else {
                continue;
            };
            if user.registered {
                registered.push(n);
                if !user.blocked.is_empty() {
                    with_blocked.push(n);
                }
            } else if !user.isb {
                // D5 says a blocked sender to an unregistered user still gets the block code
                // "when the policy is known"; to keep 480 unambiguous, unregistered recipients
                // get only senders they do not block, and never have ISB.
                unregistered_plain.push(n);
            }
        }
        let seed = dataset.params.seed;
        Self {
            mode,
            dataset,
            mix,
            block_code,
            seed,
            registered,
            with_blocked,
            unregistered_plain,
            churn: None,
        }
    }

    /// Aims `share` of the MESSAGEs at the churned pairs of `table` (and judges every MESSAGE
    /// between a churned pair by the table).
    pub fn with_churn(mut self, table: Arc<ChurnTable>, share: f64) -> Self {
        self.churn = Some((table, share.clamp(0.0, 1.0)));
        self
    }

    pub fn churn_table(&self) -> Option<&Arc<ChurnTable>> {
        self.churn.as_ref().map(|(table, _)| table)
    }

    /// The churned pair index of a MESSAGE from `sender` to `recipient`, if it is one.
    pub fn churn_index(&self, recipient: u32, sender: u32) -> Option<u32> {
        self.churn_table()?.index_of(recipient, sender)
    }

    /// A sender `recipient` does not block in the data set (deterministic per recipient).
    pub fn allowed_sender_of(&self, recipient: u32) -> u32 {
        let mut rng = SplitMix64::for_item(self.seed, 6, u64::from(recipient));
        self.allowed_sender(recipient, &mut rng)
    }

    /// Users the generator registers before a MESSAGE run.
    pub fn registered_users(&self) -> &[u32] {
        &self.registered
    }

    /// Registered users with ISB on: their service settings are published before a MESSAGE run.
    pub fn isb_users(&self) -> Vec<u32> {
        self.registered
            .iter()
            .copied()
            .filter(|&n| self.dataset.user(n).is_some_and(|u| u.isb))
            .collect()
    }

    /// The plan of request `seq`.
    pub fn plan(&self, seq: u64) -> Plan {
        match &self.mode {
            Mode::Message => self.message_plan(seq),
            Mode::Register(users) => self.register_plan(users, seq),
            Mode::Publish(users) => self.publish_plan(users, seq),
            Mode::Raw => Plan {
                kind: Kind::Raw,
                sender: 0,
                recipient: 0,
                decision: Decision::Echo,
            },
            Mode::Mixed(weights) => {
                let total = u64::from(weights.message + weights.register + weights.publish).max(1);
                let pick = SplitMix64::for_item(self.seed, 3, seq).below(total);
                if pick < u64::from(weights.message) || self.registered.is_empty() {
                    self.message_plan(seq)
                } else if pick < u64::from(weights.message + weights.register) {
                    self.register_plan(&self.registered, seq)
                } else {
                    self.publish_plan(&self.registered, seq)
                }
            }
        }
    }

    fn register_plan(&self, users: &[u32], seq: u64) -> Plan {
        let user = users
            .get((seq % users.len().max(1) as u64) as usize)
            .copied()
            .unwrap_or(1);
        Plan {
            kind: Kind::Register,
            sender: user,
            recipient: user,
            decision: Decision::Registered,
        }
    }

    fn publish_plan(&self, users: &[u32], seq: u64) -> Plan {
        let user = users
            .get((seq % users.len().max(1) as u64) as usize)
            .copied()
            .unwrap_or(1);
        Plan {
            kind: Kind::Publish,
            sender: user,
            recipient: user,
            decision: Decision::Published,
        }
    }

    fn message_plan(&self, seq: u64) -> Plan {
        if let Some((table, share)) = &self.churn {
            // A separate stream, so the rest of the plan is the `message` scenario's.
            let mut rng = SplitMix64::for_item(self.seed, 4, seq);
            if rng.next_f64() < *share && !table.is_empty() {
                let i = rng.below(table.len() as u64) as u32;
                if let Some((recipient, sender)) = table.pair(i) {
                    return Plan {
                        kind: Kind::Message,
                        sender,
                        recipient,
                        decision: table.latest_decision(i),
                    };
                }
            }
        }
        let mut rng = SplitMix64::for_item(self.seed, 2, seq);
        let users = self.dataset.user_count();
        let u = rng.next_f64();
        let mix = &self.mix;
        let message = |sender, recipient, decision| Plan {
            kind: Kind::Message,
            sender,
            recipient,
            decision,
        };
        if u < mix.unknown_share {
            // Numbers above the data set are identities nobody knows.
            let recipient = users
                .saturating_add(1)
                .saturating_add(rng.below(u64::from(users)) as u32);
            let sender = rng.below(u64::from(users)) as u32 + 1;
            return message(sender, recipient, Decision::Unknown);
        }
        if u < mix.unknown_share + mix.unregistered_share && !self.unregistered_plain.is_empty() {
            let recipient = pick(&self.unregistered_plain, &mut rng);
            let sender = self.allowed_sender(recipient, &mut rng);
            return message(sender, recipient, Decision::Unregistered);
        }
        if self.registered.is_empty() {
            // Nobody can receive: everything is to unregistered users.
            let recipient = rng.below(u64::from(users)) as u32 + 1;
            return message(
                self.allowed_sender(recipient, &mut rng),
                recipient,
                Decision::Unregistered,
            );
        }
        let blocked_cut = mix.unknown_share + mix.unregistered_share + mix.blocked_share;
        let (sender, recipient) = if u < blocked_cut && !self.with_blocked.is_empty() {
            let recipient = pick(&self.with_blocked, &mut rng);
            let list = self
                .dataset
                .user(recipient)
                .map(|p| p.blocked.as_slice())
                .unwrap_or_default();
            (pick(list, &mut rng), recipient)
        } else {
            let recipient = pick(&self.registered, &mut rng);
            (self.allowed_sender(recipient, &mut rng), recipient)
        };
        message(sender, recipient, self.decide(sender, recipient))
    }

    /// The decision for a MESSAGE from `sender` to registered `recipient` (D1, D11 ISB).
    pub fn decide(&self, sender: u32, recipient: u32) -> Decision {
        match self.dataset.user(recipient) {
            None => Decision::Unknown,
            Some(user) if !user.registered => Decision::Unregistered,
            Some(user) if user.isb || self.dataset.is_blocked(recipient, sender) => {
                Decision::Blocked
            }
            Some(_) => Decision::Relay,
        }
    }

    fn allowed_sender(&self, recipient: u32, rng: &mut SplitMix64) -> u32 {
        let users = u64::from(self.dataset.user_count());
        let mut sender = 1;
        for _ in 0..SENDER_DRAWS {
            sender = rng.below(users) as u32 + 1;
            if sender != recipient && !self.dataset.is_blocked(recipient, sender) {
                break;
            }
        }
        sender
    }
}

fn pick(list: &[u32], rng: &mut SplitMix64) -> u32 {
    list.get(rng.below(list.len().max(1) as u64) as usize)
        .copied()
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::DatasetParams;

    fn workload(mix: MessageMix) -> Workload {
        let mut params = DatasetParams::new(500, 9);
        params.isb_share = 0.02;
        params.unregistered_share = 0.1;
        let set = Arc::new(Dataset::generate(params).expect("dataset"));
        Workload::new(Mode::Message, set, mix, 603)
    }

    #[test]
    fn expectations_follow_the_policy() {
        let w = workload(MessageMix {
            blocked_share: 0.2,
            unknown_share: 0.05,
            unregistered_share: 0.05,
        });
        let mut counts = [0u32; 7];
        for seq in 0..20_000 {
            let plan = w.plan(seq);
            assert_eq!(plan, w.plan(seq), "plans are pure");
            counts[plan.decision.index()] += 1;
            let recipient = w.dataset.user(plan.recipient);
            match plan.decision {
                Decision::Unknown => assert!(recipient.is_none()),
                Decision::Unregistered => assert!(recipient.is_some_and(|u| !u.registered)),
                Decision::Blocked => {
                    let r = recipient.expect("known");
                    assert!(r.registered && (r.isb || r.blocked.contains(&plan.sender)));
                }
                Decision::Relay => {
                    let r = recipient.expect("known");
                    assert!(r.registered && !r.isb && !r.blocked.contains(&plan.sender));
                    assert_ne!(plan.sender, plan.recipient);
                }
                other => panic!("unexpected decision {other:?}"),
            }
        }
        // Blocked share is at least the configured 20% (ISB recipients add a little).
        let blocked = f64::from(counts[Decision::Blocked.index()]) / 20_000.0;
        assert!((0.19..0.26).contains(&blocked), "blocked share {blocked}");
        let unknown = f64::from(counts[Decision::Unknown.index()]) / 20_000.0;
        assert!((0.04..0.06).contains(&unknown), "unknown share {unknown}");
        assert!(counts[Decision::Unregistered.index()] > 500);
    }

    #[test]
    fn expected_codes() {
        assert_eq!(Decision::Blocked.expected_code(603), 603);
        assert_eq!(Decision::Blocked.expected_code(403), 403);
        assert_eq!(Decision::Relay.expected_code(603), 200);
        assert_eq!(Decision::Unknown.expected_code(603), 404);
        assert_eq!(Decision::Unregistered.expected_code(603), 480);
    }

    #[test]
    fn mixed_mode_uses_all_kinds() {
        let mut w = workload(MessageMix {
            blocked_share: 0.2,
            unknown_share: 0.0,
            unregistered_share: 0.0,
        });
        w.mode = Mode::Mixed(KindMix {
            message: 8,
            register: 1,
            publish: 1,
        });
        let mut kinds = [0u32; 3];
        for seq in 0..1000 {
            match w.plan(seq).kind {
                Kind::Message => kinds[0] += 1,
                Kind::Register => kinds[1] += 1,
                Kind::Publish => kinds[2] += 1,
                Kind::Raw => panic!("raw in mixed"),
            }
        }
        assert!(
            kinds[0] > 700 && kinds[1] > 50 && kinds[2] > 50,
            "{kinds:?}"
        );
    }
}
