//! Import of Hugging Face checkpoints: `config.json` plus one `model.safetensors` or the shards a
//! `model.safetensors.index.json` lists, as `transformers` saves them, for four families:
//!
//! - **GPT-2** (`GPT2LMHeadModel`): Conv1D weights stored `[in, out]`, a fused `c_attn`, names
//!   with or without the `transformer.` prefix, the causal-mask buffers older exports carry;
//! - **Llama** (`LlamaForCausalLM`: SmolLM, TinyLlama, Llama 3.x) and **Qwen2**
//!   (`Qwen2ForCausalLM`): RMSNorm, rotary positions, SwiGLU, native grouped-query attention,
//!   `nn.Linear` weights stored `[out, in]`;
//! - **GPT-NeoX** (`GPTNeoXForCausalLM`: Pythia): LayerNorm, partial rotary, parallel residual,
//!   a fused `query_key_value` laid out per head, the output head named `embed_out`.
//!
//! `config.json` is read in both forms found in the wild: as Hub checkpoints have it
//! (`rope_theta`, `rope_scaling`, `rotary_pct`, `rotary_emb_base` at the top level) and as
//! transformers 5 saves it (`rope_parameters`). Each family maps the parameter schema's names
//! ([`ModelConfig::parameters`]) onto its own; the model is then assembled by
//! [`Model::from_parameters`].

use serde::Deserialize;
use serde_json::Value;

use crate::config::{Activation, Family, ModelConfig, Norm, Positional, Rope, RopeScaling};
use crate::error::{ModelError, Result};
use crate::format::parse_json;
use crate::model::Model;
use crate::schema::{ParamRole, ParamSpec};
use crate::tensors::{LoadedTensors, TensorMap};
use crate::weights::Weights;

/// What the families this build reads, for messages.
pub const SUPPORTED: &str = "GPT-2 (gpt2), Llama / SmolLM / TinyLlama (llama), Qwen2 (qwen2) and \
                             GPT-NeoX / Pythia (gpt_neox)";

impl Model {
    /// Builds a model from the contents of a Hugging Face `config.json` and its safetensors
    /// files (one, or every shard of a sharded checkpoint, in any order).
    pub fn from_hf(config_json: &str, shards: &[&[u8]]) -> Result<Model> {
        let loaded = shards
            .iter()
            .map(|bytes| LoadedTensors::from_bytes(bytes))
            .collect::<Result<Vec<_>>>()?;
        Model::from_hf_loaded(config_json, loaded)
    }

    /// [`Model::from_hf`] on files already parsed (e.g. read piece by piece by a
    /// [`crate::TensorStream`]).
    pub fn from_hf_loaded(config_json: &str, shards: Vec<LoadedTensors>) -> Result<Model> {
        let (family, config) = hf_config(config_json)?;
        let mut tensors = TensorMap::from_loaded(shards, |name| stored_name(family, name))?;
        if config.tied_embeddings {
            // A stored copy of a tied head is the embedding itself; it adds nothing.
            let head = match family {
                Family::GptNeox => "embed_out.weight",
                _ => "lm_head.weight",
            };
            tensors.remove(head);
        }
        for layer in 0..config.n_layer {
            split_fused_qkv(family, &config, layer, &mut tensors)?;
        }
        let mut model = Model::from_parameters(config, |spec| {
            let (name, transpose) = hf_name(family, spec);
            let stored_shape: Vec<usize> = match transpose {
                true => spec.shape.iter().rev().copied().collect(),
                false => spec.shape.clone(),
            };
            let values = tensors.take(&name, &stored_shape)?;
            Ok(match transpose {
                true => transposed(&values, stored_shape[0], stored_shape[1]),
                false => values,
            })
        })?;
        tensors.finish()?;
        // Where generation stops: `eos_token_id` (one id, or a list of them).
        let raw: serde_json::Map<String, Value> = parse_json("config.json", config_json)?;
        if let Some(eos) = raw.get("eos_token_id").filter(|v| !v.is_null()) {
            model.metadata.insert("eos_token_id".into(), eos.clone());
        }
        Ok(model)
    }

