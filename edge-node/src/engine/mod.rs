//! The inference engine: one llama.cpp context on a dedicated thread that
//! decodes every admitted request as its own sequence in one shared batch.
//!
//! Measured on this class of machine, one context with four sequences per
//! batch generates ~2x the aggregate tokens/s of separate contexts, so
//! concurrent requests share a context. Admission is bounded: `slots`
//! sequences decode at once and at most `queue_depth` more wait; beyond
//! that a request is refused at once ([`EngineError::Busy`]) instead of
//! queueing without bound.

mod llama;
mod stops;
mod utf8;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use llama_cpp_2::model::LlamaModel;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

pub use llama::{LoadedModel, backend};

use crate::sampling::SamplingSpec;

/// Sequences decoded together by default.
pub const DEFAULT_SLOTS: u32 = 4;
/// Requests that may wait for a slot by default.
pub const DEFAULT_QUEUE_DEPTH: u32 = 8;
/// Context window of each sequence by default (prompt + generated tokens).
pub const DEFAULT_CTX_PER_SLOT: u32 = 1024;
/// Tokens per llama.cpp decode call (prompt evaluation is chunked to it).
pub const DEFAULT_BATCH_TOKENS: u32 = 512;

/// How the engine is built.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The GGUF file.
    pub model_path: PathBuf,
    /// llama.cpp threads for decode and prompt evaluation.
    pub threads: u32,
    /// Sequences decoded together in one batch.
    pub slots: u32,
    /// Requests that may wait beyond the slots.
    pub queue_depth: u32,
    /// Context window of each sequence.
    pub ctx_per_slot: u32,
    /// Tokens per decode call.
    pub batch_tokens: u32,
    /// Layers offloaded to a GPU (CUDA builds); 0 on CPU.
    pub gpu_layers: u32,
}

/// Why the engine refused or failed a request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    /// The model file is missing or malformed (checked before llama.cpp).
    #[error("{0}")]
    ModelFile(String),
    /// llama.cpp could not load the model.
    #[error("llama.cpp could not load {path}: {message}")]
    ModelLoad {
        /// The GGUF file.
        path: PathBuf,
        /// llama.cpp's reason.
        message: String,
    },
    /// llama.cpp could not create the context.
    #[error("cannot create llama.cpp context: {0}")]
    Context(String),
    /// Prompt plus requested tokens do not fit one sequence's context.
    #[error(
        "prompt is {prompt_tokens} tokens and asks for {max_tokens} more, \
         but a sequence holds {ctx_per_slot} tokens"
    )]
    PromptTooLong {
        /// Tokens in the rendered prompt.
        prompt_tokens: u32,
        /// Tokens asked for.
        max_tokens: u32,
        /// The context window of one sequence.
        ctx_per_slot: u32,
    },
    /// Every slot and queue place is taken.
    #[error("node is at capacity: {slots} decoding and {queue_depth} waiting; retry later")]
    Busy {
        /// Slots.
        slots: u32,
        /// Queue places.
        queue_depth: u32,
    },
    /// The engine is stopping or stopped.
    #[error("node is shutting down")]
    ShuttingDown,
    /// llama.cpp failed while decoding.
    #[error("decode failed: {0}")]
    Decode(String),
}

/// One generation request, already validated by the caller.
#[derive(Debug, Clone)]
pub struct GenerateJob {
    /// For logs.
    pub request_id: String,
    /// The full prompt the model continues.
    pub prompt: crate::prompt::Prompt,
    /// Tokens to generate at most (>= 1).
    pub max_tokens: u32,
    /// Sampling settings.
    pub sampling: SamplingSpec,
    /// When to stop with [`FinishReason::Deadline`].
    pub deadline: Option<Instant>,
    /// Keep generating through end-of-generation tokens (a fixed-length
    /// request; its `stops` are empty too).
    pub ignore_eos: bool,
    /// Text that ends the generation where it appears; it is not sent.
    pub stops: Vec<String>,
    /// Earlier conversation turns the prompt carries (reported back).
    pub history_turns: u32,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// End-of-generation token.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The deadline passed.
    Deadline,
    /// The sequence's context filled up.
    ContextFull,
}

