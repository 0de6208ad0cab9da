//! The GLMS's durable document store (SPEC G2), on redb.
//!
//! One file, `glms.redb` in the data directory, with three tables:
//! - `documents`: document key -> (bytes, etag, version). The key is the document selector
//!   relative to the XCAP root, exactly as xcap-diff writes `sel`
//!   (`resource-lists/users/sip:bob@example.com/index`), so it is unambiguous even for XUIs or
//!   document names holding `/` (they are percent-encoded) and the notifier needs no mapping.
//! - `subscriptions`: subscription id -> opaque bytes (the notifier's serialized state).
//! - `meta`: the store-wide version counter.
//!
//! Versions come from one store-wide counter, bumped by every document write, so an ETag
//! (`<version>-<hash>`, see [`ETag::for_document`]) is never reused: not when a document goes
//! back to earlier content, and not when a deleted document is created again (no tombstones
//! needed).
//!
//! Every commit uses redb's default durability (`Immediate`: fsync before `commit` returns), so
//! whoever acknowledges a change after [`WriteBatch::commit`] has made it durable. redb allows
//! one write transaction at a time, which is what serialises writers: a read-check-write done
//! inside one [`WriteBatch`] is atomic with respect to every other writer of the file. Reads use
//! MVCC snapshots and never wait for a writer.
//!
//! ```text
//!  begin() --get/put/delete (sees its own writes)--> commit() --fsync--> durable, visible
//!     \------------------------------- drop ---------------------------> nothing happened
//! ```
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::xcap::uri::encode_segment;
use super::xcap::{ETag, Tree, XcapUri};

/// File name of the store inside the data directory.
pub const FILE_NAME: &str = "glms.redb";

/// key -> (document bytes, ETag without quotes, version).
const DOCUMENTS: TableDefinition<&str, (&[u8], &str, u64)> = TableDefinition::new("documents");
/// subscription id -> opaque bytes.
const SUBSCRIPTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("subscriptions");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const META_VERSION: &str = "version";

/// Longest key we store (a bound; XCAP URIs are limited to 8 KiB by the URI parser anyway).
const MAX_KEY_LEN: usize = 4096;
/// Most documents one `list_user` returns.
const MAX_LIST: usize = 10_000;

/// Why a store operation failed. Not `Copy`: the database's message is kept for the log.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create data directory {0}: {1}")]
    Dir(PathBuf, std::io::Error),
    #[error("database {0}: {1}")]
    Db(PathBuf, String),
    #[error("corrupt row {key}: {message}")]
    Corrupt { key: String, message: &'static str },
    #[error("document key too long ({0} bytes)")]
    KeyTooLong(usize),
}

impl StoreError {
    /// Every store failure is the server's fault.
    pub fn status(&self) -> u16 {
        500
    }
}

/// The key of one document: its document selector relative to the XCAP root.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocKey(String);

impl DocKey {
    /// `<auid>/users/<xui>/<doc>` with each part percent-encoded as a URI segment.
    pub fn user(auid: &str, xui: &str, doc: &str) -> DocKey {
        let mut s = user_prefix(auid, xui);
        push_doc(&mut s, doc);
        DocKey(s)
    }

    /// `<auid>/global/<doc>`.
    pub fn global(auid: &str, doc: &str) -> DocKey {
        let mut s = encode_segment(auid);
        s.push_str("/global/");
        push_doc(&mut s, doc);
        DocKey(s)
    }

    /// The key of the document a request URI addresses (node selector ignored).
    pub fn from_uri(uri: &XcapUri) -> DocKey {
        match &uri.tree {
            Tree::Users(xui) => DocKey::user(&uri.auid, xui, &uri.doc_name),
            Tree::Global => DocKey::global(&uri.auid, &uri.doc_name),
        }
    }

    /// The key as stored, which is also the xcap-diff `sel` of the document.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for DocKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn user_prefix(auid: &str, xui: &str) -> String {
    let mut s = encode_segment(auid);
    s.push_str("/users/");
    s.push_str(&encode_segment(xui));
    s.push('/');
    s
}

/// Document names may hold `/` (sub-directories, RFC 4825 §6.2): encode each segment.
fn push_doc(s: &mut String, doc: &str) {
    for (i, seg) in doc.split('/').enumerate() {
        if i > 0 {
            s.push('/');
        }
        s.push_str(&encode_segment(seg));
    }
}

/// One stored document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Doc {
    pub bytes: Vec<u8>,
    pub etag: ETag,
    /// The store-wide version this document was last written at.
    pub version: u64,
}

struct Inner {
    db: Database,
    path: PathBuf,
}

/// The durable store. Cheap to clone (an `Arc`); shared by the HTTP server, the notifier and
/// the embedded IM server. All methods are blocking (disk).
#[derive(Clone)]
pub struct DocStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DocStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocStore")
            .field("path", &self.inner.path)
            .finish()
    }
}

