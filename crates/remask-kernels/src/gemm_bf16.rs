//! Mixed-precision GEMM: bf16 operands, f32 accumulation.
//!
//! `C[M×N] = alpha·A[M×K]·B[K×N] (+ C)`, with A and B first packed into bf16 layouts that both
//! kernels read directly:
//!
//! - [`PackedLhs`] (A): row-major, rows padded to a multiple of [`BLOCK`] and K to a multiple of
//!   [`K_STEP`], zeros in the padding. Neighbouring values along K are the pairs `vdpbf16ps`
//!   multiplies, and 16 rows × 32 values are one AMX A tile.
//! - [`PackedRhs`] (B): panels of 16 columns, each `[K/2][16][2]` (the "VNNI" layout: the two
//!   values of a pair sit side by side), panels padded to an even count, K to a multiple of
//!   [`K_STEP`]. 16 pair-rows of a panel are one AMX B tile (1 KiB, contiguous).
//!
//! Kernels (chosen at run time by [`crate::cpu::bf16_kernel`]):
//! - `avx512.rs`: `vdpbf16ps`, 6 rows × 64 columns of C in 24 zmm accumulators; per pair of K, one
//!   32-bit broadcast of A and four panel rows of B.
//! - `amx.rs`: AMX-BF16, 32 × 32 blocks of C in four tiles; per 32 values of K, two A tiles, two B
//!   tiles, four `tdpbf16ps`.
//! - `reference.rs`: the plain twin.
//!
//! Summation order (what makes results reproducible and comparable): with `alpha == 1` each element
//! starts from its [`Start`] (0, C or the bias) and adds its K products in order, the odd element of a
//! pair before the even one (exactly what `vdpbf16ps` does, so the AVX-512 kernel equals the twin
//! bit for bit on normal numbers). With `alpha != 1` each chunk of [`K_CHUNK`] values is summed
//! from 0 and `alpha·sum` added to the start value (0 or C). AMX sums a tile's 32 products in its own way (not documented
//! bit for bit), so it agrees with the twin to f32 rounding only. Work is split over C only, never
//! over K, so results do not depend on the thread count.

use rayon::prelude::*;

use crate::bf16::{Bf16, Bf16Buf};
use crate::cpu::Bf16Kernel;
use crate::strided_gemm::MatRef;
use pack::Split;

mod amx;
mod avx512;
pub(crate) mod pack;
mod peak;
mod reference;
#[cfg(test)]
mod tests;

pub use peak::{bf16_peak_loop, fp32_peak_loop};
pub use reference::gemm_bf16_reference;

/// Values of K per AMX step (one 64-byte A tile row); packed K is a multiple of it.
pub const K_STEP: usize = 32;
/// Rows and columns of the blocks of C the AMX kernel computes; packed rows and panel pairs are
/// padded to it.
pub const BLOCK: usize = 32;
/// Columns per panel of [`PackedRhs`].
pub const PANEL: usize = 16;
/// Values of K summed before the partial sums are added to C (keeps both operands of a block in
/// L1/L2 when K is long, as in weight gradients where K is the number of tokens).
pub const K_CHUNK: usize = 512;

/// A left factor packed for the bf16 kernels (see the module doc). Grows, never shrinks.
#[derive(Clone, Debug, Default)]
pub struct PackedLhs {
    data: Bf16Buf,
    m: usize,
    k: usize,
    ld: usize,
}

/// A right factor packed for the bf16 kernels (see the module doc). Grows, never shrinks.
#[derive(Clone, Debug, Default)]
pub struct PackedRhs {
    data: Bf16Buf,
    k: usize,
    n: usize,
    /// bf16 values per panel: `kpad · 16`.
    panel_len: usize,
}

fn round_up(x: usize, to: usize) -> usize {
    x.div_ceil(to) * to
}

/// Row stride of an A pack of depth `k`: K padded to [`K_STEP`], plus one cache line when rows
/// would otherwise lie a multiple of 1 KiB apart (rows 4 KiB apart share one L1 set).
pub(crate) fn lhs_stride(k: usize) -> usize {
    let ld = round_up(k.max(1), K_STEP);
    if ld.is_multiple_of(512) {
        ld + K_STEP
    } else {
        ld
    }
}

