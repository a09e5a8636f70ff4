//! Tokenizers: how a model's text becomes token ids and back. Three kinds cover the playground's
//! models: one token per character (the character language model), whitespace-separated symbols
//! (task models such as sorting), and GPT-2's byte-level BPE (Hugging Face GPT-2 checkpoints).
//!
//! The tokenizer travels with the model as a [`TokenizerSpec`] (plain JSON in the file header);
//! [`Tokenizer`] is the same spec with its lookup tables built.

mod bpe;

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

pub use bpe::Gpt2Bpe;

/// How a model's text is split into token ids; stored as JSON inside model files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TokenizerSpec {
    /// One token per Unicode character; `vocab[id]` is the character. Longer entries (such as
    /// `"<bos>"`) are special tokens that tasks insert by id; text never produces them.
    Char { vocab: Vec<String> },
    /// Whitespace-separated symbols (task models: `"3 1 2 | 1 2 3"`); `vocab[id]` is the symbol.
    Words { vocab: Vec<String> },
    /// GPT-2 byte-level BPE: `vocab` is `vocab.json` (byte-level token string → id) and `merges`
    /// the `"a b"` lines of `merges.txt` in priority order.
    Gpt2Bpe {
        vocab: BTreeMap<String, u32>,
        merges: Vec<String>,
    },
}

/// What can go wrong while building a tokenizer or converting text.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum TokenizerError {
    /// Text contains a character the character-level vocabulary lacks.
    #[error("character {0:?} (U+{1:04X}) is not in this model's vocabulary")]
    UnknownChar(char, u32),
    /// Text contains a symbol the word-level vocabulary lacks.
    #[error("symbol {0:?} is not in this model's vocabulary")]
    UnknownSymbol(String),
    /// An id that no token has.
    #[error("token id {id} is outside the vocabulary (size {size})")]
    UnknownId { id: u32, size: usize },
    /// The vocabulary itself is unusable.
    #[error("invalid vocabulary: {0}")]
    Vocab(String),
    /// A line of `merges.txt` (or a merge in `tokenizer.json`) is malformed.
    #[error("merge {line} is not two tokens separated by a space: {text:?}")]
    Merge { line: usize, text: String },
    /// `tokenizer.json` could not be read as a GPT-2-style BPE tokenizer.
    #[error("invalid tokenizer.json: {0}")]
    TokenizerJson(String),
}

/// A tokenizer ready to use: the spec plus its lookup tables.
#[derive(Clone, Debug)]
pub struct Tokenizer {
    spec: TokenizerSpec,
    kind: Kind,
}

#[derive(Clone, Debug)]
enum Kind {
    Char { ids: HashMap<char, u32> },
    Words { ids: HashMap<String, u32> },
    Bpe(Box<Gpt2Bpe>),
}

impl Tokenizer {
    /// Builds the lookup tables of `spec`, checking that it is consistent.
    pub fn from_spec(spec: TokenizerSpec) -> Result<Self, TokenizerError> {
        let kind = match &spec {
            TokenizerSpec::Char { vocab } => {
                check_unique(vocab)?;
                let ids = vocab
                    .iter()
                    .enumerate()
                    .filter_map(|(id, s)| single_char(s).map(|c| (c, id as u32)))
                    .collect();
                Kind::Char { ids }
            }
            TokenizerSpec::Words { vocab } => {
                check_unique(vocab)?;
                if let Some(bad) = vocab
                    .iter()
                    .find(|s| s.is_empty() || s.chars().any(char::is_whitespace))
                {
                    return Err(TokenizerError::Vocab(format!(
                        "word symbol {bad:?} is empty or contains whitespace"
                    )));
                }
                let ids = vocab
                    .iter()
                    .enumerate()
                    .map(|(id, s)| (s.clone(), id as u32))
                    .collect();
                Kind::Words { ids }
            }
            TokenizerSpec::Gpt2Bpe { vocab, merges } => {
                Kind::Bpe(Box::new(Gpt2Bpe::new(vocab, merges, &[])?))
            }
        };
        Ok(Tokenizer { spec, kind })
    }

    /// The spec this tokenizer was built from (what a model file stores).
    pub fn spec(&self) -> &TokenizerSpec {
        &self.spec
    }

    /// GPT-2's tokenizer from the contents of `vocab.json` and `merges.txt` (which may start with
    /// a `#version` line).
    pub fn gpt2_from_files(vocab_json: &str, merges_txt: &str) -> Result<Self, TokenizerError> {
        let vocab: BTreeMap<String, u32> = serde_json::from_str(vocab_json)
            .map_err(|e| TokenizerError::Vocab(format!("vocab.json: {e}")))?;
        let merges = merges_txt
            .lines()
            .filter(|l| !l.starts_with("#version") && !l.trim().is_empty())
            .map(str::to_string)
            .collect();
        Self::from_spec(TokenizerSpec::Gpt2Bpe { vocab, merges })
    }

