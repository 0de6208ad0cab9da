//! The publication table: PUBLISH processing (RFC 3903 §6), composition, expiry, persistence.

#![forbid(unsafe_code)]

use std::collections::{BTreeSet, HashMap, HashSet};

use super::error::PublishError;
use super::etag::EtagGen;
use super::types::{
    Aor, ETag, EffectiveSettings, Publication, PublishOk, PublishRequest, Settings,
};
use super::xml::parse_service_settings;
use super::{CONTENT_TYPES, EVENT_PACKAGE, SettingsConfig};

const MAX_AOR_BYTES: usize = 512;
/// Longest SIP-If-Match value looked up.
const MAX_ETAG_BYTES: usize = 128;
/// Retry-After when the whole table is full.
const TABLE_FULL_RETRY_AFTER_S: u32 = 60;

/// [`Compositor::expire`] handles at most this many AoRs per call; call again while
/// [`Compositor::next_wakeup_ms`] is not in the future.
pub const EXPIRE_BATCH_AORS: usize = 10_000;

#[derive(Debug, Default)]
struct Record {
    publications: Vec<Publication>,
    /// The composition as last reported.
    effective: EffectiveSettings,
    /// The earliest `expires_at_ms`, as entered in `Compositor::deadlines`.
    wake_ms: Option<u64>,
}

/// The service-settings event state compositor. See the module documentation.
#[derive(Debug)]
pub struct Compositor {
    config: SettingsConfig,
    max_aors: usize,
    records: HashMap<Aor, Record>,
    /// One entry per AoR: its earliest publication expiry.
    deadlines: BTreeSet<(u64, Aor)>,
    dirty: HashSet<Aor>,
    etags: EtagGen,
}

/// What a valid PUBLISH does (RFC 3903 §4.2 to §4.5).
enum Action {
    Create(Settings),
    Refresh(usize),
    Modify(usize, Settings),
    Remove(Option<usize>),
}

impl Compositor {
    /// A compositor whose entity-tags are seeded from the operating system.
    pub fn new(config: SettingsConfig) -> Self {
        Self::with_etags(config, EtagGen::from_os())
    }

    /// A compositor with deterministic entity-tags, for tests and simulations.
    pub fn with_seed(config: SettingsConfig, seed: [u8; 32]) -> Self {
        Self::with_etags(config, EtagGen::from_seed(seed))
    }

    fn with_etags(config: SettingsConfig, etags: EtagGen) -> Self {
        Self {
            config,
            max_aors: 10_000_000,
            records: HashMap::new(),
            deadlines: BTreeSet::new(),
            dirty: HashSet::new(),
            etags,
        }
    }

    /// Caps the number of AoRs held (SPEC D12); an initial PUBLISH for a new AoR past it gets 503.
    pub fn with_max_aors(mut self, max_aors: usize) -> Self {
        self.max_aors = max_aors;
        self
    }

    pub fn config(&self) -> &SettingsConfig {
        &self.config
    }

    /// Processes a PUBLISH (RFC 3903 §6 steps 2 to 6; step 1, the Request-URI, and the 403 for
    /// a publisher acting for someone else are the caller's). Atomic: on error nothing changed.
    pub fn publish(
        &mut self,
        now_ms: u64,
        req: PublishRequest<'_>,
    ) -> Result<PublishOk, PublishError> {
        if req.aor.is_empty() || req.aor.len() > MAX_AOR_BYTES {
            return Err(PublishError::BadIdentity);
        }
        // RFC 3903 §6 step 2: the package, compared without case and without parameters.
        let package = req.event.split(';').next().unwrap_or("").trim();
        if !package.eq_ignore_ascii_case(EVENT_PACKAGE) {
            return Err(PublishError::BadEvent);
        }
        let live: Vec<Publication> = self
            .publications(req.aor)
            .iter()
            .filter(|p| !p.is_expired(now_ms))
            .cloned()
            .collect();
        let matched = match req.if_match {
            None => None,
            Some(tag) => Some(find_etag(&live, tag)?),
        };
        let expires_s = self.granted_expiry(req.expires_s)?;
        let body = req.body.filter(|b| !b.is_empty());
        let action = self.action(now_ms, &req, body, matched, expires_s, &live)?;

        let mut next = live;
        let etag = self.etags.next();
        let expires_at_ms = now_ms.saturating_add(u64::from(expires_s) * 1000);
        let text = || String::from_utf8_lossy(body.unwrap_or_default()).into_owned();
        match action {
            Action::Create(settings) => next.push(Publication {
                etag: etag.clone(),
                expires_at_ms,
                updated_ms: now_ms,
                content_type: req.content_type.unwrap_or_default().trim().to_owned(),
                body: text(),
                settings,
            }),
            Action::Refresh(i) => {
                // RFC 3903 §4.3: a refresh keeps the state and gets a new entity-tag.
                let p = &mut next[i];
                (p.etag, p.expires_at_ms, p.updated_ms) = (etag.clone(), expires_at_ms, now_ms);
            }
            Action::Modify(i, settings) => {
                // RFC 3903 §4.4: the body replaces the state of that entity-tag.
                next[i] = Publication {
                    etag: etag.clone(),
                    expires_at_ms,
                    updated_ms: now_ms,
                    content_type: req.content_type.unwrap_or_default().trim().to_owned(),
                    body: text(),
                    settings,
                };
            }
            Action::Remove(index) => {
                // RFC 3903 §4.5 / §6 step 5: Expires 0 removes at once and stores nothing.
                if let Some(i) = index {
                    next.remove(i);
                }
            }
        }
        let effective_changed = self.commit(req.aor, next);
        Ok(PublishOk {
            etag,
            expires_s,
            effective_changed,
        })
    }

