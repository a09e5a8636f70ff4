//! The few dense operations the forward pass needs. Matrix products go through the
//! `matrixmultiply` crate natively and through `gemm_simd128` in the browser;
//! everything here is row-major `f32`.

use crate::config::{Activation, Norm};
use crate::model::{Linear, NormWeights};
use crate::weights::Weights;

/// A strided view of a matrix inside a slice: element `(r, c)` is `data[r * row_stride + c *
/// col_stride]`. Lets one head's columns, or a transpose, be multiplied without copying.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A dense row-major `rows × cols` matrix.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols, "matrix data has the wrong length");
        MatRef {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// Columns `[start, start + width)` of this matrix.
    pub fn columns(self, start: usize, width: usize) -> Self {
        assert!(start + width <= self.cols, "column block out of range");
        let offset = start * self.col_stride;
        MatRef {
            data: &self.data[offset..],
            cols: width,
            ..self
        }
    }

    /// Rows `[start, start + count)` of this matrix.
    pub fn row_block(self, start: usize, count: usize) -> Self {
        assert!(start + count <= self.rows, "row block out of range");
        MatRef {
            data: self.data.get(start * self.row_stride..).unwrap_or(&[]),
            rows: count,
            ..self
        }
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        MatRef {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    fn check(&self) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride;
            assert!(last < self.data.len(), "strided matrix runs past its data");
        }
    }
}

/// `a · b` as a new dense row-major matrix.
pub fn matmul(a: MatRef<'_>, b: MatRef<'_>) -> Vec<f32> {
    let mut c = vec![0.0f32; a.rows * b.cols];
    matmul_add(a, b, &mut c);
    c
}

/// `out += a · b`, `out` a dense row-major `a.rows × b.cols` matrix: how the backward pass
/// accumulates gradients.
pub fn matmul_add(a: MatRef<'_>, b: MatRef<'_>, out: &mut [f32]) {
    assert_eq!(out.len(), a.rows * b.cols, "output has the wrong size");
    matmul_add_rows(a, b, out, b.cols);
}

/// `out += a · b` where the product's row `i` is `out[i * out_row_stride..][..b.cols]`: a block
/// of a wider row-major matrix (`out` starts at the block's first element).
pub fn matmul_add_rows(a: MatRef<'_>, b: MatRef<'_>, out: &mut [f32], out_row_stride: usize) {
    assert_eq!(a.cols, b.rows, "inner dimensions differ");
    a.check();
    b.check();
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    assert!(
        n <= out_row_stride && (m - 1) * out_row_stride + n <= out.len(),
        "output block runs past its data"
    );
    // SAFETY: `check` verified that every element the strides address lies inside `a.data` and
    // `b.data`; the assertion above that the `m × n` block of `out` with row stride
    // `out_row_stride` lies inside `out`, a `&mut` that cannot overlap them.
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    unsafe {
        crate::gemm_simd128::sgemm_add(
            m,
            k,
            n,
            a.data.as_ptr(),
            a.row_stride,
            a.col_stride,
            b.data.as_ptr(),
            b.row_stride,
            b.col_stride,
            out.as_mut_ptr(),
            out_row_stride,
        );
    }
    // SAFETY: as above.
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.data.as_ptr(),
            a.row_stride as isize,
            a.col_stride as isize,
            b.data.as_ptr(),
            b.row_stride as isize,
            b.col_stride as isize,
            1.0,
            out.as_mut_ptr(),
            out_row_stride as isize,
            1,
        );
    }
}

/// Rows of a 16-bit table widened at once by [`times_table_transposed`].
const TABLE_BLOCK_ROWS: usize = 4096;

/// `x · Eᵀ` for a table `E` of `x.cols`-wide rows (the unembedding with the token embedding or
/// an LM head). A 16-bit table is widened a block of rows at a time, so a large vocabulary never
/// needs a whole `f32` copy.
pub fn times_table_transposed(x: MatRef<'_>, table: &Weights) -> Vec<f32> {
    let width = x.cols;
    let rows = table.len().checked_div(width).unwrap_or(0);
    if x.rows <= FEW_ROWS && x.col_stride == 1 {
        return few_rows_times_table_transposed(x, table, rows);
    }
    if let Weights::F32(values) = table {
        return matmul(x, MatRef::new(values, rows, width).t());
    }
    let mut out = vec![0.0f32; x.rows * rows];
    for start in (0..rows).step_by(TABLE_BLOCK_ROWS) {
        let end = (start + TABLE_BLOCK_ROWS).min(rows);
        let block = table.range_f32(start * width..end * width);
        let part = matmul(x, MatRef::new(&block, end - start, width).t());
        for (out_row, part_row) in out
            .chunks_exact_mut(rows)
            .zip(part.chunks_exact(end - start))
        {
            out_row[start..end].copy_from_slice(part_row);
        }
    }
    out
}

