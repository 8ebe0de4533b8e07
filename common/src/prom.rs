//! The two text formats of a `/metrics` scrape: OpenMetrics (what
//! `prometheus-client` writes, and what Prometheus asks for first) and the
//! classic Prometheus text format 0.0.4 (what `promtool check metrics`,
//! `curl` and older scrapers read). The coordinator and the edge nodes
//! serve whichever the `Accept` header prefers.

/// Content type of OpenMetrics text.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the Prometheus text format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// True when `accept` asks for OpenMetrics.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// Rewrites OpenMetrics text as Prometheus text 0.0.4: a counter family
/// `x` (samples `x_total`) is announced as `x_total`, `# UNIT` and
/// `# EOF` lines go.
///
/// ```
/// let om = "# HELP r Requests.\n# TYPE r counter\nr_total 3\n# EOF\n";
/// assert_eq!(
///     netmoe_common::prom::to_prometheus_text(om),
///     "# HELP r_total Requests.\n# TYPE r_total counter\nr_total 3\n"
/// );
/// ```
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let lines: Vec<&str> = openmetrics.lines().collect();
    let mut out = String::with_capacity(openmetrics.len());
    for (i, line) in lines.iter().enumerate() {
        if *line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let counter_family = |name: &str| {
            lines[i..]
                .iter()
                .take(3)
                .any(|l| *l == format!("# TYPE {name} counter"))
        };
        let rewritten = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            (counter_family(name) && !name.ends_with("_total"))
                .then(|| format!("{prefix}{name}_total {tail}").trim_end().to_owned())
        });
        out.push_str(rewritten.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_and_histograms_keep_their_names() {
        let om = "# HELP g A gauge.\n# TYPE g gauge\ng 1\n# HELP h Seconds.\n# TYPE h histogram\nh_sum 1\nh_count 1\nh_bucket{le=\"+Inf\"} 1\n# EOF\n";
        let text = to_prometheus_text(om);
        assert!(text.contains("# TYPE g gauge\n"), "{text}");
        assert!(text.contains("# TYPE h histogram\n"), "{text}");
        assert!(!text.contains("EOF"));
    }

    #[test]
    fn only_openmetrics_accept_headers_get_openmetrics() {
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
        )));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(None));
    }
}
