//! Helpers for NetMoE's integration tests: start real `edge-node` (and
//! later `coordinator`) processes on loopback with the real model, wait for
//! their readiness line, and stop them with signals.
//!
//! The binaries must be built first (`cargo build --release --bins`); the
//! README's test command does that. The model comes from the cache
//! (`~/.cache/netmoe/models`, or `NETMOE_TEST_MODEL`), which the test
//! command fills.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use netmoe_proto::v1::edge_node_client::EdgeNodeClient;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::transport::Channel;

/// How long a process may take to load the model and report ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// Path of a workspace binary next to the running test executable.
pub fn bin_path(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .context("test executable has no target directory")?;
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} not found: build the binaries first (cargo build --release --bins)",
            path.display()
        );
    }
    Ok(path)
}

/// The GGUF the tests run on.
pub fn model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("NETMOE_TEST_MODEL") {
        return PathBuf::from(p);
    }
    netmoe_common::fetch::cache_dir()
        .join("models")
        .join(netmoe_common::fetch::DEFAULT_MODEL_FILE)
}

/// The shipped expert profiles directory.
pub fn profiles_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("edge-node")
        .join("profiles")
}

/// A running `edge-node serve` process, killed on drop.
pub struct EdgeNodeProcess {
    child: Child,
    /// Where it serves gRPC.
    pub addr: SocketAddr,
}

impl EdgeNodeProcess {
    /// `http://addr`, for tonic clients.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A connected `EdgeNode` client.
    pub async fn client(&self) -> anyhow::Result<EdgeNodeClient<Channel>> {
        Ok(EdgeNodeClient::connect(self.endpoint()).await?)
    }

    /// Sends SIGTERM (the graceful path).
    pub fn terminate(&self) -> anyhow::Result<()> {
        signal(&self.child, libc::SIGTERM)
    }

    /// Waits for the process to exit and returns its status.
    pub async fn wait(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        Ok(tokio::time::timeout(timeout, self.child.wait()).await??)
    }

    /// Kills the process at once (SIGKILL).
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

fn signal(child: &Child, sig: libc::c_int) -> anyhow::Result<()> {
    let pid = child.id().context("process already exited")? as libc::pid_t;
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    if unsafe { libc::kill(pid, sig) } != 0 {
        bail!(
            "kill({pid}, {sig}) failed: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Starts `edge-node serve` on 127.0.0.1:0 with the test model and the
/// given extra flags; returns once it prints its readiness line.
pub async fn start_edge_node(extra: &[&str]) -> anyhow::Result<EdgeNodeProcess> {
    let model = model_path();
    if !model.exists() {
        bail!(
            "test model {} is missing: run the README's test command, which fetches it",
            model.display()
        );
    }
    let mut cmd = Command::new(bin_path("edge-node")?);
    cmd.arg("serve")
        .args([
            "--listen",
            "127.0.0.1:0",
            "--threads",
            "2",
            "--warmup-tokens",
            "8",
        ])
        .arg("--model")
        .arg(&model)
        .args(extra)
        .env(
            "RUST_LOG",
            std::env::var("NETMOE_TEST_LOG").unwrap_or_else(|_| "warn,llama-cpp-2=error".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut child = cmd.spawn().context("spawning edge-node")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let addr = tokio::time::timeout(READY_TIMEOUT, ready_line(stdout))
        .await
        .context("edge-node did not become ready in time")??;
    Ok(EdgeNodeProcess { child, addr })
}

/// Reads stdout until `NETMOE_READY <addr>`; keeps draining it afterwards
/// so the child never blocks on a full pipe.
async fn ready_line(stdout: tokio::process::ChildStdout) -> anyhow::Result<SocketAddr> {
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines.next_line().await? {
        if let Some(addr) = line.strip_prefix("NETMOE_READY ") {
            let addr = addr.trim().parse()?;
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok(addr);
        }
    }
    bail!("process exited before it was ready")
}
