//! `coordinator`: serve a mixture of edge experts, ask it, list its nodes,
//! measure judges, or run the whole local cluster as a demo.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use netmoe_common::cli::{Exit, Out, fail};
use netmoe_common::fetch::{FetchOptions, cache_dir, resolve_model};
use netmoe_coordinator::client::ClientArgs;
use netmoe_coordinator::cluster::{Cluster, ClusterSpec, demo_nodes};
use netmoe_coordinator::config::{JudgeChoice, ServeArgs};
use netmoe_coordinator::{app, report, server};
use netmoe_proto::v1;
use tokio_util::sync::CancellationToken;

/// The prompt the demo answers when given none.
const DEMO_PROMPT: &str = "Write a story in which a young knight rides out to face a dragon, a robot scientist repairs a starship far from Earth, and a family of otters survives the first winter storm.";

/// NetMoE coordinator: gate, routing, dispatch, fusion, judging and cost
/// accounting over a cluster of edge experts.
#[derive(Parser)]
#[command(version, about, after_help = netmoe_common::cli::exit_codes_help())]
struct Cli {
    /// Print the result as one JSON document on stdout (progress and notes
    /// stay on stderr).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

/// Options of a request.
#[derive(clap::Args, Clone)]
struct AskArgs {
    /// Routing policy: random, local, relevance, snr, cost, sac (with a
    /// policy file), each also gated as NAME+gate [default: the coordinator's].
    #[arg(long)]
    policy: Option<String>,
    /// Segments to split the prompt into at most (1-8).
    #[arg(short = 'k', long)]
    max_segments: Option<u32>,
    /// Tokens each expert writes at most.
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Seed for sampling and the random policy.
    #[arg(long)]
    seed: Option<u64>,
    /// Data plane to the nodes: grpc or quic [default: the coordinator's].
    #[arg(long)]
    transport: Option<String>,
    /// Pin every segment to this expert (its profile name).
    #[arg(long)]
    expert: Option<String>,
    /// Sampling temperature of every expert, (0, 5].
    #[arg(long)]
    temperature: Option<f32>,
}

impl AskArgs {
    fn request(&self, prompt: String) -> v1::AskRequest {
        v1::AskRequest {
            prompt,
            max_segments: self.max_segments,
            policy: self.policy.clone().unwrap_or_default(),
            max_tokens: self.max_tokens,
            segment_deadline_ms: None,
            seed: self.seed,
            transport: self.transport.clone().unwrap_or_default(),
            expert: self.expert.clone().unwrap_or_default(),
            temperature: self.temperature,
            history: Vec::new(),
        }
    }

