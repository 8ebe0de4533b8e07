//! Presenting an answer: the story, its score, the per-segment cost table
//! with totals, the routing explanations, and the timing split; or the
//! same as JSON.

use std::fmt::Write;

use netmoe_proto::v1;
use serde_json::{Value, json};

fn cut(s: &str, n: usize) -> String {
    let s = s.replace('\n', " ");
    if s.chars().count() <= n {
        s
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

/// The answer as a human-readable report.
pub fn table(r: &v1::AskResponse) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "── story ({} words, judge {} = {:.2}/10, fusion coverage {:.2}) ──",
        r.story.split_whitespace().count(),
        r.judge,
        r.score,
        r.fusion_coverage
    );
    let _ = writeln!(o, "{}\n", r.story.trim());
    let _ = writeln!(o, "── segments (policy: {}) ──", r.policy);
    let _ = writeln!(
        o,
        "{:>2} {:<30} {:<14} {:<9} {:>5} {:>6} {:>5} {:>4} {:>5} {:>7} {:>8} {:>8} {:>7} {:>6} {:>7}",
        "#",
        "segment",
        "node",
        "expert",
        "rel",
        "SNR dB",
        "words",
        "tok",
        "score",
        "compute",
        "sim tx s",
        "wire tx s",
        "bytes",
        "lat s",
        "reward"
    );
    for s in &r.segments {
        let _ = writeln!(
            o,
            "{:>2} {:<30} {:<14} {:<9} {:>5.3} {:>6} {:>5} {:>4} {:>5.2} {:>7.3} {:>8.4} {:>9.4} {:>7} {:>6.2} {:>7.3}",
            s.index,
            cut(&s.segment, 30),
            cut(&s.target, 14),
            cut(&s.expert, 9),
            s.relevance,
            if s.target == crate::policy::LOCAL_TARGET {
                "-".to_owned()
            } else {
                format!("{:.1}", s.snr_db)
            },
            s.words,
            s.generated_tokens,
            s.score,
            s.compute_cost,
            s.sim_transfer_s,
            s.measured_transfer_s,
            s.measured_bytes_up + s.measured_bytes_down,
            s.latency_s,
            s.reward
        );
    }
    if let Some(t) = &r.totals {
        let _ = writeln!(
            o,
            "{:>2} {:<30} {:<14} {:<9} {:>5} {:>6} {:>5} {:>4} {:>5} {:>7.3} {:>8.4} {:>9.4} {:>7} {:>6} {:>7.3}",
            "Σ",
            "total",
            "",
            "",
            "",
            "",
            t.words,
            t.generated_tokens,
            "",
            t.compute_cost,
            t.sim_transfer_s,
            t.measured_transfer_s,
            t.measured_bytes,
            "",
            t.reward
        );
        let _ = writeln!(
            o,
            "simulated radio energy {:.4} J for {} payload bits",
            t.sim_energy_j, t.payload_bits
        );
    }
    transfer_table(&mut o, r);
    let _ = writeln!(o, "\n── why ──");
    for s in &r.segments {
        let _ = writeln!(o, "{}: {}", s.index, s.explanation);
        if !s.error.is_empty() {
            let _ = writeln!(o, "   FAILED after {} tries: {}", s.attempts, s.error);
        }
    }
    if let Some(t) = &r.timings {
        let _ = writeln!(
            o,
            "\n── time ── total {:.2}s = gate {:.2} + route {:.4} + dispatch {:.2} + fusion {:.2} + judge {:.2}; model work {:.2}s, coordination overhead {:.3}s ({:.2}%)",
            t.total_s,
            t.gate_s,
            t.route_s,
            t.dispatch_s,
            t.fusion_s,
            t.judge_s,
            t.model_s,
            t.overhead_s,
            100.0 * t.overhead_s / t.total_s.max(1e-9)
        );
    }
    if r.partial {
        let _ = writeln!(
            o,
            "PARTIAL: some segments failed; the story holds the rest."
        );
    }
    o
}

