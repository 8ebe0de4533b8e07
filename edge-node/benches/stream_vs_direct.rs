//! Generation speed through the edge node's gRPC stream versus the same
//! llama.cpp decode loop called directly, same model, threads and length,
//! alternated in one run and reported as ratios.
//!
//! `cargo bench -p netmoe-edge-node --bench stream_vs_direct [-- ROUNDS TOKENS]`

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use netmoe_common::channel::{SnrModel, SnrSampler};
use netmoe_edge_node::engine::{self, Engine, EngineConfig, LoadedModel};
use netmoe_edge_node::sampling::{SamplingSpec, never_prose};
use netmoe_edge_node::service::{EdgeNodeService, Limits};
use netmoe_edge_node::{ExpertProfile, NodeState};
use netmoe_proto::v1::{self, edge_node_client::EdgeNodeClient, generate_event::Event};

const THREADS: u32 = 2;
const PROMPT: &str =
    "Here is a short story.\n\nThis part: a lighthouse keeper finds a message in a bottle\n\n";

/// Timing of one generation: total, and from first to last token.
struct Run {
    total: Duration,
    decode: Duration,
    tokens: u32,
}

/// The plain llama.cpp loop: one context, one sequence, prompt then tokens.
fn direct(model: &'static LlamaModel, tokens: u32, seed: u32) -> Run {
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(1024))
        .with_n_batch(512)
        .with_n_threads(THREADS as i32)
        .with_n_threads_batch(THREADS as i32);
    let mut ctx = model
        .new_context(engine::backend(), params)
        .expect("context");
    let mut sampler = SamplingSpec::default().build(model, seed, true, &never_prose(model));
    let start = Instant::now();
    let prompt = model.vocab().tokenize(PROMPT.as_bytes(), true, false);
    let mut batch = LlamaBatch::new(512, 1);
    let last = prompt.len() as i32 - 1;
    for (i, t) in prompt.iter().enumerate() {
        batch.add(*t, i as i32, &[0], i as i32 == last).unwrap();
    }
    ctx.decode(&mut batch).unwrap();
    let start_pos = prompt.len() as i32;
    let mut idx = batch.n_tokens() - 1;
    let mut first = None;
    let mut text = Vec::new();
    for pos in start_pos..start_pos + tokens as i32 {
        let tok = sampler.sample(&ctx, idx);
        first.get_or_insert_with(Instant::now);
        text.extend(model.vocab().token_to_piece(tok, false, None));
        batch.clear();
        batch.add(tok, pos, &[0], true).unwrap();
        ctx.decode(&mut batch).unwrap();
        idx = 0;
    }
    let end = Instant::now();
    std::hint::black_box(text);
    Run {
        total: end - start,
        decode: end - first.unwrap(),
        tokens,
    }
}

async fn through_node(
    client: &mut EdgeNodeClient<tonic::transport::Channel>,
    tokens: u32,
    seed: u32,
) -> Run {
    let start = Instant::now();
    let req = v1::GenerateRequest {
        segment: "a lighthouse keeper finds a message in a bottle".into(),
        max_tokens: Some(tokens),
        ignore_eos: true,
        sampling: Some(v1::SamplingParams {
            seed: Some(seed),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut s = client.generate(req).await.expect("generate").into_inner();
    let mut first = None;
    let mut n = 0;
    while let Some(ev) = s.next().await {
        match ev.expect("stream").event {
            Some(Event::Piece(_)) => {
                first.get_or_insert_with(Instant::now);
            }
            Some(Event::Final(f)) => n = f.generated_tokens,
            None => {}
        }
    }
    let end = Instant::now();
    Run {
        total: end - start,
        decode: end - first.unwrap(),
        tokens: n,
    }
}

fn tps(r: &Run) -> (f64, f64) {
    (
        f64::from(r.tokens) / r.total.as_secs_f64(),
        f64::from(r.tokens - 1) / r.decode.as_secs_f64(),
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let rounds: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(5);
    let tokens: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(128);
    let path = std::env::var_os("NETMOE_TEST_MODEL")
        .map(Into::into)
        .unwrap_or_else(|| {
            netmoe_common::fetch::cache_dir()
                .join("models")
                .join(netmoe_common::fetch::DEFAULT_MODEL_FILE)
        });
    let loaded = LoadedModel::load(&path, 0).expect("model loads");
    let engine = Engine::with_model(
        loaded,
        EngineConfig {
            model_path: path.clone(),
            threads: THREADS,
            slots: 4,
            queue_depth: 4,
            ctx_per_slot: 1024,
            batch_tokens: 512,
            gpu_layers: 0,
        },
    )
    .expect("engine");
    let state = Arc::new(
        NodeState::new(
            "bench".into(),
            ExpertProfile::generic(),
            engine,
            SnrSampler::new(SnrModel::Fixed { db: 10.0 }, 1),
            Limits::default(),
            None,
        )
        .expect("layout"),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut client = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let svc = v1::edge_node_server::EdgeNodeServer::new(EdgeNodeService::new(state.clone()));
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        EdgeNodeClient::connect(format!("http://{addr}"))
            .await
            .unwrap()
    });

    // Warm both paths once.
    direct(loaded.model, 16, 1);
    rt.block_on(through_node(&mut client, 16, 1));

    println!("generation of {tokens} tokens, {THREADS} threads, {rounds} alternating rounds");
    println!(
        "{:>5} | {:>14} {:>14} | {:>14} {:>14} | {:>7} {:>7}",
        "round", "direct e2e t/s", "node e2e t/s", "direct gen t/s", "node gen t/s", "e2e", "gen"
    );
    let (mut e2e, mut gen_) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let seed = 100 + r as u32;
        let d = direct(loaded.model, tokens, seed);
        let n = rt.block_on(through_node(&mut client, tokens, seed));
        let (de, dg) = tps(&d);
        let (ne, ng) = tps(&n);
        e2e.push(ne / de);
        gen_.push(ng / dg);
        println!(
            "{r:>5} | {de:>14.1} {ne:>14.1} | {dg:>14.1} {ng:>14.1} | {:>7.3} {:>7.3}",
            ne / de,
            ng / dg
        );
    }
    println!(
        "median ratio node/direct: end-to-end {:.3}, generation {:.3}",
        median(e2e),
        median(gen_)
    );
    state.engine.stop();
}
