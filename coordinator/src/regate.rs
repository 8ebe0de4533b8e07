//! `coordinator regate`: recompute the gate's relevance and weights of every
//! row of a routing dataset with the gate the coordinator serves with now,
//! so that a policy trained on the dataset sees the same relevance features
//! as a live request after the gate changes. Scores, texts and costs are
//! kept: only what the gate computes is replaced.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use netmoe_edge_node::ExpertProfile;

use crate::analyzer::AnalyzerError;
use crate::collect::DatasetRow;
use crate::gate::{Domain, Gate};

/// Errors of a regate.
#[derive(Debug, thiserror::Error)]
pub enum RegateError {
    /// A row names an expert whose profile is not known.
    #[error("row of prompt {prompt} names expert {expert:?}, which has no known profile")]
    UnknownExpert {
        /// The row's prompt id.
        prompt: String,
        /// The expert it names.
        expert: String,
    },
    /// The gate failed.
    #[error(transparent)]
    Gate(#[from] AnalyzerError),
    /// The gate's model could not be loaded.
    #[error(transparent)]
    Load(#[from] crate::app::BuildError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A line of the dataset is not a row.
    #[error("{path} line {line}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// Why.
        source: serde_json::Error,
    },
}

/// `coordinator regate`: reads the dataset at `input`, recomputes its gate
/// columns with the serving gate (all-MiniLM-L6-v2 from `cache`) over the
/// shipped experts' profiles, and writes it to `output` (which may be
/// `input`; the file is replaced whole). Returns the segments scored.
pub async fn run_regate(input: &Path, output: &Path, cache: &Path) -> Result<usize, RegateError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| RegateError::Io { path, source }
    };
    let text = std::fs::read_to_string(input).map_err(io(input))?;
    let mut rows = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        rows.push(serde_json::from_str::<DatasetRow>(line).map_err(|source| {
            RegateError::Parse {
                path: input.display().to_string(),
                line: i + 1,
                source,
            }
        })?);
    }
    let cache = cache.to_owned();
    let minilm = tokio::task::spawn_blocking(move || crate::app::load_minilm(&cache, true))
        .await
        .map_err(|e| AnalyzerError::Decode(e.to_string()))??;
    let gate = Gate::new(
        crate::gate::Embedder::MiniLm(minilm),
        crate::gate::MINILM_GATE_TEMPERATURE,
    );
    let n = regate(&gate, &mut rows, &shipped_domains()).await?;
    let mut out = String::with_capacity(text.len());
    for r in &rows {
        out.push_str(&serde_json::to_string(r).expect("a row serialises"));
        out.push('\n');
    }
    let tmp = output.with_extension("regate.tmp");
    std::fs::write(&tmp, out).map_err(io(&tmp))?;
    std::fs::rename(&tmp, output).map_err(io(output))?;
    Ok(n)
}

/// The experts a shipped dataset is collected on: the shipped profiles and
/// the coordinator's own (generic) expert, by name.
pub fn shipped_domains() -> HashMap<String, Domain> {
    let mut out: HashMap<String, Domain> = netmoe_edge_node::profile::BUILTIN
        .iter()
        .map(|(_, toml)| {
            let p = ExpertProfile::parse(toml).expect("shipped profile parses");
            (p.name.clone(), domain_of(&p))
        })
        .collect();
    let g = ExpertProfile::generic();
    out.insert(g.name.clone(), domain_of(&g));
    out
}

fn domain_of(p: &ExpertProfile) -> Domain {
    Domain {
        line: p.domain.clone(),
        examples: p.examples.clone(),
    }
}

/// The rows of one (prompt, segment): its text, the experts they name in
/// order of first appearance, and their indices in the dataset.
struct SegmentRows {
    segment: String,
    experts: Vec<String>,
    members: Vec<usize>,
}

