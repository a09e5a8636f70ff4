//! The built app in a real headless Chromium: it loads, shows every head, reacts to the controls,
//! keeps its state in the URL, and says which engine runs. Screenshots land in tests/artifacts/.

use std::time::Duration;

use attn_e2e::{dist_dir, Browser, StaticServer, WebGpu};
use serde_json::Value;

const LOAD: Duration = Duration::from_secs(90);

fn open(webgpu: WebGpu, query: &str) -> (StaticServer, Browser) {
    let server = StaticServer::start(dist_dir());
    let browser = Browser::start(webgpu);
    browser.goto(&server.url(&format!("index.html{query}")));
    (server, browser)
}

/// Waits until the page shows a model's heatmap grid with its first output, and returns the
/// number of cells.
fn wait_for_grid(b: &Browser) -> usize {
    let cells = b.wait_for(
        "the heatmap grid",
        "const cells = document.querySelectorAll('[data-testid=heatmap-cell]');
         const top = document.querySelector('[data-testid=output-topk-current] li');
         return cells.length > 0 && top ? cells.length : 0;",
        LOAD,
    );
    cells.as_u64().unwrap() as usize
}

/// Opens the page with WebGPU on and waits for the first model's grid; returns the cell count.
fn open_loaded(query: &str) -> (StaticServer, Browser, usize) {
    assert!(models_listed(), "static/models/index.json lists no model");
    let (server, browser) = open(WebGpu::Enabled, query);
    let cells = wait_for_grid(&browser);
    (server, browser, cells)
}

fn top1(b: &Browser) -> String {
    b.eval("return document.querySelector('[data-testid=output-topk-current] li').textContent")
        .as_str()
        .unwrap()
        .to_string()
}

fn topk_text(b: &Browser) -> String {
    b.eval("return document.querySelector('[data-testid=output-topk-current]').textContent")
        .as_str()
        .unwrap()
        .to_string()
}

fn models_listed() -> bool {
    let index = std::fs::read_to_string(dist_dir().join("models/index.json")).unwrap_or_default();
    let v: Value = serde_json::from_str(&index).unwrap_or(Value::Null);
    v["models"].as_array().is_some_and(|m| !m.is_empty())
}

#[test]
fn the_page_renders_and_names_its_engine() {
    let (_server, b) = open(WebGpu::Enabled, "");
    // index.html has no heading: this one was rendered by the wasm app.
    let title = b.wait_for(
        "the title rendered by the app",
        "const t = document.querySelector('[data-testid=app-title]'); return t && t.textContent",
        LOAD,
    );
    assert_eq!(title, "Attention Playground");
    // Chromium's WebGPU answers (SwiftShader on a machine without a GPU): the GPU path is
    // testable here, whatever engine the app then picks.
    let adapter = b.eval(
        "return (async () => {
            if (!navigator.gpu) return {error: 'navigator.gpu is missing'};
            const a = await navigator.gpu.requestAdapter();
            if (!a) return {error: 'requestAdapter() returned null'};
            const i = a.info || {};
            return {vendor: i.vendor, architecture: i.architecture, device: i.device,
                    description: i.description,
                    fallback: !!(a.isFallbackAdapter || i.isFallbackAdapter),
                    features: [...a.features].sort()};
         })()",
    );
    println!("WebGPU adapter: {adapter}");
    assert!(adapter["error"].is_null(), "no WebGPU adapter: {adapter}");
    let badge = b.wait_for(
        "the engine badge",
        "const t = document.querySelector('[data-testid=engine-badge]').textContent;
         return t.includes('Checking') ? '' : t",
        LOAD,
    );
    let badge = badge.as_str().unwrap();
    // SwiftShader is a fallback adapter: the badge names it and says the CPU engine runs.
    assert!(
        badge.contains("WebGPU adapter") || badge.contains("CPU"),
        "badge: {badge}"
    );
    b.screenshot("01-loaded");
}

#[test]
fn every_head_is_drawn_and_ablation_lives_in_the_url() {
    assert!(
        models_listed(),
        "static/models/index.json lists no model, so there is nothing to show"
    );
    let (_server, b) = open(WebGpu::Enabled, "");
    let cells = wait_for_grid(&b);
    let (layers, heads) = {
        let v = b.eval(
            "const c = [...document.querySelectorAll('[data-testid=heatmap-cell]')];
             return [Math.max(...c.map(e => +e.dataset.layer)) + 1, Math.max(...c.map(e => +e.dataset.head)) + 1]",
        );
        (
            v[0].as_u64().unwrap() as usize,
            v[1].as_u64().unwrap() as usize,
        )
    };
    assert_eq!(cells, layers * heads, "one map per layer × head");
    // Every canvas has been painted with more than one colour.
    let painted = b.wait_for(
        "painted heatmaps",
        "return [...document.querySelectorAll('[data-testid=heatmap-cell] canvas')].every(c => {
            if (c.width < 2) return false;
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            const first = d.slice(0, 3).join();
            for (let i = 4; i < d.length; i += 4) if (d.slice(i, i + 3).join() !== first) return true;
            return false;
         })",
        LOAD,
    );
    assert_eq!(painted, Value::Bool(true));
    // The built-in task models say what the right answer is and whether the model gives it.
    let check = b.wait_for(
        "the task check",
        "const e = document.querySelector('[data-testid=task-check]'); return e ? e.textContent : ''",
        LOAD,
    );
    let check = check.as_str().unwrap();
    assert!(
        check.contains("Right answer") && check.contains('✓'),
        "{check}"
    );
    b.screenshot("02-grid");

    // Ablate the last layer's last head (the induction model's induction head): the output and
    // the URL change.
    let before = topk_text(&b);
    b.eval(&format!(
        "document.querySelector('[data-testid=heatmap-cell][data-layer=\"{}\"][data-head=\"{}\"] [data-testid=ablate-toggle]').click()",
        layers - 1,
        heads - 1
    ));
    b.wait_for(
        "the ablated cell",
        &format!(
            "return document.querySelector('[data-testid=heatmap-cell][data-layer=\"{}\"][data-head=\"{}\"]').dataset.ablated === 'true'",
            layers - 1,
            heads - 1
        ),
        LOAD,
    );
    let url = b.url();
    assert!(
        url.contains(&format!("ablate={}.{}", layers - 1, heads - 1)),
        "url: {url}"
    );
    b.wait_for(
        "a changed output",
        &format!(
            "return document.querySelector('[data-testid=output-topk-current]').textContent !== {}",
            serde_json::to_string(&before).unwrap()
        ),
        LOAD,
    );
    let kl = b.eval("return document.querySelector('[data-testid=kl]').textContent");
    assert!(!kl.as_str().unwrap_or("").starts_with("0.0000"), "KL {kl}");
    b.screenshot("03-ablated");

    // Reloading the URL restores the ablation.
    b.refresh();
    wait_for_grid(&b);
    b.wait_for(
        "the ablation restored from the URL",
        &format!(
            "return document.querySelector('[data-testid=heatmap-cell][data-layer=\"{}\"][data-head=\"{}\"]').dataset.ablated === 'true'",
            layers - 1,
            heads - 1
        ),
        LOAD,
    );
    assert_ne!(topk_text(&b), before);
}

