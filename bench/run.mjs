// Drives bench/bench.html in one headless Chromium (the machine's, through playwright-core) and
// prints each side's median forward time and the ratios the project tracks; then opens the app
// itself (dist/) on every built-in model and on the L4 d128 model at T=64 and times input →
// repaint. bench/run.sh builds what it needs first; run that, not this.
//
//   node bench/run.mjs [--quick] [--only MODEL|engines|cpu|gpu|page] [--out FILE]
//
// A local server gives the page the two headers that make it cross-origin isolated, which
// onnxruntime-web needs for more than one thread (and which a static host must send for the
// same; docs/HOSTING.md).
import { createServer } from "node:http";
import { readFile, stat, writeFile, mkdir } from "node:fs/promises";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = fileURLToPath(new URL(".", import.meta.url));
const dist = join(root, "..", "dist");
const args = process.argv.slice(2);
const quick = args.includes("--quick");
const onlyIndex = args.indexOf("--only");
const only = onlyIndex >= 0 ? args[onlyIndex + 1] : null;
const outIndex = args.indexOf("--out");
const outFile = outIndex >= 0 ? args[outIndex + 1] : join(root, "results", "latest.json");

const types = {
  ".html": "text/html",
  ".js": "text/javascript",
  ".mjs": "text/javascript",
  ".wasm": "application/wasm",
  ".json": "application/json",
  ".css": "text/css",
  ".svg": "image/svg+xml",
};

