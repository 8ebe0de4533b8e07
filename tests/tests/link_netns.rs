//! A genuinely degraded link: one edge node runs in its own network
//! namespace behind a veth pair shaped by `tc` (64 kbit/s each way, plus
//! 40 ms of delay each way where the kernel has `netem`), another on
//! loopback. The coordinator's probes measure the difference, and the
//! routing candidates carry it.
//!
//! Kernels built without `sch_netem` (this project's CI machines among
//! them) get the rate limit from `tbf` alone, and the test checks the
//! rate, the queueing it causes and the routing, not the fixed delay.
//! Needs root (network namespaces, tc); where the machine forbids them the
//! test says so on stderr and passes without running.

use std::ffi::OsString;
use std::process::Command;
use std::time::{Duration, Instant};

use netmoe_coordinator::cluster::{ServerProcess, sibling_binary};
use netmoe_proto::v1;
use netmoe_tests::{child_log, model_path};

/// Added delay each way, where netem exists.
const DELAY_MS: u32 = 40;
/// Rate limit each way, kbit/s.
const RATE_KBIT: f64 = 64.0;

/// How the link is degraded.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shaping {
    /// netem: delay and rate.
    Netem,
    /// tbf: rate only (kernels without netem).
    Tbf,
}

/// A namespace and veth pair, removed on drop.
struct Netns {
    shaping: Shaping,
    ns: String,
    host_if: String,
    host_ip: String,
    ns_ip: String,
}

fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    fn create() -> Result<Self, String> {
        let id = std::process::id() % 100_000;
        let net = 1 + std::process::id() % 250;
        let mut n = Netns {
            shaping: Shaping::Netem,
            ns: format!("netmoe-t{id}"),
            host_if: format!("nmh{id}"),
            host_ip: format!("10.201.{net}.1"),
            ns_ip: format!("10.201.{net}.2"),
        };
        let ns_if = format!("nmn{id}");
        sh(&["ip", "netns", "add", &n.ns])?;
        let shape = |dev: &str, inside: bool, how: Shaping| -> Result<(), String> {
            let delay = format!("{DELAY_MS}ms");
            let rate = format!("{RATE_KBIT}kbit");
            let mut cmd = Vec::new();
            if inside {
                cmd.extend(["ip", "netns", "exec", n.ns.as_str()]);
            }
            cmd.extend(["tc", "qdisc", "add", "dev", dev, "root"]);
            match how {
                Shaping::Netem => cmd.extend(["netem", "delay", &delay, "rate", &rate]),
                Shaping::Tbf => {
                    cmd.extend(["tbf", "rate", &rate, "burst", "2kb", "latency", "400ms"])
                }
            }
            sh(&cmd)
        };
        let host_cidr = format!("{}/24", n.host_ip);
        let ns_cidr = format!("{}/24", n.ns_ip);
        sh(&[
            "ip", "link", "add", &n.host_if, "type", "veth", "peer", "name", &ns_if,
        ])?;
        sh(&["ip", "link", "set", &ns_if, "netns", &n.ns])?;
        sh(&["ip", "addr", "add", &host_cidr, "dev", &n.host_if])?;
        sh(&["ip", "link", "set", &n.host_if, "up"])?;
        sh(&[
            "ip", "netns", "exec", &n.ns, "ip", "addr", "add", &ns_cidr, "dev", &ns_if,
        ])?;
        sh(&[
            "ip", "netns", "exec", &n.ns, "ip", "link", "set", &ns_if, "up",
        ])?;
        sh(&[
            "ip", "netns", "exec", &n.ns, "ip", "link", "set", "lo", "up",
        ])?;
        if let Err(e) = shape(&ns_if, true, Shaping::Netem) {
            eprintln!("netem unavailable ({e}); shaping the rate with tbf instead");
            n.shaping = Shaping::Tbf;
            shape(&ns_if, true, Shaping::Tbf)?;
        }
        shape(&n.host_if, false, n.shaping)?;
        Ok(n)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.ns]);
        let _ = sh(&["ip", "link", "del", &self.host_if]);
    }
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