/// bf16 values per panel of a B pack of depth `k`.
pub(crate) fn rhs_panel_len(k: usize) -> usize {
    round_up(k.max(1), K_STEP) * PANEL
}

/// bf16 values of an A pack of `m × k` with row stride `ld`.
pub(crate) fn lhs_len(m: usize, ld: usize) -> usize {
    round_up(m.max(1), BLOCK) * ld
}

/// bf16 values of a B pack of `n` columns with panels of `panel_len`.
pub(crate) fn rhs_len(n: usize, panel_len: usize) -> usize {
    round_up(n.max(1), BLOCK) / PANEL * panel_len
}

impl PackedLhs {
    pub fn new() -> Self {
        Self::default()
    }

    /// M: rows.
    pub fn rows(&self) -> usize {
        self.m
    }

    /// K: the inner dimension.
    pub fn depth(&self) -> usize {
        self.k
    }

    /// Packs `src[M×K]` (f32, row-major with row stride `ld`, or its transpose when `transposed`:
    /// element (i, p) at `src[p·ld + i]`), rounding every value to bf16.
    pub fn pack(&mut self, src: &[f32], ld: usize, transposed: bool, m: usize, k: usize) {
        let view = MatRef::maybe_transposed(src, ld, transposed);
        self.m = m;
        self.k = k;
        self.ld = lhs_stride(k);
        let len = lhs_len(m, self.ld);
        self.data.grow(len);
        pack::lhs(
            &mut self.data.as_mut_slice()[..len],
            self.ld,
            view,
            m,
            k,
            1.0,
            Split::Pool,
        );
    }

    pub(crate) fn view(&self) -> LhsView<'_> {
        LhsView {
            data: self.data.as_slice(),
            ld: self.ld,
        }
    }
}

impl PackedRhs {
    pub fn new() -> Self {
        Self::default()
    }

    /// K: the inner dimension.
    pub fn depth(&self) -> usize {
        self.k
    }

    /// N: columns.
    pub fn cols(&self) -> usize {
        self.n
    }

    /// Packs `src[K×N]` (f32, row-major with row stride `ld`, or its transpose when `transposed`:
    /// element (p, j) at `src[j·ld + p]`), rounding every value to bf16.
    pub fn pack(&mut self, src: &[f32], ld: usize, transposed: bool, k: usize, n: usize) {
        let view = MatRef::maybe_transposed(src, ld, transposed);
        self.k = k;
        self.n = n;
        self.panel_len = rhs_panel_len(k);
        let len = rhs_len(n, self.panel_len);
        self.data.grow(len);
        pack::rhs(
            &mut self.data.as_mut_slice()[..len],
            self.panel_len,
            view,
            k,
            n,
            Split::Pool,
        );
    }

    pub(crate) fn view(&self) -> RhsView<'_> {
        RhsView {
            data: self.data.as_slice(),
            panel_len: self.panel_len,
        }
    }
}

/// A packed left factor: row i starts at `data[i·ld]`; rows and K are zero-padded.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LhsView<'a> {
    pub data: &'a [Bf16],
    pub ld: usize,
}

/// A packed right factor: panel p starts at `data[p·panel_len]`, its pair-row q at `+ 32·q`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RhsView<'a> {
    pub data: &'a [Bf16],
    pub panel_len: usize,
}

/// What each element of C starts from before the products are added.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Start<'a> {
    /// 0: C is overwritten (never read, so NaN there does not leak).
    Zero,
    /// C's old value: the product is added to C.
    C,
    /// `bias[j]` for column j (the linear layer's bias, added without a separate pass over C);
    /// only with `alpha == 1`.
    Bias(&'a [f32]),
}

/// One product over packed operands: `c[m×n]` (row stride `ldc`) `= start + alpha·A·B` over the
/// first `kpad` (a multiple of [`K_STEP`]) values of K.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Product<'a> {
    pub a: LhsView<'a>,
    pub b: RhsView<'a>,
    pub m: usize,
    pub n: usize,
    pub kpad: usize,
    pub alpha: f32,
    pub start: Start<'a>,
}

