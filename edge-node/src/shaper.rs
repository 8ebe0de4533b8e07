//! Kernel link shaping: the node's network interface follows its simulated
//! channel. At start and at every heartbeat's SNR draw the node sets
//! `tc qdisc replace dev IFACE root netem delay D jitter J loss L rate R`,
//! with R = B·log2(1 + SNR) from the one cost model, so what the
//! coordinator measures across containers or hosts comes from the kernel's
//! shaped link, packets and all.
//!
//! Kernels built without `sch_netem` (some CI and cloud kernels) get the
//! rate alone from `tbf`; the delay, jitter and loss are then not applied,
//! which the node logs once at start ([`Shaper::qdisc`] says which).
//!
//! The other emulation, `--emulate-bandwidth-hz`, paces the node's own
//! data-plane bytes in user space: it needs no privileges and follows every
//! transfer's own draw, but it is blind to packets, headers and other
//! traffic. Shaping needs CAP_NET_ADMIN on the node's interface (in docker:
//! `cap_add: [NET_ADMIN]`, root in the container), shapes everything the
//! interface sends, and changes at heartbeat pace.

use std::sync::Mutex;

use netmoe_common::CostModel;

/// Smallest relative rate change worth a `tc` call.
const MIN_CHANGE: f64 = 0.01;
/// Lowest rate set, bits/s (netem needs a positive rate; a channel below
/// it is all but cut).
pub const MIN_RATE_BPS: f64 = 1000.0;

/// Why shaping failed.
#[derive(Debug, thiserror::Error)]
pub enum ShapeError {
    /// `tc` could not run.
    #[error("cannot run tc: {0}")]
    Spawn(#[from] std::io::Error),
    /// `tc` refused.
    #[error("tc {args}: {stderr}")]
    Tc {
        /// What was asked.
        args: String,
        /// What it said.
        stderr: String,
    },
}

/// Shaping settings of one interface.
#[derive(Debug)]
pub struct Shaper {
    /// The interface, e.g. `eth0`.
    pub interface: String,
    /// The cost model whose Shannon rate the link follows.
    pub cost: CostModel,
    /// One-way delay added, ms.
    pub delay_ms: f64,
    /// Jitter of that delay, ms.
    pub jitter_ms: f64,
    /// Random loss, percent.
    pub loss_percent: f64,
    last_rate: Mutex<Option<f64>>,
    /// False once netem was found missing: tbf from then on.
    netem: std::sync::atomic::AtomicBool,
}

impl Shaper {
    /// Shapes `interface` at bandwidth `bandwidth_hz`.
    pub fn new(
        interface: String,
        bandwidth_hz: f64,
        delay_ms: f64,
        jitter_ms: f64,
        loss_percent: f64,
    ) -> Self {
        Self {
            interface,
            cost: CostModel {
                bandwidth_hz,
                ..CostModel::default()
            },
            delay_ms,
            jitter_ms,
            loss_percent,
            last_rate: Mutex::new(None),
            netem: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// The netem arguments for a channel at `snr_db`.
    pub fn args(&self, snr_db: f64) -> Vec<String> {
        let rate = self.cost.shannon_rate_bps(snr_db).max(MIN_RATE_BPS);
        let mut a: Vec<String> = ["qdisc", "replace", "dev", &self.interface, "root", "netem"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        a.extend([
            "delay".into(),
            format!("{:.3}ms", self.delay_ms),
            format!("{:.3}ms", self.jitter_ms),
        ]);
        if self.loss_percent > 0.0 {
            a.extend(["loss".into(), format!("{:.4}%", self.loss_percent)]);
        }
        a.extend(["rate".into(), format!("{:.0}bit", rate)]);
        a
    }

    /// The tbf arguments (rate only) for a channel at `snr_db`.
    pub fn tbf_args(&self, snr_db: f64) -> Vec<String> {
        let rate = self.cost.shannon_rate_bps(snr_db).max(MIN_RATE_BPS);
        let mut a: Vec<String> = ["qdisc", "replace", "dev", &self.interface, "root", "tbf"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        a.extend([
            "rate".into(),
            format!("{:.0}bit", rate),
            "burst".into(),
            "2kb".into(),
            // A queue deep enough that a slow link delays rather than
            // drops (a 400 ms queue at 16 kbit/s holds under one packet).
            "limit".into(),
            "64kb".into(),
        ]);
        a
    }

    /// The queueing discipline in use: "netem", or "tbf" where the kernel
    /// has no netem.
    pub fn qdisc(&self) -> &'static str {
        if self.netem.load(std::sync::atomic::Ordering::Relaxed) {
            "netem"
        } else {
            "tbf"
        }
    }

    async fn tc(args: &[String]) -> Result<(), ShapeError> {
        let out = tokio::process::Command::new("tc")
            .args(args)
            .output()
            .await?;
        if out.status.success() {
            Ok(())
        } else {
            Err(ShapeError::Tc {
                args: args.join(" "),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            })
        }
    }

    /// Shapes the interface for `snr_db` (skipped when the rate moved by
    /// less than 1%). Returns the rate set, if a call was made.
    pub async fn apply(&self, snr_db: f64) -> Result<Option<f64>, ShapeError> {
        let rate = self.cost.shannon_rate_bps(snr_db).max(MIN_RATE_BPS);
        {
            let last = self.last_rate.lock().expect("shaper lock");
            if let Some(prev) = *last
                && (rate - prev).abs() <= MIN_CHANGE * prev
            {
                return Ok(None);
            }
        }
        let netem = self.netem.load(std::sync::atomic::Ordering::Relaxed);
        match Self::tc(&if netem {
            self.args(snr_db)
        } else {
            self.tbf_args(snr_db)
        })
        .await
        {
            Ok(()) => {}
            Err(ShapeError::Tc { stderr, .. })
                if netem && stderr.contains("qdisc kind is unknown") =>
            {
                tracing::warn!(
                    interface = %self.interface,
                    "the kernel has no netem: shaping the rate with tbf; delay, jitter and loss are not applied"
                );
                self.netem
                    .store(false, std::sync::atomic::Ordering::Relaxed);
                Self::tc(&self.tbf_args(snr_db)).await?;
            }
            Err(e) => return Err(e),
        }
        *self.last_rate.lock().expect("shaper lock") = Some(rate);
        tracing::debug!(interface = %self.interface, snr_db, rate_bps = rate, "link shaped");
        Ok(Some(rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netem_follows_the_shannon_rate() {
        let s = Shaper::new("eth0".into(), 10_000.0, 20.0, 2.0, 0.0);
        let a = s.args(0.0).join(" ");
        assert_eq!(
            a,
            "qdisc replace dev eth0 root netem delay 20.000ms 2.000ms rate 10000bit"
        );
        let hi = s.args(30.0).join(" ");
        assert!(hi.ends_with("rate 99672bit"), "{hi}");
        let lossy = Shaper::new("eth0".into(), 10_000.0, 1.0, 0.0, 0.5)
            .args(-40.0)
            .join(" ");
        assert!(
            lossy.contains("loss 0.5000%") && lossy.ends_with("rate 1000bit"),
            "{lossy}"
        );
    }
}
