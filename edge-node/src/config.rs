//! Node configuration: a TOML file, environment variables and flags,
//! resolved once (flag or env > file > default) into [`NodeConfig`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use netmoe_common::channel::SnrModel;
pub use netmoe_common::config::ConfigError;
use netmoe_common::config::read_toml;
use serde::Deserialize;

use crate::engine::{
    DEFAULT_BATCH_TOKENS, DEFAULT_CTX_PER_SLOT, DEFAULT_QUEUE_DEPTH, DEFAULT_SLOTS,
};
use crate::service::{
    DEFAULT_MAX_CONTEXT_BYTES, DEFAULT_MAX_SEGMENT_BYTES, DEFAULT_MAX_TOKENS_LIMIT, Limits,
};

/// Default gRPC listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
/// Default model: the bundled Gemma 3 270M, fetched into the cache.
pub const DEFAULT_MODEL: &str = "default";
/// Default simulated channel.
pub const DEFAULT_SNR: &str = "rayleigh:15";
/// Default seed of the channel draws.
pub const DEFAULT_SEED: u64 = 42;
/// Default heartbeat period.
pub const DEFAULT_HEARTBEAT_MS: u64 = 1000;
/// Default time in-flight streams get to finish on shutdown.
pub const DEFAULT_GRACE_MS: u64 = 10_000;
/// Tokens generated at start-up to measure speed (0 skips it).
pub const DEFAULT_WARMUP_TOKENS: u32 = 16;

