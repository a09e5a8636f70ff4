//! GPT-2's byte-level BPE. Text is split by GPT-2's pre-tokenisation pattern, each piece's UTF-8
//! bytes are mapped to printable characters (GPT-2's `bytes_to_unicode` table, so every byte
//! string is a valid token string), and adjacent symbols are merged by the lowest merge rank
//! until no ranked pair remains.

use std::collections::{BTreeMap, HashMap};

use fancy_regex::Regex;

use super::TokenizerError;

/// GPT-2's pre-tokenisation: contractions, letters, numbers, other symbols (each optionally with
/// one leading space), then runs of whitespace — all but the last space of a run when a
/// non-space follows, so that space can lead the next word.
const GPT2_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// The tables of a GPT-2 byte-level BPE tokenizer.
#[derive(Clone, Debug)]
pub struct Gpt2Bpe {
    encoder: HashMap<String, u32>,
    decoder: HashMap<u32, String>,
    ranks: HashMap<(String, String), usize>,
    byte_to_char: [char; 256],
    char_to_byte: HashMap<char, u8>,
    /// Special tokens recognised verbatim in text, longest first.
    special: Vec<(String, u32)>,
    pattern: Regex,
}

/// GPT-2's table from bytes to printable characters: printable Latin-1 bytes map to themselves,
/// the rest to code points from U+0100 upwards.
fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let printable = |b: u32| {
        (b'!' as u32..=b'~' as u32).contains(&b)
            || (0xA1..=0xAC).contains(&b)
            || (0xAE..=0xFF).contains(&b)
    };
    let mut next = 256u32;
    for b in 0..256u32 {
        table[b as usize] = if printable(b) {
            char::from_u32(b).expect("Latin-1 is valid")
        } else {
            let c = char::from_u32(next).expect("U+0100.. is valid");
            next += 1;
            c
        };
    }
    table
}

