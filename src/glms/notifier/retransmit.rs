//! Sans-IO helpers of the SIP driver: NOTIFY retransmission over UDP (RFC 3261 §17.1.2.2,
//! Timers E and F) and the cache that answers a retransmitted SUBSCRIBE with the response
//! already sent (§17.2.2, absorbed without re-running the request).
#![forbid(unsafe_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

/// RFC 3261 §17.1.1.1 T1 and T2.
pub const T1_MS: u64 = 500;
pub const T2_MS: u64 = 4_000;
/// Timer F = 64·T1.
pub const TIMER_F_MS: u64 = 64 * T1_MS;

#[derive(Clone, Debug)]
struct ClientTxn {
    to: SocketAddr,
    bytes: Vec<u8>,
    next_ms: u64,
    interval_ms: u64,
    give_up_ms: u64,
}

/// Non-INVITE client transactions of our NOTIFYs, keyed by (Call-ID, CSeq).
#[derive(Debug, Default)]
pub struct Retransmitter {
    txns: HashMap<(String, u32), ClientTxn>,
    max: usize,
}

impl Retransmitter {
    pub fn new(max: usize) -> Retransmitter {
        Retransmitter {
            txns: HashMap::new(),
            max,
        }
    }

    pub fn len(&self) -> usize {
        self.txns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txns.is_empty()
    }

    /// A NOTIFY was just sent: retransmit it at T1, 2·T1, ... up to T2, until Timer F.
    /// Past the table limit it is sent once only (the core's Timer F still ends it).
    pub fn sent(&mut self, now_ms: u64, call_id: &str, cseq: u32, to: SocketAddr, bytes: Vec<u8>) {
        if self.txns.len() >= self.max {
            return;
        }
        self.txns.insert(
            (call_id.to_owned(), cseq),
            ClientTxn {
                to,
                bytes,
                next_ms: now_ms + T1_MS,
                interval_ms: T1_MS,
                give_up_ms: now_ms + TIMER_F_MS,
            },
        );
    }

    /// A response arrived: a provisional one slows retransmission to T2 (§17.1.2.2,
    /// Proceeding), a final one ends the transaction.
    pub fn on_response(&mut self, now_ms: u64, call_id: &str, cseq: u32, code: u16) {
        let key = (call_id.to_owned(), cseq);
        if code >= 200 {
            self.txns.remove(&key);
        } else if let Some(t) = self.txns.get_mut(&key) {
            t.interval_ms = T2_MS;
            t.next_ms = now_ms + T2_MS;
        }
    }

    /// The datagrams due now.
    pub fn poll(&mut self, now_ms: u64) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut out = Vec::new();
        self.txns.retain(|_, t| {
            if now_ms >= t.give_up_ms {
                return false;
            }
            if now_ms >= t.next_ms {
                out.push((t.to, t.bytes.clone()));
                t.interval_ms = (t.interval_ms * 2).min(T2_MS);
                t.next_ms = now_ms + t.interval_ms;
            }
            true
        });
        out
    }

    pub fn next_wakeup_ms(&self) -> Option<u64> {
        self.txns
            .values()
            .map(|t| t.next_ms.min(t.give_up_ms))
            .min()
    }
}

/// Responses to recent SUBSCRIBEs, keyed by the request's transaction (Call-ID, From-tag,
/// CSeq, top branch), kept for Timer F so a retransmission gets the same answer (and the
/// same To-tag) instead of creating a second subscription.
#[derive(Debug, Default)]
pub struct ResponseCache {
    map: HashMap<String, (SocketAddr, Vec<u8>)>,
    order: VecDeque<(u64, String)>,
    max: usize,
}

impl ResponseCache {
    pub fn new(max: usize) -> ResponseCache {
        ResponseCache {
            map: HashMap::new(),
            order: VecDeque::new(),
            max,
        }
    }

    pub fn key(call_id: &[u8], from_tag: &[u8], cseq: u32, branch: &[u8]) -> String {
        let mut k = String::with_capacity(call_id.len() + from_tag.len() + branch.len() + 16);
        k.push_str(&String::from_utf8_lossy(call_id));
        k.push('\u{0}');
        k.push_str(&String::from_utf8_lossy(from_tag));
        k.push('\u{0}');
        k.push_str(&cseq.to_string());
        k.push('\u{0}');
        k.push_str(&String::from_utf8_lossy(branch));
        k
    }

    pub fn get(&self, key: &str) -> Option<&(SocketAddr, Vec<u8>)> {
        self.map.get(key)
    }

    pub fn put(&mut self, now_ms: u64, key: String, to: SocketAddr, bytes: Vec<u8>) {
        self.expire(now_ms);
        while self.map.len() >= self.max {
            let Some((_, k)) = self.order.pop_front() else {
                break;
            };
            self.map.remove(&k);
        }
        if self.map.insert(key.clone(), (to, bytes)).is_none() {
            self.order.push_back((now_ms + TIMER_F_MS, key));
        }
    }

    pub fn expire(&mut self, now_ms: u64) {
        while let Some((t, _)) = self.order.front() {
            if *t > now_ms {
                break;
            }
            if let Some((_, k)) = self.order.pop_front() {
                self.map.remove(&k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:5060".parse().unwrap()
    }

    #[test]
    fn timer_e_doubles_to_t2_and_stops_at_f() {
        let mut r = Retransmitter::new(8);
        r.sent(0, "c", 1, addr(), b"N".to_vec());
        assert!(r.poll(499).is_empty());
        let mut sends = Vec::new();
        let mut now = 0;
        // Bounded walk over virtual time.
        while now <= TIMER_F_MS + 1000 {
            if !r.poll(now).is_empty() {
                sends.push(now);
            }
            now += 50;
        }
        assert_eq!(&sends[..4], &[500, 1500, 3500, 7500]);
        // After reaching T2 the gap stays 4 s.
        assert_eq!(sends[4] - sends[3], T2_MS);
        assert!(*sends.last().unwrap() < TIMER_F_MS);
        assert!(r.is_empty());
    }

    #[test]
    fn final_response_stops_provisional_slows() {
        let mut r = Retransmitter::new(8);
        r.sent(0, "c", 1, addr(), b"N".to_vec());
        r.on_response(100, "c", 1, 100);
        assert!(r.poll(600).is_empty());
        assert_eq!(r.poll(4100).len(), 1);
        r.on_response(4200, "c", 1, 200);
        assert!(r.is_empty());
        assert_eq!(r.next_wakeup_ms(), None);
    }

    #[test]
    fn response_cache_bounded_and_expiring() {
        let mut c = ResponseCache::new(2);
        let k = |i: u32| ResponseCache::key(b"c", b"f", i, b"z9hG4bK1");
        c.put(0, k(1), addr(), b"a".to_vec());
        c.put(0, k(2), addr(), b"b".to_vec());
        c.put(0, k(3), addr(), b"c".to_vec());
        assert!(c.get(&k(1)).is_none());
        assert_eq!(c.get(&k(3)).unwrap().1, b"c");
        c.expire(TIMER_F_MS);
        assert!(c.get(&k(3)).is_none());
    }
}
