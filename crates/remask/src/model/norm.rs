//! Layer normalisation over the flat parameter buffer. N = rows, C = channels.

use remask_kernels::layernorm::{layernorm_backward, layernorm_forward};

use super::buffers::fit;
use super::layout::{pair_mut, Param};
use super::params::Grads;

/// LayerNorm with weight `[C]` followed directly by bias `[C]`.
#[derive(Clone, Copy, Debug)]
pub struct LayerNorm {
    pub w: Param,
    pub b: Param,
    pub c: usize,
    pub eps: f32,
}

/// Saved activations of one LayerNorm: its output `[N,C]` and the row statistics `[N]` the
/// backward needs.
#[derive(Clone, Debug, Default)]
pub struct NormActs {
    pub out: Vec<f32>,
    pub mean: Vec<f32>,
    pub rstd: Vec<f32>,
}

impl LayerNorm {
    /// a.out[N,C] = (inp − mean) · rstd · w + b; saves mean[N], rstd[N] for the backward.
    pub fn forward(&self, a: &mut NormActs, inp: &[f32], params: &[f32], n: usize) {
        fit(&mut a.out, n * self.c);
        fit(&mut a.mean, n);
        fit(&mut a.rstd, n);
        layernorm_forward(
            &mut a.out,
            &mut a.mean,
            &mut a.rstd,
            inp,
            self.w.get(params),
            self.b.get(params),
            n,
            self.c,
            self.eps,
        );
    }

    /// dinp[N,C] += ∂/∂inp, dw += ∂/∂w, db += ∂/∂b of the forward above, given dout[N,C].
    pub fn backward(
        &self,
        dinp: &mut [f32],
        dout: &[f32],
        inp: &[f32],
        a: &NormActs,
        g: &mut Grads<'_>,
        n: usize,
    ) {
        let (dw, db) = pair_mut(g.buf, self.w, self.b);
        layernorm_backward(
            dinp,
            dw,
            db,
            dout,
            inp,
            self.w.get(g.w.values),
            &a.mean,
            &a.rstd,
            n,
            self.c,
        );
    }
}
