//! Bulk import of GLMS documents: `imserver glms import --data DIR FILE...`.
//!
//! Input is JSON Lines as the load generator writes it (`loadgen/README.md`, `xcap.jsonl`):
//! `{"xui":"sip:u1@example.com","auid":"resource-lists","name":"index","doc":"<xml>"}`.
//! Each document goes through the same XCAP core as an HTTP PUT of the whole document (media
//! type of the usage, well-formedness, schema and uniqueness rules), and the core's
//! serialisation is what gets stored, so an imported document is byte for byte what a PUT would
//! have stored. A bad line is reported with its file and line number and skipped; the import
//! goes on, and the caller exits non-zero when anything failed.
//!
//! ```text
//!  reader thread: lines -> JSON -> XcapCore::put (validate) --chunks of 10,000--> channel(2)
//!  caller thread: chunk -> WriteBatch::put_many -> commit (fsync)
//! ```
//! Validation (CPU) and writing (disk) overlap on two threads; each commit is one fsync, so the
//! cost is per chunk, not per document. A later line for the same document replaces it.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use super::store::{DocKey, DocStore, StoreError};
use super::xcap::uri::DEFAULT_ROOT;
use super::xcap::{Tree, XcapCore, XcapUri};

/// Documents per transaction.
pub const DEFAULT_CHUNK_DOCS: usize = 10_000;
/// Longest line we accept (a document is at most 1 MiB; JSON escaping can double it).
const MAX_LINE_BYTES: usize = 3 << 20;
/// Failures kept in the report (all are counted).
const MAX_FAILURES_KEPT: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("reader thread: {0}")]
    Thread(std::io::Error),
}

/// One skipped line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportFailure {
    pub file: PathBuf,
    /// 1-based.
    pub line: u64,
    pub reason: String,
}

impl std::fmt::Display for ImportFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.reason)
    }
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub lines: u64,
    pub imported: u64,
    pub failed: u64,
    /// The first failures (at most 1000), in input order.
    pub failures: Vec<ImportFailure>,
    pub commits: u64,
    pub elapsed_ms: u64,
}

impl ImportReport {
    /// Documents per second over the whole run.
    pub fn docs_per_s(&self) -> f64 {
        self.imported as f64 * 1000.0 / self.elapsed_ms.max(1) as f64
    }

    pub fn ok(&self) -> bool {
        self.failed == 0
    }
}

#[derive(serde::Deserialize)]
struct Line {
    xui: String,
    auid: String,
    name: String,
    doc: String,
}

/// Opens `dir/glms.redb` and imports the files into it. The server must not be running on the
/// same directory (redb holds the file exclusively).
pub fn import(dir: &Path, files: &[PathBuf]) -> Result<ImportReport, ImportError> {
    let store = DocStore::open(dir)?;
    import_into(&store, files, DEFAULT_CHUNK_DOCS)
}

/// A validated line, or why it is not.
type Validated = Result<(DocKey, Vec<u8>), String>;

/// What the reader thread sends: a chunk of results with their (file, line) positions.
type Chunk = Vec<(usize, u64, Validated)>;

/// Imports into an open store, `chunk_docs` documents per commit.
pub fn import_into(
    store: &DocStore,
    files: &[PathBuf],
    chunk_docs: usize,
) -> Result<ImportReport, ImportError> {
    let started = Instant::now();
    let chunk_docs = chunk_docs.max(1);
    let (tx, rx) = sync_channel::<Chunk>(2);
    let files_owned: Vec<PathBuf> = files.to_vec();
    let reader = std::thread::Builder::new()
        .name("glms-import-read".into())
        .spawn(move || read_all(&files_owned, chunk_docs, &tx))
        .map_err(ImportError::Thread)?;
    let mut report = ImportReport::default();
    let mut write_result = Ok(());
    for chunk in rx.iter() {
        if write_result.is_err() {
            continue; // drain so the reader can finish
        }
        write_result = write_chunk(store, files, chunk, &mut report);
    }
    let read_result = reader
        .join()
        .unwrap_or_else(|_| Err(ImportError::Thread(std::io::Error::other("panicked"))));
    write_result?;
    read_result?;
    report.elapsed_ms = started.elapsed().as_millis().try_into().unwrap_or(u64::MAX);
    Ok(report)
}

fn write_chunk(
    store: &DocStore,
    files: &[PathBuf],
    chunk: Chunk,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    let mut good = Vec::with_capacity(chunk.len());
    for (file, line, v) in chunk {
        report.lines += 1;
        match v {
            Ok(doc) => good.push(doc),
            Err(reason) => {
                report.failed += 1;
                if report.failures.len() < MAX_FAILURES_KEPT {
                    report.failures.push(ImportFailure {
                        file: files.get(file).cloned().unwrap_or_default(),
                        line,
                        reason,
                    });
                }
            }
        }
    }
    if good.is_empty() {
        return Ok(());
    }
    let mut batch = store.begin()?;
    let n = batch.put_many(good.iter().map(|(k, d)| (k, d.as_slice())))?;
    batch.commit()?;
    report.imported += n as u64;
    report.commits += 1;
    Ok(())
}

