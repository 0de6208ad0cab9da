//! Before the churn load: read the churned pairs' states back from the GLMS, and wait until the
//! IM Server knows every registered user's policy (D6 fails closed with 480 until then).
#![forbid(unsafe_code)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use super::table::ChurnTable;
use super::{ChurnConfig, EXAMPLES, record_us};
use crate::report::codes;
use crate::stats::{LatencySummary, new_histogram};
use crate::xcap::XcapClient;

/// Probe seq space of the policy wait (changers use their index).
const WAIT_PROBER: u64 = 0xff;
/// Outstanding probes in the policy wait.
const WAIT_WINDOW: usize = 64;
/// A policy-wait probe without an answer after this long is sent again.
const WAIT_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Reads every pair's state back from the GLMS (GET of the entry: 200 present, 404 absent);
/// a previous run may have changed it. Returns how many differ from the data set.
pub fn reconcile(cfg: &ChurnConfig, table: &ChurnTable) -> anyhow::Result<usize> {
    let mut client = XcapClient::new(cfg.root.clone(), cfg.http_timeout);
    let mut differing = 0;
    for i in 0..table.len() as u32 {
        let Some((recipient, sender)) = table.pair(i) else {
            continue;
        };
        let owner = cfg.aor(recipient);
        let path = cfg.root.blocked_entry_path(&owner, &cfg.aor(sender));
        let response = client
            .request("GET", &path, Some(&owner), None)
            .with_context(|| format!("GET {path} on the GLMS"))?;
        let blocked = match response.status {
            200 => true,
            404 => false,
            status => bail!(
                "GET {path} answered {status} ({}); was the data set imported into the GLMS (`imserver glms import`)?",
                String::from_utf8_lossy(&response.body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ),
        };
        if table.reconcile(i, blocked) {
            differing += 1;
        }
    }
    Ok(differing)
}

/// The outcome of waiting for the server to know every registered user's policy (D6).
#[derive(Clone, Debug, Serialize)]
pub struct PolicyWait {
    pub users: usize,
    pub known: usize,
    /// Probes answered 480 (or 503) and sent again.
    pub retries: u64,
    pub lost: u64,
    pub elapsed_ms: u64,
    pub responses_by_code: BTreeMap<String, u64>,
    /// Users still unknown (or answered something else) when the wait ended; the first few.
    pub unresolved: Vec<String>,
    /// Time from the start of the wait until each user's policy was known.
    pub known_after_us: LatencySummary,
}

/// Probes every user in `users` (from `sender_of(user)`, a sender it does not block) until it
/// is answered with 200 or the block code, retrying 480/503 with a growing back-off (20 ms
/// to 640 ms), within `bound`.
pub fn wait_for_policies(
    cfg: &ChurnConfig,
    users: &[u32],
    sender_of: impl Fn(u32) -> u32,
    bound: Duration,
) -> anyhow::Result<PolicyWait> {
    let mut socket = cfg
        .probe_socket()
        .context("opening the policy-wait probe socket")?;
    let start = Instant::now();
    let deadline = start + bound;
    let mut queue: BinaryHeap<Reverse<(Instant, u32, u32)>> =
        users.iter().map(|&u| Reverse((start, u, 0))).collect();
    let mut outstanding: HashMap<u64, (u32, u32, Instant)> = HashMap::new();
    let mut codes_seen: BTreeMap<u16, u64> = BTreeMap::new();
    let mut failed: Vec<(u32, u16)> = Vec::new();
    let mut known_after = new_histogram();
    let (mut known, mut retries, mut lost, mut seq) = (0usize, 0u64, 0u64, WAIT_PROBER << 40);
    // Bounded by `deadline`: every round waits at most 5 ms.
    while (!queue.is_empty() || !outstanding.is_empty()) && Instant::now() < deadline {
        let now = Instant::now();
        while outstanding.len() < WAIT_WINDOW {
            match queue.peek() {
                Some(Reverse((due, _, _))) if *due <= now => {}
                _ => break,
            }
            let Some(Reverse((_, user, attempt))) = queue.pop() else {
                break;
            };
            seq += 1;
            socket
                .send(seq, sender_of(user), user)
                .context("sending a policy-wait probe")?;
            outstanding.insert(seq, (user, attempt, now));
        }
        let mut answers = Vec::new();
        socket.receive(
            now + Duration::from_millis(5),
            |seq, code, at| answers.push((seq, code, at)),
            || false,
        )?;
        for (seq, code, at) in answers {
            let Some((user, attempt, _)) = outstanding.remove(&seq) else {
                continue;
            };
            *codes_seen.entry(code).or_default() += 1;
            if code == 200 || code == cfg.block_code {
                known += 1;
                record_us(&mut known_after, at.saturating_duration_since(start));
            } else if code == 480 || code == 503 {
                retries += 1;
                // 20 ms doubling to 640 ms: the server is busy fetching policies, and a
                // tight retry loop would compete with that work.
                let backoff = Duration::from_millis(20 << attempt.min(5));
                queue.push(Reverse((at + backoff, user, attempt + 1)));
            } else {
                failed.push((user, code));
            }
        }
        let now = Instant::now();
        let expired: Vec<u64> = outstanding
            .iter()
            .filter(|(_, (_, _, sent))| now.saturating_duration_since(*sent) > WAIT_PROBE_TIMEOUT)
            .map(|(&seq, _)| seq)
            .collect();
        for seq in expired {
            if let Some((user, attempt, _)) = outstanding.remove(&seq) {
                lost += 1;
                queue.push(Reverse((now, user, attempt + 1)));
            }
        }
    }
    let mut unresolved: Vec<String> = failed
        .iter()
        .map(|(user, code)| format!("u{user} answered {code}"))
        .collect();
    unresolved.extend(
        queue
            .iter()
            .map(|Reverse((_, user, _))| *user)
            .chain(outstanding.values().map(|(user, _, _)| *user))
            .map(|user| format!("u{user} still unknown")),
    );
    unresolved.truncate(EXAMPLES);
    Ok(PolicyWait {
        users: users.len(),
        known,
        retries,
        lost,
        elapsed_ms: start.elapsed().as_millis() as u64,
        responses_by_code: codes(&codes_seen),
        unresolved,
        known_after_us: LatencySummary::of(&known_after),
    })
}
