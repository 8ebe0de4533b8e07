//! Gate accuracy: how often a segment's most relevant expert is the one of
//! its labelled domain, on a labelled prompt set with six experts (the three
//! shipped profiles and three written as a user would, in
//! `coordinator/data/gate/profiles/`).
//!
//! The set (`coordinator/data/gate/prompts.jsonl`, 80 prompts, 180 segments,
//! 30 per domain) was written before any gate setting was chosen and is split
//! by prompt: `tune` (g001-g040) may inform choices, `heldout` (g041-g080) is
//! only reported.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Deserialize;

use super::{Domain, Gate};
use crate::analyzer::AnalyzerError;

/// The shipped labelled prompts, compiled in.
pub const SHIPPED_GATE_SET: &str = include_str!("../../data/gate/prompts.jsonl");

/// The user-written profiles of the set, compiled in (name, TOML).
pub const USER_PROFILES: &[(&str, &str)] = &[
    (
        "everyday",
        include_str!("../../data/gate/profiles/everyday.toml"),
    ),
    (
        "mystery",
        include_str!("../../data/gate/profiles/mystery.toml"),
    ),
    (
        "history",
        include_str!("../../data/gate/profiles/history.toml"),
    ),
];

/// One labelled segment.
#[derive(Debug, Clone, Deserialize)]
pub struct LabelledSegment {
    /// The clause.
    pub text: String,
    /// The expert (profile name) it belongs to.
    pub domain: String,
}

/// One labelled prompt.
#[derive(Debug, Clone, Deserialize)]
pub struct LabelledPrompt {
    /// Stable id.
    pub id: String,
    /// `tune` or `heldout`.
    pub split: String,
    /// Its segments, in order.
    pub segments: Vec<LabelledSegment>,
}

/// The experts of the set: (name, domain), shipped ones first.
pub fn experts() -> Vec<(String, Domain)> {
    netmoe_edge_node::profile::BUILTIN
        .iter()
        .chain(USER_PROFILES)
        .map(|(_, toml)| {
            let p = netmoe_edge_node::ExpertProfile::parse(toml).expect("shipped profile parses");
            let domain = Domain {
                line: p.domain,
                examples: p.examples,
            };
            (p.name, domain)
        })
        .collect()
}

/// Reads the labelled prompts (JSON Lines; blank lines skipped).
pub fn parse_set(jsonl: &str) -> Result<Vec<LabelledPrompt>, serde_json::Error> {
    jsonl
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect()
}

/// Hits and totals of one split.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SplitScore {
    /// Segments whose top expert is their domain.
    pub correct: usize,
    /// Segments.
    pub total: usize,
    /// Per domain: (correct, total).
    pub per_domain: BTreeMap<String, (usize, usize)>,
    /// Misrouted segments: (text, labelled, chosen).
    pub misses: Vec<(String, String, String)>,
}

impl SplitScore {
    /// Share correct, 0-1.
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.total.max(1) as f64
    }
}

/// Accuracy of one gate, per split.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GateReport {
    /// The embedder measured.
    pub embedder: String,
    /// By split name.
    pub splits: BTreeMap<String, SplitScore>,
    /// Mean cosine gap between the top and the second expert.
    pub mean_margin: f64,
}

/// Scores every segment of `set` against `experts` with `gate`.
pub async fn evaluate(
    gate: &Gate,
    set: &[LabelledPrompt],
    experts: &[(String, Domain)],
) -> Result<GateReport, AnalyzerError> {
    let domains: Vec<Domain> = experts.iter().map(|(_, d)| d.clone()).collect();
    let mut report = GateReport {
        embedder: format!("{}/{:?}", gate.embedder(), gate.scoring()).to_lowercase(),
        ..Default::default()
    };
    let mut margins = Vec::new();
    for p in set {
        let texts: Vec<String> = p.segments.iter().map(|s| s.text.clone()).collect();
        let rel = gate.relevance(&texts, &domains).await?;
        let split = report.splits.entry(p.split.clone()).or_default();
        for (s, row) in p.segments.iter().zip(&rel.cosine) {
            let mut order: Vec<usize> = (0..row.len()).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            let chosen = &experts[order[0]].0;
            margins.push(row[order[0]] - row[order.get(1).copied().unwrap_or(order[0])]);
            let hit = *chosen == s.domain;
            split.total += 1;
            split.correct += usize::from(hit);
            let d = split.per_domain.entry(s.domain.clone()).or_default();
            d.0 += usize::from(hit);
            d.1 += 1;
            if !hit {
                split
                    .misses
                    .push((s.text.clone(), s.domain.clone(), chosen.clone()));
            }
        }
    }
    report.mean_margin = margins.iter().sum::<f64>() / margins.len().max(1) as f64;
    Ok(report)
}

/// A side-by-side table of reports.
pub fn render(reports: &[GateReport]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<18} {:>16} {:>16} {:>12}",
        "embedder", "tune", "held-out", "top-2 margin"
    );
    for r in reports {
        let cell = |name: &str| {
            r.splits.get(name).map_or("-".to_owned(), |s| {
                format!("{}/{} {:.1}%", s.correct, s.total, 100.0 * s.accuracy())
            })
        };
        let _ = writeln!(
            o,
            "{:<18} {:>16} {:>16} {:>12.3}",
            r.embedder,
            cell("tune"),
            cell("heldout"),
            r.mean_margin
        );
    }
    for r in reports {
        if let Some(h) = r.splits.get("heldout") {
            let per: Vec<String> = h
                .per_domain
                .iter()
                .map(|(d, (c, t))| format!("{d} {c}/{t}"))
                .collect();
            let _ = writeln!(o, "{} held-out by domain: {}", r.embedder, per.join(", "));
            for (text, want, got) in &h.misses {
                let _ = writeln!(o, "  {} miss: {text:?} ({want} -> {got})", r.embedder);
            }
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_set_is_balanced_and_labels_known_experts() {
        let set = parse_set(SHIPPED_GATE_SET).unwrap();
        let names: Vec<String> = experts().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names.len(), 6);
        let mut per: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for p in &set {
            assert!(p.split == "tune" || p.split == "heldout", "{}", p.id);
            for s in &p.segments {
                assert!(names.contains(&s.domain), "{}: {}", p.id, s.domain);
                *per.entry((p.split.as_str(), s.domain.as_str()))
                    .or_default() += 1;
            }
        }
        assert_eq!(per.len(), 12, "every domain in both splits");
        assert!(per.values().all(|&n| n >= 10), "{per:?}");
    }
}
