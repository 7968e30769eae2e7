//! Counter-based, keyed random numbers.
//!
//! Every random decision in remask is keyed by (run seed, purpose, epoch, global sample index), never
//! drawn from a shared sequential stream. That makes results independent of thread count, batch size
//! and number of processes, and makes resume exact: the key alone reproduces the draw.

/// Purposes keep independent streams apart even when the other key parts coincide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum Purpose {
    /// MLM position selection.
    MaskSelect = 1,
    /// MLM replacement choice (mask / random / unchanged) and random token draw.
    MaskReplace = 2,
    /// Dropout in the model.
    Dropout = 3,
    /// Data order (shuffling of samples per epoch).
    Shuffle = 4,
    /// Parameter initialisation.
    Init = 5,
    /// Train/validation split.
    Split = 6,
    /// Sampling during generation.
    Sample = 7,
    /// Anything else a caller needs (tests, benchmarks).
    Other = 99,
}

/// SplitMix64 finaliser: a bijective 64-bit mixer with good avalanche.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Derives a 64-bit key from the parts of a random decision's identity.
#[inline]
pub fn key(seed: u64, purpose: Purpose, epoch: u64, index: u64) -> u64 {
    let mut h = mix64(seed ^ 0x9e37_79b9_7f4a_7c15);
    h = mix64(h ^ (purpose as u64).wrapping_mul(0xd6e8_feb8_6659_fd93));
    h = mix64(h ^ epoch.wrapping_mul(0xa076_1d64_78bd_642f));
    mix64(h ^ index.wrapping_mul(0xe703_7ed1_a0b4_28db))
}

/// A small, fast stream generator (SplitMix64) started from a key. Use one per keyed decision unit
/// (for example one per sample), never one shared across samples.
#[derive(Clone, Debug)]
pub struct KeyedRng {
    state: u64,
}

impl KeyedRng {
    /// A stream for the decision identified by (seed, purpose, epoch, index).
    #[inline]
    pub fn new(seed: u64, purpose: Purpose, epoch: u64, index: u64) -> Self {
        Self {
            state: key(seed, purpose, epoch, index),
        }
    }

    /// A stream started from an already derived key.
    pub fn from_key(key: u64) -> Self {
        Self { state: key }
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        mix64(self.state)
    }

    /// Uniform in [0, 1) with 24 bits of resolution.
    #[inline]
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// Fills `out` with exactly the values `out.len()` calls of [`Self::next_f32`] would return, and
    /// advances the stream as far. The draws do not depend on each other (SplitMix64's state is a
    /// counter), so this runs 8 lanes at a time where AVX-512 has 64-bit vector multiplies.
    pub fn fill_f32(&mut self, out: &mut [f32]) {
        fill_f32_at(self.state, out);
        self.state = self
            .state
            .wrapping_add((out.len() as u64).wrapping_mul(GAMMA));
    }

    /// Uniform in [0, 1) with 53 bits of resolution.
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in [0, n) (Lemire's multiply-shift; n must be > 0).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// A standard normal sample (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = self.next_f64().max(f64::MIN_POSITIVE);
        let u2 = self.next_f64();
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
}

/// SplitMix64's state increment.
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// [`fill_f32_counter`] compiled for the best instruction set this CPU has.
fn fill_f32_at(state: u64, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512dq") && std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports the enabled features (checked just above).
            unsafe { fill_f32_avx512(state, out) };
            return;
        }
    }
    fill_f32_counter(state, out);
}

/// `out[k]` = the (k+1)-th `next_f32` of a stream at `state`, each computed from its counter.
#[inline(always)]
fn fill_f32_counter(state: u64, out: &mut [f32]) {
    for (k, o) in out.iter_mut().enumerate() {
        let z = mix64(state.wrapping_add((k as u64 + 1).wrapping_mul(GAMMA)));
        *o = (z >> 40) as f32 * (1.0 / (1u64 << 24) as f32);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn fill_f32_avx512(state: u64, out: &mut [f32]) {
    fill_f32_counter(state, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_stream_and_parts_matter() {
        let mut a = KeyedRng::new(7, Purpose::MaskSelect, 3, 11);
        let mut b = KeyedRng::new(7, Purpose::MaskSelect, 3, 11);
        let va: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let vb: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        assert_eq!(va, vb);
        let k = key(7, Purpose::MaskSelect, 3, 11);
        assert_ne!(k, key(8, Purpose::MaskSelect, 3, 11));
        assert_ne!(k, key(7, Purpose::MaskReplace, 3, 11));
        assert_ne!(k, key(7, Purpose::MaskSelect, 4, 11));
        assert_ne!(k, key(7, Purpose::MaskSelect, 3, 12));
    }

    #[test]
    fn fill_f32_equals_repeated_next_f32_and_advances_the_stream() {
        for n in [0usize, 1, 7, 8, 9, 126, 1000] {
            let mut a = KeyedRng::new(3, Purpose::MaskSelect, 1, n as u64);
            let mut b = a.clone();
            let want: Vec<f32> = (0..n).map(|_| a.next_f32()).collect();
            let mut got = vec![-1.0; n];
            b.fill_f32(&mut got);
            assert_eq!(got, want, "n = {n}");
            assert_eq!(
                a.next_u64(),
                b.next_u64(),
                "stream position after {n} draws"
            );
        }
    }

    #[test]
    fn uniform_moments_and_range() {
        let mut r = KeyedRng::new(1, Purpose::Other, 0, 0);
        let n = 200_000;
        let mut sum = 0.0f64;
        let mut counts = [0usize; 10];
        for _ in 0..n {
            let x = r.next_f32();
            assert!((0.0..1.0).contains(&x));
            sum += x as f64;
            counts[r.below(10) as usize] += 1;
        }
        assert!((sum / n as f64 - 0.5).abs() < 0.005);
        for c in counts {
            assert!(
                (c as f64 / n as f64 - 0.1).abs() < 0.005,
                "bucket share {c}"
            );
        }
    }
}
