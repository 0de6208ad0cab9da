//! Requests in flight: a slab indexed by the slot number carried in the Call-ID, and a FIFO of
//! deadlines (sends are in time order, so the FIFO is sorted) for timeouts.
#![forbid(unsafe_code)]

use std::collections::VecDeque;

use crate::workload::Plan;

/// One outstanding request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub seq: u64,
    pub intended_ns: u64,
    /// When the first try actually left (engine clock).
    pub sent_ns: u64,
    pub plan: Plan,
    pub conn: u16,
    pub attempt: u8,
}

#[derive(Debug)]
pub struct Inflight {
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    deadlines: VecDeque<(u64, u32, u64)>,
    live: usize,
    capacity: usize,
}

impl Inflight {
    /// At most `capacity` requests in flight.
    pub fn new(capacity: usize) -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            deadlines: VecDeque::new(),
            live: 0,
            capacity: capacity.max(1),
        }
    }

    pub fn live(&self) -> usize {
        self.live
    }

    /// Stores `slot`, expiring at `deadline_ns`; None when full.
    pub fn insert(&mut self, slot: Slot, deadline_ns: u64) -> Option<u32> {
        let index = match self.free.pop() {
            Some(index) => index,
            None if self.slots.len() < self.capacity => {
                self.slots.push(None);
                u32::try_from(self.slots.len() - 1).ok()?
            }
            None => return None,
        };
        self.deadlines.push_back((deadline_ns, index, slot.seq));
        self.slots[index as usize] = Some(slot);
        self.live += 1;
        Some(index)
    }

    /// The live request in `index` if it is request `seq` (a stale or forged slot number finds
    /// nothing).
    pub fn get_mut(&mut self, index: u32, seq: u64) -> Option<&mut Slot> {
        self.slots
            .get_mut(index as usize)?
            .as_mut()
            .filter(|s| s.seq == seq)
    }

    /// The live request in `index`, whatever its seq.
    pub fn get_by_index(&self, index: u32) -> Option<Slot> {
        *self.slots.get(index as usize)?
    }

    pub fn remove(&mut self, index: u32) -> Option<Slot> {
        let slot = self.slots.get_mut(index as usize)?.take()?;
        self.free.push(index);
        self.live -= 1;
        Some(slot)
    }

    /// Removes and returns (through `expired`) every request whose deadline is at or before
    /// `now_ns`.
    pub fn expire(&mut self, now_ns: u64, mut expired: impl FnMut(Slot)) {
        while let Some(&(deadline_ns, index, seq)) = self.deadlines.front() {
            if deadline_ns > now_ns {
                break;
            }
            self.deadlines.pop_front();
            if self
                .slots
                .get(index as usize)
                .and_then(Option::as_ref)
                .is_some_and(|s| s.seq == seq)
            {
                if let Some(slot) = self.remove(index) {
                    expired(slot);
                }
            }
        }
    }

    /// Empties the table, returning every request still outstanding.
    pub fn drain(&mut self, mut expired: impl FnMut(Slot)) {
        self.expire(u64::MAX, &mut expired);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{Decision, Kind};

    fn slot(seq: u64) -> Slot {
        let plan = Plan {
            kind: Kind::Message,
            sender: 1,
            recipient: 2,
            decision: Decision::Relay,
        };
        Slot {
            seq,
            intended_ns: seq * 10,
            sent_ns: seq * 10,
            plan,
            conn: 0,
            attempt: 0,
        }
    }

    #[test]
    fn insert_find_remove_reuse() {
        let mut table = Inflight::new(2);
        let a = table.insert(slot(1), 100).expect("room");
        let b = table.insert(slot(2), 200).expect("room");
        assert_eq!(table.insert(slot(3), 300), None, "capacity bound");
        assert!(table.get_mut(a, 2).is_none(), "wrong seq for slot");
        assert_eq!(table.get_mut(b, 2).map(|s| s.seq), Some(2));
        assert_eq!(table.remove(a).map(|s| s.seq), Some(1));
        assert_eq!(table.remove(a), None);
        let c = table.insert(slot(4), 400).expect("reused");
        assert_eq!(c, a);
        assert_eq!(table.live(), 2);
    }

    #[test]
    fn expiry_skips_completed_and_reused_slots() {
        let mut table = Inflight::new(8);
        let a = table.insert(slot(1), 100).expect("room");
        let _b = table.insert(slot(2), 200).expect("room");
        table.remove(a);
        let _c = table.insert(slot(3), 300).expect("room"); // reuses slot a with a later deadline
        let mut expired = Vec::new();
        table.expire(250, |s| expired.push(s.seq));
        assert_eq!(
            expired,
            vec![2],
            "seq 1 completed; slot reuse must not expire seq 3 early"
        );
        table.drain(|s| expired.push(s.seq));
        assert_eq!(expired, vec![2, 3]);
        assert_eq!(table.live(), 0);
    }
}
