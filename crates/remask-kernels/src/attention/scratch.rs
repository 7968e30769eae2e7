//! Reusable scratch memory for the fused kernel's per-call buffers (the transposed keys and values of
//! every head, the bf16 kernel's packs), so a training step does not allocate, page-fault and free them on every call.
//!
//! Each thread that calls the kernel keeps one buffer, grown to the largest size it was asked for and
//! never shrunk (for a model that is `2·B·H·D·(T+16)` floats, the size of K and V). The buffer is
//! taken out of the thread-local while in use, so a nested call on the same thread (rayon may run one
//! inside another's join) simply gets a fresh buffer instead of aliasing the first.

use std::cell::Cell;

use crate::bf16::{Bf16, Bf16Buf};

thread_local! {
    static POOL: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    static BF16_POOL: Cell<Bf16Buf> = Cell::new(Bf16Buf::default());
}

/// Runs `f` on a scratch slice of `len` floats (contents unspecified; callers overwrite them).
/// (Aligning it to a cache line was measured slightly slower on Zen 4, so it is not.)
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = POOL.with(Cell::take);
    if buf.len() < len {
        buf = Vec::new();
        buf.resize(len, 0.0);
    }
    let r = f(&mut buf[..len]);
    POOL.with(|p| {
        let other = p.take();
        p.set(if other.len() > buf.len() { other } else { buf });
    });
    r
}

/// [`with_scratch`] for bf16 buffers (the bf16 kernel's per-head packs), starting on a cache line.
pub(crate) fn with_bf16_scratch<R>(len: usize, f: impl FnOnce(&mut [Bf16]) -> R) -> R {
    let mut buf = BF16_POOL.with(Cell::take);
    if buf.len() < len {
        buf = Bf16Buf::zeroed(len);
    }
    let r = f(&mut buf.as_mut_slice()[..len]);
    BF16_POOL.with(|p| {
        let other = p.take();
        p.set(if other.len() > buf.len() { other } else { buf });
    });
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_scratch_never_aliases_and_is_reused() {
        let outer_ptr = with_scratch(100, |a| {
            a.iter_mut().for_each(|x| *x = 1.0);
            let inner_ptr = with_scratch(50, |b| {
                b.iter_mut().for_each(|x| *x = 2.0);
                b.as_ptr() as usize
            });
            assert!(
                a.iter().all(|&x| x == 1.0),
                "the nested buffer wrote into the outer one"
            );
            assert_ne!(inner_ptr, a.as_ptr() as usize);
            a.as_ptr() as usize
        });
        // The larger buffer was kept and comes back for a smaller request.
        let again = with_scratch(80, |c| c.as_ptr() as usize);
        assert_eq!(again, outer_ptr);
    }
}
