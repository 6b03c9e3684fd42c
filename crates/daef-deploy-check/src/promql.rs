//! The metric names and label names a PromQL expression refers to. A small scanner rather than
//! a parser: it knows where names can appear (outside strings, label matchers and ranges; not
//! before `(`, which makes a function or aggregation; not as keywords) and where label names
//! appear (in matchers, and in `by`/`without`/`on`/`ignoring`/`group_*` lists). Grafana's
//! `$variables` are skipped wherever they are.

use std::collections::BTreeSet;

/// A vector selector: a metric name and the label names its matchers use.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Selector {
    /// The metric name.
    pub metric: String,
    /// Label names in the selector's `{…}`, in order.
    pub labels: Vec<String>,
}

/// What an expression refers to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct References {
    /// Every vector selector with a metric name, in order of appearance.
    pub selectors: Vec<Selector>,
    /// Label names used for grouping or vector matching (`by (le, route)`, `on (instance)`).
    pub grouping: BTreeSet<String>,
}

impl References {
    /// The distinct metric names.
    pub fn metrics(&self) -> BTreeSet<String> {
        self.selectors.iter().map(|s| s.metric.clone()).collect()
    }
}

/// Words that are operators, modifiers or aggregations (which may be followed by `by (…)`
/// rather than `(`), never metric names.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Modifiers followed by a parenthesized list of label names.
const LABEL_LIST_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Scans `expr`. Errors on unbalanced brackets or an unterminated string, which also makes the
/// scanner a cheap syntax sanity check.
pub fn references(expr: &str) -> Result<References, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut refs = References::default();
    let mut depth = 0_usize;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => i = skip_string(&chars, i)?,
            '#' => {
                // A comment runs to the end of the line.
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '[' => i = skip_until(&chars, i, ']')?,
            '{' => {
                // A selector without a metric name (`{__name__=~"…"}`): its labels are not
                // tied to a metric we can check.
                let (_, end) = matcher_labels(&chars, i)?;
                i = end;
            }
            '$' => {
                // A Grafana variable: `$name` or `${name}`.
                i += 1;
                if chars.get(i) == Some(&'{') {
                    i = skip_until(&chars, i, '}')?;
                } else {
                    while i < chars.len() && is_ident_char(chars[i]) {
                        i += 1;
                    }
                }
            }
            c if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                // Numbers and durations: 0.25, 1e3, 0x1f, 5m, 1h30m.
                while i < chars.len() && (is_ident_char(chars[i]) || chars[i] == '.') {
                    i += 1;
                }
            }
            c if is_ident_start(c) => {
                let start = i;
                while i < chars.len() && is_ident_char(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = next_non_space(&chars, i);
                let lower = word.to_ascii_lowercase();
                if LABEL_LIST_KEYWORDS.contains(&lower.as_str()) {
                    if let Some(open) = next.filter(|&j| chars[j] == '(') {
                        let close = skip_until(&chars, open, ')')?;
                        let list: String = chars[open + 1..close - 1].iter().collect();
                        refs.grouping.extend(
                            list.split(',')
                                .map(str::trim)
                                .filter(|l| !l.is_empty())
                                .map(str::to_owned),
                        );
                        i = close;
                    }
                } else if KEYWORDS.contains(&lower.as_str()) {
                    // An operator or modifier.
                } else if next.is_some_and(|j| chars[j] == '(') {
                    // A function or an aggregation.
                } else {
                    let mut labels = Vec::new();
                    if let Some(open) = next.filter(|&j| chars[j] == '{') {
                        let (names, end) = matcher_labels(&chars, open)?;
                        labels = names;
                        i = end;
                    }
                    refs.selectors.push(Selector {
                        metric: word,
                        labels,
                    });
                }
            }
            '(' => {
                depth += 1;
                i += 1;
            }
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| format!("unbalanced ')' at {i} in {expr:?}"))?;
                i += 1;
            }
            ']' | '}' => return Err(format!("unbalanced {c:?} at {i} in {expr:?}")),
            _ => i += 1,
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced parentheses in {expr:?}"));
    }
    Ok(refs)
}

