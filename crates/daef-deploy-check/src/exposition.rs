//! Series in the Prometheus text exposition format (what `/v1/metrics/prometheus` returns).

use std::collections::{BTreeMap, BTreeSet};

/// Every metric name with a sample line, and the label names seen on its series.
pub fn series(text: &str) -> Result<BTreeMap<String, BTreeSet<String>>, String> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| format!("no value in {line:?}"))?;
        let name = &line[..name_end];
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            return Err(format!("bad metric name in {line:?}"));
        }
        let labels = out.entry(name.to_owned()).or_default();
        let mut rest = &line[name_end..];
        if let Some(body) = rest.strip_prefix('{') {
            let (names, after) = label_names(body).map_err(|e| format!("{e} in {line:?}"))?;
            labels.extend(names);
            rest = after;
        }
        // The value, then an optional timestamp, and nothing else.
        let mut fields = rest.split_whitespace();
        let value_ok = fields.next().is_some_and(|v| v.parse::<f64>().is_ok());
        let timestamp_ok = fields.next().is_none_or(|t| t.parse::<i64>().is_ok());
        if !value_ok || !timestamp_ok || fields.next().is_some() {
            return Err(format!("bad sample value in {line:?}"));
        }
    }
    Ok(out)
}

/// Label names of `a="x",b="y\"z"} 1`, and what follows the `}`.
fn label_names(body: &str) -> Result<(Vec<String>, &str), String> {
    let mut names = Vec::new();
    let mut rest = body;
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((names, after));
        }
        let eq = rest.find('=').ok_or("label without '='")?;
        names.push(rest[..eq].trim().to_owned());
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("unquoted label value")?;
        let mut escaped = false;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                let done = c == '"' && !escaped;
                escaped = c == '\\' && !escaped;
                done
            })
            .map(|(i, _)| i)
            .ok_or("unterminated label value")?;
        rest = &rest[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels() {
        let text = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"}\"} 3\nb 1\n\
                    h_bucket{route=\"/v1/jobs/{id}\",le=\"0.5\"} 2\n";
        let got = series(text).unwrap();
        let names: Vec<&str> = got.keys().map(String::as_str).collect();
        assert_eq!(names, ["a_total", "b", "h_bucket"]);
        assert_eq!(got["a_total"].iter().collect::<Vec<_>>(), ["x", "y"]);
        assert!(got["b"].is_empty());
        assert_eq!(got["h_bucket"].iter().collect::<Vec<_>>(), ["le", "route"]);
    }

    #[test]
    fn rejects_garbage() {
        assert!(series("not a metric line at all{").is_err());
        assert!(series("a{x=1} 2").is_err());
        assert!(series("a{x=\"1\"} two").is_err());
        assert!(series("a 1 2 3").is_err());
        assert!(series("a +Inf\nb NaN 1700000000000\n").is_ok());
    }
}
