// Softmax's backward for the GPU trainer, row by row (every head's T × T map, one row per query):
//   ds = p ⊙ (dp − Σ_row dp ⊙ p) · scale
// with the score scale folded in. Masked keys have p = 0, so their ds is 0. One workgroup per
// row, the row's dot product summed in a tree (reduce.wgsl).
// CPU twin: attn_model::training::backprop::softmax_backward.

struct Params {
    width: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> probs: array<f32>;
@group(0) @binding(2) var<storage, read> dp: array<f32>;
@group(0) @binding(3) var<storage, read_write> ds: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    // Rows beyond 65 535 go on in y (a batch of heads × queries).
    let row = wg.x + wg.y * 65535u;
    let base = row * p.width;
    var dot = 0.0;
    for (var j = tid; j < p.width; j += THREADS) {
        dot += dp[base + j] * probs[base + j];
    }
    let total = workgroup_sum(dot, tid);
    for (var j = tid; j < p.width; j += THREADS) {
        ds[base + j] = probs[base + j] * (dp[base + j] - total) * p.scale;
    }
}
