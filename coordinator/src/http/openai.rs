//! The OpenAI-compatible API: `POST /v1/chat/completions`,
//! `POST /v1/completions` (both with `stream: true` as server-sent events
//! in the OpenAI chunk format) and `GET /v1/models`.
//!
//! Models: `netmoe` is the mixture under the coordinator's default policy,
//! `netmoe:POLICY` the mixture under a named policy, `expert:NAME` the
//! mixture with every segment pinned to one expert. The prompt is the last
//! message, which must be the user's; the `user` and `assistant` messages
//! before it are the conversation's history, which every expert sees (as
//! much as fits its context window). `system` and `developer` messages are
//! not forwarded: each expert's persona is its system line. `temperature: 0` is sent to
//! the experts as 0.01 (near-greedy; llama.cpp's sampler takes no 0).
//! NetMoE's extras (routing, scores, costs) ride in a `netmoe` field that
//! standard clients ignore; a request may carry a `netmoe` object with
//! `max_segments`, `transport` and `segment_deadline_ms`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use netmoe_proto::v1::{self, ask_event::Event};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, authorize};
use crate::pipeline::Pipeline;
use crate::stream::{AskEvents, InOrder, ask_stream};

/// The mixture's model id.
pub const MIXTURE_MODEL: &str = "netmoe";

/// The routes of this API.
pub fn routes() -> Router<Arc<Pipeline>> {
    Router::new()
        .route("/v1/chat/completions", axum::routing::post(chat))
        .route("/v1/completions", axum::routing::post(completions))
        .route("/v1/models", axum::routing::get(models))
}

/// NetMoE's own request knobs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extras {
    /// Segments at most.
    pub max_segments: Option<u32>,
    /// "grpc" or "quic".
    pub transport: Option<String>,
    /// Per-segment generation budget, ms.
    pub segment_deadline_ms: Option<u32>,
}

/// The fields both endpoints share (unknown OpenAI fields are ignored).
#[derive(Debug, Default, Deserialize)]
pub struct Common {
    /// Model id (see the module doc).
    pub model: Option<String>,
    /// Tokens per expert.
    pub max_tokens: Option<u32>,
    /// Newer spelling of `max_tokens`.
    pub max_completion_tokens: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Sampling seed.
    pub seed: Option<u64>,
    /// The end user, for the log.
    pub user: Option<String>,
    /// Server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// NetMoE's knobs.
    pub netmoe: Option<Extras>,
}

#[derive(Debug, Deserialize)]
struct ChatRequest {
    messages: Vec<ChatMessage>,
    #[serde(flatten)]
    common: Common,
}

#[derive(Debug, Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Value,
}

#[derive(Debug, Deserialize)]
struct CompletionRequest {
    prompt: Value,
    #[serde(flatten)]
    common: Common,
}

/// Which OpenAI object the answer is shaped as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Completion,
}

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// The text of a message's content: a string, or text parts.
fn content_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(""),
        ),
        _ => None,
    }
}

/// The prompt and history of a chat: the last message (not counting
/// `system`/`developer` ones, which are left out) must be the user's; the
/// `user` and `assistant` messages before it become history, oldest first.
fn conversation(messages: &[ChatMessage]) -> Result<(String, Vec<v1::Turn>), ApiError> {
    let mut turns = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "developer" => continue,
            "user" => v1::TurnRole::User,
            "assistant" => v1::TurnRole::Assistant,
            other => {
                return Err(ApiError::bad_request(format!(
                    "messages[{i}].role {other:?} is not supported; use system, user or assistant"
                )));
            }
        };
        let text = content_text(&m.content)
            .ok_or_else(|| ApiError::bad_request(format!("messages[{i}].content must be text")))?;
        turns.push(v1::Turn {
            role: role as i32,
            text,
        });
    }
    match turns.pop() {
        Some(t) if t.role == v1::TurnRole::User as i32 && !t.text.trim().is_empty() => {
            Ok((t.text, turns))
        }
        Some(_) => Err(ApiError::bad_request(
            "the last message must be the user's, with text",
        )),
        None => Err(ApiError::bad_request("messages hold no user message")),
    }
}

