//! NetMoE coordinator: the gate, routing, dispatch, fusion, judging and
//! cost accounting of a mixture of edge experts.
//!
//! - [`admin`]: the `ca`, `token` and `key` commands on the state directory.
//! - [`auth`]: who may call what: mTLS identities, join tokens, API keys.
//! - [`client`]: connecting to a coordinator (mTLS and API key, or plaintext).
//! - [`registry`]: registered nodes, heartbeats, liveness, violations and quarantine.
//! - [`checks`]: plausibility bounds on everything a node reports.
//! - [`analyzer`]: embeddings and token probabilities from the coordinator's model.
//! - [`gate`]: prompt segmentation and segment-to-expert relevance.
//! - [`policy`]: the routing trait, candidates' features, the baselines, and any policy behind the gate (`+gate`).
//! - [`dispatch`]: parallel segment generation (gRPC or QUIC) with deadlines and one fallback.
//! - [`links`]: QUIC connections to the nodes, link probes, the transport choice.
//! - [`fusion`]: passages into one story, and how much of each it kept.
//! - [`judge`]: 0-10 text judges (heuristic default, local GGUF, OpenAI-compatible).
//! - [`pipeline`]: one request end to end, with the cost accounting.
//! - [`stream`]: a streamed request's events (cancelled when dropped) and their text in prompt order.
//! - [`http`]: the HTTP API (OpenAI-compatible), `/metrics` and the dashboard.
//! - [`service`]: the `Coordinator` gRPC service.
//! - [`server`]: serving on a bound listener, health, reflection, liveness sweep.
//! - [`config`]: flags, environment and file resolved into [`config::CoordinatorConfig`].
//! - [`app`]: builds a pipeline from a configuration.
//! - [`metrics`]: Prometheus metrics (`/metrics`): channels, link probes, segment bytes and seconds.
//! - [`report`]: the human table and JSON of an answer.
//! - [`text`]: sentences and words, shared by fusion and the judges.
//! - [`collect`]: the routing dataset: every segment on every expert, judged.
//! - [`regate`]: the dataset's relevance recomputed with the serving gate after a gate change.
//! - [`cluster`]: starting a local cluster of separate processes (the demo).
//! - [`rl`]: the learned router: dataset, environment, discrete SAC in candle, train/eval/simulate.

// The report's `json!` objects list every field of the contract.
#![recursion_limit = "256"]

pub mod admin;
pub mod analyzer;
pub mod app;
pub mod auth;
pub mod checks;
pub mod client;
pub mod cluster;
pub mod collect;
pub mod config;
pub mod dispatch;
pub mod fusion;
pub mod gate;
pub mod http;
pub mod judge;
pub mod links;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod regate;
pub mod registry;
pub mod report;
pub mod rl;
pub mod server;
pub mod service;
pub mod stream;
pub mod text;
