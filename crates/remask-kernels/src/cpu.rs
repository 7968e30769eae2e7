//! What this CPU offers the bf16 kernels, found out once at run time.
//!
//! - [`Bf16Kernel::Amx`]: AMX-BF16 tile instructions (`tdpbf16ps`, a 16×16×32 product per
//!   instruction). Needs the CPU flags (cpuid leaf 7: AMX-TILE, AMX-BF16), the OS to save tile state
//!   (XCR0 bits 17 and 18) and, on Linux, the process's permission to use tile data, asked for once
//!   with `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`. Only Linux asks for it, so other
//!   systems use the AVX-512 path.
//! - [`Bf16Kernel::Avx512`]: AVX-512 BF16 (`vdpbf16ps`, two bf16 products per 32-bit lane).
//! - Neither: [`bf16_kernel`] returns `None`; callers asking for bf16 precision must refuse with
//!   [`BF16_UNSUPPORTED`] rather than change the precision silently.
//!
//! Benchmarks may call [`limit_bf16_kernel`] to measure what a CPU without AMX gets.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// The bf16 GEMM path the kernels take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Bf16Kernel {
    /// AVX-512 BF16 `vdpbf16ps` register-blocked kernel.
    Avx512,
    /// AMX-BF16 tiles.
    Amx,
}

impl Bf16Kernel {
    /// Lower-case name, as benchmarks print it.
    pub fn name(self) -> &'static str {
        match self {
            Bf16Kernel::Avx512 => "avx512-bf16",
            Bf16Kernel::Amx => "amx-bf16",
        }
    }
}

/// What to tell a user whose CPU cannot run the bf16 kernels.
pub const BF16_UNSUPPORTED: &str = "bf16 precision needs a CPU with AVX-512 BF16 (Intel Cooper Lake / Sapphire Rapids or \
                                    later, AMD Zen 4 or later); this CPU has none: use precision = \"fp32\"";

/// Best path this CPU supports, detected once.
fn detected() -> Option<Bf16Kernel> {
    static DETECTED: OnceLock<Option<Bf16Kernel>> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        if !has_avx512_bf16() {
            return None;
        }
        Some(if amx_usable() {
            Bf16Kernel::Amx
        } else {
            Bf16Kernel::Avx512
        })
    })
}

/// 0 = no limit, 1 = at most AVX-512.
static LIMIT: AtomicU8 = AtomicU8::new(0);

/// The bf16 path the kernels take now, or `None` when this CPU has no bf16 support.
pub fn bf16_kernel() -> Option<Bf16Kernel> {
    let best = detected()?;
    Some(if LIMIT.load(Ordering::Relaxed) == 1 {
        Bf16Kernel::Avx512
    } else {
        best
    })
}

/// The best bf16 path this CPU supports, ignoring [`limit_bf16_kernel`].
pub fn best_bf16_kernel() -> Option<Bf16Kernel> {
    detected()
}

/// Restricts the bf16 kernels to `most` (process-wide). For benchmarks that measure the AVX-512
/// path on a CPU that also has AMX; training never calls it.
pub fn limit_bf16_kernel(most: Bf16Kernel) {
    LIMIT.store(
        if most == Bf16Kernel::Avx512 { 1 } else { 0 },
        Ordering::Relaxed,
    );
}

/// AVX-512 F, BW and BF16: what the conversion and `vdpbf16ps` kernels need.
pub fn has_avx512_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether AMX-BF16 can be used by this process: CPU flags, OS tile state, Linux permission.
fn amx_usable() -> bool {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        use std::arch::x86_64::{__cpuid_count, _xgetbv};
        // Leaf 7 is valid when the maximum leaf is ≥ 7.
        let max_leaf = __cpuid_count(0, 0).eax;
        if max_leaf < 7 {
            return false;
        }
        let leaf7 = __cpuid_count(7, 0);
        let (amx_bf16, amx_tile) = (leaf7.edx >> 22 & 1 == 1, leaf7.edx >> 24 & 1 == 1);
        // Leaf 1, ECX bit 27 (OSXSAVE): xgetbv may be executed.
        let osxsave = __cpuid_count(1, 0).ecx >> 27 & 1 == 1;
        if !(amx_bf16 && amx_tile && osxsave) {
            return false;
        }
        // SAFETY: OSXSAVE is set (checked), so xgetbv(0) is allowed. Bits 17 and 18 say the OS
        // saves the tile configuration and tile data.
        let xcr0 = unsafe { _xgetbv(0) };
        if xcr0 & (3 << 17) != 3 << 17 {
            return false;
        }
        request_tile_permission()
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    {
        false
    }
}

/// Linux: `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`, which lets every thread of the
/// process use AMX tile data. True on success.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tile_permission() -> bool {
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let ret: i64;
    // SAFETY: a plain system call that only changes this process's permissions; the syscall
    // instruction clobbers rcx and r11, declared here.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_only_lowers_the_path() {
        let best = best_bf16_kernel();
        assert_eq!(bf16_kernel(), best);
        if best == Some(Bf16Kernel::Amx) {
            limit_bf16_kernel(Bf16Kernel::Avx512);
            assert_eq!(bf16_kernel(), Some(Bf16Kernel::Avx512));
            limit_bf16_kernel(Bf16Kernel::Amx);
        }
        assert_eq!(bf16_kernel(), best);
        assert_eq!(best.is_some(), has_avx512_bf16());
    }
}
