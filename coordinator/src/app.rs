//! Assembling a coordinator from its configuration: load the model once,
//! then the local expert, analyzer, gate, judge, policies and pipeline on
//! top of it.

use std::collections::HashMap;
use std::sync::Arc;

use netmoe_common::channel::{SnrModel, SnrSampler};
use netmoe_common::fetch::{FetchOptions, resolve_model};
use netmoe_edge_node::engine::{
    DEFAULT_BATCH_TOKENS, DEFAULT_CTX_PER_SLOT, Engine, EngineConfig, LoadedModel,
};
use netmoe_edge_node::service::Limits;
use netmoe_edge_node::{ExpertProfile, NodeState};
use tokio::sync::Semaphore;

use crate::analyzer::Analyzer;
use crate::auth::Auth;
use crate::config::{CoordinatorConfig, GateEmbedderChoice, JudgeChoice};
use crate::dispatch::Dispatcher;
use crate::fusion::Fuser;
use crate::gate::{DEFAULT_GATE_TEMPERATURE, Embedder, Gate, MINILM_GATE_TEMPERATURE, MiniLm};
use crate::judge::{HeuristicJudge, Judge, LocalJudge, OpenAiJudge, QualityJudge};
use crate::links::Links;
use crate::pipeline::{Pipeline, PipelineConfig};
use crate::policy::{BASELINES, GateTopK, RoutingPolicy, baseline};
use crate::registry::Registry;
use netmoe_common::link::Trust;

/// Sequences the coordinator's own engine decodes together (local expert
/// and model fusion).
pub const LOCAL_SLOTS: u32 = 2;

