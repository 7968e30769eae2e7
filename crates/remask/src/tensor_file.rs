//! The one reader and the one writer of safetensors files: checkpoints (`model.safetensors`,
//! `optimizer.safetensors`), Hugging Face import and export, and `remask forward`'s inputs and
//! outputs all go through here.
//!
//! Format: an 8-byte little-endian header length, a JSON header (`name → {dtype, shape,
//! data_offsets}` plus `__metadata__`) padded with spaces to a multiple of 8, then the raw
//! little-endian data. The writer lays the data out in the order given and the header's keys in
//! sorted order, so the same tensors always give the same bytes.
//!
//! Dtype rules are the callers', stated where they read: [`read_safetensors`] returns what a file
//! holds (floats widened to f32, integers to i64); a checkpoint accepts only F32 ([`read_f32`]),
//! Hugging Face weights any float ([`StoredTensor::to_f32`]), `forward`'s ids only integers.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::{Error, Result};

/// The elements of one stored tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// One tensor read from a safetensors file.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredTensor {
    pub shape: Vec<usize>,
    pub data: TensorData,
    /// The dtype in the file (before widening).
    pub dtype: Dtype,
}

impl StoredTensor {
    /// The elements as f32 (integers converted).
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            TensorData::F32(v) => v.clone(),
            TensorData::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// The elements as i64 (floats truncated).
    pub fn to_i64(&self) -> Vec<i64> {
        match &self.data {
            TensorData::F32(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::I64(v) => v.clone(),
        }
    }
}

fn convert(path: &Path, name: &str, view: &TensorView<'_>) -> Result<StoredTensor> {
    let b = view.data();
    let f32s =
        |w: usize, f: &dyn Fn(&[u8]) -> f32| TensorData::F32(b.chunks_exact(w).map(f).collect());
    let i64s =
        |w: usize, f: &dyn Fn(&[u8]) -> i64| TensorData::I64(b.chunks_exact(w).map(f).collect());
    let data = match view.dtype() {
        Dtype::F32 => f32s(4, &|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        Dtype::F64 => f32s(8, &|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32),
        Dtype::F16 => f32s(2, &|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))),
        Dtype::BF16 => f32s(2, &|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16)),
        Dtype::I64 => i64s(8, &|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))),
        Dtype::I32 => i64s(4, &|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64),
        Dtype::U8 => i64s(1, &|c| c[0] as i64),
        Dtype::BOOL => i64s(1, &|c| (c[0] != 0) as i64),
        other => {
            return Err(Error::data(path, format!("tensor `{name}` has dtype {other:?}; supported: F32, F64, F16, BF16, I64, I32, U8, BOOL")))
        }
    };
    Ok(StoredTensor {
        shape: view.shape().to_vec(),
        data,
        dtype: view.dtype(),
    })
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let mant = (h & 0x3ff) as u32;
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: value = m · 2^-24.
            return f32::from_bits(sign)
                + (if sign != 0 { -1.0 } else { 1.0 }) * m as f32 * (2.0f32).powi(-24);
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// Reads every tensor of a safetensors file (floats as f32, integers as i64).
pub fn read_safetensors(path: &Path) -> Result<HashMap<String, StoredTensor>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse(path, &bytes)
}

/// [`read_safetensors`] of bytes already in memory; `path` names them in errors.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<HashMap<String, StoredTensor>> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| Error::data(path, format!("not a valid safetensors file: {e}")))?;
    st.iter()
        .map(|(name, view)| Ok((name.to_string(), convert(path, name, &view)?)))
        .collect()
}

/// Reads a file that must hold only F32 tensors (a checkpoint's): name → (shape, values).
pub fn read_f32(path: &Path) -> Result<BTreeMap<String, (Vec<usize>, Vec<f32>)>> {
    let mut out = BTreeMap::new();
    for (name, t) in read_safetensors(path)? {
        match t.data {
            TensorData::F32(v) if t.dtype == Dtype::F32 => {
                out.insert(name, (t.shape, v));
            }
            _ => {
                return Err(Error::data(
                    path,
                    format!("tensor `{name}` is {:?}, expected F32", t.dtype),
                ))
            }
        }
    }
    Ok(out)
}

/// The elements of a tensor to write.
#[derive(Clone, Copy, Debug)]
pub enum Elements<'a> {
    F32(&'a [f32]),
    I64(&'a [i64]),
}

impl Elements<'_> {
    fn dtype(&self) -> &'static str {
        match self {
            Elements::F32(_) => "F32",
            Elements::I64(_) => "I64",
        }
    }

    fn len(&self) -> usize {
        match self {
            Elements::F32(v) => v.len(),
            Elements::I64(v) => v.len(),
        }
    }

    fn byte_len(&self) -> usize {
        match self {
            Elements::F32(v) => v.len() * 4,
            Elements::I64(v) => v.len() * 8,
        }
    }

    fn extend(&self, out: &mut Vec<u8>) {
        match self {
            Elements::F32(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Elements::I64(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        }
    }
}

/// One tensor to write: name, shape, elements.
pub type TensorRef<'a> = (&'a str, &'a [usize], Elements<'a>);

