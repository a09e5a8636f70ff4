//! Tokenizers: how a model's text becomes token ids and back.
//!
//! Three kinds cover the playground's models: one token per character (the character-level
//! language model), whitespace-separated symbols (the task models, e.g. sorting `"3 1 2 | 1 2 3"`),
//! and GPT-2's byte-level BPE (Hugging Face GPT-2 checkpoints).
//!
//! A tokenizer travels inside the model file as a [`TokenizerSpec`] (plain JSON); a
//! [`Tokenizer`] is that spec with its lookup tables built. Nothing here touches the file system
//! or keeps global state, so the module works the same natively and in the browser (wasm): the
//! GPT-2 constructors take the files' contents, not their paths.

mod bpe;
mod error;

pub use error::TokenizerError;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use bpe::Gpt2Bpe;

/// How a model's text is split into token ids; stored as JSON inside model files.
///
/// The JSON is tagged by `kind`: `{"kind": "char", "vocab": ["a", "b"]}`,
/// `{"kind": "words", "vocab": [...]}` or `{"kind": "gpt2_bpe", "vocab": {...}, "merges": [...]}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TokenizerSpec {
    /// One token per Unicode character; `vocab[id]` is the character. Longer entries (such as
    /// `"<bos>"`) are special tokens: the model and the tasks use them by id, text never produces
    /// them.
    Char {
        /// The token of each id, in id order.
        vocab: Vec<String>,
    },
    /// Whitespace-separated symbols (task models: `"3 1 2 | 1 2 3"`); `vocab[id]` is the symbol.
    Words {
        /// The symbol of each id, in id order. Symbols are non-empty and contain no whitespace.
        vocab: Vec<String>,
    },
    /// GPT-2 byte-level BPE, in the shape of GPT-2's own files.
    ///
    /// Special tokens (`<|endoftext|>`, a `tokenizer.json`'s added tokens) are not listed
    /// separately: they are the vocabulary's tokens that BPE cannot produce, and are recognised
    /// verbatim in text (see [`Tokenizer::encode`]).
    Gpt2Bpe {
        /// `vocab.json`: byte-level token string (a space spelt `Ġ`, a newline `Ċ`) → id.
        vocab: BTreeMap<String, u32>,
        /// The `"a b"` lines of `merges.txt` (without its `#version` line), highest priority
        /// first.
        merges: Vec<String>,
    },
    /// Any other Hugging Face `tokenizer.json` (Llama 3's and Qwen2's split patterns, GPT-NeoX's,
    /// SentencePiece-style BPE with byte fallback, …), run by Hugging Face's own `tokenizers`
    /// library. Encoding adds the special tokens the file's post-processor declares (the BOS a
    /// Llama model expects).
    HuggingFace {
        /// The `tokenizer.json` text.
        json: String,
    },
}

/// A tokenizer ready to use: a [`TokenizerSpec`] plus the lookup tables built from it.
///
/// `Send + Sync`, so one tokenizer can serve several threads; cloning copies its tables (a few
/// MB for GPT-2), so share it by reference or `Arc` rather than cloning it per call.
#[derive(Clone)]
pub struct Tokenizer {
    spec: TokenizerSpec,
    tables: Tables,
}

#[derive(Clone, Debug)]
enum Tables {
    Char { ids: HashMap<char, u32> },
    Words { ids: HashMap<String, u32> },
    Bpe(Box<Gpt2Bpe>),
    HuggingFace(Box<tokenizers::Tokenizer>),
}

/// Short on purpose: a GPT-2 vocabulary has 50 257 entries.
impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.kind())
            .field("vocab_size", &self.vocab_size())
            .finish_non_exhaustive()
    }
}

