// Scores → attention probabilities for one layer, in place: one workgroup per (query row, head).
//
// On entry `attn` holds the scaled scores s_ij = β·q_i·k_j/√d of every head ([H, T, keys], query
// row i at position first + i; a forward has first = 0 and keys = T); on exit
// it holds the probabilities A_ij that the heatmaps show (docs/VARIANTS.md):
//   allowed(i, j) = causal mask ∧ sliding window (a contiguous range of keys),
//   kept = allowed, cut to the top_k highest scores (ties go to the smaller j),
//   A_ij = w_ij / Σ_kept w  with w = exp(s − max) (softmax) or the kernel weights (linear and
//   random features, computed beforehand into `weights`), 0 where not kept;
//   a row whose weights sum to 0 or overflow is spread evenly over the kept keys.

struct Params {
    t: u32,
    causal: u32,
    window: u32,      // 0: no window
    top_k: u32,       // 0: keep every allowed key
    use_weights: u32, // 0: softmax of the scores; 1: normalise `weights`
    first: u32,       // the position of query row 0 (a decode step: the position it decodes)
    keys: u32,        // keys per row: positions 0..keys (a forward: t)
    _pad2: u32,
}

const THREADS: u32 = 64u;
const MAX_T: u32 = 2048u;
const LOWEST: f32 = -0x1.fffffep+127f;
const LARGEST: f32 = 0x1.fffffep+127f;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> attn: array<f32>;
@group(0) @binding(2) var<storage, read> weights: array<f32>;

var<workgroup> scores: array<f32, MAX_T>;
var<workgroup> kept_bits: array<atomic<u32>, 64>; // MAX_T / 32
var<workgroup> partial_f: array<f32, THREADS>;
var<workgroup> partial_u: array<u32, THREADS>;

fn workgroup_max(value: f32, tid: u32) -> f32 {
    partial_f[tid] = value;
    workgroupBarrier();
    for (var stride = THREADS / 2u; stride > 0u; stride /= 2u) {
        if (tid < stride) {
            partial_f[tid] = max(partial_f[tid], partial_f[tid + stride]);
        }
        workgroupBarrier();
    }
    let result = partial_f[0];
    workgroupBarrier();
    return result;
}

fn workgroup_sum(value: f32, tid: u32) -> f32 {
    partial_f[tid] = value;
    workgroupBarrier();
    for (var stride = THREADS / 2u; stride > 0u; stride /= 2u) {
        if (tid < stride) {
            partial_f[tid] += partial_f[tid + stride];
        }
        workgroupBarrier();
    }
    let result = partial_f[0];
    workgroupBarrier();
    return result;
}

fn workgroup_count(value: u32, tid: u32) -> u32 {
    partial_u[tid] = value;
    workgroupBarrier();
    for (var stride = THREADS / 2u; stride > 0u; stride /= 2u) {
        if (tid < stride) {
            partial_u[tid] += partial_u[tid + stride];
        }
        workgroupBarrier();
    }
    let result = partial_u[0];
    workgroupBarrier();
    return result;
}

fn is_kept(j: u32) -> bool {
    return (atomicLoad(&kept_bits[j / 32u]) & (1u << (j % 32u))) != 0u;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    let t = p.keys;
    let row = (wg.y * p.t + wg.x) * t;
    let i = p.first + wg.x;

    // The allowed keys form the range [lo, hi].
    var lo = 0u;
    var hi = t - 1u;
    if (p.causal != 0u) {
        hi = min(i, t - 1u);
    }
    if (p.window != 0u) {
        if (i + 1u > p.window) {
            lo = i + 1u - p.window;
        }
        if (p.causal == 0u) {
            hi = min(t - 1u, i + p.window - 1u);
        }
    }

    for (var w = tid; w < MAX_T / 32u; w += THREADS) {
        atomicStore(&kept_bits[w], 0u);
    }
    for (var j = tid; j < t; j += THREADS) {
        scores[j] = attn[row + j];
    }
    workgroupBarrier();

    // Keep key j if fewer than top_k allowed keys beat it (higher score, or equal and earlier).
    var kept_here = 0u;
    for (var j = lo + tid; j <= hi; j += THREADS) {
        var keep = true;
        if (p.top_k != 0u) {
            let s = scores[j];
            var rank = 0u;
            for (var other = lo; other <= hi && rank < p.top_k; other++) {
                let so = scores[other];
                if (so > s || (so == s && other < j)) {
                    rank++;
                }
            }
            keep = rank < p.top_k;
        }
        if (keep) {
            atomicOr(&kept_bits[j / 32u], 1u << (j % 32u));
            kept_here++;
        }
    }
    let kept_count = workgroup_count(kept_here, tid);

    var local_max = LOWEST;
    for (var j = tid; j < t; j += THREADS) {
        if (is_kept(j)) {
            local_max = max(local_max, scores[j]);
        }
    }
    let row_max = workgroup_max(local_max, tid);

    var local_sum = 0.0;
    for (var j = tid; j < t; j += THREADS) {
        var w = 0.0;
        if (is_kept(j)) {
            if (p.use_weights != 0u) {
                w = weights[row + j];
            } else {
                w = exp(scores[j] - row_max);
            }
        }
        attn[row + j] = w;
        local_sum += w;
    }
    let total = workgroup_sum(local_sum, tid);

    let normal = total > 0.0 && total <= LARGEST;
    let uniform_weight = 1.0 / f32(max(kept_count, 1u));
    for (var j = tid; j < t; j += THREADS) {
        if (is_kept(j)) {
            if (normal) {
                attn[row + j] = attn[row + j] / total;
            } else {
                attn[row + j] = uniform_weight;
            }
        }
    }
}
