//! GPT-2's byte-level BPE.
//!
//! Encoding: special tokens are cut out of the text first (leftmost-longest, like the added
//! tokens of Hugging Face `tokenizers`); every stretch between them is split by GPT-2's
//! pre-tokenisation pattern; each piece's UTF-8 bytes become one symbol each; adjacent symbols
//! are merged, lowest merge rank first, until no adjacent pair has a rank. Decoding maps every
//! character of the tokens back to its byte through GPT-2's `bytes_to_unicode` table.
//!
//! Everything here is built per tokenizer (no global caches), so it works the same on wasm.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use fancy_regex::Regex;

use super::error::TokenizerError;

/// GPT-2's pre-tokenisation: English contractions, then letters, numbers or other symbols (each
/// run optionally led by one space), then whitespace. `\s+(?!\S)` takes a run of whitespace but
/// leaves its last character when a non-space follows, so that space can lead the next word
/// (`"a   b"` → `"a"`, `"  "`, `" b"`). The lookahead is why this needs `fancy-regex`.
pub(super) const GPT2_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// No symbol: the end of the linked list of symbols in [`Gpt2Bpe::merge_piece`].
const NONE: usize = usize::MAX;

/// GPT-2's `bytes_to_unicode`: the printable Latin-1 bytes (`!`..=`~`, `¡`..=`¬`, `®`..=`ÿ`)
/// stand for themselves; the other 68 bytes (controls, space, DEL, NBSP, soft hyphen…) are given
/// the code points U+0100, U+0101, … in byte order. Every byte string thus becomes a printable
/// string without whitespace, which is how `vocab.json` and `merges.txt` spell tokens (a space
/// is `Ġ`, a newline `Ċ`).
pub(super) fn bytes_to_unicode() -> [char; 256] {
    let printable =
        |b: u8| matches!(b, b'!'..=b'~') || matches!(b, 0xA1..=0xAC) || matches!(b, 0xAE..=0xFF);
    let mut table = ['\0'; 256];
    let mut next = 0x100u32;
    for b in 0..=255u8 {
        table[usize::from(b)] = if printable(b) {
            char::from(b)
        } else {
            let c = char::from_u32(next).expect("U+0100..U+0143 are characters");
            next += 1;
            c
        };
    }
    table
}

/// One token of the vocabulary, as decoding and labels need it.
#[derive(Clone, Debug)]
struct TokenEntry {
    /// The bytes the token stands for.
    bytes: Box<[u8]>,
    /// For a special token: its text (shown verbatim as its label).
    special: Option<Box<str>>,
}

/// The prepared tables of a GPT-2 byte-level BPE tokenizer.
#[derive(Clone, Debug)]
pub(super) struct Gpt2Bpe {
    /// The id of each byte's one-character token (`None` if the vocabulary lacks it).
    byte_ids: [Option<u32>; 256],
    /// `(left id, right id)` → `(rank, merged id)`, for the merges whose parts and result are
    /// all in the vocabulary (the only ones that can ever apply).
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// Every id of the vocabulary.
    tokens: HashMap<u32, TokenEntry>,
    /// Tokens that BPE can never produce, matched verbatim in text (see [`Gpt2Bpe::new`]).
    specials: Vec<(String, u32)>,
    /// Largest id + 1.
    vocab_size: usize,
    pattern: Regex,
}

/// The two tokens of a merge line `"a b"` (any whitespace between them, as GPT-2's own
/// `merge.split()` reads them; byte-level tokens never contain whitespace themselves).
pub(super) fn split_merge(line: &str) -> Option<(&str, &str)> {
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(b), None) => Some((a, b)),
        _ => None,
    }
}