/// Checks what `tokenizers` accepts but panics on when encoding (found by fuzzing): a
/// `TemplateProcessing` post-processor (alone or in a `Sequence`) whose templates name a special
/// token its `special_tokens` do not define, or one whose `ids` and `tokens` differ in length.
fn check_post_processor(json: &str) -> Result<(), String> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(json) else {
        return Ok(()); // `tokenizers` reports the syntax error itself.
    };
    fn check(p: &serde_json::Value) -> Result<(), String> {
        match p.get("type").and_then(|t| t.as_str()) {
            Some("Sequence") => {
                for inner in p
                    .get("processors")
                    .and_then(|v| v.as_array())
                    .into_iter()
                    .flatten()
                {
                    check(inner)?;
                }
            }
            Some("TemplateProcessing") => {
                let defined = p.get("special_tokens").and_then(|v| v.as_object());
                for (name, token) in defined.into_iter().flatten() {
                    let len = |key: &str| token.get(key).and_then(|v| v.as_array()).map(Vec::len);
                    if len("ids") != len("tokens") {
                        return Err(format!(
                            "the post-processor's special token {name:?} has a different number of ids and tokens"
                        ));
                    }
                }
                for template in ["single", "pair"] {
                    let pieces = p.get(template).and_then(|v| v.as_array());
                    for piece in pieces.into_iter().flatten() {
                        let Some(id) = piece.pointer("/SpecialToken/id").and_then(|v| v.as_str())
                        else {
                            continue;
                        };
                        if !defined.is_some_and(|d| d.contains_key(id)) {
                            return Err(format!(
                                "the post-processor's {template} template uses the special token {id:?}, which its special_tokens do not define"
                            ));
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
    match value.get("post_processor") {
        Some(p) if !p.is_null() => check(p),
        _ => Ok(()),
    }
}

impl Tokenizer {
    /// Builds the lookup tables of `spec`, checking it.
    ///
    /// Character and word vocabularies must be non-empty with unique, non-empty entries (ids are
    /// their positions, so dense by construction); words may not contain whitespace, as encoding
    /// splits on it. BPE is as lenient as GPT-2's files are: ids may have gaps, and merges whose
    /// parts or result are missing from the vocabulary are ignored; an id shared by two tokens
    /// or a malformed merge is an error.
    pub fn from_spec(spec: TokenizerSpec) -> Result<Self, TokenizerError> {
        let tables = match &spec {
            TokenizerSpec::Char { vocab } => {
                check_list(vocab, "")?;
                let ids = vocab
                    .iter()
                    .enumerate()
                    .filter_map(|(id, token)| Some((single_char(token)?, id as u32)))
                    .collect();
                Tables::Char { ids }
            }
            TokenizerSpec::Words { vocab } => {
                check_list(vocab, "symbol ")?;
                if let Some(word) = vocab.iter().find(|w| w.chars().any(char::is_whitespace)) {
                    return Err(TokenizerError::InvalidVocab(format!(
                        "symbol {word:?} contains whitespace, which separates symbols"
                    )));
                }
                let ids = vocab
                    .iter()
                    .enumerate()
                    .map(|(id, word)| (word.clone(), id as u32))
                    .collect();
                Tables::Words { ids }
            }
            TokenizerSpec::Gpt2Bpe { vocab, merges } => {
                Tables::Bpe(Box::new(Gpt2Bpe::new(vocab, merges)?))
            }
            TokenizerSpec::HuggingFace { json } => {
                check_post_processor(json).map_err(TokenizerError::InvalidTokenizerJson)?;
                let tokenizer = json
                    .parse::<tokenizers::Tokenizer>()
                    .map_err(|e| TokenizerError::InvalidTokenizerJson(e.to_string()))?;
                Tables::HuggingFace(Box::new(tokenizer))
            }
        };
        Ok(Tokenizer { spec, tables })
    }

    /// The spec this tokenizer was built from: what a model file stores.
    pub fn spec(&self) -> &TokenizerSpec {
        &self.spec
    }

    /// GPT-2's tokenizer from the contents of `vocab.json` and `merges.txt`.
    ///
    /// `merges.txt` may start with a `#version` line and end with blank lines; each other line is
    /// two tokens separated by whitespace (an error names the line otherwise). `<|endoftext|>`,
    /// and any other vocabulary entry that BPE cannot produce, is recognised as a special token
    /// in text.
    pub fn gpt2_from_files(vocab_json: &str, merges_txt: &str) -> Result<Self, TokenizerError> {
        let vocab: BTreeMap<String, u32> = serde_json::from_str(strip_bom(vocab_json))
            .map_err(|e| TokenizerError::InvalidVocabJson(e.to_string()))?;
        let mut merges = Vec::new();
        for (index, line) in strip_bom(merges_txt).lines().enumerate() {
            if (index == 0 && line.starts_with("#version")) || line.trim().is_empty() {
                continue;
            }
            let Some((a, b)) = bpe::split_merge(line) else {
                return Err(TokenizerError::InvalidMerge {
                    place: format!("merges.txt line {}", index + 1),
                    text: line.to_string(),
                });
            };
            merges.push(format!("{a} {b}"));
        }
        Self::from_spec(TokenizerSpec::Gpt2Bpe { vocab, merges })
    }

    /// GPT-2's tokenizer from a Hugging Face `tokenizer.json` whose model is BPE behind a
    /// `ByteLevel` pre-tokenizer.
    ///
    /// Merges may be `"a b"` strings (older files) or `["a", "b"]` pairs (newer ones). The added
    /// tokens (`added_tokens`, e.g. `<|endoftext|>`) join the spec's vocabulary when the model's
    /// lacks them, and are recognised in text like [`Self::gpt2_from_files`]' special tokens —
    /// also after the spec is stored in a model file and rebuilt. (An added token that BPE can
    /// also produce, which no real GPT-2-style file has, is then an ordinary token; the
    /// `lstrip`/`rstrip`/`single_word` options of added tokens are not applied; GPT-2 uses none.)
    ///
    /// Refused with [`TokenizerError::UnsupportedTokenizerJson`], because they would tokenise
    /// differently from the model's own tokenizer: other models than BPE, pre-tokenizers other
    /// than a plain `ByteLevel` one (GPT-2's pattern, no added prefix space), normalizers, and
    /// subword prefixes or suffixes.
    pub fn gpt2_from_tokenizer_json(json: &str) -> Result<Self, TokenizerError> {
        let invalid = |m: String| TokenizerError::InvalidTokenizerJson(m);
        let unsupported = |m: String| Err(TokenizerError::UnsupportedTokenizerJson(m));
        let mut root: Value =
            serde_json::from_str(strip_bom(json)).map_err(|e| invalid(e.to_string()))?;
        if !root.is_object() {
            return Err(invalid("not a JSON object".into()));
        }
        match root["model"]["type"].as_str() {
            None | Some("BPE") => {}
            Some(other) => {
                return unsupported(format!("the model is {other}, not GPT-2's BPE"));
            }
        }
        check_normalizer(&root["normalizer"])?;
        check_pre_tokenizer(&root["pre_tokenizer"])?;
        if root["model"].is_null() {
            return Err(invalid("it has no \"model\"".into()));
        }

        let model: HfModel = serde_json::from_value(root["model"].take())
            .map_err(|e| invalid(format!("model: {e}")))?;
        for (field, value) in [
            (
                "continuing_subword_prefix",
                &model.continuing_subword_prefix,
            ),
            ("end_of_word_suffix", &model.end_of_word_suffix),
        ] {
            if value.as_deref().is_some_and(|v| !v.is_empty()) {
                return unsupported(format!(
                    "the BPE model has a {field}, which GPT-2's has not"
                ));
            }
        }
        if model.ignore_merges {
            return unsupported(
                "the BPE model ignores merges for whole words (ignore_merges)".into(),
            );
        }
        let added: Vec<HfAddedToken> = match root["added_tokens"].take() {
            Value::Null => Vec::new(),
            tokens => {
                serde_json::from_value(tokens).map_err(|e| invalid(format!("added_tokens: {e}")))?
            }
        };

        let mut vocab = model.vocab;
        let mut ids: HashMap<u32, String> = vocab.iter().map(|(t, &id)| (id, t.clone())).collect();
        for token in added.into_iter().filter(|t| !t.content.is_empty()) {
            match (vocab.get(&token.content), ids.get(&token.id)) {
                (Some(&id), _) if id == token.id => {}
                (Some(&id), _) => {
                    return Err(invalid(format!(
                        "added token {:?} has id {} but the model's vocabulary gives it {id}",
                        token.content, token.id
                    )))
                }
                (None, Some(other)) => {
                    return Err(invalid(format!(
                        "added token {:?} has id {}, which is already {other:?}'s",
                        token.content, token.id
                    )))
                }
                (None, None) => {
                    ids.insert(token.id, token.content.clone());
                    vocab.insert(token.content, token.id);
                }
            }
        }

        let merges = model
            .merges
            .iter()
            .enumerate()
            .map(|(index, merge)| {
                let parts = match merge {
                    Value::String(line) => bpe::split_merge(line),
                    Value::Array(pair) => match pair.as_slice() {
                        [Value::String(a), Value::String(b)]
                            if bpe::split_merge(&format!("{a} {b}")) == Some((a, b)) =>
                        {
                            Some((a.as_str(), b.as_str()))
                        }
                        _ => None,
                    },
                    _ => None,
                };
                parts
                    .map(|(a, b)| format!("{a} {b}"))
                    .ok_or_else(|| TokenizerError::InvalidMerge {
                        place: format!("tokenizer.json merge {}", index + 1),
                        text: merge.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_spec(TokenizerSpec::Gpt2Bpe { vocab, merges })
    }

    /// The number of ids: the vocabulary's length, for BPE its largest id + 1 (the size of the
    /// model's embedding table that it needs).
    pub fn vocab_size(&self) -> usize {
        match &self.tables {
            Tables::Bpe(bpe) => bpe.vocab_size(),
            Tables::HuggingFace(hf) => hf
                .get_vocab(true)
                .values()
                .max()
                .map_or(0, |&id| id as usize + 1),
            Tables::Char { .. } | Tables::Words { .. } => self.list_vocab().len(),
        }
    }

    /// Text to ids.
    ///
    /// * Characters: one id per character; a character outside the vocabulary is an error naming
    ///   it. Special entries such as `"<bos>"` are never produced.
    /// * Words: the text is split on whitespace (any amount); an unknown symbol is an error
    ///   naming it.
    /// * GPT-2 BPE: never fails with a byte-level vocabulary (every byte has a token). Special
    ///   tokens written in the text (`<|endoftext|>`) become their ids, as in Hugging Face's
    ///   fast tokenizer.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        match &self.tables {
            Tables::Char { ids } => text
                .chars()
                .map(|ch| {
                    ids.get(&ch)
                        .copied()
                        .ok_or(TokenizerError::UnknownChar { ch })
                })
                .collect(),
            Tables::Words { ids } => text
                .split_whitespace()
                .map(|w| {
                    ids.get(w)
                        .copied()
                        .ok_or_else(|| TokenizerError::UnknownSymbol {
                            symbol: w.to_string(),
                        })
                })
                .collect(),
            Tables::Bpe(bpe) => bpe.encode(text),
            Tables::HuggingFace(hf) => hf
                .encode(text, true)
                .map(|encoding| encoding.get_ids().to_vec())
                .map_err(|e| TokenizerError::Library(e.to_string())),
        }
    }

    /// Ids to text: characters concatenated (special entries as written, e.g. `"<bos>"`),
    /// symbols joined by single spaces, or BPE tokens' bytes joined and read as UTF-8 (bytes
    /// that are not valid UTF-8, such as a character whose tokens are not all there, become
    /// U+FFFD, as in Hugging Face's decoder). An unknown id is an error.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        match &self.tables {
            Tables::Bpe(bpe) => bpe.decode(ids),
            Tables::HuggingFace(hf) => {
                let vocab_size = self.vocab_size();
                if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab_size) {
                    return Err(TokenizerError::IdOutOfRange { id, vocab_size });
                }
                hf.decode(ids, false)
                    .map_err(|e| TokenizerError::Library(e.to_string()))
            }
            Tables::Char { .. } => ids.iter().map(|&id| self.list_entry(id)).collect(),
            Tables::Words { .. } => Ok(ids
                .iter()
                .map(|&id| self.list_entry(id))
                .collect::<Result<Vec<_>, _>>()?
                .join(" ")),
        }
    }

    /// A human-readable label of one token, for token chips and heatmap axes (`None` for an
    /// unknown id).
    ///
    /// Whitespace would be invisible there, so a space shows as `␣`, a newline as `⏎`, a tab as
    /// `⇥` and other control characters as their Unicode control pictures (`\r` → `␍`). BPE
    /// tokens show their decoded text (`Ġthe` → `␣the`); a token holding only part of a UTF-8
    /// character (emoji are often split) shows those bytes as `\xF0\x9F`. Special tokens show as
    /// written (`<|endoftext|>`).
    pub fn token_label(&self, id: u32) -> Option<String> {
        if let Tables::HuggingFace(hf) = &self.tables {
            // The token's text when it decodes on its own; else its vocabulary entry (a byte
            // such as `<0xF0>`, or a byte-level piece of a character).
            let token = hf.id_to_token(id)?;
            return Some(match hf.decode(&[id], false) {
                Ok(text) if !text.is_empty() && !text.contains('\u{FFFD}') => visible(&text),
                _ => token,
            });
        }
        let Tables::Bpe(bpe) = &self.tables else {
            return self.list_vocab().get(id as usize).map(|t| visible(t));
        };
        if let Some(text) = bpe.special_text(id) {
            return Some(visible(text));
        }
        let mut label = String::new();
        for chunk in bpe.token_bytes(id)?.utf8_chunks() {
            label.push_str(&visible(chunk.valid()));
            for b in chunk.invalid() {
                label.extend(['\\', 'x', hex_digit(b >> 4), hex_digit(b & 0xF)]);
            }
        }
        Some(label)
    }

    /// `"char"`, `"words"`, `"gpt2_bpe"` or `"hugging_face"`: the spec's `kind` tag.
    pub fn kind(&self) -> &'static str {
        match self.tables {
            Tables::Char { .. } => "char",
            Tables::Words { .. } => "words",
            Tables::Bpe(_) => "gpt2_bpe",
            Tables::HuggingFace(_) => "hugging_face",
        }
    }

    /// A Hugging Face `tokenizer.json`: GPT-2's byte-level BPE through the hand-written
    /// tokenizer when it is one, anything else through the `tokenizers` library.
    pub fn from_tokenizer_json(json: &str) -> Result<Self, TokenizerError> {
        match Tokenizer::gpt2_from_tokenizer_json(json) {
            Err(TokenizerError::UnsupportedTokenizerJson(_)) => {
                Tokenizer::from_spec(TokenizerSpec::HuggingFace {
                    json: strip_bom(json).to_string(),
                })
            }
            other => other,
        }
    }

    /// The vocabulary of a character or word tokenizer (empty for BPE).
    fn list_vocab(&self) -> &[String] {
        match &self.spec {
            TokenizerSpec::Char { vocab } | TokenizerSpec::Words { vocab } => vocab,
            TokenizerSpec::Gpt2Bpe { .. } | TokenizerSpec::HuggingFace { .. } => &[],
        }
    }

    /// Entry `id` of a character or word vocabulary.
    fn list_entry(&self, id: u32) -> Result<&str, TokenizerError> {
        let vocab = self.list_vocab();
        vocab
            .get(id as usize)
            .map(String::as_str)
            .ok_or(TokenizerError::IdOutOfRange {
                id,
                vocab_size: vocab.len(),
            })
    }
}

/// The parts of a `tokenizer.json` model that matter here.
#[derive(Deserialize)]
struct HfModel {
    vocab: BTreeMap<String, u32>,
    merges: Vec<Value>,
    #[serde(default)]
    continuing_subword_prefix: Option<String>,
    #[serde(default)]
    end_of_word_suffix: Option<String>,
    #[serde(default)]
    ignore_merges: bool,
}

/// One of `tokenizer.json`'s `added_tokens`.
#[derive(Deserialize)]
struct HfAddedToken {
    id: u32,
    content: String,
}

fn check_normalizer(normalizer: &Value) -> Result<(), TokenizerError> {
    let empty_sequence = normalizer["type"] == "Sequence"
        && normalizer["normalizers"]
            .as_array()
            .is_some_and(Vec::is_empty);
    if normalizer.is_null() || empty_sequence {
        return Ok(());
    }
    let kind = normalizer["type"].as_str().unwrap_or("unknown");
    Err(TokenizerError::UnsupportedTokenizerJson(format!(
        "the text is normalised ({kind}) before tokenising, which GPT-2's tokenizer does not do"
    )))
}

fn check_pre_tokenizer(pre: &Value) -> Result<(), TokenizerError> {
    let unsupported = |m: String| Err(TokenizerError::UnsupportedTokenizerJson(m));
    let only_byte_level = "only GPT-2's ByteLevel pre-tokenizer is supported";
    let byte_level = match pre["type"].as_str() {
        Some("ByteLevel") => pre,
        Some("Sequence") => match pre["pretokenizers"].as_array().map(Vec::as_slice) {
            Some([only]) if only["type"] == "ByteLevel" => only,
            _ => {
                return unsupported(format!(
                    "the pre-tokenizer is a Sequence of several; {only_byte_level}"
                ))
            }
        },
        Some(other) => {
            return unsupported(format!("the pre-tokenizer is {other}; {only_byte_level}"))
        }
        None => return unsupported(format!("there is no pre-tokenizer; {only_byte_level}")),
    };
    if byte_level["add_prefix_space"] == true {
        return unsupported(
            "the ByteLevel pre-tokenizer adds a space before the text (add_prefix_space), \
             which GPT-2's does not"
                .into(),
        );
    }
    if byte_level["use_regex"] == false {
        return unsupported(
            "the ByteLevel pre-tokenizer does not split words with GPT-2's pattern (use_regex)"
                .into(),
        );
    }
    Ok(())
}

fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{FEFF}').unwrap_or(text)
}

/// Makes whitespace and control characters visible: space `␣`, newline `⏎`, tab `⇥`, other C0
/// controls and DEL as their control pictures (U+2400…).
fn visible(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            ' ' => '␣',
            '\n' => '⏎',
            '\t' => '⇥',
            '\u{0}'..='\u{1F}' => char::from_u32(0x2400 + u32::from(c)).unwrap_or(c),
            '\u{7F}' => '␡',
            other => other,
        })
        .collect()
}

