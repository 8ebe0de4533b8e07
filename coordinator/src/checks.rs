//! What a node reports is checked, never trusted. Every check names its
//! documented bound; a report that fails one is rejected, counted on the
//! node, and a node over [`DEFAULT_QUARANTINE_AFTER`] violations is
//! quarantined (not routed to) with the reason in `coordinator nodes`.

use netmoe_edge_node::profile::{MAX_EXAMPLE_BYTES, MAX_EXAMPLES};
use netmoe_proto::v1;

/// The simulated SNR a node may report, dB: far wider than any real radio
/// link (Wi-Fi and 5G stay within about -10..50 dB).
pub const SNR_DB_RANGE: std::ops::RangeInclusive<f64> = -50.0..=60.0;
/// Most tokens per second a node may claim for one sequence: a
/// data-centre GPU on a tiny model stays below it.
pub const MAX_TOKENS_PER_SECOND: f64 = 10_000.0;
/// Most decoding slots a node may report.
pub const MAX_SLOTS: u32 = 1024;
/// Most queued requests a node may report.
pub const MAX_QUEUE: u32 = 65_536;
/// Bytes one generated token may take in the text (the longest tokens of
/// common vocabularies are under 50 bytes).
pub const MAX_BYTES_PER_TOKEN: usize = 64;
/// Longest expert name / domain a node may advertise, bytes.
pub const MAX_EXPERT_NAME_BYTES: usize = 64;
/// Longest domain a node may advertise, bytes (the gate embeds it).
pub const MAX_DOMAIN_BYTES: usize = 2048;
/// Violations after which a node is quarantined, unless
/// `--quarantine-after` says otherwise.
pub const DEFAULT_QUARANTINE_AFTER: u32 = 3;

/// A report that failed a check.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct Violation(pub String);

fn fail<T>(msg: String) -> Result<T, Violation> {
    Err(Violation(msg))
}

/// An SNR report.
pub fn snr(r: &v1::SnrReport) -> Result<(), Violation> {
    if !r.snr_db.is_finite() || !SNR_DB_RANGE.contains(&r.snr_db) {
        return fail(format!("SNR {} dB outside {:?} dB", r.snr_db, SNR_DB_RANGE));
    }
    Ok(())
}

/// A claimed speed.
pub fn speed(tokens_per_second: f64) -> Result<(), Violation> {
    if !tokens_per_second.is_finite() || !(0.0..=MAX_TOKENS_PER_SECOND).contains(&tokens_per_second)
    {
        return fail(format!(
            "{tokens_per_second} tokens/s outside 0..={MAX_TOKENS_PER_SECOND}"
        ));
    }
    Ok(())
}

/// A load report: active within slots, queued within capacity.
pub fn load(l: &v1::Load) -> Result<(), Violation> {
    if l.slots > MAX_SLOTS || l.active > l.slots.max(1) {
        return fail(format!("load: {} active of {} slots", l.active, l.slots));
    }
    if l.queue_capacity > MAX_QUEUE || l.queued > l.queue_capacity {
        return fail(format!(
            "load: {} queued of capacity {}",
            l.queued, l.queue_capacity
        ));
    }
    Ok(())
}

/// A heartbeat's figures.
pub fn heartbeat(hb: &v1::HeartbeatRequest) -> Result<(), Violation> {
    if let Some(r) = &hb.snr {
        snr(r)?;
    }
    if let Some(l) = &hb.load {
        load(l)?;
    }
    speed(hb.tokens_per_second)
}

/// A registration's self-description.
pub fn info(i: &v1::NodeInfo) -> Result<(), Violation> {
    if let Some(r) = &i.snr {
        snr(r)?;
    }
    if let Some(l) = &i.load {
        load(l)?;
    }
    speed(i.tokens_per_second)?;
    if let Some(p) = &i.profile {
        if p.name.len() > MAX_EXPERT_NAME_BYTES {
            return fail(format!("expert name over {MAX_EXPERT_NAME_BYTES} bytes"));
        }
        if p.domain.len() > MAX_DOMAIN_BYTES {
            return fail(format!("domain over {MAX_DOMAIN_BYTES} bytes"));
        }
        // The gate embeds every example: the node's own profile limits bound them.
        if p.examples.len() > MAX_EXAMPLES {
            return fail(format!(
                "{} examples, at most {MAX_EXAMPLES}",
                p.examples.len()
            ));
        }
        if p.examples.iter().any(|e| e.len() > MAX_EXAMPLE_BYTES) {
            return fail(format!("an example over {MAX_EXAMPLE_BYTES} bytes"));
        }
    }
    Ok(())
}