/// Flags of `edge-node serve`; each also reads a `NETMOE_*` variable.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (snake_case keys).
    #[arg(long, env = "NETMOE_NODE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to serve gRPC on; port 0 picks a free one.
    #[arg(long, env = "NETMOE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Id to register under [default: <profile>-<port>].
    #[arg(long, env = "NETMOE_NODE_ID")]
    pub node_id: Option<String>,
    /// GGUF model: a path, an http(s) URL, or a shipped model by name:
    /// "default" (Gemma 3 270M base) or "smollm2-135m-instruct", fetched and
    /// cached [default: the profile's `model`, else default].
    #[arg(long, env = "NETMOE_MODEL")]
    pub model: Option<String>,
    /// Expert profile: a TOML file, or a shipped one by name (fantasy,
    /// scifi, nature) [default: a generalist].
    #[arg(long, env = "NETMOE_PROFILE")]
    pub profile: Option<PathBuf>,
    /// llama.cpp threads [default: all logical CPUs].
    #[arg(long, env = "NETMOE_THREADS")]
    pub threads: Option<u32>,
    /// Sequences decoded together in one batch [default: 4].
    #[arg(long, env = "NETMOE_SLOTS")]
    pub slots: Option<u32>,
    /// Requests that may wait for a slot; more get RESOURCE_EXHAUSTED [default: 8].
    #[arg(long, env = "NETMOE_QUEUE_DEPTH")]
    pub queue_depth: Option<u32>,
    /// Context window of each sequence, prompt + output [default: 1024].
    #[arg(long, env = "NETMOE_CTX_PER_SLOT")]
    pub ctx_per_slot: Option<u32>,
    /// Tokens per llama.cpp decode call [default: 512].
    #[arg(long, env = "NETMOE_BATCH_TOKENS")]
    pub batch_tokens: Option<u32>,
    /// Most tokens a request may ask for [default: 512].
    #[arg(long, env = "NETMOE_MAX_TOKENS_LIMIT")]
    pub max_tokens_limit: Option<u32>,
    /// Layers to offload to a GPU (CUDA builds) [default: 0].
    #[arg(long, env = "NETMOE_GPU_LAYERS")]
    pub gpu_layers: Option<u32>,
    /// Simulated channel: fixed:DB, uniform:MIN:MAX, rayleigh:MEAN_DB or
    /// trace:FILE [default: rayleigh:15].
    #[arg(long, env = "NETMOE_SNR")]
    pub snr: Option<String>,
    /// Seed of the channel draws [default: 42].
    #[arg(long, env = "NETMOE_SEED")]
    pub seed: Option<u64>,
    /// Coordinator to register with, e.g. http://127.0.0.1:50050.
    #[arg(long, env = "NETMOE_COORDINATOR")]
    pub coordinator: Option<String>,
    /// Endpoint the coordinator should dial [default: http://<listen address>].
    #[arg(long, env = "NETMOE_ADVERTISE")]
    pub advertise: Option<String>,
    /// Heartbeat period in ms [default: 1000].
    #[arg(long, env = "NETMOE_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// Time in-flight streams get to finish after SIGINT/SIGTERM, in ms [default: 10000].
    #[arg(long, env = "NETMOE_GRACE_MS")]
    pub grace_ms: Option<u64>,
    /// Tokens generated at start-up to measure speed; 0 skips [default: 16].
    #[arg(long, env = "NETMOE_WARMUP_TOKENS")]
    pub warmup_tokens: Option<u32>,
    /// Cache directory for models [default: ~/.cache/netmoe].
    #[arg(long, env = "NETMOE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// QUIC endpoint (data plane and link probes): "auto" (UDP, the gRPC
    /// address and port, or a free port if taken), "off", or an address
    /// [default: auto].
    #[arg(long, env = "NETMOE_QUIC")]
    pub quic: Option<String>,
    /// PEM certificate chain of the QUIC endpoint; with --tls-key. Without
    /// both, the node makes a self-signed certificate at start (dev mode)
    /// and advertises its SHA-256 for the coordinator to pin.
    #[arg(long, env = "NETMOE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the QUIC endpoint; with --tls-cert.
    #[arg(long, env = "NETMOE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Channel emulation: pace every outgoing data-plane byte (gRPC and
    /// QUIC) to B·log2(1+SNR) of the current simulated SNR, B this many Hz;
    /// 0 turns it off [default: 0].
    #[arg(long, env = "NETMOE_EMULATE_BANDWIDTH_HZ")]
    pub emulate_bandwidth_hz: Option<f64>,
    /// Serve Prometheus metrics at http://ADDR/metrics [default: off].
    #[arg(long, env = "NETMOE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// The node's TLS directory (ca.pem, node.pem, node.key), written by
    /// `edge-node join` or by --join-token. Every link is then mutual TLS
    /// and the node id is the one in its certificate.
    #[arg(long, env = "NETMOE_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,
    /// Join the cluster first when the TLS directory holds no certificate
    /// yet (a one-time token from `coordinator token create`).
    #[arg(long, env = "NETMOE_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,
    /// Shape this network interface with `tc netem` from the simulated
    /// SNR (rate B·log2(1+SNR), re-shaped at each heartbeat's draw); needs
    /// CAP_NET_ADMIN [default: off].
    #[arg(long, env = "NETMOE_SHAPE_INTERFACE")]
    pub shape_interface: Option<String>,
    /// Bandwidth B of the shaped link, Hz [default: 10000, the cost model's].
    #[arg(long, env = "NETMOE_SHAPE_BANDWIDTH_HZ")]
    pub shape_bandwidth_hz: Option<f64>,
    /// One-way delay the shaped link adds, ms [default: 5].
    #[arg(long, env = "NETMOE_SHAPE_DELAY_MS")]
    pub shape_delay_ms: Option<f64>,
    /// Jitter of that delay, ms [default: 1].
    #[arg(long, env = "NETMOE_SHAPE_JITTER_MS")]
    pub shape_jitter_ms: Option<f64>,
    /// Random loss of the shaped link, percent [default: 0].
    #[arg(long, env = "NETMOE_SHAPE_LOSS_PERCENT")]
    pub shape_loss_percent: Option<f64>,
    /// Directory of llama.cpp's backend modules (libggml-cpu-*.so), of which
    /// the best one for this CPU is loaded [default: the binary's own
    /// directory when it holds them, else the build's].
    #[cfg(feature = "dynamic-backends")]
    #[arg(long, env = "NETMOE_BACKENDS_DIR")]
    pub backends_dir: Option<PathBuf>,
    /// Serve plaintext gRPC to anyone and register without a certificate
    /// (a lab on a network you own; a warning is logged at start).
    #[arg(long, env = "NETMOE_INSECURE")]
    pub insecure: bool,
}

/// The settings file: the same keys as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    node_id: Option<String>,
    model: Option<String>,
    profile: Option<PathBuf>,
    threads: Option<u32>,
    slots: Option<u32>,
    queue_depth: Option<u32>,
    ctx_per_slot: Option<u32>,
    batch_tokens: Option<u32>,
    max_tokens_limit: Option<u32>,
    gpu_layers: Option<u32>,
    snr: Option<String>,
    seed: Option<u64>,
    coordinator: Option<String>,
    advertise: Option<String>,
    heartbeat_ms: Option<u64>,
    grace_ms: Option<u64>,
    warmup_tokens: Option<u32>,
    cache_dir: Option<PathBuf>,
    quic: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    emulate_bandwidth_hz: Option<f64>,
    metrics_listen: Option<SocketAddr>,
    tls_dir: Option<PathBuf>,
    #[cfg(feature = "dynamic-backends")]
    backends_dir: Option<PathBuf>,
    insecure: Option<bool>,
}

