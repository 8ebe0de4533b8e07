//! A local cluster of separate processes on loopback: one coordinator and
//! N edge nodes, each started for real, awaited on its readiness line,
//! stopped with SIGTERM. The demo, the benchmarks and the integration
//! tests all start processes through this module.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use netmoe_common::pki::{Ca, Role, TlsDir};
use netmoe_proto::v1;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::auth::{keys::Keys, tokens::Tokens};
use crate::client::Client;

/// How long a process may take to load its model and report ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(300);
/// The line a server prints on stdout once it accepts requests.
pub const READY_PREFIX: &str = "NETMOE_READY ";
/// The line a process prints, before its readiness line, when it serves HTTP.
pub const HTTP_PREFIX: &str = "NETMOE_HTTP ";

/// Failures starting or stopping processes.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A binary is missing.
    #[error("{0} not found: build the binaries first (cargo build --release --bins)")]
    MissingBinary(PathBuf),
    /// The process could not start.
    #[error("cannot start {name}: {source}")]
    Spawn {
        /// Which process.
        name: String,
        /// Why.
        source: std::io::Error,
    },
    /// The process exited or stayed silent before its readiness line.
    #[error("{name} did not become ready: {reason}")]
    NotReady {
        /// Which process.
        name: String,
        /// Why.
        reason: String,
    },
    /// Waiting or signalling failed.
    #[error("{name}: {reason}")]
    Control {
        /// Which process.
        name: String,
        /// Why.
        reason: String,
    },
    /// The coordinator could not be asked.
    #[error("coordinator: {0}")]
    Rpc(#[from] tonic::Status),
    /// The coordinator could not be reached.
    #[error("coordinator connection: {0}")]
    Connect(#[from] crate::client::ClientError),
    /// The cluster's CA, tokens or keys could not be made.
    #[error("cluster credentials: {0}")]
    Pki(#[from] netmoe_common::pki::PkiError),
    /// A temporary directory could not be made.
    #[error("temporary directory: {0}")]
    Io(#[from] std::io::Error),
}

/// A binary of this workspace, next to the running executable (or one
/// directory up, for test and bench executables under `deps/`).
pub fn sibling_binary(name: &str) -> Result<PathBuf, ClusterError> {
    let exe = std::env::current_exe().map_err(|e| ClusterError::Spawn {
        name: name.into(),
        source: e,
    })?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    for d in [Some(dir), dir.parent()].into_iter().flatten() {
        let p = d.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(ClusterError::MissingBinary(dir.join(name)))
}

/// A running server process, killed if dropped while running.
pub struct ServerProcess {
    /// For messages.
    pub name: String,
    /// Where it serves gRPC.
    pub addr: SocketAddr,
    /// Where it serves HTTP (API, metrics, dashboard), when it does.
    pub http_addr: Option<SocketAddr>,
    child: Child,
}

impl ServerProcess {
    /// Starts `program args...` and waits for its readiness line. The
    /// child's stderr (its logs) goes to ours; `log` sets its `RUST_LOG`.
    pub async fn start(
        name: &str,
        program: &Path,
        args: &[OsString],
        log: &str,
    ) -> Result<Self, ClusterError> {
        if !program.is_file() {
            return Err(ClusterError::MissingBinary(program.to_owned()));
        }
        let mut child = Command::new(program)
            .args(args)
            .env("RUST_LOG", log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ClusterError::Spawn {
                name: name.into(),
                source,
            })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let not_ready = |reason: String| ClusterError::NotReady {
            name: name.into(),
            reason,
        };
        let (addr, http_addr) = tokio::time::timeout(READY_TIMEOUT, ready_line(stdout))
            .await
            .map_err(|_| not_ready(format!("no readiness line within {READY_TIMEOUT:?}")))?
            .map_err(not_ready)?;
        Ok(Self {
            name: name.into(),
            addr,
            http_addr,
            child,
        })
    }

    /// `http://addr`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The OS process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends SIGTERM (the graceful path).
    pub fn terminate(&self) -> Result<(), ClusterError> {
        self.signal(libc::SIGTERM)
    }

    fn signal(&self, sig: libc::c_int) -> Result<(), ClusterError> {
        let control = |reason: String| ClusterError::Control {
            name: self.name.clone(),
            reason,
        };
        let pid = self
            .child
            .id()
            .ok_or_else(|| control("already exited".into()))?;
        // SAFETY: kill(2) on our own child, not yet reaped (id() is Some).
        if unsafe { libc::kill(pid as libc::pid_t, sig) } != 0 {
            return Err(control(std::io::Error::last_os_error().to_string()));
        }
        Ok(())
    }

    /// Waits for exit.
    pub async fn wait(&mut self, timeout: Duration) -> Result<ExitStatus, ClusterError> {
        let name = self.name.clone();
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(ClusterError::Control {
                name,
                reason: e.to_string(),
            }),
            Err(_) => Err(ClusterError::Control {
                name,
                reason: format!("still running after {timeout:?}"),
            }),
        }
    }

    /// SIGKILL, then reap.
    pub async fn kill(&mut self) -> Result<(), ClusterError> {
        self.child.kill().await.map_err(|e| ClusterError::Control {
            name: self.name.clone(),
            reason: e.to_string(),
        })
    }

    /// SIGTERM, then wait up to `timeout`, then SIGKILL.
    pub async fn stop(&mut self, timeout: Duration) -> Result<ExitStatus, ClusterError> {
        if self.terminate().is_ok()
            && let Ok(s) = self.wait(timeout).await
        {
            return Ok(s);
        }
        self.kill().await?;
        self.wait(timeout).await
    }
}

/// Reads stdout until the readiness line, then keeps draining it in the
/// background so the child never blocks on a full pipe.
async fn ready_line(
    stdout: tokio::process::ChildStdout,
) -> Result<(SocketAddr, Option<SocketAddr>), String> {
    let mut lines = BufReader::new(stdout).lines();
    let parse = |a: &str| {
        a.trim()
            .parse::<SocketAddr>()
            .map_err(|e| format!("bad address {a:?}: {e}"))
    };
    let mut http = None;
    while let Some(line) = lines.next_line().await.map_err(|e| e.to_string())? {
        if let Some(addr) = line.strip_prefix(HTTP_PREFIX) {
            http = Some(parse(addr)?);
        } else if let Some(addr) = line.strip_prefix(READY_PREFIX) {
            let addr = parse(addr)?;
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok((addr, http));
        }
    }
    Err("exited before it was ready".into())
}

/// One edge node of a cluster.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Profile file or shipped name.
    pub profile: String,
    /// Channel spec, e.g. `rayleigh:12`.
    pub snr: String,
    /// Channel seed.
    pub seed: u64,
    /// The node's model (a path or a catalog name such as
    /// `smollm2-135m-instruct`); None: the cluster's model.
    pub model: Option<String>,
    /// Extra flags.
    pub extra: Vec<String>,
}

/// The catalog model of the demo's board-class nodes.
pub const SMALL_BOARD_MODEL: &str = "smollm2-135m-instruct";

/// The demo's three experts with contrasting domains, channels and
/// hardware. As on a real edge network the nodes differ:
/// - fantasy stands for a Jetson-class board (8 GB, GPU): it runs the
///   cluster's model, by default the larger Gemma 3 270M (base, narrative
///   layout);
/// - scifi and nature stand for Raspberry Pi-class boards (2-4 GB, CPU
///   only): they run SmolLM2 135M Instruct, half the parameters and 98 MB, so
///   about twice the tokens per second on a small CPU, asked in its chat
///   template.
pub fn demo_nodes() -> Vec<NodeSpec> {
    [
        ("fantasy", "fixed:18", 1, None),
        ("scifi", "rayleigh:12", 2, Some(SMALL_BOARD_MODEL)),
        ("nature", "uniform:0:20", 3, Some(SMALL_BOARD_MODEL)),
    ]
    .into_iter()
    .map(|(p, s, seed, model)| NodeSpec {
        profile: p.into(),
        snr: s.into(),
        seed,
        model: model.map(str::to_owned),
        extra: Vec::new(),
    })
    .collect()
}

/// A secured cluster's credentials, made fresh in a temporary directory:
/// the CA and state (`state/`), a client certificate (`client/`) and an
/// API key; each node joins with its own one-time token into `node-I/`.
pub struct Credentials {
    /// Holds every file; removed on drop.
    pub root: tempfile::TempDir,
    /// The coordinator's state directory (CA, tokens, keys).
    pub state: PathBuf,
    /// The client identity.
    pub client: TlsDir,
    /// The client's API key.
    pub api_key: String,
}

impl Credentials {
    /// A CA, a client certificate and an API key in a fresh temp dir.
    pub fn make() -> Result<Self, ClusterError> {
        let root = tempfile::Builder::new()
            .prefix("netmoe-cluster-")
            .tempdir()?;
        let state = root.path().join("state");
        let ca = Ca::init(&state, &[])?;
        let client = crate::admin::issue_into(
            &ca,
            Role::Client,
            "demo-client",
            &root.path().join("client"),
            1,
        )?;
        let (_, api_key) = Keys::new(&state).create("demo-client")?;
        Ok(Self {
            root,
            state,
            client,
            api_key,
        })
    }

    /// A one-time join token valid for `ttl_s`.
    pub fn token(&self, ttl_s: i64, description: &str) -> Result<String, ClusterError> {
        let ca = Ca::load(&self.state)?;
        let (_, half) = Tokens::new(&self.state).create(ttl_s, description)?;
        Ok(format!("{half}.{}", ca.fingerprint()))
    }

    /// A fresh directory for node `i`'s identity.
    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.root.path().join(format!("node-{i}"))
    }
}

/// A coordinator and its edge nodes, all separate processes.
pub struct Cluster {
    /// The coordinator.
    pub coordinator: ServerProcess,
    /// The edge nodes, in spec order.
    pub nodes: Vec<ServerProcess>,
    /// Credentials when secured (None: `--insecure`).
    pub credentials: Option<Credentials>,
    /// How it was started (so a node can be replaced like it was added).
    spec: ClusterSpec,
}

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// The GGUF of the nodes that name no model of their own.
    pub model: PathBuf,
    /// The coordinator's GGUF (a path or a catalog name).
    pub coordinator_model: String,
    /// The edge nodes.
    pub nodes: Vec<NodeSpec>,
    /// llama.cpp threads of each node.
    pub node_threads: u32,
    /// llama.cpp threads of the coordinator.
    pub coordinator_threads: u32,
    /// Extra coordinator flags.
    pub coordinator_args: Vec<String>,
    /// `RUST_LOG` of the children.
    pub log: String,
    /// Mutual TLS, join tokens and an API key (false: `--insecure`).
    pub secure: bool,
}

