// Reorders per-head activations between the dense layers' layout and the attention products':
//   rows [B, T, H, dh] (row b·T + t holds every head of position t) ↔ head-major [B, H, T, dh],
// so that one batched matrix product covers every head of every sequence. `to_heads` writes the
// head-major copy, `from_heads` the row layout; one invocation per element.

struct Params {
    seqs: u32,
    t: u32,
    heads: u32,
    d_head: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// Element `index` of the head-major layout, and where it sits in the row layout.
fn row_index(index: u32) -> u32 {
    let e = index % p.d_head;
    let t = (index / p.d_head) % p.t;
    let h = (index / (p.d_head * p.t)) % p.heads;
    let b = index / (p.d_head * p.t * p.heads);
    return ((b * p.t + t) * p.heads + h) * p.d_head + e;
}

fn element(gid: vec3<u32>) -> u32 {
    return gid.x + gid.y * 65535u * 256u;
}

@compute @workgroup_size(256)
fn to_heads(@builtin(global_invocation_id) gid: vec3<u32>) {
    let index = element(gid);
    if (index >= p.seqs * p.t * p.heads * p.d_head) {
        return;
    }
    dst[index] = src[row_index(index)];
}

@compute @workgroup_size(256)
fn from_heads(@builtin(global_invocation_id) gid: vec3<u32>) {
    let index = element(gid);
    if (index >= p.seqs * p.t * p.heads * p.d_head) {
        return;
    }
    dst[row_index(index)] = src[index];
}
