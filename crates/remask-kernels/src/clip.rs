//! Global gradient-norm computation and clipping.
//!
//! Shapes: one flat gradient buffer of any length.

/// Global L2 norm, f64 accumulation.
pub fn grad_norm(grads: &[f32]) -> f32 {
    grad_norm_reference(grads)
}

/// Scales grads by max_norm/norm when norm > max_norm; returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut [f32], max_norm: f32) -> f32 {
    clip_grad_norm_reference(grads, max_norm)
}

/// Reference twin of [`grad_norm`]: a sequential f64 sum.
pub fn grad_norm_reference(grads: &[f32]) -> f32 {
    grads.iter().map(|&g| g as f64 * g as f64).sum::<f64>().sqrt() as f32
}

/// Reference twin of [`clip_grad_norm`]: a sequential loop.
pub fn clip_grad_norm_reference(grads: &mut [f32], max_norm: f32) -> f32 {
    let norm = grad_norm_reference(grads);
    if norm.is_finite() && norm > max_norm {
        let s = (max_norm as f64 / norm as f64) as f32;
        for g in grads.iter_mut() {
            *g *= s;
        }
    }
    norm
}
