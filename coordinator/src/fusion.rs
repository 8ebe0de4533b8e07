//! Fusion: combine the experts' passages into one story in prompt order,
//! and measure how much of each passage the story kept.
//!
//! Two modes. `model` is the paper's: the coordinator's model is asked to
//! "Combine the following passages together to form a complete story";
//! instruction-tuned models on real boards do this well, but a small base
//! model drops content. `stitch` (the default) keeps every passage, cut to
//! its last complete sentence, in prompt order, so nothing an expert wrote
//! is lost. Coverage is measured the same way for both.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use netmoe_edge_node::engine::{Engine, EngineEvent, GenerateJob};

use crate::analyzer::{Analyzer, AnalyzerError, cosine};

/// The paper's fusion instruction.
pub const FUSION_PROMPT: &str = "Combine the following passages together to form a complete story";
/// Most tokens the model mode writes.
pub const MAX_FUSION_TOKENS: u32 = 384;

/// How passages become a story.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FusionMode {
    /// Keep each passage whole (to its last full sentence), in order.
    #[default]
    Stitch,
    /// Ask the model with the paper's prompt.
    Model,
}

impl FusionMode {
    /// Its name in flags and settings files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Stitch => "stitch",
            Self::Model => "model",
        }
    }
}

impl std::str::FromStr for FusionMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "stitch" => Ok(Self::Stitch),
            "model" => Ok(Self::Model),
            _ => Err(format!("unknown fusion mode {s:?}: use stitch or model")),
        }
    }
}

/// Failures of fusion.
#[derive(Debug, thiserror::Error)]
pub enum FusionError {
    /// Embeddings for coverage failed.
    #[error(transparent)]
    Analyzer(#[from] AnalyzerError),
    /// The model mode could not generate.
    #[error("fusion generation failed: {0}")]
    Generate(String),
}

/// A fused story.
#[derive(Debug, Clone)]
pub struct Fused {
    /// The story.
    pub text: String,
    /// Per passage: best cosine between the passage and a stretch of the
    /// story of about its length (1 = kept verbatim).
    pub coverage: Vec<f64>,
    /// Time in the model (generation and coverage embeddings).
    pub model_time: Duration,
}

impl Fused {
    /// The lowest coverage (1 when there were no passages).
    pub fn min_coverage(&self) -> f64 {
        self.coverage.iter().copied().fold(1.0, f64::min)
    }
}

/// Cuts `text` after its last sentence end, if that keeps at least half.
///
/// ```
/// # use netmoe_coordinator::fusion::trim_to_sentence;
/// assert_eq!(trim_to_sentence("The fox ran over the hill. It jumped"), "The fox ran over the hill.");
/// assert_eq!(trim_to_sentence("One. A long unfinished tail of words here"), "One. A long unfinished tail of words here");
/// ```
pub fn trim_to_sentence(text: &str) -> &str {
    let t = text.trim();
    match t.rfind(['.', '!', '?', '"']) {
        Some(i) if i + 1 >= t.len() / 2 => &t[..=i],
        _ => t,
    }
}

/// Fuses passages with the coordinator's model.
pub struct Fuser {
    mode: FusionMode,
    engine: Option<Engine>,
    analyzer: Analyzer,
}

impl Fuser {
    /// A fuser; the model mode needs the coordinator's engine.
    pub fn new(mode: FusionMode, engine: Option<Engine>, analyzer: Analyzer) -> Self {
        Self {
            mode,
            engine,
            analyzer,
        }
    }

    /// The mode in use.
    pub fn mode(&self) -> FusionMode {
        self.mode
    }

    /// Fuses `passages` (in prompt order) into one story.
    pub async fn fuse(&self, prompt: &str, passages: &[String]) -> Result<Fused, FusionError> {
        let started = Instant::now();
        let kept: Vec<String> = passages
            .iter()
            .map(|p| collapse_blank_lines(trim_to_sentence(p)))
            .filter(|p| !p.is_empty())
            .collect();
        let text = match (self.mode, &self.engine) {
            (FusionMode::Model, Some(engine)) if kept.len() > 1 => {
                self.generate(engine, prompt, &kept).await?
            }
            _ => kept.join("\n\n"),
        };
        let coverage = self.coverage(&kept, &text).await?;
        Ok(Fused {
            text,
            coverage,
            model_time: started.elapsed(),
        })
    }

    async fn generate(
        &self,
        engine: &Engine,
        prompt: &str,
        passages: &[String],
    ) -> Result<String, FusionError> {
        let mut p = format!("{FUSION_PROMPT}.\n\nThe story is about: {prompt}\n\n");
        for (i, x) in passages.iter().enumerate() {
            p.push_str(&format!("Passage {}: {}\n\n", i + 1, x));
        }
        p.push_str("Complete story:\n");
        let job = GenerateJob {
            request_id: "fusion".into(),
            prompt: netmoe_edge_node::prompt::Prompt::plain(p),
            max_tokens: MAX_FUSION_TOKENS,
            sampling: Default::default(),
            deadline: None,
            ignore_eos: false,
            stops: Vec::new(),
            history_turns: 0,
        };
        let mut g = engine
            .submit(job)
            .map_err(|e| FusionError::Generate(e.to_string()))?;
        while let Some(ev) = g.next().await {
            match ev {
                EngineEvent::Piece { .. } => {}
                EngineEvent::Done(s) => return Ok(s.text.trim().to_owned()),
                EngineEvent::Failed(e) => return Err(FusionError::Generate(e.to_string())),
            }
        }
        Err(FusionError::Generate("engine stopped".into()))
    }

    /// For each passage, the best cosine against windows of the story of
    /// about the passage's sentence count; a passage found verbatim in the
    /// story is fully covered without asking the model.
    async fn coverage(&self, passages: &[String], story: &str) -> Result<Vec<f64>, FusionError> {
        let sentences = crate::text::sentences(story);
        let mut cache: HashMap<String, Vec<f32>> = HashMap::new();
        let mut out = Vec::with_capacity(passages.len());
        for p in passages {
            if story.contains(p.as_str()) {
                out.push(1.0);
                continue;
            }
            let pe = self.analyzer.embed(p).await?;
            let n = crate::text::sentences(p).len().max(1);
            let mut best = 0.0f64;
            for w in windows(&sentences, n) {
                if !cache.contains_key(&w) {
                    let e = self.analyzer.embed(&w).await?;
                    cache.insert(w.clone(), e);
                }
                best = best.max(f64::from(cosine(&pe, &cache[&w])));
            }
            out.push(best);
        }
        Ok(out)
    }
}

fn collapse_blank_lines(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Consecutive runs of `n` sentences; exact passages come first.
fn windows(sentences: &[String], n: usize) -> Vec<String> {
    if sentences.len() <= n {
        return vec![sentences.join(" ")];
    }
    sentences.windows(n).map(|w| w.join(" ")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_the_story() {
        let s = crate::text::sentences("A b. C d! E f? G");
        assert_eq!(s, ["A b.", "C d!", "E f?", "G"]);
        assert_eq!(windows(&s, 2), ["A b. C d!", "C d! E f?", "E f? G"]);
        assert_eq!(windows(&s, 9), ["A b. C d! E f? G"]);
        assert_eq!(collapse_blank_lines(" a\n\n b \n"), "a b");
        assert_eq!("model".parse::<FusionMode>(), Ok(FusionMode::Model));
        assert!("x".parse::<FusionMode>().is_err());
    }
}
