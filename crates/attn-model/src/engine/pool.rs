//! Where the CPU engine's forward passes run. In the build with wasm threads (the crate feature
//! `threads` on wasm32, the page's threaded worker) a forward runs on a thread of rayon's pool
//! and the caller awaits it: the products it splits (`gemm_simd128`) then hand one block to the
//! pool's other thread and do the rest themselves, one hand-off per product; called from the
//! worker's own thread, outside the pool, each split would hand off both blocks and put the
//! caller to sleep. Everywhere else a forward runs on the calling thread and the future is
//! ready at once, so `engine::now` still runs it.

/// Runs `work` where the CPU engine computes (module docs) and returns its result.
#[cfg(all(feature = "threads", target_arch = "wasm32"))]
pub async fn run<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = futures_channel::oneshot::channel();
    rayon::spawn(move || {
        // The receiver is gone only if the caller stopped waiting; nothing to tell then.
        let _ = done.send(work());
    });
    result.await.expect("rayon runs every task it is given")
}

/// Runs `work` where the CPU engine computes (module docs) and returns its result.
#[cfg(not(all(feature = "threads", target_arch = "wasm32")))]
pub async fn run<T>(work: impl FnOnce() -> T) -> T {
    work()
}
