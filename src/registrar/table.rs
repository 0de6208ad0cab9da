//! The binding table: REGISTER processing (RFC 3261 §10.3), expiry, persistence hooks.

#![forbid(unsafe_code)]

use std::collections::{BTreeSet, HashMap, HashSet};

use super::RegistrarConfig;
use super::contact::{has_oma_im_feature_tag, strip_angles, uri_key};
use super::error::RegisterError;
use super::types::{
    Aor, Binding, BindingTarget, ContactInput, Contacts, CurrentBinding, RegisterOk,
    RegisterRequest, RegistrarEvent,
};

/// Longest AoR, Call-ID, contact URI and contact parameter text accepted.
const MAX_AOR_BYTES: usize = 512;
const MAX_CALL_ID_BYTES: usize = 256;
const MAX_URI_BYTES: usize = 1024;
const MAX_PARAMS_BYTES: usize = 1024;
/// Most contacts one REGISTER may list, whatever the per-AoR limit.
const MAX_CONTACTS_PER_REQUEST: usize = 64;
/// Retry-After when the whole table is full.
const TABLE_FULL_RETRY_AFTER_S: u32 = 60;

/// [`Registrar::expire`] handles at most this many AoRs per call so one call never stalls the
/// slow path; call again while [`Registrar::next_wakeup_ms`] is not in the future.
pub const EXPIRE_BATCH_AORS: usize = 10_000;

#[derive(Debug, Default)]
struct Record {
    bindings: Vec<Binding>,
    /// The target last announced in a `TargetChanged`.
    target: Option<BindingTarget>,
    /// The earliest `expires_at_ms` of `bindings`, as entered in `Registrar::deadlines`.
    wake_ms: Option<u64>,
}

/// The registrar. See the module documentation for the per-AoR state machine.
#[derive(Debug)]
pub struct Registrar {
    config: RegistrarConfig,
    max_aors: usize,
    records: HashMap<Aor, Record>,
    /// One entry per AoR: its earliest binding expiry. O(log n) per change, no scans.
    deadlines: BTreeSet<(u64, Aor)>,
    dirty: HashSet<Aor>,
    next_seq: u64,
}

impl Registrar {
    pub fn new(config: RegistrarConfig) -> Self {
        Self {
            config,
            max_aors: 10_000_000,
            records: HashMap::new(),
            deadlines: BTreeSet::new(),
            dirty: HashSet::new(),
            next_seq: 1,
        }
    }

    /// Caps the number of AoRs held (SPEC D12); a REGISTER for a new AoR past it gets 503.
    pub fn with_max_aors(mut self, max_aors: usize) -> Self {
        self.max_aors = max_aors;
        self
    }

    pub fn config(&self) -> &RegistrarConfig {
        &self.config
    }

    /// Processes a REGISTER (RFC 3261 §10.3 steps 6 to 8; steps 1 to 5, authentication and the
    /// To-to-AoR mapping, are the caller's). Atomic: on error nothing changed.
    pub fn register(
        &mut self,
        now_ms: u64,
        mut req: RegisterRequest<'_>,
    ) -> Result<RegisterOk, RegisterError> {
        if req.aor.is_empty() || req.aor.len() > MAX_AOR_BYTES {
            return Err(RegisterError::BadAor);
        }
        if req.call_id.is_empty() || req.call_id.len() > MAX_CALL_ID_BYTES {
            return Err(RegisterError::BadCallId);
        }
        let contacts = normalise_contacts(std::mem::replace(&mut req.contacts, Contacts::None))?;

        let is_new_aor = !self.records.contains_key(req.aor);
        let before: Vec<Binding> = self.bindings(req.aor).to_vec();
        // Bindings past their time are gone even if `expire` has not swept them yet.
        let mut next: Vec<Binding> = before
            .iter()
            .filter(|b| !b.is_expired(now_ms))
            .cloned()
            .collect();

        match &contacts {
            Contacts::None => {}
            Contacts::Star => self.apply_star(&req, &mut next)?,
            Contacts::List(list) => self.apply_list(now_ms, &req, list, &mut next)?,
        }

        if next.len() > self.config.max_contacts_per_aor && next.len() > before.len() {
            let retry_after_s = before
                .iter()
                .map(|b| b.remaining_s(now_ms))
                .min()
                .unwrap_or(TABLE_FULL_RETRY_AFTER_S)
                .max(1);
            return Err(RegisterError::TooManyContacts { retry_after_s });
        }
        if is_new_aor && !next.is_empty() && self.records.len() >= self.max_aors {
            return Err(RegisterError::TableFull {
                retry_after_s: TABLE_FULL_RETRY_AFTER_S,
            });
        }

        let aor = match self.records.get_key_value(req.aor) {
            Some((key, _)) => key.clone(),
            None => Aor::new(req.aor),
        };
        let mut events = Vec::new();
        if next != before {
            self.commit(&aor, next, &mut events);
        }
        let bindings = self.current(req.aor, now_ms);
        Ok(RegisterOk { bindings, events })
    }

