// The backward of linear attention's feature map φ(scale · x) = elu(scale · x) + 1, for the GPU
// trainer, element by element: dx = dφ · φ'(scale · x) · scale, φ' = 1 above zero, eˣ below.
// CPU twin: attn_model::training::backprop::elu_feature_backward.

struct Params {
    n: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dphi: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x + id.y * 65535u * 64u;
    if (i >= p.n) {
        return;
    }
    let scaled = p.scale * x[i];
    var slope = 1.0;
    if (scaled <= 0.0) {
        slope = exp(scaled);
    }
    dx[i] = dphi[i] * slope * p.scale;
}