fn db_err(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(path.to_owned(), e.to_string())
}

fn check_key(key: &DocKey) -> Result<(), StoreError> {
    if key.0.len() > MAX_KEY_LEN {
        return Err(StoreError::KeyTooLong(key.0.len()));
    }
    Ok(())
}

fn row_to_doc(key: &str, (bytes, etag, version): (&[u8], &str, u64)) -> Result<Doc, StoreError> {
    let etag = ETag::from_opaque(etag).ok_or_else(|| StoreError::Corrupt {
        key: key.to_owned(),
        message: "stored etag is not a valid entity tag",
    })?;
    Ok(Doc {
        bytes: bytes.to_vec(),
        etag,
        version,
    })
}

impl DocStore {
    /// Opens (creating if needed) `dir/glms.redb`. A process can hold the file open once:
    /// share the returned handle instead of opening it again.
    pub fn open(dir: &Path) -> Result<DocStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Dir(dir.to_owned(), e))?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(|e| db_err(&path, e))?;
        // Create the tables so readers never meet a missing one.
        let tx = db.begin_write().map_err(|e| db_err(&path, e))?;
        tx.open_table(DOCUMENTS).map_err(|e| db_err(&path, e))?;
        tx.open_table(SUBSCRIPTIONS).map_err(|e| db_err(&path, e))?;
        tx.open_table(META).map_err(|e| db_err(&path, e))?;
        tx.commit().map_err(|e| db_err(&path, e))?;
        Ok(DocStore {
            inner: Arc::new(Inner { db, path }),
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn err(&self, e: impl std::fmt::Display) -> StoreError {
        db_err(&self.inner.path, e)
    }

    /// The committed document, from a read snapshot (never waits for a writer).
    pub fn get(&self, key: &DocKey) -> Result<Option<Doc>, StoreError> {
        check_key(key)?;
        let tx = self.inner.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(DOCUMENTS).map_err(|e| self.err(e))?;
        match t.get(key.as_str()).map_err(|e| self.err(e))? {
            Some(v) => Ok(Some(row_to_doc(key.as_str(), v.value())?)),
            None => Ok(None),
        }
    }

    /// The ETag of a committed document, without copying its bytes out.
    pub fn etag(&self, key: &DocKey) -> Result<Option<ETag>, StoreError> {
        Ok(self.get(key)?.map(|d| d.etag))
    }

    /// Every document of one user in one application usage (`<auid>/users/<xui>/`), in key
    /// order, at most 10,000.
    pub fn list_user(&self, auid: &str, xui: &str) -> Result<Vec<(DocKey, Doc)>, StoreError> {
        let prefix = user_prefix(auid, xui);
        let tx = self.inner.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(DOCUMENTS).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in t.range(prefix.as_str()..).map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            let key = k.value();
            if !key.starts_with(&prefix) || out.len() >= MAX_LIST {
                break;
            }
            out.push((DocKey(key.to_owned()), row_to_doc(key, v.value())?));
        }
        Ok(out)
    }

    /// Number of stored documents.
    pub fn len(&self) -> Result<u64, StoreError> {
        let tx = self.inner.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(DOCUMENTS).map_err(|e| self.err(e))?;
        t.len().map_err(|e| self.err(e))
    }

    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }

    /// Starts a write transaction. Blocks while another writer holds one (redb has a single
    /// writer), which is what makes a read-check-write inside the batch atomic.
    pub fn begin(&self) -> Result<WriteBatch<'_>, StoreError> {
        let tx = self.inner.db.begin_write().map_err(|e| self.err(e))?;
        let version = {
            let t = tx.open_table(META).map_err(|e| self.err(e))?;
            let v = t.get(META_VERSION).map_err(|e| self.err(e))?;
            v.map_or(0, |g| g.value())
        };
        Ok(WriteBatch {
            store: self,
            tx,
            version,
            dirty_version: false,
        })
    }

    /// Writes one document (`Some(bytes)`) or deletes it (`None`) in its own durable commit.
    /// Returns the new ETag (`None` after a delete).
    pub fn apply(&self, key: &DocKey, new: Option<&[u8]>) -> Result<Option<ETag>, StoreError> {
        let mut b = self.begin()?;
        let tag = match new {
            Some(bytes) => Some(b.put(key, bytes)?),
            None => {
                b.delete(key)?;
                None
            }
        };
        b.commit()?;
        Ok(tag)
    }

    /// Stores (or replaces) a subscription's serialized state, durably.
    pub fn put_subscription(&self, id: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let tx = self.inner.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = tx.open_table(SUBSCRIPTIONS).map_err(|e| self.err(e))?;
            t.insert(id, bytes).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Removes a subscription; `Ok(false)` when there was none.
    pub fn remove_subscription(&self, id: &str) -> Result<bool, StoreError> {
        let tx = self.inner.db.begin_write().map_err(|e| self.err(e))?;
        let existed = {
            let mut t = tx.open_table(SUBSCRIPTIONS).map_err(|e| self.err(e))?;
            t.remove(id).map_err(|e| self.err(e))?.is_some()
        };
        tx.commit().map_err(|e| self.err(e))?;
        Ok(existed)
    }

    /// Stores and removes several subscriptions in one durable transaction (one fsync for a
    /// burst of SUBSCRIBEs instead of one each).
    pub fn apply_subscriptions(
        &self,
        puts: &[(String, Vec<u8>)],
        removes: &[String],
    ) -> Result<(), StoreError> {
        if puts.is_empty() && removes.is_empty() {
            return Ok(());
        }
        let tx = self.inner.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = tx.open_table(SUBSCRIPTIONS).map_err(|e| self.err(e))?;
            for (id, bytes) in puts {
                t.insert(id.as_str(), bytes.as_slice())
                    .map_err(|e| self.err(e))?;
            }
            for id in removes {
                t.remove(id.as_str()).map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Every stored subscription, in id order (for a restarted notifier).
    pub fn subscriptions(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let tx = self.inner.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(SUBSCRIPTIONS).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in t.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            out.push((k.value().to_owned(), v.value().to_vec()));
        }
        Ok(out)
    }
}

/// One write transaction: reads see its own writes; nothing is visible or durable before
/// [`WriteBatch::commit`]; dropping it aborts.
pub struct WriteBatch<'s> {
    store: &'s DocStore,
    tx: redb::WriteTransaction,
    /// Highest version handed out so far (store-wide).
    version: u64,
    dirty_version: bool,
}

