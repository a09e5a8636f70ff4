//! A loaded model with its engines and tokenizer: what the compute worker runs (`compute/`),
//! and the parts of it the page keeps to turn text into tokens and ids into labels
//! ([`ModelText`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use attn_gpu::{AnyEngine, EnginePair, GpuContext, GpuError, Readback};
use attn_model::engine::AttentionMaps;
use attn_model::{
    actadd_vector, lens_vector,
    load::{from_hf_source, HfSource},
    variant::{Kernel, KernelName},
    Captured, Engine, Hooks, LoadedTensors, Model, ModelConfig, Output, Steered, Steering,
    StepOutput, Tokenizer, TokenizerSpec, Variant,
};

use crate::browser::{next_tick, now_ms};
use crate::protocol::{MapsWanted, ModelInfo, SteerIds};

/// A model ready to run.
pub struct Session {
    /// The unmodified model, shared by the engines.
    pub model: Arc<Model>,
    /// The baseline and variant engines (CPU, or GPU on a hardware adapter). Taken out of the
    /// session while a task runs on them (see [`take_engines`]) and put back afterwards, so that
    /// no borrow is held across an await.
    pub engines: Option<EnginePair>,
    /// Text in and labels out.
    pub text: ModelText,
    pub info: ModelInfo,
}

/// An output's logits alone (its maps and norms left empty): what the worker keeps of the
/// baseline to compare the variant's results with.
pub fn logits_only(output: &mut Output) -> Output {
    Output {
        seq_len: output.seq_len,
        n_layer: output.n_layer,
        n_head: output.n_head,
        n_out: output.n_out,
        logits: std::mem::take(&mut output.logits),
        attention: Vec::new(),
        head_out_norms: Vec::new(),
        kv_bytes_per_token: output.kv_bytes_per_token,
    }
}

/// The shared, non-reactive session (engines are not `Send`).
pub type SessionCell = Rc<RefCell<Option<Session>>>;

/// Takes the session's engines for one task, waiting while another task holds them. `None` when
/// there is no session. (They may belong to a model installed while waiting: callers that care
/// check, as the worker's `take_current` does.)
pub async fn take_engines(cell: &SessionCell) -> Option<EnginePair> {
    loop {
        {
            let mut guard = cell.borrow_mut();
            let session = guard.as_mut()?;
            if let Some(pair) = session.engines.take() {
                return Some(pair);
            }
        }
        next_tick().await;
    }
}

/// Gives the engines back after a task, unless the session was replaced meanwhile (then they
/// belong to the old model and are dropped).
pub fn return_engines(cell: &SessionCell, pair: EnginePair) {
    if let Some(s) = cell.borrow_mut().as_mut() {
        if s.engines.is_none() && Arc::ptr_eq(&s.model, pair.baseline.base()) {
            s.engines = Some(pair);
        }
    }
}

/// Runs one forward of `pair` (the baseline, or `variant`), timed, reading back what the page
/// shows: every logit (for the cost of the change) and the maps `maps` (the grid's layers and
/// the enlarged map; none for a baseline whose maps the page already has); no panel shows the
/// head norms, so they stay on the engine (NaN). Returns the full output and the milliseconds.
pub async fn run_timed(
    pair: &mut EnginePair,
    baseline: bool,
    (variant, maps): (&Variant, Option<&MapsWanted>),
    tokens: &[u32],
) -> (Result<(Output, f64), GpuError>, Option<GpuError>) {
    let start = now_ms();
    let c = &pair.model().config;
    let readback = Readback {
        head_out_norms: false,
        attention: maps.map_or(AttentionMaps::None, |m| m.readback(c.n_layer, c.n_head)),
        ..Readback::everything()
    };
    let (output, failure) = pair.run(baseline, variant, tokens, &readback).await;
    (output.map(|o| (o, now_ms() - start)), failure)
}

/// [`run_timed`] of the variant under steering: the ActAdd vector from the two prompts on the
/// variant engine, then its forward with the vector added (attn-model's `Steered`).
pub async fn run_steered(
    pair: &mut EnginePair,
    (variant, maps): (&Variant, &MapsWanted),
    tokens: &[u32],
    steer: &SteerIds,
) -> Result<(Output, f64), GpuError> {
    let start = now_ms();
    let c = &pair.model().config;
    let readback = Readback {
        head_out_norms: false,
        attention: maps.readback(c.n_layer, c.n_head),
        ..Readback::everything()
    };
    let mut steered = steered(&mut pair.variant, variant, steer, tokens).await?;
    let output = steered.forward(tokens, &readback).await?;
    Ok((output, now_ms() - start))
}

