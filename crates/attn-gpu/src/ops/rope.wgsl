// Rotary position embeddings, in place, in Hugging Face's "rotate half" convention: in every
// head of row t, dimensions i and i + half (i < half) are rotated by the angle of (t, i):
//   (a, b) -> (a·cos − b·sin, b·cos + a·sin).
// Dimensions past 2·half (GPT-NeoX's partial rotary) are not touched. The angles' cosines and
// sines come from a table computed on the host in f64: cos at [t·half + i], sin after all the
// cosines, at [positions·half + t·half + i]. Row t holds position `first + t` (a decode step
// rotates one row at the position it decodes).

struct Params {
    t: u32,
    heads: u32,
    d_head: u32,
    half: u32,
    // Offset of the sines in the table (positions · half).
    sin_offset: u32,
    // The position of row 0.
    first: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> table: array<f32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let index = gid.x;
    if (index >= p.t * p.heads * p.half) {
        return;
    }
    let i = index % p.half;
    let head = (index / p.half) % p.heads;
    let t = index / (p.half * p.heads);
    let base = t * p.heads * p.d_head + head * p.d_head;
    let angle = (t + p.first) * p.half + i;
    let c = table[angle];
    let s = table[p.sin_offset + angle];
    let a = x[base + i];
    let b = x[base + i + p.half];
    x[base + i] = a * c - b * s;
    x[base + i + p.half] = b * c + a * s;
}
