//! Loading models from disk (native builds), and Hugging Face directories from any [`HfSource`]
//! (the browser's picked files are one).

use std::path::{Path, PathBuf};

use crate::config::Family;
use crate::error::{ModelError, Result};
use crate::hf::shard_files;
use crate::model::Model;
use crate::tensors::{LoadedTensors, TensorStream};
use crate::tokenizer::{Tokenizer, TokenizerSpec};

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| ModelError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Reads a safetensors file piece by piece, so that a 16-bit checkpoint never needs its bytes
/// and its tensors in memory at once.
fn read_tensors(path: &Path) -> Result<LoadedTensors> {
    use std::io::Read;
    let io = |e: std::io::Error| ModelError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut stream = TensorStream::new();
    let mut piece = vec![0u8; 16 << 20];
    loop {
        let n = file.read(&mut piece).map_err(io)?;
        if n == 0 {
            return stream.finish();
        }
        stream.push(&piece[..n])?;
    }
}

/// Loads a model from a path: a project `.safetensors` file, or a Hugging Face directory
/// (`config.json`, `model.safetensors` or the shards `model.safetensors.index.json` lists, and
/// `vocab.json` + `merges.txt` or `tokenizer.json` when present).
pub fn load_model(path: impl AsRef<Path>) -> Result<Model> {
    let path = path.as_ref();
    if path.is_dir() {
        load_hf_dir(path)
    } else {
        Model::from_loaded(read_tensors(path)?)
    }
}

/// Loads a Hugging Face directory of any supported family (see [`crate::hf`]).
pub fn load_hf_dir(dir: &Path) -> Result<Model> {
    from_hf_source(&mut dir.to_path_buf())
}

/// The files of a Hugging Face directory, however they are stored: on disk, or picked in the
/// browser (where the weights are read piece by piece as they arrive).
pub trait HfSource {
    /// The text of `name`, or `None` when the directory has no such file.
    fn text(&mut self, name: &str) -> Result<Option<String>>;
    /// The tensors of the safetensors file `name`, or `None` when there is no such file.
    fn tensors(&mut self, name: &str) -> Result<Option<LoadedTensors>>;
}

/// A directory on disk.
impl HfSource for PathBuf {
    fn text(&mut self, name: &str) -> Result<Option<String>> {
        let path = self.join(name);
        if !path.exists() {
            return Ok(None);
        }
        String::from_utf8(read(&path)?)
            .map(Some)
            .map_err(|_| ModelError::Io {
                path: path.display().to_string(),
                message: "not UTF-8 text".into(),
            })
    }

    fn tensors(&mut self, name: &str) -> Result<Option<LoadedTensors>> {
        let path = self.join(name);
        if !path.exists() {
            return Ok(None);
        }
        read_tensors(&path).map(Some)
    }
}

/// Builds a model from the files of a Hugging Face directory: `config.json`, `model.safetensors`
/// or the shards `model.safetensors.index.json` lists, and the tokenizer's files.
pub fn from_hf_source(source: &mut impl HfSource) -> Result<Model> {
    let config = source.text("config.json")?.ok_or_else(|| ModelError::Io {
        path: "config.json".into(),
        message: "a Hugging Face model directory needs its config.json".into(),
    })?;
    let (vocab, merges, tokenizer_json, index) = (
        source.text("vocab.json")?,
        source.text("merges.txt")?,
        source.text("tokenizer.json")?,
        source.text("model.safetensors.index.json")?,
    );
    let weights: Vec<LoadedTensors> = match (source.tensors("model.safetensors")?, index) {
        (Some(single), _) => vec![single],
        (None, Some(index)) => shard_files(&index)?
            .into_iter()
            .map(|name| {
                source.tensors(&name)?.ok_or_else(|| ModelError::Io {
                    path: name,
                    message: "this shard, named in model.safetensors.index.json, is missing".into(),
                })
            })
            .collect::<Result<_>>()?,
        (None, None) => {
            return Err(ModelError::Io {
                path: "model.safetensors".into(),
                message: "a Hugging Face model needs model.safetensors (or \
                          model.safetensors.index.json and its shards) next to config.json"
                    .into(),
            })
        }
    };
    let mut model = Model::from_hf_loaded(&config, weights)?;
    // GPT-2 ships vocab.json + merges.txt; the other families' byte-level files (Qwen2 has
    // them too) follow other split patterns, which only their tokenizer.json describes.
    let tokenizer = match (model.config.family, tokenizer_json.as_deref()) {
        (Family::Gpt2, _) | (_, None) => hf_tokenizer(
            vocab.as_deref(),
            merges.as_deref(),
            tokenizer_json.as_deref(),
        ),
        (_, Some(json)) => hf_tokenizer(None, None, Some(json)),
    };
    attach_tokenizer(&mut model, tokenizer)?;
    Ok(model)
}

/// Gives `model` the tokenizer its directory described. A GPT-2 model refuses a tokenizer this
/// build cannot read; the other families open without one (token ids are typed instead) and
/// say why in the metadata's `tokenizer_note`.
pub fn attach_tokenizer(model: &mut Model, tokenizer: Result<Option<TokenizerSpec>>) -> Result<()> {
    match tokenizer {
        Ok(spec) => model.tokenizer = spec,
        Err(e) if model.config.family != Family::Gpt2 => {
            model.tokenizer = None;
            model.metadata.insert(
                "tokenizer_note".into(),
                format!("the tokenizer could not be read: {e}").into(),
            );
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

/// The tokenizer of a Hugging Face directory from whichever files it has: `vocab.json` +
/// `merges.txt` (GPT-2's byte-level BPE, preferred when given) or `tokenizer.json` (GPT-2's BPE
/// when it is one, else run by the `tokenizers` library). `None` when neither is there.
pub fn hf_tokenizer(
    vocab_json: Option<&str>,
    merges_txt: Option<&str>,
    tokenizer_json: Option<&str>,
) -> Result<Option<TokenizerSpec>> {
    let tokenizer = match (vocab_json, merges_txt, tokenizer_json) {
        (Some(vocab), Some(merges), _) => Tokenizer::gpt2_from_files(vocab, merges)?,
        (_, _, Some(json)) => Tokenizer::from_tokenizer_json(json)?,
        _ => return Ok(None),
    };
    Ok(Some(tokenizer.spec().clone()))
}

impl Model {
    /// The model's tokenizer, ready to use, if the file described one. Its vocabulary must fit
    /// the model's embedding table.
    pub fn build_tokenizer(&self) -> Result<Option<Tokenizer>> {
        let Some(spec) = &self.tokenizer else {
            return Ok(None);
        };
        let tokenizer = Tokenizer::from_spec(spec.clone())?;
        if tokenizer.vocab_size() > self.config.vocab_size {
            return Err(ModelError::Config(format!(
                "the tokenizer has {} tokens but the model's vocabulary holds {}",
                tokenizer.vocab_size(),
                self.config.vocab_size
            )));
        }
        Ok(Some(tokenizer))
    }
}
