// The tanh GELU's backward for the GPU trainer, element by element: dpre = dact · gelu'(pre).
// CPU twin: attn_model::training::backprop::gelu_tanh_grad.

struct Params {
    n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> pre: array<f32>;
@group(0) @binding(2) var<storage, read> dact: array<f32>;
@group(0) @binding(3) var<storage, read_write> dpre: array<f32>;

// d/dx of 0.5·x·(1 + tanh(u)), u = √(2/π)·(x + 0.044715·x³); tanh written with exp, as the
// forward's GELU in matmul.wgsl, so every driver gives the same accuracy.
fn gelu_tanh_grad(x: f32) -> f32 {
    let u = 0.7978846 * (x + 0.044715 * x * x * x);
    let th = 1.0 - 2.0 / (exp(2.0 * clamp(u, -20.0, 20.0)) + 1.0);
    return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * 0.7978846 * (1.0 + 3.0 * 0.044715 * x * x);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x + id.y * 65535u * 64u;
    if (i >= p.n) {
        return;
    }
    dpre[i] = dact[i] * gelu_tanh_grad(pre[i]);
}
