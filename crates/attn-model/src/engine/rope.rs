//! Rotary position embeddings, in Hugging Face's "rotate half" convention (`modeling_llama`,
//! `modeling_gpt_neox`): within the first `rotary_dim` dimensions of a head, dimension `i` and
//! `i + rotary_dim/2` form a pair rotated by `position · inv_freq[i]`. The rest of the head (GPT-
//! NeoX's partial rotary) passes through unchanged.

use std::f64::consts::PI;

use crate::config::{Rope, RopeScaling};

/// The `rotary_dim / 2` rotation frequencies, after the config's rescaling.
pub fn inverse_frequencies(rope: &Rope) -> Vec<f64> {
    let dim = rope.rotary_dim as f64;
    let base: Vec<f64> = (0..rope.rotary_dim / 2)
        .map(|i| 1.0 / (rope.theta as f64).powf(2.0 * i as f64 / dim))
        .collect();
    match rope.scaling {
        RopeScaling::None => base,
        RopeScaling::Linear { factor } => base.iter().map(|f| f / factor as f64).collect(),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => {
            // Long wavelengths are slowed by `factor`, short ones kept, the band between blended.
            let (factor, low, high) = (
                factor as f64,
                low_freq_factor as f64,
                high_freq_factor as f64,
            );
            let context = original_max_position_embeddings as f64;
            let (low_freq_wavelen, high_freq_wavelen) = (context / low, context / high);
            base.iter()
                .map(|&f| {
                    let wavelen = 2.0 * PI / f;
                    if wavelen < high_freq_wavelen {
                        f
                    } else if wavelen > low_freq_wavelen {
                        f / factor
                    } else {
                        let smooth = (context / wavelen - low) / (high - low);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                })
                .collect()
        }
    }
}

/// The cosines and sines of every (position, frequency), `[positions, rotary_dim / 2]` each.
pub struct RotaryTable {
    pub half: usize,
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
}

impl RotaryTable {
    /// The table for positions `0..positions`.
    pub fn new(rope: &Rope, positions: usize) -> Self {
        Self::for_positions(rope, 0..positions)
    }

    /// The table for `positions` (row `i` is position `positions.start + i`): one row for a
    /// decoded token, with the same angles as the whole table's row.
    pub fn for_positions(rope: &Rope, positions: std::ops::Range<usize>) -> Self {
        let inv_freq = inverse_frequencies(rope);
        let half = inv_freq.len();
        let mut cos = Vec::with_capacity(positions.len() * half);
        let mut sin = Vec::with_capacity(positions.len() * half);
        for t in positions {
            for f in &inv_freq {
                let angle = t as f64 * f;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        RotaryTable { half, cos, sin }
    }

    /// Rotates every head of `x` (`[rows, heads · d_head]`, heads contiguous; row `t` is
    /// position `t`) in place.
    pub fn apply(&self, x: &mut [f32], rows: usize, d_head: usize) {
        self.rotate(x, rows, d_head, 1.0);
    }

    /// The transpose of [`RotaryTable::apply`] (the rotation back by the same angles): how a
    /// gradient with respect to rotated queries or keys becomes one with respect to the
    /// projections' outputs.
    pub fn apply_transpose(&self, x: &mut [f32], rows: usize, d_head: usize) {
        self.rotate(x, rows, d_head, -1.0);
    }

    /// Rotates every head of one row `x` (`heads · d_head`) by the table's row `row`.
    pub fn apply_at(&self, x: &mut [f32], row: usize, d_head: usize) {
        self.rotate_row(x, row, d_head, 1.0);
    }

    /// Rotates by the table's angles times `direction` (±1).
    fn rotate(&self, x: &mut [f32], rows: usize, d_head: usize, direction: f32) {
        let width = x.len() / rows;
        for (t, row) in x.chunks_exact_mut(width).enumerate() {
            self.rotate_row(row, t, d_head, direction);
        }
    }

    /// Rotates the heads of `row` by the table's row `t` times `direction`.
    fn rotate_row(&self, row: &mut [f32], t: usize, d_head: usize, direction: f32) {
        let half = self.half;
        let (cos, sin) = (
            &self.cos[t * half..(t + 1) * half],
            &self.sin[t * half..(t + 1) * half],
        );
        for head in row.chunks_exact_mut(d_head) {
            for i in 0..half {
                let (a, b) = (head[i], head[i + half]);
                let sin = direction * sin[i];
                head[i] = a * cos[i] - b * sin;
                head[i + half] = b * cos[i] + a * sin;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rope(rotary_dim: usize) -> Rope {
        Rope {
            theta: 10000.0,
            rotary_dim,
            scaling: RopeScaling::None,
        }
    }

    #[test]
    fn position_zero_is_the_identity_and_norms_are_kept() {
        let table = RotaryTable::new(&rope(4), 3);
        let original: Vec<f32> = (0..3 * 8).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut x = original.clone();
        table.apply(&mut x, 3, 4);
        assert_eq!(x[..8], original[..8]);
        for (a, b) in x.chunks(4).zip(original.chunks(4)) {
            let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>();
            assert!((norm(a) - norm(b)).abs() < 1e-5);
        }
    }

    #[test]
    fn scores_depend_only_on_the_distance() {
        // q·k after rotation at positions (i, j) equals that at (i + s, j + s).
        let table = RotaryTable::new(&rope(6), 10);
        let (q, k) = (
            [0.3, -1.2, 0.8, 0.5, 0.1, -0.4],
            [1.1, 0.2, -0.7, 0.9, -0.3, 0.6],
        );
        let at = |v: &[f32; 6], t: usize| {
            let mut rows = vec![0.0; 10 * 6];
            rows[t * 6..t * 6 + 6].copy_from_slice(v);
            table.apply(&mut rows, 10, 6);
            rows[t * 6..t * 6 + 6].to_vec()
        };
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        let near = dot(&at(&q, 5), &at(&k, 2));
        let shifted = dot(&at(&q, 9), &at(&k, 6));
        assert!((near - shifted).abs() < 1e-5, "{near} vs {shifted}");
    }

    #[test]
    fn partial_rotary_leaves_the_rest_of_the_head() {
        let table = RotaryTable::new(&rope(2), 4);
        let mut x = vec![1.0; 4 * 8];
        table.apply(&mut x, 4, 8);
        assert!(x[3 * 8..3 * 8 + 2] != [1.0, 1.0]);
        assert_eq!(x[3 * 8 + 2..4 * 8], [1.0; 6]);
    }

    #[test]
    fn llama3_scaling_keeps_short_wavelengths_and_slows_long_ones() {
        let plain = inverse_frequencies(&rope(64));
        let scaled = inverse_frequencies(&Rope {
            scaling: RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 64,
            },
            ..rope(64)
        });
        assert_eq!(plain[0], scaled[0]);
        assert!((scaled[31] - plain[31] / 8.0).abs() < 1e-12);
    }
}