#[test]
fn kv_groups_change_the_kv_cache_bytes() {
    let (_server, b, _) = open_loaded("");
    let bytes = |b: &Browser| -> u64 {
        b.eval("return document.querySelector('[data-testid=kv-bytes]').textContent")
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let before = bytes(&b);
    let options = b.eval(
        "return [...document.querySelectorAll('[data-testid=kv-groups] option')].map(o => o.value)",
    );
    let options: Vec<String> = serde_json::from_value(options).unwrap();
    if options.len() < 2 {
        panic!("the first model has a single key/value head; pick a multi-head model first in index.json");
    }
    b.eval(
        "const s = document.querySelector('[data-testid=kv-groups]');
         s.value = '1'; s.dispatchEvent(new Event('change', {bubbles: true}));",
    );
    b.wait_for(
        "fewer KV bytes",
        &format!("return +document.querySelector('[data-testid=kv-bytes]').textContent < {before}"),
        LOAD,
    );
    assert!(b.url().contains("kv_groups=1"));
    b.screenshot("04-mqa");
}

#[test]
fn the_gpu_engine_and_both_cpu_workers_give_the_same_prediction() {
    assert!(models_listed(), "static/models/index.json lists no model");
    // `engine=gpu` runs the WebGPU engine even on SwiftShader (which the page otherwise skips
    // because the CPU engine is faster there), so the GPU path of the page is what runs here.
    let (_server, with_gpu) = open(WebGpu::Enabled, "?engine=gpu");
    wait_for_grid(&with_gpu);
    println!("{}", engine_used(&with_gpu, "GPU"));
    let badge =
        with_gpu.eval("return document.querySelector('[data-testid=engine-badge]').textContent");
    let badge = badge.as_str().unwrap();
    assert!(
        badge.contains("WebGPU adapter") && badge.contains("GPU engine"),
        "badge: {badge}"
    );
    let expected = top1(&with_gpu);
    with_gpu.screenshot("05-gpu-engine");
    drop(with_gpu);

    let (_server2, b) = open(WebGpu::Disabled, "");
    wait_for_grid(&b);
    let badge = b.wait_for(
        "the CPU fallback badge",
        "const t = document.querySelector('[data-testid=engine-badge]').textContent;
         return t.includes('CPU fallback') ? t : ''",
        LOAD,
    );
    assert!(badge.as_str().unwrap().contains("CPU fallback"));
    // Chromium has relaxed SIMD: the page runs the worker built with it.
    let used = engine_used(&b, "CPU");
    assert!(used.contains("CPU engine (wasm, relaxed SIMD)"), "{used}");
    assert_eq!(top1(&b), expected);
    b.screenshot("05-cpu-fallback");
    drop(b);

    // `simd=plain`: the worker every other browser runs (plain wasm SIMD), same prediction.
    let (_server3, plain) = open(WebGpu::Disabled, "?simd=plain");
    wait_for_grid(&plain);
    let used = engine_used(&plain, "CPU");
    assert!(used.contains("CPU engine (wasm SIMD)"), "{used}");
    assert_eq!(top1(&plain), expected);
}

/// Waits for a result from the engine whose name `engine` (`GPU` or `CPU`) is in the cost panel's
/// "on the … engine", and returns that text.
fn engine_used(b: &Browser, engine: &str) -> String {
    b.wait_for(
        &format!("a result from the {engine} engine"),
        &format!(
            "const e = document.querySelector('[data-testid=engine-used]');
             return e && e.textContent.includes('{engine}') ? e.textContent : ''"
        ),
        LOAD,
    )
    .as_str()
    .unwrap()
    .to_string()
}

/// The KL figure of the cost panel, in nats.
fn kl(b: &Browser) -> f64 {
    let text = b.eval("return document.querySelector('[data-testid=kl]').textContent");
    text.as_str()
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Sets a control's value as a person would (input and change events) and returns once the
/// page shows a result that differs from the baseline and the URL carries `url_part`.
fn change_control(b: &Browser, testid: &str, value: &str, url_part: &str) {
    b.set_value(testid, value);
    b.wait_for(
        &format!("a result that differs from the baseline after {testid} = {value}"),
        "const k = document.querySelector('[data-testid=kl]').textContent;
         return k !== '' && !k.startsWith('0.0000')",
        LOAD,
    );
    let url = b.url();
    assert!(url.contains(url_part), "{testid} = {value}: url {url}");
}

/// Presses reset and waits for the baseline to come back.
fn reset(b: &Browser) {
    b.eval("document.querySelector('[data-testid=reset]').click()");
    b.wait_for(
        "the baseline after reset",
        "return document.querySelector('[data-testid=kl]').textContent.startsWith('0.0000')",
        LOAD,
    );
    assert!(
        !b.url().contains("window="),
        "reset leaves the URL clean: {}",
        b.url()
    );
}

#[test]
fn the_routing_proxy_changes_a_language_models_output_and_the_url() {
    // On the induction model each token's largest head is the one that matters, so routing to
    // one head per token changes nothing there; the Shakespeare model spreads its work.
    let (_server, b, _) = open_loaded("?model=shakespeare&engine=cpu");
    change_control(&b, "route-heads", "1", "route=1");
    let label = b.eval("return document.querySelector('label[for=route-heads]').textContent");
    assert!(
        label.as_str().unwrap().contains("routing proxy, untrained"),
        "{label}"
    );
    reset(&b);
}

#[test]
fn every_variant_control_changes_the_output_and_the_url() {
    let (_server, b, _) = open_loaded("");
    assert_eq!(kl(&b), 0.0, "the page opens on the baseline");
    let baseline = topk_text(&b);

    change_control(&b, "window", "1", "window=1");
    b.screenshot("07-window-1");
    // The URL alone reproduces the view.
    let url = b.url();
    b.goto(&url);
    wait_for_grid(&b);
    b.wait_for(
        "the window restored from the URL",
        "return document.querySelector('[data-testid=window]').value === '1' &&
                !document.querySelector('[data-testid=kl]').textContent.startsWith('0.0000')",
        LOAD,
    );
    reset(&b);
    assert_eq!(
        topk_text(&b),
        baseline,
        "reset gives the baseline output back"
    );

    // The β slider is log₂ β.
    change_control(&b, "beta", "3", "beta=8");
    reset(&b);
    change_control(&b, "top-k", "1", "top_k=1");
    reset(&b);
    change_control(&b, "kernel", "linear", "kernel=linear");
    b.screenshot("08-linear-kernel");
    reset(&b);
    change_control(&b, "kernel", "random_features", "kernel=rf");
    reset(&b);
    change_control(&b, "kv-pca", "1", "kv_pca=1");
    let legend = b.eval("return document.querySelector('[data-testid=kv-contents]').textContent");
    assert!(
        legend.as_str().unwrap().contains("1 of 32 PCA components"),
        "the KV meter says what is cached: {legend}"
    );
    reset(&b);

    // Dropping a layer's attention.
    b.eval("document.querySelector('[data-testid=drop-layer][data-layer=\"0\"]').click()");
    b.wait_for(
        "a changed output after dropping layer 0",
        "return !document.querySelector('[data-testid=kl]').textContent.startsWith('0.0000')",
        LOAD,
    );
    assert!(b.url().contains("drop=0"), "url: {}", b.url());
    reset(&b);
}

#[test]
fn head_importance_ranks_every_head_and_prunes_to_a_budget() {
    let (_server, b, cells) = open_loaded("");
    b.eval("document.querySelector('[data-testid=rank-heads]').click()");
    let ranked = b.wait_for(
        "a ranking of every head",
        "return document.querySelectorAll('[data-testid=importance] li').length",
        LOAD,
    );
    assert_eq!(ranked.as_u64().unwrap() as usize, cells);
    b.eval(
        "const e = document.querySelector('[data-testid=prune-budget]');
         e.value = '1'; e.dispatchEvent(new Event('input', {bubbles: true}));
         document.querySelector('[data-testid=prune]').click();",
    );
    let ablated = b.wait_for(
        "all heads but one ablated",
        "return document.querySelectorAll('[data-testid=heatmap-cell][data-ablated=true]').length",
        LOAD,
    );
    assert_eq!(ablated.as_u64().unwrap() as usize, cells - 1);
    assert!(b.url().contains("ablate="), "url: {}", b.url());
    b.screenshot("09-pruned");
}

#[test]
fn the_enlarged_map_exports_as_png_and_json() {
    let (_server, b, _) = open_loaded("");
    b.eval("document.querySelector('[data-testid=heatmap-cell] canvas').click()");
    b.wait_for(
        "the enlarged map",
        "return !!document.querySelector('[data-testid=focus-view]')",
        LOAD,
    );
    assert!(b.url().contains("focus=0.0"), "url: {}", b.url());
    // Catch downloads instead of letting the browser save them.
    b.eval(
        "window.__downloads = [];
         const create = URL.createObjectURL;
         URL.createObjectURL = blob => { window.__blob = blob; return create(blob); };
         HTMLAnchorElement.prototype.click = function () {
             window.__downloads.push({name: this.download, href: this.href});
         };
         document.querySelector('[data-testid=export-png]').click();
         document.querySelector('[data-testid=export-json]').click();",
    );
    let downloads = b.eval("return window.__downloads");
    assert_eq!(downloads[0]["name"], "attention-L0-H0.png");
    assert!(downloads[0]["href"]
        .as_str()
        .unwrap()
        .starts_with("data:image/png;base64,"));
    assert_eq!(downloads[1]["name"], "attention.json");
    let json = b.eval("return (async () => JSON.parse(await window.__blob.text()))()");
    let tokens = json["tokens"]
        .as_array()
        .expect("tokens in the export")
        .len();
    assert!(tokens > 0);
    let attention = json["attention"].as_array().unwrap();
    let first = &attention[0][0];
    assert_eq!(first.as_array().unwrap().len(), tokens, "one row per query");
    let row_sum: f64 = first[tokens - 1]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap())
        .sum();
    assert!(
        (row_sum - 1.0).abs() < 1e-3,
        "attention rows sum to 1: {row_sum}"
    );
}

/// Opens *roles on this input* and returns its table, row by row.
fn input_roles(b: &Browser) -> Vec<Vec<String>> {
    b.eval("document.querySelector('[data-testid=show-input-roles]').click()");
    b.wait_for(
        "the roles on this input",
        "return !!document.querySelector('[data-testid=input-roles-table] td')",
        LOAD,
    );
    b.table("input-roles-table")
}

/// Every grid canvas's pixel width, in page order.
fn grid_widths(b: &Browser) -> Vec<u64> {
    let widths = b.eval(
        "return [...document.querySelectorAll('[data-testid=heatmap-cell] canvas')].map(c => c.width)",
    );
    widths
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_u64().unwrap())
        .collect()
}

