// Feature maps of the non-softmax attention kernels (docs/VARIANTS.md, `kernel`).
//
// elu_feature:          dst = elu(scale · src) + 1, elementwise (linear attention's φ).
// random_feature_query: FAVOR+ features of the queries, in place on proj = c·q·ωᵀ ([H, T, m]):
//                       φ_r = exp(proj_r − |c·q|²/2 − max_r(...)) per query row.
// random_feature_key:   the same for the keys, but with one offset for all of a head's rows
//                       (one workgroup per head), so key features stay comparable across keys.
// The offsets cancel when the weights are normalised; they only keep exp finite.

struct Params {
    n: u32,          // elu_feature: number of elements
    t: u32,          // rows (positions)
    m: u32,          // random features per head
    d_head: u32,
    src_stride: u32, // row stride of the q or k activations
    group_size: u32, // query heads per key/value head: head h reads source head h / group_size
    heads: u32,      // query heads
    scale: f32,      // elu_feature: input scale; random features: c = sqrt(β/√d)
}

const THREADS: u32 = 64u;
const LOWEST: f32 = -0x1.fffffep+127f;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

var<workgroup> partial: array<f32, THREADS>;

fn elu_plus_one(x: f32) -> f32 {
    if (x > 0.0) {
        return x + 1.0;
    }
    return exp(x);
}

@compute @workgroup_size(64)
fn elu_feature(@builtin(global_invocation_id) gid: vec3<u32>) {
    let index = gid.y * 65535u * THREADS + gid.x;
    if (index < p.n) {
        dst[index] = elu_plus_one(src[index] * p.scale);
    }
}

// |c·x|²/2 for row t of source head `head`.
fn half_norm(t: u32, head: u32) -> f32 {
    let base = t * p.src_stride + head * p.d_head;
    var sum = 0.0;
    for (var c = 0u; c < p.d_head; c++) {
        let v = src[base + c] * p.scale;
        sum += v * v;
    }
    return 0.5 * sum;
}

@compute @workgroup_size(64)
fn random_feature_query(@builtin(global_invocation_id) gid: vec3<u32>) {
    let index = gid.x;
    if (index >= p.t * p.heads) {
        return;
    }
    let head = index / p.t;
    let t = index % p.t;
    let base = index * p.m;
    let h = half_norm(t, head / p.group_size);
    var row_max = LOWEST;
    for (var r = 0u; r < p.m; r++) {
        let v = dst[base + r] - h;
        dst[base + r] = v;
        row_max = max(row_max, v);
    }
    for (var r = 0u; r < p.m; r++) {
        dst[base + r] = exp(dst[base + r] - row_max);
    }
}

@compute @workgroup_size(64)
fn random_feature_key(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
) {
    let head = wg.x;
    let source_head = head / p.group_size;
    var local_max = LOWEST;
    for (var t = tid; t < p.t; t += THREADS) {
        let base = (head * p.t + t) * p.m;
        let h = half_norm(t, source_head);
        for (var r = 0u; r < p.m; r++) {
            let v = dst[base + r] - h;
            dst[base + r] = v;
            local_max = max(local_max, v);
        }
    }
    partial[tid] = local_max;
    workgroupBarrier();
    for (var stride = THREADS / 2u; stride > 0u; stride /= 2u) {
        if (tid < stride) {
            partial[tid] = max(partial[tid], partial[tid + stride]);
        }
        workgroupBarrier();
    }
    let head_max = partial[0];
    // Each invocation finishes the rows it started, so no storage barrier is needed.
    for (var t = tid; t < p.t; t += THREADS) {
        let base = (head * p.t + t) * p.m;
        for (var r = 0u; r < p.m; r++) {
            dst[base + r] = exp(dst[base + r] - head_max);
        }
    }
}
