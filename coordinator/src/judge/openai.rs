//! The paper's setting: an OpenAI-compatible chat endpoint (OpenAI, vLLM,
//! llama.cpp's server, Ollama...) scores the text with the paper's prompt.
//!
//! The score is the probability-weighted mean over the number tokens of the
//! first number in the reply when the endpoint returns logprobs, and the
//! first number of the reply text when it does not.

use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

use super::digits::{expectation, split_one};
use super::local::judge_prompt;
use super::{Judge, JudgeError, JudgeInput, Verdict};

/// Budget of one request, connection to last byte.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Alternatives per token asked for (OpenAI's maximum is 20).
pub const TOP_LOGPROBS: u32 = 20;
/// Reply length cap: a score needs a few tokens, chattier models a few more.
pub const MAX_REPLY_TOKENS: u32 = 64;
/// Characters of an unusable reply or error body quoted in errors.
const QUOTE_CHARS: usize = 300;

/// A judge behind an OpenAI-compatible `/chat/completions` (name "openai").
///
/// Sends `temperature: 0` and asks for `logprobs` / `top_logprobs`; an
/// endpoint that rejects those (HTTP 400 or 422) is asked once more
/// without them. Plain `http://` only: the crate's HTTP client is built
/// without TLS, so an `https://` endpoint needs a local TLS-terminating
/// proxy.
#[derive(Debug, Clone)]
pub struct OpenAiJudge {
    url: String,
    api_key: Option<String>,
    model: String,
    agent: ureq::Agent,
}

impl OpenAiJudge {
    /// `base_url` is the API root (`http://host:8080/v1`); requests go to
    /// `{base_url}/chat/completions`. `api_key` is sent as a bearer token.
    pub fn new(base_url: String, api_key: Option<String>, model: String) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(REQUEST_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        Self {
            url: format!("{}/chat/completions", base_url.trim_end_matches('/')),
            api_key,
            model,
            agent,
        }
    }

    /// The full endpoint URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// One blocking exchange; `Ok(Err(status))` for a status the caller may
    /// retry differently.
    fn post(&self, body: &serde_json::Value) -> Result<Result<ChatResponse, u16>, JudgeError> {
        let mut req = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json");
        if let Some(key) = &self.api_key {
            req = req.header("Authorization", &format!("Bearer {key}"));
        }
        // A serialised body goes out with a Content-Length (`send_json`
        // streams it chunked, which some small servers do not accept).
        let bytes = serde_json::to_vec(body).expect("a JSON value serialises");
        let mut resp = req
            .send(&bytes[..])
            .map_err(|e| {
                let hint = if self.url.starts_with("https://") {
                    " (the coordinator's HTTP client may be built without TLS: try an http:// endpoint or a local proxy)"
                } else {
                    ""
                };
                JudgeError::Remote(format!("POST {}: {e}{hint}", self.url))
            })?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().map_err(|e| {
            JudgeError::Remote(format!(
                "POST {}: HTTP {status}, unreadable body: {e}",
                self.url
            ))
        })?;
        if status == 400 || status == 422 {
            tracing::debug!(url = %self.url, status, body = %quote(&text), "judge endpoint rejected the request");
            return Ok(Err(status));
        }
        if !(200..300).contains(&status) {
            return Err(JudgeError::Remote(format!(
                "POST {}: HTTP {status}: {}",
                self.url,
                quote(&text)
            )));
        }
        serde_json::from_str(&text).map(Ok).map_err(|e| {
            JudgeError::Remote(format!(
                "POST {}: not a chat completion ({e}): {}",
                self.url,
                quote(&text)
            ))
        })
    }

    fn score_blocking(&self, text: &str) -> Result<Verdict, JudgeError> {
        let mut body = json!({
            "model": self.model,
            "messages": [{"role": "user", "content": judge_prompt(text)}],
            "temperature": 0,
            "max_tokens": MAX_REPLY_TOKENS,
            "logprobs": true,
            "top_logprobs": TOP_LOGPROBS,
        });
        let resp = match self.post(&body)? {
            Ok(r) => r,
            Err(_) => {
                let obj = body.as_object_mut().expect("a JSON object");
                obj.remove("logprobs");
                obj.remove("top_logprobs");
                self.post(&body)?.map_err(|status| {
                    JudgeError::Remote(format!(
                        "POST {}: HTTP {status} (also without logprobs)",
                        self.url
                    ))
                })?
            }
        };
        verdict_from(&resp)
    }
}

impl Judge for OpenAiJudge {
    fn name(&self) -> &str {
        "openai"
    }

    fn score<'a>(&'a self, input: JudgeInput<'a>) -> BoxFuture<'a, Result<Verdict, JudgeError>> {
        let this = self.clone();
        let text = input.text.to_owned();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || this.score_blocking(&text))
                .await
                .map_err(|e| JudgeError::Remote(format!("judge request task failed: {e}")))?
        })
    }
}

#[derive(Debug, Deserialize)]
struct ChatResponse {
    #[serde(default)]
    choices: Vec<Choice>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    message: Message,
    #[serde(default)]
    logprobs: Option<ChoiceLogprobs>,
}

