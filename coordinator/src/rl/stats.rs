//! Small statistics for the reports: mean with a 95% t-interval, moving
//! averages, percentiles, correlation.

use serde::Serialize;

/// Mean and 95% confidence interval of a sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Sample size.
    pub n: usize,
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation.
    pub std: f64,
    /// Half-width of the 95% t-interval of the mean.
    pub half_width: f64,
}

/// Two-sided 97.5% quantile of Student's t with `df` degrees of freedom.
///
/// ```
/// # use netmoe_coordinator::rl::stats::t975;
/// assert!((t975(1) - 12.706).abs() < 1e-3);
/// assert!((t975(30) - 2.042).abs() < 1e-3);
/// assert!((t975(10_000) - 1.960).abs() < 1e-3);
/// ```
pub fn t975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        1..=30 => TABLE[df - 1],
        // Cornish-Fisher to first order: within 1e-3 of the exact value past 30.
        _ => {
            let z: f64 = 1.959_964;
            z + (z.powi(3) + z) / (4.0 * df as f64)
        }
    }
}

/// Mean and 95% t-interval of `xs`.
///
/// ```
/// # use netmoe_coordinator::rl::stats::summarize;
/// let s = summarize(&[1.0, 2.0, 3.0]);
/// assert_eq!(s.mean, 2.0);
/// // std 1, t(2) = 4.303, so 4.303 / √3.
/// assert!((s.half_width - 2.484).abs() < 1e-3);
/// ```
pub fn summarize(xs: &[f64]) -> Summary {
    let n = xs.len();
    if n == 0 {
        return Summary {
            n,
            mean: f64::NAN,
            std: f64::NAN,
            half_width: f64::NAN,
        };
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    let var = if n > 1 {
        xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64
    } else {
        0.0
    };
    let std = var.sqrt();
    Summary {
        n,
        mean,
        std,
        half_width: if n > 1 {
            t975(n - 1) * std / (n as f64).sqrt()
        } else {
            f64::INFINITY
        },
    }
}

/// Trailing moving average over `window` values (shorter at the start).
pub fn moving_average(xs: &[f64], window: usize) -> Vec<f64> {
    let w = window.max(1);
    let mut out = Vec::with_capacity(xs.len());
    let mut sum = 0.0;
    for i in 0..xs.len() {
        sum += xs[i];
        if i >= w {
            sum -= xs[i - w];
        }
        out.push(sum / (i + 1).min(w) as f64);
    }
    out
}

/// The `q`-quantile (0..=1) of `xs` by nearest rank.
pub fn percentile(xs: &[f64], q: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let i = ((q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

/// Arithmetic mean; NaN when there is nothing to average.
///
/// ```
/// # use netmoe_coordinator::rl::stats::mean;
/// assert_eq!(mean([1.0, 2.0, 6.0]), 3.0);
/// assert!(mean(std::iter::empty()).is_nan());
/// ```
pub fn mean(xs: impl IntoIterator<Item = f64>) -> f64 {
    let (s, n) = xs
        .into_iter()
        .fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 { f64::NAN } else { s / n as f64 }
}

/// Pearson correlation of paired samples; NaN when either side is constant
/// or there are fewer than two pairs.
///
/// ```
/// # use netmoe_coordinator::rl::stats::pearson;
/// assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]) - 1.0).abs() < 1e-12);
/// assert!((pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
/// assert!(pearson(&[1.0, 1.0], &[1.0, 2.0]).is_nan());
/// ```
pub fn pearson(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len().min(ys.len());
    if n < 2 {
        return f64::NAN;
    }
    let mx = xs[..n].iter().sum::<f64>() / n as f64;
    let my = ys[..n].iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in xs[..n].iter().zip(&ys[..n]) {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
    }
    if sxx == 0.0 || syy == 0.0 {
        return f64::NAN;
    }
    sxy / (sxx * syy).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moving_average_and_percentiles() {
        assert_eq!(
            moving_average(&[1.0, 3.0, 5.0, 7.0], 2),
            [1.0, 2.0, 4.0, 6.0]
        );
        assert_eq!(percentile(&[5.0, 1.0, 3.0, 2.0, 4.0], 0.5), 3.0);
        assert_eq!(percentile(&[5.0, 1.0, 3.0], 1.0), 5.0);
        assert!(summarize(&[]).mean.is_nan());
    }
}
