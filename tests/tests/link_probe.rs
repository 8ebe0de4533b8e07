//! The QUIC link of a real edge node on loopback: probes report RTT,
//! goodput both ways, loss and congestion window with consistent byte
//! counts; the data plane carries a generation with the gRPC semantics
//! (same text and byte count, deadline, errors with their status, cancel
//! on drop); certificate pinning refuses the wrong certificate.

use std::time::{Duration, Instant};

use netmoe_common::cost::CostModel;
use netmoe_common::link::{LinkClient, LinkError, ProbeSettings, Trust, probe};
use netmoe_proto::v1::{self, generate_event::Event};
use netmoe_tests::{edge_client, link_to, start_edge_node};
use prost::Message;

#[tokio::test]
async fn loopback_probe_is_plausible_and_its_byte_counts_agree() -> anyhow::Result<()> {
    let node = start_edge_node(&["--snr", "fixed:30"]).await?;
    let (_client, conn, info) = link_to(&node).await?;
    let link = info.link.unwrap_or_default();
    assert_eq!(link.cert_sha256.len(), 64);
    assert!(link.self_signed);
    assert_eq!(link.emulated_bandwidth_hz, 0.0);

    let settings = ProbeSettings {
        bytes: 1 << 20,
        cost: CostModel::default(),
    };
    let p = probe(&conn, &info.node_id, &settings).await;
    assert!(p.ok, "{}", p.error);
    // Byte accounting: what one side counted sending, the other counted
    // receiving; the wire carried at least that plus QUIC's overhead.
    assert_eq!(p.down_framed_bytes_sent, p.down_framed_bytes_received);
    assert_eq!(p.up_framed_bytes_sent, p.up_framed_bytes_received);
    assert!(p.down_framed_bytes_sent > p.probe_bytes);
    assert!(p.up_framed_bytes_sent > p.probe_bytes);
    assert!(p.wire_bytes_rx > p.down_framed_bytes_received, "{p:?}");
    assert!(p.wire_bytes_tx > p.up_framed_bytes_sent, "{p:?}");
    assert!(p.packets_sent > 0 && p.packets_lost <= p.packets_sent);
    assert!((0.0..=1.0).contains(&p.loss_rate));
    assert!(p.cwnd_bytes > 0);
    // Plausible loopback numbers: sub-10 ms round trips, and goodput far
    // above the Shannon rate of even a 30 dB channel at the default 10 kHz.
    assert!(p.echo_rtt_ms > 0.0 && p.echo_rtt_ms < 10.0, "{p:?}");
    assert!(p.path_rtt_ms > 0.0 && p.path_rtt_ms < 10.0, "{p:?}");
    assert!((p.snr_db - 30.0).abs() < 1e-9);
    assert!(p.shannon_rate_bps > 90_000.0 && p.shannon_rate_bps < 110_000.0);
    assert!(p.down_goodput_bps > 100.0 * p.shannon_rate_bps, "{p:?}");
    assert!(p.up_goodput_bps > 100.0 * p.shannon_rate_bps, "{p:?}");
    assert_eq!(p.down_paced_s, 0.0, "no emulation, no pacing");
    Ok(())
}

