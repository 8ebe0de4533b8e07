//! Model-based measurements the gate and the judge need from the
//! coordinator's own model: sentence embeddings, per-token log-probabilities
//! of a text, and next-token probabilities of chosen tokens.
//!
//! llama.cpp contexts are not `Send`, so both contexts (one pooled for
//! embeddings, one returning logits) live on one dedicated thread; callers
//! send jobs and await replies.

use std::num::NonZeroU32;
use std::sync::mpsc as std_mpsc;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use netmoe_edge_node::engine::backend;
use tokio::sync::oneshot;

/// Tokens of a text the embedding context reads (longer texts are cut).
pub const EMBED_MAX_TOKENS: usize = 512;
/// Tokens of prefix + text the log-probability context reads.
pub const LOGPROB_MAX_TOKENS: usize = 1024;

/// Failures of the analyzer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AnalyzerError {
    /// A context could not be created.
    #[error("cannot create analyzer context: {0}")]
    Context(String),
    /// llama.cpp failed to decode.
    #[error("analyzer decode failed: {0}")]
    Decode(String),
    /// The analyzer thread is gone.
    #[error("analyzer stopped")]
    Stopped,
    /// A candidate was not a single token.
    #[error("{0:?} is not a single token")]
    NotOneToken(String),
}

type Reply<T> = oneshot::Sender<Result<T, AnalyzerError>>;

enum Job {
    Embed(String, Reply<Vec<f32>>),
    LogProbs(String, String, Reply<Vec<f32>>),
    NextProbs(String, Vec<LlamaToken>, Reply<Vec<f32>>),
}

/// Handle to the analyzer thread; cheap to clone.
#[derive(Clone)]
pub struct Analyzer {
    tx: std_mpsc::Sender<Job>,
    model: &'static LlamaModel,
}

impl Analyzer {
    /// Starts the thread and creates its two contexts (one at a time).
    pub fn start(model: &'static LlamaModel, threads: u32) -> Result<Self, AnalyzerError> {
        let (tx, rx) = std_mpsc::channel();
        let (ready_tx, ready_rx) = std_mpsc::channel();
        std::thread::Builder::new()
            .name("netmoe-analyzer".into())
            .spawn(move || run(model, threads, rx, ready_tx))
            .map_err(|e| AnalyzerError::Context(e.to_string()))?;
        ready_rx.recv().map_err(|_| AnalyzerError::Stopped)??;
        Ok(Self { tx, model })
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Job) -> Result<T, AnalyzerError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .map_err(|_| AnalyzerError::Stopped)?;
        rx.await.map_err(|_| AnalyzerError::Stopped)?
    }

    /// Mean-pooled embedding of `text`, L2-normalised (so a dot product is
    /// the cosine similarity).
    pub async fn embed(&self, text: &str) -> Result<Vec<f32>, AnalyzerError> {
        let text = text.to_owned();
        self.ask(|r| Job::Embed(text, r)).await
    }

    /// Natural-log probability of each token of `text` given `prefix` and
    /// the tokens before it. Empty for an empty text.
    pub async fn token_logprobs(
        &self,
        prefix: &str,
        text: &str,
    ) -> Result<Vec<f32>, AnalyzerError> {
        let (p, t) = (prefix.to_owned(), text.to_owned());
        self.ask(|r| Job::LogProbs(p, t, r)).await
    }

    /// Probability of each candidate (each must be exactly one token) as
    /// the next token after `prompt`.
    pub async fn next_token_probs(
        &self,
        prompt: &str,
        candidates: &[&str],
    ) -> Result<Vec<f32>, AnalyzerError> {
        let vocab = self.model.vocab();
        let mut toks = Vec::with_capacity(candidates.len());
        for c in candidates {
            let t = vocab.tokenize(c.as_bytes(), false, false);
            if t.len() != 1 {
                return Err(AnalyzerError::NotOneToken((*c).to_owned()));
            }
            toks.push(t[0]);
        }
        let p = prompt.to_owned();
        self.ask(|r| Job::NextProbs(p, toks, r)).await
    }

    /// Tokens of `text` without BOS.
    pub fn count_tokens(&self, text: &str) -> usize {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), false, false)
            .len()
    }
}

/// Cosine similarity of two vectors (any norm).
///
/// ```
/// # use netmoe_coordinator::analyzer::cosine;
/// assert!((cosine(&[1.0, 0.0], &[1.0, 1.0]) - 0.70710677).abs() < 1e-6);
/// ```
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

