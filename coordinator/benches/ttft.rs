//! Time to the first streamed text of an answer through the coordinator's
//! HTTP API (`stream: true`, one segment pinned to one expert), split into
//! the gate, routing, the hop to the node and the node's own first text,
//! measured in the same run and on the same segment as `edge-node ask`
//! straight to that node. The coordinator may add its gate time and at
//! most 50 ms more; the table says whether it did, round by round, and as
//! medians. The two paths alternate which goes first, so drift on this
//! shared machine hits both.
//!
//! `cargo build --release --bins && cargo bench -p netmoe-coordinator --bench ttft [-- ROUNDS]`

use std::io::BufRead;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use netmoe_coordinator::cluster::{Cluster, ClusterSpec, demo_nodes};
use serde_json::{Value, json};

/// One segment, so the first text is that segment's and the pin decides
/// the node.
const PROMPT: &str = "A robot scientist repairs a starship far from Earth.";
/// The expert (and node) both paths use.
const EXPERT: &str = "scifi";
/// Tokens written per answer: the first one is what is measured.
const MAX_TOKENS: u32 = 12;
/// The bound the coordinator must stay within beyond its gate.
const BUDGET_MS: f64 = 50.0;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// What one streamed request through the API showed.
struct Streamed {
    /// Request sent → first non-empty content delta.
    first_text: Duration,
    /// Request sent → the `started` event of segment 0.
    started: Duration,
    gate_s: f64,
    route_s: f64,
    segment: String,
    target: String,
}

fn stream_once(http: std::net::SocketAddr, seed: u64) -> anyhow::Result<Streamed> {
    let body = json!({
        "model": format!("expert:{EXPERT}"),
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": MAX_TOKENS,
        "seed": seed,
        "stream": true,
    });
    let sent = Instant::now();
    let resp = ureq::post(format!("http://{http}/v1/chat/completions"))
        .header("content-type", "application/json")
        .send(body.to_string())?;
    let reader = std::io::BufReader::new(resp.into_body().into_reader());
    let (mut first_text, mut started, mut routed) = (None, None, None::<Value>);
    for line in reader.lines() {
        let line = line?;
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            break;
        }
        let v: Value = serde_json::from_str(data)?;
        anyhow::ensure!(v.get("error").is_none(), "the API failed: {v}");
        let ext = &v["netmoe"];
        if ext.get("routed").is_some() {
            routed = Some(ext["routed"].clone());
        }
        if ext.get("started").is_some() && started.is_none() {
            started = Some(sent.elapsed());
        }
        let text = v["choices"][0]["delta"]["content"].as_str().unwrap_or("");
        if !text.is_empty() && first_text.is_none() {
            first_text = Some(sent.elapsed());
        }
    }
    let routed = routed.ok_or_else(|| anyhow::anyhow!("no routed event"))?;
    let seg = &routed["segments"][0];
    Ok(Streamed {
        first_text: first_text.ok_or_else(|| anyhow::anyhow!("no text streamed"))?,
        started: started.ok_or_else(|| anyhow::anyhow!("no started event"))?,
        gate_s: routed["gate_s"].as_f64().unwrap_or(f64::NAN),
        route_s: routed["route_s"].as_f64().unwrap_or(f64::NAN),
        segment: seg["segment"].as_str().unwrap_or_default().to_owned(),
        target: seg["target"].as_str().unwrap_or_default().to_owned(),
    })
}

/// `edge-node --json ask SEGMENT` against the node: its first-text time
/// (from the request sent, after connecting), as the binary reports it.
fn ask_direct(
    bin: &std::path::Path,
    node: std::net::SocketAddr,
    segment: &str,
    seed: u64,
) -> anyhow::Result<f64> {
    let out = std::process::Command::new(bin)
        .args([
            "--json",
            "ask",
            segment,
            "--endpoint",
            &format!("http://{node}"),
        ])
        .args(["--context", PROMPT, "--max-tokens", &MAX_TOKENS.to_string()])
        .args(["--seed", &(seed as u32).to_string()])
        .env("RUST_LOG", "error")
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "edge-node ask failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout)?;
    v["first_text_s"]
        .as_f64()
        .ok_or_else(|| anyhow::anyhow!("edge-node ask wrote no text: {v}"))
}

fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .and_then(|a| a.parse().ok())
        .unwrap_or(15);
    let model = std::env::var_os("NETMOE_TEST_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            netmoe_common::fetch::cache_dir()
                .join("models")
                .join(netmoe_common::fetch::DEFAULT_MODEL_FILE)
        });
    let bin = netmoe_coordinator::cluster::sibling_binary("edge-node")?;
    let rt = tokio::runtime::Runtime::new()?;
    let cluster = rt.block_on(async {
        // Plaintext, so `edge-node ask` can reach the node as the
        // coordinator does; everything else as in the demo.
        let spec = ClusterSpec {
            model,
            coordinator_model: netmoe_coordinator::config::DEFAULT_COORDINATOR_MODEL.into(),
            nodes: demo_nodes(),
            node_threads: 1,
            coordinator_threads: 2,
            coordinator_args: vec!["--http-listen".into(), "127.0.0.1:0".into()],
            log: "error".into(),
            secure: false,
        };
        Cluster::start(&spec).await
    })?;
    let http = cluster
        .coordinator
        .http_addr
        .ok_or_else(|| anyhow::anyhow!("the coordinator serves no HTTP"))?;
    let node = cluster
        .nodes
        .iter()
        .find(|n| n.name.ends_with(&format!("({EXPERT})")))
        .map(|n| n.addr)
        .ok_or_else(|| anyhow::anyhow!("no {EXPERT} node in the demo cluster"))?;
    println!(
        "time to first text, one segment pinned to expert {EXPERT} ({MAX_TOKENS} tokens), {rounds} rounds (+1 warm-up); ms"
    );
    println!(
        "{:>5} | {:>9} {:>7} {:>7} {:>9} {:>9} | {:>9} | {:>9} {:>7}",
        "round", "API first", "gate", "route", "→started", "→text", "node ask", "overhead", "ratio"
    );
    println!(
        "      | API first: request → first text; →started: the segment's dispatch began; →text: from then to its first text; node ask: edge-node ask's own first text; overhead: API first − gate − node ask"
    );
    let mut rows = Vec::new();
    for round in 0..=rounds {
        let seed = 100 + round as u64;
        // The segment is the one the gate cut; a warm-up request learns it.
        let (api, direct) = if round % 2 == 0 {
            let api = stream_once(http, seed)?;
            let direct = ask_direct(&bin, node, &api.segment, seed)?;
            (api, direct)
        } else {
            let segment = rows
                .last()
                .map(|(_, _, s): &(Streamed, f64, String)| s.clone())
                .unwrap_or_else(|| PROMPT.to_owned());
            let direct = ask_direct(&bin, node, &segment, seed)?;
            (stream_once(http, seed)?, direct)
        };
        anyhow::ensure!(
            api.target == EXPERT || api.target.starts_with(EXPERT),
            "the pin was not kept: routed to {}",
            api.target
        );
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let overhead = ms(api.first_text) - api.gate_s * 1e3 - direct * 1e3;
        if round > 0 {
            println!(
                "{:>5} | {:>9.1} {:>7.1} {:>7.2} {:>9.1} {:>9.1} | {:>9.1} | {:>9.1} {:>7.3}",
                round,
                ms(api.first_text),
                api.gate_s * 1e3,
                api.route_s * 1e3,
                ms(api.started),
                ms(api.first_text - api.started.min(api.first_text)),
                direct * 1e3,
                overhead,
                ms(api.first_text) / (direct * 1e3 + api.gate_s * 1e3)
            );
        }
        let segment = api.segment.clone();
        rows.push((api, direct, segment));
    }
    let measured = &rows[1..];
    let med =
        |f: &dyn Fn(&(Streamed, f64, String)) -> f64| median(measured.iter().map(f).collect());
    let api_ms = med(&|r| r.0.first_text.as_secs_f64() * 1e3);
    let gate_ms = med(&|r| r.0.gate_s * 1e3);
    let route_ms = med(&|r| r.0.route_s * 1e3);
    let direct_ms = med(&|r| r.1 * 1e3);
    let overhead_ms = med(&|r| r.0.first_text.as_secs_f64() * 1e3 - r.0.gate_s * 1e3 - r.1 * 1e3);
    println!(
        "median | API first text {api_ms:.1} = gate {gate_ms:.1} + node's own first text {direct_ms:.1} (edge-node ask) + overhead {overhead_ms:.1} (of which routing {route_ms:.2}); API / (node + gate) = {:.3}",
        api_ms / (direct_ms + gate_ms)
    );
    let mut over: Vec<f64> = measured
        .iter()
        .map(|r| r.0.first_text.as_secs_f64() * 1e3 - r.0.gate_s * 1e3 - r.1 * 1e3)
        .collect();
    over.sort_by(f64::total_cmp);
    let q = |f: f64| over[((over.len() - 1) as f64 * f).round() as usize];
    let before_node = med(&|r| r.0.started.as_secs_f64() * 1e3 - r.0.gate_s * 1e3);
    println!(
        "coordinator work before the node, beyond the gate (→started − gate): median {before_node:.1} ms"
    );
    println!(
        "coordinator overhead beyond its gate: median {overhead_ms:.1} ms (interquartile {:.1} to {:.1}; the spread is the node's own prompt-eval noise) against a budget of {BUDGET_MS} ms: {}",
        q(0.25),
        q(0.75),
        if overhead_ms <= BUDGET_MS {
            "within"
        } else {
            "OVER"
        }
    );
    rt.block_on(cluster.shutdown())?;
    Ok(())
}
