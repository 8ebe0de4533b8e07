//! Prometheus metrics of the coordinator, served as OpenMetrics text at
//! `/metrics` (`serve --metrics-listen ADDR` or `--http-listen ADDR`): each
//! node's channel, Shannon rate, load and last link probe; probe outcomes;
//! request latency by stage, scores and rewards, compute and transfer cost
//! (simulated next to measured), routing decisions by policy and node, and
//! refusals by reason and code.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::extract::State;
use axum::response::IntoResponse;
use netmoe_proto::v1;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets, linear_buckets};
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    /// gate, route, dispatch, fusion, judge, total.
    stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    /// ok, partial, refused.
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    policy: String,
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    reason: String,
    /// The gRPC code name (the HTTP API maps it to a status).
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    /// "simulated" or "measured".
    kind: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;
type FloatCounter = Counter<f64, AtomicU64>;

/// Seconds buckets from 1 ms to about 65 s.
fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// 0-10 score buckets.
fn score_histogram() -> Histogram {
    Histogram::new(linear_buckets(0.0, 1.0, 11))
}

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
    shannon_bps: Family<NodeLabels, FloatGauge>,
    tokens_per_s: Family<NodeLabels, FloatGauge>,
    slots: Family<NodeLabels, Gauge>,
    active: Family<NodeLabels, Gauge>,
    queued: Family<NodeLabels, Gauge>,
    quarantined: Family<NodeLabels, Gauge>,
    violations: Family<NodeLabels, Gauge>,
    requests: Family<OutcomeLabels, Counter>,
    stage_s: Family<StageLabels, Histogram, fn() -> Histogram>,
    segment_score: Histogram,
    story_score: Histogram,
    segment_reward: Histogram,
    compute_cost: FloatCounter,
    request_transfer_s: Family<KindLabels, FloatCounter>,
    decisions: Family<DecisionLabels, Counter>,
    refusals: Family<RefusalLabels, Counter>,
    first_piece_s: Histogram,
    cost: netmoe_common::cost::CostModel,
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
            shannon_bps: Family::default(),
            tokens_per_s: Family::default(),
            slots: Family::default(),
            active: Family::default(),
            queued: Family::default(),
            quarantined: Family::default(),
            violations: Family::default(),
            requests: Family::default(),
            stage_s: Family::new_with_constructor(seconds_histogram),
            segment_score: score_histogram(),
            story_score: score_histogram(),
            segment_reward: Histogram::new(linear_buckets(-2.0, 1.0, 13)),
            compute_cost: FloatCounter::default(),
            request_transfer_s: Family::default(),
            decisions: Family::default(),
            refusals: Family::default(),
            first_piece_s: seconds_histogram(),
            cost: Default::default(),
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
            "link_goodput_bytes_per_second",
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
        r.register(
            "node_shannon_rate_bytes_per_second",
            "B*log2(1+SNR)/8 at a node's latest SNR, the cost model's rate",
            m.shannon_bps.clone(),
        );
        r.register(
            "node_tokens_per_second",
            "Generation speed a node reported",
            m.tokens_per_s.clone(),
        );
        r.register("node_slots", "Generation slots of a node", m.slots.clone());
        r.register(
            "node_active",
            "Generations a node is running",
            m.active.clone(),
        );
        r.register(
            "node_queued",
            "Requests waiting in a node's queue",
            m.queued.clone(),
        );
        r.register(
            "node_quarantined",
            "1 while a node is quarantined (not routed to)",
            m.quarantined.clone(),
        );
        r.register(
            "node_violations",
            "Rejected reports counted on a node",
            m.violations.clone(),
        );
        r.register(
            "requests",
            "Ask requests by outcome (ok, partial, refused)",
            m.requests.clone(),
        );
        r.register(
            "request_stage_seconds",
            "Seconds of an answered request by stage (gate, route, dispatch, fusion, judge, total)",
            m.stage_s.clone(),
        );
        r.register(
            "segment_score",
            "Judge score of each answered segment, 0-10",
            m.segment_score.clone(),
        );
        r.register(
            "story_score",
            "Judge score of each answered story, 0-10",
            m.story_score.clone(),
        );
        r.register(
            "segment_reward",
            "Reward of each answered segment (the cost model)",
            m.segment_reward.clone(),
        );
        r.register(
            "compute_cost",
            "Compute cost of the answered segments (cost model units)",
            m.compute_cost.clone(),
        );
        r.register(
            "request_transfer_seconds",
            "Transfer seconds of answered requests, simulated and measured",
            m.request_transfer_s.clone(),
        );
        r.register(
            "routing_decisions",
            "Segments routed, by the policy that decided and the node that answered",
            m.decisions.clone(),
        );
        r.register(
            "refusals",
            "Refused or failed requests by reason and gRPC code",
            m.refusals.clone(),
        );
        r.register(
            "first_piece_seconds",
            "Seconds from a streamed request's arrival to its first text",
            m.first_piece_s.clone(),
        );
        Self { registry: r, ..m }
    }

    /// Uses `cost` for the Shannon rate of each node.
    pub fn with_cost(self, cost: netmoe_common::cost::CostModel) -> Self {
        Self { cost, ..self }
    }

    /// Counts an answered request: its stages, scores, rewards, costs and
    /// routing decisions.
    pub fn observe_answer(&self, r: &v1::AskResponse) {
        let outcome = if r.partial { "partial" } else { "ok" };
        self.requests
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
        if let Some(t) = &r.timings {
            for (stage, v) in [
                ("gate", t.gate_s),
                ("route", t.route_s),
                ("dispatch", t.dispatch_s),
                ("fusion", t.fusion_s),
                ("judge", t.judge_s),
                ("total", t.total_s),
            ] {
                self.stage_s
                    .get_or_create(&StageLabels {
                        stage: stage.into(),
                    })
                    .observe(v);
            }
        }
        self.story_score.observe(r.score);
        for s in r.segments.iter().filter(|s| s.error.is_empty()) {
            self.segment_score.observe(s.score);
            self.segment_reward.observe(s.reward);
            self.compute_cost.inc_by(s.compute_cost.max(0.0));
            self.decisions
                .get_or_create(&DecisionLabels {
                    policy: r.policy.clone(),
                    node: s.target.clone(),
                })
                .inc();
        }
        if let Some(t) = &r.totals {
            for (kind, v) in [
                ("simulated", t.sim_transfer_s),
                ("measured", t.measured_transfer_s),
            ] {
                self.request_transfer_s
                    .get_or_create(&KindLabels { kind: kind.into() })
                    .inc_by(v.max(0.0));
            }
        }
        self.observe_segments(&r.segments);
    }

    /// Counts a refused or failed request.
    pub fn observe_refusal(&self, reason: &str, code: tonic::Code) {
        self.requests
            .get_or_create(&OutcomeLabels {
                outcome: "refused".into(),
            })
            .inc();
        self.refusals
            .get_or_create(&RefusalLabels {
                reason: reason.into(),
                code: format!("{code:?}"),
            })
            .inc();
    }

    /// Times a streamed request's first text.
    pub fn observe_first_piece(&self, seconds: f64) {
        self.first_piece_s.observe(seconds);
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
        for f in [&self.shannon_bps, &self.tokens_per_s] {
            f.clear();
        }
        for f in [
            &self.slots,
            &self.active,
            &self.queued,
            &self.quarantined,
            &self.violations,
        ] {
            f.clear();
        }
        for n in nodes.list() {
            let Some(info) = &n.info else { continue };
            let node = NodeLabels {
                node: info.node_id.clone(),
            };
            self.live.get_or_create(&node).set(i64::from(n.live));
            if let Some(snr) = &n.snr {
                self.snr_db.get_or_create(&node).set(snr.snr_db);
                self.shannon_bps
                    .get_or_create(&node)
                    .set(self.cost.shannon_rate_bps(snr.snr_db) / 8.0);
            }
            self.tokens_per_s
                .get_or_create(&node)
                .set(n.tokens_per_second);
            if let Some(l) = &n.load {
                self.slots.get_or_create(&node).set(i64::from(l.slots));
                self.active.get_or_create(&node).set(i64::from(l.active));
                self.queued.get_or_create(&node).set(i64::from(l.queued));
            }
            self.quarantined
                .get_or_create(&node)
                .set(i64::from(!n.quarantined.is_empty()));
            self.violations
                .get_or_create(&node)
                .set(i64::from(n.violations));
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
                        .set(v / 8.0);
                }
            }
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// A scrape of `metrics`: OpenMetrics when `headers` ask for it, else the
/// Prometheus text format (see [`netmoe_common::prom`]).
pub fn scrape(
    metrics: &Metrics,
    nodes: &Registry,
    headers: &axum::http::HeaderMap,
) -> axum::response::Response {
    netmoe_edge_node::metrics::text_response(metrics.render(nodes), headers)
}

/// Serves `/metrics` on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    nodes: Arc<Registry>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    async fn get(
        State((m, n)): State<(Arc<Metrics>, Arc<Registry>)>,
        headers: axum::http::HeaderMap,
    ) -> impl IntoResponse {
        scrape(&m, &n, &headers)
    }
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(get))
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
