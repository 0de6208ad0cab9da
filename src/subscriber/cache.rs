//! The per-AoR document copies the subscriber keeps, and the records of its durable cache (D6:
//! after a restart the last known lists apply at once and are only revalidated).
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

use crate::glms::xcap::ETag;

/// One cached document, as stored durably.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedDoc {
    /// Document selector relative to the XCAP root (`resource-lists/users/<xui>/index`).
    pub uri: String,
    /// The strong ETag, unquoted.
    pub etag: Option<String>,
    /// The document; `None` when the GLMS said it does not exist (404 or a deletion diff).
    pub bytes: Option<Vec<u8>>,
}

/// The durable record of one AoR.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntry {
    pub aor: String,
    pub docs: Vec<CachedDoc>,
    /// When the policy was last compiled from these documents (the subscriber's clock, ms).
    pub compiled_at_ms: u64,
}

/// What changed in the durable cache since the last export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CacheChange {
    Put(CacheEntry),
    /// The AoR's subscription ended (grace expired): forget its documents.
    Remove {
        aor: String,
    },
}

/// What is known of one document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DocState {
    /// Never fetched (D6: the policy is pending while an own document is in this state).
    Unknown,
    /// Known content (`bytes: None`: the document does not exist).
    Known {
        etag: Option<ETag>,
        bytes: Option<Vec<u8>>,
    },
    /// A referenced document whose fetch failed: contributes nothing until a retry succeeds.
    Missing,
}

/// One document slot of an AoR.
#[derive(Clone, Debug)]
pub(crate) struct DocSlot {
    /// Document selector relative to the root, as `XcapUri::document_selector` writes it.
    pub sel: String,
    pub state: DocState,
    /// A GET is in flight.
    pub fetching: bool,
    /// A change arrived while the GET was in flight: GET again when it completes.
    pub refetch: bool,
    /// Confirmed (named in a NOTIFY or fetched) during the current dialog.
    pub validated: bool,
    /// Retry of a failed GET.
    pub retry_at_ms: Option<u64>,
    pub failures: u32,
}

impl DocSlot {
    pub fn new(sel: String) -> DocSlot {
        DocSlot {
            sel,
            state: DocState::Unknown,
            fetching: false,
            refetch: false,
            validated: false,
            retry_at_ms: None,
            failures: 0,
        }
    }

    pub fn etag(&self) -> Option<&ETag> {
        match &self.state {
            DocState::Known { etag, .. } => etag.as_ref(),
            _ => None,
        }
    }

    /// The cached bytes, when the document is known to exist.
    pub fn bytes(&self) -> Option<&[u8]> {
        match &self.state {
            DocState::Known { bytes, .. } => bytes.as_deref(),
            _ => None,
        }
    }

    pub fn is_known(&self) -> bool {
        matches!(self.state, DocState::Known { .. })
    }

    pub fn to_record(&self) -> Option<CachedDoc> {
        match &self.state {
            DocState::Known { etag, bytes } => Some(CachedDoc {
                uri: self.sel.clone(),
                etag: etag.as_ref().map(|e| e.as_str().to_owned()),
                bytes: bytes.clone(),
            }),
            _ => None,
        }
    }
}
