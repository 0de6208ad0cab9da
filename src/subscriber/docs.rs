//! The subscriber's documents (D3, D6; RFC 5874 §3): xcap-diff entries applied to the cached
//! copies or turned into GETs, fetch results, recompiling and publishing, and the durable cache.
#![forbid(unsafe_code)]

use crate::glms::xcap::{DocChange, ETag, EntryKind, XcapDiff, XcapUri, apply_patch};

use super::cache::{CacheEntry, DocSlot, DocState};
use super::compile::{XcapRef, compile_in};
use super::machine::{Action, Aor, FetchResult, Phase, Subscriber};

/// Largest document kept (the DOM parser refuses more anyway).
const MAX_DOC_BYTES: usize = 1 << 20;

impl Subscriber {
    /// Normalises a `sel` (relative to the root) to the document selector form we key on.
    fn document_key(&self, sel: &str) -> Option<String> {
        let uri =
            XcapUri::parse(&format!("{}/{}", self.root.path(), sel), self.root.path()).ok()?;
        // An element or attribute selector is not a document entry for us.
        uri.node_selector.is_none().then(|| uri.document_selector())
    }

    pub(crate) fn apply_diff(&mut self, a: &mut Aor, now_ms: u64, diff: &XcapDiff) {
        let mut changed = false;
        for change in diff
            .changes
            .iter()
            .filter(|c| c.kind == EntryKind::Document)
        {
            let Some(key) = self.document_key(&change.sel) else {
                continue;
            };
            let Some(i) = a.own.iter().position(|d| d.sel == key) else {
                // Not one of the subscribed documents: nothing to do (RFC 5874 §4: ignore).
                continue;
            };
            a.own[i].validated = true;
            changed |= self.apply_change(a, i, now_ms, change);
        }
        if changed {
            self.own_changed(a, now_ms);
        }
    }

    /// One `<document>` entry (RFC 5874 §3 table). True when the cached copy changed.
    fn apply_change(&mut self, a: &mut Aor, i: usize, now_ms: u64, c: &DocChange) -> bool {
        let slot = &mut a.own[i];
        if slot.fetching {
            // A GET is in flight; it may predate this change: GET again when it returns.
            slot.refetch = true;
            return false;
        }
        let cached = slot.etag().cloned();
        let has_bytes = slot.bytes().is_some();
        match (&c.previous_etag, &c.new_etag) {
            // Only a previous-etag: the document was removed; it contributes nothing (D2).
            (Some(_), None) if c.patch.is_none() && !c.body_not_changed => {
                let was = std::mem::replace(
                    &mut slot.state,
                    DocState::Known {
                        etag: None,
                        bytes: None,
                    },
                );
                was != slot.state
            }
            (Some(prev), Some(new)) if cached.as_ref() == Some(prev) && has_bytes => {
                if c.body_not_changed {
                    // Only the ETag moved.
                    set_etag(slot, new.clone());
                    return true;
                }
                if let Some(ops) = &c.patch
                    && let Some(bytes) = slot.bytes()
                    && let Ok(patched) = apply_patch(bytes, ops)
                {
                    slot.state = DocState::Known {
                        etag: Some(new.clone()),
                        bytes: Some(patched),
                    };
                    return true;
                }
                // No patch, or one that does not apply: GET (D3).
                self.request_fetch(a, i, now_ms);
                false
            }
            // Full state or a document we have (SPEC 3.3: GET when the cached ETag differs).
            (None, Some(new)) if cached.as_ref() == Some(new) && slot.is_known() => false,
            _ => {
                self.request_fetch(a, i, now_ms);
                false
            }
        }
    }

    /// GET one own document (`i` < 2) or referenced one (`i` >= 2), with If-None-Match.
    pub(crate) fn request_fetch(&mut self, a: &mut Aor, i: usize, now_ms: u64) {
        let _ = now_ms;
        let Some(slot) = slot_mut(a, i) else { return };
        if slot.fetching {
            slot.refetch = true;
            return;
        }
        slot.fetching = true;
        slot.refetch = false;
        slot.retry_at_ms = None;
        // RFC 9110 §13.1.2: only send the tag of a copy we actually have.
        let if_none_match = slot.bytes().and(slot.etag()).map(|e| e.as_str().to_owned());
        let uri = format!("{}/{}", self.cfg.xcap_root_url, slot.sel);
        self.out.push(Action::Fetch {
            aor: a.aor.clone(),
            uri,
            if_none_match,
        });
    }

