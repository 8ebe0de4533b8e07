//! Tests of the SNR models: parsing, determinism and the sampled distributions.

use super::*;

fn draws(model: &SnrModel, seed: u64, n: usize) -> Vec<f64> {
    let mut sampler = SnrSampler::new(model.clone(), seed);
    (0..n).map(|_| sampler.draw().snr_db).collect()
}

#[test]
fn fixed_is_exact_and_counts_draws() {
    let mut sampler = SnrSampler::new("fixed:20".parse().unwrap(), 7);
    assert_eq!(sampler.last(), None);
    for i in 0..5 {
        assert_eq!(
            sampler.draw(),
            SnrDraw {
                snr_db: 20.0,
                draw: i
            }
        );
    }
    assert_eq!(
        sampler.last(),
        Some(SnrDraw {
            snr_db: 20.0,
            draw: 4
        })
    );
    assert_eq!(sampler.model(), &SnrModel::Fixed { db: 20.0 });
}

#[test]
fn same_seed_same_sequence_different_seed_differs() {
    for spec in ["uniform:0:20", "rayleigh:15"] {
        let model: SnrModel = spec.parse().unwrap();
        assert_eq!(draws(&model, 42, 100), draws(&model, 42, 100), "{spec}");
        assert_ne!(draws(&model, 42, 100), draws(&model, 43, 100), "{spec}");
    }
}

#[test]
fn uniform_stays_in_range_with_mean_in_the_middle() {
    let values = draws(
        &SnrModel::Uniform {
            min_db: 0.0,
            max_db: 20.0,
        },
        1,
        10_000,
    );
    assert!(values.iter().all(|v| (0.0..=20.0).contains(v)));
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    // Standard error of the mean is 20/sqrt(12)/100 = 0.058 dB; allow ~5 sigma.
    assert!((mean - 10.0).abs() < 0.3, "mean {mean}");
}

#[test]
fn uniform_with_equal_bounds_is_constant() {
    assert_eq!(draws(&"uniform:5:5".parse().unwrap(), 3, 10), vec![5.0; 10]);
}

#[test]
fn rayleigh_linear_mean_matches() {
    let mean_db = 15.0;
    let values = draws(&SnrModel::Rayleigh { mean_db }, 9, 20_000);
    let mean_linear = values.iter().map(|&db| db_to_linear(db)).sum::<f64>() / values.len() as f64;
    let target = db_to_linear(mean_db);
    // Exp(1) has unit std, so the relative standard error is 1/sqrt(20000) = 0.7%.
    assert!(
        (mean_linear / target - 1.0).abs() < 0.05,
        "mean {mean_linear} vs {target}"
    );
    // Deep fades happen: P(gain < 0.1) = 1 - e^-0.1 = 9.5%, i.e. 10 dB below the mean.
    let fades =
        values.iter().filter(|&&db| db < mean_db - 10.0).count() as f64 / values.len() as f64;
    assert!((fades - 0.095).abs() < 0.01, "fade fraction {fades}");
}

#[test]
fn trace_replays_and_cycles() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snr.txt");
    std::fs::write(&path, "# measured on the roof\n12.5\n\n  3 # weak\n-4\n").unwrap();
    let model: SnrModel = format!("trace:{}", path.display()).parse().unwrap();
    assert_eq!(
        model.to_string(),
        format!("trace({}, 3 values)", path.display())
    );
    assert_eq!(
        draws(&model, 0, 7),
        [12.5, 3.0, -4.0, 12.5, 3.0, -4.0, 12.5]
    );
}

#[test]
fn display_and_spec_round_trip() {
    for (spec, shown) in [
        ("fixed:20", "fixed(20 dB)"),
        ("uniform:0:20", "uniform(0..20 dB)"),
        ("rayleigh:15", "rayleigh(mean=15 dB)"),
        (" Uniform: -5 : 7.5 ", "uniform(-5..7.5 dB)"),
    ] {
        let model: SnrModel = spec.parse().unwrap();
        assert_eq!(model.to_string(), shown);
        assert_eq!(model.spec().parse::<SnrModel>().unwrap(), model);
    }
}

#[test]
fn parse_errors_say_what_is_wrong() {
    let err = |spec: &str| spec.parse::<SnrModel>().unwrap_err().to_string();
    assert_eq!(
        err("uniform:20:10"),
        "uniform SNR range is empty: min 20 dB > max 10 dB"
    );
    assert!(err("gauss:3").contains("unknown SNR model kind `gauss`; valid kinds: fixed:<dB>"));
    assert!(err("").contains("empty"));
    assert!(err("fixed").contains("expected fixed:<dB>"));
    assert!(err("fixed:1:2").contains("expected fixed:<dB>"));
    assert!(err("uniform:3").contains("expected uniform:<min dB>:<max dB>"));
    assert_eq!(
        err("rayleigh:loud"),
        "`loud` in SNR model `rayleigh:loud` is not a number"
    );
    assert!(err("fixed:NaN").contains("not a finite number"));
    assert!(err("uniform:-inf:3").contains("not a finite number"));
    assert!(err("trace:").contains("expected trace:<file>"));
    assert!(
        err("trace:/nonexistent/snr.txt").starts_with("cannot read SNR trace /nonexistent/snr.txt")
    );
}

#[test]
fn trace_file_errors() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "# nothing here\n\n").unwrap();
    let err = SnrModel::trace_from_file(&empty).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("SNR trace {} has no values", empty.display())
    );
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "1\n2\nthree\n").unwrap();
    let err = SnrModel::trace_from_file(&bad).unwrap_err();
    assert!(
        matches!(err, ChannelError::TraceValue { line: 3, .. }),
        "{err}"
    );
}

#[test]
fn serde_uses_the_spec_string() {
    #[derive(serde::Deserialize, serde::Serialize)]
    struct Config {
        snr: SnrModel,
    }
    let config: Config = toml::from_str("snr = \"rayleigh:12\"").unwrap();
    assert_eq!(config.snr, SnrModel::Rayleigh { mean_db: 12.0 });
    assert_eq!(
        toml::to_string(&config).unwrap().trim(),
        "snr = \"rayleigh:12\""
    );
    assert!(toml::from_str::<Config>("snr = \"uniform:9:1\"").is_err());
}
