//! Faults and bad input at the coordinator: a killed node is dropped and
//! the request is served by the rest (or retried on the next-best node
//! when the registry has not noticed yet); bad requests get clear errors
//! and the coordinator keeps serving.

use std::time::Duration;

use netmoe_proto::v1;
use netmoe_tests::start_cluster;
use tonic::Code;

const PROMPT: &str = "A brave knight fights a dragon at the castle gate, and a curious robot explores the red deserts of Mars.";

fn ask(policy: &str) -> v1::AskRequest {
    v1::AskRequest {
        prompt: PROMPT.into(),
        policy: policy.into(),
        max_tokens: Some(24),
        seed: Some(3),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_killed_node_is_dropped_and_the_rest_serve() -> anyhow::Result<()> {
    let mut cluster = start_cluster(None, &["--local-candidate", "false"]).await?;
    let mut c = cluster.client().await?;
    let killed = cluster.nodes[0].name.clone();
    cluster.nodes[0].kill().await?;
    let live = cluster.wait_for_live(2, Duration::from_secs(30)).await?;
    let live_ids: Vec<String> = live
        .iter()
        .map(|s| s.info.as_ref().unwrap().node_id.clone())
        .collect();
    assert!(
        live_ids.iter().all(|id| !id.starts_with("fantasy")),
        "{killed} still listed live: {live_ids:?}"
    );

    let r = c.ask(ask("relevance")).await?.into_inner();
    assert!(!r.partial);
    for s in &r.segments {
        assert!(
            live_ids.contains(&s.target),
            "routed to {} which is down",
            s.target
        );
        assert_eq!(s.attempts, 1);
    }
    cluster.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_node_dying_unnoticed_costs_one_retry_not_the_request() -> anyhow::Result<()> {
    // A long liveness timeout so the registry still believes the dead node.
    let mut cluster = start_cluster(
        None,
        &["--local-candidate", "false", "--liveness-ms", "600000"],
    )
    .await?;
    let mut c = cluster.client().await?;
    cluster.nodes[0].kill().await?; // the fantasy expert: the knight segment's first choice
    let r = c.ask(ask("relevance")).await?.into_inner();
    assert!(
        !r.partial,
        "{:?}",
        r.segments.iter().map(|s| &s.error).collect::<Vec<_>>()
    );
    let retried: Vec<_> = r.segments.iter().filter(|s| s.attempts == 2).collect();
    assert!(
        !retried.is_empty(),
        "the knight segment should have been retried: {:?}",
        r.segments
    );
    for s in retried {
        assert_ne!(
            s.candidates[0].target, s.target,
            "retry goes to the next-best node"
        );
        assert!(s.explanation.contains("retried"));
        assert!(!s.text.is_empty());
    }
    // The unreachable node is now dropped.
    let nodes = c
        .list_nodes(v1::ListNodesRequest {})
        .await?
        .into_inner()
        .nodes;
    assert_eq!(nodes.iter().filter(|n| n.live).count(), 2);
    cluster.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_the_coordinator_keeps_serving() -> anyhow::Result<()> {
    // A coordinator with no nodes at all.
    let cluster = start_cluster(Some(Vec::new()), &[]).await?;
    let mut c = cluster.client().await?;
    let check =
        |r: Result<tonic::Response<v1::AskResponse>, tonic::Status>, code: Code, needle: &str| {
            let e = r.expect_err("must be refused");
            assert_eq!(e.code(), code, "{e:?}");
            assert!(
                e.message().contains(needle),
                "{:?} lacks {needle:?}",
                e.message()
            );
        };
    let mut r = ask("cost");
    r.prompt = "   ".into();
    check(c.ask(r).await, Code::InvalidArgument, "prompt is empty");
    let mut r = ask("cost");
    r.prompt = "dragons ".repeat(1000);
    check(c.ask(r).await, Code::InvalidArgument, "the limit is 4096");
    for k in [0, 9] {
        let mut r = ask("cost");
        r.max_segments = Some(k);
        check(c.ask(r).await, Code::InvalidArgument, "out of range");
    }
    check(
        c.ask(ask("psychic")).await,
        Code::InvalidArgument,
        "unknown policy",
    );
    check(
        c.ask(ask("cost")).await,
        Code::Unavailable,
        "no live edge nodes",
    );

    // Still serving: the no-edge benchmark needs no nodes.
    let r = c.ask(ask("local")).await?.into_inner();
    assert!(!r.story.is_empty());
    assert!(
        r.segments
            .iter()
            .all(|s| s.target == "local" && s.sim_transfer_s == 0.0)
    );
    cluster.shutdown().await?;
    Ok(())
}
