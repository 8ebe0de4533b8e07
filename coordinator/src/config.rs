//! Coordinator configuration: a TOML file, environment variables and
//! flags, resolved once (flag or env > file > default) into [`CoordinatorConfig`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
pub use netmoe_common::config::ConfigError;
use netmoe_common::config::read_toml;
use netmoe_common::cost::CostModel;
use serde::Deserialize;

use netmoe_common::link::probe::{DEFAULT_PROBE_BYTES, MAX_PROBE_BYTES};

use crate::fusion::FusionMode;
use crate::links::{DEFAULT_PROBE_INTERVAL, Transport};
use crate::pipeline::{DEFAULT_MAX_SEGMENTS, DEFAULT_SEGMENT_DEADLINE};
use crate::registry::{DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_LIVENESS_TIMEOUT};

/// Default gRPC listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50050";
/// Default routing policy.
pub const DEFAULT_POLICY: &str = "cost";
/// The coordinator's own model by default: SmolLM2 135M Instruct, small
/// enough for the user's device, an instruction-tuned local expert, and the
/// model the quality judge's weights were fitted with.
pub const DEFAULT_COORDINATOR_MODEL: &str = "smollm2-135m-instruct";
/// Experts a gated policy (`sac+gate`) keeps per segment by default: the
/// most relevant one, its other candidates only as fallbacks.
pub const DEFAULT_GATE_TOP_K: u32 = 1;
/// Default judge.
pub const DEFAULT_JUDGE: &str = "quality";
/// Default shutdown grace period.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// Flags of `coordinator serve`; each also reads a `NETMOE_*` variable.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (snake_case keys; cost
    /// model keys under [cost]).
    #[arg(long, env = "NETMOE_COORDINATOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to serve gRPC on; port 0 picks a free one [default: 127.0.0.1:50050].
    #[arg(long, env = "NETMOE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// The coordinator's own GGUF (judge, fusion, local expert): a path, an
    /// http(s) URL, or a shipped model by name ("default" is Gemma 3 270M)
    /// [default: smollm2-135m-instruct].
    #[arg(long, env = "NETMOE_MODEL")]
    pub model: Option<String>,
    /// llama.cpp threads [default: all logical CPUs].
    #[arg(long, env = "NETMOE_THREADS")]
    pub threads: Option<u32>,
    /// Routing policy when a request names none: random, local, relevance,
    /// snr, cost, sac (with --policy-file); NAME+gate keeps each segment on
    /// its most relevant experts (--gate-top-k) whenever the channel allows
    /// it [default: cost, sac with --policy-file].
    #[arg(long, env = "NETMOE_POLICY")]
    pub policy: Option<String>,
    /// Trained SAC policy (sac_policy.json from `coordinator train`) to
    /// register as policy `sac`; it becomes the default policy unless
    /// --policy names another.
    #[arg(long, env = "NETMOE_POLICY_FILE")]
    pub policy_file: Option<PathBuf>,
    /// Keep training the --policy-file policy from live rewards (false
    /// freezes it) [default: false].
    #[arg(long, env = "NETMOE_LEARN_ONLINE")]
    pub learn_online: Option<bool>,
    /// Judge: quality, heuristic (the earlier one), local (the paper's
    /// prompt on this model), or openai (needs --judge-url) [default: quality].
    #[arg(long, env = "NETMOE_JUDGE")]
    pub judge: Option<String>,
    /// Base URL of an OpenAI-compatible API, e.g. https://api.openai.com/v1.
    #[arg(long, env = "NETMOE_JUDGE_URL")]
    pub judge_url: Option<String>,
    /// API key for --judge-url (read from the environment; avoid the flag).
    #[arg(long, env = "NETMOE_JUDGE_KEY", hide_env_values = true)]
    pub judge_key: Option<String>,
    /// Model name for --judge-url [default: gpt-4o-mini].
    #[arg(long, env = "NETMOE_JUDGE_MODEL")]
    pub judge_model: Option<String>,
    /// Gate embeddings: minilm (all-MiniLM-L6-v2 in candle, fetched and
    /// cached) or model (mean-pooled states of --model) [default: minilm].
    #[arg(long, env = "NETMOE_GATE_EMBEDDER")]
    pub gate_embedder: Option<String>,
    /// Segments a prompt is split into at most, 1-8 [default: 4].
    #[arg(long, env = "NETMOE_MAX_SEGMENTS")]
    pub max_segments: Option<u32>,
    /// Generation budget of each segment, ms [default: 60000].
    #[arg(long, env = "NETMOE_SEGMENT_DEADLINE_MS")]
    pub segment_deadline_ms: Option<u64>,
    /// Fusion: stitch (keep every passage) or model (the paper's prompt) [default: stitch].
    #[arg(long, env = "NETMOE_FUSION")]
    pub fusion: Option<String>,
    /// Offer the coordinator's own expert to routing policies [default: true].
    #[arg(long, env = "NETMOE_LOCAL_CANDIDATE")]
    pub local_candidate: Option<bool>,
    /// Experts a gated policy (`--policy sac+gate`, any policy's name with
    /// `+gate`) keeps per segment, most relevant first, 1-8 [default: 1].
    #[arg(long, env = "NETMOE_GATE_TOP_K")]
    pub gate_top_k: Option<u32>,
    /// Heartbeat period asked of nodes, ms [default: 1000].
    #[arg(long, env = "NETMOE_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// Silence after which a node is dropped, ms [default: 3000].
    #[arg(long, env = "NETMOE_LIVENESS_MS")]
    pub liveness_ms: Option<u64>,
    /// Channel bandwidth B, Hz [default: 10000].
    #[arg(long, env = "NETMOE_BANDWIDTH_HZ")]
    pub bandwidth_hz: Option<f64>,
    /// Transmit power, W [default: 0.2].
    #[arg(long, env = "NETMOE_TX_POWER_W")]
    pub tx_power_w: Option<f64>,
    /// Compute cost per word κ_c [default: 0.01].
    #[arg(long, env = "NETMOE_COMPUTE_PER_WORD")]
    pub compute_per_word: Option<f64>,
    /// Weight of compute cost in the reward λ_c [default: 1].
    #[arg(long, env = "NETMOE_LAMBDA_COMPUTE")]
    pub lambda_compute: Option<f64>,
    /// Weight of simulated transfer seconds in the reward λ_t [default: 2].
    #[arg(long, env = "NETMOE_LAMBDA_TRANSFER")]
    pub lambda_transfer: Option<f64>,
    /// Time in-flight requests get after SIGINT/SIGTERM, ms [default: 30000].
    #[arg(long, env = "NETMOE_GRACE_MS")]
    pub grace_ms: Option<u64>,
    /// Model cache directory [default: ~/.cache/netmoe].
    #[arg(long, env = "NETMOE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Data plane to the nodes when a request names none: grpc, or quic
    /// (the same messages on QUIC streams) [default: grpc].
    #[arg(long, env = "NETMOE_TRANSPORT")]
    pub transport: Option<String>,
    /// PEM bundle of the CA that issued the nodes' QUIC certificates.
    /// Without it the coordinator pins each node's self-signed certificate
    /// by the SHA-256 the node registered with (dev mode).
    #[arg(long, env = "NETMOE_QUIC_CA")]
    pub quic_ca: Option<PathBuf>,
    /// Period of the background link probes, ms; 0 turns them off (nodes
    /// are still probed when they register and on demand) [default: 30000].
    #[arg(long, env = "NETMOE_PROBE_INTERVAL_MS")]
    pub probe_interval_ms: Option<u64>,
    /// Payload bytes each way of a link probe [default: 16384].
    #[arg(long, env = "NETMOE_PROBE_BYTES")]
    pub probe_bytes: Option<u64>,
    /// Serve Prometheus metrics at http://ADDR/metrics [default: off].
    #[arg(long, env = "NETMOE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Serve the HTTP API (OpenAI-compatible `/v1/...`, with API keys as
    /// bearer tokens when secured), `/metrics` and the dashboard at
    /// http://ADDR/ [default: off].
    #[arg(long, env = "NETMOE_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// Serve the HTTP listener over TLS with the coordinator's certificate
    /// from --tls-dir (clients trust the cluster's ca.pem) [default: false].
    #[arg(long, env = "NETMOE_HTTP_TLS")]
    pub http_tls: Option<bool>,
    /// Requests answered at once; more are refused (gRPC
    /// RESOURCE_EXHAUSTED, HTTP 429) [default: 4].
    #[arg(long, env = "NETMOE_MAX_CONCURRENT_ASKS")]
    pub max_concurrent_asks: Option<usize>,
    /// The cluster's state directory (made by `coordinator ca init DIR`):
    /// the CA, the coordinator's certificate, join tokens, API keys. Every
    /// link is then mutual TLS.
    #[arg(long, env = "NETMOE_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,
    /// Serve plaintext gRPC and let every caller through (a lab on a
    /// network you own; a warning is logged at start).
    #[arg(long, env = "NETMOE_INSECURE")]
    pub insecure: bool,
    /// Rejected node reports after which a node is quarantined (not
    /// routed to) [default: 3].
    #[arg(long, env = "NETMOE_QUARANTINE_AFTER")]
    pub quarantine_after: Option<u32>,
}

