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

/// A named set of points, drawn in one colour (and joined by a line when the plot has lines).
#[derive(Clone, Debug, PartialEq)]
pub struct PlotSeries {
    pub name: String,
    pub points: Vec<PlotPoint>,
}

/// What a plot shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlotData {
    /// Also the exported files' name.
    pub name: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<PlotSeries>,
    /// Join each series' points in x order (a curve); off for categories (sets of heads).
    pub lines: bool,
    /// Draw x on a log₂ scale (values that span orders of magnitude, e.g. β).
    pub x_log: bool,
    /// The page's current setting, drawn as a ring.
    pub marked: Option<(f64, f64)>,
    /// A horizontal reference line and its name (e.g. the unmodified model).
    pub reference: Option<(f64, String)>,
    /// Named ranges of y, shaded (e.g. the regimes of β).
    pub bands: Vec<(f64, f64, String)>,
}

impl PlotData {
    fn points(&self) -> impl Iterator<Item = &PlotPoint> {
        self.series.iter().flat_map(|s| &s.points)
    }
}

const WIDTH: f64 = 420.0;
const HEIGHT: f64 = 240.0;
/// Room for the axis labels: left, right, top, bottom.
const MARGIN: (f64, f64, f64, f64) = (56.0, 16.0, 12.0, 40.0);

/// `[lo, hi]` covering `values`, widened when they are all equal.
fn span(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
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
    } else if v.abs() < 0.01 {
        format!("{v:.2e}")
    } else {
        format!("{v:.3}")
    }
}

/// The points as CSV: `series,label,x,y` with the axis names in the header.
pub fn to_csv(data: &PlotData) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let mut csv = format!(
        "series,label,{},{}\n",
        quote(&data.x_label),
        quote(&data.y_label)
    );
    for s in &data.series {
        for p in &s.points {
            csv.push_str(&format!(
                "{},{},{},{}\n",
                quote(&s.name),
                quote(&p.label),
                p.x,
                p.y
            ));
        }
    }
    csv
}

/// Series colours (colour-blind safe), in order.
const COLOURS: [&str; 4] = ["#2166ac", "#d6604d", "#1b7837", "#762a83"];