impl Cluster {
    /// Starts the coordinator, then the nodes (registering with it), and
    /// waits until every node is registered.
    pub async fn start(spec: &ClusterSpec) -> Result<Self, ClusterError> {
        let coordinator_bin = sibling_binary("coordinator")?;
        let node_bin = sibling_binary("edge-node")?;
        let mut args: Vec<OsString> = ["serve", "--listen", "127.0.0.1:0"]
            .iter()
            .map(OsString::from)
            .collect();
        // Fast liveness for a loopback cluster, unless the caller says otherwise.
        for (flag, value) in [("--heartbeat-ms", "500"), ("--liveness-ms", "1500")] {
            if !spec.coordinator_args.iter().any(|a| a == flag) {
                args.extend([flag.into(), value.into()]);
            }
        }
        args.extend([
            "--threads".into(),
            spec.coordinator_threads.to_string().into(),
        ]);
        args.extend(["--model".into(), spec.coordinator_model.clone().into()]);
        let credentials = if spec.secure {
            let c = Credentials::make()?;
            args.extend(["--tls-dir".into(), c.state.clone().into_os_string()]);
            Some(c)
        } else {
            args.push("--insecure".into());
            None
        };
        args.extend(spec.coordinator_args.iter().map(OsString::from));
        let coordinator =
            ServerProcess::start("coordinator", &coordinator_bin, &args, &spec.log).await?;
        let mut cluster = Self {
            coordinator,
            nodes: Vec::new(),
            credentials,
            spec: spec.clone(),
        };
        for (i, n) in spec.nodes.iter().enumerate() {
            let node = cluster.spawn_node(&node_bin, n, i).await?;
            cluster.nodes.push(node);
        }
        cluster
            .wait_for_live(spec.nodes.len(), READY_TIMEOUT)
            .await?;
        Ok(cluster)
    }

