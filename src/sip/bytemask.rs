//! Bit masks of where given bytes sit in a 16-byte block, for the scanner: the newlines of a
//! message head, the end of a header name. On x86_64 one SSE2 compare and `movemask` per
//! needle covers 16 bytes (about 0.3 instructions a byte, against 2.5 for the eight-byte SWAR
//! word it replaces and 4-6 for a byte loop); elsewhere a portable loop gives the same masks.
//!
//! The SIP layer's only `unsafe`: calling the `#[target_feature(enable = "sse2")]` functions
//! below. Sound because they are compiled only when SSE2 is enabled for the whole build
//! (`cfg(target_feature = "sse2")`, part of the x86_64 baseline), so every CPU that runs this
//! code has it. The functions themselves are safe code: the block is read with safe `u64`
//! loads, never through a pointer.
#![allow(unsafe_code)]

/// Bytes per block.
pub const BLOCK: usize = 16;

/// Bit `i` set when `b[i] == x`.
#[inline]
pub fn eq(b: &[u8; BLOCK], x: u8) -> u32 {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        // SAFETY: SSE2 is enabled for the whole build (see the module documentation).
        unsafe { sse2::eq(b, x) }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        scalar::eq(b, x)
    }
}

/// Bit `i` set when `b[i]` is `x`, `y` or `z`.
#[inline]
pub fn eq3(b: &[u8; BLOCK], x: u8, y: u8, z: u8) -> u32 {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        // SAFETY: SSE2 is enabled for the whole build (see the module documentation).
        unsafe { sse2::eq3(b, x, y, z) }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        scalar::eq3(b, x, y, z)
    }
}

/// The 16 bytes at `at`, when `s` has that many there.
#[inline]
pub fn block_at(s: &[u8], at: usize) -> Option<&[u8; BLOCK]> {
    s.get(at..at.checked_add(BLOCK)?)
        .and_then(|w| <&[u8; BLOCK]>::try_from(w).ok())
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod sse2 {
    #![deny(unsafe_code)]
    use super::BLOCK;
    use core::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_movemask_epi8, _mm_or_si128, _mm_set_epi64x, _mm_set1_epi8,
    };

    #[inline]
    #[target_feature(enable = "sse2")]
    fn load(b: &[u8; BLOCK]) -> __m128i {
        let (lo, hi) = b.split_at(8);
        let word = |w: &[u8]| i64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
        // Two safe little-endian loads; the compiler fuses them into one unaligned load.
        _mm_set_epi64x(word(hi), word(lo))
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    pub(super) fn eq(b: &[u8; BLOCK], x: u8) -> u32 {
        let v = load(b);
        _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(x as i8))) as u32 & 0xffff
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    pub(super) fn eq3(b: &[u8; BLOCK], x: u8, y: u8, z: u8) -> u32 {
        let v = load(b);
        let m = _mm_or_si128(
            _mm_or_si128(
                _mm_cmpeq_epi8(v, _mm_set1_epi8(x as i8)),
                _mm_cmpeq_epi8(v, _mm_set1_epi8(y as i8)),
            ),
            _mm_cmpeq_epi8(v, _mm_set1_epi8(z as i8)),
        );
        _mm_movemask_epi8(m) as u32 & 0xffff
    }
}

/// The portable masks (and the reference the SSE2 ones are tested against).
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
mod scalar {
    use super::BLOCK;

    pub(super) fn eq(b: &[u8; BLOCK], x: u8) -> u32 {
        b.iter()
            .enumerate()
            .fold(0, |m, (i, &c)| m | u32::from(c == x) << i)
    }

    pub(super) fn eq3(b: &[u8; BLOCK], x: u8, y: u8, z: u8) -> u32 {
        eq(b, x) | eq(b, y) | eq(b, z)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_match_the_portable_loop() {
        // Every byte value in every position, as needle and as neighbour.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..4096u32 {
            let mut b = [0u8; BLOCK];
            for v in b.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *v = seed as u8;
            }
            let x = round as u8;
            b[(round as usize / 256) % BLOCK] = x;
            assert_eq!(eq(&b, x), scalar::eq(&b, x), "{b:?} {x}");
            assert_ne!(eq(&b, x), 0);
            let (y, z) = (x.wrapping_add(1), b[(round as usize) % BLOCK]);
            assert_eq!(eq3(&b, x, y, z), scalar::eq3(&b, x, y, z), "{b:?}");
        }
    }

    #[test]
    fn masks_mark_the_right_positions() {
        let b = *b"Via: SIP/2.0\r\nTo";
        assert_eq!(eq(&b, b'\n'), 1 << 13);
        assert_eq!(eq3(&b, b':', b' ', b'\t'), 1 << 3 | 1 << 4);
        assert_eq!(eq(&b, b'Z'), 0);
        assert_eq!(block_at(&b, 0), Some(&b));
        assert_eq!(block_at(&b, 1), None);
        assert_eq!(block_at(&b, usize::MAX), None);
    }
}