/// The label names of the matchers in the `{…}` opening at `open`, and the index after `}`.
fn matcher_labels(chars: &[char], open: usize) -> Result<(Vec<String>, usize), String> {
    let mut names = Vec::new();
    let mut i = open + 1;
    loop {
        while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ',') {
            i += 1;
        }
        match chars.get(i) {
            None => return Err("unterminated label matchers".to_owned()),
            Some('}') => return Ok((names, i + 1)),
            Some(c) if is_ident_start(*c) => {
                let start = i;
                while i < chars.len() && is_ident_char(chars[i]) {
                    i += 1;
                }
                names.push(chars[start..i].iter().collect());
                // The operator, then the quoted value.
                while i < chars.len() && !matches!(chars[i], '"' | '\'' | '`' | '}') {
                    i += 1;
                }
                if matches!(chars.get(i), Some('"' | '\'' | '`')) {
                    i = skip_string(chars, i)?;
                }
            }
            Some(c) => return Err(format!("unexpected {c:?} in label matchers")),
        }
    }
}

/// The index after the string opening at `i`.
fn skip_string(chars: &[char], i: usize) -> Result<usize, String> {
    let quote = chars[i];
    let mut j = i + 1;
    while j < chars.len() {
        match chars[j] {
            '\\' if quote != '`' => j += 2,
            c if c == quote => return Ok(j + 1),
            _ => j += 1,
        }
    }
    Err("unterminated string".to_owned())
}

/// The index after the `close` matching the bracket at `i`, skipping strings and nesting.
fn skip_until(chars: &[char], i: usize, close: char) -> Result<usize, String> {
    let open = chars[i];
    let mut depth = 0;
    let mut j = i;
    while j < chars.len() {
        match chars[j] {
            '"' | '\'' | '`' => {
                j = skip_string(chars, j)?;
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return Ok(j + 1);
                }
            }
            _ => {}
        }
        j += 1;
    }
    Err(format!("unterminated {open:?}"))
}

fn next_non_space(chars: &[char], mut i: usize) -> Option<usize> {
    while i < chars.len() && chars[i].is_whitespace() {
        i += 1;
    }
    (i < chars.len()).then_some(i)
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(expr: &str, metrics: &[&str], grouping: &[&str]) {
        let refs = references(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        let got: Vec<String> = refs.metrics().into_iter().collect();
        assert_eq!(got, metrics, "metrics of {expr}");
        let got: Vec<&str> = refs.grouping.iter().map(String::as_str).collect();
        assert_eq!(got, grouping, "grouping of {expr}");
    }

    #[test]
    fn finds_metric_names_only() {
        check("up{job=\"daef-gateway\"} == 0", &["up"], &[]);
        check(
            "sum(up{job=\"daef-gateway\"}) == 0 or absent(up{job=\"daef-gateway\"})",
            &["up"],
            &[],
        );
        check(
            "histogram_quantile(0.99, sum by (le, route) (rate(http_request_duration_seconds_bucket{job=\"x\", route!~\"/v1/jobs/\\\\{id\\\\}\"}[5m]))) > 0.5",
            &["http_request_duration_seconds_bucket"],
            &["le", "route"],
        );
        check(
            "sum(rate(a_total[10m])) > 0.1 * sum without (worker_id) (rate(b_total{reason=~\"x|y\"}[$__rate_interval] offset 1h))",
            &["a_total", "b_total"],
            &["worker_id"],
        );
        check(
            "rate(x[5m]) / on (instance) group_left (pod) kube_pod_info and bool_metric",
            &["bool_metric", "kube_pod_info", "x"],
            &["instance", "pod"],
        );
        check(
            "topk(10, sum by (queue_backend, worker_id) (rate(queue_claimed_total{queue_backend=~\"$queue_backend\"}[${__rate_interval}])))",
            &["queue_claimed_total"],
            &["queue_backend", "worker_id"],
        );
        check("vector(1) + 1e3 + 0x1f + .5", &[], &[]);
        check("# comment with name_total\nfoo", &["foo"], &[]);
    }

    #[test]
    fn records_selector_labels() {
        let refs =
            references("sum by (q) (rate(m_total{job=\"j\", q=~\"a,b}\"}[5m])) and n").unwrap();
        assert_eq!(
            refs.selectors,
            vec![
                Selector {
                    metric: "m_total".into(),
                    labels: vec!["job".into(), "q".into()]
                },
                Selector {
                    metric: "n".into(),
                    labels: vec![]
                },
            ]
        );
    }

    #[test]
    fn rejects_broken_expressions() {
        for bad in ["sum(rate(x[5m])", "x{job=\"a}", "x{job=\"a\"", "x]"] {
            assert!(references(bad).is_err(), "{bad}");
        }
    }
}
