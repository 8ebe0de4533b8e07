//! A real edge node streams a generation from the real model: pieces join
//! to the final text, counts agree, the SNR follows the configured model,
//! and health and reflection answer.

use futures::StreamExt;
use netmoe_proto::v1::{self, generate_event::Event};
use netmoe_tests::{edge_client, profiles_dir, start_edge_node};

/// Collects a stream into (pieces, final).
async fn collect(
    stream: &mut tonic::Streaming<v1::GenerateEvent>,
) -> anyhow::Result<(Vec<v1::GeneratePiece>, v1::GenerateFinal)> {
    let mut pieces = Vec::new();
    while let Some(ev) = stream.next().await {
        match ev?.event {
            Some(Event::Piece(p)) => pieces.push(p),
            Some(Event::Final(f)) => return Ok((pieces, f)),
            None => anyhow::bail!("empty event"),
        }
    }
    anyhow::bail!("stream ended without a final message")
}

#[tokio::test]
async fn streams_a_real_generation_with_consistent_accounting() -> anyhow::Result<()> {
    let profile = profiles_dir().join("fantasy.toml");
    let node = start_edge_node(&[
        "--profile",
        profile.to_str().unwrap(),
        "--snr",
        "fixed:12.5",
        "--node-id",
        "knight-node",
    ])
    .await?;
    let mut client = edge_client(&node).await?;

    let info = client.info(v1::InfoRequest {}).await?.into_inner();
    assert_eq!(info.node_id, "knight-node");
    assert_eq!(info.profile.as_ref().unwrap().name, "fantasy");
    let model = info.model.as_ref().unwrap();
    assert!(model.file_name.ends_with(".gguf"), "{model:?}");
    assert!(model.quantization.contains("Q4_K"), "{model:?}");
    assert_eq!(model.architecture, "gemma3");
    assert!(info.tokens_per_second > 0.0, "warm-up measured no speed");
    assert!(info.hardware.as_ref().unwrap().logical_cpus >= 1);

    let req = v1::GenerateRequest {
        request_id: "t-1".into(),
        segment: "a young knight meets a dragon in the mountains".into(),
        context: "Write a story about a knight and a dragon.".into(),
        max_tokens: Some(48),
        sampling: Some(v1::SamplingParams {
            seed: Some(7),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut stream = client.generate(req).await?.into_inner();
    let (pieces, fin) = collect(&mut stream).await?;

    let joined: String = pieces.iter().map(|p| p.text.as_str()).collect();
    assert_eq!(joined, fin.text, "pieces must join to the final text");
    assert!(!fin.text.trim().is_empty());
    assert_eq!(fin.request_id, "t-1");
    assert_eq!(fin.node_id, "knight-node");
    assert!(fin.generated_tokens >= 1 && fin.generated_tokens <= 48);
    assert_eq!(pieces.last().unwrap().tokens, fin.generated_tokens);
    assert!(pieces.windows(2).all(|w| w[0].tokens <= w[1].tokens));
    assert_eq!(fin.words as usize, fin.text.split_whitespace().count());
    assert!(fin.prompt_tokens > 10, "prompt includes the persona");
    let reason = v1::FinishReason::try_from(fin.finish_reason)?;
    assert!(matches!(
        reason,
        v1::FinishReason::Stop | v1::FinishReason::Length
    ));
    if reason == v1::FinishReason::Length {
        assert_eq!(fin.generated_tokens, 48);
    }
    assert!(fin.generation_seconds > 0.0 && fin.prompt_eval_seconds > 0.0);
    let snr = fin.snr.as_ref().unwrap();
    assert_eq!(snr.snr_db, 12.5, "fixed SNR comes back exactly");
    assert!(snr.model.contains("fixed"), "{snr:?}");
    // Bytes: at least the text twice (pieces + final) plus a frame per message.
    assert!(fin.bytes_sent as usize >= 2 * fin.text.len() + 5 * (pieces.len() + 1));

    // The same seed reproduces the same text.
    let again = v1::GenerateRequest {
        segment: "a young knight meets a dragon in the mountains".into(),
        context: "Write a story about a knight and a dragon.".into(),
        max_tokens: Some(48),
        sampling: Some(v1::SamplingParams {
            seed: Some(7),
            ..Default::default()
        }),
        ..Default::default()
    };
    let (_, fin2) = collect(&mut client.generate(again).await?.into_inner()).await?;
    assert_eq!(fin2.text, fin.text, "same seed, same text");

    // Idle again: the load the node reports (Info, heartbeats, routing)
    // drops to zero once its generations are done, not at its next request.
    let t = std::time::Instant::now();
    loop {
        let load = client
            .info(v1::InfoRequest {})
            .await?
            .into_inner()
            .load
            .unwrap_or_default();
        if load.active == 0 && load.queued == 0 {
            break;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(5),
            "an idle node still reports {load:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test]
async fn rayleigh_snr_draws_vary_and_health_and_reflection_answer() -> anyhow::Result<()> {
    let node = start_edge_node(&["--snr", "rayleigh:10", "--seed", "3"]).await?;
    let mut client = edge_client(&node).await?;
    let mut draws = Vec::new();
    for _ in 0..3 {
        let req = v1::GenerateRequest {
            segment: "a fox in the snow".into(),
            max_tokens: Some(4),
            ..Default::default()
        };
        let (_, fin) = collect(&mut client.generate(req).await?.into_inner()).await?;
        draws.push(fin.snr.unwrap());
    }
    assert!(
        draws.windows(2).all(|w| w[1].draw == w[0].draw + 1),
        "{draws:?}"
    );
    assert!(
        draws.windows(2).any(|w| w[0].snr_db != w[1].snr_db),
        "{draws:?}"
    );
    assert!(draws[0].model.contains("rayleigh"));

    let channel = tonic::transport::Channel::from_shared(node.endpoint())?
        .connect()
        .await?;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let resp = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "netmoe.v1.EdgeNode".into(),
        })
        .await?
        .into_inner();
    assert_eq!(
        resp.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    Ok(())
}
