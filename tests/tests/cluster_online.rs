//! Online learning, live: a coordinator serving the shipped SAC policy with
//! `--learn-online true` updates it from the rewards of the requests it
//! routed, so the same request in the same state is scored differently
//! afterwards; the frozen policy scores it identically every time.

use std::path::Path;

use netmoe_coordinator::cluster::NodeSpec;
use netmoe_proto::v1;
use netmoe_tests::start_cluster;

const PROMPT: &str =
    "Write a story in which a knight faces a dragon, and a robot repairs a starship.";

/// Fixed channels, so the routing state repeats exactly between requests.
fn fixed_nodes() -> Vec<NodeSpec> {
    [
        ("fantasy", "fixed:18"),
        ("scifi", "fixed:12"),
        ("nature", "fixed:6"),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (p, s))| NodeSpec {
        profile: p.into(),
        snr: s.into(),
        seed: i as u64,
        model: None,
        extra: Vec::new(),
    })
    .collect()
}

/// The shipped policy, copied with a replay batch of 2 so one request's
/// transitions are enough for an update.
fn small_batch_policy(dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../coordinator/data/rl");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(shipped.join("sac_policy.json"))?)?;
    json["sac"]["batch_size"] = 2.into();
    let weights = json["weights"].as_str().expect("weights file").to_owned();
    std::fs::copy(shipped.join(&weights), dir.join(&weights))?;
    let path = dir.join("sac_policy.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json)?)?;
    Ok(path)
}

/// Every candidate's policy value of every segment, for the same request.
async fn values(cluster: &netmoe_coordinator::cluster::Cluster) -> anyhow::Result<Vec<f64>> {
    let r = cluster
        .client()
        .await?
        .ask(v1::AskRequest {
            prompt: PROMPT.into(),
            max_tokens: Some(8),
            seed: Some(1),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(r.policy, "sac");
    assert!(!r.partial);
    let mut v = Vec::new();
    for s in &r.segments {
        let mut c = s.candidates.clone();
        c.sort_by(|a, b| a.target.cmp(&b.target));
        v.extend(c.iter().map(|c| c.value));
    }
    Ok(v)
}

#[tokio::test]
async fn a_learning_policy_changes_its_live_scores_and_a_frozen_one_does_not() -> anyhow::Result<()>
{
    let dir = std::env::temp_dir().join(format!("netmoe-online-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let policy = small_batch_policy(&dir)?;
    let policy = policy.display().to_string();

    for learn in ["false", "true"] {
        let cluster = start_cluster(
            Some(fixed_nodes()),
            &[
                "--policy-file",
                &policy,
                "--learn-online",
                learn,
                "--local-candidate",
                "false",
            ],
        )
        .await?;
        let first = values(&cluster).await?;
        let second = values(&cluster).await?;
        assert_eq!(first.len(), second.len());
        assert!(
            first.len() >= 6,
            "two segments, three candidates each: {first:?}"
        );
        if learn == "true" {
            assert_ne!(first, second, "the policy learned from the first request");
        } else {
            assert_eq!(
                first, second,
                "a frozen policy scores the same state the same"
            );
        }
        cluster.shutdown().await?;
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
