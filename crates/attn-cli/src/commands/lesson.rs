//! `attn lesson`: list the lessons, or run every measured step of one over its samples and print
//! each claim's mean, 95 % interval, per-input values and verdict (docs/LESSONS.md).

use std::path::PathBuf;

use attn_model::lesson::{range_text, read_lessons, run_lesson, LessonReport};
use clap::Args;
use pollster::block_on;
use serde_json::json;

use crate::failure::Failure;
use crate::gpu;
use crate::report::print_json;

/// The page's static folder in this checkout: lessons, built-in models, held-out text.
const STATIC_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../static");

/// The arguments of `attn lesson`.
#[derive(Args)]
pub(crate) struct LessonArgs {
    /// The lesson to run (its id; `--list` shows them).
    #[arg(required_unless_present = "list")]
    id: Option<String>,
    /// List the lessons instead.
    #[arg(long)]
    list: bool,
    /// Run the steps that fit this model (a project `.safetensors` file or a Hugging Face
    /// directory) on it instead of their built-in models: on a language model the steps marked
    /// `any_language_model`, on a task model the steps whose built-in model has its task.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Which engine runs the forward passes.
    #[arg(long, value_enum, default_value = "cpu")]
    engine: gpu::EngineArg,
    /// The folder with lessons/, models/ and train/ (the page's static folder).
    #[arg(long, default_value = STATIC_DIR)]
    static_dir: PathBuf,
    /// Print JSON instead of a readable report.
    #[arg(long)]
    json: bool,
}

/// `attn lesson`.
pub(crate) fn run(args: LessonArgs) -> Result<(), Failure> {
    let lessons = read_lessons(&args.static_dir.join("lessons"))?;
    if args.list {
        if args.json {
            let list: Vec<_> = lessons
                .iter()
                .map(|l| json!({"id": l.id, "title": l.title}))
                .collect();
            print_json(&json!({ "lessons": list }));
        } else {
            for l in &lessons {
                println!("{:<18} {}", l.id, l.title);
            }
        }
        return Ok(());
    }
    let id = args.id.unwrap_or_default();
    let lesson = lessons.iter().find(|l| l.id == id).ok_or_else(|| {
        let ids: Vec<&str> = lessons.iter().map(|l| l.id.as_str()).collect();
        Failure(format!(
            "no lesson {id:?}; the lessons are {}",
            ids.join(", ")
        ))
    })?;
    let kind = args.engine;
    let report = block_on(run_lesson(
        lesson,
        &args.static_dir,
        args.model.as_deref(),
        |model| gpu::engine(kind, model).map_err(|Failure(m)| m),
        &mut attn_model::engine::unwatched(),
    ))
    .map_err(|e| Failure(format!("lesson {id}: {e}")))?;
    if args.json {
        print_json(&serde_json::to_value(&report).map_err(|e| Failure(e.to_string()))?);
    } else {
        print_report(&report);
    }
    Ok(())
}

fn print_report(report: &LessonReport) {
    println!("lesson {} on {}", report.id, report.model);
    for step in &report.steps {
        println!("\nstep {}: {}", step.step, step.title);
        println!("  scored on {}; ranked on {}", step.sample, step.ranking);
        for r in &step.results {
            let range = range_text(r.min, r.max);
            println!(
                "  {}: {:.4} [{:.4}, {:.4}] over {} inputs (in range on {}); claims {range}: {}",
                r.label,
                r.mean,
                r.low,
                r.high,
                r.n,
                r.held,
                r.verdict.text()
            );
        }
    }
}