fn read_all(
    files: &[PathBuf],
    chunk_docs: usize,
    tx: &std::sync::mpsc::SyncSender<Chunk>,
) -> Result<(), ImportError> {
    let core = XcapCore::new();
    let mut chunk: Chunk = Vec::with_capacity(chunk_docs);
    for (fi, path) in files.iter().enumerate() {
        let f = std::fs::File::open(path).map_err(|e| ImportError::Read(path.clone(), e))?;
        let mut r = BufReader::with_capacity(1 << 20, f);
        let mut buf = Vec::with_capacity(4096);
        let mut line_no = 0u64;
        loop {
            buf.clear();
            let n = read_line_bounded(&mut r, &mut buf)
                .map_err(|e| ImportError::Read(path.clone(), e))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            let trimmed = buf.trim_ascii();
            if trimmed.is_empty() {
                continue;
            }
            let v = if n > MAX_LINE_BYTES {
                Err(format!("line longer than {MAX_LINE_BYTES} bytes"))
            } else {
                validate(&core, trimmed)
            };
            chunk.push((fi, line_no, v));
            if chunk.len() >= chunk_docs {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(chunk_docs));
                if tx.send(full).is_err() {
                    return Ok(()); // the writer stopped on an error it reports
                }
            }
        }
    }
    if !chunk.is_empty() {
        let _ = tx.send(chunk);
    }
    Ok(())
}

/// Reads one line into `buf`, keeping at most `MAX_LINE_BYTES + 1` bytes of it (the rest is
/// consumed and dropped). Returns the full line length, 0 at end of file.
fn read_line_bounded(r: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let available = r.fill_buf()?;
        if available.is_empty() {
            return Ok(total);
        }
        let (part, done) = match memchr_newline(available) {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let room = (MAX_LINE_BYTES + 1).saturating_sub(buf.len());
        buf.extend_from_slice(&part[..part.len().min(room)]);
        let used = part.len();
        total += used;
        r.consume(used);
        if done {
            return Ok(total);
        }
    }
}

fn memchr_newline(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

/// One line through the same checks as a document PUT.
fn validate(core: &XcapCore, line: &[u8]) -> Validated {
    let l: Line = serde_json::from_slice(line).map_err(|e| format!("bad JSON: {e}"))?;
    if l.xui.is_empty() || l.name.is_empty() {
        return Err("empty xui or name".into());
    }
    let usage = core
        .registry
        .usage(&l.auid)
        .ok_or_else(|| format!("unknown auid {:?}", l.auid))?;
    let uri = XcapUri {
        root: DEFAULT_ROOT.to_owned(),
        auid: l.auid.clone(),
        tree: Tree::Users(l.xui.clone()),
        doc_name: l.name.clone(),
        node_selector: None,
        ns_bindings: Vec::new(),
    };
    let out = core
        .put(&uri, None, usage.mime, l.doc.as_bytes())
        .map_err(|e| format!("{} ({})", e, e.status()))?;
    Ok((DocKey::from_uri(&uri), out.document))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const GOOD: &str = r#"{"xui":"sip:u1@example.com","auid":"resource-lists","name":"index","doc":"<?xml version=\"1.0\" encoding=\"UTF-8\"?><resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list name=\"oma_blockedcontacts\"><entry uri=\"sip:u7@example.com\"/></list></resource-lists>"}"#;

    fn write_file(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
        let p = dir.join(name);
        let mut f = std::fs::File::create(&p).expect("create");
        for l in lines {
            writeln!(f, "{l}").expect("write");
        }
        p
    }

    #[test]
    fn imports_good_lines_and_reports_bad_ones_with_line_numbers() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut lines = Vec::new();
        for n in 1..=25 {
            lines.push(GOOD.replace("sip:u1@", &format!("sip:u{n}@")));
        }
        lines.insert(3, "{not json".to_owned()); // line 4
        lines.insert(7, GOOD.replace("resource-lists\",\"name", "nope\",\"name")); // line 8
        lines.insert(9, String::new()); // line 10, blank: skipped, not a failure
        // Uniqueness failure: the same entry twice in one list (line 12).
        lines.insert(
            11,
            GOOD.replace(
                "<entry uri=\\\"sip:u7@example.com\\\"/>",
                "<entry uri=\\\"sip:u7@example.com\\\"/><entry uri=\\\"sip:u7@example.com\\\"/>",
            ),
        );
        let file = write_file(dir.path(), "x.jsonl", &lines);
        let store = DocStore::open(&dir.path().join("data")).expect("open");
        let report = import_into(&store, std::slice::from_ref(&file), 10).expect("import");
        assert_eq!(report.imported, 25);
        assert_eq!(report.failed, 3);
        assert!(!report.ok());
        let at: Vec<u64> = report.failures.iter().map(|f| f.line).collect();
        assert_eq!(at, vec![4, 8, 12]);
        assert!(report.failures[1].reason.contains("unknown auid"));
        assert!(
            report.failures[2].reason.contains("409"),
            "{}",
            report.failures[2]
        );
        assert_eq!(report.commits, 3);
        assert_eq!(store.len().expect("len"), 25);
        let k = DocKey::user("resource-lists", "sip:u25@example.com", "index");
        let doc = store.get(&k).expect("get").expect("doc");
        assert!(String::from_utf8_lossy(&doc.bytes).contains("oma_blockedcontacts"));
    }

    #[test]
    fn missing_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tmp");
        let err = import(dir.path(), &[dir.path().join("absent.jsonl")]);
        assert!(matches!(err, Err(ImportError::Read(..))));
    }

    #[test]
    fn overlong_line_is_reported_not_loaded() {
        let mut r = BufReader::new(&b"abc\ndef"[..]);
        let mut buf = Vec::new();
        assert_eq!(read_line_bounded(&mut r, &mut buf).expect("read"), 4);
        assert_eq!(buf, b"abc\n");
        buf.clear();
        assert_eq!(read_line_bounded(&mut r, &mut buf).expect("read"), 3);
        buf.clear();
        assert_eq!(read_line_bounded(&mut r, &mut buf).expect("read"), 0);
    }
}
