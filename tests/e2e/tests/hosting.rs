//! The release build served as a strict host would serve it: with a Content-Security-Policy on
//! every response (`STRICT_CSP`, and the policy of docs/HOSTING.md, which adds `blob:` to
//! connect-src for files from disk). The page must load, run, analyse and open files from disk
//! with no violation — the policy's `report-uri` sends every one (from the page or its worker)
//! back to the test server, which counts them.

use std::time::Duration;

use attn_e2e::{dist_dir, repo_root, Browser, StaticServer, WebGpu, STRICT_CSP};

const LOAD: Duration = Duration::from_secs(120);

/// Waits for a result, then gives the browser a moment to post any late reports.
fn assert_no_violation(server: &StaticServer, what: &str) {
    std::thread::sleep(Duration::from_secs(2));
    let reports = server.csp_reports();
    assert!(
        reports.is_empty(),
        "{what}: {} CSP violations: {reports:#?}",
        reports.len()
    );
}

#[test]
fn the_page_runs_under_a_strict_content_security_policy() {
    let server = StaticServer::start_with_csp(dist_dir(), STRICT_CSP);
    let b = Browser::start(WebGpu::Enabled);
    b.goto(&server.url("index.html?model=induction&engine=gpu"));
    // The page's start-up script, its worker, the model fetch and the GPU engine all ran.
    b.wait_for(
        "the induction model's maps and prediction",
        "const cells = document.querySelectorAll('[data-testid=heatmap-cell]').length;
         const top = document.querySelector('[data-testid=output-topk-current] li');
         const used = document.querySelector('[data-testid=engine-used]');
         return cells === 4 && top && used && used.textContent.includes('GPU')",
        LOAD,
    );
    // Bars whose width is data (set as one CSS property, not a style attribute).
    let width = b.eval(
        "return document.querySelector('[data-testid=output-topk-current] .fill').style.width",
    );
    assert!(width.as_str().unwrap().ends_with('%'), "{width}");
    // A variant, then the analysis tables (cells coloured by their values).
    b.set_value("beta", "2");
    b.wait_for(
        "a result that differs from the baseline",
        "const k = document.querySelector('[data-testid=kl]').textContent;
         return k !== '' && !k.startsWith('0.0000')",
        LOAD,
    );
    b.run_tool("run-lens", "lens-table", LOAD);
    b.run_tool("run-attribution", "attribution-table", LOAD);
    let shaded = b.eval(
        "return [...document.querySelectorAll('[data-testid=attribution-table] td')]
             .some(td => td.style.backgroundColor.startsWith('rgba'))",
    );
    assert_eq!(shaded, true);
    b.screenshot("hosting-strict-csp");
    assert_no_violation(&server, "the built-in model");
}

#[test]
fn files_from_disk_open_under_the_documented_policy() {
    // The documented policy adds `blob:` to connect-src: the worker reads picked files through
    // object URLs.
    let policy = STRICT_CSP.replace("connect-src 'self'", "connect-src 'self' blob:");
    let server = StaticServer::start_with_csp(dist_dir(), &policy);
    let b = Browser::start(WebGpu::Enabled);
    b.open_page(&server, "?engine=cpu", LOAD);
    let dir = repo_root().join("tests/fixtures/families/neox-parallel");
    let files = ["config.json", "model.safetensors", "tokenizer.json"];
    b.pick_files("#model-files", &files.map(|f| dir.join(f)));
    b.wait_for(
        "the GPT-NeoX directory's 8 maps",
        "const facts = document.querySelector('.model-panel .architecture');
         return document.querySelectorAll('[data-testid=heatmap-cell]').length === 8
             && facts && facts.textContent.startsWith('GPT-NeoX:')",
        LOAD,
    );
    assert_no_violation(&server, "a directory picked from disk");
}