/// `testid` names the `<svg>` for the tests (default `plot`).
#[component]
pub fn Plot(data: PlotData, #[prop(optional)] testid: Option<&'static str>) -> impl IntoView {
    let (left, right, top, bottom) = MARGIN;
    // On a log axis x is drawn at log₂ x (non-positive values cannot be placed and are left out).
    let log = data.x_log;
    let fx = move |x: f64| if log { x.log2() } else { x };
    let all = || data.points().map(|p| (p.x, p.y)).chain(data.marked);
    let (x0, x1) = span(all().map(|p| fx(p.0)));
    let reference_y = data.reference.as_ref().map(|r| r.0);
    let (y0, y1) = span(
        all()
            .map(|p| p.1)
            .chain([0.0])
            .chain(reference_y)
            .chain(data.bands.iter().flat_map(|b| [b.0, b.1])),
    );
    let sx = move |x: f64| left + (fx(x) - x0) / (x1 - x0) * (WIDTH - left - right);
    let sy = move |y: f64| HEIGHT - bottom - (y - y0) / (y1 - y0) * (HEIGHT - top - bottom);
    let placed = move |p: &PlotPoint| p.y.is_finite() && fx(p.x).is_finite();
    let bands = data
        .bands
        .iter()
        .map(|(from, to, label)| {
            let (a, b) = (sy(*from), sy(*to));
            view! {
                <g class="band">
                    <rect x=left y=a.min(b) width=WIDTH - left - right height=(a - b).abs()><title>{label.clone()}</title></rect>
                    <text x=WIDTH - right - 4.0 y=a.min(b) + 11.0 text-anchor="end">{label.clone()}</text>
                </g>
            }
        })
        .collect_view();
    let reference = data.reference.clone().map(|(y, name)| {
        view! {
            <g class="reference">
                <line x1=left y1=sy(y) x2=WIDTH - right y2=sy(y) />
                <text x=left + 4.0 y=sy(y) - 3.0>{format!("{name}: {}", tick(y))}</text>
            </g>
        }
    });
    let lines = data.lines.then(|| {
        data.series
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut ordered: Vec<&PlotPoint> = s.points.iter().filter(|p| placed(p)).collect();
                ordered.sort_by(|a, b| a.x.total_cmp(&b.x));
                let line = ordered
                    .iter()
                    .map(|p| format!("{:.1},{:.1}", sx(p.x), sy(p.y)))
                    .collect::<Vec<_>>()
                    .join(" ");
                view! { <polyline class="series" stroke=COLOURS[i % COLOURS.len()] points=line /> }
            })
            .collect_view()
    });
    let circles = data
        .series
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.points.iter().filter(|p| placed(p)).map(move |p| (i, p)))
        .map(|(i, p)| {
            view! {
                <circle class="point" fill=COLOURS[i % COLOURS.len()] cx=format!("{:.1}", sx(p.x)) cy=format!("{:.1}", sy(p.y)) r="4">
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
    let legend = (data.series.len() > 1).then(|| {
        data.series
            .iter()
            .enumerate()
            .map(|(i, s)| {
                view! {
                    <g class="legend">
                        <circle cx=left + 10.0 cy=top + 8.0 + 14.0 * i as f64 r="4" fill=COLOURS[i % COLOURS.len()] />
                        <text x=left + 18.0 y=top + 12.0 + 14.0 * i as f64>{s.name.clone()}</text>
                    </g>
                }
            })
            .collect_view()
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
    let x_tick = move |v: f64| tick(if log { v.exp2() } else { v });
    let x_label = if log {
        format!("{} (log scale)", data.x_label)
    } else {
        data.x_label.clone()
    };
    let count = data.points().filter(|p| placed(p)).count();
    view! {
        <figure class="plot">
            <svg node_ref=svg_ref xmlns="http://www.w3.org/2000/svg" data-testid=testid.unwrap_or("plot")
                data-points=count.to_string()
                viewBox=format!("0 0 {WIDTH} {HEIGHT}") width=WIDTH height=HEIGHT>
                {bands}
                <line class="axis" x1=yb y1=top x2=yb y2=xb />
                <line class="axis" x1=yb y1=xb x2=WIDTH - right y2=xb />
                <text class="tick" x=yb y=xb + 14.0 text-anchor="middle">{x_tick(x0)}</text>
                <text class="tick" x=WIDTH - right y=xb + 14.0 text-anchor="end">{x_tick(x1)}</text>
                <text class="tick" x=yb - 4.0 y=xb text-anchor="end">{tick(y0)}</text>
                <text class="tick" x=yb - 4.0 y=top + 8.0 text-anchor="end">{tick(y1)}</text>
                <text class="axis-label" x=(yb + WIDTH - right) / 2.0 y=HEIGHT - 6.0 text-anchor="middle">{x_label}</text>
                <text class="axis-label" x="12" y=(top + xb) / 2.0 text-anchor="middle"
                    transform=format!("rotate(-90 12 {})", (top + xb) / 2.0)>{data.y_label.clone()}</text>
                {reference}
                {lines}
                {circles}
                {marked}
                {legend}
            </svg>
            <figcaption>
                <button data-testid="export-svg" on:click=export_svg>"Export SVG"</button>
                <button data-testid="export-csv" on:click=export_csv>"Export CSV"</button>
            </figcaption>
        </figure>
    }
}

/// A cell's background colour for `value` on a diverging scale whose ends are `±max`: blue for
/// what raises the logit, red for what lowers it. Set as one CSS property (`style:`), never a
/// `style` attribute, so the page runs under a strict Content-Security-Policy.
pub fn shade(value: f64, max: f64) -> String {
    let alpha = if max > 0.0 && value.is_finite() {
        (value.abs() / max).min(1.0) * 0.85
    } else {
        0.0
    };
    let rgb = if value >= 0.0 {
        "33, 102, 172"
    } else {
        "178, 24, 43"
    };
    format!("rgba({rgb}, {alpha:.3})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_widen_single_values_and_csv_quotes_labels() {
        assert_eq!(span([2.0, 5.0, 3.0].into_iter()), (2.0, 5.0));
        assert_eq!(span([1.0, 1.0].into_iter()), (0.5, 1.5));
        assert_eq!(span(std::iter::empty()), (0.0, 1.0));
        assert_eq!(span([f64::NAN, 1.0, 3.0].into_iter()), (1.0, 3.0));
        let data = PlotData {
            name: "p".into(),
            x_label: "KV bytes".into(),
            y_label: "KL \"nats\"".into(),
            series: vec![PlotSeries {
                name: "pooled".into(),
                points: vec![PlotPoint {
                    x: 64.0,
                    y: 0.25,
                    label: "kv_groups 1".into(),
                }],
            }],
            ..PlotData::default()
        };
        assert_eq!(
            to_csv(&data),
            "series,label,\"KV bytes\",\"KL \"\"nats\"\"\"\n\"pooled\",\"kv_groups 1\",64,0.25\n"
        );
    }
}