/// Serializes tensors in the safetensors format (see the module docs), data in the given order,
/// with `__metadata__ = {"format": "pt"}` (what `transformers` expects of PyTorch weights). Errors
/// when a shape does not match its element count or a name repeats.
pub fn to_bytes(tensors: &[TensorRef<'_>]) -> Result<Vec<u8>> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({ "format": "pt" }));
    let mut offset = 0usize;
    for (name, shape, data) in tensors {
        let numel: usize = shape.iter().product();
        if numel != data.len() {
            return Err(Error::shape(
                *name,
                format!("{numel} elements for shape {shape:?}"),
                format!("{} elements", data.len()),
            ));
        }
        let end = offset + data.byte_len();
        let entry = serde_json::json!({ "dtype": data.dtype(), "shape": shape, "data_offsets": [offset, end] });
        if header.insert(name.to_string(), entry).is_some() || *name == "__metadata__" {
            return Err(Error::Other(format!(
                "tensor name `{name}` is used twice or reserved"
            )));
        }
        offset = end;
    }
    let mut h = serde_json::Value::Object(header).to_string().into_bytes();
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + h.len() + offset);
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    for (_, _, data) in tensors {
        data.extend(&mut out);
    }
    Ok(out)
}

/// Writes tensors to `path` atomically: a temporary name beside it, fsynced, then renamed, so a
/// reader sees the old file or the whole new one.
pub fn write(path: &Path, tensors: &[TensorRef<'_>]) -> Result<()> {
    let bytes = to_bytes(tensors)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        use std::io::Write;
        f.write_all(&bytes)?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the checkpoint byte layout: header keys sorted, data in the given order, header padded
    /// with spaces to 8 bytes, and the safetensors crate reads it back.
    #[test]
    fn writer_layout_and_round_trip() {
        let a = [1.0f32, -2.5, 3.25, 0.0, 5.0, 6.0];
        let ids = [7i64, -1, 1 << 40];
        let bytes = to_bytes(&[
            ("z.first", &[2, 3], Elements::F32(&a)),
            ("a.second", &[3], Elements::I64(&ids)),
        ])
        .unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!(n % 8, 0);
        let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
        assert_eq!(
            header.trim_end(),
            r#"{"__metadata__":{"format":"pt"},"a.second":{"data_offsets":[24,48],"dtype":"I64","shape":[3]},"z.first":{"data_offsets":[0,24],"dtype":"F32","shape":[2,3]}}"#
        );
        assert_eq!(
            f32::from_le_bytes(bytes[8 + n..12 + n].try_into().unwrap()),
            1.0,
            "data in the given order"
        );
        let back = parse(Path::new("mem"), &bytes).unwrap();
        assert_eq!(
            back["z.first"],
            StoredTensor {
                shape: vec![2, 3],
                data: TensorData::F32(a.to_vec()),
                dtype: Dtype::F32
            }
        );
        assert_eq!(back["a.second"].to_i64(), ids);
        let st = SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.tensor("a.second").unwrap().dtype(), Dtype::I64);
    }

    #[test]
    fn writer_refuses_bad_shapes_and_duplicate_names() {
        let a = [1.0f32; 4];
        assert!(to_bytes(&[("x", &[3], Elements::F32(&a))]).is_err());
        assert!(to_bytes(&[
            ("x", &[4], Elements::F32(&a)),
            ("x", &[4], Elements::F32(&a))
        ])
        .is_err());
        assert!(to_bytes(&[("__metadata__", &[4], Elements::F32(&a))]).is_err());
    }

    #[test]
    fn strict_f32_reader_refuses_other_dtypes_and_write_is_atomic() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("t.safetensors");
        write(&p, &[("ids", &[2], Elements::I64(&[1, 2]))]).unwrap();
        let e = read_f32(&p).unwrap_err().to_string();
        assert!(e.contains("`ids`") && e.contains("expected F32"), "{e}");
        write(&p, &[("w", &[2], Elements::F32(&[1.0, 2.0]))]).unwrap();
        assert_eq!(read_f32(&p).unwrap()["w"], (vec![2], vec![1.0, 2.0]));
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("t.safetensors")],
            "no temporary file left"
        );
        let e = read_safetensors(&tmp.path().join("missing.safetensors"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.safetensors"), "{e}");
    }
}
