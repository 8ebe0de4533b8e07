//! The QUIC link between the coordinator and a node (quinn): the data
//! plane beside gRPC, link probes, and channel emulation.
//!
//! - [`frame`]: prost messages framed on a QUIC stream as gRPC frames them.
//! - [`tls`]: node identities (PEM or dev-mode self-signed) and trust
//!   (CA roots or a pinned fingerprint).
//! - [`client`]: the dialling side: one connection per node, its calls and
//!   wire counters.
//! - [`probe`]: RTT, goodput both ways, loss, congestion window, wire bytes.
//! - [`pacer`]: pacing a node's outgoing bytes to its simulated Shannon rate.

pub mod client;
pub mod frame;
pub mod pacer;
pub mod probe;
pub mod tls;

pub use client::{
    Download, GenerateCall, LinkClient, LinkConnection, LinkError, StreamWire, Upload, WireCounters,
};
pub use pacer::Pacer;
pub use probe::{ProbeSettings, probe};
pub use tls::{ServerIdentity, TlsError, Trust};
