//! The WGSL kernels, one module per op family, each an `.rs` + `.wgsl` pair: the Rust side holds
//! the kernel's parameter block (a `#[repr(C)]` twin of the WGSL `Params` struct), its
//! [`kernel::KernelSpec`]s, the workgroup arithmetic and the launch (`push`), and the parity
//! test against its CPU twin. `kernel.rs` is what they share: the spec, the compiled kernel and
//! the per-device cache a plan fetches kernels from.

pub(crate) mod kernel;

// The forward's kernels.
pub(crate) mod attention;
pub(crate) mod copy;
pub(crate) mod embed;
pub(crate) mod features;
pub(crate) mod head_output;
pub(crate) mod matmul;
pub(crate) mod norm;
pub(crate) mod rope;

// The GPU trainer's kernels: LayerNorm's forward keeping its statistics, the steps of the
// backward pass that are not matrix products (those reuse `matmul`, whose strides give the
// transposes and whose accumulate flag sums the gradients) and AdamW. Each matches its CPU twin
// in attn-model's trainer (`layer_norm_keep`, `layer_norm_backward`, `softmax_backward`,
// `linear_weights_backward`, `elu_feature_backward`, `gelu_tanh_grad`, `cross_entropy_backward`,
// `embedding_backward`, `column_sums_add`, `head_norm_backward`, `clip_coefficient` +
// `adamw_update`) on random shapes; `crate::training` runs them as a batch's forward and
// backward and AdamW's update.
pub(crate) mod adamw;
pub(crate) mod column_sums;
pub(crate) mod cross_entropy;
pub(crate) mod elu_backward;
pub(crate) mod embedding_backward;
pub(crate) mod gelu_backward;
pub(crate) mod head_norm_backward;
pub(crate) mod heads;
pub(crate) mod linear_backward;
pub(crate) mod norm_backward;
pub(crate) mod norm_keep;
pub(crate) mod softmax_backward;
