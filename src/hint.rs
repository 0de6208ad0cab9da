//! Cache prefetch hints: the fast path looks up a whole receive batch's recipients ahead of
//! handling them, so their table lines load in parallel instead of one miss after another.

/// Asks the CPU to start loading the cache line that holds `p`. A hint only: it does not read
/// `p` as far as the program can tell, cannot fault, and does nothing on other architectures.
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 (SSE, part of the x86_64 baseline) performs no architectural memory
    // access: any address, dangling or null, is allowed and never faults.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Cache line size assumed for prefetching (x86_64).
const LINE: usize = 64;

/// [`prefetch`] for every cache line `*p` touches, including the partial ones at either end
/// (heap objects are 16-byte aligned, so a 320-byte struct usually spans six lines, not five).
#[inline(always)]
pub fn prefetch_all<T>(p: *const T) {
    let bytes = p.cast::<u8>();
    for off in line_offsets(bytes as usize, std::mem::size_of::<T>()) {
        prefetch(bytes.wrapping_byte_offset(off));
    }
}

/// Offsets from `start` (possibly negative) of the start of each cache line that the `len`
/// bytes at `start` touch.
#[inline(always)]
fn line_offsets(start: usize, len: usize) -> impl Iterator<Item = isize> {
    let first = -((start % LINE) as isize);
    let end = len as isize;
    (first..end.max(first + 1)).step_by(LINE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_of_an_object_is_covered_once() {
        for start in (0..3 * LINE).step_by(8) {
            for len in 0..5 * LINE {
                let lines: Vec<usize> = line_offsets(start, len)
                    .map(|o| start.wrapping_add_signed(o))
                    .collect();
                let want: Vec<usize> = if len == 0 {
                    vec![start - start % LINE]
                } else {
                    (start / LINE..=(start + len - 1) / LINE)
                        .map(|l| l * LINE)
                        .collect()
                };
                assert_eq!(lines, want, "start {start} len {len}");
            }
        }
    }
}
