//! Training configs. The types ([`TrainConfig`], [`ArchConfig`]) and their merging and checks
//! live in attn-model, shared with the page's trainer; this module reads `--config`.

use serde_json::Value;

pub use attn_model::training::{ArchConfig, TrainConfig};

use crate::error::{Result, TrainError};

/// Reads a `--config` argument: inline JSON when it starts with `{`, otherwise the path of a JSON
/// file.
pub fn parse_config_arg(arg: &str) -> Result<Value> {
    let text = if arg.trim_start().starts_with('{') {
        arg.to_string()
    } else {
        std::fs::read_to_string(arg).map_err(|e| {
            TrainError::Config(format!(
                "--config is neither JSON (it does not start with '{{') nor a readable file: \
                 {arg}: {e}"
            ))
        })?
    };
    serde_json::from_str(&text).map_err(|e| TrainError::Config(format!("invalid JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_arguments_are_json_or_a_readable_file() {
        assert!(parse_config_arg("{not json").is_err());
        let e = parse_config_arg("/no/such/config.json").unwrap_err();
        assert!(e.to_string().contains("/no/such/config.json"), "{e}");
        assert_eq!(parse_config_arg(r#"{"steps": 3}"#).unwrap()["steps"], 3);
    }
}
