//! Bad requests get the right status and a clear message, and the node
//! keeps serving afterwards.

use futures::StreamExt;
use netmoe_proto::v1::{self, generate_event::Event};
use netmoe_tests::{edge_client, start_edge_node};
use tonic::Code;

fn req(segment: &str) -> v1::GenerateRequest {
    v1::GenerateRequest {
        segment: segment.into(),
        max_tokens: Some(8),
        ..Default::default()
    }
}

async fn expect_status(
    client: &mut v1::edge_node_client::EdgeNodeClient<tonic::transport::Channel>,
    r: v1::GenerateRequest,
    code: Code,
    needle: &str,
) {
    let err = client
        .generate(r)
        .await
        .expect_err("request must be refused");
    assert_eq!(err.code(), code, "{err:?}");
    assert!(
        err.message().contains(needle),
        "message {:?} lacks {needle:?}",
        err.message()
    );
}

async fn serves_normally(
    client: &mut v1::edge_node_client::EdgeNodeClient<tonic::transport::Channel>,
) -> anyhow::Result<()> {
    let mut s = client
        .generate(req("a quiet river at dawn"))
        .await?
        .into_inner();
    let mut done = false;
    while let Some(ev) = s.next().await {
        if let Some(Event::Final(f)) = ev?.event {
            assert!(f.generated_tokens >= 1);
            done = true;
        }
    }
    assert!(done, "normal request must complete");
    Ok(())
}

#[tokio::test]
async fn invalid_arguments_are_refused_and_the_node_keeps_serving() -> anyhow::Result<()> {
    let node = start_edge_node(&["--ctx-per-slot", "256", "--max-tokens-limit", "128"]).await?;
    let mut c = edge_client(&node).await?;

    expect_status(&mut c, req(""), Code::InvalidArgument, "segment is empty").await;
    expect_status(
        &mut c,
        req("   \n "),
        Code::InvalidArgument,
        "segment is empty",
    )
    .await;

    let mut r = req("a story");
    r.max_tokens = Some(0);
    expect_status(
        &mut c,
        r,
        Code::InvalidArgument,
        "max_tokens must be at least 1",
    )
    .await;

    let mut r = req("a story");
    r.max_tokens = Some(1_000_000);
    expect_status(
        &mut c,
        r,
        Code::InvalidArgument,
        "exceeds this node's limit of 128",
    )
    .await;

    let mut r = req("a story");
    r.sampling = Some(v1::SamplingParams {
        temperature: Some(-1.0),
        ..Default::default()
    });
    expect_status(&mut c, r, Code::InvalidArgument, "temperature").await;
    let mut r = req("a story");
    r.sampling = Some(v1::SamplingParams {
        top_p: Some(7.0),
        ..Default::default()
    });
    expect_status(&mut c, r, Code::InvalidArgument, "top_p").await;

    // Longer than the 256-token context of a sequence, within the byte limit
    // (the segment: the narrative layout does not carry the context).
    let r = req(&"The knight rode on through the long night. ".repeat(60));
    expect_status(
        &mut c,
        r,
        Code::InvalidArgument,
        "a sequence holds 256 tokens",
    )
    .await;

    // Beyond the byte limit.
    let r = req(&"x".repeat(9 * 1024));
    expect_status(&mut c, r, Code::InvalidArgument, "segment is 9216 bytes").await;

    let mut r = req("a story");
    r.deadline_ms = Some(0);
    expect_status(&mut c, r, Code::InvalidArgument, "deadline_ms").await;

    // History: over the turn limit, over the byte limit, a turn with no role.
    let t = |role: v1::TurnRole, text: &str| v1::Turn {
        role: role as i32,
        text: text.into(),
    };
    let mut r = req("a story");
    r.history = vec![t(v1::TurnRole::User, "hi"); 33];
    expect_status(&mut c, r, Code::InvalidArgument, "history has 33 turns").await;
    let mut r = req("a story");
    r.history = vec![t(v1::TurnRole::User, &"x".repeat(9 * 1024)); 2];
    expect_status(&mut c, r, Code::InvalidArgument, "history is 18432 bytes").await;
    let mut r = req("a story");
    r.history = vec![
        t(v1::TurnRole::User, "a knight"),
        t(v1::TurnRole::Unspecified, "no role"),
    ];
    expect_status(
        &mut c,
        r,
        Code::InvalidArgument,
        "history turn 1 has no role",
    )
    .await;

    serves_normally(&mut c).await
}

#[tokio::test]
async fn requests_beyond_slots_and_queue_get_resource_exhausted() -> anyhow::Result<()> {
    let node = start_edge_node(&["--slots", "1", "--queue-depth", "1"]).await?;
    let mut c = edge_client(&node).await?;
    let long = || v1::GenerateRequest {
        segment: "an endless tale".into(),
        max_tokens: Some(400),
        ignore_eos: true,
        ..Default::default()
    };
    // One decoding, one waiting: both accepted.
    let mut first = c.generate(long()).await?.into_inner();
    let second = c.generate(long()).await?.into_inner();
    // Wait until the first really decodes (a piece arrived).
    let ev = first.next().await.expect("first stream has events")?;
    assert!(matches!(ev.event, Some(Event::Piece(_))));

    let err = c.generate(long()).await.expect_err("third must be refused");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("at capacity"), "{}", err.message());

    // Dropping the two frees their places; the node then serves again.
    drop(first);
    drop(second);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let load = c.info(v1::InfoRequest {}).await?.into_inner().load.unwrap();
        if load.active == 0 && load.queued == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "slots never freed: {load:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    serves_normally(&mut c).await
}
