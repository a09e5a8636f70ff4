// Batched, strided matrix product with a fused epilogue:
//   C[b] (+)= epilogue(alpha · A[b / a_batch_div] · B[b / b_batch_div] + bias)
// Every operand is addressed through (offset, row stride, column stride, batch stride), so the
// same kernel multiplies dense layers, one head's columns of Q against K (transposed by swapping
// strides), query heads against a shared key/value head (batch_div = heads per group), and the
// token embedding as the transposed unembedding. The output's column stride is always 1.
//
// B may hold 16-bit weights (f16 or bf16, two to a u32, value 2i in the low half; see
// `weights.wgsl`): B is bound as raw 32-bit words and `load_b` widens by the flags, so 16-bit
// checkpoints keep half the GPU memory with no `shader-f16` feature. A and C are always f32.
//
// Tiling: an 8×8 workgroup computes a 32×32 block of C, each invocation a 4×4 sub-block whose
// rows and columns are spaced 8 apart (neighbouring invocations touch neighbouring columns);
// A and B tiles of depth 16 are staged in workgroup memory (2 × 2 KiB). Per step of depth an
// invocation reads 4 values of A and 4 of B from workgroup memory for 16 multiply-adds held in
// registers.

struct Params {
    m: u32, n: u32, k: u32, batch: u32,
    a_offset: u32, a_row_stride: u32, a_col_stride: u32, a_batch_stride: u32,
    b_offset: u32, b_row_stride: u32, b_col_stride: u32, b_batch_stride: u32,
    c_offset: u32, c_row_stride: u32, c_batch_stride: u32, bias_offset: u32,
    a_batch_div: u32, b_batch_div: u32, flags: u32, alpha: f32,
}

const FLAG_BIAS: u32 = 1u;
const FLAG_GELU_TANH: u32 = 2u;
const FLAG_ACCUMULATE: u32 = 4u;
const FLAG_GELU_ERF: u32 = 8u;
const FLAG_SILU: u32 = 16u;
// Multiply the result into what C holds (a gated MLP's act(gate) · up).
const FLAG_MULTIPLY: u32 = 32u;
// B's storage precision (neither: f32).
const FLAG_B_F16: u32 = 64u;
const FLAG_B_BF16: u32 = 128u;

const TILE: u32 = 32u;
const TILE_K: u32 = 16u;
// Invocations along each side of the workgroup, and outputs per invocation along each side.
const SIDE: u32 = 8u;
const PER: u32 = 4u;
const THREADS: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<u32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

var<workgroup> a_tile: array<f32, 512>; // [TILE rows][TILE_K]
var<workgroup> b_tile: array<f32, 512>; // [TILE_K][TILE cols]

// Element i of B as f32, whatever its storage precision.
fn load_b(i: u32) -> f32 {
    if ((p.flags & FLAG_B_F16) != 0u) {
        return unpack_f16(b[i >> 1u], i);
    }
    if ((p.flags & FLAG_B_BF16) != 0u) {
        return unpack_bf16(b[i >> 1u], i);
    }
    return bitcast<f32>(b[i]);
}

// GPT-2's tanh-approximated GELU, written with exp so every driver gives the same accuracy
// (WGSL's tanh has no precision guarantee on some backends).
fn gelu_tanh(x: f32) -> f32 {
    let u = 0.7978846 * (x + 0.044715 * x * x * x);
    let t = 1.0 - 2.0 / (exp(2.0 * clamp(u, -20.0, 20.0)) + 1.0);
    return 0.5 * x * (1.0 + t);
}

// The error function, Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7): WGSL has no erf.
fn erf(x: f32) -> f32 {
    let z = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * z);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741
        + t * (-1.453152027 + t * 1.061405429))));
    return sign(x) * (1.0 - poly * exp(-z * z));
}

// The exact GELU, x·Φ(x) (GPT-NeoX's `gelu`).
fn gelu_erf(x: f32) -> f32 {
    return 0.5 * x * (1.0 + erf(x * 0.70710678));
}

// x·sigmoid(x), written so that exp never overflows.
fn silu(x: f32) -> f32 {
    let e = exp(-abs(x));
    return select(x * e / (1.0 + e), x / (1.0 + e), x >= 0.0);
}

