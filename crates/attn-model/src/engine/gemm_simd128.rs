//! The matrix product of the CPU engine in the browser: `C += A · B` with wasm SIMD (`simd128`).
//!
//! The usual packed-panel scheme: B is copied, `KC` rows by `NR` columns at a time, into
//! contiguous panels, A likewise `MR` rows at a time, and a register-blocked micro-kernel
//! multiplies one A panel by one B panel into an `MR × NR` block of C held in `MR · NR / 4`
//! vector registers. The block is sized for the 16 vector registers V8 has on x86-64: 4 × 8
//! needs 8 accumulators, 2 vectors of B and the 4 broadcasts of A that LLVM loads together.
//! (`matrixmultiply`'s wasm kernel is 8 × 8, and 6 × 8 or 5 × 8 here: more live vectors than
//! registers, and the spills made GPT-2 small's forward 3–10 % slower in Chromium.)
//!
//! Every `f32` is multiplied and added in the same order as a plain loop over `k` would (one
//! multiply, one add per term, no fused multiply-add: plain `simd128` has none), so the result
//! differs from `matrixmultiply`'s only by the order of the sums across `KC` blocks.
//!
//! With the crate feature `relaxed-simd` the product is compiled for relaxed SIMD, whose
//! `f32x4.relaxed_madd` is one fused multiply-add per term where the CPU has one (the forward
//! 1.1–1.2× faster in Chromium, docs/BENCHMARKS.md). Only these functions get the target feature, so a build with
//! the feature differs from one without only here; but a wasm module holding relaxed-SIMD
//! instructions fails to compile in a browser without them, so the page ships a second worker
//! built with the feature and picks it after a probe (`attn-web`'s `browser::has_relaxed_simd`).

use core::arch::wasm32::*;
use std::cell::RefCell;

/// Rows of A, and of C, per micro-kernel call.
const MR: usize = 4;
/// Columns of B, and of C, per micro-kernel call (two vectors of four).
const NR: usize = 8;
/// Depth of one packed panel: 256 rows of an 8-wide B panel is 8 KiB, which stays in L1.
const KC: usize = 256;
/// Rows of A packed at once (a multiple of MR): 64 × 256 × 4 B = 64 KiB, in L2.
const MC: usize = 64;

