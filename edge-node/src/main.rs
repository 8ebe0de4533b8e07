//! `edge-node`: serve a local LLM expert, or fetch the default model.

use std::io::Write;

use anyhow::Context;
use clap::{Parser, Subcommand};
use netmoe_common::cli::{Exit, Out, fail};
use netmoe_common::fetch::{FetchOptions, cache_dir, resolve_model};
use netmoe_edge_node::{ServeArgs, client, node, server};
use tokio_util::sync::CancellationToken;

/// NetMoE edge node: a quantized LLM expert served over gRPC.
#[derive(Parser)]
#[command(version, about, after_help = netmoe_common::cli::exit_codes_help())]
struct Cli {
    /// Print the result as one JSON document on stdout (progress, notes
    /// and, for `ask`, nothing else: the text is in the document).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve an expert. Prints `NETMOE_READY <addr>` on stdout once it
    /// accepts requests.
    Serve(Box<ServeArgs>),
    /// Fetch (or check) a model into the cache and print its path.
    FetchModel {
        /// A path, an http(s) URL, or a catalog name: "default", "smollm2-135m-instruct",
        /// or the gate's "all-minilm-l6-v2".
        #[arg(default_value = "default")]
        model: String,
        /// Cache directory [default: ~/.cache/netmoe].
        #[arg(long, env = "NETMOE_CACHE_DIR")]
        cache_dir: Option<std::path::PathBuf>,
    },
    /// Join a secured cluster: make a key, trade a one-time token and a
    /// certificate request for a node certificate, and keep them in DIR.
    Join {
        /// The coordinator, e.g. https://10.0.0.2:50050.
        #[arg(long, env = "NETMOE_COORDINATOR")]
        coordinator: String,
        /// The token `coordinator token create` printed.
        #[arg(long, env = "NETMOE_JOIN_TOKEN", hide_env_values = true)]
        token: String,
        /// The id this node will serve under (a-z, 0-9, '-').
        #[arg(long, env = "NETMOE_NODE_ID")]
        node_id: String,
        /// Where to keep node.key (0600), node.pem and ca.pem.
        #[arg(long, env = "NETMOE_TLS_DIR")]
        tls_dir: std::path::PathBuf,
    },
    /// Exit 0 when the node at ENDPOINT answers `grpc.health.v1` SERVING
    /// (the container health check). With a TLS directory (the node's own),
    /// the node is verified by the id in its certificate.
    Health {
        /// The node's gRPC endpoint.
        #[arg(
            long,
            env = "NETMOE_HEALTH_ENDPOINT",
            default_value = "127.0.0.1:50051"
        )]
        endpoint: String,
        /// The node's TLS directory.
        #[arg(long, env = "NETMOE_TLS_DIR")]
        tls_dir: Option<std::path::PathBuf>,
    },
    /// Ask a running node to write about SEGMENT; streams the text, then
    /// prints the accounting on stderr.
    Ask {
        /// What the expert should write about.
        segment: String,
        /// The node's gRPC endpoint.
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        endpoint: String,
        /// Tokens to generate at most [default: the expert's].
        #[arg(long)]
        max_tokens: Option<u32>,
        /// The whole prompt, for context.
        #[arg(long, default_value = "")]
        context: String,
        /// Seed of the sampler.
        #[arg(long)]
        seed: Option<u32>,
        /// Sampling temperature, (0, 5].
        #[arg(long)]
        temperature: Option<f32>,
    },
    /// Print every `serve` setting as a TOML settings file: each key with
    /// its doc, flag, environment variable and default.
    Config {
        /// Print the defaults (the only mode so far).
        #[arg(long, required = true)]
        print_default: bool,
    },
    /// Print a shell completion script, e.g.
    /// `edge-node completions bash > /etc/bash_completion.d/edge-node`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