    /// The first NOTIFY of a dialog: GET (conditionally) every own document it did not name.
    pub(crate) fn revalidate_own(&mut self, a: &mut Aor, now_ms: u64) {
        for i in 0..a.own.len() {
            if !a.own[i].validated {
                a.own[i].validated = true;
                self.request_fetch(a, i, now_ms);
            }
        }
    }

    pub(crate) fn fire_doc_retries(&mut self, a: &mut Aor, now_ms: u64) {
        for i in 0..a.own.len() + a.extra.len() {
            let due = slot_mut(a, i)
                .and_then(|s| s.retry_at_ms)
                .is_some_and(|t| t <= now_ms);
            if due {
                self.request_fetch(a, i, now_ms);
            }
        }
    }

    /// The result of an XCAP GET that an `Action::Fetch` asked for.
    pub fn on_fetched(&mut self, now_ms: u64, aor: &str, uri: &str, result: FetchResult) {
        let Some(&key) = self.by_name.get(aor) else {
            return;
        };
        let prefix = format!("{}/", self.cfg.xcap_root_url);
        let Some(sel) = uri.strip_prefix(&prefix).map(str::to_owned) else {
            return;
        };
        self.with(key, now_ms, |s, a| s.fetched(a, now_ms, &sel, result));
    }

    fn fetched(&mut self, a: &mut Aor, now_ms: u64, sel: &str, result: FetchResult) {
        let own_count = a.own.len();
        let Some(i) = (0..own_count + a.extra.len())
            .find(|&i| slot_mut(a, i).is_some_and(|s| s.sel == sel && s.fetching))
        else {
            return;
        };
        let backoff = |s: &Subscriber, failures: u32| s.backoff_ms(failures);
        let Some(slot) = slot_mut(a, i) else { return };
        slot.fetching = false;
        let before = slot.state.clone();
        match result {
            FetchResult::Ok { bytes, etag } if bytes.len() <= MAX_DOC_BYTES => {
                slot.failures = 0;
                slot.state = DocState::Known {
                    etag: etag.as_deref().and_then(ETag::from_opaque),
                    bytes: Some(bytes),
                };
            }
            FetchResult::NotModified if slot.bytes().is_some() => slot.failures = 0,
            // RFC 4825 §8.2.1 (404): the document does not exist; it contributes nothing.
            FetchResult::NotFound => {
                slot.failures = 0;
                slot.state = DocState::Known {
                    etag: None,
                    bytes: None,
                };
            }
            _ => {
                let failures = slot.failures;
                slot.failures = failures.saturating_add(1);
                if i >= own_count && slot.state == DocState::Unknown {
                    // A referenced document we cannot get must not hold the policy back.
                    slot.state = DocState::Missing;
                }
                let delay = backoff(self, failures);
                if let Some(slot) = slot_mut(a, i) {
                    slot.retry_at_ms = Some(now_ms + delay);
                }
            }
        }
        let Some(slot) = slot_mut(a, i) else { return };
        let changed = slot.state != before;
        if slot.refetch {
            self.request_fetch(a, i, now_ms);
        }
        if changed && i < own_count {
            self.own_changed(a, now_ms);
        } else if changed || i >= own_count || a.published.is_none() {
            self.recompile(a, now_ms);
        }
    }

    /// An own document changed: referenced documents may have too; revalidate them.
    fn own_changed(&mut self, a: &mut Aor, now_ms: u64) {
        a.dirty = true;
        for i in a.own.len()..a.own.len() + a.extra.len() {
            self.request_fetch(a, i, now_ms);
        }
        self.recompile(a, now_ms);
    }