    /// Builds a model from a GPT-2 `config.json` and one `model.safetensors`.
    pub fn from_hf_gpt2(config_json: &str, safetensors: &[u8]) -> Result<Model> {
        Model::from_hf(config_json, &[safetensors])
    }
}

/// The shard files a `model.safetensors.index.json` lists, each once, in the order first named.
pub fn shard_files(index_json: &str) -> Result<Vec<String>> {
    #[derive(Deserialize)]
    struct Index {
        weight_map: std::collections::BTreeMap<String, String>,
    }
    let index: Index = parse_json("model.safetensors.index.json", index_json)?;
    let mut files: Vec<String> = Vec::new();
    for file in index.weight_map.values() {
        if file.contains('/') || file.contains('\\') || file.starts_with('.') {
            return Err(ModelError::Config(format!(
                "the index names the shard `{file}`, which is not a file beside it"
            )));
        }
        if !files.contains(file) {
            files.push(file.clone());
        }
    }
    if files.is_empty() {
        return Err(ModelError::Config(
            "model.safetensors.index.json lists no tensors".into(),
        ));
    }
    Ok(files)
}

/// The family and the config of a Hugging Face `config.json`.
pub fn hf_config(config_json: &str) -> Result<(Family, ModelConfig)> {
    let raw: serde_json::Map<String, Value> = parse_json("config.json", config_json)?;
    let model_type = raw.get("model_type").and_then(Value::as_str);
    let architecture = raw
        .get("architectures")
        .and_then(|a| a.get(0))
        .and_then(Value::as_str);
    let family = match (model_type, architecture) {
        (Some("gpt2"), _) | (None, Some("GPT2LMHeadModel")) | (None, None) => Family::Gpt2,
        (Some("llama"), _) | (None, Some("LlamaForCausalLM")) => Family::Llama,
        (Some("qwen2"), _) | (None, Some("Qwen2ForCausalLM")) => Family::Qwen2,
        (Some("gpt_neox"), _) | (None, Some("GPTNeoXForCausalLM")) => Family::GptNeox,
        (other, arch) => {
            let named = other.or(arch).unwrap_or("unknown");
            return Err(ModelError::Config(format!(
                "model type `{named}` is not supported; this build reads {SUPPORTED}"
            )));
        }
    };
    let config = match family {
        Family::Gpt2 => gpt2_config(config_json)?,
        Family::Llama | Family::Qwen2 => llama_config(family, config_json, &raw)?,
        Family::GptNeox => neox_config(config_json, &raw)?,
    };
    config.validate()?;
    Ok((family, config))
}

fn yes() -> bool {
    true
}

fn default_eps() -> f32 {
    1e-5
}

/// The fields of a GPT-2 `config.json` that decide the architecture.
#[derive(Debug, Deserialize)]
struct Gpt2Config {
    vocab_size: usize,
    #[serde(alias = "n_ctx")]
    n_positions: usize,
    n_embd: usize,
    n_layer: usize,
    n_head: usize,
    #[serde(default)]
    n_inner: Option<usize>,
    #[serde(default = "default_gelu_new")]
    activation_function: String,
    #[serde(default = "default_eps")]
    layer_norm_epsilon: f32,
    #[serde(default = "yes")]
    tie_word_embeddings: bool,
    #[serde(default = "yes")]
    scale_attn_weights: bool,
    #[serde(default)]
    scale_attn_by_inverse_layer_idx: bool,
}

fn default_gelu_new() -> String {
    "gelu_new".into()
}

