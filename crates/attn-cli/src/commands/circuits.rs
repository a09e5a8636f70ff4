//! `attn circuits`: qK and OV circuits of every head (largest singular values) and the Q-, K- and
//! V-composition scores between heads of different layers, from the weights alone.

use attn_model::circuits;
use clap::Args;
use serde_json::json;

use crate::args::{load, ModelArgs};
use crate::failure::Failure;
use crate::report::print_json;

/// The arguments of `attn circuits`.
#[derive(Args)]
pub(crate) struct CircuitsArgs {
    #[command(flatten)]
    common: ModelArgs,
    /// How many of the strongest links to list (text output).
    #[arg(long, default_value_t = 10)]
    top: usize,
}

/// `attn circuits`.
pub(crate) fn run(args: CircuitsArgs) -> Result<(), Failure> {
    let CircuitsArgs {
        common: ModelArgs { model, json },
        top,
    } = args;
    let model = load(&model)?;
    let c = circuits(&model);
    if json {
        print_json(&json!(c));
    } else {
        let n_head = model.config.n_head;
        let name = |i: usize| format!("L{}H{}", i / n_head, i % n_head);
        println!("head   QK singular values        OV singular values");
        for h in &c.heads {
            let show = |v: &[f32]| {
                v.iter()
                    .map(|x| format!("{x:.2}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            println!(
                "L{}H{}  {:<24}  {}",
                h.layer,
                h.head,
                show(&h.qk_singular_values),
                show(&h.ov_singular_values)
            );
        }
        let mut links: Vec<(f32, &str, usize, usize)> = Vec::new();
        for (kind, scores) in [("Q", &c.q), ("K", &c.k), ("V", &c.v)] {
            for (a, row) in scores.iter().enumerate() {
                for (b, &score) in row.iter().enumerate() {
                    if score > 0.0 {
                        links.push((score, kind, a, b));
                    }
                }
            }
        }
        links.sort_by(|x, y| y.0.total_cmp(&x.0));
        println!("strongest compositions:");
        for (score, kind, a, b) in links.into_iter().take(top) {
            println!("  {} → {} {kind}-composition {score:.3}", name(a), name(b));
        }
    }
    Ok(())
}
