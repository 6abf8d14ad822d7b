//! BuildKit's shell-lexer conformance tables (`frontend/dockerfile/shell/envVarTest` and
//! `wordsTest`), read at test time from the shared corpora and run with the same harness
//! rules as BuildKit's `TestShellParser4EnvVars` and `TestShellParser4Words`
//! (see `corpora/README.md`). The corpora directory is `$RBUILD_CORPORA` if set, otherwise
//! `../../shared/corpora` relative to this crate.

use std::collections::BTreeMap;

use rbuild_parser::shell::{Env, EnvList, Lexer};

use crate::corpora;

fn read_table(name: &str) -> String {
    let path = corpora().join("buildkit-shell").join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e} (set RBUILD_CORPORA?)", path.display()))
}

fn outcome(result: Result<String, impl std::fmt::Display>) -> String {
    match result {
        Ok(s) => format!("{s:?}"),
        Err(e) => format!("error: {e}"),
    }
}

/// `envVarTest`: `tag | input | expected` lines for `ProcessWord`.
#[test]
fn buildkit_env_var_test() {
    let text = read_table("envVarTest");
    let env_list: Vec<String> = ["PWD=/home", "SHELL=bash", "KOREAN=한국어", "NULL="]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let env_map: BTreeMap<String, String> = env_list
        .iter()
        .filter_map(|e| e.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let envs: [(&str, &dyn Env); 2] = [("list", &EnvList(&env_list)), ("map", &env_map)];
    let lex = Lexer::new('\\');

    let mut counts = BTreeMap::<&str, usize>::new();
    let mut mismatches = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        if raw.starts_with('#') {
            continue;
        }
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('|').map(str::trim).collect();
        let [tag, source, expected] = fields[..] else {
            panic!("envVarTest:{line_no}: expected 3 fields in {raw:?}");
        };
        match tag {
            "W" => {
                *counts.entry("W (Windows only, skipped)").or_default() += 1;
                continue;
            }
            "A" | "U" => *counts.entry(tag).or_default() += 1,
            other => panic!("envVarTest:{line_no}: invalid tag {other:?}, must be W, A or U"),
        }
        if expected == "error" {
            *counts.entry("expecting an error").or_default() += 1;
        }
        for (env_name, env) in envs {
            let got = lex.process_word(source, env);
            let ok = match (&got, expected) {
                (Err(_), "error") => true,
                (Ok(word), expected) => word == expected,
                (Err(_), _) => false,
            };
            if !ok {
                mismatches.push(format!(
                    "envVarTest:{line_no} ({env_name} env): {source:?}: expected {}, got {}",
                    if expected == "error" {
                        "an error".to_owned()
                    } else {
                        format!("{expected:?}")
                    },
                    outcome(got)
                ));
            }
        }
    }
    let checked = counts.get("A").copied().unwrap_or(0) + counts.get("U").copied().unwrap_or(0);
    println!("envVarTest: {checked} lines checked (x2 environments), counts {counts:?}");
    assert!(checked > 0, "envVarTest has no lines");
    assert!(
        mismatches.is_empty(),
        "{} envVarTest checks failed ({checked} lines, each checked with 2 environments):\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// `wordsTest`: `ENV name=value` lines and `input | word,word` lines for `ProcessWords`.
#[test]
fn buildkit_words_test() {
    let text = read_table("wordsTest");
    let lex = Lexer::new('\\');
    let mut envs: Vec<String> = Vec::new();
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            envs.push(rest.trim_start_matches(' ').to_owned());
            continue;
        }
        let fields: Vec<&str> = line.split('|').collect();
        let [input, expected] = fields[..] else {
            panic!("wordsTest:{line_no}: should be exactly one | in {line:?}");
        };
        let input = input.trim();
        let expected: Vec<&str> = expected.trim_start_matches(' ').split(',').collect();
        checked += 1;

        let env_map: BTreeMap<String, String> = envs
            .iter()
            .map(|e| {
                let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
                (k.to_owned(), v.to_owned())
            })
            .collect();
        let with_list = lex.process_words(input, &EnvList(&envs));
        let with_map = lex.process_words(input, &env_map);
        for (env_name, got) in [("list", with_list), ("map", with_map)] {
            let got = got.unwrap_or_else(|_| vec!["error".to_owned()]);
            if got != expected {
                mismatches.push(format!(
                    "wordsTest:{line_no} ({env_name} env): {input:?}: expected {expected:?}, got {got:?}"
                ));
            }
        }
    }
    println!(
        "wordsTest: {checked} lines checked (x2 environments), {} ENV lines",
        envs.len()
    );
    assert!(checked > 0, "wordsTest has no lines");
    assert!(
        mismatches.is_empty(),
        "{} wordsTest checks failed:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
