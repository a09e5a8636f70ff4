// The token embedding's gradient for the GPU trainer: row v of dtable gains every row t of dx
// with tokens[t] = v. One invocation per (column, vocabulary row), summing the positions in
// order, so no two invocations write the same element and the sum is the same every run (WGSL
// has no floating-point atomics).
// CPU twin: attn_model::training::backprop::embedding_backward.

struct Params {
    positions: u32,
    d: u32,
    vocab: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> tokens: array<u32>;
@group(0) @binding(2) var<storage, read> dx: array<f32>;
@group(0) @binding(3) var<storage, read_write> dtable: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let c = id.x;
    let v = id.y;
    if (c >= p.d || v >= p.vocab) {
        return;
    }
    var sum = 0.0;
    var any = false;
    for (var t = 0u; t < p.positions; t++) {
        if (tokens[t] == v) {
            sum += dx[t * p.d + c];
            any = true;
        }
    }
    if (any) {
        dtable[v * p.d + c] += sum;
    }
}
