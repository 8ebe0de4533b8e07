//! A real cluster on the QUIC data plane: segments travel on QUIC streams
//! with per-segment wire accounting next to the Shannon model, nodes are
//! probed when they register and on demand, the probes and bytes reach the
//! Prometheus metrics, and bad probe or transport requests get their gRPC
//! status.

use std::io::{Read, Write};

use netmoe_proto::v1;
use netmoe_tests::start_cluster;

#[tokio::test]
async fn segments_travel_over_quic_and_links_are_probed() -> anyhow::Result<()> {
    // A free port for the metrics endpoint.
    let metrics_addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let metrics_flag = metrics_addr.to_string();
    let cluster = start_cluster(
        None,
        &[
            "--transport",
            "quic",
            "--local-candidate",
            "false",
            "--probe-bytes",
            "65536",
            "--metrics-listen",
            &metrics_flag,
        ],
    )
    .await?;
    let mut c = cluster.client().await?;

    // On demand: every live node, with consistent counts.
    let probes = c
        .probe(v1::ProbeRequest::default())
        .await?
        .into_inner()
        .probes;
    assert_eq!(probes.len(), 3);
    for p in &probes {
        assert!(p.ok, "{p:?}");
        assert_eq!(p.probe_bytes, 65_536);
        assert_eq!(p.down_framed_bytes_sent, p.down_framed_bytes_received);
        assert_eq!(p.up_framed_bytes_sent, p.up_framed_bytes_received);
        assert!(p.wire_bytes_rx > p.down_framed_bytes_received);
    }
    // The node list shows the latest probe of each node.
    let nodes = c
        .list_nodes(v1::ListNodesRequest {})
        .await?
        .into_inner()
        .nodes;
    assert!(
        nodes.iter().all(|n| n.link.as_ref().is_some_and(|l| l.ok)),
        "{nodes:?}"
    );

    let r = c
        .ask(v1::AskRequest {
            prompt: "Write a story in which a young knight rides out to face a dragon, \
                     and a robot scientist repairs a starship engine far from Earth."
                .into(),
            policy: "relevance".into(),
            max_tokens: Some(24),
            seed: Some(3),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(
        !r.partial,
        "{:?}",
        r.segments.iter().map(|s| &s.error).collect::<Vec<_>>()
    );
    let mut wire = 0;
    for s in &r.segments {
        assert_eq!(s.transport, "quic");
        assert!(s.measured_bytes_down > 0 && s.measured_bytes_up > 0);
        assert!(s.wire_bytes_down > s.measured_bytes_down, "{s:?}");
        assert!(s.wire_bytes_up > s.measured_bytes_up, "{s:?}");
        assert_eq!(
            s.payload_bits,
            (s.measured_bytes_up + s.measured_bytes_down) * 8
        );
        assert!(s.sim_transfer_s > 0.0);
        let chosen = s
            .candidates
            .iter()
            .find(|x| x.target == s.target)
            .expect("chosen");
        assert!(
            chosen.measured_goodput_bps > 0.0 && chosen.measured_rtt_ms > 0.0,
            "{chosen:?}"
        );
        wire += s.wire_bytes_up + s.wire_bytes_down;
    }
    assert_eq!(r.totals.unwrap_or_default().wire_bytes, wire);
    let table = netmoe_coordinator::report::table(&r);
    assert!(table.contains("Shannon model vs the wire"), "{table}");

    // Prometheus: every node's link, and the QUIC bytes of the answer.
    let text = scrape(metrics_addr)?;
    for n in &nodes {
        let id = &n.info.as_ref().expect("info").node_id;
        assert!(
            text.contains(&format!("netmoe_link_rtt_seconds{{node=\"{id}\"}}")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "netmoe_link_goodput_bytes_per_second{{node=\"{id}\",direction=\"down\"}}"
            )),
            "{text}"
        );
    }
    let udp_down: u64 = text
        .lines()
        .find(|l| {
            l.starts_with(
                r#"netmoe_segment_bytes_total{transport="quic",layer="udp",direction="down"}"#,
            )
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .expect("UDP bytes counter");
    let report_down: u64 = r.segments.iter().map(|s| s.wire_bytes_down).sum();
    assert_eq!(udp_down, report_down);

    // Bad requests.
    let e = c
        .probe(v1::ProbeRequest {
            node_id: "no-such-node".into(),
            bytes: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
    let e = c
        .probe(v1::ProbeRequest {
            node_id: String::new(),
            bytes: 1 << 40,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    let e = c
        .ask(v1::AskRequest {
            prompt: "a dragon".into(),
            transport: "carrier-pigeon".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    assert!(e.message().contains("grpc or quic"), "{e}");
    cluster.shutdown().await?;
    Ok(())
}

/// GET /metrics over plain HTTP/1.0.
fn scrape(addr: std::net::SocketAddr) -> anyhow::Result<String> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    anyhow::ensure!(
        body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200"),
        "{body}"
    );
    Ok(body)
}
