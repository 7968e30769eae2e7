//! The replacement rule: how chosen positions are corrupted. By default 80% become the mask token,
//! 10% a random token, 10% stay unchanged; all three shares are configurable. Random tokens are never
//! special tokens; optionally they are drawn by corpus frequency instead of uniformly.

use remask_kernels::rng::KeyedRng;

use crate::batch::IGNORE_INDEX;
use crate::{Error, Result};

/// Where random replacement tokens come from.
#[derive(Clone, Debug)]
enum RandomTokens {
    /// Uniform over these (non-special) ids.
    Uniform(Vec<u32>),
    /// By frequency: `cumulative[i]` is the summed count of `ids[..=i]`.
    Weighted { ids: Vec<u32>, cumulative: Vec<u64> },
}

/// Corrupts chosen positions of a row.
#[derive(Clone, Debug)]
pub struct Replacement {
    mask_id: u32,
    /// Draws below this are replaced by the mask token.
    mask_below: f32,
    /// Draws in [mask_below, random_below) are replaced by a random token; the rest stay unchanged.
    random_below: f32,
    random: RandomTokens,
}

impl Replacement {
    /// Uniform random replacement over `0..vocab_size` minus `special_ids`.
    pub fn uniform(
        mask_id: u32,
        shares: [f32; 3],
        vocab_size: u32,
        special_ids: &[u32],
    ) -> Result<Self> {
        let ids: Vec<u32> = (0..vocab_size)
            .filter(|i| !special_ids.contains(i))
            .collect();
        if ids.is_empty() {
            return Err(Error::config(
                "data.tokenizer.vocab_size",
                "no non-special token left for random replacement",
            ));
        }
        Ok(Self::with(mask_id, shares, RandomTokens::Uniform(ids)))
    }

    /// Frequency-weighted random replacement: token i is drawn with probability ∝ `counts[i]`; special
    /// ids and ids never seen are never drawn.
    pub fn weighted(
        mask_id: u32,
        shares: [f32; 3],
        counts: &[u64],
        special_ids: &[u32],
    ) -> Result<Self> {
        let mut ids = Vec::new();
        let mut cumulative = Vec::new();
        let mut total = 0u64;
        for (i, &c) in counts.iter().enumerate() {
            if c > 0 && !special_ids.contains(&(i as u32)) {
                total += c;
                ids.push(i as u32);
                cumulative.push(total);
            }
        }
        if ids.is_empty() {
            return Err(Error::Other(
                "frequency-weighted random replacement: the corpus has no non-special token".into(),
            ));
        }
        Ok(Self::with(
            mask_id,
            shares,
            RandomTokens::Weighted { ids, cumulative },
        ))
    }

    fn with(
        mask_id: u32,
        [mask, random, _unchanged]: [f32; 3],
        random_tokens: RandomTokens,
    ) -> Self {
        Self {
            mask_id,
            mask_below: mask,
            random_below: mask + random,
            random: random_tokens,
        }
    }

    /// The mask token id.
    pub fn mask_id(&self) -> u32 {
        self.mask_id
    }

    /// A random replacement token.
    #[inline]
    pub fn random_token(&self, rng: &mut KeyedRng) -> u32 {
        match &self.random {
            RandomTokens::Uniform(ids) => ids[rng.below(ids.len() as u64) as usize],
            RandomTokens::Weighted { ids, cumulative } => {
                let total = *cumulative.last().unwrap_or(&1);
                let x = rng.below(total);
                let k = cumulative.partition_point(|&c| c <= x);
                ids[k.min(ids.len() - 1)]
            }
        }
    }

    /// Writes the model input and labels of one row: `input[i]` is the corrupted token where
    /// `chosen[i]`, else the original; `labels[i]` is the original token where chosen, else
    /// [`IGNORE_INDEX`]. All slices are `[T]`.
    #[inline]
    pub fn apply(
        &self,
        input: &mut [u32],
        labels: &mut [i32],
        original: &[u32],
        chosen: &[bool],
        rng: &mut KeyedRng,
    ) {
        input.copy_from_slice(original);
        labels.fill(IGNORE_INDEX);
        // Ascending chosen positions, found through a 64-bit word per 64 positions: a branch per
        // position on a random ~15% pattern mispredicts often enough to dominate a row.
        for_each_set(chosen, |i| {
            let tok = original[i];
            labels[i] = tok as i32;
            let u = rng.next_f32();
            if u < self.mask_below {
                input[i] = self.mask_id;
            } else if u < self.random_below {
                input[i] = self.random_token(rng);
            }
        });
    }
}

/// Calls `f(i)` for every `i` with `flags[i]`, in ascending order.
#[inline]
fn for_each_set(flags: &[bool], mut f: impl FnMut(usize)) {
    for (c, chunk) in flags.chunks(64).enumerate() {
        let mut bits = 0u64;
        for (k, c8) in chunk.chunks(8).enumerate() {
            // Eight 0/1 bytes packed into a byte: the multiplier moves byte k's bit to bit 56 + k.
            let mut b = [0u8; 8];
            b.iter_mut().zip(c8).for_each(|(d, &x)| *d = x as u8);
            bits |= (u64::from_le_bytes(b).wrapping_mul(0x0102_0408_1020_4080) >> 56) << (8 * k);
        }
        while bits != 0 {
            f(c * 64 + bits.trailing_zeros() as usize);
            bits &= bits - 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::for_each_set;

    #[test]
    fn for_each_set_visits_exactly_the_set_flags_in_order() {
        for n in [0usize, 1, 7, 8, 9, 63, 64, 65, 130] {
            for pattern in 0..4 {
                let flags: Vec<bool> = (0..n)
                    .map(|i| match pattern {
                        0 => (i * 7 + i / 3) % 5 < 2,
                        1 => true,
                        2 => false,
                        _ => i % 8 == 7 || i % 9 == 0,
                    })
                    .collect();
                let mut seen = Vec::new();
                for_each_set(&flags, |i| seen.push(i));
                let want: Vec<usize> = (0..n).filter(|&i| flags[i]).collect();
                assert_eq!(seen, want, "n = {n}, pattern {pattern}");
            }
        }
    }
}