impl WriteBatch<'_> {
    fn err(&self, e: impl std::fmt::Display) -> StoreError {
        self.store.err(e)
    }

    /// The document as this transaction sees it.
    pub fn get(&self, key: &DocKey) -> Result<Option<Doc>, StoreError> {
        check_key(key)?;
        let t = self.tx.open_table(DOCUMENTS).map_err(|e| self.err(e))?;
        let row = t.get(key.as_str()).map_err(|e| self.err(e))?;
        match row {
            Some(v) => Ok(Some(row_to_doc(key.as_str(), v.value())?)),
            None => Ok(None),
        }
    }

    fn next_tag(&mut self, bytes: &[u8]) -> (ETag, u64) {
        self.version = self.version.saturating_add(1);
        self.dirty_version = true;
        (ETag::for_document(bytes, self.version), self.version)
    }

    /// Writes a document at a fresh version; returns its ETag.
    pub fn put(&mut self, key: &DocKey, bytes: &[u8]) -> Result<ETag, StoreError> {
        check_key(key)?;
        let (tag, version) = self.next_tag(bytes);
        let mut t = self.tx.open_table(DOCUMENTS).map_err(|e| self.err(e))?;
        t.insert(key.as_str(), (bytes, tag.as_str(), version))
            .map_err(|e| self.err(e))?;
        Ok(tag)
    }

    /// Writes many documents with one table handle (bulk import). Returns how many.
    pub fn put_many<'a>(
        &mut self,
        docs: impl IntoIterator<Item = (&'a DocKey, &'a [u8])>,
    ) -> Result<usize, StoreError> {
        let store = self.store;
        let mut t = self.tx.open_table(DOCUMENTS).map_err(|e| store.err(e))?;
        let mut n = 0;
        for (key, bytes) in docs {
            check_key(key)?;
            self.version = self.version.saturating_add(1);
            let tag = ETag::for_document(bytes, self.version);
            t.insert(key.as_str(), (bytes, tag.as_str(), self.version))
                .map_err(|e| store.err(e))?;
            n += 1;
        }
        self.dirty_version |= n > 0;
        Ok(n)
    }

    /// Deletes a document; `Ok(false)` when there was none.
    pub fn delete(&mut self, key: &DocKey) -> Result<bool, StoreError> {
        check_key(key)?;
        let mut t = self.tx.open_table(DOCUMENTS).map_err(|e| self.err(e))?;
        let existed = t.remove(key.as_str()).map_err(|e| self.err(e))?.is_some();
        Ok(existed)
    }

    /// Makes every write of the batch durable (fsync) and visible, or none of them.
    pub fn commit(self) -> Result<(), StoreError> {
        if self.dirty_version {
            let mut t = self.tx.open_table(META).map_err(|e| self.err(e))?;
            t.insert(META_VERSION, self.version)
                .map_err(|e| self.err(e))?;
        }
        let store = self.store;
        self.tx.commit().map_err(|e| store.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(user: &str) -> DocKey {
        DocKey::user(
            "resource-lists",
            &format!("sip:{user}@example.com"),
            "index",
        )
    }

    #[test]
    fn key_is_the_document_selector() {
        let uri = XcapUri::parse(
            "/xcap-root/resource-lists/users/sip:bob@example.com/index/~~/resource-lists",
            "/xcap-root",
        )
        .expect("uri");
        assert_eq!(DocKey::from_uri(&uri).as_str(), uri.document_selector());
        assert_eq!(
            key("bob").as_str(),
            "resource-lists/users/sip:bob@example.com/index"
        );
        // A `/` inside an XUI cannot make one user's prefix cover another's documents.
        let odd = DocKey::user("resource-lists", "sip:a/b@x", "index");
        assert!(!odd.as_str().starts_with("resource-lists/users/sip:a/"));
        assert_eq!(
            DocKey::global("xcap-caps", "index").as_str(),
            "xcap-caps/global/index"
        );
    }

    #[test]
    fn put_get_delete_and_etags_never_repeat() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = DocStore::open(dir.path()).expect("open");
        let k = key("bob");
        assert_eq!(store.get(&k).expect("get"), None);
        let t1 = store.apply(&k, Some(b"<a/>")).expect("put").expect("tag");
        let d = store.get(&k).expect("get").expect("doc");
        assert_eq!(d.bytes, b"<a/>");
        assert_eq!(d.etag, t1);
        let t2 = store.apply(&k, Some(b"<a/>")).expect("put").expect("tag");
        assert_ne!(t1, t2, "same content, new version, new tag");
        assert_eq!(store.apply(&k, None).expect("delete"), None);
        assert_eq!(store.get(&k).expect("get"), None);
        let t3 = store.apply(&k, Some(b"<a/>")).expect("put").expect("tag");
        assert!(t3 != t1 && t3 != t2, "a re-created document gets a new tag");
    }

    #[test]
    fn batch_reads_its_own_writes_and_drop_aborts() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = DocStore::open(dir.path()).expect("open");
        let k = key("bob");
        {
            let mut b = store.begin().expect("begin");
            b.put(&k, b"<x/>").expect("put");
            assert_eq!(b.get(&k).expect("get").expect("doc").bytes, b"<x/>");
            // dropped: aborted
        }
        assert_eq!(store.get(&k).expect("get"), None);
        let mut b = store.begin().expect("begin");
        let tag = b.put(&k, b"<x/>").expect("put");
        assert!(b.delete(&k).expect("delete"));
        assert!(!b.delete(&k).expect("delete"));
        b.put(&k, b"<y/>").expect("put");
        b.commit().expect("commit");
        let d = store.get(&k).expect("get").expect("doc");
        assert_eq!(d.bytes, b"<y/>");
        assert_ne!(d.etag, tag);
    }

    #[test]
    fn list_user_sees_only_that_user() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = DocStore::open(dir.path()).expect("open");
        let mut b = store.begin().expect("begin");
        let keys = [
            DocKey::user("resource-lists", "sip:bob@example.com", "index"),
            DocKey::user("resource-lists", "sip:bob@example.com", "other"),
            DocKey::user("resource-lists", "sip:bob@example.com.evil", "index"),
            DocKey::user("resource-lists", "sip:bo@example.com", "index"),
            DocKey::user(
                "org.openmobilealliance.access-rules",
                "sip:bob@example.com",
                "index",
            ),
        ];
        let n = b
            .put_many(keys.iter().map(|k| (k, &b"<d/>"[..])))
            .expect("put_many");
        assert_eq!(n, keys.len());
        b.commit().expect("commit");
        let listed: Vec<DocKey> = store
            .list_user("resource-lists", "sip:bob@example.com")
            .expect("list")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(listed, vec![keys[0].clone(), keys[1].clone()]);
        assert_eq!(store.len().expect("len"), 5);
    }

    #[test]
    fn documents_and_subscriptions_survive_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        let tag;
        {
            let store = DocStore::open(dir.path()).expect("open");
            tag = store.apply(&key("bob"), Some(b"<a/>")).expect("put");
            store.put_subscription("s1", b"one").expect("sub");
            store.put_subscription("s2", b"two").expect("sub");
            assert!(store.remove_subscription("s1").expect("rm"));
            assert!(!store.remove_subscription("s1").expect("rm"));
        }
        let store = DocStore::open(dir.path()).expect("reopen");
        assert_eq!(store.etag(&key("bob")).expect("get"), tag);
        assert_eq!(
            store.subscriptions().expect("subs"),
            vec![("s2".to_owned(), b"two".to_vec())]
        );
        // The version counter survived too: the next tag is new.
        let next = store.apply(&key("bob"), Some(b"<a/>")).expect("put");
        assert_ne!(next, tag);
    }
}
