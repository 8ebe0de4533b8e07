//! The learned router: a discrete soft actor-critic (SAC) in candle that
//! scores every (segment, node) pair with shared weights, trained on the
//! routing dataset `coordinator collect` records.
//!
//! - [`dataset`]: the JSONL dataset, grouped prompt → segment → expert, and
//!   the train/held-out split by prompt.
//! - [`features`]: the ONE function that turns candidates into pair features
//!   (training and live serving both call it), and their normalisation.
//! - [`env`]: episodes (a prompt + fresh SNR draws), rewards from the shared
//!   cost model, the local device's capacity, simulated nodes, the upper bound.
//! - [`nets`]: the pair MLP the actor and critics are made of.
//! - [`replay`]: the bounded replay buffer and padded batches.
//! - [`sac`]: discrete SAC: twin critics, targets, actor, entropy temperature.
//! - [`policy`]: [`SacPolicy`], the trained actor behind the routing trait,
//!   saved as safetensors + JSON, with optional online learning.
//! - [`methods`]: every method (SAC, baselines, bound) run on one episode.
//! - [`retest`]: a second collection of the same segments: test-retest
//!   reliability of the judged scores and the retest oracle.
//! - [`stats`]: means, t-intervals, moving averages.
//! - [`plot`]: the PNG figures (reward vs episode, mean reward bars).
//! - [`train`], [`eval`], [`simulate`]: the `coordinator train|eval|simulate`
//!   entry points, as clap argument structs and `run_*` functions.

pub mod dataset;
pub mod env;
pub mod eval;
pub mod features;
pub mod methods;
pub mod nets;
pub mod plot;
pub mod policy;
pub mod replay;
pub mod retest;
pub mod sac;
pub mod simulate;
pub mod stats;
pub mod train;

pub use dataset::Dataset;
pub use env::{Env, EnvConfig};
pub use eval::{EvalArgs, EvalReport, run_eval};
pub use policy::{SacPolicy, load_policy};
pub use sac::{Sac, SacConfig};
pub use simulate::{SimulateArgs, SimulateReport, run_simulate};
pub use train::{TrainArgs, TrainReport, run_train};

use candle_core::Device;

/// Why a learning, evaluation or policy operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RlError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A dataset line is not a valid row.
    #[error("dataset {path} line {line}: {message}")]
    DatasetRow {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The dataset is unusable as a whole (empty, incomplete segments, ...).
    #[error("dataset: {0}")]
    Dataset(String),
    /// A tensor operation failed.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// A policy's JSON is malformed or does not match its weights.
    #[error("policy {path}: {message}")]
    PolicyFile {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// An argument is out of range or malformed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An SNR model spec is invalid.
    #[error("channel: {0}")]
    Channel(#[from] netmoe_common::channel::ChannelError),
    /// A plot could not be drawn.
    #[error("plot {path}: {message}")]
    Plot {
        /// The PNG.
        path: String,
        /// What plotters said.
        message: String,
    },
}

impl RlError {
    /// An [`RlError::Io`] for `path`.
    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

/// The one device-selection helper: the networks are tiny, so the CPU is
/// both the fastest and the only portable choice.
///
/// It also keeps candle's matrix products on the calling thread: split
/// across threads, products this small cost more in wake-ups than they
/// save (default training on this 2-core machine: 8.7 s threaded, 2.7 s
/// not). The setting is process-wide and only raises gemm's threshold
/// for threading, so large products elsewhere still use threads.
pub fn device() -> Device {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        gemm::set_threading_threshold(gemm::DEFAULT_THREADING_THRESHOLD.max(SINGLE_THREAD_WORK));
    });
    Device::Cpu
}

/// Multiply-adds below which a product stays on one thread: above the
/// largest product of a default update (batch 64 × up to 1000 pairs × 64 × 64).
const SINGLE_THREAD_WORK: usize = 1 << 32;