#[test]
fn long_inputs_send_the_grid_as_thumbnails_and_the_enlarged_map_in_full() {
    // The character model reads 128 characters; a grid cell is 100 CSS pixels (headless
    // Chromium: 1 device pixel each), so the grid gets 64 × 64 thumbnails.
    let (_server, b, _) = open_loaded("?model=shakespeare&engine=cpu");
    let text: String = "to be or not to be, that is the question. "
        .chars()
        .cycle()
        .take(128)
        .collect();
    b.type_prompt(&text);
    let read = b.wait_for(
        "the grid's maps as thumbnails",
        "const e = document.querySelector('[data-testid=maps-read]');
         return e && e.textContent.includes('64 × 64') ? e.textContent : ''",
        LOAD,
    );
    assert_eq!(
        read.as_str().unwrap(),
        "Maps read back: 16 of 16, sent at 64 × 64 cells"
    );
    b.wait_for(
        "every grid map drawn at 64 × 64",
        "const c = [...document.querySelectorAll('[data-testid=heatmap-cell] canvas')];
         return c.length === 16 && c.every(e => e.width === 64 && e.height === 64)",
        LOAD,
    );
    // The enlarged map comes in full: 128 × 128, and its hover readout is a real weight.
    b.eval("document.querySelectorAll('[data-testid=heatmap-cell] canvas')[5].click()");
    b.wait_for(
        "the enlarged map in full",
        "const big = document.querySelector('canvas.big');
         const e = document.querySelector('[data-testid=maps-read]');
         return big && big.width === 128 && e && e.textContent.includes('the enlarged one in full')",
        LOAD,
    );
    assert_eq!(grid_widths(&b), vec![64; 16], "its grid cell is pooled too");
    // The difference to the baseline, from thumbnails on both sides.
    b.eval("document.querySelector('[data-testid=diff-toggle]').click()");
    b.set_value("beta", "2");
    b.wait_for(
        "the variant's result",
        "return parseFloat(document.querySelector('[data-testid=kl]').textContent) > 0",
        LOAD,
    );
    assert_eq!(grid_widths(&b), vec![64; 16]);
    b.screenshot("17-thumbnails");
    // The roles on this input (the text repeats) come from the full maps, not from thumbnails.
    let roles = input_roles(&b);
    assert_eq!(roles.len(), 1 + 16, "{roles:?}");
    assert!(
        roles.iter().flatten().all(|cell| !cell.contains("NaN")),
        "{roles:?}"
    );
    // Large maps have room for every cell: full maps again.
    b.set_value("map-size", "large");
    b.wait_for(
        "full maps in large cells",
        "const c = [...document.querySelectorAll('[data-testid=heatmap-cell] canvas')];
         return !document.querySelector('[data-testid=maps-read]') && c.length === 16
             && c.every(e => e.width === 128)",
        LOAD,
    );
    b.assert_no_page_panic();
}

