//! The one error type of the crate. Every message is written for the person who made the file or
//! moved the slider: it names the thing that is wrong and, where it helps, what was expected.

use crate::tokenizer::TokenizerError;

/// Anything that can go wrong while loading a model, preparing a variant or running a forward.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The file is not a readable safetensors file (truncated, bad header, …).
    #[error("not a valid safetensors file: {0}")]
    Safetensors(String),
    /// The model's configuration is missing, unreadable or inconsistent.
    #[error("invalid model config: {0}")]
    Config(String),
    /// A training run's settings are unreadable or out of range, or do not fit the task.
    #[error("bad training config: {0}")]
    Training(String),
    /// A tensor the model needs is not in the file.
    #[error("missing tensor `{0}`")]
    MissingTensor(String),
    /// A tensor in the file that this model does not use (a typo or a different architecture).
    #[error("unexpected tensor `{0}` (not part of this model)")]
    UnexpectedTensor(String),
    /// A tensor has a shape that does not match the config.
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    Shape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// A tensor is stored in a dtype the loader does not read.
    #[error("tensor `{name}` has dtype {dtype}, expected F32 (F16 and BF16 are converted)")]
    Dtype { name: String, dtype: String },
    /// The variant does not fit this model.
    #[error("variant does not fit the model: {0}")]
    Variant(String),
    /// The input tokens cannot be run (empty, too long, out of vocabulary).
    #[error("invalid input: {0}")]
    Input(String),
    /// Tokenizer problems (unknown character, bad vocab files).
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] TokenizerError),
    /// A file could not be read or written (native only).
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    /// A JSON document (config, variant, metadata) could not be parsed.
    #[error("invalid JSON in {what}: {message}")]
    Json { what: String, message: String },
}

/// Short form used throughout the crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

impl From<safetensors::SafeTensorError> for ModelError {
    fn from(err: safetensors::SafeTensorError) -> Self {
        ModelError::Safetensors(err.to_string())
    }
}
