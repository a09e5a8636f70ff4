// TEMPORARY stub while the real tokenizer module is written.
use serde::{Deserialize, Serialize};
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TokenizerSpec { Char { vocab: Vec<String> } }
#[derive(Debug, thiserror::Error)]
#[error("stub")]
pub struct TokenizerError;
pub struct Tokenizer { spec: TokenizerSpec }
impl Tokenizer {
    pub fn from_spec(spec: TokenizerSpec) -> Result<Self, TokenizerError> { Ok(Tokenizer { spec }) }
    pub fn spec(&self) -> &TokenizerSpec { &self.spec }
    pub fn gpt2_from_files(_: &str, _: &str) -> Result<Self, TokenizerError> { Err(TokenizerError) }
    pub fn gpt2_from_tokenizer_json(_: &str) -> Result<Self, TokenizerError> { Err(TokenizerError) }
    pub fn vocab_size(&self) -> usize { 0 }
    pub fn encode(&self, _: &str) -> Result<Vec<u32>, TokenizerError> { Err(TokenizerError) }
    pub fn token_label(&self, _: u32) -> Option<String> { None }
    pub fn kind(&self) -> &'static str { "char" }
}
