// The head penalty's gradient for the GPU trainer: every head's output at every position, a
// d_head-wide piece z_h of z, adds weight · z_h / sqrt(‖z_h‖² + floor) to the same piece of dz.
// One invocation per piece (d_head is small: a loop, no reduction across invocations).
// CPU twin: attn_model::training::backprop::head_norm_backward.

struct Params {
    pieces: u32,
    d_head: u32,
    weight: f32,
    _pad: u32,
}

// The offline trainer's constant under the square root: a finite gradient at z_h = 0.
const FLOOR: f32 = 1e-8;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> z: array<f32>;
@group(0) @binding(2) var<storage, read_write> dz: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let piece = id.x + id.y * 65535u * 64u;
    if (piece >= p.pieces) {
        return;
    }
    let base = piece * p.d_head;
    var squares = 0.0;
    for (var e = 0u; e < p.d_head; e++) {
        squares += z[base + e] * z[base + e];
    }
    let norm = sqrt(squares + FLOOR);
    for (var e = 0u; e < p.d_head; e++) {
        dz[base + e] += p.weight * z[base + e] / norm;
    }
}
