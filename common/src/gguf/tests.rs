//! Tests of GGUF inspection on small synthetic files (and the real model when cached).

use super::*;

/// A metadata value for the test writer.
enum Kv {
    U32(u32),
    Str(&'static str),
    StrArray(&'static [&'static str]),
    F32Array(Vec<f32>),
}

/// A minimal GGUF writer: enough of the format to build valid and broken files.
struct Writer {
    version: u32,
    kvs: Vec<(&'static str, Kv)>,
    /// (name, dims, ggml type, data bytes)
    tensors: Vec<(&'static str, Vec<u64>, u32, usize)>,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

impl Writer {
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(b"GGUF");
        out.extend(self.version.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.kvs.len() as u64).to_le_bytes());
        for (key, value) in &self.kvs {
            put_str(&mut out, key);
            match value {
                Kv::U32(v) => {
                    out.extend(4u32.to_le_bytes());
                    out.extend(v.to_le_bytes());
                }
                Kv::Str(s) => {
                    out.extend(8u32.to_le_bytes());
                    put_str(&mut out, s);
                }
                Kv::StrArray(items) => {
                    out.extend(9u32.to_le_bytes());
                    out.extend(8u32.to_le_bytes());
                    out.extend((items.len() as u64).to_le_bytes());
                    items.iter().for_each(|s| put_str(&mut out, s));
                }
                Kv::F32Array(items) => {
                    out.extend(9u32.to_le_bytes());
                    out.extend(6u32.to_le_bytes());
                    out.extend((items.len() as u64).to_le_bytes());
                    items.iter().for_each(|v| out.extend(v.to_le_bytes()));
                }
            }
        }
        let mut offset = 0u64;
        for (name, dims, ty, len) in &self.tensors {
            put_str(&mut out, name);
            out.extend((dims.len() as u32).to_le_bytes());
            dims.iter().for_each(|d| out.extend(d.to_le_bytes()));
            out.extend(ty.to_le_bytes());
            out.extend(offset.to_le_bytes());
            offset = (offset + *len as u64).div_ceil(32) * 32;
        }
        out.resize(out.len().div_ceil(32) * 32, 0);
        let data_start = out.len();
        let mut offset = 0;
        for (_, _, _, len) in &self.tensors {
            out.resize(data_start + offset, 0);
            out.extend(std::iter::repeat_n(0x5a, *len));
            offset = (offset + len).div_ceil(32) * 32;
        }
        out
    }
}

/// A small valid model: two tensors, F32 [8] (32 bytes) and Q8_0 [64, 2] (4 blocks of
/// 34 bytes = 136 bytes).
fn tiny() -> Writer {
    Writer {
        version: 3,
        kvs: vec![
            ("general.architecture", Kv::Str("tinyllm")),
            ("general.name", Kv::Str("Tiny Test")),
            ("general.file_type", Kv::U32(7)),
            ("tinyllm.context_length", Kv::U32(2048)),
            (
                "tokenizer.ggml.tokens",
                Kv::StrArray(&["<pad>", "<s>", "hello"]),
            ),
            ("tokenizer.ggml.scores", Kv::F32Array(vec![0.0, -1.0, -2.5])),
        ],
        tensors: vec![
            ("norm.weight", vec![8], 0, 32),
            ("blk.0.ffn.weight", vec![64, 2], 8, 136),
        ],
    }
}

fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn valid_file_is_summarised() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = tiny().bytes();
    let path = write(&dir, "tiny.gguf", &bytes);
    let s = inspect_gguf(&path).unwrap();
    assert_eq!(s.path, path);
    assert_eq!(s.size_bytes, bytes.len() as u64);
    assert_eq!(s.version, 3);
    assert_eq!(s.architecture.as_deref(), Some("tinyllm"));
    assert_eq!(s.name.as_deref(), Some("Tiny Test"));
    assert_eq!(s.file_type, Some(7));
    assert_eq!(s.quantization.as_deref(), Some("Q8_0"));
    assert_eq!(s.context_length, Some(2048));
    assert_eq!((s.tensor_count, s.metadata_count), (2, 6));
    // The Q8_0 tensor starts at 32 (F32 data padded) and ends at 32 + 136 = 168.
    assert_eq!(s.data_bytes, 168);
    assert_eq!(s.data_offset + 168, s.size_bytes);
    assert!(s.unchecked_tensors.is_empty());
    assert_eq!(
        s.to_string(),
        "Tiny Test (tinyllm, Q8_0, 2 tensors, 0.0 MB, GGUF v3)"
    );
}

