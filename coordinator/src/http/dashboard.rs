//! The dashboard: one page compiled into the binary (no CDN, works
//! offline, fits a phone screen) at `/`, and the JSON it draws from:
//! `/api/cluster` (nodes, experts, models, channels, load, recent requests
//! with each segment's routing and costs), `/api/live` (the same, pushed as
//! server-sent events every second) and `/api/training` (the training
//! curve of the loaded policy, else the shipped one). The page sends
//! prompts through the OpenAI-compatible API and streams the answer.
//! Every `/api` call takes the API key like the rest of the HTTP API.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use netmoe_proto::v1;
use serde_json::{Value, json};

use super::{ApiError, authorize};
use crate::pipeline::Pipeline;

/// The page.
const PAGE: &str = include_str!("dashboard.html");
/// The shipped training curve, shown when the loaded policy has none.
const SHIPPED_CURVE: &str = include_str!("../../data/rl/train_curve.csv");
/// Live feeds open at once; more get 429.
pub const MAX_LIVE_FEEDS: usize = 16;
/// How often a live feed pushes a snapshot.
pub const LIVE_PERIOD: Duration = Duration::from_secs(1);
/// Training-curve CSV read at most.
const MAX_CURVE_BYTES: u64 = 1 << 20;

/// The routes of the dashboard.
pub fn routes() -> Router<Arc<Pipeline>> {
    Router::new()
        .route("/", axum::routing::get(|| async { Html(PAGE) }))
        .route("/api/cluster", axum::routing::get(cluster))
        .route("/api/live", axum::routing::get(live))
        .route("/api/training", axum::routing::get(training))
}

/// The cluster and its recent requests, as the page draws them.
pub fn snapshot(p: &Pipeline) -> Value {
    let nodes: Vec<Value> = p
        .registry
        .list()
        .iter()
        .filter(|n| n.info.is_some())
        .map(|n| {
            let mut v = crate::report::node_json(n);
            v["shannon_bps"] = v["snr_db"].as_f64().map_or(Value::Null, |snr| {
                json!(p.config.cost.shannon_rate_bps(snr))
            });
            v
        })
        .collect();
    let recent: Vec<Value> = p
        .recent
        .list()
        .iter()
        .rev()
        .map(|(prompt, r)| request_view(prompt, r))
        .collect();
    json!({"nodes": nodes, "recent": recent, "policy": p.config.default_policy})
}

fn request_view(prompt: &str, r: &v1::AskResponse) -> Value {
    let t = r.totals.unwrap_or_default();
    json!({
        "request_id": r.request_id,
        "prompt": prompt,
        "policy": r.policy,
        "score": r.score,
        "total_s": r.timings.map_or(0.0, |t| t.total_s),
        "totals": {
            "compute_cost": t.compute_cost, "sim_transfer_s": t.sim_transfer_s,
            "measured_transfer_s": t.measured_transfer_s, "sim_energy_j": t.sim_energy_j,
            "reward": t.reward,
        },
        "segments": r.segments.iter().map(|s| json!({
            "index": s.index, "segment": s.segment, "target": s.target, "expert": s.expert,
            "explanation": s.explanation, "score": s.score, "error": s.error,
            "compute_cost": s.compute_cost, "sim_transfer_s": s.sim_transfer_s,
            "measured_transfer_s": s.measured_transfer_s, "snr_db": s.snr_db,
        })).collect::<Vec<_>>(),
    })
}

async fn cluster(State(p): State<Arc<Pipeline>>, headers: HeaderMap) -> Response {
    match authorize(&p, &headers) {
        Err(e) => e.into_response(),
        Ok(_) => axum::Json(snapshot(&p)).into_response(),
    }
}

static LIVE_FEEDS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_LIVE_FEEDS);

async fn live(State(p): State<Arc<Pipeline>>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize(&p, &headers) {
        return e.into_response();
    }
    let Ok(permit) = LIVE_FEEDS.try_acquire() else {
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "too_many_live_feeds",
            format!("{MAX_LIVE_FEEDS} live feeds are open already"),
        )
        .into_response();
    };
    let stream = futures::stream::unfold((p, permit, true), |(p, permit, first)| async move {
        if !first {
            tokio::time::sleep(LIVE_PERIOD).await;
        }
        let ev = SseEvent::default().data(snapshot(&p).to_string());
        Some((Ok::<_, Infallible>(ev), (p, permit, false)))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn training(State(p): State<Arc<Pipeline>>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize(&p, &headers) {
        return e.into_response();
    }
    let (source, csv) = p
        .policy_file
        .as_ref()
        .and_then(|f| {
            let path = f.with_file_name("train_curve.csv");
            let len = std::fs::metadata(&path).ok()?.len();
            (len <= MAX_CURVE_BYTES)
                .then(|| std::fs::read_to_string(&path).ok())
                .flatten()
                .map(|c| (path.display().to_string(), c))
        })
        .unwrap_or_else(|| ("shipped".into(), SHIPPED_CURVE.to_owned()));
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!({"source": source, "csv": csv}).to_string(),
    )
        .into_response()
}
