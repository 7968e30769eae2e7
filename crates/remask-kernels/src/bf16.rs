//! bf16 ("brain float 16"): the upper half of an f32, with its 8 exponent bits and 7 of its 23
//! mantissa bits (rounding error at most 2⁻⁸ ≈ 0.4% of the value), the operand type of the mixed-precision GEMMs.
//!
//! Conversion rounds to nearest, ties to even, and flushes subnormal inputs to a signed zero, exactly
//! as the hardware conversion (`vcvtneps2bf16`) does, so the scalar twin and the vector path give the
//! same bits. NaN stays a (quiet) NaN.

/// One bf16 value, stored as its 16 bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(transparent)]
pub struct Bf16(pub u16);

impl Bf16 {
    pub const ZERO: Bf16 = Bf16(0);

    /// Rounds `x` to the nearest bf16 (ties to even); subnormals become ±0, NaN a quiet NaN.
    #[inline]
    pub fn from_f32(x: f32) -> Self {
        let b = x.to_bits();
        if x.is_nan() {
            return Bf16(((b >> 16) | 0x40) as u16);
        }
        if b & 0x7F80_0000 == 0 {
            // Zero or subnormal: keep the sign only.
            return Bf16(((b >> 16) & 0x8000) as u16);
        }
        // Adding 0x7FFF plus the lowest kept bit rounds to nearest even; overflow carries into
        // the exponent (up to infinity), which is the correct rounding too.
        let round = 0x7FFF + ((b >> 16) & 1);
        Bf16((b.wrapping_add(round) >> 16) as u16)
    }

    /// The exact f32 value.
    #[inline]
    pub fn to_f32(self) -> f32 {
        f32::from_bits((self.0 as u32) << 16)
    }
}

/// One 64-byte cache line of bf16 values.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Line([Bf16; 32]);

/// A growable bf16 buffer that starts on a 64-byte boundary, so that rows of packed operands (whose
/// strides are multiples of 64 bytes) each start a cache line: an AMX tile load or a vector load
/// of a row then never splits across two lines. Grows (zero-filled), never shrinks.
#[derive(Clone, Debug, Default)]
pub struct Bf16Buf {
    lines: Vec<Line>,
}

impl Bf16Buf {
    /// `len` zeros.
    pub fn zeroed(len: usize) -> Self {
        let mut b = Self::default();
        b.grow(len);
        b
    }

    /// Ensures room for `len` values (new values are zero).
    pub fn grow(&mut self, len: usize) {
        let lines = len.div_ceil(32);
        if self.lines.len() < lines {
            self.lines.resize(lines, Line([Bf16::ZERO; 32]));
        }
    }

