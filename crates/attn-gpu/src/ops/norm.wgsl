// LayerNorm or RMSNorm over each row: one workgroup per row, tree reductions in workgroup memory
// (`workgroup_sum`, appended from reduce.wgsl).
// LayerNorm takes two passes (mean, then the biased variance of the centred values), as the CPU
// reference; RMSNorm skips the mean (it is taken as zero) and LayerNorm's shift.

struct Params {
    d: u32,
    eps: f32,
    // 1: RMSNorm, 0: LayerNorm.
    rms: u32,
    // 1: add `bias` (LayerNorm's shift).
    has_bias: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    let base = wg.x * p.d;
    var mean = 0.0;
    if (p.rms == 0u) {
        var sum = 0.0;
        for (var i = tid; i < p.d; i += THREADS) {
            sum += x[base + i];
        }
        mean = workgroup_sum(sum, tid) / f32(p.d);
    }
    var squares = 0.0;
    for (var i = tid; i < p.d; i += THREADS) {
        let c = x[base + i] - mean;
        squares += c * c;
    }
    let variance = workgroup_sum(squares, tid) / f32(p.d);
    let inv = 1.0 / sqrt(variance + p.eps);
    for (var i = tid; i < p.d; i += THREADS) {
        var v = (x[base + i] - mean) * inv * weight[i];
        if (p.has_bias != 0u) {
            v += bias[i];
        }
        y[base + i] = v;
    }
}