fn gpt2_config(json: &str) -> Result<ModelConfig> {
    let hf: Gpt2Config = parse_json("config.json", json)?;
    if !matches!(
        hf.activation_function.as_str(),
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast"
    ) {
        return Err(ModelError::Config(format!(
            "activation_function `{}` is not supported (the engine uses GELU's tanh \
             approximation, `gelu_new`)",
            hf.activation_function
        )));
    }
    if !hf.scale_attn_weights || hf.scale_attn_by_inverse_layer_idx {
        return Err(ModelError::Config(
            "only the standard 1/sqrt(d_head) attention scaling is supported".into(),
        ));
    }
    Ok(ModelConfig {
        vocab_size: hf.vocab_size,
        n_ctx: hf.n_positions,
        d_model: hf.n_embd,
        n_layer: hf.n_layer,
        n_head: hf.n_head,
        d_mlp: hf.n_inner,
        tied_embeddings: hf.tie_word_embeddings,
        layer_norm_eps: hf.layer_norm_epsilon,
        ..ModelConfig::tiny(hf.vocab_size)
    })
}

/// The fields of a Llama or Qwen2 `config.json` that decide the architecture.
#[derive(Debug, Deserialize)]
struct LlamaConfig {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default)]
    num_key_value_heads: Option<usize>,
    #[serde(default)]
    head_dim: Option<usize>,
    #[serde(default = "default_silu")]
    hidden_act: String,
    #[serde(default = "default_max_positions")]
    max_position_embeddings: usize,
    #[serde(default = "default_rms_eps")]
    rms_norm_eps: f32,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    #[serde(default)]
    use_sliding_window: bool,
    #[serde(default)]
    pretraining_tp: Option<usize>,
}

fn default_silu() -> String {
    "silu".into()
}
fn default_max_positions() -> usize {
    2048
}
fn default_rms_eps() -> f32 {
    1e-6
}

fn llama_config(
    family: Family,
    json: &str,
    raw: &serde_json::Map<String, Value>,
) -> Result<ModelConfig> {
    let hf: LlamaConfig = parse_json("config.json", json)?;
    if hf.hidden_act != "silu" {
        return Err(ModelError::Config(format!(
            "hidden_act `{}` is not supported (the Llama family uses `silu`)",
            hf.hidden_act
        )));
    }
    if hf.use_sliding_window {
        return Err(ModelError::Config(
            "use_sliding_window is not supported; the window is a variant you can set on the page"
                .into(),
        ));
    }
    if hf.pretraining_tp.is_some_and(|tp| tp > 1) {
        return Err(ModelError::Config(
            "pretraining_tp above 1 is not supported".into(),
        ));
    }
    check_head_dim(hf.head_dim, hf.hidden_size, hf.num_attention_heads)?;
    let d_head = hf.hidden_size / hf.num_attention_heads.max(1);
    // Qwen2 gives q, k and v (not o) a bias; Llama decides with `attention_bias`.
    let (qkv_bias, out_bias) = match family {
        Family::Qwen2 => (true, false),
        _ => (hf.attention_bias, hf.attention_bias),
    };
    Ok(ModelConfig {
        vocab_size: hf.vocab_size,
        n_ctx: hf.max_position_embeddings,
        d_model: hf.hidden_size,
        n_layer: hf.num_hidden_layers,
        n_head: hf.num_attention_heads,
        n_kv_head: hf.num_key_value_heads,
        d_mlp: Some(hf.intermediate_size),
        mlp: true,
        causal: true,
        tied_embeddings: hf.tie_word_embeddings,
        n_classes: None,
        layer_norm_eps: hf.rms_norm_eps,
        norm: Norm::RmsNorm,
        positional: Positional::Rope(rope(raw, d_head, 1.0, hf.max_position_embeddings)?),
        family,
        activation: Activation::Silu,
        gated_mlp: true,
        parallel_residual: false,
        qkv_bias,
        out_bias,
        mlp_bias: family == Family::Llama && hf.mlp_bias,
    })
}