    fn print(r: &v1::AskResponse, out: Out) -> anyhow::Result<()> {
        out.emit(&report::json(r), || report::table(r))
    }
}

#[derive(Subcommand)]
enum Command {
    /// Serve the coordinator. Prints `NETMOE_READY <addr>` once it accepts
    /// requests.
    Serve(Box<ServeArgs>),
    /// Ask a running coordinator to answer PROMPT.
    Run {
        /// The prompt.
        prompt: String,
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        ask: AskArgs,
    },
    /// List the nodes a running coordinator knows.
    Nodes {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Exit 0 when the coordinator at ENDPOINT answers `grpc.health.v1`
    /// SERVING (the container health check); with its state directory it
    /// connects over mTLS as itself.
    Health {
        /// The coordinator's gRPC endpoint.
        #[arg(
            long,
            env = "NETMOE_HEALTH_ENDPOINT",
            default_value = "127.0.0.1:50050"
        )]
        endpoint: String,
        /// The coordinator's state directory.
        #[arg(long, env = "NETMOE_TLS_DIR")]
        tls_dir: Option<PathBuf>,
    },
    /// The cluster CA: init, issue, list, revoke.
    #[command(subcommand)]
    Ca(netmoe_coordinator::admin::CaCommand),
    /// One-time join tokens for new nodes: create, list, revoke.
    #[command(subcommand)]
    Token(netmoe_coordinator::admin::TokenCommand),
    /// API keys of the client API: create, list, revoke.
    #[command(subcommand)]
    Key(netmoe_coordinator::admin::KeyCommand),
    /// Probe the QUIC link to NODE (or to every live node): RTT, goodput
    /// both ways, loss, congestion window, bytes on the wire.
    Probe {
        /// Node id [default: every live node].
        node: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
        /// Payload bytes each way [default: the coordinator's --probe-bytes].
        #[arg(long)]
        bytes: Option<u64>,
    },
    /// Start a local cluster (a coordinator and three edge experts as
    /// separate processes), answer PROMPT, print the result, shut down.
    Demo {
        /// The prompt [default: a three-part story].
        prompt: Option<String>,
        /// The GGUF all processes load: a path, URL or "default".
        #[arg(long, default_value = "default")]
        model: String,
        /// Show the processes' logs (RUST_LOG syntax).
        #[arg(
            long,
            default_value = "warn,llama-cpp-2=error,netmoe_edge_node::node=error"
        )]
        log: String,
        /// Trained SAC policy for the coordinator to route with (policy `sac`).
        #[arg(long)]
        policy_file: Option<PathBuf>,
        /// Channel emulation on the nodes: their outgoing bytes are paced to
        /// B·log2(1+SNR) with this B, Hz, which is also the coordinator's
        /// cost-model bandwidth; 0 turns emulation off.
        #[arg(long, default_value_t = 10_000.0)]
        emulate_bandwidth_hz: f64,
        #[command(flatten)]
        ask: AskArgs,
    },
    /// Collect the routing dataset: every segment of every prompt on every
    /// expert, judged (resumable; appends to --out).
    Collect(netmoe_coordinator::collect::CollectArgs),
    /// Recompute the gate's relevance and weights of a routing dataset with
    /// the gate the coordinator serves with now (after a gate change), so
    /// training sees the features a live request gets; with --scores, also
    /// re-judge every passage with the serving judge (after a judge
    /// change). Texts and costs are kept.
    Regate {
        /// The dataset (JSONL rows of `collect`).
        dataset: PathBuf,
        /// Where to write it [default: in place].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Re-judge every passage with the serving judge (`quality`).
        #[arg(long)]
        scores: bool,
        /// The judge's GGUF for --scores: a path, URL or catalog name.
        #[arg(long, default_value = netmoe_coordinator::config::DEFAULT_COORDINATOR_MODEL)]
        judge_model: String,
        /// Judges side by side for --scores (one analyzer thread each).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
        jobs: u32,
        /// llama.cpp threads per judge for --scores.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
        threads: u32,
        /// The --max-tokens the dataset was collected with: passages that
        /// used all of them are judged on their complete sentences.
        #[arg(long, default_value_t = netmoe_coordinator::collect::DEFAULT_COLLECT_TOKENS)]
        max_tokens: u32,
    },
    /// Train the discrete SAC routing policy on a collected dataset.
    Train(netmoe_coordinator::rl::TrainArgs),
    /// Evaluate a trained policy against every baseline and the upper bound
    /// on held-out prompts and fresh SNR draws.
    Eval(netmoe_coordinator::rl::EvalArgs),
    /// Test-retest reliability of collected datasets: do the judged scores
    /// of two generations of the same (segment, expert) agree?
    Retest(netmoe_coordinator::rl::retest::RetestArgs),
    /// Run a policy over N simulated nodes: decision cost as N grows.
    Simulate(netmoe_coordinator::rl::SimulateArgs),
    /// Fit the quality judge's weights on signals dumped by
    /// `judge-eval --judges quality --split tune --dump FILE`; prints the
    /// constant for `judge/quality.rs`.
    JudgeFit {
        /// The dump.
        dump: PathBuf,
        /// L2 penalty.
        #[arg(long, default_value_t = netmoe_coordinator::judge::fit::DEFAULT_L2)]
        l2: f64,
    },
    /// Print `serve`'s settings as a TOML settings file: with
    /// --print-default each key with its doc, flag, environment variable
    /// and default; else the settings `serve` would run with, resolved from
    /// the same flags, `NETMOE_*` variables and --config file (the judge's
    /// key is never printed).
    Config {
        /// Print the documented defaults instead of the resolved settings.
        #[arg(long)]
        print_default: bool,
        /// The settings to resolve, as `serve` takes them.
        #[command(flatten)]
        serve: Box<ServeArgs>,
    },
    /// Print a shell completion script, e.g.
    /// `coordinator completions bash > /etc/bash_completion.d/coordinator`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Judge your own texts: reads JSON lines `{"task": ..., "text": ...}` on
    /// stdin (`"budget_cut": true` judges only the complete sentences, as a
    /// request does when `max_tokens` cut a passage) and prints one JSON
    /// line per input with the score and its parts (or an `error` for a bad
    /// line; the exit code is then 1).
    Score {
        /// Judge: quality, heuristic, local or openai.
        #[arg(long, default_value = "quality")]
        judge: String,
        /// The GGUF to judge with: a path, URL or catalog name (the default is
        /// the serving judge's).
        #[arg(long, default_value = netmoe_coordinator::config::DEFAULT_COORDINATOR_MODEL)]
        model: String,
        /// Base URL for the openai judge.
        #[arg(long, env = "NETMOE_JUDGE_URL")]
        judge_url: Option<String>,
    },
    /// Measure the gate: how often each segment's top expert is its
    /// labelled domain, on the shipped labelled prompts with six experts
    /// (three shipped, three user-written profiles), per split.
    GateEval {
        /// Embedders to compare: minilm, model (comma-separated).
        #[arg(long, default_value = "minilm,model", value_delimiter = ',')]
        embedders: Vec<String>,
        /// The GGUF for the `model` embedder: a path, URL or catalog name.
        #[arg(long, default_value = "default")]
        model: String,
    },
    /// Measure how well judges rank better texts above worse ones: good
    /// against mediocre and corrupted passages and graded expert passages
    /// (the graded set), per kind, with mean scores and the injection shift.
    JudgeEval {
        /// Judges to measure: quality, heuristic, local, openai (comma-separated).
        #[arg(long, default_value = "quality,heuristic,local", value_delimiter = ',')]
        judges: Vec<String>,
        /// A file of good passages in the earlier format (id, task, text,
        /// topic), paired with their corruptions [default: the graded set].
        #[arg(long)]
        set: Option<PathBuf>,
        /// Half of the graded set: heldout (reported), tune (the weights were
        /// fitted on it) or all.
        #[arg(long, default_value = "heldout")]
        split: String,
        /// Write every scored text's signals as JSON lines here (for fitting
        /// on the tuning half).
        #[arg(long)]
        dump: Option<PathBuf>,
        /// The GGUF to judge with: a path, URL or catalog name (the default is
        /// the serving judge's).
        #[arg(long, default_value = netmoe_coordinator::config::DEFAULT_COORDINATOR_MODEL)]
        model: String,
        /// Base URL for the openai judge.
        #[arg(long, env = "NETMOE_JUDGE_URL")]
        judge_url: Option<String>,
        /// API key for the openai judge.
        #[arg(long, env = "NETMOE_JUDGE_KEY", hide_env_values = true)]
        judge_key: Option<String>,
        /// Model name for the openai judge.
        #[arg(long, default_value = "gpt-4o-mini")]
        judge_model: String,
    },
}