thread_local! {
    /// The packed panels, reused from call to call (the forward pass makes hundreds of products).
    static PACKED: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// `c[i·rsc + j] += Σ_p a[i·rsa + p·csa] · b[p·rsb + j·csb]` for `i < m`, `j < n`, `p < k`.
///
/// # Safety
/// Every element those strides address must lie inside the allocations behind `a`, `b` and `c`
/// (`linalg::matmul_add` checks this for its `MatRef`s), and `c` must not overlap `a` or `b`.
///
/// With the crate feature `threads` (a build with wasm's `atomics`, run where the page is
/// cross-origin isolated), a product is split into
/// blocks of C's columns (or rows, when C is taller than wide), one per thread of rayon's pool
/// and at least [`BLOCK_MIN`] multiply-adds each; each block is the same product on fewer
/// columns (rows), so the result is the same bit for bit.
#[allow(clippy::too_many_arguments)]
#[cfg_attr(feature = "relaxed-simd", target_feature(enable = "relaxed-simd"))]
pub(crate) unsafe fn sgemm_add(
    m: usize,
    k: usize,
    n: usize,
    a: *const f32,
    rsa: usize,
    csa: usize,
    b: *const f32,
    rsb: usize,
    csb: usize,
    c: *mut f32,
    rsc: usize,
) {
    #[cfg(feature = "threads")]
    {
        let blocks = rayon::current_num_threads().min(m * n * k / BLOCK_MIN);
        if blocks > 1 {
            return threaded::sgemm_add(blocks, (m, k, n), (a, rsa, csa), (b, rsb, csb), (c, rsc));
        }
    }
    sgemm_add_serial(m, k, n, a, rsa, csa, b, rsb, csb, c, rsc)
}

/// The least work, in multiply-adds, that [`sgemm_add`] hands to a thread: 4 Mi, ≈ 250 µs on
/// one thread. Waking a sleeping thread of the pool takes on the order of 100 µs in Chromium on
/// this project's 2-core VM: with blocks of 131 072 multiply-adds the L = 4, d = 128 model was
/// 1.25× slower on two threads than on one (docs/BENCHMARKS.md). At this size its products at
/// T = 64 stay on one thread, and GPT-2 small's (38–150 Mi at T = 64) split.
#[cfg(feature = "threads")]
pub const BLOCK_MIN: usize = 1 << 22;

#[cfg(feature = "threads")]
mod threaded {
    use super::{sgemm_add_serial, MR, NR};

    /// A pointer into a matrix, moved to another thread of the pool. The blocks the threads
    /// write are disjoint, and [`sgemm_add`] returns only when every block is done.
    #[derive(Clone, Copy)]
    struct Shared<T>(T);
    // SAFETY: see the type's docs; `rayon::scope` joins every block before the borrow ends.
    unsafe impl<T> Send for Shared<T> {}
    unsafe impl<T> Sync for Shared<T> {}

    /// [`super::sgemm_add`] as `blocks` blocks of C, each on a thread of the pool: C's columns
    /// split in multiples of `NR`, or its rows in multiples of `MR` when it has more rows than
    /// columns.
    #[allow(clippy::type_complexity)]
    pub(super) unsafe fn sgemm_add(
        blocks: usize,
        (m, k, n): (usize, usize, usize),
        (a, rsa, csa): (*const f32, usize, usize),
        (b, rsb, csb): (*const f32, usize, usize),
        (c, rsc): (*mut f32, usize),
    ) {
        let by_rows = m > n;
        let (length, unit) = if by_rows { (m, MR) } else { (n, NR) };
        let block = length.div_ceil(blocks).div_ceil(unit) * unit;
        let (a, b, c) = (Shared(a), Shared(b), Shared(c));
        rayon::scope(|scope| {
            for start in (0..length).step_by(block.max(1)) {
                let size = block.min(length - start);
                // The block's rows (or columns) of C, and where it starts in A, B and C.
                let (rows, cols, at_a, at_b, at_c) = if by_rows {
                    (size, n, start * rsa, 0, start * rsc)
                } else {
                    (m, size, 0, start * csb, start)
                };
                scope.spawn(move |_| {
                    let (a, b, c) = (a, b, c);
                    // SAFETY: the block lies inside the product the caller vouched for, and
                    // blocks do not overlap.
                    unsafe {
                        sgemm_add_serial(
                            rows,
                            k,
                            cols,
                            a.0.add(at_a),
                            rsa,
                            csa,
                            b.0.add(at_b),
                            rsb,
                            csb,
                            c.0.add(at_c),
                            rsc,
                        )
                    }
                });
            }
        });
    }
}

/// [`sgemm_add`] on the calling thread.
#[allow(clippy::too_many_arguments)]
#[cfg_attr(feature = "relaxed-simd", target_feature(enable = "relaxed-simd"))]
unsafe fn sgemm_add_serial(
    m: usize,
    k: usize,
    n: usize,
    a: *const f32,
    rsa: usize,
    csa: usize,
    b: *const f32,
    rsb: usize,
    csb: usize,
    c: *mut f32,
    rsc: usize,
) {
    PACKED.with(|packed| {
        let (a_pack, b_pack) = &mut *packed.borrow_mut();
        let n_panels = n.div_ceil(NR);
        b_pack.resize(n_panels * NR * KC.min(k), 0.0);
        a_pack.resize(MC.min(m.div_ceil(MR) * MR) * KC.min(k), 0.0);
        for p0 in (0..k).step_by(KC) {
            let kc = KC.min(k - p0);
            pack_b(b_pack, b.add(p0 * rsb), rsb, csb, kc, n);
            for i0 in (0..m).step_by(MC) {
                let mc = MC.min(m - i0);
                pack_a(a_pack, a.add(i0 * rsa + p0 * csa), rsa, csa, mc, kc);
                for jp in 0..n_panels {
                    let cols = NR.min(n - jp * NR);
                    let b_panel = b_pack.as_ptr().add(jp * NR * kc);
                    for ip in 0..mc.div_ceil(MR) {
                        let rows = MR.min(mc - ip * MR);
                        let a_panel = a_pack.as_ptr().add(ip * MR * kc);
                        let c_block = c.add((i0 + ip * MR) * rsc + jp * NR);
                        micro_kernel(kc, a_panel, b_panel, c_block, rsc, rows, cols);
                    }
                }
            }
        }
    });
}

/// Packs `kc` rows of B's `n` columns into panels of `NR` columns, each `kc × NR` row-major,
/// the columns past `n` zero.
unsafe fn pack_b(out: &mut [f32], b: *const f32, rsb: usize, csb: usize, kc: usize, n: usize) {
    for (jp, panel) in out[..n.div_ceil(NR) * NR * kc]
        .chunks_exact_mut(NR * kc)
        .enumerate()
    {
        let j0 = jp * NR;
        let cols = NR.min(n - j0);
        if rsb == 1 && csb != 1 {
            // B is the transpose of a row-major matrix (the unembedding): read along its rows.
            panel.fill(0.0);
            for j in 0..cols {
                let src = b.add((j0 + j) * csb);
                for p in 0..kc {
                    panel[p * NR + j] = *src.add(p);
                }
            }
            continue;
        }
        for (p, row) in panel.chunks_exact_mut(NR).enumerate() {
            let src = b.add(p * rsb + j0 * csb);
            if csb == 1 && cols == NR {
                row.copy_from_slice(std::slice::from_raw_parts(src, NR));
            } else {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = if j < cols { *src.add(j * csb) } else { 0.0 };
                }
            }
        }
    }
}

