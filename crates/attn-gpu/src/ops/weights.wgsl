// 16-bit weights as the GPU engine stores them: two values to a u32, value 2i in the low half
// (`Weights::packed_u32`). Widening is exact for both formats and needs only core WGSL, so it
// works on every adapter. Appended to the kernels that read weights (matmul, embed).

// The f16 value at element `i`, given the word that holds it.
fn unpack_f16(word: u32, i: u32) -> f32 {
    return unpack2x16float(word >> ((i & 1u) * 16u)).x;
}

// The bf16 value at element `i`: bf16 is the top half of an f32.
fn unpack_bf16(word: u32, i: u32) -> f32 {
    return bitcast<f32>(((word >> ((i & 1u) * 16u)) & 0xffffu) << 16u);
}
