//! NetMoE edge node: one quantized LLM expert, served over gRPC.
//!
//! - [`engine`]: llama.cpp on a dedicated thread; concurrent requests are
//!   sequences of one batch, admission is bounded.
//! - [`sampling`]: sampling settings, their ranges, the sampler chain.
//! - [`profile`]: the expert profile (domain, persona, layout, model).
//! - [`prompt`]: prompt layout per model (chat template, narrative, own), peer text kept apart.
//! - [`service`]: the `EdgeNode` gRPC service, request limits and accounting.
//! - [`error`]: request errors and their mapping to gRPC statuses.
//! - [`probe`]: link probe transfers (download payload), shared by gRPC and QUIC.
//! - [`link`]: the QUIC endpoint beside gRPC: data plane and probes.
//! - [`join`]: joining a secured cluster with a one-time token (key made here, CSR, certificate back).
//! - [`register`]: registration and heartbeats to the coordinator (mTLS in a secured cluster).
//! - [`shaper`]: kernel link shaping (`tc netem`) of the node's interface from its simulated SNR.
//! - [`metrics`]: Prometheus metrics (`/metrics`): generations, speed, prompt-eval, queue wait, load.
//! - [`server`]: serving on a bound listener with health, reflection and drain.
//! - [`config`]: flags, environment and file resolved into [`NodeConfig`].
//! - [`hardware`]: the hardware summary reported by `Info`.
//! - [`backends`]: llama.cpp's CPU variants picked at run time (`dynamic-backends` builds), never one the host cannot run.
//! - [`node`]: builds a ready-to-serve node from a [`NodeConfig`].
//! - [`client`]: a small streaming client for trying a node by hand.

pub mod backends;
pub mod client;
pub mod config;
pub mod engine;
pub mod error;
pub mod hardware;
pub mod join;
pub mod link;
pub mod metrics;
pub mod node;
pub mod probe;
pub mod profile;
pub mod prompt;
pub mod register;
pub mod sampling;
pub mod server;
pub mod service;
pub mod shaper;

pub use config::{NodeConfig, ServeArgs};
pub use engine::{Engine, EngineConfig, EngineError};
pub use profile::ExpertProfile;
pub use service::{EdgeNodeService, NodeState};