impl Product<'_> {
    /// Checks that every packed element the kernels read lies inside the buffers (AMX reads whole
    /// 32 × 32 blocks, so rows and panels must be padded to [`BLOCK`]).
    pub(crate) fn check(&self, c_len: usize, ldc: usize) {
        assert!(
            self.kpad.is_multiple_of(K_STEP),
            "gemm_bf16: K must be padded to {K_STEP}"
        );
        if self.m == 0 || self.n == 0 {
            return;
        }
        assert!(
            ldc >= self.n && c_len >= (self.m - 1) * ldc + self.n,
            "gemm_bf16: c too small"
        );
        // The kernels read kpad values of round_up(m, 32) rows of A and kpad / 2 pair-rows of
        // round_up(n, 32) / 16 panels of B (views may start inside a row or panel).
        let (rows, panels) = (round_up(self.m, BLOCK), round_up(self.n, BLOCK) / PANEL);
        assert!(
            self.a.ld >= self.kpad && self.a.data.len() >= (rows - 1) * self.a.ld + self.kpad,
            "gemm_bf16: packed A too small"
        );
        assert!(
            self.b.panel_len >= self.kpad * PANEL,
            "gemm_bf16: packed B panels too short"
        );
        assert!(
            self.b.data.len() >= (panels - 1) * self.b.panel_len + self.kpad * PANEL,
            "gemm_bf16: packed B too small"
        );
        if let Start::Bias(bias) = self.start {
            assert!(
                self.alpha == 1.0 && bias.len() >= self.n,
                "gemm_bf16: a bias start needs alpha = 1 and N values"
            );
        }
    }
}

/// `c[M×N]` (row stride `ldc`) `= start + alpha·A·B`, A and B packed. Large products
/// are split over rayon's pool by blocks of C (never over K, so the result does not depend on the
/// thread count). Panics when this CPU has no bf16 support (callers check
/// [`crate::cpu::bf16_kernel`] and refuse bf16 earlier with a message).
pub fn gemm_bf16(
    c: &mut [f32],
    ldc: usize,
    a: &PackedLhs,
    b: &PackedRhs,
    alpha: f32,
    start: Start<'_>,
) {
    let kernel = crate::cpu::bf16_kernel().expect(crate::cpu::BF16_UNSUPPORTED);
    gemm_bf16_with(kernel, c, ldc, a, b, alpha, start);
}

/// [`gemm_bf16`] on the given kernel (tests and benchmarks compare the paths). Panics when this CPU
/// lacks it.
pub fn gemm_bf16_with(
    kernel: Bf16Kernel,
    c: &mut [f32],
    ldc: usize,
    a: &PackedLhs,
    b: &PackedRhs,
    alpha: f32,
    start: Start<'_>,
) {
    // Detection also asks the OS for the AMX tile permission, which the AMX kernel needs.
    let best = crate::cpu::best_bf16_kernel().expect(crate::cpu::BF16_UNSUPPORTED);
    assert!(
        kernel <= best,
        "gemm_bf16: this CPU has no {} kernel",
        kernel.name()
    );
    assert_eq!(a.k, b.k, "gemm_bf16: A and B differ in K");
    let p = Product {
        a: a.view(),
        b: b.view(),
        m: a.m,
        n: b.n,
        kpad: round_up(a.k.max(1), K_STEP),
        alpha,
        start,
    };
    p.check(c.len(), ldc);
    if p.m == 0 || p.n == 0 {
        return;
    }
    let (m, n) = (p.m, p.n);
    // Tasks: blocks of C of `rows × cols`, 8 per thread (measured: 4 per thread left a worker
    // idle at the end of many products, 2.5-4% of a bf16 MLM step; 16 gained nothing more); each
    // task keeps a 32-column slice of B in L1 while it walks down its rows.
    let threads = rayon::current_num_threads();
    let flops = m * n * p.kpad;
    if threads == 1 || flops < 1 << 20 {
        run_rect(kernel, c, ldc, &p, 0..m, 0..n);
        return;
    }
    let want = 8 * threads;
    let row_blocks = m.div_ceil(BLOCK);
    let col_blocks = n.div_ceil(2 * BLOCK);
    // Prefer splitting rows (contiguous in C); split columns too when there are too few row blocks.
    let col_tasks = if row_blocks >= want {
        1
    } else {
        want.div_ceil(row_blocks).min(col_blocks)
    };
    let row_tasks = row_blocks.min(want.div_ceil(col_tasks)).max(1);
    let rows_per = row_blocks.div_ceil(row_tasks) * BLOCK;
    let cols_per = col_blocks.div_ceil(col_tasks) * 2 * BLOCK;
    let tasks: Vec<(usize, usize)> = (0..m)
        .step_by(rows_per)
        .flat_map(|r| (0..n).step_by(cols_per).map(move |j| (r, j)))
        .collect();
    let cptr = SharedOut(c.as_mut_ptr(), c.len());
    tasks.par_iter().for_each(|&(r0, j0)| {
        let rows = r0..(r0 + rows_per).min(m);
        let cols = j0..(j0 + cols_per).min(n);
        // SAFETY: the tasks cover disjoint rectangles of C (distinct (row range, column range)
        // pairs from one grid), and `run_rect_raw` only writes inside its rectangle; the pointer
        // and length come from the exclusively borrowed `c`, which outlives the parallel loop.
        unsafe { run_rect_raw(kernel, cptr, ldc, &p, rows, cols) };
    });
}

