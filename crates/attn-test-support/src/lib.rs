//! What the workspace's test suites share (a dev-dependency only): comparing computed numbers
//! against a reference — PyTorch's, the CPU engine's — within a relative tolerance, with a
//! message that names the worst element. No dependencies, so every crate can use it, natively
//! and in wasm. `layering` reads a crate's sources and finds import circles between its
//! modules.

pub mod layering;

/// The tolerance the engines are held to: `|actual − expected| ≤ 1e-4 · max(1, |expected|)`.
pub const TOLERANCE: f64 = 1e-4;

/// Asserts that `actual` equals `expected` element by element within [`TOLERANCE`] (relative,
/// absolute below 1). A NaN anywhere fails. `what` names the quantity in the message.
#[track_caller]
pub fn assert_close<A, E>(what: &str, actual: &[A], expected: &[E])
where
    A: Copy + Into<f64>,
    E: Copy + Into<f64>,
{
    assert_close_within(what, actual, expected, TOLERANCE);
}

/// [`assert_close`] with another relative tolerance.
#[track_caller]
pub fn assert_close_within<A, E>(what: &str, actual: &[A], expected: &[E], tolerance: f64)
where
    A: Copy + Into<f64>,
    E: Copy + Into<f64>,
{
    assert_eq!(actual.len(), expected.len(), "{what}: lengths differ");
    let mut worst = (0.0f64, 0usize);
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let (a, e): (f64, f64) = (a.into(), e.into());
        let err = relative_error(a, e);
        assert!(!err.is_nan(), "{what}[{i}]: got {a}, expected {e}");
        if err > worst.0 {
            worst = (err, i);
        }
    }
    let (err, i) = worst;
    if err > tolerance {
        let (a, e): (f64, f64) = (actual[i].into(), expected[i].into());
        panic!("{what}[{i}]: got {a}, expected {e} (relative error {err:e} > {tolerance:e})");
    }
}

/// `|a − b| / max(1, |b|)`: relative to the reference, absolute for references below 1.
pub fn relative_error(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1.0)
}

/// The largest absolute difference between two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_values_pass_and_far_ones_fail() {
        assert_close("same", &[1.0f32, 200.0], &[1.00005f32, 200.01]);
        let far = std::panic::catch_unwind(|| assert_close("far", &[1.0f32], &[1.01f32]));
        assert!(far.is_err());
        let nan = std::panic::catch_unwind(|| assert_close("nan", &[f32::NAN], &[0.0f32]));
        assert!(nan.is_err());
        assert_close("mixed", &[0.5f64], &[0.5f32]);
    }
}
