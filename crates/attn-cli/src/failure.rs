//! A command's failure: the message `attn` prints after `error:` before it exits with 1.

use attn_model::ModelError;

/// A command's failure: the message printed after `error:`.
pub(crate) struct Failure(pub(crate) String);

impl From<ModelError> for Failure {
    fn from(e: ModelError) -> Self {
        Failure(e.to_string())
    }
}

impl From<attn_train::TrainError> for Failure {
    fn from(e: attn_train::TrainError) -> Self {
        Failure(e.to_string())
    }
}