/// Rewrites `relevance` and `gate_weight` of every row with `gate`: per
/// (prompt, segment), the segment is scored against the domains of the
/// experts its rows name, as the gate scores a request's candidates.
/// Returns the number of segments scored.
pub async fn regate(
    gate: &Gate,
    rows: &mut [DatasetRow],
    domains: &HashMap<String, Domain>,
) -> Result<usize, RegateError> {
    // (prompt, segment index) -> the segment's text, its experts in order
    // of first appearance and its row indices.
    let mut segments: BTreeMap<(String, u32), SegmentRows> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        if !domains.contains_key(&r.expert) {
            return Err(RegateError::UnknownExpert {
                prompt: r.prompt_id.clone(),
                expert: r.expert.clone(),
            });
        }
        let e = segments
            .entry((r.prompt_id.clone(), r.segment_index))
            .or_insert_with(|| SegmentRows {
                segment: r.segment.clone(),
                experts: Vec::new(),
                members: Vec::new(),
            });
        if !e.experts.contains(&r.expert) {
            e.experts.push(r.expert.clone());
        }
        e.members.push(i);
    }
    for SegmentRows {
        segment,
        experts,
        members,
    } in segments.values()
    {
        let ds: Vec<Domain> = experts.iter().map(|e| domains[e].clone()).collect();
        let rel = gate.relevance(std::slice::from_ref(segment), &ds).await?;
        for &i in members {
            let j = experts
                .iter()
                .position(|e| *e == rows[i].expert)
                .expect("every member's expert is listed");
            rows[i].relevance = rel.cosine[0][j];
            rows[i].gate_weight = rel.weights[0][j];
        }
    }
    Ok(segments.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::{Embedder, MINILM_GATE_TEMPERATURE};

    fn row(prompt: &str, seg: u32, segment: &str, expert: &str, sample: u32) -> DatasetRow {
        DatasetRow {
            prompt_id: prompt.into(),
            prompt: "p".into(),
            n_segments: 2,
            segment_index: seg,
            segment: segment.into(),
            sample,
            expert: expert.into(),
            local: expert == "generalist",
            relevance: -9.0,
            gate_weight: -9.0,
            score: 5.0,
            words: 40,
            generated_tokens: 60,
            prompt_tokens: 30,
            prompt_eval_s: 0.1,
            generation_s: 1.0,
            bytes_up: 100,
            bytes_down: 1000,
            text: "t".into(),
        }
    }

    #[tokio::test]
    async fn rows_get_the_serving_gates_relevance_and_keep_the_rest() {
        let test = "rows_get_the_serving_gates_relevance_and_keep_the_rest";
        let Some(m) = crate::gate::minilm::test_model(test) else {
            return;
        };
        let gate = Gate::new(Embedder::MiniLm(m), MINILM_GATE_TEMPERATURE);
        let experts = ["fantasy", "scifi", "nature", "generalist"];
        let mut rows = Vec::new();
        for (seg, text) in [
            (0, "a knight rides out to face a dragon"),
            (1, "a robot repairs a starship"),
        ] {
            for e in experts {
                for k in 0..2 {
                    rows.push(row("p1", seg, text, e, k));
                }
            }
        }
        let before = rows.clone();
        let n = regate(&gate, &mut rows, &shipped_domains()).await.unwrap();
        assert_eq!(n, 2);
        let weight = |seg: u32, e: &str| {
            rows.iter()
                .find(|r| r.segment_index == seg && r.expert == e)
                .unwrap()
                .gate_weight
        };
        // Each segment's weights are a softmax over its four experts, the
        // same for every sample, and its domain's expert leads.
        for seg in 0..2 {
            let sum: f64 = experts.iter().map(|e| weight(seg, e)).sum();
            assert!((sum - 1.0).abs() < 1e-9, "{sum}");
        }
        assert!(
            experts
                .iter()
                .all(|e| *e == "fantasy" || weight(0, "fantasy") > weight(0, e))
        );
        assert!(
            experts
                .iter()
                .all(|e| *e == "scifi" || weight(1, "scifi") > weight(1, e))
        );
        for (a, b) in rows.iter().zip(&before) {
            assert!(a.relevance > -1.0 && a.relevance <= 1.0);
            assert_eq!((a.score, &a.text, a.words), (b.score, &b.text, b.words));
            let twin = rows
                .iter()
                .find(|r| r.segment_index == a.segment_index && r.expert == a.expert)
                .unwrap();
            assert_eq!(a.relevance, twin.relevance);
        }

        rows.push(row("p2", 0, "x", "poetry", 0));
        let err = regate(&gate, &mut rows, &shipped_domains())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("\"poetry\""), "{err}");
    }
}