/// Most text a segment's stream may carry for `max_tokens`.
pub fn max_text_bytes(max_tokens: u32) -> usize {
    max_tokens as usize * MAX_BYTES_PER_TOKEN
}

/// A node's final message for a segment it was asked to write with at
/// most `max_tokens`: from the node it was sent to, no more tokens or
/// text than asked, words as counted from the text, a plausible channel.
pub fn generated(f: &v1::GenerateFinal, node_id: &str, max_tokens: u32) -> Result<(), Violation> {
    if f.node_id != node_id {
        return fail(format!(
            "result signed as node {:?}, sent to {node_id:?}",
            f.node_id
        ));
    }
    if f.generated_tokens > max_tokens {
        return fail(format!(
            "{} tokens generated, {max_tokens} allowed",
            f.generated_tokens
        ));
    }
    if f.text.len() > max_text_bytes(max_tokens) {
        return fail(format!(
            "{} bytes of text for at most {max_tokens} tokens",
            f.text.len()
        ));
    }
    let words = f.text.split_whitespace().count() as u32;
    if f.words != words {
        return fail(format!("reports {} words, the text has {words}", f.words));
    }
    if let Some(r) = &f.snr {
        snr(r)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_with_too_many_or_too_long_examples_fails() {
        let with = |examples: Vec<String>| v1::NodeInfo {
            profile: Some(v1::ExpertProfile {
                name: "a".into(),
                domain: "b".into(),
                examples,
                ..Default::default()
            }),
            ..Default::default()
        };
        info(&with(vec!["a fox".into(); MAX_EXAMPLES])).unwrap();
        let err = info(&with(vec!["a fox".into(); MAX_EXAMPLES + 1])).unwrap_err();
        assert!(err.0.contains("33 examples"), "{err}");
        let err = info(&with(vec!["x".repeat(MAX_EXAMPLE_BYTES + 1)])).unwrap_err();
        assert!(err.0.contains("an example over"), "{err}");
    }

    #[test]
    fn implausible_reports_fail() {
        let ok = v1::SnrReport {
            snr_db: 15.0,
            ..Default::default()
        };
        snr(&ok).unwrap();
        for bad in [400.0, -80.0, f64::NAN, f64::INFINITY] {
            assert!(
                snr(&v1::SnrReport {
                    snr_db: bad,
                    ..Default::default()
                })
                .is_err()
            );
        }
        speed(25.0).unwrap();
        assert!(speed(1e9).is_err());
        assert!(speed(-1.0).is_err());
        load(&v1::Load {
            active: 2,
            queued: 1,
            slots: 4,
            queue_capacity: 8,
        })
        .unwrap();
        assert!(
            load(&v1::Load {
                active: 9,
                queued: 0,
                slots: 4,
                queue_capacity: 8
            })
            .is_err()
        );
        assert!(
            load(&v1::Load {
                active: 0,
                queued: 9,
                slots: 4,
                queue_capacity: 8
            })
            .is_err()
        );

        let f = v1::GenerateFinal {
            node_id: "a".into(),
            text: "two words".into(),
            words: 2,
            generated_tokens: 3,
            ..Default::default()
        };
        generated(&f, "a", 16).unwrap();
        assert!(generated(&f, "b", 16).is_err(), "another node's result");
        assert!(generated(&f, "a", 2).is_err(), "more tokens than asked");
        let long = v1::GenerateFinal {
            text: "x ".repeat(5000),
            words: 5000,
            ..f.clone()
        };
        assert!(generated(&long, "a", 16).is_err(), "text beyond max tokens");
        let lying = v1::GenerateFinal { words: 7, ..f };
        assert!(generated(&lying, "a", 16).is_err());
    }
}