/// Keys that are flags or variables only, never read from the file: the
/// file's own path, the one-time join token, and the container-only link
/// shaping.
const FLAG_ONLY: &[&str] = &[
    "config",
    "join_token",
    "shape_interface",
    "shape_bandwidth_hz",
    "shape_delay_ms",
    "shape_jitter_ms",
    "shape_loss_percent",
];

/// Every `serve` setting with its doc, flag, variable and default, read
/// off the flags (`edge-node config --print-default`).
pub fn settings() -> Vec<netmoe_common::cli::SettingDoc> {
    use clap::CommandFactory;
    #[derive(clap::Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }
    netmoe_common::cli::settings(&Serve::command(), &[], FLAG_ONLY)
}

/// Where the QUIC endpoint listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuicListen {
    /// No QUIC endpoint.
    Off,
    /// UDP on the gRPC address and port, or a free port if that is taken.
    Auto,
    /// This address.
    At(SocketAddr),
}

impl std::str::FromStr for QuicListen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "off" => Ok(Self::Off),
            a => a
                .parse()
                .map(Self::At)
                .map_err(|_| format!("{a:?} is not auto, off or an address like 0.0.0.0:50051")),
        }
    }
}

/// Resolved node configuration.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// Explicit node id, if any.
    pub node_id: Option<String>,
    /// Model spec (path, URL or catalog name); None: the profile's model,
    /// else the default.
    pub model: Option<String>,
    /// Profile file, if any.
    pub profile: Option<PathBuf>,
    /// llama.cpp threads.
    pub threads: u32,
    /// Batched sequences.
    pub slots: u32,
    /// Waiting requests.
    pub queue_depth: u32,
    /// Per-sequence context.
    pub ctx_per_slot: u32,
    /// Tokens per decode call.
    pub batch_tokens: u32,
    /// GPU layers.
    pub gpu_layers: u32,
    /// Request limits.
    pub limits: Limits,
    /// Channel model.
    pub snr: SnrModel,
    /// Channel seed.
    pub seed: u64,
    /// Coordinator URL.
    pub coordinator: Option<String>,
    /// Advertised endpoint.
    pub advertise: Option<String>,
    /// Heartbeat period.
    pub heartbeat: Duration,
    /// Shutdown grace period.
    pub grace: Duration,
    /// Warm-up length.
    pub warmup_tokens: u32,
    /// Model cache.
    pub cache_dir: PathBuf,
    /// QUIC endpoint.
    pub quic: QuicListen,
    /// PEM certificate and key of the QUIC endpoint (None: self-signed).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Emulated channel bandwidth, Hz (0: no emulation).
    pub emulate_bandwidth_hz: f64,
    /// Where to serve `/metrics`, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// TLS directory of a secured node (None: `--insecure`).
    pub tls_dir: Option<PathBuf>,
    /// One-time token to join with when `tls_dir` holds no certificate.
    pub join_token: Option<String>,
    /// Kernel link shaping, when asked for.
    pub shape: Option<ShapeConfig>,
    /// Where llama.cpp's backend modules are (None: beside the binary, else
    /// the build's directory).
    #[cfg(feature = "dynamic-backends")]
    pub backends_dir: Option<PathBuf>,
}

/// `--shape-*` resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ShapeConfig {
    /// Interface.
    pub interface: String,
    /// B, Hz.
    pub bandwidth_hz: f64,
    /// Delay, ms.
    pub delay_ms: f64,
    /// Jitter, ms.
    pub jitter_ms: f64,
    /// Loss, percent.
    pub loss_percent: f64,
}

fn positive(key: &'static str, v: u32) -> Result<u32, ConfigError> {
    if v == 0 {
        return Err(ConfigError::Invalid {
            key,
            message: "must be at least 1".into(),
        });
    }
    Ok(v)
}

