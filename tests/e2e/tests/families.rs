//! Hugging Face directories of the Llama and GPT-NeoX families opened in the page from disk (the
//! files of `tests/fixtures/families/`, written by transformers, picked in the file input): the
//! page names the architecture, tokenizes the prompt with the directory's tokenizer.json as
//! transformers' tokenizer did, draws L × H maps, and predicts the token transformers predicts —
//! on the CPU engine and on the WebGPU engine alike.

use std::path::PathBuf;
use std::time::Duration;

use attn_e2e::{dist_dir, repo_root, Browser, StaticServer, WebGpu};
use attn_model::{LoadedTensors, Tokenizer};

const LOAD: Duration = Duration::from_secs(120);

fn fixture_dir(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures/families").join(name)
}

/// The fixture's prompt, its ids, and the label of the token transformers ranks first after it.
fn expected(name: &str) -> (String, Vec<u32>, String) {
    let bytes = std::fs::read(fixture_dir(name).join("expected.safetensors")).unwrap();
    let file = LoadedTensors::from_bytes(&bytes).unwrap();
    let meta = file.metadata();
    let ids: Vec<u32> = serde_json::from_str(&meta["input_ids"]).unwrap();
    let logits = file.values("logits").unwrap();
    let vocab = logits.len() / ids.len();
    let last = &logits[logits.len() - vocab..];
    let best = (0..vocab).fold(0, |best, i| if last[i] > last[best] { i } else { best });
    let json = std::fs::read_to_string(fixture_dir(name).join("tokenizer.json")).unwrap();
    let tokenizer = Tokenizer::from_tokenizer_json(&json).unwrap();
    let label = tokenizer.token_label(best as u32).unwrap();
    (meta["prompt"].clone(), ids, label)
}

/// Opens the page on `engine`, picks the directory's `config.json`, `model.safetensors` and
/// `tokenizer.json` in the file input, waits for its `maps` maps and the architecture line,
/// types the fixture's prompt and returns the page's top prediction (and the architecture line).
/// With `lesson`, a lesson step for any language model then runs on the model from disk.
fn top_prediction(
    name: &str,
    engine: &str,
    maps: usize,
    family: &str,
    lesson: bool,
) -> (String, String) {
    let server = StaticServer::start(dist_dir());
    let b = Browser::start(WebGpu::Enabled);
    b.goto(&server.url(&format!("index.html?engine={engine}")));
    b.wait_for(
        "the built-in model",
        "return document.querySelectorAll('[data-testid=heatmap-cell]').length",
        LOAD,
    );
    let files = ["config.json", "model.safetensors", "tokenizer.json"];
    b.pick_files("#model-files", &files.map(|f| fixture_dir(name).join(f)));
    let architecture = b.wait_for(
        &format!("{name} with {maps} maps"),
        &format!(
            "const facts = document.querySelector('.model-panel .architecture');
             return document.querySelectorAll('[data-testid=heatmap-cell]').length === {maps}
                 && facts && facts.textContent.startsWith('{family}:') ? facts.textContent : ''"
        ),
        LOAD,
    );
    let (prompt, ids, _) = expected(name);
    b.type_prompt(&prompt);
    let top = b.wait_for(
        "the prediction after the fixture's ids",
        &format!(
            "const chips = document.querySelectorAll('[data-testid=token-chips] .chip').length;
             const used = document.querySelector('[data-testid=engine-used]');
             const top = document.querySelector('[data-testid=output-topk-current] li .tok');
             return chips === {} && used && used.textContent.includes('{}') && top
                 ? top.textContent : ''",
            ids.len(),
            engine.to_uppercase()
        ),
        LOAD,
    );
    b.screenshot(&format!("families-{name}-{engine}"));
    if lesson {
        lesson_on_your_model(&b, maps, family);
    }
    (
        top.as_str().unwrap().to_string(),
        architecture.as_str().unwrap().to_string(),
    )
}

