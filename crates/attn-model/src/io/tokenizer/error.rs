//! What can go wrong while building a tokenizer or converting between text and ids.

/// What can go wrong while building a tokenizer or converting between text and ids. Messages
/// are written for the person who typed the text or supplied the files.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenizerError {
    /// The text has a character that the character-level vocabulary lacks.
    #[error(
        "character {ch:?} (U+{code:04X}) is not in this model's vocabulary",
        code = u32::from(*.ch)
    )]
    UnknownChar {
        /// The character.
        ch: char,
    },
    /// The text has a symbol that the word-level vocabulary lacks.
    #[error("symbol {symbol:?} is not in this model's vocabulary")]
    UnknownSymbol {
        /// The whitespace-delimited symbol.
        symbol: String,
    },
    /// A token id at or beyond the vocabulary size.
    #[error("token id {id} is outside the vocabulary (size {vocab_size})")]
    IdOutOfRange {
        /// The id.
        id: u32,
        /// [`Tokenizer::vocab_size`](super::Tokenizer::vocab_size).
        vocab_size: usize,
    },
    /// An id below the vocabulary size that no token has (a BPE vocabulary's ids may have gaps).
    #[error("token id {id} belongs to no token of this vocabulary")]
    UnusedId {
        /// The id.
        id: u32,
    },
    /// BPE text needs a byte whose token the (incomplete) byte-level vocabulary lacks.
    #[error(
        "byte 0x{byte:02X} of {text:?} has no token in this model's vocabulary \
         (a byte-level vocabulary should hold all 256 bytes)"
    )]
    MissingByte {
        /// The byte.
        byte: u8,
        /// The pre-tokenised piece of text it is in.
        text: String,
    },
    /// The vocabulary is unusable (empty, duplicated tokens or ids, impossible symbols).
    #[error("invalid vocabulary: {0}")]
    InvalidVocab(String),
    /// The `tokenizers` library could not encode or decode.
    #[error("the tokenizer failed: {0}")]
    Library(String),
    /// `vocab.json` is not a JSON object of token → non-negative id.
    #[error("invalid vocab.json: {0}")]
    InvalidVocabJson(String),
    /// A merge is not two tokens.
    #[error("{place} is not two tokens: {text:?}")]
    InvalidMerge {
        /// Where it is: `"merges.txt line 17"`, `"tokenizer.json merge 17"` or `"merge 17"` (of
        /// a spec).
        place: String,
        /// The merge as written.
        text: String,
    },
    /// `tokenizer.json` cannot be read (not JSON, fields missing or of the wrong type).
    #[error("invalid tokenizer.json: {0}")]
    InvalidTokenizerJson(String),
    /// `tokenizer.json` describes a tokenizer other than GPT-2's byte-level BPE.
    #[error("unsupported tokenizer.json: {0}")]
    UnsupportedTokenizerJson(String),
}
