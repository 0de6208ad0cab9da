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

/// [`prefetch`] for every cache line of `*p`.
#[inline(always)]
pub fn prefetch_all<T>(p: *const T) {
    let bytes = p.cast::<u8>();
    let mut off = 0;
    while off < std::mem::size_of::<T>() {
        prefetch(bytes.wrapping_add(off));
        off += 64;
    }
}
