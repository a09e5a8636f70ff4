//! Drawing attention maps: colour scales and painting a `T × T` matrix onto a canvas, one pixel
//! per cell (CSS scales it up with crisp edges).

use wasm_bindgen::{Clamped, JsCast};
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement, ImageData};

/// A sequential scale for weights in `[0, 1]`: near-white through teal to deep blue. Calm, and
/// readable for the common colour-vision deficiencies.
pub fn weight_colour(value: f32) -> [u8; 3] {
    const STOPS: [(f32, [f32; 3]); 5] = [
        (0.0, [247.0, 251.0, 255.0]),
        (0.25, [198.0, 219.0, 239.0]),
        (0.5, [107.0, 174.0, 214.0]),
        (0.75, [33.0, 113.0, 181.0]),
        (1.0, [8.0, 48.0, 107.0]),
    ];
    interpolate(&STOPS, value.clamp(0.0, 1.0))
}

/// A diverging scale for differences in `[-1, 1]`: red where the variant attends less than the
/// baseline, white for no change, blue where it attends more.
pub fn diff_colour(value: f32) -> [u8; 3] {
    const STOPS: [(f32, [f32; 3]); 5] = [
        (-1.0, [178.0, 24.0, 43.0]),
        (-0.3, [244.0, 165.0, 130.0]),
        (0.0, [247.0, 247.0, 247.0]),
        (0.3, [146.0, 197.0, 222.0]),
        (1.0, [33.0, 102.0, 172.0]),
    ];
    interpolate(&STOPS, value.clamp(-1.0, 1.0))
}

fn interpolate(stops: &[(f32, [f32; 3])], x: f32) -> [u8; 3] {
    for pair in stops.windows(2) {
        let ((x0, c0), (x1, c1)) = (pair[0], pair[1]);
        if x <= x1 {
            let t = if x1 > x0 { (x - x0) / (x1 - x0) } else { 0.0 };
            let mix = |i: usize| (c0[i] + t * (c1[i] - c0[i])).round() as u8;
            return [mix(0), mix(1), mix(2)];
        }
    }
    let last = stops[stops.len() - 1].1;
    [last[0] as u8, last[1] as u8, last[2] as u8]
}

/// RGBA pixels of a `t × t` map. With `baseline`, the difference `map − baseline` is drawn with
/// the diverging scale. Cells a causal model can never attend to are a light grey.
pub fn map_pixels(map: &[f32], baseline: Option<&[f32]>, t: usize, causal: bool) -> Vec<u8> {
    let mut pixels = Vec::with_capacity(t * t * 4);
    for i in 0..t {
        for j in 0..t {
            let rgb = if causal && j > i {
                [236, 238, 241]
            } else {
                let v = map[i * t + j];
                match baseline {
                    Some(b) => diff_colour(v - b[i * t + j]),
                    None => weight_colour(v),
                }
            };
            pixels.extend_from_slice(&[rgb[0], rgb[1], rgb[2], 255]);
        }
    }
    pixels
}

/// Paints the map on `canvas`, resizing it to `t × t` pixels.
pub fn paint(
    canvas: &HtmlCanvasElement,
    map: &[f32],
    baseline: Option<&[f32]>,
    t: usize,
    causal: bool,
) -> Result<(), String> {
    if t == 0 || map.len() != t * t {
        return Ok(());
    }
    // A map the forward did not read back (another layer was on screen): blank until it is.
    if map[0].is_nan() {
        canvas.set_width(1);
        canvas.set_height(1);
        return Ok(());
    }
    // Resizing clears and reallocates the canvas: only when the length changed.
    if canvas.width() != t as u32 || canvas.height() != t as u32 {
        canvas.set_width(t as u32);
        canvas.set_height(t as u32);
    }
    let ctx = canvas
        .get_context("2d")
        .map_err(|_| "no 2d canvas context".to_string())?
        .ok_or("no 2d canvas context")?
        .dyn_into::<CanvasRenderingContext2d>()
        .map_err(|_| "not a 2d context".to_string())?;
    let pixels = map_pixels(map, baseline, t, causal);
    let image = ImageData::new_with_u8_clamped_array_and_sh(Clamped(&pixels), t as u32, t as u32)
        .map_err(|_| "cannot build image data".to_string())?;
    ctx.put_image_data(&image, 0.0, 0.0)
        .map_err(|_| "cannot draw on the canvas".to_string())
}

/// Paints `rows` (`count` rows of `width` weights, row-major) on `canvas`, one pixel a weight:
/// the attention of one token in every head. NaN (no row: a recurrent state) is drawn grey.
pub fn paint_rows(
    canvas: &HtmlCanvasElement,
    rows: &[f32],
    count: usize,
    width: usize,
) -> Result<(), String> {
    if count == 0 || width == 0 || rows.len() != count * width {
        return Ok(());
    }
    canvas.set_width(width as u32);
    canvas.set_height(count as u32);
    let ctx = canvas
        .get_context("2d")
        .map_err(|_| "no 2d canvas context".to_string())?
        .ok_or("no 2d canvas context")?
        .dyn_into::<CanvasRenderingContext2d>()
        .map_err(|_| "not a 2d context".to_string())?;
    let mut pixels = Vec::with_capacity(rows.len() * 4);
    for &v in rows {
        let rgb = if v.is_nan() {
            [200, 200, 200]
        } else {
            weight_colour(v)
        };
        pixels.extend_from_slice(&[rgb[0], rgb[1], rgb[2], 255]);
    }
    let image =
        ImageData::new_with_u8_clamped_array_and_sh(Clamped(&pixels), width as u32, count as u32)
            .map_err(|_| "cannot build image data".to_string())?;
    ctx.put_image_data(&image, 0.0, 0.0)
        .map_err(|_| "cannot draw on the canvas".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_hit_their_end_points() {
        assert_eq!(weight_colour(0.0), [247, 251, 255]);
        assert_eq!(weight_colour(1.0), [8, 48, 107]);
        assert_eq!(weight_colour(7.0), [8, 48, 107]);
        assert_eq!(diff_colour(0.0), [247, 247, 247]);
        assert_eq!(diff_colour(-1.0), [178, 24, 43]);
    }

    #[test]
    fn pixels_mark_the_future_grey_in_causal_maps() {
        let map = [1.0, 0.0, 0.5, 0.5];
        let px = map_pixels(&map, None, 2, true);
        assert_eq!(px.len(), 16);
        assert_eq!(&px[4..8], &[236, 238, 241, 255]);
        assert_eq!(&px[0..3], &weight_colour(1.0));
    }
}
