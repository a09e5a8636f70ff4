//! A weight tensor's values in the precision its file stored them in.
//!
//! Checkpoints of the families people study are stored in 16 bits (f16 or bf16). Widening them
//! all to `f32` on load doubles what the page must hold (a 360 M-parameter model would take
//! 1.44 GB instead of 0.72 GB), so the large matrices — the dense layers, the token embedding and
//! an untied LM head — keep their stored precision and are widened where they are used, one
//! matrix (or one block of rows) at a time. Compute is always `f32`. Small tensors (norms,
//! biases, position embeddings) are widened on load.

use std::borrow::Cow;

use half::{bf16, f16};

/// The precision a [`Weights`] holds its values in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Precision {
    F32,
    F16,
    Bf16,
}

impl Precision {
    /// Bytes per value.
    pub fn bytes(self) -> usize {
        match self {
            Precision::F32 => 4,
            Precision::F16 | Precision::Bf16 => 2,
        }
    }

    /// How the page and the CLI name it: `f32`, `f16`, `bf16`.
    pub fn label(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        }
    }

    /// The safetensors name of the dtype (`F32`, `F16`, `BF16`).
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "F32",
            Precision::F16 => "F16",
            Precision::Bf16 => "BF16",
        }
    }
}

/// The values of one weight tensor, kept in their stored precision.
#[derive(Clone, Debug, PartialEq)]
pub enum Weights {
    F32(Vec<f32>),
    F16(Vec<f16>),
    Bf16(Vec<bf16>),
}

impl From<Vec<f32>> for Weights {
    fn from(values: Vec<f32>) -> Self {
        Weights::F32(values)
    }
}

impl Default for Weights {
    fn default() -> Self {
        Weights::F32(Vec::new())
    }
}

impl Weights {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Weights::F32(v) => v.len(),
            Weights::F16(v) => v.len(),
            Weights::Bf16(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The precision the values are held in.
    pub fn precision(&self) -> Precision {
        match self {
            Weights::F32(_) => Precision::F32,
            Weights::F16(_) => Precision::F16,
            Weights::Bf16(_) => Precision::Bf16,
        }
    }

    /// Bytes the values take in memory.
    pub fn byte_len(&self) -> usize {
        self.len() * self.precision().bytes()
    }

    /// The values as `f32`: borrowed when they are `f32` already, otherwise widened into a new
    /// vector (exactly: every f16 and bf16 value is an f32 value).
    pub fn f32(&self) -> Cow<'_, [f32]> {
        match self {
            Weights::F32(v) => Cow::Borrowed(v),
            _ => Cow::Owned(self.range_f32(0..self.len())),
        }
    }

    /// The values `range` as `f32` (a block of rows of a matrix, one embedding row).
    pub fn range_f32(&self, range: std::ops::Range<usize>) -> Vec<f32> {
        match self {
            Weights::F32(v) => v[range].to_vec(),
            Weights::F16(v) => v[range].iter().map(|x| x.to_f32()).collect(),
            Weights::Bf16(v) => v[range].iter().map(|x| x.to_f32()).collect(),
        }
    }

    /// Every value as `f32`, consuming the tensor.
    pub fn into_f32(self) -> Vec<f32> {
        match self {
            Weights::F32(v) => v,
            other => other.f32().into_owned(),
        }
    }

    /// The values for editing (a variant that rewrites a projection, a test that plants a
    /// circuit): widened to `f32` in place first if they are 16-bit.
    pub fn make_f32(&mut self) -> &mut Vec<f32> {
        if !matches!(self, Weights::F32(_)) {
            *self = Weights::F32(std::mem::take(self).into_f32());
        }
        match self {
            Weights::F32(v) => v,
            _ => unreachable!("widened above"),
        }
    }

    /// The values rearranged by `pick`, which lists for each output position the index of the
    /// input value it takes (a transpose, a split of a fused projection), in the same precision.
    pub fn gather(&self, pick: impl Iterator<Item = usize>) -> Weights {
        match self {
            Weights::F32(v) => Weights::F32(pick.map(|i| v[i]).collect()),
            Weights::F16(v) => Weights::F16(pick.map(|i| v[i]).collect()),
            Weights::Bf16(v) => Weights::Bf16(pick.map(|i| v[i]).collect()),
        }
    }

