//! The decode loop: admits waiting requests into free sequence slots, feeds
//! every active sequence into one batch per step, samples each sequence's
//! next token, and streams the text back.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

use super::stops::{Seen, StopWatch};
use super::utf8::Utf8Pieces;
use super::{
    Admitted, Command, EngineConfig, EngineError, EngineEvent, FinishReason, GenerationStats,
    Shared,
};

/// Weight of a new measurement in the tokens/s moving average.
const SPEED_EWMA: f64 = 0.3;

/// A sequence slot's state while it holds a request.
struct Slot {
    req: Box<Admitted>,
    sampler: LlamaSampler,
    /// Prompt tokens not yet fed to the model.
    prompt_left: usize,
    /// Next position in this sequence.
    pos: i32,
    /// The token to feed next once the prompt is in.
    last: Option<LlamaToken>,
    /// Batch index whose logits belong to this slot after the decode.
    logits_at: Option<i32>,
    generated: u32,
    text: String,
    utf8: Utf8Pieces,
    stops: StopWatch,
    admitted: Instant,
    first_token: Option<Instant>,
}

pub(super) struct Worker {
    model: &'static LlamaModel,
    /// Tokens never sampled ([`crate::sampling::never_prose`]).
    banned: Vec<llama_cpp_2::token::LlamaToken>,
    config: EngineConfig,
    shared: Arc<Shared>,
}

