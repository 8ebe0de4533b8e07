//! The process-wide llama.cpp backend and model loading.
//!
//! llama.cpp wants its backend initialised once per process, and contexts
//! borrow the model; a server keeps both for the life of the process, so the
//! model is leaked to `'static` and contexts live on dedicated threads.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use netmoe_common::gguf::{GgufSummary, inspect_gguf};

use super::EngineError;

static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();

/// The process's llama.cpp backend, initialised on first use with its logs
/// routed into `tracing` (target `llama-cpp-2`). A `dynamic-backends` build
/// first loads llama.cpp's backend modules (the `backends` module).
pub fn backend() -> &'static LlamaBackend {
    BACKEND.get_or_init(|| {
        llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
        #[cfg(feature = "dynamic-backends")]
        crate::backends::load();
        LlamaBackend::init().expect("llama.cpp backend initialises once per process")
    })
}

/// A model loaded for the life of the process, with what we know of its file.
#[derive(Debug, Clone, Copy)]
pub struct LoadedModel {
    /// The llama.cpp model; contexts borrow it.
    pub model: &'static LlamaModel,
    /// Header facts read before loading (quantization, architecture...).
    pub file: &'static GgufSummary,
}

impl LoadedModel {
    /// Validates the GGUF header (clear errors instead of a llama.cpp abort
    /// on a truncated or foreign file), then loads it with `gpu_layers`
    /// offloaded (ignored on CPU builds).
    pub fn load(path: &Path, gpu_layers: u32) -> Result<Self, EngineError> {
        let file = inspect_gguf(path).map_err(|e| EngineError::ModelFile(e.to_string()))?;
        let params = LlamaModelParams::default().with_n_gpu_layers(gpu_layers);
        let model = LlamaModel::load_from_file(backend(), path, &params).map_err(|e| {
            EngineError::ModelLoad {
                path: PathBuf::from(path),
                message: e.to_string(),
            }
        })?;
        Ok(Self {
            model: Box::leak(Box::new(model)),
            file: Box::leak(Box::new(file)),
        })
    }

    /// The model's name: its catalog name when the file is a shipped model,
    /// else the GGUF's `general.name`, else the file name.
    pub fn name(&self) -> String {
        let file = self.file_name();
        if let Some(a) = netmoe_common::fetch::catalog::MODELS
            .iter()
            .find(|a| a.main_file().file == file)
        {
            return a.name.to_owned();
        }
        self.model
            .meta_val_str("general.name")
            .ok()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or(file)
    }

    /// File name without directories.
    pub fn file_name(&self) -> String {
        self.file
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}
