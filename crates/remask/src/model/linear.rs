//! A fully connected layer over the flat parameter buffer: `out = inp · Wᵀ + b`.
//!
//! N = rows, C = input channels, OC = output channels. W is stored `[OC, C]` (PyTorch's `nn.Linear`).

use remask_kernels::matmul::{matmul_backward, matmul_forward};

use super::layout::{pair_mut, Param};

/// A linear layer: weight `[OC, C]`, optional bias `[OC]` stored after the weight.
#[derive(Clone, Copy, Debug)]
pub struct Linear {
    pub w: Param,
    pub b: Option<Param>,
    /// C: input channels.
    pub c: usize,
    /// OC: output channels.
    pub oc: usize,
}

impl Linear {
    /// out[N,OC] = inp[N,C] · W[OC,C]ᵀ + b[OC]. Overwrites `out`.
    pub fn forward(&self, out: &mut [f32], inp: &[f32], params: &[f32], n: usize) {
        let b = self.b.map(|b| b.get(params));
        matmul_forward(out, inp, self.w.get(params), b, n, self.c, self.oc);
    }

    /// Differentiates `out = inp · Wᵀ + b`: dinp[N,C] += dout·W, dW += doutᵀ·inp, db += Σ_rows dout.
    pub fn backward(&self, dinp: Option<&mut [f32]>, dout: &[f32], inp: &[f32], params: &[f32], grads: &mut [f32], n: usize) {
        let w = self.w.get(params);
        match self.b {
            Some(b) => {
                let (dw, db) = pair_mut(grads, self.w, b);
                matmul_backward(dinp, dw, Some(db), dout, inp, w, n, self.c, self.oc);
            }
            None => {
                matmul_backward(dinp, self.w.get_mut(grads), None, dout, inp, w, n, self.c, self.oc);
            }
        }
    }
}
