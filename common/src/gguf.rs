//! Checks a GGUF model file's header and size before llama.cpp opens it, so a wrong,
//! truncated or corrupt file is a clear error naming the file rather than an abort.
//!
//! Only the header is read (metadata and tensor infos, a few MB at most); the tensor
//! data is never touched, its expected extent is computed from the tensor infos.

mod error;
mod reader;
mod types;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

pub use error::ModelFileError;
pub use types::{GgmlType, ftype_name, ggml_type, tensor_bytes};

use reader::HeaderReader;

/// Tensor data alignment when the file has no `general.alignment` key.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// GGUF versions accepted; version 1 (u32 counts) was dropped by llama.cpp too.
pub const SUPPORTED_VERSIONS: [u32; 2] = [2, 3];
/// Magic, version, tensor count and metadata count: the smallest valid file.
const PREAMBLE_BYTES: u64 = 24;
/// ggml tensors have at most four dimensions.
const GGML_MAX_DIMS: u32 = 4;
/// Smallest encodings, used to reject counts no file of this size could hold.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;

/// What a valid GGUF file contains, as far as NetMoE cares.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufSummary {
    /// The file inspected.
    pub path: PathBuf,
    /// Its size on disk.
    pub size_bytes: u64,
    /// GGUF format version (2 or 3).
    pub version: u32,
    /// `general.architecture`, e.g. `gemma3`; llama.cpp needs it to build the graph.
    pub architecture: Option<String>,
    /// `general.name`, the human model name.
    pub name: Option<String>,
    /// `general.file_type`, llama.cpp's `llama_ftype` number.
    pub file_type: Option<u32>,
    /// [`GgufSummary::file_type`] as llama.cpp names it, e.g. `Q4_K - Medium`.
    pub quantization: Option<String>,
    /// `<arch>.context_length`: the longest context the model was trained for.
    pub context_length: Option<u64>,
    /// Number of tensors in the file.
    pub tensor_count: u64,
    /// Number of metadata key/value pairs.
    pub metadata_count: u64,
    /// Byte offset where tensor data starts (header end rounded up to the alignment).
    pub data_offset: u64,
    /// Bytes of tensor data the header accounts for: the end of the last tensor,
    /// relative to `data_offset` (unknown-type tensors not counted).
    pub data_bytes: u64,
    /// Tensors whose ggml type this code does not know; their size was not checked.
    pub unchecked_tensors: Vec<UncheckedTensor>,
}

/// A tensor skipped by the size check because its ggml type id is unknown here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UncheckedTensor {
    /// Tensor name.
    pub name: String,
    /// Its ggml type id.
    pub ggml_type: u32,
}

impl fmt::Display for GgufSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unknown = "unknown";
        write!(
            f,
            "{} ({}, {}, {} tensors, {:.1} MB, GGUF v{})",
            self.name.as_deref().unwrap_or(unknown),
            self.architecture.as_deref().unwrap_or(unknown),
            self.quantization.as_deref().unwrap_or(unknown),
            self.tensor_count,
            self.size_bytes as f64 / 1e6,
            self.version,
        )
    }
}

/// A metadata value, kept only in the forms the summary needs.
enum Value {
    Uint(u64),
    Int(i64),
    Str(String),
    Other,
}