/// What a finished generation produced and cost.
#[derive(Debug, Clone)]
pub struct GenerationStats {
    /// All generated text (the pieces joined).
    pub text: String,
    /// Why it ended.
    pub finish: FinishReason,
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub generated_tokens: u32,
    /// Waiting for a slot.
    pub queue: Duration,
    /// From taking a slot to the first generated token.
    pub prompt_eval: Duration,
    /// From the first generated token to the last.
    pub generation: Duration,
}

/// An event of a running generation.
#[derive(Debug, Clone)]
pub enum EngineEvent {
    /// Newly decoded text (whole UTF-8) and tokens generated so far.
    Piece {
        /// The text.
        text: String,
        /// Tokens generated so far.
        tokens: u32,
    },
    /// The generation ended; always the last event on success.
    Done(GenerationStats),
    /// The generation failed; the last event.
    Failed(EngineError),
}

/// The receiving end of one generation. Dropping it cancels the sequence:
/// the engine notices before its next decode step and frees the slot.
#[derive(Debug)]
pub struct Generation {
    rx: mpsc::UnboundedReceiver<EngineEvent>,
    /// Prompt tokens, known at admission.
    pub prompt_tokens: u32,
}

impl Generation {
    /// The next event, or `None` once the engine has sent the last one.
    pub async fn next(&mut self) -> Option<EngineEvent> {
        self.rx.recv().await
    }
}

/// Load of the engine right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoadSnapshot {
    /// Sequences decoding.
    pub active: u32,
    /// Requests waiting for a slot.
    pub queued: u32,
    /// Slots.
    pub slots: u32,
    /// Queue places.
    pub queue_depth: u32,
}

/// Counters the worker publishes and handlers read.
#[derive(Debug, Default)]
struct Shared {
    active: AtomicU32,
    queued: AtomicU32,
    /// Single-sequence generation speed, tokens/s, as f64 bits.
    tokens_per_second: AtomicU64,
}

/// A request on its way to the worker.
struct Admitted {
    job: GenerateJob,
    tokens: Vec<llama_cpp_2::token::LlamaToken>,
    events: mpsc::UnboundedSender<EngineEvent>,
    enqueued: Instant,
    /// Held until the generation ends: it is the request's place in the
    /// bounded admission. Released by [`Admitted::end`] before the last
    /// event is sent, or when the request is dropped.
    permit: Option<OwnedSemaphorePermit>,
}

impl Admitted {
    /// Ends the request with its last event (`Done` or `Failed`), freeing
    /// its admission place first: a client that has seen the end of its
    /// stream may submit again at once and find the place free.
    fn end(&mut self, last: EngineEvent) {
        drop(self.permit.take());
        let _ = self.events.send(last);
    }
}

enum Command {
    Start(Box<Admitted>),
    /// Fail everything in flight with `ShuttingDown`, keep running.
    CancelAll,
    /// Fail everything in flight and stop the thread.
    Stop,
}

