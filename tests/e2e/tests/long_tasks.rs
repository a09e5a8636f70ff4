//! Work in the page's compute worker: models loaded from disk through the file input (read by the
//! worker), head importance showing its progress and stopping when cancelled, a bad file giving
//! a message while the current model stays, and a GPT-2-small-shaped model that never freezes
//! the page. The models are made here, from random configs through the project's own code, and
//! picked from disk in the file input through WebDriver (so the page gets disk-backed files, as
//! from a file dialog).

use std::path::PathBuf;
use std::time::Duration;

use attn_e2e::{artifacts_dir, dist_dir, Browser, StaticServer, WebGpu};
use attn_model::{Model, ModelConfig};

const LOAD: Duration = Duration::from_secs(120);

/// Writes a random model of the given shape into a folder of its own and returns the folder.
fn random_model(name: &str, config: ModelConfig) -> PathBuf {
    let dir = artifacts_dir().join("test-models");
    std::fs::create_dir_all(&dir).unwrap();
    let model = Model::random(config, 1, 0.05).unwrap();
    std::fs::write(
        dir.join(format!("{name}.safetensors")),
        model.to_safetensors_bytes().unwrap(),
    )
    .unwrap();
    dir
}

/// Opens the page on the CPU engine and picks `NAME.safetensors` of the test models' folder in
/// the file input, as a person choosing it from disk would.
fn open_from_disk(name: &str, config: ModelConfig) -> (StaticServer, Browser) {
    open_file(name, random_model(name, config))
}

/// [`open_from_disk`] for a file already in `dir`.
fn open_file(name: &str, dir: PathBuf) -> (StaticServer, Browser) {
    let server = StaticServer::start(dist_dir());
    let b = Browser::start(WebGpu::Enabled);
    b.open_page(&server, "?engine=cpu", LOAD);
    b.pick_files("#model-files", &[dir.join(format!("{name}.safetensors"))]);
    (server, b)
}

/// Opens a random model of `config` from disk, waits until the page shows its L × H maps, and
/// types 64 token ids (the model has no tokenizer; `stride` spreads them over the vocabulary).
fn open_and_type(name: &str, config: ModelConfig, stride: usize) -> (StaticServer, Browser) {
    let (layers, maps, vocab) = (
        config.n_layer,
        config.n_layer * config.n_head,
        config.vocab_size,
    );
    let (server, b) = open_from_disk(name, config);
    b.wait_for(
        &format!("the model from disk with {maps} maps"),
        &format!(
            "return document.querySelectorAll('[data-testid=heatmap-cell]').length === {maps}
                 && document.querySelector('.model-panel .facts').textContent
                        .includes('{layers} layers')"
        ),
        LOAD,
    );
    let ids: Vec<String> = (0..64)
        .map(|i| ((i * stride) % vocab).to_string())
        .collect();
    b.type_prompt(&ids.join(" "));
    b.wait_for(
        "64 token chips",
        "return document.querySelectorAll('[data-testid=token-chips] .chip').length === 64",
        LOAD,
    );
    (server, b)
}

/// 6 layers × 8 heads, d_model 256: ranking or patching it takes long enough to watch.
fn six_by_eight() -> ModelConfig {
    ModelConfig {
        n_ctx: 64,
        d_model: 256,
        n_layer: 6,
        n_head: 8,
        ..ModelConfig::tiny(512)
    }
}

#[test]
fn importance_over_a_model_from_disk_shows_progress_and_can_be_cancelled() {
    let config = six_by_eight();
    let (_server, b) = open_and_type("six-by-eight", config, 37);
    b.eval("document.querySelector('[data-testid=rank-heads]').click()");
    let shown = b.wait_for(
        "the ranking's progress",
        "const p = document.querySelector('[data-testid=rank-progress]');
         return p && / of 48 heads/.test(p.textContent) ? p.textContent : '';",
        LOAD,
    );
    assert!(shown.as_str().unwrap().contains("of 48 heads"), "{shown}");
    b.screenshot("long-01-ranking-progress");
    b.eval("document.querySelector('[data-testid=cancel-ranking]').click()");
    let status = b.wait_for(
        "the ranking to stop",
        "const s = document.querySelector('[data-testid=rank-status]');
         return s ? s.textContent : '';",
        LOAD,
    );
    let status = status.as_str().unwrap();
    assert!(status.starts_with("Cancelled after"), "{status}");
    let done: usize = status
        .trim_start_matches("Cancelled after ")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(done < 48, "stopped early: {status}");
    // Nothing was ranked, the progress is gone, and the page still answers.
    let left = b.eval(
        "return [document.querySelectorAll('[data-testid=importance] li').length,
                 !!document.querySelector('[data-testid=rank-progress]'),
                 document.querySelector('[data-testid=rank-heads]').disabled]",
    );
    assert_eq!(left, serde_json::json!([0, false, false]));
}

