//! `edge-node`: serve a local LLM expert, or fetch the default model.

use std::io::Write;

use anyhow::Context;
use clap::{Parser, Subcommand};
use netmoe_common::fetch::{FetchOptions, cache_dir, resolve_model};
use netmoe_edge_node::{ServeArgs, node, server};
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
        let shutdown = CancellationToken::new();
        tokio::spawn(signal(shutdown.clone()));
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

/// Cancels `token` on the first SIGINT or SIGTERM.
async fn signal(token: CancellationToken) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutdown signal; draining");
    token.cancel();
}
