//! The pure parts of the benchmark: seeded inputs, the CPU check of the GPU's result, and the
//! summary of the launch times.

/// SplitMix64: tiny, fast, and the same sequence on every machine, so a seed names an input.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1) on a grid of 2^-23: every value and every pairwise sum is exact in f32
    /// and none is subnormal, so flush-to-zero on the GPU cannot change a result.
    pub fn next_f32(&mut self) -> f32 {
        let k = (self.next_u64() >> 40) as u32; // 24 random bits
        (k as f32) * (1.0 / (1u32 << 23) as f32) - 1.0
    }

    pub fn vec_f32(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next_f32()).collect()
    }
}

/// The inputs `a` and `b` for a seed: `b` continues the sequence of `a`.
pub fn inputs(seed: u64, n: usize) -> (Vec<f32>, Vec<f32>) {
    let mut rng = SplitMix64::new(seed);
    let a = rng.vec_f32(n);
    let b = rng.vec_f32(n);
    (a, b)
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mismatch {
    pub index: usize,
    pub expected: f32,
    pub got: f32,
    pub count: usize,
}

/// Checks `c[i] == a[i] + b[i]` exactly: a float add is correctly rounded on both the CPU and the
/// GPU, so any difference is a bug. `==` is false for NaN, so a NaN never passes.
pub fn verify(a: &[f32], b: &[f32], c: &[f32]) -> Result<(), Mismatch> {
    assert!(a.len() == b.len() && b.len() == c.len(), "vectors of different lengths");
    let mut first: Option<Mismatch> = None;
    let mut count = 0;
    for (index, ((&x, &y), &got)) in a.iter().zip(b).zip(c).enumerate() {
        let expected = x + y;
        if got != expected {
            count += 1;
            first.get_or_insert(Mismatch { index, expected, got, count: 0 });
        }
    }
    match first {
        None => Ok(()),
        Some(m) => Err(Mismatch { count, ..m }),
    }
}

/// Launch times of the timed runs, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    pub min_us: f64,
    pub median_us: f64,
    pub max_us: f64,
    pub launches: usize,
}

impl Timing {
    /// `None` for no samples.
    pub fn from_samples(samples: &[f64]) -> Option<Timing> {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = match n {
            0 => return None,
            _ if n % 2 == 1 => sorted[n / 2],
            _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Some(Timing { min_us: sorted[0], median_us: median, max_us: sorted[n - 1], launches: n })
    }

    /// Effective bandwidth at the median time, in GB/s (10^9 bytes); `None` when the time is too
    /// short to measure.
    pub fn gbps(&self, bytes_per_launch: f64) -> Option<f64> {
        (self.median_us > 0.0).then(|| bytes_per_launch / (self.median_us * 1e-6) / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic_and_seed_dependent() {
        let (a1, b1) = inputs(42, 1000);
        let (a2, b2) = inputs(42, 1000);
        assert_eq!(a1, a2);
        assert_eq!(b1, b2);
        assert_ne!(a1, b1);
        assert_ne!(inputs(43, 1000).0, a1);
        // SplitMix64's published first output for seed 0, so the sequence cannot drift.
        assert_eq!(SplitMix64::new(0).next_u64(), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn floats_stay_in_range_and_vary() {
        let v = SplitMix64::new(7).vec_f32(100_000);
        assert!(v.iter().all(|x| (-1.0..1.0).contains(x)));
        assert!(v.iter().any(|&x| x < -0.9) && v.iter().any(|&x| x > 0.9));
        let distinct: std::collections::HashSet<u32> = v.iter().map(|x| x.to_bits()).collect();
        assert!(distinct.len() > 99_000);
    }

    #[test]
    fn verify_accepts_the_right_sum() {
        let (a, b) = inputs(1, 4096);
        let c: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        assert_eq!(verify(&a, &b, &c), Ok(()));
    }

    #[test]
    fn verify_catches_a_wrong_value() {
        let a = [1.0, 2.0, 3.0, 4.0];
        let b = [0.5, 0.5, 0.5, 0.5];
        let c = [1.5, 2.5, 3.0, 0.0];
        assert_eq!(verify(&a, &b, &c), Err(Mismatch { index: 2, expected: 3.5, got: 3.0, count: 2 }));
    }

    #[test]
    fn verify_never_passes_nan() {
        let a = [1.0, 2.0];
        let b = [1.0, 2.0];
        let err = verify(&a, &b, &[2.0, f32::NAN]).unwrap_err();
        assert_eq!((err.index, err.count, err.expected), (1, 1, 4.0));
        assert!(err.got.is_nan());
        // Even where the expected value is itself NaN.
        assert!(verify(&[f32::NAN], &[0.0], &[f32::NAN]).is_err());
    }

    #[test]
    fn timing_summary() {
        let t = Timing::from_samples(&[30.0, 10.0, 20.0]).unwrap();
        assert_eq!(t, Timing { min_us: 10.0, median_us: 20.0, max_us: 30.0, launches: 3 });
        assert_eq!(Timing::from_samples(&[4.0, 1.0, 3.0, 2.0]).unwrap().median_us, 2.5);
        assert_eq!(Timing::from_samples(&[]), None);
        // 3 vectors of 2^24 floats in 100 us.
        let gbps = Timing::from_samples(&[100.0]).unwrap().gbps(3.0 * 4.0 * 16_777_216.0).unwrap();
        assert!((gbps - 2013.26592).abs() < 1e-3, "{gbps}");
        assert_eq!(Timing::from_samples(&[0.0]).unwrap().gbps(1.0), None);
    }
}