/// Simulated and measured transfer of each segment, side by side.
fn transfer_table(o: &mut String, r: &v1::AskResponse) {
    let _ = writeln!(
        o,
        "\n── transfer: Shannon model vs the wire ──\n{:>2} {:<14} {:<5} {:>6} {:>9} {:>7} {:>8} {:>9} | {:>6} {:>7} {:>15} {:>8} {:>9} {:>10} {:>7}",
        "#",
        "node",
        "via",
        "SNR dB",
        "rate b/s",
        "bits",
        "sim tx s",
        "sim J",
        "up B",
        "down B",
        "UDP up/down B",
        "paced s",
        "wire tx s",
        "probe b/s",
        "RTT ms"
    );
    for s in &r.segments {
        if s.transport == "local" || s.target == crate::policy::LOCAL_TARGET {
            let _ = writeln!(
                o,
                "{:>2} {:<14} {:<5} (no radio: the coordinator's own expert)",
                s.index,
                cut(&s.target, 14),
                "local"
            );
            continue;
        }
        let chosen = s.candidates.iter().find(|c| c.target == s.target);
        let udp = if s.transport == "quic" {
            format!(
                "{}/{}{}",
                s.wire_bytes_up,
                s.wire_bytes_down,
                if s.wire_bytes_shared { "*" } else { "" }
            )
        } else {
            "-".into()
        };
        let probe = chosen.filter(|c| c.measured_goodput_bps > 0.0).map_or(
            ("-".to_owned(), "-".to_owned()),
            |c| {
                (
                    format!("{:.0}", c.measured_goodput_bps),
                    format!("{:.2}", c.measured_rtt_ms),
                )
            },
        );
        let _ = writeln!(
            o,
            "{:>2} {:<14} {:<5} {:>6.1} {:>9.0} {:>7} {:>8.4} {:>9.5} | {:>6} {:>7} {:>15} {:>8.3} {:>9.4} {:>10} {:>7}",
            s.index,
            cut(&s.target, 14),
            s.transport,
            s.snr_db,
            s.rate_bps,
            s.payload_bits,
            s.sim_transfer_s,
            s.sim_energy_j,
            s.measured_bytes_up,
            s.measured_bytes_down,
            udp,
            s.paced_s,
            s.measured_transfer_s,
            probe.0,
            probe.1
        );
    }
    let _ = writeln!(
        o,
        "sim: payload bits at B·log2(1+SNR); wire tx s: latency minus the node's model time (streaming overlaps sending with generation); paced s: time the node waited for its emulated channel; UDP bytes from quinn (* = shared with other streams)"
    );
}

/// The nodes a coordinator knows, with their last link probe.
pub fn nodes_table(nodes: &[v1::NodeStatus]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<20} {:<10} {:<22} {:<5} {:>7} {:>7} {:>7} {:>9} {:>11} {:>11} {:>7} endpoint",
        "node",
        "expert",
        "model (layout)",
        "live",
        "SNR dB",
        "tok/s",
        "load",
        "RTT ms",
        "down b/s",
        "up b/s",
        "probed"
    );
    for n in nodes {
        let info = n.info.clone().unwrap_or_default();
        let load = n.load.unwrap_or_default();
        let (rtt, down, up, age) = match &n.link {
            Some(l) if l.ok => (
                format!("{:.2}", l.echo_rtt_ms),
                format!("{:.0}", l.down_goodput_bps),
                format!("{:.0}", l.up_goodput_bps),
                format!("{:.0}s ago", l.age_ms as f64 / 1e3),
            ),
            Some(_) => ("failed".into(), "-".into(), "-".into(), "-".into()),
            None => ("-".into(), "-".into(), "-".into(), "never".into()),
        };
        let _ = writeln!(
            o,
            "{:<20} {:<10} {:<22} {:<5} {:>7.2} {:>7.1} {:>3}/{:<3} {:>9} {:>11} {:>11} {:>7} {}",
            info.node_id,
            info.profile.map(|p| p.name).unwrap_or_default(),
            info.model
                .map(|m| format!("{} ({})", m.name, m.layout))
                .unwrap_or_default(),
            if !n.quarantined.is_empty() {
                "quar"
            } else if n.live {
                "yes"
            } else {
                "no"
            },
            n.snr.as_ref().map_or(0.0, |s| s.snr_db),
            n.tokens_per_second,
            load.active + load.queued,
            load.slots,
            rtt,
            down,
            up,
            age,
            n.endpoint
        );
        if !n.quarantined.is_empty() {
            let _ = writeln!(o, "  quarantined (not routed to): {}", n.quarantined);
        } else if n.violations > 0 {
            let _ = writeln!(
                o,
                "  {} rejected report(s); last: {}",
                n.violations, n.last_violation
            );
        }
    }
    o
}

