//! Request errors and the one place they become gRPC statuses.

use tonic::{Code, Status};

use crate::engine::EngineError;
use crate::sampling::SamplingError;

/// Why a `Generate` request was refused before reaching the engine.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The segment is empty or only whitespace.
    #[error("segment is empty: send the text this expert should write about")]
    EmptySegment,
    /// A text field is larger than the node accepts.
    #[error("{field} is {bytes} bytes; this node accepts at most {limit}")]
    TooLarge {
        /// Which field.
        field: &'static str,
        /// Its size.
        bytes: usize,
        /// The limit.
        limit: u32,
    },
    /// More earlier turns than the node takes.
    #[error("history has {turns} turns; this node accepts at most {limit}")]
    TooManyTurns {
        /// Turns sent.
        turns: usize,
        /// The limit.
        limit: usize,
    },
    /// A history turn that is neither the user's nor an answer.
    #[error("history turn {index} has no role: send TURN_ROLE_USER or TURN_ROLE_ASSISTANT")]
    BadTurnRole {
        /// Its place in the history.
        index: usize,
    },
    /// `max_tokens` was 0.
    #[error("max_tokens must be at least 1 (leave it unset for the expert's default)")]
    ZeroTokens,
    /// `max_tokens` above the node's limit.
    #[error("max_tokens {asked} exceeds this node's limit of {limit}")]
    TooManyTokens {
        /// What was asked.
        asked: u32,
        /// The limit.
        limit: u32,
    },
    /// `deadline_ms` was 0.
    #[error("deadline_ms must be at least 1 (leave it unset for no deadline)")]
    ZeroDeadline,
    /// A sampling value out of range.
    #[error("invalid sampling: {0}")]
    Sampling(#[from] SamplingError),
    /// The prompt could not be laid out (the node's own template failed).
    #[error("{0}")]
    Prompt(crate::prompt::PromptError),
}

impl From<RequestError> for Status {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::Prompt(_) => Status::internal(e.to_string()),
            _ => Status::invalid_argument(e.to_string()),
        }
    }
}

impl From<EngineError> for Status {
    fn from(e: EngineError) -> Self {
        let code = match &e {
            EngineError::PromptTooLong { .. } => Code::InvalidArgument,
            EngineError::Busy { .. } => Code::ResourceExhausted,
            EngineError::ShuttingDown => Code::Unavailable,
            EngineError::ModelFile(_)
            | EngineError::ModelLoad { .. }
            | EngineError::Context(_)
            | EngineError::Decode(_) => Code::Internal,
        };
        Status::new(code, e.to_string())
    }
}
