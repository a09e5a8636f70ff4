//! Which build of the compute worker the page runs: the same worker compiled three ways (plain
//! wasm SIMD, relaxed SIMD, relaxed SIMD with wasm threads), and how the page picks the fastest
//! one this browser and host allow.

use crate::browser;

/// Which build of the compute worker the page runs: the same worker compiled three ways, the
/// fastest this browser and host allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerBuild {
    /// Plain wasm SIMD: every browser with WebAssembly SIMD (`bin/attn-worker.rs`).
    Simd128,
    /// Relaxed SIMD's fused multiply-add (`bin/attn-worker-relaxed.rs`).
    RelaxedSimd,
    /// Relaxed SIMD and wasm threads: the CPU engine's matrix products split across a pool of
    /// this many threads (`web/threads`), where the page is cross-origin isolated.
    Threads(usize),
}

/// The most threads the threaded worker starts: beyond a few, the small models' products are
/// split finer than a thread hand-off pays for.
const MAX_THREADS: usize = 8;

impl WorkerBuild {
    /// The build for this browser: threads where the page is cross-origin isolated (shared
    /// memory needs it), the machine has more than one core and the browser has relaxed SIMD;
    /// relaxed SIMD where it has that; plain SIMD otherwise. `simd=plain` in the URL
    /// (`plain_simd`) asks for plain SIMD, `threads=1` (`one_thread`) for no threads.
    pub fn pick(plain_simd: bool, one_thread: bool) -> WorkerBuild {
        if plain_simd || !browser::has_relaxed_simd() {
            return WorkerBuild::Simd128;
        }
        let threads = browser::hardware_threads().min(MAX_THREADS);
        if one_thread || threads < 2 || !browser::cross_origin_isolated() {
            return WorkerBuild::RelaxedSimd;
        }
        WorkerBuild::Threads(threads)
    }

    /// The worker's script, next to `index.html`: Trunk writes the first two
    /// (`data-loader-shim`); the threaded one is a module (`attn-worker-threads.js`) that sizes
    /// the pool from its `threads` parameter.
    pub fn script(self) -> String {
        match self {
            WorkerBuild::Simd128 => "./attn-worker_loader.js".into(),
            WorkerBuild::RelaxedSimd => "./attn-worker-relaxed_loader.js".into(),
            WorkerBuild::Threads(n) => format!("./attn-worker-threads.js?threads={n}"),
        }
    }

    /// What the cost panel says of the CPU engine it ran on.
    pub fn describe(self) -> String {
        match self {
            WorkerBuild::Simd128 => "wasm SIMD".into(),
            WorkerBuild::RelaxedSimd => "wasm, relaxed SIMD".into(),
            WorkerBuild::Threads(n) => format!("wasm, relaxed SIMD, {n} threads"),
        }
    }
}
