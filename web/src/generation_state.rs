//! A generation as the page holds it while tokens arrive: each token as text, the attention rows
//! the steps ran, whether it is paused, and the token picked to look at.

use std::collections::BTreeMap;

use crate::protocol::GeneratedToken;

/// The generation on screen.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GenerationView {
    /// The prompt's tokens, then each generated one, as text (index = position).
    pub pieces: Vec<String>,
    /// How many of `pieces` are the prompt's.
    pub prompt_len: usize,
    /// Each position's attention row, `[n_layer, n_head, position + 1]`, once its step ran.
    pub rows: BTreeMap<usize, Vec<f32>>,
    /// Paused by the page (the worker waits between tokens).
    pub paused: bool,
    /// The position whose attention is shown.
    pub selected: Option<usize>,
    /// What the KV cache holds now (`None`: recomputing).
    pub kv_cache_bytes: Option<usize>,
    /// What the variant's own cache would hold (see `GeneratedToken::variant_cache_bytes`).
    pub variant_cache_bytes: usize,
    pub tokens_per_second: f64,
    /// Started again from the prompt because the attention settings changed.
    pub restarted: bool,
}

impl GenerationView {
    /// Takes one token from the worker.
    pub fn add(&mut self, token: GeneratedToken) {
        if !token.prompt.is_empty() {
            self.prompt_len = token.prompt.len();
            self.pieces = token.prompt;
        }
        // Positions beyond the context (the window slid) come without rows.
        self.pieces.truncate(token.position);
        self.pieces.push(token.piece);
        self.rows.extend(token.rows);
        self.kv_cache_bytes = token.kv_cache_bytes;
        self.variant_cache_bytes = token.variant_cache_bytes;
        self.tokens_per_second = token.tokens_per_second;
    }

    /// Whether the text holds generated tokens.
    pub fn started(&self) -> bool {
        self.pieces.len() > self.prompt_len
    }

    /// One head's map over the text so far, `[n, n]` with `n` the positions whose rows have run:
    /// row `p` is position `p`'s attention (0 past `p`, as in a forward's map), NaN for a
    /// position without a row (past the context, where the window slid).
    pub fn head_map(&self, layer: usize, head: usize, n_head: usize) -> (usize, Vec<f32>) {
        let n = self.rows.keys().next_back().map_or(0, |&p| p + 1);
        let mut map = vec![0.0f32; n * n];
        for (p, row) in map.chunks_exact_mut(n.max(1)).enumerate().take(n) {
            let at = (layer * n_head + head) * (p + 1);
            match self.rows.get(&p).and_then(|rows| rows.get(at..at + p + 1)) {
                Some(attention) => row[..=p].copy_from_slice(attention),
                None => row.fill(f32::NAN),
            }
        }
        (n, map)
    }

    /// The selected position's rows, one per `(layer, head)`, each `position + 1` long.
    pub fn selected_rows(&self) -> Option<(usize, &[f32])> {
        let position = self.selected?;
        self.rows
            .get(&position)
            .map(|rows| (position, rows.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use attn_model::engine::Step;

    fn token(position: usize, prompt: &[&str], rows: Vec<(usize, Vec<f32>)>) -> GeneratedToken {
        GeneratedToken {
            piece: format!("t{position}"),
            position,
            prompt: prompt.iter().map(|p| p.to_string()).collect(),
            rows,
            step: Step { done: 1, total: 2 },
            kv_cache_bytes: Some(64),
            variant_cache_bytes: 64,
            tokens_per_second: 10.0,
        }
    }

    #[test]
    fn a_heads_map_grows_row_by_row_with_the_text() {
        // One layer of two heads: each position's rows are head 0's, then head 1's.
        let mut view = GenerationView::default();
        view.add(token(
            2,
            &["a", "b"],
            vec![(0, vec![1.0, 1.0]), (1, vec![0.5, 0.5, 0.25, 0.75])],
        ));
        assert_eq!(view.head_map(0, 1, 2), (2, vec![1.0, 0.0, 0.25, 0.75]));
        view.add(token(3, &[], vec![(2, vec![0.2, 0.3, 0.5, 0.1, 0.1, 0.8])]));
        let (n, map) = view.head_map(0, 0, 2);
        assert_eq!(n, 3);
        assert_eq!(&map[6..], &[0.2, 0.3, 0.5]);
        // A position without its row (the window slid) is NaN, not zeros.
        view.rows.remove(&1);
        let (_, map) = view.head_map(0, 0, 2);
        assert!(map[3..6].iter().all(|v| v.is_nan()));
        assert_eq!(GenerationView::default().head_map(0, 0, 1), (0, vec![]));
    }

    #[test]
    fn tokens_join_the_prompt_and_rows_arrive_by_position() {
        let mut view = GenerationView::default();
        view.add(token(
            2,
            &["a", "b"],
            vec![(0, vec![1.0]), (1, vec![0.5, 0.5])],
        ));
        assert_eq!(view.pieces, ["a", "b", "t2"]);
        assert_eq!(view.prompt_len, 2);
        assert!(view.started());
        view.add(token(3, &[], vec![(2, vec![0.2, 0.3, 0.5])]));
        assert_eq!(view.pieces, ["a", "b", "t2", "t3"]);
        view.selected = Some(2);
        assert_eq!(view.selected_rows(), Some((2, &[0.2, 0.3, 0.5][..])));
        // The last token has not run yet: no row.
        view.selected = Some(3);
        assert_eq!(view.selected_rows(), None);
    }
}
