//! Writes a random GPT-2-shaped model in the project's format, for `attn bench`:
//!
//! ```sh
//! cargo run -p attn-gpu --example random_model -- OUT.safetensors N_LAYER D_MODEL N_HEAD VOCAB N_CTX
//! ```

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: random_model OUT.safetensors N_LAYER D_MODEL N_HEAD VOCAB N_CTX";
    if args.len() != 6 {
        eprintln!("{usage}");
        std::process::exit(2);
    }
    let number = |i: usize| -> usize { args[i].parse().unwrap_or_else(|_| panic!("{usage}")) };
    let config = attn_model::ModelConfig {
        n_layer: number(1),
        d_model: number(2),
        n_head: number(3),
        vocab_size: number(4),
        n_ctx: number(5),
        ..attn_model::ModelConfig::tiny(number(4))
    };
    let model = attn_model::Model::random(config, 1, 0.3).expect("a valid config");
    let bytes = model.to_safetensors_bytes().expect("serialises");
    std::fs::write(&args[0], bytes).expect("writes the file");
    eprintln!("{} parameters -> {}", model.parameter_count(), args[0]);
}
