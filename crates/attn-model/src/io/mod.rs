//! Everything that reads or writes outside data: the project's own safetensors format
//! (`format`), Hugging Face directories of the supported families (`hf`, read through `load`'s
//! `HfSource` from disk or from files a page picked), tensors read whole or piece by piece
//! (`tensors`), tokenizers (`tokenizer`), and the fuzzing harnesses over every parser
//! (`fuzzing`).

pub mod format;
pub mod fuzzing;
pub mod hf;
pub mod load;
pub mod tensors;
pub mod tokenizer;
