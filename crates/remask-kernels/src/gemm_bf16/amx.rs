//! The AMX-BF16 kernel: 32 × 32 blocks of C in four tiles.
//!
//! Tile registers (palette 1, every tile 16 rows × 64 bytes): tmm0–3 hold C's four 16 × 16 f32
//! quarters, tmm4–5 the two 16-row A tiles (32 values of K each), tmm6–7 the two 16-column B tiles
//! (16 pair-rows of a panel, 1 KiB contiguous). Per 32 values of K: 4 tile loads, 4 `tdpbf16ps`
//! (each 16 × 16 × 32 multiply-adds).
//!
//! Rust's AMX intrinsics are unstable, so the instructions are written with `asm!`. Tile state is
//! configured per call on the calling thread (`ldtilecfg`) and released at the end (`tilerelease`),
//! so a rayon worker never keeps AMX state between tasks. A whole block (load or zero C, the K loop,
//! store C) is one `asm!` statement, so no tile register lives across compiler-generated code.
//! Blocks that stick out of C (ragged edges) or need `alpha != 1` go through a 32 × 32 scratch.

use std::arch::asm;

use super::{Product, BLOCK, K_CHUNK, K_STEP, PANEL};

/// `ldtilecfg` operand: palette 1, tiles 0–7 all 16 rows × 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

const fn tile_config() -> TileConfig {
    let mut c = [0u8; 64];
    c[0] = 1; // palette
    let mut t = 0;
    while t < 8 {
        c[16 + 2 * t] = 64; // bytes per row (u16, little-endian)
        c[48 + t] = 16; // rows
        t += 1;
    }
    TileConfig(c)
}

static CONFIG: TileConfig = tile_config();

/// Bytes a block's K loop advances B per step: 16 pair-rows × 64 bytes.
const B_STEP_BYTES: usize = K_STEP / 2 * 2 * PANEL * 2;

/// `c = alpha·A·B (+ c)` on the calling thread.
///
/// # Safety
/// As [`super::product_raw`]; the CPU must have AMX-BF16 and the process tile permission
/// (`crate::cpu` checks both before choosing this kernel). A's rows and B's panels must be padded
/// to 32 (checked by [`Product::check`]), since whole 32 × 32 blocks are read.
pub(super) unsafe fn product(c: *mut f32, ldc: usize, p: &Product<'_>) {
    asm!("ldtilecfg [{cfg}]", cfg = in(reg) CONFIG.0.as_ptr(), options(nostack, readonly));
    let chunk = if p.alpha == 1.0 { p.kpad } else { K_CHUNK };
    let mut scratch = Scratch([0.0; BLOCK * BLOCK]);
    let mut k0 = 0;
    loop {
        let kc = chunk.min(p.kpad - k0);
        let accumulate = p.accumulate || k0 > 0;
        let mut j0 = 0;
        while j0 < p.n {
            let cols = (p.n - j0).min(BLOCK);
            let b0 = (p.b.data.as_ptr().add(j0 / PANEL * p.b.panel_len + k0 * PANEL)) as *const u8;
            let b1 = b0.add(p.b.panel_len * 2);
            let mut i0 = 0;
            while i0 < p.m {
                let rows = (p.m - i0).min(BLOCK);
                let a = p.a.data.as_ptr().add(i0 * p.a.ld + k0) as *const u8;
                let lda = p.a.ld * 2;
                let cb = c.add(i0 * ldc + j0);
                let steps = kc / K_STEP;
                if rows == BLOCK && cols == BLOCK && p.alpha == 1.0 {
                    block(cb, ldc * 4, accumulate, a, lda, b0, b1, steps);
                } else {
                    // Through the scratch: C's part copied in when it starts the sum.
                    let from_c = accumulate && p.alpha == 1.0;
                    let s = scratch.0.as_mut_ptr();
                    if from_c {
                        for r in 0..rows {
                            std::ptr::copy_nonoverlapping(cb.add(r * ldc), s.add(r * BLOCK), cols);
                        }
                    }
                    block(s, BLOCK * 4, from_c, a, lda, b0, b1, steps);
                    for r in 0..rows {
                        let (src, dst) = (s.add(r * BLOCK), cb.add(r * ldc));
                        for j in 0..cols {
                            let v = *src.add(j);
                            *dst.add(j) = if from_c {
                                v
                            } else {
                                let scaled = if p.alpha == 1.0 { v } else { v * p.alpha };
                                if accumulate { *dst.add(j) + scaled } else { scaled }
                            };
                        }
                    }
                }
                i0 += rows;
            }
            j0 += cols;
        }
        k0 += kc;
        if k0 >= p.kpad {
            break;
        }
    }
    asm!("tilerelease", options(nostack, nomem));
}

#[repr(C, align(64))]
struct Scratch([f32; BLOCK * BLOCK]);

/// One 32 × 32 block: C (row stride `ldc` bytes) = [C if `load_c`] + Σ over `steps` K steps of
/// A (rows at `a`, `a + 16·lda`, stride `lda` bytes) × B (panels at `b0`, `b1`).
///
/// # Safety
/// The tile configuration is loaded; all addressed memory is valid (32 rows of C and A, `steps`
/// K steps of A and of both panels).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn block(c: *mut f32, ldc: usize, load_c: bool, a: *const u8, lda: usize, b0: *const u8, b1: *const u8, steps: usize) {
    let c2 = (c as *mut u8).add(16 * ldc);
    let a2 = a.add(16 * lda);
    asm!(
        "test {load}, {load}",
        "jz 2f",
        "tileloadd tmm0, [{c} + {ldc}*1]",
        "tileloadd tmm1, [{c} + {ldc}*1 + 64]",
        "tileloadd tmm2, [{c2} + {ldc}*1]",
        "tileloadd tmm3, [{c2} + {ldc}*1 + 64]",
        "jmp 3f",
        "2:",
        "tilezero tmm0",
        "tilezero tmm1",
        "tilezero tmm2",
        "tilezero tmm3",
        "3:",
        "test {n}, {n}",
        "jz 5f",
        "4:",
        "tileloadd tmm4, [{a} + {lda}*1]",
        "tileloadd tmm6, [{b0} + {s64}*1]",
        "tdpbf16ps tmm0, tmm4, tmm6",
        "tileloadd tmm7, [{b1} + {s64}*1]",
        "tdpbf16ps tmm1, tmm4, tmm7",
        "tileloadd tmm5, [{a2} + {lda}*1]",
        "tdpbf16ps tmm2, tmm5, tmm6",
        "tdpbf16ps tmm3, tmm5, tmm7",
        "add {a}, 64",
        "add {a2}, 64",
        "add {b0}, {bstep}",
        "add {b1}, {bstep}",
        "dec {n}",
        "jnz 4b",
        "5:",
        "tilestored [{c} + {ldc}*1], tmm0",
        "tilestored [{c} + {ldc}*1 + 64], tmm1",
        "tilestored [{c2} + {ldc}*1], tmm2",
        "tilestored [{c2} + {ldc}*1 + 64], tmm3",
        load = in(reg) load_c as usize,
        c = in(reg) c,
        c2 = in(reg) c2,
        ldc = in(reg) ldc,
        a = inout(reg) a => _,
        a2 = inout(reg) a2 => _,
        lda = in(reg) lda,
        b0 = inout(reg) b0 => _,
        b1 = inout(reg) b1 => _,
        s64 = in(reg) 64usize,
        bstep = const B_STEP_BYTES,
        n = inout(reg) steps => _,
        options(nostack),
    );
}