impl Gpt2Bpe {
    /// Builds the tables from a `vocab.json`-style map and `"a b"` merge lines in priority order.
    ///
    /// Lenient where GPT-2's files are: ids may have gaps, merges whose parts or result are not
    /// in the vocabulary are ignored (missing parts never occur; a missing result would be a
    /// token without an id, on which GPT-2's own code fails), and the vocabulary need not hold
    /// all 256 byte tokens (encoding text that needs a missing one is then an error). Strict
    /// where leniency would make results ambiguous: an id used by two tokens, or a merge line
    /// that is not two tokens.
    ///
    /// Special tokens are the vocabulary's tokens that BPE can never produce: neither a single
    /// byte's token nor the result of a merge. For GPT-2 that is exactly `<|endoftext|>`; for a
    /// `tokenizer.json` it is its added tokens. Deriving them from the vocabulary (rather than
    /// storing a list) keeps [`TokenizerSpec`](super::TokenizerSpec) in GPT-2's own file shape while a
    /// tokenizer rebuilt from a model file still recognises them in text.
    pub(super) fn new(
        vocab: &BTreeMap<String, u32>,
        merges: &[String],
    ) -> Result<Self, TokenizerError> {
        if vocab.is_empty() {
            return Err(TokenizerError::InvalidVocab(
                "the vocabulary is empty".into(),
            ));
        }
        let mut by_id: HashMap<u32, &str> = HashMap::with_capacity(vocab.len());
        for (token, &id) in vocab {
            if let Some(other) = by_id.insert(id, token) {
                return Err(TokenizerError::InvalidVocab(format!(
                    "id {id} is used by both {other:?} and {token:?}"
                )));
            }
        }

        let byte_to_char = bytes_to_unicode();
        let char_to_byte: HashMap<char, u8> = (0..=255u8)
            .map(|b| (byte_to_char[usize::from(b)], b))
            .collect();
        let mut byte_ids = [None; 256];
        let mut reachable: HashSet<u32> = HashSet::with_capacity(vocab.len());
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            *slot = vocab.get(byte_to_char[b].to_string().as_str()).copied();
            reachable.extend(*slot);
        }

        let mut merge_table = HashMap::with_capacity(merges.len());
        for (index, line) in merges.iter().enumerate() {
            let Some((a, b)) = split_merge(line) else {
                return Err(TokenizerError::InvalidMerge {
                    place: format!("merge {}", index + 1),
                    text: line.clone(),
                });
            };
            let rank = u32::try_from(index)
                .map_err(|_| TokenizerError::InvalidVocab("more than 4294967295 merges".into()))?;
            let joined = format!("{a}{b}");
            if let (Some(&left), Some(&right), Some(&result)) =
                (vocab.get(a), vocab.get(b), vocab.get(joined.as_str()))
            {
                // A repeated merge keeps its first (highest-priority) rank.
                merge_table.entry((left, right)).or_insert((rank, result));
                reachable.insert(result);
            }
        }

        let mut specials = Vec::new();
        let mut tokens = HashMap::with_capacity(vocab.len());
        for (token, &id) in vocab {
            // Decoding goes through the byte table for every token, special ones included, as
            // `tokenizers`' ByteLevel decoder does; a character outside the table (only possible
            // in special tokens) stands for its own UTF-8 bytes.
            let mut bytes = Vec::with_capacity(token.len());
            for c in token.chars() {
                match char_to_byte.get(&c) {
                    Some(&b) => bytes.push(b),
                    None => bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                }
            }
            let special = !token.is_empty() && !reachable.contains(&id);
            if special {
                specials.push((token.clone(), id));
            }
            tokens.insert(
                id,
                TokenEntry {
                    bytes: bytes.into(),
                    special: special.then(|| token.as_str().into()),
                },
            );
        }
        let max_id = *vocab.values().max().expect("the vocabulary is not empty");

