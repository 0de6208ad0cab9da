//! Durable state under `--data` (SPEC D9, D11; issue: "SIGKILL and restart lose nothing").
//!
//! Two redb files:
//! - `state.redb`: registrar bindings and service-settings publications, one row per AoR
//!   (serde JSON of the sans-IO cores' own types). Only the slow path writes it, in batches:
//!   one transaction per burst of requests, committed (fsync) *before* the responses of that
//!   burst are sent, so an acknowledged change survives a SIGKILL.
//! - `credentials.redb`: Digest HA1 hashes, written by `imserver user add/remove` and read by
//!   the server at start-up and whenever the file changes. Each side opens it only briefly, so
//!   the command works while the server runs.
//!
//! Expired rows are dropped when state is restored (the cores' `restore` does that), so a
//! restarted server comes back with its unexpired bindings and publications only.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use redb::{Database, ReadableTable, TableDefinition};

use crate::auth::Credentials;
use crate::registrar::Binding;
use crate::settings::Publication;
use crate::subscriber::CacheEntry;

const BINDINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("bindings");
const PUBLICATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("publications");
const CREDENTIALS: TableDefinition<&str, &[u8]> = TableDefinition::new("credentials");
const POLICY_CACHE: TableDefinition<&str, &[u8]> = TableDefinition::new("policy_cache");
const CREDENTIALS_KEY: &str = "all";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create data directory {0}: {1}")]
    Dir(PathBuf, std::io::Error),
    #[error("database {0}: {1}")]
    Db(PathBuf, String),
    #[error("corrupt row for {key} in {table}: {message}")]
    Corrupt {
        table: &'static str,
        key: String,
        message: String,
    },
}

fn db_err(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(path.to_owned(), e.to_string())
}

/// One change of one AoR: the new rows, or `None` when the AoR has none left.
pub struct Batch {
    pub bindings: Vec<(String, Option<Vec<Binding>>)>,
    pub publications: Vec<(String, Option<Vec<Publication>>)>,
    /// The GLMS documents and ETags each user's compiled policy came from (D6).
    pub cache: Vec<(String, Option<CacheEntry>)>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty() && self.publications.is_empty() && self.cache.is_empty()
    }
}

/// The slow path's durable state.
pub struct Store {
    db: Database,
    path: PathBuf,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Dir(dir.to_owned(), e))?;
        let path = dir.join("state.redb");
        let db = Database::create(&path).map_err(|e| db_err(&path, e))?;
        // Create the tables so readers never meet a missing one.
        let tx = db.begin_write().map_err(|e| db_err(&path, e))?;
        tx.open_table(BINDINGS).map_err(|e| db_err(&path, e))?;
        tx.open_table(PUBLICATIONS).map_err(|e| db_err(&path, e))?;
        tx.open_table(POLICY_CACHE).map_err(|e| db_err(&path, e))?;
        tx.commit().map_err(|e| db_err(&path, e))?;
        Ok(Self { db, path })
    }

    /// Writes a batch in one durable transaction.
    pub fn write(&self, batch: &Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let p = &self.path;
        let tx = self.db.begin_write().map_err(|e| db_err(p, e))?;
        {
            let mut t = tx.open_table(BINDINGS).map_err(|e| db_err(p, e))?;
            for (aor, rows) in &batch.bindings {
                put(&mut t, aor, rows.as_ref()).map_err(|e| db_err(p, e))?;
            }
            let mut t = tx.open_table(PUBLICATIONS).map_err(|e| db_err(p, e))?;
            for (aor, rows) in &batch.publications {
                put(&mut t, aor, rows.as_ref()).map_err(|e| db_err(p, e))?;
            }
            let mut t = tx.open_table(POLICY_CACHE).map_err(|e| db_err(p, e))?;
            for (aor, entry) in &batch.cache {
                put(&mut t, aor, entry.as_ref()).map_err(|e| db_err(p, e))?;
            }
        }
        tx.commit().map_err(|e| db_err(p, e))
    }

    pub fn bindings(&self) -> Result<Vec<(String, Vec<Binding>)>, StoreError> {
        self.load(BINDINGS, "bindings")
    }

    pub fn publications(&self) -> Result<Vec<(String, Vec<Publication>)>, StoreError> {
        self.load(PUBLICATIONS, "publications")
    }

    pub fn policy_cache(&self) -> Result<Vec<(String, CacheEntry)>, StoreError> {
        self.load(POLICY_CACHE, "policy_cache")
    }

    fn load<T: serde::de::DeserializeOwned>(
        &self,
        def: TableDefinition<&str, &[u8]>,
        name: &'static str,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let p = &self.path;
        let tx = self.db.begin_read().map_err(|e| db_err(p, e))?;
        let t = tx.open_table(def).map_err(|e| db_err(p, e))?;
        let mut out = Vec::new();
        for row in t.iter().map_err(|e| db_err(p, e))? {
            let (k, v) = row.map_err(|e| db_err(p, e))?;
            let key = k.value().to_owned();
            let value = serde_json::from_slice(v.value()).map_err(|e| StoreError::Corrupt {
                table: name,
                key: key.clone(),
                message: e.to_string(),
            })?;
            out.push((key, value));
        }
        Ok(out)
    }
}