/// The fields of a GPT-NeoX `config.json` that decide the architecture.
#[derive(Debug, Deserialize)]
struct NeoxConfig {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default)]
    head_dim: Option<usize>,
    #[serde(default = "default_gelu")]
    hidden_act: String,
    #[serde(default = "default_max_positions")]
    max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f32,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default = "yes")]
    use_parallel_residual: bool,
    #[serde(default = "yes")]
    attention_bias: bool,
}

fn default_gelu() -> String {
    "gelu".into()
}

fn neox_config(json: &str, raw: &serde_json::Map<String, Value>) -> Result<ModelConfig> {
    let hf: NeoxConfig = parse_json("config.json", json)?;
    let activation = match hf.hidden_act.as_str() {
        "gelu" => Activation::Gelu,
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
        other => {
            return Err(ModelError::Config(format!(
                "hidden_act `{other}` is not supported (GPT-NeoX models use `gelu`)"
            )))
        }
    };
    check_head_dim(hf.head_dim, hf.hidden_size, hf.num_attention_heads)?;
    let d_head = hf.hidden_size / hf.num_attention_heads.max(1);
    // Hub checkpoints say `rotary_pct`; transformers 5 says `partial_rotary_factor` inside
    // `rope_parameters` (read by `rope`). transformers' default is 0.25.
    let rotary_pct = raw
        .get("rotary_pct")
        .or_else(|| raw.get("partial_rotary_factor"))
        .and_then(Value::as_f64)
        .unwrap_or(0.25);
    Ok(ModelConfig {
        vocab_size: hf.vocab_size,
        n_ctx: hf.max_position_embeddings,
        d_model: hf.hidden_size,
        n_layer: hf.num_hidden_layers,
        n_head: hf.num_attention_heads,
        n_kv_head: None,
        d_mlp: Some(hf.intermediate_size),
        mlp: true,
        causal: true,
        tied_embeddings: hf.tie_word_embeddings,
        n_classes: None,
        layer_norm_eps: hf.layer_norm_eps,
        norm: Norm::LayerNorm,
        positional: Positional::Rope(rope(raw, d_head, rotary_pct, hf.max_position_embeddings)?),
        family: Family::GptNeox,
        activation,
        gated_mlp: false,
        parallel_residual: hf.use_parallel_residual,
        qkv_bias: hf.attention_bias,
        out_bias: hf.attention_bias,
        mlp_bias: true,
    })
}

/// An explicit `head_dim` must be the one the other sizes imply.
fn check_head_dim(head_dim: Option<usize>, hidden: usize, heads: usize) -> Result<()> {
    match head_dim {
        Some(h) if heads == 0 || h * heads != hidden => Err(ModelError::Config(format!(
            "head_dim {h} × {heads} heads differs from hidden_size {hidden}; only models whose \
             heads split the hidden size evenly are supported"
        ))),
        _ => Ok(()),
    }
}

/// The rotary settings from either config form: `rope_parameters` (transformers 5) or the top
/// level's `rope_theta` / `rotary_emb_base` and `rope_scaling` (Hub checkpoints).
fn rope(
    raw: &serde_json::Map<String, Value>,
    d_head: usize,
    default_fraction: f64,
    max_positions: usize,
) -> Result<Rope> {
    let parameters = raw
        .get("rope_parameters")
        .filter(|p| p.is_object())
        .or_else(|| raw.get("rope_scaling").filter(|p| p.is_object()));
    let number = |key: &str| -> Option<f64> {
        parameters
            .and_then(|p| p.get(key))
            .or_else(|| raw.get(key))
            .and_then(Value::as_f64)
    };
    let theta = number("rope_theta")
        .or_else(|| number("rotary_emb_base"))
        .unwrap_or(10000.0);
    let fraction = parameters
        .and_then(|p| p.get("partial_rotary_factor"))
        .and_then(Value::as_f64)
        .unwrap_or(default_fraction);
    let kind = parameters
        .and_then(|p| p.get("rope_type").or_else(|| p.get("type")))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let need = |key: &str| -> Result<f64> {
        parameters
            .and_then(|p| p.get(key))
            .and_then(Value::as_f64)
            .ok_or_else(|| ModelError::Config(format!("rope scaling `{kind}` needs `{key}`")))
    };
    let scaling = match kind {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear {
            factor: need("factor")? as f32,
        },
        "llama3" => RopeScaling::Llama3 {
            factor: need("factor")? as f32,
            low_freq_factor: need("low_freq_factor")? as f32,
            high_freq_factor: need("high_freq_factor")? as f32,
            original_max_position_embeddings: parameters
                .and_then(|p| p.get("original_max_position_embeddings"))
                .and_then(Value::as_u64)
                .map_or(max_positions, |n| n as usize),
        },
        other => {
            return Err(ModelError::Config(format!(
                "rope scaling `{other}` is not supported (default, linear and llama3 are)"
            )))
        }
    };
    Ok(Rope {
        theta: theta as f32,
        rotary_dim: (d_head as f64 * fraction) as usize,
        scaling,
    })
}

