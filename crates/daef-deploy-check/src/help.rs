//! The environment variables a clap `--help` text lists (`[env: DAEF_LISTEN_ADDR=…]`, or
//! `[env: DAEF_API_TOKENS]` for a hidden value).

use std::collections::BTreeSet;

/// Every variable named in an `[env: …]` annotation.
pub fn env_vars(help: &str) -> BTreeSet<String> {
    help.match_indices("[env: ")
        .map(|(i, tag)| {
            help[i + tag.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|name| !name.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_forms() {
        let help = "  --listen-addr <A>\n      [env: DAEF_LISTEN_ADDR=]\n      [default: x]\n\
                    --api-tokens <T>\n      [env: DAEF_API_TOKENS]\n  --x [env: DAEF_X=1]\n";
        let got: Vec<String> = env_vars(help).into_iter().collect();
        assert_eq!(got, ["DAEF_API_TOKENS", "DAEF_LISTEN_ADDR", "DAEF_X"]);
        assert!(env_vars("no annotations").is_empty());
    }
}
