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
                "candidates": s.candidates.iter().map(|c| json!({
                    "target": c.target, "expert": c.expert, "relevance": c.relevance,
                    "gate_weight": c.gate_weight, "snr_db": c.snr_db, "rate_bps": c.rate_bps,
                    "expected_words": c.expected_words, "expected_compute_cost": c.expected_compute_cost,
                    "expected_transfer_s": c.expected_transfer_s, "value": c.value,
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
        },
        "timings": {
            "gate_s": tm.gate_s, "route_s": tm.route_s, "dispatch_s": tm.dispatch_s, "fusion_s": tm.fusion_s,
            "judge_s": tm.judge_s, "total_s": tm.total_s, "model_s": tm.model_s, "overhead_s": tm.overhead_s,
        },
    })
}