#[test]
fn an_input_longer_than_the_context_keeps_its_end_with_a_notice() {
    // The induction model reads 32 letters; type 40.
    let (_server, b, _) = open_loaded("?model=induction&engine=cpu");
    let letters: Vec<String> = (0..40)
        .map(|i| ((b'a' + (i % 26) as u8) as char).to_string())
        .collect();
    b.type_prompt(&letters.join(" "));
    let notice = b.wait_for(
        "the notice about the context",
        "const n = document.querySelector('[data-testid=input-clamped]');
         const chips = document.querySelectorAll('[data-testid=token-chips] .chip');
         return n && chips.length === 32 && chips[0].textContent === 'i' ? n.textContent : ''",
        LOAD,
    );
    assert_eq!(
        notice.as_str().unwrap(),
        "The input has 40 tokens and the model reads at most 32: the first 8 are left out."
    );
    // The model still runs on what it reads, and no error is shown.
    wait_for_grid(&b);
    let error = b.eval("return !!document.querySelector('[data-testid=error]')");
    assert_eq!(error, Value::Bool(false));
}

#[test]
fn the_kv_cache_tradeoff_plots_every_setting_and_exports_svg_and_csv() {
    // The induction model: 2 key/value heads of 32 dims in a 64-wide model → kv_groups 1,
    // kv_rank 32, 16, 8, 4, 2, 1 and kv_pca 16, 8, 4, 2, 1, plus the unmodified model: 13
    // points. The current setting (kv_groups 1, set first) is marked.
    let (_server, b, _) = open_loaded("?model=induction&engine=cpu&kv_groups=1");
    let rows = b.run_tool("run-kv-tradeoff", "tradeoff-table", LOAD);
    assert_eq!(rows.len(), 1 + 13, "{rows:?}");
    assert_eq!(rows[1][0], "unmodified");
    assert_eq!(rows[1][2], "0.0000");
    let drawn = b.eval(
        "const p = document.querySelector('[data-testid=plot]');
         return [p.dataset.points, p.querySelectorAll('circle.point').length,
                 !!p.querySelector('[data-testid=plot-marked]')]",
    );
    assert_eq!(drawn, serde_json::json!(["13", 13, true]));
    b.screenshot("15-kv-tradeoff");
    // Both exports, read back from the blob before the page revokes it.
    b.eval(
        "window.__downloads = [];
         HTMLAnchorElement.prototype.click = function () {
             const x = new XMLHttpRequest();
             x.open('GET', this.href, false);
             x.send();
             window.__downloads.push({name: this.download, text: x.responseText});
         };
         document.querySelector('[data-testid=export-svg]').click();
         document.querySelector('[data-testid=export-csv]').click();",
    );
    let downloads = b.eval("return window.__downloads");
    assert_eq!(downloads[0]["name"], "kv-cache-tradeoff.svg");
    let svg = downloads[0]["text"].as_str().unwrap();
    assert!(
        svg.starts_with("<?xml") && svg.matches("<circle").count() >= 13,
        "{svg}"
    );
    assert_eq!(downloads[1]["name"], "kv-cache-tradeoff.csv");
    let csv = downloads[1]["text"].as_str().unwrap();
    assert_eq!(csv.lines().count(), 1 + 13, "{csv}");
    assert!(
        csv.starts_with("series,label,\"KV cache bytes per token\""),
        "{csv}"
    );
}

#[test]
fn a_bad_link_opens_with_a_message_and_defaults() {
    let (_server, b) = open(
        WebGpu::Enabled,
        "?model=no-such-model&window=zero&kernel=cosine&engine=tpu",
    );
    let notices = b.wait_for(
        "notices about the link",
        "const n = [...document.querySelectorAll('.notice')].map(e => e.textContent).join(' | ');
         return n.includes('window') && n.includes('kernel') && n.includes('engine') ? n : ''",
        LOAD,
    );
    let notices = notices.as_str().unwrap();
    assert!(notices.contains("ignored window"), "{notices}");
    if models_listed() {
        wait_for_grid(&b);
        let notices = b.eval(
            "return [...document.querySelectorAll('.notice')].map(e => e.textContent).join(' | ')",
        );
        assert!(notices.as_str().unwrap().contains("no-such-model"));
    }
    b.screenshot("06-bad-link");
}

