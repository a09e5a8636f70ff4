//! A loaded model with its engines and tokenizer: what the compute worker runs (`compute.rs`),
//! and the parts of it the page keeps to turn text into tokens and ids into labels
//! ([`ModelText`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use attn_gpu::{AnyEngine, EngineKind, EnginePair, GpuContext, GpuError, Readback};
use attn_model::engine::AttentionMaps;
use attn_model::{
    compare,
    load::{from_hf_source, HfSource},
    variant::{Kernel, KernelName},
    Captured, Comparison, Engine, HeadRoles, Hooks, LoadedTensors, Model, ModelConfig, Output,
    Tokenizer, TokenizerSpec, Variant,
};
use serde::{Deserialize, Serialize};

use crate::browser::{next_tick, now_ms};
use crate::protocol::MapsWanted;

/// The model as the page describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    /// The family and its structure in words, e.g. "Llama: RMSNorm, SwiGLU MLP; rotary (θ 500,
    /// 8 of 8 dims per head); grouped-query (6 query heads share 2 key/value heads)".
    pub architecture: String,
    pub tokenizer: Option<String>,
    /// Why a model that came with a tokenizer file has none (it takes token ids).
    pub tokenizer_note: Option<String>,
    pub examples: Vec<String>,
    /// The built-in task it was trained on (`metadata.task`), e.g. `sort`.
    pub task: Option<String>,
    /// Trained with linear attention (`metadata.attention_kernel = "linear"`): the page runs it
    /// with that kernel.
    pub linear_attention: bool,
}

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

/// One forward's results as the page shows them. Its logits stay in the worker (a real
/// vocabulary makes them megabytes per run, and the page needs only `top` and `comparison`), and
/// only the attention maps the page shows cross ([`MapsWanted`]), so a result of a model with
/// hundreds of heads holds only those, not a buffer of every map.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// The input it ran on.
    pub tokens: Vec<u32>,
    /// The shape of the model's maps: `n_layer × n_head` maps of `seq_len × seq_len`.
    pub seq_len: usize,
    pub n_layer: usize,
    pub n_head: usize,
    /// The variant's KV-cache bytes per token.
    pub kv_bytes_per_token: usize,
    /// The most probable next outputs after the last position, most probable first.
    pub top: Vec<(u32, f32)>,
    /// For a variant's result: its cost against the unmodified model on the same input.
    pub comparison: Option<Comparison>,
    pub millis: f64,
    pub engine: EngineKind,
    /// The maps it holds.
    pub maps: MapsWanted,
    /// The maps read back in full.
    pub full: SentMaps,
    /// The grid's maps at display resolution, when `maps.pooled` asks for them (their full maps
    /// are not sent).
    pub thumbnails: SentMaps,
    /// Each head's role scores on this input (`attn_model::roles_on_input`), computed here from
    /// the full maps the page may not get; NaN for maps not read back, `None` when no token
    /// repeats.
    pub input_roles: Option<Vec<HeadRoles>>,
}

/// Some of a model's attention maps, each `side × side`: in full (`factor` 1) or pooled to
/// display resolution by `factor` (`attn_model::thumbnail`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SentMaps {
    /// Map cells per cell here along each side.
    pub factor: usize,
    /// Cells a side of each map.
    pub side: usize,
    /// Which maps, as `layer · n_head + head`, in ascending order (the order of `values`).
    pub maps: Vec<u32>,
    /// `side²` values per map, one map after another.
    #[serde(with = "crate::protocol::f32_bytes")]
    pub values: Vec<f32>,
}

impl SentMaps {
    fn new(t: usize, factor: usize) -> SentMaps {
        SentMaps {
            factor,
            side: attn_model::thumbnail::thumbnail_side(t, factor),
            ..SentMaps::default()
        }
    }

    /// Map `layer · n_head + head`, if it is here.
    pub fn get(&self, index: usize) -> Option<&[f32]> {
        let at = self.maps.binary_search(&u32::try_from(index).ok()?).ok()?;
        let size = self.side * self.side;
        self.values.get(at * size..(at + 1) * size)
    }
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

/// How many next outputs a result lists.
pub const TOP_OUTPUTS: usize = 10;

impl RunResult {
    /// The result the page gets from a full `output`: everything but the logits, which give its
    /// top outputs (and, against `baseline`, the comparison).
    pub fn for_page(
        output: Output,
        baseline: Option<&Output>,
        tokens: &[u32],
        timing: (f64, EngineKind),
        maps: MapsWanted,
    ) -> RunResult {
        let top = output.top_at(output.seq_len - 1, TOP_OUTPUTS);
        let comparison = baseline
            .filter(|b| b.seq_len == output.seq_len)
            .map(|b| compare(b, &output, tokens));
        RunResult::of(&output, tokens, (top, comparison), timing, maps)
    }

    /// What the page gets of `output`'s maps (those `maps` names that were read back: the
    /// grid's as thumbnails when it pools them, the rest in full), with its top outputs and
    /// comparison.
    pub fn of(
        output: &Output,
        tokens: &[u32],
        (top, comparison): (Vec<(u32, f32)>, Option<Comparison>),
        (millis, engine): (f64, EngineKind),
        maps: MapsWanted,
    ) -> RunResult {
        let t = output.seq_len;
        let factor = maps.pooled.unwrap_or(1);
        let (mut full, mut thumbnails) = (SentMaps::new(t, 1), SentMaps::new(t, factor));
        for (index, map) in output.attention.chunks_exact((t * t).max(1)).enumerate() {
            // A map not read back is NaN throughout.
            if map[0].is_nan() {
                continue;
            }
            let at = (index / output.n_head, index % output.n_head);
            let (sent, values) = if maps.as_thumbnail(at) {
                let pooled = attn_model::thumbnail::pool_map(map, t, factor);
                (&mut thumbnails, std::borrow::Cow::Owned(pooled))
            } else {
                (&mut full, std::borrow::Cow::Borrowed(map))
            };
            sent.maps.push(index as u32);
            sent.values.extend_from_slice(&values);
        }
        RunResult {
            input_roles: attn_model::roles_on_input(output, tokens),
            tokens: tokens.to_vec(),
            seq_len: t,
            n_layer: output.n_layer,
            n_head: output.n_head,
            kv_bytes_per_token: output.kv_bytes_per_token,
            top,
            comparison,
            millis,
            engine,
            maps,
            full,
            thumbnails,
        }
    }

    /// Map `(layer, head)` in full, if the result holds it.
    pub fn attention_map(&self, layer: usize, head: usize) -> Option<&[f32]> {
        self.full.get(layer * self.n_head + head)
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

    fn set_variant(&mut self, variant: &Variant) -> Result<(), GpuError> {
        self.0.set_variant(variant)
    }

    async fn forward(&mut self, tokens: &[u32], readback: &Readback) -> Result<Output, GpuError> {
        next_tick().await;
        self.0.forward(tokens, readback).await
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
