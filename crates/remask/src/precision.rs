//! The number format of the matrix products (`model.precision`): a bottom-layer type, so that the
//! attention kernels' benchmark and the model can both name it (the products themselves: the
//! `model::params` module doc and `remask_kernels::gemm_bf16`).

use serde::{Deserialize, Serialize};

/// The number format of the model's matrix products (see the `crate::model::params` module doc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    Fp32,
    /// Mixed precision: every GEMM and attention tile product takes bf16 operands and accumulates
    /// in f32; master weights, gradients, AdamW, norms, softmax, GELU and the loss stay f32. Needs a
    /// CPU with AVX-512 BF16 (AMX is used where present).
    Bf16,
}

impl Precision {
    /// Whether this is the default (f32), which configs and checkpoints leave unwritten.
    pub fn is_fp32(&self) -> bool {
        *self == Precision::Fp32
    }

    /// Errors (naming `model.precision`) when this CPU cannot compute in this precision: bf16 needs
    /// AVX-512 BF16. Never falls back silently.
    pub fn check_supported(self) -> crate::Result<()> {
        if self == Precision::Bf16 && remask_kernels::cpu::bf16_kernel().is_none() {
            return Err(crate::Error::config(
                "model.precision",
                remask_kernels::cpu::BF16_UNSUPPORTED,
            ));
        }
        Ok(())
    }

    /// `fp32` or `bf16`, as configs spell it.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fp32" => Ok(Precision::Fp32),
            "bf16" => Ok(Precision::Bf16),
            other => Err(format!(
                "unknown precision `{other}` (expected fp32 or bf16)"
            )),
        }
    }
}
