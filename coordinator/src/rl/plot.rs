//! The PNG figures: reward vs. episode with the baselines and the bound as
//! horizontal lines (the paper's Fig. 2), mean reward per method with
//! 95% confidence whiskers (Fig. 3), and a test-retest scatter. Text uses DejaVu Sans embedded in the
//! binary, so plots render on machines without fonts.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::FontStyle;

use super::RlError;

/// Width and height of every figure, pixels.
const SIZE: (u32, u32) = (1100, 650);

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
            .is_err()
        {
            tracing::warn!("could not register the embedded font; plot text may be missing");
        }
    });
}

fn plot_err(path: &Path) -> impl Fn(String) -> RlError + '_ {
    move |message| RlError::Plot {
        path: path.display().to_string(),
        message,
    }
}

/// The learned policy's curve: black, a colour no reference line has.
const SAC_COLOUR: RGBColor = RGBColor(0, 0, 0);

/// Distinct line colours.
const COLOURS: [RGBColor; 10] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
];

/// A y range around `values` with 5% headroom.
fn y_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(0.1);
    (lo - pad, hi + pad)
}

/// Fig. 2: `curve` (the policy's reward after each episode), an optional
/// fainter `behaviour` curve, and every `(label, value)` of `lines` flat.
pub fn reward_vs_episode(
    path: &Path,
    title: &str,
    curve: &[f64],
    behaviour: &[f64],
    lines: &[(String, f64)],
) -> Result<(), RlError> {
    register_font();
    let err = plot_err(path);
    let e = |x: &dyn std::fmt::Display| err(x.to_string());
    let n = curve.len().max(behaviour.len()).max(2) as f64;
    let title_size = if title.len() > 80 { 16 } else { 22 };
    let (lo, hi) = y_range(
        curve
            .iter()
            .chain(behaviour)
            .copied()
            .chain(lines.iter().map(|l| l.1)),
    );
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", title_size))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(65)
        .build_cartesian_2d(0.0..n, lo..hi)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("training episode")
        .y_desc("mean reward per episode")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .label_style(("sans-serif", 16))
        .draw()
        .map_err(|x| e(&x))?;
    for (i, (label, v)) in lines.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        chart
            .draw_series(LineSeries::new([(0.0, *v), (n, *v)], c.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label(format!("{label} ({v:.2})"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    if !behaviour.is_empty() {
        let c = SAC_COLOUR.mix(0.3);
        chart
            .draw_series(LineSeries::new(
                behaviour
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| (i as f64 + 1.0, v)),
                c,
            ))
            .map_err(|x| e(&x))?
            .label("SAC while exploring (moving average)")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c));
    }
    let c = SAC_COLOUR;
    chart
        .draw_series(LineSeries::new(
            curve.iter().enumerate().map(|(i, &v)| (i as f64 + 1.0, v)),
            c.stroke_width(3),
        ))
        .map_err(|x| e(&x))?
        .label("SAC (greedy)")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(3)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

/// One bar of Fig. 3.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// Method name.
    pub label: String,
    /// Mean reward.
    pub mean: f64,
    /// Half-width of its 95% confidence interval.
    pub half_width: f64,
}

/// Fig. 3: mean reward per method with 95% CI whiskers.
pub fn mean_reward_bars(path: &Path, title: &str, bars: &[Bar]) -> Result<(), RlError> {
    let title_size = if title.len() > 80 { 16 } else { 22 };
    register_font();
    let err = plot_err(path);
    let e = |x: &dyn std::fmt::Display| err(x.to_string());
    let (lo, hi) = y_range(bars.iter().flat_map(|b| {
        let hw = if b.half_width.is_finite() {
            b.half_width
        } else {
            0.0
        };
        [b.mean - hw, b.mean + hw]
    }));
    // Bars start at the lower edge so differences near the top stay visible.
    let base = lo - (hi - lo) * 0.2;
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let n = bars.len().max(1);
    let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
    let hi = hi + (hi - base) * 0.06;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", title_size))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(65)
        .build_cartesian_2d(0.0..n as f64, base..hi)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 0.01 {
                labels.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc("mean reward per episode (95% CI)")
        // Ten or more method names share the width.
        .label_style(("sans-serif", if n > 9 { 13 } else { 15 }))
        .draw()
        .map_err(|x| e(&x))?;
    for (i, b) in bars.iter().enumerate() {
        let x = i as f64;
        let c = COLOURS[i % COLOURS.len()];
        chart
            .draw_series([Rectangle::new(
                [(x + 0.15, base), (x + 0.85, b.mean)],
                c.mix(0.75).filled(),
            )])
            .map_err(|x| e(&x))?;
        if b.half_width.is_finite() && b.half_width > 0.0 {
            let (l, h) = (b.mean - b.half_width, b.mean + b.half_width);
            let whisker = [
                PathElement::new([(x + 0.5, l), (x + 0.5, h)], BLACK.stroke_width(2)),
                PathElement::new([(x + 0.4, l), (x + 0.6, l)], BLACK.stroke_width(2)),
                PathElement::new([(x + 0.4, h), (x + 0.6, h)], BLACK.stroke_width(2)),
            ];
            chart.draw_series(whisker).map_err(|x| e(&x))?;
        }
        let top = b.mean
            + if b.half_width.is_finite() {
                b.half_width.max(0.0)
            } else {
                0.0
            };
        chart
            .draw_series([Text::new(
                format!("{:.2}", b.mean),
                (x + 0.3, (top + (hi - base) * 0.045).min(hi)),
                ("sans-serif", 14),
            )])
            .map_err(|x| e(&x))?;
    }
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

/// A scatter of paired values (`xs[i]`, `ys[i]`) with the diagonal y = x:
/// points on the diagonal repeat exactly, a round cloud does not repeat.
pub fn paired_scatter(
    path: &Path,
    title: &str,
    (x_desc, y_desc): (&str, &str),
    xs: &[f64],
    ys: &[f64],
) -> Result<(), RlError> {
    register_font();
    let err = plot_err(path);
    let e = |x: &dyn std::fmt::Display| err(x.to_string());
    let (lo, hi) = y_range(xs.iter().chain(ys).copied());
    let root = BitMapBackend::new(path, (SIZE.1 + 100, SIZE.1)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(lo..hi, lo..hi)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|x| e(&x))?;
    chart
        .draw_series(LineSeries::new([(lo, lo), (hi, hi)], BLACK.mix(0.5)))
        .map_err(|x| e(&x))?
        .label("y = x (a perfect repeat)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.mix(0.5)));
    chart
        .draw_series(
            xs.iter()
                .zip(ys)
                .map(|(&x, &y)| Circle::new((x, y), 3, COLOURS[0].mix(0.6).filled())),
        )
        .map_err(|x| e(&x))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_render_to_png() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.png");
        let curve: Vec<f64> = (0..50).map(|i| 10.0 - 5.0 / (1.0 + i as f64)).collect();
        reward_vs_episode(
            &a,
            "t",
            &curve,
            &curve,
            &[("bound".into(), 10.5), ("random".into(), 6.0)],
        )
        .unwrap();
        let b = dir.path().join("b.png");
        let bars = [
            Bar {
                label: "sac".into(),
                mean: 9.0,
                half_width: 0.2,
            },
            Bar {
                label: "bound".into(),
                mean: 9.3,
                half_width: 0.1,
            },
        ];
        mean_reward_bars(&b, "t", &bars).unwrap();
        let c = dir.path().join("c.png");
        paired_scatter(&c, "t", ("x", "y"), &[0.0, 1.0, -1.5], &[0.5, 0.8, -1.0]).unwrap();
        for p in [a, b, c] {
            let bytes = std::fs::read(p).unwrap();
            assert_eq!(&bytes[1..4], b"PNG");
        }
    }
}
