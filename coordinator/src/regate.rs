//! `coordinator regate`: recompute the gate's relevance and weights of every
//! row of a routing dataset with the gate the coordinator serves with now,
//! so that a policy trained on the dataset sees the same relevance features
//! as a live request after the gate changes; with `--scores`, also re-judge
//! every passage with the serving judge after the judge changes. Texts and
//! costs are always kept: only what the gate (and the judge) computes is
//! replaced.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use indicatif::{ProgressBar, ProgressStyle};
use netmoe_common::fetch::{FetchOptions, resolve_model};
use netmoe_edge_node::ExpertProfile;
use netmoe_edge_node::engine::LoadedModel;

use crate::analyzer::{Analyzer, AnalyzerError};
use crate::collect::DatasetRow;
use crate::gate::{Domain, Gate};
use crate::judge::{Judge, JudgeError, JudgeInput, QualityJudge};

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
    /// The judge's model could not be found or fetched.
    #[error(transparent)]
    Fetch(#[from] netmoe_common::fetch::FetchError),
    /// The judge's model could not be loaded.
    #[error(transparent)]
    Engine(#[from] netmoe_edge_node::EngineError),
    /// The judge could not score a passage.
    #[error("row {row} (prompt {prompt}): {source}")]
    Judge {
        /// 0-based row index.
        row: usize,
        /// The row's prompt id.
        prompt: String,
        /// Why.
        source: JudgeError,
    },
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

/// How `regate --scores` re-judges passages: the serving judge (`quality`)
/// on `model`, `jobs` judges side by side.
#[derive(Debug, Clone)]
pub struct RescoreOptions {
    /// The GGUF the judge reads with: a path, URL or catalog name (the
    /// serving judge's is the coordinator's default model).
    pub model: String,
    /// Judges working side by side, each on its own analyzer thread and
    /// llama.cpp context over one loaded model.
    pub jobs: usize,
    /// llama.cpp threads of each judge.
    pub threads: u32,
    /// The `max_tokens` the dataset was collected with. A passage that
    /// used all of them was cut by the budget and is judged on its
    /// complete sentences, as `collect` judged it (rows do not record
    /// the finish reason; generation that stops by itself at exactly
    /// the budget is taken as cut too).
    pub max_tokens: u32,
}

/// `coordinator regate`: reads the dataset at `input`, recomputes its gate
/// columns with the serving gate (all-MiniLM-L6-v2 from `cache`) over the
/// shipped experts' profiles, re-judges every passage when `rescore` is
/// given, and writes it to `output` (which may be `input`; the file is
/// replaced whole, only once everything is done). Returns the segments
/// scored.
pub async fn run_regate(
    input: &Path,
    output: &Path,
    cache: &Path,
    rescore_with: Option<&RescoreOptions>,
) -> Result<usize, RegateError> {
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
    let minilm_cache = cache.to_owned();
    let minilm = tokio::task::spawn_blocking(move || crate::app::load_minilm(&minilm_cache, true))
        .await
        .map_err(|e| AnalyzerError::Decode(e.to_string()))??;
    let gate = Gate::new(
        crate::gate::Embedder::MiniLm(minilm),
        crate::gate::MINILM_GATE_TEMPERATURE,
    );
    let n = regate(&gate, &mut rows, &shipped_domains()).await?;
    if let Some(opts) = rescore_with {
        let judges = load_judges(opts, cache).await?;
        let bar = ProgressBar::new(rows.len() as u64).with_style(
            ProgressStyle::with_template(
                "{bar:40} {pos}/{len} passages judged  {elapsed_precise} (eta {eta})",
            )
            .expect("valid template"),
        );
        rescore(&judges, &mut rows, opts.max_tokens, &bar).await?;
        bar.finish();
    }
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

/// `opts.jobs` quality judges over one load of `opts.model` (blocking
/// work on the blocking pool: may fetch the model).
async fn load_judges(
    opts: &RescoreOptions,
    cache: &Path,
) -> Result<Vec<Box<dyn Judge>>, RegateError> {
    let (model, jobs, threads, cache) = (
        opts.model.clone(),
        opts.jobs.max(1),
        opts.threads,
        cache.to_owned(),
    );
    tokio::task::spawn_blocking(move || -> Result<Vec<Box<dyn Judge>>, RegateError> {
        let fetch = FetchOptions {
            progress: true,
            ..FetchOptions::default()
        };
        let path = resolve_model(&model, &cache, &fetch)?;
        let loaded = LoadedModel::load(&path, 0)?;
        (0..jobs)
            .map(|_| {
                let a = Analyzer::start(loaded.model, threads)?;
                // The serving judge: the quality judge behind the guard.
                Ok(Box::new(crate::judge::guard::Guarded::new(Box::new(
                    QualityJudge::new(a),
                ))) as Box<dyn Judge>)
            })
            .collect()
    })
    .await
    .map_err(|e| AnalyzerError::Decode(e.to_string()))?
}

/// Passages between two progress lines when no terminal shows the bar.
const PROGRESS_EVERY: u64 = 100;

/// Re-judges every row's passage: each judge takes the next unjudged row
/// until none is left, so `judges.len()` passages are scored at a time.
/// A row whose `generated_tokens` reached `max_tokens` is judged on its
/// complete sentences (see [`RescoreOptions::max_tokens`]). The rows are
/// changed only when every passage was scored.
pub async fn rescore(
    judges: &[Box<dyn Judge>],
    rows: &mut [DatasetRow],
    max_tokens: u32,
    bar: &ProgressBar,
) -> Result<(), RegateError> {
    let next = AtomicUsize::new(0);
    let shared: &[DatasetRow] = rows;
    let work = judges.iter().map(|judge| {
        let next = &next;
        async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(r) = shared.get(i) else {
                    return Ok::<_, RegateError>(out);
                };
                let text = if r.generated_tokens >= max_tokens {
                    crate::text::complete_sentences(&r.text)
                } else {
                    &r.text
                };
                let v = judge
                    .score(JudgeInput {
                        task: &r.segment,
                        text,
                    })
                    .await
                    .map_err(|source| RegateError::Judge {
                        row: i,
                        prompt: r.prompt_id.clone(),
                        source,
                    })?;
                out.push((i, v.score));
                bar.inc(1);
                let done = bar.position();
                if bar.is_hidden() && done.is_multiple_of(PROGRESS_EVERY) {
                    // No terminal (a log, CI): a line now and then instead of the bar.
                    eprintln!(
                        "regate: {done}/{} passages judged after {:.0} s, eta {:.0} s",
                        shared.len(),
                        bar.elapsed().as_secs_f64(),
                        bar.eta().as_secs_f64()
                    );
                }
            }
        }
    });
    let scored = futures::future::try_join_all(work).await?;
    for (i, score) in scored.into_iter().flatten() {
        rows[i].score = score;
    }
    Ok(())
}

/// The experts a shipped dataset is collected on: the shipped profiles and
/// the coordinator's own (generic) expert, by name (also by its old name,
/// `local`).
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
    // Datasets collected before the coordinator's expert had its profile's
    // name call it `local`.
    out.insert("local".to_owned(), domain_of(&g));
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

    #[tokio::test]
    async fn rescored_rows_get_the_serving_judges_scores_and_keep_the_rest() {
        let Some(a) = crate::judge::testutil::analyzer() else {
            return;
        };
        let judges: Vec<Box<dyn Judge>> = vec![
            Box::new(QualityJudge::new(a.clone())),
            Box::new(QualityJudge::new(a)),
        ];
        let story = "The knight rode out at dawn. The dragon waited on the hill above the \
                     village. She raised her shield and called its name.";
        let salad = "hill shield the dawn name its rode waited village knight. above called \
                     the raised out on she the";
        let mut rows = vec![
            row("p1", 0, "a knight rides out to face a dragon", "fantasy", 0),
            row("p1", 0, "a knight rides out to face a dragon", "scifi", 0),
            row("p1", 0, "a knight rides out to face a dragon", "nature", 0),
        ];
        rows[0].text = story.into();
        rows[1].text = salad.into();
        // The budget (60 tokens here) cut this one mid-sentence: it is
        // judged on its complete sentences, i.e. as the story itself.
        rows[2].text = format!("{story} Then the");
        let before = rows.clone();
        let bar = ProgressBar::hidden();
        rescore(&judges, &mut rows, 60, &bar).await.unwrap();
        assert_eq!(bar.position(), 3);
        for (a, b) in rows.iter().zip(&before) {
            assert!((0.0..=10.0).contains(&a.score), "{}", a.score);
            assert_ne!(a.score, b.score, "every row is re-judged");
            assert_eq!(
                (&a.text, a.relevance, a.words),
                (&b.text, b.relevance, b.words)
            );
        }
        assert!(rows[0].score > rows[1].score, "{rows:?}");
        assert_eq!(rows[2].score, rows[0].score);
    }
}
