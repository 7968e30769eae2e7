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
//! Blocks that stick out of C (ragged edges) or need `alpha != 1` go through a 32 × 32 scratch. A
//! bias start is a tile load with row stride 0 (every row the bias), so C is written once.

use std::arch::asm;

use super::{Product, Start, BLOCK, K_CHUNK, K_STEP, PANEL};

/// `ldtilecfg` operand: palette 1, tiles 0–7 all 16 rows × 64 bytes.
#[repr(C, align(64))]
pub(super) struct TileConfig(pub(super) [u8; 64]);

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

pub(super) static CONFIG: TileConfig = tile_config();

/// Bytes a block's K loop advances B per step: 16 pair-rows × 64 bytes.
const B_STEP_BYTES: usize = K_STEP / 2 * 2 * PANEL * 2;

/// `c = start + alpha·A·B` on the calling thread.
///
/// # Safety
/// As [`super::product_raw`]; the CPU must have AMX-BF16 and the process tile permission
/// (`crate::cpu` checks both before choosing this kernel). A's rows and B's panels must be padded
/// to 32 (checked by [`Product::check`]), since whole 32 × 32 blocks are read.
pub(super) unsafe fn product(c: *mut f32, ldc: usize, p: &Product<'_>) {
    asm!("ldtilecfg [{cfg}]", cfg = in(reg) CONFIG.0.as_ptr(), options(nostack, readonly));
    // Blocking (the classic GEMM loop nest): K in chunks of K_CHUNK values; C's columns in panels of
    // NC; inside a panel, row blocks outer and column blocks inner. A row block's chunk (32 × 512
    // bf16, 32 KiB) stays in L1 across the panel's column blocks, the panel's B chunk (512 × 512,
    // 512 KiB) stays in L2 across row blocks, and the 32 rows of C a row block writes stay in the
    // TLB. With alpha = 1 every chunk continues the stored sum exactly (the chunking changes no
    // bit); with alpha != 1 the chunks are the ones the summation order fixes.
    let mut scratch = Scratch([0.0; BLOCK * BLOCK]);
    let mut k0 = 0;
    loop {
        let kc = K_CHUNK.min(p.kpad - k0);
        // Later chunks add to what the earlier ones stored.
        let start = if k0 > 0 { Start::C } else { p.start };
        let mut n0 = 0;
        while n0 < p.n {
            let n1 = (n0 + NC).min(p.n);
            let blocks = (n1 - n0).div_ceil(BLOCK);
            let mut r0 = 0;
            while r0 < p.m {
                let mut j0 = n0;
                while j0 < n1 {
                    // Meanwhile, bring the next row block's A chunk into L1, a share per block.
                    if r0 + BLOCK < p.m {
                        prefetch_a(p, r0 + BLOCK, k0, kc, (j0 - n0) / BLOCK, blocks);
                    }
                    block_at(c, ldc, p, start, k0, kc, r0, j0, &mut scratch);
                    j0 += BLOCK;
                }
                r0 += BLOCK;
            }
            n0 = n1;
        }
        k0 += kc;
        if k0 >= p.kpad {
            break;
        }
    }
    asm!("tilerelease", options(nostack, nomem));
}

/// Prefetches part `part` of `parts` of the A chunk (rows r0..r0+32, K values k0..k0+kc).
#[inline(always)]
unsafe fn prefetch_a(p: &Product<'_>, r0: usize, k0: usize, kc: usize, part: usize, parts: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    let lines_per_row = kc * 2 / 64;
    let total = BLOCK * lines_per_row;
    let (from, to) = (total * part / parts, total * (part + 1) / parts);
    let base = p.a.data.as_ptr().add(r0 * p.a.ld + k0) as *const i8;
    for l in from..to {
        let (r, c) = (l / lines_per_row, l % lines_per_row);
        _mm_prefetch::<_MM_HINT_T0>(base.add(r * p.a.ld * 2 + c * 64));
    }
}

/// Columns of C per panel of the loop nest (a multiple of [`BLOCK`]).
const NC: usize = 512;

/// The 32 × 32 block of C at (r0, j0) over K values k0..k0+kc.
///
/// # Safety
/// As [`product`]; the tile configuration is loaded.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn block_at(
    c: *mut f32,
    ldc: usize,
    p: &Product<'_>,
    start: Start<'_>,
    k0: usize,
    kc: usize,
    r0: usize,
    j0: usize,
    scratch: &mut Scratch,
) {
    let (rows, cols) = ((p.m - r0).min(BLOCK), (p.n - j0).min(BLOCK));
    let b0 =
        (p.b.data
            .as_ptr()
            .add(j0 / PANEL * p.b.panel_len + k0 * PANEL)) as *const u8;
    let b1 = b0.add(p.b.panel_len * 2);
    let ab = Operands {
        a: p.a.data.as_ptr().add(r0 * p.a.ld + k0) as *const u8,
        lda: p.a.ld * 2,
        b0,
        b1,
        steps: kc / K_STEP,
    };
    let cb = c.add(r0 * ldc + j0);
    if rows == BLOCK && cols == BLOCK && p.alpha == 1.0 {
        let (src, sstride) = match start {
            Start::Zero => (std::ptr::null(), 0),
            Start::C => (cb as *const f32, ldc * 4),
            // A bias tile is the bias row loaded with row stride 0.
            Start::Bias(bias) => (bias.as_ptr().add(j0), 0),
        };
        block(cb, ldc * 4, src, sstride, &ab);
        return;
    }
    // Through the scratch: C's part (or the bias) copied in when it starts the sum.
    let s = scratch.0.as_mut_ptr();
    let (src, sstride) = match start {
        _ if p.alpha != 1.0 => (std::ptr::null(), 0),
        Start::Zero => (std::ptr::null(), 0),
        Start::C => {
            for r in 0..rows {
                std::ptr::copy_nonoverlapping(cb.add(r * ldc), s.add(r * BLOCK), cols);
            }
            (s as *const f32, BLOCK * 4)
        }
        Start::Bias(bias) => {
            // The bias row only has `cols` values left: copy it, do not over-read.
            std::ptr::copy_nonoverlapping(bias.as_ptr().add(j0), s, cols);
            (s as *const f32, 0)
        }
    };
    block(s, BLOCK * 4, src, sstride, &ab);
    for r in 0..rows {
        let (src, dst) = (s.add(r * BLOCK), cb.add(r * ldc));
        for j in 0..cols {
            let v = *src.add(j);
            *dst.add(j) = match start {
                _ if p.alpha == 1.0 => v,
                Start::C => *dst.add(j) + v * p.alpha,
                _ => v * p.alpha,
            };
        }
    }
}

