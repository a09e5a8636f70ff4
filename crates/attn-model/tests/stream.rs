//! Reading safetensors files piece by piece (as the page reads a picked file): the same tensors
//! as reading the whole file, whatever the pieces, with the header's declared sizes first and a
//! clear error for a cut or malformed file.
// Reads its fixtures from disk, so it runs natively; tests/browser.rs runs the fixture parity,
// family, tokenizer and bad-input checks inside a browser.
#![cfg(not(target_arch = "wasm32"))]

use std::path::Path;

use attn_model::{LoadedTensors, Model, ModelConfig, TensorStream};

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures")
            .join(path),
    )
    .unwrap()
}

fn streamed(bytes: &[u8], piece: usize) -> attn_model::Result<LoadedTensors> {
    let mut stream = TensorStream::new();
    for chunk in bytes.chunks(piece) {
        stream.push(chunk)?;
    }
    stream.finish()
}

#[test]
fn any_pieces_give_the_whole_file() {
    let own = Model::random(ModelConfig::tiny_llama(30), 2, 0.3)
        .unwrap()
        .to_safetensors_bytes()
        .unwrap();
    for bytes in [
        fixture("families/qwen2-bf16/model.safetensors"),
        fixture("families/llama-gqa-tied-f16/model.safetensors"),
        fixture("gpt2-tiny/model.safetensors"),
        own,
    ] {
        let whole = LoadedTensors::from_bytes(&bytes).unwrap();
        for piece in [1, 7, 4096, bytes.len()] {
            assert_eq!(streamed(&bytes, piece).unwrap(), whole, "pieces of {piece}");
        }
    }
}

#[test]
fn the_own_format_loads_from_a_stream() {
    let model = Model::random(ModelConfig::tiny_neox(30), 2, 0.3).unwrap();
    let loaded = streamed(&model.to_safetensors_bytes().unwrap(), 100).unwrap();
    assert_eq!(Model::from_loaded(loaded).unwrap(), model);
}

#[test]
fn the_header_declares_the_sizes_before_the_weights_arrive() {
    let bytes = fixture("families/qwen2-bf16/model.safetensors");
    let model = Model::from_hf(
        &String::from_utf8(fixture("families/qwen2-bf16/config.json")).unwrap(),
        &[&bytes],
    )
    .unwrap();
    let mut stream = TensorStream::new();
    let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    stream.push(&bytes[..header - 1]).unwrap();
    assert!(
        stream.declared().is_none(),
        "the header is not complete yet"
    );
    stream.push(&bytes[header - 1..header]).unwrap();
    let declared = stream.declared().unwrap().clone();
    assert_eq!(declared.values as usize, model.parameter_count());
    assert_eq!(declared.f32_bytes(), 4 * declared.values);
    assert_eq!(
        declared.memory_bytes(),
        2 * declared.values,
        "bf16 is held in 16 bits"
    );
    assert_eq!(declared.file_bytes as usize, bytes.len());
    let embedding = (model.config.vocab_size * model.config.d_model) as u64;
    assert_eq!(declared.largest, embedding);
}

#[test]
fn cut_or_malformed_files_are_clear_errors() {
    let bytes = fixture("families/qwen2/model.safetensors");
    let err = streamed(&bytes[..bytes.len() - 10], 1000)
        .unwrap_err()
        .to_string();
    assert!(err.contains("ends before the tensor"), "{err}");
    let err = streamed(&bytes[..20], 1000).unwrap_err().to_string();
    assert!(err.contains("ends inside its header"), "{err}");
    let err = streamed(b"\xff\xff\xff\xff\xff\xff\xff\xffrest", 4)
        .unwrap_err()
        .to_string();
    assert!(err.contains("header claims"), "{err}");

    // A dtype that is not f32, f16, bf16 or f64 is named with its tensor.
    let header = br#"{"w":{"dtype":"I8","shape":[2],"data_offsets":[0,2]}}"#;
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header);
    file.extend_from_slice(&[1, 2]);
    let err = streamed(&file, 3).unwrap_err().to_string();
    assert!(err.contains("`w`") && err.contains("I8"), "{err}");

    // Offsets that do not match the shape.
    let header = br#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#;
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header);
    file.extend_from_slice(&[0; 4]);
    let err = streamed(&file, 3).unwrap_err().to_string();
    assert!(err.contains("declares 4 bytes for 2 values"), "{err}");
}