/// Keys of `serve` that live under `[cost]` in the settings file.
const COST_KEYS: &[&str] = &[
    "bandwidth_hz",
    "tx_power_w",
    "compute_per_word",
    "lambda_compute",
    "lambda_transfer",
];

/// Keys that are flags or variables only, never read from the file: the
/// file's own path and a secret.
const FLAG_ONLY: &[&str] = &["config", "judge_key"];

/// Every `serve` setting with its doc, flag, variable and default, read
/// off the flags (`coordinator config --print-default`).
pub fn settings() -> Vec<netmoe_common::cli::SettingDoc> {
    use clap::CommandFactory;
    #[derive(clap::Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }
    let tables: Vec<(&str, &str)> = COST_KEYS.iter().map(|k| (*k, "cost")).collect();
    netmoe_common::cli::settings(&Serve::command(), &tables, FLAG_ONLY)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    model: Option<String>,
    threads: Option<u32>,
    policy: Option<String>,
    policy_file: Option<PathBuf>,
    learn_online: Option<bool>,
    judge: Option<String>,
    judge_url: Option<String>,
    judge_model: Option<String>,
    gate_embedder: Option<String>,
    max_segments: Option<u32>,
    segment_deadline_ms: Option<u64>,
    fusion: Option<String>,
    local_candidate: Option<bool>,
    gate_top_k: Option<u32>,
    heartbeat_ms: Option<u64>,
    liveness_ms: Option<u64>,
    grace_ms: Option<u64>,
    cache_dir: Option<PathBuf>,
    cost: Option<CostModel>,
    transport: Option<String>,
    quic_ca: Option<PathBuf>,
    probe_interval_ms: Option<u64>,
    probe_bytes: Option<u64>,
    metrics_listen: Option<SocketAddr>,
    http_listen: Option<SocketAddr>,
    http_tls: Option<bool>,
    max_concurrent_asks: Option<usize>,
    tls_dir: Option<PathBuf>,
    insecure: Option<bool>,
    quarantine_after: Option<u32>,
}