/// Maps a stored tensor name to the name used while loading: drops the family's prefix and the
/// buffers that are not weights (causal masks, cached rotary frequencies).
fn stored_name(family: Family, name: &str) -> Option<String> {
    let prefix = match family {
        Family::Gpt2 => "transformer.",
        Family::Llama | Family::Qwen2 => "model.",
        Family::GptNeox => "gpt_neox.",
    };
    let name = name.strip_prefix(prefix).unwrap_or(name);
    let buffer = [
        ".attn.bias",
        ".attn.masked_bias",
        ".attention.bias",
        ".attention.masked_bias",
        ".rotary_emb.inv_freq",
    ]
    .iter()
    .any(|suffix| name.ends_with(suffix));
    (!buffer).then(|| name.to_string())
}

/// Splits a fused query/key/value projection into three tensors named `….q.weight`, `….k.weight`,
/// `….v.weight` (and biases): GPT-2's `c_attn` (Conv1D `[d, 3d]`, columns q | k | v) and
/// GPT-NeoX's `query_key_value` (`nn.Linear` `[3d, d]`, rows grouped per head as q | k | v).
fn split_fused_qkv(
    family: Family,
    config: &ModelConfig,
    layer: usize,
    tensors: &mut TensorMap,
) -> Result<()> {
    let d = config.d_model;
    // Along the fused axis, q, k and v alternate in groups of `group` values: one group each for
    // GPT-2 (`group = d`), one per head for GPT-NeoX (`group = d_head`).
    let (name, group) = match family {
        Family::Gpt2 => (format!("h.{layer}.attn.c_attn"), d),
        Family::GptNeox => (
            format!("layers.{layer}.attention.query_key_value"),
            config.d_head(),
        ),
        Family::Llama | Family::Qwen2 => return Ok(()),
    };
    let indices = |part: usize| {
        (0..d / group).flat_map(move |g| {
            let start = (3 * g + part) * group;
            start..start + group
        })
    };
    let parts = ["q", "k", "v"].into_iter().enumerate();
    match family {
        // Conv1D `[d, 3d]`: the fused axis is the columns.
        Family::Gpt2 => {
            let w = tensors.take(&format!("{name}.weight"), &[d, 3 * d])?;
            for (part, letter) in parts.clone() {
                let values =
                    w.gather((0..d).flat_map(|row| indices(part).map(move |i| row * 3 * d + i)));
                tensors.insert(format!("{name}.{letter}.weight"), vec![d, d], values);
            }
        }
        // nn.Linear `[3d, d]`: the fused axis is the rows.
        _ => {
            let w = tensors.take(&format!("{name}.weight"), &[3 * d, d])?;
            for (part, letter) in parts.clone() {
                let values = w.gather(indices(part).flat_map(|i| i * d..(i + 1) * d));
                tensors.insert(format!("{name}.{letter}.weight"), vec![d, d], values);
            }
        }
    }
    if let Some(bias) = tensors.take_optional(&format!("{name}.bias"), &[3 * d])? {
        for (part, letter) in parts {
            let values = bias.gather(indices(part));
            tensors.insert(format!("{name}.{letter}.bias"), vec![d], values);
        }
    }
    Ok(())
}

