//! A fully connected layer over the flat parameter buffer: `out = inp · Wᵀ + b`.
//!
//! N = rows, C = input channels, OC = output channels. W is stored `[OC, C]` (PyTorch's `nn.Linear`).
//! In bf16 precision the products take W's packed bf16 copy and the activations rounded to bf16,
//! accumulating in f32; the bias and its gradient stay f32.

use remask_kernels::gemm_bf16::Start;
use remask_kernels::matmul::{matmul_backward, matmul_forward};
use remask_kernels::matmul_bf16::{matmul_backward_bf16, matmul_forward_bf16};

use super::layout::{pair_mut, Param};
use super::params::{Grads, LinearWeight, Weights};

/// Where a backward puts d(input) `[N, C]`.
pub enum DInp<'a> {
    /// Not wanted (the input is not differentiated).
    None,
    /// Added into the buffer (llm.c's convention: several paths meet there).
    Add(&'a mut [f32]),
    /// Written over the buffer, whatever it held.
    Set(&'a mut [f32]),
}

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
    /// The weight, as the bf16 copy lists it.
    pub fn weight(&self) -> LinearWeight {
        LinearWeight {
            w: self.w,
            c: self.c,
            oc: self.oc,
        }
    }

    /// out[N,OC] = inp[N,C] · W[OC,C]ᵀ + b[OC]. Overwrites `out`.
    pub fn forward(&self, out: &mut [f32], inp: &[f32], w: Weights<'_>, n: usize) {
        let b = self.b.map(|b| b.get(w.values));
        match w.bf16 {
            Some(p) => matmul_forward_bf16(out, inp, p.get(self.w), b, n, self.c, self.oc),
            None => matmul_forward(out, inp, self.w.get(w.values), b, n, self.c, self.oc),
        }
    }

    /// Differentiates `out = inp · Wᵀ + b`: dinp[N,C] (+)= dout·W, dW += doutᵀ·inp, db += Σ_rows dout.
    pub fn backward(&self, dinp: DInp<'_>, dout: &[f32], inp: &[f32], g: &mut Grads<'_>, n: usize) {
        let (c, oc) = (self.c, self.oc);
        let (dw, db) = match self.b {
            Some(b) => {
                let (dw, db) = pair_mut(g.buf, self.w, b);
                (dw, Some(db))
            }
            None => (self.w.get_mut(g.buf), None),
        };
        match g.w.bf16 {
            Some(p) => {
                let (dinp, start) = match dinp {
                    DInp::None => (None, Start::C),
                    DInp::Add(d) => (Some(d), Start::C),
                    // Overwritten by the product itself: no pass zeroing it, nothing read.
                    DInp::Set(d) => (Some(d), Start::Zero),
                };
                matmul_backward_bf16(dinp, start, dw, db, dout, inp, p.get(self.w), n, c, oc);
            }
            None => {
                let dinp = match dinp {
                    DInp::None => None,
                    DInp::Add(d) => Some(d),
                    DInp::Set(d) => {
                        super::buffers::zero(&mut d[..n * c]);
                        Some(d)
                    }
                };
                matmul_backward(dinp, dw, db, dout, inp, self.w.get(g.w.values), n, c, oc);
            }
        }
    }
}