/// What embeds texts for the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GateEmbedderChoice {
    /// all-MiniLM-L6-v2.
    #[default]
    MiniLm,
    /// The coordinator's GGUF.
    Model,
}

/// Which judge scores texts.
#[derive(Debug, Clone, PartialEq)]
pub enum JudgeChoice {
    /// The default: signals of good writing under a fitted logistic model.
    Quality,
    /// The earlier combined-signal judge.
    Heuristic,
    /// The paper's prompt on the coordinator's model.
    Local,
    /// An OpenAI-compatible endpoint.
    OpenAi {
        /// Base URL.
        url: String,
        /// API key.
        key: Option<String>,
        /// Model name.
        model: String,
    },
}

/// Resolved configuration.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// Model spec.
    pub model: String,
    /// llama.cpp threads.
    pub threads: u32,
    /// Default policy.
    pub policy: String,
    /// Trained policy to load as `sac`.
    pub policy_file: Option<PathBuf>,
    /// Learn online from live rewards.
    pub learn_online: bool,
    /// Judge.
    pub judge: JudgeChoice,
    /// Gate embeddings.
    pub gate_embedder: GateEmbedderChoice,
    /// Default K.
    pub max_segments: u32,
    /// Segment budget.
    pub segment_deadline: Duration,
    /// Fusion mode.
    pub fusion: FusionMode,
    /// Local expert as a candidate.
    pub local_candidate: bool,
    /// Experts a gated policy keeps per segment.
    pub gate_top_k: u32,
    /// Heartbeat period.
    pub heartbeat: Duration,
    /// Liveness timeout.
    pub liveness: Duration,
    /// Cost model.
    pub cost: CostModel,
    /// Grace period.
    pub grace: Duration,
    /// Model cache.
    pub cache_dir: PathBuf,
    /// Default data plane.
    pub transport: Transport,
    /// CA bundle for nodes' QUIC certificates (None: dev-mode pinning).
    pub quic_ca: Option<PathBuf>,
    /// Background probe period (None: off).
    pub probe_interval: Option<Duration>,
    /// Probe payload each way.
    pub probe_bytes: u64,
    /// Where to serve `/metrics`, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// Where to serve the HTTP API and dashboard, if anywhere.
    pub http_listen: Option<SocketAddr>,
    /// HTTPS on that listener (needs `tls_dir`).
    pub http_tls: bool,
    /// Requests answered at once.
    pub max_concurrent_asks: usize,
    /// The state directory of a secured coordinator.
    pub tls_dir: Option<PathBuf>,
    /// Plaintext, no access control.
    pub insecure: bool,
    /// Violations before quarantine.
    pub quarantine_after: u32,
}

