//! Channel emulation: a node paces its outgoing data-plane bytes to the
//! Shannon rate of its simulated SNR, so the measured transfer time of a
//! payload is bits / rate, over QUIC and over gRPC alike, and follows the
//! SNR as it changes from one transfer to the next.

use std::time::{Duration, Instant};

use netmoe_common::cost::CostModel;
use netmoe_common::link::LinkConnection;
use netmoe_proto::v1::{self, probe_event};
use netmoe_tests::{edge_client, link_to, start_edge_node};

/// Emulated bandwidth: 100 kHz keeps each transfer near a second.
const BANDWIDTH_HZ: f64 = 100_000.0;
/// Payload per transfer.
const PAYLOAD: u64 = 32 * 1024;
/// Allowed deviation of measured from simulated time.
const TOLERANCE: f64 = 0.10;

fn shannon(snr_db: f64) -> f64 {
    CostModel {
        bandwidth_hz: BANDWIDTH_HZ,
        ..CostModel::default()
    }
    .shannon_rate_bps(snr_db)
}

async fn min_rtt(conn: &LinkConnection) -> anyhow::Result<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..5 {
        best = best.min(conn.echo(32).await?);
    }
    Ok(best)
}

/// One QUIC download: (measured transfer seconds, bits / rate, SNR).
async fn quic_transfer(conn: &LinkConnection) -> anyhow::Result<(f64, f64, f64)> {
    let rtt = min_rtt(conn).await?;
    let d = conn.download(PAYLOAD, 1024).await?;
    assert_eq!(d.payload_bytes, PAYLOAD);
    assert_eq!(d.framed_bytes, d.summary.framed_bytes);
    let snr = d.summary.snr.clone().unwrap_or_default().snr_db;
    let expected = d.summary.framed_bytes as f64 * 8.0 / shannon(snr);
    let measured = (d.elapsed - rtt).as_secs_f64();
    assert!(d.summary.paced_seconds > 0.5 * expected, "{:?}", d.summary);
    Ok((measured, expected, snr))
}

fn within(measured: f64, expected: f64, what: &str) {
    let err = (measured / expected - 1.0).abs();
    eprintln!(
        "{what}: measured {measured:.4} s, bits/rate {expected:.4} s, off by {:.1}%",
        100.0 * err
    );
    assert!(
        err <= TOLERANCE,
        "{what}: measured {measured:.4} s vs bits/rate {expected:.4} s ({:.1}% off)",
        100.0 * err
    );
}

#[tokio::test]
async fn measured_transfer_time_is_bits_over_the_shannon_rate_at_5_and_15_db() -> anyhow::Result<()>
{
    let bw = BANDWIDTH_HZ.to_string();
    for snr in [5.0, 15.0] {
        let spec = format!("fixed:{snr}");
        let node = start_edge_node(&["--snr", &spec, "--emulate-bandwidth-hz", &bw]).await?;
        let (_client, conn, info) = link_to(&node).await?;
        assert_eq!(
            info.link.unwrap_or_default().emulated_bandwidth_hz,
            BANDWIDTH_HZ
        );

        let (measured, expected, drawn) = quic_transfer(&conn).await?;
        assert_eq!(drawn, snr);
        within(measured, expected, &format!("QUIC at {snr} dB"));

        // The gRPC data plane is paced by the same radio.
        let mut grpc = edge_client(&node).await?;
        let started = Instant::now();
        let mut s = grpc
            .download(v1::DownloadRequest {
                bytes: PAYLOAD,
                chunk_bytes: 1024,
            })
            .await?
            .into_inner();
        let mut summary = None;
        while let Some(ev) = s.message().await? {
            if let Some(probe_event::Event::Summary(x)) = ev.event {
                summary = Some(x);
            }
        }
        let summary = summary.expect("a summary");
        let expected = summary.framed_bytes as f64 * 8.0 / shannon(snr);
        within(
            started.elapsed().as_secs_f64(),
            expected,
            &format!("gRPC at {snr} dB"),
        );
    }
    Ok(())
}

#[tokio::test]
async fn pacing_follows_the_channel_from_one_transfer_to_the_next() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("netmoe-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let trace = dir.join("snr.txt");
    // The first draw starts the radio; then transfers alternate 5 and 15 dB.
    std::fs::write(&trace, "# emulated fading\n15\n5\n15\n5\n15\n")?;
    let spec = format!("trace:{}", trace.display());
    let bw = BANDWIDTH_HZ.to_string();
    let node = start_edge_node(&["--snr", &spec, "--emulate-bandwidth-hz", &bw]).await?;
    let (_client, conn, _) = link_to(&node).await?;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let (measured, expected, snr) = quic_transfer(&conn).await?;
        within(measured, expected, &format!("trace draw {snr} dB"));
        seen.push((snr, measured));
    }
    assert_eq!(seen[0].0, 5.0);
    assert_eq!(seen[1].0, 15.0);
    assert!(
        seen[0].1 > 1.8 * seen[1].1,
        "5 dB must be much slower than 15 dB: {seen:?}"
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[tokio::test]
async fn probe_transfers_beyond_the_limit_are_refused_until_a_slot_frees() -> anyhow::Result<()> {
    // 0 dB over 10 kHz: 10 kbit/s, so 64 KiB downloads stay in flight.
    let node = start_edge_node(&["--snr", "fixed:0", "--emulate-bandwidth-hz", "10000"]).await?;
    let (_client, conn, _) = link_to(&node).await?;
    let busy: Vec<_> = (0..4)
        .map(|_| {
            let c = conn.clone();
            tokio::spawn(async move { c.download(64 * 1024, 256).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for h in &busy {
        assert!(!h.is_finished(), "the slow downloads are still running");
    }
    // A fifth, over either transport, is refused at once.
    let e = conn.download(100, 0).await.unwrap_err();
    assert!(
        matches!(e, netmoe_common::link::LinkError::Status { code: 8, .. }),
        "QUIC: {e}"
    );
    let e = edge_client(&node)
        .await?
        .download(v1::DownloadRequest {
            bytes: 100,
            chunk_bytes: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "gRPC: {e}");
    // Dropping the slow ones frees their slots.
    for h in busy {
        h.abort();
    }
    let started = Instant::now();
    loop {
        match conn.download(100, 0).await {
            Ok(d) => {
                assert_eq!(d.payload_bytes, 100);
                break;
            }
            Err(e) => {
                assert!(
                    started.elapsed() < Duration::from_secs(15),
                    "no slot freed: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    Ok(())
}