@compute @workgroup_size(8, 8, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let batch = wg.z;
    let row0 = wg.y * TILE;
    let col0 = wg.x * TILE;
    let a_base = p.a_offset + (batch / p.a_batch_div) * p.a_batch_stride;
    let b_base = p.b_offset + (batch / p.b_batch_div) * p.b_batch_stride;

    // acc<i>[j]: row lid.y + SIDE·i, column lid.x + SIDE·j of the block (written out rather
    // than an array, so that no driver keeps them in memory).
    var acc0 = vec4<f32>();
    var acc1 = vec4<f32>();
    var acc2 = vec4<f32>();
    var acc3 = vec4<f32>();
    for (var k0 = 0u; k0 < p.k; k0 += TILE_K) {
        for (var e = li; e < TILE * TILE_K; e += THREADS) {
            // A tile element e: row e / TILE_K, depth e % TILE_K.
            let ar = row0 + e / TILE_K;
            let ak = k0 + e % TILE_K;
            var av = 0.0;
            if (ar < p.m && ak < p.k) {
                av = a[a_base + ar * p.a_row_stride + ak * p.a_col_stride];
            }
            a_tile[e] = av;
            // B tile element e: depth e / TILE, column e % TILE.
            let bk = k0 + e / TILE;
            let bc = col0 + e % TILE;
            var bv = 0.0;
            if (bk < p.k && bc < p.n) {
                bv = load_b(b_base + bk * p.b_row_stride + bc * p.b_col_stride);
            }
            b_tile[e] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk++) {
            let bv = vec4<f32>(
                b_tile[kk * TILE + lid.x],
                b_tile[kk * TILE + lid.x + SIDE],
                b_tile[kk * TILE + lid.x + 2u * SIDE],
                b_tile[kk * TILE + lid.x + 3u * SIDE],
            );
            acc0 += a_tile[lid.y * TILE_K + kk] * bv;
            acc1 += a_tile[(lid.y + SIDE) * TILE_K + kk] * bv;
            acc2 += a_tile[(lid.y + 2u * SIDE) * TILE_K + kk] * bv;
            acc3 += a_tile[(lid.y + 3u * SIDE) * TILE_K + kk] * bv;
        }
        workgroupBarrier();
    }

    store_row(row0 + lid.y, col0 + lid.x, batch, acc0);
    store_row(row0 + lid.y + SIDE, col0 + lid.x, batch, acc1);
    store_row(row0 + lid.y + 2u * SIDE, col0 + lid.x, batch, acc2);
    store_row(row0 + lid.y + 3u * SIDE, col0 + lid.x, batch, acc3);
}

// Products of at most FEW rows of A (a decode step's one position; a short forward): one
// invocation per column of C, which reads each element of B once and multiplies it into every
// row, summing over k in the same order as `main`. The tiled `main` would compute a 32-row
// block for them, 32× the multiply-adds of one row. Rows past `m` read row 0 (always there) and
// are not stored.
const FEW: u32 = 4u;

@compute @workgroup_size(64, 1, 1)
fn few_rows(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    let col = gid.x;
    let batch = wg.z;
    if (col >= p.n) {
        return;
    }
    let a_base = p.a_offset + (batch / p.a_batch_div) * p.a_batch_stride;
    let b_base = p.b_offset + (batch / p.b_batch_div) * p.b_batch_stride + col * p.b_col_stride;
    let last = p.m - 1u;
    let rows = vec4<u32>(0u, min(1u, last), min(2u, last), min(3u, last)) * p.a_row_stride;
    var acc = vec4<f32>();
    if (p.m == 1u) {
        // A decode step: one row, one load of A per element of B.
        var sum = 0.0;
        for (var k = 0u; k < p.k; k++) {
            sum += a[a_base + k * p.a_col_stride] * load_b(b_base + k * p.b_row_stride);
        }
        acc.x = sum;
    } else {
        for (var k = 0u; k < p.k; k++) {
            let bv = load_b(b_base + k * p.b_row_stride);
            let at = a_base + k * p.a_col_stride;
            acc += vec4<f32>(a[at + rows.x], a[at + rows.y], a[at + rows.z], a[at + rows.w]) * bv;
        }
    }
    for (var r = 0u; r < min(p.m, FEW); r++) {
        store(r, col, batch, acc[r]);
    }
}

// One invocation's four outputs of a row: columns `col`, `col + SIDE`, … .
fn store_row(row: u32, col: u32, batch: u32, acc: vec4<f32>) {
    for (var j = 0u; j < PER; j++) {
        store(row, col + j * SIDE, batch, acc[j]);
    }
}

fn store(row: u32, col: u32, batch: u32, acc: f32) {
    if (row >= p.m || col >= p.n) {
        return;
    }
    // Same order as the CPU reference: (alpha · x·W + b), then the activation, then the
    // residual add or the gate's product.
    var v = p.alpha * acc;
    if ((p.flags & FLAG_BIAS) != 0u) {
        v += bias[p.bias_offset + col];
    }
    if ((p.flags & FLAG_GELU_TANH) != 0u) {
        v = gelu_tanh(v);
    }
    if ((p.flags & FLAG_GELU_ERF) != 0u) {
        v = gelu_erf(v);
    }
    if ((p.flags & FLAG_SILU) != 0u) {
        v = silu(v);
    }
    let index = p.c_offset + batch * p.c_batch_stride + row * p.c_row_stride + col;
    if ((p.flags & FLAG_ACCUMULATE) != 0u) {
        v += c[index];
    }
    if ((p.flags & FLAG_MULTIPLY) != 0u) {
        v *= c[index];
    }
    c[index] = v;
}
