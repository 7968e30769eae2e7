//! Register-only loops that measure what one core's bf16 units can do at most (no memory traffic:
//! the operands never leave the registers), the yardstick `remask bench kernels` compares the
//! GEMMs against.

#[cfg(target_arch = "x86_64")]
use std::arch::asm;

use crate::cpu::Bf16Kernel;

/// Runs `iters` iterations of the register-only loop of `kernel` on the calling thread and returns
/// the floating-point operations done (2 per multiply-add).
///
/// Panics when the CPU lacks the kernel (callers take it from [`crate::cpu::best_bf16_kernel`]).
pub fn bf16_peak_loop(kernel: Bf16Kernel, iters: u64) -> f64 {
    let best = crate::cpu::best_bf16_kernel().expect(crate::cpu::BF16_UNSUPPORTED);
    assert!(
        kernel <= best,
        "bf16_peak_loop: this CPU has no {} kernel",
        kernel.name()
    );
    match kernel {
        // SAFETY: AVX-512 BF16 is present (checked above); the loop touches registers only.
        Bf16Kernel::Avx512 => unsafe { avx512_loop(iters) },
        // SAFETY: AMX is usable (checked above); the loop configures, uses and releases tiles.
        Bf16Kernel::Amx => unsafe { amx_loop(iters) },
    }
}

/// Runs `iters` iterations of a register-only f32 FMA loop (AVX-512, 24 independent `vfmadd231ps`
/// per iteration) on the calling thread and returns the floating-point operations done: the f32
/// peak the bf16 figures are compared with. Panics without AVX-512F.
pub fn fp32_peak_loop(iters: u64) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        assert!(
            std::is_x86_feature_detected!("avx512f"),
            "fp32_peak_loop needs AVX-512F"
        );
        // SAFETY: AVX-512F is present (checked); the loop touches registers only.
        unsafe { fma_loop(iters) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = iters;
        panic!("fp32_peak_loop needs AVX-512F")
    }
}

#[target_feature(enable = "avx512f")]
unsafe fn fma_loop(iters: u64) -> f64 {
    asm!(
        "vpxord zmm0, zmm0, zmm0", "vpxord zmm1, zmm1, zmm1", "vpxord zmm2, zmm2, zmm2", "vpxord zmm3, zmm3, zmm3",
        "vpxord zmm4, zmm4, zmm4", "vpxord zmm5, zmm5, zmm5", "vpxord zmm6, zmm6, zmm6", "vpxord zmm7, zmm7, zmm7",
        "vpxord zmm8, zmm8, zmm8", "vpxord zmm9, zmm9, zmm9", "vpxord zmm10, zmm10, zmm10", "vpxord zmm11, zmm11, zmm11",
        "vpxord zmm12, zmm12, zmm12", "vpxord zmm13, zmm13, zmm13", "vpxord zmm14, zmm14, zmm14", "vpxord zmm15, zmm15, zmm15",
        "vpxord zmm16, zmm16, zmm16", "vpxord zmm17, zmm17, zmm17", "vpxord zmm18, zmm18, zmm18", "vpxord zmm19, zmm19, zmm19",
        "vpxord zmm20, zmm20, zmm20", "vpxord zmm21, zmm21, zmm21", "vpxord zmm22, zmm22, zmm22", "vpxord zmm23, zmm23, zmm23",
        "vpxord zmm30, zmm30, zmm30", "vpxord zmm31, zmm31, zmm31",
        "test {n}, {n}",
        "jz 3f",
        "2:",
        "vfmadd231ps zmm0, zmm30, zmm31", "vfmadd231ps zmm1, zmm30, zmm31", "vfmadd231ps zmm2, zmm30, zmm31",
        "vfmadd231ps zmm3, zmm30, zmm31", "vfmadd231ps zmm4, zmm30, zmm31", "vfmadd231ps zmm5, zmm30, zmm31",
        "vfmadd231ps zmm6, zmm30, zmm31", "vfmadd231ps zmm7, zmm30, zmm31", "vfmadd231ps zmm8, zmm30, zmm31",
        "vfmadd231ps zmm9, zmm30, zmm31", "vfmadd231ps zmm10, zmm30, zmm31", "vfmadd231ps zmm11, zmm30, zmm31",
        "vfmadd231ps zmm12, zmm30, zmm31", "vfmadd231ps zmm13, zmm30, zmm31", "vfmadd231ps zmm14, zmm30, zmm31",
        "vfmadd231ps zmm15, zmm30, zmm31", "vfmadd231ps zmm16, zmm30, zmm31", "vfmadd231ps zmm17, zmm30, zmm31",
        "vfmadd231ps zmm18, zmm30, zmm31", "vfmadd231ps zmm19, zmm30, zmm31", "vfmadd231ps zmm20, zmm30, zmm31",
        "vfmadd231ps zmm21, zmm30, zmm31", "vfmadd231ps zmm22, zmm30, zmm31", "vfmadd231ps zmm23, zmm30, zmm31",
        "dec {n}",
        "jnz 2b",
        "3:",
        n = inout(reg) iters => _,
        out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _, out("zmm4") _, out("zmm5") _,
        out("zmm6") _, out("zmm7") _, out("zmm8") _, out("zmm9") _, out("zmm10") _, out("zmm11") _,
        out("zmm12") _, out("zmm13") _, out("zmm14") _, out("zmm15") _, out("zmm16") _, out("zmm17") _,
        out("zmm18") _, out("zmm19") _, out("zmm20") _, out("zmm21") _, out("zmm22") _, out("zmm23") _,
        out("zmm30") _, out("zmm31") _,
        options(nostack, nomem),
    );
    iters as f64 * 24.0 * 16.0 * 2.0
}

