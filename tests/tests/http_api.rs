//! The HTTP API for real: a secured cluster (coordinator + three edge
//! experts, separate processes, the real model) serving the
//! OpenAI-compatible API, driven by the official `openai` Python client;
//! `promtool check metrics` on the coordinator's and every node's
//! `/metrics` after that traffic, with histogram counts matching what was
//! sent; the gRPC `AskStream` twin; and a streaming client that goes away
//! cancelling its segments on every node.
//!
//! The Python client and promtool come from the README's test command
//! (a cached venv and Debian's `prometheus` package). Without them the
//! test says so, loudly, and fails: it never passes without checking.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use futures::StreamExt;
use netmoe_coordinator::cluster::{NodeSpec, demo_nodes};
use netmoe_proto::v1::{self, ask_event::Event};
use netmoe_tests::start_cluster;

const PROMPT: &str = "Write a story in which a young knight rides out to face a dragon, \
    a robot scientist repairs a starship far from Earth, \
    and a family of otters survives the first winter storm.";

fn venv_python() -> std::path::PathBuf {
    std::env::var_os("NETMOE_TEST_PYTHON").map_or_else(
        || netmoe_common::fetch::cache_dir().join("venv-test/bin/python"),
        std::path::PathBuf::from,
    )
}

fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

/// Sum of the samples of `name` whose labels contain `labels`.
fn sample_sum(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The metric families a scrape declares (`# TYPE name ...` lines).
fn families(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn promtool(text: &str, what: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; the README's test command installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics on {what}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn openai_client_streaming_metrics_and_cancellation() -> anyhow::Result<()> {
    let python = venv_python();
    assert!(
        python.exists(),
        "\n*** {} is missing: run the README's test command (deploy/test.sh), which makes the venv with the openai client ***\n",
        python.display()
    );
    let nodes: Vec<NodeSpec> = demo_nodes()
        .into_iter()
        .map(|mut n| {
            n.extra
                .extend(["--metrics-listen".to_owned(), "127.0.0.1:0".to_owned()]);
            n
        })
        .collect();
    let cluster = start_cluster(
        Some(nodes),
        &[
            "--http-listen",
            "127.0.0.1:0",
            "--max-concurrent-asks",
            "1",
            "--local-candidate",
            "false",
            "--policy",
            "relevance",
        ],
    )
    .await?;
    let http = cluster.coordinator.http_addr.expect("coordinator HTTP");
    let key = cluster
        .credentials
        .as_ref()
        .expect("secured cluster")
        .api_key
        .clone();

    // The official client, end to end.
    let out = tokio::task::spawn_blocking({
        let python = python.clone();
        let key = key.clone();
        move || {
            Command::new(python)
                .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/openai_api.py"))
                .arg(format!("http://{http}/v1"))
                .arg(key)
                .arg(PROMPT)
                .output()
        }
    })
    .await??;
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the openai client checks failed");
    let measured: serde_json::Value =
        serde_json::from_slice(out.stdout.trim_ascii()).expect("the script's JSON line");
    eprintln!("openai client: {measured}");
    // Answered: chat, streamed chat, the single-turn and multi-turn chats,
    // completion, the one in flight during the 429. Refused inside the
    // pipeline: max_tokens 0, the oversized history, the oversized prompt,
    // the overload (the bad key, the unknown model and the chat ending
    // with the assistant's turn never reach it).
    let answered = 6.0;
    let refused = 4.0;

    // The gRPC twin streams the same events: routing first, then text,
    // then the answer.
    let mut c = cluster.client().await?;
    let mut events = c
        .ask_stream(v1::AskRequest {
            prompt: PROMPT.into(),
            max_tokens: Some(24),
            seed: Some(3),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut kinds = Vec::new();
    let mut done = None;
    while let Some(ev) = events.next().await {
        match ev?.event.expect("event") {
            Event::Routed(_) => kinds.push('R'),
            Event::Started(_) => kinds.push('S'),
            Event::Piece(_) => kinds.push('p'),
            Event::Finished(_) => kinds.push('F'),
            Event::Done(r) => {
                kinds.push('D');
                done = Some(r);
            }
        }
    }
    let kinds: String = kinds.into_iter().collect();
    assert!(kinds.starts_with('R') && kinds.ends_with('D'), "{kinds}");
    assert!(kinds.contains('p'), "no pieces: {kinds}");
    let done = done.expect("answer");
    let segments = done.segments.len();
    assert_eq!(kinds.matches('F').count(), segments, "{kinds}");
    let answered = answered + 1.0;

    // Metrics after that traffic: valid, and counting what was sent.
    let coord = get(http, "/metrics");
    promtool(&coord, "the coordinator");
    assert_eq!(
        sample_sum(
            &coord,
            "netmoe_request_stage_seconds_count",
            r#"stage="total""#
        ),
        answered,
        "{coord}"
    );
    assert_eq!(sample_sum(&coord, "netmoe_story_score_count", ""), answered);
    assert_eq!(sample_sum(&coord, "netmoe_refusals_total", ""), refused);
    for reason in ["bad_max_tokens", "prompt_too_large", "busy"] {
        assert_eq!(
            sample_sum(
                &coord,
                "netmoe_refusals_total",
                &format!(r#"reason="{reason}""#)
            ),
            1.0,
            "{reason}: {coord}"
        );
    }
    let decisions = sample_sum(&coord, "netmoe_routing_decisions_total", "");
    let mut generated = 0.0;
    let coord_families = families(&coord);
    for n in &cluster.nodes {
        let text = get(n.http_addr.expect("node metrics"), "/metrics");
        promtool(&text, &n.name);
        let shared: Vec<String> = families(&text)
            .intersection(&coord_families)
            .cloned()
            .collect();
        assert!(
            shared.is_empty(),
            "a metric name with two meanings (coordinator and node {}): {shared:?}",
            n.name
        );
        let ok = sample_sum(&text, "netmoe_edge_generations_total", r#"outcome="ok""#);
        assert_eq!(
            sample_sum(&text, "netmoe_edge_prompt_eval_seconds_count", ""),
            ok,
            "every finished generation has its prompt-eval time"
        );
        generated += ok;
    }
    assert_eq!(
        generated, decisions,
        "the nodes' finished generations are the coordinator's routed segments"
    );
    // Every metric the shipped Grafana dashboard queries exists in a scrape.
    let mut scraped = coord.clone();
    for n in &cluster.nodes {
        scraped.push_str(&get(n.http_addr.expect("node metrics"), "/metrics"));
    }
    let grafana = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/netmoe.json"),
    )?;
    let names = grafana_metrics(&grafana);
    assert!(
        names.len() >= 8,
        "too few metrics found in the dashboard: {names:?}"
    );
    for name in &names {
        assert!(
            scraped
                .lines()
                .any(|l| !l.starts_with('#') && l.starts_with(name.as_str())),
            "the Grafana dashboard queries {name}, which no process exports"
        );
    }

    // A streaming HTTP client that goes away cancels its segments on the
    // nodes.
    let cancelled_before = cancelled(&cluster);
    {
        let mut s = std::net::TcpStream::connect(http)?;
        let body = serde_json::json!({
            "model": "netmoe", "stream": true, "max_tokens": 200,
            "messages": [{"role": "user", "content": PROMPT}],
        })
        .to_string();
        write!(
            s,
            "POST /v1/chat/completions HTTP/1.1\r\nHost: {http}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        let mut buf = [0u8; 4096];
        let mut seen = String::new();
        while !seen.contains("\"started\"") {
            let n = s.read(&mut buf)?;
            assert!(n > 0, "stream ended early: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    } // dropped: the connection closes
    let t = std::time::Instant::now();
    loop {
        let now = cancelled(&cluster);
        if now >= cancelled_before + 1.0 {
            eprintln!(
                "{} generations cancelled {:?} after the client left",
                now - cancelled_before,
                t.elapsed()
            );
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no node cancelled a generation after the client left"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cluster.shutdown().await?;
    Ok(())
}

/// The `netmoe_*` series names in the dashboard's PromQL expressions.
fn grafana_metrics(dashboard: &str) -> std::collections::BTreeSet<String> {
    let v: serde_json::Value = serde_json::from_str(dashboard).expect("dashboard JSON");
    let mut exprs = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    match x.as_str() {
                        Some(e) if k == "expr" => out.push(e.to_owned()),
                        _ => walk(x, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(&v, &mut exprs);
    let mut names = std::collections::BTreeSet::new();
    for e in exprs {
        let mut rest = e.as_str();
        while let Some(i) = rest.find("netmoe_") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            names.insert(tail[..end].to_owned());
            rest = &tail[end..];
        }
    }
    names
}

fn cancelled(cluster: &netmoe_coordinator::cluster::Cluster) -> f64 {
    cluster
        .nodes
        .iter()
        .map(|n| {
            sample_sum(
                &get(n.http_addr.expect("node metrics"), "/metrics"),
                "netmoe_edge_generations_total",
                r#"outcome="cancelled""#,
            )
        })
        .sum()
}
