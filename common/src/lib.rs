//! Shared pieces of NetMoE that the coordinator, the edge nodes and the tests all need.
//!
//! - [`cli`]: what both binaries share on the command line: exit codes, one-line errors, `--json`, completions, the defaults listing.
//! - [`channel`]: seeded wireless-channel (SNR) models that edge nodes sample per request.
//! - [`config`]: the settings-file reader and configuration error of the binaries.
//! - [`cost`]: the one cost model: Shannon rate, transfer time and energy, compute cost, reward.
//! - [`fetch`]: the model cache: fetching the default model, resolving `--model` arguments.
//! - [`gguf`]: GGUF header checks, so a bad model file is a clear error, not a llama.cpp crash.
//! - [`link`]: the QUIC link (quinn): framing, TLS, probes, channel-emulating pacer.
//! - [`prom`]: the two `/metrics` text formats (OpenMetrics, Prometheus 0.0.4) and which to serve.
//! - [`pki`]: the project CA, certificate identities, TLS of the gRPC links, API-key bearer.
//! - [`testing`]: how a test that cannot run on a machine skips loudly, or fails under CI.

pub mod channel;
pub mod cli;
pub mod config;
pub mod cost;
pub mod fetch;
pub mod gguf;
pub mod link;
pub mod pki;
pub mod prom;
pub mod testing;

pub use channel::{ChannelError, SnrDraw, SnrModel, SnrSampler, db_to_linear, linear_to_db};
pub use cost::{CostModel, Reward, Transfer};
pub use fetch::{
    DEFAULT_MODEL_FILE, DEFAULT_MODEL_SHA256, DEFAULT_MODEL_SIZE, Expected, FetchError,
    FetchOptions, cache_dir, fetch_default_model, resolve_model,
};
pub use gguf::{GgufSummary, ModelFileError, inspect_gguf};