#[tokio::test]
async fn quic_generation_matches_grpc_and_keeps_its_semantics() -> anyhow::Result<()> {
    let node = start_edge_node(&["--snr", "fixed:12.5"]).await?;
    let (_client, conn, _) = link_to(&node).await?;
    let req = v1::GenerateRequest {
        segment: "a lighthouse keeper finds a message in a bottle".into(),
        max_tokens: Some(24),
        sampling: Some(v1::SamplingParams {
            seed: Some(5),
            ..Default::default()
        }),
        ..Default::default()
    };

    // Over QUIC: pieces join to the final text, and the node's byte count
    // equals what arrived.
    let mut call = conn.generate(req.clone()).await?;
    let mut text = String::new();
    let mut quic_piece_bytes = 0;
    let fin = loop {
        let ev = call.next().await.expect("stream ends with a final")?;
        match ev {
            v1::GenerateEvent {
                event: Some(Event::Piece(ref p)),
            } => {
                text.push_str(&p.text);
                quic_piece_bytes += ev.encoded_len() + 5;
            }
            v1::GenerateEvent {
                event: Some(Event::Final(f)),
            } => break f,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(call.next().await.is_none(), "nothing after the final");
    assert_eq!(text, fin.text);
    assert_eq!(fin.bytes_sent, call.bytes_down);
    assert!(call.bytes_up > 0);
    let wire = call.wire();
    assert!(
        wire.down > call.bytes_down && wire.up > call.bytes_up,
        "{wire:?}"
    );
    assert_eq!(fin.snr.as_ref().map(|s| s.snr_db), Some(12.5));

    // Over gRPC: the same request gives the same text in the same
    // messages, counted the same way. (The finals differ by a few bytes
    // where a timing is zero on one side: proto3 omits zero fields.)
    let mut grpc = edge_client(&node).await?;
    let mut s = grpc.generate(req.clone()).await?.into_inner();
    let (mut grpc_fin, mut grpc_piece_bytes, mut grpc_bytes) = (None, 0, 0);
    while let Some(ev) = s.message().await? {
        grpc_bytes += ev.encoded_len() as u64 + 5;
        match ev.event {
            Some(Event::Final(f)) => grpc_fin = Some(f),
            _ => grpc_piece_bytes += ev.encoded_len() + 5,
        }
    }
    let grpc_fin = grpc_fin.expect("gRPC final");
    assert_eq!(grpc_fin.text, fin.text);
    assert_eq!(grpc_piece_bytes, quic_piece_bytes);
    assert_eq!(grpc_fin.bytes_sent, grpc_bytes);

    // Bad input: the gRPC status code, in a trailer; the link stays usable.
    let bad = v1::GenerateRequest {
        segment: "  ".into(),
        ..Default::default()
    };
    let mut call = conn.generate(bad).await?;
    match call.next().await {
        Some(Err(LinkError::Status { code, message })) => {
            assert_eq!(code, tonic::Code::InvalidArgument as i32, "{message}");
        }
        other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
    }
    let e = conn.download(0, 0).await.unwrap_err();
    assert!(
        matches!(e, LinkError::Status { code: 3, .. }),
        "zero-byte download: {e}"
    );
    conn.echo(16).await?;

    // Deadline: the stream ends early with the text so far.
    let mut call = conn
        .generate(v1::GenerateRequest {
            segment: "an endless list of stars".into(),
            max_tokens: Some(400),
            ignore_eos: true,
            deadline_ms: Some(150),
            ..Default::default()
        })
        .await?;
    let fin = loop {
        if let Some(Event::Final(f)) = call.next().await.expect("final")?.event {
            break f;
        }
    };
    assert_eq!(fin.finish_reason, v1::FinishReason::Deadline as i32);
    assert!(fin.generated_tokens < 400);

    // Cancel: dropping the call frees the node's slot long before 400
    // tokens could have been generated.
    let mut call = conn
        .generate(v1::GenerateRequest {
            segment: "a very long voyage".into(),
            max_tokens: Some(400),
            ignore_eos: true,
            ..Default::default()
        })
        .await?;
    call.next().await.expect("a first piece")?;
    let dropped = Instant::now();
    drop(call);
    loop {
        let info = grpc.info(v1::InfoRequest {}).await?.into_inner();
        let load = info.load.unwrap_or_default();
        if load.active + load.queued == 0 {
            let full = 400.0 / info.tokens_per_second.max(1.0);
            assert!(
                dropped.elapsed().as_secs_f64() < full / 2.0,
                "slot freed after {:?}; a full generation takes {full:.1}s",
                dropped.elapsed()
            );
            break;
        }
        assert!(
            dropped.elapsed() < Duration::from_secs(20),
            "slot never freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test]
async fn a_pinned_fingerprint_refuses_another_certificate() -> anyhow::Result<()> {
    let node = start_edge_node(&[]).await?;
    let (_c, _conn, info) = link_to(&node).await?;
    let port = info.link.unwrap_or_default().quic_port as u16;
    let client = LinkClient::new()?;
    let wrong = Trust::Pinned("ab".repeat(32));
    let e = client
        .connect(
            std::net::SocketAddr::new(node.addr.ip(), port),
            "localhost",
            &wrong,
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("certificate")
            || e.to_string().contains("handshake")
            || e.to_string().contains("TLS"),
        "{e}"
    );
    Ok(())
}