    /// RFC 3261 §10.3 step 6: `*` removes every binding, unless one of them was set by this
    /// Call-ID with a CSeq not lower than the request's.
    fn apply_star(
        &mut self,
        req: &RegisterRequest<'_>,
        next: &mut Vec<Binding>,
    ) -> Result<(), RegisterError> {
        if req.expires_header_s != Some(0) {
            return Err(RegisterError::StarWithNonZeroExpires);
        }
        if next
            .iter()
            .any(|b| b.call_id == req.call_id && req.cseq <= b.cseq)
        {
            return Err(RegisterError::OutOfOrderCseq);
        }
        next.clear();
        Ok(())
    }

    /// RFC 3261 §10.3 step 7, for each contact: compute the expiry, then add, update or remove.
    fn apply_list(
        &mut self,
        now_ms: u64,
        req: &RegisterRequest<'_>,
        list: &[ContactInput],
        next: &mut Vec<Binding>,
    ) -> Result<(), RegisterError> {
        // Bindings this request already wrote carry a seq from here on; a contact listed twice
        // must not trip the CSeq check against its own first occurrence.
        let first_seq = self.next_seq;
        for contact in list {
            let expires_s = self.expiry_for(req, contact)?;
            let uri = strip_angles(&contact.uri);
            let key = uri_key(uri);
            let found = next.iter().position(|b| uri_key(&b.contact_uri) == key);
            if let Some(i) = found {
                let stored = &next[i];
                // Same Call-ID: only a higher CSeq may touch the binding; different Call-ID
                // replaces it (the UA rebooted or another UA took the contact).
                if stored.seq < first_seq
                    && stored.call_id == req.call_id
                    && req.cseq <= stored.cseq
                {
                    return Err(RegisterError::OutOfOrderCseq);
                }
            }
            if expires_s == 0 {
                if let Some(i) = found {
                    next.remove(i);
                }
                continue;
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            let binding = Binding {
                contact_uri: uri.to_owned(),
                params: contact.params.clone(),
                q_milli: contact.q_milli,
                oma_im: has_oma_im_feature_tag(&contact.params),
                call_id: req.call_id.to_owned(),
                cseq: req.cseq,
                expires_at_ms: now_ms.saturating_add(u64::from(expires_s) * 1000),
                updated_ms: now_ms,
                seq,
                source_addr: req.source.addr,
                tcp: req.source.tcp,
                conn: req.source.conn,
                third_party: req.third_party,
            };
            match found {
                Some(i) => next[i] = binding,
                None => next.push(binding),
            }
        }
        Ok(())
    }

    /// The lifetime granted to one contact.
    fn expiry_for(
        &self,
        req: &RegisterRequest<'_>,
        contact: &ContactInput,
    ) -> Result<u32, RegisterError> {
        if req.third_party {
            // SPEC D9 / §2 item 7: the core's Expires is the lifetime it granted the UE (0 on
            // de-registration) and is taken as sent; the contact from the embedded message says
            // what the UE asked for, so it only counts when the core sent no Expires.
            return Ok(req
                .expires_header_s
                .or(contact.expires_s)
                .unwrap_or(self.config.default_expires_s));
        }
        // RFC 3261 §10.3 step 7: the contact's expires parameter, else the Expires header, else
        // the local default.
        let requested = contact
            .expires_s
            .or(req.expires_header_s)
            .unwrap_or(self.config.default_expires_s);
        if requested != 0 && requested < self.config.min_expires_s {
            // RFC 3261 §10.3 step 7 / §21.4.17: 423 with Min-Expires.
            return Err(RegisterError::IntervalTooBrief {
                min_expires_s: self.config.min_expires_s,
            });
        }
        // RFC 3261 §10.3 step 7: the registrar MAY shorten the interval.
        Ok(requested.min(self.config.max_expires_s))
    }

    /// Stores the new binding list of `aor` and reports what changed.
    fn commit(&mut self, aor: &Aor, next: Vec<Binding>, events: &mut Vec<RegistrarEvent>) {
        let record = self.records.entry(aor.clone()).or_default();
        let was_bound = !record.bindings.is_empty();
        let target = best(&next).map(Binding::target);
        let wake_ms = next.iter().map(|b| b.expires_at_ms).min();
        record.bindings = next;

        if !was_bound && wake_ms.is_some() {
            events.push(RegistrarEvent::FirstBinding { aor: aor.clone() });
        }
        if record.target != target {
            record.target = target.clone();
            events.push(RegistrarEvent::TargetChanged {
                aor: aor.clone(),
                target,
            });
        }
        if was_bound && wake_ms.is_none() {
            events.push(RegistrarEvent::LastBindingGone { aor: aor.clone() });
        }
        if record.wake_ms != wake_ms {
            if let Some(old) = record.wake_ms {
                self.deadlines.remove(&(old, aor.clone()));
            }
            if let Some(new) = wake_ms {
                self.deadlines.insert((new, aor.clone()));
            }
            record.wake_ms = wake_ms;
        }
        if wake_ms.is_none() {
            self.records.remove(aor);
        }
        self.dirty.insert(aor.clone());
    }

    /// Removes the bindings whose time has come. Handles at most [`EXPIRE_BATCH_AORS`] AoRs.
    pub fn expire(&mut self, now_ms: u64) -> Vec<RegistrarEvent> {
        let mut events = Vec::new();
        for _ in 0..EXPIRE_BATCH_AORS {
            let Some((wake_ms, aor)) = self.deadlines.first().cloned() else {
                break;
            };
            if wake_ms > now_ms {
                break;
            }
            let next: Vec<Binding> = self
                .records
                .get(aor.as_str())
                .map(|r| {
                    r.bindings
                        .iter()
                        .filter(|b| !b.is_expired(now_ms))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            if self.records.contains_key(aor.as_str()) {
                self.commit(&aor, next, &mut events);
            } else {
                // Not reachable while the invariants hold; drop the stray entry either way.
                self.deadlines.remove(&(wake_ms, aor));
            }
        }
        events
    }

    /// When [`Registrar::expire`] next has work: the earliest binding expiry.
    pub fn next_wakeup_ms(&self) -> Option<u64> {
        self.deadlines.first().map(|(wake_ms, _)| *wake_ms)
    }

    /// The stored bindings of an AoR (empty when it has none). May include bindings past their
    /// time that `expire` has not swept yet; [`Registrar::current`] filters them.
    pub fn bindings(&self, aor: &str) -> &[Binding] {
        self.records.get(aor).map_or(&[], |r| r.bindings.as_slice())
    }

    /// The live bindings of an AoR with their remaining lifetimes, as a 200 lists them.
    pub fn current(&self, aor: &str, now_ms: u64) -> Vec<CurrentBinding> {
        self.bindings(aor)
            .iter()
            .filter(|b| !b.is_expired(now_ms))
            .map(|b| CurrentBinding {
                contact_uri: b.contact_uri.clone(),
                expires_s: b.remaining_s(now_ms),
                q_milli: b.q_milli,
                oma_im: b.oma_im,
            })
            .collect()
    }

    /// The relay target of an AoR (SPEC D10), as last announced.
    pub fn target(&self, aor: &str) -> Option<&BindingTarget> {
        self.records.get(aor).and_then(|r| r.target.as_ref())
    }

    pub fn aor_count(&self) -> usize {
        self.records.len()
    }

    /// Every AoR with its bindings, for a full snapshot to the store.
    pub fn snapshot(&self) -> impl Iterator<Item = (&Aor, &[Binding])> {
        self.records
            .iter()
            .map(|(aor, r)| (aor, r.bindings.as_slice()))
    }

    /// Drains the AoRs changed since the last call; the store writes `bindings(aor)` for each
    /// (an empty slice means the AoR is gone).
    pub fn changed_aors(&mut self) -> impl Iterator<Item = Aor> + '_ {
        self.dirty.drain()
    }

    /// Loads persisted bindings, dropping those already expired at `now_ms`. Returns the events a
    /// fresh registration would have produced (FirstBinding, TargetChanged) so the caller
    /// re-subscribes and republishes targets exactly as for new registrations. AoRs that lost
    /// bindings are marked changed so the store rewrites them.
    pub fn restore(
        &mut self,
        persisted: impl IntoIterator<Item = (Aor, Vec<Binding>)>,
        now_ms: u64,
    ) -> Vec<RegistrarEvent> {
        let mut events = Vec::new();
        for (aor, bindings) in persisted {
            let stored = bindings.len();
            let live: Vec<Binding> = bindings
                .into_iter()
                .filter(|b| !b.is_expired(now_ms))
                .collect();
            if let Some(max_seq) = live.iter().map(|b| b.seq).max() {
                self.next_seq = self.next_seq.max(max_seq.saturating_add(1));
            }
            let dropped = live.len() != stored;
            if live.is_empty() && !self.records.contains_key(aor.as_str()) {
                if dropped {
                    self.dirty.insert(aor);
                }
                continue;
            }
            self.commit(&aor, live, &mut events);
            if !dropped {
                self.dirty.remove(aor.as_str());
            }
        }
        events
    }

    /// Checks the internal invariants; for tests and debug builds after each change.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.deadlines.len() != self.records.len() {
            return Err(format!(
                "{} deadlines for {} records",
                self.deadlines.len(),
                self.records.len()
            ));
        }
        for (aor, record) in &self.records {
            let wake_ms = record.bindings.iter().map(|b| b.expires_at_ms).min();
            if wake_ms.is_none() {
                return Err(format!("{aor}: record without bindings"));
            }
            if record.wake_ms != wake_ms {
                return Err(format!("{aor}: wake_ms out of date"));
            }
            if let Some(w) = wake_ms
                && !self.deadlines.contains(&(w, aor.clone()))
            {
                return Err(format!("{aor}: missing from the expiry index"));
            }
            if record.target != best(&record.bindings).map(Binding::target) {
                return Err(format!("{aor}: stale target"));
            }
        }
        Ok(())
    }
}