    /// Values the buffer holds (a multiple of 32).
    pub fn len(&self) -> usize {
        self.lines.len() * 32
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn as_slice(&self) -> &[Bf16] {
        // SAFETY: `Line` is 32 `Bf16` with no padding (repr(C), 64 bytes, align 64), so the lines are
        // `len()` contiguous initialised `Bf16`.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr() as *const Bf16, self.len()) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [Bf16] {
        // SAFETY: as in `as_slice`; the borrow is exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr() as *mut Bf16, self.len()) }
    }
}

/// `x` rounded through bf16 and back (what a bf16 operand contributes to a product).
#[inline]
pub fn round_bf16(x: f32) -> f32 {
    Bf16::from_f32(x).to_f32()
}

/// `out[i] = bf16(x[i])`.
pub fn cast_to_bf16(out: &mut [Bf16], x: &[f32]) {
    assert_eq!(out.len(), x.len(), "cast_to_bf16: lengths differ");
    #[cfg(target_arch = "x86_64")]
    {
        if crate::cpu::has_avx512_bf16() {
            // SAFETY: AVX-512 F + BF16 are available (checked); the lengths are equal (asserted).
            unsafe { avx512::cast(out, x) };
            return;
        }
    }
    cast_to_bf16_reference(out, x);
}

/// Reference twin of [`cast_to_bf16`]: one value at a time.
pub fn cast_to_bf16_reference(out: &mut [Bf16], x: &[f32]) {
    assert_eq!(out.len(), x.len(), "cast_to_bf16: lengths differ");
    for (o, &v) in out.iter_mut().zip(x) {
        *o = Bf16::from_f32(v);
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use std::arch::x86_64::*;

    use super::Bf16;

    /// 16 f32 → 16 bf16 (round to nearest even, subnormals flushed).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bf16,avx512bw")]
    pub(crate) fn cvt16(x: __m512) -> __m256i {
        // SAFETY: __m256bh and __m256i are both 256 bits of plain data.
        unsafe { std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(x)) }
    }

    /// 32 f32 (`lo` then `hi`) → 32 bf16 in one 512-bit vector.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bf16,avx512bw")]
    pub(crate) fn cvt32(lo: __m512, hi: __m512) -> __m512i {
        // SAFETY: __m512bh and __m512i are both 512 bits of plain data.
        unsafe { std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo)) }
    }

    /// `out[i] = bf16(x[i])`; `out.len() == x.len()`.
    #[target_feature(enable = "avx512f,avx512bf16,avx512bw")]
    pub(super) unsafe fn cast(out: &mut [Bf16], x: &[f32]) {
        let n = x.len();
        let (op, xp) = (out.as_mut_ptr() as *mut u16, x.as_ptr());
        let mut i = 0;
        while i + 32 <= n {
            let v = cvt32(_mm512_loadu_ps(xp.add(i)), _mm512_loadu_ps(xp.add(i + 16)));
            _mm512_storeu_si512(op.add(i) as *mut __m512i, v);
            i += 32;
        }
        while i < n {
            let left = (n - i).min(16);
            let mask: __mmask16 = if left == 16 {
                0xFFFF
            } else {
                (1u16 << left) - 1
            };
            let v = cvt16(_mm512_maskz_loadu_ps(mask, xp.add(i)));
            _mm256_mask_storeu_epi16(op.add(i) as *mut i16, mask, v);
            i += left;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_to_nearest_even_and_flushes_subnormals() {
        // 1 + 2⁻⁸ lies halfway between 1 and 1 + 2⁻⁷: ties go to the even mantissa (1).
        assert_eq!(Bf16::from_f32(1.0 + 1.0 / 256.0).to_f32(), 1.0);
        // 1 + 3·2⁻⁸ lies halfway between 1 + 2⁻⁷ and 1 + 2·2⁻⁷: to the even one.
        assert_eq!(
            Bf16::from_f32(1.0 + 3.0 / 256.0).to_f32(),
            1.0 + 2.0 / 128.0
        );
        // Just above halfway rounds up.
        assert_eq!(
            Bf16::from_f32(1.0 + 1.0 / 256.0 + 1.0 / 65536.0).to_f32(),
            1.0 + 1.0 / 128.0
        );
        assert_eq!(Bf16::from_f32(-2.5).to_f32(), -2.5);
        assert_eq!(Bf16::from_f32(f32::MAX).to_f32(), f32::INFINITY);
        assert_eq!(
            Bf16::from_f32(f32::NEG_INFINITY).to_f32(),
            f32::NEG_INFINITY
        );
        assert!(Bf16::from_f32(f32::NAN).to_f32().is_nan());
        let sub = f32::from_bits(0x8000_0001);
        assert_eq!(Bf16::from_f32(sub).0, 0x8000);
        assert_eq!(
            Bf16::from_f32(f32::MIN_POSITIVE).to_f32(),
            f32::MIN_POSITIVE
        );
        // Relative error at most 2⁻⁸ (half the spacing 2⁻⁷ of 8 significant bits) for normal values.
        for i in 0..1000 {
            let x = (i as f32 * 0.731).sin() * 10f32.powi(i % 7 - 3);
            let r = round_bf16(x);
            assert!((r - x).abs() <= x.abs() / 256.0, "{x} -> {r}");
        }
    }

    #[test]
    fn buffers_are_line_aligned_and_grow_with_zeros() {
        let mut b = Bf16Buf::zeroed(5);
        assert_eq!(b.len(), 32);
        assert_eq!(b.as_slice().as_ptr() as usize % 64, 0);
        b.as_mut_slice()[3] = Bf16(7);
        b.grow(100);
        assert_eq!(b.len(), 128);
        assert_eq!(b.as_slice().as_ptr() as usize % 64, 0);
        assert_eq!(b.as_slice()[3], Bf16(7));
        assert!(b.as_slice()[32..].iter().all(|&x| x == Bf16::ZERO));
    }

    #[test]
    fn vector_cast_matches_scalar() {
        let x: Vec<f32> = (0..1000)
            .map(|i| match i % 11 {
                0 => f32::from_bits(0x0000_1234 | ((i as u32 & 1) << 31)),
                1 => f32::NAN,
                2 => f32::INFINITY,
                3 => 1.0 + 1.0 / 256.0,
                _ => (i as f32 * 0.377).cos() * 3.0e4 / (i as f32 + 1.0),
            })
            .collect();
        for len in [0, 1, 15, 16, 17, 31, 32, 33, 1000] {
            let (mut fast, mut plain) = (vec![Bf16(1); len], vec![Bf16(2); len]);
            cast_to_bf16(&mut fast, &x[..len]);
            cast_to_bf16_reference(&mut plain, &x[..len]);
            assert_eq!(fast, plain, "len {len}");
        }
    }
}
