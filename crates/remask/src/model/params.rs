//! A model's parameters as the layers read them, and the bf16 copy of its weight matrices.
//!
//! In f32 precision the layers read the flat f32 buffer. In bf16 precision ([`Precision::Bf16`])
//! every linear layer (and the vocabulary head) multiplies with its weight cast to bf16 and packed
//! for the bf16 kernels ([`PackedWeight`]). That copy is made **once per optimizer step**: changing
//! the values (any mutable access to [`Params`], which is what the optimizer step, checkpoint
//! restore and `--init-from` do) marks it stale, and the next bf16 forward packs it again; every
//! micro-batch until the next change reuses it. Evaluation ([`Params::fp32`]) reads the f32 values in
//! either precision. Master weights, gradients and the optimizer stay f32.

use std::ops::{Deref, DerefMut};

use rayon::prelude::*;
use remask_kernels::matmul_bf16::PackedWeight;

use super::config::Precision;
use super::layout::Param;

/// The weight of one linear layer: `w` is `[OC, C]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearWeight {
    pub w: Param,
    pub c: usize,
    pub oc: usize,
}

/// Every linear weight of a model packed for the bf16 kernels, looked up by the weight's handle.
#[derive(Debug, Default)]
pub struct Bf16Weights {
    /// Sorted by offset.
    entries: Vec<(LinearWeight, PackedWeight)>,
}

impl Bf16Weights {
    fn new(mut linears: Vec<LinearWeight>) -> Self {
        linears.sort_by_key(|l| l.w.offset);
        linears.dedup();
        Self {
            entries: linears
                .into_iter()
                .map(|l| (l, PackedWeight::new()))
                .collect(),
        }
    }

    /// Casts and packs every weight from `values` (one rayon task per weight).
    fn pack(&mut self, values: &[f32]) {
        self.entries
            .par_iter_mut()
            .for_each(|(l, packed)| packed.pack(l.w.get(values), l.c, l.oc));
    }

    /// The packed copy of the weight `w`. Panics (a programmer error) for a handle that is not one
    /// of the model's linear weights.
    pub fn get(&self, w: Param) -> &PackedWeight {
        let i = self
            .entries
            .binary_search_by_key(&w.offset, |(l, _)| l.w.offset)
            .unwrap_or_else(|_| {
                panic!("Bf16Weights::get: no packed weight at offset {}", w.offset)
            });
        &self.entries[i].1
    }
}

/// A model's flat f32 parameters, plus (bf16 precision) the packed bf16 weights made from them.
/// Derefs to the f32 values; a mutable deref marks the bf16 copy stale.
#[derive(Debug)]
pub struct Params {
    values: Vec<f32>,
    bf16: Option<Bf16Weights>,
    stale: bool,
}

impl Params {
    /// `values` in the given precision; `linears` lists the weights the bf16 copy holds.
    pub fn new(values: Vec<f32>, precision: Precision, linears: Vec<LinearWeight>) -> Self {
        let bf16 = (precision == Precision::Bf16).then(|| Bf16Weights::new(linears));
        Self {
            values,
            bf16,
            stale: true,
        }
    }

    /// Packs the bf16 copy if the values changed since it was last packed (a no-op in f32).
    pub fn refresh(&mut self) {
        if self.stale {
            if let Some(b) = &mut self.bf16 {
                b.pack(&self.values);
            }
            self.stale = false;
        }
    }

    /// The f32 master values as the layers read them in f32 precision, whatever the model's
    /// precision: evaluation reads these, so a bf16-trained model is measured exactly as
    /// `remask eval` and the inference commands measure its checkpoint.
    pub fn fp32(&self) -> Weights<'_> {
        Weights::fp32(&self.values)
    }

    /// What the layers read. Call [`Self::refresh`] after the last change first: reading a stale
    /// bf16 copy is a programmer error and panics.
    pub fn weights(&self) -> Weights<'_> {
        assert!(
            self.bf16.is_none() || !self.stale,
            "Params::weights: bf16 weights are stale (call refresh)"
        );
        Weights {
            values: &self.values,
            bf16: self.bf16.as_ref(),
        }
    }
}

impl Deref for Params {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.values
    }
}

impl DerefMut for Params {
    fn deref_mut(&mut self) -> &mut [f32] {
        self.stale = true;
        &mut self.values
    }
}

/// The parameters one forward or backward reads: the f32 values and, in bf16 precision, the
/// packed weights.
#[derive(Clone, Copy, Debug)]
pub struct Weights<'a> {
    pub values: &'a [f32],
    pub bf16: Option<&'a Bf16Weights>,
}

impl<'a> Weights<'a> {
    /// f32 weights (inference paths that rebuild layers, tests).
    pub fn fp32(values: &'a [f32]) -> Self {
        Self { values, bf16: None }
    }

    pub fn precision(&self) -> Precision {
        if self.bf16.is_some() {
            Precision::Bf16
        } else {
            Precision::Fp32
        }
    }
}

/// What a backward reads and writes: the weights, and the gradient buffer (same layout as the
/// values) it adds into.
#[derive(Debug)]
pub struct Grads<'a> {
    pub w: Weights<'a>,
    pub buf: &'a mut [f32],
}
