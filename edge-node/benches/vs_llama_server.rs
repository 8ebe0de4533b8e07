//! The edge node against llama.cpp's own `llama-server` built natively from
//! the same llama.cpp (`deploy/bench/llama-server.sh`): both real processes
//! on 127.0.0.1, the same GGUF, threads, context and sampler chain, rounds
//! alternated in one run, reported as medians and node/server ratios.
//!
//! Per round and server: prompt processing of one ~200-token prompt, one
//! stream generating a fixed number of tokens, and four such streams at
//! once (aggregate tokens/s, timed by the client). Both get prompts of the
//! same token count and stream every token (gRPC, server-sent events);
//! prompt and generation rates are the servers' own timings (the node's
//! `GenerateFinal`, llama-server's `timings`), both excluding the first
//! token from generation.
//!
//! `cargo bench -p netmoe-edge-node --bench vs_llama_server [-- ROUNDS TOKENS MODEL,...]`
//! (defaults: 5 rounds, 128 tokens, the two shipped GGUF models). Exits
//! non-zero when `llama-server` is not built. `NETMOE_LLAMA_SERVER` and
//! `NETMOE_EDGE_NODE_BIN` point at other binaries to compare.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use futures::StreamExt;
use netmoe_proto::v1::{self, edge_node_client::EdgeNodeClient, generate_event::Event};
use serde_json::{Value, json};

const THREADS: u32 = 2;
const SLOTS: u32 = 4;
const CTX_PER_SLOT: u32 = 1024;
const BATCH: u32 = 512;
const STREAMS: usize = 4;
/// Length of the prompt-processing prompt, template included.
const PROMPT_TOKENS: usize = 200;
const SHORT: &str = "a lighthouse keeper finds a message in a bottle";
/// Longer than PROMPT_TOKENS in either model; its prefix is the segment.
const LONG: &str = "The old lighthouse stood at the end of a narrow spit of rock, \
    and every evening its keeper climbed the spiral stairs to light the lamp. \
    One grey morning, walking the tide line below the cliffs, he found a green \
    glass bottle wedged between two stones, its cork sealed with red wax. Inside \
    was a letter written in a careful, slanted hand, addressed to nobody in \
    particular and dated forty years before. The writer described a ship caught \
    in a storm off the northern coast, a crew that had given up hope, and a light \
    that had appeared on the horizon just as the mast began to crack. She wrote \
    that the light had saved them, that she had never learned whose hands had \
    tended it, and that she hoped the sea would one day carry her thanks to the \
    right door. The keeper read the letter three times. Then he went up to the \
    lamp room, opened the logbook his predecessor had left behind, and turned \
    the brittle pages back, year by year, until he found the night of the storm. \
    In the margin, in faded pencil, someone had written a single line about a \
    ship that had passed safely through the rocks before dawn, and beneath it a \
    name that the keeper knew very well, because it was his own grandmother's.";

/// Sampling both servers use: the node's defaults, as one chain.
const TEMPERATURE: f32 = 0.8;
const TOP_K: u32 = 40;
const TOP_P: f32 = 0.95;
const REPEAT_PENALTY: f32 = 1.1;

/// One round's numbers for one server.
#[derive(Default)]
struct Round {
    prompt_tokens: u32,
    short_prompt_tokens: u32,
    prompt_tps: f64,
    gen_tps: f64,
    streams_tps: f64,
}

/// One column of [`Round`].
type Metric = fn(&Round) -> f64;

/// A child process killed when dropped.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn peak_rss_mb(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb / 1024.0)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn llama_server_bin() -> PathBuf {
    std::env::var_os("NETMOE_LLAMA_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            netmoe_common::fetch::cache_dir()
                .join("llama-server")
                .join("bin")
                .join("llama-server")
        })
}

fn node_bin() -> PathBuf {
    std::env::var_os("NETMOE_EDGE_NODE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_edge-node")))
}