#[test]
fn patching_runs_off_the_main_thread_with_progress_and_can_be_cancelled() {
    // The same 6 × 8 model: patching is one forward per head and per (layer, position).
    let config = six_by_eight();
    let (_server, b) = open_and_type("six-by-eight-patching", config, 37);
    b.eval(
        "document.querySelector('[data-testid=corrupt-one]').click();
         setTimeout(() => document.querySelector('[data-testid=run-patching]').click(), 50);",
    );
    b.wait_for(
        "the patching's progress",
        "const p = document.querySelector('[data-testid=analysis-progress]');
         return p && / of \\d+ forwards/.test(p.textContent) ? p.textContent : '';",
        LOAD,
    );
    // While it runs, a click on another control changes the page at once.
    b.eval(
        "const legend = document.querySelector('.legend');
         new MutationObserver(() => { window.reacted ??= performance.now() - window.clicked; })
           .observe(legend, {childList: true, subtree: true, characterData: true});
         window.clicked = performance.now();
         document.querySelector('[data-testid=diff-toggle]').click();",
    );
    let reacted = b.wait_for(
        "the page to answer the click",
        "return window.reacted !== undefined ? window.reacted + 1e-6 : 0",
        LOAD,
    );
    let running = b.eval("return !!document.querySelector('[data-testid=analysis-progress]')");
    assert_eq!(
        running,
        serde_json::json!(true),
        "the click came while patching ran"
    );
    let reacted = reacted.as_f64().unwrap();
    println!("during patching, a click changed the page after {reacted:.1} ms");
    assert!(
        reacted < 100.0,
        "the click changed the page after {reacted:.0} ms"
    );
    b.screenshot("long-03-patching-progress");
    b.eval("document.querySelector('[data-testid=cancel-analysis]').click()");
    b.wait_for(
        "the patching to stop",
        "return !document.querySelector('[data-testid=analysis-progress]')
             && !document.querySelector('[data-testid=run-patching]').disabled",
        LOAD,
    );
    let tables = b.eval("return !!document.querySelector('[data-testid=patching-heads]')");
    assert_eq!(
        tables,
        serde_json::json!(false),
        "a cancelled patching shows no result"
    );
}

