//! What a forward returns: every position's logits, every attention map and every head's output
//! norms ([`Output`]), and the helpers that read a distribution (top-k, argmax).

use crate::linalg::softmax;

/// Everything one forward pass produces.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Output {
    /// Number of input positions `T`.
    pub seq_len: usize,
    pub n_layer: usize,
    pub n_head: usize,
    /// Width of a logits row: the vocabulary, or the number of classes.
    pub n_out: usize,
    /// `[T, n_out]`, for every position.
    pub logits: Vec<f32>,
    /// `[L, H, T, T]`: row `i` of map `(l, h)` is how query `i` spreads its attention over keys.
    pub attention: Vec<f32>,
    /// `[L, H, T]`: Euclidean norm of each head's output row before the output projection.
    pub head_out_norms: Vec<f32>,
    /// KV-cache bytes per token (fp32) under the variant that produced this output.
    pub kv_bytes_per_token: usize,
}

impl Output {
    /// The logits of position `t`.
    pub fn logits_at(&self, t: usize) -> &[f32] {
        &self.logits[t * self.n_out..(t + 1) * self.n_out]
    }

    /// The `T × T` attention map of head `head` in layer `layer`, row-major (query, key).
    pub fn attention_map(&self, layer: usize, head: usize) -> &[f32] {
        let t2 = self.seq_len * self.seq_len;
        let start = (layer * self.n_head + head) * t2;
        &self.attention[start..start + t2]
    }

    /// The norms of head `head` of layer `layer` at every position.
    pub fn head_norms(&self, layer: usize, head: usize) -> &[f32] {
        let start = (layer * self.n_head + head) * self.seq_len;
        &self.head_out_norms[start..start + self.seq_len]
    }

    /// The `k` most probable outputs at position `t`, as (id, probability), most probable first.
    pub fn top_at(&self, t: usize, k: usize) -> Vec<(u32, f32)> {
        top_k(self.logits_at(t), k)
    }

    /// The most probable output id at position `t`.
    pub fn argmax_at(&self, t: usize) -> u32 {
        argmax(self.logits_at(t))
    }
}

/// The `k` most probable ids of one row of logits, as (id, probability), most probable first
/// (the smaller id first on ties).
pub fn top_k(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut ranked: Vec<(u32, f32)> = softmax(logits)
        .into_iter()
        .enumerate()
        .map(|(i, p)| (i as u32, p))
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.truncate(k);
    ranked
}

/// Index of the largest value (the first one on ties).
pub fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best as u32
}