fn run(
    model: &'static LlamaModel,
    threads: u32,
    rx: std_mpsc::Receiver<Job>,
    ready: std_mpsc::Sender<Result<(), AnalyzerError>>,
) {
    let ctx_err = |e: llama_cpp_2::LlamaContextLoadError| AnalyzerError::Context(e.to_string());
    let embed_params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(EMBED_MAX_TOKENS as u32))
        .with_n_batch(EMBED_MAX_TOKENS as u32)
        .with_n_ubatch(EMBED_MAX_TOKENS as u32)
        .with_embeddings(true)
        .with_pooling_type(LlamaPoolingType::Mean)
        .with_n_threads(threads as i32)
        .with_n_threads_batch(threads as i32);
    let mut embed_ctx = match model.new_context(backend(), embed_params).map_err(ctx_err) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let logit_params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(LOGPROB_MAX_TOKENS as u32))
        .with_n_batch(LOGPROB_MAX_TOKENS as u32)
        .with_n_ubatch(LOGPROB_MAX_TOKENS as u32)
        .with_n_threads(threads as i32)
        .with_n_threads_batch(threads as i32);
    let mut logit_ctx = match model.new_context(backend(), logit_params).map_err(ctx_err) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    while let Ok(job) = rx.recv() {
        match job {
            Job::Embed(text, reply) => {
                let _ = reply.send(embed(model, &mut embed_ctx, &text));
            }
            Job::LogProbs(prefix, text, reply) => {
                let _ = reply.send(logprobs(model, &mut logit_ctx, &prefix, &text));
            }
            Job::NextProbs(prompt, toks, reply) => {
                let _ = reply.send(next_probs(model, &mut logit_ctx, &prompt, &toks));
            }
        }
    }
}

fn decode_err(e: impl std::fmt::Display) -> AnalyzerError {
    AnalyzerError::Decode(e.to_string())
}

fn embed(
    model: &LlamaModel,
    ctx: &mut LlamaContext<'_>,
    text: &str,
) -> Result<Vec<f32>, AnalyzerError> {
    let mut toks = model.vocab().tokenize(text.as_bytes(), true, false);
    toks.truncate(EMBED_MAX_TOKENS);
    ctx.clear_kv_cache();
    let mut batch = LlamaBatch::new(EMBED_MAX_TOKENS, 1);
    // Pooled embeddings read every token's output.
    batch.add_sequence(&toks, 0, true).map_err(decode_err)?;
    ctx.decode(&mut batch).map_err(decode_err)?;
    let v = ctx.embeddings_seq_ith(0).map_err(decode_err)?;
    Ok(l2_normalised(v))
}

/// `v` scaled to unit length (a zero vector stays zero), so a dot product
/// of two such vectors is their cosine.
///
/// ```
/// # use netmoe_coordinator::analyzer::l2_normalised;
/// assert_eq!(l2_normalised(&[3.0, 4.0]), [0.6, 0.8]);
/// ```
pub fn l2_normalised(v: &[f32]) -> Vec<f32> {
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    v.iter().map(|x| x / norm).collect()
}

/// Log-softmax of `logits` at `token`.
fn log_prob(logits: &[f32], token: LlamaToken) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|l| (l - max).exp()).sum();
    logits[token.0 as usize] - max - sum.ln()
}

fn logprobs(
    model: &LlamaModel,
    ctx: &mut LlamaContext<'_>,
    prefix: &str,
    text: &str,
) -> Result<Vec<f32>, AnalyzerError> {
    let vocab = model.vocab();
    let pre = vocab.tokenize(prefix.as_bytes(), true, false);
    let mut body = vocab.tokenize(text.as_bytes(), false, false);
    body.truncate(LOGPROB_MAX_TOKENS.saturating_sub(pre.len()));
    if body.is_empty() {
        return Ok(Vec::new());
    }
    ctx.clear_kv_cache();
    let mut batch = LlamaBatch::new(LOGPROB_MAX_TOKENS, 1);
    let all: Vec<LlamaToken> = pre.iter().chain(&body).copied().collect();
    for (i, t) in all.iter().enumerate() {
        // Logits of position i predict token i + 1.
        let wanted = i + 1 >= pre.len() && i + 1 < all.len();
        batch.add(*t, i as i32, &[0], wanted).map_err(decode_err)?;
    }
    ctx.decode(&mut batch).map_err(decode_err)?;
    let mut out = Vec::with_capacity(body.len());
    for i in pre.len() - 1..all.len() - 1 {
        out.push(log_prob(ctx.get_logits_ith(i as i32), all[i + 1]));
    }
    Ok(out)
}

fn next_probs(
    model: &LlamaModel,
    ctx: &mut LlamaContext<'_>,
    prompt: &str,
    candidates: &[LlamaToken],
) -> Result<Vec<f32>, AnalyzerError> {
    let mut toks = model.vocab().tokenize(prompt.as_bytes(), true, false);
    if toks.len() > LOGPROB_MAX_TOKENS {
        toks.drain(..toks.len() - LOGPROB_MAX_TOKENS);
    }
    ctx.clear_kv_cache();
    let mut batch = LlamaBatch::new(LOGPROB_MAX_TOKENS, 1);
    batch.add_sequence(&toks, 0, false).map_err(decode_err)?;
    ctx.decode(&mut batch).map_err(decode_err)?;
    let logits = ctx.get_logits_ith(batch.n_tokens() - 1);
    Ok(candidates
        .iter()
        .map(|t| log_prob(logits, *t).exp())
        .collect())
}