/// `x · W + b` for `rows` input rows. The output starts as the bias, and the product is
/// accumulated onto it: one pass over the output instead of two. A few rows (a decode step)
/// read the weights once, in their stored precision ([`few_rows_times_weights_add`]).
pub fn linear(x: &[f32], rows: usize, layer: &Linear) -> Vec<f32> {
    let mut y = match &layer.bias {
        Some(bias) => bias.repeat(rows),
        None => vec![0.0; rows * layer.d_out],
    };
    if rows <= FEW_ROWS {
        few_rows_times_weights_add(x, rows, &layer.weight, layer.d_out, &mut y);
        return y;
    }
    matmul_add(
        MatRef::new(x, rows, layer.d_in),
        MatRef::new(&layer.weight.f32(), layer.d_in, layer.d_out),
        &mut y,
    );
    y
}

/// Input rows up to which a product with a weight matrix streams the matrix once, row by row in
/// its stored precision, instead of running a matrix product: a decode step multiplies one row
/// by every matrix of the model, and a matrix product would first widen a 16-bit matrix to a
/// copy (and pack it), reading and writing the weights several times over for one use.
pub const FEW_ROWS: usize = 4;

/// `y += x · W` for `rows ≤ FEW_ROWS` rows of `x` and `W` row-major (`d_in × d_out`): each row of
/// `W`, widened once if it is 16-bit, is added to every output row scaled by its input.
fn few_rows_times_weights_add(x: &[f32], rows: usize, w: &Weights, d_out: usize, y: &mut [f32]) {
    let d_in = x.len() / rows.max(1);
    let mut widened = vec![0.0f32; d_out];
    for i in 0..d_in {
        let w_row: &[f32] = match w {
            Weights::F32(v) => &v[i * d_out..(i + 1) * d_out],
            Weights::Bf16(v) => {
                widen_bf16(&v[i * d_out..(i + 1) * d_out], &mut widened);
                &widened
            }
            Weights::F16(v) => {
                let row = &v[i * d_out..(i + 1) * d_out];
                widened
                    .iter_mut()
                    .zip(row)
                    .for_each(|(o, h)| *o = h.to_f32());
                &widened
            }
        };
        for (x_row, y_row) in x.chunks_exact(d_in).zip(y.chunks_exact_mut(d_out)) {
            let scale = x_row[i];
            y_row
                .iter_mut()
                .zip(w_row)
                .for_each(|(y, &w)| *y += scale * w);
        }
    }
}

/// bf16 values as f32: the 16 bits are the f32's high half (exactly).
fn widen_bf16(values: &[half::bf16], out: &mut [f32]) {
    for (o, v) in out.iter_mut().zip(values) {
        *o = f32::from_bits((v.to_bits() as u32) << 16);
    }
}

/// `x · Eᵀ` for `x.rows ≤ FEW_ROWS` dense rows: one dot product per table row, each row read
/// once in its stored precision.
fn few_rows_times_table_transposed(x: MatRef<'_>, table: &Weights, rows: usize) -> Vec<f32> {
    let width = x.cols;
    let mut out = vec![0.0f32; x.rows * rows];
    let mut widened = vec![0.0f32; width];
    for v in 0..rows {
        let e: &[f32] = match table {
            Weights::F32(values) => &values[v * width..(v + 1) * width],
            Weights::Bf16(values) => {
                widen_bf16(&values[v * width..(v + 1) * width], &mut widened);
                &widened
            }
            Weights::F16(values) => {
                let row = &values[v * width..(v + 1) * width];
                widened
                    .iter_mut()
                    .zip(row)
                    .for_each(|(o, h)| *o = h.to_f32());
                &widened
            }
        };
        for r in 0..x.rows {
            let x_row = &x.data[r * x.row_stride..r * x.row_stride + width];
            out[r * rows + v] = dot(x_row, e);
        }
    }
    out
}

/// `a · b` in eight running sums (which the compiler turns into vector lanes).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// The model's norm over each row of `x`: LayerNorm (biased variance, as PyTorch) or RMSNorm
/// (`x / sqrt(mean(x²) + eps) · scale`, as Llama).
pub fn norm(x: &[f32], weights: &NormWeights, kind: Norm, eps: f32) -> Vec<f32> {
    let d = weights.weight.len();
    let mut out = vec![0.0; x.len()];
    for (row, out_row) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let mean = match kind {
            Norm::LayerNorm => row.iter().sum::<f32>() / d as f32,
            Norm::RmsNorm => 0.0,
        };
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for i in 0..d {
            out_row[i] = (row[i] - mean) * inv * weights.weight[i];
        }
        if let Some(bias) = &weights.bias {
            out_row.iter_mut().zip(bias).for_each(|(o, b)| *o += b);
        }
    }
    out
}

/// GELU, tanh approximation (GPT-2's `gelu_new`).
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)).tanh())
}

