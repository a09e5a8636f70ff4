//! QK attribution of one clicked cell of the enlarged map (`attn_model::qk`): the pairs of
//! residual-stream parts that add most to the head's score, and a matrix of the largest
//! query-side parts against the largest key-side parts.

use leptos::prelude::*;

use crate::plot::shade;
use crate::state::Ui;

/// How many pairs of parts the QK view lists, and how many parts of each side its matrix shows.
const QK_LISTED: usize = 8;
const QK_SIDE: usize = 6;

/// QK attribution of one clicked cell (shown under the enlarged map): the pairs of parts that add
/// most to the score, and a matrix of the largest query-side parts against the largest key-side
/// parts.
pub fn qk_view(ui: Ui, a: attn_model::QkAttribution) -> impl IntoView {
    let label = |k: usize| {
        ui.labels
            .with_untracked(|labels| labels.get(k).cloned())
            .unwrap_or_else(|| k.to_string())
    };
    let name = |i: usize| a.components[i].clone();
    let ranked = a.ranked();
    let max = ranked.first().map_or(1e-9, |r| r.2.abs().max(1e-9));
    let listed = ranked
        .iter()
        .take(QK_LISTED)
        .map(|&(q, k, v)| {
            view! {
                <tr><td style:background-color=shade(v, max)>{format!("{v:+.3}")}</td>
                    <td class="part">{name(q)}</td><td class="part">{name(k)}</td></tr>
            }
        })
        .collect_view();
    // The parts with the largest totals on each side, largest first.
    let largest = |totals: &[f64]| {
        let mut order: Vec<usize> = (0..totals.len()).collect();
        order.sort_by(|&x, &y| totals[y].abs().total_cmp(&totals[x].abs()));
        order.truncate(QK_SIDE);
        order
    };
    let (query_totals, key_totals) = (a.query_totals(), a.key_totals());
    let (rows, columns) = (largest(&query_totals), largest(&key_totals));
    let shown: f64 = rows
        .iter()
        .flat_map(|&q| columns.iter().map(move |&k| (q, k)))
        .map(|(q, k)| a.parts[q][k])
        .sum();
    let header = columns
        .iter()
        .map(|&k| view! { <th>{name(k)}<br/>{format!("{:+.2}", key_totals[k])}</th> })
        .collect_view();
    let matrix = rows
        .iter()
        .map(|&q| {
            let cells = columns
                .iter()
                .map(|&k| {
                    let v = a.parts[q][k];
                    view! { <td style:background-color=shade(v, max)>{format!("{v:+.2}")}</td> }
                })
                .collect_view();
            view! { <tr><th>{format!("{} {:+.2}", name(q), query_totals[q])}</th>{cells}</tr> }
        })
        .collect_view();
    view! {
        <div class="qk" data-testid="qk-attribution" data-score=format!("{:.6}", a.score)
            data-sum=format!("{:.6}", a.total())>
            <p class="muted">{format!(
                "Why L{}H{} attends from {} ({}) to {} ({}): its score {:.3} (before the softmax, scale included) is the sum of what each part of the query's residual stream adds against each part of the key's — the embeddings, every earlier head and MLP, the biases — through the layer's norm with its scale frozen.",
                a.layer, a.head, label(a.query), a.query, label(a.key), a.key, a.score
            )}</p>
            <table class="analysis" data-testid="qk-ranked">
                <tr><th>"adds"</th><th>"query side"</th><th>"key side"</th></tr>
                {listed}
            </table>
            <table class="analysis" data-testid="qk-matrix">
                <tr><th>"query ↓ · key →"</th>{header}</tr>
                {matrix}
            </table>
            <p class="muted">{format!(
                "The {} × {} largest parts of each side (their totals beside their names) add {shown:+.3}; every other pair adds {:+.3}.",
                rows.len(), columns.len(), a.score - shown
            )}</p>
        </div>
    }
}
