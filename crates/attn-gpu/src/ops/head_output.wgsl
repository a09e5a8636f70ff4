// Per-head post-processing of the attention output z ([T, H·d_head], head h in columns
// h·d_head..): ablation (zero, or the mean over positions) and the per-row Euclidean norms
// that the app shows as "how much each head writes".
//
// column_means: one invocation per (head, column): the mean over positions, summed in order as
//               on the CPU, into `means` ([H, d_head]). Launched only for layers with a
//               mean-ablated head.
// main:         one invocation per (head, row): replace the row by zeros or the means if the
//               head is ablated, then write its norm. Rows are independent: no barriers.
// route:        the routing proxy, after main: one invocation per (head, row); the head's row
//               is zeroed unless fewer than `route_k` heads write more at that position (a
//               larger norm, or the same with a smaller index). Launched only when routing.
// (A single kernel with a workgroup-shared mean phase was 10× slower on lavapipe even when the
// phase was skipped, hence two entry points with flat control flow.)

struct Params {
    t: u32,
    heads: u32,
    d_head: u32,
    layer: u32,
    // Heads kept per position by the routing proxy.
    route_k: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const KEEP: u32 = 0u;
const ZERO: u32 = 1u;
const MEAN: u32 = 2u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> z: array<f32>;
@group(0) @binding(2) var<storage, read_write> norms: array<f32>;    // [L, H, T]
@group(0) @binding(3) var<storage, read> ablation: array<u32>;       // [L, H]: KEEP, ZERO, MEAN
@group(0) @binding(4) var<storage, read_write> means: array<f32>;    // [H, d_head]

@compute @workgroup_size(64)
fn column_means(@builtin(global_invocation_id) gid: vec3<u32>) {
    let index = gid.x;
    if (index >= p.heads * p.d_head) {
        return;
    }
    let width = p.heads * p.d_head;
    var sum = 0.0;
    for (var t = 0u; t < p.t; t++) {
        sum += z[t * width + index];
    }
    means[index] = sum / f32(p.t);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let index = gid.x;
    if (index >= p.heads * p.t) {
        return;
    }
    let head = index / p.t;
    let t = index % p.t;
    let mode = ablation[p.layer * p.heads + head];
    let base = t * p.heads * p.d_head + head * p.d_head;
    var squares = 0.0;
    for (var c = 0u; c < p.d_head; c++) {
        var v = z[base + c];
        if (mode == ZERO) {
            v = 0.0;
        } else if (mode == MEAN) {
            v = means[head * p.d_head + c];
        }
        if (mode != KEEP) {
            z[base + c] = v;
        }
        squares += v * v;
    }
    norms[(p.layer * p.heads + head) * p.t + t] = sqrt(squares);
}

@compute @workgroup_size(64)
fn route(@builtin(global_invocation_id) gid: vec3<u32>) {
    let index = gid.x;
    if (index >= p.heads * p.t) {
        return;
    }
    let head = index / p.t;
    let t = index % p.t;
    let row = p.layer * p.heads;
    let mine = norms[(row + head) * p.t + t];
    var rank = 0u;
    for (var h = 0u; h < p.heads; h++) {
        let other = norms[(row + h) * p.t + t];
        if (other > mine || (other == mine && h < head)) {
            rank += 1u;
        }
    }
    if (rank >= p.route_k) {
        let base = t * p.heads * p.d_head + head * p.d_head;
        for (var c = 0u; c < p.d_head; c++) {
            z[base + c] = 0.0;
        }
    }
}
