// A strided block copy: `rows × cols` values from `src` to `dst`, each side with its own start
// and row stride (in f32s). The engine's hook points use it to capture an activation into a
// buffer of its own and to put a replacement in place of a computed one.

struct Params {
    rows: u32,
    cols: u32,
    src_start: u32,
    src_stride: u32,
    dst_start: u32,
    dst_stride: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let index = gid.x;
    if (index >= p.rows * p.cols) {
        return;
    }
    let row = index / p.cols;
    let col = index % p.cols;
    dst[p.dst_start + row * p.dst_stride + col] = src[p.src_start + row * p.src_stride + col];
}
