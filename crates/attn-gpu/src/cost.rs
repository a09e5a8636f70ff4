//! The theoretical cost of a forward pass, for the benchmarks and the app's cost panel.

use attn_model::{Kernel, KernelName, PreparedModel};

/// Floating-point operations in the matrix products of one forward over `t_len` tokens under
/// the prepared variant, counting a multiply-add as 2: the Q/K/V/O projections, `Q·Kᵀ`, `P·V`,
/// the feature products of linear and random-feature attention, the MLPs, and the output
/// projection over every position. Elementwise work (norms, rotary positions, softmax, activations) is left out; it is
/// `O(T·d)` per layer against the products' `O(T·d²)`.
///
/// Both engines do this much work; the GPU engine's `ForwardStats::flops` counts the same
/// products launch by launch (and fewer when only the last logits are read).
pub fn forward_flops(prepared: &PreparedModel, t_len: usize) -> u64 {
    let c = &prepared.config;
    let t = t_len as u64;
    let d = c.d_model as u64;
    let (heads, kv_heads, d_head) = (c.n_head as u64, c.kv_heads() as u64, c.d_head() as u64);
    let m = prepared.n_random_features() as u64;
    let mm = |m: u64, n: u64, k: u64| 2 * m * n * k;
    let mut total = 0;
    for layer in 0..c.n_layer {
        if !prepared.attention_dropped[layer] {
            total += mm(t, heads * d_head, d) + 2 * mm(t, kv_heads * d_head, d);
            total += heads * (mm(t, t, d_head) + mm(t, d_head, t));
            total += match prepared.variant.kernel() {
                Kernel::Named(KernelName::Softmax) => 0,
                Kernel::Named(KernelName::Linear) => heads * mm(t, t, d_head),
                Kernel::RandomFeatures { .. } => heads * (2 * mm(t, m, d_head) + mm(t, t, m)),
            };
            total += mm(t, d, heads * d_head);
        }
        if c.mlp {
            // Up and down projections, and the gate of a gated MLP.
            let products = if c.gated_mlp { 3 } else { 2 };
            total += products * mm(t, c.mlp_width() as u64, d);
        }
    }
    total + mm(t, c.n_out() as u64, d)
}
