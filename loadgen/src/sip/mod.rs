//! The SIP the generator speaks: message templates patched in place, a minimal response
//! scanner, and Digest answers. Deliberately independent of the `imserver` crate.
#![forbid(unsafe_code)]

pub mod digest;
pub mod scan;
pub mod template;

/// Transport of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }

    pub fn param(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}