/// The pipeline request for `prompt` under `common`.
pub fn ask_request(prompt: String, common: &Common) -> Result<v1::AskRequest, ApiError> {
    let model = common.model.as_deref().unwrap_or(MIXTURE_MODEL);
    let (policy, expert) = if model == MIXTURE_MODEL {
        (String::new(), String::new())
    } else if let Some(p) = model.strip_prefix("netmoe:") {
        (p.to_owned(), String::new())
    } else if let Some(e) = model.strip_prefix("expert:") {
        (String::new(), e.to_owned())
    } else {
        return Err(model_not_found(model));
    };
    let extras = common.netmoe.as_ref();
    Ok(v1::AskRequest {
        prompt,
        max_segments: extras.and_then(|x| x.max_segments),
        policy,
        max_tokens: common.max_tokens.or(common.max_completion_tokens),
        segment_deadline_ms: extras.and_then(|x| x.segment_deadline_ms),
        seed: common.seed,
        transport: extras.and_then(|x| x.transport.clone()).unwrap_or_default(),
        expert,
        temperature: common.temperature.map(|t| if t == 0.0 { 0.01 } else { t }),
        history: Vec::new(),
    })
}

fn model_not_found(model: &str) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "invalid_request_error",
        "model_not_found",
        format!("model {model:?} does not exist; GET /v1/models lists them"),
    )
}

async fn chat(State(p): State<Arc<Pipeline>>, headers: HeaderMap, body: Bytes) -> Response {
    let run = || async {
        let caller = authorize(&p, &headers)?;
        let req: ChatRequest = parse(&body)?;
        let (prompt, history) = conversation(&req.messages)?;
        answer(&p, caller, prompt, history, &req.common, Kind::Chat).await
    };
    run().await.unwrap_or_else(IntoResponse::into_response)
}