// Serves `folder`; `isolated` adds the two headers that make a page cross-origin isolated.
// The app is served without them, as from a plain static host.
function serve(folder, isolated) {
  const server = createServer(async (request, response) => {
    let path = normalize(decodeURIComponent(new URL(request.url, "http://x").pathname));
    if (path.endsWith("/")) path += "index.html";
    const file = join(folder, path);
    try {
      if (!file.startsWith(folder) || !(await stat(file)).isFile()) throw new Error("not found");
      response.writeHead(200, {
        "Content-Type": types[extname(file)] ?? "application/octet-stream",
        ...(isolated
          ? {
              "Cross-Origin-Opener-Policy": "same-origin",
              "Cross-Origin-Embedder-Policy": "require-corp",
            }
          : {}),
      });
      response.end(await readFile(file));
    } catch {
      response.writeHead(404);
      response.end();
    }
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

// Each run is one page load: onnxruntime-web fixes its thread count when its wasm starts.
const gpu = ["ours-gpu", "ort-webgpu"];
const cpu = ["ours-cpu", "ours-cpu-simd128", "ort-wasm"];
// With 2 threads, the build with wasm threads too.
const cpuThreads = ["ours-cpu-threads", "ours-cpu", "ort-wasm"];
const allRuns = quick
  ? [
      { model: "l4d128", t: 64, threads: 1, sides: cpu, warmup: 2, rounds: 3 },
      { model: "l4d128", t: 256, threads: 1, sides: cpu, warmup: 2, rounds: 3 },
    ]
  : [
      { model: "l4d128", t: 64, threads: 1, sides: cpu, warmup: 4, rounds: 5 },
      { model: "l4d128", t: 64, threads: 2, sides: cpuThreads, warmup: 4, rounds: 5 },
      { model: "l4d128", t: 256, threads: 1, sides: cpu, warmup: 4, rounds: 5 },
      { model: "l4d128", t: 256, threads: 2, sides: cpuThreads, warmup: 4, rounds: 5 },
      { model: "gpt2small", t: 64, threads: 1, sides: cpu, warmup: 6, rounds: 3, per_round: 2 },
      { model: "gpt2small", t: 64, threads: 2, sides: cpuThreads, warmup: 6, rounds: 3, per_round: 2 },
      // WebGPU on a software adapter is slow: few rounds.
      { model: "l4d128", t: 64, threads: 1, sides: gpu, warmup: 4, rounds: 3, per_round: 2 },
    ];

const runs = allRuns.filter(
  (run) =>
    !only ||
    only === "engines" ||
    run.model === only ||
    (only === "gpu" && run.sides === gpu) ||
    (only === "cpu" && (run.sides === cpu || run.sides === cpuThreads)),
);

const server = await serve(root, true);
const base = `http://127.0.0.1:${server.address().port}/bench.html`;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: [
    "--no-sandbox",
    "--disable-gpu-sandbox",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--enable-unsafe-webgpu",
  ],
});
const all = [];
const pageResults = [];

// The page-level figure: input event → repaint in the app itself, on the CPU engine. Every
// built-in model with its first example input, then the L4 d128 model above picked from disk in
// the file input with 64 token ids (it has no tokenizer), then a model of 32 × 32 heads, as it
// opens (its first 4 layers on screen, their maps read back) and with every layer on screen.
const index = JSON.parse(await readFile(join(dist, "models", "index.json"), "utf8"));
const builtIn = index.models.map((m) => ({ id: m.id, prompt: m.example_inputs[0] }));
const pageModels = [
  ...builtIn,
  { id: "l4d128", files: ["config.json", "model.safetensors"], tokens: 64, layers: 4 },
  // The same with the worker every browser without relaxed SIMD runs.
  { id: "l4d128", files: ["config.json", "model.safetensors"], tokens: 64, layers: 4, simd: "plain" },
  // 256 tokens: more cells a side than a grid cell has pixels, so the grid gets thumbnails.
  { id: "l4d128", files: ["config.json", "model.safetensors"], tokens: 256, layers: 4 },
  { id: "l32h32", files: ["config.json", "model.safetensors"], tokens: 64, layers: 32, heads: 32, everyLayer: true },
].filter((m) => !only || only === "page" || m.id === only);

// In the page: flips β between 1.5 and 2 and times each change from its input event to the
// first frame after the new result is in the page (the cost panel's data-results counts the
// results shown; after that frame's callbacks the heatmaps are drawn). Time-based warm-up, then
// `rounds` changes. Also reads the worker's own forward time of each.
async function measureInPage({ warmupMs, rounds }) {
  const panel = document.querySelector("[data-testid=cost-panel]");
  const beta = document.querySelector("[data-testid=beta]");
  const shown = () => Number(panel.dataset.results ?? 0);
  const forwardMs = () => Number(document.querySelector("[data-testid=forward-ms]").textContent);
  const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  let flip = 0;
  const change = () =>
    new Promise((resolve, reject) => {
      const before = shown();
      const observer = new MutationObserver(() => {
        if (shown() > before) {
          const landed = performance.now() - start;
          observer.disconnect();
          clearTimeout(timer);
          requestAnimationFrame(() =>
            setTimeout(() => resolve({ landed, painted: performance.now() - start }), 0),
          );
        }
      });
      const timer = setTimeout(() => {
        observer.disconnect();
        reject(new Error("no result 60 s after the input"));
      }, 60_000);
      observer.observe(panel, { attributes: true, attributeFilter: ["data-results"] });
      flip ^= 1;
      const start = performance.now();
      beta.value = flip ? "1.5" : "2";
      beta.dispatchEvent(new Event("input", { bubbles: true }));
    });
  const warmEnd = performance.now() + warmupMs;
  while (performance.now() < warmEnd) {
    await change();
    await pause(20);
  }
  const repaint = [];
  const landed = [];
  const forward = [];
  for (let i = 0; i < rounds; i++) {
    const times = await change();
    repaint.push(times.painted);
    landed.push(times.landed);
    forward.push(forwardMs());
    await pause(20);
  }
  return { repaint, landed, forward };
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function timeThePage(browser) {
  const appServer = await serve(dist, false);
  const app = `http://127.0.0.1:${appServer.address().port}/`;
  try {
    for (const model of pageModels) {
      try {
        pageResults.push(await timeOnePage(browser, app, model));
      } catch (error) {
        // One model that fails leaves the others' figures (and says why).
        console.error(`page ${model.id}: ${error.message.split("\n")[0]}`);
        pageResults.push({ model: model.id, error: error.message });
      }
      await save();
    }
  } finally {
    appServer.close();
  }
}

async function timeOnePage(browser, app, model) {
  const page = await browser.newPage();
  try {
    page.on("console", (message) => {
      if (message.type() === "error") console.error(`  page: ${message.text()}`);
    });
    const ready = (n) =>
      page.waitForFunction(
        (n) =>
          Number(document.querySelector("[data-testid=cost-panel]")?.dataset.results ?? 0) >= n &&
          document.querySelectorAll("[data-testid=heatmap-cell]").length > 0,
        n,
        { timeout: 5 * 60_000 },
      );
    if (model.files) {
      await page.goto(`${app}?engine=cpu${model.simd ? `&simd=${model.simd}` : ""}`);
      await page.waitForSelector("#model-files", { state: "attached" });
      await page.setInputFiles(
        "#model-files",
        model.files.map((f) => join(root, "models", model.id, f)),
      );
      await page.waitForFunction(
        (layers) =>
          document.querySelector(".model-panel .facts")?.textContent.includes(`${layers} layers`),
        model.layers,
        { timeout: 5 * 60_000 },
      );
      const ids = Array.from({ length: model.tokens }, (_, i) => (i * 7) % 80).join(" ");
      await page.fill("[data-testid=prompt-input]", ids);
      await page.waitForFunction(
        (n) => document.querySelectorAll("[data-testid=token-chips] .chip").length === n,
        model.tokens,
        { timeout: 60_000 },
      );
    } else {
      const query = new URLSearchParams({ model: model.id, engine: "cpu", prompt: model.prompt });
      await page.goto(`${app}?${query}`);
    }
    await ready(1);
    const tokens = await page.evaluate(
      () => document.querySelectorAll("[data-testid=token-chips] .chip").length,
    );
    const measure = async (label) => {
      const { repaint, landed, forward } = await page.evaluate(measureInPage, {
        warmupMs: quick ? 1000 : 3000,
        rounds: quick ? 7 : 21,
      });
      const mapsRead = await page.evaluate(
        () => document.querySelector("[data-testid=maps-read]")?.textContent ?? "every map",
      );
      const result = {
        model: label,
        tokens,
        mapsRead,
        repaintMs: median(repaint),
        landedMs: median(landed),
        forwardMs: median(forward),
        allRepaintMs: repaint,
      };
      console.log(
        `page ${label} (${tokens} tokens; ${mapsRead}): input → repaint ${result.repaintMs.toFixed(1)} ms ` +
          `(result in the page after ${result.landedMs.toFixed(1)} ms), ` +
          `forward in the worker ${result.forwardMs.toFixed(1)} ms ` +
          `(${(result.repaintMs / result.forwardMs).toFixed(2)}×)`,
      );
      return result;
    };
    const label = model.simd ? `${model.id} (simd=${model.simd})` : model.tokens === 256 ? `${model.id} (256 tokens)` : model.id;
    const result = await measure(label);
    if (!model.everyLayer) return result;
    // Every layer on screen: every map read back, sent and drawn.
    pageResults.push(result);
    await page.fill("[data-testid=layers-to]", String(model.layers - 1));
    await page.dispatchEvent("[data-testid=layers-to]", "change");
    await page.waitForFunction(
      (n) =>
        !document.querySelector("[data-testid=maps-read]")?.textContent.includes("(layers") &&
        document.querySelectorAll("[data-testid=heatmap-cell]").length === n,
      model.layers * model.heads,
      { timeout: 5 * 60_000 },
    );
    return await measure(`${model.id} (every layer on screen)`);
  } catch (error) {
    const shown = await page
      .evaluate(() =>
        [...document.querySelectorAll(".error, .notice, .loading")].map((e) => e.textContent).join(" | "),
      )
      .catch(() => "");
    throw new Error(`${error.message.split("\n")[0]}; the page says: ${shown || "nothing"}`);
  } finally {
    await page.close();
  }
}

// Writes what has been measured so far, so a run that stops early still leaves its figures.
async function save() {
  await mkdir(join(outFile, ".."), { recursive: true });
  await writeFile(
    outFile,
    JSON.stringify({ browser: browser.version?.() ?? null, runs: all, page: pageResults }, null, 1),
  );
}

try {
  for (const run of runs) {
    const query = new URLSearchParams({
      model: run.model,
      t: run.t,
      threads: run.threads,
      sides: run.sides.join(","),
      warmup: run.warmup,
      rounds: run.rounds,
      per_round: run.per_round ?? 5,
    });
    const page = await browser.newPage();
    page.on("console", (message) => {
      if (message.type() === "error") console.error(`  page: ${message.text()}`);
    });
    await page.goto(`${base}?${query}`);
    await page.waitForFunction(() => window.benchResults, null, { timeout: 20 * 60_000 });
    const result = await page.evaluate(() => window.benchResults);
    await page.close();
    if (result.error) throw new Error(`${run.model} T=${run.t}: ${result.error}`);
    all.push(result);
    await save();
    const line = Object.entries(result.sides)
      .map(([name, side]) => `${name} ${side.medianMs.toFixed(2)} ms (|Δ| ${side.maxAbsDiffVsTorch.toExponential(1)})`)
      .join(", ");
    console.log(`${run.model} T=${run.t} threads=${run.threads}: ${line}`);
    const ours = result.sides["ours-cpu"] ?? result.sides["ours-gpu"];
    const theirs = result.sides["ort-wasm"] ?? result.sides["ort-webgpu"];
    if (ours && theirs) {
      console.log(`  speed-up over onnxruntime-web: ${(theirs.medianMs / ours.medianMs).toFixed(2)}×`);
    }
    const threaded = result.sides["ours-cpu-threads"];
    if (threaded && theirs) {
      console.log(
        `  with ${run.threads} threads: ${(theirs.medianMs / threaded.medianMs).toFixed(2)}× onnxruntime-web on as many, ` +
          `${(ours.medianMs / threaded.medianMs).toFixed(2)}× our one thread`,
      );
    }
    const plain = result.sides["ours-cpu-simd128"];
    if (plain && theirs) {
      console.log(`  without relaxed SIMD: ${(theirs.medianMs / plain.medianMs).toFixed(2)}×`);
    }
  }
  if (pageModels.length > 0) {
    await timeThePage(browser);
  }
} finally {
  await save();
  await browser.close();
  server.close();
}
console.log(`wrote ${outFile}`);
