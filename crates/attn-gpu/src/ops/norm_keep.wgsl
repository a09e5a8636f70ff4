// LayerNorm's forward for the GPU trainer, keeping what its backward (norm_backward.wgsl) needs:
// the output rows, the normalised rows x̂ and each row's 1 / sqrt(var + eps). One workgroup per
// row, two passes (the mean, then the biased variance of the centred values) as norm.wgsl.
// CPU twin: attn_model::training::backprop::layer_norm_keep.

struct Params {
    d: u32,
    eps: f32,
    has_bias: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> normalised: array<f32>;
@group(0) @binding(6) var<storage, read_write> inv_std: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    let base = wg.x * p.d;
    var sum = 0.0;
    for (var i = tid; i < p.d; i += THREADS) {
        sum += x[base + i];
    }
    let mean = workgroup_sum(sum, tid) / f32(p.d);
    var squares = 0.0;
    for (var i = tid; i < p.d; i += THREADS) {
        let c = x[base + i] - mean;
        squares += c * c;
    }
    let inv = 1.0 / sqrt(workgroup_sum(squares, tid) / f32(p.d) + p.eps);
    for (var i = tid; i < p.d; i += THREADS) {
        let n = (x[base + i] - mean) * inv;
        normalised[base + i] = n;
        var v = n * gamma[i];
        if (p.has_bias != 0u) {
            v += beta[i];
        }
        y[base + i] = v;
    }
    if (tid == 0u) {
        inv_std[wg.x] = inv;
    }
}
