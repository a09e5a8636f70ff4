//! Reading named tensors out of a safetensors file into `f32` vectors, with the checks that turn
//! a bad file into a clear error instead of a panic.

use std::collections::{BTreeMap, HashMap};

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

use crate::error::{ModelError, Result};

/// The tensors of one file, converted to `f32`, waiting to be claimed by a loader. Whatever is
/// left unclaimed at the end is reported, so a misnamed tensor is never silently ignored.
pub(crate) struct TensorMap {
    tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

impl TensorMap {
    /// Parses `bytes` as safetensors and converts every tensor (F32, F16, BF16 or F64) to `f32`.
    /// `rename` maps a stored name to the loader's name; returning `None` drops the tensor (used
    /// for buffers such as GPT-2's causal mask that are not weights).
    pub fn from_bytes(bytes: &[u8], rename: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let file = SafeTensors::deserialize(bytes)?;
        let mut tensors = BTreeMap::new();
        for (stored_name, view) in file.tensors() {
            let Some(name) = rename(&stored_name) else {
                continue;
            };
            let values = to_f32(&stored_name, &view)?;
            if tensors
                .insert(name.clone(), (view.shape().to_vec(), values))
                .is_some()
            {
                return Err(ModelError::Safetensors(format!(
                    "two tensors map to the name `{name}`"
                )));
            }
        }
        Ok(TensorMap { tensors })
    }

    /// Parses every file of a sharded checkpoint into one map; a tensor stored twice is an error.
    pub fn from_files(files: &[&[u8]], rename: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut all = TensorMap {
            tensors: BTreeMap::new(),
        };
        for bytes in files {
            for (name, (shape, values)) in TensorMap::from_bytes(bytes, &rename)?.tensors {
                if all.tensors.contains_key(&name) {
                    return Err(ModelError::Safetensors(format!(
                        "the tensor `{name}` is stored in two shards"
                    )));
                }
                all.insert(name, shape, values);
            }
        }
        Ok(all)
    }

    /// Adds a tensor (a loader's rearrangement of stored ones).
    pub fn insert(&mut self, name: String, shape: Vec<usize>, values: Vec<f32>) {
        self.tensors.insert(name, (shape, values));
    }

    /// Drops the tensor `name` if it is there.
    pub fn remove(&mut self, name: &str) {
        self.tensors.remove(name);
    }

    /// Removes the tensor `name`, checking that its shape is `shape`.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        self.take_optional(name, shape)?
            .ok_or_else(|| ModelError::MissingTensor(name.to_string()))
    }

    /// Like [`take`](Self::take), but a missing tensor is `None`.
    pub fn take_optional(&mut self, name: &str, shape: &[usize]) -> Result<Option<Vec<f32>>> {
        match self.tensors.remove(name) {
            None => Ok(None),
            Some((found, values)) if found == shape => Ok(Some(values)),
            Some((found, _)) => Err(ModelError::Shape {
                name: name.to_string(),
                expected: shape.to_vec(),
                found,
            }),
        }
    }

    /// Fails on the first tensor nobody claimed.
    pub fn finish(self) -> Result<()> {
        match self.tensors.into_keys().next() {
            Some(name) => Err(ModelError::UnexpectedTensor(name)),
            None => Ok(()),
        }
    }
}

/// Reads the `__metadata__` string map of a safetensors file (empty when absent).
pub(crate) fn read_metadata(bytes: &[u8]) -> Result<HashMap<String, String>> {
    let (_, metadata) = SafeTensors::read_metadata(bytes)?;
    Ok(metadata.metadata().clone().unwrap_or_default())
}

fn to_f32(name: &str, view: &TensorView<'_>) -> Result<Vec<f32>> {
    let data = view.data();
    let values = match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("chunk of 8")) as f32)
            .collect(),
        other => {
            return Err(ModelError::Dtype {
                name: name.to_string(),
                dtype: format!("{other:?}"),
            })
        }
    };
    Ok(values)
}

/// Serialises `f32` tensors (name, shape, values) and string metadata as safetensors bytes.
pub(crate) fn write_f32_tensors(
    tensors: &[(String, Vec<usize>, &[f32])],
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, values)| values.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), data)| {
            TensorView::new(Dtype::F32, shape.clone(), data).map(|view| (name.clone(), view))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(safetensors::serialize(views, Some(metadata))?)
}
