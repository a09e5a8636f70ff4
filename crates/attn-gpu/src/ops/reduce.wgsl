
// A row's sum across the workgroup (appended to the kernels that reduce one row per workgroup of
// THREADS = 64 invocations: norm, norm_keep, norm_backward, softmax_backward, linear_backward).
// Every invocation calls it with its partial sum and gets the total; a tree in workgroup memory.

const THREADS: u32 = 64u;

var<workgroup> partial: array<f32, THREADS>;

fn workgroup_sum(value: f32, tid: u32) -> f32 {
    partial[tid] = value;
    workgroupBarrier();
    for (var stride = THREADS / 2u; stride > 0u; stride /= 2u) {
        if (tid < stride) {
            partial[tid] += partial[tid + stride];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}
