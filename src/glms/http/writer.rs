//! The single writer: every PUT and DELETE goes through one thread that owns the write side of
//! the store. That makes "check the ETag, compute the new document, write it" atomic with
//! respect to every other writer (SPEC G1/G2, RFC 4825 §7.11), and lets one fsync cover a burst
//! of requests (group commit).
//!
//! ```text
//!  handler --try_send (bounded; full -> 503)--> queue
//!  writer:  recv first job, take up to MAX_BATCH more without waiting
//!           begin -> per job: preconditions -> XcapCore put/delete -> batch.put/delete
//!           commit (fsync) --ok--> change hook per successful job --> replies
//!                          --err-> every job of the batch gets 500, no hook
//! ```
//! A job refused by the core (409, 412, 404, ...) writes nothing and leaves the other jobs of
//! its batch alone. The hook runs after the commit and before any reply is released, so a
//! NOTIFY can be on its way before the client hears back.
#![forbid(unsafe_code)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::thread::JoinHandle;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::super::store::{DocKey, DocStore, StoreError, WriteBatch};
use super::super::xcap::{ETag, Tree, XcapCore, XcapError, XcapUri, check_preconditions};
use super::{ChangeEvent, ChangeHook};

/// Most jobs one transaction (one fsync) covers.
const MAX_BATCH: usize = 256;

pub(super) enum WriteOp {
    Put { content_type: String, body: Bytes },
    Delete,
}

pub(super) struct WriteJob {
    pub uri: XcapUri,
    pub op: WriteOp,
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
    pub reply: oneshot::Sender<WriteResult>,
}

/// What the handler turns into a response.
#[derive(Debug)]
pub(super) enum WriteResult {
    /// Committed. `created`: 201 rather than 200. `etag`: `None` after a document DELETE.
    Done { created: bool, etag: Option<ETag> },
    /// Refused by the XCAP rules; nothing written.
    Refused(XcapError),
    /// The store failed; nothing of the batch was written.
    StoreFailed,
}

/// Starts the writer thread. It ends when every sender is dropped.
pub(super) fn spawn(
    store: DocStore,
    core: XcapCore,
    hook: ChangeHook,
    queue_len: usize,
) -> std::io::Result<(SyncSender<WriteJob>, JoinHandle<()>)> {
    let (tx, rx) = sync_channel(queue_len.max(1));
    let handle = std::thread::Builder::new()
        .name("glms-writer".into())
        .spawn(move || run(&store, &core, &hook, &rx))?;
    Ok((tx, handle))
}

fn run(store: &DocStore, core: &XcapCore, hook: &ChangeHook, rx: &Receiver<WriteJob>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = Vec::with_capacity(16);
        jobs.push(first);
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        run_batch(store, core, hook, jobs);
    }
}

/// One job's outcome inside the batch, before the commit decides whether it stands.
type Applied = Result<(bool, Option<ETag>, ChangeEvent), XcapError>;

fn run_batch(store: &DocStore, core: &XcapCore, hook: &ChangeHook, jobs: Vec<WriteJob>) {
    let outcomes = store
        .begin()
        .and_then(|mut batch| {
            let mut outcomes = Vec::with_capacity(jobs.len());
            for job in &jobs {
                outcomes.push(apply(core, &mut batch, job)?);
            }
            batch.commit()?;
            Ok(outcomes)
        })
        .inspect_err(|e| tracing::error!(error = %e, "glms store write failed"));
    let Ok(outcomes) = outcomes else {
        for job in jobs {
            let _ = job.reply.send(WriteResult::StoreFailed);
        }
        return;
    };
    // Committed: tell the notifier first, then the clients.
    let mut results = Vec::with_capacity(outcomes.len());
    for outcome in outcomes {
        results.push(match outcome {
            Ok((created, etag, event)) => {
                if catch_unwind(AssertUnwindSafe(|| hook(event))).is_err() {
                    tracing::error!("glms change hook panicked");
                }
                WriteResult::Done { created, etag }
            }
            Err(e) => WriteResult::Refused(e),
        });
    }
    for (job, result) in jobs.into_iter().zip(results) {
        // A client that gave up is no reason to undo a committed change.
        let _ = job.reply.send(result);
    }
}

fn apply(
    core: &XcapCore,
    batch: &mut WriteBatch<'_>,
    job: &WriteJob,
) -> Result<Applied, StoreError> {
    let key = DocKey::from_uri(&job.uri);
    let current = batch.get(&key)?;
    let previous = current.as_ref().map(|d| d.etag.clone());
    // RFC 4825 §7.11 / RFC 9110 §13.2: conditions are evaluated against the state this
    // transaction sees, so no other writer can slip in between check and write.
    if let Err(e) = check_preconditions(
        job.if_match.as_deref(),
        job.if_none_match.as_deref(),
        previous.as_ref(),
    ) {
        return Ok(Err(e));
    }
    let bytes = current.as_ref().map(|d| d.bytes.as_slice());
    let (created, new_doc, change) = match &job.op {
        WriteOp::Put { content_type, body } => {
            match core.put(&job.uri, bytes, content_type, body) {
                Ok(out) => (out.created, Some(out.document), out.change),
                Err(e) => return Ok(Err(e)),
            }
        }
        WriteOp::Delete => match core.delete(&job.uri, bytes) {
            Ok(out) => (false, out.document, out.change),
            Err(e) => return Ok(Err(e)),
        },
    };
    let new_etag = match &new_doc {
        Some(doc) => Some(batch.put(&key, doc)?),
        None => {
            batch.delete(&key)?;
            None
        }
    };
    let xui = match &job.uri.tree {
        Tree::Users(x) => x.clone(),
        Tree::Global => String::new(),
    };
    let event = ChangeEvent {
        auid: job.uri.auid.clone(),
        xui,
        doc: job.uri.doc_name.clone(),
        sel: key.as_str().to_owned(),
        previous_etag: previous.map(|t| t.as_str().to_owned()),
        new_etag: new_etag.as_ref().map(|t| t.as_str().to_owned()),
        change,
    };
    Ok(Ok((created, new_etag, event)))
}
