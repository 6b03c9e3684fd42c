//! Dockerfile instructions, grouped by build stage: enough to check what the runtime images
//! contain, which user they run as and which variables they set.

/// One `FROM … [AS name]` stage and its instructions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stage {
    /// The base image, as written (ARGs not expanded).
    pub base: String,
    /// The stage name after `AS`, lower-cased.
    pub name: Option<String>,
    /// `(INSTRUCTION, arguments)` in order, instruction upper-cased, continuation lines joined.
    pub instructions: Vec<(String, String)>,
}

impl Stage {
    /// The arguments of every instruction named `keyword`.
    pub fn args_of<'a>(&'a self, keyword: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.instructions
            .iter()
            .filter(move |(k, _)| k == keyword)
            .map(|(_, a)| a.as_str())
    }

    /// The variables `ENV` sets (`ENV A=1 B=2`, or the legacy `ENV A 1`).
    pub fn env_vars(&self) -> Vec<String> {
        self.args_of("ENV")
            .flat_map(|args| {
                if args.contains('=') {
                    args.split_whitespace()
                        .filter_map(|pair| pair.split_once('=').map(|(k, _)| k.to_owned()))
                        .collect::<Vec<_>>()
                } else {
                    args.split_whitespace()
                        .next()
                        .map(str::to_owned)
                        .into_iter()
                        .collect()
                }
            })
            .collect()
    }
}

/// A parsed Dockerfile: the `ARG`s before the first `FROM`, then the stages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dockerfile {
    /// Global `ARG` arguments (`NAME=default`).
    pub global_args: Vec<String>,
    /// Build stages in order; the last is the default target.
    pub stages: Vec<Stage>,
}

impl Dockerfile {
    /// The stage named `name`.
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages
            .iter()
            .find(|s| s.name.as_deref() == Some(&name.to_ascii_lowercase()))
    }

    /// The default of a global `ARG`.
    pub fn global_arg(&self, name: &str) -> Option<&str> {
        self.global_args.iter().find_map(|a| {
            a.split_once('=')
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v)
        })
    }
}

/// Parses a Dockerfile. Errors on an instruction before the first `FROM` other than `ARG`.
pub fn parse(text: &str) -> Result<Dockerfile, String> {
    let mut file = Dockerfile::default();
    let mut logical = String::new();
    let mut lines = Vec::new();
    for raw in text.lines() {
        let trimmed = raw.trim();
        if logical.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if !logical.is_empty() && trimmed.starts_with('#') {
            // Comments inside a continued instruction are dropped.
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                logical.push_str(part.trim());
                logical.push(' ');
            }
            None => {
                logical.push_str(trimmed);
                lines.push(std::mem::take(&mut logical));
            }
        }
    }
    if !logical.is_empty() {
        return Err("the last instruction ends with a line continuation".to_owned());
    }
    for line in lines {
        let (keyword, args) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let keyword = keyword.to_ascii_uppercase();
        let args = args.trim().to_owned();
        if keyword == "FROM" {
            let words: Vec<&str> = args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let (base, name) = match words.as_slice() {
                [base] => (*base, None),
                [base, as_, name] if as_.eq_ignore_ascii_case("as") => {
                    (*base, Some(name.to_ascii_lowercase()))
                }
                _ => return Err(format!("cannot read FROM {args}")),
            };
            file.stages.push(Stage {
                base: base.to_owned(),
                name,
                instructions: Vec::new(),
            });
            continue;
        }
        match file.stages.last_mut() {
            Some(stage) => stage.instructions.push((keyword, args)),
            None if keyword == "ARG" => file.global_args.push(args),
            None => return Err(format!("{keyword} before the first FROM")),
        }
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_instructions_and_env() {
        let file = parse(
            "# syntax=docker/dockerfile:1\nARG V=1.95\nFROM rust:${V} AS build\nRUN a \\\n  # c\n  && b\n\
             FROM scratch AS App\nENV A=1 B=two\nENV C 3\nUSER 65532:65532\n",
        )
        .unwrap();
        assert_eq!(file.global_arg("V"), Some("1.95"));
        assert_eq!(file.stages.len(), 2);
        let build = file.stage("build").unwrap();
        assert_eq!(build.base, "rust:${V}");
        assert_eq!(build.args_of("RUN").collect::<Vec<_>>(), ["a && b"]);
        let app = file.stage("app").unwrap();
        assert_eq!(app.env_vars(), ["A", "B", "C"]);
        assert_eq!(app.args_of("USER").collect::<Vec<_>>(), ["65532:65532"]);
    }

    #[test]
    fn rejects_instructions_before_from() {
        assert!(parse("RUN x\nFROM y\n").is_err());
        assert!(parse("FROM y \\\n").is_err());
    }
}