/// The counting above can fail: without `'wasm-unsafe-eval'` the browser refuses to compile the
/// page's WebAssembly, and the server receives the report.
#[test]
fn a_violation_is_reported_to_the_test_server() {
    let policy = STRICT_CSP.replace(" 'wasm-unsafe-eval'", "");
    let server = StaticServer::start_with_csp(dist_dir(), &policy);
    let b = Browser::start(WebGpu::Enabled);
    b.goto(&server.url("index.html"));
    let deadline = std::time::Instant::now() + LOAD;
    while server.csp_reports().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no report arrived for a policy that forbids WebAssembly"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let report = &server.csp_reports()[0];
    assert!(report.contains("script-src"), "{report}");
}

/// Under the strict policy without `blob:` in connect-src, opening files from disk cannot work;
/// the page says why and keeps its model.
#[test]
fn without_blob_urls_a_picked_file_gets_a_message_naming_the_policy() {
    let server = StaticServer::start_with_csp(dist_dir(), STRICT_CSP);
    let b = Browser::start(WebGpu::Enabled);
    b.open_page(&server, "?engine=cpu", LOAD);
    let cells = b.eval("return document.querySelectorAll('[data-testid=heatmap-cell]').length");
    let dir = repo_root().join("tests/fixtures/families/neox-parallel");
    b.pick_files(
        "#model-files",
        &[dir.join("config.json"), dir.join("model.safetensors")],
    );
    let error = b.error_message("the message about the policy", LOAD);
    assert!(error.contains("connect-src must allow blob:"), "{error}");
    let still = b.eval("return document.querySelectorAll('[data-testid=heatmap-cell]').length");
    assert_eq!(still, cells, "the built-in model stays");
}

/// A host that makes the page cross-origin isolated (docs/HOSTING.md) gets the compute worker
/// with wasm threads, under the strict policy too. On a full context of 128 characters the
/// character model's MLP products (128 × 128 × 512 multiply-adds) are large enough to be split
/// across the threads, and each thread computes whole blocks of the same product, so the
/// prediction is the same to the last digit as the worker without threads (`threads=1`). The
/// GPU engine runs in that worker too.
#[test]
fn a_cross_origin_isolated_page_runs_the_cpu_engine_on_threads() {
    let server = StaticServer::start_isolated_with_csp(dist_dir(), STRICT_CSP);
    // WebGPU on SwiftShader, a software adapter: the page picks the CPU engine unless told.
    let b = Browser::start(WebGpu::Enabled);
    // The engine the result came from, and the next characters with their probabilities.
    let result = |query: &str| -> (String, String) {
        b.open_page(&server, query, LOAD);
        let used = b.wait_for(
            "a result from the CPU engine",
            "const e = document.querySelector('[data-testid=engine-used]');
             return e && e.textContent.includes('CPU') ? e.textContent : ''",
            LOAD,
        );
        let top = b
            .eval("return document.querySelector('[data-testid=output-topk-current]').textContent");
        (used.as_str().unwrap().into(), top.as_str().unwrap().into())
    };
    let line = "To be or not to be that is the question ".repeat(4);
    let prompt = line[..128].replace(' ', "%20");
    let (used, threaded) = result(&format!("?model=shakespeare&prompt={prompt}"));
    assert_eq!(b.eval("return self.crossOriginIsolated"), true);
    // One thread per core, up to 8 (this machine's two, on the project's CI).
    let threads = b.eval("return Math.min(navigator.hardwareConcurrency, 8)");
    assert!(
        used.contains(&format!("relaxed SIMD, {threads} threads")),
        "{used}"
    );
    b.screenshot("hosting-threads");
    let (used, one_thread) = result(&format!("?model=shakespeare&prompt={prompt}&threads=1"));
    assert!(used.contains("(wasm, relaxed SIMD)"), "{used}");
    assert!(!threaded.is_empty());
    assert_eq!(
        threaded, one_thread,
        "the same prediction on 2 threads and on 1"
    );
    // wgpu in the worker built with threads (its memory shared, its futures woken across
    // threads) still drives WebGPU.
    b.open_page(&server, "?model=induction&engine=gpu", LOAD);
    b.wait_for(
        "a result from the GPU engine in the worker with threads",
        "const e = document.querySelector('[data-testid=engine-used]');
         return e && e.textContent.includes('GPU')",
        LOAD,
    );
    assert_no_violation(&server, "the worker with threads");
}