/// SPEC D10: the most recent binding among those with the highest q.
fn best(bindings: &[Binding]) -> Option<&Binding> {
    bindings.iter().max_by_key(|b| (b.q_rank(), b.seq))
}

/// Checks the Contact list's shape (RFC 3261 §10.3 step 6 for `*`) and each contact's size.
fn normalise_contacts(contacts: Contacts) -> Result<Contacts, RegisterError> {
    let Contacts::List(list) = contacts else {
        return Ok(contacts);
    };
    let stars = list.iter().filter(|c| strip_angles(&c.uri) == "*").count();
    if stars > 0 {
        return if list.len() == 1 {
            Ok(Contacts::Star)
        } else {
            Err(RegisterError::StarNotAlone)
        };
    }
    if list.len() > MAX_CONTACTS_PER_REQUEST {
        return Err(RegisterError::TooManyContacts { retry_after_s: 1 });
    }
    for contact in &list {
        let uri = strip_angles(&contact.uri);
        if uri.is_empty() || uri.len() > MAX_URI_BYTES || contact.params.len() > MAX_PARAMS_BYTES {
            return Err(RegisterError::BadContact);
        }
        if contact.q_milli.is_some_and(|q| q > 1000) {
            return Err(RegisterError::BadQ);
        }
    }
    Ok(Contacts::List(list))
}
