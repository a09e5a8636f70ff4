//! Reading named tensors out of a safetensors file, with the checks that turn a bad file into a
//! clear error instead of a panic. 16-bit tensors stay 16-bit ([`Weights`]); f64 ones become f32.

use std::collections::{BTreeMap, HashMap};

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

use crate::error::{ModelError, Result};
use crate::weights::{Precision, TensorRef, Weights};

/// Every tensor of one safetensors file, in its stored precision, with the file's `__metadata__`:
/// what a loader turns into a model. Made from bytes in memory ([`LoadedTensors::from_bytes`])
/// or from a file read piece by piece ([`TensorStream`]).
#[derive(Debug, Default, PartialEq)]
pub struct LoadedTensors {
    pub(crate) metadata: HashMap<String, String>,
    pub(crate) tensors: BTreeMap<String, (Vec<usize>, Weights)>,
}

impl LoadedTensors {
    /// Parses `bytes` as safetensors: F32, F16 and BF16 tensors as stored, F64 ones as `f32`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let file = SafeTensors::deserialize(bytes)?;
        let mut tensors = BTreeMap::new();
        for (name, view) in file.tensors() {
            let values = decode(&name, view.dtype(), view.data())?;
            tensors.insert(name, (view.shape().to_vec(), values));
        }
        Ok(LoadedTensors {
            metadata: read_metadata(bytes)?,
            tensors,
        })
    }

    /// The file's `__metadata__` strings.
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// The values of the tensor `name` as `f32`, if the file has it.
    pub fn values(&self, name: &str) -> Option<std::borrow::Cow<'_, [f32]>> {
        self.tensors.get(name).map(|(_, values)| values.f32())
    }

    /// The tensor `name` as stored (16-bit values stay 16-bit), if the file has it.
    pub fn weights(&self, name: &str) -> Option<&Weights> {
        self.tensors.get(name).map(|(_, values)| values)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether the file holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }
}

/// The tensors of one file (or of every shard of a checkpoint), as stored, waiting to be
/// claimed by a loader. Whatever is left unclaimed at the end is reported, so a misnamed tensor is
/// never silently ignored.
pub(crate) struct TensorMap {
    tensors: BTreeMap<String, (Vec<usize>, Weights)>,
}

impl TensorMap {
    /// The tensors of every file of a checkpoint in one map (moved, not copied). `rename` maps a
    /// stored name to the loader's name; `None` drops the tensor (buffers such as GPT-2's causal
    /// mask that are not weights). A tensor stored twice is an error.
    pub fn from_loaded(
        files: Vec<LoadedTensors>,
        rename: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let mut all = TensorMap {
            tensors: BTreeMap::new(),
        };
        for file in files {
            for (stored, tensor) in file.tensors {
                let Some(name) = rename(&stored) else {
                    continue;
                };
                if all.tensors.insert(name.clone(), tensor).is_some() {
                    return Err(ModelError::Safetensors(format!(
                        "the tensor `{name}` is stored twice"
                    )));
                }
            }
        }
        Ok(all)
    }

    /// Adds a tensor (a loader's rearrangement of stored ones).
    pub fn insert(&mut self, name: String, shape: Vec<usize>, values: Weights) {
        self.tensors.insert(name, (shape, values));
    }

    /// Drops the tensor `name` if it is there.
    pub fn remove(&mut self, name: &str) {
        self.tensors.remove(name);
    }

    /// Removes the tensor `name`, checking that its shape is `shape`.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<Weights> {
        self.take_optional(name, shape)?
            .ok_or_else(|| ModelError::MissingTensor(name.to_string()))
    }

    /// Like [`take`](Self::take), but a missing tensor is `None`.
    pub fn take_optional(&mut self, name: &str, shape: &[usize]) -> Result<Option<Weights>> {
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

/// Stored values of `dtype`: F32, F16 and BF16 as they are, F64 rounded to `f32`.
fn decode(name: &str, dtype: Dtype, data: &[u8]) -> Result<Weights> {
    let values = match dtype {
        Dtype::F32 => Weights::F32(
            data.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ),
        Dtype::F16 => Weights::F16(
            data.chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]))
                .collect(),
        ),
        Dtype::BF16 => Weights::Bf16(
            data.chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]))
                .collect(),
        ),
        Dtype::F64 => Weights::F32(
            data.chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("chunk of 8")) as f32)
                .collect(),
        ),
        other => {
            return Err(ModelError::Dtype {
                name: name.to_string(),
                dtype: format!("{other:?}"),
            })
        }
    };
    Ok(values)
}

/// Serialises tensors (name, shape, values in their precision) and string metadata as
/// safetensors bytes.
pub(crate) fn write_tensors(
    tensors: &[(String, Vec<usize>, TensorRef<'_>)],
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, values)| values.to_le_bytes())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, values), data)| {
            let dtype = match values.precision() {
                Precision::F32 => Dtype::F32,
                Precision::F16 => Dtype::F16,
                Precision::Bf16 => Dtype::BF16,
            };
            TensorView::new(dtype, shape.clone(), data).map(|view| (name.clone(), view))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(safetensors::serialize(views, Some(metadata))?)
}

/// Where one tensor's bytes lie in a file being read.
#[derive(Clone, Debug)]
struct Entry {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    /// Absolute offsets in the file, `begin..end`.
    begin: u64,
    end: u64,
}

/// What a safetensors header declares, known as soon as the header has arrived: enough to decide
/// whether the model fits before its weights are read.
#[derive(Clone, Debug, Default)]
pub struct Declared {
    /// Values over every tensor.
    pub values: u64,
    /// The most values in one tensor.
    pub largest: u64,
    /// The whole file's length.
    pub file_bytes: u64,
    /// Bytes once loaded (see [`Declared::memory_bytes`]).
    memory: u64,
}