async fn score_stdin(
    judge: String,
    model: String,
    judge_url: Option<String>,
) -> anyhow::Result<()> {
    use std::io::BufRead as _;
    let config = ServeArgs {
        model: Some(model),
        judge: Some(judge),
        judge_url,
        ..Default::default()
    }
    .resolve()?;
    let choice = config.judge.clone();
    let (_model, analyzer) =
        tokio::task::spawn_blocking(move || app::load_analyzer(&config, false)).await??;
    let judge = app::judge(&choice, &analyzer);
    let stdin = std::io::stdin();
    let mut failed = 0usize;
    for (i, line) in stdin.lock().lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let out = match netmoe_coordinator::judge::ScoreRequest::parse(&line) {
            Ok(req) => match judge
                .score(netmoe_coordinator::judge::JudgeInput {
                    task: &req.task,
                    text: req.judged_text(),
                })
                .await
            {
                Ok(v) => netmoe_coordinator::judge::verdict_json(judge.name(), &v),
                Err(e) => serde_json::json!({"line": i + 1, "error": e.to_string()}),
            },
            Err(e) => serde_json::json!({"line": i + 1, "error": e}),
        };
        if out.get("error").is_some() {
            failed += 1;
        }
        println!("{out}");
    }
    if failed > 0 {
        eprintln!("{failed} line(s) could not be scored");
        std::process::exit(1);
    }
    Ok(())
}