fn main() -> std::process::ExitCode {
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
    match command {
        Command::Config { print_default: _ } => {
            let settings = netmoe_edge_node::config::settings();
            out.emit(&settings, || netmoe_common::cli::render_defaults(&settings))
        }
        Command::Completions { shell } => {
            netmoe_common::cli::completions::<Cli>(shell, "edge-node");
            Ok(())
        }
        Command::FetchModel {
            model,
            cache_dir: dir,
        } => {
            let dir = dir.unwrap_or_else(cache_dir);
            let opts = FetchOptions {
                progress: true,
                ..FetchOptions::default()
            };
            // The gate's embedding model is a catalog asset but no GGUF:
            // fetched the same way, so images and offline hosts can carry it.
            let path = match netmoe_common::fetch::catalog::find(&model) {
                Some(asset) if !netmoe_common::fetch::catalog::MODELS.contains(&asset) => {
                    netmoe_common::fetch::fetch_asset(asset, &dir, &opts)?
                }
                _ => resolve_model(&model, &dir, &opts)?,
            };
            out.emit(&serde_json::json!({"model": model, "path": path}), || {
                format!("{}\n", path.display())
            })
        }
        Command::Serve(args) => serve(*args),
        Command::Health { endpoint, tls_dir } => {
            use netmoe_common::pki::{Role, TlsDir, node_server_name};
            let tls = tls_dir
                .as_deref()
                .map(|d| TlsDir::load(d, Role::Node))
                .transpose()?;
            let name = tls
                .as_ref()
                .map(|t| node_server_name(&t.me.name))
                .unwrap_or_default();
            let uri = if endpoint.contains("://") {
                endpoint
            } else {
                format!("http://{endpoint}")
            };
            let rt = tokio::runtime::Runtime::new()?;
            let ok = rt.block_on(client::health(&uri, tls.as_ref(), &name))?;
            if !ok {
                return Err(fail(Exit::Unavailable, format!("{uri} is not serving")));
            }
            out.emit(
                &serde_json::json!({"serving": true, "endpoint": uri}),
                || "serving\n".into(),
            )
        }
        Command::Join {
            coordinator,
            token,
            node_id,
            tls_dir,
        } => {
            let rt = tokio::runtime::Runtime::new()?;
            let tls = rt.block_on(netmoe_edge_node::join::join(
                &coordinator,
                &token,
                &node_id,
                &tls_dir,
            ))?;
            out.emit(
                &serde_json::json!({"node_id": tls.me.name, "serial": tls.me.serial,
                    "not_after": tls.me.not_after, "tls_dir": tls_dir, "coordinator": coordinator}),
                || {
                    format!(
                        "joined as {} (certificate {}, valid until {}); serve with: edge-node serve --tls-dir {} --coordinator {coordinator}\n",
                        tls.me.name,
                        tls.me.serial,
                        tls.me.not_after,
                        tls_dir.display()
                    )
                },
            )
        }
        Command::Ask {
            segment,
            endpoint,
            max_tokens,
            context,
            seed,
            temperature,
        } => {
            let request = netmoe_proto::v1::GenerateRequest {
                segment,
                context,
                max_tokens,
                sampling: (seed.is_some() || temperature.is_some()).then(|| {
                    netmoe_proto::v1::SamplingParams {
                        seed,
                        temperature,
                        ..Default::default()
                    }
                }),
                ..Default::default()
            };
            let rt = tokio::runtime::Runtime::new()?;
            // Under --json the text goes into the document, not to stdout.
            let mut text = Vec::new();
            let g = if out.json {
                rt.block_on(client::generate_to(&endpoint, request, &mut text))?
            } else {
                let g = rt.block_on(client::generate_to(
                    &endpoint,
                    request,
                    &mut std::io::stdout(),
                ))?;
                println!();
                g
            };
            let fin = &g.fin;
            let snr = fin.snr.clone().unwrap_or_default();
            let first_text_s = g.first_text.map(|d| d.as_secs_f64());
            if out.json {
                return out.emit(
                    &serde_json::json!({
                        "node_id": fin.node_id, "text": String::from_utf8_lossy(&text),
                        "prompt_tokens": fin.prompt_tokens, "generated_tokens": fin.generated_tokens,
                        "words": fin.words, "prompt_eval_s": fin.prompt_eval_seconds,
                        "generation_s": fin.generation_seconds, "bytes_sent": fin.bytes_sent,
                        "snr_db": snr.snr_db, "snr_model": snr.model,
                        "first_text_s": first_text_s, "total_s": g.total.as_secs_f64(),
                    }),
                    String::new,
                );
            }
            eprintln!(
                "node {} | {} prompt + {} generated tokens, {} words | prompt {:.3}s, generation {:.3}s, first text {} | {} bytes | SNR {:.2} dB ({})",
                fin.node_id,
                fin.prompt_tokens,
                fin.generated_tokens,
                fin.words,
                fin.prompt_eval_seconds,
                fin.generation_seconds,
                first_text_s.map_or("-".into(), |s| format!("{s:.3}s")),
                fin.bytes_sent,
                snr.snr_db,
                snr.model
            );
            Ok(())
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = args.resolve()?;
    // A node that holds a certificate serves under the id it names.
    if let Some(dir) = &config.tls_dir {
        use netmoe_common::pki::{Role, TlsDir};
        if TlsDir::exists(dir, Role::Node) {
            let id = TlsDir::load(dir, Role::Node)?.me.name;
            if let Some(flag) = &config.node_id {
                anyhow::ensure!(
                    *flag == id,
                    "--node-id {flag:?} but the certificate in {} is for {id:?}",
                    dir.display()
                );
            }
            config.node_id = Some(id);
        }
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let cfg = config.clone();
        let state = tokio::task::spawn_blocking(move || node::build(&cfg, addr, true)).await??;
        if let Some(s) = &config.shape {
            let shaper = netmoe_edge_node::shaper::Shaper::new(
                s.interface.clone(),
                s.bandwidth_hz,
                s.delay_ms,
                s.jitter_ms,
                s.loss_percent,
            );
            let snr = state.draw_snr().snr_db;
            let rate = shaper
                .apply(snr)
                .await
                .with_context(|| format!("cannot shape {} (needs CAP_NET_ADMIN)", s.interface))?;
            tracing::info!(interface = %s.interface, snr_db = snr, rate_bps = rate, "link shaped from the simulated SNR");
            let _ = state.link.shaper.set(shaper);
        }
        let tls = node::tls_identity(&config, &state.node_id).await?;
        let quic = node::bind_quic(&config, addr, &state, tls.as_ref())?;
        let shutdown = CancellationToken::new();
        tokio::spawn(netmoe_edge_node::server::cancel_on_signal(shutdown.clone()));
        tracing::info!(
            node = %state.node_id,
            %addr,
            expert = %state.profile.name,
            tokens_per_second = state.engine.tokens_per_second(),
            "serving"
        );
        if let Some(m) = config.metrics_listen {
            let metrics_listener = tokio::net::TcpListener::bind(m)
                .await
                .with_context(|| format!("cannot serve metrics on {m}"))?;
            let metrics_addr = metrics_listener.local_addr()?;
            tracing::info!(addr = %metrics_addr, "metrics at /metrics");
            println!("NETMOE_HTTP {metrics_addr}");
            tokio::spawn(netmoe_edge_node::metrics::serve(
                metrics_listener,
                state.clone(),
                shutdown.clone(),
            ));
        }
        println!("NETMOE_READY {addr}");
        std::io::stdout().flush()?;
        let registration = node::registration(&config, addr);
        server::run(
            listener,
            quic,
            state.clone(),
            registration,
            tls,
            config.grace,
            shutdown,
        )
        .await?;
        state.engine.stop();
        tracing::info!("stopped");
        Ok(())
    })
}