/// An uppercase hexadecimal digit (`n` < 16).
fn hex_digit(n: u8) -> char {
    char::from_digit(u32::from(n), 16).map_or('?', |c| c.to_ascii_uppercase())
}

fn single_char(s: &str) -> Option<char> {
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Some(c),
        _ => None,
    }
}

/// A character or word vocabulary is non-empty, with unique non-empty entries that fit in u32 ids.
fn check_list(vocab: &[String], what: &str) -> Result<(), TokenizerError> {
    let invalid = |m: String| Err(TokenizerError::InvalidVocab(m));
    if vocab.is_empty() {
        return invalid("the vocabulary is empty".into());
    }
    if u32::try_from(vocab.len()).is_err() {
        return invalid(format!("{} entries do not fit in 32-bit ids", vocab.len()));
    }
    let mut seen = HashSet::with_capacity(vocab.len());
    for (id, entry) in vocab.iter().enumerate() {
        if entry.is_empty() {
            return invalid(format!("{what}entry {id} is empty"));
        }
        if !seen.insert(entry.as_str()) {
            return invalid(format!("{what}{entry:?} appears twice"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // A ~300-token byte-level BPE trained with Hugging Face `tokenizers`, and its reference ids;
    // `tests/fixtures/bpe/make_cases.py` regenerates them. Relative paths, so the same tests run
    // from this crate and from a scratch crate that includes this file by path.
    const VOCAB_JSON: &str = include_str!("../../../tests/fixtures/bpe/vocab.json");
    const MERGES_TXT: &str = include_str!("../../../tests/fixtures/bpe/merges.txt");
    const TOKENIZER_JSON: &str = include_str!("../../../tests/fixtures/bpe/tokenizer.json");
    const CASES_JSON: &str = include_str!("../../../tests/fixtures/bpe/cases.json");

    #[derive(Deserialize)]
    struct Cases {
        vocab_size: usize,
        cases: Vec<Case>,
    }

    #[derive(Deserialize)]
    struct Case {
        text: String,
        /// What `tokenizers` gives with tokenizer.json (its added tokens split out first).
        ids: Vec<u32>,
        /// What it gives with vocab.json + merges.txt (the vocabulary's specials declared).
        ids_files: Vec<u32>,
    }

    fn cases() -> Cases {
        serde_json::from_str(CASES_JSON).unwrap()
    }

    fn from_files() -> Tokenizer {
        Tokenizer::gpt2_from_files(VOCAB_JSON, MERGES_TXT).unwrap()
    }

    fn from_json() -> Tokenizer {
        Tokenizer::gpt2_from_tokenizer_json(TOKENIZER_JSON).unwrap()
    }

    fn fixture_id(token: &str) -> u32 {
        let vocab: BTreeMap<String, u32> = serde_json::from_str(VOCAB_JSON).unwrap();
        vocab[token]
    }

    fn chars() -> Tokenizer {
        let vocab = ["<bos>", " ", "\n", "\t", "\r", "a", "b", "c", "é", "🚀"]
            .map(String::from)
            .to_vec();
        Tokenizer::from_spec(TokenizerSpec::Char { vocab }).unwrap()
    }

    fn words() -> Tokenizer {
        let vocab = ["0", "1", "2", "3", "|", "<bos>"]
            .map(String::from)
            .to_vec();
        Tokenizer::from_spec(TokenizerSpec::Words { vocab }).unwrap()
    }

    /// Texts that stress pre-tokenisation and byte handling, beyond the fixture's cases.
    const TRICKY: &[&str] = &[
        "",
        " ",
        "\n",
        "  two  spaces  ",
        "\n\n\nnewlines\r\n\r\n",
        "tabs\tand \t mixed \u{b}\u{c} controls \u{0}\u{1f}\u{7f}",
        "don't we'll I'm they've y'all 'tis ''' 's",
        "café naïve — 東京 Ελληνικά עברית العربية हिन्दी",
        "🚀🔥👩‍💻👨‍👩‍👧🇫🇷 skin 👍🏽 keycap 1️⃣",
        "e\u{301}\u{302} a\u{20dd} zero\u{200b}width \u{feff}bom",
        "12345 3.14159 1,000,000 ½ ² Ⅻ ٣",
        "nbsp\u{a0}here\u{2003}em\u{3000}ideo\u{2028}line\u{85}nel",
        "<|endoftext|>x<|endoftext|><|endoftext|> <pad>< pad> <|sep|>",
        "<|endoftext|",
        "|endoftext|>",
        "<<|endoftext|>>",
        "\u{10ffff}\u{e000}\u{fffd}",
        "    indented code {\n        return x;\n    }\n",
    ];

    #[test]
    fn char_encodes_each_character_and_decodes_back() {
        let t = chars();
        let ids = t.encode("ab c\n\té🚀").unwrap();
        assert_eq!(ids, [5, 6, 1, 7, 2, 3, 8, 9]);
        assert_eq!(t.decode(&ids).unwrap(), "ab c\n\té🚀");
        for text in ["", "cab", "\r\n", "  a  "] {
            assert_eq!(t.decode(&t.encode(text).unwrap()).unwrap(), text);
        }
        assert_eq!(t.vocab_size(), 10);
        assert_eq!(t.kind(), "char");
    }

    #[test]
    fn char_errors_name_the_character() {
        let t = chars();
        assert_eq!(
            t.encode("abz").unwrap_err().to_string(),
            "character 'z' (U+007A) is not in this model's vocabulary"
        );
        assert_eq!(
            t.encode("e\u{301}").unwrap_err(),
            TokenizerError::UnknownChar { ch: 'e' }
        );
        let no_accent = Tokenizer::from_spec(TokenizerSpec::Char {
            vocab: vec!["a".into()],
        })
        .unwrap();
        assert_eq!(
            no_accent.encode("aé").unwrap_err().to_string(),
            "character 'é' (U+00E9) is not in this model's vocabulary"
        );
        assert_eq!(
            no_accent.encode("\u{1F600}").unwrap_err().to_string(),
            "character '\u{1F600}' (U+1F600) is not in this model's vocabulary"
        );
    }

    #[test]
    fn char_special_entries_only_come_from_ids() {
        let t = chars();
        assert!(t.encode("<bos>").is_err(), "text never produces <bos>");
        assert_eq!(t.decode(&[0, 5, 6]).unwrap(), "<bos>ab");
        assert_eq!(t.token_label(0).as_deref(), Some("<bos>"));
    }

    #[test]
    fn char_labels_make_whitespace_visible() {
        let t = chars();
        let labels: Vec<String> = (1..=5).map(|id| t.token_label(id).unwrap()).collect();
        assert_eq!(labels, ["␣", "⏎", "⇥", "␍", "a"]);
        assert_eq!(t.token_label(8).as_deref(), Some("é"));
        assert_eq!(t.token_label(10), None);
    }

    #[test]
    fn words_split_on_any_whitespace_and_join_with_one_space() {
        let t = words();
        let ids = t.encode("  3 1\t2  | 1 2 3\n").unwrap();
        assert_eq!(ids, [3, 1, 2, 4, 1, 2, 3]);
        assert_eq!(t.decode(&ids).unwrap(), "3 1 2 | 1 2 3");
        assert_eq!(t.encode("").unwrap(), Vec::<u32>::new());
        assert_eq!(t.decode(&[5, 0]).unwrap(), "<bos> 0");
        assert_eq!(t.token_label(4).as_deref(), Some("|"));
        assert_eq!((t.vocab_size(), t.kind()), (6, "words"));
    }

    #[test]
    fn words_errors_name_the_symbol() {
        let t = words();
        assert_eq!(
            t.encode("1 2 12").unwrap_err().to_string(),
            "symbol \"12\" is not in this model's vocabulary"
        );
        assert_eq!(
            t.encode("1 2|3").unwrap_err(),
            TokenizerError::UnknownSymbol {
                symbol: "2|3".into()
            }
        );
    }

    #[test]
    fn invalid_vocabularies_are_rejected_with_reasons() {
        let err = |spec| Tokenizer::from_spec(spec).unwrap_err().to_string();
        let list = |v: &[&str]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(
            err(TokenizerSpec::Char {
                vocab: list(&["a", "b", "a"])
            }),
            "invalid vocabulary: \"a\" appears twice"
        );
        assert_eq!(
            err(TokenizerSpec::Char { vocab: vec![] }),
            "invalid vocabulary: the vocabulary is empty"
        );
        assert_eq!(
            err(TokenizerSpec::Char {
                vocab: list(&["a", ""])
            }),
            "invalid vocabulary: entry 1 is empty"
        );
        assert_eq!(
            err(TokenizerSpec::Words {
                vocab: list(&["1", "1 2"])
            }),
            "invalid vocabulary: symbol \"1 2\" contains whitespace, which separates symbols"
        );
        assert_eq!(
            err(TokenizerSpec::Words {
                vocab: list(&["x", "x"])
            }),
            "invalid vocabulary: symbol \"x\" appears twice"
        );
        assert_eq!(
            err(TokenizerSpec::Gpt2Bpe {
                vocab: [("a".to_string(), 3), ("b".to_string(), 3)].into(),
                merges: vec![],
            }),
            "invalid vocabulary: id 3 is used by both \"a\" and \"b\""
        );
        assert_eq!(
            err(TokenizerSpec::Gpt2Bpe {
                vocab: [("a".to_string(), 0)].into(),
                merges: vec!["a".into()],
            }),
            "merge 1 is not two tokens: \"a\""
        );
    }

    #[test]
    fn decode_rejects_unknown_ids() {
        let padded: Vec<String> = (0..300).map(|i| format!("<{i}>")).collect();
        let t = Tokenizer::from_spec(TokenizerSpec::Char { vocab: padded }).unwrap();
        assert_eq!(
            t.decode(&[1, 812]).unwrap_err().to_string(),
            "token id 812 is outside the vocabulary (size 300)"
        );
        assert_eq!(
            words().decode(&[6]).unwrap_err(),
            TokenizerError::IdOutOfRange {
                id: 6,
                vocab_size: 6
            }
        );
        assert_eq!(
            from_files().decode(&[300]).unwrap_err().to_string(),
            "token id 300 is outside the vocabulary (size 300)"
        );
        assert_eq!(words().token_label(6), None);
        assert_eq!(from_files().token_label(300), None);
    }

    #[test]
    fn spec_json_is_tagged_by_kind() {
        for t in [chars(), words(), from_files()] {
            let json = serde_json::to_string(t.spec()).unwrap();
            assert!(
                json.starts_with(&format!("{{\"kind\":\"{}\",", t.kind())),
                "{json:.60}"
            );
            let back: TokenizerSpec = serde_json::from_str(&json).unwrap();
            assert_eq!(&back, t.spec());
        }
        let spec: TokenizerSpec = serde_json::from_str(
            r#"{"kind": "gpt2_bpe", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}"#,
        )
        .unwrap();
        assert_eq!(
            Tokenizer::from_spec(spec).unwrap().encode("abba").unwrap(),
            [2, 1, 0]
        );
        assert!(serde_json::from_str::<TokenizerSpec>(r#"{"kind": "sentencepiece"}"#).is_err());
    }

    #[test]
    fn gpt2_from_files_matches_tokenizers() {
        let t = from_files();
        assert_eq!((t.kind(), t.vocab_size()), ("gpt2_bpe", 300));
        let cases = cases();
        assert!(cases.cases.len() >= 10);
        for case in &cases.cases {
            assert_eq!(
                t.encode(&case.text).unwrap(),
                case.ids_files,
                "{:?}",
                case.text
            );
            assert_eq!(t.decode(&case.ids_files).unwrap(), case.text);
        }
    }

    #[test]
    fn gpt2_from_tokenizer_json_matches_tokenizers() {
        let t = from_json();
        let cases = cases();
        assert_eq!(t.vocab_size(), cases.vocab_size);
        for case in &cases.cases {
            assert_eq!(t.encode(&case.text).unwrap(), case.ids, "{:?}", case.text);
            assert_eq!(t.decode(&case.ids).unwrap(), case.text);
        }
        // The same model with merges as "a b" strings (the older format) is the same tokenizer.
        let mut json: Value = serde_json::from_str(TOKENIZER_JSON).unwrap();
        let pairs = json["model"]["merges"].as_array().unwrap().clone();
        assert!(
            pairs.iter().all(Value::is_array),
            "the fixture stores pairs"
        );
        json["model"]["merges"] = pairs
            .iter()
            .map(|p| {
                Value::String(format!(
                    "{} {}",
                    p[0].as_str().unwrap(),
                    p[1].as_str().unwrap()
                ))
            })
            .collect();
        let legacy = Tokenizer::gpt2_from_tokenizer_json(&json.to_string()).unwrap();
        assert_eq!(legacy.spec(), t.spec());
        // And apart from the added "<|sep|>", it has the spec of vocab.json + merges.txt.
        let TokenizerSpec::Gpt2Bpe { mut vocab, merges } = t.spec().clone() else {
            panic!("a BPE spec")
        };
        assert_eq!(vocab.remove("<|sep|>"), Some(300));
        assert_eq!(
            &TokenizerSpec::Gpt2Bpe { vocab, merges },
            from_files().spec()
        );
    }

    #[test]
    fn a_stored_spec_rebuilds_the_same_tokenizer() {
        for (t, json_ids) in [(from_json(), true), (from_files(), false)] {
            let stored = serde_json::to_string(t.spec()).unwrap();
            let rebuilt = Tokenizer::from_spec(serde_json::from_str(&stored).unwrap()).unwrap();
            assert_eq!(rebuilt.vocab_size(), t.vocab_size());
            for case in cases().cases {
                let expected = if json_ids { &case.ids } else { &case.ids_files };
                assert_eq!(
                    &rebuilt.encode(&case.text).unwrap(),
                    expected,
                    "{:?}",
                    case.text
                );
            }
        }
    }

    #[test]
    fn bpe_round_trips_any_text() {
        let alphabet: Vec<char> =
            "aZé東🚀👩\u{200d}\u{301} \t\n\r\u{a0}\u{3000}0½'s<|>endoftext!?.,-_\\\"\u{0}\u{7f}"
                .chars()
                .collect();
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move |n: usize| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as usize % n
        };
        let mut texts: Vec<String> = TRICKY.iter().map(ToString::to_string).collect();
        texts.extend(cases().cases.into_iter().map(|c| c.text));
        for _ in 0..400 {
            let len = next(40);
            texts.push((0..len).map(|_| alphabet[next(alphabet.len())]).collect());
        }
        for t in [from_files(), from_json()] {
            for text in &texts {
                let ids = t.encode(text).unwrap();
                assert!(ids.iter().all(|&id| (id as usize) < t.vocab_size()));
                assert_eq!(&t.decode(&ids).unwrap(), text);
            }
        }
    }

    #[test]
    fn bpe_handles_long_inputs() {
        let t = from_files();
        let long = [
            "a".repeat(100_000),
            " ".repeat(100_000) + "x",
            "\n \t".repeat(30_000),
            "The fox, the dog and 1,000 🚀. ".repeat(5_000),
        ];
        for text in &long {
            let ids = t.encode(text).unwrap();
            assert_eq!(&t.decode(&ids).unwrap(), text);
        }
    }

    #[test]
    fn special_tokens_in_text_become_their_ids() {
        let t = from_files();
        let eot = fixture_id("<|endoftext|>");
        let ids = t.encode("a<|endoftext|>b").unwrap();
        assert_eq!(ids, [fixture_id("a"), eot, fixture_id("b")]);
        // "<|sep|>" is only an added token of tokenizer.json: plain text for vocab.json.
        assert!(t.encode("<|sep|>").unwrap().len() > 1);
        assert_eq!(from_json().encode("<|sep|>").unwrap(), [300]);
    }

    #[test]
    fn bpe_labels_show_the_decoded_text() {
        let t = from_files();
        let label = |token: &str| t.token_label(fixture_id(token)).unwrap();
        assert_eq!(label("Ġ"), "␣");
        assert_eq!(label("Ċ"), "⏎");
        assert_eq!(label("ĉ"), "⇥");
        assert_eq!(label("Ġthe"), "␣the");
        assert_eq!(label("ĠĠ"), "␣␣");
        assert_eq!(label("Ã©"), "é");
        assert_eq!(label("ðŁ"), "\\xF0\\x9F");
        assert_eq!(label("ĠðŁ"), "␣\\xF0\\x9F");
        assert_eq!(label("<|endoftext|>"), "<|endoftext|>");
        assert_eq!(label("<pad>"), "<pad>");
    }

    #[test]
    fn merges_txt_is_read_leniently_and_errors_name_the_line() {
        let crlf = MERGES_TXT.replace('\n', "\r\n");
        let bom = format!("\u{FEFF}{MERGES_TXT}\n\n");
        let no_version: String = MERGES_TXT.lines().skip(1).collect::<Vec<_>>().join("\n");
        for merges in [crlf.as_str(), bom.as_str(), no_version.as_str()] {
            let t = Tokenizer::gpt2_from_files(VOCAB_JSON, merges).unwrap();
            assert_eq!(t.spec(), from_files().spec());
        }
        let err = Tokenizer::gpt2_from_files(VOCAB_JSON, "#version: 0.2\nĠ a\nĠ t he\n");
        assert_eq!(
            err.unwrap_err().to_string(),
            "merges.txt line 3 is not two tokens: \"Ġ t he\""
        );
        // Merges of tokens the vocabulary lacks are ignored, as they could never apply.
        assert!(Tokenizer::gpt2_from_files(VOCAB_JSON, "x\u{1}y zz\n").is_ok());
    }

    #[test]
    fn vocab_json_errors_are_reported() {
        for bad in ["", "[1, 2]", r#"{"a": -1}"#, r#"{"a": "0"}"#] {
            let err = Tokenizer::gpt2_from_files(bad, "").unwrap_err();
            assert!(
                matches!(err, TokenizerError::InvalidVocabJson(_)),
                "{bad}: {err}"
            );
            assert!(err.to_string().starts_with("invalid vocab.json: "), "{err}");
        }
        assert_eq!(
            Tokenizer::gpt2_from_files("{}", "")
                .unwrap_err()
                .to_string(),
            "invalid vocabulary: the vocabulary is empty"
        );
    }

    #[test]
    fn tokenizer_json_problems_are_explained() {
        let with = |edit: &dyn Fn(&mut Value)| {
            let mut json: Value = serde_json::from_str(TOKENIZER_JSON).unwrap();
            edit(&mut json);
            Tokenizer::gpt2_from_tokenizer_json(&json.to_string())
                .unwrap_err()
                .to_string()
        };
        assert!(Tokenizer::gpt2_from_tokenizer_json("{")
            .unwrap_err()
            .to_string()
            .starts_with("invalid tokenizer.json: "));
        assert_eq!(
            with(&|j| j["model"]["type"] = "WordPiece".into()),
            "unsupported tokenizer.json: the model is WordPiece, not GPT-2's BPE"
        );
        assert_eq!(
            with(&|j| j["pre_tokenizer"] = serde_json::json!({"type": "Metaspace"})),
            "unsupported tokenizer.json: the pre-tokenizer is Metaspace; \
             only GPT-2's ByteLevel pre-tokenizer is supported"
        );
        assert!(
            with(&|j| j["pre_tokenizer"]["add_prefix_space"] = true.into())
                .contains("add_prefix_space")
        );
        assert!(with(&|j| j["pre_tokenizer"] = Value::Null).contains("no pre-tokenizer"));
        assert!(with(&|j| j["normalizer"] = serde_json::json!({"type": "NFC"})).contains("(NFC)"));
        assert_eq!(
            with(&|j| j["model"]["merges"][1] = serde_json::json!(["Ġ", "a", "b"])),
            "tokenizer.json merge 2 is not two tokens: \"[\\\"Ġ\\\",\\\"a\\\",\\\"b\\\"]\""
        );
        assert!(with(&|j| j["model"]["vocab"] = Value::Null)
            .starts_with("invalid tokenizer.json: model: "));
        assert_eq!(
            with(&|j| j["added_tokens"][2]["id"] = 5.into()),
            "invalid tokenizer.json: added token \"<|sep|>\" has id 5, which is already \"$\"'s"
        );
        assert_eq!(
            with(&|j| j["added_tokens"][0]["id"] = 7.into()),
            "invalid tokenizer.json: added token \"<|endoftext|>\" has id 7 \
             but the model's vocabulary gives it 0"
        );
        // A Sequence holding just GPT-2's ByteLevel is fine.
        let mut json: Value = serde_json::from_str(TOKENIZER_JSON).unwrap();
        let byte_level = json["pre_tokenizer"].take();
        json["pre_tokenizer"] =
            serde_json::json!({"type": "Sequence", "pretokenizers": [byte_level]});
        assert!(Tokenizer::gpt2_from_tokenizer_json(&json.to_string()).is_ok());
    }

    #[test]
    fn tokenizers_are_shareable_and_debug_is_short() {
        fn shareable<T: Send + Sync + Clone>() {}
        shareable::<Tokenizer>();
        assert_eq!(
            format!("{:?}", from_json()),
            "Tokenizer { kind: \"gpt2_bpe\", vocab_size: 301, .. }"
        );
    }
}
