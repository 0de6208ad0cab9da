//! The churned pairs and what each MESSAGE between them may get. A pair (recipient, sender) has
//! a history of changes; each change opens a *propagation window* from the moment its XCAP
//! request is sent until the first answer that shows the new state arrives (a MESSAGE sent
//! after the PUT/DELETE went out and answered with the new code). A MESSAGE whose life
//! [sent, answered] touches a window may get the old or the new answer ("in propagation");
//! outside windows only the state in force is right.
//!
//! ```text
//!  stable(old) --XCAP request sent--> window(old|new) --first new answer seen--> stable(new)
//!                                        ├─ non-2xx answer --> stable(old) (change dropped)
//!                                        └─ I/O error or never seen --> poisoned (old|new forever)
//! ```
//!
//! The window starts when the request is *sent*, not when its 200 arrives: the GLMS commits,
//! then answers and notifies at once, so the NOTIFY can beat the 200 to the IM Server.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::dataset::Dataset;
use crate::rng::SplitMix64;
use crate::workload::Decision;

/// What one MESSAGE to a churned pair may be answered, as judged when its answer arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Judgement {
    /// The answer is one the pair's history allows.
    pub ok: bool,
    /// The code to compare against: the answer itself when `ok`, else the state in force.
    pub expected: u16,
    pub decision: Decision,
    /// Both answers were acceptable (the MESSAGE overlapped a propagation window).
    pub in_propagation: bool,
    /// This answer was the first to show the pending change's new state.
    pub observed_now: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Change {
    sent_ns: u64,
    /// When the first answer showing `blocked_after` arrived; None while pending (or forever,
    /// for a poisoned pair).
    observed_ns: Option<u64>,
    blocked_after: bool,
}

#[derive(Debug, Default)]
struct PairState {
    /// The state before the first change still kept in `changes`.
    base_blocked: bool,
    changes: Vec<Change>,
    busy: bool,
    poisoned: bool,
}

impl PairState {
    fn latest_blocked(&self) -> bool {
        self.changes
            .last()
            .map_or(self.base_blocked, |c| c.blocked_after)
    }

    /// Folds changes whose window closed before `horizon_ns` into the base state: no MESSAGE
    /// still in flight can overlap them.
    fn prune(&mut self, horizon_ns: u64) {
        let done = self
            .changes
            .iter()
            .take_while(|c| c.observed_ns.is_some_and(|o| o < horizon_ns))
            .count();
        if let Some(last) = done.checked_sub(1).and_then(|i| self.changes.get(i)) {
            self.base_blocked = last.blocked_after;
        }
        self.changes.drain(..done);
    }
}

/// The pool of churned pairs, shared by the sender threads, the recipients and the changers.
#[derive(Debug)]
pub struct ChurnTable {
    epoch: Instant,
    pairs: Vec<(u32, u32)>,
    index: HashMap<(u32, u32), u32>,
    states: Vec<Mutex<PairState>>,
    cursor: Mutex<usize>,
    block_code: u16,
    /// Windows that closed longer ago than this are folded away (at least the MESSAGE timeout).
    prune_after_ns: u64,
}