async fn gate_eval(embedders: Vec<String>, model: String, out: Out) -> anyhow::Result<()> {
    use netmoe_coordinator::gate::{self, eval};
    let set = eval::parse_set(eval::SHIPPED_GATE_SET)?;
    let experts = eval::experts();
    let mut reports = Vec::new();
    for name in &embedders {
        let config = ServeArgs {
            model: Some(model.clone()),
            gate_embedder: Some(name.clone()),
            ..Default::default()
        }
        .resolve()?;
        let base = tokio::task::spawn_blocking(move || -> anyhow::Result<gate::Gate> {
            let (_model, analyzer) = app::load_analyzer(&config, true)?;
            Ok(app::gate(&config, &analyzer, true)?)
        })
        .await??;
        for scoring in gate::Scoring::ALL {
            let g = base.rescored(scoring);
            let started = std::time::Instant::now();
            reports.push(eval::evaluate(&g, &set, &experts).await?);
            eprintln!(
                "{name} {scoring:?}: {} segments in {:.1} s",
                set.iter().map(|p| p.segments.len()).sum::<usize>(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    let names: Vec<&str> = experts.iter().map(|(n, _)| n.as_str()).collect();
    out.emit(
        &serde_json::json!({"experts": names, "reports": reports}),
        || {
            format!(
                "gate accuracy, top expert = labelled domain, {} experts: {}\n{}",
                names.len(),
                names.join(", "),
                eval::render(&reports)
            )
        },
    )
}

fn main() -> std::process::ExitCode {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // candle re-reads the CPU count on every matmul unless this is set
        // (measured 4x slower training and 10x slower decisions).
        // SAFETY: first statement of main, before any thread exists.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,llama-cpp-2=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    netmoe_common::cli::finish(run(cli.command, Out { json: cli.json }))
}

fn run(command: Command, out: Out) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    match command {
        Command::Serve(args) => rt.block_on(serve(*args)),
        Command::Health { endpoint, tls_dir } => {
            use netmoe_common::pki::{COORDINATOR_SERVER_NAME, Role, TlsDir};
            let tls = tls_dir
                .as_deref()
                .map(|d| TlsDir::load(d, Role::Coordinator))
                .transpose()?;
            let uri = if endpoint.contains("://") {
                endpoint
            } else {
                format!("http://{endpoint}")
            };
            let ok = rt.block_on(netmoe_edge_node::client::health(
                &uri,
                tls.as_ref(),
                COORDINATOR_SERVER_NAME,
            ))?;
            if !ok {
                return Err(fail(Exit::Unavailable, format!("{uri} is not serving")));
            }
            out.emit(
                &serde_json::json!({"serving": true, "endpoint": uri}),
                || "serving\n".into(),
            )
        }
        Command::Ca(cmd) => netmoe_coordinator::admin::ca(cmd, out),
        Command::Token(cmd) => netmoe_coordinator::admin::token(cmd, out),
        Command::Key(cmd) => netmoe_coordinator::admin::key(cmd, out),
        Command::Config {
            print_default: true,
            ..
        } => {
            let settings = netmoe_coordinator::config::settings();
            out.emit(&settings, || netmoe_common::cli::render_defaults(&settings))
        }
        Command::Config { serve, .. } => {
            let settings = serve.resolve()?.to_settings();
            out.emit(&settings, || {
                format!(
                    "# coordinator settings as serve resolves them (flags > NETMOE_* variables > --config file > defaults)\n{}",
                    toml::to_string(&settings).unwrap_or_default()
                )
            })
        }
        Command::Completions { shell } => {
            netmoe_common::cli::completions::<Cli>(shell, "coordinator");
            Ok(())
        }
        Command::Run {
            prompt,
            client,
            ask,
        } => rt.block_on(async {
            let mut c = client.connect().await?;
            let r = c.ask(ask.request(prompt)).await?.into_inner();
            AskArgs::print(&r, out)
        }),
        Command::JudgeFit { dump, l2 } => {
            use netmoe_coordinator::judge::fit;
            let text = std::fs::read_to_string(&dump)
                .with_context(|| format!("cannot read {}", dump.display()))?;
            let rows = fit::rows_from_dump(&text).map_err(anyhow::Error::msg)?;
            anyhow::ensure!(
                !rows.is_empty(),
                "no quality-judge rows in {}",
                dump.display()
            );
            let model = fit::fit(&rows, l2, fit::DEFAULT_STEPS);
            eprintln!("fitted on {} pairs", rows.len());
            let signals: Vec<_> = netmoe_coordinator::judge::quality::FEATURES
                .iter()
                .zip(model.0.iter())
                .map(|(name, (mean, sd, weight))| {
                    serde_json::json!({"signal": name, "mean": mean, "sd": sd, "weight": weight})
                })
                .collect();
            out.emit(
                &serde_json::json!({"pairs": rows.len(), "signals": signals, "intercept": model.1}),
                || fit::render(&model),
            )
        }
        Command::Score {
            judge,
            model,
            judge_url,
        } => rt.block_on(score_stdin(judge, model, judge_url)),
        Command::GateEval { embedders, model } => rt.block_on(gate_eval(embedders, model, out)),
        Command::Nodes { client } => rt.block_on(async {
            let mut c = client.connect().await?;
            let nodes = c
                .list_nodes(v1::ListNodesRequest {})
                .await?
                .into_inner()
                .nodes;
            let v: Vec<_> = nodes.iter().map(report::node_json).collect();
            out.emit(&v, || report::nodes_table(&nodes))
        }),
        Command::Probe {
            node,
            client,
            bytes,
        } => rt.block_on(async {
            let mut c = client.connect().await?;
            let probes = c
                .probe(v1::ProbeRequest {
                    node_id: node.unwrap_or_default(),
                    bytes: bytes.unwrap_or(0),
                })
                .await?
                .into_inner()
                .probes;
            let v: Vec<_> = probes.iter().map(report::probe_json).collect();
            out.emit(&v, || report::probe_table(&probes))
        }),
        Command::Demo {
            prompt,
            model,
            log,
            policy_file,
            emulate_bandwidth_hz,
            ask,
        } => rt.block_on(demo(
            prompt,
            model,
            log,
            policy_file,
            emulate_bandwidth_hz,
            ask,
            out,
        )),
        Command::Train(mut args) => {
            args.print_summary = !out.json;
            let report = netmoe_coordinator::rl::run_train(args)?;
            out.emit(&report, String::new)
        }
        Command::Eval(mut args) => {
            args.print_summary = !out.json;
            let report = netmoe_coordinator::rl::run_eval(args)?;
            out.emit(&report, String::new)
        }
        Command::Retest(args) => {
            let rows = netmoe_coordinator::rl::retest::run_retest(&args)?;
            out.emit(&rows, || {
                rows.iter()
                    .map(|r| format!("{}: {}\n", r.dataset, r.reliability.render()))
                    .collect()
            })
        }
        Command::Simulate(mut args) => {
            args.print_summary = !out.json;
            let report = netmoe_coordinator::rl::run_simulate(args)?;
            out.emit(&report, String::new)
        }
        Command::Collect(args) => rt.block_on(async {
            let file = args.out.clone();
            let n = netmoe_coordinator::collect::run_collect(args).await?;
            eprintln!("collected {n} new prompts");
            out.emit(
                &serde_json::json!({"collected_prompts": n, "out": file}),
                String::new,
            )
        }),
        Command::Regate {
            dataset,
            out: to,
            scores,
            judge_model,
            jobs,
            threads,
            max_tokens,
        } => rt.block_on(async {
            let to = to.unwrap_or_else(|| dataset.clone());
            let rescore = scores.then_some(netmoe_coordinator::regate::RescoreOptions {
                model: judge_model,
                jobs: jobs as usize,
                threads,
                max_tokens,
            });
            let n = netmoe_coordinator::regate::run_regate(
                &dataset,
                &to,
                &cache_dir(),
                rescore.as_ref(),
            )
            .await?;
            eprintln!("regated {n} segments into {}", to.display());
            out.emit(&serde_json::json!({"segments": n, "out": to}), String::new)
        }),
        Command::JudgeEval {
            judges,
            set,
            split,
            dump,
            model,
            judge_url,
            judge_key,
            judge_model,
        } => rt.block_on(judge_eval(
            judges,
            set,
            split,
            dump,
            model,
            judge_url,
            judge_key,
            judge_model,
            out,
        )),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.resolve()?;
    config.security()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let cfg = config.clone();
    let pipeline = tokio::task::spawn_blocking(move || app::build(&cfg, true)).await??;
    let shutdown = CancellationToken::new();
    tokio::spawn(netmoe_edge_node::server::cancel_on_signal(shutdown.clone()));
    if let Some(m) = config.metrics_listen {
        let metrics_listener = tokio::net::TcpListener::bind(m)
            .await
            .with_context(|| format!("cannot serve metrics on {m}"))?;
        tracing::info!(addr = %metrics_listener.local_addr()?, "metrics at /metrics");
        tokio::spawn(netmoe_coordinator::metrics::serve(
            metrics_listener,
            pipeline.metrics.clone(),
            pipeline.registry.clone(),
            shutdown.clone(),
        ));
    }
    if let Some(h) = config.http_listen {
        let http_listener = tokio::net::TcpListener::bind(h)
            .await
            .with_context(|| format!("cannot serve HTTP on {h}"))?;
        let http_addr = http_listener.local_addr()?;
        let tls = if config.http_tls {
            use netmoe_common::pki::{Role, TlsDir};
            let dir = config
                .tls_dir
                .as_deref()
                .context("--http-tls serves the coordinator's certificate: give --tls-dir")?;
            Some(netmoe_coordinator::http::tls::server_config(
                &TlsDir::load(dir, Role::Coordinator)?,
            )?)
        } else {
            None
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(addr = %http_addr, scheme, "HTTP API at /v1, dashboard at /, metrics at /metrics");
        println!("NETMOE_HTTP {http_addr}");
        tokio::spawn(netmoe_coordinator::http::serve(
            http_listener,
            tls,
            pipeline.clone(),
            shutdown.clone(),
        ));
    }
    tracing::info!(%addr, policy = %config.policy, judge = ?config.judge, "coordinator serving");
    println!("NETMOE_READY {addr}");
    std::io::stdout().flush()?;
    server::run(
        listener,
        pipeline.clone(),
        config.grace,
        config.probe_interval,
        shutdown,
    )
    .await?;
    if let Some(local) = &pipeline.local {
        local.engine.stop();
    }
    tracing::info!("stopped");
    Ok(())
}

async fn demo(
    prompt: Option<String>,
    model: String,
    log: String,
    policy_file: Option<PathBuf>,
    emulate_bandwidth_hz: f64,
    ask: AskArgs,
    out: Out,
) -> anyhow::Result<()> {
    let prompt = prompt.unwrap_or_else(|| DEMO_PROMPT.to_owned());
    let cache = cache_dir();
    let model = tokio::task::spawn_blocking(move || {
        resolve_model(
            &model,
            &cache,
            &FetchOptions {
                progress: true,
                ..FetchOptions::default()
            },
        )
    })
    .await??;
    eprintln!(
        "starting a coordinator and three edge experts on loopback: fantasy on {} (a Jetson-class node), scifi and nature on {} (Raspberry Pi-class nodes)...",
        model
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        netmoe_coordinator::cluster::SMALL_BOARD_MODEL
    );
    // With a trained policy the demo routes with it behind the gate's top
    // expert (`sac+gate`): each segment on an expert of its domain whenever
    // the channel allows it; `--policy sac` asks the policy alone.
    let mut coordinator_args = policy_file
        .map(|p| {
            vec![
                "--policy-file".to_owned(),
                p.display().to_string(),
                "--policy".to_owned(),
                format!("sac{}", netmoe_coordinator::policy::GATED_SUFFIX),
            ]
        })
        .unwrap_or_default();
    // The demo shows the QUIC data plane and a small link probe per node.
    coordinator_args.extend(["--transport".into(), "quic".into()]);
    coordinator_args.extend(["--probe-bytes".into(), "2048".into()]);
    let mut nodes = demo_nodes();
    if emulate_bandwidth_hz > 0.0 {
        coordinator_args.extend(["--bandwidth-hz".into(), emulate_bandwidth_hz.to_string()]);
        for n in &mut nodes {
            n.extra.extend([
                "--emulate-bandwidth-hz".into(),
                emulate_bandwidth_hz.to_string(),
            ]);
        }
    }
    let spec = ClusterSpec {
        model,
        coordinator_model: netmoe_coordinator::config::DEFAULT_COORDINATOR_MODEL.into(),
        nodes,
        node_threads: 1,
        coordinator_threads: 2,
        coordinator_args,
        log,
        secure: true,
    };
    let cluster = Cluster::start(&spec).await?;
    eprintln!(
        "cluster ready (mutual TLS on every gRPC and QUIC link: a fresh CA, each node joined with a one-time token, the client with its certificate and an API key; QUIC data plane; {}); asking: {prompt}\n",
        if emulate_bandwidth_hz > 0.0 {
            format!("nodes emulate their channel over {emulate_bandwidth_hz} Hz")
        } else {
            "no channel emulation".into()
        }
    );
    let result = async {
        let mut c = cluster.client().await?;
        let r = c.ask(ask.request(prompt)).await?.into_inner();
        AskArgs::print(&r, out)
    }
    .await;
    eprintln!("\nshutting the cluster down...");
    cluster.shutdown().await?;
    result
}

#[allow(clippy::too_many_arguments)]
async fn judge_eval(
    judges: Vec<String>,
    set: Option<PathBuf>,
    split: String,
    dump: Option<PathBuf>,
    model: String,
    judge_url: Option<String>,
    judge_key: Option<String>,
    judge_model: String,
    out: Out,
) -> anyhow::Result<()> {
    // Under --json the tables are not printed; one document comes at the end.
    let say = |text: String| {
        if !out.json {
            print!("{text}");
        }
    };
    let mut results = Vec::new();
    let (pairs, source) = match &set {
        Some(p) => (
            netmoe_coordinator::judge::load_judge_set(p)?,
            p.display().to_string(),
        ),
        None => (
            netmoe_coordinator::judge::graded::graded_pairs(&split)?,
            format!("graded, {split}"),
        ),
    };
    let mut dump = dump.map(std::fs::File::create).transpose()?;
    let config = ServeArgs {
        model: Some(model),
        ..Default::default()
    }
    .resolve()?;
    let (_model, analyzer) =
        tokio::task::spawn_blocking(move || app::load_analyzer(&config, true)).await??;
    say(format!(
        "labelled set {source}: {} (better, worse) pairs\n",
        pairs.len()
    ));
    for name in judges {
        let choice = match name.as_str() {
            "quality" => JudgeChoice::Quality,
            "heuristic" => JudgeChoice::Heuristic,
            "local" => JudgeChoice::Local,
            "openai" => JudgeChoice::OpenAi {
                url: judge_url
                    .clone()
                    .context("the openai judge needs --judge-url")?,
                key: judge_key.clone(),
                model: judge_model.clone(),
            },
            other => {
                anyhow::bail!("unknown judge {other:?}: use quality, heuristic, local or openai")
            }
        };
        let judge = app::judge(&choice, &analyzer);
        let started = std::time::Instant::now();
        let report = netmoe_coordinator::judge::pairwise_accuracy(judge.as_ref(), &pairs).await?;
        let seconds = started.elapsed().as_secs_f64();
        say(format!("\njudge {} ({seconds:.1} s)\n", judge.name()));
        say(report.table());
        say(netmoe_coordinator::judge::graded::grade_summary(&report));
        let mut shift = Vec::new();
        if set.is_none() {
            shift =
                netmoe_coordinator::judge::graded::injection_shift(judge.as_ref(), &split).await?;
            say(format!(
                "injection shift (score with an injected line - without), {} passages: mean {:+.2}, max {:+.2}\n",
                shift.len(),
                shift.iter().sum::<f64>() / shift.len().max(1) as f64,
                shift.iter().copied().fold(f64::NEG_INFINITY, f64::max)
            ));
        }
        let per_kind: Vec<_> = report
            .per_kind
            .iter()
            .map(
                |(kind, g)| serde_json::json!({"kind": kind, "accuracy": g.accuracy(), "stats": g}),
            )
            .collect();
        results.push(serde_json::json!({
            "judge": judge.name(), "seconds": seconds,
            "accuracy": report.overall.accuracy(), "overall": report.overall,
            "per_kind": per_kind, "misses": report.misses, "injection_shift": shift,
        }));
        if let Some(f) = dump.as_mut() {
            use std::io::Write as _;
            for (task, kind, better, v) in &report.verdicts {
                let parts: serde_json::Map<String, serde_json::Value> = v
                    .parts
                    .iter()
                    .map(|(k, x)| ((*k).to_owned(), (*x).into()))
                    .collect();
                writeln!(
                    f,
                    "{}",
                    serde_json::json!({"judge": judge.name(), "task": task, "kind": kind, "better": better, "score": v.score, "parts": parts})
                )?;
            }
        }
    }
    if out.json {
        out.emit(
            &serde_json::json!({"set": source, "pairs": pairs.len(), "judges": results}),
            String::new,
        )?;
    }
    Ok(())
}