impl CoordinatorConfig {
    /// The resolved settings in the settings file's shape, what
    /// `coordinator config` prints: every key with the value that flags,
    /// `NETMOE_*` variables, the `--config` file and the defaults gave it.
    /// Loaded back as `--config` it resolves to the same settings. The
    /// judge's API key is never printed (it is a flag or variable only).
    pub fn to_settings(&self) -> toml::Table {
        use toml::Value;
        let mut t = toml::Table::new();
        let mut put = |k: &str, v: Value| {
            t.insert(k.to_owned(), v);
        };
        let text = |s: &str| Value::String(s.to_owned());
        let path = |p: &std::path::Path| Value::String(p.display().to_string());
        let ms = |d: Duration| Value::Integer(d.as_millis().min(i64::MAX as u128) as i64);
        let int = |n: u64| Value::Integer(n.min(i64::MAX as u64) as i64);
        put("listen", text(&self.listen.to_string()));
        put("model", text(&self.model));
        put("threads", int(u64::from(self.threads)));
        put("policy", text(&self.policy));
        if let Some(p) = &self.policy_file {
            put("policy_file", path(p));
        }
        put("learn_online", Value::Boolean(self.learn_online));
        let judge = match &self.judge {
            JudgeChoice::Quality => "quality",
            JudgeChoice::Heuristic => "heuristic",
            JudgeChoice::Local => "local",
            JudgeChoice::OpenAi { url, model, .. } => {
                put("judge_url", text(url));
                put("judge_model", text(model));
                "openai"
            }
        };
        put("judge", text(judge));
        put(
            "gate_embedder",
            text(match self.gate_embedder {
                GateEmbedderChoice::MiniLm => "minilm",
                GateEmbedderChoice::Model => "model",
            }),
        );
        put("max_segments", int(u64::from(self.max_segments)));
        put("segment_deadline_ms", ms(self.segment_deadline));
        put("fusion", text(self.fusion.name()));
        put("local_candidate", Value::Boolean(self.local_candidate));
        put("gate_top_k", int(u64::from(self.gate_top_k)));
        put("heartbeat_ms", ms(self.heartbeat));
        put("liveness_ms", ms(self.liveness));
        put("grace_ms", ms(self.grace));
        put("cache_dir", path(&self.cache_dir));
        put("transport", text(self.transport.name()));
        if let Some(p) = &self.quic_ca {
            put("quic_ca", path(p));
        }
        put(
            "probe_interval_ms",
            self.probe_interval.map_or(Value::Integer(0), ms),
        );
        put("probe_bytes", int(self.probe_bytes));
        if let Some(a) = self.metrics_listen {
            put("metrics_listen", text(&a.to_string()));
        }
        if let Some(a) = self.http_listen {
            put("http_listen", text(&a.to_string()));
        }
        put("http_tls", Value::Boolean(self.http_tls));
        put("max_concurrent_asks", int(self.max_concurrent_asks as u64));
        if let Some(p) = &self.tls_dir {
            put("tls_dir", path(p));
        }
        put("insecure", Value::Boolean(self.insecure));
        put("quarantine_after", int(u64::from(self.quarantine_after)));
        let c = &self.cost;
        let cost: toml::Table = [
            ("bandwidth_hz", c.bandwidth_hz),
            ("tx_power_w", c.tx_power_w),
            ("compute_per_word", c.compute_per_word),
            ("lambda_compute", c.lambda_compute),
            ("lambda_transfer", c.lambda_transfer),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Value::Float(v)))
        .collect();
        put("cost", Value::Table(cost));
        t
    }

    /// The state directory to serve with, or None for `--insecure`; an
    /// error when neither or both were given (plaintext is never a default).
    pub fn security(&self) -> Result<Option<&std::path::Path>, ConfigError> {
        match (&self.tls_dir, self.insecure) {
            (Some(d), false) => Ok(Some(d)),
            (None, true) => Ok(None),
            (Some(_), true) => Err(ConfigError::invalid(
                "tls_dir",
                "--tls-dir and --insecure exclude each other",
            )),
            (None, false) => Err(ConfigError::invalid(
                "tls_dir",
                "refusing to serve without TLS: give --tls-dir DIR (make one with `coordinator ca init DIR`) or --insecure",
            )),
        }
    }
}

