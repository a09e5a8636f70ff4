//! A loaded model with its engines and tokenizer: what the page runs. Kept out of the reactive
//! graph (engines are not `Send` on the web) and reached through a local `StoredValue`.

use attn_gpu::{GpuContext, GpuEngine, Readback};
use attn_model::{
    head_roles, load::hf_tokenizer, prepare, CpuEngine, HeadRoles, Model, Output, Tokenizer,
    Variant,
};

use crate::browser::now_ms;

/// The model as the page describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    pub title: String,
    pub description: String,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub d_model: usize,
    pub d_head: usize,
    pub n_ctx: usize,
    pub causal: bool,
    pub classifier: bool,
    pub parameters: usize,
    pub tokenizer: Option<&'static str>,
    pub examples: Vec<String>,
    /// The built-in task it was trained on (`metadata.task`), e.g. `sort`.
    pub task: Option<String>,
}

/// A model ready to run.
pub struct Session {
    /// The reference engine. It runs head importance, generation and role scores, and every
    /// forward when the page is not on the GPU engine.
    pub engine: CpuEngine,
    /// The GPU engines when the page runs on WebGPU. Taken out of the session while a forward is
    /// in flight (see [`GpuPair::run`]) and put back afterwards.
    pub gpu: Option<GpuPair>,
    pub tokenizer: Option<Tokenizer>,
    /// Class names of a classifier, in output order.
    pub classes: Option<Vec<String>>,
    pub info: ModelInfo,
}

/// Two GPU engines over one upload of the weights: the unmodified model (the baseline every
/// comparison is against) and the variant being explored, so that changing a control never
/// re-prepares the baseline.
pub struct GpuPair {
    pub baseline: GpuEngine,
    pub variant: GpuEngine,
}

impl GpuPair {
    /// Uploads `model` to the device of `ctx`.
    pub fn new(ctx: &GpuContext, model: Model) -> Result<Self, String> {
        let baseline = GpuEngine::new(ctx, model).map_err(|e| e.to_string())?;
        let variant = baseline.share().map_err(|e| e.to_string())?;
        Ok(GpuPair { baseline, variant })
    }

    /// Runs `variant` (or the baseline when `baseline` is set) on `tokens`, timing the forward.
    pub async fn run(
        &mut self,
        baseline: bool,
        variant: &Variant,
        tokens: &[u32],
    ) -> Result<RunResult, attn_gpu::GpuError> {
        let engine = if baseline {
            &mut self.baseline
        } else {
            &mut self.variant
        };
        if !baseline && engine.variant() != &variant.normalised() {
            engine.set_variant(variant)?;
        }
        let start = now_ms();
        let output = engine.forward_with(tokens, &Readback::everything()).await?;
        Ok(RunResult {
            tokens: tokens.to_vec(),
            output,
            millis: now_ms() - start,
            engine: EngineUsed::Gpu,
        })
    }
}

/// Which engine produced a result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineUsed {
    Cpu,
    Gpu,
}

/// One forward's results as the page shows them.
#[derive(Clone, Debug, PartialEq)]
pub struct RunResult {
    /// The input it ran on.
    pub tokens: Vec<u32>,
    pub output: Output,
    pub millis: f64,
    pub engine: EngineUsed,
}

impl Session {
    /// Wraps a model; `title`, `description` and `examples` come from the manifest when known.
    pub fn new(
        model: Model,
        title: String,
        description: String,
        examples: Vec<String>,
    ) -> Result<Self, String> {
        let tokenizer = model.build_tokenizer().map_err(|e| e.to_string())?;
        let c = &model.config;
        let info = ModelInfo {
            title,
            description,
            n_layer: c.n_layer,
            n_head: c.n_head,
            n_kv_head: c.kv_heads(),
            d_model: c.d_model,
            d_head: c.d_head(),
            n_ctx: c.n_ctx,
            causal: c.causal,
            classifier: c.n_classes.is_some(),
            parameters: model.parameter_count(),
            tokenizer: tokenizer.as_ref().map(Tokenizer::kind),
            examples,
            task: model
                .metadata
                .get("task")
                .and_then(|t| t.as_str())
                .map(str::to_string),
        };
        // A classifier's outputs are classes, not tokens: name them from `metadata.classes`.
        let classes = model
            .metadata
            .get("classes")
            .and_then(|c| serde_json::from_value::<Vec<String>>(c.clone()).ok())
            .filter(|c| Some(c.len()) == model.config.n_classes);
        let engine = CpuEngine::new(model).map_err(|e| e.to_string())?;
        Ok(Session {
            engine,
            gpu: None,
            tokenizer,
            classes,
            info,
        })
    }

