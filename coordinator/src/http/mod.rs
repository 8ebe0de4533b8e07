//! The coordinator's HTTP side (`serve --http-listen ADDR`): the
//! OpenAI-compatible API under `/v1`, `/metrics`, `/healthz`, and the
//! dashboard at `/`. API keys (`coordinator key create`) are bearer tokens
//! when the coordinator is secured; with `--http-tls` the listener speaks
//! HTTPS with the coordinator's certificate ([`tls`]), else it is
//! plaintext and belongs on loopback or behind a TLS proxy.
//!
//! Limits: request bodies over [`MAX_BODY_BYTES`] get 413, prompts over
//! the pipeline's byte limit 413, more than `--max-concurrent-asks`
//! requests 429 with `Retry-After`; a streamed response is bounded by the
//! segments' token limits.

pub mod dashboard;
pub mod openai;
pub mod tls;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::pipeline::{AskError, Pipeline};

/// Largest request body read.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Seconds a client told 429 is asked to wait.
pub const RETRY_AFTER_S: u32 = 1;

/// An error in the OpenAI shape: `{"error": {"message", "type", "code"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    code: String,
    message: String,
}

impl ApiError {
    /// An error with its HTTP status and OpenAI type.
    pub fn new(status: StatusCode, kind: &'static str, code: &str, message: String) -> Self {
        Self {
            status,
            kind,
            code: code.to_owned(),
            message,
        }
    }

    /// 400: a request the API cannot take.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_request",
            message.into(),
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<AskError> for ApiError {
    fn from(e: AskError) -> Self {
        let (status, kind) = match &e {
            AskError::PromptTooLarge { .. } | AskError::HistoryTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "invalid_request_error")
            }
            AskError::Busy(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error"),
            AskError::UnknownExpert(_) => (StatusCode::NOT_FOUND, "invalid_request_error"),
            AskError::NoLiveNodes(_) | AskError::AllFailed(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "server_error")
            }
            AskError::Gate(_) | AskError::Fusion(_) | AskError::Judge(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "server_error")
            }
            _ => (StatusCode::BAD_REQUEST, "invalid_request_error"),
        };
        Self::new(status, kind, e.reason(), e.public_message())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": null,
                "code": self.code,
            }
        });
        let mut r = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
        }
        r
    }
}

/// Checks the bearer API key (any caller when the coordinator runs
/// `--insecure`); returns who it is, for the log.
pub fn authorize(pipeline: &Pipeline, headers: &HeaderMap) -> Result<String, ApiError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    pipeline.auth.api_key(bearer).map_err(|e| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid_api_key",
            e,
        )
    })
}

/// The HTTP routes over a pipeline.
pub fn router(pipeline: Arc<Pipeline>) -> Router {
    Router::new()
        .merge(openai::routes())
        .merge(dashboard::routes())
        .route("/metrics", axum::routing::get(metrics))
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "not_found",
                "no such route".into(),
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(pipeline)
}

async fn metrics(
    axum::extract::State(p): axum::extract::State<Arc<Pipeline>>,
    headers: HeaderMap,
) -> Response {
    crate::metrics::scrape(&p.metrics, &p.registry, &headers)
}

/// Serves the HTTP side on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<rustls::ServerConfig>,
    pipeline: Arc<Pipeline>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    match tls {
        None => {
            axum::serve(listener, router(pipeline))
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
        }
        Some(cfg) => {
            axum::serve(tls::TlsListener::new(listener, cfg), router(pipeline))
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
        }
    }
}