    /// GPT-2's tokenizer from a Hugging Face `tokenizer.json` whose model is BPE over a ByteLevel
    /// pre-tokenizer. Merges may be stored as `"a b"` strings or `["a", "b"]` pairs (both formats
    /// exist). Added special tokens (e.g. `<|endoftext|>`) are recognised in text.
    pub fn gpt2_from_tokenizer_json(json: &str) -> Result<Self, TokenizerError> {
        let err = |m: &str| TokenizerError::TokenizerJson(m.to_string());
        let root: serde_json::Value =
            serde_json::from_str(json).map_err(|e| err(&e.to_string()))?;
        let model = &root["model"];
        if model["type"].as_str().is_some_and(|t| t != "BPE") {
            return Err(err("the model is not BPE"));
        }
        let vocab: BTreeMap<String, u32> = serde_json::from_value(model["vocab"].clone())
            .map_err(|e| err(&format!("model.vocab: {e}")))?;
        let merges = model["merges"]
            .as_array()
            .ok_or_else(|| err("model.merges is missing"))?
            .iter()
            .enumerate()
            .map(|(line, m)| match m {
                serde_json::Value::String(s) => Ok(s.clone()),
                serde_json::Value::Array(pair) if pair.len() == 2 => {
                    match (pair[0].as_str(), pair[1].as_str()) {
                        (Some(a), Some(b)) => Ok(format!("{a} {b}")),
                        _ => Err(TokenizerError::Merge {
                            line: line + 1,
                            text: m.to_string(),
                        }),
                    }
                }
                _ => Err(TokenizerError::Merge {
                    line: line + 1,
                    text: m.to_string(),
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut tokenizer = Self::from_spec(TokenizerSpec::Gpt2Bpe { vocab, merges })?;
        let added: Vec<(String, u32)> = root["added_tokens"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| Some((t["content"].as_str()?.to_string(), t["id"].as_u64()? as u32)))
            .collect();
        if let Kind::Bpe(bpe) = &mut tokenizer.kind {
            bpe.set_special_tokens(&added);
        }
        Ok(tokenizer)
    }

    /// Number of ids the tokenizer can produce or read (for BPE: the largest id + 1).
    pub fn vocab_size(&self) -> usize {
        match &self.spec {
            TokenizerSpec::Char { vocab } | TokenizerSpec::Words { vocab } => vocab.len(),
            TokenizerSpec::Gpt2Bpe { vocab, .. } => {
                vocab.values().max().map_or(0, |&m| m as usize + 1)
            }
        }
    }

    /// `"char"`, `"words"` or `"gpt2_bpe"`.
    pub fn kind(&self) -> &'static str {
        match self.kind {
            Kind::Char { .. } => "char",
            Kind::Words { .. } => "words",
            Kind::Bpe(_) => "gpt2_bpe",
        }
    }

    /// Text to ids. Character and word tokenizers fail on anything outside their vocabulary (with
    /// the offending character or symbol); byte-level BPE never fails.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        match &self.kind {
            Kind::Char { ids } => text
                .chars()
                .map(|c| {
                    ids.get(&c)
                        .copied()
                        .ok_or(TokenizerError::UnknownChar(c, c as u32))
                })
                .collect(),
            Kind::Words { ids } => text
                .split_whitespace()
                .map(|w| {
                    ids.get(w)
                        .copied()
                        .ok_or_else(|| TokenizerError::UnknownSymbol(w.to_string()))
                })
                .collect(),
            Kind::Bpe(bpe) => Ok(bpe.encode(text)),
        }
    }

    /// Ids to text: characters concatenated, symbols joined by single spaces, or BPE bytes joined
    /// and read as UTF-8 (invalid sequences become U+FFFD).
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        let size = self.vocab_size();
        let check = |id: u32| {
            if (id as usize) < size {
                Ok(())
            } else {
                Err(TokenizerError::UnknownId { id, size })
            }
        };
        match (&self.spec, &self.kind) {
            (TokenizerSpec::Char { vocab }, _) => ids
                .iter()
                .map(|&id| check(id).map(|_| vocab[id as usize].as_str()))
                .collect(),
            (TokenizerSpec::Words { vocab }, _) => Ok(ids
                .iter()
                .map(|&id| check(id).map(|_| vocab[id as usize].as_str()))
                .collect::<Result<Vec<_>, _>>()?
                .join(" ")),
            (_, Kind::Bpe(bpe)) => bpe.decode(ids).ok_or_else(|| {
                let id = *ids
                    .iter()
                    .find(|&&id| bpe.token(id).is_none())
                    .unwrap_or(&0);
                TokenizerError::UnknownId { id, size }
            }),
            _ => unreachable!("spec and tables are built together"),
        }
    }