async fn completions(State(p): State<Arc<Pipeline>>, headers: HeaderMap, body: Bytes) -> Response {
    let run = || async {
        let caller = authorize(&p, &headers)?;
        let req: CompletionRequest = parse(&body)?;
        let prompt = match &req.prompt {
            Value::String(s) => s.clone(),
            Value::Array(a) if a.len() == 1 && a[0].is_string() => {
                a[0].as_str().unwrap_or_default().to_owned()
            }
            _ => return Err(ApiError::bad_request("prompt must be one string")),
        };
        answer(
            &p,
            caller,
            prompt,
            Vec::new(),
            &req.common,
            Kind::Completion,
        )
        .await
    };
    run().await.unwrap_or_else(IntoResponse::into_response)
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn answer(
    p: &Arc<Pipeline>,
    caller: String,
    prompt: String,
    history: Vec<v1::Turn>,
    common: &Common,
    kind: Kind,
) -> Result<Response, ApiError> {
    let req = v1::AskRequest {
        history,
        ..ask_request(prompt, common)?
    };
    let model = common
        .model
        .clone()
        .unwrap_or_else(|| MIXTURE_MODEL.to_owned());
    tracing::info!(%caller, user = common.user.as_deref().unwrap_or(""), %model, stream = common.stream, "HTTP completion");
    if !common.stream {
        let resp = p.ask(req).await?;
        return Ok(axum::Json(whole(&resp, &model, kind)).into_response());
    }
    let mut events = ask_stream(p.clone(), req);
    // A refusal comes before any event: answer it with its HTTP status
    // rather than a stream.
    let first = match events.next().await {
        None => return Err(ApiError::bad_request("the request produced no events")),
        Some(Err(e)) => return Err(e.into()),
        Some(Ok(ev)) => ev,
    };
    let chunks = Chunks {
        events,
        order: InOrder::default(),
        id: String::new(),
        model,
        created: now_s(),
        kind,
        ended: false,
    };
    let stream = futures::stream::unfold((chunks, Some(first)), |(mut c, pending)| async move {
        let out = c.next_chunk(pending).await?;
        Some((out, (c, None)))
    });
    Ok(Sse::new(stream.map(Ok::<_, Infallible>))
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// The non-streamed answer.
fn whole(r: &v1::AskResponse, model: &str, kind: Kind) -> Value {
    let usage = usage(r);
    let finish = "stop";
    match kind {
        Kind::Chat => json!({
            "id": format!("chatcmpl-{}", r.request_id),
            "object": "chat.completion",
            "created": now_s(),
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": r.story},
                "finish_reason": finish,
                "logprobs": null,
            }],
            "usage": usage,
            "netmoe": crate::report::json(r),
        }),
        Kind::Completion => json!({
            "id": format!("cmpl-{}", r.request_id),
            "object": "text_completion",
            "created": now_s(),
            "model": model,
            "choices": [{"index": 0, "text": r.story, "finish_reason": finish, "logprobs": null}],
            "usage": usage,
            "netmoe": crate::report::json(r),
        }),
    }
}

fn usage(r: &v1::AskResponse) -> Value {
    let prompt: u32 = r.segments.iter().map(|s| s.prompt_tokens).sum();
    let completion: u32 = r.segments.iter().map(|s| s.generated_tokens).sum();
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

/// A streamed answer being turned into OpenAI chunks.
struct Chunks {
    events: AskEvents,
    order: InOrder,
    id: String,
    model: String,
    created: u64,
    kind: Kind,
    ended: bool,
}

impl Chunks {
    /// The next SSE event: a chunk, the final chunk, an error, `[DONE]`.
    async fn next_chunk(&mut self, mut pending: Option<v1::AskEvent>) -> Option<SseEvent> {
        if self.ended {
            return None;
        }
        loop {
            let ev = match pending.take() {
                Some(ev) => ev,
                None => match self.events.next().await {
                    None => {
                        self.ended = true;
                        return Some(SseEvent::default().data("[DONE]"));
                    }
                    Some(Err(e)) => {
                        self.ended = true;
                        let e = ApiError::from(e);
                        let body = json!({"error": {"message": e.message, "type": e.kind, "code": e.code}});
                        return Some(SseEvent::default().data(body.to_string()));
                    }
                    Some(Ok(ev)) => ev,
                },
            };
            let text = self.order.push(&ev);
            let chunk = match &ev.event {
                Some(Event::Routed(r)) => {
                    self.id = r.request_id.clone();
                    let extra = json!({"routed": {
                        "request_id": r.request_id, "policy": r.policy,
                        "gate_s": r.gate_s, "route_s": r.route_s,
                        "segments": r.segments.iter().map(|s| json!({
                            "index": s.index, "segment": s.segment, "target": s.target,
                            "expert": s.expert, "explanation": s.explanation,
                        })).collect::<Vec<_>>(),
                    }});
                    self.chunk(Some(""), None, Some(extra), true)
                }
                Some(Event::Piece(_)) if text.is_empty() => None,
                Some(Event::Piece(_)) => self.chunk(Some(&text), None, None, false),
                Some(Event::Started(s)) => {
                    let extra = json!({"started": {"index": s.index, "attempt": s.attempt, "target": s.target, "expert": s.expert}});
                    self.chunk(Some(&text), None, Some(extra), false)
                }
                Some(Event::Finished(f)) => {
                    let extra = json!({"finished": {"index": f.index, "target": f.target, "error": f.error}});
                    self.chunk(Some(&text), None, Some(extra), false)
                }
                Some(Event::Done(r)) => {
                    let mut extra = crate::report::json(r);
                    extra["usage"] = usage(r);
                    self.chunk(
                        Some(&text),
                        Some("stop"),
                        Some(json!({"answer": extra})),
                        false,
                    )
                }
                None => None,
            };
            if let Some(c) = chunk {
                return Some(SseEvent::default().data(c.to_string()));
            }
            // Nothing to send for this event (a piece held for order):
            // read the next one.
        }
    }

    fn chunk(
        &self,
        text: Option<&str>,
        finish: Option<&str>,
        extra: Option<Value>,
        role: bool,
    ) -> Option<Value> {
        let text = text.unwrap_or_default();
        let choice = match self.kind {
            Kind::Chat => {
                let mut delta = json!({"content": text});
                if role {
                    delta["role"] = json!("assistant");
                }
                json!({"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null})
            }
            Kind::Completion => {
                json!({"index": 0, "text": text, "finish_reason": finish, "logprobs": null})
            }
        };
        let (prefix, object) = match self.kind {
            Kind::Chat => ("chatcmpl", "chat.completion.chunk"),
            Kind::Completion => ("cmpl", "text_completion"),
        };
        let mut c = json!({
            "id": format!("{prefix}-{}", self.id),
            "object": object,
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        });
        if let Some(x) = extra {
            c["netmoe"] = x;
        }
        Some(c)
    }
}

async fn models(State(p): State<Arc<Pipeline>>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize(&p, &headers) {
        return e.into_response();
    }
    let mut data = vec![json!({
        "id": MIXTURE_MODEL, "object": "model", "created": 0, "owned_by": "netmoe",
        "netmoe": {"kind": "mixture", "policy": p.config.default_policy},
    })];
    let mut policies: Vec<&String> = p.policies.keys().collect();
    policies.sort();
    for name in policies {
        data.push(json!({
            "id": format!("netmoe:{name}"), "object": "model", "created": 0, "owned_by": "netmoe",
            "netmoe": {"kind": "mixture", "policy": name},
        }));
    }
    let mut experts: Vec<(String, Vec<Value>)> = Vec::new();
    for n in p.registry.live() {
        let node = json!({
            "node": n.id(),
            "domain": n.domain(),
            "model": n.info.model.as_ref().map(|m| m.name.clone()).unwrap_or_default(),
            "snr_db": n.snr.snr_db,
        });
        match experts.iter_mut().find(|(e, _)| e == n.expert()) {
            Some((_, nodes)) => nodes.push(node),
            None => experts.push((n.expert().to_owned(), vec![node])),
        }
    }
    experts.sort_by(|a, b| a.0.cmp(&b.0));
    for (expert, nodes) in experts {
        data.push(json!({
            "id": format!("expert:{expert}"), "object": "model", "created": 0, "owned_by": "netmoe",
            "netmoe": {"kind": "expert", "expert": expert, "nodes": nodes},
        }));
    }
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_map_to_policy_or_pinned_expert() {
        let c = |m: &str| Common {
            model: Some(m.into()),
            ..Default::default()
        };
        let r = ask_request("p".into(), &c("netmoe:snr")).expect("policy model");
        assert_eq!((r.policy.as_str(), r.expert.as_str()), ("snr", ""));
        let r = ask_request("p".into(), &c("expert:fantasy")).expect("expert model");
        assert_eq!((r.policy.as_str(), r.expert.as_str()), ("", "fantasy"));
        let e = ask_request("p".into(), &c("gpt-4o")).expect_err("unknown model");
        assert_eq!(e.status(), axum::http::StatusCode::NOT_FOUND);
    }

    #[test]
    fn temperature_zero_becomes_near_greedy_and_max_tokens_has_two_spellings() {
        let r = ask_request(
            "p".into(),
            &Common {
                temperature: Some(0.0),
                max_completion_tokens: Some(7),
                ..Default::default()
            },
        )
        .expect("request");
        assert_eq!(r.temperature, Some(0.01));
        assert_eq!(r.max_tokens, Some(7));
    }

    #[test]
    fn content_parts_are_joined() {
        let v = json!([{"type": "text", "text": "a "}, {"type": "text", "text": "b"}]);
        assert_eq!(content_text(&v).as_deref(), Some("a b"));
        assert_eq!(content_text(&json!(3)), None);
    }

    fn message(role: &str, content: Value) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content,
        }
    }

    #[test]
    fn earlier_user_and_assistant_messages_become_history_and_system_is_left_out() {
        let (prompt, history) = conversation(&[
            message("system", json!("be brief")),
            message("user", json!("a knight")),
            message(
                "assistant",
                json!([{"type": "text", "text": "Sir Aldric rode."}]),
            ),
            message("user", json!("then a dragon")),
        ])
        .expect("conversation");
        assert_eq!(prompt, "then a dragon");
        let roles: Vec<i32> = history.iter().map(|t| t.role).collect();
        assert_eq!(
            roles,
            [v1::TurnRole::User as i32, v1::TurnRole::Assistant as i32]
        );
        assert_eq!(history[1].text, "Sir Aldric rode.");
    }

    #[test]
    fn a_chat_must_end_with_the_users_text_and_roles_are_checked() {
        let last_assistant = conversation(&[
            message("user", json!("a knight")),
            message("assistant", json!("Sir Aldric rode.")),
        ]);
        let tool = conversation(&[message("tool", json!("{}")), message("user", json!("x"))]);
        let only_system = conversation(&[message("system", json!("be brief"))]);
        let not_text = conversation(&[message("user", json!(3))]);
        for (what, r) in [
            ("last assistant", last_assistant),
            ("tool role", tool),
            ("only system", only_system),
            ("numeric content", not_text),
        ] {
            let e = r.expect_err(what);
            assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST, "{what}");
        }
    }
}
