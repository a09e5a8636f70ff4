// The in-browser half of the benchmark (bench/run.sh drives it through bench/run.mjs).
//
// For one model and sequence length it times, in this one page, the playground's CPU engine (the
// wasm build of attn-model: `ours-cpu` built with relaxed SIMD, as the page runs it where the
// browser has relaxed SIMD, `ours-cpu-simd128`, the build for every other browser, and
// `ours-cpu-threads`, the relaxed build with wasm threads on `threads` threads), its GPU
// engine (WebGPU) and onnxruntime-web's WASM and WebGPU
// execution providers on the same weights, every side reading back the logits and every
// attention map. Each side first runs untimed for `warmup` seconds (V8 tiers wasm up over
// seconds), then the sides take turns for `rounds` rounds of `per_round` forwards each; the
// result is every forward's time. Each side's last-position logits are checked against PyTorch's.
//
// Query: ?model=l4d128&t=64&threads=1&sides=ours-cpu,ours-gpu,ort-wasm,ort-webgpu
//        &warmup=3&rounds=5&per_round=5
import * as ort from "./node_modules/onnxruntime-web/dist/ort.all.min.mjs";
import init, { BenchEngine } from "./pkg/attn_bench.js";
import initRelaxed, { BenchEngine as RelaxedBenchEngine } from "./pkg-relaxed/attn_bench.js";

const query = new URLSearchParams(location.search);
const model = query.get("model") ?? "l4d128";
const tLen = Number(query.get("t") ?? 64);
const threads = Number(query.get("threads") ?? 1);
const sides = (query.get("sides") ?? "ours-cpu,ort-wasm").split(",");
const warmupSeconds = Number(query.get("warmup") ?? 3);
const rounds = Number(query.get("rounds") ?? 5);
const perRound = Number(query.get("per_round") ?? 5);

const log = (line) => {
  document.getElementById("log").textContent += "\n" + line;
};

async function fetchBytes(path) {
  const response = await fetch(path);
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

// A side: { name, forward: async () => Float32Array (last-position logits) }.
async function ourSide(kind, folder, tokens, build = BenchEngine, name = `ours-${kind}`) {
  const config = await (await fetch(`${folder}/config.json`)).text();
  const weights = await fetchBytes(`${folder}/model.safetensors`);
  const engine = await build.load(kind, config, weights);
  const input = Uint32Array.from(tokens);
  return {
    name,
    adapter: engine.describe(),
    forward: () => engine.forward(input),
  };
}

async function ortSide(provider, folder, tokens, vocab) {
  const session = await ort.InferenceSession.create(`${folder}/t${tokens.length}.onnx`, {
    executionProviders: [provider],
    graphOptimizationLevel: "all",
  });
  const feeds = {
    input_ids: new ort.Tensor("int64", BigInt64Array.from(tokens.map(BigInt)), [1, tokens.length]),
  };
  return {
    name: provider === "wasm" ? "ort-wasm" : "ort-webgpu",
    adapter: provider,
    forward: async () => {
      const outputs = await session.run(feeds);
      // Every output comes back to the CPU (the attention maps are read, as the page would).
      let last = null;
      for (const [name, tensor] of Object.entries(outputs)) {
        const data = await tensor.getData();
        if (name === "logits") last = data.slice(data.length - vocab);
      }
      return last;
    },
  };
}

// The build with wasm threads (bench/pkg-threads: `atomics`, relaxed SIMD, rayon's pool of
// `threads` workers), loaded only when a run asks for it: it needs cross-origin isolation.
async function threadedEngine() {
  const threaded = await import("./pkg-threads/attn_bench.js");
  await threaded.default();
  await threaded.initThreadPool(threads);
  return threaded.BenchEngine;
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function main() {
  ort.env.wasm.numThreads = threads;
  ort.env.wasm.wasmPaths = new URL("./node_modules/onnxruntime-web/dist/", location.href).href;
  await init();
  await initRelaxed();
  const folder = `models/${model}`;
  const expected = await (await fetch(`${folder}/t${tLen}.expected.json`)).json();
  const tokens = expected.tokens;
  const vocab = expected.last_logits.length;
  const built = [];
  for (const side of sides) {
    log(`loading ${side}`);
    if (side === "ours-cpu") built.push(await ourSide("cpu", folder, tokens, RelaxedBenchEngine));
    else if (side === "ours-cpu-simd128") built.push(await ourSide("cpu", folder, tokens, BenchEngine, side));
    else if (side === "ours-cpu-threads") built.push(await ourSide("cpu", folder, tokens, await threadedEngine(), side));
    else if (side === "ours-gpu") built.push(await ourSide("gpu", folder, tokens));
    else if (side === "ort-wasm") built.push(await ortSide("wasm", folder, tokens, vocab));
    else if (side === "ort-webgpu") built.push(await ortSide("webgpu", folder, tokens, vocab));
    else throw new Error(`unknown side ${side}`);
  }
  const results = {
    model,
    t: tLen,
    threads,
    crossOriginIsolated: self.crossOriginIsolated,
    userAgent: navigator.userAgent,
    sides: {},
  };
  for (const side of built) {
    // Correctness first: the same numbers as PyTorch, or the timing means nothing.
    const logits = await side.forward();
    let maxDiff = 0;
    for (let i = 0; i < vocab; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(logits[i] - expected.last_logits[i]));
    }
    results.sides[side.name] = { adapter: side.adapter, maxAbsDiffVsTorch: maxDiff, times: [] };
    log(`${side.name}: max |Δ logits| vs PyTorch ${maxDiff.toExponential(2)}; warming up`);
    const until = performance.now() + warmupSeconds * 1000;
    let warm = 0;
    while (performance.now() < until || warm < 2) {
      await side.forward();
      warm++;
    }
    results.sides[side.name].warmupForwards = warm;
  }
  for (let round = 0; round < rounds; round++) {
    for (const side of built) {
      for (let i = 0; i < perRound; i++) {
        const start = performance.now();
        await side.forward();
        results.sides[side.name].times.push(performance.now() - start);
      }
    }
    log(`round ${round + 1}/${rounds}`);
  }
  for (const side of Object.values(results.sides)) side.medianMs = median(side.times);
  log(JSON.stringify(results));
  window.benchResults = results;
}

main().catch((error) => {
  log(`error: ${error?.stack ?? error}`);
  window.benchResults = { error: String(error?.message ?? error) };
});
