//! The one call into the `gemm` crate: a bounds-checked, safe, strided f32 product.
//!
//! `dst[M,N] = beta·dst + alpha·lhs[M,K]·rhs[K,N]` in the BLAS convention (alpha scales the
//! product, beta the old contents; beta = 0 never reads dst, so NaN there cannot leak). Every matrix
//! is a view with a row and a column stride, so every transpose is a stride swap and nothing is
//! copied. `matmul.rs` (linear layers, general GEMM) and the attention kernels go through here.

use gemm::Parallelism;

/// Below this many multiply-adds a [`Threads::Pool`] product still runs on the calling thread.
const PARALLEL_MIN_FLOPS: usize = 1 << 18;

/// A read-only matrix view: element (i, j) is `data[i·rs + j·cs]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MatRef<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major matrix with row stride `ld`.
    pub fn rows(data: &'a [f32], ld: usize) -> Self {
        Self {
            data,
            rs: ld,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix with row stride `ld` (element (i, j) is `data[j·ld + i]`).
    pub fn transposed(data: &'a [f32], ld: usize) -> Self {
        Self {
            data,
            rs: 1,
            cs: ld,
        }
    }

    /// `rows(ld)` or `transposed(ld)`.
    pub fn maybe_transposed(data: &'a [f32], ld: usize, transposed: bool) -> Self {
        if transposed {
            Self::transposed(data, ld)
        } else {
            Self::rows(data, ld)
        }
    }
}

/// Which threads a product may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Threads {
    /// Only the calling thread (callers that already run inside rayon tasks, small tiles).
    Caller,
    /// Rayon's pool when the product is large enough to pay for it, else the calling thread.
    Pool,
}

/// The index one past the last element an `r × c` view with strides `rs`, `cs` addresses.
fn extent(rs: usize, cs: usize, r: usize, c: usize) -> usize {
    (r - 1) * rs + (c - 1) * cs + 1
}

/// `dst[M,N] = beta·dst + alpha·lhs·rhs`, where dst's element (i, j) is `dst[i·dst_rs + j·dst_cs]`.
/// Panics (a programmer error) when a view addresses an element outside its slice.
#[allow(clippy::too_many_arguments)] // llm.c-style kernel signature: buffers first, sizes last.
pub(crate) fn strided_gemm(
    dst: &mut [f32],
    dst_rs: usize,
    dst_cs: usize,
    lhs: MatRef<'_>,
    rhs: MatRef<'_>,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    beta: f32,
    threads: Threads,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        extent(dst_rs, dst_cs, m, n) <= dst.len(),
        "strided_gemm: dst too small"
    );
    if k > 0 {
        assert!(
            extent(lhs.rs, lhs.cs, m, k) <= lhs.data.len(),
            "strided_gemm: lhs too small"
        );
        assert!(
            extent(rhs.rs, rhs.cs, k, n) <= rhs.data.len(),
            "strided_gemm: rhs too small"
        );
    }
    let parallelism = match threads {
        Threads::Pool
            if rayon::current_num_threads() > 1
                && m.saturating_mul(n).saturating_mul(k) >= PARALLEL_MIN_FLOPS =>
        {
            Parallelism::Rayon(rayon::current_num_threads())
        }
        _ => Parallelism::None,
    };
    // The gemm crate names the factors the other way round: dst = alpha·dst + beta·lhs·rhs, and it
    // takes column stride before row stride.
    // SAFETY: the asserts above bound every element the strides address (with k = 0 lhs and rhs are
    // not read); dst is exclusively borrowed, so it cannot alias lhs or rhs (shared borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs as isize,
            dst_rs as isize,
            beta != 0.0,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            beta,
            alpha,
            false,
            false,
            false,
            parallelism,
        );
    }
}
