//! What mutual TLS costs: the demo prompt on two identical local clusters
//! started side by side, one secured (mTLS on every gRPC and QUIC link,
//! API key) and one `--insecure`, asked in alternating rounds so both see
//! the same machine load; then fresh connections (TLS handshake + one
//! `ListNodes`) the same way. Prints each round and the medians as
//! secured / insecure ratios.
//!
//! `cargo build --release --bins && cargo bench -p netmoe-coordinator --bench security [-- ROUNDS]`

use std::time::Instant;

use netmoe_coordinator::cluster::{Cluster, ClusterSpec, demo_nodes};
use netmoe_proto::v1;

const PROMPT: &str = "Write a story in which a young knight rides out to face a dragon, a robot scientist repairs a starship far from Earth, and a family of otters survives the first winter storm.";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn spec(model: std::path::PathBuf, secure: bool) -> ClusterSpec {
    ClusterSpec {
        model,
        coordinator_model: netmoe_coordinator::config::DEFAULT_COORDINATOR_MODEL.into(),
        nodes: demo_nodes(),
        node_threads: 1,
        coordinator_threads: 1,
        coordinator_args: vec![
            "--transport".into(),
            "quic".into(),
            "--probe-interval-ms".into(),
            "0".into(),
        ],
        log: "error".into(),
        secure,
    }
}

fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .and_then(|a| a.parse().ok())
        .unwrap_or(6);
    let model: std::path::PathBuf = std::env::var_os("NETMOE_TEST_MODEL")
        .map(Into::into)
        .unwrap_or_else(|| {
            netmoe_common::fetch::cache_dir()
                .join("models")
                .join(netmoe_common::fetch::DEFAULT_MODEL_FILE)
        });
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let secured = Cluster::start(&spec(model.clone(), true)).await?;
        let plain = Cluster::start(&spec(model, false)).await?;
        let mut cs = secured.client().await?;
        let mut cp = plain.client().await?;
        println!("demo prompt (3 edge experts + coordinator each, QUIC data plane, policy relevance, 32 tokens), {rounds} rounds each (+1 warm-up), alternating");
        println!("{:>5} | {:>10} {:>10} | {:>7}", "round", "mTLS s", "plain s", "ratio");
        let (mut ts, mut tp) = (Vec::new(), Vec::new());
        for round in 0..=rounds {
            let req = v1::AskRequest {
                prompt: PROMPT.into(),
                policy: "relevance".into(),
                max_tokens: Some(32),
                seed: Some(round as u64),
                ..Default::default()
            };
            // Alternate which goes first, so neither always follows the other.
            let one = async |c: &mut netmoe_coordinator::client::Client| -> anyhow::Result<f64> {
                let t = Instant::now();
                c.ask(req.clone()).await?;
                Ok(t.elapsed().as_secs_f64())
            };
            let (s, p) = if round % 2 == 0 {
                let s = one(&mut cs).await?;
                (s, one(&mut cp).await?)
            } else {
                let p = one(&mut cp).await?;
                (one(&mut cs).await?, p)
            };
            if round == 0 {
                continue;
            }
            println!("{round:>5} | {s:>10.3} {p:>10.3} | {:>7.3}", s / p);
            ts.push(s);
            tp.push(p);
        }
        let (ms, mp) = (median(ts), median(tp));
        println!("median request latency: mTLS {ms:.3} s, plain {mp:.3} s, ratio {:.3}", ms / mp);

        let reps = 20;
        let (mut hs, mut hp) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            for (cluster, out) in [(&secured, &mut hs), (&plain, &mut hp)] {
                let t = Instant::now();
                let mut c = cluster.client().await?;
                c.list_nodes(v1::ListNodesRequest {}).await?;
                out.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        let (ms, mp) = (median(hs), median(hp));
        println!(
            "fresh connection + ListNodes, {reps} each: mTLS {ms:.2} ms, plain {mp:.2} ms, ratio {:.2}",
            ms / mp
        );
        secured.shutdown().await?;
        plain.shutdown().await?;
        anyhow::Ok(())
    })
}
