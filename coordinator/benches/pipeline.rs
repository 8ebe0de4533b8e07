//! End-to-end latency of the demo prompt on a real local cluster, split
//! into gate, route, dispatch (the slowest node), fusion and judge, with
//! the coordination overhead (total minus model work) as a share of the
//! total.
//!
//! `cargo build --release --bins && cargo bench -p netmoe-coordinator --bench pipeline [-- ROUNDS]`

use netmoe_coordinator::cluster::{Cluster, ClusterSpec, demo_nodes};
use netmoe_proto::v1;

const PROMPT: &str = "Write a story in which a young knight rides out to face a dragon, a robot scientist repairs a starship far from Earth, and a family of otters survives the first winter storm.";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let model = std::env::var_os("NETMOE_TEST_MODEL")
        .map(Into::into)
        .unwrap_or_else(|| {
            netmoe_common::fetch::cache_dir()
                .join("models")
                .join(netmoe_common::fetch::DEFAULT_MODEL_FILE)
        });
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let spec = ClusterSpec {
            model,
            coordinator_model: netmoe_coordinator::config::DEFAULT_COORDINATOR_MODEL.into(),
            nodes: demo_nodes(),
            node_threads: 1,
            coordinator_threads: 2,
            coordinator_args: Vec::new(),
            log: "error".into(),
            secure: true,
        };
        let cluster = Cluster::start(&spec).await?;
        let mut c = cluster.client().await?;
        println!("demo prompt, 3 edge experts + coordinator on loopback, policy cost, {rounds} rounds (+1 warm-up)");
        println!(
            "{:>5} | {:>7} {:>7} {:>8} {:>7} {:>7} | {:>7} {:>7} {:>9} {:>8}",
            "round", "gate s", "route s", "dispatch", "fusion", "judge", "total", "model", "overhead", "share %"
        );
        let mut shares = Vec::new();
        let mut totals = Vec::new();
        for round in 0..=rounds {
            let r = c
                .ask(v1::AskRequest {
                    prompt: PROMPT.into(),
                    policy: "cost".into(),
                    seed: Some(round as u64),
                    ..Default::default()
                })
                .await?
                .into_inner();
            let t = r.timings.unwrap_or_default();
            let share = 100.0 * t.overhead_s / t.total_s;
            if round == 0 {
                continue;
            }
            shares.push(share);
            totals.push(t.total_s);
            println!(
                "{round:>5} | {:>7.3} {:>7.4} {:>8.3} {:>7.3} {:>7.3} | {:>7.3} {:>7.3} {:>9.4} {:>8.3}",
                t.gate_s, t.route_s, t.dispatch_s, t.fusion_s, t.judge_s, t.total_s, t.model_s, t.overhead_s, share
            );
        }
        println!(
            "median total {:.3} s; median coordination overhead {:.3}% of total",
            median(totals),
            median(shares)
        );
        cluster.shutdown().await?;
        anyhow::Ok(())
    })
}
