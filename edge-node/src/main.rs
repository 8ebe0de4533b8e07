//! `edge-node`: serve a local LLM expert, or fetch the default model.

use std::io::Write;

use anyhow::Context;
use clap::{Parser, Subcommand};
use netmoe_common::fetch::{FetchOptions, cache_dir, resolve_model};
use netmoe_edge_node::{ServeArgs, client, node, server};
use tokio_util::sync::CancellationToken;

/// NetMoE edge node: a quantized LLM expert served over gRPC.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
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
        /// A path, an http(s) URL, or "default".
        #[arg(default_value = "default")]
        model: String,
        /// Cache directory [default: ~/.cache/netmoe].
        #[arg(long, env = "NETMOE_CACHE_DIR")]
        cache_dir: Option<std::path::PathBuf>,
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
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,llama-cpp-2=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::FetchModel {
            model,
            cache_dir: dir,
        } => {
            let dir = dir.unwrap_or_else(cache_dir);
            let opts = FetchOptions {
                progress: true,
                ..FetchOptions::default()
            };
            let path = resolve_model(&model, &dir, &opts)?;
            println!("{}", path.display());
            Ok(())
        }
        Command::Serve(args) => serve(*args),
        Command::Ask {
            segment,
            endpoint,
            max_tokens,
            context,
        } => {
            let request = netmoe_proto::v1::GenerateRequest {
                segment,
                context,
                max_tokens,
                ..Default::default()
            };
            let rt = tokio::runtime::Runtime::new()?;
            let fin = rt.block_on(client::generate_to(
                &endpoint,
                request,
                &mut std::io::stdout(),
            ))?;
            println!();
            let snr = fin.snr.unwrap_or_default();
            eprintln!(
                "node {} | {} prompt + {} generated tokens, {} words | prompt {:.3}s, generation {:.3}s | {} bytes | SNR {:.2} dB ({})",
                fin.node_id,
                fin.prompt_tokens,
                fin.generated_tokens,
                fin.words,
                fin.prompt_eval_seconds,
                fin.generation_seconds,
                fin.bytes_sent,
                snr.snr_db,
                snr.model
            );
            Ok(())
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.resolve()?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let cfg = config.clone();
        let state = tokio::task::spawn_blocking(move || node::build(&cfg, addr, true)).await??;
        let quic = node::bind_quic(&config, addr, &state)?;
        let shutdown = CancellationToken::new();
        tokio::spawn(netmoe_edge_node::server::cancel_on_signal(shutdown.clone()));
        tracing::info!(
            node = %state.node_id,
            %addr,
            expert = %state.profile.name,
            tokens_per_second = state.engine.tokens_per_second(),
            "serving"
        );
        println!("NETMOE_READY {addr}");
        std::io::stdout().flush()?;
        let registration = node::registration(&config, addr);
        server::run(
            listener,
            quic,
            state.clone(),
            registration,
            config.grace,
            shutdown,
        )
        .await?;
        state.engine.stop();
        tracing::info!("stopped");
        Ok(())
    })
}