    /// A readable label for one token, for chips and heatmap axes: a space shows as `␣` and a
    /// newline as `⏎`, so whitespace tokens stay visible. `None` for an unknown id.
    pub fn token_label(&self, id: u32) -> Option<String> {
        let raw = match (&self.spec, &self.kind) {
            (TokenizerSpec::Char { vocab } | TokenizerSpec::Words { vocab }, _) => {
                vocab.get(id as usize)?.clone()
            }
            (_, Kind::Bpe(bpe)) => {
                bpe.token(id)?;
                String::from_utf8_lossy(&bpe.token_bytes(id)?).into_owned()
            }
            _ => return None,
        };
        Some(visible_whitespace(&raw))
    }
}

/// Replaces space, newline and tab with visible marks.
pub fn visible_whitespace(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            ' ' => '␣',
            '\n' => '⏎',
            '\t' => '⇥',
            other => other,
        })
        .collect()
}

fn single_char(s: &str) -> Option<char> {
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Some(c),
        _ => None,
    }
}

fn check_unique(vocab: &[String]) -> Result<(), TokenizerError> {
    let mut seen = std::collections::HashSet::new();
    for s in vocab {
        if !seen.insert(s) {
            return Err(TokenizerError::Vocab(format!("{s:?} appears twice")));
        }
    }
    if vocab.is_empty() {
        return Err(TokenizerError::Vocab("the vocabulary is empty".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars() -> Tokenizer {
        let vocab = ["<bos>", " ", "\n", "a", "b", "c", "é"]
            .map(String::from)
            .to_vec();
        Tokenizer::from_spec(TokenizerSpec::Char { vocab }).unwrap()
    }

    #[test]
    fn char_round_trip_and_errors() {
        let t = chars();
        let ids = t.encode("ab c\né").unwrap();
        assert_eq!(ids, vec![3, 4, 1, 5, 2, 6]);
        assert_eq!(t.decode(&ids).unwrap(), "ab c\né");
        assert_eq!(
            t.encode("abz").unwrap_err().to_string(),
            "character 'z' (U+007A) is not in this model's vocabulary"
        );
        assert!(
            t.encode("<bos>").is_err(),
            "special tokens never come from text"
        );
        assert_eq!(t.decode(&[0, 3]).unwrap(), "<bos>a");
        assert!(matches!(
            t.decode(&[7]),
            Err(TokenizerError::UnknownId { id: 7, size: 7 })
        ));
        assert_eq!(t.token_label(1).as_deref(), Some("␣"));
        assert_eq!(t.token_label(2).as_deref(), Some("⏎"));
        assert_eq!(t.kind(), "char");
    }

    #[test]
    fn words_round_trip_and_errors() {
        let vocab = ["0", "1", "2", "|", "<bos>"].map(String::from).to_vec();
        let t = Tokenizer::from_spec(TokenizerSpec::Words { vocab }).unwrap();
        let ids = t.encode("  2 1  | 1 2\n").unwrap();
        assert_eq!(ids, vec![2, 1, 3, 1, 2]);
        assert_eq!(t.decode(&ids).unwrap(), "2 1 | 1 2");
        assert_eq!(
            t.encode("1 7").unwrap_err().to_string(),
            "symbol \"7\" is not in this model's vocabulary"
        );
        assert_eq!(t.vocab_size(), 5);
    }

    #[test]
    fn bad_vocabularies_are_rejected() {
        let dup = TokenizerSpec::Char {
            vocab: vec!["a".into(), "a".into()],
        };
        assert!(Tokenizer::from_spec(dup)
            .unwrap_err()
            .to_string()
            .contains("twice"));
        let spaced = TokenizerSpec::Words {
            vocab: vec!["a b".into()],
        };
        assert!(Tokenizer::from_spec(spaced).is_err());
        assert!(Tokenizer::from_spec(TokenizerSpec::Char { vocab: vec![] }).is_err());
    }

    #[test]
    fn spec_json_is_tagged_by_kind() {
        let t = chars();
        let json = serde_json::to_string(t.spec()).unwrap();
        assert!(json.starts_with(r#"{"kind":"char","vocab":["#), "{json}");
        let back: TokenizerSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, t.spec());
    }
}
