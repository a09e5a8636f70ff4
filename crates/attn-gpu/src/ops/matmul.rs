//! The tiled, batched, strided matrix product (`matmul.wgsl`) and its fused epilogue: bias, GELU
//! and the residual add. Every matrix product of the forward pass runs through it: the dense
//! layers, Q·Kᵀ per head, P·V, the feature maps of linear and random-feature attention, and the
//! unembedding.

use attn_model::{Activation, Precision};

use crate::error::Result;
use crate::ops::kernel::{groups, Access, KernelSpec};
use crate::plan::{Arg, PlanBuilder};

pub(crate) const SHADER: &str = concat!(include_str!("matmul.wgsl"), include_str!("weights.wgsl"));

/// Rows and columns of C that one workgroup computes.
const TILE: u32 = 32;

/// Products of at most this many rows run `few_rows` instead (a decode step's single row).
const FEW_ROWS: usize = 4;
/// Columns of C per workgroup of `few_rows`.
const FEW_ROWS_WORKGROUP: u32 = 64;

const FLAG_BIAS: u32 = 1;
const FLAG_GELU_TANH: u32 = 2;
const FLAG_ACCUMULATE: u32 = 4;
const FLAG_GELU_ERF: u32 = 8;
const FLAG_SILU: u32 = 16;
const FLAG_MULTIPLY: u32 = 32;
const FLAG_B_F16: u32 = 64;
const FLAG_B_BF16: u32 = 128;

/// The WGSL `Params` block.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Params {
    m: u32,
    n: u32,
    k: u32,
    batch: u32,
    a_offset: u32,
    a_row_stride: u32,
    a_col_stride: u32,
    a_batch_stride: u32,
    b_offset: u32,
    b_row_stride: u32,
    b_col_stride: u32,
    b_batch_stride: u32,
    c_offset: u32,
    c_row_stride: u32,
    c_batch_stride: u32,
    bias_offset: u32,
    a_batch_div: u32,
    b_batch_div: u32,
    flags: u32,
    alpha: f32,
}

/// The `main` entry point of `matmul.wgsl`.
pub(crate) const KERNEL: KernelSpec = KernelSpec::new::<Params>(
    "matmul",
    "matmul",
    SHADER,
    "main",
    &[Access::Read, Access::Read, Access::Read, Access::ReadWrite],
);

/// The `few_rows` entry point of `matmul.wgsl`: what [`Matmul::push`] launches for at most
/// `FEW_ROWS` rows.
const FEW_ROWS_KERNEL: KernelSpec = KernelSpec::new::<Params>(
    "matmul_few_rows",
    "matmul",
    SHADER,
    "few_rows",
    &[Access::Read, Access::Read, Access::Read, Access::ReadWrite],
);

/// Where the elements of one operand live in its buffer, in `f32` units: element `(r, c)` of
/// batch `b` is at `offset + (b / batch_div) · batch_stride + r · row_stride + c · col_stride`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    pub(crate) offset: u32,
    pub(crate) row_stride: u32,
    pub(crate) col_stride: u32,
    pub(crate) batch_stride: u32,
    pub(crate) batch_div: u32,
}

impl Layout {
    /// A dense row-major matrix `cols` wide.
    pub(crate) fn rows(cols: usize) -> Self {
        Layout {
            offset: 0,
            row_stride: cols as u32,
            col_stride: 1,
            batch_stride: 0,
            batch_div: 1,
        }
    }

    /// The transpose of a dense row-major matrix `cols` wide.
    pub(crate) fn transposed(cols: usize) -> Self {
        Layout {
            row_stride: 1,
            col_stride: cols as u32,
            ..Layout::rows(cols)
        }
    }

    /// Starts `offset` elements into the buffer.
    pub(crate) fn at(self, offset: usize) -> Self {
        Layout {
            offset: offset as u32,
            ..self
        }
    }

