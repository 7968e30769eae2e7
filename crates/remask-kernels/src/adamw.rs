//! AdamW (Loshchilov & Hutter) with bias correction and decoupled weight decay.
//!
//! Shapes: params, grads, m, v all have the same length (one tensor or one flat buffer).

use crate::simd::{simd_dispatch, ELEMS_PER_TASK};
use rayon::prelude::*;

/// AdamW hyper-parameters for one tensor (pass weight_decay 0 for biases and norm parameters).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamW {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

/// One step on one tensor; t = 1-based step count for bias correction; decoupled decay p -= lr·wd·p
/// (pass weight_decay 0 for biases / norms via the AdamW value).
///
/// m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²; m̂ = m/(1−β1ᵗ); v̂ = v/(1−β2ᵗ);
/// p = p − lr·(m̂/(√v̂ + eps) + wd·p)  (PyTorch's `torch.optim.AdamW`).
pub fn adamw_update(
    params: &mut [f32],
    grads: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    hp: &AdamW,
    t: u64,
) {
    assert!(t >= 1, "AdamW step count is 1-based");
    let len = params.len();
    assert!(grads.len() == len && m.len() == len && v.len() == len);
    // Bias corrections in f64 (β2ᵗ is close to 1 for small t), folded into two f32 factors:
    // m̂/(√v̂ + eps) = (m/bc1)/(√v·(1/√bc2) + eps).
    let bc1 = 1.0 - (hp.beta1 as f64).powf(t as f64);
    let bc2 = 1.0 - (hp.beta2 as f64).powf(t as f64);
    let k = AdamFactors {
        inv_bc1: (1.0 / bc1) as f32,
        inv_sqrt_bc2: (1.0 / bc2.sqrt()) as f32,
        decay: 1.0 - hp.lr * hp.weight_decay,
    };
    params
        .par_chunks_mut(ELEMS_PER_TASK)
        .zip(grads.par_chunks(ELEMS_PER_TASK))
        .zip(m.par_chunks_mut(ELEMS_PER_TASK))
        .zip(v.par_chunks_mut(ELEMS_PER_TASK))
        .for_each(|(((p, g), m), v)| adamw_chunk(p, g, m, v, hp, &k));
}

/// Per-step constants of the fast update.
struct AdamFactors {
    inv_bc1: f32,
    inv_sqrt_bc2: f32,
    /// 1 − lr·wd: p − lr·wd·p written as one multiply.
    decay: f32,
}

#[inline(always)]
fn adamw_body(
    params: &mut [f32],
    grads: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    hp: &AdamW,
    k: &AdamFactors,
) {
    let (b1, b2, lr, eps) = (hp.beta1, hp.beta2, hp.lr, hp.eps);
    for (((p, &g), m), v) in params
        .iter_mut()
        .zip(grads)
        .zip(m.iter_mut())
        .zip(v.iter_mut())
    {
        *m = b1 * *m + (1.0 - b1) * g;
        *v = b2 * *v + (1.0 - b2) * g * g;
        let step = (*m * k.inv_bc1) / (v.sqrt() * k.inv_sqrt_bc2 + eps);
        *p = *p * k.decay - lr * step;
    }
}

simd_dispatch!(fn adamw_chunk(params: &mut [f32], grads: &[f32], m: &mut [f32], v: &mut [f32], hp: &AdamW, k: &AdamFactors) = adamw_body);

