//! Build-check golden files: `testdata/lint/<case>/Dockerfile` with `expected.txt` (the
//! rendered warnings, blank-line separated; empty for none) and an optional `.dockerignore`
//! next to it. Set `RBUILD_BLESS=1` to rewrite the expected files after a deliberate change.
//! Also: linting every real-world Dockerfile never panics.

use rbuild_parser::Source;
use rbuild_parser::dockerignore::{PatternMatcher, parse_ignore_file};
use rbuild_parser::lint::{LintOptions, RULES, lint};

use crate::{case_dirs, compare_or_bless, realworld_files, testdata};

#[test]
fn lint_golden_files() {
    let mut failures = Vec::new();
    let dirs = case_dirs(&testdata().join("lint"));
    for rule in RULES {
        assert!(
            dirs.iter().any(|d| d.ends_with(rule)),
            "no golden case for {rule}"
        );
    }
    for dir in &dirs {
        let text = std::fs::read_to_string(dir.join("Dockerfile")).unwrap();
        let df = match rbuild_parser::parse("Dockerfile", &text) {
            Ok(df) => df,
            Err(e) => {
                failures.push(format!("{}: {}", dir.display(), e.render()));
                continue;
            }
        };
        let matcher = std::fs::read_to_string(dir.join(".dockerignore"))
            .ok()
            .map(|t| PatternMatcher::new(&parse_ignore_file(&t)).unwrap());
        let opts = LintOptions {
            ignore: matcher.as_ref(),
            ..LintOptions::default()
        };
        let warnings = lint(&df, &Source::new("Dockerfile", text.as_str()), &opts);
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if RULES.contains(&name.as_str())
            && !warnings.iter().any(|w| w.rule.as_deref() == Some(&name))
        {
            failures.push(format!("{}: rule {name} did not fire", dir.display()));
        }
        if name == "clean" && !warnings.is_empty() {
            failures.push(format!("{}: expected no warnings", dir.display()));
        }
        if name == "check-skip"
            && warnings
                .iter()
                .any(|w| df.check.skips(w.rule.as_deref().unwrap_or("")))
        {
            failures.push(format!("{}: a skipped rule fired", dir.display()));
        }
        let rendered: Vec<String> = warnings.iter().map(|w| w.render()).collect();
        compare_or_bless(
            &dir.join("expected.txt"),
            &rendered.join("\n"),
            &mut failures,
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn linting_realworld_dockerfiles_never_panics() {
    let files = realworld_files();
    let ignore = PatternMatcher::new(&["*.md", "**/secret*", "!README.md"]).unwrap();
    let mut linted = 0;
    let mut warnings = 0;
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(path).unwrap();
        let Ok(text) = rbuild_parser::decode(&name, &bytes) else {
            continue;
        };
        let Ok(df) = rbuild_parser::parse(&name, &text) else {
            continue;
        };
        let src = Source::new(name.as_str(), text.as_str());
        for opts in [
            LintOptions::default(),
            LintOptions {
                ignore: Some(&ignore),
                target: df.stages.first().and_then(|s| s.name.clone()),
                build_args: [("VERSION".to_string(), "1".to_string())].into(),
            },
        ] {
            let found = lint(&df, &src, &opts);
            for w in &found {
                assert!(w.location.is_some(), "{name}: {w:?}");
                let _ = w.render();
            }
            warnings += found.len();
        }
        linted += 1;
    }
    println!("linted {linted} real-world Dockerfiles: {warnings} warnings");
    assert!(linted >= 261);
}
