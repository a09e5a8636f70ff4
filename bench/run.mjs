// Drives bench/bench.html in one headless Chromium (the machine's, through playwright-core) and
// prints each side's median forward time and the ratios the project tracks. bench/run.sh builds
// what it needs first; run that, not this.
//
//   node bench/run.mjs [--quick] [--only MODEL] [--out FILE]
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
};

function serve() {
  const server = createServer(async (request, response) => {
    const path = normalize(decodeURIComponent(new URL(request.url, "http://x").pathname));
    const file = join(root, path);
    try {
      if (!file.startsWith(root) || !(await stat(file)).isFile()) throw new Error("not found");
      response.writeHead(200, {
        "Content-Type": types[extname(file)] ?? "application/octet-stream",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Embedder-Policy": "require-corp",
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
const cpu = ["ours-cpu", "ort-wasm"];
const allRuns = quick
  ? [
      { model: "l4d128", t: 64, threads: 1, sides: cpu, warmup: 2, rounds: 3 },
      { model: "l4d128", t: 256, threads: 1, sides: cpu, warmup: 2, rounds: 3 },
    ]
  : [
      { model: "l4d128", t: 64, threads: 1, sides: cpu, warmup: 4, rounds: 5 },
      { model: "l4d128", t: 64, threads: 2, sides: cpu, warmup: 4, rounds: 5 },
      { model: "l4d128", t: 256, threads: 1, sides: cpu, warmup: 4, rounds: 5 },
      { model: "l4d128", t: 256, threads: 2, sides: cpu, warmup: 4, rounds: 5 },
      { model: "gpt2small", t: 64, threads: 1, sides: cpu, warmup: 6, rounds: 3, per_round: 2 },
      { model: "gpt2small", t: 64, threads: 2, sides: cpu, warmup: 6, rounds: 3, per_round: 2 },
      // WebGPU on a software adapter is slow: few rounds.
      { model: "l4d128", t: 64, threads: 1, sides: gpu, warmup: 4, rounds: 3, per_round: 2 },
    ];

const runs = allRuns.filter((run) => !only || run.model === only);

const server = await serve();
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
    const line = Object.entries(result.sides)
      .map(([name, side]) => `${name} ${side.medianMs.toFixed(2)} ms (|Δ| ${side.maxAbsDiffVsTorch.toExponential(1)})`)
      .join(", ");
    console.log(`${run.model} T=${run.t} threads=${run.threads}: ${line}`);
    const ours = result.sides["ours-cpu"] ?? result.sides["ours-gpu"];
    const theirs = result.sides["ort-wasm"] ?? result.sides["ort-webgpu"];
    if (ours && theirs) {
      console.log(`  speed-up over onnxruntime-web: ${(theirs.medianMs / ours.medianMs).toFixed(2)}×`);
    }
  }
} finally {
  await browser.close();
  server.close();
}
await mkdir(join(outFile, ".."), { recursive: true });
await writeFile(outFile, JSON.stringify({ browser: browser.version?.() ?? null, runs: all }, null, 1));
console.log(`wrote ${outFile}`);