/// `engine` on `variant`, steered as `steer` asks (the ActAdd vector computed on it, or the lens
/// direction scaled to the stream of `tokens`, the input the page shows).
pub async fn steered<'a, E: Engine<Error = GpuError>>(
    engine: &'a mut E,
    variant: &Variant,
    steer: &SteerIds,
    tokens: &[u32],
) -> Result<Steered<'a, E>, GpuError> {
    if engine.variant() != &variant.normalised() {
        engine.set_variant(variant)?;
    }
    let vector = match (steer.lens, steer.plus.as_slice()) {
        (true, [toward]) => {
            let away = steer.minus.first().copied();
            lens_vector(engine, tokens, steer.layer, (*toward, away)).await?
        }
        _ => actadd_vector(engine, &steer.plus, &steer.minus, steer.layer).await?,
    };
    let steering = Steering {
        layer: steer.layer,
        vector,
        coefficient: steer.coefficient,
        from: steer.from,
    };
    Steered::new(engine, steering)
}

/// An engine that lets the event loop run before each forward: in the worker, the analyses'
/// loops (importance, generation) then send their progress and notice a cancel between forwards.
pub struct Yielding<'a>(pub &'a mut AnyEngine);

impl Engine for Yielding<'_> {
    type Error = GpuError;

    fn model(&self) -> &Model {
        self.0.model()
    }

    fn variant(&self) -> &Variant {
        self.0.variant()
    }

    fn prepared(&self) -> &attn_model::PreparedModel {
        self.0.prepared()
    }

    fn set_variant(&mut self, variant: &Variant) -> Result<(), GpuError> {
        self.0.set_variant(variant)
    }

    async fn forward_hooked(
        &mut self,
        tokens: &[u32],
        readback: &Readback,
        hooks: &Hooks,
    ) -> Result<(Output, Captured), GpuError> {
        next_tick().await;
        self.0.forward_hooked(tokens, readback, hooks).await
    }

    async fn prefill(
        &mut self,
        tokens: &[u32],
        readback: &Readback,
    ) -> Result<Option<Output>, GpuError> {
        next_tick().await;
        self.0.prefill(tokens, readback).await
    }

    async fn decode_step(&mut self, token: u32) -> Result<StepOutput, GpuError> {
        next_tick().await;
        self.0.decode_step(token).await
    }

    fn kv_cache_bytes(&self) -> Option<usize> {
        self.0.kv_cache_bytes()
    }
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
            architecture: format!(
                "{}: {}; {}; {}; {}",
                c.family.label(),
                c.block_label(),
                c.positional_label(),
                c.kv_layout_label(),
                model.weights_label()
            ),
            tokenizer: tokenizer.as_ref().map(|t| t.kind().to_string()),
            tokenizer_note: model
                .metadata
                .get("tokenizer_note")
                .and_then(|t| t.as_str())
                .map(str::to_string),
            examples,
            task: model
                .metadata
                .get("task")
                .and_then(|t| t.as_str())
                .map(str::to_string),
            linear_attention: model
                .metadata
                .get("attention_kernel")
                .is_some_and(|k| k == "linear"),
        };
        // A classifier's outputs are classes, not tokens: name them from `metadata.classes`.
        let classes = model
            .metadata
            .get("classes")
            .and_then(|c| serde_json::from_value::<Vec<String>>(c.clone()).ok())
            .filter(|c| Some(c.len()) == model.config.n_classes);
        let model = Arc::new(model);
        let engines = with_native_kernel(EnginePair::cpu(model.clone()), &info)?;
        Ok(Session {
            text: ModelText {
                tokenizer,
                classes,
                config: model.config.clone(),
            },
            model,
            engines: Some(engines),
            info,
        })
    }

    /// Moves the engines onto the GPU of `ctx` (one upload of the weights for both).
    pub fn use_gpu(&mut self, ctx: &GpuContext) -> Result<(), String> {
        let pair = EnginePair::gpu(ctx, self.model.clone());
        self.engines = Some(with_native_kernel(pair, &self.info)?);
        Ok(())
    }
}

/// The pair with its baseline — the unmodified model — run with the kernel its weights were
/// trained with: linear attention for a model trained so (softmax is what it never saw), so
/// that the cost of a change is measured from what the model is.
fn with_native_kernel(
    pair: Result<EnginePair, GpuError>,
    info: &ModelInfo,
) -> Result<EnginePair, String> {
    let mut pair = pair.map_err(|e| e.to_string())?;
    if info.linear_attention {
        let native = Variant {
            kernel: Some(Kernel::Named(KernelName::Linear)),
            ..Variant::default()
        };
        pair.baseline
            .set_variant(&native)
            .map_err(|e| e.to_string())?;
    }
    Ok(pair)
}