/// Link probes as a table.
pub fn probe_table(probes: &[v1::LinkProbe]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<20} {:>8} {:>8} {:>12} {:>12} {:>9} {:>7} {:>8} {:>7} {:>12} {:>11} {:>10} {:>11}",
        "node",
        "RTT ms",
        "path ms",
        "down b/s",
        "up b/s",
        "bytes",
        "lost",
        "loss %",
        "cwnd",
        "UDP tx/rx B",
        "framed ok",
        "SNR dB",
        "Shannon b/s"
    );
    for p in probes {
        if !p.ok {
            let _ = writeln!(o, "{:<20} FAILED: {}", p.node_id, p.error);
            continue;
        }
        let framed_ok = p.down_framed_bytes_sent == p.down_framed_bytes_received
            && p.up_framed_bytes_sent == p.up_framed_bytes_received;
        let _ = writeln!(
            o,
            "{:<20} {:>8.3} {:>8.3} {:>12.0} {:>12.0} {:>9} {:>7} {:>8.3} {:>7} {:>12} {:>11} {:>10.2} {:>11.0}",
            p.node_id,
            p.echo_rtt_ms,
            p.path_rtt_ms,
            p.down_goodput_bps,
            p.up_goodput_bps,
            p.probe_bytes,
            p.packets_lost,
            100.0 * p.loss_rate,
            p.cwnd_bytes,
            format!("{}/{}", p.wire_bytes_tx, p.wire_bytes_rx),
            if framed_ok { "yes" } else { "NO" },
            p.snr_db,
            p.shannon_rate_bps
        );
    }
    o
}

/// A node as JSON: what `nodes --json` prints and the dashboard shows (a
/// NaN SNR, before the first report, is null).
pub fn node_json(n: &v1::NodeStatus) -> Value {
    let info = n.info.clone().unwrap_or_default();
    let profile = info.profile.unwrap_or_default();
    let model = info.model.unwrap_or_default();
    let load = n.load.unwrap_or_default();
    let snr = n.snr.as_ref().map(|s| s.snr_db).filter(|s| s.is_finite());
    let ok_link = n.link.as_ref().filter(|l| l.ok);
    json!({
        "id": info.node_id, "endpoint": n.endpoint,
        "expert": profile.name, "domain": profile.domain,
        "model": model.name, "layout": model.layout,
        "live": n.live, "snr_db": snr, "tokens_per_second": n.tokens_per_second,
        "active": load.active, "queued": load.queued, "slots": load.slots,
        "quarantined": n.quarantined, "violations": n.violations,
        "last_violation": n.last_violation,
        "rtt_ms": ok_link.map(|l| l.echo_rtt_ms),
        "goodput_bps": ok_link.map(|l| l.down_goodput_bps),
        "link": n.link.as_ref().map(probe_json),
    })
}

