//! Prometheus metrics of the coordinator, served as OpenMetrics text at
//! `/metrics` (`serve --metrics-listen ADDR`): each node's channel and last
//! link probe, probe outcomes, and the bytes and transfer seconds of the
//! answered segments per transport, simulated next to measured.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use netmoe_proto::v1;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry as PromRegistry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    node: String,
    direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabels {
    node: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BytesLabels {
    transport: String,
    /// "framed" (messages with their 5-byte frames) or "udp" (datagrams).
    layer: String,
    direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SegmentLabels {
    transport: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransferLabels {
    transport: String,
    /// "simulated" (Shannon) or "measured" (latency minus model time).
    kind: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The coordinator's metrics; share behind an `Arc`.
pub struct Metrics {
    registry: PromRegistry,
    snr_db: Family<NodeLabels, FloatGauge>,
    live: Family<NodeLabels, Gauge>,
    rtt_s: Family<NodeLabels, FloatGauge>,
    path_rtt_s: Family<NodeLabels, FloatGauge>,
    goodput_bps: Family<DirectionLabels, FloatGauge>,
    loss_ratio: Family<NodeLabels, FloatGauge>,
    cwnd_bytes: Family<NodeLabels, Gauge>,
    probes: Family<ProbeLabels, Counter>,
    segments: Family<SegmentLabels, Counter>,
    segment_bytes: Family<BytesLabels, Counter>,
    transfer_s: Family<TransferLabels, Counter<f64, AtomicU64>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Empty metrics, registered under `netmoe_`.
    pub fn new() -> Self {
        let mut r = PromRegistry::with_prefix("netmoe");
        let m = Self {
            snr_db: Family::default(),
            live: Family::default(),
            rtt_s: Family::default(),
            path_rtt_s: Family::default(),
            goodput_bps: Family::default(),
            loss_ratio: Family::default(),
            cwnd_bytes: Family::default(),
            probes: Family::default(),
            segments: Family::default(),
            segment_bytes: Family::default(),
            transfer_s: Family::default(),
            registry: PromRegistry::default(),
        };
        r.register(
            "node_snr_db",
            "Latest simulated SNR a node reported",
            m.snr_db.clone(),
        );
        r.register("node_live", "1 while a node is live", m.live.clone());
        r.register(
            "link_rtt_seconds",
            "Median echo round trip of the last link probe",
            m.rtt_s.clone(),
        );
        r.register(
            "link_path_rtt_seconds",
            "QUIC smoothed path RTT after the last probe",
            m.path_rtt_s.clone(),
        );
        r.register(
            "link_goodput_bits_per_second",
            "Payload goodput of the last probe, by direction",
            m.goodput_bps.clone(),
        );
        r.register(
            "link_loss_ratio",
            "QUIC packets lost / sent during the last probe",
            m.loss_ratio.clone(),
        );
        r.register(
            "link_cwnd_bytes",
            "QUIC congestion window after the last probe",
            m.cwnd_bytes.clone(),
        );
        r.register("link_probes", "Link probes by outcome", m.probes.clone());
        r.register(
            "segments",
            "Answered segment attempts by transport and outcome",
            m.segments.clone(),
        );
        r.register(
            "segment_bytes",
            "Segment bytes by transport, layer (framed, udp) and direction",
            m.segment_bytes.clone(),
        );
        r.register(
            "segment_transfer_seconds",
            "Segment transfer seconds, Shannon-simulated and measured",
            m.transfer_s.clone(),
        );
        Self { registry: r, ..m }
    }

    /// Counts a probe's outcome.
    pub fn observe_probe(&self, p: &v1::LinkProbe) {
        self.probes
            .get_or_create(&ProbeLabels {
                node: p.node_id.clone(),
                outcome: if p.ok { "ok" } else { "failed" }.into(),
            })
            .inc();
    }

    /// Adds an answer's segments.
    pub fn observe_segments(&self, reports: &[v1::SegmentReport]) {
        for s in reports {
            let transport = if s.transport.is_empty() {
                "none"
            } else {
                &s.transport
            };
            self.segments
                .get_or_create(&SegmentLabels {
                    transport: transport.into(),
                    outcome: if s.error.is_empty() { "ok" } else { "failed" }.into(),
                })
                .inc();
            let bytes = |layer: &str, direction: &str, n: u64| {
                if n > 0 {
                    self.segment_bytes
                        .get_or_create(&BytesLabels {
                            transport: transport.into(),
                            layer: layer.into(),
                            direction: direction.into(),
                        })
                        .inc_by(n);
                }
            };
            bytes("framed", "up", s.measured_bytes_up);
            bytes("framed", "down", s.measured_bytes_down);
            bytes("udp", "up", s.wire_bytes_up);
            bytes("udp", "down", s.wire_bytes_down);
            for (kind, v) in [
                ("simulated", s.sim_transfer_s),
                ("measured", s.measured_transfer_s),
            ] {
                self.transfer_s
                    .get_or_create(&TransferLabels {
                        transport: transport.into(),
                        kind: kind.into(),
                    })
                    .inc_by(v.max(0.0));
            }
        }
    }

    /// The metrics as OpenMetrics text, node gauges refreshed from `nodes`.
    pub fn render(&self, nodes: &Registry) -> String {
        for f in [
            &self.snr_db,
            &self.rtt_s,
            &self.path_rtt_s,
            &self.loss_ratio,
        ] {
            f.clear();
        }
        self.live.clear();
        self.goodput_bps.clear();
        self.cwnd_bytes.clear();
        for n in nodes.list() {
            let Some(info) = &n.info else { continue };
            let node = NodeLabels {
                node: info.node_id.clone(),
            };
            self.live.get_or_create(&node).set(i64::from(n.live));
            if let Some(snr) = &n.snr {
                self.snr_db.get_or_create(&node).set(snr.snr_db);
            }
            if let Some(p) = n.link.as_ref().filter(|p| p.ok) {
                self.rtt_s.get_or_create(&node).set(p.echo_rtt_ms / 1e3);
                self.path_rtt_s
                    .get_or_create(&node)
                    .set(p.path_rtt_ms / 1e3);
                self.loss_ratio.get_or_create(&node).set(p.loss_rate);
                self.cwnd_bytes
                    .get_or_create(&node)
                    .set(p.cwnd_bytes.min(i64::MAX as u64) as i64);
                for (direction, v) in [("down", p.down_goodput_bps), ("up", p.up_goodput_bps)] {
                    self.goodput_bps
                        .get_or_create(&DirectionLabels {
                            node: info.node_id.clone(),
                            direction: direction.into(),
                        })
                        .set(v);
                }
            }
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Serves `/metrics` on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    nodes: Arc<Registry>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    async fn scrape(State((m, n)): State<(Arc<Metrics>, Arc<Registry>)>) -> impl IntoResponse {
        (
            [(
                CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            m.render(&n),
        )
    }
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .with_state((metrics, nodes));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_and_probes_show_up_in_the_text() {
        let m = Metrics::new();
        m.observe_probe(&v1::LinkProbe {
            node_id: "a".into(),
            ok: true,
            ..Default::default()
        });
        m.observe_segments(&[v1::SegmentReport {
            transport: "quic".into(),
            measured_bytes_down: 700,
            wire_bytes_down: 900,
            sim_transfer_s: 0.25,
            ..Default::default()
        }]);
        let nodes = Registry::new(
            crate::registry::DEFAULT_HEARTBEAT_INTERVAL,
            crate::registry::DEFAULT_LIVENESS_TIMEOUT,
        );
        let text = m.render(&nodes);
        assert!(
            text.contains(r#"netmoe_link_probes_total{node="a",outcome="ok"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"netmoe_segment_bytes_total{transport="quic",layer="udp",direction="down"} 900"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"netmoe_segment_transfer_seconds_total{transport="quic",kind="simulated"} 0.25"#
            ),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