/// What turns text into tokens and ids into labels: the tokenizer, a classifier's class names,
/// and the limits an input is checked against. The worker builds it with the model; the page
/// builds the same from the parts the worker sends back ([`ModelText::from_parts`]).
pub struct ModelText {
    pub tokenizer: Option<Tokenizer>,
    /// Class names of a classifier, in output order.
    pub classes: Option<Vec<String>>,
    pub config: ModelConfig,
}

impl ModelText {
    /// From a tokenizer description, class names and the model's config.
    pub fn from_parts(
        spec: Option<TokenizerSpec>,
        classes: Option<Vec<String>>,
        config: ModelConfig,
    ) -> Result<Self, String> {
        let tokenizer = spec
            .map(Tokenizer::from_spec)
            .transpose()
            .map_err(|e| e.to_string())?;
        Ok(ModelText {
            tokenizer,
            classes,
            config,
        })
    }

    /// The input box as the model reads it: [`ModelText::tokenize`], keeping the last `n_ctx`
    /// tokens of a longer input, with a notice saying how many were left out.
    pub fn tokenize_clamped(&self, text: &str) -> Result<(Vec<u32>, Option<String>), String> {
        let mut tokens = self.tokenize_unchecked(text)?;
        let n_ctx = self.config.n_ctx;
        let notice = (tokens.len() > n_ctx).then(|| {
            let dropped = tokens.len() - n_ctx;
            tokens.drain(..dropped);
            format!(
                "The input has {} tokens and the model reads at most {n_ctx}: the first {dropped} \
                 are left out.",
                n_ctx + dropped
            )
        });
        attn_model::forward::check_tokens(&self.config, &tokens).map_err(|e| e.to_string())?;
        Ok((tokens, notice))
    }

    /// Turns the input box into tokens: text through the tokenizer, or comma/space separated ids
    /// for a model without one. Checks length and vocabulary.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, String> {
        let tokens = self.tokenize_unchecked(text)?;
        attn_model::forward::check_tokens(&self.config, &tokens).map_err(|e| e.to_string())?;
        Ok(tokens)
    }

    fn tokenize_unchecked(&self, text: &str) -> Result<Vec<u32>, String> {
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

    /// `ids` as text, when there is a tokenizer.
    pub fn decode(&self, ids: &[u32]) -> Option<String> {
        self.tokenizer.as_ref().and_then(|t| t.decode(ids).ok())
    }
}

/// The most a model's weights may take in the page, as held (16-bit checkpoints stay 16-bit,
/// f32 ones take 4 bytes a value): the compute worker's memory is a wasm32 address space (4 GiB
/// at most), which also holds the activations, a matrix widened while it is used, and the
/// tokenizer.
pub const MAX_MODEL_BYTES: u64 = 5 << 29;

/// Fails, naming what would fit, when the weights take more than [`MAX_MODEL_BYTES`] in memory.
pub fn check_fits(what: &str, memory_bytes: u64) -> Result<(), String> {
    if memory_bytes <= MAX_MODEL_BYTES {
        return Ok(());
    }
    let gb = |bytes: u64| bytes as f64 / 1e9;
    Err(format!(
        "{what} needs {:.1} GB for its weights; the page holds models up to {:.1} GB (about {} M \
         parameters in 16 bits, {} M in 32). The command-line tool `attn` runs larger ones.",
        gb(memory_bytes),
        gb(MAX_MODEL_BYTES),
        MAX_MODEL_BYTES / 2 / 1_000_000,
        MAX_MODEL_BYTES / 4 / 1_000_000
    ))
}

/// The most a generation's KV cache may hold in the worker: a quarter of what the weights may
/// take, beside them in the same wasm32 memory.
pub const MAX_KV_CACHE_BYTES: u64 = MAX_MODEL_BYTES / 4;

/// Fails before a generation starts, saying what would fit, when its KV cache — `positions`
/// positions under `prepared`'s variant — would hold more than [`MAX_KV_CACHE_BYTES`].
pub fn check_cache_fits(
    prepared: &attn_model::PreparedModel,
    positions: usize,
) -> Result<(), String> {
    let bytes = attn_model::kv_cache_bytes(prepared, positions) as u64;
    if bytes <= MAX_KV_CACHE_BYTES {
        return Ok(());
    }
    let per_position = attn_model::kv_cache_bytes(prepared, 1).max(1) as u64;
    Err(format!(
        "The KV cache would hold {:.0} MB for {positions} positions; the page keeps at most {:.0} \
         MB ({} positions with these settings). Generate fewer tokens from a shorter prompt, or \
         make the cache smaller: fewer key/value heads, a latent rank, a sliding window.",
        bytes as f64 / 1e6,
        MAX_KV_CACHE_BYTES as f64 / 1e6,
        MAX_KV_CACHE_BYTES / per_position
    ))
}