/// A pointer to C shared by tasks that write disjoint rectangles of it.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32, usize);
// SAFETY: only used for disjoint writes (see `gemm_bf16_with`).
unsafe impl Send for SharedOut {}
// SAFETY: as above.
unsafe impl Sync for SharedOut {}

/// # Safety
/// No other thread may access the rectangle `rows × cols` of C while this runs, and `p` must have
/// passed [`Product::check`] against C.
unsafe fn run_rect_raw(
    kernel: Bf16Kernel,
    c: SharedOut,
    ldc: usize,
    p: &Product<'_>,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
) {
    debug_assert!((rows.end - 1) * ldc + cols.end <= c.1);
    let sub = Product {
        a: LhsView {
            data: &p.a.data[rows.start * p.a.ld..],
            ld: p.a.ld,
        },
        b: RhsView {
            data: &p.b.data[cols.start / PANEL * p.b.panel_len..],
            panel_len: p.b.panel_len,
        },
        m: rows.len(),
        n: cols.len(),
        start: match p.start {
            Start::Bias(bias) => Start::Bias(&bias[cols.start..]),
            other => other,
        },
        ..*p
    };
    product_raw(kernel, c.0.add(rows.start * ldc + cols.start), ldc, &sub);
}

fn run_rect(
    kernel: Bf16Kernel,
    c: &mut [f32],
    ldc: usize,
    p: &Product<'_>,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
) {
    let cptr = SharedOut(c.as_mut_ptr(), c.len());
    // SAFETY: c is exclusively borrowed for the whole call and p was checked against it.
    unsafe { run_rect_raw(kernel, cptr, ldc, p, rows, cols) }
}

/// One product on the calling thread (the fused attention kernel's tiles).
pub(crate) fn kernel_product(kernel: Bf16Kernel, c: &mut [f32], ldc: usize, p: &Product<'_>) {
    p.check(c.len(), ldc);
    // SAFETY: checked just above; c is exclusively borrowed.
    unsafe { product_raw(kernel, c.as_mut_ptr(), ldc, p) }
}

/// # Safety
/// `c` addresses `m` rows of `n` writable f32 with row stride `ldc` that nothing else accesses
/// meanwhile; the packed operands cover what [`Product::check`] requires. Only those `m × n`
/// elements are read or written.
unsafe fn product_raw(kernel: Bf16Kernel, c: *mut f32, ldc: usize, p: &Product<'_>) {
    if p.m == 0 || p.n == 0 {
        return;
    }
    match kernel {
        Bf16Kernel::Amx => amx::product(c, ldc, p),
        Bf16Kernel::Avx512 => avx512::product(c, ldc, p),
    }
}