#[test]
fn rank_mode_diff_model_prompt_and_generate_controls_work() {
    let (_server, b, _) = open_loaded("");

    // Latent K/V rank 1: a different output and fewer KV bytes.
    change_control(&b, "kv-rank", "1", "kv_rank=1");
    reset(&b);

    // Zero vs mean ablation of the same head give different results; the mode is in the URL.
    b.eval("document.querySelector('[data-testid=heatmap-cell][data-layer=\"1\"][data-head=\"1\"] [data-testid=ablate-toggle]').click()");
    b.wait_for(
        "the zero-ablated result",
        "return !document.querySelector('[data-testid=kl]').textContent.startsWith('0.0000')",
        LOAD,
    );
    let zero_kl = kl(&b);
    b.eval(
        "const s = document.querySelector('[data-testid=ablate-mode]');
         s.value = 'mean'; s.dispatchEvent(new Event('change', {bubbles: true}));",
    );
    b.wait_for(
        "a different result with mean ablation",
        &format!(
            "return document.querySelector('[data-testid=kl]').textContent.split(' ')[0] !== {:?}",
            format!("{zero_kl:.4}")
        ),
        LOAD,
    );
    assert!(b.url().contains("mode=mean"), "url: {}", b.url());

    // The difference view is part of the link.
    b.eval("document.querySelector('[data-testid=heatmap-cell] canvas').click()");
    b.eval("document.querySelector('[data-testid=diff-toggle]').click()");
    b.wait_for(
        "diff in the URL",
        "return location.search.includes('diff=1')",
        LOAD,
    );
    b.screenshot("10-mean-ablation-diff");

    // Another model: its own grid, its example input, and the URL names it.
    b.eval(
        "const s = document.querySelector('[data-testid=model-select]');
         s.value = 'sort'; s.dispatchEvent(new Event('change', {bubbles: true}));",
    );
    let cells = b.wait_for(
        "the sort model's 2 × 4 grid",
        "return location.search.includes('model=sort') &&
                document.querySelectorAll('[data-testid=heatmap-cell]').length === 8",
        LOAD,
    );
    assert_eq!(cells, Value::Bool(true));
    assert!(
        !b.url().contains("mode=mean"),
        "a new model starts from the baseline"
    );

    // Typing a new input: the tokens, the prediction and the right answer follow.
    b.type_prompt("12 3 7 |");
    let check = b.wait_for(
        "the right answer for the new input",
        "const e = document.querySelector('[data-testid=task-check]');
         return e && e.textContent.includes('Right answer: 3') ? e.textContent : ''",
        LOAD,
    );
    assert!(check.as_str().unwrap().contains('✓'), "{check}");
    assert!(b.url().contains("prompt="), "url: {}", b.url());

    // A language model generates text.
    b.eval(
        "const s = document.querySelector('[data-testid=model-select]');
         s.value = 'shakespeare'; s.dispatchEvent(new Event('change', {bubbles: true}));",
    );
    b.wait_for(
        "the Shakespeare model",
        "return location.search.includes('model=shakespeare') &&
                document.querySelectorAll('[data-testid=heatmap-cell]').length === 16 &&
                !!document.querySelector('[data-testid=generate]')",
        LOAD,
    );
    b.eval("document.querySelector('[data-testid=generate]').click()");
    let text = b.wait_for(
        "generated text",
        "const g = document.querySelector('[data-testid=generated]');
         return g && g.textContent.length >= 20 ? g.textContent : ''",
        LOAD,
    );
    println!("generated: {text}");
    // It decoded from the KV cache, which holds what the KV meter says per token for every
    // position run (the prompt and all but the last generated token).
    let cache = b.wait_for(
        "the generation's summary",
        "const s = document.querySelector('[data-testid=generation-summary]');
         const m = s && s.textContent.match(/holds (\\d+) bytes after (\\d+) positions/);
         const per = document.querySelector('[data-testid=kv-bytes]').textContent;
         return m ? JSON.stringify([+m[1], +m[2], +per, s.textContent]) : ''",
        LOAD,
    );
    let cache: (u64, u64, u64, String) = serde_json::from_str(cache.as_str().unwrap()).unwrap();
    println!("{}", cache.3);
    assert!(cache.3.contains("40 tokens in"), "{}", cache.3);
    assert!(
        cache.1 > 40,
        "the prompt's positions are cached too: {}",
        cache.3
    );
    assert_eq!(cache.0, cache.1 * cache.2, "{}", cache.3);
    // The KV meter shows the bytes the generation's cache held beside its formula.
    let held = b.eval("return document.querySelector('[data-testid=kv-held]').textContent");
    assert!(
        held.as_str()
            .unwrap()
            .contains(&format!("holds {} bytes", cache.0)),
        "{held}"
    );
    b.screenshot("11-shakespeare-generate");
}

