// LayerNorm's backward for the GPU trainer, from the forward's normalised rows x̂ and each row's
// 1 / sqrt(var + eps). Two entry points over the same bindings:
//   `rows`:   dx[r] += inv[r] · (g − mean(g) − x̂ · mean(g ⊙ x̂)), g = dy ⊙ γ — one workgroup
//             per row, tree reductions in workgroup memory (as norm.wgsl);
//   `params`: dγ[c] += Σ_r dy ⊙ x̂, dβ[c] += Σ_r dy — one invocation per column, summing the
//             rows in order (no atomics: the same sum every run).
// CPU twin: attn_model::training::backprop::layer_norm_backward.

struct Params {
    rows: u32,
    d: u32,
    // 1: accumulate the shift's gradient too.
    has_bias: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> normalised: array<f32>;
@group(0) @binding(3) var<storage, read> inv_std: array<f32>;
@group(0) @binding(4) var<storage, read> gamma: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(7) var<storage, read_write> dbeta: array<f32>;

@compute @workgroup_size(64)
fn rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    let base = wg.x * p.d;
    var sum_g = 0.0;
    var sum_gn = 0.0;
    for (var i = tid; i < p.d; i += THREADS) {
        let g = dy[base + i] * gamma[i];
        sum_g += g;
        sum_gn += g * normalised[base + i];
    }
    let mean_g = workgroup_sum(sum_g, tid) / f32(p.d);
    let mean_gn = workgroup_sum(sum_gn, tid) / f32(p.d);
    let inv = inv_std[wg.x];
    for (var i = tid; i < p.d; i += THREADS) {
        let g = dy[base + i] * gamma[i];
        dx[base + i] += inv * (g - mean_g - normalised[base + i] * mean_gn);
    }
}

@compute @workgroup_size(64)
fn params(@builtin(global_invocation_id) id: vec3<u32>) {
    let c = id.x;
    if (c >= p.d) {
        return;
    }
    var sum_dyn = 0.0;
    var sum_dy = 0.0;
    for (var r = 0u; r < p.rows; r++) {
        let g = dy[r * p.d + c];
        sum_dyn += g * normalised[r * p.d + c];
        sum_dy += g;
    }
    dgamma[c] += sum_dyn;
    if (p.has_bias != 0u) {
        dbeta[c] += sum_dy;
    }
}
