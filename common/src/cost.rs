//! The one cost model: Shannon rate, simulated transfer time and energy,
//! compute cost, and the reward. Serving, training and reports all call it.
//!
//! Defaults model a narrowband uplink share, so that the channel matters at
//! the text payloads an expert sends (hundreds of bytes): at 10 kHz and
//! 10 dB a 600-byte passage takes ~0.14 s, at 0 dB ~0.48 s.

use serde::{Deserialize, Serialize};

use crate::channel::db_to_linear;

/// Default channel bandwidth B, in Hz.
pub const DEFAULT_BANDWIDTH_HZ: f64 = 10_000.0;
/// Default transmit power P_tx, in watts (23 dBm, a phone-class radio).
pub const DEFAULT_TX_POWER_W: f64 = 0.2;
/// Default compute coefficient κ_c, cost per generated word.
pub const DEFAULT_COMPUTE_PER_WORD: f64 = 0.01;
/// Default weight λ_c of the compute cost in the reward.
pub const DEFAULT_LAMBDA_COMPUTE: f64 = 1.0;
/// Default weight λ_t of the transfer cost (per simulated second).
pub const DEFAULT_LAMBDA_TRANSFER: f64 = 2.0;

/// Parameters of the cost model.
// Unknown keys are refused: a mistyped `[cost]` key in a settings file
// must not be silently ignored. Keys left out keep their defaults, so a
// `[cost]` table may set only what it changes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CostModel {
    /// Bandwidth B in Hz.
    pub bandwidth_hz: f64,
    /// Transmit power in watts.
    pub tx_power_w: f64,
    /// κ_c: compute cost per word.
    pub compute_per_word: f64,
    /// λ_c: weight of compute cost in the reward.
    pub lambda_compute: f64,
    /// λ_t: weight of simulated transfer seconds in the reward.
    pub lambda_transfer: f64,
}

impl Default for CostModel {
    fn default() -> Self {
        Self {
            bandwidth_hz: DEFAULT_BANDWIDTH_HZ,
            tx_power_w: DEFAULT_TX_POWER_W,
            compute_per_word: DEFAULT_COMPUTE_PER_WORD,
            lambda_compute: DEFAULT_LAMBDA_COMPUTE,
            lambda_transfer: DEFAULT_LAMBDA_TRANSFER,
        }
    }
}

/// Simulated transfer of one payload.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Transfer {
    /// Shannon rate used, bits/s.
    pub rate_bps: f64,
    /// Payload bits.
    pub bits: u64,
    /// bits / rate, seconds.
    pub seconds: f64,
    /// P_tx · seconds, joules.
    pub energy_j: f64,
}

/// The terms of one segment's reward.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Reward {
    /// Judge score, 0-10.
    pub score: f64,
    /// κ_c · words.
    pub compute_cost: f64,
    /// The simulated transfer (zero bits when run on the device itself).
    pub transfer: Transfer,
    /// score − λ_c · compute − λ_t · transfer seconds.
    pub reward: f64,
}

impl CostModel {
    /// Shannon rate R = B · log2(1 + SNR), SNR given in dB.
    ///
    /// ```
    /// # use netmoe_common::cost::CostModel;
    /// let m = CostModel::default(); // B = 10 kHz
    /// // 10 dB is a linear SNR of 10: R = 10^4 · log2(11) ≈ 34 594 bit/s.
    /// assert!((m.shannon_rate_bps(10.0) - 34_594.3).abs() < 0.1);
    /// ```
    pub fn shannon_rate_bps(&self, snr_db: f64) -> f64 {
        self.bandwidth_hz * (1.0 + db_to_linear(snr_db)).log2()
    }

    /// Simulated transfer of `bits` at `snr_db`.
    ///
    /// ```
    /// # use netmoe_common::cost::CostModel;
    /// let m = CostModel::default();
    /// // 0 dB: R = 10^4 · log2(2) = 10 000 bit/s; 4 800 bits take 0.48 s,
    /// // and 0.2 W for 0.48 s is 0.096 J.
    /// let t = m.transfer(4_800, 0.0);
    /// assert!((t.seconds - 0.48).abs() < 1e-9);
    /// assert!((t.energy_j - 0.096).abs() < 1e-9);
    /// ```
    pub fn transfer(&self, bits: u64, snr_db: f64) -> Transfer {
        let rate_bps = self.shannon_rate_bps(snr_db);
        let seconds = if bits == 0 {
            0.0
        } else {
            bits as f64 / rate_bps
        };
        Transfer {
            rate_bps,
            bits,
            seconds,
            energy_j: self.tx_power_w * seconds,
        }
    }

    /// Compute cost κ_c · words.
    ///
    /// ```
    /// # use netmoe_common::cost::CostModel;
    /// assert!((CostModel::default().compute_cost(120) - 1.2).abs() < 1e-12);
    /// ```
    pub fn compute_cost(&self, words: u32) -> f64 {
        self.compute_per_word * f64::from(words)
    }

    /// Reward of a segment scored `score` with `words` words whose payload
    /// of `bits` crossed a channel at `snr_db`. Pass `bits = 0` for work
    /// kept on the device (no radio).
    ///
    /// ```
    /// # use netmoe_common::cost::CostModel;
    /// let m = CostModel::default();
    /// // score 8, 100 words (compute 1.0), 4 800 bits at 0 dB (0.48 s):
    /// // 8 − 1·1.0 − 2·0.48 = 6.04
    /// let r = m.reward(8.0, 100, 4_800, 0.0);
    /// assert!((r.reward - 6.04).abs() < 1e-9);
    /// ```
    pub fn reward(&self, score: f64, words: u32, bits: u64, snr_db: f64) -> Reward {
        let compute_cost = self.compute_cost(words);
        let transfer = self.transfer(bits, snr_db);
        Reward {
            score,
            compute_cost,
            transfer,
            reward: score
                - self.lambda_compute * compute_cost
                - self.lambda_transfer * transfer.seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_grows_with_snr_and_bandwidth() {
        let m = CostModel::default();
        assert!(m.shannon_rate_bps(20.0) > m.shannon_rate_bps(10.0));
        let wide = CostModel {
            bandwidth_hz: 2.0 * m.bandwidth_hz,
            ..m
        };
        assert!((wide.shannon_rate_bps(5.0) - 2.0 * m.shannon_rate_bps(5.0)).abs() < 1e-6);
    }

    #[test]
    fn local_work_has_no_transfer_cost() {
        let r = CostModel::default().reward(7.0, 50, 0, -10.0);
        assert_eq!(r.transfer.seconds, 0.0);
        assert!((r.reward - 6.5).abs() < 1e-12);
    }
}