impl Gpt2Bpe {
    /// Builds the tables. `special` lists tokens recognised verbatim in text; when it is empty,
    /// GPT-2's `<|endoftext|>` is special if the vocabulary has it (as `transformers` does).
    pub fn new(
        vocab: &BTreeMap<String, u32>,
        merges: &[String],
        special: &[(String, u32)],
    ) -> Result<Self, TokenizerError> {
        if vocab.is_empty() {
            return Err(TokenizerError::Vocab("vocab.json is empty".into()));
        }
        let mut decoder = HashMap::with_capacity(vocab.len());
        for (token, &id) in vocab {
            if let Some(other) = decoder.insert(id, token.clone()) {
                return Err(TokenizerError::Vocab(format!(
                    "id {id} is used by both {other:?} and {token:?}"
                )));
            }
        }
        let mut ranks = HashMap::with_capacity(merges.len());
        for (rank, line) in merges.iter().enumerate() {
            let mut parts = line.split(' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty() => {
                    // Keep the first (highest-priority) rank of a duplicated merge.
                    ranks.entry((a.to_string(), b.to_string())).or_insert(rank);
                }
                _ => {
                    return Err(TokenizerError::Merge {
                        line: rank + 1,
                        text: line.clone(),
                    })
                }
            }
        }
        let byte_to_char = bytes_to_unicode();
        let char_to_byte = byte_to_char
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect();
        let mut bpe = Gpt2Bpe {
            encoder: vocab.iter().map(|(k, &v)| (k.clone(), v)).collect(),
            decoder,
            ranks,
            byte_to_char,
            char_to_byte,
            special: Vec::new(),
            pattern: Regex::new(GPT2_PATTERN).expect("the GPT-2 pattern compiles"),
        };
        if special.is_empty() {
            if let Some(&id) = vocab.get("<|endoftext|>") {
                bpe.set_special_tokens(&[("<|endoftext|>".to_string(), id)]);
            }
        } else {
            bpe.set_special_tokens(special);
        }
        Ok(bpe)
    }

    /// Replaces the set of special tokens recognised verbatim in text.
    pub fn set_special_tokens(&mut self, special: &[(String, u32)]) {
        let mut special: Vec<(String, u32)> = special
            .iter()
            .filter(|(s, _)| !s.is_empty())
            .cloned()
            .collect();
        special.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        for (s, id) in &special {
            self.decoder.entry(*id).or_insert_with(|| s.clone());
        }
        self.special = special;
    }

    /// The byte-level token string of `id`.
    pub fn token(&self, id: u32) -> Option<&str> {
        self.decoder.get(&id).map(String::as_str)
    }

    /// The raw bytes `id` stands for.
    pub fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        let token = self.token(id)?;
        if self.special.iter().any(|(s, sid)| *sid == id && s == token) {
            return Some(token.as_bytes().to_vec());
        }
        Some(
            token
                .chars()
                .map(|c| self.char_to_byte.get(&c).copied().unwrap_or(b'?'))
                .collect(),
        )
    }

    /// Text to ids. Never fails: every byte has a token in a GPT-2 vocabulary. (A symbol missing
    /// from a damaged vocabulary is skipped rather than invented.)
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            // The earliest special token, longest first at the same position.
            let next_special = self
                .special
                .iter()
                .filter_map(|(s, id)| rest.find(s.as_str()).map(|pos| (pos, s.len(), *id)))
                .min_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
            let (plain, after) = match next_special {
                Some((pos, len, id)) => {
                    let plain = &rest[..pos];
                    self.encode_plain(plain, &mut ids);
                    ids.push(id);
                    (None, &rest[pos + len..])
                }
                None => (Some(rest), ""),
            };
            if let Some(plain) = plain {
                self.encode_plain(plain, &mut ids);
            }
            rest = after;
        }
        ids
    }

    fn encode_plain(&self, text: &str, ids: &mut Vec<u32>) {
        for piece in self.pattern.find_iter(text) {
            // The pattern has no catastrophic backtracking on any input; an error would only
            // come from fancy-regex's backtrack limit, and then the piece is the rest of the text.
            let piece = match piece {
                Ok(m) => m.as_str(),
                Err(_) => text,
            };
            let symbols: Vec<String> = piece
                .bytes()
                .map(|b| self.byte_to_char[b as usize].to_string())
                .collect();
            for token in self.merge(symbols) {
                match self.encoder.get(&token) {
                    Some(&id) => ids.push(id),
                    None => ids.extend(
                        token
                            .chars()
                            .filter_map(|c| self.encoder.get(&c.to_string()).copied()),
                    ),
                }
            }
        }
    }

    /// Applies merges by rank until no adjacent pair has one.
    fn merge(&self, mut symbols: Vec<String>) -> Vec<String> {
        while symbols.len() > 1 {
            let best = symbols
                .windows(2)
                .enumerate()
                .filter_map(|(i, w)| {
                    self.ranks
                        .get(&(w[0].clone(), w[1].clone()))
                        .map(|&r| (r, i))
                })
                .min();
            let Some((_, first)) = best else { break };
            let (left, right) = (symbols[first].clone(), symbols[first + 1].clone());
            let mut merged = Vec::with_capacity(symbols.len());
            let mut i = 0;
            while i < symbols.len() {
                if i + 1 < symbols.len() && symbols[i] == left && symbols[i + 1] == right {
                    merged.push(format!("{left}{right}"));
                    i += 2;
                } else {
                    merged.push(std::mem::take(&mut symbols[i]));
                    i += 1;
                }
            }
            symbols = merged;
        }
        symbols
    }

    /// Ids to text (`None` if an id is unknown). Bytes that are not valid UTF-8 become U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Option<String> {
        let mut bytes = Vec::new();
        for &id in ids {
            bytes.extend(self.token_bytes(id)?);
        }
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy vocabulary: every byte, plus merges for "Ġt", "he", "Ġthe", "ll", "ell".
    fn toy() -> Gpt2Bpe {
        let table = bytes_to_unicode();
        let mut vocab: BTreeMap<String, u32> = table
            .iter()
            .enumerate()
            .map(|(i, c)| (c.to_string(), i as u32))
            .collect();
        let merges: Vec<String> = ["Ġ t", "h e", "Ġt he", "l l", "e ll"]
            .map(String::from)
            .to_vec();
        for (i, m) in merges.iter().enumerate() {
            vocab.insert(m.replace(' ', ""), 256 + i as u32);
        }
        vocab.insert("<|endoftext|>".into(), 261);
        Gpt2Bpe::new(&vocab, &merges, &[]).unwrap()
    }

    #[test]
    fn byte_table_is_a_bijection_with_gpt2_landmarks() {
        let t = bytes_to_unicode();
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[b'A' as usize], 'A');
        let unique: std::collections::HashSet<char> = t.iter().copied().collect();
        assert_eq!(unique.len(), 256);
    }

    #[test]
    fn merges_apply_by_rank() {
        let bpe = toy();
        // " the" → Ġt + he → Ġthe. "hell": "h e" (rank 1) wins over "l l" (rank 3), so the
        // result is he + ll, and "e ll" never gets a chance.
        assert_eq!(bpe.encode(" the"), vec![258]);
        assert_eq!(bpe.encode("hell"), vec![257, 259]);
        assert_eq!(bpe.encode("ell"), vec![260]);
        assert_eq!(bpe.decode(&bpe.encode(" the hell")).unwrap(), " the hell");
    }

    #[test]
    fn special_tokens_are_recognised_in_text() {
        let bpe = toy();
        let ids = bpe.encode("a<|endoftext|>b");
        assert_eq!(ids, vec![b'a' as u32, 261, b'b' as u32]);
        assert_eq!(bpe.decode(&ids).unwrap(), "a<|endoftext|>b");
    }

    #[test]
    fn any_text_round_trips() {
        let bpe = toy();
        for text in [
            "",
            "  two  spaces ",
            "line\nbreak\n\n",
            "tabs\tand \t mixed",
            "don't we'll I'm",
            "café naïve — 東京 🚀",
            "12345 + 678 = ?!",
        ] {
            assert_eq!(bpe.decode(&bpe.encode(text)).unwrap(), text, "{text:?}");
        }
    }

    #[test]
    fn pretokenisation_keeps_the_last_space_for_the_next_word() {
        let re = Regex::new(GPT2_PATTERN).unwrap();
        let pieces: Vec<&str> = re.find_iter("a   b").map(|m| m.unwrap().as_str()).collect();
        assert_eq!(pieces, vec!["a", "  ", " b"]);
    }

    #[test]
    fn malformed_merges_are_rejected_with_the_line() {
        let vocab: BTreeMap<String, u32> = [("a".to_string(), 0)].into();
        let err = Gpt2Bpe::new(&vocab, &["a b c".to_string()], &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "merge 1 is not two tokens separated by a space: \"a b c\""
        );
    }
}