#[derive(Debug, Deserialize)]
struct Message {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChoiceLogprobs {
    #[serde(default)]
    content: Option<Vec<TokenLogprob>>,
}

#[derive(Debug, Deserialize)]
struct TokenLogprob {
    token: String,
    logprob: f64,
    #[serde(default)]
    top_logprobs: Vec<TopLogprob>,
}

#[derive(Debug, Deserialize)]
struct TopLogprob {
    token: String,
    logprob: f64,
}

fn quote(s: &str) -> String {
    let cut: String = s.chars().take(QUOTE_CHARS).collect();
    if cut.len() < s.len() {
        format!("{cut:?}...")
    } else {
        format!("{cut:?}")
    }
}

/// A token read as a score: an integer 0..=10 once surrounding spaces are
/// stripped (tokenizers differ on whether the space is part of the token).
fn score_token(token: &str) -> Option<u32> {
    let t = token.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) || t.len() > 2 {
        return None;
    }
    t.parse().ok().filter(|v| *v <= 10)
}

/// The expected score from the logprobs of the first number token in the
/// reply; `None` if there is none or its alternatives carry no number.
///
/// For tokenizers that split "10" into "1", "0": when the chosen token is
/// "1", the next position's alternatives (which follow that "1") split the
/// mass of "1" into "10" and "1". When another number was chosen, the mass
/// of an alternative "1" counts as 1: the "0" that might follow it is unseen.
fn logprob_expectation(tokens: &[TokenLogprob]) -> Option<(f64, f64)> {
    let i = tokens
        .iter()
        .position(|t| score_token(&t.token).is_some())?;
    let here = &tokens[i];
    let alternatives: Vec<(&str, f64)> = if here.top_logprobs.is_empty() {
        vec![(here.token.as_str(), here.logprob)]
    } else {
        here.top_logprobs
            .iter()
            .map(|t| (t.token.as_str(), t.logprob))
            .collect()
    };
    let after_one: Option<[f64; 10]> = (here.token.trim() == "1")
        .then(|| tokens.get(i + 1))
        .flatten()
        .map(|next| {
            let mut d = [0.0; 10];
            for t in &next.top_logprobs {
                if t.token.len() == 1 && t.token.as_bytes()[0].is_ascii_digit() {
                    d[(t.token.as_bytes()[0] - b'0') as usize] += t.logprob.exp();
                }
            }
            d
        });
    let mut mass = Vec::new();
    let mut raw = 0.0;
    for (tok, lp) in alternatives {
        let Some(v) = score_token(tok) else { continue };
        let p = lp.exp();
        raw += p;
        match (v, &after_one) {
            (1, Some(after)) if tok.trim() == "1" => mass.extend(split_one(p, after)),
            _ => mass.push((v as f64, p)),
        }
    }
    expectation(&mass).map(|s| (s, raw))
}

/// The first number in `reply` (integer or decimal), if any.
fn first_number(reply: &str) -> Option<f64> {
    let start = reply.find(|c: char| c.is_ascii_digit())?;
    let rest = &reply[start..];
    let mut end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    if rest[end..].starts_with('.') && rest[end + 1..].starts_with(|c: char| c.is_ascii_digit()) {
        end += 1 + rest[end + 1..]
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len() - end - 1);
    }
    rest[..end].parse().ok()
}

