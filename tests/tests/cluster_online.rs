//! Online learning, live: a coordinator serving the shipped SAC policy with
//! `--learn-online true` updates it from the rewards of the requests it
//! routed, so the same request in the same state is scored differently
//! afterwards; the frozen policy scores it identically every time. And when
//! the node it prefers breaks in a way no feature shows (restarted under
//! the same name with a sampler that writes word salad), the online policy
//! moves the traffic away within a bounded number of requests while the
//! frozen one keeps sending it there.

use std::path::Path;

use netmoe_coordinator::cluster::NodeSpec;
use netmoe_proto::v1;
use netmoe_tests::{profiles_dir, start_cluster};

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

/// A one-segment prompt, answered short.
const SHORT_PROMPT: &str = "A knight rides out at dawn to face the dragon of the northern hills.";

/// Requests after the break within which the online policy must have left
/// the broken node (each moves its prior by [`ONLINE_PRIOR_WEIGHT`]).
///
/// [`ONLINE_PRIOR_WEIGHT`]: netmoe_coordinator::rl::policy::ONLINE_PRIOR_WEIGHT
const MOVE_WITHIN: usize = 6;

/// The expert that served the one segment of [`SHORT_PROMPT`], and its score.
async fn served(cluster: &netmoe_coordinator::cluster::Cluster) -> anyhow::Result<(String, f64)> {
    let r = cluster
        .client()
        .await?
        .ask(v1::AskRequest {
            prompt: SHORT_PROMPT.into(),
            max_tokens: Some(24),
            seed: Some(3),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(r.policy, "sac");
    anyhow::ensure!(r.segments.len() == 1, "one segment: {:?}", r.segments);
    let s = &r.segments[0];
    anyhow::ensure!(s.error.is_empty(), "segment failed: {}", s.error);
    Ok((s.expert.clone(), s.score))
}

/// `profile` with its sampler broken: temperature 5, top-k 1000, no top-p cut.
fn broken_profile(dir: &Path, profile: &str) -> anyhow::Result<std::path::PathBuf> {
    let text = std::fs::read_to_string(profiles_dir().join(format!("{profile}.toml")))?;
    let head = text.split("[sampling]").next().unwrap_or(&text);
    let path = dir.join(format!("{profile}-broken.toml"));
    std::fs::write(
        &path,
        format!(
            "{head}[sampling]\ntemperature = 5.0\ntop_k = 1000\ntop_p = 1.0\nrepeat_penalty = 1.0\n"
        ),
    )?;
    Ok(path)
}

#[tokio::test]
async fn an_online_policy_leaves_a_node_that_broke_unseen_and_a_frozen_one_stays()
-> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("netmoe-adapt-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let shipped =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../coordinator/data/rl/sac_policy.json");
    let shipped = shipped.display().to_string();
    for learn in ["false", "true"] {
        let mut cluster = start_cluster(
            Some(fixed_nodes()),
            &[
                "--policy-file",
                &shipped,
                "--learn-online",
                learn,
                "--local-candidate",
                "false",
            ],
        )
        .await?;
        let (first, healthy) = served(&cluster).await?;
        let i = fixed_nodes()
            .iter()
            .position(|n| n.profile == first)
            .ok_or_else(|| anyhow::anyhow!("served by {first}, not a node of the cluster"))?;
        let mut spec = fixed_nodes().remove(i);
        spec.profile = broken_profile(&dir, &first)?.display().to_string();
        cluster.replace_node(i, &spec).await?;
        let mut history = Vec::new();
        for _ in 0..MOVE_WITHIN + 2 {
            history.push(served(&cluster).await?);
        }
        eprintln!("learn-online {learn}: before {first} {healthy:.2}; after {history:?}");
        let on_broken: Vec<bool> = history.iter().map(|(e, _)| *e == first).collect();
        if learn == "true" {
            let left = on_broken.iter().position(|b| !b);
            assert!(
                left.is_some_and(|k| k < MOVE_WITHIN),
                "still on the broken {first} after {MOVE_WITHIN} requests: {history:?}"
            );
            assert!(
                !on_broken[MOVE_WITHIN..].iter().any(|b| *b),
                "came back to the broken {first}: {history:?}"
            );
        } else {
            assert!(
                on_broken.iter().all(|b| *b),
                "a frozen policy sees no change and keeps routing to {first}: {history:?}"
            );
            // The break is real: the broken node's passages score lower.
            let mean = history.iter().map(|(_, s)| s).sum::<f64>() / history.len() as f64;
            assert!(
                mean < healthy,
                "word salad should score below the healthy passage ({healthy:.2}): {history:?}"
            );
        }
        cluster.shutdown().await?;
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
