//! Golden files: `testdata/parser/<case>/Dockerfile` with `expected.json` (the raw
//! instruction list, as `rbuild debug parse --json` prints it) and
//! `testdata/parser-errors/<case>/Dockerfile` with `expected.txt` (the rendered error).
//! Set `RBUILD_BLESS=1` to rewrite the expected files after a deliberate change.

use rbuild_parser::{Source, raw};

use crate::{case_dirs, compare_or_bless, testdata};

#[test]
fn raw_json_golden_files() {
    let mut failures = Vec::new();
    let dirs = case_dirs(&testdata().join("parser"));
    assert!(!dirs.is_empty());
    for dir in &dirs {
        let text = std::fs::read_to_string(dir.join("Dockerfile")).unwrap();
        let parsed = raw::parse(&Source::new("Dockerfile", text)).unwrap();
        let json = serde_json::to_string_pretty(&parsed).unwrap() + "\n";
        compare_or_bless(&dir.join("expected.json"), &json, &mut failures);
        // Every golden case also passes the typed layer.
        let text = std::fs::read_to_string(dir.join("Dockerfile")).unwrap();
        if let Err(e) = rbuild_parser::parse("Dockerfile", &text) {
            failures.push(format!("{}: {}", dir.display(), e.render()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn error_golden_files() {
    let mut failures = Vec::new();
    let dirs = case_dirs(&testdata().join("parser-errors"));
    assert!(!dirs.is_empty());
    for dir in &dirs {
        let text = std::fs::read_to_string(dir.join("Dockerfile")).unwrap();
        match rbuild_parser::parse("Dockerfile", &text) {
            Ok(_) => failures.push(format!("{}: parsed without error", dir.display())),
            Err(e) => compare_or_bless(&dir.join("expected.txt"), &e.render(), &mut failures),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
