//! A scatter/line plot drawn as SVG: axes with end ticks and labels, one circle per point (its
//! label and values on hover), the current setting marked, and the plot exported as SVG or CSV.
//! Data-dependent geometry goes into SVG attributes, never a `style` attribute (docs/HOSTING.md).

use leptos::prelude::*;

use crate::browser;

/// One point of a plot.
#[derive(Clone, Debug, PartialEq)]
pub struct PlotPoint {
    pub x: f64,
    pub y: f64,
    pub label: String,
}

/// What a plot shows.
#[derive(Clone, Debug, PartialEq)]
pub struct PlotData {
    /// Also the exported files' name.
    pub name: String,
    pub x_label: String,
    pub y_label: String,
    pub points: Vec<PlotPoint>,
    /// The page's current setting, drawn as a ring.
    pub marked: Option<(f64, f64)>,
}

const WIDTH: f64 = 420.0;
const HEIGHT: f64 = 240.0;
/// Room for the axis labels: left, right, top, bottom.
const MARGIN: (f64, f64, f64, f64) = (56.0, 16.0, 12.0, 40.0);

/// `[lo, hi]` covering `values`, widened when they are all equal.
fn span(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    match (lo.is_finite(), hi.is_finite()) {
        (true, true) if hi > lo => (lo, hi),
        (true, true) => (lo - 0.5, hi + 0.5),
        _ => (0.0, 1.0),
    }
}

/// Short tick text: integers as they are, small values with significant digits.
fn tick(v: f64) -> String {
    if v == v.round() && v.abs() < 1e9 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// The points as CSV: `label,x,y` with the axis names in the header.
pub fn to_csv(data: &PlotData) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let mut csv = format!("label,{},{}\n", quote(&data.x_label), quote(&data.y_label));
    for p in &data.points {
        csv.push_str(&format!("{},{},{}\n", quote(&p.label), p.x, p.y));
    }
    csv
}

#[component]
pub fn Plot(data: PlotData) -> impl IntoView {
    let (left, right, top, bottom) = MARGIN;
    let all = || data.points.iter().map(|p| (p.x, p.y)).chain(data.marked);
    let (x0, x1) = span(all().map(|p| p.0));
    let (y0, y1) = span(all().map(|p| p.1).chain([0.0]));
    let sx = move |x: f64| left + (x - x0) / (x1 - x0) * (WIDTH - left - right);
    let sy = move |y: f64| HEIGHT - bottom - (y - y0) / (y1 - y0) * (HEIGHT - top - bottom);
    let mut ordered = data.points.clone();
    ordered.sort_by(|a, b| a.x.total_cmp(&b.x));
    let line = ordered
        .iter()
        .map(|p| format!("{:.1},{:.1}", sx(p.x), sy(p.y)))
        .collect::<Vec<_>>()
        .join(" ");
    let circles = data
        .points
        .iter()
        .map(|p| {
            view! {
                <circle class="point" cx=format!("{:.1}", sx(p.x)) cy=format!("{:.1}", sy(p.y)) r="4">
                    <title>{format!("{}: {} = {}, {} = {}", p.label, data.x_label, tick(p.x), data.y_label, tick(p.y))}</title>
                </circle>
            }
        })
        .collect_view();
    let marked = data.marked.map(|(x, y)| {
        view! {
            <circle class="marked" data-testid="plot-marked" cx=format!("{:.1}", sx(x)) cy=format!("{:.1}", sy(y)) r="8">
                <title>{format!("current setting: {} = {}, {} = {}", data.x_label, tick(x), data.y_label, tick(y))}</title>
            </circle>
        }
    });
    let svg_ref = NodeRef::<leptos::svg::Svg>::new();
    let name = data.name.clone();
    let export_svg = move |_| {
        if let Some(svg) = svg_ref.get_untracked() {
            let text = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{}",
                svg.outer_html()
            );
            let _ = browser::download(&format!("{name}.svg"), text.as_bytes(), "image/svg+xml");
        }
    };
    let csv = to_csv(&data);
    let csv_name = format!("{}.csv", data.name);
    let export_csv = move |_| {
        let _ = browser::download(&csv_name, csv.as_bytes(), "text/csv");
    };
    let (xb, yb) = (HEIGHT - bottom, left);
    view! {
        <figure class="plot">
            <svg node_ref=svg_ref xmlns="http://www.w3.org/2000/svg" data-testid="plot"
                data-points=data.points.len().to_string()
                viewBox=format!("0 0 {WIDTH} {HEIGHT}") width=WIDTH height=HEIGHT>
                <line class="axis" x1=yb y1=top x2=yb y2=xb />
                <line class="axis" x1=yb y1=xb x2=WIDTH - right y2=xb />
                <text class="tick" x=yb y=xb + 14.0 text-anchor="middle">{tick(x0)}</text>
                <text class="tick" x=WIDTH - right y=xb + 14.0 text-anchor="end">{tick(x1)}</text>
                <text class="tick" x=yb - 4.0 y=xb text-anchor="end">{tick(y0)}</text>
                <text class="tick" x=yb - 4.0 y=top + 8.0 text-anchor="end">{tick(y1)}</text>
                <text class="axis-label" x=(yb + WIDTH - right) / 2.0 y=HEIGHT - 6.0 text-anchor="middle">{data.x_label.clone()}</text>
                <text class="axis-label" x="12" y=(top + xb) / 2.0 text-anchor="middle"
                    transform=format!("rotate(-90 12 {})", (top + xb) / 2.0)>{data.y_label.clone()}</text>
                <polyline class="series" points=line />
                {circles}
                {marked}
            </svg>
            <figcaption>
                <button data-testid="export-svg" on:click=export_svg>"Export SVG"</button>
                <button data-testid="export-csv" on:click=export_csv>"Export CSV"</button>
            </figcaption>
        </figure>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_widen_single_values_and_csv_quotes_labels() {
        assert_eq!(span([2.0, 5.0, 3.0].into_iter()), (2.0, 5.0));
        assert_eq!(span([1.0, 1.0].into_iter()), (0.5, 1.5));
        assert_eq!(span(std::iter::empty()), (0.0, 1.0));
        let data = PlotData {
            name: "p".into(),
            x_label: "KV bytes".into(),
            y_label: "KL \"nats\"".into(),
            points: vec![PlotPoint {
                x: 64.0,
                y: 0.25,
                label: "kv_groups 1".into(),
            }],
            marked: None,
        };
        assert_eq!(
            to_csv(&data),
            "label,\"KV bytes\",\"KL \"\"nats\"\"\"\n\"kv_groups 1\",64,0.25\n"
        );
    }
}
