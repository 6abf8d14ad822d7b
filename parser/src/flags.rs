//! Instruction flags (`--name[=value]`), validated per instruction like BuildKit's `BFlags`.

use std::collections::BTreeMap;

use crate::error::{ErrorKind, ParseError, did_you_mean};

/// How a flag takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagType {
    /// `--link` or `--link=true|false`.
    Bool,
    /// `--from=x`, at most once.
    String,
    /// `--mount=...`, any number of times.
    List,
}

/// The flags an instruction was given, checked against the ones it accepts.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    values: BTreeMap<&'static str, Vec<String>>,
}

/// A flag problem, with the flag word to point at.
#[derive(Debug)]
pub(crate) struct FlagError {
    pub word: String,
    pub error: ParseError,
}

impl Flags {
    /// Parses `words` (each `--name[=value]`) for an instruction that accepts `spec`.
    pub(crate) fn parse(
        instruction: &str,
        words: &[String],
        spec: &[(&'static str, FlagType)],
    ) -> Result<Flags, FlagError> {
        let mut flags = Flags::default();
        for word in words {
            let fail = |kind, message: String, hint: Option<String>| {
                let mut error = ParseError::new(kind, message);
                if let Some(h) = hint {
                    error = error.with_hint(h);
                }
                FlagError {
                    word: word.clone(),
                    error,
                }
            };
            let Some(body) = word.strip_prefix("--") else {
                return Err(fail(
                    ErrorKind::InvalidFlag,
                    format!("flag {word:?} must start with '--'"),
                    None,
                ));
            };
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let Some(&(key, ty)) = spec.iter().find(|(n, _)| *n == name) else {
                let names: Vec<&str> = spec.iter().map(|(n, _)| *n).collect();
                let hint = match did_you_mean(name, &names) {
                    Some(s) => Some(format!("did you mean `--{s}`?")),
                    None if names.is_empty() => Some(format!("{instruction} takes no flags")),
                    None => Some(format!(
                        "{instruction} accepts {}",
                        names
                            .iter()
                            .map(|n| format!("--{n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                };
                return Err(fail(
                    ErrorKind::UnknownFlag,
                    format!("unknown flag: --{name}"),
                    hint,
                ));
            };
            let value = match (ty, value) {
                (FlagType::Bool, None) => "true".to_string(),
                (FlagType::Bool, Some(v)) => match v.to_ascii_lowercase().as_str() {
                    "true" | "false" => v.to_ascii_lowercase(),
                    _ => {
                        return Err(fail(
                            ErrorKind::InvalidFlag,
                            format!("expecting boolean value for flag {name}, not: {v}"),
                            Some(format!("write `--{name}` or `--{name}=false`")),
                        ));
                    }
                },
                (_, None) => {
                    return Err(fail(
                        ErrorKind::InvalidFlag,
                        format!("missing a value on flag: {name}"),
                        Some(format!("write `--{name}=VALUE`")),
                    ));
                }
                (_, Some(v)) => v.to_string(),
            };
            let slot = flags.values.entry(key).or_default();
            if ty != FlagType::List && !slot.is_empty() {
                return Err(fail(
                    ErrorKind::InvalidFlag,
                    format!("Duplicate flag specified: {name}"),
                    Some("give the flag once".into()),
                ));
            }
            slot.push(value);
        }
        Ok(flags)
    }

    pub(crate) fn string(&self, name: &str) -> Option<String> {
        self.values.get(name).and_then(|v| v.last()).cloned()
    }

    pub(crate) fn bool(&self, name: &str) -> bool {
        self.string(name).is_some_and(|v| v == "true")
    }

    /// A bool flag that may be absent (`None`), for flags whose default depends on context.
    pub(crate) fn opt_bool(&self, name: &str) -> Option<bool> {
        self.string(name).map(|v| v == "true")
    }

    pub(crate) fn list(&self, name: &str) -> Vec<String> {
        self.values.get(name).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SPEC: &[(&str, FlagType)] = &[
        ("from", FlagType::String),
        ("link", FlagType::Bool),
        ("exclude", FlagType::List),
    ];

    fn parse(words: &[&str]) -> Result<Flags, String> {
        let words: Vec<String> = words.iter().map(|s| s.to_string()).collect();
        Flags::parse("COPY", &words, SPEC).map_err(|e| e.error.message().to_string())
    }

    #[test]
    fn values() {
        let f = parse(&["--from=a", "--link", "--exclude=x", "--exclude=y"]).unwrap();
        assert_eq!(f.string("from").as_deref(), Some("a"));
        assert!(f.bool("link"));
        assert_eq!(f.list("exclude"), ["x", "y"]);
        assert!(!parse(&["--link=FALSE"]).unwrap().bool("link"));
    }

    #[test]
    fn errors() {
        assert_eq!(parse(&["--frm=a"]).unwrap_err(), "unknown flag: --frm");
        assert_eq!(
            parse(&["--from"]).unwrap_err(),
            "missing a value on flag: from"
        );
        assert_eq!(
            parse(&["--from=a", "--from=b"]).unwrap_err(),
            "Duplicate flag specified: from"
        );
        assert!(parse(&["--link=maybe"]).unwrap_err().contains("boolean"));
    }
}
