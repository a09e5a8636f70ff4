//! Attention maps at display resolution: a `T × T` map drawn in a cell of fewer than `T` device
//! pixels is pooled to at most that many cells a side before it is sent and drawn.
//!
//! A thumbnail cell covers `f × f` cells of the map (the last row and column of cells may cover
//! fewer) and holds the **mean over its queries of the sum over its keys**:
//!
//! ```text
//! thumb[I, J] = (1 / |rows of I|) · Σ_{i ∈ I} Σ_{j ∈ J} map[i, j]
//! ```
//!
//! so every thumbnail row still sums to 1 (it is the attention a block of queries pays to each
//! block of keys), a sharp head stays sharp (a query attending to one key gives its block 1, not
//! `1/f²` as a plain average would), and pooling is linear, so the thumbnail of a difference of
//! maps is the difference of their thumbnails. A causal map's masked cells stay masked: block
//! `J` lies wholly above the diagonal exactly when `J > I`. Drawing a `T × T` map into fewer
//! pixels by sampling, as a browser scaling a canvas with crisp edges does, would drop whole
//! rows and columns instead.

/// How many map cells a thumbnail cell covers along each side so that a `t × t` map fits in
/// `max_side` cells: 1 when it already fits.
pub fn pooling_factor(t: usize, max_side: usize) -> usize {
    t.div_ceil(max_side.max(1)).max(1)
}

/// The side of the thumbnail of a `t × t` map pooled by `factor`.
pub fn thumbnail_side(t: usize, factor: usize) -> usize {
    t.div_ceil(factor.max(1))
}

/// The thumbnail of the row-major `t × t` `map`, pooled by `factor` (module docs): a row-major
/// `side × side` matrix with `side = thumbnail_side(t, factor)`. A NaN in a block (a map not
/// read back) makes its cell NaN.
pub fn pool_map(map: &[f32], t: usize, factor: usize) -> Vec<f32> {
    assert_eq!(map.len(), t * t, "a {t} × {t} map");
    let f = factor.max(1);
    let side = thumbnail_side(t, f);
    let mut thumb = vec![0.0f32; side * side];
    for (i, row) in map.chunks_exact(t.max(1)).enumerate() {
        let out = &mut thumb[(i / f) * side..][..side];
        for (block, keys) in row.chunks(f).enumerate() {
            out[block] += keys.iter().sum::<f32>();
        }
    }
    for (block_row, out) in thumb.chunks_exact_mut(side.max(1)).enumerate() {
        let rows = f.min(t - block_row * f) as f32;
        for v in out {
            *v /= rows;
        }
    }
    thumb
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A causal map whose rows are random distributions over the keys each query may see.
    fn causal_map(t: usize, seed: u32) -> Vec<f32> {
        let mut state = seed.max(1);
        let mut map = vec![0.0f32; t * t];
        for i in 0..t {
            let row = &mut map[i * t..(i + 1) * t];
            for v in &mut row[..=i] {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                *v = (state % 1000) as f32 + 1.0;
            }
            let sum: f32 = row.iter().sum();
            row.iter_mut().for_each(|v| *v /= sum);
        }
        map
    }

    #[test]
    fn the_factor_fits_the_map_in_the_side() {
        assert_eq!(pooling_factor(64, 100), 1);
        assert_eq!(pooling_factor(100, 100), 1);
        assert_eq!(pooling_factor(101, 100), 2);
        assert_eq!(pooling_factor(256, 100), 3);
        assert_eq!(thumbnail_side(256, 3), 86);
        assert_eq!(pooling_factor(256, 0), 256);
        for t in [1, 7, 99, 100, 101, 255, 256, 1000] {
            for side in [1, 20, 56, 100, 160] {
                assert!(thumbnail_side(t, pooling_factor(t, side)) <= side.max(1));
            }
        }
    }

    #[test]
    fn thumbnail_rows_still_sum_to_one_and_the_masked_blocks_stay_empty() {
        for (t, factor) in [(128, 2), (100, 3), (7, 4), (256, 3), (5, 1)] {
            let thumb = pool_map(&causal_map(t, t as u32), t, factor);
            let side = thumbnail_side(t, factor);
            assert_eq!(thumb.len(), side * side);
            for (i, row) in thumb.chunks_exact(side).enumerate() {
                let sum: f32 = row.iter().sum();
                assert!((sum - 1.0).abs() < 1e-5, "t {t} f {factor} row {i}: {sum}");
                assert!(
                    row[i + 1..].iter().all(|&v| v == 0.0),
                    "row {i} above the diagonal"
                );
            }
        }
    }

    #[test]
    fn a_sharp_head_stays_sharp_and_factor_one_changes_nothing() {
        // Every query attends to itself: the thumbnail's diagonal is 1 (not 1/f² or 1/f).
        let t = 9;
        let mut map = vec![0.0f32; t * t];
        (0..t).for_each(|i| map[i * t + i] = 1.0);
        let thumb = pool_map(&map, t, 3);
        for (i, row) in thumb.chunks_exact(3).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                assert_eq!(v, if i == j { 1.0 } else { 0.0 });
            }
        }
        let map = causal_map(11, 5);
        assert_eq!(pool_map(&map, 11, 1), map);
    }

    #[test]
    fn pooling_is_linear_and_a_missing_map_stays_missing() {
        let (t, f) = (20, 3);
        let (a, b) = (causal_map(t, 1), causal_map(t, 2));
        let difference: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
        let (pa, pb) = (pool_map(&a, t, f), pool_map(&b, t, f));
        for ((d, x), y) in pool_map(&difference, t, f).iter().zip(&pa).zip(&pb) {
            assert!((d - (x - y)).abs() < 1e-6);
        }
        assert!(pool_map(&vec![f32::NAN; t * t], t, f)
            .iter()
            .all(|v| v.is_nan()));
    }
}
