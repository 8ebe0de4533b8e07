//! Fetches (or verifies) the default model into a cache directory.
//!
//! `cargo run --release -p netmoe-common --example fetch_model [CACHE_DIR]`; without an
//! argument the default cache (`cache_dir()`) is used.

use std::path::PathBuf;

use netmoe_common::{FetchOptions, cache_dir, fetch_default_model, inspect_gguf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cache = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(cache_dir);
    let opts = FetchOptions {
        progress: true,
        ..FetchOptions::default()
    };
    let path = fetch_default_model(&cache, &opts)?;
    println!("{}: {}", path.display(), inspect_gguf(&path)?);
    Ok(())
}
