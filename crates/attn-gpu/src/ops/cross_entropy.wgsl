// Cross-entropy and its gradient for the GPU trainer, one workgroup per position (row of logits):
//   dlogits = weight · (softmax(logits) − one-hot(target)),
//   nll[row] = −log softmax(logits)[target], correct[row] = 1 if the first largest logit is the
//   target's, else 0.
// A row whose target is NO_TARGET (padding, unscored positions) gets zeros everywhere.
// CPU twin: attn_model::training::backprop::cross_entropy_backward (which sums in f64).

struct Params {
    n: u32,
    weight: f32,
}

const THREADS: u32 = 64u;
const NO_TARGET: u32 = 0xffffffffu;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<u32>;
@group(0) @binding(3) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(4) var<storage, read_write> nll: array<f32>;
@group(0) @binding(5) var<storage, read_write> correct: array<f32>;

var<workgroup> values: array<f32, THREADS>;
var<workgroup> indices: array<u32, THREADS>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    let row = wg.x;
    let base = row * p.n;
    let wanted = targets[row];
    if (wanted == NO_TARGET) {
        for (var j = tid; j < p.n; j += THREADS) {
            dlogits[base + j] = 0.0;
        }
        if (tid == 0u) {
            nll[row] = 0.0;
            correct[row] = 0.0;
        }
        return;
    }
    // The largest logit and its first index.
    var best = -0x1.fffffep+127f;
    var best_index = 0xffffffffu;
    for (var j = tid; j < p.n; j += THREADS) {
        let x = logits[base + j];
        if (x > best) {
            best = x;
            best_index = j;
        }
    }
    values[tid] = best;
    indices[tid] = best_index;
    workgroupBarrier();
    for (var stride = THREADS / 2u; stride > 0u; stride /= 2u) {
        if (tid < stride) {
            let a = values[tid];
            let b = values[tid + stride];
            if (b > a || (b == a && indices[tid + stride] < indices[tid])) {
                values[tid] = b;
                indices[tid] = indices[tid + stride];
            }
        }
        workgroupBarrier();
    }
    let largest = values[0];
    let largest_at = indices[0];
    workgroupBarrier();
    // log Σ exp(x − max).
    var sum = 0.0;
    for (var j = tid; j < p.n; j += THREADS) {
        sum += exp(logits[base + j] - largest);
    }
    values[tid] = sum;
    workgroupBarrier();
    for (var stride = THREADS / 2u; stride > 0u; stride /= 2u) {
        if (tid < stride) {
            values[tid] += values[tid + stride];
        }
        workgroupBarrier();
    }
    let log_sum = log(values[0]);
    for (var j = tid; j < p.n; j += THREADS) {
        var g = exp(logits[base + j] - largest - log_sum) * p.weight;
        if (j == wanted) {
            g -= p.weight;
        }
        dlogits[base + j] = g;
    }
    if (tid == 0u) {
        nll[row] = -(logits[base + wanted] - largest - log_sum);
        correct[row] = select(0.0, 1.0, largest_at == wanted);
    }
}