/// Packs `mc` rows of A's `kc` columns into panels of `MR` rows, each stored column by column
/// (`kc × MR`), the rows past `mc` zero.
unsafe fn pack_a(out: &mut [f32], a: *const f32, rsa: usize, csa: usize, mc: usize, kc: usize) {
    for (ip, panel) in out[..mc.div_ceil(MR) * MR * kc]
        .chunks_exact_mut(MR * kc)
        .enumerate()
    {
        let i0 = ip * MR;
        let rows = MR.min(mc - i0);
        for (p, column) in panel.chunks_exact_mut(MR).enumerate() {
            for (i, v) in column.iter_mut().enumerate() {
                *v = if i < rows {
                    *a.add((i0 + i) * rsa + p * csa)
                } else {
                    0.0
                };
            }
        }
    }
}

/// `a · b + c`: a multiply and an add, or with the feature `relaxed-simd` one relaxed
/// multiply-add (fused where the CPU has it; the specification allows either rounding).
// `inline(always)` cannot go with a target feature; `inline` is enough for LLVM to inline these
// into `sgemm_add`, which has the same features.
#[cfg_attr(not(feature = "relaxed-simd"), inline(always))]
#[cfg_attr(
    feature = "relaxed-simd",
    inline,
    target_feature(enable = "relaxed-simd")
)]
fn multiply_add(a: v128, b: v128, c: v128) -> v128 {
    #[cfg(feature = "relaxed-simd")]
    return f32x4_relaxed_madd(a, b, c);
    #[cfg(not(feature = "relaxed-simd"))]
    return f32x4_add(f32x4_mul(a, b), c);
}

/// `C[rows × cols] += A panel · B panel` over depth `kc`; C's rows are `rsc` apart.
#[cfg_attr(not(feature = "relaxed-simd"), inline(always))]
#[cfg_attr(
    feature = "relaxed-simd",
    inline,
    target_feature(enable = "relaxed-simd")
)]
unsafe fn micro_kernel(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    rsc: usize,
    rows: usize,
    cols: usize,
) {
    let zero = f32x4_splat(0.0);
    let mut acc = [[zero; 2]; MR];
    for p in 0..kc {
        let b0 = v128_load(b.add(p * NR) as *const v128);
        let b1 = v128_load(b.add(p * NR + 4) as *const v128);
        let a_col = a.add(p * MR);
        for (i, row) in acc.iter_mut().enumerate() {
            let ai = v128_load32_splat(a_col.add(i) as *const u32);
            row[0] = multiply_add(ai, b0, row[0]);
            row[1] = multiply_add(ai, b1, row[1]);
        }
    }
    if rows == MR && cols == NR {
        for (i, row) in acc.iter().enumerate() {
            let c_row = c.add(i * rsc);
            let lo = f32x4_add(v128_load(c_row as *const v128), row[0]);
            let hi = f32x4_add(v128_load(c_row.add(4) as *const v128), row[1]);
            v128_store(c_row as *mut v128, lo);
            v128_store(c_row.add(4) as *mut v128, hi);
        }
    } else {
        // An edge block: only the rows and columns inside C.
        for (i, row) in acc.iter().enumerate().take(rows) {
            let mut values = [0.0f32; NR];
            v128_store(values.as_mut_ptr() as *mut v128, row[0]);
            v128_store(values.as_mut_ptr().add(4) as *mut v128, row[1]);
            for (j, v) in values.iter().enumerate().take(cols) {
                *c.add(i * rsc + j) += v;
            }
        }
    }
}
