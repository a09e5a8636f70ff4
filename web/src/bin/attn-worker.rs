//! The compute worker for every browser with wasm SIMD (`simd128`): Trunk builds it as a worker
//! (`index.html`, `data-type="worker"`), and the page spawns it (`controller.rs`) where the
//! browser lacks relaxed SIMD.

fn main() {
    attn_web::compute::run_worker();
}