/// A link probe as JSON.
pub fn probe_json(p: &v1::LinkProbe) -> Value {
    json!({
        "node_id": p.node_id, "ok": p.ok, "error": p.error,
        "echo_rtt_ms": p.echo_rtt_ms, "path_rtt_ms": p.path_rtt_ms,
        "down_goodput_bps": p.down_goodput_bps, "up_goodput_bps": p.up_goodput_bps,
        "probe_bytes": p.probe_bytes,
        "down_framed_bytes_sent": p.down_framed_bytes_sent, "down_framed_bytes_received": p.down_framed_bytes_received,
        "up_framed_bytes_sent": p.up_framed_bytes_sent, "up_framed_bytes_received": p.up_framed_bytes_received,
        "wire_bytes_tx": p.wire_bytes_tx, "wire_bytes_rx": p.wire_bytes_rx,
        "packets_sent": p.packets_sent, "packets_lost": p.packets_lost, "loss_rate": p.loss_rate,
        "cwnd_bytes": p.cwnd_bytes, "snr_db": p.snr_db, "shannon_rate_bps": p.shannon_rate_bps,
        "down_paced_s": p.down_paced_s, "age_ms": p.age_ms,
    })
}

/// The answer as JSON (every field of the contract).
pub fn json(r: &v1::AskResponse) -> Value {
    let segments: Vec<Value> = r
        .segments
        .iter()
        .map(|s| {
            json!({
                "index": s.index, "segment": s.segment, "target": s.target, "expert": s.expert,
                "text": s.text, "relevance": s.relevance, "gate_weight": s.gate_weight,
                "snr_db": s.snr_db, "rate_bps": s.rate_bps, "words": s.words,
                "prompt_tokens": s.prompt_tokens, "generated_tokens": s.generated_tokens,
                "score": s.score, "compute_cost": s.compute_cost, "payload_bits": s.payload_bits,
                "sim_transfer_s": s.sim_transfer_s, "sim_energy_j": s.sim_energy_j,
                "measured_bytes_up": s.measured_bytes_up, "measured_bytes_down": s.measured_bytes_down,
                "measured_transfer_s": s.measured_transfer_s, "latency_s": s.latency_s,
                "model_seconds": s.model_seconds, "reward": s.reward, "attempts": s.attempts,
                "error": s.error, "explanation": s.explanation,
                "transport": s.transport, "wire_bytes_up": s.wire_bytes_up,
                "wire_bytes_down": s.wire_bytes_down, "wire_bytes_shared": s.wire_bytes_shared,
                "paced_s": s.paced_s, "history_turns": s.history_turns,
                "candidates": s.candidates.iter().map(|c| json!({
                    "target": c.target, "expert": c.expert, "relevance": c.relevance,
                    "gate_weight": c.gate_weight, "snr_db": c.snr_db, "rate_bps": c.rate_bps,
                    "expected_words": c.expected_words, "expected_compute_cost": c.expected_compute_cost,
                    "expected_transfer_s": c.expected_transfer_s, "value": c.value,
                    "measured_goodput_bps": c.measured_goodput_bps, "measured_rtt_ms": c.measured_rtt_ms,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let t = r.totals.unwrap_or_default();
    let tm = r.timings.unwrap_or_default();
    json!({
        "request_id": r.request_id, "policy": r.policy, "judge": r.judge, "story": r.story,
        "score": r.score, "fusion_coverage": r.fusion_coverage, "partial": r.partial,
        "segments": segments,
        "totals": {
            "words": t.words, "generated_tokens": t.generated_tokens, "compute_cost": t.compute_cost,
            "payload_bits": t.payload_bits, "sim_transfer_s": t.sim_transfer_s, "sim_energy_j": t.sim_energy_j,
            "measured_bytes": t.measured_bytes, "measured_transfer_s": t.measured_transfer_s, "reward": t.reward,
            "wire_bytes": t.wire_bytes,
        },
        "timings": {
            "gate_s": tm.gate_s, "route_s": tm.route_s, "dispatch_s": tm.dispatch_s, "fusion_s": tm.fusion_s,
            "judge_s": tm.judge_s, "total_s": tm.total_s, "model_s": tm.model_s, "overhead_s": tm.overhead_s,
        },
    })
}