    /// Compiles when every own document is known; publishes when the result changed.
    pub(crate) fn recompile(&mut self, a: &mut Aor, now_ms: u64) {
        if !a.own.iter().all(DocSlot::is_known) {
            // D6: the policy stays pending until both documents are known.
            return;
        }
        let result = {
            let own = &a.own;
            let extra = &a.extra;
            let mut resolve = |r: &XcapRef| -> Option<Vec<u8>> {
                own.iter()
                    .chain(extra.iter())
                    .find(|d| d.sel == r.document)
                    .and_then(|d| d.bytes().map(<[u8]>::to_vec))
            };
            compile_in(&self.root, a.own[0].bytes(), a.own[1].bytes(), &mut resolve)
        };
        let compiled = match result {
            Ok(c) => c,
            Err(error) => {
                self.out.push(Action::PolicyRejected {
                    aor: a.aor.clone(),
                    error,
                });
                return;
            }
        };
        // Referenced documents: keep the ones still referenced, fetch the new ones.
        let wanted: Vec<&String> = compiled
            .referenced
            .iter()
            .chain(&compiled.unresolved)
            .collect();
        a.extra
            .retain(|d| wanted.contains(&&d.sel) && !a.own.iter().any(|o| o.sel == d.sel));
        let mut waiting = false;
        for sel in &compiled.unresolved {
            if a.own.iter().any(|o| &o.sel == sel) {
                // An own document that does not exist: nothing to fetch.
                continue;
            }
            let idx = match a.extra.iter().position(|d| &d.sel == sel) {
                Some(i) => i,
                None if a.extra.len() < self.cfg.max_extra_docs => {
                    a.extra.push(DocSlot::new(sel.clone()));
                    a.extra.len() - 1
                }
                None => continue,
            };
            if a.extra[idx].state == DocState::Unknown {
                waiting = true;
                let i = a.own.len() + idx;
                self.request_fetch(a, i, now_ms);
            }
        }
        if waiting && a.published.is_none() {
            // D6 fail closed: the first policy waits for the referenced lists.
            return;
        }
        if waiting {
            // A known policy stays until the referenced lists arrive (then we compile again).
            return;
        }
        if a.published.as_ref() != Some(&compiled) {
            a.compiled_at_ms = now_ms;
            a.dirty = true;
            a.published = Some(compiled.clone());
            self.out.push(Action::PublishPolicy {
                aor: a.aor.clone(),
                compiled,
            });
        }
    }

    /// D6: after a restart, the last known documents apply at once (published now) and are
    /// revalidated with If-None-Match once the AoR's subscription runs. An AoR that gets no
    /// binding within `grace_s` is dropped as after a deregistration (D5).
    pub fn restore(&mut self, now_ms: u64, entries: Vec<CacheEntry>) {
        let grace_ms = u64::from(self.cfg.grace_s) * 1000;
        for entry in entries {
            if self.by_name.contains_key(&entry.aor) {
                continue;
            }
            let Ok(key) = self.insert(&entry.aor) else {
                break;
            };
            self.with(key, now_ms, |s, a| {
                for doc in entry.docs {
                    if doc.bytes.as_ref().is_some_and(|b| b.len() > MAX_DOC_BYTES) {
                        continue;
                    }
                    let state = DocState::Known {
                        etag: doc.etag.as_deref().and_then(ETag::from_opaque),
                        bytes: doc.bytes,
                    };
                    if let Some(slot) = a.own.iter_mut().find(|d| d.sel == doc.uri) {
                        slot.state = state;
                    } else if a.extra.len() < s.cfg.max_extra_docs {
                        let mut slot = DocSlot::new(doc.uri);
                        slot.state = state;
                        a.extra.push(slot);
                    }
                }
                a.phase = Phase::Idle;
                a.grace_until_ms = Some(now_ms + grace_ms);
                s.recompile(a, now_ms);
                a.compiled_at_ms = entry.compiled_at_ms.max(a.compiled_at_ms);
                a.dirty = false;
            });
        }
    }
}

fn set_etag(slot: &mut DocSlot, new: ETag) {
    if let DocState::Known { etag, .. } = &mut slot.state {
        *etag = Some(new);
    }
}

fn slot_mut(a: &mut Aor, i: usize) -> Option<&mut DocSlot> {
    let n = a.own.len();
    if i < n {
        a.own.get_mut(i)
    } else {
        a.extra.get_mut(i - n)
    }
}

/// The durable record of one AoR.
pub(crate) fn record(a: &Aor) -> CacheEntry {
    CacheEntry {
        aor: a.aor.clone(),
        docs: a
            .own
            .iter()
            .chain(&a.extra)
            .filter_map(DocSlot::to_record)
            .collect(),
        compiled_at_ms: a.compiled_at_ms,
    }
}
