//! The deterministic data set: users `sip:u<N>@<domain>`, each with a blocked list whose sizes are
//! Zipf-skewed, an ISB flag and a "registered" flag. One in-memory [`Dataset`] is the single
//! source of truth: it writes the GLMS documents (`xcap.jsonl`) and the policy/expectations file
//! (`policy.jsonl`), and the generator either regenerates it from the same seed or reads
//! `policy.jsonl` back. The formats are documented in `loadgen/README.md`.
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use anyhow::{Context, bail, ensure};
use serde::{Deserialize, Serialize};

use crate::rng::{SplitMix64, Zipf};

/// Upper bounds, so a typo cannot ask for a data set that eats the machine.
pub const MAX_USERS: u32 = 10_000_000;
pub const MAX_BLOCKED_PER_USER: u32 = 10_000;
/// The format tag on the first line of `policy.jsonl`.
pub const POLICY_FORMAT: &str = "loadgen-policy/1";
/// The AUID and document name of the blocked list (RFC 4826 resource-lists, OMA list name).
pub const RESOURCE_LISTS_AUID: &str = "resource-lists";
pub const BLOCKED_LIST_NAME: &str = "oma_blockedcontacts";

/// What shapes a data set; the first line of `policy.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetParams {
    pub format: String,
    pub users: u32,
    pub seed: u64,
    pub domain: String,
    /// Blocked-list sizes are Zipf over 0..=max_blocked (size 0 is the most likely).
    pub max_blocked: u32,
    pub zipf_s: f64,
    /// Share of users with Incoming Session Barring on (every MESSAGE to them gets the block code).
    pub isb_share: f64,
    /// Share of users the generator never registers (MESSAGEs to them expect 480).
    pub unregistered_share: f64,
}

impl DatasetParams {
    pub fn new(users: u32, seed: u64) -> Self {
        Self {
            format: POLICY_FORMAT.to_owned(),
            users,
            seed,
            domain: "example.com".to_owned(),
            max_blocked: 50,
            zipf_s: 1.0,
            isb_share: 0.0,
            unregistered_share: 0.0,
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            self.format == POLICY_FORMAT,
            "unknown policy format {:?}",
            self.format
        );
        ensure!(
            (2..=MAX_USERS).contains(&self.users),
            "users must be in 2..={MAX_USERS}"
        );
        ensure!(
            self.max_blocked <= MAX_BLOCKED_PER_USER,
            "max_blocked over {MAX_BLOCKED_PER_USER}"
        );
        ensure!(
            self.max_blocked < self.users,
            "max_blocked must be below users"
        );
        ensure!(
            self.zipf_s.is_finite() && self.zipf_s >= 0.0,
            "zipf_s must be >= 0"
        );
        ensure!(
            (0.0..=1.0).contains(&self.isb_share),
            "isb_share must be in [0, 1]"
        );
        ensure!(
            (0.0..1.0).contains(&self.unregistered_share),
            "unregistered_share must be in [0, 1)"
        );
        ensure!(
            !self.domain.is_empty()
                && self
                    .domain
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'),
            "domain must be a plain host name"
        );
        Ok(())
    }
}

/// One user's policy. User numbers are 1-based (`u1` is index 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserPolicy {
    /// Sorted, distinct user numbers; never the user itself.
    pub blocked: Vec<u32>,
    pub isb: bool,
    pub registered: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub params: DatasetParams,
    users: Vec<UserPolicy>,
}

/// One line of `policy.jsonl` after the header.
#[derive(Serialize, Deserialize)]
struct PolicyLine {
    xui: String,
    blocked: Vec<String>,
    isb: bool,
    registered: bool,
}

/// One line of `xcap.jsonl`.
#[derive(Serialize, Deserialize)]
struct XcapLine<'a> {
    xui: &'a str,
    auid: &'a str,
    name: &'a str,
    doc: &'a str,
}

