//! Helpers for NetMoE's integration tests: real `edge-node` and
//! `coordinator` processes on loopback with the real model, started through
//! the coordinator's [`cluster`](netmoe_coordinator::cluster) module.
//!
//! The binaries must be built first (`cargo build --release --bins`); the
//! README's test command does that and fetches the model into the cache
//! (`~/.cache/netmoe/models`, or `NETMOE_TEST_MODEL`).

use std::ffi::OsString;
use std::path::PathBuf;

use netmoe_coordinator::cluster::{
    Cluster, ClusterSpec, NodeSpec, ServerProcess, demo_nodes, sibling_binary,
};
use netmoe_proto::v1::edge_node_client::EdgeNodeClient;
use tonic::transport::Channel;

/// The GGUF the tests run on.
pub fn model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("NETMOE_TEST_MODEL") {
        return PathBuf::from(p);
    }
    netmoe_common::fetch::cache_dir()
        .join("models")
        .join(netmoe_common::fetch::DEFAULT_MODEL_FILE)
}

/// The instruction-tuned GGUF the tests run on (SmolLM2 135M Instruct):
/// `NETMOE_TEST_INSTRUCT_MODEL`, else the cached catalog model.
pub fn instruct_model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("NETMOE_TEST_INSTRUCT_MODEL") {
        return PathBuf::from(p);
    }
    netmoe_common::fetch::cache_dir().join("models").join(
        netmoe_common::fetch::catalog::SMOLLM2_135M_INSTRUCT
            .main_file()
            .file,
    )
}

/// `RUST_LOG` for the processes under test (`NETMOE_TEST_LOG` overrides).
pub fn child_log() -> String {
    std::env::var("NETMOE_TEST_LOG")
        .unwrap_or_else(|_| "warn,llama-cpp-2=error,netmoe_edge_node::node=error".into())
}

fn require_model() -> anyhow::Result<PathBuf> {
    let model = model_path();
    anyhow::ensure!(
        model.exists(),
        "test model {} is missing: run the README's test command, which fetches it",
        model.display()
    );
    Ok(model)
}

/// Starts `edge-node serve` on 127.0.0.1:0 with the test model, two
/// threads and the given extra flags.
pub async fn start_edge_node(extra: &[&str]) -> anyhow::Result<ServerProcess> {
    start_edge_node_on(require_model()?, extra).await
}

/// Like [`start_edge_node`], on the instruction-tuned test model.
pub async fn start_instruct_edge_node(extra: &[&str]) -> anyhow::Result<ServerProcess> {
    let model = instruct_model_path();
    anyhow::ensure!(
        model.exists(),
        "instruct test model {} is missing: run the README's test command, which fetches it",
        model.display()
    );
    start_edge_node_on(model, extra).await
}

async fn start_edge_node_on(model: PathBuf, extra: &[&str]) -> anyhow::Result<ServerProcess> {
    let mut args: Vec<OsString> = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--threads",
        "2",
        "--warmup-tokens",
        "8",
        "--insecure",
        "--model",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    args.push(model.into_os_string());
    args.extend(extra.iter().map(OsString::from));
    Ok(ServerProcess::start(
        "edge-node",
        &sibling_binary("edge-node")?,
        &args,
        &child_log(),
    )
    .await?)
}

/// A connected `EdgeNode` client.
pub async fn edge_client(node: &ServerProcess) -> anyhow::Result<EdgeNodeClient<Channel>> {
    Ok(EdgeNodeClient::connect(node.endpoint()).await?)
}

/// Starts a coordinator and the given nodes (the demo's three when `None`).
pub async fn start_cluster(
    nodes: Option<Vec<NodeSpec>>,
    coordinator_args: &[&str],
) -> anyhow::Result<Cluster> {
    let spec = ClusterSpec {
        model: require_model()?,
        coordinator_model: instruct_model_path().display().to_string(),
        nodes: nodes.unwrap_or_else(demo_nodes),
        node_threads: 1,
        coordinator_threads: 2,
        coordinator_args: coordinator_args.iter().map(|s| (*s).to_owned()).collect(),
        log: child_log(),
        secure: true,
    };
    Ok(Cluster::start(&spec).await?)
}

/// The shipped expert profiles directory.
pub fn profiles_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("edge-node")
        .join("profiles")
}

/// A QUIC link to a node, as the coordinator dials it: the node's
/// advertised port and pinned certificate fingerprint (dev mode). Returns
/// the client endpoint too (keep it alive), and the node's info.
pub async fn link_to(
    node: &ServerProcess,
) -> anyhow::Result<(
    netmoe_common::link::LinkClient,
    netmoe_common::link::LinkConnection,
    netmoe_proto::v1::NodeInfo,
)> {
    let info = edge_client(node)
        .await?
        .info(netmoe_proto::v1::InfoRequest {})
        .await?
        .into_inner();
    let link = info.link.clone().unwrap_or_default();
    anyhow::ensure!(link.quic_port != 0, "node advertises no QUIC endpoint");
    let addr = std::net::SocketAddr::new(node.addr.ip(), link.quic_port as u16);
    let client = netmoe_common::link::LinkClient::new()?;
    let conn = client
        .connect(
            addr,
            "localhost",
            &netmoe_common::link::Trust::Pinned(link.cert_sha256),
        )
        .await?;
    Ok((client, conn, info))
}
