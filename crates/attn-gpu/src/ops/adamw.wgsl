// AdamW for the GPU trainer, one parameter tensor at a time, step for step the CPU trainer's
// (attn_model::training::optimizer::AdamW, itself the offline trainer's):
//   `clip`:   the gradient's clipping coefficient min(threshold / (‖g‖ + tiny), 1) into
//             coef[0] (1 without clipping) — one workgroup, the squares summed in a tree;
//   `update`: g ← g · coef; m ← β₁m + (1 − β₁)g; v ← β₂v + (1 − β₂)g²;
//             θ ← θ · keep − lr · (m / c₁) / (√(v / c₂) + ε).
// CPU twin: attn_model::training::optimizer::adamw_update.

struct Params {
    n: u32,
    // 0: no clipping.
    clip: u32,
    threshold: f32,
    learning_rate: f32,
    // The bias corrections 1 − β₁ᵗ and 1 − β₂ᵗ, and the decoupled decay factor 1 − lr·λ.
    correction_1: f32,
    correction_2: f32,
    keep: f32,
    _pad: u32,
}

const BETA_1: f32 = 0.9;
const BETA_2: f32 = 0.99;
const EPSILON: f32 = 1e-8;
const THREADS: u32 = 256u;
// The smallest positive normal f32 (Rust's f32::MIN_POSITIVE).
const TINY: f32 = 0x1p-126f;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read_write> coef: array<f32>;

var<workgroup> partial: array<f32, THREADS>;

@compute @workgroup_size(256)
fn clip(@builtin(local_invocation_index) tid: u32) {
    var squares = 0.0;
    for (var i = tid; i < p.n; i += THREADS) {
        squares += grad[i] * grad[i];
    }
    partial[tid] = squares;
    workgroupBarrier();
    for (var stride = THREADS / 2u; stride > 0u; stride /= 2u) {
        if (tid < stride) {
            partial[tid] += partial[tid + stride];
        }
        workgroupBarrier();
    }
    if (tid == 0u) {
        var c = 1.0;
        if (p.clip != 0u) {
            c = min(p.threshold / (sqrt(partial[0]) + TINY), 1.0);
        }
        coef[0] = c;
    }
}

@compute @workgroup_size(256)
fn update(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x + id.y * 65535u * THREADS;
    if (i >= p.n) {
        return;
    }
    let g = grad[i] * coef[0];
    m[i] = m[i] * BETA_1 + g * (1.0 - BETA_1);
    v[i] = v[i] * BETA_2 + g * g * (1.0 - BETA_2);
    let delta = (m[i] / p.correction_1) / (sqrt(v[i] / p.correction_2) + EPSILON);
    param[i] = param[i] * p.keep - delta * p.learning_rate;
}