/// Handle to the engine thread; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    model: LoadedModel,
    config: EngineConfig,
    commands: std_mpsc::Sender<Command>,
    admission: Arc<Semaphore>,
    shared: Arc<Shared>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Engine {
    /// Loads the model and starts the decode thread. Blocking: call it from
    /// a blocking context (`spawn_blocking`) or before the runtime serves.
    pub fn start(config: EngineConfig) -> Result<Self, EngineError> {
        let model = LoadedModel::load(&config.model_path, config.gpu_layers)?;
        Self::with_model(model, config)
    }

    /// Starts a decode thread over an already loaded model.
    pub fn with_model(model: LoadedModel, config: EngineConfig) -> Result<Self, EngineError> {
        let (tx, rx) = std_mpsc::channel();
        let (ready_tx, ready_rx) = std_mpsc::channel();
        let shared = Arc::new(Shared::default());
        let worker = worker::Worker::new(model.model, config.clone(), shared.clone());
        let thread = std::thread::Builder::new()
            .name("netmoe-decode".into())
            .spawn(move || worker.run(rx, ready_tx))
            .map_err(|e| EngineError::Context(e.to_string()))?;
        ready_rx
            .recv()
            .map_err(|_| EngineError::Context("decode thread exited".into()))??;
        let permits = (config.slots + config.queue_depth) as usize;
        Ok(Self {
            inner: Arc::new(Inner {
                model,
                config,
                commands: tx,
                admission: Arc::new(Semaphore::new(permits)),
                shared,
                thread: std::sync::Mutex::new(Some(thread)),
            }),
        })
    }

    /// Tokenizes the prompt, checks it fits, takes an admission place and
    /// hands the job to the decode thread.
    pub fn submit(&self, job: GenerateJob) -> Result<Generation, EngineError> {
        let tokens = self.tokenize(&job.prompt);
        let prompt_tokens = tokens.len() as u32;
        let ctx = self.inner.config.ctx_per_slot;
        if prompt_tokens.saturating_add(job.max_tokens) > ctx {
            return Err(EngineError::PromptTooLong {
                prompt_tokens,
                max_tokens: job.max_tokens,
                ctx_per_slot: ctx,
            });
        }
        let permit = self
            .inner
            .admission
            .clone()
            .try_acquire_owned()
            .map_err(|_| EngineError::Busy {
                slots: self.inner.config.slots,
                queue_depth: self.inner.config.queue_depth,
            })?;
        let (events, rx) = mpsc::unbounded_channel();
        let admitted = Admitted {
            job,
            tokens,
            events,
            enqueued: Instant::now(),
            permit: Some(permit),
        };
        self.inner
            .commands
            .send(Command::Start(Box::new(admitted)))
            .map_err(|_| EngineError::ShuttingDown)?;
        Ok(Generation { rx, prompt_tokens })
    }

    /// Tokens of `prompt` as the engine feeds it: BOS as the model wants it,
    /// control-token names parsed in template pieces only (peer text stays
    /// plain characters), and no doubled BOS when a template spells one out.
    pub fn tokenize(&self, prompt: &crate::prompt::Prompt) -> Vec<llama_cpp_2::token::LlamaToken> {
        let vocab = self.inner.model.model.vocab();
        let mut tokens = Vec::new();
        for (i, piece) in prompt.pieces.iter().enumerate() {
            tokens.extend(vocab.tokenize(piece.text.as_bytes(), i == 0, piece.template));
        }
        let bos = vocab.bos();
        if tokens.len() >= 2 && tokens[0] == bos && tokens[1] == bos {
            tokens.remove(0);
        }
        tokens
    }

    /// Fails every waiting and running generation with `ShuttingDown`
    /// (the end of a shutdown grace period).
    pub fn cancel_all(&self) {
        let _ = self.inner.commands.send(Command::CancelAll);
    }

    /// Stops the decode thread after failing what is in flight; waits for it.
    pub fn stop(&self) {
        let _ = self.inner.commands.send(Command::Stop);
        if let Some(t) = self.inner.thread.lock().expect("engine thread lock").take() {
            let _ = t.join();
        }
    }

    /// Current load.
    pub fn load(&self) -> LoadSnapshot {
        LoadSnapshot {
            active: self.inner.shared.active.load(Ordering::Relaxed),
            queued: self.inner.shared.queued.load(Ordering::Relaxed),
            slots: self.inner.config.slots,
            queue_depth: self.inner.config.queue_depth,
        }
    }

    /// Single-sequence generation speed (moving average; 0 before any).
    pub fn tokens_per_second(&self) -> f64 {
        f64::from_bits(self.inner.shared.tokens_per_second.load(Ordering::Relaxed))
    }

    /// The loaded model and its file facts.
    pub fn model(&self) -> LoadedModel {
        self.inner.model
    }

    /// The llama.cpp model.
    pub fn llama(&self) -> &'static LlamaModel {
        self.inner.model.model
    }

    /// The configuration the engine runs with.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }
}