#[test]
fn a_gpt2_small_shaped_model_never_freezes_the_page() {
    // GPT-2 small's shape (12 layers × 12 heads, d_model 768, MLP 3072) with a 65 536-token
    // vocabulary: 136 M parameters, a 542 MB file (read piece by piece: more than the 512 MiB
    // the page once read whole), random weights.
    let config = ModelConfig {
        n_ctx: 256,
        d_model: 768,
        n_layer: 12,
        n_head: 12,
        ..ModelConfig::tiny(65536)
    };
    let (_server, b) = open_and_type("gpt2-small-shape", config, 131);
    b.wait_for(
        "the first forward on 64 tokens",
        "return document.querySelector('[data-testid=forward-ms]').textContent !== ''
             && document.querySelector('[data-testid=kl]').textContent.startsWith('0.0000')",
        LOAD,
    );
    // Watch the main thread, start a forward (β = 2), and while it runs click another control.
    b.eval(
        "window.longTasks = [];
         new PerformanceObserver(list => {
           for (const e of list.getEntries()) window.longTasks.push([e.startTime, e.duration]);
         }).observe({type: 'longtask'});
         const kl = document.querySelector('[data-testid=kl]');
         new MutationObserver(() => { window.landed ??= performance.now(); })
           .observe(kl, {childList: true, subtree: true, characterData: true});
         const beta = document.querySelector('[data-testid=beta]');
         beta.value = '2'; beta.dispatchEvent(new Event('input', {bubbles: true}));
         setTimeout(() => {
           const legend = document.querySelector('.legend');
           new MutationObserver(() => { window.reacted ??= performance.now() - window.clicked; })
             .observe(legend, {childList: true, subtree: true, characterData: true});
           window.clicked = performance.now();
           document.querySelector('[data-testid=diff-toggle]').click();
         }, 50);",
    );
    let reacted = b.wait_for(
        "the page to answer the click",
        "return window.reacted !== undefined ? window.reacted + 1e-6 : 0",
        LOAD,
    );
    b.wait_for(
        "the forward with β = 2 to land",
        "return window.landed !== undefined",
        LOAD,
    );
    b.screenshot("long-02-gpt2-small-shape");
    let reacted = reacted.as_f64().unwrap();
    let report = b.eval(
        "return {clicked: window.clicked, landed: window.landed, all: window.longTasks,
                 long: window.longTasks.filter(([s, d]) => s + d < window.landed && d > 100)}",
    );
    let forward_ms =
        b.eval("return document.querySelector('[data-testid=forward-ms]').textContent");
    println!(
        "forward with β = 2: {forward_ms} ms in the worker; click answered in {reacted:.1} ms; \
         main-thread long tasks (≥ 50 ms) meanwhile: {}",
        report["all"]
    );
    let (clicked, landed) = (
        report["clicked"].as_f64().unwrap(),
        report["landed"].as_f64().unwrap(),
    );
    assert!(
        landed > clicked,
        "the click came while the forward ran (clicked {clicked:.0} ms, landed {landed:.0} ms)"
    );
    assert!(
        reacted < 100.0,
        "the click changed the page after {reacted:.0} ms"
    );
    assert_eq!(
        report["long"],
        serde_json::json!([]),
        "main-thread tasks over 100 ms while the forward ran ([start, duration] in ms; the \
         click at {clicked:.0}, the result at {landed:.0})"
    );
}

#[test]
fn a_model_too_large_for_the_page_is_refused_before_its_weights_are_read() {
    // A header declaring 200 000 × 4096 float32 values (3.3 GB), followed by almost nothing: the
    // page must refuse on the header alone, saying what fits.
    let header = br#"{"wte":{"dtype":"F32","shape":[200000,4096],"data_offsets":[0,3276800000]}}"#;
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header);
    file.extend_from_slice(&[0; 1024]);
    let dir = artifacts_dir().join("test-models");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("huge.safetensors"), file).unwrap();
    let (_server, b) = open_file("huge", dir);
    let error = b.error_message("the message about the size", LOAD);
    assert!(
        error.contains("needs 3.3 GB for its weights") && error.contains("up to 2.7 GB"),
        "{error}"
    );
    let still = b.eval("return document.querySelectorAll('[data-testid=heatmap-cell]').length");
    assert_eq!(still, serde_json::json!(4), "the built-in model stays");
}

#[test]
fn a_bad_file_from_disk_gives_a_message_and_keeps_the_model() {
    let dir = artifacts_dir().join("test-models");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("broken.safetensors"), b"this is not a model").unwrap();
    let (_server, b) = open_file("broken", dir);
    let error = b.error_message("the message about the bad file", LOAD);
    assert!(error.contains("broken.safetensors"), "{error}");
    // The built-in model is still there and still runs.
    let still = b.eval(
        "return [document.querySelectorAll('[data-testid=heatmap-cell]').length,
                 !!document.querySelector('[data-testid=output-topk-current] li')]",
    );
    assert_eq!(still, serde_json::json!([4, true]));
}