    /// Stops node `i` (SIGTERM), waits until the coordinator no longer
    /// lists it, then starts `n` in its place with the same identity
    /// directory and waits until it is live: a board whose software was
    /// changed under the same name, address book and credentials.
    pub async fn replace_node(&mut self, i: usize, n: &NodeSpec) -> Result<(), ClusterError> {
        let total = self.nodes.len();
        if i >= total {
            return Err(ClusterError::NotReady {
                name: format!("node {i}"),
                reason: format!("the cluster has {total} nodes"),
            });
        }
        self.nodes[i].stop(Duration::from_secs(30)).await?;
        self.wait_for_live(total - 1, READY_TIMEOUT).await?;
        let node = self.spawn_node(&sibling_binary("edge-node")?, n, i).await?;
        self.nodes[i] = node;
        self.wait_for_live(total, READY_TIMEOUT).await?;
        Ok(())
    }

    async fn spawn_node(
        &self,
        bin: &Path,
        n: &NodeSpec,
        i: usize,
    ) -> Result<ServerProcess, ClusterError> {
        let spec = &self.spec;
        let mut args: Vec<OsString> = vec!["serve".into(), "--listen".into(), "127.0.0.1:0".into()];
        let model = n
            .model
            .as_ref()
            .map_or_else(|| spec.model.clone().into_os_string(), OsString::from);
        args.extend(["--model".into(), model]);
        args.extend(["--profile".into(), n.profile.clone().into()]);
        args.extend([
            "--snr".into(),
            n.snr.clone().into(),
            "--seed".into(),
            n.seed.to_string().into(),
        ]);
        args.extend(["--threads".into(), spec.node_threads.to_string().into()]);
        args.extend(["--coordinator".into(), self.coordinator.endpoint().into()]);
        match &self.credentials {
            Some(c) => {
                let token = c.token(900, &format!("cluster node {i}"))?;
                args.extend([
                    "--tls-dir".into(),
                    c.node_dir(i).into_os_string(),
                    "--join-token".into(),
                    token.into(),
                ]);
            }
            None => args.push("--insecure".into()),
        }
        args.extend([
            "--heartbeat-ms".into(),
            "500".into(),
            "--warmup-tokens".into(),
            "8".into(),
        ]);
        args.extend(n.extra.iter().map(OsString::from));
        let name = format!("edge-node {i} ({})", n.profile);
        ServerProcess::start(&name, bin, &args, &spec.log).await
    }