/// GELU, exact: `x · Φ(x)` with the error function (PyTorch's `gelu`, GPT-NeoX's).
pub fn gelu_exact(x: f32) -> f32 {
    0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// SiLU (swish): `x · sigmoid(x)`, the gate of Llama's SwiGLU.
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// The MLP nonlinearity `activation` at `x`.
pub fn activate(activation: Activation, x: f32) -> f32 {
    match activation {
        Activation::GeluTanh => gelu_tanh(x),
        Activation::Gelu => gelu_exact(x),
        Activation::Silu => silu(x),
    }
}

/// [`activate`] on every element of `values`, through the vectorising [`crate::fastmath`]
/// versions of `tanh` and `exp` (the exact GELU's `erf` stays a libm call).
pub fn activate_in_place(activation: Activation, values: &mut [f32]) {
    match activation {
        Activation::GeluTanh => values
            .iter_mut()
            .for_each(|v| *v = crate::fastmath::gelu_tanh(*v)),
        Activation::Gelu => values.iter_mut().for_each(|v| *v = gelu_exact(*v)),
        Activation::Silu => values
            .iter_mut()
            .for_each(|v| *v = crate::fastmath::silu(*v)),
    }
}

/// The derivative of the tanh GELU (the CPU twin of the GPU trainer's kernel).
pub fn gelu_tanh_grad(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let u = SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x);
    let th = u.tanh();
    0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044_715 * x * x)
}

/// The derivative of [`activate`] at `x`: `Φ(x) + x·φ(x)` for the exact GELU,
/// `σ(x)·(1 + x·(1 − σ(x)))` for SiLU.
pub fn activation_grad(activation: Activation, x: f32) -> f32 {
    match activation {
        Activation::GeluTanh => gelu_tanh_grad(x),
        Activation::Gelu => {
            let cdf = 0.5 * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2));
            let pdf = (-0.5 * x * x).exp() / (2.0 * std::f32::consts::PI).sqrt();
            cdf + x * pdf
        }
        Activation::Silu => {
            let s = 1.0 / (1.0 + (-x).exp());
            s * (1.0 + x * (1.0 - s))
        }
    }
}

/// `elu(x) + 1`, the feature map of linear attention: positive, and `x + 1` for `x > 0`.
pub fn elu_plus_one(x: f32) -> f32 {
    if x > 0.0 {
        x + 1.0
    } else {
        x.exp()
    }
}

/// Numerically stable log-softmax of one row, in f64 for the metrics.
pub fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let log_sum = row
        .iter()
        .map(|&v| (v as f64 - max).exp())
        .sum::<f64>()
        .ln();
    row.iter().map(|&v| v as f64 - max - log_sum).collect()
}

/// Softmax of one row as probabilities.
pub fn softmax(row: &[f32]) -> Vec<f32> {
    log_softmax(row)
        .into_iter()
        .map(|l| l.exp() as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_matches_the_definition_with_strides() {
        // a: 2×3, b: 3×2 taken as the transpose of a 2×3 matrix.
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let bt = [1.0, 0.0, -1.0, 2.0, 1.0, 0.5];
        let c = matmul(MatRef::new(&a, 2, 3), MatRef::new(&bt, 2, 3).t());
        // row 0: [1,2,3]·[1,0,-1] = -2, [1,2,3]·[2,1,0.5] = 5.5
        assert_eq!(c, vec![-2.0, 5.5, -2.0, 4.0 * 2.0 + 5.0 + 3.0]);
        // a column block: columns 1..3 of a times a 2×1 vector.
        let v = [1.0, 1.0];
        let c = matmul(MatRef::new(&a, 2, 3).columns(1, 2), MatRef::new(&v, 2, 1));
        assert_eq!(c, vec![5.0, 11.0]);
    }

    #[test]
    fn layer_norm_normalises_rows() {
        let x = [1.0, 2.0, 3.0, 4.0];
        let y = norm(&x, &NormWeights::identity(4), Norm::LayerNorm, 0.0);
        let mean: f32 = y.iter().sum::<f32>() / 4.0;
        let var: f32 = y.iter().map(|v| v * v).sum::<f32>() / 4.0;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5);
    }

    #[test]
    fn rms_norm_scales_rows_to_unit_root_mean_square() {
        let x = [1.0, 2.0, 3.0, 4.0];
        let weights = NormWeights {
            weight: vec![1.0, 1.0, 2.0, 1.0],
            bias: None,
        };
        let y = norm(&x, &weights, Norm::RmsNorm, 0.0);
        let rms = (30.0f32 / 4.0).sqrt();
        let want = [1.0 / rms, 2.0 / rms, 6.0 / rms, 4.0 / rms];
        assert!(
            y.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6),
            "{y:?}"
        );
    }

    #[test]
    fn gelu_and_feature_map_known_values() {
        assert_eq!(gelu_tanh(0.0), 0.0);
        assert!((gelu_tanh(1.0) - 0.841_192).abs() < 1e-5);
        // Φ(1) = 0.841 344 7; the exact GELU differs from the tanh one in the fourth decimal.
        assert!((gelu_exact(1.0) - 0.841_344_7).abs() < 1e-6);
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
        assert_eq!(elu_plus_one(2.0), 3.0);
        assert!((elu_plus_one(-1.0) - (-1.0f32).exp()).abs() < 1e-7);
    }

    #[test]
    fn log_softmax_is_normalised() {
        let l = log_softmax(&[1000.0, 1000.0]);
        assert!((l[0] - (0.5f64).ln()).abs() < 1e-12);
    }
}
