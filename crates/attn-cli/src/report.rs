//! How the commands answer: the JSON they print with `--json`, and the readable reports.

use attn_model::{HeadRoles, Model, Output, Tokenizer};
use serde_json::{json, Value};

use crate::failure::Failure;

pub(crate) fn label(tokenizer: Option<&Tokenizer>, id: u32) -> String {
    tokenizer
        .and_then(|t| t.token_label(id))
        .unwrap_or_else(|| id.to_string())
}

pub(crate) fn inspect_json(model: &Model) -> Result<Value, Failure> {
    let tokenizer = model.build_tokenizer()?;
    let c = &model.config;
    Ok(json!({
        "family": c.family.label(),
        "positions": c.positional_label(),
        "kv_layout": c.kv_layout_label(),
        "block": c.block_label(),
        "config": model.config,
        "parameters": model.parameter_count(),
        "weights": {
            "precision": model.weight_precision().label(),
            "bytes": model.memory_bytes(),
        },
        "tokenizer": tokenizer.as_ref().map(|t| json!({
            "kind": t.kind(),
            "vocab_size": t.vocab_size(),
        })),
        "metadata": model.metadata,
    }))
}

pub(crate) fn run_json(
    output: &Output,
    tokens: &[u32],
    tokenizer: Option<&Tokenizer>,
    with_attention: bool,
    top: usize,
) -> Value {
    let t_len = output.seq_len;
    let logits: Vec<&[f32]> = (0..t_len).map(|t| output.logits_at(t)).collect();
    let top_last: Vec<Value> = output
        .top_at(t_len - 1, top)
        .into_iter()
        .map(|(id, p)| json!([id, p]))
        .collect();
    let mut report = json!({
        "tokens": tokens,
        "token_labels": tokens.iter().map(|&t| label(tokenizer, t)).collect::<Vec<_>>(),
        "logits": logits,
        "kv_bytes_per_token": output.kv_bytes_per_token,
        "top": top_last,
        "top_labels": output.top_at(t_len - 1, top).iter()
            .map(|&(id, _)| label(tokenizer, id)).collect::<Vec<_>>(),
    });
    if with_attention {
        let attention: Vec<Vec<Vec<&[f32]>>> = (0..output.n_layer)
            .map(|l| {
                (0..output.n_head)
                    .map(|h| output.attention_map(l, h).chunks(t_len).collect())
                    .collect()
            })
            .collect();
        report["attention"] = json!(attention);
    }
    report
}

/// Prints `value` as pretty JSON. A reader that stops early (`attn … --json | head`) closes the
/// pipe: that ends the output quietly instead of panicking.
pub(crate) fn print_json(value: &Value) {
    use std::io::Write;
    let text = serde_json::to_string_pretty(value).expect("JSON values always serialise");
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("error: could not write the output: {e}");
            std::process::exit(1);
        }
    }
}

pub(crate) fn print_run(report: &Value) {
    let labels: Vec<&str> = report["token_labels"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    println!("input ({} tokens): {}", labels.len(), labels.join(" · "));
    println!("KV cache: {} bytes per token", report["kv_bytes_per_token"]);
    println!("next token:");
    let tops = report["top"].as_array().cloned().unwrap_or_default();
    let top_labels = report["top_labels"].as_array().cloned().unwrap_or_default();
    for (entry, label) in tops.iter().zip(&top_labels) {
        let p = entry[1].as_f64().unwrap_or(0.0);
        let bar = "█".repeat((p * 40.0).round() as usize);
        println!(
            "  {:>12}  {:6.2}%  {bar}",
            label.as_str().unwrap_or("?"),
            p * 100.0
        );
    }
}

pub(crate) fn print_inspect(model: &Model, report: &Value) {
    let c = &model.config;
    println!(
        "{} model: {}; {}; {}; {}",
        c.family.label(),
        c.block_label(),
        c.positional_label(),
        c.kv_layout_label(),
        model.weights_label()
    );
    println!(
        "{} layers × {} heads (key/value heads: {}), d_model {}, d_head {}, context {}",
        c.n_layer,
        c.n_head,
        c.kv_heads(),
        c.d_model,
        c.d_head(),
        c.n_ctx
    );
    println!(
        "{}{}, {}",
        if c.causal { "causal" } else { "bidirectional" },
        if c.mlp {
            ", with MLPs"
        } else {
            ", attention only"
        },
        match c.n_classes {
            Some(n) => format!("classifier with {n} classes"),
            None => format!("language model over {} tokens", c.vocab_size),
        }
    );
    println!("{} parameters", report["parameters"]);
    match &report["tokenizer"] {
        Value::Null => println!("no tokenizer (give token ids)"),
        t => println!(
            "tokenizer: {} ({} tokens)",
            t["kind"].as_str().unwrap_or("?"),
            t["vocab_size"]
        ),
    }
    for (key, value) in &model.metadata {
        println!("{key}: {value}");
    }
}

pub(crate) fn print_roles(roles: &[HeadRoles]) {
    println!("layer head  prev-token  induction  duplicate  first/sink  self   copying  role");
    for r in roles {
        let copying = r.copying.map_or("-".to_string(), |c| format!("{c:+.3}"));
        println!(
            "{:>5} {:>4}  {:>10.3}  {:>9.3}  {:>9.3}  {:>10.3}  {:>5.3}  {:>7}  {}",
            r.layer,
            r.head,
            r.previous_token,
            r.induction,
            r.duplicate_token,
            r.first_token,
            r.self_attention,
            copying,
            r.role.as_deref().unwrap_or("-")
        );
    }
}