/// Generation token by token on the character model: *Step through* stops after the first
/// token, *Step* adds exactly one, *Continue* runs to the end; every token is a chip, and a
/// generated one shows its attention in every head — rows that are distributions, computed
/// from the KV cache by the step that ran it. A variant change then starts it again.
#[test]
fn generation_steps_token_by_token_and_shows_each_tokens_attention() {
    // Greedy, from the URL.
    // Head 1 of layer 0 enlarged: its map grows with the text.
    let (_server, b, cells) = open_loaded("?model=shakespeare&engine=cpu&temperature=0&focus=0.1");
    assert_eq!(cells, 16);
    let temperature = b.eval("return document.querySelector('[data-testid=temperature]').value");
    assert_eq!(temperature, "0");
    let count_expr = "[...document.querySelectorAll('[data-testid=gen-token]')]
        .filter(c => c.dataset.generated === 'true').length";
    let generated = format!("return {count_expr}");
    let generated = generated.as_str();
    let count = || b.eval(generated).as_u64().unwrap();
    b.eval("document.querySelector('[data-testid=step-through]').click()");
    b.wait_for("the first token", &format!("{generated} === 1"), LOAD);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(count(), 1, "paused after the first token");
    b.eval("document.querySelector('[data-testid=step-generating]').click()");
    b.wait_for("one more token", &format!("{generated} === 2"), LOAD);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(count(), 2, "Step adds exactly one token");
    // The prompt's chips come first; the first generated token's attention row.
    let first = b
        .eval("return +document.querySelector('[data-testid=gen-token][data-generated=true]').dataset.position")
        .as_u64()
        .unwrap();
    b.eval("document.querySelector('[data-testid=gen-token][data-generated=true]').click()");
    let sums = b.wait_for(
        "the first generated token's attention",
        "const a = document.querySelector('[data-testid=token-attention]');
         return a && a.dataset.sums ? a.dataset.position + '|' + a.dataset.sums : ''",
        LOAD,
    );
    let (position, sums) = sums.as_str().unwrap().split_once('|').unwrap();
    assert_eq!(position.parse::<u64>().unwrap(), first);
    let sums: Vec<f64> = sums.split(',').map(|s| s.parse().unwrap()).collect();
    assert_eq!(sums.len(), 16, "a row per layer × head");
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-3), "{sums:?}");
    let rows = b.eval(
        "const c = document.querySelector('[data-testid=token-attention] canvas');
         return c ? [c.width, c.height] : null",
    );
    assert_eq!(
        rows,
        serde_json::json!([first + 1, 16]),
        "keys 0..=position, 16 heads"
    );
    // The enlarged head's map over the text: a row for each position run so far (the prompt's
    // and the first generated token's; the second runs with the next step).
    let map = b.eval(
        "const m = document.querySelector('[data-testid=generation-map]');
         const c = m && m.querySelector('canvas');
         return m ? [+m.dataset.size, c.width, c.height] : null",
    );
    assert_eq!(map, serde_json::json!([first + 1, first + 1, first + 1]));
    // Continue: to the 40th token, with the cache's bytes.
    b.eval("document.querySelector('[data-testid=pause-generating]').click()");
    let summary = b.wait_for(
        "the rest of the generation",
        &format!(
            "const s = document.querySelector('[data-testid=generation-summary]');
             return {count_expr} === 40 && s ? s.textContent : ''"
        ),
        LOAD,
    );
    assert!(
        summary
            .as_str()
            .unwrap()
            .contains("decoded from the KV cache"),
        "{summary}"
    );
    let stats =
        b.eval("return document.querySelector('[data-testid=generation-stats]').textContent");
    assert!(
        stats.as_str().unwrap().contains("KV cache holds"),
        "{stats}"
    );
    b.screenshot("11b-generation-step-through");
    // Greedy: *Generate* gives the same text again (and the settings stay in the URL).
    let text = || b.eval("return document.querySelector('[data-testid=generated]').textContent");
    let first_text = text();
    b.eval("document.querySelector('[data-testid=generate]').click()");
    b.wait_for(
        "the second greedy generation",
        "const s = document.querySelector('[data-testid=generation-summary]');
         return s && !document.querySelector('[data-testid=generate-progress]') ? s.textContent : ''",
        LOAD,
    );
    assert_eq!(text(), first_text, "greedy generation repeats itself");
    assert!(b.url().contains("temperature=0"), "url: {}", b.url());

    // A new variant while paused: the generation starts again from the prompt, and says so.
    b.eval("document.querySelector('[data-testid=step-through]').click()");
    b.wait_for("a paused generation", &format!("{generated} === 1"), LOAD);
    b.eval(
        "const w = document.querySelector('[data-testid=window]');
         w.value = '8'; w.dispatchEvent(new Event('input', {bubbles: true}));",
    );
    let restarted = b.wait_for(
        "the generation started again",
        "const s = document.querySelector('[data-testid=generation-stats]');
         return s && s.textContent.includes('started again') ? s.textContent : ''",
        LOAD,
    );
    println!("{restarted}");
    b.assert_no_page_panic();
}