impl Dataset {
    /// Builds the data set from its parameters; the same parameters always give the same set.
    pub fn generate(params: DatasetParams) -> anyhow::Result<Self> {
        params.validate()?;
        let sizes = Zipf::new(params.max_blocked as usize + 1, params.zipf_s);
        let mut users = Vec::with_capacity(params.users as usize);
        for owner in 1..=params.users {
            let mut rng = SplitMix64::for_item(params.seed, 1, u64::from(owner));
            let size = sizes.sample(&mut rng) - 1;
            let mut blocked = Vec::with_capacity(size);
            // Bounded: at most 4x the wanted size in draws (duplicates and self are skipped).
            for _ in 0..size * 4 {
                if blocked.len() == size {
                    break;
                }
                let candidate = rng.below(u64::from(params.users)) as u32 + 1;
                if candidate != owner && !blocked.contains(&candidate) {
                    blocked.push(candidate);
                }
            }
            blocked.sort_unstable();
            let isb = rng.next_f64() < params.isb_share;
            let registered = rng.next_f64() >= params.unregistered_share;
            users.push(UserPolicy {
                blocked,
                isb,
                registered,
            });
        }
        Ok(Self { params, users })
    }

    pub fn user_count(&self) -> u32 {
        self.params.users
    }

    /// The policy of user `n` (1-based), if it exists.
    pub fn user(&self, n: u32) -> Option<&UserPolicy> {
        self.users.get((n as usize).checked_sub(1)?)
    }

    pub fn aor(&self, n: u32) -> String {
        format!("sip:u{n}@{}", self.params.domain)
    }

    /// True when `sender` is on `recipient`'s blocked list.
    pub fn is_blocked(&self, recipient: u32, sender: u32) -> bool {
        self.user(recipient)
            .is_some_and(|u| u.blocked.binary_search(&sender).is_ok())
    }

    /// The RFC 4826 resource-lists document carrying the `oma_blockedcontacts` list of user `n`.
    pub fn blocked_list_document(&self, n: u32) -> String {
        let mut doc = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
             <resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\">\
             <list name=\"oma_blockedcontacts\">",
        );
        if let Some(user) = self.user(n) {
            for blocked in &user.blocked {
                // URIs are `sip:u<digits>@<host name>`: nothing to escape.
                let _ = write!(
                    doc,
                    "<entry uri=\"sip:u{blocked}@{}\"/>",
                    self.params.domain
                );
            }
        }
        doc.push_str("</list></resource-lists>");
        doc
    }

    /// Writes `xcap.jsonl` and `policy.jsonl` into `dir` (created if missing).
    pub fn write_dir(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let xcap_path = dir.join("xcap.jsonl");
        let mut xcap = BufWriter::new(std::fs::File::create(&xcap_path)?);
        for n in 1..=self.user_count() {
            let xui = self.aor(n);
            let doc = self.blocked_list_document(n);
            let line = XcapLine {
                xui: &xui,
                auid: RESOURCE_LISTS_AUID,
                name: "index",
                doc: &doc,
            };
            serde_json::to_writer(&mut xcap, &line)?;
            xcap.write_all(b"\n")?;
        }
        xcap.flush()?;
        let mut policy = BufWriter::new(std::fs::File::create(dir.join("policy.jsonl"))?);
        serde_json::to_writer(&mut policy, &self.params)?;
        policy.write_all(b"\n")?;
        for n in 1..=self.user_count() {
            let Some(user) = self.user(n) else { continue };
            let line = PolicyLine {
                xui: self.aor(n),
                blocked: user.blocked.iter().map(|&b| self.aor(b)).collect(),
                isb: user.isb,
                registered: user.registered,
            };
            serde_json::to_writer(&mut policy, &line)?;
            policy.write_all(b"\n")?;
        }
        policy.flush()?;
        Ok(())
    }

    /// Reads `policy.jsonl` (or a directory holding it) back into a data set.
    pub fn read_policy(path: &Path) -> anyhow::Result<Self> {
        let file_path = if path.is_dir() {
            path.join("policy.jsonl")
        } else {
            path.to_owned()
        };
        let file = std::fs::File::open(&file_path)
            .with_context(|| format!("opening {}", file_path.display()))?;
        let mut lines = BufReader::new(file).lines();
        let header = lines.next().context("empty policy file")??;
        let params: DatasetParams =
            serde_json::from_str(&header).context("policy file header line")?;
        params.validate()?;
        let mut users = Vec::with_capacity(params.users as usize);
        for (index, line) in lines.enumerate() {
            ensure!(
                index < params.users as usize,
                "more user lines than the header's users"
            );
            let line = line?;
            let parsed: PolicyLine = serde_json::from_str(&line)
                .with_context(|| format!("policy line {}", index + 2))?;
            let n = user_number(&parsed.xui, &params.domain)?;
            ensure!(
                n as usize == index + 1,
                "user lines must be in order: got {}",
                parsed.xui
            );
            let mut blocked = parsed
                .blocked
                .iter()
                .map(|uri| user_number(uri, &params.domain))
                .collect::<anyhow::Result<Vec<u32>>>()?;
            blocked.sort_unstable();
            blocked.dedup();
            users.push(UserPolicy {
                blocked,
                isb: parsed.isb,
                registered: parsed.registered,
            });
        }
        ensure!(
            users.len() == params.users as usize,
            "fewer user lines than the header's users"
        );
        Ok(Self { params, users })
    }
}

