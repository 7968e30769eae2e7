//! Layer normalisation over the flat parameter buffer. N = rows, C = channels.

use remask_kernels::layernorm::{layernorm_backward, layernorm_forward};

use super::layout::{pair_mut, Param};

/// LayerNorm with weight `[C]` followed directly by bias `[C]`.
#[derive(Clone, Copy, Debug)]
pub struct LayerNorm {
    pub w: Param,
    pub b: Param,
    pub c: usize,
    pub eps: f32,
}

impl LayerNorm {
    /// out[N,C] = (inp − mean) · rstd · w + b; saves mean[N], rstd[N] for the backward.
    pub fn forward(&self, out: &mut [f32], mean: &mut [f32], rstd: &mut [f32], inp: &[f32], params: &[f32], n: usize) {
        layernorm_forward(out, mean, rstd, inp, self.w.get(params), self.b.get(params), n, self.c, self.eps);
    }

    /// dinp[N,C] += ∂/∂inp, dw += ∂/∂w, db += ∂/∂b of the forward above, given dout[N,C].
    #[allow(clippy::too_many_arguments)]
    pub fn backward(&self, dinp: &mut [f32], dout: &[f32], inp: &[f32], mean: &[f32], rstd: &[f32], params: &[f32], grads: &mut [f32], n: usize) {
        let (dw, db) = pair_mut(grads, self.w, self.b);
        layernorm_backward(dinp, dw, db, dout, inp, self.w.get(params), mean, rstd, n, self.c);
    }
}