impl Value {
    fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Uint(v) => Some(v),
            Value::Int(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
}

/// Byte size of a fixed-size GGUF metadata value type; `None` for string/array/unknown.
fn scalar_size(ty: u32) -> Option<u64> {
    match ty {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

const GGUF_TYPE_STRING: u32 = 8;
const GGUF_TYPE_ARRAY: u32 = 9;

/// Validates the GGUF file at `path` and summarises it.
///
/// Checks, in order: the file exists and is a regular file, the magic, the version, the
/// whole header (every metadata value and tensor info), and that the file is long
/// enough to hold every tensor the header lists.
pub fn inspect_gguf(path: &Path) -> Result<GgufSummary, ModelFileError> {
    let (file, size) = open_gguf(path)?;
    let mut r = HeaderReader::new(file, size, path);
    r.array::<4>()?;
    let version = r.u32()?;
    if !SUPPORTED_VERSIONS.contains(&version) {
        let note = if version.swap_bytes() <= 3 {
            "; this file is big-endian, convert it to little-endian".to_owned()
        } else {
            String::new()
        };
        return Err(ModelFileError::UnsupportedVersion {
            path: path.to_owned(),
            version,
            note,
        });
    }
    let tensor_count = r.u64()?;
    let metadata_count = r.u64()?;
    if metadata_count > size / MIN_KV_BYTES {
        return Err(r.malformed(format!(
            "claims {metadata_count} metadata entries, more than a {size}-byte file can hold"
        )));
    }
    if tensor_count > size / MIN_TENSOR_INFO_BYTES {
        return Err(r.malformed(format!(
            "claims {tensor_count} tensors, more than a {size}-byte file can hold"
        )));
    }

    let metadata = read_metadata(&mut r, metadata_count)?;
    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => match v.as_u64() {
            Some(a) if a.is_power_of_two() => a,
            _ => return Err(r.malformed("general.alignment is not a power-of-two integer")),
        },
    };
    let (data_end, unchecked_tensors) = read_tensor_infos(&mut r, tensor_count, alignment)?;

    let header_end = r.pos();
    let data_offset = header_end.div_ceil(alignment) * alignment;
    let expected = if tensor_count == 0 {
        header_end
    } else {
        data_offset.saturating_add(data_end)
    };
    if size < expected {
        return Err(ModelFileError::Truncated {
            path: path.to_owned(),
            expected,
            actual: size,
        });
    }

    let string = |key: &str| match metadata.get(key) {
        Some(Value::Str(s)) => Some(s.clone()),
        _ => None,
    };
    let architecture = string("general.architecture");
    let file_type = metadata
        .get("general.file_type")
        .and_then(Value::as_u64)
        .and_then(|v| u32::try_from(v).ok());
    let context_length = architecture
        .as_ref()
        .and_then(|arch| metadata.get(&format!("{arch}.context_length")))
        .and_then(Value::as_u64);
    Ok(GgufSummary {
        path: path.to_owned(),
        size_bytes: size,
        version,
        name: string("general.name"),
        quantization: file_type.and_then(ftype_name),
        architecture,
        file_type,
        context_length,
        tensor_count,
        metadata_count,
        data_offset,
        data_bytes: data_end,
        unchecked_tensors,
    })
}

/// Opens `path` after checking it is a regular file that starts with the GGUF magic and
/// holds at least the fixed preamble; returns the file (at offset 0) and its size.
fn open_gguf(path: &Path) -> Result<(File, u64), ModelFileError> {
    let unreadable = |source| ModelFileError::Unreadable {
        path: path.to_owned(),
        source,
    };
    let meta = match fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ModelFileError::NotFound {
                path: path.to_owned(),
            });
        }
        Err(e) => return Err(unreadable(e)),
        Ok(meta) => meta,
    };
    if !meta.is_file() {
        return Err(ModelFileError::NotAFile {
            path: path.to_owned(),
        });
    }
    let size = meta.len();
    let mut file = File::open(path).map_err(unreadable)?;
    // 64 bytes are enough to recognise what a wrong file is (HTML, LFS pointer, ...).
    let mut head = Vec::with_capacity(64);
    file.by_ref()
        .take(64)
        .read_to_end(&mut head)
        .map_err(unreadable)?;
    if head.len() >= 4 && head[..4] != GGUF_MAGIC {
        let (found, hint) = error::describe_magic(&head);
        return Err(ModelFileError::BadMagic {
            path: path.to_owned(),
            found,
            hint,
        });
    }
    if size < PREAMBLE_BYTES {
        return Err(ModelFileError::TooSmall {
            path: path.to_owned(),
            size,
            min: PREAMBLE_BYTES,
        });
    }
    file.seek(SeekFrom::Start(0)).map_err(unreadable)?;
    Ok((file, size))
}

