//! Reading sniwalk's metrics exposition in tests, with a real Prometheus
//! text parser.

use prometheus_parse::{Scrape, Value};

/// Parses an exposition with prometheus-parse (a Prometheus text-format
/// parser) after checking the OpenMetrics frame. A counter's `# TYPE` line
/// names the family without the `_total` its samples carry, which would
/// leave them untyped, so the line is renamed; `# UNIT` and `# EOF` are
/// comments to the parser.
pub fn parse(text: &str) -> Scrape {
    assert!(text.ends_with("# EOF\n"), "ends in # EOF: {text}");
    assert_eq!(text.matches("# EOF").count(), 1, "one # EOF: {text}");
    let lines = text.lines().map(|line| {
        Ok(
            match line
                .strip_prefix("# TYPE ")
                .and_then(|rest| rest.strip_suffix(" counter"))
            {
                Some(name) => format!("# TYPE {name}_total counter"),
                None => line.to_string(),
            },
        )
    });
    Scrape::parse(lines).expect("the exposition parses")
}

/// The value of the sample `name` with exactly `labels` (a histogram's
/// count), if there is one.
pub fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == name
                && s.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => panic!("no summaries here"),
        })
}
