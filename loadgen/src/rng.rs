//! Deterministic randomness: SplitMix64 (stable across platforms and crate versions, so a seed
//! names the same data set forever) and a table-driven Zipf sampler.
#![forbid(unsafe_code)]

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough for workload shaping.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A generator for item `index` of `stream`: any thread can recompute the choices for
    /// request `seq` without sharing state (the recipient side re-derives expectations this way).
    pub fn for_item(seed: u64, stream: u64, index: u64) -> Self {
        Self::new(mix64(
            seed ^ mix64(stream.wrapping_add(0x9e37_79b9_7f4a_7c15)) ^ index,
        ))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.state)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [0, n); `n` must be non-zero (programmer error otherwise).
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        // Lemire's multiply-shift: bias below 2^-32 for the sizes we use.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// The SplitMix64 finaliser.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Samples ranks 1..=n with P(k) proportional to 1/k^s, by binary search in a cumulative table.
#[derive(Clone, Debug)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// `n` ranks (at least 1), exponent `s` (>= 0; 0 is uniform).
    pub fn new(n: usize, s: f64) -> Self {
        let n = n.max(1);
        let mut cdf = Vec::with_capacity(n);
        let mut total = 0.0;
        for k in 1..=n {
            total += 1.0 / (k as f64).powf(s);
            cdf.push(total);
        }
        for value in &mut cdf {
            *value /= total;
        }
        Self { cdf }
    }

    /// A rank in 1..=n.
    pub fn sample(&self, rng: &mut SplitMix64) -> usize {
        let u = rng.next_f64();
        let index = self.cdf.partition_point(|&c| c <= u);
        index.min(self.cdf.len() - 1) + 1
    }

    /// The probability of rank `k` (for tests and reports).
    pub fn probability(&self, k: usize) -> f64 {
        match k {
            0 => 0.0,
            1 => self.cdf[0],
            _ if k <= self.cdf.len() => self.cdf[k - 1] - self.cdf[k - 2],
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_is_stable() {
        // Reference values of SplitMix64 seeded with 0 (published test vector).
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(rng.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn below_stays_in_range() {
        let mut rng = SplitMix64::new(7);
        for n in [1u64, 2, 3, 10, 1000] {
            for _ in 0..1000 {
                assert!(rng.below(n) < n);
            }
        }
    }

    #[test]
    fn zipf_frequencies_follow_power_law() {
        let zipf = Zipf::new(50, 1.0);
        let mut rng = SplitMix64::new(42);
        let mut counts = [0u32; 51];
        let draws = 200_000;
        for _ in 0..draws {
            counts[zipf.sample(&mut rng)] += 1;
        }
        assert_eq!(counts[0], 0);
        // Rank 1 is about twice rank 2 and ten times rank 10.
        let ratio_2 = f64::from(counts[1]) / f64::from(counts[2]);
        let ratio_10 = f64::from(counts[1]) / f64::from(counts[10]);
        assert!((1.8..2.2).contains(&ratio_2), "ratio 1:2 was {ratio_2}");
        assert!((8.5..11.5).contains(&ratio_10), "ratio 1:10 was {ratio_10}");
        let expected_1 = zipf.probability(1) * f64::from(draws);
        assert!((f64::from(counts[1]) - expected_1).abs() < expected_1 * 0.03);
    }
}