/// The files a person picked, read: text files whole, safetensors files piece by piece into
/// their tensors (see the compute worker's `read_picked`).
#[derive(Default)]
pub struct PickedFiles {
    pub texts: HashMap<String, String>,
    pub tensors: Vec<(String, LoadedTensors)>,
}

impl HfSource for PickedFiles {
    fn text(&mut self, name: &str) -> attn_model::Result<Option<String>> {
        Ok(self.texts.get(name).cloned())
    }

    fn tensors(&mut self, name: &str) -> attn_model::Result<Option<LoadedTensors>> {
        let at = self.tensors.iter().position(|(n, _)| n == name);
        Ok(at.map(|i| self.tensors.swap_remove(i).1))
    }
}

impl PickedFiles {
    /// The model the files make: a project `.safetensors`, or a Hugging Face directory's
    /// `config.json` + `model.safetensors` or its shards (+ `vocab.json` and `merges.txt`, or
    /// `tokenizer.json`).
    pub fn into_model(mut self) -> Result<Model, String> {
        if self.texts.contains_key("config.json") {
            return from_hf_source(&mut self).map_err(|e| e.to_string());
        }
        match self.tensors.pop() {
            Some((_, loaded)) => Model::from_loaded(loaded).map_err(|e| e.to_string()),
            None => Err(
                "pick a model .safetensors file, or a Hugging Face directory's config.json and \
                 model.safetensors (with vocab.json + merges.txt or tokenizer.json)"
                    .into(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_input_keeps_its_last_context_of_tokens_and_says_so() {
        let config = ModelConfig {
            n_ctx: 4,
            ..ModelConfig::tiny(10)
        };
        let text = ModelText::from_parts(None, None, config).unwrap();
        let (tokens, notice) = text.tokenize_clamped("1 2 3 4 5 6").unwrap();
        assert_eq!(tokens, [3, 4, 5, 6]);
        assert_eq!(
            notice.as_deref(),
            Some("The input has 6 tokens and the model reads at most 4: the first 2 are left out.")
        );
        assert_eq!(text.tokenize_clamped("1 2").unwrap(), (vec![1, 2], None));
        // Out-of-vocabulary ids are still an error; the plain tokenizer still checks length.
        assert!(text.tokenize_clamped("1 99").is_err());
        assert!(text.tokenize("1 2 3 4 5").is_err());
    }

    #[test]
    fn a_cache_over_the_budget_is_refused_with_what_fits() {
        // A long-context rotary model: 4 layers × 2 × 4 heads × 64 dims × 4 bytes = 8,192 bytes
        // a position.
        let config = ModelConfig {
            n_ctx: 200_000,
            d_model: 256,
            n_head: 4,
            n_kv_head: Some(4),
            n_layer: 4,
            d_mlp: Some(64),
            ..ModelConfig::tiny_llama(10)
        };
        let model = std::sync::Arc::new(Model::random(config, 0, 0.02).unwrap());
        let full = attn_model::prepare(&model, &Variant::default()).unwrap();
        assert!(check_cache_fits(&full, 1000).is_ok());
        let err = check_cache_fits(&full, 100_000).unwrap_err();
        assert!(err.contains("819 MB for 100000 positions"), "{err}");
        assert!(
            err.contains("(81920 positions with these settings)"),
            "{err}"
        );
        // One key/value head for four: the same text fits.
        let pooled = Variant::from_json(r#"{"kv_groups": 1}"#).unwrap();
        let pooled = attn_model::prepare(&model, &pooled).unwrap();
        assert!(check_cache_fits(&pooled, 8000).is_ok());
    }

    #[test]
    fn the_memory_check_says_what_fits() {
        assert!(check_fits("SmolLM2-360M", 362_000_000 * 4).is_ok());
        // 16-bit checkpoints are held in 16 bits: TinyLlama fits as bf16, not as f32.
        assert!(check_fits("TinyLlama-1.1B (bf16)", 1_100_000_000 * 2).is_ok());
        let err = check_fits("TinyLlama-1.1B", 1_100_000_000 * 4).unwrap_err();
        assert!(err.contains("TinyLlama-1.1B needs 4.4 GB"), "{err}");
        assert!(
            err.contains("about 1342 M parameters in 16 bits, 671 M in 32"),
            "{err}"
        );
    }
}
