//! The coordinator's QUIC links: one connection per node, dialled on first
//! use and again after it drops, trusted by CA or (dev mode) by the
//! certificate fingerprint the node registered with; and the link probes
//! that feed the registry, the routing candidates and the node list.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netmoe_common::cost::CostModel;
use netmoe_common::link::probe::{DEFAULT_PROBE_BYTES, MAX_PROBE_BYTES};
use netmoe_common::link::{LinkClient, LinkConnection, LinkError, ProbeSettings, Trust};
use netmoe_proto::v1;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::registry::{NodeEntry, Registry};

/// Default period of the background probes.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(30);
/// How long dialling a node may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest a probe of one node may take (its transfers included).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// Which data plane carries segments to the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// gRPC over HTTP/2 over TCP.
    #[default]
    Grpc,
    /// The same messages on QUIC streams.
    Quic,
}

impl Transport {
    /// Its name in flags, requests and reports.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Quic => "quic",
        }
    }
}

impl std::str::FromStr for Transport {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "grpc" => Ok(Self::Grpc),
            "quic" => Ok(Self::Quic),
            other => Err(format!("transport {other:?}: use grpc or quic")),
        }
    }
}

/// Why a node's link could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LinksError {
    /// The node advertised no QUIC endpoint.
    #[error("node {0} runs no QUIC endpoint (edge-node --quic off)")]
    NoEndpoint(String),
    /// Its gRPC endpoint names no usable host.
    #[error("node {node}: cannot resolve the host of {endpoint}")]
    Resolve {
        /// Node id.
        node: String,
        /// Its endpoint.
        endpoint: String,
    },
    /// Dialling took too long.
    #[error("node {0}: QUIC handshake timed out")]
    Timeout(String),
    /// The link failed.
    #[error(transparent)]
    Link(#[from] LinkError),
}

impl LinksError {
    /// True when the node looks unreachable.
    pub fn unreachable(&self) -> bool {
        match self {
            LinksError::Timeout(_) => true,
            LinksError::Link(e) => e.unreachable(),
            _ => false,
        }
    }
}

/// Cached connection and what it was dialled for.
struct Dialled {
    conn: LinkConnection,
    endpoint: String,
    port: u32,
    fingerprint: String,
}

/// The QUIC links of one coordinator.
pub struct Links {
    client: LinkClient,
    roots: Option<Trust>,
    /// Per node: its connection. The slot's lock is held while dialling,
    /// so concurrent segments to a new node share one handshake.
    conns: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Dialled>>>>>,
    /// Payload each way of a probe.
    pub probe_bytes: u64,
    /// The cost model (its bandwidth gives probes a Shannon rate to compare).
    pub cost: CostModel,
    metrics: Arc<Metrics>,
}

impl Links {
    /// Links with a fresh client endpoint; `roots` verifies nodes' CA-issued
    /// certificates (None: pin each node's advertised fingerprint).
    pub fn new(
        roots: Option<Trust>,
        probe_bytes: u64,
        cost: CostModel,
        metrics: Arc<Metrics>,
    ) -> Result<Self, LinkError> {
        if roots.is_none() {
            tracing::info!(
                "QUIC dev mode: node certificates are pinned by the fingerprints they register with (--quic-ca sets a CA)"
            );
        }
        Ok(Self {
            client: LinkClient::new()?,
            roots,
            conns: Mutex::new(HashMap::new()),
            probe_bytes: if probe_bytes == 0 {
                DEFAULT_PROBE_BYTES
            } else {
                probe_bytes.min(MAX_PROBE_BYTES)
            },
            cost,
            metrics,
        })
    }

