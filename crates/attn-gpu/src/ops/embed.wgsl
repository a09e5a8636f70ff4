// Token (+ learned position) embeddings: x[t, i] = wte[tokens[t], i] (+ wpe[first + t, i]).
// The tokens were checked against the vocabulary on the host. The token table may be 16-bit
// (see `weights.wgsl`): it is bound as raw 32-bit words and widened by `wte_precision`.

struct Params {
    t: u32,
    d: u32,
    // 0 for rotary models, which have no position table (`wpe` is then a placeholder).
    has_positions: u32,
    // 0: f32, 1: f16, 2: bf16.
    wte_precision: u32,
    // The position of row 0 (a decode step embeds one token at the position it decodes).
    first: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> tokens: array<u32>;
@group(0) @binding(2) var<storage, read> wte: array<u32>;
@group(0) @binding(3) var<storage, read> wpe: array<f32>;
@group(0) @binding(4) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let index = gid.x;
    if (index >= p.t * p.d) {
        return;
    }
    let t = index / p.d;
    let i = index % p.d;
    let at = tokens[t] * p.d + i;
    var v = bitcast<f32>(wte[at]);
    if (p.wte_precision == 1u) {
        v = unpack_f16(wte[at >> 1u], at);
    } else if (p.wte_precision == 2u) {
        v = unpack_bf16(wte[at >> 1u], at);
    }
    if (p.has_positions != 0u) {
        v += wpe[index + p.first * p.d];
    }
    x[index] = v;
}