impl ServeArgs {
    /// Resolves flags over the file over the defaults.
    pub fn resolve(self) -> Result<NodeConfig, ConfigError> {
        let f = match &self.config {
            Some(p) => read_toml::<FileConfig>(p)?,
            None => FileConfig::default(),
        };
        let snr_spec = self.snr.or(f.snr).unwrap_or_else(|| DEFAULT_SNR.into());
        let snr = snr_spec
            .parse::<SnrModel>()
            .map_err(|e| ConfigError::Invalid {
                key: "snr",
                message: e.to_string(),
            })?;
        let threads = self
            .threads
            .or(f.threads)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
        let ctx_per_slot = positive(
            "ctx_per_slot",
            self.ctx_per_slot
                .or(f.ctx_per_slot)
                .unwrap_or(DEFAULT_CTX_PER_SLOT),
        )?;
        let max_tokens = positive(
            "max_tokens_limit",
            self.max_tokens_limit
                .or(f.max_tokens_limit)
                .unwrap_or(DEFAULT_MAX_TOKENS_LIMIT),
        )?;
        if max_tokens >= ctx_per_slot {
            return Err(ConfigError::Invalid {
                key: "max_tokens_limit",
                message: format!(
                    "{max_tokens} leaves no room for a prompt in ctx_per_slot {ctx_per_slot}"
                ),
            });
        }
        let quic = self
            .quic
            .or(f.quic)
            .unwrap_or_else(|| "auto".into())
            .parse::<QuicListen>()
            .map_err(|message| ConfigError::Invalid {
                key: "quic",
                message,
            })?;
        let tls = match (self.tls_cert.or(f.tls_cert), self.tls_key.or(f.tls_key)) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Invalid {
                    key: "tls_cert",
                    message: "tls_cert and tls_key go together".into(),
                });
            }
        };
        let emulate_bandwidth_hz = self
            .emulate_bandwidth_hz
            .or(f.emulate_bandwidth_hz)
            .unwrap_or(0.0);
        if !(emulate_bandwidth_hz.is_finite() && emulate_bandwidth_hz >= 0.0) {
            return Err(ConfigError::Invalid {
                key: "emulate_bandwidth_hz",
                message: format!(
                    "{emulate_bandwidth_hz} is not a bandwidth in Hz (0 turns emulation off)"
                ),
            });
        }
        let tls_dir = self.tls_dir.or(f.tls_dir);
        let insecure = self.insecure || f.insecure.unwrap_or(false);
        match (&tls_dir, insecure) {
            (Some(_), true) => {
                return Err(ConfigError::invalid(
                    "tls_dir",
                    "--tls-dir and --insecure exclude each other",
                ));
            }
            (None, false) => {
                return Err(ConfigError::invalid(
                    "tls_dir",
                    "refusing to serve without TLS: give --tls-dir DIR (with --join-token on first start) or --insecure",
                ));
            }
            _ => {}
        }
        if self.join_token.is_some() && tls_dir.is_none() {
            return Err(ConfigError::invalid(
                "join_token",
                "--join-token needs --tls-dir to keep the certificate in",
            ));
        }
        let shape = match self.shape_interface {
            None => None,
            Some(interface) => {
                let c = ShapeConfig {
                    interface,
                    bandwidth_hz: self
                        .shape_bandwidth_hz
                        .unwrap_or(netmoe_common::cost::DEFAULT_BANDWIDTH_HZ),
                    delay_ms: self.shape_delay_ms.unwrap_or(5.0),
                    jitter_ms: self.shape_jitter_ms.unwrap_or(1.0),
                    loss_percent: self.shape_loss_percent.unwrap_or(0.0),
                };
                let ok = c.bandwidth_hz.is_finite()
                    && c.bandwidth_hz > 0.0
                    && c.delay_ms >= 0.0
                    && c.jitter_ms >= 0.0
                    && (0.0..=100.0).contains(&c.loss_percent);
                if !ok {
                    return Err(ConfigError::invalid(
                        "shape_interface",
                        "shaping needs a positive bandwidth, non-negative delay and jitter, loss within 0-100%",
                    ));
                }
                Some(c)
            }
        };
        #[cfg(feature = "dynamic-backends")]
        let backends_dir = match self.backends_dir.or(f.backends_dir) {
            Some(d) if !crate::backends::has_cpu_backend(&d) => {
                return Err(ConfigError::Invalid {
                    key: "backends_dir",
                    message: format!("{} holds no libggml-cpu-*.so", d.display()),
                });
            }
            d => d,
        };
        Ok(NodeConfig {
            #[cfg(feature = "dynamic-backends")]
            backends_dir,
            quic,
            tls,
            emulate_bandwidth_hz,
            metrics_listen: self.metrics_listen.or(f.metrics_listen),
            shape,
            tls_dir,
            join_token: self.join_token,
            listen: self
                .listen
                .or(f.listen)
                .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default")),
            node_id: self.node_id.or(f.node_id),
            model: self.model.or(f.model),
            profile: self.profile.or(f.profile),
            threads: positive("threads", threads)?,
            slots: positive("slots", self.slots.or(f.slots).unwrap_or(DEFAULT_SLOTS))?,
            queue_depth: self
                .queue_depth
                .or(f.queue_depth)
                .unwrap_or(DEFAULT_QUEUE_DEPTH),
            ctx_per_slot,
            batch_tokens: positive(
                "batch_tokens",
                self.batch_tokens
                    .or(f.batch_tokens)
                    .unwrap_or(DEFAULT_BATCH_TOKENS),
            )?,
            gpu_layers: self.gpu_layers.or(f.gpu_layers).unwrap_or(0),
            limits: Limits {
                max_segment_bytes: DEFAULT_MAX_SEGMENT_BYTES,
                max_context_bytes: DEFAULT_MAX_CONTEXT_BYTES,
                max_tokens,
            },
            snr,
            seed: self.seed.or(f.seed).unwrap_or(DEFAULT_SEED),
            coordinator: self.coordinator.or(f.coordinator),
            advertise: self.advertise.or(f.advertise),
            heartbeat: Duration::from_millis(positive_ms(
                self.heartbeat_ms
                    .or(f.heartbeat_ms)
                    .unwrap_or(DEFAULT_HEARTBEAT_MS),
            )),
            grace: Duration::from_millis(self.grace_ms.or(f.grace_ms).unwrap_or(DEFAULT_GRACE_MS)),
            warmup_tokens: self
                .warmup_tokens
                .or(f.warmup_tokens)
                .unwrap_or(DEFAULT_WARMUP_TOKENS),
            cache_dir: self
                .cache_dir
                .or(f.cache_dir)
                .unwrap_or_else(netmoe_common::fetch::cache_dir),
        })
    }
}

