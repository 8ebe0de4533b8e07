//! Cancellation frees a sequence promptly, a finished request frees its
//! slot before its final message; SIGTERM drains in-flight streams.

use std::time::{Duration, Instant};

use futures::StreamExt;
use netmoe_proto::v1::{self, generate_event::Event};
use netmoe_tests::{edge_client, start_edge_node};

#[tokio::test]
async fn dropping_a_stream_frees_its_slot_long_before_it_would_finish() -> anyhow::Result<()> {
    let node = start_edge_node(&[
        "--slots",
        "1",
        "--queue-depth",
        "0",
        "--max-tokens-limit",
        "500",
    ])
    .await?;
    let mut c = edge_client(&node).await?;
    let tps = c
        .info(v1::InfoRequest {})
        .await?
        .into_inner()
        .tokens_per_second;
    assert!(tps > 0.0);

    let mut s = c
        .generate(v1::GenerateRequest {
            segment: "a very long journey".into(),
            max_tokens: Some(500),
            ignore_eos: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    for _ in 0..3 {
        let ev = s.next().await.expect("events")?;
        assert!(matches!(ev.event, Some(Event::Piece(_))));
    }
    // The slot is taken: with no queue a second request is refused.
    let busy = c
        .generate(v1::GenerateRequest {
            segment: "x".into(),
            max_tokens: Some(4),
            ..Default::default()
        })
        .await
        .expect_err("slot is busy");
    assert_eq!(busy.code(), tonic::Code::ResourceExhausted);

    let dropped = Instant::now();
    drop(s);
    let full = Duration::from_secs_f64(500.0 / tps);
    loop {
        let load = c.info(v1::InfoRequest {}).await?.into_inner().load.unwrap();
        if load.active == 0 {
            break;
        }
        assert!(
            dropped.elapsed() < full / 2,
            "slot still busy {:?} after cancel; the whole generation takes ~{full:?}",
            dropped.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The freed slot serves a new request.
    let mut s = c
        .generate(v1::GenerateRequest {
            segment: "a short walk".into(),
            max_tokens: Some(4),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut finished = false;
    while let Some(ev) = s.next().await {
        finished |= matches!(ev?.event, Some(Event::Final(_)));
    }
    assert!(finished);
    Ok(())
}

/// A client that has read its final message finds the slot free: the
/// node releases a request's admission place before its last event, so
/// back-to-back requests on a one-slot, no-queue node are never refused.
#[tokio::test]
async fn the_slot_is_free_as_soon_as_the_final_message_arrives() -> anyhow::Result<()> {
    let node = start_edge_node(&["--slots", "1", "--queue-depth", "0"]).await?;
    let mut c = edge_client(&node).await?;
    for i in 0..12 {
        let mut s = c
            .generate(v1::GenerateRequest {
                segment: format!("step {i} of a short walk"),
                max_tokens: Some(2),
                ignore_eos: true,
                ..Default::default()
            })
            .await
            .map_err(|e| {
                anyhow::anyhow!("request {i} refused right after the last one ended: {e}")
            })?
            .into_inner();
        let mut finished = false;
        while let Some(ev) = s.next().await {
            finished |= matches!(ev?.event, Some(Event::Final(_)));
        }
        assert!(finished, "request {i} ended without its final message");
    }
    Ok(())
}

#[tokio::test]
async fn sigterm_lets_in_flight_streams_finish_then_exits_cleanly() -> anyhow::Result<()> {
    let mut node = start_edge_node(&["--grace-ms", "60000"]).await?;
    let mut c = edge_client(&node).await?;
    let mut s = c
        .generate(v1::GenerateRequest {
            segment: "the last story of the night".into(),
            max_tokens: Some(40),
            ignore_eos: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    let first = s.next().await.expect("events")?;
    assert!(matches!(first.event, Some(Event::Piece(_))));
    node.terminate()?;
    let mut fin = None;
    while let Some(ev) = s.next().await {
        if let Some(Event::Final(f)) = ev?.event {
            fin = Some(f);
        }
    }
    let fin = fin.expect("in-flight stream completes during the grace period");
    assert_eq!(fin.generated_tokens, 40);
    let status = node.wait(Duration::from_secs(60)).await?;
    assert!(status.success(), "{status:?}");
    Ok(())
}

#[tokio::test]
async fn sigterm_after_the_grace_period_cancels_with_unavailable() -> anyhow::Result<()> {
    let mut node = start_edge_node(&["--grace-ms", "200", "--max-tokens-limit", "500"]).await?;
    let mut c = edge_client(&node).await?;
    let mut s = c
        .generate(v1::GenerateRequest {
            segment: "a tale that never ends".into(),
            max_tokens: Some(500),
            ignore_eos: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    s.next().await.expect("events")?;
    node.terminate()?;
    let mut status = None;
    while let Some(ev) = s.next().await {
        if let Err(e) = ev {
            status = Some(e);
            break;
        }
    }
    let status = status.expect("stream is cut with a status");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("shutting down"));
    assert!(node.wait(Duration::from_secs(60)).await?.success());
    Ok(())
}