/// 24 independent `vdpbf16ps` per iteration (more than latency × throughput), each 16 lanes × 2
/// multiply-adds.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn avx512_loop(iters: u64) -> f64 {
    asm!(
        "vpxord zmm0, zmm0, zmm0",
        "vpxord zmm1, zmm1, zmm1",
        "vpxord zmm2, zmm2, zmm2",
        "vpxord zmm3, zmm3, zmm3",
        "vpxord zmm4, zmm4, zmm4",
        "vpxord zmm5, zmm5, zmm5",
        "vpxord zmm6, zmm6, zmm6",
        "vpxord zmm7, zmm7, zmm7",
        "vpxord zmm8, zmm8, zmm8",
        "vpxord zmm9, zmm9, zmm9",
        "vpxord zmm10, zmm10, zmm10",
        "vpxord zmm11, zmm11, zmm11",
        "vpxord zmm12, zmm12, zmm12",
        "vpxord zmm13, zmm13, zmm13",
        "vpxord zmm14, zmm14, zmm14",
        "vpxord zmm15, zmm15, zmm15",
        "vpxord zmm16, zmm16, zmm16",
        "vpxord zmm17, zmm17, zmm17",
        "vpxord zmm18, zmm18, zmm18",
        "vpxord zmm19, zmm19, zmm19",
        "vpxord zmm20, zmm20, zmm20",
        "vpxord zmm21, zmm21, zmm21",
        "vpxord zmm22, zmm22, zmm22",
        "vpxord zmm23, zmm23, zmm23",
        "vpxord zmm30, zmm30, zmm30",
        "vpxord zmm31, zmm31, zmm31",
        "test {n}, {n}",
        "jz 3f",
        "2:",
        "vdpbf16ps zmm0, zmm30, zmm31",
        "vdpbf16ps zmm1, zmm30, zmm31",
        "vdpbf16ps zmm2, zmm30, zmm31",
        "vdpbf16ps zmm3, zmm30, zmm31",
        "vdpbf16ps zmm4, zmm30, zmm31",
        "vdpbf16ps zmm5, zmm30, zmm31",
        "vdpbf16ps zmm6, zmm30, zmm31",
        "vdpbf16ps zmm7, zmm30, zmm31",
        "vdpbf16ps zmm8, zmm30, zmm31",
        "vdpbf16ps zmm9, zmm30, zmm31",
        "vdpbf16ps zmm10, zmm30, zmm31",
        "vdpbf16ps zmm11, zmm30, zmm31",
        "vdpbf16ps zmm12, zmm30, zmm31",
        "vdpbf16ps zmm13, zmm30, zmm31",
        "vdpbf16ps zmm14, zmm30, zmm31",
        "vdpbf16ps zmm15, zmm30, zmm31",
        "vdpbf16ps zmm16, zmm30, zmm31",
        "vdpbf16ps zmm17, zmm30, zmm31",
        "vdpbf16ps zmm18, zmm30, zmm31",
        "vdpbf16ps zmm19, zmm30, zmm31",
        "vdpbf16ps zmm20, zmm30, zmm31",
        "vdpbf16ps zmm21, zmm30, zmm31",
        "vdpbf16ps zmm22, zmm30, zmm31",
        "vdpbf16ps zmm23, zmm30, zmm31",
        "dec {n}",
        "jnz 2b",
        "3:",
        n = inout(reg) iters => _,
        out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _, out("zmm4") _, out("zmm5") _,
        out("zmm6") _, out("zmm7") _, out("zmm8") _, out("zmm9") _, out("zmm10") _, out("zmm11") _,
        out("zmm12") _, out("zmm13") _, out("zmm14") _, out("zmm15") _, out("zmm16") _, out("zmm17") _,
        out("zmm18") _, out("zmm19") _, out("zmm20") _, out("zmm21") _, out("zmm22") _, out("zmm23") _,
        out("zmm30") _, out("zmm31") _,
        options(nostack, nomem),
    );
    iters as f64 * 24.0 * 16.0 * 2.0 * 2.0
}

/// 4 independent `tdpbf16ps` per iteration on tiles that are never loaded from memory (zeroed),
/// each 16 × 16 × 32 multiply-adds.
unsafe fn amx_loop(iters: u64) -> f64 {
    asm!("ldtilecfg [{cfg}]", cfg = in(reg) super::amx::CONFIG.0.as_ptr(), options(nostack, readonly));
    asm!(
        "tilezero tmm0",
        "tilezero tmm1",
        "tilezero tmm2",
        "tilezero tmm3",
        "tilezero tmm4",
        "tilezero tmm5",
        "tilezero tmm6",
        "tilezero tmm7",
        "test {n}, {n}",
        "jz 3f",
        "2:",
        "tdpbf16ps tmm0, tmm4, tmm6",
        "tdpbf16ps tmm1, tmm4, tmm7",
        "tdpbf16ps tmm2, tmm5, tmm6",
        "tdpbf16ps tmm3, tmm5, tmm7",
        "dec {n}",
        "jnz 2b",
        "3:",
        n = inout(reg) iters => _,
        options(nostack, nomem),
    );
    asm!("tilerelease", options(nostack, nomem));
    iters as f64 * 4.0 * 16.0 * 16.0 * 32.0 * 2.0
}
