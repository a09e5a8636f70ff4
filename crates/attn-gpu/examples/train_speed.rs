//! Times the page's trainer on the CPU and on the GPU (`attn_gpu::training::GpuTrainer`) on
//! the induction recipe at 2 layers × 2 heads, attention-only, batch 64, seed 3: steps per
//! second, and the time until the held-out accuracy (256 sequences, checked every 20 steps,
//! outside the timing) reaches 95 %.
//!
//! ```sh
//! cargo run --release -p attn-gpu --example train_speed -- [MAX_STEPS]
//! ```

// Native only: it opens a device with `pollster` and waits on it.
#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    native::main();
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::time::{Duration, Instant};

    use attn_gpu::training::GpuTrainer;
    use attn_gpu::GpuContext;
    use attn_model::training::{score, Task, Trainer};

    const CHECK_EVERY: usize = 20;
    const TARGET: f64 = 0.95;

    pub fn main() {
        let max_steps: usize = std::env::args()
            .nth(1)
            .map_or(600, |s| s.parse().expect("MAX_STEPS is a number"));
        let task = Task::Induction;
        let mut config = task.default_config();
        config.model.n_layer = 2;
        config.model.n_head = 2;
        config.model.mlp = false;
        config.batch_size = 64;
        config.seed = 3;
        config.steps = max_steps;
        let held_out = task.synthetic_data().unwrap().held_out();
        let held_out = &held_out[..256.min(held_out.len())];

        let ctx = GpuContext::new_blocking().expect("a GPU adapter");
        println!(
            "GPU: {} ({}, {})",
            ctx.adapter().name,
            ctx.adapter().backend,
            ctx.adapter().device_type
        );
        let mut gpu = GpuTrainer::new(&ctx, task, task.synthetic_data().unwrap(), config.clone())
            .expect("the GPU trainer starts");
        let mut cpu = Trainer::new(task, task.synthetic_data().unwrap(), config).unwrap();

        report("GPU trainer", &mut gpu, max_steps, held_out);
        report("CPU trainer", &mut cpu, max_steps, held_out);
    }

    /// A trainer as this example drives it.
    trait Run {
        /// One step; the batch's loss.
        fn step(&mut self) -> f64;
        fn weights(&mut self) -> attn_model::Model;
    }

    impl Run for GpuTrainer {
        fn step(&mut self) -> f64 {
            self.step_blocking().unwrap().batch.loss
        }
        fn weights(&mut self) -> attn_model::Model {
            pollster::block_on(GpuTrainer::weights(self)).unwrap()
        }
    }

    impl Run for Trainer {
        fn step(&mut self) -> f64 {
            Trainer::step(self).unwrap().batch.loss
        }
        fn weights(&mut self) -> attn_model::Model {
            Trainer::weights(self).clone()
        }
    }

    /// Trains until the held-out accuracy reaches [`TARGET`] (or `max_steps`) and prints the rate.
    fn report(
        name: &str,
        run: &mut dyn Run,
        max_steps: usize,
        held_out: &[attn_model::training::Sequence],
    ) {
        let mut busy = Duration::ZERO;
        let mut reached = None;
        let mut loss = f64::NAN;
        let mut steps = 0;
        for s in 1..=max_steps {
            let start = Instant::now();
            loss = run.step();
            busy += start.elapsed();
            steps = s;
            if s % CHECK_EVERY == 0 {
                let (_, accuracy) = score(&run.weights(), held_out).unwrap();
                if accuracy >= TARGET {
                    reached = Some((s, accuracy));
                    break;
                }
            }
        }
        println!(
            "{name}: {:.1} steps/s ({steps} steps in {:.2} s of training, last batch loss {loss:.3}); {}",
            steps as f64 / busy.as_secs_f64(),
            busy.as_secs_f64(),
            match reached {
                Some((s, a)) => format!("held-out accuracy {a:.3} ≥ {TARGET} at step {s}"),
                None => format!("held-out accuracy below {TARGET} after {max_steps} steps"),
            }
        );
    }
}