/// With a model open from disk, the lesson list offers the steps that run on it; the
/// induction-heads step for any language model runs on it — the model stays (its `maps` maps,
/// its `family` line), the step says so, and the measurement ends with a number over 20
/// repeated random sequences, its strip, and a verdict expected to be "reproduced" (the built-in
/// model's expected exception does not carry over).
fn lesson_on_your_model(b: &Browser, maps: usize, family: &str) {
    let offer =
        "document.querySelector('[data-lesson-id=induction-heads] [data-testid=lesson-on-yours]')";
    let label = b.wait_for(
        "the lesson list's offer to run on your model",
        &format!("const e = {offer}; return e ? e.textContent : ''"),
        LOAD,
    );
    assert!(label.as_str().unwrap().contains("step 4"), "{label}");
    b.eval(&format!("{offer}.click()"));
    let says = b.wait_for(
        "the step saying it runs on your model",
        "const e = document.querySelector('[data-testid=lesson-runs-on-yours]'); return e ? e.textContent : ''",
        LOAD,
    );
    assert!(says.as_str().unwrap().contains("From disk"), "{says}");
    b.wait_for(
        "the experiment's button, on the model from disk",
        "const e = document.querySelector('[data-testid=lesson-measure]'); return e && !e.disabled",
        LOAD,
    );
    b.eval("document.querySelector('[data-testid=lesson-measure]').click()");
    let done = b.wait_for(
        "the measurement on the model from disk",
        "const error = document.querySelector('[data-testid=lesson-measure-error]');
         if (error) return 'error: ' + error.textContent;
         return document.querySelector('[data-testid=lesson-step] [data-testid=plot]') ? 'plot' : ''",
        LOAD,
    );
    assert_eq!(done, "plot");
    let shown = b.eval(
        "const r = document.querySelector('[data-testid=lesson-result]');
         const facts = document.querySelector('.model-panel .architecture');
         return {
           verdict: r.getAttribute('data-verdict'),
           expected: r.getAttribute('data-expected'),
           strip: Number(r.querySelector('[data-testid=lesson-strip]').getAttribute('data-values')),
           maps: document.querySelectorAll('[data-testid=heatmap-cell]').length,
           family: facts ? facts.textContent : '',
         }",
    );
    println!("induction-heads step 4 on the model from disk: {shown}");
    assert_eq!(shown["strip"], 20, "{shown}");
    assert_eq!(shown["expected"], "reproduced", "{shown}");
    assert!(
        shown["verdict"].as_str().is_some_and(|v| !v.is_empty()),
        "{shown}"
    );
    assert_eq!(
        shown["maps"], maps,
        "the model from disk is still shown: {shown}"
    );
    assert!(
        shown["family"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{family}:")),
        "{shown}"
    );
    b.screenshot("lesson-on-your-model");
    b.assert_no_page_panic();
}

fn check(name: &str, maps: usize, family: &str) {
    let (_, _, want) = expected(name);
    // The Llama directory also runs a lesson step on the CPU engine.
    let lesson = family == "Llama";
    let (cpu, architecture) = top_prediction(name, "cpu", maps, family, lesson);
    println!("{name}: {architecture}; top-1 {cpu:?}");
    assert_eq!(cpu, want, "{name}: the CPU engine's top-1");
    let (gpu, _) = top_prediction(name, "gpu", maps, family, false);
    assert_eq!(gpu, cpu, "{name}: the GPU engine's top-1");
}

#[test]
fn a_llama_directory_from_disk_runs_on_both_engines() {
    // 2 layers × 6 query heads (2 key/value heads); a SentencePiece-style tokenizer with <s>.
    check("llama-gqa-tied", 12, "Llama");
}

#[test]
fn a_bfloat16_qwen2_directory_runs_in_sixteen_bits_on_both_engines() {
    // The bf16 copy of the Qwen2 fixture: its matrices stay bf16 in the worker and on the GPU.
    let (_, _, want) = expected("qwen2-bf16");
    let (cpu, architecture) = top_prediction("qwen2-bf16", "cpu", 12, "Qwen2", false);
    assert!(architecture.contains("bf16 weights"), "{architecture}");
    assert_eq!(cpu, want, "the CPU engine's top-1");
    let (gpu, _) = top_prediction("qwen2-bf16", "gpu", 12, "Qwen2", false);
    assert_eq!(gpu, cpu, "the GPU engine's top-1");
}

#[test]
fn a_gpt_neox_directory_from_disk_runs_on_both_engines() {
    // 2 layers × 4 heads, partial rotary, parallel residual.
    check("neox-parallel", 8, "GPT-NeoX");
}
