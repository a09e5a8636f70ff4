//! Loading models from disk (native builds; the browser passes bytes to the same constructors).

use std::path::Path;

use crate::error::{ModelError, Result};
use crate::model::Model;
use crate::tokenizer::{Tokenizer, TokenizerSpec};

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| ModelError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

fn read_text(path: &Path) -> Result<String> {
    String::from_utf8(read(path)?).map_err(|_| ModelError::Io {
        path: path.display().to_string(),
        message: "not UTF-8 text".into(),
    })
}

/// Loads a model from a path: a project `.safetensors` file, or a Hugging Face GPT-2 directory
/// (`config.json`, `model.safetensors`, and `vocab.json` + `merges.txt` or `tokenizer.json` when
/// present).
pub fn load_model(path: impl AsRef<Path>) -> Result<Model> {
    let path = path.as_ref();
    if path.is_dir() {
        load_hf_dir(path)
    } else {
        Model::from_safetensors_bytes(&read(path)?)
    }
}

/// Loads a Hugging Face GPT-2 directory.
pub fn load_hf_dir(dir: &Path) -> Result<Model> {
    let config = read_text(&dir.join("config.json"))?;
    let weights = read(&dir.join("model.safetensors"))?;
    let mut model = Model::from_hf_gpt2(&config, &weights)?;
    let text_if_exists = |name: &str| -> Result<Option<String>> {
        let p = dir.join(name);
        if p.exists() {
            read_text(&p).map(Some)
        } else {
            Ok(None)
        }
    };
    model.tokenizer = hf_tokenizer(
        text_if_exists("vocab.json")?.as_deref(),
        text_if_exists("merges.txt")?.as_deref(),
        text_if_exists("tokenizer.json")?.as_deref(),
    )?;
    Ok(model)
}

/// The GPT-2 tokenizer of a Hugging Face directory from whichever files it has: `vocab.json` +
/// `merges.txt` (preferred, as GPT-2 ships them) or `tokenizer.json`. `None` when neither is there.
pub fn hf_tokenizer(
    vocab_json: Option<&str>,
    merges_txt: Option<&str>,
    tokenizer_json: Option<&str>,
) -> Result<Option<TokenizerSpec>> {
    let tokenizer = match (vocab_json, merges_txt, tokenizer_json) {
        (Some(vocab), Some(merges), _) => Tokenizer::gpt2_from_files(vocab, merges)?,
        (_, _, Some(json)) => Tokenizer::gpt2_from_tokenizer_json(json)?,
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