    /// Turns the input box into tokens: text through the tokenizer, or comma/space separated ids
    /// for a model without one. Checks length and vocabulary.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, String> {
        let tokens = match &self.tokenizer {
            Some(t) => t.encode(text).map_err(|e| e.to_string())?,
            None => text
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse::<u32>().map_err(|_| {
                        format!("{s:?} is not a token id (this model has no tokenizer)")
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        attn_model::forward::check_tokens(&self.engine.model().config, &tokens)
            .map_err(|e| e.to_string())?;
        Ok(tokens)
    }

    /// A readable label for a token.
    pub fn label(&self, id: u32) -> String {
        self.tokenizer
            .as_ref()
            .and_then(|t| t.token_label(id))
            .unwrap_or_else(|| id.to_string())
    }

    /// A readable label for output `id`: a class name for a classifier, else a token.
    pub fn output_label(&self, id: u32) -> String {
        match &self.classes {
            Some(classes) => classes
                .get(id as usize)
                .cloned()
                .unwrap_or_else(|| format!("class {id}")),
            None => self.label(id),
        }
    }

    /// Runs `variant` on `tokens` on the CPU engine, timing the forward.
    pub fn run(&mut self, variant: &Variant, tokens: &[u32]) -> Result<RunResult, String> {
        if self.engine.variant() != &variant.normalised() {
            self.engine
                .set_variant(variant)
                .map_err(|e| e.to_string())?;
        }
        let start = now_ms();
        let output = self.engine.forward(tokens).map_err(|e| e.to_string())?;
        Ok(RunResult {
            tokens: tokens.to_vec(),
            output,
            millis: now_ms() - start,
            engine: EngineUsed::Cpu,
        })
    }

    /// Head-role scores of the unmodified model.
    pub fn roles(&self) -> Vec<HeadRoles> {
        prepare(self.engine.model(), &Variant::default())
            .and_then(|p| head_roles(&p, 0))
            .unwrap_or_default()
    }
}

/// Builds a model from files the user picked: a project `.safetensors`, or a Hugging Face GPT-2
/// directory's `config.json` + `model.safetensors` (+ `vocab.json` and `merges.txt`, or
/// `tokenizer.json`).
pub fn model_from_files(files: &[(String, Vec<u8>)]) -> Result<Model, String> {
    const MAX_BYTES: usize = 512 << 20;
    if let Some((name, bytes)) = files.iter().find(|(_, b)| b.len() > MAX_BYTES) {
        return Err(format!(
            "{name} is {} MB; the playground loads models up to 512 MB",
            bytes.len() >> 20
        ));
    }
    let find = |name: &str| files.iter().find(|(n, _)| n == name).map(|(_, b)| b);
    let text = |name: &str| -> Result<Option<String>, String> {
        find(name)
            .map(|b| String::from_utf8(b.clone()).map_err(|_| format!("{name} is not UTF-8 text")))
            .transpose()
    };
    if let Some(config) = text("config.json")? {
        let weights = find("model.safetensors")
            .ok_or("a Hugging Face model needs model.safetensors next to config.json")?;
        let mut model = Model::from_hf_gpt2(&config, weights).map_err(|e| e.to_string())?;
        model.tokenizer = hf_tokenizer(
            text("vocab.json")?.as_deref(),
            text("merges.txt")?.as_deref(),
            text("tokenizer.json")?.as_deref(),
        )
        .map_err(|e| e.to_string())?;
        return Ok(model);
    }
    match files.iter().find(|(n, _)| n.ends_with(".safetensors")) {
        Some((_, bytes)) => Model::from_safetensors_bytes(bytes).map_err(|e| e.to_string()),
        None => Err(
            "pick a model .safetensors file, or a GPT-2 directory's config.json and \
                     model.safetensors (with vocab.json + merges.txt or tokenizer.json)"
                .into(),
        ),
    }
}