    /// Batch `b` starts `(b / div) · stride` elements after batch 0 (`div > 1` lets several
    /// query heads share one key/value head).
    pub(crate) fn batched(self, stride: usize, div: usize) -> Self {
        Layout {
            batch_stride: stride as u32,
            batch_div: div as u32,
            ..self
        }
    }
}

/// One product `C[b] (+)= epilogue(alpha · A[b] · B[b] + bias)` for `b < batch`, with `A[b]`
/// `m × k` and `B[b]` `k × n`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Matmul {
    pub(crate) m: usize,
    pub(crate) n: usize,
    pub(crate) k: usize,
    pub(crate) batch: usize,
    pub(crate) a: Layout,
    pub(crate) b: Layout,
    /// The output's column stride is always 1.
    pub(crate) c: Layout,
    pub(crate) alpha: f32,
    /// Add `bias[bias_offset + col]`.
    pub(crate) bias_offset: Option<usize>,
    /// Apply the MLP's nonlinearity.
    pub(crate) activation: Option<Activation>,
    /// Add the result to what C holds (the residual connection).
    pub(crate) accumulate: bool,
    /// Multiply the result into what C holds (a gated MLP: `act(x·W_gate) · up`).
    pub(crate) multiply: bool,
    /// How B is stored: f32, or 16-bit weights packed two to a word (B's layout still counts
    /// elements, not words).
    pub(crate) b_precision: Precision,
}

impl Matmul {
    /// A dense `m × k` by `k × n` product with no epilogue.
    pub(crate) fn new(m: usize, n: usize, k: usize) -> Self {
        Matmul {
            m,
            n,
            k,
            batch: 1,
            a: Layout::rows(k),
            b: Layout::rows(n),
            c: Layout::rows(n),
            alpha: 1.0,
            bias_offset: None,
            activation: None,
            accumulate: false,
            multiply: false,
            b_precision: Precision::F32,
        }
    }

    /// Multiply-adds in the product: the FLOP count quoted in the benchmarks.
    pub(crate) fn flops(&self) -> u64 {
        2 * (self.m * self.n * self.k * self.batch) as u64
    }

    fn params(&self) -> Params {
        assert_eq!(
            self.c.col_stride, 1,
            "the output is written with column stride 1"
        );
        let activation = match self.activation {
            None => 0,
            Some(Activation::GeluTanh) => FLAG_GELU_TANH,
            Some(Activation::Gelu) => FLAG_GELU_ERF,
            Some(Activation::Silu) => FLAG_SILU,
        };
        let flag = |on: bool, flag: u32| if on { flag } else { 0 };
        let flags = flag(self.bias_offset.is_some(), FLAG_BIAS)
            | activation
            | flag(self.accumulate, FLAG_ACCUMULATE)
            | flag(self.multiply, FLAG_MULTIPLY)
            | flag(self.b_precision == Precision::F16, FLAG_B_F16)
            | flag(self.b_precision == Precision::Bf16, FLAG_B_BF16);
        Params {
            m: self.m as u32,
            n: self.n as u32,
            k: self.k as u32,
            batch: self.batch as u32,
            a_offset: self.a.offset,
            a_row_stride: self.a.row_stride,
            a_col_stride: self.a.col_stride,
            a_batch_stride: self.a.batch_stride,
            b_offset: self.b.offset,
            b_row_stride: self.b.row_stride,
            b_col_stride: self.b.col_stride,
            b_batch_stride: self.b.batch_stride,
            c_offset: self.c.offset,
            c_row_stride: self.c.row_stride,
            c_batch_stride: self.c.batch_stride,
            bias_offset: self.bias_offset.unwrap_or(0) as u32,
            a_batch_div: self.a.batch_div.max(1),
            b_batch_div: self.b.batch_div.max(1),
            flags,
            alpha: self.alpha,
        }
    }

