//! Parsing the `DAEF_*` settings of programs built on the client (daef-worker, daefctl).

use std::path::PathBuf;

/// A parser for integers in `min..=max` whose error names the variable, for clap's
/// `value_parser`: a bad value stops the program with a message the operator can act on.
pub fn bounded(
    var: &'static str,
    min: u64,
    max: u64,
) -> impl Fn(&str) -> Result<u64, String> + Clone + Send + Sync + 'static {
    move |raw: &str| match raw.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "{var} must be an integer from {min} to {max} (got {raw:?})"
        )),
    }
}

/// A parser for the path of a PEM file of CA certificates ([`ClientConfig::ca_file`]), for
/// clap's `value_parser`: the file is read and its certificates checked as the program starts,
/// and an error names the variable.
///
/// [`ClientConfig::ca_file`]: crate::ClientConfig::ca_file
pub fn ca_file(
    var: &'static str,
) -> impl Fn(&str) -> Result<PathBuf, String> + Clone + Send + Sync + 'static {
    move |raw: &str| {
        if raw.trim().is_empty() {
            return Err(format!(
                "{var} is empty: set it to the path of a PEM file, or leave it unset"
            ));
        }
        let path = PathBuf::from(raw);
        crate::tls::ca_file_roots(&path).map_err(|e| format!("{var}: {e}"))?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_inclusive_and_errors_name_the_variable() {
        let parse = bounded("DAEF_X", 1, 10);
        assert_eq!(parse(" 1 "), Ok(1));
        assert_eq!(parse("10"), Ok(10));
        for bad in ["0", "11", "-1", "ten", ""] {
            let err = parse(bad).unwrap_err();
            assert!(
                err.starts_with("DAEF_X must be an integer from 1 to 10"),
                "{err}"
            );
        }
    }

    #[test]
    fn ca_file_errors_name_the_variable_and_the_file() {
        let parse = ca_file("DAEF_CA_FILE");
        let err = parse(" ").unwrap_err();
        assert!(err.starts_with("DAEF_CA_FILE is empty"), "{err}");
        let err = parse("/nonexistent/ca.pem").unwrap_err();
        assert!(
            err.starts_with("DAEF_CA_FILE: cannot read /nonexistent/ca.pem"),
            "{err}"
        );
    }
}