    /// RFC 3903 §6 step 4: the requested interval, the default, 423 below the minimum, shortened
    /// above the maximum.
    fn granted_expiry(&self, requested: Option<u32>) -> Result<u32, PublishError> {
        let requested = requested.unwrap_or(self.config.default_expires_s);
        if requested != 0 && requested < self.config.min_expires_s {
            return Err(PublishError::IntervalTooBrief {
                min_expires_s: self.config.min_expires_s,
            });
        }
        Ok(requested.min(self.config.max_expires_s))
    }

    /// RFC 3903 §6 step 5: checks the body and decides what the request does.
    fn action(
        &self,
        now_ms: u64,
        req: &PublishRequest<'_>,
        body: Option<&[u8]>,
        matched: Option<usize>,
        expires_s: u32,
        live: &[Publication],
    ) -> Result<Action, PublishError> {
        if let Some(body) = body {
            if body.len() > self.config.max_body_bytes {
                return Err(PublishError::BodyTooLarge);
            }
            if !req.content_type.is_some_and(is_settings_type) {
                return Err(PublishError::UnsupportedMediaType);
            }
        } else if matched.is_none() {
            // RFC 3903 §6 step 5: no body and no entity-tag; we define no meaning for it.
            return Err(PublishError::MissingBody);
        }
        if expires_s == 0 {
            return Ok(Action::Remove(matched));
        }
        let settings = match body {
            Some(body) => Some(parse_service_settings(body).map_err(PublishError::BadXml)?),
            None => None,
        };
        match (matched, settings) {
            (Some(i), None) => Ok(Action::Refresh(i)),
            (Some(i), Some(s)) => Ok(Action::Modify(i, s)),
            (None, Some(s)) => {
                if live.len() >= self.config.max_publications_per_aor {
                    return Err(PublishError::TooManyPublications {
                        retry_after_s: retry_after_s(live, now_ms),
                    });
                }
                if live.is_empty()
                    && !self.records.contains_key(req.aor)
                    && self.records.len() >= self.max_aors
                {
                    return Err(PublishError::TableFull {
                        retry_after_s: TABLE_FULL_RETRY_AFTER_S,
                    });
                }
                Ok(Action::Create(s))
            }
            (None, None) => Err(PublishError::MissingBody),
        }
    }

    /// Stores the new publication list of an AoR; returns whether the composition changed.
    fn commit(&mut self, aor: &str, next: Vec<Publication>) -> bool {
        if next.is_empty() && !self.records.contains_key(aor) {
            return false;
        }
        let key = match self.records.get_key_value(aor) {
            Some((key, _)) => key.clone(),
            None => Aor::new(aor),
        };
        let record = self.records.entry(key.clone()).or_default();
        let effective = EffectiveSettings::compose(next.iter().map(|p| &p.settings));
        let changed = record.effective != effective;
        let wake_ms = next.iter().map(|p| p.expires_at_ms).min();
        record.effective = effective;
        record.publications = next;
        if record.wake_ms != wake_ms {
            if let Some(old) = record.wake_ms {
                self.deadlines.remove(&(old, key.clone()));
            }
            if let Some(new) = wake_ms {
                self.deadlines.insert((new, key.clone()));
            }
            record.wake_ms = wake_ms;
        }
        if wake_ms.is_none() {
            self.records.remove(aor);
        }
        self.dirty.insert(key);
        changed
    }

    /// The settings in force for an AoR (all off / unknown when it has no publication).
    pub fn effective(&self, aor: &str) -> EffectiveSettings {
        self.records
            .get(aor)
            .map(|r| r.effective)
            .unwrap_or_default()
    }

    /// The stored publications of an AoR; may include some past their time not yet swept.
    pub fn publications(&self, aor: &str) -> &[Publication] {
        self.records
            .get(aor)
            .map_or(&[], |r| r.publications.as_slice())
    }

    pub fn aor_count(&self) -> usize {
        self.records.len()
    }