/// Why a coordinator could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The model could not be found, fetched or validated.
    #[error(transparent)]
    Model(#[from] netmoe_common::fetch::FetchError),
    /// llama.cpp failed.
    #[error(transparent)]
    Engine(#[from] netmoe_edge_node::EngineError),
    /// The analyzer failed to start.
    #[error(transparent)]
    Analyzer(#[from] crate::analyzer::AnalyzerError),
    /// The trained policy could not be loaded.
    #[error(transparent)]
    Rl(#[from] crate::rl::RlError),
    /// The QUIC CA bundle is unusable.
    #[error(transparent)]
    Tls(#[from] netmoe_common::link::TlsError),
    /// The QUIC client endpoint could not start.
    #[error(transparent)]
    Link(#[from] netmoe_common::link::LinkError),
    /// The gate's embedding model failed to load.
    #[error(transparent)]
    MiniLm(#[from] crate::gate::MiniLmError),
    /// The local expert's prompt layout does not fit the model.
    #[error(transparent)]
    Prompt(#[from] netmoe_edge_node::prompt::PromptError),
    /// The state directory (CA, tokens, keys) is unusable.
    #[error("TLS state directory: {0}")]
    Pki(#[from] netmoe_common::pki::PkiError),
    /// The default policy is unknown.
    #[error("unknown default policy {0:?}")]
    Policy(String),
}

/// Loads the model and builds the analyzer (for tools that need only it).
pub fn load_analyzer(
    config: &CoordinatorConfig,
    progress: bool,
) -> Result<(LoadedModel, Analyzer), BuildError> {
    let opts = FetchOptions {
        progress,
        ..FetchOptions::default()
    };
    let path = resolve_model(&config.model, &config.cache_dir, &opts)?;
    let model = LoadedModel::load(&path, 0)?;
    let analyzer = Analyzer::start(model.model, config.threads)?;
    Ok((model, analyzer))
}

/// The gate a configuration asks for (blocking: may fetch and load the
/// embedding model).
pub fn gate(
    config: &CoordinatorConfig,
    analyzer: &Analyzer,
    progress: bool,
) -> Result<Gate, BuildError> {
    Ok(match config.gate_embedder {
        GateEmbedderChoice::MiniLm => Gate::new(
            Embedder::MiniLm(load_minilm(&config.cache_dir, progress)?),
            MINILM_GATE_TEMPERATURE,
        ),
        GateEmbedderChoice::Model => {
            Gate::new(Embedder::Model(analyzer.clone()), DEFAULT_GATE_TEMPERATURE)
        }
    })
}

/// Fetches (once) and loads all-MiniLM-L6-v2 from the cache.
pub fn load_minilm(cache: &std::path::Path, progress: bool) -> Result<MiniLm, BuildError> {
    let opts = FetchOptions {
        progress,
        ..FetchOptions::default()
    };
    let weights = netmoe_common::fetch::fetch_asset(
        &netmoe_common::fetch::catalog::ALL_MINILM_L6_V2,
        cache,
        &opts,
    )?;
    let dir = weights.parent().unwrap_or(cache);
    Ok(MiniLm::load(dir)?)
}

/// The judge a configuration asks for, behind the injection guard.
pub fn judge(choice: &JudgeChoice, analyzer: &Analyzer) -> Box<dyn Judge> {
    Box::new(crate::judge::guard::Guarded::new(unguarded(
        choice, analyzer,
    )))
}

/// The chosen judge without the injection guard.
fn unguarded(choice: &JudgeChoice, analyzer: &Analyzer) -> Box<dyn Judge> {
    match choice {
        JudgeChoice::Quality => Box::new(QualityJudge::new(analyzer.clone())),
        JudgeChoice::Heuristic => Box::new(HeuristicJudge::new(analyzer.clone())),
        JudgeChoice::Local => Box::new(LocalJudge::new(analyzer.clone())),
        JudgeChoice::OpenAi { url, key, model } => {
            Box::new(OpenAiJudge::new(url.clone(), key.clone(), model.clone()))
        }
    }
}

/// Builds the whole pipeline (blocking: loads the model).
pub fn build(config: &CoordinatorConfig, progress: bool) -> Result<Arc<Pipeline>, BuildError> {
    let (model, analyzer) = load_analyzer(config, progress)?;
    let engine = Engine::with_model(
        model,
        EngineConfig {
            model_path: model.file.path.clone(),
            threads: config.threads,
            slots: LOCAL_SLOTS,
            queue_depth: 8,
            ctx_per_slot: DEFAULT_CTX_PER_SLOT,
            batch_tokens: DEFAULT_BATCH_TOKENS,
            gpu_layers: 0,
        },
    )?;
    let local = Arc::new(NodeState::new(
        crate::policy::LOCAL_TARGET.into(),
        ExpertProfile::generic(),
        engine.clone(),
        // The local expert has no radio; its channel is never used.
        SnrSampler::new(SnrModel::Fixed { db: 0.0 }, 0),
        Limits::default(),
        None,
    )?);
    let auth = Arc::new(match &config.tls_dir {
        Some(dir) => Auth::open(dir)?,
        None => Auth::Insecure,
    });
    let registry = Arc::new(
        Registry::new(config.heartbeat, config.liveness)
            .with_tls(auth.tls().cloned())
            .with_quarantine_after(config.quarantine_after),
    );
    let mut policies: HashMap<String, Arc<dyn RoutingPolicy>> = HashMap::new();
    for name in BASELINES {
        policies.insert(
            (*name).to_owned(),
            Arc::from(baseline(name).expect("baseline exists")),
        );
    }
    let learner = match &config.policy_file {
        Some(path) => {
            let sac = Arc::new(crate::rl::load_policy(path)?);
            sac.set_frozen(!config.learn_online);
            policies.insert(sac.name().to_owned(), sac.clone());
            Some(sac)
        }
        None => None,
    };
    // Every policy also gated: `sac+gate` routes among the nodes of each
    // segment's most relevant experts.
    let gated: Vec<Arc<dyn RoutingPolicy>> = policies
        .values()
        .map(|p| -> Arc<dyn RoutingPolicy> {
            Arc::new(GateTopK::new(p.clone(), config.gate_top_k as usize))
        })
        .collect();
    for g in gated {
        policies.insert(g.name().to_owned(), g);
    }
    if !policies.contains_key(&config.policy) {
        return Err(BuildError::Policy(config.policy.clone()));
    }
    // A secured cluster verifies nodes' QUIC certificates against its CA
    // and presents the coordinator's own; else --quic-ca, else pinning.
    let roots = match auth.tls() {
        Some(tls) => Some(Trust::cluster(tls)?),
        None => config
            .quic_ca
            .as_deref()
            .map(Trust::roots_from_pem)
            .transpose()?,
    };
    let metrics = Arc::new(crate::metrics::Metrics::new().with_cost(config.cost));
    let links = Arc::new(Links::new(
        roots,
        config.probe_bytes,
        config.cost,
        metrics.clone(),
    )?);
    Ok(Arc::new(Pipeline {
        gate: gate(config, &analyzer, progress)?,
        dispatcher: Dispatcher::new(registry.clone(), Some(local.clone()), links.clone()),
        links,
        metrics,
        fuser: Fuser::new(config.fusion, Some(engine), analyzer.clone()),
        judge: judge(&config.judge, &analyzer),
        local: Some(local),
        registry,
        auth,
        policies,
        config: PipelineConfig {
            max_segments: config.max_segments,
            default_policy: config.policy.clone(),
            segment_deadline: config.segment_deadline,
            cost: config.cost,
            local_candidate: config.local_candidate,
            transport: config.transport,
        },
        limit: Semaphore::new(config.max_concurrent_asks),
        limit_size: config.max_concurrent_asks,
        recent: Default::default(),
        policy_file: config.policy_file.clone(),
        learner,
    }))
}