/// `sip:u<N>@<domain>` -> N.
fn user_number(uri: &str, domain: &str) -> anyhow::Result<u32> {
    let Some(rest) = uri.strip_prefix("sip:u") else {
        bail!("not a data-set identity: {uri}")
    };
    let Some((digits, host)) = rest.split_once('@') else {
        bail!("not a data-set identity: {uri}")
    };
    ensure!(
        host.eq_ignore_ascii_case(domain),
        "identity {uri} is outside domain {domain}"
    );
    let n: u32 = digits
        .parse()
        .with_context(|| format!("bad user number in {uri}"))?;
    ensure!(n >= 1, "user numbers start at 1: {uri}");
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(seed: u64) -> Dataset {
        let mut params = DatasetParams::new(2000, seed);
        params.max_blocked = 30;
        params.isb_share = 0.05;
        params.unregistered_share = 0.1;
        Dataset::generate(params).expect("valid params")
    }

    #[test]
    fn same_seed_same_set_other_seed_other_set() {
        assert_eq!(small(1), small(1));
        assert_ne!(small(1), small(2));
    }

    #[test]
    fn blocked_lists_are_sane() {
        let set = small(3);
        for n in 1..=set.user_count() {
            let user = set.user(n).expect("exists");
            assert!(!user.blocked.contains(&n), "u{n} blocks itself");
            assert!(
                user.blocked.windows(2).all(|w| w[0] < w[1]),
                "unsorted or duplicate"
            );
            assert!(user.blocked.iter().all(|&b| (1..=2000).contains(&b)));
            assert!(user.blocked.len() <= 30);
        }
    }

    #[test]
    fn sizes_are_zipf_skewed() {
        let set = small(4);
        let mut counts = [0u32; 31];
        for n in 1..=set.user_count() {
            counts[set.user(n).expect("exists").blocked.len()] += 1;
        }
        // Size k has weight 1/(k+1): empty lists are most common, then size 1 at about half.
        assert!(counts[0] > counts[1] && counts[1] > counts[5] && counts[5] > counts[29]);
        let ratio = f64::from(counts[0]) / f64::from(counts[1]);
        assert!((1.5..2.6).contains(&ratio), "ratio was {ratio}");
    }

    #[test]
    fn policy_file_round_trips_and_documents_match() {
        let set = small(5);
        let dir = std::env::temp_dir().join(format!("loadgen-dataset-test-{}", std::process::id()));
        set.write_dir(&dir).expect("write");
        let back = Dataset::read_policy(&dir).expect("read");
        assert_eq!(set, back);
        let xcap = std::fs::read_to_string(dir.join("xcap.jsonl")).expect("xcap");
        assert_eq!(xcap.lines().count(), 2000);
        let n = (1..=2000)
            .find(|&n| set.user(n).is_some_and(|u| u.blocked.len() > 2))
            .expect("one");
        let line: serde_json::Value =
            serde_json::from_str(xcap.lines().nth(n as usize - 1).expect("line")).expect("json");
        let doc = line["doc"].as_str().expect("doc");
        assert!(doc.contains("<list name=\"oma_blockedcontacts\">"));
        for blocked in &set.user(n).expect("exists").blocked {
            assert!(doc.contains(&format!("<entry uri=\"sip:u{blocked}@example.com\"/>")));
        }
        assert_eq!(line["xui"], format!("sip:u{n}@example.com"));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn user_numbers_parse_strictly() {
        assert_eq!(
            user_number("sip:u17@example.com", "example.com").ok(),
            Some(17)
        );
        assert!(user_number("sip:u17@other.com", "example.com").is_err());
        assert!(user_number("sip:bob@example.com", "example.com").is_err());
        assert!(user_number("sip:u0@example.com", "example.com").is_err());
    }
}
