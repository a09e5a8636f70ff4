//! `exp`, `tanh` and the MLP activations written so that a loop over a slice vectorises: no
//! branches and no calls, only multiplies, adds, rounding and bit operations, which LLVM turns
//! into `f32x4` instructions on wasm32 (`simd128`) and AVX on x86-64. The standard library's
//! `exp`/`tanh` are calls into libm per element; in the browser they took about half of a small
//! model's forward pass (docs/BENCHMARKS.md).
//!
//! Accuracy: `exp` is within 2 ulp of the correctly rounded value over the whole range it does
//! not saturate (tested below); `tanh` is within 2·10⁻⁷ absolute. Both stay far inside the
//! 10⁻⁴ every engine is held to against PyTorch.

/// Below this, `exp` returns `exp(EXP_MIN)` (≈ 1.2·10⁻³⁸) instead of a subnormal or zero.
const EXP_MIN: f32 = -87.3;
/// Above this, `exp` returns `exp(EXP_MAX)` (≈ 2.1·10³⁸), still finite.
const EXP_MAX: f32 = 88.3;

/// `eˣ`, branch-free: `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`, `eʳ` from a degree-6 polynomial
/// (Cephes' `expf` coefficients), then `2ⁿ` put straight into the exponent bits. NaN stays NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Comparisons, not `clamp`, so that NaN passes through and the select vectorises.
    let x = if x < EXP_MIN { EXP_MIN } else { x };
    let x = if x > EXP_MAX { EXP_MAX } else { x };
    let n = (x * std::f32::consts::LOG2_E).round_ties_even();
    // ln 2 split in two so that `n · LN2_HI` is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    let two_n = f32::from_bits(((n as i32 + 127) as u32) << 23);
    e_r * two_n
}

/// `tanh(x) = (e²ˣ − 1) / (e²ˣ + 1)`, with `x` limited to ±9 where `tanh` is 1 in `f32`.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let x = if x < -9.0 { -9.0 } else { x };
    let x = if x > 9.0 { 9.0 } else { x };
    let e = exp(2.0 * x);
    (e - 1.0) / (e + 1.0)
}

/// GELU, tanh approximation (GPT-2's `gelu_new`), with [`tanh`].
#[inline(always)]
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + tanh(SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)))
}

/// SiLU, `x · sigmoid(x)`, with [`exp`].
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

/// Softmax of `row` in place: `exp(s − max)` normalised to sum 1. A row whose sum is not a
/// positive finite number (NaN scores) becomes uniform rather than NaN.
pub fn softmax_in_place(row: &mut [f32]) {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
    row.iter_mut().for_each(|s| *s = exp(*s - max));
    let sum: f32 = row.iter().sum();
    if sum > 0.0 && sum.is_finite() {
        let inv = 1.0 / sum;
        row.iter_mut().for_each(|p| *p *= inv);
    } else {
        row.fill(1.0 / row.len().max(1) as f32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units of the last place between two finite positive floats.
    fn ulps(a: f32, b: f32) -> u32 {
        a.to_bits().abs_diff(b.to_bits())
    }

    #[test]
    fn exp_is_within_two_ulp_of_the_correctly_rounded_value() {
        let mut worst = 0;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp() as f32;
            worst = worst.max(ulps(exp(x), want));
            x += 0.000_731;
        }
        assert!(worst <= 2, "exp is {worst} ulp off somewhere");
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn exp_saturates_instead_of_overflowing_and_keeps_nan() {
        assert!(exp(-1000.0) < 2e-38 && exp(-1000.0) >= 0.0);
        assert!(exp(f32::NEG_INFINITY) < 2e-38);
        assert!(exp(1000.0).is_finite() && exp(1000.0) > 1e38);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn tanh_gelu_and_silu_match_the_standard_library() {
        let mut x = -20.0f32;
        while x < 20.0 {
            let want = (x as f64).tanh();
            assert!((tanh(x) as f64 - want).abs() < 2e-7, "tanh({x})");
            let gelu = crate::linalg::gelu_tanh(x);
            assert!(
                (gelu_tanh(x) - gelu).abs() <= 4e-7 * gelu.abs().max(1.0),
                "gelu({x})"
            );
            let silu_want = x as f64 / (1.0 + (-x as f64).exp());
            assert!((silu(x) as f64 - silu_want).abs() <= 3e-7 * silu_want.abs().max(1.0));
            x += 0.001_37;
        }
        assert_eq!(tanh(30.0), 1.0);
        assert_eq!(tanh(-30.0), -1.0);
    }

    #[test]
    fn softmax_sums_to_one_and_handles_nan_rows() {
        let mut out = [1.0, 2.0, 3.0];
        softmax_in_place(&mut out);
        let e = [(-2.0f32).exp(), (-1.0f32).exp(), 1.0];
        let sum: f32 = e.iter().sum();
        for (o, e) in out.iter().zip(e) {
            assert!((o - e / sum).abs() < 1e-7);
        }
        let mut out = [f32::NAN, 1.0];
        softmax_in_place(&mut out);
        assert_eq!(out, [0.5, 0.5]);
    }
}