/// The stored name of the schema parameter `spec`, and whether it is stored transposed
/// (`nn.Linear`'s `[out, in]` against the schema's `[in, out]`).
fn hf_name(family: Family, spec: &ParamSpec) -> (String, bool) {
    let own = spec.name.as_str();
    let transpose = spec.role == ParamRole::Weight && family != Family::Gpt2;
    let (base, suffix) = own.rsplit_once('.').unwrap_or((own, ""));
    let dotted = |stem: String| match suffix {
        "" => stem,
        s => format!("{stem}.{s}"),
    };
    let top = |gpt2: &str, llama: &str, neox: &str| -> String {
        match family {
            Family::Gpt2 => gpt2.into(),
            Family::Llama | Family::Qwen2 => llama.into(),
            Family::GptNeox => neox.into(),
        }
    };
    let name = match own {
        "wte" => top("wte.weight", "embed_tokens.weight", "embed_in.weight"),
        "wpe" => "wpe.weight".into(),
        "lm_head.weight" => top("lm_head.weight", "lm_head.weight", "embed_out.weight"),
        _ if base == "ln_f" => dotted(top("ln_f", "norm", "final_layer_norm")),
        _ => {
            // blocks.{i}.{part}
            let rest = base.strip_prefix("blocks.").unwrap_or(base);
            let (layer, part) = rest.split_once('.').unwrap_or((rest, ""));
            let stem = match (family, part) {
                (Family::Gpt2, "attn_norm") => "ln_1",
                (Family::Gpt2, "attn.q") => "attn.c_attn.q",
                (Family::Gpt2, "attn.k") => "attn.c_attn.k",
                (Family::Gpt2, "attn.v") => "attn.c_attn.v",
                (Family::Gpt2, "attn.o") => "attn.c_proj",
                (Family::Gpt2, "mlp_norm") => "ln_2",
                (Family::Gpt2, "mlp.fc") => "mlp.c_fc",
                (Family::Gpt2, "mlp.proj") => "mlp.c_proj",
                (Family::GptNeox, "attn_norm") => "input_layernorm",
                (Family::GptNeox, "attn.q") => "attention.query_key_value.q",
                (Family::GptNeox, "attn.k") => "attention.query_key_value.k",
                (Family::GptNeox, "attn.v") => "attention.query_key_value.v",
                (Family::GptNeox, "attn.o") => "attention.dense",
                (Family::GptNeox, "mlp_norm") => "post_attention_layernorm",
                (Family::GptNeox, "mlp.fc") => "mlp.dense_h_to_4h",
                (Family::GptNeox, "mlp.proj") => "mlp.dense_4h_to_h",
                (_, "attn_norm") => "input_layernorm",
                (_, "attn.q") => "self_attn.q_proj",
                (_, "attn.k") => "self_attn.k_proj",
                (_, "attn.v") => "self_attn.v_proj",
                (_, "attn.o") => "self_attn.o_proj",
                (_, "mlp_norm") => "post_attention_layernorm",
                (_, "mlp.gate") => "mlp.gate_proj",
                (_, "mlp.fc") => "mlp.up_proj",
                (_, "mlp.proj") => "mlp.down_proj",
                _ => part,
            };
            let block = top("h", "layers", "layers");
            dotted(format!("{block}.{layer}.{stem}"))
        }
    };
    (name, transpose)
}

/// `values` (`[rows, cols]`) transposed to `[cols, rows]`.
fn transposed(values: &Weights, rows: usize, cols: usize) -> Weights {
    values.gather((0..cols).flat_map(|c| (0..rows).map(move |r| r * cols + c)))
}
