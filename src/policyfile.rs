//! Static blocked lists from a file, for labs and benchmarks without a GLMS.
//!
//! The format is the load generator's `policy.jsonl` (loadgen/README.md): an optional header
//! object with a `format` key, then one object per user,
//! `{"xui":"sip:u1@example.com","blocked":["sip:u7@example.com"]}`; other keys are ignored
//! (ISB comes from PUBLISH, bindings from REGISTER, as in production). Every user in the file
//! becomes known with a known policy (D6 satisfied): without a binding they get 480, not 404.
#![forbid(unsafe_code)]

use std::io::BufRead;
use std::path::Path;

use serde::Deserialize;

use crate::policy::{Identity, PolicyTable, UserPolicy};

#[derive(Deserialize)]
struct Line {
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    xui: Option<String>,
    #[serde(default)]
    blocked: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyFileError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Line {
        path: String,
        line: usize,
        message: String,
    },
}

/// Loads the file into a new table (bulk-built, one pass per shard).
pub fn load(path: &Path) -> Result<PolicyTable, PolicyFileError> {
    let p = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| PolicyFileError::Io {
        path: p.clone(),
        source,
    })?;
    let mut entries = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| PolicyFileError::Io {
            path: p.clone(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let err = |message: String| PolicyFileError::Line {
            path: p.clone(),
            line: i + 1,
            message,
        };
        let parsed: Line = serde_json::from_str(&line).map_err(|e| err(e.to_string()))?;
        if parsed.format.is_some() {
            continue;
        }
        let xui = parsed.xui.ok_or_else(|| err("missing \"xui\"".into()))?;
        let user = Identity::parse(xui.as_bytes()).map_err(|e| err(format!("xui {xui}: {e}")))?;
        let mut b = UserPolicy::builder().known();
        for id in &parsed.blocked {
            let id =
                Identity::parse(id.as_bytes()).map_err(|e| err(format!("blocked {id}: {e}")))?;
            b = b.block(&id);
        }
        let policy = b.build().map_err(|e| err(e.to_string()))?;
        entries.push((user, policy));
    }
    Ok(PolicyTable::from_entries(entries))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Verdict;

    #[test]
    fn loads_blocked_lists_and_reports_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("policy.jsonl");
        std::fs::write(
            &f,
            "{\"format\":\"loadgen-policy/1\",\"users\":2}\n\
             {\"xui\":\"sip:u1@example.com\",\"blocked\":[\"sip:u2@example.com\"],\"isb\":false,\"registered\":true}\n\
             {\"xui\":\"sip:u2@example.com\",\"blocked\":[]}\n",
        )
        .unwrap();
        let t = load(&f).unwrap();
        assert_eq!(t.len(), 2);
        t.with(b"u1@example.com", |p| {
            let p = p.expect("u1 known");
            assert!(p.policy_known);
            assert_eq!(p.decide(b"u2@example.com"), Verdict::Blocked);
            assert_eq!(p.decide(b"u3@example.com"), Verdict::Unavailable);
        });
        std::fs::write(
            &f,
            "{\"xui\":\"sip:u1@example.com\"}\n{\"xui\":\"mailto:x\"}\n",
        )
        .unwrap();
        let Err(e) = load(&f) else {
            panic!("a mailto: xui must be refused")
        };
        let e = e.to_string();
        assert!(e.contains(":2:"), "{e}");
    }
}
