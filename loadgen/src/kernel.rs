//! The kernel's view of the run: `/proc/net/snmp` UDP counters (system-wide) before and after,
//! and the per-socket drop counters of the generator's own sockets from `/proc/net/udp` and
//! `/proc/net/udp6`. They tell a reader whether datagrams died in the kernel, and whose.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use serde::Serialize;

/// The `Udp:` counters we report.
pub const UDP_COUNTERS: [&str; 6] = [
    "InDatagrams",
    "OutDatagrams",
    "NoPorts",
    "InErrors",
    "RcvbufErrors",
    "SndbufErrors",
];

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UdpCounters(pub BTreeMap<String, u64>);

impl UdpCounters {
    /// Reads `/proc/net/snmp`; empty when unavailable (not Linux, restricted /proc).
    pub fn read() -> Self {
        std::fs::read_to_string("/proc/net/snmp")
            .map(|text| Self::parse(&text))
            .unwrap_or_default()
    }

    /// Parses the two `Udp:` lines (names, then values).
    pub fn parse(snmp: &str) -> Self {
        let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
        let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
            return Self::default();
        };
        let map = names
            .split_whitespace()
            .zip(values.split_whitespace())
            .skip(1)
            .filter(|(name, _)| UDP_COUNTERS.contains(name))
            .filter_map(|(name, value)| Some((name.to_owned(), value.parse().ok()?)))
            .collect();
        Self(map)
    }

    /// `self - before`, counter by counter.
    pub fn delta(&self, before: &UdpCounters) -> UdpCounters {
        let map = self
            .0
            .iter()
            .map(|(name, &after)| {
                (
                    name.clone(),
                    after.saturating_sub(before.0.get(name).copied().unwrap_or(0)),
                )
            })
            .collect();
        UdpCounters(map)
    }
}

/// Sum of the `drops` column of `/proc/net/udp{,6}` rows whose local port is one of `ports`
/// (bound to a loopback address).
pub fn socket_drops(ports: &[u16]) -> u64 {
    ["/proc/net/udp", "/proc/net/udp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|text| parse_socket_drops(&text, ports))
        .sum()
}

pub fn parse_socket_drops(table: &str, ports: &[u16]) -> u64 {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:tm retrnsmt uid timeout inode ref pointer drops
            let local = fields.get(1)?;
            let port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            let drops: u64 = fields.last()?.parse().ok()?;
            ports.contains(&port).then_some(drops)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNMP: &str = "Ip: Forwarding DefaultTTL\nIp: 1 64\nUdp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\nUdp: 100 2 3 90 1 0 0 0 0\nUdpLite: InDatagrams NoPorts\nUdpLite: 0 0\n";

    #[test]
    fn snmp_udp_counters_and_delta() {
        let before = UdpCounters::parse(SNMP);
        assert_eq!(before.0.get("InDatagrams"), Some(&100));
        assert_eq!(before.0.get("RcvbufErrors"), Some(&1));
        assert_eq!(before.0.get("InCsumErrors"), None);
        let after = UdpCounters::parse(&SNMP.replace("Udp: 100 2 3 90 1", "Udp: 150 2 5 140 4"));
        let delta = after.delta(&before);
        assert_eq!(delta.0.get("InDatagrams"), Some(&50));
        assert_eq!(delta.0.get("InErrors"), Some(&2));
        assert_eq!(delta.0.get("RcvbufErrors"), Some(&3));
        assert_eq!(delta.0.get("NoPorts"), Some(&0));
    }

    #[test]
    fn own_socket_drops() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
  1: 0100007F:13C4 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1234 2 0000000000000000 7\n\
  2: 0100007F:9C40 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1235 2 0000000000000000 5\n";
        assert_eq!(parse_socket_drops(table, &[5060]), 7);
        assert_eq!(parse_socket_drops(table, &[5060, 40000]), 12);
        assert_eq!(parse_socket_drops(table, &[1]), 0);
    }
}
