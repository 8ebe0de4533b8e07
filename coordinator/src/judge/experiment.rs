//! Scratch: raw signals on the judge set.

use std::collections::HashMap;
use std::time::Instant;

use super::corrupt::CorruptionKind;
use super::dataset::shipped_judge_set;
use crate::analyzer::cosine;

#[derive(Debug, Clone, Default)]
struct Raw {
    lp_neutral: f64,
    lp_task: f64,
    cos_task: f64,
    cos_generic: f64,
    tri: f64,
    words: usize,
    ntok: usize,
}

fn tri(text: &str) -> f64 {
    let w: Vec<String> = text
        .split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .collect();
    if w.len() < 3 {
        return 1.0;
    }
    let g: Vec<_> = w.windows(3).collect();
    let mut u = g.clone();
    u.sort();
    u.dedup();
    u.len() as f64 / g.len() as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn raw_signals() {
    let Some(a) = super::testutil::analyzer() else {
        return;
    };
    let pairs = shipped_judge_set().unwrap();
    let neutral = "Here is a short story.\n\n";
    let generic = a.embed("Write a short story.").await.unwrap();
    let mut task_emb: HashMap<String, Vec<f32>> = HashMap::new();
    let mut cache: HashMap<(String, String), Raw> = HashMap::new();
    let t0 = Instant::now();
    let mut t_lp = 0.0;
    let mut t_lp2 = 0.0;
    let mut t_emb = 0.0;
    for p in &pairs {
        if !task_emb.contains_key(&p.task) {
            task_emb.insert(p.task.clone(), a.embed(&p.task).await.unwrap());
        }
        for text in [&p.good, &p.corrupted] {
            let key = (p.task.clone(), text.clone());
            if cache.contains_key(&key) || text.is_empty() {
                continue;
            }
            let t = Instant::now();
            let lp = a.token_logprobs(neutral, text).await.unwrap();
            t_lp += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let lpt = a
                .token_logprobs(&format!("Story prompt: {}\n\nStory: ", p.task), text)
                .await
                .unwrap();
            t_lp2 += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let e = a.embed(text).await.unwrap();
            t_emb += t.elapsed().as_secs_f64();
            let mean = |v: &[f32]| v.iter().map(|x| *x as f64).sum::<f64>() / v.len() as f64;
            let r = Raw {
                lp_neutral: mean(&lp),
                lp_task: mean(&lpt),
                cos_task: cosine(&e, &task_emb[&p.task]) as f64,
                cos_generic: cosine(&e, &generic) as f64,
                tri: tri(text),
                words: text.split_whitespace().count(),
                ntok: lp.len(),
            };
            cache.insert(key, r);
        }
    }
    eprintln!(
        "total {:.1}s lp {:.1}s lp2 {:.1}s emb {:.1}s texts {}",
        t0.elapsed().as_secs_f64(),
        t_lp,
        t_lp2,
        t_emb,
        cache.len()
    );
    for kind in CorruptionKind::ALL {
        eprintln!("== {kind}");
        for p in pairs.iter().filter(|p| p.kind == kind) {
            let g = &cache[&(p.task.clone(), p.good.clone())];
            let c = cache
                .get(&(p.task.clone(), p.corrupted.clone()))
                .cloned()
                .unwrap_or_default();
            eprintln!(
                "{:24} lpN {:6.3}/{:6.3} lpT {:6.3}/{:6.3} pmi {:6.3}/{:6.3} cosT {:5.3}/{:5.3} cosG {:5.3}/{:5.3} rel {:6.3}/{:6.3} tri {:4.2}/{:4.2} w {}/{} tok {}/{}",
                p.id,
                g.lp_neutral,
                c.lp_neutral,
                g.lp_task,
                c.lp_task,
                g.lp_task - g.lp_neutral,
                c.lp_task - c.lp_neutral,
                g.cos_task,
                c.cos_task,
                g.cos_generic,
                c.cos_generic,
                g.cos_task - g.cos_generic,
                c.cos_task - c.cos_generic,
                g.tri,
                c.tri,
                g.words,
                c.words,
                g.ntok,
                c.ntok
            );
        }
    }
}
