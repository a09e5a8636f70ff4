// A dense layer's bias gradient for the GPU trainer: sums[c] += Σ_r dy[r, c], one invocation per
// column summing the rows in order.
// CPU twin: attn_model::training::backprop::column_sums_add.

struct Params {
    rows: u32,
    d: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> sums: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let c = id.x;
    if (c >= p.d) {
        return;
    }
    var sum = 0.0;
    for (var r = 0u; r < p.rows; r++) {
        sum += dy[r * p.d + c];
    }
    sums[c] += sum;
}
