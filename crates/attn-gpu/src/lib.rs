//! The WebGPU engine: wgpu + WGSL kernels with the same semantics as attn-model's CPU engine.