    /// The connection to `node`, dialling it if there is none, if it
    /// closed, or if the node re-registered with another address or
    /// certificate.
    pub async fn connection(&self, node: &NodeEntry) -> Result<LinkConnection, LinksError> {
        let link = node.info.link.clone().unwrap_or_default();
        if link.quic_port == 0 {
            return Err(LinksError::NoEndpoint(node.id().to_owned()));
        }
        let slot = self
            .conns
            .lock()
            .expect("links lock")
            .entry(node.id().to_owned())
            .or_default()
            .clone();
        let mut guard = slot.lock().await;
        if let Some(d) = guard.as_ref()
            && !d.conn.is_closed()
            && d.endpoint == node.endpoint
            && d.port == link.quic_port
            && d.fingerprint == link.cert_sha256
        {
            return Ok(d.conn.clone());
        }
        // Resolve only to dial: a cached link costs no lookup per segment.
        let addr = resolve(node, link.quic_port as u16).await?;
        let trust = match &self.roots {
            Some(t) => t.clone(),
            None => Trust::Pinned(link.cert_sha256.clone()),
        };
        // In a secured cluster the node must prove it is this node id.
        let host = match trust {
            Trust::Cluster { .. } => netmoe_common::pki::node_server_name(node.id()),
            _ => host_of(&node.endpoint).unwrap_or_else(|| "localhost".into()),
        };
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, self.client.connect(addr, &host, &trust))
            .await
            .map_err(|_| LinksError::Timeout(node.id().to_owned()))??;
        tracing::debug!(node = %node.id(), %addr, "QUIC link up");
        if let Some(old) = guard.take() {
            old.conn.close();
        }
        *guard = Some(Dialled {
            conn: conn.clone(),
            endpoint: node.endpoint.clone(),
            port: link.quic_port,
            fingerprint: link.cert_sha256,
        });
        Ok(conn)
    }

    /// Probes one node's link and records the result in the registry.
    pub async fn probe(&self, registry: &Registry, node: &NodeEntry, bytes: u64) -> v1::LinkProbe {
        let settings = ProbeSettings {
            bytes: if bytes == 0 { self.probe_bytes } else { bytes },
            cost: self.cost,
        };
        let failed = |error: String| v1::LinkProbe {
            node_id: node.id().to_owned(),
            ok: false,
            error,
            ..Default::default()
        };
        let probe = match self.connection(node).await {
            // A node that stalls a probe holds it for PROBE_TIMEOUT at most.
            Ok(conn) => tokio::time::timeout(
                PROBE_TIMEOUT,
                netmoe_common::link::probe(&conn, node.id(), &settings),
            )
            .await
            .unwrap_or_else(|_| failed(format!("probe took longer than {PROBE_TIMEOUT:?}"))),
            Err(e) => failed(e.to_string()),
        };
        if probe.ok {
            tracing::debug!(
                node = %probe.node_id,
                rtt_ms = probe.echo_rtt_ms,
                down_bps = probe.down_goodput_bps,
                up_bps = probe.up_goodput_bps,
                "link probed"
            );
        } else {
            tracing::warn!(node = %probe.node_id, error = %probe.error, "link probe failed");
        }
        self.metrics.observe_probe(&probe);
        registry.set_link(probe.clone());
        probe
    }

    /// Probes every live node concurrently.
    pub async fn probe_all(&self, registry: &Registry, bytes: u64) -> Vec<v1::LinkProbe> {
        let nodes = registry.live();
        futures::future::join_all(nodes.iter().map(|n| self.probe(registry, n, bytes))).await
    }

    /// Probes every live node each `interval`, until `stop`. (Nodes are
    /// also probed when they register, so a new node is measured at once.)
    pub async fn probe_periodically(
        self: Arc<Self>,
        registry: Arc<Registry>,
        interval: Duration,
        stop: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.probe_all(&registry, 0) => {}
            }
        }
    }

    /// Closes every link.
    pub fn close(&self) {
        self.client.close();
    }
}

/// The host of an http(s) endpoint URL.
fn host_of(endpoint: &str) -> Option<String> {
    let uri: tonic::transport::Uri = endpoint.parse().ok()?;
    uri.host()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
}

async fn resolve(node: &NodeEntry, port: u16) -> Result<SocketAddr, LinksError> {
    let err = || LinksError::Resolve {
        node: node.id().to_owned(),
        endpoint: node.endpoint.clone(),
    };
    let host = host_of(&node.endpoint).ok_or_else(err)?;
    tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|_| err())?
        .next()
        .ok_or_else(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_transports_parse() {
        assert_eq!(host_of("http://127.0.0.1:5").as_deref(), Some("127.0.0.1"));
        assert_eq!(host_of("https://[::1]:5").as_deref(), Some("::1"));
        assert_eq!(
            host_of("http://node-a.lan:5").as_deref(),
            Some("node-a.lan")
        );
        assert_eq!("quic".parse::<Transport>(), Ok(Transport::Quic));
        assert!(
            "udp"
                .parse::<Transport>()
                .unwrap_err()
                .contains("grpc or quic")
        );
    }
}
