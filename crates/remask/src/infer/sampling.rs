//! Choosing the next token from logits: repetition penalty, then greedy (temperature 0) or sampling
//! with temperature, top-k and top-p (nucleus). Every draw is keyed by (seed, step), so a seed
//! reproduces a generation exactly.

use remask_kernels::rng::{KeyedRng, Purpose};

/// How the next token is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingOptions {
    /// 0 = greedy (arg-max); otherwise logits are divided by it before sampling.
    pub temperature: f32,
    /// Keep only the k most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches p (1 = all).
    pub top_p: f32,
    /// CTRL's penalty on tokens already in the context: positive logits divided by it, negative ones
    /// multiplied (1 = off).
    pub repetition_penalty: f32,
    pub max_new_tokens: usize,
    pub seed: u64,
}

impl Default for SamplingOptions {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            max_new_tokens: 32,
            seed: 0,
        }
    }
}

impl SamplingOptions {
    /// Checks the values; errors name the option.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |k: &str, m: &str| Err(crate::Error::config(k, m));
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad("temperature", "must be >= 0 (0 = greedy)");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", "must be in (0, 1]");
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad("repetition_penalty", "must be > 0 (1 = off)");
        }
        Ok(())
    }
}

/// Applies the repetition penalty to `logits[V]` for every id in `context`.
pub fn apply_repetition_penalty(logits: &mut [f32], context: &[u32], penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    let mut seen = vec![false; logits.len()];
    for &id in context {
        if let Some(s) = seen.get_mut(id as usize) {
            *s = true;
        }
    }
    for (l, s) in logits.iter_mut().zip(seen) {
        if s {
            *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
        }
    }
}

/// The arg-max of `logits` (the lowest id among ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// The next token for `logits[V]` given the `context` so far; `step` keys the draw.
pub fn pick(logits: &mut [f32], context: &[u32], opts: &SamplingOptions, step: u64) -> u32 {
    apply_repetition_penalty(logits, context, opts.repetition_penalty);
    if opts.temperature == 0.0 {
        return argmax(logits);
    }
    // Candidates sorted by logit (descending; ties by id), cut to top-k.
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    idx.sort_by(|&a, &b| {
        logits[b as usize]
            .total_cmp(&logits[a as usize])
            .then(a.cmp(&b))
    });
    if opts.top_k > 0 {
        idx.truncate(opts.top_k.max(1));
    }
    let mx = logits[idx[0] as usize];
    let mut probs: Vec<f64> = idx
        .iter()
        .map(|&i| (((logits[i as usize] - mx) / opts.temperature) as f64).exp())
        .collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    // Nucleus: the shortest prefix whose mass reaches top_p.
    if opts.top_p < 1.0 {
        let mut acc = 0.0;
        let mut keep = probs.len();
        for (i, p) in probs.iter().enumerate() {
            acc += p;
            if acc >= opts.top_p as f64 {
                keep = i + 1;
                break;
            }
        }
        idx.truncate(keep);
        probs.truncate(keep);
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
    }
    let u = KeyedRng::new(opts.seed, Purpose::Sample, 0, step).next_f64();
    let mut acc = 0.0;
    for (i, p) in probs.iter().enumerate() {
        acc += p;
        if u < acc {
            return idx[i];
        }
    }
    idx[idx.len() - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_top_k_top_p_and_penalty_restrict_the_choice() {
        let logits = [1.0f32, 3.0, 2.0, -1.0, 2.9];
        let greedy = SamplingOptions::default();
        assert_eq!(pick(&mut logits.clone(), &[], &greedy, 0), 1);
        // The penalty on id 1 (3.0 / 2 = 1.5) hands the arg-max to id 4.
        let pen = SamplingOptions {
            repetition_penalty: 2.0,
            ..greedy
        };
        assert_eq!(pick(&mut logits.clone(), &[1], &pen, 0), 4);
        let mut l = logits;
        apply_repetition_penalty(&mut l, &[3], 2.0);
        assert_eq!(l[3], -2.0);
        // top_k = 2 only ever draws ids 1 and 4; top_p tiny is greedy; a seed repeats its draws.
        let k2 = SamplingOptions {
            temperature: 1.0,
            top_k: 2,
            seed: 5,
            ..greedy
        };
        let draws: Vec<u32> = (0..200)
            .map(|s| pick(&mut logits.clone(), &[], &k2, s))
            .collect();
        assert!(draws.iter().all(|&d| d == 1 || d == 4));
        assert!(draws.contains(&1) && draws.contains(&4));
        let again: Vec<u32> = (0..200)
            .map(|s| pick(&mut logits.clone(), &[], &k2, s))
            .collect();
        assert_eq!(draws, again);
        let p = SamplingOptions {
            temperature: 1.0,
            top_p: 0.01,
            ..greedy
        };
        assert!((0..50).all(|s| pick(&mut logits.clone(), &[], &p, s) == 1));
        // High temperature over all tokens reaches the unlikely ones too.
        let hot = SamplingOptions {
            temperature: 5.0,
            seed: 1,
            ..greedy
        };
        let all: std::collections::BTreeSet<u32> = (0..400)
            .map(|s| pick(&mut logits.clone(), &[], &hot, s))
            .collect();
        assert_eq!(all.len(), 5);
        assert!(SamplingOptions {
            top_p: 0.0,
            ..greedy
        }
        .validate()
        .is_err());
    }
}
