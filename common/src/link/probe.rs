//! Link probes: RTT by echo and from quinn's path estimate, goodput each
//! way over a payload of configurable size, loss and congestion window
//! from the connection's counters, and the bytes the wire carried.

use std::time::Duration;

use netmoe_proto::v1::LinkProbe;

use super::client::{LinkConnection, LinkError};
use crate::cost::CostModel;

/// Default payload each way: big enough to leave slow start on a real
/// link, small enough to take a couple of seconds on an emulated one.
pub const DEFAULT_PROBE_BYTES: u64 = 16 * 1024;
/// Largest payload a probe may ask for (the node's limit too).
pub const MAX_PROBE_BYTES: u64 = 64 * 1024 * 1024;
/// Payload per probe message.
pub const PROBE_CHUNK_BYTES: u32 = 16 * 1024;
/// Echoes per probe; the RTT is their median.
pub const ECHOES: usize = 5;
/// Payload of each echo.
const ECHO_BYTES: usize = 32;

/// What a probe does.
#[derive(Debug, Clone, Copy)]
pub struct ProbeSettings {
    /// Payload bytes each way.
    pub bytes: u64,
    /// The cost model whose bandwidth turns the node's SNR into a Shannon
    /// rate, for comparison.
    pub cost: CostModel,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        Self {
            bytes: DEFAULT_PROBE_BYTES,
            cost: CostModel::default(),
        }
    }
}

/// Probes one connection. Never fails: a failed probe is a [`LinkProbe`]
/// with `ok = false` and the reason.
pub async fn probe(conn: &LinkConnection, node_id: &str, s: &ProbeSettings) -> LinkProbe {
    match measure(conn, node_id, s).await {
        Ok(p) => p,
        Err(e) => LinkProbe {
            node_id: node_id.to_owned(),
            ok: false,
            error: e.to_string(),
            ..Default::default()
        },
    }
}

/// Seconds a payload spent in transit: the call's elapsed time less one
/// round trip (request out, last byte back), never below half of it.
fn transfer_seconds(elapsed: Duration, rtt: Duration) -> f64 {
    let e = elapsed.as_secs_f64();
    (e - rtt.as_secs_f64()).max(e / 2.0).max(1e-9)
}

async fn measure(
    conn: &LinkConnection,
    node_id: &str,
    s: &ProbeSettings,
) -> Result<LinkProbe, LinkError> {
    let bytes = s.bytes.clamp(1, MAX_PROBE_BYTES);
    let before = conn.counters();
    let mut rtts = Vec::with_capacity(ECHOES);
    for _ in 0..ECHOES {
        rtts.push(conn.echo(ECHO_BYTES).await?);
    }
    rtts.sort();
    let rtt = rtts[rtts.len() / 2];
    let min_rtt = rtts[0];
    let down = conn.download(bytes, PROBE_CHUNK_BYTES).await?;
    let up = conn.upload(bytes, PROBE_CHUNK_BYTES as usize).await?;
    let wire = conn.counters().since(&before);
    let down_s = transfer_seconds(down.elapsed, min_rtt);
    let up_s = transfer_seconds(up.elapsed, min_rtt);
    let snr = down.summary.snr.clone().unwrap_or_default();
    Ok(LinkProbe {
        node_id: node_id.to_owned(),
        ok: true,
        error: String::new(),
        echo_rtt_ms: rtt.as_secs_f64() * 1e3,
        path_rtt_ms: wire.rtt.as_secs_f64() * 1e3,
        down_goodput_bps: down.payload_bytes as f64 * 8.0 / down_s,
        up_goodput_bps: up.summary.payload_bytes as f64 * 8.0 / up_s,
        probe_bytes: bytes,
        down_framed_bytes_sent: down.summary.framed_bytes,
        down_framed_bytes_received: down.framed_bytes,
        up_framed_bytes_sent: up.framed_bytes,
        up_framed_bytes_received: up.summary.framed_bytes,
        wire_bytes_tx: wire.tx_bytes,
        wire_bytes_rx: wire.rx_bytes,
        packets_sent: wire.sent_packets,
        packets_lost: wire.lost_packets,
        loss_rate: if wire.sent_packets == 0 {
            0.0
        } else {
            wire.lost_packets as f64 / wire.sent_packets as f64
        },
        cwnd_bytes: wire.cwnd,
        snr_db: snr.snr_db,
        shannon_rate_bps: s.cost.shannon_rate_bps(snr.snr_db),
        down_paced_s: down.summary.paced_seconds,
        age_ms: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_time_subtracts_one_round_trip_but_not_more_than_half() {
        let ms = Duration::from_millis;
        assert!((transfer_seconds(ms(1000), ms(100)) - 0.9).abs() < 1e-9);
        assert!((transfer_seconds(ms(100), ms(90)) - 0.05).abs() < 1e-9);
    }
}
