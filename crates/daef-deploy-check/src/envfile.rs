//! `KEY=VALUE` files, as kustomize's `configMapGenerator.envs` reads them: `#` comments and
//! blank lines are skipped, the value is everything after the first `=`.

use std::collections::BTreeMap;

/// The variables of an env file, in key order. Errors name the line.
pub fn parse(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut vars = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line {}: expected KEY=VALUE, got {line:?}", n + 1))?;
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("line {}: bad variable name {key:?}", n + 1));
        }
        if vars.insert(key.to_owned(), value.to_owned()).is_some() {
            return Err(format!("line {}: {key} is set twice", n + 1));
        }
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pairs_and_skips_comments() {
        let vars = parse("# c\n\nA=1\nB=x=y\nC=\n").unwrap();
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "x=y");
        assert_eq!(vars["C"], "");
        assert_eq!(vars.len(), 3);
    }

    #[test]
    fn rejects_bad_lines() {
        assert!(parse("JUSTAWORD\n").is_err());
        assert!(parse("A B=1\n").is_err());
        assert!(parse("A=1\nA=2\n").is_err());
    }
}
