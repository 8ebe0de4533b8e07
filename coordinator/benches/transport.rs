//! gRPC vs the QUIC data plane on loopback, one run, side by side: the
//! same edge-node process streams the same messages (`Download`) over both.
//! "segment" is a segment-sized stream (48 small messages, as a generation
//! streams its pieces): per-transfer overhead. "1 MiB" is bulk payload in
//! 16 KiB messages: throughput. Rounds alternate the transports so machine
//! noise hits both; the table gives medians and QUIC/gRPC ratios.
//!
//! Run: `cargo bench -p netmoe-coordinator --bench transport` (needs the
//! release binaries and the model, as the tests do).

use std::ffi::OsString;
use std::time::{Duration, Instant};

use netmoe_common::link::{LinkClient, LinkConnection, Trust};
use netmoe_coordinator::cluster::{ServerProcess, sibling_binary};
use netmoe_proto::v1::{self, edge_node_client::EdgeNodeClient, probe_event};
use tonic::transport::Channel;

const ROUNDS: usize = 5;

struct Case {
    name: &'static str,
    bytes: u64,
    chunk: u32,
    reps: usize,
}

const CASES: &[Case] = &[
    Case {
        name: "segment (48 x 16 B)",
        bytes: 768,
        chunk: 16,
        reps: 40,
    },
    Case {
        name: "1 MiB (64 x 16 KiB)",
        bytes: 1 << 20,
        chunk: 16 * 1024,
        reps: 8,
    },
];

async fn grpc_once(c: &mut EdgeNodeClient<Channel>, case: &Case) -> (Duration, u64) {
    let t = Instant::now();
    let mut s = c
        .download(v1::DownloadRequest {
            bytes: case.bytes,
            chunk_bytes: case.chunk,
        })
        .await
        .expect("gRPC download")
        .into_inner();
    let mut framed = 0;
    while let Some(ev) = s.message().await.expect("gRPC stream") {
        if let Some(probe_event::Event::Summary(x)) = ev.event {
            framed = x.framed_bytes;
        }
    }
    (t.elapsed(), framed)
}

async fn quic_once(conn: &LinkConnection, case: &Case) -> (Duration, u64) {
    let t = Instant::now();
    let d = conn
        .download(case.bytes, case.chunk)
        .await
        .expect("QUIC download");
    (t.elapsed(), d.framed_bytes)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let model = std::env::var_os("NETMOE_TEST_MODEL").map_or_else(
        || {
            netmoe_common::fetch::cache_dir()
                .join("models")
                .join(netmoe_common::fetch::DEFAULT_MODEL_FILE)
        },
        Into::into,
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut args: Vec<OsString> = [
            "serve", "--listen", "127.0.0.1:0", "--threads", "1", "--warmup-tokens", "0",
            "--snr", "fixed:20", "--insecure", "--model",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        args.push(model.into_os_string());
        let node = ServerProcess::start(
            "edge-node",
            &sibling_binary("edge-node").expect("build the binaries first"),
            &args,
            "warn",
        )
        .await
        .expect("edge node");
        let mut grpc = EdgeNodeClient::connect(node.endpoint()).await.expect("gRPC");
        let info = grpc.info(v1::InfoRequest {}).await.expect("info").into_inner();
        let link = info.link.unwrap_or_default();
        let client = LinkClient::new().expect("QUIC endpoint");
        let conn = client
            .connect(
                std::net::SocketAddr::new(node.addr.ip(), link.quic_port as u16),
                "localhost",
                &Trust::Pinned(link.cert_sha256),
            )
            .await
            .expect("QUIC connect");

        println!(
            "{:<22} | {:>12} {:>12} {:>8} | {:>12} {:>12} {:>8} | {:>9}",
            "payload", "gRPC ms", "QUIC ms", "ratio", "gRPC Mb/s", "QUIC Mb/s", "ratio", "bytes eq"
        );
        for case in CASES {
            // Warm both paths.
            grpc_once(&mut grpc, case).await;
            quic_once(&conn, case).await;
            let (mut g, mut q) = (Vec::new(), Vec::new());
            let mut same_bytes = true;
            for _ in 0..ROUNDS {
                for _ in 0..case.reps {
                    let (tg, bg) = grpc_once(&mut grpc, case).await;
                    let (tq, bq) = quic_once(&conn, case).await;
                    same_bytes &= bg == bq;
                    g.push(tg.as_secs_f64());
                    q.push(tq.as_secs_f64());
                }
            }
            let (mg, mq) = (median(g), median(q));
            let mbps = |s: f64| case.bytes as f64 * 8.0 / s / 1e6;
            println!(
                "{:<22} | {:>12.3} {:>12.3} {:>8.3} | {:>12.1} {:>12.1} {:>8.3} | {:>9}",
                case.name,
                mg * 1e3,
                mq * 1e3,
                mq / mg,
                mbps(mg),
                mbps(mq),
                mbps(mq) / mbps(mg),
                same_bytes
            );
        }
        println!(
            "medians of {ROUNDS} x reps alternating transfers on one node process; ms = request to last message; ratio = QUIC / gRPC (time: < 1 is faster; Mb/s: > 1 is faster); bytes eq = identical framed byte counts"
        );
        client.close();
        node.terminate().expect("stop node");
    });
}