/// Reference twin of [`adamw_update`]: a sequential loop.
pub fn adamw_update_reference(
    params: &mut [f32],
    grads: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    hp: &AdamW,
    t: u64,
) {
    assert!(t >= 1, "AdamW step count is 1-based");
    let len = params.len();
    assert!(grads.len() == len && m.len() == len && v.len() == len);
    let bc1 = 1.0 - (hp.beta1 as f64).powf(t as f64);
    let bc2 = 1.0 - (hp.beta2 as f64).powf(t as f64);
    for i in 0..len {
        let g = grads[i];
        m[i] = hp.beta1 * m[i] + (1.0 - hp.beta1) * g;
        v[i] = hp.beta2 * v[i] + (1.0 - hp.beta2) * g * g;
        let m_hat = m[i] as f64 / bc1;
        let v_hat = v[i] as f64 / bc2;
        let p = params[i] as f64;
        params[i] = (p - hp.lr as f64
            * (m_hat / (v_hat.sqrt() + hp.eps as f64) + hp.weight_decay as f64 * p))
            as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, rand_vec};

    const HP: AdamW = AdamW {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.1,
    };

    /// The first two steps written out by hand (f64), for one scalar parameter.
    fn closed_form(p0: f64, g1: f64, g2: f64, hp: &AdamW) -> (f64, f64) {
        let (lr, b1, b2, eps, wd) = (
            hp.lr as f64,
            hp.beta1 as f64,
            hp.beta2 as f64,
            hp.eps as f64,
            hp.weight_decay as f64,
        );
        // Step 1: m = (1−β1)g1, m̂ = g1; v = (1−β2)g1², v̂ = g1²; update ≈ sign(g1).
        let p1 = p0 - lr * (g1 / (g1.abs() + eps) + wd * p0);
        // Step 2: m̂ = (β1(1−β1)g1 + (1−β1)g2)/(1−β1²), v̂ likewise with squares.
        let m_hat = (b1 * (1.0 - b1) * g1 + (1.0 - b1) * g2) / (1.0 - b1 * b1);
        let v_hat = (b2 * (1.0 - b2) * g1 * g1 + (1.0 - b2) * g2 * g2) / (1.0 - b2 * b2);
        let p2 = p1 - lr * (m_hat / (v_hat.sqrt() + eps) + wd * p1);
        (p1, p2)
    }

    #[test]
    fn first_two_steps_match_closed_form_with_and_without_decay() {
        let p0 = rand_vec(37, 1, 1.0);
        let g1 = rand_vec(37, 2, 0.1);
        let g2 = rand_vec(37, 3, 0.1);
        for hp in [
            HP,
            AdamW {
                weight_decay: 0.0,
                ..HP
            },
        ] {
            for (name, update) in [
                (
                    "fast",
                    adamw_update as fn(&mut [f32], &[f32], &mut [f32], &mut [f32], &AdamW, u64),
                ),
                ("reference", adamw_update_reference),
            ] {
                let (mut p, mut m, mut v) = (p0.clone(), vec![0.0; 37], vec![0.0; 37]);
                update(&mut p, &g1, &mut m, &mut v, &hp, 1);
                let p1 = p.clone();
                update(&mut p, &g2, &mut m, &mut v, &hp, 2);
                for i in 0..37 {
                    let (e1, e2) = closed_form(p0[i] as f64, g1[i] as f64, g2[i] as f64, &hp);
                    assert!(
                        (p1[i] as f64 - e1).abs() < 1e-6,
                        "{name} wd={} step 1 [{i}]: {} vs {e1}",
                        hp.weight_decay,
                        p1[i]
                    );
                    assert!(
                        (p[i] as f64 - e2).abs() < 1e-6,
                        "{name} wd={} step 2 [{i}]: {} vs {e2}",
                        hp.weight_decay,
                        p[i]
                    );
                }
            }
        }
        // With a zero gradient the only change is the decoupled decay (and none without decay).
        let (mut p, mut m, mut v) = (p0.clone(), vec![0.0; 37], vec![0.0; 37]);
        adamw_update(&mut p, &[0.0; 37], &mut m, &mut v, &HP, 1);
        for i in 0..37 {
            assert!((p[i] - p0[i] * (1.0 - HP.lr * HP.weight_decay)).abs() < 1e-7);
        }
        adamw_update(
            &mut p,
            &[0.0; 37],
            &mut m,
            &mut v,
            &AdamW {
                weight_decay: 0.0,
                ..HP
            },
            2,
        );
        assert!((0..37).all(|i| (p[i] - p0[i] * (1.0 - HP.lr * HP.weight_decay)).abs() < 1e-7));
    }

    #[test]
    fn fast_matches_reference_over_many_steps() {
        let len = 100_003;
        let (mut p, mut m, mut v) = (rand_vec(len, 4, 1.0), vec![0.0; len], vec![0.0; len]);
        let (mut p_r, mut m_r, mut v_r) = (p.clone(), m.clone(), v.clone());
        for t in 1..=5 {
            let g = rand_vec(len, 10 + t, 0.01);
            adamw_update(&mut p, &g, &mut m, &mut v, &HP, t);
            adamw_update_reference(&mut p_r, &g, &mut m_r, &mut v_r, &HP, t);
        }
        assert_close(&p, &p_r, 1e-6, 1e-6, "adamw params");
        assert_close(&m, &m_r, 1e-9, 1e-6, "adamw m");
        assert_close(&v, &v_r, 1e-12, 1e-6, "adamw v");
    }

    #[test]
    fn baseline_path_matches_reference() {
        let len = 1001;
        let g = rand_vec(len, 30, 0.1);
        let (mut p, mut m, mut v) = (rand_vec(len, 31, 1.0), vec![0.0; len], vec![0.0; len]);
        let (mut p_r, mut m_r, mut v_r) = (p.clone(), m.clone(), v.clone());
        let bc1 = 1.0 - (HP.beta1 as f64);
        let bc2 = 1.0 - (HP.beta2 as f64);
        let k = AdamFactors {
            inv_bc1: (1.0 / bc1) as f32,
            inv_sqrt_bc2: (1.0 / bc2.sqrt()) as f32,
            decay: 1.0 - HP.lr * HP.weight_decay,
        };
        adamw_body(&mut p, &g, &mut m, &mut v, &HP, &k);
        adamw_update_reference(&mut p_r, &g, &mut m_r, &mut v_r, &HP, 1);
        assert_close(&p, &p_r, 1e-6, 1e-6, "baseline adamw params");
    }
}
