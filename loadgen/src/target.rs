//! Loopback-only address parsing: the generator refuses to aim load at anything but this host.
#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Why an address was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetError {
    /// Not `IP:port` (or `localhost:port`).
    Unparsable,
    /// A routable address: load generators must never leave the machine.
    NotLoopback,
}

impl std::fmt::Display for TargetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetError::Unparsable => f.write_str("expected IP:PORT (or localhost:PORT)"),
            TargetError::NotLoopback => f.write_str(
                "refusing a non-loopback target: only 127.0.0.0/8 and ::1 may be loaded",
            ),
        }
    }
}

impl std::error::Error for TargetError {}

/// Parses `IP:PORT` or `localhost:PORT` and accepts only loopback addresses.
pub fn parse_loopback(text: &str) -> Result<SocketAddr, TargetError> {
    let addr = if let Some(port) = text.strip_prefix("localhost:") {
        let port: u16 = port.parse().map_err(|_| TargetError::Unparsable)?;
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
    } else {
        text.parse::<SocketAddr>()
            .map_err(|_| TargetError::Unparsable)?
    };
    if addr.ip().is_loopback() {
        Ok(addr)
    } else {
        Err(TargetError::NotLoopback)
    }
}

/// Checks an `http://host:port/...` URL (the GLMS XCAP root) the same way; returns the address.
pub fn parse_loopback_url(url: &str) -> Result<SocketAddr, TargetError> {
    let rest = url.strip_prefix("http://").ok_or(TargetError::Unparsable)?;
    let authority = rest.split('/').next().unwrap_or_default();
    parse_loopback(authority)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_accepted_others_refused() {
        assert!(parse_loopback("127.0.0.1:5060").is_ok());
        assert!(parse_loopback("127.3.2.1:5060").is_ok());
        assert!(parse_loopback("[::1]:5060").is_ok());
        assert!(parse_loopback("localhost:5060").is_ok());
        assert_eq!(
            parse_loopback("10.0.0.1:5060"),
            Err(TargetError::NotLoopback)
        );
        assert_eq!(
            parse_loopback("0.0.0.0:5060"),
            Err(TargetError::NotLoopback)
        );
        assert_eq!(
            parse_loopback("example.com:5060"),
            Err(TargetError::Unparsable)
        );
        assert_eq!(parse_loopback("127.0.0.1"), Err(TargetError::Unparsable));
    }

    #[test]
    fn xcap_url_checked() {
        assert!(parse_loopback_url("http://127.0.0.1:8080/xcap-root").is_ok());
        assert_eq!(
            parse_loopback_url("http://192.168.1.1:80/xcap-root"),
            Err(TargetError::NotLoopback)
        );
        assert_eq!(
            parse_loopback_url("https://127.0.0.1/"),
            Err(TargetError::Unparsable)
        );
    }
}
