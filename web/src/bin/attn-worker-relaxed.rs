//! The compute worker built with the feature `relaxed-simd` (the CPU engine's matrix product with
//! fused multiply-adds): the page spawns it where the browser has relaxed SIMD
//! (`browser::has_relaxed_simd`), `attn-worker` elsewhere.

fn main() {
    attn_web::compute::run_worker();
}
