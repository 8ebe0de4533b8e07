//! Why a model file was rejected before llama.cpp got to see it.

use std::path::PathBuf;

/// A model file that llama.cpp must not be handed; every message names the file.
///
/// llama.cpp aborts or crashes on some malformed files, so these are detected up front
/// and reported in words an operator can act on (re-download, wrong file, ...).
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    /// Nothing exists at the path.
    #[error("model file {} does not exist", .path.display())]
    NotFound {
        /// The path that was asked for.
        path: PathBuf,
    },
    /// The path is a directory or a special file.
    #[error("model file {} is not a regular file", .path.display())]
    NotAFile {
        /// The offending path.
        path: PathBuf,
    },
    /// The file exists but could not be opened or read.
    #[error("cannot read model file {}: {source}", .path.display())]
    Unreadable {
        /// The offending path.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// Shorter than the fixed GGUF preamble (magic, version, two counts).
    #[error(
        "model file {} is {size} bytes, too small to be a GGUF file (the header alone needs {min} bytes)",
        .path.display()
    )]
    TooSmall {
        /// The offending path.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The smallest possible GGUF file.
        min: u64,
    },
    /// The file does not start with `GGUF`.
    #[error("model file {} is not a GGUF file: it starts with {found}{hint}", .path.display())]
    BadMagic {
        /// The offending path.
        path: PathBuf,
        /// The first bytes, as text and hex.
        found: String,
        /// A guess at what the file really is (empty when there is no guess).
        hint: String,
    },
    /// A GGUF version this code (and current llama.cpp) does not read.
    #[error(
        "model file {} uses GGUF version {version}; only versions 2 and 3 are supported{note}",
        .path.display()
    )]
    UnsupportedVersion {
        /// The offending path.
        path: PathBuf,
        /// The version field as read little-endian.
        version: u32,
        /// Extra advice, e.g. that the file is big-endian (empty when none).
        note: String,
    },
    /// The header is internally inconsistent.
    #[error("model file {} has a malformed GGUF header at byte {offset}: {reason}", .path.display())]
    Malformed {
        /// The offending path.
        path: PathBuf,
        /// Where in the file the problem was found.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// The file ends before the header or tensor data it promises.
    #[error(
        "model file {} is truncated: it needs at least {expected} bytes but has {actual} (incomplete download?)",
        .path.display()
    )]
    Truncated {
        /// The offending path.
        path: PathBuf,
        /// Bytes the header says the file must have (a lower bound).
        expected: u64,
        /// Bytes it has.
        actual: u64,
    },
}

/// Describes the first bytes of a non-GGUF file and guesses what it is.
///
/// Returns `(found, hint)` for [`ModelFileError::BadMagic`].
pub(super) fn describe_magic(head: &[u8]) -> (String, String) {
    let shown = &head[..head.len().min(4)];
    let text: String = shown
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        })
        .collect();
    let hex: Vec<String> = shown.iter().map(|b| format!("{b:02x}")).collect();
    let found = format!("{text:?} ({})", hex.join(" "));
    let trimmed = head.trim_ascii_start();
    let lower = String::from_utf8_lossy(trimmed).to_ascii_lowercase();
    let hint = if lower.starts_with("<!doctype html") || lower.starts_with("<html") {
        " (looks like an HTML page, e.g. an error page saved in place of the model)"
    } else if lower.starts_with("version https://git-lfs") {
        " (looks like a Git LFS pointer, not the model itself)"
    } else if head.starts_with(b"PK\x03\x04") {
        " (looks like a zip archive, e.g. a wheel; the model must be extracted from it)"
    } else if head.starts_with(&[0x1f, 0x8b]) {
        " (looks like a gzip archive; decompress it first)"
    } else if lower.starts_with('{') || lower.starts_with('[') {
        " (looks like JSON)"
    } else if lower.starts_with('<') {
        " (looks like XML or HTML)"
    } else if !head.is_empty()
        && head
            .iter()
            .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
    {
        " (looks like a text file)"
    } else {
        ""
    };
    (found, hint.to_owned())
}