#[tokio::test]
async fn probes_and_routing_see_a_netem_degraded_link() -> anyhow::Result<()> {
    let net = match Netns::create() {
        Ok(n) => n,
        Err(e) => {
            netmoe_common::testing::skip(
                "probes_and_routing_see_a_netem_degraded_link",
                &format!("this machine forbids network namespaces or tc ({e})"),
            );
            return Ok(());
        }
    };
    let model = model_path();
    anyhow::ensure!(model.exists(), "test model {} is missing", model.display());
    let model = model.display().to_string();
    let log = child_log();

    let mut args = os(&[
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--threads",
        "2",
        "--heartbeat-ms",
        "500",
        "--liveness-ms",
        "5000",
        "--probe-interval-ms",
        "0",
        "--probe-bytes",
        "16384",
        "--local-candidate",
        "false",
        "--insecure",
        "--model",
    ]);
    args.push(model.clone().into());
    let coordinator =
        ServerProcess::start("coordinator", &sibling_binary("coordinator")?, &args, &log).await?;
    let port = coordinator.addr.port();

    let node_args = |listen: &str, coord_host: &str, id: &str| {
        let mut a = os(&[
            "serve",
            "--listen",
            listen,
            "--threads",
            "1",
            "--warmup-tokens",
            "4",
            "--snr",
            "fixed:60",
            "--profile",
            "fantasy",
            "--node-id",
            id,
            "--heartbeat-ms",
            "500",
            "--insecure",
            "--coordinator",
        ]);
        a.push(format!("http://{coord_host}:{port}").into());
        a.push("--model".into());
        a.push(model.clone().into());
        a
    };
    let edge = sibling_binary("edge-node")?;
    let _near = ServerProcess::start(
        "edge-node (loopback)",
        &edge,
        &node_args("127.0.0.1:0", "127.0.0.1", "near"),
        &log,
    )
    .await?;
    let mut far_args = os(&["netns", "exec", &net.ns]);
    far_args.push(edge.into_os_string());
    far_args.extend(node_args(&format!("{}:0", net.ns_ip), &net.host_ip, "far"));
    let _far = ServerProcess::start(
        "edge-node (netem)",
        std::path::Path::new("/usr/sbin/ip"),
        &far_args,
        &log,
    )
    .await?;

    // Each node is probed when it registers; wait for both probes.
    let mut c =
        netmoe_coordinator::client::connect(&format!("http://127.0.0.1:{port}"), None, None)
            .await?;
    let started = Instant::now();
    let (near, far) = loop {
        let nodes = c
            .list_nodes(v1::ListNodesRequest {})
            .await?
            .into_inner()
            .nodes;
        let link = |id: &str| {
            nodes
                .iter()
                .find(|n| n.info.as_ref().is_some_and(|i| i.node_id == id))
                .and_then(|n| n.link.clone())
                .filter(|l| l.ok)
        };
        if let (Some(a), Some(b)) = (link("near"), link("far")) {
            break (a, b);
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "no probes: {nodes:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!(
        "near: rtt {:.2} ms, down {:.0} b/s, up {:.0} b/s",
        near.echo_rtt_ms, near.down_goodput_bps, near.up_goodput_bps
    );
    eprintln!(
        "far:  rtt {:.2} ms, down {:.0} b/s, up {:.0} b/s, lost {}/{}",
        far.echo_rtt_ms,
        far.down_goodput_bps,
        far.up_goodput_bps,
        far.packets_lost,
        far.packets_sent
    );

    // Goodput: capped by the shaped rate, far below loopback.
    let cap = RATE_KBIT * 1e3 * 1.1;
    assert!(
        far.down_goodput_bps < cap && far.up_goodput_bps < cap,
        "{far:?}"
    );
    assert!(far.down_goodput_bps > 0.2 * RATE_KBIT * 1e3, "{far:?}");
    assert!(
        near.down_goodput_bps > 100.0 * far.down_goodput_bps,
        "{near:?} vs {far:?}"
    );
    assert_eq!(far.down_framed_bytes_sent, far.down_framed_bytes_received);
    assert_eq!(far.up_framed_bytes_sent, far.up_framed_bytes_received);
    // RTT: netem delays both directions; with tbf alone the bulk transfer
    // queues behind the rate limit, and QUIC's path RTT shows it.
    let min_rtt = match net.shaping {
        Shaping::Netem => {
            assert!(far.echo_rtt_ms >= 1.8 * f64::from(DELAY_MS), "{far:?}");
            1.8 * f64::from(DELAY_MS)
        }
        Shaping::Tbf => 0.0,
    };
    assert!(
        far.path_rtt_ms > 10.0 * near.path_rtt_ms.max(0.5),
        "{near:?} vs {far:?}"
    );
    assert!(near.echo_rtt_ms < 10.0, "{near:?}");

    // On demand, through the coordinator's Probe call.
    let probed = c
        .probe(v1::ProbeRequest {
            node_id: "far".into(),
            bytes: 16_384,
        })
        .await?
        .into_inner()
        .probes;
    assert_eq!(probed.len(), 1);
    assert!(
        probed[0].ok && probed[0].echo_rtt_ms >= min_rtt,
        "{probed:?}"
    );
    assert!(probed[0].down_goodput_bps < cap, "{probed:?}");

    // The routing state: a request's candidates carry the measured link,
    // and the cost estimate of the far node pays for its slow wire.
    let r = c
        .ask(v1::AskRequest {
            prompt: "A knight rides out to face a dragon.".into(),
            max_segments: Some(1),
            max_tokens: Some(8),
            policy: "cost".into(),
            transport: "quic".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let seg = &r.segments[0];
    let cand = |id: &str| seg.candidates.iter().find(|x| x.target == id).cloned();
    let (cn, cf) = (cand("near").expect("near"), cand("far").expect("far"));
    assert!(cf.measured_rtt_ms >= min_rtt, "{cf:?}");
    assert!(cf.measured_goodput_bps < cap, "{cf:?}");
    assert!(cn.measured_rtt_ms < 10.0, "{cn:?}");
    assert!(
        cf.expected_transfer_s > cn.expected_transfer_s,
        "same SNR, slower wire: {cf:?} vs {cn:?}"
    );
    assert_eq!(
        seg.target, "near",
        "the cost policy avoids the slow link: {seg:?}"
    );
    assert_eq!(seg.transport, "quic");
    Ok(())
}