/// Reads `count` tensor infos; returns where the last known-type tensor's data ends
/// (relative to the data section) and the tensors whose type is unknown.
fn read_tensor_infos(
    r: &mut HeaderReader<'_>,
    count: u64,
    alignment: u64,
) -> Result<(u64, Vec<UncheckedTensor>), ModelFileError> {
    let mut data_end = 0u64;
    let mut unchecked = Vec::new();
    let mut names = HashSet::new();
    for _ in 0..count {
        let name = r.string("tensor name")?;
        if names.contains(&name) {
            return Err(r.malformed(format!("duplicate tensor name `{name}`")));
        }
        let n_dims = r.u32()?;
        if n_dims > GGML_MAX_DIMS {
            return Err(r.malformed(format!(
                "tensor `{name}` has {n_dims} dimensions, ggml allows {GGML_MAX_DIMS}"
            )));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(r.u64()?);
        }
        let ty = r.u32()?;
        let offset = r.u64()?;
        if offset % alignment != 0 {
            return Err(r.malformed(format!(
                "tensor `{name}` data offset {offset} is not a multiple of the alignment {alignment}"
            )));
        }
        match ggml_type(ty) {
            Some(t) => {
                let end = tensor_bytes(t, &dims)
                    .and_then(|bytes| offset.checked_add(bytes))
                    .ok_or_else(|| {
                        r.malformed(format!(
                            "tensor `{name}` of type {} has dimensions {dims:?}: not a whole number of {}-element blocks, or too large",
                            t.name, t.block_size
                        ))
                    })?;
                data_end = data_end.max(end);
            }
            None => unchecked.push(UncheckedTensor {
                name: name.clone(),
                ggml_type: ty,
            }),
        }
        names.insert(name);
    }
    Ok((data_end, unchecked))
}

/// Reads `count` metadata key/value pairs, keeping the scalar and string values.
fn read_metadata(
    r: &mut HeaderReader<'_>,
    count: u64,
) -> Result<HashMap<String, Value>, ModelFileError> {
    let mut metadata = HashMap::new();
    for _ in 0..count {
        let key = r.string("metadata key")?;
        let ty = r.u32()?;
        let value = read_value(r, ty, &key)?;
        if metadata.insert(key.clone(), value).is_some() {
            return Err(r.malformed(format!("duplicate metadata key `{key}`")));
        }
    }
    Ok(metadata)
}

/// Reads one metadata value of GGUF type `ty`; arrays are skipped element by element.
fn read_value(r: &mut HeaderReader<'_>, ty: u32, key: &str) -> Result<Value, ModelFileError> {
    Ok(match ty {
        0 => Value::Uint(r.array::<1>()?[0].into()),
        1 => Value::Int(i8::from_le_bytes(r.array()?).into()),
        2 => Value::Uint(u16::from_le_bytes(r.array()?).into()),
        3 => Value::Int(i16::from_le_bytes(r.array()?).into()),
        4 => Value::Uint(r.u32()?.into()),
        5 => Value::Int(i32::from_le_bytes(r.array()?).into()),
        10 => Value::Uint(r.u64()?),
        11 => Value::Int(i64::from_le_bytes(r.array()?)),
        6 | 7 | 12 => {
            r.skip(scalar_size(ty).unwrap_or(0))?;
            Value::Other
        }
        GGUF_TYPE_STRING => Value::Str(r.string(&format!("value of `{key}`"))?),
        GGUF_TYPE_ARRAY => {
            skip_array(r, key)?;
            Value::Other
        }
        _ => return Err(r.malformed(format!("metadata key `{key}` has unknown value type {ty}"))),
    })
}

/// Skips an array value, checking its claimed length against the file size first.
fn skip_array(r: &mut HeaderReader<'_>, key: &str) -> Result<(), ModelFileError> {
    let elem = r.u32()?;
    let len = r.u64()?;
    let too_long = |r: &HeaderReader<'_>| {
        r.malformed(format!(
            "array `{key}` claims {len} elements, more than the file can hold"
        ))
    };
    match elem {
        GGUF_TYPE_STRING => {
            if len > r.size() / 8 {
                return Err(too_long(r));
            }
            for _ in 0..len {
                r.skip_string(&format!("an element of `{key}`"))?;
            }
            Ok(())
        }
        GGUF_TYPE_ARRAY => Err(r.malformed(format!(
            "array `{key}` holds arrays, which GGUF readers do not support"
        ))),
        _ => {
            let size = scalar_size(elem).ok_or_else(|| {
                r.malformed(format!("array `{key}` has unknown element type {elem}"))
            })?;
            match len.checked_mul(size) {
                Some(bytes) if bytes <= r.size() => r.skip(bytes),
                _ => Err(too_long(r)),
            }
        }
    }
}

#[cfg(test)]
mod tests;