    /// Records the launch. `bias` is ignored (but must be bound) when there is no bias. Products
    /// of at most `FEW_ROWS` rows take the `few_rows` entry point of `kernel`'s module.
    pub(crate) fn push<'k>(
        &self,
        plan: &mut PlanBuilder<'k>,
        kernel: &'static KernelSpec,
        a: &Arg,
        b: &Arg,
        bias: &Arg,
        c: &Arg,
    ) -> Result<usize> {
        if self.m <= FEW_ROWS && kernel.name == KERNEL.name {
            let workgroups = [
                groups(self.n as u32, FEW_ROWS_WORKGROUP),
                1,
                self.batch as u32,
            ];
            let args = [a, b, bias, c];
            return plan.push(&FEW_ROWS_KERNEL, &self.params(), &args, workgroups);
        }
        let workgroups = [
            groups(self.n as u32, TILE),
            groups(self.m as u32, TILE),
            self.batch as u32,
        ];
        plan.push(kernel, &self.params(), &[a, b, bias, c], workgroups)
    }
}

// Native only: these run on lavapipe through `crate::testing`; the browser runs tests/browser.rs.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::{self, Rng};
    use attn_model::linalg::{activate, matmul, MatRef};
    use attn_model::Weights;

    /// Operand `l` of batch `batch` as a strided view for attn-model's `matmul`.
    fn view(data: &[f32], l: Layout, batch: usize, rows: usize, cols: usize) -> MatRef<'_> {
        let start = l.offset as usize + batch / l.batch_div as usize * l.batch_stride as usize;
        MatRef {
            data: &data[start..],
            rows,
            cols,
            row_stride: l.row_stride as usize,
            col_stride: l.col_stride as usize,
        }
    }

    /// The CPU twin: attn-model's strided `matmul` per batch, then the epilogue in the
    /// reference's order.
    fn reference(mm: &Matmul, a: &[f32], b: &[f32], bias: &[f32], c: &mut [f32]) {
        for batch in 0..mm.batch {
            let product = matmul(
                view(a, mm.a, batch, mm.m, mm.k),
                view(b, mm.b, batch, mm.k, mm.n),
            );
            for r in 0..mm.m {
                for col in 0..mm.n {
                    let mut v = product[r * mm.n + col] * mm.alpha;
                    if let Some(off) = mm.bias_offset {
                        v += bias[off + col];
                    }
                    if let Some(activation) = mm.activation {
                        v = activate(activation, v);
                    }
                    let i = mm.c.offset as usize
                        + batch * mm.c.batch_stride as usize
                        + r * mm.c.row_stride as usize
                        + col;
                    if mm.accumulate {
                        v += c[i];
                    }
                    if mm.multiply {
                        v *= c[i];
                    }
                    c[i] = v;
                }
            }
        }
    }

    fn check(name: &str, mm: Matmul, a_len: usize, b_len: usize, c_len: usize, seed: u64) {
        let ctx = testing::context();
        let mut rng = Rng::new(seed);
        let a = rng.normals(a_len, 1.0);
        // B as the engine stores it (16-bit weights packed two to a word); the reference
        // multiplies the same rounded values.
        let stored = Weights::F32(rng.normals(b_len, 1.0)).to_precision(mm.b_precision);
        let b = stored.f32().into_owned();
        let bias = rng.normals(mm.n + mm.bias_offset.unwrap_or(0), 0.5);
        // Accumulating products start from data; the others from NaN, so every element the
        // kernel should write but does not shows up.
        let c0 = if mm.accumulate || mm.multiply {
            rng.normals(c_len, 1.0)
        } else {
            vec![f32::NAN; c_len]
        };
        let mut want = c0.clone();
        reference(&mm, &a, &b, &bias, &mut want);

        let (a_buf, b_buf, bias_buf, c_buf) = (
            testing::upload(&ctx, &a),
            match stored.packed_u32() {
                Some(words) => testing::upload_u32(&ctx, &words),
                None => testing::upload(&ctx, &b),
            },
            testing::upload(&ctx, &bias),
            testing::upload(&ctx, &c0),
        );
        let got = testing::run(&ctx, &c_buf, |plan| {
            mm.push(plan, &KERNEL, &a_buf, &b_buf, &bias_buf, &c_buf)
                .unwrap();
        });
        // Elements outside the written region keep their NaN on both sides; compare the rest.
        let written: Vec<usize> = (0..c_len).filter(|&i| !want[i].is_nan()).collect();
        assert!(!written.is_empty());
        let pick = |v: &[f32]| written.iter().map(|&i| v[i]).collect::<Vec<f32>>();
        testing::assert_close(name, &pick(&got), &pick(&want), 1e-5);
        // No element outside the region was touched.
        for i in (0..c_len).filter(|i| want[*i].is_nan()) {
            assert!(got[i].is_nan(), "{name}: element {i} outside C was written");
        }
    }

    #[test]
    fn dense_products_on_awkward_shapes() {
        for (i, &(m, n, k)) in [
            (1, 1, 1),
            (1, 7, 3),
            (15, 301, 32),
            (33, 17, 5),
            (32, 32, 16),
            (64, 65, 100),
            (2, 1, 70),
        ]
        .iter()
        .enumerate()
        {
            check(
                &format!("dense {m}x{n}x{k}"),
                Matmul::new(m, n, k),
                m * k,
                k * n,
                m * n,
                i as u64,
            );
        }
    }

    #[test]
    fn epilogues_bias_activations_residual_and_gate() {
        let (m, n, k) = (17, 45, 23);
        let mut mm = Matmul::new(m, n, k);
        mm.bias_offset = Some(0);
        check("bias", mm, m * k, k * n, m * n, 10);
        for (seed, activation) in [
            (11, Activation::GeluTanh),
            (14, Activation::Gelu),
            (15, Activation::Silu),
        ] {
            mm.activation = Some(activation);
            check(
                &format!("bias + {activation:?}"),
                mm,
                m * k,
                k * n,
                m * n,
                seed,
            );
        }
        // SwiGLU's second product: silu(x·W_gate) times the up projection already in C.
        mm.bias_offset = None;
        mm.multiply = true;
        check("silu gate × up", mm, m * k, k * n, m * n, 16);
        mm.multiply = false;
        mm.activation = None;
        mm.bias_offset = Some(0);
        mm.accumulate = true;
        check("bias + residual", mm, m * k, k * n, m * n, 12);
        let mut mm = Matmul::new(3, 5, 2);
        mm.bias_offset = Some(4);
        mm.alpha = 0.37;
        check("alpha + offset bias", mm, 6, 10, 15, 13);
    }

    /// The `few_rows` kernel (at most 4 rows): dense, unembedding, 16-bit, epilogues, batched
    /// heads over a strided cache — a decode step's products.
    #[test]
    fn products_of_a_few_rows() {
        for (seed, m) in [(50, 1), (51, 2), (52, 4)] {
            let (n, k) = (70, 33);
            let mut mm = Matmul::new(m, n, k);
            check(&format!("{m} rows, dense"), mm, m * k, k * n, m * n, seed);
            mm.bias_offset = Some(0);
            mm.activation = Some(Activation::Silu);
            mm.b_precision = Precision::Bf16;
            check(
                &format!("{m} rows, bf16 + bias + silu"),
                mm,
                m * k,
                k * n,
                m * n,
                seed,
            );
            mm.activation = None;
            mm.accumulate = true;
            mm.b_precision = Precision::F16;
            check(
                &format!("{m} rows, f16 + residual"),
                mm,
                m * k,
                k * n,
                m * n,
                seed,
            );
            let mut mm = Matmul::new(m, 301, 7);
            mm.b = Layout::transposed(7).at(1);
            mm.b_precision = Precision::Bf16;
            check(
                &format!("{m} rows, x · Eᵀ"),
                mm,
                m * 7,
                1 + 301 * 7,
                m * 301,
                seed,
            );
            // One query row's scores against 12 cached keys of 2 key/value heads.
            let (heads, kv_heads, d_head, keys) = (4, 2, 3, 12);
            let mut mm = Matmul::new(m, keys, d_head);
            mm.batch = heads;
            mm.a = Layout::rows(heads * d_head).batched(d_head, 1);
            mm.b = Layout::transposed(kv_heads * d_head).batched(d_head, heads / kv_heads);
            mm.c = Layout::rows(keys).batched(m * keys, 1);
            mm.alpha = 0.5;
            let a_len = m * heads * d_head;
            let b_len = keys * kv_heads * d_head;
            check(
                &format!("{m} rows, grouped scores"),
                mm,
                a_len,
                b_len,
                heads * m * keys,
                seed,
            );
        }
    }

    #[test]
    fn transposed_b_is_the_unembedding() {
        // logits = x · Eᵀ with E [vocab, d]: vocab not a multiple of 4 or of the tile.
        let (t, vocab, d) = (5, 301, 8);
        let mut mm = Matmul::new(t, vocab, d);
        mm.b = Layout::transposed(d);
        check("x · Eᵀ", mm, t * d, vocab * d, t * vocab, 20);
    }

    #[test]
    fn sixteen_bit_b_is_widened_exactly() {
        for (seed, precision) in [(40, Precision::F16), (41, Precision::Bf16)] {
            // Odd shapes and an odd offset, so both halves of a word are read.
            let (m, n, k) = (9, 37, 13);
            let mut mm = Matmul::new(m, n, k);
            mm.b_precision = precision;
            mm.bias_offset = Some(0);
            mm.b = mm.b.at(3);
            check(
                &format!("{precision:?} dense"),
                mm,
                m * k,
                3 + k * n,
                m * n,
                seed,
            );
            // The unembedding with a 16-bit token table.
            let (t, vocab, d) = (5, 301, 7);
            let mut mm = Matmul::new(t, vocab, d);
            mm.b = Layout::transposed(d);
            mm.b_precision = precision;
            check(
                &format!("{precision:?} x · Eᵀ"),
                mm,
                t * d,
                vocab * d,
                t * vocab,
                seed,
            );
        }
    }

    #[test]
    fn batched_heads_with_shared_key_value_heads() {
        // Scores of 4 query heads against 2 key heads (d_head 3) inside [T, heads·d_head]
        // activations, written into a [4, T, T] block that starts at an offset.
        let (t, heads, kv_heads, d_head) = (7, 4, 2, 3);
        let mut mm = Matmul::new(t, t, d_head);
        mm.batch = heads;
        mm.a = Layout::rows(heads * d_head).batched(d_head, 1);
        mm.b = Layout::transposed(kv_heads * d_head).batched(d_head, heads / kv_heads);
        mm.c = Layout::rows(t).at(5).batched(t * t, 1);
        mm.alpha = 0.5;
        check(
            "grouped scores",
            mm,
            t * heads * d_head,
            t * kv_heads * d_head,
            5 + heads * t * t + 3,
            30,
        );
        // P·V: [heads, T, T] against V [T, kv·d] into Z [T, heads·d]; d_head = 1.
        let d_head = 1;
        let mut mm = Matmul::new(t, d_head, t);
        mm.batch = heads;
        mm.a = Layout::rows(t).batched(t * t, 1);
        mm.b = Layout::rows(kv_heads * d_head).batched(d_head, heads / kv_heads);
        mm.c = Layout {
            row_stride: (heads * d_head) as u32,
            ..Layout::rows(heads * d_head).batched(d_head, 1)
        };
        check(
            "P·V, d_head 1",
            mm,
            heads * t * t,
            t * kv_heads * d_head,
            t * heads * d_head,
            31,
        );
    }
}