#[test]
fn a_32_by_32_grid_opens_on_its_first_layers_and_can_be_filtered_and_resized() {
    // 32 layers × 32 heads (Llama-7B's grid), at a size that loads in a moment.
    let config = ModelConfig {
        vocab_size: 64,
        n_ctx: 16,
        d_model: 64,
        n_layer: 32,
        n_head: 32,
        d_mlp: Some(32),
        ..ModelConfig::tiny(64)
    };
    let (_server, b) = open_from_disk("grid-32x32", config);
    let count = "return document.querySelectorAll('[data-testid=heatmap-cell]').length";
    // 1024 maps is too many to draw at once: the first four layers, small.
    b.wait_for(
        "the first four layers of 32 heads",
        "return document.querySelectorAll('[data-testid=heatmap-cell]').length === 128
             && document.querySelector('.model-panel .facts').textContent.includes('32 layers')",
        LOAD,
    );
    let class = b.eval("return document.querySelector('[data-testid=heatmap-grid]').className");
    assert_eq!(class, serde_json::json!("grid size-small"));
    // The model has no tokenizer: token ids.
    b.type_prompt("1 5 9 13 2 6 10 14 3 7 11 15");
    b.wait_for(
        "a prediction",
        "return !!document.querySelector('[data-testid=output-topk-current] li')",
        LOAD,
    );
    let read = b.eval("return document.querySelector('[data-testid=maps-read]').textContent");
    assert!(
        read.as_str()
            .is_some_and(|t| t.starts_with("Maps read back: 128 of 1024 (layers 0–3")),
        "{read}"
    );
    // Layers 10 to 12 only.
    b.eval(
        "for (const [id, v] of [['layers-to', '12'], ['layers-from', '10']]) {
             const e = document.querySelector(`[data-testid=${id}]`);
             e.value = v;
             e.dispatchEvent(new Event('change', {bubbles: true}));
         }",
    );
    let layers = b.wait_for(
        "layers 10 to 12",
        "const cells = [...document.querySelectorAll('[data-testid=heatmap-cell]')];
         return cells.length === 96 ? [...new Set(cells.map(c => c.dataset.layer))] : null",
        LOAD,
    );
    assert_eq!(layers, serde_json::json!(["10", "11", "12"]));
    // Only the maps on screen are read back and sent, and the new layers are drawn.
    b.wait_for(
        "the maps of layers 10 to 12",
        "const t = document.querySelector('[data-testid=maps-read]')?.textContent ?? '';
         const drawn = [...document.querySelectorAll('[data-testid=heatmap-cell] canvas')]
             .every(c => c.width === 12);
         return t.startsWith('Maps read back: 96 of 1024 (layers 10–12') && drawn",
        LOAD,
    );
    // Export JSON still gives every map: it asks for a forward with all of them first.
    b.eval(
        "document.querySelector('[data-testid=heatmap-cell][data-layer=\"10\"] canvas').click();",
    );
    b.wait_for(
        "the enlarged map",
        "return !!document.querySelector('[data-testid=focus-view]')",
        LOAD,
    );
    b.eval(
        "window.__blob = null;
         const create = URL.createObjectURL;
         URL.createObjectURL = blob => { window.__blob = blob; return create(blob); };
         HTMLAnchorElement.prototype.click = function () {};
         document.querySelector('[data-testid=export-json]').click();",
    );
    b.wait_for("the export", "return !!window.__blob", LOAD);
    let layers_exported = b.eval(
        "return (async () => {
             const maps = JSON.parse(await window.__blob.text()).attention;
             return [maps.length, maps[31].length,
                     maps.every(layer => layer.every(head => head.every(row =>
                         row.every(p => typeof p === 'number'))))];
         })()",
    );
    assert_eq!(layers_exported, serde_json::json!([32, 32, true]));
    // Large maps; the grid scrolls rather than growing the page without bound.
    b.eval(
        "const e = document.querySelector('[data-testid=map-size]');
         e.value = 'large';
         e.dispatchEvent(new Event('change', {bubbles: true}));",
    );
    b.wait_for(
        "large maps",
        "return document.querySelector('[data-testid=heatmap-grid]').className === 'grid size-large'",
        LOAD,
    );
    let scrolls = b.eval(
        "const g = document.querySelector('[data-testid=heatmap-grid]');
         return getComputedStyle(g).overflowY === 'auto' && g.scrollHeight > g.clientHeight",
    );
    assert_eq!(scrolls, serde_json::json!(true));
    assert_eq!(b.eval(count), serde_json::json!(96));
    b.screenshot("long-03-grid-32x32");
}