#[test]
fn version_2_is_accepted_and_version_1_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let v2 = write(
        &dir,
        "v2.gguf",
        &Writer {
            version: 2,
            ..tiny()
        }
        .bytes(),
    );
    assert_eq!(inspect_gguf(&v2).unwrap().version, 2);
    let v1 = write(
        &dir,
        "v1.gguf",
        &Writer {
            version: 1,
            ..tiny()
        }
        .bytes(),
    );
    let err = inspect_gguf(&v1).unwrap_err();
    assert!(
        matches!(err, ModelFileError::UnsupportedVersion { version: 1, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("v1.gguf uses GGUF version 1"),
        "{err}"
    );
}

#[test]
fn cut_short_file_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = tiny().bytes();
    let path = write(&dir, "cut.gguf", &bytes[..bytes.len() - 10]);
    match inspect_gguf(&path).unwrap_err() {
        ModelFileError::Truncated {
            path: p,
            expected,
            actual,
        } => {
            assert_eq!(
                (p, expected, actual),
                (path, bytes.len() as u64, bytes.len() as u64 - 10)
            );
        }
        other => panic!("{other}"),
    }
    // A cut inside the header (here in the metadata) is reported the same way.
    let path = write(&dir, "cut-header.gguf", &bytes[..150]);
    let err = inspect_gguf(&path).unwrap_err();
    assert!(
        matches!(err, ModelFileError::Truncated { actual: 150, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("cut-header.gguf is truncated"),
        "{err}"
    );
}

#[test]
fn non_gguf_files_get_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "page.gguf", b"<html><body>Not Found</body></html>");
    let err = inspect_gguf(&path).unwrap_err();
    assert!(matches!(err, ModelFileError::BadMagic { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("page.gguf is not a GGUF file: it starts with \"<htm\" (3c 68 74 6d)"),
        "{msg}"
    );
    assert!(msg.contains("HTML page"), "{msg}");
    let zip = write(&dir, "wheel.gguf", b"PK\x03\x04\x14\x00\x00\x00");
    assert!(
        inspect_gguf(&zip)
            .unwrap_err()
            .to_string()
            .contains("zip archive")
    );
}

#[test]
fn empty_missing_and_directory() {
    let dir = tempfile::tempdir().unwrap();
    let empty = write(&dir, "empty.gguf", b"");
    assert!(matches!(
        inspect_gguf(&empty).unwrap_err(),
        ModelFileError::TooSmall { size: 0, .. }
    ));
    let short = write(&dir, "short.gguf", b"GGUF\x03\x00\x00\x00");
    assert!(matches!(
        inspect_gguf(&short).unwrap_err(),
        ModelFileError::TooSmall { size: 8, .. }
    ));
    let missing = dir.path().join("missing.gguf");
    let err = inspect_gguf(&missing).unwrap_err();
    assert!(matches!(err, ModelFileError::NotFound { .. }));
    assert_eq!(
        err.to_string(),
        format!("model file {} does not exist", missing.display())
    );
    assert!(matches!(
        inspect_gguf(dir.path()).unwrap_err(),
        ModelFileError::NotAFile { .. }
    ));
}

#[test]
fn malformed_headers_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = tiny().bytes();
    // Tensor count field (bytes 8..16) claiming 2^40 tensors.
    bytes[8..16].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let path = write(&dir, "counts.gguf", &bytes);
    let err = inspect_gguf(&path).unwrap_err();
    assert!(
        matches!(err, ModelFileError::Malformed { offset: 24, .. }),
        "{err}"
    );

    // First key's length (bytes 24..32) longer than the file.
    let mut bytes = tiny().bytes();
    bytes[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
    let err = inspect_gguf(&write(&dir, "strlen.gguf", &bytes)).unwrap_err();
    assert!(
        err.to_string().contains("longer than the whole file"),
        "{err}"
    );

    // First value type (after the 20-byte key "general.architecture") set to 77.
    let mut bytes = tiny().bytes();
    let at = 32 + "general.architecture".len();
    bytes[at..at + 4].copy_from_slice(&77u32.to_le_bytes());
    let err = inspect_gguf(&write(&dir, "type.gguf", &bytes)).unwrap_err();
    assert!(
        err.to_string()
            .contains("`general.architecture` has unknown value type 77"),
        "{err}"
    );

    // A Q8_0 row of 33 elements is not a whole number of 32-element blocks.
    let w = Writer {
        tensors: vec![("odd", vec![33], 8, 34)],
        ..tiny()
    };
    let err = inspect_gguf(&write(&dir, "blocks.gguf", &w.bytes())).unwrap_err();
    assert!(
        err.to_string().contains("tensor `odd` of type q8_0"),
        "{err}"
    );
}

#[test]
fn unknown_tensor_type_is_noted_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let w = Writer {
        tensors: vec![
            ("norm.weight", vec![8], 0, 32),
            ("future", vec![256], 99, 64),
        ],
        ..tiny()
    };
    let s = inspect_gguf(&write(&dir, "future.gguf", &w.bytes())).unwrap();
    assert_eq!(
        s.unchecked_tensors,
        [UncheckedTensor {
            name: "future".into(),
            ggml_type: 99
        }]
    );
}

#[test]
fn real_model_if_cached() {
    let Some(home) = std::env::var_os("HOME") else {
        return;
    };
    let path = Path::new(&home).join(".cache/netmoe/models/gemma-3-270m-q4_k_m.gguf");
    if !path.exists() {
        crate::testing::skip(
            "real_model_if_cached",
            &format!("{} is not downloaded", path.display()),
        );
        return;
    }
    let s = inspect_gguf(&path).unwrap();
    assert_eq!(s.architecture.as_deref(), Some("gemma3"));
    assert!(
        s.quantization
            .as_deref()
            .unwrap_or_default()
            .contains("Q4_K"),
        "{s}"
    );
    assert_eq!(s.size_bytes, crate::fetch::DEFAULT_MODEL_SIZE);
    assert!(s.context_length.is_some_and(|n| n >= 8192), "{s:?}");
    assert!(s.unchecked_tensors.is_empty(), "{:?}", s.unchecked_tensors);
    // Every byte is accounted for, which cross-checks the Q4_K/Q6_K/... size table.
    assert_eq!(s.data_offset + s.data_bytes, s.size_bytes);
}