/// The text of a table's cells, row by row.
#[test]
fn the_lens_attribution_and_patching_show_up_and_follow_ablation() {
    // The induction model: 2 layers × 2 heads, its input repeating a stretch of letters.
    let (_server, b, cells) = open_loaded("?model=induction&engine=cpu");
    assert_eq!(cells, 4);
    // The role probe names the model's circuit: a previous-token head in layer 0 and an
    // induction head in layer 1 (docs/MODELS.md).
    let badges = b.wait_for(
        "the role badges",
        "const b = [...document.querySelectorAll('[data-testid=heatmap-cell]')]
             .map(c => [c.dataset.layer, c.dataset.head,
                        c.querySelector('[data-testid=role-badge]')?.textContent ?? ''])
             .filter(([, , role]) => role !== '');
         return b.length >= 2 ? JSON.stringify(b) : ''",
        LOAD,
    );
    let badges = badges.as_str().unwrap();
    assert!(badges.contains(r#"["0","1","previous-token"]"#), "{badges}");
    assert!(badges.contains(r#"["1","1","induction"]"#), "{badges}");
    let run = |button: &str, testid: &str| b.run_tool(button, testid, LOAD);
    // The lens: embeddings, after layer 0, output.
    let lens = run("run-lens", "lens-table");
    assert_eq!(lens.len(), 3, "{lens:?}");
    assert_eq!(lens[2][0], "output");
    // Attribution: a header and one row per layer, 2 heads and the MLP column each.
    let before = run("run-attribution", "attribution-table");
    assert_eq!(before.len(), 3, "{before:?}");
    assert_eq!(before[1].len(), 1 + 2 + 1);
    b.screenshot("12-attribution");
    // Ablating L1H1 zeroes its contribution and changes the table.
    b.eval("document.querySelector('[data-testid=heatmap-cell][data-layer=\"1\"][data-head=\"1\"] [data-testid=ablate-toggle]').click()");
    b.wait_for(
        "the ablation in the URL",
        "return location.search.includes('ablate')",
        LOAD,
    );
    let after = run("run-attribution", "attribution-table");
    assert_eq!(after[2][2], "+0.00", "{after:?}");
    assert_ne!(after, before);
    // Patching: corrupt one token; the estimate alone (attribution patching, one backward)...
    b.eval("document.querySelector('[data-testid=corrupt-one]').click()");
    let estimate = run("run-attribution-patching", "attribution-patching-heads");
    assert_eq!(estimate.len(), 3, "{estimate:?}");
    let exact_shown = b.eval("return !!document.querySelector('[data-testid=patching-heads]')");
    assert_eq!(
        exact_shown, false,
        "the estimate alone shows no exact table"
    );
    // ...then restore each head, the estimate beside with its correlation.
    let heads = run("run-patching", "patching-heads");
    assert_eq!(b.table("attribution-patching-heads").len(), 3);
    let r = b.eval(
        "return Number(document.querySelector('[data-testid=patching-correlation]').dataset.correlation)",
    );
    let r = r.as_f64().unwrap();
    assert!(r.is_finite() && r > 0.0, "correlation {r}");
    assert_eq!(heads.len(), 3, "{heads:?}");
    let resid = b.table("patching-resid");
    assert_eq!(resid.len(), 3, "{resid:?}");
    let tokens =
        b.eval("return document.querySelectorAll('[data-testid=token-chips] .chip').length");
    assert_eq!(resid[0].len() as u64, 1 + tokens.as_u64().unwrap());
    b.screenshot("13-patching");
    // The circuit view: the strongest composition is the induction head's keys reading the
    // previous-token head (K-composition L0 H1 → L1 H1), drawn in the graph.
    let links = run("run-circuits", "composition-table");
    assert_eq!(links[0][0], "K-composition", "{links:?}");
    assert_eq!(links[0][1], "L0 H1 → L1 H1", "{links:?}");
    assert_eq!(b.table("circuits-table").len(), 1 + 4);
    let drawn = b.eval(
        "const g = document.querySelector('[data-testid=composition-graph]');
         return [g.querySelectorAll('line').length, g.querySelectorAll('circle').length]",
    );
    assert_eq!(drawn, serde_json::json!([links.len(), 4]));
    b.screenshot("14-circuits");
    // Roles on the text on screen (its repeated stretch), beside the probe's badges.
    let roles = input_roles(&b);
    let role = |name: &str| roles.iter().find(|r| r[0] == name).unwrap()[6].clone();
    assert_eq!(role("L0 H1"), "previous-token", "{roles:?}");
    assert_eq!(role("L1 H1"), "induction", "{roles:?}");
    // Heads over a corpus (the task's held-out sequences): sorted by the probe's induction
    // score, the induction head L1 H1 leads, with the highest score over the corpus's repeats
    // too; the Head Finder draws all four heads; clicking L1 H1 opens it focused on the window
    // where its induction score peaks.
    let heads = run("run-heads", "heads-table");
    assert_eq!(heads.len(), 1 + 4, "{heads:?}");
    assert_eq!(heads[1][0], "L1 H1", "{heads:?}");
    let column = |title: &str| heads[0].iter().position(|c| c == title).unwrap();
    let corpus_induction = column("induction (corpus)");
    let best = heads[1..]
        .iter()
        .max_by(|a, b| {
            let v = |r: &Vec<String>| r[corpus_induction].parse::<f64>().unwrap_or(-1.0);
            v(a).total_cmp(&v(b))
        })
        .unwrap();
    assert_eq!(best[0], "L1 H1", "{heads:?}");
    let summary =
        b.eval("return document.querySelector('[data-testid=heads-summary]').textContent");
    assert!(
        summary
            .as_str()
            .unwrap()
            .contains("induction task's held-out set"),
        "{summary}"
    );
    assert_eq!(
        b.eval("return document.querySelector('[data-testid=head-finder]').dataset.points"),
        "4"
    );
    let before = b.eval("return document.querySelector('[data-testid=prompt-input]').value");
    b.eval("document.querySelector('[data-testid=head-finder] circle[data-layer=\"1\"][data-head=\"1\"]').dispatchEvent(new MouseEvent('click', {bubbles: true}))");
    let focused = b.wait_for(
        "the head opened from the Head Finder",
        "const f = document.querySelector('[data-testid=focus-view] h3'); return f ? f.textContent : ''",
        LOAD,
    );
    assert_eq!(focused, "Layer 1, head 1");
    let after = b.eval("return document.querySelector('[data-testid=prompt-input]').value");
    assert_ne!(
        after, before,
        "the input is the window where the head's score peaks"
    );
    b.eval("document.querySelector('[data-testid=head-finder]').scrollIntoView()");
    b.screenshot("15-heads-over-a-corpus");
    // QK attribution: a click on the enlarged map of L1 H1, on the cell where a repeated token's
    // query meets the token after its earlier occurrence (an induction target), splits that
    // score into query-side × key-side parts that sum to it; the largest key-side part is the
    // previous-token head L0 H1 (K-composition, as the circuits found from the weights).
    let clicked = b.eval(
        "const chips = [...document.querySelectorAll('[data-testid=token-chips] .chip')]
             .map(c => c.textContent);
         const t = chips.length;
         for (let i = t - 1; i >= 2; i--) {
             for (let k = i - 1; k >= 1; k--) {
                 if (chips[k - 1] !== chips[i]) continue;
                 const c = document.querySelector('[data-testid=focus-map]');
                 const r = c.getBoundingClientRect();
                 c.dispatchEvent(new MouseEvent('click', {bubbles: true,
                     clientX: r.left + (k + 0.5) * r.width / t,
                     clientY: r.top + (i + 0.5) * r.height / t}));
                 return [i, k];
             }
         }
         return null;",
    );
    assert!(clicked.is_array(), "the window repeats a token: {clicked}");
    let split = b.wait_for(
        "the clicked cell's score split",
        "const q = document.querySelector('[data-testid=qk-attribution]');
         return q ? [Number(q.dataset.score), Number(q.dataset.sum), q.textContent] : null",
        LOAD,
    );
    let (score, sum) = (split[0].as_f64().unwrap(), split[1].as_f64().unwrap());
    assert!(
        (score - sum).abs() <= 1e-4 * score.abs().max(1.0),
        "{split}"
    );
    let text = split[2].as_str().unwrap();
    assert!(
        text.contains("Why L1H1 attends")
            && text.contains(&format!("({}) to ", clicked[0]))
            && text.contains(&format!("({}): its score", clicked[1])),
        "{text}"
    );
    let ranked = b.table("qk-ranked");
    assert_eq!(ranked.len(), 1 + 8, "{ranked:?}");
    assert_eq!(ranked[1][1..], ["embeddings", "L0H1"], "{ranked:?}");
    let matrix = b.table("qk-matrix");
    // Layer 1 reads the embeddings, L0's two heads and the biases (the model has no MLPs).
    assert_eq!(matrix.len(), 1 + 4, "{matrix:?}");
    assert!(matrix[0][1].starts_with("L0H1"), "{matrix:?}");
    b.eval("document.querySelector('[data-testid=focus-view]').scrollIntoView()");
    b.screenshot("16-qk-attribution");
    // The layer-drop ranking: both layers with their similarity, most droppable first; its
    // button drops that layer's attention.
    let ranking = run("run-layer-drop", "layer-drop-table");
    assert_eq!(ranking.len(), 1 + 2, "{ranking:?}");
    let similarity = |row: usize| ranking[row][2].parse::<f64>().unwrap();
    assert!(
        similarity(1) >= similarity(2) && similarity(1) <= 1.0,
        "{ranking:?}"
    );
    let first = ranking[1][1].trim_start_matches("layer ").to_string();
    b.eval("document.querySelector('[data-testid=layer-drop-table] button').click()");
    b.wait_for(
        "the dropped layer in the URL",
        &format!("return location.search.includes('drop={first}')"),
        LOAD,
    );
}

/// Activation steering: "love minus hate" added before a layer of the character model changes
/// its prediction, its maps and its greedy continuation; it survives a reload through the URL;
/// *Stop steering* gives the unsteered model back.
#[test]
fn steering_changes_the_prediction_and_the_continuation_and_survives_a_reload() {
    let (_server, b, _) = open_loaded(
        "?model=shakespeare&engine=cpu&temperature=0&prompt=KING%20HENRY%3A%20I%20will",
    );
    let generate = |b: &Browser| {
        b.eval("document.querySelector('[data-testid=generate]').click()");
        b.wait_for(
            "a greedy generation",
            "const s = document.querySelector('[data-testid=generation-summary]');
             const g = document.querySelector('[data-testid=generated]');
             return s && g && !document.querySelector('[data-testid=generate-progress]')
                 ? g.textContent : ''",
            LOAD,
        )
    };
    let plain_top = topk_text(&b);
    let plain_text = generate(&b);
    let plain_lens = b.run_tool("run-lens", "lens-table", LOAD);
    b.eval(
        "const set = (id, value, event) => {
             const e = document.querySelector(`[data-testid=${id}]`);
             e.value = value; e.dispatchEvent(new Event(event, {bubbles: true}));
         };
         set('steer-layer', '2', 'change');
         set('steer-coefficient', '8', 'change');
         set('steer-plus', ' love', 'input');
         set('steer-minus', ' hate', 'input');
         document.querySelector('[data-testid=steer]').click();",
    );
    b.wait_for(
        "the steering in the URL",
        "return location.search.includes('steer=2%2C8%2C0') || location.search.includes('steer=2,8,0')",
        LOAD,
    );
    let steered_top = b.wait_for(
        "the steered prediction",
        &format!(
            "const t = document.querySelector('[data-testid=output-topk-current]').textContent;
             return t !== {} ? t : ''",
            serde_json::to_string(&plain_top).unwrap()
        ),
        LOAD,
    );
    let on = b.eval("return document.querySelector('[data-testid=steering-on]').textContent");
    assert!(
        on.as_str()
            .unwrap()
            .contains("+8 × (“ love” − “ hate”) before layer 2"),
        "{on}"
    );
    // The tools of Look inside run on the steered model too: the lens's last row is the steered
    // prediction.
    let steered_lens = b.run_tool("run-lens", "lens-table", LOAD);
    assert_eq!(steered_lens.len(), plain_lens.len());
    assert_ne!(steered_lens.last(), plain_lens.last(), "{steered_lens:?}");
    let note = b.eval("return document.querySelector('[data-testid=steered-note]').textContent");
    assert!(note.as_str().unwrap().contains("are steered"), "{note}");
    let steered_text = generate(&b);
    assert_ne!(steered_text, plain_text, "the steered continuation differs");
    b.eval("document.querySelector('[data-testid=steering-on]').scrollIntoView()");
    b.screenshot("17-steering");
    // A reload keeps the steering: the same prediction, the controls filled in.
    let url = b.url();
    b.goto(&url);
    wait_for_grid(&b);
    b.wait_for(
        "the steered prediction after a reload",
        &format!(
            "return document.querySelector('[data-testid=output-topk-current]').textContent === {}",
            serde_json::to_string(&steered_top).unwrap()
        ),
        LOAD,
    );
    assert_eq!(
        b.eval("return document.querySelector('[data-testid=steer-plus]').value"),
        " love"
    );
    b.eval("document.querySelector('[data-testid=stop-steering]').click()");
    b.wait_for(
        "the unsteered prediction again",
        &format!(
            "return !location.search.includes('steer')
                 && document.querySelector('[data-testid=output-topk-current]').textContent === {}",
            serde_json::to_string(&plain_top).unwrap()
        ),
        LOAD,
    );
    // The lens's direction toward one letter: steered before layer 2, the model predicts it.
    b.eval(
        "const set = (id, value, event) => {
             const e = document.querySelector(`[data-testid=${id}]`);
             e.value = value; e.dispatchEvent(new Event(event, {bubbles: true}));
         };
         window.__before = document.querySelector('[data-testid=output-topk-current]').textContent;
         set('steer-kind', 'lens', 'change');
         set('steer-coefficient', '4', 'change');
         set('steer-plus', 'z', 'input');
         set('steer-minus', '', 'input');
         document.querySelector('[data-testid=steer]').click();",
    );
    b.wait_for(
        "the lens steering in the URL",
        "return location.search.includes('steer_vector=lens')",
        LOAD,
    );
    let top = b.wait_for(
        "the prediction steered toward z",
        "const first = document.querySelector('[data-testid=output-topk-current] li');
         const t = first ? first.textContent.trim() : '';
         return t !== '' && document.querySelector('[data-testid=output-topk-current]').textContent !== window.__before ? t : ''",
        LOAD,
    );
    println!("steered toward z: {top}");
    assert!(top.as_str().unwrap().starts_with('z'), "{top}");
    let on = b.eval("return document.querySelector('[data-testid=steering-on]').textContent");
    assert!(
        on.as_str()
            .unwrap()
            .contains("+4 × lens(“z”) before layer 2"),
        "{on}"
    );
    // Two letters are two tokens: said at once, and the steering stays as it was.
    b.eval(
        "const e = document.querySelector('[data-testid=steer-plus]');
         e.value = 'zq'; e.dispatchEvent(new Event('input', {bubbles: true}));
         document.querySelector('[data-testid=steer]').click();",
    );
    let error = b.error_message("the lens needs one token", LOAD);
    assert!(error.contains("one token"), "{error}");
    assert!(b.url().contains("steer_plus=z&"), "{}", b.url());
    b.assert_no_page_panic();
}