impl ChurnTable {
    /// Picks up to `wanted` distinct pairs from the data set: about half already blocked (their
    /// first change unblocks), half not (their first change blocks). Recipients are registered
    /// users without ISB, so the only answers are relay (200) or the block code. Deterministic.
    pub fn build(dataset: &Dataset, wanted: usize, block_code: u16, prune_after_ns: u64) -> Self {
        let eligible: Vec<u32> = (1..=dataset.user_count())
            .filter(|&n| dataset.user(n).is_some_and(|u| u.registered && !u.isb))
            .collect();
        let with_blocked: Vec<u32> = eligible
            .iter()
            .copied()
            .filter(|&n| dataset.user(n).is_some_and(|u| !u.blocked.is_empty()))
            .collect();
        let users = u64::from(dataset.user_count());
        let seed = dataset.params.seed;
        let mut pairs = Vec::with_capacity(wanted);
        let mut index = HashMap::with_capacity(wanted);
        let mut initial = Vec::with_capacity(wanted);
        // Bounded: 8 draws per wanted pair (duplicates are skipped).
        for draw in 0..wanted as u64 * 8 {
            if pairs.len() >= wanted || eligible.is_empty() {
                break;
            }
            let mut rng = SplitMix64::for_item(seed, 5, draw);
            let (recipient, sender) = if draw % 2 == 0 && !with_blocked.is_empty() {
                let recipient = with_blocked[rng.below(with_blocked.len() as u64) as usize];
                let list = dataset
                    .user(recipient)
                    .map(|u| u.blocked.as_slice())
                    .unwrap_or_default();
                let Some(&sender) = list.get(rng.below(list.len().max(1) as u64) as usize) else {
                    continue;
                };
                (recipient, sender)
            } else {
                let recipient = eligible[rng.below(eligible.len() as u64) as usize];
                let sender = rng.below(users) as u32 + 1;
                (recipient, sender)
            };
            if sender == recipient || index.contains_key(&(recipient, sender)) {
                continue;
            }
            index.insert((recipient, sender), pairs.len() as u32);
            pairs.push((recipient, sender));
            initial.push(dataset.is_blocked(recipient, sender));
        }
        Self {
            epoch: Instant::now(),
            states: initial
                .into_iter()
                .map(|blocked| {
                    Mutex::new(PairState {
                        base_blocked: blocked,
                        ..PairState::default()
                    })
                })
                .collect(),
            pairs,
            index,
            cursor: Mutex::new(0),
            block_code,
            prune_after_ns,
        }
    }

    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Nanoseconds since the table's epoch: the one clock every party uses.
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Converts an instant to the table's clock.
    pub fn ns_of(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// (recipient, sender) of pair `i`.
    pub fn pair(&self, i: u32) -> Option<(u32, u32)> {
        self.pairs.get(i as usize).copied()
    }

    pub fn index_of(&self, recipient: u32, sender: u32) -> Option<u32> {
        self.index.get(&(recipient, sender)).copied()
    }

    fn state(&self, i: u32) -> Option<std::sync::MutexGuard<'_, PairState>> {
        // A poisoned mutex only means another thread panicked; the state is still usable.
        self.states
            .get(i as usize)
            .map(|m| m.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Sets the state the GLMS reports before the run (a previous run may have changed it).
    /// Returns true when it differs from the data set's.
    pub fn reconcile(&self, i: u32, blocked: bool) -> bool {
        let Some(mut state) = self.state(i) else {
            return false;
        };
        let differs = state.base_blocked != blocked;
        state.base_blocked = blocked;
        state.changes.clear();
        differs
    }

    /// The newest state of pair `i` (the target of a pending change).
    pub fn latest_decision(&self, i: u32) -> Decision {
        match self.state(i).map(|s| s.latest_blocked()) {
            Some(true) => Decision::Blocked,
            _ => Decision::Relay,
        }
    }

    /// Takes the next idle, healthy pair for a change (round robin). None if all are busy.
    pub fn acquire(&self) -> Option<u32> {
        let n = self.pairs.len();
        let mut cursor = self
            .cursor
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for step in 0..n {
            let i = ((*cursor + step) % n) as u32;
            if let Some(mut state) = self.state(i) {
                if !state.busy && !state.poisoned {
                    state.busy = true;
                    *cursor = (i as usize + 1) % n;
                    return Some(i);
                }
            }
        }
        None
    }

    /// Opens the window of a change of pair `i` sent at `sent_ns`; returns the new state
    /// (blocked or not). Call it before the XCAP request is written.
    pub fn begin(&self, i: u32, sent_ns: u64) -> bool {
        let Some(mut state) = self.state(i) else {
            return false;
        };
        state.prune(sent_ns.saturating_sub(self.prune_after_ns));
        let blocked_after = !state.latest_blocked();
        state.changes.push(Change {
            sent_ns,
            observed_ns: None,
            blocked_after,
        });
        blocked_after
    }

    /// The GLMS refused the change (a definite non-2xx): it never happened.
    pub fn abort(&self, i: u32) {
        if let Some(mut state) = self.state(i) {
            if state
                .changes
                .last()
                .is_some_and(|c| c.observed_ns.is_none())
            {
                state.changes.pop();
            }
        }
    }

    /// The change's outcome is unknown (I/O error) or it was never seen: both answers stay
    /// acceptable for this pair, and it is not changed again.
    pub fn poison(&self, i: u32) {
        if let Some(mut state) = self.state(i) {
            state.poisoned = true;
        }
    }

    pub fn release(&self, i: u32) {
        if let Some(mut state) = self.state(i) {
            state.busy = false;
        }
    }

    pub fn observed_ns(&self, i: u32) -> Option<u64> {
        self.state(i)?.changes.last()?.observed_ns
    }

    pub fn poisoned_pairs(&self) -> usize {
        (0..self.pairs.len() as u32)
            .filter(|&i| self.state(i).is_some_and(|s| s.poisoned))
            .count()
    }

    fn code_of(&self, blocked: bool) -> u16 {
        if blocked { self.block_code } else { 200 }
    }

    /// Judges answer `code` to a MESSAGE for pair `i` sent at `sent_ns` and answered at
    /// `answered_ns` (table clock), and records it as the first sight of a pending change's
    /// new state when it is one.
    pub fn judge(&self, i: u32, sent_ns: u64, answered_ns: u64, code: u16) -> Judgement {
        let Some(mut state) = self.state(i) else {
            return Judgement {
                ok: false,
                expected: 0,
                decision: Decision::Unknown,
                in_propagation: false,
                observed_now: false,
            };
        };
        let (mut may_block, mut may_relay) = (false, false);
        let mut current = state.base_blocked;
        let mut overlapped = false;
        for change in &state.changes {
            if change.sent_ns > answered_ns {
                break;
            }
            // A poisoned pair's pending window never closes.
            let closed_ns = change.observed_ns.unwrap_or(u64::MAX);
            if closed_ns < sent_ns {
                current = change.blocked_after;
                continue;
            }
            overlapped = true;
            for blocked in [current, change.blocked_after] {
                if blocked {
                    may_block = true;
                } else {
                    may_relay = true;
                }
            }
            current = change.blocked_after;
        }
        if !overlapped {
            may_block = current;
            may_relay = !current;
        }
        let ok = (code == self.block_code && may_block) || (code == 200 && may_relay);
        let mut observed_now = false;
        if ok && !state.poisoned {
            let code_after = state.changes.last().map(|c| self.code_of(c.blocked_after));
            if let Some(last) = state.changes.last_mut() {
                if last.observed_ns.is_none() && sent_ns >= last.sent_ns && code_after == Some(code)
                {
                    last.observed_ns = Some(answered_ns);
                    observed_now = true;
                }
            }
        }
        let shown_blocked = if ok { code == self.block_code } else { current };
        Judgement {
            ok,
            expected: if ok { code } else { self.code_of(current) },
            decision: if shown_blocked {
                Decision::Blocked
            } else {
                Decision::Relay
            },
            in_propagation: may_block && may_relay,
            observed_now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::DatasetParams;

    fn table(pairs: usize) -> ChurnTable {
        let mut params = DatasetParams::new(200, 3);
        params.max_blocked = 10;
        params.isb_share = 0.05;
        params.unregistered_share = 0.05;
        let set = Dataset::generate(params).expect("dataset");
        ChurnTable::build(&set, pairs, 603, 10_000)
    }

    #[test]
    fn pool_is_deterministic_mixed_and_eligible() {
        let mut params = DatasetParams::new(200, 3);
        params.max_blocked = 10;
        params.isb_share = 0.05;
        params.unregistered_share = 0.05;
        let set = Dataset::generate(params).expect("dataset");
        let a = ChurnTable::build(&set, 60, 603, 0);
        let b = ChurnTable::build(&set, 60, 603, 0);
        assert_eq!(a.pairs, b.pairs);
        assert_eq!(a.len(), 60);
        let blocked = a
            .pairs
            .iter()
            .filter(|&&(r, s)| set.is_blocked(r, s))
            .count();
        assert!(
            (20..=40).contains(&blocked),
            "{blocked} of 60 start blocked"
        );
        for (i, &(r, s)) in a.pairs.iter().enumerate() {
            assert_ne!(r, s);
            let user = set.user(r).expect("recipient");
            assert!(user.registered && !user.isb);
            assert_eq!(a.index_of(r, s), Some(i as u32));
        }
    }

    /// The pair's state at every instant, as the doc comment states it.
    #[test]
    fn windows_decide_what_is_acceptable() {
        let t = table(4);
        let i = (0..4)
            .find(|&i| t.latest_decision(i) == Decision::Relay)
            .expect("an unblocked pair");
        let relay = |s, a, code| t.judge(i, s, a, code);
        // Stable: only 200.
        assert!(relay(10, 20, 200).ok && !relay(10, 20, 200).in_propagation);
        let wrong = relay(10, 20, 603);
        assert!(!wrong.ok);
        assert_eq!(wrong.expected, 200);
        // The block PUT goes out at 100.
        assert!(t.begin(i, 100));
        assert_eq!(t.latest_decision(i), Decision::Blocked);
        // Answered before the PUT went out: old only.
        assert!(!relay(50, 90, 603).ok);
        // Overlapping the window: both, and an old answer does not close it.
        let old = relay(90, 120, 200);
        assert!(old.ok && old.in_propagation && !old.observed_now);
        // A 603 to a MESSAGE sent before the PUT proves nothing about its timing.
        let early = relay(95, 130, 603);
        assert!(early.ok && !early.observed_now);
        assert_eq!(t.observed_ns(i), None);
        // The first 603 to a MESSAGE sent after the PUT closes the window at its arrival.
        let first = relay(140, 150, 603);
        assert!(first.ok && first.observed_now);
        assert_eq!(t.observed_ns(i), Some(150));
        assert!(!relay(141, 155, 603).observed_now, "only the first");
        // Sent after the first 603 arrived: only 603.
        let late_relay = relay(160, 170, 200);
        assert!(!late_relay.ok);
        assert_eq!(late_relay.expected, 603);
        // Sent before it, answered after: still in the window.
        assert!(relay(145, 200, 200).ok);
        // Unblock at 300; never observed -> poisoned, both answers stay acceptable.
        assert!(!t.begin(i, 300));
        t.poison(i);
        assert!(relay(400, 410, 200).ok && relay(500, 510, 603).ok);
        assert!(relay(500, 510, 603).in_propagation);
        assert!(!relay(500, 510, 480).ok, "other codes are never acceptable");
        assert_eq!(t.poisoned_pairs(), 1);
    }

    #[test]
    fn refused_changes_vanish_and_pairs_are_lent_once() {
        let t = table(2);
        let a = t.acquire().expect("first");
        let b = t.acquire().expect("second");
        assert_ne!(a, b);
        assert_eq!(t.acquire(), None, "both busy");
        let before = t.latest_decision(a);
        t.begin(a, 10);
        t.abort(a);
        assert_eq!(t.latest_decision(a), before);
        let code = if before == Decision::Blocked {
            603
        } else {
            200
        };
        assert!(t.judge(a, 20, 30, code).ok);
        assert!(!t.judge(a, 20, 30, 803 - code).ok);
        t.release(a);
        assert_eq!(t.acquire(), Some(a));
        t.poison(b);
        t.release(b);
        t.release(a);
        assert_eq!(t.acquire(), Some(a), "poisoned pairs are not lent");
    }

    #[test]
    fn closed_windows_are_pruned_into_the_base() {
        let t = table(1);
        let start = t.latest_decision(0) == Decision::Blocked;
        let code = |blocked: bool| if blocked { 603 } else { 200 };
        // Three flips, each observed 5 ns after its PUT.
        for k in 0..3u64 {
            let at = 100 + k * 100;
            t.begin(0, at);
            let after = (k % 2 == 0) != start;
            assert!(t.judge(0, at + 1, at + 5, code(after)).observed_now);
        }
        // Prune horizon 10_000 ns: a change sent much later folds the three into the base.
        t.begin(0, 1_000_000);
        let state = t.state(0).expect("pair");
        assert_eq!(state.changes.len(), 1);
        assert_eq!(state.base_blocked, !start, "three flips");
    }
}
