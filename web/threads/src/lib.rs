//! The compute worker with wasm threads. `web/attn-worker-threads.js`, a module worker the page
//! starts where it is cross-origin isolated (`worker_build::WorkerBuild`), loads this module,
//! starts rayon's pool (`initThreadPool`: web workers that instantiate the same module on the
//! same shared memory) and then calls [`start`], which runs the same compute worker as
//! `bin/attn-worker.rs`. The CPU engine's matrix products then split across the pool
//! (`attn_model`'s feature `threads`); the worker's own thread waits for them, as a worker may.
#![cfg(target_arch = "wasm32")]

use wasm_bindgen::prelude::wasm_bindgen;

/// `initThreadPool(n)` in JavaScript: starts the pool's `n` threads.
pub use wasm_bindgen_rayon::init_thread_pool;

/// Runs the compute worker on this thread (the module worker's), once the pool is up.
#[wasm_bindgen]
pub fn start() {
    attn_web::compute::run_worker();
}