#[repr(C, align(64))]
struct Scratch([f32; BLOCK * BLOCK]);

/// The A and B side of one block: A's rows at `a` (row stride `lda` bytes, the second 16 rows at
/// `a + 16·lda`), B's two panels at `b0`, `b1`, `steps` K steps of 32.
struct Operands {
    a: *const u8,
    lda: usize,
    b0: *const u8,
    b1: *const u8,
    steps: usize,
}

/// One 32 × 32 block: C (row stride `ldc` bytes) = init + Σ over the K steps of A × B, where init
/// is 0 when `src` is null, else the 32 × 32 f32 block at `src` with row stride `sstride` bytes
/// (0 repeats one row: the bias).
///
/// # Safety
/// The tile configuration is loaded; all addressed memory is valid (32 rows of C, of `src`'s
/// block and of A; `steps` K steps of A and of both panels).
#[inline(always)]
unsafe fn block(c: *mut f32, ldc: usize, src: *const f32, sstride: usize, x: &Operands) {
    let a2 = x.a.add(16 * x.lda);
    asm!(
        "test {src}, {src}",
        "jz 2f",
        "mov {s64}, {sstride}",
        "shl {s64}, 4",
        "add {s64}, {src}",
        "tileloadd tmm0, [{src} + {sstride}*1]",
        "tileloadd tmm1, [{src} + {sstride}*1 + 64]",
        "tileloadd tmm2, [{s64} + {sstride}*1]",
        "tileloadd tmm3, [{s64} + {sstride}*1 + 64]",
        "jmp 3f",
        "2:",
        "tilezero tmm0",
        "tilezero tmm1",
        "tilezero tmm2",
        "tilezero tmm3",
        "3:",
        "mov {s64}, 64",
        "test {n}, {n}",
        "jz 5f",
        // Software-pipelined: the tiles of step i+1 are loaded as soon as step i's last product
        // reading that tile register has been issued, so loads overlap the products.
        "tileloadd tmm4, [{a} + {lda}*1]",
        "tileloadd tmm6, [{b0} + {s64}*1]",
        "tileloadd tmm7, [{b1} + {s64}*1]",
        "tileloadd tmm5, [{a2} + {lda}*1]",
        "dec {n}",
        "jz 6f",
        "4:",
        "add {a}, 64",
        "add {a2}, 64",
        "add {b0}, {bstep}",
        "add {b1}, {bstep}",
        "tdpbf16ps tmm0, tmm4, tmm6",
        "tdpbf16ps tmm1, tmm4, tmm7",
        "tileloadd tmm4, [{a} + {lda}*1]",
        "tdpbf16ps tmm2, tmm5, tmm6",
        "tileloadd tmm6, [{b0} + {s64}*1]",
        "tdpbf16ps tmm3, tmm5, tmm7",
        "tileloadd tmm5, [{a2} + {lda}*1]",
        "tileloadd tmm7, [{b1} + {s64}*1]",
        "dec {n}",
        "jnz 4b",
        "6:",
        "tdpbf16ps tmm0, tmm4, tmm6",
        "tdpbf16ps tmm1, tmm4, tmm7",
        "tdpbf16ps tmm2, tmm5, tmm6",
        "tdpbf16ps tmm3, tmm5, tmm7",
        "5:",
        "mov {src}, {ldc}",
        "shl {src}, 4",
        "add {src}, {c}",
        "tilestored [{c} + {ldc}*1], tmm0",
        "tilestored [{c} + {ldc}*1 + 64], tmm1",
        "tilestored [{src} + {ldc}*1], tmm2",
        "tilestored [{src} + {ldc}*1 + 64], tmm3",
        src = inout(reg) src => _,
        sstride = in(reg) sstride,
        s64 = out(reg) _,
        c = in(reg) c,
        ldc = in(reg) ldc,
        a = inout(reg) x.a => _,
        a2 = inout(reg) a2 => _,
        lda = in(reg) x.lda,
        b0 = inout(reg) x.b0 => _,
        b1 = inout(reg) x.b1 => _,
        bstep = const B_STEP_BYTES,
        n = inout(reg) x.steps => _,
        options(nostack),
    );
}
