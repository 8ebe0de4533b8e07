//! Channel emulation: a token bucket that paces a node's outgoing bytes to
//! the Shannon rate B·log2(1 + SNR) of its current simulated SNR, so a lab
//! cluster's measured transfer times follow the simulated channel. Every
//! new SNR draw (one per transfer) changes the rate from then on, so with
//! a trace or Rayleigh fading the pacing follows the channel over time.
//!
//! Senders reserve bytes and sleep until the bucket has paid for them, so
//! concurrent streams of one node share its one emulated radio; a sender
//! that gives up returns what was not yet sent.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::cost::CostModel;

/// Bucket depth, as time at the current rate: small, so a transfer's time
/// is its bits over the rate rather than a free burst.
const BURST: Duration = Duration::from_millis(5);
/// Smallest bucket depth, bytes (one small message passes unpaced when idle).
const MIN_BURST_BYTES: f64 = 64.0;
/// Slowest pace, bits/s: a deep fade still moves bytes eventually.
const MIN_RATE_BPS: f64 = 100.0;

/// A node's emulated radio.
#[derive(Debug)]
pub struct Pacer {
    model: CostModel,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Bytes per second.
    rate: f64,
    /// Bytes available; negative while senders wait for reserved bytes.
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn depth(&self) -> f64 {
        (self.rate * BURST.as_secs_f64()).max(MIN_BURST_BYTES)
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.depth());
        self.last = now;
    }
}

impl Pacer {
    /// A radio of `bandwidth_hz`, starting at `snr_db`.
    pub fn new(bandwidth_hz: f64, snr_db: f64) -> Self {
        let model = CostModel {
            bandwidth_hz,
            ..CostModel::default()
        };
        let rate = Self::bytes_per_s(&model, snr_db);
        let now = Instant::now();
        let bucket = Bucket {
            rate,
            tokens: 0.0,
            last: now,
        };
        Self {
            model,
            bucket: Mutex::new(bucket),
        }
    }

    fn bytes_per_s(model: &CostModel, snr_db: f64) -> f64 {
        model.shannon_rate_bps(snr_db).max(MIN_RATE_BPS) / 8.0
    }

    /// The emulated bandwidth, Hz.
    pub fn bandwidth_hz(&self) -> f64 {
        self.model.bandwidth_hz
    }

    /// The current pace, bits/s.
    pub fn rate_bps(&self) -> f64 {
        self.bucket.lock().expect("pacer lock").rate * 8.0
    }

    /// A new SNR draw: bytes reserved from now on go at its Shannon rate.
    pub fn set_snr(&self, snr_db: f64) {
        let mut b = self.bucket.lock().expect("pacer lock");
        b.refill(Instant::now());
        b.rate = Self::bytes_per_s(&self.model, snr_db);
        let depth = b.depth();
        b.tokens = b.tokens.min(depth);
    }

    /// Waits until `bytes` may go out; returns how long it waited.
    ///
    /// The bytes are reserved at once, in arrival order. If the caller
    /// gives up before its turn (the stream was cancelled or the node is
    /// shutting down), the part of the reservation the radio has not yet
    /// paid for goes back to the bucket, so later senders are not delayed
    /// by bytes that never went out.
    pub async fn take(&self, bytes: u64) -> Duration {
        let (wait, deadline) = {
            let mut b = self.bucket.lock().expect("pacer lock");
            let now = Instant::now();
            b.refill(now);
            b.tokens -= bytes as f64;
            let wait = if b.tokens >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-b.tokens / b.rate)
            };
            (wait, now + wait)
        };
        if !wait.is_zero() {
            let mut guard = Reservation {
                pacer: self,
                bytes: bytes as f64,
                deadline,
                paid: false,
            };
            tokio::time::sleep_until(deadline).await;
            guard.paid = true;
        }
        wait
    }
}

/// A reservation still waiting for its turn; refunds on drop unless paid.
struct Reservation<'a> {
    pacer: &'a Pacer,
    bytes: f64,
    deadline: Instant,
    paid: bool,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.paid {
            return;
        }
        let mut b = self.pacer.bucket.lock().expect("pacer lock");
        let now = Instant::now();
        b.refill(now);
        // The radio reaches this reservation's last byte at `deadline`:
        // what it would still have sent by then was never paid for.
        let unpaid = self.deadline.saturating_duration_since(now).as_secs_f64() * b.rate;
        b.tokens = (b.tokens + unpaid.min(self.bytes)).min(b.depth());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bytes_go_out_at_the_shannon_rate_of_the_current_snr() {
        // 0 dB over 8 kHz: 8 000 bit/s = 1 000 bytes/s.
        let p = Pacer::new(8_000.0, 0.0);
        assert!((p.rate_bps() - 8_000.0).abs() < 1e-6);
        let start = Instant::now();
        for _ in 0..10 {
            p.take(200).await;
        }
        let t = start.elapsed().as_secs_f64();
        assert!(
            (t - 2.0).abs() < 0.01,
            "2 000 bytes at 1 000 B/s took {t} s"
        );

        // A better draw speeds it up: log2(1 + 3) = 2 → 2 000 bytes/s.
        p.set_snr(10.0 * 3f64.log10());
        assert!((p.rate_bps() - 16_000.0).abs() < 1.0, "{}", p.rate_bps());
        let start = Instant::now();
        p.take(2_000).await;
        let t = start.elapsed().as_secs_f64();
        assert!(
            (t - 1.0).abs() < 0.01,
            "2 000 bytes at 2 000 B/s took {t} s"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_wait_gives_its_unsent_bytes_back() {
        // 1 000 bytes/s. A 1 000-byte send is given up half-way through.
        let p = Pacer::new(8_000.0, 0.0);
        let start = Instant::now();
        let gave_up = tokio::time::timeout(Duration::from_millis(500), p.take(1_000)).await;
        assert!(gave_up.is_err());
        // The 500 unsent bytes are refunded: the next 100 bytes take 0.1 s,
        // not the 0.6 s they would wait behind the abandoned reservation.
        p.take(100).await;
        let t = start.elapsed().as_secs_f64();
        assert!((t - 0.6).abs() < 0.01, "took {t} s");

        // A wait that completes is not refunded: 2 × 500 bytes take 1 s.
        let start = Instant::now();
        p.take(500).await;
        p.take(500).await;
        let t = start.elapsed().as_secs_f64();
        assert!((t - 1.0).abs() < 0.01, "took {t} s");
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_senders_share_one_radio() {
        let p = std::sync::Arc::new(Pacer::new(8_000.0, 0.0));
        let start = Instant::now();
        let a = tokio::spawn({
            let p = p.clone();
            async move { p.take(500).await }
        });
        let b = tokio::spawn({
            let p = p.clone();
            async move { p.take(500).await }
        });
        a.await.unwrap();
        b.await.unwrap();
        let t = start.elapsed().as_secs_f64();
        assert!(
            (t - 1.0).abs() < 0.01,
            "two 500-byte sends at 1 000 B/s took {t} s"
        );
    }
}
