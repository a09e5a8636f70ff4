// Linear attention's backward through its normalisation, for the GPU trainer, row by row (every
// head's T × T map, one row per query; row r is query r % width). With P = W / Σ_row W over the
// keys the query may see (all of them, or the first r % width + 1 when causal):
//   dw = (dp − Σ_row dp ⊙ p) / Σ_row w   on those keys, 0 on the others.
// One workgroup per row, both sums in a tree (reduce.wgsl).
// CPU twin: attn_model::training::backprop::linear_weights_backward.

struct Params {
    width: u32,
    causal: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> probs: array<f32>;
@group(0) @binding(2) var<storage, read> dp: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(4) var<storage, read_write> dw: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    // Rows beyond 65 535 go on in y (a batch of heads × queries).
    let row = wg.x + wg.y * 65535u;
    let base = row * p.width;
    var keys = p.width;
    if (p.causal != 0u) {
        keys = row % p.width + 1u;
    }
    var dot = 0.0;
    var sum = 0.0;
    for (var j = tid; j < keys; j += THREADS) {
        dot += dp[base + j] * probs[base + j];
        sum += w[base + j];
    }
    let total_dot = workgroup_sum(dot, tid);
    let total_w = workgroup_sum(sum, tid);
    for (var j = tid; j < p.width; j += THREADS) {
        var g = 0.0;
        if (j < keys) {
            g = (dp[base + j] - total_dot) / total_w;
        }
        dw[base + j] = g;
    }
}
