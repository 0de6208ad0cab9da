//! Trusted peers: the address ranges of the SIP/IP Core (SPEC D7).
//!
//! A request from inside these ranges is believed: its `P-Asserted-Identity` counts (RFC 3325
//! §5, "Trust Domain") and it is not challenged. Anyone else is a UE and proves who it is with
//! Digest. An IPv4-mapped IPv6 peer (`::ffff:10.1.2.3`, what a dual-stack socket reports) is
//! matched against the IPv4 ranges.
#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error("not an IP address")]
    BadAddress,
    #[error("bad prefix length")]
    BadPrefix,
    /// `10.0.0.1/8`: almost always a typo for `10.0.0.0/8` or `10.0.0.1/32`; refused.
    #[error("address has bits set beyond the prefix")]
    HostBitsSet,
}

/// One range: a network address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cidr {
    V4 { network: u32, prefix_len: u8 },
    V6 { network: u128, prefix_len: u8 },
}

fn mask_v4(prefix_len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0)
}

fn mask_v6(prefix_len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix_len))
        .unwrap_or(0)
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `::1/128`, or a bare address (a /32 or /128).
    pub fn parse(text: &str) -> Result<Cidr, TrustError> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| TrustError::BadAddress)?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = match prefix {
            None => max,
            Some(p) => {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(TrustError::BadPrefix);
                }
                let n: u8 = p.parse().map_err(|_| TrustError::BadPrefix)?;
                if n > max {
                    return Err(TrustError::BadPrefix);
                }
                n
            }
        };
        match addr {
            IpAddr::V4(a) => {
                let bits = u32::from(a);
                if bits & !mask_v4(prefix_len) != 0 {
                    return Err(TrustError::HostBitsSet);
                }
                Ok(Cidr::V4 {
                    network: bits,
                    prefix_len,
                })
            }
            IpAddr::V6(a) => {
                let bits = u128::from(a);
                if bits & !mask_v6(prefix_len) != 0 {
                    return Err(TrustError::HostBitsSet);
                }
                Ok(Cidr::V6 {
                    network: bits,
                    prefix_len,
                })
            }
        }
    }

    /// Whether `ip` is inside this range. No allocation, no branches on the address family
    /// beyond the match.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self, normalise(ip)) {
            (
                Cidr::V4 {
                    network,
                    prefix_len,
                },
                IpAddr::V4(a),
            ) => u32::from(a) & mask_v4(*prefix_len) == *network,
            (
                Cidr::V6 {
                    network,
                    prefix_len,
                },
                IpAddr::V6(a),
            ) => u128::from(a) & mask_v6(*prefix_len) == *network,
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = TrustError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cidr::parse(s)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Cidr::V4 {
                network,
                prefix_len,
            } => write!(f, "{}/{}", Ipv4Addr::from(network), prefix_len),
            Cidr::V6 {
                network,
                prefix_len,
            } => write!(f, "{}/{}", Ipv6Addr::from(network), prefix_len),
        }
    }
}

/// `::ffff:a.b.c.d` is the IPv4 peer a.b.c.d seen through a dual-stack socket.
fn normalise(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

/// Parses one entry; the free-function form the config loader calls.
pub fn parse(text: &str) -> Result<Cidr, TrustError> {
    Cidr::parse(text)
}

/// The configured trusted ranges. Built once at configuration time; `contains` is a linear
/// scan over a handful of ranges, which beats any tree at the sizes a core network has.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustList {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl TrustList {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a list separated by commas and/or whitespace, e.g. `"127.0.0.1/32, ::1"`.
    pub fn parse_list(text: &str) -> Result<TrustList, TrustError> {
        let mut list = TrustList::new();
        for item in text.split([',', ' ', '\t', '\n']).filter(|s| !s.is_empty()) {
            list.push(Cidr::parse(item)?);
        }
        Ok(list)
    }

    pub fn push(&mut self, cidr: Cidr) {
        match cidr {
            Cidr::V4 {
                network,
                prefix_len,
            } => self.v4.push((network, mask_v4(prefix_len))),
            Cidr::V6 {
                network,
                prefix_len,
            } => self.v6.push((network, mask_v6(prefix_len))),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Whether the peer is in the SIP/IP Core. Allocation-free.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match normalise(ip) {
            IpAddr::V4(a) => {
                let bits = u32::from(a);
                self.v4.iter().any(|&(net, mask)| bits & mask == net)
            }
            IpAddr::V6(a) => {
                let bits = u128::from(a);
                self.v6.iter().any(|&(net, mask)| bits & mask == net)
            }
        }
    }
}

impl FromIterator<Cidr> for TrustList {
    fn from_iter<I: IntoIterator<Item = Cidr>>(iter: I) -> Self {
        let mut list = TrustList::new();
        for c in iter {
            list.push(c);
        }
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn parses_and_matches() {
        let list =
            TrustList::parse_list("127.0.0.1/32, 10.0.0.0/8 ::1/128\t2001:db8::/32, 192.0.2.7")
                .expect("valid");
        assert_eq!(list.len(), 5);
        for yes in [
            "127.0.0.1",
            "10.255.0.1",
            "::1",
            "2001:db8:1::5",
            "192.0.2.7",
            "::ffff:10.1.2.3",
        ] {
            assert!(list.contains(ip(yes)), "{yes}");
        }
        for no in [
            "127.0.0.2",
            "11.0.0.1",
            "::2",
            "2001:db9::1",
            "192.0.2.8",
            "::ffff:11.0.0.1",
        ] {
            assert!(!list.contains(ip(no)), "{no}");
        }
    }

    #[test]
    fn edges() {
        assert_eq!(
            parse("0.0.0.0/0"),
            Ok(Cidr::V4 {
                network: 0,
                prefix_len: 0
            })
        );
        assert!(parse("0.0.0.0/0").expect("any").contains(ip("203.0.113.9")));
        assert!(parse("::/0").expect("any").contains(ip("2001:db8::1")));
        assert!(!parse("::/0").expect("v6 only").contains(ip("10.0.0.1")));
        assert_eq!(parse("::1").expect("bare").to_string(), "::1/128");
        assert_eq!(parse("10.0.0.1/8"), Err(TrustError::HostBitsSet));
        assert_eq!(parse("10.0.0.0/33"), Err(TrustError::BadPrefix));
        assert_eq!(parse("10.0.0.0/"), Err(TrustError::BadPrefix));
        assert_eq!(parse("10.0.0.0/+8"), Err(TrustError::BadPrefix));
        assert_eq!(parse("::/129"), Err(TrustError::BadPrefix));
        assert_eq!(parse("example.com"), Err(TrustError::BadAddress));
        assert_eq!(parse(""), Err(TrustError::BadAddress));
        assert!(TrustList::new().is_empty());
        assert!(!TrustList::new().contains(ip("127.0.0.1")));
    }
}