fn verdict_from(resp: &ChatResponse) -> Result<Verdict, JudgeError> {
    let choice = resp
        .choices
        .first()
        .ok_or_else(|| JudgeError::Remote("reply has no choices".into()))?;
    let reply = choice.message.content.as_deref().unwrap_or("");
    let tokens = choice
        .logprobs
        .as_ref()
        .and_then(|l| l.content.as_deref())
        .unwrap_or(&[]);
    if let Some((score, mass)) = logprob_expectation(tokens) {
        let score = score.clamp(0.0, 10.0);
        return Ok(Verdict {
            score,
            parts: vec![("expected_score", score), ("digit_mass", mass)],
        });
    }
    let n = first_number(reply)
        .ok_or_else(|| JudgeError::Remote(format!("no score in reply {}", quote(reply))))?;
    let score = n.clamp(0.0, 10.0);
    Ok(Verdict {
        score,
        parts: vec![("parsed_score", score)],
    })
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;

    use super::*;

    /// Serves canned `(status, body)` replies, one per connection, on
    /// 127.0.0.1:0; returns the base URL and the request bodies received.
    fn serve(replies: Vec<(u16, String)>) -> (String, mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for (status, body) in replies {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut len = 0;
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap();
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                }
                let mut req = vec![0; len];
                reader.read_exact(&mut req).unwrap();
                tx.send(format!(
                    "{}{}",
                    request_line,
                    String::from_utf8(req).unwrap()
                ))
                .unwrap();
                let mut stream = stream;
                write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .unwrap();
            }
        });
        (format!("http://{addr}/v1"), rx)
    }

    fn chat(content: &str, logprobs: serde_json::Value) -> String {
        json!({
            "id": "x", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": content},
                "logprobs": logprobs}]
        })
        .to_string()
    }

    fn judge(url: String) -> OpenAiJudge {
        OpenAiJudge::new(url, Some("sk-test".into()), "gpt-test".into())
    }

    #[tokio::test]
    async fn uses_logprobs_of_the_first_number() {
        let lp = json!({"content": [
            {"token": "8", "logprob": -0.357, "top_logprobs": [
                {"token": "8", "logprob": (0.6f64).ln()},
                {"token": "6", "logprob": (0.2f64).ln()},
                {"token": " 10", "logprob": (0.2f64).ln()},
                {"token": "Great", "logprob": (0.01f64).ln()}]}]});
        let (url, rx) = serve(vec![(200, chat("8", lp))]);
        let v = judge(url)
            .score(JudgeInput {
                task: "t",
                text: "A story.",
            })
            .await
            .unwrap();
        assert!((v.score - 8.0).abs() < 1e-9, "{v:?}"); // 0.6*8 + 0.2*6 + 0.2*10
        let req = rx.recv().unwrap();
        assert!(req.starts_with("POST /v1/chat/completions "), "{req}");
        let body: serde_json::Value = serde_json::from_str(req.lines().last().unwrap()).unwrap();
        assert_eq!(body["model"], "gpt-test");
        assert_eq!(body["temperature"], 0);
        assert_eq!(body["logprobs"], true);
        assert_eq!(body["top_logprobs"], 20);
        assert!(
            body["messages"][0]["content"]
                .as_str()
                .unwrap()
                .contains("Story: A story.")
        );
    }

    #[tokio::test]
    async fn splits_one_into_ten_for_digit_tokenizers() {
        let lp = json!({"content": [
            {"token": "1", "logprob": (0.5f64).ln(), "top_logprobs": [
                {"token": "1", "logprob": (0.5f64).ln()},
                {"token": "9", "logprob": (0.5f64).ln()}]},
            {"token": "0", "logprob": (0.8f64).ln(), "top_logprobs": [
                {"token": "0", "logprob": (0.8f64).ln()},
                {"token": ".", "logprob": (0.2f64).ln()}]}]});
        let (url, _rx) = serve(vec![(200, chat("10", lp))]);
        let v = judge(url)
            .score(JudgeInput {
                task: "t",
                text: "x",
            })
            .await
            .unwrap();
        // "1" -> 0.4 "10" + 0.1 "1"; "9" 0.5: (4 + 0.1 + 4.5) / 1.0.
        assert!((v.score - 8.6).abs() < 1e-9, "{v:?}");
    }

    #[tokio::test]
    async fn parses_the_reply_without_logprobs() {
        let (url, _rx) = serve(vec![(
            200,
            chat("I would give it 7.5/10.", serde_json::Value::Null),
        )]);
        let v = judge(url)
            .score(JudgeInput {
                task: "t",
                text: "x",
            })
            .await
            .unwrap();
        assert_eq!(v.score, 7.5);
        assert_eq!(v.parts[0].0, "parsed_score");
    }

    #[tokio::test]
    async fn retries_once_without_logprobs_when_rejected() {
        let (url, rx) = serve(vec![
            (400, r#"{"error":"logprobs not supported"}"#.into()),
            (200, chat("Score: 12", serde_json::Value::Null)),
        ]);
        let v = judge(url)
            .score(JudgeInput {
                task: "t",
                text: "x",
            })
            .await
            .unwrap();
        assert_eq!(v.score, 10.0, "clamped");
        let first = rx.recv().unwrap();
        assert!(first.contains("\"logprobs\":true"), "{first}");
        let second = rx.recv().unwrap();
        assert!(!second.contains("logprobs"), "{second}");
    }

    #[tokio::test]
    async fn no_number_quotes_the_reply() {
        let (url, _rx) = serve(vec![(
            200,
            chat("I cannot judge this.", serde_json::Value::Null),
        )]);
        let e = judge(url)
            .score(JudgeInput {
                task: "t",
                text: "x",
            })
            .await
            .unwrap_err();
        assert!(matches!(e, JudgeError::Remote(_)));
        assert!(e.to_string().contains("I cannot judge this."), "{e}");
    }

    #[tokio::test]
    async fn http_errors_name_url_and_status() {
        let (url, _rx) = serve(vec![(500, r#"{"error":"boom"}"#.into())]);
        let e = judge(url.clone())
            .score(JudgeInput {
                task: "t",
                text: "x",
            })
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("{url}/chat/completions")) && msg.contains("HTTP 500"),
            "{msg}"
        );
        assert!(msg.contains("boom"), "{msg}");
    }

    #[tokio::test]
    async fn unreachable_endpoint_is_named() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e = judge(format!("http://{addr}/v1"))
            .score(JudgeInput {
                task: "t",
                text: "x",
            })
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("POST http://{addr}/v1/chat/completions")),
            "{e}"
        );
    }

    #[test]
    fn first_number_reads_integers_and_decimals() {
        assert_eq!(first_number("Score: 7"), Some(7.0));
        assert_eq!(first_number("8.5 out of 10"), Some(8.5));
        assert_eq!(first_number("9."), Some(9.0));
        assert_eq!(first_number("none"), None);
    }
}
