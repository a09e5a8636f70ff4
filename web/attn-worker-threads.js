// The compute worker built with wasm threads (web/threads), started by the page as a module
// worker where it is cross-origin isolated, with the pool's size as `?threads=N`. Trunk copies
// this file next to index.html; scripts/trunk-threads-worker.sh builds the module it loads.
import init, { initThreadPool, start } from "./attn-worker-threads/attn_worker_threads.js";

const threads = Number(new URL(import.meta.url).searchParams.get("threads")) || 2;
await init();
await initThreadPool(threads);
start();