impl Worker {
    pub(super) fn new(
        model: &'static LlamaModel,
        config: EngineConfig,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            model,
            banned: crate::sampling::never_prose(model),
            config,
            shared,
        }
    }

    fn context(&self) -> Result<LlamaContext<'static>, EngineError> {
        let c = &self.config;
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(c.ctx_per_slot * c.slots))
            .with_n_batch(c.batch_tokens)
            .with_n_ubatch(c.batch_tokens)
            .with_n_seq_max(c.slots)
            .with_n_threads(c.threads as i32)
            .with_n_threads_batch(c.threads as i32);
        self.model
            .new_context(super::backend(), params)
            .map_err(|e| EngineError::Context(e.to_string()))
    }

    /// Runs until `Stop` or until every `Engine` handle is gone.
    pub(super) fn run(
        self,
        commands: std_mpsc::Receiver<Command>,
        ready: std_mpsc::Sender<Result<(), EngineError>>,
    ) {
        let mut ctx = match self.context() {
            Ok(ctx) => {
                let _ = ready.send(Ok(()));
                ctx
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let mut batch = LlamaBatch::new(self.config.batch_tokens as usize, 1);
        let mut slots: Vec<Option<Slot>> = (0..self.config.slots).map(|_| None).collect();
        let mut waiting: VecDeque<Box<Admitted>> = VecDeque::new();

        loop {
            let idle = waiting.is_empty() && slots.iter().all(Option::is_none);
            let mut next = if idle {
                // The step that just finished the last generation freed its
                // slot after the previous publish: say so before waiting,
                // or the node reports a stale load until its next request.
                self.publish(&slots, &waiting);
                match commands.recv() {
                    Ok(c) => Some(c),
                    Err(_) => return,
                }
            } else {
                commands.try_recv().ok()
            };
            while let Some(cmd) = next.take() {
                match cmd {
                    Command::Start(req) => waiting.push_back(req),
                    Command::CancelAll | Command::Stop => {
                        let stop = matches!(cmd, Command::Stop);
                        for mut req in waiting.drain(..) {
                            req.end(EngineEvent::Failed(EngineError::ShuttingDown));
                        }
                        for slot in slots.iter_mut() {
                            if let Some(mut s) = slot.take() {
                                s.req.end(EngineEvent::Failed(EngineError::ShuttingDown));
                            }
                        }
                        ctx.clear_kv_cache();
                        self.publish(&slots, &waiting);
                        if stop {
                            return;
                        }
                    }
                }
                next = commands.try_recv().ok();
            }

            self.expire_waiting(&mut waiting);
            self.admit(&mut ctx, &mut slots, &mut waiting);
            self.retire_abandoned(&mut ctx, &mut slots);
            self.publish(&slots, &waiting);

            if !self.fill_batch(&mut batch, &mut slots) {
                continue;
            }
            if let Err(e) = ctx.decode(&mut batch) {
                let err = EngineError::Decode(e.to_string());
                for (seq, slot) in slots.iter_mut().enumerate() {
                    if slot
                        .as_ref()
                        .is_some_and(|s| s.logits_at.is_some() || s.prompt_left > 0)
                    {
                        let mut s = slot.take().expect("checked");
                        s.req.end(EngineEvent::Failed(err.clone()));
                        let _ = ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
                    }
                }
                continue;
            }
            self.sample(&mut ctx, &mut slots);
        }
    }

    /// Waiting requests whose caller left or whose deadline passed never
    /// take a slot.
    fn expire_waiting(&self, waiting: &mut VecDeque<Box<Admitted>>) {
        let now = Instant::now();
        waiting.retain_mut(|req| {
            if req.events.is_closed() {
                return false;
            }
            if req.job.deadline.is_some_and(|d| d <= now) {
                let stats = GenerationStats {
                    text: String::new(),
                    finish: FinishReason::Deadline,
                    prompt_tokens: req.tokens.len() as u32,
                    generated_tokens: 0,
                    queue: now - req.enqueued,
                    prompt_eval: Duration::ZERO,
                    generation: Duration::ZERO,
                };
                req.end(EngineEvent::Done(stats));
                return false;
            }
            true
        });
    }

    fn admit(
        &self,
        ctx: &mut LlamaContext<'static>,
        slots: &mut [Option<Slot>],
        waiting: &mut VecDeque<Box<Admitted>>,
    ) {
        for (seq, slot) in slots.iter_mut().enumerate() {
            if slot.is_some() {
                continue;
            }
            let Some(req) = waiting.pop_front() else {
                break;
            };
            let _ = ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
            let seed = req.job.sampling.seed.unwrap_or_else(rand::random);
            let sampler =
                req.job
                    .sampling
                    .build(self.model, seed, req.job.ignore_eos, &self.banned);
            let stops = StopWatch::new(&req.job.stops);
            *slot = Some(Slot {
                prompt_left: req.tokens.len(),
                req,
                sampler,
                pos: 0,
                last: None,
                logits_at: None,
                generated: 0,
                text: String::new(),
                utf8: Utf8Pieces::default(),
                stops,
                admitted: Instant::now(),
                first_token: None,
            });
        }
    }

    /// Frees slots whose caller dropped the stream, and ends those past
    /// their deadline.
    fn retire_abandoned(&self, ctx: &mut LlamaContext<'static>, slots: &mut [Option<Slot>]) {
        let now = Instant::now();
        for (seq, slot) in slots.iter_mut().enumerate() {
            let Some(s) = slot.as_ref() else { continue };
            if s.req.events.is_closed() {
                tracing::debug!(request = %s.req.job.request_id, "stream dropped; freeing slot");
                *slot = None;
                let _ = ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
            } else if s.req.job.deadline.is_some_and(|d| d <= now) {
                let s = slot.take().expect("checked");
                self.finish(s, FinishReason::Deadline);
                let _ = ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
            }
        }
    }

    /// Puts one token per generating sequence, then prompt chunks, into the
    /// batch. Returns false when there is nothing to decode.
    fn fill_batch(&self, batch: &mut LlamaBatch<'_>, slots: &mut [Option<Slot>]) -> bool {
        batch.clear();
        let cap = self.config.batch_tokens as i32;
        for (seq, slot) in slots.iter_mut().enumerate() {
            let Some(s) = slot.as_mut() else { continue };
            s.logits_at = None;
            if let Some(tok) = s.last.filter(|_| s.prompt_left == 0) {
                batch
                    .add(tok, s.pos, &[seq as i32], true)
                    .expect("batch holds one token per slot");
                s.logits_at = Some(batch.n_tokens() - 1);
                s.pos += 1;
            }
        }
        for (seq, slot) in slots.iter_mut().enumerate() {
            let Some(s) = slot.as_mut() else { continue };
            while s.prompt_left > 0 && batch.n_tokens() < cap {
                let i = s.req.tokens.len() - s.prompt_left;
                let last = s.prompt_left == 1;
                batch
                    .add(s.req.tokens[i], s.pos, &[seq as i32], last)
                    .expect("batch below capacity");
                s.pos += 1;
                s.prompt_left -= 1;
                if last {
                    s.logits_at = Some(batch.n_tokens() - 1);
                }
            }
        }
        batch.n_tokens() > 0
    }

    fn sample(&self, ctx: &mut LlamaContext<'static>, slots: &mut [Option<Slot>]) {
        let vocab = self.model.vocab();
        for (seq, slot) in slots.iter_mut().enumerate() {
            let Some(s) = slot.as_mut() else { continue };
            let Some(idx) = s.logits_at else { continue };
            let tok = s.sampler.sample(ctx, idx);
            let now = Instant::now();
            s.first_token.get_or_insert(now);
            // Every end-of-generation token ends the passage, and so does any
            // other control token (a chat model opening a new turn): control
            // tokens never become text.
            let ends = vocab.is_eog(tok) || vocab.is_control(tok);
            let reason = if ends && !s.req.job.ignore_eos {
                Some(FinishReason::Stop)
            } else {
                s.generated += 1;
                s.last = Some(tok);
                let piece = s.utf8.push(&vocab.token_to_piece(tok, false, None));
                let (piece, stopped) = match s.stops.push(&piece) {
                    Seen::Text(t) => (t, false),
                    Seen::Stop(t) => (t, true),
                };
                if !piece.is_empty() {
                    s.text.push_str(&piece);
                    let _ = s.req.events.send(EngineEvent::Piece {
                        text: piece,
                        tokens: s.generated,
                    });
                }
                if stopped {
                    Some(FinishReason::Stop)
                } else if s.generated >= s.req.job.max_tokens {
                    Some(FinishReason::Length)
                } else if s.pos as u32 >= self.config.ctx_per_slot {
                    Some(FinishReason::ContextFull)
                } else {
                    None
                }
            };
            if let Some(reason) = reason {
                let s = slot.take().expect("slot is active");
                self.finish(s, reason);
                let _ = ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
            }
        }
    }

    /// Sends the last piece and the stats, and updates the speed estimate.
    fn finish(&self, mut s: Slot, reason: FinishReason) {
        let now = Instant::now();
        let tail = s.utf8.finish();
        // Held-back text that never became a stop sequence is released.
        let tail = match s.stops.push(&tail) {
            Seen::Text(t) => t + &s.stops.finish(),
            Seen::Stop(t) => t,
        };
        if !tail.is_empty() {
            s.text.push_str(&tail);
            let _ = s.req.events.send(EngineEvent::Piece {
                text: tail,
                tokens: s.generated,
            });
        }
        let first = s.first_token.unwrap_or(now);
        let generation = now - first;
        if s.generated >= 8 && !generation.is_zero() {
            let tps = f64::from(s.generated - 1) / generation.as_secs_f64();
            let old = f64::from_bits(self.shared.tokens_per_second.load(Ordering::Relaxed));
            let new = if old == 0.0 {
                tps
            } else {
                old + SPEED_EWMA * (tps - old)
            };
            self.shared
                .tokens_per_second
                .store(new.to_bits(), Ordering::Relaxed);
        }
        let stats = GenerationStats {
            text: s.text,
            finish: reason,
            prompt_tokens: s.req.tokens.len() as u32,
            generated_tokens: s.generated,
            queue: s.admitted - s.req.enqueued,
            prompt_eval: first - s.admitted,
            generation,
        };
        s.req.end(EngineEvent::Done(stats));
    }

    fn publish(&self, slots: &[Option<Slot>], waiting: &VecDeque<Box<Admitted>>) {
        let active = slots.iter().filter(|s| s.is_some()).count() as u32;
        self.shared.active.store(active, Ordering::Relaxed);
        self.shared
            .queued
            .store(waiting.len() as u32, Ordering::Relaxed);
    }
}