fn put<T: serde::Serialize>(
    t: &mut redb::Table<&str, &[u8]>,
    key: &str,
    rows: Option<&T>,
) -> Result<(), String> {
    match rows {
        Some(rows) => {
            let bytes = serde_json::to_vec(rows).map_err(|e| e.to_string())?;
            t.insert(key, bytes.as_slice()).map_err(|e| e.to_string())?;
        }
        None => {
            t.remove(key).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// The credentials file. Opened briefly by each user so the CLI and the server can share it.
pub struct CredentialStore {
    path: PathBuf,
}

impl CredentialStore {
    pub fn new(dir: &Path) -> Self {
        Self {
            path: dir.join("credentials.redb"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the file, retrying for a while when the other side holds it.
    fn open(&self) -> Result<Database, StoreError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Dir(dir.to_owned(), e))?;
        }
        let mut last = None;
        for _ in 0..100 {
            match Database::create(&self.path) {
                Ok(db) => return Ok(db),
                Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                    last = Some("database is open elsewhere".to_owned());
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(db_err(&self.path, e)),
            }
        }
        Err(db_err(&self.path, last.unwrap_or_default()))
    }

    /// Every credential; an absent file means none.
    pub fn load(&self) -> Result<Credentials, StoreError> {
        if !self.path.exists() {
            return Ok(Credentials::new());
        }
        let db = self.open()?;
        let p = &self.path;
        let tx = db.begin_read().map_err(|e| db_err(p, e))?;
        let t = match tx.open_table(CREDENTIALS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Credentials::new()),
            Err(e) => return Err(db_err(p, e)),
        };
        match t.get(CREDENTIALS_KEY).map_err(|e| db_err(p, e))? {
            Some(v) => Credentials::from_bytes(v.value()).map_err(|e| StoreError::Corrupt {
                table: "credentials",
                key: CREDENTIALS_KEY.into(),
                message: e.to_string(),
            }),
            None => Ok(Credentials::new()),
        }
    }

    /// Read-modify-write of the credentials in one durable transaction.
    pub fn update<R>(&self, f: impl FnOnce(&mut Credentials) -> R) -> Result<R, StoreError> {
        let db = self.open()?;
        let p = &self.path;
        let tx = db.begin_write().map_err(|e| db_err(p, e))?;
        let r = {
            let mut t = tx.open_table(CREDENTIALS).map_err(|e| db_err(p, e))?;
            let mut creds = match t.get(CREDENTIALS_KEY).map_err(|e| db_err(p, e))? {
                Some(v) => Credentials::from_bytes(v.value()).map_err(|e| StoreError::Corrupt {
                    table: "credentials",
                    key: CREDENTIALS_KEY.into(),
                    message: e.to_string(),
                })?,
                None => Credentials::new(),
            };
            let r = f(&mut creds);
            let bytes = creds.to_bytes();
            t.insert(CREDENTIALS_KEY, bytes.as_slice())
                .map_err(|e| db_err(p, e))?;
            r
        };
        tx.commit().map_err(|e| db_err(p, e))?;
        Ok(r)
    }

    /// The file's modification time, to notice changes made by `imserver user`.
    pub fn modified(&self) -> Option<std::time::SystemTime> {
        std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok()
    }
}

#[cfg(test)]
mod tests;
