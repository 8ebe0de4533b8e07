//! Reading a 0-10 score as an expectation over score tokens, shared by the
//! local GGUF judge (logits) and the OpenAI-compatible judge (logprobs).
//!
//! A parsed string throws away the judge's uncertainty and is coarse (a
//! small model answers "7" to almost anything); the probability-weighted
//! mean over the candidate scores keeps both.

/// Probability mass on score tokens below which the distribution is treated
/// as absent (the judge was not about to write a number).
pub const MIN_DIGIT_MASS: f64 = 1e-6;

/// Probability-weighted mean of `(value, probability)` pairs, renormalised
/// over their total mass; `None` when that mass is below [`MIN_DIGIT_MASS`].
///
/// ```
/// # use netmoe_coordinator::judge::digits::expectation;
/// // 0.2 on "6", 0.2 on "8": renormalised, the mean is 7.
/// assert_eq!(expectation(&[(6.0, 0.2), (8.0, 0.2)]), Some(7.0));
/// assert_eq!(expectation(&[(6.0, 0.0)]), None);
/// ```
pub fn expectation(mass: &[(f64, f64)]) -> Option<f64> {
    let total: f64 = mass.iter().map(|(_, p)| p.max(0.0)).sum();
    if total.is_nan() || total < MIN_DIGIT_MASS {
        return None;
    }
    Some(mass.iter().map(|(v, p)| v * p.max(0.0)).sum::<f64>() / total)
}

/// Splits the probability `p_one` of a leading "1" into "10" and "1" for
/// tokenizers that write digits one by one: `after_one[d]` is the
/// probability of digit `d` right after that "1". "10" gets
/// `p_one * after_one[0]`; a bare "1" gets `p_one` times the non-digit mass
/// `1 - sum(after_one)`; "11".."19" are not scores and are dropped.
///
/// ```
/// # use netmoe_coordinator::judge::digits::split_one;
/// let mut after = [0.0; 10];
/// after[0] = 0.5; // "10"
/// after[5] = 0.25; // "15": not a score
/// // 25% of the continuations are not digits: a bare "1".
/// assert_eq!(split_one(0.4, &after), [(1.0, 0.1), (10.0, 0.2)]);
/// ```
pub fn split_one(p_one: f64, after_one: &[f64; 10]) -> [(f64, f64); 2] {
    let digits: f64 = after_one.iter().sum();
    let non_digit = (1.0 - digits).max(0.0);
    [
        (1.0, p_one * non_digit),
        (10.0, p_one * after_one[0].max(0.0)),
    ]
}

/// Expected score from the probabilities of the digits "0".."9" as the
/// first score token, and (if known) of the digits after a leading "1"
/// (see [`split_one`]); without `after_one` a "1" counts as 1.
///
/// Returns the expectation and the raw digit mass (how sure the judge was
/// that a number comes next).
///
/// ```
/// # use netmoe_coordinator::judge::digits::digit_expectation;
/// let mut first = [0.0; 10];
/// first[7] = 0.3;
/// first[1] = 0.1;
/// let mut after = [0.0; 10];
/// after[0] = 1.0; // the "1" is always "10"
/// let (score, mass) = digit_expectation(&first, Some(&after)).unwrap();
/// assert!((score - 7.75).abs() < 1e-12); // (7 * 0.3 + 10 * 0.1) / 0.4
/// assert!((mass - 0.4).abs() < 1e-12);
/// ```
pub fn digit_expectation(first: &[f64; 10], after_one: Option<&[f64; 10]>) -> Option<(f64, f64)> {
    let mut mass: Vec<(f64, f64)> = Vec::with_capacity(11);
    for (d, &p) in first.iter().enumerate() {
        match (d, after_one) {
            (1, Some(after)) => mass.extend(split_one(p, after)),
            _ => mass.push((d as f64, p)),
        }
    }
    let raw: f64 = first.iter().sum();
    expectation(&mass).map(|s| (s, raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_digits_without_split_average_to_four_and_a_half() {
        let (s, m) = digit_expectation(&[0.05; 10], None).unwrap();
        assert!((s - 4.5).abs() < 1e-12);
        assert!((m - 0.5).abs() < 1e-12);
    }

    #[test]
    fn no_digit_mass_is_none() {
        assert!(digit_expectation(&[0.0; 10], None).is_none());
        assert!(expectation(&[]).is_none());
    }

    #[test]
    fn one_that_is_never_ten_stays_one() {
        let mut first = [0.0; 10];
        first[1] = 0.5;
        let (s, _) = digit_expectation(&first, Some(&[0.0; 10])).unwrap();
        assert_eq!(s, 1.0);
    }
}
