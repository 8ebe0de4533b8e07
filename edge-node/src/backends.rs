//! llama.cpp's backend modules in a `dynamic-backends` build: llama.cpp is
//! built as shared libraries with one CPU backend per x86-64 (or Arm)
//! feature level, `libggml-cpu-<variant>.so`, and ggml loads the best one
//! the CPU runs, so one binary is fast on every host of its architecture.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

static DIR: OnceLock<PathBuf> = OnceLock::new();

/// Loads the modules from `dir` instead of the default places; call before
/// the first model loads (later calls change nothing).
pub fn set_dir(dir: PathBuf) {
    let _ = DIR.set(dir);
}

/// Whether `dir` holds a CPU backend module.
pub fn has_cpu_backend(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            (name.starts_with("libggml-cpu") || name.starts_with("ggml-cpu"))
                && [".so", ".dll", ".dylib"].iter().any(|x| name.ends_with(x))
        })
    })
}

/// Loads the modules: from the set directory, else the executable's own
/// directory when it holds them (an installed node), else the directory the
/// build put them in (a node run from the cargo target directory).
pub(crate) fn load() {
    let beside_exe = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
        .filter(|d| has_cpu_backend(d));
    match DIR.get().cloned().or(beside_exe) {
        Some(dir) => {
            llama_cpp_2::llama_backend::load_backends_from_path(&dir);
            tracing::debug!(dir = %dir.display(), "llama.cpp backend modules loaded");
        }
        None => llama_cpp_2::llama_backend::load_backends(),
    }
    let devices = llama_cpp_2::list_llama_ggml_backend_devices();
    if !devices.iter().any(|d| d.backend == "CPU") {
        tracing::error!(
            "no llama.cpp CPU backend module found: give --backends-dir, the directory with libggml-cpu-*.so"
        );
    }
    tracing::info!(
        cpu_variant = cpu_variant().as_deref().unwrap_or("unknown"),
        devices = ?devices.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        "llama.cpp backends"
    );
}

/// The CPU backend module ggml picked, read off the process's mappings
/// (ggml names it only in an info line of its own log, which the node
/// filters to warnings by default).
fn cpu_variant() -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.rsplit('/').next())
        .find(|f| f.starts_with("libggml-cpu"))
        .map(str::to_owned)
}
