//! Raw datagrams for the echo floor: `LGRAW001` magic, run id, slot, seq (little endian), then
//! padding to the requested size. An echo sends them back unchanged.
#![forbid(unsafe_code)]

use crate::sip::scan::CallId;

const MAGIC: &[u8; 8] = b"LGRAW001";
pub const HEADER_BYTES: usize = 8 + 4 + 4 + 8;

pub fn write(out: &mut Vec<u8>, run: u32, slot: u32, seq: u64, size: usize) {
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&run.to_le_bytes());
    out.extend_from_slice(&slot.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.resize(size.max(HEADER_BYTES), b'.');
}

/// The identity of an echoed datagram (reusing the Call-ID triple).
pub fn parse(datagram: &[u8]) -> Option<CallId> {
    let header = datagram.get(..HEADER_BYTES)?;
    if &header[..8] != MAGIC {
        return None;
    }
    Some(CallId {
        run: u32::from_le_bytes(header[8..12].try_into().ok()?),
        slot: u32::from_le_bytes(header[12..16].try_into().ok()?),
        seq: u64::from_le_bytes(header[16..24].try_into().ok()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_padding() {
        let mut out = Vec::new();
        write(&mut out, 7, 9, 123_456, 100);
        assert_eq!(out.len(), 100);
        assert_eq!(
            parse(&out),
            Some(CallId {
                run: 7,
                seq: 123_456,
                slot: 9
            })
        );
        let mut short = Vec::new();
        write(&mut short, 1, 2, 3, 0);
        assert_eq!(short.len(), HEADER_BYTES);
        assert_eq!(parse(b"LGRAW001"), None);
        assert_eq!(parse(b"SIP/2.0 200 OK\r\n\r\n0123456789"), None);
    }
}
