// LayerNorm over each row: one workgroup per row, tree reductions in workgroup memory.
// Two passes (mean, then the biased variance of the centred values), as the CPU reference.

struct Params {
    d: u32,
    eps: f32,
    _pad0: u32,
    _pad1: u32,
}

const THREADS: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

var<workgroup> partial: array<f32, THREADS>;

fn workgroup_sum(value: f32, tid: u32) -> f32 {
    partial[tid] = value;
    workgroupBarrier();
    for (var stride = THREADS / 2u; stride > 0u; stride /= 2u) {
        if (tid < stride) {
            partial[tid] += partial[tid + stride];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

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
    let variance = workgroup_sum(squares, tid) / f32(p.d);
    let inv = 1.0 / sqrt(variance + p.eps);
    for (var i = tid; i < p.d; i += THREADS) {
        y[base + i] = (x[base + i] - mean) * inv * weight[i] + bias[i];
    }
}
