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
fn top_prediction(name: &str, engine: &str, maps: usize, family: &str) -> (String, String) {
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
    (
        top.as_str().unwrap().to_string(),
        architecture.as_str().unwrap().to_string(),
    )
}

fn check(name: &str, maps: usize, family: &str) {
    let (_, _, want) = expected(name);
    let (cpu, architecture) = top_prediction(name, "cpu", maps, family);
    println!("{name}: {architecture}; top-1 {cpu:?}");
    assert_eq!(cpu, want, "{name}: the CPU engine's top-1");
    let (gpu, _) = top_prediction(name, "gpu", maps, family);
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
    let (cpu, architecture) = top_prediction("qwen2-bf16", "cpu", 12, "Qwen2");
    assert!(architecture.contains("bf16 weights"), "{architecture}");
    assert_eq!(cpu, want, "the CPU engine's top-1");
    let (gpu, _) = top_prediction("qwen2-bf16", "gpu", 12, "Qwen2");
    assert_eq!(gpu, cpu, "the GPU engine's top-1");
}

#[test]
fn a_gpt_neox_directory_from_disk_runs_on_both_engines() {
    // 2 layers × 4 heads, partial rotary, parallel residual.
    check("neox-parallel", 8, "GPT-NeoX");
}