    /// The values as little-endian bytes in their precision (what a safetensors file stores).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match self {
            Weights::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Weights::F16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Weights::Bf16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }

    /// The 16-bit values packed two to a `u32` (value `2i` in the low half), padded with a zero
    /// to an even count: how the GPU engine stores 16-bit weights. `None` for `f32` values.
    pub fn packed_u32(&self) -> Option<Vec<u32>> {
        let bits: Vec<u16> = match self {
            Weights::F32(_) => return None,
            Weights::F16(v) => v.iter().map(|x| x.to_bits()).collect(),
            Weights::Bf16(v) => v.iter().map(|x| x.to_bits()).collect(),
        };
        Some(
            bits.chunks(2)
                .map(|pair| pair[0] as u32 | (pair.get(1).copied().unwrap_or(0) as u32) << 16)
                .collect(),
        )
    }

    /// The values rounded to `precision` (to store a model in 16 bits, or to widen it).
    pub fn to_precision(&self, precision: Precision) -> Weights {
        if precision == self.precision() {
            return self.clone();
        }
        let values = self.f32();
        match precision {
            Precision::F32 => Weights::F32(values.into_owned()),
            Precision::F16 => Weights::F16(values.iter().map(|&x| f16::from_f32(x)).collect()),
            Precision::Bf16 => Weights::Bf16(values.iter().map(|&x| bf16::from_f32(x)).collect()),
        }
    }
}

/// One of a model's tensors as it is held: a [`Weights`] (the large matrices) or plain `f32`
/// (norms, biases, position embeddings).
#[derive(Clone, Copy, Debug)]
pub enum TensorRef<'a> {
    Stored(&'a Weights),
    F32(&'a [f32]),
}

impl<'a> From<&'a Weights> for TensorRef<'a> {
    fn from(w: &'a Weights) -> Self {
        TensorRef::Stored(w)
    }
}

impl<'a> From<&'a Vec<f32>> for TensorRef<'a> {
    fn from(v: &'a Vec<f32>) -> Self {
        TensorRef::F32(v)
    }
}

/// Equal when the precision and every value are.
impl PartialEq for TensorRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.precision() == other.precision() && self.f32() == other.f32()
    }
}

impl<'a> TensorRef<'a> {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            TensorRef::Stored(w) => w.len(),
            TensorRef::F32(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The precision the values are held in.
    pub fn precision(&self) -> Precision {
        match self {
            TensorRef::Stored(w) => w.precision(),
            TensorRef::F32(_) => Precision::F32,
        }
    }

    /// Bytes the values take in memory.
    pub fn byte_len(&self) -> usize {
        self.len() * self.precision().bytes()
    }

    /// The values as `f32` (borrowed when they are `f32`).
    pub fn f32(&self) -> Cow<'a, [f32]> {
        match *self {
            TensorRef::Stored(w) => w.f32(),
            TensorRef::F32(v) => Cow::Borrowed(v),
        }
    }

    /// The values as little-endian bytes in their precision.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match self {
            TensorRef::Stored(w) => w.to_le_bytes(),
            TensorRef::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widening_is_exact_and_editing_widens_in_place() {
        let stored = Weights::F32(vec![1.5, -0.25, 3.0]).to_precision(Precision::F16);
        assert_eq!(stored.precision(), Precision::F16);
        assert_eq!(stored.byte_len(), 6);
        assert_eq!(stored.f32().as_ref(), &[1.5, -0.25, 3.0]);
        let mut edited = stored.clone();
        edited.make_f32()[1] = 7.0;
        assert_eq!(edited, Weights::F32(vec![1.5, 7.0, 3.0]));
    }

    #[test]
    fn packing_puts_even_values_in_the_low_half_and_pads_odd_counts() {
        let w = Weights::Bf16(vec![bf16::from_f32(1.0), bf16::from_f32(-2.0), bf16::ONE]);
        let packed = w.packed_u32().unwrap();
        assert_eq!(packed.len(), 2);
        assert_eq!(packed[0] & 0xffff, bf16::from_f32(1.0).to_bits() as u32);
        assert_eq!(packed[0] >> 16, bf16::from_f32(-2.0).to_bits() as u32);
        assert_eq!(packed[1] >> 16, 0);
        assert!(Weights::F32(vec![1.0]).packed_u32().is_none());
    }

    #[test]
    fn gather_keeps_the_precision() {
        let w = Weights::F32(vec![1.0, 2.0, 3.0, 4.0]).to_precision(Precision::Bf16);
        let t = w.gather([0, 2, 1, 3].into_iter());
        assert_eq!(t.precision(), Precision::Bf16);
        assert_eq!(t.f32().as_ref(), &[1.0, 3.0, 2.0, 4.0]);
    }
}
