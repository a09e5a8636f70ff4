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
