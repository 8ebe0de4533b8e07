//! Assembling a node: resolve the model, load the profile, start the engine,
//! warm it up, and describe how to register.

use std::net::SocketAddr;
use std::sync::Arc;

use netmoe_common::channel::SnrSampler;
use netmoe_common::fetch::{FetchOptions, resolve_model};

use netmoe_common::link::Pacer;

use crate::config::{NodeConfig, QuicListen};
use crate::engine::{Engine, EngineConfig, EngineEvent, GenerateJob};
use crate::link::LinkServeError;
use crate::profile::ExpertProfile;
use crate::server::Registration;
use crate::service::NodeState;

/// Why a node could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The expert profile is unreadable or invalid.
    #[error(transparent)]
    Profile(#[from] crate::profile::ProfileError),
    /// The model could not be found, fetched or validated.
    #[error(transparent)]
    Model(#[from] netmoe_common::fetch::FetchError),
    /// llama.cpp could not load the model or create the context.
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    /// The profile's layout does not fit the model.
    #[error(transparent)]
    Prompt(#[from] crate::prompt::PromptError),
}

/// Builds the node state (blocking: loads the model; call from
/// `spawn_blocking` or before serving). `progress` shows fetch progress.
pub fn build(
    config: &NodeConfig,
    listen: SocketAddr,
    progress: bool,
) -> Result<Arc<NodeState>, BuildError> {
    let profile = match &config.profile {
        Some(p) => ExpertProfile::resolve(p)?,
        None => ExpertProfile::generic(),
    };
    let opts = FetchOptions {
        progress,
        ..FetchOptions::default()
    };
    // The flag wins, then the model the profile was written for, then the default.
    let spec = config
        .model
        .clone()
        .or_else(|| profile.model.clone())
        .unwrap_or_else(|| crate::config::DEFAULT_MODEL.to_owned());
    let model_path = resolve_model(&spec, &config.cache_dir, &opts)?;
    #[cfg(feature = "dynamic-backends")]
    if let Some(dir) = &config.backends_dir {
        crate::backends::set_dir(dir.clone());
    }
    let engine = Engine::start(EngineConfig {
        model_path,
        threads: config.threads,
        slots: config.slots,
        queue_depth: config.queue_depth,
        ctx_per_slot: config.ctx_per_slot,
        batch_tokens: config.batch_tokens,
        gpu_layers: config.gpu_layers,
    })?;
    warm_up(&engine, config.warmup_tokens);
    let node_id = config
        .node_id
        .clone()
        .unwrap_or_else(|| default_node_id(&profile.name, listen.port()));
    let state = Arc::new(NodeState::new(
        node_id,
        profile,
        engine,
        SnrSampler::new(config.snr.clone(), config.seed),
        config.limits,
        (config.emulate_bandwidth_hz > 0.0).then(|| Pacer::new(config.emulate_bandwidth_hz, 0.0)),
    )?);
    if state.pacer.is_some() {
        // Start the emulated radio at a real draw of the channel.
        state.draw_snr();
    }
    Ok(state)
}

/// Binds the QUIC endpoint as configured and records what `Info` and
/// registration advertise. `Auto` takes UDP on the gRPC address and port,
/// or a free port when that one is taken.
pub fn bind_quic(
    config: &NodeConfig,
    listen: SocketAddr,
    state: &NodeState,
    tls: Option<&netmoe_common::pki::TlsDir>,
) -> Result<Option<quinn::Endpoint>, LinkServeError> {
    let addr = match config.quic {
        QuicListen::Off => return Ok(None),
        QuicListen::At(a) => a,
        QuicListen::Auto => listen,
    };
    let identity = crate::link::identity(config, listen, tls)?;
    let (endpoint, info) = match crate::link::bind(addr, &identity) {
        Err(e) if config.quic == QuicListen::Auto => {
            tracing::info!(error = %e, "UDP port of the gRPC listener is taken; QUIC on a free port");
            crate::link::bind(SocketAddr::new(addr.ip(), 0), &identity)?
        }
        other => other?,
    };
    if identity.self_signed {
        tracing::warn!(
            sha256 = %info.cert_sha256,
            "QUIC dev mode: self-signed certificate; the coordinator pins this fingerprint (use --tls-cert/--tls-key in production)"
        );
    }
    tracing::info!(port = info.quic_port, "QUIC endpoint bound");
    let _ = state.link.info.set(info);
    Ok(Some(endpoint))
}

/// `<profile>-<port>`, made a valid certificate name (lowercase, a-z0-9-).
pub fn default_node_id(profile: &str, port: u16) -> String {
    let base: String = profile
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let base = base.trim_matches('-');
    let base = if base.is_empty() { "node" } else { base };
    format!("{}-{port}", &base[..base.len().min(50)])
}

/// The node's TLS identity: loaded from its directory, or made by joining
/// with the token when the directory holds none yet. The certificate's id
/// must be the id the node serves under.
pub async fn tls_identity(
    config: &NodeConfig,
    node_id: &str,
) -> anyhow::Result<Option<netmoe_common::pki::TlsDir>> {
    use netmoe_common::pki::{Role, TlsDir};
    let Some(dir) = &config.tls_dir else {
        return Ok(None);
    };
    let tls = if TlsDir::exists(dir, Role::Node) {
        TlsDir::load(dir, Role::Node)?
    } else {
        let token = config.join_token.as_deref().ok_or_else(|| {
            anyhow::anyhow!(
                "{} holds no node certificate: give --join-token (from `coordinator token create`) or run `edge-node join`",
                dir.display()
            )
        })?;
        let coordinator = config
            .coordinator
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("--join-token needs --coordinator"))?;
        crate::join::join(coordinator, token, node_id, dir).await?
    };
    anyhow::ensure!(
        tls.me.name == node_id,
        "the certificate in {} is for node {:?}, but this node serves as {node_id:?} (drop --node-id, or join again)",
        dir.display(),
        tls.me.name
    );
    Ok(Some(tls))
}

/// How the node registers, if a coordinator is configured.
pub fn registration(config: &NodeConfig, listen: SocketAddr) -> Option<Registration> {
    let coordinator = config.coordinator.clone()?;
    Some(Registration {
        coordinator,
        endpoint: config.advertise.clone().unwrap_or_else(|| {
            let scheme = if config.tls_dir.is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{listen}")
        }),
        period: config.heartbeat,
    })
}

/// Generates a few tokens so the first request does not pay for cold
/// caches, and so `Info` reports a measured speed from the start.
fn warm_up(engine: &Engine, tokens: u32) {
    if tokens == 0 {
        return;
    }
    let job = GenerateJob {
        request_id: "warm-up".into(),
        prompt: crate::prompt::Prompt::plain("Once upon a time"),
        max_tokens: tokens,
        sampling: Default::default(),
        deadline: None,
        ignore_eos: true,
        stops: Vec::new(),
        history_turns: 0,
    };
    let Ok(mut generation) = engine.submit(job) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread().build();
    if let Ok(rt) = rt {
        rt.block_on(async {
            while let Some(ev) = generation.next().await {
                if matches!(ev, EngineEvent::Done(_) | EngineEvent::Failed(_)) {
                    break;
                }
            }
        });
    }
}
