//! `ShortBytes`: a byte string kept inside its owner when it is short, on the heap otherwise.
//!
//! The fast path reads a user's key and relay URI right after it finds the user's entry. Kept
//! in the entry they cost no cache miss of their own; in a separate allocation each is one
//! more dependent miss per MESSAGE once the table is larger than the cache.
#![forbid(unsafe_code)]

use std::fmt;
use std::ops::Deref;

/// Bytes inline up to `N` (at most 255), boxed past that. Derefs to `[u8]`.
#[derive(Clone)]
pub enum ShortBytes<const N: usize> {
    Inline { len: u8, bytes: [u8; N] },
    Heap(Box<[u8]>),
}

impl<const N: usize> ShortBytes<N> {
    const FITS_U8: () = assert!(N <= u8::MAX as usize);

    pub fn new(b: &[u8]) -> Self {
        let () = Self::FITS_U8;
        if b.len() <= N {
            let mut bytes = [0; N];
            bytes[..b.len()].copy_from_slice(b);
            // Holds: len <= N <= 255.
            ShortBytes::Inline {
                len: b.len() as u8,
                bytes,
            }
        } else {
            ShortBytes::Heap(b.into())
        }
    }

    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            ShortBytes::Inline { len, bytes } => &bytes[..usize::from(*len)],
            ShortBytes::Heap(b) => b,
        }
    }

    /// Whether the bytes are kept inline.
    pub fn is_inline(&self) -> bool {
        matches!(self, ShortBytes::Inline { .. })
    }
}

impl<const N: usize> Deref for ShortBytes<N> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl<const N: usize> PartialEq for ShortBytes<N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl<const N: usize> Eq for ShortBytes<N> {}

impl<const N: usize> fmt::Debug for ShortBytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

impl<const N: usize> From<&[u8]> for ShortBytes<N> {
    fn from(b: &[u8]) -> Self {
        Self::new(b)
    }
}

impl<const N: usize> From<Vec<u8>> for ShortBytes<N> {
    fn from(b: Vec<u8>) -> Self {
        if b.len() <= N {
            Self::new(&b)
        } else {
            ShortBytes::Heap(b.into_boxed_slice())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_up_to_n_then_heap_same_bytes() {
        for len in [0, 1, 7, 8, 9, 200] {
            let b: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let s = ShortBytes::<8>::new(&b);
            assert_eq!(&*s, &b[..]);
            assert_eq!(s.is_inline(), len <= 8, "{len}");
            let v = ShortBytes::<8>::from(b.clone());
            assert_eq!(v, s);
            assert_eq!(v.is_inline(), len <= 8);
        }
        // Equal prefixes of different lengths differ (the padding is not compared).
        assert_ne!(ShortBytes::<8>::new(b"ab"), ShortBytes::<8>::new(b"ab\0"));
        assert_eq!(format!("{:?}", ShortBytes::<4>::new(b"sip:")), "\"sip:\"");
    }
}