    /// Removes the publications whose time has come (RFC 3903 §6: the state expires without a
    /// refresh). Returns the AoRs whose effective settings changed. At most
    /// [`EXPIRE_BATCH_AORS`] AoRs per call.
    pub fn expire(&mut self, now_ms: u64) -> Vec<Aor> {
        let mut changed = Vec::new();
        for _ in 0..EXPIRE_BATCH_AORS {
            let Some((wake_ms, aor)) = self.deadlines.first().cloned() else {
                break;
            };
            if wake_ms > now_ms {
                break;
            }
            if !self.records.contains_key(aor.as_str()) {
                // Not reachable while the invariants hold; drop the stray entry either way.
                self.deadlines.remove(&(wake_ms, aor));
                continue;
            }
            let next: Vec<Publication> = self
                .publications(aor.as_str())
                .iter()
                .filter(|p| !p.is_expired(now_ms))
                .cloned()
                .collect();
            if self.commit(aor.as_str(), next) {
                changed.push(aor);
            }
        }
        changed
    }

    /// When [`Compositor::expire`] next has work.
    pub fn next_wakeup_ms(&self) -> Option<u64> {
        self.deadlines.first().map(|(wake_ms, _)| *wake_ms)
    }

    /// Every AoR with its publications, for a full snapshot to the store.
    pub fn snapshot(&self) -> impl Iterator<Item = (&Aor, &[Publication])> {
        self.records
            .iter()
            .map(|(aor, r)| (aor, r.publications.as_slice()))
    }

    /// Drains the AoRs changed since the last call; the store writes `publications(aor)` for
    /// each (empty means delete).
    pub fn changed_aors(&mut self) -> impl Iterator<Item = Aor> + '_ {
        self.dirty.drain()
    }

    /// Loads persisted publications, dropping those expired at `now_ms`, and keeps at most
    /// `max_publications_per_aor` per AoR (the most recently updated). Returns the AoRs whose
    /// effective settings are not the default, for the caller to publish into its policy.
    pub fn restore(
        &mut self,
        persisted: impl IntoIterator<Item = (Aor, Vec<Publication>)>,
        now_ms: u64,
    ) -> Vec<Aor> {
        let mut with_settings = Vec::new();
        for (aor, publications) in persisted {
            let stored = publications.len();
            let mut live: Vec<Publication> = publications
                .into_iter()
                .filter(|p| !p.is_expired(now_ms))
                .collect();
            if live.len() > self.config.max_publications_per_aor {
                live.sort_by_key(|p| std::cmp::Reverse(p.updated_ms));
                live.truncate(self.config.max_publications_per_aor);
            }
            let dropped = live.len() != stored;
            if live.is_empty() && !self.records.contains_key(aor.as_str()) {
                if dropped {
                    self.dirty.insert(aor);
                }
                continue;
            }
            self.commit(aor.as_str(), live);
            if !dropped {
                self.dirty.remove(aor.as_str());
            }
            if self.effective(aor.as_str()) != EffectiveSettings::default() {
                with_settings.push(aor);
            }
        }
        with_settings
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
            let wake_ms = record.publications.iter().map(|p| p.expires_at_ms).min();
            let Some(wake_ms) = wake_ms else {
                return Err(format!("{aor}: record without publications"));
            };
            if record.wake_ms != Some(wake_ms) || !self.deadlines.contains(&(wake_ms, aor.clone()))
            {
                return Err(format!("{aor}: expiry index out of date"));
            }
            let composed =
                EffectiveSettings::compose(record.publications.iter().map(|p| &p.settings));
            if record.effective != composed {
                return Err(format!("{aor}: stale composition"));
            }
            let mut tags: Vec<&ETag> = record.publications.iter().map(|p| &p.etag).collect();
            tags.sort();
            tags.dedup();
            if tags.len() != record.publications.len() {
                return Err(format!("{aor}: duplicate entity-tag"));
            }
        }
        Ok(())
    }
}

/// RFC 3903 §6 step 3: exactly one entity-tag, matched against the live publications of this
/// AoR and package; none matching is 412.
fn find_etag(live: &[Publication], if_match: &str) -> Result<usize, PublishError> {
    let tag = if_match.trim();
    if tag.is_empty()
        || tag.len() > MAX_ETAG_BYTES
        || tag.contains(|c: char| c == ',' || c.is_whitespace())
    {
        return Err(PublishError::BadIfMatch);
    }
    live.iter()
        .position(|p| p.etag.as_str() == tag)
        .ok_or(PublishError::UnknownEtag)
}

/// Seconds until the earliest of `live` expires, at least 1.
fn retry_after_s(live: &[Publication], now_ms: u64) -> u32 {
    let earliest = live.iter().map(|p| p.expires_at_ms).min().unwrap_or(now_ms);
    let left_ms = earliest.saturating_sub(now_ms);
    u32::try_from(left_ms.div_ceil(1000))
        .unwrap_or(u32::MAX)
        .max(1)
}

/// The two accepted body types, parameters (charset) ignored, without case (RFC 3261 §7.3.1).
fn is_settings_type(content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or("").trim();
    CONTENT_TYPES.iter().any(|t| media.eq_ignore_ascii_case(t))
}
