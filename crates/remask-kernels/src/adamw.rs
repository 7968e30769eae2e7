//! AdamW (Loshchilov & Hutter) with bias correction and decoupled weight decay.
//!
//! Shapes: params, grads, m, v all have the same length (one tensor or one flat buffer).

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
pub fn adamw_update(params: &mut [f32], grads: &[f32], m: &mut [f32], v: &mut [f32], hp: &AdamW, t: u64) {
    adamw_update_reference(params, grads, m, v, hp, t);
}

/// Reference twin of [`adamw_update`]: a sequential loop.
pub fn adamw_update_reference(params: &mut [f32], grads: &[f32], m: &mut [f32], v: &mut [f32], hp: &AdamW, t: u64) {
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
        params[i] = (p - hp.lr as f64 * (m_hat / (v_hat.sqrt() + hp.eps as f64) + hp.weight_decay as f64 * p)) as f32;
    }
}