fn positive_ms(ms: u64) -> u64 {
    ms.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printed_defaults_load_as_a_settings_file_and_change_nothing() {
        let settings = settings();
        for key in [
            "listen",
            "slots",
            "queue_depth",
            "join_token",
            "metrics_listen",
        ] {
            assert!(settings.iter().any(|s| s.key == key), "{key} not listed");
        }
        let text = netmoe_common::cli::render_defaults(&settings);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node.toml");
        std::fs::write(&file, &text).unwrap();
        let from_file = ServeArgs {
            insecure: true,
            config: Some(file),
            ..Default::default()
        }
        .resolve()
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
        let plain = ServeArgs {
            insecure: true,
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(format!("{from_file:?}"), format!("{plain:?}"), "{text}");
    }

    #[test]
    fn flags_override_file_override_defaults() {
        let dir = std::env::temp_dir().join(format!("netmoe-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("node.toml");
        std::fs::write(&file, "slots = 2\nsnr = \"fixed:7\"\nseed = 9\n").unwrap();
        let args = ServeArgs {
            insecure: true,
            config: Some(file.clone()),
            seed: Some(1),
            ..Default::default()
        };
        let c = args.resolve().unwrap();
        assert_eq!(c.slots, 2);
        assert_eq!(c.seed, 1);
        assert_eq!(c.snr, SnrModel::Fixed { db: 7.0 });
        assert_eq!(c.queue_depth, DEFAULT_QUEUE_DEPTH);

        std::fs::write(&file, "slotz = 2\n").unwrap();
        let err = ServeArgs {
            insecure: true,
            config: Some(file),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("slotz"), "{err}");
        let err = ServeArgs {
            insecure: true,
            snr: Some("gaussian:3".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("snr"), "{err}");
    }
}

/// Arbitrary settings files: a configuration or a named error.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_settings_file_resolves_or_errs(
            text in "([a-z_]{1,20} = (\"[ -~]{0,20}\"|-?[0-9]{1,12}|true|\\[\\]|\\{\\})\n){0,6}[ -~\n]{0,40}",
        ) {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("node.toml");
            std::fs::write(&file, &text).unwrap();
            let _ = ServeArgs {
                insecure: true,
                config: Some(file),
                ..Default::default()
            }
            .resolve();
        }
    }
}