impl Declared {
    /// Bytes the tensors take once widened to `f32`.
    pub fn f32_bytes(&self) -> u64 {
        4 * self.values
    }

    /// Bytes the tensors take in memory once loaded: 16-bit values stay 16-bit, f64 ones become
    /// `f32`.
    pub fn memory_bytes(&self) -> u64 {
        self.memory
    }
}

/// A safetensors file read as it arrives (a browser reads a picked file in chunks): each tensor
/// is decoded as soon as its bytes are in and its raw bytes are dropped, so the file is
/// never held whole. The result is the same as [`LoadedTensors::from_bytes`] on the whole file.
#[derive(Debug, Default)]
pub struct TensorStream {
    /// Bytes received and not yet used.
    pending: Vec<u8>,
    /// Absolute offset of `pending[0]` in the file.
    offset: u64,
    /// The header's entries, by offset, once the header is in.
    entries: Option<Vec<Entry>>,
    next: usize,
    declared: Option<Declared>,
    done: LoadedTensors,
}

/// The largest header this reader accepts (the safetensors format's own limit).
const MAX_HEADER: u64 = 100_000_000;

impl TensorStream {
    pub fn new() -> Self {
        Self::default()
    }

    /// What the header declares, once it has arrived.
    pub fn declared(&self) -> Option<&Declared> {
        self.declared.as_ref()
    }

    /// Takes the next piece of the file.
    pub fn push(&mut self, bytes: &[u8]) -> Result<()> {
        self.pending.extend_from_slice(bytes);
        if self.entries.is_none() && !self.read_header()? {
            return Ok(());
        }
        let entries = self.entries.as_ref().expect("the header was read");
        while let Some(entry) = entries.get(self.next) {
            let end = (entry.end - self.offset) as usize;
            if self.pending.len() < end {
                break;
            }
            let start = (entry.begin - self.offset) as usize;
            let values = decode(&entry.name, entry.dtype, &self.pending[start..end])?;
            self.done
                .tensors
                .insert(entry.name.clone(), (entry.shape.clone(), values));
            self.pending.drain(..end);
            self.offset = entry.end;
            self.next += 1;
        }
        Ok(())
    }

    /// The tensors, once the whole file has been pushed.
    pub fn finish(self) -> Result<LoadedTensors> {
        let Some(entries) = &self.entries else {
            return Err(ModelError::Safetensors(
                "the file ends inside its header".into(),
            ));
        };
        if let Some(entry) = entries.get(self.next) {
            return Err(ModelError::Safetensors(format!(
                "the file ends before the tensor `{}` is complete",
                entry.name
            )));
        }
        Ok(self.done)
    }

    /// Parses the header once all of it is in; `false` while it is not.
    fn read_header(&mut self) -> Result<bool> {
        let bad = |m: String| ModelError::Safetensors(m);
        if self.pending.len() < 8 {
            return Ok(false);
        }
        let n = u64::from_le_bytes(self.pending[..8].try_into().expect("8 bytes"));
        if n > MAX_HEADER {
            return Err(bad(format!("the header claims {n} bytes")));
        }
        if (self.pending.len() as u64) < 8 + n {
            return Ok(false);
        }
        let header: BTreeMap<String, serde_json::Value> =
            serde_json::from_slice(&self.pending[8..8 + n as usize])
                .map_err(|e| bad(format!("the header is not JSON: {e}")))?;
        let data_start = 8 + n;
        let mut entries = Vec::new();
        let mut declared = Declared::default();
        for (name, info) in header {
            if name == "__metadata__" {
                self.done.metadata = serde_json::from_value(info)
                    .map_err(|e| bad(format!("__metadata__ is not a map of strings: {e}")))?;
                continue;
            }
            let field = |key: &str| info.get(key).cloned().unwrap_or_default();
            let dtype_name = field("dtype").as_str().unwrap_or_default().to_string();
            let dtype = match dtype_name.as_str() {
                "F32" => Dtype::F32,
                "F16" => Dtype::F16,
                "BF16" => Dtype::BF16,
                "F64" => Dtype::F64,
                _ => {
                    return Err(ModelError::Dtype {
                        name,
                        dtype: dtype_name,
                    })
                }
            };
            let shape: Vec<usize> = serde_json::from_value(field("shape"))
                .map_err(|_| bad(format!("the shape of `{name}` is not a list of sizes")))?;
            let (begin, end): (u64, u64) = serde_json::from_value(field("data_offsets"))
                .map_err(|_| bad(format!("the offsets of `{name}` are not two numbers")))?;
            let values = shape.iter().map(|&d| d as u64).product::<u64>();
            if end < begin || end - begin != values * (dtype.bitsize() / 8) as u64 {
                return Err(bad(format!(
                    "`{name}` declares {} bytes for {values} values of {dtype_name}",
                    end.saturating_sub(begin)
                )));
            }
            declared.values += values;
            declared.memory += values * if dtype.bitsize() == 16 { 2 } else { 4 };
            declared.largest = declared.largest.max(values);
            declared.file_bytes = declared.file_bytes.max(data_start + end);
            entries.push(Entry {
                name,
                dtype,
                shape,
                begin: data_start + begin,
                end: data_start + end,
            });
        }
        entries.sort_by_key(|e| e.begin);
        if let Some(pair) = entries.windows(2).find(|w| w[1].begin < w[0].end) {
            return Err(bad(format!(
                "the tensors `{}` and `{}` overlap",
                pair[0].name, pair[1].name
            )));
        }
        declared.file_bytes = declared.file_bytes.max(data_start);
        self.pending.drain(..data_start as usize);
        self.offset = data_start;
        self.entries = Some(entries);
        self.declared = Some(declared);
        Ok(true)
    }
}
