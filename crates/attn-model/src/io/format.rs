//! The project's own single-file model format: one `.safetensors` file whose `__metadata__`
//! carries the config, the tokenizer and free-form metadata as JSON strings. See
//! `docs/FORMAT.md` for the layout.

use std::collections::HashMap;

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::model::{Linear, Model, NormWeights};
use crate::tensors::{read_metadata, write_tensors, LoadedTensors, TensorMap};
use crate::tokenizer::TokenizerSpec;
use crate::weights::TensorRef;

/// Value of the `format` metadata key that marks a file as ours.
pub const FORMAT_NAME: &str = "attn-playground";
/// Current version of the format; readers reject newer major versions.
pub const FORMAT_VERSION: &str = "1";

impl Model {
    /// Reads a model saved in the project's own format.
    pub fn from_safetensors_bytes(bytes: &[u8]) -> Result<Model> {
        let metadata = read_metadata(bytes)?;
        check_format(&metadata)?;
        Model::from_loaded(LoadedTensors::from_bytes(bytes)?)
    }

    /// [`Model::from_safetensors_bytes`] on a file already parsed (e.g. read piece by piece by a
    /// [`crate::TensorStream`]).
    pub fn from_loaded(loaded: LoadedTensors) -> Result<Model> {
        let metadata = &loaded.metadata;
        check_format(metadata)?;
        let config_json = metadata
            .get("config")
            .ok_or_else(|| ModelError::Config("metadata has no `config`".into()))?;
        let config: ModelConfig = parse_json("config", config_json)?;
        config.validate()?;
        let tokenizer: Option<TokenizerSpec> = metadata
            .get("tokenizer")
            .map(|t| parse_json("tokenizer", t))
            .transpose()?;
        let extra = match metadata.get("metadata") {
            Some(m) => parse_json("metadata", m)?,
            None => Default::default(),
        };
        let mut tensors = TensorMap::from_loaded(vec![loaded], |name| Some(name.to_string()))?;
        let mut model =
            Model::from_parameters(config, |spec| tensors.take(&spec.name, &spec.shape))?;
        tensors.finish()?;
        model.tokenizer = tokenizer;
        model.metadata = extra;
        model.check_shapes()?;
        Ok(model)
    }

    /// Writes the model in the project's own format.
    pub fn to_safetensors_bytes(&self) -> Result<Vec<u8>> {
        self.check_shapes()?;
        let json = |what: &str, value: serde_json::Result<String>| {
            value.map_err(|e| ModelError::Json {
                what: what.into(),
                message: e.to_string(),
            })
        };
        let mut metadata = HashMap::new();
        metadata.insert("format".to_string(), FORMAT_NAME.to_string());
        metadata.insert("format_version".to_string(), FORMAT_VERSION.to_string());
        metadata.insert(
            "config".to_string(),
            json("config", serde_json::to_string(&self.config))?,
        );
        if let Some(tokenizer) = &self.tokenizer {
            metadata.insert(
                "tokenizer".to_string(),
                json("tokenizer", serde_json::to_string(tokenizer))?,
            );
        }
        if !self.metadata.is_empty() {
            metadata.insert(
                "metadata".to_string(),
                json("metadata", serde_json::to_string(&self.metadata))?,
            );
        }
        write_tensors(&self.named_tensors(), metadata)
    }

    /// Every weight with its name and shape in the own format, in the schema's order.
    pub fn named_tensors(&self) -> Vec<(String, Vec<usize>, TensorRef<'_>)> {
        let c = &self.config;
        let d = c.d_model;
        let mut out: Vec<(String, Vec<usize>, TensorRef<'_>)> = vec![(
            "wte".into(),
            vec![c.vocab_size, d],
            (&self.token_embedding).into(),
        )];
        if let Some(wpe) = &self.position_embedding {
            out.push(("wpe".into(), vec![wpe.len() / d.max(1), d], wpe.into()));
        }
        fn push_norm<'a>(
            out: &mut Vec<(String, Vec<usize>, TensorRef<'a>)>,
            name: String,
            n: &'a NormWeights,
        ) {
            out.push((
                format!("{name}.weight"),
                vec![n.weight.len()],
                (&n.weight).into(),
            ));
            if let Some(bias) = &n.bias {
                out.push((format!("{name}.bias"), vec![bias.len()], bias.into()));
            }
        }
        fn push_linear<'a>(
            out: &mut Vec<(String, Vec<usize>, TensorRef<'a>)>,
            name: String,
            l: &'a Linear,
        ) {
            out.push((
                format!("{name}.weight"),
                vec![l.d_in, l.d_out],
                (&l.weight).into(),
            ));
            if let Some(bias) = &l.bias {
                out.push((format!("{name}.bias"), vec![bias.len()], bias.into()));
            }
        }
        for (i, b) in self.blocks.iter().enumerate() {
            push_norm(&mut out, format!("blocks.{i}.attn_norm"), &b.attn_norm);
            push_linear(&mut out, format!("blocks.{i}.attn.q"), &b.attn.q);
            push_linear(&mut out, format!("blocks.{i}.attn.k"), &b.attn.k);
            push_linear(&mut out, format!("blocks.{i}.attn.v"), &b.attn.v);
            push_linear(&mut out, format!("blocks.{i}.attn.o"), &b.attn.o);
            if let Some(m) = &b.mlp {
                push_norm(&mut out, format!("blocks.{i}.mlp_norm"), &m.norm);
                if let Some(gate) = &m.gate {
                    push_linear(&mut out, format!("blocks.{i}.mlp.gate"), gate);
                }
                push_linear(&mut out, format!("blocks.{i}.mlp.fc"), &m.fc);
                push_linear(&mut out, format!("blocks.{i}.mlp.proj"), &m.proj);
            }
        }
        push_norm(&mut out, "ln_f".into(), &self.final_norm);
        if let Some(h) = &self.lm_head {
            out.push((
                "lm_head.weight".into(),
                vec![h.len() / d.max(1), d],
                h.into(),
            ));
        }
        if let Some(cls) = &self.classifier {
            push_linear(&mut out, "classifier".into(), cls);
        }
        out
    }
}

/// Fails unless `metadata` marks a file of the own format in a version this build reads.
fn check_format(metadata: &HashMap<String, String>) -> Result<()> {
    match metadata.get("format").map(String::as_str) {
        Some(FORMAT_NAME) => {}
        Some(other) => {
            return Err(ModelError::Config(format!(
                "file format is `{other}`, expected `{FORMAT_NAME}`"
            )))
        }
        None => {
            return Err(ModelError::Config(
                "this safetensors file carries no attn-playground config in its metadata; \
                 a Hugging Face checkpoint is loaded from its directory (config.json + \
                 model.safetensors)"
                    .into(),
            ))
        }
    }
    if let Some(version) = metadata.get("format_version") {
        if version != FORMAT_VERSION {
            return Err(ModelError::Config(format!(
                "format version {version} is not supported (this build reads {FORMAT_VERSION})"
            )));
        }
    }
    Ok(())
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| ModelError::Json {
        what: what.into(),
        message: e.to_string(),
    })
}