/// Starts `edge-node serve` and waits for its `NETMOE_READY` line.
fn start_node(model: &Path, logs: &Path) -> anyhow::Result<(Proc, SocketAddr)> {
    let log = logs.join("edge-node.log");
    let mut child = Command::new(node_bin())
        .args([
            "serve",
            "--insecure",
            "--listen",
            "127.0.0.1:0",
            "--quic",
            "off",
        ])
        .arg("--model")
        .arg(model)
        .args(["--threads", &THREADS.to_string()])
        .args(["--slots", &SLOTS.to_string()])
        .args(["--ctx-per-slot", &CTX_PER_SLOT.to_string()])
        .args(["--batch-tokens", &BATCH.to_string()])
        .args(["--snr", "fixed:30"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .with_context(|| format!("cannot start {}", node_bin().display()))?;
    let stdout = child.stdout.take().expect("piped");
    let proc = Proc { child, log };
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        if let Some(addr) = line?.strip_prefix("NETMOE_READY ") {
            let addr = addr.trim().parse()?;
            // Keep reading, so the node never writes to a closed pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return Ok((proc, addr));
        }
    }
    bail!(
        "edge-node exited before serving; see {}",
        proc.log.display()
    )
}

/// Starts `llama-server` on a free port and waits until `/health` is 200.
fn start_llama_server(bin: &Path, model: &Path, logs: &Path) -> anyhow::Result<(Proc, SocketAddr)> {
    let log = logs.join("llama-server.log");
    let mut child = Command::new(bin)
        .arg("--model")
        .arg(model)
        .args(["--host", "127.0.0.1", "--port", "0"])
        .args(["--threads", &THREADS.to_string()])
        .args(["--threads-batch", &THREADS.to_string()])
        .args(["--parallel", &SLOTS.to_string()])
        .args(["--ctx-size", &(CTX_PER_SLOT * SLOTS).to_string()])
        .args(["--batch-size", &BATCH.to_string()])
        .args(["--ubatch-size", &BATCH.to_string()])
        // The node keeps no prompt cache and no context checkpoints.
        .args(["--cache-ram", "0", "--ctx-checkpoints", "0", "--no-webui"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let stderr = child.stderr.take().expect("piped");
    let proc = Proc { child, log };
    // llama-server logs to stderr; copy it to the log file while looking
    // for the address it bound.
    let (tx, rx) = std::sync::mpsc::channel();
    let path = proc.log.clone();
    std::thread::spawn(move || {
        let mut file = std::fs::File::create(path).expect("log file");
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = writeln!(file, "{line}");
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let _ = tx.send(rest.trim().to_owned());
            }
        }
    });
    let addr: SocketAddr = rx
        .recv_timeout(Duration::from_secs(120))
        .with_context(|| format!("llama-server did not listen; see {}", proc.log.display()))?
        .parse()?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        if let Ok((200, _)) = http(addr, "GET", "/health", None) {
            return Ok((proc, addr));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!(
        "llama-server did not become healthy; see {}",
        proc.log.display()
    )
}

/// One HTTP/1.1 request with `Connection: close`: the status and the body,
/// de-chunked.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(addr)?;
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("malformed HTTP response")?;
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let mut payload = raw[end + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .context("no HTTP status")?
        .parse()?;
    if head.contains("transfer-encoding: chunked") {
        payload = dechunk(&payload)?;
    }
    Ok((status, payload))
}

fn dechunk(mut b: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("bad chunk")?;
        let size_field = std::str::from_utf8(&b[..eol])?;
        let size = usize::from_str_radix(size_field.split(';').next().unwrap_or("").trim(), 16)?;
        if size == 0 {
            return Ok(out);
        }
        let data = b.get(eol + 2..eol + 2 + size).context("short chunk")?;
        out.extend_from_slice(data);
        b = b.get(eol + 4 + size..).unwrap_or_default();
    }
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

/// The model's tokens of `text`, by the server's tokenizer.
fn tokenize(addr: SocketAddr, text: &str, add_special: bool) -> anyhow::Result<Vec<Value>> {
    let body = json!({"content": text, "add_special": add_special});
    let (status, v) = http(addr, "POST", "/tokenize", Some(&body))?;
    ensure!(status == 200, "llama-server /tokenize: {status}");
    Ok(json_of(&v)["tokens"]
        .as_array()
        .context("no tokens")?
        .clone())
}

fn server_sampling(seed: u32) -> Value {
    json!({
        "temperature": TEMPERATURE, "top_k": TOP_K, "top_p": TOP_P, "min_p": 0.0,
        "repeat_penalty": REPEAT_PENALTY, "repeat_last_n": 64,
        "samplers": ["penalties", "top_k", "top_p", "temperature"],
        "seed": seed, "cache_prompt": false,
    })
}

/// A `/completion` streamed like the node streams (one event per token),
/// with the timings of its last event.
fn completion(
    addr: SocketAddr,
    prompt: &[Value],
    n_predict: u32,
    seed: u32,
) -> anyhow::Result<Value> {
    let mut body = server_sampling(seed);
    body["prompt"] = Value::Array(prompt.to_vec());
    body["n_predict"] = n_predict.into();
    body["ignore_eos"] = true.into();
    body["stream"] = true.into();
    let (status, v) = http(addr, "POST", "/completion", Some(&body))?;
    ensure!(
        status == 200,
        "llama-server /completion: {status} {}",
        String::from_utf8_lossy(&v)
    );
    String::from_utf8_lossy(&v)
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or(Value::Null))
        .rfind(|e| e.get("timings").is_some())
        .context("no timings in the stream")
}

fn timing(v: &Value, key: &str) -> f64 {
    v["timings"][key].as_f64().unwrap_or(f64::NAN)
}

fn node_request(segment: &str, max_tokens: u32, seed: u32) -> v1::GenerateRequest {
    v1::GenerateRequest {
        segment: segment.into(),
        max_tokens: Some(max_tokens),
        ignore_eos: true,
        sampling: Some(v1::SamplingParams {
            seed: Some(seed),
            temperature: Some(TEMPERATURE),
            top_k: Some(TOP_K),
            top_p: Some(TOP_P),
            repeat_penalty: Some(REPEAT_PENALTY),
        }),
        ..Default::default()
    }
}

async fn node_generate(
    mut client: EdgeNodeClient<tonic::transport::Channel>,
    req: v1::GenerateRequest,
) -> anyhow::Result<v1::GenerateFinal> {
    let mut s = client.generate(req).await?.into_inner();
    while let Some(ev) = s.next().await {
        if let Some(Event::Final(f)) = ev?.event {
            return Ok(f);
        }
    }
    bail!("stream ended without a final message")
}

struct Node {
    client: EdgeNodeClient<tonic::transport::Channel>,
    rt: tokio::runtime::Runtime,
}

impl Node {
    fn round(&self, long: &str, tokens: u32, seed: u32) -> anyhow::Result<Round> {
        self.rt.block_on(async {
            let p = node_generate(self.client.clone(), node_request(long, 1, seed)).await?;
            let g = node_generate(self.client.clone(), node_request(SHORT, tokens, seed)).await?;
            ensure!(
                g.generated_tokens == tokens,
                "node generated {}",
                g.generated_tokens
            );
            let start = Instant::now();
            let all = futures::future::try_join_all((0..STREAMS as u32).map(|i| {
                node_generate(
                    self.client.clone(),
                    node_request(SHORT, tokens, seed + 1 + i),
                )
            }))
            .await?;
            let wall = start.elapsed().as_secs_f64();
            let total: u32 = all.iter().map(|f| f.generated_tokens).sum();
            Ok(Round {
                prompt_tokens: p.prompt_tokens,
                short_prompt_tokens: g.prompt_tokens,
                prompt_tps: f64::from(p.prompt_tokens) / p.prompt_eval_seconds,
                gen_tps: f64::from(g.generated_tokens - 1) / g.generation_seconds,
                streams_tps: f64::from(total) / wall,
            })
        })
    }
}

fn server_round(
    addr: SocketAddr,
    long: &[Value],
    short: &[Value],
    tokens: u32,
    seed: u32,
) -> anyhow::Result<Round> {
    let p = completion(addr, long, 1, seed)?;
    let g = completion(addr, short, tokens, seed)?;
    ensure!(
        g["timings"]["predicted_n"].as_u64() == Some(u64::from(tokens)),
        "llama-server generated {}",
        g["timings"]["predicted_n"]
    );
    let start = Instant::now();
    let handles: Vec<_> = (0..STREAMS as u32)
        .map(|i| {
            let short = short.to_vec();
            std::thread::spawn(move || completion(addr, &short, tokens, seed + 1 + i))
        })
        .collect();
    let mut total = 0;
    for h in handles {
        let v = h.join().expect("request thread")?;
        total += v["timings"]["predicted_n"].as_u64().unwrap_or(0);
    }
    let wall = start.elapsed().as_secs_f64();
    Ok(Round {
        prompt_tokens: p["timings"]["prompt_n"].as_u64().unwrap_or(0) as u32,
        short_prompt_tokens: g["timings"]["prompt_n"].as_u64().unwrap_or(0) as u32,
        prompt_tps: timing(&p, "prompt_per_second"),
        gen_tps: timing(&g, "predicted_per_second"),
        streams_tps: total as f64 / wall,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn bench_model(spec: &str, rounds: usize, tokens: u32, server_bin: &Path) -> anyhow::Result<()> {
    let dir = netmoe_common::fetch::cache_dir();
    let model = netmoe_common::fetch::resolve_model(spec, &dir, &Default::default())?;
    // Kept after the run: the servers' logs.
    let logs = std::env::temp_dir().join(format!("netmoe-vs-llama-server-{}", std::process::id()));
    std::fs::create_dir_all(&logs)?;
    let (node_proc, node_addr) = start_node(&model, &logs)?;
    let (server_proc, server_addr) = start_llama_server(server_bin, &model, &logs)?;
    let rt = tokio::runtime::Runtime::new()?;
    let client = rt.block_on(EdgeNodeClient::connect(format!("http://{node_addr}")))?;
    let node = Node { client, rt };

    // The node lays the segment out in its prompt template: find the prefix
    // of the story that makes its prompt about PROMPT_TOKENS long. The
    // server gets as many tokens of the story as the node's prompts have,
    // as token ids, for the long prompt and for the short ones.
    let overhead = (node.round(LONG, 2, 1)?.prompt_tokens as usize)
        .saturating_sub(tokenize(server_addr, LONG, false)?.len());
    let words: Vec<&str> = LONG.split_whitespace().collect();
    let mut n = words.len();
    while n > 1
        && overhead + tokenize(server_addr, &words[..n].join(" "), false)?.len() > PROMPT_TOKENS
    {
        n -= 1;
    }
    let segment = words[..n].join(" ");
    let probe = node.round(&segment, 2, 1)?;
    let (want, short_want) = (
        probe.prompt_tokens as usize,
        probe.short_prompt_tokens as usize,
    );
    let ids = tokenize(server_addr, &format!("{LONG} {LONG}"), true)?;
    let (server_long, server_short) = (&ids[..want], &ids[..short_want]);
    server_round(server_addr, server_long, server_short, 2, 1)?;

    println!(
        "\n{} ({}), {THREADS} threads, {SLOTS} slots x {CTX_PER_SLOT} context, prompts of {want} tokens (pp) and {short_want} (tg, 4x), {tokens} generated, {rounds} alternating rounds",
        spec,
        model.display()
    );
    println!(
        "{:>5} | {:>9} {:>9} | {:>9} {:>9} | {:>9} {:>9}",
        "round", "node pp", "server pp", "node tg", "server tg", "node 4x", "server 4x"
    );
    let (mut n_all, mut s_all) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let seed = 100 + 10 * r as u32;
        // Alternate which goes first, so drift favours neither.
        let (n, s) = if r % 2 == 0 {
            let n = node.round(&segment, tokens, seed)?;
            (
                n,
                server_round(server_addr, server_long, server_short, tokens, seed)?,
            )
        } else {
            let s = server_round(server_addr, server_long, server_short, tokens, seed)?;
            (node.round(&segment, tokens, seed)?, s)
        };
        println!(
            "{r:>5} | {:>9.1} {:>9.1} | {:>9.2} {:>9.2} | {:>9.2} {:>9.2}",
            n.prompt_tps, s.prompt_tps, n.gen_tps, s.gen_tps, n.streams_tps, s.streams_tps
        );
        n_all.push(n);
        s_all.push(s);
    }
    let col = |v: &[Round], f: Metric| median(v.iter().map(f).collect());
    let rows: [(&str, Metric); 3] = [
        ("prompt processing, tok/s", |r| r.prompt_tps),
        ("generation, 1 stream, tok/s", |r| r.gen_tps),
        ("generation, 4 streams, tok/s", |r| r.streams_tps),
    ];
    println!(
        "{:<30} | {:>10} | {:>12} | {:>10}",
        "median", "edge-node", "llama-server", "node/server"
    );
    for (name, f) in rows {
        let (n, s) = (col(&n_all, f), col(&s_all, f));
        println!("{name:<30} | {n:>10.2} | {s:>12.2} | {:>9.3}x", n / s);
    }
    let (nm, sm) = (node_proc.peak_rss_mb(), server_proc.peak_rss_mb());
    if let (Some(nm), Some(sm)) = (nm, sm) {
        println!(
            "{:<30} | {nm:>10.0} | {sm:>12.0} | {:>9.3}x",
            "peak RSS, MB",
            nm / sm
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let rounds: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(5);
    let tokens: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(128);
    let models: Vec<String> = args
        .get(2)
        .map(|a| a.split(',').map(str::to_owned).collect())
        .unwrap_or_else(|| vec!["default".into(), "smollm2-135m-instruct".into()]);
    let server = llama_server_bin();
    if !server.is_file() {
        eprintln!(
            "\n*** llama-server is not built: {} does not exist.\n*** Build it with ./deploy/bench/llama-server.sh (about 10 min), or set NETMOE_LLAMA_SERVER.\n",
            server.display()
        );
        return ExitCode::FAILURE;
    }
    println!(
        "edge-node {} vs llama-server {}",
        node_bin().display(),
        server.display()
    );
    for m in &models {
        if let Err(e) = bench_model(m, rounds, tokens.max(2), &server) {
            eprintln!("{m}: {e:#}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