        Ok(Gpt2Bpe {
            byte_ids,
            merges: merge_table,
            tokens,
            specials,
            vocab_size: max_id as usize + 1,
            pattern: Regex::new(GPT2_PATTERN).expect("GPT-2's pattern compiles"),
        })
    }

    /// Largest id + 1.
    pub(super) fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Text to ids. Fails only when the vocabulary lacks a byte the text needs (never for a
    /// complete byte-level vocabulary such as GPT-2's).
    pub(super) fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let mut ids = Vec::with_capacity(text.len() / 3 + 1);
        // The next occurrence (at or after `start`) of every special token.
        let find = |s: &str, from: usize| text[from..].find(s).map(|p| p + from);
        let mut next: Vec<Option<usize>> = self.specials.iter().map(|(s, _)| find(s, 0)).collect();
        let mut start = 0;
        loop {
            // Leftmost occurrence; the longest special at the same position.
            let best = next
                .iter()
                .enumerate()
                .filter_map(|(i, pos)| pos.map(|p| (p, Reverse(self.specials[i].0.len()), i)))
                .min();
            let Some((pos, Reverse(len), i)) = best else {
                self.encode_ordinary(&text[start..], &mut ids)?;
                return Ok(ids);
            };
            self.encode_ordinary(&text[start..pos], &mut ids)?;
            ids.push(self.specials[i].1);
            start = pos + len;
            for (j, slot) in next.iter_mut().enumerate() {
                if slot.is_some_and(|p| p < start) {
                    *slot = find(&self.specials[j].0, start);
                }
            }
        }
    }

    /// Text without special tokens to ids: pre-tokenise, then BPE each piece.
    fn encode_ordinary(&self, text: &str, ids: &mut Vec<u32>) -> Result<(), TokenizerError> {
        let mut pos = 0;
        while pos < text.len() {
            // Every character matches one of the pattern's branches, so the match starts at
            // `pos`. fancy-regex can only fail by exceeding its backtracking limit, which this
            // pattern does not approach; should it happen, the next character becomes a piece of
            // its own, so no text is ever lost.
            let end = match self.pattern.find_from_pos(text, pos) {
                Ok(Some(m)) if m.start() == pos && m.end() > pos => m.end(),
                Ok(Some(m)) if m.start() > pos => m.start(),
                Ok(None) => text.len(),
                _ => pos + text[pos..].chars().next().map_or(1, char::len_utf8),
            };
            self.merge_piece(&text[pos..end], ids)?;
            pos = end;
        }
        Ok(())
    }

    /// BPE of one pre-tokenised piece, appending its ids to `ids`.
    ///
    /// The symbols form a linked list and candidate merges wait in a heap ordered by (rank,
    /// position), as in `tokenizers`: O(n log n) even for a long piece without spaces, where
    /// GPT-2's original "find the best pair, rescan" loop is quadratic. For merges learnt in
    /// order (every merge's parts made by earlier merges) both give the same tokens.
    fn merge_piece(&self, piece: &str, ids: &mut Vec<u32>) -> Result<(), TokenizerError> {
        #[derive(Clone, Copy)]
        struct Symbol {
            id: u32,
            prev: usize,
            next: usize,
            alive: bool,
        }
        let bytes = piece.as_bytes();
        let mut symbols = Vec::with_capacity(bytes.len());
        for (i, &byte) in bytes.iter().enumerate() {
            let id =
                self.byte_ids[usize::from(byte)].ok_or_else(|| TokenizerError::MissingByte {
                    byte,
                    text: piece.to_string(),
                })?;
            symbols.push(Symbol {
                id,
                prev: if i == 0 { NONE } else { i - 1 },
                next: if i + 1 == bytes.len() { NONE } else { i + 1 },
                alive: true,
            });
        }
        let rank_of = |left: u32, right: u32| self.merges.get(&(left, right)).map(|&(r, _)| r);
        let mut heap = BinaryHeap::new();
        for (i, pair) in symbols.windows(2).enumerate() {
            if let Some(rank) = rank_of(pair[0].id, pair[1].id) {
                heap.push(Reverse((rank, i)));
            }
        }
        while let Some(Reverse((rank, pos))) = heap.pop() {
            let left = symbols[pos];
            if !left.alive || left.next == NONE {
                continue;
            }
            let right = symbols[left.next];
            // Ranks are unique per pair, so a stale entry is one whose pair has changed.
            match self.merges.get(&(left.id, right.id)) {
                Some(&(r, merged)) if r == rank => {
                    symbols[pos].id = merged;
                    symbols[pos].next = right.next;
                    symbols[left.next].alive = false;
                    if right.next != NONE {
                        symbols[right.next].prev = pos;
                        if let Some(r) = rank_of(merged, symbols[right.next].id) {
                            heap.push(Reverse((r, pos)));
                        }
                    }
                    if left.prev != NONE {
                        if let Some(r) = rank_of(symbols[left.prev].id, merged) {
                            heap.push(Reverse((r, left.prev)));
                        }
                    }
                }
                _ => {}
            }
        }
        // The first symbol only ever absorbs its right neighbours, so the list starts at 0.
        let mut i = if symbols.is_empty() { NONE } else { 0 };
        while i != NONE {
            ids.push(symbols[i].id);
            i = symbols[i].next;
        }
        Ok(())
    }

    /// The bytes `id` stands for (`None` for an id no token has).
    pub(super) fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        self.tokens.get(&id).map(|t| &*t.bytes)
    }

    /// The text of `id` if it is a special token.
    pub(super) fn special_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(&id)?.special.as_deref()
    }

    /// Ids to text: the tokens' bytes joined, then read as UTF-8 with invalid sequences (a
    /// character cut between tokens that are not all there) as U+FFFD.
    pub(super) fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            match self.token_bytes(id) {
                Some(b) => bytes.extend_from_slice(b),
                None if (id as usize) < self.vocab_size => {
                    return Err(TokenizerError::UnusedId { id })
                }
                None => {
                    return Err(TokenizerError::IdOutOfRange {
                        id,
                        vocab_size: self.vocab_size,
                    })
                }
            }
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A vocabulary of every byte (id = byte) plus the given merges (ids 256…) and extra tokens.
    fn toy(merges: &[&str], extra: &[&str]) -> Gpt2Bpe {
        let table = bytes_to_unicode();
        let mut vocab: BTreeMap<String, u32> = (0..256u32)
            .map(|b| (table[b as usize].to_string(), b))
            .collect();
        let mut next = 256;
        for m in merges {
            let (a, b) = split_merge(m).unwrap();
            vocab.entry(format!("{a}{b}")).or_insert_with(|| {
                next += 1;
                next - 1
            });
        }
        for (i, e) in extra.iter().enumerate() {
            vocab.insert(e.to_string(), next + i as u32);
        }
        let merges: Vec<String> = merges.iter().map(ToString::to_string).collect();
        Gpt2Bpe::new(&vocab, &merges).unwrap()
    }

    fn pieces(text: &str) -> Vec<&str> {
        let re = Regex::new(GPT2_PATTERN).unwrap();
        re.find_iter(text).map(|m| m.unwrap().as_str()).collect()
    }

    #[test]
    fn byte_table_is_gpt2s() {
        let t = bytes_to_unicode();
        assert_eq!(t[0x00], 'Ā');
        assert_eq!(t[usize::from(b' ')], 'Ġ');
        assert_eq!(t[usize::from(b'\n')], 'Ċ');
        assert_eq!(t[usize::from(b'A')], 'A');
        assert_eq!(t[0x7F], 'ġ');
        assert_eq!(t[0xA0], 'ł');
        assert_eq!(t[0xAD], 'Ń');
        assert_eq!(t[0xE9], 'é');
        let unique: HashSet<char> = t.iter().copied().collect();
        assert_eq!(unique.len(), 256);
        assert!(t.iter().all(|c| !c.is_whitespace() && !c.is_control()));
    }

    #[test]
    fn pretokenisation_matches_gpt2() {
        assert_eq!(pieces("a   b"), ["a", "  ", " b"]);
        assert_eq!(
            pieces("Hello world's 2024!!  \n\tok"),
            ["Hello", " world", "'s", " 2024", "!!", "  \n", "\t", "ok"]
        );
        assert_eq!(pieces("I'M don't"), ["I", "'", "M", " don", "'t"]);
        assert_eq!(pieces("trailing  "), ["trailing", "  "]);
        assert_eq!(pieces("x²½ 東京"), ["x", "²½", " 東京"]);
        assert_eq!(pieces("e\u{301}"), ["e", "\u{301}"]);
    }

    #[test]
    fn merges_apply_lowest_rank_first() {
        let bpe = toy(&["Ġ t", "h e", "Ġt he", "l l", "e ll"], &[]);
        let id = |s: &str| {
            (256 + ["Ġt", "he", "Ġthe", "ll", "ell"]
                .iter()
                .position(|t| *t == s)
                .unwrap()) as u32
        };
        assert_eq!(bpe.encode(" the").unwrap(), [id("Ġthe")]);
        // "h e" (rank 1) beats "l l" (rank 3), so "e ll" (rank 4) never gets its chance.
        assert_eq!(bpe.encode("hell").unwrap(), [id("he"), id("ll")]);
        assert_eq!(bpe.encode("ell").unwrap(), [id("ell")]);
        // Equal pairs merge left to right.
        assert_eq!(bpe.encode("lll").unwrap(), [id("ll"), u32::from(b'l')]);
        assert_eq!(
            bpe.decode(&bpe.encode(" the hell").unwrap()).unwrap(),
            " the hell"
        );
    }

    #[test]
    fn long_pieces_merge_like_the_quadratic_loop() {
        let bpe = toy(&["a a", "aa aa", "b a", "aaaa aaaa"], &[]);
        // The reference: GPT-2's original loop (merge every occurrence of the best pair).
        let slow = |text: &str| {
            let ranks: Vec<(&str, &str)> = ["a a", "aa aa", "b a", "aaaa aaaa"]
                .iter()
                .map(|m| split_merge(m).unwrap())
                .collect();
            let mut word: Vec<String> = text.chars().map(String::from).collect();
            loop {
                let best = word
                    .windows(2)
                    .filter_map(|w| ranks.iter().position(|&(a, b)| a == w[0] && b == w[1]))
                    .min();
                let Some(best) = best else { break word };
                let (a, b) = ranks[best];
                let mut out = Vec::new();
                let mut i = 0;
                while i < word.len() {
                    if i + 1 < word.len() && word[i] == a && word[i + 1] == b {
                        out.push(format!("{a}{b}"));
                        i += 2;
                    } else {
                        out.push(word[i].clone());
                        i += 1;
                    }
                }
                word = out;
            }
        };
        for text in [
            "a",
            "aaa",
            "aaaaaaa",
            "baaaaab",
            "abababaaaab",
            &"a".repeat(1001),
        ] {
            let ids = bpe.encode(text).unwrap();
            let tokens: Vec<String> = ids
                .iter()
                .map(|&id| String::from_utf8(bpe.token_bytes(id).unwrap().to_vec()).unwrap())
                .collect();
            assert_eq!(tokens, slow(text), "{text:?}");
        }
    }

    #[test]
    fn merges_outside_the_vocabulary_are_ignored() {
        let table = bytes_to_unicode();
        let mut vocab: BTreeMap<String, u32> = (0..256u32)
            .map(|b| (table[b as usize].to_string(), b))
            .collect();
        vocab.insert("ab".into(), 300); // ids may have gaps
        let merges = ["x y", "a b", "ab zz", "b c"].map(String::from);
        let bpe = Gpt2Bpe::new(&vocab, &merges).unwrap();
        assert_eq!(bpe.encode("abc").unwrap(), [300, u32::from(b'c')]);
        assert_eq!(bpe.vocab_size(), 301);
        assert!(matches!(
            bpe.decode(&[299]),
            Err(TokenizerError::UnusedId { id: 299 })
        ));
        assert!(matches!(
            bpe.decode(&[301]),
            Err(TokenizerError::IdOutOfRange {
                id: 301,
                vocab_size: 301
            })
        ));
    }

    #[test]
    fn special_tokens_are_the_unreachable_ones_matched_leftmost_longest() {
        let bpe = toy(&["< |"], &["<|endoftext|>", "<|end", "<pad>"]);
        let (eot, end, pad) = (257, 258, 259);
        assert!(
            bpe.special_text(256).is_none(),
            "a merge result is not special"
        );
        assert_eq!(bpe.special_text(eot), Some("<|endoftext|>"));
        assert_eq!(
            bpe.encode("a<|endoftext|>b<|end <pad><pad>").unwrap(),
            [
                u32::from(b'a'),
                eot,
                u32::from(b'b'),
                end,
                u32::from(b' '),
                pad,
                pad
            ]
        );
        let text = "x <|endoftext|><|endoftext|> y";
        assert_eq!(bpe.decode(&bpe.encode(text).unwrap()).unwrap(), text);
    }

    #[test]
    fn missing_bytes_and_bad_tables_are_errors() {
        let vocab: BTreeMap<String, u32> = [("a".to_string(), 0), ("b".to_string(), 1)].into();
        let bpe = Gpt2Bpe::new(&vocab, &[]).unwrap();
        assert_eq!(bpe.encode("abba").unwrap(), [0, 1, 1, 0]);
        assert_eq!(
            bpe.encode("ab é").unwrap_err().to_string(),
            "byte 0x20 of \" é\" has no token in this model's vocabulary \
             (a byte-level vocabulary should hold all 256 bytes)"
        );
        let dup: BTreeMap<String, u32> = [("a".to_string(), 0), ("b".to_string(), 0)].into();
        assert_eq!(
            Gpt2Bpe::new(&dup, &[]).unwrap_err().to_string(),
            "invalid vocabulary: id 0 is used by both \"a\" and \"b\""
        );
        assert_eq!(
            Gpt2Bpe::new(&vocab, &["a b".into(), "abc".into()])
                .unwrap_err()
                .to_string(),
            "merge 2 is not two tokens: \"abc\""
        );
        assert!(Gpt2Bpe::new(&BTreeMap::new(), &[]).is_err());
    }

    #[test]
    fn decoding_goes_through_the_byte_table() {
        let bpe = toy(&[], &["<|€|>"]);
        // 'Ġ' is a space; '€' is outside the table and stands for itself.
        assert_eq!(bpe.token_bytes(u32::from(b' ')), Some(&b" "[..]));
        assert_eq!(bpe.decode(&[256]).unwrap(), "<|€|>");
        // Half a character decodes to U+FFFD.
        assert_eq!(bpe.decode(&[0xC3]).unwrap(), "\u{FFFD}");
        assert_eq!(bpe.decode(&[0xC3, 0xA9]).unwrap(), "é");
    }
}
