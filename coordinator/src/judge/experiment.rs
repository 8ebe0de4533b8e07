//! Scratch: raw signals on the judge set.

use std::collections::HashMap;
use std::time::Instant;

use super::corrupt::CorruptionKind;
use super::dataset::shipped_judge_set;

const GENERIC: &str = "Write a short story.";

fn templates(task: &str) -> Vec<String> {
    vec![
        format!("Story prompt: {task}\n\nStory: "),
        format!("{task}\n\n"),
        format!("Task: {task}\nAnswer: "),
    ]
}

fn mean(v: &[f32]) -> f64 {
    v.iter().map(|x| *x as f64).sum::<f64>() / v.len().max(1) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn raw_signals() {
    let Some(a) = super::testutil::analyzer() else {
        return;
    };
    for p in [
        "Score (0-10): ",
        "Score (0-10):",
        "Score (0-10): 7",
        "Score (0-10): 10",
    ] {
        let toks = a.count_tokens(p);
        eprintln!("{p:?}: {toks} tokens");
    }
    let pairs = shipped_judge_set().unwrap();
    // per (task,text): per template (lp_task, lp_generic)
    let mut cache: HashMap<(String, String), Vec<(f64, f64)>> = HashMap::new();
    let t0 = Instant::now();
    let mut passes = 0;
    let mut toks = 0;
    for p in &pairs {
        for text in [&p.good, &p.corrupted] {
            let key = (p.task.clone(), text.clone());
            if cache.contains_key(&key) || text.is_empty() {
                continue;
            }
            let mut v = Vec::new();
            for (tt, tg) in templates(&p.task).into_iter().zip(templates(GENERIC)) {
                let lt = a.token_logprobs(&tt, text).await.unwrap();
                let lg = a.token_logprobs(&tg, text).await.unwrap();
                passes += 2;
                toks += lt.len() + lg.len();
                v.push((mean(&lt), mean(&lg)));
            }
            cache.insert(key, v);
        }
    }
    let el = t0.elapsed().as_secs_f64();
    eprintln!(
        "{passes} passes, {toks} text tokens in {el:.1}s: {:.3}s/pass",
        el / passes as f64
    );
    for t in 0..3 {
        eprintln!("== template {t}");
        for kind in [
            CorruptionKind::OffTopic,
            CorruptionKind::Truncated,
            CorruptionKind::Shuffled,
        ] {
            let mut ok = 0;
            let mut okf = 0;
            let mut n = 0;
            for p in pairs.iter().filter(|p| p.kind == kind) {
                let g = cache[&(p.task.clone(), p.good.clone())][t];
                let c = cache[&(p.task.clone(), p.corrupted.clone())][t];
                n += 1;
                if g.0 - g.1 > c.0 - c.1 {
                    ok += 1;
                } else if kind == CorruptionKind::OffTopic {
                    eprintln!("  pmi miss {}: {:.3} vs {:.3}", p.id, g.0 - g.1, c.0 - c.1);
                }
                if g.1 > c.1 {
                    okf += 1;
                }
            }
            eprintln!("{kind}: pmi {ok}/{n}  lp_generic {okf}/{n}");
        }
        let goods: Vec<(f64, f64)> = pairs
            .iter()
            .filter(|p| p.kind == CorruptionKind::Empty)
            .map(|p| cache[&(p.task.clone(), p.good.clone())][t])
            .collect();
        let pm: Vec<f64> = goods.iter().map(|g| g.0 - g.1).collect();
        let lg: Vec<f64> = goods.iter().map(|g| g.1).collect();
        eprintln!(
            "good pmi min {:.3} max {:.3}; lp_generic min {:.3} max {:.3}",
            pm.iter().copied().fold(f64::MAX, f64::min),
            pm.iter().copied().fold(f64::MIN, f64::max),
            lg.iter().copied().fold(f64::MAX, f64::min),
            lg.iter().copied().fold(f64::MIN, f64::max)
        );
        for kind in [
            CorruptionKind::OffTopic,
            CorruptionKind::Truncated,
            CorruptionKind::Shuffled,
            CorruptionKind::Looping,
        ] {
            let v: Vec<(f64, f64)> = pairs
                .iter()
                .filter(|p| p.kind == kind)
                .map(|p| cache[&(p.task.clone(), p.corrupted.clone())][t])
                .collect();
            let pm: Vec<f64> = v.iter().map(|g| g.0 - g.1).collect();
            let lg: Vec<f64> = v.iter().map(|g| g.1).collect();
            eprintln!(
                "{kind} pmi min {:.3} max {:.3}; lp_generic min {:.3} max {:.3}",
                pm.iter().copied().fold(f64::MAX, f64::min),
                pm.iter().copied().fold(f64::MIN, f64::max),
                lg.iter().copied().fold(f64::MAX, f64::min),
                lg.iter().copied().fold(f64::MIN, f64::max)
            );
        }
    }
}
