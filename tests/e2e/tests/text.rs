//! Text from outside stays text: a model file whose name and vocabulary are HTML markup (the
//! name shows in the loading message), and a prompt made of the same markup, render as the
//! characters they are — no element is created and no script runs.

use std::time::Duration;

use attn_e2e::{artifacts_dir, dist_dir, Browser, StaticServer, WebGpu};
use attn_model::{Model, ModelConfig, TokenizerSpec};

const LOAD: Duration = Duration::from_secs(90);

/// Markup that would create an element (and run a script) if it reached the DOM as HTML.
const IMG: &str = "<img/class=pwn/src=x/onerror=window.pwned=1>";
const BOLD: &str = "<b/class=pwn>bold</b>";

#[test]
fn markup_in_a_file_name_a_vocabulary_and_the_prompt_renders_as_text() {
    let dir = artifacts_dir().join("test-models").join("markup");
    std::fs::create_dir_all(&dir).unwrap();
    let vocab: Vec<String> = [
        IMG,
        BOLD,
        "<script>window.pwned=2</script>",
        "&amp;",
        "a",
        "b",
    ]
    .map(String::from)
    .to_vec();
    let mut model = Model::random(ModelConfig::tiny(vocab.len()), 3, 0.3).unwrap();
    model.tokenizer = Some(TokenizerSpec::Words { vocab });
    let file = dir.join("<i class=pwn>markup.safetensors");
    std::fs::write(&file, model.to_safetensors_bytes().unwrap()).unwrap();

    let server = StaticServer::start(dist_dir());
    let b = Browser::start(WebGpu::Enabled);
    b.open_page(&server, "?engine=cpu", LOAD);
    b.pick_files("#model-files", &[file]);
    // ModelConfig::tiny has 2 layers × 4 heads; the built-in model 2 × 2.
    b.wait_for(
        "the markup model's 8 maps",
        "return document.querySelectorAll('[data-testid=heatmap-cell]').length === 8",
        LOAD,
    );
    let prompt = format!("{IMG} {BOLD} <script>window.pwned=2</script> &amp; a b");
    b.type_prompt(&prompt);
    let chips = b.wait_for(
        "six token chips",
        "const c = [...document.querySelectorAll('[data-testid=token-chips] .chip')];
         return c.length === 6 && document.querySelector('[data-testid=output-topk-current] li')
             ? c.map(e => e.textContent).join(' ') : ''",
        LOAD,
    );
    let chips = chips.as_str().unwrap();
    assert!(chips.contains(IMG) && chips.contains(BOLD), "{chips}");
    assert!(chips.contains("&amp;"), "entities stay as typed: {chips}");
    // The predictions list vocabulary entries too: all of them as text.
    let listed =
        b.eval("return document.querySelector('[data-testid=output-topk-current]').textContent");
    assert!(listed.as_str().unwrap().contains('<'), "{listed}");
    let created = b.eval(
        "return [document.querySelectorAll('.pwn').length, document.querySelectorAll('script:not([src])').length,
                 window.pwned === undefined]",
    );
    assert_eq!(created, serde_json::json!([0, 0, true]));
    b.screenshot("text-stays-text");
}