impl ServeArgs {
    /// Resolves flags over the file over the defaults.
    pub fn resolve(self) -> Result<CoordinatorConfig, ConfigError> {
        let f = match &self.config {
            Some(p) => read_toml::<FileConfig>(p)?,
            None => FileConfig::default(),
        };
        let policy_file = self.policy_file.or(f.policy_file);
        let base = f.cost.unwrap_or_default();
        let cost = CostModel {
            bandwidth_hz: self.bandwidth_hz.unwrap_or(base.bandwidth_hz),
            tx_power_w: self.tx_power_w.unwrap_or(base.tx_power_w),
            compute_per_word: self.compute_per_word.unwrap_or(base.compute_per_word),
            lambda_compute: self.lambda_compute.unwrap_or(base.lambda_compute),
            lambda_transfer: self.lambda_transfer.unwrap_or(base.lambda_transfer),
        };
        if !(cost.bandwidth_hz > 0.0 && cost.bandwidth_hz.is_finite()) {
            return Err(ConfigError::invalid(
                "bandwidth_hz",
                "must be a positive number",
            ));
        }
        let judge_name = self
            .judge
            .or(f.judge)
            .unwrap_or_else(|| DEFAULT_JUDGE.into());
        let judge = match judge_name.as_str() {
            "quality" => JudgeChoice::Quality,
            "heuristic" => JudgeChoice::Heuristic,
            "local" => JudgeChoice::Local,
            "openai" => JudgeChoice::OpenAi {
                url: self.judge_url.or(f.judge_url).ok_or_else(|| {
                    ConfigError::invalid("judge_url", "the openai judge needs --judge-url")
                })?,
                key: self.judge_key,
                model: self
                    .judge_model
                    .or(f.judge_model)
                    .unwrap_or_else(|| "gpt-4o-mini".into()),
            },
            other => {
                return Err(ConfigError::invalid(
                    "judge",
                    format!("{other:?}: use quality, heuristic, local or openai"),
                ));
            }
        };
        let gate_embedder = match self.gate_embedder.or(f.gate_embedder).as_deref() {
            None | Some("minilm") => GateEmbedderChoice::MiniLm,
            Some("model") => GateEmbedderChoice::Model,
            Some(other) => {
                return Err(ConfigError::invalid(
                    "gate_embedder",
                    format!("{other:?}: use minilm or model"),
                ));
            }
        };
        let max_segments = self
            .max_segments
            .or(f.max_segments)
            .unwrap_or(DEFAULT_MAX_SEGMENTS);
        if max_segments == 0 || max_segments as usize > crate::gate::MAX_SEGMENTS {
            return Err(ConfigError::invalid(
                "max_segments",
                format!("{max_segments} is not in 1..=8"),
            ));
        }
        let gate_top_k = self
            .gate_top_k
            .or(f.gate_top_k)
            .unwrap_or(DEFAULT_GATE_TOP_K);
        if gate_top_k == 0 || gate_top_k > 8 {
            return Err(ConfigError::invalid(
                "gate_top_k",
                format!("{gate_top_k} is not in 1..=8"),
            ));
        }
        let fusion = self
            .fusion
            .or(f.fusion)
            .map_or(Ok(FusionMode::default()), |s| s.parse())
            .map_err(|e: String| ConfigError::invalid("fusion", e))?;
        let ms = |v: Option<u64>, d: Duration| v.map_or(d, |m| Duration::from_millis(m.max(1)));
        let transport = self
            .transport
            .or(f.transport)
            .map_or(Ok(Transport::default()), |s| s.parse())
            .map_err(|e: String| ConfigError::invalid("transport", e))?;
        let probe_bytes = self
            .probe_bytes
            .or(f.probe_bytes)
            .unwrap_or(DEFAULT_PROBE_BYTES);
        if probe_bytes == 0 || probe_bytes > MAX_PROBE_BYTES {
            return Err(ConfigError::invalid(
                "probe_bytes",
                format!("{probe_bytes} is not in 1..={MAX_PROBE_BYTES}"),
            ));
        }
        let probe_interval = match self.probe_interval_ms.or(f.probe_interval_ms) {
            Some(0) => None,
            Some(ms) => Some(Duration::from_millis(ms)),
            None => Some(DEFAULT_PROBE_INTERVAL),
        };
        Ok(CoordinatorConfig {
            transport,
            quic_ca: self.quic_ca.or(f.quic_ca),
            probe_interval,
            probe_bytes,
            metrics_listen: self.metrics_listen.or(f.metrics_listen),
            http_listen: self.http_listen.or(f.http_listen),
            http_tls: self.http_tls.or(f.http_tls).unwrap_or(false),
            max_concurrent_asks: self
                .max_concurrent_asks
                .or(f.max_concurrent_asks)
                .unwrap_or(crate::pipeline::DEFAULT_MAX_CONCURRENT_ASKS)
                .clamp(1, 1024),
            tls_dir: self.tls_dir.or(f.tls_dir),
            insecure: self.insecure || f.insecure.unwrap_or(false),
            quarantine_after: self
                .quarantine_after
                .or(f.quarantine_after)
                .unwrap_or(crate::checks::DEFAULT_QUARANTINE_AFTER)
                .max(1),
            listen: self
                .listen
                .or(f.listen)
                .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default")),
            model: self
                .model
                .or(f.model)
                .unwrap_or_else(|| DEFAULT_COORDINATOR_MODEL.into()),
            threads: self
                .threads
                .or(f.threads)
                .unwrap_or_else(|| {
                    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
                })
                .max(1),
            policy: self.policy.or(f.policy).unwrap_or_else(|| {
                if policy_file.is_some() {
                    "sac".into()
                } else {
                    DEFAULT_POLICY.into()
                }
            }),
            policy_file,
            learn_online: self.learn_online.or(f.learn_online).unwrap_or(false),
            judge,
            gate_embedder,
            max_segments,
            segment_deadline: ms(
                self.segment_deadline_ms.or(f.segment_deadline_ms),
                DEFAULT_SEGMENT_DEADLINE,
            ),
            fusion,
            local_candidate: self.local_candidate.or(f.local_candidate).unwrap_or(true),
            gate_top_k,
            heartbeat: ms(
                self.heartbeat_ms.or(f.heartbeat_ms),
                DEFAULT_HEARTBEAT_INTERVAL,
            ),
            liveness: ms(self.liveness_ms.or(f.liveness_ms), DEFAULT_LIVENESS_TIMEOUT),
            cost,
            grace: ms(self.grace_ms.or(f.grace_ms), DEFAULT_GRACE),
            cache_dir: self
                .cache_dir
                .or(f.cache_dir)
                .unwrap_or_else(netmoe_common::fetch::cache_dir),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printed_defaults_load_as_a_settings_file_and_change_nothing() {
        let settings = settings();
        for key in [
            "listen",
            "http_listen",
            "max_concurrent_asks",
            "judge_key",
            "quarantine_after",
        ] {
            assert!(settings.iter().any(|s| s.key == key), "{key} not listed");
        }
        let bw = settings.iter().find(|s| s.key == "bandwidth_hz").unwrap();
        assert_eq!(
            (bw.table.as_deref(), bw.default.as_deref()),
            (Some("cost"), Some("10000"))
        );
        let text = netmoe_common::cli::render_defaults(&settings);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("coordinator.toml");
        std::fs::write(&file, &text).unwrap();
        let from_file = ServeArgs {
            config: Some(file),
            ..Default::default()
        }
        .resolve()
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
        let plain = ServeArgs::default().resolve().unwrap();
        assert_eq!(format!("{from_file:?}"), format!("{plain:?}"), "{text}");
        assert!(text.contains("\nlisten = \"127.0.0.1:50050\"\n"), "{text}");
    }

    #[test]
    fn the_resolved_settings_load_back_to_the_same_settings() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("coordinator.toml");
        std::fs::write(
            &file,
            "max_segments = 2\nfusion = \"model\"\n[cost]\nbandwidth_hz = 20000.0\n",
        )
        .unwrap();
        let resolved = ServeArgs {
            config: Some(file),
            max_segments: Some(3),
            judge: Some("openai".into()),
            judge_url: Some("http://127.0.0.1:9/v1".into()),
            judge_key: Some("sk-secret".into()),
            probe_interval_ms: Some(0),
            insecure: true,
            ..Default::default()
        }
        .resolve()
        .unwrap();
        let t = resolved.to_settings();
        // The flag wins over the file, the file over the default.
        assert_eq!(t["max_segments"].as_integer(), Some(3));
        assert_eq!(t["fusion"].as_str(), Some("model"));
        assert_eq!(t["cost"]["bandwidth_hz"].as_float(), Some(20000.0));
        assert_eq!(t["probe_interval_ms"].as_integer(), Some(0));
        let text = toml::to_string(&t).unwrap();
        assert!(
            !text.contains("sk-secret") && !text.contains("judge_key"),
            "{text}"
        );
        let again = dir.path().join("resolved.toml");
        std::fs::write(&again, &text).unwrap();
        let reloaded = ServeArgs {
            config: Some(again),
            judge_key: Some("sk-secret".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(format!("{reloaded:?}"), format!("{resolved:?}"), "{text}");
    }

    #[test]
    fn resolves_and_validates() {
        let c = ServeArgs::default().resolve().unwrap();
        assert_eq!(c.policy, DEFAULT_POLICY);
        assert_eq!(c.judge, JudgeChoice::Quality);
        assert_eq!(c.cost, CostModel::default());
        let bad = ServeArgs {
            judge: Some("openai".into()),
            ..Default::default()
        };
        assert!(bad.resolve().unwrap_err().to_string().contains("judge-url"));
        let bad = ServeArgs {
            max_segments: Some(9),
            ..Default::default()
        };
        assert!(bad.resolve().is_err());
        assert_eq!(c.gate_top_k, DEFAULT_GATE_TOP_K);
        for k in [0, 9] {
            let bad = ServeArgs {
                gate_top_k: Some(k),
                ..Default::default()
            };
            let e = bad.resolve().unwrap_err().to_string();
            assert!(e.contains("gate_top_k"), "{e}");
        }
    }
}
