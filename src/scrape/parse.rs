//! The Prometheus text exposition format (0.0.4) and OpenMetrics 1.0 text, as model
//! servers write them: `# HELP` / `# TYPE` / `# UNIT` / `# EOF` lines, samples
//! `name{label="value",…} value [timestamp]`, label values with `\\`, `\"` and `\n`
//! escapes, `+Inf` / `-Inf` / `NaN`, and OpenMetrics exemplars (` # {…} v`), which
//! are dropped.
//!
//! A small module rather than a crate: the parsers on crates.io either read only
//! one of the two formats or pull in a regex engine and a date library for what is
//! a line format; this one is tested against each server's documented output.

/// One sample: its full name (with `_total`, `_sum`, `_bucket` … as written), its
/// labels sorted by name, and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// The labels as a JSON object (`{}` when none), keys sorted: the `labels`
    /// column of `server_metrics`.
    pub fn labels_json(&self) -> String {
        let map: serde_json::Map<String, serde_json::Value> = self
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        serde_json::Value::Object(map).to_string()
    }
}

/// The samples of a scrape, and how many lines could not be read (a page that is
/// mostly unreadable is not a metrics endpoint).
#[derive(Debug, Default)]
pub struct Parsed {
    pub samples: Vec<Sample>,
    pub bad_lines: usize,
}

pub fn parse(text: &str) -> Parsed {
    let mut out = Parsed::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match sample(line) {
            Some(s) => out.samples.push(s),
            None => out.bad_lines += 1,
        }
    }
    out
}

fn is_name_char(c: char, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':' || (!first && c.is_ascii_digit())
}

fn sample(line: &str) -> Option<Sample> {
    let end = line
        .char_indices()
        .find(|&(i, c)| !is_name_char(c, i == 0))
        .map_or(line.len(), |(i, _)| i);
    if end == 0 {
        return None;
    }
    let name = line[..end].to_string();
    let mut rest = &line[end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, after) = label_set(after)?;
        labels = parsed;
        rest = after;
    }
    // The value is the first token; a timestamp and an exemplar may follow.
    let value_text = rest.split_whitespace().next()?;
    let value = match value_text {
        "+Inf" | "Inf" | "+inf" | "inf" => f64::INFINITY,
        "-Inf" | "-inf" => f64::NEG_INFINITY,
        "NaN" | "nan" => f64::NAN,
        v => v.parse().ok()?,
    };
    labels.sort();
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// Reads `k="v",…}`; returns the labels and what follows the closing brace.
fn label_set(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_string();
        if key.is_empty()
            || !key
                .chars()
                .enumerate()
                .all(|(i, c)| is_name_char(c, i == 0))
        {
            return None;
        }
        s = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let close = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key, value));
        s = s[close + 1..].trim_start();
        if let Some(after) = s.strip_prefix(',') {
            s = after;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_with_labels_escapes_and_specials() {
        let p = parse(
            "# HELP vllm:num_requests_running Number of requests in model execution batches.\n\
             # TYPE vllm:num_requests_running gauge\n\
             vllm:num_requests_running{engine=\"0\",model_name=\"Qwen/Qwen2.5\"} 3.0\n\
             vllm:e2e_request_latency_seconds_bucket{le=\"+Inf\",model_name=\"m\"} 12\n\
             odd{path=\"a\\\"b\\\\c\\nd\", x = \"1\" ,} -Inf 1712345678000\n\
             plain 4e+06\n\
             nan_here NaN\n",
        );
        assert_eq!(p.bad_lines, 0);
        assert_eq!(p.samples.len(), 5);
        assert_eq!(p.samples[0].name, "vllm:num_requests_running");
        assert_eq!(
            p.samples[0].labels,
            [
                ("engine".to_string(), "0".to_string()),
                ("model_name".to_string(), "Qwen/Qwen2.5".to_string())
            ]
        );
        assert_eq!(p.samples[0].value, 3.0);
        assert_eq!(p.samples[1].labels[0].1, "+Inf");
        assert_eq!(p.samples[2].labels[0].1, "a\"b\\c\nd");
        assert_eq!(p.samples[2].value, f64::NEG_INFINITY);
        assert_eq!(p.samples[3].value, 4e6);
        assert!(p.samples[4].value.is_nan());
        assert_eq!(
            p.samples[0].labels_json(),
            r#"{"engine":"0","model_name":"Qwen/Qwen2.5"}"#
        );
    }

    #[test]
    fn openmetrics_exemplars_and_eof() {
        let p = parse(
            "# TYPE tokens counter\n# UNIT tokens tokens\n\
             tokens_total{a=\"b\"} 17 # {trace_id=\"abc\"} 1.0 1712345678.1\n\
             tokens_created{a=\"b\"} 1712340000.5\n# EOF\n",
        );
        assert_eq!(p.bad_lines, 0);
        assert_eq!(p.samples[0].value, 17.0);
        assert_eq!(p.samples[1].name, "tokens_created");
    }

    #[test]
    fn garbage_is_counted_not_parsed() {
        let p = parse(
            "<html><body>Not Found</body></html>\n{\"error\": 1}\nname{x=\"unterminated} 1\n",
        );
        assert!(p.samples.is_empty());
        assert_eq!(p.bad_lines, 3);
    }
}
