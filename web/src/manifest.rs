//! The built-in model zoo's `models/index.json`, read leniently so an older or newer manifest
//! still lists what it can.

use serde::Deserialize;

/// Where the built-in models live, relative to the page.
pub const MODELS_BASE: &str = "models/";

/// One built-in model as the manifest describes it.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ModelEntry {
    pub id: String,
    /// Path of the `.safetensors` file, relative to the manifest.
    pub file: String,
    pub title: String,
    /// A paragraph for a newcomer: what the model does and what to look for.
    pub description: String,
    pub task: String,
    /// Example inputs, in the model's own text form.
    #[serde(alias = "example_inputs")]
    pub examples: Vec<String>,
    #[serde(alias = "parameter_count")]
    pub parameters: Option<u64>,
    #[serde(alias = "size_bytes")]
    pub size: Option<u64>,
    pub metrics: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ManifestFile {
    Wrapped { models: Vec<ModelEntry> },
    List(Vec<ModelEntry>),
}

/// Parses the manifest; entries without an id or file are dropped.
pub fn parse_manifest(text: &str) -> Result<Vec<ModelEntry>, String> {
    let file: ManifestFile =
        serde_json::from_str(text).map_err(|e| format!("models/index.json is not valid: {e}"))?;
    let models = match file {
        ManifestFile::Wrapped { models } | ManifestFile::List(models) => models,
    };
    Ok(models
        .into_iter()
        .filter(|m| !m.id.is_empty() && !m.file.is_empty())
        .map(|mut m| {
            if m.title.is_empty() {
                m.title = m.id.clone();
            }
            m
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shapes_and_aliases_parse() {
        let wrapped = r#"{"models": [{"id": "induction", "file": "induction.safetensors",
            "example_inputs": ["a b c a b"], "parameter_count": 1234, "extra": 1}]}"#;
        let m = parse_manifest(wrapped).unwrap();
        assert_eq!(m[0].examples, vec!["a b c a b"]);
        assert_eq!(m[0].parameters, Some(1234));
        assert_eq!(m[0].title, "induction");
        let list = r#"[{"id": "x", "file": "x.safetensors"}, {"id": "", "file": "y"}]"#;
        assert_eq!(parse_manifest(list).unwrap().len(), 1);
        assert!(parse_manifest("{").is_err());
    }
}
