//! A real local cluster (coordinator + three edge experts, separate
//! processes, the real model) answers a multi-topic prompt: segments are
//! split, routed by relevance to different experts, fused, judged, and the
//! cost table adds up under the one cost model.

use netmoe_common::cost::CostModel;
use netmoe_proto::v1;
use netmoe_tests::start_cluster;

const PROMPT: &str = "Write a story in which a young knight rides out to face a dragon in its mountain cave, \
    a robot scientist repairs a starship engine far from Earth, \
    and a family of otters survives the first winter storm on the river.";

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[tokio::test]
async fn a_multi_topic_prompt_is_split_routed_fused_judged_and_accounted() -> anyhow::Result<()> {
    let cluster = start_cluster(None, &["--local-candidate", "false"]).await?;
    let mut c = cluster.client().await?;
    let nodes = c
        .list_nodes(v1::ListNodesRequest {})
        .await?
        .into_inner()
        .nodes;
    assert_eq!(nodes.len(), 3);

    let r = c
        .ask(v1::AskRequest {
            prompt: PROMPT.into(),
            policy: "relevance".into(),
            max_tokens: Some(48),
            seed: Some(11),
            ..Default::default()
        })
        .await?
        .into_inner();

    assert_eq!(r.policy, "relevance");
    assert!(
        r.segments.len() > 1,
        "multi-topic prompt must split: {:?}",
        r.segments
    );
    assert!(
        !r.partial,
        "{:?}",
        r.segments.iter().map(|s| &s.error).collect::<Vec<_>>()
    );
    assert!(!r.story.trim().is_empty());
    assert!((0.0..=10.0).contains(&r.score));
    assert!(
        r.fusion_coverage > 0.9,
        "stitch fusion keeps every passage: {}",
        r.fusion_coverage
    );

    // Each segment went to its most relevant expert, and they differ.
    for s in &r.segments {
        let best = s
            .candidates
            .iter()
            .max_by(|a, b| a.relevance.total_cmp(&b.relevance))
            .unwrap();
        assert_eq!(s.target, best.target, "segment {:?}", s.segment);
        assert_eq!(
            s.candidates[0].target, s.target,
            "first candidate is the chosen one"
        );
        assert!(!s.explanation.is_empty());
        assert!(s.story_part_in(&r.story));
    }
    let mut targets: Vec<&str> = r.segments.iter().map(|s| s.target.as_str()).collect();
    targets.sort();
    targets.dedup();
    assert!(
        targets.len() > 1,
        "relevance sent every segment to one node: {targets:?}"
    );

    // The cost table adds up, with the one cost model.
    let cost = CostModel::default();
    let t = r.totals.unwrap();
    let sum = |f: fn(&v1::SegmentReport) -> f64| r.segments.iter().map(f).sum::<f64>();
    assert!(close(t.compute_cost, sum(|s| s.compute_cost)));
    assert!(close(t.sim_transfer_s, sum(|s| s.sim_transfer_s)));
    assert!(close(t.sim_energy_j, sum(|s| s.sim_energy_j)));
    assert!(close(t.reward, sum(|s| s.reward)));
    assert_eq!(t.words, r.segments.iter().map(|s| s.words).sum::<u32>());
    assert_eq!(
        t.measured_bytes,
        r.segments
            .iter()
            .map(|s| s.measured_bytes_up + s.measured_bytes_down)
            .sum::<u64>()
    );
    for s in &r.segments {
        assert_eq!(s.words as usize, s.text.split_whitespace().count());
        assert_eq!(
            s.payload_bits,
            8 * (s.measured_bytes_up + s.measured_bytes_down)
        );
        let rate = cost.shannon_rate_bps(s.snr_db);
        assert!(close(s.rate_bps, rate));
        assert!(
            close(s.sim_transfer_s, s.payload_bits as f64 / rate),
            "bits / rate"
        );
        assert!(close(s.sim_energy_j, cost.tx_power_w * s.sim_transfer_s));
        assert!(close(
            s.compute_cost,
            cost.compute_per_word * f64::from(s.words)
        ));
        assert!(close(
            s.reward,
            s.score
                - cost.lambda_compute * s.compute_cost
                - cost.lambda_transfer * s.sim_transfer_s
        ));
        assert!(s.latency_s >= s.model_seconds);
        // The node's own count of the bytes it sent matches what arrived.
        assert!(s.measured_bytes_down > 2 * s.text.len() as u64);
        if s.expert == "fantasy" {
            assert_eq!(
                s.snr_db, 18.0,
                "the fantasy node's channel is fixed at 18 dB"
            );
        }
    }
    let tm = r.timings.unwrap();
    assert!(tm.total_s >= tm.dispatch_s && tm.model_s > 0.0);

    // Gated: the SNR policy alone goes by channel; behind the gate each
    // segment stays on its most relevant expert unless that expert's
    // channel does not allow it, and the answer says which.
    let g = c
        .ask(v1::AskRequest {
            prompt: PROMPT.into(),
            policy: "snr+gate".into(),
            max_tokens: Some(24),
            seed: Some(11),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(g.policy, "snr+gate");
    for s in &g.segments {
        let best = s
            .candidates
            .iter()
            .max_by(|a, b| a.relevance.total_cmp(&b.relevance))
            .unwrap();
        assert!(s.explanation.starts_with("gate top-1"), "{}", s.explanation);
        assert!(
            s.target == best.target || s.explanation.contains("does not allow"),
            "segment {:?} on {} ({}), most relevant {}",
            s.segment,
            s.target,
            s.explanation,
            best.target
        );
    }

    cluster.shutdown().await?;
    Ok(())
}

/// Segment text appears in the stitched story.
trait StoryPart {
    fn story_part_in(&self, story: &str) -> bool;
}

impl StoryPart for v1::SegmentReport {
    fn story_part_in(&self, story: &str) -> bool {
        let first_words: String = self
            .text
            .split_whitespace()
            .take(5)
            .collect::<Vec<_>>()
            .join(" ");
        first_words.is_empty()
            || story
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .contains(&first_words)
    }
}