    /// A client of the coordinator (with the cluster's client certificate
    /// and API key when secured).
    pub async fn client(&self) -> Result<Client, ClusterError> {
        let c = self.credentials.as_ref();
        Ok(crate::client::connect(
            &self.coordinator.endpoint(),
            c.map(|c| &c.client),
            c.map(|c| c.api_key.as_str()),
        )
        .await?)
    }

    /// Polls `ListNodes` until exactly `n` nodes are live.
    pub async fn wait_for_live(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<v1::NodeStatus>, ClusterError> {
        let mut client = self.client().await?;
        let start = Instant::now();
        loop {
            let nodes = client
                .list_nodes(v1::ListNodesRequest {})
                .await?
                .into_inner()
                .nodes;
            let live: Vec<_> = nodes.into_iter().filter(|s| s.live).collect();
            if live.len() == n {
                return Ok(live);
            }
            if start.elapsed() > timeout {
                return Err(ClusterError::NotReady {
                    name: "cluster".into(),
                    reason: format!("{} live nodes after {timeout:?}, expected {n}", live.len()),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the nodes, then the coordinator, each with SIGTERM.
    pub async fn shutdown(mut self) -> Result<(), ClusterError> {
        for n in &mut self.nodes {
            if n.pid().is_some() {
                n.stop(Duration::from_secs(30)).await?;
            }
        }
        self.coordinator.stop(Duration::from_secs(30)).await?;
        Ok(())
    }
}
